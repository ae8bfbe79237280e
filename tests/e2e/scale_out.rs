//! Several replicas of every service on one Postgres database (dataset
//! content in an S3-compatible store), behind two gateways: the run queue,
//! cancellation, log streams and dataset content work across replicas, and
//! `kill -9` of a pipeline replica loses nothing.

use std::{path::Path, time::Duration};

use e2e::{
    client::{data, gql, Protocol, Subscription},
    pipeline_support::*,
    platform::{free_port, start_gateway, stitching_dir, wait_healthy},
    stack::SERVICE_TOKEN,
};
use futures::future::join_all;
use serde_json::{json, Value};
use subgraphs::common::{rbac::Authorization, Database, RunningService};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(60);
const RUNS: usize = 200;

/// One pipeline replica as a process of its own (so it can be killed).
struct PipelineReplica {
    child: tokio::process::Child,
    url: String,
}

fn pipeline_replica(
    dir: &Path,
    name: &str,
    database: &str,
    workers: usize,
    dataset_url: &str,
    log_url: &str,
) -> PipelineReplica {
    let port = free_port();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[services.pipeline]\nlisten = \"127.0.0.1:{port}\"\ndatabase = \"{database}\"\n\
             lease_seconds = 2\nworkers = {workers}\ndataset_url = \"{dataset_url}\"\n\
             log_url = \"{log_url}\"\nservice_token = \"{SERVICE_TOKEN}\"\n\
             [services.pipeline.authorization]\ndefault = [\"*\"]\n"
        ),
    )
    .expect("write pipeline config");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pipeline-under-test"))
        .args(["--config", &path.display().to_string()])
        .kill_on_drop(true)
        .spawn()
        .expect("spawn a pipeline replica");
    PipelineReplica {
        child,
        url: format!("http://127.0.0.1:{port}/graphql"),
    }
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}

/// An S3-compatible server (s3s-fs, from crates.io) over a temporary
/// directory, with one bucket, `content`.
struct S3Server {
    _child: tokio::process::Child,
    endpoint: String,
    _root: tempfile::TempDir,
}

const S3_KEY: &str = "e2e-access-key";
const S3_SECRET: &str = "e2e-secret-key";

