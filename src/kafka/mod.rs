//! Forwarding a local topic to Kafka exactly once, and importing a Kafka topic (feature `kafka`).
//!
//! Forwarder. Reads the local topic through a consumer group and produces each record to a
//! Kafka topic with an idempotent producer (`enable.idempotence`, `acks=all`, no message
//! timeout), into the partition `crc32(key) % partitions` (keyless records: `offset %
//! partitions`), with the event timestamp as the Kafka timestamp, the record's key and headers,
//! and one more header, `evlog.source`, naming the source: offset (u64 LE), event timestamp
//! (i64 LE), this store's 16-character id, then the local topic's name (UTF-8). One header, not
//! four: tansu 0.6 (the broker the tests run against) stalls serving records that carry more than
//! one header.
//!
//! Exactly once, across crashes, without broker transactions: at start, for every partition,
//! the forwarder reads the partition's newest record from this store and topic (scanning back
//! when other sources wrote after it) and takes its source offset `last[p]`. It then resumes at
//! the group's committed offset `c` and skips every record `o` with `o <= last[partition(o)]`.
//! This is exact because (1) the group commits `c` only after Kafka acknowledged every record
//! below `c`; (2) the partition of a record is a function of the record; (3) within one producer
//! session the idempotent producer delivers, per partition, a prefix of what it was given, in
//! order, each once (librdkafka raises a fatal error rather than leave a gap); so at every start,
//! partition `p` holds exactly this source's records of `p` up to `last[p]`.
//!
//! Importer. Consumes every partition of a Kafka topic into a local topic; each local record
//! carries `kafka.partition` (u32 LE) and `kafka.offset` (i64 LE). A restarted importer finds,
//! by reading the local topic from its newest segments backwards, the highest imported offset of
//! each partition, and resumes after it: no Kafka-side commit is needed, the local log is the
//! progress.
//!
//! Marks of earlier hops. In a chain (evlog A forwards to Kafka X, evlog B imports X and
//! forwards to Kafka Y, evlog C imports Y) each hop's marks must be its own, or a restarted hop
//! resumes from another hop's offsets. So every hop keeps exactly one mark of each kind: the
//! forwarder copies a record's headers *except* `evlog.source`, `kafka.partition` and
//! `kafka.offset` (the marks of earlier hops, meaningful only where they were made) and puts its
//! own `evlog.source` first; the importer copies a Kafka record's headers except
//! `kafka.partition`, `kafka.offset` and the reserved `evlog.txn` and appends its own. The `evlog.source` of the hop before
//! an import is kept on the imported record (where the event came from), and replaced by the
//! next forward. Provenance further back is not kept.
//!
//! Neither ever writes to the local log it forwards from, except the group's offsets.

use crate::consume::consumer::{ConsumerOptions, StartAt};
use crate::error::{Error, KafkaError, Result};
use crate::log::record::{NewRecord, Record};
use crate::storage::OpenMode;
use crate::store::{Store, Topic};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::{KafkaError as ClientError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, DeliveryResult, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Header of a forwarded record naming its source; see [`SourceMark`].
pub const SOURCE_HEADER: &str = "evlog.source";
/// Header: the Kafka partition an imported record comes from (u32 LE).
pub const KAFKA_PARTITION_HEADER: &str = "kafka.partition";
/// Header: the Kafka offset of an imported record (i64 LE).
pub const KAFKA_OFFSET_HEADER: &str = "kafka.offset";

const STORE_ID_FILE: &str = "STORE_ID";

/// Headers the forwarder does not copy to Kafka: marks of earlier hops (see the module docs).
fn forwarded_header(name: &str) -> bool {
    ![SOURCE_HEADER, KAFKA_PARTITION_HEADER, KAFKA_OFFSET_HEADER].contains(&name)
}

/// Headers the importer does not copy from Kafka: it appends its own marks, and never the
/// reserved `evlog.txn` (an atomic append's mark means something only in the store that wrote
/// it; local appends refuse it, so that no foreign record makes a part look applied).
fn imported_header(name: &str) -> bool {
    ![KAFKA_PARTITION_HEADER, KAFKA_OFFSET_HEADER, crate::format::reserved_headers::TXN].contains(&name)
}

fn kafka_err(what: &str, e: ClientError) -> Error {
    KafkaError::Client { op: what.to_string(), reason: e.to_string() }.into()
}

impl Store {
    /// This store's id: 16 hex digits made when first asked for and kept in `<root>/STORE_ID`.
    pub fn id(&self) -> Result<String> {
        let storage = self.inner().opts.log.storage.clone();
        let path = self.root().join(STORE_ID_FILE);
        if let Ok(f) = storage.open(&path, OpenMode::Read) {
            let len = f.len().map_err(|e| Error::io("stat", &path, e))?;
            let bytes =
                f.read_vec(0, usize::try_from(len.min(64)).unwrap_or(64)).map_err(|e| Error::io("read", &path, e))?;
            let id = String::from_utf8_lossy(&bytes).trim().to_string();
            if id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok(id);
            }
        }
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(crate::clock::now_nanos());
        h.write_u32(std::process::id());
        let id = format!("{:016x}", h.finish());
        crate::storage::replace_file_durable(storage.as_ref(), &path, id.as_bytes())
            .map_err(|e| Error::io(e.op, &path, e.source))?;
        Ok(id)
    }
}

