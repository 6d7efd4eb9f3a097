//! The end-to-end harness: the real local stack as a process, and real
//! WebSocket clients against it.
//!
//! [`Stack`] builds and starts `devstack up` (edge, API layer, Lambda pool
//! running the real function binary, local DynamoDB), configured from the
//! repository's Pulumi program or from a copy with stack config overrides,
//! and stops it (and every process it started) when dropped. [`Client`] is a
//! tokio-tungstenite client whose every wait is bounded, speaking the frames
//! of the `protocol` crate.

pub mod browser;
pub mod check;
pub mod client;
pub mod crowd;
pub mod process;
pub mod rehearsal;
pub mod stack;

pub use client::{Client, Handshake, Incoming, REPLY_TIMEOUT};
pub use stack::{Endpoints, Stack, StackConfig};

use std::future::Future;
use std::time::Duration;

/// Awaits `future` for at most `limit`; the error names what was awaited.
pub async fn within<T>(
    limit: Duration,
    what: &str,
    future: impl Future<Output = T>,
) -> anyhow::Result<T> {
    tokio::time::timeout(limit, future)
        .await
        .map_err(|_| anyhow::anyhow!("timed out after {limit:?} waiting for {what}"))
}
