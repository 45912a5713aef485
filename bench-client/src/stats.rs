//! What the clients measure and how it is sampled: atomic counters that the
//! sampler reads and resets once per interval (the original's `getAndSet(0)`),
//! a per-interval maximum latency, and HDR histograms of end-to-end and
//! send-to-receipt latency that clients feed in batches.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Largest latency a histogram tracks: one hour in nanoseconds. Larger values
/// are clamped (a message an hour late is a failed run either way).
const HIGHEST_NS: u64 = 3_600_000_000_000;

/// A histogram of nanosecond latencies with 3 significant digits.
#[allow(clippy::expect_used)]
pub fn new_histogram() -> Histogram<u64> {
    // Constant bounds that `new_with_bounds` accepts (1 ≤ low, high ≥ 2·low,
    // sigfig ≤ 5): no input can make this fail.
    Histogram::new_with_bounds(1, HIGHEST_NS, 3).expect("constant histogram bounds are valid")
}

/// Counters shared by all clients of one scenario.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages sent (for persistent sends: confirmed by a receipt).
    pub produced: AtomicU64,
    /// Messages received, summed over all consumers (topic fan-out counts each delivery).
    pub consumed: AtomicU64,
    /// Connection failures, ERROR frames, reconnects.
    pub errors: AtomicU64,
    /// Largest end-to-end latency seen in the current interval, ns.
    pub max_latency_ns: AtomicU64,
}

/// One interval's worth of counter values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IntervalCounts {
    /// Messages produced in the interval.
    pub produced: u64,
    /// Messages consumed in the interval.
    pub consumed: u64,
    /// Errors in the interval.
    pub errors: u64,
    /// Maximum end-to-end latency in the interval, ns.
    pub max_latency_ns: u64,
}

impl Counters {
    /// Reads every counter and sets it to zero.
    pub fn take(&self) -> IntervalCounts {
        IntervalCounts {
            produced: self.produced.swap(0, Ordering::Relaxed),
            consumed: self.consumed.swap(0, Ordering::Relaxed),
            errors: self.errors.swap(0, Ordering::Relaxed),
            max_latency_ns: self.max_latency_ns.swap(0, Ordering::Relaxed),
        }
    }

