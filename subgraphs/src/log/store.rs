//! Log lines: the storage trait and its SQLite implementation.
//!
//! Each line gets a rowid that only grows (AUTOINCREMENT) in commit order, so
//! "every line after rowid N" is an exact, gap-free resume point for the live
//! stream; history is ordered by (time, rowid).

use async_graphql::Enum;
use chrono::{DateTime, Utc};
use rusqlite::{params, Row};

use crate::common::{
    cursor,
    storage::{in_order, to_json},
    Db, ServiceError, ServiceResult, StoreFuture, Timestamp,
};

/// Version 1: the schema as first released (idempotent, so databases made
/// before versioning was added open as version 1).
const SCHEMA_V1: &str = r#"
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline_id TEXT NOT NULL,
    level INTEGER NOT NULL,
    message TEXT NOT NULL,
    node TEXT,
    time INTEGER NOT NULL,
    key TEXT UNIQUE
);
CREATE INDEX IF NOT EXISTS logs_by_pipeline_time ON logs (pipeline_id, time, id);
CREATE INDEX IF NOT EXISTS logs_by_pipeline_id ON logs (pipeline_id, id);
"#;

/// Schema versions in order; a database is brought to the last one on
/// open (`PRAGMA user_version` records where it is).
const MIGRATIONS: &[&str] = &[SCHEMA_V1];

/// Severity, ordered DEBUG < INFO < WARNING < ERROR.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
}

impl LogLevel {
    pub(super) fn rank(self) -> i64 {
        match self {
            LogLevel::Debug => 0,
            LogLevel::Info => 1,
            LogLevel::Warning => 2,
            LogLevel::Error => 3,
        }
    }

    pub(super) fn from_rank(rank: i64) -> ServiceResult<LogLevel> {
        Ok(match rank {
            0 => LogLevel::Debug,
            1 => LogLevel::Info,
            2 => LogLevel::Warning,
            3 => LogLevel::Error,
            other => {
                return Err(ServiceError::Storage(format!(
                    "stored log level {other} is unknown"
                )))
            }
        })
    }
}

/// A stored line.
#[derive(Clone, Debug, PartialEq)]
pub struct LogLine {
    pub id: i64,
    pub pipeline_id: String,
    pub level: LogLevel,
    pub message: String,
    pub node: Option<String>,
    pub time: Timestamp,
}

/// A validated line to store.
#[derive(Clone, Debug)]
pub struct NewLogLine {
    pub pipeline_id: String,
    pub level: LogLevel,
    pub message: String,
    pub node: Option<String>,
    pub time: Timestamp,
    /// Idempotency key: a line whose key is already stored is skipped.
    pub key: Option<String>,
}

/// Where a history page resumes: strictly after this (time, rowid).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogCursor {
    pub time_us: i64,
    pub id: i64,
}

impl LogCursor {
    pub fn of(line: &LogLine) -> LogCursor {
        LogCursor {
            time_us: micros(line.time),
            id: line.id,
        }
    }

    pub fn encode(&self) -> String {
        cursor::encode(&format!("{}|{}", self.time_us, self.id))
    }

    pub fn decode(text: &str) -> ServiceResult<LogCursor> {
        let raw = cursor::decode(text)?;
        raw.split_once('|')
            .and_then(|(t, id)| {
                Some(LogCursor {
                    time_us: t.parse().ok()?,
                    id: id.parse().ok()?,
                })
            })
            .ok_or_else(|| {
                ServiceError::bad_input(format!(
                    "`cursor` \"{text}\" is not a cursor this service issued; pass `nextCursor` from a previous page, or omit it to start from the first page"
                ))
            })
    }
}

/// Which lines of one pipeline a read returns.
#[derive(Clone, Debug)]
pub struct LineQuery {
    pub pipeline_id: String,
    pub min_level: Option<LogLevel>,
    pub limit: usize,
}

