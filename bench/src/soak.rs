//! `soak`: steady load through the gateway for `--soak-secs` (default 300)
//! while the dataset subgraph is killed (SIGKILL) and restarted twice.
//! Every 10 s it samples the gateway's RSS and the window's requests and
//! errors. The verdicts: RSS stays flat, errors happen only while the
//! subgraph is down (and for a bounded recovery after it is back), and the
//! gateway answers whole again after each restart.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use serde_json::json;

use crate::{load, options::Options, procstat, resilience::TOUCHING_QUERY, stack::Stack};

const CONNECTIONS: usize = 4;
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Error accounting resolution.
const BUCKET: Duration = Duration::from_millis(100);
/// How long after a restart errors may still come (the breaker's cooldown
/// is 5 s, then a probe closes it).
pub const RECOVERY_ALLOWANCE: Duration = Duration::from_secs(15);
/// The most the last RSS sample may exceed the one a minute in.
pub const RSS_GROWTH_LIMIT: f64 = 1.25;

pub struct Sample {
    pub at: Duration,
    pub rss_kib: u64,
    pub requests: u64,
    pub errors: u64,
    pub dataset_up: bool,
}

pub struct Outage {
    pub killed_at: Duration,
    pub restarted_at: Duration,
    pub errors: u64,
    /// From the restart to the end of the last failed request's bucket.
    pub recovered_after: Duration,
}

pub struct Soak {
    pub duration: Duration,
    pub samples: Vec<Sample>,
    pub outages: Vec<Outage>,
    pub requests: u64,
    pub errors: u64,
    /// Errors before the first kill, or later than the recovery allowance
    /// after a restart.
    pub errors_outside: u64,
    pub first_error: Option<String>,
}

impl Soak {
    /// The last RSS sample over the first one at least a minute in.
    pub fn rss_growth(&self) -> f64 {
        let base = self
            .samples
            .iter()
            .find(|s| s.at >= Duration::from_secs(60))
            .or(self.samples.first());
        match (base, self.samples.last()) {
            (Some(b), Some(l)) if b.rss_kib > 0 => l.rss_kib as f64 / b.rss_kib as f64,
            _ => f64::NAN,
        }
    }

    pub fn recovered(&self) -> bool {
        self.outages
            .iter()
            .all(|o| o.recovered_after <= RECOVERY_ALLOWANCE)
    }
}

/// Requests and errors per `BUCKET` since the start.
struct Tally {
    started: Instant,
    requests: Vec<AtomicU64>,
    errors: Vec<AtomicU64>,
}

impl Tally {
    fn new(duration: Duration) -> Tally {
        let n = (duration.as_millis() / BUCKET.as_millis()) as usize + 2;
        Tally {
            started: Instant::now(),
            requests: (0..n).map(|_| AtomicU64::new(0)).collect(),
            errors: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn record(&self, failed: bool) {
        let i = (self.started.elapsed().as_millis() / BUCKET.as_millis()) as usize;
        let i = i.min(self.requests.len() - 1);
        self.requests[i].fetch_add(1, Relaxed);
        if failed {
            self.errors[i].fetch_add(1, Relaxed);
        }
    }

    fn index(at: Duration) -> usize {
        (at.as_millis() / BUCKET.as_millis()) as usize
    }

    /// (requests, errors) of the buckets in `[from, to)`.
    fn sum(&self, from: Duration, to: Duration) -> (u64, u64) {
        let (a, b) = (Self::index(from), Self::index(to).min(self.requests.len()));
        (a..b).fold((0, 0), |(r, e), i| {
            (
                r + self.requests[i].load(Relaxed),
                e + self.errors[i].load(Relaxed),
            )
        })
    }

    /// The end of the last bucket in `[from, to)` with an error.
    fn last_error(&self, from: Duration, to: Duration) -> Option<Duration> {
        let (a, b) = (Self::index(from), Self::index(to).min(self.errors.len()));
        (a..b)
            .rev()
            .find(|&i| self.errors[i].load(Relaxed) > 0)
            .map(|i| BUCKET * (i as u32 + 1))
    }
}

/// When the dataset subgraph goes down and comes back: at 20 % and 60 % of
/// the run, for a tenth of it each time.
fn schedule(duration: Duration) -> [(Duration, Duration); 2] {
    let at = |f: f64| duration.mul_f64(f);
    [(at(0.2), at(0.3)), (at(0.6), at(0.7))]
}

pub async fn run(o: &Options, stack: &mut Stack) -> anyhow::Result<Soak> {
    let duration = o.soak;
    let tally = Arc::new(Tally::new(duration));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let client = load::client(CONNECTIONS)?;
    let body = json!({ "query": TOUCHING_QUERY }).to_string();
    let deadline = tally.started + duration;
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (client, url, body) = (client.clone(), stack.gateway.graphql(), body.clone());
        let (tally, first_error) = (tally.clone(), first_error.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let outcome = load::send(&client, &url, &body, None).await;
                tally.record(outcome.is_err());
                if let Err(e) = outcome {
                    let mut first = first_error.lock().unwrap_or_else(|p| p.into_inner());
                    first.get_or_insert(e);
                }
            }
        }));
    }
    let (samples, outages) = drive(stack, &tally, duration).await;
    for t in tasks {
        t.await.context("a soak load task panicked")?;
    }
    let (samples, outages) = (samples?, outages);
    let (requests, errors) = tally.sum(Duration::ZERO, duration + BUCKET * 2);
    let errors_outside = errors_outside(&tally, &outages, duration);
    let first_error = first_error.lock().unwrap_or_else(|p| p.into_inner()).take();
    Ok(Soak {
        duration,
        samples,
        outages,
        requests,
        errors,
        errors_outside,
        first_error,
    })
}