/// What the `evlog.source` header of a forwarded record says: bytes 0..8 the local offset
/// (u64 LE), 8..16 the event timestamp (i64 LE), 16..32 the store id (16 ASCII hex digits),
/// then the local topic's name (UTF-8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMark {
    /// The source store's id ([`Store::id`]).
    pub store: String,
    /// The local topic.
    pub topic: String,
    /// The local offset.
    pub offset: u64,
    /// The event timestamp.
    pub timestamp: i64,
}

impl SourceMark {
    /// The header's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(32 + self.topic.len());
        v.extend_from_slice(&self.offset.to_le_bytes());
        v.extend_from_slice(&self.timestamp.to_le_bytes());
        v.extend_from_slice(self.store.as_bytes());
        v.extend_from_slice(self.topic.as_bytes());
        v
    }

    /// Parses the header's bytes; `None` when they are not a source mark.
    pub fn decode(v: &[u8]) -> Option<SourceMark> {
        let offset = u64::from_le_bytes(v.get(..8)?.try_into().ok()?);
        let timestamp = i64::from_le_bytes(v.get(8..16)?.try_into().ok()?);
        let store = std::str::from_utf8(v.get(16..32)?).ok()?.to_string();
        let topic = std::str::from_utf8(v.get(32..)?).ok()?.to_string();
        Some(SourceMark { store, topic, offset, timestamp })
    }
}

/// The partition of a forwarded record: by key (so per-key order holds), else by offset.
pub fn partition_for(key: Option<&[u8]>, offset: u64, partitions: u32) -> u32 {
    let partitions = partitions.max(1);
    match key {
        Some(k) => crc32fast::hash(k) % partitions,
        None => (offset % u64::from(partitions)) as u32,
    }
}

/// How a [`Forwarder`] runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ForwarderOptions {
    /// `host:port` of one or more brokers, comma-separated.
    pub brokers: String,
    /// The destination topic (must exist).
    pub kafka_topic: String,
    /// The local consumer group that holds the forwarder's position (default `kafka-forwarder`).
    pub group: String,
    /// Extra librdkafka settings (e.g. security); applied last.
    pub kafka_config: Vec<(String, String)>,
    /// How long to wait for the cluster's metadata at start.
    pub connect_timeout: Duration,
    /// Records read from the local topic per round.
    pub batch_records_max: usize,
}

impl ForwarderOptions {
    /// Options for `brokers` and `kafka_topic`, defaults otherwise.
    pub fn new(brokers: &str, kafka_topic: &str) -> Self {
        ForwarderOptions {
            brokers: brokers.to_string(),
            kafka_topic: kafka_topic.to_string(),
            group: "kafka-forwarder".into(),
            kafka_config: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            batch_records_max: 1000,
        }
    }
}

/// What a forwarder has done, and how far behind it is.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct ForwarderStats {
    /// Records produced and acknowledged by Kafka in this run.
    pub forwarded: u64,
    /// Records skipped at start because Kafka already had them.
    pub skipped: u64,
    /// Local records not yet acknowledged by Kafka.
    pub lag_records: u64,
    /// Age of the oldest of those, by its timestamp, in seconds.
    pub lag_seconds: f64,
    /// The group's committed offset.
    pub committed: u64,
}

