//! A door into a listener from inside the process: each connection is a
//! byte pipe ([`tokio::io::duplex`]) instead of a loopback socket.
//!
//! The edge reaches its origin, the API layer, through one. CloudFront's
//! hop to the origin is a network connection on AWS; here both ends live in
//! one process, and a loopback socket pair per WebSocket cost two of the
//! three file descriptors a connection through the edge held (a 20,000
//! open-file limit allowed ≈ 6,500 connections through the edge), plus a
//! kernel TCP connect and accept per handshake and a send for every frame. The API layer
//! serves a piped connection as it serves a socket — the same HTTP, header
//! timeout and shutdown — and sees the address the dialer gives as the
//! client's. Only the listener's count of sockets (`--max-connections`)
//! does not count pipes: they hold no descriptor, and the client's socket
//! at the edge is counted there.

use std::io;
use std::net::SocketAddr;

use tokio::io::DuplexStream;
use tokio::sync::mpsc;

/// Bytes a pipe buffers each way before its writer waits: room for the
/// largest WebSocket message (128 KB) and then some, as a loopback
/// socket's buffers would hold.
pub const LOCAL_PIPE_BYTES: usize = 256 * 1024;

/// Connections waiting for the listener to take them (its accept queue).
const WAITING: usize = 1_024;

/// A connection handed over, and the address its server sees as the peer.
pub(super) type Handed = (DuplexStream, SocketAddr);

/// What dials in: cloned freely.
#[derive(Debug, Clone)]
pub struct LocalDialer {
    handed: mpsc::Sender<Handed>,
}

/// What the listener takes connections from.
#[derive(Debug)]
pub struct LocalDoor {
    pub(super) handed: mpsc::Receiver<Handed>,
}

/// A dialer and the door it opens.
pub fn local_door() -> (LocalDialer, LocalDoor) {
    let (handed, waiting) = mpsc::channel(WAITING);
    (LocalDialer { handed }, LocalDoor { handed: waiting })
}

impl LocalDialer {
    /// A new connection to the listener, whose server sees `peer` as the
    /// client's address. Refused once the listener has stopped.
    pub async fn dial(&self, peer: SocketAddr) -> io::Result<DuplexStream> {
        let (ours, theirs) = tokio::io::duplex(LOCAL_PIPE_BYTES);
        self.handed.send((theirs, peer)).await.map_err(|_| {
            io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "the listener behind this local door has stopped",
            )
        })?;
        Ok(ours)
    }
}
