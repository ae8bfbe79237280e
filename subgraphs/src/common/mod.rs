//! What the three subgraphs share: the server, errors, config loading, the
//! SQLite handle and the types that several subgraphs define identically
//! (`DateTime`, `Tag`, `TagInput`), so the gateway can merge them.

pub mod bus;
pub mod cli;
pub mod rbac;
pub mod server;
pub mod storage;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use async_graphql::{
    ErrorExtensions, InputObject, InputValueError, InputValueResult, Scalar, ScalarType,
    SimpleObject, Value,
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;

pub use server::{graphql_router, shutdown_signal, spawn_service, HttpConfig, RunningService};
pub use storage::{Database, StoreFuture};

/// The header services send each other's internal mutations with.
pub const SERVICE_TOKEN_HEADER: &str = "x-service-token";

/// The `x-service-token` a request carried (request data of every HTTP
/// GraphQL request).
#[derive(Clone, Default)]
pub struct CallerToken(pub Option<String>);

/// Internal mutations (`ingestLogs`, `recordDatasetProducer`) run only for
/// callers that send the configured service token; without one configured
/// they do not run at all.
pub fn require_service_token(
    ctx: &async_graphql::Context<'_>,
    expected: Option<&str>,
    action: &str,
) -> ServiceResult<()> {
    let Some(expected) = expected else {
        return Err(ServiceError::Forbidden(format!(
            "`{action}` is internal and this service has no `service_token` configured"
        )));
    };
    let none = CallerToken(None);
    let sent = ctx.data_opt::<CallerToken>().unwrap_or(&none);
    if token_matches(sent, Some(expected)) {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(format!(
            "`{action}` is internal: send the service token in `{SERVICE_TOKEN_HEADER}`"
        )))
    }
}

/// Whether the caller sent the service token (compared in constant time:
/// it is a secret); never when none is configured.
pub fn token_matches(sent: &CallerToken, expected: Option<&str>) -> bool {
    let (Some(sent), Some(expected)) = (sent.0.as_deref(), expected) else {
        return false;
    };
    sent.len() == expected.len()
        && sent
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Every error a subgraph returns to its clients. Mapped to a GraphQL error with
/// `extensions.code` in exactly one place (`ErrorExtensions for ServiceError`, used through `GqlResultExt::gql`).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The client sent something we cannot accept; the message says how to fix it.
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but conflicts with the current state (e.g. deleting a running run).
    #[error("{0}")]
    Conflict(String),
    /// A peer service (another subgraph) failed or answered with an error.
    #[error("{0}")]
    Upstream(String),
    #[error("storage error: {0}")]
    Storage(String),
    /// The caller may not do this (e.g. an internal mutation without the service token).
    #[error("{0}")]
    Forbidden(String),
}

impl ServiceError {
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::BadInput(_) => "BAD_USER_INPUT",
            ServiceError::NotFound(_) => "NOT_FOUND",
            ServiceError::Conflict(_) => "CONFLICT",
            ServiceError::Upstream(_) => "UPSTREAM_ERROR",
            ServiceError::Storage(_) => "INTERNAL_SERVER_ERROR",
            ServiceError::Forbidden(_) => "FORBIDDEN",
        }
    }

    pub fn bad_input(msg: impl Into<String>) -> Self {
        ServiceError::BadInput(msg.into())
    }

    pub fn not_found(msg: impl Into<String>) -> Self {
        ServiceError::NotFound(msg.into())
    }
}

impl ErrorExtensions for ServiceError {
    /// A storage error reaches the client as a generic message (its SQL
    /// text, table names and file paths are logged, never sent).
    fn extend(&self) -> async_graphql::Error {
        let message = match self {
            ServiceError::Storage(detail) => {
                tracing::error!(%detail, "storage error");
                "internal storage error; the service logged the details".to_string()
            }
            other => other.to_string(),
        };
        let code = self.code();
        async_graphql::Error::new(message).extend_with(|_, ext| ext.set("code", code))
    }
}

/// `result.gql()?` in resolvers: the one way a `ServiceError` becomes a GraphQL
/// error, so every error carries `extensions.code`.
pub trait GqlResultExt<T> {
    fn gql(self) -> async_graphql::Result<T>;
}

impl<T> GqlResultExt<T> for ServiceResult<T> {
    fn gql(self) -> async_graphql::Result<T> {
        self.map_err(|e| e.extend())
    }
}

