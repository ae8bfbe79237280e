//! `subscriptions`: many `graphql-transport-ws` subscriptions to the live
//! log of a few runs, one connection each, while lines are ingested straight
//! into the log subgraph. Every line carries its sequence number, so each
//! subscriber checks that it saw every line of its run, once, in order.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::{net::TcpStream, sync::Semaphore};
use tokio_tungstenite::{
    tungstenite::{client::IntoClientRequest, http::HeaderValue, Message},
    MaybeTlsStream, WebSocketStream,
};

use crate::{gql, options::Options, procstat, stack::Stack};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Subscriptions being set up at once.
const CONNECTING: usize = 50;
/// Lines per `ingestLogs` call while emitting.
const EMIT_BATCH: usize = 20;

const GATEWAY_SUBSCRIPTION: &str =
    "subscription($id: ID!) { pipelineLogs(id: $id) { id message } }";
const LOG_SUBSCRIPTION: &str =
    "subscription($id: ID!) { logStream(pipelineId: $id) { id message } }";

/// Where the subscriptions go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Gateway,
    /// The log subgraph's own `logStream`, for comparison.
    LogSubgraph,
}

#[derive(Clone, Debug)]
pub struct Subs {
    pub via: Via,
    pub subscriptions: usize,
    pub runs: usize,
    pub lines_per_run: usize,
    pub connected: usize,
    pub connect_secs: f64,
    /// `gateway_subscriptions_active` once connected (gateway only).
    pub active_metric: Option<f64>,
    /// Gateway only: its WebSockets to the log subgraph, and the distinct
    /// subscriptions on them, once connected.
    pub upstream: Option<(f64, f64)>,
    pub expected_events: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub emit_secs: f64,
    pub delivery_secs: f64,
    /// The gateway's VmRSS with every subscription open, before lines flow.
    pub rss_subscribed_kib: u64,
    /// The gateway's VmHWM over the scenario.
    pub peak_rss_kib: u64,
    pub peak_reset: bool,
    pub cpu_us_per_event: f64,
    pub errors: Vec<String>,
}

impl Subs {
    pub fn events_per_sec(&self) -> f64 {
        self.delivered as f64 / self.delivery_secs.max(1e-9)
    }
}

pub enum Outcome {
    /// The gateway refused every subscription: the error, and the same
    /// scenario straight against the log subgraph (to show the harness works).
    Blocked {
        error: String,
        direct: Option<Result<Subs, String>>,
    },
    Done(Subs),
}

pub async fn run(o: &Options, stack: &Stack) -> Outcome {
    match scenario(o, stack, Via::Gateway, "gw").await {
        Ok(s) if s.connected > 0 => Outcome::Done(s),
        Ok(s) => Outcome::Blocked {
            error: s
                .errors
                .first()
                .cloned()
                .unwrap_or_else(|| "no subscription connected".into()),
            direct: Some(
                scenario(o, stack, Via::LogSubgraph, "direct")
                    .await
                    .map_err(|e| format!("{e:#}")),
            ),
        },
        Err(e) => Outcome::Blocked {
            error: format!("{e:#}"),
            direct: None,
        },
    }
}

/// What one subscriber saw.
#[derive(Default)]
struct Seen {
    delivered: u64,
    lost: u64,
    duplicates: u64,
    out_of_order: u64,
    last_event: Option<Instant>,
    error: Option<String>,
}

