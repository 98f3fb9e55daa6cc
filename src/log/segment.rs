//! One segment file: creation, header check, and a cursor that walks its frames.
//!
//! Invariants:
//! - A record never spans two segments, and neither does an atomic batch.
//! - A segment is fsynced, and its directory entry too, before its first frame is written; it is
//!   fsynced again before the roll that seals it creates the next segment. After that no byte of
//!   it changes: only retention (unlink) and repair (rename) touch a sealed segment.
//! - The cursor never returns a frame whose checksum failed, nor one at an unexpected offset,
//!   nor any byte at or past the end it was given.

// Lengths and positions read from disk are never narrowed with `as`: `try_from` or a checked
// helper, so an impossible value is an error, not a silently wrapped number.
#![deny(clippy::cast_possible_truncation)]

use crate::error::{LogError as Error, LogResult as Result};
use crate::format::{self, DecodedFrame, FRAME_HEADER_LEN, FrameError, SEGMENT_HEADER_LEN};
use crate::log::compressed::CompressedSegment;
use crate::storage::{Bytes, OpenMode, PublishedMap, SharedBytes, Storage, StorageFile};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Creates the segment whose first record will be `base_offset`: header written, file and
/// directory entry fsynced.
pub(crate) fn create_segment(storage: &dyn Storage, dir: &Path, base_offset: u64) -> Result<Arc<dyn StorageFile>> {
    let path = dir.join(format::segment_file_name(base_offset));
    let file = storage.open(&path, OpenMode::CreateNew).map_err(|e| Error::io("create", &path, e))?;
    file.write_all_at(&format::encode_segment_header(base_offset), 0).map_err(|e| Error::io("write", &path, e))?;
    file.sync_data().map_err(|e| Error::io("fsync", &path, e))?;
    storage.sync_dir(dir).map_err(|e| Error::io("fsync directory", dir, e))?;
    Ok(file)
}

/// Reads and checks a segment's header against the base offset its name promises; returns its
/// flags (`SEGMENT_FLAG_*`).
pub(crate) fn check_header(file: &dyn StorageFile, path: &Path, base_offset: u64) -> Result<u16> {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    let n = file.read_vec(0, SEGMENT_HEADER_LEN).map_err(|e| Error::io("read", path, e))?;
    if n.len() < SEGMENT_HEADER_LEN {
        return Err(Error::corruption(path, 0, None, format!("segment header cut short at {} bytes", n.len())));
    }
    h.copy_from_slice(&n);
    let (found, flags) = format::decode_segment_header_with_flags(&h)
        .map_err(|e| Error::corruption(path, 0, None, format!("segment header: {e}")))?;
    if found != base_offset {
        return Err(Error::corruption(path, 0, Some(base_offset), format!("segment header names base offset {found}")));
    }
    Ok(flags)
}

/// Where a cursor reads from.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// A sealed segment's bytes, mapped (or held in memory).
    Mapped(SharedBytes),
    /// A file read in chunks with pread into one reused buffer: a sequential scan of a sealed
    /// segment (a truncated file or a disk error is then an error, never `SIGBUS`), or the
    /// active segment, whose end moves. With a published map (the active segment of a writable
    /// log on real files), the published part is read from it instead: no system call per chunk.
    File(Arc<dyn StorageFile>, Option<PublishedMap>),
    /// A compressed sealed segment: each reload decompresses the block holding the position.
    Compressed(Arc<CompressedSegment>),
}

/// A cursor over the sealed segment in `file` (segment `base`) from `pos`, as its header's flags
/// ask: decompressing a compressed one, accepting the gaps of a compacted one, otherwise reading
/// with `pread`, `chunk_bytes` at a time.
pub(crate) fn sealed_cursor(
    file: Arc<dyn StorageFile>,
    path: &Path,
    base: u64,
    pos: u64,
    chunk_bytes: usize,
) -> Result<FrameCursor> {
    Ok(SealedFile::open(file, path, base)?.cursor(pos, chunk_bytes))
}

