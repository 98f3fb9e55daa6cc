//! The subcommands.

use crate::remote::Outgoing;
use crate::text::{parse_time, record_json, unbase64};
use crate::{Cli, Command, GroupsAction, OnError, Sync};
use evlog::consume::StartAt;
use evlog::log::WhenFull;
use evlog::store::Compression;
use evlog::{ConsumerOptions, Durability, Error, Log, NewRecord, Options, Store, StoreOptions, TopicConfig};
use serde_json::{Value, json};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

pub type CmdResult = Result<ExitCode, String>;

/// Turns a library error into one line, saying plainly when the store is in use and by whom.
fn msg(e: impl Into<Error>) -> String {
    match e.into() {
        Error::Locked { path } => format!(
            "{} is in use by another process{} (it holds the lock); stop it, or use dump, tail, info or verify, which work beside a writer",
            path.display(),
            lock_holder(&path.join("LOCK")).map_or(String::new(), |h| format!(", {h}"))
        ),
        e => e.to_string(),
    }
}

/// The process holding the flock on `lock_file`, from /proc/locks (Linux), as `pid N (name)`.
fn lock_holder(lock_file: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(lock_file).ok()?.ino();
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let pid = locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // "1: FLOCK ADVISORY WRITE <pid> <maj>:<min>:<inode> 0 EOF"
        let dev_inode = f.get(5)?;
        (f.get(1) == Some(&"FLOCK") && dev_inode.rsplit(':').next()?.parse::<u64>().ok()? == inode)
            .then(|| f.get(4).map(|p| p.to_string()))?
    })?;
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    Some(format!("pid {pid} ({})", name.trim()))
}

fn open_store(dir: &Path, durability: Durability) -> Result<Store, String> {
    Store::open(dir, StoreOptions::with_log(Options::with_durability(durability))).map_err(msg)
}

fn topic_dir(dir: &Path, topic: &str) -> Result<PathBuf, String> {
    evlog::store::validate_name(topic).map_err(msg)?;
    let p = dir.join("topics").join(topic);
    if !p.is_dir() {
        return Err(format!("topic {topic:?} not found in {}", dir.display()));
    }
    Ok(p)
}

/// A topic's log, read-only: works while an application writes the store.
fn read_only(dir: &Path, topic: &str) -> Result<Log, String> {
    Log::open_read_only(topic_dir(dir, topic)?, Options::default()).map_err(msg)
}

fn topic_names(dir: &Path, only: Option<&str>) -> Result<Vec<String>, String> {
    if let Some(t) = only {
        topic_dir(dir, t)?;
        return Ok(vec![t.to_string()]);
    }
    let tdir = dir.join("topics");
    let mut names: Vec<String> = std::fs::read_dir(&tdir)
        .map_err(|e| format!("{}: not an evlog store ({e})", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| evlog::store::validate_name(n).is_ok())
        .collect();
    names.sort();
    Ok(names)
}

/// What a command returns when its reader closed stdout (`evlog dump t | head -1`): `main` then
/// ends quietly, as `cat` does, after every handle was dropped on the way out.
pub const STDOUT_CLOSED: &str = "stdout closed by its reader";

/// A failed write to stdout as a command's error: `STDOUT_CLOSED` for a closed pipe.
fn stdout_error(e: std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::BrokenPipe { STDOUT_CLOSED.to_string() } else { format!("stdout: {e}") }
}

fn out() -> std::io::StdoutLock<'static> {
    std::io::stdout().lock()
}

fn print_line(v: &Value) -> Result<(), String> {
    let mut o = out();
    writeln!(o, "{v}").and_then(|()| o.flush()).map_err(stdout_error)
}