struct Acks(mpsc::Sender<std::result::Result<u64, String>>);

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = Box<u64>;
    fn delivery(&self, result: &DeliveryResult<'_>, offset: Box<u64>) {
        let r = match result {
            Ok(_) => Ok(*offset),
            Err((e, _)) => Err(format!("offset {offset}: {e}")),
        };
        let _ = self.0.send(r);
    }
}

/// Forwards a local topic to Kafka exactly once (see the module documentation).
pub struct Forwarder {
    store: Store,
    topic: Arc<Topic>,
    opts: ForwarderOptions,
    store_id: String,
    partitions: u32,
    producer: ThreadedProducer<Acks>,
    acks: mpsc::Receiver<std::result::Result<u64, String>>,
    /// Highest source offset already in each partition, found at start.
    last: Vec<Option<u64>>,
    stats: ForwarderStats,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").field("topic", &self.topic.name()).field("opts", &self.opts).finish()
    }
}

fn client_config(brokers: &str, extra: &[(String, String)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for (k, v) in extra {
        c.set(k, v);
    }
    c
}

/// The number of partitions of `topic`, or a clear error when the cluster cannot be reached or
/// the topic does not exist.
fn partitions_of(consumer: &BaseConsumer, brokers: &str, topic: &str, timeout: Duration) -> Result<u32> {
    let md = consumer.fetch_metadata(Some(topic), timeout).map_err(|e| KafkaError::Unreachable {
        brokers: brokers.to_string(),
        timeout,
        reason: e.to_string(),
    })?;
    let t = md.topics().iter().find(|t| t.name() == topic);
    match t {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(t.partitions().len() as u32),
        _ => Err(KafkaError::NoSuchTopic { brokers: brokers.to_string(), topic: topic.to_string() }.into()),
    }
}

fn header<'a>(m: &'a BorrowedMessage<'_>, name: &str) -> Option<&'a [u8]> {
    m.headers()?.iter().find(|h| h.key == name).and_then(|h| h.value)
}

impl Forwarder {
    /// Connects, reads where each partition stands and positions the group. Fails with
    /// [`Error::Kafka`] when the brokers cannot be reached or the topic does not exist.
    pub fn start(store: &Store, topic: &str, opts: ForwarderOptions) -> Result<Forwarder> {
        let t = store.topic(topic)?;
        let store_id = store.id()?;
        let probe: BaseConsumer = client_config(&opts.brokers, &opts.kafka_config)
            .set("group.id", format!("evlog-probe-{store_id}"))
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| kafka_err("create a consumer", e))?;
        let partitions = partitions_of(&probe, &opts.brokers, &opts.kafka_topic, opts.connect_timeout)?;
        let mut last = Vec::new();
        for p in 0..partitions {
            last.push(Self::last_forwarded(&probe, &opts, &store_id, topic, p as i32)?);
        }
        let (tx, rx) = mpsc::channel();
        let producer: ThreadedProducer<Acks> = client_config(&opts.brokers, &opts.kafka_config)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "0")
            .set("linger.ms", "5")
            .create_with_context(Acks(tx))
            .map_err(|e| kafka_err("create a producer", e))?;
        Ok(Forwarder {
            store: store.clone(),
            topic: t,
            opts,
            store_id,
            partitions,
            producer,
            acks: rx,
            last,
            stats: ForwarderStats::default(),
        })
    }

    /// The highest source offset of (this store, `topic`) in partition `p`: reads the
    /// partition's tail, doubling the window back until it finds one or reaches the start.
    fn last_forwarded(
        consumer: &BaseConsumer,
        opts: &ForwarderOptions,
        store_id: &str,
        topic: &str,
        p: i32,
    ) -> Result<Option<u64>> {
        let (lo, hi) = consumer
            .fetch_watermarks(&opts.kafka_topic, p, opts.connect_timeout)
            .map_err(|e| kafka_err("read the partition watermarks", e))?;
        let mut window = 1i64;
        let mut end = hi;
        while end > lo {
            let from = (end - window).max(lo);
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&opts.kafka_topic, p, Offset::Offset(from)).map_err(|e| kafka_err("assign", e))?;
            consumer.assign(&tpl).map_err(|e| kafka_err("assign", e))?;
            let mut found = None;
            let mut next = from;
            let deadline = Instant::now() + opts.connect_timeout.max(Duration::from_secs(10));
            while next < end {
                if Instant::now() > deadline {
                    return Err(KafkaError::Timeout { topic: opts.kafka_topic.clone(), partition: p }.into());
                }
                let Some(m) = consumer.poll(Duration::from_millis(500)) else { continue };
                let m = m.map_err(|e| kafka_err("read the partition tail", e))?;
                next = m.offset() + 1;
                if let Some(mark) = header(&m, SOURCE_HEADER).and_then(SourceMark::decode)
                    && mark.store == store_id
                    && mark.topic == topic
                {
                    found = Some(mark.offset);
                }
            }
            if found.is_some() {
                return Ok(found);
            }
            end = from;
            window = window.saturating_mul(2);
        }
        Ok(None)
    }

    /// Kafka partitions of the destination topic.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Counts and lag now.
    pub fn stats(&self) -> ForwarderStats {
        self.stats
    }

    /// Forwards until `stop` is set (checked between rounds) or, with `until_caught_up`, until
    /// every record appended before that moment is acknowledged and committed. Waits for new
    /// local records without polling; keeps retrying while the brokers are down (librdkafka
    /// queues and retries; local appends are never affected). `progress` is called about once a
    /// second.
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        until_caught_up: bool,
        mut progress: impl FnMut(&ForwarderStats),
    ) -> Result<ForwarderStats> {
        let mut c = self.store.consumer(
            &self.opts.group,
            self.topic.name(),
            ConsumerOptions::starting_at(StartAt::Earliest),
        )?;
        let mut unacked: BTreeSet<u64> = BTreeSet::new();
        let mut committed = c.committed().unwrap_or(c.position());
        let mut last_progress = Instant::now();
        let target = self.topic.next_offset();
        loop {
            committed = self.settle(&mut c, &mut unacked, committed)?;
            self.stats.lag_records = self.topic.next_offset().saturating_sub(committed);
            if last_progress.elapsed() >= Duration::from_secs(1) {
                self.stats.lag_seconds = self.lag_seconds(committed)?;
                progress(&self.stats);
                last_progress = Instant::now();
            }
            if stop.load(Ordering::SeqCst) || (until_caught_up && committed >= target) {
                break;
            }
            let batch =
                c.poll(self.opts.batch_records_max, Duration::from_millis(if unacked.is_empty() { 500 } else { 5 }))?;
            for r in &batch {
                let p = partition_for(r.key(), r.offset(), self.partitions);
                if self.last.get(p as usize).copied().flatten().is_some_and(|l| r.offset() <= l) {
                    self.stats.skipped += 1;
                    continue;
                }
                self.produce(r, p)?;
                unacked.insert(r.offset());
            }
        }
        self.producer.flush(Duration::from_secs(30)).map_err(|e| kafka_err("flush", e))?;
        self.settle(&mut c, &mut unacked, committed)?;
        c.close()?;
        self.stats.lag_records = self.topic.next_offset().saturating_sub(self.stats.committed);
        Ok(self.stats)
    }

    /// Takes in Kafka's acknowledgements and commits the group up to the first record still
    /// unacknowledged (or the position, when none is). Returns the committed offset.
    fn settle(
        &mut self,
        c: &mut crate::consume::consumer::Consumer,
        unacked: &mut BTreeSet<u64>,
        committed: u64,
    ) -> Result<u64> {
        while let Ok(ack) = self.acks.try_recv() {
            let offset = ack.map_err(|reason| KafkaError::Delivery { reason })?;
            unacked.remove(&offset);
            self.stats.forwarded += 1;
        }
        let floor = unacked.first().copied().unwrap_or(c.position());
        let committed = if floor > committed {
            c.commit_offset(floor)?;
            floor
        } else {
            committed
        };
        self.stats.committed = committed;
        Ok(committed)
    }

    fn lag_seconds(&self, committed: u64) -> Result<f64> {
        let now = crate::clock::now_ms();
        Ok(match self.topic.read(committed)? {
            Some(r) => (now.saturating_sub(r.timestamp())).max(0) as f64 / 1e3,
            None => 0.0,
        })
    }

    /// Hands one record to librdkafka, waiting while its queue is full.
    fn produce(&self, r: &Record, partition: u32) -> Result<()> {
        let mark = SourceMark {
            store: self.store_id.clone(),
            topic: self.topic.name().to_string(),
            offset: r.offset(),
            timestamp: r.timestamp(),
        }
        .encode();
        let mut headers = OwnedHeaders::new().insert(Header { key: SOURCE_HEADER, value: Some(&mark[..]) });
        for (k, v) in r.headers().filter(|(k, _)| forwarded_header(k)) {
            headers = headers.insert(Header { key: k, value: Some(v) });
        }
        let mut record: BaseRecord<'_, [u8], [u8], Box<u64>> =
            BaseRecord::with_opaque_to(&self.opts.kafka_topic, Box::new(r.offset()))
                .payload(r.payload())
                .partition(partition as i32)
                .timestamp(r.timestamp())
                .headers(headers);
        if let Some(k) = r.key() {
            record = record.key(k);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((ClientError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((ClientError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _)) => {
                    return Err(
                        KafkaError::RecordTooLarge { offset: r.offset(), bytes: r.payload().len() as u64 }.into()
                    );
                }
                Err((e, _)) => return Err(kafka_err(&format!("produce offset {}", r.offset()), e)),
            }
        }
    }
}

