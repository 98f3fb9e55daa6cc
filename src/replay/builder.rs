//! Building a replay: which topics, the time window, lateness, memory, a name to resume by;
//! `start` picks the exact or the streaming path.

use super::*;

/// Builds a replay; see [`Store::replay`].
#[derive(Debug, Clone)]
pub struct ReplayBuilder {
    pub(super) store: Store,
    pub(super) topics: Vec<String>,
    pub(super) from: Option<i64>,
    pub(super) to: Option<i64>,
    pub(super) max_lateness: Option<Duration>,
    pub(super) memory_bytes_max: u64,
    pub(super) name: Option<String>,
    pub(super) live: bool,
}

impl Store {
    /// A replay of `topics` in event-time order. Configure it, then call `start`.
    pub fn replay(&self, topics: &[&str]) -> ReplayBuilder {
        ReplayBuilder {
            store: self.clone(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            from: None,
            to: None,
            max_lateness: None,
            memory_bytes_max: REPLAY_MEMORY_BYTES_DEFAULT,
            name: None,
            live: false,
        }
    }
}

impl ReplayBuilder {
    /// Only records with timestamp >= `ts`.
    pub fn from(mut self, ts: i64) -> Self {
        self.from = Some(ts);
        self
    }
    /// Only records with timestamp < `ts`.
    pub fn to(mut self, ts: i64) -> Self {
        self.to = Some(ts);
        self
    }
    /// Declares that a record is never more than `d` older than the newest record before it in
    /// its topic: enables the streaming merge.
    pub fn max_lateness(mut self, d: Duration) -> Self {
        self.max_lateness = Some(d);
        self
    }
    /// Memory budget for buffered records (default 64 MiB).
    pub fn memory_bytes_max(mut self, n: u64) -> Self {
        self.memory_bytes_max = n;
        self
    }
    /// Makes the replay resumable under this name (progress saved at each `checkpoint`).
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }
    /// After history, continue with records appended since the replay began.
    pub fn then_live(mut self) -> Self {
        self.live = true;
        self
    }

    /// Checks the settings and returns the topics' names, sorted and without duplicates.
    pub(super) fn checked_names(&self) -> Result<Vec<String>> {
        let bad = |reason: String| Err(Error::InvalidOptions { reason });
        if let (Some(f), Some(t)) = (self.from, self.to)
            && f > t
        {
            return bad(format!("replay from {f} is after to {t}"));
        }
        if self.memory_bytes_max == 0 {
            return bad("replay memory_bytes_max must be more than 0".into());
        }
        if self.topics.is_empty() {
            return bad("replay needs at least one topic".into());
        }
        let mut names = self.topics.clone();
        names.sort();
        names.dedup();
        if names.len() > usize::from(u16::MAX) {
            return bad("too many topics".into());
        }
        if let Some(n) = &self.name {
            validate_name(n)?;
        }
        Ok(names)
    }

    /// Checks the settings, opens the topics and starts the replay.
    pub fn start(self) -> Result<Replay> {
        let bad = |reason: String| Err(Error::InvalidOptions { reason });
        let names = self.checked_names()?;
        let existing = self.store.topics()?;
        let mut topics = Vec::with_capacity(names.len());
        for n in &names {
            validate_name(n)?;
            if !existing.contains(n) {
                return Err(Error::NotFound { kind: "topic", name: n.clone() });
            }
            topics.push(self.store.topic(n)?);
        }
        let saved = match &self.name {
            Some(n) => progress::load(&self.store.inner().state, n)?,
            None => None,
        };
        let ends: Vec<u64> = match &saved {
            Some(p) => {
                if p.topics != names {
                    return bad(format!(
                        "replay {:?} was saved for topics {:?}",
                        self.name.as_deref().unwrap_or(""),
                        p.topics
                    ));
                }
                p.ends.clone()
            }
            // A cut between atomic appends: history never holds part of one.
            None => self.store.consistent_ends(&topics),
        };
        let resume_after = saved.and_then(|p| p.last);
        let from = self.from.unwrap_or(i64::MIN);
        let to = self.to.unwrap_or(i64::MAX);
        let mut stats = ReplayStats::default();
        let mut sources = Vec::with_capacity(topics.len());
        for (rank, (t, &end)) in topics.iter().zip(&ends).enumerate() {
            sources.push(Source::new(t.clone(), rank as u16, end, (from, to), &mut stats)?);
        }
        let names: Vec<Arc<str>> = names.into_iter().map(Arc::from).collect();
        let mode = if self.max_lateness.is_some() { Mode::Streaming(Pending::default()) } else { Mode::Gather };
        Ok(Replay {
            store: self.store,
            names,
            topics,
            ends,
            sources,
            from,
            to,
            lateness_ms: self.max_lateness.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            memory_bytes_max: self.memory_bytes_max,
            name: self.name,
            resume_after,
            last: resume_after,
            mode,
            stats,
            spill_dir: None,
            live: self.live.then(Vec::new),
            live_cut: Vec::new(),
            live_held: Vec::new(),
            failed: false,
            pace: None,
            held_bytes: 0,
            chunks: Chunks::default(),
            watermark: None,
        })
    }
}
