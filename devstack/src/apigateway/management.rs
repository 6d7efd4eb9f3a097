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
use tokio::sync::mpsc::error::TrySendError;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tracing::{info, warn};

use super::websocket;
use super::{ConnectionHandle, Outbound, Shared, new_id};
use crate::control::PostFault;

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

/// Middleware on the management routes: each request, once its signature
/// is checked, counts against the account's request rate; over it, 429
/// `LimitExceededException` as aws-sdk-apigatewaymanagement models it.
pub(super) async fn account_quota(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Err(over) = shared.account.request() {
        info!(path = request.uri().path(), %over, "management API request refused with 429");
        return management_error(
            StatusCode::TOO_MANY_REQUESTS,
            "LimitExceededException",
            &format!("Too Many Requests: {over}"),
        );
    }
    next.run(request).await
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
    match shared.faults.take_post(&connection_id) {
        Some(PostFault::Gone) => {
            info!(connection_id = %connection_id, "post answered 410 (control fault)");
            return gone();
        }
        Some(PostFault::Throttled) => {
            info!(connection_id = %connection_id, "post answered 429 (control fault)");
            return management_error(
                StatusCode::TOO_MANY_REQUESTS,
                "LimitExceededException",
                "Too Many Requests",
            );
        }
        None => {}
    }
    let Some(connection) = shared.connection(&connection_id) else {
        return gone();
    };
    let size = body.len();
    let message = match String::from_utf8(body.to_vec()) {
        Ok(text) => Message::text(text),
        Err(_) => Message::binary(body),
    };
    // Never waits: a full queue (in frames or bytes) means the client
    // stopped reading, and a poster (the function, broadcasting) must not
    // wait on one client.
    let limits = &shared.config.limits;
    let queued = &connection.info.queued_bytes;
    let bytes = queued.fetch_add(size, Ordering::Relaxed) + size;
    let full = if bytes > limits.outbound_queue_bytes {
        true
    } else {
        match connection.outbound.try_send(Outbound::Post(message)) {
            Ok(()) => return with_request_id(Response::new(Body::empty())),
            Err(TrySendError::Full(_)) => true,
            Err(TrySendError::Closed(_)) => false,
        }
    };
    queued.fetch_sub(size, Ordering::Relaxed);
    if full {
        warn!(
            connection_id = %connection_id,
            queued_frames = limits.outbound_queue,
            queued_bytes_limit = limits.outbound_queue_bytes,
            "outbound queue full: closing a connection that does not read (1008)"
        );
        connection.not_reading.cancel();
    }
    gone()
}

/// `GET /{stage}/@connections/{id}`: the connection's info.
pub(super) async fn get_connection(
    State(shared): State<Arc<Shared>>,
    Path((stage, connection_id)): Path<(String, String)>,
) -> Response {
    if let Some(response) = wrong_stage(&shared, &stage) {
        return response;
    }
    let Some(ConnectionHandle { info, .. }) = shared.connection(&connection_id) else {
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
    let Some(handle) = shared.connections.lock().remove(&connection_id) else {
        return gone();
    };
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    // Never waits on the client: with its queue full it is not reading, and
    // is closed as such (1008). The connection task may already be ending;
    // the connection is gone either way.
    if let Err(TrySendError::Full(_)) = handle.outbound.try_send(Outbound::Close(frame)) {
        handle.not_reading.cancel();
    }
    let mut response = with_request_id(Response::new(Body::empty()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}
