//! The group coordinator of Kafka's classic consumer-group protocol: members join, the leader
//! assigns partitions on the client side, every member learns its assignment, and a member
//! that comes, goes or stops heartbeating starts a rebalance. Membership lives in memory (after
//! a restart members join again, as they do when a Kafka coordinator moves); the committed
//! offsets are the store's, durable.
//!
//! Invariants:
//! - A generation's assignments are handed out only once its leader sent them: a follower's
//!   SyncGroup waits for them, never answers with an assignment of another generation.
//! - A member that missed its session timeout, or did not rejoin within the rebalance timeout,
//!   is removed before the next generation is formed; it gets `UNKNOWN_MEMBER_ID` and joins anew.
//! - Waits are bounded: JoinGroup by the rebalance timeout, SyncGroup by the session timeout,
//!   both by `ServeOptions::group_wait_max`.

use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Kafka error codes of the group protocol.
pub(super) mod code {
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
}

/// The longest a follower's SyncGroup waits for its leader's assignments (and at most
/// `ServeOptions::group_wait_max`).
const SYNC_WAIT_MAX: Duration = Duration::from_secs(60);
/// Session timeouts accepted (Kafka's `group.min/max.session.timeout.ms` defaults).
const SESSION_TIMEOUT_MS: std::ops::RangeInclusive<i32> = 6_000..=1_800_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

#[derive(Debug)]
pub(super) struct Member {
    pub client_id: String,
    pub protocols: Vec<(String, Bytes)>,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    last_seen: Instant,
    pub assignment: Bytes,
}

#[derive(Debug)]
pub(super) struct Group {
    pub state: State,
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// Members that joined in the rebalance under way.
    joined: BTreeSet<String>,
    deadline: Option<Instant>,
    /// The longest a rebalance waits for members to rejoin, whatever they ask.
    wait_max: Duration,
}

impl Group {
    fn new(protocol_type: &str, wait_max: Duration) -> Self {
        Group {
            wait_max,
            state: State::Empty,
            generation: 0,
            protocol_type: protocol_type.to_string(),
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            joined: BTreeSet::new(),
            deadline: None,
        }
    }

    fn start_rebalance(&mut self, now: Instant) {
        if self.members.is_empty() {
            self.state = State::Empty;
            self.joined.clear();
            self.deadline = None;
            return;
        }
        if self.state != State::PreparingRebalance {
            self.state = State::PreparingRebalance;
            self.joined.clear();
            let wait = self.members.values().map(|m| m.rebalance_timeout).max().unwrap_or_default();
            self.deadline = Some(now + wait.min(self.wait_max));
        }
    }

    /// Forms the next generation from the members that joined (the others are removed).
    fn complete(&mut self) {
        let joined = std::mem::take(&mut self.joined);
        self.members.retain(|id, _| joined.contains(id));
        self.deadline = None;
        if self.members.is_empty() {
            self.state = State::Empty;
            self.leader = None;
            return;
        }
        self.generation = self.generation.wrapping_add(1).max(1);
        if !self.leader.as_ref().is_some_and(|l| self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        // The first protocol of the leader's that every member offers.
        let leader = self.leader.as_ref().and_then(|l| self.members.get(l));
        self.protocol = leader.and_then(|l| {
            l.protocols
                .iter()
                .map(|(p, _)| p.clone())
                .find(|p| self.members.values().all(|m| m.protocols.iter().any(|(q, _)| q == p)))
        });
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
        }
        self.state = State::CompletingRebalance;
    }

    /// Removes members whose session ran out; a rebalance follows.
    fn expire(&mut self, now: Instant) {
        let before = self.members.len();
        self.members.retain(|_, m| now.duration_since(m.last_seen) <= m.session_timeout);
        if self.members.len() != before {
            self.joined.retain(|id| self.members.contains_key(id));
            self.start_rebalance(now);
        }
        let all_joined = !self.joined.is_empty() && self.joined.len() == self.members.len();
        if self.state == State::PreparingRebalance && (all_joined || self.deadline.is_some_and(|d| now >= d)) {
            self.complete();
        }
    }
}

/// One group as DescribeGroups shows it.
#[derive(Debug)]
pub(super) struct GroupView {
    pub state: State,
    pub protocol_type: String,
    pub protocol: String,
    /// (member id, client id, metadata of the chosen protocol, assignment).
    pub members: Vec<(String, String, Bytes, Bytes)>,
}

/// What JoinGroup answers.
#[derive(Debug, Default)]
pub(super) struct Joined {
    pub error_code: i16,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// The members with their metadata for the chosen protocol: for the leader only.
    pub members: Vec<(String, Bytes)>,
}

