//! GraphQL over WebSocket (being written).

use std::sync::Arc;

use axum::{
    extract::ws::WebSocketUpgrade,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};

use crate::AppState;

pub fn upgrade(_state: Arc<AppState>, _upgrade: WebSocketUpgrade, _headers: &HeaderMap) -> Response {
    (StatusCode::NOT_IMPLEMENTED, "subscriptions are not available yet").into_response()
}
