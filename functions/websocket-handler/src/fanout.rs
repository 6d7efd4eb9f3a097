//! A broadcast that never outlives its invocation, and loses no recipient
//! without counting it.
//!
//! One invocation posts to recipients page by page (a Scan page of the
//! registry at a time) until it has posted to all of them or its time is up;
//! what is left — the unposted ids of the current page and the Scan cursor
//! after that page — is a [`Continuation`] handed to an asynchronous
//! invocation of the same function, which does the same, up to [`MAX_HOPS`]
//! times ([`share`]).
//!
//! Exactly once, and where it comes from:
//! - within an invocation each id of a page is started at most once, and the
//!   ids not started are exactly the ones handed on ([`posting`]);
//! - across invocations a continuation owns a disjoint remainder: the ids it
//!   carries and the pages after its cursor, which no earlier invocation
//!   posts to (a Scan returns each item once; the chain is linear);
//! - Lambda's asynchronous queue may deliver one event more than once: each
//!   continuation first claims its id ([`crate::claims`]), so a second
//!   delivery posts nothing; the program sets Lambda's retries to 0;
//! - a post refused as throttled (429) or not connected was certainly not
//!   delivered: it is tried again in a continuation of its own, after a
//!   backoff; a post with no answer may have been delivered and is never
//!   tried again.
//!
//! A slice stops *starting* posts at its stop time and hands the rest on at
//! once, while the posts already in flight finish, each bounded by
//! [`Limits::post_timeout`] (removing a gone connection included); the stop
//! time keeps the longer of that and the hand-over's reserve free before the
//! invocation must answer ([`Limits::schedule`]), since the two run together
//! ([`Fanout::run_then`]). Posts of one page run on while the next page is
//! read ([`posting`]).
//!
//! Nothing is lost without a trace: every recipient is posted to, handed on,
//! or counted as not reached with its reason ([`crate::metrics`]): a post
//! that failed or had no answer, a chain past [`MAX_HOPS`], a hand-off that
//! Lambda did not accept in time, refused posts with no hop left. A
//! connection that opens during a broadcast may or may not receive it.

use std::future::Future;
use std::pin::pin;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::broadcast::Delivery;
use crate::claims::Claims;
use crate::messenger::Messenger;
use crate::metrics::LossReport;
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

/// Hands a continuation to a new invocation.
#[async_trait]
pub trait Relay: Send + Sync {
    async fn hand_off(&self, continuation: &Continuation) -> Result<(), String>;
}

/// Whether `id` from the registry is a recipient of `sender`'s broadcast.
/// API Gateway's connection ids never contain `#`: an id that starts with
/// one is a claim an earlier version kept in the connections table (TTL
/// removes those).
pub fn is_recipient(id: &str, sender: &str) -> bool {
    id != sender && !id.starts_with('#')
}

/// What a broadcast needs besides the registry and the messenger: the
/// registry a page at a time, the continuations' claims, the hand-over,
/// where losses are reported, the limits.
#[derive(Clone, Copy)]
pub struct Services<'a> {
    pub pages: &'a dyn RecipientPages,
    pub claims: &'a dyn Claims,
    pub relay: &'a dyn Relay,
    pub losses: &'a dyn LossReport,
    pub limits: Limits,
}

impl<'a> Services<'a> {
    /// The fan-out of one invocation over these services, with `limits`
    /// (fitted to the invocation's time: [`Limits::schedule`]).
    pub fn fanout(
        &self,
        registry: &'a dyn ConnectionRegistry,
        messenger: &'a dyn Messenger,
        limits: Limits,
    ) -> Fanout<'a> {
        Fanout {
            registry,
            pages: self.pages,
            messenger,
            limits,
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
    /// Ids whose posts were refused (throttled, not connected): certainly
    /// not delivered, to be tried again.
    pub refused: Vec<String>,
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
        let ((delivery, refused), output) = tokio::join!(posting.finish(), at_stop(left.clone()));
        (
            Slice {
                delivery,
                pages,
                left,
                refused,
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

mod continuation;
mod limits;
pub mod memory;
mod posting;
mod share;

pub use continuation::{
    Continuation, Cursor, EVENT_KEY, MAX_FRAME_BYTES, MAX_HOPS, MAX_ID_BYTES, MAX_PENDING,
    Remainder,
};
pub use limits::{BadSetting, DEFAULT_IN_FLIGHT, HANDOFF_RESERVE, Limits, Schedule};
pub use share::{
    BACKOFF_CAP, BACKOFF_FIRST, Broadcast, HANDOFF_RETRY_PAUSE, Handover, Served, Share, hand_on,
    pass_on, serve, share,
};

#[cfg(test)]
mod tests;
