//! Fan-out of one message to many connections.
//!
//! Posts run concurrently with a bound, so a thousand recipients do not take a
//! thousand round trips nor open a thousand sockets at once. Each post is
//! independent: a slow recipient holds one slot until its timeout, a failed
//! one is counted and logged, and a gone one is removed from the registry.

use std::time::Duration;

use futures_util::stream::{self, StreamExt};

use crate::messenger::{Messenger, PostError};
use crate::registry::ConnectionRegistry;

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
    /// Connections that were gone (and are now removed from the registry).
    pub gone: usize,
    /// Posts that failed or timed out.
    pub failed: usize,
}

enum Outcome {
    Delivered,
    Gone,
    Failed,
}

/// Posts `data` to every connection in `recipients`, at most
/// [`MAX_IN_FLIGHT`] at a time.
pub async fn broadcast(
    registry: &dyn ConnectionRegistry,
    messenger: &dyn Messenger,
    recipients: &[String],
    data: &[u8],
) -> Delivery {
    broadcast_with(
        registry,
        messenger,
        recipients,
        data,
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
    max_in_flight: usize,
    post_timeout: Duration,
) -> Delivery {
    let posts = stream::iter(recipients).map(|connection_id| async move {
        match tokio::time::timeout(post_timeout, messenger.post(connection_id, data)).await {
            Ok(Ok(())) => Outcome::Delivered,
            Ok(Err(PostError::Gone)) => {
                if let Err(error) = registry.remove(connection_id).await {
                    tracing::warn!(%connection_id, %error, "could not remove a gone connection");
                }
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
    posts
        .buffer_unordered(max_in_flight.max(1))
        .fold(Delivery::default(), |mut delivery, outcome| async move {
            match outcome {
                Outcome::Delivered => delivery.delivered += 1,
                Outcome::Gone => delivery.gone += 1,
                Outcome::Failed => delivery.failed += 1,
            }
            delivery
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messenger::MemoryMessenger;
    use crate::registry::{Connection, MemoryRegistry};
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const LIMIT: Duration = Duration::from_secs(30);

    async fn registry_with(ids: &[String]) -> MemoryRegistry {
        let registry = MemoryRegistry::new();
        for id in ids {
            let connection = Connection {
                connection_id: id.clone(),
                connected_at: chrono::Utc::now(),
                source_ip: None,
                user_agent: None,
            };
            registry.register(&connection).await.expect("register");
        }
        registry
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
        let delivery =
            tokio::time::timeout(LIMIT, broadcast(&registry, &messenger, &recipients, b"hi"))
                .await
                .expect("timed out");
        assert_eq!(
            delivery,
            Delivery {
                delivered: 7,
                gone: 2,
                failed: 1
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
                failed: 1
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
        let delivery = broadcast(&registry, &messenger, &[], b"hi").await;
        assert_eq!(delivery, Delivery::default());
    }
}
