//! The four Apollo Federation subgraphs of the public gateway benchmark
//! (graphql-gateways-benchmark): `accounts`, `products`, `inventory` and
//! `reviews`, with its static data, in one process. Each answers on
//! `/NAME/graphql`; `GET /metrics` counts the requests each received, so a
//! benchmark counts subgraph calls where they land, whatever the gateway.

pub mod accounts;
pub mod inventory;
pub mod products;
pub mod reviews;

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::{
    extract::{Request, State},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::common::{graphql_router, spawn_service, RunningService, ServiceResult};

/// The subgraphs, in the order `/metrics` lists them.
pub const NAMES: [&str; 4] = ["accounts", "products", "inventory", "reviews"];

/// Largest request body of the benchmark subgraphs.
const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// `[services.federation]` in config.toml.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct FederationConfig {
    /// Address to listen on; the subgraphs answer on `/accounts/graphql` etc.
    #[serde(default = "defaults::listen")]
    pub listen: String,
    /// Milliseconds added before every answer (a subgraph farther away).
    #[serde(default)]
    pub delay_ms: u64,
}

mod defaults {
    pub fn listen() -> String {
        "127.0.0.1:4020".into()
    }
}

/// Requests per subgraph, counted as they arrive.
#[derive(Default)]
pub struct Counters([AtomicU64; 4]);

impl Counters {
    pub fn get(&self, name: &str) -> u64 {
        NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| self.0[i].load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    fn exposition(&self) -> String {
        let mut out = String::from(
            "# HELP subgraph_requests_received_total GraphQL requests each subgraph received.\n# TYPE subgraph_requests_received_total counter\n",
        );
        for (i, name) in NAMES.iter().enumerate() {
            out.push_str(&format!(
                "subgraph_requests_received_total{{subgraph=\"{name}\"}} {}\n",
                self.0[i].load(Ordering::Relaxed)
            ));
        }
        out
    }
}

#[derive(Clone)]
struct Shared {
    counters: Arc<Counters>,
    delay: Option<Duration>,
}

async fn count_and_delay(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if req.method() == axum::http::Method::POST {
        if let Some(i) = NAMES.iter().position(|n| {
            path.strip_prefix('/').and_then(|p| p.strip_prefix(n)) == Some("/graphql")
        }) {
            s.counters.0[i].fetch_add(1, Ordering::Relaxed);
        }
        if let Some(d) = s.delay {
            tokio::time::sleep(d).await;
        }
    }
    next.run(req).await
}

/// The four subgraphs and `/metrics`.
pub fn router(
    config: &FederationConfig,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
) -> Router {
    let metrics = counters.clone();
    Router::new()
        .nest("/accounts", graphql_router(accounts::schema(), shutdown.clone(), MAX_BODY_BYTES))
        .nest("/products", graphql_router(products::schema(), shutdown.clone(), MAX_BODY_BYTES))
        .nest("/inventory", graphql_router(inventory::schema(), shutdown.clone(), MAX_BODY_BYTES))
        .nest("/reviews", graphql_router(reviews::schema(), shutdown, MAX_BODY_BYTES))
        .route(
            "/metrics",
            get(move || {
                let text = metrics.exposition();
                async move { ([("content-type", "text/plain; version=0.0.4")], text).into_response() }
            }),
        )
        .layer(middleware::from_fn_with_state(
            Shared {
                counters,
                delay: (config.delay_ms > 0).then(|| Duration::from_millis(config.delay_ms)),
            },
            count_and_delay,
        ))
}

/// The running subgraphs and their request counters.
pub struct RunningFederation {
    pub service: RunningService,
    pub counters: Arc<Counters>,
}

impl RunningFederation {
    /// `http://ADDR/NAME/graphql`
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}/graphql", self.service.addr)
    }
}

/// Starts the four subgraphs on `listener`.
pub async fn start_counted(
    config: FederationConfig,
    listener: TcpListener,
) -> ServiceResult<RunningFederation> {
    let counters = Arc::new(Counters::default());
    let shutdown = CancellationToken::new();
    let router = router(&config, counters.clone(), shutdown.clone());
    let http = crate::common::HttpConfig::default();
    let service = spawn_service(
        listener,
        router,
        shutdown,
        TaskTracker::new(),
        &http.connections,
    )?;
    Ok(RunningFederation { service, counters })
}

/// Starts the four subgraphs on `listener` (the binary's entry).
pub async fn start(
    config: FederationConfig,
    listener: TcpListener,
) -> ServiceResult<RunningService> {
    Ok(start_counted(config, listener).await?.service)
}

impl crate::common::cli::ServiceConfig for FederationConfig {
    const NAME: &'static str = "federation";

    fn listen(&self) -> &str {
        &self.listen
    }

    fn listen_mut(&mut self) -> &mut String {
        &mut self.listen
    }

    fn resolve_paths(&mut self, _: &std::path::Path) {}
}
