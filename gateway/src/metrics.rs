//! Prometheus metrics: per-subgraph request counts, errors and latency
//! histograms, and the gateway's own requests. Lock-free counters; the text
//! format is written on `GET /metrics`.

use std::{
    fmt::Write,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}",
                self.buckets[i].load(Relaxed)
            );
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}",
            self.sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

#[derive(Default)]
pub struct SubgraphMetrics {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    /// Queries answered by an identical request already in flight.
    pub dedup_hits: AtomicU64,
    pub latency: Histogram,
}

/// Metrics of one gateway process. Subgraphs are keyed by name so counts
/// survive a schema reload.
#[derive(Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub request_errors: AtomicU64,
    /// Gateway bugs caught: panicked HTTP handlers and WebSocket operations.
    pub internal_errors: AtomicU64,
    pub latency: Histogram,
    pub subscriptions_active: AtomicU64,
    /// Client WebSocket connections open.
    pub websockets_open: AtomicU64,
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
    /// Client requests answered by an identical one in flight.
    pub dedup_hits: AtomicU64,
    /// Open, refused and timed-out client connections.
    pub connections: std::sync::Arc<serve::ConnectionStats>,
    subgraphs: std::sync::RwLock<Vec<(String, std::sync::Arc<SubgraphMetrics>)>>,
}

impl Metrics {
    pub fn subgraph(&self, name: &str) -> std::sync::Arc<SubgraphMetrics> {
        if let Ok(list) = self.subgraphs.read() {
            if let Some((_, m)) = list.iter().find(|(n, _)| n == name) {
                return m.clone();
            }
        }
        let mut list = match self.subgraphs.write() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        if let Some((_, m)) = list.iter().find(|(n, _)| n == name) {
            return m.clone();
        }
        let m = std::sync::Arc::new(SubgraphMetrics::default());
        list.push((name.to_string(), m.clone()));
        m
    }

    /// The text exposition; breaker and retry figures for the subgraphs
    /// `engine` serves (a removed subgraph's go with it).
    pub fn render(
        &self,
        engine: &crate::Engine,
        upstream: &crate::ws::upstream::Subscriptions,
    ) -> String {
        let mut out = String::with_capacity(4096);
        let value = |out: &mut String, name, help, kind, v: &AtomicU64| {
            header(out, name, help, kind);
            let _ = writeln!(out, "{name} {}", v.load(Relaxed));
        };
        for (name, help, v) in [
            (
                "gateway_requests_total",
                "GraphQL requests received.",
                &self.requests,
            ),
            (
                "gateway_request_errors_total",
                "Requests refused before execution.",
                &self.request_errors,
            ),
            (
                "gateway_internal_errors_total",
                "Gateway bugs caught (a panicked request or WebSocket operation).",
                &self.internal_errors,
            ),
            (
                "gateway_dedup_hits_total",
                "Client requests answered by an identical one in flight (dedupe_client_requests).",
                &self.dedup_hits,
            ),
        ] {
            value(&mut out, name, help, "counter", v);
        }
        header(
            &mut out,
            "gateway_request_duration_seconds",
            "Request latency.",
            "histogram",
        );
        self.latency
            .write(&mut out, "gateway_request_duration_seconds", "");
        let c = &self.connections;
        for (name, help, kind, v) in [
            (
                "gateway_connections_open",
                "Client connections open (WebSockets included).",
                "gauge",
                &c.open,
            ),
            (
                "gateway_connections_refused_total",
                "Client connections refused at `max_connections`.",
                "counter",
                &c.refused,
            ),
            (
                "gateway_connections_timed_out_total",
                "Client connections closed for idling or for slow headers.",
                "counter",
                &c.timed_out,
            ),
        ] {
            value(&mut out, name, help, kind, v);
        }
        value(
            &mut out,
            "gateway_subscriptions_active",
            "Open client subscriptions.",
            "gauge",
            &self.subscriptions_active,
        );
        value(
            &mut out,
            "gateway_websockets_open",
            "Client WebSocket connections open.",
            "gauge",
            &self.websockets_open,
        );
        value(
            &mut out,
            "gateway_upstream_sockets_open",
            "WebSockets open to subgraphs (each carries many subscriptions).",
            "gauge",
            &upstream.sockets_open,
        );
        header(
            &mut out,
            "gateway_upstream_subscriptions",
            "Distinct subscriptions open upstream (identical client subscriptions share one).",
            "gauge",
        );
        let _ = writeln!(out, "gateway_upstream_subscriptions {}", upstream.live());
        header(
            &mut out,
            "gateway_schema_reloads_total",
            "Schema reloads (ok / failed).",
            "counter",
        );
        for (result, v) in [("ok", &self.reloads), ("failed", &self.reload_failures)] {
            let _ = writeln!(
                out,
                "gateway_schema_reloads_total{{result=\"{result}\"}} {}",
                v.load(Relaxed)
            );
        }
        let all = match self.subgraphs.read() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        // Counts survive a reload (kept by name), but only the subgraphs
        // the current schema serves are shown: a removed one leaves.
        let list: Vec<&(String, std::sync::Arc<SubgraphMetrics>)> = all
            .iter()
            .filter(|(name, _)| engine.clients.iter().any(|c| &c.name == name))
            .collect();
        for (metric, help, v) in [
            (
                "subgraph_requests_total",
                "Requests sent to each subgraph.",
                (|m| &m.requests) as fn(&SubgraphMetrics) -> &AtomicU64,
            ),
            (
                "subgraph_errors_total",
                "Failed requests to each subgraph (timeout, unreachable, bad answer).",
                |m| &m.errors,
            ),
            (
                "subgraph_dedup_hits_total",
                "Subgraph queries not sent: an identical one was in flight and its answer shared.",
                |m| &m.dedup_hits,
            ),
        ] {
            header(&mut out, metric, help, "counter");
            for (name, m) in list.iter() {
                let _ = writeln!(
                    out,
                    "{metric}{{subgraph=\"{name}\"}} {}",
                    v(m).load(Relaxed)
                );
            }
        }
        header(
            &mut out,
            "subgraph_request_duration_seconds",
            "Latency of requests to each subgraph.",
            "histogram",
        );
        for (name, m) in list.iter() {
            m.latency.write(
                &mut out,
                "subgraph_request_duration_seconds",
                &format!("subgraph=\"{name}\""),
            );
        }
        resilience(&mut out, engine);
        out
    }
}

