//! Dataset records: the storage trait and its SQLite implementation.
//!
//! Times are stored as integer microseconds since the epoch so that ordering
//! and cursors compare numbers, not strings.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Row};

use crate::common::{
    cursor,
    storage::{in_order, sqlite_rows_by_ids, to_json},
    Db, ServiceError, ServiceResult, StoreFuture, Tag, Timestamp,
};

/// Version 1: the schema as first released (idempotent, so databases made
/// before versioning was added open as version 1).
const SCHEMA_V1: &str = r#"
CREATE TABLE IF NOT EXISTS datasets (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    config TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    size_bytes INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    produced_by_pipeline_id TEXT
);
CREATE INDEX IF NOT EXISTS datasets_newest_first ON datasets (created_at DESC, id DESC);
"#;

/// Schema versions in order; a database is brought to the last one on
/// open (`PRAGMA user_version` records where it is).
const MIGRATIONS: &[&str] = &[SCHEMA_V1];

/// A catalog record.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Dataset {
    pub id: String,
    pub name: String,
    pub r#type: String,
    pub config: Option<serde_json::Value>,
    pub tags: Vec<Tag>,
    /// `None` until content was uploaded.
    pub size_bytes: Option<i64>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub produced_by_pipeline_id: Option<String>,
}

/// A validated new record.
#[derive(Clone, Debug)]
pub struct NewDataset {
    pub name: String,
    pub r#type: String,
    pub config: Option<serde_json::Value>,
    pub tags: Vec<Tag>,
}

/// Which records a listing returns; every set field must match.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Substring of the name, ASCII case-insensitive.
    pub name: Option<String>,
    /// Exact type.
    pub r#type: Option<String>,
    /// A tag with exactly this key and value.
    pub tag: Option<Tag>,
}

/// One page of a listing.
#[derive(Clone, Debug)]
pub struct Page {
    pub items: Vec<Dataset>,
    pub next_cursor: Option<String>,
    pub total: i64,
}

/// Where the newest-first order of a listing resumes: strictly after this record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageKey {
    pub created_at_us: i64,
    pub id: String,
}

impl PageKey {
    pub fn encode(&self) -> String {
        cursor::encode(&format!("{}|{}", self.created_at_us, self.id))
    }

    pub fn decode(text: &str) -> ServiceResult<PageKey> {
        let raw = cursor::decode(text)?;
        raw.split_once('|')
            .and_then(|(t, id)| {
                let created_at_us = t.parse().ok()?;
                (!id.is_empty()).then(|| PageKey {
                    created_at_us,
                    id: id.to_string(),
                })
            })
            // A well-encoded string that is not ours gets the same message as garbage.
            .ok_or_else(|| bad_cursor(text))
    }
}

fn bad_cursor(text: &str) -> ServiceError {
    ServiceError::bad_input(format!(
        "`cursor` \"{text}\" is not a cursor this service issued; pass `nextCursor` from a previous page, or omit it to start from the first page"
    ))
}

/// A file operation a store runs inside a record's transaction (see [`DatasetStore`]).
pub type ContentStep = Box<dyn FnOnce() -> ServiceResult<()> + Send>;

/// Storage of dataset records; [`SqliteDatasetStore`] embedded,
/// `PostgresDatasetStore` for replicas. Methods that change content take the
/// file operation as a step that runs inside the record's transaction, so a
/// record and its content never disagree.
pub trait DatasetStore: Send + Sync + 'static {
    fn create(&self, new: NewDataset) -> StoreFuture<'_, Dataset>;
    fn get(&self, id: String) -> StoreFuture<'_, Option<Dataset>>;
    /// Same order as `ids`, `None` for unknown ids; one query.
    fn get_many(&self, ids: Vec<String>) -> StoreFuture<'_, Vec<Option<Dataset>>>;
    fn list(&self, limit: usize, after: Option<PageKey>, filter: Filter) -> StoreFuture<'_, Page>;
    /// Deletes the record, then (once that is committed) runs
    /// `remove_content`; `None` if unknown. A failure to remove the content
    /// is logged and leaves an object nothing points to, never a record
    /// whose content is gone.
    fn delete(&self, id: String, remove_content: ContentStep) -> StoreFuture<'_, Option<Dataset>>;
    fn set_producer(&self, id: String, pipeline_id: String) -> StoreFuture<'_, Option<Dataset>>;
    /// Runs `publish` (moves the uploaded content in place) and records the
    /// new size in one transaction; `None` (and `publish` not run) if the
    /// record is gone.
    fn record_upload(
        &self,
        id: String,
        size_bytes: i64,
        publish: ContentStep,
    ) -> StoreFuture<'_, Option<Dataset>>;
}

