//! The HTTP side every subgraph shares: `POST`/`GET /graphql`, WebSocket
//! subscriptions on the same path (both subprotocols), GraphiQL, `/health`.
//!
//! Connections go through the shared `serve` loop (cap, client timeouts);
//! `stop()` closes every open one, keep-alive and WebSocket alike.

use std::net::SocketAddr;

use async_graphql::{http::GraphiQLSource, ObjectType, Schema, SubscriptionType};
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::{
    extract::{FromRequest, FromRequestParts, Request, State, WebSocketUpgrade},
    http::{header, HeaderMap, StatusCode},
    response::{Html, IntoResponse, Response},
    routing::get,
    Json, Router,
};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;

/// `[services.NAME.http]`: what one client may send or hold.
#[derive(serde::Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Largest GraphQL request body, in bytes (larger: 413).
    pub max_body_bytes: usize,
    /// `[services.NAME.http.connections]`: connection cap and client timeouts.
    pub connections: serve::ConnectionLimits,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body_bytes: 2 * 1024 * 1024,
            connections: serve::ConnectionLimits::default(),
        }
    }
}

/// A service started in-process; dropping it does not stop it, `stop()` does.
pub struct RunningService {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    accept: JoinHandle<()>,
}

impl RunningService {
    /// `http://ADDR/graphql`
    pub fn url(&self) -> String {
        format!("http://{}/graphql", self.addr)
    }

    /// `ws://ADDR/graphql`
    pub fn ws_url(&self) -> String {
        format!("ws://{}/graphql", self.addr)
    }

    /// The token background work of this service watches; cancelled by `stop()`.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, closes every connection, and waits for background tasks.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.accept.await;
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Waits until the service stops (a signal, or `stop()` elsewhere).
    pub async fn wait(self) {
        self.shutdown.cancelled().await;
        self.stop().await;
    }
}

struct AppState<Q, M, S> {
    schema: Schema<Q, M, S>,
    shutdown: CancellationToken,
    metrics: std::sync::Arc<ServiceMetrics>,
}

/// A service's `/metrics`: its GraphQL requests (benchmarks count a
/// gateway's subgraph calls where they land), their latency and errors,
/// process metrics and build info.
struct ServiceMetrics {
    registry: telemetry::metrics::Registry,
    received: telemetry::metrics::IntCounter,
    errors: telemetry::metrics::IntCounter,
    latency: telemetry::metrics::Histogram,
}

impl Default for ServiceMetrics {
    fn default() -> Self {
        use telemetry::metrics::{counter, latency_vec, registry};
        let r = registry("service");
        ServiceMetrics {
            received: counter(
                &r,
                "graphql_requests_received_total",
                "GraphQL requests over HTTP received.",
            ),
            errors: counter(
                &r,
                "graphql_responses_with_errors_total",
                "GraphQL responses over HTTP that carried errors.",
            ),
            latency: latency_vec(
                &r,
                "graphql_request_duration_seconds",
                "Time to answer a GraphQL request over HTTP.",
                &[],
            )
            .with_label_values::<&str>(&[]),
            registry: r,
        }
    }
}

