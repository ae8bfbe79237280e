//! A subgraph that hangs, refuses, fails or answers nonsense, behind the
//! real gateway: the breaker, retries, the request deadline, and errors at
//! the fields the failing subgraph served. The dataset subgraph sits behind
//! a chaos proxy that counts what reaches it.

use std::time::{Duration, Instant};

use e2e::{
    chaos::{Chaos, Fault},
    client::{data, error_codes, gql, http},
    pipeline_support::{create_run, dead_url, text_datasets},
    platform::{eventually, metric, metrics_page, start_gateway, subgraph_entries},
    stack::Subgraphs,
};
use gateway::RunningGateway;
use serde_json::{json, Value};

/// The stitched dataset under each catalog entry: one batched dataset call.
const NESTED: &str = "{ pipelines { items { id dataCatalog { name dataset { id name } } } } }";
const PIPELINES_ONLY: &str = "{ pipelines { items { id } } }";

struct Rig {
    subgraphs: Subgraphs,
    chaos: Chaos,
    gateway: RunningGateway,
    _dir: tempfile::TempDir,
}

impl Rig {
    /// One run with two datasets; the gateway's dataset entry points at the
    /// proxy, with `dataset_toml` appended to it and its timeout set.
    async fn start(timeout_ms: u64, dataset_toml: &str, gateway_toml: &str) -> Rig {
        let subgraphs = Subgraphs::start().await;
        let (a, b) = text_datasets(&subgraphs.dataset_url(), Some("x")).await;
        create_run(
            &subgraphs.pipeline_url(),
            "example00",
            &a,
            &b,
            json!([]),
            json!([]),
        )
        .await;
        let chaos = Chaos::start(&subgraphs.dataset_url()).await;
        let entries: Vec<String> = subgraph_entries(&subgraphs)
            .split("[[subgraphs]]\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                if e.contains("name = \"dataset\"") {
                    let e = e
                        .replace(&subgraphs.dataset_url(), &chaos.url)
                        .replace("timeout_ms = 3000", &format!("timeout_ms = {timeout_ms}"));
                    format!("[[subgraphs]]\n{}\n{dataset_toml}\n\n", e.trim_end())
                } else {
                    format!("[[subgraphs]]\n{e}")
                }
            })
            .collect();
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("config.toml");
        let text = format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\nhot_reload = false\n{gateway_toml}\n\n{}",
            entries.concat()
        );
        std::fs::write(&path, text).expect("write config");
        let gateway = start_gateway(&path).await.unwrap_or_else(|e| panic!("{e}"));
        Rig {
            subgraphs,
            chaos,
            gateway,
            _dir: dir,
        }
    }

    async fn query(&self, query: &str) -> Value {
        gql(&self.gateway.url(), query, json!({})).await
    }

    async fn metric(&self, sample: &str) -> u64 {
        metric(&metrics_page(self.gateway.addr).await, sample)
    }

    async fn ready(&self) -> (u16, Value) {
        let resp = http()
            .get(format!("http://{}/ready", self.gateway.addr))
            .send()
            .await
            .expect("GET /ready");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("JSON body"))
    }

    async fn stop(self) {
        self.gateway.stop().await;
        self.subgraphs.stop().await;
    }
}

/// `code at path (service)` for each error.
fn placed(resp: &Value) -> Vec<String> {
    let mut out: Vec<String> = resp["errors"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let path: Vec<String> = e["path"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|s| s.to_string().trim_matches('"').to_string())
                .collect();
            format!(
                "{} at {} ({})",
                e.pointer("/extensions/code")
                    .and_then(Value::as_str)
                    .unwrap_or("-"),
                path.join("."),
                e.pointer("/extensions/service")
                    .and_then(Value::as_str)
                    .unwrap_or("-")
            )
        })
        .collect();
    out.sort();
    out
}

fn at_both_datasets(code: &str) -> Vec<String> {
    (0..2)
        .map(|i| format!("{code} at pipelines.items.0.dataCatalog.{i}.dataset (dataset)"))
        .collect()
}

