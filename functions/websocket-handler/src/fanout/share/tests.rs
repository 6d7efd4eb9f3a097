//! What becomes of what a slice did not deliver: handed on, tried again,
//! or counted — each recipient reached once or counted once.

use std::collections::BTreeMap;
use std::time::Duration;

use protocol::metrics::LossReason;
use tokio::time::Instant;

use super::super::memory::{MemoryClaims, MemoryPages, MemoryQueue as Queue};
use super::super::tests::{
    Broadcasting, broadcast, far, ids, limits, posts_per_recipient, registry_with, schedule,
    whole_broadcast,
};
use super::*;
use crate::fanout::{Fanout, Limits};
use crate::messenger::MemoryMessenger;
use crate::registry::{ConnectionRegistry, GoneRemoval, MemoryRegistry, RegistryError};

const LIMIT: Duration = Duration::from_secs(30);

fn queued(queue: &Queue) -> Continuation {
    let event = queue.pop().expect("a continuation was queued");
    Continuation::from_event(&event)
        .expect("a continuation")
        .expect("valid")
}

#[tokio::test]
async fn a_chain_longer_than_max_hops_is_counted_not_reached() {
    let queue = Queue::default();
    let left = Remainder {
        pending: vec!["a".into(), "b".into()],
        cursor: Cursor::After("b".into()),
    };
    let at_limit = pass_on(
        &queue,
        broadcast("s", "f"),
        MAX_HOPS,
        0,
        left.clone(),
        far(),
    )
    .await;
    assert_eq!(
        at_limit,
        Handover::Abandoned {
            reason: LossReason::HopLimit,
            pending: 2,
            more_pages: true
        }
    );
    assert!(queue.is_empty());
    // One below the limit is still handed on: the last hop is MAX_HOPS.
    let last = pass_on(
        &queue,
        broadcast("s", "f"),
        MAX_HOPS - 1,
        0,
        left.clone(),
        far(),
    )
    .await;
    assert_eq!(last, Handover::HandedOff { hop: MAX_HOPS });
    // The queue double tells queued from empty (the checks above and below
    // that nothing was handed on rely on it).
    assert!(!queue.is_empty());
    assert_eq!(queued(&queue).hop, MAX_HOPS);
    assert!(queue.is_empty());
    // A hop that would overflow is refused, not wrapped.
    let overflow = pass_on(
        &queue,
        broadcast("s", "f"),
        u32::MAX,
        0,
        left.clone(),
        far(),
    )
    .await;
    assert!(matches!(
        overflow,
        Handover::Abandoned {
            reason: LossReason::HopLimit,
            ..
        }
    ));

    let failing = Queue::failing();
    let give_up = Instant::now() + Duration::from_millis(300);
    let failed = pass_on(&failing, broadcast("s", "f"), 0, 0, left, give_up).await;
    assert!(matches!(
        failed,
        Handover::Abandoned {
            reason: LossReason::HandoffFailed,
            pending: 2,
            ..
        }
    ));
    assert!(
        Instant::now() < give_up + Duration::from_millis(200),
        "it gave up in time"
    );
}

/// An `Invoke` that fails under load (the e2e load test saw it time out) is
/// tried again while the invocation has time; the continuation is queued once.
#[tokio::test]
async fn a_failed_hand_off_is_tried_again_until_it_is_queued() {
    let queue = Queue::failing_first(3);
    let left = Remainder::only(vec!["a".into()]);
    let handover = tokio::time::timeout(
        LIMIT,
        pass_on(&queue, broadcast("s", "f"), 0, 0, left, far()),
    )
    .await
    .expect("the hand-off ends");
    assert_eq!(handover, Handover::HandedOff { hop: 1 });
    assert!(queue.pop().is_some(), "queued");
    assert!(queue.is_empty(), "queued once");
}

/// A failed hand-off is not tried again when the pause before the next
/// try would pass the give-up: the invocation keeps that time for its reply,
/// and nothing is handed on after it.
#[tokio::test(start_paused = true)]
async fn a_hand_off_is_not_tried_again_past_its_give_up() {
    // Refused at 0, 100 and 200 ms; a fourth try (at 300 ms) would queue it.
    let queue = Queue::failing_first(3);
    let left = Remainder::only(vec!["a".into()]);
    let give_up = Instant::now() + HANDOFF_RETRY_PAUSE * 5 / 2;
    let handover = pass_on(&queue, broadcast("s", "f"), 0, 0, left, give_up).await;
    assert!(
        matches!(
            handover,
            Handover::Abandoned {
                reason: LossReason::HandoffFailed,
                ..
            }
        ),
        "{handover:?}"
    );
    assert!(Instant::now() <= give_up, "gave up after the give-up");
    assert!(queue.is_empty(), "nothing handed on past the give-up");
}

