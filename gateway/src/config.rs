//! `config.toml`: the gateway's listen address, limits, and one
//! `[[subgraphs]]` entry per subgraph. Defaults live here and only here.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use crate::error::GatewayError;

/// The whole file. `[services.*]` belongs to the subgraph binaries.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub gateway: GatewayConfig,
    /// One entry per subgraph, in the order their root fields appear.
    #[serde(default)]
    pub subgraphs: Vec<SubgraphConfig>,
    /// The subgraph services' own sections; the gateway ignores them.
    #[serde(default)]
    pub services: toml::Table,
}

/// `[gateway]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Address to listen on.
    pub listen: String,
    /// Largest request body accepted, in bytes (larger: 413).
    pub max_body_bytes: usize,
    /// Deepest selection nesting accepted.
    pub max_depth: usize,
    /// Most aliases in one operation.
    pub max_aliases: usize,
    /// Most root fields in one operation.
    pub max_root_fields: usize,
    /// Most lexical tokens in one document.
    pub max_tokens: usize,
    /// Most field selections once every fragment spread is expanded in place
    /// (a few hundred tokens of fragments spreading each other twice expand
    /// to millions).
    pub max_fields: usize,
    /// Most directive applications, fragments expanded.
    pub max_directives: usize,
    /// Most fields an operation may make the subgraphs resolve: a list
    /// counts its `first`/`last`/`limit` argument (or `default_list_size`)
    /// times its selection; checked with the request's variables. 0: off.
    pub max_cost: u64,
    /// The size a list without a `first`/`last`/`limit` argument counts as.
    pub default_list_size: u64,
    /// Validation errors reported at most; one more error says how many there were.
    pub max_validation_errors: usize,
    /// Whether `__schema`/`__type` are answered.
    pub introspection: bool,
    /// Operations kept planned (parse + validate + plan), by document; a
    /// document counts once per 4 KiB of its text.
    pub plan_cache_size: u64,
    /// Seconds a `graphql-transport-ws` client has to send `connection_init`.
    pub ws_init_timeout_secs: u64,
    /// Seconds between keep-alives on an initialised WebSocket: `ping`
    /// (`graphql-transport-ws`, closing a client that left the previous one
    /// unanswered) or `ka` (legacy). 0 turns them off.
    pub ws_keepalive_secs: u64,
    /// Operations one WebSocket connection may run at once.
    pub ws_max_operations: usize,
    /// Distinct upstream subscriptions at once, over every subgraph (identical
    /// client subscriptions share one); more are refused with an error.
    pub max_upstream_subscriptions: usize,
    /// Watch the config file and the SDL files it names; rebuild on change.
    pub hot_reload: bool,
    /// Attempts to introspect a subgraph at start-up before giving up.
    pub introspection_attempts: u32,
    /// Identical subgraph queries in flight at once go out once and share
    /// the answer (the key covers subgraph, URL, headers sent and body).
    pub dedupe_subgraph_requests: bool,
    /// Identical client requests (body and headers) in flight at once are
    /// executed once and share the answer.
    pub dedupe_client_requests: bool,
    /// Requests in flight to one subgraph host at most (HTTP/1.1: connections).
    pub max_connections_per_host: usize,
    /// Milliseconds one client request may take in all: each subgraph call
    /// gets at most what is left, and a request past it answers 504
    /// (`GATEWAY_TIMEOUT`) with the data complete by then. 0: no deadline.
    pub request_timeout_ms: u64,
    /// Seconds a subgraph may fail every request before `/ready` answers 503.
    pub ready_unreachable_secs: u64,
    /// Documents kept for automatic persisted queries
    /// (`extensions.persistedQuery`); 0 turns the protocol off.
    pub persisted_queries_cache_size: u64,
    /// Seconds connections get to finish their requests when the gateway stops.
    pub shutdown_grace_secs: u64,
    /// `[gateway.connections]`: connection cap and client timeouts.
    pub connections: serve::ConnectionLimits,
    /// `[gateway.cors]`: which browser origins may call the gateway.
    pub cors: serve::CorsConfig,
    /// `[gateway.csrf]`: refusing requests a browser sends without a preflight.
    pub csrf: CsrfConfig,
    /// `[gateway.trusted_documents]`: operations known ahead, and whether
    /// only they run.
    pub trusted_documents: TrustedDocumentsConfig,
    /// `[gateway.jwt]`: JWT authentication; absent: off.
    pub jwt: Option<crate::auth::JwtConfig>,
    /// `[gateway.authorization]`: `@authenticated`/`@requiresScopes`.
    pub authorization: AuthorizationConfig,
    /// `[gateway.telemetry]`: OpenTelemetry traces over OTLP.
    pub telemetry: telemetry::TelemetryConfig,
    /// Runtime worker threads: 0 = one per core; 1 = a single-threaded
    /// runtime, which saves the cross-thread wake-ups of every request when
    /// the gateway shares a small machine with its subgraphs.
    pub worker_threads: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        // Request limits default to the library's.
        let l = stitching::Limits::default();
        GatewayConfig {
            listen: "127.0.0.1:4000".into(),
            max_body_bytes: 2 * 1024 * 1024,
            max_depth: l.max_depth,
            max_aliases: l.max_aliases,
            max_root_fields: l.max_root_fields,
            max_tokens: l.max_tokens,
            max_fields: l.max_fields,
            max_directives: l.max_directives,
            max_cost: l.max_cost,
            default_list_size: l.default_list_size,
            max_validation_errors: l.max_validation_errors,
            introspection: l.introspection,
            plan_cache_size: 1_000,
            ws_init_timeout_secs: 10,
            ws_keepalive_secs: 10,
            ws_max_operations: 100,
            max_upstream_subscriptions: 10_000,
            hot_reload: true,
            introspection_attempts: 10,
            dedupe_subgraph_requests: true,
            dedupe_client_requests: false,
            max_connections_per_host: 100,
            request_timeout_ms: 30_000,
            ready_unreachable_secs: 30,
            shutdown_grace_secs: 10,
            persisted_queries_cache_size: 10_000,
            connections: serve::ConnectionLimits::default(),
            cors: serve::CorsConfig::default(),
            csrf: CsrfConfig::default(),
            trusted_documents: TrustedDocumentsConfig::default(),
            jwt: None,
            authorization: AuthorizationConfig::default(),
            telemetry: Default::default(),
            worker_threads: 0,
        }
    }
}

