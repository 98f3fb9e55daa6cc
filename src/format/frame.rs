//! Frames (FORMAT.md § Frame): one record's bytes, its headers block, its CRC; encode into a
//! buffer or a map, decode from untrusted bytes.

use super::*;

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

/// A frame header's magic, version and flags checked; its flags.
#[inline]
fn check_frame_head(head: &[u8; FRAME_HEADER_LEN]) -> Result<u16, FrameError> {
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
    Ok(flags)
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
    let flags = check_frame_head(head)?;
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
