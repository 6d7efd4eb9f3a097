//! What a broadcast did, and how long one post may take.
//!
//! The fan-out itself — posts in flight with a bound, sliced by the
//! invocation's time, the rest handed on — is [`crate::fanout`]; this is the
//! tally every slice reports and the sender's reply is judged by.

use std::time::Duration;

/// A reply to one connection (`sent`, `pong`, an error frame) that takes
/// longer than this counts as failed, so one stuck connection cannot hold
/// the invocation for the whole Lambda timeout.
pub const POST_TIMEOUT: Duration = Duration::from_secs(5);

/// What happened to each recipient of a broadcast (or of one slice of it)
/// whose post finished; refused posts are not here but handed on by id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Posts the management API accepted.
    pub delivered: usize,
    /// Connections that were gone (removed from the registry unless younger
    /// than the grace period).
    pub gone: usize,
    /// Posts answered with an error other than 410 or 429.
    pub failed: usize,
    /// Posts with no answer in time: they may or may not have reached their
    /// connection, are never counted as delivered, and never tried again.
    pub unconfirmed: usize,
}