/// Refused posts past the hop limit, more than one continuation's worth:
/// every one of them is counted, whichever continuation it would have gone in.
#[tokio::test]
async fn refused_posts_of_several_continuations_past_the_limit_are_all_counted() {
    let refused = ids(MAX_PENDING + 1);
    let queue = Queue::default();
    let handover = retry_refused(&queue, broadcast("s", "f"), MAX_HOPS, 0, &refused, far()).await;
    assert_eq!(
        handover,
        Handover::Abandoned {
            reason: LossReason::HopLimit,
            pending: MAX_PENDING + 1,
            more_pages: false,
        }
    );
    assert!(queue.is_empty());
}

/// One post per invocation, 20 connections in pages of 7, 100 broadcasts:
/// the sender's slice and 15 hops reach 16 recipients; the other 3 are
/// counted as not reached (hop limit), whether they were pending or on a
/// page never read. Every recipient reached at most once, and reached plus
/// counted is every recipient, for every broadcast.
#[tokio::test]
async fn a_tiny_budget_reaches_each_recipient_once_or_counts_it() {
    let all = ids(20);
    let registry = registry_with(&all).await;
    let pages = MemoryPages {
        registry: &registry,
        size: 7,
    };
    for round in 0..100 {
        let messenger = MemoryMessenger::new();
        let fanout = Fanout {
            registry: &registry,
            pages: &pages,
            messenger: &messenger,
            limits: limits(Some(1)),
        };
        let (queue, claims) = (Queue::default(), MemoryClaims::default());
        let sender = &all[round % all.len()];
        let (_, _, losses) = tokio::time::timeout(
            LIMIT,
            whole_broadcast(&fanout, &queue, &claims, sender, 1, LIMIT),
        )
        .await
        .expect("timed out");
        let counts = posts_per_recipient(&messenger);
        assert!(
            counts.values().all(|n| *n == 1),
            "round {round}: {counts:?}"
        );
        assert!(!counts.contains_key(sender));
        assert_eq!(counts.len(), 1 + MAX_HOPS as usize, "round {round}");
        assert_eq!(
            losses.count(LossReason::HopLimit),
            19 - counts.len(),
            "round {round}"
        );
        assert_eq!(losses.total(), losses.count(LossReason::HopLimit));
        assert_eq!(losses.cut_short_count(), 0);
    }
}

/// A post refused as throttled is tried again by a continuation of its own
/// after a backoff, and delivered once; one refused every time is counted
/// as throttled when no hop is left. (Time is paused: the backoffs of
/// fifteen hops add up to half a minute.)
#[tokio::test(start_paused = true)]
async fn throttled_posts_are_retried_later_and_counted_when_hops_run_out() {
    let one = Broadcasting::of(12).await;
    let (all, messenger) = (&one.all, &one.messenger);
    messenger.throttle("c00003", 2);
    messenger.throttle("c00007", usize::MAX);
    let fanout = one.fanout(limits(None));
    let (queue, claims) = (Queue::default(), MemoryClaims::default());
    let (hops, served, losses) = tokio::time::timeout(
        LIMIT * 20,
        whole_broadcast(&fanout, &queue, &claims, "nobody", 2, LIMIT),
    )
    .await
    .expect("timed out");
    let counts = posts_per_recipient(messenger);
    let expected: BTreeMap<String, usize> = all
        .iter()
        .filter(|id| *id != "c00007")
        .map(|id| (id.clone(), 1))
        .collect();
    assert_eq!(counts, expected);
    assert_eq!(losses.count(LossReason::Throttled), 1, "{losses:?}");
    assert_eq!(losses.total(), 1);
    assert_eq!(hops, MAX_HOPS as usize, "one retry per hop until the limit");
    // Every second delivery of a continuation was a duplicate.
    let duplicates = served.iter().filter(|s| **s == Served::Duplicate).count();
    assert_eq!(duplicates, hops);
}

