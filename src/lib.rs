//! # evlog: a durable embedded event log
//!
//! Append events to a local directory and get every acknowledged event back — in order, byte for
//! byte, exactly once — after any restart, `kill -9` or power cut (under
//! [`Durability::Always`]).
//!
//! ```
//! use evlog::{Durability, Log, NewRecord, Options};
//! # let dir = tempfile::tempdir().unwrap();
//! # let dir = dir.path();
//!
//! let log = Log::open(dir, Options::with_durability(Durability::Always))?;
//! let offset = log.append(b"hello")?; // durable when it returns
//! log.append_record(&NewRecord::new(b"late event").timestamp(1_700_000_000_000).key(b"device-7"))?;
//! let records: Vec<_> = log.iter(0).collect::<Result<_, _>>()?;
//! assert_eq!(records[0].payload(), b"hello");
//! assert_eq!(log.offset_for_timestamp(1_700_000_000_000)?, Some(0)); // "hello" is newer
//! # let _ = offset;
//! # Ok::<(), evlog::Error>(())
//! ```
//!
//! Topics, consumer groups and replay in timestamp order:
//!
//! ```
//! use evlog::{ConsumerOptions, NewRecord, Store, StoreOptions};
//! use std::time::Duration;
//! # let root = tempfile::tempdir().unwrap();
//! # let root = root.path();
//!
//! let store = Store::open(root, StoreOptions::default())?;
//! let readings = store.topic("readings")?;
//! for ts in [30, 10, 20] {
//!     readings.append_record(&NewRecord::new(b"x").timestamp(ts))?;
//! }
//! let mut consumer = store.consumer("dashboard", "readings", ConsumerOptions::default())?;
//! assert_eq!(consumer.poll(10, Duration::ZERO)?.len(), 3);
//! consumer.commit()?; // durable: a restart resumes after offset 2
//!
//! let order: Vec<i64> = store.replay(&["readings"]).start()?.map(|e| e.map(|e| e.timestamp)).collect::<Result<_, _>>()?;
//! assert_eq!(order, vec![10, 20, 30]);
//! # Ok::<(), evlog::Error>(())
//! ```
//!
//! The bytes on disk are specified in `FORMAT.md`; the design in `ARCHITECTURE.md`.

#![deny(unsafe_code)]
// Library code never panics on bytes it reads or on its own bookkeeping: no unwrap, no expect, no
// unchecked indexing or slicing (use `get`, `split_at_checked`, iterators). Unit tests may.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing))]
#![warn(missing_debug_implementations)]
#![warn(missing_docs)]

// Layers, lowest first; a module names only modules of its own layer or below (checked by
// `tests/layers.rs`, described in ARCHITECTURE.md § Layers):
// 0 `error`, `clock`, `sync`, `trace` · 1 `format` · 2 `storage` · 3 `log` · 4 `store` ·
// 5 `consume` · 6 `replay`, `queue` · 7 `bus`, `kafka`, `serve` · 8 `asynchronous`.
pub mod clock;
pub mod error;
mod sync;
mod trace;

#[doc(hidden)] // the byte layout is FORMAT.md's; public only for the fuzz targets and tests
pub mod format;
pub mod storage;

pub mod log;

#[cfg(feature = "store")]
pub mod store;

#[cfg(feature = "store")]
pub mod consume;
#[cfg(feature = "typed")]
pub use consume::codec;

#[cfg(feature = "store")]
pub mod queue;
#[cfg(feature = "store")]
pub mod replay;

#[cfg(feature = "typed")]
pub mod bus;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "metrics")]
pub mod monitor;
#[cfg(feature = "serve")]
pub mod serve;

#[cfg(feature = "tokio")]
mod asynchronous;

// The handful of types most applications touch; everything else through its module.
#[cfg(feature = "tokio")]
pub use asynchronous::ReplayStream;
#[cfg(feature = "typed")]
pub use bus::EventBus;
#[cfg(feature = "typed")]
pub use consume::TypedTopic;
#[cfg(feature = "store")]
pub use consume::{Consumer, ConsumerOptions, Producer};
pub use error::{Error, LogError, Result};
pub use log::{Durability, Log, NewRecord, Options, Record, RecordRef};
#[cfg(feature = "store")]
pub use queue::{Queue, QueueOptions};
#[cfg(feature = "store")]
pub use replay::Replay;
#[cfg(feature = "store")]
pub use store::{Store, StoreOptions, Topic, TopicConfig};

/// The reserved header names evlog writes and reads (FORMAT.md § Reserved header names).
pub mod headers {
    #[cfg(feature = "store")]
    pub use crate::consume::producer::{PRODUCER_ID_HEADER, SEQUENCE_HEADER};
    #[cfg(feature = "typed")]
    pub use crate::consume::typed::SCHEMA_HEADER;
    #[cfg(feature = "store")]
    pub use crate::queue::{
        DEAD_DELIVERIES_HEADER, DEAD_GROUP_HEADER, DEAD_OFFSET_HEADER, DEAD_REASON_HEADER, DEAD_TOPIC_HEADER,
        DELIVER_AT_HEADER,
    };
}

/// Defaults and limits, each named with its unit.
pub mod defaults {
    #[cfg(feature = "typed")]
    pub use crate::consume::typed::SCHEMA_VERSION_DEFAULT;
    pub use crate::log::budget::{BLOCK_TIMEOUT_DEFAULT, BUDGET_BYTES_MIN};
    pub use crate::log::compact::{COMPACT_KEYS_BYTES_DEFAULT, TOMBSTONE_RETENTION_DEFAULT};
    pub use crate::log::options::{KEY_BYTES_MAX, SEGMENT_BYTES_LIMIT};
    #[cfg(feature = "store")]
    pub use crate::queue::LOW_SHARE_EVERY_DEFAULT;
    #[cfg(feature = "store")]
    pub use crate::replay::REPLAY_MEMORY_BYTES_DEFAULT;
    #[cfg(feature = "store")]
    pub use crate::store::maintenance::MAINTENANCE_INTERVAL_DEFAULT;
    #[cfg(feature = "store")]
    pub use crate::store::{DEDUPE_WINDOW_RECORDS_DEFAULT, NAME_BYTES_MAX};
}

/// The README's code blocks, compiled (not run) as doctests: the landing page stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// docs/serve.md's Rust example, compiled (not run) as a doctest.
#[cfg(all(doctest, feature = "serve"))]
#[doc = include_str!("../docs/serve.md")]
pub struct ServeDoctests;

/// The guide's code blocks (`docs/guide.md`), compiled (not run) as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/guide.md")]
pub struct GuideDoctests;
