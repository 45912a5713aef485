//! Measurements the broker's parts record for the admin endpoint to export:
//! a lock-free fixed-bucket latency histogram (Prometheus style: cumulative
//! `le` buckets, a count and a sum) and the store's numbers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the histogram buckets, in seconds: from 100 µs (a flush
/// on a fast SSD) to 2.5 s (a disk in trouble).
pub const LATENCY_BOUNDS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

/// Counts durations into [`LATENCY_BOUNDS`] buckets; recording is a few
/// relaxed atomic adds, so the store's writer thread can call it per flush.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Per-bucket counts (not cumulative); the last slot is `+Inf`.
    buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    sum_micros: AtomicU64,
}

/// A copy of a [`LatencyHistogram`] at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencySnapshot {
    /// `(upper bound in seconds, cumulative count)`, ascending; the
    /// `+Inf` bucket is `count`.
    pub buckets: Vec<(f64, u64)>,
    /// Observations.
    pub count: u64,
    /// Sum of the observations, seconds.
    pub sum_seconds: f64,
}

impl LatencyHistogram {
    /// Records one observation.
    pub fn record(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let slot = LATENCY_BOUNDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BOUNDS.len());
        if let Some(bucket) = self.buckets.get(slot) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The cumulative view Prometheus wants.
    pub fn snapshot(&self) -> LatencySnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(LATENCY_BOUNDS.len());
        for (bound, count) in LATENCY_BOUNDS.iter().zip(&self.buckets) {
            cumulative += count.load(Ordering::Relaxed);
            buckets.push((*bound, cumulative));
        }
        let overflow = self.buckets.last().map_or(0, |b| b.load(Ordering::Relaxed));
        LatencySnapshot {
            buckets,
            count: cumulative + overflow,
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// What the durable store reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreMetrics {
    /// Bytes of stored messages not yet acknowledged.
    pub live_bytes: u64,
    /// Bytes of their bodies held in memory (the rest is paged out).
    pub resident_bytes: u64,
    /// Stored messages whose body is paged out.
    pub paged_messages: u64,
    /// Bytes the store's files take on disk.
    pub disk_bytes: u64,
    /// Flush (fsync) latency.
    pub flush_latency: LatencySnapshot,
    /// Persistent messages written to disk since start.
    pub messages_written: u64,
    /// Persistent messages consumed and acknowledged before they were
    /// written, so never written (store-and-dispatch), since start.
    pub messages_elided: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_count_everything() {
        let h = LatencyHistogram::default();
        h.record(Duration::from_micros(50)); // first bucket
        h.record(Duration::from_micros(700)); // <= 1ms
        h.record(Duration::from_millis(3)); // <= 5ms
        h.record(Duration::from_secs(10)); // +Inf only
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets[0], (0.0001, 1));
        let le = |bound: f64| s.buckets.iter().find(|(b, _)| *b == bound).unwrap().1;
        assert_eq!(le(0.0005), 1);
        assert_eq!(le(0.001), 2);
        assert_eq!(le(0.005), 3);
        assert_eq!(le(2.5), 3);
        assert!((s.sum_seconds - 10.00375).abs() < 1e-9, "{}", s.sum_seconds);
    }
}
