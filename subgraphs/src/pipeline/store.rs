//! Where runs live: the `PipelineStore` trait and its SQLite implementation.
//!
//! Status changes are compare-and-set inside one transaction: a move the
//! current status does not allow (see `PipelineStatus::can_move_to`) is
//! refused, so a worker finishing late can never overwrite a cancellation.
//! The log lines of a change are written in the same transaction (see
//! `outbox`).

use std::time::Duration;

use rusqlite::{types::Value, OptionalExtension, Row};

use super::{
    model::{PipelineStatus, Run},
    outbox::{self, Batch, LogLine},
};
use crate::common::{
    cursor,
    storage::{in_order, sqlite_rows_by_ids, to_json},
    Db, ServiceError, ServiceResult, StoreFuture, Tag, Timestamp,
};

/// The log line recovery writes for each run it fails.
pub type LineFor = Box<dyn Fn(&Run) -> LogLine + Send>;

/// Which live runs [`PipelineStore::recover`] takes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Orphans {
    /// Every PENDING or RUNNING run fails: one process owns the database
    /// (SQLite), so at its start or stop nobody else can be running them.
    All,
    /// Runs whose holder stopped renewing its lease (a replica that died):
    /// RUNNING ones fail, claimed PENDING ones go back to the queue. Runs a
    /// live replica holds are never touched.
    LeaseExpired,
}

/// The storage the service needs: [`SqlitePipelineStore`] embedded,
/// `PostgresPipelineStore` for replicas. Each store instance acts for one
/// replica (its owner id) in the run queue and the log outbox.
pub trait PipelineStore: Send + Sync + 'static {
    /// Stores a new run and its first log lines (all of it or nothing).
    fn insert(&self, run: Run, log: Vec<LogLine>) -> StoreFuture<'_, ()>;
    fn get(&self, id: String) -> StoreFuture<'_, Option<Run>>;
    /// One lookup for many ids: same order as `ids`, `None` for unknown ones.
    fn get_many(&self, ids: Vec<String>) -> StoreFuture<'_, Vec<Option<Run>>>;
    fn list(&self, query: ListQuery) -> StoreFuture<'_, RunPage>;
    /// Moves a run to another status if its current one allows it, with
    /// the transition's log lines (written only if it moves).
    fn transition(&self, id: String, to: Transition) -> StoreFuture<'_, Moved>;
    /// Deletes a run that has finished.
    fn delete_finished(&self, id: String) -> StoreFuture<'_, Deleted>;
    /// Marks the `orphans` FAILURE with `error`, logging `line` of each;
    /// returns the runs it failed.
    fn recover(
        &self,
        orphans: Orphans,
        error: String,
        at: Timestamp,
        line: LineFor,
    ) -> StoreFuture<'_, Vec<Run>>;
    /// Takes the oldest queued (PENDING, unclaimed) run for this replica,
    /// leased for `lease`; `None` when the queue is empty. Replicas claiming
    /// at once never get the same run.
    fn claim(&self, lease: Duration) -> StoreFuture<'_, Option<Run>>;
    /// Extends this replica's leases on `ids` (the runs its workers are
    /// running) by `lease`; returns those it still holds (a run cancelled
    /// elsewhere is no longer among them). A claimed run no worker runs any
    /// more (its end could not be recorded) is not renewed: its lease lapses
    /// and recovery takes it back.
    fn renew(&self, lease: Duration, ids: Vec<String>) -> StoreFuture<'_, Vec<String>>;
    /// Log lines that belong to no status change.
    fn append_log(&self, log: Vec<LogLine>) -> StoreFuture<'_, ()>;
    /// The outbox's next delivery (see `outbox::take`).
    fn take_log(&self, max: usize) -> StoreFuture<'_, Batch>;
    /// The log subgraph took `batch`.
    fn ack_log(&self, batch: Batch) -> StoreFuture<'_, ()>;
    /// Delivering the last batch failed.
    fn release_log(&self) -> StoreFuture<'_, ()>;
    /// Still delivering the last batch: keeps other replicas from taking it
    /// back as a dead replica's. A store only one process opens (SQLite)
    /// has no other replica to keep off.
    fn renew_log(&self) -> StoreFuture<'_, ()> {
        Box::pin(std::future::ready(Ok(())))
    }
    /// Lines waiting in the outbox.
    fn queued_log(&self) -> StoreFuture<'_, usize>;
}

/// A status change: `startedAt` is set when entering RUNNING, `finishedAt`
/// when entering a final status.
#[derive(Clone, Debug)]
pub struct Transition {
    pub to: PipelineStatus,
    pub at: Timestamp,
    pub error: Option<String>,
    pub log: Vec<LogLine>,
}

#[derive(Debug)]
pub enum Moved {
    /// The run after the change.
    Done(Run),
    /// The run's current status does not allow the move; the run as it is.
    Refused(Run),
    Missing,
}

#[derive(Debug)]
pub enum Deleted {
    Done(Run),
    /// Still PENDING or RUNNING: not deleted.
    Live(Run),
    Missing,
}

