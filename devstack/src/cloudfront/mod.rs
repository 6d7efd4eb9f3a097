//! The edge: plays the CloudFront distribution and its WAF web ACL in front
//! of the API layer, so clients connect to the local stack the way they
//! connect to `DistributionURL`.
//!
//! - WAF: the rate-based rule of the stack's web ACL, per client IP (limit
//!   and evaluation window from the program); over the limit the handshake
//!   gets 403 and a warn line names the rule.
//! - CloudFront: the origin custom header (`x-api-key`) replaces whatever the
//!   client sent under that name; `X-Forwarded-For` and `Via` are added; the
//!   request goes to the origin path (the stage) with the client's path and
//!   query string; the origin's refusal (status and body) reaches the client
//!   unchanged. Once the origin accepts, the edge relays the connection's
//!   bytes: the WebSocket is spoken end to end between client and origin, so
//!   frames keep their boundaries (API Gateway's 32 KB frame limit sees the
//!   client's own frames), pings reach the origin (and count as activity),
//!   and close frames and codes (e.g. 1009) pass unchanged. When one side
//!   ends its connection, the edge passes that on as a half-close (FIN) and
//!   keeps relaying — or, once the other side is gone, reading and
//!   discarding — what the other side still sends, for a bounded time, so a
//!   close frame is never lost to a reset from the edge.

mod origin;
mod relay;
mod waf;

use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use std::time::Instant;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::uri::Authority;
use axum::http::{HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::apigateway::websocket;
use crate::console::{EventBus, StackEvent};
use crate::listener::{ListenerLimits, LocalDialer};
use relay::relay;
pub use waf::{RateRule, RateRuleConfig};

/// What the edge needs: the origin and its custom header, and the WAF rule.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// The origin URL including the origin path: `ws://127.0.0.1:8081/prod`.
    pub origin: String,
    /// The origin custom header CloudFront sets (`x-api-key`).
    pub origin_api_key_header: String,
    pub api_key: String,
    pub waf: RateRuleConfig,
}
/// The CloudFront distribution + WAF web ACL.
#[derive(Clone)]
pub struct Edge {
    shared: Arc<Shared>,
}

struct Shared {
    /// The origin's host:port and path (the stage), from [`EdgeConfig::origin`].
    origin_authority: Authority,
    origin_path: String,
    key_header: HeaderName,
    api_key: HeaderValue,
    rule: Mutex<RateRule>,
    /// The rule's name, limit and window, for the log line of a block.
    waf: ArcSwap<RateRuleConfig>,
    /// `Via: 1.1 <id>.cloudfront.net (CloudFront)`, fixed per edge.
    via: String,
    shutdown: watch::Sender<bool>,
    /// Where WAF blocks are reported (the console).
    events: EventBus,
    /// The origin's door inside this process, when the stack has one
    /// ([`Edge::reach_origin_through`]); else a TCP connection per handshake.
    origin_door: OnceLock<LocalDialer>,
    /// The port the origin sees a piped connection come from, cycling
    /// through the kernel's ephemeral range as a socket's would.
    next_port: AtomicU16,
}

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("invalid origin header name {0:?}")]
    HeaderName(String),
    #[error("the API key is not a valid header value")]
    ApiKey,
    #[error("invalid origin {0:?}: expected ws://host:port/path")]
    Origin(String),
}

impl Edge {
    pub fn new(config: EdgeConfig, events: EventBus) -> Result<Self, EdgeError> {
        let key_header = HeaderName::from_bytes(config.origin_api_key_header.as_bytes())
            .map_err(|_| EdgeError::HeaderName(config.origin_api_key_header.clone()))?;
        let api_key = HeaderValue::from_str(&config.api_key).map_err(|_| EdgeError::ApiKey)?;
        let origin: Uri = config
            .origin
            .parse()
            .map_err(|_| EdgeError::Origin(config.origin.clone()))?;
        let origin_authority = match (origin.scheme_str(), origin.authority()) {
            (Some("ws"), Some(authority)) => authority.clone(),
            _ => return Err(EdgeError::Origin(config.origin.clone())),
        };
        let origin_path = origin.path().trim_end_matches('/').to_string();
        let rule = RateRule::new(config.waf.limit, config.waf.window);
        let id: String = hex::encode(rand::random::<[u8; 8]>());
        let waf = ArcSwap::from_pointee(config.waf.clone());
        Ok(Edge {
            shared: Arc::new(Shared {
                waf,
                origin_authority,
                origin_path,
                key_header,
                api_key,
                rule: Mutex::new(rule),
                via: format!("1.1 {id}.cloudfront.net (CloudFront)"),
                shutdown: watch::channel(false).0,
                events,
                origin_door: OnceLock::new(),
                next_port: AtomicU16::new(EPHEMERAL_PORTS.start),
            }),
        })
    }

    pub fn router(&self) -> Router {
        Router::new()
            .fallback(edge_handler)
            .with_state(self.shared.clone())
    }

