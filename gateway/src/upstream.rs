//! What the gateway keeps across schema reloads for talking to subgraphs:
//! pooled keep-alive HTTP/1.1 and h2c clients, a cap on concurrent
//! requests per host, and the in-flight deduplication of identical
//! requests (subgraph queries; optionally whole client requests).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::Semaphore;

use crate::{config::BreakerConfig, resilience::SubgraphHealth};

/// A pooled client without TLS: the hot path to `http://` subgraphs skips
/// reqwest's layers (URL re-parsing, connector and client clones per
/// request); `https://` subgraphs go through reqwest.
pub type PlainClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<Bytes>,
>;

fn plain_client(http2: bool) -> PlainClient {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    let mut builder =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new());
    builder
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256);
    if http2 {
        // h2c with prior knowledge: one connection carries every request.
        builder.http2_only(true);
    }
    builder.build(connector)
}

/// A run in progress: its full key (hashes may collide) and its future.
type Running<V> = (Vec<u8>, Shared<BoxFuture<'static, V>>);

/// One shared future per key while it runs: identical concurrent callers
/// await the first one's result instead of doing the work again.
pub struct Inflight<V: Clone> {
    hasher: ahash::RandomState,
    running: Mutex<HashMap<u64, Vec<Running<V>>>>,
}

impl<V: Clone + Send + Sync + 'static> Default for Inflight<V> {
    fn default() -> Self {
        Inflight {
            hasher: ahash::RandomState::new(),
            running: Mutex::new(HashMap::new()),
        }
    }
}

impl<V: Clone + Send + Sync + 'static> Inflight<V> {
    /// Runs `work` unless an identical `key` is running; `true` with the
    /// value when it joined another caller's run.
    pub async fn run(&self, key: Vec<u8>, work: BoxFuture<'static, V>) -> (V, bool) {
        let hash = self.hasher.hash_one(&key);
        // The lock is held only to look up or register; never across an await.
        let (shared, joined) = {
            let mut running = match self.running.lock() {
                Ok(r) => r,
                Err(p) => p.into_inner(),
            };
            let slot = running.entry(hash).or_default();
            match slot.iter().find(|(k, _)| *k == key) {
                Some((_, f)) => (f.clone(), true),
                None => {
                    let f = work.shared();
                    slot.push((key.clone(), f.clone()));
                    (f, false)
                }
            }
        };
        if joined {
            return (shared.await, true);
        }
        // Removed when the run ends, or when its caller goes away mid-run:
        // a finished run must never answer a later request.
        let _entry = Entry {
            inflight: self,
            hash,
            key,
        };
        (shared.await, false)
    }

    fn remove(&self, hash: u64, key: &[u8]) {
        let mut running = match self.running.lock() {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        if let Some(slot) = running.get_mut(&hash) {
            slot.retain(|(k, _)| k.as_slice() != key);
            if slot.is_empty() {
                running.remove(&hash);
            }
        }
    }

    #[cfg(test)]
    fn running(&self) -> usize {
        self.running.lock().map(|r| r.len()).unwrap_or(0)
    }
}

/// A running entry of an `Inflight`, removed when dropped.
struct Entry<'a, V: Clone + Send + Sync + 'static> {
    inflight: &'a Inflight<V>,
    hash: u64,
    key: Vec<u8>,
}

impl<V: Clone + Send + Sync + 'static> Drop for Entry<'_, V> {
    fn drop(&mut self) {
        self.inflight.remove(self.hash, &self.key);
    }
}

