//! `bench`: the load generator behind BENCHMARKS.md.
//!
//! `bench all` starts the three subgraphs and the gateway as child processes
//! (on free loopback ports, from a generated config in a temp directory),
//! seeds the store, drives the scenarios from this separate process, reads
//! the gateway's `/metrics` and `/proc` figures, and prints a Markdown report.

mod gql;
mod load;
mod options;
mod peers;
mod procstat;
mod report;
mod resilience;
mod scale;
mod scenarios;
mod seed;
mod soak;
mod stack;
mod subscriptions;
mod train;

use std::time::{Duration, Instant};

/// A hard bound on seeding plus scenarios (plus the soak), whatever the servers do.
const MAX_RUN: Duration = Duration::from_secs(30 * 60);

use anyhow::Context;

use options::{Command, Options};
use report::Report;

fn main() -> anyhow::Result<()> {
    let command = options::parse(std::env::args().skip(1))?;
    let (options, run): (Options, fn(Options) -> Run) = match command {
        Command::Help(text) => {
            print!("{text}");
            return Ok(());
        }
        Command::All(o) => (*o, |o| Box::pin(all(o))),
        Command::Peers(o) => (*o, |o| Box::pin(peers_report(o))),
        Command::Scale(o) => (*o, |o| Box::pin(scale_report(o))),
        Command::Train(o) => (*o, |o| Box::pin(train_run(o))),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads)
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(run(options))
}

/// A command's whole run.
type Run = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>>>>;

/// `run`, failed if it takes longer than `MAX_RUN`.
async fn bounded<T>(
    run: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(MAX_RUN, run)
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the run took longer than {MAX_RUN:?}")))
}

/// `bench train`: the training run of a profile-guided build.
async fn train_run(options: Options) -> anyhow::Result<()> {
    bounded(train::run(&options)).await
}

/// `bench scale`: the services on Postgres, one and two replicas.
async fn scale_report(options: Options) -> anyhow::Result<()> {
    let markdown = bounded(scale::run(&options)).await?;
    println!("{markdown}");
    if let Some(path) = &options.markdown_out {
        std::fs::write(path, &markdown)
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
    }
    Ok(())
}

/// `bench peers`: the comparison with the leading gateways.
async fn peers_report(options: Options) -> anyhow::Result<()> {
    let markdown = bounded(peers::run(&options)).await?;
    println!("{markdown}");
    if let Some(path) = &options.markdown_out {
        std::fs::write(path, &markdown)
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
        eprintln!("bench: report written to {}", path.display());
    }
    Ok(())
}

/// Everything: start the stack, seed, run the scenarios, report, stop.
async fn all(options: Options) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut report = Report::new(&options);
    eprintln!(
        "bench: binaries from {}, stitching SDL from {}",
        options.bin_dir.display(),
        options.root.display()
    );
    let mut stack = stack::Stack::start(&options).await?;
    eprintln!("bench: stack up in {}", stack.dir.display());
    let max_run = MAX_RUN + options.soak;
    let result = tokio::time::timeout(max_run, run_scenarios(&options, &mut stack, &mut report))
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the run took longer than {max_run:?}")));
    let stopped = stack.stop().await;
    if let Err(e) = &result {
        report.note(format!("The run stopped early: {e:#}"));
    }
    report.total_secs = started.elapsed().as_secs_f64();
    let markdown = report.markdown();
    println!("{markdown}");
    if let Some(path) = &options.markdown_out {
        std::fs::write(path, &markdown)
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
        eprintln!("bench: report written to {}", path.display());
    }
    let failed = result?;
    stopped?;
    if failed > 0 {
        anyhow::bail!("{failed} scenario(s) failed (see the report)");
    }
    Ok(())
}

/// Seeds, then runs each wanted scenario; a failing scenario is noted in the
/// report and the next one still runs. Returns how many failed.
async fn run_scenarios(
    options: &Options,
    stack: &mut stack::Stack,
    report: &mut Report,
) -> anyhow::Result<usize> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    report.idle_rss_kib = Some(procstat::status(stack.gateway.pid)?.rss_kib);
    eprintln!("bench: seeding");
    let seeded = seed::seed(options, stack).await?;
    report.seeded = Some(seeded.summary.clone());
    let want = |name: &str| options.scenarios.iter().any(|s| s == name);
    let mut failed = 0;
    let mut check =
        |name: &str, r: anyhow::Result<()>, stack: &mut stack::Stack, report: &mut Report| {
            if let Err(e) = r {
                failed += 1;
                let gateway = match stack.gateway.exited() {
                    Some(status) => format!(" (the gateway process had exited: {status})"),
                    None => String::new(),
                };
                eprintln!("bench: scenario {name} failed: {e:#}{gateway}");
                report.note(format!("Scenario `{name}` failed{gateway}: {e:#}"));
            }
        };
    if want("root") {
        eprintln!("bench: scenario root");
        let r = scenarios::root(options, stack, &seeded).await;
        let r = r.map(|v| report.root = Some(v));
        check("root", r, stack, report);
    }
    if want("nested") {
        eprintln!("bench: scenario nested");
        let r = scenarios::nested(options, stack).await;
        let r = r.map(|v| report.nested = Some(v));
        check("nested", r, stack, report);
    }
    if want("fanout") {
        eprintln!("bench: scenario fanout");
        let r = scenarios::fanout(options, stack, &seeded).await;
        let r = r.map(|v| report.fanout = Some(v));
        check("fanout", r, stack, report);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    if let Ok(m) = procstat::status(stack.gateway.pid) {
        report.idle_rss_after_kib = Some(m.rss_kib);
    }
    if want("subscriptions") {
        eprintln!("bench: scenario subscriptions (on a fresh gateway process)");
        let r = async {
            stack.restart_gateway().await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            report.idle_rss_fresh_kib = Some(procstat::status(stack.gateway.pid)?.rss_kib);
            report.subscriptions = Some(subscriptions::run(options, stack).await);
            anyhow::Ok(())
        }
        .await;
        check("subscriptions", r, stack, report);
    }
    if want("resilience") {
        eprintln!("bench: scenario resilience (a fresh gateway per phase)");
        let r = resilience::run(options, stack).await;
        let r = r.map(|v| report.resilience = Some(v));
        check("resilience", r, stack, report);
    }
    if want("soak") {
        eprintln!(
            "bench: scenario soak ({:?}, the dataset subgraph killed twice)",
            options.soak
        );
        let r = soak::run(options, stack).await;
        let r = r.map(|v| report.soak = Some(v));
        check("soak", r, stack, report);
    }
    Ok(failed)
}
