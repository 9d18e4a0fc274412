//! The sink thread. Records arrive on a channel; each is sealed into the chain and written
//! (file, stdout or both) in batches: one `write` per batch, `fsync` every `fsyncInterval`.
//! A batch that cannot be written stays queued, sealed, and is retried; until it goes
//! through the log is unhealthy and [`super::AuditLog::admit`] refuses new requests.
//! Files rotate by size: `audit.jsonl` → `audit.jsonl.1` → … → `audit.jsonl.<keepFiles>`.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;

use super::Shared;
use super::chain::{ChainKey, GENESIS, Link, split_line};
use super::record::Record;

/// Defaults for the `audit` settings.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 << 20;
pub const DEFAULT_KEEP_FILES: u32 = 10;
pub const DEFAULT_FSYNC_INTERVAL: Duration = Duration::from_secs(1);
/// Lines are written in batches of about this many bytes.
const BATCH_BYTES: usize = 256 << 10;
const RETRY: Duration = Duration::from_millis(200);
/// While busy, the writer collects records for this long between writes.
const BATCH_WAIT: Duration = Duration::from_millis(5);

/// How the sink is set up.
pub struct Options {
    /// The file (absolute), or `None` for stdout only.
    pub path: Option<PathBuf>,
    pub stdout: bool,
    pub max_file_bytes: u64,
    pub keep_files: u32,
    pub fsync_interval: Duration,
    pub key: ChainKey,
    pub tags: BTreeMap<String, String>,
    pub fail_open: bool,
}

impl Options {
    /// From the config's `audit` section; `dir` is the config's folder.
    pub fn from_config(audit: &crate::config::Audit, dir: &Path, key: ChainKey) -> Options {
        use crate::config::AuditSink;
        let path = dir.join(&audit.path);
        Options {
            path: (audit.sink != AuditSink::Stdout).then_some(path),
            stdout: audit.sink != AuditSink::File,
            max_file_bytes: audit.max_file_bytes.unwrap_or(DEFAULT_MAX_FILE_BYTES),
            keep_files: audit.keep_files.unwrap_or(DEFAULT_KEEP_FILES).max(1),
            fsync_interval: audit.fsync_interval.map_or(DEFAULT_FSYNC_INTERVAL, |d| d.0),
            key,
            tags: audit.tags.clone(),
            fail_open: audit.on_failure == crate::config::OnFailure::Allow,
        }
    }
}

pub(crate) enum Msg {
    Record(Box<Record>),
    Flush(std::sync::mpsc::Sender<()>),
}

struct FileSink {
    file: File,
    /// Bytes known to be in the file (a failed write is cut back to this).
    size: u64,
    regular: bool,
    dirty: bool,
    synced: Instant,
}

struct Writer {
    opts: Options,
    shared: Arc<Shared>,
    link: Link,
    file: Option<FileSink>,
    /// Records received, not yet sealed.
    backlog: VecDeque<Record>,
    /// Sealed lines not yet written, and how many queued records they hold.
    buf: String,
    /// The file already has `buf` (only stdout failed): do not append it again.
    buf_in_file: bool,
    buf_records: usize,
    flushes: Vec<std::sync::mpsc::Sender<()>>,
    /// Whether the file still has to be opened (or reopened after a failure).
    needs_open: bool,
    last_error: Option<String>,
}

/// Rotated file `i` of `path` (`audit.jsonl.1` is the newest).
pub fn rotated(path: &Path, i: u32) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

