//! Plain-`http://` upstream connections (HTTP/1.1 keep-alive), each driven by the task that
//! uses it.
//!
//! hyper's pooled client gives every connection a task of its own: a call then wakes that
//! task to write the request, and the task wakes the caller with the response, a hand-off
//! per call between two tasks. On a one-thread runtime, with as many connection tasks as
//! calls in flight, those hand-offs go through the back of the run queue: at 64 calls in
//! flight the CPU per call rose by a third. Here the caller polls the connection itself
//! while it waits for the response and reads its body ([`Driven`]), and puts it back into
//! the pool when the body has ended; an idle connection is polled by nobody, and is checked
//! (polled once) when it is taken out again, so one the upstream closed meanwhile is dropped.
//!
//! Cancelling a call (dropping its future) drops its connection: HTTP/1 cannot abandon one
//! request and keep the connection. A request is sent again on a new connection only when
//! hyper hands it back unsent (a kept-alive connection that turned out closed), never once
//! it may have reached the upstream.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Context;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;

/// How long an unused connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// At most this many unused connections are kept per upstream.
const MAX_IDLE: usize = 256;

type Conn = http1::Connection<TokioIo<tokio::net::TcpStream>, Full<Bytes>>;

/// One HTTP/1 connection: the sender and the connection state machine, polled by its user.
struct H1Conn {
    send: http1::SendRequest<Full<Bytes>>,
    conn: Pin<Box<Conn>>,
    /// The connection future has completed (closed or failed): never poll it again.
    done: bool,
}

impl H1Conn {
    /// Let the connection read and write what it can.
    fn drive(&mut self, cx: &mut Context<'_>) {
        if !self.done && self.conn.as_mut().poll(cx).is_ready() {
            self.done = true;
        }
    }

    fn reusable(&self) -> bool {
        !self.done && !self.send.is_closed()
    }
}

/// The unused connections to one upstream, most recently used last.
pub(super) struct Pool {
    /// `host:port` to connect to (brackets kept around IPv6 literals).
    authority: String,
    /// The `Host` header of every request.
    host: http::HeaderValue,
    connect_timeout: Duration,
    idle: Mutex<Vec<(H1Conn, Instant)>>,
}

/// Why a request got no response.
pub(super) struct SendError {
    /// Nothing could be connected (or the connection was refused at once).
    pub(super) connect: bool,
    pub(super) error: String,
}

impl Pool {
    /// A pool for the upstream at `uri` (`http://host[:port]/…`).
    pub(super) fn new(uri: &http::Uri, connect_timeout: Duration) -> Result<Arc<Pool>, String> {
        let auth = uri
            .authority()
            .ok_or_else(|| format!("the upstream URL {uri} has no host"))?;
        let port = auth.port_u16().unwrap_or(80);
        let host = http::HeaderValue::from_str(auth.as_str())
            .map_err(|e| format!("the upstream URL's host is not a valid header: {e}"))?;
        Ok(Arc::new(Pool {
            authority: format!("{}:{port}", auth.host()),
            host,
            connect_timeout,
            idle: Mutex::new(Vec::new()),
        }))
    }

    /// An unused connection that is still open, if there is one.
    fn take_idle(&self) -> Option<H1Conn> {
        let mut noop = Context::from_waker(std::task::Waker::noop());
        loop {
            let (mut c, since) = self.idle.lock().pop()?;
            if since.elapsed() >= IDLE_TIMEOUT {
                continue;
            }
            // Let it notice a close (or anything else) that arrived while nobody polled it;
            // the caller polls it again with its own waker before waiting on it.
            c.drive(&mut noop);
            if c.reusable() {
                return Some(c);
            }
        }
    }

    /// Keep `c` for the next request.
    fn put(&self, c: H1Conn) {
        if !c.reusable() {
            return;
        }
        let mut idle = self.idle.lock();
        while idle
            .first()
            .is_some_and(|(_, since)| since.elapsed() >= IDLE_TIMEOUT)
        {
            idle.remove(0);
        }
        if idle.len() < MAX_IDLE {
            idle.push((c, Instant::now()));
        }
    }

