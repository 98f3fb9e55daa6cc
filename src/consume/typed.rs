//! Topics of the application's own types: values go through a [`Codec`] into the payload; key,
//! timestamp and headers stay in evlog's frame.

use crate::consume::codec::{Bincode, Codec};
use crate::consume::consumer::{Consumer, ConsumerOptions};
use crate::error::{Error, Result};
use crate::log::record::{NewRecord, Record};
use crate::store::{Store, Topic};
use std::marker::PhantomData;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

/// A decoded record: the value plus the record it came from (offset, timestamp, key, headers).
#[derive(Debug, Clone)]
pub struct Typed<T> {
    /// The decoded payload.
    pub value: T,
    /// The record as stored.
    pub record: Record,
}

impl<T> Typed<T> {
    /// The record's offset.
    pub fn offset(&self) -> u64 {
        self.record.offset()
    }
    /// The record's event timestamp (ms since the Unix epoch).
    pub fn timestamp(&self) -> i64 {
        self.record.timestamp()
    }
}

/// A topic whose payloads are values of `T` encoded by `C`. Cheap to clone; `Send + Sync` when
/// the codec is.
///
/// ```
/// use evlog::{Store, StoreOptions, NewRecord};
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct Order { id: u64, cents: i64 }
/// # let root = tempfile::tempdir().unwrap();
/// let store = Store::open(root.path(), StoreOptions::default())?;
/// let orders = store.typed_topic::<Order>("orders")?;
/// orders.append(&Order { id: 1, cents: 250 })?;
/// orders.append_record(&Order { id: 2, cents: 990 }, NewRecord::default().key(b"customer-9"))?;
/// let all: Vec<Order> = orders.iter(0).map(|t| t.map(|t| t.value)).collect::<Result<_, _>>()?;
/// assert_eq!(all[1], Order { id: 2, cents: 990 });
/// # Ok::<(), evlog::Error>(())
/// ```
pub struct TypedTopic<T, C = Bincode> {
    store: Store,
    topic: Arc<Topic>,
    codec: Arc<C>,
    /// The schema version this handle writes and reads natively.
    version: u32,
    /// Decoders of older versions into `T`, by version.
    upcasters: Arc<Vec<(u32, Upcaster<T>)>>,
    _values: PhantomData<fn(T) -> T>,
}

/// Decodes a payload of an older schema version into the current type.
type Upcaster<T> = Arc<dyn Fn(&[u8]) -> std::result::Result<T, String> + Send + Sync>;

/// Header of a typed record: its schema version (u32 LE); a record without it is version 1.
pub const SCHEMA_HEADER: &str = crate::format::reserved_headers::SCHEMA;

/// The schema version of a record written before versions existed, or without the header.
pub const SCHEMA_VERSION_DEFAULT: u32 = 1;

impl<T, C> Clone for TypedTopic<T, C> {
    fn clone(&self) -> Self {
        TypedTopic {
            store: self.store.clone(),
            topic: self.topic.clone(),
            codec: self.codec.clone(),
            version: self.version,
            upcasters: self.upcasters.clone(),
            _values: PhantomData,
        }
    }
}

impl<T, C> std::fmt::Debug for TypedTopic<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedTopic")
            .field("topic", &self.topic.name())
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

impl Store {
    /// The topic `name` (created if needed) with values of `T` encoded by bincode 2.
    pub fn typed_topic<T>(&self, name: &str) -> Result<TypedTopic<T, Bincode>>
    where
        Bincode: Codec<T>,
    {
        self.typed_topic_with(name, Bincode)
    }

    /// The topic `name` (created if needed) with values of `T` encoded by `codec`.
    pub fn typed_topic_with<T, C: Codec<T>>(&self, name: &str, codec: C) -> Result<TypedTopic<T, C>> {
        Ok(TypedTopic::new(self.clone(), self.topic(name)?, Arc::new(codec)))
    }
}