pub fn run(cli: Cli) -> CmdResult {
    let given = cli.dir.is_some();
    let dir_buf = cli.dir.unwrap_or_else(|| PathBuf::from("."));
    let dir = dir_buf.as_path();
    match cli.command {
        Command::Append { topic, json, sync, key, on_error } => append(dir, &topic, json, sync, key, on_error),
        Command::Consume { topic, group, follow, max, no_commit } => {
            consume(dir, &topic, &group, follow, max, no_commit)
        }
        Command::Dump { topic, from_offset, from_time, to_time } => dump(dir, &topic, from_offset, from_time, to_time),
        Command::Tail { topic, follow, lines } => tail(dir, &topic, follow, lines),
        Command::Replay { topics, from, to, max_lateness } => replay(dir, &topics, from, to, max_lateness),
        Command::Info { topic, json, rate } => info(dir, topic.as_deref(), json, rate),
        Command::Verify { topic } => verify(dir, topic.as_deref()),
        Command::Config {
            topic,
            bytes_max,
            no_bytes_max,
            when_full,
            block_timeout,
            retention_age,
            no_retention_age,
            retention_bytes,
            no_retention_bytes,
            compact_by_key,
            no_compact_by_key,
            tombstone_retention,
            compression,
        } => {
            let change = ConfigChange {
                bytes_max: if no_bytes_max { Some(None) } else { bytes_max.map(Some) },
                when_full,
                block_timeout,
                retention_age: if no_retention_age { Some(None) } else { retention_age.map(Some) },
                retention_bytes: if no_retention_bytes { Some(None) } else { retention_bytes.map(Some) },
                compact_by_key: (compact_by_key || no_compact_by_key).then_some(compact_by_key),
                tombstone_retention,
                compression,
            };
            config(dir, &topic, change)
        }
        Command::Compact { topic } => compact(dir, &topic),
        Command::Compress { topic } => compress(dir, &topic),
        Command::Backup { dest } => backup(dir, &dest),
        Command::Repair { topic, yes } => repair(dir, topic.as_deref(), yes),
        Command::Groups { action } => groups(dir, action),
        Command::Demo { child } => crate::demo::run(given.then_some(dir), child),
        Command::Forward { topic, brokers, kafka_topic, group, until_caught_up } => {
            forward(dir, &topic, &brokers, &kafka_topic, &group, until_caught_up)
        }
        Command::Import { topic, brokers, kafka_topic, until_caught_up } => {
            import(dir, &topic, &brokers, &kafka_topic, until_caught_up)
        }
        Command::Serve { listen } => serve(dir, listen),
    }
}

/// `evlog serve`: the store served over the Kafka protocol until SIGINT or SIGTERM, then
/// stopped gracefully (requests in flight answered, connections closed, the store closed
/// cleanly). Every produce with acks=all is fsynced before it is answered (the store opens with
/// `Always`), so even SIGKILL loses nothing acknowledged.
fn serve(dir: &Path, listen: std::net::SocketAddr) -> CmdResult {
    let store = open_store(dir, Durability::Always)?;
    let server = store.serve(evlog::serve::ServeOptions::listening_on(listen)).map_err(msg)?;
    let (stop, stopped) = std::sync::mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = stop.send(());
    })
    .map_err(|e| format!("cannot handle SIGINT and SIGTERM: {e}"))?;
    eprintln!("evlog: serving {} on {}", dir.display(), server.local_addr());
    let _ = stopped.recv();
    eprintln!("evlog: stopping: finishing requests in flight");
    server.shutdown();
    drop(store);
    eprintln!("evlog: stopped");
    Ok(ExitCode::SUCCESS)
}

fn append(dir: &Path, topic: &str, as_json: bool, sync: Sync, key: Option<String>, on_error: OnError) -> CmdResult {
    // A store another process serves: through it (its durability applies).
    if let Some(mut remote) = crate::remote::Remote::connect(dir) {
        evlog::store::validate_name(topic).map_err(msg)?;
        return append_lines(
            &mut Sink::Remote(&mut remote, topic),
            as_json,
            Sync::Always,
            key.as_deref(),
            on_error,
            || Ok(()),
        );
    }
    let durability = match sync {
        Sync::Always => Durability::Always,
        Sync::Interval => Durability::Interval(Duration::from_millis(100)),
        Sync::Os => Durability::Os,
    };
    let store = open_store(dir, durability)?;
    let t = store.topic(topic).map_err(msg)?;
    append_lines(&mut Sink::Local(&t), as_json, sync, key.as_deref(), on_error, || t.sync().map_err(msg))
}

