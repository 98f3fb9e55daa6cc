//! Compression of sealed segments (LZ4 blocks; FORMAT.md § Compressed segments): the writer.
//! Reading one is `compressed.rs`'s.
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
use crate::format::compressed::{BLOCK_BYTES_TARGET, BlockHeader, CODEC_LZ4, encode_block_header, encode_table};
use crate::format::{self, SEGMENT_FLAG_COMPRESSED, SEGMENT_HEADER_LEN};
use crate::log::index::IndexBuilder;
use crate::log::rewrite::Input;
use crate::log::segment::{self, RawStep};
use crate::log::{Log, Shared, consecutive};
use crate::storage::StorageFile;
use std::path::Path;

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
        let sealed: Vec<(u64, u64)> = consecutive(&s.published.view().bases.clone()).collect();
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
