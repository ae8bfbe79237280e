//! Real clients for the tests: GraphQL over HTTP (reqwest) and subscriptions
//! over WebSocket (tokio-tungstenite) in both subprotocols.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    tungstenite::{client::IntoClientRequest, http::HeaderValue, Message},
    MaybeTlsStream, WebSocketStream,
};

/// A fresh HTTP client. Each `#[tokio::test]` has its own runtime, and pooled
/// connections must not outlive the runtime that opened them, so no global
/// client. It sends the test services' token, as a trusted peer would
/// (tests of the refusal use a client without it).
pub fn http() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "x-service-token",
        reqwest::header::HeaderValue::from_static(crate::stack::SERVICE_TOKEN),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("build reqwest client")
}

/// POSTs a GraphQL request and returns the whole response body (`{data, errors}`).
/// Panics with the status and body when the answer is not JSON.
pub async fn gql(url: &str, query: &str, variables: Value) -> Value {
    gql_with(&http(), url, query, variables).await
}

/// [`gql`] with a given client (to reuse connections within one test).
pub async fn gql_with(client: &reqwest::Client, url: &str, query: &str, variables: Value) -> Value {
    post_json(
        client,
        url,
        &json!({ "query": query, "variables": variables }),
    )
    .await
}

/// POSTs any JSON body (persisted-query hashes, `documentId`...) and
/// returns the response body, whatever the status.
pub async fn post_json(client: &reqwest::Client, url: &str, body: &Value) -> Value {
    let resp = client
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url} failed: {e}"));
    let status = resp.status();
    let body = resp
        .text()
        .await
        .unwrap_or_else(|e| panic!("reading the body of POST {url} failed: {e}"));
    serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("POST {url}: status {status}, body is not JSON ({e}): {body}"))
}

/// The `data` of a response; panics with the errors if there are any.
pub fn data(resp: &Value) -> &Value {
    if let Some(errors) = resp.get("errors") {
        if errors.as_array().is_some_and(|a| !a.is_empty()) {
            panic!(
                "unexpected GraphQL errors: {}",
                serde_json::to_string_pretty(errors).unwrap_or_default()
            );
        }
    }
    match resp.get("data") {
        Some(d) if !d.is_null() => d,
        _ => panic!("response has no data: {resp}"),
    }
}

