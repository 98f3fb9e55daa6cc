//! `evlog report --html FILE`: one static, self-contained HTML page about a store (inline CSS
//! and SVG, no script, nothing fetched), the file to attach to a bug report: per topic its
//! offsets, times, configuration and sealed segments (a bar per segment), its groups' lag (a bar
//! per group) and work queues; from the holder's stats file (FORMAT.md § Stats file), when there
//! is one, its fsync latency histogram, λ and μ per minute over the last hour, and what recovery
//! found when it opened each topic. Works beside the holder, as `info` does (groups through its
//! socket when it serves).

use super::inspect::{TopicInfo, gather};
use super::*;
use evlog::log::LatencyHistogram;
use evlog::store::{RecoveryFigures, StatsFile, TopicFigures};
use std::fmt::Write as _;

/// Most segment bars drawn per topic (the newest ones).
const SEGMENT_BARS_MAX: usize = 120;

/// Text made safe inside HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A bar chart as inline SVG: one bar per value, labelled by `titles` (shown on hover).
fn bars(values: &[u64], titles: &[String], width: u32, height: u32) -> String {
    let max = values.iter().copied().max().unwrap_or(0).max(1) as f64;
    let w = f64::from(width) / values.len().max(1) as f64;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">"#
    );
    for (i, (v, t)) in values.iter().zip(titles).enumerate() {
        let h = (*v as f64 / max * f64::from(height)).max(1.0);
        let _ = write!(
            svg,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="#4a6fa5"><title>{}</title></rect>"##,
            i as f64 * w,
            f64::from(height) - h,
            (w - 1.0).max(1.0),
            esc(t)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn retention(c: &TopicConfig) -> String {
    let age = c.retention_age.map(|a| format!("age {:.0} s", a.as_secs_f64()));
    let size = c.retention_bytes.map(|b| format!("size {b} bytes"));
    match (age, size) {
        (None, None) => "none of its own (the store's defaults apply)".to_string(),
        (a, b) => [a, b].into_iter().flatten().collect::<Vec<_>>().join(", "),
    }
}

/// Whether the segment file at `path` is LZ4-compressed (its header's flag); `None` when its
/// header cannot be read.
fn compressed(path: &Path) -> Option<bool> {
    use evlog::format::{SEGMENT_FLAG_COMPRESSED, SEGMENT_HEADER_LEN, decode_segment_header_with_flags};
    use std::io::Read as _;
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    std::fs::File::open(path).ok()?.read_exact(&mut header).ok()?;
    let (_, flags) = decode_segment_header_with_flags(&header).ok()?;
    Some(flags & SEGMENT_FLAG_COMPRESSED != 0)
}

/// The files a repair moved into the topic's `quarantine/`.
fn quarantined(topic_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(topic_dir.join("quarantine")) else { return Vec::new() };
    let mut names: Vec<String> = entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    names.sort();
    names
}

fn topic_section(
    dir: &Path,
    t: &TopicInfo,
    segments: &[evlog::log::SegmentInfo],
    holder: Option<&StatsFile>,
) -> String {
    let mut h = format!("<section><h2>{}</h2><table>", esc(&t.name));
    let times = t.timestamps.map_or_else(|| "none".to_string(), |(a, b)| format!("{a} ..= {b} ms"));
    for (k, v) in [
        ("offsets", format!("{} .. {}", t.first_offset, t.next_offset)),
        ("segments", format!("{} ({} bytes)", t.segments, t.bytes)),
        ("timestamps", times),
        ("compression", t.config.compression.name().to_string()),
        (
            "budget",
            t.config
                .bytes_max
                .map_or("none".into(), |b| format!("{b} bytes, when full: {}", t.config.when_full.name())),
        ),
        ("retention", retention(&t.config)),
        ("compaction by key", t.config.compact_by_key.to_string()),
    ] {
        let _ = write!(h, "<tr><th>{k}</th><td>{}</td></tr>", esc(&v));
    }
    h.push_str("</table>");
    let shown = &segments[segments.len().saturating_sub(SEGMENT_BARS_MAX)..];
    if !shown.is_empty() {
        let topic_dir = dir.join("topics").join(&t.name);
        let packed: Vec<Option<bool>> = shown
            .iter()
            .map(|s| compressed(&topic_dir.join(evlog::format::segment_file_name(s.base_offset))))
            .collect();
        let sizes: Vec<u64> = shown.iter().map(|s| s.bytes).collect();
        let titles: Vec<String> = (shown.iter().zip(&packed))
            .map(|(s, c)| {
                let how = match c {
                    Some(true) => "LZ4-compressed",
                    Some(false) => "plain",
                    None => "header unreadable",
                };
                format!("offsets {}..{}: {} bytes, {how}", s.base_offset, s.end_offset, s.bytes)
            })
            .collect();
        let _ = write!(
            h,
            "<h3>Sealed segments ({} shown of {}; {} compressed), bytes</h3>{}",
            shown.len(),
            segments.len(),
            packed.iter().filter(|c| **c == Some(true)).count(),
            bars(&sizes, &titles, 640, 80)
        );
    }
    let held_back = quarantined(&dir.join("topics").join(&t.name));
    if held_back.is_empty() {
        h.push_str("<p>Quarantine: empty.</p>");
    } else {
        let _ = write!(
            h,
            "<p>Quarantine ({} files a repair moved aside): {}</p>",
            held_back.len(),
            esc(&held_back.join(", "))
        );
    }
    match &t.groups {
        Ok(gs) if !gs.is_empty() => {
            h.push_str(
                "<h3>Groups</h3><table><tr><th>group</th><th>committed</th><th>lag (records)</th><th>lag (s)</th></tr>",
            );
            for g in gs {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td></tr>",
                    esc(&g.group),
                    g.committed,
                    g.lag,
                    g.lag_seconds
                );
            }
            h.push_str("</table>");
            let lags: Vec<u64> = gs.iter().map(|g| g.lag).collect();
            let titles: Vec<String> = gs.iter().map(|g| format!("{}: {} records behind", g.group, g.lag)).collect();
            h.push_str(&bars(&lags, &titles, 320, 60));
        }
        Ok(_) => h.push_str("<p>No consumer groups.</p>"),
        Err(why) => match holder.filter(|f| f.topics.iter().any(|x| x.topic == t.name)) {
            Some(f) => h.push_str(&holder_groups(&t.name, f)),
            None => {
                let _ = write!(h, "<p>Groups unavailable: {}</p>", esc(why));
            }
        },
    }
    for q in t.queues.iter().flatten() {
        let _ = write!(h, "<p>Work queue {}: {} scheduled, {} delayed.</p>", esc(&q.group), q.scheduled, q.delayed);
    }
    h
}

/// The groups of topic `name` as the holder's stats file has them (when the holder does not
/// serve, the files alone cannot show them): committed offset and lag against the holder's end.
fn holder_groups(name: &str, f: &StatsFile) -> String {
    let end = f.topics.iter().find(|t| t.topic == name).map_or(0, |t| t.next_offset);
    let groups: Vec<_> = f.groups.iter().filter(|g| g.topic == name).collect();
    if groups.is_empty() {
        return "<p>No consumer groups (the holder's stats file).</p>".to_string();
    }
    let mut h = String::from(
        "<h3>Groups (the holder's stats file)</h3><table><tr><th>group</th><th>committed</th><th>lag (records)</th></tr>",
    );
    for g in &groups {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&g.group),
            g.committed,
            end.saturating_sub(g.committed)
        );
    }
    h.push_str("</table>");
    h
}

