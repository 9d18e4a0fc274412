//! The sink thread. Records arrive on a channel; each is sealed into the chain and written
//! (file, stdout or both) in batches: one `write` per batch, `fsync` every `fsyncInterval`.
//! A batch that cannot be written stays queued, sealed, and is retried; until it goes
//! through the log is unhealthy and [`super::AuditLog::admit`] refuses new requests.
//! Files rotate by size: `audit.jsonl` → `audit.jsonl.1` → … → `audit.jsonl.<keepFiles>`.
//!
//! One writer per file: the sink holds an exclusive lock on `<path>.lock` (and on the file it
//! appends to) for its whole life; a second sink on the same file refuses to start. Before
//! every batch it compares the open file with the path (`fstat` of the descriptor against
//! `lstat` of the path, link count, and the size it wrote): a file renamed, unlinked,
//! replaced, truncated or appended to by someone else stops the sink for good (fail closed).
//! After each `fsync` it seals a checkpoint (the last `seq` and chain value) beside the
//! config, and at start it refuses to continue a log that ends before its checkpoint.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;

use super::Shared;
use super::chain::{ChainKey, GENESIS, Link, Sealer, split_line};
use super::checkpoint::{Checkpoint, FileId};
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
    /// Where the sealed checkpoint is kept (`None`: no checkpoint), and the log's name in it.
    pub checkpoint: Option<PathBuf>,
    pub log_name: String,
}

impl Options {
    /// From the config's `audit` section; `dir` is the config's folder.
    pub fn from_config(audit: &crate::config::Audit, dir: &Path, key: ChainKey) -> Options {
        use crate::config::AuditSink;
        let path = dir.join(&audit.path);
        let file = audit.sink != AuditSink::Stdout;
        Options {
            checkpoint: file.then(|| super::checkpoint::path_for(dir)),
            log_name: super::checkpoint::log_name(dir, &path),
            path: file.then_some(path),
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
    /// A record, serialised by the writer straight into its buffer ([`Record::write_line`]).
    /// Boxed: a record is ~0.5 KB, and queue slots (the channel's blocks, the backlog) are
    /// sized for their largest message; unboxed, a burst of records (10,000 sessions
    /// opened at once) left megabytes of queue behind.
    Record(Box<Record>),
    Flush(std::sync::mpsc::Sender<()>),
    /// Makes the sink thread panic (what a bug there would do).
    #[cfg(test)]
    Panic,
}

struct FileSink {
    file: File,
    /// Bytes known to be in the file (a failed write is cut back to this).
    size: u64,
    regular: bool,
    /// (device, inode) of the open file, to compare with the path before each batch.
    id: (u64, u64),
    dirty: bool,
    synced: Instant,
    /// Where the part of the file that may still be in the page cache starts.
    cached_from: u64,
}

impl FileSink {
    /// The regular file we append to, as long as `m` (its metadata) says.
    fn regular(file: File, m: &std::fs::Metadata) -> FileSink {
        FileSink {
            file,
            size: m.len(),
            regular: true,
            id: file_id(m),
            dirty: false,
            synced: Instant::now(),
            cached_from: 0,
        }
    }

    /// A device or a pipe: nothing to compare with the path, fsync or drop from the cache.
    fn device(file: File) -> FileSink {
        FileSink {
            file,
            size: 0,
            regular: false,
            id: (0, 0),
            dirty: false,
            synced: Instant::now(),
            cached_from: 0,
        }
    }
    /// Drop the file's durable pages from the page cache. Fentaris never reads them back
    /// while it writes, and on a busy proxy the log would otherwise fill the cache, push
    /// out what other programs read, and make every new line land on a page the kernel
    /// must first find and clear. Unless the file is done (`whole`: rotated away), only
    /// whole 64 KiB blocks below the end are dropped: the page being appended to stays
    /// (dropping it would make the next append read it back from disk). Call only when
    /// everything written is durable (the pages are clean). Advice only: when the kernel
    /// ignores it, nothing changes.
    fn drop_cached(&mut self, whole: bool) {
        const BLOCK: u64 = 64 << 10;
        let end = if whole {
            self.size
        } else {
            self.size & !(BLOCK - 1)
        };
        if !self.regular || end <= self.cached_from {
            return;
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            if let (Ok(from), Ok(len)) = (
                libc::off_t::try_from(self.cached_from),
                libc::off_t::try_from(end - self.cached_from),
            ) {
                // SAFETY: posix_fadvise reads no memory of ours; the descriptor is open
                // (owned by `self.file`) for the whole call.
                unsafe {
                    libc::posix_fadvise(
                        self.file.as_raw_fd(),
                        from,
                        len,
                        libc::POSIX_FADV_DONTNEED,
                    );
                }
            }
        }
        self.cached_from = end;
    }
}

/// How the open file stopped being ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tamper {
    Renamed,
    Unlinked,
    Replaced,
    Truncated,
    Appended,
}

impl Tamper {
    fn kind(self) -> &'static str {
        match self {
            Tamper::Renamed => "renamed",
            Tamper::Unlinked => "unlinked",
            Tamper::Replaced => "replaced",
            Tamper::Truncated => "truncated",
            Tamper::Appended => "appended",
        }
    }

    fn explain(self) -> &'static str {
        match self {
            Tamper::Renamed => "was renamed or moved away",
            Tamper::Unlinked => "was deleted",
            Tamper::Replaced => "was replaced by another file (or a link)",
            Tamper::Truncated => "was truncated (bytes Fentaris wrote are gone)",
            Tamper::Appended => "was written to by another process (bytes Fentaris did not write)",
        }
    }

    /// Whether the open file still holds only what we wrote, so a record can be appended.
    fn file_intact(self) -> bool {
        matches!(self, Tamper::Renamed | Tamper::Unlinked | Tamper::Replaced)
    }
}

/// (device, inode) of a file.
#[cfg(unix)]
fn file_id(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}
#[cfg(not(unix))]
fn file_id(_: &std::fs::Metadata) -> (u64, u64) {
    (0, 0)
}

#[cfg(unix)]
fn nlink(m: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::nlink(m)
}
#[cfg(not(unix))]
fn nlink(_: &std::fs::Metadata) -> u64 {
    1
}

