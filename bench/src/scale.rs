//! `bench scale`: the services on Postgres with one, then two, replicas of
//! each: pipeline runs per second (created through the replicas in turn,
//! executed to the end) and log lines per second (`ingestLogs` through the
//! log replicas in turn), with what Postgres did for them (commits, rows,
//! connections), for the estimate in BENCHMARKS.md.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::{
    gql,
    options::Options,
    stack::{free_port, services_config, spawn, wait_healthy, Proc},
};

/// Concurrent creators, and concurrent `ingestLogs` callers.
const CLIENTS: usize = 32;
/// Lines per `ingestLogs` call (what the pipeline's shipper sends at most is 500).
const LINES_PER_CALL: usize = 100;

/// One row of the report.
struct Figures {
    replicas: usize,
    runs: usize,
    runs_per_sec: f64,
    succeeded: u64,
    lines_per_sec: f64,
    commits_per_run: f64,
    commits_per_call: f64,
    connections: u64,
}

/// Both sizes, one after the other, each on a fresh database.
pub async fn run(o: &Options) -> anyhow::Result<String> {
    let cluster = pgcluster::Cluster::start().context("cannot start a Postgres cluster")?;
    let mut rows = Vec::new();
    for replicas in [1, 2] {
        eprintln!("bench: scale with {replicas} replica(s) of each service");
        rows.push(measure(o, &cluster, replicas).await?);
    }
    Ok(report(o, &rows))
}

/// The services of one size, each replica a process of its own.
struct Replicas {
    dir: tempfile::TempDir,
    procs: Vec<Proc>,
    pipeline: Vec<String>,
    dataset: Vec<String>,
    log: Vec<String>,
}

async fn start(o: &Options, database: &str, replicas: usize) -> anyhow::Result<Replicas> {
    let dir = tempfile::Builder::new()
        .prefix("gateway-bench-scale-")
        .tempdir()?;
    std::fs::create_dir_all(dir.path().join("datasets"))?;
    let mut r = Replicas {
        procs: Vec::new(),
        pipeline: Vec::new(),
        dataset: Vec::new(),
        log: Vec::new(),
        dir,
    };
    for i in 0..replicas {
        let (pp, dp, lp) = (free_port()?, free_port()?, free_port()?);
        let config = r.dir.path().join(format!("services-{i}.toml"));
        std::fs::write(
            &config,
            services_config(
                |_| database.to_string(),
                &r.dir.path().join("datasets"),
                (pp, dp, lp),
            ),
        )?;
        for (name, port) in [("dataset", dp), ("log", lp), ("pipeline", pp)] {
            let mut p = spawn(
                name,
                &format!("{name}-{i}"),
                &o.bin_dir,
                r.dir.path(),
                &config,
                port,
            )?;
            wait_healthy(&mut p, Duration::from_secs(30)).await?;
            r.procs.push(p);
        }
        r.pipeline.push(format!("http://127.0.0.1:{pp}/graphql"));
        r.dataset.push(format!("http://127.0.0.1:{dp}/graphql"));
        r.log.push(format!("http://127.0.0.1:{lp}/graphql"));
    }
    Ok(r)
}

async fn measure(
    o: &Options,
    cluster: &pgcluster::Cluster,
    replicas: usize,
) -> anyhow::Result<Figures> {
    let name = format!("scale{replicas}");
    let database = cluster.create_database(&name)?;
    let mut r = start(o, &database, replicas).await?;
    let client = gql::client(CLIENTS)?;
    let (input, output) = datasets(&client, &r.dataset[0]).await?;

    // Backends report their counts at most once a second: wait that out.
    let commits = |cluster: &pgcluster::Cluster| -> anyhow::Result<u64> {
        std::thread::sleep(Duration::from_millis(1500));
        let n = cluster.query(
            "postgres",
            &format!("SELECT xact_commit FROM pg_stat_database WHERE datname = '{name}'"),
        )?;
        n.parse().with_context(|| format!("xact_commit: {n}"))
    };
    let before = commits(cluster)?;
    let started = Instant::now();
    create_runs(&client, &r.pipeline, o.runs, &input, &output).await?;
    wait_finished(&client, &r.pipeline[0]).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let run_commits = commits(cluster)?.saturating_sub(before);
    let succeeded = count(&client, &r.pipeline[0], "SUCCESS").await?;

    let before = commits(cluster)?;
    let (lines, calls, secs) = ingest(&client, &r.log, o.duration).await?;
    let log_commits = commits(cluster)?.saturating_sub(before);
    let connections: u64 = cluster
        .query(
            "postgres",
            &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}'"),
        )?
        .parse()
        .unwrap_or(0);
    for p in &mut r.procs {
        p.stop().await?;
    }
    Ok(Figures {
        replicas,
        runs: o.runs,
        runs_per_sec: o.runs as f64 / elapsed,
        succeeded,
        lines_per_sec: lines as f64 / secs,
        commits_per_run: run_commits as f64 / o.runs as f64,
        commits_per_call: log_commits as f64 / calls.max(1) as f64,
        connections,
    })
}

