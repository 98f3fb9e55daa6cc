//! A work queue's durable state in the consumer database: the tree `queue:<topic>:<group>`,
//! its keys and values (FORMAT.md § Consumer database, encoded by `format/state.rs`), loaded
//! when the queue opens and written by each operation. The store only keeps the tree.

use crate::error::Result;
use crate::format::state::{
    QUEUE_ACK_CHUNK_LEN, decode_ack_chunk, decode_ack_chunk_key, decode_queue_cursor, decode_queue_entry,
    decode_queue_head, encode_ack_chunk_key, encode_queue_entry, encode_queue_head, encode_queue_key,
};
use crate::store::state::{StateDb, StateTree, TreeWrite};

/// Prefix of a work queue's tree name; names never contain ':' (`validate_name`), so
/// `queue:<topic>:<group>` is unambiguous.
const QUEUE_TREE_PREFIX: &str = "queue:";
/// Key of a queue's head (floor and cursor) in its tree; entries use 8-byte big-endian offsets
/// as keys, ack chunks 9-byte keys (FORMAT.md § Consumer database).
const QUEUE_HEAD_KEY: &[u8] = b"head";
/// Key of a queue's cursor in the older per-entry layout (read, never written).
const QUEUE_CURSOR_KEY: &[u8] = b"cursor";

/// A work queue's tree in the database, opened once per open queue.
pub(crate) type QueueTree = StateTree;

/// A work queue's outstanding record, as stored: delivered `deliveries` times so far; not to be
/// delivered again before `ready_at_ms` (ms since the Unix epoch; 0 = at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueEntry {
    pub deliveries: u32,
    pub ready_at_ms: i64,
}

/// A work queue's durable state as stored (FORMAT.md § Consumer database): the head (floor,
/// cursor) of the compact layout, or the cursor of the older per-entry one; the entries; the
/// ack chunks.
#[derive(Debug, Default)]
pub(crate) struct QueueState {
    pub head: Option<(u64, u64)>,
    pub legacy_cursor: Option<u64>,
    pub entries: Vec<(u64, QueueEntry)>,
    pub ack_chunks: Vec<(u64, AckChunk)>,
}

/// One ack chunk's bits (FORMAT.md § Consumer database, "Ack chunk").
pub(crate) type AckChunk = [u8; QUEUE_ACK_CHUNK_LEN];

/// One queue operation's writes, applied by [`apply`] in the order of its fields.
#[derive(Debug, Default)]
pub(crate) struct QueueWrites {
    pub entries: Vec<(u64, QueueEntry)>,
    pub ack_chunks: Vec<(u64, AckChunk)>,
    pub head: Option<(u64, u64)>,
    pub remove_entries: Vec<u64>,
    pub remove_chunks: Vec<u64>,
    pub remove_legacy_cursor: bool,
}

impl QueueWrites {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
            && self.ack_chunks.is_empty()
            && self.head.is_none()
            && self.remove_entries.is_empty()
            && self.remove_chunks.is_empty()
            && !self.remove_legacy_cursor
    }
}

/// Opens a work queue's tree (made on first write).
pub(crate) fn tree(db: &StateDb, topic: &str, group: &str) -> Result<QueueTree> {
    db.tree(&format!("{QUEUE_TREE_PREFIX}{topic}:{group}"))
}

/// The groups with a work queue on `topic`.
pub(crate) fn groups(db: &StateDb, topic: &str) -> Vec<String> {
    db.tree_names(&format!("{QUEUE_TREE_PREFIX}{topic}:"))
}

/// Forgets a work queue's state, durably.
pub(crate) fn delete(db: &StateDb, topic: &str, group: &str) -> Result<()> {
    db.drop_tree(&format!("{QUEUE_TREE_PREFIX}{topic}:{group}"))
}

