//! A log's disk budget: the most bytes its segments may hold, and what an append that would go
//! past it does. The writer enforces it under its lock (`writer.rs`), counting the sealed
//! segments' sizes and the active segment's written bytes (not its preallocated zeros).

use crate::error::{LogError as Error, LogResult as Result};
use std::time::Duration;

/// Smallest budget a log accepts: four segments of 256 KiB.
pub const BUDGET_BYTES_MIN: u64 = 1 << 20;

/// A budgeted log's segments are at most this fraction of the budget (1/4), so dropping the
/// oldest one frees a useful share and the budget never has to hold a single giant segment.
pub const BUDGET_SEGMENTS_MIN: u64 = 4;

/// What an append that would take a log past its budget does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WhenFull {
    /// Fail at once with `TopicFull`; nothing is written.
    #[default]
    Error,
    /// Wait (up to `Budget::block_timeout`) until retention or another caller of
    /// `Log::remove_before` frees space, then append; `TopicFull` if none was freed in time.
    Block,
    /// Delete the oldest sealed segments until the append fits, even if consumers have not
    /// read them (they see the gap as `skipped`, as after retention).
    DropOldest,
}

impl WhenFull {
    /// Its name in the CLI and in `evlog config`'s JSON.
    pub fn name(self) -> &'static str {
        match self {
            WhenFull::Error => "error",
            WhenFull::Block => "block",
            WhenFull::DropOldest => "drop-oldest",
        }
    }

    /// Parses a name given by [`WhenFull::name`].
    pub fn from_name(name: &str) -> Option<WhenFull> {
        [WhenFull::Error, WhenFull::Block, WhenFull::DropOldest].into_iter().find(|w| w.name() == name)
    }
}

/// A log's disk budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Budget {
    /// Most bytes the log's segments may hold (at least [`BUDGET_BYTES_MIN`]).
    pub bytes_max: u64,
    /// What an append that would go past it does.
    pub when_full: WhenFull,
    /// Longest a `WhenFull::Block` append waits for space.
    pub block_timeout: Duration,
}

/// Default of [`Budget::block_timeout`].
pub const BLOCK_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

impl Budget {
    /// A budget of `bytes_max` with `when_full`, blocking for at most the default timeout.
    pub fn new(bytes_max: u64, when_full: WhenFull) -> Budget {
        Budget { bytes_max, when_full, block_timeout: BLOCK_TIMEOUT_DEFAULT }
    }

    /// Refuses a budget below the floor.
    pub fn validate(&self) -> Result<()> {
        if self.bytes_max < BUDGET_BYTES_MIN {
            return Err(Error::InvalidOptions {
                reason: format!(
                    "bytes_max = {} is below the smallest budget, {BUDGET_BYTES_MIN} bytes (four segments of {} bytes)",
                    self.bytes_max,
                    BUDGET_BYTES_MIN / BUDGET_SEGMENTS_MIN
                ),
            });
        }
        Ok(())
    }

    /// The size at which a log with this budget rolls, given its `segment_bytes_max`.
    pub fn segment_bytes(&self, segment_bytes_max: u64) -> u64 {
        segment_bytes_max.min(self.bytes_max / BUDGET_SEGMENTS_MIN)
    }
}
