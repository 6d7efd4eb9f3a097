//! Lambda's concurrency as AWS would count it, estimated from the local pool.
//!
//! Lambda throttles an invocation when the executions running at once reach
//! the account's concurrency ([`ACCOUNT_CONCURRENCY`]). The local pool runs a
//! few processes and lets the rest wait, so counting its waiting invocations
//! would throttle where AWS does not: there, each would have had an execution
//! environment of its own and might long be done. An invocation arriving at
//! `t` and taking `d` runs on AWS over `[t, t + d]`, so the executions at
//! once at `now` are the arrivals of the last `d` (Little's law: rate ×
//! duration), plus those running here, which are executing by any count.
//! `d` is what executions take on a local process: a moving average of the
//! finished ones, or, when longer, twice what the youngest one still running
//! has run. An execution seen running at age `e`, nothing else known, lasts
//! `2e` in all at the median; so when every process is stuck in slow
//! executions the ones waiting are taken to be as slow (the youngest, so one
//! outlier does not widen the window for all). Until one has finished there
//! is no `d`, and every invocation admitted and not finished counts.
//!
//! What the machine itself can hold is a separate, named bound
//! ([`super::LOCAL_WAITING`]) that says it is local when it refuses.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Lambda's default concurrency per account and region: executions at once.
pub const ACCOUNT_CONCURRENCY: usize = 1000;

/// Weight of the newest execution in the moving average of durations.
const NEWEST_WEIGHT: f64 = 0.125;

/// The estimate's state: recent arrivals and the executions running here.
#[derive(Debug)]
pub struct Concurrency {
    limit: usize,
    /// Arrivals admitted (an id, increasing, and when), oldest first; those
    /// older than the window are dropped on the next check.
    arrivals: VecDeque<(u64, Instant)>,
    /// The moving average of finished executions, once one has finished.
    typical: Option<Duration>,
    /// Executions running on a process (their arrival's id, and when each
    /// started), in the order they started.
    running: VecDeque<(u64, Instant)>,
    next_id: u64,
}

/// An invocation [`Concurrency::arrived`]: what [`Concurrency::started`] takes.
#[derive(Debug)]
pub struct Arrival(u64);

/// An execution [`Concurrency::started`] and not yet finished.
#[derive(Debug)]
#[must_use = "an execution never finished counts as running for ever"]
pub struct Running(u64);

impl Concurrency {
    pub fn new(limit: usize) -> Self {
        Concurrency {
            limit,
            arrivals: VecDeque::new(),
            typical: None,
            running: VecDeque::new(),
            next_id: 0,
        }
    }

    /// Whether an invocation arriving at `now` fits, or the executions AWS
    /// would be running at once. `in_flight` is what the pool holds (running
    /// or waiting), the count used until a duration is known. An invocation
    /// that fits is counted once [`Concurrency::arrived`] says it came in.
    pub fn check(&mut self, now: Instant, in_flight: usize) -> Result<(), usize> {
        let at_once = self.at_once(now, in_flight);
        if at_once >= self.limit {
            return Err(at_once);
        }
        Ok(())
    }

    /// An invocation that [`Concurrency::check`] let in arrived at `now`.
    pub fn arrived(&mut self, now: Instant) -> Arrival {
        let id = self.next_id;
        self.next_id += 1;
        // Only while no duration is known does nothing else prune them.
        if self.arrivals.len() >= self.limit {
            self.arrivals.pop_front();
        }
        self.arrivals.push_back((id, now));
        Arrival(id)
    }

    /// The invocation that arrived as `arrival` started on a process at `now`.
    pub fn started(&mut self, arrival: Arrival, now: Instant) -> Running {
        self.running.push_back((arrival.0, now));
        Running(arrival.0)
    }

    /// An execution ended after `took`, however it ended (a timeout took the
    /// timeout, as on AWS).
    pub fn finished(&mut self, execution: Running, took: Duration) {
        if let Some(at) = self.running.iter().position(|(id, _)| *id == execution.0) {
            self.running.remove(at);
        }
        self.typical = Some(match self.typical {
            None => took,
            Some(typical) => typical.mul_f64(1.0 - NEWEST_WEIGHT) + took.mul_f64(NEWEST_WEIGHT),
        });
    }