/// Position in the newest-first order: after this run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageKey {
    pub created_at: String,
    pub id: String,
}

impl PageKey {
    pub fn of(run: &Run) -> PageKey {
        PageKey {
            created_at: run.created_at.to_rfc3339(),
            id: run.id.clone(),
        }
    }

    /// The opaque cursor a client sees.
    pub fn to_cursor(&self) -> String {
        cursor::encode(&format!("{}|{}", self.created_at, self.id))
    }

    pub fn from_cursor(c: &str) -> ServiceResult<PageKey> {
        let bad = || {
            ServiceError::bad_input(format!(
                "`cursor` \"{c}\" is not a cursor this service issued; pass `nextCursor` from a previous page, or omit it to start from the first page"
            ))
        };
        let raw = cursor::decode(c)?;
        let (created, id) = raw.split_once('|').ok_or_else(bad)?;
        let created = Timestamp::parse(created).map_err(|_| bad())?;
        if id.is_empty() {
            return Err(bad());
        }
        Ok(PageKey {
            created_at: created.to_rfc3339(),
            id: id.to_string(),
        })
    }
}

#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub statuses: Option<Vec<PipelineStatus>>,
    pub name: Option<String>,
    pub tag: Option<Tag>,
}

#[derive(Clone, Debug)]
pub struct ListQuery {
    pub limit: usize,
    pub after: Option<PageKey>,
    pub filter: ListFilter,
}

#[derive(Debug)]
pub struct RunPage {
    pub items: Vec<Run>,
    /// Set when more runs follow.
    pub next: Option<PageKey>,
    /// Runs matching the filter, on every page.
    pub total: i64,
}

/// Version 1: the schema as first released (idempotent, so databases made
/// before versioning was added open as version 1).
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS pipelines (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    status       TEXT NOT NULL,
    parameters   TEXT NOT NULL,  -- JSON [{name, value}]
    tags         TEXT NOT NULL,  -- JSON [{key, value}]
    data_catalog TEXT NOT NULL,  -- JSON [{name, datasetId}]
    created_at   TEXT NOT NULL,  -- RFC 3339, fixed width: sorts as text
    started_at   TEXT,
    finished_at  TEXT,
    error        TEXT
);
CREATE INDEX IF NOT EXISTS pipelines_newest ON pipelines (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS pipelines_status ON pipelines (status);
";

/// Schema versions in order; a database is brought to the last one on
/// open (`PRAGMA user_version` records where it is).
const MIGRATIONS: &[&str] = &[SCHEMA_V1, outbox::SCHEMA_V2, SCHEMA_V3];

/// Version 3: the run queue. `owner` is the replica that claimed a run,
/// `lease_until` (microseconds since the epoch) when its claim lapses
/// unless renewed.
const SCHEMA_V3: &str = "
ALTER TABLE pipelines ADD COLUMN owner TEXT;
ALTER TABLE pipelines ADD COLUMN lease_until INTEGER;
CREATE INDEX pipelines_queue ON pipelines (created_at, id) WHERE status = 'PENDING';
";

const COLUMNS: &str =
    "id, name, status, parameters, tags, data_catalog, created_at, started_at, finished_at, error";

/// The WHERE clause of a filter (without the cursor), with its parameters.
pub fn filter_sql(filter: &ListFilter) -> (String, Vec<Value>) {
    let mut clauses: Vec<String> = Vec::new();
    let mut params: Vec<Value> = Vec::new();
    if let Some(statuses) = &filter.statuses {
        if statuses.is_empty() {
            clauses.push("0".into());
        } else {
            let marks = vec!["?"; statuses.len()].join(", ");
            clauses.push(format!("status IN ({marks})"));
            params.extend(statuses.iter().map(|s| Value::Text(s.as_str().into())));
        }
    }
    if let Some(name) = &filter.name {
        clauses.push("name = ?".into());
        params.push(Value::Text(name.clone()));
    }
    if let Some(tag) = &filter.tag {
        clauses.push(
            "EXISTS (SELECT 1 FROM json_each(pipelines.tags) t \
             WHERE json_extract(t.value, '$.key') = ? AND json_extract(t.value, '$.value') = ?)"
                .into(),
        );
        params.push(Value::Text(tag.key.clone()));
        params.push(Value::Text(tag.value.clone()));
    }
    let sql = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    (sql, params)
}

/// The page query: filter, then runs strictly after the cursor in
/// newest-first order, one more than `limit` to know whether a page follows.
pub fn page_sql(query: &ListQuery) -> (String, Vec<Value>) {
    let (mut where_sql, mut params) = filter_sql(&query.filter);
    if let Some(after) = &query.after {
        where_sql.push_str(if where_sql.is_empty() {
            " WHERE "
        } else {
            " AND "
        });
        where_sql.push_str("(created_at < ? OR (created_at = ? AND id < ?))");
        params.push(Value::Text(after.created_at.clone()));
        params.push(Value::Text(after.created_at.clone()));
        params.push(Value::Text(after.id.clone()));
    }
    params.push(Value::Integer(query.limit as i64 + 1));
    (
        format!(
            "SELECT {COLUMNS} FROM pipelines{where_sql} ORDER BY created_at DESC, id DESC LIMIT ?"
        ),
        params,
    )
}

#[derive(Clone)]
pub struct SqlitePipelineStore {
    db: Db,
    /// Log lines the outbox keeps at most (`log_buffer`).
    log_capacity: usize,
    /// This process's id in the run queue.
    owner: String,
}

impl SqlitePipelineStore {
    pub fn open(path: &std::path::Path, log_capacity: usize) -> ServiceResult<Self> {
        Ok(SqlitePipelineStore {
            db: Db::open(path, MIGRATIONS)?,
            log_capacity,
            owner: uuid::Uuid::new_v4().to_string(),
        })
    }
}

/// Only the replica holding a claimed run starts it: one that stalled past
/// its lease, while the run was queued again and claimed by another, does
/// not (an unclaimed run may be started by anyone: tests, older rows).
pub fn may_start(to: &Transition, holder: Option<&str>, me: &str) -> bool {
    to.to != PipelineStatus::Running || holder.is_none_or(|h| h == me)
}

/// Microseconds since the epoch, now and `lease` from now.
fn lease_window(lease: Duration) -> (i64, i64) {
    let now = chrono::Utc::now().timestamp_micros();
    (now, now + lease.as_micros() as i64)
}

fn from_json<T: serde::de::DeserializeOwned>(column: &str, text: &str) -> rusqlite::Result<T> {
    serde_json::from_str(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("{column}: {e}").into(),
        )
    })
}

