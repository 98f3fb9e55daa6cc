//! Checkpoint (FORMAT.md § Checkpoint): where recovery may start scanning.

use super::*;

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
