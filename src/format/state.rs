//! The values evlog keeps in the consumer database (sled), byte for byte: FORMAT.md § Consumer
//! database. Pure encode/decode; a decoder returns what is wrong, never a guess.

/// A group's committed value: the offset the group reads next, then the commit time.
pub const COMMITTED_OFFSET_AT: usize = 0;
/// Commit time, ms since the Unix epoch (i64).
pub const COMMITTED_AT_MS_AT: usize = COMMITTED_OFFSET_AT + 8;
/// Length of a committed value.
pub const COMMITTED_LEN: usize = COMMITTED_AT_MS_AT + 8;

/// A work queue's cursor value: the first offset never delivered (u64).
pub const QUEUE_CURSOR_LEN: usize = 8;
/// A work queue entry's key: its offset, **big-endian** so keys sort by offset.
pub const QUEUE_ENTRY_KEY_LEN: usize = 8;
/// A work queue entry's value: deliveries so far (u32)...
pub const QUEUE_DELIVERIES_AT: usize = 0;
/// ...then the time before which it is not delivered again, ms since the epoch (i64; 0 = now).
pub const QUEUE_READY_AT_MS_AT: usize = QUEUE_DELIVERIES_AT + 4;
/// Length of a queue entry's value.
pub const QUEUE_ENTRY_LEN: usize = QUEUE_READY_AT_MS_AT + 8;

/// A work queue's head value: its floor (every offset below it is finished) (u64)...
pub const QUEUE_FLOOR_AT: usize = 0;
/// ...then its cursor, the first offset never delivered (u64).
pub const QUEUE_HEAD_CURSOR_AT: usize = QUEUE_FLOOR_AT + 8;
/// Length of a queue head value.
pub const QUEUE_HEAD_LEN: usize = QUEUE_HEAD_CURSOR_AT + 8;
/// An ack chunk's key: this tag byte...
pub const QUEUE_ACK_CHUNK_TAG: u8 = b'a';
/// ...then the chunk's number, u64 **big-endian** (chunk `n` covers offsets
/// `n × QUEUE_ACK_CHUNK_OFFSETS ..` the next chunk).
pub const QUEUE_ACK_CHUNK_KEY_LEN: usize = 1 + 8;
/// Offsets one ack chunk covers.
pub const QUEUE_ACK_CHUNK_OFFSETS: u64 = 1024;
/// An ack chunk's value: one bit per offset, bit `i % 8` of byte `i / 8` for the chunk's `i`-th
/// offset; set = finished (acked or dead-lettered).
pub const QUEUE_ACK_CHUNK_LEN: usize = (QUEUE_ACK_CHUNK_OFFSETS / 8) as usize;

const _: () = assert!(COMMITTED_LEN == 16 && QUEUE_ENTRY_LEN == 12 && QUEUE_HEAD_LEN == 16);
const _: () = assert!(QUEUE_ACK_CHUNK_LEN == 128 && QUEUE_ACK_CHUNK_KEY_LEN != QUEUE_ENTRY_KEY_LEN);

/// Encodes a committed value.
pub fn encode_committed(offset: u64, at_ms: i64) -> [u8; COMMITTED_LEN] {
    let mut v = [0u8; COMMITTED_LEN];
    let (o, t) = v.split_at_mut(COMMITTED_AT_MS_AT);
    o.copy_from_slice(&offset.to_le_bytes());
    t.copy_from_slice(&at_ms.to_le_bytes());
    v
}

/// Decodes a committed value into (offset, commit time).
pub fn decode_committed(v: &[u8]) -> Result<(u64, i64), String> {
    let Ok(b) = <[u8; COMMITTED_LEN]>::try_from(v) else {
        return Err(format!("committed value of {} bytes, expected {COMMITTED_LEN}", v.len()));
    };
    let [o0, o1, o2, o3, o4, o5, o6, o7, at_ms @ ..] = b;
    Ok((u64::from_le_bytes([o0, o1, o2, o3, o4, o5, o6, o7]), i64::from_le_bytes(at_ms)))
}

/// Decodes a queue cursor value.
pub fn decode_queue_cursor(v: &[u8]) -> Result<u64, String> {
    <[u8; QUEUE_CURSOR_LEN]>::try_from(v)
        .map(u64::from_le_bytes)
        .map_err(|_| format!("cursor of {} bytes, expected {QUEUE_CURSOR_LEN}", v.len()))
}

/// Encodes a queue head value (floor, cursor).
pub fn encode_queue_head(floor: u64, cursor: u64) -> [u8; QUEUE_HEAD_LEN] {
    let mut v = [0u8; QUEUE_HEAD_LEN];
    let (f, c) = v.split_at_mut(QUEUE_HEAD_CURSOR_AT);
    f.copy_from_slice(&floor.to_le_bytes());
    c.copy_from_slice(&cursor.to_le_bytes());
    v
}

/// Decodes a queue head value into (floor, cursor); a floor above the cursor is refused.
pub fn decode_queue_head(v: &[u8]) -> Result<(u64, u64), String> {
    let Ok(b) = <[u8; QUEUE_HEAD_LEN]>::try_from(v) else {
        return Err(format!("queue head of {} bytes, expected {QUEUE_HEAD_LEN}", v.len()));
    };
    let [f0, f1, f2, f3, f4, f5, f6, f7, cursor @ ..] = b;
    let (floor, cursor) = (u64::from_le_bytes([f0, f1, f2, f3, f4, f5, f6, f7]), u64::from_le_bytes(cursor));
    if floor > cursor {
        return Err(format!("queue head with floor {floor} above its cursor {cursor}"));
    }
    Ok((floor, cursor))
}

