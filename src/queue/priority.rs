//! Priority queues: one work queue per lane, leased highest lane first, with a share for the
//! lower lanes so they never starve.

use super::*;

/// Default of [`PriorityQueue::low_share_every`].
pub const LOW_SHARE_EVERY_DEFAULT: u32 = 8;

/// A priority queue over lanes: one work queue per lane topic, highest priority first.
/// `lease` serves the highest lane that has a due record, FIFO within a lane.
///
/// Guard against starvation: of every `low_share_every` leases, one is offered to the lanes
/// below the top first, taking them in rotation (the top lane still gets it if they are all
/// empty). So while higher lanes never run dry, each lower lane with work still gets at least
/// one lease in `low_share_every × (lanes − 1)`.
///
/// ```
/// use evlog::{NewRecord, QueueOptions, Store, StoreOptions};
/// # let root = tempfile::tempdir().unwrap();
/// let store = Store::open(root.path(), StoreOptions::default())?;
/// let pq = store.priority_queue("workers", &["jobs.high", "jobs.low"], QueueOptions::default())?;
/// pq.push(1, &NewRecord::new(b"backfill"))?;
/// pq.push(0, &NewRecord::new(b"page the on-call"))?;
/// let d = pq.try_lease()?.expect("work");
/// assert_eq!(d.record.payload(), b"page the on-call");
/// pq.ack(&d)?;
/// # Ok::<(), evlog::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct PriorityQueue {
    pub(super) lanes: Arc<[Queue]>,
    pub(super) low_share_every: u32,
    /// Leases so far and the next lower lane in rotation.
    pub(super) turn: Arc<Mutex<(u64, usize)>>,
}

impl Store {
    /// A priority queue of `group` over `lanes` (topic names, highest priority first), each
    /// lane a [`Queue`] with `opts`.
    pub fn priority_queue(&self, group: &str, lanes: &[&str], opts: QueueOptions) -> Result<PriorityQueue> {
        if lanes.is_empty() {
            return Err(Error::InvalidOptions { reason: "a priority queue needs at least one lane".into() });
        }
        let lanes = lanes.iter().map(|t| self.queue(group, t, opts.clone())).collect::<Result<Vec<_>>>()?;
        Ok(PriorityQueue { lanes: lanes.into(), low_share_every: LOW_SHARE_EVERY_DEFAULT, turn: Arc::default() })
    }
}

impl PriorityQueue {
    /// Sets the starvation guard: one lease in `every` goes to the lower lanes first (at least 2;
    /// `u32::MAX` makes priorities strict).
    pub fn low_share_every(mut self, every: u32) -> Self {
        self.low_share_every = every.max(2);
        self
    }

    /// The lanes, highest priority first.
    pub fn lanes(&self) -> &[Queue] {
        &self.lanes
    }

    /// Appends a record to lane `priority` (0 = highest).
    pub fn push(&self, priority: usize, record: &NewRecord<'_>) -> Result<u64> {
        self.lane(priority)?.push(record)
    }

    pub(super) fn lane(&self, i: usize) -> Result<&Queue> {
        self.lanes.get(i).ok_or_else(|| {
            Error::Queue(QueueError::NoSuchLane { what: format!("priority {i}"), lanes: self.lanes.len() })
        })
    }

    pub(super) fn lane_of(&self, d: &Delivery) -> Result<&Queue> {
        self.lanes.iter().find(|q| q.topic().name() == &*d.topic).ok_or_else(|| {
            Error::Queue(QueueError::NoSuchLane {
                what: format!("a delivery from topic {:?}", d.topic),
                lanes: self.lanes.len(),
            })
        })
    }

    /// Leases from the highest lane with a due record (see the starvation guard above).
    pub fn try_lease(&self) -> Result<Option<Delivery>> {
        let n = self.lanes.len();
        let order: Vec<usize> = {
            let mut turn = lock(&self.turn);
            turn.0 += 1;
            if n > 1 && turn.0.is_multiple_of(u64::from(self.low_share_every)) {
                let start = 1 + turn.1 % (n - 1);
                turn.1 = turn.1.wrapping_add(1);
                (start..n).chain(1..start).chain([0]).collect()
            } else {
                (0..n).collect()
            }
        };
        for i in order {
            if let Some(d) = self.lanes.get(i).map(Queue::try_lease).transpose()?.flatten() {
                return Ok(Some(d));
            }
        }
        Ok(None)
    }

    /// Like [`Queue::lease`] across the lanes.
    pub fn lease(&self, timeout: Duration) -> Result<Option<Delivery>> {
        let next_due = || self.lanes.iter().map(Queue::next_due).min().unwrap_or(i64::MAX);
        // A priority queue has at least one lane (checked when it is made).
        let Some(first) = self.lanes.first() else { return Ok(None) };
        wait_for_lease(&first.inner, timeout, || self.try_lease(), next_due)
    }

    /// Acks a delivery on its lane.
    pub fn ack(&self, d: &Delivery) -> Result<()> {
        self.lane_of(d)?.ack(d)
    }

    /// Nacks a delivery on its lane.
    pub fn nack(&self, d: &Delivery, delay: Duration) -> Result<()> {
        self.lane_of(d)?.nack(d, delay)
    }

    /// Dead-letters a delivery from its lane.
    pub fn dead_letter(&self, d: &Delivery, reason: &str) -> Result<()> {
        self.lane_of(d)?.dead_letter(d, reason)
    }
}
