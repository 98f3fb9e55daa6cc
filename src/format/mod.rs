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

pub mod compressed;
pub mod run;
pub mod state;
pub mod topic_config;

// ---------------------------------------------------------------------------------------------
// Segment header (FORMAT.md § Segment header)

/// Magic at the start of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"EVLOGSEG";
/// Current segment format version.
pub const SEGMENT_VERSION: u16 = 1;
/// Byte position of the `segment_magic` field (FORMAT.md).
pub const SEGMENT_MAGIC_AT: usize = 0;
/// Byte position of the `segment_version` field (FORMAT.md).
pub const SEGMENT_VERSION_AT: usize = SEGMENT_MAGIC_AT + 8;
/// Byte position of the `segment_flags` field (FORMAT.md).
pub const SEGMENT_FLAGS_AT: usize = SEGMENT_VERSION_AT + 2;
/// Byte position of the `segment_reserved` field (FORMAT.md).
pub const SEGMENT_RESERVED_AT: usize = SEGMENT_FLAGS_AT + 2;
/// Byte position of the `segment_base_offset` field (FORMAT.md).
pub const SEGMENT_BASE_OFFSET_AT: usize = SEGMENT_RESERVED_AT + 4;
/// Byte position of the `segment_reserved_tail` field (FORMAT.md).
pub const SEGMENT_RESERVED_TAIL_AT: usize = SEGMENT_BASE_OFFSET_AT + 8;
/// Byte position of the `segment_crc` field (FORMAT.md).
pub const SEGMENT_CRC_AT: usize = SEGMENT_RESERVED_TAIL_AT + 4;
/// Length in bytes of the segment header (FORMAT.md).
pub const SEGMENT_HEADER_LEN: usize = SEGMENT_CRC_AT + 4;

// ---------------------------------------------------------------------------------------------
// Frame (FORMAT.md § Frame)

/// Magic byte of every frame.
pub const FRAME_MAGIC: u8 = 0xE7;
/// Current frame version.
pub const FRAME_VERSION: u8 = 1;
/// Byte position of the `frame_crc` field (FORMAT.md).
pub const FRAME_CRC_AT: usize = 0;
/// Byte position of the `frame_magic` field (FORMAT.md).
pub const FRAME_MAGIC_AT: usize = FRAME_CRC_AT + 4;
/// Byte position of the `frame_version` field (FORMAT.md).
pub const FRAME_VERSION_AT: usize = FRAME_MAGIC_AT + 1;
/// Byte position of the `frame_flags` field (FORMAT.md).
pub const FRAME_FLAGS_AT: usize = FRAME_VERSION_AT + 1;
/// Byte position of the `frame_offset` field (FORMAT.md).
pub const FRAME_OFFSET_AT: usize = FRAME_FLAGS_AT + 2;
/// Byte position of the `frame_durable_offset` field (FORMAT.md).
pub const FRAME_DURABLE_OFFSET_AT: usize = FRAME_OFFSET_AT + 8;
/// Byte position of the `frame_timestamp` field (FORMAT.md).
pub const FRAME_TIMESTAMP_AT: usize = FRAME_DURABLE_OFFSET_AT + 8;
/// Byte position of the `frame_key_len` field (FORMAT.md).
pub const FRAME_KEY_LEN_AT: usize = FRAME_TIMESTAMP_AT + 8;
/// Byte position of the `frame_headers_len` field (FORMAT.md).
pub const FRAME_HEADERS_LEN_AT: usize = FRAME_KEY_LEN_AT + 4;
/// Byte position of the `frame_payload_len` field (FORMAT.md).
pub const FRAME_PAYLOAD_LEN_AT: usize = FRAME_HEADERS_LEN_AT + 4;
/// Length in bytes of the frame header (FORMAT.md).
pub const FRAME_HEADER_LEN: usize = FRAME_PAYLOAD_LEN_AT + 4;
/// Where the CRC's coverage starts: everything after the CRC field.
pub const FRAME_CRC_FROM: usize = FRAME_MAGIC_AT;

/// Flag: the record has a key (distinguishes "no key" from an empty key).
pub const FLAG_HAS_KEY: u16 = 1 << 0;
/// Flag: more records of the same atomic batch follow this one.
pub const FLAG_BATCH_CONTINUES: u16 = 1 << 1;
/// Flags a version-1 reader understands; any other bit set is rejected.
pub const FLAGS_KNOWN: u16 = FLAG_HAS_KEY | FLAG_BATCH_CONTINUES;

