//! Support for the gateway's WebSocket tests: a raw protocol client that
//! sees every message and close code (several operations per socket), and a
//! recording TCP proxy put between the gateway and a subgraph, so tests can
//! observe upstream connections opening and closing and what the gateway
//! sent on them (handshake headers, `connection_init`).

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc, Mutex,
    },
    time::Duration,
};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use tokio_tungstenite::{
    tungstenite::{self, client::IntoClientRequest, http::HeaderValue, Message},
    MaybeTlsStream, WebSocketStream,
};

use crate::{
    client::Protocol,
    platform::{start_gateway, subgraph_entries, Platform},
    stack::Subgraphs,
};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the socket delivered.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    Json(Value),
    /// The server closed: code and reason of its close frame, if any.
    Closed(Option<(u16, String)>),
    Timeout,
}

/// A raw GraphQL-over-WebSocket client: nothing automatic but answering
/// `ping` (unless `answer_pings` is turned off, when `recv` returns them).
pub struct WsClient {
    ws: Ws,
    pub protocol: Protocol,
    pub answer_pings: bool,
}

impl WsClient {
    /// Opens a socket offering `subprotocol`, with extra handshake headers.
    pub async fn connect(
        url: &str,
        subprotocol: &str,
        headers: &[(&str, &str)],
    ) -> Result<(Ws, String), tungstenite::Error> {
        let mut request = url.into_client_request()?;
        let h = request.headers_mut();
        h.insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(subprotocol).unwrap(),
        );
        for (k, v) in headers {
            h.insert(
                tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let (ws, resp) = tokio_tungstenite::connect_async(request).await?;
        let chosen = resp
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        Ok((ws, chosen))
    }

    /// Opens a socket speaking `protocol` (asserts the server chose it).
    pub async fn open(url: &str, protocol: Protocol) -> WsClient {
        Self::open_with(url, protocol, &[]).await
    }

    pub async fn open_with(url: &str, protocol: Protocol, headers: &[(&str, &str)]) -> WsClient {
        let (ws, chosen) = Self::connect(url, protocol.name(), headers)
            .await
            .unwrap_or_else(|e| panic!("WebSocket connect to {url} failed: {e}"));
        assert_eq!(chosen, protocol.name(), "server chose another subprotocol");
        WsClient {
            ws,
            protocol,
            answer_pings: true,
        }
    }

    /// `open` + `connection_init` with `payload`, waiting for `connection_ack`.
    pub async fn ready(url: &str, protocol: Protocol) -> WsClient {
        let mut c = Self::open(url, protocol).await;
        c.init(json!({})).await;
        c
    }

    /// Sends `connection_init` and waits for `connection_ack` (skipping `ka`).
    pub async fn init(&mut self, payload: Value) {
        self.send(json!({ "type": "connection_init", "payload": payload }))
            .await;
        loop {
            match self.recv(Duration::from_secs(10)).await {
                Received::Json(m) if m["type"] == "connection_ack" => return,
                Received::Json(m) if m["type"] == "ka" => {}
                other => panic!("expected connection_ack, got {other:?}"),
            }
        }
    }

    pub async fn send(&mut self, msg: Value) {
        self.send_text(&msg.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        // A send to a closed socket shows up on the next read.
        let _ = self.ws.send(Message::text(text.to_string())).await;
    }

    /// `subscribe` (legacy: `start`) of any operation.
    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        let kind = match self.protocol {
            Protocol::GraphqlTransportWs => "subscribe",
            Protocol::GraphqlWs => "start",
        };
        self.send(json!({ "id": id, "type": kind, "payload": { "query": query, "variables": variables } }))
            .await;
    }

    /// `complete` (legacy: `stop`).
    pub async fn complete(&mut self, id: &str) {
        let kind = match self.protocol {
            Protocol::GraphqlTransportWs => "complete",
            Protocol::GraphqlWs => "stop",
        };
        self.send(json!({ "id": id, "type": kind })).await;
    }

    /// The next message (answering `ping` on the way), a close, or a timeout.
    pub async fn recv(&mut self, timeout: Duration) -> Received {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let msg = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Received::Timeout,
                Ok(None) | Ok(Some(Err(_))) => return Received::Closed(None),
                Ok(Some(Ok(m))) => m,
            };
            match msg {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(t.as_str())
                        .unwrap_or_else(|e| panic!("WebSocket message is not JSON ({e}): {t}"));
                    if v["type"] == "ping" && self.answer_pings {
                        self.send(json!({ "type": "pong" })).await;
                        continue;
                    }
                    return Received::Json(v);
                }
                Message::Close(f) => {
                    return Received::Closed(f.map(|f| (u16::from(f.code), f.reason.to_string())))
                }
                _ => {}
            }
        }
    }

    /// The next operation message (skipping `ka` and `pong`); panics on a close or timeout.
    pub async fn recv_op(&mut self, timeout: Duration) -> Value {
        loop {
            match self.recv(timeout).await {
                Received::Json(m) if m["type"] == "ka" || m["type"] == "pong" => {}
                Received::Json(m) => return m,
                other => panic!("expected an operation message, got {other:?}"),
            }
        }
    }

    /// Asserts that nothing but keep-alives arrives for `quiet`.
    pub async fn assert_quiet(&mut self, quiet: Duration) {
        let deadline = tokio::time::Instant::now() + quiet;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await {
                Received::Timeout => return,
                Received::Json(m) if m["type"] == "ka" || m["type"] == "pong" => {}
                other => panic!("expected nothing, got {other:?}"),
            }
        }
    }

    /// Waits for the server to close; its close code and reason.
    pub async fn expect_close(&mut self, timeout: Duration) -> (u16, String) {
        loop {
            match self.recv(timeout).await {
                Received::Closed(Some(c)) => return c,
                Received::Json(_) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    /// Drops the TCP connection without a close handshake.
    pub fn abort(self) {
        drop(self.ws);
    }
}

/// `next` (legacy: `data`) for this protocol.
pub fn next_type(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::GraphqlTransportWs => "next",
        Protocol::GraphqlWs => "data",
    }
}

/// A TCP proxy to `target` that counts connections and records the first
/// 64 KiB each client sends. Stops when dropped.
pub struct TcpProxy {
    pub addr: SocketAddr,
    open: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
    recorded: Arc<Mutex<Vec<Vec<u8>>>>,
    task: JoinHandle<()>,
}

const RECORD_LIMIT: usize = 64 * 1024;

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let (o, a, r) = (open.clone(), accepted.clone(), recorded.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let index = {
                    let mut rec = r.lock().unwrap();
                    rec.push(Vec::new());
                    rec.len() - 1
                };
                a.fetch_add(1, SeqCst);
                o.fetch_add(1, SeqCst);
                let (o, r) = (o.clone(), r.clone());
                tokio::spawn(async move {
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = async {
                        let mut buf = [0u8; 4096];
                        loop {
                            let n = match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            {
                                let mut rec = r.lock().unwrap();
                                let room = RECORD_LIMIT.saturating_sub(rec[index].len());
                                rec[index].extend_from_slice(&buf[..n.min(room)]);
                            }
                            if sw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = sw.shutdown().await;
                    };
                    let down = async {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                        let _ = cw.shutdown().await;
                    };
                    tokio::join!(up, down);
                    o.fetch_sub(1, SeqCst);
                });
            }
        });
        TcpProxy {
            addr,
            open,
            accepted,
            recorded,
            task,
        }
    }

    /// Connections currently open through the proxy.
    pub fn open(&self) -> usize {
        self.open.load(SeqCst)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(SeqCst)
    }

    /// What the `n`th client sent: the HTTP upgrade head and its text frames.
    pub fn client_sent(&self, n: usize) -> (String, Vec<String>) {
        let bytes = self.recorded.lock().unwrap()[n].clone();
        decode_client_stream(&bytes)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Splits a WebSocket client's byte stream into its HTTP head and the
/// (unmasked) text of its complete frames.
pub fn decode_client_stream(bytes: &[u8]) -> (String, Vec<String>) {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return (String::from_utf8_lossy(bytes).into_owned(), Vec::new());
    };
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let mut rest = &bytes[end + 4..];
    let mut texts = Vec::new();
    while rest.len() >= 2 {
        let opcode = rest[0] & 0x0f;
        let masked = rest[1] & 0x80 != 0;
        let mut len = (rest[1] & 0x7f) as usize;
        let mut at = 2;
        if len == 126 {
            if rest.len() < 4 {
                break;
            }
            len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
            at = 4;
        } else if len == 127 {
            if rest.len() < 10 {
                break;
            }
            len = u64::from_be_bytes(rest[2..10].try_into().unwrap()) as usize;
            at = 10;
        }
        let mask = if masked {
            if rest.len() < at + 4 {
                break;
            }
            let m = [rest[at], rest[at + 1], rest[at + 2], rest[at + 3]];
            at += 4;
            Some(m)
        } else {
            None
        };
        if rest.len() < at + len {
            break;
        }
        let mut payload = rest[at..at + len].to_vec();
        if let Some(m) = mask {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= m[i % 4];
            }
        }
        if opcode == 1 {
            texts.push(String::from_utf8_lossy(&payload).into_owned());
        }
        rest = &rest[at + len..];
    }
    (head, texts)
}

