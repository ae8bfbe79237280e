//! Helpers for the pipeline tests: datasets with content, runs, waiting for
//! a status, reading a run's logs, and a pipeline service started on its own
//! (against a given database or peer URL) beside a `Subgraphs` stack.

use std::time::Duration;

use serde_json::{json, Value};
use subgraphs::{
    common::RunningService,
    pipeline::{self, PipelineConfig},
};
use tokio::net::TcpListener;

use crate::{
    client::{data, gql, http},
    stack::Subgraphs,
};

/// Every field of `Pipeline`.
pub const PIPELINE_FIELDS: &str =
    "id name describe status parameters { name value } tags { key value } \
     dataCatalog { name datasetId } datasetIds createdAt startedAt finishedAt error";

/// Creates a text dataset; returns its id.
pub async fn create_dataset(dataset_url: &str, name: &str) -> String {
    let resp = gql(
        dataset_url,
        "mutation($d: DatasetInput!) { createDataset(dataset: $d) { id } }",
        json!({ "d": { "name": name, "type": "text.TextDataset" } }),
    )
    .await;
    data(&resp)["createDataset"]["id"]
        .as_str()
        .expect("dataset id")
        .to_string()
}

/// Uploads `text` as the dataset's content through a signed URL.
pub async fn upload_text(dataset_url: &str, id: &str, text: &str) {
    let resp = gql(
        dataset_url,
        "mutation($id: ID!) { createDatasetUploadUrl(id: $id) }",
        json!({ "id": id }),
    )
    .await;
    let url = data(&resp)["createDatasetUploadUrl"]
        .as_str()
        .expect("upload URL")
        .to_string();
    let put = http()
        .put(&url)
        .body(text.to_string())
        .send()
        .await
        .expect("PUT content");
    assert!(
        put.status().is_success(),
        "upload answered {}",
        put.status()
    );
}

/// The dataset's content through a signed URL: `(HTTP status, body)`.
pub async fn read_text(dataset_url: &str, id: &str) -> (u16, String) {
    let resp = gql(
        dataset_url,
        "query($id: ID!) { readDatasetUrl(id: $id) }",
        json!({ "id": id }),
    )
    .await;
    let url = data(&resp)["readDatasetUrl"]
        .as_str()
        .expect("read URL")
        .to_string();
    let get = http().get(&url).send().await.expect("GET content");
    let status = get.status().as_u16();
    (status, get.text().await.unwrap_or_default())
}

/// A dataset `text_in` with `content` (none if `None`) and an empty `text_out`.
pub async fn text_datasets(dataset_url: &str, content: Option<&str>) -> (String, String) {
    let input = create_dataset(dataset_url, "text_in").await;
    if let Some(c) = content {
        upload_text(dataset_url, &input, c).await;
    }
    let output = create_dataset(dataset_url, "text_out").await;
    (input, output)
}

/// The `createPipeline` response (data or errors).
pub async fn create_run_raw(pipeline_url: &str, input: Value) -> Value {
    gql(
        pipeline_url,
        &format!("mutation($p: PipelineInput!) {{ createPipeline(pipeline: $p) {{ {PIPELINE_FIELDS} }} }}"),
        json!({ "p": input }),
    )
    .await
}

/// Creates a run of `template` from `text_in` to `text_out`; returns the created `Pipeline`.
pub async fn create_run(
    pipeline_url: &str,
    template: &str,
    text_in: &str,
    text_out: &str,
    parameters: Value,
    tags: Value,
) -> Value {
    let resp = create_run_raw(
        pipeline_url,
        json!({
            "name": template,
            "parameters": parameters,
            "dataCatalog": [
                { "name": "text_in", "datasetId": text_in },
                { "name": "text_out", "datasetId": text_out },
            ],
            "tags": tags,
        }),
    )
    .await;
    data(&resp)["createPipeline"].clone()
}

/// `pipeline(id)` with every field (null for unknown).
pub async fn get_run(pipeline_url: &str, id: &str) -> Value {
    let resp = gql(
        pipeline_url,
        &format!("query($id: ID!) {{ pipeline(id: $id) {{ {PIPELINE_FIELDS} }} }}"),
        json!({ "id": id }),
    )
    .await;
    data(&resp)["pipeline"].clone()
}

