//! Event-time windows over an ordered replay.
//!
//! A window is identified by its end `e`, a multiple of `slide_ms`, and holds the events with
//! `e - size_ms < timestamp <= e` (the sliding window W(t) = { x | t − w < tₓ <= t } at t = e).
//! `slide_ms == size_ms` gives tumbling windows. Because replay emits events in timestamp order,
//! the timestamp of the event being read is the watermark: a window is emitted as soon as an
//! event past its end arrives (and the rest at the end of the stream). Windows with no event are
//! not emitted. Live events flagged `late` are not folded in; they are counted.

use crate::error::{Error, Result};
use crate::replay::ReplayEvent;
use std::collections::VecDeque;

/// Window size and slide, in milliseconds of event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    /// Length of a window.
    pub size_ms: i64,
    /// Distance between consecutive window ends.
    pub slide_ms: i64,
}

impl WindowSpec {
    /// Tumbling windows of `size_ms`.
    pub fn tumbling(size_ms: i64) -> Self {
        WindowSpec { size_ms, slide_ms: size_ms }
    }
    /// Sliding windows of `size_ms`, one ending every `slide_ms`.
    pub fn sliding(size_ms: i64, slide_ms: i64) -> Self {
        WindowSpec { size_ms, slide_ms }
    }
}

/// One finished window.
#[derive(Debug, Clone, PartialEq)]
pub struct Window<A> {
    /// Events with `end - size < timestamp <= end`.
    pub end: i64,
    /// Events in the window.
    pub count: u64,
    /// The fold over them.
    pub value: A,
}

/// Count, sum, min and max of a number taken from each event.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    /// Sum of the values.
    pub sum: f64,
    /// Smallest value.
    pub min: Option<f64>,
    /// Largest value.
    pub max: Option<f64>,
}

impl Summary {
    /// Folds one value in.
    pub fn add(&mut self, x: f64) {
        self.sum += x;
        self.min = Some(self.min.map_or(x, |m| m.min(x)));
        self.max = Some(self.max.map_or(x, |m| m.max(x)));
    }
}

/// Windows over an iterator of replay events, folding each event into every window it belongs to.
#[derive(Debug)]
pub struct Windows<I, A, F> {
    events: I,
    spec: WindowSpec,
    init: A,
    fold: F,
    open: VecDeque<Window<A>>,
    ready: VecDeque<Window<A>>,
    /// Events flagged late (not folded).
    pub late_records: u64,
    ended: bool,
}

fn ceil_div(a: i64, b: i64) -> i64 {
    let q = a.div_euclid(b);
    if a.rem_euclid(b) == 0 { q } else { q + 1 }
}

impl<I, A, F> Windows<I, A, F>
where
    I: Iterator<Item = Result<ReplayEvent>>,
    A: Clone,
    F: FnMut(&mut A, &ReplayEvent),
{
    /// Windows of `spec` over `events`, each starting from `init` and folding events with `fold`.
    pub fn new(events: I, spec: WindowSpec, init: A, fold: F) -> Result<Self> {
        if spec.size_ms <= 0 || spec.slide_ms <= 0 || spec.slide_ms > spec.size_ms {
            return Err(Error::InvalidOptions {
                reason: format!(
                    "window size {} ms and slide {} ms: need 0 < slide <= size",
                    spec.size_ms, spec.slide_ms
                ),
            });
        }
        Ok(Windows {
            events,
            spec,
            init,
            fold,
            open: VecDeque::new(),
            ready: VecDeque::new(),
            late_records: 0,
            ended: false,
        })
    }

    fn add(&mut self, e: &ReplayEvent) {
        let t = e.timestamp;
        let first_end = ceil_div(t, self.spec.slide_ms).saturating_mul(self.spec.slide_ms);
        let mut end = first_end;
        while end.saturating_sub(self.spec.size_ms) < t {
            let idx = match self.open.iter().position(|w| w.end == end) {
                Some(i) => i,
                None => {
                    let i = self.open.iter().position(|w| w.end > end).unwrap_or(self.open.len());
                    self.open.insert(i, Window { end, count: 0, value: self.init.clone() });
                    i
                }
            };
            if let Some(w) = self.open.get_mut(idx) {
                w.count += 1;
                (self.fold)(&mut w.value, e);
            }
            match end.checked_add(self.spec.slide_ms) {
                Some(next) => end = next,
                None => break,
            }
        }
    }
}

impl<I, A, F> Iterator for Windows<I, A, F>
where
    I: Iterator<Item = Result<ReplayEvent>>,
    A: Clone,
    F: FnMut(&mut A, &ReplayEvent),
{
    type Item = Result<Window<A>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(w) = self.ready.pop_front() {
                return Some(Ok(w));
            }
            if self.ended {
                return self.open.pop_front().map(Ok);
            }
            match self.events.next() {
                None => self.ended = true,
                Some(Err(e)) => return Some(Err(e)),
                Some(Ok(e)) if e.late => self.late_records += 1,
                Some(Ok(e)) => {
                    // The watermark (this event's time) passed every window ending before it.
                    while self.open.front().is_some_and(|w| w.end < e.timestamp) {
                        self.ready.extend(self.open.pop_front());
                    }
                    self.add(&e);
                }
            }
        }
    }
}
