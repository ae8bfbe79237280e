//! The log service's operations: validated ingestion, paged history, and the
//! live stream (see [`super::stream`]).

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::store::{LineQuery, LogCursor, LogLevel, LogLine, LogStore, NewLogLine};
use crate::common::{
    bus::{Bus, Notice},
    check_len, check_limit, ServiceError, ServiceResult, Timestamp,
};

pub const MAX_ENTRIES: usize = 1000;
/// The bus topic that announces the highest stored line id.
pub const LINES_TOPIC: &str = "lines";
/// How often waiting streams re-read the last id, in case an announcement was lost.
const CATCH_UP: Duration = Duration::from_secs(2);
pub const MAX_MESSAGE_CHARS: usize = 10_000;
pub const MAX_NODE_CHARS: usize = 200;
pub const MAX_PIPELINE_ID_CHARS: usize = 200;
pub const MAX_KEY_CHARS: usize = 200;
pub const MAX_PAGE: i32 = 1000;
/// Runs in one `pipelineLogPages` call (the gateway batches a whole list level).
pub const MAX_BATCH_RUNS: usize = 10_000;

/// Shared by every request.
pub struct LogService {
    pub store: Arc<dyn LogStore>,
    /// The highest stored id (of any replica): a wake-up for live streams,
    /// which then read the store themselves, so a slow stream can never
    /// miss a line.
    pub last_id: watch::Sender<i64>,
    /// Tells every replica's streams about new lines.
    bus: Arc<dyn Bus>,
    /// What `ingestLogs` callers must send (`x-service-token`).
    pub service_token: Option<String>,
    /// Who may read logs (see `common::rbac`); nobody but the other
    /// services until the config says.
    pub authorization: crate::common::rbac::Authorization,
}

/// A line as the client sent it.
pub struct EntryDraft {
    pub pipeline_id: String,
    pub level: LogLevel,
    pub message: String,
    pub node: Option<String>,
    pub time: Option<Timestamp>,
    pub key: Option<String>,
}

/// One page of history.
pub struct HistoryPage {
    pub items: Vec<LogLine>,
    pub next_cursor: Option<String>,
}

pub fn check_pipeline_id(field: &str, id: &str) -> ServiceResult<()> {
    if id.trim().is_empty() {
        return Err(ServiceError::bad_input(format!(
            "`{field}` must not be empty"
        )));
    }
    check_len(field, id, MAX_PIPELINE_ID_CHARS)
}

fn validate(i: usize, e: EntryDraft, now: Timestamp) -> ServiceResult<NewLogLine> {
    check_pipeline_id(&format!("entries[{i}].pipelineId"), &e.pipeline_id)?;
    check_len(
        &format!("entries[{i}].message"),
        &e.message,
        MAX_MESSAGE_CHARS,
    )?;
    if let Some(node) = &e.node {
        check_len(&format!("entries[{i}].node"), node, MAX_NODE_CHARS)?;
    }
    if let Some(key) = &e.key {
        if key.is_empty() {
            return Err(ServiceError::bad_input(format!(
                "`entries[{i}].key` must not be empty; omit it for a line without an idempotency key"
            )));
        }
        check_len(&format!("entries[{i}].key"), key, MAX_KEY_CHARS)?;
    }
    Ok(NewLogLine {
        pipeline_id: e.pipeline_id,
        level: e.level,
        message: e.message,
        node: e.node,
        time: e.time.unwrap_or(now),
        key: e.key,
    })
}

impl LogService {
    pub fn new(
        store: Arc<dyn LogStore>,
        bus: Arc<dyn Bus>,
        last_id: i64,
        service_token: Option<String>,
    ) -> LogService {
        LogService {
            store,
            bus,
            last_id: watch::Sender::new(last_id),
            service_token,
            authorization: Default::default(),
        }
    }