/// A join request.
#[derive(Debug)]
pub(super) struct Join {
    pub group: String,
    pub member_id: String,
    pub client_id: String,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
}

/// Every group's membership.
#[derive(Debug)]
pub(super) struct Coordinator {
    groups: Mutex<HashMap<String, Group>>,
    changed: Condvar,
    next_member: AtomicU64,
    /// The longest a JoinGroup or SyncGroup waits (`ServeOptions::group_wait_max`).
    wait_max: Duration,
}

fn millis(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

impl Coordinator {
    pub fn new(wait_max: Duration) -> Self {
        Coordinator { groups: Mutex::default(), changed: Condvar::new(), next_member: AtomicU64::new(0), wait_max }
    }

    pub fn join(&self, j: Join) -> Joined {
        if !SESSION_TIMEOUT_MS.contains(&j.session_timeout_ms) {
            return Joined { error_code: code::INVALID_SESSION_TIMEOUT, ..Joined::default() };
        }
        let mut groups = crate::sync::lock(&self.groups);
        let now = Instant::now();
        let g = groups.entry(j.group.clone()).or_insert_with(|| Group::new(&j.protocol_type, self.wait_max));
        g.expire(now);
        if !g.members.is_empty() && g.protocol_type != j.protocol_type {
            return Joined { error_code: code::INCONSISTENT_GROUP_PROTOCOL, ..Joined::default() };
        }
        g.protocol_type.clone_from(&j.protocol_type);
        let member_id = if j.member_id.is_empty() {
            format!("{}-{}", j.client_id, self.next_member.fetch_add(1, Ordering::Relaxed))
        } else if g.members.contains_key(&j.member_id) {
            j.member_id.clone()
        } else {
            return Joined { error_code: code::UNKNOWN_MEMBER_ID, member_id: j.member_id, ..Joined::default() };
        };
        let rebalance_timeout = millis(j.rebalance_timeout_ms.max(j.session_timeout_ms));
        let member = Member {
            client_id: j.client_id,
            protocols: j.protocols,
            session_timeout: millis(j.session_timeout_ms),
            rebalance_timeout,
            last_seen: now,
            assignment: Bytes::new(),
        };
        g.members.insert(member_id.clone(), member);
        g.start_rebalance(now);
        g.joined.insert(member_id.clone());
        if g.joined.len() == g.members.len() {
            g.complete();
            self.changed.notify_all();
        }
        let started_generation = g.generation;
        drop(groups);
        self.wait_for_generation(&j.group, &member_id, started_generation)
    }

    /// Waits until the rebalance `member_id` joined completes; its answer.
    fn wait_for_generation(&self, group: &str, member_id: &str, before: i32) -> Joined {
        let mut groups = crate::sync::lock(&self.groups);
        loop {
            let now = Instant::now();
            let Some(g) = groups.get_mut(group) else {
                return Joined { error_code: code::UNKNOWN_MEMBER_ID, ..Joined::default() };
            };
            if let Some(m) = g.members.get_mut(member_id) {
                m.last_seen = now; // waiting in a join is alive
            }
            g.expire(now);
            if g.state != State::PreparingRebalance && (g.generation != before || g.state == State::CompletingRebalance)
            {
                if !g.members.contains_key(member_id) {
                    return Joined { error_code: code::UNKNOWN_MEMBER_ID, ..Joined::default() };
                }
                let leader = g.leader.clone().unwrap_or_default();
                let protocol = g.protocol.clone();
                let members = if leader == member_id {
                    let p = protocol.clone().unwrap_or_default();
                    g.members
                        .iter()
                        .map(|(id, m)| {
                            (
                                id.clone(),
                                m.protocols.iter().find(|(q, _)| *q == p).map(|(_, b)| b.clone()).unwrap_or_default(),
                            )
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                let error_code = if protocol.is_none() { code::INCONSISTENT_GROUP_PROTOCOL } else { 0 };
                return Joined {
                    error_code,
                    generation: g.generation,
                    protocol,
                    leader,
                    member_id: member_id.to_string(),
                    members,
                };
            }
            let wait = g
                .deadline
                .map_or(Duration::from_millis(100), |d| d.saturating_duration_since(now))
                .max(Duration::from_millis(10));
            groups = self
                .changed
                .wait_timeout(groups, wait.min(Duration::from_secs(1)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// SyncGroup: the leader hands out the assignments; everyone gets their own. Returns
    /// (error code, assignment).
    pub fn sync(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
        assignments: Vec<(String, Bytes)>,
    ) -> (i16, Bytes) {
        let mut groups = crate::sync::lock(&self.groups);
        // Bounded by the member's session timeout (and a minute at most): a leader that never
        // syncs must not hold its followers' requests open forever.
        let started = Instant::now();
        loop {
            let now = Instant::now();
            let Some(g) = groups.get_mut(group) else { return (code::UNKNOWN_MEMBER_ID, Bytes::new()) };
            g.expire(now);
            let Some(timeout) = g.members.get(member_id).map(|m| m.session_timeout) else {
                return (code::UNKNOWN_MEMBER_ID, Bytes::new());
            };
            if g.generation != generation {
                return (code::ILLEGAL_GENERATION, Bytes::new());
            }
            match g.state {
                State::PreparingRebalance | State::Empty => return (code::REBALANCE_IN_PROGRESS, Bytes::new()),
                State::CompletingRebalance if g.leader.as_deref() == Some(member_id) => {
                    for (id, a) in &assignments {
                        if let Some(m) = g.members.get_mut(id) {
                            m.assignment = a.clone();
                        }
                    }
                    g.state = State::Stable;
                    self.changed.notify_all();
                }
                State::CompletingRebalance => {}
                State::Stable => {}
            }
            if let Some(m) = g.members.get_mut(member_id) {
                m.last_seen = now;
                if g.state == State::Stable {
                    return (0, m.assignment.clone());
                }
            }
            if now.duration_since(started) >= timeout.min(SYNC_WAIT_MAX).min(self.wait_max) {
                return (code::REBALANCE_IN_PROGRESS, Bytes::new());
            }
            groups = self.changed.wait_timeout(groups, Duration::from_millis(200)).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Heartbeat: keeps the member alive; tells it when a rebalance is under way.
    pub fn heartbeat(&self, group: &str, generation: i32, member_id: &str) -> i16 {
        let mut groups = crate::sync::lock(&self.groups);
        let now = Instant::now();
        let Some(g) = groups.get_mut(group) else { return code::UNKNOWN_MEMBER_ID };
        g.expire(now);
        let Some(m) = g.members.get_mut(member_id) else { return code::UNKNOWN_MEMBER_ID };
        m.last_seen = now;
        if g.state == State::PreparingRebalance {
            return code::REBALANCE_IN_PROGRESS;
        }
        if g.generation != generation {
            return code::ILLEGAL_GENERATION;
        }
        0
    }

    /// LeaveGroup: the members go at once; the others rebalance. Per member, its error code.
    pub fn leave(&self, group: &str, member_ids: &[String]) -> Vec<i16> {
        let mut groups = crate::sync::lock(&self.groups);
        let Some(g) = groups.get_mut(group) else { return vec![code::UNKNOWN_MEMBER_ID; member_ids.len()] };
        let codes = member_ids
            .iter()
            .map(|id| if g.members.remove(id).is_some() { 0 } else { code::UNKNOWN_MEMBER_ID })
            .collect();
        g.joined.retain(|id| g.members.contains_key(id));
        g.start_rebalance(Instant::now());
        if g.state == State::PreparingRebalance && !g.joined.is_empty() && g.joined.len() == g.members.len() {
            g.complete();
        }
        self.changed.notify_all();
        codes
    }

    /// Whether `member_id` holds `generation` of `group` (an offset commit from a member).
    pub fn is_current(&self, group: &str, generation: i32, member_id: &str) -> i16 {
        let groups = crate::sync::lock(&self.groups);
        match groups.get(group) {
            Some(g) if !g.members.contains_key(member_id) => code::UNKNOWN_MEMBER_ID,
            Some(g) if g.generation != generation => code::ILLEGAL_GENERATION,
            Some(g) if g.state == State::PreparingRebalance => code::REBALANCE_IN_PROGRESS,
            Some(_) => 0,
            None => code::UNKNOWN_MEMBER_ID,
        }
    }

    /// Every group: (name, protocol type, state).
    pub fn list(&self) -> Vec<(String, String, State)> {
        let groups = crate::sync::lock(&self.groups);
        groups.iter().map(|(n, g)| (n.clone(), g.protocol_type.clone(), g.state)).collect()
    }

    /// A snapshot of one group for DescribeGroups.
    pub fn describe(&self, group: &str) -> Option<GroupView> {
        let groups = crate::sync::lock(&self.groups);
        let g = groups.get(group)?;
        let protocol = g.protocol.clone().unwrap_or_default();
        let members = g
            .members
            .iter()
            .map(|(id, m)| {
                let meta = m.protocols.iter().find(|(p, _)| *p == protocol).map(|(_, b)| b.clone()).unwrap_or_default();
                (id.clone(), m.client_id.clone(), meta, m.assignment.clone())
            })
            .collect();
        Some(GroupView { state: g.state, protocol_type: g.protocol_type.clone(), protocol, members })
    }
}
