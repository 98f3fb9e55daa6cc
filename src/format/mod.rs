//! The bytes on disk: constants and pure encode/decode. No I/O, never panics.
//!
//! `FORMAT.md` is the specification; every constant here is chained from the one before it the
//! way the byte tables there are laid out, and `tests::constants_match_format_md` checks the two
//! agree. Decoders treat their input as untrusted: every length is checked against what remains
//! before it is used, and a frame is returned only after its checksum matched.
//!
//! Invariants:
//! - A region of zero bytes never decodes as a frame, segment header, index or checkpoint (each
//!   starts with a non-zero magic, and a frame's CRC over zeros does not match a zero CRC field).
//! - A frame decodes only at the offset the caller expects (`expected_offset`), so a frame copied
//!   or written at the wrong place is rejected.
//! - `decode_frame` never returns a frame whose CRC-32 did not match.

// Lengths and positions read from disk are never narrowed with `as`: `try_from` or a checked
// helper, so an impossible value is an error, not a silently wrapped number.
#![deny(clippy::cast_possible_truncation)]

use std::ops::Range;

mod checkpoint;
pub mod compressed;
mod frame;
mod header;
mod index;
pub mod run;
pub mod state;
pub mod topic_config;

pub use checkpoint::*;
pub use frame::*;
pub use header::*;
pub use index::*;

// ---------------------------------------------------------------------------------------------
// Little-endian helpers. Callers have checked lengths; these still never panic on short input.

/// The first `n` bytes of `b` (all of `b` when it is shorter; callers have checked its length).
fn prefix(b: &[u8], n: usize) -> &[u8] {
    b.get(..n).unwrap_or(b)
}

/// A length the caller has checked against the format's limits, as a 32-bit field. Never
/// truncates silently: an impossible length becomes `u32::MAX`, which no frame can hold, so the
/// frame fails to decode rather than decoding as something else.
pub(crate) fn checked_u32(n: usize) -> u32 {
    debug_assert!(u32::try_from(n).is_ok(), "{n} does not fit a 32-bit length field");
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// As [`checked_u32`], from a 64-bit position or count the caller has bounded.
pub(crate) fn checked_u32_from_u64(n: u64) -> u32 {
    debug_assert!(u32::try_from(n).is_ok(), "{n} does not fit a 32-bit field");
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// As [`checked_u32`], for a 16-bit field.
fn checked_u16(n: usize) -> u16 {
    debug_assert!(u16::try_from(n).is_ok(), "{n} does not fit a 16-bit length field");
    u16::try_from(n).unwrap_or(u16::MAX)
}

#[inline]
fn le_u16(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    if let Some(s) = b.get(at..at + 2) {
        a.copy_from_slice(s);
    }
    u16::from_le_bytes(a)
}
#[inline]
fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}
#[inline]
pub(crate) fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}
#[inline]
pub(crate) fn le_i64(b: &[u8], at: usize) -> i64 {
    le_u64(b, at) as i64
}

/// Segment file name for a base offset.
pub fn segment_file_name(base_offset: u64) -> String {
    format!("{base_offset:0width$}{SEGMENT_SUFFIX}", width = FILE_NAME_DIGITS)
}
/// Offset index file name for a base offset.
pub fn offset_index_file_name(base_offset: u64) -> String {
    format!("{base_offset:0width$}{OFFSET_INDEX_SUFFIX}", width = FILE_NAME_DIGITS)
}
/// Decodes key index entry `i` of `entries` as (key hash, relative offset, position).
pub fn key_entry(entries: &[u8], i: usize) -> (u64, u32, u32) {
    let at = i * KEY_ENTRY_LEN;
    (
        le_u64(entries, at + KEY_ENTRY_HASH_AT),
        le_u32(entries, at + KEY_ENTRY_REL_OFFSET_AT),
        le_u32(entries, at + KEY_ENTRY_POSITION_AT),
    )
}

/// Encodes one key index entry.
pub fn encode_key_entry(out: &mut Vec<u8>, hash: u64, rel_offset: u32, position: u32) {
    out.extend_from_slice(&hash.to_le_bytes());
    out.extend_from_slice(&rel_offset.to_le_bytes());
    out.extend_from_slice(&position.to_le_bytes());
}

/// Key index file name for a base offset.
pub fn key_index_file_name(base_offset: u64) -> String {
    format!("{base_offset:0width$}{KEY_INDEX_SUFFIX}", width = FILE_NAME_DIGITS)
}
/// The 64-bit FNV-1a hash of a key, what key index entries are sorted by (a lookup reads each
/// candidate record and compares its key: equal hashes of different keys cost a read, never a
/// wrong answer).
pub fn key_hash(key: &[u8]) -> u64 {
    key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}
/// Time index file name for a base offset.
pub fn time_index_file_name(base_offset: u64) -> String {
    format!("{base_offset:0width$}{TIME_INDEX_SUFFIX}", width = FILE_NAME_DIGITS)
}
/// Parses `NNNN…NNNN<suffix>` into the base offset; `None` for any other name.
pub fn parse_file_name(name: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != FILE_NAME_DIGITS || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests;

/// Reserved header names (FORMAT.md § Reserved header names).
pub mod reserved_headers {
    /// Producer id of an idempotent producer's record.
    pub const PRODUCER_ID: &str = "evlog.producer";
    /// Sequence number (u64 LE) of an idempotent producer's record.
    pub const SEQUENCE: &str = "evlog.seq";
    /// Why a dead letter was dead-lettered.
    pub const DEAD_REASON: &str = "evlog.dead.reason";
    /// A dead letter's source topic.
    pub const DEAD_TOPIC: &str = "evlog.dead.topic";
    /// A dead letter's source offset (decimal).
    pub const DEAD_OFFSET: &str = "evlog.dead.offset";
    /// A dead letter's group.
    pub const DEAD_GROUP: &str = "evlog.dead.group";
    /// A dead letter's deliveries or attempts (decimal).
    pub const DEAD_DELIVERIES: &str = "evlog.dead.deliveries";
    /// Marks a tombstone: a keyed record with an empty payload that deletes its key when the
    /// topic is compacted (value empty).
    pub const TOMBSTONE: &str = "evlog.tombstone";
    /// When a scheduled job is to be delivered, ms since the epoch (i64 LE).
    pub const DELIVER_AT: &str = "evlog.deliver_at";
    /// A typed record's schema version (u32 LE); absent means version 1.
    pub const SCHEMA: &str = "evlog.schema";
    /// The atomic append (its journal offset, u64 LE) a record belongs to; on a journal record
    /// with an empty payload, the transaction it marks done.
    pub const TXN: &str = "evlog.txn";
    /// All of them, in FORMAT.md's order.
    pub const ALL: [&str; 11] = [
        PRODUCER_ID,
        SEQUENCE,
        DEAD_REASON,
        DEAD_TOPIC,
        DEAD_OFFSET,
        DEAD_GROUP,
        DEAD_DELIVERIES,
        TOMBSTONE,
        DELIVER_AT,
        SCHEMA,
        TXN,
    ];
}
