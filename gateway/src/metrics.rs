//! Prometheus metrics of the gateway (through `telemetry::metrics`, the
//! `prometheus` crate): requests by operation type and outcome, latency,
//! per-subgraph requests, errors and latency, the plan cache, sockets and
//! subscriptions, reloads, process metrics and build info. What lives in
//! other structures (breakers, retry budgets, connections, upstream
//! sockets, plan cache size) is read at each scrape.

use std::{sync::Arc, time::Duration};

use apollo_compiler::ast::OperationType;
use telemetry::metrics::{
    counter, counter_vec, gauge, gauge_vec, latency_vec, render, Histogram, HistogramVec,
    IntCounter, IntCounterVec, IntGauge, Registry,
};

/// The `operation` label: each operation type, or `unknown` for a request
/// refused before its operation was known.
const OPERATIONS: [&str; 4] = ["query", "mutation", "subscription", "unknown"];
/// The `status` label: answered without errors, answered with errors, or
/// refused before execution.
const STATUSES: [&str; 3] = ["ok", "errors", "refused"];

fn operation_index(op: Option<OperationType>) -> usize {
    match op {
        Some(OperationType::Query) => 0,
        Some(OperationType::Mutation) => 1,
        Some(OperationType::Subscription) => 2,
        None => 3,
    }
}

/// How a GraphQL request ended, for `gateway_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestStatus {
    Ok,
    Errors,
    Refused,
}

/// One subgraph's handles, kept by the engines that call it.
pub struct SubgraphMetrics {
    pub requests: IntCounter,
    pub errors: IntCounter,
    /// Queries answered by an identical request already in flight.
    pub dedup_hits: IntCounter,
    latency: Histogram,
}

impl SubgraphMetrics {
    pub fn observe(&self, d: Duration) {
        self.latency.observe(d.as_secs_f64());
    }
}

/// The families of per-subgraph series, so a removed subgraph's leave.
struct SubgraphFamilies {
    requests: IntCounterVec,
    errors: IntCounterVec,
    dedup_hits: IntCounterVec,
    latency: HistogramVec,
}

/// Metrics of one gateway process. Subgraphs are keyed by name, so counts
/// survive a schema reload that keeps the subgraph.
pub struct Metrics {
    registry: Registry,
    /// By operation type, then status (see `OPERATIONS`, `STATUSES`;
    /// `unknown` has `refused` alone).
    requests: Vec<Vec<IntCounter>>,
    latency: Vec<Histogram>,
    /// Gateway bugs caught: panicked HTTP handlers and WebSocket operations.
    pub internal_errors: IntCounter,
    /// Client requests answered by an identical one in flight.
    pub dedup_hits: IntCounter,
    pub subscriptions_active: IntGauge,
    /// Client WebSocket connections open.
    pub websockets_open: IntGauge,
    reloads: IntCounterVec,
    pub plan_cache_hits: IntCounter,
    pub plan_cache_misses: IntCounter,
    /// Open, refused and timed-out client connections.
    pub connections: Arc<serve::ConnectionStats>,
    families: SubgraphFamilies,
    subgraphs: std::sync::RwLock<Vec<(String, Arc<SubgraphMetrics>)>>,
}

/// `gateway_requests_total` per operation type and outcome. An operation
/// not known yet can only have been refused.
fn request_counters(r: &Registry) -> Vec<Vec<IntCounter>> {
    let requests = counter_vec(
        r,
        "gateway_requests_total",
        "GraphQL requests answered, by operation type and outcome (ok, errors: answered with errors, refused: before execution).",
        &["operation", "status"],
    );
    OPERATIONS
        .iter()
        .map(|op| match *op {
            "unknown" => vec![requests.with_label_values(&[*op, "refused"])],
            _ => STATUSES
                .iter()
                .map(|s| requests.with_label_values(&[*op, *s]))
                .collect(),
        })
        .collect()
}

