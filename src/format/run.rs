//! Replay run files (`<root>/replay-tmp/<pid>-<nanos>/run-<n>`): sorted runs a replay spills when
//! its buffer is full, read back once and deleted. FORMAT.md § Replay run files. Pure
//! encode/decode; an entry is checked by a CRC-32 over its header and body.

/// Event timestamp (i64).
pub const RUN_TIMESTAMP_AT: usize = 0;
/// The topic's rank among the replay's sorted topics (u16).
pub const RUN_TOPIC_AT: usize = RUN_TIMESTAMP_AT + 8;
/// The record's offset (u64).
pub const RUN_OFFSET_AT: usize = RUN_TOPIC_AT + 2;
/// Key length (u32), [`RUN_NO_KEY`] for no key.
pub const RUN_KEY_LEN_AT: usize = RUN_OFFSET_AT + 8;
/// Payload length (u32).
pub const RUN_PAYLOAD_LEN_AT: usize = RUN_KEY_LEN_AT + 4;
/// CRC-32 of the header bytes before it, XORed with the CRC-32 of the body (key, payload).
pub const RUN_CRC_AT: usize = RUN_PAYLOAD_LEN_AT + 4;
/// Length of an entry's header; the key and the payload follow.
pub const RUN_ENTRY_HEADER_LEN: usize = RUN_CRC_AT + 4;
/// Key length meaning "no key".
pub const RUN_NO_KEY: u32 = u32::MAX;

const _: () = assert!(RUN_ENTRY_HEADER_LEN == 30);

/// Appends one entry. Lengths come from a record that was read from the log, so they fit.
pub fn encode_run_entry(out: &mut Vec<u8>, key: (i64, u16, u64), record_key: Option<&[u8]>, payload: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&key.0.to_le_bytes());
    out.extend_from_slice(&key.1.to_le_bytes());
    out.extend_from_slice(&key.2.to_le_bytes());
    let key_len = record_key.map_or(RUN_NO_KEY, |k| super::checked_u32(k.len()));
    out.extend_from_slice(&key_len.to_le_bytes());
    out.extend_from_slice(&super::checked_u32(payload.len()).to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    if let Some(k) = record_key {
        out.extend_from_slice(k);
    }
    out.extend_from_slice(payload);
    let entry = out.get_mut(start..).unwrap_or_default();
    let crc = crc32fast::hash(entry.get(RUN_ENTRY_HEADER_LEN..).unwrap_or_default())
        ^ crc32fast::hash(entry.get(..RUN_CRC_AT).unwrap_or_default());
    if let Some(slot) = entry.get_mut(RUN_CRC_AT..RUN_ENTRY_HEADER_LEN) {
        slot.copy_from_slice(&crc.to_le_bytes());
    }
}

/// An entry's header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunEntryHeader {
    /// (timestamp, topic rank, offset): the merge key.
    pub key: (i64, u16, u64),
    /// Key length, `None` for no key.
    pub key_len: Option<usize>,
    /// Payload length.
    pub payload_len: usize,
    crc: u32,
    head_crc: u32,
}

impl RunEntryHeader {
    /// Bytes of the whole entry (header, key, payload).
    pub fn entry_len(&self) -> usize {
        RUN_ENTRY_HEADER_LEN + self.key_len.unwrap_or(0) + self.payload_len
    }

    /// Checks `body` (the key then the payload) against the entry's CRC and splits it into
    /// (key, payload).
    pub fn check_body<'a>(&self, body: &'a [u8]) -> Result<(Option<&'a [u8]>, &'a [u8]), &'static str> {
        if crc32fast::hash(body) ^ self.head_crc != self.crc {
            return Err("checksum mismatch");
        }
        let (key, payload) = body.split_at_checked(self.key_len.unwrap_or(0)).ok_or("key longer than entry")?;
        Ok((self.key_len.map(|_| key), payload))
    }
}

/// Decodes an entry's header; the lengths are checked against `RECORD_BYTES_LIMIT`.
pub fn decode_run_entry_header(h: &[u8; RUN_ENTRY_HEADER_LEN]) -> Result<RunEntryHeader, &'static str> {
    let field = |at: usize| super::le_u64(h, at);
    let key_len = super::le_u32(h, RUN_KEY_LEN_AT);
    let payload_len = super::le_u32(h, RUN_PAYLOAD_LEN_AT);
    let body = u64::from(if key_len == RUN_NO_KEY { 0 } else { key_len }) + u64::from(payload_len);
    if body > super::RECORD_BYTES_LIMIT {
        return Err("impossible length");
    }
    Ok(RunEntryHeader {
        key: (super::le_i64(h, RUN_TIMESTAMP_AT), super::le_u16(h, RUN_TOPIC_AT), field(RUN_OFFSET_AT)),
        key_len: (key_len != RUN_NO_KEY).then_some(key_len as usize),
        payload_len: payload_len as usize,
        crc: super::le_u32(h, RUN_CRC_AT),
        head_crc: crc32fast::hash(h.get(..RUN_CRC_AT).unwrap_or_default()),
    })
}
