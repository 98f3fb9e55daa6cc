//! Records as applications write and read them.

use crate::format::reserved_headers::TOMBSTONE;
use crate::format::{DecodedFrame, HeadersIter};
use crate::storage::Bytes;
use std::ops::Range;

/// A record to append: payload plus optional event timestamp, key and headers.
#[derive(Debug, Clone, Default)]
pub struct NewRecord<'a> {
    /// Event time in milliseconds since the Unix epoch; `None` means now. Any value is allowed,
    /// out of order included, and stored as given.
    pub timestamp: Option<i64>,
    /// Optional key (an empty key is distinct from no key).
    pub key: Option<&'a [u8]>,
    /// Small named values, stored in the frame: at most 64, names 1..=255 bytes of UTF-8.
    pub headers: Vec<(&'a str, &'a [u8])>,
    /// The event's bytes.
    pub payload: &'a [u8],
}

impl<'a> NewRecord<'a> {
    /// A record with this payload, timestamp now, no key, no headers.
    pub fn new(payload: &'a [u8]) -> Self {
        NewRecord { payload, ..NewRecord::default() }
    }
    /// Sets the event timestamp (milliseconds since the Unix epoch).
    pub fn timestamp(mut self, ts: i64) -> Self {
        self.timestamp = Some(ts);
        self
    }
    /// Sets the key.
    pub fn key(mut self, key: &'a [u8]) -> Self {
        self.key = Some(key);
        self
    }
    /// Adds a header.
    pub fn header(mut self, name: &'a str, value: &'a [u8]) -> Self {
        self.headers.push((name, value));
        self
    }
    /// A tombstone for `key`: an empty payload marked with the `evlog.tombstone` header. When
    /// its topic is compacted it removes every older record of the key, and is itself removed
    /// once older than the compaction's `tombstone_retention`.
    pub fn tombstone(key: &'a [u8]) -> Self {
        NewRecord { key: Some(key), headers: vec![(TOMBSTONE, &[][..])], ..NewRecord::default() }
    }
}

/// Whether a record with this key, payload and `evlog.tombstone` header value is a tombstone.
fn tombstone(key: Option<&[u8]>, payload: &[u8], marker: Option<&[u8]>) -> bool {
    key.is_some() && payload.is_empty() && marker.is_some()
}

/// A record read back from the log. Owned and `Send`; when it comes from a mapped (sealed)
/// segment its bytes are not copied.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    offset: u64,
    timestamp: i64,
    frame: Bytes,
    spans: Spans,
}

/// Where a record's key, headers and payload lie in its frame, as `u32` positions (a frame
/// lies in one segment's bytes, which `Bytes` already addresses with `u32`s): 24 bytes instead
/// of 56 for three `usize` ranges, which keeps `Record` at 64 bytes, moved once per record by
/// every iterator.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Spans {
    /// `NO_KEY` when the record has no key (an empty key is `key_start == key_end`).
    key_start: u32,
    key_end: u32,
    headers_start: u32,
    headers_end: u32,
    payload_start: u32,
    payload_end: u32,
}

/// `Spans::key_start` of a record without a key.
const NO_KEY: u32 = u32::MAX;

impl Spans {
    #[inline]
    fn of(d: &DecodedFrame) -> Self {
        // Inside the frame (see `Record::from_frame`), whose length fits a `u32`; a position that
        // did not would read as missing, never as other bytes.
        let pos = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
        let (key_start, key_end) = d.key.as_ref().map_or((NO_KEY, NO_KEY), |k| (pos(k.start), pos(k.end)));
        Spans {
            key_start,
            key_end,
            headers_start: pos(d.headers.start),
            headers_end: pos(d.headers.end),
            payload_start: pos(d.payload.start),
            payload_end: pos(d.payload.end),
        }
    }
    #[inline]
    fn key(&self) -> Option<Range<usize>> {
        (self.key_start != NO_KEY).then_some(self.key_start as usize..self.key_end as usize)
    }
    #[inline]
    fn headers(&self) -> Range<usize> {
        self.headers_start as usize..self.headers_end as usize
    }
    #[inline]
    fn payload(&self) -> Range<usize> {
        self.payload_start as usize..self.payload_end as usize
    }
}

