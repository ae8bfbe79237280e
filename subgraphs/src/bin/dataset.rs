//! `dataset [--config config.toml]`: the dataset subgraph as a process. Reads
//! `[services.dataset]`; relative paths are relative to the config file.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use subgraphs::{
    common::{init_tracing, load_service_config, resolve_path, shutdown_signal},
    dataset::{self, DatasetConfig},
};

const USAGE: &str = "usage: dataset [--config <config.toml>]";

fn config_path() -> anyhow::Result<PathBuf> {
    let mut path = PathBuf::from("config.toml");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                path = args
                    .next()
                    .map(PathBuf::from)
                    .ok_or_else(|| anyhow!("--config needs a file path\n{USAGE}"))?
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => match other.strip_prefix("--config=") {
                Some(p) => path = PathBuf::from(p),
                None => bail!("unknown argument `{other}`\n{USAGE}"),
            },
        }
    }
    Ok(path)
}

#[tokio::main]
async fn main() {
    init_tracing();
    // Printed by hand: a config mistake deserves one clear line, not a backtrace.
    if let Err(e) = run().await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> anyhow::Result<()> {
    let path = config_path()?;
    let mut config: DatasetConfig = load_service_config(&path, "dataset")?;
    let dir = path.parent().unwrap_or(Path::new(""));
    config.database = resolve_path(dir, &config.database);
    config.data_dir = resolve_path(dir, &config.data_dir);
    if config.signing_secret == "change-me-in-production" {
        tracing::warn!("[services.dataset] signing_secret is the example value; set your own secret before exposing this service");
    }
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} ([services.dataset] listen in {})",
                config.listen,
                path.display()
            )
        })?;
    let service = dataset::start(config, listener)
        .await
        .map_err(|e| anyhow!("cannot start the dataset subgraph: {e}"))?;
    tracing::info!(url = %service.url(), "dataset subgraph listening");
    shutdown_signal().await;
    tracing::info!("shutting down");
    service.stop().await;
    Ok(())
}
