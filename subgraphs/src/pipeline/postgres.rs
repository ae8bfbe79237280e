//! [`PipelineStore`] on Postgres, for replicas: the runs, the run queue
//! (claimed with `FOR UPDATE SKIP LOCKED`, held by a lease its replica
//! renews) and the log outbox (each replica claims its own batches).
//!
//! Leases are measured on the database's clock, so replicas whose clocks
//! disagree still agree on when a lease lapsed.

use std::time::Duration;

use sqlx::{postgres::PgRow, PgPool, Postgres, QueryBuilder, Row, Transaction};

use super::{
    model::{PipelineStatus, Run},
    outbox::{Batch, Level, LogLine},
    store::{
        may_start, Deleted, LineFor, ListFilter, ListQuery, Moved, Orphans, PageKey, PipelineStore,
        RunPage, Transition,
    },
};
use crate::common::{
    storage::{in_order, sql, to_json},
    ServiceError, ServiceResult, StoreFuture, Timestamp,
};

/// Times are RFC 3339 text of fixed width, compared bytewise (`COLLATE "C"`)
/// so they sort as times whatever the database's collation.
const SCHEMA_V1: &str = r#"
CREATE TABLE pipelines (
    id           TEXT COLLATE "C" PRIMARY KEY,
    name         TEXT NOT NULL,
    status       TEXT NOT NULL,
    parameters   TEXT NOT NULL,
    tags         JSONB NOT NULL,
    data_catalog TEXT NOT NULL,
    created_at   TEXT COLLATE "C" NOT NULL,
    started_at   TEXT,
    finished_at  TEXT,
    error        TEXT,
    owner        TEXT,
    lease_until  BIGINT
);
CREATE INDEX pipelines_newest ON pipelines (created_at DESC, id DESC);
CREATE INDEX pipelines_status ON pipelines (status);
CREATE INDEX pipelines_queue ON pipelines (created_at, id) WHERE status = 'PENDING';
CREATE INDEX pipelines_held ON pipelines (owner) WHERE status IN ('PENDING', 'RUNNING');

CREATE TABLE log_outbox (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pipeline_id TEXT NOT NULL,
    level       TEXT NOT NULL,
    node        TEXT,
    message     TEXT NOT NULL,
    time        TEXT NOT NULL,
    key         TEXT NOT NULL,
    claimed_by  TEXT,
    claimed_at  BIGINT
);
CREATE INDEX log_outbox_unclaimed ON log_outbox (seq) WHERE claimed_by IS NULL;
CREATE TABLE log_dropped (
    pipeline_id TEXT PRIMARY KEY,
    count       BIGINT NOT NULL,
    last_time   TEXT NOT NULL,
    key         TEXT NOT NULL
);
"#;

pub const MIGRATIONS: &[&str] = &[SCHEMA_V1];

/// A batch claimed by a replica that neither delivered, released nor
/// renewed it in this long (it died) is taken back by the others. A replica
/// renews its claim every `log_shipper::CLAIM_RENEWAL` while it delivers,
/// so a slow delivery keeps its batch, and a killed replica's lines go out
/// a few seconds later rather than after the peers' HTTP timeout.
const STALE_CLAIM: Duration = Duration::from_secs(6);

/// Now on the database's clock, in microseconds since the epoch.
const DB_NOW: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT";

const COLUMNS: &str =
    "id, name, status, parameters, tags, data_catalog, created_at, started_at, finished_at, error";

#[derive(Clone)]
pub struct PostgresPipelineStore {
    pool: PgPool,
    log_capacity: usize,
    owner: String,
}

impl PostgresPipelineStore {
    pub fn new(pool: PgPool, log_capacity: usize) -> PostgresPipelineStore {
        PostgresPipelineStore {
            pool,
            log_capacity,
            owner: uuid::Uuid::new_v4().to_string(),
        }
    }
}

