//! One client operation on a WebSocket: a query or mutation runs once; a
//! subscription joins its upstream subscription (see `upstream`: sockets
//! and identical subscriptions are shared) and each upstream event is
//! completed through the stitched execution (e.g. a log line's
//! `pipeline { status }`) before it goes to the client.

use std::sync::Arc;

use apollo_compiler::{
    ast::OperationType,
    response::{GraphQLError, JsonValue},
};
use axum::http::HeaderMap;
use serde_json::value::RawValue;
use stitching::{
    authorization::Grants,
    execute::{self, error, SubscriptionStart},
    PreparedOperation,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    protocol::{self, Protocol},
    upstream::{Event, Feed, SubscribeError, Subscriptions, Target},
};
use crate::{
    engine::{Engine, GraphQLRequest, HttpTransport, Outcome, SubgraphClient},
    metrics::Metrics,
};

/// A message for the client, tagged with the task that produced it so the
/// connection can drop messages of operations the client already completed.
pub struct Outgoing {
    pub task: tokio::task::Id,
    pub text: String,
}

/// What every operation of one client connection shares.
pub struct Shared {
    pub protocol: Protocol,
    pub metrics: Arc<Metrics>,
    /// The client's upgrade request headers (propagated per subgraph config).
    pub headers: HeaderMap,
    /// What the client's token lets it see.
    pub grants: Grants,
    /// The client's `connection_init` payload, passed on to subgraphs.
    pub init_payload: Box<RawValue>,
    /// Upstream sockets shared by every client.
    pub subscriptions: Arc<Subscriptions>,
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
        metrics.subscriptions_active.inc();
        ActiveGuard(metrics.clone())
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.subscriptions_active.dec();
    }
}

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
            o = self.engine.execute(&self.request, &s.headers, &s.grants, true) => o,
        };
        match outcome {
            Outcome::Refused(e) => self.send_error(&e.to_graphql_errors()).await,
            Outcome::Executed(r, _) => {
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
        let filtered = match self.engine.authorize(prepared, &self.shared.grants) {
            Ok(f) => f,
            Err(e) => return self.send_error(&e.to_graphql_errors()).await,
        };
        let req = execute::Request {
            supergraph: &self.engine.supergraph,
            document: &prepared.document,
            operation: prepared.operation(),
            plan: filtered.as_ref().map_or(&prepared.plan, |f| &f.plan),
            variables: &variables,
            authorization: filtered.as_deref(),
        };
        let start = match execute::subscription_start(&req) {
            Ok(s) => s,
            Err(e) => return self.send_error(&[e]).await,
        };
        let _active = ActiveGuard::new(&self.shared.metrics);
        let client = &self.engine.clients[start.subgraph];
        let request = match serde_json::to_string(&start.request) {
            Ok(r) => r,
            Err(e) => return self.send_unavailable(client, &e.to_string()).await,
        };
        let subscribed = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return,
            f = self.shared.subscriptions.subscribe(self.target(client), request) => f,
        };
        let mut feed = match subscribed {
            Ok(f) => f,
            Err(SubscribeError::Unavailable(why)) => {
                return self.send_unavailable(client, &why).await
            }
            Err(SubscribeError::AtCapacity(max)) => {
                let e = error(
                    format!("the gateway already holds {max} upstream subscriptions, its `max_upstream_subscriptions`; retry later"),
                    "SUBSCRIPTION_LIMIT",
                );
                return self.send_error(&[e]).await;
            }
        };
        // Cancelled: dropping the feed releases the upstream share.
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => {}
            _ = self.relay(&mut feed, client, &req, &start) => {}
        }
    }

    /// Where this client's subscriptions to `client` go: its propagated
    /// and configured handshake headers and its `connection_init` payload
    /// pick the shared socket.
    fn target(&self, client: &SubgraphClient) -> Target {
        let mut headers = Vec::new();
        for name in &client.propagate {
            for v in self.shared.headers.get_all(name) {
                headers.push((name.clone(), v.clone()));
            }
        }
        for (k, v) in &client.headers {
            headers.retain(|(n, _)| n != k);
            headers.push((k.clone(), v.clone()));
        }
        let init = match self.shared.init_payload.get() {
            "null" => r#"{"type":"connection_init"}"#.to_string(),
            payload => format!(r#"{{"type":"connection_init","payload":{payload}}}"#),
        };
        Target {
            ws_url: client.ws_url.clone(),
            headers,
            init,
            timeout: client.timeout,
        }
    }

    /// Completes each upstream event through the stitched execution and
    /// relays it, until the subscription ends or the client goes away.
    async fn relay(
        &self,
        feed: &mut Feed,
        client: &SubgraphClient,
        req: &execute::Request<'_>,
        start: &SubscriptionStart,
    ) {
        let s = &self.shared;
        let transport = HttpTransport {
            engine: &self.engine,
            headers: &s.headers,
            // Each event is bounded by the subgraphs' own timeouts.
            deadline: None,
        };
        loop {
            match feed.next().await {
                Event::Next(event) => {
                    let mut response =
                        execute::subscription_event(req, start, &event, &transport).await;
                    self.engine.client_errors(&mut response.errors, &s.headers);
                    if !self
                        .send(protocol::next(s.protocol, &self.id, &response))
                        .await
                    {
                        return;
                    }
                }
                Event::Error(errors) => return self.send_subgraph_errors(client, errors).await,
                Event::Complete => {
                    self.send(protocol::complete(&self.id)).await;
                    return;
                }
                Event::Gone(why) => return self.send_unavailable(client, &why).await,
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

    /// The subgraph's own `error` message: its errors gain
    /// `extensions.service` and take their client form like any other
    /// subgraph error (masked when `include_subgraph_errors` is off).
    async fn send_subgraph_errors(&self, client: &SubgraphClient, payload: JsonValue) {
        let list = match payload {
            JsonValue::Array(list) => list,
            other => vec![other],
        };
        let mut errors: Vec<GraphQLError> = list
            .into_iter()
            .map(|e| {
                let mut e: GraphQLError = apollo_compiler::response::serde_json_bytes::from_value(
                    e,
                )
                .unwrap_or_else(|_| {
                    error(
                        "the subscription's source answered an error",
                        "SUBGRAPH_ERROR",
                    )
                });
                e.extensions.insert("service", client.name.as_str().into());
                e.extensions
                    .insert(execute::internal::SUBGRAPH_ERROR, true.into());
                e
            })
            .collect();
        self.engine.client_errors(&mut errors, &self.shared.headers);
        self.send_error(&errors).await;
    }

    /// An `unavailable` error, in its client form.
    async fn send_unavailable(&self, client: &SubgraphClient, why: &str) {
        let mut errors = [unavailable(client, why)];
        self.engine.client_errors(&mut errors, &self.shared.headers);
        self.send_error(&errors).await;
    }

    async fn send_error<P: serde::Serialize + ?Sized>(&self, errors: &P) {
        self.send(protocol::error(&self.id, &errors)).await;
    }
}

/// The subscription's subgraph cannot serve it: the client hears which
/// one; why (internal URLs, socket errors) goes to the log.
fn unavailable(client: &SubgraphClient, why: &str) -> apollo_compiler::response::GraphQLError {
    let mut e = error(
        format!(
            "the subscription's source, the `{}` subgraph, is unavailable",
            client.name
        ),
        "SUBGRAPH_UNAVAILABLE",
    );
    e.extensions.insert("service", client.name.as_str().into());
    e.extensions.insert(execute::internal::DETAIL, why.into());
    e
}
