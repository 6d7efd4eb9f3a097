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
//!   unchanged; then frames are relayed both ways, close frames and their
//!   codes included (e.g. API Gateway's 1009).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::{SinkExt, StreamExt};
use pulumi_program::WafSpec;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{debug, warn};

use crate::websocket::{self, ServerSocket};

/// How long the edge waits for the origin's handshake (CloudFront's default
/// origin connection + response timeouts are of this order).
const ORIGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a relay waits for the second side once one side started closing.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Request headers that belong to one hop and are not forwarded.
const HOP_HEADERS: &[&str] = &[
    "host",
    "connection",
    "upgrade",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "content-length",
    "proxy-authorization",
    "proxy-connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-accept",
    "sec-websocket-extensions",
    "x-forwarded-for",
    "via",
];

type OriginSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the edge needs: the origin and its custom header, and the WAF rule.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// The origin URL including the origin path: `ws://127.0.0.1:8081/prod`.
    pub origin: String,
    /// The origin custom header CloudFront sets (`x-api-key`).
    pub origin_api_key_header: String,
    pub api_key: String,
    pub waf: WafSpec,
}

/// The WAF rate-based rule: at most `limit` requests per client IP in any
/// evaluation window.
pub struct RateRule {
    limit: usize,
    window: Duration,
    seen: HashMap<IpAddr, VecDeque<Instant>>,
    checks: u64,
}

impl RateRule {
    pub fn new(limit: u64, window: Duration) -> Self {
        RateRule { limit: usize::try_from(limit).unwrap_or(usize::MAX), window, seen: HashMap::new(), checks: 0 }
    }

    /// Counts a request from `ip` at `now`; false when the rule blocks it.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let window = self.window;
        let fresh = |t: &Instant| now.saturating_duration_since(*t) < window;
        self.checks += 1;
        if self.checks.is_multiple_of(1024) {
            // Forget clients with nothing left in the window.
            self.seen.retain(|_, times| times.back().is_some_and(fresh));
        }
        let times = self.seen.entry(ip).or_default();
        while times.front().is_some_and(|t| !fresh(t)) {
            times.pop_front();
        }
        if times.len() >= self.limit {
            return false;
        }
        times.push_back(now);
        true
    }
}

/// The CloudFront distribution + WAF web ACL.
#[derive(Clone)]
pub struct Edge {
    shared: Arc<Shared>,
}

struct Shared {
    config: EdgeConfig,
    key_header: HeaderName,
    api_key: HeaderValue,
    rule: Mutex<RateRule>,
    /// `Via: 1.1 <id>.cloudfront.net (CloudFront)`, fixed per edge.
    via: String,
    shutdown: watch::Sender<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("invalid origin header name {0:?}")]
    HeaderName(String),
    #[error("the API key is not a valid header value")]
    ApiKey,
}

impl Edge {
    pub fn new(config: EdgeConfig) -> Result<Self, EdgeError> {
        let key_header = HeaderName::from_bytes(config.origin_api_key_header.as_bytes())
            .map_err(|_| EdgeError::HeaderName(config.origin_api_key_header.clone()))?;
        let api_key = HeaderValue::from_str(&config.api_key).map_err(|_| EdgeError::ApiKey)?;
        let rule = RateRule::new(config.waf.rate_limit, Duration::from_secs(config.waf.evaluation_window_secs));
        let id: String = hex(&rand::random::<[u8; 8]>());
        Ok(Edge {
            shared: Arc::new(Shared {
                config,
                key_header,
                api_key,
                rule: Mutex::new(rule),
                via: format!("1.1 {id}.cloudfront.net (CloudFront)"),
                shutdown: watch::channel(false).0,
            }),
        })
    }

    pub fn router(&self) -> Router {
        Router::new().fallback(edge_handler).with_state(self.shared.clone())
    }

