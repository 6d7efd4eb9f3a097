//! How hard one invocation fans out: posts in flight, the post timeout,
//! posts per invocation, read from the function's environment.

use std::time::Duration;

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
        self.post_timeout.max(HANDOFF_RESERVE)
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
