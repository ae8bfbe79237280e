//! Change notifications for the `datasetUpdated` subscription.
//!
//! A broadcast channel keeps the last `capacity` updates; a subscriber that
//! falls further behind gets an error event naming how many it missed (then
//! continues with the next ones), never a silent gap.

use async_graphql::ErrorExtensions;
use futures::{Stream, StreamExt};
use tokio::sync::broadcast::{self, error::RecvError};

use super::store::Dataset;

/// `extensions.code` of the error event a lagging subscriber receives.
pub const LAGGED_CODE: &str = "SUBSCRIBER_LAGGED";

/// Why an update stream skipped events.
#[derive(Debug, thiserror::Error)]
#[error("this subscription fell behind and missed {missed} dataset updates (of all datasets); re-read the datasets you follow with `dataset`/`datasets`, updates continue after this event")]
pub struct Lagged {
    pub missed: u64,
}

impl ErrorExtensions for Lagged {
    fn extend(&self) -> async_graphql::Error {
        async_graphql::Error::new(self.to_string()).extend_with(|_, ext| {
            ext.set("code", LAGGED_CODE);
            ext.set("missed", self.missed);
        })
    }
}

/// Publishes every created, uploaded, re-attributed or deleted dataset.
#[derive(Clone)]
pub struct Updates {
    tx: broadcast::Sender<Dataset>,
}

impl Updates {
    pub fn new(capacity: usize) -> Updates {
        Updates {
            tx: broadcast::channel(capacity.max(1)).0,
        }
    }

    /// Sent after the change is committed; no subscribers is fine.
    pub fn publish(&self, dataset: Dataset) {
        let _ = self.tx.send(dataset);
    }

    /// Updates of dataset `id` (all datasets if `None`), from now on.
    pub fn subscribe(
        &self,
        id: Option<String>,
    ) -> impl Stream<Item = Result<Dataset, Lagged>> + Send + 'static {
        futures::stream::unfold(self.tx.subscribe(), |mut rx| async move {
            let item = match rx.recv().await {
                Ok(d) => Ok(d),
                Err(RecvError::Lagged(missed)) => Err(Lagged { missed }),
                Err(RecvError::Closed) => return None,
            };
            Some((item, rx))
        })
        .filter(move |item| {
            let keep = match (item, &id) {
                (Ok(d), Some(id)) => &d.id == id,
                _ => true,
            };
            futures::future::ready(keep)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::Timestamp;

    fn dataset(id: &str) -> Dataset {
        Dataset {
            id: id.into(),
            name: "n".into(),
            r#type: "t".into(),
            config: None,
            tags: vec![],
            size_bytes: None,
            created_at: Timestamp::now(),
            updated_at: Timestamp::now(),
            produced_by_pipeline_id: None,
        }
    }

    #[tokio::test]
    async fn filters_by_id() {
        let updates = Updates::new(16);
        let mut only_b = Box::pin(updates.subscribe(Some("b".into())));
        let mut all = Box::pin(updates.subscribe(None));
        for id in ["a", "b", "a"] {
            updates.publish(dataset(id));
        }
        assert_eq!(only_b.next().await.unwrap().unwrap().id, "b");
        let ids: Vec<String> = all.by_ref().take(3).map(|d| d.unwrap().id).collect().await;
        assert_eq!(ids, ["a", "b", "a"]);
    }

    #[tokio::test]
    async fn a_lagging_subscriber_is_told_how_many_it_missed() {
        let updates = Updates::new(2);
        let mut stream = Box::pin(updates.subscribe(None));
        for i in 0..5 {
            updates.publish(dataset(&i.to_string()));
        }
        match stream.next().await.unwrap() {
            Err(Lagged { missed }) => assert_eq!(missed, 3),
            Ok(d) => panic!("expected a lag error, got {}", d.id),
        }
        // Then the stream goes on with what is still buffered.
        assert_eq!(stream.next().await.unwrap().unwrap().id, "3");
        assert_eq!(stream.next().await.unwrap().unwrap().id, "4");
        let err = Lagged { missed: 3 }.extend();
        assert!(err.message.contains("missed 3"), "{}", err.message);
    }
}