/// A sealed segment's file as its header describes it: plain or compressed, with or without
/// gaps; what every reader of a sealed file builds its cursors from.
#[derive(Debug, Clone)]
pub(crate) struct SealedFile {
    pub file: Arc<dyn StorageFile>,
    pub path: std::path::PathBuf,
    /// Length of the (uncompressed) segment.
    pub len: u64,
    /// Compacted: offsets may have gaps.
    pub gaps: bool,
    /// The block table, when compressed.
    pub compressed: Option<Arc<CompressedSegment>>,
}

impl SealedFile {
    /// Reads the header of segment `base` in `file` (and a compressed one's block table).
    pub fn open(file: Arc<dyn StorageFile>, path: &Path, base: u64) -> Result<SealedFile> {
        let flags = check_header(file.as_ref(), path, base)?;
        let compressed = if flags & format::SEGMENT_FLAG_COMPRESSED != 0 {
            Some(Arc::new(CompressedSegment::open(file.clone(), path)?))
        } else {
            None
        };
        let len = match &compressed {
            Some(c) => c.len,
            None => file.len().map_err(|e| Error::io("stat", path, e))?,
        };
        let gaps = flags & format::SEGMENT_FLAG_COMPACTED != 0;
        Ok(SealedFile { file, path: path.to_path_buf(), len, gaps, compressed })
    }

    /// A cursor from `pos`: decompressing block by block, or with `pread`, `chunk_bytes` at a time.
    pub fn cursor(&self, pos: u64, chunk_bytes: usize) -> FrameCursor {
        let source = match &self.compressed {
            Some(c) => Source::Compressed(c.clone()),
            None => Source::File(self.file.clone(), None),
        };
        FrameCursor::new(source, self.path.clone(), pos, self.len, chunk_bytes).with_gaps(self.gaps)
    }
}

/// One step of a cursor.
#[derive(Debug)]
pub(crate) enum Step {
    /// A valid frame at `position`; `bytes` holds exactly the frame.
    Frame { position: u64, frame: DecodedFrame, bytes: Bytes },
    /// The cursor reached its end exactly on a frame boundary.
    End,
    /// The bytes at `position` are not a valid frame at the expected offset.
    Bad { position: u64, error: FrameError },
}

/// One step of a cursor whose frame stays in the cursor: its bytes in the chunk, its decoded
/// fields in `FrameCursor::last` (not moved through the return: a scan's hot path).
#[derive(Debug)]
pub(crate) enum RawStep {
    /// A valid frame at `position`, `rel` bytes into the cursor's chunk; decoded in `last`.
    Frame { position: u64, rel: usize },
    /// The cursor reached its end exactly on a frame boundary.
    End,
    /// The bytes at `position` are not a valid frame at the expected offset.
    Bad { position: u64, error: FrameError },
}

/// Walks frames from a position up to an end, with one bounded buffer.
#[derive(Debug)]
pub(crate) struct FrameCursor {
    source: Source,
    pub path: PathBuf,
    pos: u64,
    end: u64,
    chunk_start: u64,
    chunk: SharedBytes,
    chunk_bytes: usize,
    /// Mapped bytes before this were released behind the cursor (see `release_behind`).
    released_to: u64,
    /// The frame the last `step_raw` decoded.
    pub last: DecodedFrame,
    /// The segment is compacted: a frame's offset may be above the one expected (never below).
    gaps: bool,
    /// A buffer handed back by a reader that held on to earlier chunks (see `offer_buffer`).
    spare: Option<Vec<u8>>,
}

/// How far a sequential scan of a mapped segment runs ahead of the last release of the pages
/// behind it.
const RELEASE_BEHIND_BYTES: u64 = 4 << 20;

/// Page size assumed for whole-page releases (a multiple of the real one everywhere evlog runs).
const PAGE_BYTES: u64 = 4096;

impl FrameCursor {
    pub fn new(source: Source, path: PathBuf, pos: u64, end: u64, chunk_bytes: usize) -> Self {
        let (chunk, end) = match &source {
            Source::Mapped(m) => (m.clone(), end.min(m.len() as u64)),
            Source::File(..) | Source::Compressed(_) => (SharedBytes::from_vec(Vec::new()), end),
        };
        FrameCursor {
            source,
            path,
            pos,
            end,
            chunk_start: 0,
            chunk,
            chunk_bytes: chunk_bytes.max(FRAME_HEADER_LEN),
            released_to: pos,
            last: DecodedFrame::default(),
            gaps: false,
            spare: None,
        }
    }