/// Appends stdin's lines to `sink`, printing each offset once it is durable (`sync_now` makes
/// the pending ones so under `Interval`).
fn append_lines(
    sink: &mut Sink<'_>,
    as_json: bool,
    sync: Sync,
    key: Option<&str>,
    on_error: OnError,
    sync_now: impl Fn() -> Result<(), String>,
) -> CmdResult {
    let mut failed = false;
    let mut pending = Vec::new();
    let flush_pending = |pending: &mut Vec<u64>| -> Result<(), String> {
        if pending.is_empty() {
            return Ok(());
        }
        if matches!(sync, Sync::Interval) {
            sync_now()?;
        }
        let mut o = out();
        for p in pending.drain(..) {
            writeln!(o, "{p}").map_err(stdout_error)?;
        }
        o.flush().map_err(stdout_error)
    };
    // Lines are read as bytes: one line that is not UTF-8 is that line's error, not the end of
    // the whole input.
    for (n, line) in std::io::stdin().lock().split(b'\n').enumerate() {
        let mut line = line.map_err(|e| format!("stdin: {e}"))?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let result = match String::from_utf8(line) {
            Err(e) => Err(format!(
                "not UTF-8 (invalid byte at column {}); plain lines are text: append binary payloads with \
                 --json and \"value_base64\"",
                e.utf8_error().valid_up_to() + 1
            )),
            Ok(line) if as_json => json_record(&line).and_then(|r| sink.append(&r)),
            Ok(line) => sink.append(&plain_record(&line, key)),
        };
        match result {
            Ok(Err((true, e))) => {
                // Every later line would meet the same budget: stop whatever `--on-error` says.
                eprintln!("evlog: line {}: {e}", n + 1);
                failed = true;
                break;
            }
            Ok(Err((false, e))) | Err(e) => {
                eprintln!("evlog: line {}: {e}", n + 1);
                failed = true;
                if matches!(on_error, OnError::Stop) {
                    break;
                }
            }
            Ok(Ok(offset)) => {
                pending.push(offset);
                // Always and Os: durable as promised when append returns. Interval: after a sync.
                if !matches!(sync, Sync::Interval) || pending.len() >= 1000 {
                    flush_pending(&mut pending)?;
                }
            }
        }
    }
    flush_pending(&mut pending)?;
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// What appending one line did: bad input (`Err`), or the append's own result (an offset, or
/// whether the topic was full and what went wrong).
type LineResult = Result<Result<u64, (bool, String)>, String>;

/// Where `append` puts each record: the store it opened, or the process that serves it.
enum Sink<'a> {
    Local(&'a evlog::Topic),
    Remote(&'a mut crate::remote::Remote, &'a str),
}

impl Sink<'_> {
    fn append(&mut self, r: &Outgoing) -> LineResult {
        match self {
            Sink::Local(t) => {
                let mut n = NewRecord::new(&r.value);
                n.timestamp = r.timestamp;
                n.key = r.key.as_deref();
                n.headers = r.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
                Ok(t.append_record(&n).map_err(|e| (matches!(e, evlog::LogError::TopicFull { .. }), msg(e))))
            }
            Sink::Remote(remote, topic) => remote.append(topic, r),
        }
    }
}

fn plain_record(line: &str, key: Option<&str>) -> Outgoing {
    Outgoing {
        timestamp: None,
        key: key.map(|k| k.as_bytes().to_vec()),
        headers: Vec::new(),
        value: line.as_bytes().to_vec(),
    }
}