    async fn connect(&self) -> Result<H1Conn, SendError> {
        let fail = |error: String| SendError {
            connect: true,
            error,
        };
        let stream = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect(&self.authority),
        )
        .await
        .map_err(|_| {
            fail(format!(
                "no connection within {}s",
                self.connect_timeout.as_secs_f32()
            ))
        })?
        .map_err(|e| fail(format!("cannot connect to {}: {e}", self.authority)))?;
        let _ = stream.set_nodelay(true);
        let (send, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| fail(super::http::chain(&e)))?;
        Ok(H1Conn {
            send,
            conn: Box::pin(conn),
            done: false,
        })
    }

    /// Send `req` (origin-form URI; `Host` is added here) and wait for the response head,
    /// driving the connection meanwhile. The body is read through the returned [`Driven`].
    ///
    /// Not an `async fn`: one of those keeps its arguments twice in its future (as passed,
    /// and moved into its body), and this future is part of every call's.
    pub(super) fn send(
        self: &Arc<Self>,
        mut req: http::Request<Full<Bytes>>,
    ) -> impl Future<Output = Result<Driven, SendError>> + Send + '_ {
        req.headers_mut()
            .insert(http::header::HOST, self.host.clone());
        // Taken now, not at the first poll: the one caller awaits this at once.
        let idle = self.take_idle();
        async move {
            let Some(c) = idle else {
                return Box::pin(self.send_on_new(req)).await;
            };
            match self.send_on(c, req).await {
                Ok(d) => Ok(d),
                // Handed back unsent from a kept-alive connection: once more, on a new one.
                Err((Some(unsent), _)) => Box::pin(self.send_on_new(unsent)).await,
                Err((None, e)) => Err(e),
            }
        }
    }

    /// Connect, then [`Pool::send_on`]. Boxed by its callers: connecting is rare, and its
    /// state would otherwise be part of every call's future.
    async fn send_on_new(
        self: &Arc<Self>,
        req: http::Request<Full<Bytes>>,
    ) -> Result<Driven, SendError> {
        let c = self.connect().await?;
        self.send_on(c, req).await.map_err(|(_, e)| e)
    }

    /// Send `req` on `c`. An error hands the request back if it was not sent.
    async fn send_on(
        self: &Arc<Self>,
        mut c: H1Conn,
        req: http::Request<Full<Bytes>>,
    ) -> Result<Driven, (Option<http::Request<Full<Bytes>>>, SendError)> {
        let mut sent = std::pin::pin!(c.send.try_send_request(req));
        let outcome = std::future::poll_fn(|cx| {
            c.drive(cx);
            sent.as_mut().poll(cx)
        })
        .await;
        match outcome {
            Ok(resp) => Ok(Driven {
                resp,
                conn: Some(c),
                pool: self.clone(),
            }),
            Err(mut e) => {
                let unsent = e.take_message();
                let error = SendError {
                    connect: false,
                    error: super::http::chain(e.error()),
                };
                Err((unsent, error))
            }
        }
    }
}

/// A response whose body is read by polling its connection too; the connection goes back to
/// the pool once the body has ended.
pub(super) struct Driven {
    resp: http::Response<Incoming>,
    conn: Option<H1Conn>,
    pool: Arc<Pool>,
}

impl Driven {
    pub(super) fn status(&self) -> http::StatusCode {
        self.resp.status()
    }

    pub(super) fn headers(&self) -> &http::HeaderMap {
        self.resp.headers()
    }

    pub(super) fn content_length(&self) -> Option<u64> {
        http_body::Body::size_hint(self.resp.body()).exact()
    }

