//! evlog beside its peers, same machine, same payloads. Prints a markdown table.
//!
//! `cargo run --release --manifest-path benches/compare/Cargo.toml [-- quick] [-- runs=N]`
//!
//! `runs=N` measures every system N times (each run in fresh directories, the systems in the
//! same order each time) and prints each cell's median, as issue 14's table was made ("medians
//! of 3"): on a shared host one run's figure moves by ±20%, for peers as much as for evlog.
//!
//! Every durable figure states what "durable" means for that system: a figure from a system that
//! does not fsync is not comparable to one that does.

use evlog::format::{FrameFields, decode_frame, encode_frame};
use rusqlite::Connection;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

struct Sizes {
    unsynced: u64,
    durable: u64,
    threads: u64,
}

fn rate(n: u64, start: Instant) -> f64 {
    n as f64 / start.elapsed().as_secs_f64()
}

fn fmt(r: Option<f64>) -> String {
    match r {
        None => "–".into(),
        Some(r) if r >= 1e6 => format!("{:.2} M", r / 1e6),
        Some(r) if r >= 1e3 => format!("{:.1} k", r / 1e3),
        Some(r) => format!("{r:.0}"),
    }
}

#[derive(Default)]
struct Row {
    name: &'static str,
    durability: &'static str,
    unsynced_100: Option<f64>,
    unsynced_1k: Option<f64>,
    durable_1: Option<f64>,
    durable_8: Option<f64>,
    read: Option<f64>,
    open_ms: Option<f64>,
    /// Records found after reopening a store whose writer was SIGKILLed, of those it appended.
    kept: Option<(u64, u64)>,
}

/// Each cell's median over runs of one system (the lower middle for an even count); for
/// "kept after kill -9", the fewest kept.
fn median_row(mut runs: Vec<Row>) -> Row {
    let median = |cell: fn(&Row) -> Option<f64>| {
        let mut v: Vec<f64> = runs.iter().filter_map(cell).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len().saturating_sub(1) / 2).copied()
    };
    let kept = runs.iter().filter_map(|r| r.kept).min_by_key(|&(k, _)| k);
    let (unsynced_100, unsynced_1k) = (median(|r| r.unsynced_100), median(|r| r.unsynced_1k));
    let (durable_1, durable_8) = (median(|r| r.durable_1), median(|r| r.durable_8));
    let (read, open_ms) = (median(|r| r.read), median(|r| r.open_ms));
    let first = runs.swap_remove(0);
    Row { unsynced_100, unsynced_1k, durable_1, durable_8, read, open_ms, kept, ..first }
}

fn frame(offset: u64, payload: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let f = FrameFields {
        offset,
        durable_offset: 0,
        timestamp: 0,
        key: None,
        headers: &[],
        payload,
        batch_continues: false,
    };
    encode_frame(out, &f, 0);
}

