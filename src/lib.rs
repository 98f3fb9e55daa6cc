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
// 5 `consume` · 6 `replay`, `queue` · 7 `bus`, `kafka` · 8 `asynchronous`.
mod clock;
mod error;
mod sync;
mod trace;

#[doc(hidden)] // the byte layout is FORMAT.md's; public only for the fuzz targets and tests
pub mod format;
pub mod storage;

mod log;

#[cfg(feature = "store")]
mod store;

#[cfg(feature = "store")]
mod consume;
#[cfg(feature = "typed")]
pub use consume::codec;

#[cfg(feature = "store")]
mod queue;
#[cfg(feature = "store")]
mod replay;

#[cfg(feature = "typed")]
mod bus;
#[cfg(feature = "kafka")]
pub mod kafka;

#[cfg(feature = "tokio")]
mod asynchronous;

#[cfg(feature = "tokio")]
pub use asynchronous::ReplayStream;
#[cfg(feature = "typed")]
pub use bus::{EventBus, Subscription, SubscriptionBuilder, SubscriptionOptions, SubscriptionStats};
pub use clock::{Clock, ManualClock, SystemClock};
#[cfg(feature = "typed")]
pub use consume::codec::{Bincode, Codec};
#[cfg(feature = "store")]
pub use consume::consumer::{AckMode, AutoCommit, Consumer, ConsumerOptions, ConsumerStart, StartAt};
#[cfg(feature = "store")]
pub use consume::producer::{PRODUCER_ID_HEADER, Producer, SEQUENCE_HEADER, Sent};
#[cfg(feature = "typed")]
pub use consume::typed::{SCHEMA_HEADER, SCHEMA_VERSION_DEFAULT, Typed, TypedConsumer, TypedTopic};
#[cfg(feature = "kafka")]
pub use error::KafkaError;
pub use error::{Error, LogError, LogResult, QueueError, ReplayError, Result};
pub use log::backup::LogBackup;
pub use log::budget::{BLOCK_TIMEOUT_DEFAULT, BUDGET_BYTES_MIN, Budget, WhenFull};
pub use log::compact::{COMPACT_KEYS_BYTES_DEFAULT, CompactOptions, CompactReport, TOMBSTONE_RETENTION_DEFAULT};
pub use log::compress::CompressReport;
pub use log::keys::KeyIter;
pub use log::options::{Durability, KEY_BYTES_MAX, Options, RecoveryMode, SEGMENT_BYTES_LIMIT, WritePath};
pub use log::record::{NewRecord, Record, RecordRef};
pub use log::recovery::{RecoveryReport, RepairReport};
#[doc(hidden)] // recovery's pure tail classifier, public for its fuzz target
pub use log::recovery::{TailVerdict, classify_tail};
pub use log::{Iter, Log, LogStats, SegmentInfo, SegmentTimes};
#[cfg(feature = "store")]
pub use queue::{
    DEAD_DELIVERIES_HEADER, DEAD_GROUP_HEADER, DEAD_OFFSET_HEADER, DEAD_REASON_HEADER, DEAD_TOPIC_HEADER,
    DELIVER_AT_HEADER, Delivery, LOW_SHARE_EVERY_DEFAULT, Peeked, PriorityQueue, Queue, QueueInfo, QueueOptions,
    QueueStats,
};
#[cfg(feature = "store")]
pub use replay::window::{Summary, Window, WindowSpec, Windows};
#[cfg(feature = "store")]
pub use replay::{REPLAY_MEMORY_BYTES_DEFAULT, Replay, ReplayBuilder, ReplayEvent, ReplayEventRef, ReplayStats};
pub use storage::Bytes;
#[cfg(feature = "store")]
pub use store::backup::BackupReport;
#[cfg(feature = "store")]
pub use store::config::{Compression, TopicConfig};
#[cfg(feature = "store")]
pub use store::maintenance::{MAINTENANCE_INTERVAL_DEFAULT, MaintenanceStats};
#[cfg(feature = "store")]
pub use store::metrics::{GroupStats, TopicStats};
#[cfg(feature = "store")]
pub use store::state::{Abort, CommitDurability, StateTx};
#[cfg(feature = "store")]
pub use store::{
    DEDUPE_WINDOW_RECORDS_DEFAULT, GroupInfo, NAME_BYTES_MAX, RetentionOptions, RetentionReport, Store, StoreOptions,
    Topic, validate_name,
};

/// The README's code blocks, compiled (not run) as doctests: the landing page stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
