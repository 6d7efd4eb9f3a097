//! The API layer: plays the API Gateway WebSocket API endpoint
//! (`wss://{apiId}.execute-api.{region}.amazonaws.com/{stage}`) and its
//! @connections management API, so the function runs unchanged.
//!
//! What it does, as API Gateway does:
//! - `$connect`: checks the API key (header named by the API's
//!   `apiKeySelectionExpression`) when the route requires it — 403 without
//!   invoking; assigns the connection id; invokes the function; a non-2xx
//!   `statusCode` (or an invoke error, as 500) refuses the handshake.
//! - messages: selects the route with the `routeSelectionExpression`
//!   (`$request.body.action`), `$default` when it cannot be evaluated or names
//!   no route; binary frames go to `$default` base64-encoded. No route
//!   responses are configured (as in the deployed API), so the function's
//!   response is not sent back; an invoke error sends API Gateway's
//!   `{"message": "Internal server error", ...}` frame and the connection
//!   stays open. A message with no route to take (no `$default`) gets
//!   `{"message": "Forbidden", ...}`.
//! - throttling: the stage's default route throttling (token bucket per route,
//!   rate + burst). A throttled message gets `{"message": "Too Many Requests",
//!   ...}`; a throttled `$connect` is refused with 429. (AWS documents the 429
//!   for throttled requests; the frame for a throttled message is this
//!   project's choice, modelled on API Gateway's other error frames.)
//! - limits: frames over 32 KB or messages over 128 KB close the connection
//!   with 1009; 10 min idle and 2 h maximum life close it with 1001.
//! - `$disconnect` is invoked whenever a connection ends, whoever ended it.
//!
//! Log lines carry ids, routes, status codes and latencies — never bodies or
//! header values (the `x-api-key` header carries the API key).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use aws_lambda_events::apigw::{
    ApiGatewayWebsocketProxyRequest, ApiGatewayWebsocketProxyRequestContext,
};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{any, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use protocol::{GatewayFrame, routes};
use pulumi_program::{RouteSpec, Topology};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tracing::{debug, info, warn};

use crate::invoke::{Invoke, InvokeError};
use crate::websocket::{self, ServerSocket};

/// API Gateway's account-level defaults, used for a stage that sets only one
/// of rate and burst.
const ACCOUNT_RATE_LIMIT: f64 = 10_000.0;
const ACCOUNT_BURST_LIMIT: u32 = 5_000;
/// The header API Gateway reads the key from when the API sets no expression.
const DEFAULT_API_KEY_HEADER: &str = "x-api-key";
/// Frames queued for one connection (management API posts, error frames)
/// before a poster waits.
const OUTBOUND_QUEUE: usize = 256;
/// How long a closing connection waits for the peer's close frame and reads
/// what the peer still sends.
const CLOSE_HANDSHAKE: Duration = websocket::LINGER;

/// API Gateway's WebSocket limits; tests shrink the timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_frame_bytes: usize,
    pub max_message_bytes: usize,
    pub idle_timeout: Duration,
    pub max_connection_life: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        use protocol::limits::*;
        Limits {
            max_frame_bytes: MAX_FRAME_BYTES,
            max_message_bytes: MAX_MESSAGE_BYTES,
            idle_timeout: IDLE_TIMEOUT,
            max_connection_life: MAX_CONNECTION_LIFE,
        }
    }
}

/// Stage default route throttling: a token bucket per route.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttle {
    pub rate_per_sec: f64,
    pub burst: u32,
}

/// Everything the API layer needs; built from the Pulumi program with
/// [`GatewayConfig::from_topology`].
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub api_id: String,
    pub stage: String,
    /// `requestContext.domainName` of the events (the API's host).
    pub domain_name: String,
    pub route_selection_expression: String,
    pub api_key_selection_expression: Option<String>,
    pub routes: Vec<RouteSpec>,
    /// The API keys `$connect` accepts when the route requires a key.
    pub api_keys: Vec<String>,
    pub throttle: Option<Throttle>,
    pub limits: Limits,
}

