//! Hostile clients against the real gateway and services: every refusal
//! names the limit that fired and costs no subgraph call; validation errors
//! are capped; a batch body is told apart; silent, slow and stalled
//! connections are cut off, and the connection cap refuses clearly; run log
//! lines survive a `kill -9` of the pipeline service.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use e2e::{
    client::{error_codes, http, Protocol},
    pipeline_support::{
        assert_example01_log, create_run, finished_run, log_summary, run_logs, text_datasets,
        wait_logs, wait_status,
    },
    platform::{eventually, metric, Platform},
    stack::{Subgraphs, SubgraphsOptions},
    ws_support::WsClient,
};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// `extensions.limit` of each error.
fn limits(resp: &Value) -> Vec<String> {
    resp["errors"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            e.pointer("/extensions/limit")
                .and_then(Value::as_str)
                .unwrap_or("-")
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn every_limit_names_itself_and_refuses_before_any_subgraph_call() {
    let p = Platform::start_with(
        Default::default(),
        "max_cost = 2000\nmax_directives = 10\nmax_aliases = 100",
    )
    .await;
    // Nested far past the parser's depth: the depth limit, not a token count.
    let deep = format!(
        "{{ {} name {} }}",
        "pipelines { items { ".repeat(30),
        "} } ".repeat(30)
    );
    let resp = p.query(&deep, json!({})).await;
    assert_eq!(error_codes(&resp), ["REQUEST_LIMIT_EXCEEDED"], "{resp}");
    assert_eq!(limits(&resp), ["max_depth"]);
    assert!(resp.to_string().contains("`max_depth`"), "{resp}");

    let resp = p
        .query(
            &format!("{{ {} }}", "pipelineTemplates { name } ".repeat(4_000)),
            json!({}),
        )
        .await;
    assert_eq!(limits(&resp), ["max_tokens"], "{resp}");

    let resp = p
        .query(
            &format!(
                "{{ pipelineTemplates {{ {} }} }}",
                (0..11)
                    .map(|i| format!("n{i}: name @include(if: true)"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            json!({}),
        )
        .await;
    assert_eq!(limits(&resp), ["max_directives"], "{resp}");

    // Cost: the same document passes or not by its variables.
    let q = "query($n: Int) { pipelines(limit: $n) { items { id dataCatalog { dataset { name tags { key } } } } } }";
    let ok = p.query(q, json!({"n": 5})).await;
    assert_eq!(ok.get("errors"), None, "{ok}");
    let requests = p.subgraph_requests("pipeline").await;
    let resp = p.query(q, json!({"n": 1000})).await;
    assert_eq!(limits(&resp), ["max_cost"], "{resp}");
    let e = &resp["errors"][0];
    assert_eq!(e["extensions"]["max"], 2000);
    assert!(e["extensions"]["actual"].as_u64().unwrap() > 2000, "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("may resolve"),
        "{e}"
    );
    assert_eq!(
        p.subgraph_requests("pipeline").await,
        requests,
        "refused before any call"
    );
    p.stop().await;
}

#[tokio::test]
async fn validation_errors_are_capped_at_one_hundred() {
    let p = Platform::start().await;
    // A 15 KB document of unknown fields.
    let q = format!(
        "{{ {} }}",
        (0..2_000)
            .map(|i| format!("f{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let resp = http()
        .post(p.url())
        .json(&json!({"query": q}))
        .send()
        .await
        .expect("POST");
    let text = resp.text().await.expect("body");
    assert!(text.len() < 64 * 1024, "{} bytes", text.len());
    let resp: Value = serde_json::from_str(&text).expect("JSON");
    let errors = resp["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 101);
    assert!(errors[100]["message"]
        .as_str()
        .unwrap()
        .contains("too many validation errors: 2000 found"));
    p.stop().await;
}

#[tokio::test]
async fn a_json_array_body_is_told_batching_is_not_supported() {
    let p = Platform::start().await;
    let resp = http()
        .post(p.url())
        .header("content-type", "application/json")
        .body(r#" [{"query": "{ pipelineTemplates { name } }"}]"#)
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(error_codes(&body), ["BATCHING_NOT_SUPPORTED"]);
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("not supported"));
    p.stop().await;
}

/// Reads until the server closes the connection; what it sent, or `None`
/// if it is still open after `within`.
async fn read_until_closed(s: &mut TcpStream, within: Duration) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// A request that trickles its headers, a line every 150 ms, until the
/// server hangs up; how long that took.
async fn slow_headers(addr: SocketAddr) -> Duration {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let t = Instant::now();
    let _ = s.write_all(b"POST /graphql HTTP/1.1\r\nHost: x\r\n").await;
    for i in 0..100 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        if s.write_all(format!("X-Slow-{i}: y\r\n").as_bytes())
            .await
            .is_err()
        {
            break;
        }
        let mut probe = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(1), s.read(&mut probe)).await
        {
            break;
        }
    }
    t.elapsed()
}

const TIGHT: &str = "[gateway.connections]\nmax_connections = 6\nheader_read_timeout_ms = 500\nbody_read_timeout_ms = 400\nidle_timeout_ms = 600";

#[tokio::test]
async fn silent_slow_and_stalled_clients_are_cut_off_and_the_cap_refuses_clearly() {
    let p = Platform::start_with(Default::default(), TIGHT).await;
    let addr = p.gateway.addr;
    // Never a byte: closed once idle.
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let slow = tokio::spawn(slow_headers(addr));
    // A body that stops after a few bytes: 408, not a socket held forever.
    let mut partial = TcpStream::connect(addr).await.expect("connect");
    partial
        .write_all(b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"query\"")
        .await
        .expect("write");
    let answer = read_until_closed(&mut partial, Duration::from_secs(3))
        .await
        .expect("the stalled body is answered");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_read_timeout_ms"), "{answer}");
    assert!(
        read_until_closed(&mut silent, Duration::from_secs(3))
            .await
            .is_some(),
        "a silent connection is closed"
    );
    let took = slow.await.expect("slow client");
    assert!(
        took < Duration::from_secs(3),
        "slow headers held the socket for {took:?}"
    );
    assert!(metric(&p.metrics().await, "gateway_connections_timed_out_total") >= 2);

    // At the cap, a clear 503; once the idle ones go, service resumes.
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(TcpStream::connect(addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut over = TcpStream::connect(addr).await.expect("connect");
    let _ = over
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let refused = read_until_closed(&mut over, Duration::from_secs(2))
        .await
        .expect("refused and closed");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("max_connections"), "{refused}");
    drop(held);
    eventually(Duration::from_secs(3), "a free slot", || async {
        let r = http()
            .get(format!("http://{addr}/health"))
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    assert!(metric(&p.metrics().await, "gateway_connections_refused_total") >= 1);
    p.stop().await;
}

#[tokio::test]
async fn the_services_bound_bodies_and_cut_off_idle_clients_too() {
    let http_config = subgraphs::common::HttpConfig {
        max_body_bytes: 1 << 20,
        connections: serve::ConnectionLimits {
            idle_timeout_ms: 500,
            ..Default::default()
        },
    };
    let stack = Subgraphs::start_with(SubgraphsOptions {
        http: http_config,
        ..Default::default()
    })
    .await;
    for url in [stack.pipeline_url(), stack.dataset_url(), stack.log_url()] {
        let addr: SocketAddr = url
            .trim_start_matches("http://")
            .trim_end_matches("/graphql")
            .parse()
            .expect("address");
        let mut silent = TcpStream::connect(addr).await.expect("connect");
        assert!(
            read_until_closed(&mut silent, Duration::from_secs(3))
                .await
                .is_some(),
            "{url}: a silent connection is closed"
        );
        // A 200 MB body is refused on its declared length, unread.
        let mut big = TcpStream::connect(addr).await.expect("connect");
        big.write_all(b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 209715200\r\n\r\n{")
            .await
            .expect("write");
        let mut head = [0u8; 12];
        tokio::time::timeout(Duration::from_secs(2), big.read_exact(&mut head))
            .await
            .expect("answered at once")
            .expect("read");
        assert_eq!(&head, b"HTTP/1.1 413", "{url}");
        // And a chunked one is cut at the limit, not read whole.
        let mut chunked = TcpStream::connect(addr).await.expect("connect");
        let _ = chunked
            .write_all(b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await;
        let chunk = format!("100000\r\n{}\r\n", " ".repeat(1 << 20));
        for _ in 0..3 {
            if chunked.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
        }
        let answer = read_until_closed(&mut chunked, Duration::from_secs(3)).await;
        let answer = answer.unwrap_or_default();
        assert!(answer.starts_with("HTTP/1.1 413"), "{url}: {answer}");
    }
    stack.stop().await;
}

#[tokio::test]
async fn a_websocket_message_over_the_limit_closes_with_1009() {
    let p = Platform::start_with(Default::default(), "max_body_bytes = 4096").await;
    for protocol in Protocol::ALL {
        let mut c = WsClient::ready(&p.ws_url(), protocol).await;
        c.send_text(&format!(
            r#"{{"id": "1", "type": "subscribe", "payload": {{"query": "{{ pipelineTemplates {{ name }} }} #{}"}}}}"#,
            "x".repeat(8192)
        ))
        .await;
        let (code, reason) = c.expect_close(Duration::from_secs(3)).await;
        assert_eq!(code, 1009, "{protocol:?}: {reason}");
        assert!(reason.contains("max_body_bytes"), "{reason}");
    }
    p.stop().await;
}

#[tokio::test]
async fn storage_errors_and_oversized_list_filters_reveal_no_sql() {
    let p = Platform::start().await;
    // 40,000 statuses: more values than one SQLite statement holds.
    let q = "query($s: [PipelineStatus!]) { pipelines(filter: {statuses: $s}) { total } }";
    let many = vec!["SUCCESS"; 40_000];
    let resp = p.query(q, json!({ "s": many })).await;
    assert_eq!(error_codes(&resp), ["BAD_USER_INPUT"], "{resp}");
    assert!(resp.to_string().contains("filter.statuses"), "{resp}");
    let ok = p
        .query(q, json!({ "s": ["SUCCESS", "SUCCESS", "FAILURE"] }))
        .await;
    assert_eq!(ok.get("errors"), None, "{ok}");

    // A store that fails underneath: the client hears that, not the SQL.
    let db = p.subgraphs.database("dataset.sqlite");
    e2e::storage::execute(&db, "dataset", "DROP TABLE datasets");
    let resp = p.query("{ datasets { total } }", json!({})).await;
    assert_eq!(error_codes(&resp), ["INTERNAL_SERVER_ERROR"], "{resp}");
    let text = resp.to_string().to_lowercase();
    assert!(text.contains("internal storage error"), "{resp}");
    for leak in [
        "sql",
        "no such table",
        "does not exist",
        "datasets",
        ".sqlite",
        "postgres",
    ] {
        assert!(
            !resp["errors"][0]["message"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains(leak),
            "`{leak}` reached the client: {resp}"
        );
    }
    p.stop().await;
}

#[tokio::test]
async fn internal_mutations_need_the_service_token_and_write_nothing_without_it() {
    let stack = Subgraphs::start_without_pipeline().await;
    let ingest = "mutation($e: [LogEntryInput!]!) { ingestLogs(entries: $e) }";
    let entry =
        json!({ "e": [{ "pipelineId": "p1", "level": "INFO", "message": "real", "key": "p1:k" }] });
    let lines = "{ pipelineLogs(pipelineId: \"p1\") { items { message } } }";
    let bare = reqwest::Client::new();
    let mut wrong = reqwest::header::HeaderMap::new();
    wrong.insert("x-service-token", "guess".parse().expect("header"));
    let wrong = reqwest::Client::builder()
        .default_headers(wrong)
        .build()
        .expect("client");
    for client in [&bare, &wrong] {
        let resp = e2e::client::gql_with(client, &stack.log_url(), ingest, entry.clone()).await;
        assert_eq!(error_codes(&resp), ["FORBIDDEN"], "{resp}");
        assert!(resp.to_string().contains("x-service-token"), "{resp}");
    }
    let stored = e2e::client::gql(&stack.log_url(), lines, json!({})).await;
    assert_eq!(
        stored["data"]["pipelineLogs"]["items"],
        json!([]),
        "nothing written"
    );
    // The key was not claimed by the refused calls: the real line lands.
    let resp = e2e::client::gql(&stack.log_url(), ingest, entry).await;
    assert_eq!(resp["data"]["ingestLogs"], 1, "{resp}");

    let id = e2e::pipeline_support::create_dataset(&stack.dataset_url(), "d").await;
    let record = "mutation($id: ID!) { recordDatasetProducer(id: $id, pipelineId: \"p1\") { id } }";
    let resp =
        e2e::client::gql_with(&bare, &stack.dataset_url(), record, json!({ "id": id })).await;
    assert_eq!(error_codes(&resp), ["FORBIDDEN"], "{resp}");
    let d = e2e::client::gql(
        &stack.dataset_url(),
        "query($id: ID!) { dataset(id: $id) { producedByPipelineId } }",
        json!({ "id": id }),
    )
    .await;
    assert_eq!(
        d["data"]["dataset"]["producedByPipelineId"],
        Value::Null,
        "{d}"
    );
    stack.stop().await;
}

/// The pipeline service as a process of its own on `port`, its store in
/// `dir`, talking to the stack's dataset and log subgraphs.
fn pipeline_process(dir: &std::path::Path, port: u16, stack: &Subgraphs) -> tokio::process::Child {
    let path = dir.join("pipeline.toml");
    std::fs::write(
        &path,
        format!(
            "[services.pipeline]\nlisten = \"127.0.0.1:{port}\"\ndatabase = \"{}\"\nlease_seconds = 2\ndataset_url = \"{}\"\nlog_url = \"{}\"\nservice_token = \"{}\"\n[services.pipeline.authorization]\ndefault = [\"*\"]\n",
            e2e::storage::config_value(&stack.database(&dir.join("pipeline.sqlite").display().to_string())),
            stack.dataset_url(),
            stack.log_url(),
            e2e::stack::SERVICE_TOKEN
        ),
    )
    .expect("write pipeline config");
    tokio::process::Command::new(env!("CARGO_BIN_EXE_pipeline-under-test"))
        .args(["--config", &path.display().to_string()])
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the pipeline service")
}

/// On Postgres a replica claims the log lines it delivers. The claim holds
/// while the replica renews it (a slow delivery is not sent twice), and
/// lapses seconds after the renewing stops (the replica was killed while
/// delivering), so another replica sends them: a claim that held for the
/// peers' HTTP timeout once kept a killed replica's lines back for 40 s.
#[tokio::test]
async fn a_log_claim_holds_while_renewed_and_lapses_soon_after_its_replica_dies() {
    use subgraphs::{
        common::Database,
        pipeline::{log_shipper::keyed_line, outbox::Level},
    };
    // One process per SQLite file: there is no other replica to keep off.
    let Some(url) = e2e::storage::stack_postgres() else {
        return;
    };
    let database = Database::Postgres(url);
    let delivering = e2e::storage::pipeline_store(&database).await;
    let other = e2e::storage::pipeline_store(&database).await;
    let line = keyed_line(
        "run-1",
        Level::Info,
        None,
        "hello".into(),
        "run-1:k:1".into(),
    );
    delivering.append_log(vec![line]).await.expect("append");
    assert_eq!(delivering.take_log(10).await.expect("take").lines.len(), 1);
    // Renewed for longer than a claim lasts unrenewed: still held.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        delivering.renew_log().await.expect("renew");
        assert!(other.take_log(10).await.expect("take").is_empty());
    }
    // Its replica dies: the other one takes the lines within seconds.
    let deadline = Instant::now() + Duration::from_secs(15);
    let batch = loop {
        let batch = other.take_log(10).await.expect("take");
        if !batch.is_empty() {
            break batch;
        }
        assert!(
            Instant::now() < deadline,
            "a dead replica's claim still held after 15 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(batch.lines[0].message, "hello");
}

#[tokio::test]
async fn log_lines_survive_kill_9_of_the_pipeline_service_while_the_log_service_is_down() {
    const WAIT: Duration = Duration::from_secs(20);
    let mut stack = Subgraphs::start_without_pipeline().await;
    let dataset = stack.dataset_url();
    let dir = tempfile::tempdir().expect("temp dir");
    let port = e2e::platform::free_port();
    let url = format!("http://127.0.0.1:{port}/graphql");
    stack.stop_log().await;
    let mut pipeline = pipeline_process(dir.path(), port, &stack);
    e2e::platform::wait_healthy(port, WAIT).await;

    // One run finishes, one is RUNNING when the process dies: every line
    // of both waits in the pipeline store only.
    let (done, ..) = finished_run(&url, &dataset, json!(null)).await;
    let (slow_in, slow_out) = text_datasets(&dataset, Some("abc")).await;
    let slow = json!([{ "name": "duration", "value": "60" }]);
    let live = create_run(&url, "example00", &slow_in, &slow_out, slow, json!(null)).await;
    let live = live["id"].as_str().expect("run id").to_string();
    wait_status(&url, &live, &["RUNNING"], WAIT).await;
    pipeline.kill().await.expect("SIGKILL the pipeline service");

    stack.start_log().await;
    let mut pipeline = pipeline_process(dir.path(), port, &stack);
    e2e::platform::wait_healthy(port, WAIT).await;

    let lines = wait_logs(&stack.log_url(), &done, WAIT, |l| l.len() >= 9).await;
    assert_example01_log(&lines, &done);
    // Alone on SQLite, the restarted process fails it at once; on Postgres
    // a replica fails it when the dead one's lease lapses.
    let why = if e2e::storage::on_postgres() {
        "its lease expired"
    } else {
        "interrupted by restart"
    };
    let lines = wait_logs(&stack.log_url(), &live, WAIT, |l| {
        l.last()
            .is_some_and(|l| l["message"].as_str().unwrap_or("").contains(why))
    })
    .await;
    let summary = log_summary(&lines);
    let messages: Vec<&str> = summary.iter().map(|(_, _, m)| m.as_str()).collect();
    assert_eq!(
        messages[..2],
        [
            "run created from template example00; waiting for a worker",
            "run started: template example00"
        ],
        "{summary:#?}"
    );
    // the node line may or may not have been committed before the kill
    assert!(
        messages[2..messages.len() - 1]
            .iter()
            .all(|m| m.starts_with("node ")),
        "{summary:#?}"
    );
    assert_eq!(summary.last().map(|l| l.0.as_str()), Some("ERROR"));

    // once: nothing more arrives
    let counts = (lines.len(), run_logs(&stack.log_url(), &done).await.len());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(run_logs(&stack.log_url(), &live).await.len(), counts.0);
    assert_eq!(run_logs(&stack.log_url(), &done).await.len(), counts.1);
    assert_eq!(counts.1, 9);
    pipeline.kill().await.expect("stop the pipeline service");
    stack.stop().await;
}
