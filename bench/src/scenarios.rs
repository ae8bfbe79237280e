//! The HTTP scenarios: `root` (gateway and direct), `nested` (with a
//! concurrency-1 baseline of the subgraph calls it makes) and `fanout`.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use anyhow::Context;
use serde_json::{json, Value};

use crate::{
    gql,
    load::{self, Load, LoadResult},
    options::Options,
    procstat,
    seed::Seeded,
    stack::Stack,
};

pub const ROOT_QUERY: &str = "query($id: ID!) { pipeline(id: $id) { id name status createdAt } }";

pub const NESTED_QUERY: &str = "{ pipelines(limit: 100) { items { id dataCatalog { dataset { name producedBy { name } } } logs(limit: 5) { items { message } } } } }";

pub const FANOUT_QUERY: &str = "query($n: Int!) { pipelines(limit: $n) { items { id name logs(limit: 1) { items { message pipeline { status } } } } } }";

/// The same fan-out through `dataCatalog`: two dataset keys per parent.
pub const FANOUT_DATASET_QUERY: &str =
    "query($n: Int!) { pipelines(limit: $n) { items { id dataCatalog { dataset { name } } } } }";

/// One measured load phase.
#[derive(Clone, Debug)]
pub struct Measured {
    pub connections: usize,
    pub load: LoadResult,
    /// Through the gateway only: subgraph name -> requests per client request.
    pub per_request: Option<BTreeMap<String, f64>>,
    /// Through the gateway only: its user+sys CPU time per client request.
    pub cpu_us_per_request: Option<f64>,
    /// Through the gateway only: its VmHWM during the phase.
    pub peak_rss_kib: Option<u64>,
    /// Whether VmHWM could be reset before the phase (else it is the peak since start).
    pub peak_reset: bool,
    /// This process's CPU use over the phase, in % of one core: near
    /// 100 x threads means the load generator, not the server, was the limit.
    pub loadgen_cpu_percent: f64,
}

/// Warm-up (discarded), then the measured phase with the gateway's metrics,
/// CPU time and peak RSS read around it.
async fn measure(
    stack: &Stack,
    url: &str,
    via_gateway: bool,
    connections: usize,
    warmup: Duration,
    duration: Duration,
    bodies: Arc<Vec<String>>,
) -> anyhow::Result<Measured> {
    let client = load::client(connections)?;
    let mut phase = Load {
        url: url.to_string(),
        connections,
        duration: warmup,
        bodies,
        unique_auth: false,
    };
    load::run(&client, &phase).await?;
    phase.duration = duration;
    let metrics = gql::client(2)?;
    let gw = stack.gateway.pid;
    let before = gql::subgraph_requests(&metrics, &stack.gateway.metrics()).await?;
    let cpu_before = procstat::cpu_secs(gw)?;
    let peak_reset = procstat::reset_peak(gw);
    let me = std::process::id();
    let own_before = procstat::cpu_secs(me)?;
    let result = load::run(&client, &phase).await?;
    let own_after = procstat::cpu_secs(me)?;
    let cpu_after = procstat::cpu_secs(gw)?;
    let after = gql::subgraph_requests(&metrics, &stack.gateway.metrics()).await?;
    let memory = procstat::status(gw)?;
    let n = result.requests.max(1) as f64;
    let (per_request, cpu_us_per_request, peak_rss_kib) = if via_gateway {
        let per: BTreeMap<String, f64> = after
            .iter()
            .map(|(name, a)| {
                let b = before.get(name).copied().unwrap_or(0);
                (name.clone(), a.saturating_sub(b) as f64 / n)
            })
            .collect();
        (
            Some(per),
            Some((cpu_after - cpu_before) * 1e6 / n),
            Some(memory.hwm_kib),
        )
    } else {
        (None, None, None)
    };
    if result.errors > 0 {
        eprintln!(
            "bench: {url}: {} of {} requests failed, e.g. {}",
            result.errors,
            result.requests,
            result.first_error.as_deref().unwrap_or("?")
        );
    }
    let loadgen_cpu_percent =
        (own_after - own_before) * 100.0 / result.elapsed.as_secs_f64().max(1e-9);
    Ok(Measured {
        connections,
        load: result,
        per_request,
        cpu_us_per_request,
        peak_rss_kib,
        peak_reset,
        loadgen_cpu_percent,
    })
}

