//! An in-process event bus over a store: `publish` appends durably; each subscription is a
//! consumer group run by its own worker thread, at-least-once, committing after success.
//!
//! Per event, a subscription: decodes it (a payload that does not decode is dead-lettered at
//! once: no retry can fix it), runs the filter/map pipeline (an event filtered out counts as
//! done), then calls the handler. A handler error or panic is retried with exponential back-off
//! up to `retries_max` times; then the event goes to the dead-letter topic with the last error
//! as its reason and the subscription moves on. The group's offset is committed after each
//! polled batch is done and at shutdown, so a crash redelivers at most the batch in progress.
//!
//! Dead letters go through an idempotent producer (sequence = source offset), so a redelivered
//! batch cannot dead-letter an event twice.

use crate::consume::codec::{Bincode, Codec};
use crate::consume::consumer::ConsumerOptions;
use crate::consume::typed::Typed;
use crate::error::{Error, Result};
use crate::log::record::Record;
use crate::queue::DeadLetters;
use crate::store::Store;
use crate::sync::lock;
use std::fmt::Display;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How a subscription retries, dead-letters and commits.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SubscriptionOptions {
    /// Where a new group starts, and how durable its commits are.
    pub consumer: ConsumerOptions,
    /// Retries after the first failure before an event is dead-lettered.
    pub retries_max: u32,
    /// First back-off; doubled after each retry.
    pub backoff_initial: Duration,
    /// Longest back-off.
    pub backoff_max: Duration,
    /// Dead-letter topic; `None` means `<topic>.dead`.
    pub dead_letter_topic: Option<String>,
    /// Most events handled between two commits.
    pub batch_records_max: usize,
}

impl Default for SubscriptionOptions {
    fn default() -> Self {
        SubscriptionOptions {
            consumer: ConsumerOptions::default(),
            retries_max: 3,
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_secs(1),
            dead_letter_topic: None,
            batch_records_max: 256,
        }
    }
}

/// What a subscription has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriptionStats {
    /// Events the handler accepted.
    pub handled: u64,
    /// Events the filter dropped.
    pub filtered: u64,
    /// Handler calls that failed (errors and panics).
    pub failures: u64,
    /// Events sent to the dead-letter topic.
    pub dead_lettered: u64,
    /// Commits.
    pub commits: u64,
}

#[derive(Debug, Default)]
struct Counters {
    handled: AtomicU64,
    filtered: AtomicU64,
    failures: AtomicU64,
    dead_lettered: AtomicU64,
    commits: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> SubscriptionStats {
        SubscriptionStats {
            handled: self.handled.load(Ordering::Relaxed),
            filtered: self.filtered.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
        }
    }
}

/// The shared part of a running subscription: stop flag, counters, worker thread.
#[derive(Debug)]
struct Running {
    topic: String,
    group: String,
    stop: AtomicBool,
    counters: Counters,
    thread: Mutex<Option<JoinHandle<Result<()>>>>,
    store: Store,
}

impl Running {
    /// Stops the worker after the event in progress, then waits for its final commit.
    fn shutdown(&self) -> Result<SubscriptionStats> {
        self.stop.store(true, Ordering::SeqCst);
        self.store.inner().signal.notify();
        let handle = lock(&self.thread).take();
        if let Some(h) = handle {
            match h.join() {
                Ok(r) => r?,
                Err(_) => {
                    return Err(Error::WorkerPanicked { topic: self.topic.clone(), group: self.group.clone() });
                }
            }
        }
        Ok(self.counters.snapshot())
    }
}

#[must_use = "dropping a Subscription stops it"]
/// A running subscription. Dropping it stops it (like [`Subscription::shutdown`], ignoring the
/// result).
#[derive(Debug)]
pub struct Subscription {
    running: Arc<Running>,
}

impl Subscription {
    /// Counts so far.
    pub fn stats(&self) -> SubscriptionStats {
        self.running.counters.snapshot()
    }

    /// Whether the worker is still running (it stops on shutdown or on a storage error, which
    /// `shutdown` then returns).
    pub fn is_running(&self) -> bool {
        lock(&self.running.thread).as_ref().is_some_and(|h| !h.is_finished())
    }

    /// Finishes the event in progress (with its retries), commits, stops the worker.
    pub fn shutdown(self) -> Result<SubscriptionStats> {
        self.running.shutdown()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.running.shutdown();
    }
}