/// Raw files: BufWriter (unsynced), write + fdatasync per record, and the CRC-checked scan.
fn raw(dir: &Path, s: &Sizes) -> Row {
    let mut row = Row { name: "raw BufWriter / write+fdatasync", durability: "fdatasync per record", ..Row::default() };
    for (size, n, slot) in [(100usize, s.unsynced, 0), (1024, s.unsynced / 4, 1)] {
        let p = dir.join(format!("raw-{size}"));
        let mut w = std::io::BufWriter::with_capacity(256 << 10, File::create(&p).expect("create"));
        let payload = vec![7u8; size];
        let mut buf = Vec::new();
        let t = Instant::now();
        for i in 0..n {
            frame(i, &payload, &mut buf);
            w.write_all(&buf).expect("write");
        }
        w.flush().expect("flush");
        let r = rate(n, t);
        if slot == 0 { row.unsynced_100 = Some(r) } else { row.unsynced_1k = Some(r) }
    }
    // Read back (from the page cache) with CRC checks.
    let t = Instant::now();
    let data = std::fs::read(dir.join("raw-100")).expect("read");
    let (mut at, mut n) = (0usize, 0u64);
    while at < data.len() {
        let f = decode_frame(&data[at..], Some(n)).expect("valid");
        at += f.len;
        n += 1;
    }
    row.read = Some(rate(n, t));
    let payload = [7u8; 100];
    let f = File::create(dir.join("raw-durable")).expect("create");
    let mut buf = Vec::new();
    let t = Instant::now();
    for i in 0..s.durable {
        frame(i, &payload, &mut buf);
        (&f).write_all(&buf).expect("write");
        f.sync_data().expect("fdatasync");
    }
    row.durable_1 = Some(rate(s.durable, t));
    let f = Arc::new(Mutex::new(File::create(dir.join("raw-durable-8")).expect("create")));
    let t = Instant::now();
    std::thread::scope(|sc| {
        for _ in 0..8 {
            let f = f.clone();
            sc.spawn(move || {
                let mut buf = Vec::new();
                for i in 0..s.threads {
                    frame(i, &payload, &mut buf);
                    let g = f.lock().expect("lock");
                    (&*g).write_all(&buf).expect("write");
                    g.sync_data().expect("fdatasync");
                }
            });
        }
    });
    row.durable_8 = Some(rate(8 * s.threads, t));
    row
}

/// pwrite into a preallocated (zero-written) file + fdatasync: the floor of one durable append.
fn raw_prealloc(dir: &Path, s: &Sizes) -> Row {
    let mut row = Row {
        name: "raw-prealloc (pwrite into zeros + fdatasync)",
        durability: "fdatasync per record",
        ..Row::default()
    };
    let p = dir.join("prealloc");
    let f = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&p).expect("create");
    f.write_all_at(&vec![0u8; (s.durable as usize + 16) * 160], 0).expect("zeros");
    f.sync_all().expect("sync");
    let payload = [7u8; 100];
    let mut buf = Vec::new();
    let mut pos = 0u64;
    let t = Instant::now();
    for i in 0..s.durable {
        frame(i, &payload, &mut buf);
        f.write_all_at(&buf, pos).expect("write");
        f.sync_data().expect("fdatasync");
        pos += buf.len() as u64;
    }
    row.durable_1 = Some(rate(s.durable, t));
    row
}

fn evlog_row(dir: &Path, s: &Sizes) -> Row {
    use evlog::{Durability, Log, Options};
    let mut row = Row { name: "evlog", durability: "Always: fdatasync, group commit", ..Row::default() };
    for (size, n, slot) in [(100usize, s.unsynced, 0), (1024, s.unsynced / 4, 1)] {
        let log = Log::open(dir.join(format!("evlog-{size}")), Options::with_durability(Durability::Os)).expect("open");
        let payload = vec![7u8; size];
        let t = Instant::now();
        for _ in 0..n {
            log.append(&payload).expect("append");
        }
        let r = rate(n, t);
        if slot == 0 { row.unsynced_100 = Some(r) } else { row.unsynced_1k = Some(r) }
    }
    after_kill("evlog", dir, s, &mut row, |p| {
        let log = Log::open(p, Options::default()).expect("reopen");
        Box::new(move || {
            // `scan` lends each record (no reference count per record): the read hot path.
            let mut n = 0u64;
            log.scan(0, |r| {
                n += u64::from(r.payload().len() == 100);
                std::ops::ControlFlow::Continue(())
            })
            .expect("scan");
            n
        })
    });
    let log = Log::open(dir.join("evlog-durable"), Options::with_durability(Durability::Always)).expect("open");
    let payload = [7u8; 100];
    let t = Instant::now();
    for _ in 0..s.durable {
        log.append(&payload).expect("append");
    }
    row.durable_1 = Some(rate(s.durable, t));
    let log =
        Arc::new(Log::open(dir.join("evlog-durable-8"), Options::with_durability(Durability::Always)).expect("open"));
    let t = Instant::now();
    std::thread::scope(|sc| {
        for _ in 0..8 {
            let log = log.clone();
            sc.spawn(move || {
                for _ in 0..s.threads {
                    log.append(&payload).expect("append");
                }
            });
        }
    });
    row.durable_8 = Some(rate(8 * s.threads, t));
    eprintln!("evlog 8 threads: {:.1} records per fdatasync", (8 * s.threads) as f64 / log.stats().fsyncs.max(1) as f64);
    row
}

