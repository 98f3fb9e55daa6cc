//! The crate's errors, one enum per layer under one umbrella:
//!
//! - [`LogError`]: everything a [`Log`](crate::Log) returns. [`Error`] has each of its variants
//!   under the same name, so `Error::Corruption` matches whichever layer met the bad bytes. Both
//!   are generated from one list of those variants (`errors!`), so they cannot drift apart.
//! - [`Error`]'s own variants: the store's and its consumers' (names, groups, the consumer
//!   database, codecs) — every layer above the store can meet them.
//! - [`ReplayError`], [`QueueError`], [`KafkaError`]: what only that layer refuses, nested as
//!   `Error::Replay(..)`, `Error::Queue(..)`, `Error::Kafka(..)` with `From` conversions.
//!
//! Every variant's message names what a person needs to act on it: the path, the byte position,
//! the offset and the cause. Each variant documents when it happens and whether the caller can go
//! on with the same [`Log`](crate::Log).

use std::io;
use std::path::PathBuf;

/// Result alias used throughout evlog.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Defines [`Error`] (its own variants, then the log layer's) and [`LogError`] (the log layer's)
/// from one list, with `From<LogError> for Error` mapping each log variant to its namesake: the
/// log layer's variants are written once.
macro_rules! errors {
    (
        $(#[$error_meta:meta])*
        pub enum Error { $($own:tt)* }
        $(#[$log_meta:meta])*
        pub enum LogError {
            $( $(#[$vmeta:meta])* $name:ident { $( $(#[$fmeta:meta])* $field:ident : $ty:ty ),* $(,)? } ),* $(,)?
        }
    ) => {
        $(#[$error_meta])*
        pub enum Error {
            $($own)*
            $( $(#[$vmeta])* $name { $( $(#[$fmeta])* $field : $ty ),* } ),*
        }

        $(#[$log_meta])*
        pub enum LogError {
            $( $(#[$vmeta])* $name { $( $(#[$fmeta])* $field : $ty ),* } ),*
        }

        impl From<LogError> for Error {
            fn from(e: LogError) -> Self {
                match e {
                    $( LogError::$name { $($field),* } => Error::$name { $($field),* } ),*
                }
            }
        }
    };
}

errors! {
/// Everything that can go wrong in evlog.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A topic or group name breaks the naming rule: 1–249 characters of `[A-Za-z0-9._-]`, not
    /// `.` or `..`. Nothing was touched.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What rule it breaks.
        reason: &'static str,
    },
    /// A consumer of this group on this topic is already live (one per group and topic).
    #[error("group {group:?} on topic {topic:?} already has a live consumer")]
    GroupBusy {
        /// The topic.
        topic: String,
        /// The group.
        group: String,
    },
    /// A topic or group that does not exist.
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// "topic" or "group".
        kind: &'static str,
        /// Its name (for a group: `topic/group`).
        name: String,
    },
    /// An atomic append was committed (its journal record is durable) but a topic's part could
    /// not be written or made durable now. The transaction is not lost: the journal keeps it,
    /// the store completes it at the next atomic append that can, and at the latest when it next
    /// opens. Parts of other topics may already be visible.
    #[error(
        "atomic append {txn} is committed, but its part in topic {topic:?} could not be completed now ({source}); it will be completed when the store next opens, or sooner"
    )]
    AtomicAppendIncomplete {
        /// The transaction's id (its journal offset).
        txn: u64,
        /// The topic whose part failed.
        topic: String,
        /// Why.
        source: Box<Error>,
    },
    /// The journal write of an atomic append failed after bytes may have reached it: the append
    /// may be committed. Nothing of it reached any topic; if it was committed, the store
    /// completes it when it next opens. The journal is poisoned: later atomic appends fail
    /// until the store is reopened.
    #[error(
        "atomic append: the journal write failed ({source}); the append may be committed, and if it is, it will be completed when the store next opens; nothing of it reached a topic"
    )]
    AtomicAppendUnknown {
        /// Why.
        source: Box<Error>,
    },
    /// A topic cannot be deleted while handles to it are in use.
    #[error("topic {name:?} is in use ({handles} other handles)")]
    TopicInUse {
        /// The topic.
        name: String,
        /// Handles still held besides the store's own.
        handles: usize,
    },
    /// A commit past the end of the topic. Nothing was written.
    #[error("cannot commit offset {offset} for group {group:?} on topic {topic:?}: the topic ends at {next_offset}")]
    CommitOutOfRange {
        /// The topic.
        topic: String,
        /// The group.
        group: String,
        /// The offset asked for.
        offset: u64,
        /// The topic's next offset.
        next_offset: u64,
    },
    /// `Consumer::ack` of an offset the consumer has not polled yet. Nothing changed.
    #[error(
        "ack of offset {offset} for group {group:?} on topic {topic:?}, which was not polled yet (position {position})"
    )]
    AckNotPolled {
        /// The topic.
        topic: String,
        /// The group.
        group: String,
        /// The offset acknowledged.
        offset: u64,
        /// The consumer's position: offsets below it were polled.
        position: u64,
    },
    /// A thread evlog needed could not be started (the system is out of threads or memory).
    #[error("could not start a thread for {what}: {source}")]
    Spawn {
        /// What the thread was for.
        what: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// An event bus subscription's worker thread panicked (outside a handler: handler panics are
    /// caught and retried). What it had committed stays committed.
    #[error("the event bus worker of group {group:?} on topic {topic:?} panicked")]
    WorkerPanicked {
        /// The subscription's topic.
        topic: String,
        /// The subscription's group.
        group: String,
    },
    /// The consumer-state database (sled) failed.
    #[error("consumer state {path}: {op} failed: {cause}")]
    State {
        /// What was being done.
        op: &'static str,
        /// The database directory.
        path: PathBuf,
        /// sled's message.
        cause: String,
    },
    /// A value in the consumer-state database does not have the layout evlog writes (FORMAT.md
    /// § Consumer state): a committed offset, a queue entry or a queue cursor of the wrong size.
    /// evlog never guesses a replacement (re-reading or skipping records without a word); fix or
    /// remove the entry (`evlog groups reset`/`delete`) to go on. [`Error::is_corruption`] is
    /// true for it as for [`Error::Corruption`].
    #[error("corruption in the consumer database {path}, key {key}: {reason}")]
    CorruptState {
        /// The database directory.
        path: PathBuf,
        /// The key, printable (the 0x00 between topic and group shown as `/`).
        key: String,
        /// What is wrong with its value.
        reason: String,
    },
    /// A `commit_with` closure aborted; neither the state nor the offset changed.
    #[error("commit aborted by the application: {reason}")]
    StateAborted {
        /// The closure's reason.
        reason: String,
    },
    /// A value could not be encoded by a typed topic's codec. Nothing was appended.
    #[error("cannot encode a value for topic {topic:?}: {reason}")]
    Encode {
        /// The topic.
        topic: String,
        /// The codec's message.
        reason: String,
    },
    /// A record's payload could not be decoded into the typed topic's type (written by another
    /// type or codec, or by hand). The record itself is intact; skip it or read it as bytes.
    #[error("cannot decode topic {topic:?} offset {offset}: {reason}")]
    Decode {
        /// The topic.
        topic: String,
        /// The record's offset.
        offset: u64,
        /// The codec's message.
        reason: String,
    },
    /// A replay refused to go on (see [`ReplayError`]).
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// A work queue refused an operation (see [`QueueError`]).
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// Kafka could not be reached or refused something (feature `kafka`; see [`KafkaError`]).
    /// The local log is unchanged.
    #[cfg(feature = "kafka")]
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

/// What can go wrong in the log layer: everything a [`Log`](crate::Log) returns. The store and
/// the layers above return [`Error`], which has every one of these variants under the same name
/// (`From<LogError> for Error` maps each to its namesake), so matching `Error::Corruption` works
/// whichever layer the error came from.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// An I/O operation failed. If it was a write or an fsync on the append path, the log is now
    /// poisoned and later appends return [`Error::Poisoned`]; reads keep working.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done, e.g. "write" or "fsync".
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The disk (or quota) is full, or below `disk_reserve_bytes`. Nothing after the last
    /// acknowledged record was acknowledged. When a write or an fsync failed (`op` "write",
    /// "fsync"), the log is poisoned for appends but stays readable: free space, then reopen.
    /// When it was refused before anything was written (`op` "allocate", "create" at a roll,
    /// "reserve space"), nothing is poisoned: the same handle appends again once there is room.
    #[error("no space left while {op} {path}: {source}; free space (and reopen the log if it is poisoned)")]
    StorageFull {
        /// What was being done.
        op: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Bytes on disk failed validation: a bad checksum, magic, version, length or offset. Never
    /// returned for a torn tail that recovery may legitimately truncate.
    #[error("corruption in {path} at byte {position}{}: {reason}", fmt_offset(*.offset))]
    Corruption {
        /// The file that holds the bad bytes.
        path: PathBuf,
        /// Byte position of the bad frame or field in that file.
        position: u64,
        /// The log offset expected at that position, when known.
        offset: Option<u64>,
        /// What exactly failed.
        reason: String,
    },
    /// Another `Log` (in this or another process) holds the directory's writer lock.
    #[error("log directory {path} is locked by another writer")]
    Locked {
        /// The log directory.
        path: PathBuf,
    },
    /// An earlier write or fsync failed, so the log refuses further appends: Linux may have
    /// dropped the dirty pages, and retrying an fsync could report success for lost data.
    /// Reopen the log to run recovery.
    #[error("log {path} is poisoned after an earlier I/O failure ({cause}); reopen it to recover")]
    Poisoned {
        /// The log directory.
        path: PathBuf,
        /// The first failure's message.
        cause: String,
    },
    /// A record's key, headers and payload together exceed `Options::record_bytes_max`.
    #[error("record of {size} bytes exceeds record_bytes_max = {max}")]
    RecordTooLarge {
        /// Bytes of key + headers + payload.
        size: u64,
        /// The configured limit.
        max: u64,
    },
    /// A batch does not fit in one segment (`Options::segment_bytes_max`), so it could not be
    /// written atomically.
    #[error("batch of {size} framed bytes exceeds what one segment holds ({max} bytes)")]
    BatchTooLarge {
        /// Framed bytes of the whole batch.
        size: u64,
        /// What one segment can hold after its header.
        max: u64,
    },
    /// A record's headers break a format limit (count, name length).
    #[error("invalid record headers: {reason}")]
    InvalidHeaders {
        /// What limit was broken.
        reason: String,
    },
    /// The options are inconsistent (e.g. a record limit larger than a segment).
    #[error("invalid options: {reason}")]
    InvalidOptions {
        /// What is wrong.
        reason: String,
    },
    /// The path given as a log directory exists but is not a directory.
    #[error("{path} is not a directory")]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// An append would take the topic past its disk budget (`bytes_max`) and its policy is
    /// `error`, or `block` and no space was freed in time. Nothing of it was written; the log is
    /// not poisoned: the same handle appends again once retention or a consumer frees space.
    #[error("topic {topic:?} is full: its budget is {bytes_max} bytes ({path}); nothing of this append was written")]
    TopicFull {
        /// The topic (the log directory's name).
        topic: String,
        /// The log directory.
        path: PathBuf,
        /// The topic's budget.
        bytes_max: u64,
    },
    /// A conditional append (`append_expecting`) found another next offset than expected:
    /// another writer appended first. Nothing was written; read what is new and retry.
    #[error("topic {topic:?}: expected the next offset to be {expected}, it is {actual}; nothing was written")]
    OffsetMismatch {
        /// The topic (the log directory's name).
        topic: String,
        /// The next offset the caller expected.
        expected: u64,
        /// The next offset the log had.
        actual: u64,
    },
    /// A conditional append per key (`append_expecting_key`) found another newest offset for the
    /// key than expected (`None`: no record of the key). Nothing was written.
    #[error(
        "topic {topic:?}: expected the key's newest record at {expected:?}, it is at {actual:?}; nothing was written"
    )]
    KeyVersionMismatch {
        /// The topic (the log directory's name).
        topic: String,
        /// The offset the caller expected (`None`: no record yet).
        expected: Option<u64>,
        /// The key's newest offset (`None`: no record).
        actual: Option<u64>,
    },
    /// A record's key is longer than [`KEY_BYTES_MAX`](crate::defaults::KEY_BYTES_MAX). Nothing was written.
    #[error("key of {size} bytes is over the limit of {max} bytes; nothing was written")]
    KeyTooLarge {
        /// The key's length.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A write was attempted through a read-only handle.
    #[error("log {path} is open read-only")]
    ReadOnly {
        /// The log directory.
        path: PathBuf,
    },
}
}

/// What the replay layer refuses. Everything else a replay can return (I/O, corruption) belongs
/// to the log or the store and keeps its own variant of [`Error`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// A streaming replay met a record later than its declared `max_lateness` allows, after
    /// records that sort after it were already emitted. Replay without `max_lateness` (the exact
    /// path) for such data.
    #[error(
        "topic {topic:?} offset {offset} (timestamp {timestamp}) arrived after records up to timestamp {emitted} were replayed: later than max_lateness; replay without max_lateness to sort it exactly"
    )]
    LatenessExceeded {
        /// The topic of the late record.
        topic: String,
        /// Its offset.
        offset: u64,
        /// Its timestamp.
        timestamp: i64,
        /// The timestamp of the last record already emitted.
        emitted: i64,
    },

    /// A streaming replay's lateness window needs more memory than `memory_bytes_max`.
    #[error(
        "replay holds {held} bytes waiting for the watermark, over memory_bytes_max = {max}; raise it or replay without max_lateness"
    )]
    MemoryExceeded {
        /// Bytes held.
        held: u64,
        /// The budget.
        max: u64,
    },

    /// `Replay::checkpoint` on a replay that has no name to save its progress under.
    #[error("a replay's progress can only be saved under a name: build it with .name(..)")]
    NotNamed,
}

