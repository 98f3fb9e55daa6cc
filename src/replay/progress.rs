//! A named replay's progress in the consumer database: the tree `replays`, key = the replay's
//! name, value = its progress (FORMAT.md § Consumer database, encoded by `format/state.rs`).
//! The store only keeps the tree.

use crate::error::Result;
use crate::format::state::{ReplayProgress, decode_replay_progress, encode_replay_progress};
use crate::store::state::StateDb;

/// The tree of named replays' progress.
const REPLAYS_TREE: &str = "replays";

/// Reads a named replay's saved progress.
pub(crate) fn load(db: &StateDb, name: &str) -> Result<Option<ReplayProgress>> {
    let t = db.tree(REPLAYS_TREE)?;
    let Some(v) = db.tree_get(&t, name.as_bytes())? else { return Ok(None) };
    decode_replay_progress(&v).map(Some).map_err(|reason| db.tree_corrupt(&t, name.as_bytes(), reason))
}

/// Saves a named replay's progress durably.
pub(crate) fn save(db: &StateDb, name: &str, progress: &ReplayProgress) -> Result<()> {
    let t = db.tree(REPLAYS_TREE)?;
    db.tree_put_durable(&t, name.as_bytes(), &encode_replay_progress(progress))
}
