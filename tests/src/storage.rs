//! Where the services of a test keep their state: SQLite files in the test's
//! temporary directory, or, with `E2E_STORAGE=postgres`, a fresh database in
//! one throwaway Postgres cluster per test process (made on first use; its
//! watchdog removes it when the process ends).

use std::{
    path::Path,
    sync::{
        atomic::{AtomicUsize, Ordering},
        OnceLock,
    },
};

use subgraphs::common::Database;

/// Whether this run keeps the services' state in Postgres.
pub fn on_postgres() -> bool {
    std::env::var("E2E_STORAGE").is_ok_and(|v| v == "postgres")
}

fn cluster() -> &'static pgcluster::Cluster {
    static CLUSTER: OnceLock<pgcluster::Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        pgcluster::Cluster::start().unwrap_or_else(|e| panic!("start a Postgres cluster: {e}"))
    })
}

/// A database of its own for one group of services (each service keeps its
/// tables in its own schema, so they can share it).
fn new_postgres_database() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!("e2e_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    cluster()
        .create_database(&name)
        .unwrap_or_else(|e| panic!("create database {name}: {e}"))
}

/// The `database` of a stack's services: `file` in `dir`, or `postgres`
/// (one URL a stack's services share) on Postgres runs.
pub fn database(dir: &Path, file: &str, postgres: &Option<String>) -> Database {
    match postgres {
        Some(url) => Database::Postgres(url.clone()),
        None => dir.join(file).into(),
    }
}

/// What [`database`] needs for one stack: a new database on Postgres runs.
pub fn stack_postgres() -> Option<String> {
    on_postgres().then(new_postgres_database)
}

/// The pipeline store behind `database`, as a test writes to it directly
/// (e.g. what a crashed process left behind).
pub async fn pipeline_store(
    database: &Database,
) -> std::sync::Arc<dyn subgraphs::pipeline::store::PipelineStore> {
    use subgraphs::pipeline::{postgres, store::SqlitePipelineStore};
    match database {
        Database::Sqlite(path) => std::sync::Arc::new(
            SqlitePipelineStore::open(path, 100).unwrap_or_else(|e| panic!("open {path:?}: {e}")),
        ),
        Database::Postgres(url) => {
            let pool =
                subgraphs::common::storage::connect_postgres(url, "pipeline", postgres::MIGRATIONS)
                    .await
                    .unwrap_or_else(|e| panic!("connect to {database}: {e}"));
            std::sync::Arc::new(postgres::PostgresPipelineStore::new(pool, 100))
        }
    }
}

/// `database` as a config file spells it (a path or a URL).
pub fn config_value(database: &Database) -> String {
    match database {
        Database::Sqlite(path) => path.display().to_string(),
        Database::Postgres(url) => url.clone(),
    }
}

/// Runs `sql` against `service`'s tables in `database`, behind the
/// service's back (to break its store on purpose).
pub fn execute(database: &Database, service: &str, sql: &str) {
    match database {
        Database::Sqlite(path) => {
            let db =
                rusqlite::Connection::open(path).unwrap_or_else(|e| panic!("open {path:?}: {e}"));
            db.execute_batch(sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        Database::Postgres(url) => {
            let name = url.rsplit('/').next().unwrap_or_default();
            cluster()
                .execute(name, &format!("SET search_path TO {service}; {sql}"))
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }
}