/// `[gateway.csrf]`: a request a browser could send cross-site without a
/// preflight (a GET, or a POST with a simple content type) is refused
/// unless it has a non-simple `Content-Type` or one of `required_headers`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CsrfConfig {
    pub enabled: bool,
    pub required_headers: Vec<String>,
}

impl Default for CsrfConfig {
    fn default() -> Self {
        CsrfConfig {
            enabled: true,
            required_headers: vec![
                "x-apollo-operation-name".into(),
                "apollo-require-preflight".into(),
            ],
        }
    }
}

/// `[gateway.trusted_documents]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrustedDocumentsConfig {
    /// Manifest files: Apollo's persisted-query manifest or Relay's
    /// `{ id: text }` JSON; reloaded with the config.
    pub manifests: Vec<PathBuf>,
    /// Only the manifests' documents run (by id, hash or exact text).
    pub safelist: bool,
    /// In safelist mode, introspection-only operations run too.
    pub allow_introspection: bool,
}

impl Default for TrustedDocumentsConfig {
    fn default() -> Self {
        TrustedDocumentsConfig {
            manifests: Vec::new(),
            safelist: false,
            allow_introspection: true,
        }
    }
}

/// `[gateway.authorization]`: what `@authenticated` and `@requiresScopes`
/// (in subgraph or stitching SDL, or in `rules`) let each caller see.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthorizationConfig {
    /// The token claim with the caller's scopes (a dotted path for nested
    /// ones): a space-separated string, as OAuth's `scope`, or a list.
    pub scopes_claim: String,
    /// `filter`: what the caller may not see is null, with an error each;
    /// `reject`: the whole operation is refused.
    pub mode: stitching::authorization::UnauthorizedMode,
    /// `Type` or `Type.field` (public names) -> its requirements, beside
    /// those the SDL declares.
    pub rules: BTreeMap<String, AccessRuleConfig>,
}

impl Default for AuthorizationConfig {
    fn default() -> Self {
        AuthorizationConfig {
            scopes_claim: "scope".into(),
            mode: Default::default(),
            rules: BTreeMap::new(),
        }
    }
}

