//! The stats file's text (FORMAT.md § Stats file): one line per record, words separated by one
//! space, names as `validate_name` accepts them, numbers in decimal. Parsing takes a file only
//! whole: the first line, every line well formed, the `end` line last.

use super::{
    GroupFigures, History, MAGIC, QueueFigures, RecoveryFigures, STATS_FILE_BYTES_MAX, StatsFile, TopicFigures,
};
use crate::log::{LATENCY_BUCKETS, LatencyHistogram};
use crate::store::validate_name;
use std::fmt::Write as _;

/// A name as the file holds it: one that `validate_name` accepts (no space, no newline).
fn name(word: &str) -> Option<String> {
    validate_name(word).ok().map(|()| word.to_string())
}

/// The value after the word `label`.
fn field<'a, T: std::str::FromStr>(words: &mut impl Iterator<Item = &'a str>, label: &str) -> Option<T> {
    if words.next()? != label {
        return None;
    }
    words.next()?.parse().ok()
}

/// `0` or `1` after the word `label`.
fn flag<'a>(words: &mut impl Iterator<Item = &'a str>, label: &str) -> Option<bool> {
    match field::<u8>(words, label)? {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}

/// `a:b,c:d,…` (or `-` for none) as pairs.
fn pairs<A: std::str::FromStr, B: std::str::FromStr>(word: &str) -> Option<Vec<(A, B)>> {
    if word == "-" {
        return Some(Vec::new());
    }
    word.split(',').map(|p| p.split_once(':').and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))).collect()
}

fn render_pairs<A: std::fmt::Display, B: std::fmt::Display>(pairs: impl Iterator<Item = (A, B)>) -> String {
    let joined: Vec<String> = pairs.map(|(a, b)| format!("{a}:{b}")).collect();
    if joined.is_empty() { "-".to_string() } else { joined.join(",") }
}

fn parse_topic<'a>(words: &mut impl Iterator<Item = &'a str>) -> Option<TopicFigures> {
    let topic = name(words.next()?)?;
    let first_offset = field(words, "first")?;
    let next_offset = field(words, "next")?;
    let bytes = field(words, "bytes")?;
    let used_bytes = field(words, "used")?;
    let budget: String = field(words, "budget")?;
    let budget_bytes = if budget == "-" { None } else { Some(budget.parse().ok()?) };
    let fsyncs = field(words, "fsyncs")?;
    let synced_records = field(words, "synced")?;
    let buckets: String = field(words, "fsync_us")?;
    let mut counts = [0u64; LATENCY_BUCKETS];
    for (i, n) in pairs::<usize, u64>(&buckets)? {
        *counts.get_mut(i)? = n;
    }
    Some(TopicFigures {
        topic,
        first_offset,
        next_offset,
        bytes,
        used_bytes,
        budget_bytes,
        fsyncs,
        synced_records,
        fsync_latency: LatencyHistogram::from_counts(counts),
    })
}

fn parse_queue<'a>(words: &mut impl Iterator<Item = &'a str>) -> Option<QueueFigures> {
    Some(QueueFigures {
        topic: name(words.next()?)?,
        queue: name(words.next()?)?,
        backlog: field(words, "backlog")?,
        ready: field(words, "ready")?,
        leased: field(words, "leased")?,
        scheduled: field(words, "scheduled")?,
        dead_lettered: field(words, "dead")?,
        delivered: field(words, "delivered")?,
        redelivered: field(words, "redelivered")?,
        acked: field(words, "acked")?,
        leases_expiring: field(words, "expiring")?,
    })
}

fn parse_recovery<'a>(words: &mut impl Iterator<Item = &'a str>) -> Option<RecoveryFigures> {
    Some(RecoveryFigures {
        topic: name(words.next()?)?,
        checkpoint_used: flag(words, "checkpoint")?,
        scanned_bytes: field(words, "scanned")?,
        scanned_records: field(words, "records")?,
        truncated_bytes: field(words, "truncated")?,
        dropped_records: field(words, "dropped")?,
        removed_files: field(words, "removed")?,
        quarantined_files: field(words, "quarantined")?,
        zero_tail_bytes: field(words, "zero_tail")?,
        index_rebuilt: flag(words, "index_rebuilt")?,
        repaired: flag(words, "repaired")?,
    })
}

