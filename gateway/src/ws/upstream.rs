//! Upstream subscriptions, multiplexed: one `graphql-transport-ws` socket
//! per (subgraph WebSocket URL, handshake headers, `connection_init`
//! payload) carries every client subscription that goes there, and
//! identical subscriptions share one upstream id whose events fan out. A
//! socket closes when its last subscription ends; when it drops, each of
//! its subscriptions gets the reason and the rest of every client
//! connection goes on.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
        Arc, Mutex,
    },
    time::Duration,
};

use apollo_compiler::response::JsonValue;
use futures::{SinkExt, StreamExt};
use tokio::{
    net::TcpStream,
    sync::{mpsc, oneshot},
};
use tokio_tungstenite::{
    tungstenite::{
        client::IntoClientRequest,
        http::{HeaderName, HeaderValue},
        protocol::WebSocketConfig,
        Message,
    },
    MaybeTlsStream, WebSocketStream,
};
use tokio_util::sync::CancellationToken;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Events queued per subscriber before the socket waits for it.
const FAN_OUT_BUFFER: usize = 64;

/// Where a subscription goes and how the socket there is opened.
pub struct Target {
    pub ws_url: String,
    /// Propagated and configured headers of the handshake.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The `connection_init` message text (with the client's payload).
    pub init: String,
    /// For the handshake and `connection_ack`.
    pub timeout: Duration,
}

impl Target {
    /// Sockets are shared by subscriptions that would open the same one.
    fn key(&self) -> Vec<u8> {
        let mut parts: Vec<&[u8]> = vec![self.ws_url.as_bytes(), self.init.as_bytes()];
        for (k, v) in &self.headers {
            parts.push(k.as_str().as_bytes());
            parts.push(v.as_bytes());
        }
        crate::upstream::key(parts)
    }
}

/// Why a subscription could not join an upstream one.
#[derive(Debug)]
pub enum SubscribeError {
    /// `max_upstream_subscriptions` are open (the limit): a client-safe refusal.
    AtCapacity(usize),
    /// The socket could not be opened or closed underneath (for the log).
    Unavailable(String),
}

/// What a subscriber receives.
#[derive(Clone, Debug)]
pub enum Event {
    /// One parsed event, shared by every subscriber: a burst queued for a
    /// thousand subscribers holds each event once, not a copy per queue.
    Next(Arc<JsonValue>),
    /// The subgraph's `error` message payload (the subscription is over).
    Error(JsonValue),
    Complete,
    /// The socket failed or closed; why.
    Gone(String),
}

enum Command {
    Subscribe {
        /// The `subscribe` payload as JSON text: identical ones are shared.
        request: String,
        reply: oneshot::Sender<Result<(u64, mpsc::Receiver<Event>), SubscribeError>>,
    },
    /// A share of upstream subscription `id` ends (ids are never reused).
    Release { id: u64 },
}

#[derive(Clone)]
struct Handle {
    id: u64,
    tx: mpsc::UnboundedSender<Command>,
}

/// Every upstream socket of the gateway; survives schema reloads.
pub struct Subscriptions {
    sockets: Mutex<HashMap<Vec<u8>, Handle>>,
    next_socket: AtomicU64,
    /// Distinct upstream subscriptions, against `max`.
    live: AtomicUsize,
    max: usize,
    /// How long the socket waits for a subscriber that does not take its
    /// events before dropping it (the others on the socket wait meanwhile).
    stall: Duration,
    pub sockets_open: AtomicU64,
    shutdown: CancellationToken,
}

/// A client subscription's share of an upstream one; dropping it releases
/// the share (the last one completes the upstream subscription).
pub struct Feed {
    rx: mpsc::Receiver<Event>,
    id: u64,
    tx: mpsc::UnboundedSender<Command>,
}

impl Feed {
    pub async fn next(&mut self) -> Event {
        self.rx.recv().await.unwrap_or_else(|| {
            Event::Gone(
                "its events stopped: the client did not read them in time, or the upstream connection closed"
                    .into(),
            )
        })
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        let _ = self.tx.send(Command::Release { id: self.id });
    }
}

