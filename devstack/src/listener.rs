//! How the edge and the API layer serve their listeners: HTTP/1.1 with
//! upgrades, as `axum::serve` does, plus what it lacks. `axum::serve` sets no
//! timer, so a client that sends half a request line holds its socket
//! forever, and it accepts without limit. Here each connection gets a
//! header-read timeout, and a listener holds at most `max_connections` open
//! connections (upgraded WebSockets included: the count is released when the
//! socket is dropped); over it, a connection is answered 429 and closed.
//! Both listen with a deep accept queue ([`BACKLOG`]), so a burst of new
//! connections is queued, not dropped.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_util::task::TaskTracker;
use tower::Layer;
use tracing::{debug, warn};

/// What a listener allows its clients.
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    /// How long a client may take to send a request's headers (the whole
    /// request line and headers); then the connection is closed.
    pub header_read_timeout: Duration,
    /// Open connections at most; `--max-connections`.
    pub max_connections: usize,
}

/// The header-read timeout of both listeners.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection over the cap may take to send the request it is
/// refused (it holds a descriptor the count does not see).
pub const REFUSAL_READ_TIMEOUT: Duration = Duration::from_secs(1);
/// `--max-connections`' default.
pub const MAX_CONNECTIONS: usize = 10_000;
/// Connections the kernel queues for `accept` (it caps this at
/// `net.core.somaxconn`). tokio's `TcpListener::bind` asks for 1,024: when
/// 16 function processes each open 50 connections to @connections at once
/// while the stack is busy, the queue overflows, the kernel drops the SYNs,
/// and a client that retransmits only after 1 s fails its connect timeout —
/// the e2e load test lost broadcasts that way. API Gateway and CloudFront
/// do not drop a burst of connections; the local stack queues them.
pub const BACKLOG: u32 = 8_192;

/// Listens on `addr` with [`BACKLOG`] (`SO_REUSEADDR` as `TcpListener::bind`).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// Serves `router` on `listener`, each request with the client's address
/// (`ConnectInfo<SocketAddr>`), until `shutdown` turns true; then waits for
/// requests in progress. Connections already upgraded go on.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ListenerLimits,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    serve_with_door(listener, None, router, limits, shutdown).await
}

/// [`serve`], also taking connections handed in through `door` (see
/// [`local`]); those hold no socket and are not counted against
/// `max_connections`.
pub async fn serve_with_door(
    listener: TcpListener,
    mut door: Option<LocalDoor>,
    router: Router,
    limits: ListenerLimits,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            handed = next_handed(&mut door) => {
                match handed {
                    Some((pipe, peer)) => {
                        let service = app_for(&router, peer);
                        tracker.spawn(serve_connection(pipe, service, limits, shutdown.clone()));
                    }
                    // Every dialer is gone: the door is closed for good.
                    None => door = None,
                }
                continue;
            }
            () = stopped(&mut shutdown) => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // Out of file descriptors and the like: wait rather than spin.
                warn!(%error, "accepting a connection failed; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shutdown = shutdown.clone();
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let io = Counted {
                    stream,
                    _permit: permit,
                };
                let service = app_for(&router, peer);
                tracker.spawn(serve_connection(io, service, limits, shutdown));
            }
            Err(_) => {
                warn!(
                    %peer,
                    max_connections = limits.max_connections,
                    "connection refused with 429: --max-connections open connections reached"
                );
                let service =
                    hyper::service::service_fn(|_| async { Ok::<_, Infallible>(too_many()) });
                // Uncounted, so held briefly: the request's headers get
                // [`REFUSAL_READ_TIMEOUT`], not the full header timeout.
                let refusal = ListenerLimits {
                    header_read_timeout: limits.header_read_timeout.min(REFUSAL_READ_TIMEOUT),
                    ..limits
                };
                tracker.spawn(serve_connection(stream, service, refusal, shutdown));
            }
        }
    }
    // No more pipes either: dialling now fails at once instead of waiting
    // on a door nobody answers (and those queued are closed).
    drop(door);
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// The router as one connection's service, with `peer` as its client's
/// address (`ConnectInfo`), whether it came in as a socket or a pipe.
fn app_for(
    router: &Router,
    peer: SocketAddr,
) -> TowerToHyperService<<axum::Extension<ConnectInfo<SocketAddr>> as Layer<Router>>::Service> {
    TowerToHyperService::new(axum::Extension(ConnectInfo(peer)).layer(router.clone()))
}

/// The next connection handed in through `door`; never, without one.
async fn next_handed(door: &mut Option<LocalDoor>) -> Option<local::Handed> {
    match door {
        Some(door) => door.handed.recv().await,
        None => std::future::pending().await,
    }
}

/// API Gateway's answer when a limit on connections is reached.
fn too_many() -> Response<Body> {
    let mut response = Response::new(Body::from(r#"{"message":"Too Many Requests"}"#));
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        "application/json".parse().expect("static"),
    );
    headers.insert(header::CONNECTION, "close".parse().expect("static"));
    response
}

async fn serve_connection<I, S>(
    io: I,
    service: S,
    limits: ListenerLimits,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<hyper::Request<Incoming>, Response = Response<Body>> + Send,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stopped(&mut shutdown) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        // Header-read timeouts, clients that went away: nothing to report.
        debug!(%error, "connection ended with an error");
    }
}

/// Resolves once `shutdown` is true (the guard it returns is not held).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|down| *down).await;
}

/// A client's socket holding its place in the listener's count until it is
/// dropped (after an upgrade, when the WebSocket ends).
struct Counted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Why a request body was not read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the request body is larger than the {0} bytes allowed")]
    TooLarge(usize),
    #[error("the request body did not arrive within {0:?}")]
    TimedOut(Duration),
    #[error("the request body could not be read")]
    Broken,
}

/// Reads a request body of at most `limit` bytes within `timeout`: a client
/// that sends slowly or without end does not hold its task.
pub async fn read_body(
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<axum::body::Bytes, BodyError> {
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Err(_) => Err(BodyError::TimedOut(timeout)),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(error)) => {
            let too_large = std::error::Error::source(&error)
                .is_some_and(|e| e.is::<http_body_util::LengthLimitError>());
            Err(if too_large {
                BodyError::TooLarge(limit)
            } else {
                BodyError::Broken
            })
        }
    }
}

/// A warning for a listening address that is not loopback: what it exposes
/// to other machines. `None` for loopback addresses.
pub fn exposure_warning(addr: SocketAddr, what: &str) -> Option<String> {
    if addr.ip().is_loopback() {
        return None;
    }
    Some(format!(
        "{addr} is not a loopback address: {what} is reachable from other machines on the network \
         (devstack has no TLS, and its API key and the @connections credentials are local \
         defaults or printed in the banner); use 127.0.0.1 unless you mean to expose it"
    ))
}

pub mod local;
pub use local::{LocalDialer, LocalDoor, local_door};

#[cfg(test)]
mod tests;
