//! The whole system in-process: the three subgraphs and the real gateway,
//! configured through a real `config.toml` written to a temp directory and
//! the repository's stitching SDL files.

use std::{path::PathBuf, time::Duration};

use gateway::{GatewayError, RunningGateway};
use serde_json::Value;
use tokio::net::TcpListener;

use crate::stack::{Subgraphs, SubgraphsOptions};

/// The repository's own stitching SDL directory.
pub fn stitching_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../gateway/stitching")
}

/// The `[[subgraphs]]` entries of the repository's config, pointed at `subgraphs`.
pub fn subgraph_entries(subgraphs: &Subgraphs) -> String {
    let dir = stitching_dir();
    let entry = |name: &str, url: String, ws: String, hide: &str| {
        format!(
            "[[subgraphs]]\nname = \"{name}\"\nurl = \"{url}\"\nws_url = \"{ws}\"\ntimeout_ms = 3000\nstitching_files = [\"{}\"]\nhide = [{hide}]\npropagate_headers = [\"authorization\", \"x-forwarded-email\"]\n\n",
            dir.join(format!("{name}.graphql")).display()
        )
    };
    let mut s = String::new();
    s.push_str(&entry(
        "pipeline",
        subgraphs.pipeline_url(),
        subgraphs.pipeline_ws_url(),
        "\"Query.pipelinesByIds\"",
    ));
    s.push_str(&entry(
        "dataset",
        subgraphs.dataset_url(),
        subgraphs.dataset_ws_url(),
        "\"Query.datasetsByIds\", \"Mutation.recordDatasetProducer\", \"Subscription.datasetUpdated\"",
    ));
    s.push_str(&entry(
        "log",
        subgraphs.log_url(),
        subgraphs.log_ws_url(),
        "\"Query.pipelineLogs\", \"Query.pipelineLogPages\", \"Mutation.ingestLogs\", \"Subscription.logStream\"",
    ));
    s
}

/// Subgraphs + gateway. `stop().await` at the end of a test.
pub struct Platform {
    pub subgraphs: Subgraphs,
    pub gateway: RunningGateway,
    pub config_dir: tempfile::TempDir,
}

impl Platform {
    pub async fn start() -> Platform {
        Self::start_with(SubgraphsOptions::default(), "").await
    }

    /// `gateway_section` is inserted as the `[gateway]` table's body.
    pub async fn start_with(options: SubgraphsOptions, gateway_section: &str) -> Platform {
        let subgraphs = Subgraphs::start_with(options).await;
        let config_dir = tempfile::tempdir().expect("temp dir");
        let text = format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\nhot_reload = true\n{gateway_section}\n\n{}",
            subgraph_entries(&subgraphs)
        );
        let path = config_dir.path().join("config.toml");
        std::fs::write(&path, text).expect("write config");
        let gateway = start_gateway(&path).await.expect("gateway starts");
        Platform {
            subgraphs,
            gateway,
            config_dir,
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.config_dir.path().join("config.toml")
    }

    pub fn url(&self) -> String {
        self.gateway.url()
    }

    pub fn ws_url(&self) -> String {
        self.gateway.ws_url()
    }

    /// `/metrics` of the gateway.
    pub async fn metrics(&self) -> String {
        metrics_page(self.gateway.addr).await
    }

    /// `subgraph_requests_total{subgraph="NAME"}` from `/metrics`.
    pub async fn subgraph_requests(&self, name: &str) -> u64 {
        metric(
            &self.metrics().await,
            &format!("subgraph_requests_total{{subgraph=\"{name}\"}}"),
        )
    }

    /// A query through the gateway; the whole response.
    pub async fn query(&self, query: &str, variables: Value) -> Value {
        crate::client::gql(&self.url(), query, variables).await
    }

    pub async fn stop(self) {
        self.gateway.stop().await;
        self.subgraphs.stop().await;
    }
}

/// An operation of this name panics where the in-process test gateway
/// prepares it: a gateway bug on demand (HTTP 500, WebSocket close 4500).
/// Only the tests' hook does this; the gateway binary has no such hook.
pub const FAULT_OPERATION: &str = "__gatewayPanic";

/// Starts the gateway on an ephemeral port from a config file, with the
/// tests' fault hook.
pub async fn start_gateway(path: &std::path::Path) -> Result<RunningGateway, GatewayError> {
    let loaded = gateway::load(path)?;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hook: gateway::engine::PrepareHook = std::sync::Arc::new(|_, operation| {
        if operation == Some(FAULT_OPERATION) {
            panic!("fault injection: operation `{FAULT_OPERATION}`");
        }
    });
    gateway::start_on_with(loaded, listener, Some(hook)).await
}

/// Reads one sample of a Prometheus text page (0 when absent).
/// The `/metrics` page of a gateway or subgraph server at `addr`.
pub async fn metrics_page(addr: std::net::SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body")
}

pub fn metric(page: &str, sample: &str) -> u64 {
    page.lines()
        .find_map(|l| {
            l.strip_prefix(sample)
                .map(|v| v.trim().parse::<f64>().unwrap_or(0.0) as u64)
        })
        .unwrap_or(0)
}

/// Polls `f` until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A free loopback port for a child process to bind.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// `n` free loopback ports in a row, for a child process to bind later.
///
/// They come from below the kernel's ephemeral range (32768 up): a port
/// from `bind(0)` can be taken, between the probe and the child's bind, by
/// another test's outgoing connection or server. Ports are handed out once
/// per test process, from a random start, so two tests never get the same.
pub fn free_ports(n: u16) -> u16 {
    const LOW: u16 = 20_000;
    const HIGH: u16 = 32_000;
    static NEXT: std::sync::Mutex<u16> = std::sync::Mutex::new(0);
    let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if *next == 0 || *next + n > HIGH {
            *next = LOW + fastrand::u16(..6_000);
        }
        let base = *next;
        *next += n;
        if (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
}

/// Waits until the gateway at `addr` (`host:port`) answers `/ready` with 200:
/// its schema is built.
pub async fn wait_ready(addr: &str, within: Duration) {
    let url = format!("http://{addr}/ready");
    eventually(within, &format!("{url} ready"), || async {
        let r = reqwest::get(&url).await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await
}

/// Waits until a process on `port` answers `GET /health` with 200.
pub async fn wait_healthy(port: u16, within: Duration) {
    eventually(within, &format!("/health on port {port}"), || async {
        let r = reqwest::get(format!("http://127.0.0.1:{port}/health"))
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await
}
