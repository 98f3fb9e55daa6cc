//! `evlog top` driven in tmux (send-keys, capture-pane) against a store that `evlog serve` holds
//! while another process appends and a group consumes, and against a store held (not served)
//! by the test itself, seen through its stats file. Runs when `EVLOG_CLIENT_TESTS=1` (as
//! `.ci/run` sets after installing tmux); otherwise it says so and passes.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux").args(args).output().expect("tmux");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Captures the pane until `done` holds for what it shows; fails after 20 s with the last screen.
fn screen_until(session: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let screen = tmux(&["capture-pane", "-p", "-t", session]);
        if done(&screen) {
            return screen;
        }
        assert!(Instant::now() < deadline, "the screen never showed {what}:\n{screen}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn evlog(dir: &std::path::Path, args: &[&str], stdin: &str) {
    use std::io::Write;
    let mut p = Command::new(env!("CARGO_BIN_EXE_evlog"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("evlog");
    p.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("stdin");
    assert!(p.wait().expect("evlog").success(), "evlog {args:?}");
}

/// Whether the `orders` row shows a rate above zero.
fn orders_moving(screen: &str) -> bool {
    screen
        .lines()
        .any(|l| l.contains("orders") && l.split_whitespace().any(|w| w.ends_with("/s") && w != "0/s" && w != "…"))
}

#[test]
fn top_shows_a_live_rate_and_a_groups_lag_and_answers_sort_filter_detail_and_quit() {
    if std::env::var("EVLOG_CLIENT_TESTS").map_or(true, |v| v != "1") {
        eprintln!("top: skipped (set EVLOG_CLIENT_TESTS=1 with tmux installed)");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    let (mut server, _addr) = common::evlog_serve(&dir, None);
    evlog(&dir, &["append", "audit"], "a\nb\n");
    evlog(&dir, &["append", "orders"], "1\n2\n3\n");
    evlog(&dir, &["consume", "orders", "--group", "billing"], "");
    // Another process appends all along.
    let stop = Arc::new(AtomicBool::new(false));
    let appender = {
        let (stop, dir) = (stop.clone(), dir.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                evlog(&dir, &["append", "orders"], &"x\n".repeat(20));
            }
        })
    };
    let session = format!("evlog-top-{}", std::process::id());
    let command = format!("{} --dir {} top", env!("CARGO_BIN_EXE_evlog"), dir.display());
    tmux(&["new-session", "-d", "-s", &session, "-x", "80", "-y", "24", &command]);

    let screen = screen_until(&session, "orders with a rate above zero", orders_moving);
    assert!(screen.contains("audit") && screen.contains("through evlog serve"), "{screen}");
    tmux(&["send-keys", "-t", &session, "s"]);
    screen_until(&session, "the sort by λ", |s| s.contains("sort: λ"));
    tmux(&["send-keys", "-t", &session, "/", "a", "u", "d", "Enter"]);
    screen_until(&session, "only audit", |s| s.contains("audit") && !s.contains("orders"));
    // A new filter, empty: every topic again; then the selected topic's groups.
    tmux(&["send-keys", "-t", &session, "/", "Enter", "s", "s"]);
    screen_until(&session, "both topics by name", |s| s.contains("orders") && s.contains("sort: name"));
    tmux(&["send-keys", "-t", &session, "Down", "Enter"]);
    let detail = screen_until(&session, "the groups of orders and the holder's fsyncs", |s| {
        s.contains("billing") && s.contains("W = L/λ") && s.contains("fsync p50 ≤")
    });
    assert!(detail.contains("orders: λ") && detail.contains("μ of all groups"), "{detail}");
    tmux(&["send-keys", "-t", &session, "q"]);
    wait_for_exit(&session);
    stop.store(true, Ordering::Relaxed);
    appender.join().expect("appender");
    server.kill().expect("kill");
    server.wait().expect("wait");
}

/// Waits (10 s at most) for the tmux session to end: `evlog top` quit.
fn wait_for_exit(session: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Command::new("tmux")
        .args(["has-session", "-t", session])
        .stderr(Stdio::null())
        .status()
        .expect("tmux")
        .success()
    {
        assert!(Instant::now() < deadline, "q did not end evlog top");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Without `evlog serve`, `top` reads the files read-only and the holder's stats file: the group
/// commits, fsyncs and work queues of a store held in this very process.
#[test]
fn top_beside_a_holder_that_does_not_serve_shows_its_groups_fsyncs_and_queues_from_the_stats_file() {
    if std::env::var("EVLOG_CLIENT_TESTS").map_or(true, |v| v != "1") {
        eprintln!("top: skipped (set EVLOG_CLIENT_TESTS=1 with tmux installed)");
        return;
    }
    use evlog::{ConsumerOptions, Durability, Options, QueueOptions, Store, StoreOptions};
    let tmp = tempfile::tempdir().expect("tempdir");
    let store =
        Store::open(tmp.path(), StoreOptions::with_log(Options::with_durability(Durability::Always))).expect("store");
    store
        .configure_topic("orders", evlog::TopicConfig::default().with_budget(64 << 20, evlog::log::WhenFull::Error))
        .expect("a budget");
    common::fill(&store, "orders", 10, |i| format!("order {i}"));
    let mut billing = store.consumer("billing", "orders", ConsumerOptions::default()).expect("consumer");
    billing.poll(4, Duration::ZERO).expect("poll");
    billing.commit().expect("commit");
    let q = store.queue("workers", "orders", QueueOptions::default()).expect("queue");
    let _job = q.try_lease().expect("lease").expect("a job");

    let session = format!("evlog-top-files-{}", std::process::id());
    let command = format!("{} --dir {} top", env!("CARGO_BIN_EXE_evlog"), tmp.path().display());
    tmux(&["new-session", "-d", "-s", &session, "-x", "80", "-y", "24", &command]);
    let screen = screen_until(&session, "orders read from the files", |s| s.contains("orders"));
    assert!(screen.contains("read-only: files + holder's stats file"), "{screen}");
    tmux(&["send-keys", "-t", &session, "Enter"]);
    let detail = screen_until(&session, "billing's lag, the fsyncs and the queue", |s| {
        s.contains("billing") && s.contains("fsync p50 ≤") && s.contains("workers") && s.contains("budget:")
    });
    assert!(detail.contains("of 64.0 MiB used, full never at this λ"), "{detail}");
    assert!(detail.contains("lag s") && detail.contains("redel/s") && detail.contains("expiring"), "{detail}");
    let billing_row = detail.lines().find(|l| l.contains("billing")).expect("billing's row");
    assert!(billing_row.split_whitespace().any(|w| w == "6"), "a lag of 6 records: {billing_row}");
    tmux(&["send-keys", "-t", &session, "q"]);
    wait_for_exit(&session);
}