impl Subscriptions {
    pub fn new(max: usize, stall: Duration, shutdown: CancellationToken) -> Arc<Subscriptions> {
        Arc::new(Subscriptions {
            sockets: Mutex::new(HashMap::new()),
            next_socket: AtomicU64::new(0),
            live: AtomicUsize::new(0),
            max: max.max(1),
            stall,
            sockets_open: AtomicU64::new(0),
            shutdown,
        })
    }

    /// Distinct upstream subscriptions open now.
    pub fn live(&self) -> usize {
        self.live.load(Relaxed)
    }

    /// Joins the upstream subscription for `request` at `target`, opening
    /// the socket or the subscription when there is none yet.
    pub async fn subscribe(
        self: &Arc<Self>,
        target: Target,
        request: String,
    ) -> Result<Feed, SubscribeError> {
        let target = Arc::new(target);
        // A socket may close between lookup and command: one more try on a fresh one.
        let mut last = String::new();
        for _ in 0..2 {
            let handle = self.socket(&target);
            let (reply, answer) = oneshot::channel();
            let cmd = Command::Subscribe {
                request: request.clone(),
                reply,
            };
            if handle.tx.send(cmd).is_err() {
                self.forget(&target.key(), handle.id);
                continue;
            }
            match answer.await {
                Ok(Ok((id, rx))) => {
                    return Ok(Feed {
                        rx,
                        id,
                        tx: handle.tx,
                    })
                }
                Ok(Err(why)) => return Err(why),
                Err(_) => last = "the upstream connection closed".into(),
            }
        }
        Err(SubscribeError::Unavailable(last))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Handle>> {
        match self.sockets.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        }
    }

    /// The socket for `target`, started if there is none.
    fn socket(self: &Arc<Self>, target: &Arc<Target>) -> Handle {
        let key = target.key();
        let mut sockets = self.lock();
        if let Some(h) = sockets.get(&key) {
            return h.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = Handle {
            id: self.next_socket.fetch_add(1, Relaxed),
            tx,
        };
        sockets.insert(key.clone(), handle.clone());
        drop(sockets);
        let task = SocketTask {
            pool: self.clone(),
            key,
            id: handle.id,
            target: target.clone(),
            rx,
            by_request: HashMap::new(),
            by_id: HashMap::new(),
            next_id: 0,
        };
        tokio::spawn(task.run());
        handle
    }

    /// Removes socket `id` from the pool (a newer one under the key stays).
    fn forget(&self, key: &[u8], id: u64) {
        let mut sockets = self.lock();
        if sockets.get(key).is_some_and(|h| h.id == id) {
            sockets.remove(key);
        }
    }
}

/// One upstream subscription and the client subscriptions that share it.
struct Shared {
    request: String,
    subscribers: Vec<mpsc::Sender<Event>>,
    /// Shares handed out and not yet released.
    count: usize,
    /// An event went out: a new subscriber would miss it (a stream that
    /// starts with a replay), so it gets an upstream subscription of its own.
    started: bool,
}

impl Shared {
    /// Delivers `event` to every subscriber, waiting up to `stall` for a
    /// slow one before dropping it.
    async fn deliver(&mut self, event: Event, stall: Duration) {
        self.started = true;
        let mut kept = Vec::with_capacity(self.subscribers.len());
        for tx in self.subscribers.drain(..) {
            let ok = match tx.try_send(event.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(e)) => tx.send_timeout(e, stall).await.is_ok(),
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            };
            if ok {
                kept.push(tx);
            }
        }
        self.subscribers = kept;
    }
}

/// Owns one upstream socket: subscribes, fans events out, completes.
struct SocketTask {
    pool: Arc<Subscriptions>,
    key: Vec<u8>,
    id: u64,
    target: Arc<Target>,
    rx: mpsc::UnboundedReceiver<Command>,
    by_request: HashMap<String, u64>,
    by_id: HashMap<u64, Shared>,
    next_id: u64,
}