/// What the work-queue layer refuses. Nothing changed when one of these is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// A work queue's ack, nack or dead-letter came from a delivery that is no longer the
    /// newest one of its record: its lease ran out and it was delivered again, or it was
    /// already acked or dead-lettered. Nothing changed.
    #[error("queue of group {group:?} on topic {topic:?}: offset {offset}: lease lost ({reason})")]
    LeaseLost {
        /// The queue's topic.
        topic: String,
        /// The queue's group.
        group: String,
        /// The record's offset.
        offset: u64,
        /// What happened to it.
        reason: String,
    },

    /// A priority queue was given a lane that does not exist, or a delivery from another queue.
    #[error("{what}: this priority queue has {lanes} lanes")]
    NoSuchLane {
        /// What was asked, e.g. "priority 3" or "a delivery from topic \"x\"".
        what: String,
        /// How many lanes the queue has.
        lanes: usize,
    },
}

/// What went wrong talking to Kafka (feature `kafka`). The local log is unchanged.
#[cfg(feature = "kafka")]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaError {
    /// The cluster did not answer a metadata request in time.
    #[error("cannot reach the Kafka cluster at {brokers} within {timeout:?}: {reason}")]
    Unreachable {
        /// The bootstrap servers.
        brokers: String,
        /// How long evlog waited.
        timeout: std::time::Duration,
        /// The client's message.
        reason: String,
    },

    /// The Kafka topic does not exist (evlog never creates Kafka topics).
    #[error("Kafka topic {topic:?} does not exist at {brokers}")]
    NoSuchTopic {
        /// The bootstrap servers.
        brokers: String,
        /// The Kafka topic.
        topic: String,
    },

    /// A record is larger than the broker (or client) accepts; it was not forwarded.
    #[error("record at offset {offset} ({bytes} bytes) is larger than the broker accepts")]
    RecordTooLarge {
        /// The record's offset in the local topic.
        offset: u64,
        /// Its payload size.
        bytes: u64,
    },

    /// The broker did not acknowledge a forwarded record.
    #[error("delivery failed: {reason}")]
    Delivery {
        /// The client's message.
        reason: String,
    },

    /// Reading a partition's tail took longer than allowed.
    #[error("timed out reading partition {partition} of {topic:?}")]
    Timeout {
        /// The Kafka topic.
        topic: String,
        /// The partition.
        partition: i32,
    },

    /// Any other call of the Kafka client failed.
    #[error("{op}: {reason}")]
    Client {
        /// What was being done, e.g. "assign" or "create a producer".
        op: String,
        /// The client's message.
        reason: String,
    },
}

