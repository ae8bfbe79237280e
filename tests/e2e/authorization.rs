//! `@authenticated`/`@requiresScopes` rules (here from
//! `[gateway.authorization.rules]`) through the real gateway and the three
//! services, with tokens signed by the test: what a caller may not see is
//! null with an `UNAUTHORIZED_FIELD_OR_TYPE` error at its path, is never
//! asked of a subgraph, and an operation with nothing left is refused, over
//! HTTP and WebSocket alike.

use std::time::Duration;

use e2e::{
    client::{data, error_codes, Protocol},
    pipeline_support::{finished_run, wait_status},
    platform::{start_gateway, subgraph_entries, Platform},
    stack::SubgraphsOptions,
    ws_support::{next_type, WsClient},
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const SECRET: &str = "authorization-test-secret";

const GATEWAY: &str = r#"
[gateway.jwt]
secret = "authorization-test-secret"
[gateway.authorization]
scopes_claim = "scp"
[gateway.authorization.rules]
"Pipeline.error" = { requires_scopes = [["runs:debug"], ["admin"]] }
"Dataset" = { authenticated = true }
"Query.logs" = { authenticated = true }
"PipelineEvent.message" = { requires_scopes = [["runs:debug"]] }
"#;

fn token(scopes: Value) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = json!({ "exp": now + 300, "sub": "u", "scp": scopes });
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

async fn post(url: &str, query: &str, variables: Value, token: Option<&str>) -> Value {
    let mut req = reqwest::Client::new()
        .post(url)
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON body")
}

/// `(code, path)` of each error.
fn denials(resp: &Value) -> Vec<(String, Value)> {
    resp["errors"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|e| {
                    (
                        e["extensions"]["code"].as_str().unwrap_or("").to_string(),
                        e["path"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

const RUN: &str =
    "query($id: ID!) { pipeline(id: $id) { id ...Debug dataCatalog { name dataset { id name } } } }
fragment Debug on Pipeline { status error }";

#[tokio::test]
async fn fields_a_token_may_not_see_are_null_with_an_error_and_cost_no_subgraph_call() {
    let p = Platform::start_with(SubgraphsOptions::default(), GATEWAY).await;
    let url = p.url();
    let (run, _, _) = finished_run(
        &p.subgraphs.pipeline_url(),
        &p.subgraphs.dataset_url(),
        json!([]),
    )
    .await;
    let vars = json!({ "id": run });

    // Anonymous: no `error` (scopes), no `dataset` (authenticated), and
    // the dataset subgraph is not asked.
    let datasets_before = p.subgraph_requests("dataset").await;
    let resp = post(&url, RUN, vars.clone(), None).await;
    let pipeline = &resp["data"]["pipeline"];
    assert_eq!(pipeline["id"], run.as_str(), "{resp}");
    assert_eq!(pipeline["status"], "SUCCESS", "{resp}");
    assert!(pipeline["error"].is_null(), "{resp}");
    let catalog = pipeline["dataCatalog"].as_array().expect("catalog");
    assert_eq!(catalog.len(), 2, "{resp}");
    assert!(
        catalog
            .iter()
            .all(|b| b["dataset"].is_null() && b["name"].is_string()),
        "{resp}"
    );
    assert_eq!(
        denials(&resp),
        [
            (
                "UNAUTHORIZED_FIELD_OR_TYPE".into(),
                json!(["pipeline", "error"])
            ),
            (
                "UNAUTHORIZED_FIELD_OR_TYPE".into(),
                json!(["pipeline", "dataCatalog", "dataset"])
            ),
        ],
        "{resp}"
    );
    let message = resp["errors"][0]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("`Pipeline.error` requires the scopes [runs:debug] or [admin]"),
        "{message}"
    );
    assert_eq!(p.subgraph_requests("dataset").await, datasets_before);

    // Authenticated (scopes as a list) sees the datasets, not `error`.
    let reader = token(json!(["runs:read"]));
    let resp = post(&url, RUN, vars.clone(), Some(&reader)).await;
    let catalog = resp["data"]["pipeline"]["dataCatalog"].clone();
    assert!(
        catalog
            .as_array()
            .is_some_and(|c| c.iter().all(|b| b["dataset"]["id"].is_string())),
        "{resp}"
    );
    assert_eq!(
        denials(&resp),
        [(
            "UNAUTHORIZED_FIELD_OR_TYPE".into(),
            json!(["pipeline", "error"])
        )],
        "{resp}"
    );
    assert!(p.subgraph_requests("dataset").await > datasets_before);

    // The scopes as OAuth's space-separated string: everything.
    let debugger = token(json!("runs:read runs:debug"));
    let resp = post(&url, RUN, vars.clone(), Some(&debugger)).await;
    assert!(resp.get("errors").is_none(), "{resp}");
    assert!(data(&resp)["pipeline"]["error"].is_null(), "{resp}");

    // Nothing left to run: refused, and the log subgraph is not asked.
    let logs_before = p.subgraph_requests("log").await;
    let logs = "query($id: ID!) { logs(pipelineId: $id) { items { message } } }";
    let resp = post(&url, logs, vars.clone(), None).await;
    assert_eq!(error_codes(&resp), ["UNAUTHORIZED_FIELD_OR_TYPE"], "{resp}");
    assert!(resp.get("data").is_none_or(Value::is_null), "{resp}");
    assert_eq!(p.subgraph_requests("log").await, logs_before);
    let resp = post(&url, logs, vars, Some(&reader)).await;
    assert!(data(&resp)["logs"]["items"].is_array(), "{resp}");

    // A rule that names nothing public stops the gateway from starting.
    let bad = p.config_dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\n[gateway.authorization.rules]\n\"Pipeline.secret\" = {{ authenticated = true }}\n\"Nope\" = {{ authenticated = true }}\n\"Query.pipelines\" = {{}}\n\n{}",
            subgraph_entries(&p.subgraphs)
        ),
    )
    .expect("write config");
    let refused = match start_gateway(&bad).await {
        Ok(gw) => {
            gw.stop().await;
            panic!("a gateway started with rules naming nothing");
        }
        Err(e) => e.to_string(),
    };
    for problem in [
        "type `Pipeline` has no field `secret`",
        "the public schema has no type `Nope`",
        "`Query.pipelines`: the rule requires nothing",
    ] {
        assert!(refused.contains(problem), "{refused}");
    }
    p.stop().await;
}

/// Starts an `example00` run that sleeps `secs` seconds; its id.
async fn slow_run(p: &Platform, secs: &str) -> String {
    let (input, output) =
        e2e::pipeline_support::text_datasets(&p.subgraphs.dataset_url(), Some("hi")).await;
    let run = e2e::pipeline_support::create_run(
        &p.subgraphs.pipeline_url(),
        "example00",
        &input,
        &output,
        json!([{ "name": "duration", "value": secs }]),
        json!(null),
    )
    .await;
    run["id"].as_str().expect("run id").to_string()
}

/// Every event payload of subscription `id` until its `complete`.
async fn events(c: &mut WsClient, id: &str) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let m = c.recv_op(Duration::from_secs(20)).await;
        match m["type"].as_str() {
            Some("complete") => return out,
            Some(t) if t == next_type(c.protocol) => out.push(m["payload"].clone()),
            _ => panic!("expected an event of {id}, got {m}"),
        }
    }
}

#[tokio::test]
async fn subscriptions_are_filtered_per_event_by_the_token_given_at_connection_init() {
    let p = Platform::start_with(SubgraphsOptions::default(), GATEWAY).await;
    const EVENTS: &str =
        "subscription($id: ID!) { pipelineEvents(id: $id) { pipelineId status message } }";

    // Anonymous: every event, without `message`, an error beside each.
    let run = slow_run(&p, "0.5").await;
    let mut anonymous = WsClient::ready(&p.ws_url(), Protocol::GraphqlTransportWs).await;
    anonymous.subscribe("a", EVENTS, json!({ "id": run })).await;
    let seen = events(&mut anonymous, "a").await;
    assert!(!seen.is_empty());
    for e in &seen {
        let event = &e["data"]["pipelineEvents"];
        assert_eq!(event["pipelineId"], run.as_str(), "{e}");
        assert!(event["message"].is_null(), "{e}");
        assert_eq!(
            denials(e),
            [(
                "UNAUTHORIZED_FIELD_OR_TYPE".into(),
                json!(["pipelineEvents", "message"])
            )],
            "{e}"
        );
    }
    assert_eq!(
        seen.last()
            .map(|e| e["data"]["pipelineEvents"]["status"].clone()),
        Some(json!("SUCCESS"))
    );
    // Only what it may not see: refused at once.
    anonymous
        .subscribe(
            "b",
            "subscription($id: ID!) { pipelineEvents(id: $id) { message } }",
            json!({ "id": run }),
        )
        .await;
    let m = anonymous.recv_op(Duration::from_secs(10)).await;
    assert_eq!(m["type"], "error", "{m}");
    assert_eq!(
        m["payload"][0]["extensions"]["code"], "UNAUTHORIZED_FIELD_OR_TYPE",
        "{m}"
    );
    anonymous.close().await;

    // With the scope in the connection_init token: the messages, no errors.
    let run = slow_run(&p, "0.5").await;
    let mut debugger = WsClient::open(&p.ws_url(), Protocol::GraphqlTransportWs).await;
    debugger
        .init(json!({ "Authorization": format!("Bearer {}", token(json!(["runs:debug"]))) }))
        .await;
    debugger.subscribe("c", EVENTS, json!({ "id": run })).await;
    let seen = events(&mut debugger, "c").await;
    assert!(seen.iter().all(|e| e.get("errors").is_none()), "{seen:#?}");
    assert!(
        seen.iter()
            .any(|e| e["data"]["pipelineEvents"]["message"].is_string()),
        "{seen:#?}"
    );
    debugger.close().await;
    wait_status(
        &p.subgraphs.pipeline_url(),
        &run,
        &["SUCCESS"],
        Duration::from_secs(20),
    )
    .await;
    p.stop().await;
}
