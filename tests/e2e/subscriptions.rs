//! GraphQL subscriptions through the gateway over real WebSockets, in both
//! subprotocols: events enriched with stitched fields, operations over the
//! socket, every close code, an upstream subgraph going away, the upstream
//! subscription stopping with the client, and 200 concurrent subscriptions.

use std::time::{Duration, Instant};

use e2e::{
    client::{Protocol, Subscription},
    pipeline_support::{create_run, run_logs, text_datasets, wait_logs, wait_status},
    platform::{eventually, metric, Platform},
    stack::SubgraphsOptions,
    ws_support::{next_type, platform_with_log_proxy, Received, WsClient},
};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);

const EVENTS: &str =
    "subscription($id: ID!) { pipelineEvents(id: $id) { pipelineId status node message } }";
const LOGS_ENRICHED: &str =
    "subscription($id: ID!) { pipelineLogs(id: $id) { message level pipeline { status name } } }";
const LOGS: &str = "subscription($id: ID!) { pipelineLogs(id: $id) { id pipelineId message } }";

/// Starts an `example00` run that sleeps `duration` seconds (created on the
/// pipeline subgraph directly); its id.
async fn start_run(p: &Platform, duration: &str) -> String {
    let (text_in, text_out) = text_datasets(&p.subgraphs.dataset_url(), Some("hello")).await;
    let run = create_run(
        &p.subgraphs.pipeline_url(),
        "example00",
        &text_in,
        &text_out,
        json!([{ "name": "duration", "value": duration }]),
        json!(null),
    )
    .await;
    run["id"].as_str().unwrap().to_string()
}

/// A finished `example01` run and its 9 stored log lines.
async fn finished_run(p: &Platform) -> (String, Vec<Value>) {
    let (text_in, text_out) = text_datasets(&p.subgraphs.dataset_url(), Some("hello world")).await;
    let run = create_run(
        &p.subgraphs.pipeline_url(),
        "example01",
        &text_in,
        &text_out,
        json!(null),
        json!(null),
    )
    .await;
    let id = run["id"].as_str().unwrap().to_string();
    wait_status(&p.subgraphs.pipeline_url(), &id, &["SUCCESS"], WAIT).await;
    let lines = wait_logs(&p.subgraphs.log_url(), &id, WAIT, |l| l.len() >= 9).await;
    (id, lines)
}

async fn active_subscriptions(p: &Platform) -> u64 {
    metric(&p.metrics().await, "gateway_subscriptions_active")
}

async fn wait_active(p: &Platform, n: u64) {
    eventually(
        WAIT,
        &format!("gateway_subscriptions_active == {n}"),
        || async { (active_subscriptions(p).await == n).then_some(()) },
    )
    .await;
}

/// The payload of the next `next`/`data` of `id`, or `None` on its `complete`;
/// panics on anything else.
async fn next_event(c: &mut WsClient, id: &str) -> Option<Value> {
    let m = c.recv_op(WAIT).await;
    assert_eq!(m["id"], id, "message of another operation: {m}");
    match m["type"].as_str() {
        Some("complete") => None,
        Some(t) if t == next_type(c.protocol) => Some(m["payload"].clone()),
        _ => panic!("expected an event of {id}, got {m}"),
    }
}

#[tokio::test]
async fn pipeline_events_follow_a_run_to_success_in_both_protocols() {
    let p = Platform::start().await;
    let follow = |protocol: Protocol| {
        let p = &p;
        async move {
            let id = start_run(p, "0.5").await;
            let mut c = WsClient::ready(&p.ws_url(), protocol).await;
            c.subscribe("ev", EVENTS, json!({ "id": id })).await;
            let mut events = Vec::new();
            while let Some(payload) = next_event(&mut c, "ev").await {
                assert!(payload.get("errors").is_none(), "{payload}");
                events.push(payload["data"]["pipelineEvents"].clone());
            }
            // The subgraph ended the stream after the final status: so did the gateway.
            assert!(
                events.iter().all(|e| e["pipelineId"] == id.as_str()),
                "{events:#?}"
            );
            assert_eq!(events.last().unwrap()["status"], "SUCCESS", "{events:#?}");
            assert!(
                events.len() >= 2,
                "saw the run before it ended: {events:#?}"
            );
            c.close().await;
        }
    };
    tokio::join!(
        follow(Protocol::GraphqlTransportWs),
        follow(Protocol::GraphqlWs)
    );
    wait_active(&p, 0).await;
    p.stop().await;
}

