//! `serve`, `config`, `compress`, `compact`, `backup`, `groups`, `forward`, `import`: what
//! changes or exports a store.

use super::*;
use evlog::serve::AdminCommand;

/// `evlog serve`: the store served over the Kafka protocol until SIGINT or SIGTERM, then
/// stopped gracefully (requests in flight answered, connections closed, the store closed
/// cleanly). Every produce with acks=all is fsynced before it is answered (the store opens with
/// `Always`), so even SIGKILL loses nothing acknowledged.
pub(super) fn serve(
    dir: &Path,
    listen: std::net::SocketAddr,
    users: Option<&Path>,
    metrics: Option<std::net::SocketAddr>,
) -> CmdResult {
    let mut opts = evlog::serve::ServeOptions::listening_on(listen);
    opts.metrics_listen = metrics;
    if let Some(file) = users {
        opts.scram_users = read_users(file)?;
    }
    let store = open_store(dir, Durability::Always)?;
    let server = store.serve(opts).map_err(msg)?;
    let (stop, stopped) = std::sync::mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = stop.send(());
    })
    .map_err(|e| format!("cannot handle SIGINT and SIGTERM: {e}"))?;
    eprintln!("evlog: serving {} on {}", dir.display(), server.local_addr());
    if let Some(at) = server.metrics_addr() {
        eprintln!("evlog: metrics at http://{at}/metrics");
    }
    let _ = stopped.recv();
    eprintln!("evlog: stopping: finishing requests in flight");
    server.shutdown();
    drop(store);
    eprintln!("evlog: stopped");
    Ok(ExitCode::SUCCESS)
}

/// The users of `evlog serve --users FILE`: `name:password` lines (blank lines and `#` comments
/// skipped), from a file no one but its owner may read.
fn read_users(file: &Path) -> Result<Vec<evlog::serve::ScramUser>, String> {
    use std::os::unix::fs::PermissionsExt;
    let what = |e: std::io::Error| format!("--users {}: {e}", file.display());
    let mode = std::fs::metadata(file).map_err(what)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(format!("--users {}: readable by others (mode {:o}); chmod 600 it", file.display(), mode & 0o777));
    }
    let text = std::fs::read_to_string(file).map_err(what)?;
    let mut users = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#')) {
        let Some((name, password)) = line.split_once(':').filter(|(n, p)| !n.is_empty() && !p.is_empty()) else {
            return Err(format!("--users {} line {}: expected name:password", file.display(), i + 1));
        };
        users.push(evlog::serve::ScramUser::new(name, password));
    }
    if users.is_empty() {
        return Err(format!("--users {}: no user in it", file.display()));
    }
    Ok(users)
}

/// What `evlog config` was asked to change (`Some(None)`: remove the setting).
pub(super) struct ConfigChange {
    pub(super) bytes_max: Option<Option<u64>>,
    pub(super) when_full: Option<WhenFull>,
    pub(super) block_timeout: Option<Duration>,
    pub(super) retention_age: Option<Option<Duration>>,
    pub(super) retention_bytes: Option<Option<u64>>,
    pub(super) compact_by_key: Option<bool>,
    pub(super) tombstone_retention: Option<Duration>,
    pub(super) compression: Option<Compression>,
}

impl ConfigChange {
    pub(super) fn is_empty(&self) -> bool {
        self.bytes_max.is_none()
            && self.when_full.is_none()
            && self.block_timeout.is_none()
            && self.retention_age.is_none()
            && self.retention_bytes.is_none()
            && self.compact_by_key.is_none()
            && self.tombstone_retention.is_none()
            && self.compression.is_none()
    }

    /// `c` with the changes applied (each value was parsed, and a bad one refused naming its
    /// flag, by clap).
    pub(super) fn apply(&self, mut c: TopicConfig) -> TopicConfig {
        if let Some(w) = self.when_full {
            c = c.with_when_full(w);
        }
        match self.bytes_max {
            Some(Some(bytes)) => c = c.with_budget(bytes, c.when_full),
            Some(None) => c = c.without_budget(),
            None => {}
        }
        if let Some(d) = self.block_timeout {
            c = c.with_block_timeout(d);
        }
        if let Some(age) = self.retention_age {
            c = c.with_retention_age(age);
        }
        if let Some(bytes) = self.retention_bytes {
            c = c.with_retention_bytes(bytes);
        }
        let tombstones = self.tombstone_retention.unwrap_or(c.tombstone_retention);
        c = c.with_compaction(self.compact_by_key.unwrap_or(c.compact_by_key), tombstones);
        if let Some(chosen) = self.compression {
            c = c.with_compression(chosen);
        }
        c
    }
}

