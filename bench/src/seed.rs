//! Seeds the store straight through the subgraphs (not the gateway): two
//! datasets per run (`text_in` with content, `text_out`), one `example00`
//! run per pair (it succeeds and records itself as `text_out`'s producer),
//! and log lines through `ingestLogs` in batches of 1,000.

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use futures::{stream, StreamExt, TryStreamExt};
use serde_json::{json, Value};

use crate::{
    gql::{self, str_at},
    options::Options,
    stack::Stack,
};

/// Aliased mutations per request while seeding.
const BATCH: usize = 50;
/// Seeding requests in flight at once.
const IN_FLIGHT: usize = 4;
/// `ingestLogs` takes at most 1,000 entries per call.
const LOG_BATCH: usize = 1000;

#[derive(Clone, Debug)]
pub struct SeedSummary {
    pub runs: usize,
    pub succeeded: u64,
    pub failed: u64,
    pub unfinished: u64,
    pub datasets: usize,
    pub log_lines: usize,
    pub secs: f64,
}

pub struct Seeded {
    /// Run ids, in creation order.
    pub run_ids: Vec<String>,
    pub summary: SeedSummary,
}

pub async fn seed(o: &Options, stack: &Stack) -> anyhow::Result<Seeded> {
    let started = Instant::now();
    let client = gql::client(IN_FLIGHT * 2)?;
    let dataset_url = stack.dataset.graphql();
    let pipeline_url = stack.pipeline.graphql();
    let dataset_ids = datasets(&client, &dataset_url, o.runs).await?;
    eprintln!(
        "bench: {} datasets in {:.1} s",
        dataset_ids.len(),
        started.elapsed().as_secs_f64()
    );
    upload_inputs(&client, &dataset_url, &dataset_ids).await?;
    let run_ids = runs(&client, &pipeline_url, &dataset_ids).await?;
    eprintln!(
        "bench: {} runs created at {:.1} s",
        run_ids.len(),
        started.elapsed().as_secs_f64()
    );
    let log_lines = log_lines(&client, &stack.log.graphql(), &run_ids, o.log_lines).await?;
    let unfinished = wait_for_runs(&client, &pipeline_url, Duration::from_secs(120)).await?;
    let summary = SeedSummary {
        runs: run_ids.len(),
        succeeded: runs_with(&client, &pipeline_url, "SUCCESS").await?,
        failed: runs_with(&client, &pipeline_url, "FAILURE").await?,
        unfinished,
        datasets: dataset_ids.len(),
        log_lines,
        secs: started.elapsed().as_secs_f64(),
    };
    eprintln!("bench: seeded {summary:?}");
    Ok(Seeded { run_ids, summary })
}

/// Datasets `bench-in-i` and `bench-out-i` for each of `runs` runs: their
/// ids, in that order.
async fn datasets(client: &reqwest::Client, url: &str, runs: usize) -> anyhow::Result<Vec<String>> {
    let names: Vec<String> = (0..runs)
        .flat_map(|i| [format!("bench-in-{i}"), format!("bench-out-{i}")])
        .collect();
    let created = aliased(client, url, &names, |name| {
        format!("createDataset(dataset: {{name: \"{name}\", type: \"text.TextDataset\", tags: [{{key: \"bench\", value: \"seed\"}}]}}) {{ id }}")
    })
    .await
    .context("seeding datasets")?;
    created
        .iter()
        .map(|v| str_at(v, "/id").map(str::to_string))
        .collect()
}