/// How an [`Importer`] runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ImporterOptions {
    /// `host:port` of one or more brokers, comma-separated.
    pub brokers: String,
    /// The Kafka topic to import (all partitions).
    pub kafka_topic: String,
    /// Extra librdkafka settings; applied last.
    pub kafka_config: Vec<(String, String)>,
    /// How long to wait for the cluster's metadata at start.
    pub connect_timeout: Duration,
}

impl ImporterOptions {
    /// Options for `brokers` and `kafka_topic`, defaults otherwise.
    pub fn new(brokers: &str, kafka_topic: &str) -> Self {
        ImporterOptions {
            brokers: brokers.to_string(),
            kafka_topic: kafka_topic.to_string(),
            kafka_config: Vec::new(),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// A Kafka record on its way into the local topic.
struct Fetched {
    payload: Vec<u8>,
    key: Option<Vec<u8>>,
    timestamp: i64,
    headers: Vec<(String, Vec<u8>)>,
    partition: u32,
    offset: i64,
}

/// Imports a Kafka topic into a local topic, resuming from the local log (see the module
/// documentation).
pub struct Importer {
    topic: Arc<Topic>,
    opts: ImporterOptions,
    consumer: BaseConsumer,
    /// Next Kafka offset to import per partition.
    next: Vec<i64>,
    /// High watermarks when the importer started: `until_caught_up` stops there.
    target: Vec<i64>,
    imported: u64,
}

impl std::fmt::Debug for Importer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Importer").field("topic", &self.topic.name()).field("opts", &self.opts).finish()
    }
}

impl Importer {
    /// Connects and finds where each partition's import stands.
    pub fn start(store: &Store, topic: &str, opts: ImporterOptions) -> Result<Importer> {
        let t = store.topic(topic)?;
        let consumer: BaseConsumer = client_config(&opts.brokers, &opts.kafka_config)
            .set("group.id", format!("evlog-import-{}", store.id()?))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .map_err(|e| kafka_err("create a consumer", e))?;
        let partitions = partitions_of(&consumer, &opts.brokers, &opts.kafka_topic, opts.connect_timeout)?;
        let next = Self::resume_points(&t, partitions)?;
        // The high watermarks now, before assigning: once the consumer fetches, a slow broker
        // may take long to answer anything else.
        let mut target = Vec::with_capacity(partitions as usize);
        for p in 0..partitions as i32 {
            let (_, hi) = consumer
                .fetch_watermarks(&opts.kafka_topic, p, opts.connect_timeout)
                .map_err(|e| kafka_err("read the partition watermarks", e))?;
            target.push(hi);
        }
        let mut tpl = TopicPartitionList::new();
        for (p, &n) in next.iter().enumerate() {
            tpl.add_partition_offset(&opts.kafka_topic, p as i32, Offset::Offset(n))
                .map_err(|e| kafka_err("assign", e))?;
        }
        consumer.assign(&tpl).map_err(|e| kafka_err("assign", e))?;
        Ok(Importer { topic: t, opts, consumer, next, target, imported: 0 })
    }

