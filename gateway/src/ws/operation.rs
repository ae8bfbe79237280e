//! One client operation on a WebSocket: a query or mutation runs once; a
//! subscription is delegated to its subgraph's WebSocket endpoint
//! (graphql-transport-ws, one upstream connection per client subscription)
//! and each upstream event is completed through the stitched execution
//! (e.g. a log line's `pipeline { status }`) before it goes to the client.

use std::{
    sync::{atomic::Ordering::Relaxed, Arc},
    time::Duration,
};

use apollo_compiler::{ast::OperationType, response::JsonValue};
use axum::http::HeaderMap;
use futures::{SinkExt, StreamExt};
use serde_json::value::RawValue;
use stitching::{
    execute::{self, error, SubscriptionStart},
    PreparedOperation,
};
use tokio::{net::TcpStream, sync::mpsc};
use tokio_tungstenite::{
    tungstenite::{
        client::IntoClientRequest, http::HeaderValue, protocol::WebSocketConfig, Message,
    },
    MaybeTlsStream, WebSocketStream,
};
use tokio_util::sync::CancellationToken;

use super::protocol::{self, Protocol};
use crate::{
    engine::{Engine, GraphQLRequest, HttpTransport, Outcome, SubgraphClient},
    metrics::Metrics,
};

/// How long a cancelled subscription waits for the subgraph to acknowledge
/// the close before the socket is dropped.
const UPSTREAM_CLOSE_WAIT: Duration = Duration::from_secs(1);

/// A message for the client, tagged with the task that produced it so the
/// connection can drop messages of operations the client already completed.
pub struct Outgoing {
    pub task: tokio::task::Id,
    pub text: String,
}

/// What every operation of one client connection shares.
pub struct Shared {
    pub protocol: Protocol,
    pub http: reqwest::Client,
    pub metrics: Arc<Metrics>,
    /// The client's upgrade request headers (propagated per subgraph config).
    pub headers: HeaderMap,
    /// The client's `connection_init` payload, passed on to subgraphs.
    pub init_payload: Box<RawValue>,
}

pub struct Operation {
    pub shared: Arc<Shared>,
    pub engine: Arc<Engine>,
    pub id: String,
    pub request: GraphQLRequest,
    pub tx: mpsc::Sender<Outgoing>,
    pub cancel: CancellationToken,
}

/// Counts an open subscription in `gateway_subscriptions_active` for as long as it lives.
struct ActiveGuard(Arc<Metrics>);

impl ActiveGuard {
    fn new(metrics: &Arc<Metrics>) -> Self {
        metrics.subscriptions_active.fetch_add(1, Relaxed);
        ActiveGuard(metrics.clone())
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.subscriptions_active.fetch_sub(1, Relaxed);
    }
}

enum End {
    /// The client completed the operation or went away: say nothing more.
    Cancelled,
    /// The operation ended and the client was told (or cannot be).
    Done,
}

type Upstream = WebSocketStream<MaybeTlsStream<TcpStream>>;

impl Operation {
    pub async fn run(self) {
        let query = self.request.query.as_deref().unwrap_or_default();
        let prepared = match self
            .engine
            .prepare(query, self.request.operation_name.as_deref())
        {
            Ok(p) => p,
            Err(e) => {
                self.send_error(&e.to_graphql_errors()).await;
                return;
            }
        };
        if prepared.operation().operation_type == OperationType::Subscription {
            self.subscribe(&prepared).await;
        } else {
            self.execute_once().await;
        }
    }

