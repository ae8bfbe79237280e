//! The three subgraphs started in-process on ephemeral ports, each with its
//! own SQLite file in one temporary directory (or, on Postgres runs, all in
//! one new database: see `storage`).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use subgraphs::{
    common::{rbac::Authorization, RunningService},
    dataset::{self, DatasetConfig},
    log::{self, LogConfig},
    pipeline::{self, PipelineConfig},
};
use tokio::net::TcpListener;

/// The secret the test dataset service signs URLs with, so tests can craft
/// URLs (e.g. a validly signed but expired one).
pub const SIGNING_SECRET: &str = "e2e-test-signing-secret";

/// The services' `service_token` in tests (internal mutations need it).
pub const SERVICE_TOKEN: &str = "e2e-service-token";

/// Knobs of [`Subgraphs::start_with`]; `..Default::default()` for the rest.
#[derive(Clone, Debug)]
pub struct SubgraphsOptions {
    /// `[services.pipeline] workers`.
    pub workers: usize,
    /// `[services.pipeline] log_buffer`.
    pub log_buffer: usize,
    /// `[services.dataset] max_upload_bytes`.
    pub max_upload_bytes: u64,
    /// `[services.dataset] max_expires_in_sec`.
    pub max_expires_in_sec: i64,
    /// Start the pipeline subgraph too (false: dataset and log only).
    pub with_pipeline: bool,
    /// `[services.*.http]` of all three.
    pub http: subgraphs::common::HttpConfig,
    /// `[services.dataset.cors]`.
    pub dataset_cors: serve::CorsConfig,
    /// `[services.NAME.authorization]` of all three (default: everything allowed).
    pub authorization: Authorization,
}

impl Default for SubgraphsOptions {
    fn default() -> Self {
        SubgraphsOptions {
            workers: 2,
            log_buffer: 10_000,
            max_upload_bytes: 1024 * 1024,
            max_expires_in_sec: 86_400,
            with_pipeline: true,
            http: Default::default(),
            dataset_cors: Default::default(),
            authorization: Authorization::allow_all(),
        }
    }
}

/// Running subgraphs. Call `stop().await` at the end of a test.
pub struct Subgraphs {
    dir: tempfile::TempDir,
    /// The stack's Postgres database on Postgres runs.
    postgres: Option<String>,
    pipeline: Option<RunningService>,
    dataset: RunningService,
    log: Option<RunningService>,
    log_addr: SocketAddr,
    log_config: LogConfig,
}

impl Subgraphs {
    /// All three with default options.
    pub async fn start() -> Subgraphs {
        Self::start_with(SubgraphsOptions::default()).await
    }

    /// Dataset and log only (tests that do not need runs).
    pub async fn start_without_pipeline() -> Subgraphs {
        Self::start_with(SubgraphsOptions {
            with_pipeline: false,
            ..Default::default()
        })
        .await
    }

