//! One built schema and everything tied to it: the subgraph clients and the
//! plan cache. A config change builds a new `Engine` and swaps it in whole,
//! so requests in flight finish on the old one and cached plans go with it.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use apollo_compiler::{
    ast::OperationType,
    response::{JsonMap, JsonValue},
};
use bytes::Bytes;
use futures::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE};
use stitching::{
    execute::{self, FetchError, Response, SubgraphRequest, Transport},
    schema::introspection::{sdl_from_introspection, INTROSPECTION_QUERY},
    Limits, PreparedOperation, RequestError, SubgraphId, SubgraphSpec, Supergraph,
};

use crate::{
    config::{LoadedConfig, SubgraphConfig},
    error::GatewayError,
    metrics::{Metrics, SubgraphMetrics},
    upstream::{PlainClient, Upstream},
};

/// How requests reach one subgraph.
pub struct SubgraphClient {
    pub name: String,
    /// Parsed once: request building on the hot path does not re-parse it.
    pub url: reqwest::Url,
    pub ws_url: String,
    pub timeout: Duration,
    pub propagate: Vec<HeaderName>,
    pub headers: HeaderMap,
    pub metrics: Arc<SubgraphMetrics>,
    /// For `http://` subgraphs: the pooled client (HTTP/1.1 or h2c), the
    /// parsed URI, and the cap on concurrent requests to its host.
    plain: Option<(PlainClient, hyper::Uri, Arc<tokio::sync::Semaphore>)>,
}

/// Test builds only (feature `fault-injection`): an operation of this name
/// panics where it is prepared, so end-to-end tests can drive what the
/// gateway does about its own bugs (HTTP 500, WebSocket close 4500).
#[cfg(feature = "fault-injection")]
pub const FAULT_OPERATION: &str = "__gatewayPanic";

/// Document hash and operation name.
type PlanKey = (u64, Option<String>);

pub struct Engine {
    pub supergraph: Arc<Supergraph>,
    /// Connections and in-flight work shared with the engines before and after.
    pub upstream: Arc<Upstream>,
    /// Identical subgraph queries in flight go out once.
    pub dedupe: bool,
    pub clients: Vec<SubgraphClient>,
    pub limits: Limits,
    pub config: Arc<LoadedConfig>,
    /// (document hash, operation name) -> (document text, its plan). The
    /// text is compared on a hit: a hash collision must not hand one
    /// client's plan to another document.
    cache: moka::sync::Cache<PlanKey, (Arc<str>, Arc<PreparedOperation>)>,
    /// Seeded per engine, so collisions cannot be prepared offline.
    hasher: ahash::RandomState,
}

/// A client's GraphQL request, from a POST body or GET parameters.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphQLRequest {
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub operation_name: Option<String>,
    #[serde(default)]
    pub variables: Option<JsonMap>,
    #[serde(default)]
    pub extensions: Option<JsonValue>,
}

/// The outcome of one request: refused before execution, or executed.
pub enum Outcome {
    Refused(RequestError),
    Executed(Response),
}