/// Loads a work queue's state. A key or value that does not have a layout this code knows is
/// `Error::CorruptState`: skipping it would redeliver or lose a job without a word.
pub(crate) fn load(db: &StateDb, t: &QueueTree) -> Result<QueueState> {
    let mut st = QueueState::default();
    db.tree_scan(t, |k, v| {
        let corrupt = |reason: String| db.tree_corrupt(t, k, reason);
        if k == QUEUE_HEAD_KEY {
            st.head = Some(decode_queue_head(v).map_err(corrupt)?);
        } else if k == QUEUE_CURSOR_KEY {
            st.legacy_cursor = Some(decode_queue_cursor(v).map_err(corrupt)?);
        } else if let Some(chunk) = decode_ack_chunk_key(k) {
            st.ack_chunks.push((chunk, decode_ack_chunk(v).map_err(corrupt)?));
        } else {
            let (offset, deliveries, ready_at_ms) = decode_queue_entry(k, v).map_err(corrupt)?;
            st.entries.push((offset, QueueEntry { deliveries, ready_at_ms }));
        }
        Ok(())
    })?;
    Ok(st)
}

/// Applies a work queue's writes, without waiting for durability, in the order of
/// [`QueueWrites`]' fields: entries, ack chunks, the head, then removals. sled recovers a prefix
/// of them; FORMAT.md § Consumer database says why every prefix of this order opens as a
/// correct queue.
pub(crate) fn apply(db: &StateDb, t: &QueueTree, w: &QueueWrites) -> Result<()> {
    let entries: Vec<([u8; 8], [u8; 12])> = w
        .entries
        .iter()
        .map(|(o, e)| (encode_queue_key(*o), encode_queue_entry(e.deliveries, e.ready_at_ms)))
        .collect();
    let chunk_keys: Vec<_> = w.ack_chunks.iter().map(|(c, _)| encode_ack_chunk_key(*c)).collect();
    let head = w.head.map(|(floor, cursor)| encode_queue_head(floor, cursor));
    let removed_entries: Vec<_> = w.remove_entries.iter().map(|o| encode_queue_key(*o)).collect();
    let removed_chunks: Vec<_> = w.remove_chunks.iter().map(|c| encode_ack_chunk_key(*c)).collect();
    let writes = entries
        .iter()
        .map(|(k, v)| TreeWrite::Insert(k, v))
        .chain(chunk_keys.iter().zip(&w.ack_chunks).map(|(k, (_, bits))| TreeWrite::Insert(k, bits)))
        .chain(head.iter().map(|h| TreeWrite::Insert(QUEUE_HEAD_KEY, h)))
        .chain(w.remove_legacy_cursor.then_some(TreeWrite::Remove(QUEUE_CURSOR_KEY)))
        .chain(removed_entries.iter().map(|k| TreeWrite::Remove(k)))
        .chain(removed_chunks.iter().map(|k| TreeWrite::Remove(k)));
    db.tree_apply(t, writes)
}

/// Writes a queue in the older per-entry layout (a cursor, an entry per outstanding record),
/// to test that it still opens.
#[cfg(test)]
pub(crate) fn write_legacy(db: &StateDb, t: &QueueTree, cursor: Option<u64>, entries: &[(u64, QueueEntry)]) {
    let encoded: Vec<_> =
        entries.iter().map(|(o, e)| (encode_queue_key(*o), encode_queue_entry(e.deliveries, e.ready_at_ms))).collect();
    let cursor = cursor.map(u64::to_le_bytes);
    let writes = encoded
        .iter()
        .map(|(k, v)| TreeWrite::Insert(k, v))
        .chain(cursor.iter().map(|c| TreeWrite::Insert(QUEUE_CURSOR_KEY, c)));
    db.tree_apply(t, writes).expect("write");
}

/// How many keys a queue's tree holds (tests check that it stays compact).
#[cfg(test)]
pub(crate) fn key_count(db: &StateDb, t: &QueueTree) -> usize {
    db.tree_len(t)
}