    /// This cursor, accepting offset gaps (a compacted segment) when `gaps`.
    pub fn with_gaps(mut self, gaps: bool) -> Self {
        self.gaps = gaps;
        self
    }

    /// Whether this cursor accepts offset gaps.
    pub fn gaps(&self) -> bool {
        self.gaps
    }

    /// Moves back to `pos`, the start of the frame the last step returned (its bytes are still
    /// in the chunk): a reader that stepped past the offset it looked for takes it again later.
    pub fn rewind_to(&mut self, pos: u64) {
        if pos >= self.chunk_start && pos <= self.pos {
            self.pos = pos;
        }
    }

    /// Takes a buffer for the next chunk read with `pread`, for when the current chunk is still
    /// held by records read from it: reused instead of a new allocation (whose pages must be
    /// faulted in and zeroed). A reader that keeps chunks (the streaming replay) hands back the
    /// ones it is done with.
    #[cfg(feature = "store")]
    pub fn offer_buffer(&mut self, buf: Vec<u8>) {
        if self.spare.is_none() {
            self.spare = Some(buf);
        }
    }

    pub fn position(&self) -> u64 {
        self.pos
    }

    /// A sequential scan of a mapped segment lets go of the pages it has passed (whole pages
    /// only), so RSS stays about twice `RELEASE_BEHIND_BYTES` per cursor whatever the log's
    /// size, and maps the next stretch ahead of it in one call.
    fn release_behind(&mut self) {
        let to = self.pos - self.pos % PAGE_BYTES;
        if let Source::Mapped(m) = &self.source
            && let (Ok(from), Ok(to)) = (usize::try_from(self.released_to), usize::try_from(to))
        {
            m.release(from..to);
            let ahead = usize::try_from(RELEASE_BEHIND_BYTES).unwrap_or(usize::MAX);
            m.prefetch(to..to.saturating_add(ahead));
        }
        self.released_to = to;
    }

    /// Moves the end (the active segment's visible end grows).
    pub fn set_end(&mut self, end: u64) {
        self.end = match &self.source {
            Source::Mapped(m) => end.min(m.len() as u64),
            Source::File(..) | Source::Compressed(_) => end,
        };
    }

    /// The bytes available in the current chunk from `self.pos`, up to `self.end`.
    #[inline]
    fn available(&self) -> &[u8] {
        let Some(rel) = self.pos.checked_sub(self.chunk_start) else { return &[] };
        let limit = (self.end - self.chunk_start).min(self.chunk.len() as u64);
        match (usize::try_from(rel), usize::try_from(limit)) {
            (Ok(r), Ok(l)) => self.chunk.get(r..l).unwrap_or_default(),
            _ => &[],
        }
    }

    /// Reads a new chunk starting at `self.pos` of at least `want` bytes (bounded by the end).
    fn reload(&mut self, want: usize) -> Result<()> {
        if let Source::Compressed(seg) = &self.source {
            // A block holds whole frames: the one at `pos` is in the block that holds `pos`.
            let old = std::mem::replace(&mut self.chunk, SharedBytes::from_vec(Vec::new()));
            let mut buf = old.into_unshared_vec().unwrap_or_default();
            self.chunk_start = seg.read_block(self.pos, &mut buf)?;
            self.chunk = SharedBytes::from_vec(buf);
            return Ok(());
        }
        let Source::File(file, published) = &self.source else { return Ok(()) };
        // `end` is the published end (cursors over the active segment are made and moved with
        // it), the bound the published map's contract asks for.
        if let Some(chunk) = published.as_ref().and_then(|m| m.prefix(self.end)) {
            self.chunk = chunk;
            self.chunk_start = 0;
            return Ok(());
        }
        // The smaller of a usize and a u64 fits a usize.
        let left = usize::try_from(self.end - self.pos).unwrap_or(usize::MAX);
        let len = want.max(self.chunk_bytes).min(left);
        // The last chunk's buffer is reused unless a record read from it is still held.
        let old = std::mem::replace(&mut self.chunk, SharedBytes::from_vec(Vec::new()));
        let mut buf = old.into_unshared_vec().or_else(|| self.spare.take()).unwrap_or_default();
        file.read_into(self.pos, len, &mut buf).map_err(|e| Error::io("read", &self.path, e))?;
        self.chunk = SharedBytes::from_vec(buf);
        self.chunk_start = self.pos;
        Ok(())
    }