#[tokio::test]
async fn live_log_lines_carry_their_pipeline_in_both_protocols() {
    let p = Platform::start().await;
    let follow = |protocol: Protocol| {
        let p = &p;
        async move {
            let id = start_run(p, "1").await;
            let mut c = WsClient::ready(&p.ws_url(), protocol).await;
            c.subscribe("logs", LOGS_ENRICHED, json!({ "id": id }))
                .await;
            let mut lines = Vec::new();
            loop {
                let payload = next_event(&mut c, "logs")
                    .await
                    .expect("log streams do not complete");
                assert!(payload.get("errors").is_none(), "{payload}");
                let line = payload["data"]["pipelineLogs"].clone();
                let last = line["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("run succeeded in ");
                lines.push(line);
                if last {
                    break;
                }
            }
            for l in &lines {
                assert_eq!(l["pipeline"]["name"], "example00", "{lines:#?}");
                assert_eq!(l["level"], "INFO");
            }
            // Enriched when each line arrived: during the run it was RUNNING.
            let started = lines
                .iter()
                .find(|l| l["message"] == "node echo started")
                .expect("echo line");
            assert_eq!(started["pipeline"]["status"], "RUNNING", "{lines:#?}");
            // Exactly the stored lines, in order.
            let stored: Vec<Value> = run_logs(&p.subgraphs.log_url(), &id).await;
            let stored: Vec<&Value> = stored.iter().map(|l| &l["message"]).collect();
            let seen: Vec<&Value> = lines.iter().map(|l| &l["message"]).collect();
            assert_eq!(seen, stored);
            c.complete("logs").await;
            c.assert_quiet(Duration::from_millis(200)).await;
            c.close().await;
        }
    };
    tokio::join!(
        follow(Protocol::GraphqlTransportWs),
        follow(Protocol::GraphqlWs)
    );
    wait_active(&p, 0).await;
    p.stop().await;
}

#[tokio::test]
async fn queries_and_mutations_over_the_socket_answer_once() {
    let p = Platform::start().await;
    for protocol in Protocol::ALL {
        let mut c = WsClient::ready(&p.ws_url(), protocol).await;
        c.subscribe("q", "{ pipelineTemplates { name } }", json!({}))
            .await;
        let r = next_event(&mut c, "q").await.expect("a result");
        assert_eq!(
            r["data"]["pipelineTemplates"][0]["name"], "example00",
            "{r}"
        );
        assert_eq!(next_event(&mut c, "q").await, None, "then complete");
        c.subscribe(
            "m",
            "mutation($d: DatasetInput!) { createDataset(dataset: $d) { id name } }",
            json!({ "d": { "name": "over-ws", "type": "text.TextDataset" } }),
        )
        .await;
        let r = next_event(&mut c, "m").await.expect("a result");
        assert_eq!(r["data"]["createDataset"]["name"], "over-ws", "{r}");
        assert_eq!(next_event(&mut c, "m").await, None, "then complete");
        // The id is free again once the operation completed.
        c.subscribe("q", "{ pipelineTemplates { name } }", json!({}))
            .await;
        assert!(next_event(&mut c, "q").await.is_some());
        assert_eq!(next_event(&mut c, "q").await, None);
        c.assert_quiet(Duration::from_millis(100)).await;
        c.close().await;
    }
    let found = p
        .query("{ datasets(limit: 50) { items { name } } }", json!({}))
        .await;
    let created = found["data"]["datasets"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["name"] == "over-ws")
        .count();
    assert_eq!(created, 2, "each mutation ran once: {found}");
    p.stop().await;
}

#[tokio::test]
async fn invalid_operations_get_an_error_message_and_no_upstream_call() {
    let (p, proxy) = platform_with_log_proxy("", "").await;
    for protocol in Protocol::ALL {
        let mut c = WsClient::ready(&p.ws_url(), protocol).await;
        c.subscribe(
            "bad",
            "subscription { pipelineLogs(id: \"1\") { nope } }",
            json!({}),
        )
        .await;
        let m = c.recv_op(WAIT).await;
        assert_eq!(
            (m["type"].as_str(), m["id"].as_str()),
            (Some("error"), Some("bad")),
            "{m}"
        );
        assert_eq!(
            m["payload"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
            "{m}"
        );
        assert!(
            m["payload"][0]["message"]
                .as_str()
                .unwrap()
                .contains("nope"),
            "{m}"
        );
        // A missing variable is refused too, before any upstream call.
        c.subscribe("vars", LOGS, json!({})).await;
        let m = c.recv_op(WAIT).await;
        assert_eq!(
            (m["type"].as_str(), m["id"].as_str()),
            (Some("error"), Some("vars")),
            "{m}"
        );
        assert_eq!(
            m["payload"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{m}"
        );
        // The connection goes on.
        c.subscribe("ok", "{ pipelineTemplates { name } }", json!({}))
            .await;
        assert!(next_event(&mut c, "ok").await.is_some());
        c.close().await;
    }
    assert_eq!(proxy.accepted(), 0, "no upstream WebSocket was opened");
    assert_eq!(active_subscriptions(&p).await, 0);
    p.stop().await;
}

const SECOND: Duration = Duration::from_secs(5);

#[tokio::test]
async fn graphql_transport_ws_close_codes() {
    let p = Platform::start().await;
    let url = p.ws_url();
    let t = Protocol::GraphqlTransportWs;

    // Another subprotocol is refused at the handshake.
    match WsClient::connect(&url, "soap", &[]).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 400);
            let body =
                String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).to_string();
            assert!(body.contains("graphql-transport-ws"), "{body}");
        }
        other => panic!(
            "expected HTTP 400, got {:?}",
            other.map(|(_, chosen)| chosen)
        ),
    }

    // 4400: not JSON, a server-only type, a subscribe without id.
    for bad in [
        "not json".to_string(),
        json!({ "type": "next", "id": "1", "payload": {} }).to_string(),
        json!({ "type": "subscribe", "payload": { "query": "{ __typename }" } }).to_string(),
    ] {
        let mut c = WsClient::ready(&url, t).await;
        c.send_text(&bad).await;
        let (code, reason) = c.expect_close(SECOND).await;
        assert_eq!(code, 4400, "{bad}: {reason}");
        assert!(!reason.is_empty());
    }

    // 4401: subscribe before connection_ack.
    let mut c = WsClient::open(&url, t).await;
    c.subscribe("1", "{ __typename }", json!({})).await;
    assert_eq!(c.expect_close(SECOND).await.0, 4401);

    // 4403: a connection_init payload that is not an object.
    let mut c = WsClient::open(&url, t).await;
    c.send(json!({ "type": "connection_init", "payload": "let me in" }))
        .await;
    assert_eq!(
        c.expect_close(SECOND).await,
        (
            4403,
            "Forbidden: the connection_init payload must be a JSON object".into()
        )
    );

    // 4429: a second connection_init.
    let mut c = WsClient::ready(&url, t).await;
    c.send(json!({ "type": "connection_init", "payload": {} }))
        .await;
    assert_eq!(
        c.expect_close(SECOND).await,
        (4429, "Too many initialisation requests".into())
    );

    // 4409: a subscriber for an id that is still running.
    let mut c = WsClient::ready(&url, t).await;
    c.subscribe("dup", LOGS, json!({ "id": "no-such-run" }))
        .await;
    c.subscribe("dup", LOGS, json!({ "id": "no-such-run" }))
        .await;
    assert_eq!(
        c.expect_close(SECOND).await,
        (4409, "Subscriber for dup already exists".into())
    );

    // ping -> pong with the same payload, before and after the ack.
    let mut c = WsClient::open(&url, t).await;
    c.send(json!({ "type": "ping", "payload": { "n": 1 } }))
        .await;
    assert_eq!(
        c.recv(SECOND).await,
        Received::Json(json!({ "type": "pong", "payload": { "n": 1 } }))
    );
    c.init(json!(null)).await;
    c.send(json!({ "type": "ping" })).await;
    assert_eq!(
        c.recv(SECOND).await,
        Received::Json(json!({ "type": "pong" }))
    );
    // A subscription the subgraph refuses: its errors, then nothing more for it.
    c.subscribe("unknown", EVENTS, json!({ "id": "no-such-run" }))
        .await;
    let m = c.recv_op(SECOND).await;
    assert_eq!(m["type"], "next", "{m}");
    assert_eq!(
        m["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{m}"
    );
    assert_eq!(
        m["payload"]["errors"][0]["path"],
        json!(["pipelineEvents"]),
        "{m}"
    );
    assert_eq!(
        c.recv_op(SECOND).await,
        json!({ "type": "complete", "id": "unknown" })
    );
    c.close().await;

    wait_active(&p, 0).await;
    p.stop().await;
}