/// Largest key + headers + payload a frame may hold, whatever the options say (1 GiB).
pub const RECORD_BYTES_LIMIT: u64 = 1 << 30;
/// Most headers one record may carry.
pub const HEADERS_COUNT_MAX: usize = 64;
/// Longest header name in bytes.
pub const HEADER_NAME_BYTES_MAX: usize = 255;
/// Bytes of a header block's count field.
pub const HEADER_COUNT_LEN: usize = 2;
/// Bytes before each header's name: name length (u16) and value length (u32).
pub const HEADER_ENTRY_PREFIX_LEN: usize = 2 + 4;

// ---------------------------------------------------------------------------------------------
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

// ---------------------------------------------------------------------------------------------
// Checkpoint (FORMAT.md § Checkpoint)

/// Magic of the checkpoint file.
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"EVLOGCKP";
/// Current checkpoint version.
pub const CHECKPOINT_VERSION: u16 = 1;
/// Byte position of the `checkpoint_magic` field (FORMAT.md).
pub const CHECKPOINT_MAGIC_AT: usize = 0;
/// Byte position of the `checkpoint_version` field (FORMAT.md).
pub const CHECKPOINT_VERSION_AT: usize = CHECKPOINT_MAGIC_AT + 8;
/// Byte position of the `checkpoint_flags` field (FORMAT.md).
pub const CHECKPOINT_FLAGS_AT: usize = CHECKPOINT_VERSION_AT + 2;
/// Byte position of the `checkpoint_reserved` field (FORMAT.md).
pub const CHECKPOINT_RESERVED_AT: usize = CHECKPOINT_FLAGS_AT + 2;
/// Byte position of the `checkpoint_segment_base` field (FORMAT.md).
pub const CHECKPOINT_SEGMENT_BASE_AT: usize = CHECKPOINT_RESERVED_AT + 4;
/// Byte position of the `checkpoint_position` field (FORMAT.md).
pub const CHECKPOINT_POSITION_AT: usize = CHECKPOINT_SEGMENT_BASE_AT + 8;
/// Byte position of the `checkpoint_next_offset` field (FORMAT.md).
pub const CHECKPOINT_NEXT_OFFSET_AT: usize = CHECKPOINT_POSITION_AT + 8;
/// Byte position of the `checkpoint_crc` field (FORMAT.md).
pub const CHECKPOINT_CRC_AT: usize = CHECKPOINT_NEXT_OFFSET_AT + 8;
/// Length in bytes of the checkpoint (FORMAT.md).
pub const CHECKPOINT_LEN: usize = CHECKPOINT_CRC_AT + 4;

// Relationships the code relies on, checked at compile time.
const _: () = assert!(SEGMENT_HEADER_LEN == 32);
const _: () = assert!(FRAME_HEADER_LEN == 44);
const _: () = assert!(INDEX_HEADER_LEN == 48);
const _: () = assert!(CHECKPOINT_LEN == 44);
const _: () = assert!(RECORD_BYTES_LIMIT + (FRAME_HEADER_LEN as u64) < u32::MAX as u64);

/// File name suffixes.
pub const SEGMENT_SUFFIX: &str = ".log";
/// Suffix of offset index files.
pub const OFFSET_INDEX_SUFFIX: &str = ".index";
/// Suffix of time index files.
pub const TIME_INDEX_SUFFIX: &str = ".timeindex";
/// Suffix of key index files.
pub const KEY_INDEX_SUFFIX: &str = ".keyindex";
/// Name of the checkpoint file.
pub const CHECKPOINT_FILE: &str = "checkpoint";
/// Name of the writer lock file.
pub const LOCK_FILE: &str = "LOCK";
/// Directory where repair moves bad bytes.
pub const QUARANTINE_DIR: &str = "quarantine";
/// Digits of the zero-padded base offset in file names.
pub const FILE_NAME_DIGITS: usize = 20;

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

// ---------------------------------------------------------------------------------------------
// Segment header

/// Encodes the header of a segment whose first record has offset `base_offset`.
pub fn encode_segment_header(base_offset: u64) -> [u8; SEGMENT_HEADER_LEN] {
    encode_segment_header_with_flags(base_offset, 0)
}

