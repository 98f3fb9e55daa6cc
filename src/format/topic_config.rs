//! A topic's configuration file, byte for byte: FORMAT.md § Topic configuration. Pure
//! encode/decode; the store writes and reads it (`store/config.rs`).

use super::{HeaderError, le_u16, le_u32, le_u64, prefix};

/// The file's name inside the topic's directory.
pub const TOPIC_CONFIG_FILE: &str = "topic.config";
/// Magic of a topic configuration.
pub const TOPIC_CONFIG_MAGIC: [u8; 8] = *b"EVLGTCFG";
/// Version this build writes; it reads this one and `TOPIC_CONFIG_VERSION_1`.
pub const TOPIC_CONFIG_VERSION: u16 = 2;
/// The first version: no `retention_bytes`, `TOPIC_CONFIG_V1_LEN` bytes.
pub const TOPIC_CONFIG_VERSION_1: u16 = 1;
/// Byte position of the magic.
pub const TOPIC_CONFIG_MAGIC_AT: usize = 0;
/// Byte position of the version (u16).
pub const TOPIC_CONFIG_VERSION_AT: usize = TOPIC_CONFIG_MAGIC_AT + 8;
/// Byte position of the flags (u16): bit 0 `COMPACT_BY_KEY`, bit 1 `COMPRESS_LZ4`.
pub const TOPIC_CONFIG_FLAGS_AT: usize = TOPIC_CONFIG_VERSION_AT + 2;
/// Flag: background maintenance compacts the topic by key.
pub const TOPIC_CONFIG_FLAG_COMPACT_BY_KEY: u16 = 1;
/// Flag: background maintenance compresses the topic's sealed segments (LZ4).
pub const TOPIC_CONFIG_FLAG_COMPRESS_LZ4: u16 = 2;
/// Byte position of the policy when full (u32: 0 error, 1 block, 2 drop-oldest).
pub const TOPIC_CONFIG_WHEN_FULL_AT: usize = TOPIC_CONFIG_FLAGS_AT + 2;
/// Byte position of the disk budget (u64 bytes; 0 = none).
pub const TOPIC_CONFIG_BYTES_MAX_AT: usize = TOPIC_CONFIG_WHEN_FULL_AT + 4;
/// Byte position of the longest wait of a blocked append (u64 ms).
pub const TOPIC_CONFIG_BLOCK_TIMEOUT_MS_AT: usize = TOPIC_CONFIG_BYTES_MAX_AT + 8;
/// Byte position of the retention age (u64 ms; 0 = none).
pub const TOPIC_CONFIG_RETENTION_AGE_MS_AT: usize = TOPIC_CONFIG_BLOCK_TIMEOUT_MS_AT + 8;
/// Byte position of how long compaction keeps a tombstone (u64 ms).
pub const TOPIC_CONFIG_TOMBSTONE_RETENTION_MS_AT: usize = TOPIC_CONFIG_RETENTION_AGE_MS_AT + 8;
/// Byte position of the retention by size (u64 bytes; 0 = the store's default). Version 2.
pub const TOPIC_CONFIG_RETENTION_BYTES_AT: usize = TOPIC_CONFIG_TOMBSTONE_RETENTION_MS_AT + 8;
/// Byte position of the CRC-32 of everything before it.
pub const TOPIC_CONFIG_CRC_AT: usize = TOPIC_CONFIG_RETENTION_BYTES_AT + 8;
/// Length of the file.
pub const TOPIC_CONFIG_LEN: usize = TOPIC_CONFIG_CRC_AT + 4;
/// Byte position of a version 1 file's CRC (it ends after `tombstone_retention_ms`).
pub const TOPIC_CONFIG_V1_CRC_AT: usize = TOPIC_CONFIG_TOMBSTONE_RETENTION_MS_AT + 8;
/// Length of a version 1 file.
pub const TOPIC_CONFIG_V1_LEN: usize = TOPIC_CONFIG_V1_CRC_AT + 4;

const _: () = assert!(TOPIC_CONFIG_LEN == 60 && TOPIC_CONFIG_V1_LEN == 52);

/// A topic configuration's fields as stored (`0` = none where the spec says so).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TopicConfigFields {
    /// 0 error, 1 block, 2 drop-oldest.
    pub when_full: u32,
    /// Disk budget in bytes; 0 = none.
    pub bytes_max: u64,
    /// Longest wait of a blocked append, ms.
    pub block_timeout_ms: u64,
    /// Retention age, ms; 0 = none.
    pub retention_age_ms: u64,
    /// `TOPIC_CONFIG_FLAG_*`.
    pub flags: u16,
    /// How long compaction keeps a tombstone, ms.
    pub tombstone_retention_ms: u64,
    /// Retention by size, bytes; 0 = the store's default (always 0 in a version 1 file).
    pub retention_bytes: u64,
}

