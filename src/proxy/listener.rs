//! The MCP listener: our own accept loop over hyper's HTTP/1 connections (`axum::serve` has
//! no header or idle timeout and no connection cap).
//!
//! Each connection is in one phase: waiting for a request head (since it connected, or since
//! the first byte after an idle spell), idle (kept alive with no request in flight), or busy
//! (requests in flight, until their response bodies end). A connection waiting for a head
//! longer than `limits.headerReadTimeout`, or idle longer than `limits.idleTimeout`, is
//! closed; a busy one only when the client has not taken what is written to it for
//! `limits.idleTimeout` (request timeouts bound the rest). One sweeper task per listener
//! looks at every connection's deadline a few times per timeout (at most once a second), so
//! a request pays for no timer of its own. At
//! `limits.maxConnections`, the connection that has waited longest for a request is closed to
//! make room, so slow or idle connections (slowloris) cannot lock valid clients out; when
//! every connection is busy, new ones are closed at once. Both are logged at most once per
//! 10 s, with counts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

use super::http::App;

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request head since then.
    Head(Instant),
    /// Kept alive, no request in flight, since then.
    Idle(Instant),
    /// Requests in flight (responses not yet fully written).
    Busy(usize),
}

/// One open client connection.
struct Conn {
    phase: Mutex<Phase>,
    /// Since when a write has been waiting for the client to read (a response it does not
    /// take holds the connection busy).
    stalled: Mutex<Option<Instant>>,
    /// Set to close the connection (eviction at the cap, a deadline passed): its task ends at
    /// its next poll, and dropping the connection closes it.
    closed: AtomicBool,
    /// Set when the server stops: the connection finishes its requests, then closes.
    stopping: AtomicBool,
    /// The connection's task, woken when `closed` or `stopping` is set.
    task: AtomicWaker,
}

impl Conn {
    fn new(phase: Phase) -> Conn {
        Conn {
            phase: Mutex::new(phase),
            stalled: Mutex::new(None),
            closed: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            task: AtomicWaker::new(),
        }
    }

    /// Close the connection (its task sees it at once).
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.task.wake();
    }

    /// Let the connection finish its requests, then close it.
    fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.task.wake();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes arrived: an idle connection starts sending a request.
    fn on_read(&self) {
        let mut p = self.phase();
        if let Phase::Idle(_) = *p {
            *p = Phase::Head(Instant::now());
        }
    }

    /// When the connection is to be closed unless a request arrives, or, while busy, unless
    /// the client takes what is written to it (`None`: busy and writing).
    fn deadline(&self, header: Duration, idle: Duration) -> Option<Instant> {
        // `checked_add`: a deadline past what an `Instant` holds is no deadline (config
        // validation keeps timeouts within a year; this keeps the sweeper from panicking).
        let phase = *self.phase();
        match phase {
            Phase::Head(t) => t.checked_add(header),
            Phase::Idle(t) => t.checked_add(idle),
            Phase::Busy(_) => self
                .stalled
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .and_then(|t| t.checked_add(idle)),
        }
    }

    /// A write completed (`false`) or must wait for the client to read (`true`).
    fn on_write(&self, pending: bool) {
        let mut s = self.stalled.lock().unwrap_or_else(|e| e.into_inner());
        match (pending, s.is_some()) {
            (true, false) => *s = Some(Instant::now()),
            (false, true) => *s = None,
            _ => {}
        }
    }

    /// Since when the connection has been waiting for a request (`None`: busy).
    fn waiting_since(&self) -> Option<Instant> {
        match *self.phase() {
            Phase::Head(t) | Phase::Idle(t) => Some(t),
            Phase::Busy(_) => None,
        }
    }
}

/// A request in flight on a connection: from the parsed head until its response body ends.
struct Busy(Arc<Conn>);

impl Busy {
    fn new(c: Arc<Conn>) -> Busy {
        {
            let mut p = c.phase();
            *p = match *p {
                Phase::Busy(n) => Phase::Busy(n + 1),
                _ => Phase::Busy(1),
            };
        }
        Busy(c)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut p = self.0.phase();
        *p = match *p {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(Instant::now()),
        };
    }
}

