//! Fan-out of one message to many connections.
//!
//! Posts run concurrently with a bound, so a thousand recipients do not take a
//! thousand round trips nor open a thousand sockets at once. Each post is
//! independent: a slow recipient holds one slot until its timeout, a failed
//! one is counted and logged, and a gone one is removed from the registry
//! (unless it is still connecting, see [`crate::registry::GONE_GRACE`]). The
//! whole fan-out stops at a given instant, so that the invocation still has
//! time to tell the sender how many it reached.

use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use tokio::time::Instant;

use crate::messenger::{Messenger, PostError};
use crate::registry::{ConnectionRegistry, forget_gone};

/// Posts in flight at once.
pub const MAX_IN_FLIGHT: usize = 50;

/// A post that takes longer than this counts as failed, so one stuck
/// recipient cannot hold the sender's reply for the whole Lambda timeout.
pub const POST_TIMEOUT: Duration = Duration::from_secs(5);

/// What happened to each recipient of a broadcast.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Posts the management API accepted.
    pub delivered: usize,
    /// Connections that were gone (removed from the registry unless younger
    /// than the grace period).
    pub gone: usize,
    /// Posts that failed or timed out.
    pub failed: usize,
    /// Recipients not reached because the broadcast stopped at its deadline
    /// (never tried, or cut off in flight).
    pub unreached: usize,
}

enum Outcome {
    Delivered,
    Gone,
    Failed,
}

/// Posts `data` to every connection in `recipients`, at most
/// [`MAX_IN_FLIGHT`] at a time, stopping at `stop_at`.
pub async fn broadcast(
    registry: &dyn ConnectionRegistry,
    messenger: &dyn Messenger,
    recipients: &[String],
    data: &[u8],
    stop_at: Instant,
) -> Delivery {
    broadcast_with(
        registry,
        messenger,
        recipients,
        data,
        stop_at,
        MAX_IN_FLIGHT,
        POST_TIMEOUT,
    )
    .await
}

