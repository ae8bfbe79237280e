//! GraphQL over HTTP: `POST`/`GET /graphql` with `application/json` and
//! `application/graphql-response+json`, GraphiQL for browsers, `/health`,
//! `/metrics`. WebSocket upgrades on `/graphql` go to `ws`.

use std::{sync::Arc, time::Instant};

use axum::{
    extract::{FromRequestParts, Query, Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use stitching::{
    authorization::Grants,
    execute::{error, Response as GqlResponse},
    RequestError,
};
use tower_http::catch_panic::CatchPanicLayer;

use crate::{
    engine::{GraphQLRequest, Outcome},
    metrics::RequestStatus,
    AppState,
};

pub fn router(state: Arc<AppState>) -> Router {
    let counters = state.metrics.clone();
    // Read at start: the layer is part of the router.
    let cors = state
        .engine()
        .config
        .config
        .gateway
        .cors
        .layer(&[REQUEST_ID]);
    let router = Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .merge(crate::graphiql::routes())
        .with_state(state)
        // A bug in one request answers that request with a 500 instead of
        // dropping the client's connection (and its other requests).
        .layer(CatchPanicLayer::custom(move |panic| {
            counters.internal_errors.inc();
            internal_error(panic)
        }))
        .layer(axum::middleware::from_fn(request_id));
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// Whether a browser would have had to ask first (a preflight) before
/// sending this request cross-site: a non-simple `Content-Type`, or one
/// of the configured headers.
fn preflighted(headers: &HeaderMap, required: &[String]) -> bool {
    let simple = matches!(
        crate::engine::media_type(headers).as_deref(),
        None | Some("text/plain" | "application/x-www-form-urlencoded" | "multipart/form-data")
    );
    !simple || required.iter().any(|h| headers.contains_key(h.as_str()))
}

fn csrf_refusal(required: &[String]) -> Response {
    http_error(
        StatusCode::BAD_REQUEST,
        "CSRF_PREVENTION",
        format!(
            "refused as a possible cross-site request forgery: a GET needs a `Content-Type` other than a form's, or one of the headers {} (any value)",
            required
                .iter()
                .map(|h| format!("`{h}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
}

pub(crate) const REQUEST_ID: &str = "x-request-id";

/// `[gateway.jwt]`: verifies the request's token and sets the headers made
/// from its claims; a bad token, or none where one is required, is a 401.
/// What the caller may see comes from the token.
async fn authenticate(engine: &crate::Engine, headers: &mut HeaderMap) -> Result<Grants, Response> {
    let Some(auth) = &engine.auth else {
        return Ok(Grants::default());
    };
    match auth.identify(headers, None).await {
        Ok(identity) => {
            auth.apply(identity.as_ref(), headers);
            Ok(engine.grants(identity.as_ref()))
        }
        Err(e) => {
            let mut resp = http_error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", e.message());
            let challenge = match e {
                crate::auth::AuthError::Missing(_) => "Bearer",
                crate::auth::AuthError::Invalid(_) => "Bearer error=\"invalid_token\"",
            };
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
            Err(resp)
        }
    }
}

/// A random (v4) UUID from a thread-local generator: an id names a request
/// in logs and needs no secrecy, and `Uuid::new_v4` asks the kernel
/// (`getrandom`) for every one, a system call per request.
fn new_request_id() -> String {
    uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes())
        .into_uuid()
        .simple()
        .to_string()
}

/// Takes the client's `x-request-id` when it is a sane one (printable, at
/// most 128 bytes), else makes one; every log line of the request carries
/// it (a span), and so does the answer.
async fn request_id(mut req: Request, next: axum::middleware::Next) -> Response {
    use tracing::Instrument;
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(new_request_id);
    // Handlers and the engine read it from the headers too (WebSocket
    // upgrades keep their request's headers).
    if let Ok(v) = HeaderValue::from_str(&id) {
        req.headers_mut().insert(REQUEST_ID, v);
    }
    // The server span of the request's trace (continuing the client's).
    // Its trace fields are written only when spans are exported: the log
    // lines need just the id.
    let span = tracing::info_span!(
        "request",
        id = %id,
        otel.kind = "server",
        otel.name = tracing::field::Empty,
        http.request.method = tracing::field::Empty,
        url.path = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    let exporting = telemetry::exporting();
    if exporting {
        span.record(
            "otel.name",
            tracing::field::display(format_args!("{} {}", req.method(), req.uri().path())),
        );
        span.record("http.request.method", tracing::field::display(req.method()));
        span.record("url.path", req.uri().path());
        telemetry::continue_trace(&span, req.headers());
    }
    let mut resp = next.run(req).instrument(span.clone()).await;
    if exporting {
        span.record("http.response.status_code", resp.status().as_u16());
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp
}

/// What the gateway answers while its schema is being built: live, not
/// ready, and every GraphQL request a 503 that says so.
pub fn starting_router() -> Router {
    let starting = || {
        let mut resp = http_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "GATEWAY_STARTING",
            "the gateway is starting: its schema is not built yet; retry shortly",
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        resp
    };
    Router::new()
        .route(
            "/health",
            get(|| async { axum::Json(serde_json::json!({ "status": "starting" })) }),
        )
        .route(
            "/ready",
            get(|| async {
                let body = serde_json::json!({ "status": "starting", "subgraphs": {} });
                (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body))
            }),
        )
        .fallback(move || async move { starting() })
        .layer(axum::middleware::from_fn(request_id))
}

/// The answer to a request whose handler panicked: the panic is logged, the
/// client gets a GraphQL error without the gateway's internals.
fn internal_error(panic: Box<dyn std::any::Any + Send>) -> Response {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a non-string panic");
    tracing::error!(panic = what, "a request handler panicked");
    http_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL_SERVER_ERROR",
        "internal server error: the gateway failed on this request and logged why",
    )
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    let engine = state.engine();
    let body = serde_json::json!({
        "status": "ok",
        "subgraphs": engine.clients.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
    });
    axum::Json(body).into_response()
}

/// Readiness: 503 while a subgraph has failed every request for longer than
/// `ready_unreachable_secs` or its breaker is open; each subgraph's state in the body.
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let engine = state.engine();
    let now = Instant::now();
    let patience =
        std::time::Duration::from_secs(engine.config.config.gateway.ready_unreachable_secs);
    let mut ready = true;
    let subgraphs: serde_json::Map<String, serde_json::Value> = engine
        .clients
        .iter()
        .map(|c| {
            let health = &c.policy.health;
            let breaker = health.breaker.state();
            let down = health.unreachable_for(now);
            let failing = down.is_some_and(|d| d >= patience);
            let status = if breaker == crate::resilience::BreakerState::Open || failing {
                ready = false;
                "unavailable"
            } else if down.is_some() {
                "degraded"
            } else {
                "ok"
            };
            let body = serde_json::json!({
                "status": status,
                "breaker": breaker.as_str(),
                "failing_for_ms": down.map(|d| d.as_millis() as u64),
            });
            (c.name.clone(), body)
        })
        .collect();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "unavailable" },
        "subgraphs": subgraphs,
    });
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, telemetry::metrics::CONTENT_TYPE)],
        state.metrics.render(&state.engine(), &state.subscriptions),
    )
        .into_response()
}

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// Which media type the client accepts; `graphql-response+json` changes status codes.
fn wants_graphql_response(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(GRAPHQL_RESPONSE))
}

