//! A latency histogram small enough to keep per log and cheap enough to fill on every fsync:
//! fixed buckets of whole microseconds, four per power of two (each at most a quarter wider
//! than its lower bound), counted with one relaxed atomic add.
//!
//! Invariants:
//! - Bucket `i` counts durations in `[lower(i), lower(i + 1))` microseconds; the last bucket
//!   counts everything from its lower bound up (about 8.4 s), so no duration is ever dropped.
//! - A quantile is answered with the upper bound of the bucket that holds it: never below the
//!   true value, at most a quarter above it (a third for the buckets under 8 µs, which are 1 µs
//!   wide).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Buckets: 4 below 4 µs, then 4 per power of two up to 2^23 µs (≈ 8.4 s).
pub const LATENCY_BUCKETS: usize = 88;

/// Durations counted by bucket (see the module's invariants); what [`LogStats::fsync_latency`]
/// carries.
///
/// [`LogStats::fsync_latency`]: crate::log::LogStats::fsync_latency
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LatencyHistogram {
    counts: [u64; LATENCY_BUCKETS],
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram { counts: [0; LATENCY_BUCKETS] }
    }
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("count", &self.count())
            .field("p50", &self.quantile(0.5))
            .field("p99", &self.quantile(0.99))
            .finish()
    }
}

/// The bucket of a duration of `micros` microseconds.
fn bucket_of(micros: u64) -> usize {
    if micros < 4 {
        return micros as usize;
    }
    let exp = 63 - micros.leading_zeros() as usize; // >= 2
    let sub = ((micros >> (exp - 2)) & 3) as usize;
    (4 * (exp - 1) + sub).min(LATENCY_BUCKETS - 1)
}

/// The smallest duration, in microseconds, that bucket `i` counts.
fn lower_micros(i: usize) -> u64 {
    if i < 4 {
        return i as u64;
    }
    let (exp, sub) = (i / 4 + 1, (i % 4) as u64);
    (4 + sub) << (exp - 2)
}

impl LatencyHistogram {
    /// A histogram with these counts by bucket (as [`LatencyHistogram::counts`] gives them).
    pub fn from_counts(counts: [u64; LATENCY_BUCKETS]) -> Self {
        LatencyHistogram { counts }
    }

    /// The counts by bucket index.
    pub fn counts(&self) -> &[u64; LATENCY_BUCKETS] {
        &self.counts
    }

    /// How many durations were counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The durations bucket `i` counts: from, and to (exclusive; `None` for the last bucket).
    pub fn bucket_range(i: usize) -> (Duration, Option<Duration>) {
        let to = (i + 1 < LATENCY_BUCKETS).then(|| Duration::from_micros(lower_micros(i + 1)));
        (Duration::from_micros(lower_micros(i)), to)
    }

    /// The counts by bucket, with each bucket's range: `(from, to, count)`, `to` exclusive and
    /// `None` for the last bucket. Buckets that counted nothing are left out.
    pub fn buckets(&self) -> impl Iterator<Item = (Duration, Option<Duration>, u64)> + '_ {
        self.counts.iter().enumerate().filter(|&(_, &n)| n > 0).map(|(i, &n)| {
            let (from, to) = LatencyHistogram::bucket_range(i);
            (from, to, n)
        })
    }

    /// The `q` quantile (`0.0..=1.0`; p99 is `0.99`) as the upper bound of the bucket holding it:
    /// never below the true value, at most a quarter above it. `None` before the first duration.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        // The rank of the quantile, 1-based: the smallest n with n >= q × count.
        let rank = ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Duration::from_micros(lower_micros(i + 1)));
            }
        }
        Some(Duration::from_micros(lower_micros(LATENCY_BUCKETS)))
    }

    /// The durations counted here and not in `earlier` (a snapshot of the same histogram taken
    /// before): the histogram of an interval.
    pub fn since(&self, earlier: &LatencyHistogram) -> LatencyHistogram {
        let mut counts = self.counts;
        for (c, e) in counts.iter_mut().zip(earlier.counts.iter()) {
            *c = c.saturating_sub(*e);
        }
        LatencyHistogram { counts }
    }
}

/// The histogram as the append path fills it.
#[derive(Debug)]
pub(crate) struct AtomicHistogram {
    counts: [AtomicU64; LATENCY_BUCKETS],
}

impl AtomicHistogram {
    pub fn new() -> Self {
        AtomicHistogram { counts: std::array::from_fn(|_| AtomicU64::new(0)) }
    }

    /// Counts one duration of `nanos`.
    pub fn record(&self, nanos: u64) {
        if let Some(c) = self.counts.get(bucket_of(nanos / 1000)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> LatencyHistogram {
        let mut counts = [0; LATENCY_BUCKETS];
        for (out, c) in counts.iter_mut().zip(&self.counts) {
            *out = c.load(Ordering::Relaxed);
        }
        LatencyHistogram { counts }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_duration_falls_in_the_bucket_whose_range_holds_it() {
        for micros in (0..5000).chain([1 << 20, (1 << 23) - 1]) {
            let i = bucket_of(micros);
            assert!(lower_micros(i) <= micros && micros < lower_micros(i + 1), "{micros} µs in bucket {i}");
        }
        assert_eq!(bucket_of(u64::MAX / 1000), LATENCY_BUCKETS - 1, "the last bucket takes the longest");
    }

    #[test]
    fn a_bucket_is_at_most_a_quarter_wider_than_its_lower_bound_from_8_microseconds() {
        for i in 8..LATENCY_BUCKETS {
            let (lo, hi) = (lower_micros(i), lower_micros(i + 1));
            assert!(hi - lo <= lo / 4, "bucket {i}: {lo}..{hi}");
        }
    }

    #[test]
    fn quantiles_are_never_below_the_true_value_and_at_most_a_quarter_above() {
        let h = AtomicHistogram::new();
        // 1..=1000 µs, once each: the true p50 is 500 µs, p99 990 µs.
        for micros in 1..=1000u64 {
            h.record(micros * 1000);
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 1000);
        for (q, truth) in [(0.5, 500u64), (0.99, 990), (1.0, 1000)] {
            let got = s.quantile(q).expect("counted").as_micros() as u64;
            assert!(got >= truth && got <= truth + truth / 4 + 1, "q {q}: {got} µs for {truth}");
        }
        assert_eq!(LatencyHistogram::default().quantile(0.5), None);
        let later = {
            h.record(7_000_000);
            h.snapshot()
        };
        assert_eq!(later.since(&s).count(), 1, "an interval holds only what came after");
    }
}