fn timestamp(column: &str, text: &str) -> rusqlite::Result<Timestamp> {
    Timestamp::parse(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("{column}: {e}").into(),
        )
    })
}

fn read_run(row: &Row<'_>) -> rusqlite::Result<Run> {
    let status: String = row.get(2)?;
    let opt_ts = |i: usize, column: &str| -> rusqlite::Result<Option<Timestamp>> {
        row.get::<_, Option<String>>(i)?
            .map(|t| timestamp(column, &t))
            .transpose()
    };
    Ok(Run {
        id: row.get(0)?,
        name: row.get(1)?,
        status: PipelineStatus::parse(&status).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                2,
                rusqlite::types::Type::Text,
                format!("unknown status {status}").into(),
            )
        })?,
        parameters: from_json("parameters", &row.get::<_, String>(3)?)?,
        tags: from_json("tags", &row.get::<_, String>(4)?)?,
        data_catalog: from_json("data_catalog", &row.get::<_, String>(5)?)?,
        created_at: timestamp("created_at", &row.get::<_, String>(6)?)?,
        started_at: opt_ts(7, "started_at")?,
        finished_at: opt_ts(8, "finished_at")?,
        error: row.get(9)?,
    })
}

fn select_one(conn: &rusqlite::Connection, id: &str) -> ServiceResult<Option<Run>> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM pipelines WHERE id = ?1"),
            [id],
            read_run,
        )
        .optional()?)
}

fn ts_text(t: Option<Timestamp>) -> Option<String> {
    t.map(|t| t.to_rfc3339())
}

impl PipelineStore for SqlitePipelineStore {
    fn insert(&self, run: Run, log: Vec<LogLine>) -> StoreFuture<'_, ()> {
        let capacity = self.log_capacity;
        Box::pin(self.db.call(move |conn| {
            let tx = conn.transaction()?;
            tx.execute(
                &format!("INSERT INTO pipelines ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
                rusqlite::params![
                    run.id,
                    run.name,
                    run.status.as_str(),
                    to_json(&run.parameters)?,
                    to_json(&run.tags)?,
                    to_json(&run.data_catalog)?,
                    run.created_at.to_rfc3339(),
                    ts_text(run.started_at),
                    ts_text(run.finished_at),
                    run.error,
                ],
            )?;
            outbox::append(&tx, &log, capacity)?;
            tx.commit()?;
            Ok(())
        }))
    }

