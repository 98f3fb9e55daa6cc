//! Compression of sealed segments (LZ4 blocks; FORMAT.md § Compressed segments).
//!
//! A compressed segment keeps every frame at the position it had: its frames are cut into
//! blocks of whole frames (about `BLOCK_BYTES_TARGET` uncompressed), each compressed and
//! checksummed after compression, followed by a table of where each block starts. So its index
//! files are the same as before, a reader finds a frame through the index and decompresses only
//! the block that holds it, and frame checksums are still verified on every read. The active
//! segment is never compressed.
//!
//! Invariants:
//! - A block holds whole frames: a frame is never split between blocks.
//! - A block's checksum is verified before it is decompressed; a bad block, table or trailer is
//!   `Corruption` naming the file and position, never a panic.
//! - A segment is compressed like compaction rewrites one, through `rewrite.rs`: one owner at a
//!   time, a temp file of its own, swapped only if the segment is still the file it read.

use crate::error::{LogError as Error, LogResult as Result};
use crate::format::compressed::{
    BLOCK_BYTES_TARGET, BLOCK_HEADER_LEN, BlockHeader, CODEC_LZ4, TABLE_ENTRY_LEN, TRAILER_LEN, check_block,
    decode_block_header, decode_table, decode_trailer, encode_block_header, encode_table,
};
use crate::format::{self, SEGMENT_FLAG_COMPRESSED, SEGMENT_HEADER_LEN};
use crate::log::index::IndexBuilder;
use crate::log::rewrite::Input;
use crate::log::segment::{self, RawStep};
use crate::log::{Log, Shared, consecutive};
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

/// What [`Log::compress`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompressReport {
    /// Sealed segments compressed now.
    pub segments_compressed: u64,
    /// Their file bytes before.
    pub bytes_before: u64,
    /// Their file bytes after.
    pub bytes_after: u64,
}

impl Log {
    /// Compresses every sealed segment not compressed yet (LZ4 blocks). Readers go on
    /// meanwhile and read the same records from the compressed files. One rewrite of the log
    /// runs at a time (compaction, compression, backup's links, retention wait for each other).
    pub fn compress(&self) -> Result<CompressReport> {
        let s = &self.shared;
        s.writable()?;
        crate::trace::span!("evlog.compress", dir = %s.dir.display());
        let _owner = s.rewrite_owner();
        let sealed: Vec<(u64, u64)> = consecutive(&s.view().bases.clone()).collect();
        let mut report = CompressReport::default();
        for (base, end) in sealed {
            let Some(input) = s.open_for_rewrite(base, end)? else { continue };
            if input.identity.flags & SEGMENT_FLAG_COMPRESSED != 0 {
                continue;
            }
            if let Some(after) =
                s.replace_sealed(&input, "compress", |out, tmp| write_compressed(s, &input, out, tmp))?
            {
                report.segments_compressed += 1;
                report.bytes_before += input.identity.len;
                report.bytes_after += after;
            }
        }
        Ok(report)
    }
}

/// Writes the segment `input` read, compressed, into `out`; returns its index (the same
/// positions as the original) and its length.
fn write_compressed(s: &Shared, input: &Input, out: &dyn StorageFile, tmp: &Path) -> Result<(IndexBuilder, u64)> {
    let (base, path) = (input.base, &input.path);
    out.write_all_at(
        &format::encode_segment_header_with_flags(base, input.identity.flags | SEGMENT_FLAG_COMPRESSED),
        0,
    )
    .map_err(|e| Error::io("write", tmp, e))?;
    let mut at = SEGMENT_HEADER_LEN as u64;
    let mut cursor =
        segment::sealed_cursor(input.file.clone(), path, base, SEGMENT_HEADER_LEN as u64, BLOCK_BYTES_TARGET)?;
    let mut index = IndexBuilder::new(base, s.opts.index_interval_bytes);
    let mut table = Vec::new();
    let mut block: Vec<u8> = Vec::with_capacity(BLOCK_BYTES_TARGET * 2);
    let mut block_start = SEGMENT_HEADER_LEN as u64;
    let mut compressed = Vec::new();
    let mut flush = |block: &mut Vec<u8>, block_start: u64, at: &mut u64, table: &mut Vec<(u64, u64)>| -> Result<()> {
        if block.is_empty() {
            return Ok(());
        }
        compressed.clear();
        compressed.resize(lz4_flex::block::get_maximum_output_size(block.len()), 0);
        let n = lz4_flex::block::compress_into(block, &mut compressed)
            .map_err(|e| Error::io("compress", tmp, std::io::Error::other(e.to_string())))?;
        compressed.truncate(n);
        let h = BlockHeader {
            codec: CODEC_LZ4,
            start: block_start,
            len: u32::try_from(block.len()).unwrap_or(u32::MAX),
            compressed_len: u32::try_from(n).unwrap_or(u32::MAX),
        };
        let mut bytes = encode_block_header(&h, &compressed).to_vec();
        bytes.extend_from_slice(&compressed);
        out.write_all_at(&bytes, *at).map_err(|e| Error::io("write", tmp, e))?;
        table.push((block_start, *at));
        *at += bytes.len() as u64;
        block.clear();
        Ok(())
    };
    loop {
        match cursor.step_raw(None)? {
            RawStep::Frame { position, rel } => {
                let frame = &cursor.last;
                let bytes = cursor.frame_slice(rel, frame.len).ok_or_else(|| cursor.outside(position, frame))?;
                if block.len() + bytes.len() > BLOCK_BYTES_TARGET && !block.is_empty() {
                    flush(&mut block, block_start, &mut at, &mut table)?;
                }
                if block.is_empty() {
                    block_start = position;
                }
                index.push(frame.offset - base, position, frame.len as u64, frame.timestamp);
                block.extend_from_slice(bytes);
            }
            RawStep::End => break,
            RawStep::Bad { position, error } => {
                return Err(Error::corruption(path, position, None, format!("sealed segment: {error}")));
            }
        }
    }
    flush(&mut block, block_start, &mut at, &mut table)?;
    let tail = encode_table(&table, at);
    out.write_all_at(&tail, at).map_err(|e| Error::io("write", tmp, e))?;
    at += tail.len() as u64;
    Ok((index, at))
}
