//! Stage default route throttling: a token bucket per route, as API
//! Gateway's rate and burst limits.

use std::time::Instant;

use super::Shared;
use super::account::TokenBucket;

/// API Gateway's account-level defaults, used for a stage that sets only one
/// of rate and burst.
pub const ACCOUNT_RATE_LIMIT: f64 = 10_000.0;
pub const ACCOUNT_BURST_LIMIT: u32 = 5_000;

/// Stage default route throttling: a token bucket per route.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttle {
    pub rate_per_sec: f64,
    pub burst: u32,
}

impl Shared {
    /// Takes a token from the route's bucket; false when throttled.
    pub(super) fn admit(&self, route_key: &str) -> bool {
        let Some(throttle) = self.routing.load().throttle else {
            return true;
        };
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        let capacity = f64::from(throttle.burst);
        buckets
            .entry(route_key.to_string())
            .or_insert_with(|| TokenBucket::full(capacity, now))
            .take(throttle.rate_per_sec, capacity, now)
    }
}
