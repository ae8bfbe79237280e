//! The gateway server: GraphQL over HTTP and WebSocket in front of the
//! stitched graph, with config, hot reload, health and metrics.
//!
//! `config` -> `engine` (schema, clients, plan cache) -> `http` / `ws`;
//! `reload` swaps the engine when the config or its SDL files change.

pub mod auth;
pub mod cli;
pub mod config;
pub mod engine;
pub mod error;
pub mod graphiql;
pub mod http;
pub mod metrics;
pub mod persisted;
pub mod reload;
pub mod resilience;
pub mod response;
pub mod streamed;
pub mod upstream;
pub mod ws;

use std::{
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::Duration,
};

use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

pub use config::{load, LoadedConfig};
pub use engine::Engine;
pub use error::GatewayError;
use metrics::Metrics;

/// What every handler shares. The engine is swapped whole on reload.
pub struct AppState {
    engine: RwLock<Arc<Engine>>,
    pub http: reqwest::Client,
    /// Subgraph connections and in-flight work; engines come and go, these stay.
    pub upstream: Arc<upstream::Upstream>,
    /// `dedupe_client_requests`: identical client requests in flight share one answer.
    pub inbound: Option<upstream::Inflight<http::Answer>>,
    pub metrics: Arc<Metrics>,
    pub max_body_bytes: usize,
    pub ws_init_timeout: Duration,
    /// `None`: no keep-alives.
    pub ws_keepalive: Option<Duration>,
    pub ws_max_operations: usize,
    /// Upstream subscription sockets, shared by every client.
    pub subscriptions: Arc<ws::upstream::Subscriptions>,
    /// Automatic persisted queries, by hash; kept across reloads.
    pub persisted: persisted::PersistedQueries,
    pub shutdown: CancellationToken,
    /// Serialises reloads: one rebuild at a time.
    reload_lock: tokio::sync::Mutex<()>,
    /// Handed to every engine built (see `engine::PrepareHook`).
    hook: Option<engine::PrepareHook>,
}

impl AppState {
    /// The current engine; a request keeps the one it started with.
    pub fn engine(&self) -> Arc<Engine> {
        match self.engine.read() {
            Ok(e) => e.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The request's document, over HTTP and WebSocket alike: a trusted one
    /// it names, or one from the automatic persisted queries; in safelist
    /// mode only trusted ones.
    pub(crate) fn documents(
        &self,
        request: &mut engine::GraphQLRequest,
    ) -> Result<(), persisted::Refusal> {
        let engine = self.engine();
        if let Some(trusted) = &engine.trusted {
            if trusted.apply(request)? {
                return Ok(());
            }
        }
        self.persisted.resolve(request)
    }

    fn swap(&self, engine: Arc<Engine>) {
        match self.engine.write() {
            Ok(mut e) => *e = engine,
            Err(p) => *p.into_inner() = engine,
        }
    }
}

/// A gateway running in this process.
pub struct RunningGateway {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    server: JoinHandle<()>,
    /// Open connections; `stop` waits for them (within the grace period).
    tasks: tokio_util::task::TaskTracker,
    watcher: Option<JoinHandle<()>>,
}

impl RunningGateway {
    pub fn url(&self) -> String {
        format!("http://{}/graphql", self.addr)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/graphql", self.addr)
    }

    /// Rebuilds the schema from the config now (as on a file change or SIGHUP).
    pub async fn reload(&self) -> Result<(), GatewayError> {
        reload::reload(&self.state).await
    }

    pub async fn stop(self) {
        self.state.shutdown.cancel();
        if let Some(w) = self.watcher {
            w.abort();
        }
        let _ = self.server.await;
        self.tasks.close();
        self.tasks.wait().await;
        tracing::info!("gateway stopped");
    }
}

/// Shared HTTP client: pooled keep-alive connections to every subgraph.
pub(crate) fn http_client() -> Result<reqwest::Client, GatewayError> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| GatewayError::Config {
            file: "config".into(),
            message: format!("cannot build the HTTP client: {e}"),
        })
}

/// Loads the schema and serves on the configured address.
pub async fn start(loaded: LoadedConfig) -> Result<RunningGateway, GatewayError> {
    let addr = loaded.config.gateway.listen.clone();
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|source| GatewayError::Listen { addr, source })?;
    start_on(loaded, listener).await
}

/// Two handles on one listening socket.
fn split_listener(listener: TcpListener) -> std::io::Result<(TcpListener, TcpListener)> {
    let std = listener.into_std()?;
    let other = std.try_clone()?;
    Ok((TcpListener::from_std(std)?, TcpListener::from_std(other)?))
}

