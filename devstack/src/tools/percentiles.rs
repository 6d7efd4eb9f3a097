//! Nearest-rank percentiles of timings, shared by the deployment checker and
//! the benchmarks.

use std::time::Duration;

/// Nearest-rank percentile of sorted samples: the smallest sample with at
/// least `p` percent of the samples at or below it.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() || !(0.0..=100.0).contains(&p) {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// p50/p95/p99 and the maximum of a set of durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentiles {
    pub samples: usize,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Percentiles {
    pub fn of(samples: &[Duration]) -> Option<Self> {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        Some(Percentiles {
            samples: sorted.len(),
            p50: percentile(&sorted, 50.0)?,
            p95: percentile(&sorted, 95.0)?,
            p99: percentile(&sorted, 99.0)?,
            max: *sorted.last()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&v| Duration::from_millis(v)).collect()
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let p = Percentiles::of(&samples).unwrap();
        assert_eq!(p.samples, 100);
        assert_eq!(p.p50, Duration::from_millis(50));
        assert_eq!(p.p95, Duration::from_millis(95));
        assert_eq!(p.p99, Duration::from_millis(99));
        assert_eq!(p.max, Duration::from_millis(100));

        let few = millis(&[30, 10, 20]);
        let p = Percentiles::of(&few).unwrap();
        assert_eq!(
            (p.p50, p.p95, p.p99),
            (
                Duration::from_millis(20),
                Duration::from_millis(30),
                Duration::from_millis(30)
            )
        );
        let one = Percentiles::of(&millis(&[7])).unwrap();
        assert_eq!(
            (one.p50, one.p99, one.max),
            (
                Duration::from_millis(7),
                Duration::from_millis(7),
                Duration::from_millis(7)
            )
        );
    }

    #[test]
    fn percentiles_of_nothing_are_none() {
        assert_eq!(Percentiles::of(&[]), None);
        assert_eq!(percentile(&millis(&[1, 2]), 101.0), None);
        assert_eq!(
            percentile(&millis(&[1, 2]), 0.0),
            Some(Duration::from_millis(1))
        );
        assert_eq!(percentile(&millis(&[1, 2]), f64::NAN), None);
    }
}