impl From<rusqlite::Error> for ServiceError {
    fn from(e: rusqlite::Error) -> Self {
        ServiceError::Storage(e.to_string())
    }
}

impl From<std::io::Error> for ServiceError {
    fn from(e: std::io::Error) -> Self {
        ServiceError::Storage(e.to_string())
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// Rejects strings longer than `max` characters, naming the field.
pub fn check_len(field: &str, value: &str, max: usize) -> ServiceResult<()> {
    let n = value.chars().count();
    if n > max {
        return Err(ServiceError::bad_input(format!(
            "`{field}` is {n} characters long; the maximum is {max}"
        )));
    }
    Ok(())
}

/// Checks a page size: `1..=max`.
pub fn check_limit(limit: i32, max: i32) -> ServiceResult<usize> {
    if limit < 1 || limit > max {
        return Err(ServiceError::bad_input(format!(
            "`limit` must be between 1 and {max}, got {limit}"
        )));
    }
    Ok(limit as usize)
}

/// Loads `[services.NAME]` of a config file into `T`. TOML errors keep their
/// line and column; the message names the file.
pub fn load_service_config<T: DeserializeOwned>(path: &Path, name: &str) -> anyhow::Result<T> {
    parse_service_config(&config_text(path)?, name)
        .map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", path.display()))
}

/// The config file's text, `${VAR}` references replaced.
pub fn config_text(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
    Ok(settings::interpolate_env(
        &text,
        &path.display().to_string(),
    )?)
}

/// Parses `[services.NAME]` out of a whole config file; other sections are ignored.
pub fn parse_service_config<T: DeserializeOwned>(text: &str, name: &str) -> Result<T, String> {
    parse_service_section(text, name)?
        .ok_or_else(|| format!("section [services.{name}] is missing"))
}

/// `[services.NAME]` of a whole config file, if it has one.
pub fn parse_service_section<T: DeserializeOwned>(
    text: &str,
    name: &str,
) -> Result<Option<T>, String> {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
    use std::marker::PhantomData;

    // Walks the document with toml's own deserializer so that errors inside our
    // section keep their spans (line numbers), and skips everything else.
    struct Pick<'n, T>(&'n str, PhantomData<T>);
    impl<'de, T: DeserializeOwned> Visitor<'de> for Pick<'_, T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a table")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(key) = map.next_key::<String>()? {
                if key == self.0 {
                    found = Some(map.next_value::<T>()?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
    }
    struct Services<'n, T>(&'n str, PhantomData<T>);
    impl<'de, T: DeserializeOwned> serde::de::DeserializeSeed<'de> for Services<'_, T> {
        type Value = Option<T>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(Pick(self.0, PhantomData))
        }
    }
    struct Root<'n, T>(&'n str, PhantomData<T>);
    impl<'de, T: DeserializeOwned> Visitor<'de> for Root<'_, T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a config file")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(key) = map.next_key::<String>()? {
                if key == "services" {
                    found = map.next_value_seed(Services(self.0, PhantomData))?;
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
    }
    let de = toml::Deserializer::new(text);
    de.deserialize_map(Root(name, PhantomData::<T>))
        .map_err(|e| e.to_string())
}

/// A SQLite connection shared by a service. rusqlite is blocking, so every
/// call runs on the blocking pool; one connection serialises writes, which
/// is what makes each mutation all-or-nothing without extra locking.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<rusqlite::Connection>>,
}

impl Db {
    /// Opens (creating parent directories) and brings the schema to the last
    /// of `migrations` (versioned by `PRAGMA user_version`, each step run
    /// once, in a transaction). A database from a newer release is refused.
    pub fn open(path: &Path, migrations: &[&'static str]) -> ServiceResult<Db> {
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)?;
            }
        }
        let mut conn = rusqlite::Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let steps: Vec<rusqlite_migration::M<'static>> = migrations
            .iter()
            .map(|sql| rusqlite_migration::M::up(sql))
            .collect();
        rusqlite_migration::Migrations::new(steps)
            .to_latest(&mut conn)
            .map_err(|e| {
                ServiceError::Storage(format!(
                    "cannot bring {} to schema version {}: {e}",
                    path.display(),
                    migrations.len()
                ))
            })?;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn call<R, F>(&self, f: F) -> ServiceResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> ServiceResult<R> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| ServiceError::Storage("database lock poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| ServiceError::Storage(format!("database task failed: {e}")))?
    }
}

/// Resolves a path from the config relative to the config file's directory.
pub fn resolve_path(config_dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        config_dir.join(p)
    }
}

