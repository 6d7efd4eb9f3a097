//! How long an invocation may still run.
//!
//! Lambda ends an invocation at its deadline (`lambda_runtime::Context::deadline`);
//! API Gateway then tells the sender "Internal server error", and whatever the
//! function had not finished is lost without a word. The routes plan against
//! the [`Deadline`] instead: a broadcast stops in time for the reply to the
//! sender, and the reply in time for the response.

use std::future::Future;
use std::time::{Duration, SystemTime};

use aws_types::sdk_config::TimeoutConfig;
use tokio::time::Instant;

/// Kept free at the end of every invocation to hand the response back.
pub const RESPONSE_RESERVE: Duration = Duration::from_millis(250);
/// Kept free after a broadcast for the `sent` reply to the sender.
pub const REPLY_RESERVE: Duration = Duration::from_secs(1);

/// Opening a connection to an AWS endpoint: the SDK's own default, 3.1 s.
/// Not 1 s: Linux retransmits a lost SYN after 1 s, so at 1 s one dropped
/// SYN (a listener's full accept queue, a lossy network) fails the call —
/// the e2e load test lost broadcasts to exactly that. A refused connection
/// still fails at once, and a connect failure is retried by the SDK and by
/// [`crate::post_client`] (nothing was sent, so nothing is posted twice).
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(3_100);
/// One attempt of an AWS call. As long as the whole call, so a timed-out
/// attempt is not retried: a post that timed out may have been delivered,
/// and a retry would deliver it twice. (At 2 s per attempt and 3 s per call,
/// the e2e load test — 1,000 broadcasts at once on one machine — lost posts
/// that were only slow.)
pub const ATTEMPT_TIMEOUT: Duration = OPERATION_TIMEOUT;
/// One AWS call, every attempt included: half the function's timeout (10 s
/// by default, the per-post limit the broadcast always had), so a call that
/// hangs fails with a message instead of running the invocation into
/// Lambda's timeout.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// The timeouts of the function's SDK clients (DynamoDB, Lambda);
/// [`crate::post_client`] applies the same to every post.
pub fn sdk_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

/// The instant an invocation must have answered by, on tokio's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline(Instant);

impl Deadline {
    pub fn at(instant: Instant) -> Self {
        Deadline(instant)
    }

    /// `budget` from now.
    pub fn after(budget: Duration) -> Self {
        Deadline(Instant::now() + budget)
    }

    /// Lambda's deadline (wall-clock time) as an instant; a deadline already
    /// past is now.
    pub fn from_system_time(deadline: SystemTime) -> Self {
        Self::after(
            deadline
                .duration_since(SystemTime::now())
                .unwrap_or_default(),
        )
    }

    pub fn instant(self) -> Instant {
        self.0
    }

    /// The instant `reserve` before the deadline.
    pub fn before(self, reserve: Duration) -> Instant {
        self.0.checked_sub(reserve).unwrap_or(self.0)
    }

    /// Runs `work` until `reserve` before the deadline; `None` if it had not
    /// finished by then (it is dropped).
    pub async fn within<T>(self, reserve: Duration, work: impl Future<Output = T>) -> Option<T> {
        tokio::time::timeout_at(self.before(reserve), work)
            .await
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_past_the_reserve_is_cut_off() {
        let deadline = Deadline::after(Duration::from_secs(2));
        let reserve = Duration::from_secs(1);
        let quick = deadline.within(reserve, async { 7 }).await;
        assert_eq!(quick, Some(7));
        let hung = deadline.within(reserve, std::future::pending::<()>());
        assert_eq!(hung.await, None);
        let now = Instant::now();
        assert!(now >= deadline.before(reserve) && now < deadline.instant());
    }

    #[test]
    fn a_past_lambda_deadline_is_now() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let past = SystemTime::now() - Duration::from_secs(60);
            assert!(Deadline::from_system_time(past).instant() <= Instant::now());
            let future = SystemTime::now() + Duration::from_secs(60);
            let left = Deadline::from_system_time(future).instant() - Instant::now();
            assert!(left > Duration::from_secs(50), "{left:?}");
        });
    }
}