/// A time of day (UTC) for a chart's hover text.
fn clock(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.strftime("%H:%M UTC").to_string())
}

/// Per-minute rates as bars, or a line saying there are not yet two samples.
fn rate_bars(what: &str, history: Option<&evlog::store::History>) -> String {
    let rates = history.map(|h| h.rates()).unwrap_or_default();
    if rates.is_empty() {
        return format!("<p>{what}: not yet two samples (the holder takes one a minute).</p>");
    }
    let values: Vec<u64> = rates.iter().map(|&(_, r)| r.round() as u64).collect();
    let titles: Vec<String> = rates.iter().map(|&(at, r)| format!("minute to {}: {r:.1}/s", clock(at))).collect();
    let max = values.iter().max().copied().unwrap_or(0);
    format!("<h3>{what} per minute, last hour (max {max}/s)</h3>{}", bars(&values, &titles, 640, 60))
}

/// The holder's figures for one topic, from its stats file.
fn holder_section(name: &str, file: &StatsFile) -> String {
    let mut h = String::new();
    let history = |group: Option<&str>| file.history.iter().find(|x| x.topic == name && x.group.as_deref() == group);
    h.push_str(&rate_bars("Appends λ", history(None)));
    for g in file.groups.iter().filter(|g| g.topic == name) {
        h.push_str(&rate_bars(&format!("Group {} commits μ", esc(&g.group)), history(Some(&g.group))));
    }
    if let Some(t) = file.topics.iter().find(|t| t.topic == name) {
        h.push_str(&fsync_histogram(t));
    }
    if let Some(r) = file.recoveries.iter().find(|r| r.topic == name) {
        h.push_str(&recovery_table(r));
    }
    h
}

