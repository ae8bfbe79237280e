//! Operations answered as a stream over plain HTTP, for clients that do not
//! use WebSocket: Server-Sent Events (the `graphql-sse` protocol, distinct
//! connections mode) and Apollo's multipart subscriptions
//! (`multipart/mixed;subscriptionSpec=1.0`). Either way the operation runs
//! exactly as over WebSocket (`ws::operation`: the same limits, upstream
//! sharing and enrichment of each event), and a client that goes away stops
//! its subscription upstream.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    body::Body,
    http::{header, HeaderMap, HeaderValue},
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
};
use futures::{Stream, StreamExt};
use serde_json::value::RawValue;
use stitching::authorization::Grants;
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
/// A multipart stream sends an empty part this often while nothing happens.
const HEARTBEAT: Duration = Duration::from_secs(5);
const MULTIPART: &str = "multipart/mixed;boundary=\"graphql\";subscriptionSpec=\"1.0\"";

/// How the answer is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Sse,
    Multipart,
}

/// Which stream the client asked for, if any.
pub fn wanted(headers: &HeaderMap) -> Option<Framing> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    if accept.contains("text/event-stream") {
        Some(Framing::Sse)
    } else if accept.contains("multipart/mixed") && accept.contains("subscriptionSpec") {
        Some(Framing::Multipart)
    } else {
        None
    }
}

/// What the operation produced, before framing.
#[derive(Debug, PartialEq)]
enum Item {
    /// One result (`{data, errors}`), as JSON.
    Result(String),
    /// Nothing for a while (multipart only).
    Heartbeat,
    End,
}

/// Runs `request` and answers with its results in `framing`.
pub fn respond(
    state: &Arc<AppState>,
    request: GraphQLRequest,
    headers: HeaderMap,
    grants: Grants,
    framing: Framing,
) -> Response {
    let (tx, rx) = mpsc::channel::<Outgoing>(BUFFER);
    let cancel = state.shutdown.child_token();
    let null =
        RawValue::from_string("null".into()).unwrap_or_else(|_| unreachable!("`null` is JSON"));
    let shared = Arc::new(Shared {
        protocol: Protocol::TransportWs,
        metrics: state.metrics.clone(),
        headers,
        grants,
        init_payload: null,
        subscriptions: state.subscriptions.clone(),
    });
    let operation = Operation {
        shared,
        engine: state.engine(),
        id: "stream".into(),
        request,
        tx,
        cancel: cancel.clone(),
    };
    tokio::spawn(operation.run());
    // The stream owns the guard: the client leaving drops it, which stops
    // the operation (and its upstream subscription).
    let heartbeat = (framing == Framing::Multipart).then_some(HEARTBEAT);
    let items = items(rx, cancel.drop_guard(), heartbeat);
    match framing {
        Framing::Sse => {
            let events = items.filter_map(|item| async move {
                match item {
                    Item::Result(json) => Some(Ok::<_, Infallible>(
                        Event::default().event("next").data(json),
                    )),
                    Item::End => Some(Ok(Event::default().event("complete").data(""))),
                    Item::Heartbeat => None,
                }
            });
            Sse::new(events)
                .keep_alive(KeepAlive::default())
                .into_response()
        }
        Framing::Multipart => {
            let parts = items.map(|item| Ok::<_, Infallible>(multipart_part(&item)));
            let mut resp = Body::from_stream(parts).into_response();
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(MULTIPART));
            resp
        }
    }
}

/// One multipart part: a result as `{"payload": ...}`, a heartbeat as `{}`,
/// and the closing boundary at the end.
fn multipart_part(item: &Item) -> String {
    const PART: &str = "\r\n--graphql\r\ncontent-type: application/json; charset=utf-8\r\n\r\n";
    match item {
        Item::Result(json) => format!("{PART}{{\"payload\":{json}}}"),
        Item::Heartbeat => format!("{PART}{{}}"),
        Item::End => "\r\n--graphql--\r\n".into(),
    }
}

/// The operation's messages as items, ending after `End`.
fn items(
    rx: mpsc::Receiver<Outgoing>,
    guard: tokio_util::sync::DropGuard,
    heartbeat: Option<Duration>,
) -> impl Stream<Item = Item> {
    futures::stream::unfold(
        (rx, guard, Vec::<Item>::new(), false),
        move |(mut rx, guard, mut pending, done)| async move {
            if let Some(item) = pending.pop() {
                return Some((item, (rx, guard, pending, done)));
            }
            if done {
                return None;
            }
            let out = match heartbeat {
                None => rx.recv().await?,
                Some(every) => match tokio::time::timeout(every, rx.recv()).await {
                    Ok(out) => out?,
                    Err(_) => return Some((Item::Heartbeat, (rx, guard, pending, done))),
                },
            };
            let mut translated = translate(&out.text);
            let done = translated.last() == Some(&Item::End);
            translated.reverse();
            pending.extend(translated);
            let first = pending.pop()?;
            Some((first, (rx, guard, pending, done)))
        },
    )
}

/// One operation message as items.
fn translate(text: &str) -> Vec<Item> {
    let message: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    let payload = message
        .get("payload")
        .map(|p| p.to_string())
        .unwrap_or_default();
    match message.get("type").and_then(|t| t.as_str()) {
        Some("next") => vec![Item::Result(payload)],
        // The operation failed before a result: its errors as the one result.
        Some("error") => vec![Item::Result(format!("{{\"errors\":{payload}}}")), Item::End],
        _ => vec![Item::End],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_become_a_result_then_the_end() {
        let next = r#"{"type":"next","id":"stream","payload":{"data":{}}}"#;
        assert_eq!(translate(next), [Item::Result(r#"{"data":{}}"#.into())]);
        let error = r#"{"type":"error","id":"stream","payload":[{"message":"x"}]}"#;
        assert_eq!(
            translate(error),
            [
                Item::Result(r#"{"errors":[{"message":"x"}]}"#.into()),
                Item::End
            ]
        );
        assert_eq!(
            translate(r#"{"type":"complete","id":"stream"}"#),
            [Item::End]
        );
    }

    #[test]
    fn multipart_parts_follow_apollos_subscription_spec() {
        assert_eq!(
            multipart_part(&Item::Result("{\"data\":1}".into())),
            "\r\n--graphql\r\ncontent-type: application/json; charset=utf-8\r\n\r\n{\"payload\":{\"data\":1}}"
        );
        assert!(multipart_part(&Item::Heartbeat).ends_with("\r\n\r\n{}"));
        assert_eq!(multipart_part(&Item::End), "\r\n--graphql--\r\n");
    }

    #[test]
    fn the_accept_header_picks_the_framing() {
        let with = |accept: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_static(accept));
            wanted(&h)
        };
        assert_eq!(with("text/event-stream"), Some(Framing::Sse));
        assert_eq!(
            with("multipart/mixed;boundary=\"graphql\";subscriptionSpec=1.0,application/json"),
            Some(Framing::Multipart)
        );
        assert_eq!(with("application/json"), None);
    }
}
