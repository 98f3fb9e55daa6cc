//! `info`, `verify`, `repair`: what a store holds and whether it is whole.

use super::*;

/// One group of a topic as `info` shows it.
pub(super) struct GroupLine {
    pub(super) group: String,
    pub(super) committed: u64,
    pub(super) lag: u64,
    /// Age of the oldest uncommitted record, by its timestamp.
    pub(super) lag_seconds: f64,
}

/// One topic as `info` shows it: built once, printed as text or JSON.
pub(super) struct TopicInfo {
    pub(super) name: String,
    pub(super) segments: usize,
    pub(super) bytes: u64,
    pub(super) first_offset: u64,
    pub(super) next_offset: u64,
    pub(super) timestamps: Option<(i64, i64)>,
    pub(super) append_rate: Option<f64>,
    pub(super) config: TopicConfig,
    /// Work queues (group, cursor, scheduled, delayed); `None` without the consumer database.
    pub(super) queues: Option<Vec<evlog::queue::QueueInfo>>,
    /// The groups, or why they cannot be shown.
    pub(super) groups: Result<Vec<GroupLine>, String>,
}

impl TopicInfo {
    pub(super) fn json(&self) -> Value {
        json!({
            "topic": self.name,
            "segments": self.segments,
            "bytes": self.bytes,
            "first_offset": self.first_offset,
            "next_offset": self.next_offset,
            "min_timestamp": self.timestamps.map(|t| t.0),
            "max_timestamp": self.timestamps.map(|t| t.1),
            "append_rate": self.append_rate,
            "config": config_json(&self.name, &self.config),
            "queues": self.queues.as_ref().map(|qs| qs
                .iter()
                .map(|q| json!({"group": q.group, "cursor": q.cursor, "scheduled": q.scheduled, "delayed": q.delayed}))
                .collect::<Vec<_>>()),
            "groups": match &self.groups {
                Ok(gs) => Value::Array(
                    gs.iter()
                        .map(|g| json!({"group": g.group, "committed": g.committed, "lag": g.lag, "lag_seconds": g.lag_seconds}))
                        .collect(),
                ),
                Err(why) => Value::String(format!("unavailable: {why}")),
            },
        })
    }

    pub(super) fn text(&self) -> Vec<String> {
        let mut lines = vec![
            format!("topic {}", self.name),
            format!("  segments {}, {} bytes", self.segments, self.bytes),
            format!("  offsets {}..{}", self.first_offset, self.next_offset),
        ];
        match self.timestamps {
            Some((lo, hi)) => lines.push(format!("  timestamps {lo} ..= {hi}")),
            None => lines.push("  timestamps: none".into()),
        }
        if let Some(r) = self.append_rate {
            lines.push(format!("  append rate {r:.1} records/s"));
        }
        for q in self.queues.iter().flatten() {
            lines.push(format!("  queue {}: {} scheduled, {} delayed", q.group, q.scheduled, q.delayed));
        }
        if let Some(b) = self.config.bytes_max {
            lines.push(format!("  budget {b} bytes, when full: {}", self.config.when_full.name()));
        }
        if let Some(a) = self.config.retention_age {
            lines.push(format!("  retention age {} s", a.as_secs_f64()));
        }
        match &self.groups {
            Ok(gs) if gs.is_empty() => lines.push("  groups: none".into()),
            Ok(gs) => lines.extend(gs.iter().map(|g| {
                format!("  group {} committed {} lag {} records, {} s", g.group, g.committed, g.lag, g.lag_seconds)
            })),
            Err(why) => lines.push(format!("  groups: unavailable: {why}")),
        }
        lines
    }
}

/// A served store's groups by topic, (group, committed), through the holder's socket; `None`
/// when the holder does not serve.
fn served_groups(dir: &Path) -> Option<std::collections::BTreeMap<String, Vec<(String, u64)>>> {
    let mut remote = crate::remote::Remote::connect(dir)?;
    let mut by_topic = std::collections::BTreeMap::<String, Vec<(String, u64)>>::new();
    for group in remote.groups().ok()? {
        for (topic, committed) in remote.committed_all(&group).ok()? {
            by_topic.entry(topic).or_default().push((group.clone(), committed));
        }
    }
    Some(by_topic)
}

