//! JWT authentication: who the caller is, from a signed token.
//!
//! The token comes from a header (`Authorization: Bearer …` by default), a
//! cookie, or a WebSocket `connection_init` payload. Keys come from a JWKS
//! URL (fetched with the schema, refreshed in the background and when a
//! token names a key we do not know), a JWKS file, or a shared secret.
//! Selected claims go to every subgraph as headers; a client can never set
//! those headers itself, with or without a token.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use jsonwebtoken::{
    errors::ErrorKind,
    jwk::{AlgorithmParameters, JwkSet},
    Algorithm, DecodingKey, Validation,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::{config::LoadedConfig, GatewayError};

/// `[gateway.jwt]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// A JWKS endpoint (`https://issuer/.well-known/jwks.json`).
    pub jwks_url: Option<String>,
    /// A JWKS JSON file, read with the config.
    pub jwks_file: Option<PathBuf>,
    /// A shared secret for HS256/HS384/HS512 (use `${VAR}`).
    pub secret: Option<String>,
    /// Accepted `alg` values; empty: every asymmetric one with JWKS keys,
    /// the HS ones with a secret.
    pub algorithms: Vec<String>,
    /// Accepted `iss` values; empty: any.
    pub issuers: Vec<String>,
    /// Accepted `aud` values; empty: `aud` is not checked.
    pub audiences: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway_secs: u64,
    /// Where the token is: this header, after `header_prefix` and a space.
    pub header: String,
    pub header_prefix: String,
    /// Or this cookie, when the header is absent.
    pub cookie: Option<String>,
    /// Refuse requests without a token (401); otherwise they run anonymous.
    pub required: bool,
    /// How often the JWKS URL is fetched again.
    pub jwks_refresh_secs: u64,
    /// Claim (a dotted path for nested ones) -> header sent to every subgraph.
    pub forward_claims: BTreeMap<String, String>,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            jwks_url: None,
            jwks_file: None,
            secret: None,
            algorithms: Vec::new(),
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway_secs: 60,
            header: "authorization".into(),
            header_prefix: "Bearer".into(),
            cookie: None,
            required: false,
            jwks_refresh_secs: 300,
            forward_claims: BTreeMap::new(),
        }
    }
}

/// Why a request is not authenticated; every message is safe for clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    Missing(String),
    Invalid(String),
}

impl AuthError {
    pub fn message(&self) -> &str {
        match self {
            AuthError::Missing(m) | AuthError::Invalid(m) => m,
        }
    }
}

/// A verified token's claims.
#[derive(Debug, Clone)]
pub struct Identity {
    claims: Map<String, Value>,
}

impl Identity {
    /// What the token lets its bearer see: authenticated, with the scopes
    /// of `scopes_claim` (a space-separated string or a list).
    pub fn grants(&self, scopes_claim: &str) -> stitching::authorization::Grants {
        let scopes = match self.claim(scopes_claim) {
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str())
                .map(str::to_owned)
                .collect(),
            _ => Default::default(),
        };
        stitching::authorization::Grants {
            authenticated: true,
            scopes,
        }
    }

    /// A claim by dotted path (`realm_access.roles`).
    fn claim(&self, path: &str) -> Option<&Value> {
        let mut parts = path.split('.');
        let mut v = self.claims.get(parts.next()?)?;
        for p in parts {
            v = v.as_object()?.get(p)?;
        }
        Some(v)
    }
}

const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];
const SYMMETRIC: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
/// A token naming an unknown key refetches the JWKS at most this often.
const MIN_REFETCH: Duration = Duration::from_secs(10);

/// One verification key.
struct Key {
    kid: Option<String>,
    key: DecodingKey,
    /// Which `alg` values it can verify.
    algorithms: Vec<Algorithm>,
}

/// The keys of a JWKS document, skipping (and logging) those we cannot use.
fn keys_of(set: &JwkSet) -> Vec<Key> {
    set.keys
        .iter()
        .filter_map(|jwk| {
            let algorithms: Vec<Algorithm> = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => ASYMMETRIC[..6].to_vec(),
                AlgorithmParameters::EllipticCurve(_) => vec![Algorithm::ES256, Algorithm::ES384],
                AlgorithmParameters::OctetKeyPair(_) => vec![Algorithm::EdDSA],
                AlgorithmParameters::OctetKey(_) => SYMMETRIC.to_vec(),
            };
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => Some(Key {
                    kid: jwk.common.key_id.clone(),
                    key,
                    algorithms,
                }),
                Err(e) => {
                    tracing::warn!(kid = ?jwk.common.key_id, error = %e, "skipping a JWKS key the gateway cannot use");
                    None
                }
            }
        })
        .collect()
}

