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
    authorization::Grants,
    execute::{self, FetchError, Response, SubgraphRequest, Transport},
    schema::introspection::{sdl_from_introspection, INTROSPECTION_QUERY},
    Limits, PreparedOperation, RequestError, SubgraphId, SubgraphSpec, Supergraph,
};
use tracing::Instrument;

use crate::{
    config::{BreakerConfig, LoadedConfig, RetryConfig, SubgraphConfig},
    error::GatewayError,
    metrics::{Metrics, SubgraphMetrics},
    resilience::{backoff, SubgraphHealth},
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
    /// `include_subgraph_errors`.
    pub include_errors: bool,
    /// Timeouts, caps, breaker and retries, shared with requests in flight.
    pub policy: Arc<SubgraphPolicy>,
    /// Where requests go: `url`, then any `replicas`.
    routes: Arc<Routes>,
}

/// One endpoint of a subgraph.
struct Route {
    url: reqwest::Url,
    /// For `http://` endpoints: the pooled client (HTTP/1.1 or h2c), the
    /// parsed URI, and the cap on concurrent requests to its host.
    plain: Option<Arc<PlainRoute>>,
    /// For the others (TLS): the shared reqwest client.
    http: reqwest::Client,
    /// Skipped until then (ms since `Routes::epoch`) after it could not be reached.
    down_until_ms: std::sync::atomic::AtomicU64,
}

/// A subgraph's endpoints, taken in turn; one that cannot be reached is
/// skipped for `REPLICA_PAUSE`, then tried again (if it answers, it is back).
struct Routes {
    list: Vec<Route>,
    next: std::sync::atomic::AtomicUsize,
    epoch: Instant,
}

/// How long an endpoint that refused a connection is left out.
const REPLICA_PAUSE: Duration = Duration::from_secs(2);

impl Routes {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The next endpoint in turn that is not left out (all left out: the next in turn).
    fn pick(&self) -> usize {
        use std::sync::atomic::Ordering::Relaxed;
        let n = self.list.len();
        if n == 1 {
            return 0;
        }
        let start = self.next.fetch_add(1, Relaxed) % n;
        let now = self.now_ms();
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| self.list[i].down_until_ms.load(Relaxed) <= now)
            .unwrap_or(start)
    }

    fn outcome(&self, i: usize, unreachable: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        if self.list.len() == 1 {
            return;
        }
        let until = if unreachable {
            self.now_ms() + REPLICA_PAUSE.as_millis() as u64
        } else {
            0
        };
        self.list[i].down_until_ms.store(until, Relaxed);
    }
}

/// An `http://` subgraph's pooled client, URI and per-host cap.
struct PlainRoute {
    client: PlainClient,
    uri: hyper::Uri,
    /// `Host` of an HTTP/1 request, made once: left to the client, it is
    /// formatted again for every request.
    host: Option<HeaderValue>,
    limit: Arc<tokio::sync::Semaphore>,
}

/// How requests to one subgraph are bounded and retried.
pub struct SubgraphPolicy {
    pub name: String,
    pub timeout: Duration,
    /// The client request's deadline, named in its error.
    pub request_timeout: Duration,
    pub max_response_bytes: usize,
    pub breaker: BreakerConfig,
    pub retry: RetryConfig,
    /// Breaker, retry budget and reachability, kept across reloads.
    pub health: Arc<SubgraphHealth>,
}

/// Called with each document and operation name before it is prepared.
/// Only a process that embeds the gateway can set one (`start_on_with`):
/// the end-to-end tests make it panic on a chosen operation, to drive what
/// the gateway does about its own bugs. The binary never sets one.
pub type PrepareHook = Arc<dyn Fn(&str, Option<&str>) + Send + Sync>;

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
    hook: Option<PrepareHook>,
    /// Plan cache hits and misses.
    plan_cache: (
        telemetry::metrics::IntCounter,
        telemetry::metrics::IntCounter,
    ),
    /// `[gateway.trusted_documents]`, loaded with the schema.
    pub trusted: Option<crate::persisted::TrustedDocuments>,
    /// `[gateway.jwt]`, with its keys.
    pub auth: Option<Arc<crate::auth::Authenticator>>,
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
    /// A trusted document's id (`sha256:<hex>` or the manifest's id).
    #[serde(default)]
    pub document_id: Option<String>,
}

