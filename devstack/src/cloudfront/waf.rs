//! The WAF web ACL's rate-based rule: at most `limit` requests per client
//! IP in any evaluation window.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The rule as the program declares it, in plain values.
#[derive(Debug, Clone, PartialEq)]
pub struct RateRuleConfig {
    /// The rule's name, for log lines.
    pub name: String,
    /// Requests per client IP allowed in one evaluation window.
    pub limit: u64,
    pub window: Duration,
}

/// The WAF rate-based rule: at most `limit` requests per client IP in any
/// evaluation window.
pub struct RateRule {
    limit: usize,
    window: Duration,
    seen: HashMap<IpAddr, VecDeque<Instant>>,
    checks: u64,
}

impl RateRule {
    pub fn new(limit: u64, window: Duration) -> Self {
        RateRule {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            window,
            seen: HashMap::new(),
            checks: 0,
        }
    }

    /// A new limit and window; requests already counted still count.
    pub fn set_limit(&mut self, limit: u64, window: Duration) {
        self.limit = usize::try_from(limit).unwrap_or(usize::MAX);
        self.window = window;
    }

    /// Counts a request from `ip` at `now`; false when the rule blocks it.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let window = self.window;
        let fresh = |t: &Instant| now.saturating_duration_since(*t) < window;
        self.checks += 1;
        if self.checks.is_multiple_of(1024) {
            // Forget clients with nothing left in the window.
            self.seen.retain(|_, times| times.back().is_some_and(fresh));
        }
        let times = self.seen.entry(ip).or_default();
        while times.front().is_some_and(|t| !fresh(t)) {
            times.pop_front();
        }
        if times.len() >= self.limit {
            return false;
        }
        times.push_back(now);
        true
    }
}