fn read_run(row: &PgRow) -> ServiceResult<Run> {
    let id: String = row.try_get("id")?;
    let bad =
        |what: &str, e: String| ServiceError::Storage(format!("run {id}: stored {what}: {e}"));
    let text = |column: &str| -> ServiceResult<String> { Ok(row.try_get(column)?) };
    let time = |column: &str| -> ServiceResult<Option<Timestamp>> {
        let value: Option<String> = row.try_get(column)?;
        value
            .map(|t| Timestamp::parse(&t).map_err(|e| bad(column, e)))
            .transpose()
    };
    let status = text("status")?;
    let tags: sqlx::types::Json<serde_json::Value> = row.try_get("tags")?;
    Ok(Run {
        name: text("name")?,
        status: PipelineStatus::parse(&status)
            .ok_or_else(|| bad("status", format!("unknown status {status}")))?,
        parameters: serde_json::from_str(&text("parameters")?)
            .map_err(|e| bad("parameters", e.to_string()))?,
        tags: serde_json::from_value(tags.0).map_err(|e| bad("tags", e.to_string()))?,
        data_catalog: serde_json::from_str(&text("data_catalog")?)
            .map_err(|e| bad("data_catalog", e.to_string()))?,
        created_at: time("created_at")?.ok_or_else(|| bad("created_at", "missing".into()))?,
        started_at: time("started_at")?,
        finished_at: time("finished_at")?,
        error: row.try_get("error")?,
        id,
    })
}

fn runs(rows: &[PgRow]) -> ServiceResult<Vec<Run>> {
    rows.iter().map(read_run).collect()
}

async fn select_one(
    tx: &mut Transaction<'_, Postgres>,
    id: &str,
    lock: bool,
) -> ServiceResult<Option<Run>> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    sqlx::query(sql(format!(
        "SELECT {COLUMNS} FROM pipelines WHERE id = $1{lock}"
    )))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .as_ref()
    .map(read_run)
    .transpose()
}

fn push_filter(q: &mut QueryBuilder<Postgres>, filter: &ListFilter) {
    if let Some(statuses) = &filter.statuses {
        let names: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
        q.push(" AND status = ANY(").push_bind(names).push(")");
    }
    if let Some(name) = &filter.name {
        q.push(" AND name = ").push_bind(name.clone());
    }
    if let Some(tag) = &filter.tag {
        q.push(" AND tags @> ")
            .push_bind(sqlx::types::Json(serde_json::json!([tag])));
    }
}

fn ts_text(t: Option<Timestamp>) -> Option<String> {
    t.map(|t| t.to_rfc3339())
}

impl PostgresPipelineStore {
    /// Adds `lines` to the outbox in `tx`, then drops the oldest unclaimed
    /// ones beyond capacity (counted per run, reported later).
    async fn append(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        lines: &[LogLine],
    ) -> ServiceResult<()> {
        if lines.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO log_outbox (pipeline_id, level, node, message, time, key)
             SELECT p, l, n, m, t, k FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
                 WITH ORDINALITY AS u(p, l, n, m, t, k, i) ORDER BY i",
        )
        .bind(lines.iter().map(|l| l.pipeline_id.as_str()).collect::<Vec<_>>())
        .bind(lines.iter().map(|l| l.level.as_str()).collect::<Vec<_>>())
        .bind(lines.iter().map(|l| l.node.as_deref()).collect::<Vec<_>>())
        .bind(lines.iter().map(|l| l.message.as_str()).collect::<Vec<_>>())
        .bind(lines.iter().map(|l| l.time.as_str()).collect::<Vec<_>>())
        .bind(lines.iter().map(|l| l.key.as_str()).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
        self.trim(tx).await
    }

