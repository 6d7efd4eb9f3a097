//! AWS's account-level limits on API Gateway, in the one place that knows
//! them: the account's request rate, shared by every API's own requests
//! (`$connect`, each message) and the `@connections` management API, and
//! the account's rate of new WebSocket connections. The handshake, the
//! message router and the management API each ask this quota; none keeps a
//! counter of its own.
//!
//! AWS's numbers (per account and Region): 10,000 requests/s with a burst
//! of 5,000, and 500 new WebSocket connections/s. A request over the rate
//! gets 429 — on `@connections` with `x-amzn-errortype:
//! LimitExceededException`, the error aws-sdk-apigatewaymanagement models
//! for it — and a handshake over either rate is refused with 429 before the
//! function is invoked. Locally each rate is a token bucket whose burst is
//! half a second of its rate (AWS's 5,000 for 10,000/s); the connection
//! bucket's burst is one second of its rate.

use std::time::Instant;

use parking_lot::Mutex;

/// AWS's account request rate (requests per second, per Region).
pub const ACCOUNT_REQUEST_RATE: u32 = 10_000;
/// AWS's account rate of new WebSocket connections (per second, per Region).
pub const ACCOUNT_CONNECT_RATE: u32 = 500;

/// The account's limits: `--account-rate-limit`, `--account-connect-limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountLimits {
    /// Requests per second across the API's own requests and `@connections`.
    pub request_rate: u32,
    /// New WebSocket connections per second.
    pub connect_rate: u32,
}

impl Default for AccountLimits {
    fn default() -> Self {
        AccountLimits {
            request_rate: ACCOUNT_REQUEST_RATE,
            connect_rate: ACCOUNT_CONNECT_RATE,
        }
    }
}

/// Which account limit a request went over; its message names the limit
/// and the flag that sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OverLimit {
    #[error("account request rate of {0}/s reached (--account-rate-limit)")]
    RequestRate(u32),
    #[error("account rate of new connections of {0}/s reached (--account-connect-limit)")]
    ConnectRate(u32),
}

/// A token bucket: `rate` tokens a second, at most `capacity` saved up.
#[derive(Debug)]
pub(super) struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(super) fn full(capacity: f64, now: Instant) -> Self {
        TokenBucket {
            tokens: capacity,
            last: now,
        }
    }

    /// Refills for the time since the last call, then takes one token;
    /// false when there is none.
    pub(super) fn take(&mut self, rate: f64, capacity: f64, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * rate;
        self.tokens = (self.tokens + refill).min(capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One bucket with its rate and burst.
#[derive(Debug)]
struct Rate {
    per_sec: u32,
    burst: f64,
    bucket: Mutex<TokenBucket>,
}

impl Rate {
    fn new(per_sec: u32, burst: f64) -> Self {
        let burst = burst.max(1.0);
        Rate {
            per_sec,
            burst,
            bucket: Mutex::new(TokenBucket::full(burst, Instant::now())),
        }
    }

    fn take(&self, now: Instant) -> bool {
        self.bucket
            .lock()
            .take(f64::from(self.per_sec), self.burst, now)
    }
}

/// The account's quota, shared by everything that plays API Gateway.
#[derive(Debug)]
pub struct AccountQuota {
    requests: Rate,
    connects: Rate,
}

impl AccountQuota {
    pub fn new(limits: AccountLimits) -> Self {
        AccountQuota {
            requests: Rate::new(limits.request_rate, f64::from(limits.request_rate) / 2.0),
            connects: Rate::new(limits.connect_rate, f64::from(limits.connect_rate)),
        }
    }

    /// One request against the account's request rate.
    pub fn request(&self) -> Result<(), OverLimit> {
        self.request_at(Instant::now())
    }

    /// One new connection: against the connection rate, and as a request.
    pub fn connect(&self) -> Result<(), OverLimit> {
        self.connect_at(Instant::now())
    }

    fn request_at(&self, now: Instant) -> Result<(), OverLimit> {
        if self.requests.take(now) {
            Ok(())
        } else {
            Err(OverLimit::RequestRate(self.requests.per_sec))
        }
    }

    fn connect_at(&self, now: Instant) -> Result<(), OverLimit> {
        if !self.connects.take(now) {
            return Err(OverLimit::ConnectRate(self.connects.per_sec));
        }
        self.request_at(now)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn quota(request_rate: u32, connect_rate: u32) -> AccountQuota {
        AccountQuota::new(AccountLimits {
            request_rate,
            connect_rate,
        })
    }

    #[test]
    fn requests_pass_up_to_the_burst_then_refill_at_the_rate() {
        let quota = quota(100, 500);
        let now = Instant::now();
        for n in 0..50 {
            assert_eq!(quota.request_at(now), Ok(()), "request {n} of the burst");
        }
        assert_eq!(quota.request_at(now), Err(OverLimit::RequestRate(100)));
        let later = now + Duration::from_millis(100);
        for n in 0..10 {
            assert_eq!(quota.request_at(later), Ok(()), "refilled request {n}");
        }
        assert_eq!(quota.request_at(later), Err(OverLimit::RequestRate(100)));
    }

    #[test]
    fn connections_are_limited_by_their_own_rate_and_count_as_requests() {
        let quota = quota(10_000, 3);
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(quota.connect_at(now), Ok(()));
        }
        assert_eq!(quota.connect_at(now), Err(OverLimit::ConnectRate(3)));
        // Requests still pass: the connection rate is a limit of its own.
        assert_eq!(quota.request_at(now), Ok(()));

        let shared = self::quota(2, 500);
        assert_eq!(shared.connect_at(now), Ok(()));
        assert_eq!(shared.connect_at(now), Err(OverLimit::RequestRate(2)));
        assert_eq!(shared.request_at(now), Err(OverLimit::RequestRate(2)));
    }

    #[test]
    fn the_refusal_names_the_limit_and_its_flag() {
        let message = OverLimit::RequestRate(1000).to_string();
        assert!(message.contains("1000/s") && message.contains("--account-rate-limit"));
        let message = OverLimit::ConnectRate(500).to_string();
        assert!(message.contains("500/s") && message.contains("--account-connect-limit"));
    }
}
