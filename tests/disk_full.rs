//! A real full disk: a size-limited tmpfs (skipped, with a message, where mounting is not
//! permitted). The fault-injecting storage covers ENOSPC everywhere else (tests/log.rs).

use evlog::log::WritePath;
use evlog::{Durability, Log, LogError, Options};
use std::path::PathBuf;
use std::process::Command;

/// A mounted tmpfs of a few hundred KiB, unmounted on drop.
struct SmallFs {
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl SmallFs {
    fn mount(size: &str) -> Option<SmallFs> {
        let tmp = tempfile::tempdir().ok()?;
        let dir = tmp.path().join("fs");
        std::fs::create_dir(&dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallFs { dir, _tmp: tmp })
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

fn options() -> Options {
    let mut o = Options::with_durability(Durability::Always);
    o.segment_bytes_max = 64 << 10;
    o.record_bytes_max = 4096;
    o
}

fn fill(log: &Log, from: u64) -> Result<u64, LogError> {
    let mut n = from;
    loop {
        log.append(format!("{n:06}-{}", "d".repeat(1000)).as_bytes())?;
        n += 1;
    }
}

/// A log on a 512 KiB tmpfs, filled until an append failed.
struct Filled {
    /// Keeps the file system mounted.
    _fs: SmallFs,
    /// A file taking 128 KiB; removing it frees room.
    ballast: PathBuf,
    dir: PathBuf,
    log: Log,
    /// What the failed append returned.
    err: LogError,
}

/// One test at a time: each spawns `mount` and `umount`, and a child forked while another
/// test's log is open holds a copy of that log's lock descriptor until it execs, which can make
/// that test's reopen find the directory locked.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Fills a log opened with `o` on a small tmpfs; `None` (with a message) where mounting is not
/// permitted.
fn fill_a_small_disk(o: &Options) -> Option<Filled> {
    let Some(fs) = SmallFs::mount("512k") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN)");
        return None;
    };
    let ballast = fs.dir.join("ballast");
    std::fs::write(&ballast, vec![0u8; 128 << 10]).expect("ballast");
    let dir = fs.dir.join("log");
    let log = Log::open(&dir, o.clone()).expect("open");
    let err = fill(&log, 0).expect_err("the disk fills up");
    assert!(matches!(err, LogError::StorageFull { .. }), "{err}");
    assert!(err.to_string().contains("no space"), "{err}");
    assert!(log.next_offset() > 50);
    assert_eq!(readable(&log), log.next_offset(), "everything acknowledged is readable");
    Some(Filled { _fs: fs, ballast, dir, log, err })
}

#[test]
fn a_full_real_filesystem_gives_storage_full_and_recovers_after_space_is_freed() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // The pwrite path: a failed write may have stored part of a frame, so the log is poisoned
    // until it is reopened.
    let mut o = options();
    o.write_path = WritePath::Pwrite;
    let Some(Filled { _fs, ballast, dir, log, .. }) = fill_a_small_disk(&o) else { return };
    let acknowledged = log.next_offset();
    assert!(matches!(log.append(b"x"), Err(LogError::Poisoned { .. })));
    drop(log);
    std::fs::remove_file(ballast).expect("free space");
    let log = Log::open(&dir, o).expect("reopen after freeing space");
    assert!(log.next_offset() >= acknowledged);
    let next = log.next_offset();
    assert_in_order(&log);
    assert_eq!(log.append(b"room again").expect("append"), next);
}

#[test]
fn a_full_disk_refuses_mapped_appends_before_writing_and_the_same_handle_appends_once_space_is_freed() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // The map path: space is allocated (fallocate) before a byte of a record is copied, so a
    // full disk is StorageFull with nothing written and nothing poisoned.
    let mut o = options();
    o.durability = Durability::Interval(std::time::Duration::from_millis(5)); // maps are for Os/Interval
    let Some(Filled { _fs, ballast, dir, log, err }) = fill_a_small_disk(&o) else { return };
    assert!(log.stats().mapped_writes, "tmpfs can fallocate, so appends go through the map: {err}");
    assert!(!log.is_poisoned());
    let acknowledged = log.next_offset();
    assert!(matches!(fill(&log, acknowledged), Err(LogError::StorageFull { .. })), "still full");
    let acknowledged = log.next_offset();
    std::fs::remove_file(ballast).expect("free space");
    assert_eq!(log.append(format!("{acknowledged:06}-room again").as_bytes()).expect("append"), acknowledged);
    drop(log);
    let log = Log::open(&dir, o).expect("reopen");
    assert_eq!(log.next_offset(), acknowledged + 1);
    assert_in_order(&log);
}

/// Records in the log with a payload of the size `fill` writes.
fn readable(log: &Log) -> u64 {
    log.iter(0).filter(|r| r.as_ref().is_ok_and(|r| r.payload().len() == 1007)).count() as u64
}

/// Every record starts with its own offset, as `fill` wrote it.
fn assert_in_order(log: &Log) {
    for (i, r) in log.iter(0).enumerate() {
        let r = r.expect("record");
        assert!(r.payload().starts_with(format!("{i:06}-").as_bytes()));
    }
}