impl Record {
    /// `frame` holds exactly the frame's bytes and `d` was decoded from them (checksum matched),
    /// so every range of `d` lies inside `frame`: the accessors below never fall back.
    #[inline]
    pub(crate) fn from_frame(frame: Bytes, d: &DecodedFrame) -> Self {
        debug_assert!(
            d.len == frame.len()
                && d.payload.end <= frame.len()
                && d.headers.end <= d.payload.start
                && d.key.as_ref().is_none_or(|k| k.end <= d.headers.start),
            "a decoded frame's ranges lie inside its bytes"
        );
        Record { offset: d.offset, timestamp: d.timestamp, frame, spans: Spans::of(d) }
    }

    /// The record's offset in the log.
    #[inline]
    pub fn offset(&self) -> u64 {
        self.offset
    }
    /// Event time, milliseconds since the Unix epoch, as appended.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }
    /// The key, if the record has one.
    pub fn key(&self) -> Option<&[u8]> {
        self.spans.key().and_then(|r| self.frame.get(r))
    }
    /// The payload.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.frame.get(self.spans.payload()).unwrap_or_default()
    }
    /// The payload as an owned, zero-copy handle.
    pub fn payload_bytes(&self) -> Bytes {
        self.frame.slice(self.spans.payload()).unwrap_or_else(Bytes::empty)
    }
    /// The payload as an owned handle, consuming the record (no reference count traffic).
    pub fn into_payload(self) -> Bytes {
        self.frame.narrow(self.spans.payload()).unwrap_or_else(Bytes::empty)
    }
    /// The headers as `(name, value)` pairs, in the order they were appended.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        // The block was validated when the frame was decoded: names are UTF-8, lengths fit.
        HeadersIter::new(self.frame.get(self.spans.headers()).unwrap_or_default())
            .filter_map(Result::ok)
            .filter_map(|(n, v)| std::str::from_utf8(n).ok().map(|n| (n, v)))
    }
    /// The value of the first header with this name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
    /// Whether this is a tombstone ([`NewRecord::tombstone`]): a key, an empty payload and the
    /// `evlog.tombstone` header.
    pub fn is_tombstone(&self) -> bool {
        tombstone(self.key(), self.payload(), self.header(TOMBSTONE))
    }
}

/// A record borrowed from the log's bytes: what [`Log::scan`](crate::Log::scan) and
/// [`Iter::next_ref`](crate::log::Iter::next_ref) hand out. The same accessors as [`Record`],
/// without an allocation or a reference count per record; it lives until the next record is
/// read. Its checksum was verified like any record's.
#[derive(Clone, Copy)]
pub struct RecordRef<'a> {
    offset: u64,
    timestamp: i64,
    key: Option<&'a [u8]>,
    headers: &'a [u8],
    payload: &'a [u8],
}

impl<'a> RecordRef<'a> {
    /// `frame` holds exactly the frame's bytes and `d` was decoded from them (checksum matched).
    #[inline]
    pub(crate) fn from_frame(frame: &'a [u8], d: &DecodedFrame) -> Self {
        RecordRef {
            offset: d.offset,
            timestamp: d.timestamp,
            key: d.key.clone().and_then(|r| frame.get(r)),
            headers: frame.get(d.headers.clone()).unwrap_or_default(),
            payload: frame.get(d.payload.clone()).unwrap_or_default(),
        }
    }

    /// The record's offset in the log.
    pub fn offset(&self) -> u64 {
        self.offset
    }
    /// Event time, milliseconds since the Unix epoch, as appended.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }
    /// The key, if the record has one.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.key
    }
    /// The payload.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
    /// The headers as `(name, value)` pairs, in the order they were appended.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + use<'a> {
        // The block was validated when the frame was decoded: names are UTF-8, lengths fit.
        HeadersIter::new(self.headers)
            .filter_map(Result::ok)
            .filter_map(|(n, v)| std::str::from_utf8(n).ok().map(|n| (n, v)))
    }
    /// The value of the first header with this name.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
    /// Whether this is a tombstone ([`NewRecord::tombstone`]).
    pub fn is_tombstone(&self) -> bool {
        tombstone(self.key, self.payload, self.header(TOMBSTONE))
    }
}

impl std::fmt::Debug for RecordRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordRef")
            .field("offset", &self.offset)
            .field("timestamp", &self.timestamp)
            .field("key", &self.key)
            .field("headers", &self.headers().count())
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("offset", &self.offset)
            .field("timestamp", &self.timestamp)
            .field("key", &self.key())
            .field("headers", &self.headers().count())
            .field("payload_len", &self.payload().len())
            .finish()
    }
}
