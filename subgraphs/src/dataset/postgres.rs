//! [`DatasetStore`] on Postgres, for replicas. Same columns as SQLite; tags
//! are JSONB so the tag filter is a containment test, and `config` stays
//! text so it reads back exactly as written.

use sqlx::{postgres::PgRow, PgPool, Postgres, QueryBuilder, Row};

use super::store::{
    from_micros, micros, new_record, next_page, ContentStep, Dataset, DatasetStore, Filter,
    NewDataset, Page, PageKey,
};
use crate::common::{
    storage::{in_order, sql, to_json},
    ServiceError, ServiceResult, StoreFuture, Timestamp,
};

const SCHEMA_V1: &str = r#"
CREATE TABLE datasets (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    config TEXT,
    tags JSONB NOT NULL DEFAULT '[]',
    size_bytes BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    produced_by_pipeline_id TEXT
);
CREATE INDEX datasets_newest_first ON datasets (created_at DESC, id DESC);
"#;

pub const MIGRATIONS: &[&str] = &[SCHEMA_V1];

const COLUMNS: &str =
    "id, name, type, config, tags, size_bytes, created_at, updated_at, produced_by_pipeline_id";

#[derive(Clone)]
pub struct PostgresDatasetStore {
    pool: PgPool,
    /// Uploads storing content at once (each holds a pooled connection).
    uploads: std::sync::Arc<tokio::sync::Semaphore>,
}

/// Uploads that may store content at once, of the pool's connections.
const UPLOADS_AT_ONCE: usize = 4;

impl PostgresDatasetStore {
    pub fn new(pool: PgPool) -> PostgresDatasetStore {
        PostgresDatasetStore {
            pool,
            uploads: std::sync::Arc::new(tokio::sync::Semaphore::new(UPLOADS_AT_ONCE)),
        }
    }
}

fn read(row: &PgRow) -> ServiceResult<Dataset> {
    let id: String = row.try_get("id")?;
    let bad = |what: &str, e: serde_json::Error| {
        ServiceError::Storage(format!("dataset {id}: stored {what} is not valid: {e}"))
    };
    let config: Option<String> = row.try_get("config")?;
    let config = config
        .map(|text| serde_json::from_str(&text).map_err(|e| bad("config", e)))
        .transpose()?;
    let tags: sqlx::types::Json<serde_json::Value> = row.try_get("tags")?;
    let tags = serde_json::from_value(tags.0).map_err(|e| bad("tags", e))?;
    Ok(Dataset {
        name: row.try_get("name")?,
        r#type: row.try_get("type")?,
        config,
        tags,
        size_bytes: row.try_get("size_bytes")?,
        created_at: from_micros(row.try_get("created_at")?)?,
        updated_at: from_micros(row.try_get("updated_at")?)?,
        produced_by_pipeline_id: row.try_get("produced_by_pipeline_id")?,
        id,
    })
}

/// Appends ` AND <condition>` for each set field of `filter`.
fn push_filter(q: &mut QueryBuilder<Postgres>, filter: &Filter) {
    if let Some(name) = &filter.name {
        q.push(" AND name ILIKE ")
            .push_bind(super::store::like_pattern(name))
            .push(" ESCAPE '\\'");
    }
    if let Some(t) = &filter.r#type {
        q.push(" AND type = ").push_bind(t.clone());
    }
    if let Some(tag) = &filter.tag {
        q.push(" AND tags @> ")
            .push_bind(sqlx::types::Json(serde_json::json!([tag])));
    }
}

async fn get_in<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    id: &str,
) -> ServiceResult<Option<Dataset>> {
    sqlx::query(sql(format!("SELECT {COLUMNS} FROM datasets WHERE id = $1")))
        .bind(id)
        .fetch_optional(executor)
        .await?
        .as_ref()
        .map(read)
        .transpose()
}

/// Runs a file step on the blocking pool (it renames or removes files).
async fn run_step(step: ContentStep) -> ServiceResult<()> {
    tokio::task::spawn_blocking(step)
        .await
        .map_err(|e| ServiceError::Storage(format!("content step failed: {e}")))?
}

impl DatasetStore for PostgresDatasetStore {
    fn create(&self, new: NewDataset) -> StoreFuture<'_, Dataset> {
        Box::pin(async move {
            let dataset = new_record(new);
            let config = dataset.config.as_ref().map(to_json).transpose()?;
            sqlx::query(sql(format!(
                "INSERT INTO datasets ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, NULL, $6, $6, NULL)"
            )))
            .bind(&dataset.id)
            .bind(&dataset.name)
            .bind(&dataset.r#type)
            .bind(config)
            .bind(sqlx::types::Json(&dataset.tags))
            .bind(micros(dataset.created_at))
            .execute(&self.pool)
            .await?;
            Ok(dataset)
        })
    }

