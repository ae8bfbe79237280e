//! The `gateway` binary's `main`, in the library so that end-to-end tests can
//! run the very same process entry (arguments, runtime choice, SIGHUP reload,
//! SIGTERM shutdown) from a test binary. `anyhow` stays on this edge.

use std::{io::Write, path::PathBuf};

use clap::{Parser, Subcommand};

/// A GraphQL gateway: one endpoint over remote subgraphs that speak
/// `@delegate` stitching, Apollo Federation or Composite Schemas.
#[derive(Debug, Parser)]
#[command(name = "gateway", version, about, long_about = None)]
struct Cli {
    /// The config file (`[gateway]` and `[[subgraphs]]`).
    #[arg(
        long,
        short,
        global = true,
        env = "GATEWAY_CONFIG",
        default_value = "config.toml"
    )]
    config: PathBuf,
    /// Address to listen on, overriding `[gateway] listen`.
    #[arg(long, global = true, env = "GATEWAY_LISTEN")]
    listen: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the graph (what `gateway` alone does).
    Serve,
    /// Load every subgraph's schema, compose them and print every problem,
    /// without serving. Exit code 1 when there is one.
    Check,
    /// Print the composed public schema (SDL) without serving, so a change
    /// can be reviewed before it ships.
    Compose,
}

/// The whole `gateway` binary: arguments, config, runtime, signals. Errors
/// come back as one clear message (the binary prints it, no backtrace).
pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut loaded = crate::load(&cli.config)?;
    if let Some(listen) = cli.listen {
        loaded.config.gateway.listen = listen;
    }
    let runtime = match loaded.config.gateway.worker_threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        0 => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()?,
    };
    // The gRPC exporter's connection lives on the runtime.
    let telemetry = {
        let _in_runtime = runtime.enter();
        telemetry::init("gateway", &loaded.config.gateway.telemetry).map_err(anyhow::Error::msg)?
    };
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => runtime.block_on(serve(loaded)),
        Command::Check => runtime.block_on(check(loaded)),
        Command::Compose => runtime.block_on(compose(loaded)),
    };
    // The spans still queued go out on a blocking thread while the runtime
    // (even a single-threaded one) drives the exporter's connection.
    let flushed = runtime.spawn_blocking(move || drop(telemetry));
    let _ = runtime.block_on(flushed);
    result
}

/// Composition once, with two attempts per unreachable subgraph.
async fn composed(loaded: &crate::LoadedConfig) -> anyhow::Result<stitching::Supergraph> {
    let http = crate::http_client()?;
    Ok(crate::engine::compose(loaded, &http, 2).await?)
}

async fn check(loaded: crate::LoadedConfig) -> anyhow::Result<()> {
    let supergraph = composed(&loaded).await?;
    let types = supergraph
        .schema
        .types
        .iter()
        .filter(|(n, t)| !t.is_built_in() && !n.starts_with("__"))
        .count();
    println!(
        "ok: {} subgraphs compose into {types} public types",
        supergraph.subgraphs.len()
    );
    Ok(())
}

async fn compose(loaded: crate::LoadedConfig) -> anyhow::Result<()> {
    let supergraph = composed(&loaded).await?;
    print!("{}", supergraph.sdl());
    Ok(())
}

async fn serve(loaded: crate::LoadedConfig) -> anyhow::Result<()> {
    let running = crate::start(loaded).await?;
    // The banner goes to stdout (logs are on stderr); a closed stdout is no reason to stop.
    let _ = writeln!(
        std::io::stdout(),
        "gateway: GraphiQL and GraphQL at http://{}/graphql",
        running.addr
    );
    let state = running.state.clone();
    #[cfg(unix)]
    {
        let state = state.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                return;
            };
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading");
                let _ = crate::reload::reload(&state).await;
            }
        });
    }
    shutdown_signal().await;
    running.stop().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term.recv() => {} }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
