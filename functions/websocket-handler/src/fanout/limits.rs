//! How hard one invocation fans out: posts in flight, the post timeout,
//! posts per invocation, read from the function's environment; and when a
//! slice of it stops ([`Schedule`]), fitted to the invocation's time.

use std::time::Duration;

use tokio::time::Instant;

use crate::deadline::Deadline;

/// How hard one invocation fans out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Posts in flight at once.
    pub in_flight: usize,
    /// A post slower than this counts as failed. Also the time a slice
    /// keeps after its stop time for the posts already in flight to finish
    /// (see [`Limits::drain_reserve`]).
    pub post_timeout: Duration,
    /// Posts one invocation starts at most (`None`: as many as time allows).
    pub per_invocation: Option<usize>,
    /// Time kept after a slice's stop to hand the rest on.
    pub handoff_reserve: Duration,
}

/// When one invocation's slice of a broadcast stops starting posts, when its
/// hand-overs give up, and the limits fitted to that time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub stop_at: Instant,
    pub give_up: Instant,
    pub limits: Limits,
}

/// Posts in flight at once unless `FANOUT_IN_FLIGHT` says otherwise
/// (measured: docs/benchmarks.md, "Posts per second").
pub const DEFAULT_IN_FLIGHT: usize = 200;
/// Time kept free after a slice to hand the rest on: two `Invoke` calls of
/// [`crate::relay::ATTEMPT_TIMEOUT`] fit in it.
pub const HANDOFF_RESERVE: Duration = Duration::from_secs(2);

impl Default for Limits {
    fn default() -> Self {
        Limits {
            in_flight: DEFAULT_IN_FLIGHT,
            post_timeout: crate::broadcast::POST_TIMEOUT,
            per_invocation: None,
            handoff_reserve: HANDOFF_RESERVE,
        }
    }
}

/// A fan-out setting that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name} is {value:?}: it must be {expected}")]
pub struct BadSetting {
    pub name: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl Limits {
    /// What a slice's stop time must keep free before the invocation's
    /// deadline, besides the reply: the posts in flight at the stop finish
    /// within it, and the rest of the broadcast is handed on within it (the
    /// two run together).
    pub fn drain_reserve(&self) -> Duration {
        self.post_timeout.max(self.handoff_reserve)
    }

    /// These limits with the post timeout and the hand-over's reserve each
    /// at most two thirds of `available`, so a slice always keeps at least a
    /// third of its time for starting posts, whatever the function's timeout.
    pub fn fitted(self, available: Duration) -> Limits {
        let most = available.mul_f64(2.0 / 3.0);
        Limits {
            post_timeout: self.post_timeout.min(most),
            handoff_reserve: self.handoff_reserve.min(most),
            ..self
        }
    }

    /// The schedule of a slice that must have handed everything on `after`
    /// before `deadline` (the reserves that follow it: the reply, the response).
    pub fn schedule(self, deadline: Deadline, after: Duration) -> Schedule {
        let give_up = deadline.before(after);
        let available = give_up.saturating_duration_since(Instant::now());
        let limits = self.fitted(available);
        Schedule {
            stop_at: give_up
                .checked_sub(limits.drain_reserve())
                .unwrap_or(give_up),
            give_up,
            limits,
        }
    }

    /// Reads `FANOUT_IN_FLIGHT` (posts in flight, at least 1) and
    /// `FANOUT_PER_INVOCATION` (0: no cap) through `lookup`; unset or empty
    /// means the default.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, BadSetting> {
        let read = |name: &'static str, expected: &'static str, min: usize| match lookup(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
        {
            None => Ok(None),
            Some(value) => match value.parse::<usize>() {
                Ok(n) if n >= min => Ok(Some(n)),
                _ => Err(BadSetting {
                    name,
                    value,
                    expected,
                }),
            },
        };
        let mut limits = Limits::default();
        if let Some(n) = read("FANOUT_IN_FLIGHT", "a whole number of at least 1", 1)? {
            limits.in_flight = n;
        }
        limits.per_invocation =
            read("FANOUT_PER_INVOCATION", "a whole number (0: no cap)", 0)?.filter(|&n| n > 0);
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_invocation_keeps_the_full_reserves() {
        // The default timeout, 10 s, less the reply and response reserves.
        let limits = Limits::default().fitted(Duration::from_millis(8_750));
        assert_eq!(limits.post_timeout, crate::broadcast::POST_TIMEOUT);
        assert_eq!(limits.handoff_reserve, HANDOFF_RESERVE);
        assert_eq!(limits.drain_reserve(), Duration::from_secs(5));
    }

    #[test]
    fn a_short_invocation_still_has_a_third_of_its_time_to_post() {
        // Lambda's default timeout, 3 s, less the reply and response reserves.
        let available = Duration::from_millis(1_750);
        let limits = Limits::default().fitted(available);
        let most = available.mul_f64(2.0 / 3.0);
        assert_eq!(limits.post_timeout, most);
        assert_eq!(limits.handoff_reserve, most);
        assert!(available - limits.drain_reserve() >= available / 3 - Duration::from_millis(1));
    }

    #[tokio::test]
    async fn the_schedule_stops_before_it_gives_up_and_gives_up_before_the_deadline() {
        let deadline = Deadline::after(Duration::from_secs(6));
        let after = Duration::from_millis(1_250);
        let schedule = Limits::default().schedule(deadline, after);
        assert_eq!(schedule.give_up, deadline.before(after));
        let posting = schedule.stop_at - Instant::now();
        // 4.75 s available (where the 5 s post timeout left nothing): a
        // third of it at least for starting posts.
        assert!(posting > Duration::from_millis(1_500), "{posting:?}");
        assert_eq!(
            schedule.give_up - schedule.stop_at,
            schedule.limits.drain_reserve()
        );
        // Past the deadline: nothing to post, no panic.
        let past = Limits::default().schedule(Deadline::after(Duration::ZERO), after);
        assert!(past.stop_at <= past.give_up);
    }
}
