//! What every subgraph binary does: `NAME [--config FILE] [--listen ADDR]`
//! (clap; also `NAME_CONFIG` / `NAME_LISTEN`), read
//! `[services.NAME]`, resolve its paths against the config file, listen,
//! serve until Ctrl-C/SIGTERM. A bad config is one clear line, exit code 1.

use std::{
    future::Future,
    path::{Path, PathBuf},
};

use anyhow::{anyhow, Context};
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;

use super::{config_text, parse_service_config, shutdown_signal, RunningService, ServiceResult};

/// A service's `[services.NAME]` section as a binary uses it.
pub trait ServiceConfig: DeserializeOwned {
    /// The section name, e.g. `"log"`.
    const NAME: &'static str;

    fn listen(&self) -> &str;

    /// For `--listen` / `NAME_LISTEN`, which win over the file.
    fn listen_mut(&mut self) -> &mut String;

    /// Makes relative paths relative to the config file's directory.
    fn resolve_paths(&mut self, config_dir: &Path);

    /// Its secrets, by config key: a sample value is refused outside dev mode.
    fn secrets(&self) -> Vec<(&'static str, &str)> {
        Vec::new()
    }
}

/// A service's `service_token`, as [`ServiceConfig::secrets`] lists it.
pub fn service_token_secret(token: &Option<String>) -> Vec<(&'static str, &str)> {
    token
        .as_deref()
        .map(|t| ("service_token", t))
        .into_iter()
        .collect()
}

/// What the command line (or the environment) says.
struct Args {
    config: PathBuf,
    listen: Option<String>,
}

/// `NAME [--config FILE] [--listen ADDR]`, with `NAME_CONFIG` and
/// `NAME_LISTEN` from the environment; `--help` and `--version`.
fn args(name: &'static str) -> Args {
    use clap::{Arg, Command};
    let upper = name.to_ascii_uppercase();
    // clap keeps these for the life of the process: leaked once at start.
    let env =
        |suffix: &str| -> &'static str { Box::leak(format!("{upper}_{suffix}").into_boxed_str()) };
    let about: &'static str = Box::leak(
        format!("The {name} subgraph: reads [services.{name}] of the config file and serves GraphQL over HTTP and WebSocket.").into_boxed_str(),
    );
    let matches = Command::new(name)
        .version(env!("CARGO_PKG_VERSION"))
        .about(about)
        .arg(
            Arg::new("config")
                .long("config")
                .short('c')
                .value_name("FILE")
                .env(env("CONFIG"))
                .default_value("config.toml")
                .help("the config file; relative paths in it are relative to it"),
        )
        .arg(
            Arg::new("listen")
                .long("listen")
                .value_name("ADDR")
                .env(env("LISTEN"))
                .help("the address to listen on, over the file's `listen`"),
        )
        .get_matches();
    Args {
        config: matches
            .get_one::<String>("config")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("config.toml")),
        listen: matches.get_one::<String>("listen").cloned(),
    }
}

/// A subgraph binary: `service_main!(subgraphs::log::start);` is all of it.
/// jemalloc is its allocator, as the gateway's: glibc's malloc took a
/// quarter of the pipeline and dataset services' CPU under the benchmark
/// (`malloc_consolidate` and free-list walks over many small objects).
#[macro_export]
macro_rules! service_main {
    ($start:path) => {
        #[global_allocator]
        static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

        #[tokio::main]
        async fn main() {
            $crate::common::cli::run_service($start).await
        }
    };
}

/// The whole `main` of a subgraph binary (see [`service_main!`]).
pub async fn run_service<C, F, Fut>(start: F)
where
    C: ServiceConfig,
    F: FnOnce(C, TcpListener) -> Fut,
    Fut: Future<Output = ServiceResult<RunningService>>,
{
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
    let Args {
        config: path,
        listen,
    } = args(name);
    // Read once: the service's section and the shared telemetry one.
    let text = config_text(&path)?;
    let invalid = |e: String| anyhow!("invalid config file {}: {e}", path.display());
    let mut config: C = parse_service_config(&text, name).map_err(invalid)?;
    let telemetry_config = super::parse_service_section(&text, "telemetry")
        .map_err(invalid)?
        .unwrap_or_default();
    let telemetry = telemetry::init(name, &telemetry_config).map_err(|e| anyhow!(e))?;
    if let Some(listen) = listen {
        *config.listen_mut() = listen;
    }
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
        // Cancel first: a log write that fails must not change what happens.
        token.cancel();
        tracing::info!("shutting down");
    });
    service.wait().await;
    // The spans still queued go out off the runtime's threads.
    let _ = tokio::task::spawn_blocking(move || drop(telemetry)).await;
    Ok(())
}
