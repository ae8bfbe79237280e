//! The log subgraph: log lines of pipeline runs. Ingestion (`ingestLogs`,
//! all or nothing, idempotent keys), paged history (`pipelineLogs`) and a live
//! stream (`logStream`) that replays stored lines and then follows new ones.
//!
//! Flow: `schema` (resolvers) -> `service` (validation) -> `store` (SQLite);
//! `stream` reads the store after the last delivered line, woken by inserts.

pub mod postgres;
pub mod schema;
pub mod service;
pub mod store;
pub mod stream;

use std::sync::Arc;

use axum::Router;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::common::{
    bus::{Bus, LocalBus, PostgresBus},
    graphql_router, spawn_service,
    storage::connect_postgres,
    Database, RunningService, ServiceResult,
};

pub use schema::{sdl, LogSchema};
pub use service::LogService;
pub use store::LogLevel;

/// `[services.log]` in config.toml.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Address to listen on, e.g. "127.0.0.1:4003".
    #[serde(default = "defaults::listen")]
    pub listen: String,
    /// A SQLite file (created and migrated on start) or a `postgres://`
    /// URL (tables in schema `log`; for several replicas).
    pub database: Database,
    /// `[services.log.http]`
    #[serde(default)]
    pub http: crate::common::HttpConfig,
    /// The token `ingestLogs` callers (the pipeline service) must send in
    /// `x-service-token`; without it `ingestLogs` is refused.
    #[serde(default)]
    pub service_token: Option<String>,
    /// `[services.log.authorization]`: which forwarded groups may do
    /// each action (`read_logs`); without it only the other
    /// services (with the service token) may.
    #[serde(default)]
    pub authorization: crate::common::rbac::Authorization,
}

/// The actions `[services.log.authorization]` names.
pub const ACTIONS: &[&str] = &["read_logs"];

mod defaults {
    pub fn listen() -> String {
        "127.0.0.1:4003".into()
    }
}

/// Announcements a replica buffers for a slow stream before it reads as a gap.
const BUS_BUFFER: usize = 1024;

/// Opens the database and builds the shared service state; its bus
/// follower runs until `shutdown`.
pub async fn open_service(
    config: &LogConfig,
    shutdown: CancellationToken,
) -> ServiceResult<Arc<LogService>> {
    use store::LogStore;
    config.authorization.check("log", ACTIONS)?;
    let (store, bus): (Arc<dyn LogStore>, Arc<dyn Bus>) = match &config.database {
        Database::Sqlite(path) => (
            Arc::new(store::SqliteLogStore::open(path)?),
            Arc::new(LocalBus::new(BUS_BUFFER)),
        ),
        Database::Postgres(url) => {
            let pool = connect_postgres(url, "log", postgres::MIGRATIONS).await?;
            let bus = PostgresBus::start(
                pool.clone(),
                "log",
                &[service::LINES_TOPIC],
                BUS_BUFFER,
                shutdown.clone(),
            )
            .await?;
            (
                Arc::new(postgres::PostgresLogStore::new(pool)),
                Arc::new(bus),
            )
        }
    };
    let last_id = store.last_id().await?;
    let mut service = LogService::new(store, bus, last_id, config.service_token.clone());
    service.authorization = config
        .authorization
        .clone()
        .with_service_token(config.service_token.clone());
    let service = Arc::new(service);
    tokio::spawn(service.clone().follow_bus(shutdown));
    Ok(service)
}

/// The GraphQL schema over `service`.
pub fn schema(service: Arc<LogService>) -> LogSchema {
    schema::build(service)
}

/// `/graphql` (HTTP and WebSocket) and `/health`.
pub fn router(
    service: Arc<LogService>,
    shutdown: CancellationToken,
    max_body_bytes: usize,
) -> Router {
    graphql_router(schema(service), shutdown, max_body_bytes)
}

/// Starts the service on `listener`.
pub async fn start(config: LogConfig, listener: TcpListener) -> ServiceResult<RunningService> {
    let shutdown = CancellationToken::new();
    let service = open_service(&config, shutdown.clone()).await?;
    let router = router(service, shutdown.clone(), config.http.max_body_bytes);
    Ok(spawn_service(
        listener,
        router,
        shutdown,
        TaskTracker::new(),
        &config.http.connections,
    )?)
}

impl crate::common::cli::ServiceConfig for LogConfig {
    fn secrets(&self) -> Vec<(&'static str, &str)> {
        crate::common::cli::service_token_secret(&self.service_token)
    }

    const NAME: &'static str = "log";

    fn listen(&self) -> &str {
        &self.listen
    }

    fn listen_mut(&mut self) -> &mut String {
        &mut self.listen
    }

    fn resolve_paths(&mut self, dir: &std::path::Path) {
        self.database.resolve(dir);
    }
}
