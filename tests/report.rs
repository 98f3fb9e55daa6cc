//! `evlog report --html`: one self-contained page (no script, nothing fetched) that names every
//! topic and group, is well-formed, and renders in headless Chromium (that part when
//! `EVLOG_CLIENT_TESTS=1`, as `.ci/run` sets after installing Chromium).

use std::path::Path;
use std::process::Command;

fn evlog(dir: &Path, args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut p = Command::new(env!("CARGO_BIN_EXE_evlog"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("evlog");
    p.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("stdin");
    let out = p.wait_with_output().expect("evlog");
    assert!(out.status.success(), "evlog {args:?}");
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Every element closed in order (void elements and `/>` aside); the names of those opened.
fn well_formed(html: &str) -> Result<Vec<String>, String> {
    const VOID: &[&str] = &["meta", "br", "img", "input", "link", "hr"];
    let (mut stack, mut seen) = (Vec::<String>::new(), Vec::new());
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').ok_or("a tag that never ends")? + start;
        let tag = &rest[start + 1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('!') {
            continue;
        }
        let name: String = tag.trim_start_matches('/').chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        if let Some(closing) = tag.strip_prefix('/') {
            let open = stack.pop().ok_or_else(|| format!("</{closing}> with nothing open"))?;
            if open != name {
                return Err(format!("<{open}> closed by </{name}>"));
            }
        } else if !VOID.contains(&name.as_str()) && !tag.ends_with('/') {
            seen.push(name.clone());
            stack.push(name);
        }
    }
    if stack.is_empty() { Ok(seen) } else { Err(format!("left open: {stack:?}")) }
}

fn store_with_two_topics() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    evlog(tmp.path(), &["append", "orders"], &"order\n".repeat(300));
    evlog(tmp.path(), &["append", "audit.log"], "a\n");
    tmp
}

#[test]
fn the_report_is_one_well_formed_page_naming_every_topic_and_group_without_scripts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    evlog(tmp.path(), &["append", "orders"], &"order\n".repeat(300));
    evlog(tmp.path(), &["append", "audit"], "a\n");
    evlog(tmp.path(), &["consume", "orders", "--group", "billing", "--max", "100"], "");
    let file = tmp.path().join("report.html");
    evlog(tmp.path(), &["report", "--html", file.to_str().expect("utf-8")], "");
    let html = std::fs::read_to_string(&file).expect("report");
    let elements = well_formed(&html).unwrap_or_else(|e| panic!("{e}\n{html}"));
    for needed in ["html", "head", "body", "table", "svg"] {
        assert!(elements.iter().any(|e| e == needed), "a <{needed}> element");
    }
    for name in ["orders", "audit", "billing"] {
        assert!(html.contains(name), "{name} is named");
    }
    assert!(html.contains("<td>200</td>"), "billing's lag of 200 records is shown");
    for outside in ["<script", "http://", "https://", "src="] {
        let fetches = html.replace("http://www.w3.org/2000/svg", "");
        assert!(!fetches.contains(outside), "nothing fetched or run: {outside}");
    }
}

#[test]
fn the_report_renders_in_headless_chromium() {
    if std::env::var("EVLOG_CLIENT_TESTS").map_or(true, |v| v != "1") {
        eprintln!("report: the Chromium part is skipped (set EVLOG_CLIENT_TESTS=1 with chromium installed)");
        return;
    }
    let tmp = store_with_two_topics();
    let file = tmp.path().join("report.html");
    evlog(tmp.path(), &["report", "--html", file.to_str().expect("utf-8")], "");
    let shot = tmp.path().join("report.png");
    let status = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", tmp.path().join("chromium").display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1000,800")
        .arg(format!("file://{}", file.display()))
        .status()
        .expect("chromium");
    assert!(status.success());
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 5_000, "a rendered page, {} bytes", png.len());
    let html = std::fs::read_to_string(&file).expect("report");
    assert!(html.contains("audit.log") && html.contains("orders"));
}

