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
//!   no route; a binary frame closes the connection with 1003. No route
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
mod account;
mod authorizer;
mod config;
mod connect;
mod connection;
mod control;
mod management;
mod routing;
mod sigv4;
mod throttle;
pub mod websocket;
mod wire;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize};

use parking_lot::Mutex;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{any, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_util::sync::CancellationToken;

pub use crate::sigv4::{ACCESS_KEY_ID, SECRET_ACCESS_KEY};
pub use account::{ACCOUNT_CONNECT_RATE, ACCOUNT_REQUEST_RATE, AccountLimits, OverLimit};
pub use authorizer::{AuthorizerConfig, MAX_TTL, POLICY_CACHE_ENTRIES};
pub use config::{GatewayConfig, Limits, REQUEST_CONNECTIONS, Route};
pub use throttle::{ACCOUNT_BURST_LIMIT, ACCOUNT_RATE_LIMIT, Throttle};

use crate::console::EventBus;
use crate::control::FaultPlan;
use crate::lambda::invoke::Invoke;
use crate::listener::{ListenerLimits, LocalDoor};
use account::{AccountQuota, TokenBucket};
use connect::connect_handler;
use management::{delete_connection, get_connection, post_to_connection};
use routing::Routing;

/// How long a closing connection waits for the peer's close frame and reads
/// what the peer still sends.
const CLOSE_HANDSHAKE: Duration = websocket::LINGER;

/// An id in API Gateway's format (`L0SM9cOFvHcCIhw=`): connection ids,
/// request ids, message ids.
pub fn new_id() -> String {
    URL_SAFE.encode(rand::random::<[u8; 11]>())
}

/// The API Gateway WebSocket API, serving one stage.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

struct Shared {
    /// The stage, keys and limits; its routing fields are the start-up
    /// values, the live ones are `routing`.
    config: GatewayConfig,
    /// The stack's Region: `@connections` requests must be signed for it.
    region: String,
    invoke: Arc<dyn Invoke>,
    /// The `$connect` route's authorizer step, when it has one; `Err` names
    /// why the configured authorizer cannot run (every handshake gets 500).
    authorizer: Option<Result<authorizer::Authorizer, String>>,
    routing: ArcSwap<Routing>,
    connections: Mutex<HashMap<String, ConnectionHandle>>,
    buckets: Mutex<HashMap<String, TokenBucket>>,
    /// The account's request and new-connection rates.
    account: AccountQuota,
    /// One permit per open WebSocket connection (`--max-connections`).
    websocket_slots: Arc<Semaphore>,
    shutdown: watch::Sender<bool>,
    live_connections: watch::Sender<usize>,
    /// Where connections, invocations and throttled messages are reported (the console).
    events: EventBus,
    /// Faults armed by the control room (`@connections` answers, route invocations).
    faults: Arc<FaultPlan>,
}

/// What the management API and the message tasks know of a connection.
#[derive(Clone)]
struct ConnectionHandle {
    info: Arc<ConnectionInfo>,
    outbound: mpsc::Sender<Outbound>,
    /// Cancelled when a post finds the outbound queue full: the connection
    /// task closes the connection (1008) rather than let the queue grow.
    not_reading: CancellationToken,
    /// Set by the control room to end the connection now ([`control::Forced`]).
    forced: watch::Sender<Option<control::Forced>>,
}

/// The facts of a connection that go into every event.
struct ConnectionInfo {
    id: String,
    connected_at: DateTime<Utc>,
    source_ip: String,
    user_agent: Option<String>,
    /// `requestContext.authorizer` of every event of the connection: what
    /// the `$connect` authorizer answered (`principalId`, its context).
    authorizer: Option<authorizer::Identity>,
    /// Milliseconds since the epoch of the last frame from the client.
    last_active_ms: AtomicI64,
    /// Bytes of management API posts queued and not yet written.
    queued_bytes: AtomicUsize,
}

enum Outbound {
    /// A frame of the API layer's own (an error frame).
    Frame(Message),
    /// A management API post, counted in [`ConnectionInfo::queued_bytes`].
    Post(Message),
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
    /// A client that does not read what it is sent (its queue overflowed, or
    /// a frame could not be written within the send timeout); see
    /// docs/protocol.md for why 1008.
    fn not_reading(why: &str) -> Self {
        Disconnect::new(1008, &format!("Client not reading: {why}"))
    }
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
    pub fn new(
        config: GatewayConfig,
        region: &str,
        invoke: Arc<dyn Invoke>,
        events: EventBus,
    ) -> Self {
        Gateway::with_authorizer(config, region, invoke, None, events)
    }

    /// The gateway, with `authorizer_function` playing the authorizer the
    /// config's `$connect` route names.
    pub fn with_authorizer(
        config: GatewayConfig,
        region: &str,
        invoke: Arc<dyn Invoke>,
        authorizer_function: Option<Arc<dyn Invoke>>,
        events: EventBus,
    ) -> Self {
        let authorizer = config.authorizer.as_ref().map(|authorizer| {
            let function = authorizer_function.ok_or_else(|| {
                format!(
                    "authorizer {}: no authorizer function is running",
                    authorizer.name
                )
            })?;
            authorizer::Authorizer::new(authorizer, function)
        });
        if let Some(Err(problem)) = &authorizer {
            tracing::error!("{problem}; every handshake is refused with 500");
        }
        let routing = ArcSwap::from_pointee(Routing::new(&config));
        let account = AccountQuota::new(config.limits.account);
        let websocket_slots = Arc::new(Semaphore::new(config.limits.max_websockets));
        Gateway {
            shared: Arc::new(Shared {
                config,
                region: region.to_string(),
                invoke,
                authorizer,
                routing,
                connections: Mutex::new(HashMap::new()),
                buckets: Mutex::new(HashMap::new()),
                account,
                websocket_slots,
                shutdown: watch::channel(false).0,
                live_connections: watch::channel(0).0,
                events,
                faults: Arc::default(),
            }),
        }
    }

    /// The fault plan this API layer consults; the control room arms it.
    pub fn fault_plan(&self) -> Arc<FaultPlan> {
        Arc::clone(&self.shared.faults)
    }

    /// Applies `config`'s routes, selection expressions and throttling to
    /// the live stage, as a deployment does: open connections stay, their
    /// next message is routed by the new routes. The stage, keys and limits
    /// are the ones the gateway started with.
    pub fn swap_routing(&self, config: &GatewayConfig) {
        self.shared.routing.store(Arc::new(Routing::new(config)));
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
                    .delete(delete_connection)
                    // Layers run last-added first: the signature, then the quota.
                    .layer(axum::middleware::from_fn_with_state(
                        self.shared.clone(),
                        management::account_quota,
                    ))
                    .layer(axum::middleware::from_fn_with_state(
                        self.shared.clone(),
                        sigv4::require_signature,
                    )),
            )
            .fallback(|| async { forbidden() })
            .with_state(self.shared.clone())
    }

    /// Serves until [`Gateway::shutdown`] begins, within `limits`.
    pub async fn serve(self, listener: TcpListener, limits: ListenerLimits) -> std::io::Result<()> {
        self.serve_with_door(listener, None, limits).await
    }

    /// [`Gateway::serve`], also serving the connections handed in through
    /// `door` (the edge's, in the stack: [`crate::listener::local`]).
    pub async fn serve_with_door(
        self,
        listener: TcpListener,
        door: Option<LocalDoor>,
        limits: ListenerLimits,
    ) -> std::io::Result<()> {
        let shutdown = self.shared.shutdown.subscribe();
        crate::listener::serve_with_door(listener, door, self.router(), limits, shutdown).await
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        self.shared.connections.lock().len()
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

fn forbidden() -> Response {
    websocket::json_response(StatusCode::FORBIDDEN, &json!({"message": "Forbidden"}))
}

#[cfg(test)]
pub(crate) mod tests;