/// The platform with the gateway reaching the log subgraph's WebSocket
/// through a [`TcpProxy`]. `log_extra` is added to the log `[[subgraphs]]`
/// entry (e.g. `headers = { ... }`), `gateway_section` to `[gateway]`.
pub async fn platform_with_log_proxy(
    log_extra: &str,
    gateway_section: &str,
) -> (Platform, TcpProxy) {
    let subgraphs = Subgraphs::start().await;
    let log_ws = subgraphs.log_ws_url();
    let target: SocketAddr = log_ws
        .trim_start_matches("ws://")
        .trim_end_matches("/graphql")
        .parse()
        .expect("log address");
    let proxy = TcpProxy::start(target).await;
    let entries = subgraph_entries(&subgraphs).replace(
        &format!("ws_url = \"{log_ws}\"\n"),
        &format!("ws_url = \"ws://{}/graphql\"\n{log_extra}\n", proxy.addr),
    );
    let config_dir = tempfile::tempdir().expect("temp dir");
    let text = format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\nhot_reload = false\n{gateway_section}\n\n{entries}"
    );
    let path = config_dir.path().join("config.toml");
    std::fs::write(&path, text).expect("write config");
    let gateway = start_gateway(&path).await.expect("gateway starts");
    (
        Platform {
            subgraphs,
            gateway,
            config_dir,
        },
        proxy,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_masked_client_frames() {
        let text = b"{\"type\":\"connection_init\"}";
        let mask = [1u8, 2, 3, 4];
        let mut bytes = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        bytes.push(0x81);
        bytes.push(0x80 | text.len() as u8);
        bytes.extend_from_slice(&mask);
        bytes.extend(text.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        let (head, frames) = decode_client_stream(&bytes);
        assert!(head.starts_with("GET / HTTP/1.1"));
        assert_eq!(frames, vec![String::from_utf8(text.to_vec()).unwrap()]);
    }
}