/// Polls `pipeline(id)` until its status is one of `statuses`; panics after `timeout`.
pub async fn wait_status(
    pipeline_url: &str,
    id: &str,
    statuses: &[&str],
    timeout: Duration,
) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let run = get_run(pipeline_url, id).await;
        if statuses.iter().any(|s| run["status"] == *s) {
            return run;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("run {id} did not reach {statuses:?} within {timeout:?}: {run}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every log line of a run, oldest first, read page by page from the log subgraph.
pub async fn run_logs(log_url: &str, pipeline_id: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let resp = gql(
            log_url,
            "query($p: ID!, $c: String) { pipelineLogs(pipelineId: $p, limit: 100, cursor: $c) { items { id pipelineId level message node time } nextCursor } }",
            json!({ "p": pipeline_id, "c": cursor }),
        )
        .await;
        let page = &data(&resp)["pipelineLogs"];
        out.extend(page["items"].as_array().cloned().unwrap_or_default());
        match &page["nextCursor"] {
            Value::String(c) => cursor = Value::String(c.clone()),
            _ => return out,
        }
    }
}

/// Polls the run's logs until `done(lines)`; returns them. Panics after `timeout`.
pub async fn wait_logs(
    log_url: &str,
    pipeline_id: &str,
    timeout: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let lines = run_logs(log_url, pipeline_id).await;
        if done(&lines) {
            return lines;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "logs of run {pipeline_id} incomplete after {timeout:?}: {}",
                serde_json::to_string_pretty(&lines).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `(level, node, message)` of each line, for comparisons.
pub fn log_summary(lines: &[Value]) -> Vec<(String, Option<String>, String)> {
    lines
        .iter()
        .map(|l| {
            (
                l["level"].as_str().unwrap_or("").to_string(),
                l["node"].as_str().map(String::from),
                l["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// A pipeline service of its own, on an ephemeral port, talking to the
/// stack's dataset and log subgraphs (start the stack without its pipeline).
pub async fn start_pipeline(
    stack: &Subgraphs,
    database: &subgraphs::common::Database,
    workers: usize,
) -> RunningService {
    start_pipeline_with(PipelineConfig {
        listen: "127.0.0.1:0".into(),
        database: database.clone(),
        lease_seconds: 10,
        workers,
        dataset_url: stack.dataset_url(),
        log_url: stack.log_url(),
        log_buffer: 10_000,
        http: Default::default(),
        service_token: Some(crate::stack::SERVICE_TOKEN.into()),
        authorization: subgraphs::common::rbac::Authorization::allow_all(),
    })
    .await
}

/// A pipeline service of its own with the given config (its `listen` is ignored).
pub async fn start_pipeline_with(config: PipelineConfig) -> RunningService {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    pipeline::start(config, listener)
        .await
        .unwrap_or_else(|e| panic!("start pipeline subgraph: {e}"))
}

/// A URL where nothing listens: a free port no other test is handed.
pub async fn dead_url() -> String {
    format!("http://127.0.0.1:{}/graphql", crate::platform::free_port())
}

/// A stack with one pipeline worker and two 60-second `example00` runs:
/// `(stack, pipeline URL, running run id, pending run id)`, the first already RUNNING.
pub async fn one_worker_two_slow_runs() -> (Subgraphs, String, String, String) {
    let stack = Subgraphs::start_with(crate::stack::SubgraphsOptions {
        workers: 1,
        ..Default::default()
    })
    .await;
    let url = stack.pipeline_url();
    let (text_in, text_out) = text_datasets(&stack.dataset_url(), Some("abc")).await;
    let slow = json!([{ "name": "duration", "value": "60" }]);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let run = create_run(
            &url,
            "example00",
            &text_in,
            &text_out,
            slow.clone(),
            json!(null),
        )
        .await;
        ids.push(run["id"].as_str().expect("run id").to_string());
    }
    wait_status(&url, &ids[0], &["RUNNING"], Duration::from_secs(20)).await;
    let pending = ids.pop().unwrap_or_default();
    let running = ids.pop().unwrap_or_default();
    (stack, url, running, pending)
}

/// An `example01` run with `tags`, created through `url` (the gateway or
/// the pipeline subgraph) over fresh datasets, finished: `(run, input, output)`.
pub async fn finished_run(url: &str, dataset_url: &str, tags: Value) -> (String, String, String) {
    let (input, output) = text_datasets(dataset_url, Some("hello")).await;
    let run = create_run(
        url,
        "example01",
        &input,
        &output,
        serde_json::json!([]),
        tags,
    )
    .await;
    let id = run["id"].as_str().expect("run id").to_string();
    wait_status(url, &id, &["SUCCESS"], std::time::Duration::from_secs(20)).await;
    (id, input, output)
}

/// The log lines of a successful example01 run, in order.
pub fn assert_example01_log(lines: &[Value], pipeline_id: &str) {
    let summary = log_summary(lines);
    let expected_prefixes: Vec<(&str, Option<&str>, &str)> = vec![
        (
            "INFO",
            None,
            "run created from template example01; waiting for a worker",
        ),
        ("INFO", None, "run started: template example01"),
        ("INFO", Some("uppercase"), "node uppercase started"),
        ("INFO", Some("uppercase"), "node uppercase finished in "),
        ("INFO", Some("reverse"), "node reverse started"),
        ("INFO", Some("reverse"), "node reverse finished in "),
        (
            "INFO",
            Some("append_timestamp"),
            "node append_timestamp started",
        ),
        (
            "INFO",
            Some("append_timestamp"),
            "node append_timestamp finished in ",
        ),
        ("INFO", None, "run succeeded in "),
    ];
    assert_eq!(summary.len(), expected_prefixes.len(), "{summary:#?}");
    for ((level, node, message), (want_level, want_node, want_prefix)) in
        summary.iter().zip(&expected_prefixes)
    {
        assert_eq!(level, want_level, "{summary:#?}");
        assert_eq!(node.as_deref(), *want_node, "{summary:#?}");
        assert!(
            message.starts_with(want_prefix),
            "{message} should start with {want_prefix}"
        );
    }
    assert!(lines.iter().all(|l| l["pipelineId"] == pipeline_id));
    let times: Vec<subgraphs::common::Timestamp> = lines
        .iter()
        .map(|l| subgraphs::common::Timestamp::parse(l["time"].as_str().unwrap()).unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
}