impl GatewayConfig {
    pub fn from_topology(
        topology: &Topology,
        api_id: &str,
        domain_name: &str,
        api_key: &str,
    ) -> Self {
        let stage = &topology.stage;
        let throttle = match (stage.throttling_rate_limit, stage.throttling_burst_limit) {
            (None, None) => None,
            (rate, burst) => Some(Throttle {
                rate_per_sec: rate.unwrap_or(ACCOUNT_RATE_LIMIT),
                burst: burst.unwrap_or(ACCOUNT_BURST_LIMIT),
            }),
        };
        GatewayConfig {
            api_id: api_id.to_string(),
            stage: stage.name.clone(),
            domain_name: domain_name.to_string(),
            route_selection_expression: topology.api.route_selection_expression.clone(),
            api_key_selection_expression: topology.api.api_key_selection_expression.clone(),
            routes: topology.routes.clone(),
            api_keys: vec![api_key.to_string()],
            throttle,
            limits: Limits::default(),
        }
    }
}

/// An id in API Gateway's format (`L0SM9cOFvHcCIhw=`): connection ids,
/// request ids, message ids.
pub fn new_id() -> String {
    URL_SAFE.encode(rand::random::<[u8; 11]>())
}

/// The key path of a `$request.body.<path>` route selection expression.
fn body_selection_path(expression: &str) -> Option<Vec<String>> {
    let path = expression.strip_prefix("$request.body.")?;
    let parts: Vec<String> = path.split('.').map(str::to_string).collect();
    (!parts.iter().any(String::is_empty)).then_some(parts)
}

/// The header of an `$request.header.<name>` API key selection expression.
fn api_key_header(expression: Option<&str>) -> Option<HeaderName> {
    let name = match expression {
        Some(expression) => expression.strip_prefix("$request.header.")?,
        None => DEFAULT_API_KEY_HEADER,
    };
    HeaderName::from_bytes(name.as_bytes()).ok()
}

/// The API Gateway WebSocket API, serving one stage.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

struct Shared {
    config: GatewayConfig,
    invoke: Arc<dyn Invoke>,
    selection_path: Option<Vec<String>>,
    key_header: Option<HeaderName>,
    connections: Mutex<HashMap<String, ConnectionHandle>>,
    buckets: Mutex<HashMap<String, TokenBucket>>,
    shutdown: watch::Sender<bool>,
    live_connections: watch::Sender<usize>,
}

/// What the management API and the message tasks know of a connection.
struct ConnectionHandle {
    info: Arc<ConnectionInfo>,
    outbound: mpsc::Sender<Outbound>,
}

/// The facts of a connection that go into every event.
struct ConnectionInfo {
    id: String,
    connected_at: DateTime<Utc>,
    source_ip: String,
    user_agent: Option<String>,
    /// Milliseconds since the epoch of the last frame from the client.
    last_active_ms: AtomicI64,
}

enum Outbound {
    Frame(Message),
    Close(CloseFrame),
}

/// How and why a connection ended: `disconnectStatusCode` and
/// `disconnectReason` of the `$disconnect` event.
#[derive(Debug, Clone, PartialEq)]
struct Disconnect {
    status_code: u16,
    reason: String,
}

impl Disconnect {
    fn new(status_code: u16, reason: &str) -> Self {
        Disconnect {
            status_code,
            reason: reason.to_string(),
        }
    }
    fn going_away() -> Self {
        Disconnect::new(1001, "Going away")
    }
}

struct TokenBucket {
    tokens: f64,
    last: Instant,
}

/// Decrements the live connection count when a connection task ends.
struct LiveGuard(watch::Sender<usize>);