    /// Decodes the next frame, which must hold `expected` (when given).
    pub fn step(&mut self, expected: Option<u64>) -> Result<Step> {
        Ok(match self.step_raw(expected)? {
            RawStep::Frame { position, rel } => {
                let frame = std::mem::take(&mut self.last);
                let bytes = self.frame_bytes(rel, frame.len).ok_or_else(|| self.outside(position, &frame))?;
                Step::Frame { position, frame, bytes }
            }
            RawStep::End => Step::End,
            RawStep::Bad { position, error } => Step::Bad { position, error },
        })
    }

    /// The frame `step_raw` just returned, as an owned handle (a reference on the chunk).
    #[inline]
    pub fn frame_bytes(&self, rel: usize, len: usize) -> Option<Bytes> {
        self.chunk.slice(rel..rel.checked_add(len)?)
    }

    /// The bytes read now (the frame `step_raw` just returned lies in them).
    #[cfg(feature = "store")]
    pub fn chunk(&self) -> &SharedBytes {
        &self.chunk
    }

    /// The frame `step_raw` just returned, borrowed from the chunk.
    #[inline]
    pub fn frame_slice(&self, rel: usize, len: usize) -> Option<&[u8]> {
        self.chunk.get(rel..rel.checked_add(len)?)
    }

    /// The error for a frame that decoded but does not lie in the bytes read (never expected:
    /// it decoded from them).
    pub fn outside(&self, position: u64, frame: &DecodedFrame) -> Error {
        Error::corruption(&self.path, position, Some(frame.offset), "frame outside the bytes read")
    }

    /// Decodes the next frame like `step`, leaving its bytes in the cursor's chunk at `rel`
    /// (valid until the next step), so a caller can borrow them instead of taking a reference.
    #[inline]
    pub fn step_raw(&mut self, expected: Option<u64>) -> Result<RawStep> {
        if self.pos >= self.end {
            return Ok(RawStep::End);
        }
        let remaining = self.end - self.pos;
        if (self.available().len() as u64) < remaining.min(FRAME_HEADER_LEN as u64) {
            self.reload(FRAME_HEADER_LEN)?;
        }
        // In a compacted segment the frame's offset is checked below: at or above `expected`.
        let exact = if self.gaps { None } else { expected };
        let mut result = format::decode_frame(self.available(), exact);
        if let Err(FrameError::Truncated { needed }) = result
            && (needed as u64) <= remaining
            && self.available().len() < needed
        {
            self.reload(needed)?;
            result = format::decode_frame(self.available(), exact);
        }
        if let (Ok(frame), Some(expected)) = (&result, expected)
            && frame.offset < expected
        {
            result = Err(FrameError::WrongOffset { expected, found: frame.offset });
        }
        match result {
            Ok(frame) => {
                let position = self.pos;
                // The frame decoded from `available()`, which starts `rel` bytes into the chunk.
                let rel = usize::try_from(position - self.chunk_start).map_err(|_| self.outside(position, &frame))?;
                self.pos += frame.len as u64;
                self.last = frame;
                if self.pos - self.released_to >= RELEASE_BEHIND_BYTES {
                    self.release_behind();
                }
                Ok(RawStep::Frame { position, rel })
            }
            Err(error) => Ok(RawStep::Bad { position: self.pos, error }),
        }
    }
}

/// What a `FrameCursor::scan_frames` callback did with the frame it was handed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Took it; hand the next.
    Next,
    /// Took it; stop.
    Stop,
    /// Did not take it: stop before it, so the next read starts with it.
    #[cfg_attr(not(feature = "store"), allow(dead_code))]
    Leave,
}

