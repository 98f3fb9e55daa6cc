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