    async fn trim(&self, tx: &mut Transaction<'_, Postgres>) -> ServiceResult<()> {
        let dropped = sqlx::query(
            "WITH gone AS (
                 DELETE FROM log_outbox WHERE claimed_by IS NULL
                   AND seq <= (SELECT MAX(seq) FROM log_outbox) - $1
                 RETURNING pipeline_id, time)
             SELECT pipeline_id, COUNT(*) AS count, MAX(time) AS last_time FROM gone GROUP BY pipeline_id",
        )
        .bind(self.log_capacity as i64)
        .fetch_all(&mut **tx)
        .await?;
        for row in dropped {
            let pipeline_id: String = row.try_get("pipeline_id")?;
            let count: i64 = row.try_get("count")?;
            let key = format!("{pipeline_id}:dropped:{}", uuid::Uuid::new_v4().simple());
            let total: i64 = sqlx::query_scalar(
                "INSERT INTO log_dropped (pipeline_id, count, last_time, key) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (pipeline_id) DO UPDATE SET count = log_dropped.count + excluded.count,
                     last_time = GREATEST(log_dropped.last_time, excluded.last_time), key = excluded.key
                 RETURNING count",
            )
            .bind(&pipeline_id)
            .bind(count)
            .bind(row.try_get::<String, _>("last_time")?)
            .bind(key)
            .fetch_one(&mut **tx)
            .await?;
            if total == count {
                tracing::warn!(
                    %pipeline_id,
                    capacity = self.log_capacity,
                    "log outbox full while the log subgraph is unreachable: dropping this run's oldest log lines (raise log_buffer to keep more)"
                );
            }
        }
        Ok(())
    }

    /// Gives back this replica's claimed lines and those of replicas that
    /// stopped (claims older than [`STALE_CLAIM`]).
    async fn release_in(&self, tx: &mut Transaction<'_, Postgres>) -> ServiceResult<()> {
        sqlx::query(sql(format!(
            "UPDATE log_outbox SET claimed_by = NULL, claimed_at = NULL
             WHERE claimed_by = $1 OR claimed_at < {DB_NOW} - $2"
        )))
        .bind(&self.owner)
        .bind(STALE_CLAIM.as_micros() as i64)
        .execute(&mut **tx)
        .await?;
        self.trim(tx).await
    }

    /// Overflow warnings first: one line per run whose lines were dropped.
    async fn warnings(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        batch: &mut Batch,
    ) -> ServiceResult<()> {
        let rows = sqlx::query(
            "SELECT pipeline_id, count, last_time, key FROM log_dropped
             ORDER BY last_time, pipeline_id FOR UPDATE SKIP LOCKED",
        )
        .fetch_all(&mut **tx)
        .await?;
        for row in rows {
            let pipeline_id: String = row.try_get("pipeline_id")?;
            let count: i64 = row.try_get("count")?;
            let key: String = row.try_get("key")?;
            batch.lines.push(LogLine {
                message: super::outbox::dropped_message(count, self.log_capacity),
                pipeline_id: pipeline_id.clone(),
                level: Level::Warning,
                node: None,
                time: row.try_get("last_time")?,
                key: key.clone(),
            });
            batch.warnings.push((pipeline_id, count, key));
        }
        Ok(())
    }

    async fn fail(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        which: &str,
        error: &str,
        at: Timestamp,
    ) -> ServiceResult<Vec<Run>> {
        let rows = sqlx::query(sql(format!(
            "UPDATE pipelines SET status = 'FAILURE', finished_at = $1, error = $2, owner = NULL, lease_until = NULL
             WHERE id IN (SELECT id FROM pipelines WHERE {which} FOR UPDATE SKIP LOCKED)
             RETURNING {COLUMNS}"
        )))
        .bind(at.to_rfc3339())
        .bind(error)
        .fetch_all(&mut **tx)
        .await?;
        let mut failed = runs(&rows)?;
        failed.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(failed)
    }
}