async fn scenario(o: &Options, stack: &Stack, via: Via, tag: &str) -> anyhow::Result<Subs> {
    let (ws_url, query) = match via {
        Via::Gateway => (stack.gateway.ws(), GATEWAY_SUBSCRIPTION),
        Via::LogSubgraph => (stack.log.ws(), LOG_SUBSCRIPTION),
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let run_ids: Vec<String> = (0..o.sub_runs)
        .map(|r| format!("bench-live-{tag}-{stamp}-{r}"))
        .collect();
    let gw = stack.gateway.pid;
    let peak_reset = procstat::reset_peak(gw);

    let started = Instant::now();
    let (subscribers, ready_rx) = Subscribers::spawn(o, &ws_url, query, &run_ids);
    let (connected, mut errors) = connected(ready_rx, o.subscriptions).await;
    let connect_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "bench: {connected} of {} subscriptions open ({via:?}) in {connect_secs:.1} s",
        o.subscriptions
    );
    if connected == 0 {
        subscribers.abandon().await;
        return Ok(empty(o, via, errors, peak_reset));
    }
    let (active_metric, upstream) = upstream_state(stack, via, connected).await?;
    let rss_subscribed_kib = procstat::status(gw)?.rss_kib;
    let cpu_before = procstat::cpu_secs(gw)?;

    // Emit: every run's lines in order, the runs concurrently.
    let emit_started = Instant::now();
    let http = gql::client(o.sub_runs)?;
    let log_url = stack.log.graphql();
    let emitters = run_ids
        .iter()
        .map(|run_id| emit(&http, &log_url, run_id, o.sub_lines));
    let emitted = futures::future::join_all(emitters).await;
    let emit_secs = emit_started.elapsed().as_secs_f64();
    if let Some(Err(e)) = emitted.into_iter().find(|r| r.is_err()) {
        errors.push(format!("emitting lines failed: {e:#}"));
    }

    subscribers.drain(Duration::from_secs(30)).await;
    let cpu_after = procstat::cpu_secs(gw)?;
    let peak_rss_kib = procstat::status(gw)?.hwm_kib.max(rss_subscribed_kib);
    subscribers.stop();
    let (total, last) = subscribers.collect(&mut errors, emit_started).await?;
    let expected_events = (connected * o.sub_lines) as u64;
    // Lines never seen at the end count as lost too.
    let lost = expected_events
        .saturating_sub(total.delivered)
        .max(total.lost);
    Ok(Subs {
        via,
        subscriptions: o.subscriptions,
        runs: run_ids.len(),
        lines_per_run: o.sub_lines,
        connected,
        connect_secs,
        active_metric,
        upstream,
        expected_events,
        delivered: total.delivered,
        lost,
        duplicates: total.duplicates,
        out_of_order: total.out_of_order,
        emit_secs,
        delivery_secs: last.duration_since(emit_started).as_secs_f64(),
        rss_subscribed_kib,
        peak_rss_kib,
        peak_reset,
        cpu_us_per_event: (cpu_after - cpu_before) * 1e6 / total.delivered.max(1) as f64,
        errors,
    })
}

/// The subscriber tasks, each counting what it receives.
struct Subscribers {
    tasks: Vec<tokio::task::JoinHandle<Seen>>,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
}

impl Subscribers {
    /// One task per subscription, `CONNECTING` connecting at a time; each
    /// says on the channel whether it subscribed.
    fn spawn(
        o: &Options,
        ws_url: &str,
        query: &'static str,
        run_ids: &[String],
    ) -> (Self, tokio::sync::mpsc::Receiver<Result<(), String>>) {
        let gate = Arc::new(Semaphore::new(CONNECTING));
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let (ready_tx, ready_rx) =
            tokio::sync::mpsc::channel::<Result<(), String>>(o.subscriptions);
        let mut tasks = Vec::with_capacity(o.subscriptions);
        for i in 0..o.subscriptions {
            let run_id = run_ids[i % run_ids.len()].clone();
            let (gate, stop, done, ready, url) = (
                gate.clone(),
                stop.clone(),
                done.clone(),
                ready_tx.clone(),
                ws_url.to_string(),
            );
            let lines = o.sub_lines as u64;
            tasks.push(tokio::spawn(async move {
                let ws = {
                    let _permit = gate.acquire().await;
                    subscribe(&url, query, &run_id).await
                };
                match ws {
                    Ok(ws) => {
                        let _ = ready.send(Ok(())).await;
                        receive(ws, lines, &stop, &done).await
                    }
                    Err(e) => {
                        done.fetch_add(1, Ordering::Relaxed);
                        let error = format!("{e:#}");
                        let _ = ready.send(Err(error.clone())).await;
                        Seen {
                            error: Some(error),
                            ..Seen::default()
                        }
                    }
                }
            }));
        }
        (Subscribers { tasks, stop, done }, ready_rx)
    }

