//! `consume`, `dump`, `tail`, `replay`: records out as JSON lines.

use super::*;

pub(super) fn consume(
    dir: &Path,
    topic: &str,
    group: &str,
    follow: bool,
    max: Option<u64>,
    no_commit: bool,
) -> CmdResult {
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
pub(super) fn consume_remote(
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
pub(super) fn print_record(topic: &str, r: &evlog::Record) -> Result<(), String> {
    let headers: Vec<_> = r.headers().collect();
    print_line(&record_json(topic, r.offset(), r.timestamp(), r.key(), &headers, r.payload()))
}

pub(super) fn dump(
    dir: &Path,
    topic: &str,
    from_offset: u64,
    from_time: Option<i64>,
    to_time: Option<i64>,
) -> CmdResult {
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

pub(super) fn tail(dir: &Path, topic: &str, follow: bool, lines: u64) -> CmdResult {
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

pub(super) fn replay(
    dir: &Path,
    topics: &[String],
    from: Option<i64>,
    to: Option<i64>,
    lateness: Option<Duration>,
) -> CmdResult {
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
