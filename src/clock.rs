//! The one clock: wall time in milliseconds, read through [`Clock`] where tests must move it by
//! hand (queue leases and delays, with the monotonic time leases run on), and through [`now_ms`]
//! where the system's time is the only sensible one (commit times, timestamps of appends
//! without one).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Time for the queue: the wall clock (when a scheduled job or a nack's delay is due) and a
/// clock that never steps (how long a lease has run, how long a `lease` call waits). The queue
/// reads time only through this, so tests (and applications' tests) can move time by hand.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Now, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// Milliseconds from a fixed origin on a clock that is never stepped (an NTP step, a VM
    /// restored from a snapshot and a manual change move only `now_ms`). By default the wall
    /// clock, for a custom clock that moves both together.
    fn monotonic_ms(&self) -> i64 {
        self.now_ms()
    }
}

/// The system's clocks: `CLOCK_REALTIME` for wall time, `CLOCK_MONOTONIC` (through `Instant`)
/// for leases, so a stepped wall clock neither lengthens nor cuts a lease.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }
    fn monotonic_ms(&self) -> i64 {
        static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        i64::try_from(ORIGIN.get_or_init(std::time::Instant::now).elapsed().as_millis()).unwrap_or(i64::MAX)
    }
}

/// A clock that moves only when told to: `advance` moves both its wall and its monotonic time;
/// `step_wall` moves only the wall clock, as an NTP step does.
#[derive(Debug, Default)]
pub struct ManualClock {
    ms: AtomicI64,
    /// What `step_wall` added to the wall clock.
    wall_step: AtomicI64,
}

impl ManualClock {
    /// A clock showing `ms`.
    pub fn new(ms: i64) -> Self {
        ManualClock { ms: AtomicI64::new(ms), wall_step: AtomicI64::new(0) }
    }
    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.ms.fetch_add(i64::try_from(by.as_millis()).unwrap_or(i64::MAX), Ordering::SeqCst);
    }
    /// Steps the wall clock alone by `by_ms` (negative: backwards); monotonic time stays.
    pub fn step_wall(&self, by_ms: i64) {
        self.wall_step.fetch_add(by_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.ms.load(Ordering::SeqCst).saturating_add(self.wall_step.load(Ordering::SeqCst))
    }
    fn monotonic_ms(&self) -> i64 {
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
