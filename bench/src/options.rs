//! Command line: `bench all|peers|scale [options]`, read by clap. Defaults
//! that differ per command (a peers round runs the public harness's 50
//! connections for 10 s) are filled in after parsing.

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{builder::PossibleValuesParser, error::ErrorKind, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bench",
    about = "Loads the gateway and its subgraphs on this machine and prints a Markdown report",
    long_about = "Starts target/<profile>/{pipeline,dataset,log,gateway} on free loopback ports, \
seeds the store, runs the scenarios and prints a Markdown report.",
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Subcommand)]
enum Sub {
    /// The scenarios through our gateway and straight to the subgraphs.
    All(Args),
    /// The same work through our gateway and the leading peers
    ///
    /// In alternating rounds on this machine: the four Federation subgraphs of
    /// the gateway benchmark through Hive Router (TestQuery: identical
    /// requests, a unique Authorization per request, and that with 4 ms
    /// added per subgraph answer), and the three stitching subgraphs
    /// through a graphql-tools gateway (`nested`, `fanout`).
    /// scripts/bench.sh --peers installs the peers first.
    Peers(Args),
    /// The services alone on Postgres, with one and then two replicas
    ///
    /// On a Postgres cluster of their own (Debian's postgresql), with one
    /// and then two replicas of each: pipeline runs
    /// per second (--runs runs of example01) and log lines per second
    /// (--duration seconds of ingestLogs), with Postgres commits per run and
    /// per call.
    Scale(Args),
    /// Every timed workload once, briefly, measuring nothing
    ///
    /// The training run of a profile-guided build of the gateway
    /// (scripts/pgo.sh): the stitching scenarios with deduplication on and
    /// off, and the Federation TestQuery with identical requests and with a
    /// unique Authorization each. Run it with an instrumented gateway in
    /// --bin-dir.
    Train(Args),
}

#[derive(clap::Args)]
struct Args {
    /// Where the four binaries are [default: <root>/target/production]
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// The workspace (for gateway/stitching/*.graphql) [default: found from the current directory]
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Measured seconds per scenario [default: 20; peers: 10; train: 3]
    #[arg(long, value_name = "SECS", value_parser = secs)]
    duration: Option<Duration>,
    /// Warm-up seconds before each measurement [default: 3; peers: 2; train: 1]
    #[arg(long, value_name = "SECS", value_parser = secs)]
    warmup: Option<Duration>,
    /// Concurrent connections for root and nested [default: 64; peers: 50]
    #[arg(long, value_name = "N", value_parser = count)]
    connections: Option<usize>,
    /// Load generator worker threads
    #[arg(long, value_name = "N", default_value = "1", value_parser = count)]
    threads: usize,
    /// Seeded pipeline runs (two datasets each)
    #[arg(long, value_name = "N", default_value = "1000", value_parser = count)]
    runs: usize,
    /// Seeded log lines
    #[arg(long, value_name = "N", default_value = "20000", value_parser = count)]
    log_lines: usize,
    /// Parent counts, comma-separated
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "1,10,100,1000", value_parser = count)]
    fanout: Vec<usize>,
    /// Concurrent connections for fanout
    #[arg(long, value_name = "N", default_value = "8", value_parser = count)]
    fanout_connections: usize,
    /// Concurrent subscriptions
    #[arg(long, value_name = "N", default_value = "1000", value_parser = count)]
    subscriptions: usize,
    /// Runs the subscriptions are spread over
    #[arg(long, value_name = "N", default_value = "10", value_parser = count)]
    sub_runs: usize,
    /// Lines emitted per run while subscribed
    #[arg(long, value_name = "N", default_value = "100", value_parser = count)]
    sub_lines: usize,
    /// Scenarios to run, comma-separated [default: all but soak]
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = PossibleValuesParser::new(SCENARIOS))]
    scenarios: Option<Vec<String>>,
    /// How long the soak runs; the dataset subgraph is killed at 20 % and
    /// 60 % of it and restarted a tenth later
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = secs)]
    soak_secs: Duration,
    /// Peers: rounds of each side per workload
    #[arg(long, value_name = "N", default_value = "3", value_parser = count)]
    rounds: usize,
    /// Peers: where scripts/bench.sh installed them [default: <root>/target/peers]
    #[arg(long, value_name = "DIR")]
    peers_dir: Option<PathBuf>,
    /// Peers: workloads to run, comma-separated [default: both]
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = PossibleValuesParser::new(WORKLOADS))]
    workloads: Option<Vec<String>>,
    /// Also write the report to FILE
    #[arg(long, value_name = "FILE")]
    markdown_out: Option<PathBuf>,
    /// Keep the temp directory (configs, databases, logs)
    #[arg(long)]
    keep: bool,
    /// All: the gateway sends every subgraph request itself (no in-flight
    /// deduplication of identical ones)
    #[arg(long)]
    no_dedupe: bool,
}

pub enum Command {
    /// Help (or a version) asked for: the text to print.
    Help(String),
    All(Box<Options>),
    Peers(Box<Options>),
    Scale(Box<Options>),
    Train(Box<Options>),
}

