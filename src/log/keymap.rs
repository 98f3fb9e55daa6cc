//! The active segment's key map (`KeyMap`): each keyed record's position by key hash, and each
//! key's newest offset by exact key. Built by one scan of the segment the first time a key is
//! looked up (`keys.rs`), then kept by every append under the writer lock (`IndexBuilder`
//! holds it). Depends on the format only.

use crate::format;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A hasher for keys that are already FNV-1a hashes: passes the u64 through.
#[derive(Default, Clone)]
pub(crate) struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; anything else folds in, still deterministic.
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type ByHash<V> = HashMap<u64, V, BuildHasherDefault<Prehashed>>;

/// The active segment's keyed records: by key hash, one lookup per append.
#[derive(Debug, Default, Clone)]
pub(crate) struct KeyMap {
    by_hash: ByHash<HashSlot>,
}

/// The records of the keys with one hash.
#[derive(Debug, Default, Clone)]
struct HashSlot {
    /// (relative offset, position) of each record, in offset order.
    positions: Vec<(u32, u32)>,
    /// Each distinct key with this hash and its newest offset.
    newest: Vec<(Box<[u8]>, u64)>,
}

impl KeyMap {
    /// Notes the record at `offset` (relative `rel`, byte `pos`) with key `key`.
    pub fn note(&mut self, key: &[u8], base: u64, rel: u32, pos: u32) {
        let slot = self.by_hash.entry(format::key_hash(key)).or_default();
        slot.positions.push((rel, pos));
        let offset = base + u64::from(rel);
        match slot.newest.iter_mut().find(|(k, _)| &**k == key) {
            Some(e) => e.1 = offset,
            None => slot.newest.push((key.into(), offset)),
        }
    }

    /// The newest offset of `key` in the segment.
    pub fn newest(&self, key: &[u8]) -> Option<u64> {
        let slot = self.by_hash.get(&format::key_hash(key))?;
        slot.newest.iter().find(|(k, _)| &**k == key).map(|e| e.1)
    }

    /// (relative offset, position) of the records whose key has hash `h`.
    pub fn positions(&self, h: u64) -> Vec<(u32, u32)> {
        self.by_hash.get(&h).map(|s| s.positions.clone()).unwrap_or_default()
    }

    /// Every record as (key hash, relative offset, position): a key index file's entries.
    pub fn entries(&self) -> impl Iterator<Item = (u64, u32, u32)> + '_ {
        self.by_hash.iter().flat_map(|(&h, s)| s.positions.iter().map(move |&(rel, pos)| (h, rel, pos)))
    }
}
