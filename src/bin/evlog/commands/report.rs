//! `evlog report --html FILE`: one static, self-contained HTML page about a store (inline CSS
//! and SVG, no script, nothing fetched), the file to attach to a bug report: per topic its
//! offsets, times, configuration and sealed segments (a bar per segment), its groups' lag (a bar
//! per group) and work queues. Works beside the holder, as `info` does (groups through its
//! socket when it serves).

use super::inspect::{TopicInfo, gather};
use super::*;
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

fn topic_section(t: &TopicInfo, segments: &[evlog::log::SegmentInfo]) -> String {
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
        let sizes: Vec<u64> = shown.iter().map(|s| s.bytes).collect();
        let titles: Vec<String> =
            shown.iter().map(|s| format!("offsets {}..{}: {} bytes", s.base_offset, s.end_offset, s.bytes)).collect();
        let _ = write!(
            h,
            "<h3>Sealed segments ({} shown of {}), bytes</h3>{}",
            shown.len(),
            segments.len(),
            bars(&sizes, &titles, 640, 80)
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
        Err(why) => {
            let _ = write!(h, "<p>Groups unavailable: {}</p>", esc(why));
        }
    }
    for q in t.queues.iter().flatten() {
        let _ = write!(h, "<p>Work queue {}: {} scheduled, {} delayed.</p>", esc(&q.group), q.scheduled, q.delayed);
    }
    h.push_str("</section>");
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
    for t in &topics {
        let segments = read_only(dir, &t.name)?.sealed_segments().map_err(msg)?;
        page.push_str(&topic_section(t, &segments));
    }
    page.push_str("</body></html>\n");
    std::fs::write(html, page).map_err(|e| format!("{}: {e}", html.display()))?;
    println!("{}", html.display());
    Ok(ExitCode::SUCCESS)
}