    fn get(&self, id: String) -> StoreFuture<'_, Option<Run>> {
        Box::pin(self.db.call(move |conn| select_one(conn, &id)))
    }

    fn get_many(&self, ids: Vec<String>) -> StoreFuture<'_, Vec<Option<Run>>> {
        Box::pin(async move {
            let ids_json = to_json(&ids)?;
            let found = self
                .db
                .call(move |conn| {
                    sqlite_rows_by_ids(conn, COLUMNS, "pipelines", ids_json, read_run)
                })
                .await?;
            Ok(in_order(&ids, found, |r| &r.id))
        })
    }

    fn list(&self, query: ListQuery) -> StoreFuture<'_, RunPage> {
        Box::pin(self.db.call(move |conn| {
            let tx = conn.transaction()?;
            let (where_sql, params) = filter_sql(&query.filter);
            let total: i64 = tx.query_row(
                &format!("SELECT COUNT(*) FROM pipelines{where_sql}"),
                rusqlite::params_from_iter(params),
                |r| r.get(0),
            )?;
            let (sql, params) = page_sql(&query);
            let mut items: Vec<Run> = {
                let mut stmt = tx.prepare(&sql)?;
                let rows = stmt.query_map(rusqlite::params_from_iter(params), read_run)?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let next = if items.len() > query.limit {
                items.truncate(query.limit);
                items.last().map(PageKey::of)
            } else {
                None
            };
            tx.commit()?;
            Ok(RunPage { items, next, total })
        }))
    }

    fn transition(&self, id: String, to: Transition) -> StoreFuture<'_, Moved> {
        let capacity = self.log_capacity;
        let owner = self.owner.clone();
        Box::pin(self.db.call(move |conn| {
            let tx = conn.transaction()?;
            let Some(mut run) = select_one(&tx, &id)? else {
                return Ok(Moved::Missing);
            };
            let holder: Option<String> =
                tx.query_row("SELECT owner FROM pipelines WHERE id = ?1", [&id], |r| r.get(0))?;
            if !run.status.can_move_to(to.to) || !may_start(&to, holder.as_deref(), &owner) {
                return Ok(Moved::Refused(run));
            }
            run.status = to.to;
            if to.to == PipelineStatus::Running {
                run.started_at = Some(to.at);
            }
            if to.to.is_terminal() {
                run.finished_at = Some(to.at);
                run.error = to.error;
            }
            tx.execute(
                "UPDATE pipelines SET status = ?2, started_at = ?3, finished_at = ?4, error = ?5 WHERE id = ?1",
                rusqlite::params![
                    run.id,
                    run.status.as_str(),
                    ts_text(run.started_at),
                    ts_text(run.finished_at),
                    run.error
                ],
            )?;
            outbox::append(&tx, &to.log, capacity)?;
            tx.commit()?;
            Ok(Moved::Done(run))
        }))
    }

    fn delete_finished(&self, id: String) -> StoreFuture<'_, Deleted> {
        Box::pin(self.db.call(move |conn| {
            let tx = conn.transaction()?;
            let Some(run) = select_one(&tx, &id)? else {
                return Ok(Deleted::Missing);
            };
            if !run.status.is_terminal() {
                return Ok(Deleted::Live(run));
            }
            tx.execute("DELETE FROM pipelines WHERE id = ?1", [&id])?;
            tx.commit()?;
            Ok(Deleted::Done(run))
        }))
    }

    fn recover(
        &self,
        orphans: Orphans,
        error: String,
        at: Timestamp,
        line: LineFor,
    ) -> StoreFuture<'_, Vec<Run>> {
        let capacity = self.log_capacity;
        Box::pin(self.db.call(move |conn| {
            let tx = conn.transaction()?;
            let (now, _) = lease_window(Duration::ZERO);
            let which = match orphans {
                Orphans::All => "status IN ('PENDING', 'RUNNING')",
                Orphans::LeaseExpired => {
                    tx.execute(
                        "UPDATE pipelines SET owner = NULL, lease_until = NULL
                         WHERE status = 'PENDING' AND owner IS NOT NULL AND lease_until < ?1",
                        [now],
                    )?;
                    "status = 'RUNNING' AND COALESCE(lease_until, 0) < ?1"
                }
            };
            let live: Vec<Run> = {
                let mut stmt = tx.prepare(&format!(
                    "SELECT {COLUMNS} FROM pipelines WHERE {which} AND ?1 = ?1 ORDER BY created_at, id"
                ))?;
                let rows = stmt.query_map([now], read_run)?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let at_text = at.to_rfc3339();
            let mut update = tx.prepare(
                "UPDATE pipelines SET status = 'FAILURE', finished_at = ?2, error = ?3, owner = NULL, lease_until = NULL WHERE id = ?1",
            )?;
            let failed: Vec<Run> = live
                .into_iter()
                .map(|mut r| {
                    update.execute(rusqlite::params![r.id, at_text, error])?;
                    r.status = PipelineStatus::Failure;
                    r.finished_at = Some(at);
                    r.error = Some(error.clone());
                    Ok(r)
                })
                .collect::<ServiceResult<_>>()?;
            drop(update);
            let lines: Vec<LogLine> = failed.iter().map(line).collect();
            outbox::append(&tx, &lines, capacity)?;
            tx.commit()?;
            Ok(failed)
        }))
    }

    fn claim(&self, lease: Duration) -> StoreFuture<'_, Option<Run>> {
        let owner = self.owner.clone();
        Box::pin(self.db.call(move |conn| {
            let (_, until) = lease_window(lease);
            // One connection serialises writers: no two claims interleave.
            let id: Option<String> = conn
                .query_row(
                    "UPDATE pipelines SET owner = ?1, lease_until = ?2
                     WHERE id = (SELECT id FROM pipelines WHERE status = 'PENDING' AND owner IS NULL
                                 ORDER BY created_at, id LIMIT 1)
                     RETURNING id",
                    rusqlite::params![owner, until],
                    |r| r.get(0),
                )
                .optional()?;
            match id {
                Some(id) => select_one(conn, &id),
                None => Ok(None),
            }
        }))
    }

    fn renew(&self, lease: Duration, ids: Vec<String>) -> StoreFuture<'_, Vec<String>> {
        let owner = self.owner.clone();
        Box::pin(self.db.call(move |conn| {
            let (_, until) = lease_window(lease);
            let ids_json = to_json(&ids)?;
            let mut stmt = conn.prepare_cached(
                "UPDATE pipelines SET lease_until = ?2
                 WHERE owner = ?1 AND status IN ('PENDING', 'RUNNING')
                   AND id IN (SELECT value FROM json_each(?3)) RETURNING id",
            )?;
            let held = stmt
                .query_map(rusqlite::params![owner, until, ids_json], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(held)
        }))
    }

    fn append_log(&self, log: Vec<LogLine>) -> StoreFuture<'_, ()> {
        let capacity = self.log_capacity;
        Box::pin(self.db.call(move |conn| {
            let tx = conn.transaction()?;
            outbox::append(&tx, &log, capacity)?;
            tx.commit()?;
            Ok(())
        }))
    }

    fn take_log(&self, max: usize) -> StoreFuture<'_, Batch> {
        let capacity = self.log_capacity;
        Box::pin(self.db.call(move |conn| {
            let tx = conn.transaction()?;
            let batch = outbox::take(&tx, max, capacity)?;
            tx.commit()?;
            Ok(batch)
        }))
    }

    fn ack_log(&self, batch: Batch) -> StoreFuture<'_, ()> {
        Box::pin(self.db.call(move |conn| {
            let tx = conn.transaction()?;
            outbox::ack(&tx, &batch)?;
            tx.commit()?;
            Ok(())
        }))
    }

    fn release_log(&self) -> StoreFuture<'_, ()> {
        let capacity = self.log_capacity;
        Box::pin(self.db.call(move |conn| {
            let tx = conn.transaction()?;
            outbox::release(&tx, capacity)?;
            tx.commit()?;
            Ok(())
        }))
    }

    fn queued_log(&self) -> StoreFuture<'_, usize> {
        Box::pin(self.db.call(|conn| outbox::len(conn)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::model::{DatasetBinding, Parameter};
    use std::time::Duration;
    use PipelineStatus::*;

    fn run(
        id: &str,
        name: &str,
        status: PipelineStatus,
        created_ms: i64,
        tags: &[(&str, &str)],
    ) -> Run {
        Run {
            id: id.into(),
            name: name.into(),
            status,
            parameters: vec![Parameter {
                name: "duration".into(),
                value: "0".into(),
            }],
            tags: tags
                .iter()
                .map(|(k, v)| Tag {
                    key: k.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            data_catalog: vec![DatasetBinding {
                name: "text_in".into(),
                dataset_id: "d1".into(),
            }],
            created_at: Timestamp(
                chrono::DateTime::from_timestamp_millis(1_800_000_000_000 + created_ms).unwrap(),
            ),
            started_at: None,
            finished_at: None,
            error: None,
        }
    }

    /// The same suite on both backends; each part on a fresh database, and
    /// `replicas` two stores on one database (two owners).
    #[tokio::test]
    async fn sqlite_keeps_the_store_contract() {
        let mut n = 0;
        contract(|| {
            n += 1;
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(format!("p{n}.sqlite"));
            let a = SqlitePipelineStore::open(&path, 100).unwrap();
            let b = SqlitePipelineStore::open(&path, 100).unwrap();
            async move {
                (
                    Box::new(dir) as Box<dyn Send>,
                    Box::new(a) as Box<dyn PipelineStore>,
                    Box::new(b) as Box<dyn PipelineStore>,
                )
            }
        })
        .await;
    }

    #[tokio::test]
    async fn postgres_keeps_the_store_contract() {
        let cluster = std::sync::Arc::new(pgcluster::Cluster::start().unwrap());
        let mut n = 0;
        contract(|| {
            n += 1;
            let url = cluster.create_database(&format!("p{n}")).unwrap();
            async move {
                let pool = crate::common::storage::connect_postgres(
                    &url,
                    "pipeline",
                    super::super::postgres::MIGRATIONS,
                )
                .await
                .unwrap();
                let a = super::super::postgres::PostgresPipelineStore::new(pool.clone(), 100);
                let b = super::super::postgres::PostgresPipelineStore::new(pool, 100);
                (
                    Box::new(()) as Box<dyn Send>,
                    Box::new(a) as Box<dyn PipelineStore>,
                    Box::new(b) as Box<dyn PipelineStore>,
                )
            }
        })
        .await;
    }

    type Fresh = (
        Box<dyn Send>,
        Box<dyn PipelineStore>,
        Box<dyn PipelineStore>,
    );

    async fn contract<F, Fut>(mut fresh: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Fresh>,
    {
        let (_keep, s, _) = fresh().await;
        pages_newest_first_with_total(s.as_ref()).await;
        let (_keep, s, _) = fresh().await;
        get_many_keeps_order_and_nulls(s.as_ref()).await;
        let (_keep, s, _) = fresh().await;
        transitions_are_compare_and_set(s.as_ref()).await;
        let (_keep, s, _) = fresh().await;
        delete_only_finished_runs(s.as_ref()).await;
        let (_keep, s, _) = fresh().await;
        live_runs_fail_on_recovery(s.as_ref()).await;
        let (_keep, s, _) = fresh().await;
        log_lines_are_written_with_the_change_or_not_at_all(s.as_ref()).await;
        let (_keep, a, b) = fresh().await;
        replicas_claim_each_run_once_and_take_back_lapsed_leases(a.as_ref(), b.as_ref()).await;
        let (_keep, s, _) = fresh().await;
        overflow_is_reported_once(s.as_ref()).await;
    }

    /// Past capacity (100 here) the oldest lines go, and one warning per run
    /// says how many, until it is delivered.
    async fn overflow_is_reported_once(s: &dyn PipelineStore) {
        let lines: Vec<LogLine> = (0..105).map(|i| line("o", &format!("m{i}"))).collect();
        s.append_log(lines).await.unwrap();
        let batch = s.take_log(500).await.unwrap();
        assert_eq!(batch.lines.len(), 101);
        assert_eq!(batch.lines[0].level, outbox::Level::Warning);
        assert!(
            batch.lines[0].message.starts_with("5 log line(s)"),
            "{}",
            batch.lines[0].message
        );
        assert_eq!(batch.lines[1].message, "m5");
        s.ack_log(batch).await.unwrap();
        assert!(s.take_log(500).await.unwrap().is_empty());
    }

    /// Two replicas on one store: a queued run goes to exactly one; a lease
    /// that lapses hands a claimed PENDING run back to the queue and fails a
    /// RUNNING one; a live lease is never touched.
    async fn replicas_claim_each_run_once_and_take_back_lapsed_leases(
        a: &dyn PipelineStore,
        b: &dyn PipelineStore,
    ) {
        for (i, id) in ["q1", "q2", "q3"].iter().enumerate() {
            a.insert(run(id, "example00", Pending, i as i64 + 1, &[]), vec![])
                .await
                .unwrap();
        }
        let long = Duration::from_secs(60);
        let first = a.claim(long).await.unwrap().unwrap();
        let second = b.claim(long).await.unwrap().unwrap();
        assert_eq!((first.id.as_str(), second.id.as_str()), ("q1", "q2"));
        assert_eq!(a.renew(long, vec!["q1".into()]).await.unwrap(), ["q1"]);
        // b's claim on q3 lapses at once; q2 (b) and q1 (a) hold.
        let third = b.claim(Duration::ZERO).await.unwrap().unwrap();
        assert_eq!(third.id, "q3");
        assert!(a.claim(long).await.unwrap().is_none(), "queue is empty");
        let t = |to| Transition {
            to,
            at: Timestamp::now(),
            error: None,
            log: vec![],
        };
        a.transition("q1".into(), t(Running)).await.unwrap();
        b.transition("q2".into(), t(Running)).await.unwrap();
        b.renew(Duration::ZERO, vec!["q2".into(), "q3".into()])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let failed = a
            .recover(
                Orphans::LeaseExpired,
                "lease lost".into(),
                Timestamp::now(),
                Box::new(|r: &Run| line(&r.id, "lost")),
            )
            .await
            .unwrap();
        // b's RUNNING q2 failed; its claimed PENDING q3 is queued again.
        assert_eq!(ids(&failed), ["q2"]);
        let q2 = a.get("q2".into()).await.unwrap().unwrap();
        assert_eq!(
            (q2.status, q2.error.as_deref()),
            (Failure, Some("lease lost"))
        );
        assert_eq!(a.get("q1".into()).await.unwrap().unwrap().status, Running);
        assert_eq!(a.claim(long).await.unwrap().unwrap().id, "q3");
        // b's lapsed claim on q3 is a's now: b may not start it.
        let late = b.transition("q3".into(), t(Running)).await.unwrap();
        assert!(matches!(late, Moved::Refused(_)), "{late:?}");
        // A cancelled run drops out of its holder's renewals; a run no
        // worker runs is not renewed.
        a.transition("q1".into(), t(Cancelled)).await.unwrap();
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(a.renew(long, ids(&["q1", "q3"])).await.unwrap(), ["q3"]);
        assert!(a.renew(long, ids(&[])).await.unwrap().is_empty());
    }

    fn ids(runs: &[Run]) -> Vec<&str> {
        runs.iter().map(|r| r.id.as_str()).collect()
    }

    #[test]
    fn filter_sql_combines_conditions() {
        let (sql, params) = filter_sql(&ListFilter::default());
        assert_eq!(sql, "");
        assert!(params.is_empty());
        let (sql, params) = filter_sql(&ListFilter {
            statuses: Some(vec![Pending, Running]),
            name: Some("example00".into()),
            tag: Some(Tag {
                key: "team".into(),
                value: "a".into(),
            }),
        });
        assert!(
            sql.starts_with(
                " WHERE status IN (?, ?) AND name = ? AND EXISTS (SELECT 1 FROM json_each"
            ),
            "{sql}"
        );
        assert_eq!(params.len(), 5);
        let (sql, params) = filter_sql(&ListFilter {
            statuses: Some(vec![]),
            ..Default::default()
        });
        assert_eq!(sql, " WHERE 0");
        assert!(params.is_empty());
    }

    #[test]
    fn page_sql_adds_cursor_and_one_extra_row() {
        let q = ListQuery {
            limit: 10,
            after: Some(PageKey {
                created_at: "2026-01-01T00:00:00.000Z".into(),
                id: "x".into(),
            }),
            filter: ListFilter {
                name: Some("example01".into()),
                ..Default::default()
            },
        };
        let (sql, params) = page_sql(&q);
        assert!(
            sql.ends_with("WHERE name = ? AND (created_at < ? OR (created_at = ? AND id < ?)) ORDER BY created_at DESC, id DESC LIMIT ?"),
            "{sql}"
        );
        assert_eq!(params.last(), Some(&Value::Integer(11)));
    }

    #[test]
    fn cursor_round_trip_and_garbage() {
        let key = PageKey {
            created_at: "2026-01-01T00:00:00.000Z".into(),
            id: "abc".into(),
        };
        assert_eq!(PageKey::from_cursor(&key.to_cursor()).unwrap(), key);
        for bad in [
            "",
            "!!",
            &cursor::encode("no-separator"),
            &cursor::encode("yesterday|abc"),
            &cursor::encode("2026-01-01T00:00:00Z|"),
        ] {
            let e = PageKey::from_cursor(bad).unwrap_err();
            assert_eq!(e.code(), "BAD_USER_INPUT");
            assert!(
                e.to_string().contains("not a cursor this service issued"),
                "{e}"
            );
        }
    }

    async fn pages_newest_first_with_total(s: &dyn PipelineStore) {
        // two runs share a millisecond: the id breaks the tie
        for r in [
            run("a", "example00", Success, 1, &[("team", "x")]),
            run("b", "example01", Pending, 2, &[]),
            run("c", "example01", Failure, 2, &[("team", "x")]),
            run("d", "example00", Running, 3, &[("team", "y")]),
            run(
                "e",
                "example01",
                Success,
                4,
                &[("team", "x"), ("env", "prod")],
            ),
        ] {
            s.insert(r, vec![]).await.unwrap();
        }
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = s
                .list(ListQuery {
                    limit: 2,
                    after: after.clone(),
                    filter: ListFilter::default(),
                })
                .await
                .unwrap();
            assert_eq!(page.total, 5);
            seen.extend(page.items.iter().map(|r| r.id.clone()));
            match page.next {
                Some(k) => after = Some(PageKey::from_cursor(&k.to_cursor()).unwrap()),
                None => break,
            }
        }
        assert_eq!(seen, ["e", "d", "c", "b", "a"]);

        let page = s
            .list(ListQuery {
                limit: 10,
                after: None,
                filter: ListFilter {
                    tag: Some(Tag {
                        key: "team".into(),
                        value: "x".into(),
                    }),
                    ..Default::default()
                },
            })
            .await
            .unwrap();
        assert_eq!(ids(&page.items), ["e", "c", "a"]);
        assert_eq!(page.total, 3);
        assert!(page.next.is_none());

        let page = s
            .list(ListQuery {
                limit: 1,
                after: None,
                filter: ListFilter {
                    statuses: Some(vec![Success, Failure]),
                    name: Some("example01".into()),
                    ..Default::default()
                },
            })
            .await
            .unwrap();
        assert_eq!(ids(&page.items), ["e"]);
        assert_eq!(page.total, 2);
        assert!(page.next.is_some());
    }

    async fn get_many_keeps_order_and_nulls(s: &dyn PipelineStore) {
        s.insert(run("a", "example00", Success, 1, &[]), vec![])
            .await
            .unwrap();
        s.insert(run("b", "example00", Success, 2, &[]), vec![])
            .await
            .unwrap();
        let got = s
            .get_many(vec!["b".into(), "zz".into(), "a".into(), "b".into()])
            .await
            .unwrap();
        let got: Vec<Option<&str>> = got
            .iter()
            .map(|r| r.as_ref().map(|r| r.id.as_str()))
            .collect();
        assert_eq!(got, [Some("b"), None, Some("a"), Some("b")]);
        // the gateway may batch many keys into one call: still one query
        let many: Vec<String> = (0..10_000)
            .map(|i| format!("id{i}"))
            .chain(["a".to_string()])
            .collect();
        let got = s.get_many(many).await.unwrap();
        assert_eq!(got.len(), 10_001);
        assert_eq!(got.iter().filter(|r| r.is_some()).count(), 1);
        assert_eq!(
            s.get("a".into()).await.unwrap().unwrap(),
            run("a", "example00", Success, 1, &[])
        );
    }

    async fn transitions_are_compare_and_set(s: &dyn PipelineStore) {
        s.insert(run("a", "example00", Pending, 1, &[]), vec![])
            .await
            .unwrap();
        let at = Timestamp::now();
        let t = |to, error: Option<&str>| Transition {
            to,
            at,
            error: error.map(String::from),
            log: vec![],
        };
        let Moved::Done(r) = s.transition("a".into(), t(Running, None)).await.unwrap() else {
            panic!()
        };
        assert_eq!(r.status, Running);
        assert_eq!(r.started_at, Some(at));
        assert!(r.finished_at.is_none());
        let Moved::Done(r) = s.transition("a".into(), t(Cancelled, None)).await.unwrap() else {
            panic!()
        };
        assert_eq!(r.finished_at, Some(at));
        // a worker finishing after the cancellation is refused
        let Moved::Refused(r) = s.transition("a".into(), t(Success, None)).await.unwrap() else {
            panic!()
        };
        assert_eq!(r.status, Cancelled);
        assert!(matches!(
            s.transition("zz".into(), t(Running, None)).await.unwrap(),
            Moved::Missing
        ));
        assert_eq!(s.get("a".into()).await.unwrap().unwrap().status, Cancelled);
    }

    async fn delete_only_finished_runs(s: &dyn PipelineStore) {
        s.insert(run("live", "example00", Running, 1, &[]), vec![])
            .await
            .unwrap();
        s.insert(run("done", "example00", Failure, 2, &[]), vec![])
            .await
            .unwrap();
        assert!(matches!(
            s.delete_finished("live".into()).await.unwrap(),
            Deleted::Live(_)
        ));
        assert!(
            matches!(s.delete_finished("done".into()).await.unwrap(), Deleted::Done(r) if r.id == "done")
        );
        assert!(matches!(
            s.delete_finished("done".into()).await.unwrap(),
            Deleted::Missing
        ));
        assert!(s.get("live".into()).await.unwrap().is_some());
    }

    async fn live_runs_fail_on_recovery(s: &dyn PipelineStore) {
        s.insert(run("p", "example00", Pending, 1, &[]), vec![])
            .await
            .unwrap();
        s.insert(run("r", "example00", Running, 2, &[]), vec![])
            .await
            .unwrap();
        s.insert(run("ok", "example00", Success, 3, &[]), vec![])
            .await
            .unwrap();
        let failed = s
            .recover(
                Orphans::All,
                "interrupted by restart".into(),
                Timestamp::now(),
                Box::new(|r: &Run| LogLine {
                    pipeline_id: r.id.clone(),
                    level: outbox::Level::Error,
                    message: "interrupted".into(),
                    node: None,
                    time: "t".into(),
                    key: format!("{}:interrupted", r.id),
                }),
            )
            .await
            .unwrap();
        assert_eq!(ids(&failed), ["p", "r"]);
        for id in ["p", "r"] {
            let r = s.get(id.into()).await.unwrap().unwrap();
            assert_eq!(r.status, Failure);
            assert_eq!(r.error.as_deref(), Some("interrupted by restart"));
            assert!(r.finished_at.is_some());
        }
        assert_eq!(s.get("ok".into()).await.unwrap().unwrap().status, Success);
        let keys: Vec<String> = s
            .take_log(10)
            .await
            .unwrap()
            .lines
            .into_iter()
            .map(|l| l.key)
            .collect();
        assert_eq!(keys, ["p:interrupted", "r:interrupted"]);
    }

    fn line(p: &str, message: &str) -> LogLine {
        LogLine {
            pipeline_id: p.into(),
            level: outbox::Level::Info,
            message: message.into(),
            node: None,
            time: "t".into(),
            key: format!("{p}:{message}"),
        }
    }

    async fn log_lines_are_written_with_the_change_or_not_at_all(s: &dyn PipelineStore) {
        s.insert(
            run("a", "example00", Pending, 1, &[]),
            vec![line("a", "created")],
        )
        .await
        .unwrap();
        // a duplicate id: neither the run nor its line is stored
        assert!(s
            .insert(
                run("a", "example00", Pending, 1, &[]),
                vec![line("a", "again")]
            )
            .await
            .is_err());
        let t = |to, message: &str| Transition {
            to,
            at: Timestamp::now(),
            error: None,
            log: vec![line("a", message)],
        };
        s.transition("a".into(), t(Cancelled, "cancelled"))
            .await
            .unwrap();
        // refused: its line is not written
        let refused = s
            .transition("a".into(), t(Success, "succeeded"))
            .await
            .unwrap();
        assert!(matches!(refused, Moved::Refused(_)));
        s.append_log(vec![line("a", "later")]).await.unwrap();
        let batch = s.take_log(10).await.unwrap();
        let messages: Vec<&str> = batch.lines.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(messages, ["created", "cancelled", "later"]);
        assert_eq!(s.queued_log().await.unwrap(), 3);
        s.ack_log(batch).await.unwrap();
        assert_eq!(s.queued_log().await.unwrap(), 0);
    }
}
