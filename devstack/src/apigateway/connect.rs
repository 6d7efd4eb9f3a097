//! `$connect`: the API key, throttling, the function's verdict, then the
//! upgrade and the connection's task.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize};
use std::time::Instant;

use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use chrono::Utc;
use protocol::routes;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::account::OverLimit;
use super::authorizer::{Authorizer, Identity, Request as AuthorizerRequest, context_json};
use super::config::Route;
use super::connection::{end_connection, run_connection};
use super::control::Forced;
use super::routing::error_kind;
use super::websocket;
use super::{ConnectionHandle, ConnectionInfo, Disconnect, LiveGuard, Shared, forbidden, new_id};
use crate::console::StackEvent;
use crate::lambda::LOCAL_ACCOUNT_ID;

/// A connection's read buffer. tungstenite's default (128 KiB) is zeroed
/// on every read (it resizes the buffer to its capacity before reading), and
/// is allocated per connection: the profile of 1,000 handshakes put
/// `memset`, `malloc` and page faults at the top of the stack's own CPU. A
/// bigger frame (up to the 32 KB frame and 128 KB message limits) still
/// reads whole: the buffer grows to the frame.
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// The `statusCode` of a `$connect` response; a response without one counts
/// as 200, as API Gateway treats a Lambda proxy response without a status.
pub(super) fn connect_status(response: &Value) -> StatusCode {
    let code = match response.get("statusCode") {
        None | Some(Value::Null) => Some(200),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        Some(_) => None,
    };
    code.and_then(|c| u16::try_from(c).ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY)
}

/// `GET /{stage}`: the WebSocket handshake, refused or accepted as API
/// Gateway would, after the API key, throttling and the `$connect` route.
pub(super) async fn connect_handler(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(stage): Path<String>,
    mut request: Request,
) -> Response {
    let started = Instant::now();
    if stage != shared.config.stage {
        return forbidden();
    }
    let Some(handshake) = websocket::handshake(&mut request) else {
        return websocket::json_response(
            StatusCode::UPGRADE_REQUIRED,
            &json!({"message": "Upgrade Required"}),
        );
    };
    if *shared.shutdown.borrow() {
        return websocket::json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"message": "Service Unavailable"}),
        );
    }
    let connect_route = shared.route(routes::CONNECT);
    let slot = match admit(&shared, connect_route.as_ref(), request.headers()) {
        Ok(slot) => slot,
        Err(refusal) => return refuse(&shared, peer, refusal),
    };
    let mut info = connection_info(request.headers(), peer);
    if let Some(authorizer) = &shared.authorizer {
        match authorize(
            &shared,
            authorizer,
            &info,
            request.headers(),
            request.uri(),
            peer,
        )
        .await
        {
            Ok(identity) => info.authorizer = Some(identity),
            Err(refusal) => return refuse(&shared, peer, refusal),
        }
    }
    let info = Arc::new(info);
    let mut protocol = None;
    if connect_route.is_some() {
        protocol =
            match run_connect_route(&shared, &info, request.headers(), request.uri(), peer).await {
                Ok(protocol) => protocol,
                Err(refusal) => return refuse(&shared, peer, refusal),
            };
    }
    accept(shared, info, handshake, protocol, started, slot)
}

/// Why a handshake is refused: the status the client gets, and the reason
/// logged and shown on the console.
pub(super) struct Refusal {
    status: StatusCode,
    reason: &'static str,
}

impl Refusal {
    pub(super) fn new(status: StatusCode, reason: &'static str) -> Self {
        Self { status, reason }
    }
}

/// Logs and publishes a refused handshake; the client gets the status's
/// reason phrase as `{"message": …}`, as from API Gateway.
fn refuse(shared: &Shared, peer: SocketAddr, refusal: Refusal) -> Response {
    let Refusal { status, reason } = refusal;
    info!(status = status.as_u16(), reason, source_ip = %peer.ip(), "handshake refused");
    shared.events.publish(StackEvent::HandshakeRefused {
        status: status.as_u16(),
        reason: reason.to_string(),
        source_ip: peer.ip().to_string(),
    });
    let message = status.canonical_reason().unwrap_or("Forbidden");
    websocket::json_response(status, &json!({"message": message}))
}

