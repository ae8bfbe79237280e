//! Closed-loop HTTP load: `connections` tasks, each sending the next request
//! as soon as the previous answer is read, until the deadline. Latency is
//! measured from send to the last byte of the body; an answer counts as an
//! error if its status is not 2xx or its body holds `"errors"`.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::Context;

#[derive(Clone, Debug, Default)]
pub struct LoadResult {
    pub requests: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Sorted latencies in microseconds.
    latencies_us: Vec<u32>,
}

impl LoadResult {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile (0..=1) in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_us.len() as f64 * q).ceil() as usize)
            .clamp(1, self.latencies_us.len())
            - 1;
        self.latencies_us[i] as f64 / 1000.0
    }

    pub fn p50_ms(&self) -> f64 {
        self.quantile_ms(0.50)
    }

    pub fn p99_ms(&self) -> f64 {
        self.quantile_ms(0.99)
    }
}

/// Request bodies (JSON) to send; request `n` sends `bodies[scramble(n)]` so
/// that consecutive requests ask for different ids.
pub struct Load {
    pub url: String,
    pub connections: usize,
    pub duration: Duration,
    pub bodies: Arc<Vec<String>>,
    /// Send `Authorization: Bearer bench-<n>`, a different value on every
    /// request, so that no deduplication can answer one from another.
    pub unique_auth: bool,
}

pub fn client(connections: usize) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()
        .context("cannot build the HTTP client")
}

/// One connection sending `series[0]`, `series[1]`, ... in turn until the
/// deadline: the series see the same machine at the same moments, so their
/// latencies compare even when the machine's speed drifts.
/// Round `n` sends each series' body `scramble(n)`.
pub async fn interleaved(
    client: &reqwest::Client,
    series: &[(String, Arc<Vec<String>>)],
    duration: Duration,
) -> Vec<LoadResult> {
    let mut results: Vec<LoadResult> = series.iter().map(|_| LoadResult::default()).collect();
    let started = Instant::now();
    let deadline = started + duration;
    let mut round: u64 = 0;
    while Instant::now() < deadline {
        for ((url, bodies), r) in series.iter().zip(results.iter_mut()) {
            let Some(body) = pick(bodies, round) else {
                continue;
            };
            let t = Instant::now();
            let outcome = send(client, url, body, None).await;
            r.latencies_us
                .push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
            r.requests += 1;
            if let Err(e) = outcome {
                r.errors += 1;
                r.first_error.get_or_insert(e);
            }
        }
        round += 1;
    }
    for r in &mut results {
        r.elapsed = started.elapsed();
        r.latencies_us.sort_unstable();
    }
    results
}

pub async fn run(client: &reqwest::Client, load: &Load) -> anyhow::Result<LoadResult> {
    anyhow::ensure!(!load.bodies.is_empty(), "no request bodies to send");
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + load.duration;
    let mut tasks = Vec::with_capacity(load.connections);
    for _ in 0..load.connections {
        let client = client.clone();
        let url = load.url.clone();
        let bodies = load.bodies.clone();
        let counter = counter.clone();
        let unique_auth = load.unique_auth;
        tasks.push(tokio::spawn(async move {
            let mut r = LoadResult::default();
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let Some(body) = pick(&bodies, n) else { break };
                let t = Instant::now();
                let auth = unique_auth.then(|| format!("Bearer bench-{n}"));
                let outcome = send(&client, &url, body, auth).await;
                r.latencies_us
                    .push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                r.requests += 1;
                if let Err(e) = outcome {
                    r.errors += 1;
                    r.first_error.get_or_insert(e);
                }
            }
            r
        }));
    }
    let mut total = LoadResult::default();
    for t in tasks {
        let r = t.await.context("a load task panicked")?;
        total.requests += r.requests;
        total.errors += r.errors;
        if total.first_error.is_none() {
            total.first_error = r.first_error;
        }
        total.latencies_us.extend(r.latencies_us);
    }
    total.elapsed = started.elapsed();
    total.latencies_us.sort_unstable();
    Ok(total)
}

/// Body `n` of a sequence: a stride coprime with most sizes, so that
/// neighbours in time ask for different ids.
fn pick(bodies: &[String], n: u64) -> Option<&String> {
    if bodies.is_empty() {
        return None;
    }
    bodies.get((n.wrapping_mul(7919) % bodies.len() as u64) as usize)
}

pub async fn send(
    client: &reqwest::Client,
    url: &str,
    body: &str,
    authorization: Option<String>,
) -> Result<(), String> {
    let mut rb = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(auth) = authorization {
        rb = rb.header("authorization", auth);
    }
    let resp = rb
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| format!("reading the answer failed: {e}"))?;
    if !status.is_success() || has_errors(&bytes) {
        let text: String = String::from_utf8_lossy(&bytes).chars().take(300).collect();
        return Err(format!("{status}: {text}"));
    }
    Ok(())
}

/// Whether an answer holds GraphQL errors. A substring search, not a
/// byte-by-byte window: the load generator reads 50 answers of 85 KB in
/// turn, and the slow scan spread the clients' next requests over
/// milliseconds, which decided how many of them an identical request in
/// flight could still answer (and so each gateway's subgraph requests per
/// client request).
fn has_errors(answer: &[u8]) -> bool {
    memchr::memmem::find(answer, br#""errors""#).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_with_errors_are_told_from_answers_without() {
        assert!(has_errors(br#"{"data":null,"errors":[{"message":"x"}]}"#));
        assert!(!has_errors(br#"{"data":{"errorsSeen":1,"x":"no errors"}}"#));
    }

    fn result(latencies_us: Vec<u32>) -> LoadResult {
        LoadResult {
            latencies_us,
            ..LoadResult::default()
        }
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let r = result((1..=100).map(|i| i * 1000).collect());
        assert_eq!(r.p50_ms(), 50.0);
        assert_eq!(r.p99_ms(), 99.0);
        assert_eq!(r.quantile_ms(1.0), 100.0);
        assert_eq!(r.quantile_ms(0.0), 1.0);
        let one = result(vec![250]);
        assert_eq!(one.p50_ms(), 0.25);
        assert_eq!(one.p99_ms(), 0.25);
        assert!(result(Vec::new()).p50_ms().is_nan());
    }
}
