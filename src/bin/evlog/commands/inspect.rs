//! `info`, `verify`, `repair`: what a store holds and whether it is whole.

use super::*;

/// One group of a topic as `info` shows it.
pub(super) struct GroupLine {
    pub(super) group: String,
    pub(super) committed: u64,
    pub(super) lag: u64,
    /// Age of the oldest uncommitted record, by its timestamp.
    pub(super) lag_seconds: f64,
    /// Commits per second (μ) while `--rate` watched.
    pub(super) mu: Option<f64>,
}

impl GroupLine {
    pub(super) fn wait_secs(&self, lambda: Option<f64>) -> Option<f64> {
        crate::littles_law::wait_secs(self.lag, lambda)
    }
    pub(super) fn drain_secs(&self, lambda: Option<f64>) -> Option<f64> {
        crate::littles_law::drain_secs(self.lag, self.mu, lambda)
    }
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
    /// Bytes per second the records grew by while `--rate` watched.
    pub(super) bytes_rate: Option<f64>,
    /// Bytes the records take (`Log::used_bytes`: what a budget counts).
    pub(super) used_bytes: u64,
    pub(super) config: TopicConfig,
    /// Work queues (group, cursor, scheduled, delayed); `None` without the consumer database.
    pub(super) queues: Option<Vec<evlog::queue::QueueInfo>>,
    /// The groups, or why they cannot be shown.
    pub(super) groups: Result<Vec<GroupLine>, String>,
}

