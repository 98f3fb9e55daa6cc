//! The subcommands.

mod admin;
mod inspect;
mod read;
mod report;
mod write;

use admin::*;
use inspect::*;
use read::*;
use write::*;

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
        Command::Top => crate::top::run(dir).map(|()| ExitCode::SUCCESS),
        Command::Report { html } => report::report(dir, &html),
        Command::Serve { listen, users, metrics } => serve(dir, listen, users.as_deref(), metrics),
    }
}
