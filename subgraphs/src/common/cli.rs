//! What every subgraph binary does: `NAME [--config config.toml]`, read
//! `[services.NAME]`, resolve its paths against the config file, listen,
//! serve until Ctrl-C/SIGTERM. A bad config is one clear line, exit code 1.

use std::{
    future::Future,
    path::{Path, PathBuf},
};

use anyhow::{anyhow, bail, Context};
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;

use super::{init_tracing, load_service_config, shutdown_signal, RunningService, ServiceResult};

/// A service's `[services.NAME]` section as a binary uses it.
pub trait ServiceConfig: DeserializeOwned {
    /// The section name, e.g. `"log"`.
    const NAME: &'static str;

    fn listen(&self) -> &str;

    /// Makes relative paths relative to the config file's directory.
    fn resolve_paths(&mut self, config_dir: &Path);

    /// Its secrets, by config key: a sample value is refused outside dev mode.
    fn secrets(&self) -> Vec<(&'static str, &str)> {
        Vec::new()
    }
}

fn config_path(name: &str) -> anyhow::Result<PathBuf> {
    let usage = format!("usage: {name} [--config <config.toml>]");
    let mut path = PathBuf::from("config.toml");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                path = args
                    .next()
                    .map(PathBuf::from)
                    .ok_or_else(|| anyhow!("--config needs a file path\n{usage}"))?
            }
            "-h" | "--help" => {
                println!("{usage}");
                std::process::exit(0);
            }
            other => match other.strip_prefix("--config=") {
                Some(p) => path = PathBuf::from(p),
                None => bail!("unknown argument `{other}`\n{usage}"),
            },
        }
    }
    Ok(path)
}

/// The whole `main` of a subgraph binary.
pub async fn run_service<C, F, Fut>(start: F)
where
    C: ServiceConfig,
    F: FnOnce(C, TcpListener) -> Fut,
    Fut: Future<Output = ServiceResult<RunningService>>,
{
    init_tracing();
    // Printed by hand: a config mistake deserves one clear line, not a backtrace.
    if let Err(e) = run(start).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run<C, F, Fut>(start: F) -> anyhow::Result<()>
where
    C: ServiceConfig,
    F: FnOnce(C, TcpListener) -> Fut,
    Fut: Future<Output = ServiceResult<RunningService>>,
{
    let name = C::NAME;
    let path = config_path(name)?;
    let mut config: C = load_service_config(&path, name)?;
    config.resolve_paths(path.parent().unwrap_or(Path::new("")));
    for (key, value) in config.secrets() {
        settings::check_secret(&format!("[services.{name}] {key}"), value)
            .map_err(|e| anyhow!(e))?;
    }
    let listener = TcpListener::bind(config.listen()).await.with_context(|| {
        format!(
            "cannot listen on {} ([services.{name}] listen in {})",
            config.listen(),
            path.display()
        )
    })?;
    let service = start(config, listener)
        .await
        .map_err(|e| anyhow!("cannot start the {name} subgraph: {e}"))?;
    tracing::info!(url = %service.url(), "{name} subgraph listening");
    let token = service.shutdown_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        token.cancel();
    });
    service.wait().await;
    Ok(())
}
