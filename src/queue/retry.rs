//! A retry policy: how long a job waits after a failed attempt (a `retry`, or a lease that ran
//! out) before it is delivered again: exponential backoff from `first_delay`, capped at
//! `delay_max`, with jitter so that jobs that failed together do not all come back together.

use std::time::Duration;

/// Backoff for failed attempts; see [`Queue::retry`](super::Queue::retry).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// The wait after the first failed attempt.
    pub first_delay: Duration,
    /// Each further failure multiplies the wait by this (at least 1).
    pub factor: f64,
    /// The longest wait.
    pub delay_max: Duration,
    /// The fraction of each wait that may be taken off at random (0: none, 1: "full jitter").
    pub jitter: f64,
}

impl RetryPolicy {
    /// Doubling waits from `first_delay` up to `delay_max`, 20% jitter.
    pub fn exponential(first_delay: Duration, delay_max: Duration) -> RetryPolicy {
        RetryPolicy { first_delay, factor: 2.0, delay_max, jitter: 0.2 }
    }

    /// The same policy with another jitter fraction (clamped to 0..=1).
    pub fn with_jitter(mut self, jitter: f64) -> RetryPolicy {
        self.jitter = if jitter.is_nan() { 0.0 } else { jitter.clamp(0.0, 1.0) };
        self
    }

    /// The wait after attempt number `deliveries` of the job at `offset` failed. The jitter is
    /// drawn from (offset, attempt), so jobs spread out while one job's wait is reproducible.
    pub fn delay(&self, deliveries: u32, offset: u64) -> Duration {
        let exponent = i32::try_from(deliveries.saturating_sub(1)).unwrap_or(i32::MAX);
        let base = self.first_delay.as_secs_f64() * self.factor.max(1.0).powi(exponent);
        let capped = base.min(self.delay_max.as_secs_f64()).max(0.0);
        let unit = (mix(offset ^ (u64::from(deliveries) << 40)) >> 11) as f64 / (1u64 << 53) as f64;
        Duration::try_from_secs_f64(capped * (1.0 - self.jitter.clamp(0.0, 1.0) * unit)).unwrap_or(self.delay_max)
    }
}

/// SplitMix64's finaliser: a well-spread 64-bit hash of `x`.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_jitter_only_shortens_them() {
        let p = RetryPolicy::exponential(Duration::from_secs(1), Duration::from_secs(5)).with_jitter(0.0);
        let waits: Vec<u64> = (1..=5).map(|n| p.delay(n, 7).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
        let j = p.with_jitter(0.5);
        for offset in 0..100 {
            let d = j.delay(3, offset);
            assert!(d <= Duration::from_secs(4) && d >= Duration::from_secs(2), "{d:?}");
        }
        let spread: std::collections::BTreeSet<u128> = (0..100).map(|o| j.delay(3, o).as_millis()).collect();
        assert!(spread.len() > 50, "jobs that failed together come back apart");
    }
}
