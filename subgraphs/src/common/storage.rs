//! Where a service keeps its state: one SQLite file (embedded, one process)
//! or a Postgres database (any number of replicas), chosen by the config's
//! `database` value.

use std::{
    borrow::Cow,
    fmt,
    future::Future,
    path::{Path, PathBuf},
    pin::Pin,
    time::Duration,
};

use serde::{Deserialize, Deserializer};
use sqlx::{
    migrate::{Migration, MigrationSource, MigrationType, Migrator},
    postgres::{PgConnectOptions, PgPool, PgPoolOptions},
    Connection,
};

use super::{ServiceError, ServiceResult};

/// What a store method returns: boxed, so stores are used as `dyn` objects
/// whichever backend the config picked.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = ServiceResult<T>> + Send + 'a>>;

/// `database = "data/log.sqlite"` or `database = "postgres://user@host/db"`.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file, created on start; relative paths are resolved against
    /// the config file's directory.
    Sqlite(PathBuf),
    /// A Postgres URL; each service keeps its tables in a schema named after
    /// it, so the three can share one database.
    Postgres(String),
}

impl Database {
    /// Reads a config value: a `postgres://` or `postgresql://` URL, or a path.
    pub fn parse(value: &str) -> Database {
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            Database::Postgres(value.to_string())
        } else {
            Database::Sqlite(PathBuf::from(value))
        }
    }

    /// Makes a relative SQLite path relative to `config_dir`.
    pub fn resolve(&mut self, config_dir: &Path) {
        if let Database::Sqlite(path) = self {
            *path = super::resolve_path(config_dir, path);
        }
    }
}

impl From<PathBuf> for Database {
    fn from(path: PathBuf) -> Database {
        Database::Sqlite(path)
    }
}

/// Shown in logs and errors without the URL's password.
impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(path) => write!(f, "{}", path.display()),
            Database::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl<'de> Deserialize<'de> for Database {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Database, D::Error> {
        let text = String::deserialize(d)?;
        if text.trim().is_empty() {
            return Err(serde::de::Error::custom(
                "`database` is empty: give a SQLite file path or a postgres:// URL",
            ));
        }
        Ok(Database::parse(&text))
    }
}

/// `postgres://user:secret@host/db` as `postgres://user:***@host/db`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// Connections each replica keeps to Postgres at most.
const POOL_SIZE: u32 = 16;

/// Opens a pool whose connections work in schema `schema` (created if
/// missing) and brings it to the last of `migrations` (each applied once,
/// in order, under Postgres' advisory lock, so replicas starting together
/// migrate once). A database migrated by a newer release is refused.
pub async fn connect_postgres(
    url: &str,
    schema: &'static str,
    migrations: &'static [&'static str],
) -> ServiceResult<PgPool> {
    let shown = redact(url);
    let options: PgConnectOptions = url.parse().map_err(|e| {
        ServiceError::Storage(format!(
            "`database` {shown} is not a Postgres URL this service can use: {e}"
        ))
    })?;
    create_schema(&options, schema, &shown).await?;
    let pool = PgPoolOptions::new()
        .max_connections(POOL_SIZE)
        .acquire_timeout(Duration::from_secs(10))
        // Notices ("already exists, skipping") are not worth a log line each.
        .connect_with(
            options.options([("search_path", schema), ("client_min_messages", "warning")]),
        )
        .await
        .map_err(|e| ServiceError::Storage(format!("cannot connect to {shown}: {e}")))?;
    let migrator = Migrator::new(Embedded(migrations))
        .await
        .map_err(|e| ServiceError::Storage(format!("migrations of {schema}: {e}")))?;
    migrator.run(&pool).await.map_err(|e| {
        ServiceError::Storage(format!(
            "cannot bring schema {schema} of {shown} to version {}: {e}",
            migrations.len()
        ))
    })?;
    Ok(pool)
}