    fn get(&self, id: String) -> StoreFuture<'_, Option<Dataset>> {
        Box::pin(async move { get_in(&self.pool, &id).await })
    }

    fn get_many(&self, ids: Vec<String>) -> StoreFuture<'_, Vec<Option<Dataset>>> {
        Box::pin(async move {
            let rows = sqlx::query(sql(format!(
                "SELECT {COLUMNS} FROM datasets WHERE id = ANY($1)"
            )))
            .bind(&ids)
            .fetch_all(&self.pool)
            .await?;
            let found = rows.iter().map(read).collect::<ServiceResult<Vec<_>>>()?;
            Ok(in_order(&ids, found, |d| &d.id))
        })
    }

    fn list(&self, limit: usize, after: Option<PageKey>, filter: Filter) -> StoreFuture<'_, Page> {
        Box::pin(async move {
            // Count and page in one snapshot so `total` matches the items.
            let mut tx = self.pool.begin().await?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
            let mut count = QueryBuilder::new("SELECT COUNT(*) FROM datasets WHERE TRUE");
            push_filter(&mut count, &filter);
            let total: i64 = count.build_query_scalar().fetch_one(&mut *tx).await?;
            let mut page = QueryBuilder::new(format!("SELECT {COLUMNS} FROM datasets WHERE TRUE"));
            push_filter(&mut page, &filter);
            if let Some(key) = &after {
                page.push(" AND (created_at, id) < (")
                    .push_bind(key.created_at_us)
                    .push(", ")
                    .push_bind(key.id.clone())
                    .push(")");
            }
            page.push(" ORDER BY created_at DESC, id DESC LIMIT ")
                .push_bind(limit as i64 + 1);
            let rows = page.build().fetch_all(&mut *tx).await?;
            tx.commit().await?;
            let mut items = rows.iter().map(read).collect::<ServiceResult<Vec<_>>>()?;
            let next_cursor = next_page(&mut items, limit);
            Ok(Page {
                items,
                next_cursor,
                total,
            })
        })
    }

    fn delete(&self, id: String, remove_content: ContentStep) -> StoreFuture<'_, Option<Dataset>> {
        let pool = self.pool.clone();
        // Runs to the end even if the caller goes away; the content goes
        // only once the record's deletion is committed (a failure after the
        // commit leaves an object nothing points to, never a record
        // without its content).
        Box::pin(detached(async move {
            let Some(dataset) = sqlx::query(sql(format!(
                "DELETE FROM datasets WHERE id = $1 RETURNING {COLUMNS}"
            )))
            .bind(&id)
            .fetch_optional(&pool)
            .await?
            .as_ref()
            .map(read)
            .transpose()?
            else {
                return Ok(None);
            };
            if let Err(e) = run_step(remove_content).await {
                tracing::error!(dataset = %id, error = %e, "deleted a dataset but not its content; the object stays unreferenced");
            }
            Ok(Some(dataset))
        }))
    }

    fn set_producer(&self, id: String, pipeline_id: String) -> StoreFuture<'_, Option<Dataset>> {
        Box::pin(async move {
            sqlx::query(sql(format!(
                "UPDATE datasets SET produced_by_pipeline_id = $2, updated_at = $3 WHERE id = $1 RETURNING {COLUMNS}"
            )))
            .bind(&id)
            .bind(&pipeline_id)
            .bind(micros(Timestamp::now()))
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(read)
            .transpose()
        })
    }

    fn record_upload(
        &self,
        id: String,
        size_bytes: i64,
        publish: ContentStep,
    ) -> StoreFuture<'_, Option<Dataset>> {
        let (pool, uploads) = (self.pool.clone(), self.uploads.clone());
        // Runs to the end even if the caller goes away, so the content and
        // the record's size change together.
        Box::pin(detached(async move {
            // The put holds a pooled connection: leave most of them to the rest.
            let _permit = uploads
                .acquire_owned()
                .await
                .map_err(|e| ServiceError::Storage(e.to_string()))?;
            let mut tx = pool.begin().await?;
            let Some(dataset) = sqlx::query(sql(format!(
                "UPDATE datasets SET size_bytes = $2, updated_at = $3 WHERE id = $1 RETURNING {COLUMNS}"
            )))
            .bind(&id)
            .bind(size_bytes)
            .bind(micros(Timestamp::now()))
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(read)
            .transpose()?
            else {
                return Ok(None);
            };
            run_step(publish).await?;
            tx.commit().await?;
            Ok(Some(dataset))
        }))
    }
}

/// Runs `work` on its own task: dropping the returned future does not stop it.
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = ServiceResult<T>> + Send + 'static,
) -> ServiceResult<T> {
    tokio::spawn(work)
        .await
        .map_err(|e| ServiceError::Storage(format!("storage task failed: {e}")))?
}
