use super::memory::{MemoryClaims, MemoryPages, MemoryQueue as Queue};
use super::*;
use crate::messenger::{MemoryMessenger, PostError};
use crate::registry::{Connection, MemoryRegistry};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

pub(super) fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("c{i:05}")).collect()
}

pub(super) async fn registry_with(ids: &[String]) -> MemoryRegistry {
    let registry = MemoryRegistry::new();
    for id in ids {
        let connection = Connection {
            connection_id: id.clone(),
            // Older than the registry's grace period, so a 410 removes them.
            connected_at: chrono::Utc::now() - chrono::TimeDelta::hours(1),
            source_ip: None,
            user_agent: None,
            user_id: None,
        };
        registry.register(&connection).await.expect("register");
    }
    registry
}

pub(super) fn limits(per_invocation: Option<usize>) -> Limits {
    Limits {
        in_flight: 8,
        per_invocation,
        ..Limits::default()
    }
}

pub(super) fn far() -> Instant {
    Instant::now() + LIMIT
}

/// A schedule that stops starting posts `slice` from now and gives up far away.
pub(super) fn schedule(slice: Duration, limits: Limits) -> Schedule {
    Schedule {
        stop_at: Instant::now() + slice,
        give_up: far(),
        limits,
    }
}

pub(super) fn broadcast<'a>(sender: &'a str, frame: &'a str) -> Broadcast<'a> {
    Broadcast {
        message_id: "m1",
        sender,
        frame,
    }
}

/// `n` registered connections (one registry page up to
/// [`super::memory::MEMORY_PAGE`]) and a messenger that records each post.
pub(super) struct Broadcasting {
    pub all: Vec<String>,
    pub registry: MemoryRegistry,
    pub messenger: MemoryMessenger,
}

impl Broadcasting {
    pub async fn of(n: usize) -> Self {
        let all = ids(n);
        Broadcasting {
            registry: registry_with(&all).await,
            all,
            messenger: MemoryMessenger::new(),
        }
    }

    /// The fan-out over this registry (read a page at a time) and messenger.
    pub fn fanout(&self, limits: Limits) -> Fanout<'_> {
        Fanout {
            registry: &self.registry,
            pages: &self.registry,
            messenger: &self.messenger,
            limits,
        }
    }
}

/// Runs a whole broadcast: the sender's slice, then every queued
/// continuation (each delivered `deliveries` times), as Lambda would;
/// the continuations run, what each served, and every loss counted.
pub(super) async fn whole_broadcast(
    fanout: &Fanout<'_>,
    queue: &Queue,
    claims: &MemoryClaims,
    sender: &str,
    deliveries: usize,
    slice: Duration,
) -> (usize, Vec<Served>, crate::metrics::Losses) {
    let frame = r#"{"type":"message","data":1}"#;
    let first = share(
        fanout,
        queue,
        broadcast(sender, frame),
        0,
        0,
        Remainder::everyone(),
        schedule(slice, fanout.limits),
    )
    .await;
    let mut served = Vec::new();
    let mut losses = first.losses.clone();
    let mut hops = 0;
    while let Some(event) = queue.pop() {
        hops += 1;
        let continuation = Continuation::from_event(&event)
            .expect("a continuation")
            .expect("parses");
        for _ in 0..deliveries {
            let schedule = schedule(slice, fanout.limits);
            let outcome = serve(fanout, claims, queue, continuation.clone(), schedule).await;
            match &outcome {
                Served::Shared(share) => losses.merge(&share.losses),
                Served::Unclaimed { losses: lost, .. } => losses.merge(lost),
                Served::Duplicate => {}
            }
            served.push(outcome);
        }
    }
    (hops, served, losses)
}