/// A new record with a fresh id, created and updated now.
pub fn new_record(new: NewDataset) -> Dataset {
    // To the microsecond, as stored: the record returned equals the one read back.
    use chrono::SubsecRound;
    let now = Timestamp(Timestamp::now().0.trunc_subsecs(6));
    Dataset {
        id: uuid::Uuid::new_v4().to_string(),
        name: new.name,
        r#type: new.r#type,
        config: new.config,
        tags: new.tags,
        size_bytes: None,
        created_at: now,
        updated_at: now,
        produced_by_pipeline_id: None,
    }
}

/// The cursor of the page that ends with `items[limit - 1]`, if more follow
/// (`items` holds up to `limit + 1`, truncated here).
pub fn next_page(items: &mut Vec<Dataset>, limit: usize) -> Option<String> {
    if items.len() <= limit {
        return None;
    }
    items.truncate(limit);
    items.last().map(|d| {
        PageKey {
            created_at_us: micros(d.created_at),
            id: d.id.clone(),
        }
        .encode()
    })
}

/// [`DatasetStore`] on one SQLite file.
#[derive(Clone)]
pub struct SqliteDatasetStore {
    db: Db,
}

impl SqliteDatasetStore {
    pub fn open(path: &std::path::Path) -> ServiceResult<SqliteDatasetStore> {
        Ok(SqliteDatasetStore {
            db: Db::open(path, MIGRATIONS)?,
        })
    }
}

const COLUMNS: &str =
    "id, name, type, config, tags, size_bytes, created_at, updated_at, produced_by_pipeline_id";

pub(super) fn micros(t: Timestamp) -> i64 {
    t.0.timestamp_micros()
}

pub(super) fn from_micros(us: i64) -> ServiceResult<Timestamp> {
    DateTime::<Utc>::from_timestamp_micros(us)
        .map(Timestamp)
        .ok_or_else(|| ServiceError::Storage(format!("stored time {us} is out of range")))
}

/// Rows are read raw first and converted outside rusqlite's callback so that
/// bad stored JSON is a storage error, not a panic.
struct RawRow {
    id: String,
    name: String,
    r#type: String,
    config: Option<String>,
    tags: String,
    size_bytes: Option<i64>,
    created_at: i64,
    updated_at: i64,
    produced_by_pipeline_id: Option<String>,
}

fn raw_row(row: &Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        id: row.get(0)?,
        name: row.get(1)?,
        r#type: row.get(2)?,
        config: row.get(3)?,
        tags: row.get(4)?,
        size_bytes: row.get(5)?,
        created_at: row.get(6)?,
        updated_at: row.get(7)?,
        produced_by_pipeline_id: row.get(8)?,
    })
}

impl RawRow {
    fn into_dataset(self) -> ServiceResult<Dataset> {
        let bad = |what: &str, e: serde_json::Error| {
            ServiceError::Storage(format!(
                "dataset {}: stored {what} is not valid JSON: {e}",
                self.id
            ))
        };
        let config = match &self.config {
            Some(text) => Some(serde_json::from_str(text).map_err(|e| bad("config", e))?),
            None => None,
        };
        let tags = serde_json::from_str(&self.tags).map_err(|e| bad("tags", e))?;
        Ok(Dataset {
            created_at: from_micros(self.created_at)?,
            updated_at: from_micros(self.updated_at)?,
            id: self.id,
            name: self.name,
            r#type: self.r#type,
            config,
            tags,
            size_bytes: self.size_bytes,
            produced_by_pipeline_id: self.produced_by_pipeline_id,
        })
    }
}

