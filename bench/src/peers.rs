//! `bench peers`: the same work through our gateway and the leading peers,
//! on this machine, in alternating rounds so that its speed drift hits both
//! sides alike; each figure is the median of the rounds.
//!
//! - federation: the four subgraphs of the gateway benchmark and its
//!   `TestQuery` through our gateway and Hive Router, in three modes
//!   (identical requests; a unique `Authorization` per request; that with
//!   4 ms added to every subgraph answer);
//! - stitching: the three pipeline-platform subgraphs, seeded, with the
//!   `nested` and `fanout` queries through our gateway and a graphql-tools
//!   stitching gateway.
//!
//! Subgraph requests are counted where they land (each subgraph's
//! `/metrics`), so every gateway is counted the same way, and so is what
//! they cost the subgraph processes (their CPU, from `/proc`). Before timing a
//! workload, each peer's answer is compared with ours (same `data`); a peer
//! that answers differently is reported, not timed.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::Duration,
};

use anyhow::{bail, Context};
use serde_json::json;

use crate::{
    gql,
    load::{self, Load},
    options::Options,
    procstat, scenarios, seed,
    stack::{free_port, spawn, spawn_command, wait_healthy, Proc, Stack},
};

/// The Hive Router release scripts/bench.sh installs (the newest that builds
/// with this toolchain; `cargo install hive-router@0.2.0 --locked --features graphiql`).
pub const HIVE_VERSION: &str = "0.2.0";

/// The benchmark's operation (graphql-gateways-benchmark `TestQuery`).
const TEST_QUERY: &str = "fragment User on User { id username name } fragment Review on Review { id body } fragment Product on Product { inStock name price shippingEstimate upc weight } query TestQuery { users { ...User reviews { ...Review product { ...Product reviews { ...Review author { ...User reviews { ...Review product { ...Product } } } } } } } topProducts { ...Product reviews { ...Review author { ...User reviews { ...Review product { ...Product } } } } } }";

const FED_NAMES: [&str; 4] = ["accounts", "products", "inventory", "reviews"];

/// One gateway under test (its process is owned by whoever started it).
struct Side {
    label: String,
    pid: u32,
    url: String,
}

impl Side {
    fn of(label: impl Into<String>, p: &Proc) -> Side {
        Side {
            label: label.into(),
            pid: p.pid,
            url: p.graphql(),
        }
    }
}

/// One measured phase of one side.
#[derive(Clone, Debug, Default)]
struct Round {
    rps: f64,
    p50: f64,
    p95: f64,
    p99: f64,
    cpu_ms: f64,
    per_core_second: f64,
    peak_mib: f64,
    subgraph_per_request: f64,
    /// CPU of the subgraph processes per client request: what the
    /// gateway's subgraph requests cost the machine it shares with them.
    subgraph_cpu_ms: f64,
    errors: u64,
}

/// The medians of a side's rounds, and the answer's size.
#[derive(Clone, Debug, Default)]
struct Figures {
    label: String,
    rounds: Vec<Round>,
    answer_bytes: usize,
    /// Why the side was not timed (it answered differently).
    skipped: Option<String>,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

impl Figures {
    fn med(&self, f: impl Fn(&Round) -> f64) -> f64 {
        median(self.rounds.iter().map(f).collect())
    }
}

/// One workload in one mode: its sides and what was measured.
struct Comparison {
    title: String,
    ours: Figures,
    peer: Figures,
}

/// Where the subgraph requests of a workload are counted.
#[derive(Clone)]
struct Counter {
    /// `(metrics URL, metric name)` of each subgraph.
    sources: Vec<(String, String)>,
    /// The subgraph processes, whose CPU is counted too.
    pids: Vec<u32>,
}

impl Counter {
    async fn total(&self, client: &reqwest::Client) -> anyhow::Result<f64> {
        let mut sum = 0.0;
        for (url, name) in &self.sources {
            sum += gql::metric(client, url, name).await?.unwrap_or(0.0);
        }
        Ok(sum)
    }