/// Storage of log lines; [`SqliteLogStore`] embedded, `PostgresLogStore`
/// for replicas. Both keep line ids in commit order (see the module docs).
pub trait LogStore: Send + Sync + 'static {
    /// Stores all lines in one transaction (all or nothing), skipping lines
    /// whose key is already stored. Returns how many were stored and the
    /// highest id now in the table.
    fn insert(&self, lines: Vec<NewLogLine>) -> StoreFuture<'_, (usize, i64)>;
    /// The highest id stored (0 when empty).
    fn last_id(&self) -> StoreFuture<'_, i64>;
    /// Up to `limit` lines in (time, id) order after `after`, only ids up to
    /// `up_to` when given.
    fn history(
        &self,
        query: LineQuery,
        after: Option<LogCursor>,
        up_to: Option<i64>,
    ) -> StoreFuture<'_, Vec<LogLine>>;
    /// For each of `pipeline_ids`, its first `limit` lines in (time, id)
    /// order at `min_level` or above, in one read; in the order of the ids.
    fn first_lines(
        &self,
        pipeline_ids: Vec<String>,
        min_level: Option<LogLevel>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<Vec<LogLine>>>;
    /// Up to `limit` lines with id greater than `after_id`, in id order.
    fn after_id(&self, query: LineQuery, after_id: i64) -> StoreFuture<'_, Vec<LogLine>>;
}

/// Each run once, in first-seen order: what a batch reads (the same run
/// asked twice gets the same page without a second read).
pub fn distinct(pipeline_ids: &[String]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    pipeline_ids
        .iter()
        .filter(|id| seen.insert(id.as_str()))
        .cloned()
        .collect()
}

/// Lines of a one-read batch, grouped per run in the order of `pipeline_ids`
/// (a run asked twice gets its page twice), each run's in (time, id) order.
/// The order is made here, a page at a time, rather than by the statement:
/// sorting all the pages' lines at once cost the log service about 7% of
/// its CPU under the benchmark's `nested` query.
pub fn group_by_run(pipeline_ids: &[String], lines: Vec<LogLine>) -> Vec<Vec<LogLine>> {
    let mut runs: Vec<(String, Vec<LogLine>)> = Vec::new();
    let mut run_at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for line in lines {
        let at = *run_at.entry(line.pipeline_id.clone()).or_insert_with(|| {
            runs.push((line.pipeline_id.clone(), Vec::new()));
            runs.len() - 1
        });
        runs[at].1.push(line);
    }
    for (_, lines) in &mut runs {
        lines.sort_unstable_by_key(|l| (l.time, l.id));
    }
    in_order(pipeline_ids, runs, |(run, _)| run)
        .into_iter()
        .map(|run| run.map(|(_, lines)| lines).unwrap_or_default())
        .collect()
}

/// [`LogStore`] on one SQLite file.
#[derive(Clone)]
pub struct SqliteLogStore {
    db: Db,
}

impl SqliteLogStore {
    pub fn open(path: &std::path::Path) -> ServiceResult<SqliteLogStore> {
        Ok(SqliteLogStore {
            db: Db::open(path, MIGRATIONS)?,
        })
    }
}

pub(super) fn micros(t: Timestamp) -> i64 {
    t.0.timestamp_micros()
}

const COLUMNS: &str = "id, pipeline_id, level, message, node, time";

/// Each run's first `?3` lines at level `?2` or above, for the runs of the
/// JSON list `?1`, in one statement: at most `?3` lines per run read
/// through the (pipeline_id, time, id) index, in no order
/// (`group_by_run` orders each page). A window over the runs' lines read
/// every line of their logs; a statement per run was prepared again for
/// each run (its plan depends on the bound id).
static FIRST_LINES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let columns: Vec<String> = COLUMNS.split(", ").map(|c| format!("l.{c}")).collect();
    format!(
        "SELECT {} FROM json_each(?1) AS run
         JOIN logs AS l ON l.id IN (
           SELECT id FROM logs
           WHERE pipeline_id = run.value AND level >= ?2
           ORDER BY time, id LIMIT ?3
         )",
        columns.join(", ")
    )
});

