//! `ratings`: a small GraphQL Composite Schemas source schema. It rates
//! products (entities of the Federation `products` subgraph) and pipeline
//! runs (of the stitching `pipeline` subgraph), and prices shipping from a
//! product's weight that it `@require`s from another subgraph.
//!
//! `POST /graphql` also takes the draft variable batching of GraphQL over
//! HTTP: `variables` as a list (one result per set), or a list of requests,
//! answered as JSON lines with `variableIndex` (and `requestIndex`).

use async_graphql::{
    ComplexObject, EmptyMutation, EmptySubscription, Object, Schema, SimpleObject, Variables, ID,
};
use axum::{
    body::Bytes,
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use serde::Deserialize;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::common::{graphql_router, spawn_service, RunningService, ServiceResult};

/// The source schema with its Composite Schemas directives.
pub const SOURCE_SCHEMA: &str = include_str!("schema.graphql");

/// Stars per product upc, as the products subgraph numbers them.
pub const PRODUCT_RATINGS: [(&str, f64); 7] = [
    ("1", 4.5),
    ("2", 3.8),
    ("3", 4.9),
    ("4", 2.7),
    ("5", 4.1),
    ("6", 3.3),
    ("7", 4.0),
];

/// Shipping in cents: a base of 500 plus 2 per unit of weight.
pub fn shipping_cost(weight: i32) -> i32 {
    500 + 2 * weight
}

/// A run's stars: 1-5, the same for the same id.
pub fn pipeline_rating(id: &str) -> i32 {
    let sum: u32 = id.bytes().map(u32::from).sum();
    (sum % 5 + 1) as i32
}

fn product_rating(upc: &str) -> Option<f64> {
    PRODUCT_RATINGS.iter().find(|(u, _)| *u == upc).map(|r| r.1)
}

#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Product {
    upc: String,
    rating: Option<f64>,
}

#[ComplexObject]
impl Product {
    async fn shipping_cost(&self, weight: Option<i32>) -> Option<i32> {
        weight.map(shipping_cost)
    }
}

#[derive(SimpleObject)]
pub struct Pipeline {
    id: ID,
    rating: i32,
}

pub struct Query;

#[Object]
impl Query {
    async fn product_rating(&self, upc: String) -> Option<f64> {
        product_rating(&upc)
    }

    async fn product_by_upc(&self, upc: String) -> Option<Product> {
        let rating = product_rating(&upc);
        Some(Product { upc, rating })
    }

    async fn pipeline_by_id(&self, id: ID) -> Option<Pipeline> {
        let rating = pipeline_rating(&id);
        Some(Pipeline { id, rating })
    }
}

pub type RatingsSchema = Schema<Query, EmptyMutation, EmptySubscription>;

pub fn schema() -> RatingsSchema {
    Schema::build(Query, EmptyMutation, EmptySubscription).finish()
}

/// `[services.ratings]` in config.toml.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct RatingsConfig {
    #[serde(default = "defaults::listen")]
    pub listen: String,
}

mod defaults {
    pub fn listen() -> String {
        "127.0.0.1:4030".into()
    }
}

/// One request of a batch: its query and one or several variable sets.
#[derive(Deserialize)]
struct BatchedRequest {
    query: String,
    #[serde(default, rename = "operationName")]
    operation_name: Option<String>,
    #[serde(default)]
    variables: Option<Value>,
}

async fn run_one(
    schema: &RatingsSchema,
    req: &BatchedRequest,
    variables: Option<Value>,
) -> async_graphql::Response {
    let mut r = async_graphql::Request::new(req.query.clone());
    if let Some(name) = &req.operation_name {
        r = r.operation_name(name);
    }
    if let Some(v) = variables {
        r = r.variables(Variables::from_json(v));
    }
    schema.execute(r).await
}

/// Lines for one request: one per variable set (`variableIndex`).
async fn run_sets(
    schema: &RatingsSchema,
    req: BatchedRequest,
    request_index: Option<usize>,
    out: &mut String,
) {
    let sets: Vec<Option<Value>> = match &req.variables {
        Some(Value::Array(list)) => list.iter().cloned().map(Some).collect(),
        other => vec![other.clone()],
    };
    let listed = matches!(req.variables, Some(Value::Array(_)));
    for (i, vars) in sets.into_iter().enumerate() {
        let resp = run_one(schema, &req, vars).await;
        let mut line = serde_json::to_value(&resp).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut line {
            if listed {
                m.insert("variableIndex".into(), i.into());
            }
            if let Some(r) = request_index {
                m.insert("requestIndex".into(), r.into());
            }
        }
        out.push_str(&line.to_string());
        out.push('\n');
    }
}

