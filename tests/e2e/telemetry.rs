//! OpenTelemetry traces through a real OTLP receiver (Rotel): the gateway
//! and the three services run as processes, the gateway exports over
//! OTLP/HTTP (from `[gateway.telemetry]`), the services over OTLP/gRPC
//! (from `OTEL_EXPORTER_OTLP_ENDPOINT`), and one client request is one
//! trace: the client's, through the gateway's stages and subgraph calls,
//! into each service.

use std::{process::Stdio, time::Duration};

use e2e::{
    otlp::{ReceivedSpan, Receiver},
    platform::{eventually, free_port, wait_healthy, wait_ready},
};
use serde_json::{json, Value};

/// The repository's config.toml on free ports, with its files in `dir`.
fn config(dir: &std::path::Path, ports: &[u16; 4], extra: &str) -> std::path::PathBuf {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut text = std::fs::read_to_string(format!("{root}/config.toml")).expect("config.toml");
    for (i, port) in ports.iter().enumerate() {
        text = text.replace(&format!("127.0.0.1:400{i}"), &format!("127.0.0.1:{port}"));
    }
    text = text
        .replace(
            "\"gateway/stitching/",
            &format!("\"{root}/gateway/stitching/"),
        )
        .replace("\"data/", &format!("\"{}/data/", dir.display()));
    text.push_str(extra);
    let path = dir.join("config.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn spawn(bin: &str, config: &std::path::Path, env: &[(&str, &str)]) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(["--config", &config.display().to_string()])
        .env("STITCH_DEV", "1")
        // Spans leave within 100 ms, not the default 5 s.
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn")
}

fn one<'a>(spans: &'a [ReceivedSpan], service: &str, name: &str) -> &'a ReceivedSpan {
    let found: Vec<_> = spans
        .iter()
        .filter(|s| s.service == service && s.name == name)
        .collect();
    assert_eq!(found.len(), 1, "one `{name}` of {service} in {spans:#?}");
    found[0]
}

#[tokio::test]
async fn a_request_is_one_trace_across_the_gateway_and_the_services_it_calls() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = [free_port(), free_port(), free_port(), free_port()];
    let extra = format!(
        "\n[gateway.telemetry]\notlp_endpoint = \"{}\"\notlp_protocol = \"http/protobuf\"\n",
        receiver.http
    );
    let path = config(dir.path(), &ports, &extra);
    let grpc = [("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.grpc.as_str())];
    let _services = [
        spawn(env!("CARGO_BIN_EXE_dataset-under-test"), &path, &grpc),
        spawn(env!("CARGO_BIN_EXE_log-under-test"), &path, &grpc),
        spawn(env!("CARGO_BIN_EXE_pipeline-under-test"), &path, &grpc),
    ];
    for port in &ports[1..] {
        wait_healthy(*port, Duration::from_secs(30)).await;
    }
    let _gateway = spawn(env!("CARGO_BIN_EXE_gateway-under-test"), &path, &[]);
    // Ready, not just live: the schema is built.
    wait_ready(&format!("127.0.0.1:{}", ports[0]), Duration::from_secs(30)).await;

    let trace = format!("{:032x}", fastrand::u128(1..));
    let client_span = format!("{:016x}", fastrand::u64(1..));
    let resp: Value = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/graphql", ports[0]))
        .header("traceparent", format!("00-{trace}-{client_span}-01"))
        .json(&json!({ "query": "{ pipelines { total } datasets { total } }" }))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON");
    assert!(resp["data"]["pipelines"]["total"].is_number(), "{resp}");

    let expected = 9;
    let spans = eventually(Duration::from_secs(20), "the request's spans", || async {
        let spans: Vec<ReceivedSpan> = receiver
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == trace)
            .collect();
        (spans.len() >= expected).then_some(spans)
    })
    .await;
    assert_eq!(spans.len(), expected, "{spans:#?}");

    // The gateway's server span continues the client's trace.
    let request = one(&spans, "gateway", "POST /graphql");
    assert_eq!(request.parent_id, client_span);
    assert_eq!(request.kind, "SPAN_KIND_SERVER");
    assert_eq!(request.attributes["http.response.status_code"], "200");
    // Its stages, then one client span per subgraph called.
    for stage in [
        "graphql.parse",
        "graphql.validate",
        "graphql.plan",
        "graphql.execute",
    ] {
        assert_eq!(
            one(&spans, "gateway", stage).parent_id,
            request.id,
            "{stage}"
        );
    }
    let execute = one(&spans, "gateway", "graphql.execute");
    for subgraph in ["pipeline", "dataset"] {
        let call = one(&spans, "gateway", &format!("subgraph {subgraph}"));
        assert_eq!(call.parent_id, execute.id);
        assert_eq!(call.kind, "SPAN_KIND_CLIENT");
        assert_eq!(call.status, "STATUS_CODE_OK");
        assert_eq!(call.attributes["subgraph.name"], subgraph);
        assert_eq!(call.attributes["graphql.batch_size"], "1");
        // The service continues the trace under the gateway's call.
        let served = one(&spans, subgraph, "POST /graphql");
        assert_eq!(served.parent_id, call.id, "{subgraph}");
        assert_eq!(served.kind, "SPAN_KIND_SERVER");
    }

    // Spans still queued when a gateway stops go out before it exits.
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut stopping = spawn(
        env!("CARGO_BIN_EXE_gateway-under-test"),
        &path,
        &[
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
            ("GATEWAY_LISTEN", &listen),
        ],
    );
    wait_ready(&listen, Duration::from_secs(30)).await;
    let late_trace = format!("{:032x}", fastrand::u128(1..));
    reqwest::Client::new()
        .post(format!("http://{listen}/graphql"))
        .header("traceparent", format!("00-{late_trace}-{client_span}-01"))
        .json(&json!({ "query": "{ pipelines { total } }" }))
        .send()
        .await
        .expect("answered");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let of_late = |spans: Vec<ReceivedSpan>| {
        spans
            .into_iter()
            .filter(|s| s.trace_id == late_trace && s.service == "gateway")
            .count()
    };
    assert_eq!(of_late(receiver.spans()), 0, "queued, not sent yet");
    let pid = stopping.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(20), stopping.wait())
        .await
        .expect("stopped on SIGTERM")
        .expect("status");
    assert!(exit.success(), "{exit}");
    eventually(Duration::from_secs(10), "the queued spans", || async {
        (of_late(receiver.spans()) == 6).then_some(())
    })
    .await;

    // Without a traceparent, the gateway starts the trace.
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/graphql", ports[0]))
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .expect("answered");
    eventually(
        Duration::from_secs(20),
        "a trace rooted at the gateway",
        || async {
            receiver
                .spans()
                .into_iter()
                .find(|s| {
                    s.service == "gateway"
                        && s.name == "POST /graphql"
                        && s.parent_id.is_empty()
                        && s.trace_id != trace
                })
                .map(|_| ())
        },
    )
    .await;
}