impl Engine {
    /// Loads every subgraph's schema, builds the composed schema and the clients.
    pub async fn build(
        config: Arc<LoadedConfig>,
        http: &reqwest::Client,
        metrics: &Metrics,
        upstream: &Arc<Upstream>,
        introspection_attempts: u32,
    ) -> Result<Engine, GatewayError> {
        let specs = load_specs(&config, http, introspection_attempts).await?;
        let supergraph = stitching::build(&specs)?;
        let mut clients = Vec::new();
        for s in &config.config.subgraphs {
            let mut headers = HeaderMap::new();
            for (k, v) in &s.headers {
                let (Ok(k), Ok(v)) = (
                    HeaderName::from_bytes(k.as_bytes()),
                    HeaderValue::from_str(v),
                ) else {
                    return Err(GatewayError::Config {
                        file: "config".into(),
                        message: format!("subgraph `{}`: header `{k}: {v}` is not valid", s.name),
                    });
                };
                headers.insert(k, v);
            }
            clients.push(SubgraphClient {
                name: s.name.clone(),
                url: reqwest::Url::parse(&s.url).map_err(|e| GatewayError::Config {
                    file: config
                        .path
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| "config".into()),
                    message: format!("subgraph `{}`: url `{}`: {e}", s.name, s.url),
                })?,
                ws_url: s.ws_url(),
                timeout: s.timeout(),
                propagate: s
                    .propagate_headers
                    .iter()
                    .filter_map(|h| HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()).ok())
                    .collect(),
                headers,
                metrics: metrics.subgraph(&s.name),
                plain: s
                    .url
                    .starts_with("http://")
                    .then(|| s.url.parse::<hyper::Uri>().ok())
                    .flatten()
                    .map(|uri| {
                        let host = uri.authority().map(|a| a.as_str()).unwrap_or("");
                        let limit = upstream.host_limit(host);
                        (upstream.client(s.http2), uri, limit)
                    }),
            });
        }
        let g = &config.config.gateway;
        Ok(Engine {
            supergraph: Arc::new(supergraph),
            upstream: upstream.clone(),
            dedupe: g.dedupe_subgraph_requests,
            clients,
            limits: Limits {
                max_depth: g.max_depth,
                max_aliases: g.max_aliases,
                max_root_fields: g.max_root_fields,
                max_tokens: g.max_tokens,
                max_fields: g.max_fields,
                introspection: g.introspection,
            },
            cache: moka::sync::Cache::builder()
                .max_capacity(g.plan_cache_size)
                // A large document holds a large AST: it counts once per
                // 4 KiB, so huge distinct documents cannot pin gigabytes.
                .weigher(|_, (text, _): &(Arc<str>, _)| {
                    u32::try_from(1 + text.len() / 4096).unwrap_or(u32::MAX)
                })
                .build(),
            hasher: ahash::RandomState::new(),
            config,
        })
    }

    /// Parse + validate + plan, cached by document hash and operation name.
    pub fn prepare(
        &self,
        query: &str,
        operation_name: Option<&str>,
    ) -> Result<Arc<PreparedOperation>, RequestError> {
        #[cfg(feature = "fault-injection")]
        if operation_name == Some(FAULT_OPERATION) {
            panic!("fault injection: operation `{FAULT_OPERATION}`");
        }
        let key = (
            self.hasher.hash_one(query),
            operation_name.map(str::to_owned),
        );
        if let Some((text, p)) = self.cache.get(&key) {
            if *text == *query {
                return Ok(p);
            }
        }
        let prepared = Arc::new(stitching::prepare(
            &self.supergraph,
            query,
            operation_name,
            &self.limits,
        )?);
        self.cache.insert(key, (Arc::from(query), prepared.clone()));
        Ok(prepared)
    }

    /// The plan cache's entries and their total weight (one per 4 KiB of document).
    pub fn plan_cache_usage(&self) -> (u64, u64) {
        self.cache.run_pending_tasks();
        (self.cache.entry_count(), self.cache.weighted_size())
    }

    /// Runs a query or mutation.
    pub async fn execute(
        &self,
        http: &reqwest::Client,
        request: &GraphQLRequest,
        headers: &HeaderMap,
        allow_mutation: bool,
    ) -> Outcome {
        let Some(query) = request.query.as_deref() else {
            return Outcome::Refused(RequestError::BadRequest(
                "the request has no `query`: send {\"query\": \"{ ... }\"}".into(),
            ));
        };
        let prepared = match self.prepare(query, request.operation_name.as_deref()) {
            Ok(p) => p,
            Err(e) => return Outcome::Refused(e),
        };
        let op = prepared.operation();
        match op.operation_type {
            apollo_compiler::ast::OperationType::Subscription => {
                return Outcome::Refused(RequestError::SubscriptionOverHttp)
            }
            apollo_compiler::ast::OperationType::Mutation if !allow_mutation => {
                return Outcome::Refused(RequestError::MutationOverGet)
            }
            _ => {}
        }
        let empty = JsonMap::new();
        let variables = match stitching::coerce_variables(
            &self.supergraph,
            &prepared,
            request.variables.as_ref().unwrap_or(&empty),
        ) {
            Ok(v) => v,
            Err(e) => return Outcome::Refused(e),
        };
        let req = execute::Request {
            supergraph: &self.supergraph,
            document: &prepared.document,
            operation: op,
            plan: &prepared.plan,
            variables: &variables,
        };
        let transport = HttpTransport {
            engine: self,
            http,
            headers,
        };
        Outcome::Executed(execute::execute(&req, &transport).await)
    }
}