/// Each (group, committed) of a topic with its lag in records and in seconds (the age of its
/// oldest uncommitted record).
fn group_lines(log: &Log, groups: Vec<(String, u64)>, now_ms: i64) -> Vec<GroupLine> {
    let end = log.next_offset();
    let line = |(group, committed): (String, u64)| {
        let lag = end.saturating_sub(committed);
        let lag_seconds = match log.read(committed.max(log.first_offset())) {
            Ok(Some(r)) if lag > 0 => (now_ms.saturating_sub(r.timestamp())).max(0) as f64 / 1e3,
            _ => 0.0,
        };
        GroupLine { group, committed, lag, lag_seconds }
    };
    groups.into_iter().map(line).collect()
}

/// What `info` and `report` show of each topic (`only`: one topic), with the append rate over
/// `rate_secs` when given.
pub(super) fn gather(dir: &Path, only: Option<&str>, rate_secs: Option<f64>) -> Result<Vec<TopicInfo>, String> {
    let names = topic_names(dir, only)?;
    // Groups and queues live in the consumer database, which a running application holds (sled
    // cannot be opened read-only): open it without maintenance, and say why when it cannot be.
    let mut opts = StoreOptions::default();
    opts.maintenance_interval = None;
    let store = match Store::open(dir, opts) {
        Ok(s) => Ok(s),
        Err(Error::Locked { .. }) => Err("the store is in use by another process".to_string()),
        Err(e) => Err(e.to_string()),
    };
    let served = if store.is_err() { served_groups(dir) } else { None };
    let logs = names.iter().map(|n| read_only(dir, n)).collect::<Result<Vec<_>, _>>()?;
    // The append rate: offsets gained while watching (the writer may be another process).
    let rates: Vec<Option<f64>> = match rate_secs {
        Some(secs) if secs > 0.0 && secs.is_finite() => {
            let before: Vec<u64> = logs.iter().map(evlog::Log::next_offset).collect();
            let start = std::time::Instant::now();
            std::thread::sleep(Duration::from_secs_f64(secs));
            let elapsed = start.elapsed().as_secs_f64();
            logs.iter().zip(before).map(|(l, b)| Some(l.next_offset().saturating_sub(b) as f64 / elapsed)).collect()
        }
        Some(_) => return Err("--rate takes a positive number of seconds".into()),
        None => vec![None; logs.len()],
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let mut topics = Vec::new();
    for ((name, log), append_rate) in names.iter().zip(&logs).zip(rates) {
        let mut timestamps: Option<(i64, i64)> = None;
        for (_, _, r) in log.segment_time_ranges().map_err(msg)? {
            if let Some((a, b)) = r {
                timestamps = Some(timestamps.map_or((a, b), |(lo, hi)| (lo.min(a), hi.max(b))));
            }
        }
        let groups = match (&store, &served) {
            (Ok(s), _) => {
                let gs = s.groups(name).map_err(msg)?;
                Ok(group_lines(log, gs.into_iter().map(|g| (g.group, g.committed)).collect(), now_ms))
            }
            (Err(_), Some(served)) => Ok(group_lines(log, served.get(name).cloned().unwrap_or_default(), now_ms)),
            (Err(why), None) => Err(why.clone()),
        };
        topics.push(TopicInfo {
            name: name.clone(),
            segments: log.segment_count(),
            bytes: log.size_bytes().map_err(msg)?,
            first_offset: log.first_offset(),
            next_offset: log.next_offset(),
            timestamps,
            append_rate,
            config: TopicConfig::read(&evlog::storage::RealStorage, log.dir()).map_err(msg)?,
            queues: match &store {
                Ok(s) => Some(s.queue_infos(name).map_err(msg)?),
                Err(_) => None,
            },
            groups,
        });
    }
    Ok(topics)
}

pub(super) fn info(dir: &Path, only: Option<&str>, as_json: bool, rate_secs: Option<f64>) -> CmdResult {
    let topics = gather(dir, only, rate_secs)?;
    if as_json {
        print_line(&Value::Array(topics.iter().map(TopicInfo::json).collect()))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut o = out();
    for line in topics.iter().flat_map(TopicInfo::text) {
        writeln!(o, "{line}").map_err(stdout_error)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A corruption found by `verify`: segment start offset and the error.
pub(super) struct Finding {
    pub(super) topic: String,
    pub(super) segment_base: u64,
    pub(super) error: Error,
}

pub(super) fn scan_topic(dir: &Path, topic: &str, bar: &indicatif::ProgressBar) -> Result<(u64, Vec<Finding>), String> {
    let log = read_only(dir, topic)?;
    let mut findings = Vec::new();
    let mut records = 0u64;
    for (base, end, _) in log.segment_time_ranges().map_err(msg)? {
        let mut it = log.iter(base);
        while it.next_offset() < end {
            match it.next() {
                // A compacted segment may end before `end`: the record is the next segment's.
                Some(Ok(r)) if r.offset() >= end => break,
                Some(Ok(_)) => {
                    records += 1;
                    bar.inc(1);
                }
                Some(Err(error)) => {
                    findings.push(Finding { topic: topic.to_string(), segment_base: base, error: error.into() });
                    bar.inc(end.saturating_sub(it.next_offset()));
                    break;
                }
                None => break,
            }
        }
    }
    Ok((records, findings))
}

pub(super) fn progress(dir: &Path, names: &[String]) -> indicatif::ProgressBar {
    let total: u64 = names
        .iter()
        .filter_map(|n| read_only(dir, n).ok())
        .map(|l| l.next_offset().saturating_sub(l.first_offset()))
        .sum();
    let bar = indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template("verifying {bar:40} {pos}/{len} records ({per_sec})") {
        bar.set_style(style);
    }
    bar
}

pub(super) fn verify(dir: &Path, only: Option<&str>) -> CmdResult {
    let names = topic_names(dir, only)?;
    let bar = progress(dir, &names);
    let mut all = Vec::new();
    let mut records = 0;
    for n in &names {
        let (r, f) = scan_topic(dir, n, &bar)?;
        records += r;
        all.extend(f);
    }
    bar.finish_and_clear();
    for f in &all {
        println!("corrupt: topic {} segment {}: {}", f.topic, f.segment_base, f.error);
    }
    if all.is_empty() {
        println!("ok: {} topics, {records} records, every checksum verified", names.len());
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{} corruptions found; `evlog repair --yes` moves them into quarantine/", all.len());
        Ok(ExitCode::from(1))
    }
}

pub(super) fn repair(dir: &Path, only: Option<&str>, yes: bool) -> CmdResult {
    if !yes {
        return Err(
            "repair changes files (it moves corrupt bytes into quarantine/, never deletes them); run again with --yes"
                .into(),
        );
    }
    // Holding the store keeps applications away while files move.
    let _store = open_store(dir, Durability::Always)?;
    let names = topic_names(dir, only)?;
    let opts = Options::default();
    for name in &names {
        let tdir = topic_dir(dir, name)?;
        let report = Log::repair(&tdir, opts.clone()).map_err(msg)?;
        describe_repair(name, &report.at_open);
        if let Some(c) = &report.sealed_corruption {
            println!("{name}: {c}");
        }
        for f in &report.moved_files {
            let file = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            println!("{name}: moved {file} into quarantine/");
        }
        if let Some(r) = &report.after_cut {
            describe_repair(name, r);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn describe_repair(topic: &str, r: &evlog::log::RecoveryReport) {
    if r.truncated_bytes > 0 {
        println!(
            "{topic}: cut a torn tail of {} bytes ({} complete records never acknowledged)",
            r.truncated_bytes, r.dropped_records
        );
    }
    if let Some(c) = &r.repaired_corruption {
        println!("{topic}: repaired {c}");
    }
    for q in &r.quarantined_files {
        println!("{topic}: kept the removed bytes in {}", q.display());
    }
    if r.truncated_bytes == 0 && r.repaired_corruption.is_none() && r.quarantined_files.is_empty() {
        println!("{topic}: nothing to repair at open");
    }
}
