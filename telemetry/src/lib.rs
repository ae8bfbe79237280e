//! Logs and traces of every binary here. One `tracing` subscriber: log
//! lines on stderr (JSON with `LOG_FORMAT=json`), and, when an OTLP
//! endpoint is configured, spans exported over OTLP (gRPC or HTTP/protobuf).
//! W3C `traceparent` comes in with requests and goes out to subgraphs, so a
//! trace spans the gateway and the services it calls.

pub mod metrics;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use opentelemetry::{
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::TracerProvider as _,
    KeyValue,
};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::{
    propagation::TraceContextPropagator,
    trace::{Sampler, SdkTracerProvider},
    Resource,
};
use serde::Deserialize;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    filter::filter_fn, layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer,
};

/// `[gateway.telemetry]` / `[services.telemetry]`. Unset values come from
/// the standard `OTEL_*` variables.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Where traces go: `http://collector:4317` (gRPC) or
    /// `http://collector:4318` (HTTP, `/v1/traces` added). Unset:
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, then `OTEL_EXPORTER_OTLP_ENDPOINT`;
    /// none of them: no traces.
    pub otlp_endpoint: Option<String>,
    /// `grpc` or `http/protobuf`; unset: `OTEL_EXPORTER_OTLP_PROTOCOL`, else `grpc`.
    pub otlp_protocol: Option<String>,
    /// `service.name`; unset: `OTEL_SERVICE_NAME`, else the binary's name.
    pub service_name: Option<String>,
    /// Fraction of new traces kept (a caller's sampled flag is followed);
    /// unset: 1.
    pub sample_ratio: Option<f64>,
}

/// Whether spans are exported: the work of making trace context is
/// skipped otherwise.
static EXPORTING: AtomicBool = AtomicBool::new(false);

pub fn exporting() -> bool {
    EXPORTING.load(Relaxed)
}

/// Keeps the exporter; dropping it sends the spans still queued.
#[must_use = "dropping it stops the export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Installs the process's subscriber. Must run inside a Tokio runtime
/// (the gRPC exporter's connection lives on it). A second call (tests
/// running several services in one process) keeps the first subscriber.
pub fn init(binary: &str, config: &TelemetryConfig) -> Result<Telemetry, String> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Logs go to stderr, coloured only on a terminal; JSON lines on request.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = if env("LOG_FORMAT").as_deref() == Some("json") {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            // A log write that fails (a closed pipe) is dropped, never
            // reported with `eprintln!`, which would panic.
            .log_internal_errors(false)
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .log_internal_errors(false)
            .with_filter(filter)
            .boxed()
    };
    let provider = provider(binary, config)?;
    let otel = provider.as_ref().map(|p| {
        let tracer = p.tracer(binary.to_owned());
        // Spans down to debug (the stages and subgraph calls), events
        // from info: a span nobody exports is never made.
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(filter_fn(|m| {
                if m.is_span() {
                    *m.level() <= tracing::Level::DEBUG
                } else {
                    *m.level() <= tracing::Level::INFO
                }
            }))
    });
    let installed = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init()
        .is_ok();
    if installed && provider.is_some() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        EXPORTING.store(true, Relaxed);
    }
    Ok(Telemetry { provider })
}

/// The exporter the config and environment ask for, if any.
fn provider(binary: &str, config: &TelemetryConfig) -> Result<Option<SdkTracerProvider>, String> {
    let Some(endpoint) = config
        .otlp_endpoint
        .clone()
        .or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"))
    else {
        return Ok(None);
    };
    let protocol = config
        .otlp_protocol
        .clone()
        .or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
        .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "grpc".into());
    let exporter = match protocol.as_str() {
        "grpc" => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build(),
        "http/protobuf" => {
            let url = if endpoint.ends_with("/v1/traces") {
                endpoint.clone()
            } else {
                format!("{}/v1/traces", endpoint.trim_end_matches('/'))
            };
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(url)
                .build()
        }
        other => {
            return Err(format!(
                "telemetry: `otlp_protocol` (or OTEL_EXPORTER_OTLP_PROTOCOL) is `{other}`; use `grpc` or `http/protobuf`"
            ))
        }
    }
    .map_err(|e| format!("telemetry: cannot export traces to `{endpoint}` over {protocol}: {e}"))?;
    let name = config
        .service_name
        .clone()
        .or_else(|| env("OTEL_SERVICE_NAME"))
        .unwrap_or_else(|| binary.to_owned());
    let ratio = config.sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&ratio) {
        return Err(format!(
            "telemetry: `sample_ratio` is {ratio}; give a fraction from 0 to 1"
        ));
    }
    let resource = Resource::builder()
        .with_service_name(name)
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                ratio,
            ))))
            .with_resource(resource)
            .build(),
    ))
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(k, v);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Adds `span`'s W3C trace context (`traceparent`, `tracestate`) to an
/// outgoing request.
pub fn inject(span: &tracing::Span, headers: &mut http::HeaderMap) {
    if !exporting() {
        return;
    }
    TraceContextPropagator::new().inject_context(&span.context(), &mut HeaderInjector(headers));
}

/// Makes `span` continue the trace of an incoming request's `traceparent`.
pub fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    if !exporting() || !headers.contains_key("traceparent") {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let _ = span.set_parent(parent);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(config: TelemetryConfig) -> String {
        match provider("test", &config) {
            Ok(_) => panic!("accepted {config:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn bad_settings_are_named_and_no_endpoint_means_no_export() {
        let endpoint = Some("http://127.0.0.1:9".to_string());
        let e = refused(TelemetryConfig {
            otlp_endpoint: endpoint.clone(),
            otlp_protocol: Some("udp".into()),
            ..Default::default()
        });
        assert!(e.contains("`udp`; use `grpc` or `http/protobuf`"), "{e}");
        let e = refused(TelemetryConfig {
            otlp_endpoint: endpoint,
            otlp_protocol: Some("http/protobuf".into()),
            sample_ratio: Some(2.0),
            ..Default::default()
        });
        assert!(e.contains("`sample_ratio` is 2"), "{e}");
        if env("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
            && env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
        {
            assert!(provider("test", &TelemetryConfig::default()).is_ok_and(|p| p.is_none()));
        }
    }
}
