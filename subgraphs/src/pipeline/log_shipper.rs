//! Delivers the runs' log lines from the store's outbox to the log subgraph
//! (`ingestLogs`), in order, in batches, from one background task.
//!
//! A line reaches the outbox in the transaction of the change it describes
//! (see `outbox`), so neither an unreachable log subgraph nor a killed
//! process loses it: the batch is retried with capped backoff, and what is
//! left when the process stops is shipped by the next one. Each line carries
//! an idempotency key, so a batch retried after a lost response stores
//! nothing twice.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use serde_json::json;
use tokio::sync::Notify;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    outbox::{Level, LogLine},
    peers::{CallError, GraphqlClient},
    store::PipelineStore,
};
use crate::common::Timestamp;

/// Lines sent per `ingestLogs` call at most.
pub const BATCH_SIZE: usize = 500;
/// Longest message sent; longer ones are cut (the rest is in our own tracing output).
pub const MAX_MESSAGE_CHARS: usize = 4000;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often an idle shipper of a shared store looks for lines.
pub const SHARED_POLL: Duration = Duration::from_secs(2);
/// How long a stopping service keeps trying to deliver what is queued.
const FINAL_FLUSH: Duration = Duration::from_secs(2);
/// How often a replica renews its claim on the batch it is delivering; a
/// claim not renewed for the store's stale period (a few of these) is taken
/// back by the other replicas, as a dead replica's.
const CLAIM_RENEWAL: Duration = Duration::from_secs(2);

struct Inner {
    notify: Notify,
    next_seq: AtomicU64,
    /// Random per process: keys of two processes (a restart, replicas)
    /// never collide, and no other caller can guess one in advance.
    nonce: String,
}

/// Makes the runs' log lines and wakes the delivery task; cheap to clone.
#[derive(Clone)]
pub struct LogShipper {
    inner: Arc<Inner>,
}

impl Default for LogShipper {
    fn default() -> Self {
        LogShipper {
            inner: Arc::new(Inner {
                notify: Notify::new(),
                next_seq: AtomicU64::new(1),
                nonce: uuid::Uuid::new_v4().simple().to_string(),
            }),
        }
    }
}

impl LogShipper {
    /// A line of a run, keyed `{pipeline_id}:{process nonce}:{sequence}`;
    /// it goes out once the store has committed it and `wake` is called.
    pub fn line(
        &self,
        pipeline_id: &str,
        level: Level,
        node: Option<&str>,
        message: impl Into<String>,
    ) -> LogLine {
        let seq = self.inner.next_seq.fetch_add(1, Ordering::Relaxed);
        let key = format!("{pipeline_id}:{}:{seq}", self.inner.nonce);
        keyed_line(pipeline_id, level, node, message.into(), key)
    }

    /// Tells the delivery task that the outbox has new lines.
    pub fn wake(&self) {
        self.inner.notify.notify_one();
    }

    /// Starts the task that delivers `store`'s outbox to `client` until
    /// `shutdown`. With `shared` (replicas on one store) an idle task also
    /// looks every [`SHARED_POLL`], for lines a stopped replica left.
    pub fn spawn(
        &self,
        store: Arc<dyn PipelineStore>,
        client: GraphqlClient,
        tasks: &TaskTracker,
        shutdown: CancellationToken,
        shared: bool,
    ) {
        let delivery = Delivery {
            store,
            client,
            shipper: self.clone(),
            poll: if shared { SHARED_POLL } else { Duration::MAX },
        };
        tasks.spawn(async move { delivery.run(shutdown).await });
    }
}

/// A line with a fixed key: one that must be stored once even when written
/// again by a later process (e.g. restart recovery).
pub fn keyed_line(
    pipeline_id: &str,
    level: Level,
    node: Option<&str>,
    mut message: String,
    key: String,
) -> LogLine {
    tracing::debug!(pipeline_id, ?level, node, %message, "run log");
    if message.chars().count() > MAX_MESSAGE_CHARS {
        message = message.chars().take(MAX_MESSAGE_CHARS).collect::<String>() + "…";
    }
    LogLine {
        pipeline_id: pipeline_id.to_string(),
        level,
        message,
        node: node.map(String::from),
        // Lines a millisecond apart (a node's end and the next one's start)
        // keep their order even when they reach the log service in
        // different batches, through different replicas.
        time: Timestamp::now().to_rfc3339_micros(),
        key,
    }
}

/// Why a delivery did not happen.
#[derive(Debug)]
enum Undelivered {
    Store(crate::common::ServiceError),
    Call(CallError),
}

impl std::fmt::Display for Undelivered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Undelivered::Store(e) => write!(f, "cannot read the log outbox: {e}"),
            Undelivered::Call(e) => e.fmt(f),
        }
    }
}

/// The delivery task's state.
struct Delivery {
    store: Arc<dyn PipelineStore>,
    client: GraphqlClient,
    shipper: LogShipper,
    poll: Duration,
}