impl LiveGuard {
    fn new(live: &watch::Sender<usize>) -> Self {
        live.send_modify(|n| *n += 1);
        LiveGuard(live.clone())
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Gateway {
    pub fn new(config: GatewayConfig, invoke: Arc<dyn Invoke>) -> Self {
        let selection_path = body_selection_path(&config.route_selection_expression);
        if selection_path.is_none() {
            warn!(
                expression = %config.route_selection_expression,
                "unsupported route selection expression; every message goes to $default"
            );
        }
        let key_header = api_key_header(config.api_key_selection_expression.as_deref());
        if key_header.is_none() {
            warn!(
                "unsupported API key selection expression; routes that require a key refuse every client"
            );
        }
        Gateway {
            shared: Arc::new(Shared {
                config,
                invoke,
                selection_path,
                key_header,
                connections: Mutex::new(HashMap::new()),
                buckets: Mutex::new(HashMap::new()),
                shutdown: watch::channel(false).0,
                live_connections: watch::channel(0).0,
            }),
        }
    }

    /// The routes of the WebSocket endpoint and the management API.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/{stage}", any(connect_handler))
            .route("/{stage}/", any(connect_handler))
            .route(
                "/{stage}/@connections/{connection_id}",
                post(post_to_connection)
                    .get(get_connection)
                    .delete(delete_connection),
            )
            .fallback(|| async { forbidden() })
            .with_state(self.shared.clone())
    }

    /// Serves until [`Gateway::shutdown`] begins.
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        websocket::serve(listener, self.router(), self.shared.shutdown.subscribe()).await
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        lock(&self.shared.connections).len()
    }

    /// Closes every connection with 1001 (going away), runs their
    /// `$disconnect`, and waits for that up to `grace`. New handshakes are
    /// refused from now on. Returns whether every connection finished.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.shared.shutdown.send_replace(true);
        let mut live = self.shared.live_connections.subscribe();
        tokio::time::timeout(grace, live.wait_for(|n| *n == 0))
            .await
            .is_ok()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave the maps inconsistent
    // (each operation is a single insert/remove/get), so poisoning is ignored.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn forbidden() -> Response {
    websocket::json_response(StatusCode::FORBIDDEN, &json!({"message": "Forbidden"}))
}

impl Shared {
    fn route(&self, route_key: &str) -> Option<&RouteSpec> {
        self.config.routes.iter().find(|r| r.route_key == route_key)
    }

    /// The route a text message takes: the selected route if declared,
    /// else `$default` if declared, else none (API Gateway answers
    /// "Forbidden").
    fn select_route(&self, body: &str) -> Option<&str> {
        let selected = self.selection_path.as_ref().and_then(|path| {
            let mut value: Value = serde_json::from_str(body).ok()?;
            for key in path {
                value = value.as_object_mut()?.remove(key)?;
            }
            match value {
                Value::String(key) => Some(key),
                _ => None,
            }
        });
        let declared = |key: &str| {
            self.route(key)
                .map(|r| r.route_key.as_str())
                .filter(|k| *k != routes::CONNECT && *k != routes::DISCONNECT)
        };
        selected
            .as_deref()
            .and_then(declared)
            .or_else(|| declared(routes::DEFAULT))
    }