impl ConfigChange {
    /// The changes under the names IncrementalAlterConfigs takes (`evlog serve`'s
    /// `SETTABLE`), in the order `apply` makes them: for a served store.
    pub(super) fn settings(&self) -> Vec<(&'static str, Option<String>)> {
        let ms = |d: Duration| Some(d.as_millis().to_string());
        let count = |n: Option<u64>| Some(n.map_or_else(|| "-1".to_string(), |n| n.to_string()));
        let mut v = Vec::new();
        if let Some(w) = self.when_full {
            v.push(("evlog.when_full", Some(w.name().to_string())));
        }
        if let Some(b) = self.bytes_max {
            v.push(("evlog.budget.bytes", count(b)));
        }
        if let Some(d) = self.block_timeout {
            v.push(("evlog.block.timeout.ms", ms(d)));
        }
        if let Some(age) = self.retention_age {
            v.push(("retention.ms", count(age.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))));
        }
        if let Some(b) = self.retention_bytes {
            v.push(("retention.bytes", count(b)));
        }
        if let Some(d) = self.tombstone_retention {
            v.push(("evlog.tombstone.retention.ms", ms(d)));
        }
        if let Some(c) = self.compact_by_key {
            v.push(("cleanup.policy", Some(if c { "compact" } else { "delete" }.to_string())));
        }
        if let Some(c) = self.compression {
            v.push(("evlog.compression", Some(c.name().to_string())));
        }
        v
    }
}

pub(super) fn config_json(topic: &str, c: &TopicConfig) -> Value {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    json!({
        "topic": topic,
        "bytes_max": c.bytes_max,
        "when_full": c.when_full.name(),
        "block_timeout_ms": ms(c.block_timeout),
        "retention_age_ms": c.retention_age.map(ms),
        "retention_bytes": c.retention_bytes,
        "compact_by_key": c.compact_by_key,
        "tombstone_retention_ms": ms(c.tombstone_retention),
        "compression": c.compression.name(),
    })
}

/// `evlog compress TOPIC`: compresses the sealed segments now (needs the store).
pub(super) fn compress(dir: &Path, topic: &str) -> CmdResult {
    topic_dir(dir, topic)?;
    if let Some(remote) = crate::remote::Remote::connect(dir) {
        return admin_remote(remote, AdminCommand::Compress, topic, ("topic", topic.into()));
    }
    let store = open_store(dir, Durability::Always)?;
    let r = store.compress_topic(topic).map_err(msg)?;
    print_line(&json!({
        "topic": topic,
        "segments_compressed": r.segments_compressed,
        "bytes_before": r.bytes_before,
        "bytes_after": r.bytes_after,
    }))?;
    Ok(ExitCode::SUCCESS)
}

/// An administration command run by the serving process: its figures as JSON beside `first`.
fn admin_fields(
    mut remote: crate::remote::Remote,
    command: AdminCommand,
    argument: &str,
    first: (&str, Value),
) -> Result<serde_json::Map<String, Value>, String> {
    let mut out = serde_json::Map::new();
    out.insert(first.0.to_string(), first.1);
    for (name, value) in remote.admin(command, argument)? {
        out.insert(name, json!(value));
    }
    Ok(out)
}

fn admin_remote(
    remote: crate::remote::Remote,
    command: AdminCommand,
    argument: &str,
    first: (&str, Value),
) -> CmdResult {
    print_line(&Value::Object(admin_fields(remote, command, argument, first)?))?;
    Ok(ExitCode::SUCCESS)
}

