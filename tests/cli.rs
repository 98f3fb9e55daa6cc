//! The `evlog` binary, end to end.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn evlog(dir: &Path, args: &[&str], stdin: &str) -> Output {
    evlog_bytes(dir, args, stdin.as_bytes())
}

fn evlog_bytes(dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_evlog"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn evlog");
    // A command that stops reading early (a full topic) closes its stdin: not a failure here.
    if let Err(e) = child.stdin.take().expect("stdin").write_all(stdin) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
    }
    child.wait_with_output().expect("evlog output")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    stdout(o).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

#[test]
fn append_then_dump_tail_and_consume_as_json_lines() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let o = evlog(tmp.path(), &["append", "orders", "--key", "k1"], "first\nsecond\nthird\n");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "0\n1\n2\n", "each offset printed once durable");
    let d = json_lines(&evlog(tmp.path(), &["dump", "orders"], ""));
    assert_eq!(d.len(), 3);
    assert_eq!(d[1]["value"], "second");
    assert_eq!(d[1]["key"], "k1");
    assert_eq!(d[1]["offset"], 1);
    let t = json_lines(&evlog(tmp.path(), &["tail", "orders", "-n", "1"], ""));
    assert_eq!(t.len(), 1);
    assert_eq!(t[0]["value"], "third");
    let c = json_lines(&evlog(tmp.path(), &["consume", "orders", "--group", "g", "--max", "2"], ""));
    assert_eq!(c.iter().map(|v| v["offset"].as_u64().unwrap_or(99)).collect::<Vec<_>>(), vec![0, 1]);
    let c = json_lines(&evlog(tmp.path(), &["consume", "orders", "--group", "g"], ""));
    assert_eq!(c.len(), 1, "the group resumes after its commit");
    let g = json_lines(&evlog(tmp.path(), &["groups", "list"], ""));
    assert_eq!(
        (g[0]["group"].as_str(), g[0]["committed"].as_u64(), g[0]["lag"].as_u64()),
        (Some("g"), Some(3), Some(0))
    );
}

#[test]
fn json_append_accepts_rfc3339_and_reports_bad_lines_by_number() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = concat!(
        "{\"timestamp\": \"2026-11-22T07:30:00Z\", \"key\": \"a\", \"headers\": {\"unit\": \"C\"}, \"value\": {\"n\": 1}}\n",
        "not json\n",
        "{\"timestamp\": 5, \"value\": \"plain\"}\n",
    );
    let o = evlog(tmp.path(), &["append", "t", "--json", "--on-error", "skip"], input);
    assert_eq!(o.status.code(), Some(1), "a bad line makes the exit code 1");
    assert_eq!(stdout(&o), "0\n1\n");
    assert!(stderr(&o).contains("line 2"), "{}", stderr(&o));
    let d = json_lines(&evlog(tmp.path(), &["dump", "t"], ""));
    assert_eq!(d[0]["timestamp"], 1_795_332_600_000i64);
    assert_eq!(d[0]["value"], "{\"n\":1}");
    assert_eq!(d[0]["headers"]["unit"], "C");
    assert!(d[1].get("headers").is_none(), "no headers, no field");
    assert_eq!(d[1]["timestamp"], 5);
    // --on-error stop: nothing after the bad line.
    let o = evlog(tmp.path(), &["append", "t", "--json"], "{\"value\": 1}\n{oops\n{\"value\": 2}\n");
    assert_eq!(stdout(&o), "2\n");
    // Replay in timestamp order: 5 first.
    let r = json_lines(&evlog(tmp.path(), &["replay", "t"], ""));
    assert_eq!(r[0]["timestamp"], 5);
}