/// One `[gateway.authorization.rules]` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessRuleConfig {
    /// As `@authenticated`.
    pub authenticated: bool,
    /// As `@requiresScopes(scopes:)`: any one of these sets, held whole.
    pub requires_scopes: Vec<Vec<String>>,
}

/// Which directives a subgraph's schema speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// `@schema`/`@delegate` stitching SDL; schema by introspection.
    #[default]
    Stitching,
    /// Apollo Federation subgraph; schema from `{ _service { sdl } }`.
    Federation,
    /// Composite Schemas source schema; schema from `schema_file` or `schema_url`.
    Composite,
}

impl From<Dialect> for stitching::schema::Dialect {
    fn from(d: Dialect) -> Self {
        match d {
            Dialect::Stitching => stitching::schema::Dialect::Stitching,
            Dialect::Federation => stitching::schema::Dialect::Federation,
            Dialect::Composite => stitching::schema::Dialect::Composite,
        }
    }
}

/// `[[subgraphs]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubgraphConfig {
    /// The name `@schema(name:)` and errors (`extensions.service`) use.
    pub name: String,
    /// GraphQL over HTTP endpoint.
    pub url: String,
    /// More endpoints of the same subgraph (its replicas): requests go
    /// round-robin over `url` and these, and one that cannot be reached is
    /// skipped until it answers again.
    #[serde(default)]
    pub replicas: Vec<String>,
    /// The directives the subgraph's schema speaks.
    #[serde(default)]
    pub dialect: Dialect,
    /// A URL that answers `GET` with the subgraph's SDL (instead of
    /// introspection or `_service`).
    #[serde(default)]
    pub schema_url: Option<String>,
    /// The subgraph takes one request with a list of variable sets and
    /// answers JSON lines (draft variable batching; Composite lookups).
    #[serde(default)]
    pub variable_batching: bool,
    /// Talk HTTP/2 without TLS (h2c, prior knowledge) to this subgraph.
    #[serde(default)]
    pub http2: bool,
    /// WebSocket endpoint for subscriptions; defaults to `url` with `ws://`/`wss://`.
    #[serde(default)]
    pub ws_url: Option<String>,
    /// Milliseconds one request to this subgraph may take.
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// The subgraph's SDL file; without it the schema comes from introspection.
    #[serde(default)]
    pub schema_file: Option<PathBuf>,
    /// Stitching SDL inline.
    #[serde(default)]
    pub stitching: Option<String>,
    /// Stitching SDL files.
    #[serde(default)]
    pub stitching_files: Vec<PathBuf>,
    /// `Type` or `Type.field` of this subgraph kept out of the public graph.
    #[serde(default)]
    pub hide: Vec<String>,
    /// This subgraph's type name -> public name, to resolve a conflict.
    #[serde(default)]
    pub rename_types: BTreeMap<String, String>,
    /// Client headers passed on to this subgraph (case-insensitive names).
    #[serde(default)]
    pub propagate_headers: Vec<String>,
    /// Headers always set on requests to this subgraph.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Whether this subgraph's own GraphQL errors reach clients as they are
    /// (else: a generic message with its name and the request id; the
    /// original is logged).
    #[serde(default = "defaults::include_subgraph_errors")]
    pub include_subgraph_errors: bool,
    /// Largest answer read from this subgraph, in bytes; a larger one is
    /// an error at its fields (`SUBGRAPH_RESPONSE_TOO_LARGE`).
    #[serde(default = "defaults::max_response_bytes")]
    pub max_response_bytes: usize,
    /// `[subgraphs.breaker]`
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// `[subgraphs.retry]`
    #[serde(default)]
    pub retry: RetryConfig,
}

/// `[subgraphs.breaker]`: stop calling a subgraph that keeps failing, so
/// its fields fail at once (`SUBGRAPH_CIRCUIT_OPEN`) instead of after its
/// timeout, and let it recover without load.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    pub enabled: bool,
    /// Failures (timeouts, refused connections, 5xx, 429) per request, over
    /// the window, at which the breaker opens.
    pub failure_rate: f64,
    /// Requests in the window before the rate counts.
    pub min_requests: u32,
    pub window_secs: u64,
    /// Milliseconds the breaker stays open before it lets probes through.
    pub cooldown_ms: u64,
    /// Probes that must succeed in a row to close it again (one failure reopens it).
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            enabled: true,
            failure_rate: 0.5,
            min_requests: 10,
            window_secs: 10,
            cooldown_ms: 5_000,
            half_open_probes: 3,
        }
    }
}