fn sled_row(dir: &Path, s: &Sizes) -> Row {
    let mut row = Row {
        name: "sled 0.34 (queue: BE u64 keys)",
        durability: "flush() = sync_file_range, NOT an fsync*",
        ..Row::default()
    };
    for (size, n, slot) in [(100usize, s.unsynced, 0), (1024, s.unsynced / 4, 1)] {
        let db = sled::open(dir.join(format!("sled-{size}"))).expect("open");
        let payload = vec![7u8; size];
        let t = Instant::now();
        for i in 0..n {
            db.insert(i.to_be_bytes(), payload.as_slice()).expect("insert");
        }
        let r = rate(n, t);
        if slot == 0 { row.unsynced_100 = Some(r) } else { row.unsynced_1k = Some(r) }
    }
    after_kill("sled", dir, s, &mut row, |p| {
        let db = sled::open(p).expect("reopen");
        Box::new(move || db.iter().map(|kv| kv.expect("kv").1.len()).filter(|&l| l == 100).count() as u64)
    });
    let db = sled::open(dir.join("sled-durable")).expect("open");
    let payload = [7u8; 100];
    let t = Instant::now();
    for i in 0..s.durable {
        db.insert(i.to_be_bytes(), &payload[..]).expect("insert");
        db.flush().expect("flush");
    }
    row.durable_1 = Some(rate(s.durable, t));
    let t = Instant::now();
    std::thread::scope(|sc| {
        for th in 0..8u64 {
            let db = db.clone();
            sc.spawn(move || {
                for i in 0..s.threads {
                    db.insert((1 << 40 | th << 32 | i).to_be_bytes(), &payload[..]).expect("insert");
                    db.flush().expect("flush");
                }
            });
        }
    });
    row.durable_8 = Some(rate(8 * s.threads, t));
    row
}

fn fjall_row(dir: &Path, s: &Sizes) -> Row {
    use fjall::{Config, PartitionCreateOptions, PersistMode};
    let mut row = Row { name: "fjall 2 (LSM, journal)", durability: "persist(SyncAll) per record", ..Row::default() };
    for (size, n, slot) in [(100usize, s.unsynced, 0), (1024, s.unsynced / 4, 1)] {
        let ks = Config::new(dir.join(format!("fjall-{size}"))).open().expect("open");
        let p = ks.open_partition("q", PartitionCreateOptions::default()).expect("partition");
        let payload = vec![7u8; size];
        let t = Instant::now();
        for i in 0..n {
            p.insert(i.to_be_bytes(), &payload).expect("insert");
        }
        let r = rate(n, t);
        if slot == 0 { row.unsynced_100 = Some(r) } else { row.unsynced_1k = Some(r) }
    }
    after_kill("fjall", dir, s, &mut row, |path| {
        let ks = Config::new(path).open().expect("reopen");
        let p = ks.open_partition("q", PartitionCreateOptions::default()).expect("partition");
        Box::new(move || {
            let _keep = ks;
            p.iter().map(|kv| kv.expect("kv").1.len()).filter(|&l| l == 100).count() as u64
        })
    });
    let ks = Config::new(dir.join("fjall-durable")).open().expect("open");
    let p = ks.open_partition("q", PartitionCreateOptions::default()).expect("partition");
    let payload = [7u8; 100];
    let t = Instant::now();
    for i in 0..s.durable {
        p.insert(i.to_be_bytes(), payload).expect("insert");
        ks.persist(PersistMode::SyncAll).expect("persist");
    }
    row.durable_1 = Some(rate(s.durable, t));
    let t = Instant::now();
    std::thread::scope(|sc| {
        for th in 0..8u64 {
            let (ks, p) = (ks.clone(), p.clone());
            sc.spawn(move || {
                for i in 0..s.threads {
                    p.insert((1 << 40 | th << 32 | i).to_be_bytes(), payload).expect("insert");
                    ks.persist(PersistMode::SyncAll).expect("persist");
                }
            });
        }
    });
    row.durable_8 = Some(rate(8 * s.threads, t));
    row
}