struct Writer {
    opts: Options,
    /// `opts.key`, ready to seal many lines.
    sealer: Sealer,
    shared: Arc<Shared>,
    link: Link,
    file: Option<FileSink>,
    /// Records received, not yet sealed.
    backlog: VecDeque<Box<Record>>,
    /// Sealed lines not yet written, and how many queued records they hold.
    buf: String,
    /// The file already has `buf` (only stdout failed): do not append it again.
    buf_in_file: bool,
    buf_records: usize,
    flushes: Vec<std::sync::mpsc::Sender<()>>,
    /// Whether the file still has to be opened (or reopened after a failure).
    needs_open: bool,
    last_error: Option<String>,
    /// The lock on `<path>.lock`, held for the life of the sink.
    lock: Option<File>,
    /// A problem no retry can fix (another writer, a symlink, a log behind its checkpoint,
    /// the file tampered with): the sink stays failed.
    fatal: Option<String>,
    /// Whether the log has been compared with its checkpoint (at the first open).
    checkpoint_checked: bool,
    checkpoint_error: Option<String>,
    /// Past the first attempt: errors are logged here, not returned as the start's error.
    running: bool,
}

/// fsync the open file's data (nothing to do for a pipe or a terminal).
fn sync(f: &FileSink, path: Option<&Path>) -> std::io::Result<()> {
    #[cfg(test)]
    if path.is_some_and(tests::sync_fails) {
        return Err(std::io::Error::from_raw_os_error(libc::EIO));
    }
    #[cfg(not(test))]
    let _ = path;
    if f.regular {
        f.file.sync_data()
    } else {
        Ok(())
    }
}

/// Rotated file `i` of `path` (`audit.jsonl.1` is the newest).
pub fn rotated(path: &Path, i: u32) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

/// What the end of an existing audit file says.
struct Tail {
    /// The link to continue from.
    link: Link,
    /// Whether the file is intact for appending (whole lines, chained with our algorithm).
    intact: bool,
    /// Whether the file was started by a writer that keeps a checkpoint.
    checkpointed: bool,
    /// The chain algorithm its `file.start` names.
    algorithm: Option<String>,
}

/// The chain state at the end of a regular file, if its lines are whole and chained with
/// `algorithm`. Never follows a symlink.
fn tail_link(path: &Path, algorithm: &str) -> Option<Tail> {
    let mut f = super::checkpoint::open_read_nofollow(path).ok()?;
    let meta = f.metadata().ok()?;
    if !meta.is_file() || meta.len() == 0 {
        return None;
    }
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
    // A crash can leave half a line: the chain continues from the last whole one.
    let text = if whole {
        &text[..]
    } else {
        &text[..text.rfind('\n')?]
    };
    let last = text.trim_end_matches('\n').rsplit('\n').next()?;
    let (body, value) = split_line(last)?;
    let rec: serde_json::Value = serde_json::from_str(&format!("{body}}}")).ok()?;
    let seq = rec.get("seq")?.as_u64()?;
    let start = split_line(&first)
        .and_then(|(b, _)| serde_json::from_str::<serde_json::Value>(&format!("{b}}}")).ok());
    let same_alg = start
        .as_ref()
        .and_then(|r| r.pointer("/detail/chain").and_then(|a| a.as_str()))
        .is_some_and(|a| a == algorithm);
    let checkpointed = start
        .as_ref()
        .is_some_and(|r| r.pointer("/detail/checkpoint").is_some());
    Some(Tail {
        link: Link {
            prev: value.to_string(),
            seq: seq + 1,
        },
        intact: whole && same_alg,
        checkpointed,
        algorithm: start
            .as_ref()
            .and_then(|r| r.pointer("/detail/chain").and_then(|a| a.as_str()))
            .map(str::to_string),
    })
}