/// Result of the log layer.
pub type LogResult<T> = std::result::Result<T, LogError>;

impl LogError {
    /// Wraps an I/O error, turning "no space" into [`LogError::StorageFull`].
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if source.kind() == io::ErrorKind::StorageFull || source.kind() == io::ErrorKind::QuotaExceeded {
            LogError::StorageFull { op, path, source }
        } else {
            LogError::Io { op, path, source }
        }
    }

    pub(crate) fn corruption(
        path: impl Into<PathBuf>,
        position: u64,
        offset: Option<u64>,
        reason: impl Into<String>,
    ) -> Self {
        LogError::Corruption { path: path.into(), position, offset, reason: reason.into() }
    }

    /// True for [`LogError::Corruption`]: bytes evlog wrote came back different.
    pub fn is_corruption(&self) -> bool {
        matches!(self, LogError::Corruption { .. })
    }
}

fn fmt_offset(offset: Option<u64>) -> String {
    match offset {
        Some(o) => format!(" (offset {o})"),
        None => String::new(),
    }
}

#[cfg_attr(not(feature = "store"), allow(dead_code))] // the constructors serve the store and above
impl Error {
    /// Wraps an I/O error, turning "no space" into [`Error::StorageFull`].
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        LogError::io(op, path, source).into()
    }

    pub(crate) fn corruption(
        path: impl Into<PathBuf>,
        position: u64,
        offset: Option<u64>,
        reason: impl Into<String>,
    ) -> Self {
        LogError::corruption(path, position, offset, reason).into()
    }

    /// True for [`Error::Corruption`] and [`Error::CorruptState`]: bytes evlog wrote came back
    /// different.
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. } | Error::CorruptState { .. })
    }
}
