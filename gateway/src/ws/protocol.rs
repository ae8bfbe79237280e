//! The two GraphQL-over-WebSocket subprotocols in protocol-neutral terms:
//! what a client may send, what the gateway answers, and how a connection
//! ends. Pure functions, so the rules are unit-tested here.
//!
//! `graphql-transport-ws` (the `graphql-ws` library's protocol) closes the
//! socket with a 44xx code on any protocol violation. The legacy `graphql-ws`
//! (subscriptions-transport-ws) has no such codes: violations are answered
//! with `error` / `connection_error` messages, and only a rejected
//! `connection_init` or a missing one ends the connection.

use axum::http::HeaderMap;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::engine::GraphQLRequest;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `graphql-transport-ws`.
    TransportWs,
    /// `graphql-ws`, the legacy subscriptions-transport-ws protocol.
    LegacyWs,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::TransportWs => "graphql-transport-ws",
            Protocol::LegacyWs => "graphql-ws",
        }
    }

    /// The first supported subprotocol the client offers in `Sec-WebSocket-Protocol`.
    pub fn negotiate(headers: &HeaderMap) -> Option<Protocol> {
        headers
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .find_map(|p| match p.trim() {
                "graphql-transport-ws" => Some(Protocol::TransportWs),
                "graphql-ws" => Some(Protocol::LegacyWs),
                _ => None,
            })
    }
}

/// What a client asked for.
#[derive(Debug)]
pub enum ClientMessage {
    /// `connection_init`; the payload is `null` when absent.
    Init(Box<RawValue>),
    Ping(Option<Box<RawValue>>),
    Pong,
    /// `subscribe` (legacy: `start`): any operation.
    Subscribe {
        id: String,
        request: Box<GraphQLRequest>,
    },
    /// `complete` (legacy: `stop`).
    Complete {
        id: String,
    },
    /// Legacy `connection_terminate`.
    Terminate,
}

#[derive(serde::Deserialize)]
struct Raw<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    payload: Option<Box<RawValue>>,
}

/// Parses one text message; the error says what is wrong (sent as the 4400
/// close reason or a legacy `error`).
pub fn parse(protocol: Protocol, text: &str) -> Result<ClientMessage, String> {
    let raw: Raw = serde_json::from_str(text)
        .map_err(|e| format!("the message is not a JSON object with a `type`: {e}"))?;
    let id = |raw: &Raw| -> Result<String, String> {
        match &raw.id {
            Some(id) if !id.is_empty() => Ok(id.clone()),
            _ => Err(format!(
                "a `{}` message needs a non-empty string `id`",
                raw.kind
            )),
        }
    };
    let subscribe_type = match protocol {
        Protocol::TransportWs => "subscribe",
        Protocol::LegacyWs => "start",
    };
    let complete_type = match protocol {
        Protocol::TransportWs => "complete",
        Protocol::LegacyWs => "stop",
    };
    match raw.kind.as_ref() {
        "connection_init" => Ok(ClientMessage::Init(
            raw.payload.unwrap_or_else(null_payload),
        )),
        "ping" if protocol == Protocol::TransportWs => Ok(ClientMessage::Ping(raw.payload)),
        "pong" if protocol == Protocol::TransportWs => Ok(ClientMessage::Pong),
        "connection_terminate" if protocol == Protocol::LegacyWs => Ok(ClientMessage::Terminate),
        k if k == subscribe_type => {
            let id = id(&raw)?;
            let payload = raw
                .payload
                .ok_or_else(|| format!("`{k}` needs a `payload` with the `query`"))?;
            let request: GraphQLRequest = serde_json::from_str(payload.get())
                .map_err(|e| format!("the `{k}` payload is not a GraphQL request: {e}"))?;
            let named = request.document_id.is_some()
                || request
                    .extensions
                    .as_ref()
                    .is_some_and(|e| e.get("persistedQuery").is_some());
            if request.query.is_none() && !named {
                return Err(format!("the `{k}` payload has no `query` string (nor a `documentId` or persisted-query hash)"));
            }
            Ok(ClientMessage::Subscribe {
                id,
                request: Box::new(request),
            })
        }
        k if k == complete_type => Ok(ClientMessage::Complete { id: id(&raw)? }),
        other => Err(format!(
            "`{other}` is not a message a client sends in {}",
            protocol.name()
        )),
    }
}