/// Every subgraph's schema (file, `schema_url`, `_service` or introspection)
/// and stitching SDL, as the composition takes them.
pub async fn load_specs(
    config: &LoadedConfig,
    http: &reqwest::Client,
    introspection_attempts: u32,
) -> Result<Vec<SubgraphSpec>, GatewayError> {
    let mut specs = Vec::new();
    let fetches = config
        .config
        .subgraphs
        .iter()
        .map(|s| load_schema(config, s, http, introspection_attempts));
    let schemas = futures::future::join_all(fetches).await;
    let mut failed: Vec<GatewayError> = Vec::new();
    let mut loaded = Vec::new();
    for (s, schema) in config.config.subgraphs.iter().zip(schemas) {
        match schema {
            Ok(x) => loaded.push((s, x)),
            Err(e) => failed.push(e),
        }
    }
    match failed.len() {
        0 => {}
        1 => return Err(failed.remove(0)),
        _ => return Err(GatewayError::Schemas(failed)),
    }
    for (s, (sdl, origin)) in loaded {
        let mut stitching = Vec::new();
        if let Some(inline) = s.stitching.as_ref().filter(|t| !t.trim().is_empty()) {
            let origin = format!(
                "{} [[subgraphs]] `{}` stitching",
                config
                    .path
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "config".into()),
                s.name
            );
            stitching.push((origin, inline.clone()));
        }
        for f in &s.stitching_files {
            let p = config.resolve(f);
            let text = std::fs::read_to_string(&p).map_err(|e| GatewayError::Config {
                file: p.display().to_string(),
                message: format!("cannot read stitching SDL of subgraph `{}`: {e}", s.name),
            })?;
            stitching.push((p.display().to_string(), text));
        }
        specs.push(SubgraphSpec {
            name: s.name.clone(),
            dialect: s.dialect.into(),
            variable_batching: s.variable_batching,
            schema_sdl: sdl,
            schema_origin: origin,
            stitching,
            hide: s.hide.clone(),
            rename_types: s
                .rename_types
                .iter()
                .map(|(a, b)| (a.clone(), b.clone()))
                .collect(),
        });
    }
    Ok(specs)
}

/// Loads the subgraphs' schemas and composes them, without serving
/// (`gateway check` and `gateway compose`).
pub async fn compose(
    config: &LoadedConfig,
    http: &reqwest::Client,
    introspection_attempts: u32,
) -> Result<Supergraph, GatewayError> {
    let specs = load_specs(config, http, introspection_attempts).await?;
    Ok(stitching::build(&specs)?)
}

/// Sends subgraph requests over pooled keep-alive HTTP connections, with the
/// subgraph's timeout, propagated and configured headers, and metrics.
pub struct HttpTransport<'a> {
    pub engine: &'a Engine,
    pub http: &'a reqwest::Client,
    pub headers: &'a HeaderMap,
}

impl Transport for HttpTransport<'_> {
    fn fetch<'a>(
        &'a self,
        subgraph: SubgraphId,
        request: SubgraphRequest,
    ) -> BoxFuture<'a, Result<Bytes, FetchError>> {
        Box::pin(async move {
            let c = &self.engine.clients[subgraph];
            let body = Bytes::from(
                serde_json::to_vec(&request).map_err(|e| FetchError::Malformed(e.to_string()))?,
            );
            let headers = self.outgoing_headers(c);
            let dedupe = self.engine.dedupe && request.operation == OperationType::Query;
            let key = dedupe.then(|| dedupe_key(c, &headers, &body));
            let work = self.exchange(c, headers, body);
            let Some(key) = key else {
                return work.await;
            };
            let (result, joined) = self.engine.upstream.fetches.run(key, work).await;
            if joined {
                c.metrics
                    .dedup_hits
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            result
        })
    }
}