impl SocketTask {
    async fn run(mut self) {
        let connected = tokio::time::timeout(self.target.timeout, connect(&self.target)).await;
        let mut ws = match connected {
            Ok(Ok(ws)) => ws,
            Ok(Err(why)) => return self.fail(why),
            Err(_) => {
                let why = format!(
                    "no connection_ack within {} ms",
                    self.target.timeout.as_millis()
                );
                return self.fail(why);
            }
        };
        self.pool.sockets_open.fetch_add(1, Relaxed);
        let why = self.serve(&mut ws).await;
        self.pool.sockets_open.fetch_sub(1, Relaxed);
        self.pool.forget(&self.key, self.id);
        self.rx.close();
        for (_, s) in self.by_id.drain() {
            self.pool.live.fetch_sub(1, Relaxed);
            for tx in s.subscribers {
                let _ = tx.try_send(Event::Gone(why.clone()));
            }
        }
        // Subscribes that raced the close: their callers retry on a new socket.
        while self.rx.try_recv().is_ok() {}
        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    }

    /// The socket could not be opened: every waiting subscriber is told why.
    fn fail(mut self, why: String) {
        self.pool.forget(&self.key, self.id);
        self.rx.close();
        while let Ok(cmd) = self.rx.try_recv() {
            if let Command::Subscribe { reply, .. } = cmd {
                let _ = reply.send(Err(SubscribeError::Unavailable(why.clone())));
            }
        }
    }

    /// Relays until the socket drops or its last subscription ends; why it ended.
    async fn serve(&mut self, ws: &mut Socket) -> String {
        loop {
            tokio::select! {
                _ = self.pool.shutdown.cancelled() => return "the gateway is shutting down".into(),
                cmd = self.rx.recv() => {
                    let Some(cmd) = cmd else { return "no subscriber left".into() };
                    if let Err(why) = self.command(ws, cmd).await {
                        return why;
                    }
                    if self.by_id.is_empty() {
                        return "no subscriber left".into();
                    }
                }
                msg = ws.next() => {
                    if let Err(why) = self.upstream(ws, msg).await {
                        return why;
                    }
                }
            }
        }
    }

