//! JWT authentication through the real gateway: tokens signed by the test
//! (RSA, ECDSA P-256, Ed25519, HMAC) against a JWKS served by the test;
//! claims reach a real subgraph as headers that clients cannot forge; bad
//! or missing tokens are 401 over HTTP and 4403 over WebSocket, and cost no
//! subgraph call.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering::Relaxed},
        Arc, RwLock,
    },
    time::Duration,
};

use async_graphql::{Context, EmptyMutation, EmptySubscription, Object, Schema};
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::{extract::State, http::HeaderMap, routing::get, routing::post, Router};
use base64::Engine as _;
use e2e::{
    client::{data, error_codes, http, Protocol},
    platform::start_gateway,
    ws_support::{Received, WsClient},
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use tokio::net::TcpListener;

const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "gateway";

/// A signing key and its public JWK.
struct Signer {
    kid: &'static str,
    alg: Algorithm,
    key: EncodingKey,
    jwk: Value,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn ed25519(kid: &'static str) -> Signer {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("ed25519 key");
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("ed25519 pair");
    Signer {
        kid,
        alg: Algorithm::EdDSA,
        key: EncodingKey::from_ed_der(pkcs8.as_ref()),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref()), "kid": kid, "use": "sig"}),
    }
}

fn p256(kid: &'static str) -> Signer {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("P-256 key");
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .expect("P-256 pair");
    // Uncompressed point: 0x04 || x || y.
    let point = pair.public_key().as_ref();
    Signer {
        kid,
        alg: Algorithm::ES256,
        key: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..]), "kid": kid}),
    }
}