fn null_payload() -> Box<RawValue> {
    RawValue::from_string("null".into()).unwrap_or_else(|_| unreachable!("`null` is JSON"))
}

/// The rule for accepting `connection_init`: the payload must be absent,
/// `null` or a JSON object (it is passed on as is to the subgraphs'
/// `connection_init`). Anything else is refused: 4403 Forbidden, legacy:
/// `connection_error`.
pub fn init_payload_allowed(payload: &RawValue) -> bool {
    let t = payload.get().trim_start();
    t.starts_with('{') || t == "null"
}

/// Why the gateway closes a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Close {
    BadMessage(String),
    Unauthorized,
    Forbidden,
    /// `[gateway.jwt]` refused the connection (why).
    Unauthenticated(String),
    InitTimeout,
    SubscriberExists(String),
    TooManyInit,
    Internal,
    /// The gateway is shutting down.
    GoingAway,
    /// Legacy `connection_terminate`.
    Normal,
    /// A client message over the size limit (the limit, in bytes).
    TooBig(usize),
}

impl Close {
    pub fn code(&self) -> u16 {
        match self {
            Close::BadMessage(_) => 4400,
            Close::Unauthorized => 4401,
            Close::Forbidden | Close::Unauthenticated(_) => 4403,
            Close::InitTimeout => 4408,
            Close::SubscriberExists(_) => 4409,
            Close::TooManyInit => 4429,
            Close::Internal => 4500,
            Close::GoingAway => 1001,
            Close::Normal => 1000,
            Close::TooBig(_) => 1009,
        }
    }