/// A 4xx answer for a request that is not GraphQL at all (bad body, wrong type).
fn http_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = GqlResponse::from_errors(vec![error(message, code)]);
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// A finished answer to a GraphQL request, cheap to clone so identical
/// client requests in flight can share it (`dedupe_client_requests`).
#[derive(Clone)]
pub struct Answer {
    status: StatusCode,
    content_type: &'static str,
    body: bytes::Bytes,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let ctype = [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        )];
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            let allow = (header::ALLOW, HeaderValue::from_static("POST"));
            return (self.status, ctype, [allow], self.body).into_response();
        }
        (self.status, ctype, self.body).into_response()
    }
}

fn respond(outcome: Outcome, graphql_response: bool, state: &AppState, start: Instant) -> Response {
    answer(outcome, graphql_response, state, start).into_response()
}

fn answer(outcome: Outcome, graphql_response: bool, state: &AppState, start: Instant) -> Answer {
    // A mutation over GET is refused with 405, as GraphQL over HTTP says.
    let not_allowed = matches!(&outcome, Outcome::Refused(RequestError::MutationOverGet));
    let (body, refused, operation) = match outcome {
        Outcome::Refused(e) => (GqlResponse::from_errors(e.to_graphql_errors()), true, None),
        Outcome::Executed(r, op) => (r, false, Some(op)),
    };
    // Past its deadline: 504 with the data complete by then.
    let late = body
        .errors
        .iter()
        .any(|e| e.extensions.get("code").and_then(|c| c.as_str()) == Some("GATEWAY_TIMEOUT"));
    let status = if refused {
        RequestStatus::Refused
    } else if body.errors.is_empty() {
        RequestStatus::Ok
    } else {
        RequestStatus::Errors
    };
    state.metrics.request(operation, status, start.elapsed());
    let bytes = match body.into_json() {
        Ok(b) => b,
        Err(e) => {
            let body =
                GqlResponse::from_errors(vec![error(e.to_string(), "INTERNAL_SERVER_ERROR")]);
            return Answer {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                content_type: "application/json",
                body: serde_json::to_vec(&body).unwrap_or_default().into(),
            };
        }
    };
    let (status, ctype) = if graphql_response {
        let status = if refused {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        };
        (status, GRAPHQL_RESPONSE)
    } else {
        (StatusCode::OK, "application/json")
    };
    Answer {
        status: if not_allowed {
            StatusCode::METHOD_NOT_ALLOWED
        } else if late {
            StatusCode::GATEWAY_TIMEOUT
        } else {
            status
        },
        content_type: ctype,
        body: bytes.into(),
    }
}

