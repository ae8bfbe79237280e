//! `pipeline [--config config.toml]`: the pipeline subgraph, configured by
//! `[services.pipeline]`; relative paths are relative to the config file.

use std::path::PathBuf;

use anyhow::Context;
use subgraphs::{
    common::{init_tracing, load_service_config, resolve_path, shutdown_signal},
    pipeline::{self, PipelineConfig},
};

const USAGE: &str = "usage: pipeline [--config config.toml]";

fn config_path() -> anyhow::Result<PathBuf> {
    let mut args = std::env::args().skip(1);
    let mut path = PathBuf::from("config.toml");
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                path = args.next().map(PathBuf::from).context(USAGE)?;
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => match other.strip_prefix("--config=") {
                Some(p) => path = PathBuf::from(p),
                None => anyhow::bail!("unknown argument `{other}`\n{USAGE}"),
            },
        }
    }
    Ok(path)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    let path = config_path()?;
    let mut config: PipelineConfig = load_service_config(&path, "pipeline")?;
    let dir = path.parent().map(PathBuf::from).unwrap_or_default();
    config.database = resolve_path(&dir, &config.database);
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} ([services.pipeline] listen)",
                config.listen
            )
        })?;
    let service = pipeline::start(config, listener)
        .await
        .map_err(|e| anyhow::anyhow!("pipeline subgraph cannot start: {e}"))?;
    tracing::info!(url = %service.url(), "pipeline subgraph listening");
    let token = service.shutdown_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        token.cancel();
    });
    service.wait().await;
    Ok(())
}
