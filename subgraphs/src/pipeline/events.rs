//! Run events: every status change and node start/finish goes out on one
//! broadcast channel per service; `pipelineEvents(id)` follows one run.

use std::sync::Arc;

use async_graphql::{SimpleObject, ID};
use futures::Stream;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use super::{
    model::{PipelineStatus, Run},
    store::PipelineStore,
};
use crate::common::{ServiceError, ServiceResult, Timestamp};

/// Something that happened to a run.
#[derive(SimpleObject, Clone, Debug, PartialEq)]
pub struct PipelineEvent {
    #[graphql(name = "pipelineId")]
    pub pipeline_id: ID,
    /// The run's status after the event.
    pub status: PipelineStatus,
    /// Set for a node's start, finish or failure.
    pub node: Option<String>,
    pub message: Option<String>,
    pub timestamp: Timestamp,
}

impl PipelineEvent {
    /// The run as it is now, as an event: what a follower sees first.
    pub fn current(run: &Run) -> PipelineEvent {
        let (message, timestamp) = match run.status {
            PipelineStatus::Pending => ("waiting for a worker".to_string(), run.created_at),
            PipelineStatus::Running => (
                "running".to_string(),
                run.started_at.unwrap_or(run.created_at),
            ),
            _ => (
                run.error
                    .clone()
                    .unwrap_or_else(|| format!("finished: {}", run.status)),
                run.finished_at.unwrap_or(run.created_at),
            ),
        };
        PipelineEvent {
            pipeline_id: run.id.clone().into(),
            status: run.status,
            node: None,
            message: Some(message),
            timestamp,
        }
    }
}

/// Events waiting for a slow follower; past this it re-reads the run.
const CAPACITY: usize = 1024;

#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<PipelineEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::with_capacity(CAPACITY)
    }
}

impl EventBus {
    pub fn with_capacity(capacity: usize) -> Self {
        EventBus {
            tx: broadcast::channel(capacity).0,
        }
    }

    pub fn publish(&self, event: PipelineEvent) {
        // No follower is not an error.
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<PipelineEvent> {
        self.tx.subscribe()
    }
}

struct Follow {
    rx: broadcast::Receiver<PipelineEvent>,
    store: Arc<dyn PipelineStore>,
    id: String,
    first: Option<PipelineEvent>,
    last: PipelineStatus,
    done: bool,
    shutdown: CancellationToken,
}

/// The events of run `id`: its current status first, then each change and
/// node event, ending after a final status. Subscribes before reading the
/// run, so nothing between the read and the first event is missed.
pub async fn follow(
    bus: &EventBus,
    store: Arc<dyn PipelineStore>,
    id: String,
    shutdown: CancellationToken,
) -> ServiceResult<impl Stream<Item = PipelineEvent> + Send + 'static> {
    let rx = bus.subscribe();
    let run = store
        .get(id.clone())
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("no pipeline run with id `{id}`")))?;
    let first = PipelineEvent::current(&run);
    let state = Follow {
        rx,
        store,
        id,
        last: first.status,
        first: Some(first),
        done: false,
        shutdown,
    };
    Ok(futures::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        if let Some(ev) = st.first.take() {
            st.done = ev.status.is_terminal();
            return Some((ev, st));
        }
        loop {
            let received = tokio::select! {
                r = st.rx.recv() => r,
                _ = st.shutdown.cancelled() => return None,
            };
            match received {
                Ok(ev) if ev.pipeline_id.as_str() == st.id => {
                    if !accept(st.last, &ev) {
                        continue;
                    }
                    st.last = ev.status;
                    st.done = ev.status.is_terminal();
                    return Some((ev, st));
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(missed)) => {
                    // Too slow to see every event: say where the run is now.
                    let run = match st.store.get(st.id.clone()).await {
                        Ok(Some(run)) => run,
                        _ => return None,
                    };
                    if run.status == st.last {
                        continue;
                    }
                    let mut ev = PipelineEvent::current(&run);
                    ev.message = Some(format!(
                        "{missed} event(s) were missed; now {}: {}",
                        run.status,
                        ev.message.unwrap_or_default()
                    ));
                    st.last = ev.status;
                    st.done = ev.status.is_terminal();
                    return Some((ev, st));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }))
}

/// Whether a follower that has shown status `last` should see `ev`: not a
/// status it already showed, and not one from before it (a status change
/// published after the follower read the run).
fn accept(last: PipelineStatus, ev: &PipelineEvent) -> bool {
    if ev.status == last {
        ev.node.is_some()
    } else {
        last.can_move_to(ev.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::store::{SqlitePipelineStore, Transition};
    use futures::StreamExt;
    use PipelineStatus::*;

    fn ev(status: PipelineStatus, node: Option<&str>) -> PipelineEvent {
        PipelineEvent {
            pipeline_id: "p".into(),
            status,
            node: node.map(String::from),
            message: None,
            timestamp: Timestamp::now(),
        }
    }

    #[test]
    fn followers_skip_what_they_already_showed() {
        // read RUNNING, then the RUNNING change itself arrives: skipped
        assert!(!accept(Running, &ev(Running, None)));
        // a PENDING change from before the read: skipped
        assert!(!accept(Running, &ev(Pending, None)));
        assert!(accept(Running, &ev(Running, Some("echo"))));
        assert!(accept(Running, &ev(Success, None)));
        assert!(accept(Pending, &ev(Running, None)));
        assert!(accept(Pending, &ev(Cancelled, None)));
    }

    fn run(id: &str, status: PipelineStatus) -> Run {
        Run {
            id: id.into(),
            name: "example01".into(),
            status,
            parameters: vec![],
            tags: vec![],
            data_catalog: vec![],
            created_at: crate::pipeline::model::now(),
            started_at: None,
            finished_at: None,
            error: None,
        }
    }

    #[tokio::test]
    async fn a_lagging_follower_rereads_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlitePipelineStore::open(&dir.path().join("p.sqlite"), 100).unwrap();
        store.insert(run("p", Running), vec![]).await.unwrap();
        let store: Arc<dyn PipelineStore> = Arc::new(store);
        let bus = EventBus::with_capacity(2);
        let mut events = Box::pin(
            follow(&bus, store.clone(), "p".into(), CancellationToken::new())
                .await
                .unwrap(),
        );
        assert_eq!(events.next().await.unwrap().status, Running);
        // more events than the channel holds, and the run finishes meanwhile
        for _ in 0..5 {
            bus.publish(ev(Running, Some("uppercase")));
        }
        store
            .transition(
                "p".into(),
                Transition {
                    to: Success,
                    at: Timestamp::now(),
                    error: None,
                    log: vec![],
                },
            )
            .await
            .unwrap();
        let caught_up = events.next().await.unwrap();
        assert_eq!(caught_up.status, Success);
        assert!(caught_up.message.unwrap().contains("event(s) were missed"));
        assert!(events.next().await.is_none());
    }

    #[tokio::test]
    async fn following_a_finished_or_unknown_run() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlitePipelineStore::open(&dir.path().join("p.sqlite"), 100).unwrap();
        store.insert(run("done", Cancelled), vec![]).await.unwrap();
        let store: Arc<dyn PipelineStore> = Arc::new(store);
        let bus = EventBus::default();
        let events: Vec<_> = follow(&bus, store.clone(), "done".into(), CancellationToken::new())
            .await
            .unwrap()
            .collect()
            .await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].status, Cancelled);
        let err = follow(&bus, store, "nope".into(), CancellationToken::new())
            .await
            .err()
            .unwrap();
        assert_eq!(err.code(), "NOT_FOUND");
    }
}