/// Encodes a topic configuration file.
pub fn encode_topic_config(c: &TopicConfigFields) -> [u8; TOPIC_CONFIG_LEN] {
    fn put(b: &mut [u8], at: usize, bytes: &[u8]) {
        if let Some(dst) = b.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    }
    let mut b = [0u8; TOPIC_CONFIG_LEN];
    put(&mut b, TOPIC_CONFIG_MAGIC_AT, &TOPIC_CONFIG_MAGIC);
    put(&mut b, TOPIC_CONFIG_VERSION_AT, &TOPIC_CONFIG_VERSION.to_le_bytes());
    put(&mut b, TOPIC_CONFIG_FLAGS_AT, &c.flags.to_le_bytes());
    put(&mut b, TOPIC_CONFIG_WHEN_FULL_AT, &c.when_full.to_le_bytes());
    put(&mut b, TOPIC_CONFIG_BYTES_MAX_AT, &c.bytes_max.to_le_bytes());
    put(&mut b, TOPIC_CONFIG_BLOCK_TIMEOUT_MS_AT, &c.block_timeout_ms.to_le_bytes());
    put(&mut b, TOPIC_CONFIG_RETENTION_AGE_MS_AT, &c.retention_age_ms.to_le_bytes());
    put(&mut b, TOPIC_CONFIG_TOMBSTONE_RETENTION_MS_AT, &c.tombstone_retention_ms.to_le_bytes());
    put(&mut b, TOPIC_CONFIG_RETENTION_BYTES_AT, &c.retention_bytes.to_le_bytes());
    let crc = crc32fast::hash(prefix(&b, TOPIC_CONFIG_CRC_AT));
    put(&mut b, TOPIC_CONFIG_CRC_AT, &crc.to_le_bytes());
    b
}

/// Decodes and checks a topic configuration file: version 2 (`TOPIC_CONFIG_LEN` bytes) or
/// version 1 (`TOPIC_CONFIG_V1_LEN` bytes, read with no retention by size of its own).
pub fn decode_topic_config(b: &[u8]) -> Result<TopicConfigFields, HeaderError> {
    let (len, crc_at) = match b.len() {
        TOPIC_CONFIG_V1_LEN => (TOPIC_CONFIG_V1_LEN, TOPIC_CONFIG_V1_CRC_AT),
        _ => (TOPIC_CONFIG_LEN, TOPIC_CONFIG_CRC_AT),
    };
    if b.len() != len {
        return Err(HeaderError::Short { len: b.len(), needed: TOPIC_CONFIG_LEN });
    }
    if b.get(TOPIC_CONFIG_MAGIC_AT..TOPIC_CONFIG_MAGIC_AT + 8) != Some(&TOPIC_CONFIG_MAGIC[..]) {
        return Err(HeaderError::BadMagic);
    }
    if crc32fast::hash(prefix(b, crc_at)) != le_u32(b, crc_at) {
        return Err(HeaderError::BadChecksum);
    }
    let version = le_u16(b, TOPIC_CONFIG_VERSION_AT);
    let expected = if len == TOPIC_CONFIG_V1_LEN { TOPIC_CONFIG_VERSION_1 } else { TOPIC_CONFIG_VERSION };
    if version != expected {
        return Err(HeaderError::UnsupportedVersion(version));
    }
    let c = TopicConfigFields {
        when_full: le_u32(b, TOPIC_CONFIG_WHEN_FULL_AT),
        bytes_max: le_u64(b, TOPIC_CONFIG_BYTES_MAX_AT),
        block_timeout_ms: le_u64(b, TOPIC_CONFIG_BLOCK_TIMEOUT_MS_AT),
        retention_age_ms: le_u64(b, TOPIC_CONFIG_RETENTION_AGE_MS_AT),
        flags: le_u16(b, TOPIC_CONFIG_FLAGS_AT),
        tombstone_retention_ms: le_u64(b, TOPIC_CONFIG_TOMBSTONE_RETENTION_MS_AT),
        retention_bytes: if len == TOPIC_CONFIG_V1_LEN { 0 } else { le_u64(b, TOPIC_CONFIG_RETENTION_BYTES_AT) },
    };
    if c.when_full > 2 {
        return Err(HeaderError::BadField("when_full"));
    }
    if c.flags & !(TOPIC_CONFIG_FLAG_COMPACT_BY_KEY | TOPIC_CONFIG_FLAG_COMPRESS_LZ4) != 0 {
        return Err(HeaderError::BadField("flags"));
    }
    Ok(c)
}
