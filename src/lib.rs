//! # evlog: a durable embedded event log
//!
//! Append events to a local directory and get every acknowledged event back — in order, byte for
//! byte, exactly once — after any restart, `kill -9` or power cut (under
//! [`Durability::Always`]).
//!
//! ```no_run
//! use evlog::{Durability, Log, NewRecord, Options};
//!
//! let log = Log::open("/tmp/events", Options::with_durability(Durability::Always))?;
//! let offset = log.append(b"hello")?; // durable when it returns
//! log.append_record(&NewRecord::new(b"late event").timestamp(1_700_000_000_000).key(b"device-7"))?;
//! for record in log.iter(0) {
//!     let record = record?;
//!     println!("{} {:?}", record.offset(), record.payload());
//! }
//! # let _ = offset;
//! # Ok::<(), evlog::Error>(())
//! ```
//!
//! The bytes on disk are specified in `FORMAT.md`; the design in `ARCHITECTURE.md`.

#![deny(unsafe_code)]
#![warn(missing_debug_implementations)]

mod cache;
mod checkpoint;
mod consumer;
mod error;
pub mod format;
mod index;
mod log;
mod options;
mod record;
mod recovery;
mod replay;
mod segment;
mod state;
pub mod storage;
mod store;
mod window;
mod writer;

pub use consumer::{AckMode, AutoCommit, Consumer, ConsumerOptions, ConsumerStart, StartAt};
pub use error::{Error, Result};
pub use log::{Iter, Log, SegmentInfo, SegmentTimes};
pub use options::{Durability, Options, RecoveryMode, SEGMENT_BYTES_LIMIT};
pub use record::{NewRecord, Record};
pub use recovery::RecoveryReport;
pub use replay::{REPLAY_MEMORY_BYTES_DEFAULT, Replay, ReplayBuilder, ReplayEvent, ReplayStats};
pub use state::{Abort, CommitDurability, StateTx};
pub use storage::Bytes;
pub use store::{
    GroupInfo, NAME_BYTES_MAX, RetentionOptions, RetentionReport, Store, StoreOptions, Topic, validate_name,
};
pub use window::{Summary, Window, WindowSpec, Windows};