    /// Validates every entry first, then stores all in one transaction.
    pub async fn ingest(&self, entries: Vec<EntryDraft>) -> ServiceResult<usize> {
        if entries.len() > MAX_ENTRIES {
            return Err(ServiceError::bad_input(format!(
                "`entries` holds {} lines; send at most {MAX_ENTRIES} per call",
                entries.len()
            )));
        }
        if entries.is_empty() {
            return Ok(0);
        }
        let now = Timestamp::now();
        let lines = entries
            .into_iter()
            .enumerate()
            .map(|(i, e)| validate(i, e, now))
            .collect::<ServiceResult<Vec<_>>>()?;
        let (stored, last) = self.store.insert(lines).await?;
        if stored > 0 {
            self.saw(last);
            if let Err(e) = self.bus.publish(LINES_TOPIC, last.to_string()).await {
                // Stored all the same; other replicas catch up on their next tick.
                tracing::warn!(error = %e, "could not announce new log lines");
            }
        }
        Ok(stored)
    }

    /// Wakes streams if `last` is past what they know.
    fn saw(&self, last: i64) {
        self.last_id.send_if_modified(|known| {
            let newer = last > *known;
            if newer {
                *known = last;
            }
            newer
        });
    }

    /// Feeds other replicas' lines to this replica's streams until
    /// `shutdown`: each announcement wakes them; after a lost one (a gap),
    /// and every `CATCH_UP` while streams are waiting, the store's last id
    /// does, so a line is never left unseen for long even if its
    /// announcement never came.
    pub async fn follow_bus(self: Arc<Self>, shutdown: CancellationToken) {
        let mut notices = self.bus.subscribe(LINES_TOPIC);
        let mut tick = tokio::time::interval(CATCH_UP);
        loop {
            let catch_up = tokio::select! {
                notice = notices.recv() => match notice {
                    Some(Notice::Message(id)) => match id.parse() {
                        Ok(id) => { self.saw(id); false }
                        Err(_) => true,
                    },
                    Some(Notice::Gap(_)) => true,
                    None => return,
                },
                _ = tick.tick() => self.last_id.receiver_count() > 0,
                _ = shutdown.cancelled() => return,
            };
            if catch_up {
                match self.store.last_id().await {
                    Ok(id) => self.saw(id),
                    Err(e) => tracing::warn!(error = %e, "could not read the last log line id"),
                }
            }
        }
    }

    /// The first page of each run's history, in the order of `pipeline_ids`:
    /// what the gateway asks for `Pipeline.logs` of a whole list at once.
    pub async fn first_pages(
        &self,
        pipeline_ids: &[String],
        limit: i32,
        min_level: Option<LogLevel>,
    ) -> ServiceResult<Vec<HistoryPage>> {
        if pipeline_ids.len() > MAX_BATCH_RUNS {
            return Err(ServiceError::bad_input(format!(
                "`pipelineIds` holds {} ids; at most {MAX_BATCH_RUNS} per call",
                pipeline_ids.len()
            )));
        }
        for (i, id) in pipeline_ids.iter().enumerate() {
            check_pipeline_id(&format!("pipelineIds[{i}]"), id)?;
        }
        let limit = check_limit(limit, MAX_PAGE)?;
        let lines = self
            .store
            .first_lines(pipeline_ids.to_vec(), min_level, limit + 1)
            .await?;
        Ok(lines
            .into_iter()
            .map(|mut items| {
                let next_cursor = if items.len() > limit {
                    items.truncate(limit);
                    items.last().map(|l| LogCursor::of(l).encode())
                } else {
                    None
                };
                HistoryPage { items, next_cursor }
            })
            .collect())
    }

    pub async fn history(
        &self,
        pipeline_id: &str,
        limit: i32,
        cursor: Option<&str>,
        min_level: Option<LogLevel>,
    ) -> ServiceResult<HistoryPage> {
        check_pipeline_id("pipelineId", pipeline_id)?;
        let limit = check_limit(limit, MAX_PAGE)?;
        let after = cursor.map(LogCursor::decode).transpose()?;
        let query = LineQuery {
            pipeline_id: pipeline_id.to_string(),
            min_level,
            limit: limit + 1,
        };
        let mut items = self.store.history(query, after, None).await?;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|l| LogCursor::of(l).encode())
        } else {
            None
        };
        Ok(HistoryPage { items, next_cursor })
    }
}
