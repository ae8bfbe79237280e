//! GraphQL over Server-Sent Events (the `graphql-sse` protocol, distinct
//! connections mode): a request to `/graphql` that accepts
//! `text/event-stream` gets one stream for its one operation, `next`
//! events then `complete`. Operations run exactly as over WebSocket
//! (`ws::operation`: the same limits, upstream sharing and enrichment of
//! each event); a client that goes away stops its subscription upstream.

use std::{convert::Infallible, sync::Arc};

use axum::{
    http::{header, HeaderMap},
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
};
use futures::Stream;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use crate::{
    engine::GraphQLRequest,
    ws::{
        operation::{Operation, Outgoing, Shared},
        protocol::Protocol,
    },
    AppState,
};

/// Messages queued between the operation and the client's stream.
const BUFFER: usize = 16;

/// Whether the client asked for an event stream.
pub fn wanted(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"))
}

/// Runs `request` and answers with its events.
pub fn respond(state: &Arc<AppState>, request: GraphQLRequest, headers: HeaderMap) -> Response {
    let (tx, rx) = mpsc::channel::<Outgoing>(BUFFER);
    let cancel = state.shutdown.child_token();
    let null =
        RawValue::from_string("null".into()).unwrap_or_else(|_| unreachable!("`null` is JSON"));
    let shared = Arc::new(Shared {
        protocol: Protocol::TransportWs,
        http: state.http.clone(),
        metrics: state.metrics.clone(),
        headers,
        init_payload: null,
        subscriptions: state.subscriptions.clone(),
    });
    let operation = Operation {
        shared,
        engine: state.engine(),
        id: "sse".into(),
        request,
        tx,
        cancel: cancel.clone(),
    };
    tokio::spawn(operation.run());
    // The stream owns the guard: the client leaving drops it, which stops
    // the operation (and its upstream subscription).
    let stream = events(rx, cancel.drop_guard());
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The operation's messages as `graphql-sse` events, ending after `complete`.
fn events(
    rx: mpsc::Receiver<Outgoing>,
    guard: tokio_util::sync::DropGuard,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(
        (rx, guard, Vec::<Event>::new(), false),
        |(mut rx, guard, mut pending, done)| async move {
            if let Some(event) = pending.pop() {
                return Some((Ok(event), (rx, guard, pending, done)));
            }
            if done {
                return None;
            }
            let out = rx.recv().await?;
            let mut translated = translate(&out.text);
            let done = translated.last().is_some_and(|(_, last)| *last);
            translated.reverse();
            pending.extend(translated.into_iter().map(|(e, _)| e));
            let first = pending.pop()?;
            Some((Ok(first), (rx, guard, pending, done)))
        },
    )
}

/// One operation message as events; `true` marks the last one.
fn translate(text: &str) -> Vec<(Event, bool)> {
    let message: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    let payload = message
        .get("payload")
        .map(|p| p.to_string())
        .unwrap_or_default();
    let complete = || (Event::default().event("complete").data(""), true);
    match message.get("type").and_then(|t| t.as_str()) {
        Some("next") => vec![(Event::default().event("next").data(payload), false)],
        // The operation failed before a result: its errors as the one result.
        Some("error") => vec![
            (
                Event::default()
                    .event("next")
                    .data(format!("{{\"errors\":{payload}}}")),
                false,
            ),
            complete(),
        ],
        _ => vec![complete()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<bool> {
        translate(text).into_iter().map(|(_, last)| last).collect()
    }

    #[test]
    fn errors_become_a_result_then_the_end() {
        assert_eq!(
            kinds(r#"{"type":"next","id":"sse","payload":{"data":{}}}"#),
            [false]
        );
        assert_eq!(
            kinds(r#"{"type":"error","id":"sse","payload":[{"message":"x"}]}"#),
            [false, true]
        );
        assert_eq!(kinds(r#"{"type":"complete","id":"sse"}"#), [true]);
    }
}