/// The outcome of one request: refused before execution, or executed.
pub enum Outcome {
    Refused(RequestError),
    /// The response, and the type of the operation that ran.
    Executed(Response, apollo_compiler::ast::OperationType),
}

/// The client of one configured subgraph: its URL, headers, policy and routes.
fn subgraph_client(
    config: &LoadedConfig,
    s: &SubgraphConfig,
    forwarded: &[HeaderName],
    metrics: &Metrics,
    upstream: &Arc<Upstream>,
    http: &reqwest::Client,
) -> Result<SubgraphClient, GatewayError> {
    let url = reqwest::Url::parse(&s.url).map_err(|e| GatewayError::Config {
        file: config
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "config".into()),
        message: format!("subgraph `{}`: url `{}`: {e}", s.name, s.url),
    })?;
    Ok(SubgraphClient {
        name: s.name.clone(),
        url,
        ws_url: s.ws_url(),
        timeout: s.timeout(),
        propagate: propagated(s, forwarded),
        headers: static_headers(s)?,
        metrics: metrics.subgraph(&s.name),
        include_errors: s.include_subgraph_errors,
        policy: Arc::new(SubgraphPolicy {
            name: s.name.clone(),
            timeout: s.timeout(),
            request_timeout: Duration::from_millis(config.config.gateway.request_timeout_ms),
            max_response_bytes: s.max_response_bytes,
            breaker: s.breaker.clone(),
            retry: s.retry.clone(),
            health: upstream.health(&s.name, &s.breaker),
        }),
        routes: Arc::new(routes(config, s, upstream, http)?),
    })
}

/// The subgraph's fixed `headers`, sent with every request.
fn static_headers(s: &SubgraphConfig) -> Result<HeaderMap, GatewayError> {
    let mut headers = HeaderMap::new();
    for (k, v) in &s.headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) else {
            return Err(GatewayError::Config {
                file: "config".into(),
                message: format!("subgraph `{}`: header `{k}: {v}` is not valid", s.name),
            });
        };
        headers.insert(name, value);
    }
    Ok(headers)
}

/// The client's headers passed on to the subgraph: its `propagate_headers`
/// and those made from token claims, each once.
fn propagated(s: &SubgraphConfig, forwarded: &[HeaderName]) -> Vec<HeaderName> {
    s.propagate_headers
        .iter()
        .filter_map(|h| HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()).ok())
        .chain(forwarded.iter().cloned())
        .fold(Vec::new(), |mut all, h| {
            if !all.contains(&h) {
                all.push(h);
            }
            all
        })
}

/// `[gateway.trusted_documents]`, loaded when manifests or a safelist are set.
fn trusted_documents(
    config: &LoadedConfig,
) -> Result<Option<crate::persisted::TrustedDocuments>, GatewayError> {
    let td = &config.config.gateway.trusted_documents;
    if td.manifests.is_empty() && !td.safelist {
        return Ok(None);
    }
    let files: Vec<_> = td.manifests.iter().map(|f| config.resolve(f)).collect();
    crate::persisted::TrustedDocuments::load(&files, td.safelist, td.allow_introspection)
        .map(Some)
        .map_err(|message| GatewayError::Config {
            file: "[gateway.trusted_documents]".into(),
            message,
        })
}

fn limits(g: &crate::config::GatewayConfig) -> Limits {
    Limits {
        max_depth: g.max_depth,
        max_aliases: g.max_aliases,
        max_root_fields: g.max_root_fields,
        max_tokens: g.max_tokens,
        max_fields: g.max_fields,
        max_directives: g.max_directives,
        max_cost: g.max_cost,
        default_list_size: g.default_list_size,
        max_validation_errors: g.max_validation_errors,
        introspection: g.introspection,
    }
}