#[test]
fn verify_finds_corruption_and_repair_moves_it_aside() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let lines: String = (0..5000).map(|i| format!("event number {i} with some padding to fill segments\n")).collect();
    let o = evlog(tmp.path(), &["append", "t", "--sync", "os"], &lines);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = evlog(tmp.path(), &["verify"], "");
    assert!(v.status.success(), "{}{}", stdout(&v), stderr(&v));
    assert!(stdout(&v).contains("5000 records"));
    // Flip a byte in the middle of the first segment.
    let seg = tmp.path().join("topics/t").join(evlog::format::segment_file_name(0));
    let mut bytes = std::fs::read(&seg).expect("segment");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5A;
    std::fs::write(&seg, &bytes).expect("write");
    let v = evlog(tmp.path(), &["verify", "t"], "");
    assert_eq!(v.status.code(), Some(1));
    assert!(stdout(&v).contains("corrupt: topic t segment 0") && stdout(&v).contains("at byte"), "{}", stdout(&v));
    assert!(evlog(tmp.path(), &["repair"], "").status.code() == Some(2), "repair wants --yes");
    let r = evlog(tmp.path(), &["repair", "--yes"], "");
    assert!(r.status.success(), "{}{}", stdout(&r), stderr(&r));
    assert!(stdout(&r).contains("quarantine"), "{}", stdout(&r));
    let v = evlog(tmp.path(), &["verify"], "");
    assert!(v.status.success(), "{}", stdout(&v));
    let q = tmp.path().join("topics/t/quarantine");
    assert!(std::fs::read_dir(&q).expect("quarantine").count() >= 1, "nothing deleted: moved aside");
}

#[test]
fn read_commands_work_beside_a_running_writer_and_others_say_it_is_in_use() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = evlog::Store::open(tmp.path(), evlog::StoreOptions::default()).expect("store");
    let t = store.topic("live").expect("topic");
    t.append(b"hello").expect("append");
    let d = json_lines(&evlog(tmp.path(), &["dump", "live"], ""));
    assert_eq!(d[0]["value"], "hello");
    let i = evlog(tmp.path(), &["info", "--json"], "");
    assert!(i.status.success(), "{}", stderr(&i));
    assert!(stdout(&i).contains("in use"), "groups are unavailable while the store is held: {}", stdout(&i));
    assert!(evlog(tmp.path(), &["verify"], "").status.success());
    let c = evlog(tmp.path(), &["consume", "live", "--group", "g"], "");
    assert_eq!(c.status.code(), Some(2));
    assert!(stderr(&c).contains("in use by another process"), "{}", stderr(&c));
    assert!(stderr(&c).contains(&format!("pid {}", std::process::id())), "names the holder: {}", stderr(&c));
    assert_eq!(stderr(&c).lines().count(), 1, "one clear line");
}

#[test]
fn info_names_the_real_reason_groups_are_unavailable_not_in_use() {
    // The consumer database cannot be opened, and no other process holds the store: `info`
    // still shows the topics and says why the groups are missing (it used to say "in use").
    let tmp = tempfile::tempdir().expect("tempdir");
    assert!(evlog(tmp.path(), &["append", "t"], "one\n").status.success());
    let consumers = tmp.path().join("consumers");
    std::fs::remove_dir_all(&consumers).expect("remove consumers/");
    std::fs::write(&consumers, b"not a directory").expect("a file in its place");
    let i = evlog(tmp.path(), &["info", "--json"], "");
    assert!(i.status.success(), "{}", stderr(&i));
    let groups = json_lines(&i)[0][0]["groups"].as_str().expect("a reason").to_string();
    assert!(groups.starts_with("unavailable: ") && !groups.contains("in use"), "{groups}");
    assert_eq!(json_lines(&i)[0][0]["next_offset"], 1);
}

#[test]
fn errors_are_one_line_and_never_a_panic() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for args in [&["dump", "missing"][..], &["dump", "../escape"], &["groups", "delete", "t", "g"], &["replay", "nope"]]
    {
        let o = evlog(tmp.path(), args, "");
        assert!(!o.status.success(), "{args:?}");
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("evlog: ") && !err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn the_demo_runs_and_reports_no_loss() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let o = evlog(tmp.path(), &["demo"], "");
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("lost 0, duplicated 0, replay ordered yes"), "{out}");
}

#[test]
fn info_shows_group_lag_in_records_and_seconds_and_an_append_rate_when_asked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = "{\"timestamp\": 1000, \"value\": 1}\n{\"timestamp\": 2000, \"value\": 2}\n{\"timestamp\": 3000, \"value\": 3}\n";
    assert!(evlog(tmp.path(), &["append", "t", "--json"], input).status.success());
    assert!(evlog(tmp.path(), &["consume", "t", "--group", "g", "--max", "1"], "").status.success());
    let i = json_lines(&evlog(tmp.path(), &["info", "--json", "--rate", "0.05"], ""));
    let g = &i[0][0]["groups"][0];
    assert_eq!((g["committed"].as_u64(), g["lag"].as_u64()), (Some(1), Some(2)));
    assert!(g["lag_seconds"].as_f64().expect("seconds") > 1.0e6, "offset 1 is from 1970: {g}");
    assert_eq!(i[0][0]["append_rate"].as_f64(), Some(0.0), "nobody appends while info watches");
    let plain = evlog(tmp.path(), &["info"], "");
    assert!(stdout(&plain).contains("lag 2 records"), "{}", stdout(&plain));
}

