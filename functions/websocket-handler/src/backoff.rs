//! Exponential backoff with jitter, for everything the function tries again:
//! a throttled post ([`crate::post_client`]) and a continuation that made
//! no progress ([`crate::fanout`]).

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// `first` × 2^(attempt − 1), at most `cap`, plus up to as much again at
/// random (so throttled callers do not all come back at once); zero for
/// attempt 0.
pub fn backoff(first: Duration, attempt: u32, cap: Duration) -> Duration {
    if attempt == 0 {
        return Duration::ZERO;
    }
    let base = first
        .saturating_mul(2u32.saturating_pow(attempt - 1))
        .min(cap);
    base + base.mul_f64(random_fraction())
}

/// A number in [0, 1) that differs from call to call (std's random hasher
/// keys; no generator crate for a jitter).
fn random_fraction() -> f64 {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (random % 1024) as f64 / 1024.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_attempt_waits_twice_as_long_up_to_the_cap() {
        let first = Duration::from_millis(50);
        let cap = Duration::from_millis(300);
        assert_eq!(backoff(first, 0, cap), Duration::ZERO);
        for (attempt, base) in [(1, 50), (2, 100), (3, 200), (4, 300), (40, 300)] {
            let base = Duration::from_millis(base);
            let wait = backoff(first, attempt, cap);
            assert!(wait >= base && wait < base * 2, "{attempt}: {wait:?}");
        }
    }

    #[test]
    fn callers_throttled_together_do_not_come_back_together() {
        // 32 waits of one attempt all equal: 1 chance in 1024^31 with jitter.
        let first = Duration::from_millis(50);
        let waits: std::collections::BTreeSet<Duration> = (0..32)
            .map(|_| backoff(first, 1, Duration::from_secs(1)))
            .collect();
        assert!(waits.len() > 1, "every caller waits {waits:?}");
    }
}
