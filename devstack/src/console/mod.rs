//! The console: a page for trying the stack in a browser, and a live view of
//! what happens inside it.
//!
//! The edge plays CloudFront, which serves no page, so the console has a
//! loopback listener of its own (default `127.0.0.1:8082`). It serves the
//! static page in `devstack/console/` (compiled in: the binary needs no files
//! beside it and the page fetches nothing from elsewhere), the stack's
//! current counts (`GET /snapshot`) and a stream of [`StackEvent`]s
//! (`GET /events`, server-sent events) from the [`EventBus`] the edge, the API
//! layer and the Lambda pool publish to.

mod assets;
pub mod events;
mod server;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;

pub use events::{Envelope, EventBus, Snapshot, StackEvent};
pub use server::{Console, SignInInfo, StackInfo};

/// Where the console listens unless told otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8082";

/// The console shows connection ids and client addresses and has no login:
/// it listens on loopback only.
pub fn check_loopback(addr: SocketAddr) -> anyhow::Result<()> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        anyhow::bail!(
            "the console listens on loopback only (it has no login); {addr} is not a loopback address, try 127.0.0.1:{}",
            addr.port()
        )
    }
}