fn queue_file_row(dir: &Path, s: &Sizes) -> Row {
    use queue_file::QueueFile;
    let mut row = Row { name: "queue-file 1", durability: "sync_writes: fsync per add", ..Row::default() };
    for (size, n, slot) in [(100usize, s.unsynced, 0), (1024, s.unsynced / 4, 1)] {
        let mut q = QueueFile::open(dir.join(format!("qf-{size}"))).expect("open");
        q.set_sync_writes(false);
        let payload = vec![7u8; size];
        let t = Instant::now();
        for _ in 0..n {
            q.add(&payload).expect("add");
        }
        let r = rate(n, t);
        if slot == 0 { row.unsynced_100 = Some(r) } else { row.unsynced_1k = Some(r) }
    }
    after_kill("queue-file", dir, s, &mut row, |p| {
        let mut q = QueueFile::open(p).expect("reopen");
        Box::new(move || q.iter().filter(|v| v.len() == 100).count() as u64)
    });
    let mut q = QueueFile::open(dir.join("qf-durable")).expect("open");
    q.set_sync_writes(true);
    let payload = [7u8; 100];
    let t = Instant::now();
    for _ in 0..s.durable {
        q.add(&payload).expect("add");
    }
    row.durable_1 = Some(rate(s.durable, t));
    row
}

fn sqlite_open(path: &Path, sync: &str) -> Connection {
    let c = Connection::open(path).expect("open");
    c.execute_batch(&format!("PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA busy_timeout=10000; CREATE TABLE IF NOT EXISTS q (id INTEGER PRIMARY KEY, v BLOB NOT NULL);")).expect("setup");
    c
}

fn sqlite_row(dir: &Path, s: &Sizes) -> Row {
    let mut row = Row {
        name: "SQLite (WAL, table as a queue)",
        durability: "synchronous=FULL, one txn per record",
        ..Row::default()
    };
    let open = |name: &str, sync: &str| sqlite_open(&dir.join(name), sync);
    for (size, n, slot) in [(100usize, s.unsynced / 4, 0), (1024, s.unsynced / 16, 1)] {
        let c = open(&format!("sqlite-{size}"), "OFF");
        let payload = vec![7u8; size];
        let mut st = c.prepare("INSERT INTO q (v) VALUES (?1)").expect("prepare");
        let t = Instant::now();
        for _ in 0..n {
            st.execute([&payload]).expect("insert");
        }
        let r = rate(n, t);
        if slot == 0 { row.unsynced_100 = Some(r) } else { row.unsynced_1k = Some(r) }
    }
    after_kill("sqlite", dir, s, &mut row, |p| {
        let c = sqlite_open(p, "FULL");
        Box::new(move || {
            let mut st = c.prepare("SELECT v FROM q ORDER BY id").expect("prepare");
            st.query_map([], |r| r.get::<_, Vec<u8>>(0))
                .expect("query")
                .filter(|v| v.as_ref().is_ok_and(|v| v.len() == 100))
                .count() as u64
        })
    });
    let c = open("sqlite-durable", "FULL");
    let payload = vec![7u8; 100];
    let t = Instant::now();
    for _ in 0..s.durable {
        c.execute("INSERT INTO q (v) VALUES (?1)", [&payload]).expect("insert");
    }
    row.durable_1 = Some(rate(s.durable, t));
    let t = Instant::now();
    std::thread::scope(|sc| {
        for _ in 0..8 {
            let payload = &payload;
            sc.spawn(move || {
                let c = open("sqlite-durable", "FULL");
                for _ in 0..s.threads {
                    c.execute("INSERT INTO q (v) VALUES (?1)", [payload]).expect("insert");
                }
            });
        }
    });
    row.durable_8 = Some(rate(8 * s.threads, t));
    row
}

