//! `evlog serve` with real, independent Kafka clients: kcat and confluent-kafka for Python
//! (both librdkafka), and kafkajs (a separate implementation in JavaScript). They run when
//! `EVLOG_CLIENT_TESTS=1`, as `.ci/run` sets after installing them (a missing client then
//! fails the test); without it each test says so and passes, so `cargo test` works on a
//! machine without them. kafkajs is looked for under `EVLOG_NODE_PATH` (a `node_modules`).

mod common;

use evlog::{Store, StoreOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;

use std::process::{Command, Stdio};

fn enabled(test: &str) -> bool {
    let on = std::env::var("EVLOG_CLIENT_TESTS").is_ok_and(|v| v == "1");
    if !on {
        eprintln!(
            "{test}: skipped (set EVLOG_CLIENT_TESTS=1 with kcat, python3 confluent-kafka and kafkajs installed)"
        );
    }
    on
}

/// Runs the client `command` makes for a fresh `evlog serve`'s address; it must print `ok` last.
fn against_a_server(test: &str, command: impl FnOnce(SocketAddr) -> Command) {
    if !enabled(test) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut server, addr) = common::evlog_serve(tmp.path(), None);
    run_ok(&mut command(addr));
    server.kill().expect("kill");
}

fn script(name: &str) -> String {
    format!("{}/tests/clients/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs a client that prints `ok` last; fails with its output otherwise.
fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "{cmd:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn kcat_produces_and_consumes_keys_and_values() {
    if !enabled("kcat") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut server, addr) = common::evlog_serve(tmp.path(), None);
    let mut producer = Command::new("kcat")
        .args(["-P", "-b", &addr.to_string(), "-t", "lines", "-K:"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("kcat (install it: apt-get install kcat)");
    let lines: String = (0..100).map(|i| format!("k{i}:value {i}\n")).collect();
    producer.stdin.take().expect("stdin").write_all(lines.as_bytes()).expect("write");
    assert!(producer.wait().expect("kcat").success());
    let out = Command::new("kcat")
        .args(["-C", "-b", &addr.to_string(), "-t", "lines", "-o", "beginning", "-e", "-f", "%o %k %s\\n"])
        .output()
        .expect("kcat");
    let got: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    let want: Vec<String> = (0..100).map(|i| format!("{i} k{i} value {i}")).collect();
    assert_eq!(got, want);
    server.kill().expect("kill");
}

#[test]
fn confluent_kafka_for_python_produces_in_every_compression_and_consumes_byte_for_byte() {
    against_a_server("confluent-kafka", |addr| {
        let mut cmd = Command::new("python3");
        cmd.arg(script("produce_consume.py")).arg(addr.to_string()).arg("py");
        cmd
    });
}

#[test]
fn a_python_consumer_group_of_two_members_rebalances_without_losing_or_repeating_a_commit() {
    against_a_server("confluent-kafka group", |addr| {
        let mut cmd = Command::new("python3");
        cmd.arg(script("group.py")).arg(addr.to_string()).arg("jobs");
        cmd
    });
}

#[test]
fn kafkajs_creates_produces_and_consumes_as_a_group() {
    against_a_server("kafkajs", |addr| {
        let mut cmd = Command::new("node");
        if let Some(p) = std::env::var_os("EVLOG_NODE_PATH") {
            cmd.env("NODE_PATH", p);
        }
        cmd.arg(script("kafkajs.js")).arg(addr.to_string()).arg("orders");
        cmd
    });
}

#[test]
fn an_idempotent_python_producer_across_a_sigkill_and_restart_of_the_server_leaves_every_record_once() {
    if !enabled("acks=all across SIGKILL") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut server, addr) = common::evlog_serve(tmp.path(), None);
    let n = 5_000usize;
    let mut producer = Command::new("python3")
        .arg(script("acked.py"))
        .arg(addr.to_string())
        .arg("acked")
        .arg(n.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut lines = BufReader::new(producer.stdout.take().expect("stdout")).lines();
    let mut acked = Vec::new();
    while acked.len() < n / 3 {
        acked.push(lines.next().expect("the producer stopped early").expect("line"));
    }
    server.kill().expect("SIGKILL"); // mid-stream: more records are in flight
    server.wait().expect("wait");
    let (mut server, _) = common::evlog_serve(tmp.path(), Some(addr));
    acked.extend(lines.map_while(Result::ok)); // the rest, acknowledged by the restarted server
    assert!(producer.wait().expect("python3").success(), "the producer did not finish");
    assert_eq!(acked.pop().as_deref(), Some("ok"));
    server.kill().expect("kill");
    server.wait().expect("wait");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("reopen");
    let t = store.topic("acked").expect("topic");
    for line in &acked {
        let (offset, value) = line.split_once(' ').expect("offset value");
        let r = t
            .read(offset.parse().expect("offset"))
            .expect("read")
            .unwrap_or_else(|| panic!("acknowledged {line} lost"));
        assert_eq!(r.payload(), value.as_bytes(), "at offset {offset}");
    }
    let values: Vec<Vec<u8>> = t.iter(0).map(|r| r.expect("record").payload().to_vec()).collect();
    let mut distinct = values.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!((values.len(), distinct.len()), (n, n), "every record once: no duplicate, none lost");
}

#[test]
fn a_server_with_users_beyond_loopback_takes_a_scram_client_with_its_password_and_refuses_a_wrong_one() {
    if !enabled("scram") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let users = tmp.path().join("users");
    std::fs::write(&users, "alice:correct horse\nbob:battery staple\n").expect("users");
    std::fs::set_permissions(&users, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    // Every address (0.0.0.0): allowed because users are set; reached here over loopback.
    let mut server = Command::new(env!("CARGO_BIN_EXE_evlog"))
        .arg("--dir")
        .arg(tmp.path().join("data"))
        .args(["serve", "--listen", &format!("0.0.0.0:{port}"), "--users"])
        .arg(&users)
        .stderr(Stdio::null())
        .spawn()
        .expect("evlog serve");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(std::time::Instant::now() < deadline, "evlog serve did not listen");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    run_ok(Command::new("python3").args([&script("scram.py"), &addr.to_string(), "alice", "correct horse", "secured"]));
    server.kill().expect("kill");
    server.wait().expect("wait");
    let store = Store::open(tmp.path().join("data"), StoreOptions::default()).expect("store");
    let values: Vec<Vec<u8>> =
        store.topic("secured").expect("topic").iter(0).map(|r| r.expect("record").payload().to_vec()).collect();
    assert_eq!(
        values,
        (0..5).map(|i| format!("v{i}").into_bytes()).collect::<Vec<_>>(),
        "the intruder's record is not there"
    );
}
