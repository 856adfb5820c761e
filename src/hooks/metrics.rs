//! Lock-free counters shared by shards and hook threads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in microseconds (the last bucket is everything above).
const BOUNDS_US: [u64; 14] = [
    500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000, 2_000_000, 5_000_000,
    10_000_000,
];

/// A fixed-bucket latency histogram (Prometheus style: cumulative counts per upper bound).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn record(&self, elapsed: Duration) {
        let us = elapsed.as_micros().min(u64::MAX as u128) as u64;
        let index = BOUNDS_US.iter().position(|&bound| us <= bound).unwrap_or(BOUNDS_US.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// `(upper bound in seconds, cumulative count)` per bucket, `+Inf` last as `f64::INFINITY`.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        let mut out = Vec::with_capacity(self.buckets.len());
        for (i, bucket) in self.buckets.iter().enumerate() {
            total += bucket.load(Ordering::Relaxed);
            let bound = BOUNDS_US.get(i).map(|&us| us as f64 / 1e6).unwrap_or(f64::INFINITY);
            out.push((bound, total));
        }
        out
    }

    /// An upper estimate of quantile `q` (0..=1): the bound of the bucket it falls in.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = ((count as f64) * q).ceil().max(1.0) as u64;
        let (bound, _) = self.cumulative().into_iter().find(|&(_, c)| c >= rank)?;
        Some(if bound.is_finite() { Duration::from_secs_f64(bound) } else { Duration::MAX })
    }

    pub fn sum(&self) -> Duration {
        Duration::from_micros(self.sum_us.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_buckets() {
        let histogram = Histogram::default();
        for _ in 0..99 {
            histogram.record(Duration::from_millis(3));
        }
        histogram.record(Duration::from_millis(300));
        assert_eq!(histogram.count(), 100);
        assert_eq!(histogram.quantile(0.5), Some(Duration::from_millis(5)));
        assert_eq!(histogram.quantile(1.0), Some(Duration::from_millis(500)));
        assert_eq!(histogram.cumulative().last().map(|&(_, c)| c), Some(100));
    }
}
