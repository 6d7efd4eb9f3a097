//! One invocation's share of a broadcast: its slice, and what becomes of
//! everything the slice did not deliver — handed on, tried again after a
//! backoff, or counted as not reached with its reason.

use std::time::Duration;

use protocol::metrics::LossReason;
use tokio::time::Instant;
use uuid::Uuid;

use super::{
    Continuation, Cursor, Fanout, MAX_HOPS, MAX_PENDING, RecipientPages, Relay, Remainder,
    Schedule, Slice, is_recipient,
};
use crate::backoff::backoff;
use crate::claims::Claims;
use crate::metrics::Losses;

/// The pause between two attempts to hand a continuation on.
pub const HANDOFF_RETRY_PAUSE: Duration = Duration::from_millis(100);
/// The first wait of a continuation that follows one without progress
/// (refused posts, an unreadable page, an unrecordable claim); doubled for
/// each such continuation in a row, at most [`BACKOFF_CAP`], plus jitter.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(100);
pub const BACKOFF_CAP: Duration = Duration::from_secs(2);

/// The broadcast a share belongs to, as each of its continuations carries it.
#[derive(Debug, Clone, Copy)]
pub struct Broadcast<'a> {
    pub message_id: &'a str,
    pub sender: &'a str,
    /// The `message` frame.
    pub frame: &'a str,
}

/// What became of part of a broadcast after a slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handover {
    /// Nothing was left.
    Finished,
    /// The next hop has it.
    HandedOff { hop: u32 },
    /// Not even the registry's first page could be read by the sender's
    /// invocation: nothing was handed on, and the sender is told.
    Unread,
    /// It could not be handed on: `pending` ids were known, and more pages
    /// may have been unread; counted in the share's losses.
    Abandoned {
        reason: LossReason,
        pending: usize,
        more_pages: bool,
    },
}

/// What one invocation's share of a broadcast did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub slice: Slice,
    /// What became of the rest (the ids and pages the slice did not start).
    pub rest: Handover,
    /// What became of the refused posts (tried again by a continuation).
    pub retry: Handover,
    /// Recipients not reached, by reason.
    pub losses: Losses,
}

/// What a continuation's invocation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// This continuation was already claimed (a second delivery): nothing posted.
    Duplicate,
    /// Its claim could not be recorded, so nothing was posted (posting
    /// without it could deliver twice): it was handed on again with the
    /// claim's token (`rest`).
    Unclaimed {
        rest: Handover,
        losses: Losses,
    },
    Shared(Share),
}

/// The continuation after hop `hop` carrying `remainder`, with a new id;
/// `None` past [`MAX_HOPS`].
fn next(
    broadcast: Broadcast<'_>,
    hop: u32,
    attempt: u32,
    remainder: Remainder,
) -> Option<Continuation> {
    let hop = hop.checked_add(1).filter(|next| *next <= MAX_HOPS)?;
    Some(Continuation {
        id: Uuid::new_v4().simple().to_string(),
        message_id: broadcast.message_id.to_string(),
        sender: broadcast.sender.to_string(),
        frame: broadcast.frame.to_string(),
        hop,
        attempt,
        claim_token: None,
        remainder,
    })
}

fn abandoned(reason: LossReason, remainder: &Remainder) -> Handover {
    Handover::Abandoned {
        reason,
        pending: remainder.pending.len(),
        more_pages: remainder.cursor != Cursor::End,
    }
}

/// Hands `remainder` to the hop after `hop`, unless that is past
/// [`MAX_HOPS`]. See [`hand_on`].
pub async fn pass_on(
    relay: &dyn Relay,
    broadcast: Broadcast<'_>,
    hop: u32,
    attempt: u32,
    remainder: Remainder,
    give_up: Instant,
) -> Handover {
    match next(broadcast, hop, attempt, remainder.clone()) {
        Some(continuation) => hand_on(relay, &continuation, give_up).await,
        None => {
            tracing::error!(
                message_id = broadcast.message_id,
                hop,
                max_hops = MAX_HOPS,
                pending = remainder.pending.len(),
                "broadcast cut short: it needs more hops than allowed (raise the in-flight limit, the posts per invocation or the function's timeout)"
            );
            abandoned(LossReason::HopLimit, &remainder)
        }
    }
}