impl Engine {
    /// Loads every subgraph's schema, builds the composed schema and the clients.
    pub async fn build(
        config: Arc<LoadedConfig>,
        http: &reqwest::Client,
        metrics: &Metrics,
        upstream: &Arc<Upstream>,
        introspection_attempts: u32,
        hook: Option<PrepareHook>,
    ) -> Result<Engine, GatewayError> {
        let specs = load_specs(&config, http, introspection_attempts).await?;
        let mut supergraph = stitching::build(&specs)?;
        access_rules(&config, &mut supergraph)?;
        let auth = crate::auth::Authenticator::build(&config, http).await?;
        // Headers made from token claims go to every subgraph.
        let forwarded: Vec<HeaderName> = auth
            .iter()
            .flat_map(|a| a.forwarded_headers().cloned())
            .collect();
        let clients = config
            .config
            .subgraphs
            .iter()
            .map(|s| subgraph_client(&config, s, &forwarded, metrics, upstream, http))
            .collect::<Result<Vec<_>, _>>()?;
        let g = &config.config.gateway;
        Ok(Engine {
            trusted: trusted_documents(&config)?,
            auth,
            supergraph: Arc::new(supergraph),
            upstream: upstream.clone(),
            dedupe: g.dedupe_subgraph_requests,
            clients,
            limits: limits(g),
            cache: moka::sync::Cache::builder()
                .max_capacity(g.plan_cache_size)
                // A large document holds a large AST: it counts once per
                // 4 KiB, so huge distinct documents cannot pin gigabytes.
                .weigher(|_, (text, _): &(Arc<str>, _)| {
                    u32::try_from(1 + text.len() / 4096).unwrap_or(u32::MAX)
                })
                .build(),
            hasher: ahash::RandomState::new(),
            hook,
            plan_cache: (
                metrics.plan_cache_hits.clone(),
                metrics.plan_cache_misses.clone(),
            ),
            config,
        })
    }

    /// Parse + validate + plan, cached by document hash and operation name.
    pub fn prepare(
        &self,
        query: &str,
        operation_name: Option<&str>,
    ) -> Result<Arc<PreparedOperation>, RequestError> {
        if let Some(hook) = &self.hook {
            hook(query, operation_name);
        }
        let key = (
            self.hasher.hash_one(query),
            operation_name.map(str::to_owned),
        );
        if let Some((text, p)) = self.cache.get(&key) {
            if *text == *query {
                self.plan_cache.0.inc();
                return Ok(p);
            }
        }
        self.plan_cache.1.inc();
        let prepared = Arc::new(stitching::prepare(
            &self.supergraph,
            query,
            operation_name,
            &self.limits,
        )?);
        self.cache.insert(key, (Arc::from(query), prepared.clone()));
        Ok(prepared)
    }

    /// The request's variables, coerced, for an operation whose cost they
    /// keep within `max_cost` (they size its lists).
    pub fn bind_variables(
        &self,
        prepared: &PreparedOperation,
        variables: &JsonMap,
    ) -> Result<apollo_compiler::validation::Valid<JsonMap>, RequestError> {
        let variables = stitching::coerce_variables(&self.supergraph, prepared, variables)?;
        stitching::check_cost(prepared, &variables, &self.limits)?;
        Ok(variables)
    }

    /// What a caller with this identity (or none) may see.
    pub fn grants(&self, identity: Option<&crate::auth::Identity>) -> Grants {
        identity
            .map(|i| i.grants(&self.config.config.gateway.authorization.scopes_claim))
            .unwrap_or_default()
    }

