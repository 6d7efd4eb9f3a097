//! The WebSocket client every tool and test of the stack uses, one way each:
//! the source addresses that make many viewers out of one machine, the
//! handshake from one of them (with the API key, with small buffers), a
//! bounded clean close and a bounded wait for the frame wanted.
//!
//! The benchmarks, the load mode, the deployment checker and the e2e tests
//! each had their own copy of these before. The handshake dials loopback
//! only; the close and the reads work over any stream, so the checker uses
//! them over its TLS connections too.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

/// A client connection over plain TCP, as [`handshake`] opens it.
pub type Ws = WebSocketStream<TcpStream>;

/// Client `i`'s source address: 127.1.1.1, 127.1.1.2, … spread over
/// 127.0.0.0/8, never a .0 or .255 octet, so per-IP limits see many
/// clients, as CloudFront sees many viewers.
pub fn source_address(i: usize) -> Ipv4Addr {
    let host = (i % 250) as u8 + 1;
    let subnet = ((i / 250) % 250) as u8 + 1;
    let net = ((i / 62_500) % 250) as u8 + 1;
    Ipv4Addr::new(127, net, subnet, host)
}

/// How a handshake is made; the default is the system's source address, no
/// key and tungstenite's buffers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dial<'a> {
    /// The loopback address to connect from.
    pub source: Option<IpAddr>,
    /// Sent as `x-api-key` (the API layer wants it).
    pub api_key: Option<&'a str>,
    /// E.g. small buffers, for thousands of clients in one process.
    pub config: Option<WebSocketConfig>,
}

/// Why a handshake did not give an open connection.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("bad URL {url}: {source}")]
    Url {
        url: String,
        source: tungstenite::Error,
    },
    #[error("{url}: only loopback IP addresses are dialled, not {host}")]
    NotLoopback { url: String, host: String },
    #[error("the API key is not a valid header value")]
    ApiKey,
    #[error("{what} for {url}: {source}")]
    Socket {
        what: &'static str,
        url: String,
        source: std::io::Error,
    },
    #[error("the handshake with {url} did not finish within {limit:?}")]
    Timeout { url: String, limit: Duration },
    #[error("the handshake with {url} was refused with HTTP {status}")]
    Refused { url: String, status: u16 },
    #[error("WebSocket handshake with {url}: {source}")]
    Handshake {
        url: String,
        source: tungstenite::Error,
    },
}

/// Opens `url` (`ws://<loopback IP>:port/path`) as `dial` says: TCP connect
/// (from `dial.source`), `TCP_NODELAY`, the WebSocket upgrade; all within
/// `limit`. A refusal is [`HandshakeError::Refused`] with its status.
pub async fn handshake(url: &str, dial: Dial<'_>, limit: Duration) -> Result<Ws, HandshakeError> {
    let mut request = url
        .into_client_request()
        .map_err(|source| HandshakeError::Url {
            url: url.to_string(),
            source,
        })?;
    if let Some(key) = dial.api_key {
        let value = HeaderValue::from_str(key).map_err(|_| HandshakeError::ApiKey)?;
        request.headers_mut().insert("x-api-key", value);
    }
    let host = request.uri().host().unwrap_or_default().to_string();
    let ip = host
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<IpAddr>()
        .ok()
        .filter(IpAddr::is_loopback)
        .ok_or_else(|| HandshakeError::NotLoopback {
            url: url.to_string(),
            host: host.clone(),
        })?;
    let port = request.uri().port_u16().unwrap_or(80);
    let socket_error = |what| {
        move |source| HandshakeError::Socket {
            what,
            url: url.to_string(),
            source,
        }
    };
    let opening = async {
        let socket = match ip {
            IpAddr::V4(_) => TcpSocket::new_v4(),
            IpAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(socket_error("creating a socket"))?;
        if let Some(source) = dial.source {
            socket
                .bind(SocketAddr::new(source, 0))
                .map_err(socket_error("binding the source address"))?;
        }
        let stream = socket
            .connect(SocketAddr::new(ip, port))
            .await
            .map_err(socket_error("TCP connect"))?;
        stream
            .set_nodelay(true)
            .map_err(socket_error("setting TCP_NODELAY"))?;
        match tokio_tungstenite::client_async_with_config(request, stream, dial.config).await {
            Ok((ws, _response)) => Ok(ws),
            Err(tungstenite::Error::Http(response)) => Err(HandshakeError::Refused {
                url: url.to_string(),
                status: response.status().as_u16(),
            }),
            Err(source) => Err(HandshakeError::Handshake {
                url: url.to_string(),
                source,
            }),
        }
    };
    tokio::time::timeout(limit, opening)
        .await
        .unwrap_or_else(|_| {
            Err(HandshakeError::Timeout {
                url: url.to_string(),
                limit,
            })
        })
}

/// Why a clean close did not complete.
#[derive(Debug, thiserror::Error)]
pub enum CloseError {
    #[error("close did not complete cleanly: {0}")]
    Failed(tungstenite::Error),
    #[error("no close frame from the server within {}s", .0.as_secs())]
    Timeout(Duration),
}

/// Sends a close frame and reads until the server's, within `limit`, so the
/// server sees a clean close.
pub async fn close<S>(ws: &mut WebSocketStream<S>, limit: Duration) -> Result<(), CloseError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let closing = async {
        ws.close(None).await?;
        while let Some(message) = ws.next().await {
            message?;
        }
        Ok::<(), tungstenite::Error>(())
    };
    match tokio::time::timeout(limit, closing).await {
        Ok(Ok(())) | Ok(Err(tungstenite::Error::ConnectionClosed)) => Ok(()),
        Ok(Err(error)) => Err(CloseError::Failed(error)),
        Err(_) => Err(CloseError::Timeout(limit)),
    }
}