    /// Binds all listeners first so each service knows the others' URLs, then starts them.
    pub async fn start_with(options: SubgraphsOptions) -> Subgraphs {
        let dir = tempfile::tempdir().expect("create temp dir");
        let postgres = crate::storage::stack_postgres();
        let pipeline_listener = bind().await;
        let dataset_listener = bind().await;
        let log_listener = bind().await;
        let dataset_addr = dataset_listener.local_addr().unwrap();
        let log_addr = log_listener.local_addr().unwrap();

        let dataset_config = DatasetConfig {
            listen: dataset_addr.to_string(),
            database: crate::storage::database(dir.path(), "dataset.sqlite", &postgres),
            data_dir: Some(dir.path().join("datasets")),
            content_url: None,
            content_options: Default::default(),
            public_url: None,
            signing_secret: SIGNING_SECRET.to_string(),
            max_expires_in_sec: options.max_expires_in_sec,
            max_upload_bytes: options.max_upload_bytes,
            http: options.http.clone(),
            cors: options.dataset_cors.clone(),
            service_token: Some(SERVICE_TOKEN.into()),
            authorization: only(&options.authorization, dataset::ACTIONS),
        };
        let dataset = dataset::start(dataset_config, dataset_listener)
            .await
            .unwrap_or_else(|e| panic!("start dataset subgraph: {e}"));

        let log_config = LogConfig {
            listen: log_addr.to_string(),
            database: crate::storage::database(dir.path(), "log.sqlite", &postgres),
            http: options.http.clone(),
            service_token: Some(SERVICE_TOKEN.into()),
            authorization: only(&options.authorization, log::ACTIONS),
        };
        let log = log::start(log_config.clone(), log_listener)
            .await
            .unwrap_or_else(|e| panic!("start log subgraph: {e}"));

        let pipeline = if options.with_pipeline {
            let pipeline_config = PipelineConfig {
                listen: pipeline_listener.local_addr().unwrap().to_string(),
                database: crate::storage::database(dir.path(), "pipeline.sqlite", &postgres),
                lease_seconds: 10,
                workers: options.workers,
                dataset_url: dataset.url(),
                log_url: log.url(),
                log_buffer: options.log_buffer,
                http: options.http.clone(),
                service_token: Some(SERVICE_TOKEN.into()),
                authorization: only(&options.authorization, pipeline::ACTIONS),
            };
            Some(
                pipeline::start(pipeline_config, pipeline_listener)
                    .await
                    .unwrap_or_else(|e| panic!("start pipeline subgraph: {e}")),
            )
        } else {
            None
        };

        Subgraphs {
            dir,
            postgres,
            pipeline,
            dataset,
            log: Some(log),
            log_addr,
            log_config,
        }
    }

    /// The temporary directory holding the databases and dataset files.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// What a service started beside the stack uses as `database` to share
    /// its state: `file` in [`Self::dir`], or the stack's Postgres database.
    pub fn database(&self, file: &str) -> subgraphs::common::Database {
        crate::storage::database(self.dir.path(), file, &self.postgres)
    }

    pub fn pipeline_url(&self) -> String {
        self.pipeline().url()
    }

    pub fn pipeline_ws_url(&self) -> String {
        self.pipeline().ws_url()
    }

    pub fn dataset_url(&self) -> String {
        self.dataset.url()
    }

    pub fn dataset_ws_url(&self) -> String {
        self.dataset.ws_url()
    }

    /// `http://ADDR` of the dataset service (signed URLs start with it).
    pub fn dataset_base_url(&self) -> String {
        format!("http://{}", self.dataset.addr)
    }

    /// Valid while the log subgraph is stopped too: it comes back on the same port.
    pub fn log_url(&self) -> String {
        format!("http://{}/graphql", self.log_addr)
    }

    pub fn log_ws_url(&self) -> String {
        format!("ws://{}/graphql", self.log_addr)
    }

    fn pipeline(&self) -> &RunningService {
        self.pipeline
            .as_ref()
            .expect("the pipeline subgraph was not started (start_without_pipeline)")
    }

    /// Takes the log subgraph down (every connection closed); `start_log` brings it back.
    pub async fn stop_log(&mut self) {
        if let Some(log) = self.log.take() {
            log.stop().await;
        }
    }

    /// Restarts the log subgraph on the same port with the same database.
    pub async fn start_log(&mut self) {
        assert!(self.log.is_none(), "the log subgraph is already running");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.log_addr).await {
                Ok(l) => break l,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("rebind log subgraph on {}: {e}", self.log_addr),
            }
        };
        let log = log::start(self.log_config.clone(), listener)
            .await
            .unwrap_or_else(|e| panic!("restart log subgraph: {e}"));
        self.log = Some(log);
    }

    /// Stops every subgraph and removes the temporary directory.
    pub async fn stop(mut self) {
        if let Some(p) = self.pipeline.take() {
            p.stop().await;
        }
        self.stop_log().await;
        self.dataset.stop().await;
    }
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind an ephemeral port")
}

/// The rules of one service: `all` without the other services' actions.
fn only(all: &Authorization, actions: &[&str]) -> Authorization {
    let mut rules = all.clone();
    rules.actions.retain(|a, _| actions.contains(&a.as_str()));
    rules
}
