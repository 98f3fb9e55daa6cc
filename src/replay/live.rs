//! After history, `then_live`: each topic followed from its history end, across topics in
//! cuts that never split an atomic append.

use super::*;

/// What the live phase has for the reader right now.
pub(super) enum LiveStep {
    Event(ReplayEvent),
    End,
    Wait(u64),
}

impl Replay {
    /// One step of the live phase without blocking: an event, the end (no live phase), or the
    /// signal generation to wait past.
    pub(super) fn step_live(&mut self) -> Result<LiveStep> {
        let Some(iters) = &mut self.live else { return Ok(LiveStep::End) };
        if iters.is_empty() {
            *iters = self.topics.iter().zip(&self.ends).map(|(t, &e)| t.iter(e)).collect();
            self.live_cut = self.ends.clone();
            self.live_held = vec![None; self.topics.len()];
        }
        loop {
            // Read the generation before looking, so an append in between still wakes the wait.
            let generation = self.store.inner().signal.generation();
            let iters = self.live.as_mut().map_or(&mut [][..], |v| &mut v[..]);
            let mut found = None;
            for (rank, it) in iters.iter_mut().enumerate() {
                let cut = self.live_cut.get(rank).copied().unwrap_or(0);
                let Some(held) = self.live_held.get_mut(rank) else { continue };
                let r = match held.take() {
                    Some(r) => r,
                    None => match it.next() {
                        Some(r) => r?,
                        None => continue,
                    },
                };
                // Only below the cut: past it, an atomic append may still be half applied.
                if r.offset() < cut {
                    found = Some((rank, r));
                    break;
                }
                *held = Some(r);
            }
            let Some((rank, r)) = found else {
                let cut = self.store.consistent_ends(&self.topics);
                if cut != self.live_cut {
                    self.live_cut = cut;
                    continue;
                }
                return Ok(LiveStep::Wait(generation));
            };
            let key = (r.timestamp(), rank as u16, r.offset());
            let e = Entry { key, record_key: r.key().map(Box::from), payload: r.payload_bytes() };
            if e.key.0 < self.from || e.key.0 >= self.to {
                continue;
            }
            let late = self.last.is_some_and(|l| key.0 < l.0);
            return Ok(LiveStep::Event(self.emit(e, late)));
        }
    }

    pub(super) fn next_live(&mut self) -> Result<Option<ReplayEvent>> {
        loop {
            match self.step_live()? {
                LiveStep::Event(e) => return Ok(Some(e)),
                LiveStep::End => return Ok(None),
                // Wait for an append to any of the topics: one wake-up for the whole store.
                LiveStep::Wait(generation) => {
                    let signal = self.store.inner().signal.clone();
                    signal.wait_past(generation, Duration::from_secs(1));
                }
            }
        }
    }

    /// Like `Iterator::next`, but returns the generation to wait past instead of blocking in
    /// the live phase (for the async stream).
    #[cfg(feature = "tokio")]
    pub(crate) fn next_or_wait(&mut self) -> Option<std::result::Result<Result<ReplayEvent>, u64>> {
        if self.failed {
            return None;
        }
        let step = match self.next_history() {
            Ok(Some(out)) => {
                let e = self.owned(out);
                return Some(Ok(Ok(self.emit(e, false))));
            }
            Ok(None) => self.step_live(),
            Err(e) => Err(e),
        };
        match step {
            Ok(LiveStep::Event(e)) => Some(Ok(Ok(e))),
            Ok(LiveStep::End) => None,
            Ok(LiveStep::Wait(generation)) => Some(Err(generation)),
            Err(e) => {
                self.failed = true;
                Some(Ok(Err(e)))
            }
        }
    }
}
