//! Reading a compressed sealed segment (FORMAT.md § Compressed segments): its trailer and block
//! table, and one block at a time, checked before it is decompressed. Writing one is
//! `compress.rs`'s; this file depends on nothing of the log but the format, so every cursor
//! (`segment.rs`) can read compressed segments without a cycle through the writer's files.
//!
//! Invariants:
//! - A block's checksum is verified before it is decompressed; a bad block, table or trailer is
//!   `Corruption` naming the file and position, never a panic.

use crate::error::{LogError as Error, LogResult as Result};
use crate::format::SEGMENT_HEADER_LEN;
use crate::format::compressed::{
    BLOCK_BYTES_TARGET, BLOCK_HEADER_LEN, BlockHeader, TABLE_ENTRY_LEN, TRAILER_LEN, check_block, decode_block_header,
    decode_table, decode_trailer,
};
use crate::storage::StorageFile;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest uncompressed block a reader accepts (a block holds whole frames: at most one frame
/// over the target, and frames are at most 1 GiB).
const BLOCK_BYTES_MAX: u64 = (1 << 30) + (BLOCK_BYTES_TARGET as u64) * 2;

/// A compressed sealed segment open for reading: its file and block table.
#[derive(Debug)]
pub(crate) struct CompressedSegment {
    file: Arc<dyn StorageFile>,
    path: PathBuf,
    /// (uncompressed start, header position in the file) of each block, in order.
    blocks: Vec<(u64, u64)>,
    /// Where the table starts (the end of the last block).
    table_pos: u64,
    /// Uncompressed length, segment header included.
    pub len: u64,
}

impl CompressedSegment {
    /// Reads the trailer and the block table of the compressed segment in `file`.
    pub fn open(file: Arc<dyn StorageFile>, path: &Path) -> Result<CompressedSegment> {
        let corrupt =
            |pos: u64, what: String| Error::corruption(path, pos, None, format!("compressed segment: {what}"));
        let file_len = file.len().map_err(|e| Error::io("stat", path, e))?;
        let Some(trailer_at) = file_len.checked_sub(TRAILER_LEN as u64).filter(|&t| t >= SEGMENT_HEADER_LEN as u64)
        else {
            return Err(corrupt(0, format!("{file_len} bytes: no room for a trailer")));
        };
        let trailer = file.read_vec(trailer_at, TRAILER_LEN).map_err(|e| Error::io("read", path, e))?;
        let (table_pos, count) = decode_trailer(&trailer).map_err(|e| corrupt(trailer_at, format!("trailer: {e}")))?;
        let table_len = u64::from(count) * TABLE_ENTRY_LEN as u64;
        if table_pos.checked_add(table_len) != Some(trailer_at) || table_pos < SEGMENT_HEADER_LEN as u64 {
            return Err(corrupt(
                trailer_at,
                format!("table of {count} blocks at {table_pos} does not end at the trailer"),
            ));
        }
        let len = usize::try_from(table_len).map_err(|_| corrupt(table_pos, "table too large".into()))?;
        let table = file.read_vec(table_pos, len).map_err(|e| Error::io("read", path, e))?;
        let blocks = decode_table(&table, &trailer).map_err(|e| corrupt(table_pos, format!("block table: {e}")))?;
        let mut seg =
            CompressedSegment { file, path: path.to_path_buf(), blocks, table_pos, len: SEGMENT_HEADER_LEN as u64 };
        if let Some(&(start, pos)) = seg.blocks.last() {
            let h = seg.header(pos, start)?;
            seg.len = start + u64::from(h.len);
        }
        Ok(seg)
    }

    fn corrupt(&self, pos: u64, what: String) -> Error {
        Error::corruption(&self.path, pos, None, format!("compressed segment: {what}"))
    }

    /// The header of the block at file position `pos`, which the table says starts at `start`.
    fn header(&self, pos: u64, start: u64) -> Result<BlockHeader> {
        let b = self.file.read_vec(pos, BLOCK_HEADER_LEN).map_err(|e| Error::io("read", &self.path, e))?;
        let h = decode_block_header(&b).map_err(|e| self.corrupt(pos, format!("block header: {e}")))?;
        let end = pos + BLOCK_HEADER_LEN as u64 + u64::from(h.compressed_len);
        if h.start != start || u64::from(h.len) > BLOCK_BYTES_MAX || end > self.table_pos {
            return Err(self.corrupt(pos, format!("block header {h:?} does not match the table")));
        }
        Ok(h)
    }

    /// Decompresses the block holding uncompressed position `pos` into `out` (replacing what it
    /// held); returns where the block starts in the uncompressed segment.
    pub fn read_block(&self, pos: u64, out: &mut Vec<u8>) -> Result<u64> {
        let i = self.blocks.partition_point(|b| b.0 <= pos).checked_sub(1);
        let Some(&(start, file_pos)) = i.and_then(|i| self.blocks.get(i)) else {
            return Err(self.corrupt(0, format!("no block holds position {pos}")));
        };
        let h = self.header(file_pos, start)?;
        let at = file_pos + BLOCK_HEADER_LEN as u64;
        let clen = h.compressed_len as usize;
        let mut both =
            self.file.read_vec(file_pos, BLOCK_HEADER_LEN + clen).map_err(|e| Error::io("read", &self.path, e))?;
        if both.len() != BLOCK_HEADER_LEN + clen {
            return Err(self.corrupt(at, "block cut short".into()));
        }
        let compressed = both.split_off(BLOCK_HEADER_LEN);
        check_block(&both, &compressed).map_err(|e| self.corrupt(file_pos, format!("block: {e}")))?;
        out.clear();
        out.resize(h.len as usize, 0);
        match lz4_flex::block::decompress_into(&compressed, out) {
            Ok(n) if n == out.len() => Ok(start),
            Ok(n) => Err(self.corrupt(at, format!("block decompressed to {n} bytes, its header says {}", h.len))),
            Err(e) => Err(self.corrupt(at, format!("block does not decompress: {e}"))),
        }
    }
}
