//! The pipeline subgraph: templates, runs (executed on a bounded worker
//! pool, reading and writing datasets through the dataset subgraph, logging
//! to the log subgraph), and run events.
//!
//! The flow: `schema` (resolvers) -> `validate` -> `runner` (create, execute,
//! cancel, delete) -> `nodes` (what each node does) with `peers` (dataset
//! subgraph), `log_shipper` (log subgraph, from the `outbox`), `events`
//! (subscriptions) and `store` (SQLite) beside it.

pub mod events;
pub mod log_shipper;
pub mod model;
pub mod nodes;
pub mod outbox;
pub mod peers;
pub mod postgres;
pub mod runner;
pub mod schema;
pub mod store;
pub mod templates;
pub mod validate;

use std::{sync::Arc, time::Duration};

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

pub use runner::Runner;
pub use schema::{sdl, PipelineSchema};

/// `[services.pipeline]` in config.toml.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Address to listen on, e.g. "127.0.0.1:4001".
    #[serde(default = "defaults::listen")]
    pub listen: String,
    /// A SQLite file (created and migrated on start; this process owns
    /// every run) or a `postgres://` URL (tables in schema `pipeline`; any
    /// number of replicas share the run queue).
    pub database: Database,
    /// Seconds a replica's claim on a run lasts without renewal (renewed
    /// every third of it): how long after a replica dies its runs are
    /// failed. Postgres only.
    #[serde(default = "defaults::lease_seconds")]
    pub lease_seconds: u64,
    /// Runs executed at once; the others wait as PENDING.
    #[serde(default = "defaults::workers")]
    pub workers: usize,
    /// The dataset subgraph's GraphQL endpoint: runs read inputs and write outputs through it.
    pub dataset_url: String,
    /// The log subgraph's GraphQL endpoint: runs send their log lines to it.
    pub log_url: String,
    /// Log lines the store's outbox keeps while the log subgraph is
    /// unreachable; beyond it the oldest are dropped (and that is reported).
    #[serde(default = "defaults::log_buffer")]
    pub log_buffer: usize,
    /// `[services.pipeline.http]`
    #[serde(default)]
    pub http: crate::common::HttpConfig,
    /// Sent in `x-service-token` with every call to the dataset and log
    /// services (their internal mutations need it).
    #[serde(default)]
    pub service_token: Option<String>,
    /// `[services.pipeline.authorization]`: which forwarded groups may do
    /// each action (`read_pipeline`, `create_pipeline`, `cancel_pipeline`,
    /// `delete_pipeline`); without it only the other
    /// services (with the service token) may.
    #[serde(default)]
    pub authorization: crate::common::rbac::Authorization,
}

/// The actions `[services.pipeline.authorization]` names.
pub const ACTIONS: &[&str] = &[
    "read_pipeline",
    "create_pipeline",
    "cancel_pipeline",
    "delete_pipeline",
];

mod defaults {
    pub fn listen() -> String {
        "127.0.0.1:4001".into()
    }
    pub fn workers() -> usize {
        4
    }
    pub fn log_buffer() -> usize {
        10_000
    }
    pub fn lease_seconds() -> u64 {
        10
    }
}

impl PipelineConfig {
    /// Refuses values the service cannot run with, naming the key.
    pub fn check(&self) -> ServiceResult<()> {
        if self.lease_seconds == 0 {
            return Err(ServiceError::bad_input(
                "[services.pipeline] lease_seconds = 0: a claim on a run must last at least a second",
            ));
        }
        if self.workers == 0 {
            return Err(ServiceError::bad_input(
                "[services.pipeline] workers = 0: at least one worker is needed to run pipelines",
            ));
        }
        self.authorization.check("pipeline", ACTIONS)?;
        if self.log_buffer == 0 {
            return Err(ServiceError::bad_input(
                "[services.pipeline] log_buffer = 0: the log outbox must hold at least one line",
            ));
        }
        for (key, url) in [
            ("dataset_url", &self.dataset_url),
            ("log_url", &self.log_url),
        ] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ServiceError::bad_input(format!(
                    "[services.pipeline] {key} = \"{url}\": expected an http:// or https:// URL of a GraphQL endpoint"
                )));
            }
        }
        Ok(())
    }
}