async fn graphql_post(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let start = Instant::now();
    let (mut parts, body) = req.into_parts();
    let ctype = crate::engine::media_type(&parts.headers).unwrap_or_default();
    if ctype != "application/json" && ctype != GRAPHQL_RESPONSE {
        return http_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            format!("POST /graphql takes `Content-Type: application/json`, not `{ctype}`"),
        );
    }
    if let Some(len) = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > state.max_body_bytes {
            return too_large(state.max_body_bytes);
        }
    }
    // The request keeps this engine to the end, whatever a reload does meanwhile.
    let engine = state.engine();
    let grants = match authenticate(&engine, &mut parts.headers).await {
        Ok(g) => g,
        Err(refused) => return refused,
    };
    let bytes = match axum::body::to_bytes(body, state.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return unreadable_body(&e, state.max_body_bytes),
    };
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return http_error(
            StatusCode::BAD_REQUEST,
            "BATCHING_NOT_SUPPORTED",
            "the body is a JSON array: batched requests are not supported; send one {\"query\": ...} object per request",
        );
    }
    let mut request: GraphQLRequest = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => {
            return http_error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                format!("the body is not a GraphQL request: {e}; expected JSON like {{\"query\": \"{{ ... }}\", \"variables\": {{}}}}"),
            )
        }
    };
    let graphql_response = wants_graphql_response(&parts.headers);
    if let Err(refusal) = state.documents(&mut request) {
        return persisted_refusal(&refusal, graphql_response);
    }
    if let Some(framing) = crate::streamed::wanted(&parts.headers) {
        return crate::streamed::respond(&state, request, parts.headers, grants, framing);
    }
    if let Some(inbound) = state
        .inbound
        .as_ref()
        .filter(|_| is_query(&engine, &request))
    {
        let key = client_request_key(&bytes, &parts.headers);
        let shared = state.clone();
        let headers = parts.headers;
        let work: futures::future::BoxFuture<'static, Answer> = Box::pin(async move {
            let outcome = engine.execute(&request, &headers, &grants, true).await;
            answer(outcome, graphql_response, &shared, start)
        });
        let (answer, joined) = inbound.run(key, work).await;
        if joined {
            state.metrics.dedup_hits.inc();
        }
        return answer.into_response();
    }
    let outcome = engine
        .execute(&request, &parts.headers, &grants, true)
        .await;
    respond(outcome, graphql_response, &state, start)
}

/// Only queries are shared between identical client requests: a mutation
/// sent twice is two effects.
fn is_query(engine: &crate::Engine, request: &GraphQLRequest) -> bool {
    let Some(query) = request.query.as_deref() else {
        return false;
    };
    engine
        .prepare(query, request.operation_name.as_deref())
        .is_ok_and(|p| p.operation().operation_type == apollo_compiler::ast::OperationType::Query)
}

/// Two client requests are the same when their bodies and headers are
/// (but for headers that name the request itself, like `x-request-id`).
fn client_request_key(body: &[u8], headers: &HeaderMap) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = vec![body];
    for (k, v) in headers {
        if matches!(
            k.as_str(),
            "x-request-id" | "traceparent" | "tracestate" | "content-length"
        ) {
            continue;
        }
        parts.push(k.as_str().as_bytes());
        parts.push(v.as_bytes());
    }
    crate::upstream::key(parts)
}