/// Beside a holder that does not serve, the report takes the rates, fsyncs and recovery figures
/// from its stats file.
#[test]
fn the_report_shows_the_holders_rates_fsync_histogram_and_recovery_from_its_stats_file() {
    use evlog::{ConsumerOptions, Durability, Options, Store, StoreOptions};
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut opts = StoreOptions::with_log(Options::with_durability(Durability::Always));
    opts.stats_interval = None;
    let store = Store::open(tmp.path(), opts).expect("store");
    let orders = store.topic("orders").expect("topic");
    orders.append(b"first").expect("append");
    let mut billing = store.consumer("billing", "orders", ConsumerOptions::default()).expect("consumer");
    billing.poll(1, std::time::Duration::ZERO).expect("poll");
    billing.commit().expect("commit");
    store.write_stats_file().expect("the first sample");
    for i in 0..300 {
        orders.append(format!("order {i}").as_bytes()).expect("append");
    }
    // The holder samples its history every 60th write: the 61st write takes the second sample.
    for _ in 0..60 {
        store.write_stats_file().expect("stats file");
    }
    let file = tmp.path().join("report.html");
    evlog(tmp.path(), &["report", "--html", file.to_str().expect("utf-8")], "");
    let html = std::fs::read_to_string(&file).expect("report");
    well_formed(&html).unwrap_or_else(|e| panic!("{e}\n{html}"));
    for needed in [
        "The holder's stats file was written",
        "Appends λ per minute, last hour",
        "Group billing commits μ",
        "fsyncs on the append path: ",
        "Recovery when the holder opened it",
        "Groups (the holder's stats file)",
    ] {
        assert!(html.contains(needed), "{needed}\n{html}");
    }
    assert!(html.contains("<td>billing</td><td>1</td><td>300</td>"), "billing's lag from the stats file\n{html}");
    let fsyncs = orders.stats().fsyncs;
    assert!(html.contains(&format!("fsyncs on the append path: {fsyncs} (")), "the holder's fsync count");
}

/// The layout part: which sealed segments are compressed, and what a repair quarantined.
#[test]
fn the_report_says_which_segments_are_compressed_and_what_is_quarantined() {
    use evlog::{Durability, Options, Store, StoreOptions};
    let tmp = tempfile::tempdir().expect("tempdir");
    {
        let mut log = Options::with_durability(Durability::Os);
        log.segment_bytes_max = 64 << 10;
        log.record_bytes_max = 4096;
        let store = Store::open(tmp.path(), StoreOptions::with_log(log)).expect("store");
        let orders = store.topic("orders").expect("topic");
        for i in 0..3000 {
            orders.append(format!("order {i} {}", "x".repeat(60)).as_bytes()).expect("append");
        }
        assert!(orders.segment_count() > 2, "several segments");
        store.compress_topic("orders").expect("compress");
    }
    let quarantine = tmp.path().join("topics").join("orders").join("quarantine");
    std::fs::create_dir_all(&quarantine).expect("mkdir");
    std::fs::write(quarantine.join("00000000000000000000.log.after-4096"), b"torn").expect("a quarantined file");
    let file = tmp.path().join("report.html");
    evlog(tmp.path(), &["report", "--html", file.to_str().expect("utf-8")], "");
    let html = std::fs::read_to_string(&file).expect("report");
    well_formed(&html).unwrap_or_else(|e| panic!("{e}\n{html}"));
    let sealed = html.split("<h3>Sealed segments (").nth(1).expect("the segments' heading");
    let compressed: usize =
        sealed.split("; ").nth(1).and_then(|s| s.split(' ').next()).and_then(|n| n.parse().ok()).expect("a count");
    assert!(compressed > 0, "compressed segments are counted: {sealed:.80}");
    assert!(html.contains("LZ4-compressed"), "a segment's hover says it is compressed");
    assert!(html.contains("Quarantine (1 files a repair moved aside): 00000000000000000000.log.after-4096"), "{html}");
}
