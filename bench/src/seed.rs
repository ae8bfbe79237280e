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
    let log_url = stack.log.graphql();

    // Datasets: in_i, out_i for every run.
    let names: Vec<String> = (0..o.runs)
        .flat_map(|i| [format!("bench-in-{i}"), format!("bench-out-{i}")])
        .collect();
    let dataset_ids = aliased(&client, &dataset_url, &names, |name| {
        format!("createDataset(dataset: {{name: \"{name}\", type: \"text.TextDataset\", tags: [{{key: \"bench\", value: \"seed\"}}]}}) {{ id }}")
    })
    .await
    .context("seeding datasets")?;
    let dataset_ids: Vec<String> = dataset_ids
        .iter()
        .map(|v| str_at(v, "/id").map(str::to_string))
        .collect::<anyhow::Result<_>>()?;
    eprintln!(
        "bench: {} datasets in {:.1} s",
        dataset_ids.len(),
        started.elapsed().as_secs_f64()
    );

    // Content for every input, through signed upload URLs.
    let inputs: Vec<String> = dataset_ids.iter().step_by(2).cloned().collect();
    let urls = aliased(&client, &dataset_url, &inputs, |id| {
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

    // Runs.
    let pairs: Vec<String> = dataset_ids
        .chunks(2)
        .map(|p| format!("{}|{}", p[0], p.get(1).map(String::as_str).unwrap_or("")))
        .collect();
    let runs = aliased(&client, &pipeline_url, &pairs, |pair| {
        let (input, output) = pair.split_once('|').unwrap_or((pair, ""));
        format!(
            "createPipeline(pipeline: {{name: \"example00\", dataCatalog: [{{name: \"text_in\", datasetId: \"{input}\"}}, {{name: \"text_out\", datasetId: \"{output}\"}}], tags: [{{key: \"bench\", value: \"seed\"}}]}}) {{ id }}"
        )
    })
    .await
    .context("seeding runs")?;
    let run_ids: Vec<String> = runs
        .iter()
        .map(|v| str_at(v, "/id").map(str::to_string))
        .collect::<anyhow::Result<_>>()?;
    eprintln!(
        "bench: {} runs created at {:.1} s",
        run_ids.len(),
        started.elapsed().as_secs_f64()
    );

    // Log lines, spread over the runs.
    let batches: Vec<Value> = (0..o.log_lines)
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
        .map(|vars| gql::query(&client, &log_url, ingest, vars))
        .buffered(2)
        .try_collect()
        .await
        .context("seeding log lines")?;
    let log_lines: usize = stored
        .iter()
        .filter_map(|d| d["ingestLogs"].as_u64())
        .sum::<u64>() as usize;

    let unfinished = wait_for_runs(&client, &pipeline_url, Duration::from_secs(120)).await?;
    let count = |status: &'static str| {
        let client = client.clone();
        let url = pipeline_url.clone();
        async move {
            let d = gql::query(
                &client,
                &url,
                "query($s: [PipelineStatus!]) { pipelines(limit: 1, filter: {statuses: $s}) { total } }",
                json!({ "s": [status] }),
            )
            .await?;
            d["pipelines"]["total"]
                .as_u64()
                .context("pipelines.total is not a number")
        }
    };
    let summary = SeedSummary {
        runs: run_ids.len(),
        succeeded: count("SUCCESS").await?,
        failed: count("FAILURE").await?,
        unfinished,
        datasets: dataset_ids.len(),
        log_lines,
        secs: started.elapsed().as_secs_f64(),
    };
    eprintln!("bench: seeded {summary:?}");
    Ok(Seeded { run_ids, summary })
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