type RawRow = (i64, String, i64, String, Option<String>, i64);

fn raw_row(row: &Row<'_>) -> rusqlite::Result<RawRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

fn into_line((id, pipeline_id, level, message, node, time): RawRow) -> ServiceResult<LogLine> {
    Ok(LogLine {
        id,
        pipeline_id,
        level: LogLevel::from_rank(level)?,
        message,
        node,
        time: DateTime::<Utc>::from_timestamp_micros(time)
            .map(Timestamp)
            .ok_or_else(|| ServiceError::Storage(format!("stored time {time} is out of range")))?,
    })
}

fn query_lines(
    conn: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> ServiceResult<Vec<LogLine>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt
        .query_map(params, raw_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(into_line).collect()
}

impl LogStore for SqliteLogStore {
    fn insert(&self, lines: Vec<NewLogLine>) -> StoreFuture<'_, (usize, i64)> {
        Box::pin(async move {
            self.db
                .call(move |conn| {
                    let tx = conn.transaction()?;
                    let mut stored = 0;
                    {
                        let mut stmt = tx.prepare_cached(
                            "INSERT INTO logs (pipeline_id, level, message, node, time, key) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (key) DO NOTHING",
                        )?;
                        for l in &lines {
                            stored += stmt.execute(params![
                                l.pipeline_id,
                                l.level.rank(),
                                l.message,
                                l.node,
                                micros(l.time),
                                l.key
                            ])?;
                        }
                    }
                    let last: i64 = tx.query_row("SELECT COALESCE(MAX(id), 0) FROM logs", [], |r| r.get(0))?;
                    tx.commit()?;
                    Ok((stored, last))
                })
                .await
        })
    }

    fn last_id(&self) -> StoreFuture<'_, i64> {
        Box::pin(async move {
            self.db
                .call(|conn| {
                    Ok(conn.query_row("SELECT COALESCE(MAX(id), 0) FROM logs", [], |r| r.get(0))?)
                })
                .await
        })
    }

    fn history(
        &self,
        q: LineQuery,
        after: Option<LogCursor>,
        up_to: Option<i64>,
    ) -> StoreFuture<'_, Vec<LogLine>> {
        Box::pin(async move {
            let min_rank = q.min_level.map_or(0, LogLevel::rank);
            // Sentinels instead of optional clauses keep one cached statement.
            let (after_time, after_id) = after.map_or((i64::MIN, i64::MIN), |c| (c.time_us, c.id));
            let up_to = up_to.unwrap_or(i64::MAX);
            self.db
                .call(move |conn| {
                    query_lines(
                        conn,
                        &format!(
                            "SELECT {COLUMNS} FROM logs
                             WHERE pipeline_id = ?1 AND level >= ?2 AND id <= ?3
                               AND (time > ?4 OR (time = ?4 AND id > ?5))
                             ORDER BY time, id LIMIT ?6"
                        ),
                        params![
                            q.pipeline_id,
                            min_rank,
                            up_to,
                            after_time,
                            after_id,
                            q.limit as i64
                        ],
                    )
                })
                .await
        })
    }

    fn first_lines(
        &self,
        pipeline_ids: Vec<String>,
        min_level: Option<LogLevel>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<Vec<LogLine>>> {
        Box::pin(async move {
            let min_rank = min_level.map_or(0, LogLevel::rank);
            let runs = to_json(&distinct(&pipeline_ids))?;
            let lines = self
                .db
                .call(move |conn| {
                    query_lines(conn, &FIRST_LINES, params![runs, min_rank, limit as i64])
                })
                .await?;
            Ok(group_by_run(&pipeline_ids, lines))
        })
    }

    fn after_id(&self, q: LineQuery, after_id: i64) -> StoreFuture<'_, Vec<LogLine>> {
        Box::pin(async move {
            let min_rank = q.min_level.map_or(0, LogLevel::rank);
            self.db
                .call(move |conn| {
                    query_lines(
                        conn,
                        &format!(
                            "SELECT {COLUMNS} FROM logs
                             WHERE pipeline_id = ?1 AND level >= ?2 AND id > ?3
                             ORDER BY id LIMIT ?4"
                        ),
                        params![q.pipeline_id, min_rank, after_id, q.limit as i64],
                    )
                })
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn cursor_round_trip_and_foreign_cursors() {
        let c = LogCursor {
            time_us: 1_700_000_000_000_001,
            id: 42,
        };
        assert_eq!(LogCursor::decode(&c.encode()).unwrap(), c);
        for bad in [
            "%%",
            &cursor::encode("42"),
            &cursor::encode("a|1"),
            &cursor::encode("1|b"),
        ] {
            let err = LogCursor::decode(bad).unwrap_err();
            assert_eq!(err.code(), "BAD_USER_INPUT");
        }
    }

    #[test]
    fn levels_are_ordered() {
        assert!(LogLevel::Debug < LogLevel::Info);
        assert!(LogLevel::Info < LogLevel::Warning);
        assert!(LogLevel::Warning < LogLevel::Error);
        for l in [
            LogLevel::Debug,
            LogLevel::Info,
            LogLevel::Warning,
            LogLevel::Error,
        ] {
            assert_eq!(LogLevel::from_rank(l.rank()).unwrap(), l);
        }
    }

    fn line(p: &str, level: LogLevel, msg: &str, time_us: i64, key: Option<&str>) -> NewLogLine {
        NewLogLine {
            pipeline_id: p.into(),
            level,
            message: msg.into(),
            node: None,
            time: Timestamp(DateTime::<Utc>::from_timestamp_micros(time_us).unwrap()),
            key: key.map(Into::into),
        }
    }

    #[tokio::test]
    async fn sqlite_keeps_the_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteLogStore::open(&dir.path().join("l.sqlite")).unwrap();
        history_in_time_order_and_keys_are_idempotent(&store).await;
        first_pages_hold_each_runs_earliest_lines(&store).await;
        lines_are_read_in_commit_order_under_concurrent_writers(Arc::new(store)).await;
    }

    #[tokio::test]
    async fn postgres_keeps_the_store_contract() {
        let cluster = pgcluster::Cluster::start().unwrap();
        let url = cluster.create_database("log").unwrap();
        let pool = crate::common::storage::connect_postgres(
            &url,
            "log",
            super::super::postgres::MIGRATIONS,
        )
        .await
        .unwrap();
        let store = super::super::postgres::PostgresLogStore::new(pool);
        history_in_time_order_and_keys_are_idempotent(&store).await;
        first_pages_hold_each_runs_earliest_lines(&store).await;
        lines_are_read_in_commit_order_under_concurrent_writers(Arc::new(store)).await;
    }

    /// Each run's page is its earliest lines by (time, id), whatever order
    /// they arrived in, at or above the level asked; a run asked twice gets
    /// its page twice and a run with no lines an empty one.
    async fn first_pages_hold_each_runs_earliest_lines(store: &dyn LogStore) {
        store
            .insert(vec![
                line("x", LogLevel::Info, "x-late", 30, None),
                line("y", LogLevel::Info, "y-only", 5, None),
                line("x", LogLevel::Debug, "x-first-debug", 10, None),
                line("x", LogLevel::Error, "x-tie-a", 20, None),
                line("x", LogLevel::Info, "x-tie-b", 20, None),
            ])
            .await
            .unwrap();
        let runs = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let messages = |pages: Vec<Vec<LogLine>>| -> Vec<Vec<String>> {
            pages
                .into_iter()
                .map(|p| p.into_iter().map(|l| l.message).collect())
                .collect()
        };
        let pages = store
            .first_lines(runs(&["x", "none", "y", "x"]), None, 2)
            .await
            .unwrap();
        assert_eq!(
            messages(pages),
            [
                vec!["x-first-debug", "x-tie-a"],
                vec![],
                vec!["y-only"],
                vec!["x-first-debug", "x-tie-a"],
            ]
        );
        let pages = store
            .first_lines(runs(&["x"]), Some(LogLevel::Info), 3)
            .await
            .unwrap();
        assert_eq!(messages(pages), [vec!["x-tie-a", "x-tie-b", "x-late"]]);
    }

    /// A reader that always asks for "lines after the last id I saw" while
    /// writers commit concurrently must see every line: ids are handed out in
    /// commit order.
    async fn lines_are_read_in_commit_order_under_concurrent_writers(store: Arc<dyn LogStore>) {
        const WRITERS: usize = 6;
        const BATCHES: usize = 30;
        let start = store.last_id().await.unwrap();
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    for b in 0..BATCHES {
                        let lines = (0..3)
                            .map(|i| line("c", LogLevel::Info, &format!("{w}-{b}-{i}"), 1, None))
                            .collect();
                        store.insert(lines).await.unwrap();
                    }
                })
            })
            .collect();
        let query = || LineQuery {
            pipeline_id: "c".into(),
            min_level: None,
            limit: 1000,
        };
        let mut after = start;
        let mut seen = Vec::new();
        while seen.len() < WRITERS * BATCHES * 3 {
            for line in store.after_id(query(), after).await.unwrap() {
                after = line.id;
                seen.push(line.id);
            }
            tokio::task::yield_now().await;
        }
        for w in writers {
            w.await.unwrap();
        }
        let all: Vec<i64> = store
            .after_id(query(), start)
            .await
            .unwrap()
            .iter()
            .map(|l| l.id)
            .collect();
        assert_eq!(
            seen, all,
            "a line committed behind the reader's cursor was skipped"
        );
    }

    async fn history_in_time_order_and_keys_are_idempotent(store: &dyn LogStore) {
        let (n, last) = store
            .insert(vec![
                line("p", LogLevel::Info, "late", 3_000, Some("k1")),
                line("p", LogLevel::Debug, "early", 1_000, None),
                line("p", LogLevel::Error, "same-time-a", 2_000, None),
                line("p", LogLevel::Info, "same-time-b", 2_000, None),
                line("q", LogLevel::Info, "other pipeline", 1_500, None),
            ])
            .await
            .unwrap();
        assert_eq!((n, last), (5, 5));
        let (n, _) = store
            .insert(vec![line("p", LogLevel::Info, "retry", 9_000, Some("k1"))])
            .await
            .unwrap();
        assert_eq!(n, 0);

        let q = |min_level| LineQuery {
            pipeline_id: "p".into(),
            min_level,
            limit: 2,
        };
        let first = store.history(q(None), None, None).await.unwrap();
        let second = store
            .history(q(None), Some(LogCursor::of(&first[1])), None)
            .await
            .unwrap();
        let msgs: Vec<_> = first
            .iter()
            .chain(&second)
            .map(|l| l.message.as_str())
            .collect();
        assert_eq!(msgs, ["early", "same-time-a", "same-time-b", "late"]);

        let errors = store
            .history(q(Some(LogLevel::Warning)), None, None)
            .await
            .unwrap();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].message, "same-time-a");

        let snapshot = store.history(q(None), None, Some(2)).await.unwrap();
        assert_eq!(snapshot.iter().map(|l| l.id).collect::<Vec<_>>(), [2, 1]);
        let live = store.after_id(q(None), 2).await.unwrap();
        assert_eq!(live.iter().map(|l| l.id).collect::<Vec<_>>(), [3, 4]);
    }
}
