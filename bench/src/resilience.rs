//! `resilience`: the dataset subgraph behind a proxy that can make it hang
//! (connections accepted, requests swallowed). Three phases on a fresh
//! gateway each: healthy; hung with the breaker off (every query that
//! touches it waits its timeout); hung with the breaker on (after the
//! warm-up has opened it). Queries that touch the dataset subgraph and
//! queries that do not run side by side; their p50s are the figures.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use anyhow::Context;
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

use crate::{
    load::{self, Load, LoadResult},
    options::Options,
    stack::Stack,
};

/// Touches the dataset subgraph (a nullable stitched field).
pub const TOUCHING_QUERY: &str =
    "{ pipelines(limit: 10) { items { id dataCatalog { dataset { name } } } } }";
/// Only the pipeline subgraph.
pub const OTHER_QUERY: &str = "{ pipelines(limit: 10) { items { id name } } }";
/// The dataset subgraph's timeout in this scenario.
pub const TIMEOUT_MS: u64 = 1_000;
const CONNECTIONS: usize = 8;

pub struct Phase {
    pub name: &'static str,
    pub touching: LoadResult,
    pub other: LoadResult,
}

/// A TCP proxy that forwards, or swallows what clients send (`hang`).
struct HangProxy {
    port: u16,
    hang: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl HangProxy {
    async fn start(target: u16) -> anyhow::Result<HangProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind the proxy")?;
        let port = listener.local_addr()?.port();
        let hang = Arc::new(AtomicBool::new(false));
        let h = hang.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                    continue;
                };
                tokio::spawn(relay(client, server, h.clone()));
            }
        });
        Ok(HangProxy { port, hang, task })
    }
}

impl Drop for HangProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(client: TcpStream, server: TcpStream, hang: Arc<AtomicBool>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if !hang.load(Relaxed) && sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    let down = async {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
    };
    tokio::select! { _ = up => {}, _ = down => {} }
}

/// The config with the dataset subgraph behind the proxy, its timeout and
/// the breaker on or off.
fn config_with(original: &str, dataset_port: u16, proxy_port: u16, breaker: bool) -> String {
    let direct = format!("url = \"http://127.0.0.1:{dataset_port}/graphql\"");
    let mut out = String::new();
    let mut in_dataset = false;
    for line in original.lines() {
        if line.starts_with("[[subgraphs]]") || line.starts_with("[services") {
            if in_dataset {
                out.push_str(&format!("[subgraphs.breaker]\nenabled = {breaker}\n\n"));
            }
            in_dataset = false;
        }
        if line == "name = \"dataset\"" {
            in_dataset = true;
        }
        let line = if in_dataset && line == direct {
            format!("url = \"http://127.0.0.1:{proxy_port}/graphql\"")
        } else if in_dataset && line.starts_with("timeout_ms") {
            format!("timeout_ms = {TIMEOUT_MS}")
        } else {
            line.to_string()
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

pub async fn run(o: &Options, stack: &mut Stack) -> anyhow::Result<Vec<Phase>> {
    let original = std::fs::read_to_string(&stack.config)
        .with_context(|| format!("cannot read {}", stack.config.display()))?;
    let proxy = HangProxy::start(stack.dataset.port()).await?;
    let mut phases = Vec::new();
    let plan = [
        ("healthy", false, true),
        ("dataset hung, breaker off", true, false),
        (
            "dataset hung, breaker on (open after the warm-up)",
            true,
            true,
        ),
    ];
    let result = async {
        for (name, hang, breaker) in plan {
            let text = config_with(&original, stack.dataset.port(), proxy.port, breaker);
            std::fs::write(&stack.config, text)?;
            stack.restart_gateway().await?;
            proxy.hang.store(hang, Relaxed);
            let (touching, other) = measure(o, stack).await?;
            eprintln!(
                "bench: resilience `{name}`: p50 touching {:.1} ms, other {:.1} ms",
                touching.p50_ms(),
                other.p50_ms()
            );
            phases.push(Phase {
                name,
                touching,
                other,
            });
        }
        anyhow::Ok(())
    }
    .await;
    // The scenarios after this one see the stack as it was.
    proxy.hang.store(false, Relaxed);
    std::fs::write(&stack.config, original)?;
    stack.restart_gateway().await?;
    result.map(|()| phases)
}

/// Both queries at once, each on its own connections: a warm-up, then the
/// measured phase.
async fn measure(o: &Options, stack: &Stack) -> anyhow::Result<(LoadResult, LoadResult)> {
    let body = |q: &str| Arc::new(vec![json!({ "query": q }).to_string()]);
    let phase = |q: &str, duration: Duration| Load {
        url: stack.gateway.graphql(),
        connections: CONNECTIONS,
        duration,
        bodies: body(q),
        unique_auth: false,
    };
    // Long enough for the breaker to see its `min_requests` fail.
    let warmup = o.warmup.max(Duration::from_millis(3 * TIMEOUT_MS));
    let client = load::client(2 * CONNECTIONS)?;
    let (wt, wo) = (phase(TOUCHING_QUERY, warmup), phase(OTHER_QUERY, warmup));
    let (a, b) = tokio::join!(load::run(&client, &wt), load::run(&client, &wo));
    a?;
    b?;
    let (mt, mo) = (
        phase(TOUCHING_QUERY, o.duration),
        phase(OTHER_QUERY, o.duration),
    );
    let (touching, other) = tokio::join!(load::run(&client, &mt), load::run(&client, &mo));
    Ok((touching?, other?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_dataset_entry_changes() {
        let original = "[[subgraphs]]\nname = \"pipeline\"\nurl = \"http://127.0.0.1:1/graphql\"\ntimeout_ms = 10000\n\n[[subgraphs]]\nname = \"dataset\"\nurl = \"http://127.0.0.1:2/graphql\"\ntimeout_ms = 10000\n\n[services.pipeline]\nlisten = \"x\"\n";
        let text = super::config_with(original, 2, 9, false);
        assert_eq!(
            text,
            "[[subgraphs]]\nname = \"pipeline\"\nurl = \"http://127.0.0.1:1/graphql\"\ntimeout_ms = 10000\n\n[[subgraphs]]\nname = \"dataset\"\nurl = \"http://127.0.0.1:9/graphql\"\ntimeout_ms = 1000\n\n[subgraphs.breaker]\nenabled = false\n\n[services.pipeline]\nlisten = \"x\"\n"
        );
    }
}
