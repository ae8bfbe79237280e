//! The dataset subgraph: catalog records, content files, signed URLs. (Being written.)

use std::path::PathBuf;

use serde::Deserialize;
use tokio::net::TcpListener;

use crate::common::{RunningService, ServiceError, ServiceResult};

/// `[services.dataset]` in config.toml.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// Address to listen on, e.g. "127.0.0.1:4002".
    #[serde(default = "defaults::listen")]
    pub listen: String,
    /// SQLite file; created and migrated on start.
    pub database: PathBuf,
    /// Directory holding dataset content, one file per dataset.
    pub data_dir: PathBuf,
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
}

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

/// Starts the service on `listener`.
pub async fn start(_config: DatasetConfig, _listener: TcpListener) -> ServiceResult<RunningService> {
    Err(ServiceError::Storage("dataset service not written yet".into()))
}