/// `[subgraphs.retry]`: queries only (never mutations or subscriptions),
/// on refused connections, 5xx and 429 (after its `Retry-After`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Tries in all, the first included: 1 turns retries off.
    pub max_attempts: u32,
    /// Milliseconds before the first retry; doubled each time, with jitter.
    pub backoff_ms: u64,
    /// The longest wait before a retry; a `Retry-After` longer than this
    /// means no retry.
    pub max_backoff_ms: u64,
    /// Retries allowed per request sent, over the last 10 s, so retries
    /// cannot multiply the load on a subgraph that is down.
    pub budget_ratio: f64,
    /// Retries allowed per 10 s whatever the traffic (a quiet gateway still retries).
    pub budget_min: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 3,
            backoff_ms: 50,
            max_backoff_ms: 2_000,
            budget_ratio: 0.2,
            budget_min: 10,
        }
    }
}

mod defaults {
    pub fn timeout_ms() -> u64 {
        10_000
    }

    pub fn include_subgraph_errors() -> bool {
        true
    }

    pub fn max_response_bytes() -> usize {
        50 * 1024 * 1024
    }
}

impl SubgraphConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn ws_url(&self) -> String {
        match &self.ws_url {
            Some(u) => u.clone(),
            None => {
                if let Some(rest) = self.url.strip_prefix("https://") {
                    format!("wss://{rest}")
                } else if let Some(rest) = self.url.strip_prefix("http://") {
                    format!("ws://{rest}")
                } else {
                    self.url.clone()
                }
            }
        }
    }
}

/// A loaded config and the directory its relative paths are resolved against.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub path: Option<PathBuf>,
    pub dir: PathBuf,
    pub config: Config,
}

impl LoadedConfig {
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }

    /// Every file the config names (for hot reload).
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = self.path.iter().cloned().collect();
        for s in &self.config.subgraphs {
            out.extend(s.schema_file.iter().map(|p| self.resolve(p)));
            out.extend(s.stitching_files.iter().map(|p| self.resolve(p)));
        }
        let td = &self.config.gateway.trusted_documents;
        out.extend(td.manifests.iter().map(|p| self.resolve(p)));
        let jwks = self
            .config
            .gateway
            .jwt
            .as_ref()
            .and_then(|j| j.jwks_file.as_ref());
        out.extend(jwks.map(|p| self.resolve(p)));
        out
    }
}

/// Reads and checks a config file.
pub fn load(path: &Path) -> Result<LoadedConfig, GatewayError> {
    let text = std::fs::read_to_string(path).map_err(|e| GatewayError::Config {
        file: path.display().to_string(),
        message: format!("cannot read it: {e}"),
    })?;
    let dir = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."))
        .to_path_buf();
    parse(
        &text,
        &path.display().to_string(),
        dir,
        Some(path.to_path_buf()),
    )
}

/// Parses config text; `file` names it in errors.
pub fn parse(
    text: &str,
    file: &str,
    dir: PathBuf,
    path: Option<PathBuf>,
) -> Result<LoadedConfig, GatewayError> {
    // `${VAR}` in string values, from the environment; lines stay where they were.
    let text = settings::interpolate_env(text, file).map_err(|e| GatewayError::Config {
        file: file.to_string(),
        message: e.to_string(),
    })?;
    let config: Config = toml::from_str(&text).map_err(|e| GatewayError::Config {
        file: file.to_string(),
        message: e.to_string(),
    })?;
    let loaded = LoadedConfig { path, dir, config };
    check(&loaded, &text, file)?;
    Ok(loaded)
}

/// The 1-based line where `needle` first appears at or after `[[subgraphs]]` entry `index`.
fn line_of(text: &str, index: usize, needle: &str) -> Option<usize> {
    let mut seen = 0usize;
    let mut inside = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t == "[[subgraphs]]" {
            inside = seen == index;
            seen += 1;
            continue;
        }
        if inside && t.starts_with(needle) {
            return Some(i + 1);
        }
    }
    None
}