#[test]
fn a_line_that_is_not_utf8_is_named_and_points_to_value_base64_and_binary_round_trips() {
    // Plain append reads text lines. A line with invalid UTF-8 used to end the whole input with
    // "stream did not contain valid UTF-8"; now that line is reported by number with the way to
    // append binary data, and the other lines go in.
    let tmp = tempfile::tempdir().expect("tempdir");
    let o = evlog_bytes(tmp.path(), &["append", "t", "--on-error", "skip"], b"first\nbad \xff\xfe here\nthird\n");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("line 2") && err.contains("not UTF-8") && err.contains("value_base64"), "{err}");
    assert_eq!(stdout(&o), "0\n1\n", "the other lines were appended");
    // The way it points to works, and what dump prints appends back to the same bytes.
    let o = evlog(
        tmp.path(),
        &["append", "t", "--json"],
        "{\"value_base64\": \"YmFkIP/+IGhlcmU=\", \"headers\": {\"h\": {\"base64\": \"AP8=\"}}}\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let dumped = json_lines(&evlog(tmp.path(), &["dump", "t"], ""));
    assert_eq!(dumped[2]["value_base64"], "YmFkIP/+IGhlcmU=", "{dumped:?}");
    assert_eq!(dumped[2]["headers"]["h"]["base64"], "AP8=", "{dumped:?}");
    let again = evlog(tmp.path(), &["append", "t", "--json"], &format!("{}\n", dumped[2]));
    assert!(again.status.success(), "{}", stderr(&again));
    let dumped = json_lines(&evlog(tmp.path(), &["dump", "t"], ""));
    assert_eq!(dumped[3]["value_base64"], dumped[2]["value_base64"]);
}

#[test]
fn config_shows_and_changes_a_topics_budget_and_info_reports_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    assert!(evlog(tmp.path(), &["append", "metrics"], "one\n").status.success());
    let c = json_lines(&evlog(tmp.path(), &["config", "metrics"], ""));
    assert_eq!((c[0]["bytes_max"].is_null(), c[0]["when_full"].as_str()), (true, Some("error")));
    let args = ["config", "metrics", "--bytes-max", "10MiB", "--when-full", "drop-oldest", "--retention-age", "7d"];
    let o = evlog(tmp.path(), &args, "");
    assert!(o.status.success(), "{}", stderr(&o));
    for o in [o, evlog(tmp.path(), &["config", "metrics"], "")] {
        let c = json_lines(&o);
        assert_eq!(c[0]["bytes_max"].as_u64(), Some(10 << 20));
        assert_eq!(c[0]["when_full"].as_str(), Some("drop-oldest"));
        assert_eq!(c[0]["retention_age_ms"].as_u64(), Some(7 * 86_400_000));
    }
    let info = json_lines(&evlog(tmp.path(), &["info", "--json"], ""));
    assert_eq!(info[0][0]["config"]["bytes_max"].as_u64(), Some(10 << 20));
    let o = evlog(tmp.path(), &["config", "metrics", "--no-bytes-max"], "");
    assert!(json_lines(&o)[0]["bytes_max"].is_null(), "{}", stderr(&o));
}

#[test]
fn config_refuses_bad_values_naming_the_flag() {
    let tmp = tempfile::tempdir().expect("tempdir");
    assert!(evlog(tmp.path(), &["append", "t"], "one\n").status.success());
    for (args, flag) in [
        (&["config", "t", "--bytes-max", "0"][..], "--bytes-max"),
        (&["config", "t", "--bytes-max=-5MiB"][..], "--bytes-max"),
        (&["config", "t", "--bytes-max", "100KiB"][..], "--bytes-max"),
        (&["config", "t", "--when-full", "sometimes"][..], "--when-full"),
        (&["config", "t", "--retention-age", "forever"][..], "--retention-age"),
        (&["config", "t", "--block-timeout", "soon"][..], "--block-timeout"),
        (&["config", "t", "--compression", "zstd"][..], "--compression"),
        (&["config", "t", "--compression", "brotli"][..], "--compression"),
    ] {
        let o = evlog(tmp.path(), args, "");
        assert!(!o.status.success(), "{args:?} succeeded");
        let err = stderr(&o);
        assert!(err.contains(flag) && err.trim().lines().count() == 1, "{args:?}: {err}");
    }
    let c = json_lines(&evlog(tmp.path(), &["config", "t"], ""));
    assert!(c[0]["bytes_max"].is_null(), "nothing was changed");
}

