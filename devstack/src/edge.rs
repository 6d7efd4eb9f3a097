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

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::uri::Authority;
use axum::http::{HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper_util::rt::TokioIo;
use pulumi_program::WafSpec;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::websocket;

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
        RateRule {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            window,
            seen: HashMap::new(),
            checks: 0,
        }
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
    /// The origin's host:port and path (the stage), from `config.origin`.
    origin_authority: Authority,
    origin_path: String,
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
    #[error("invalid origin {0:?}: expected ws://host:port/path")]
    Origin(String),
}

impl Edge {
    pub fn new(config: EdgeConfig) -> Result<Self, EdgeError> {
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
        let rule = RateRule::new(
            config.waf.rate_limit,
            Duration::from_secs(config.waf.evaluation_window_secs),
        );
        let id: String = hex(&rand::random::<[u8; 8]>());
        Ok(Edge {
            shared: Arc::new(Shared {
                config,
                origin_authority,
                origin_path,
                key_header,
                api_key,
                rule: Mutex::new(rule),
                via: format!("1.1 {id}.cloudfront.net (CloudFront)"),
                shutdown: watch::channel(false).0,
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
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        websocket::serve(listener, self.router(), self.shared.shutdown.subscribe()).await
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

/// Relays bytes between the client and the origin until both directions
/// end; the bytes each way (client to origin first), or how that direction
/// failed. When one direction ends, the other gets [`websocket::LINGER`] to
/// end too: the origin's close frame and FIN reach the client while the
/// client's last bytes (its close reply, or the rest of an oversize frame)
/// are still read, instead of both sockets being dropped with bytes unread —
/// which makes the kernel send a reset that can discard the close frame
/// before the client reads it.
async fn relay<C, O>(client: C, origin: O) -> (io::Result<u64>, io::Result<u64>)
where
    C: AsyncRead + AsyncWrite + Unpin,
    O: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut origin_read, mut origin_write) = tokio::io::split(origin);
    let up = pipe(&mut client_read, &mut origin_write);
    let down = pipe(&mut origin_read, &mut client_write);
    tokio::pin!(up, down);
    let lingering = |rest: Result<io::Result<u64>, _>| {
        rest.unwrap_or_else(|_| Err(io::Error::from(io::ErrorKind::TimedOut)))
    };
    tokio::select! {
        sent = &mut up => (sent, lingering(tokio::time::timeout(websocket::LINGER, down).await)),
        received = &mut down => (lingering(tokio::time::timeout(websocket::LINGER, up).await), received),
    }
}

/// Copies `from` to `to` until `from` ends or fails, then half-closes `to`
/// (FIN). When `to` fails, the rest of `from` is read and discarded, so
/// `from`'s bytes never stay unread.
async fn pipe<R, W>(from: &mut R, to: &mut W) -> io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0; 16 * 1024];
    let mut copied = 0;
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(error) => {
                let _ = to.shutdown().await;
                return Err(error);
            }
        };
        if let Err(error) = to.write_all(&buffer[..n]).await {
            websocket::discard(from).await;
            return Err(error);
        }
        copied += n as u64;
    }
    to.shutdown().await?;
    Ok(copied)
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