fn get_in(conn: &rusqlite::Connection, id: &str) -> ServiceResult<Option<Dataset>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM datasets WHERE id = ?1"),
        [id],
        raw_row,
    )
    .optional()?
    .map(RawRow::into_dataset)
    .transpose()
}

/// `%` and `_` in the user's text match themselves.
pub(super) fn like_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// The WHERE clause of a filter and its parameters.
fn filter_sql(filter: &Filter) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut clauses = Vec::new();
    let mut values = Vec::new();
    if let Some(name) = &filter.name {
        values.push(Value::Text(like_pattern(name)));
        clauses.push(format!("name LIKE ?{} ESCAPE '\\'", values.len()));
    }
    if let Some(t) = &filter.r#type {
        values.push(Value::Text(t.clone()));
        clauses.push(format!("type = ?{}", values.len()));
    }
    if let Some(tag) = &filter.tag {
        values.push(Value::Text(tag.key.clone()));
        values.push(Value::Text(tag.value.clone()));
        clauses.push(format!(
            "EXISTS (SELECT 1 FROM json_each(datasets.tags) t WHERE json_extract(t.value, '$.key') = ?{} AND json_extract(t.value, '$.value') = ?{})",
            values.len() - 1,
            values.len()
        ));
    }
    let sql = if clauses.is_empty() {
        "1".to_string()
    } else {
        clauses.join(" AND ")
    };
    (sql, values)
}

impl DatasetStore for SqliteDatasetStore {
    fn create(&self, new: NewDataset) -> StoreFuture<'_, Dataset> {
        Box::pin(async move {
            let dataset = new_record(new);
            let now = dataset.created_at;
            let config = dataset.config.as_ref().map(to_json).transpose()?;
            let tags = to_json(&dataset.tags)?;
            let row = dataset.clone();
            self.db
                .call(move |conn| {
                    conn.execute(
                        &format!("INSERT INTO datasets ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, ?6, NULL)"),
                        params![row.id, row.name, row.r#type, config, tags, micros(now)],
                    )?;
                    Ok(())
                })
                .await?;
            Ok(dataset)
        })
    }