/// `extensions.code` of each error, in order (`""` for an error without one).
pub fn error_codes(resp: &Value) -> Vec<String> {
    errors(resp)
        .iter()
        .map(|e| {
            e.pointer("/extensions/code")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

/// The `message` of each error, in order.
pub fn error_messages(resp: &Value) -> Vec<String> {
    errors(resp)
        .iter()
        .map(|e| e["message"].as_str().unwrap_or("").to_string())
        .collect()
}

fn errors(resp: &Value) -> Vec<Value> {
    resp.get("errors")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The WebSocket subprotocol a subscription speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `graphql-transport-ws`, the `graphql-ws` library's protocol.
    GraphqlTransportWs,
    /// `graphql-ws`, the legacy subscriptions-transport-ws protocol.
    GraphqlWs,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::GraphqlTransportWs => "graphql-transport-ws",
            Protocol::GraphqlWs => "graphql-ws",
        }
    }

    /// Both, for tests that run once per protocol.
    pub const ALL: [Protocol; 2] = [Protocol::GraphqlTransportWs, Protocol::GraphqlWs];
}

/// What a subscription delivered next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// An event without errors: its `data`.
    Data(Value),
    /// An event whose payload carries `errors` (the whole payload, `{data, errors}`).
    Errors(Value),
    /// A protocol `error` message (e.g. validation failed): its payload.
    Error(Value),
    /// The server completed the subscription.
    Complete,
    /// The connection closed without a `complete`.
    Closed,
    /// Nothing arrived within the timeout.
    Timeout,
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One subscription on its own WebSocket connection.
pub struct Subscription {
    ws: Ws,
    protocol: Protocol,
    id: String,
    done: bool,
}

const SUBSCRIPTION_ID: &str = "1";

impl Subscription {
    /// Connects, initialises the protocol and subscribes. Panics if the
    /// server does not acknowledge within 10 s.
    pub async fn start(
        ws_url: &str,
        protocol: Protocol,
        query: &str,
        variables: Value,
    ) -> Subscription {
        let mut request = ws_url
            .into_client_request()
            .unwrap_or_else(|e| panic!("bad WebSocket URL {ws_url}: {e}"));
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(protocol.name()),
        );
        let (ws, response) = tokio_tungstenite::connect_async(request)
            .await
            .unwrap_or_else(|e| panic!("WebSocket connect to {ws_url} failed: {e}"));
        let chosen = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert_eq!(chosen, protocol.name(), "server chose another subprotocol");
        let mut sub = Subscription {
            ws,
            protocol,
            id: SUBSCRIPTION_ID.to_string(),
            done: false,
        };
        sub.send(json!({ "type": "connection_init", "payload": {} }))
            .await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let msg = tokio::time::timeout_at(deadline, sub.recv_json())
                .await
                .unwrap_or_else(|_| panic!("no connection_ack from {ws_url} within 10 s"))
                .unwrap_or_else(|| panic!("{ws_url} closed before connection_ack"));
            match msg["type"].as_str() {
                Some("connection_ack") => break,
                Some("ka") | Some("ping") | Some("pong") => {}
                _ => panic!("expected connection_ack, got {msg}"),
            }
        }
        let start_type = match protocol {
            Protocol::GraphqlTransportWs => "subscribe",
            Protocol::GraphqlWs => "start",
        };
        sub.send(json!({
            "id": sub.id,
            "type": start_type,
            "payload": { "query": query, "variables": variables },
        }))
        .await;
        sub
    }

    /// The next event's `data`, or `None` once the server completed the
    /// subscription. Panics on an error, a closed connection or a timeout.
    pub async fn next(&mut self, timeout: Duration) -> Option<Value> {
        match self.next_message(timeout).await {
            Next::Data(d) => Some(d),
            Next::Complete => None,
            other => panic!(
                "subscription ({}): expected data, got {other:?}",
                self.protocol.name()
            ),
        }
    }

    /// The next thing the subscription delivers, whatever it is.
    pub async fn next_message(&mut self, timeout: Duration) -> Next {
        if self.done {
            return Next::Complete;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let msg = match tokio::time::timeout_at(deadline, self.recv_json()).await {
                Err(_) => return Next::Timeout,
                Ok(None) => {
                    self.done = true;
                    return Next::Closed;
                }
                Ok(Some(m)) => m,
            };
            let kind = msg["type"].as_str().unwrap_or("");
            match kind {
                "ping" => self.send(json!({ "type": "pong" })).await,
                "pong" | "ka" => {}
                "next" | "data" if msg["id"] == self.id.as_str() => {
                    let payload = msg["payload"].clone();
                    if payload
                        .get("errors")
                        .and_then(Value::as_array)
                        .is_some_and(|e| !e.is_empty())
                    {
                        return Next::Errors(payload);
                    }
                    return Next::Data(payload["data"].clone());
                }
                "error" => return Next::Error(msg["payload"].clone()),
                "complete" => {
                    self.done = true;
                    return Next::Complete;
                }
                "connection_error" => return Next::Error(msg["payload"].clone()),
                _ => panic!("unexpected WebSocket message: {msg}"),
            }
        }
    }

    /// Collects `n` data events, panicking if any takes longer than `each`.
    pub async fn take(&mut self, n: usize, each: Duration) -> Vec<Value> {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            match self.next(each).await {
                Some(d) => out.push(d),
                None => panic!("subscription completed after {i} of {n} events"),
            }
        }
        out
    }

    /// Asserts that nothing arrives for `quiet`.
    pub async fn assert_silent(&mut self, quiet: Duration) {
        match self.next_message(quiet).await {
            Next::Timeout => {}
            other => panic!("expected no event, got {other:?}"),
        }
    }

    /// Unsubscribes and closes the connection.
    pub async fn stop(mut self) {
        if !self.done {
            let stop_type = match self.protocol {
                Protocol::GraphqlTransportWs => "complete",
                Protocol::GraphqlWs => "stop",
            };
            let id = self.id.clone();
            self.send(json!({ "id": id, "type": stop_type })).await;
            if self.protocol == Protocol::GraphqlWs {
                self.send(json!({ "type": "connection_terminate" })).await;
            }
        }
        let _ = self.ws.close(None).await;
    }

    async fn send(&mut self, msg: Value) {
        // A send to a server that already went away is not the test's failure
        // here; the next read reports the closed connection.
        let _ = self.ws.send(Message::text(msg.to_string())).await;
    }

    /// The next JSON text message, `None` when the connection closed.
    async fn recv_json(&mut self) -> Option<Value> {
        loop {
            match self.ws.next().await? {
                Ok(Message::Text(t)) => {
                    return Some(
                        serde_json::from_str(t.as_str())
                            .unwrap_or_else(|e| panic!("WebSocket message is not JSON ({e}): {t}")),
                    )
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}