    /// The operation without what `grants` may not see (`None`: all of it
    /// may be seen); refused when nothing is left or the mode is `reject`.
    pub fn authorize(
        &self,
        prepared: &PreparedOperation,
        grants: &Grants,
    ) -> Result<Option<Arc<stitching::authorization::Filtered>>, RequestError> {
        stitching::authorization::authorize(
            &self.supergraph,
            prepared,
            grants,
            self.config.config.gateway.authorization.mode,
        )
    }

    /// The plan cache's entries and their total weight (one per 4 KiB of document).
    pub fn plan_cache_usage(&self) -> (u64, u64) {
        self.cache.run_pending_tasks();
        (self.cache.entry_count(), self.cache.weighted_size())
    }

    /// Runs a query or mutation.
    pub async fn execute(
        &self,
        request: &GraphQLRequest,
        headers: &HeaderMap,
        grants: &Grants,
        allow_mutation: bool,
    ) -> Outcome {
        let started = Instant::now();
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
        let variables =
            match self.bind_variables(&prepared, request.variables.as_ref().unwrap_or(&empty)) {
                Ok(v) => v,
                Err(e) => return Outcome::Refused(e),
            };
        let filtered = match self.authorize(&prepared, grants) {
            Ok(f) => f,
            Err(e) => return Outcome::Refused(e),
        };
        let req = execute::Request {
            supergraph: &self.supergraph,
            document: &prepared.document,
            operation: op,
            plan: filtered.as_ref().map_or(&prepared.plan, |f| &f.plan),
            variables: &variables,
            authorization: filtered.as_deref(),
        };
        let g = &self.config.config.gateway;
        let transport = HttpTransport {
            engine: self,
            headers,
            deadline: (g.request_timeout_ms > 0)
                .then(|| started + Duration::from_millis(g.request_timeout_ms)),
        };
        let span =
            tracing::debug_span!("graphql.execute", graphql.operation.type = ?op.operation_type);
        let mut response = execute::execute(&req, &transport).instrument(span).await;
        self.client_errors(&mut response.errors, headers);
        Outcome::Executed(response, op.operation_type)
    }

