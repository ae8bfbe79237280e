//! Sends the runs' log lines to the log subgraph (`ingestLogs`), in order,
//! in batches, from one background task draining a bounded queue.
//!
//! While the log subgraph is unreachable the lines stay queued and the batch
//! is retried with capped backoff, so none is lost while the process lives.
//! Each line carries an idempotency key, so a batch retried after a lost
//! response stores nothing twice. When the queue is full the oldest lines are
//! dropped; that is reported in our own logs and, once the log subgraph is
//! back, as a WARNING line in each affected run's log.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use serde::Serialize;
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::peers::{CallError, GraphqlClient};
use crate::common::Timestamp;

/// Lines sent per `ingestLogs` call at most.
pub const BATCH_SIZE: usize = 500;
/// Longest message sent; longer ones are cut (the rest is in our own tracing output).
pub const MAX_MESSAGE_CHARS: usize = 4000;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long a stopping service keeps trying to deliver what is queued.
const FINAL_FLUSH: Duration = Duration::from_secs(2);

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Info,
    Warning,
    Error,
}

/// One `LogEntryInput` of the log subgraph.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    pub pipeline_id: String,
    pub level: Level,
    pub message: String,
    pub node: Option<String>,
    /// When it happened, not when it was delivered.
    pub time: String,
    pub key: String,
}

/// Who lost lines to overflow: reported once the log subgraph answers again.
#[derive(Debug)]
struct Dropped {
    count: u64,
    last_seq: u64,
    last_time: String,
}

/// The queue itself, without I/O: ordering, overflow and acknowledgement.
#[derive(Debug)]
pub struct LogQueue {
    lines: VecDeque<(u64, LogLine)>,
    capacity: usize,
    dropped: BTreeMap<String, Dropped>,
    /// The last sequence number of the batch in flight, if any.
    in_flight: Option<u64>,
    /// Lines of the batch in flight that overflow pushed out: lost only if
    /// that delivery fails.
    dropped_in_flight: BTreeMap<String, Dropped>,
    /// Overflow warnings taken into a batch and not yet acknowledged.
    warnings: Vec<LogLine>,
    /// Drops not yet reported to tracing.
    unreported_drops: u64,
}

/// What one batch holds; `ack` removes it from the queue once delivered.
#[derive(Debug)]
pub struct Batch {
    pub lines: Vec<LogLine>,
    warnings: usize,
    last_seq: Option<u64>,
}

