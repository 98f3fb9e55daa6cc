//! A compressed sealed segment's blocks, block table and trailer, byte for byte: FORMAT.md
//! § Compressed segments. Pure encode/decode; a decoder returns what is wrong, never a guess.

use super::{HeaderError, le_u32, le_u64, prefix};

/// Codec byte of an LZ4 block (the LZ4 block format, no frame).
pub const CODEC_LZ4: u8 = 1;

/// Magic of a block header.
pub const BLOCK_MAGIC: [u8; 4] = *b"EVZB";
/// Byte position of the block magic.
pub const BLOCK_MAGIC_AT: usize = 0;
/// Byte position of the codec (u8).
pub const BLOCK_CODEC_AT: usize = BLOCK_MAGIC_AT + 4;
/// Byte position of three reserved bytes (`0`).
pub const BLOCK_RESERVED_AT: usize = BLOCK_CODEC_AT + 1;
/// Byte position of where the block's bytes start in the uncompressed segment (u64).
pub const BLOCK_START_AT: usize = BLOCK_RESERVED_AT + 3;
/// Byte position of the uncompressed length (u32).
pub const BLOCK_LEN_AT: usize = BLOCK_START_AT + 8;
/// Byte position of the compressed length (u32).
pub const BLOCK_COMPRESSED_LEN_AT: usize = BLOCK_LEN_AT + 4;
/// Byte position of the CRC-32 of the header's first 24 bytes and the compressed bytes.
pub const BLOCK_CRC_AT: usize = BLOCK_COMPRESSED_LEN_AT + 4;
/// Length of a block header.
pub const BLOCK_HEADER_LEN: usize = BLOCK_CRC_AT + 4;

/// A block table entry: where a block starts in the uncompressed segment (u64)...
pub const TABLE_START_AT: usize = 0;
/// ...and where its header is in the file (u64).
pub const TABLE_FILE_POS_AT: usize = TABLE_START_AT + 8;
/// Length of a block table entry.
pub const TABLE_ENTRY_LEN: usize = TABLE_FILE_POS_AT + 8;

/// Magic of the trailer, the file's last bytes.
pub const TRAILER_MAGIC: [u8; 8] = *b"EVLGZTBL";
/// Byte position of the trailer magic.
pub const TRAILER_MAGIC_AT: usize = 0;
/// Byte position of the block table's position in the file (u64).
pub const TRAILER_TABLE_POS_AT: usize = TRAILER_MAGIC_AT + 8;
/// Byte position of the number of blocks (u32).
pub const TRAILER_BLOCK_COUNT_AT: usize = TRAILER_TABLE_POS_AT + 8;
/// Byte position of the CRC-32 of the table entries followed by the trailer's first 20 bytes.
pub const TRAILER_CRC_AT: usize = TRAILER_BLOCK_COUNT_AT + 4;
/// Length of the trailer.
pub const TRAILER_LEN: usize = TRAILER_CRC_AT + 4;

/// Most uncompressed bytes in one block, unless a single frame is larger.
pub const BLOCK_BYTES_TARGET: usize = 256 << 10;

const _: () = assert!(BLOCK_HEADER_LEN == 28 && TABLE_ENTRY_LEN == 16 && TRAILER_LEN == 24);

/// A block header's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    /// `CODEC_*`.
    pub codec: u8,
    /// Where its bytes start in the uncompressed segment.
    pub start: u64,
    /// Uncompressed bytes.
    pub len: u32,
    /// Compressed bytes that follow the header.
    pub compressed_len: u32,
}

/// Encodes a block header, its CRC taken over `compressed` too.
pub fn encode_block_header(h: &BlockHeader, compressed: &[u8]) -> [u8; BLOCK_HEADER_LEN] {
    let mut b = [0u8; BLOCK_HEADER_LEN];
    let mut put = |at: usize, bytes: &[u8]| {
        if let Some(d) = b.get_mut(at..at + bytes.len()) {
            d.copy_from_slice(bytes);
        }
    };
    put(BLOCK_MAGIC_AT, &BLOCK_MAGIC);
    put(BLOCK_CODEC_AT, &[h.codec]);
    put(BLOCK_START_AT, &h.start.to_le_bytes());
    put(BLOCK_LEN_AT, &h.len.to_le_bytes());
    put(BLOCK_COMPRESSED_LEN_AT, &h.compressed_len.to_le_bytes());
    let crc = block_crc(prefix(&b, BLOCK_CRC_AT), compressed);
    if let Some(d) = b.get_mut(BLOCK_CRC_AT..BLOCK_CRC_AT + 4) {
        d.copy_from_slice(&crc.to_le_bytes());
    }
    b
}

