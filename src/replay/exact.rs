//! The exact path: an external merge sort. Records are gathered into a bounded buffer, full
//! buffers sorted and spilled as run files under `<root>/replay-tmp/`, the runs and the last
//! buffer merged with a heap. Run files are removed when the replay is dropped.

use super::*;

/// Read and write buffer of one run file.
pub(super) const RUN_BUFFER_BYTES: usize = 64 << 10;

/// Directory under the store root for replay run files.
use crate::store::REPLAY_TMP_DIR;

pub(super) fn encode_run_entry(out: &mut Vec<u8>, e: &Entry) {
    run::encode_run_entry(out, e.key, e.record_key.as_deref(), &e.payload);
}

/// Reads a run file back, entry by entry, with one bounded buffer; checks every entry.
#[derive(Debug)]
pub(super) struct RunReader {
    pub(super) file: Arc<dyn StorageFile>,
    pub(super) path: PathBuf,
    pub(super) pos: u64,
    pub(super) len: u64,
    pub(super) buf: Vec<u8>,
    pub(super) at: usize,
}

impl RunReader {
    pub(super) fn fill(&mut self, need: usize) -> Result<bool> {
        if self.buf.len() - self.at >= need {
            return Ok(true);
        }
        let rest = self.buf.split_off(self.at);
        let want = need.max(RUN_BUFFER_BYTES).min((self.len - self.pos) as usize + rest.len()) - rest.len();
        let more = self.file.read_vec(self.pos, want).map_err(|e| Error::io("read", &self.path, e))?;
        self.pos += more.len() as u64;
        self.buf = rest;
        self.buf.extend_from_slice(&more);
        self.at = 0;
        Ok(self.buf.len() >= need)
    }

    pub(super) fn next(&mut self) -> Result<Option<Entry>> {
        if self.at == self.buf.len() && self.pos == self.len {
            return Ok(None);
        }
        let (path, pos) = (self.path.clone(), self.pos);
        let bad = |what: &str| Error::corruption(&path, pos, None, format!("replay run: {what}"));
        if !self.fill(RUN_ENTRY_HEADER_LEN)? {
            return Err(bad("entry header cut short"));
        }
        let Some(h) = self.buf.get(self.at..).and_then(<[u8]>::first_chunk::<RUN_ENTRY_HEADER_LEN>) else {
            return Err(bad("entry header cut short"));
        };
        let head = run::decode_run_entry_header(h).map_err(bad)?;
        let total = head.entry_len();
        if !self.fill(total)? {
            return Err(bad("entry cut short"));
        }
        let Some(body) = self.buf.get(self.at + RUN_ENTRY_HEADER_LEN..self.at + total) else {
            return Err(bad("entry cut short"));
        };
        let (key, payload) = head.check_body(body).map_err(bad)?;
        let record_key = key.map(Box::from);
        let payload = Bytes::from_vec(payload.to_vec()).ok_or_else(|| bad("payload over 4 GiB"))?;
        self.at += total;
        let key = head.key;
        Ok(Some(Entry { key, record_key, payload }))
    }
}

impl Replay {
    pub(super) fn next_history(&mut self) -> Result<Option<Out>> {
        loop {
            match &mut self.mode {
                Mode::Gather => self.gather()?,
                Mode::Merge { heap, runs, buffer } => {
                    if let Some(Reverse((e, src))) = heap.pop() {
                        let next = match runs.get_mut(src) {
                            Some(run) => run.next()?,
                            None => buffer.next(), // `src` is usize::MAX for the in-memory buffer
                        };
                        if let Some(n) = next {
                            heap.push(Reverse((n, src)));
                        }
                        return Ok(Some(Out::Entry(e)));
                    }
                    self.mode = Mode::Done;
                }
                Mode::Streaming(_) => return self.next_streaming(),
                Mode::Done => return Ok(None),
            }
        }
    }

    /// Exact path: reads everything, spilling sorted runs, then sets up the merge.
    pub(super) fn gather(&mut self) -> Result<()> {
        let budget = self.memory_bytes_max / 2;
        let mut buffer: Vec<Entry> = Vec::new();
        let mut bytes = 0u64;
        let mut runs = Vec::new();
        for i in 0..self.sources.len() {
            while let Some(e) = self.source_next(i)? {
                if self.already_emitted(e.key) {
                    continue;
                }
                bytes += e.bytes();
                buffer.push(e);
                if bytes >= budget {
                    buffer.sort_unstable();
                    runs.push(self.spill(&buffer)?);
                    buffer.clear();
                    bytes = 0;
                }
            }
        }
        buffer.sort_unstable();
        let mut runs: Vec<RunReader> = runs;
        let mut heap = BinaryHeap::new();
        for (i, r) in runs.iter_mut().enumerate() {
            if let Some(e) = r.next()? {
                heap.push(Reverse((e, i)));
            }
        }
        let mut buffer = buffer.into_iter();
        if let Some(e) = buffer.next() {
            heap.push(Reverse((e, usize::MAX)));
        }
        self.mode = Mode::Merge { heap, runs, buffer };
        Ok(())
    }

    pub(super) fn spill(&mut self, sorted: &[Entry]) -> Result<RunReader> {
        let storage = self.store.inner().opts.log.storage.clone();
        let dir = match &self.spill_dir {
            Some(d) => d.clone(),
            None => {
                let nanos = crate::clock::now_nanos();
                let d = self.store.root().join(REPLAY_TMP_DIR).join(format!("{}-{nanos}", std::process::id()));
                // Not made durable: runs live only as long as this replay, and open removes them.
                storage.create_dir_all(&d).map_err(|e| Error::io("create directory", &d, e))?;
                self.spill_dir = Some(d.clone());
                d
            }
        };
        let path = dir.join(format!("run-{}", self.stats.runs_spilled));
        let file = storage.open(&path, OpenMode::CreateNew).map_err(|e| Error::io("create", &path, e))?;
        let mut buf = Vec::with_capacity(RUN_BUFFER_BYTES);
        let mut pos = 0u64;
        for e in sorted {
            encode_run_entry(&mut buf, e);
            if buf.len() >= RUN_BUFFER_BYTES {
                file.write_all_at(&buf, pos).map_err(|err| Error::io("write", &path, err))?;
                pos += buf.len() as u64;
                buf.clear();
            }
        }
        file.write_all_at(&buf, pos).map_err(|err| Error::io("write", &path, err))?;
        pos += buf.len() as u64;
        self.stats.runs_spilled += 1;
        self.stats.bytes_spilled += pos;
        Ok(RunReader { file, path, pos: 0, len: pos, buf: Vec::new(), at: 0 })
    }
}
