//! Stage default route throttling: a token bucket per route, as API
//! Gateway's rate and burst limits.

use std::time::Instant;

use super::Shared;

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

pub(super) struct TokenBucket {
    pub(super) tokens: f64,
    pub(super) last: Instant,
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
        let bucket = buckets.entry(route_key.to_string()).or_insert(TokenBucket {
            tokens: capacity,
            last: now,
        });
        let refill = now.duration_since(bucket.last).as_secs_f64() * throttle.rate_per_sec;
        bucket.tokens = (bucket.tokens + refill).min(capacity);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
