//! The one clock: wall time in milliseconds, read through [`Clock`] where tests must move it by
//! hand (queue leases and delays), and through [`now_ms`] where the system's time is the only
//! sensible one (commit times, timestamps of appends without one).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds for leases and delays. The queue reads time only through this, so tests (and
/// applications' tests) can move time by hand.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Now, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system's wall clock. A clock stepped backwards lengthens leases and delays by the step.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock {
    ms: AtomicI64,
}

impl ManualClock {
    /// A clock showing `ms`.
    pub fn new(ms: i64) -> Self {
        ManualClock { ms: AtomicI64::new(ms) }
    }
    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.ms.fetch_add(i64::try_from(by.as_millis()).unwrap_or(i64::MAX), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.ms.load(Ordering::SeqCst)
    }
}

/// The system's time in milliseconds since the Unix epoch (0 before it, `i64::MAX` past 292
/// million years).
pub(crate) fn now_ms() -> i64 {
    // Read once per append that carries no timestamp: the vDSO's clock, in plain i64
    // arithmetic (no `SystemTime` subtraction, no u128 division).
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    if t.tv_sec < 0 {
        return 0;
    }
    t.tv_sec.saturating_mul(1000).saturating_add(t.tv_nsec / 1_000_000)
}

/// The system's time in nanoseconds since the Unix epoch: a suffix that makes names unique.
#[cfg_attr(not(feature = "store"), allow(dead_code))] // used by the store and above
pub(crate) fn now_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}