/// Hands `continuation` to a new invocation, trying again after a failure
/// until `give_up` (when the invocation must answer): a continuation queued
/// twice is claimed once, so a retry never posts twice.
pub async fn hand_on(relay: &dyn Relay, continuation: &Continuation, give_up: Instant) -> Handover {
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let error = match tokio::time::timeout_at(give_up, relay.hand_off(continuation)).await {
            Ok(Ok(())) => {
                return Handover::HandedOff {
                    hop: continuation.hop,
                };
            }
            Ok(Err(error)) => error,
            Err(_) => "no answer before the invocation had to stop".to_string(),
        };
        if Instant::now() + HANDOFF_RETRY_PAUSE >= give_up {
            tracing::error!(message_id = %continuation.message_id, hop = continuation.hop, attempts, %error,
                "broadcast cut short: the continuation could not be handed off");
            return abandoned(LossReason::HandoffFailed, &continuation.remainder);
        }
        tracing::warn!(message_id = %continuation.message_id, hop = continuation.hop, attempts, %error,
            "hand-off failed; trying again");
        tokio::time::sleep(HANDOFF_RETRY_PAUSE).await;
    }
}

/// Hands refused posts on to be tried again, in continuations of at most
/// [`MAX_PENDING`] ids; what could not be handed on is summed in one
/// [`Handover::Abandoned`].
async fn retry_refused(
    relay: &dyn Relay,
    broadcast: Broadcast<'_>,
    hop: u32,
    attempt: u32,
    refused: &[String],
    give_up: Instant,
) -> Handover {
    let mut outcome = Handover::Finished;
    for ids in refused.chunks(MAX_PENDING) {
        let attempt = attempt.saturating_add(1);
        let handover = pass_on(
            relay,
            broadcast,
            hop,
            attempt,
            Remainder::only(ids.to_vec()),
            give_up,
        )
        .await;
        outcome = match (outcome, handover) {
            (
                Handover::Abandoned {
                    reason, pending, ..
                },
                Handover::Abandoned { pending: more, .. },
            ) => Handover::Abandoned {
                reason,
                pending: pending + more,
                more_pages: false,
            },
            (
                Handover::Abandoned {
                    reason,
                    pending,
                    more_pages,
                },
                _,
            ) => Handover::Abandoned {
                reason,
                pending,
                more_pages,
            },
            (_, handover) => handover,
        };
    }
    outcome
}

/// The recipients in the registry's pages from `cursor` on, read until
/// `until`; `None` when they could not all be read.
async fn count_pages(
    pages: &dyn RecipientPages,
    cursor: &Cursor,
    sender: &str,
    until: Instant,
) -> Option<usize> {
    let mut after = match cursor {
        Cursor::End => return Some(0),
        Cursor::Start => None,
        Cursor::After(key) => Some(key.clone()),
    };
    let count = async {
        let mut count = 0;
        loop {
            let page = pages.page(after.as_deref()).await.ok()?;
            count += page
                .ids
                .iter()
                .filter(|id| is_recipient(id, sender))
                .count();
            match page.next {
                Some(next) => after = Some(next),
                None => return Some(count),
            }
        }
    };
    tokio::time::timeout_at(until, count).await.ok().flatten()
}

/// Counts what an abandoned hand-over of `remainder` did not reach: its
/// pending ids and, when more pages were unread, the recipients in them
/// (read now, until `until`; a broadcast cut short where they cannot be).
async fn count_abandoned(
    pages: &dyn RecipientPages,
    losses: &mut Losses,
    handover: &Handover,
    remainder: Option<&Remainder>,
    sender: &str,
    until: Instant,
) {
    let Handover::Abandoned {
        reason,
        pending,
        more_pages,
    } = handover
    else {
        return;
    };
    losses.add(*reason, *pending);
    if let (true, Some(remainder)) = (*more_pages, remainder) {
        match count_pages(pages, &remainder.cursor, sender, until).await {
            Some(unread) => losses.add(*reason, unread),
            None => losses.cut_short(),
        }
    }
}