impl<T, C: Codec<T>> TypedTopic<T, C> {
    pub(crate) fn new(store: Store, topic: Arc<Topic>, codec: Arc<C>) -> Self {
        TypedTopic {
            store,
            topic,
            codec,
            version: SCHEMA_VERSION_DEFAULT,
            upcasters: Arc::new(Vec::new()),
            _values: PhantomData,
        }
    }

    /// This handle with `version` as the schema version it writes (header `evlog.schema`) and
    /// decodes as `T`; older versions need an upcaster ([`TypedTopic::upcast_from`]).
    pub fn schema_version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// Registers how a record of schema `version`, a value of `Old` in the same codec, becomes a
    /// `T`: adding, renaming or removing a field never breaks reading old events.
    pub fn upcast_from<Old>(mut self, version: u32, upcast: fn(Old) -> T) -> Self
    where
        C: Codec<Old>,
        T: 'static,
        Old: 'static,
    {
        let codec = self.codec.clone();
        let decode: Upcaster<T> = Arc::new(move |bytes| codec.decode(bytes).map(upcast));
        let mut list: Vec<(u32, Upcaster<T>)> = self.upcasters.iter().filter(|(v, _)| *v != version).cloned().collect();
        list.push((version, decode));
        self.upcasters = Arc::new(list);
        self
    }

    /// The underlying topic (bytes, offsets, waiting).
    pub fn topic(&self) -> &Arc<Topic> {
        &self.topic
    }

    /// Encodes `value` into a payload.
    pub fn encode(&self, value: &T) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.codec
            .encode(value, &mut out)
            .map_err(|reason| Error::Encode { topic: self.topic.name().to_string(), reason })?;
        Ok(out)
    }

    /// Decodes a record of this topic: as `T` at this handle's schema version, through an
    /// upcaster at an older one; a newer version than this handle knows is [`Error::Decode`]
    /// naming both.
    pub fn decode(&self, record: Record) -> Result<Typed<T>> {
        let version = match record.header(SCHEMA_HEADER) {
            None => SCHEMA_VERSION_DEFAULT,
            Some(v) => match <[u8; 4]>::try_from(v) {
                Ok(b) => u32::from_le_bytes(b),
                Err(_) => {
                    return Err(self.decode_error(&record, format!("schema header of {} bytes, expected 4", v.len())));
                }
            },
        };
        let decoded = if version == self.version {
            self.codec.decode(record.payload())
        } else if version > self.version {
            Err(format!("schema version {version} is newer than this reader's version {}", self.version))
        } else {
            match self.upcasters.iter().find(|(v, _)| *v == version) {
                Some((_, upcast)) => upcast(record.payload()),
                None => Err(format!("no upcaster from schema version {version} to version {}", self.version)),
            }
        };
        match decoded {
            Ok(value) => Ok(Typed { value, record }),
            Err(reason) => Err(self.decode_error(&record, reason)),
        }
    }

    fn decode_error(&self, record: &Record, reason: String) -> Error {
        Error::Decode { topic: self.topic.name().to_string(), offset: record.offset(), reason }
    }

    /// Appends `value` with timestamp now; returns its offset (durable as the topic's
    /// durability says).
    pub fn append(&self, value: &T) -> Result<u64> {
        self.append_record(value, NewRecord::default())
    }

    /// Appends `value` with the timestamp, key and headers of `meta` (its payload is ignored).
    pub fn append_record(&self, value: &T, meta: NewRecord<'_>) -> Result<u64> {
        let payload = self.encode(value)?;
        let version = self.version.to_le_bytes();
        let r = self.versioned(NewRecord { payload: &payload, ..meta }, &version);
        Ok(self.topic.append_record(&r)?)
    }

    /// `record` with this handle's schema version in its headers (none for version 1, so
    /// version-1 records stay as they were before versions existed).
    fn versioned<'a>(&self, mut record: NewRecord<'a>, version: &'a [u8; 4]) -> NewRecord<'a> {
        record.headers.retain(|(n, _)| *n != SCHEMA_HEADER);
        if self.version != SCHEMA_VERSION_DEFAULT {
            record.headers.push((SCHEMA_HEADER, version));
        }
        record
    }

    /// Appends all `values` as one atomic batch (one write, at most one fsync).
    pub fn append_batch(&self, values: &[T]) -> Result<Range<u64>> {
        let payloads = values.iter().map(|v| self.encode(v)).collect::<Result<Vec<_>>>()?;
        let version = self.version.to_le_bytes();
        let records: Vec<NewRecord<'_>> =
            payloads.iter().map(|p| self.versioned(NewRecord::new(p), &version)).collect();
        Ok(self.topic.append_batch(&records)?)
    }

    /// Appends `value` with key `key` only if the key's newest record is still at
    /// `expected_last_offset` (see [`Log::append_expecting_key`](crate::Log::append_expecting_key)).
    pub fn append_expecting_key(&self, key: &[u8], expected_last_offset: Option<u64>, value: &T) -> Result<u64> {
        let payload = self.encode(value)?;
        let version = self.version.to_le_bytes();
        let r = self.versioned(NewRecord::new(&payload), &version);
        Ok(self.topic.append_expecting_key(key, expected_last_offset, &r)?)
    }

    /// The values of `key` from `from_offset` on, in offset order (see
    /// [`Log::iter_key`](crate::Log::iter_key)), decoded (and upcast).
    pub fn iter_key(&self, key: &[u8], from_offset: u64) -> impl Iterator<Item = Result<Typed<T>>> + '_ {
        self.topic.iter_key(key, from_offset).map(move |r| r.map_err(Error::from).and_then(|r| self.decode(r)))
    }

    /// The value at `offset`, `Ok(None)` if there is no record there.
    pub fn read(&self, offset: u64) -> Result<Option<Typed<T>>> {
        self.topic.read(offset)?.map(|r| self.decode(r)).transpose()
    }

    /// Values from `from_offset` to the current end. A record that fails to decode yields
    /// [`Error::Decode`] and iteration goes on with the next one.
    pub fn iter(&self, from_offset: u64) -> impl Iterator<Item = Result<Typed<T>>> + '_ {
        self.topic.iter(from_offset).map(move |r| r.map_err(Error::from).and_then(|r| self.decode(r)))
    }

    /// A consumer of this topic for `group` that decodes what it polls.
    pub fn consumer(&self, group: &str, opts: ConsumerOptions) -> Result<TypedConsumer<T, C>> {
        let consumer = self.store.consumer(group, self.topic.name(), opts)?;
        Ok(TypedConsumer { consumer, typed: self.clone() })
    }
}