    /// Serves until [`Edge::stop_accepting`]; relays already open go on
    /// until either side closes.
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        let mut shutdown = self.shared.shutdown.subscribe();
        let app = self.router().into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|down| *down).await;
            })
            .await
    }

    pub fn stop_accepting(&self) {
        self.shared.shutdown.send_replace(true);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn plain(status: StatusCode, body: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

async fn edge_handler(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
) -> Response {
    let waf = &shared.config.waf;
    let allowed = shared
        .rule
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .allow(peer.ip(), Instant::now());
    if !allowed {
        warn!(
            rule = %waf.rate_rule_name,
            client_ip = %peer.ip(),
            limit = waf.rate_limit,
            window_secs = waf.evaluation_window_secs,
            "WAF rate-based rule blocked the request"
        );
        return plain(StatusCode::FORBIDDEN, "Request blocked by the web ACL.\n");
    }
    let Some(handshake) = websocket::handshake(&mut request) else {
        return plain(StatusCode::UPGRADE_REQUIRED, "This distribution serves WebSocket connections.\n");
    };

    let origin_request = match origin_request(&shared, &request, peer) {
        Ok(r) => r,
        Err(error) => {
            warn!(%error, "cannot build the origin request");
            return plain(StatusCode::BAD_GATEWAY, "Bad Gateway\n");
        }
    };
    let connect = tokio_tungstenite::connect_async_with_config(origin_request, None, true);
    let (origin, origin_response) = match tokio::time::timeout(ORIGIN_TIMEOUT, connect).await {
        Ok(Ok(connected)) => connected,
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(refusal))) => {
            // The origin refused the handshake: its status and body, as CloudFront passes them on.
            let (parts, body) = refusal.into_parts();
            debug!(status = parts.status.as_u16(), "origin refused the handshake");
            let mut response = Response::new(Body::from(body.unwrap_or_default()));
            *response.status_mut() = parts.status;
            if let Some(content_type) = parts.headers.get(header::CONTENT_TYPE) {
                response.headers_mut().insert(header::CONTENT_TYPE, content_type.clone());
            }
            return response;
        }
        Ok(Err(error)) => {
            warn!(%error, "origin unreachable");
            return plain(StatusCode::BAD_GATEWAY, "Bad Gateway\n");
        }
        Err(_) => {
            warn!("origin handshake timed out");
            return plain(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout\n");
        }
    };
    let protocol = origin_response.headers().get(header::SEC_WEBSOCKET_PROTOCOL).cloned();
    let (response, client) = handshake.accept(protocol, WebSocketConfig::default());
    tokio::spawn(async move {
        match client.await {
            Ok(client) => relay(client, origin).await,
            Err(error) => debug!(%error, "client upgrade failed"),
        }
    });
    response
}

/// The request to the origin: the client's headers minus hop-by-hop ones and
/// minus any client-sent value of the origin custom header; plus that header
/// with the stack's key, `X-Forwarded-For`, `Via` and `X-Amz-Cf-Id`.
fn origin_request(
    shared: &Shared,
    request: &Request,
    peer: SocketAddr,
) -> Result<axum::http::Request<()>, tokio_tungstenite::tungstenite::Error> {
    let path = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut origin = format!("{}{path}", shared.config.origin.trim_end_matches('/')).into_client_request()?;
    let headers = origin.headers_mut();
    for (name, value) in request.headers() {
        let name_str = name.as_str();
        if HOP_HEADERS.contains(&name_str) || *name == shared.key_header {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    headers.insert(shared.key_header.clone(), shared.api_key.clone());
    let joined = |name: HeaderName, last: String| {
        let mut values: Vec<String> = request
            .headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect();
        values.push(last);
        values.join(", ")
    };
    let forwarded = joined(HeaderName::from_static("x-forwarded-for"), peer.ip().to_string());
    let via = joined(header::VIA, shared.via.clone());
    let cf_id = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 42]>());
    for (name, value) in [("x-forwarded-for", forwarded), ("via", via), ("x-amz-cf-id", cf_id)] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    Ok(origin)
}

/// Relays frames both ways until both sides closed (or one vanished).
/// Pings go to the origin (they count as activity there); pongs stay on
/// their hop, as each side answers its own pings.
async fn relay(mut client: ServerSocket, mut origin: OriginSocket) {
    let started = Instant::now();
    let mut closing: Option<tokio::time::Instant> = None;
    let mut close_code = None;
    loop {
        let grace = async {
            match closing {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            message = client.next() => match message {
                Some(Ok(Message::Pong(_))) => {}
                Some(Ok(message)) => {
                    if let Message::Close(frame) = &message {
                        close_code = close_code.or(frame.as_ref().map(|f| u16::from(f.code)));
                        closing.get_or_insert_with(|| tokio::time::Instant::now() + CLOSE_GRACE);
                    }
                    if origin.send(message).await.is_err() && closing.is_none() {
                        break;
                    }
                }
                _ => break,
            },
            message = origin.next() => match message {
                Some(Ok(Message::Pong(_) | Message::Ping(_))) => {}
                Some(Ok(message)) => {
                    if let Message::Close(frame) = &message {
                        close_code = close_code.or(frame.as_ref().map(|f| u16::from(f.code)));
                        closing.get_or_insert_with(|| tokio::time::Instant::now() + CLOSE_GRACE);
                    }
                    if client.send(message).await.is_err() && closing.is_none() {
                        break;
                    }
                }
                _ => break,
            },
            () = grace => break,
        }
    }
    debug!(
        close_code = close_code.unwrap_or(1006),
        duration_ms = started.elapsed().as_millis() as u64,
        "edge relay ended"
    );
}

#[cfg(test)]
mod tests;