/// One frame as a client tells them apart (WebSocket pings and pongs are
/// answered by tungstenite and skipped).
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
    /// A close frame; the code is `None` when the frame carried none.
    Close(Option<u16>),
    /// The connection ended without a close frame (or after one).
    Ended,
}

/// Why no frame was read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the connection failed: {0}")]
    Connection(tungstenite::Error),
    #[error("no frame within {0:?}")]
    Timeout(Duration),
}

/// The next frame, unbounded: the callers bound it.
async fn read<S>(ws: &mut WebSocketStream<S>) -> Result<Frame, tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    use tungstenite::error::ProtocolError::ResetWithoutClosingHandshake;
    loop {
        let message = match ws.next().await {
            None | Some(Err(tungstenite::Error::ConnectionClosed)) => return Ok(Frame::Ended),
            Some(Err(tungstenite::Error::Protocol(ResetWithoutClosingHandshake))) => {
                return Ok(Frame::Ended);
            }
            Some(Err(tungstenite::Error::Io(e)))
                if e.kind() == std::io::ErrorKind::ConnectionReset =>
            {
                return Ok(Frame::Ended);
            }
            Some(message) => message?,
        };
        return Ok(match message {
            Message::Text(text) => Frame::Text(text.to_string()),
            Message::Binary(bytes) => Frame::Binary(bytes.to_vec()),
            Message::Close(frame) => Frame::Close(frame.map(|f| u16::from(f.code))),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
        });
    }
}

/// The next frame, waiting at most `limit`.
pub async fn next_frame<S>(ws: &mut WebSocketStream<S>, limit: Duration) -> Result<Frame, ReadError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tokio::time::timeout(limit, read(ws))
        .await
        .map_err(|_| ReadError::Timeout(limit))?
        .map_err(ReadError::Connection)
}

/// Why no text frame was picked.
#[derive(Debug, thiserror::Error)]
pub enum NextTextError {
    #[error("the connection failed: {0}")]
    Connection(tungstenite::Error),
    #[error("the connection ended")]
    Ended,
    #[error("the server closed the connection{}", .code.map(|c| format!(" (code {c})")).unwrap_or_default())]
    Closed { code: Option<u16> },
    #[error("an unexpected binary frame")]
    Binary,
    #[error("no answer within {}s", .0.as_secs_f64())]
    Timeout(Duration),
}

/// Waits at most `limit` for the next text frame that `accept` picks,
/// skipping the text frames it does not; a binary frame, a close or the end
/// of the connection fails.
pub async fn next_text<S, T>(
    ws: &mut WebSocketStream<S>,
    limit: Duration,
    mut accept: impl FnMut(&str) -> Option<T>,
) -> Result<T, NextTextError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let reading = async {
        loop {
            match read(ws).await.map_err(NextTextError::Connection)? {
                Frame::Text(text) => {
                    if let Some(found) = accept(&text) {
                        return Ok(found);
                    }
                }
                Frame::Binary(_) => return Err(NextTextError::Binary),
                Frame::Close(code) => return Err(NextTextError::Closed { code }),
                Frame::Ended => return Err(NextTextError::Ended),
            }
        }
    };
    tokio::time::timeout(limit, reading)
        .await
        .unwrap_or(Err(NextTextError::Timeout(limit)))
}