pub(super) fn posts_per_recipient(messenger: &MemoryMessenger) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (id, _) in messenger.posts() {
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the table size, page size and slice size, and with every
    /// continuation delivered twice: every recipient exactly once, never
    /// the sender.
    #[test]
    fn every_recipient_is_posted_exactly_once(
        n in 0usize..400,
        page in 1usize..60,
        per_invocation in 1usize..90,
        deliveries in 1usize..3,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // A chain has at most MAX_HOPS continuations after the sender's slice
        // (one spare for a last page that holds only the sender).
        let per_invocation = per_invocation.max(n.div_ceil(MAX_HOPS as usize));
        runtime.block_on(async {
            let all = ids(n);
            let sender = all.get(n / 2).cloned().unwrap_or_else(|| "nobody".into());
            let registry = registry_with(&all).await;
            let pages = MemoryPages { registry: &registry, size: page };
            let messenger = MemoryMessenger::new();
            let fanout = Fanout { registry: &registry, pages: &pages, messenger: &messenger,
                limits: limits(Some(per_invocation)) };
            let (queue, claims) = (Queue::default(), MemoryClaims::default());
            let (hops, served, losses) = tokio::time::timeout(LIMIT,
                whole_broadcast(&fanout, &queue, &claims, &sender, deliveries, LIMIT)).await.expect("timed out");
            prop_assert!(losses.is_empty(), "{:?}", losses);
            let counts = posts_per_recipient(&messenger);
            let expected: BTreeMap<String, usize> =
                all.iter().filter(|id| **id != sender).map(|id| (id.clone(), 1)).collect();
            prop_assert_eq!(counts, expected);
            let recipients = n.saturating_sub(1);
            let slices = recipients.div_ceil(per_invocation).max(1);
            prop_assert!(hops <= slices, "{} hops for {} slices", hops, slices);
            let duplicates = served.iter().filter(|s| **s == Served::Duplicate).count();
            prop_assert_eq!(duplicates, hops * (deliveries - 1));
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn a_slice_stops_at_its_stop_time_and_hands_on_exactly_the_rest() {
    let all = ids(300);
    let registry = registry_with(&all).await;
    let pages = MemoryPages {
        registry: &registry,
        size: 1000,
    };
    let slow = Slow(MemoryMessenger::new());
    let fanout = Fanout {
        registry: &registry,
        pages: &pages,
        messenger: &slow,
        limits: limits(None),
    };
    // 8 in flight, 5 ms each: about 1,600 posts/s, so 60 ms is far from 300.
    let stop_at = Instant::now() + Duration::from_millis(60);
    let slice = tokio::time::timeout(
        LIMIT,
        fanout.run("nobody", b"x", Remainder::everyone(), stop_at),
    )
    .await
    .expect("timed out");
    let left = slice.left.expect("some recipients are left");
    let posted: BTreeSet<String> = slow.0.posts().into_iter().map(|(id, _)| id).collect();
    assert!(
        !posted.is_empty() && posted.len() < 300,
        "{} posted",
        posted.len()
    );
    assert_eq!(slice.delivery.delivered, posted.len());
    assert_eq!(left.cursor, Cursor::End);
    let rest: BTreeSet<String> = left.pending.into_iter().collect();
    assert!(posted.is_disjoint(&rest));
    assert_eq!(
        posted.len() + rest.len(),
        300,
        "nothing lost between the two"
    );
}

/// Every post takes 700 ms, and a slice stops starting posts 50 ms in: each
/// slice's posts are all still in flight at its stop, and run on 650 ms past
/// it (past the 500 ms grace after which they used to be cut off and lost).
/// They finish within the post timeout and count; every recipient gets
/// exactly one post, with every continuation delivered twice.
#[tokio::test]
async fn posts_in_flight_at_the_stop_finish_and_every_recipient_gets_one_post() {
    let one = SlowBroadcast::of(25).await;
    let slice = Duration::from_millis(50);
    let first = Instant::now();
    let sliced = one
        .fanout()
        .run("nobody", b"x", Remainder::everyone(), first + slice)
        .await;
    assert!(
        Instant::now() <= first + slice + SlowBroadcast::LIMITS.post_timeout,
        "the slice outlived its drain reserve"
    );
    assert_eq!(sliced.delivery.delivered, 10, "{sliced:?}");
    assert_eq!(sliced.left.as_ref().map(|l| l.pending.len()), Some(15));
    let (queue, claims) = (Queue::default(), MemoryClaims::default());
    let chain = SlowBroadcast::of(25).await;
    let (hops, served, losses) = tokio::time::timeout(
        LIMIT,
        whole_broadcast(&chain.fanout(), &queue, &claims, "nobody", 2, slice),
    )
    .await
    .expect("timed out");
    assert!(losses.is_empty(), "{losses:?}");
    assert_eq!(hops, 2, "{served:?}");
    let expected: BTreeMap<String, usize> = chain.all.iter().map(|id| (id.clone(), 1)).collect();
    assert_eq!(posts_per_recipient(&chain.slow.0), expected);
}

/// The rest is handed on the moment the slice stops starting posts, not
/// after the posts in flight finish: the next hop overlaps this one's drain.
#[tokio::test]
async fn the_rest_is_handed_on_at_the_stop_while_posts_are_in_flight() {
    let slow_broadcast = SlowBroadcast::of(25).await;
    let slow = &slow_broadcast.slow;
    let queue = Queue::default();
    let started = Instant::now();
    let stop_at = started + Duration::from_millis(50);
    let (slice, (handover, handed_at, posted_by_then)) = tokio::time::timeout(
        LIMIT,
        slow_broadcast.fanout().run_then(
            "nobody",
            b"x",
            Remainder::everyone(),
            stop_at,
            |left| async {
                let handed_at = Instant::now();
                let posted_by_then = slow.0.posts().len();
                let left = left.expect("some are left");
                let handover = pass_on(&queue, broadcast("nobody", "x"), 0, 0, left, far()).await;
                (handover, handed_at, posted_by_then)
            },
        ),
    )
    .await
    .expect("timed out");
    assert_eq!(handover, Handover::HandedOff { hop: 1 });
    assert_eq!(
        posted_by_then, 0,
        "handed on before the 700 ms posts finished"
    );
    assert!(handed_at < started + Duration::from_millis(700));
    assert_eq!(slice.delivery.delivered, 10, "{slice:?}");
    let event = queue.pop().expect("queued");
    let continuation = Continuation::from_event(&event)
        .expect("a continuation")
        .expect("parses");
    let handed: BTreeSet<String> = continuation.remainder.pending.into_iter().collect();
    let posted: BTreeSet<String> = slow.0.posts().into_iter().map(|(id, _)| id).collect();
    assert_eq!(handed.len(), 15);
    assert!(handed.is_disjoint(&posted));
}

/// `n` recipients (one registry page) whose posts take 700 ms each, 10 in
/// flight at most, each allowed 2 s.
struct SlowBroadcast {
    all: Vec<String>,
    registry: MemoryRegistry,
    slow: Slowest,
}

impl SlowBroadcast {
    const LIMITS: Limits = Limits {
        in_flight: 10,
        post_timeout: Duration::from_secs(2),
        per_invocation: None,
        handoff_reserve: HANDOFF_RESERVE,
    };

    async fn of(n: usize) -> Self {
        let all = ids(n);
        assert!(n <= super::memory::MEMORY_PAGE, "one page");
        SlowBroadcast {
            registry: registry_with(&all).await,
            all,
            slow: Slowest(MemoryMessenger::new()),
        }
    }

    fn fanout(&self) -> Fanout<'_> {
        Fanout {
            registry: &self.registry,
            pages: &self.registry,
            messenger: &self.slow,
            limits: Self::LIMITS,
        }
    }
}

/// Takes 700 ms per post.
struct Slowest(MemoryMessenger);

#[async_trait]
impl Messenger for Slowest {
    async fn post(&self, connection_id: &str, data: &[u8]) -> Result<(), PostError> {
        tokio::time::sleep(Duration::from_millis(700)).await;
        self.0.post(connection_id, data).await
    }
}

struct Slow(MemoryMessenger);

#[async_trait]
impl Messenger for Slow {
    async fn post(&self, connection_id: &str, data: &[u8]) -> Result<(), PostError> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.0.post(connection_id, data).await
    }
}

#[tokio::test]
async fn gone_recipients_are_removed_and_old_claim_ids_are_never_posted_to() {
    let mut all = ids(20);
    // A claim an earlier version kept in the connections table.
    all.push("#fanout#m0#1".to_string());
    let registry = registry_with(&all).await;
    let pages = MemoryPages {
        registry: &registry,
        size: 7,
    };
    let messenger = MemoryMessenger::new();
    messenger.mark_gone("c00003");
    messenger.mark_failing("c00004");
    let fanout = Fanout {
        registry: &registry,
        pages: &pages,
        messenger: &messenger,
        limits: limits(None),
    };
    let slice = fanout
        .run("c00000", b"x", Remainder::everyone(), far())
        .await;
    assert_eq!(
        slice.delivery,
        Delivery {
            delivered: 17,
            gone: 1,
            failed: 1,
            unconfirmed: 0,
        }
    );
    assert_eq!(slice.left, None);
    assert_eq!(slice.pages, 3);
    assert!(registry.get("c00003").is_none());
    assert!(registry.get("c00004").is_some());
    assert!(messenger.posts().iter().all(|(id, _)| !id.starts_with('#')));
}

/// Counts how many posts run at once; "c00000" never answers.
struct Gauge {
    now: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
    inner: MemoryMessenger,
}

#[async_trait]
impl Messenger for Gauge {
    async fn post(&self, connection_id: &str, data: &[u8]) -> Result<(), PostError> {
        use std::sync::atomic::Ordering::SeqCst;
        /// Counts the post out however it ends (a timed-out one is dropped).
        struct Leaving<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Leaving<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, SeqCst);
            }
        }
        let now = self.now.fetch_add(1, SeqCst) + 1;
        let _leaving = Leaving(&self.now);
        self.peak.fetch_max(now, SeqCst);
        if connection_id == "c00000" {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        self.inner.post(connection_id, data).await
    }
}