/// Parses one line after its first word (`kind`) into `file`; `None` when it is not well formed.
fn parse_line<'a>(file: &mut StatsFile, kind: &str, words: &mut impl Iterator<Item = &'a str>) -> Option<()> {
    match kind {
        "written" => {
            file.written_ms = words.next()?.parse().ok()?;
            file.pid = field(words, "pid")?;
        }
        "topic" => file.topics.push(parse_topic(words)?),
        "group" => file.groups.push(GroupFigures {
            topic: name(words.next()?)?,
            group: name(words.next()?)?,
            committed: field(words, "committed")?,
            lag_ms: field(words, "lag_ms")?,
        }),
        "queue" => file.queues.push(parse_queue(words)?),
        "recovery" => file.recoveries.push(parse_recovery(words)?),
        "history" => {
            let topic = name(words.next()?)?;
            file.history.push(History { topic, group: None, points: pairs(words.next()?)? });
        }
        "group_history" => {
            let (topic, group) = (name(words.next()?)?, name(words.next()?)?);
            file.history.push(History { topic, group: Some(group), points: pairs(words.next()?)? });
        }
        _ => return None,
    }
    Some(())
}

/// Parses a stats file's text; `None` unless it is whole and every line well formed.
pub(super) fn parse(text: &str) -> Option<StatsFile> {
    if text.len() > STATS_FILE_BYTES_MAX {
        return None;
    }
    let mut lines = text.lines();
    if lines.next()? != MAGIC {
        return None;
    }
    let mut file = StatsFile::default();
    let mut ended = false;
    for line in lines {
        if ended {
            return None;
        }
        let mut words = line.split(' ');
        match words.next()? {
            "end" => ended = true,
            kind => parse_line(&mut file, kind, &mut words)?,
        }
        if words.next().is_some() {
            return None;
        }
    }
    ended.then_some(file)
}

/// The file's text.
pub(super) fn render(file: &StatsFile) -> String {
    let mut s = format!("{MAGIC}\nwritten {} pid {}\n", file.written_ms, file.pid);
    for t in &file.topics {
        let buckets = t.fsync_latency.counts().iter().enumerate().filter(|&(_, &n)| n > 0);
        let _ = writeln!(
            s,
            "topic {} first {} next {} bytes {} used {} budget {} fsyncs {} synced {} fsync_us {}",
            t.topic,
            t.first_offset,
            t.next_offset,
            t.bytes,
            t.used_bytes,
            t.budget_bytes.map_or_else(|| "-".to_string(), |b| b.to_string()),
            t.fsyncs,
            t.synced_records,
            render_pairs(buckets)
        );
    }
    for g in &file.groups {
        let _ = writeln!(s, "group {} {} committed {} lag_ms {}", g.topic, g.group, g.committed, g.lag_ms);
    }
    for q in &file.queues {
        let _ = writeln!(
            s,
            "queue {} {} backlog {} ready {} leased {} scheduled {} dead {} delivered {} redelivered {} acked {} expiring {}",
            q.topic,
            q.queue,
            q.backlog,
            q.ready,
            q.leased,
            q.scheduled,
            q.dead_lettered,
            q.delivered,
            q.redelivered,
            q.acked,
            q.leases_expiring
        );
    }
    for r in &file.recoveries {
        let _ = writeln!(
            s,
            "recovery {} checkpoint {} scanned {} records {} truncated {} dropped {} removed {} quarantined {} zero_tail {} index_rebuilt {} repaired {}",
            r.topic,
            u8::from(r.checkpoint_used),
            r.scanned_bytes,
            r.scanned_records,
            r.truncated_bytes,
            r.dropped_records,
            r.removed_files,
            r.quarantined_files,
            r.zero_tail_bytes,
            u8::from(r.index_rebuilt),
            u8::from(r.repaired)
        );
    }
    for h in &file.history {
        let points = render_pairs(h.points.iter().copied());
        let _ = match &h.group {
            None => writeln!(s, "history {} {points}", h.topic),
            Some(g) => writeln!(s, "group_history {} {g} {points}", h.topic),
        };
    }
    s.push_str("end\n");
    s
}