    /// Waits (at most `limit`) until every subscriber has every line.
    async fn drain(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.done.load(Ordering::Relaxed) < self.tasks.len() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Stops every subscriber and waits for them, keeping nothing they saw.
    async fn abandon(self) {
        self.stop();
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// What every subscriber saw, added up, and when the last event came
    /// (`since` if none did); up to five errors join `errors`.
    async fn collect(
        self,
        errors: &mut Vec<String>,
        since: Instant,
    ) -> anyhow::Result<(Seen, Instant)> {
        let mut total = Seen::default();
        let mut last = since;
        for t in self.tasks {
            let seen = t.await.context("a subscriber panicked")?;
            total.delivered += seen.delivered;
            total.lost += seen.lost;
            total.duplicates += seen.duplicates;
            total.out_of_order += seen.out_of_order;
            if let Some(at) = seen.last_event {
                last = last.max(at);
            }
            if let Some(e) = seen.error {
                if errors.len() < 5 {
                    errors.push(e);
                }
            }
        }
        Ok((total, last))
    }
}

/// How many of `n` subscribers subscribed within two minutes, and up to
/// five of the errors of the others.
async fn connected(
    mut ready_rx: tokio::sync::mpsc::Receiver<Result<(), String>>,
    n: usize,
) -> (usize, Vec<String>) {
    let mut connected = 0;
    let mut errors = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    for _ in 0..n {
        let Ok(Some(r)) = tokio::time::timeout_at(deadline, ready_rx.recv()).await else {
            break;
        };
        match r {
            Ok(()) => connected += 1,
            Err(e) if errors.len() < 5 => errors.push(e),
            Err(_) => {}
        }
    }
    (connected, errors)
}

/// Through the gateway: waits (at most 10 s) until its metrics show every
/// subscription open, then reads its upstream sockets and subscriptions.
/// Lines sent before that are replayed anyway: a stream starts with the
/// stored lines.
async fn upstream_state(
    stack: &Stack,
    via: Via,
    connected: usize,
) -> anyhow::Result<(Option<f64>, Option<(f64, f64)>)> {
    let metrics_client = gql::client(2)?;
    let page = stack.gateway.metrics();
    let mut active_metric = None;
    if via == Via::Gateway {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            active_metric =
                gql::metric(&metrics_client, &page, "gateway_subscriptions_active").await?;
            if active_metric.unwrap_or(0.0) >= connected as f64 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut upstream = None;
    if via == Via::Gateway {
        let sockets = gql::metric(&metrics_client, &page, "gateway_upstream_sockets_open").await?;
        let subs = gql::metric(&metrics_client, &page, "gateway_upstream_subscriptions").await?;
        upstream = sockets.zip(subs);
    }
    Ok((active_metric, upstream))
}

fn empty(o: &Options, via: Via, errors: Vec<String>, peak_reset: bool) -> Subs {
    Subs {
        via,
        subscriptions: o.subscriptions,
        runs: o.sub_runs,
        lines_per_run: o.sub_lines,
        connected: 0,
        connect_secs: 0.0,
        active_metric: None,
        upstream: None,
        expected_events: 0,
        delivered: 0,
        lost: 0,
        duplicates: 0,
        out_of_order: 0,
        emit_secs: 0.0,
        delivery_secs: 0.0,
        rss_subscribed_kib: 0,
        peak_rss_kib: 0,
        peak_reset,
        cpu_us_per_event: 0.0,
        errors,
    }
}

async fn emit(
    http: &reqwest::Client,
    log_url: &str,
    run_id: &str,
    lines: usize,
) -> anyhow::Result<()> {
    let ingest = "mutation($entries: [LogEntryInput!]!) { ingestLogs(entries: $entries) }";
    let mut seq = 0;
    while seq < lines {
        let end = (seq + EMIT_BATCH).min(lines);
        let entries: Vec<Value> = (seq..end)
            .map(|s| json!({ "pipelineId": run_id, "level": "INFO", "message": format!("line {s}"), "node": "bench" }))
            .collect();
        gql::query(http, log_url, ingest, json!({ "entries": entries })).await?;
        seq = end;
    }
    Ok(())
}

async fn send_json(ws: &mut Ws, v: Value) -> anyhow::Result<()> {
    ws.send(Message::text(v.to_string()))
        .await
        .context("WebSocket send failed")
}

/// Connects with `graphql-transport-ws`, waits for `connection_ack`, subscribes.
async fn subscribe(url: &str, query: &str, run_id: &str) -> anyhow::Result<Ws> {
    let mut request = url
        .into_client_request()
        .with_context(|| format!("bad WebSocket URL {url}"))?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .with_context(|| format!("WebSocket connect to {url} timed out"))?
    .with_context(|| format!("WebSocket connect to {url} failed"))?;
    send_json(&mut ws, json!({ "type": "connection_init", "payload": {} })).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .context("no connection_ack within 10 s")?;
        let text = match msg {
            None => bail!("{url} closed before connection_ack"),
            Some(Err(e)) => bail!("{url}: {e}"),
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(c))) => bail!("{url} closed before connection_ack: {c:?}"),
            Some(Ok(_)) => continue,
        };
        let v: Value =
            serde_json::from_str(text.as_str()).context("a WebSocket message is not JSON")?;
        match v["type"].as_str() {
            Some("connection_ack") => break,
            Some("ping") => send_json(&mut ws, json!({ "type": "pong" })).await?,
            Some("pong") | Some("ka") => {}
            _ => bail!("expected connection_ack, got {}", gql::short(&v)),
        }
    }
    send_json(
        &mut ws,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": query, "variables": { "id": run_id } } }),
    )
    .await?;
    Ok(ws)
}

