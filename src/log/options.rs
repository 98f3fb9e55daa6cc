//! Options, durability modes and limits.

use crate::error::{LogError as Error, LogResult as Result};
use crate::format::{FRAME_HEADER_LEN, RECORD_BYTES_LIMIT, SEGMENT_HEADER_LEN};
use crate::storage::{RealStorage, Storage};
use std::sync::Arc;
use std::time::Duration;

/// When an acknowledged append is on stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `append` returns only after the record is on stable storage (`fdatasync`). Concurrent
    /// appenders share fsyncs (group commit). Loses nothing acknowledged on a power cut.
    Always,
    /// A background thread fsyncs at this interval. A power cut loses at most the records
    /// acknowledged during the last interval (plus the time one fsync takes). A process crash
    /// loses nothing.
    Interval(Duration),
    /// Never fsyncs on the append path (only at segment rolls, checkpoints and `sync()`). A
    /// process crash loses nothing; a power cut can lose everything since the last of those.
    Os,
}

/// How appends reach the active segment's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WritePath {
    /// Under `Os` and `Interval`: through a writable shared map of the preallocated active
    /// segment when the storage offers one and the file system can `fallocate`, so an append is
    /// a copy into the page cache, no system call (2.7× the appends per second of `Pwrite` for
    /// 100 B records here). Otherwise, and under `Always`, as `Pwrite`: there every append waits
    /// for an fdatasync anyway, and each fdatasync write-protects the mapped page that the next
    /// append then faults on (measured 3–8% slower than `pwrite`).
    Auto,
    /// One `pwrite` per append (or batch), ahead of which zeros are written as preallocation.
    Pwrite,
}

/// What `open` does about corruption found in the middle of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Fail with [`Error::Corruption`]; change nothing. (Torn tails are always truncated.)
    Strict,
    /// Truncate the log at the corrupt frame, moving every byte after it (and every later
    /// segment) into the `quarantine/` directory; report what moved. Never deletes data.
    Repair,
}

/// How a [`Log`](crate::Log) is opened. Every limit carries its unit in its name.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// When appends are durable.
    pub durability: Durability,
    /// A segment is rolled before it would grow past this many bytes (header included).
    pub segment_bytes_max: u64,
    /// Largest key + headers + payload of one record.
    pub record_bytes_max: u64,
    /// One sparse index entry per this many bytes of frames.
    pub index_interval_bytes: u64,
    /// In `Always` and `Interval` modes, a recovery checkpoint is written after at least this
    /// many bytes were synced since the last one; open scans at most about this much (plus any
    /// unsynced tail). Rolls always write a checkpoint.
    pub checkpoint_interval_bytes: u64,
    /// Space allocated ahead of the active segment's end, so that most appends write into
    /// allocated blocks and their fdatasync commits no file-size change (about 1.6× faster
    /// durable appends here). Through a map it is `fallocate`d by a background thread (asked
    /// when less than three quarters of it is left, so appends rarely wait for it); on the
    /// pwrite path zeros are written. Trimmed at rolls and clean closes. 0 allocates exactly what each append needs
    /// (one `fallocate` per append on the map path).
    pub preallocate_bytes: u64,
    /// Through a write map (`Os` and `Interval` logs), each time this many bytes were appended
    /// the background thread starts the disk write of the active segment's finished pages, with
    /// no wait (`sync_file_range`), so that the fdatasync of a roll finds little left to write:
    /// without it, the append that rolls waits for the whole segment to reach the disk (64 MiB
    /// at ≈ 1.2 GB/s: ≈ 50 ms here, seconds on a slow disk). Makes nothing durable earlier in
    /// the promise's sense (only fdatasync does). 0 leaves write-back to the kernel. The default,
    /// 1 MiB, leaves at most that much for a roll's fdatasync (≈ 1 ms here).
    pub write_back_interval_bytes: u64,
    /// How appends reach the file: [`WritePath::Auto`] (a writable map when possible) or
    /// [`WritePath::Pwrite`].
    pub write_path: WritePath,
    /// Most sealed segments kept mapped (with their indexes) at once.
    pub open_segments_max: usize,
    /// Most bytes of sealed segments kept mapped at once (address space, not memory: pages a
    /// sequential scan has passed leave the resident set behind it). At least one segment is
    /// mapped whatever this says.
    pub mapped_bytes_max: u64,
    /// Size of one read of a scan (pread), and of the scan buffer at recovery.
    pub read_buffer_bytes: usize,
    /// Appends are refused (`StorageFull`, nothing written, the log not poisoned) while the
    /// file system holding the log has less free space than this, so recovery, the consumer
    /// database and compaction always have room. Checked once per `RESERVE_CHECK_BYTES`
    /// appended and at every roll; 0 = off. Set it on `StoreOptions::log` for a whole store.
    pub disk_reserve_bytes: u64,
    /// What to do about corruption in the middle of the log.
    pub recovery: RecoveryMode,
    /// The log's disk budget, if any ([`Budget`](crate::log::Budget)): its segments hold at most
    /// `bytes_max` bytes (the active segment's preallocated zeros aside) and roll at a quarter
    /// of it. A store's topics take theirs from their [`TopicConfig`](crate::TopicConfig)
    /// instead, which keeps it with the topic; a store refuses one here.
    pub budget: Option<crate::log::budget::Budget>,
    /// Where the bytes go. Tests put [`MemStorage`](crate::storage::MemStorage) or
    /// [`FaultStorage`](crate::storage::FaultStorage) here.
    pub storage: Arc<dyn Storage>,
    /// Set by a store on its topics' logs: one wake-up for appends to any of them.
    pub(crate) append_signal: Option<Arc<crate::sync::AppendSignal>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Always,
            segment_bytes_max: 64 << 20,
            record_bytes_max: 8 << 20,
            index_interval_bytes: 4096,
            checkpoint_interval_bytes: 8 << 20,
            preallocate_bytes: 1 << 20,
            write_back_interval_bytes: 1 << 20,
            write_path: WritePath::Auto,
            open_segments_max: 32,
            mapped_bytes_max: 1 << 30,
            read_buffer_bytes: 256 << 10,
            disk_reserve_bytes: 0,
            recovery: RecoveryMode::Strict,
            budget: None,
            storage: Arc::new(RealStorage),
            append_signal: None,
        }
    }
}