#[tokio::test]
async fn a_hung_subgraph_opens_the_breaker_then_its_fields_fail_at_once_until_it_recovers() {
    let rig = Rig::start(
        300,
        "[subgraphs.breaker]\nmin_requests = 3\nfailure_rate = 0.5\ncooldown_ms = 800\nhalf_open_probes = 1\n[subgraphs.retry]\nmax_attempts = 1\n",
        "",
    )
    .await;
    assert_eq!(rig.query(NESTED).await.get("errors"), None);
    rig.chaos.set(Fault::Hang);
    for _ in 0..2 {
        let resp = rig.query(NESTED).await;
        assert_eq!(placed(&resp), at_both_datasets("SUBGRAPH_TIMEOUT"));
    }
    let sent = rig.chaos.requests();
    // Open: no request goes out, and the answer does not wait for a timeout.
    let t = Instant::now();
    let resp = rig.query(NESTED).await;
    assert!(
        t.elapsed() < Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(placed(&resp), at_both_datasets("SUBGRAPH_CIRCUIT_OPEN"));
    assert!(data(&json!({"data": resp["data"]}))["pipelines"]["items"][0]["id"].is_string());
    assert_eq!(rig.chaos.requests(), sent, "nothing sent while open");
    // Fields of other subgraphs are untouched.
    assert_eq!(rig.query(PIPELINES_ONLY).await.get("errors"), None);
    let (status, body) = rig.ready().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["subgraphs"]["dataset"]["breaker"], "open");
    assert_eq!(body["subgraphs"]["pipeline"]["status"], "ok");
    assert_eq!(
        rig.metric("subgraph_circuit_state{subgraph=\"dataset\"}")
            .await,
        2
    );
    assert_eq!(
        rig.metric("subgraph_circuit_transitions_total{subgraph=\"dataset\",to=\"open\"}")
            .await,
        1
    );
    assert!(
        rig.metric("subgraph_circuit_rejected_total{subgraph=\"dataset\"}")
            .await
            >= 1
    );
    // After the cool-down a probe goes through; it succeeds and closes the breaker.
    rig.chaos.set(Fault::Pass);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(rig.query(NESTED).await.get("errors"), None);
    assert_eq!(rig.chaos.requests(), sent + 1);
    let (status, body) = rig.ready().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["subgraphs"]["dataset"]["breaker"], "closed");
    assert_eq!(
        rig.metric("subgraph_circuit_transitions_total{subgraph=\"dataset\",to=\"closed\"}")
            .await,
        1
    );
    rig.stop().await;
}

fn unavailable(status: u16, retry_after: Option<u64>) -> Fault {
    Fault::Status {
        status,
        retry_after,
        json: None,
    }
}

#[tokio::test]
async fn queries_are_retried_on_5xx_429_and_refused_connections_within_a_budget_mutations_never() {
    let ghost = dead_url().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let sdl = dir.path().join("ghost.graphql");
    std::fs::write(&sdl, "type Query { ghost: String }").expect("write SDL");
    let ghost_entry = format!(
        "[[subgraphs]]\nname = \"ghost\"\nurl = \"{ghost}\"\nschema_file = \"{}\"\n[subgraphs.retry]\nbackoff_ms = 10\n",
        sdl.display()
    );
    let rig = Rig::start(
        3_000,
        &format!("[subgraphs.breaker]\nenabled = false\n[subgraphs.retry]\nmax_attempts = 3\nbackoff_ms = 20\nbudget_min = 3\nbudget_ratio = 0.0\n\n{ghost_entry}"),
        "",
    )
    .await;
    let sent = || rig.chaos.requests();

    let before = sent();
    rig.chaos.script([unavailable(503, None)]);
    assert_eq!(rig.query(NESTED).await.get("errors"), None);
    assert_eq!(sent() - before, 2, "one 503, one retry");

    let before = sent();
    rig.chaos.script([unavailable(429, Some(1))]);
    let t = Instant::now();
    assert_eq!(rig.query(NESTED).await.get("errors"), None);
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert_eq!(sent() - before, 2);

    // A `Retry-After` longer than `max_backoff_ms` (2 s): no retry, no wait.
    let before = sent();
    rig.chaos.script([unavailable(429, Some(30))]);
    let t = Instant::now();
    let resp = rig.query(NESTED).await;
    assert_eq!(placed(&resp), at_both_datasets("SUBGRAPH_HTTP_ERROR"));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(sent() - before, 1);

    // A mutation is sent once, whatever the answer.
    let before = sent();
    rig.chaos.script([unavailable(503, None)]);
    let resp = rig
        .query(
            "mutation { createDataset(dataset: {name: \"m\", type: \"text.TextDataset\"}) { id } }",
        )
        .await;
    assert_eq!(error_codes(&resp), ["SUBGRAPH_HTTP_ERROR"]);
    assert_eq!(sent() - before, 1, "mutations are never retried");

    // Two retries spent of a budget of three: the third is the last.
    let before = sent();
    rig.chaos.set(unavailable(503, None));
    let resp = rig.query(NESTED).await;
    assert_eq!(placed(&resp), at_both_datasets("SUBGRAPH_HTTP_ERROR"));
    assert_eq!(sent() - before, 2, "one retry left in the budget");
    assert_eq!(
        rig.metric("subgraph_retries_total{subgraph=\"dataset\"}")
            .await,
        3
    );
    assert_eq!(
        rig.metric("subgraph_retry_budget_exhausted_total{subgraph=\"dataset\"}")
            .await,
        1
    );

    // Refused connections are retried too (the default budget).
    let resp = rig.query("{ ghost }").await;
    assert_eq!(error_codes(&resp), ["SUBGRAPH_UNAVAILABLE"]);
    assert_eq!(
        rig.metric("subgraph_retries_total{subgraph=\"ghost\"}")
            .await,
        2
    );
    rig.stop().await;
}