/// [`broadcast`] with explicit limits.
pub async fn broadcast_with(
    registry: &dyn ConnectionRegistry,
    messenger: &dyn Messenger,
    recipients: &[String],
    data: &[u8],
    stop_at: Instant,
    max_in_flight: usize,
    post_timeout: Duration,
) -> Delivery {
    let posts = stream::iter(recipients).map(|connection_id| async move {
        match tokio::time::timeout(post_timeout, messenger.post(connection_id, data)).await {
            Ok(Ok(())) => Outcome::Delivered,
            Ok(Err(PostError::Gone)) => {
                forget_gone(registry, connection_id).await;
                Outcome::Gone
            }
            Ok(Err(PostError::Other(error))) => {
                tracing::warn!(%connection_id, %error, "post to connection failed");
                Outcome::Failed
            }
            Err(_) => {
                tracing::warn!(%connection_id, timeout = ?post_timeout, "post to connection timed out");
                Outcome::Failed
            }
        }
    });
    let mut delivery = posts
        .buffer_unordered(max_in_flight.max(1))
        .take_until(tokio::time::sleep_until(stop_at))
        .fold(Delivery::default(), |mut delivery, outcome| async move {
            match outcome {
                Outcome::Delivered => delivery.delivered += 1,
                Outcome::Gone => delivery.gone += 1,
                Outcome::Failed => delivery.failed += 1,
            }
            delivery
        })
        .await;
    let tried = delivery.delivered + delivery.gone + delivery.failed;
    delivery.unreached = recipients.len().saturating_sub(tried);
    if delivery.unreached > 0 {
        tracing::warn!(
            unreached = delivery.unreached,
            "broadcast stopped at the invocation's deadline"
        );
    }
    delivery
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messenger::MemoryMessenger;
    use crate::registry::{Connection, GONE_GRACE, MemoryRegistry};
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const LIMIT: Duration = Duration::from_secs(30);

    fn later() -> Instant {
        Instant::now() + LIMIT
    }

    /// Registers `ids` as connections opened `age` ago.
    async fn registry_aged(ids: &[String], age: Duration) -> MemoryRegistry {
        let registry = MemoryRegistry::new();
        for id in ids {
            let connection = Connection {
                connection_id: id.clone(),
                connected_at: chrono::Utc::now() - chrono::TimeDelta::from_std(age).expect("age"),
                source_ip: None,
                user_agent: None,
            };
            registry.register(&connection).await.expect("register");
        }
        registry
    }

    /// Connections opened well before the grace period.
    async fn registry_with(ids: &[String]) -> MemoryRegistry {
        registry_aged(ids, GONE_GRACE * 4).await
    }

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    #[tokio::test]
    async fn gone_recipients_are_removed_and_failures_do_not_stop_the_rest() {
        let recipients = ids(10);
        let registry = registry_with(&recipients).await;
        let messenger = MemoryMessenger::new();
        messenger.mark_gone("c3");
        messenger.mark_gone("c7");
        messenger.mark_failing("c5");
        let delivery = tokio::time::timeout(
            LIMIT,
            broadcast(&registry, &messenger, &recipients, b"hi", later()),
        )
        .await
        .expect("timed out");
        assert_eq!(
            delivery,
            Delivery {
                delivered: 7,
                gone: 2,
                failed: 1,
                unreached: 0
            }
        );
        assert_eq!(messenger.posts().len(), 7);
        let left = registry.list().await.expect("list");
        assert!(!left.contains(&"c3".to_string()) && !left.contains(&"c7".to_string()));
        assert!(
            left.contains(&"c5".to_string()),
            "a failed post is not a reason to forget the connection"
        );
    }

    /// Counts how many posts run at once; one recipient never answers.
    struct Gauge {
        now: AtomicUsize,
        peak: AtomicUsize,
        inner: MemoryMessenger,
    }

    #[async_trait]
    impl Messenger for Gauge {
        async fn post(&self, connection_id: &str, data: &[u8]) -> Result<(), PostError> {
            let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            if connection_id == "c0" {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
            self.now.fetch_sub(1, Ordering::SeqCst);
            self.inner.post(connection_id, data).await
        }
    }

    #[tokio::test]
    async fn concurrency_is_bounded_and_a_stuck_recipient_only_costs_its_own_post() {
        let recipients = ids(500);
        let registry = registry_with(&recipients).await;
        let gauge = Gauge {
            now: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            inner: MemoryMessenger::new(),
        };
        let post_timeout = Duration::from_millis(300);
        let delivery = tokio::time::timeout(
            LIMIT,
            broadcast_with(
                &registry,
                &gauge,
                &recipients,
                b"hi",
                later(),
                MAX_IN_FLIGHT,
                post_timeout,
            ),
        )
        .await
        .expect("timed out");
        assert_eq!(
            delivery,
            Delivery {
                delivered: 499,
                gone: 0,
                failed: 1,
                unreached: 0
            }
        );
        let peak = gauge.peak.load(Ordering::SeqCst);
        assert!(peak <= MAX_IN_FLIGHT, "peak {peak} posts in flight");
        assert!(peak > 1, "posts ran one at a time");
    }

    #[tokio::test]
    async fn no_recipients_is_no_posts() {
        let registry = MemoryRegistry::new();
        let messenger = MemoryMessenger::new();
        let delivery = broadcast(&registry, &messenger, &[], b"hi", later()).await;
        assert_eq!(delivery, Delivery::default());
    }

    /// API Gateway answers 410 for a connection whose `$connect` is still
    /// running: a broadcast at that moment must not forget the joiner.
    #[tokio::test]
    async fn a_410_from_a_connection_still_joining_keeps_its_record() {
        let joining = ids(1);
        let registry = registry_aged(&joining, Duration::from_secs(1)).await;
        let messenger = MemoryMessenger::new();
        messenger.mark_gone("c0");
        let delivery = broadcast(&registry, &messenger, &joining, b"hi", later()).await;
        assert_eq!(delivery.gone, 1);
        assert_eq!(registry.list().await.expect("list"), ["c0"]);

        // The same 410 once the grace period has passed removes it.
        let registry = registry_aged(&joining, GONE_GRACE + Duration::from_secs(1)).await;
        broadcast(&registry, &messenger, &joining, b"hi", later()).await;
        assert!(registry.list().await.expect("list").is_empty());
    }

    /// Posts to "c0".."c4" never finish; the others are immediate.
    struct HalfStuck(MemoryMessenger);

    #[async_trait]
    impl Messenger for HalfStuck {
        async fn post(&self, connection_id: &str, data: &[u8]) -> Result<(), PostError> {
            let index: usize = connection_id[1..].parse().unwrap_or(0);
            if index < 5 {
                std::future::pending::<()>().await;
            }
            self.0.post(connection_id, data).await
        }
    }

    #[tokio::test]
    async fn a_broadcast_stops_at_its_deadline_and_counts_who_it_reached() {
        let recipients = ids(10);
        let registry = registry_with(&recipients).await;
        let messenger = HalfStuck(MemoryMessenger::new());
        let stop_at = Instant::now() + Duration::from_millis(500);
        let delivery = tokio::time::timeout(
            LIMIT,
            broadcast_with(
                &registry,
                &messenger,
                &recipients,
                b"hi",
                stop_at,
                MAX_IN_FLIGHT,
                LIMIT,
            ),
        )
        .await
        .expect("the broadcast did not stop at its deadline");
        assert!(Instant::now() >= stop_at);
        assert_eq!(
            delivery,
            Delivery {
                delivered: 5,
                gone: 0,
                failed: 0,
                unreached: 5
            }
        );
        assert_eq!(messenger.0.posts().len(), 5);
    }
}