/// A response body that keeps its connection busy until it is written (or dropped).
struct Tracked {
    inner: axum::body::Body,
    _busy: Busy,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The TCP stream, telling its connection when bytes arrive.
struct Watched {
    tcp: tokio::net::TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.on_read();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.tcp).poll_write(cx, buf);
        self.conn.on_write(r.is_pending());
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs);
        self.conn.on_write(r.is_pending());
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

/// The open connections, and what the cap did since the last log line.
#[derive(Default)]
struct Registry {
    next: u64,
    open: HashMap<u64, Arc<Conn>>,
    evicted: u64,
    refused: u64,
    last_log: Option<Instant>,
}

/// How often the connection-limit warning may be logged.
const LOG_EVERY: Duration = Duration::from_secs(10);

impl Registry {
    /// Make room for one more connection under `max`: close the one that has waited longest
    /// for a request. `false`: every connection is busy.
    fn make_room(&mut self, max: usize) -> bool {
        if self.open.len() < max {
            return true;
        }
        let victim = self
            .open
            .iter()
            .filter_map(|(id, c)| c.waiting_since().map(|t| (t, *id)))
            .min()
            .map(|(_, id)| id);
        let ok = match victim.and_then(|id| self.open.remove(&id)) {
            Some(c) => {
                c.close();
                self.evicted += 1;
                true
            }
            None => {
                self.refused += 1;
                false
            }
        };
        if self.last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            tracing::warn!(
                "connection limit reached (limits.maxConnections = {max}): closed {} connections waiting for a request and refused {} new ones (counts since the last such line, at most one per {}s); raise limits.maxConnections if these are valid clients",
                self.evicted,
                self.refused,
                LOG_EVERY.as_secs()
            );
            self.last_log = Some(Instant::now());
            self.evicted = 0;
            self.refused = 0;
        }
        ok
    }
}

/// The soft limit on open files, raised to the hard limit (as servers do): the connection cap
/// must fit under it.
fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: plain syscalls on a local struct.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
                return None;
            }
            if l.rlim_cur < l.rlim_max {
                let want = libc::rlimit {
                    rlim_cur: l.rlim_max,
                    rlim_max: l.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                    l.rlim_cur = l.rlim_max;
                }
            }
        }
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
        Some(l.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    None
}

/// Bind the MCP listener with a deep accept queue (the kernel caps it at `somaxconn`): a
/// burst of connections waits there for the accept loop instead of being dropped.
pub fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// File descriptors kept for upstreams, children, the audit log and the admin listener.
const FD_RESERVE: u64 = 256;

/// What a listener serves.
#[derive(Clone)]
pub enum Routes {
    /// The MCP endpoints: every request through [`super::http::front_door`] (POSTs to `/mcp`
    /// straight to authentication and the POST handler, the rest through this router).
    Mcp(axum::Router),
    /// Only this router (the admin endpoints): nothing else is answered there, `/mcp`
    /// included.
    Only(axum::Router),
}

