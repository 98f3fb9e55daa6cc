//! Index files (FORMAT.md § Index files): offset and time entries, the index header.

use super::*;

// Index files (FORMAT.md § Index files)

/// Magic of an offset index file.
pub const OFFSET_INDEX_MAGIC: [u8; 8] = *b"EVLOGOIX";
/// Magic of a time index file.
pub const TIME_INDEX_MAGIC: [u8; 8] = *b"EVLOGTIX";
/// Magic of a key index file.
pub const KEY_INDEX_MAGIC: [u8; 8] = *b"EVLOGKIX";
/// Key index entry: the key's hash ([`key_hash`], u64)...
pub const KEY_ENTRY_HASH_AT: usize = 0;
/// ...the record's offset relative to the segment's base (u32)...
pub const KEY_ENTRY_REL_OFFSET_AT: usize = KEY_ENTRY_HASH_AT + 8;
/// ...and its frame's byte position in the (uncompressed) segment (u32).
pub const KEY_ENTRY_POSITION_AT: usize = KEY_ENTRY_REL_OFFSET_AT + 4;
/// Length of a key index entry.
pub const KEY_ENTRY_LEN: usize = KEY_ENTRY_POSITION_AT + 4;
/// Current index file version.
pub const INDEX_VERSION: u16 = 1;
/// Byte position of the `index_magic` field (FORMAT.md).
pub const INDEX_MAGIC_AT: usize = 0;
/// Byte position of the `index_version` field (FORMAT.md).
pub const INDEX_VERSION_AT: usize = INDEX_MAGIC_AT + 8;
/// Byte position of the `index_entry_len` field (FORMAT.md).
pub const INDEX_ENTRY_LEN_AT: usize = INDEX_VERSION_AT + 2;
/// Byte position of the `index_reserved` field (FORMAT.md).
pub const INDEX_RESERVED_AT: usize = INDEX_ENTRY_LEN_AT + 2;
/// Byte position of the `index_base_offset` field (FORMAT.md).
pub const INDEX_BASE_OFFSET_AT: usize = INDEX_RESERVED_AT + 4;
/// Byte position of the `index_covered_bytes` field (FORMAT.md).
pub const INDEX_COVERED_BYTES_AT: usize = INDEX_BASE_OFFSET_AT + 8;
/// Byte position of the `index_record_count` field (FORMAT.md).
pub const INDEX_RECORD_COUNT_AT: usize = INDEX_COVERED_BYTES_AT + 8;
/// Byte position of the `index_entry_count` field (FORMAT.md).
pub const INDEX_ENTRY_COUNT_AT: usize = INDEX_RECORD_COUNT_AT + 8;
/// Byte position of the `index_crc` field (FORMAT.md).
pub const INDEX_CRC_AT: usize = INDEX_ENTRY_COUNT_AT + 4;
/// Length in bytes of the index header (FORMAT.md).
pub const INDEX_HEADER_LEN: usize = INDEX_CRC_AT + 4;

/// Offset index entry: relative offset (u32) and byte position (u32) of a granule's first frame.
pub const OFFSET_ENTRY_REL_OFFSET_AT: usize = 0;
/// Byte position of the `offset_entry_position` field (FORMAT.md).
pub const OFFSET_ENTRY_POSITION_AT: usize = OFFSET_ENTRY_REL_OFFSET_AT + 4;
/// Length in bytes of the offset entry (FORMAT.md).
pub const OFFSET_ENTRY_LEN: usize = OFFSET_ENTRY_POSITION_AT + 4;

/// Time index entry: largest and smallest timestamp in the granule, then where it starts.
pub const TIME_ENTRY_MAX_TS_AT: usize = 0;
/// Byte position of the `time_entry_min_ts` field (FORMAT.md).
pub const TIME_ENTRY_MIN_TS_AT: usize = TIME_ENTRY_MAX_TS_AT + 8;
/// Byte position of the `time_entry_rel_offset` field (FORMAT.md).
pub const TIME_ENTRY_REL_OFFSET_AT: usize = TIME_ENTRY_MIN_TS_AT + 8;
/// Byte position of the `time_entry_position` field (FORMAT.md).
pub const TIME_ENTRY_POSITION_AT: usize = TIME_ENTRY_REL_OFFSET_AT + 4;
/// Length in bytes of the time entry (FORMAT.md).
pub const TIME_ENTRY_LEN: usize = TIME_ENTRY_POSITION_AT + 4;

// Index files

/// What an index file header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexHeader {
    /// Base offset of the segment.
    pub base_offset: u64,
    /// Segment bytes `[0, covered_bytes)` that the entries describe.
    pub covered_bytes: u64,
    /// Records in those bytes.
    pub record_count: u64,
    /// Number of entries.
    pub entry_count: u32,
}