fn body(query: &str, variables: Value) -> String {
    json!({ "query": query, "variables": variables }).to_string()
}

pub struct Root {
    pub gateway: Measured,
    pub direct: Measured,
    /// The same at concurrency 1: the gateway's latency without queueing.
    pub gateway_c1: Measured,
    pub direct_c1: Measured,
}

/// Length of the concurrency-1 phases.
fn baseline(o: &Options) -> Duration {
    (o.duration / 4).clamp(Duration::from_secs(1), Duration::from_secs(5))
}

const SHORT_WARMUP: Duration = Duration::from_millis(500);

pub async fn root(o: &Options, stack: &Stack, seeded: &Seeded) -> anyhow::Result<Root> {
    let bodies: Arc<Vec<String>> = Arc::new(
        seeded
            .run_ids
            .iter()
            .map(|id| body(ROOT_QUERY, json!({ "id": id })))
            .collect(),
    );
    let gateway = measure(
        stack,
        &stack.gateway.graphql(),
        true,
        o.connections,
        o.warmup,
        o.duration,
        bodies.clone(),
    )
    .await?;
    let direct = measure(
        stack,
        &stack.pipeline.graphql(),
        false,
        o.connections,
        o.warmup,
        o.duration,
        bodies.clone(),
    )
    .await?;
    let series = vec![
        (stack.gateway.graphql(), bodies.clone()),
        (stack.pipeline.graphql(), bodies),
    ];
    let (gateway_c1, mut rest) = interleaved_c1(stack, series, baseline(o) * 2).await?;
    let direct_c1 = Measured {
        connections: 1,
        load: rest.pop().unwrap_or_default(),
        per_request: None,
        cpu_us_per_request: None,
        peak_rss_kib: None,
        peak_reset: gateway_c1.peak_reset,
        loadgen_cpu_percent: gateway_c1.loadgen_cpu_percent,
    };
    Ok(Root {
        gateway,
        direct,
        gateway_c1,
        direct_c1,
    })
}

pub struct Nested {
    pub loaded: Measured,
    /// The same query at concurrency 1 through the gateway.
    pub gateway_c1: Measured,
    /// The subgraph calls the gateway makes, replayed directly at concurrency 1: (what, p50 ms).
    pub calls: Vec<(String, f64)>,
    pub sum_p50_ms: f64,
    /// Level 1's two calls run concurrently: L0 + max(L1) + L2.
    pub critical_path_ms: f64,
    pub baseline_secs: f64,
    /// The client's answer in bytes (what gateway CPU per KB divides by).
    pub answer_bytes: usize,
}