#[tokio::test]
async fn the_request_deadline_bounds_every_level_of_a_hung_subgraph_and_answers_504() {
    let rig = Rig::start(
        3_000,
        "[subgraphs.breaker]\nenabled = false\n",
        "request_timeout_ms = 700",
    )
    .await;
    rig.chaos.set(Fault::Hang);
    let t = Instant::now();
    let resp = http()
        .post(rig.gateway.url())
        .json(&json!({"query": NESTED}))
        .send()
        .await
        .expect("POST");
    let elapsed = t.elapsed();
    assert_eq!(resp.status().as_u16(), 504);
    let body: Value = resp.json().await.expect("JSON");
    assert!(
        elapsed >= Duration::from_millis(650) && elapsed < Duration::from_millis(1_500),
        "answered after {elapsed:?}, not the subgraph's 3 s timeout"
    );
    assert_eq!(placed(&body), at_both_datasets("GATEWAY_TIMEOUT"));
    // The data complete by then is there.
    let item = &body["data"]["pipelines"]["items"][0];
    assert!(item["id"].is_string(), "{body}");
    assert_eq!(item["dataCatalog"][0]["dataset"], Value::Null);
    rig.stop().await;
}

fn wrong_type(mut v: Value) -> Value {
    if let Some(first) = v.pointer_mut("/data/_stitch_0/0") {
        first["name"] = json!(42);
    }
    v
}

#[tokio::test]
async fn malformed_and_failed_answers_become_errors_at_the_fields_that_subgraph_served() {
    let rig = Rig::start(
        2_000,
        "max_response_bytes = 1048576\n[subgraphs.breaker]\nenabled = false\n[subgraphs.retry]\nmax_attempts = 1\n",
        "",
    )
    .await;
    let malformed = at_both_datasets("SUBGRAPH_MALFORMED_RESPONSE");
    for (what, fault) in [
        (
            "data null without errors",
            Fault::Body(json!({"data": null})),
        ),
        ("an empty object", Fault::Body(json!({}))),
        ("data without the call", Fault::Body(json!({"data": {}}))),
        (
            "errors that is not a list",
            Fault::Body(json!({"data": {}, "errors": "boom"})),
        ),
    ] {
        rig.chaos.script([fault]);
        let resp = rig.query(NESTED).await;
        assert_eq!(placed(&resp), malformed, "{what}: {resp}");
    }

    rig.chaos.script([Fault::Rewrite(wrong_type)]);
    let resp = rig.query(NESTED).await;
    assert_eq!(
        placed(&resp),
        ["SUBGRAPH_INVALID_VALUE at pipelines.items.0.dataCatalog.0.dataset.name (dataset)"],
        "{resp}"
    );
    assert_eq!(
        resp["data"]["pipelines"]["items"][0]["dataCatalog"][0]["dataset"],
        Value::Null
    );

    // A 500 with a GraphQL body: its errors, at the client's paths.
    rig.chaos.script([Fault::Status {
        status: 500,
        retry_after: None,
        json: Some(json!({"errors": [{"message": "db down", "path": ["_stitch_0", 1]}]})),
    }]);
    let resp = rig.query(NESTED).await;
    assert_eq!(
        placed(&resp),
        ["- at pipelines.items.0.dataCatalog.1.dataset (dataset)"],
        "{resp}"
    );
    assert_eq!(resp["errors"][0]["message"], "db down");

    // An error without a path from a nested fetch lands on the fields it served.
    rig.chaos.script([Fault::Body(
        json!({"data": {"_stitch_0": null}, "errors": [{"message": "rate limited"}]}),
    )]);
    let resp = rig.query(NESTED).await;
    assert_eq!(placed(&resp), at_both_datasets("-"), "{resp}");

    // An answer that never ends is cut at `max_response_bytes`.
    rig.chaos.script([Fault::Endless]);
    let t = Instant::now();
    let resp = rig.query(NESTED).await;
    assert_eq!(
        placed(&resp),
        at_both_datasets("SUBGRAPH_RESPONSE_TOO_LARGE"),
        "{resp}"
    );
    assert!(
        t.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        t.elapsed()
    );
    rig.stop().await;
}