/// Segment flag: the segment was rewritten by compaction and its offsets may have gaps (every
/// frame's offset is still above the one before it and below the next segment's base).
pub const SEGMENT_FLAG_COMPACTED: u16 = 1;
/// Segment flag: after the header the segment is compressed blocks, a block table and a trailer
/// (FORMAT.md § Compressed segments); positions in its index are in the uncompressed bytes.
pub const SEGMENT_FLAG_COMPRESSED: u16 = 2;
/// Segment flags this build knows.
pub const SEGMENT_FLAGS_KNOWN: u16 = SEGMENT_FLAG_COMPACTED | SEGMENT_FLAG_COMPRESSED;

/// Encodes a segment header with `flags` (`SEGMENT_FLAG_*`).
pub fn encode_segment_header_with_flags(base_offset: u64, flags: u16) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[SEGMENT_MAGIC_AT..SEGMENT_MAGIC_AT + 8].copy_from_slice(&SEGMENT_MAGIC);
    h[SEGMENT_VERSION_AT..SEGMENT_VERSION_AT + 2].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    h[SEGMENT_FLAGS_AT..SEGMENT_FLAGS_AT + 2].copy_from_slice(&flags.to_le_bytes());
    h[SEGMENT_BASE_OFFSET_AT..SEGMENT_BASE_OFFSET_AT + 8].copy_from_slice(&base_offset.to_le_bytes());
    let crc = crc32fast::hash(&h[..SEGMENT_CRC_AT]);
    h[SEGMENT_CRC_AT..SEGMENT_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Why a header (segment, index or checkpoint) was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer bytes than a header.
    Short {
        /// Bytes available.
        len: usize,
        /// Bytes a header takes.
        needed: usize,
    },
    /// Magic did not match.
    BadMagic,
    /// A version this build cannot read.
    UnsupportedVersion(u16),
    /// Checksum mismatch.
    BadChecksum,
    /// A field holds a value the spec forbids.
    BadField(&'static str),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Short { len, needed } => write!(f, "{len} bytes, need {needed}"),
            HeaderError::BadMagic => f.write_str("bad magic"),
            HeaderError::UnsupportedVersion(v) => write!(f, "unsupported version {v}"),
            HeaderError::BadChecksum => f.write_str("checksum mismatch"),
            HeaderError::BadField(what) => write!(f, "invalid field {what}"),
        }
    }
}

/// Decodes a segment header and returns its base offset.
pub fn decode_segment_header(b: &[u8]) -> Result<u64, HeaderError> {
    decode_segment_header_with_flags(b).map(|(base, _)| base)
}

/// Decodes a segment header and returns its base offset and flags.
pub fn decode_segment_header_with_flags(b: &[u8]) -> Result<(u64, u16), HeaderError> {
    let Some(b) = b.first_chunk::<SEGMENT_HEADER_LEN>() else {
        return Err(HeaderError::Short { len: b.len(), needed: SEGMENT_HEADER_LEN });
    };
    if b.get(SEGMENT_MAGIC_AT..SEGMENT_MAGIC_AT + 8) != Some(&SEGMENT_MAGIC[..]) {
        return Err(HeaderError::BadMagic);
    }
    if crc32fast::hash(prefix(b, SEGMENT_CRC_AT)) != le_u32(b, SEGMENT_CRC_AT) {
        return Err(HeaderError::BadChecksum);
    }
    let version = le_u16(b, SEGMENT_VERSION_AT);
    if version != SEGMENT_VERSION {
        return Err(HeaderError::UnsupportedVersion(version));
    }
    let flags = le_u16(b, SEGMENT_FLAGS_AT);
    if flags & !SEGMENT_FLAGS_KNOWN != 0
        || le_u32(b, SEGMENT_RESERVED_AT) != 0
        || le_u32(b, SEGMENT_RESERVED_TAIL_AT) != 0
    {
        return Err(HeaderError::BadField("flags/reserved"));
    }
    Ok((le_u64(b, SEGMENT_BASE_OFFSET_AT), flags))
}