    async fn command(&mut self, ws: &mut Socket, cmd: Command) -> Result<(), String> {
        match cmd {
            Command::Subscribe { request, reply } => {
                if let Some(&id) = self.by_request.get(&request) {
                    if let Some(shared) = self.by_id.get_mut(&id).filter(|s| !s.started) {
                        let (tx, rx) = mpsc::channel(FAN_OUT_BUFFER);
                        shared.subscribers.push(tx);
                        shared.count += 1;
                        let _ = reply.send(Ok((id, rx)));
                        return Ok(());
                    }
                }
                if self.pool.live.fetch_add(1, Relaxed) >= self.pool.max {
                    self.pool.live.fetch_sub(1, Relaxed);
                    let _ = reply.send(Err(SubscribeError::AtCapacity(self.pool.max)));
                    return Ok(());
                }
                let id = self.next_id;
                self.next_id += 1;
                let msg = format!(r#"{{"type":"subscribe","id":"{id}","payload":{request}}}"#);
                if let Err(e) = ws.send(Message::text(msg)).await {
                    self.pool.live.fetch_sub(1, Relaxed);
                    let why = e.to_string();
                    let _ = reply.send(Err(SubscribeError::Unavailable(why.clone())));
                    return Err(why);
                }
                let (tx, rx) = mpsc::channel(FAN_OUT_BUFFER);
                self.by_request.insert(request.clone(), id);
                let shared = Shared {
                    request,
                    subscribers: vec![tx],
                    count: 1,
                    started: false,
                };
                self.by_id.insert(id, shared);
                let _ = reply.send(Ok((id, rx)));
            }
            Command::Release { id } => {
                let Some(shared) = self.by_id.get_mut(&id) else {
                    // Already ended by the subgraph (`complete`, `error`).
                    return Ok(());
                };
                shared.count = shared.count.saturating_sub(1);
                if shared.count == 0 {
                    self.end(id);
                    let msg = format!(r#"{{"type":"complete","id":"{id}"}}"#);
                    ws.send(Message::text(msg))
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// Forgets upstream subscription `id`.
    fn end(&mut self, id: u64) -> Option<Shared> {
        let shared = self.by_id.remove(&id)?;
        if self.by_request.get(&shared.request) == Some(&id) {
            self.by_request.remove(&shared.request);
        }
        self.pool.live.fetch_sub(1, Relaxed);
        Some(shared)
    }

    async fn upstream(
        &mut self,
        ws: &mut Socket,
        msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Result<(), String> {
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(frame))) => {
                return Err(match frame {
                    Some(f) if !f.reason.is_empty() => {
                        format!(
                            "it closed the connection ({} {})",
                            u16::from(f.code),
                            f.reason
                        )
                    }
                    _ => "it closed the connection".to_string(),
                })
            }
            Some(Ok(_)) => return Ok(()),
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("it closed the connection".into()),
        };
        let msg: UpstreamMessage = serde_json::from_str(&text)
            .map_err(|e| format!("it sent a message that is not graphql-transport-ws: {e}"))?;
        let id = msg.id.as_deref().and_then(|i| i.parse::<u64>().ok());
        match (msg.kind.as_str(), id) {
            ("next", Some(id)) => {
                let stall = self.pool.stall;
                if let Some(s) = self.by_id.get_mut(&id) {
                    let event = Event::Next(Arc::new(msg.payload.unwrap_or(JsonValue::Null)));
                    s.deliver(event, stall).await;
                }
            }
            ("error", Some(id)) => {
                if let Some(mut s) = self.end(id) {
                    let errors = msg.payload.unwrap_or(JsonValue::Array(Vec::new()));
                    s.deliver(Event::Error(errors), self.pool.stall).await;
                }
            }
            ("complete", Some(id)) => {
                if let Some(mut s) = self.end(id) {
                    s.deliver(Event::Complete, self.pool.stall).await;
                }
            }
            ("ping", _) => ws
                .send(Message::text(r#"{"type":"pong"}"#))
                .await
                .map_err(|e| e.to_string())?,
            _ => {}
        }
        Ok(())
    }
}

#[derive(serde::Deserialize)]
struct UpstreamMessage {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    payload: Option<JsonValue>,
}

fn message_type(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct T {
        #[serde(rename = "type")]
        kind: String,
    }
    serde_json::from_str::<T>(text).ok().map(|t| t.kind)
}

/// Opens the subgraph's WebSocket with the handshake headers and waits for
/// `connection_ack`.
async fn connect(target: &Target) -> Result<Socket, String> {
    let mut request = target
        .ws_url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("bad ws_url `{}`: {e}", target.ws_url))?;
    let h = request.headers_mut();
    h.insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    for (k, v) in &target.headers {
        h.append(k.clone(), v.clone());
    }
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(16 << 20));
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
        .await
        .map_err(|e| format!("cannot open {}: {e}", target.ws_url))?;
    ws.send(Message::text(target.init.clone()))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => match message_type(&t).as_deref() {
                Some("connection_ack") => return Ok(ws),
                Some("ping") => ws
                    .send(Message::text(r#"{"type":"pong"}"#))
                    .await
                    .map_err(|e| e.to_string())?,
                _ => {}
            },
            Some(Ok(Message::Close(frame))) => {
                return Err(match frame {
                    Some(f) => format!(
                        "it refused the connection ({} {})",
                        u16::from(f.code),
                        f.reason
                    ),
                    None => "it closed the connection during initialisation".into(),
                })
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("it closed the connection during initialisation".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_of_one_upstream_subscription_share_each_event() {
        let (queues, mut receivers): (Vec<_>, Vec<_>) =
            (0..3).map(|_| mpsc::channel(FAN_OUT_BUFFER)).unzip();
        let mut shared = Shared {
            request: String::new(),
            subscribers: queues,
            count: 3,
            started: false,
        };
        let event = Arc::new(JsonValue::from("a line"));
        shared
            .deliver(Event::Next(event.clone()), Duration::from_millis(10))
            .await;
        for rx in &mut receivers {
            match rx.try_recv() {
                Ok(Event::Next(got)) => assert!(Arc::ptr_eq(&got, &event)),
                other => panic!("expected the event, got {other:?}"),
            }
        }
        assert!(shared.started);
    }
}