    /// How long an execution takes, as far as known at `now`.
    fn window(&self, now: Instant) -> Option<Duration> {
        let youngest = self
            .running
            .back()
            .map(|(_, started)| now.saturating_duration_since(*started));
        match (self.typical, youngest) {
            (None, _) => None,
            (Some(typical), None) => Some(typical),
            (Some(typical), Some(youngest)) => Some(typical.max(youngest * 2)),
        }
    }

    /// The running executions and the arrivals kept that are not running.
    fn counted(&self) -> usize {
        let kept_and_running = self
            .running
            .iter()
            .filter(|(id, _)| {
                self.arrivals
                    .binary_search_by_key(id, |(arrival, _)| *arrival)
                    .is_ok()
            })
            .count();
        self.arrivals.len() - kept_and_running + self.running.len()
    }

    /// The executions AWS would be running at `now` (`in_flight` until a
    /// duration is known); arrivals older than the window are dropped.
    pub fn at_once(&mut self, now: Instant, in_flight: usize) -> usize {
        let Some(window) = self.window(now) else {
            return in_flight;
        };
        while self
            .arrivals
            .front()
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) >= window)
        {
            self.arrivals.pop_front();
        }
        self.counted()
    }

    /// [`Concurrency::check`], then [`Concurrency::arrived`] if it fits.
    #[cfg(test)]
    fn admit(&mut self, now: Instant, in_flight: usize) -> Result<Arrival, usize> {
        self.check(now, in_flight)?;
        Ok(self.arrived(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// An estimate that has seen one execution of `took`.
    fn measured(limit: usize, start: Instant, took: Duration) -> Concurrency {
        let mut estimate = Concurrency::new(limit);
        let arrival = estimate.arrived(start);
        let run = estimate.started(arrival, start);
        estimate.finished(run, took);
        estimate
    }

    /// Admits an arrival at `now`, or says how many run at once.
    fn fits(estimate: &mut Concurrency, now: Instant, in_flight: usize) -> Result<(), usize> {
        estimate.admit(now, in_flight).map(drop)
    }

    #[test]
    fn until_an_execution_has_finished_everything_in_flight_counts() {
        let mut estimate = Concurrency::new(3);
        let now = Instant::now();
        assert_eq!(fits(&mut estimate, now, 2), Ok(()));
        assert_eq!(fits(&mut estimate, now, 3), Err(3));
        assert_eq!(estimate.at_once(now, 3), 3);
    }

    #[test]
    fn arrivals_older_than_an_execution_no_longer_count() {
        let start = Instant::now();
        let mut estimate = measured(3, start, 10 * MS);
        // Past the measured execution's own arrival.
        let start = start + 10 * MS;
        // Three arrivals in the same 10 ms fill the account…
        for n in 0..3 {
            assert_eq!(fits(&mut estimate, start + n * MS, 1000), Ok(()));
        }
        assert_eq!(fits(&mut estimate, start + 5 * MS, 1000), Err(3));
        // …and once the first is 10 ms old, AWS would have finished it.
        assert_eq!(estimate.at_once(start + 10 * MS, 1000), 2);
        assert_eq!(fits(&mut estimate, start + 10 * MS, 1000), Ok(()));
        assert_eq!(fits(&mut estimate, start + 11 * MS, 1000), Ok(()));
        assert_eq!(fits(&mut estimate, start + 11 * MS, 1000), Err(3));
    }

    #[test]
    fn a_long_queue_of_quick_invocations_arriving_slowly_is_never_throttled() {
        // The case the pool's old count got wrong: 5,000 invocations of 2 ms,
        // one every 0.1 ms, keep AWS at 20 executions at once however many
        // wait here for a process.
        let start = Instant::now();
        let mut estimate = measured(1000, start, 2 * MS);
        for n in 0..5000 {
            let now = start + Duration::from_micros(100) * n;
            assert_eq!(fits(&mut estimate, now, 5000), Ok(()), "arrival {n}");
        }
        assert!(estimate.at_once(start + 500 * MS, 5000) <= 20);
    }

    #[test]
    fn an_execution_still_running_widens_the_window_and_counts() {
        let start = Instant::now();
        let mut estimate = measured(2, start, MS);
        let first = estimate.admit(start + 10 * MS, 1000).expect("room");
        let slow = estimate.started(first, start + 10 * MS);
        assert_eq!(fits(&mut estimate, start + 50 * MS, 1000), Ok(()));
        // A 1 ms typical execution alone would have forgotten the second
        // arrival; the one running for 90 ms says executions take 180 ms,
        // and it is running itself.
        assert_eq!(fits(&mut estimate, start + 100 * MS, 1000), Err(2));
        // Once it ends (its 90 ms weighs an eighth: 12 ms), both are past.
        estimate.finished(slow, 90 * MS);
        assert_eq!(estimate.at_once(start + 100 * MS, 1000), 0);
        assert_eq!(fits(&mut estimate, start + 100 * MS, 1000), Ok(()));
    }

    #[test]
    fn the_youngest_execution_running_sets_the_window_not_an_outlier() {
        let start = Instant::now();
        let mut estimate = measured(10, start, MS);
        let outlier = estimate.admit(start, 1000).expect("room");
        let _outlier = estimate.started(outlier, start);
        assert_eq!(fits(&mut estimate, start + 50 * MS, 1000), Ok(()));
        assert_eq!(fits(&mut estimate, start + 60 * MS, 1000), Ok(()));
        let recent = estimate.admit(start + 98 * MS, 1000).expect("room");
        let _recent = estimate.started(recent, start + 99 * MS);
        // At 100 ms, executions take 2 ms as far as the youngest says: the
        // two arrivals waiting are past, the two running count.
        assert_eq!(estimate.at_once(start + 100 * MS, 1000), 2);
    }

    #[test]
    fn invocations_waiting_behind_a_slow_execution_count_while_it_runs() {
        // Executions took 5 ms so far. Three arrive within 2 ms; the first
        // starts at 5 ms on the one process, the two others wait. At 20 ms it
        // has run 15 ms, so executions are taken to last 30 ms: the two
        // waiting would be running on AWS too.
        let measured_at = Instant::now();
        let mut estimate = measured(10, measured_at, 5 * MS);
        let start = measured_at + 50 * MS;
        let first = estimate.admit(start, 1000).expect("room");
        assert_eq!(fits(&mut estimate, start + MS, 1000), Ok(()));
        assert_eq!(fits(&mut estimate, start + 2 * MS, 1000), Ok(()));
        let _first = estimate.started(first, start + 5 * MS);
        assert_eq!(estimate.at_once(start + 20 * MS, 1000), 3);
    }

    #[test]
    fn without_a_duration_the_arrivals_kept_are_bounded_too() {
        let mut estimate = Concurrency::new(2);
        let now = Instant::now();
        for _ in 0..5 {
            assert_eq!(fits(&mut estimate, now, 0), Ok(()));
        }
        assert_eq!(estimate.arrivals.len(), 2);
    }

    #[test]
    fn the_typical_execution_moves_towards_the_newest() {
        let start = Instant::now();
        let mut estimate = measured(10, start, 8 * MS);
        let arrival = estimate.arrived(start);
        let run = estimate.started(arrival, start);
        estimate.finished(run, 16 * MS);
        assert_eq!(estimate.window(start), Some(9 * MS));
    }

    #[test]
    fn the_arrivals_kept_never_exceed_the_limit() {
        let start = Instant::now();
        let mut estimate = measured(4, start, Duration::from_secs(3600));
        assert_eq!(estimate.arrivals.len(), 1);
        for n in 1..4 {
            assert_eq!(fits(&mut estimate, start + n * MS, 0), Ok(()));
        }
        for n in 4..100 {
            assert_eq!(fits(&mut estimate, start + n * MS, 0), Err(4));
        }
        assert_eq!(estimate.arrivals.len(), 4);
    }
}