/// Clears a valid frame's `BATCH_CONTINUES` flag and recomputes its CRC (compaction keeps
/// records one by one: a sealed segment's batches are whole, so none needs the flag again).
/// Bytes too short to hold a frame header are left as they are.
pub fn clear_batch_flag(frame: &mut [u8]) {
    let Some(&[lo, hi]) = frame.get(FRAME_FLAGS_AT..FRAME_FLAGS_AT + 2) else { return };
    let cleared = u16::from_le_bytes([lo, hi]) & !FLAG_BATCH_CONTINUES;
    if let Some(f) = frame.get_mut(FRAME_FLAGS_AT..FRAME_FLAGS_AT + 2) {
        f.copy_from_slice(&cleared.to_le_bytes());
    }
    let crc = frame_crc(frame.get(FRAME_CRC_FROM..).unwrap_or_default());
    if let Some(c) = frame.get_mut(FRAME_CRC_AT..FRAME_CRC_AT + 4) {
        c.copy_from_slice(&crc.to_le_bytes());
    }
}

// ---------------------------------------------------------------------------------------------
// Frames

/// A record to be encoded: what an application hands to `append_record`.
#[derive(Debug, Clone, Copy)]
pub struct FrameFields<'a> {
    /// The record's offset.
    pub offset: u64,
    /// Every offset below this was on stable storage before this frame was written.
    pub durable_offset: u64,
    /// Event time, milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Optional key.
    pub key: Option<&'a [u8]>,
    /// Headers, in order.
    pub headers: &'a [(&'a str, &'a [u8])],
    /// The payload.
    pub payload: &'a [u8],
    /// More frames of the same atomic batch follow.
    pub batch_continues: bool,
}

/// Bytes the encoded headers block takes, or why the headers break a limit.
#[inline]
pub fn headers_block_len(headers: &[(&str, &[u8])]) -> Result<usize, String> {
    // Most records have no headers: that answer inline, the walk out of line.
    if headers.is_empty() { Ok(0) } else { headers_block_len_walk(headers) }
}

#[inline(never)]
fn headers_block_len_walk(headers: &[(&str, &[u8])]) -> Result<usize, String> {
    if headers.len() > HEADERS_COUNT_MAX {
        return Err(format!("{} headers, at most {HEADERS_COUNT_MAX}", headers.len()));
    }
    let mut len = HEADER_COUNT_LEN;
    for (name, value) in headers {
        if name.is_empty() || name.len() > HEADER_NAME_BYTES_MAX {
            return Err(format!("header name of {} bytes, must be 1..={HEADER_NAME_BYTES_MAX}", name.len()));
        }
        let value_len = u32::try_from(value.len()).map_err(|_| "header value over 4 GiB".to_string())?;
        len = len
            .checked_add(HEADER_ENTRY_PREFIX_LEN + name.len())
            .and_then(|l| l.checked_add(value_len as usize))
            .ok_or_else(|| "headers too large".to_string())?;
    }
    Ok(len)
}

/// Size of the record body (key + headers + payload) as counted against `record_bytes_max`.
pub fn record_body_len(key: Option<&[u8]>, headers_len: usize, payload: &[u8]) -> u64 {
    key.map_or(0, |k| k.len() as u64) + headers_len as u64 + payload.len() as u64
}

/// Appends one encoded frame to `out`. The caller has checked the body against
/// `RECORD_BYTES_LIMIT` and the header limits (`headers_block_len`). Returns the frame length.
pub fn encode_frame(out: &mut Vec<u8>, f: &FrameFields<'_>, headers_len: usize) -> usize {
    let start = out.len();
    let len = frame_len(f, headers_len);
    out.reserve(len);
    out.extend_from_slice(&[0u8; 4]); // CRC, filled in below
    put_fields(out, f, headers_len);
    debug_assert_eq!(out.len() - start, len, "frame_len agrees with what was written");
    seal_crc(out.get_mut(start..).unwrap_or_default());
    len
}

/// Length of the frame `f` encodes to (`headers_len` from `headers_block_len`).
pub fn frame_len(f: &FrameFields<'_>, headers_len: usize) -> usize {
    FRAME_HEADER_LEN + f.key.map_or(0, <[u8]>::len) + headers_len + f.payload.len()
}

