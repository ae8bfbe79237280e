//! The `gateway` binary's `main`, in the library so that end-to-end tests can
//! run the very same process entry (arguments, runtime choice, SIGHUP reload,
//! SIGTERM shutdown) from a test binary. `anyhow` stays on this edge.

use std::path::PathBuf;

use anyhow::Context;

fn config_path() -> anyhow::Result<PathBuf> {
    let mut args = std::env::args().skip(1);
    let mut path = PathBuf::from("config.toml");
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" | "-c" => path = args.next().context("--config needs a file path")?.into(),
            "--help" | "-h" => {
                println!("usage: gateway [--config config.toml]");
                std::process::exit(0);
            }
            other => {
                anyhow::bail!("unknown argument `{other}`; usage: gateway [--config config.toml]")
            }
        }
    }
    Ok(path)
}

/// The whole `gateway` binary: arguments, config, runtime, signals.
pub fn run() -> anyhow::Result<()> {
    init_tracing();
    let path = config_path()?;
    let loaded = crate::load(&path)?;
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
    runtime.block_on(serve(loaded))
}

async fn serve(loaded: crate::LoadedConfig) -> anyhow::Result<()> {
    let running = crate::start(loaded).await?;
    println!(
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

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if std::env::var("LOG_FORMAT").as_deref() == Ok("json") {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
}