/// What makes two subgraph requests the same: the subgraph, its URL, every
/// header sent (propagated ones included) and the body.
fn dedupe_key(c: &SubgraphClient, headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = vec![c.name.as_bytes(), c.url.as_str().as_bytes()];
    for (k, v) in headers {
        parts.push(k.as_str().as_bytes());
        parts.push(v.as_bytes());
    }
    parts.push(body);
    crate::upstream::key(parts)
}

impl HttpTransport<'_> {
    /// The headers of a request to `c`: its configured ones over the
    /// client's propagated ones.
    fn outgoing_headers(&self, c: &SubgraphClient) -> HeaderMap {
        let mut h = HeaderMap::with_capacity(4 + c.headers.len());
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(
            ACCEPT,
            HeaderValue::from_static("application/graphql-response+json, application/json"),
        );
        for name in &c.propagate {
            for v in self.headers.get_all(name) {
                h.append(name.clone(), v.clone());
            }
        }
        for (k, v) in &c.headers {
            h.insert(k.clone(), v.clone());
        }
        h
    }

    /// One request to `c`, owning what it needs (callers may share it),
    /// with the subgraph's timeout and metrics.
    fn exchange(
        &self,
        c: &SubgraphClient,
        headers: HeaderMap,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, FetchError>> {
        let metrics = c.metrics.clone();
        let name = c.name.clone();
        let timeout = c.timeout;
        let send: BoxFuture<'static, Result<Bytes, FetchError>> = match &c.plain {
            Some((client, uri, limit)) => Box::pin(send_plain(
                client.clone(),
                uri.clone(),
                limit.clone(),
                headers,
                body,
                timeout,
            )),
            None => {
                let rb = self
                    .http
                    .post(c.url.clone())
                    .headers(headers)
                    .timeout(timeout)
                    .body(body);
                Box::pin(send(rb, timeout))
            }
        };
        Box::pin(async move {
            let start = Instant::now();
            metrics
                .requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let result = send.await;
            metrics.latency.observe(start.elapsed());
            if let Err(e) = &result {
                metrics
                    .errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(subgraph = %name, error = %e, "subgraph request failed");
            }
            result
        })
    }
}

/// A request over the pooled plain client, at most `limit` at once per host.
async fn send_plain(
    client: PlainClient,
    uri: hyper::Uri,
    limit: Arc<tokio::sync::Semaphore>,
    headers: HeaderMap,
    body: Bytes,
    timeout: Duration,
) -> Result<Bytes, FetchError> {
    use http_body_util::BodyExt;
    let exchange = async {
        let _permit = limit
            .acquire_owned()
            .await
            .map_err(|e| FetchError::Unavailable(e.to_string()))?;
        let mut req = hyper::Request::new(http_body_util::Full::new(body));
        *req.method_mut() = hyper::Method::POST;
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        let resp = client
            .request(req)
            .await
            .map_err(|e| FetchError::Unavailable(root_cause(&e)))?;
        let status = resp.status();
        let is_json = is_json(resp.headers());
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| FetchError::Unavailable(root_cause(&e)))?
            .to_bytes();
        accept(status, is_json, body)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| FetchError::Timeout(timeout))?
}

async fn send(rb: reqwest::RequestBuilder, timeout: Duration) -> Result<Bytes, FetchError> {
    let map = |e: reqwest::Error| {
        if e.is_timeout() {
            FetchError::Timeout(timeout)
        } else {
            FetchError::Unavailable(root_cause(&e))
        }
    };
    let resp = rb.send().await.map_err(map)?;
    let status = resp.status();
    let is_json = is_json(resp.headers());
    let body = resp.bytes().await.map_err(map)?;
    accept(status, is_json, body)
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"))
}

/// GraphQL over HTTP answers 4xx with a GraphQL body for request errors: those
/// bodies are used; other failures are the subgraph's.
fn accept(status: reqwest::StatusCode, is_json: bool, body: Bytes) -> Result<Bytes, FetchError> {
    if status.is_success() || (status.is_client_error() && is_json) {
        Ok(body)
    } else {
        Err(FetchError::Status(status.as_u16()))
    }
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        msg = format!("{msg}: {s}");
        cur = s.source();
    }
    msg
}