/// Samples every 10 s and kills and restarts the dataset subgraph on schedule.
async fn drive(
    stack: &mut Stack,
    tally: &Tally,
    duration: Duration,
) -> (anyhow::Result<Vec<Sample>>, Vec<Outage>) {
    let mut samples = Vec::new();
    let mut outages = Vec::new();
    let mut up = true;
    let mut last_sample = Duration::ZERO;
    let result = async {
        for (kill_at, restart_at) in schedule(duration) {
            sample_until(stack, tally, kill_at, &mut last_sample, up, &mut samples).await?;
            stack.dataset.kill()?;
            up = false;
            let killed_at = tally.started.elapsed();
            eprintln!("bench: soak: dataset subgraph killed at {killed_at:.0?}");
            sample_until(stack, tally, restart_at, &mut last_sample, up, &mut samples).await?;
            stack.restart_dataset().await?;
            up = true;
            let restarted_at = tally.started.elapsed();
            eprintln!("bench: soak: dataset subgraph back at {restarted_at:.0?}");
            outages.push(Outage {
                killed_at,
                restarted_at,
                errors: 0,
                recovered_after: Duration::ZERO,
            });
        }
        sample_until(stack, tally, duration, &mut last_sample, up, &mut samples).await
    }
    .await;
    // The load has stopped: count each outage's errors and its recovery.
    tokio::time::sleep(BUCKET * 2).await;
    let ends: Vec<Duration> = outages
        .iter()
        .skip(1)
        .map(|o| o.killed_at)
        .chain([duration])
        .collect();
    for (o, end) in outages.iter_mut().zip(ends) {
        o.errors = tally.sum(o.killed_at, end).1;
        o.recovered_after = tally
            .last_error(o.restarted_at, end)
            .map(|last| last.saturating_sub(o.restarted_at))
            .unwrap_or(Duration::ZERO);
    }
    (result.map(|()| samples), outages)
}

/// Takes a sample at each 10 s mark until `until` (since the start).
async fn sample_until(
    stack: &Stack,
    tally: &Tally,
    until: Duration,
    last: &mut Duration,
    dataset_up: bool,
    samples: &mut Vec<Sample>,
) -> anyhow::Result<()> {
    loop {
        let next = *last + SAMPLE_EVERY;
        if next > until {
            let left = until.saturating_sub(tally.started.elapsed());
            tokio::time::sleep(left).await;
            return Ok(());
        }
        tokio::time::sleep(next.saturating_sub(tally.started.elapsed())).await;
        let (requests, errors) = tally.sum(*last, next);
        samples.push(Sample {
            at: next,
            rss_kib: procstat::status(stack.gateway.pid)?.rss_kib,
            requests,
            errors,
            dataset_up,
        });
        *last = next;
    }
}

/// Errors before the first kill and after each restart's recovery allowance.
fn errors_outside(tally: &Tally, outages: &[Outage], duration: Duration) -> u64 {
    let mut quiet = Vec::new();
    let mut from = Duration::ZERO;
    for o in outages {
        quiet.push((from, o.killed_at));
        from = o.restarted_at + RECOVERY_ALLOWANCE;
    }
    quiet.push((from, duration + BUCKET * 2));
    quiet
        .into_iter()
        .filter(|(a, b)| a < b)
        .map(|(a, b)| tally.sum(a, b).1)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_fall_at_a_fifth_and_three_fifths() {
        let s = schedule(Duration::from_secs(300));
        assert_eq!(s[0], (Duration::from_secs(60), Duration::from_secs(90)));
        assert_eq!(s[1], (Duration::from_secs(180), Duration::from_secs(210)));
    }

    #[test]
    fn errors_are_told_apart_by_when_they_happened() {
        let t = Tally::new(Duration::from_secs(10));
        let at = |ms: u64, failed: bool| {
            let i = Tally::index(Duration::from_millis(ms));
            t.requests[i].fetch_add(1, Relaxed);
            if failed {
                t.errors[i].fetch_add(1, Relaxed);
            }
        };
        at(500, true); // before the kill: outside
        at(2_500, true); // while down
        at(4_250, true); // 1.25 s after the restart
        at(9_000, false);
        let outages = [Outage {
            killed_at: Duration::from_secs(2),
            restarted_at: Duration::from_secs(3),
            errors: 0,
            recovered_after: Duration::ZERO,
        }];
        assert_eq!(errors_outside(&t, &outages, Duration::from_secs(10)), 1);
        assert_eq!(
            t.last_error(Duration::from_secs(3), Duration::from_secs(10)),
            Some(Duration::from_millis(4_300))
        );
        assert_eq!(t.sum(Duration::ZERO, Duration::from_secs(10)), (4, 3));
    }
}
