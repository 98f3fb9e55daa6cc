//! Per-topic configuration that persists with the topic: its disk budget (with the policy when
//! full) and its retention by age and by size. Kept in `topics/<name>/topic.config` (FORMAT.md § Topic
//! configuration), replaced whole and durably (temp file, fsync, rename, directory fsync), so a
//! crash leaves the old configuration or the new one, never a mix.

use crate::error::{Error, Result};
use crate::format::topic_config::{
    TOPIC_CONFIG_FILE, TOPIC_CONFIG_FLAG_COMPACT_BY_KEY, TOPIC_CONFIG_FLAG_COMPRESS_LZ4, TopicConfigFields,
    decode_topic_config, encode_topic_config,
};
use crate::log::budget::{BLOCK_TIMEOUT_DEFAULT, Budget, WhenFull};
use crate::log::compact::{CompactOptions, TOMBSTONE_RETENTION_DEFAULT};
use crate::storage::{OpenMode, Storage, replace_file_durable};
use std::path::Path;
use std::time::Duration;

/// A topic's configuration, set with [`Store::configure_topic`](crate::Store::configure_topic)
/// or `evlog config`, kept with the topic and applied whenever it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicConfig {
    /// Most bytes the topic's segments may hold; `None` = no budget. At least
    /// [`BUDGET_BYTES_MIN`](crate::defaults::BUDGET_BYTES_MIN); the topic's segments roll at a quarter of it.
    pub bytes_max: Option<u64>,
    /// What an append that would go past `bytes_max` does.
    pub when_full: WhenFull,
    /// Longest a `WhenFull::Block` append waits for space before `TopicFull`.
    pub block_timeout: Duration,
    /// Retention by age: [`Store::enforce_retention`](crate::Store::enforce_retention) deletes
    /// sealed segments whose newest record is older (overrides the store's default).
    pub retention_age: Option<Duration>,
    /// Retention by size: the oldest sealed segments are deleted while the topic is larger
    /// (overrides the store's `retention_bytes_max`).
    pub retention_bytes: Option<u64>,
    /// Background maintenance compacts the topic by key ([`Log::compact`](crate::Log::compact)).
    pub compact_by_key: bool,
    /// How long compaction keeps a tombstone.
    pub tombstone_retention: Duration,
    /// Whether background maintenance compresses the topic's sealed segments.
    pub compression: Compression,
}

/// How a topic's sealed segments are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Compression {
    /// As written.
    #[default]
    None,
    /// LZ4 blocks ([`Log::compress`](crate::Log::compress)).
    Lz4,
}