/// A retry waits its backoff: each continuation that follows one without
/// progress counts one more attempt, and waits accordingly.
#[tokio::test]
async fn a_retry_continuation_waits_its_backoff() {
    let one = Broadcasting::of(3).await;
    let messenger = &one.messenger;
    messenger.throttle("c00001", 1);
    let fanout = one.fanout(limits(None));
    let queue = Queue::default();
    let first = share(
        &fanout,
        &queue,
        broadcast("nobody", "x"),
        0,
        0,
        Remainder::everyone(),
        schedule(LIMIT, fanout.limits),
    )
    .await;
    assert_eq!(first.slice.refused, ["c00001"]);
    assert_eq!(first.retry, Handover::HandedOff { hop: 1 });
    let retry = queued(&queue);
    assert_eq!(
        (retry.attempt, retry.remainder.clone()),
        (1, Remainder::only(vec!["c00001".into()]))
    );
    let started = Instant::now();
    let served = serve(
        &fanout,
        &MemoryClaims::default(),
        &queue,
        retry,
        schedule(LIMIT, fanout.limits),
    )
    .await;
    assert!(matches!(served, Served::Shared(_)), "{served:?}");
    assert!(
        started.elapsed() >= BACKOFF_FIRST,
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(posts_per_recipient(messenger).get("c00001"), Some(&1));
}

/// A claim the table applied but whose answer was lost: the continuation is
/// handed on again with its token, and the second attempt's claim succeeds
/// on that token — the broadcast is not lost, and not doubled even when
/// Lambda also delivers the original event twice.
#[tokio::test]
async fn a_claim_whose_answer_was_lost_does_not_lose_the_broadcast() {
    let one = Broadcasting::of(9).await;
    let (all, messenger) = (&one.all, &one.messenger);
    let fanout = one.fanout(limits(None));
    let queue = Queue::default();
    let claims = MemoryClaims::losing_first_answers(1);
    let original =
        next(broadcast("nobody", "x"), 0, 0, Remainder::only(all.clone())).expect("hop 1");
    let first = serve(
        &fanout,
        &claims,
        &queue,
        original.clone(),
        schedule(LIMIT, fanout.limits),
    )
    .await;
    assert!(
        matches!(&first, Served::Unclaimed { rest: Handover::HandedOff { hop: 2 }, losses } if losses.is_empty()),
        "{first:?}"
    );
    assert!(
        messenger.posts().is_empty(),
        "nothing posted without a claim"
    );
    let again = queued(&queue);
    assert_eq!(again.id, original.id);
    assert!(again.claim_token.is_some());
    assert_eq!(
        again.attempt,
        original.attempt + 1,
        "handed on again one attempt further: the next hop backs off a step more"
    );
    // Lambda delivers the original once more, then the one handed on again.
    let duplicate = serve(
        &fanout,
        &claims,
        &queue,
        original,
        schedule(LIMIT, fanout.limits),
    )
    .await;
    assert_eq!(duplicate, Served::Duplicate);
    let second = serve(
        &fanout,
        &claims,
        &queue,
        again,
        schedule(LIMIT, fanout.limits),
    )
    .await;
    assert!(matches!(second, Served::Shared(_)), "{second:?}");
    let counts = posts_per_recipient(messenger);
    assert_eq!(counts.len(), 9);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    assert_eq!(claims.len(), 1, "one claim for the continuation");
    assert!(
        !claims.is_empty(),
        "the claims double tells claimed from empty"
    );
}

/// A table that cannot be written: nothing is posted, and the continuation
/// is handed on again until the hop limit, where what it held is counted.
#[tokio::test]
async fn an_unclaimable_continuation_posts_nothing_and_is_counted_at_the_limit() {
    let all = ids(5);
    let registry = registry_with(&all).await;
    let pages = MemoryPages {
        registry: &registry,
        size: 2,
    };
    let messenger = MemoryMessenger::new();
    let fanout = Fanout {
        registry: &registry,
        pages: &pages,
        messenger: &messenger,
        limits: limits(None),
    };
    let queue = Queue::default();
    let mut continuation = next(
        broadcast("c00000", "x"),
        MAX_HOPS - 1,
        0,
        Remainder {
            pending: vec!["c00001".into()],
            cursor: Cursor::After("c00001".into()),
        },
    )
    .expect("the last hop");
    continuation.hop = MAX_HOPS;
    let served = serve(
        &fanout,
        &MemoryClaims::broken(),
        &queue,
        continuation,
        schedule(LIMIT, fanout.limits),
    )
    .await;
    let Served::Unclaimed { rest, losses } = served else {
        panic!("{served:?}");
    };
    assert!(matches!(
        rest,
        Handover::Abandoned {
            reason: LossReason::HopLimit,
            ..
        }
    ));
    // c00001 pending, and c00002..c00004 on the pages after it.
    assert_eq!(losses.count(LossReason::HopLimit), 4, "{losses:?}");
    assert!(messenger.posts().is_empty());
    assert!(queue.is_empty());
}

/// A continuation that made no progress (its page could not be read) is
/// handed on with one more attempt, so the next one backs off.
#[tokio::test]
async fn a_hop_without_progress_hands_on_with_one_more_attempt() {
    let registry = MemoryRegistry::new();
    let messenger = MemoryMessenger::new();
    let fanout = Fanout {
        registry: &registry,
        pages: &Unreadable,
        messenger: &messenger,
        limits: limits(None),
    };
    let queue = Queue::default();
    let work = Remainder {
        pending: Vec::new(),
        cursor: Cursor::After("k".into()),
    };
    let shared = share(
        &fanout,
        &queue,
        broadcast("s", "x"),
        3,
        2,
        work.clone(),
        schedule(LIMIT, fanout.limits),
    )
    .await;
    assert_eq!(shared.rest, Handover::HandedOff { hop: 4 });
    let next = queued(&queue);
    assert_eq!((next.attempt, next.remainder), (3, work));
}

struct Unreadable;

#[async_trait::async_trait]
impl RecipientPages for Unreadable {
    async fn page(&self, _after: Option<&str>) -> Result<super::super::Page, RegistryError> {
        Err(RegistryError::new("Scan", "throttled"))
    }
}

/// A gone connection whose record cannot be removed (the registry hangs)
/// still finishes within the post timeout: the drain reserve holds.
#[tokio::test]
async fn removing_a_gone_connection_stays_inside_the_post_timeout() {
    let all = ids(3);
    let registry = Hanging(registry_with(&all).await);
    let messenger = MemoryMessenger::new();
    messenger.mark_gone("c00001");
    let post_timeout = Duration::from_millis(300);
    let fanout = Fanout {
        registry: &registry,
        pages: &registry.0,
        messenger: &messenger,
        limits: Limits {
            post_timeout,
            ..limits(None)
        },
    };
    let started = Instant::now();
    let slice = tokio::time::timeout(
        LIMIT,
        fanout.run("nobody", b"x", Remainder::everyone(), far()),
    )
    .await
    .expect("timed out");
    assert!(
        started.elapsed() < post_timeout + Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    assert_eq!((slice.delivery.delivered, slice.delivery.gone), (2, 1));
}

/// A registry whose conditional delete never answers.
struct Hanging(MemoryRegistry);

#[async_trait::async_trait]
impl ConnectionRegistry for Hanging {
    async fn register(
        &self,
        connection: &crate::registry::Connection,
    ) -> Result<(), RegistryError> {
        self.0.register(connection).await
    }
    async fn remove(&self, connection_id: &str) -> Result<(), RegistryError> {
        self.0.remove(connection_id).await
    }
    async fn remove_gone(
        &self,
        _connection_id: &str,
        _connected_before: chrono::DateTime<chrono::Utc>,
    ) -> Result<GoneRemoval, RegistryError> {
        std::future::pending().await
    }
    async fn list(&self) -> Result<Vec<String>, RegistryError> {
        self.0.list().await
    }
}

#[test]
fn continuation_events_round_trip_and_other_events_are_not_continuations() {
    let continuation = next(
        broadcast("s", r#"{"type":"message"}"#),
        1,
        0,
        Remainder {
            pending: vec!["x".into()],
            cursor: Cursor::After("x".into()),
        },
    )
    .expect("hop 2");
    let event = continuation.to_event();
    assert_eq!(event["fanout"]["remainder"]["cursor"]["at"], "after");
    assert_eq!(event["fanout"]["hop"], 2);
    assert_eq!(
        Continuation::from_event(&event),
        Some(Ok(continuation.clone()))
    );
    assert_eq!(
        Continuation::from_event(&serde_json::json!({"requestContext": {}})),
        None
    );
    let broken = serde_json::json!({"fanout": {"messageId": 3}});
    let error = Continuation::from_event(&broken)
        .expect("marked as a continuation")
        .expect_err("bad shape");
    assert!(error.contains("continuation"), "{error}");
    // Each continuation gets its own id.
    let other = next(broadcast("s", "x"), 1, 0, Remainder::only(vec![])).expect("hop 2");
    assert_ne!(other.id, continuation.id);
}

/// However long its backoff, a continuation keeps half of its slice for
/// posting: a backoff longer than the slice still posts, so attempts do not
/// grow without progress.
#[tokio::test(start_paused = true)]
async fn a_long_backoff_leaves_half_the_slice_for_posting() {
    let one = Broadcasting::of(4).await;
    let all = &one.all;
    let fanout = one.fanout(limits(None));
    let queue = Queue::default();
    let mut late =
        next(broadcast("nobody", "x"), 3, 0, Remainder::only(all.clone())).expect("hop 4");
    late.attempt = MAX_HOPS;
    let slice = Duration::from_secs(1);
    let started = Instant::now();
    let served = serve(
        &fanout,
        &MemoryClaims::default(),
        &queue,
        late,
        schedule(slice, fanout.limits),
    )
    .await;
    let Served::Shared(share) = served else {
        panic!("{served:?}");
    };
    assert!(
        started.elapsed() >= slice / 2,
        "it waited {:?}",
        started.elapsed()
    );
    assert_eq!(share.slice.delivery.delivered, 4, "{share:?}");
    assert_eq!(share.rest, Handover::Finished);
    assert!(queue.is_empty());
}