/// Posts a slice of `work` for hop `hop` of `broadcast` on `fanout`, hands
/// the rest on as the slice stops and refused posts on once it has drained,
/// and counts what could not be handed on.
pub async fn share(
    fanout: &Fanout<'_>,
    relay: &dyn Relay,
    broadcast: Broadcast<'_>,
    hop: u32,
    attempt: u32,
    work: Remainder,
    schedule: Schedule,
) -> Share {
    let before = work.clone();
    let give_up = schedule.give_up;
    let (slice, rest) = fanout
        .run_then(
            broadcast.sender,
            broadcast.frame.as_bytes(),
            work,
            schedule.stop_at,
            |left| async {
                match left {
                    None => Handover::Finished,
                    Some(left) if hop == 0 && left == Remainder::everyone() => Handover::Unread,
                    Some(left) => {
                        // No progress (nothing read, nothing started): the
                        // next hop waits before it tries again.
                        let attempt = if left == before {
                            attempt.saturating_add(1)
                        } else {
                            0
                        };
                        pass_on(relay, broadcast, hop, attempt, left, give_up).await
                    }
                }
            },
        )
        .await;
    let retry = retry_refused(relay, broadcast, hop, attempt, &slice.refused, give_up).await;
    let mut losses = Losses::default();
    losses.add(LossReason::PostFailed, slice.delivery.failed);
    losses.add(LossReason::PostUnconfirmed, slice.delivery.unconfirmed);
    count_abandoned(
        fanout.pages,
        &mut losses,
        &rest,
        slice.left.as_ref(),
        broadcast.sender,
        give_up,
    )
    .await;
    if let Handover::Abandoned { pending, .. } = retry {
        losses.add(LossReason::Throttled, pending);
    }
    Share {
        slice,
        rest,
        retry,
        losses,
    }
}

/// Serves one continuation: claim it, wait its backoff, post a slice, hand
/// on the rest as the slice stops. A claim that cannot be recorded hands
/// the continuation on again with the claim's token, so that the claim, if
/// it was written after all, counts as the next attempt's.
pub async fn serve(
    fanout: &Fanout<'_>,
    claims: &dyn Claims,
    relay: &dyn Relay,
    continuation: Continuation,
    schedule: Schedule,
) -> Served {
    let token = continuation
        .claim_token
        .clone()
        .unwrap_or_else(|| Uuid::new_v4().simple().to_string());
    let key = continuation.claim_key();
    let claim = claims.claim(&key, &token);
    let error = match tokio::time::timeout_at(schedule.stop_at, claim).await {
        Ok(Ok(true)) => None,
        Ok(Ok(false)) => {
            tracing::info!(message_id = %continuation.message_id, hop = continuation.hop,
                "continuation already served; skipping the duplicate");
            return Served::Duplicate;
        }
        Ok(Err(error)) => Some(error.to_string()),
        Err(_) => Some("no answer before the slice's stop".to_string()),
    };
    let broadcast = Broadcast {
        message_id: &continuation.message_id,
        sender: &continuation.sender,
        frame: &continuation.frame,
    };
    if let Some(error) = error {
        tracing::warn!(message_id = %continuation.message_id, hop = continuation.hop, %error,
            "the continuation could not be claimed; handing it on again");
        let again = continuation
            .hop
            .checked_add(1)
            .filter(|hop| *hop <= MAX_HOPS)
            .map(|hop| Continuation {
                hop,
                attempt: continuation.attempt.saturating_add(1),
                claim_token: Some(token),
                ..continuation.clone()
            });
        let rest = match &again {
            Some(again) => hand_on(relay, again, schedule.give_up).await,
            None => abandoned(LossReason::HopLimit, &continuation.remainder),
        };
        let mut losses = Losses::default();
        count_abandoned(
            fanout.pages,
            &mut losses,
            &rest,
            Some(&continuation.remainder),
            broadcast.sender,
            schedule.give_up,
        )
        .await;
        return Served::Unclaimed { rest, losses };
    }
    // The wait never takes more than half of what is left of the slice, so a
    // long backoff cannot leave a continuation no time to post (and so hand
    // on, without progress, one more attempt and a longer wait).
    let now = Instant::now();
    let wait = backoff(BACKOFF_FIRST, continuation.attempt, BACKOFF_CAP)
        .min(schedule.stop_at.saturating_duration_since(now) / 2);
    tokio::time::sleep(wait).await;
    Served::Shared(
        share(
            fanout,
            relay,
            broadcast,
            continuation.hop,
            continuation.attempt,
            continuation.remainder.clone(),
            schedule,
        )
        .await,
    )
}

#[cfg(test)]
mod tests;
