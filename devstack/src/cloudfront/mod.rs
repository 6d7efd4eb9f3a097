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

mod relay;
mod waf;

use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::uri::Authority;
use axum::http::{HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::apigateway::websocket;
use crate::console::{EventBus, StackEvent};
use crate::listener::ListenerLimits;
use relay::relay;
pub use waf::{RateRule, RateRuleConfig};

/// How long the edge waits for the origin's handshake (CloudFront's default
/// origin connection + response timeouts are of this order).
const ORIGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest origin error body passed on to the client.
const MAX_ERROR_BODY: usize = 64 * 1024;
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
    "sec-websocket-extensions",
    "x-forwarded-for",
    "via",
];

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

    pub fn stop_accepting(&self) {
        self.shared.shutdown.send_replace(true);
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

async fn edge_handler(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
) -> Response {
    let waf = shared.waf.load();
    let allowed = shared.rule.lock().allow(peer.ip(), Instant::now());
    if !allowed {
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
        return plain(StatusCode::FORBIDDEN, "Request blocked by the web ACL.\n");
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

    let origin_request = match origin_request(&shared, &request, peer) {
        Ok(r) => r,
        Err(error) => {
            warn!(%error, "cannot build the origin request");
            return plain(StatusCode::BAD_GATEWAY, "Bad Gateway\n");
        }
    };
    let mut origin_response =
        match tokio::time::timeout(ORIGIN_TIMEOUT, open_origin(&shared, origin_request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                warn!(%error, "origin unreachable");
                return plain(StatusCode::BAD_GATEWAY, "Bad Gateway\n");
            }
            Err(_) => {
                warn!("origin handshake timed out");
                return plain(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout\n");
            }
        };
    if origin_response.status() != StatusCode::SWITCHING_PROTOCOLS {
        // The origin refused the handshake: its status and body, as CloudFront passes them on.
        let status = origin_response.status();
        debug!(status = status.as_u16(), "origin refused the handshake");
        let content_type = origin_response.headers().get(header::CONTENT_TYPE).cloned();
        let body = axum::body::to_bytes(Body::new(origin_response.into_body()), MAX_ERROR_BODY)
            .await
            .unwrap_or_default();
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        if let Some(content_type) = content_type {
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, content_type);
        }
        return response;
    }
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

/// Sends the handshake to the origin over a new connection (HTTP/1.1 with
/// upgrades) and returns its response.
async fn open_origin(
    shared: &Shared,
    request: axum::http::Request<Body>,
) -> Result<axum::http::Response<hyper::body::Incoming>, Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(shared.origin_authority.as_str()).await?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            debug!(%error, "origin connection failed");
        }
    });
    Ok(sender.send_request(request).await?)
}

/// The request to the origin: the client's handshake (its WebSocket key
/// included, as the connection is end to end) minus hop-by-hop headers and
/// minus any client-sent value of the origin custom header; plus that header
/// with the stack's key, `X-Forwarded-For`, `Via` and `X-Amz-Cf-Id`, to the
/// origin path + the client's path and query string.
fn origin_request(
    shared: &Shared,
    request: &Request,
    peer: SocketAddr,
) -> Result<axum::http::Request<Body>, axum::http::Error> {
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut origin =
        axum::http::Request::get(format!("{}{path}", shared.origin_path)).body(Body::empty())?;
    let headers = origin.headers_mut();
    for (name, value) in request.headers() {
        if HOP_HEADERS.contains(&name.as_str()) || *name == shared.key_header {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    if let Ok(host) = HeaderValue::from_str(shared.origin_authority.as_str()) {
        headers.insert(header::HOST, host);
    }
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
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
    let forwarded = joined(
        HeaderName::from_static("x-forwarded-for"),
        peer.ip().to_string(),
    );
    let via = joined(header::VIA, shared.via.clone());
    let cf_id = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 42]>());
    for (name, value) in [
        ("x-forwarded-for", forwarded),
        ("via", via),
        ("x-amz-cf-id", cf_id),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    Ok(origin)
}

#[cfg(test)]
mod tests;
