//! Producer ids for idempotent Kafka producers (InitProducerId), unique across restarts: the
//! next id is kept in the consumer database (tree `serve`, key `next_producer_id`, u64 LE) and
//! made durable before an id is handed out. A batch from an idempotent producer is appended
//! through the store's idempotent `Producer` named `kafka-<id>`, whose (id, sequence) table is
//! rebuilt from the log's tail after a restart: a retried batch returns its original offset.

use crate::error::{Error, Result};
use crate::store::Store;
use std::sync::Mutex;

const TREE: &str = "serve";
const NEXT_ID_KEY: &[u8] = b"next_producer_id";

/// Hands out producer ids.
#[derive(Debug, Default)]
pub(super) struct ProducerIds {
    lock: Mutex<()>,
}

impl ProducerIds {
    /// A producer id never handed out before by this store.
    pub fn allocate(&self, store: &Store) -> Result<i64> {
        let _one_at_a_time = crate::sync::lock(&self.lock);
        let db = &store.inner().state;
        let tree = db.tree(TREE)?;
        let next = match db.tree_get(&tree, NEXT_ID_KEY)? {
            None => 0,
            Some(v) => u64::from_le_bytes(
                v.as_slice()
                    .try_into()
                    .map_err(|_| db.tree_corrupt(&tree, NEXT_ID_KEY, format!("{} bytes, expected 8", v.len())))?,
            ),
        };
        let id = i64::try_from(next).map_err(|_| Error::InvalidOptions { reason: "producer ids exhausted".into() })?;
        db.tree_put_durable(&tree, NEXT_ID_KEY, &(next + 1).to_le_bytes())?;
        Ok(id)
    }
}

/// The store's idempotent producer behind Kafka producer id `id`.
pub(super) fn producer_name(id: i64) -> String {
    format!("kafka-{id}")
}
