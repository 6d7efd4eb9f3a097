//! How long to wait before a reconnect, and whether a close calls for one:
//! the same rules as `clients/js` (docs/clients.md).

use std::time::Duration;

/// The wait before reconnect attempt `attempt` (0-based): full jitter,
/// `random × min(cap, base × 2^attempt)`, with `random` in [0, 1).
pub fn backoff_delay(attempt: u32, base: Duration, cap: Duration, random: f64) -> Duration {
    let ceiling = base.saturating_mul(1u32 << attempt.min(30)).min(cap);
    ceiling.mul_f64(random.clamp(0.0, 1.0))
}

/// Whether a close code calls for a reconnect, and what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseAdvice {
    pub reconnect: bool,
    pub why: &'static str,
}

/// What close code `code` means to a client: only 1000 (closed on purpose)
/// ends it.
pub fn close_advice(code: u16) -> CloseAdvice {
    let (reconnect, why) = match code {
        1000 => (
            false,
            "closed on purpose (the app or the @connections DELETE API)",
        ),
        1001 => (
            true,
            "going away: the 10-minute idle limit, the 2-hour maximum life, or a restart",
        ),
        1008 => (
            true,
            "policy: the server closed a connection that did not read",
        ),
        1009 => (
            true,
            "message too big: a frame over 32 KB or a message over 128 KB was refused",
        ),
        1011 => (true, "internal error on the server"),
        _ => (
            true,
            "closed abnormally: the network, the edge or a refused handshake",
        ),
    };
    CloseAdvice { reconnect, why }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_jitter_under_a_doubling_capped_ceiling() {
        let (base, cap) = (Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(backoff_delay(0, base, cap, 0.0), Duration::ZERO);
        assert_eq!(backoff_delay(3, base, cap, 0.5), Duration::from_millis(400));
        assert_eq!(
            backoff_delay(60, base, cap, 0.5),
            Duration::from_millis(500)
        );
        assert_eq!(
            backoff_delay(1, base, cap, 0.999),
            Duration::from_micros(199_800)
        );
    }

    #[test]
    fn only_a_deliberate_close_ends_the_client() {
        assert!(!close_advice(1000).reconnect);
        for code in [1001, 1005, 1006, 1008, 1009, 1011, 1012, 4000] {
            assert!(close_advice(code).reconnect, "{code}");
        }
    }
}