#[test]
fn bad_times_and_durations_are_refused_by_the_argument_parser_naming_the_flag() {
    // Times, durations, sizes and policies are parsed with the arguments: a bad one is one line
    // naming its flag, exit code 2, before anything is opened.
    let tmp = tempfile::tempdir().expect("tempdir");
    assert!(evlog(tmp.path(), &["append", "t"], "one\n").status.success());
    for (args, flag) in [
        (&["dump", "t", "--from-time", "yesterday"][..], "--from-time"),
        (&["dump", "t", "--to-time", "2026-13-01T00:00:00Z"][..], "--to-time"),
        (&["replay", "t", "--max-lateness", "a while"][..], "--max-lateness"),
        (&["replay", "t", "--from", "then"][..], "--from"),
        (&["groups", "reset", "t", "g", "--to-time", "later"][..], "--to-time"),
        (&["config", "t", "--retention-age", "0s"][..], "--retention-age"),
    ] {
        let o = evlog(tmp.path(), args, "");
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = stderr(&o);
        assert!(err.contains(flag) && err.trim().lines().count() == 1, "{args:?}: {err}");
    }
    // Good values still work.
    let o = evlog(tmp.path(), &["dump", "t", "--from-time", "1970-01-01T00:00:00Z", "--to-time", "4102444800000"], "");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json_lines(&o).len(), 1);
}

#[test]
fn append_to_a_full_topic_stops_with_topic_full_and_every_printed_offset_is_readable() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let o = evlog(tmp.path(), &["config", "t", "--bytes-max", "1MiB"], "");
    assert!(o.status.success(), "configuring a new topic creates it: {}", stderr(&o));
    let line = "x".repeat(1000);
    let input: String = (0..2_000).map(|_| format!("{line}\n")).collect();
    let o = evlog(tmp.path(), &["append", "t", "--sync", "os", "--on-error", "skip"], &input);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("is full") && err.contains("1048576"), "{err}");
    let printed: Vec<u64> = stdout(&o).lines().map(|l| l.parse().expect("an offset")).collect();
    assert!(printed.len() > 500 && printed.len() < 1100, "{} appended", printed.len());
    let dumped: Vec<u64> = json_lines(&evlog(tmp.path(), &["dump", "t"], ""))
        .iter()
        .map(|v| v["offset"].as_u64().expect("offset"))
        .collect();
    assert!(printed.iter().all(|o| dumped.contains(o)), "every printed offset reads back");
}

