//! A real HTTP proxy in front of a real subgraph that misbehaves on cue:
//! it hangs, answers 5xx or 429, sends bodies that are not GraphQL
//! responses or never end. Each request takes the next fault of the script,
//! or the standing one; it counts what reaches it, as the subgraph would:
//! requests, the connections they came on, and how many were in flight at
//! once.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use axum::{
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Router,
};
use serde_json::Value;
use tokio::{net::TcpListener, task::JoinHandle};

/// What the proxy does with one request.
#[derive(Clone)]
pub enum Fault {
    /// Forwards it to the subgraph and its answer back.
    Pass,
    /// Never answers.
    Hang,
    /// Answers this status, with `Retry-After` seconds and a JSON body when given.
    Status {
        status: u16,
        retry_after: Option<u64>,
        json: Option<Value>,
    },
    /// Answers 200 with this JSON body.
    Body(Value),
    /// Forwards it, then rewrites the subgraph's answer.
    Rewrite(fn(Value) -> Value),
    /// Answers 200 with a JSON body that never ends.
    Endless,
    /// Forwards it after this long.
    Slow(Duration),
}

struct Shared {
    upstream: String,
    http: reqwest::Client,
    standing: Mutex<Fault>,
    script: Mutex<VecDeque<Fault>>,
    requests: AtomicUsize,
    /// TCP connections accepted.
    connections: Arc<AtomicUsize>,
    /// Requests being answered now, and the most there were at once.
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    /// The request bodies, in order.
    bodies: Mutex<Vec<Value>>,
}

/// A running proxy; it stops when dropped.
pub struct Chaos {
    pub url: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for Chaos {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Chaos {
    /// A proxy on an ephemeral port forwarding `POST /graphql` to `upstream`.
    pub async fn start(upstream: &str) -> Chaos {
        let shared = Arc::new(Shared {
            upstream: upstream.to_string(),
            http: reqwest::Client::new(),
            standing: Mutex::new(Fault::Pass),
            script: Mutex::new(VecDeque::new()),
            requests: AtomicUsize::new(0),
            connections: Arc::new(AtomicUsize::new(0)),
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
            bodies: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/graphql", post(handle))
            .with_state(shared.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/graphql", listener.local_addr().expect("addr"));
        let connections = shared.connections.clone();
        let listener = axum::serve::ListenerExt::tap_io(listener, move |_| {
            connections.fetch_add(1, Ordering::SeqCst);
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Chaos { url, shared, task }
    }

    /// The fault of every request after the script runs out.
    pub fn set(&self, fault: Fault) {
        *self.shared.standing.lock().expect("lock") = fault;
    }

    /// Faults for the next requests, in order.
    pub fn script(&self, faults: impl IntoIterator<Item = Fault>) {
        self.shared.script.lock().expect("lock").extend(faults);
    }

    /// Requests that reached the proxy so far.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// The most requests that were being answered at once.
    pub fn most_in_flight(&self) -> usize {
        self.shared.most_in_flight.load(Ordering::SeqCst)
    }

    /// The request bodies received so far.
    pub fn bodies(&self) -> Vec<Value> {
        self.shared.bodies.lock().expect("lock").clone()
    }
}

/// A request being answered, counted out when it ends or is dropped.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn new(s: &'a Shared) -> Self {
        let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        s.most_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(s)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    s.requests.fetch_add(1, Ordering::SeqCst);
    let _counted = InFlight::new(&s);
    if let Ok(v) = serde_json::from_slice::<Value>(&body) {
        s.bodies.lock().expect("lock").push(v);
    }
    let fault = s
        .script
        .lock()
        .expect("lock")
        .pop_front()
        .unwrap_or_else(|| s.standing.lock().expect("lock").clone());
    match fault {
        Fault::Pass => forward(&s, &headers, body).await,
        Fault::Slow(wait) => {
            tokio::time::sleep(wait).await;
            forward(&s, &headers, body).await
        }
        Fault::Hang => {
            std::future::pending::<()>().await;
            StatusCode::OK.into_response()
        }
        Fault::Status {
            status,
            retry_after,
            json,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut resp = match json {
                Some(v) => (status, axum::Json(v)).into_response(),
                None => (status, "the subgraph is having a bad day").into_response(),
            };
            if let Some(secs) = retry_after {
                resp.headers_mut()
                    .insert("retry-after", secs.to_string().parse().expect("header"));
            }
            resp
        }
        Fault::Body(v) => axum::Json(v).into_response(),
        Fault::Rewrite(f) => {
            let answer = forward(&s, &headers, body).await;
            let bytes = axum::body::to_bytes(answer.into_body(), usize::MAX)
                .await
                .unwrap_or_default();
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            axum::Json(f(v)).into_response()
        }
        Fault::Endless => {
            let chunk = Bytes::from(vec![b' '; 64 * 1024]);
            let head = futures::stream::once(async {
                Ok::<_, std::io::Error>(Bytes::from("{\"data\": {\"x\": \""))
            });
            let tail = futures::stream::unfold(chunk, |c| async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                Some((Ok(c.clone()), c))
            });
            use futures::StreamExt;
            Response::builder()
                .header("content-type", "application/json")
                .body(Body::from_stream(head.chain(tail)))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
    }
}

async fn forward(s: &Shared, headers: &HeaderMap, body: Bytes) -> Response {
    let mut rb = s.http.post(&s.upstream).body(body);
    for (k, v) in headers {
        if k != "host" && k != "content-length" {
            rb = rb.header(k, v);
        }
    }
    match rb.send().await {
        Ok(r) => {
            let status = StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::OK);
            let bytes = r.bytes().await.unwrap_or_default();
            (status, [("content-type", "application/json")], bytes).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}
