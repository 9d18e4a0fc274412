//! The audit trail: one JSON line per request (decision and outcome together), plus lines
//! for authentication failures, sessions, upstream starts and exits, and middleware events.
//!
//! - [`record`]: the record schema, the shape of arguments (never values), URI redaction.
//! - [`chain`]: the HMAC chain over lines and its verification (pure).
//! - [`writer`]: the sink thread: bounded queue, file with rotation and fsync, stdout.
//! - [`read`]: reading rotated files back for `logs tail|summary|verify`.
//!
//! The request path never waits for the disk: [`AuditLog::admit`] checks, before a request
//! is forwarded, that the sink is healthy and the queue has room (waiting briefly if not,
//! then refusing: fail closed), and [`AuditLog::write`] hands a record to the queue. A
//! record in the queue is kept until the sink accepts it; none is dropped unless
//! `audit.onFailure` is `allow`.

pub mod chain;
pub mod checkpoint;
pub mod read;
pub mod record;
pub mod writer;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use chain::ChainKey;
pub use record::{Record, RuleRef, Slot, SubjectRef, args_shape, args_shape_json, redact_uri};

/// Records waiting for the sink, beyond which new requests wait and are then refused.
pub const QUEUE_CAPACITY: usize = 16_384;
/// How long a request waits for the sink to recover or the queue to drain.
pub const ADMIT_WAIT: Duration = Duration::from_millis(1_000);

/// Why a request cannot be admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the audit log cannot record this request ({0}); it was refused because audit.onFailure is `deny`"
)]
pub struct Unavailable(pub &'static str);

pub(crate) struct Shared {
    pub queued: AtomicUsize,
    pub healthy: AtomicBool,
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    pub failures: AtomicU64,
    /// The sink stopped for good (the file was tampered with): waiting for it is pointless.
    pub stopped: AtomicBool,
}

enum Mode {
    Off,
    On {
        tx: Mutex<Option<std::sync::mpsc::Sender<writer::Msg>>>,
        shared: Arc<Shared>,
        fail_open: bool,
        thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    },
}

/// The handle the proxy writes through. Cheap to share; off when `autoLog` is false.
pub struct AuditLog {
    mode: Mode,
}

impl Default for AuditLog {
    fn default() -> Self {
        AuditLog::off()
    }
}

impl AuditLog {
    /// No audit (`autoLog: false`).
    pub fn off() -> AuditLog {
        AuditLog { mode: Mode::Off }
    }

    /// Start the sink: opens (or resumes) the file and writes its first record before
    /// returning, so a sink that cannot be written is known before the first request.
    /// Refuses, writing nothing, when another process writes the same file, a path is a
    /// symlink, or the log ends before its checkpoint (the error says what to do).
    pub fn start(options: writer::Options) -> Result<AuditLog, String> {
        let shared = Arc::new(Shared {
            queued: AtomicUsize::new(0),
            healthy: AtomicBool::new(true),
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        });
        let fail_open = options.fail_open;
        let (tx, thread) = writer::spawn(options, shared.clone())?;
        Ok(AuditLog {
            mode: Mode::On {
                tx: Mutex::new(Some(tx)),
                shared,
                fail_open,
                thread: Mutex::new(thread),
            },
        })
    }

    pub fn enabled(&self) -> bool {
        matches!(self.mode, Mode::On { .. })
    }

    /// Whether the sink currently accepts records (for `/readyz`).
    pub fn healthy(&self) -> bool {
        match &self.mode {
            Mode::Off => true,
            Mode::On { shared, .. } => shared.healthy.load(Ordering::Acquire),
        }
    }

    /// (written, dropped, sink failures, queued) for `/metrics`.
    pub fn counters(&self) -> Option<(u64, u64, u64, usize)> {
        match &self.mode {
            Mode::Off => None,
            Mode::On { shared, .. } => Some((
                shared.written.load(Ordering::Relaxed),
                shared.dropped.load(Ordering::Relaxed),
                shared.failures.load(Ordering::Relaxed),
                shared.queued.load(Ordering::Relaxed),
            )),
        }
    }

    fn ready(shared: &Shared) -> Result<(), &'static str> {
        if !shared.healthy.load(Ordering::Acquire) {
            return Err("the audit sink cannot be written");
        }
        if shared.queued.load(Ordering::Acquire) >= QUEUE_CAPACITY {
            return Err("the audit queue is full");
        }
        Ok(())
    }

    /// Before a request goes anywhere: may it proceed? Waits up to [`ADMIT_WAIT`] for a
    /// failing sink to recover or a full queue to drain, then refuses (unless fail-open).
    pub async fn admit(&self) -> Result<(), Unavailable> {
        let Mode::On {
            shared, fail_open, ..
        } = &self.mode
        else {
            return Ok(());
        };
        if Self::ready(shared).is_ok() || *fail_open {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + ADMIT_WAIT;
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            match Self::ready(shared) {
                Ok(()) => return Ok(()),
                Err(why) if tokio::time::Instant::now() >= deadline => {
                    tracing::error!("request refused: {why} (audit.onFailure is deny)");
                    return Err(Unavailable(why));
                }
                Err(_) => {}
            }
        }
    }

    /// Hand a record to the sink (adds `audit.tags`). Never blocks.
    #[inline(never)]
    pub fn write(&self, record: Record) {
        if matches!(self.mode, Mode::Off) {
            return;
        }
        self.write_boxed(Box::new(record));
    }

    /// [`AuditLog::write`] for a record already boxed (as the writer takes it).
    pub fn write_boxed(&self, record: Box<Record>) {
        let Mode::On {
            tx,
            shared,
            fail_open,
            ..
        } = &self.mode
        else {
            return;
        };
        if *fail_open && Self::ready(shared).is_err() {
            // The operator chose availability over a complete trail: count what is lost.
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Serialised by the sink thread, straight into its write buffer (with `audit.tags`).
        shared.queued.fetch_add(1, Ordering::AcqRel);
        let sent = tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|t| t.send(writer::Msg::Record(record)).is_ok());
        if sent != Some(true) {
            shared.queued.fetch_sub(1, Ordering::AcqRel);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::error!("an audit record was written after the audit log was closed");
        }
    }

    /// Wait until every queued record has been handed to the sink (or `timeout`).
    pub fn flush(&self, timeout: Duration) -> bool {
        let Mode::On { tx, .. } = &self.mode else {
            return true;
        };
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let sent = tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|t| t.send(writer::Msg::Flush(done_tx)).is_ok());
        sent == Some(true) && done_rx.recv_timeout(timeout).is_ok()
    }

    /// Write what is queued, fsync, and stop the sink thread (waits up to `timeout` when the
    /// sink is failing; records still queued then are reported as lost).
    pub fn close(&self, timeout: Duration) {
        let Mode::On {
            tx, shared, thread, ..
        } = &self.mode
        else {
            return;
        };
        let timeout = if shared.stopped.load(Ordering::Acquire) {
            Duration::ZERO
        } else {
            timeout
        };
        let flushed = self.flush(timeout);
        tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread.lock().unwrap_or_else(|e| e.into_inner()).take()
            && flushed
        {
            let _ = t.join();
        }
        let left = shared.queued.load(Ordering::Acquire);
        if left > 0 {
            tracing::error!(
                "{left} audit records could not be written before exit (the sink is failing)"
            );
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.close(Duration::from_secs(2));
    }
}