    /// Per partition, one past the highest Kafka offset already in the local topic: reads the
    /// local segments from the newest back until every partition is seen or the start is reached.
    fn resume_points(topic: &Topic, partitions: u32) -> Result<Vec<i64>> {
        let mut next: Vec<Option<i64>> = vec![None; partitions as usize];
        let sealed = topic.sealed_segments()?;
        let mut bases: Vec<u64> = sealed.iter().map(|s| s.base_offset).collect();
        bases.push(sealed.last().map_or(topic.first_offset(), |s| s.end_offset));
        let mut end = topic.next_offset();
        for &base in bases.iter().rev() {
            let from = base.max(topic.first_offset());
            for r in topic.iter(from) {
                let r = r?;
                if r.offset() >= end {
                    break;
                }
                let p = r.header(KAFKA_PARTITION_HEADER).and_then(|v| v.try_into().ok()).map(u32::from_le_bytes);
                let o = r.header(KAFKA_OFFSET_HEADER).and_then(|v| v.try_into().ok()).map(i64::from_le_bytes);
                if let (Some(p), Some(o)) = (p, o)
                    && let Some(slot) = next.get_mut(p as usize)
                {
                    *slot = Some(slot.map_or(o + 1, |n| n.max(o + 1)));
                }
            }
            if next.iter().all(Option::is_some) {
                break;
            }
            end = from;
            if from == 0 {
                break;
            }
        }
        Ok(next.into_iter().map(|n| n.unwrap_or(0)).collect())
    }