/// The pieces of a service that is about to serve: the runner (with its
/// background tasks already spawned on `tasks`).
pub async fn runner(
    config: &PipelineConfig,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> ServiceResult<Arc<Runner>> {
    config.check()?;
    let (store, bus) = open_store(config, shutdown).await?;
    let queue = runner::Queue {
        shared: matches!(config.database, Database::Postgres(_)),
        lease: Duration::from_secs(config.lease_seconds),
    };
    let http =
        peers::http_client(config.service_token.as_deref()).map_err(ServiceError::Storage)?;
    let logs = log_shipper::LogShipper::default();
    // On shutdown the runs stop first (each records and logs how it ended),
    // then the shipper delivers what is left: its stop waits for the runs.
    let runs = TaskTracker::new();
    let shipper_stop = CancellationToken::new();
    logs.spawn(
        store.clone(),
        peers::GraphqlClient::new(config.log_url.clone(), http.clone()),
        tasks,
        shipper_stop.clone(),
        queue.shared,
    );
    let runner = Runner::new(runner::Parts {
        store,
        bus,
        queue,
        datasets: peers::DatasetClient::new(config.dataset_url.clone(), http),
        logs,
        workers: config.workers,
        tasks: runs.clone(),
        shutdown: shutdown.clone(),
        authorization: config
            .authorization
            .clone()
            .with_service_token(config.service_token.clone()),
    });
    tasks.spawn({
        let (shutdown, runner) = (shutdown.clone(), runner.clone());
        async move {
            shutdown.cancelled().await;
            runs.close();
            runs.wait().await;
            runner.fail_queued_on_stop().await;
            shipper_stop.cancel();
        }
    });
    let recovered = runner.recover().await?;
    if recovered > 0 {
        tracing::warn!(
            runs = recovered,
            "marked runs a stopped process left PENDING or RUNNING as FAILURE"
        );
    }
    runner.spawn();
    Ok(runner)
}

/// Bus announcements a replica buffers before a slow follower reads a gap.
const BUS_BUFFER: usize = 1024;

async fn open_store(
    config: &PipelineConfig,
    shutdown: &CancellationToken,
) -> ServiceResult<(Arc<dyn store::PipelineStore>, Arc<dyn Bus>)> {
    Ok(match &config.database {
        Database::Sqlite(path) => (
            Arc::new(store::SqlitePipelineStore::open(path, config.log_buffer)?),
            Arc::new(LocalBus::new(BUS_BUFFER)),
        ),
        Database::Postgres(url) => {
            let pool = connect_postgres(url, "pipeline", postgres::MIGRATIONS).await?;
            let topics = [events::TOPIC, runner::QUEUED_TOPIC, runner::CANCEL_TOPIC];
            let bus = PostgresBus::start(
                pool.clone(),
                "pipeline",
                &topics,
                BUS_BUFFER,
                shutdown.clone(),
            )
            .await?;
            (
                Arc::new(postgres::PostgresPipelineStore::new(
                    pool,
                    config.log_buffer,
                )),
                Arc::new(bus),
            )
        }
    })
}

/// The service's HTTP routes over a runner.
pub fn router(runner: Arc<Runner>, max_body_bytes: usize) -> Router {
    let shutdown = runner.shutdown_token();
    graphql_router(schema::build(runner), shutdown, max_body_bytes)
}

/// Starts the service on `listener`: migrates the database, fails runs a
/// crash left behind, starts the log shipper, then serves.
pub async fn start(config: PipelineConfig, listener: TcpListener) -> ServiceResult<RunningService> {
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let runner = match runner(&config, &tasks, &shutdown).await {
        Ok(r) => r,
        Err(e) => {
            shutdown.cancel();
            tasks.close();
            tasks.wait().await;
            return Err(e);
        }
    };
    let http = &config.http;
    let router = router(runner, http.max_body_bytes);
    spawn_service(listener, router, shutdown, tasks, &http.connections).map_err(ServiceError::from)
}

impl crate::common::cli::ServiceConfig for PipelineConfig {
    fn secrets(&self) -> Vec<(&'static str, &str)> {
        crate::common::cli::service_token_secret(&self.service_token)
    }

    const NAME: &'static str = "pipeline";

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_config_parses_and_passes_checks() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.toml");
        let config: PipelineConfig = crate::common::load_service_config(&path, "pipeline").unwrap();
        config.check().unwrap();
        assert_eq!(config.listen, "127.0.0.1:4001");
    }

    #[test]
    fn bad_values_are_named() {
        let text = "[services.pipeline]\ndatabase = \"p.sqlite\"\ndataset_url = \"http://x/graphql\"\nlog_url = \"ftp://y\"\n";
        let config: PipelineConfig = crate::common::parse_service_config(text, "pipeline").unwrap();
        assert!(config.check().unwrap_err().to_string().contains("log_url"));
        let config = PipelineConfig {
            log_url: "http://y/graphql".into(),
            workers: 0,
            ..config
        };
        assert!(config
            .check()
            .unwrap_err()
            .to_string()
            .contains("workers = 0"));
    }

    #[test]
    fn sdl_has_the_contract_fields() {
        let sdl = sdl();
        for needle in [
            "pipelines(limit: Int! = 10, cursor: String, filter: PipelineFilter): PipelinePage!",
            "pipelinesByIds(ids: [ID!]!): [Pipeline]!",
            "deletePipeline(id: ID!): Pipeline\n",
            "pipelineEvents(id: ID!): PipelineEvent!",
            "createPipeline(pipeline: PipelineInput!): Pipeline!",
            "dataCatalog: [DatasetBindingInput!]!",
            "type Query {",
            "type Mutation {",
            "type Subscription {",
        ] {
            assert!(sdl.contains(needle), "{needle} missing from:\n{sdl}");
        }
    }
}