impl LogQueue {
    pub fn new(capacity: usize) -> Self {
        LogQueue {
            lines: VecDeque::new(),
            capacity: capacity.max(1),
            dropped: BTreeMap::new(),
            in_flight: None,
            dropped_in_flight: BTreeMap::new(),
            warnings: Vec::new(),
            unreported_drops: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.dropped.is_empty() && self.warnings.is_empty()
    }

    /// Appends a line; when full, drops the oldest first.
    pub fn push(&mut self, seq: u64, line: LogLine) {
        if self.lines.len() >= self.capacity {
            if let Some((old_seq, old)) = self.lines.pop_front() {
                if self.in_flight.is_some_and(|last| old_seq <= last) {
                    record_drop(
                        &mut self.dropped_in_flight,
                        old.pipeline_id,
                        1,
                        old_seq,
                        old.time,
                    );
                } else {
                    record_drop(&mut self.dropped, old.pipeline_id, 1, old_seq, old.time);
                    self.unreported_drops += 1;
                }
            }
        }
        self.lines.push_back((seq, line));
    }

    /// The next lines to send: pending overflow warnings, then up to `max` queued lines.
    pub fn batch(&mut self, max: usize) -> Batch {
        if self.in_flight.take().is_some() {
            // the previous batch was not delivered: what overflow took from it is lost
            for (pipeline_id, d) in std::mem::take(&mut self.dropped_in_flight) {
                self.unreported_drops += d.count;
                record_drop(
                    &mut self.dropped,
                    pipeline_id,
                    d.count,
                    d.last_seq,
                    d.last_time,
                );
            }
        }
        for (pipeline_id, d) in std::mem::take(&mut self.dropped) {
            self.warnings.push(LogLine {
                key: format!("{pipeline_id}:dropped:{}", d.last_seq),
                message: format!(
                    "{} log line(s) of this run were dropped: the log subgraph was unreachable and the pipeline service's buffer (log_buffer = {}) was full",
                    d.count, self.capacity
                ),
                pipeline_id,
                level: Level::Warning,
                node: None,
                time: d.last_time,
            });
        }
        let mut lines = self.warnings.clone();
        let taken: Vec<&(u64, LogLine)> = self.lines.iter().take(max).collect();
        let last_seq = taken.last().map(|(s, _)| *s);
        self.in_flight = last_seq;
        lines.extend(taken.into_iter().map(|(_, l)| l.clone()));
        Batch {
            lines,
            warnings: self.warnings.len(),
            last_seq,
        }
    }

    /// Removes a delivered batch (lines that overflow already dropped are simply gone).
    pub fn ack(&mut self, batch: &Batch) {
        self.in_flight = None;
        self.dropped_in_flight.clear();
        self.warnings
            .drain(..batch.warnings.min(self.warnings.len()));
        if let Some(last) = batch.last_seq {
            while self.lines.front().is_some_and(|(s, _)| *s <= last) {
                self.lines.pop_front();
            }
        }
    }

    /// Drops counted since the last call.
    pub fn take_unreported_drops(&mut self) -> u64 {
        std::mem::take(&mut self.unreported_drops)
    }
}

fn record_drop(
    map: &mut BTreeMap<String, Dropped>,
    pipeline_id: String,
    count: u64,
    seq: u64,
    time: String,
) {
    let d = map.entry(pipeline_id).or_insert(Dropped {
        count: 0,
        last_seq: seq,
        last_time: time.clone(),
    });
    d.count += count;
    if seq >= d.last_seq {
        d.last_seq = seq;
        d.last_time = time;
    }
}

struct Inner {
    queue: Mutex<LogQueue>,
    notify: Notify,
    next_seq: std::sync::atomic::AtomicU64,
    /// Random per process: keys of two processes (a restart, replicas)
    /// never collide, and no other caller can guess one in advance.
    nonce: String,
}

/// The handle runs log through; cheap to clone.
#[derive(Clone)]
pub struct LogShipper {
    inner: Arc<Inner>,
}

impl LogShipper {
    pub fn new(capacity: usize) -> Self {
        LogShipper {
            inner: Arc::new(Inner {
                queue: Mutex::new(LogQueue::new(capacity)),
                notify: Notify::new(),
                next_seq: std::sync::atomic::AtomicU64::new(1),
                nonce: uuid::Uuid::new_v4().simple().to_string(),
            }),
        }
    }

    fn queue(&self) -> MutexGuard<'_, LogQueue> {
        // A panic while holding this lock cannot leave the queue inconsistent
        // (every method finishes its change), so a poisoned lock is still usable.
        self.inner.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a line of a run; its key is `{pipeline_id}:{process nonce}:{sequence}`.
    pub fn log(
        &self,
        pipeline_id: &str,
        level: Level,
        node: Option<&str>,
        message: impl Into<String>,
    ) {
        let seq = self
            .inner
            .next_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.push(
            seq,
            pipeline_id,
            level,
            node,
            message.into(),
            format!("{pipeline_id}:{}:{seq}", self.inner.nonce),
        );
    }

    /// Queues a line with a fixed key: for a line that must be stored once
    /// even when written again by a later process (e.g. restart recovery).
    pub fn log_keyed(
        &self,
        pipeline_id: &str,
        level: Level,
        message: impl Into<String>,
        key: String,
    ) {
        let seq = self
            .inner
            .next_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.push(seq, pipeline_id, level, None, message.into(), key);
    }

