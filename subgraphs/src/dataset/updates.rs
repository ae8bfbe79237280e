//! Change notifications for the `datasetUpdated` subscription, through the
//! service's bus, so a subscriber on any replica sees every replica's changes.
//!
//! A notice carries the record as JSON. A record too big for one notice
//! (a large `config` or many tags) goes without them and each receiver
//! re-reads it; a deleted one is then delivered without them. A subscriber that falls behind, or whose replica lost its bus
//! connection, gets an error event saying so (then continues with the next
//! updates), never a silent gap.

use std::sync::Arc;

use async_graphql::ErrorExtensions;
use futures::{Stream, StreamExt};

use super::store::{Dataset, DatasetStore};
use crate::common::bus::{Bus, Notice, MAX_PAYLOAD};

/// `extensions.code` of the error event a lagging subscriber receives.
pub const LAGGED_CODE: &str = "SUBSCRIBER_LAGGED";

/// The bus topic of dataset changes.
pub const TOPIC: &str = "updates";

/// Why an update stream skipped events: `missed` of them, when known.
#[derive(Debug, thiserror::Error)]
#[error("this subscription fell behind and missed {} dataset updates (of all datasets); re-read the datasets you follow with `dataset`/`datasets`, updates continue after this event", missed.map_or("some".to_string(), |n| n.to_string()))]
pub struct Lagged {
    pub missed: Option<u64>,
}

impl ErrorExtensions for Lagged {
    fn extend(&self) -> async_graphql::Error {
        async_graphql::Error::new(self.to_string()).extend_with(|_, ext| {
            ext.set("code", LAGGED_CODE);
            if let Some(missed) = self.missed {
                ext.set("missed", missed);
            }
        })
    }
}

/// A notice: the record, or (too big) the record without config, to re-read.
#[derive(serde::Serialize, serde::Deserialize)]
struct Wire {
    dataset: Dataset,
    #[serde(default)]
    reread: bool,
}

/// Publishes every created, uploaded, re-attributed or deleted dataset.
#[derive(Clone)]
pub struct Updates {
    bus: Arc<dyn Bus>,
    store: Arc<dyn DatasetStore>,
}

impl Updates {
    pub fn new(bus: Arc<dyn Bus>, store: Arc<dyn DatasetStore>) -> Updates {
        Updates { bus, store }
    }

    /// Sent after the change is committed; a failure to announce is logged
    /// (the change stands).
    pub async fn publish(&self, dataset: Dataset) {
        if let Err(e) = self.bus.publish(TOPIC, encode(dataset)).await {
            tracing::warn!(error = %e, "could not announce a dataset update");
        }
    }

    /// Updates of dataset `id` (all datasets if `None`), from now on.
    pub fn subscribe(
        &self,
        id: Option<String>,
    ) -> impl Stream<Item = Result<Dataset, Lagged>> + Send + 'static {
        let store = self.store.clone();
        futures::stream::unfold(self.bus.subscribe(TOPIC), |mut rx| async move {
            let item = match rx.recv().await? {
                Notice::Message(text) => match serde_json::from_str::<Wire>(&text) {
                    Ok(wire) => Ok(wire),
                    Err(e) => {
                        tracing::warn!(error = %e, "unreadable dataset update notice");
                        Err(Lagged { missed: Some(1) })
                    }
                },
                Notice::Gap(missed) => Err(Lagged { missed }),
            };
            Some((item, rx))
        })
        .filter(move |item| {
            let keep = match (item, &id) {
                (Ok(w), Some(id)) => &w.dataset.id == id,
                _ => true,
            };
            futures::future::ready(keep)
        })
        .then(move |item| {
            let store = store.clone();
            async move {
                let wire = item?;
                if !wire.reread {
                    return Ok(wire.dataset);
                }
                // Deleted since: the record as announced, without its config.
                match store.get(wire.dataset.id.clone()).await {
                    Ok(Some(current)) => Ok(current),
                    _ => Ok(wire.dataset),
                }
            }
        })
    }
}

fn encode(dataset: Dataset) -> String {
    let mut wire = Wire {
        dataset,
        reread: false,
    };
    let text = serde_json::to_string(&wire).unwrap_or_default();
    if text.len() <= MAX_PAYLOAD {
        return text;
    }
    wire.dataset.config = None;
    wire.dataset.tags.clear();
    wire.reread = true;
    serde_json::to_string(&wire).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        common::{bus::LocalBus, Timestamp},
        dataset::store::{NewDataset, SqliteDatasetStore},
    };

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

    fn updates(capacity: usize) -> (tempfile::TempDir, Arc<dyn DatasetStore>, Updates) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn DatasetStore> =
            Arc::new(SqliteDatasetStore::open(&dir.path().join("d.sqlite")).unwrap());
        let updates = Updates::new(Arc::new(LocalBus::new(capacity)), store.clone());
        (dir, store, updates)
    }

    #[tokio::test]
    async fn filters_by_id() {
        let (_dir, _store, updates) = updates(16);
        let mut only_b = Box::pin(updates.subscribe(Some("b".into())));
        let mut all = Box::pin(updates.subscribe(None));
        for id in ["a", "b", "a"] {
            updates.publish(dataset(id)).await;
        }
        assert_eq!(only_b.next().await.unwrap().unwrap().id, "b");
        let ids: Vec<String> = all.by_ref().take(3).map(|d| d.unwrap().id).collect().await;
        assert_eq!(ids, ["a", "b", "a"]);
    }

    #[tokio::test]
    async fn a_lagging_subscriber_is_told_how_many_it_missed() {
        let (_dir, _store, updates) = updates(2);
        let mut stream = Box::pin(updates.subscribe(None));
        for i in 0..5 {
            updates.publish(dataset(&i.to_string())).await;
        }
        match stream.next().await.unwrap() {
            Err(Lagged { missed }) => assert_eq!(missed, Some(3)),
            Ok(d) => panic!("expected a lag error, got {}", d.id),
        }
        // Then the stream goes on with what is still buffered.
        assert_eq!(stream.next().await.unwrap().unwrap().id, "3");
        assert_eq!(stream.next().await.unwrap().unwrap().id, "4");
        let err = Lagged { missed: Some(3) }.extend();
        assert!(err.message.contains("missed 3"), "{}", err.message);
    }

    #[tokio::test]
    async fn a_record_too_big_for_a_notice_is_reread() {
        let (_dir, store, updates) = updates(16);
        let config = serde_json::json!({ "blob": "x".repeat(20_000) });
        let stored = store
            .create(NewDataset {
                name: "big".into(),
                r#type: "t".into(),
                config: Some(config.clone()),
                tags: vec![],
            })
            .await
            .unwrap();
        let mut stream = Box::pin(updates.subscribe(None));
        updates.publish(stored.clone()).await;
        let mut gone = stored.clone();
        gone.id = "deleted-meanwhile".into();
        updates.publish(gone).await;
        assert_eq!(stream.next().await.unwrap().unwrap(), stored);
        let without = stream.next().await.unwrap().unwrap();
        assert_eq!(
            (without.id.as_str(), without.config),
            ("deleted-meanwhile", None)
        );
    }
}
