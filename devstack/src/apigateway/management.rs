//! The @connections management API: `POST` (send), `GET` (info) and
//! `DELETE` (close) on `/{stage}/@connections/{id}`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::websocket;
use super::{Outbound, Shared, lock, new_id};

/// The management API's error answer, as the SDK reads it: the type in
/// `x-amzn-errortype`, the message in the JSON body.
pub(super) fn management_error(
    status: StatusCode,
    error_type: &'static str,
    message: &str,
) -> Response {
    let mut response = websocket::json_response(status, &json!({"message": message}));
    response
        .headers_mut()
        .insert("x-amzn-errortype", HeaderValue::from_static(error_type));
    with_request_id(response)
}

pub(super) fn with_request_id(mut response: Response) -> Response {
    if let Ok(id) = HeaderValue::from_str(&new_id()) {
        response.headers_mut().insert("x-amzn-requestid", id);
    }
    response
}

pub(super) fn gone() -> Response {
    management_error(StatusCode::GONE, "GoneException", "Gone")
}

/// The management API's answer for another stage's path: 403, as for any
/// path the API does not serve.
pub(super) fn wrong_stage(shared: &Shared, stage: &str) -> Option<Response> {
    (stage != shared.config.stage)
        .then(|| management_error(StatusCode::FORBIDDEN, "ForbiddenException", "Forbidden"))
}

/// `POST /{stage}/@connections/{id}`: sends the raw body to the client.
pub(super) async fn post_to_connection(
    State(shared): State<Arc<Shared>>,
    Path((stage, connection_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if let Some(response) = wrong_stage(&shared, &stage) {
        return response;
    }
    if body.len() > shared.config.limits.max_message_bytes {
        return management_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLargeException",
            "Request Too Long",
        );
    }
    let Some((_, outbound)) = shared.outbound(&connection_id) else {
        return gone();
    };
    let message = match String::from_utf8(body.to_vec()) {
        Ok(text) => Message::text(text),
        Err(_) => Message::binary(body),
    };
    match outbound.send(Outbound::Frame(message)).await {
        Ok(()) => with_request_id(Response::new(Body::empty())),
        Err(_) => gone(),
    }
}

/// `GET /{stage}/@connections/{id}`: the connection's info.
pub(super) async fn get_connection(
    State(shared): State<Arc<Shared>>,
    Path((stage, connection_id)): Path<(String, String)>,
) -> Response {
    if let Some(response) = wrong_stage(&shared, &stage) {
        return response;
    }
    let Some((info, _)) = shared.outbound(&connection_id) else {
        return gone();
    };
    let last_active =
        DateTime::<Utc>::from_timestamp_millis(info.last_active_ms.load(Ordering::Relaxed))
            .unwrap_or(info.connected_at);
    let iso = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut identity = json!({"sourceIp": info.source_ip});
    if let Some(user_agent) = &info.user_agent {
        identity["userAgent"] = json!(user_agent);
    }
    with_request_id(websocket::json_response(
        StatusCode::OK,
        &json!({
            "connectedAt": iso(info.connected_at),
            "identity": identity,
            "lastActiveAt": iso(last_active),
        }),
    ))
}

/// `DELETE /{stage}/@connections/{id}`: closes the connection (its
/// `$disconnect` runs), 204.
pub(super) async fn delete_connection(
    State(shared): State<Arc<Shared>>,
    Path((stage, connection_id)): Path<(String, String)>,
) -> Response {
    if let Some(response) = wrong_stage(&shared, &stage) {
        return response;
    }
    let Some(handle) = lock(&shared.connections).remove(&connection_id) else {
        return gone();
    };
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    // The connection task may already be ending; the connection is gone either way.
    let _ = handle.outbound.send(Outbound::Close(frame)).await;
    let mut response = with_request_id(Response::new(Body::empty()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}