    fn cpu_secs(&self) -> anyhow::Result<f64> {
        self.pids.iter().map(|&p| procstat::cpu_secs(p)).sum()
    }
}

/// The whole comparison; returns the Markdown report.
pub async fn run(o: &Options) -> anyhow::Result<String> {
    let node = which("node")?;
    let hive = o
        .peers_dir
        .join(format!("hive-router-{HIVE_VERSION}/bin/hive_router"));
    let npm_dir = o.peers_dir.join("npm");
    if o.workloads.iter().any(|w| w == "federation") && !hive.is_file() {
        bail!(
            "{} not found: install the peers with scripts/bench.sh --peers",
            hive.display()
        );
    }
    if !npm_dir.join("node_modules").is_dir() {
        bail!(
            "{} has no node_modules: install the peers with scripts/bench.sh --peers",
            npm_dir.display()
        );
    }
    let mut results = Vec::new();
    let mut notes = Vec::new();
    if o.workloads.iter().any(|w| w == "federation") {
        match federation(o, &hive, &node, &npm_dir, &mut notes).await {
            Ok(mut r) => results.append(&mut r),
            Err(e) => notes.push(format!("The federation workload failed: {e:#}")),
        }
    }
    if o.workloads.iter().any(|w| w == "stitching") {
        match stitching(o, &node, &npm_dir).await {
            Ok(mut r) => results.append(&mut r),
            Err(e) => notes.push(format!("The stitching workload failed: {e:#}")),
        }
    }
    Ok(markdown(o, &node, &results, &notes))
}

fn which(program: &str) -> anyhow::Result<PathBuf> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .with_context(|| format!("cannot look for {program}"))?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if path.is_empty() {
        bail!("{program} is not installed");
    }
    Ok(PathBuf::from(path))
}

