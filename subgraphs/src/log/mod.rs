//! The log subgraph: log lines of pipeline runs. Ingestion (`ingestLogs`,
//! all or nothing, idempotent keys), paged history (`pipelineLogs`) and a live
//! stream (`logStream`) that replays stored lines and then follows new ones.
//!
//! Flow: `schema` (resolvers) -> `service` (validation) -> `store` (SQLite);
//! `stream` reads the store after the last delivered line, woken by inserts.

pub mod schema;
pub mod service;
pub mod store;
pub mod stream;

use std::{path::PathBuf, sync::Arc};

use axum::Router;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::common::{graphql_router, spawn_service, RunningService, ServiceResult};

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
    /// SQLite file; created and migrated on start.
    pub database: PathBuf,
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

/// Opens the database and builds the shared service state.
pub async fn open_service(config: &LogConfig) -> ServiceResult<Arc<LogService>> {
    use store::LogStore;
    config.authorization.check("log", ACTIONS)?;
    let store = store::SqliteLogStore::open(&config.database)?;
    let last_id = store.last_id().await?;
    let mut service = LogService::new(store, last_id, config.service_token.clone());
    service.authorization = config
        .authorization
        .clone()
        .with_service_token(config.service_token.clone());
    Ok(Arc::new(service))
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
    let service = open_service(&config).await?;
    let shutdown = CancellationToken::new();
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
        self.database = crate::common::resolve_path(dir, &self.database);
    }
}
