//! Helpers shared by the test crates. Each file in `tests/` is a crate of its own; `mod common;`
//! pulls these in, and each crate uses some of them.
#![allow(dead_code)]

use evlog::{Durability, Options, Store, StoreOptions};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Log options with small limits, so that a few records roll segments.
pub fn small_log(durability: Durability, segment_bytes_max: u64, record_bytes_max: u64) -> Options {
    let mut o = Options::with_durability(durability);
    o.segment_bytes_max = segment_bytes_max;
    o.record_bytes_max = record_bytes_max;
    o
}

/// The store at `root`, its topics' logs opened with `log`.
pub fn store_with(root: &Path, log: Options) -> Store {
    Store::open(root, StoreOptions::with_log(log)).expect("open store")
}

/// Appends `n` records to `topic`, the i-th one's payload made by `payload(i)`.
pub fn fill(store: &Store, topic: &str, n: u64, payload: impl Fn(u64) -> String) {
    let t = store.topic(topic).expect("topic");
    for i in 0..n {
        t.append(payload(i).as_bytes()).expect("append");
    }
}

/// Runs this test binary again as a child process that runs only the test `test` (which sees
/// `env` and acts as the child), its stdout piped to the caller: the kill loops' way to get a
/// process they can SIGKILL.
pub fn spawn_child(test: &str, env: &[(&str, &std::ffi::OsStr)]) -> Child {
    let mut c = Command::new(std::env::current_exe().expect("the test binary"));
    c.args(["--exact", test, "--nocapture", "--test-threads=1"]).stdout(Stdio::piped()).stderr(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().expect("spawn the child")
}

/// This process's resident file-backed pages (`RssFile` in /proc/self/status), in bytes.
pub fn rss_file_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("RssFile:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssFile");
    kib << 10
}

/// `evlog serve` over `dir` on `addr` (a free loopback port when `None`), once it listens: the
/// child and its address.
pub fn evlog_serve(dir: &Path, addr: Option<std::net::SocketAddr>) -> (Child, std::net::SocketAddr) {
    let addr = addr.unwrap_or_else(|| {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
        std::net::SocketAddr::from(([127, 0, 0, 1], port))
    });
    let child = Command::new(env!("CARGO_BIN_EXE_evlog"))
        .args(["serve", "--dir"])
        .arg(dir)
        .args(["--listen", &addr.to_string()])
        .stderr(Stdio::null())
        .spawn()
        .expect("evlog serve");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(std::time::Instant::now() < deadline, "evlog serve did not listen on {addr}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    (child, addr)
}