#[tokio::test]
async fn while_the_schema_is_built_health_and_ready_answer_instead_of_hanging() {
    let subgraphs = Subgraphs::start().await;
    let chaos = Chaos::start(&subgraphs.dataset_url()).await;
    chaos.set(unavailable(503, None));
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.toml");
    let entries = subgraph_entries(&subgraphs).replace(&subgraphs.dataset_url(), &chaos.url);
    std::fs::write(
        &path,
        format!("[gateway]\nlisten = \"127.0.0.1:0\"\nhot_reload = false\n\n{entries}"),
    )
    .expect("write config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let loaded = gateway::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let starting = tokio::spawn(gateway::start_on(loaded, listener));
    let base = format!("http://{addr}");
    let health: Value = eventually(Duration::from_secs(5), "/health while starting", || async {
        let r = http().get(format!("{base}/health")).send().await.ok()?;
        r.json().await.ok()
    })
    .await;
    assert_eq!(health["status"], "starting");
    let ready = http()
        .get(format!("{base}/ready"))
        .send()
        .await
        .expect("/ready");
    assert_eq!(ready.status(), 503);
    let early = http()
        .post(format!("{base}/graphql"))
        .json(&json!({"query": PIPELINES_ONLY}))
        .send()
        .await
        .expect("POST");
    assert_eq!(early.status(), 503);
    let body: Value = early.json().await.expect("JSON");
    assert_eq!(error_codes(&body), ["GATEWAY_STARTING"]);
    assert!(
        !starting.is_finished(),
        "still introspecting the dataset subgraph"
    );

    chaos.set(Fault::Pass);
    let gw = starting
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("{e}"));
    let ready = http()
        .get(format!("{base}/ready"))
        .send()
        .await
        .expect("/ready");
    assert_eq!(ready.status(), 200);
    let resp = gql(&gw.url(), PIPELINES_ONLY, json!({})).await;
    assert_eq!(resp.get("errors"), None, "{resp}");
    gw.stop().await;
    subgraphs.stop().await;
}

#[tokio::test]
async fn internal_details_stay_in_the_log_and_masked_subgraphs_say_only_who() {
    let rig = Rig::start(
        2_000,
        "include_subgraph_errors = false\n[subgraphs.breaker]\nenabled = false\n[subgraphs.retry]\nmax_attempts = 1\n",
        "",
    )
    .await;
    // The dataset subgraph's own error: withheld, with its name and the request id.
    rig.chaos.script([Fault::Body(json!({
        "data": {"_stitch_0": null},
        "errors": [{"message": "row 7 of table secrets is locked", "path": ["_stitch_0"], "extensions": {"code": "DB_LOCKED", "table": "secrets"}}]
    }))]);
    let resp = http()
        .post(rig.gateway.url())
        .header("x-request-id", "mask-1")
        .json(&json!({"query": NESTED}))
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.headers()["x-request-id"], "mask-1");
    let body: Value = resp.json().await.expect("JSON");
    let text = body.to_string();
    assert!(
        !text.contains("secrets") && !text.contains("_stitch_"),
        "{text}"
    );
    assert_eq!(placed(&body), at_both_datasets("SUBGRAPH_ERROR"));
    assert_eq!(body["errors"][0]["extensions"]["requestId"], "mask-1");

    // A transport failure: the client learns which subgraph and the request
    // id, not the socket error or the address.
    rig.chaos.script([Fault::Body(json!({"data": [1]}))]);
    let body = rig.query(NESTED).await;
    assert_eq!(
        placed(&body),
        at_both_datasets("SUBGRAPH_MALFORMED_RESPONSE")
    );
    assert!(!body.to_string().contains("not an object"), "{body}");
    assert!(
        body["errors"][0]["extensions"]["requestId"].is_string(),
        "{body}"
    );
    rig.stop().await;
}

/// A second dataset service over the stack's store, on `listener`.
async fn dataset_replica(
    stack: &Subgraphs,
    listener: tokio::net::TcpListener,
) -> subgraphs::common::RunningService {
    let config = subgraphs::dataset::DatasetConfig {
        listen: listener.local_addr().expect("addr").to_string(),
        database: stack.database("dataset.sqlite"),
        data_dir: Some(stack.dir().join("datasets")),
        content_url: None,
        content_options: Default::default(),
        public_url: None,
        signing_secret: e2e::stack::SIGNING_SECRET.into(),
        max_expires_in_sec: 86_400,
        max_upload_bytes: 10 * 1024 * 1024,
        http: Default::default(),
        cors: Default::default(),
        service_token: Some(e2e::stack::SERVICE_TOKEN.into()),
        authorization: subgraphs::common::rbac::Authorization::allow_all(),
    };
    subgraphs::dataset::start(config, listener)
        .await
        .unwrap_or_else(|e| panic!("start the dataset replica: {e}"))
}