#[cfg(test)]
// tungstenite's handshake callbacks return its `ErrorResponse` by value.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use futures_util::SinkExt as _;
    use std::collections::HashSet;

    const LIMIT: Duration = Duration::from_secs(10);

    #[test]
    fn sources_are_distinct_loopback_addresses_without_0_or_255() {
        let mut seen = HashSet::new();
        for i in 0..100_000 {
            let ip = source_address(i);
            assert!(ip.is_loopback(), "{ip}");
            let [_, a, b, c] = ip.octets();
            assert!([a, b, c].iter().all(|&o| o != 0 && o != 255), "{ip}");
            assert!(seen.insert(ip), "{ip} twice");
        }
        assert!(source_address(usize::MAX).is_loopback());
    }

    #[tokio::test]
    async fn only_loopback_addresses_are_dialled() {
        for url in ["ws://192.0.2.1:80/", "ws://example.com/"] {
            let error = handshake(url, Dial::default(), LIMIT).await.unwrap_err();
            assert!(
                matches!(error, HandshakeError::NotLoopback { .. }),
                "{error}"
            );
        }
    }

    /// A server that checks the key and source, answers one text frame with
    /// a binary one, a skipped text and an echo, then closes.
    async fn serve_once(listener: tokio::net::TcpListener) -> Option<(IpAddr, Option<String>)> {
        let (stream, peer) = listener.accept().await.ok()?;
        let mut key = None;
        let mut ws = tokio_tungstenite::accept_hdr_async(
            stream,
            |request: &tungstenite::handshake::server::Request, response| {
                key = request
                    .headers()
                    .get("x-api-key")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                Ok(response)
            },
        )
        .await
        .ok()?;
        while let Some(Ok(message)) = ws.next().await {
            if message.is_text() {
                ws.send(Message::text("skipped")).await.ok()?;
                ws.send(message).await.ok()?;
                ws.send(Message::binary(vec![1u8])).await.ok()?;
            }
        }
        Some((peer.ip(), key))
    }

    #[tokio::test]
    async fn a_handshake_from_a_source_with_a_key_reads_picks_and_closes_cleanly() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/path", listener.local_addr().unwrap());
        let server = tokio::spawn(serve_once(listener));
        let source = IpAddr::V4(source_address(3));
        let dial = Dial {
            source: Some(source),
            api_key: Some("k-123"),
            config: Some(WebSocketConfig::default().read_buffer_size(4096)),
        };
        let mut ws = handshake(&url, dial, LIMIT).await.unwrap();
        ws.send(Message::text("hello")).await.unwrap();
        let got = next_text(&mut ws, LIMIT, |t| (t == "hello").then_some(t.len()))
            .await
            .unwrap();
        assert_eq!(got, 5);
        let error = next_text(&mut ws, LIMIT, |_| Some(())).await.unwrap_err();
        assert!(matches!(error, NextTextError::Binary), "{error}");
        close(&mut ws, LIMIT).await.unwrap();
        let seen = tokio::time::timeout(LIMIT, server).await.unwrap().unwrap();
        assert_eq!(seen, Some((source, Some("k-123".to_string()))));
    }

    #[tokio::test]
    async fn a_refusal_carries_its_status_and_a_silent_wait_is_bounded() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.ok()?;
            let refused = tokio_tungstenite::accept_hdr_async(stream, |_: &_, _| {
                let mut response = tungstenite::handshake::server::ErrorResponse::new(None);
                *response.status_mut() = tungstenite::http::StatusCode::FORBIDDEN;
                Err(response)
            });
            let _ = refused.await;
            let (stream, _) = listener.accept().await.ok()?;
            let ws = tokio_tungstenite::accept_async(stream).await.ok()?;
            tokio::time::sleep(LIMIT).await;
            Some(ws)
        });
        let error = handshake(&url, Dial::default(), LIMIT).await.unwrap_err();
        assert!(
            matches!(error, HandshakeError::Refused { status: 403, .. }),
            "{error}"
        );
        let mut ws = handshake(&url, Dial::default(), LIMIT).await.unwrap();
        let short = Duration::from_millis(200);
        let error = next_frame(&mut ws, short).await.unwrap_err();
        assert!(matches!(error, ReadError::Timeout(_)), "{error}");
        server.abort();
    }
}