/// Which command the options are for: some defaults differ.
#[derive(Clone, Copy)]
enum Kind {
    All,
    Peers,
    Train,
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
    let cli = match Cli::try_parse_from(std::iter::once("bench".to_string()).chain(args)) {
        Ok(cli) => cli,
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            return Ok(Command::Help(e.render().to_string()))
        }
        // `main` says "Error: " already.
        Err(e) => anyhow::bail!(
            "{}",
            e.render()
                .to_string()
                .trim_start_matches("error: ")
                .trim_end()
        ),
    };
    Ok(match cli.command {
        Sub::All(a) => Command::All(Box::new(options(a, Kind::All, command_line)?)),
        Sub::Peers(a) => Command::Peers(Box::new(options(a, Kind::Peers, command_line)?)),
        Sub::Scale(a) => Command::Scale(Box::new(options(a, Kind::All, command_line)?)),
        Sub::Train(a) => Command::Train(Box::new(options(a, Kind::Train, command_line)?)),
    })
}

/// The options, with the defaults that depend on the command filled in and
/// the directories found and made absolute.
fn options(a: Args, kind: Kind, command_line: String) -> anyhow::Result<Options> {
    // Each side of a peers round: the public harness's 50 connections, 10 s.
    // Training only has to run each workload's code many times over.
    let (duration, warmup, connections) = match kind {
        Kind::All => (20, 3, 64),
        Kind::Peers => (10, 2, 50),
        Kind::Train => (3, 1, 50),
    };
    let root = match a.root {
        Some(r) => r,
        None => find_root()?,
    };
    let root = root
        .canonicalize()
        .with_context(|| format!("--root {}: no such directory", root.display()))?;
    let bin_dir = a.bin_dir.unwrap_or_else(|| root.join("target/production"));
    // The children run in a temp directory: the path must not be relative.
    let bin_dir = bin_dir.canonicalize().with_context(|| {
        format!(
            "--bin-dir {}: no such directory (build first)",
            bin_dir.display()
        )
    })?;
    Ok(Options {
        peers_dir: a.peers_dir.unwrap_or_else(|| root.join("target/peers")),
        bin_dir,
        root,
        duration: a.duration.unwrap_or(Duration::from_secs(duration)),
        warmup: a.warmup.unwrap_or(Duration::from_secs(warmup)),
        connections: a.connections.unwrap_or(connections),
        threads: a.threads,
        runs: a.runs,
        log_lines: a.log_lines,
        fanout: a.fanout,
        fanout_connections: a.fanout_connections,
        subscriptions: a.subscriptions,
        sub_runs: a.sub_runs.min(a.subscriptions),
        sub_lines: a.sub_lines,
        scenarios: a.scenarios.unwrap_or_else(|| {
            SCENARIOS
                .iter()
                .filter(|s| !OPT_IN.contains(s))
                .map(|s| s.to_string())
                .collect()
        }),
        soak: a.soak_secs,
        markdown_out: a.markdown_out,
        keep: a.keep,
        no_dedupe: a.no_dedupe,
        rounds: a.rounds,
        workloads: a
            .workloads
            .unwrap_or_else(|| WORKLOADS.iter().map(|s| s.to_string()).collect()),
        command_line,
    })
}

fn secs(v: &str) -> Result<Duration, String> {
    let s: f64 = v
        .parse()
        .map_err(|_| "expected a number of seconds".to_string())?;
    if !(s > 0.0 && s < 3600.0) {
        return Err("expected more than 0 and less than 3600 seconds".into());
    }
    Ok(Duration::from_secs_f64(s))
}

fn count(v: &str) -> Result<usize, String> {
    match v.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("expected a whole number above 0".into()),
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
    anyhow::bail!("cannot find the workspace (a directory with gateway/stitching); pass --root DIR")
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
            assert!(
                matches!(parse_args(args), Ok(Command::Help(h)) if h.contains("Usage: bench")),
                "{args:?}"
            );
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

    /// Training runs every workload, each only long enough to count its code.
    #[test]
    fn train_runs_every_scenario_briefly() {
        let root = env!("CARGO_MANIFEST_DIR");
        let Command::Train(o) = parse_args(&["train", "--root", root, "--bin-dir", root]).unwrap()
        else {
            panic!("expected `train`");
        };
        assert_eq!(o.duration, Duration::from_secs(3));
        assert_eq!(o.warmup, Duration::from_secs(1));
        assert_eq!(o.connections, 50);
    }

    #[test]
    fn bad_input_is_refused_with_the_option_named() {
        for (args, needle) in [
            (vec!["all", "--duration", "0"], "--duration"),
            (vec!["all", "--connections", "x"], "--connections"),
            (vec!["all", "--scenarios", "root,nope"], "nope"),
            (vec!["all", "--frobnicate"], "--frobnicate"),
            (vec!["all", "--runs"], "--runs"),
            (vec!["run"], "'run'"),
        ] {
            let err = parse_args(&args)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
        assert!(matches!(parse_args(&[]), Ok(Command::Help(_))));
    }
}