/// The checks before the function is asked: the API key, if `$connect`
/// requires one, a place among `--max-connections` WebSocket connections
/// (held until the connection ends), the account's rates, then the stage
/// throttle.
fn admit(
    shared: &Shared,
    connect_route: Option<&Route>,
    headers: &HeaderMap,
) -> Result<OwnedSemaphorePermit, Refusal> {
    if connect_route.is_some_and(|r| r.api_key_required) {
        let key = shared
            .routing
            .load()
            .key_header
            .as_ref()
            .and_then(|name| headers.get(name))
            .and_then(|v| v.to_str().ok());
        if !key.is_some_and(|key| shared.config.api_keys.iter().any(|k| k == key)) {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "missing or invalid API key",
            ));
        }
    }
    let Ok(slot) = shared.websocket_slots.clone().try_acquire_owned() else {
        warn!(
            max_connections = shared.config.limits.max_websockets,
            "handshake refused with 429: --max-connections open WebSocket connections reached"
        );
        return Err(Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            "--max-connections open WebSocket connections reached",
        ));
    };
    if let Err(over) = shared.account.connect() {
        return Err(Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            match over {
                OverLimit::ConnectRate(_) => {
                    "account rate of new connections reached (--account-connect-limit)"
                }
                OverLimit::RequestRate(_) => "account request rate reached (--account-rate-limit)",
            },
        ));
    }
    if !shared.admit(routes::CONNECT) {
        return Err(Refusal::new(StatusCode::TOO_MANY_REQUESTS, "throttled"));
    }
    Ok(slot)
}

/// The authorizer step of `$connect` (see [`super::authorizer`]): the
/// identity the connection's events carry, or why the handshake is refused.
async fn authorize(
    shared: &Shared,
    authorizer: &Result<Authorizer, String>,
    info: &ConnectionInfo,
    headers: &HeaderMap,
    uri: &Uri,
    peer: SocketAddr,
) -> Result<Identity, Refusal> {
    let Ok(authorizer) = authorizer else {
        return Err(Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the $connect authorizer is misconfigured",
        ));
    };
    let headers = event_headers(headers, peer);
    let query = query_parameters(uri);
    let event = shared.event(info, routes::CONNECT, "CONNECT");
    let request_context = context_json(&event).unwrap_or_default();
    let method_arn = format!(
        "arn:aws:execute-api:{}:{LOCAL_ACCOUNT_ID}:{}/{}/{}",
        shared.region,
        shared.config.api_id,
        shared.config.stage,
        routes::CONNECT
    );
    authorizer
        .authorize(AuthorizerRequest {
            headers: &headers,
            query: &query,
            method_arn,
            request_context,
        })
        .await
}

/// The new connection's id and what its events say about the client.
fn connection_info(headers: &HeaderMap, peer: SocketAddr) -> ConnectionInfo {
    ConnectionInfo {
        id: new_id(),
        connected_at: Utc::now(),
        source_ip: peer.ip().to_string(),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        authorizer: None,
        last_active_ms: AtomicI64::new(Utc::now().timestamp_millis()),
        queued_bytes: AtomicUsize::new(0),
    }
}