fn check(loaded: &LoadedConfig, text: &str, file: &str) -> Result<(), GatewayError> {
    let mut problems = Vec::new();
    let c = &loaded.config;
    if c.gateway.listen.parse::<std::net::SocketAddr>().is_err() {
        problems.push(format!(
            "[gateway] listen = \"{}\" is not an address like 127.0.0.1:4000",
            c.gateway.listen
        ));
    }
    problems.extend(c.gateway.cors.problems("[gateway.cors]"));
    if c.subgraphs.is_empty() {
        problems
            .push("no [[subgraphs]] entry: the gateway needs at least one subgraph".to_string());
    }
    let mut names = Vec::new();
    for (i, s) in c.subgraphs.iter().enumerate() {
        let entry = SubgraphEntry {
            s,
            index: i,
            text,
            file,
        };
        if names.contains(&s.name) {
            problems.push(entry.problem("name", " is configured twice"));
        }
        names.push(s.name.clone());
        entry.check_name_and_urls(&mut problems);
        entry.check_sources(loaded, &mut problems);
        entry.check_limits(&mut problems);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(GatewayError::Config {
            file: file.to_string(),
            message: problems.join("\n  "),
        })
    }
}

/// One `[[subgraphs]]` entry being checked, and where its keys are in the
/// file, so that each problem names its line.
struct SubgraphEntry<'a> {
    s: &'a SubgraphConfig,
    index: usize,
    text: &'a str,
    file: &'a str,
}

fn is_http(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
}