/// okaywal: durable appends only (every commit is fsynced, with group commit across threads).
fn okaywal_row(dir: &Path, s: &Sizes) -> Row {
    use okaywal::{LogVoid, WriteAheadLog};
    let mut row = Row { name: "okaywal 0.3 (WAL)", durability: "fsync per commit, group commit", ..Row::default() };
    let payload = [7u8; 100];
    let wal = WriteAheadLog::recover(dir.join("okaywal-1"), LogVoid).expect("open");
    let t = Instant::now();
    for _ in 0..s.durable {
        let mut e = wal.begin_entry().expect("entry");
        e.write_chunk(&payload).expect("chunk");
        e.commit().expect("commit");
    }
    row.durable_1 = Some(rate(s.durable, t));
    let wal = WriteAheadLog::recover(dir.join("okaywal-8"), LogVoid).expect("open");
    let t = Instant::now();
    std::thread::scope(|sc| {
        for _ in 0..8 {
            let wal = wal.clone();
            sc.spawn(move || {
                for _ in 0..s.threads {
                    let mut e = wal.begin_entry().expect("entry");
                    e.write_chunk(&payload).expect("chunk");
                    e.commit().expect("commit");
                }
            });
        }
    });
    row.durable_8 = Some(rate(8 * s.threads, t));
    row
}

/// A reader returned by a reopen: reads every record, returns how many are 100 B long.
type ReadAll = Box<dyn FnOnce() -> u64>;