/// The `# HELP` and `# TYPE` lines of one metric.
fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Circuit breaker state and transitions, retries and budget refusals.
fn resilience(out: &mut String, engine: &crate::Engine) {
    use crate::resilience::BreakerState;
    let health = || engine.clients.iter().map(|c| (&c.name, &c.policy.health));
    header(
        out,
        "subgraph_circuit_state",
        "Circuit breaker per subgraph: 0 closed, 1 half-open, 2 open.",
        "gauge",
    );
    for (name, h) in health() {
        let v = match h.breaker.state() {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        };
        let _ = writeln!(out, "subgraph_circuit_state{{subgraph=\"{name}\"}} {v}");
    }
    header(
        out,
        "subgraph_circuit_transitions_total",
        "Circuit breaker transitions per subgraph, by the state entered.",
        "counter",
    );
    for (name, h) in health() {
        for (to, v) in ["open", "half_open", "closed"]
            .iter()
            .zip(&h.breaker.transitions)
        {
            let _ = writeln!(
                out,
                "subgraph_circuit_transitions_total{{subgraph=\"{name}\",to=\"{to}\"}} {}",
                v.load(Relaxed)
            );
        }
    }
    for (metric, help, v) in [
        (
            "subgraph_circuit_rejected_total",
            "Requests not sent because the subgraph's breaker was open.",
            (|h| &h.breaker.rejected) as fn(&crate::resilience::SubgraphHealth) -> &AtomicU64,
        ),
        (
            "subgraph_retries_total",
            "Query retries sent to each subgraph.",
            |h| &h.budget.retries,
        ),
        (
            "subgraph_retry_budget_exhausted_total",
            "Retries not sent because the subgraph's retry budget was spent.",
            |h| &h.budget.exhausted,
        ),
    ] {
        header(out, metric, help, "counter");
        for (name, h) in health() {
            let _ = writeln!(
                out,
                "{metric}{{subgraph=\"{name}\"}} {}",
                v(h).load(Relaxed)
            );
        }
    }
}
