//! A broadcast that never outlives its invocation.
//!
//! One invocation posts to recipients page by page (a Scan page of the
//! registry at a time) until it has posted to all of them or its time is up;
//! what is left — the unposted ids of the current page and the Scan cursor
//! after that page — is a [`Continuation`] handed to an asynchronous
//! invocation of the same function, which does the same, up to [`MAX_HOPS`]
//! times.
//!
//! Exactly once, and where it comes from:
//! - within an invocation each id of a page is started at most once, and the
//!   ids not started are exactly the ones handed on ([`posting`]);
//! - across invocations a continuation owns a disjoint remainder: the ids it
//!   carries and the pages after its cursor, which no earlier invocation
//!   posts to (a Scan returns each item once; the chain is linear);
//! - Lambda's asynchronous queue may deliver one event more than once, and
//!   retries function errors: each hop first claims `(message id, hop)` with a
//!   conditional write ([`Claims`]), so a second delivery of the same hop
//!   posts nothing, and the program sets the retries to 0 (a retry would be
//!   refused by the claim anyway).
//!
//! A slice stops *starting* posts at its stop time and hands the rest on at
//! once, while the posts already in flight finish, each bounded by
//! [`Limits::post_timeout`]; the stop time keeps the longer of that and the
//! hand-over's [`HANDOFF_RESERVE`] free before the deadline (with the
//! reply), since the two run together ([`Fanout::run_then`]). So no post is
//! cut off with its outcome unknown: every id is either posted to by this
//! slice, with its outcome counted, or handed on. Posts of one page run on
//! while the next page is read ([`posting`]).
//!
//! What it cannot promise: a post that times out may or may not have reached
//! its connection (it counts as failed, is logged, and is not retried: a
//! post has no idempotency key, so a retry could deliver twice); a hop whose
//! process dies mid-slice loses the rest of that slice, for the same reason.
//! A connection that opens during a broadcast may or may not receive it.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::time::Instant;

use crate::broadcast::Delivery;
use crate::messenger::Messenger;
use crate::registry::{ConnectionRegistry, RegistryError};
use posting::Posting;

/// One page of the registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub ids: Vec<String>,
    /// `None` on the last page.
    pub next: Option<String>,
}

/// The registry read a page at a time.
#[async_trait]
pub trait RecipientPages: Send + Sync {
    /// The page after `after` (the first page when `None`).
    async fn page(&self, after: Option<&str>) -> Result<Page, RegistryError>;
}

/// Records that a hop of a broadcast is being served.
#[async_trait]
pub trait Claims: Send + Sync {
    /// True the first time for a `(message_id, hop)`, false ever after.
    async fn claim(&self, message_id: &str, hop: u32) -> Result<bool, RegistryError>;
}

/// Hands a continuation to a new invocation.
#[async_trait]
pub trait Relay: Send + Sync {
    async fn hand_off(&self, continuation: &Continuation) -> Result<(), String>;
}

/// Whether `id` from the registry is a recipient of `sender`'s broadcast.
pub fn is_recipient(id: &str, sender: &str) -> bool {
    id != sender && !id.starts_with(CLAIM_PREFIX)
}

/// What a broadcast needs besides the registry and the messenger: the
/// registry a page at a time, the hop claims, the hand-over, the limits.
#[derive(Clone, Copy)]
pub struct Services<'a> {
    pub pages: &'a dyn RecipientPages,
    pub claims: &'a dyn Claims,
    pub relay: &'a dyn Relay,
    pub limits: Limits,
}

impl<'a> Services<'a> {
    /// The fan-out of one invocation over these services.
    pub fn fanout(
        &self,
        registry: &'a dyn ConnectionRegistry,
        messenger: &'a dyn Messenger,
    ) -> Fanout<'a> {
        Fanout {
            registry,
            pages: self.pages,
            messenger,
            limits: self.limits,
        }
    }
}

/// The sources one invocation's fan-out reads from and writes to.
pub struct Fanout<'a> {
    pub registry: &'a dyn ConnectionRegistry,
    pub pages: &'a dyn RecipientPages,
    pub messenger: &'a dyn Messenger,
    pub limits: Limits,
}

/// What one invocation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    pub delivery: Delivery,
    /// Registry pages read.
    pub pages: usize,
    /// What is left; `None` when every recipient was started.
    pub left: Option<Remainder>,
}

