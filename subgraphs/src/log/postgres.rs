//! [`LogStore`] on Postgres, for replicas.
//!
//! Line ids come from a sequence, and sequence values are not commit-ordered
//! by themselves: a transaction that took id 7 can commit after one that took
//! id 8, and a stream that delivered 8 would then never see 7. So every
//! insert first takes one transaction-scoped advisory lock: writers take ids
//! one transaction at a time, and a transaction is visible before the next
//! writer gets its ids. "Every line after id N" stays an exact resume point.

use chrono::{DateTime, Utc};
use sqlx::{postgres::PgRow, PgPool, Row};

use super::store::{
    distinct, group_by_run, micros, LineQuery, LogCursor, LogLevel, LogLine, LogStore, NewLogLine,
};
use crate::common::{storage::sql, ServiceError, ServiceResult, StoreFuture, Timestamp};

/// Version 1 (ids are BIGINT identities; time in microseconds, as SQLite).
const SCHEMA_V1: &str = r#"
CREATE TABLE logs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pipeline_id TEXT NOT NULL,
    level SMALLINT NOT NULL,
    message TEXT NOT NULL,
    node TEXT,
    time BIGINT NOT NULL,
    key TEXT UNIQUE
);
CREATE INDEX logs_by_pipeline_time ON logs (pipeline_id, time, id);
CREATE INDEX logs_by_pipeline_id ON logs (pipeline_id, id);
"#;

pub const MIGRATIONS: &[&str] = &[SCHEMA_V1];

/// The advisory lock id every insert takes (any constant; this one spells "logs").
const INSERT_LOCK: i64 = 0x6c6f_6773;

#[derive(Clone)]
pub struct PostgresLogStore {
    pool: PgPool,
}

impl PostgresLogStore {
    pub fn new(pool: PgPool) -> PostgresLogStore {
        PostgresLogStore { pool }
    }
}

const COLUMNS: &str = "id, pipeline_id, level, message, node, time";

fn into_line(row: &PgRow) -> ServiceResult<LogLine> {
    let level: i16 = row.try_get("level")?;
    let time: i64 = row.try_get("time")?;
    Ok(LogLine {
        id: row.try_get("id")?,
        pipeline_id: row.try_get("pipeline_id")?,
        level: LogLevel::from_rank(level.into())?,
        message: row.try_get("message")?,
        node: row.try_get("node")?,
        time: DateTime::<Utc>::from_timestamp_micros(time)
            .map(Timestamp)
            .ok_or_else(|| ServiceError::Storage(format!("stored time {time} is out of range")))?,
    })
}

fn lines(rows: Vec<PgRow>) -> ServiceResult<Vec<LogLine>> {
    rows.iter().map(into_line).collect()
}

fn rank(level: Option<LogLevel>) -> i16 {
    level.map_or(0, LogLevel::rank) as i16
}

impl LogStore for PostgresLogStore {
    fn insert(&self, new: Vec<NewLogLine>) -> StoreFuture<'_, (usize, i64)> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(INSERT_LOCK)
                .execute(&mut *tx)
                .await?;
            let stored = sqlx::query(
                "INSERT INTO logs (pipeline_id, level, message, node, time, key)
                 SELECT p, l, m, n, t, k
                 FROM UNNEST($1::text[], $2::smallint[], $3::text[], $4::text[], $5::bigint[], $6::text[])
                      WITH ORDINALITY AS u(p, l, m, n, t, k, i)
                 ORDER BY i
                 ON CONFLICT (key) DO NOTHING",
            )
            .bind(new.iter().map(|l| l.pipeline_id.as_str()).collect::<Vec<_>>())
            .bind(new.iter().map(|l| l.level.rank() as i16).collect::<Vec<_>>())
            .bind(new.iter().map(|l| l.message.as_str()).collect::<Vec<_>>())
            .bind(new.iter().map(|l| l.node.as_deref()).collect::<Vec<_>>())
            .bind(new.iter().map(|l| micros(l.time)).collect::<Vec<_>>())
            .bind(new.iter().map(|l| l.key.as_deref()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM logs")
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok((stored as usize, last))
        })
    }

    fn last_id(&self) -> StoreFuture<'_, i64> {
        Box::pin(async move {
            Ok(sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM logs")
                .fetch_one(&self.pool)
                .await?)
        })
    }

    fn history(
        &self,
        q: LineQuery,
        after: Option<LogCursor>,
        up_to: Option<i64>,
    ) -> StoreFuture<'_, Vec<LogLine>> {
        Box::pin(async move {
            let (after_time, after_id) = after.map_or((i64::MIN, i64::MIN), |c| (c.time_us, c.id));
            let rows = sqlx::query(sql(format!(
                "SELECT {COLUMNS} FROM logs
                 WHERE pipeline_id = $1 AND level >= $2 AND id <= $3
                   AND (time > $4 OR (time = $4 AND id > $5))
                 ORDER BY time, id LIMIT $6"
            )))
            .bind(&q.pipeline_id)
            .bind(rank(q.min_level))
            .bind(up_to.unwrap_or(i64::MAX))
            .bind(after_time)
            .bind(after_id)
            .bind(q.limit as i64)
            .fetch_all(&self.pool)
            .await?;
            lines(rows)
        })
    }

    fn first_lines(
        &self,
        pipeline_ids: Vec<String>,
        min_level: Option<LogLevel>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<Vec<LogLine>>> {
        Box::pin(async move {
            // Each run's first lines through the (pipeline_id, time, id)
            // index, `limit` rows per run: a window over the runs' lines
            // read every line of their logs. `group_by_run` orders each page.
            let rows = sqlx::query(sql(format!(
                "SELECT page.* FROM unnest($1::text[]) AS run(id)
                 CROSS JOIN LATERAL (
                   SELECT {COLUMNS} FROM logs
                   WHERE pipeline_id = run.id AND level >= $2
                   ORDER BY time, id LIMIT $3
                 ) page"
            )))
            .bind(distinct(&pipeline_ids))
            .bind(rank(min_level))
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
            Ok(group_by_run(&pipeline_ids, lines(rows)?))
        })
    }

    fn after_id(&self, q: LineQuery, after_id: i64) -> StoreFuture<'_, Vec<LogLine>> {
        Box::pin(async move {
            let rows = sqlx::query(sql(format!(
                "SELECT {COLUMNS} FROM logs
                 WHERE pipeline_id = $1 AND level >= $2 AND id > $3
                 ORDER BY id LIMIT $4"
            )))
            .bind(&q.pipeline_id)
            .bind(rank(q.min_level))
            .bind(after_id)
            .bind(q.limit as i64)
            .fetch_all(&self.pool)
            .await?;
            lines(rows)
        })
    }
}