/// The chain state at the end of a regular file, if its lines are whole and chained with
/// `algorithm`: (link to continue from, whether the file is intact for appending).
fn tail_link(path: &Path, algorithm: &str) -> Option<(Link, bool)> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() == 0 {
        return None;
    }
    let mut f = File::open(path).ok()?;
    let mut first = String::new();
    {
        let mut head = vec![0u8; 4096.min(meta.len() as usize)];
        f.read_exact(&mut head).ok()?;
        let end = head.iter().position(|b| *b == b'\n').unwrap_or(head.len());
        first.push_str(&String::from_utf8_lossy(&head[..end]));
    }
    let want = 65536.min(meta.len());
    f.seek(SeekFrom::End(-(want as i64))).ok()?;
    let mut tail = Vec::with_capacity(want as usize);
    f.read_to_end(&mut tail).ok()?;
    let whole = tail.last() == Some(&b'\n');
    let text = String::from_utf8_lossy(&tail);
    let last = text.trim_end_matches('\n').rsplit('\n').next()?;
    let (body, value) = split_line(last)?;
    let rec: serde_json::Value = serde_json::from_str(&format!("{body}}}")).ok()?;
    let seq = rec.get("seq")?.as_u64()?;
    let same_alg = split_line(&first)
        .and_then(|(b, _)| serde_json::from_str::<serde_json::Value>(&format!("{b}}}")).ok())
        .and_then(|r| {
            r.pointer("/detail/chain")
                .and_then(|a| a.as_str())
                .map(|a| a == algorithm)
        })
        .unwrap_or(false);
    Some((
        Link {
            prev: value.to_string(),
            seq: seq + 1,
        },
        whole && same_alg,
    ))
}