pub async fn nested(o: &Options, stack: &Stack) -> anyhow::Result<Nested> {
    let gw_url = stack.gateway.graphql();
    let bodies = Arc::new(vec![body(NESTED_QUERY, json!({}))]);
    let (check, answer_bytes) = gql::answer(&load::client(1)?, &gw_url, &bodies[0])
        .await
        .context("the nested query through the gateway")?;
    let items = check["pipelines"]["items"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    eprintln!("bench: nested query answers {items} pipelines");
    let loaded = measure(
        stack,
        &gw_url,
        true,
        o.connections,
        o.warmup,
        o.duration,
        bodies.clone(),
    )
    .await?;

    let baseline = baseline(o);
    let plan = direct_calls(stack).await?;
    let mut series = vec![(gw_url.clone(), bodies)];
    series.extend(
        plan.iter()
            .map(|(_, url, body)| (url.clone(), Arc::new(vec![body.clone()]))),
    );
    let (gateway_c1, rest) = interleaved_c1(stack, series, baseline * 2).await?;
    let calls: Vec<(String, f64)> = plan
        .into_iter()
        .zip(rest.iter())
        .map(|((what, _, _), r)| (what, r.p50_ms()))
        .collect();
    let p = |i: usize| calls.get(i).map(|c| c.1).unwrap_or(0.0);
    Ok(Nested {
        loaded,
        gateway_c1,
        sum_p50_ms: calls.iter().map(|c| c.1).sum(),
        critical_path_ms: p(0) + p(1).max(p(2)) + p(3),
        calls,
        baseline_secs: (baseline * 2).as_secs_f64(),
        answer_bytes,
    })
}

/// Concurrency 1 on one connection, in rounds: `series[0]` through the
/// gateway, then each other series (straight to a subgraph), then again.
/// Interleaving makes the machine's speed drift hit both sides alike.
/// Returns the gateway series with the gateway's figures, and the others.
async fn interleaved_c1(
    stack: &Stack,
    series: Vec<(String, Arc<Vec<String>>)>,
    duration: Duration,
) -> anyhow::Result<(Measured, Vec<LoadResult>)> {
    let client = load::client(1)?;
    load::interleaved(&client, &series, SHORT_WARMUP).await;
    let metrics = gql::client(2)?;
    let gw = stack.gateway.pid;
    let me = std::process::id();
    let before = gql::subgraph_requests(&metrics, &stack.gateway.metrics()).await?;
    let cpu_before = procstat::cpu_secs(gw)?;
    let own_before = procstat::cpu_secs(me)?;
    let peak_reset = procstat::reset_peak(gw);
    let mut results = load::interleaved(&client, &series, duration).await;
    let own_after = procstat::cpu_secs(me)?;
    let cpu_after = procstat::cpu_secs(gw)?;
    let after = gql::subgraph_requests(&metrics, &stack.gateway.metrics()).await?;
    let memory = procstat::status(gw)?;
    for ((url, _), r) in series.iter().zip(&results) {
        if r.errors > 0 {
            eprintln!(
                "bench: {url}: {} of {} requests failed, e.g. {}",
                r.errors,
                r.requests,
                r.first_error.as_deref().unwrap_or("?")
            );
        }
    }
    anyhow::ensure!(!results.is_empty(), "no series to measure");
    let gateway = results.remove(0);
    let n = gateway.requests.max(1) as f64;
    let per: BTreeMap<String, f64> = after
        .iter()
        .map(|(name, a)| {
            let b = before.get(name).copied().unwrap_or(0);
            (name.clone(), a.saturating_sub(b) as f64 / n)
        })
        .collect();
    let loadgen_cpu_percent =
        (own_after - own_before) * 100.0 / gateway.elapsed.as_secs_f64().max(1e-9);
    let measured = Measured {
        connections: 1,
        per_request: Some(per),
        cpu_us_per_request: Some((cpu_after - cpu_before) * 1e6 / n),
        peak_rss_kib: Some(memory.hwm_kib),
        peak_reset,
        loadgen_cpu_percent,
        load: gateway,
    };
    Ok((measured, results))
}

/// The four subgraph requests behind `NESTED_QUERY`, built from real answers:
/// (description, subgraph URL, request body).
async fn direct_calls(stack: &Stack) -> anyhow::Result<Vec<(String, String, String)>> {
    let client = gql::client(1)?;
    let (p_url, d_url, l_url) = (
        stack.pipeline.graphql(),
        stack.dataset.graphql(),
        stack.log.graphql(),
    );
    let l0 = "{ pipelines(limit: 100) { items { id dataCatalog { name datasetId } } } }";
    let data = gql::query(&client, &p_url, l0, json!({})).await?;
    let items = data["pipelines"]["items"]
        .as_array()
        .context("pipelines.items is not a list")?;
    let mut run_ids = Vec::new();
    let mut dataset_ids = Vec::new();
    for item in items {
        run_ids.push(gql::str_at(item, "/id")?.to_string());
        for b in item["dataCatalog"].as_array().into_iter().flatten() {
            dataset_ids.push(gql::str_at(b, "/datasetId")?.to_string());
        }
    }
    let l1a = "query($ids: [ID!]!) { datasetsByIds(ids: $ids) { id name producedByPipelineId } }";
    let data = gql::query(&client, &d_url, l1a, json!({ "ids": dataset_ids })).await?;
    let mut producers: Vec<String> = data["datasetsByIds"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["producedByPipelineId"].as_str().map(str::to_string))
        .collect();
    producers.sort();
    producers.dedup();
    // What the gateway sends for `Pipeline.logs` (batch: true in gateway/stitching/log.graphql).
    let l1b = "query($ids: [ID!]!) { pipelineLogPages(pipelineIds: $ids, limit: 5) { items { message } } }";
    let l2 = "query($ids: [ID!]!) { pipelinesByIds(ids: $ids) { id name } }";
    Ok(vec![
        (
            "L0 pipeline: pipelines(limit: 100)".into(),
            p_url.clone(),
            body(l0, json!({})),
        ),
        (
            format!("L1 dataset: datasetsByIds({} ids)", dataset_ids.len()),
            d_url,
            body(l1a, json!({ "ids": dataset_ids })),
        ),
        (
            format!("L1 log: pipelineLogPages({} ids, limit: 5)", run_ids.len()),
            l_url,
            body(l1b, json!({ "ids": run_ids })),
        ),
        (
            format!("L2 pipeline: pipelinesByIds({} ids)", producers.len()),
            p_url,
            body(l2, json!({ "ids": producers })),
        ),
    ])
}

pub struct FanoutRow {
    pub n: usize,
    /// Parents the answer actually held.
    pub parents: usize,
    pub measured: Measured,
}

pub struct Fanout {
    pub rows: Vec<FanoutRow>,
    /// `FANOUT_DATASET_QUERY` at the largest N: Ok(per-request counts) or the error.
    pub dataset_probe: (usize, Result<BTreeMap<String, u64>, String>),
}

pub async fn fanout(o: &Options, stack: &Stack, seeded: &Seeded) -> anyhow::Result<Fanout> {
    let gw_url = stack.gateway.graphql();
    let client = gql::client(1)?;
    let warmup = (o.warmup / 2).max(Duration::from_millis(500));
    let duration = (o.duration / 2).max(Duration::from_secs(1));
    let mut rows = Vec::new();
    for &n in &o.fanout {
        let n = n.min(seeded.run_ids.len()).max(1);
        let check = gql::query(&client, &gw_url, FANOUT_QUERY, json!({ "n": n }))
            .await
            .with_context(|| format!("the fanout query with N = {n}"))?;
        let parents = check["pipelines"]["items"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0);
        let bodies = Arc::new(vec![body(FANOUT_QUERY, json!({ "n": n }))]);
        let measured = measure(
            stack,
            &gw_url,
            true,
            o.fanout_connections,
            warmup,
            duration,
            bodies,
        )
        .await?;
        eprintln!(
            "bench: fanout N = {n}: {:.0} req/s, p50 {:.2} ms",
            measured.load.rps(),
            measured.load.p50_ms()
        );
        rows.push(FanoutRow {
            n,
            parents,
            measured,
        });
    }
    let max_n = rows.iter().map(|r| r.n).max().unwrap_or(1);
    let before = gql::subgraph_requests(&client, &stack.gateway.metrics()).await?;
    let probe = gql::query(
        &client,
        &gw_url,
        FANOUT_DATASET_QUERY,
        json!({ "n": max_n }),
    )
    .await;
    let after = gql::subgraph_requests(&client, &stack.gateway.metrics()).await?;
    let dataset_probe = match probe {
        Ok(_) => Ok(after
            .iter()
            .map(|(k, a)| {
                (
                    k.clone(),
                    a.saturating_sub(before.get(k).copied().unwrap_or(0)),
                )
            })
            .collect()),
        Err(e) => Err(format!("{e:#}")),
    };
    Ok(Fanout {
        rows,
        dataset_probe: (max_n, dataset_probe),
    })
}