/// Writes one encoded frame at the start of `dst` (the writer encodes a single record straight
/// into the mapped active segment with it); returns its length, or `None` when `dst` is
/// shorter than [`frame_len`]. Same preconditions as [`encode_frame`].
pub fn encode_frame_into(dst: &mut [u8], f: &FrameFields<'_>, headers_len: usize) -> Option<usize> {
    let len = frame_len(f, headers_len);
    let frame = dst.get_mut(..len)?;
    let mut w = SliceWriter { buf: frame, at: FRAME_CRC_FROM }; // the CRC is filled in below
    put_fields(&mut w, f, headers_len);
    debug_assert_eq!(w.at, len, "frame_len agrees with what was written");
    seal_crc(frame);
    Some(len)
}

/// Where a frame's bytes go: a growing buffer or a slice sized for them.
trait FrameSink {
    fn put(&mut self, bytes: &[u8]);
}

impl FrameSink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Writes consecutive fields into a slice that was sized for them.
struct SliceWriter<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl FrameSink for SliceWriter<'_> {
    fn put(&mut self, bytes: &[u8]) {
        if let Some(dst) = self.buf.get_mut(self.at..self.at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
        self.at += bytes.len();
    }
}

/// Every field of a frame after the CRC, in FORMAT.md's order: the one place that lays a
/// frame out.
fn put_fields(sink: &mut impl FrameSink, f: &FrameFields<'_>, headers_len: usize) {
    let mut flags = 0u16;
    if f.key.is_some() {
        flags |= FLAG_HAS_KEY;
    }
    if f.batch_continues {
        flags |= FLAG_BATCH_CONTINUES;
    }
    sink.put(&[FRAME_MAGIC, FRAME_VERSION]);
    sink.put(&flags.to_le_bytes());
    sink.put(&f.offset.to_le_bytes());
    sink.put(&f.durable_offset.to_le_bytes());
    sink.put(&f.timestamp.to_le_bytes());
    sink.put(&checked_u32(f.key.map_or(0, <[u8]>::len)).to_le_bytes());
    sink.put(&checked_u32(headers_len).to_le_bytes());
    sink.put(&checked_u32(f.payload.len()).to_le_bytes());
    if let Some(k) = f.key {
        sink.put(k);
    }
    if !f.headers.is_empty() {
        sink.put(&checked_u16(f.headers.len()).to_le_bytes());
        for (name, value) in f.headers {
            sink.put(&checked_u16(name.len()).to_le_bytes());
            sink.put(&checked_u32(value.len()).to_le_bytes());
            sink.put(name.as_bytes());
            sink.put(value);
        }
    }
    sink.put(f.payload);
}

/// The frame checksum (CRC-32, IEEE) of `bytes`. A hasher made once is copied for each frame:
/// `crc32fast::hash` looks up the CPU's features on every call, a few percent of a scan of
/// 100-byte records.
#[inline]
pub(crate) fn frame_crc(bytes: &[u8]) -> u32 {
    static START: std::sync::LazyLock<crc32fast::Hasher> = std::sync::LazyLock::new(crc32fast::Hasher::new);
    let mut h = START.clone();
    h.update(bytes);
    h.finalize()
}

/// Computes the CRC over an encoded frame's bytes after the CRC field and stores it there.
fn seal_crc(frame: &mut [u8]) {
    let crc = frame_crc(frame.get(FRAME_CRC_FROM..).unwrap_or_default());
    if let Some(slot) = frame.get_mut(FRAME_CRC_AT..FRAME_CRC_AT + 4) {
        slot.copy_from_slice(&crc.to_le_bytes());
    }
}

/// A frame that decoded and whose checksum matched. Ranges index the buffer it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodedFrame {
    /// The record's offset.
    pub offset: u64,
    /// Every offset below this was durable before the frame was written.
    pub durable_offset: u64,
    /// Event time, milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Frame flags (`FLAG_*`).
    pub flags: u16,
    /// Total frame length in bytes.
    pub len: usize,
    /// Where the key is, if any.
    pub key: Option<Range<usize>>,
    /// Where the headers block is.
    pub headers: Range<usize>,
    /// Where the payload is.
    pub payload: Range<usize>,
}

impl DecodedFrame {
    /// True when more records of the same atomic batch follow.
    pub fn batch_continues(&self) -> bool {
        self.flags & FLAG_BATCH_CONTINUES != 0
    }
}