/// Unclean shutdown, for real: a child process (`compare fill SYSTEM DIR N`) appends N records of
/// 100 B in the system's unsynced mode and says so; it is SIGKILLed right then. This process then
/// times the reopen (`reopen` returns once the store is open) and a full sequential read.
fn after_kill(system: &str, dir: &Path, s: &Sizes, row: &mut Row, reopen: impl FnOnce(&Path) -> ReadAll) {
    use std::io::BufRead;
    let path = dir.join(format!("{system}-killed"));
    let mut child = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args(["fill", system, path.to_str().expect("utf-8 path"), &s.unsynced.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the filling child");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("child says ready");
    assert_eq!(line.trim(), "ready", "{system} child did not finish filling");
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let t = Instant::now();
    let read_all = reopen(&path);
    row.open_ms = Some(t.elapsed().as_secs_f64() * 1e3);
    let t = Instant::now();
    let n = read_all();
    row.read = Some(rate(n, t));
    row.kept = Some((n, s.unsynced));
}

/// The child side of [`after_kill`]: append `n` records of 100 B, unsynced, then wait to be killed.
fn fill(system: &str, path: &Path, n: u64) -> ! {
    let payload = [7u8; 100];
    // Each store stays open (not dropped) until the kill: nothing runs a clean shutdown.
    let keep: Box<dyn std::any::Any> = match system {
        "evlog" => {
            use evlog::{Durability, Log, Options};
            let log = Log::open(path, Options::with_durability(Durability::Os)).expect("open");
            for _ in 0..n {
                log.append(&payload).expect("append");
            }
            Box::new(log)
        }
        "sled" => {
            let db = sled::open(path).expect("open");
            for i in 0..n {
                db.insert(i.to_be_bytes(), &payload[..]).expect("insert");
            }
            Box::new(db)
        }
        "fjall" => {
            use fjall::{Config, PartitionCreateOptions};
            let ks = Config::new(path).open().expect("open");
            let p = ks.open_partition("q", PartitionCreateOptions::default()).expect("partition");
            for i in 0..n {
                p.insert(i.to_be_bytes(), payload).expect("insert");
            }
            Box::new((ks, p))
        }
        "queue-file" => {
            let mut q = queue_file::QueueFile::open(path).expect("open");
            q.set_sync_writes(false);
            for _ in 0..n {
                q.add(&payload).expect("add");
            }
            Box::new(q)
        }
        "sqlite" => {
            let c = sqlite_open(path, "OFF");
            let mut st = c.prepare("INSERT INTO q (v) VALUES (?1)").expect("prepare");
            for _ in 0..n {
                st.execute([&payload[..]]).expect("insert");
            }
            drop(st);
            Box::new(c)
        }
        other => panic!("no fill for {other}"),
    };
    println!("ready");
    std::io::stdout().flush().expect("flush");
    loop {
        std::thread::park();
        let _ = &keep;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("fill") {
        fill(&args[2], Path::new(&args[3]), args[4].parse().expect("count"));
    }
    let quick = std::env::args().any(|a| a == "quick");
    let s = if quick {
        Sizes { unsynced: 100_000, durable: 500, threads: 200 }
    } else {
        Sizes { unsynced: 1_000_000, durable: 2_000, threads: 500 }
    };
    let runs: usize =
        std::env::args().find_map(|a| a.strip_prefix("runs=").map(|n| n.parse().expect("runs=N"))).unwrap_or(1).max(1);
    let systems = [
        ("raw", raw as fn(&Path, &Sizes) -> Row),
        ("raw-prealloc", raw_prealloc),
        ("evlog", evlog_row),
        ("sled", sled_row),
        ("fjall", fjall_row),
        ("queue-file", queue_file_row),
        ("okaywal", okaywal_row),
        ("sqlite", sqlite_row),
    ];
    let mut all: Vec<Vec<Row>> = (0..systems.len()).map(|_| Vec::new()).collect();
    for run in 0..runs {
        for ((name, f), rows) in systems.iter().zip(&mut all) {
            eprintln!("run {} of {runs}: measuring {name} …", run + 1);
            let tmp = tempfile::tempdir().expect("tempdir");
            rows.push(f(tmp.path(), &s));
        }
    }
    let rows: Vec<Row> = all.into_iter().map(median_row).collect();
    println!(
        "| system | durability of the durable columns | unsynced 100 B | unsynced 1 KiB | durable, 1 thread | durable, 8 threads | read after kill -9 + reopen | reopen after kill -9 | kept after kill -9 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let ev = rows.iter().find(|r| r.name == "evlog").map(|r| (r.unsynced_100, r.durable_1, r.durable_8, r.read));
    for r in &rows {
        let ratio = |mine: Option<f64>, theirs: Option<f64>| match (mine, theirs) {
            (Some(m), Some(t)) if r.name != "evlog" => format!(" (evlog {:.2}×)", m / t),
            _ => String::new(),
        };
        let (eu, ed1, ed8, er) = ev.unwrap_or_default();
        println!(
            "| {} | {} | {}{} | {} | {}{} | {}{} | {}{} | {} | {} |",
            r.name,
            r.durability,
            fmt(r.unsynced_100),
            ratio(eu, r.unsynced_100),
            fmt(r.unsynced_1k),
            fmt(r.durable_1),
            ratio(ed1, r.durable_1),
            fmt(r.durable_8),
            ratio(ed8, r.durable_8),
            fmt(r.read),
            ratio(er, r.read),
            r.open_ms.map_or("–".into(), |m| format!("{m:.1} ms")),
            r.kept.map_or("–".into(), |(k, n)| format!("{k} of {n}")),
        );
    }
    println!();
    println!(
        "records/s{}; {} records unsynced ({} at 1 KiB), {} durable per thread count. * sled's flush ends in sync_file_range on Linux: not durable against a power cut.",
        if runs > 1 { format!(", each cell the median of {runs} runs") } else { String::new() },
        s.unsynced,
        s.unsynced / 4,
        s.durable
    );
}