/// Invokes the function on `$connect`; a 2xx accepts the connection, with
/// the subprotocol the function chose (its `Sec-WebSocket-Protocol` header).
async fn run_connect_route(
    shared: &Shared,
    info: &ConnectionInfo,
    headers: &HeaderMap,
    uri: &Uri,
    peer: SocketAddr,
) -> Result<Option<HeaderValue>, Refusal> {
    let headers = event_headers(headers, peer);
    let mut event = shared.event(info, routes::CONNECT, "CONNECT");
    event.multi_value_headers = headers.clone();
    event.headers = headers;
    let params = query_parameters(uri);
    event.query_string_parameters = params.clone().into();
    event.multi_value_query_string_parameters = params.into();
    match shared.invoke(&event).await {
        Ok(response) => {
            let status = connect_status(&response);
            if !status.is_success() {
                return Err(Refusal::new(status, "$connect returned a non-2xx status"));
            }
            Ok(response
                .pointer("/headers/Sec-WebSocket-Protocol")
                .or_else(|| response.pointer("/headers/sec-websocket-protocol"))
                .and_then(Value::as_str)
                .and_then(|p| HeaderValue::from_str(p).ok()))
        }
        Err(error) => {
            warn!(connection_id = %info.id, error = error_kind(&error), "$connect invocation failed");
            Err(Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "$connect invocation failed",
            ))
        }
    }
}

/// The query string as the event's multi-value parameters (an unparsable
/// one as none).
fn query_parameters(uri: &Uri) -> HashMap<String, Vec<String>> {
    let query: Vec<(String, String)> = Query::try_from_uri(uri).map(|q| q.0).unwrap_or_default();
    let mut params: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in query {
        params.entry(k).or_default().push(v);
    }
    params
}

/// Registers the connection, answers `101 Switching Protocols`, and spawns
/// the connection's task, which runs it once hyper hands the socket over.
fn accept(
    shared: Arc<Shared>,
    info: Arc<ConnectionInfo>,
    handshake: websocket::Handshake,
    protocol: Option<HeaderValue>,
    started: Instant,
    slot: OwnedSemaphorePermit,
) -> Response {
    let limits = shared.config.limits;
    let (outbound_tx, outbound_rx) = mpsc::channel(limits.outbound_queue.max(1));
    let not_reading = CancellationToken::new();
    let (forced, forced_rx) = watch::channel(None);
    shared.connections.lock().insert(
        info.id.clone(),
        ConnectionHandle {
            info: info.clone(),
            outbound: outbound_tx.clone(),
            not_reading: not_reading.clone(),
            forced: forced.clone(),
        },
    );
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_frame_size(Some(limits.max_frame_bytes))
        .max_message_size(Some(limits.max_message_bytes));
    let (response, socket) = handshake.accept(protocol, config);
    let live = LiveGuard::new(&shared.live_connections);
    info!(
        connection_id = %info.id,
        source_ip = %info.source_ip,
        latency_ms = started.elapsed().as_millis() as u64,
        "connection opened"
    );
    shared.events.publish(StackEvent::ConnectionOpened {
        connection_id: info.id.clone(),
        source_ip: info.source_ip.clone(),
    });
    tokio::spawn(async move {
        let _live = live;
        let _slot = slot;
        let outcome = match socket.await {
            Ok(socket) => {
                let outbound = (outbound_tx, outbound_rx);
                run_connection(&shared, &info, socket, outbound, not_reading, forced_rx).await
            }
            Err(error) => {
                debug!(connection_id = %info.id, %error, "upgrade failed");
                Disconnect::new(1006, "Connection closed abnormally")
            }
        };
        // A connection the control dropped ends as a lost client does on
        // AWS: without `$disconnect`.
        let dropped = matches!(*forced.borrow(), Some(Forced::Drop));
        end_connection(&shared, &info, outcome, !dropped).await;
    });
    response
}

/// The `$connect` event's headers: the client's, plus the forwarding headers
/// API Gateway adds.
pub(super) fn event_headers(request: &HeaderMap, peer: SocketAddr) -> HeaderMap {
    let mut headers = request.clone();
    let forwarded = match request.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(previous) => format!("{previous}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded) {
        headers.insert("x-forwarded-for", value);
    }
    if let Ok(value) = HeaderValue::from_str(&peer.port().to_string()) {
        headers.insert("x-forwarded-port", value);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    let trace = format!(
        "Root=1-{:08x}-{}",
        Utc::now().timestamp(),
        hex::encode(rand::random::<[u8; 12]>())
    );
    if let Ok(value) = HeaderValue::from_str(&trace) {
        headers.insert("x-amzn-trace-id", value);
    }
    headers
}