    /// Takes a token from the route's bucket; false when throttled.
    fn admit(&self, route_key: &str) -> bool {
        let Some(throttle) = self.config.throttle else {
            return true;
        };
        let now = Instant::now();
        let mut buckets = lock(&self.buckets);
        let capacity = f64::from(throttle.burst);
        let bucket = buckets.entry(route_key.to_string()).or_insert(TokenBucket {
            tokens: capacity,
            last: now,
        });
        let refill = now.duration_since(bucket.last).as_secs_f64() * throttle.rate_per_sec;
        bucket.tokens = (bucket.tokens + refill).min(capacity);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// The event fields every event of a connection shares.
    fn event(
        &self,
        info: &ConnectionInfo,
        route_key: &str,
        event_type: &str,
    ) -> ApiGatewayWebsocketProxyRequest {
        let now = Utc::now();
        let mut context = ApiGatewayWebsocketProxyRequestContext::default();
        context.route_key = Some(route_key.to_string());
        context.event_type = Some(event_type.to_string());
        context.message_direction = Some("IN".to_string());
        context.connection_id = Some(info.id.clone());
        context.connected_at = info.connected_at.timestamp_millis();
        context.request_time_epoch = now.timestamp_millis();
        context.request_time = Some(now.format("%d/%b/%Y:%H:%M:%S %z").to_string());
        context.request_id = Some(new_id());
        context.extended_request_id = Some(new_id());
        context.identity.source_ip = Some(info.source_ip.clone());
        context.identity.user_agent = info.user_agent.clone();
        context.domain_name = Some(self.config.domain_name.clone());
        context.stage = Some(self.config.stage.clone());
        context.apiid = Some(self.config.api_id.clone());
        let mut event = ApiGatewayWebsocketProxyRequest::default();
        event.request_context = context;
        event
    }

    async fn invoke(&self, event: &ApiGatewayWebsocketProxyRequest) -> Result<Value, InvokeError> {
        self.invoke.invoke(to_wire(event)).await
    }

    fn outbound(
        &self,
        connection_id: &str,
    ) -> Option<(Arc<ConnectionInfo>, mpsc::Sender<Outbound>)> {
        lock(&self.connections)
            .get(connection_id)
            .map(|c| (c.info.clone(), c.outbound.clone()))
    }
}

/// The event as API Gateway puts it on the wire: absent fields left out
/// rather than `null`, `queryStringParameters` single-valued.
fn to_wire(event: &ApiGatewayWebsocketProxyRequest) -> Value {
    let mut value = serde_json::to_value(event).unwrap_or(Value::Null);
    if let Some(object) = value.as_object_mut() {
        // QueryMap serialises every parameter as a list; API Gateway sends
        // the last value in `queryStringParameters` and all of them in
        // `multiValueQueryStringParameters`.
        if let Some(Value::Object(params)) = object.get_mut("queryStringParameters") {
            for value in params.values_mut() {
                if let Value::Array(values) = value {
                    *value = values.pop().unwrap_or(Value::Null);
                }
            }
        }
        object.retain(|_, v| !(v.is_null() || v.as_object().is_some_and(|o| o.is_empty())));
    }
    prune_nulls(&mut value);
    value
}

fn prune_nulls(value: &mut Value) {
    match value {
        Value::Object(object) => {
            object.retain(|_, v| !v.is_null());
            object.values_mut().for_each(prune_nulls);
        }
        Value::Array(values) => values.iter_mut().for_each(prune_nulls),
        _ => {}
    }
}

/// The `statusCode` of a `$connect` response; a response without one counts
/// as 200, as API Gateway treats a Lambda proxy response without a status.
fn connect_status(response: &Value) -> StatusCode {
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

async fn connect_handler(
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
    let refuse = |status: StatusCode, why: &str| {
        info!(status = status.as_u16(), reason = why, source_ip = %peer.ip(), "handshake refused");
        let message = status.canonical_reason().unwrap_or("Forbidden");
        websocket::json_response(status, &json!({"message": message}))
    };
    let connect_route = shared.route(routes::CONNECT).cloned();
    if connect_route.as_ref().is_some_and(|r| r.api_key_required) {
        let key = shared
            .key_header
            .as_ref()
            .and_then(|name| request.headers().get(name))
            .and_then(|v| v.to_str().ok());
        if !key.is_some_and(|key| shared.config.api_keys.iter().any(|k| k == key)) {
            return refuse(StatusCode::FORBIDDEN, "missing or invalid API key");
        }
    }
    if !shared.admit(routes::CONNECT) {
        return refuse(StatusCode::TOO_MANY_REQUESTS, "throttled");
    }

    let headers = event_headers(request.headers(), peer);
    let info = Arc::new(ConnectionInfo {
        id: new_id(),
        connected_at: Utc::now(),
        source_ip: peer.ip().to_string(),
        user_agent: request
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        last_active_ms: AtomicI64::new(Utc::now().timestamp_millis()),
    });
    let mut protocol = None;
    if connect_route.is_some() {
        let mut event = shared.event(&info, routes::CONNECT, "CONNECT");
        event.multi_value_headers = headers.clone();
        event.headers = headers;
        let query: Vec<(String, String)> = Query::try_from_uri(request.uri())
            .map(|q| q.0)
            .unwrap_or_default();
        let mut params: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in query {
            params.entry(k).or_default().push(v);
        }
        event.query_string_parameters = params.clone().into();
        event.multi_value_query_string_parameters = params.into();
        match shared.invoke(&event).await {
            Ok(response) => {
                let status = connect_status(&response);
                if !status.is_success() {
                    return refuse(status, "$connect returned a non-2xx status");
                }
                protocol = response
                    .pointer("/headers/Sec-WebSocket-Protocol")
                    .or_else(|| response.pointer("/headers/sec-websocket-protocol"))
                    .and_then(Value::as_str)
                    .and_then(|p| HeaderValue::from_str(p).ok());
            }
            Err(error) => {
                warn!(connection_id = %info.id, error = error_kind(&error), "$connect invocation failed");
                return refuse(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "$connect invocation failed",
                );
            }
        }
    }

    let (outbound_tx, outbound_rx) = mpsc::channel(OUTBOUND_QUEUE);
    lock(&shared.connections).insert(
        info.id.clone(),
        ConnectionHandle {
            info: info.clone(),
            outbound: outbound_tx.clone(),
        },
    );
    let limits = shared.config.limits;
    let config = WebSocketConfig::default()
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
    tokio::spawn(async move {
        let _live = live;
        let outcome = match socket.await {
            Ok(socket) => run_connection(&shared, &info, socket, outbound_tx, outbound_rx).await,
            Err(error) => {
                debug!(connection_id = %info.id, %error, "upgrade failed");
                Disconnect::new(1006, "Connection closed abnormally")
            }
        };
        end_connection(&shared, &info, outcome).await;
    });
    response
}

/// The `$connect` event's headers: the client's, plus the forwarding headers
/// API Gateway adds.
fn event_headers(request: &HeaderMap, peer: SocketAddr) -> HeaderMap {
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
        hex(&rand::random::<[u8; 12]>())
    );
    if let Ok(value) = HeaderValue::from_str(&trace) {
        headers.insert("x-amzn-trace-id", value);
    }
    headers
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn error_kind(error: &InvokeError) -> &'static str {
    match error {
        InvokeError::Function { .. } => "function error",
        InvokeError::Crashed(_) => "function process crashed",
        InvokeError::Timeout(_) => "timeout",
        InvokeError::Unavailable(_) => "function unavailable",
    }
}

/// Reads the client's frames and writes what is queued for it until the
/// connection ends; returns how it ended.
async fn run_connection(
    shared: &Arc<Shared>,
    info: &Arc<ConnectionInfo>,
    mut socket: ServerSocket,
    outbound_tx: mpsc::Sender<Outbound>,
    mut outbound_rx: mpsc::Receiver<Outbound>,
) -> Disconnect {
    let limits = shared.config.limits;
    let mut shutdown = shared.shutdown.subscribe();
    let idle = tokio::time::sleep(limits.idle_timeout);
    let life = tokio::time::sleep(limits.max_connection_life);
    tokio::pin!(idle, life);
    let already_down = *shutdown.borrow_and_update();
    if already_down {
        return close(&mut socket, Disconnect::going_away()).await;
    }
    loop {
        tokio::select! {
            frame = socket.next() => {
                let message = match frame {
                    Some(Ok(message)) => message,
                    None
                    | Some(Err(
                        WsError::ConnectionClosed
                        | WsError::AlreadyClosed
                        | WsError::Io(_)
                        | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake),
                    )) => {
                        return Disconnect::new(1006, "Connection closed abnormally");
                    }
                    Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => {
                        return close(&mut socket, Disconnect::new(1009, "Message too big")).await;
                    }
                    Some(Err(error)) => {
                        debug!(connection_id = %info.id, %error, "connection failed");
                        return close(&mut socket, Disconnect::new(1002, "Protocol error")).await;
                    }
                };
                idle.as_mut().reset(tokio::time::Instant::now() + limits.idle_timeout);
                info.last_active_ms.store(Utc::now().timestamp_millis(), Ordering::Relaxed);
                match message {
                    Message::Text(text) => spawn_message(shared, info, text.to_string(), false, &outbound_tx),
                    Message::Binary(bytes) => spawn_message(shared, info, STANDARD.encode(&bytes), true, &outbound_tx),
                    Message::Close(frame) => {
                        drain(&mut socket, tokio::time::Instant::now() + CLOSE_HANDSHAKE).await;
                        return match frame {
                            Some(frame) => Disconnect { status_code: frame.code.into(), reason: frame.reason.to_string() },
                            None => Disconnect::new(1005, "Client-side close frame status not set"),
                        };
                    }
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                }
            }
            Some(outbound) = outbound_rx.recv() => match outbound {
                Outbound::Frame(message) => {
                    if socket.send(message).await.is_err() {
                        return Disconnect::new(1006, "Connection closed abnormally");
                    }
                }
                Outbound::Close(frame) => {
                    let disconnect = Disconnect { status_code: frame.code.into(), reason: frame.reason.to_string() };
                    return close(&mut socket, disconnect).await;
                }
            },
            () = &mut idle => return close(&mut socket, Disconnect::going_away()).await,
            () = &mut life => return close(&mut socket, Disconnect::going_away()).await,
            () = async { let _ = shutdown.wait_for(|down| *down).await; } => return close(&mut socket, Disconnect::going_away()).await,
        }
    }
}

