//! Run events: every status change and node start/finish goes out on the
//! service's bus (so a follower on any replica sees every replica's runs);
//! `pipelineEvents(id)` follows one run.

use std::sync::Arc;

use async_graphql::{SimpleObject, ID};
use futures::Stream;
use tokio_util::sync::CancellationToken;

use super::{
    model::{PipelineStatus, Run},
    store::PipelineStore,
};
use crate::common::{
    bus::{Bus, Notice, Subscription, MAX_PAYLOAD},
    ServiceError, ServiceResult, Timestamp,
};

/// Something that happened to a run.
#[derive(SimpleObject, Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
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

/// How often a waiting follower re-reads its run, in case an event was
/// never announced (its publish failed): a status change shows up anyway.
const REREAD: std::time::Duration = std::time::Duration::from_secs(5);

/// The bus topic of run events.
pub const TOPIC: &str = "events";

/// Publishes and follows run events over the service's bus.
#[derive(Clone)]
pub struct EventBus {
    bus: Arc<dyn Bus>,
}

impl EventBus {
    pub fn new(bus: Arc<dyn Bus>) -> Self {
        EventBus { bus }
    }

    /// Sent after the change is committed; a failure to announce is logged
    /// (followers that miss it re-read the run when they hear of a gap).
    pub async fn publish(&self, event: PipelineEvent) {
        if let Err(e) = self.bus.publish(TOPIC, encode(event)).await {
            tracing::warn!(error = %e, "could not announce a run event");
        }
    }

    pub fn subscribe(&self) -> Subscription {
        self.bus.subscribe(TOPIC)
    }
}

/// The event as JSON, its message cut if the whole would not fit a notice.
fn encode(mut event: PipelineEvent) -> String {
    loop {
        let text = serde_json::to_string(&event).unwrap_or_default();
        let Some(message) = event.message.as_mut().filter(|_| text.len() > MAX_PAYLOAD) else {
            return text;
        };
        let keep = message.chars().count() / 2;
        *message = message.chars().take(keep).collect::<String>() + "…";
    }
}

struct Follow {
    rx: Subscription,
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
                // A notice whose publish failed is never heard: look now and then.
                _ = tokio::time::sleep(REREAD) => Some(Notice::Gap(None)),
                _ = st.shutdown.cancelled() => return None,
            };
            let missed = match received {
                // Most events are other runs': skip them without parsing.
                Some(Notice::Message(text)) if !text.contains(st.id.as_str()) => continue,
                Some(Notice::Message(text)) => match serde_json::from_str::<PipelineEvent>(&text) {
                    Ok(ev) if ev.pipeline_id.as_str() == st.id => {
                        if !accept(st.last, &ev) {
                            continue;
                        }
                        st.last = ev.status;
                        st.done = ev.status.is_terminal();
                        return Some((ev, st));
                    }
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "unreadable run event notice");
                        Some(1)
                    }
                },
                Some(Notice::Gap(missed)) => missed,
                None => return None,
            };
            // Events were missed: say where the run is now.
            let run = match st.store.get(st.id.clone()).await {
                Ok(Some(run)) => run,
                _ => return None,
            };
            if run.status == st.last {
                continue;
            }
            let mut ev = PipelineEvent::current(&run);
            let missed = missed.map_or("some".to_string(), |n| n.to_string());
            ev.message = Some(format!(
                "{missed} event(s) were missed; now {}: {}",
                run.status,
                ev.message.unwrap_or_default()
            ));
            st.last = ev.status;
            st.done = ev.status.is_terminal();
            return Some((ev, st));
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
    use crate::{
        common::bus::LocalBus,
        pipeline::store::{SqlitePipelineStore, Transition},
    };
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
        let bus = EventBus::new(Arc::new(LocalBus::new(2)));
        let mut events = Box::pin(
            follow(&bus, store.clone(), "p".into(), CancellationToken::new())
                .await
                .unwrap(),
        );
        assert_eq!(events.next().await.unwrap().status, Running);
        // more events than the channel holds, and the run finishes meanwhile
        for _ in 0..5 {
            bus.publish(ev(Running, Some("uppercase"))).await;
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
        let bus = EventBus::new(Arc::new(LocalBus::new(16)));
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