/// The subgraph's SDL: from its file, or by introspection with retries.
async fn load_schema(
    config: &LoadedConfig,
    s: &SubgraphConfig,
    http: &reqwest::Client,
    attempts: u32,
) -> Result<(String, String), GatewayError> {
    if let Some(f) = &s.schema_file {
        let p = config.resolve(f);
        let text = std::fs::read_to_string(&p).map_err(|e| GatewayError::SubgraphSchema {
            subgraph: s.name.clone(),
            message: format!("cannot read {}: {e}", p.display()),
        })?;
        return Ok((text, p.display().to_string()));
    }
    let mut delay = Duration::from_millis(200);
    let mut last = String::new();
    let origin = match (&s.schema_url, s.dialect) {
        (Some(u), _) => format!("{u} (schema_url)"),
        (None, crate::config::Dialect::Federation) => format!("_service {{ sdl }} of {}", s.url),
        (None, _) => format!("introspection of {}", s.url),
    };
    for attempt in 1..=attempts.max(1) {
        let fetched = match (&s.schema_url, s.dialect) {
            (Some(u), _) => fetch_sdl(s, u, http).await,
            (None, crate::config::Dialect::Federation) => service_sdl(s, http).await,
            (None, _) => introspect(s, http).await,
        };
        match fetched {
            Ok(sdl) => return Ok((sdl, origin)),
            Err(e) => {
                last = e;
                if attempt < attempts {
                    tracing::warn!(subgraph = %s.name, attempt, error = %last, "introspection failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
    Err(GatewayError::SubgraphSchema {
        subgraph: s.name.clone(),
        message: format!(
            "{origin} failed after {attempts} attempts: {last}; start the subgraph, or set `schema_file` so the gateway can start without it"
        ),
    })
}

/// Posts a query to a subgraph with its configured headers; the answer's
/// body, or why there is none (its errors included).
async fn post_query(
    s: &SubgraphConfig,
    http: &reqwest::Client,
    query: &str,
) -> Result<serde_json::Value, String> {
    let mut rb = http
        .post(&s.url)
        .timeout(s.timeout())
        .json(&serde_json::json!({ "query": query }));
    for (k, v) in &s.headers {
        rb = rb.header(k, v);
    }
    let resp = rb.send().await.map_err(|e| root_cause(&e))?;
    let status = resp.status();
    let body: serde_json::Value = resp
        .json()
        .await
        .map_err(|e| format!("HTTP {status}: {e}"))?;
    match body.get("errors") {
        Some(errors) => Err(format!("the subgraph answered errors: {errors}")),
        None => Ok(body),
    }
}

/// A Federation subgraph's SDL with its directives (introspection drops them).
async fn service_sdl(s: &SubgraphConfig, http: &reqwest::Client) -> Result<String, String> {
    let body = post_query(s, http, "{ _service { sdl } }")
        .await
        .map_err(|e| {
            format!("{e} (to `{{ _service {{ sdl }} }}`: is it a Federation subgraph?)")
        })?;
    body.pointer("/data/_service/sdl")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .ok_or_else(|| "the answer has no `data._service.sdl`".into())
}

/// SDL served as text at `url` (a Composite source schema endpoint).
async fn fetch_sdl(
    s: &SubgraphConfig,
    url: &str,
    http: &reqwest::Client,
) -> Result<String, String> {
    let mut rb = http.get(url).timeout(s.timeout());
    for (k, v) in &s.headers {
        rb = rb.header(k, v);
    }
    let resp = rb.send().await.map_err(|e| root_cause(&e))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("GET {url} answered HTTP {status}"));
    }
    resp.text().await.map_err(|e| root_cause(&e))
}

async fn introspect(s: &SubgraphConfig, http: &reqwest::Client) -> Result<String, String> {
    let body = post_query(s, http, INTROSPECTION_QUERY).await?;
    let data = body.get("data").ok_or("the answer has no `data`")?;
    sdl_from_introspection(data)
}
