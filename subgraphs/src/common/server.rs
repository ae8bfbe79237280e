//! The HTTP side every subgraph shares: `POST`/`GET /graphql`, WebSocket
//! subscriptions on the same path (both subprotocols), GraphiQL, `/health`.
//!
//! We run our own accept loop instead of `axum::serve` so that `stop()` closes
//! every open connection, keep-alive and WebSocket alike: tests that take a
//! subgraph down must see it really go away.

use std::{convert::Infallible, net::SocketAddr};

use async_graphql::{http::GraphiQLSource, ObjectType, Schema, SubscriptionType};
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::{
    extract::{FromRequest, FromRequestParts, Request, State, WebSocketUpgrade},
    http::{header, HeaderMap, StatusCode},
    response::{Html, IntoResponse, Response},
    routing::get,
    Json, Router,
};
use hyper_util_compat::serve_connection;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

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
    /// GraphQL requests received (`/metrics`): benchmarks count a gateway's
    /// subgraph calls where they land.
    received: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<Q, M, S> Clone for AppState<Q, M, S> {
    fn clone(&self) -> Self {
        AppState {
            schema: self.schema.clone(),
            shutdown: self.shutdown.clone(),
            received: self.received.clone(),
        }
    }
}

/// The router of one subgraph over its async-graphql schema.
pub fn graphql_router<Q, M, S>(schema: Schema<Q, M, S>, shutdown: CancellationToken) -> Router
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    Router::new()
        .route(
            "/graphql",
            get(graphql_get::<Q, M, S>).post(graphql_post::<Q, M, S>),
        )
        .route(
            "/health",
            get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route("/metrics", get(metrics::<Q, M, S>))
        .with_state(AppState {
            schema,
            shutdown,
            received: Default::default(),
        })
}

async fn metrics<Q, M, S>(State(state): State<AppState<Q, M, S>>) -> Response
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    let n = state.received.load(std::sync::atomic::Ordering::Relaxed);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        format!("# HELP graphql_requests_received_total GraphQL requests over HTTP received.\n# TYPE graphql_requests_received_total counter\ngraphql_requests_received_total {n}\n"),
    )
        .into_response()
}

async fn graphql_post<Q, M, S>(
    State(state): State<AppState<Q, M, S>>,
    req: GraphQLRequest,
) -> GraphQLResponse
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    state
        .received
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    state.schema.execute(req.into_inner()).await.into()
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
        return upgrade
            .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
            .on_upgrade(move |socket| async move {
                tokio::select! {
                    _ = GraphQLWebSocket::new(socket, schema, protocol).serve() => {}
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
            state
                .received
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
/// connection is closed and tracked tasks are awaited by `RunningService::stop`.
pub fn spawn_service(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) -> std::io::Result<RunningService> {
    let addr = listener.local_addr()?;
    let accept_token = shutdown.clone();
    let conn_tasks = tasks.clone();
    let accept = tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                _ = accept_token.cancelled() => break,
                r = listener.accept() => match r {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let router = router.clone();
            let token = accept_token.clone();
            conn_tasks.spawn(async move {
                tokio::select! {
                    _ = serve_connection(stream, router) => {}
                    _ = token.cancelled() => {}
                }
            });
        }
    });
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

mod hyper_util_compat {
    //! One HTTP/1.1 connection with upgrades (for WebSocket), served by axum's router.
    use super::*;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tower::ServiceExt;

    pub async fn serve_connection(stream: tokio::net::TcpStream, router: Router) {
        let service =
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let router = router.clone();
                async move {
                    let resp = router
                        .oneshot(req.map(axum::body::Body::new))
                        .await
                        .unwrap_or_else(|e: Infallible| match e {});
                    Ok::<_, Infallible>(resp)
                }
            });
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        if let Err(e) = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .await
        {
            tracing::debug!(error = %e, "connection closed with error");
        }
    }
}