/// Open a file for appending, never through a symlink. A file this creates gets mode 0600
/// whatever the umask.
fn open_append(path: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.append(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    match o.open(path) {
        Ok(f) => {
            set_mode(&f, 0o600)?;
            Ok(f)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mut o = OpenOptions::new();
            o.append(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::custom_flags(&mut o, libc::O_NOFOLLOW);
            o.open(path)
        }
        Err(e) => Err(e),
    }
}

#[cfg(unix)]
fn set_mode(f: &File, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
}
#[cfg(not(unix))]
fn set_mode(_: &File, _: u32) -> std::io::Result<()> {
    Ok(())
}

/// Create `dir` and its missing parents, each with mode 0700 whatever the umask.
fn create_dirs(dir: &Path) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut d = Some(dir);
    while let Some(p) =
        d.filter(|p| !p.as_os_str().is_empty() && std::fs::symlink_metadata(p).is_err())
    {
        missing.push(p.to_path_buf());
        d = p.parent();
    }
    for p in missing.into_iter().rev() {
        let mut b = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        match b.create(&p) {
            Ok(()) => {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700))?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The lock file of an audit file: `<path>.lock`.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".lock");
    PathBuf::from(s)
}

/// The message of a second writer.
fn locked_message(path: &Path, lock: &Path) -> String {
    format!(
        "another fentaris process is writing the audit log {} (it holds {}); two writers would corrupt the chain\nhelp: stop the other `fentaris serve` first, or give this one its own log (\"audit\": {{ \"path\": \"...\" }} in its config)",
        path.display(),
        lock.display()
    )
}

fn symlink_message(p: &Path) -> String {
    format!(
        "the audit file {} is a symbolic link; Fentaris does not write audit files through links\nhelp: replace it with the file it points to (or remove it)",
        p.display()
    )
}

impl Writer {
    /// The log's path as text for messages (empty for stdout).
    fn path_text(&self) -> String {
        self.opts
            .path
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }

    fn alg(&self) -> &'static str {
        self.opts.key.algorithm()
    }

    fn start_record(&self, prev_file: &str, note: Option<&str>) -> Record {
        let mut detail = json!({ "chain": self.alg(), "prevFile": prev_file });
        if self.opts.checkpoint.is_some() && self.file.as_ref().is_some_and(|f| f.regular) {
            // Tells `logs verify` (and the next start) that a checkpoint must exist.
            detail["checkpoint"] = json!(super::checkpoint::FILE);
        }
        if let Some(n) = note {
            detail["note"] = json!(n);
        }
        Record::new("file.start").detail(detail)
    }

    /// Write a record, with its `seq` and `audit.tags`, into the write buffer and seal it.
    fn seal(&mut self, record: &Record, counts: bool) {
        let start = self.buf.len();
        record.write_line(&mut self.buf, Some(self.link.seq), &self.opts.tags);
        self.link.seal_at(&self.sealer, &mut self.buf, start);
        if counts {
            self.buf_records += 1;
        }
    }

    /// A problem no retry fixes: the sink stays failed with this message.
    fn fail(&mut self, msg: String) -> std::io::Error {
        if self.running {
            tracing::error!("{msg}");
        }
        self.fatal = Some(msg.clone());
        self.shared.stopped.store(true, Ordering::Release);
        std::io::Error::other(msg)
    }

    /// Take the writer lock (`<path>.lock`), once for the life of the sink.
    fn take_lock(&mut self, path: &Path) -> std::io::Result<()> {
        if self.lock.is_some() {
            return Ok(());
        }
        let lp = lock_path(path);
        let mut o = OpenOptions::new();
        o.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
            std::os::unix::fs::OpenOptionsExt::custom_flags(&mut o, libc::O_NOFOLLOW);
        }
        let f = match o.open(&lp) {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(self.fail(symlink_message(&lp)));
            }
            Err(e) => return Err(e),
        };
        match f.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(self.fail(locked_message(path, &lp)));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        self.lock = Some(f);
        Ok(())
    }

    /// Refuse symlinks at the path and the rotated paths.
    fn refuse_symlinks(&mut self, path: &Path) -> std::io::Result<()> {
        let keep = self.opts.keep_files.max(1);
        for p in std::iter::once(path.to_path_buf()).chain((1..=keep).map(|i| rotated(path, i))) {
            if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(self.fail(symlink_message(&p)));
            }
        }
        Ok(())
    }

    /// At the first open: the log must not end before its checkpoint. `tail` is what the
    /// end of the log says (`None`: no log); `checkpointed`: whether the log says it has one.
    fn check_checkpoint(
        &mut self,
        path: &Path,
        tail: Option<&Link>,
        checkpointed: bool,
        log_algorithm: Option<&str>,
    ) -> std::io::Result<()> {
        self.checkpoint_checked = true;
        let Some(cp_path) = self.opts.checkpoint.clone() else {
            return Ok(());
        };
        let how = "\nhelp: run `fentaris logs verify` and keep the audit files and the checkpoint as evidence; to start a new chain anyway, move the checkpoint (and the audit files) aside";
        // A plain-hash log from before the vault existed has a plain-hash checkpoint; the
        // log's own file says so (and is rotated away below, starting the keyed chain).
        let plain = ChainKey::Sha256;
        let key = if log_algorithm == Some(plain.algorithm()) {
            &plain
        } else {
            &self.opts.key
        };
        let cp = match Checkpoint::load(&cp_path, key) {
            Ok(Some(cp)) => cp,
            Ok(None) if checkpointed => {
                return Err(self.fail(format!(
                    "the audit checkpoint {} is missing, but the audit log {} was written with one: it was deleted, so a cut-off tail could go unnoticed{how}",
                    cp_path.display(),
                    path.display()
                )));
            }
            Ok(None) => return Ok(()),
            Err(e) => return Err(self.fail(format!("{e}{how}"))),
        };
        if cp.log != self.opts.log_name {
            tracing::warn!(
                "the audit checkpoint {} is for another log ({}); it is replaced by this log's",
                cp_path.display(),
                cp.log
            );
            return Ok(());
        }
        let last = tail.and_then(|l| l.seq.checked_sub(1).map(|s| (s, l.prev.as_str())));
        match last {
            Some((seq, _)) if seq > cp.seq => Ok(()),
            Some((seq, chain)) if seq == cp.seq && chain == cp.chain => Ok(()),
            Some((seq, _)) if seq == cp.seq => Err(self.fail(format!(
                "the audit log {} was replaced: its record with seq {seq} is not the one the checkpoint {} holds{how}",
                path.display(),
                cp_path.display()
            ))),
            _ => Err(self.fail(format!(
                "the audit log {} ends at seq {} but the checkpoint {} says records up to seq {} were written: its tail was cut off, or files were removed (expected last seq {}){how}",
                path.display(),
                last.map_or("- (no records)".to_string(), |(s, _)| s.to_string()),
                cp_path.display(),
                cp.seq,
                cp.seq
            ))),
        }
    }

    /// Open the file: resume its chain, or move an unusable file aside and start anew.
    fn open(&mut self) -> std::io::Result<()> {
        if let Some(f) = &self.fatal {
            return Err(std::io::Error::other(f.clone()));
        }
        let Some(path) = self.opts.path.clone() else {
            // Stdout only: one chain for the life of the process.
            let start = self.start_record(GENESIS, None);
            self.seal(&start, false);
            return Ok(());
        };
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
            && !dir.exists()
        {
            create_dirs(dir)?;
        }
        let meta = std::fs::symlink_metadata(&path).ok();
        let regular = meta
            .as_ref()
            .is_none_or(|m| m.is_file() || m.file_type().is_symlink());
        if !regular {
            // A device or pipe: no resume, no rotation, no lock or checkpoint.
            let file = OpenOptions::new().append(true).open(&path)?;
            self.file = Some(FileSink::device(file));
            let start = self.start_record(GENESIS, None);
            self.seal(&start, false);
            return Ok(());
        }
        self.take_lock(&path)?;
        self.refuse_symlinks(&path)?;
        let alg = self.alg();
        let tail = tail_link(&path, alg);
        let older = if tail.is_none() && meta.as_ref().is_none_or(|m| m.len() == 0) {
            tail_link(&rotated(&path, 1), alg)
        } else {
            None
        };
        if !self.checkpoint_checked {
            let known = tail.as_ref().or(older.as_ref());
            let link = known.map(|t| t.link.clone());
            let checkpointed = known.is_some_and(|t| t.checkpointed);
            let log_alg = known.and_then(|t| t.algorithm.clone());
            self.check_checkpoint(&path, link.as_ref(), checkpointed, log_alg.as_deref())?;
        }
        let mut note = None;
        let prev_file = match tail {
            Some(Tail {
                link, intact: true, ..
            }) => {
                // Continue the existing file's chain.
                let file = open_append(&path)?;
                self.lock_file(&file, &path)?;
                let m = file.metadata()?;
                self.link = link;
                self.file = Some(FileSink::regular(file, &m));
                return Ok(());
            }
            Some(Tail { link, .. }) => {
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
            None => match older {
                Some(Tail { link, .. }) => {
                    self.link = link;
                    self.link.prev.clone()
                }
                None => GENESIS.to_string(),
            },
        };
        let file = open_append(&path)?;
        self.lock_file(&file, &path)?;
        let m = file.metadata()?;
        if m.len() != 0 {
            // Someone created the file between our rename and our open: not ours.
            return Err(std::io::Error::other(format!(
                "{} appeared while the audit log was being rotated; it will be moved aside",
                path.display()
            )));
        }
        self.file = Some(FileSink::regular(file, &m));
        let start = self.start_record(&prev_file, note);
        self.seal(&start, false);
        Ok(())
    }

    /// Lock the file we append to, so another writer that got past the lock file (deleted
    /// and re-created by someone) still cannot append to it.
    fn lock_file(&mut self, file: &File, path: &Path) -> std::io::Result<()> {
        match file.try_lock() {
            Ok(()) => Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => Err(self.fail(locked_message(path, path))),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    /// Before a batch: is the open file still the one at the path, and only ours?
    fn check_file(&self) -> std::io::Result<Option<Tamper>> {
        let (Some(f), Some(path)) = (&self.file, &self.opts.path) else {
            return Ok(None);
        };
        if !f.regular {
            return Ok(None);
        }
        let m = f.file.metadata()?;
        if nlink(&m) == 0 {
            return Ok(Some(Tamper::Unlinked));
        }
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Some(Tamper::Renamed)),
            Err(e) => return Err(e),
            Ok(pm) if pm.file_type().is_symlink() || file_id(&pm) != f.id => {
                return Ok(Some(Tamper::Replaced));
            }
            Ok(_) => {}
        }
        Ok(match m.len().cmp(&f.size) {
            std::cmp::Ordering::Less => Some(Tamper::Truncated),
            std::cmp::Ordering::Greater => Some(Tamper::Appended),
            std::cmp::Ordering::Equal => None,
        })
    }

    /// The file was tampered with: say so in Fentaris' log, record it where that is still
    /// safe (the open file when it holds only our bytes; stdout), and stop for good.
    fn tampered(&mut self, t: Tamper) -> std::io::Error {
        let path = self.path_text();
        let msg = format!(
            "the audit log {path} {} while Fentaris was writing it; the audit sink is stopped and requests are refused (audit.onFailure: deny)\nhelp: keep the files as evidence, run `fentaris logs verify`, then restart `fentaris serve` (rotation is Fentaris' own: see audit.maxFileBytes)",
            t.explain()
        );
        let r = Record::new("audit.tamper").detail(json!({ "what": t.kind(), "path": path }));
        if t.file_intact() {
            self.seal(&r, false);
            if self.write_buf().is_ok()
                && let Some(f) = &mut self.file
            {
                let _ = f.file.sync_data();
            }
        } else if self.opts.stdout && self.buf.is_empty() {
            let mut line = String::new();
            std::mem::swap(&mut line, &mut self.buf);
            self.seal(&r, false);
            let text = std::mem::replace(&mut self.buf, line);
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
        }
        self.file = None;
        self.fail(msg)
    }

    /// Seal the checkpoint after an fsync: the last record now durable.
    fn store_checkpoint(&mut self) {
        let (Some(cp_path), Some(f)) = (&self.opts.checkpoint, &self.file) else {
            return;
        };
        if !f.regular || self.fatal.is_some() || !self.buf.is_empty() || self.link.seq == 0 {
            return;
        }
        let cp = Checkpoint::seal(
            &self.opts.key,
            self.opts.log_name.clone(),
            self.link.seq - 1,
            self.link.prev.clone(),
            FileId {
                dev: f.id.0,
                ino: f.id.1,
                size: f.size,
            },
        );
        match cp.store(cp_path) {
            Ok(()) => self.checkpoint_error = None,
            Err(e) => {
                let msg = e.to_string();
                if self.checkpoint_error.as_deref() != Some(&msg) {
                    tracing::error!(
                        "cannot write the audit checkpoint {}: {msg}; a cut-off tail of the log will not be detected until it can",
                        cp_path.display()
                    );
                }
                self.checkpoint_error = Some(msg);
            }
        }
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
        if let Some(t) = self.check_file()? {
            return Err(self.tampered(t));
        }
        if let Some(f) = &mut self.file {
            if let Err(e) = sync(f, Some(&path)) {
                return Err(self.sync_failed(&e));
            }
            f.drop_cached(true);
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
        if let Some(f) = &self.fatal {
            return Err(std::io::Error::other(f.clone()));
        }
        if self.needs_open {
            self.open()?;
            self.needs_open = false;
        }
        if let Some(t) = self.check_file()? {
            return Err(self.tampered(t));
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
            self.seal(&rec, true);
            if self.buf.len() >= BATCH_BYTES {
                self.write_buf()?;
            }
        }
        self.write_buf()
    }

    fn maybe_sync(&mut self, force: bool) {
        let Some(f) = &mut self.file else {
            return;
        };
        if !f.dirty || !(force || f.synced.elapsed() >= self.opts.fsync_interval) {
            return;
        }
        f.dirty = false;
        f.synced = Instant::now();
        match sync(f, self.opts.path.as_deref()) {
            Ok(()) => {
                f.drop_cached(false);
                self.store_checkpoint();
            }
            Err(e) => {
                self.sync_failed(&e);
            }
        }
    }

    /// fsync failed: lines already handed to the file may never reach the disk, and the
    /// kernel reports a failed writeback once, then forgets it (a second fsync succeeds
    /// without the lines). No retry can vouch for them, so the sink stops for good.
    fn sync_failed(&mut self, e: &std::io::Error) -> std::io::Error {
        let path = self.path_text();
        self.shared.healthy.store(false, Ordering::Release);
        self.fail(format!(
            "cannot fsync the audit log {path}: {e}; lines written since the last fsync may be lost, so the audit sink is stopped and requests are refused (audit.onFailure: deny)\nhelp: check the disk (space, errors), run `fentaris logs verify`, then restart `fentaris serve`"
        ))
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
                let first = self.shared.healthy.swap(false, Ordering::AcqRel);
                // A fatal problem was logged once where it was found (or, at start, is the
                // start's error).
                if self.fatal.is_none() && (first || self.last_error.as_deref() != Some(&msg)) {
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
            Msg::Record(r) => self.backlog.push_back(r),
            Msg::Flush(done) => self.flushes.push(done),
            #[cfg(test)]
            Msg::Panic => panic!("a test made the audit thread panic"),
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

/// The sink thread's channel and handle.
pub(crate) type Spawned = (
    std::sync::mpsc::Sender<Msg>,
    Option<std::thread::JoinHandle<()>>,
);

/// Open the sink and write its first line now (so its health is known), then run it on
/// its own thread. Refuses (writing nothing) when another writer holds the file, a path is
/// a symlink, or the log ends before its checkpoint.
pub(crate) fn spawn(opts: Options, shared: Arc<Shared>) -> Result<Spawned, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut w = Writer {
        sealer: Sealer::new(&opts.key),
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
        lock: None,
        fatal: None,
        checkpoint_checked: false,
        checkpoint_error: None,
        running: false,
    };
    w.attempt();
    if let Some(why) = w.fatal.take() {
        return Err(why);
    }
    w.running = true;
    let thread = std::thread::Builder::new()
        .name("fentaris-audit".into())
        .spawn(move || {
            let _guard = PanicGuard(w.shared.clone());
            w.run(rx)
        })
        .map_err(|e| format!("cannot start the audit thread: {e}"))?;
    Ok((tx, Some(thread)))
}

/// Fail closed if the sink thread ever panics: with nobody left to write, the sink is
/// unhealthy, so requests are refused (or, fail-open, counted as dropped) instead of
/// going on with their records lost.
struct PanicGuard(Arc<Shared>);

impl Drop for PanicGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.healthy.store(false, Ordering::Release);
            tracing::error!(
                "the audit thread stopped on a panic; requests are refused (audit.onFailure: deny)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditLog;
    use crate::secret::SecretKey;

    fn opts(dir: &Path) -> Options {
        Options {
            path: Some(dir.join("logs/audit.jsonl")),
            stdout: false,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            keep_files: 3,
            fsync_interval: Duration::from_millis(50),
            key: ChainKey::Hmac(SecretKey::from_bytes([9; 32])),
            tags: Default::default(),
            fail_open: false,
            checkpoint: Some(dir.join(super::super::checkpoint::FILE)),
            log_name: "logs/audit.jsonl".into(),
        }
    }

    fn key() -> ChainKey {
        ChainKey::Hmac(SecretKey::from_bytes([9; 32]))
    }

    /// Wait (up to 10 s) until the sink says it is unhealthy.
    fn wait_unhealthy(log: &AuditLog) {
        let start = Instant::now();
        while log.healthy() {
            assert!(start.elapsed() < Duration::from_secs(10), "still healthy");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Files whose fsync fails (what a disk error or a full disk does).
    static SYNC_FAILS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

    pub(super) fn sync_fails(path: &Path) -> bool {
        SYNC_FAILS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|p| p == path)
    }

    #[test]
    fn a_failed_fsync_stops_the_sink_for_good() {
        let d = tempfile::tempdir().unwrap();
        let log = log_with(d.path(), 3);
        assert!(log.healthy());
        let cp = d.path().join(super::super::checkpoint::FILE);
        let checkpoint = std::fs::read(&cp).unwrap();
        SYNC_FAILS
            .lock()
            .unwrap()
            .push(d.path().join("logs/audit.jsonl"));
        log.write(Record::new("request"));
        // The flush fsyncs: it fails, and the sink stops.
        log.flush(Duration::from_secs(5));
        wait_unhealthy(&log);
        // Writing works again, fsync too: the sink stays stopped, requests refused.
        SYNC_FAILS.lock().unwrap().clear();
        log.write(Record::new("request"));
        log.flush(Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(300));
        assert!(!log.healthy());
        let crate::audit::Mode::On { shared, .. } = &log.mode else {
            panic!("the log is on")
        };
        assert!(AuditLog::ready(shared).is_err());
        // No checkpoint vouches for lines that may be lost.
        assert_eq!(std::fs::read(&cp).unwrap(), checkpoint);
        let events: Vec<String> = text(d.path())
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"].to_string())
            .collect();
        // The line before the failure is in the file; none after it.
        assert_eq!(
            events.iter().filter(|e| *e == "\"request\"").count(),
            1,
            "{events:?}"
        );
    }

    #[test]
    fn a_failed_fsync_before_rotating_stops_the_sink_and_shifts_nothing() {
        let d = tempfile::tempdir().unwrap();
        let mut o = opts(d.path());
        o.max_file_bytes = 4096;
        o.fsync_interval = Duration::from_secs(3600);
        let log = AuditLog::start(o).unwrap();
        SYNC_FAILS
            .lock()
            .unwrap()
            .push(d.path().join("logs/audit.jsonl"));
        for _ in 0..40 {
            log.write(Record::new("request"));
        }
        log.flush(Duration::from_secs(2));
        wait_unhealthy(&log);
        assert!(!d.path().join("logs/audit.jsonl.1").exists());
        assert!(text(d.path()).len() <= 4096);
    }

    #[test]
    fn a_panic_on_the_audit_thread_fails_closed() {
        let d = tempfile::tempdir().unwrap();
        let log = AuditLog::start(opts(d.path())).unwrap();
        assert!(log.healthy());
        let crate::audit::Mode::On { tx, shared, .. } = &log.mode else {
            panic!("the log is on")
        };
        let tx = tx.lock().unwrap().clone().unwrap();
        tx.send(Msg::Panic).unwrap();
        wait_unhealthy(&log);
        // A request is refused now (audit.onFailure: deny): not let through unrecorded.
        assert!(AuditLog::ready(shared).is_err());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        assert!(rt.block_on(log.admit()).is_err());
    }

    #[test]
    fn seq_goes_after_time_and_the_rest_is_kept_byte_for_byte() {
        let mut r = Record::new("request");
        r.method = Some("tools/call".into());
        r.reason = Some("a \"quoted\", comma".into());
        r.tags.insert("mine".into(), "record".into());
        let tags = std::collections::BTreeMap::from([
            ("mine".to_string(), "config".to_string()),
            ("team".to_string(), "a".to_string()),
        ]);
        let text = r.to_json_tagged(&tags);
        // Appended after what the buffer holds, which it leaves alone.
        let mut buf = String::from("{\"seq\":41}\n");
        r.write_line(&mut buf, Some(42), &tags);
        let line = buf.strip_prefix("{\"seq\":41}\n").unwrap();
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["seq"], 42);
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys[..3], ["time", "seq", "event"]);
        assert_eq!(
            v["tags"],
            serde_json::json!({ "mine": "record", "team": "a" })
        );
        assert_eq!(line.replacen(",\"seq\":42", "", 1), text);
        // The largest seq there is.
        let mut buf = String::new();
        r.write_line(&mut buf, Some(u64::MAX), &tags);
        assert_eq!(buf.replacen(&format!(",\"seq\":{}", u64::MAX), "", 1), text);
    }

    fn log_with(dir: &Path, n: usize) -> AuditLog {
        let log = AuditLog::start(opts(dir)).unwrap();
        for _ in 0..n {
            log.write(Record::new("x"));
        }
        assert!(log.flush(Duration::from_secs(5)));
        log
    }

    fn text(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("logs/audit.jsonl")).unwrap()
    }

    fn verify(dir: &Path) -> crate::audit::chain::Verified {
        let lines: Vec<String> = text(dir).lines().map(str::to_string).collect();
        crate::audit::chain::verify(&[lines], &key()).unwrap()
    }

    /// Write one record and wait for the sink to take it (false: it refused).
    fn poke(log: &AuditLog) -> bool {
        log.write(Record::new("x"));
        log.flush(Duration::from_millis(600)) && log.healthy()
    }

    #[test]
    fn a_second_writer_on_the_same_file_is_refused_and_writes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let first = log_with(d.path(), 2);
        let before = text(d.path());
        let e = AuditLog::start(opts(d.path())).err().unwrap();
        assert!(
            e.contains("another fentaris process is writing the audit log"),
            "{e}"
        );
        assert!(e.contains("audit.jsonl.lock") && e.contains("help:"), "{e}");
        assert_eq!(text(d.path()), before);
        // Someone deletes the lock file: the lock on the log itself still refuses.
        std::fs::remove_file(lock_path(&d.path().join("logs/audit.jsonl"))).unwrap();
        let e = AuditLog::start(opts(d.path())).err().unwrap();
        assert!(e.contains("another fentaris process"), "{e}");
        assert_eq!(text(d.path()), before);
        assert!(poke(&first));
        first.close(Duration::from_secs(2));
        drop(first);
        // Once the first is gone, a new writer continues the chain.
        let again = log_with(d.path(), 1);
        again.close(Duration::from_secs(2));
        assert_eq!(verify(d.path()).records, 5);
    }

    #[test]
    fn renaming_the_file_is_noticed_recorded_in_it_and_fails_closed() {
        let d = tempfile::tempdir().unwrap();
        let log = log_with(d.path(), 2);
        let moved = d.path().join("moved.jsonl");
        std::fs::rename(d.path().join("logs/audit.jsonl"), &moved).unwrap();
        assert!(!poke(&log));
        assert!(!log.healthy());
        assert!(!poke(&log), "stays failed");
        // The moved file ends with the tamper record, chained.
        let t = std::fs::read_to_string(&moved).unwrap();
        let last = t.lines().last().unwrap();
        assert!(
            last.contains("\"event\":\"audit.tamper\"") && last.contains("renamed"),
            "{last}"
        );
        let lines: Vec<String> = t.lines().map(str::to_string).collect();
        crate::audit::chain::verify(&[lines], &key()).unwrap();
        // Nothing was written at the path.
        assert!(!d.path().join("logs/audit.jsonl").exists());
    }

    #[test]
    fn unlinking_or_replacing_the_file_fails_closed() {
        let d = tempfile::tempdir().unwrap();
        let log = log_with(d.path(), 1);
        std::fs::remove_file(d.path().join("logs/audit.jsonl")).unwrap();
        assert!(!poke(&log));
        drop(log);

        let d = tempfile::tempdir().unwrap();
        let log = log_with(d.path(), 1);
        let p = d.path().join("logs/audit.jsonl");
        std::fs::write(d.path().join("other"), "forged\n").unwrap();
        std::fs::rename(d.path().join("other"), &p).unwrap();
        assert!(!poke(&log));
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "forged\n",
            "never written to"
        );
    }

    #[test]
    fn appended_or_truncated_bytes_fail_closed_without_writing_more() {
        let d = tempfile::tempdir().unwrap();
        let log = log_with(d.path(), 2);
        let p = d.path().join("logs/audit.jsonl");
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"seq\":99,\"event\":\"forged\"}\n").unwrap();
        let after = text(d.path());
        assert!(!poke(&log));
        assert_eq!(text(d.path()), after);
        drop(log);

        let d = tempfile::tempdir().unwrap();
        let log = log_with(d.path(), 3);
        let p = d.path().join("logs/audit.jsonl");
        let t = text(d.path());
        let cut = t.trim_end().rfind('\n').unwrap() + 1;
        OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(cut as u64)
            .unwrap();
        assert!(!poke(&log));
        assert_eq!(text(d.path()).len(), cut);
    }

    #[test]
    fn the_checkpoint_follows_fsync_and_a_cut_log_is_refused_at_start() {
        let d = tempfile::tempdir().unwrap();
        let log = log_with(d.path(), 3);
        log.close(Duration::from_secs(2));
        drop(log);
        let cp_path = d.path().join(super::super::checkpoint::FILE);
        let cp = Checkpoint::load(&cp_path, &key()).unwrap().unwrap();
        let v = verify(d.path());
        assert_eq!(
            (Some(cp.seq), cp.chain.as_str()),
            (v.last_seq, v.last.as_str())
        );
        assert!(
            text(d.path())
                .lines()
                .next()
                .unwrap()
                .contains("\"checkpoint\"")
        );

        // Cut the last line while nothing runs: the next start refuses, writing nothing.
        let p = d.path().join("logs/audit.jsonl");
        let t = text(d.path());
        let cut = &t[..t.trim_end().rfind('\n').unwrap() + 1];
        std::fs::write(&p, cut).unwrap();
        let e = AuditLog::start(opts(d.path())).err().unwrap();
        assert!(
            e.contains("tail was cut off") && e.contains(&format!("expected last seq {}", cp.seq)),
            "{e}"
        );
        assert_eq!(text(d.path()), cut);
        // All files removed: refused too.
        std::fs::remove_file(&p).unwrap();
        let e = AuditLog::start(opts(d.path())).err().unwrap();
        assert!(e.contains("no records"), "{e}");
        std::fs::write(&p, &t).unwrap();
        // A forged checkpoint is refused.
        let forged = std::fs::read_to_string(&cp_path)
            .unwrap()
            .replace(&format!("\"seq\": {}", cp.seq), "\"seq\": 1");
        std::fs::write(&cp_path, forged).unwrap();
        let e = AuditLog::start(opts(d.path())).err().unwrap();
        assert!(e.contains("edited or forged"), "{e}");
        // A deleted checkpoint is refused (the log says it has one).
        std::fs::remove_file(&cp_path).unwrap();
        let e = AuditLog::start(opts(d.path())).err().unwrap();
        assert!(e.contains("is missing"), "{e}");
        assert_eq!(text(d.path()), t);
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_refused_and_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let log = log_with(d.path(), 1);
        log.close(Duration::from_secs(2));
        drop(log);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&d.path().join("logs")), 0o700);
        assert_eq!(mode(&d.path().join("logs/audit.jsonl")), 0o600);
        assert_eq!(mode(&d.path().join("logs/audit.jsonl.lock")), 0o600);

        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("logs")).unwrap();
        let target = d.path().join("elsewhere");
        std::fs::write(&target, "").unwrap();
        std::os::unix::fs::symlink(&target, d.path().join("logs/audit.jsonl")).unwrap();
        let e = AuditLog::start(opts(d.path())).err().unwrap();
        assert!(
            e.contains("symbolic link") && e.contains("audit.jsonl"),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "");
        std::fs::remove_file(d.path().join("logs/audit.jsonl")).unwrap();
        std::os::unix::fs::symlink(&target, d.path().join("logs/audit.jsonl.2")).unwrap();
        let e = AuditLog::start(opts(d.path())).err().unwrap();
        assert!(e.contains("audit.jsonl.2"), "{e}");
    }

    #[test]
    fn half_a_line_left_by_a_crash_is_rotated_away_and_the_chain_continues() {
        let d = tempfile::tempdir().unwrap();
        let log = log_with(d.path(), 2);
        log.close(Duration::from_secs(2));
        drop(log);
        let p = d.path().join("logs/audit.jsonl");
        let whole = text(d.path());
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"time\":\"2026-").unwrap();
        drop(f);
        let log = log_with(d.path(), 1);
        log.close(Duration::from_secs(2));
        drop(log);
        let old = std::fs::read_to_string(rotated(&p, 1)).unwrap();
        assert!(old.starts_with(&whole));
        let new = text(d.path());
        assert!(new.contains("incomplete line"), "{new}");
        let lines: Vec<String> = new.lines().map(str::to_string).collect();
        let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        let (_, last_whole) = split_line(whole.lines().last().unwrap()).unwrap();
        assert_eq!(first["detail"]["prevFile"], last_whole);
    }

    #[test]
    fn a_vault_created_later_starts_a_keyed_chain_without_refusing() {
        let d = tempfile::tempdir().unwrap();
        let mut o = opts(d.path());
        o.key = ChainKey::Sha256;
        let log = AuditLog::start(o).unwrap();
        log.write(Record::new("x"));
        log.close(Duration::from_secs(2));
        drop(log);
        // Now with the vault's key: the plain file is rotated away, the checkpoint re-sealed.
        let log = log_with(d.path(), 1);
        log.close(Duration::from_secs(2));
        drop(log);
        assert!(d.path().join("logs/audit.jsonl.1").exists());
        let cp = Checkpoint::load(&d.path().join(super::super::checkpoint::FILE), &key())
            .unwrap()
            .unwrap();
        assert_eq!(Some(cp.seq), verify(d.path()).last_seq);
        // But a keyed log with a plain-hash checkpoint is a forgery.
        let forged = Checkpoint::seal(&ChainKey::Sha256, cp.log, cp.seq + 5, cp.chain, cp.file);
        forged
            .store(&d.path().join(super::super::checkpoint::FILE))
            .unwrap();
        let e = AuditLog::start(opts(d.path())).err().unwrap();
        assert!(e.contains("edited or forged"), "{e}");
    }

    /// The cost of the per-batch file check (fstat + lstat), next to the batch's own write.
    /// `cargo test --lib check_cost -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn check_cost() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("a.jsonl");
        let file = open_append(&path).unwrap();
        let m = file.metadata().unwrap();
        let (tx, _rx) = std::sync::mpsc::channel::<Msg>();
        drop(tx);
        let mut o = opts(d.path());
        o.path = Some(path);
        let mut w = Writer {
            sealer: Sealer::new(&o.key),
            opts: o,
            shared: Arc::new(Shared {
                queued: Default::default(),
                healthy: Default::default(),
                written: Default::default(),
                dropped: Default::default(),
                failures: Default::default(),
                stopped: Default::default(),
            }),
            link: Link::genesis(),
            file: Some(FileSink::regular(file, &m)),
            backlog: VecDeque::new(),
            buf: String::new(),
            buf_in_file: false,
            buf_records: 0,
            flushes: Vec::new(),
            needs_open: false,
            last_error: None,
            lock: None,
            fatal: None,
            checkpoint_checked: true,
            checkpoint_error: None,
            running: true,
        };
        let n = 100_000;
        let t = Instant::now();
        for _ in 0..n {
            assert_eq!(w.check_file().unwrap(), None);
        }
        let check = t.elapsed() / n;
        let line = "x".repeat(600) + "\n";
        let t = Instant::now();
        for _ in 0..n / 10 {
            w.buf.push_str(&line);
            w.buf.push_str(&line);
            w.write_buf().unwrap();
        }
        let write = t.elapsed() / (n / 10);
        w.link.seq = 5;
        let t = Instant::now();
        for _ in 0..20 {
            w.store_checkpoint();
        }
        let cp = t.elapsed() / 20;
        assert!(w.checkpoint_error.is_none());
        eprintln!(
            "check_file: {check:?} per batch; write of a 2-record batch: {write:?}; checkpoint (once per fsyncInterval): {cp:?}"
        );
    }

    #[test]
    fn rotation_keeps_one_chain_and_the_checkpoint_moves_on() {
        let d = tempfile::tempdir().unwrap();
        let mut o = opts(d.path());
        o.max_file_bytes = 2_000;
        let log = AuditLog::start(o).unwrap();
        for _ in 0..60 {
            log.write(Record::new("x"));
        }
        assert!(log.flush(Duration::from_secs(5)));
        assert!(log.healthy());
        log.close(Duration::from_secs(2));
        drop(log);
        let p = d.path().join("logs/audit.jsonl");
        let files: Vec<Vec<String>> = super::super::read::file_set(&p)
            .iter()
            .map(|f| super::super::read::lines(f).unwrap())
            .collect();
        assert!(files.len() >= 2);
        let v = crate::audit::chain::verify(&files, &key()).unwrap();
        let cp = Checkpoint::load(&d.path().join(super::super::checkpoint::FILE), &key())
            .unwrap()
            .unwrap();
        assert_eq!(Some(cp.seq), v.last_seq);
    }

    /// Which pages of the file at `path` are in the page cache (`mincore` on a mapping).
    #[cfg(target_os = "linux")]
    fn resident(path: &Path) -> Vec<bool> {
        use std::os::fd::AsRawFd;
        let f = File::open(path).unwrap();
        let len = usize::try_from(f.metadata().unwrap().len()).unwrap();
        // SAFETY: a read-only shared mapping of a file we opened, unmapped before
        // returning; `mincore` writes one byte per page into a vector sized for them.
        unsafe {
            let page = page_size();
            let map = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            );
            assert_ne!(map, libc::MAP_FAILED);
            let mut v = vec![0u8; len.div_ceil(page)];
            assert_eq!(libc::mincore(map, len, v.as_mut_ptr()), 0);
            libc::munmap(map, len);
            v.into_iter().map(|b| b & 1 == 1).collect()
        }
    }

    #[cfg(target_os = "linux")]
    fn page_size() -> usize {
        // SAFETY: sysconf reads no memory of ours.
        usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap()
    }

    /// A sink on a new file of `size` bytes, written and fsynced (every page cached).
    #[cfg(target_os = "linux")]
    fn synced_sink(path: &Path, size: u64) -> FileSink {
        let mut file = open_append(path).unwrap();
        file.write_all(&vec![b'x'; size as usize]).unwrap();
        file.sync_data().unwrap();
        let m = file.metadata().unwrap();
        FileSink::regular(file, &m)
    }

    /// A directory whose file system drops pages on advice (tmpfs and ramfs keep them
    /// whatever the advice): the temporary directory, else this crate's target directory.
    #[cfg(target_os = "linux")]
    fn droppable_dir() -> Option<tempfile::TempDir> {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
        [std::env::temp_dir(), target].into_iter().find_map(|base| {
            std::fs::create_dir_all(&base).ok()?;
            let d = tempfile::tempdir_in(&base).ok()?;
            let probe = d.path().join("probe");
            let mut f = synced_sink(&probe, 256 << 10);
            f.drop_cached(true);
            let gone = !resident(&probe).iter().any(|&r| r);
            std::fs::remove_file(&probe).ok()?;
            gone.then_some(d)
        })
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn durable_pages_leave_the_page_cache_but_the_one_being_appended_to_stays() {
        let Some(d) = droppable_dir() else {
            eprintln!("skipped: no file system here drops cached pages on advice");
            return;
        };
        let path = d.path().join("a.jsonl");
        let size = (300u64 << 10) + 100;
        let mut f = synced_sink(&path, size);
        assert!(
            resident(&path).iter().all(|&r| r),
            "written pages are cached"
        );
        let page = page_size();
        let at = |bytes: usize| bytes / page;
        f.drop_cached(false);
        assert_eq!(f.cached_from, 256 << 10, "whole 64 KiB blocks only");
        let after = resident(&path);
        assert!(
            after[..at(256 << 10)].iter().all(|&r| !r),
            "dropped: {after:?}"
        );
        assert!(after[at(256 << 10)..].iter().all(|&r| r), "kept: {after:?}");
        // Again with nothing new: nothing to do.
        f.drop_cached(false);
        assert_eq!(f.cached_from, 256 << 10);
        // More lines, durable: from where the last drop ended, up to the new last block.
        f.file.write_all(&vec![b'y'; 100 << 10]).unwrap();
        f.file.sync_data().unwrap();
        f.size += 100 << 10;
        f.drop_cached(false);
        assert_eq!(f.cached_from, 384 << 10);
        let after = resident(&path);
        assert!(
            after[..at(384 << 10)].iter().all(|&r| !r),
            "dropped: {after:?}"
        );
        assert!(after[at(384 << 10)..].iter().all(|&r| r), "kept: {after:?}");
        // A file rotated away goes whole.
        f.drop_cached(true);
        assert_eq!(f.cached_from, f.size);
        assert!(resident(&path).iter().all(|&r| !r));
    }
}
