//! CORS for browser apps, configured the same way wherever it is served
//! (the gateway, the dataset service's signed content URLs).

use serde::Deserialize;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// `[gateway.cors]`, `[services.dataset.cors]`: off (no CORS headers)
/// until an origin is allowed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Origins allowed exactly, e.g. `"https://app.example.com"`.
    pub allow_origins: Vec<String>,
    /// Origins allowed by regular expression (whole origin), e.g.
    /// `"^http://localhost(:[0-9]+)?$"`.
    pub allow_origin_regex: Vec<String>,
    /// Whether browsers may send cookies and `Authorization` (then origins
    /// are echoed, never `*`).
    pub allow_credentials: bool,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    /// Seconds a browser may cache a preflight answer.
    pub max_age_secs: u64,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allow_origins: Vec::new(),
            allow_origin_regex: Vec::new(),
            allow_credentials: false,
            allow_methods: vec!["GET".into(), "POST".into(), "OPTIONS".into()],
            allow_headers: vec![
                "content-type".into(),
                "authorization".into(),
                "x-request-id".into(),
                "apollo-require-preflight".into(),
                "x-apollo-operation-name".into(),
            ],
            max_age_secs: 600,
        }
    }
}

impl CorsConfig {
    /// The layer, or `None` when no origin is allowed; `expose` names
    /// response headers a page may read. Regexes that do not compile are
    /// left out: configs check them first ([`CorsConfig::problems`]).
    pub fn layer(&self, expose: &[&'static str]) -> Option<CorsLayer> {
        if self.allow_origins.is_empty() && self.allow_origin_regex.is_empty() {
            return None;
        }
        let exact = self.allow_origins.clone();
        let patterns: Vec<regex::Regex> = self
            .allow_origin_regex
            .iter()
            .filter_map(|r| regex::Regex::new(r).ok())
            .collect();
        let origin = AllowOrigin::predicate(move |origin: &http::HeaderValue, _| {
            origin.to_str().is_ok_and(|o| {
                exact.iter().any(|e| e == o) || patterns.iter().any(|p| p.is_match(o))
            })
        });
        let methods: Vec<http::Method> = self
            .allow_methods
            .iter()
            .filter_map(|m| m.parse().ok())
            .collect();
        let headers: Vec<http::HeaderName> = self
            .allow_headers
            .iter()
            .filter_map(|h| h.parse().ok())
            .collect();
        Some(
            CorsLayer::new()
                .allow_origin(origin)
                .allow_methods(methods)
                .allow_headers(headers)
                .allow_credentials(self.allow_credentials)
                .expose_headers(
                    expose
                        .iter()
                        .map(|h| http::HeaderName::from_static(h))
                        .collect::<Vec<_>>(),
                )
                .max_age(std::time::Duration::from_secs(self.max_age_secs)),
        )
    }

    /// What is wrong with it, for the config check (`section` names it).
    pub fn problems(&self, section: &str) -> Vec<String> {
        let mut out = Vec::new();
        for r in &self.allow_origin_regex {
            if let Err(e) = regex::Regex::new(r) {
                out.push(format!(
                    "{section} allow_origin_regex `{r}` is not a regular expression: {e}"
                ));
            }
        }
        for m in &self.allow_methods {
            if m.parse::<http::Method>().is_err() {
                out.push(format!(
                    "{section} allow_methods: `{m}` is not an HTTP method"
                ));
            }
        }
        for h in &self.allow_headers {
            if h.parse::<http::HeaderName>().is_err() {
                out.push(format!(
                    "{section} allow_headers: `{h}` is not a header name"
                ));
            }
        }
        out
    }
}