/// A [`Consumer`] that decodes. Each polled record is decoded on its own: one that fails comes
/// back as `Err(Error::Decode { topic, offset, .. })` in its place, so a bad record never hides
/// the good ones after it and never stops the group (commit moves past it like any other).
#[derive(Debug)]
pub struct TypedConsumer<T, C = Bincode> {
    consumer: Consumer,
    typed: TypedTopic<T, C>,
}

impl<T, C: Codec<T>> TypedConsumer<T, C> {
    /// Like [`Consumer::poll`], decoding each record.
    pub fn poll(&mut self, max_records: usize, timeout: Duration) -> Result<Vec<Result<Typed<T>>>> {
        let records = self.consumer.poll(max_records, timeout)?;
        Ok(records.into_iter().map(|r| self.typed.decode(r)).collect())
    }

    /// The typed topic this consumer decodes with.
    pub fn typed(&self) -> &TypedTopic<T, C> {
        &self.typed
    }

    /// The untyped consumer: commit, ack, seek, lag.
    pub fn inner(&mut self) -> &mut Consumer {
        &mut self.consumer
    }

    /// Commits the position after the last polled record (see [`Consumer::commit`]).
    pub fn commit(&mut self) -> Result<()> {
        self.consumer.commit()
    }

    /// Commits and ends the consumer.
    pub fn close(self) -> Result<()> {
        self.consumer.close()
    }
}