/// Why bytes did not decode as a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The buffer ends before the frame does: `needed` bytes would be required. At the end of
    /// the active segment this is a torn or in-progress write.
    Truncated {
        /// Bytes the frame needs.
        needed: usize,
    },
    /// All header bytes are zero: unwritten (preallocated or hole) space.
    Zeroed,
    /// The magic byte is wrong.
    BadMagic(u8),
    /// A frame version this build cannot read.
    UnsupportedVersion(u8),
    /// Flag bits this version does not define.
    UnknownFlags(u16),
    /// A length field is impossible (over the format limit).
    BadLength(&'static str),
    /// The CRC-32 does not match.
    BadChecksum {
        /// CRC stored in the frame.
        stored: u32,
        /// CRC of the bytes read.
        computed: u32,
    },
    /// Valid frame, but not the offset expected at this place.
    WrongOffset {
        /// Offset expected at this place.
        expected: u64,
        /// Offset the frame holds.
        found: u64,
    },
    /// The headers block is malformed.
    BadHeaders(&'static str),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Truncated { needed } => write!(f, "truncated frame: {needed} bytes needed"),
            FrameError::Zeroed => f.write_str("zero-filled bytes where a frame should start"),
            FrameError::BadMagic(m) => write!(f, "bad frame magic {m:#04x}"),
            FrameError::UnsupportedVersion(v) => write!(f, "unsupported frame version {v}"),
            FrameError::UnknownFlags(fl) => write!(f, "unknown frame flags {fl:#06x}"),
            FrameError::BadLength(what) => write!(f, "impossible {what} length"),
            FrameError::BadChecksum { stored, computed } => {
                write!(f, "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")
            }
            FrameError::WrongOffset { expected, found } => {
                write!(f, "frame holds offset {found}, expected {expected}")
            }
            FrameError::BadHeaders(what) => write!(f, "malformed headers block: {what}"),
        }
    }
}

/// Decodes the frame at the start of `b`. `expected_offset`, when given, must match the frame's
/// offset. Checks magic, version, flags, lengths (against what remains and against
/// `RECORD_BYTES_LIMIT`), the CRC, then the headers block. Never panics.
///
/// Inlined: a scan calls it once per record, and a decoded frame returned through memory costs a
/// stalled copy (the store of its fields is not forwarded to the wider loads that move it).
#[inline(always)]
pub fn decode_frame(b: &[u8], expected_offset: Option<u64>) -> Result<DecodedFrame, FrameError> {
    if b.len() < FRAME_HEADER_LEN {
        if !b.is_empty() && b.iter().all(|&x| x == 0) {
            return Err(FrameError::Zeroed);
        }
        return Err(FrameError::Truncated { needed: FRAME_HEADER_LEN });
    }
    let Some(head) = b.first_chunk::<FRAME_HEADER_LEN>() else {
        return Err(FrameError::Truncated { needed: FRAME_HEADER_LEN });
    };
    if head[FRAME_MAGIC_AT] != FRAME_MAGIC {
        if head.iter().all(|&x| x == 0) {
            return Err(FrameError::Zeroed);
        }
        return Err(FrameError::BadMagic(head[FRAME_MAGIC_AT]));
    }
    if head[FRAME_VERSION_AT] != FRAME_VERSION {
        return Err(FrameError::UnsupportedVersion(head[FRAME_VERSION_AT]));
    }
    let flags = le_u16(head, FRAME_FLAGS_AT);
    if flags & !FLAGS_KNOWN != 0 {
        return Err(FrameError::UnknownFlags(flags));
    }
    let key_len = u64::from(le_u32(head, FRAME_KEY_LEN_AT));
    let headers_len = u64::from(le_u32(head, FRAME_HEADERS_LEN_AT));
    let payload_len = u64::from(le_u32(head, FRAME_PAYLOAD_LEN_AT));
    if flags & FLAG_HAS_KEY == 0 && key_len != 0 {
        return Err(FrameError::BadLength("key (no key flag)"));
    }
    let body = key_len + headers_len + payload_len;
    if body > RECORD_BYTES_LIMIT {
        return Err(FrameError::BadLength("record body"));
    }
    let key_len = usize::try_from(key_len).map_err(|_| FrameError::BadLength("key"))?;
    let headers_len = usize::try_from(headers_len).map_err(|_| FrameError::BadLength("headers"))?;
    let body = usize::try_from(body).map_err(|_| FrameError::BadLength("record body"))?;
    let len = FRAME_HEADER_LEN + body;
    let Some(checked) = b.get(FRAME_CRC_FROM..len) else {
        return Err(FrameError::Truncated { needed: len });
    };
    let stored = le_u32(head, FRAME_CRC_AT);
    let computed = frame_crc(checked);
    if stored != computed {
        return Err(FrameError::BadChecksum { stored, computed });
    }
    let offset = le_u64(head, FRAME_OFFSET_AT);
    if let Some(expected) = expected_offset
        && expected != offset
    {
        return Err(FrameError::WrongOffset { expected, found: offset });
    }
    let durable_offset = le_u64(head, FRAME_DURABLE_OFFSET_AT);
    if durable_offset > offset {
        return Err(FrameError::BadLength("durable offset beyond the frame's offset"));
    }
    let key_start = FRAME_HEADER_LEN;
    let headers_start = key_start + key_len;
    let payload_start = headers_start + headers_len;
    let headers = headers_start..payload_start;
    validate_headers_block(b.get(headers.clone()).unwrap_or_default())?;
    Ok(DecodedFrame {
        offset,
        durable_offset,
        timestamp: le_i64(head, FRAME_TIMESTAMP_AT),
        flags,
        len,
        key: (flags & FLAG_HAS_KEY != 0).then_some(key_start..headers_start),
        headers,
        payload: payload_start..len,
    })
}