/// Content for every input dataset (every other id), through signed
/// upload URLs.
async fn upload_inputs(
    client: &reqwest::Client,
    url: &str,
    dataset_ids: &[String],
) -> anyhow::Result<()> {
    let inputs: Vec<String> = dataset_ids.iter().step_by(2).cloned().collect();
    let urls = aliased(client, url, &inputs, |id| {
        format!("createDatasetUploadUrl(id: \"{id}\", expiresInSec: 3600)")
    })
    .await
    .context("asking for upload URLs")?;
    let puts = urls.iter().enumerate().map(|(i, url)| {
        let client = client.clone();
        async move {
            let url = url.as_str().context("upload URL is not a string")?;
            let resp = client
                .put(url)
                .body(format!("bench input {i}"))
                .send()
                .await
                .context("PUT dataset content")?;
            if !resp.status().is_success() {
                bail!("PUT dataset content answered {}", resp.status());
            }
            anyhow::Ok(())
        }
    });
    stream::iter(puts)
        .buffer_unordered(IN_FLIGHT * 4)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// One `example00` run per (input, output) pair of datasets: the run ids.
async fn runs(
    client: &reqwest::Client,
    url: &str,
    dataset_ids: &[String],
) -> anyhow::Result<Vec<String>> {
    let pairs: Vec<String> = dataset_ids
        .chunks(2)
        .map(|p| format!("{}|{}", p[0], p.get(1).map(String::as_str).unwrap_or("")))
        .collect();
    let runs = aliased(client, url, &pairs, |pair| {
        let (input, output) = pair.split_once('|').unwrap_or((pair, ""));
        format!(
            "createPipeline(pipeline: {{name: \"example00\", dataCatalog: [{{name: \"text_in\", datasetId: \"{input}\"}}, {{name: \"text_out\", datasetId: \"{output}\"}}], tags: [{{key: \"bench\", value: \"seed\"}}]}}) {{ id }}"
        )
    })
    .await
    .context("seeding runs")?;
    runs.iter()
        .map(|v| str_at(v, "/id").map(str::to_string))
        .collect()
}

/// `lines` log lines spread over the runs, `LOG_BATCH` per `ingestLogs`:
/// how many were stored.
async fn log_lines(
    client: &reqwest::Client,
    url: &str,
    run_ids: &[String],
    lines: usize,
) -> anyhow::Result<usize> {
    let batches: Vec<Value> = (0..lines)
        .collect::<Vec<_>>()
        .chunks(LOG_BATCH)
        .map(|chunk| {
            let entries: Vec<Value> = chunk
                .iter()
                .map(|j| {
                    json!({
                        "pipelineId": run_ids[j % run_ids.len()],
                        "level": "INFO",
                        "message": format!("seeded line {j}"),
                        "node": "echo",
                    })
                })
                .collect();
            json!({ "entries": entries })
        })
        .collect();
    let ingest = "mutation($entries: [LogEntryInput!]!) { ingestLogs(entries: $entries) }";
    let stored: Vec<Value> = stream::iter(batches)
        .map(|vars| gql::query(client, url, ingest, vars))
        .buffered(2)
        .try_collect()
        .await
        .context("seeding log lines")?;
    Ok(stored
        .iter()
        .filter_map(|d| d["ingestLogs"].as_u64())
        .sum::<u64>() as usize)
}

/// How many runs have `status`.
async fn runs_with(client: &reqwest::Client, url: &str, status: &str) -> anyhow::Result<u64> {
    let d = gql::query(
        client,
        url,
        "query($s: [PipelineStatus!]) { pipelines(limit: 1, filter: {statuses: $s}) { total } }",
        json!({ "s": [status] }),
    )
    .await?;
    d["pipelines"]["total"]
        .as_u64()
        .context("pipelines.total is not a number")
}

/// Runs `field(item)` for every item as aliased root fields, `BATCH` per
/// request, `IN_FLIGHT` requests at once; answers in item order.
async fn aliased(
    client: &reqwest::Client,
    url: &str,
    items: &[String],
    field: impl Fn(&str) -> String,
) -> anyhow::Result<Vec<Value>> {
    let docs: Vec<(usize, String)> = items
        .chunks(BATCH)
        .map(|chunk| {
            let mut doc = String::from("mutation {");
            for (i, item) in chunk.iter().enumerate() {
                let _ = write!(doc, " a{i}: {}", field(item));
            }
            doc.push_str(" }");
            (chunk.len(), doc)
        })
        .collect();
    let answers: Vec<Vec<Value>> = stream::iter(docs)
        .map(|(n, doc)| async move {
            let data = gql::query(client, url, &doc, json!({})).await?;
            (0..n)
                .map(|i| {
                    data.get(format!("a{i}"))
                        .cloned()
                        .with_context(|| format!("no a{i} in {}", gql::short(&data)))
                })
                .collect::<anyhow::Result<Vec<Value>>>()
        })
        .buffered(IN_FLIGHT)
        .try_collect()
        .await?;
    Ok(answers.into_iter().flatten().collect())
}

/// Waits until no run is PENDING or RUNNING; returns how many still are at the deadline.
async fn wait_for_runs(
    client: &reqwest::Client,
    pipeline_url: &str,
    within: Duration,
) -> anyhow::Result<u64> {
    let deadline = Instant::now() + within;
    loop {
        let d = gql::query(
            client,
            pipeline_url,
            "{ pipelines(limit: 1, filter: {statuses: [PENDING, RUNNING]}) { total } }",
            json!({}),
        )
        .await?;
        let open = d["pipelines"]["total"]
            .as_u64()
            .context("pipelines.total is not a number")?;
        if open == 0 || Instant::now() > deadline {
            return Ok(open);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