fn fsync_histogram(t: &TopicFigures) -> String {
    let l = &t.fsync_latency;
    let ms = |q| l.quantile(q).map_or_else(|| "—".to_string(), |d| format!("{:.2} ms", d.as_secs_f64() * 1e3));
    let mut h = format!(
        "<h3>fsyncs on the append path: {} ({} records made durable), p50 ≤ {}, p99 ≤ {}</h3>",
        t.fsyncs,
        t.synced_records,
        ms(0.5),
        ms(0.99)
    );
    // Every bucket from the first to the last that counted, so the bars' spacing follows the
    // durations.
    let counts = l.counts();
    let first = counts.iter().position(|&n| n > 0);
    let last = counts.iter().rposition(|&n| n > 0);
    if let (Some(first), Some(last)) = (first, last) {
        let range = first..last + 1;
        let values: Vec<u64> = counts.get(range.clone()).unwrap_or_default().to_vec();
        let titles: Vec<String> = (range.clone())
            .zip(&values)
            .map(|(i, n)| match LatencyHistogram::bucket_range(i) {
                (from, Some(to)) => format!("{} to {} µs: {n}", from.as_micros(), to.as_micros()),
                (from, None) => format!("{} µs and more: {n}", from.as_micros()),
            })
            .collect();
        h.push_str(&bars(&values, &titles, 640, 60));
        let (from, to) = (LatencyHistogram::bucket_range(first).0, LatencyHistogram::bucket_range(last).1);
        let _ = write!(
            h,
            "<p>fsyncs per duration bucket (each a quarter of a power of two wide), from {} µs to {} µs; hover for each.</p>",
            from.as_micros(),
            to.map_or_else(|| "beyond".to_string(), |d| d.as_micros().to_string())
        );
    }
    h
}

fn recovery_table(r: &RecoveryFigures) -> String {
    let mut h = String::from("<h3>Recovery when the holder opened it</h3><table>");
    for (k, v) in [
        ("checkpoint used", r.checkpoint_used.to_string()),
        ("scanned", format!("{} records, {} bytes", r.scanned_records, r.scanned_bytes)),
        (
            "torn or unsynced tail cut",
            format!("{} bytes ({} whole records dropped)", r.truncated_bytes, r.dropped_records),
        ),
        ("files removed / quarantined", format!("{} / {}", r.removed_files, r.quarantined_files)),
        ("preallocated zeros cut", format!("{} bytes", r.zero_tail_bytes)),
        ("index rebuilt", r.index_rebuilt.to_string()),
        ("corruption repaired", r.repaired.to_string()),
    ] {
        let _ = write!(h, "<tr><th>{k}</th><td>{}</td></tr>", esc(&v));
    }
    h.push_str("</table>");
    h
}

pub(super) fn report(dir: &Path, html: &Path) -> CmdResult {
    let topics = gather(dir, None, None)?;
    let mut page = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>evlog report</title><style>\
         body{font-family:sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse;margin:.5em 0}\
         th,td{border:1px solid #bbb;padding:.2em .6em;text-align:left}section{margin-bottom:2em}\
         </style></head><body>",
    );
    let generated = jiff::Timestamp::now();
    let _ = write!(
        page,
        "<h1>evlog report</h1><p>Store <code>{}</code>, {} topics, written {generated} by evlog {}.</p>",
        esc(&dir.display().to_string()),
        topics.len(),
        env!("CARGO_PKG_VERSION")
    );
    let holder = StatsFile::read(dir);
    match &holder {
        Some(f) => {
            let _ = write!(
                page,
                "<p>The holder's stats file was written at {} by process {}.</p>",
                jiff::Timestamp::from_millisecond(f.written_ms)
                    .map_or_else(|_| f.written_ms.to_string(), |t| t.to_string()),
                f.pid
            );
        }
        None => page.push_str("<p>No stats file from a holder: no rates, fsyncs or recovery figures.</p>"),
    }
    for t in &topics {
        let segments = read_only(dir, &t.name)?.sealed_segments().map_err(msg)?;
        page.push_str(&topic_section(dir, t, &segments, holder.as_ref()));
        if let Some(f) = &holder {
            page.push_str(&holder_section(&t.name, f));
        }
        page.push_str("</section>");
    }
    page.push_str("</body></html>\n");
    std::fs::write(html, page).map_err(|e| format!("{}: {e}", html.display()))?;
    println!("{}", html.display());
    Ok(ExitCode::SUCCESS)
}