impl PipelineStore for PostgresPipelineStore {
    fn insert(&self, run: Run, log: Vec<LogLine>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            sqlx::query(sql(format!(
                "INSERT INTO pipelines ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            )))
            .bind(&run.id)
            .bind(&run.name)
            .bind(run.status.as_str())
            .bind(to_json(&run.parameters)?)
            .bind(sqlx::types::Json(&run.tags))
            .bind(to_json(&run.data_catalog)?)
            .bind(run.created_at.to_rfc3339())
            .bind(ts_text(run.started_at))
            .bind(ts_text(run.finished_at))
            .bind(&run.error)
            .execute(&mut *tx)
            .await?;
            self.append(&mut tx, &log).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn get(&self, id: String) -> StoreFuture<'_, Option<Run>> {
        Box::pin(async move {
            sqlx::query(sql(format!(
                "SELECT {COLUMNS} FROM pipelines WHERE id = $1"
            )))
            .bind(&id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(read_run)
            .transpose()
        })
    }

    fn get_many(&self, ids: Vec<String>) -> StoreFuture<'_, Vec<Option<Run>>> {
        Box::pin(async move {
            let rows = sqlx::query(sql(format!(
                "SELECT {COLUMNS} FROM pipelines WHERE id = ANY($1)"
            )))
            .bind(&ids)
            .fetch_all(&self.pool)
            .await?;
            Ok(in_order(&ids, runs(&rows)?, |r| &r.id))
        })
    }

    fn list(&self, query: ListQuery) -> StoreFuture<'_, RunPage> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
            let mut count = QueryBuilder::new("SELECT COUNT(*) FROM pipelines WHERE TRUE");
            push_filter(&mut count, &query.filter);
            let total: i64 = count.build_query_scalar().fetch_one(&mut *tx).await?;
            let mut page = QueryBuilder::new(format!("SELECT {COLUMNS} FROM pipelines WHERE TRUE"));
            push_filter(&mut page, &query.filter);
            if let Some(after) = &query.after {
                page.push(" AND (created_at, id) < (")
                    .push_bind(after.created_at.clone())
                    .push(", ")
                    .push_bind(after.id.clone())
                    .push(")");
            }
            page.push(" ORDER BY created_at DESC, id DESC LIMIT ")
                .push_bind(query.limit as i64 + 1);
            let rows = page.build().fetch_all(&mut *tx).await?;
            tx.commit().await?;
            let mut items = runs(&rows)?;
            let next = if items.len() > query.limit {
                items.truncate(query.limit);
                items.last().map(PageKey::of)
            } else {
                None
            };
            Ok(RunPage { items, next, total })
        })
    }