/// `gateway_request_duration_seconds` per operation type.
fn request_latencies(r: &Registry) -> Vec<Histogram> {
    let latency = latency_vec(
        r,
        "gateway_request_duration_seconds",
        "GraphQL request latency, by operation type.",
        &["operation"],
    );
    OPERATIONS
        .iter()
        .map(|op| latency.with_label_values(&[*op]))
        .collect()
}

impl SubgraphFamilies {
    fn register(r: &Registry) -> Self {
        SubgraphFamilies {
            requests: counter_vec(
                r,
                "subgraph_requests_total",
                "Requests sent to each subgraph.",
                &["subgraph"],
            ),
            errors: counter_vec(
                r,
                "subgraph_errors_total",
                "Failed requests to each subgraph (timeout, unreachable, bad answer).",
                &["subgraph"],
            ),
            dedup_hits: counter_vec(
                r,
                "subgraph_dedup_hits_total",
                "Subgraph queries not sent: an identical one was in flight and its answer shared.",
                &["subgraph"],
            ),
            latency: latency_vec(
                r,
                "subgraph_request_duration_seconds",
                "Latency of requests to each subgraph.",
                &["subgraph"],
            ),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let r = telemetry::metrics::registry("gateway");
        let families = SubgraphFamilies::register(&r);
        Metrics {
            requests: request_counters(&r),
            latency: request_latencies(&r),
            internal_errors: counter(
                &r,
                "gateway_internal_errors_total",
                "Gateway bugs caught (a panicked request or WebSocket operation).",
            ),
            dedup_hits: counter(
                &r,
                "gateway_dedup_hits_total",
                "Client requests answered by an identical one in flight (dedupe_client_requests).",
            ),
            subscriptions_active: gauge(
                &r,
                "gateway_subscriptions_active",
                "Open client subscriptions.",
            ),
            websockets_open: gauge(
                &r,
                "gateway_websockets_open",
                "Client WebSocket connections open.",
            ),
            reloads: counter_vec(
                &r,
                "gateway_schema_reloads_total",
                "Schema reloads (ok / failed).",
                &["result"],
            ),
            plan_cache_hits: counter(
                &r,
                "gateway_plan_cache_hits_total",
                "Operations whose plan was in the plan cache.",
            ),
            plan_cache_misses: counter(
                &r,
                "gateway_plan_cache_misses_total",
                "Operations parsed, validated and planned (not in the plan cache).",
            ),
            connections: Default::default(),
            families,
            subgraphs: Default::default(),
            registry: r,
        }
    }
}

impl Metrics {
    /// One GraphQL request answered.
    pub fn request(&self, op: Option<OperationType>, status: RequestStatus, took: Duration) {
        let i = operation_index(op);
        let s = match status {
            RequestStatus::Ok => 0,
            RequestStatus::Errors => 1,
            RequestStatus::Refused => 2,
        };
        let row = &self.requests[i];
        row[s.min(row.len() - 1)].inc();
        self.latency[i].observe(took.as_secs_f64());
    }

    pub fn reloaded(&self, ok: bool) {
        self.reloads
            .with_label_values(&[if ok { "ok" } else { "failed" }])
            .inc();
    }

    pub fn subgraph(&self, name: &str) -> Arc<SubgraphMetrics> {
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
        let f = &self.families;
        let m = Arc::new(SubgraphMetrics {
            requests: f.requests.with_label_values(&[name]),
            errors: f.errors.with_label_values(&[name]),
            dedup_hits: f.dedup_hits.with_label_values(&[name]),
            latency: f.latency.with_label_values(&[name]),
        });
        list.push((name.to_string(), m.clone()));
        m
    }

    /// After a reload: the series of subgraphs no longer served leave.
    pub fn retain_subgraphs(&self, names: &[&str]) {
        let mut list = match self.subgraphs.write() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        let f = &self.families;
        list.retain(|(name, _)| {
            let keep = names.contains(&name.as_str());
            if !keep {
                let _ = f.requests.remove_label_values(&[name]);
                let _ = f.errors.remove_label_values(&[name]);
                let _ = f.dedup_hits.remove_label_values(&[name]);
                let _ = f.latency.remove_label_values(&[name]);
            }
            keep
        });
    }