/// A body that was too large, stalled (`body_read_timeout_ms`) or broke off.
fn unreadable_body(e: &axum::Error, max: usize) -> Response {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<http_body_util::LengthLimitError>() {
            return too_large(max);
        }
        if c.is::<serve::BodyStalled>() {
            return http_error(
                StatusCode::REQUEST_TIMEOUT,
                "REQUEST_TIMEOUT",
                c.to_string(),
            );
        }
        cause = c.source();
    }
    http_error(
        StatusCode::BAD_REQUEST,
        "BAD_REQUEST",
        format!("the request body could not be read: {e}"),
    )
}

/// A GET parameter holding JSON (`variables`, `extensions`); absent or
/// empty: `None`; malformed: why.
fn json_param<T: serde::de::DeserializeOwned>(
    params: &std::collections::HashMap<String, String>,
    name: &str,
    what: &str,
) -> Result<Option<T>, String> {
    match params.get(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => serde_json::from_str(v)
            .map(Some)
            .map_err(|e| format!("`{name}` is not {what}: {e}")),
    }
}

/// A persisted-query refusal: an unknown hash is 200 (clients then send
/// the text); the others are request errors.
fn persisted_refusal(refusal: &crate::persisted::Refusal, graphql_response: bool) -> Response {
    let status = match refusal {
        crate::persisted::Refusal::NotFound => StatusCode::OK,
        _ => StatusCode::BAD_REQUEST,
    };
    let mut resp = http_error(status, refusal.code(), refusal.message());
    if graphql_response {
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(GRAPHQL_RESPONSE),
        );
    }
    resp
}

fn too_large(max: usize) -> Response {
    http_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        format!("the request body is larger than {max} bytes, the most this gateway accepts"),
    )
}

async fn graphql_get(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let mut headers = req.headers().clone();
    let is_upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if is_upgrade {
        let (mut parts, _) = req.into_parts();
        return match axum::extract::ws::WebSocketUpgrade::from_request_parts(&mut parts, &()).await
        {
            Ok(upgrade) => crate::ws::upgrade(state, upgrade, &parts.headers),
            Err(e) => e.into_response(),
        };
    }
    let (mut parts, _) = req.into_parts();
    let params: Query<std::collections::HashMap<String, String>> =
        match Query::from_request_parts(&mut parts, &()).await {
            Ok(q) => q,
            Err(e) => return http_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", e.body_text()),
        };
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if wants_html && !params.contains_key("query") {
        return crate::graphiql::page().into_response();
    }
    let engine = state.engine();
    let csrf = &engine.config.config.gateway.csrf;
    if csrf.enabled && !preflighted(&headers, &csrf.required_headers) {
        return csrf_refusal(&csrf.required_headers);
    }
    let grants = match authenticate(&engine, &mut headers).await {
        Ok(g) => g,
        Err(refused) => return refused,
    };
    let start = Instant::now();
    let variables = match json_param(&params, "variables", "a JSON object") {
        Ok(v) => v,
        Err(why) => return http_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", why),
    };
    let extensions = match json_param(&params, "extensions", "JSON") {
        Ok(v) => v,
        Err(why) => return http_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", why),
    };
    let mut request = GraphQLRequest {
        query: params.get("query").cloned().filter(|q| !q.is_empty()),
        operation_name: params
            .get("operationName")
            .cloned()
            .filter(|s| !s.is_empty()),
        variables,
        extensions,
        document_id: params.get("documentId").cloned().filter(|s| !s.is_empty()),
    };
    if let Err(refusal) = state.documents(&mut request) {
        return persisted_refusal(&refusal, wants_graphql_response(&headers));
    }
    let outcome = engine.execute(&request, &headers, &grants, false).await;
    // A mutation over GET is refused with 405, as GraphQL over HTTP says.
    respond(outcome, wants_graphql_response(&headers), &state, start)
}

#[cfg(test)]
mod tests {
    #[test]
    fn made_request_ids_are_distinct_v4_uuids() {
        let ids: Vec<String> = (0..1000).map(|_| super::new_request_id()).collect();
        for id in &ids {
            let parsed = uuid::Uuid::parse_str(id).expect("a UUID");
            assert_eq!(parsed.get_version_num(), 4, "{id}");
            assert_eq!(id.len(), 32, "{id}");
        }
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }
}