impl Delivery {
    async fn run(self, shutdown: CancellationToken) {
        let mut backoff = FIRST_BACKOFF;
        let mut outage = false;
        loop {
            match self.send_next().await {
                Ok(0) => {
                    tokio::select! {
                        _ = self.shipper.inner.notify.notified() => continue,
                        _ = tokio::time::sleep(self.poll) => continue,
                        _ = shutdown.cancelled() => break,
                    }
                }
                Ok(sent) => {
                    if outage {
                        tracing::info!(url = %self.client.url, sent, "log subgraph reachable again; delivering the log outbox");
                        outage = false;
                    }
                    backoff = FIRST_BACKOFF;
                }
                Err(e) => {
                    if !outage {
                        let queued = self.store.queued_log().await.unwrap_or(0);
                        tracing::warn!(url = %self.client.url, error = %e, queued, "cannot deliver log lines; they stay in the outbox and are retried");
                        outage = true;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        self.final_flush().await;
    }

    /// Sends one batch; returns how many lines were delivered (0: the outbox is empty).
    async fn send_next(&self) -> Result<usize, Undelivered> {
        let batch = self
            .store
            .take_log(BATCH_SIZE)
            .await
            .map_err(Undelivered::Store)?;
        if batch.is_empty() {
            return Ok(0);
        }
        if let Err(e) = self.renewing(deliver(&self.client, &batch.lines)).await {
            if let Err(store) = self.store.release_log().await {
                tracing::error!(error = %store, "cannot return an undelivered batch to the log outbox");
            }
            return Err(Undelivered::Call(e));
        }
        let sent = batch.lines.len();
        self.store
            .ack_log(batch)
            .await
            .map_err(Undelivered::Store)?;
        Ok(sent)
    }

    /// Runs `delivery`, renewing the claim on its batch every
    /// [`CLAIM_RENEWAL`] until it ends.
    async fn renewing<T>(&self, delivery: impl std::future::Future<Output = T>) -> T {
        tokio::pin!(delivery);
        let mut renew = tokio::time::interval(CLAIM_RENEWAL);
        renew.tick().await;
        loop {
            tokio::select! {
                out = &mut delivery => return out,
                _ = renew.tick() => {
                    if let Err(e) = self.store.renew_log().await {
                        tracing::warn!(error = %e, "cannot renew the claim on the log lines being delivered; another replica may deliver them too, which their keys make harmless");
                    }
                }
            }
        }
    }

    /// Shutting down: one last short try to deliver what is queued; the
    /// rest waits in the outbox for the next start.
    async fn final_flush(&self) {
        let deadline = tokio::time::Instant::now() + FINAL_FLUSH;
        loop {
            match tokio::time::timeout_at(deadline, self.send_next()).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => break,
            }
        }
        let left = self.store.queued_log().await.unwrap_or(0);
        if left > 0 {
            tracing::warn!(kept = left, url = %self.client.url, "stopping with log lines the log subgraph did not take; they stay in the outbox and go out on the next start");
        }
    }
}

/// Sends `lines`; when the log subgraph refuses something in them, sends
/// them one by one so one bad line does not block the rest.
async fn deliver(client: &GraphqlClient, lines: &[LogLine]) -> Result<(), CallError> {
    match ingest(client, lines).await {
        Err(CallError::Graphql {
            code: Some(code), ..
        }) if code == "BAD_USER_INPUT" => {}
        other => return other,
    }
    for line in lines {
        match ingest(client, std::slice::from_ref(line)).await {
            Ok(()) => {}
            Err(CallError::Graphql {
                code: Some(code),
                message,
            }) if code == "BAD_USER_INPUT" => {
                tracing::error!(key = %line.key, pipeline_id = %line.pipeline_id, message = %line.message, error = %message, "the log subgraph refused a log line; dropping it");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn ingest(client: &GraphqlClient, lines: &[LogLine]) -> Result<(), CallError> {
    client
        .call(
            "mutation($entries: [LogEntryInput!]!) { ingestLogs(entries: $entries) }",
            json!({ "entries": lines }),
        )
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_log_lines_carry_microseconds_so_lines_within_a_millisecond_keep_their_order() {
        let shipper = LogShipper::default();
        let first = shipper.line("run", Level::Info, None, "one").time;
        let second = shipper.line("run", Level::Info, None, "two").time;
        let fraction = |t: &str| {
            t.split_once('.')
                .map(|(_, f)| f.trim_end_matches('Z').len())
        };
        assert_eq!(fraction(&first), Some(6), "{first}");
        let (a, b) = (
            Timestamp::parse(&first).unwrap(),
            Timestamp::parse(&second).unwrap(),
        );
        assert!(a <= b, "{first} then {second}");
    }

    #[test]
    fn keys_differ_between_processes_and_cannot_be_guessed() {
        let (a, b) = (LogShipper::default(), LogShipper::default());
        let ka = a.line("run", Level::Info, None, "one").key;
        let kb = b.line("run", Level::Info, None, "one").key;
        assert_ne!(ka, kb, "a restarted process must not reuse keys");
        assert!(ka.starts_with("run:") && ka.ends_with(":1"), "{ka}");
        assert!(ka.len() > "run::1".len() + 30, "{ka}");
    }

    #[test]
    fn long_messages_are_cut() {
        let l =
            LogShipper::default().line("r", Level::Info, None, "x".repeat(MAX_MESSAGE_CHARS + 10));
        assert_eq!(l.message.chars().count(), MAX_MESSAGE_CHARS + 1);
    }
}