    fn get(&self, id: String) -> StoreFuture<'_, Option<Dataset>> {
        Box::pin(async move { self.db.call(move |conn| get_in(conn, &id)).await })
    }

    fn get_many(&self, ids: Vec<String>) -> StoreFuture<'_, Vec<Option<Dataset>>> {
        Box::pin(async move {
            let ids_json = to_json(&ids)?;
            let found = self
                .db
                .call(move |conn| {
                    sqlite_rows_by_ids(conn, COLUMNS, "datasets", ids_json, raw_row)?
                        .into_iter()
                        .map(RawRow::into_dataset)
                        .collect::<ServiceResult<Vec<_>>>()
                })
                .await?;
            Ok(in_order(&ids, found, |d| &d.id))
        })
    }

    fn list(&self, limit: usize, after: Option<PageKey>, filter: Filter) -> StoreFuture<'_, Page> {
        Box::pin(async move {
            self.db
                .call(move |conn| {
                    let (where_sql, mut values) = filter_sql(&filter);
                    // Count and page in one read transaction so `total` matches the items.
                    let tx = conn.transaction()?;
                    let total: i64 = tx.query_row(
                        &format!("SELECT COUNT(*) FROM datasets WHERE {where_sql}"),
                        rusqlite::params_from_iter(values.iter()),
                        |r| r.get(0),
                    )?;
                    let mut page_sql = where_sql;
                    if let Some(key) = &after {
                        values.push(rusqlite::types::Value::Integer(key.created_at_us));
                        values.push(rusqlite::types::Value::Text(key.id.clone()));
                        let (t, i) = (values.len() - 1, values.len());
                        page_sql = format!("({page_sql}) AND (created_at < ?{t} OR (created_at = ?{t} AND id < ?{i}))");
                    }
                    values.push(rusqlite::types::Value::Integer(limit as i64 + 1));
                    let sql = format!(
                        "SELECT {COLUMNS} FROM datasets WHERE {page_sql} ORDER BY created_at DESC, id DESC LIMIT ?{}",
                        values.len()
                    );
                    let rows = {
                        let mut stmt = tx.prepare(&sql)?;
                        let rows = stmt
                            .query_map(rusqlite::params_from_iter(values.iter()), raw_row)?
                            .collect::<rusqlite::Result<Vec<_>>>()?;
                        rows
                    };
                    tx.commit()?;
                    let mut items = rows
                        .into_iter()
                        .map(RawRow::into_dataset)
                        .collect::<ServiceResult<Vec<_>>>()?;
                    let next_cursor = next_page(&mut items, limit);
                    Ok(Page {
                        items,
                        next_cursor,
                        total,
                    })
                })
                .await
        })
    }

    fn delete(&self, id: String, remove_content: ContentStep) -> StoreFuture<'_, Option<Dataset>> {
        Box::pin(async move {
            self.db
                .call(move |conn| {
                    let tx = conn.transaction()?;
                    let Some(dataset) = get_in(&tx, &id)? else {
                        return Ok(None);
                    };
                    tx.execute("DELETE FROM datasets WHERE id = ?1", [&id])?;
                    tx.commit()?;
                    if let Err(e) = remove_content() {
                        tracing::error!(dataset = %id, error = %e, "deleted a dataset but not its content; the object stays unreferenced");
                    }
                    Ok(Some(dataset))
                })
                .await
        })
    }

    fn set_producer(&self, id: String, pipeline_id: String) -> StoreFuture<'_, Option<Dataset>> {
        Box::pin(async move {
            self.db
                .call(move |conn| {
                    let tx = conn.transaction()?;
                    let n = tx.execute(
                        "UPDATE datasets SET produced_by_pipeline_id = ?2, updated_at = ?3 WHERE id = ?1",
                        params![id, pipeline_id, micros(Timestamp::now())],
                    )?;
                    if n == 0 {
                        return Ok(None);
                    }
                    let dataset = get_in(&tx, &id)?;
                    tx.commit()?;
                    Ok(dataset)
                })
                .await
        })
    }

    fn record_upload(
        &self,
        id: String,
        size_bytes: i64,
        publish: ContentStep,
    ) -> StoreFuture<'_, Option<Dataset>> {
        Box::pin(async move {
            self.db
                .call(move |conn| {
                    let tx = conn.transaction()?;
                    let n = tx.execute(
                        "UPDATE datasets SET size_bytes = ?2, updated_at = ?3 WHERE id = ?1",
                        params![id, size_bytes, micros(Timestamp::now())],
                    )?;
                    if n == 0 {
                        return Ok(None);
                    }
                    publish()?;
                    let dataset = get_in(&tx, &id)?;
                    tx.commit()?;
                    Ok(dataset)
                })
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_key_round_trip() {
        let key = PageKey {
            created_at_us: 1_700_000_000_123_456,
            id: "0b4c3a6e-8d1e-4a43-9d1c-7f6b0f2b9d11".into(),
        };
        assert_eq!(PageKey::decode(&key.encode()).unwrap(), key);
    }

    #[test]
    fn page_key_rejects_foreign_cursors() {
        for bad in [
            "",
            "!!!",
            &cursor::encode("no-separator"),
            &cursor::encode("x|id"),
            &cursor::encode("12|"),
        ] {
            let err = PageKey::decode(bad).unwrap_err();
            assert_eq!(err.code(), "BAD_USER_INPUT", "{bad}");
            assert!(err.to_string().contains("nextCursor"), "{err}");
        }
    }

    #[test]
    fn like_pattern_escapes_wildcards() {
        assert_eq!(like_pattern("a%b_c\\"), "%a\\%b\\_c\\\\%");
    }

    fn new(name: &str, ty: &str, tags: &[(&str, &str)]) -> NewDataset {
        NewDataset {
            name: name.into(),
            r#type: ty.into(),
            config: None,
            tags: tags
                .iter()
                .map(|(k, v)| Tag {
                    key: (*k).into(),
                    value: (*v).into(),
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn sqlite_keeps_the_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteDatasetStore::open(&dir.path().join("d.sqlite")).unwrap();
        lists_newest_first_across_pages_with_filters(&store).await;
        content_steps_commit_with_the_record(&store).await;
    }

    #[tokio::test]
    async fn postgres_keeps_the_store_contract() {
        let cluster = pgcluster::Cluster::start().unwrap();
        let url = cluster.create_database("dataset").unwrap();
        let pool = crate::common::storage::connect_postgres(
            &url,
            "dataset",
            super::super::postgres::MIGRATIONS,
        )
        .await
        .unwrap();
        let store = super::super::postgres::PostgresDatasetStore::new(pool);
        lists_newest_first_across_pages_with_filters(&store).await;
        content_steps_commit_with_the_record(&store).await;
    }

    /// A failing upload step leaves the record as it was; a step never runs
    /// for a record that is gone; a delete whose content removal fails still
    /// deletes the record.
    async fn content_steps_commit_with_the_record(store: &dyn DatasetStore) {
        let mut config = serde_json::Map::new();
        config.insert("z".into(), 1.into());
        config.insert("a".into(), serde_json::json!([1, "two"]));
        let d = store
            .create(NewDataset {
                config: Some(config.clone().into()),
                ..new("steps", "text", &[("k", "v")])
            })
            .await
            .unwrap();
        assert_eq!(store.get(d.id.clone()).await.unwrap().as_ref(), Some(&d));
        let failing: ContentStep = Box::new(|| Err(ServiceError::Storage("disk full".into())));
        assert!(store.record_upload(d.id.clone(), 5, failing).await.is_err());
        let unchanged = store.get(d.id.clone()).await.unwrap().unwrap();
        assert_eq!(unchanged.size_bytes, None);
        let uploaded = store
            .record_upload(d.id.clone(), 5, Box::new(|| Ok(())))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(uploaded.size_bytes, Some(5));
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ran.clone();
        let step: ContentStep = Box::new(move || {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        });
        assert!(store
            .record_upload("unknown".into(), 1, step)
            .await
            .unwrap()
            .is_none());
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
        let produced = store
            .set_producer(d.id.clone(), "run-1".into())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(produced.produced_by_pipeline_id.as_deref(), Some("run-1"));
        // The record goes even if its content cannot: never the reverse.
        let failing: ContentStep = Box::new(|| Err(ServiceError::Storage("busy".into())));
        let deleted = store.delete(d.id.clone(), failing).await.unwrap().unwrap();
        assert_eq!(deleted.id, d.id);
        let many = store
            .get_many(vec![d.id.clone(), "x".into()])
            .await
            .unwrap();
        assert_eq!(many, vec![None, None]);
    }

    async fn lists_newest_first_across_pages_with_filters(store: &dyn DatasetStore) {
        let mut created = Vec::new();
        for i in 0..7 {
            let tags: &[(&str, &str)] = if i % 2 == 0 {
                &[("team", "a")]
            } else {
                &[("team", "b")]
            };
            created.push(
                store
                    .create(new(&format!("set_{i}"), "text", tags))
                    .await
                    .unwrap(),
            );
        }
        store.create(new("100%_real", "csv", &[])).await.unwrap();

        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .list(
                    3,
                    after,
                    Filter {
                        r#type: Some("text".into()),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            assert_eq!(page.total, 7);
            seen.extend(page.items.iter().map(|d| d.name.clone()));
            match page.next_cursor {
                Some(c) => after = Some(PageKey::decode(&c).unwrap()),
                None => break,
            }
        }
        let expected: Vec<String> = created.iter().rev().map(|d| d.name.clone()).collect();
        assert_eq!(seen, expected);

        let tagged = store
            .list(
                10,
                None,
                Filter {
                    tag: Some(Tag {
                        key: "team".into(),
                        value: "b".into(),
                    }),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(tagged.total, 3);
        assert!(tagged.next_cursor.is_none());

        let percent = store
            .list(
                10,
                None,
                Filter {
                    name: Some("0%_R".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(percent.items.len(), 1);
        let underscore_is_literal = store
            .list(
                10,
                None,
                Filter {
                    name: Some("t_1".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(underscore_is_literal.total, 1);
        let none = store
            .list(
                10,
                None,
                Filter {
                    name: Some("set".into()),
                    r#type: Some("csv".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!((none.total, none.items.len()), (0, 0));
    }
}