/// Loads the schema and serves on `listener` (tests bind port 0).
pub async fn start_on(
    loaded: LoadedConfig,
    listener: TcpListener,
) -> Result<RunningGateway, GatewayError> {
    start_on_with(loaded, listener, None).await
}

/// Builds the engine while `early` answers `/health` and `/ready` (503
/// until the engine is built), then stops answering on it.
async fn build_while_starting(
    early: TcpListener,
    config: &Arc<LoadedConfig>,
    http: &reqwest::Client,
    metrics: &Arc<Metrics>,
    upstream: &Arc<upstream::Upstream>,
    hook: Option<engine::PrepareHook>,
) -> Result<Engine, GatewayError> {
    let g = &config.config.gateway;
    let starting = serve::Serving {
        shutdown: CancellationToken::new(),
        tasks: tokio_util::task::TaskTracker::new(),
        grace: Duration::ZERO,
        stats: metrics.connections.clone(),
    };
    let (_, early_accept) = serve::spawn(early, http::starting_router(), &g.connections, &starting)
        .map_err(|source| GatewayError::Listen {
            addr: g.listen.clone(),
            source,
        })?;
    let built = Engine::build(
        config.clone(),
        http,
        metrics,
        upstream,
        g.introspection_attempts,
        hook,
    )
    .await;
    starting.shutdown.cancel();
    let _ = early_accept.await;
    starting.tasks.close();
    starting.tasks.wait().await;
    built
}

/// What every request handler shares, from the `[gateway]` settings.
fn app_state(
    g: &config::GatewayConfig,
    engine: Engine,
    http: reqwest::Client,
    upstream: Arc<upstream::Upstream>,
    metrics: Arc<Metrics>,
    hook: Option<engine::PrepareHook>,
) -> AppState {
    let shutdown = CancellationToken::new();
    AppState {
        engine: RwLock::new(Arc::new(engine)),
        http,
        upstream,
        inbound: g.dedupe_client_requests.then(upstream::Inflight::default),
        metrics,
        max_body_bytes: g.max_body_bytes,
        ws_init_timeout: Duration::from_secs(g.ws_init_timeout_secs),
        ws_keepalive: (g.ws_keepalive_secs > 0).then(|| Duration::from_secs(g.ws_keepalive_secs)),
        ws_max_operations: g.ws_max_operations,
        persisted: persisted::PersistedQueries::new(g.persisted_queries_cache_size),
        subscriptions: ws::upstream::Subscriptions::new(
            g.max_upstream_subscriptions,
            // A subscriber that takes no event for as long as a client
            // write may stall is let go.
            match g.ws_keepalive_secs {
                0 => ws::STALL_WITHOUT_KEEPALIVE,
                secs => Duration::from_secs(secs),
            },
            shutdown.clone(),
        ),
        shutdown,
        reload_lock: tokio::sync::Mutex::new(()),
        hook,
    }
}

/// [`start_on`] with a hook on every document prepared (kept across reloads).
pub async fn start_on_with(
    loaded: LoadedConfig,
    listener: TcpListener,
    hook: Option<engine::PrepareHook>,
) -> Result<RunningGateway, GatewayError> {
    let http = http_client()?;
    let metrics = Arc::new(Metrics::default());
    let g = loaded.config.gateway.clone();
    let config = Arc::new(loaded);
    let upstream = Arc::new(upstream::Upstream::new(g.max_connections_per_host));
    let listen_error = |source| GatewayError::Listen {
        addr: g.listen.clone(),
        source,
    };
    // While the schema is built (introspection retries may take a while),
    // a second handle on the same socket answers `/health` and `/ready`
    // instead of leaving clients in the backlog.
    let (early, listener) = split_listener(listener).map_err(listen_error)?;
    let engine =
        build_while_starting(early, &config, &http, &metrics, &upstream, hook.clone()).await?;
    let state = Arc::new(app_state(&g, engine, http, upstream, metrics, hook));
    let app = http::router(state.clone());
    let serving = serve::Serving {
        shutdown: state.shutdown.clone(),
        tasks: tokio_util::task::TaskTracker::new(),
        grace: Duration::from_secs(g.shutdown_grace_secs),
        stats: state.metrics.connections.clone(),
    };
    let (addr, server) =
        serve::spawn(listener, app, &g.connections, &serving).map_err(|source| {
            GatewayError::Listen {
                addr: g.listen.clone(),
                source,
            }
        })?;
    let watcher = if g.hot_reload && config.path.is_some() {
        Some(tokio::spawn(reload::watch(state.clone())))
    } else {
        None
    };
    tracing::info!(%addr, "gateway listening");
    Ok(RunningGateway {
        addr,
        state,
        server,
        tasks: serving.tasks,
        watcher,
    })
}