    /// The close reason; at most 123 bytes, as a close frame allows.
    pub fn reason(&self) -> String {
        let r = match self {
            Close::BadMessage(why) => why.clone(),
            Close::Unauthorized => {
                "Unauthorized: send connection_init and wait for connection_ack before subscribing"
                    .into()
            }
            Close::Forbidden => {
                "Forbidden: the connection_init payload must be a JSON object".into()
            }
            Close::Unauthenticated(why) => format!("Forbidden: {why}"),
            Close::InitTimeout => "Connection initialisation timeout".into(),
            Close::SubscriberExists(id) => format!("Subscriber for {id} already exists"),
            Close::TooManyInit => "Too many initialisation requests".into(),
            Close::Internal => "Internal server error".into(),
            Close::GoingAway => "the gateway is shutting down".into(),
            Close::Normal => String::new(),
            Close::TooBig(max) => {
                format!("a message is larger than {max} bytes (`max_body_bytes`)")
            }
        };
        truncate(r, 123)
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[derive(Serialize)]
struct Out<'a, P: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<P>,
}

fn encode<P: Serialize>(kind: &str, id: Option<&str>, payload: Option<P>) -> String {
    // Serialising our own types to a String cannot fail; an empty message
    // would be refused by the client rather than crash the gateway.
    serde_json::to_string(&Out { kind, id, payload }).unwrap_or_default()
}

pub fn ack() -> String {
    encode::<()>("connection_ack", None, None)
}

pub fn ping() -> String {
    encode::<()>("ping", None, None)
}

pub fn pong(payload: Option<&RawValue>) -> String {
    encode("pong", None, payload)
}

/// Legacy keep-alive.
pub fn ka() -> String {
    encode::<()>("ka", None, None)
}

/// One result: `next` (legacy: `data`) with `{data, errors}`.
pub fn next<P: Serialize>(protocol: Protocol, id: &str, response: &P) -> String {
    let kind = match protocol {
        Protocol::TransportWs => "next",
        Protocol::LegacyWs => "data",
    };
    encode(kind, Some(id), Some(response))
}

/// The operation failed before (or instead of) a result: a list of GraphQL errors.
pub fn error<P: Serialize>(id: &str, errors: &P) -> String {
    encode("error", Some(id), Some(errors))
}

pub fn complete(id: &str) -> String {
    encode::<()>("complete", Some(id), None)
}

/// A legacy message that cannot be tied to an operation: `{type: error, payload: {message}}`.
pub fn legacy_error(message: &str) -> String {
    encode(
        "error",
        None,
        Some(serde_json::json!({ "message": message })),
    )
}

/// Legacy refusal of `connection_init`.
pub fn connection_error(message: &str) -> String {
    encode(
        "connection_error",
        None,
        Some(serde_json::json!({ "message": message })),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("sec-websocket-protocol", v.parse().unwrap());
        h
    }

    #[test]
    fn negotiation_takes_the_first_supported_offer() {
        assert_eq!(
            Protocol::negotiate(&headers("graphql-ws")),
            Some(Protocol::LegacyWs)
        );
        assert_eq!(
            Protocol::negotiate(&headers("soap, graphql-transport-ws, graphql-ws")),
            Some(Protocol::TransportWs)
        );
        assert_eq!(Protocol::negotiate(&headers("soap")), None);
        assert_eq!(Protocol::negotiate(&HeaderMap::new()), None);
    }

    #[test]
    fn messages_parse_per_protocol() {
        let t = Protocol::TransportWs;
        assert!(
            matches!(parse(t, r#"{"type":"connection_init"}"#), Ok(ClientMessage::Init(p)) if p.get() == "null")
        );
        assert!(matches!(
            parse(t, r#"{"type":"subscribe","id":"a","payload":{"query":"{ x }"}}"#),
            Ok(ClientMessage::Subscribe { id, .. }) if id == "a"
        ));
        assert!(parse(t, r#"{"type":"subscribe","id":"a","payload":{}}"#).is_err());
        assert!(parse(t, r#"{"type":"subscribe","payload":{"query":"{ x }"}}"#).is_err());
        assert!(parse(
            t,
            r#"{"type":"start","id":"a","payload":{"query":"{ x }"}}"#
        )
        .is_err());
        assert!(parse(t, r#"{"type":"next","id":"a"}"#).is_err());
        assert!(parse(t, "not json").is_err());
        assert!(matches!(
            parse(t, r#"{"type":"complete","id":"a"}"#),
            Ok(ClientMessage::Complete { .. })
        ));
        let l = Protocol::LegacyWs;
        assert!(matches!(
            parse(
                l,
                r#"{"type":"start","id":"1","payload":{"query":"{ x }"}}"#
            ),
            Ok(ClientMessage::Subscribe { .. })
        ));
        assert!(matches!(
            parse(l, r#"{"type":"stop","id":"1"}"#),
            Ok(ClientMessage::Complete { .. })
        ));
        assert!(matches!(
            parse(l, r#"{"type":"connection_terminate"}"#),
            Ok(ClientMessage::Terminate)
        ));
        assert!(parse(l, r#"{"type":"ping"}"#).is_err());
    }

    #[test]
    fn init_payload_rule() {
        let raw = |s: &str| RawValue::from_string(s.into()).unwrap();
        assert!(init_payload_allowed(&raw("{\"a\":1}")));
        assert!(init_payload_allowed(&raw("null")));
        assert!(!init_payload_allowed(&raw("\"token\"")));
        assert!(!init_payload_allowed(&raw("[1]")));
        assert!(!init_payload_allowed(&raw("3")));
    }

    #[test]
    fn close_reasons_fit_a_close_frame() {
        let long = Close::SubscriberExists("é".repeat(200));
        assert!(long.reason().len() <= 123);
        assert_eq!(Close::TooManyInit.code(), 4429);
        assert_eq!(
            Close::SubscriberExists("7".into()).reason(),
            "Subscriber for 7 already exists"
        );
    }

    #[test]
    fn server_messages() {
        assert_eq!(ack(), r#"{"type":"connection_ack"}"#);
        assert_eq!(ping(), r#"{"type":"ping"}"#);
        assert_eq!(complete("1"), r#"{"type":"complete","id":"1"}"#);
        let r = serde_json::json!({"data": {"a": 1}});
        assert_eq!(
            next(Protocol::LegacyWs, "1", &r),
            r#"{"type":"data","id":"1","payload":{"data":{"a":1}}}"#
        );
        assert_eq!(
            next(Protocol::TransportWs, "1", &r),
            r#"{"type":"next","id":"1","payload":{"data":{"a":1}}}"#
        );
    }
}