    /// Serves until [`Edge::stop_accepting`]; relays already open go on
    /// until either side closes.
    pub async fn serve(self, listener: TcpListener, limits: ListenerLimits) -> std::io::Result<()> {
        let shutdown = self.shared.shutdown.subscribe();
        crate::listener::serve(listener, self.router(), limits, shutdown).await
    }

    /// Applies an updated rate rule (limit, window, name), as a web ACL
    /// update does: open relays are not affected, the next handshake is.
    pub fn swap_rate_rule(&self, waf: &RateRuleConfig) {
        let mut rule = self.shared.rule.lock();
        rule.set_limit(waf.limit, waf.window);
        self.shared.waf.store(Arc::new(waf.clone()));
    }

    /// Sends each handshake to the origin through `door`, a listener's door
    /// in this process, instead of over a new TCP connection (see
    /// [`crate::listener::local`]); the origin sees the connection come from
    /// 127.0.0.1, as from a socket. Set once; later calls change nothing.
    pub fn reach_origin_through(&self, door: LocalDialer) {
        let _ = self.shared.origin_door.set(door);
    }

    pub fn stop_accepting(&self) {
        self.shared.shutdown.send_replace(true);
    }
}

/// Linux's default ephemeral ports (`net.ipv4.ip_local_port_range`).
const EPHEMERAL_PORTS: Range<u16> = 32_768..61_000;

impl Shared {
    /// The address the origin sees a piped connection come from.
    fn next_local_peer(&self) -> SocketAddr {
        let span = EPHEMERAL_PORTS.end - EPHEMERAL_PORTS.start;
        let n = self.next_port.fetch_add(1, Ordering::Relaxed);
        let port = EPHEMERAL_PORTS.start + n.wrapping_sub(EPHEMERAL_PORTS.start) % span;
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

/// A client's request at the distribution: the WAF rule, CloudFront's
/// refusals, then the handshake with the origin and, once it accepts, the
/// relay.
async fn edge_handler(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
) -> Response {
    if let Some(blocked) = waf_block(&shared, peer) {
        return blocked;
    }
    if targets_management_api(request.uri().path()) {
        debug!(
            path = request.uri().path(),
            "refused a request for @connections"
        );
        return plain(
            StatusCode::FORBIDDEN,
            "The @connections management API is not served through this distribution.\n",
        );
    }
    let Some(handshake) = websocket::handshake(&mut request) else {
        return plain(
            StatusCode::UPGRADE_REQUIRED,
            "This distribution serves WebSocket connections.\n",
        );
    };
    let origin_response =
        match origin::handshake(&shared, request.uri(), request.headers(), peer).await {
            Ok(response) => response,
            Err(refused) => return refused,
        };
    if origin_response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return origin::refusal(origin_response).await;
    }
    relay_upgraded(handshake, origin_response)
}

/// The web ACL's rate-based rule for the client's IP: over the limit, the
/// 403 to answer, and a warn line naming the rule.
fn waf_block(shared: &Shared, peer: SocketAddr) -> Option<Response> {
    let waf = shared.waf.load();
    let allowed = shared.rule.lock().allow(peer.ip(), Instant::now());
    if allowed {
        return None;
    }
    warn!(
        rule = %waf.name,
        client_ip = %peer.ip(),
        limit = waf.limit,
        window_secs = waf.window.as_secs(),
        "WAF rate-based rule blocked the request"
    );
    shared.events.publish(StackEvent::WafBlocked {
        rule: waf.name.clone(),
        client_ip: peer.ip().to_string(),
    });
    Some(plain(
        StatusCode::FORBIDDEN,
        "Request blocked by the web ACL.\n",
    ))
}

/// Accepts the client's handshake with the origin's subprotocol, and spawns
/// the relay between the two upgraded connections.
fn relay_upgraded(
    handshake: websocket::Handshake,
    mut origin_response: axum::http::Response<hyper::body::Incoming>,
) -> Response {
    let protocol = origin_response
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .cloned();
    let origin_io = hyper::upgrade::on(&mut origin_response);
    let (response, client_io) = handshake.accept_io(protocol);
    tokio::spawn(async move {
        let started = Instant::now();
        let (client, origin) = match tokio::join!(client_io, origin_io) {
            (Ok(client), Ok(origin)) => (client, origin),
            (Err(error), _) | (_, Err(error)) => {
                debug!(%error, "upgrade failed");
                return;
            }
        };
        let (sent, received) = relay(client, TokioIo::new(origin)).await;
        debug!(
            ?sent,
            ?received,
            duration_ms = started.elapsed().as_millis() as u64,
            "edge relay ended"
        );
    });
    response
}

/// Whether a client path would reach the API's `@connections` management
/// API at the origin (`/{stage}/@connections/...`), which CloudFront never
/// exposes: a segment `@connections`, percent-encoded or not.
fn targets_management_api(path: &str) -> bool {
    path.split('/').any(|segment| {
        let segment = segment.to_ascii_lowercase();
        segment == "@connections" || segment == "%40connections"
    })
}

#[cfg(test)]
mod tests;
