//! Segment header (FORMAT.md § Segment header): magic, version, base offset, flags.

use super::*;

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