/// An RSA key from `openssl` (ring cannot generate RSA keys).
fn rsa(kid: &'static str, dir: &std::path::Path) -> Signer {
    let path = dir.join(format!("{kid}.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&path)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl genpkey (Debian package `openssl`)");
    assert!(status.success());
    let out = std::process::Command::new("openssl")
        .args(["rsa", "-noout", "-modulus", "-in"])
        .arg(&path)
        .output()
        .expect("openssl rsa -modulus");
    let text = String::from_utf8_lossy(&out.stdout);
    let modulus = text.trim().trim_start_matches("Modulus=");
    let n = hex::decode(modulus).expect("hex modulus");
    let pem = std::fs::read(&path).expect("read the key");
    Signer {
        kid,
        alg: Algorithm::RS256,
        key: EncodingKey::from_rsa_pem(&pem).expect("RSA PEM"),
        jwk: json!({"kty": "RSA", "n": b64(&n), "e": "AQAB", "kid": kid, "alg": "RS256"}),
    }
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// A token for `claims` (issuer, audience and a 5-minute expiry unless given).
fn sign(s: &Signer, claims: Value) -> String {
    let mut all = json!({"iss": ISSUER, "aud": AUDIENCE, "exp": now() + 300});
    for (k, v) in claims.as_object().cloned().unwrap_or_default() {
        all[k] = v;
    }
    let header = Header {
        kid: Some(s.kid.to_string()),
        ..Header::new(s.alg)
    };
    jsonwebtoken::encode(&header, &all, &s.key).expect("sign")
}

/// Serves `/jwks.json` from a document the test can change; counts fetches.
struct Jwks {
    url: String,
    keys: Arc<RwLock<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

async fn jwks(keys: Vec<Value>) -> Jwks {
    let keys = Arc::new(RwLock::new(keys));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (k, f) = (keys.clone(), fetches.clone());
    let app = Router::new().route(
        "/jwks.json",
        get(move || {
            let (k, f) = (k.clone(), f.clone());
            async move {
                f.fetch_add(1, Relaxed);
                let keys = k.read().expect("jwks lock").clone();
                axum::Json(json!({ "keys": keys }))
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/jwks.json", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Jwks {
        url,
        keys,
        fetches,
        task,
    }
}

struct Probe;

#[Object]
impl Probe {
    /// The identity headers this subgraph received.
    async fn whoami(&self, ctx: &Context<'_>) -> String {
        let h = ctx.data_unchecked::<HeaderMap>();
        let get = |k: &str| {
            h.get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string()
        };
        format!("{}|{}", get("x-forwarded-email"), get("x-forwarded-groups"))
    }
}

/// A real subgraph that tells which identity headers it got; counts requests.
async fn probe() -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let schema = Schema::new(Probe, EmptyMutation, EmptySubscription);
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let app = Router::new()
        .route(
            "/graphql",
            post(
                move |State(schema): State<Schema<Probe, EmptyMutation, EmptySubscription>>,
                      headers: HeaderMap,
                      req: GraphQLRequest| {
                    let counted = counted.clone();
                    async move {
                        counted.fetch_add(1, Relaxed);
                        GraphQLResponse::from(schema.execute(req.into_inner().data(headers)).await)
                    }
                },
            ),
        )
        .with_state(schema);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/graphql", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, calls, task)
}

/// A gateway over the probe with `[gateway.jwt]` = `jwt`.
async fn gateway(dir: &std::path::Path, probe: &str, jwt: &str) -> gateway::RunningGateway {
    std::fs::write(dir.join("probe.graphql"), "type Query { whoami: String! }").expect("sdl");
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\nhot_reload = false\n\n[gateway.jwt]\n{jwt}\n[gateway.jwt.forward_claims]\nemail = \"X-Forwarded-Email\"\ngroups = \"x-forwarded-groups\"\n\n[[subgraphs]]\nname = \"probe\"\nurl = \"{probe}\"\nschema_file = \"probe.graphql\"\n"
        ),
    )
    .expect("config");
    start_gateway(&path).await.unwrap_or_else(|e| panic!("{e}"))
}

/// Posts `{ whoami }` with `token` (and any extra headers): status and body.
async fn whoami(url: &str, token: Option<&str>, extra: &[(&str, &str)]) -> (u16, Value, String) {
    let mut req = http().post(url).json(&json!({ "query": "{ whoami }" }));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("answered");
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, resp.json().await.expect("JSON body"), challenge)
}

fn first_message(resp: &Value) -> String {
    resp["errors"][0]["message"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn jwt_tokens_are_verified_and_their_claims_reach_the_subgraphs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let signers = [rsa("rsa", dir.path()), p256("ec"), ed25519("ed")];
    let keys = jwks(signers.iter().map(|s| s.jwk.clone()).collect()).await;
    let (probe_url, calls, probe_task) = probe().await;
    let gw = gateway(
        dir.path(),
        &probe_url,
        &format!(
            "jwks_url = \"{}\"\nissuers = [\"{ISSUER}\"]\naudiences = [\"{AUDIENCE}\"]\nrequired = true\n",
            keys.url
        ),
    )
    .await;
    let url = gw.url();

    // Every algorithm; the claims arrive as headers, a forged one is replaced.
    for s in &signers {
        let t = sign(
            s,
            json!({"email": format!("{}@example.com", s.kid), "groups": ["admin", "dev"]}),
        );
        let (status, resp, _) =
            whoami(&url, Some(&t), &[("x-forwarded-email", "forged@evil")]).await;
        assert_eq!(status, 200, "{}: {resp}", s.kid);
        assert_eq!(
            data(&resp)["whoami"],
            format!("{}@example.com|admin,dev", s.kid)
        );
    }

    // Refusals: 401, the reason, and no subgraph call.
    let before = calls.load(Relaxed);
    let rsa_signer = &signers[0];
    // Another RSA key under the same kid: its signature does not verify.
    let other = dir.path().join("impostor");
    std::fs::create_dir_all(&other).expect("dir");
    let impostor = rsa("rsa", &other);
    let cases = [
        (None, "authentication required"),
        (
            Some(sign(rsa_signer, json!({"exp": now() - 3600}))),
            "expired",
        ),
        (
            Some(sign(rsa_signer, json!({"aud": "someone-else"}))),
            "audience",
        ),
        (
            Some(sign(rsa_signer, json!({"iss": "https://evil.test"}))),
            "issuer",
        ),
        (
            Some(sign(&impostor, json!({}))),
            "signature does not verify",
        ),
        (Some("garbage".to_string()), "not a JWT"),
    ];
    for (token, want) in cases {
        let (status, resp, challenge) = whoami(&url, token.as_deref(), &[]).await;
        assert_eq!(status, 401, "{want}: {resp}");
        assert_eq!(error_codes(&resp), ["UNAUTHENTICATED"], "{resp}");
        assert!(first_message(&resp).contains(want), "{want}: {resp}");
        assert!(challenge.starts_with("Bearer"), "{challenge}");
    }
    assert_eq!(
        calls.load(Relaxed),
        before,
        "a refused request reached the subgraph"
    );

    // A key added to the JWKS later is fetched when a token names it.
    let rotated = ed25519("rotated");
    keys.keys
        .write()
        .expect("jwks lock")
        .push(rotated.jwk.clone());
    let fetched = keys.fetches.load(Relaxed);
    let t = sign(&rotated, json!({"email": "new@example.com"}));
    let (status, resp, _) = whoami(&url, Some(&t), &[]).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(data(&resp)["whoami"], "new@example.com|-");
    assert_eq!(keys.fetches.load(Relaxed), fetched + 1);

    // WebSocket: the token in connection_init; without one, 4403.
    let ws_url = gw.ws_url();
    let mut ws = WsClient::open(&ws_url, Protocol::GraphqlTransportWs).await;
    let t = sign(
        &signers[1],
        json!({"email": "ws@example.com", "groups": ["ops"]}),
    );
    ws.init(json!({ "Authorization": format!("Bearer {t}") }))
        .await;
    ws.subscribe("1", "{ whoami }", json!({})).await;
    let next = ws.recv_op(Duration::from_secs(10)).await;
    assert_eq!(
        next["payload"]["data"]["whoami"], "ws@example.com|ops",
        "{next}"
    );
    ws.close().await;
    let mut ws = WsClient::open(&ws_url, Protocol::GraphqlTransportWs).await;
    ws.send(json!({ "type": "connection_init", "payload": {} }))
        .await;
    let (code, reason) = ws.expect_close(Duration::from_secs(10)).await;
    assert_eq!(code, 4403);
    assert!(reason.contains("authentication required"), "{reason}");
    let mut ws = WsClient::open(&ws_url, Protocol::GraphqlTransportWs).await;
    let expired = sign(&signers[2], json!({"exp": now() - 3600}));
    ws.send(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {expired}") } }))
        .await;
    match ws.recv(Duration::from_secs(10)).await {
        Received::Closed(Some((4403, reason))) => assert!(reason.contains("expired"), "{reason}"),
        other => panic!("expected 4403, got {other:?}"),
    }

    gw.stop().await;
    probe_task.abort();
    keys.task.abort();
}

#[tokio::test]
async fn without_a_required_token_anonymous_requests_run_and_cannot_forge_claims() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (probe_url, _calls, probe_task) = probe().await;
    let gw = gateway(
        dir.path(),
        &probe_url,
        "secret = \"a-shared-test-secret\"\n",
    )
    .await;
    let url = gw.url();

    let (status, resp, _) = whoami(&url, None, &[("x-forwarded-email", "forged@evil")]).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(data(&resp)["whoami"], "-|-");

    let hs = |secret: &str| {
        let claims = json!({"exp": now() + 60, "email": "h@example.com"});
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("sign")
    };
    let (status, resp, _) = whoami(&url, Some(&hs("a-shared-test-secret")), &[]).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(data(&resp)["whoami"], "h@example.com|-");
    // A token that is present but bad is refused even though none is required.
    let (status, resp, challenge) = whoami(&url, Some(&hs("wrong")), &[]).await;
    assert_eq!(status, 401, "{resp}");
    assert!(first_message(&resp).contains("signature"), "{resp}");
    assert_eq!(challenge, "Bearer error=\"invalid_token\"");
    gw.stop().await;
    probe_task.abort();
}

/// Posts `query` with a plain client (no service token), with `headers`.
async fn plain_gql(url: &str, query: &str, variables: Value, headers: &[(&str, String)]) -> Value {
    let mut req = reqwest::Client::new()
        .post(url)
        .json(&json!({ "query": query, "variables": variables }));
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    req.send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON body")
}

#[tokio::test]
async fn the_services_authorize_each_action_by_the_groups_in_the_callers_token() {
    const SECRET: &str = "rbac-test-secret";
    let rules: subgraphs::common::rbac::Authorization = toml::from_str(
        "default = [\"admins\"]\n[actions]\nread_pipeline = [\"readers\", \"writers\"]\nread_dataset = [\"readers\", \"writers\"]\ncreate_dataset = [\"writers\"]\ncreate_pipeline = [\"writers\"]\ncreate_upload_url = [\"writers\"]\nread_logs = [\"readers\", \"writers\"]\n",
    )
    .expect("rules");
    let platform = e2e::platform::Platform::start_with(
        e2e::stack::SubgraphsOptions {
            authorization: rules,
            ..Default::default()
        },
        &format!("[gateway.jwt]\nsecret = \"{SECRET}\"\n[gateway.jwt.forward_claims]\ngroups = \"x-forwarded-groups\"\n"),
    )
    .await;
    let url = platform.gateway.url();
    let bearer = |groups: &[&str]| {
        let claims = json!({"exp": now() + 300, "sub": "u", "groups": groups});
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("sign");
        vec![("authorization", format!("Bearer {t}"))]
    };
    const TOTAL: &str = "{ datasets { total } }";
    const CREATE: &str =
        "mutation { createDataset(dataset: { name: \"rbac\", type: \"text.TextDataset\" }) { id } }";

    // Readers read, and may not write: FORBIDDEN, with who may.
    let resp = plain_gql(&url, TOTAL, json!({}), &bearer(&["readers"])).await;
    let before = data(&resp)["datasets"]["total"].as_i64().expect("total");
    let resp = plain_gql(&url, CREATE, json!({}), &bearer(&["readers"])).await;
    assert_eq!(error_codes(&resp), ["FORBIDDEN"], "{resp}");
    assert!(
        first_message(&resp).contains("`create_dataset` is allowed to the groups writers"),
        "{resp}"
    );

    // Anonymous callers, and forged group headers, get nothing.
    let forged = vec![("x-forwarded-groups", "writers,admins".to_string())];
    for headers in [vec![], forged] {
        let resp = plain_gql(&url, TOTAL, json!({}), &headers).await;
        assert_eq!(error_codes(&resp), ["FORBIDDEN"], "{resp}");
        let resp = plain_gql(&url, CREATE, json!({}), &headers).await;
        assert_eq!(error_codes(&resp), ["FORBIDDEN"], "{resp}");
    }

    // Writers write; nothing was written by the refused calls.
    let resp = plain_gql(&url, CREATE, json!({}), &bearer(&["writers"])).await;
    assert!(data(&resp)["createDataset"]["id"].is_string(), "{resp}");
    let resp = plain_gql(&url, TOTAL, json!({}), &bearer(&["writers"])).await;
    assert_eq!(data(&resp)["datasets"]["total"].as_i64(), Some(before + 1));

    // Deleting falls to the default: admins only.
    let id = data(&plain_gql(&url, CREATE, json!({}), &bearer(&["writers"])).await)
        ["createDataset"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let delete = "mutation($id: ID!) { deleteDataset(id: $id) { id } }";
    let resp = plain_gql(&url, delete, json!({ "id": id }), &bearer(&["writers"])).await;
    assert_eq!(error_codes(&resp), ["FORBIDDEN"], "{resp}");
    let resp = plain_gql(&url, delete, json!({ "id": id }), &bearer(&["admins"])).await;
    assert_eq!(data(&resp)["deleteDataset"]["id"], id.as_str(), "{resp}");

    // A run by a writer works end to end: the pipeline service reaches the
    // dataset and log services with its service token, not the caller's groups.
    let dataset_url = platform.subgraphs.dataset_url();
    let (text_in, text_out) = e2e::pipeline_support::text_datasets(&dataset_url, Some("hi")).await;
    let create = "mutation($p: PipelineInput!) { createPipeline(pipeline: $p) { id } }";
    let input = json!({ "p": { "name": "example01", "dataCatalog": [
        { "name": "text_in", "datasetId": text_in }, { "name": "text_out", "datasetId": text_out }
    ] } });
    let resp = plain_gql(&url, create, input.clone(), &bearer(&["readers"])).await;
    assert_eq!(error_codes(&resp), ["FORBIDDEN"], "{resp}");
    let resp = plain_gql(&url, create, input, &bearer(&["writers"])).await;
    let run = data(&resp)["createPipeline"]["id"]
        .as_str()
        .expect("run id")
        .to_string();
    e2e::pipeline_support::wait_status(
        &platform.subgraphs.pipeline_url(),
        &run,
        &["SUCCESS"],
        Duration::from_secs(20),
    )
    .await;
    platform.stop().await;
}

#[tokio::test]
async fn the_jwks_is_fetched_again_on_its_timer_so_a_replaced_key_takes_over() {
    let dir = tempfile::tempdir().expect("temp dir");
    let old = ed25519("main");
    let keys = jwks(vec![old.jwk.clone()]).await;
    let (probe_url, _calls, probe_task) = probe().await;
    let gw = gateway(
        dir.path(),
        &probe_url,
        &format!("jwks_url = \"{}\"\njwks_refresh_secs = 1\n", keys.url),
    )
    .await;
    let url = gw.url();
    let t = sign(&old, json!({"email": "old@example.com"}));
    assert_eq!(whoami(&url, Some(&t), &[]).await.0, 200);

    // The same key id now names another key; once the timer has run out,
    // a request starts the refresh, and then the new key is the one that counts.
    let new = ed25519("main");
    *keys.keys.write().expect("jwks lock") = vec![new.jwk.clone()];
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let fetched = keys.fetches.load(Relaxed);
    let _ = whoami(&url, Some(&t), &[]).await;
    e2e::platform::eventually(
        Duration::from_secs(10),
        "the JWKS fetched again",
        || async { (keys.fetches.load(Relaxed) > fetched).then_some(()) },
    )
    .await;
    let fresh = sign(&new, json!({"email": "new@example.com"}));
    e2e::platform::eventually(Duration::from_secs(10), "the new key accepted", || async {
        (whoami(&url, Some(&fresh), &[]).await.0 == 200).then_some(())
    })
    .await;
    let (status, resp, _) = whoami(&url, Some(&t), &[]).await;
    assert_eq!(status, 401, "the replaced key still verifies: {resp}");
    gw.stop().await;
    probe_task.abort();
    keys.task.abort();
}
