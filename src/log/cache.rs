//! Sealed segments kept mapped, at most `open_segments_max` of them and `mapped_bytes_max` bytes
//! at once (least recently used out).
//!
//! A sealed segment is mapped once, its file handle closed, and its index files mapped beside
//! it; a log of 10,000 segments therefore holds at most `open_segments_max` maps and no file
//! descriptors for sealed segments.

use crate::error::{LogError as Error, LogResult as Result};
use crate::format::{self, SEGMENT_HEADER_LEN};
use crate::log::compressed::CompressedSegment;
use crate::log::index::{self, IndexBuilder, LoadedIndex};
use crate::log::segment::{self, FrameCursor, SealedFile, Source};
use crate::storage::{OpenMode, SharedBytes, Storage, StorageFile};

/// Read size of an index rebuild's scan.
const REBUILD_CHUNK_BYTES: usize = 1 << 20;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A mapped sealed segment with its validated index.
#[derive(Debug)]
pub(crate) struct Sealed {
    /// Offset after its last record (the next segment's base).
    pub end_offset: u64,
    pub path: PathBuf,
    /// The mapped file (empty for a compressed segment, which is never mapped).
    pub data: SharedBytes,
    pub index: LoadedIndex,
    /// Rewritten by compaction: its offsets may have gaps.
    pub compacted: bool,
    /// The block table of a compressed segment.
    pub compressed: Option<Arc<CompressedSegment>>,
    /// The file that was loaded: scans read this one, never the path again, so a compaction or
    /// compression that swaps the segment meanwhile cannot put another file's bytes under this
    /// one's flags and index.
    pub file: Arc<dyn StorageFile>,
}

impl Sealed {
    /// A cursor over the mapped frames from `pos` to the end of the segment, for reads of a
    /// few records (random access).
    pub fn cursor(&self, pos: u64) -> FrameCursor {
        let (source, end) = match &self.compressed {
            Some(c) => (Source::Compressed(c.clone()), c.len),
            None => (Source::Mapped(self.data.clone()), u64::MAX),
        };
        FrameCursor::new(source, self.path.clone(), pos, end, 0).with_gaps(self.compacted)
    }

    /// A cursor that reads the segment from `pos` to its end with `pread`, `chunk_bytes` at a
    /// time into one reused buffer, for sequential scans: nothing of the file stays in the
    /// process's resident set, and a file truncated or unreadable under it is an error, never
    /// `SIGBUS`.
    pub fn scan_cursor(&self, pos: u64, chunk_bytes: usize) -> FrameCursor {
        if self.compressed.is_some() {
            // Blocks are read with pread already.
            return self.cursor(pos);
        }
        let end = self.data.len() as u64;
        FrameCursor::new(Source::File(self.file.clone(), None), self.path.clone(), pos, end, chunk_bytes)
            .with_gaps(self.compacted)
    }
}

/// How much the cache may hold: `open_segments_max` and `mapped_bytes_max`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CacheLimits {
    pub segments: usize,
    pub bytes: u64,
}

#[derive(Debug, Default)]
pub(crate) struct SegmentCache {
    entries: Vec<(u64, Arc<Sealed>, u64)>,
    tick: u64,
    /// Sealed indexes found missing or invalid and rebuilt from their segment.
    pub rebuilds: u64,
}

impl SegmentCache {
    /// The sealed segment at `base` (records `base..end_offset`), loading it if needed.
    /// `write_index`: a rebuilt index may be written back (writable logs only).
    pub fn get(
        &mut self,
        storage: &dyn Storage,
        dir: &Path,
        base: u64,
        end_offset: u64,
        limits: CacheLimits,
        write_index: bool,
    ) -> Result<Arc<Sealed>> {
        self.tick += 1;
        if let Some(e) = self.entries.iter_mut().find(|e| e.0 == base && e.1.end_offset == end_offset) {
            e.2 = self.tick;
            return Ok(e.1.clone());
        }
        let (sealed, rebuilt) = load(storage, dir, base, end_offset, write_index)?;
        let sealed = Arc::new(sealed);
        self.rebuilds += u64::from(rebuilt);
        self.entries.retain(|e| e.0 != base);
        // Least recently used out, until both limits hold with the new one in (which is kept
        // even when it alone is over the byte limit: a reader needs it).
        let mapped = |entries: &[(u64, Arc<Sealed>, u64)]| entries.iter().map(|e| e.1.data.len() as u64).sum::<u64>();
        while !self.entries.is_empty()
            && (self.entries.len() >= limits.segments
                || mapped(&self.entries) + sealed.data.len() as u64 > limits.bytes)
            && let Some(i) = self.entries.iter().enumerate().min_by_key(|(_, e)| e.2).map(|(i, _)| i)
        {
            self.entries.swap_remove(i);
        }
        self.entries.push((base, sealed.clone(), self.tick));
        Ok(sealed)
    }

