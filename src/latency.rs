//! `LatencyHistogram`: a fixed-bucket histogram of capture-to-send times that
//! the stream send path can update without a lock.
//!
//! Every client observes one value per frame it sends, so the update is two
//! relaxed atomic additions after a search of a dozen bucket bounds. Reading
//! (a `/metrics` scrape) sums the buckets into Prometheus' cumulative form.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the buckets in microseconds (Prometheus `le`, inclusive).
/// From 1 ms (a frame sent at once on loopback) to 5 s (a client so slow it is
/// watching the past).
pub const BUCKET_BOUNDS_US: [u64; 12] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000,
];

/// Counts per bucket plus the overflow (`+Inf`) bucket, and the sum.
#[derive(Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; BUCKET_BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

/// A histogram read at one moment, cumulative as Prometheus wants it.
#[derive(Clone, Debug, PartialEq)]
pub struct LatencySnapshot {
    /// `(upper bound in seconds, observations <= bound)`; the last bound is
    /// `f64::INFINITY` and its count is the total.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl LatencyHistogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let (i, us) = bucket(d);
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    /// Adds the observations a send pass collected.
    pub fn merge(&self, tally: &LatencyTally) {
        for (b, &n) in self.buckets.iter().zip(&tally.buckets) {
            if n > 0 {
                b.fetch_add(n, Relaxed);
            }
        }
        self.sum_us.fetch_add(tally.sum_us, Relaxed);
    }

    /// The cumulative buckets, count and sum.
    pub fn snapshot(&self) -> LatencySnapshot {
        let mut total = 0;
        let mut buckets = Vec::with_capacity(self.buckets.len());
        for (i, b) in self.buckets.iter().enumerate() {
            total += b.load(Relaxed);
            let le = BUCKET_BOUNDS_US
                .get(i)
                .map_or(f64::INFINITY, |&us| us as f64 / 1e6);
            buckets.push((le, total));
        }
        LatencySnapshot {
            buckets,
            count: total,
            sum_seconds: self.sum_us.load(Relaxed) as f64 / 1e6,
        }
    }
}

/// Observations collected without atomics by one send pass, merged into
/// the stream's histogram once at its end (send loops on several cores
/// would otherwise contend for the same buckets at every send).
#[derive(Default)]
pub struct LatencyTally {
    buckets: [u64; BUCKET_BOUNDS_US.len() + 1],
    sum_us: u64,
}

impl LatencyTally {
    pub fn observe(&mut self, d: Duration) {
        let (i, us) = bucket(d);
        self.buckets[i] += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }
}

/// The bucket of `d` and `d` in microseconds (capped so sums cannot overflow).
fn bucket(d: Duration) -> (usize, u64) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    let i = BUCKET_BOUNDS_US.partition_point(|&bound| bound < us);
    (i, us.min(u64::MAX / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_inclusive() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_micros(1_000)); // exactly on the 1 ms bound
        h.observe(Duration::from_micros(1_001));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets[0], (0.001, 1));
        assert_eq!(s.buckets[1], (0.0025, 2));
        assert_eq!(s.buckets[5], (0.05, 3));
        assert_eq!(s.buckets[11], (5.0, 3));
        assert_eq!(s.buckets[12], (f64::INFINITY, 4));
        assert!(
            (s.sum_seconds - 60.032001).abs() < 1e-9,
            "{}",
            s.sum_seconds
        );
    }

    #[test]
    fn a_merged_tally_counts_like_single_observations() {
        let single = LatencyHistogram::default();
        let merged = LatencyHistogram::default();
        let mut tally = LatencyTally::default();
        for us in [10, 1_000, 7_000, 7_000, 9_000_000] {
            single.observe(Duration::from_micros(us));
            tally.observe(Duration::from_micros(us));
        }
        merged.merge(&tally);
        assert_eq!(single.snapshot(), merged.snapshot());
    }
}