async fn s3_server() -> S3Server {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/ensure-s3-server.sh");
    let out = std::process::Command::new(script)
        .output()
        .expect("run scripts/ensure-s3-server.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let root = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(root.path().join("content")).expect("the bucket");
    let port = free_port();
    let child = tokio::process::Command::new(bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", S3_KEY, "--secret-key", S3_SECRET])
        .arg(root.path())
        .kill_on_drop(true)
        .spawn()
        .expect("start s3s-fs");
    e2e::platform::eventually(WAIT, "the S3 server listens", || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
    })
    .await;
    S3Server {
        _child: child,
        endpoint: format!("http://127.0.0.1:{port}"),
        _root: root,
    }
}

async fn dataset_replica(database: &Database, s3: &S3Server) -> RunningService {
    let listener = bind().await;
    let options = [
        ("aws_endpoint", s3.endpoint.as_str()),
        ("aws_allow_http", "true"),
        ("aws_access_key_id", S3_KEY),
        ("aws_secret_access_key", S3_SECRET),
        ("aws_region", "us-east-1"),
    ];
    let config = subgraphs::dataset::DatasetConfig {
        listen: listener.local_addr().expect("addr").to_string(),
        database: database.clone(),
        data_dir: None,
        content_url: Some("s3://content/datasets".into()),
        content_options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        public_url: None,
        signing_secret: e2e::stack::SIGNING_SECRET.into(),
        max_expires_in_sec: 86_400,
        max_upload_bytes: 1024 * 1024,
        http: Default::default(),
        cors: Default::default(),
        service_token: Some(SERVICE_TOKEN.into()),
        authorization: Authorization::allow_all(),
    };
    subgraphs::dataset::start(config, listener)
        .await
        .unwrap_or_else(|e| panic!("start a dataset replica: {e}"))
}

async fn log_replica(database: &Database) -> RunningService {
    let listener = bind().await;
    let config = subgraphs::log::LogConfig {
        listen: listener.local_addr().expect("addr").to_string(),
        database: database.clone(),
        http: Default::default(),
        service_token: Some(SERVICE_TOKEN.into()),
        authorization: Authorization::allow_all(),
    };
    subgraphs::log::start(config, listener)
        .await
        .unwrap_or_else(|e| panic!("start a log replica: {e}"))
}

/// A gateway whose subgraphs are the given endpoints (the first of each is
/// `url`, the rest its `replicas`; subscriptions go to the first).
async fn gateway_over(
    dir: &Path,
    name: &str,
    pipeline: &[&str],
    dataset: &[&str],
    log: &[&str],
) -> ::gateway::RunningGateway {
    let entry = |subgraph: &str, urls: &[&str], hide: &str| {
        let replicas: Vec<String> = urls[1..].iter().map(|u| format!("\"{u}\"")).collect();
        format!(
            "[[subgraphs]]\nname = \"{subgraph}\"\nurl = \"{}\"\nreplicas = [{}]\nws_url = \"{}\"\n\
             timeout_ms = 5000\nstitching_files = [\"{}\"]\nhide = [{hide}]\n\n",
            urls[0],
            replicas.join(", "),
            urls[0].replacen("http://", "ws://", 1),
            stitching_dir().join(format!("{subgraph}.graphql")).display()
        )
    };
    let text = format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\nhot_reload = false\n\n{}{}{}",
        entry("pipeline", pipeline, "\"Query.pipelinesByIds\""),
        entry(
            "dataset",
            dataset,
            "\"Query.datasetsByIds\", \"Mutation.recordDatasetProducer\", \"Subscription.datasetUpdated\""
        ),
        entry(
            "log",
            log,
            "\"Query.pipelineLogs\", \"Query.pipelineLogPages\", \"Mutation.ingestLogs\", \"Subscription.logStream\""
        ),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write gateway config");
    start_gateway(&path)
        .await
        .unwrap_or_else(|e| panic!("start gateway {name}: {e}"))
}

/// `createPipeline` through a gateway; the run's id.
async fn create_through(
    gateway_url: &str,
    template: &str,
    input: &str,
    output: &str,
    duration: &str,
) -> String {
    let resp = gql(
        gateway_url,
        "mutation($p: PipelineInput!) { createPipeline(pipeline: $p) { id status } }",
        json!({ "p": {
            "name": template,
            "parameters": if template == "example00" { json!([{ "name": "duration", "value": duration }]) } else { json!([]) },
            "dataCatalog": [
                { "name": "text_in", "datasetId": input },
                { "name": "text_out", "datasetId": output },
            ],
        } }),
    )
    .await;
    data(&resp)["createPipeline"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no run id: {resp}"))
        .to_string()
}

async fn cancel_through(gateway_url: &str, id: &str) -> Value {
    let resp = gql(
        gateway_url,
        "mutation($id: ID!) { cancelPipeline(id: $id) { status } }",
        json!({ "id": id }),
    )
    .await;
    data(&resp)["cancelPipeline"].clone()
}

async fn live_runs(pipeline_url: &str) -> u64 {
    let resp = gql(
        pipeline_url,
        "{ pipelines(filter: { statuses: [PENDING, RUNNING] }) { total } }",
        json!({}),
    )
    .await;
    data(&resp)["pipelines"]["total"]
        .as_u64()
        .unwrap_or(u64::MAX)
}

#[tokio::test]
async fn replicas_share_queue_logs_and_datasets_and_a_killed_pipeline_replica_loses_nothing() {
    let cluster = pgcluster::Cluster::start().expect("a Postgres cluster");
    let url = cluster.create_database("platform").expect("a database");
    let database = Database::Postgres(url.clone());
    let dir = tempfile::tempdir().expect("temp dir");
    // Dataset content in an S3-compatible object store both replicas share.
    let s3 = s3_server().await;

    let datasets = [
        dataset_replica(&database, &s3).await,
        dataset_replica(&database, &s3).await,
    ];
    let logs = [log_replica(&database).await, log_replica(&database).await];
    let (d1, d2) = (datasets[0].url(), datasets[1].url());
    let (l1, l2) = (logs[0].url(), logs[1].url());

    // A dataset uploaded through one replica is read through the other, and
    // a `datasetUpdated` subscriber of the other hears of it.
    let (input, output) = text_datasets(&d1, Some("hello")).await;
    assert_eq!(read_text(&d2, &input).await, (200, "hello".to_string()));
    let mut updates = Subscription::start(
        &datasets[1].ws_url(),
        Protocol::GraphqlTransportWs,
        "subscription($id: ID) { datasetUpdated(id: $id) { id sizeBytes } }",
        json!({ "id": output }),
    )
    .await;
    upload_text(&d1, &output, "seven b").await;
    let update = updates.next(WAIT).await.expect("an update");
    assert_eq!(
        update["datasetUpdated"],
        json!({ "id": output, "sizeBytes": 7 })
    );

    // Replica A alone: it claims both slow runs, so its two workers are busy.
    let mut a = pipeline_replica(dir.path(), "a", &url, 2, &d1, &l1);
    wait_healthy(port_of(&a.url), WAIT).await;
    let slow_x = create_run(
        &a.url,
        "example00",
        &input,
        &output,
        json!([{ "name": "duration", "value": "60" }]),
        json!(null),
    )
    .await;
    let slow_x2 = create_run(
        &a.url,
        "example00",
        &input,
        &output,
        json!([{ "name": "duration", "value": "60" }]),
        json!(null),
    )
    .await;
    let (x, x2) = (id_of(&slow_x), id_of(&slow_x2));
    wait_status(&a.url, &x, &["RUNNING"], WAIT).await;
    wait_status(&a.url, &x2, &["RUNNING"], WAIT).await;

    let mut b = pipeline_replica(dir.path(), "b", &url, 2, &d2, &l2);
    wait_healthy(port_of(&b.url), WAIT).await;
    let ga = gateway_over(dir.path(), "ga", &[&a.url, &b.url], &[&d1, &d2], &[&l1]).await;
    let gb = gateway_over(dir.path(), "gb", &[&b.url, &a.url], &[&d2, &d1], &[&l2]).await;

    // A run created on A's endpoint runs on B (A's workers are busy); its
    // lines go to log replica 2, and a live stream through gateway A (log
    // replica 1) receives every one of them, once.
    let y = create_through(&ga.url(), "example00", &input, &output, "1").await;
    let mut events = Subscription::start(
        &ga.ws_url(),
        Protocol::GraphqlTransportWs,
        "subscription($id: ID!) { pipelineEvents(id: $id) { status node } }",
        json!({ "id": y }),
    )
    .await;
    let mut stream = Subscription::start(
        &ga.ws_url(),
        Protocol::GraphqlTransportWs,
        "subscription($id: ID!) { pipelineLogs(id: $id) { id message } }",
        json!({ "id": y }),
    )
    .await;
    // The run's five lines come from two writers (the creating replica and
    // the executing one). The stream replays the lines stored before it
    // began in time order, then follows in commit order (ids), and the run
    // may have logged before the subscription started, so the order seen
    // here can be neither. What holds across writers is that no line is
    // lost or repeated: a live cursor that skipped an id uncommitted yet
    // would lose that line. (The order itself: `log::stream`'s unit test.)
    let line = |l: &Value| {
        let id = l["id"]
            .as_str()
            .map(String::from)
            .or_else(|| l["id"].as_i64().map(|n| n.to_string()));
        (
            id.unwrap_or_default().parse::<i64>().unwrap_or(-1),
            l["message"].as_str().unwrap_or("").to_string(),
        )
    };
    let mut streamed = Vec::new();
    while streamed.len() < 5 {
        let event = stream
            .next(WAIT)
            .await
            .unwrap_or_else(|| panic!("the stream ended after {streamed:?}"));
        streamed.push(line(&event["pipelineLogs"]));
    }
    streamed.sort();
    let mut stored: Vec<(i64, String)> = run_logs(&l2, &y).await.iter().map(line).collect();
    stored.sort();
    assert_eq!(streamed, stored, "lost or repeated lines");
    assert!(
        matches!(
            stream.next_message(Duration::from_millis(300)).await,
            e2e::client::Next::Timeout
        ),
        "a line came twice"
    );
    // Its events, published by replica B, reach a follower on replica A.
    let mut seen = Vec::new();
    while let Some(event) = events.next(WAIT).await {
        let e = &event["pipelineEvents"];
        seen.push(format!(
            "{}{}",
            e["status"].as_str().unwrap_or(""),
            e["node"]
                .as_str()
                .map(|n| format!(" {n}"))
                .unwrap_or_default()
        ));
    }
    assert_eq!(seen.last().map(String::as_str), Some("SUCCESS"), "{seen:?}");
    assert!(seen.iter().any(|e| e == "RUNNING echo"), "{seen:?}");

    // A cancel through gateway B (replica B) ends a run executing on A: its
    // worker is free again within a second, so of three new slow runs (B has
    // two free workers) all three are running.
    assert_eq!(
        cancel_through(&gb.url(), &x).await,
        json!({ "status": "CANCELLED" })
    );
    let cancelled_at = tokio::time::Instant::now();
    let gb_url = gb.url();
    let fillers: Vec<String> =
        join_all((0..3).map(|_| create_through(&gb_url, "example00", &input, &output, "30"))).await;
    for id in &fillers {
        wait_status(&a.url, id, &["RUNNING"], WAIT).await;
    }
    assert!(
        cancelled_at.elapsed() < Duration::from_millis(2500),
        "A's worker was freed only after {:?}",
        cancelled_at.elapsed()
    );
    for id in fillers.iter().chain([&x2]) {
        cancel_through(&ga.url(), id).await;
    }
    let x_log = run_logs(&l1, &x).await;
    assert_eq!(
        log_summary(&x_log).last().map(|l| l.2.as_str()),
        Some("run cancelled by cancelPipeline"),
        "{x_log:#?}"
    );

    // 200 runs through alternating gateways; halfway, kill -9 of replica B.
    let mut ids = Vec::with_capacity(RUNS);
    for chunk in 0..RUNS / 10 {
        if chunk == RUNS / 20 {
            b.child.kill().await.expect("kill -9 replica B");
        }
        let gateway = if chunk % 2 == 0 { ga.url() } else { gb.url() };
        ids.extend(
            join_all((0..10).map(|_| create_through(&gateway, "example01", &input, &output, "")))
                .await,
        );
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while live_runs(&a.url).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "runs still live after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every run ended once: succeeded with its whole log, or failed because
    // its replica died, with the lines written up to then and the reason.
    let mut interrupted = 0;
    for id in &ids {
        let run = get_run(&a.url, id).await;
        // Lines a killed replica had not shipped arrive from the outbox
        // through the others (a batch it had claimed once its claim lapses,
        // so later lines can come first): wait for the whole log.
        let message = |l: &Value| l["message"].as_str().unwrap_or("").to_string();
        let succeeded = run["status"] == "SUCCESS";
        let lines = wait_logs(&l1, id, WAIT, |l| {
            let has = |prefix: &str| l.iter().any(|l| message(l).starts_with(prefix));
            if succeeded {
                l.len() >= 9
            } else {
                has("run created")
                    && has("run started")
                    && l.last()
                        .is_some_and(|l| message(l).contains("lease expired"))
            }
        })
        .await;
        match run["status"].as_str() {
            Some("SUCCESS") => assert_example01_log(&lines, id),
            Some("FAILURE") => {
                interrupted += 1;
                assert!(
                    run["error"]
                        .as_str()
                        .unwrap_or("")
                        .contains("its lease expired"),
                    "{run}"
                );
                let summary = log_summary(&lines);
                let started = summary
                    .iter()
                    .filter(|l| l.2.starts_with("run started"))
                    .count();
                assert_eq!(started, 1, "{summary:#?}");
                assert!(summary[0].2.starts_with("run created"), "{summary:#?}");
                assert!(
                    summary
                        .last()
                        .is_some_and(|l| l.2.contains("lease expired")),
                    "{summary:#?}"
                );
            }
            other => panic!("run {id} ended {other:?}: {run}"),
        }
    }
    eprintln!("{interrupted} of {RUNS} runs were interrupted by the kill");

    ga.stop().await;
    gb.stop().await;
    a.child.kill().await.expect("stop replica A");
    for s in datasets.into_iter().chain(logs) {
        s.stop().await;
    }
}

fn id_of(run: &Value) -> String {
    run["id"].as_str().expect("run id").to_string()
}

fn port_of(url: &str) -> u16 {
    url.trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/graphql")
        .parse()
        .expect("port")
}

#[tokio::test]
async fn the_cluster_script_serves_runs_and_subscriptions_through_haproxy() {
    let base = e2e::platform::free_ports(10);
    let dir = tempfile::tempdir().expect("temp dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster.sh");
    let mut cluster = tokio::process::Command::new(script)
        .env("CLUSTER_PORT_BASE", base.to_string())
        .env("CLUSTER_DIR", dir.path())
        .env("GATEWAY_BIN", env!("CARGO_BIN_EXE_gateway-under-test"))
        .env("PIPELINE_BIN", env!("CARGO_BIN_EXE_pipeline-under-test"))
        .env("DATASET_BIN", env!("CARGO_BIN_EXE_dataset-under-test"))
        .env("LOG_BIN", env!("CARGO_BIN_EXE_log-under-test"))
        .kill_on_drop(true)
        .spawn()
        .expect("run scripts/cluster.sh");
    let front = format!("http://127.0.0.1:{base}/graphql");
    let answered = e2e::platform::eventually(WAIT, "HAProxy answers", || {
        let front = front.clone();
        async move {
            let resp = e2e::client::http()
                .post(&front)
                .json(&json!({ "query": "{ pipelineTemplates { name } }" }))
                .send()
                .await
                .ok()?;
            let body: Value = resp.json().await.ok()?;
            body["data"]["pipelineTemplates"].is_array().then_some(body)
        }
    })
    .await;
    assert_eq!(
        answered["data"]["pipelineTemplates"][0]["name"],
        "example00"
    );

    // Datasets and a run, all through the load balancer.
    let dataset = |name: &str| {
        let front = front.clone();
        let name = name.to_string();
        async move {
            let resp = gql(
                &front,
                "mutation($d: DatasetInput!) { createDataset(dataset: $d) { id } }",
                json!({ "d": { "name": name, "type": "text.TextDataset" } }),
            )
            .await;
            data(&resp)["createDataset"]["id"]
                .as_str()
                .expect("id")
                .to_string()
        }
    };
    let (input, output) = (dataset("in").await, dataset("out").await);
    let resp = gql(
        &front,
        "mutation($id: ID!) { createDatasetUploadUrl(id: $id) }",
        json!({ "id": input }),
    )
    .await;
    let upload = data(&resp)["createDatasetUploadUrl"]
        .as_str()
        .expect("url")
        .to_string();
    let put = e2e::client::http()
        .put(&upload)
        .body("hello")
        .send()
        .await
        .expect("upload");
    assert!(put.status().is_success(), "{}", put.status());

    let id = create_through(&front, "example01", &input, &output, "").await;
    let ws = format!("ws://127.0.0.1:{base}/graphql");
    let mut events = Subscription::start(
        &ws,
        Protocol::GraphqlTransportWs,
        "subscription($id: ID!) { pipelineEvents(id: $id) { status } }",
        json!({ "id": id }),
    )
    .await;
    let mut last = Value::Null;
    while let Some(event) = events.next(WAIT).await {
        last = event["pipelineEvents"]["status"].clone();
    }
    assert_eq!(last, "SUCCESS");
    let resp = gql(
        &front,
        "query($id: ID!) { readDatasetUrl(id: $id) }",
        json!({ "id": output }),
    )
    .await;
    let download = data(&resp)["readDatasetUrl"]
        .as_str()
        .expect("url")
        .to_string();
    let text = e2e::client::http()
        .get(&download)
        .send()
        .await
        .expect("download")
        .text()
        .await
        .expect("text");
    assert!(text.starts_with("OLLEH"), "{text}");

    // SIGTERM stops everything, Postgres included.
    let pid = cluster.id().expect("script pid").to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    tokio::time::timeout(WAIT, cluster.wait())
        .await
        .expect("the script stops")
        .expect("status");
    for offset in 0..10 {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", base + offset)).is_err(),
            "port {} still open",
            base + offset
        );
    }
}