#[tokio::test]
async fn graphql_transport_ws_pings_and_drops_a_client_that_stops_answering() {
    let p = Platform::start_with(SubgraphsOptions::default(), "ws_keepalive_secs = 1").await;
    let run = start_run(&p, "30").await;
    let mut c = WsClient::ready(&p.ws_url(), Protocol::GraphqlTransportWs).await;
    c.answer_pings = false;
    c.subscribe("events", EVENTS, json!({ "id": run })).await;
    wait_active(&p, 1).await;
    let ping = Received::Json(json!({ "type": "ping" }));
    // Answered pings keep the connection and its subscription.
    for _ in 0..2 {
        let started = Instant::now();
        loop {
            match c.recv(Duration::from_secs(3)).await {
                Received::Json(m) if m["id"] == "events" => {}
                other => {
                    assert_eq!(other, ping);
                    break;
                }
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        c.send(json!({ "type": "pong" })).await;
    }
    assert_eq!(active_subscriptions(&p).await, 1);
    // A ping left unanswered for a whole period: the gateway drops the
    // client and stops its subscription upstream.
    let started = Instant::now();
    let mut pings = 0;
    loop {
        match c.recv(Duration::from_secs(5)).await {
            Received::Json(m) if m["id"] == "events" => {}
            Received::Json(m) if m == json!({ "type": "ping" }) => pings += 1,
            Received::Closed(_) => break,
            other => panic!("expected the gateway to drop the client, got {other:?}"),
        }
    }
    assert_eq!(pings, 1, "one unanswered ping before the drop");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    wait_active(&p, 0).await;
    p.stop().await;
}

/// A gateway bug (here a panic injected by the tests' prepare hook, see
/// `platform::FAULT_OPERATION`) ends only the socket it happened on, with 4500 in
/// `graphql-transport-ws`; its subscriptions stop upstream and other clients,
/// over WebSocket and HTTP, go on. Over HTTP the same bug is a 500.
#[tokio::test]
async fn a_gateway_bug_closes_its_socket_with_4500_and_nothing_else() {
    let p = Platform::start().await;
    let run = start_run(&p, "30").await;
    let t = Protocol::GraphqlTransportWs;
    let mut victim = WsClient::ready(&p.ws_url(), t).await;
    let mut bystander = WsClient::ready(&p.ws_url(), t).await;
    victim
        .subscribe("events", EVENTS, json!({ "id": run }))
        .await;
    bystander
        .subscribe("events", EVENTS, json!({ "id": run }))
        .await;
    wait_active(&p, 2).await;

    victim
        .send(json!({ "id": "bug", "type": "subscribe", "payload": {
            "query": "subscription __gatewayPanic { pipelineEvents(id: \"x\") { status } }",
            "operationName": "__gatewayPanic",
        } }))
        .await;
    assert_eq!(
        victim.expect_close(SECOND).await,
        (4500, "Internal server error".into())
    );
    wait_active(&p, 1).await;

    // Over HTTP: a 500 with a GraphQL error that does not leak the panic.
    let resp = e2e::client::http()
        .post(p.url())
        .json(&json!({ "query": "query __gatewayPanic { __typename }", "operationName": "__gatewayPanic" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "INTERNAL_SERVER_ERROR",
        "{body}"
    );
    assert!(!body.to_string().contains("fault injection"), "{body}");
    assert_eq!(
        metric(&p.metrics().await, "gateway_internal_errors_total"),
        2
    );

    // The other socket still works: its subscription and a query on it.
    bystander
        .subscribe("q", "{ pipelineTemplates { name } }", json!({}))
        .await;
    let m = loop {
        let m = bystander.recv_op(SECOND).await;
        if m["id"] == "q" {
            break m;
        }
    };
    assert_eq!(m["type"], "next", "{m}");
    assert!(m["payload"]["data"]["pipelineTemplates"].is_array(), "{m}");
    assert_eq!(active_subscriptions(&p).await, 1);
    bystander.close().await;
    wait_active(&p, 0).await;
    p.stop().await;
}

#[tokio::test]
async fn one_connection_runs_at_most_ws_max_operations() {
    let p = Platform::start_with(SubgraphsOptions::default(), "ws_max_operations = 2").await;
    for protocol in Protocol::ALL {
        let mut c = WsClient::ready(&p.ws_url(), protocol).await;
        c.subscribe("1", LOGS, json!({ "id": "quiet-1" })).await;
        c.subscribe("2", LOGS, json!({ "id": "quiet-2" })).await;
        c.subscribe("3", LOGS, json!({ "id": "quiet-3" })).await;
        let m = c.recv_op(SECOND).await;
        assert_eq!(
            (m["type"].as_str(), m["id"].as_str()),
            (Some("error"), Some("3")),
            "{m}"
        );
        let first = m["payload"].get(0).unwrap_or(&m["payload"]);
        assert_eq!(first["extensions"]["code"], "TOO_MANY_OPERATIONS", "{m}");
        wait_active(&p, 2).await;
        // Completing one makes room.
        c.complete("1").await;
        wait_active(&p, 1).await;
        c.subscribe("3", LOGS, json!({ "id": "quiet-3" })).await;
        wait_active(&p, 2).await;
        c.close().await;
        wait_active(&p, 0).await;
    }
    p.stop().await;
}

/// A client that stops reading while its subscription streams is dropped
/// once a write has been blocked for a keep-alive interval; its upstream
/// subscription stops.
#[tokio::test]
async fn a_client_that_stops_reading_is_dropped() {
    // Long enough that the reading client, busy parsing 12 MB on a loaded
    // machine, still answers each ping within a period.
    let p = Platform::start_with(SubgraphsOptions::default(), "ws_keepalive_secs = 3").await;
    let mut reader = WsClient::ready(&p.ws_url(), Protocol::GraphqlTransportWs).await;
    let mut stuck = WsClient::ready(&p.ws_url(), Protocol::GraphqlTransportWs).await;
    reader.subscribe("r", LOGS, json!({ "id": "flood" })).await;
    stuck.subscribe("s", LOGS, json!({ "id": "flood" })).await;
    wait_active(&p, 2).await;
    // About 12 MB of events, more than the loopback socket buffers hold.
    let line = "x".repeat(9_000);
    let log = e2e::client::http();
    for batch in 0..12 {
        let entries: Vec<Value> = (0..100)
            .map(|i| json!({ "pipelineId": "flood", "level": "INFO", "message": format!("{batch}-{i} {line}") }))
            .collect();
        let resp = e2e::client::gql_with(
            &log,
            &p.subgraphs.log_url(),
            "mutation($e: [LogEntryInput!]!) { ingestLogs(entries: $e) }",
            json!({ "e": entries }),
        )
        .await;
        assert_eq!(resp["data"]["ingestLogs"], 100, "{resp}");
    }
    // The reading client gets every line; the stuck one is let go.
    for _ in 0..1200 {
        let m = reader.recv_op(SECOND).await;
        assert_eq!(m["type"], "next", "{m}");
    }
    wait_active(&p, 1).await;
    reader.close().await;
    wait_active(&p, 0).await;
    drop(stuck);
    p.stop().await;
}

#[tokio::test]
async fn legacy_graphql_ws_keep_alive_errors_and_refusal() {
    let p = Platform::start().await;
    let url = p.ws_url();
    let l = Protocol::GraphqlWs;

    // connection_ack is followed by a keep-alive.
    let mut c = WsClient::open(&url, l).await;
    c.send(json!({ "type": "connection_init", "payload": {} }))
        .await;
    assert_eq!(
        c.recv(SECOND).await,
        Received::Json(json!({ "type": "connection_ack" }))
    );
    assert_eq!(
        c.recv(SECOND).await,
        Received::Json(json!({ "type": "ka" }))
    );
    // A bad message is answered with an error; the connection stays.
    c.send_text("not json").await;
    let m = c.recv_op(SECOND).await;
    assert_eq!(m["type"], "error", "{m}");
    assert!(
        m["payload"]["message"].as_str().unwrap().contains("JSON"),
        "{m}"
    );
    c.subscribe("1", "{ pipelineTemplates { name } }", json!({}))
        .await;
    assert!(next_event(&mut c, "1").await.is_some());
    assert_eq!(next_event(&mut c, "1").await, None);
    // connection_terminate closes normally.
    c.send(json!({ "type": "connection_terminate" })).await;
    assert_eq!(c.expect_close(SECOND).await.0, 1000);

    // start before connection_init: an error for that operation.
    let mut c = WsClient::open(&url, l).await;
    c.subscribe("early", "{ __typename }", json!({})).await;
    let m = c.recv_op(SECOND).await;
    assert_eq!(
        (m["type"].as_str(), m["id"].as_str()),
        (Some("error"), Some("early")),
        "{m}"
    );
    c.close().await;

    // A refused connection_init: connection_error, then the socket closes.
    let mut c = WsClient::open(&url, l).await;
    c.send(json!({ "type": "connection_init", "payload": 42 }))
        .await;
    let m = c.recv_op(SECOND).await;
    assert_eq!(m["type"], "connection_error", "{m}");
    assert_eq!(c.expect_close(SECOND).await.0, 4403);
    p.stop().await;
}

#[tokio::test]
async fn no_connection_init_in_time_closes_with_4408() {
    let p = Platform::start_with(SubgraphsOptions::default(), "ws_init_timeout_secs = 1").await;
    let wait = |protocol| {
        let url = p.ws_url();
        async move {
            let mut c = WsClient::open(&url, protocol).await;
            let started = Instant::now();
            let (code, reason) = c.expect_close(SECOND).await;
            assert_eq!(
                (code, reason.as_str()),
                (4408, "Connection initialisation timeout")
            );
            assert!(
                started.elapsed() >= Duration::from_millis(900),
                "{:?}",
                started.elapsed()
            );
        }
    };
    tokio::join!(
        wait(Protocol::GraphqlTransportWs),
        wait(Protocol::GraphqlWs)
    );
    // An initialised connection is not timed out.
    let mut c = WsClient::ready(&p.ws_url(), Protocol::GraphqlTransportWs).await;
    c.assert_quiet(Duration::from_millis(1200)).await;
    c.close().await;
    p.stop().await;
}

#[tokio::test]
async fn a_subgraph_going_away_errors_only_its_subscriptions() {
    let mut p = Platform::start().await;
    let run = start_run(&p, "1.5").await;
    wait_status(&p.subgraphs.pipeline_url(), &run, &["RUNNING"], WAIT).await;
    let mut clients = Vec::new();
    for protocol in Protocol::ALL {
        let mut c = WsClient::ready(&p.ws_url(), protocol).await;
        c.subscribe("logs", LOGS, json!({ "id": run })).await;
        c.subscribe("events", EVENTS, json!({ "id": run })).await;
        // Both are live: the first log line and the run's current status.
        let (mut logs, mut events) = (0, 0);
        while logs == 0 || events == 0 {
            let m = c.recv_op(WAIT).await;
            assert_eq!(m["type"], next_type(protocol), "{m}");
            match m["id"].as_str() {
                Some("logs") => logs += 1,
                Some("events") => events += 1,
                _ => panic!("{m}"),
            }
        }
        clients.push(c);
    }
    wait_active(&p, 4).await;
    p.subgraphs.stop_log().await;
    for mut c in clients {
        let mut log_error = None;
        let mut last_status = Value::Null;
        let mut events_completed = false;
        while log_error.is_none() || !events_completed {
            let m = c.recv_op(WAIT).await;
            match (m["id"].as_str(), m["type"].as_str()) {
                (Some("logs"), Some("error")) => log_error = Some(m["payload"].clone()),
                (Some("logs"), Some(t)) if t == next_type(c.protocol) => {} // lines sent before the drop
                (Some("events"), Some("complete")) => events_completed = true,
                (Some("events"), Some(t)) if t == next_type(c.protocol) => {
                    last_status = m["payload"]["data"]["pipelineEvents"]["status"].clone()
                }
                _ => panic!("unexpected {m}"),
            }
        }
        let e = log_error.unwrap();
        assert_eq!(e[0]["extensions"]["code"], "SUBGRAPH_UNAVAILABLE", "{e}");
        assert!(
            e[0]["message"].as_str().unwrap().contains("`log` subgraph"),
            "{e}"
        );
        assert_eq!(
            last_status, "SUCCESS",
            "the other subscription went on to the end"
        );
        // The connection itself is still usable.
        c.subscribe("q", "{ pipelineTemplates { name } }", json!({}))
            .await;
        assert!(next_event(&mut c, "q").await.is_some());
        c.close().await;
    }
    wait_active(&p, 0).await;
    p.stop().await;
}

/// The `subscribe`/`complete` frames the gateway sent on upstream socket `n`.
fn upstream_frames(proxy: &e2e::ws_support::TcpProxy, n: usize) -> Vec<Value> {
    proxy
        .client_sent(n)
        .1
        .iter()
        .filter_map(|f| serde_json::from_str::<Value>(f).ok())
        .filter(|v| v["type"] == "subscribe" || v["type"] == "complete")
        .collect()
}

#[tokio::test]
async fn the_upstream_subscription_stops_with_the_client() {
    let (p, proxy) =
        platform_with_log_proxy("headers = { \"x-gateway-secret\" = \"s3\" }", "").await;
    let (run, lines) = finished_run(&p).await;

    let mut c = WsClient::open_with(
        &p.ws_url(),
        Protocol::GraphqlTransportWs,
        &[("authorization", "Bearer tok"), ("x-not-propagated", "no")],
    )
    .await;
    c.init(json!({ "token": "abc" })).await;
    c.subscribe("a", LOGS, json!({ "id": run })).await;
    for _ in 0..lines.len() {
        assert!(next_event(&mut c, "a").await.is_some());
    }
    // The same subscription after `a` began its replay: an upstream
    // subscription of its own (it must see every line), on the same socket.
    c.subscribe("b", LOGS, json!({ "id": run })).await;
    for _ in 0..lines.len() {
        assert!(next_event(&mut c, "b").await.is_some());
    }
    assert_eq!(proxy.accepted(), 1, "one upstream socket for both");
    assert_eq!(active_subscriptions(&p).await, 2);

    // The handshake carried the propagated and configured headers; the
    // subgraph's connection_init carried the client's payload.
    let (head, frames) = proxy.client_sent(0);
    let head = head.to_ascii_lowercase();
    assert!(head.contains("authorization: bearer tok"), "{head}");
    assert!(head.contains("x-gateway-secret: s3"), "{head}");
    assert!(
        head.contains("sec-websocket-protocol: graphql-transport-ws"),
        "{head}"
    );
    assert!(!head.contains("x-not-propagated"), "{head}");
    let init: Value = serde_json::from_str(&frames[0]).unwrap();
    assert_eq!(
        init,
        json!({ "type": "connection_init", "payload": { "token": "abc" } })
    );
    let sent = upstream_frames(&proxy, 0);
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!((&sent[0]["id"], &sent[1]["id"]), (&json!("0"), &json!("1")));
    assert!(
        sent[0]["payload"]["query"]
            .as_str()
            .unwrap()
            .contains("logStream"),
        "{sent:?}"
    );

    // `complete` from the client: `complete` upstream for its id; the
    // socket stays for the other.
    c.complete("a").await;
    eventually(WAIT, "the upstream complete", || async {
        upstream_frames(&proxy, 0)
            .contains(&json!({ "type": "complete", "id": "0" }))
            .then_some(())
    })
    .await;
    wait_active(&p, 1).await;
    assert_eq!(proxy.open(), 1);

    // The client vanishes without a close: the other upstream subscription
    // is completed and, with nothing left on it, the socket closes.
    c.abort();
    eventually(WAIT, "the upstream socket closed", || async {
        (proxy.open() == 0).then_some(())
    })
    .await;
    assert!(upstream_frames(&proxy, 0).contains(&json!({ "type": "complete", "id": "1" })));
    wait_active(&p, 0).await;

    // Legacy `stop` does the same.
    let mut c = WsClient::ready(&p.ws_url(), Protocol::GraphqlWs).await;
    c.subscribe("1", LOGS, json!({ "id": run })).await;
    assert!(next_event(&mut c, "1").await.is_some());
    assert_eq!(proxy.open(), 1);
    c.complete("1").await;
    eventually(WAIT, "the legacy upstream socket closed", || async {
        (proxy.open() == 0).then_some(())
    })
    .await;
    c.close().await;
    wait_active(&p, 0).await;
    p.stop().await;
}

/// Ingests `n` log lines of `run` on the log subgraph directly.
async fn ingest(p: &Platform, run: &str, n: usize) {
    let entries: Vec<Value> = (0..n)
        .map(|i| json!({ "pipelineId": run, "level": "INFO", "message": format!("line {i}") }))
        .collect();
    let resp = e2e::client::gql(
        &p.subgraphs.log_url(),
        "mutation($e: [LogEntryInput!]!) { ingestLogs(entries: $e) }",
        json!({ "e": entries }),
    )
    .await;
    assert_eq!(resp["data"]["ingestLogs"], n, "{resp}");
}

#[tokio::test]
async fn many_clients_share_one_upstream_socket_and_identical_subscriptions_share_one_upstream_id()
{
    const CLIENTS: usize = 100;
    let (p, proxy) = platform_with_log_proxy("", "").await;
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let mut c = WsClient::ready(&p.ws_url(), Protocol::ALL[i % 2]).await;
        // Half follow one run, half another: two upstream subscriptions.
        let run = if i % 2 == 0 { "live-a" } else { "live-b" };
        c.subscribe("s", LOGS, json!({ "id": run })).await;
        clients.push((c, run));
    }
    wait_active(&p, CLIENTS as u64).await;
    eventually(WAIT, "two upstream subscriptions", || async {
        (metric(&p.metrics().await, "gateway_upstream_subscriptions") == 2).then_some(())
    })
    .await;
    assert_eq!(
        proxy.accepted(),
        1,
        "{CLIENTS} client subscriptions, one upstream socket"
    );
    assert_eq!(
        metric(&p.metrics().await, "gateway_websockets_open"),
        CLIENTS as u64
    );
    assert_eq!(
        metric(&p.metrics().await, "gateway_upstream_sockets_open"),
        1
    );
    ingest(&p, "live-a", 3).await;
    ingest(&p, "live-b", 2).await;
    for (c, run) in clients.iter_mut() {
        let n = if *run == "live-a" { 3 } else { 2 };
        for i in 0..n {
            let line = next_event(c, "s").await.expect("a line");
            let line = &line["data"]["pipelineLogs"];
            assert_eq!(line["pipelineId"], *run, "{line}");
            assert_eq!(line["message"], format!("line {i}"));
        }
    }
    let sent = upstream_frames(&proxy, 0);
    assert_eq!(
        sent.iter().filter(|f| f["type"] == "subscribe").count(),
        2,
        "identical subscriptions go upstream once: {sent:?}"
    );
    // Half the clients leave: both upstream subscriptions stay for the rest.
    let rest = clients.split_off(CLIENTS / 2);
    for (c, _) in clients {
        c.close().await;
    }
    wait_active(&p, (CLIENTS / 2) as u64).await;
    assert_eq!(
        metric(&p.metrics().await, "gateway_upstream_subscriptions"),
        2
    );
    for (c, _) in rest {
        c.close().await;
    }
    eventually(WAIT, "the upstream socket closed", || async {
        (proxy.open() == 0).then_some(())
    })
    .await;
    assert_eq!(
        metric(&p.metrics().await, "gateway_upstream_subscriptions"),
        0
    );
    p.stop().await;
}

#[tokio::test]
async fn upstream_subscriptions_are_capped_with_a_clear_refusal() {
    let (p, _proxy) = platform_with_log_proxy("", "max_upstream_subscriptions = 2").await;
    let mut c = WsClient::ready(&p.ws_url(), Protocol::GraphqlTransportWs).await;
    for run in ["cap-1", "cap-2"] {
        c.subscribe(run, LOGS, json!({ "id": run })).await;
    }
    wait_active(&p, 2).await;
    eventually(WAIT, "two upstream subscriptions", || async {
        (metric(&p.metrics().await, "gateway_upstream_subscriptions") == 2).then_some(())
    })
    .await;
    c.subscribe("cap-3", LOGS, json!({ "id": "cap-3" })).await;
    let m = c.recv_op(WAIT).await;
    assert_eq!(
        (m["type"].as_str(), m["id"].as_str()),
        (Some("error"), Some("cap-3")),
        "{m}"
    );
    assert!(m.to_string().contains("max_upstream_subscriptions"), "{m}");
    // An identical subscription joins one already open: no new upstream one.
    let mut d = WsClient::ready(&p.ws_url(), Protocol::GraphqlTransportWs).await;
    d.subscribe("same", LOGS, json!({ "id": "cap-1" })).await;
    ingest(&p, "cap-1", 1).await;
    assert!(next_event(&mut d, "same").await.is_some());
    assert!(next_event(&mut c, "cap-1").await.is_some());
    c.close().await;
    d.close().await;
    wait_active(&p, 0).await;
    p.stop().await;
}

#[tokio::test]
async fn two_hundred_concurrent_subscriptions_get_only_their_own_events() {
    const SOCKETS: usize = 20;
    const PER_SOCKET: usize = 10;
    const RUNS: usize = 4;
    let p = Platform::start().await;
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        runs.push(finished_run(&p).await);
    }
    let ids: Vec<Vec<String>> = runs
        .iter()
        .map(|(_, lines)| {
            lines
                .iter()
                .map(|l| l["id"].as_str().unwrap().to_string())
                .collect()
        })
        .collect();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..SOCKETS {
        let url = p.ws_url();
        let runs: Vec<String> = runs.iter().map(|(id, _)| id.clone()).collect();
        let ids = ids.clone();
        let protocol = Protocol::ALL[s % 2];
        tasks.push(tokio::spawn(async move {
            let mut c = WsClient::ready(&url, protocol).await;
            let run_of = |k: usize| (s * PER_SOCKET + k) % RUNS;
            for k in 0..PER_SOCKET {
                c.subscribe(&k.to_string(), LOGS, json!({ "id": runs[run_of(k)] }))
                    .await;
            }
            let mut seen: Vec<Vec<String>> = vec![Vec::new(); PER_SOCKET];
            let total: usize = (0..PER_SOCKET).map(|k| ids[run_of(k)].len()).sum();
            for _ in 0..total {
                let m = c.recv_op(WAIT).await;
                assert_eq!(m["type"], next_type(protocol), "{m}");
                let k: usize = m["id"].as_str().unwrap().parse().unwrap();
                let line = &m["payload"]["data"]["pipelineLogs"];
                assert_eq!(
                    line["pipelineId"],
                    runs[run_of(k)].as_str(),
                    "subscription {s}/{k} got {m}"
                );
                seen[k].push(line["id"].as_str().unwrap().to_string());
            }
            for (k, lines) in seen.iter().enumerate() {
                assert_eq!(
                    lines,
                    &ids[run_of(k)],
                    "subscription {s}/{k}: every line once, in order"
                );
            }
            c.assert_quiet(Duration::from_millis(300)).await;
            c
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.unwrap());
    }
    println!("200 subscriptions delivered in {:?}", started.elapsed());
    assert_eq!(
        active_subscriptions(&p).await,
        (SOCKETS * PER_SOCKET) as u64
    );
    for c in clients {
        c.close().await;
    }
    wait_active(&p, 0).await;
    p.stop().await;
}

#[tokio::test]
async fn gateway_shutdown_closes_sockets_and_upstream_subscriptions() {
    let (p, proxy) = platform_with_log_proxy("", "").await;
    let mut c = WsClient::ready(&p.ws_url(), Protocol::GraphqlTransportWs).await;
    c.subscribe("1", LOGS, json!({ "id": "a-run-without-lines" }))
        .await;
    eventually(WAIT, "the upstream socket", || async {
        (proxy.open() == 1).then_some(())
    })
    .await;
    wait_active(&p, 1).await;
    p.gateway.state.shutdown.cancel();
    assert_eq!(c.expect_close(SECOND).await.0, 1001);
    eventually(WAIT, "the upstream socket closed", || async {
        (proxy.open() == 0).then_some(())
    })
    .await;
    let active = &p.gateway.state.metrics.subscriptions_active;
    eventually(WAIT, "no active subscription", || async {
        (active.get() == 0).then_some(())
    })
    .await;
    p.stop().await;
}

#[tokio::test]
async fn the_shared_test_client_follows_a_run_through_the_gateway() {
    let p = Platform::start().await;
    let (run, lines) = finished_run(&p).await;
    for protocol in Protocol::ALL {
        let mut sub =
            Subscription::start(&p.ws_url(), protocol, EVENTS, json!({ "id": run })).await;
        let first = sub.next(WAIT).await.expect("the current status");
        assert_eq!(first["pipelineEvents"]["status"], "SUCCESS");
        assert_eq!(
            sub.next(WAIT).await,
            None,
            "a finished run's events complete"
        );
        sub.stop().await;
        let mut sub =
            Subscription::start(&p.ws_url(), protocol, LOGS_ENRICHED, json!({ "id": run })).await;
        let got = sub.take(lines.len(), WAIT).await;
        assert!(got
            .iter()
            .all(|l| l["pipelineLogs"]["pipeline"]["status"] == "SUCCESS"));
        sub.stop().await;
    }
    wait_active(&p, 0).await;
    p.stop().await;
}

/// A subgraph that refuses a subscription (here its schema drifted from the
/// SDL file the gateway was given; async-graphql answers with an event that
/// holds the errors): they gain `extensions.service` and take their client
/// form like HTTP ones, masked when `include_subgraph_errors` is off.
#[tokio::test]
async fn a_subgraphs_refusal_of_a_subscription_reaches_the_client_in_its_client_form() {
    let subgraphs = e2e::stack::Subgraphs::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let sdl = dir.path().join("dataset.graphql");
    std::fs::write(
        &sdl,
        format!(
            "{}\nextend type Subscription {{ ghostUpdates: String }}\n",
            subgraphs::dataset::sdl()
        ),
    )
    .expect("sdl");
    let entries: String = e2e::platform::subgraph_entries(&subgraphs)
        .split("[[subgraphs]]\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            if e.contains("name = \"dataset\"") {
                format!(
                    "[[subgraphs]]\n{}\nschema_file = \"{}\"\ninclude_subgraph_errors = false\n\n",
                    e.trim_end(),
                    sdl.display()
                )
            } else {
                format!("[[subgraphs]]\n{e}")
            }
        })
        .collect();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        format!("[gateway]\nlisten = \"127.0.0.1:0\"\nhot_reload = false\n\n{entries}"),
    )
    .expect("config");
    let gw = e2e::platform::start_gateway(&path)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut c = WsClient::ready(&gw.ws_url(), Protocol::GraphqlTransportWs).await;
    c.subscribe("g", "subscription { ghostUpdates }", json!({}))
        .await;
    let m = c.recv_op(WAIT).await;
    assert_eq!(m["id"], "g", "{m}");
    let e = &m["payload"]["errors"][0];
    assert_eq!(e["extensions"]["service"], "dataset", "{m}");
    assert_eq!(e["extensions"]["code"], "SUBGRAPH_ERROR", "{m}");
    let message = e["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("withheld") && !message.contains("ghostUpdates"),
        "{m}"
    );
    assert!(!m.to_string().contains("_stitch_"), "{m}");
    c.close().await;
    gw.stop().await;
    subgraphs.stop().await;
}

/// Installs the npm clients once per test process (scripts/ensure-node-clients.sh).
fn node_clients() -> std::path::PathBuf {
    static READY: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    READY.get_or_init(|| {
        let status = std::process::Command::new(root.join("scripts/ensure-node-clients.sh"))
            .status()
            .expect("run scripts/ensure-node-clients.sh");
        assert!(status.success(), "scripts/ensure-node-clients.sh failed");
    });
    root.join("tests/clients")
}

/// One operation through an npm client (`script` in tests/clients): each
/// line it printed (`{next}`, `{complete}`, `{error}`, `{stopped}`); it stops
/// after `limit` results.
async fn node_client(script: &str, url: &str, body: Value, limit: Option<usize>) -> Vec<Value> {
    let dir = node_clients();
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(dir.join(script)).arg(url).arg(body.to_string());
    if let Some(n) = limit {
        cmd.arg(n.to_string());
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.kill_on_drop(true).output())
        .await
        .expect("the npm client finished")
        .expect("run node");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// What both HTTP subscription clients must see through `script`: a run
/// followed to its end (events, then `complete`), and enriched live log
/// lines that the client stops after two, which stops them upstream.
async fn follows_runs_and_stops_upstream(p: &Platform, script: &str) {
    let url = p.gateway.url();
    let id = start_run(p, "2").await;
    let lines = node_client(
        script,
        &url,
        json!({ "query": EVENTS, "variables": { "id": id } }),
        None,
    )
    .await;
    assert_eq!(
        lines.last(),
        Some(&json!({ "complete": true })),
        "{lines:#?}"
    );
    let events: Vec<&Value> = lines
        .iter()
        .filter_map(|l| l.get("next"))
        .map(|n| &n["data"]["pipelineEvents"])
        .collect();
    assert!(events.len() >= 2, "{lines:#?}");
    assert_eq!(
        events.last().map(|e| e["status"].clone()),
        Some(json!("SUCCESS"))
    );

    let id = start_run(p, "1").await;
    let lines = node_client(
        script,
        &url,
        json!({ "query": LOGS_ENRICHED, "variables": { "id": id } }),
        Some(2),
    )
    .await;
    let logs: Vec<&Value> = lines
        .iter()
        .filter_map(|l| l.get("next"))
        .map(|n| &n["data"]["pipelineLogs"])
        .collect();
    assert_eq!(logs.len(), 2, "{lines:#?}");
    assert!(
        logs.iter().all(|l| l["pipeline"]["name"] == "example00"),
        "{logs:#?}"
    );
    wait_active(p, 0).await;
}

#[tokio::test]
async fn subscriptions_over_server_sent_events_with_the_graphql_sse_client() {
    let p = Platform::start().await;
    follows_runs_and_stops_upstream(&p, "sse-subscribe.mjs").await;
    // A query is one result; an invalid operation is its errors, then the end.
    let url = p.gateway.url();
    let lines = node_client(
        "sse-subscribe.mjs",
        &url,
        json!({ "query": "{ pipelineTemplates { name } }" }),
        None,
    )
    .await;
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert_eq!(
        lines[0]["next"]["data"]["pipelineTemplates"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    let lines = node_client(
        "sse-subscribe.mjs",
        &url,
        json!({ "query": "subscription { nope }" }),
        None,
    )
    .await;
    assert_eq!(
        lines[0]["next"]["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
        "{lines:#?}"
    );
    assert_eq!(
        lines.last(),
        Some(&json!({ "complete": true })),
        "{lines:#?}"
    );
    p.stop().await;
}

#[tokio::test]
async fn multipart_subscriptions_with_apollo_client() {
    let p = Platform::start().await;
    follows_runs_and_stops_upstream(&p, "apollo-subscribe.mjs").await;
    // Queries keep their plain JSON answers.
    let lines = node_client(
        "apollo-subscribe.mjs",
        &p.gateway.url(),
        json!({ "query": "{ pipelineTemplates { name } }" }),
        None,
    )
    .await;
    assert_eq!(
        lines[0]["next"]["data"]["pipelineTemplates"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "{lines:#?}"
    );
    p.stop().await;
}