    /// Records imported by this importer so far.
    pub fn imported(&self) -> u64 {
        self.imported
    }

    /// Kafka records not yet imported (sum over partitions of high watermark − next).
    pub fn lag(&self) -> Result<u64> {
        let mut lag = 0;
        for (p, &n) in self.next.iter().enumerate() {
            let (_, hi) = self
                .consumer
                .fetch_watermarks(&self.opts.kafka_topic, p as i32, self.opts.connect_timeout)
                .map_err(|e| kafka_err("read the partition watermarks", e))?;
            lag += (hi - n).max(0) as u64;
        }
        Ok(lag)
    }

    /// Imports until `stop` is set or, with `until_caught_up`, until every partition is
    /// imported up to its high watermark as it was when the importer started. Each poll's records are
    /// appended as one atomic batch. A broker that is down or slow to answer only delays it.
    pub fn run(&mut self, stop: &AtomicBool, until_caught_up: bool, mut progress: impl FnMut(u64, u64)) -> Result<u64> {
        let target = self.target.clone();
        let mut last_progress = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            let remaining: i64 = self.next.iter().zip(&target).map(|(n, t)| (t - n).max(0)).sum();
            if last_progress.elapsed() >= Duration::from_secs(1) {
                progress(self.imported, remaining as u64);
                last_progress = Instant::now();
            }
            if until_caught_up && remaining == 0 {
                progress(self.imported, 0);
                break;
            }
            let mut owned: Vec<Fetched> = Vec::new();
            let deadline = Instant::now() + Duration::from_millis(200);
            while owned.len() < 1000 && Instant::now() < deadline {
                let Some(m) = self.consumer.poll(Duration::from_millis(50)) else { continue };
                let m = m.map_err(|e| kafka_err("consume", e))?;
                let p = m.partition() as u32;
                if self.next.get(p as usize).is_none_or(|&next| m.offset() < next) {
                    continue; // already imported (a redelivery after a reconnect)
                }
                let headers = m
                    .headers()
                    .map(|h| {
                        (h.iter().filter(|h| imported_header(h.key)))
                            .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default();
                let ts = m.timestamp().to_millis().unwrap_or(0);
                owned.push(Fetched {
                    payload: m.payload().unwrap_or_default().to_vec(),
                    key: m.key().map(<[u8]>::to_vec),
                    timestamp: ts,
                    headers,
                    partition: p,
                    offset: m.offset(),
                });
            }
            if !owned.is_empty() {
                let marks: Vec<([u8; 4], [u8; 8])> =
                    owned.iter().map(|o| (o.partition.to_le_bytes(), o.offset.to_le_bytes())).collect();
                let records: Vec<NewRecord<'_>> = owned
                    .iter()
                    .zip(&marks)
                    .map(|(o, (p, off))| {
                        let mut headers: Vec<(&str, &[u8])> =
                            o.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
                        headers.push((KAFKA_PARTITION_HEADER, &p[..]));
                        headers.push((KAFKA_OFFSET_HEADER, &off[..]));
                        NewRecord { timestamp: Some(o.timestamp), key: o.key.as_deref(), headers, payload: &o.payload }
                    })
                    .collect();
                self.topic.append_batch(&records)?;
                for o in &owned {
                    if let Some(next) = self.next.get_mut(o.partition as usize) {
                        *next = o.offset + 1;
                    }
                }
                self.imported += owned.len() as u64;
            }
        }
        Ok(self.imported)
    }
}