/// Longest key a record may have: keys are what per-key lookups compare and hash, and what
/// compaction keeps one of per key in memory.
pub const KEY_BYTES_MAX: usize = 64 << 10;

/// Bytes appended between two checks of `disk_reserve_bytes` (one `statvfs` each).
pub const RESERVE_CHECK_BYTES: u64 = 1 << 20;

/// Largest `segment_bytes_max`: positions in index entries are 32-bit.
pub const SEGMENT_BYTES_LIMIT: u64 = u32::MAX as u64;

impl Options {
    /// Options with the given durability and defaults otherwise.
    pub fn with_durability(durability: Durability) -> Self {
        Options { durability, ..Options::default() }
    }

    /// Checks the options against each other and the format's limits.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::InvalidOptions { reason });
        if self.segment_bytes_max > SEGMENT_BYTES_LIMIT {
            return bad(format!("segment_bytes_max = {} is over {SEGMENT_BYTES_LIMIT}", self.segment_bytes_max));
        }
        if self.record_bytes_max == 0 || self.record_bytes_max > RECORD_BYTES_LIMIT {
            return bad(format!("record_bytes_max = {} must be 1..={RECORD_BYTES_LIMIT}", self.record_bytes_max));
        }
        let room = (SEGMENT_HEADER_LEN + FRAME_HEADER_LEN) as u64 + self.record_bytes_max;
        if self.segment_bytes_max < room {
            return bad(format!(
                "segment_bytes_max = {} cannot hold one record of record_bytes_max = {} (needs {room})",
                self.segment_bytes_max, self.record_bytes_max
            ));
        }
        if self.index_interval_bytes == 0 {
            return bad("index_interval_bytes must be at least 1".into());
        }
        if self.open_segments_max == 0 {
            return bad("open_segments_max must be at least 1".into());
        }
        if self.read_buffer_bytes < FRAME_HEADER_LEN {
            return bad(format!("read_buffer_bytes must be at least {FRAME_HEADER_LEN}"));
        }
        if let Durability::Interval(d) = self.durability
            && d.is_zero()
        {
            return bad("Durability::Interval needs a non-zero interval; use Always".into());
        }
        if let Some(b) = &self.budget {
            b.validate()?;
        }
        Ok(())
    }
}
