//! The dataset subgraph: catalog records (SQLite or Postgres), their content (one file
//! per dataset under `data_dir`) and signed, expiring URLs to read and write
//! that content over plain HTTP.
//!
//! Flow: `schema` (GraphQL resolvers) and `content` (the `/content/{id}`
//! routes) call `service`, which validates and uses `store` (records),
//! `content::ContentStore` (content), `signing` (URLs) and `updates` (events).

pub mod content;
pub mod postgres;
pub mod schema;
pub mod service;
pub mod signing;
pub mod store;
pub mod updates;

use std::{path::PathBuf, sync::Arc};

use axum::Router;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::common::{
    bus::{Bus, LocalBus, PostgresBus},
    graphql_router, spawn_service,
    storage::connect_postgres,
    Database, RunningService, ServiceError, ServiceResult,
};

pub use schema::{sdl, DatasetSchema};
pub use service::DatasetService;

/// `[services.dataset]` in config.toml.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// Address to listen on, e.g. "127.0.0.1:4002".
    #[serde(default = "defaults::listen")]
    pub listen: String,
    /// A SQLite file (created and migrated on start) or a `postgres://`
    /// URL (tables in schema `dataset`; for several replicas, which must
    /// then share `data_dir`).
    pub database: Database,
    /// Directory holding dataset content, one file per dataset (replicas
    /// on one machine share it).
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Or an object store for the content, e.g. `s3://bucket/prefix`
    /// (credentials and an S3-compatible endpoint from `AWS_*` variables):
    /// what replicas on several machines share.
    #[serde(default)]
    pub content_url: Option<String>,
    /// Options of the `content_url` store over the `AWS_*` variables, e.g.
    /// `{ aws_endpoint = "http://127.0.0.1:9000", aws_allow_http = "true" }`
    /// for an S3-compatible server (keys as object_store names them).
    #[serde(default)]
    pub content_options: std::collections::BTreeMap<String, String>,
    /// Base URL that signed URLs start with; defaults to `http://<bound address>`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// HMAC-SHA256 secret that signs content URLs.
    pub signing_secret: String,
    /// Largest `expiresInSec` a client may ask for.
    #[serde(default = "defaults::max_expires_in_sec")]
    pub max_expires_in_sec: i64,
    /// Largest upload accepted through a signed URL, in bytes (larger: 413).
    #[serde(default = "defaults::max_upload_bytes")]
    pub max_upload_bytes: u64,
    /// `[services.dataset.http]`
    #[serde(default)]
    pub http: crate::common::HttpConfig,
    /// `[services.dataset.cors]`: browser apps that may use the signed
    /// content URLs (uploads from a page); off by default.
    #[serde(default)]
    pub cors: serve::CorsConfig,
    /// The token `recordDatasetProducer` callers (the pipeline service) must
    /// send in `x-service-token`; without it that mutation is refused.
    #[serde(default)]
    pub service_token: Option<String>,
    /// `[services.dataset.authorization]`: which forwarded groups may do
    /// each action (`read_dataset`, `create_dataset`, `delete_dataset`,
    /// `create_upload_url`, `create_download_url`); without it only the other
    /// services (with the service token) may.
    #[serde(default)]
    pub authorization: crate::common::rbac::Authorization,
}

/// The actions `[services.dataset.authorization]` names.
pub const ACTIONS: &[&str] = &[
    "read_dataset",
    "create_dataset",
    "delete_dataset",
    "create_upload_url",
    "create_download_url",
];

mod defaults {
    pub fn listen() -> String {
        "127.0.0.1:4002".into()
    }
    pub fn max_expires_in_sec() -> i64 {
        86_400
    }
    pub fn max_upload_bytes() -> u64 {
        10 * 1024 * 1024
    }
}