    /// Gives an executed response's errors their client form (see `response`).
    pub fn client_errors(
        &self,
        errors: &mut [apollo_compiler::response::GraphQLError],
        headers: &HeaderMap,
    ) {
        if errors.is_empty() {
            return;
        }
        let request_id = headers
            .get(crate::http::REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        crate::response::client_errors(errors, request_id, |service| {
            self.clients
                .iter()
                .find(|c| c.name == service)
                .is_none_or(|c| c.include_errors)
        });
    }
}

/// `[gateway.authorization.rules]` joins the rules the SDL declares.
fn access_rules(config: &LoadedConfig, supergraph: &mut Supergraph) -> Result<(), GatewayError> {
    use stitching::authorization::Requirement;
    let mut problems = Vec::new();
    for (target, rule) in &config.config.gateway.authorization.rules {
        let mut requirements = Vec::new();
        if rule.authenticated {
            requirements.push(Requirement::Authenticated);
        }
        if !rule.requires_scopes.is_empty() {
            requirements.push(Requirement::Scopes(rule.requires_scopes.clone()));
        }
        if requirements.is_empty() {
            problems.push(format!(
                "`{target}`: the rule requires nothing; set `authenticated = true` or `requires_scopes = [[\"scope\"]]`"
            ));
        }
        for r in requirements {
            if let Err(e) = supergraph.access.add(&supergraph.schema, target, r) {
                problems.push(e);
            }
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(GatewayError::Config {
        file: "[gateway.authorization.rules]".into(),
        message: problems.join("; "),
    })
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

/// `url` and `replicas` of a subgraph as its endpoints.
fn routes(
    config: &LoadedConfig,
    s: &crate::config::SubgraphConfig,
    upstream: &Arc<Upstream>,
    http: &reqwest::Client,
) -> Result<Routes, GatewayError> {
    let mut list = Vec::new();
    for address in std::iter::once(&s.url).chain(&s.replicas) {
        let url = reqwest::Url::parse(address).map_err(|e| GatewayError::Config {
            file: config
                .path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "config".into()),
            message: format!("subgraph `{}`: url `{address}`: {e}", s.name),
        })?;
        let plain = address
            .starts_with("http://")
            .then(|| address.parse::<hyper::Uri>().ok())
            .flatten()
            .map(|uri| {
                let host = uri.authority().map(|a| a.as_str()).unwrap_or("");
                let limit = upstream.host_limit(host);
                Arc::new(PlainRoute {
                    client: upstream.client(s.http2),
                    host: (!s.http2).then(|| host_header(&uri)).flatten(),
                    uri,
                    limit,
                })
            });
        list.push(Route {
            url,
            plain,
            http: http.clone(),
            down_until_ms: Default::default(),
        });
    }
    Ok(Routes {
        list,
        next: Default::default(),
        epoch: Instant::now(),
    })
}

/// The `Host` header for `uri`: its host, and its port unless it is 80.
fn host_header(uri: &hyper::Uri) -> Option<HeaderValue> {
    let host = uri.host()?;
    let value = match uri.port_u16() {
        Some(port) if port != 80 => HeaderValue::from_str(&format!("{host}:{port}")),
        _ => HeaderValue::from_str(host),
    };
    value.ok()
}

/// Sends subgraph requests over pooled keep-alive HTTP connections, with the
/// subgraph's timeout (at most what is left of the client request's
/// deadline), breaker, retries, propagated and configured headers, and metrics.
pub struct HttpTransport<'a> {
    pub engine: &'a Engine,
    pub headers: &'a HeaderMap,
    /// When the client request must be answered; `None`: no deadline.
    pub deadline: Option<Instant>,
}

impl Transport for HttpTransport<'_> {
    fn fetch<'a>(
        &'a self,
        subgraph: SubgraphId,
        request: SubgraphRequest,
    ) -> BoxFuture<'a, Result<Bytes, FetchError>> {
        let c = &self.engine.clients[subgraph];
        let span = tracing::debug_span!(
            "subgraph.request",
            otel.kind = "client",
            otel.name = %format_args!("subgraph {}", c.name),
            subgraph.name = %c.name,
            graphql.operation.type = ?request.operation,
            graphql.batch_size = request.batch_size,
            otel.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let traced = span.clone();
        Box::pin(
            async move {
                let result = self.send(c, request, &traced).await;
                match &result {
                    Ok(_) => traced.record("otel.status_code", "OK"),
                    Err(e) => traced
                        .record("otel.status_code", "ERROR")
                        .record("error.type", e.code()),
                };
                result
            }
            .instrument(span),
        )
    }
}

impl HttpTransport<'_> {
    /// One request to `c`, or a share of an identical one in flight.
    async fn send(
        &self,
        c: &SubgraphClient,
        request: SubgraphRequest,
        span: &tracing::Span,
    ) -> Result<Bytes, FetchError> {
        let query = request.operation == OperationType::Query;
        let body = request
            .into_body()
            .map_err(|e| FetchError::Malformed(e.to_string()))?;
        let body = Bytes::from(body);
        let mut headers = self.outgoing_headers(c);
        let key = (self.engine.dedupe && query).then(|| dedupe_key(c, &headers, &body));
        // After the key: trace context differs per request, the answer does not.
        telemetry::inject(span, &mut headers);
        let work = Box::pin(self.exchange(c, headers, body, query).run());
        let Some(key) = key else {
            return work.await;
        };
        let (result, joined) = self.engine.upstream.fetches.run(key, work).await;
        if joined {
            c.metrics.dedup_hits.inc();
        }
        result
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

    /// One request to `c`, owning what it needs (deduplicated callers share it).
    fn exchange(
        &self,
        c: &SubgraphClient,
        headers: HeaderMap,
        body: Bytes,
        query: bool,
    ) -> Exchange {
        Exchange {
            policy: c.policy.clone(),
            metrics: c.metrics.clone(),
            routes: c.routes.clone(),
            headers,
            body,
            retry: query,
            deadline: self.deadline,
        }
    }
}

