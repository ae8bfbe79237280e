//! The log subgraph: ingestion, history, live stream. (Being written.)

use std::path::PathBuf;

use serde::Deserialize;
use tokio::net::TcpListener;

use crate::common::{RunningService, ServiceError, ServiceResult};

/// `[services.log]` in config.toml.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Address to listen on, e.g. "127.0.0.1:4003".
    #[serde(default = "defaults::listen")]
    pub listen: String,
    /// SQLite file; created and migrated on start.
    pub database: PathBuf,
}

mod defaults {
    pub fn listen() -> String {
        "127.0.0.1:4003".into()
    }
}

/// Starts the service on `listener`.
pub async fn start(_config: LogConfig, _listener: TcpListener) -> ServiceResult<RunningService> {
    Err(ServiceError::Storage("log service not written yet".into()))
}