    fn transition(&self, id: String, to: Transition) -> StoreFuture<'_, Moved> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            let Some(mut run) = select_one(&mut tx, &id, true).await? else {
                return Ok(Moved::Missing);
            };
            let holder: Option<String> =
                sqlx::query_scalar("SELECT owner FROM pipelines WHERE id = $1")
                    .bind(&id)
                    .fetch_one(&mut *tx)
                    .await?;
            if !run.status.can_move_to(to.to) || !may_start(&to, holder.as_deref(), &self.owner) {
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
            sqlx::query(
                "UPDATE pipelines SET status = $2, started_at = $3, finished_at = $4, error = $5 WHERE id = $1",
            )
            .bind(&run.id)
            .bind(run.status.as_str())
            .bind(ts_text(run.started_at))
            .bind(ts_text(run.finished_at))
            .bind(&run.error)
            .execute(&mut *tx)
            .await?;
            self.append(&mut tx, &to.log).await?;
            tx.commit().await?;
            Ok(Moved::Done(run))
        })
    }

    fn delete_finished(&self, id: String) -> StoreFuture<'_, Deleted> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            let Some(run) = select_one(&mut tx, &id, true).await? else {
                return Ok(Deleted::Missing);
            };
            if !run.status.is_terminal() {
                return Ok(Deleted::Live(run));
            }
            sqlx::query("DELETE FROM pipelines WHERE id = $1")
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Deleted::Done(run))
        })
    }

    fn recover(
        &self,
        orphans: Orphans,
        error: String,
        at: Timestamp,
        line: LineFor,
    ) -> StoreFuture<'_, Vec<Run>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            let which = match orphans {
                Orphans::All => "status IN ('PENDING', 'RUNNING')".to_string(),
                Orphans::LeaseExpired => {
                    sqlx::query(sql(format!(
                        "UPDATE pipelines SET owner = NULL, lease_until = NULL
                         WHERE id IN (SELECT id FROM pipelines WHERE status = 'PENDING'
                                        AND owner IS NOT NULL AND lease_until < {DB_NOW}
                                      FOR UPDATE SKIP LOCKED)"
                    )))
                    .execute(&mut *tx)
                    .await?;
                    format!("status = 'RUNNING' AND COALESCE(lease_until, 0) < {DB_NOW}")
                }
            };
            let failed = self.fail(&mut tx, &which, &error, at).await?;
            let lines: Vec<LogLine> = failed.iter().map(line).collect();
            self.append(&mut tx, &lines).await?;
            tx.commit().await?;
            Ok(failed)
        })
    }

    fn claim(&self, lease: Duration) -> StoreFuture<'_, Option<Run>> {
        Box::pin(async move {
            sqlx::query(sql(format!(
                "UPDATE pipelines SET owner = $1, lease_until = {DB_NOW} + $2
                 WHERE id = (SELECT id FROM pipelines WHERE status = 'PENDING' AND owner IS NULL
                             ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING {COLUMNS}"
            )))
            .bind(&self.owner)
            .bind(lease.as_micros() as i64)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(read_run)
            .transpose()
        })
    }

    fn renew(&self, lease: Duration, ids: Vec<String>) -> StoreFuture<'_, Vec<String>> {
        Box::pin(async move {
            Ok(sqlx::query_scalar(sql(format!(
                "UPDATE pipelines SET lease_until = {DB_NOW} + $2
                 WHERE owner = $1 AND status IN ('PENDING', 'RUNNING') AND id = ANY($3)
                 RETURNING id"
            )))
            .bind(&self.owner)
            .bind(lease.as_micros() as i64)
            .bind(&ids)
            .fetch_all(&self.pool)
            .await?)
        })
    }

    fn append_log(&self, log: Vec<LogLine>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            self.append(&mut tx, &log).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn take_log(&self, max: usize) -> StoreFuture<'_, Batch> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            self.release_in(&mut tx).await?;
            let mut batch = Batch::default();
            self.warnings(&mut tx, &mut batch).await?;
            let rows = sqlx::query(sql(format!(
                "UPDATE log_outbox SET claimed_by = $1, claimed_at = {DB_NOW}
                 WHERE seq IN (SELECT seq FROM log_outbox WHERE claimed_by IS NULL
                               ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED)
                 RETURNING seq, pipeline_id, level, node, message, time, key"
            )))
            .bind(&self.owner)
            .bind(max as i64)
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            let mut lines = rows
                .iter()
                .map(|r| -> ServiceResult<(i64, LogLine)> {
                    Ok((
                        r.try_get("seq")?,
                        LogLine {
                            pipeline_id: r.try_get("pipeline_id")?,
                            level: Level::parse(&r.try_get::<String, _>("level")?),
                            node: r.try_get("node")?,
                            message: r.try_get("message")?,
                            time: r.try_get("time")?,
                            key: r.try_get("key")?,
                        },
                    ))
                })
                .collect::<ServiceResult<Vec<_>>>()?;
            lines.sort_by_key(|(seq, _)| *seq);
            batch.lines.extend(lines.into_iter().map(|(_, l)| l));
            Ok(batch)
        })
    }

    fn ack_log(&self, batch: Batch) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            sqlx::query("DELETE FROM log_outbox WHERE claimed_by = $1")
                .bind(&self.owner)
                .execute(&mut *tx)
                .await?;
            // A warning goes once it was delivered and nothing was dropped
            // since (each drop changes the key). Two replicas that delivered
            // the same warning cannot both subtract it; a run with new drops
            // keeps its row, and its next warning counts them all.
            for (pipeline_id, _, key) in &batch.warnings {
                sqlx::query("DELETE FROM log_dropped WHERE pipeline_id = $1 AND key = $2")
                    .bind(pipeline_id)
                    .bind(key)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn release_log(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            self.release_in(&mut tx).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn renew_log(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            sqlx::query(sql(format!(
                "UPDATE log_outbox SET claimed_at = {DB_NOW} WHERE claimed_by = $1"
            )))
            .bind(&self.owner)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }

    fn queued_log(&self) -> StoreFuture<'_, usize> {
        Box::pin(async move {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM log_outbox")
                .fetch_one(&self.pool)
                .await?;
            Ok(n as usize)
        })
    }
}