/// The keys fetched from the JWKS URL, and when.
struct KeyRing {
    keys: Vec<Key>,
    fetched: Instant,
}

pub struct Authenticator {
    config: JwtConfig,
    accepted: Vec<Algorithm>,
    /// The secret's and the JWKS file's keys.
    fixed: Vec<Key>,
    ring: RwLock<Arc<KeyRing>>,
    /// A background refresh is under way.
    refreshing: std::sync::atomic::AtomicBool,
    /// Single flight for JWKS refetches; holds when the last one started.
    fetching: tokio::sync::Mutex<Option<Instant>>,
    http: reqwest::Client,
    /// `forward_claims` as header names, in the same order.
    forwarded: Vec<(String, HeaderName)>,
}

fn config_error(message: String) -> GatewayError {
    GatewayError::Config {
        file: "[gateway.jwt]".into(),
        message,
    }
}

impl Authenticator {
    /// Builds the key ring from the config (fetching the JWKS URL); `None`
    /// when `[gateway.jwt]` is absent.
    pub async fn build(
        loaded: &LoadedConfig,
        http: &reqwest::Client,
    ) -> Result<Option<Arc<Authenticator>>, GatewayError> {
        let Some(config) = loaded.config.gateway.jwt.clone() else {
            return Ok(None);
        };
        let accepted = accepted_algorithms(&config)?;
        let mut fixed = Vec::new();
        if let Some(secret) = &config.secret {
            fixed.push(Key {
                kid: None,
                key: DecodingKey::from_secret(secret.as_bytes()),
                algorithms: SYMMETRIC.to_vec(),
            });
        }
        if let Some(file) = &config.jwks_file {
            let path = loaded.resolve(file);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                config_error(format!("jwks_file {}: cannot read it: {e}", path.display()))
            })?;
            let set: JwkSet = serde_json::from_str(&text).map_err(|e| {
                config_error(format!(
                    "jwks_file {}: not a JWKS document: {e}",
                    path.display()
                ))
            })?;
            fixed.extend(keys_of(&set));
        }
        let mut keys = Vec::new();
        if let Some(url) = &config.jwks_url {
            let set = fetch_jwks(http, url).await.map_err(config_error)?;
            keys = keys_of(&set);
        }
        if keys.is_empty() && fixed.is_empty() {
            return Err(config_error(
                "no verification key: set jwks_url, jwks_file (with at least one usable key) or secret".into(),
            ));
        }
        let forwarded = config
            .forward_claims
            .iter()
            .map(|(claim, h)| {
                HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes())
                    .map(|name| (claim.clone(), name))
                    .map_err(|_| {
                        config_error(format!(
                            "forward_claims.{claim} = \"{h}\": not a valid header name"
                        ))
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(Arc::new(Authenticator {
            accepted,
            fixed,
            ring: RwLock::new(Arc::new(KeyRing {
                keys,
                fetched: Instant::now(),
            })),
            // The first unknown `kid` refetches at once; later ones wait `MIN_REFETCH`.
            fetching: tokio::sync::Mutex::new(None),
            refreshing: Default::default(),
            http: http.clone(),
            forwarded,
            config,
        })))
    }

    /// Who sent `headers` (and, over WebSocket, the `connection_init`
    /// payload): `None` for an anonymous request that may run.
    pub async fn identify(
        self: &Arc<Self>,
        headers: &HeaderMap,
        payload: Option<&Value>,
    ) -> Result<Option<Identity>, AuthError> {
        let token = match self.token_in(headers)? {
            Some(t) => Some(t),
            None => self.token_in_payload(payload)?,
        };
        match token {
            Some(t) => self.verify(&t).await.map(Some),
            None if self.config.required => Err(AuthError::Missing(format!(
                "authentication required: send a JWT as `{}: {} <token>`",
                self.config.header, self.config.header_prefix
            ))),
            None => Ok(None),
        }
    }

    /// The headers every subgraph gets from the claims.
    pub fn forwarded_headers(&self) -> impl Iterator<Item = &HeaderName> {
        self.forwarded.iter().map(|(_, h)| h)
    }

    /// The token a request carries, if any: from the header, else the cookie.
    fn token_in(&self, headers: &HeaderMap) -> Result<Option<String>, AuthError> {
        if let Some(v) = headers.get(self.config.header.as_str()) {
            return self.strip_prefix(v.to_str().unwrap_or("")).map(Some);
        }
        let Some(cookie) = &self.config.cookie else {
            return Ok(None);
        };
        Ok(headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| name == cookie)
            .map(|(_, value)| value.to_string()))
    }

    /// The token in a WebSocket `connection_init` payload: a key named like
    /// the header (any case), at the top or under `headers`.
    fn token_in_payload(&self, payload: Option<&Value>) -> Result<Option<String>, AuthError> {
        let Some(Value::Object(map)) = payload else {
            return Ok(None);
        };
        let find = |m: &Map<String, Value>| {
            m.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(&self.config.header))
                .and_then(|(_, v)| v.as_str().map(str::to_owned))
        };
        let value =
            find(map).or_else(|| map.get("headers").and_then(Value::as_object).and_then(find));
        value.map(|v| self.strip_prefix(&v)).transpose()
    }

    fn strip_prefix(&self, value: &str) -> Result<String, AuthError> {
        let prefix = &self.config.header_prefix;
        if prefix.is_empty() {
            return Ok(value.trim().to_string());
        }
        match value.split_once(' ') {
            Some((p, token)) if p.eq_ignore_ascii_case(prefix) && !token.trim().is_empty() => {
                Ok(token.trim().to_string())
            }
            _ => Err(AuthError::Invalid(format!(
                "the `{}` header must be `{prefix} <token>`",
                self.config.header
            ))),
        }
    }

    /// Verifies a token: signature, `alg`, `exp`/`nbf` (with leeway), issuer, audience.
    async fn verify(self: &Arc<Self>, token: &str) -> Result<Identity, AuthError> {
        let head = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::Invalid("the token is not a JWT".into()))?;
        if !self.accepted.contains(&head.alg) {
            return Err(AuthError::Invalid(format!(
                "the token's algorithm {:?} is not accepted",
                head.alg
            )));
        }
        let ring = self.ring();
        let stale = ring.fetched.elapsed() > Duration::from_secs(self.config.jwks_refresh_secs);
        // One background refresh at a time, however many requests see the keys stale.
        if stale
            && !self
                .refreshing
                .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            let me = self.clone();
            tokio::spawn(async move {
                me.refetch(false).await;
                me.refreshing
                    .store(false, std::sync::atomic::Ordering::Release);
            });
        }
        let known = |ring: &KeyRing| {
            self.fixed
                .iter()
                .chain(&ring.keys)
                .any(|k| head.kid.is_none() || k.kid == head.kid)
        };
        let ring = if known(&ring) {
            ring
        } else {
            self.refetch(true).await;
            self.ring()
        };
        let candidates: Vec<&Key> = self
            .fixed
            .iter()
            .chain(&ring.keys)
            .filter(|k| head.kid.is_none() || k.kid == head.kid)
            .filter(|k| k.algorithms.contains(&head.alg))
            .collect();
        if candidates.is_empty() {
            return Err(AuthError::Invalid(match &head.kid {
                Some(kid) => format!("the token is signed with an unknown key (kid `{kid}`)"),
                None => "no key can verify the token's algorithm".into(),
            }));
        }
        let validation = self.validation(head.alg);
        let mut last = AuthError::Invalid("the token's signature does not verify".into());
        for k in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &k.key, &validation) {
                Ok(data) => {
                    return Ok(Identity {
                        claims: data.claims,
                    })
                }
                Err(e) if *e.kind() == ErrorKind::InvalidSignature => continue,
                Err(e) => {
                    last = AuthError::Invalid(reason(e.kind()));
                    break;
                }
            }
        }
        Err(last)
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.config.leeway_secs;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp"]);
        if !self.config.issuers.is_empty() {
            v.set_issuer(&self.config.issuers);
        }
        if self.config.audiences.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&self.config.audiences);
        }
        v
    }

    fn ring(&self) -> Arc<KeyRing> {
        match self.ring.read() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Fetches the JWKS URL again (one fetch at a time; `urgent` ones, for
    /// an unknown `kid`, at most every `MIN_REFETCH`). A failed fetch keeps
    /// the keys we have.
    async fn refetch(&self, urgent: bool) {
        let Some(url) = &self.config.jwks_url else {
            return;
        };
        let mut last = self.fetching.lock().await;
        let refresh = Duration::from_secs(self.config.jwks_refresh_secs);
        let fresh = if urgent {
            last.is_some_and(|t| t.elapsed() < MIN_REFETCH)
        } else {
            self.ring().fetched.elapsed() < refresh
        };
        if fresh {
            return;
        }
        *last = Some(Instant::now());
        match fetch_jwks(&self.http, url).await {
            Ok(set) => {
                let ring = Arc::new(KeyRing {
                    keys: keys_of(&set),
                    fetched: Instant::now(),
                });
                match self.ring.write() {
                    Ok(mut r) => *r = ring,
                    Err(p) => *p.into_inner() = ring,
                }
                tracing::info!(url, "fetched the JWKS");
            }
            Err(e) => {
                tracing::warn!(url, error = %e, "cannot refresh the JWKS; keeping the keys we have")
            }
        }
    }

    /// Sets the forwarded-claim headers from `identity`, after removing any
    /// the client sent.
    pub fn apply(&self, identity: Option<&Identity>, headers: &mut HeaderMap) {
        for (claim, name) in &self.forwarded {
            headers.remove(name);
            let Some(value) = identity.and_then(|i| i.claim(claim)) else {
                continue;
            };
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Array(items) => items
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string())
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                Value::Null => continue,
                other => other.to_string(),
            };
            match HeaderValue::from_str(&text) {
                Ok(v) => {
                    headers.insert(name.clone(), v);
                }
                Err(_) => {
                    tracing::debug!(claim, header = %name, "claim value cannot be a header value; not forwarded")
                }
            }
        }
    }
}