/// Checks a headers block's structure: count, then exactly that many well-formed entries. The
/// common empty block is told apart inline.
#[inline(always)]
fn validate_headers_block(b: &[u8]) -> Result<(), FrameError> {
    if b.is_empty() { Ok(()) } else { validate_headers_entries(b) }
}

fn validate_headers_entries(b: &[u8]) -> Result<(), FrameError> {
    let mut it = HeadersIter::new(b);
    if it.count_declared == 0 || it.count_declared > HEADERS_COUNT_MAX {
        return Err(FrameError::BadHeaders("header count"));
    }
    for entry in it.by_ref() {
        let (name, _) = entry?;
        if std::str::from_utf8(name).is_err() {
            return Err(FrameError::BadHeaders("header name is not UTF-8"));
        }
    }
    if it.pos != b.len() {
        return Err(FrameError::BadHeaders("trailing bytes"));
    }
    Ok(())
}

/// Iterates a headers block; yields `(name, value)` or an error for malformed bytes.
#[derive(Debug, Clone)]
pub struct HeadersIter<'a> {
    b: &'a [u8],
    pos: usize,
    count_declared: usize,
    yielded: usize,
    failed: bool,
}

impl<'a> HeadersIter<'a> {
    /// Iterates the headers block `b`.
    pub fn new(b: &'a [u8]) -> Self {
        let count_declared = if b.len() >= HEADER_COUNT_LEN { le_u16(b, 0) as usize } else { 0 };
        HeadersIter { b, pos: HEADER_COUNT_LEN.min(b.len()), count_declared, yielded: 0, failed: false }
    }
}

impl<'a> Iterator for HeadersIter<'a> {
    type Item = Result<(&'a [u8], &'a [u8]), FrameError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.yielded >= self.count_declared {
            return None;
        }
        let rest = self.b.get(self.pos..).unwrap_or_default();
        if rest.len() < HEADER_ENTRY_PREFIX_LEN {
            self.failed = true;
            return Some(Err(FrameError::BadHeaders("entry prefix cut short")));
        }
        let name_len = le_u16(rest, 0) as usize;
        let value_len = le_u32(rest, 2) as usize;
        if name_len == 0 || name_len > HEADER_NAME_BYTES_MAX {
            self.failed = true;
            return Some(Err(FrameError::BadHeaders("header name length")));
        }
        let need = HEADER_ENTRY_PREFIX_LEN.saturating_add(name_len).saturating_add(value_len);
        if rest.len() < need {
            self.failed = true;
            return Some(Err(FrameError::BadHeaders("entry cut short")));
        }
        let (Some(name), Some(value)) = (
            rest.get(HEADER_ENTRY_PREFIX_LEN..HEADER_ENTRY_PREFIX_LEN + name_len),
            rest.get(HEADER_ENTRY_PREFIX_LEN + name_len..need),
        ) else {
            self.failed = true;
            return Some(Err(FrameError::BadHeaders("entry cut short")));
        };
        self.pos += need;
        self.yielded += 1;
        Some(Ok((name, value)))
    }
}