/// An event bus over a store. Cheap to clone.
///
/// ```
/// use evlog::{EventBus, Store, StoreOptions};
/// use std::sync::mpsc;
/// #[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
/// struct SignedUp { user: u64 }
/// # let root = tempfile::tempdir().unwrap();
/// let store = Store::open(root.path(), StoreOptions::default())?;
/// let bus = EventBus::new(&store);
/// let (tx, rx) = mpsc::channel();
/// let _welcome = bus
///     .subscription::<SignedUp>("welcome-mail", "signups")
///     .filter(|e| e.user != 0)
///     .map(|e| e.user)
///     .handle(move |user| tx.send(user.value).map_err(|e| e.to_string()))?;
/// bus.publish("signups", &SignedUp { user: 42 })?;
/// assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap(), 42);
/// bus.shutdown()?;
/// # Ok::<(), evlog::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct EventBus {
    store: Store,
    running: Arc<Mutex<Vec<Arc<Running>>>>,
}

impl EventBus {
    /// A bus over `store`.
    pub fn new(store: &Store) -> Self {
        EventBus { store: store.clone(), running: Arc::default() }
    }

    /// Appends `event` (bincode) to `topic`; durable as the store's topics are on return.
    pub fn publish<T>(&self, topic: &str, event: &T) -> Result<u64>
    where
        Bincode: Codec<T>,
    {
        self.store.typed_topic::<T>(topic)?.append(event)
    }

    /// Starts building a subscription of `group` to `topic`, whose events are `T` (bincode).
    pub fn subscription<T: 'static>(&self, group: &str, topic: &str) -> SubscriptionBuilder<T, T, Bincode>
    where
        Bincode: Codec<T>,
    {
        self.subscription_with(group, topic, Bincode)
    }

    /// Like [`EventBus::subscription`] with another codec.
    pub fn subscription_with<T: 'static, C: Codec<T>>(
        &self,
        group: &str,
        topic: &str,
        codec: C,
    ) -> SubscriptionBuilder<T, T, C> {
        SubscriptionBuilder {
            bus: self.clone(),
            group: group.to_string(),
            topic: topic.to_string(),
            codec,
            opts: SubscriptionOptions::default(),
            pipeline: Box::new(Some),
            _in: PhantomData,
        }
    }

    /// Subscribes `handler` to every event of `topic` for `group` with default options.
    pub fn subscribe<T, E, F>(&self, group: &str, topic: &str, handler: F) -> Result<Subscription>
    where
        Bincode: Codec<T>,
        T: Send + 'static,
        E: Display,
        F: FnMut(&Typed<T>) -> std::result::Result<(), E> + Send + 'static,
    {
        self.subscription::<T>(group, topic).handle(handler)
    }

    /// Stops every subscription started through this bus (each finishes its event in progress
    /// and commits). Returns the first error a worker met.
    pub fn shutdown(&self) -> Result<()> {
        let all: Vec<_> = lock(&self.running).drain(..).collect();
        let mut first = Ok(());
        for r in all {
            if let Err(e) = r.shutdown()
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }
}

type Pipeline<T, U> = Box<dyn Fn(T) -> Option<U> + Send>;

/// A subscription being set up: `filter` and `map` build a pipeline from the topic's `T` to the
/// handler's `U`.
pub struct SubscriptionBuilder<T, U, C> {
    bus: EventBus,
    group: String,
    topic: String,
    codec: C,
    opts: SubscriptionOptions,
    pipeline: Pipeline<T, U>,
    _in: PhantomData<fn(T)>,
}

impl<T, U, C> std::fmt::Debug for SubscriptionBuilder<T, U, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionBuilder").field("group", &self.group).field("topic", &self.topic).finish()
    }
}

impl<T: 'static, U: 'static, C: Codec<T>> SubscriptionBuilder<T, U, C> {
    /// Options (retries, back-off, dead-letter topic, start, commit durability).
    pub fn options(mut self, opts: SubscriptionOptions) -> Self {
        self.opts = opts;
        self
    }

    /// Keeps only events for which `keep` is true; the others count as done.
    pub fn filter(self, keep: impl Fn(&U) -> bool + Send + 'static) -> Self {
        let prev = self.pipeline;
        SubscriptionBuilder { pipeline: Box::new(move |t| prev(t).filter(|u| keep(u))), ..self }
    }

