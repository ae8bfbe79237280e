//! Hot reload: when `config.toml` or an SDL file it names changes (or on
//! SIGHUP), build a new engine in the background; swap it in only if it is
//! valid, otherwise keep serving the old one and log every error.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use crate::{config, engine::Engine, error::GatewayError, AppState};

/// Rebuilds from the config file and swaps the engine if the result is valid.
pub async fn reload(state: &Arc<AppState>) -> Result<(), GatewayError> {
    let _one_at_a_time = state.reload_lock.lock().await;
    let current = state.engine();
    let result = async {
        let loaded = match &current.config.path {
            Some(p) => config::load(p)?,
            None => current.config.as_ref().clone(),
        };
        // A reload must not hang on a subgraph that is down: few attempts.
        Engine::build(
            Arc::new(loaded),
            &state.http,
            &state.metrics,
            &state.upstream,
            2,
            state.hook.clone(),
        )
        .await
    }
    .await;
    match result {
        Ok(engine) => {
            let names: Vec<&str> = engine.clients.iter().map(|c| c.name.as_str()).collect();
            state.upstream.retain_health(&names);
            state.metrics.retain_subgraphs(&names);
            state.swap(Arc::new(engine));
            state.metrics.reloaded(true);
            tracing::info!("schema reloaded");
            Ok(())
        }
        Err(e) => {
            state.metrics.reloaded(false);
            tracing::error!(code = e.code(), error = %e, "reload failed; still serving the previous schema");
            Err(e)
        }
    }
}

fn stamps(files: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

/// First wait before retrying a reload that could not reach a subgraph.
const RETRY_FIRST: Duration = Duration::from_secs(2);
/// Longest wait between such retries.
const RETRY_MAX: Duration = Duration::from_secs(60);

/// Polls the watched files (portable, no inotify limits) and reloads on
/// change. A reload that failed because a subgraph's schema could not be
/// loaded (a new subgraph not up yet) is retried with backoff, so the new
/// config takes effect once the subgraph comes up, without another edit.
///
/// The files are stamped when this is called, not when the task first runs,
/// so an edit made right after start-up is not taken as the starting state.
pub fn watch(state: Arc<AppState>) -> impl std::future::Future<Output = ()> {
    let files = state.engine().config.watched_files();
    let last = stamps(&files);
    watch_from(state, files, last)
}

async fn watch_from(
    state: Arc<AppState>,
    mut files: Vec<PathBuf>,
    mut last: Vec<Option<(SystemTime, u64)>>,
) {
    let mut retry: Option<(tokio::time::Instant, Duration)> = None;
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
        }
        let now = stamps(&files);
        let due = retry.is_some_and(|(at, _)| tokio::time::Instant::now() >= at);
        if now == last && !due {
            continue;
        }
        // Let a writer finish before reading.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let result = reload(&state).await;
        retry = match &result {
            Err(GatewayError::SubgraphSchema { .. } | GatewayError::Schemas(_)) => {
                let wait = match retry {
                    Some((_, wait)) if due => (wait * 2).min(RETRY_MAX),
                    _ => RETRY_FIRST,
                };
                tracing::info!(retry_in = ?wait, "will retry the reload");
                Some((tokio::time::Instant::now() + wait, wait))
            }
            _ => None,
        };
        // Watch what the serving config names and, after a failure, what the
        // failed one names too: fixing a file only it added must reload.
        let serving = state.engine().config.clone();
        files = serving.watched_files();
        if let Some(p) = &serving.path {
            if !files.contains(p) {
                files.push(p.clone());
            }
            if result.is_err() {
                if let Ok(attempted) = config::load(p) {
                    for f in attempted.watched_files() {
                        if !files.contains(&f) {
                            files.push(f);
                        }
                    }
                }
            }
        }
        last = stamps(&files);
    }
}
