//! The pipeline subgraph: templates, runs, events. (Being written.)

use std::path::PathBuf;

use serde::Deserialize;
use tokio::net::TcpListener;

use crate::common::{RunningService, ServiceError, ServiceResult};

/// `[services.pipeline]` in config.toml.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Address to listen on, e.g. "127.0.0.1:4001".
    #[serde(default = "defaults::listen")]
    pub listen: String,
    /// SQLite file; created and migrated on start.
    pub database: PathBuf,
    /// Runs executed at once; the others wait as PENDING.
    #[serde(default = "defaults::workers")]
    pub workers: usize,
    /// The dataset subgraph's GraphQL endpoint: runs read inputs and write outputs through it.
    pub dataset_url: String,
    /// The log subgraph's GraphQL endpoint: runs send their log lines to it.
    pub log_url: String,
    /// Log lines kept in memory while the log subgraph is unreachable.
    #[serde(default = "defaults::log_buffer")]
    pub log_buffer: usize,
}

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
}

/// Starts the service on `listener`.
pub async fn start(_config: PipelineConfig, _listener: TcpListener) -> ServiceResult<RunningService> {
    Err(ServiceError::Storage("pipeline service not written yet".into()))
}