impl Compression {
    /// Its name in the CLI and in `evlog config`'s JSON.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
        }
    }

    /// Parses a name given by [`Compression::name`].
    pub fn from_name(name: &str) -> Option<Compression> {
        [Compression::None, Compression::Lz4].into_iter().find(|c| c.name() == name)
    }
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            bytes_max: None,
            when_full: WhenFull::Error,
            block_timeout: BLOCK_TIMEOUT_DEFAULT,
            retention_age: None,
            retention_bytes: None,
            compact_by_key: false,
            tombstone_retention: TOMBSTONE_RETENTION_DEFAULT,
            compression: Compression::None,
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl TopicConfig {
    /// This configuration with a disk budget of `bytes_max` and `when_full` as its policy.
    pub fn with_budget(self, bytes_max: u64, when_full: WhenFull) -> TopicConfig {
        TopicConfig { bytes_max: Some(bytes_max), when_full, ..self }
    }

    /// This configuration with `when_full` as the policy of its budget (kept without one).
    pub fn with_when_full(self, when_full: WhenFull) -> TopicConfig {
        TopicConfig { when_full, ..self }
    }

    /// This configuration without a disk budget.
    pub fn without_budget(self) -> TopicConfig {
        TopicConfig { bytes_max: None, ..self }
    }

    /// This configuration with `timeout` as the longest wait of a blocked append.
    pub fn with_block_timeout(self, timeout: Duration) -> TopicConfig {
        TopicConfig { block_timeout: timeout, ..self }
    }

    /// This configuration with retention by age (`None`: the store's default).
    pub fn with_retention_age(self, age: Option<Duration>) -> TopicConfig {
        TopicConfig { retention_age: age, ..self }
    }

    /// This configuration with retention by size (`None`: the store's default).
    pub fn with_retention_bytes(self, bytes: Option<u64>) -> TopicConfig {
        TopicConfig { retention_bytes: bytes, ..self }
    }

    /// This configuration with compaction by key on or off, keeping tombstones for
    /// `tombstone_retention`.
    pub fn with_compaction(self, compact_by_key: bool, tombstone_retention: Duration) -> TopicConfig {
        TopicConfig { compact_by_key, tombstone_retention, ..self }
    }

    /// This configuration with `compression` for its sealed segments.
    pub fn with_compression(self, compression: Compression) -> TopicConfig {
        TopicConfig { compression, ..self }
    }

    /// The compaction options it asks for.
    pub fn compact_options(&self) -> CompactOptions {
        CompactOptions::default().with_tombstone_retention(self.tombstone_retention)
    }

    /// The log budget it asks for.
    pub fn budget(&self) -> Option<Budget> {
        self.bytes_max
            .map(|bytes_max| Budget { block_timeout: self.block_timeout, ..Budget::new(bytes_max, self.when_full) })
    }

    /// Refuses what cannot be applied: a budget below the floor, a zero retention age.
    pub fn validate(&self) -> Result<()> {
        if let Some(b) = self.budget() {
            b.validate()?;
        }
        if self.retention_age.is_some_and(|a| a.is_zero()) {
            return Err(Error::InvalidOptions { reason: "retention_age must be more than zero".into() });
        }
        if self.retention_bytes == Some(0) {
            return Err(Error::InvalidOptions { reason: "retention_bytes must be more than zero".into() });
        }
        Ok(())
    }

    fn to_fields(self) -> TopicConfigFields {
        TopicConfigFields {
            when_full: match self.when_full {
                WhenFull::Error => 0,
                WhenFull::Block => 1,
                WhenFull::DropOldest => 2,
            },
            bytes_max: self.bytes_max.unwrap_or(0),
            block_timeout_ms: ms(self.block_timeout),
            retention_age_ms: self.retention_age.map_or(0, ms),
            flags: if self.compact_by_key { TOPIC_CONFIG_FLAG_COMPACT_BY_KEY } else { 0 }
                | if self.compression == Compression::Lz4 { TOPIC_CONFIG_FLAG_COMPRESS_LZ4 } else { 0 },
            tombstone_retention_ms: ms(self.tombstone_retention),
            retention_bytes: self.retention_bytes.unwrap_or(0),
        }
    }

    fn from_fields(f: TopicConfigFields) -> TopicConfig {
        TopicConfig {
            bytes_max: Some(f.bytes_max).filter(|&b| b > 0),
            when_full: match f.when_full {
                1 => WhenFull::Block,
                2 => WhenFull::DropOldest,
                _ => WhenFull::Error,
            },
            block_timeout: Duration::from_millis(f.block_timeout_ms),
            retention_age: Some(f.retention_age_ms).filter(|&a| a > 0).map(Duration::from_millis),
            retention_bytes: Some(f.retention_bytes).filter(|&b| b > 0),
            compact_by_key: f.flags & TOPIC_CONFIG_FLAG_COMPACT_BY_KEY != 0,
            tombstone_retention: Duration::from_millis(f.tombstone_retention_ms),
            compression: if f.flags & TOPIC_CONFIG_FLAG_COMPRESS_LZ4 != 0 {
                Compression::Lz4
            } else {
                Compression::None
            },
        }
    }

    /// Reads the configuration of the topic in `topic_dir` (the default if it has none). A file
    /// that does not decode is [`Error::Corruption`] naming it: guessing could drop data.
    pub fn read(storage: &dyn Storage, topic_dir: &Path) -> Result<TopicConfig> {
        let path = topic_dir.join(TOPIC_CONFIG_FILE);
        let file = match storage.open(&path, OpenMode::Read) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TopicConfig::default()),
            Err(e) => return Err(Error::io("open", &path, e)),
        };
        let bytes = file
            .read_vec(0, crate::format::topic_config::TOPIC_CONFIG_LEN + 1)
            .map_err(|e| Error::io("read", &path, e))?;
        let fields = decode_topic_config(&bytes).map_err(|e| Error::Corruption {
            path: path.clone(),
            position: 0,
            offset: None,
            reason: format!("topic configuration: {e}"),
        })?;
        Ok(TopicConfig::from_fields(fields))
    }

    /// Replaces the configuration of the topic in `topic_dir`, durably.
    pub(crate) fn write(&self, storage: &dyn Storage, topic_dir: &Path) -> Result<()> {
        let path = topic_dir.join(TOPIC_CONFIG_FILE);
        replace_file_durable(storage, &path, &encode_topic_config(&self.to_fields()))
            .map_err(|e| Error::io(e.op, &path, e.source))
    }
}