/// `evlog backup DEST`: a consistent copy of the store (needs the store).
pub(super) fn backup(dir: &Path, dest: &Path) -> CmdResult {
    let started = std::time::Instant::now();
    if let Some(remote) = crate::remote::Remote::connect(dir) {
        // The serving process has a working directory of its own: the destination goes absolute.
        let dest = std::path::absolute(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
        let dest = dest.to_str().ok_or_else(|| format!("{}: not UTF-8", dest.display()))?;
        let mut out = admin_fields(remote, AdminCommand::Backup, dest, ("dest", dest.into()))?;
        out.insert("seconds".into(), json!(started.elapsed().as_secs_f64()));
        print_line(&Value::Object(out))?;
        return Ok(ExitCode::SUCCESS);
    }
    let store = open_store(dir, Durability::Always)?;
    let r = store.backup(dest).map_err(msg)?;
    print_line(&json!({
        "dest": dest.display().to_string(),
        "topics": r.topics,
        "records": r.records,
        "bytes_copied": r.bytes_copied,
        "bytes_linked": r.bytes_linked,
        "state_keys": r.state_keys,
        "seconds": started.elapsed().as_secs_f64(),
    }))?;
    Ok(ExitCode::SUCCESS)
}

/// `evlog compact TOPIC`: seals the active segment and compacts everything before it now
/// (needs the store), and prints what it did and up to which offset (`compacted_below`).
pub(super) fn compact(dir: &Path, topic: &str) -> CmdResult {
    topic_dir(dir, topic)?;
    if let Some(remote) = crate::remote::Remote::connect(dir) {
        return admin_remote(remote, AdminCommand::Compact, topic, ("topic", topic.into()));
    }
    let store = open_store(dir, Durability::Always)?;
    let r = store.compact_topic(topic).map_err(msg)?;
    print_line(&json!({
        "topic": topic,
        "segments_rewritten": r.segments_rewritten,
        "records_before": r.records_before,
        "records_after": r.records_after,
        "bytes_before": r.bytes_before,
        "bytes_after": r.bytes_after,
        "tombstones_removed": r.tombstones_removed,
        "keys": r.keys,
        "compacted_below": r.compacted_below,
    }))?;
    Ok(ExitCode::SUCCESS)
}

/// `evlog config TOPIC [flags]`: prints the configuration; with flags, changes it first (which
/// needs the store: an application holding it must change it through the library).
pub(super) fn config(dir: &Path, topic: &str, change: ConfigChange) -> CmdResult {
    // Changing the configuration of a topic that does not exist yet creates it.
    let current = match topic_dir(dir, topic) {
        Ok(d) => TopicConfig::read(&evlog::storage::RealStorage, &d).map_err(msg)?,
        Err(_) if !change.is_empty() => TopicConfig::default(),
        Err(e) => return Err(e),
    };
    let c = if change.is_empty() {
        current
    } else if let Some(mut remote) = crate::remote::Remote::connect(dir) {
        // A served store: the serving process changes and saves it; the file then says what it saved.
        remote.alter_config(topic, &change.settings())?;
        TopicConfig::read(&evlog::storage::RealStorage, &topic_dir(dir, topic)?).map_err(msg)?
    } else {
        let c = change.apply(current);
        let store = open_store(dir, Durability::Always)?;
        store.configure_topic(topic, c).map_err(|e| match e {
            Error::InvalidOptions { reason } if reason.starts_with("bytes_max") => format!("--bytes-max: {reason}"),
            e => msg(e),
        })?;
        c
    };
    print_line(&config_json(topic, &c))?;
    Ok(ExitCode::SUCCESS)
}

/// The offset `groups reset` was asked for: exactly one of its four flags.
fn reset_target(to_offset: Option<u64>, to_time: Option<i64>, earliest: bool, latest: bool) -> Result<StartAt, String> {
    match (to_offset, to_time, earliest, latest) {
        (Some(o), None, false, false) => Ok(StartAt::Offset(o)),
        (None, Some(t), false, false) => Ok(StartAt::Timestamp(t)),
        (None, None, true, false) => Ok(StartAt::Earliest),
        (None, None, false, true) => Ok(StartAt::Latest),
        _ => Err("give exactly one of --to-offset, --to-time, --earliest, --latest".into()),
    }
}

pub(super) fn groups(dir: &Path, action: GroupsAction) -> CmdResult {
    if let Some(remote) = crate::remote::Remote::connect(dir) {
        return groups_remote(dir, remote, action);
    }
    let store = open_store(dir, Durability::Always)?;
    match action {
        GroupsAction::List { topic } => {
            for t in topic_names(dir, topic.as_deref())? {
                for g in store.groups(&t).map_err(msg)? {
                    print_line(
                        &json!({"topic": t, "group": g.group, "committed": g.committed, "lag": g.lag, "committed_at_ms": g.committed_at_ms}),
                    )?;
                }
            }
        }
        GroupsAction::Reset { topic, group, to_offset, to_time, earliest, latest } => {
            let to = reset_target(to_offset, to_time, earliest, latest)?;
            let o = store.reset_group(&group, &topic, to).map_err(msg)?;
            println!("group {group:?} on {topic:?} now at offset {o}");
        }
        GroupsAction::Delete { topic, group } => {
            store.delete_group(&group, &topic).map_err(msg)?;
            println!("deleted group {group:?} of {topic:?}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `groups` on a store another process serves: the same output (`committed_at_ms` is null:
/// Kafka's OffsetFetch does not carry it) through the serving process.
fn groups_remote(dir: &Path, mut remote: crate::remote::Remote, action: GroupsAction) -> CmdResult {
    match action {
        GroupsAction::List { topic } => {
            let wanted = topic_names(dir, topic.as_deref())?;
            let mut rows = Vec::new();
            for g in remote.groups()? {
                for (t, committed) in remote.committed_all(&g)? {
                    if wanted.contains(&t) {
                        rows.push((t, g.clone(), committed));
                    }
                }
            }
            rows.sort();
            for (t, g, committed) in rows {
                let lag = remote.offset_at(&t, -1)?.saturating_sub(committed);
                print_line(
                    &json!({"topic": t, "group": g, "committed": committed, "lag": lag, "committed_at_ms": null}),
                )?;
            }
        }
        GroupsAction::Reset { topic, group, to_offset, to_time, earliest, latest } => {
            let to = reset_target(to_offset, to_time, earliest, latest)?;
            if !remote.committed_all(&group)?.iter().any(|(t, _)| *t == topic) {
                return Err(format!("no group {group:?} on {topic:?}"));
            }
            let o = match to {
                StartAt::Offset(o) => o,
                StartAt::Timestamp(t) => remote.offset_at(&topic, t)?,
                StartAt::Earliest => remote.offset_at(&topic, -2)?,
                _ => remote.offset_at(&topic, -1)?,
            };
            remote.commit(&group, &topic, o)?;
            println!("group {group:?} on {topic:?} now at offset {o}");
        }
        GroupsAction::Delete { topic, group } => {
            remote.delete_group(&group, &topic)?;
            println!("deleted group {group:?} of {topic:?}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "kafka")]
pub(super) fn forward(
    dir: &Path,
    topic: &str,
    brokers: &str,
    kafka_topic: &str,
    group: &str,
    until_caught_up: bool,
) -> CmdResult {
    use evlog::kafka::{Forwarder, ForwarderOptions};
    let store = open_store(dir, Durability::Always)?;
    topic_dir(dir, topic)?;
    let mut opts = ForwarderOptions::new(brokers, kafka_topic);
    opts.group = group.to_string();
    let mut f = Forwarder::start(&store, topic, opts).map_err(msg)?;
    eprintln!(
        "evlog: forwarding {topic:?} to Kafka topic {kafka_topic:?} ({} partitions) at {brokers}",
        f.partitions()
    );
    let stop = std::sync::atomic::AtomicBool::new(false);
    let stats = f
        .run(&stop, until_caught_up, |s| {
            eprintln!(
                "evlog: forwarded {}, skipped {} already in Kafka, lag {} records / {:.1} s",
                s.forwarded, s.skipped, s.lag_records, s.lag_seconds
            )
        })
        .map_err(msg)?;
    eprintln!(
        "evlog: done: forwarded {}, skipped {}, committed {}, lag {} records",
        stats.forwarded, stats.skipped, stats.committed, stats.lag_records
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "kafka")]
pub(super) fn import(dir: &Path, topic: &str, brokers: &str, kafka_topic: &str, until_caught_up: bool) -> CmdResult {
    use evlog::kafka::{Importer, ImporterOptions};
    let store = open_store(dir, Durability::Always)?;
    let mut i = Importer::start(&store, topic, ImporterOptions::new(brokers, kafka_topic)).map_err(msg)?;
    eprintln!("evlog: importing Kafka topic {kafka_topic:?} at {brokers} into {topic:?}");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let n = i
        .run(&stop, until_caught_up, |done, lag| eprintln!("evlog: imported {done}, lag {lag} records"))
        .map_err(msg)?;
    eprintln!("evlog: done: imported {n} records into {topic:?}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "kafka"))]
pub(super) fn forward(_: &Path, _: &str, _: &str, _: &str, _: &str, _: bool) -> CmdResult {
    Err("this evlog was built without the `kafka` feature (cargo build --features kafka)".into())
}

#[cfg(not(feature = "kafka"))]
pub(super) fn import(_: &Path, _: &str, _: &str, _: &str, _: bool) -> CmdResult {
    Err("this evlog was built without the `kafka` feature (cargo build --features kafka)".into())
}
