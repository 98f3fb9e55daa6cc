//! What `evlog top` reads each second, and from where: through the serving process's socket
//! when the store's holder serves it (end offsets and group commits over Kafka's APIs), else
//! read-only from the topics' files (end offsets; groups need the holder).

use crate::remote::Remote;
use evlog::{Log, Options};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One topic at one moment.
#[derive(Debug, Clone, Default)]
pub struct TopicSample {
    pub next_offset: u64,
    pub bytes: u64,
    /// Group → committed offset.
    pub groups: BTreeMap<String, u64>,
}

/// Every topic at one moment.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    pub topics: BTreeMap<String, TopicSample>,
}

/// Where samples come from.
pub enum Source {
    /// The serving process, through its socket.
    Served(Remote),
    /// The files, read-only (open logs kept between samples).
    Files(BTreeMap<String, Log>),
}

impl Source {
    pub fn open(dir: &Path) -> Source {
        match Remote::connect(dir) {
            Some(r) => Source::Served(r),
            None => Source::Files(BTreeMap::new()),
        }
    }

    /// What the view's header says about the source.
    pub fn describe(&self) -> &'static str {
        match self {
            Source::Served(_) => "through evlog serve",
            Source::Files(_) => "read-only from the files (groups: only when the holder serves)",
        }
    }

    pub fn sample(&mut self, dir: &Path) -> Result<Sample, String> {
        let names = topic_names(dir)?;
        let mut topics = BTreeMap::new();
        for name in &names {
            let bytes = dir_bytes(&dir.join("topics").join(name));
            topics.insert(name.clone(), TopicSample { bytes, ..TopicSample::default() });
        }
        match self {
            Source::Served(remote) => {
                for (name, t) in topics.iter_mut() {
                    t.next_offset = remote.offset_at(name, -1)?;
                }
                for group in remote.groups()? {
                    for (topic, committed) in remote.committed_all(&group)? {
                        if let Some(t) = topics.get_mut(&topic) {
                            t.groups.insert(group.clone(), committed);
                        }
                    }
                }
            }
            Source::Files(logs) => {
                for (name, t) in topics.iter_mut() {
                    if !logs.contains_key(name) {
                        let opened = Log::open_read_only(dir.join("topics").join(name), Options::default());
                        if let Ok(log) = opened {
                            logs.insert(name.clone(), log);
                        }
                    }
                    t.next_offset = logs.get(name).map_or(0, Log::next_offset);
                }
            }
        }
        Ok(Sample { at: Instant::now(), topics })
    }
}

fn topic_names(dir: &Path) -> Result<Vec<String>, String> {
    let tdir: PathBuf = dir.join("topics");
    let entries = std::fs::read_dir(&tdir).map_err(|e| format!("{}: {e}", tdir.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries.filter_map(|e| e.ok()?.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum()
}