impl DatasetConfig {
    /// Rejects settings the service cannot run with.
    pub fn validate(&self) -> ServiceResult<()> {
        let bad = |m: &str| Err(ServiceError::bad_input(format!("[services.dataset] {m}")));
        if self.signing_secret.is_empty() {
            return bad("`signing_secret` must not be empty");
        }
        if self.data_dir.is_some() == self.content_url.is_some() {
            return bad("set exactly one of `data_dir` (a directory for dataset content) and `content_url` (an object store, e.g. s3://bucket/prefix)");
        }
        if self.max_expires_in_sec < 1 {
            return bad("`max_expires_in_sec` must be at least 1");
        }
        if self.max_upload_bytes < 1 {
            return bad("`max_upload_bytes` must be at least 1");
        }
        self.authorization.check("dataset", ACTIONS)?;
        if let Some(url) = &self.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return bad("`public_url` must start with http:// or https://");
            }
        }
        Ok(())
    }
}

/// Opens storage and builds the shared service state; signed URLs start with
/// `public_url`, else `http://{addr}`. The bus (on Postgres) listens until
/// `shutdown`.
pub async fn open_service(
    config: &DatasetConfig,
    addr: std::net::SocketAddr,
    shutdown: CancellationToken,
) -> ServiceResult<Arc<DatasetService>> {
    config.validate()?;
    let base_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let (store, bus) = open_store(&config.database, shutdown).await?;
    Ok(Arc::new(DatasetService {
        updates: updates::Updates::new(bus, store.clone()),
        store,
        content: content::ContentStore::open(
            config.data_dir.as_deref(),
            config.content_url.as_deref(),
            &config.content_options,
        )?,
        signer: signing::UrlSigner::new(&config.signing_secret, &base_url),
        max_expires_in_sec: config.max_expires_in_sec,
        max_upload_bytes: config.max_upload_bytes,
        service_token: config.service_token.clone(),
        authorization: config
            .authorization
            .clone()
            .with_service_token(config.service_token.clone()),
    }))
}

async fn open_store(
    database: &Database,
    shutdown: CancellationToken,
) -> ServiceResult<(Arc<dyn store::DatasetStore>, Arc<dyn Bus>)> {
    Ok(match database {
        Database::Sqlite(path) => (
            Arc::new(store::SqliteDatasetStore::open(path)?),
            Arc::new(LocalBus::new(service::UPDATE_BUFFER)),
        ),
        Database::Postgres(url) => {
            let pool = connect_postgres(url, "dataset", postgres::MIGRATIONS).await?;
            let bus = PostgresBus::start(
                pool.clone(),
                "dataset",
                &[updates::TOPIC],
                service::UPDATE_BUFFER,
                shutdown,
            )
            .await?;
            (
                Arc::new(postgres::PostgresDatasetStore::new(pool)),
                Arc::new(bus),
            )
        }
    })
}

/// The GraphQL schema over `service`.
pub fn schema(service: Arc<DatasetService>) -> DatasetSchema {
    schema::build(service)
}

/// `/graphql` (HTTP and WebSocket), `/health` and the content routes.
pub fn router(
    service: Arc<DatasetService>,
    shutdown: CancellationToken,
    max_body_bytes: usize,
    cors: &serve::CorsConfig,
) -> Router {
    graphql_router(schema(service.clone()), shutdown, max_body_bytes)
        .merge(content::routes(service, cors))
}

/// Starts the service on `listener`.
pub async fn start(config: DatasetConfig, listener: TcpListener) -> ServiceResult<RunningService> {
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let service = open_service(&config, addr, shutdown.clone()).await?;
    let router = router(
        service,
        shutdown.clone(),
        config.http.max_body_bytes,
        &config.cors,
    );
    Ok(spawn_service(
        listener,
        router,
        shutdown,
        TaskTracker::new(),
        &config.http.connections,
    )?)
}

impl crate::common::cli::ServiceConfig for DatasetConfig {
    const NAME: &'static str = "dataset";

    fn listen(&self) -> &str {
        &self.listen
    }

    fn listen_mut(&mut self) -> &mut String {
        &mut self.listen
    }

    fn resolve_paths(&mut self, dir: &std::path::Path) {
        self.database.resolve(dir);
        if let Some(data_dir) = &mut self.data_dir {
            *data_dir = crate::common::resolve_path(dir, data_dir);
        }
    }

    fn secrets(&self) -> Vec<(&'static str, &str)> {
        let mut out = vec![("signing_secret", self.signing_secret.as_str())];
        out.extend(crate::common::cli::service_token_secret(
            &self.service_token,
        ));
        out
    }
}