impl<Q, M, S> Clone for AppState<Q, M, S> {
    fn clone(&self) -> Self {
        AppState {
            schema: self.schema.clone(),
            shutdown: self.shutdown.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// The router of one subgraph over its async-graphql schema; GraphQL
/// bodies over `max_body_bytes` are refused (413) before they are read.
pub fn graphql_router<Q, M, S>(
    schema: Schema<Q, M, S>,
    shutdown: CancellationToken,
    max_body_bytes: usize,
) -> Router
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    Router::new()
        .route(
            "/graphql",
            get(graphql_get::<Q, M, S>)
                .post(graphql_post::<Q, M, S>)
                .layer(tower_http::limit::RequestBodyLimitLayer::new(
                    max_body_bytes,
                )),
        )
        .route(
            "/health",
            get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route("/metrics", get(metrics::<Q, M, S>))
        .with_state(AppState {
            schema,
            shutdown,
            metrics: Default::default(),
        })
}

async fn metrics<Q, M, S>(State(state): State<AppState<Q, M, S>>) -> Response
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    (
        [(header::CONTENT_TYPE, telemetry::metrics::CONTENT_TYPE)],
        telemetry::metrics::render(&[&state.metrics.registry]),
    )
        .into_response()
}

async fn graphql_post<Q, M, S>(
    State(state): State<AppState<Q, M, S>>,
    headers: HeaderMap,
    req: Result<GraphQLRequest, async_graphql_axum::rejection::GraphQLRejection>,
) -> Response
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    let req = match req {
        Ok(r) => r,
        Err(rejection) => return unreadable(rejection),
    };
    state.metrics.received.inc();
    let token = headers
        .get(super::SERVICE_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let groups = super::rbac::CallerGroups::from_header(
        headers
            .get(super::rbac::GROUPS_HEADER)
            .and_then(|v| v.to_str().ok()),
    );
    let request = req
        .into_inner()
        .data(super::CallerToken(token))
        .data(groups);
    // Continues the caller's trace (the gateway's subgraph span).
    let span = tracing::debug_span!(
        "graphql.request",
        otel.kind = "server",
        otel.name = "POST /graphql"
    );
    telemetry::continue_trace(&span, &headers);
    let started = std::time::Instant::now();
    let response = state.schema.execute(request).instrument(span).await;
    state
        .metrics
        .latency
        .observe(started.elapsed().as_secs_f64());
    if response.is_err() {
        state.metrics.errors.inc();
    }
    GraphQLResponse::from(response).into_response()
}

/// A body over the limit is 413 and one that stalled 408, not a 400 that
/// hides which limit fired.
fn unreadable(rejection: async_graphql_axum::rejection::GraphQLRejection) -> Response {
    if let async_graphql::ParseRequestError::Io(e) = &rejection.0 {
        let mut cause = e.get_ref().map(|c| c as &(dyn std::error::Error + 'static));
        while let Some(c) = cause {
            // async-graphql keeps only the text of the body's error.
            if c.is::<http_body_util::LengthLimitError>()
                || c.to_string() == "length limit exceeded"
            {
                return (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the request body is larger than this service accepts (`max_body_bytes`)",
                )
                    .into_response();
            }
            if c.is::<serve::BodyStalled>() {
                return (StatusCode::REQUEST_TIMEOUT, c.to_string()).into_response();
            }
            cause = c.source();
        }
    }
    rejection.into_response()
}

async fn graphql_get<Q, M, S>(State(state): State<AppState<Q, M, S>>, req: Request) -> Response
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    let headers = req.headers();
    if is_websocket(headers) {
        let (mut parts, _) = req.into_parts();
        let protocol = match GraphQLProtocol::from_request_parts(&mut parts, &()).await {
            Ok(p) => p,
            Err(e) => return e.into_response(),
        };
        let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(u) => u,
            Err(e) => return e.into_response(),
        };
        let schema = state.schema.clone();
        let shutdown = state.shutdown.clone();
        // Who subscribes: the upgrade request's identity, as over HTTP.
        let mut data = async_graphql::Data::default();
        data.insert(super::rbac::CallerGroups::from_header(
            parts
                .headers
                .get(super::rbac::GROUPS_HEADER)
                .and_then(|v| v.to_str().ok()),
        ));
        data.insert(super::CallerToken(
            parts
                .headers
                .get(super::SERVICE_TOKEN_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        ));
        return upgrade
            .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
            .on_upgrade(move |socket| async move {
                tokio::select! {
                    _ = GraphQLWebSocket::new(socket, schema, protocol).with_data(data).serve() => {}
                    _ = shutdown.cancelled() => {}
                }
            })
            .into_response();
    }
    if req.uri().query().is_none() && wants_html(headers) {
        return Html(
            GraphiQLSource::build()
                .endpoint("/graphql")
                .subscription_endpoint("/graphql")
                .finish(),
        )
        .into_response();
    }
    match GraphQLRequest::<async_graphql_axum::rejection::GraphQLRejection>::from_request(req, &())
        .await
    {
        Ok(request) => {
            state.metrics.received.inc();
            let request = request.into_inner();
            let is_mutation = request.query.trim_start().starts_with("mutation");
            if is_mutation {
                return (
                    StatusCode::METHOD_NOT_ALLOWED,
                    "mutations must be sent with POST",
                )
                    .into_response();
            }
            GraphQLResponse::from(state.schema.execute(request).await).into_response()
        }
        Err(e) => e.into_response(),
    }
}

fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// Serves `router` on `listener` until `shutdown` is cancelled; then every
/// connection is closed at once (tests that take a subgraph down must see
/// it really go away) and tracked tasks are awaited by `RunningService::stop`.
pub fn spawn_service(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    connections: &serve::ConnectionLimits,
) -> std::io::Result<RunningService> {
    let serving = serve::Serving {
        shutdown: shutdown.clone(),
        tasks: tasks.clone(),
        grace: std::time::Duration::ZERO,
        stats: Default::default(),
    };
    let (addr, accept) = serve::spawn(listener, router, connections, &serving)?;
    Ok(RunningService {
        addr,
        shutdown,
        tasks,
        accept,
    })
}

/// Resolves on Ctrl-C or SIGTERM: what the binaries wait for.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
