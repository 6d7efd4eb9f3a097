//! The posts of one slice in flight: started in order, at most
//! `Limits::in_flight` at once, across the registry's pages, and counted as
//! they finish.
//!
//! Starting and finishing are apart so a slice can hand the rest of a
//! broadcast on the moment it stops starting posts, while the posts already
//! in flight finish ([`super::Fanout::run_then`]); and so the posts of one
//! page keep running while the next page is read. Posts that were refused
//! (throttled, not connected: certainly not delivered) are kept by id, to be
//! tried again by a later invocation.

use std::future::Future;
use std::pin::pin;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;

use super::Limits;
use crate::broadcast::Delivery;
use crate::messenger::{Messenger, PostError};
use crate::registry::{ConnectionRegistry, forget_gone};

enum Outcome {
    Delivered,
    Gone,
    Refused(String),
    Unconfirmed,
    Failed,
}

/// Posts of `data` in flight, and what became of those that finished.
pub struct Posting<'a> {
    registry: &'a dyn ConnectionRegistry,
    messenger: &'a dyn Messenger,
    data: &'a [u8],
    limits: Limits,
    in_flight: FuturesUnordered<BoxFuture<'a, Outcome>>,
    delivery: Delivery,
    refused: Vec<String>,
}

impl<'a> Posting<'a> {
    pub fn new(
        registry: &'a dyn ConnectionRegistry,
        messenger: &'a dyn Messenger,
        data: &'a [u8],
        limits: Limits,
    ) -> Self {
        Posting {
            registry,
            messenger,
            data,
            limits,
            in_flight: FuturesUnordered::new(),
            delivery: Delivery::default(),
            refused: Vec::new(),
        }
    }

    /// One post, and for a gone connection the removal of its record, both
    /// within `limits.post_timeout` of the start: the drain reserve holds.
    fn launch(&mut self, connection_id: String) {
        let (registry, messenger, data) = (self.registry, self.messenger, self.data);
        let post_timeout = self.limits.post_timeout;
        self.in_flight.push(Box::pin(async move {
            let give_up = Instant::now() + post_timeout;
            match tokio::time::timeout_at(give_up, messenger.post(&connection_id, data)).await {
                Ok(Ok(())) => Outcome::Delivered,
                Ok(Err(PostError::Gone)) => {
                    // Not removed in time: counted as gone all the same; the
                    // next 410, its $disconnect or TTL removes the record.
                    let removed =
                        tokio::time::timeout_at(give_up, forget_gone(registry, &connection_id));
                    if removed.await.is_err() {
                        tracing::warn!(%connection_id, "no time left in the post timeout to remove a gone connection");
                    }
                    Outcome::Gone
                }
                Ok(Err(PostError::Refused(error))) => {
                    tracing::info!(%connection_id, %error, "post refused; to be tried again");
                    Outcome::Refused(connection_id)
                }
                Ok(Err(PostError::Unconfirmed(error))) => {
                    tracing::warn!(%connection_id, %error, "post unconfirmed");
                    Outcome::Unconfirmed
                }
                Ok(Err(PostError::Other(error))) => {
                    tracing::warn!(%connection_id, %error, "post to connection failed");
                    Outcome::Failed
                }
                Err(_) => {
                    // It may still have reached the connection: never counted
                    // as delivered, and not handed on.
                    tracing::warn!(%connection_id, timeout = ?post_timeout, "post to connection timed out");
                    Outcome::Unconfirmed
                }
            }
        }));
    }

    fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Delivered => self.delivery.delivered += 1,
            Outcome::Gone => self.delivery.gone += 1,
            Outcome::Refused(id) => self.refused.push(id),
            Outcome::Unconfirmed => self.delivery.unconfirmed += 1,
            Outcome::Failed => self.delivery.failed += 1,
        }
    }

    /// Starts posts to `ids` in order, keeping at most `limits.in_flight` in
    /// flight, until every id is started, `budget` are, or `stop_at`. Polls
    /// `aside` meanwhile unless `aside_output` already holds its output, and
    /// puts its output there when it finishes (the caller keeps `aside` to
    /// wait for it further). Returns how many were started: `ids[..started]`,
    /// possibly still in flight; `ids[started..]` were not posted to.
    pub async fn start<F: Future>(
        &mut self,
        ids: &[String],
        stop_at: Instant,
        budget: usize,
        mut aside: std::pin::Pin<&mut F>,
        aside_output: &mut Option<F::Output>,
    ) -> usize {
        let limit = self.limits.in_flight.max(1);
        let mut started = 0;
        while started < ids.len() && started < budget && Instant::now() < stop_at {
            if self.in_flight.len() < limit {
                self.launch(ids[started].clone());
                started += 1;
                continue;
            }
            tokio::select! {
                Some(outcome) = self.in_flight.next() => self.count(outcome),
                output = &mut aside, if aside_output.is_none() => *aside_output = Some(output),
                _ = tokio::time::sleep_until(stop_at) => {}
            }
        }
        started
    }

    /// Waits for `work` while the posts in flight go on.
    pub async fn meanwhile<T>(&mut self, work: impl Future<Output = T>) -> T {
        let mut work = pin!(work);
        loop {
            tokio::select! {
                biased;
                output = &mut work => return output,
                Some(outcome) = self.in_flight.next() => self.count(outcome),
            }
        }
    }

    /// Waits for every post in flight; what happened to all of them, and
    /// the ids whose posts were refused (never delivered).
    pub async fn finish(mut self) -> (Delivery, Vec<String>) {
        while let Some(outcome) = self.in_flight.next().await {
            self.count(outcome);
        }
        (self.delivery, self.refused)
    }
}