fn open_append(path: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

impl Writer {
    fn alg(&self) -> &'static str {
        self.opts.key.algorithm()
    }

    fn start_record(&self, prev_file: &str, note: Option<&str>) -> Record {
        let mut detail = json!({ "chain": self.alg(), "prevFile": prev_file });
        if let Some(n) = note {
            detail["note"] = json!(n);
        }
        let mut r = Record::new("file.start").detail(detail);
        r.tags = self.opts.tags.clone();
        r
    }

    /// Seal a record into the write buffer.
    fn seal(&mut self, mut record: Record, counts: bool) {
        record.seq = self.link.seq;
        let text = match serde_json::to_string(&record) {
            Ok(t) => t,
            Err(e) => {
                // Records are plain data; this cannot happen, but never lose the fact.
                format!(
                    r#"{{"time":"{}","seq":{},"event":"audit.error","reason":{}}}"#,
                    record.time,
                    record.seq,
                    json!(e.to_string())
                )
            }
        };
        let line = self.link.seal(&self.opts.key, text);
        self.buf.push_str(&line);
        if counts {
            self.buf_records += 1;
        }
    }

    /// Open the file: resume its chain, or move an unusable file aside and start anew.
    fn open(&mut self) -> std::io::Result<()> {
        let Some(path) = self.opts.path.clone() else {
            // Stdout only: one chain for the life of the process.
            let start = self.start_record(GENESIS, None);
            self.seal(start, false);
            return Ok(());
        };
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
            && !dir.exists()
        {
            let mut b = std::fs::DirBuilder::new();
            b.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
            b.create(dir)?;
        }
        let meta = std::fs::metadata(&path).ok();
        let regular = meta.as_ref().is_none_or(|m| m.is_file());
        if !regular {
            // A device or pipe: no resume, no rotation.
            let file = OpenOptions::new().append(true).open(&path)?;
            self.file = Some(FileSink {
                file,
                size: 0,
                regular: false,
                dirty: false,
                synced: Instant::now(),
            });
            let start = self.start_record(GENESIS, None);
            self.seal(start, false);
            return Ok(());
        }
        let alg = self.alg();
        let mut note = None;
        let prev_file = match tail_link(&path, alg) {
            Some((link, true)) => {
                // Continue the existing file's chain.
                self.link = link;
                let file = open_append(&path)?;
                let size = file.metadata()?.len();
                self.file = Some(FileSink {
                    file,
                    size,
                    regular: true,
                    dirty: false,
                    synced: Instant::now(),
                });
                return Ok(());
            }
            Some((link, false)) => {
                note = Some(
                    "the previous file ended with an incomplete line or used another chain; it was rotated unchanged",
                );
                self.link = link;
                self.shift(&path)?;
                self.link.prev.clone()
            }
            None if meta.is_some_and(|m| m.len() > 0) => {
                note = Some("the previous file was not an audit chain; it was rotated unchanged");
                self.shift(&path)?;
                GENESIS.to_string()
            }
            None => match tail_link(&rotated(&path, 1), alg) {
                Some((link, _)) => {
                    self.link = link;
                    self.link.prev.clone()
                }
                None => GENESIS.to_string(),
            },
        };
        let file = open_append(&path)?;
        self.file = Some(FileSink {
            file,
            size: 0,
            regular: true,
            dirty: false,
            synced: Instant::now(),
        });
        let start = self.start_record(&prev_file, note);
        self.seal(start, false);
        Ok(())
    }

    /// Move `path` to `path.1`, shifting older files up and dropping the oldest.
    fn shift(&self, path: &Path) -> std::io::Result<()> {
        let keep = self.opts.keep_files.max(1);
        for i in (1..keep).rev() {
            let from = rotated(path, i);
            if from.exists() {
                std::fs::rename(&from, rotated(path, i + 1))?;
            }
        }
        std::fs::rename(path, rotated(path, 1))
    }

    /// Rotate: the buffer must be empty. The new file starts with `file.start`.
    fn rotate(&mut self) -> std::io::Result<()> {
        let Some(path) = self.opts.path.clone() else {
            return Ok(());
        };
        if let Some(f) = &mut self.file {
            f.file.sync_data()?;
        }
        if path.exists() {
            self.shift(&path)?;
        }
        // From here on the old file is `.1`: a failure to open the new one is retried by
        // `open`, which continues the chain from `.1` (never by shifting again).
        self.file = None;
        self.needs_open = true;
        self.open()?;
        self.needs_open = false;
        Ok(())
    }

    fn needs_rotation(&self, next: usize) -> bool {
        self.file.as_ref().is_some_and(|f| {
            f.regular
                && f.size > 0
                && f.size + (self.buf.len() + next) as u64 > self.opts.max_file_bytes
        })
    }

    /// Write the buffer to every sink. On failure the buffer stays for the next attempt.
    fn write_buf(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Some(f) = self.file.as_mut().filter(|_| !self.buf_in_file) {
            if let Err(e) = f.file.write_all(self.buf.as_bytes()) {
                if f.regular {
                    // Cut a partial write back so the retry does not leave half a line.
                    let _ = f.file.set_len(f.size);
                }
                return Err(e);
            }
            f.size += self.buf.len() as u64;
            f.dirty = true;
            self.buf_in_file = true;
        }
        if self.opts.stdout {
            let mut out = std::io::stdout().lock();
            out.write_all(self.buf.as_bytes())?;
            out.flush()?;
        }
        self.buf.clear();
        self.buf_in_file = false;
        let n = std::mem::take(&mut self.buf_records);
        self.shared.queued.fetch_sub(n, Ordering::AcqRel);
        self.shared.written.fetch_add(n as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Seal and write everything received so far.
    fn pump(&mut self) -> std::io::Result<()> {
        if self.needs_open {
            self.open()?;
            self.needs_open = false;
        }
        self.write_buf()?;
        while let Some(rec) = self.backlog.pop_front() {
            if self.needs_rotation(512) {
                self.write_buf()?;
                if let Err(e) = self.rotate() {
                    self.backlog.push_front(rec);
                    return Err(e);
                }
            }
            self.seal(rec, true);
            if self.buf.len() >= BATCH_BYTES {
                self.write_buf()?;
            }
        }
        self.write_buf()
    }

    fn maybe_sync(&mut self, force: bool) {
        if let Some(f) = &mut self.file
            && f.dirty
            && (force || f.synced.elapsed() >= self.opts.fsync_interval)
        {
            if f.regular {
                let _ = f.file.sync_data();
            }
            f.dirty = false;
            f.synced = Instant::now();
        }
    }

    /// One attempt: pump, then update health and answer flushes.
    fn attempt(&mut self) {
        match self.pump() {
            Ok(()) => {
                if !self.shared.healthy.swap(true, Ordering::AcqRel) {
                    tracing::warn!("the audit sink accepts records again");
                }
                self.last_error = None;
                self.maybe_sync(false);
                if self.backlog.is_empty() && self.buf.is_empty() {
                    self.maybe_sync(!self.flushes.is_empty());
                    for f in self.flushes.drain(..) {
                        let _ = f.send(());
                    }
                }
            }
            Err(e) => {
                self.shared.failures.fetch_add(1, Ordering::Relaxed);
                let msg = e.to_string();
                if self.shared.healthy.swap(false, Ordering::AcqRel)
                    || self.last_error.as_deref() != Some(&msg)
                {
                    tracing::error!(
                        path = %self.opts.path.as_deref().map_or("stdout".into(), |p| p.display().to_string()),
                        "cannot write the audit log: {msg}; requests are refused until it can be written (audit.onFailure: deny)"
                    );
                }
                self.last_error = Some(msg);
                if self.file.is_none() && self.opts.path.is_some() {
                    self.needs_open = true;
                }
            }
        }
    }

    fn take(&mut self, msg: Msg) {
        match msg {
            Msg::Record(r) => self.backlog.push_back(*r),
            Msg::Flush(done) => self.flushes.push(done),
        }
    }

    fn run(mut self, rx: std::sync::mpsc::Receiver<Msg>) {
        use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
        // While records keep coming the thread polls every BATCH_WAIT instead of blocking,
        // so a request hands its record over without waking this thread (no futex per
        // record) and records are written in batches; when a poll finds nothing it blocks.
        let mut hot = false;
        loop {
            if hot {
                std::thread::sleep(BATCH_WAIT);
                let mut got = false;
                loop {
                    match rx.try_recv() {
                        Ok(m) => {
                            self.take(m);
                            got = true;
                            if self.backlog.len() >= 4096 {
                                break;
                            }
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            self.attempt();
                            self.maybe_sync(true);
                            return;
                        }
                    }
                }
                hot = got;
                if got || !self.backlog.is_empty() || !self.buf.is_empty() {
                    self.attempt();
                    hot = true;
                } else {
                    self.maybe_sync(false);
                }
                if !self.shared.healthy.load(Ordering::Acquire) {
                    std::thread::sleep(RETRY);
                }
                continue;
            }
            let failing = !self.shared.healthy.load(Ordering::Acquire);
            let wait = if failing {
                RETRY
            } else {
                self.opts.fsync_interval
            };
            match rx.recv_timeout(wait) {
                Ok(m) => {
                    self.take(m);
                    while let Ok(m) = rx.try_recv() {
                        self.take(m);
                        if self.backlog.len() >= 4096 {
                            break;
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.attempt();
                    self.maybe_sync(true);
                    return;
                }
            }
            self.attempt();
            hot = true;
            if !self.shared.healthy.load(Ordering::Acquire) {
                std::thread::sleep(RETRY);
            }
        }
    }
}

/// Open the sink and write its first line now (so its health is known), then run it on
/// its own thread.
pub(crate) fn spawn(
    opts: Options,
    shared: Arc<Shared>,
) -> (
    std::sync::mpsc::Sender<Msg>,
    Option<std::thread::JoinHandle<()>>,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut w = Writer {
        opts,
        shared,
        link: Link::genesis(),
        file: None,
        backlog: VecDeque::new(),
        buf: String::new(),
        buf_in_file: false,
        buf_records: 0,
        flushes: Vec::new(),
        needs_open: true,
        last_error: None,
    };
    w.attempt();
    let thread = std::thread::Builder::new()
        .name("fentaris-audit".into())
        .spawn(move || w.run(rx))
        .map_err(|e| tracing::error!("cannot start the audit thread: {e}"))
        .ok();
    (tx, thread)
}