/// Scans `b` from `from` for the first position where a valid frame (magic, lengths, CRC) starts,
/// whatever its offset. Used to tell a torn tail (nothing valid after the bad bytes) from
/// corruption in the middle of a segment (valid frames after the bad bytes).
pub fn find_valid_frame(b: &[u8], from: usize) -> Option<(usize, DecodedFrame)> {
    let mut pos = from;
    while pos + FRAME_HEADER_LEN <= b.len() {
        // Look for the magic byte at pos + FRAME_MAGIC_AT.
        let window = b.get(pos + FRAME_MAGIC_AT..)?;
        let next = window.iter().position(|&x| x == FRAME_MAGIC)?;
        pos += next;
        let rest = b.get(pos..)?;
        if rest.len() < FRAME_HEADER_LEN {
            return None;
        }
        if let Ok(frame) = decode_frame(rest, None) {
            return Some((pos, frame));
        }
        pos += 1;
    }
    None
}

// ---------------------------------------------------------------------------------------------
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

// ---------------------------------------------------------------------------------------------
// Checkpoint

/// Where recovery may start: every frame before `position` in segment `segment_base` (and every
/// earlier segment) is on stable storage and valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// The segment the checkpoint points into.
    pub segment_base: u64,
    /// Byte position in that segment.
    pub position: u64,
    /// Offset of the frame at that position.
    pub next_offset: u64,
}

/// Encodes a checkpoint file.
pub fn encode_checkpoint(c: &Checkpoint) -> [u8; CHECKPOINT_LEN] {
    let mut b = [0u8; CHECKPOINT_LEN];
    b[CHECKPOINT_MAGIC_AT..CHECKPOINT_MAGIC_AT + 8].copy_from_slice(&CHECKPOINT_MAGIC);
    b[CHECKPOINT_VERSION_AT..CHECKPOINT_VERSION_AT + 2].copy_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
    b[CHECKPOINT_SEGMENT_BASE_AT..CHECKPOINT_SEGMENT_BASE_AT + 8].copy_from_slice(&c.segment_base.to_le_bytes());
    b[CHECKPOINT_POSITION_AT..CHECKPOINT_POSITION_AT + 8].copy_from_slice(&c.position.to_le_bytes());
    b[CHECKPOINT_NEXT_OFFSET_AT..CHECKPOINT_NEXT_OFFSET_AT + 8].copy_from_slice(&c.next_offset.to_le_bytes());
    let crc = crc32fast::hash(&b[..CHECKPOINT_CRC_AT]);
    b[CHECKPOINT_CRC_AT..CHECKPOINT_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Decodes and checks a checkpoint file.
pub fn decode_checkpoint(b: &[u8]) -> Result<Checkpoint, HeaderError> {
    let Some(b) = b.first_chunk::<CHECKPOINT_LEN>() else {
        return Err(HeaderError::Short { len: b.len(), needed: CHECKPOINT_LEN });
    };
    if b.get(CHECKPOINT_MAGIC_AT..CHECKPOINT_MAGIC_AT + 8) != Some(&CHECKPOINT_MAGIC[..]) {
        return Err(HeaderError::BadMagic);
    }
    if crc32fast::hash(prefix(b, CHECKPOINT_CRC_AT)) != le_u32(b, CHECKPOINT_CRC_AT) {
        return Err(HeaderError::BadChecksum);
    }
    let version = le_u16(b, CHECKPOINT_VERSION_AT);
    if version != CHECKPOINT_VERSION {
        return Err(HeaderError::UnsupportedVersion(version));
    }
    let c = Checkpoint {
        segment_base: le_u64(b, CHECKPOINT_SEGMENT_BASE_AT),
        position: le_u64(b, CHECKPOINT_POSITION_AT),
        next_offset: le_u64(b, CHECKPOINT_NEXT_OFFSET_AT),
    };
    if c.position < SEGMENT_HEADER_LEN as u64 || c.next_offset < c.segment_base {
        return Err(HeaderError::BadField("position/next offset"));
    }
    Ok(c)
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