fn temp_dir(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("gateway-peers-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

// ---- federation ---------------------------------------------------------------------

/// The four subgraphs in one process, `delay_ms` before each answer.
async fn federation_subgraphs(o: &Options, dir: &Path, delay_ms: u64) -> anyhow::Result<Proc> {
    let port = free_port()?;
    let config = dir.join(format!("federation-{delay_ms}.toml"));
    std::fs::write(
        &config,
        format!("[services.federation]\nlisten = \"127.0.0.1:{port}\"\ndelay_ms = {delay_ms}\n"),
    )?;
    let mut p = spawn(
        "federation",
        &format!("federation-{delay_ms}"),
        &o.bin_dir,
        dir,
        &config,
        port,
    )?;
    wait_healthy_at(&mut p, "/accounts/health").await?;
    Ok(p)
}

async fn wait_healthy_at(p: &mut Proc, path: &str) -> anyhow::Result<()> {
    let base = p.base.clone();
    p.base = format!("{base}{}", path.trim_end_matches("/health"));
    let r = wait_healthy(p, Duration::from_secs(60)).await;
    p.base = base;
    r
}

/// Our gateway over the four subgraphs, in its production configuration for
/// this harness: `Authorization` propagated, identical requests shared, and
/// one runtime thread, as Hive Router gets one worker (see `hive_router`).
async fn our_federation_gateway(
    o: &Options,
    dir: &Path,
    fed: &Proc,
    tag: &str,
) -> anyhow::Result<Proc> {
    let port = free_port()?;
    let mut text = format!(
        "[gateway]\nlisten = \"127.0.0.1:{port}\"\nhot_reload = false\ndedupe_client_requests = true\nworker_threads = 1\n\n"
    );
    for name in FED_NAMES {
        let _ = write!(
            text,
            "[[subgraphs]]\nname = \"{name}\"\nurl = \"{}/{name}/graphql\"\ndialect = \"federation\"\npropagate_headers = [\"authorization\"]\n\n",
            fed.base
        );
    }
    let config = dir.join(format!("gateway-{tag}.toml"));
    std::fs::write(&config, text)?;
    let mut p = spawn(
        "gateway",
        &format!("gateway-{tag}"),
        &o.bin_dir,
        dir,
        &config,
        port,
    )?;
    wait_healthy(&mut p, Duration::from_secs(60)).await?;
    Ok(p)
}

/// Hive Router over the supergraph Apollo's composition makes of the same
/// subgraphs, with what the public benchmarks configure: inbound
/// deduplication on, `Authorization` propagated to every subgraph.
async fn hive_router(
    hive: &Path,
    node: &Path,
    npm: &Path,
    dir: &Path,
    fed: &Proc,
    tag: &str,
) -> anyhow::Result<Proc> {
    let hive_dir = dir.join(format!("hive-{tag}"));
    std::fs::create_dir_all(&hive_dir)?;
    let supergraph = hive_dir.join("supergraph.graphql");
    let mut compose = Command::new(node);
    compose
        .arg(npm.join("compose-supergraph.mjs"))
        .arg(&supergraph);
    for name in FED_NAMES {
        compose.arg(format!("{name}={}/{name}/graphql", fed.base));
    }
    let out = compose
        .output()
        .context("cannot run compose-supergraph.mjs")?;
    if !out.status.success() {
        bail!(
            "composing the supergraph failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let port = free_port()?;
    // One HTTP worker, as our gateway gets one runtime thread: the gateway
    // shares this machine's two cores with four subgraph processes and the
    // load generator. Measured at 529d8fc, Hive Router's default (a worker
    // per core) in two runs against one worker in a third: throughput within
    // the two runs' range (identical requests 8186, 7761 against 8134 req/s;
    // a unique `Authorization` 762, 682 against 701) and less CPU per request
    // with one (0.096, 0.104 against 0.090 ms; 1.38, 1.54 against 1.30 ms).
    std::fs::write(
        hive_dir.join("router.config.yaml"),
        format!(
            "supergraph:\n  source: file\n  path: ./supergraph.graphql\nhttp:\n  host: 127.0.0.1\n  port: {port}\n  workers: 1\nlog:\n  level: warn\nheaders:\n  all:\n    request:\n      - propagate:\n          named: Authorization\ntraffic_shaping:\n  router:\n    dedupe:\n      enabled: true\n"
        ),
    )?;
    let mut cmd = Command::new(hive);
    cmd.env("RUST_LOG", "warn");
    let mut p = spawn_command("hive_router", &format!("hive-{tag}"), cmd, &hive_dir, port)?;
    wait_healthy(&mut p, Duration::from_secs(60)).await?;
    Ok(p)
}

fn fed_counter(fed: &Proc) -> Counter {
    Counter {
        sources: FED_NAMES
            .iter()
            .map(|n| {
                (
                    fed.metrics(),
                    format!("subgraph_requests_received_total{{subgraph=\"{n}\"}}"),
                )
            })
            .collect(),
        pids: vec![fed.pid],
    }
}

async fn federation(
    o: &Options,
    hive: &Path,
    node: &Path,
    npm: &Path,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<Comparison>> {
    let dir = temp_dir("federation")?;
    let mut out = Vec::new();
    for (delay, modes) in [
        (
            0u64,
            vec![
                ("identical requests", false),
                ("a unique Authorization per request", true),
            ],
        ),
        (
            4,
            vec![(
                "a unique Authorization per request, 4 ms per subgraph answer",
                true,
            )],
        ),
    ] {
        let mut fed = federation_subgraphs(o, &dir, delay).await?;
        let mut ours_p = our_federation_gateway(o, &dir, &fed, &format!("fed{delay}")).await?;
        let mut peer_p = hive_router(hive, node, npm, &dir, &fed, &format!("fed{delay}")).await?;
        let mut ours = Side::of("ours", &ours_p);
        let mut peer = Side::of(format!("Hive Router {HIVE_VERSION}"), &peer_p);
        if delay == 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let idle = |pid| {
                procstat::status(pid)
                    .map(|m| procstat::mib(m.rss_kib))
                    .unwrap_or(f64::NAN)
            };
            notes.push(format!(
                "Idle RSS after start, before any request: ours {:.1} MiB, Hive Router {:.1} MiB.",
                idle(ours.pid),
                idle(peer.pid)
            ));
        }
        let counter = fed_counter(&fed);
        let body = Arc::new(vec![test_query_body()]);
        for (mode, unique_auth) in modes {
            let title = format!(
                "Federation `TestQuery`, {mode} ({} connections)",
                o.connections
            );
            eprintln!("bench peers: {title}");
            out.push(
                compare(
                    o,
                    &title,
                    &mut ours,
                    &mut peer,
                    &body,
                    unique_auth,
                    &counter,
                )
                .await?,
            );
        }
        for p in [&mut ours_p, &mut peer_p, &mut fed] {
            let _ = p.stop().await;
        }
    }
    if !o.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(out)
}

/// `bench train`: our gateway alone over the four subgraphs, `TestQuery`
/// with identical requests and with a unique `Authorization` each.
pub async fn train_federation(o: &Options) -> anyhow::Result<()> {
    let dir = temp_dir("train")?;
    let mut fed = federation_subgraphs(o, &dir, 0).await?;
    let result = async {
        let mut gateway = our_federation_gateway(o, &dir, &fed, "train").await?;
        let client = load::client(o.connections)?;
        let mut phase = Load {
            url: gateway.graphql(),
            connections: o.connections,
            duration: o.duration,
            bodies: Arc::new(vec![test_query_body()]),
            unique_auth: false,
        };
        let identical = load::run(&client, &phase).await.and_then(answered);
        phase.unique_auth = true;
        let unique = load::run(&client, &phase).await.and_then(answered);
        // SIGTERM: an instrumented gateway writes its profile as it exits.
        let stopped = gateway.stop().await;
        identical.and(unique).and(stopped)
    }
    .await;
    let _ = fed.stop().await;
    if !o.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// A training phase that mostly failed would teach the error paths.
fn answered(r: load::LoadResult) -> anyhow::Result<()> {
    anyhow::ensure!(
        r.errors == 0,
        "{} TestQuery requests failed, the first with: {}",
        r.errors,
        r.first_error.unwrap_or_default()
    );
    Ok(())
}

fn test_query_body() -> String {
    json!({"query": TEST_QUERY, "operationName": "TestQuery"}).to_string()
}

// ---- stitching ----------------------------------------------------------------------

async fn stitching(o: &Options, node: &Path, npm: &Path) -> anyhow::Result<Vec<Comparison>> {
    let stack = Stack::start(o).await?;
    eprintln!("bench peers: seeding the stitching subgraphs");
    let seeded = seed::seed(o, &stack).await;
    let result = async {
        seeded?;
        let port = free_port()?;
        let mut cmd = Command::new(node);
        cmd.arg(npm.join("stitching-gateway.mjs"))
            .env("PORT", port.to_string())
            .env("PIPELINE_URL", stack.pipeline.graphql())
            .env("DATASET_URL", stack.dataset.graphql())
            .env("LOG_URL", stack.log.graphql())
            .env("NODE_ENV", "production");
        let mut tools = spawn_command("node", "graphql-tools", cmd, &stack.dir, port)?;
        wait_healthy(&mut tools, Duration::from_secs(60)).await?;
        let mut peer = Side::of("graphql-tools (stitch + yoga)", &tools);
        let counter = Counter {
            sources: [&stack.pipeline, &stack.dataset, &stack.log]
                .iter()
                .map(|p| (p.metrics(), "graphql_requests_received_total".to_string()))
                .collect(),
            pids: vec![stack.pipeline.pid, stack.dataset.pid, stack.log.pid],
        };
        let mut ours = Side::of("ours", &stack.gateway);
        let mut out = Vec::new();
        let fanout_n = 100;
        for (name, body) in [
            (
                "`nested`",
                json!({"query": scenarios::NESTED_QUERY}).to_string(),
            ),
            (
                "`fanout` (100 parents)",
                json!({"query": scenarios::FANOUT_QUERY, "variables": {"n": fanout_n}}).to_string(),
            ),
        ] {
            let title = format!("Stitching {name} ({} connections)", o.connections);
            eprintln!("bench peers: {title}");
            let bodies = Arc::new(vec![body]);
            out.push(compare(o, &title, &mut ours, &mut peer, &bodies, false, &counter).await?);
        }
        let _ = tools.stop().await;
        anyhow::Ok(out)
    }
    .await;
    let _ = stack.stop().await;
    result
}

// ---- measuring ----------------------------------------------------------------------

/// Checks both answer alike, then times them in alternating rounds.
async fn compare(
    o: &Options,
    title: &str,
    ours: &mut Side,
    peer: &mut Side,
    bodies: &Arc<Vec<String>>,
    unique_auth: bool,
    counter: &Counter,
) -> anyhow::Result<Comparison> {
    let client = load::client(o.connections)?;
    let (our_data, our_bytes) = gql::answer(&client, &ours.url, &bodies[0]).await?;
    let mut ours_f = Figures {
        label: ours.label.clone(),
        answer_bytes: our_bytes,
        ..Default::default()
    };
    let mut peer_f = Figures {
        label: peer.label.clone(),
        ..Default::default()
    };
    match gql::answer(&client, &peer.url, &bodies[0]).await {
        Ok((data, bytes)) if data == our_data => peer_f.answer_bytes = bytes,
        Ok(_) => peer_f.skipped = Some("its `data` differs from ours".into()),
        Err(e) => peer_f.skipped = Some(format!("{e:#}")),
    }
    for round in 0..o.rounds {
        let order: [&mut Side; 2] = if round % 2 == 0 {
            [&mut *ours, &mut *peer]
        } else {
            [&mut *peer, &mut *ours]
        };
        for side in order {
            let is_ours = side.label == ours_f.label;
            if !is_ours && peer_f.skipped.is_some() {
                continue;
            }
            let r = measure(o, &client, side, bodies, unique_auth, counter).await?;
            eprintln!(
                "bench peers:   round {} {}: {:.0} req/s, p50 {:.1} ms, {:.2} ms CPU/req, {:.3} subgraph req/req, {:.3} ms subgraph CPU/req",
                round + 1,
                side.label,
                r.rps,
                r.p50,
                r.cpu_ms,
                r.subgraph_per_request,
                r.subgraph_cpu_ms
            );
            if is_ours {
                ours_f.rounds.push(r);
            } else {
                peer_f.rounds.push(r);
            }
        }
    }
    Ok(Comparison {
        title: title.to_string(),
        ours: ours_f,
        peer: peer_f,
    })
}

async fn measure(
    o: &Options,
    client: &reqwest::Client,
    side: &mut Side,
    bodies: &Arc<Vec<String>>,
    unique_auth: bool,
    counter: &Counter,
) -> anyhow::Result<Round> {
    let mut phase = Load {
        url: side.url.clone(),
        connections: o.connections,
        duration: o.warmup,
        bodies: bodies.clone(),
        unique_auth,
    };
    load::run(client, &phase).await?;
    phase.duration = o.duration;
    let metrics = gql::client(2)?;
    let pid = side.pid;
    let sub_before = counter.total(&metrics).await?;
    let cpu_before = procstat::cpu_secs(pid)?;
    let sub_cpu_before = counter.cpu_secs()?;
    procstat::reset_peak(pid);
    let result = load::run(client, &phase).await?;
    let cpu = procstat::cpu_secs(pid)? - cpu_before;
    let sub_cpu = counter.cpu_secs()? - sub_cpu_before;
    let sub = counter.total(&metrics).await? - sub_before;
    let peak = procstat::status(pid)
        .with_context(|| format!("{} is gone (did it exit?)", side.label))?
        .hwm_kib;
    let n = result.requests.max(1) as f64;
    Ok(Round {
        rps: result.rps(),
        p50: result.p50_ms(),
        p95: result.quantile_ms(0.95),
        p99: result.p99_ms(),
        cpu_ms: cpu * 1000.0 / n,
        per_core_second: n / cpu.max(1e-9),
        peak_mib: procstat::mib(peak),
        subgraph_per_request: sub / n,
        subgraph_cpu_ms: sub_cpu * 1000.0 / n,
        errors: result.errors,
    })
}

// ---- report ---------------------------------------------------------------------------

fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} cores ({model})")
}

fn version(program: &Path, arg: &str) -> String {
    Command::new(program)
        .arg(arg)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn markdown(o: &Options, node: &Path, results: &[Comparison], notes: &[String]) -> String {
    let mut out = String::new();
    let date = version(Path::new("date"), "-u");
    let _ = writeln!(out, "### Against the peers\n");
    let _ = writeln!(out, "- command: `{}`", o.command_line);
    let _ = writeln!(out, "- machine: {}; date: {date}", machine());
    let _ = writeln!(out, "- our gateway: {}", crate::report::build(&o.bin_dir));
    let _ = writeln!(
        out,
        "- peers: Hive Router {HIVE_VERSION} (crates.io, `cargo install hive-router@{HIVE_VERSION} --locked --features graphiql`); graphql-tools stitching on Node {} (bench/peers/package-lock.json)",
        version(node, "--version")
    );
    let _ = writeln!(
        out,
        "- each side: {} rounds of {:?} after {:?} warm-up, alternating which side goes first; figures are the median round; each gateway on one thread (our `worker_threads = 1`, Hive Router's `http.workers: 1`; Node is single-threaded)\n",
        o.rounds, o.duration, o.warmup
    );
    for c in results {
        table(&mut out, c);
    }
    for n in notes {
        let _ = writeln!(out, "- {n}");
    }
    out
}

/// A report row: its name, the figure, and the digits shown.
type Row = (&'static str, fn(&Round) -> f64, usize);

fn table(out: &mut String, c: &Comparison) {
    let _ = writeln!(out, "#### {}\n", c.title);
    if let Some(why) = &c.peer.skipped {
        let _ = writeln!(out, "{} was not timed: {why}.\n", c.peer.label);
    }
    let _ = writeln!(
        out,
        "| | {} | {} | ours / peer |",
        c.ours.label, c.peer.label
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: |");
    let kb = c.ours.answer_bytes as f64 / 1024.0;
    let rows: [Row; 9] = [
        ("requests per second", |r| r.rps, 0),
        ("p50 (ms)", |r| r.p50, 2),
        ("p95 (ms)", |r| r.p95, 2),
        ("p99 (ms)", |r| r.p99, 2),
        ("gateway CPU per request (ms)", |r| r.cpu_ms, 3),
        ("requests per core-second", |r| r.per_core_second, 0),
        ("peak RSS (MiB)", |r| r.peak_mib, 1),
        (
            "subgraph requests per request",
            |r| r.subgraph_per_request,
            3,
        ),
        ("subgraph CPU per request (ms)", |r| r.subgraph_cpu_ms, 3),
    ];
    for (name, f, digits) in rows {
        let a = c.ours.med(f);
        let b = c.peer.med(f);
        let _ = writeln!(
            out,
            "| {name} | {a:.digits$} | {b:.digits$} | {:.2} |",
            a / b
        );
    }
    let cpu_per_kb = |f: &Figures| f.med(|r| r.cpu_ms) * 1000.0 / kb.max(1e-9);
    let _ = writeln!(
        out,
        "| gateway CPU per KB of answer (us) | {:.1} | {:.1} | {:.2} |",
        cpu_per_kb(&c.ours),
        cpu_per_kb(&c.peer),
        cpu_per_kb(&c.ours) / cpu_per_kb(&c.peer)
    );
    let errors: u64 = c
        .ours
        .rounds
        .iter()
        .chain(&c.peer.rounds)
        .map(|r| r.errors)
        .sum();
    let _ = writeln!(out, "\nAnswer: {:.1} KB. Failed requests: {errors}.\n", kb);
}