/// Serve `routes` on `listener` until `stop`; then stop accepting, let connections finish
/// their requests (idle ones close at once) and return when all are closed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    routes: Routes,
    stop: CancellationToken,
) {
    let fd_cap = raise_fd_limit().map(|n| n.saturating_sub(FD_RESERVE).max(16) as usize);
    let registry = Arc::new(Mutex::new(Registry::default()));
    let sweeper = tokio::spawn(sweep(app.clone(), registry.clone()));
    let mut warned_fd = false;
    let mut last_accept_error: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => r,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors (or a transient error): close the connection that
                // has waited longest, pause briefly, and go on.
                {
                    let mut reg = registry.lock().unwrap_or_else(|e| e.into_inner());
                    let n = reg.open.len();
                    if n > 0 {
                        reg.make_room(n);
                    }
                }
                if last_accept_error.is_none_or(|t: Instant| t.elapsed() >= LOG_EVERY) {
                    last_accept_error = Some(Instant::now());
                    tracing::warn!(
                        "cannot accept connections: {e} (at most one such line per {}s; if it says too many open files, raise `ulimit -n` or lower limits.maxConnections)",
                        LOG_EVERY.as_secs()
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let configured = app.st().proxy.config().limits.max_connections;
        let max = match fd_cap {
            Some(cap) if cap < configured => {
                if !warned_fd {
                    warned_fd = true;
                    tracing::warn!(
                        "limits.maxConnections is {configured} but the open-file limit allows about {cap} connections; using {cap} (raise `ulimit -n`)"
                    );
                }
                cap
            }
            _ => configured,
        };
        let conn = Arc::new(Conn::new(Phase::Head(Instant::now())));
        let id = {
            let mut reg = registry.lock().unwrap_or_else(|e| e.into_inner());
            if !reg.make_room(max) {
                continue; // dropping `tcp` closes it
            }
            reg.next += 1;
            let id = reg.next;
            reg.open.insert(id, conn.clone());
            id
        };
        // Responses end with a small last write: without TCP_NODELAY, Nagle's algorithm and
        // the client's delayed ACK add ~40 ms to every request.
        let _ = tcp.set_nodelay(true);
        let (app, routes, registry) = (app.clone(), routes.clone(), registry.clone());
        tokio::spawn(async move {
            serve_conn(tcp, peer, conn, app, routes).await;
            registry
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .open
                .remove(&id);
        });
    }
    drop(listener);
    for c in registry
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .open
        .values()
    {
        c.stop();
    }
    // Wait for the connections to end (callers bound this wait); the sweeper still closes
    // those past their deadline meanwhile.
    loop {
        let open = registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .open
            .len();
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sweeper.abort();
}

/// The current `limits.headerReadTimeout` and `limits.idleTimeout`.
fn timeouts(app: &App) -> (Duration, Duration) {
    let st = app.st();
    let l = &st.proxy.config().limits;
    (l.header_read_timeout.0, l.idle_timeout.0)
}

/// How often the sweeper looks: a tenth of the shorter timeout, between 20 ms and 1 s.
fn sweep_every(header: Duration, idle: Duration) -> Duration {
    (header.min(idle) / 10).clamp(Duration::from_millis(20), Duration::from_secs(1))
}

/// Close the connections past their deadline, now and then, under the current limits (a
/// reload that shortens them applies to open connections too).
async fn sweep(app: Arc<App>, registry: Arc<Mutex<Registry>>) {
    loop {
        let (header, idle) = timeouts(&app);
        tokio::time::sleep(sweep_every(header, idle)).await;
        let (header, idle) = timeouts(&app);
        let now = Instant::now();
        let reg = registry.lock().unwrap_or_else(|e| e.into_inner());
        for c in reg.open.values() {
            if c.deadline(header, idle).is_some_and(|d| d <= now) {
                c.close();
            }
        }
    }
}

async fn serve_conn(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    conn: Arc<Conn>,
    app: Arc<App>,
    routes: Routes,
) {
    let io = hyper_util::rt::TokioIo::new(Watched {
        tcp,
        conn: conn.clone(),
    });
    let c = conn.clone();
    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let busy = Busy::new(c.clone());
        let (app, routes) = (app.clone(), routes.clone());
        async move {
            let req = req.map(axum::body::Body::new);
            let resp = match routes {
                Routes::Mcp(router) => super::http::front_door(app, router, peer, req).await,
                Routes::Only(router) => super::http::through_router(router, peer, req).await,
            };
            Ok::<_, std::convert::Infallible>(resp.map(|inner| Tracked { inner, _busy: busy }))
        }
    });
    // The sweeper's deadlines (`sweep`) replace hyper's header timeout, which would also cut
    // kept-alive connections that are merely idle.
    let http = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(None)
        .serve_connection(io, svc);
    tokio::pin!(http);
    // The connection runs until hyper ends it, or until it is closed (dropping it closes the
    // socket). Whatever wakes the task, a poll costs two atomic loads and a waker check.
    let mut stopping = false;
    std::future::poll_fn(|cx| {
        conn.task.register(cx.waker());
        if conn.is_closed() {
            return Poll::Ready(());
        }
        if !stopping && conn.stopping.load(Ordering::Acquire) {
            stopping = true;
            http.as_mut().graceful_shutdown();
        }
        http.as_mut().poll(cx).map(|_| ())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(phase: Phase) -> Arc<Conn> {
        Arc::new(Conn::new(phase))
    }

    #[test]
    fn at_the_cap_the_longest_waiting_connection_makes_room() {
        let now = Instant::now();
        let mut reg = Registry::default();
        let old = conn(Phase::Head(now - Duration::from_secs(5)));
        let idle = conn(Phase::Idle(now - Duration::from_secs(1)));
        let busy = conn(Phase::Busy(1));
        for (i, c) in [&old, &idle, &busy].into_iter().enumerate() {
            reg.open.insert(i as u64, c.clone());
        }
        assert!(reg.make_room(4), "under the cap: nothing to do");
        assert!(!old.is_closed());
        assert!(reg.make_room(3));
        assert!(old.is_closed(), "the oldest waiting one goes first");
        assert!(reg.make_room(2));
        assert!(idle.is_closed());
        assert!(!reg.make_room(1), "busy connections are never evicted");
        assert!(!busy.is_closed());
        assert_eq!(reg.open.len(), 1);
    }

    #[test]
    fn the_sweeper_looks_ten_times_per_shorter_timeout_between_20_ms_and_1_s() {
        let s = Duration::from_secs;
        assert_eq!(sweep_every(s(10), s(60)), s(1));
        assert_eq!(sweep_every(s(60), s(3)), Duration::from_millis(300));
        assert_eq!(sweep_every(s(1), s(3)), Duration::from_millis(100));
        assert_eq!(
            sweep_every(Duration::from_millis(50), s(3)),
            Duration::from_millis(20)
        );
    }

    #[tokio::test]
    async fn closing_a_connection_wakes_its_task() {
        let c = conn(Phase::Idle(Instant::now()));
        let task = {
            let c = c.clone();
            tokio::spawn(std::future::poll_fn(move |cx| {
                c.task.register(cx.waker());
                if c.is_closed() {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }))
        };
        tokio::task::yield_now().await;
        c.close();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the task ends once its connection is closed")
            .unwrap();
    }

    #[test]
    fn phases_follow_requests() {
        let c = conn(Phase::Head(Instant::now()));
        let (h, i) = (Duration::from_secs(10), Duration::from_secs(60));
        assert!(c.deadline(h, i).is_some());
        let a = Busy::new(c.clone());
        let b = Busy::new(c.clone());
        assert_eq!(c.deadline(h, i), None, "busy: no deadline");
        c.on_read();
        drop(a);
        assert_eq!(c.deadline(h, i), None, "one request still in flight");
        drop(b);
        assert!(matches!(*c.phase(), Phase::Idle(_)));
        let idle_until = c.deadline(h, i).unwrap();
        c.on_read();
        assert!(
            matches!(*c.phase(), Phase::Head(_)),
            "bytes after idle start a head"
        );
        assert!(c.deadline(h, i).unwrap() < idle_until);
    }

    #[test]
    fn a_busy_connection_whose_client_does_not_read_gets_a_deadline() {
        let c = conn(Phase::Head(Instant::now()));
        let (h, i) = (Duration::from_secs(10), Duration::from_secs(60));
        let busy = Busy::new(c.clone());
        c.on_write(false);
        assert_eq!(c.deadline(h, i), None);
        c.on_write(true);
        let d = c.deadline(h, i).unwrap();
        c.on_write(true);
        assert_eq!(c.deadline(h, i), Some(d), "the stall counts from its start");
        c.on_write(false);
        assert_eq!(c.deadline(h, i), None, "the client read: no deadline");
        drop(busy);
    }
}
