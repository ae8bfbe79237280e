//! The gateway's one error enum; `code()` is stable for logs and tests.

use stitching::BuildErrors;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("invalid config {file}:\n  {message}")]
    Config { file: String, message: String },
    #[error("cannot load the schema of subgraph `{subgraph}`: {message}")]
    SubgraphSchema { subgraph: String, message: String },
    #[error(transparent)]
    Stitching(#[from] BuildErrors),
    /// Several subgraphs' schemas could not be loaded.
    #[error("{} subgraphs' schemas could not be loaded:\n  - {}", .0.len(), .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n  - "))]
    Schemas(Vec<GatewayError>),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

impl GatewayError {
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::Config { .. } => "CONFIG_INVALID",
            GatewayError::SubgraphSchema { .. } | GatewayError::Schemas(_) => {
                "SUBGRAPH_SCHEMA_UNAVAILABLE"
            }
            GatewayError::Stitching(_) => "STITCHING_INVALID",
            GatewayError::Listen { .. } => "LISTEN_FAILED",
        }
    }
}