/// Builds a dedup key from parts, each length-prefixed so that no two
/// different part lists give the same bytes.
pub fn key<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    for p in parts {
        out.extend_from_slice(&(p.len() as u64).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// A subgraph answer or why there is none, as deduplicated callers share it.
pub type FetchResult = Result<Bytes, stitching::execute::FetchError>;

/// Subgraph connections and in-flight work, shared by every engine.
pub struct Upstream {
    http1: PlainClient,
    http2: PlainClient,
    max_per_host: usize,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Identical subgraph queries in flight.
    pub fetches: Inflight<FetchResult>,
    /// Breaker, retry budget and reachability per subgraph name.
    health: Mutex<Vec<(String, Arc<SubgraphHealth>)>>,
}

impl Upstream {
    pub fn new(max_per_host: usize) -> Upstream {
        Upstream {
            http1: plain_client(false),
            http2: plain_client(true),
            max_per_host: max_per_host.max(1),
            hosts: Mutex::new(HashMap::new()),
            fetches: Inflight::default(),
            health: Mutex::new(Vec::new()),
        }
    }

    /// The standing of subgraph `name`, created on first use.
    pub fn health(&self, name: &str, cfg: &BreakerConfig) -> Arc<SubgraphHealth> {
        let mut all = match self.health.lock() {
            Ok(h) => h,
            Err(p) => p.into_inner(),
        };
        if let Some((_, h)) = all.iter().find(|(n, _)| n == name) {
            return h.clone();
        }
        let h = Arc::new(SubgraphHealth::new(cfg));
        all.push((name.to_owned(), h.clone()));
        h
    }

    /// Forgets subgraphs no longer configured (after a reload).
    pub fn retain_health(&self, names: &[&str]) {
        let mut all = match self.health.lock() {
            Ok(h) => h,
            Err(p) => p.into_inner(),
        };
        all.retain(|(n, _)| names.contains(&n.as_str()));
    }

    /// The pooled client for a subgraph (h2c or HTTP/1.1).
    pub fn client(&self, http2: bool) -> PlainClient {
        if http2 {
            self.http2.clone()
        } else {
            self.http1.clone()
        }
    }

    /// Bounds concurrent requests to one host (`host:port`).
    pub fn host_limit(&self, authority: &str) -> Arc<Semaphore> {
        let mut hosts = match self.hosts.lock() {
            Ok(h) => h,
            Err(p) => p.into_inner(),
        };
        hosts
            .entry(authority.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.max_per_host)))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn identical_keys_share_one_run_and_the_entry_goes_when_done() {
        let inflight: Arc<Inflight<u32>> = Arc::new(Inflight::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let rx = rx.shared();
        let work = |runs: Arc<AtomicUsize>, rx: Shared<tokio::sync::oneshot::Receiver<()>>| {
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                let _ = rx.await;
                7u32
            }
            .boxed()
        };
        let a = tokio::spawn({
            let (i, r, x) = (inflight.clone(), runs.clone(), rx.clone());
            async move { i.run(key([b"q".as_slice()]), work(r, x)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let b = tokio::spawn({
            let (i, r, x) = (inflight.clone(), runs.clone(), rx.clone());
            async move { i.run(key([b"q".as_slice()]), work(r, x)).await }
        });
        let c = tokio::spawn({
            let (i, r, x) = (inflight.clone(), runs.clone(), rx.clone());
            async move { i.run(key([b"other".as_slice()]), work(r, x)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = tx.send(());
        assert_eq!(a.await.unwrap(), (7, false));
        assert_eq!(b.await.unwrap(), (7, true));
        assert_eq!(c.await.unwrap(), (7, false));
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(inflight.running(), 0);
        // A leader that goes away mid-run takes its entry with it.
        let (_tx, never) = tokio::sync::oneshot::channel::<()>();
        let never = never.shared();
        let gone = tokio::spawn({
            let (i, r) = (inflight.clone(), runs.clone());
            async move { i.run(key([b"gone".as_slice()]), work(r, never)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(inflight.running(), 1);
        gone.abort();
        let _ = gone.await;
        assert_eq!(inflight.running(), 0);
        // Part boundaries count: ("ab", "c") is not ("a", "bc").
        assert_ne!(key([b"ab".as_slice(), b"c"]), key([b"a".as_slice(), b"bc"]));
    }
}