/// A failed attempt, and how long the subgraph asked us to wait (`Retry-After`).
struct Failure {
    error: FetchError,
    retry_after: Option<Duration>,
    /// No connection was made: the request never left, so another replica
    /// may take it, a mutation too.
    not_sent: bool,
}

impl From<FetchError> for Failure {
    fn from(error: FetchError) -> Self {
        Failure {
            error,
            retry_after: None,
            not_sent: false,
        }
    }
}

/// One subgraph request with its retries, owned so callers can share it.
struct Exchange {
    policy: Arc<SubgraphPolicy>,
    metrics: Arc<SubgraphMetrics>,
    routes: Arc<Routes>,
    headers: HeaderMap,
    body: Bytes,
    /// Queries may be retried; mutations never.
    retry: bool,
    deadline: Option<Instant>,
}

impl Exchange {
    /// Attempts until one answers, the failure is final, the retry budget
    /// is spent or the deadline is near.
    async fn run(self) -> Result<Bytes, FetchError> {
        let p = &self.policy;
        let health = &p.health;
        health.budget.sent(Instant::now());
        let mut attempt = 1;
        loop {
            let now = Instant::now();
            let left = self.deadline.map(|d| d.saturating_duration_since(now));
            if left.is_some_and(|l| l.is_zero()) {
                return Err(self.deadline_error());
            }
            let Some(permit) = health.breaker.admit(&p.breaker, now) else {
                return Err(FetchError::CircuitOpen);
            };
            let timeout = left.map_or(p.timeout, |l| l.min(p.timeout));
            let result = self.attempt(timeout).await;
            let failure = match result {
                Ok(body) => {
                    permit.done(&p.breaker, true);
                    health.reached(true, Instant::now());
                    return Ok(body);
                }
                Err(f) => f,
            };
            let counts = counts_against(&failure.error);
            permit.done(&p.breaker, !counts);
            health.reached(!counts, Instant::now());
            if matches!(failure.error, FetchError::Timeout(_)) && timeout < p.timeout {
                return Err(self.deadline_error());
            }
            let wait = backoff(&p.retry, attempt, failure.retry_after);
            // A `Retry-After` longer than `max_backoff_ms` is honoured by not
            // retrying: the client is not held that long.
            let fits = wait
                <= Duration::from_millis(p.retry.max_backoff_ms.max(p.retry.backoff_ms))
                && self.deadline.is_none_or(|d| Instant::now() + wait < d);
            if !(self.retry
                && retryable(&failure.error)
                && attempt < p.retry.max_attempts
                && fits
                && health.budget.withdraw(&p.retry, Instant::now()))
            {
                return Err(failure.error);
            }
            tracing::debug!(subgraph = %p.name, attempt, error = %failure.error, ?wait, "retrying a subgraph query");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    fn deadline_error(&self) -> FetchError {
        FetchError::Deadline(
            self.deadline
                .map(|_| self.policy.request_timeout)
                .unwrap_or_default(),
        )
    }

    /// One request on the wire, with metrics. An endpoint that takes no
    /// connection is left out and the next replica tried at once (each at
    /// most once): the request never left, so this is not a retry.
    async fn attempt(&self, timeout: Duration) -> Result<Bytes, Failure> {
        let start = Instant::now();
        self.metrics.requests.inc();
        let mut result = self.on_route(self.routes.pick(), timeout).await;
        for _ in 1..self.routes.list.len() {
            // The next replica gets what is left of this attempt's time.
            let left = timeout.saturating_sub(start.elapsed());
            if !matches!(&result, Err(f) if f.not_sent) || left.is_zero() {
                break;
            }
            result = self.on_route(self.routes.pick(), left).await;
        }
        self.metrics.observe(start.elapsed());
        if let Err(f) = &result {
            self.metrics.errors.inc();
            tracing::warn!(subgraph = %self.policy.name, error = %f.error, "subgraph request failed");
        }
        result
    }

    /// The request to endpoint `i`; records whether it could be reached.
    async fn on_route(&self, i: usize, timeout: Duration) -> Result<Bytes, Failure> {
        let max = self.policy.max_response_bytes;
        let (headers, body) = (self.headers.clone(), self.body.clone());
        let route = &self.routes.list[i];
        let result = match &route.plain {
            Some(plain) => send_plain(plain, headers, body, timeout, max).await,
            None => {
                let rb = route
                    .http
                    .post(route.url.clone())
                    .headers(headers)
                    .timeout(timeout)
                    .body(body);
                send(rb, timeout, max).await
            }
        };
        // No connection (refused, or a connect timeout) or a broken one.
        let unreachable = matches!(&result, Err(f) if f.not_sent || matches!(f.error, FetchError::Unavailable(_)));
        self.routes.outcome(i, unreachable);
        result
    }
}

/// Failures that say the subgraph is in trouble (the breaker counts them);
/// a 4xx or a malformed body is a problem with one request.
fn counts_against(e: &FetchError) -> bool {
    match e {
        FetchError::Timeout(_) | FetchError::Unavailable(_) => true,
        FetchError::Status { status, .. } => *status >= 500 || *status == 429,
        _ => false,
    }
}

/// Failures a retry may cure: no connection, 5xx, 429. Not a timeout: a
/// hung subgraph would hold the client for every attempt.
fn retryable(e: &FetchError) -> bool {
    match e {
        FetchError::Unavailable(_) => true,
        FetchError::Status { status, .. } => *status >= 500 || *status == 429,
        _ => false,
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare from services and ignored).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// A request over the pooled plain client, at most `limit` at once per host.
async fn send_plain(
    route: &PlainRoute,
    headers: HeaderMap,
    body: Bytes,
    timeout: Duration,
    max: usize,
) -> Result<Bytes, Failure> {
    use http_body_util::BodyExt;
    let exchange = async {
        let _permit = route
            .limit
            .acquire()
            .await
            .map_err(|e| FetchError::Unavailable(e.to_string()))?;
        let mut req = hyper::Request::new(http_body_util::Full::new(body));
        *req.method_mut() = hyper::Method::POST;
        *req.uri_mut() = route.uri.clone();
        *req.headers_mut() = headers;
        if let Some(host) = &route.host {
            req.headers_mut()
                .entry(hyper::header::HOST)
                .or_insert_with(|| host.clone());
        }
        let resp = route.client.request(req).await.map_err(|e| Failure {
            error: FetchError::Unavailable(root_cause(&e)),
            retry_after: None,
            not_sent: e.is_connect(),
        })?;
        let status = resp.status();
        let (json, wait) = failure_headers(status, resp.headers());
        check_length(resp.headers(), max)?;
        let body = http_body_util::Limited::new(resp.into_body(), max)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    FetchError::TooLarge(max)
                } else {
                    FetchError::Unavailable(root_cause(&*e))
                }
            })?
            .to_bytes();
        accept(status, json, body, wait)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| Failure::from(FetchError::Timeout(timeout)))?
}

