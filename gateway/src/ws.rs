//! GraphQL over WebSocket on `/graphql`: `graphql-transport-ws` and the
//! legacy `graphql-ws`, chosen from `Sec-WebSocket-Protocol`.
//!
//! One task per client connection reads client messages and writes every
//! outgoing message; each operation runs in its own task (see `operation`)
//! and hands its messages over a bounded channel, so a slow client slows its
//! subscriptions' upstream reads instead of queueing without end.
//!
//! `connection_init` payload rule: absent, `null` or a JSON object is
//! accepted and passed on to the subgraphs' `connection_init`; any other
//! payload is refused (4403 Forbidden; legacy: `connection_error`, then
//! close 4403). A missing `connection_init` closes with 4408 after
//! `ws_init_timeout` in both protocols. Keep-alives every `ws_keepalive`:
//! `ping` (a client that leaves one unanswered for a whole period is
//! dropped, which stops its subscriptions upstream) or legacy `ka`.

pub(crate) mod operation;
pub(crate) mod protocol;
pub mod upstream;

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{
    extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use futures::{stream::SplitSink, SinkExt, StreamExt};
use stitching::authorization::Grants;
use tokio::{sync::mpsc, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::AppState;
use operation::{Operation, Outgoing, Shared};
use protocol::{ClientMessage, Close, Protocol};

/// Messages an operation may queue for its connection before it waits.
const OUT_BUFFER: usize = 16;
/// How long a write may block when keep-alives are off (else: their interval).
pub(crate) const STALL_WITHOUT_KEEPALIVE: Duration = Duration::from_secs(30);
/// How long a closing connection waits for its subscriptions to stop upstream.
const STOP_WAIT: Duration = Duration::from_secs(2);

pub fn upgrade(state: Arc<AppState>, upgrade: WebSocketUpgrade, headers: &HeaderMap) -> Response {
    let Some(protocol) = Protocol::negotiate(headers) else {
        let offered = headers
            .get(header::SEC_WEBSOCKET_PROTOCOL)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none");
        let body = serde_json::json!({ "errors": [{
            "message": format!("unsupported WebSocket subprotocol (offered: {offered}): set Sec-WebSocket-Protocol to `graphql-transport-ws` or `graphql-ws`"),
            "extensions": { "code": "BAD_REQUEST" },
        }]});
        return (
            StatusCode::BAD_REQUEST,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body.to_string(),
        )
            .into_response();
    };
    let headers = headers.clone();
    upgrade
        .protocols([protocol.name()])
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_message_size(state.max_body_bytes)
        .on_upgrade(move |socket| serve(state, socket, protocol, headers))
}

/// A client's state on one connection.
struct Connection {
    state: Arc<AppState>,
    protocol: Protocol,
    headers: Option<HeaderMap>,
    shared: Option<Arc<Shared>>,
    cancel: CancellationToken,
    tx: mpsc::Sender<Outgoing>,
    tasks: JoinSet<()>,
    /// Client operation id -> its task and token.
    by_id: HashMap<String, (tokio::task::Id, CancellationToken)>,
    /// Task -> client operation id, for tasks whose messages still go out.
    by_task: HashMap<tokio::task::Id, String>,
    /// A `ping` went out and its `pong` has not come back.
    awaiting_pong: bool,
}

/// What to do after a client message.
enum Step {
    Continue,
    Reply(String),
    /// `connection_ack` (legacy: followed by a `ka`).
    Ack,
    Close(Close),
    /// Send this, then close (legacy `connection_error`).
    ReplyClose(String, Close),
}

async fn serve(state: Arc<AppState>, socket: WebSocket, protocol: Protocol, headers: HeaderMap) {
    let _open = OpenSocket::new(&state.metrics);
    let (sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Outgoing>(OUT_BUFFER);
    let mut conn = Connection {
        cancel: state.shutdown.child_token(),
        state,
        protocol,
        headers: Some(headers),
        shared: None,
        tx,
        tasks: JoinSet::new(),
        by_id: HashMap::new(),
        by_task: HashMap::new(),
        awaiting_pong: false,
    };
    let mut writer = Writer {
        sink,
        cancel: conn.cancel.clone(),
        stall: conn.state.ws_keepalive.unwrap_or(STALL_WITHOUT_KEEPALIVE),
    };
    let init_deadline = tokio::time::sleep(conn.state.ws_init_timeout);
    tokio::pin!(init_deadline);
    let keep_alive_on = conn.state.ws_keepalive.is_some();
    let period = conn.state.ws_keepalive.unwrap_or(Duration::from_secs(3600));
    let mut keep_alive = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    keep_alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let close: Option<Close> = loop {
        // Client messages before outgoing events, so a busy stream cannot
        // starve a `complete`; task ends last, after their queued messages.
        let step = tokio::select! {
            biased;
            _ = conn.cancel.cancelled() => break Some(Close::GoingAway),
            _ = &mut init_deadline, if conn.shared.is_none() => break Some(Close::InitTimeout),
            _ = keep_alive.tick(), if keep_alive_on && conn.shared.is_some() => match protocol {
                Protocol::LegacyWs => Step::Reply(protocol::ka()),
                // A client that cannot answer a ping in a whole period is gone
                // (half-open TCP): free its subscriptions upstream.
                Protocol::TransportWs if conn.awaiting_pong => {
                    tracing::debug!("WebSocket client left a ping unanswered; disconnecting");
                    break None;
                }
                Protocol::TransportWs => {
                    conn.awaiting_pong = true;
                    Step::Reply(protocol::ping())
                }
            },
            msg = stream.next() => match msg {
                Some(Err(e)) if too_big(&e) => break Some(Close::TooBig(conn.state.max_body_bytes)),
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break None,
                Some(Ok(Message::Text(text))) => conn.handle(text.as_str()).await,
                Some(Ok(Message::Binary(_))) => conn.violation("binary messages are not part of the protocol; send JSON text".into()),
                Some(Ok(_)) => Step::Continue,
            },
            Some(out) = rx.recv() => {
                if conn.by_task.contains_key(&out.task) && !writer.send(out.text).await {
                    break None;
                }
                continue;
            }
            Some(done) = conn.tasks.join_next_with_id(), if !conn.tasks.is_empty() => {
                match conn.task_ended(done, &mut rx, &mut writer).await {
                    Ok(()) => continue,
                    Err(c) => break Some(c),
                }
            }
        };
        if let Err(close) = apply(step, protocol, &mut writer, &mut keep_alive).await {
            break close;
        }
    };
    conn.close(close, rx, writer).await;
}

/// Carries out what a client message asked; `Err` with how to end the
/// connection (`None`: without a close frame) when it ends.
async fn apply(
    step: Step,
    protocol: Protocol,
    writer: &mut Writer,
    keep_alive: &mut tokio::time::Interval,
) -> Result<(), Option<Close>> {
    match step {
        Step::Continue => Ok(()),
        Step::Reply(text) => sent(writer.send(text).await),
        Step::Ack => {
            sent(writer.send(protocol::ack()).await)?;
            keep_alive.reset();
            // Legacy: a keep-alive right after the ack, as subscriptions-transport-ws does.
            if protocol == Protocol::LegacyWs {
                sent(writer.send(protocol::ka()).await)?;
            }
            Ok(())
        }
        Step::Close(c) => Err(Some(c)),
        Step::ReplyClose(text, c) => {
            let _ = writer.send(text).await;
            Err(Some(c))
        }
    }
}

/// A failed write ends the connection without a close frame.
fn sent(ok: bool) -> Result<(), Option<Close>> {
    if ok {
        Ok(())
    } else {
        Err(None)
    }
}

/// Whether a read failed on a message over `max_message_size`.
fn too_big(e: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(tokio_tungstenite::tungstenite::Error::Capacity(_)) =
            c.downcast_ref::<tokio_tungstenite::tungstenite::Error>()
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Counts a client WebSocket in `gateway_websockets_open` while it lives.
struct OpenSocket(Arc<crate::metrics::Metrics>);

impl OpenSocket {
    fn new(metrics: &Arc<crate::metrics::Metrics>) -> Self {
        metrics.websockets_open.inc();
        OpenSocket(metrics.clone())
    }
}

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.0.websockets_open.dec();
    }
}

/// The connection's outgoing half.
struct Writer {
    sink: SplitSink<WebSocket, Message>,
    cancel: CancellationToken,
    /// A write blocked this long means the client stopped reading.
    stall: Duration,
}

impl Writer {
    /// Sends one message; `false` (drop the client) when the socket failed,
    /// the gateway shuts down, or the client has not read for `stall`: its
    /// subscriptions would otherwise hold their upstream streams until TCP
    /// gives up, and keep-alives cannot go out behind a blocked write.
    async fn send(&mut self, text: String) -> bool {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => false,
            r = tokio::time::timeout(self.stall, self.sink.send(Message::Text(text.into()))) => {
                matches!(r, Ok(Ok(())))
            }
        }
    }
}

impl Connection {
    /// An operation's task ended: its last messages go out, then it is
    /// forgotten. A panic closes the connection.
    async fn task_ended(
        &mut self,
        done: Result<(tokio::task::Id, ()), tokio::task::JoinError>,
        rx: &mut mpsc::Receiver<Outgoing>,
        writer: &mut Writer,
    ) -> Result<(), Close> {
        let id = match done {
            Ok((id, ())) => id,
            Err(e) if e.is_panic() => {
                tracing::error!(error = %e, "a WebSocket operation panicked");
                self.state.metrics.internal_errors.inc();
                return Err(Close::Internal);
            }
            Err(e) => e.id(),
        };
        // Its last messages were queued before it ended: deliver them first.
        while let Ok(out) = rx.try_recv() {
            if self.by_task.contains_key(&out.task) && !writer.send(out.text).await {
                break;
            }
        }
        self.finished(id);
        Ok(())
    }

    /// Ends the connection: the close frame if there is one, then each
    /// subscription gets a moment to stop its upstream stream.
    async fn close(
        mut self,
        close: Option<Close>,
        rx: mpsc::Receiver<Outgoing>,
        mut writer: Writer,
    ) {
        self.cancel.cancel();
        if let Some(c) = close {
            let frame = CloseFrame {
                code: c.code(),
                reason: c.reason().into(),
            };
            let _ = tokio::time::timeout(STOP_WAIT, writer.sink.send(Message::Close(Some(frame))))
                .await;
        }
        drop(rx);
        let _ = tokio::time::timeout(STOP_WAIT, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.tasks.abort_all();
    }

    /// `[gateway.jwt]`: the token in the upgrade request or the
    /// `connection_init` payload; sets the headers made from its claims.
    async fn authenticate(
        &self,
        headers: &mut HeaderMap,
        payload: &serde_json::value::RawValue,
    ) -> Result<Grants, String> {
        let engine = self.state.engine();
        let Some(auth) = &engine.auth else {
            return Ok(Grants::default());
        };
        let payload: Option<serde_json::Value> = serde_json::from_str(payload.get()).ok();
        let identity = auth
            .identify(headers, payload.as_ref())
            .await
            .map_err(|e| e.message().to_string())?;
        auth.apply(identity.as_ref(), headers);
        Ok(engine.grants(identity.as_ref()))
    }

    async fn handle(&mut self, text: &str) -> Step {
        let msg = match protocol::parse(self.protocol, text) {
            Ok(m) => m,
            Err(why) => return self.violation(why),
        };
        match msg {
            ClientMessage::Init(payload) => self.init(payload).await,
            ClientMessage::Ping(payload) => Step::Reply(protocol::pong(payload.as_deref())),
            ClientMessage::Pong => {
                self.awaiting_pong = false;
                Step::Continue
            }
            ClientMessage::Terminate => Step::Close(Close::Normal),
            ClientMessage::Complete { id } => {
                if let Some((task, token)) = self.by_id.remove(&id) {
                    token.cancel();
                    self.by_task.remove(&task);
                }
                Step::Continue
            }
            ClientMessage::Subscribe { id, request } => self.subscribe(id, *request),
        }
    }

    /// `connection_init`: authenticates once, then acknowledges.
    async fn init(&mut self, payload: Box<serde_json::value::RawValue>) -> Step {
        if self.shared.is_some() {
            return match self.protocol {
                Protocol::TransportWs => Step::Close(Close::TooManyInit),
                Protocol::LegacyWs => Step::Reply(protocol::ack()),
            };
        }
        if !protocol::init_payload_allowed(&payload) {
            return match self.protocol {
                Protocol::TransportWs => Step::Close(Close::Forbidden),
                Protocol::LegacyWs => Step::ReplyClose(
                    protocol::connection_error("the connection_init payload must be a JSON object"),
                    Close::Forbidden,
                ),
            };
        }
        let mut headers = self.headers.take().unwrap_or_default();
        let grants = match self.authenticate(&mut headers, &payload).await {
            Ok(g) => g,
            Err(why) => {
                let close = Close::Unauthenticated(why.clone());
                return match self.protocol {
                    Protocol::TransportWs => Step::Close(close),
                    Protocol::LegacyWs => Step::ReplyClose(protocol::connection_error(&why), close),
                };
            }
        };
        self.shared = Some(Arc::new(Shared {
            protocol: self.protocol,
            metrics: self.state.metrics.clone(),
            headers,
            grants,
            init_payload: payload,
            subscriptions: self.state.subscriptions.clone(),
        }));
        Step::Ack
    }

    /// `subscribe` (legacy: `start`): runs the operation as a task of its own.
    fn subscribe(&mut self, id: String, mut request: crate::engine::GraphQLRequest) -> Step {
        let Some(shared) = self.shared.clone() else {
            return match self.protocol {
                Protocol::TransportWs => Step::Close(Close::Unauthorized),
                Protocol::LegacyWs => Step::Reply(protocol::error(
                    &id,
                    &[
                        serde_json::json!({ "message": "send connection_init and wait for connection_ack before start" }),
                    ],
                )),
            };
        };
        if self.by_id.len() >= self.state.ws_max_operations && !self.by_id.contains_key(&id) {
            let message = format!(
                "this connection already runs {} operations (the gateway's ws_max_operations): complete one before starting another, or open another connection",
                self.by_id.len()
            );
            return Step::Reply(protocol::error(
                &id,
                &[
                    serde_json::json!({ "message": message, "extensions": { "code": "TOO_MANY_OPERATIONS" } }),
                ],
            ));
        }
        if self.by_id.contains_key(&id) {
            match self.protocol {
                Protocol::TransportWs => return Step::Close(Close::SubscriberExists(id)),
                // subscriptions-transport-ws replaces the running operation.
                Protocol::LegacyWs => {
                    if let Some((task, token)) = self.by_id.remove(&id) {
                        token.cancel();
                        self.by_task.remove(&task);
                    }
                }
            }
        }
        // Trusted documents and persisted queries, as over HTTP.
        if let Err(refusal) = self.state.documents(&mut request) {
            return Step::Reply(protocol::error(
                &id,
                &[
                    serde_json::json!({ "message": refusal.message(), "extensions": { "code": refusal.code() } }),
                ],
            ));
        }
        let cancel = self.cancel.child_token();
        let op = Operation {
            shared,
            engine: self.state.engine(),
            id: id.clone(),
            request,
            tx: self.tx.clone(),
            cancel: cancel.clone(),
        };
        let task = self.tasks.spawn(op.run()).id();
        self.by_task.insert(task, id.clone());
        self.by_id.insert(id, (task, cancel));
        Step::Continue
    }

    /// A malformed or unexpected message: 4400, legacy: an `error` message.
    fn violation(&self, why: String) -> Step {
        match self.protocol {
            Protocol::TransportWs => Step::Close(Close::BadMessage(why)),
            Protocol::LegacyWs => Step::Reply(protocol::legacy_error(&why)),
        }
    }

    /// A task ended: its id may be used again.
    fn finished(&mut self, task: tokio::task::Id) {
        if let Some(id) = self.by_task.remove(&task) {
            if self.by_id.get(&id).is_some_and(|(t, _)| *t == task) {
                self.by_id.remove(&id);
            }
        }
    }
}