/// Reads events until all `lines` arrived, the stream ends, or `stop`.
async fn receive(mut ws: Ws, lines: u64, stop: &AtomicBool, done: &AtomicUsize) -> Seen {
    let mut seen = Seen::default();
    let mut next_seq: u64 = 0;
    while next_seq < lines {
        let text = match incoming(&mut ws, stop).await {
            Incoming::Text(text) => text,
            Incoming::Nothing => continue,
            Incoming::Stopped => break,
            Incoming::Failed(e) => {
                seen.error = Some(e);
                break;
            }
        };
        if let Err(e) = seen.message(&mut ws, text.as_str(), &mut next_seq).await {
            seen.error = Some(e);
            break;
        }
    }
    done.fetch_add(1, Ordering::Relaxed);
    // Keep the connection open until every subscriber is done, so memory is
    // measured with all of them still subscribed.
    while !stop.load(Ordering::Relaxed) {
        if tokio::time::timeout(Duration::from_millis(200), ws.next())
            .await
            .is_ok_and(|m| m.is_none())
        {
            break;
        }
    }
    let _ = ws.close(None).await;
    seen
}

/// What a subscriber's next read gave.
enum Incoming {
    Text(tokio_tungstenite::tungstenite::Utf8Bytes),
    /// Nothing for 200 ms, or a frame that is not text.
    Nothing,
    /// Nothing, and the scenario is over.
    Stopped,
    /// The connection ended: why.
    Failed(String),
}

async fn incoming(ws: &mut Ws, stop: &AtomicBool) -> Incoming {
    let msg = match tokio::time::timeout(Duration::from_millis(200), ws.next()).await {
        Err(_) if stop.load(Ordering::Relaxed) => return Incoming::Stopped,
        Err(_) => return Incoming::Nothing,
        Ok(m) => m,
    };
    match msg {
        None => Incoming::Failed("the connection closed".into()),
        Some(Err(e)) => Incoming::Failed(format!("WebSocket error: {e}")),
        Some(Ok(Message::Text(t))) => Incoming::Text(t),
        Some(Ok(Message::Close(c))) => Incoming::Failed(format!("closed by the server: {c:?}")),
        Some(Ok(_)) => Incoming::Nothing,
    }
}

impl Seen {
    /// One protocol message: an event is counted, a ping answered; `Err`
    /// ends the subscriber with why.
    async fn message(&mut self, ws: &mut Ws, text: &str, next_seq: &mut u64) -> Result<(), String> {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            return Err("a WebSocket message is not JSON".into());
        };
        match v["type"].as_str() {
            Some("next") => self.event(&v, next_seq),
            Some("ping") => send_json(ws, json!({ "type": "pong" }))
                .await
                .map_err(|e| format!("{e:#}")),
            Some("error") => Err(format!("subscription error: {}", gql::short(&v["payload"]))),
            Some("complete") => Err("the server completed the subscription early".into()),
            _ => Ok(()),
        }
    }

    /// A `next` event: line `seq` of its run, expected in order and once.
    fn event(&mut self, v: &Value, next_seq: &mut u64) -> Result<(), String> {
        if let Some(errors) = v["payload"]["errors"].as_array().filter(|e| !e.is_empty()) {
            return Err(format!(
                "event with errors: {}",
                Value::from(errors.clone())
            ));
        }
        let message = v["payload"]["data"]
            .as_object()
            .and_then(|d| d.values().next())
            .and_then(|e| e["message"].as_str())
            .unwrap_or("");
        let Some(seq) = message
            .strip_prefix("line ")
            .and_then(|s| s.parse::<u64>().ok())
        else {
            return Err(format!("unexpected event {}", gql::short(v)));
        };
        self.last_event = Some(Instant::now());
        if seq < *next_seq {
            self.duplicates += 1;
            return Ok(());
        }
        if seq > *next_seq {
            self.out_of_order += 1;
            self.lost += seq - *next_seq;
        }
        self.delivered += 1;
        *next_seq = seq + 1;
        Ok(())
    }
}