    /// Forgets segments below `first_base` (removed by retention) and everything at or above
    /// `from_base` (changed by a roll seen by a reader).
    pub fn forget_outside(&mut self, first_base: u64, from_base: u64) {
        self.entries.retain(|e| e.0 >= first_base && e.0 < from_base);
    }

    /// Forgets segment `base` (rewritten by compaction).
    pub fn forget(&mut self, base: u64) {
        self.entries.retain(|e| e.0 != base);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Maps a sealed segment and loads (or rebuilds: `true`) its index.
fn load(storage: &dyn Storage, dir: &Path, base: u64, end_offset: u64, write_index: bool) -> Result<(Sealed, bool)> {
    let path = dir.join(format::segment_file_name(base));
    let file = storage.open(&path, OpenMode::Read).map_err(|e| Error::io("open", &path, e))?;
    let sealed_file = SealedFile::open(file.clone(), &path, base)?;
    let (compacted, len) = (sealed_file.gaps, sealed_file.len);
    // A compressed segment is never mapped: its blocks are read when needed.
    let data = match &sealed_file.compressed {
        Some(_) => SharedBytes::from_vec(Vec::new()),
        None => file.map(crate::storage::INTERNAL).map_err(|e| Error::io("map", &path, e))?,
    };
    let expected_records = end_offset - base;
    // A compacted segment holds fewer records than its offsets span.
    let count_fits = |n: u64| if compacted { n <= expected_records } else { n == expected_records };
    let (index, rebuilt) = match LoadedIndex::load(storage, dir, base, true) {
        Some(ix) if ix.header.covered_bytes == len && count_fits(ix.header.record_count) => (ix, false),
        _ => {
            let b = rebuild(&sealed_file, base, end_offset)?;
            if write_index {
                index::write_index_files(storage, dir, &b);
            }
            (LoadedIndex::from_builder(&b), true)
        }
    };
    Ok((Sealed { end_offset, path, data, index, compacted, compressed: sealed_file.compressed, file }, rebuilt))
}

/// Scans a whole sealed segment of `len` bytes with `pread` (not its map: a file cut short
/// under it is then an error, never `SIGBUS`), verifying every frame, and builds its index.
fn rebuild(sealed_file: &SealedFile, base: u64, end_offset: u64) -> Result<IndexBuilder> {
    let (path, compacted) = (&sealed_file.path, sealed_file.gaps);
    // Interval of the rebuilt index: the default granule; sealed indexes need not match options.
    let mut b = IndexBuilder::new(base, 4096);
    let mut cursor = sealed_file.cursor(SEGMENT_HEADER_LEN as u64, REBUILD_CHUNK_BYTES);
    let scan = segment::scan_batches(&mut cursor, base, base, |rel, pos, len, ts| b.push(rel, pos, len, ts))?;
    // The offset expected where scanning stopped: after the complete batches and any pending frames.
    let next = scan.complete_next + scan.pending;
    if let Some((position, error)) = scan.bad {
        return Err(Error::corruption(path, position, Some(next), format!("sealed segment: {error}")));
    }
    if next != end_offset && !(compacted && next <= end_offset) {
        return Err(Error::corruption(
            path,
            cursor.position(),
            Some(next),
            format!("sealed segment ends at offset {next}, the next segment starts at {end_offset}"),
        ));
    }
    Ok(b)
}
