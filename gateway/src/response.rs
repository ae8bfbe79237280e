//! The one place an executed response's errors take their client form.
//!
//! The library writes client-safe messages and leaves what only operators
//! should read under internal extension keys: a transport or parser detail
//! (logged whole, with the request id; the client gets the request id to
//! quote), and the mark of a subgraph's own error (passed on as it is, or
//! masked when its subgraph's `include_subgraph_errors` is off). Both keys
//! are removed before anything is sent, over HTTP and WebSocket alike.

use apollo_compiler::response::{GraphQLError, JsonMap, JsonValue};
use stitching::execute::internal;

/// Rewrites `errors` in place for the client of request `request_id`;
/// `include(service)` says whether a subgraph's own errors pass as they are.
pub fn client_errors(
    errors: &mut [GraphQLError],
    request_id: &str,
    include: impl Fn(&str) -> bool,
) {
    for e in errors.iter_mut() {
        let detail = e.extensions.remove(internal::DETAIL);
        let own = e.extensions.remove(internal::SUBGRAPH_ERROR).is_some();
        let service = e
            .extensions
            .get("service")
            .and_then(|s| s.as_str())
            .map(str::to_owned);
        if let Some(detail) = detail {
            tracing::error!(
                request_id,
                message = %e.message,
                detail = %detail.as_str().unwrap_or_default(),
                service = service.as_deref().unwrap_or("-"),
                "internal error; the client was told without the detail"
            );
            e.extensions
                .insert("requestId", JsonValue::String(request_id.into()));
        }
        if let (true, Some(service)) = (own, service) {
            if !include(&service) {
                tracing::warn!(
                    request_id,
                    service = %service,
                    message = %e.message,
                    extensions = ?e.extensions,
                    "subgraph error masked (include_subgraph_errors = false)"
                );
                e.message = format!(
                    "subgraph `{service}` answered an error; its details are withheld (request {request_id})"
                );
                let mut ext = JsonMap::new();
                ext.insert("code", JsonValue::String("SUBGRAPH_ERROR".into()));
                ext.insert("service", JsonValue::String(service.as_str().into()));
                ext.insert("requestId", JsonValue::String(request_id.into()));
                e.extensions = ext;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stitching::execute::error;

    #[test]
    fn details_are_logged_not_sent_and_masked_subgraphs_say_only_who() {
        let mut transport = error("subgraph `a` is unreachable", "SUBGRAPH_UNAVAILABLE");
        transport
            .extensions
            .insert(internal::DETAIL, "tcp connect error: 10.0.0.7:4001".into());
        transport.extensions.insert("service", "a".into());
        let own = |service: &str| {
            let mut e = error("row 7 of table secrets is locked", "DB_LOCKED");
            e.extensions.insert("service", service.into());
            e.extensions.insert(internal::SUBGRAPH_ERROR, true.into());
            e
        };
        let mut errors = vec![transport, own("a"), own("b")];
        client_errors(&mut errors, "r1", |s| s == "a");
        let text = serde_json::to_string(&errors).unwrap();
        assert!(
            !text.contains("10.0.0.7") && !text.contains("_stitch_"),
            "{text}"
        );
        assert_eq!(errors[0].extensions.get("requestId"), Some(&"r1".into()));
        assert_eq!(errors[1].message, "row 7 of table secrets is locked");
        assert_eq!(
            errors[2].message,
            "subgraph `b` answered an error; its details are withheld (request r1)"
        );
        assert_eq!(
            errors[2].extensions.get("code"),
            Some(&"SUBGRAPH_ERROR".into())
        );
    }
}