    /// The text exposition: the registry, then what is read at each
    /// scrape from `engine` and `upstream`.
    pub fn render(
        &self,
        engine: &crate::Engine,
        upstream: &crate::ws::upstream::Subscriptions,
    ) -> String {
        let scraped = telemetry::metrics::Registry::new();
        let c = &self.connections;
        let load = |v: &std::sync::atomic::AtomicU64| {
            i64::try_from(v.load(std::sync::atomic::Ordering::Relaxed)).unwrap_or(i64::MAX)
        };
        for (name, help, v) in [
            (
                "gateway_connections_open",
                "Client connections open (WebSockets included).",
                &c.open,
            ),
            (
                "gateway_upstream_sockets_open",
                "WebSockets open to subgraphs (each carries many subscriptions).",
                &upstream.sockets_open,
            ),
        ] {
            gauge(&scraped, name, help).set(load(v));
        }
        for (name, help, v) in [
            (
                "gateway_connections_refused_total",
                "Client connections refused at `max_connections`.",
                &c.refused,
            ),
            (
                "gateway_connections_timed_out_total",
                "Client connections closed for idling or for slow headers.",
                &c.timed_out,
            ),
        ] {
            counter(&scraped, name, help).inc_by(v.load(std::sync::atomic::Ordering::Relaxed));
        }
        gauge(
            &scraped,
            "gateway_upstream_subscriptions",
            "Distinct subscriptions open upstream (identical client subscriptions share one).",
        )
        .set(i64::try_from(upstream.live()).unwrap_or(i64::MAX));
        let (entries, weight) = engine.plan_cache_usage();
        gauge(
            &scraped,
            "gateway_plan_cache_entries",
            "Plans in the plan cache.",
        )
        .set(i64::try_from(entries).unwrap_or(i64::MAX));
        gauge(
            &scraped,
            "gateway_plan_cache_weight",
            "The plan cache's size in its unit (one per 4 KiB of document), against plan_cache_size.",
        )
        .set(i64::try_from(weight).unwrap_or(i64::MAX));
        resilience(&scraped, engine);
        render(&[&self.registry, &scraped])
    }
}

/// Circuit breaker state and transitions, retries and budget refusals.
fn resilience(r: &Registry, engine: &crate::Engine) {
    use crate::resilience::BreakerState;
    use std::sync::atomic::Ordering::Relaxed;
    let state = gauge_vec(
        r,
        "subgraph_circuit_state",
        "Circuit breaker per subgraph: 0 closed, 1 half-open, 2 open.",
        &["subgraph"],
    );
    let transitions = counter_vec(
        r,
        "subgraph_circuit_transitions_total",
        "Circuit breaker transitions per subgraph, by the state entered.",
        &["subgraph", "to"],
    );
    let rejected = counter_vec(
        r,
        "subgraph_circuit_rejected_total",
        "Requests not sent because the subgraph's breaker was open.",
        &["subgraph"],
    );
    let retries = counter_vec(
        r,
        "subgraph_retries_total",
        "Query retries sent to each subgraph.",
        &["subgraph"],
    );
    let exhausted = counter_vec(
        r,
        "subgraph_retry_budget_exhausted_total",
        "Retries not sent because the subgraph's retry budget was spent.",
        &["subgraph"],
    );
    for c in &engine.clients {
        let (name, h) = (c.name.as_str(), &c.policy.health);
        let v = match h.breaker.state() {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        };
        state.with_label_values(&[name]).set(v);
        for (to, n) in ["open", "half_open", "closed"]
            .iter()
            .zip(&h.breaker.transitions)
        {
            transitions
                .with_label_values(&[name, to])
                .inc_by(n.load(Relaxed));
        }
        rejected
            .with_label_values(&[name])
            .inc_by(h.breaker.rejected.load(Relaxed));
        retries
            .with_label_values(&[name])
            .inc_by(h.budget.retries.load(Relaxed));
        exhausted
            .with_label_values(&[name])
            .inc_by(h.budget.exhausted.load(Relaxed));
    }
}