async fn create_schema(options: &PgConnectOptions, schema: &str, shown: &str) -> ServiceResult<()> {
    let quiet = options
        .clone()
        .options([("client_min_messages", "warning")]);
    let mut conn = sqlx::PgConnection::connect_with(&quiet)
        .await
        .map_err(|e| ServiceError::Storage(format!("cannot connect to {shown}: {e}")))?;
    // Replicas starting at once would race on CREATE SCHEMA IF NOT EXISTS.
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('schema:' || $1))")
        .bind(schema)
        .execute(&mut *tx)
        .await?;
    sqlx::query(sql(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"")))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Migrations compiled into the binary: version n is `migrations[n - 1]`.
#[derive(Debug)]
struct Embedded(&'static [&'static str]);

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(
        self,
    ) -> futures::future::BoxFuture<'s, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .enumerate()
                .map(|(i, statement)| {
                    Migration::new(
                        i as i64 + 1,
                        Cow::Owned(format!("version {}", i + 1)),
                        MigrationType::Simple,
                        sqlx::SqlStr::from_static(statement),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// A statement assembled from this crate's own constants (column lists,
/// schema names), never from input: what sqlx asks us to vouch for.
pub fn sql(text: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(text)
}

impl From<sqlx::Error> for ServiceError {
    fn from(e: sqlx::Error) -> Self {
        ServiceError::Storage(e.to_string())
    }
}

/// The records of a batch read, in the order of `ids`, `None` for an id
/// with no record. Each record moves to its first place; only an id asked
/// again gets a copy (a batch of a list level repeats ids rarely).
pub fn in_order<T: Clone>(
    ids: &[String],
    found: Vec<T>,
    id_of: impl Fn(&T) -> &str,
) -> Vec<Option<T>> {
    let mut by_id: std::collections::HashMap<String, T> = found
        .into_iter()
        .map(|r| (id_of(&r).to_owned(), r))
        .collect();
    let mut first: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut out: Vec<Option<T>> = Vec::with_capacity(ids.len());
    for id in ids {
        let record = match first.get(id.as_str()) {
            Some(&at) => out[at].clone(),
            None => {
                first.insert(id, out.len());
                by_id.remove(id)
            }
        };
        out.push(record);
    }
    out
}

/// SQLite rows (`columns` of `table`) whose `id` is in `ids_json` (a JSON
/// list, from `to_json`), through one cached statement whatever the number
/// of ids; in no order (see `in_order`).
pub fn sqlite_rows_by_ids<T>(
    conn: &rusqlite::Connection,
    columns: &str,
    table: &str,
    ids_json: String,
    row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> ServiceResult<Vec<T>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {columns} FROM {table} WHERE id IN (SELECT value FROM json_each(?1))"
    ))?;
    let rows = stmt
        .query_map([ids_json], row)?
        .collect::<rusqlite::Result<Vec<T>>>()?;
    Ok(rows)
}

/// A value as JSON text for a column or a bound parameter (ids for
/// `json_each`, tags, parameters).
pub fn to_json(value: &impl serde::Serialize) -> ServiceResult<String> {
    serde_json::to_string(value).map_err(|e| ServiceError::Storage(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_reads_answer_in_the_order_asked_with_repeats_and_gaps() {
        let ids: Vec<String> = ["b", "none", "a", "b"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let found = vec![("a", 1), ("b", 2)];
        assert_eq!(
            in_order(&ids, found, |r| r.0),
            [Some(("b", 2)), None, Some(("a", 1)), Some(("b", 2))]
        );
        assert_eq!(in_order::<(&str, i32)>(&[], Vec::new(), |r| r.0), []);
    }

    #[test]
    fn urls_and_paths_and_redaction() {
        assert_eq!(
            Database::parse("data/x.sqlite"),
            Database::Sqlite("data/x.sqlite".into())
        );
        let pg = Database::parse("postgres://app:hunter2@db:5432/main");
        assert!(matches!(pg, Database::Postgres(_)));
        assert_eq!(pg.to_string(), "postgres://app:***@db:5432/main");
        assert_eq!(
            Database::parse("postgresql://db/main").to_string(),
            "postgresql://db/main"
        );
        let mut rel = Database::parse("x.sqlite");
        rel.resolve(Path::new("/etc/app"));
        assert_eq!(rel, Database::Sqlite("/etc/app/x.sqlite".into()));
    }
}