    /// The next chunk of the body (`None`: the end).
    pub(super) async fn chunk(&mut self) -> Result<Option<Bytes>, String> {
        loop {
            let frame = std::future::poll_fn(|cx| {
                if let Some(c) = self.conn.as_mut() {
                    c.drive(cx);
                }
                http_body::Body::poll_frame(Pin::new(self.resp.body_mut()), cx)
            })
            .await;
            match frame {
                None => {
                    self.release();
                    return Ok(None);
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
                Some(Err(e)) => {
                    self.conn = None;
                    return Err(super::http::chain(&e));
                }
            }
        }
    }

    /// Put the connection back if the body has ended (a response read to its end, or one
    /// without a body).
    fn release(&mut self) {
        if http_body::Body::is_end_stream(self.resp.body())
            && let Some(c) = self.conn.take()
        {
            self.pool.put(c);
        }
    }
}

impl Drop for Driven {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A raw HTTP/1.1 server on 127.0.0.1 answering every request with `body`; after
    /// `close_after` responses on a connection it closes that connection. Returns the
    /// address and the number of connections accepted so far.
    async fn server(
        close_after: usize,
    ) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let n = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut served = 0;
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(k) = s.read(&mut chunk).await else {
                            return;
                        };
                        if k == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..k]);
                        // Requests here carry `Content-Length`; serve each complete one.
                        while let Some(end) = find(&buf, b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                            let len: usize = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse().ok())
                                .unwrap_or(0);
                            if buf.len() < end + 4 + len {
                                break;
                            }
                            let body = buf[end + 4..end + 4 + len].to_vec();
                            buf.drain(..end + 4 + len);
                            let resp = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                                body.len()
                            );
                            if s.write_all(resp.as_bytes()).await.is_err()
                                || s.write_all(&body).await.is_err()
                            {
                                return;
                            }
                            served += 1;
                            if served == close_after {
                                return; // closes the connection
                            }
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    fn find(h: &[u8], n: &[u8]) -> Option<usize> {
        h.windows(n.len()).position(|w| w == n)
    }

    fn request(body: &str) -> http::Request<Full<Bytes>> {
        let mut r = http::Request::new(Full::new(Bytes::from(body.to_string())));
        *r.method_mut() = http::Method::POST;
        *r.uri_mut() = http::Uri::from_static("/mcp");
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        r
    }

    async fn body_of(mut d: Driven) -> String {
        let mut out = Vec::new();
        while let Some(c) = d.chunk().await.unwrap() {
            out.extend_from_slice(&c);
        }
        String::from_utf8(out).unwrap()
    }

    /// One call through `p`: its status must be 200; its body, read to the end.
    async fn echo(p: &Arc<Pool>, body: &str) -> String {
        let d = p.send(request(body)).await.ok().unwrap();
        assert_eq!(d.status(), 200);
        body_of(d).await
    }

    fn pool(addr: std::net::SocketAddr) -> Arc<Pool> {
        let uri: http::Uri = format!("http://{addr}/mcp").parse().unwrap();
        Pool::new(&uri, Duration::from_secs(5)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Every call to an HTTP upstream builds this future (inside the boxed POST): connecting
    /// and the retry on a new connection are boxed where they are awaited, so it carries
    /// neither (bench/PROFILE.md, round seven). 1256 B with rustc 1.95 in the test and the
    /// release profiles; with connecting unboxed it is 1536. A new compiler may move these
    /// numbers: re-measure then (the test prints the size).
    #[test]
    fn a_sends_future_carries_no_connect() {
        let p = pool("127.0.0.1:9".parse().unwrap());
        let f = p.send(request("{}"));
        let size = size_of_val(&f);
        eprintln!("Pool::send future: {size} B");
        assert!(size <= 1300, "Pool::send's future is {size} B");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_connection_is_reused_once_its_body_has_been_read() {
        let (addr, accepted) = server(usize::MAX).await;
        let p = pool(addr);
        for i in 0..5 {
            let body = format!("{{\"n\":{i}}}");
            assert_eq!(echo(&p, &body).await, body);
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Concurrent calls each get a connection of their own, and all go back to the pool.
        let calls = (0..4).map(|i| {
            let p = p.clone();
            async move { echo(&p, &format!("[{i}]")).await }
        });
        let bodies = futures_util::future::join_all(calls).await;
        assert_eq!(bodies, ["[0]", "[1]", "[2]", "[3]"]);
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 4);
        assert_eq!(p.idle.lock().len(), 4);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_connection_the_upstream_closed_while_idle_is_not_used_again() {
        let (addr, accepted) = server(1).await;
        let p = pool(addr);
        for i in 0..3 {
            let body = format!("{{\"n\":{i}}}");
            assert_eq!(echo(&p, &body).await, body);
            // Let the close arrive before the next request takes the connection.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_dropped_call_or_unread_body_does_not_return_its_connection() {
        let (addr, _) = server(usize::MAX).await;
        let p = pool(addr);
        let d = p.send(request("{}")).await.ok().unwrap();
        drop(d); // body not read: the connection cannot carry another request
        assert_eq!(p.idle.lock().len(), 0);
        // A call dropped while waiting for its response.
        let _ = tokio::time::timeout(Duration::from_nanos(1), p.send(request("{}"))).await;
        assert_eq!(p.idle.lock().len(), 0);
        // The pool still works.
        assert_eq!(echo(&p, "[1]").await, "[1]");
        assert_eq!(p.idle.lock().len(), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn nothing_listening_is_a_connect_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let e = pool(addr).send(request("{}")).await.err().unwrap();
        assert!(e.connect, "{}", e.error);
        assert!(e.error.contains("cannot connect"), "{}", e.error);
    }
}
