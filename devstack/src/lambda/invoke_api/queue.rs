//! The local asynchronous queue's bounds: each event queued holds a place,
//! counted in events and bytes, until its delivery ends; an event that
//! would pass either bound is refused, naming it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Asynchronous events queued (not yet delivered or dropped) at most.
pub const MAX_QUEUED_EVENTS: usize = 10_000;
/// Bytes of asynchronous events queued at most (each delivery counts).
pub const MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;
/// Counts of asynchronous events, for logs and tests.
#[derive(Debug, Default)]
pub struct AsyncCounts {
    pub queued: AtomicUsize,
    pub delivered: AtomicUsize,
    pub dropped: AtomicUsize,
    /// Events queued now, and their bytes (bounded by [`MAX_QUEUED_EVENTS`]
    /// and [`MAX_QUEUED_BYTES`]).
    pub pending: AtomicUsize,
    pub pending_bytes: AtomicUsize,
}

/// An event's place in the bounded queue, given back when its delivery ends.
pub(super) struct Queued {
    counts: Arc<AsyncCounts>,
    bytes: usize,
}

impl Queued {
    /// Reserves a place for an event of `bytes`, or says which bound is reached.
    pub(super) fn reserve(counts: &Arc<AsyncCounts>, bytes: usize) -> Result<Queued, String> {
        let events = counts.pending.fetch_add(1, Ordering::SeqCst) + 1;
        let total = counts.pending_bytes.fetch_add(bytes, Ordering::SeqCst) + bytes;
        let queued = Queued {
            counts: counts.clone(),
            bytes,
        };
        if events > MAX_QUEUED_EVENTS {
            return Err(format!(
                "{MAX_QUEUED_EVENTS} asynchronous events are already queued (the local queue's bound)"
            ));
        }
        if total > MAX_QUEUED_BYTES {
            return Err(format!(
                "the queued asynchronous events would exceed {MAX_QUEUED_BYTES} bytes (the local queue's bound)"
            ));
        }
        Ok(queued)
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.counts.pending.fetch_sub(1, Ordering::SeqCst);
        self.counts
            .pending_bytes
            .fetch_sub(self.bytes, Ordering::SeqCst);
    }
}
