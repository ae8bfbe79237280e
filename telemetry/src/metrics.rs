//! Prometheus metrics of a process, through the `prometheus` crate: every
//! binary's registry holds the standard `process_*` metrics and its build
//! info; [`render`] writes registries in the text format Prometheus scrapes.
//!
//! Why `prometheus` and not `prometheus-client`: the latter writes only
//! OpenMetrics, whose counter families (`# TYPE x counter` over `x_total`
//! samples) `promtool check metrics` reports as metrics without help; and
//! a removed subgraph's series must leave on demand, which `metrics`'
//! exporter does not offer.

pub use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Latency buckets, in seconds: 0.5 ms to 5 s.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// A registry with `process_*` (CPU, memory, file descriptors, threads,
/// start time) and `<prefix>_build_info{version}`.
pub fn registry(prefix: &str) -> Registry {
    let registry = Registry::new();
    // Both fail only on a name registered twice, which a new registry has not.
    let _ = registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ));
    let info = IntGaugeVec::new(
        Opts::new(
            format!("{prefix}_build_info"),
            "The running build: always 1, with its version.",
        ),
        &["version"],
    );
    if let Ok(info) = info {
        info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let _ = registry.register(Box::new(info));
    }
    registry
}

/// Registers `metric` in `registry` and hands it back. Names are fixed in
/// the code, so a failure is a bug in it: reported, never a panic.
pub fn register<M>(registry: &Registry, metric: Result<M, prometheus::Error>) -> Option<M>
where
    M: prometheus::core::Collector + Clone + 'static,
{
    match metric.and_then(|m| registry.register(Box::new(m.clone())).map(|()| m)) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::error!(error = %e, "a metric could not be registered");
            None
        }
    }
}

pub fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(registry, IntCounter::new(name, help))
        .unwrap_or_else(|| IntCounter::new("unregistered", "-").unwrap_or_else(|_| unreachable!()))
}

pub fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(registry, IntGauge::new(name, help))
        .unwrap_or_else(|| IntGauge::new("unregistered", "-").unwrap_or_else(|_| unreachable!()))
}

pub fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(registry, IntCounterVec::new(Opts::new(name, help), labels)).unwrap_or_else(|| {
        IntCounterVec::new(Opts::new("unregistered", "-"), labels)
            .unwrap_or_else(|_| unreachable!())
    })
}

pub fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(registry, IntGaugeVec::new(Opts::new(name, help), labels)).unwrap_or_else(|| {
        IntGaugeVec::new(Opts::new("unregistered", "-"), labels).unwrap_or_else(|_| unreachable!())
    })
}

pub fn latency_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = || HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    register(registry, HistogramVec::new(opts(), labels)).unwrap_or_else(|| {
        HistogramVec::new(HistogramOpts::new("unregistered", "-"), labels)
            .unwrap_or_else(|_| unreachable!())
    })
}

/// The text exposition of `registries`, in order.
pub fn render(registries: &[&Registry]) -> String {
    let families: Vec<_> = registries.iter().flat_map(|r| r.gather()).collect();
    prometheus::TextEncoder::new()
        .encode_to_string(&families)
        .unwrap_or_else(|e| format!("# the metrics could not be written: {e}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_has_process_metrics_and_build_info() {
        let r = registry("svc");
        let c = counter_vec(&r, "svc_things_total", "Things.", &["kind"]);
        c.with_label_values(&["a"]).inc_by(3);
        c.with_label_values(&["b"]).inc();
        c.remove_label_values(&["b"]).unwrap();
        let text = render(&[&r]);
        assert!(text.contains("svc_things_total{kind=\"a\"} 3"), "{text}");
        assert!(!text.contains("kind=\"b\""), "{text}");
        assert!(
            text.contains(&format!(
                "svc_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        assert!(text.contains("process_cpu_seconds_total "), "{text}");
        // A name taken twice is reported, not a panic.
        let again = counter(&r, "svc_things_total", "Again.");
        again.inc();
        assert!(!render(&[&r]).contains("unregistered"));
    }
}