impl<'a> Fanout<'a> {
    /// Reads a page, giving up at `finish_by` (the slice's posts are done by
    /// then too), so a slow Scan cannot eat the time kept for the hand-over.
    async fn page_by(
        &self,
        after: Option<&str>,
        finish_by: Instant,
    ) -> Result<Page, RegistryError> {
        tokio::time::timeout_at(finish_by, self.pages.page(after))
            .await
            .unwrap_or_else(|_| {
                Err(RegistryError::new(
                    "Scan",
                    "no time left in this slice to read the page",
                ))
            })
    }

    /// Posts `frame` to what `work` holds, page by page, until all are
    /// started or `stop_at`; posts in flight then finish (by `stop_at` +
    /// the post timeout). A registry error ends the slice with the unread
    /// pages left (the next hop reads them again).
    pub async fn run(
        &self,
        sender: &str,
        frame: &[u8],
        work: Remainder,
        stop_at: Instant,
    ) -> Slice {
        let (slice, ()) = self
            .run_then(sender, frame, work, stop_at, |_| async {})
            .await;
        slice
    }

    /// [`Fanout::run`], calling `at_stop` with what is left the moment the
    /// slice stops starting posts, and waiting for it together with the
    /// posts still in flight: the next hop starts while this one drains, and
    /// the drain and the hand-off share one reserve of time.
    pub async fn run_then<T, Fut: Future<Output = T>>(
        &self,
        sender: &str,
        frame: &[u8],
        work: Remainder,
        stop_at: Instant,
        at_stop: impl FnOnce(Option<Remainder>) -> Fut,
    ) -> (Slice, T) {
        let mut posting = Posting::new(self.registry, self.messenger, frame, self.limits);
        let (left, pages) = self.start_slice(&mut posting, sender, work, stop_at).await;
        let (delivery, output) = tokio::join!(posting.finish(), at_stop(left.clone()));
        (
            Slice {
                delivery,
                pages,
                left,
            },
            output,
        )
    }

    /// Starts posts page by page until every recipient is started, the
    /// budget is spent, or `stop_at`; what is left, and the pages read.
    async fn start_slice(
        &self,
        posting: &mut Posting<'_>,
        sender: &str,
        mut work: Remainder,
        stop_at: Instant,
    ) -> (Option<Remainder>, usize) {
        let mut pages = 0;
        let mut budget = self.limits.per_invocation.unwrap_or(usize::MAX);
        let finish_by = stop_at + self.limits.post_timeout;
        loop {
            work.pending.retain(|id| is_recipient(id, sender));
            if !work.pending.is_empty() {
                // The next page is read while this one is posted, so a slow
                // Scan does not stall the posts. If this page is not all
                // started, the prefetched one is dropped: the cursor still
                // points after this page, and the next hop reads it again.
                let next = match &work.cursor {
                    Cursor::After(key) => Some(key.clone()),
                    Cursor::Start | Cursor::End => None,
                };
                let mut prefetch = pin!(async {
                    match &next {
                        Some(key) => Some(self.page_by(Some(key), finish_by).await),
                        None => None,
                    }
                });
                let mut prefetched = None;
                let started = posting
                    .start(
                        &work.pending,
                        stop_at,
                        budget,
                        prefetch.as_mut(),
                        &mut prefetched,
                    )
                    .await;
                budget -= started;
                work.pending.drain(..started);
                if !work.pending.is_empty() {
                    break;
                }
                let prefetched = match prefetched {
                    Some(page) => page,
                    None => posting.meanwhile(prefetch.as_mut()).await,
                };
                match prefetched {
                    Some(Ok(page)) => {
                        pages += 1;
                        work.pending = page.ids;
                        work.cursor = page.next.map_or(Cursor::End, Cursor::After);
                        continue;
                    }
                    Some(Err(error)) => {
                        tracing::error!(%error, "cannot read the next page of recipients");
                        break;
                    }
                    None => {}
                }
            }
            let after = match &work.cursor {
                Cursor::End => break,
                _ if budget == 0 || Instant::now() >= stop_at => break,
                Cursor::Start => None,
                Cursor::After(key) => Some(key.as_str()),
            };
            match posting.meanwhile(self.page_by(after, finish_by)).await {
                Ok(page) => {
                    pages += 1;
                    work.pending = page.ids;
                    work.cursor = page.next.map_or(Cursor::End, Cursor::After);
                }
                Err(error) => {
                    tracing::error!(%error, "cannot read the next page of recipients");
                    break;
                }
            }
        }
        ((!work.is_done()).then_some(work), pages)
    }
}