fn block_crc(header: &[u8], compressed: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(header);
    h.update(compressed);
    h.finalize()
}

/// Decodes a block header (`b` holds at least the header); the CRC is checked by
/// [`check_block`] once the compressed bytes are read.
pub fn decode_block_header(b: &[u8]) -> Result<BlockHeader, HeaderError> {
    if b.len() < BLOCK_HEADER_LEN {
        return Err(HeaderError::Short { len: b.len(), needed: BLOCK_HEADER_LEN });
    }
    if b.get(BLOCK_MAGIC_AT..BLOCK_MAGIC_AT + 4) != Some(&BLOCK_MAGIC[..]) {
        return Err(HeaderError::BadMagic);
    }
    let codec = b.get(BLOCK_CODEC_AT).copied().unwrap_or(0);
    if codec != CODEC_LZ4 {
        return Err(HeaderError::BadField("codec"));
    }
    if b.get(BLOCK_RESERVED_AT..BLOCK_RESERVED_AT + 3) != Some(&[0u8; 3][..]) {
        return Err(HeaderError::BadField("reserved"));
    }
    Ok(BlockHeader {
        codec,
        start: le_u64(b, BLOCK_START_AT),
        len: le_u32(b, BLOCK_LEN_AT),
        compressed_len: le_u32(b, BLOCK_COMPRESSED_LEN_AT),
    })
}

/// Checks a block's CRC over its header (`header`, at least `BLOCK_HEADER_LEN` bytes) and its
/// compressed bytes.
pub fn check_block(header: &[u8], compressed: &[u8]) -> Result<(), HeaderError> {
    if block_crc(prefix(header, BLOCK_CRC_AT), compressed) == le_u32(header, BLOCK_CRC_AT) {
        Ok(())
    } else {
        Err(HeaderError::BadChecksum)
    }
}

/// Encodes the block table (entries of (start, file position)) followed by the trailer.
pub fn encode_table(entries: &[(u64, u64)], table_pos: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * TABLE_ENTRY_LEN + TRAILER_LEN);
    for (start, pos) in entries {
        out.extend_from_slice(&start.to_le_bytes());
        out.extend_from_slice(&pos.to_le_bytes());
    }
    let count = u32::try_from(entries.len()).unwrap_or(u32::MAX);
    let trailer_at = out.len();
    out.extend_from_slice(&TRAILER_MAGIC);
    out.extend_from_slice(&table_pos.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(out.len() - trailer_at, TRAILER_LEN);
    out
}

/// Decodes a trailer: (table position, block count). Its CRC is checked with the table by
/// [`decode_table`].
pub fn decode_trailer(b: &[u8]) -> Result<(u64, u32), HeaderError> {
    if b.len() != TRAILER_LEN {
        return Err(HeaderError::Short { len: b.len(), needed: TRAILER_LEN });
    }
    if b.get(TRAILER_MAGIC_AT..TRAILER_MAGIC_AT + 8) != Some(&TRAILER_MAGIC[..]) {
        return Err(HeaderError::BadMagic);
    }
    Ok((le_u64(b, TRAILER_TABLE_POS_AT), le_u32(b, TRAILER_BLOCK_COUNT_AT)))
}

/// Decodes the table (`table`, exactly `count` entries) against its trailer's CRC; entries
/// must start in increasing order.
pub fn decode_table(table: &[u8], trailer: &[u8]) -> Result<Vec<(u64, u64)>, HeaderError> {
    let mut h = crc32fast::Hasher::new();
    h.update(table);
    h.update(prefix(trailer, TRAILER_CRC_AT));
    if h.finalize() != le_u32(trailer, TRAILER_CRC_AT) {
        return Err(HeaderError::BadChecksum);
    }
    if !table.len().is_multiple_of(TABLE_ENTRY_LEN) {
        return Err(HeaderError::BadField("table length"));
    }
    let entries: Vec<(u64, u64)> = table
        .chunks_exact(TABLE_ENTRY_LEN)
        .map(|e| (le_u64(e, TABLE_START_AT), le_u64(e, TABLE_FILE_POS_AT)))
        .collect();
    if entries.windows(2).any(|w| matches!(w, [a, b] if a.0 >= b.0)) {
        return Err(HeaderError::BadField("block starts out of order"));
    }
    Ok(entries)
}