async fn send(
    rb: reqwest::RequestBuilder,
    timeout: Duration,
    max: usize,
) -> Result<Bytes, Failure> {
    let map = |e: reqwest::Error| Failure {
        not_sent: e.is_connect(),
        error: if e.is_timeout() {
            FetchError::Timeout(timeout)
        } else {
            FetchError::Unavailable(root_cause(&e))
        },
        retry_after: None,
    };
    let mut resp = rb.send().await.map_err(map)?;
    let status = resp.status();
    let (json, wait) = failure_headers(status, resp.headers());
    let declared = check_length(resp.headers(), max)?;
    // Sized once when the length is declared: no regrowing copies.
    let mut body = bytes::BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = resp.chunk().await.map_err(map)? {
        if body.len() + chunk.len() > max {
            return Err(FetchError::TooLarge(max).into());
        }
        body.extend_from_slice(&chunk);
    }
    accept(status, json, body.freeze(), wait)
}

/// A declared length over the cap fails before a byte of the body is read;
/// one within it is returned.
fn check_length(headers: &HeaderMap, max: usize) -> Result<Option<usize>, FetchError> {
    let declared = headers
        .get(reqwest::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > max as u64 => Err(FetchError::TooLarge(max)),
        // Within `max`, so it fits a usize.
        n => Ok(n.map(|n| n as usize)),
    }
}