impl TopicInfo {
    /// Seconds until the topic reaches its budget at the rate `--rate` measured.
    pub(super) fn time_to_full(&self) -> Option<f64> {
        let rate = self.bytes_rate.filter(|&r| r > 0.0)?;
        Some(self.config.bytes_max?.saturating_sub(self.used_bytes) as f64 / rate)
    }

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
            "used_bytes": self.used_bytes,
            "bytes_rate": self.bytes_rate,
            "time_to_full_secs": self.time_to_full(),
            "config": config_json(&self.name, &self.config),
            "queues": self.queues.as_ref().map(|qs| qs
                .iter()
                .map(|q| json!({"group": q.group, "cursor": q.cursor, "scheduled": q.scheduled, "delayed": q.delayed}))
                .collect::<Vec<_>>()),
            "groups": match &self.groups {
                Ok(gs) => Value::Array(
                    gs.iter()
                        .map(|g| json!({
                            "group": g.group, "committed": g.committed, "lag": g.lag, "lag_seconds": g.lag_seconds,
                            "consume_rate": g.mu, "wait_secs": g.wait_secs(self.append_rate),
                            "drain_secs": g.drain_secs(self.append_rate),
                            "growing": g.mu.is_some() && g.lag > 0 && g.drain_secs(self.append_rate).is_none(),
                        }))
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
            lines.push(format!("  append rate {r:.1} records/s, {:.0} bytes/s", self.bytes_rate.unwrap_or(0.0)));
        }
        if let Some(t) = self.time_to_full() {
            lines.push(format!("  budget full in {t:.0} s at this rate"));
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
                let mut line =
                    format!("  group {} committed {} lag {} records, {} s", g.group, g.committed, g.lag, g.lag_seconds);
                if let Some(mu) = g.mu {
                    let w = g.wait_secs(self.append_rate).map_or("-".to_string(), |w| format!("{w:.1} s"));
                    let drain = g.drain_secs(self.append_rate).map_or("growing".to_string(), |d| format!("{d:.1} s"));
                    line.push_str(&format!(", consumes {mu:.1}/s, W {w}, drained in {drain}"));
                }
                line
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
        GroupLine { group, committed, lag, lag_seconds, mu: None }
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
    let logs = names.iter().map(|n| read_only(dir, n)).collect::<Result<Vec<_>, _>>()?;
    let watched = watch(dir, &store, &names, &logs, rate_secs)?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let committed = committed_by_topic(dir, &store, &names);
    let mut topics = Vec::new();
    for ((name, log), rates) in names.iter().zip(&logs).zip(watched) {
        let mut timestamps: Option<(i64, i64)> = None;
        for (_, _, r) in log.segment_time_ranges().map_err(msg)? {
            if let Some((a, b)) = r {
                timestamps = Some(timestamps.map_or((a, b), |(lo, hi)| (lo.min(a), hi.max(b))));
            }
        }
        let groups = match &committed {
            Ok(by_topic) => {
                let mut lines = group_lines(log, by_topic.get(name).cloned().unwrap_or_default(), now_ms);
                for g in &mut lines {
                    g.mu = rates.as_ref().and_then(|r| r.mu.get(&g.group).copied());
                }
                Ok(lines)
            }
            Err(why) => Err(why.clone()),
        };
        topics.push(TopicInfo {
            name: name.clone(),
            segments: log.segment_count(),
            bytes: log.size_bytes().map_err(msg)?,
            first_offset: log.first_offset(),
            next_offset: log.next_offset(),
            timestamps,
            append_rate: rates.as_ref().map(|r| r.append_rate),
            bytes_rate: rates.as_ref().map(|r| r.bytes_rate),
            used_bytes: log.used_bytes().map_err(msg)?,
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

/// (group, committed) of each topic: from the store, or through the holder's socket when it
/// serves; why not otherwise.
fn committed_by_topic(dir: &Path, store: &Result<Store, String>, names: &[String]) -> Result<ByTopic, String> {
    match store {
        Ok(s) => {
            let mut by_topic = ByTopic::new();
            for name in names {
                let gs = s.groups(name).map_err(msg)?;
                by_topic.insert(name.clone(), gs.into_iter().map(|g| (g.group, g.committed)).collect());
            }
            Ok(by_topic)
        }
        Err(why) => served_groups(dir).ok_or_else(|| why.clone()),
    }
}

type ByTopic = std::collections::BTreeMap<String, Vec<(String, u64)>>;

/// Each topic's (next offset, used bytes), and the groups' commits when they can be read.
type Snapshot = (Vec<(u64, u64)>, Option<ByTopic>);

/// What `--rate SECS` measures of a topic while it watches.
pub(super) struct Watched {
    /// Appends per second (λ).
    append_rate: f64,
    /// Bytes per second the records grew by.
    bytes_rate: f64,
    /// Commits per second (μ), by group.
    mu: std::collections::BTreeMap<String, f64>,
}

/// Watches every topic for `rate_secs` (the writer and the consumers may be other processes).
fn watch(
    dir: &Path,
    store: &Result<Store, String>,
    names: &[String],
    logs: &[Log],
    rate_secs: Option<f64>,
) -> Result<Vec<Option<Watched>>, String> {
    let secs = match rate_secs {
        Some(secs) if secs > 0.0 && secs.is_finite() => secs,
        Some(_) => return Err("--rate takes a positive number of seconds".into()),
        None => return Ok(logs.iter().map(|_| None).collect()),
    };
    let sample = || -> Result<Snapshot, String> {
        let sizes = logs.iter().map(|l| Ok((l.next_offset(), l.used_bytes().map_err(msg)?)));
        Ok((sizes.collect::<Result<_, String>>()?, committed_by_topic(dir, store, names).ok()))
    };
    let before = sample()?;
    let start = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let after = sample()?;
    let elapsed = start.elapsed().as_secs_f64();
    let per_sec = |now: u64, then: u64| now.saturating_sub(then) as f64 / elapsed;
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let ((n0, b0), (n1, b1)) = (before.0[i], after.0[i]);
        let committed = |c: &Option<ByTopic>| c.as_ref().and_then(|m| m.get(name).cloned()).unwrap_or_default();
        let then: std::collections::BTreeMap<String, u64> = committed(&before.1).into_iter().collect();
        let mu = (committed(&after.1).into_iter())
            .filter_map(|(g, c)| Some((g.clone(), per_sec(c, *then.get(&g)?))))
            .collect();
        out.push(Some(Watched { append_rate: per_sec(n1, n0), bytes_rate: per_sec(b1, b0), mu }));
    }
    Ok(out)
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