fn json_record(line: &str) -> Result<Outgoing, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object().ok_or("expected a JSON object with timestamp, key and value")?;
    let timestamp = match obj.get("timestamp") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.as_i64().ok_or("timestamp must be whole milliseconds")?),
        Some(Value::String(s)) => Some(parse_time(s)?),
        Some(_) => return Err("timestamp must be a number (ms) or an RFC 3339 string".into()),
    };
    let key = match obj.get("key") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone().into_bytes()),
        Some(_) => return Err("key must be a string".into()),
    };
    // Binary values come as `value_base64` (what `dump` prints for them).
    let value = match (obj.get("value"), obj.get("value_base64")) {
        (Some(_), Some(_)) => return Err("give \"value\" or \"value_base64\", not both".into()),
        (None, None) => return Err("missing \"value\" (or \"value_base64\")".into()),
        (None, Some(Value::String(b))) => unbase64(b)?,
        (None, Some(_)) => return Err("value_base64 must be a base64 string".into()),
        (Some(Value::String(s)), None) => s.clone().into_bytes(),
        (Some(other), None) => other.to_string().into_bytes(),
    };
    let headers: Vec<(String, Vec<u8>)> = match obj.get("headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(h)) => h
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone().into_bytes())),
                Value::Object(b) if b.len() == 1 && b.get("base64").is_some_and(Value::is_string) => {
                    Ok((k.clone(), unbase64(b.get("base64").and_then(Value::as_str).unwrap_or_default())?))
                }
                _ => Err(format!("header {k:?} must be a string or {{\"base64\": ...}}")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("headers must be an object of strings".into()),
    };
    Ok(Outgoing { timestamp, key, headers, value })
}