    fn push(
        &self,
        seq: u64,
        pipeline_id: &str,
        level: Level,
        node: Option<&str>,
        mut message: String,
        key: String,
    ) {
        tracing::debug!(pipeline_id, ?level, node, %message, "run log");
        if message.chars().count() > MAX_MESSAGE_CHARS {
            message = message.chars().take(MAX_MESSAGE_CHARS).collect::<String>() + "…";
        }
        let line = LogLine {
            pipeline_id: pipeline_id.to_string(),
            level,
            message,
            node: node.map(String::from),
            time: Timestamp::now().to_rfc3339(),
            key,
        };
        self.queue().push(seq, line);
        self.inner.notify.notify_one();
    }

    /// Lines waiting for delivery.
    pub fn queued(&self) -> usize {
        self.queue().len()
    }

    /// Starts the task that delivers the queue to `client` until `shutdown`.
    pub fn spawn(&self, client: GraphqlClient, tasks: &TaskTracker, shutdown: CancellationToken) {
        let shipper = self.clone();
        tasks.spawn(async move { shipper.run(client, shutdown).await });
    }

    async fn run(self, client: GraphqlClient, shutdown: CancellationToken) {
        let mut backoff = FIRST_BACKOFF;
        let mut outage = false;
        loop {
            if self.queue().is_empty() {
                tokio::select! {
                    _ = self.inner.notify.notified() => continue,
                    _ = shutdown.cancelled() => break,
                }
            }
            let result = self.send_next(&client).await;
            self.report_drops(&client);
            match result {
                Ok(sent) => {
                    if outage {
                        tracing::info!(url = %client.url, sent, "log subgraph reachable again; delivering the queued log lines");
                        outage = false;
                    }
                    backoff = FIRST_BACKOFF;
                }
                Err(e) => {
                    if !outage {
                        tracing::warn!(url = %client.url, error = %e, queued = self.queued(), "cannot deliver log lines; keeping them and retrying");
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
        self.final_flush(&client).await;
    }

    /// Sends one batch; returns how many lines were delivered.
    async fn send_next(&self, client: &GraphqlClient) -> Result<usize, CallError> {
        let batch = self.queue().batch(BATCH_SIZE);
        match ingest(client, &batch.lines).await {
            Ok(()) => {}
            Err(CallError::Graphql {
                code: Some(code), ..
            }) if code == "BAD_USER_INPUT" => {
                // The log subgraph refuses something in this batch: deliver
                // the lines one by one so one bad line does not block the rest.
                for line in &batch.lines {
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
            }
            Err(e) => return Err(e),
        }
        self.queue().ack(&batch);
        Ok(batch.lines.len())
    }

    fn report_drops(&self, client: &GraphqlClient) {
        let dropped = self.queue().take_unreported_drops();
        if dropped > 0 {
            tracing::warn!(
                dropped,
                url = %client.url,
                "log buffer full while the log subgraph is unreachable: dropped the oldest log lines (raise log_buffer to keep more)"
            );
        }
    }

    /// Shutting down: one last short try to deliver what is queued.
    async fn final_flush(&self, client: &GraphqlClient) {
        let deadline = tokio::time::Instant::now() + FINAL_FLUSH;
        while !self.queue().is_empty() {
            match tokio::time::timeout_at(deadline, self.send_next(client)).await {
                Ok(Ok(_)) => {}
                _ => break,
            }
        }
        let left = self.queued();
        if left > 0 {
            tracing::warn!(lost = left, url = %client.url, "stopping with log lines the log subgraph did not take");
        }
    }
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

    fn line(p: &str, n: u64) -> LogLine {
        LogLine {
            pipeline_id: p.into(),
            level: Level::Info,
            message: format!("m{n}"),
            node: None,
            time: format!("t{n}"),
            key: format!("{p}:{n}"),
        }
    }

    fn messages(b: &Batch) -> Vec<&str> {
        b.lines.iter().map(|l| l.message.as_str()).collect()
    }

    #[test]
    fn batches_keep_order_until_acknowledged() {
        let mut q = LogQueue::new(10);
        for n in 1..=5 {
            q.push(n, line("a", n));
        }
        let b = q.batch(3);
        assert_eq!(messages(&b), ["m1", "m2", "m3"]);
        // not acknowledged (delivery failed): the same lines come again
        let b = q.batch(3);
        assert_eq!(messages(&b), ["m1", "m2", "m3"]);
        q.ack(&b);
        assert_eq!(messages(&q.batch(3)), ["m4", "m5"]);
    }

    #[test]
    fn overflow_drops_oldest_and_warns_once_per_run() {
        let mut q = LogQueue::new(3);
        q.push(1, line("a", 1));
        q.push(2, line("b", 2));
        q.push(3, line("a", 3));
        q.push(4, line("a", 4));
        q.push(5, line("a", 5));
        assert_eq!(q.len(), 3);
        assert_eq!(q.take_unreported_drops(), 2);
        assert_eq!(q.take_unreported_drops(), 0);
        let b = q.batch(10);
        let got: Vec<(&str, Level, &str)> = b
            .lines
            .iter()
            .map(|l| (l.pipeline_id.as_str(), l.level, l.key.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("a", Level::Warning, "a:dropped:1"),
                ("b", Level::Warning, "b:dropped:2"),
                ("a", Level::Info, "a:3"),
                ("a", Level::Info, "a:4"),
                ("a", Level::Info, "a:5"),
            ]
        );
        assert!(b.lines[0]
            .message
            .starts_with("1 log line(s) of this run were dropped"));
        // a failed delivery keeps the warnings (same keys); new drops add their own
        q.push(6, line("a", 6));
        let b = q.batch(10);
        assert_eq!(b.lines.len(), 6);
        assert_eq!(b.lines[2].key, "a:dropped:3");
        q.ack(&b);
        assert!(q.is_empty());
    }

    #[test]
    fn overflow_during_delivery_loses_lines_only_if_delivery_fails() {
        let mut q = LogQueue::new(2);
        q.push(1, line("a", 1));
        q.push(2, line("a", 2));
        let b = q.batch(10);
        // while the batch is in flight, two more lines push out both sent ones
        q.push(3, line("a", 3));
        q.push(4, line("a", 4));
        q.ack(&b);
        assert_eq!(q.take_unreported_drops(), 0);
        assert_eq!(messages(&q.batch(10)), ["m3", "m4"]);

        let mut q = LogQueue::new(2);
        q.push(1, line("a", 1));
        q.push(2, line("a", 2));
        let _failed = q.batch(10);
        q.push(3, line("a", 3));
        let b = q.batch(10);
        assert_eq!(q.take_unreported_drops(), 1);
        assert_eq!(b.lines[0].key, "a:dropped:1");
        assert_eq!(messages(&b)[1..], ["m2", "m3"]);
    }

    #[test]
    fn lines_serialize_as_log_entry_input() {
        let v = serde_json::to_value(line("p", 1)).unwrap();
        assert_eq!(
            v,
            json!({"pipelineId": "p", "level": "INFO", "message": "m1", "node": null, "time": "t1", "key": "p:1"})
        );
    }
}

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn keys_differ_between_processes_and_cannot_be_guessed() {
        let (a, b) = (LogShipper::new(10), LogShipper::new(10));
        a.log("run", Level::Info, None, "one");
        b.log("run", Level::Info, None, "one");
        let key = |s: &LogShipper| s.queue().batch(1).lines[0].key.clone();
        let (ka, kb) = (key(&a), key(&b));
        assert_ne!(ka, kb, "a restarted process must not reuse keys");
        assert!(ka.starts_with("run:") && ka.ends_with(":1"), "{ka}");
        assert!(ka.len() > "run::1".len() + 30, "{ka}");
    }
}