/// Encodes a whole index file: header followed by `entries` (already encoded, fixed size each).
pub fn encode_index(magic: [u8; 8], entry_len: usize, h: &IndexHeader, entries: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(INDEX_HEADER_LEN + entries.len());
    out.extend_from_slice(&magic);
    out.extend_from_slice(&INDEX_VERSION.to_le_bytes());
    out.extend_from_slice(&checked_u16(entry_len).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&h.base_offset.to_le_bytes());
    out.extend_from_slice(&h.covered_bytes.to_le_bytes());
    out.extend_from_slice(&h.record_count.to_le_bytes());
    out.extend_from_slice(&h.entry_count.to_le_bytes());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(prefix(&out, INDEX_CRC_AT));
    hasher.update(entries);
    out.extend_from_slice(&hasher.finalize().to_le_bytes());
    out.extend_from_slice(entries);
    out
}

/// Decodes and fully validates an index file's header and checksum (over header and entries).
pub fn decode_index(magic: [u8; 8], entry_len: usize, b: &[u8]) -> Result<IndexHeader, HeaderError> {
    if b.len() < INDEX_HEADER_LEN {
        return Err(HeaderError::Short { len: b.len(), needed: INDEX_HEADER_LEN });
    }
    if b.get(INDEX_MAGIC_AT..INDEX_MAGIC_AT + 8) != Some(&magic[..]) {
        return Err(HeaderError::BadMagic);
    }
    let version = le_u16(b, INDEX_VERSION_AT);
    if version != INDEX_VERSION {
        return Err(HeaderError::UnsupportedVersion(version));
    }
    if le_u16(b, INDEX_ENTRY_LEN_AT) as usize != entry_len || le_u32(b, INDEX_RESERVED_AT) != 0 {
        return Err(HeaderError::BadField("entry length/reserved"));
    }
    let h = IndexHeader {
        base_offset: le_u64(b, INDEX_BASE_OFFSET_AT),
        covered_bytes: le_u64(b, INDEX_COVERED_BYTES_AT),
        record_count: le_u64(b, INDEX_RECORD_COUNT_AT),
        entry_count: le_u32(b, INDEX_ENTRY_COUNT_AT),
    };
    let entries_len = (h.entry_count as usize).checked_mul(entry_len).ok_or(HeaderError::BadField("entry count"))?;
    if b.len() - INDEX_HEADER_LEN != entries_len {
        return Err(HeaderError::BadField("entry count does not match file length"));
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(prefix(b, INDEX_CRC_AT));
    hasher.update(b.get(INDEX_HEADER_LEN..).unwrap_or_default());
    if hasher.finalize() != le_u32(b, INDEX_CRC_AT) {
        return Err(HeaderError::BadChecksum);
    }
    Ok(h)
}

/// Encodes one offset index entry.
pub fn encode_offset_entry(out: &mut Vec<u8>, rel_offset: u32, position: u32) {
    out.extend_from_slice(&rel_offset.to_le_bytes());
    out.extend_from_slice(&position.to_le_bytes());
}
/// Decodes offset index entry `i` of `entries` as (relative offset, position).
pub fn offset_entry(entries: &[u8], i: usize) -> (u32, u32) {
    let at = i * OFFSET_ENTRY_LEN;
    (le_u32(entries, at + OFFSET_ENTRY_REL_OFFSET_AT), le_u32(entries, at + OFFSET_ENTRY_POSITION_AT))
}

/// One granule of the time index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    /// Largest timestamp in the granule.
    pub max_ts: i64,
    /// Smallest timestamp in the granule.
    pub min_ts: i64,
    /// Offset of the granule's first record minus the segment's base.
    pub rel_offset: u32,
    /// Byte position of that record's frame.
    pub position: u32,
}
/// Encodes one time index entry.
pub fn encode_time_entry(out: &mut Vec<u8>, e: &TimeEntry) {
    out.extend_from_slice(&e.max_ts.to_le_bytes());
    out.extend_from_slice(&e.min_ts.to_le_bytes());
    out.extend_from_slice(&e.rel_offset.to_le_bytes());
    out.extend_from_slice(&e.position.to_le_bytes());
}
/// Decodes time index entry `i` of `entries`.
pub fn time_entry(entries: &[u8], i: usize) -> TimeEntry {
    let at = i * TIME_ENTRY_LEN;
    TimeEntry {
        max_ts: le_i64(entries, at + TIME_ENTRY_MAX_TS_AT),
        min_ts: le_i64(entries, at + TIME_ENTRY_MIN_TS_AT),
        rel_offset: le_u32(entries, at + TIME_ENTRY_REL_OFFSET_AT),
        position: le_u32(entries, at + TIME_ENTRY_POSITION_AT),
    }
}