/// Encodes the key of ack chunk `chunk`.
pub fn encode_ack_chunk_key(chunk: u64) -> [u8; QUEUE_ACK_CHUNK_KEY_LEN] {
    let [n0, n1, n2, n3, n4, n5, n6, n7] = chunk.to_be_bytes();
    [QUEUE_ACK_CHUNK_TAG, n0, n1, n2, n3, n4, n5, n6, n7]
}

/// Whether `k` is an ack chunk's key (tag and length), and if so its chunk number.
pub fn decode_ack_chunk_key(k: &[u8]) -> Option<u64> {
    match <[u8; QUEUE_ACK_CHUNK_KEY_LEN]>::try_from(k).ok()? {
        [QUEUE_ACK_CHUNK_TAG, n @ ..] => Some(u64::from_be_bytes(n)),
        _ => None,
    }
}

/// Decodes an ack chunk's value.
pub fn decode_ack_chunk(v: &[u8]) -> Result<[u8; QUEUE_ACK_CHUNK_LEN], String> {
    <[u8; QUEUE_ACK_CHUNK_LEN]>::try_from(v)
        .map_err(|_| format!("ack chunk of {} bytes, expected {QUEUE_ACK_CHUNK_LEN}", v.len()))
}

/// Encodes a queue entry's key.
pub fn encode_queue_key(offset: u64) -> [u8; QUEUE_ENTRY_KEY_LEN] {
    offset.to_be_bytes()
}

/// Encodes a queue entry's value.
pub fn encode_queue_entry(deliveries: u32, ready_at_ms: i64) -> [u8; QUEUE_ENTRY_LEN] {
    let mut v = [0u8; QUEUE_ENTRY_LEN];
    let (d, r) = v.split_at_mut(QUEUE_READY_AT_MS_AT);
    d.copy_from_slice(&deliveries.to_le_bytes());
    r.copy_from_slice(&ready_at_ms.to_le_bytes());
    v
}

/// Decodes a queue entry into (offset, deliveries, ready at).
pub fn decode_queue_entry(k: &[u8], v: &[u8]) -> Result<(u64, u32, i64), String> {
    let (Ok(offset), Ok(value)) = (<[u8; QUEUE_ENTRY_KEY_LEN]>::try_from(k), <[u8; QUEUE_ENTRY_LEN]>::try_from(v))
    else {
        return Err(format!(
            "queue entry with a {}-byte key and a {}-byte value, expected {QUEUE_ENTRY_KEY_LEN} and {QUEUE_ENTRY_LEN}",
            k.len(),
            v.len()
        ));
    };
    let [d0, d1, d2, d3, ready_at_ms @ ..] = value;
    Ok((u64::from_be_bytes(offset), u32::from_le_bytes([d0, d1, d2, d3]), i64::from_le_bytes(ready_at_ms)))
}

/// A named replay's saved progress: its topics (sorted), each one's history end, and the last
/// emitted (timestamp, topic rank, offset), if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayProgress {
    /// Topic names, sorted.
    pub topics: Vec<String>,
    /// Each topic's history end.
    pub ends: Vec<u64>,
    /// The last emitted key.
    pub last: Option<(i64, u16, u64)>,
}

/// Encodes a replay's progress: topic count (u16), per topic its name's length (u16), the name
/// and its end (u64); then 0, or 1 and the last key (i64, u16, u64); all little-endian.
pub fn encode_replay_progress(p: &ReplayProgress) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&u16::try_from(p.topics.len()).unwrap_or(u16::MAX).to_le_bytes());
    for (t, e) in p.topics.iter().zip(&p.ends) {
        out.extend_from_slice(&u16::try_from(t.len()).unwrap_or(u16::MAX).to_le_bytes());
        out.extend_from_slice(t.as_bytes());
        out.extend_from_slice(&e.to_le_bytes());
    }
    match p.last {
        None => out.push(0),
        Some((ts, topic, offset)) => {
            out.push(1);
            out.extend_from_slice(&ts.to_le_bytes());
            out.extend_from_slice(&topic.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
        }
    }
    out
}

/// Decodes a replay's progress.
pub fn decode_replay_progress(b: &[u8]) -> Result<ReplayProgress, String> {
    let mut rest = b;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let (head, tail) = rest.split_at_checked(n).ok_or_else(|| format!("progress cut short at byte {}", b.len()))?;
        rest = tail;
        Ok(head)
    };
    fn array<const N: usize>(s: &[u8]) -> [u8; N] {
        <[u8; N]>::try_from(s).unwrap_or([0; N])
    }
    let count = u16::from_le_bytes(array(take(2)?));
    let (mut topics, mut ends) = (Vec::new(), Vec::new());
    for _ in 0..count {
        let n = usize::from(u16::from_le_bytes(array(take(2)?)));
        topics.push(String::from_utf8(take(n)?.to_vec()).map_err(|_| "topic name is not UTF-8".to_string())?);
        ends.push(u64::from_le_bytes(array(take(8)?)));
    }
    let last = match take(1)? {
        [0] => None,
        [1] => Some((
            i64::from_le_bytes(array(take(8)?)),
            u16::from_le_bytes(array(take(2)?)),
            u64::from_le_bytes(array(take(8)?)),
        )),
        other => return Err(format!("bad last-key flag {other:?}")),
    };
    if !rest.is_empty() {
        return Err(format!("{} trailing bytes", rest.len()));
    }
    Ok(ReplayProgress { topics, ends, last })
}