async fn datasets(client: &reqwest::Client, url: &str) -> anyhow::Result<(String, String)> {
    let create = |name: &'static str| async move {
        let d = gql::query(
            client,
            url,
            "mutation($d: DatasetInput!) { createDataset(dataset: $d) { id } }",
            json!({ "d": { "name": name, "type": "text.TextDataset" } }),
        )
        .await?;
        Ok::<_, anyhow::Error>(gql::str_at(&d, "/createDataset/id")?.to_string())
    };
    let (input, output) = (create("in").await?, create("out").await?);
    let d = gql::query(
        client,
        url,
        "mutation($id: ID!) { createDatasetUploadUrl(id: $id) }",
        json!({ "id": input }),
    )
    .await?;
    let upload = gql::str_at(&d, "/createDatasetUploadUrl")?;
    let put = client.put(upload).body("hello").send().await?;
    if !put.status().is_success() {
        bail!("upload answered {}", put.status());
    }
    Ok((input, output))
}

/// `total` runs of example01, created by `CLIENTS` callers over the replicas in turn.
async fn create_runs(
    client: &reqwest::Client,
    pipelines: &[String],
    total: usize,
    input: &str,
    output: &str,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let callers = (0..CLIENTS).map(|_| {
        let next = next.clone();
        async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                gql::query(
                    client,
                    &pipelines[i % pipelines.len()],
                    "mutation($p: PipelineInput!) { createPipeline(pipeline: $p) { id } }",
                    json!({ "p": {
                        "name": "example01",
                        "dataCatalog": [
                            { "name": "text_in", "datasetId": input },
                            { "name": "text_out", "datasetId": output },
                        ],
                    } }),
                )
                .await?;
            }
        }
    });
    for r in futures::future::join_all(callers).await {
        r?;
    }
    Ok(())
}

async fn count(client: &reqwest::Client, url: &str, status: &str) -> anyhow::Result<u64> {
    let d = gql::query(
        client,
        url,
        &format!("{{ pipelines(filter: {{ statuses: [{status}] }}) {{ total }} }}"),
        json!({}),
    )
    .await?;
    d.pointer("/pipelines/total")
        .and_then(Value::as_u64)
        .context("no total")
}

async fn wait_finished(client: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let live = count(client, url, "PENDING, RUNNING").await?;
        if live == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{live} runs still live after 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `ingestLogs` of `LINES_PER_CALL` lines by `CLIENTS` callers over the log
/// replicas in turn, for `duration`; (lines stored, calls, seconds).
async fn ingest(
    client: &reqwest::Client,
    logs: &[String],
    duration: Duration,
) -> anyhow::Result<(u64, u64, f64)> {
    let stored = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let callers = (0..CLIENTS).map(|c| {
        let (stored, calls) = (stored.clone(), calls.clone());
        async move {
            let mut n = 0usize;
            while started.elapsed() < duration {
                let entries: Vec<Value> = (0..LINES_PER_CALL)
                    .map(|i| json!({ "pipelineId": format!("bench-{c}"), "level": "INFO", "message": format!("line {n}-{i}") }))
                    .collect();
                let d = gql::query(
                    client,
                    &logs[(c + n) % logs.len()],
                    "mutation($e: [LogEntryInput!]!) { ingestLogs(entries: $e) }",
                    json!({ "e": entries }),
                )
                .await?;
                stored.fetch_add(d["ingestLogs"].as_u64().unwrap_or(0), Ordering::Relaxed);
                calls.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
            Ok::<_, anyhow::Error>(())
        }
    });
    for r in futures::future::join_all(callers).await {
        r?;
    }
    Ok((
        stored.load(Ordering::Relaxed),
        calls.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
    ))
}

fn report(o: &Options, rows: &[Figures]) -> String {
    let mut out = format!(
        "### Scale-out on Postgres\n\n`{}`: the services only (no gateway), each replica a process, all on one\nPostgres cluster on this machine; {} runs of `example01` created by {CLIENTS} callers over the\npipeline replicas in turn and run to the end (16 workers per replica); then {} s of\n`ingestLogs` ({LINES_PER_CALL} lines per call, {CLIENTS} callers) over the log replicas in turn.\n\n",
        o.command_line,
        o.runs,
        o.duration.as_secs()
    );
    out.push_str("| replicas of each service | runs/s | succeeded | log lines/s | Postgres commits per run | commits per `ingestLogs` call | Postgres connections |\n| --- | --- | --- | --- | --- | --- | --- |\n");
    for f in rows {
        out.push_str(&format!(
            "| {} | {:.1} | {}/{} | {:.0} | {:.1} | {:.2} | {} |\n",
            f.replicas,
            f.runs_per_sec,
            f.succeeded,
            f.runs,
            f.lines_per_sec,
            f.commits_per_run,
            f.commits_per_call,
            f.connections
        ));
    }
    out
}