fn accepted_algorithms(config: &JwtConfig) -> Result<Vec<Algorithm>, GatewayError> {
    if config.algorithms.is_empty() {
        let mut all = Vec::new();
        if config.jwks_url.is_some() || config.jwks_file.is_some() {
            all.extend(ASYMMETRIC);
        }
        if config.secret.is_some() {
            all.extend(SYMMETRIC);
        }
        return Ok(all);
    }
    config
        .algorithms
        .iter()
        .map(|a| {
            a.parse::<Algorithm>().map_err(|_| {
                config_error(format!(
                    "algorithms: `{a}` is not a JWT algorithm; use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA, HS256, HS384 or HS512"
                ))
            })
        })
        .collect()
}

async fn fetch_jwks(http: &reqwest::Client, url: &str) -> Result<JwkSet, String> {
    let resp = http
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("cannot fetch the JWKS at {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("the JWKS at {url} answered {}", resp.status()));
    }
    resp.json::<JwkSet>()
        .await
        .map_err(|e| format!("the JWKS at {url} is not a JWKS document: {e}"))
}

/// A client-safe reason for a rejected token.
fn reason(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
        ErrorKind::InvalidIssuer => "the token's issuer is not accepted".into(),
        ErrorKind::InvalidAudience => "the token's audience is not accepted".into(),
        ErrorKind::InvalidSignature => "the token's signature does not verify".into(),
        ErrorKind::InvalidAlgorithm => "the token's algorithm does not match its key".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("the token has no `{c}` claim"),
        _ => "the token is malformed".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn loaded(jwt: JwtConfig) -> LoadedConfig {
        let mut config: crate::config::Config = toml::from_str("").unwrap();
        config.gateway.jwt = Some(jwt);
        LoadedConfig {
            path: None,
            dir: ".".into(),
            config,
        }
    }

    async fn hs(jwt: JwtConfig) -> Arc<Authenticator> {
        let jwt = JwtConfig {
            secret: Some("s3cret".into()),
            ..jwt
        };
        Authenticator::build(&loaded(jwt), &reqwest::Client::new())
            .await
            .unwrap()
            .unwrap()
    }

    fn token(claims: Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[tokio::test]
    async fn checks_signature_expiry_issuer_and_audience() {
        let a = hs(JwtConfig {
            issuers: vec!["https://issuer".into()],
            audiences: vec!["gateway".into()],
            ..Default::default()
        })
        .await;
        let good =
            json!({"exp": now() + 60, "iss": "https://issuer", "aud": "gateway", "email": "a@b.c"});
        assert!(a.verify(&token(good.clone(), "s3cret")).await.is_ok());
        let cases = [
            (token(good.clone(), "other"), "signature does not verify"),
            (
                token(
                    json!({"exp": now() - 600, "iss": "https://issuer", "aud": "gateway"}),
                    "s3cret",
                ),
                "expired",
            ),
            (
                token(
                    json!({"exp": now() + 60, "iss": "https://else", "aud": "gateway"}),
                    "s3cret",
                ),
                "issuer",
            ),
            (
                token(
                    json!({"exp": now() + 60, "iss": "https://issuer", "aud": "other"}),
                    "s3cret",
                ),
                "audience",
            ),
            (
                token(json!({"iss": "https://issuer", "aud": "gateway"}), "s3cret"),
                "no `exp` claim",
            ),
            ("not.a.jwt".into(), "not a JWT"),
        ];
        for (t, want) in cases {
            let e = a.verify(&t).await.unwrap_err();
            assert!(e.message().contains(want), "{want}: {e:?}");
        }
        // within the leeway, an expired token still passes
        let late = json!({"exp": now() - 30, "iss": "https://issuer", "aud": "gateway"});
        assert!(a.verify(&token(late, "s3cret")).await.is_ok());
    }

    #[tokio::test]
    async fn tokens_come_from_the_header_or_the_cookie() {
        let a = hs(JwtConfig {
            cookie: Some("session".into()),
            ..Default::default()
        })
        .await;
        let mut h = HeaderMap::new();
        assert_eq!(a.token_in(&h), Ok(None));
        h.insert(header::COOKIE, HeaderValue::from_static("x=1; session=abc"));
        assert_eq!(a.token_in(&h), Ok(Some("abc".into())));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer xyz"),
        );
        assert_eq!(a.token_in(&h), Ok(Some("xyz".into())));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic xyz"));
        assert!(a
            .token_in(&h)
            .unwrap_err()
            .message()
            .contains("Bearer <token>"));
        let payload = json!({"headers": {"Authorization": "Bearer p"}});
        assert_eq!(a.token_in_payload(Some(&payload)), Ok(Some("p".into())));
        assert_eq!(
            a.token_in_payload(Some(&json!({"authorization": "Bearer q"}))),
            Ok(Some("q".into()))
        );
        assert_eq!(a.token_in_payload(None), Ok(None));
    }

    #[tokio::test]
    async fn claims_become_headers_and_clients_cannot_forge_them() {
        let a = hs(JwtConfig {
            forward_claims: [
                ("email".to_string(), "X-Forwarded-Email".to_string()),
                ("groups".to_string(), "x-forwarded-groups".to_string()),
                ("realm.role".to_string(), "x-role".to_string()),
            ]
            .into(),
            ..Default::default()
        })
        .await;
        let t = token(
            json!({"exp": now() + 60, "email": "a@b.c", "groups": ["admin", "dev"], "realm": {"role": "owner"}}),
            "s3cret",
        );
        let id = a.verify(&t).await.unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-email", HeaderValue::from_static("forged@evil"));
        a.apply(Some(&id), &mut h);
        assert_eq!(h["x-forwarded-email"], "a@b.c");
        assert_eq!(h["x-forwarded-groups"], "admin,dev");
        assert_eq!(h["x-role"], "owner");
        let mut anonymous = HeaderMap::new();
        anonymous.insert("x-forwarded-email", HeaderValue::from_static("forged@evil"));
        a.apply(None, &mut anonymous);
        assert!(anonymous.is_empty());
    }

    #[tokio::test]
    async fn bad_settings_are_named() {
        let err = |jwt: JwtConfig| async move {
            Authenticator::build(&loaded(jwt), &reqwest::Client::new())
                .await
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(err(JwtConfig::default())
            .await
            .contains("no verification key"));
        let bad_alg = JwtConfig {
            secret: Some("x".into()),
            algorithms: vec!["RS999".into()],
            ..Default::default()
        };
        assert!(err(bad_alg)
            .await
            .contains("`RS999` is not a JWT algorithm"));
    }
}