fn consume(dir: &Path, topic: &str, group: &str, follow: bool, max: Option<u64>, no_commit: bool) -> CmdResult {
    if let Some(remote) = crate::remote::Remote::connect(dir) {
        return consume_remote(remote, topic, group, follow, max, no_commit);
    }
    let store = open_store(dir, Durability::Always)?;
    topic_dir(dir, topic)?;
    let mut c = store.consumer(group, topic, ConsumerOptions::default()).map_err(msg)?;
    let start = c.start_report();
    if let Some(from) = start.clamped_from {
        eprintln!(
            "evlog: group {group:?} had committed offset {from}, past the end of {topic:?}; clamped to {}",
            start.position
        );
    }
    if start.skipped > 0 {
        eprintln!("evlog: {} records were removed by retention before group {group:?} read them", start.skipped);
    }
    let mut seen = 0u64;
    loop {
        let want = max.map_or(500, |m| (m - seen).min(500)) as usize;
        if want == 0 {
            break;
        }
        let batch = c.poll(want, if follow { Duration::from_secs(1) } else { Duration::ZERO }).map_err(msg)?;
        if batch.is_empty() && !follow {
            break;
        }
        for r in &batch {
            print_record(topic, r)?;
        }
        seen += batch.len() as u64;
        if !no_commit && !batch.is_empty() {
            c.commit().map_err(msg)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `consume` through the process serving the store: from the group's committed offset,
/// committing after each batch.
fn consume_remote(
    mut remote: crate::remote::Remote,
    topic: &str,
    group: &str,
    follow: bool,
    max: Option<u64>,
    no_commit: bool,
) -> CmdResult {
    evlog::store::validate_name(topic).map_err(msg)?;
    evlog::store::validate_name(group).map_err(msg)?;
    let mut next = remote.committed(group, topic)?;
    let mut seen = 0u64;
    while max.is_none_or(|m| seen < m) {
        let batch = remote.fetch(topic, next, if follow { 1000 } else { 0 })?;
        if batch.is_empty() && !follow {
            break;
        }
        for r in batch.iter().take(usize::try_from(max.map_or(u64::MAX, |m| m - seen)).unwrap_or(usize::MAX)) {
            let headers: Vec<(&str, &[u8])> =
                r.headers.iter().map(|(n, v)| (&**n, v.as_deref().unwrap_or_default())).collect();
            let offset = u64::try_from(r.offset).unwrap_or(0);
            let value = r.value.as_deref().unwrap_or_default();
            print_line(&record_json(topic, offset, r.timestamp, r.key.as_deref(), &headers, value))?;
            next = offset + 1;
            seen += 1;
        }
        if !no_commit && !batch.is_empty() {
            remote.commit(group, topic, next)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints one record of `topic` as a JSON line.
fn print_record(topic: &str, r: &evlog::Record) -> Result<(), String> {
    let headers: Vec<_> = r.headers().collect();
    print_line(&record_json(topic, r.offset(), r.timestamp(), r.key(), &headers, r.payload()))
}

fn dump(dir: &Path, topic: &str, from_offset: u64, from_time: Option<i64>, to_time: Option<i64>) -> CmdResult {
    let log = read_only(dir, topic)?;
    let to = to_time.unwrap_or(i64::MAX);
    let from_ts = from_time;
    let start = match from_ts {
        Some(ts) => log.offset_for_timestamp(ts).map_err(msg)?.unwrap_or(log.next_offset()).max(from_offset),
        None => from_offset,
    };
    for r in log.iter(start) {
        let r = r.map_err(msg)?;
        if r.timestamp() >= to || from_ts.is_some_and(|f| r.timestamp() < f) {
            continue;
        }
        print_record(topic, &r)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn tail(dir: &Path, topic: &str, follow: bool, lines: u64) -> CmdResult {
    let log = read_only(dir, topic)?;
    let start = log.next_offset().saturating_sub(lines).max(log.first_offset());
    let mut it = log.iter(start);
    loop {
        match it.next() {
            Some(r) => {
                let r = r.map_err(msg)?;
                print_record(topic, &r)?;
            }
            None if follow => std::thread::sleep(Duration::from_millis(50)),
            None => return Ok(ExitCode::SUCCESS),
        }
    }
}

fn replay(dir: &Path, topics: &[String], from: Option<i64>, to: Option<i64>, lateness: Option<Duration>) -> CmdResult {
    let store = open_store(dir, Durability::Always)?;
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    let mut b = store.replay(&refs);
    if let Some(f) = from {
        b = b.from(f);
    }
    if let Some(t) = to {
        b = b.to(t);
    }
    if let Some(l) = lateness {
        b = b.max_lateness(l);
    }
    let mut r = b.start().map_err(msg)?;
    for e in r.by_ref() {
        let e = e.map_err(msg)?;
        print_line(&record_json(&e.topic, e.offset, e.timestamp, e.key.as_deref(), &[], &e.payload))?;
    }
    let s = r.stats();
    eprintln!(
        "evlog: replayed {} records; read {} records ({} bytes), skipped {} segments, spilled {} runs",
        s.records_emitted, s.records_read, s.bytes_read, s.segments_skipped, s.runs_spilled
    );
    Ok(ExitCode::SUCCESS)
}

/// What `evlog config` was asked to change (`Some(None)`: remove the setting).
struct ConfigChange {
    bytes_max: Option<Option<u64>>,
    when_full: Option<WhenFull>,
    block_timeout: Option<Duration>,
    retention_age: Option<Option<Duration>>,
    retention_bytes: Option<Option<u64>>,
    compact_by_key: Option<bool>,
    tombstone_retention: Option<Duration>,
    compression: Option<Compression>,
}

impl ConfigChange {
    fn is_empty(&self) -> bool {
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
    fn apply(&self, mut c: TopicConfig) -> TopicConfig {
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

fn config_json(topic: &str, c: &TopicConfig) -> Value {
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
fn compress(dir: &Path, topic: &str) -> CmdResult {
    topic_dir(dir, topic)?;
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

/// `evlog backup DEST`: a consistent copy of the store (needs the store).
fn backup(dir: &Path, dest: &Path) -> CmdResult {
    let store = open_store(dir, Durability::Always)?;
    let started = std::time::Instant::now();
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
fn compact(dir: &Path, topic: &str) -> CmdResult {
    topic_dir(dir, topic)?;
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
fn config(dir: &Path, topic: &str, change: ConfigChange) -> CmdResult {
    // Changing the configuration of a topic that does not exist yet creates it.
    let current = match topic_dir(dir, topic) {
        Ok(d) => TopicConfig::read(&evlog::storage::RealStorage, &d).map_err(msg)?,
        Err(_) if !change.is_empty() => TopicConfig::default(),
        Err(e) => return Err(e),
    };
    let c = if change.is_empty() {
        current
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

/// One group of a topic as `info` shows it.
struct GroupLine {
    group: String,
    committed: u64,
    lag: u64,
    /// Age of the oldest uncommitted record, by its timestamp.
    lag_seconds: f64,
}

/// One topic as `info` shows it: built once, printed as text or JSON.
struct TopicInfo {
    name: String,
    segments: usize,
    bytes: u64,
    first_offset: u64,
    next_offset: u64,
    timestamps: Option<(i64, i64)>,
    append_rate: Option<f64>,
    config: TopicConfig,
    /// Work queues (group, cursor, scheduled, delayed); `None` without the consumer database.
    queues: Option<Vec<evlog::queue::QueueInfo>>,
    /// The groups, or why they cannot be shown.
    groups: Result<Vec<GroupLine>, String>,
}

impl TopicInfo {
    fn json(&self) -> Value {
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

    fn text(&self) -> Vec<String> {
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

fn info(dir: &Path, only: Option<&str>, as_json: bool, rate_secs: Option<f64>) -> CmdResult {
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
        let groups = match &store {
            Ok(s) => Ok(s
                .groups(name)
                .map_err(msg)?
                .into_iter()
                .map(|g| {
                    let lag_seconds = match log.read(g.committed.max(log.first_offset())) {
                        Ok(Some(r)) if g.lag > 0 => (now_ms.saturating_sub(r.timestamp())).max(0) as f64 / 1e3,
                        _ => 0.0,
                    };
                    GroupLine { group: g.group, committed: g.committed, lag: g.lag, lag_seconds }
                })
                .collect()),
            Err(why) => Err(why.clone()),
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
struct Finding {
    topic: String,
    segment_base: u64,
    error: Error,
}

fn scan_topic(dir: &Path, topic: &str, bar: &indicatif::ProgressBar) -> Result<(u64, Vec<Finding>), String> {
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

fn progress(dir: &Path, names: &[String]) -> indicatif::ProgressBar {
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

fn verify(dir: &Path, only: Option<&str>) -> CmdResult {
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

fn repair(dir: &Path, only: Option<&str>, yes: bool) -> CmdResult {
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

fn describe_repair(topic: &str, r: &evlog::log::RecoveryReport) {
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

fn groups(dir: &Path, action: GroupsAction) -> CmdResult {
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
            let to = match (to_offset, to_time, earliest, latest) {
                (Some(o), None, false, false) => StartAt::Offset(o),
                (None, Some(t), false, false) => StartAt::Timestamp(t),
                (None, None, true, false) => StartAt::Earliest,
                (None, None, false, true) => StartAt::Latest,
                _ => return Err("give exactly one of --to-offset, --to-time, --earliest, --latest".into()),
            };
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

#[cfg(feature = "kafka")]
fn forward(dir: &Path, topic: &str, brokers: &str, kafka_topic: &str, group: &str, until_caught_up: bool) -> CmdResult {
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
fn import(dir: &Path, topic: &str, brokers: &str, kafka_topic: &str, until_caught_up: bool) -> CmdResult {
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
fn forward(_: &Path, _: &str, _: &str, _: &str, _: &str, _: bool) -> CmdResult {
    Err("this evlog was built without the `kafka` feature (cargo build --features kafka)".into())
}

#[cfg(not(feature = "kafka"))]
fn import(_: &Path, _: &str, _: &str, _: &str, _: bool) -> CmdResult {
    Err("this evlog was built without the `kafka` feature (cargo build --features kafka)".into())
}
