//! Async polling (feature `tokio`): consumers, typed consumers, work queues and replays wait
//! for appends without blocking a thread and without polling.
//!
//! Every topic of a store bumps one store-wide signal on each append (see `log.rs`,
//! `AppendSignal`). A waiting task registers its waker there; the next append (or a queue's
//! nack) wakes it, and it looks again. Leases that run out and nack delays are waited for with
//! `tokio::time`, so the lease futures need a tokio runtime with its time driver; the others
//! run on any executor.
//!
//! The work done between waits (reading mapped or cached segments, and the fsync of a durable
//! lease, ack or commit) is done inline, as the blocking API does it.

use crate::consume::codec::Codec;
use crate::consume::consumer::Consumer;
use crate::consume::typed::{Typed, TypedConsumer};
use crate::error::Result;
use crate::log::record::Record;
use crate::queue::{Delivery, PriorityQueue, Queue};
use crate::replay::{Replay, ReplayEvent};
use crate::sync::AppendSignal;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Resolves once the signal's generation moves past `generation`.
#[derive(Debug)]
struct Changed {
    signal: Arc<AppendSignal>,
    generation: u64,
    id: Option<u64>,
}

impl Changed {
    fn new(signal: Arc<AppendSignal>, generation: u64) -> Self {
        Changed { signal, generation, id: None }
    }
}

impl Future for Changed {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.generation() != self.generation {
            return Poll::Ready(());
        }
        let (id, moved) = self.signal.register(self.id, self.generation, cx.waker());
        self.id = Some(id);
        if moved { Poll::Ready(()) } else { Poll::Pending }
    }
}

impl Drop for Changed {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.signal.unregister(id);
        }
    }
}

impl Consumer {
    /// Like [`Consumer::poll`] without a timeout: resolves with at least one record (fewer than
    /// `max_records` if that is all there is), woken by appends. Cancel it by dropping it (or
    /// with `tokio::time::timeout`); no record is lost by cancelling.
    pub async fn poll_async(&mut self, max_records: usize) -> Result<Vec<Record>> {
        let signal = self.signal().clone();
        loop {
            let generation = signal.generation();
            let got = self.poll(max_records, Duration::ZERO)?;
            if !got.is_empty() || max_records == 0 {
                return Ok(got);
            }
            Changed::new(signal.clone(), generation).await;
        }
    }
}

impl<T, C: Codec<T>> TypedConsumer<T, C> {
    /// Like [`TypedConsumer::poll`], async; see [`Consumer::poll_async`].
    pub async fn poll_async(&mut self, max_records: usize) -> Result<Vec<Result<Typed<T>>>> {
        let records = self.inner().poll_async(max_records).await?;
        Ok(records.into_iter().map(|r| self.typed().decode(r)).collect())
    }
}

/// Waits until `attempt` leases something: woken by appends and nacks, and by a tokio timer
/// for the next lease deadline or nack delay.
async fn lease_async_with(
    signal: Arc<AppendSignal>,
    mut attempt: impl FnMut() -> Result<Option<Delivery>>,
    next_due: impl Fn() -> i64,
) -> Result<Delivery> {
    loop {
        let generation = signal.generation();
        if let Some(d) = attempt()? {
            return Ok(d);
        }
        let due = next_due();
        let changed = Changed::new(signal.clone(), generation);
        if due == i64::MAX {
            changed.await;
        } else {
            // `next_due` counts from now.
            let wait_ms = due.max(1);
            let _ =
                tokio::time::timeout(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(u64::MAX)), changed).await;
        }
    }
}

impl Queue {
    /// Like [`Queue::lease`] without a timeout, async (needs a tokio runtime with time).
    pub async fn lease_async(&self) -> Result<Delivery> {
        lease_async_with(self.waiting_signal(), || self.try_lease(), || self.next_due()).await
    }
}

impl PriorityQueue {
    /// Like [`PriorityQueue::lease`] without a timeout, async (needs a tokio runtime with time).
    pub async fn lease_async(&self) -> Result<Delivery> {
        // A priority queue has at least one lane (checked when it is made).
        let Some(first) = self.lanes().first() else {
            return Err(crate::error::Error::InvalidOptions {
                reason: "a priority queue needs at least one lane".into(),
            });
        };
        let next_due = || self.lanes().iter().map(Queue::next_due).min().unwrap_or(i64::MAX);
        lease_async_with(first.waiting_signal(), || self.try_lease(), next_due).await
    }
}

/// A replay as a [`futures_core::Stream`]: history in timestamp order, then (with `then_live`)
/// live events as they are appended, woken by appends.
#[derive(Debug)]
pub struct ReplayStream {
    replay: Replay,
    waiting: Option<Changed>,
}

impl Replay {
    /// This replay as an async stream.
    pub fn into_stream(self) -> ReplayStream {
        ReplayStream { replay: self, waiting: None }
    }
}

impl futures_core::Stream for ReplayStream {
    type Item = Result<ReplayEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(w) = &mut self.waiting {
                match Pin::new(w).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) => self.waiting = None,
                }
            }
            match self.replay.next_or_wait() {
                None => return Poll::Ready(None),
                Some(Ok(item)) => return Poll::Ready(Some(item)),
                Some(Err(generation)) => {
                    let signal = self.replay.store().inner().signal.clone();
                    self.waiting = Some(Changed::new(signal, generation));
                }
            }
        }
    }
}