/// Whether a `Content-Type` is JSON: `application/json`, or a `+json`
/// type such as `application/graphql-response+json`, parameters aside.
fn is_json(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|m| m == "application/json" || m.ends_with("+json"))
}

/// What a failed answer's headers say: whether its body is JSON (its
/// GraphQL errors are kept) and how long to wait before a retry. Read only
/// for a failure: for each answer, it was a lower-cased copy of its
/// `Content-Type` made to be dropped.
fn failure_headers(status: reqwest::StatusCode, headers: &HeaderMap) -> (bool, Option<Duration>) {
    if status.is_success() {
        (false, None)
    } else {
        (is_json(headers), retry_after(headers))
    }
}

/// The media type of `Content-Type`, lower-cased, without parameters.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let m = v.split(';').next()?.trim().to_ascii_lowercase();
    (!m.is_empty()).then_some(m)
}

/// A 2xx body is an answer; any other status is a failure that keeps a
/// JSON body (its GraphQL errors reach the client at their paths).
fn accept(
    status: reqwest::StatusCode,
    json: bool,
    body: Bytes,
    retry_after: Option<Duration>,
) -> Result<Bytes, Failure> {
    if status.is_success() {
        Ok(body)
    } else {
        Err(Failure {
            error: FetchError::Status {
                status: status.as_u16(),
                body: json.then_some(body),
            },
            retry_after,
            not_sent: false,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(n: usize) -> Routes {
        Routes {
            list: (0..n)
                .map(|i| Route {
                    url: reqwest::Url::parse(&format!("http://127.0.0.1:{}/graphql", 4000 + i))
                        .unwrap(),
                    plain: None,
                    http: reqwest::Client::new(),
                    down_until_ms: Default::default(),
                })
                .collect(),
            next: Default::default(),
            epoch: Instant::now(),
        }
    }

    #[test]
    fn replicas_take_turns_and_one_that_is_down_is_left_out() {
        let r = routes(3);
        let picks: Vec<usize> = (0..6).map(|_| r.pick()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        r.outcome(1, true);
        let picks: Vec<usize> = (0..4).map(|_| r.pick()).collect();
        assert!(!picks.contains(&1), "{picks:?}");
        // It answered again: back in turn.
        r.outcome(1, false);
        let picks: Vec<usize> = (0..3).map(|_| r.pick()).collect();
        assert!(picks.contains(&1), "{picks:?}");
        // All down: still someone is tried (that is how one comes back).
        for i in 0..3 {
            r.outcome(i, true);
        }
        assert!(r.pick() < 3);
        // A single endpoint is never left out.
        let one = routes(1);
        one.outcome(0, true);
        assert_eq!(one.pick(), 0);
    }

    /// The `Host` made once per route is the one the client would write
    /// for each request: the port unless it is HTTP's default.
    #[test]
    fn host_header_names_the_port_unless_it_is_80() {
        let host = |u: &str| host_header(&u.parse().unwrap()).unwrap();
        assert_eq!(host("http://127.0.0.1:4001/graphql"), "127.0.0.1:4001");
        assert_eq!(host("http://pipeline:80/graphql"), "pipeline");
        assert_eq!(host("http://pipeline/graphql"), "pipeline");
        assert_eq!(host("http://[::1]:9000/"), "[::1]:9000");
    }
}
