//! The relay: once the origin accepts the upgrade, the edge copies bytes
//! both ways, so the WebSocket is spoken end to end.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::apigateway::websocket;

/// Relays bytes between the client and the origin until both directions
/// end; the bytes each way (client to origin first), or how that direction
/// failed. When one direction ends, the other gets [`websocket::LINGER`] to
/// end too: the origin's close frame and FIN reach the client while the
/// client's last bytes (its close reply, or the rest of an oversize frame)
/// are still read, instead of both sockets being dropped with bytes unread —
/// which makes the kernel send a reset that can discard the close frame
/// before the client reads it.
pub(super) async fn relay<C, O>(client: C, origin: O) -> (io::Result<u64>, io::Result<u64>)
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

/// The most one read takes from either side before passing it on.
const RELAY_BUFFER_BYTES: usize = 16 * 1024;

/// Copies `from` to `to` until `from` ends or fails, then half-closes `to`
/// (FIN). When `to` fails, the rest of `from` is read and discarded, so
/// `from`'s bytes never stay unread.
async fn pipe<R, W>(from: &mut R, to: &mut W) -> io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // Not zeroed: `read_buf` fills spare capacity, so a connection that
    // carries nothing but its handshake never writes these 16 KiB. Zeroed,
    // each connection wrote 32 KiB for nothing; with an allocator that hands
    // out fresh pages (mimalloc, tried) that was an eighth of the stack's CPU
    // per handshake, the kernel clearing the pages.
    let mut buffer = Vec::with_capacity(RELAY_BUFFER_BYTES);
    let mut copied = 0;
    loop {
        buffer.clear();
        let n = match from.read_buf(&mut buffer).await {
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