impl FrameCursor {
    /// Hands `f` the frames already in the current chunk from the cursor's position, in order,
    /// while their offsets stay below `limit` (what is known to be readable) and they decode
    /// cleanly; returns the offset after the last one taken and whether `f` stopped the loop.
    /// The first frame must hold `expected` (or, in a compacted segment, a later offset). A
    /// frame that does not decode here (cut by the chunk's end, damaged, past `limit`) is left
    /// for `step_raw`, which reads on or reports it: this loop only skips the per-record
    /// bookkeeping of the general path, never a check. `f` gets the chunk, where the frame
    /// starts in it, the frame's bytes and the decoded frame (whose ranges are relative to its
    /// start).
    #[inline]
    pub fn scan_frames(
        &mut self,
        mut expected: u64,
        limit: u64,
        mut f: impl FnMut(&SharedBytes, usize, &[u8], &DecodedFrame) -> Taken,
    ) -> (u64, bool) {
        let mut last = None;
        let mut stopped = false;
        while !stopped && expected < limit && self.pos < self.end {
            let Some(rel) = self.pos.checked_sub(self.chunk_start).and_then(|r| usize::try_from(r).ok()) else { break };
            let limit_in_chunk = usize::try_from(self.end - self.chunk_start).unwrap_or(usize::MAX);
            let Some(avail) = self.chunk.get(rel..limit_in_chunk.min(self.chunk.len())) else { break };
            let exact = if self.gaps { None } else { Some(expected) };
            let Ok(frame) = format::decode_frame(avail, exact) else { break };
            if frame.offset < expected || frame.offset >= limit {
                break;
            }
            let Some(bytes) = avail.get(..frame.len) else { break };
            match f(&self.chunk, rel, bytes, &frame) {
                Taken::Leave => {
                    stopped = true;
                    continue;
                }
                Taken::Stop => stopped = true,
                Taken::Next => {}
            }
            self.pos += frame.len as u64;
            expected = frame.offset + 1;
            last = Some(frame);
            if self.pos - self.released_to >= RELEASE_BEHIND_BYTES {
                self.release_behind();
            }
        }
        if let Some(frame) = last {
            self.last = frame;
        }
        (expected, stopped)
    }
}

/// What a scan over complete batches found.
#[derive(Debug)]
pub(crate) struct Scan {
    /// End of the last frame that completes a batch, and the offset after it.
    pub complete_pos: u64,
    pub complete_next: u64,
    /// Where scanning stopped short of the end, and why (`None`: clean end). A batch whose last
    /// frame is missing at the end counts as truncated there.
    pub bad: Option<(u64, FrameError)>,
    /// Valid frames after `complete_pos` that belong to an unfinished batch.
    pub pending: u64,
    /// Frames and bytes verified.
    pub frames: u64,
    pub bytes: u64,
}

/// Walks `cursor` expecting offset `next` first (segment base `base`), and hands each complete
/// batch to `index` (relative offset, position, length, timestamp per frame). Frames of a batch
/// whose last frame never comes are not handed over.
pub(crate) fn scan_batches(
    cursor: &mut FrameCursor,
    base: u64,
    next: u64,
    mut index: impl FnMut(u64, u64, u64, i64),
) -> Result<Scan> {
    let from = cursor.position();
    let mut s = Scan { complete_pos: from, complete_next: next, bad: None, pending: 0, frames: 0, bytes: 0 };
    let mut batch: Vec<(u64, u64, u64, i64)> = Vec::new();
    let mut expected = next;
    loop {
        match cursor.step(Some(expected))? {
            Step::Frame { position, frame, .. } => {
                s.frames += 1;
                s.bytes += frame.len as u64;
                batch.push((frame.offset - base, position, frame.len as u64, frame.timestamp));
                // The same as `expected + 1` except in a compacted segment, where offsets skip.
                expected = frame.offset + 1;
                if !frame.batch_continues() {
                    for &(rel, pos, len, ts) in &batch {
                        index(rel, pos, len, ts);
                    }
                    batch.clear();
                    s.complete_pos = position + frame.len as u64;
                    s.complete_next = expected;
                }
            }
            Step::End => {
                if !batch.is_empty() {
                    s.bad = Some((cursor.position(), FrameError::Truncated { needed: FRAME_HEADER_LEN }));
                }
                break;
            }
            Step::Bad { position, error } => {
                s.bad = Some((position, error));
                break;
            }
        }
    }
    s.pending = batch.len() as u64;
    Ok(s)
}