    /// Transforms each event before the handler sees it.
    pub fn map<V: 'static>(self, f: impl Fn(U) -> V + Send + 'static) -> SubscriptionBuilder<T, V, C> {
        let prev = self.pipeline;
        SubscriptionBuilder {
            bus: self.bus,
            group: self.group,
            topic: self.topic,
            codec: self.codec,
            opts: self.opts,
            pipeline: Box::new(move |t| prev(t).map(&f)),
            _in: PhantomData,
        }
    }

    /// Starts the worker thread. Fails at once (not in the thread) if the group is busy or a
    /// name is invalid.
    pub fn handle<E, F>(self, handler: F) -> Result<Subscription>
    where
        T: Send,
        U: Send,
        E: Display,
        F: FnMut(&Typed<U>) -> std::result::Result<(), E> + Send + 'static,
    {
        let store = self.bus.store.clone();
        let typed = store.typed_topic_with::<T, C>(&self.topic, self.codec)?;
        let dead = DeadLetters::new(&store, "bus", &self.group, &self.topic, self.opts.dead_letter_topic.as_deref())?;
        let consumer = typed.consumer(&self.group, self.opts.consumer)?;
        let running = Arc::new(Running {
            topic: self.topic.clone(),
            group: self.group.clone(),
            stop: AtomicBool::new(false),
            counters: Counters::default(),
            thread: Mutex::new(None),
            store: store.clone(),
        });
        let worker = Worker {
            store,
            consumer,
            pipeline: self.pipeline,
            handler,
            opts: self.opts,
            group: self.group,
            dead,
            running: running.clone(),
        };
        let name = format!("evlog-bus-{}", worker.group);
        let handle = std::thread::Builder::new().name(name).spawn(move || worker.run()).map_err(|source| {
            Error::Spawn { what: format!("the event bus worker of group {:?}", running.group), source }
        })?;
        *lock(&running.thread) = Some(handle);
        lock(&self.bus.running).push(running.clone());
        Ok(Subscription { running })
    }
}

struct Worker<T, U, C, F> {
    store: Store,
    consumer: crate::consume::typed::TypedConsumer<T, C>,
    pipeline: Pipeline<T, U>,
    handler: F,
    opts: SubscriptionOptions,
    group: String,
    dead: DeadLetters,
    running: Arc<Running>,
}

impl<T, U, C, E, F> Worker<T, U, C, F>
where
    C: Codec<T>,
    E: Display,
    F: FnMut(&Typed<U>) -> std::result::Result<(), E>,
{
    fn run(mut self) -> Result<()> {
        let signal = self.store.inner().signal.clone();
        let counters = &self.running.clone().counters;
        while !self.running.stop.load(Ordering::SeqCst) {
            let generation = signal.generation();
            let batch = self.consumer.poll(self.opts.batch_records_max, Duration::ZERO)?;
            if batch.is_empty() {
                // Woken by any append in the store, or by shutdown.
                signal.wait_past(generation, Duration::from_secs(60));
                continue;
            }
            for event in batch {
                match event {
                    Ok(typed) => {
                        let record = typed.record;
                        match (self.pipeline)(typed.value) {
                            None => {
                                counters.filtered.fetch_add(1, Ordering::Relaxed);
                            }
                            Some(value) => self.deliver(Typed { value, record }, counters)?,
                        }
                    }
                    Err(Error::Decode { offset, reason, .. }) => {
                        let record = self.consumer.inner().topic().read(offset)?;
                        if let Some(record) = record {
                            self.dead_letter(&record, &format!("cannot decode: {reason}"), 0)?;
                            counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            self.consumer.commit()?;
            counters.commits.fetch_add(1, Ordering::Relaxed);
        }
        self.consumer.close()?;
        counters.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Runs the handler with retries; dead-letters after the last one.
    fn deliver(&mut self, event: Typed<U>, counters: &Counters) -> Result<()> {
        let mut backoff = self.opts.backoff_initial;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome = catch_unwind(AssertUnwindSafe(|| (self.handler)(&event)));
            let reason = match outcome {
                Ok(Ok(())) => {
                    counters.handled.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Ok(Err(e)) => e.to_string(),
                Err(panic) => format!(
                    "handler panicked: {}",
                    panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default()
                ),
            };
            counters.failures.fetch_add(1, Ordering::Relaxed);
            if attempt > self.opts.retries_max {
                self.dead_letter(&event.record, &reason, attempt)?;
                counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(self.opts.backoff_max);
        }
    }

    fn dead_letter(&mut self, record: &Record, reason: &str, attempts: u32) -> Result<()> {
        self.dead.send(record, reason, attempts)
    }
}