#[test]
fn a_reader_that_closes_stdout_early_ends_the_command_quietly() {
    // `evlog dump t | head -1`: the pipe closes after one line; evlog ends without an error.
    let tmp = tempfile::tempdir().expect("tempdir");
    // Enough for dump to fill the pipe (over 64 KiB), few enough for append to answer through it.
    let input: String = (0..1_000).map(|i| format!("record {i} {}\n", "x".repeat(200))).collect();
    assert!(evlog(tmp.path(), &["append", "t"], &input).status.success());
    let mut child = Command::new(env!("CARGO_BIN_EXE_evlog"))
        .arg("--dir")
        .arg(tmp.path())
        .args(["dump", "t"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn evlog");
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut first).expect("a line");
    // The reader (and with it the pipe) is gone now.
    let out = child.wait_with_output().expect("wait");
    assert!(first.contains("record 0"), "{first}");
    assert_eq!(stderr(&out), "", "nothing said about the closed pipe");
    assert!(out.status.success(), "{:?}", out.status);
}

#[test]
fn compact_seals_the_active_segment_and_compacts_records_that_never_left_it() {
    // Issue 26, item 5: every record sat in the active segment and `compact` did nothing.
    let tmp = tempfile::tempdir().expect("tempdir");
    let input: String = (0..1_000).map(|i| format!("{{\"key\":\"k{}\",\"value\":\"{i}\"}}\n", i % 10)).collect();
    let o = evlog(tmp.path(), &["append", "t", "--json", "--sync", "os"], &input);
    assert!(o.status.success(), "{}", stderr(&o));
    let c = json_lines(&evlog(tmp.path(), &["compact", "t"], ""));
    assert_eq!(c[0]["records_before"], 1_000, "{c:?}");
    assert_eq!(c[0]["records_after"], 10, "{c:?}");
    assert_eq!(c[0]["compacted_below"], 1_000, "{c:?}");
    assert_eq!(json_lines(&evlog(tmp.path(), &["dump", "t"], "")).len(), 10);
}

#[test]
fn compact_keeps_the_newest_record_of_each_key_and_reports_bytes_before_and_after() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // A budget shrinks segments to a quarter of it: 1 MiB segments, so compaction has sealed ones.
    let o = evlog(
        tmp.path(),
        &["config", "t", "--bytes-max", "4MiB", "--compact-by-key", "--tombstone-retention", "1h"],
        "",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json_lines(&o)[0]["compact_by_key"], true);
    let filler = "y".repeat(900);
    let input: String =
        (0..2_500).map(|i| format!("{{\"key\":\"k{}\",\"value\":\"{i} {filler}\"}}\n", i % 10)).collect();
    let o = evlog(tmp.path(), &["append", "t", "--json", "--sync", "os"], &input);
    assert!(o.status.success(), "{}", stderr(&o));
    let c = json_lines(&evlog(tmp.path(), &["compact", "t"], ""));
    let (before, after) =
        (c[0]["bytes_before"].as_u64().expect("before"), c[0]["bytes_after"].as_u64().expect("after"));
    assert!(after < before / 10, "{c:?}");
    let dumped = json_lines(&evlog(tmp.path(), &["dump", "t"], ""));
    let mut newest = std::collections::HashMap::new();
    for d in &dumped {
        newest.insert(d["key"].as_str().expect("key").to_string(), d["offset"].as_u64().expect("offset"));
    }
    assert_eq!(newest.len(), 10);
    assert!(newest.values().all(|&o| o >= 2_490), "the newest of each key is kept: {newest:?}");
    let v = evlog(tmp.path(), &["verify"], "");
    assert!(v.status.success(), "{}", stdout(&v));
    // Compression: configured, then run now; the same records read back.
    let o = evlog(tmp.path(), &["config", "t", "--compression", "lz4"], "");
    assert_eq!(json_lines(&o)[0]["compression"], "lz4", "{}", stderr(&o));
    let c = json_lines(&evlog(tmp.path(), &["compress", "t"], ""));
    assert!(c[0]["segments_compressed"].as_u64().expect("n") >= 1, "{c:?}");
    assert_eq!(json_lines(&evlog(tmp.path(), &["dump", "t"], "")), dumped);
}

#[test]
fn backup_writes_a_copy_that_dumps_like_the_original_and_refuses_a_non_empty_destination() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (src, dest) = (tmp.path().join("live"), tmp.path().join("copy"));
    assert!(evlog(&src, &["append", "t"], "one\ntwo\nthree\n").status.success());
    assert!(evlog(&src, &["consume", "t", "--group", "g", "--max", "2"], "").status.success());
    let o = evlog(&src, &["backup", dest.to_str().expect("utf-8")], "");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json_lines(&o)[0]["topics"], 1);
    assert_eq!(stdout(&evlog(&dest, &["dump", "t"], "")), stdout(&evlog(&src, &["dump", "t"], "")));
    assert_eq!(json_lines(&evlog(&dest, &["groups", "list"], ""))[0]["committed"], 2);
    let again = evlog(&src, &["backup", dest.to_str().expect("utf-8")], "");
    assert!(!again.status.success() && stderr(&again).contains("not empty"), "{}", stderr(&again));
}

#[test]
fn info_counts_a_queues_scheduled_jobs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    {
        let store = evlog::Store::open(tmp.path(), evlog::StoreOptions::default()).expect("store");
        let q = store.queue("workers", "jobs", evlog::QueueOptions::default()).expect("queue");
        let later = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis()
            as i64
            + 3_600_000;
        for _ in 0..3 {
            q.push_at(&evlog::NewRecord::new(b"later"), later).expect("push");
        }
        assert!(q.try_lease().expect("lease").is_none(), "parks them");
    }
    let info = json_lines(&evlog(tmp.path(), &["info", "--json"], ""));
    let queues = &info[0][0]["queues"];
    assert_eq!((queues[0]["group"].as_str(), queues[0]["scheduled"].as_u64()), (Some("workers"), Some(3)), "{info:?}");
}