impl SubgraphEntry<'_> {
    /// `file:line: ` of `key` in this entry (`file: ` if it is not written).
    fn at(&self, key: &str) -> String {
        line_of(self.text, self.index, key)
            .map(|l| format!("{}:{l}: ", self.file))
            .unwrap_or_else(|| format!("{}: ", self.file))
    }

    /// ``file:line: subgraph `name`{what}``, at the line of `key`.
    fn problem(&self, key: &str, what: &str) -> String {
        format!("{}subgraph `{}`{what}", self.at(key), self.s.name)
    }

    fn check_name_and_urls(&self, problems: &mut Vec<String>) {
        let s = self.s;
        if s.name.is_empty()
            || !s
                .name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
        {
            problems.push(format!(
                "{}subgraph name `{}` must be letters, digits, `_` or `-`",
                self.at("name"),
                s.name
            ));
        }
        if !is_http(&s.url) {
            problems.push(self.problem(
                "url",
                &format!(": url = \"{}\" is not an http(s) URL", s.url),
            ));
        }
        for r in s.replicas.iter().filter(|r| !is_http(r)) {
            problems.push(self.problem(
                "replicas",
                &format!(": replicas entry \"{r}\" is not an http(s) URL"),
            ));
        }
        let ws = s.ws_url();
        if !url::Url::parse(&ws).is_ok_and(|u| matches!(u.scheme(), "ws" | "wss")) {
            problems
                .push(self.problem("ws_url", &format!(": ws_url = \"{ws}\" is not a ws(s) URL")));
        }
    }

    /// Where the subgraph's schema and stitching SDL come from.
    fn check_sources(&self, loaded: &LoadedConfig, problems: &mut Vec<String>) {
        let s = self.s;
        if let Some(u) = &s.schema_url {
            if !is_http(u) {
                problems.push(self.problem(
                    "schema_url",
                    &format!(": schema_url = \"{u}\" is not an http(s) URL"),
                ));
            }
            if s.schema_file.is_some() {
                problems.push(self.problem(
                    "schema_url",
                    ": set `schema_file` or `schema_url`, not both",
                ));
            }
        }
        if s.dialect == Dialect::Composite && s.schema_file.is_none() && s.schema_url.is_none() {
            problems.push(self.problem(
                "dialect",
                ": a composite subgraph needs its source schema: set `schema_file` or `schema_url` (introspection does not carry @lookup/@key)",
            ));
        }
        for f in s.schema_file.iter().chain(s.stitching_files.iter()) {
            let p = loaded.resolve(f);
            if !p.is_file() {
                let key = if s.schema_file.as_ref() == Some(f) {
                    "schema_file"
                } else {
                    "stitching_files"
                };
                problems.push(self.problem(
                    key,
                    &format!(": {key}: file {} does not exist", p.display()),
                ));
            }
        }
    }

    /// Timeouts, breaker, retries and headers.
    fn check_limits(&self, problems: &mut Vec<String>) {
        let s = self.s;
        if s.timeout_ms == 0 {
            problems.push(self.problem("timeout_ms", ": timeout_ms must be above 0"));
        }
        let b = &s.breaker;
        if !(b.failure_rate > 0.0 && b.failure_rate <= 1.0) || b.window_secs == 0 {
            problems.push(self.problem(
                "failure_rate",
                ": [subgraphs.breaker] needs 0 < failure_rate <= 1 and window_secs above 0",
            ));
        }
        if s.retry.max_attempts == 0 || s.retry.budget_ratio.is_nan() || s.retry.budget_ratio < 0.0
        {
            problems.push(self.problem(
                "max_attempts",
                ": [subgraphs.retry] max_attempts must be at least 1 (1: no retries) and budget_ratio at least 0",
            ));
        }
        let named = (s.propagate_headers.iter().map(|h| ("propagate_headers", h)))
            .chain(s.headers.keys().map(|h| ("headers", h)));
        for (key, h) in named {
            if reqwest::header::HeaderName::from_bytes(h.as_bytes()).is_err() {
                problems.push(self.problem(key, &format!(": `{h}` is not a valid header name")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.toml");
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.config.subgraphs.len(), 3);
        assert_eq!(loaded.config.gateway.listen, "127.0.0.1:4000");
    }

    #[test]
    fn unknown_keys_and_bad_values_name_file_and_line() {
        let e = parse(
            "[gateway]\nlisten = \"127.0.0.1:1\"\nbogus = 1\n",
            "c.toml",
            ".".into(),
            None,
        )
        .unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("c.toml") && m.contains("line 3") && m.contains("bogus"),
            "{m}"
        );

        let text =
            "[[subgraphs]]\nname = \"a\"\nurl = \"ftp://x\"\nschema_file = \"nope.graphql\"\n";
        let m = parse(text, "c.toml", ".".into(), None)
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("c.toml:3: subgraph `a`: url = \"ftp://x\" is not an http(s) URL"),
            "{m}"
        );
        assert!(
            m.contains("c.toml:4: subgraph `a`: schema_file: file ./nope.graphql does not exist"),
            "{m}"
        );
    }

    /// Every problem of every `[[subgraphs]]` entry is reported at once,
    /// each at the line of its key.
    #[test]
    fn every_problem_of_a_subgraph_entry_is_told_at_its_line() {
        let text = "[[subgraphs]]\nname = \"a b\"\nurl = \"http://x\"\n\
            [[subgraphs]]\nname = \"c\"\nurl = \"http://x\"\n\
            [[subgraphs]]\nname = \"c\"\nurl = \"http://x\"\nreplicas = [\"udp://y\"]\n\
            ws_url = \"http://x\"\nschema_url = \"file:///s\"\nschema_file = \"s.graphql\"\n\
            timeout_ms = 0\npropagate_headers = [\"bad header\"]\n\
            [[subgraphs]]\nname = \"d\"\nurl = \"http://x\"\ndialect = \"composite\"\n\
            [subgraphs.breaker]\nfailure_rate = 2.0\n[subgraphs.retry]\nmax_attempts = 0\n";
        let m = parse(text, "c.toml", ".".into(), None)
            .unwrap_err()
            .to_string();
        for expected in [
            "c.toml:2: subgraph name `a b` must be letters, digits, `_` or `-`",
            "c.toml:8: subgraph `c` is configured twice",
            "c.toml:10: subgraph `c`: replicas entry \"udp://y\" is not an http(s) URL",
            "c.toml:11: subgraph `c`: ws_url = \"http://x\" is not a ws(s) URL",
            "c.toml:12: subgraph `c`: schema_url = \"file:///s\" is not an http(s) URL",
            "c.toml:12: subgraph `c`: set `schema_file` or `schema_url`, not both",
            "c.toml:14: subgraph `c`: timeout_ms must be above 0",
            "c.toml:15: subgraph `c`: `bad header` is not a valid header name",
            "c.toml:19: subgraph `d`: a composite subgraph needs its source schema",
            "c.toml:21: subgraph `d`: [subgraphs.breaker] needs 0 < failure_rate <= 1",
            "c.toml:23: subgraph `d`: [subgraphs.retry] max_attempts must be at least 1",
        ] {
            assert!(m.contains(expected), "{expected}\nnot in\n{m}");
        }
    }
}