/// What became of the rest of a broadcast after a slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handover {
    /// Nothing was left.
    Finished,
    /// The next hop has it.
    HandedOff { hop: u32 },
    /// It could not be handed on (the reason is logged); `pending` ids of
    /// the current page were known, and more pages may have been unread.
    Abandoned { pending: usize, more_pages: bool },
}

/// Hands `left` to hop `hop + 1`, unless that is past [`MAX_HOPS`], trying
/// again after a failure until `give_up` (when the invocation must answer).
pub async fn hand_on(
    relay: &dyn Relay,
    message_id: &str,
    sender: &str,
    frame: &str,
    hop: u32,
    left: Option<Remainder>,
    give_up: Instant,
) -> Handover {
    let Some(remainder) = left else {
        return Handover::Finished;
    };
    let abandoned = Handover::Abandoned {
        pending: remainder.pending.len(),
        more_pages: remainder.cursor != Cursor::End,
    };
    let next = hop + 1;
    if next > MAX_HOPS {
        tracing::error!(%message_id, hop, max_hops = MAX_HOPS, pending = remainder.pending.len(),
            "broadcast abandoned: it needs more hops than allowed (raise the in-flight limit or the function's timeout)");
        return abandoned;
    }
    let continuation = Continuation {
        message_id: message_id.to_string(),
        sender: sender.to_string(),
        frame: frame.to_string(),
        hop: next,
        remainder,
    };
    // A failed hand-off is tried again while the invocation has time: a
    // continuation queued twice is claimed once, so a retry never posts twice.
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let error = match tokio::time::timeout_at(give_up, relay.hand_off(&continuation)).await {
            Ok(Ok(())) => return Handover::HandedOff { hop: next },
            Ok(Err(error)) => error,
            Err(_) => "no answer before the invocation had to stop".to_string(),
        };
        if Instant::now() + HANDOFF_RETRY_PAUSE >= give_up {
            tracing::error!(%message_id, hop = next, attempts, %error, "broadcast abandoned: the continuation could not be handed off");
            return abandoned;
        }
        tracing::warn!(%message_id, hop = next, attempts, %error, "hand-off failed; trying again");
        tokio::time::sleep(HANDOFF_RETRY_PAUSE).await;
    }
}

/// The pause between two attempts to hand a continuation on.
pub const HANDOFF_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// What a continuation's invocation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// This hop was already served (a duplicate delivery): nothing posted.
    Duplicate,
    /// The claim could not be recorded, so nothing was posted (posting
    /// without it could deliver twice); the rest of the broadcast is lost.
    Unclaimed,
    Sliced {
        slice: Slice,
        handover: Handover,
    },
}

/// Serves one continuation: claim its hop, post a slice, hand on the rest
/// as the slice stops.
pub async fn serve(
    fanout: &Fanout<'_>,
    claims: &dyn Claims,
    relay: &dyn Relay,
    continuation: Continuation,
    stop_at: Instant,
    give_up: Instant,
) -> Served {
    let Continuation {
        message_id,
        sender,
        frame,
        hop,
        remainder,
    } = continuation;
    match claims.claim(&message_id, hop).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(%message_id, hop, "continuation already served; skipping the duplicate");
            return Served::Duplicate;
        }
        Err(error) => {
            tracing::error!(%message_id, hop, %error, "broadcast abandoned: the continuation could not be claimed");
            return Served::Unclaimed;
        }
    }
    let (slice, handover) = fanout
        .run_then(&sender, frame.as_bytes(), remainder, stop_at, |left| {
            hand_on(relay, &message_id, &sender, &frame, hop, left, give_up)
        })
        .await;
    Served::Sliced { slice, handover }
}

mod continuation;
mod limits;
pub mod memory;
mod posting;

pub use continuation::{CLAIM_PREFIX, Continuation, Cursor, EVENT_KEY, MAX_HOPS, Remainder};

pub use limits::{BadSetting, DEFAULT_IN_FLIGHT, HANDOFF_RESERVE, Limits};

#[cfg(test)]
mod tests;