#[tokio::test]
async fn concurrency_is_bounded_and_a_stuck_recipient_only_costs_its_own_post() {
    let all = ids(500);
    let registry = registry_with(&all).await;
    let gauge = Gauge {
        now: Default::default(),
        peak: Default::default(),
        inner: MemoryMessenger::new(),
    };
    let limits = Limits {
        in_flight: 50,
        post_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let fanout = Fanout {
        registry: &registry,
        pages: &registry,
        messenger: &gauge,
        limits,
    };
    let slice = tokio::time::timeout(
        LIMIT,
        fanout.run("nobody", b"x", Remainder::everyone(), far()),
    )
    .await
    .expect("timed out");
    assert_eq!(slice.delivery.delivered, 499);
    assert_eq!(slice.delivery.unconfirmed, 1);
    assert_eq!(slice.delivery.failed, 0);
    assert_eq!(slice.pages, 5, "pages of {}", super::memory::MEMORY_PAGE);
    let peak = gauge.peak.load(std::sync::atomic::Ordering::SeqCst);
    assert!(peak <= 50, "peak {peak} posts in flight");
    assert!(peak > 1, "posts ran one at a time");
}

#[test]
fn limits_come_from_the_environment_or_say_what_is_wrong() {
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    };
    assert_eq!(Limits::from_lookup(vars(&[])), Ok(Limits::default()));
    let set = Limits::from_lookup(vars(&[
        ("FANOUT_IN_FLIGHT", " 400 "),
        ("FANOUT_PER_INVOCATION", "250"),
    ]))
    .expect("valid");
    assert_eq!((set.in_flight, set.per_invocation), (400, Some(250)));
    let uncapped = Limits::from_lookup(vars(&[("FANOUT_PER_INVOCATION", "0")])).expect("valid");
    assert_eq!(uncapped.per_invocation, None);
    let error = Limits::from_lookup(vars(&[("FANOUT_IN_FLIGHT", "0")])).expect_err("zero");
    assert_eq!(error.name, "FANOUT_IN_FLIGHT");
    assert!(error.to_string().contains("at least 1"), "{error}");
    assert!(Limits::from_lookup(vars(&[("FANOUT_PER_INVOCATION", "many")])).is_err());
}

/// A slice with no time or no budget left reads no page of the registry (a
/// Scan it could not use) and hands on the broadcast from where it stood.
#[tokio::test]
async fn a_slice_without_time_or_budget_reads_nothing_and_hands_on_everything() {
    let five = Broadcasting::of(5).await;
    for (per_invocation, stop_at) in [(None, Instant::now()), (Some(0), far())] {
        let fanout = five.fanout(limits(per_invocation));
        let slice = fanout
            .run("nobody", b"x", Remainder::everyone(), stop_at)
            .await;
        assert_eq!(slice.pages, 0, "budget {per_invocation:?}");
        let left = slice.left.expect("everything is left");
        assert_eq!(left.cursor, Cursor::Start);
        assert!(left.pending.is_empty(), "{:?}", left.pending);
    }
    assert!(five.messenger.posts().is_empty());
}