    /// A query or mutation over the socket: one `next`, then `complete`.
    async fn execute_once(&self) {
        let s = &self.shared;
        let outcome = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return,
            o = self.engine.execute(&s.http, &self.request, &s.headers, true) => o,
        };
        match outcome {
            Outcome::Refused(e) => self.send_error(&e.to_graphql_errors()).await,
            Outcome::Executed(r) => {
                if self.send(protocol::next(s.protocol, &self.id, &r)).await {
                    self.send(protocol::complete(&self.id)).await;
                }
            }
        }
    }

    async fn subscribe(&self, prepared: &PreparedOperation) {
        let empty = Default::default();
        let vars = self.request.variables.as_ref().unwrap_or(&empty);
        let variables = match self.engine.bind_variables(prepared, vars) {
            Ok(v) => v,
            Err(e) => return self.send_error(&e.to_graphql_errors()).await,
        };
        let req = execute::Request {
            supergraph: &self.engine.supergraph,
            document: &prepared.document,
            operation: prepared.operation(),
            plan: &prepared.plan,
            variables: &variables,
        };
        let start = match execute::subscription_start(&req) {
            Ok(s) => s,
            Err(e) => return self.send_error(&[e]).await,
        };
        let _active = ActiveGuard::new(&self.shared.metrics);
        let client = &self.engine.clients[start.subgraph];
        let connected = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return,
            c = tokio::time::timeout(client.timeout, self.connect(client, &start)) => c,
        };
        let mut ws = match connected {
            Ok(Ok(ws)) => ws,
            Ok(Err(why)) => return self.send_error(&[unavailable(client, &why)]).await,
            Err(_) => {
                let why = format!("no connection_ack within {} ms", client.timeout.as_millis());
                return self.send_error(&[unavailable(client, &why)]).await;
            }
        };
        let end = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => End::Cancelled,
            e = self.pump(&mut ws, client, &req, &start) => e,
        };
        if let End::Cancelled = end {
            // Stop the subgraph's stream, then close politely (bounded).
            let _ = tokio::time::timeout(UPSTREAM_CLOSE_WAIT, async {
                let _ = ws
                    .send(Message::text(r#"{"type":"complete","id":"1"}"#))
                    .await;
                let _ = ws.close(None).await;
                while let Some(Ok(_)) = ws.next().await {}
            })
            .await;
        }
    }

    /// Opens the subgraph's WebSocket (propagated and configured headers on
    /// the handshake), initialises it with the client's payload and subscribes.
    async fn connect(
        &self,
        client: &SubgraphClient,
        start: &SubscriptionStart,
    ) -> Result<Upstream, String> {
        let mut request = client
            .ws_url
            .as_str()
            .into_client_request()
            .map_err(|e| format!("bad ws_url `{}`: {e}", client.ws_url))?;
        let h = request.headers_mut();
        h.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        for name in &client.propagate {
            for v in self.shared.headers.get_all(name) {
                h.append(name.clone(), v.clone());
            }
        }
        for (k, v) in &client.headers {
            h.insert(k.clone(), v.clone());
        }
        let config = WebSocketConfig::default()
            .read_buffer_size(8 * 1024)
            .write_buffer_size(0)
            .max_message_size(Some(16 << 20));
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
            .await
            .map_err(|e| format!("cannot open {}: {e}", client.ws_url))?;
        let init = match self.shared.init_payload.get() {
            "null" => r#"{"type":"connection_init"}"#.to_string(),
            payload => format!(r#"{{"type":"connection_init","payload":{payload}}}"#),
        };
        ws.send(Message::text(init))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => match message_type(&t).as_deref() {
                    Some("connection_ack") => break,
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
        #[derive(serde::Serialize)]
        struct Subscribe<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            id: &'static str,
            payload: &'a execute::SubgraphRequest,
        }
        let msg = serde_json::to_string(&Subscribe {
            kind: "subscribe",
            id: "1",
            payload: &start.request,
        })
        .map_err(|e| e.to_string())?;
        ws.send(Message::text(msg))
            .await
            .map_err(|e| e.to_string())?;
        Ok(ws)
    }

    /// Relays upstream events until the subgraph completes, fails or goes away.
    async fn pump(
        &self,
        ws: &mut Upstream,
        client: &SubgraphClient,
        req: &execute::Request<'_>,
        start: &SubscriptionStart,
    ) -> End {
        let s = &self.shared;
        let transport = HttpTransport {
            engine: &self.engine,
            http: &s.http,
            headers: &s.headers,
            // Each event is bounded by the subgraphs' own timeouts.
            deadline: None,
        };
        loop {
            let text = match ws.next().await {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(frame))) => {
                    let why = match frame {
                        Some(f) if !f.reason.is_empty() => {
                            format!(
                                "it closed the connection ({} {})",
                                u16::from(f.code),
                                f.reason
                            )
                        }
                        _ => "it closed the connection".to_string(),
                    };
                    self.send_error(&[unavailable(client, &why)]).await;
                    return End::Done;
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    self.send_error(&[unavailable(client, &e.to_string())])
                        .await;
                    return End::Done;
                }
                None => {
                    self.send_error(&[unavailable(client, "it closed the connection")])
                        .await;
                    return End::Done;
                }
            };
            let msg: UpstreamMessage = match serde_json::from_str(&text) {
                Ok(m) => m,
                Err(e) => {
                    let why = format!("it sent a message that is not graphql-transport-ws: {e}");
                    self.send_error(&[unavailable(client, &why)]).await;
                    return End::Done;
                }
            };
            match msg.kind.as_str() {
                "next" => {
                    let event = msg.payload.unwrap_or(JsonValue::Null);
                    let response = execute::subscription_event(req, start, event, &transport).await;
                    if !self
                        .send(protocol::next(s.protocol, &self.id, &response))
                        .await
                    {
                        return End::Cancelled;
                    }
                }
                "error" => {
                    let errors = msg.payload.unwrap_or(JsonValue::Array(Vec::new()));
                    self.send_error(&errors).await;
                    return End::Done;
                }
                "complete" => {
                    self.send(protocol::complete(&self.id)).await;
                    return End::Done;
                }
                "ping" if ws.send(Message::text(r#"{"type":"pong"}"#)).await.is_err() => {
                    self.send_error(&[unavailable(client, "it closed the connection")])
                        .await;
                    return End::Done;
                }
                _ => {}
            }
        }
    }

    /// Queues a message for the client; false once the client is gone.
    async fn send(&self, text: String) -> bool {
        let out = Outgoing {
            task: tokio::task::id(),
            text,
        };
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => false,
            r = self.tx.send(out) => r.is_ok(),
        }
    }

    async fn send_error<P: serde::Serialize + ?Sized>(&self, errors: &P) {
        self.send(protocol::error(&self.id, &errors)).await;
    }
}

#[derive(serde::Deserialize)]
struct UpstreamMessage {
    #[serde(rename = "type")]
    kind: String,
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

fn unavailable(client: &SubgraphClient, why: &str) -> apollo_compiler::response::GraphQLError {
    error(
        format!(
            "the subscription's source, the `{}` subgraph, is unavailable: {why}",
            client.name
        ),
        "SUBGRAPH_UNAVAILABLE",
    )
}