/// RFC 3339 timestamp in UTC, always written with a `Z` (`2026-11-20T10:00:00.000Z`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Timestamp(pub DateTime<Utc>);

impl Timestamp {
    pub fn now() -> Self {
        Timestamp(Utc::now())
    }

    pub fn to_rfc3339(&self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// With microseconds, for times whose order matters within a
    /// millisecond: a run's log lines, which the log service orders by time.
    pub fn to_rfc3339_micros(&self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::Micros, true)
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        DateTime::parse_from_rfc3339(s)
            .map(|d| Timestamp(d.with_timezone(&Utc)))
            .map_err(|e| {
                format!(
                    "`{s}` is not an RFC 3339 timestamp ({e}); expected e.g. 2026-11-20T10:00:00Z"
                )
            })
    }
}

/// RFC 3339 timestamp, UTC, e.g. "2026-11-20T10:00:00Z".
#[Scalar(name = "DateTime")]
impl ScalarType for Timestamp {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => Timestamp::parse(s).map_err(InputValueError::custom),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.to_rfc3339())
    }
}

/// A key/value label.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// A key/value label.
#[derive(InputObject, Clone, Debug, PartialEq, Eq)]
pub struct TagInput {
    pub key: String,
    pub value: String,
}

impl TagInput {
    /// Validates lengths and converts.
    pub fn into_tag(self) -> ServiceResult<Tag> {
        check_len("tag.key", &self.key, 100)?;
        check_len("tag.value", &self.value, 500)?;
        if self.key.is_empty() {
            return Err(ServiceError::bad_input("`tag.key` must not be empty"));
        }
        Ok(Tag {
            key: self.key,
            value: self.value,
        })
    }
}

/// Opaque page cursor: base64 of the last item's sort key. Clients must not parse it.
pub mod cursor {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};

    use super::{ServiceError, ServiceResult};

    pub fn encode(key: &str) -> String {
        URL_SAFE_NO_PAD.encode(key.as_bytes())
    }

    pub fn decode(cursor: &str) -> ServiceResult<String> {
        URL_SAFE_NO_PAD
            .decode(cursor)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                ServiceError::bad_input(format!(
                    "`cursor` \"{cursor}\" is not a cursor this service issued; pass `nextCursor` from a previous page, or omit it to start from the first page"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_store_opens_after_a_column_is_added_and_a_newer_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        const V1: &str = "CREATE TABLE IF NOT EXISTS t (id TEXT PRIMARY KEY NOT NULL);";
        const V2: &str = "ALTER TABLE t ADD COLUMN note TEXT NOT NULL DEFAULT 'none';";
        let db = Db::open(&path, &[V1]).unwrap();
        db.call(|c| Ok(c.execute("INSERT INTO t (id) VALUES ('a')", [])?))
            .await
            .unwrap();
        drop(db);
        // A database made before versioning (tables, user_version 0) opens as version 1.
        let db = Db::open(&path, &[V1, V2]).unwrap();
        let (note, version): (String, i64) = db
            .call(|c| {
                let note = c.query_row("SELECT note FROM t WHERE id = 'a'", [], |r| r.get(0))?;
                let version = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
                Ok((note, version))
            })
            .await
            .unwrap();
        assert_eq!((note.as_str(), version), ("none", 2));
        drop(db);
        let Err(e) = Db::open(&path, &[V1]) else {
            panic!("an older release must not open a newer database");
        };
        assert!(e.to_string().contains("schema version 1"), "{e}");
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        listen: String,
    }

    #[test]
    fn picks_own_section_and_reports_lines() {
        let text = "[gateway]\nlisten = \"x\"\n\n[services.log]\nlisten = \"a\"\n\n[services.pipeline]\nlisten = \"b\"\nbogus = 1\n";
        let log: Cfg = parse_service_config(text, "log").unwrap();
        assert_eq!(log.listen, "a");
        let err = parse_service_config::<Cfg>(text, "pipeline").unwrap_err();
        assert!(err.contains("line 9"), "{err}");
        assert!(err.contains("bogus"), "{err}");
        let err = parse_service_config::<Cfg>(text, "dataset").unwrap_err();
        assert!(err.contains("[services.dataset] is missing"), "{err}");
    }

    #[test]
    fn cursor_round_trip_and_garbage() {
        assert_eq!(
            cursor::decode(&cursor::encode("2026|abc")).unwrap(),
            "2026|abc"
        );
        assert!(cursor::decode("!!!").is_err());
    }
}