/// Batched requests (a list body, or a list of variable sets) as JSON
/// lines; anything else goes to the plain GraphQL handler.
async fn batched(State(schema): State<RatingsSchema>, body: Bytes) -> Response {
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("the body is not JSON: {e}"),
            )
                .into_response()
        }
    };
    let requests: Vec<(Option<usize>, Value)> = match value {
        Value::Array(list) => list
            .into_iter()
            .enumerate()
            .map(|(i, r)| (Some(i), r))
            .collect(),
        single => vec![(None, single)],
    };
    let mut out = String::new();
    for (index, r) in requests {
        match serde_json::from_value::<BatchedRequest>(r) {
            Ok(req) => run_sets(&schema, req, index, &mut out).await,
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("not a GraphQL request: {e}"),
                )
                    .into_response()
            }
        }
    }
    ([(header::CONTENT_TYPE, "application/jsonl")], out).into_response()
}

/// Whether a body asks for batching: a list, or a list of variable sets.
fn is_batched(body: &[u8]) -> bool {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        return true;
    }
    serde_json::from_slice::<Value>(body)
        .ok()
        .is_some_and(|v| v.get("variables").is_some_and(Value::is_array))
}

/// Requests answered plainly and as batches, for `/metrics`.
#[derive(Default)]
struct Served {
    plain: std::sync::atomic::AtomicU64,
    batched: std::sync::atomic::AtomicU64,
}

/// `/graphql` (plain and batched), `/schema.graphql`, `/metrics`, `/health`.
pub fn router(shutdown: CancellationToken) -> Router {
    let schema = schema();
    let served = std::sync::Arc::new(Served::default());
    let metrics = served.clone();
    let http = crate::common::HttpConfig::default();
    let plain = graphql_router(schema.clone(), shutdown, http.max_body_bytes);
    let batch = Router::new()
        .route("/graphql", axum::routing::post(batched))
        .with_state(schema);
    Router::new()
        .route(
            "/metrics",
            get(move || {
                use std::sync::atomic::Ordering::Relaxed;
                let text = format!(
                    "# HELP ratings_requests_total GraphQL requests, plain or batched (variable or request batching).\n# TYPE ratings_requests_total counter\nratings_requests_total{{mode=\"plain\"}} {}\nratings_requests_total{{mode=\"batched\"}} {}\n",
                    metrics.plain.load(Relaxed),
                    metrics.batched.load(Relaxed)
                );
                async move { text }
            }),
        )
        .route(
            "/schema.graphql",
            get(|| async { ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], SOURCE_SCHEMA) }),
        )
        .fallback_service(tower::service_fn(move |req: axum::extract::Request| {
            let plain = plain.clone();
            let batch = batch.clone();
            let served = served.clone();
            async move {
                use tower::ServiceExt;
                let (parts, body) = req.into_parts();
                let bytes = axum::body::to_bytes(body, 2 * 1024 * 1024)
                    .await
                    .unwrap_or_default();
                let batched = parts.method == axum::http::Method::POST && is_batched(&bytes);
                if parts.method == axum::http::Method::POST {
                    let counter = if batched { &served.batched } else { &served.plain };
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                let req = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
                let router = if batched { batch } else { plain };
                router.oneshot(req).await
            }
        }))
}

/// Starts the service on `listener`.
pub async fn start(_config: RatingsConfig, listener: TcpListener) -> ServiceResult<RunningService> {
    let shutdown = CancellationToken::new();
    Ok(spawn_service(
        listener,
        router(shutdown.clone()),
        shutdown,
        TaskTracker::new(),
        &crate::common::HttpConfig::default().connections,
    )?)
}

impl crate::common::cli::ServiceConfig for RatingsConfig {
    const NAME: &'static str = "ratings";

    fn listen(&self) -> &str {
        &self.listen
    }

    fn listen_mut(&mut self) -> &mut String {
        &mut self.listen
    }

    fn resolve_paths(&mut self, _: &std::path::Path) {}
}