    /// Raises the interval's maximum latency to `ns` if larger.
    pub fn observe_max_latency(&self, ns: u64) {
        self.max_latency_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// Counts one error.
    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// A histogram that many clients record into and the sampler empties.
#[derive(Debug)]
pub struct SharedHistogram {
    inner: Mutex<Histogram<u64>>,
}

impl Default for SharedHistogram {
    fn default() -> Self {
        SharedHistogram {
            inner: Mutex::new(new_histogram()),
        }
    }
}

impl SharedHistogram {
    /// Records a batch under one lock acquisition.
    pub fn record_all(&self, values: &[u64]) {
        if values.is_empty() {
            return;
        }
        // A poisoned lock only means another client panicked mid-record; the
        // counts are still usable.
        let mut h = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for &v in values {
            h.saturating_record(v.clamp(1, HIGHEST_NS));
        }
    }

    /// Returns what was recorded since the last call and starts afresh.
    pub fn take(&self) -> Histogram<u64> {
        let mut h = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let out = h.clone();
        h.reset();
        out
    }
}

/// A client-local buffer of latencies, flushed into a [`SharedHistogram`] when
/// full or at the end of each read, so the lock is taken once per batch.
pub struct LatencyBatch {
    values: [u64; 256],
    len: usize,
}

impl Default for LatencyBatch {
    fn default() -> Self {
        LatencyBatch {
            values: [0; 256],
            len: 0,
        }
    }
}

impl LatencyBatch {
    /// Adds one value, flushing first if the buffer is full.
    pub fn push(&mut self, ns: u64, into: &SharedHistogram) {
        if self.len == self.values.len() {
            self.flush(into);
        }
        self.values[self.len] = ns;
        self.len += 1;
    }

    /// Moves the buffered values into the shared histogram.
    pub fn flush(&mut self, into: &SharedHistogram) {
        into.record_all(&self.values[..self.len]);
        self.len = 0;
    }
}

/// Percentiles of one histogram, in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Number of recorded values.
    pub count: u64,
    /// Smallest value.
    pub min: u64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest value.
    pub max: u64,
}

impl LatencySummary {
    /// Summarizes `h`; an empty histogram gives all zeros.
    pub fn of(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            min: h.min(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// Percentiles at which the report draws latency-by-percentile curves.
pub const CURVE_PERCENTILES: [f64; 14] = [
    0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0,
];

/// `[percentile, ns]` pairs for the report's percentile plot.
pub fn percentile_curve(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    if h.is_empty() {
        return Vec::new();
    }
    CURVE_PERCENTILES
        .iter()
        .map(|&p| (p, h.value_at_percentile(p)))
        .collect()
}

/// The per-interval series of one scenario plus its whole-run histograms.
pub struct SampleSeries {
    /// Wall-clock ms since the epoch at the end of each sample.
    pub timestamp: Vec<u64>,
    /// Messages produced per sample.
    pub producer_tp: Vec<u64>,
    /// Messages consumed per sample.
    pub consumer_tp: Vec<u64>,
    /// Maximum end-to-end latency per sample, ns.
    pub max_latency: Vec<u64>,
    /// Errors per sample.
    pub errors: Vec<u64>,
    /// Median end-to-end latency per sample, ns.
    pub e2e_p50: Vec<u64>,
    /// 99th percentile end-to-end latency per sample, ns.
    pub e2e_p99: Vec<u64>,
    /// Median send-to-receipt time per sample, ns.
    pub receipt_p50: Vec<u64>,
    /// Everything end-to-end recorded during the samples.
    pub e2e_total: Histogram<u64>,
    /// Everything send-to-receipt recorded during the samples.
    pub receipt_total: Histogram<u64>,
}

impl Default for SampleSeries {
    fn default() -> Self {
        SampleSeries {
            timestamp: Vec::new(),
            producer_tp: Vec::new(),
            consumer_tp: Vec::new(),
            max_latency: Vec::new(),
            errors: Vec::new(),
            e2e_p50: Vec::new(),
            e2e_p99: Vec::new(),
            receipt_p50: Vec::new(),
            e2e_total: new_histogram(),
            receipt_total: new_histogram(),
        }
    }
}

impl SampleSeries {
    /// Appends one interval.
    pub fn push(
        &mut self,
        timestamp_ms: u64,
        counts: IntervalCounts,
        e2e: &Histogram<u64>,
        receipt: &Histogram<u64>,
    ) {
        self.timestamp.push(timestamp_ms);
        self.producer_tp.push(counts.produced);
        self.consumer_tp.push(counts.consumed);
        self.max_latency.push(counts.max_latency_ns);
        self.errors.push(counts.errors);
        let e = LatencySummary::of(e2e);
        self.e2e_p50.push(e.p50);
        self.e2e_p99.push(e.p99);
        self.receipt_p50.push(LatencySummary::of(receipt).p50);
        // Both histograms have the same bounds, so adding cannot fail; a
        // failure would only lose this interval from the totals.
        let _ = self.e2e_total.add(e2e);
        let _ = self.receipt_total.add(receipt);
    }

    /// Number of samples so far.
    pub fn len(&self) -> usize {
        self.timestamp.len()
    }

    /// Whether no sample was taken.
    pub fn is_empty(&self) -> bool {
        self.timestamp.is_empty()
    }
}

/// Median of a series (the statistic the original's numbers are quoted in).
pub fn median(values: &[u64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid] as f64
    } else {
        (v[mid - 1] as f64 + v[mid] as f64) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_read_and_reset() {
        let c = Counters::default();
        c.produced.fetch_add(5, Ordering::Relaxed);
        c.consumed.fetch_add(7, Ordering::Relaxed);
        c.error();
        c.observe_max_latency(300);
        c.observe_max_latency(100);
        let first = c.take();
        assert_eq!(
            first,
            IntervalCounts {
                produced: 5,
                consumed: 7,
                errors: 1,
                max_latency_ns: 300
            }
        );
        assert_eq!(c.take(), IntervalCounts::default());
    }

    #[test]
    fn histograms_batch_and_sample() {
        let shared = SharedHistogram::default();
        let mut batch = LatencyBatch::default();
        for v in 1..=1000u64 {
            batch.push(v * 1000, &shared);
        }
        // 1000 values with a 256-slot buffer: 768 already flushed.
        assert_eq!(shared.take().len(), 768);
        batch.flush(&shared);
        let rest = shared.take();
        assert_eq!(rest.len(), 232);
        assert!(shared.take().is_empty());

        let mut series = SampleSeries::default();
        let mut h = new_histogram();
        for v in 1..=100u64 {
            h.record(v * 1_000_000).unwrap();
        }
        let counts = IntervalCounts {
            produced: 10,
            consumed: 9,
            errors: 0,
            max_latency_ns: 100_000_000,
        };
        series.push(1, counts, &h, &new_histogram());
        series.push(2, counts, &h, &new_histogram());
        assert_eq!(series.len(), 2);
        assert_eq!(series.e2e_total.len(), 200);
        let s = LatencySummary::of(&series.e2e_total);
        assert!((49_000_000..=51_000_000).contains(&s.p50), "{}", s.p50);
        assert!(s.p99 >= 98_000_000 && s.max >= 99_900_000);
        assert_eq!(series.receipt_p50, vec![0, 0]);
        let curve = percentile_curve(&series.e2e_total);
        assert_eq!(curve.len(), CURVE_PERCENTILES.len());
        assert!(curve.windows(2).all(|w| w[0].1 <= w[1].1));
    }

    #[test]
    fn median_of_samples() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[3, 1, 2]), 2.0);
        assert_eq!(median(&[4, 1, 2, 3]), 2.5);
    }
}
