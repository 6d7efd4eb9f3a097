//! Accepting WebSocket upgrades on axum routes with tokio-tungstenite.
//!
//! The edge and the API layer answer the handshake themselves (rather than
//! with axum's `WebSocketUpgrade`) for two reasons: both must decide the
//! handshake's status only after async work (the WAF rule and the upstream
//! handshake; the `$connect` invocation), and the API layer must see
//! tungstenite's own frame-size errors to close with 1009 as API Gateway does.
//!
//! It also holds the lingering close both use: a server that drops a socket
//! while the peer's bytes are still unread makes its kernel answer with a TCP
//! reset instead of a FIN, and the reset makes the peer's kernel discard what
//! the peer has received but not read yet — such as the close frame (1009)
//! sent just before. So the side that ends a connection half-closes it and
//! reads (and discards) what the peer still sends, for a bounded time.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// How long a side that ends a connection keeps reading what the peer still
/// sends (the close handshake included).
pub const LINGER: Duration = Duration::from_secs(2);

/// Reads and discards `reader`'s bytes until it ends or fails.
pub async fn discard<R: AsyncRead + Unpin>(reader: &mut R) {
    let mut buffer = vec![0; 16 * 1024];
    while let Ok(1..) = reader.read(&mut buffer).await {}
}

/// The lingering close of a connection whose last bytes (a close frame) are
/// written: flushes and half-closes `io` (FIN), then discards what the peer
/// still sends until it closes its side too, or until `deadline`. Dropping
/// `io` after that sends no reset over bytes the peer sent in the meantime.
pub async fn linger<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S, deadline: Instant) {
    let _ = tokio::time::timeout_at(deadline, async {
        // A failed shutdown means the connection is already gone; reading says so too.
        let _ = io.shutdown().await;
        discard(io).await;
    })
    .await;
}

/// The server side of an accepted WebSocket connection.
pub type ServerSocket = WebSocketStream<TokioIo<Upgraded>>;

/// A valid WebSocket opening handshake, not answered yet.
pub struct Handshake {
    accept_key: String,
    on_upgrade: OnUpgrade,
}

/// Checks that `request` is a WebSocket opening handshake (RFC 6455 §4.2.1)
/// and takes what is needed to answer it. `None` when it is not one.
pub fn handshake(request: &mut Request<Body>) -> Option<Handshake> {
    let headers = request.headers();
    let upgrade_ok = header_has_token(headers, header::UPGRADE, "websocket");
    let connection_ok = header_has_token(headers, header::CONNECTION, "upgrade");
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    let key = headers.get(header::SEC_WEBSOCKET_KEY)?;
    if request.method() != Method::GET || !upgrade_ok || !connection_ok || !version_ok {
        return None;
    }
    let accept_key = derive_accept_key(key.as_bytes());
    let on_upgrade = request.extensions_mut().remove::<OnUpgrade>()?;
    Some(Handshake {
        accept_key,
        on_upgrade,
    })
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .to_str()
            .map(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

impl Handshake {
    /// The `101 Switching Protocols` answer, and the future that yields the
    /// socket once hyper hands the connection over.
    pub fn accept(
        self,
        protocol: Option<HeaderValue>,
        config: WebSocketConfig,
    ) -> (
        Response<Body>,
        impl Future<Output = Result<ServerSocket, hyper::Error>> + Send + 'static,
    ) {
        let (response, io) = self.accept_io(protocol);
        let socket = async move {
            let io = io.await?;
            Ok(WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await)
        };
        (response, socket)
    }

    /// Like [`Handshake::accept`], yielding the raw connection: for a relay
    /// whose frames are spoken end to end by the client and the origin.
    pub fn accept_io(
        self,
        protocol: Option<HeaderValue>,
    ) -> (
        Response<Body>,
        impl Future<Output = Result<TokioIo<Upgraded>, hyper::Error>> + Send + 'static,
    ) {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(accept) = HeaderValue::from_str(&self.accept_key) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        if let Some(protocol) = protocol {
            headers.insert(header::SEC_WEBSOCKET_PROTOCOL, protocol);
        }
        let on_upgrade = self.on_upgrade;
        (response, async move { Ok(TokioIo::new(on_upgrade.await?)) })
    }
}

/// A plain response with a JSON body, as API Gateway and CloudFront answer
/// refused handshakes.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