/// GraphQL requests a service has received (its `/metrics`).
async fn received(url: &str) -> u64 {
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/graphql")
        .parse()
        .expect("service address");
    metric(&metrics_page(addr).await, "graphql_requests_received_total")
}

#[tokio::test]
async fn requests_go_round_robin_over_replicas_and_skip_one_that_is_down_until_it_is_back() {
    let stack = Subgraphs::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let replica_addr = listener.local_addr().expect("addr");
    let replica = dataset_replica(&stack, listener).await;
    let replica_url = replica.url();
    let primary_url = stack.dataset_url();
    let dir = tempfile::tempdir().expect("temp dir");
    let entries = subgraph_entries(&stack).replace(
        &format!("url = \"{primary_url}\"\n"),
        &format!("url = \"{primary_url}\"\nreplicas = [\"{replica_url}\"]\n"),
    );
    assert!(entries.contains("replicas"), "{entries}");
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        format!("[gateway]\nlisten = \"127.0.0.1:0\"\n\n{entries}"),
    )
    .expect("config");
    let gw = start_gateway(&path).await.unwrap_or_else(|e| panic!("{e}"));
    let ask = || async {
        let resp = gql(&gw.url(), "{ datasets { total } }", json!({})).await;
        assert!(resp.get("errors").is_none(), "{resp}");
    };

    // Both endpoints serve.
    let before = (received(&primary_url).await, received(&replica_url).await);
    for _ in 0..10 {
        ask().await;
    }
    let after = (received(&primary_url).await, received(&replica_url).await);
    assert!(
        after.0 > before.0 && after.1 > before.1,
        "{before:?} -> {after:?}"
    );

    // One goes away: every query still answers (the retry takes the other).
    replica.stop().await;
    for _ in 0..10 {
        ask().await;
    }

    // It comes back on the same address: it gets requests again.
    let listener = tokio::net::TcpListener::bind(replica_addr)
        .await
        .expect("rebind");
    let replica = dataset_replica(&stack, listener).await;
    let back = received(&replica_url).await;
    eventually(
        Duration::from_secs(10),
        "the replica serves again",
        || async {
            ask().await;
            (received(&replica_url).await > back + 1).then_some(())
        },
    )
    .await;
    replica.stop().await;
    gw.stop().await;
    stack.stop().await;
}

/// The connections to a subgraph are kept: requests one after another
/// share one, a schema reload keeps them, and at most
/// `max_connections_per_host` requests reach a host at once (the rest
/// wait for a connection instead of opening more).
#[tokio::test]
async fn subgraph_connections_are_kept_across_requests_and_reloads_and_capped_per_host() {
    let rig = Rig::start(
        3_000,
        "[subgraphs.breaker]\nenabled = false\n",
        "max_connections_per_host = 2\ndedupe_subgraph_requests = false",
    )
    .await;
    let before = rig.chaos.connections();
    let sent = rig.chaos.requests();
    for _ in 0..5 {
        assert_eq!(rig.query(NESTED).await.get("errors"), None);
    }
    assert_eq!(
        rig.chaos.requests() - sent,
        5,
        "one dataset request per query"
    );
    assert_eq!(rig.chaos.connections() - before, 1, "one kept connection");

    // The reload introspects the subgraph through its own client: only
    // the queries after it are counted.
    rig.gateway
        .reload()
        .await
        .expect("a reload of the same config");
    let reloaded = rig.chaos.connections();
    for _ in 0..3 {
        assert_eq!(rig.query(NESTED).await.get("errors"), None);
    }
    assert_eq!(
        rig.chaos.connections(),
        reloaded,
        "the kept connection outlives the reload"
    );

    rig.chaos.set(Fault::Slow(Duration::from_millis(300)));
    let answers = futures::future::join_all((0..6).map(|_| rig.query(NESTED))).await;
    for a in &answers {
        assert_eq!(a.get("errors"), None, "{a}");
    }
    assert_eq!(rig.chaos.most_in_flight(), 2, "the cap, reached and kept");
    assert_eq!(
        rig.chaos.connections() - reloaded,
        1,
        "a second connection, and no more"
    );
    rig.stop().await;
}
