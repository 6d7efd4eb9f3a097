//! The distribution's origin side: the request CloudFront sends the origin
//! for a client's handshake, and the origin's answer when it refuses.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tracing::{debug, warn};

use super::{Shared, plain};

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

/// The origin's answer to the client's handshake, within [`ORIGIN_TIMEOUT`];
/// a request that cannot be built or sent is answered 502, a timeout 504.
pub(super) async fn handshake(
    shared: &Shared,
    uri: &Uri,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<axum::http::Response<hyper::body::Incoming>, Response> {
    let origin_request = match origin_request(shared, uri, headers, peer) {
        Ok(r) => r,
        Err(error) => {
            warn!(%error, "cannot build the origin request");
            return Err(plain(StatusCode::BAD_GATEWAY, "Bad Gateway\n"));
        }
    };
    match tokio::time::timeout(ORIGIN_TIMEOUT, open_origin(shared, origin_request)).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(error)) => {
            warn!(%error, "origin unreachable");
            Err(plain(StatusCode::BAD_GATEWAY, "Bad Gateway\n"))
        }
        Err(_) => {
            warn!("origin handshake timed out");
            Err(plain(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout\n"))
        }
    }
}

/// The origin refused the handshake: its status and body (up to
/// [`MAX_ERROR_BODY`]), as CloudFront passes them on.
pub(super) async fn refusal(
    origin_response: axum::http::Response<hyper::body::Incoming>,
) -> Response {
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
    response
}

type OriginResult =
    Result<axum::http::Response<hyper::body::Incoming>, Box<dyn std::error::Error + Send + Sync>>;

/// Sends the handshake to the origin over a new connection — through the
/// origin's door in this process when the stack gave one, else over TCP —
/// and returns its response.
async fn open_origin(shared: &Shared, request: axum::http::Request<Body>) -> OriginResult {
    if let Some(door) = shared.origin_door.get() {
        let pipe = door.dial(shared.next_local_peer()).await?;
        return send_over(pipe, request).await;
    }
    let stream = TcpStream::connect(shared.origin_authority.as_str()).await?;
    stream.set_nodelay(true)?;
    send_over(stream, request).await
}

/// The handshake over `io` (HTTP/1.1 with upgrades), and the origin's answer.
async fn send_over<I>(io: I, request: axum::http::Request<Body>) -> OriginResult
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
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
    uri: &Uri,
    client_headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<axum::http::Request<Body>, axum::http::Error> {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut origin =
        axum::http::Request::get(format!("{}{path}", shared.origin_path)).body(Body::empty())?;
    let headers = origin.headers_mut();
    for (name, value) in client_headers {
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
        let mut values: Vec<String> = client_headers
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
