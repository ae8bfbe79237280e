//! Command line: `bench all [options]`. Hand-parsed to keep the crate's
//! dependencies to what the workspace already has.

use std::{path::PathBuf, time::Duration};

use anyhow::{bail, Context};

pub const USAGE: &str = "\
usage: bench all [options]
       bench peers [options]
       bench scale [options]

`scale` runs the services alone on a Postgres cluster of its own (Debian's
postgresql), with one and then two replicas of each: pipeline runs per
second (--runs runs of example01) and log lines per second (--duration
seconds of ingestLogs), with Postgres commits per run and per call.

`peers` runs the same work through our gateway and the leading peers, in
alternating rounds on this machine: the four Federation subgraphs of the
gateway benchmark through Hive Router (TestQuery: identical requests, a
unique Authorization per request, and that with 4 ms added per subgraph
answer), and the three stitching subgraphs through a graphql-tools gateway
(`nested`, `fanout`). scripts/bench.sh --peers installs the peers first.

Starts target/<profile>/{pipeline,dataset,log,gateway} on free loopback ports,
seeds the store, runs the scenarios and prints a Markdown report.

options:
  --bin-dir DIR            where the four binaries are (default: <root>/target/production)
  --root DIR               the workspace (for gateway/stitching/*.graphql; default: found from cwd)
  --duration SECS          measured seconds per scenario (default 20)
  --warmup SECS            warm-up seconds before each measurement (default 3)
  --connections N          concurrent connections for root and nested (default 64)
  --threads N              load generator worker threads (default 1)
  --runs N                 seeded pipeline runs (default 1000; two datasets each)
  --log-lines N            seeded log lines (default 20000)
  --fanout LIST            parent counts, comma-separated (default 1,10,100,1000)
  --fanout-connections N   concurrent connections for fanout (default 8)
  --subscriptions N        concurrent subscriptions (default 1000)
  --sub-runs N             runs the subscriptions are spread over (default 10)
  --sub-lines N            lines emitted per run while subscribed (default 100)
  --scenarios LIST         any of root,nested,fanout,subscriptions,resilience,soak
                           (default: all but soak)
  --soak-secs SECS         soak: how long (default 300); the dataset subgraph is
                           killed at 20 % and 60 % of it and restarted a tenth later
  --rounds N               peers: rounds of each side per workload (default 3)
  --peers-dir DIR          peers: where scripts/bench.sh installed them (default: <root>/target/peers)
  --workloads LIST         peers: any of federation,stitching (default: both)
  --markdown-out FILE      also write the report to FILE
  --keep                   keep the temp directory (configs, databases, logs)
  --no-dedupe              all: the gateway sends every subgraph request itself
                           (no in-flight deduplication of identical ones)";

pub enum Command {
    Help,
    All(Box<Options>),
    Peers(Box<Options>),
    Scale(Box<Options>),
}

#[derive(Clone, Debug)]
pub struct Options {
    pub bin_dir: PathBuf,
    pub root: PathBuf,
    pub duration: Duration,
    pub warmup: Duration,
    pub connections: usize,
    pub threads: usize,
    pub runs: usize,
    pub log_lines: usize,
    pub fanout: Vec<usize>,
    pub fanout_connections: usize,
    pub subscriptions: usize,
    pub sub_runs: usize,
    pub sub_lines: usize,
    pub scenarios: Vec<String>,
    /// How long the soak runs.
    pub soak: Duration,
    pub markdown_out: Option<PathBuf>,
    pub keep: bool,
    /// `dedupe_subgraph_requests = false`: every client request pays for
    /// its own subgraph calls (the figure issue 10's CPU-per-KB target names).
    pub no_dedupe: bool,
    pub rounds: usize,
    pub peers_dir: PathBuf,
    pub workloads: Vec<String>,
    /// The command line as typed, for the report.
    pub command_line: String,
}

const SCENARIOS: [&str; 6] = [
    "root",
    "nested",
    "fanout",
    "subscriptions",
    "resilience",
    "soak",
];
/// The soak takes minutes: only when asked for.
const OPT_IN: [&str; 1] = ["soak"];
const WORKLOADS: [&str; 2] = ["federation", "stitching"];

pub fn parse(args: impl Iterator<Item = String>) -> anyhow::Result<Command> {
    let args: Vec<String> = args.collect();
    let command_line = std::iter::once("bench".to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let mut it = args.into_iter();
    let (peers, scale) = match it.next().as_deref() {
        None | Some("--help") | Some("-h") | Some("help") => return Ok(Command::Help),
        Some("all") => (false, false),
        Some("peers") => (true, false),
        Some("scale") => (false, true),
        Some(other) => bail!("unknown command `{other}`\n{USAGE}"),
    };
    let mut peers_dir = None;
    let mut bin_dir = None;
    let mut root = None;
    let mut o = Options {
        bin_dir: PathBuf::new(),
        root: PathBuf::new(),
        duration: Duration::from_secs(20),
        warmup: Duration::from_secs(3),
        connections: 64,
        threads: 1,
        runs: 1000,
        log_lines: 20_000,
        fanout: vec![1, 10, 100, 1000],
        fanout_connections: 8,
        subscriptions: 1000,
        sub_runs: 10,
        sub_lines: 100,
        scenarios: SCENARIOS
            .iter()
            .filter(|s| !OPT_IN.contains(s))
            .map(|s| s.to_string())
            .collect(),
        soak: Duration::from_secs(300),
        markdown_out: None,
        keep: false,
        no_dedupe: false,
        rounds: 3,
        peers_dir: PathBuf::new(),
        workloads: WORKLOADS.iter().map(|s| s.to_string()).collect(),
        command_line,
    };
    if peers {
        // Each side of each round: the harness's 50 connections, 10 s.
        o.duration = Duration::from_secs(10);
        o.warmup = Duration::from_secs(2);
        o.connections = 50;
    }
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--bin-dir" => bin_dir = Some(PathBuf::from(value()?)),
            "--root" => root = Some(PathBuf::from(value()?)),
            "--duration" => o.duration = secs(&arg, &value()?)?,
            "--warmup" => o.warmup = secs(&arg, &value()?)?,
            "--soak-secs" => o.soak = secs(&arg, &value()?)?,
            "--connections" => o.connections = count(&arg, &value()?)?,
            "--threads" => o.threads = count(&arg, &value()?)?,
            "--runs" => o.runs = count(&arg, &value()?)?,
            "--log-lines" => o.log_lines = count(&arg, &value()?)?,
            "--fanout" => {
                o.fanout = value()?
                    .split(',')
                    .map(|n| count(&arg, n.trim()))
                    .collect::<anyhow::Result<_>>()?
            }
            "--fanout-connections" => o.fanout_connections = count(&arg, &value()?)?,
            "--subscriptions" => o.subscriptions = count(&arg, &value()?)?,
            "--sub-runs" => o.sub_runs = count(&arg, &value()?)?,
            "--sub-lines" => o.sub_lines = count(&arg, &value()?)?,
            "--scenarios" => {
                let list: Vec<String> = value()?.split(',').map(|s| s.trim().to_string()).collect();
                if let Some(bad) = list.iter().find(|s| !SCENARIOS.contains(&s.as_str())) {
                    bail!(
                        "unknown scenario `{bad}`: pick from {}",
                        SCENARIOS.join(",")
                    );
                }
                o.scenarios = list;
            }
            "--rounds" => o.rounds = count(&arg, &value()?)?,
            "--peers-dir" => peers_dir = Some(PathBuf::from(value()?)),
            "--workloads" => {
                let list: Vec<String> = value()?.split(',').map(|s| s.trim().to_string()).collect();
                if let Some(bad) = list.iter().find(|s| !WORKLOADS.contains(&s.as_str())) {
                    bail!(
                        "unknown workload `{bad}`: pick from {}",
                        WORKLOADS.join(",")
                    );
                }
                o.workloads = list;
            }
            "--markdown-out" => o.markdown_out = Some(PathBuf::from(value()?)),
            "--keep" => o.keep = true,
            "--no-dedupe" => o.no_dedupe = true,
            "--help" | "-h" => return Ok(Command::Help),
            other => bail!("unknown option `{other}`\n{USAGE}"),
        }
    }
    o.root = match root {
        Some(r) => r,
        None => find_root()?,
    };
    o.root = o
        .root
        .canonicalize()
        .with_context(|| format!("--root {}: no such directory", o.root.display()))?;
    let bin_dir = bin_dir.unwrap_or_else(|| o.root.join("target/production"));
    // The children run in a temp directory: the path must not be relative.
    o.bin_dir = bin_dir.canonicalize().with_context(|| {
        format!(
            "--bin-dir {}: no such directory (build first)",
            bin_dir.display()
        )
    })?;
    if o.sub_runs > o.subscriptions {
        o.sub_runs = o.subscriptions.max(1);
    }
    o.peers_dir = peers_dir.unwrap_or_else(|| o.root.join("target/peers"));
    Ok(if peers {
        Command::Peers(Box::new(o))
    } else if scale {
        Command::Scale(Box::new(o))
    } else {
        Command::All(Box::new(o))
    })
}

fn secs(name: &str, v: &str) -> anyhow::Result<Duration> {
    let s: f64 = v
        .parse()
        .with_context(|| format!("{name} {v}: expected a number of seconds"))?;
    if !(s > 0.0 && s < 3600.0) {
        bail!("{name} {v}: expected more than 0 and less than 3600 seconds");
    }
    Ok(Duration::from_secs_f64(s))
}

fn count(name: &str, v: &str) -> anyhow::Result<usize> {
    match v.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("{name} {v}: expected a whole number above 0"),
    }
}

/// The workspace root: the first ancestor of the current directory (or of
/// this crate's source directory) holding `gateway/stitching`.
fn find_root() -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let compiled = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for start in [cwd, compiled] {
        for dir in start.ancestors() {
            if dir.join("gateway/stitching").is_dir() {
                return Ok(dir.to_path_buf());
            }
        }
    }
    bail!("cannot find the workspace (a directory with gateway/stitching); pass --root DIR")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(args: &[&str]) -> anyhow::Result<Command> {
        parse(args.iter().map(|s| s.to_string()))
    }

    /// `--help` after a command prints the usage, as it does before one.
    #[test]
    fn help_after_a_command_is_help_not_an_unknown_option() {
        for args in [&["--help"][..], &["all", "--help"], &["peers", "-h"]] {
            assert!(matches!(parse_args(args), Ok(Command::Help)), "{args:?}");
        }
    }

    #[test]
    fn defaults_and_overrides() {
        let root = env!("CARGO_MANIFEST_DIR");
        let Command::All(o) = parse_args(&[
            "all",
            "--root",
            root,
            "--bin-dir",
            root,
            "--duration",
            "10",
            "--fanout",
            "1, 10",
            "--scenarios",
            "root,fanout",
        ])
        .unwrap() else {
            panic!("expected `all`");
        };
        assert_eq!(o.duration, Duration::from_secs(10));
        assert_eq!(o.warmup, Duration::from_secs(3));
        assert_eq!(o.connections, 64);
        assert_eq!(o.fanout, vec![1, 10]);
        assert_eq!(o.scenarios, vec!["root", "fanout"]);
        assert_eq!(o.soak, Duration::from_secs(300));
        let Command::All(o) = parse_args(&["all", "--root", root, "--bin-dir", root]).unwrap()
        else {
            panic!("expected `all`");
        };
        assert!(
            !o.scenarios.iter().any(|s| s == "soak"),
            "{:?}",
            o.scenarios
        );
        assert!(o.command_line.starts_with("bench all --root"));
    }

    #[test]
    fn bad_input_is_refused_with_the_option_named() {
        for (args, needle) in [
            (vec!["all", "--duration", "0"], "--duration"),
            (vec!["all", "--connections", "x"], "--connections"),
            (vec!["all", "--scenarios", "root,nope"], "nope"),
            (vec!["all", "--frobnicate"], "--frobnicate"),
            (vec!["all", "--runs"], "--runs needs a value"),
            (vec!["run"], "unknown command"),
        ] {
            let err = parse_args(&args)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
        assert!(matches!(parse_args(&[]), Ok(Command::Help)));
    }
}