/// Sends the close frame for `disconnect` and ends the connection with
/// [`drain`]. Also after a frame-size error: tungstenite's stream is over
/// then, but the socket still writes, and the client may still be sending the
/// rest of its oversize frame, which `drain` reads.
async fn close(socket: &mut ServerSocket, disconnect: Disconnect) -> Disconnect {
    let deadline = tokio::time::Instant::now() + CLOSE_HANDSHAKE;
    let frame = CloseFrame {
        code: CloseCode::from(disconnect.status_code),
        reason: disconnect.reason.clone().into(),
    };
    // `send` returns once the frame is flushed to the socket; bounded, as a
    // client that reads nothing can leave no room for it.
    let _ = tokio::time::timeout_at(deadline, socket.send(Message::Close(Some(frame)))).await;
    drain(socket, deadline).await;
    disconnect
}

/// Ends a connection whose close frame is sent (ours, or tungstenite's reply
/// to the client's): reads the client's frames until its close frame (which
/// also flushes a queued reply), then the lingering close — FIN, and the
/// client's remaining bytes read and discarded — all by `deadline`.
async fn drain(socket: &mut ServerSocket, deadline: tokio::time::Instant) {
    let _ = tokio::time::timeout_at(deadline, async {
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
    websocket::linger(socket.get_mut(), deadline).await;
}

/// Removes the connection and runs `$disconnect`.
async fn end_connection(shared: &Arc<Shared>, info: &Arc<ConnectionInfo>, disconnect: Disconnect) {
    lock(&shared.connections).remove(&info.id);
    let lifetime = Utc::now() - info.connected_at;
    info!(
        connection_id = %info.id,
        status_code = disconnect.status_code,
        duration_ms = lifetime.num_milliseconds(),
        "connection closed"
    );
    if shared.route(routes::DISCONNECT).is_none() {
        return;
    }
    let started = Instant::now();
    let mut event = shared.event(info, routes::DISCONNECT, "DISCONNECT");
    event.request_context.disconnect_status_code = Some(i64::from(disconnect.status_code));
    event.request_context.disconnect_reason = Some(disconnect.reason);
    let outcome = match shared.invoke(&event).await {
        Ok(_) => "ok",
        Err(ref error) => error_kind(error),
    };
    info!(
        connection_id = %info.id,
        route = routes::DISCONNECT,
        outcome,
        latency_ms = started.elapsed().as_millis() as u64,
        "route invoked"
    );
}

fn spawn_message(
    shared: &Arc<Shared>,
    info: &Arc<ConnectionInfo>,
    body: String,
    is_base64: bool,
    outbound: &mpsc::Sender<Outbound>,
) {
    let (shared, info, outbound) = (shared.clone(), info.clone(), outbound.clone());
    tokio::spawn(async move { route_message(&shared, &info, body, is_base64, &outbound).await });
}

/// Routes one message: selects the route, throttles, invokes.
async fn route_message(
    shared: &Arc<Shared>,
    info: &Arc<ConnectionInfo>,
    body: String,
    is_base64: bool,
    outbound: &mpsc::Sender<Outbound>,
) {
    let started = Instant::now();
    let route = if is_base64 {
        shared.route(routes::DEFAULT).map(|r| r.route_key.clone())
    } else {
        shared.select_route(&body).map(str::to_string)
    };
    let mut event = shared.event(info, route.as_deref().unwrap_or(routes::DEFAULT), "MESSAGE");
    let request_id = event.request_context.request_id.clone().unwrap_or_default();
    let gateway_frame = |message: &str| {
        Outbound::Frame(Message::text(
            GatewayFrame {
                message: message.to_string(),
                connection_id: info.id.clone(),
                request_id: request_id.clone(),
            }
            .to_text(),
        ))
    };
    let log = |route: &str, outcome: &str| {
        info!(
            connection_id = %info.id,
            route,
            outcome,
            latency_ms = started.elapsed().as_millis() as u64,
            "message routed"
        );
    };
    let Some(route) = route else {
        log("(none)", "no route");
        let _ = outbound.send(gateway_frame("Forbidden")).await;
        return;
    };
    if !shared.admit(&route) {
        log(&route, "throttled");
        let _ = outbound
            .send(gateway_frame(GatewayFrame::TOO_MANY_REQUESTS))
            .await;
        return;
    }
    event.request_context.message_id = Some(new_id());
    event.body = Some(body);
    event.is_base64_encoded = is_base64;
    match shared.invoke(&event).await {
        Ok(_) => log(&route, "ok"),
        Err(error) => {
            log(&route, error_kind(&error));
            let _ = outbound
                .send(gateway_frame(GatewayFrame::INTERNAL_SERVER_ERROR))
                .await;
        }
    }
}

/// The management API's error answer, as the SDK reads it: the type in
/// `x-amzn-errortype`, the message in the JSON body.
fn management_error(status: StatusCode, error_type: &'static str, message: &str) -> Response {
    let mut response = websocket::json_response(status, &json!({"message": message}));
    response
        .headers_mut()
        .insert("x-amzn-errortype", HeaderValue::from_static(error_type));
    with_request_id(response)
}

fn with_request_id(mut response: Response) -> Response {
    if let Ok(id) = HeaderValue::from_str(&new_id()) {
        response.headers_mut().insert("x-amzn-requestid", id);
    }
    response
}

fn gone() -> Response {
    management_error(StatusCode::GONE, "GoneException", "Gone")
}

/// The management API's answer for another stage's path: 403, as for any
/// path the API does not serve.
fn wrong_stage(shared: &Shared, stage: &str) -> Option<Response> {
    (stage != shared.config.stage)
        .then(|| management_error(StatusCode::FORBIDDEN, "ForbiddenException", "Forbidden"))
}

/// `POST /{stage}/@connections/{id}`: sends the raw body to the client.
async fn post_to_connection(
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
async fn get_connection(
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
async fn delete_connection(
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

#[cfg(test)]
pub(crate) mod tests;
