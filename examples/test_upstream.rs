//! A fast MCP test upstream for benchmarks (and, later, fault-injection tests).
//!
//! ```text
//! test_upstream --stdio [--fault MODE]
//! test_upstream --http 127.0.0.1:9001 [--sse] [--threads N] [--fault MODE]
//! ```
//!
//! - `--stdio`: newline-delimited JSON-RPC on stdin/stdout, buffered both ways (stdout is
//!   flushed only when no further input is already buffered, so bursts cost one write).
//! - `--http ADDR`: streamable HTTP at `/mcp`. POST answers `application/json` (with `--sse`,
//!   `text/event-stream`: one `message` event, then the stream ends); `initialize` returns an
//!   `Mcp-Session-Id`; notifications and responses get 202; DELETE 200; GET 405.
//!
//! Tools: `echo` (returns `arguments.message` as text) and `payload` (a text of
//! `arguments.size` bytes, default 1024). Also `ping`, `tools/list`, empty `prompts/list`,
//! `resources/list` and `resources/templates/list`.
//!
//! `--fault MODE` (for fault-injection tests; each applies to `tools/call` only):
//! `crash-after:N` (exit 3 on call N+1), `hang-after:N` (never answer from call N+1),
//! `garbage-after:N` (write a non-JSON line / body from call N+1), `error` (every call gets a
//! JSON-RPC error), `slow:MS` (sleep MS before each answer), `expire-sessions-after:N` (HTTP:
//! every session is forgotten at call N+1, which gets 404), `huge:MB` (`payload` calls are
//! answered with a text of MB MiB, streamed: never held in memory), `endless-pages[:MS]` (applies to
//! `tools/list`: every page has one new tool and a `nextCursor`, after MS ms).
//!
//! `--count-file PATH`: after each `tools/list`, the number answered so far is written there.

use std::io::{BufRead, BufWriter, Write};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    CrashAfter(u64),
    HangAfter(u64),
    GarbageAfter(u64),
    Error,
    SlowMs(u64),
    /// HTTP only: forget every session on `tools/call` number N+1 (it gets 404).
    ExpireSessionsAfter(u64),
    /// Answer every call with a text of this many MiB, streamed.
    Huge(u64),
    /// `tools/list` never ends: each page has a `nextCursor` (answered after this many ms).
    EndlessPages(u64),
}

impl Fault {
    fn parse(s: &str) -> Result<Fault, String> {
        let (mode, n) = match s.split_once(':') {
            Some((m, n)) => (
                m,
                Some(
                    n.parse::<u64>()
                        .map_err(|_| format!("bad number in --fault {s}"))?,
                ),
            ),
            None => (s, None),
        };
        Ok(match (mode, n) {
            ("none", _) => Fault::None,
            ("crash-after", Some(n)) => Fault::CrashAfter(n),
            ("hang-after", Some(n)) => Fault::HangAfter(n),
            ("garbage-after", Some(n)) => Fault::GarbageAfter(n),
            ("error", _) => Fault::Error,
            ("slow", Some(ms)) => Fault::SlowMs(ms),
            ("expire-sessions-after", Some(n)) => Fault::ExpireSessionsAfter(n),
            ("huge", Some(mb)) => Fault::Huge(mb),
            ("endless-pages", ms) => Fault::EndlessPages(ms.unwrap_or(0)),
            _ => return Err(format!("unknown --fault {s}")),
        })
    }
}

/// What to do with one incoming message.
enum Action {
    /// Send this response.
    Reply(Value),
    /// A notification or a response: nothing to send.
    Nothing,
    /// Sleep, then send.
    Delayed(Duration, Value),
    /// Never answer.
    Hang,
    /// Write something that is not JSON-RPC.
    Garbage,
    /// Exit the process now.
    Crash,
    /// A response to this id whose text is this many bytes, written in chunks.
    Huge(Value, u64),
}

struct Upstream {
    fault: Fault,
    calls: AtomicU64,
    /// `tools/list` requests answered.
    lists: AtomicU64,
    count_file: Option<std::path::PathBuf>,
}

/// The parts of a huge response around its text.
fn huge_parts(id: &Value) -> (String, &'static str) {
    (
        format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[{{"type":"text","text":""#),
        r#""}],"isError":false}}"#,
    )
}

const TOOLS: &str = r#"[
  {"name":"echo","description":"Echo the message back.","inputSchema":{"type":"object","properties":{"message":{"type":"string"}},"required":["message"]}},
  {"name":"payload","description":"Return a text of `size` bytes.","inputSchema":{"type":"object","properties":{"size":{"type":"integer","minimum":0}}}}
]"#;

impl Upstream {
    fn handle(&self, msg: Value) -> Action {
        let Value::Object(mut msg) = msg else {
            return Action::Reply(error(Value::Null, -32600, "not a JSON-RPC object"));
        };
        let Some(id) = msg.remove("id") else {
            return Action::Nothing; // notification
        };
        let Some(Value::String(method)) = msg.remove("method") else {
            return Action::Nothing; // a response to us: we never ask anything
        };
        let params = msg.remove("params").unwrap_or(Value::Null);
        let result = match method.as_str() {
            "initialize" => json!({
                "protocolVersion": params.get("protocolVersion").and_then(Value::as_str).unwrap_or("2025-11-25"),
                "capabilities": { "tools": { "listChanged": false } },
                "serverInfo": { "name": "fentaris-test-upstream", "version": env!("CARGO_PKG_VERSION") }
            }),
            "ping" => json!({}),
            "tools/list" => {
                let n = self.lists.fetch_add(1, Ordering::Relaxed) + 1;
                if let Some(f) = &self.count_file {
                    let _ = std::fs::write(f, n.to_string());
                }
                if let Fault::EndlessPages(ms) = self.fault {
                    let page = json!({
                        "tools": [{ "name": format!("page{n}"), "inputSchema": { "type": "object" } }],
                        "nextCursor": format!("c{n}")
                    });
                    return Action::Delayed(Duration::from_millis(ms), response(id, page));
                }
                json!({ "tools": serde_json::from_str::<Value>(TOOLS).unwrap() })
            }
            "prompts/list" => json!({ "prompts": [] }),
            "resources/list" => json!({ "resources": [] }),
            "resources/templates/list" => json!({ "resourceTemplates": [] }),
            "tools/call" => return self.call(id, params),
            other => {
                return Action::Reply(error(id, -32601, &format!("Method not found: {other}")));
            }
        };
        Action::Reply(response(id, result))
    }

    fn call(&self, id: Value, params: Value) -> Action {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        match self.fault {
            Fault::CrashAfter(k) if n >= k => return Action::Crash,
            Fault::HangAfter(k) if n >= k => return Action::Hang,
            Fault::GarbageAfter(k) if n >= k => return Action::Garbage,
            Fault::Error => return Action::Reply(error(id, -32000, "injected error")),
            Fault::Huge(mb) if params.get("name").and_then(Value::as_str) == Some("payload") => {
                return Action::Huge(id, mb << 20);
            }
            _ => {}
        }
        let args = params.get("arguments");
        let text = match params.get("name").and_then(Value::as_str) {
            Some("echo") => match args.and_then(|a| a.get("message")).and_then(Value::as_str) {
                Some(m) => m.to_string(),
                None => return Action::Reply(error(id, -32602, "echo needs `message`")),
            },
            Some("payload") => {
                let size = args
                    .and_then(|a| a.get("size"))
                    .and_then(Value::as_u64)
                    .unwrap_or(1024)
                    .min(64 << 20) as usize;
                "x".repeat(size)
            }
            Some(other) => {
                return Action::Reply(error(id, -32602, &format!("Unknown tool: {other}")));
            }
            None => return Action::Reply(error(id, -32602, "`name` is required")),
        };
        let r = response(
            id,
            json!({ "content": [{ "type": "text", "text": text }], "isError": false }),
        );
        match self.fault {
            Fault::SlowMs(ms) => Action::Delayed(Duration::from_millis(ms), r),
            _ => Action::Reply(r),
        }
    }
}

fn response(id: Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

fn error(id: Value, code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
}

// ---------------------------------------------------------------------------------------------
// stdio

fn serve_stdio(up: Upstream) {
    // Our own buffer (reads larger than StdinLock's bypass its buffer), so we can see what
    // is already buffered.
    let mut input = std::io::BufReader::with_capacity(64 << 10, std::io::stdin().lock());
    let mut out = BufWriter::with_capacity(64 << 10, std::io::stdout().lock());
    let mut line = Vec::with_capacity(4096);
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let action = match serde_json::from_slice::<Value>(text) {
            Ok(v) => up.handle(v),
            Err(e) => Action::Reply(error(Value::Null, -32700, &format!("parse error: {e}"))),
        };
        match action {
            Action::Reply(v) => write_line(&mut out, &v),
            Action::Nothing => {}
            Action::Delayed(d, v) => {
                let _ = out.flush();
                std::thread::sleep(d);
                write_line(&mut out, &v);
            }
            Action::Hang => {}
            Action::Garbage => {
                let _ = out.write_all(b"this is not JSON-RPC\n");
            }
            Action::Crash => {
                let _ = out.flush();
                std::process::exit(3);
            }
            Action::Huge(id, bytes) => {
                let (head, tail) = huge_parts(&id);
                let chunk = vec![b'x'; 64 << 10];
                let _ = out.write_all(head.as_bytes());
                let mut left = bytes;
                while left > 0 {
                    let n = left.min(chunk.len() as u64) as usize;
                    if out.write_all(&chunk[..n]).is_err() {
                        return; // the reader went away
                    }
                    left -= n as u64;
                }
                let _ = out.write_all(tail.as_bytes());
                let _ = out.write_all(b"\n");
            }
        }
        // One write per burst: flush only when no further complete request is buffered (the
        // next read may block).
        if !input.buffer().contains(&b'\n') && out.flush().is_err() {
            break;
        }
    }
    let _ = out.flush();
}

fn write_line(out: &mut impl Write, v: &Value) {
    let _ = serde_json::to_writer(&mut *out, v);
    let _ = out.write_all(b"\n");
}

// ---------------------------------------------------------------------------------------------
// streamable HTTP

mod http {
    use super::*;
    use axum::Router;
    use axum::body::{Body, Bytes};
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;
    use std::collections::HashSet;
    use std::sync::RwLock;

    pub struct State {
        pub up: Upstream,
        pub sse: bool,
        pub sessions: RwLock<HashSet<String>>,
        pub next_session: AtomicU64,
        /// `tools/call` requests seen (for `--fault expire-sessions-after:N`).
        pub expiring: AtomicU64,
    }

    pub fn router(state: Arc<State>) -> Router {
        Router::new()
            .route(
                "/mcp",
                post(handle_post)
                    .delete(handle_delete)
                    .get(|| async { StatusCode::METHOD_NOT_ALLOWED }),
            )
            .with_state(state)
    }

    fn session_ok(st: &State, h: &HeaderMap) -> bool {
        h.get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|s| st.sessions.read().unwrap().contains(s))
    }

    async fn handle_delete(
        axum::extract::State(st): axum::extract::State<Arc<State>>,
        h: HeaderMap,
    ) -> StatusCode {
        let sid = h.get("mcp-session-id").and_then(|v| v.to_str().ok());
        match sid {
            Some(s) if st.sessions.write().unwrap().remove(s) => StatusCode::OK,
            Some(_) => StatusCode::NOT_FOUND,
            None => StatusCode::BAD_REQUEST,
        }
    }

    async fn handle_post(
        axum::extract::State(st): axum::extract::State<Arc<State>>,
        h: HeaderMap,
        body: Bytes,
    ) -> Response {
        let msg: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return json(
                    StatusCode::BAD_REQUEST,
                    &error(Value::Null, -32700, &format!("parse error: {e}")),
                );
            }
        };
        let is_init = msg.get("method").and_then(Value::as_str) == Some("initialize");
        if let Fault::ExpireSessionsAfter(k) = st.up.fault
            && msg.get("method").and_then(Value::as_str) == Some("tools/call")
            && st.expiring.fetch_add(1, Ordering::Relaxed) == k
        {
            st.sessions.write().unwrap().clear();
        }
        if !is_init && !session_ok(&st, &h) {
            return json(
                StatusCode::NOT_FOUND,
                &error(Value::Null, -32001, "Session not found"),
            );
        }
        let action = st.up.handle(msg);
        let v = match action {
            Action::Nothing => return StatusCode::ACCEPTED.into_response(),
            Action::Reply(v) => v,
            Action::Delayed(d, v) => {
                tokio::time::sleep(d).await;
                v
            }
            Action::Hang => return std::future::pending::<Response>().await,
            Action::Garbage => {
                return (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    "this is not JSON-RPC",
                )
                    .into_response();
            }
            Action::Crash => std::process::exit(3),
            Action::Huge(id, bytes) => return huge_body(&id, bytes, st.sse),
        };
        let mut r = if st.sse {
            let mut body = Vec::with_capacity(256);
            body.extend_from_slice(b"event: message\ndata: ");
            let _ = serde_json::to_writer(&mut body, &v);
            body.extend_from_slice(b"\n\n");
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "text/event-stream"),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                Body::from(body),
            )
                .into_response()
        } else {
            json(StatusCode::OK, &v)
        };
        if is_init {
            let n = st.next_session.fetch_add(1, Ordering::Relaxed);
            let sid = format!("s{n:016x}{:08x}", std::process::id());
            st.sessions.write().unwrap().insert(sid.clone());
            r.headers_mut()
                .insert("mcp-session-id", sid.parse().expect("ascii"));
        }
        r
    }

    /// A huge response, streamed in 64 KiB chunks (as JSON or as one SSE event).
    fn huge_body(id: &Value, bytes: u64, sse: bool) -> Response {
        let (head, tail) = huge_parts(id);
        let (head, tail) = if sse {
            (
                format!("event: message\ndata: {head}"),
                format!("{tail}\n\n"),
            )
        } else {
            (head, tail.to_string())
        };
        let chunk = Bytes::from(vec![b'x'; 64 << 10]);
        let full = bytes / chunk.len() as u64;
        let rest = (bytes % chunk.len() as u64) as usize;
        let body = std::iter::once(Bytes::from(head))
            .chain((0..full).map(move |_| chunk.clone()))
            .chain(std::iter::once(Bytes::from(vec![b'x'; rest])))
            .chain(std::iter::once(Bytes::from(tail)))
            .map(Ok::<_, std::convert::Infallible>);
        let ct = if sse {
            "text/event-stream"
        } else {
            "application/json"
        };
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, ct)],
            Body::from_stream(tokio_stream::iter(body)),
        )
            .into_response()
    }

    fn json(status: StatusCode, v: &Value) -> Response {
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_vec(v).unwrap_or_default(),
        )
            .into_response()
    }
}

fn serve_http(up: Upstream, addr: &str, sse: bool, threads: usize) {
    let rt = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if threads > 0 {
            b.worker_threads(threads);
        }
        b.enable_all().build()
    }
    .expect("runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| {
                eprintln!("test_upstream: cannot listen on {addr}: {e}");
                std::process::exit(2)
            });
        let local = listener.local_addr().expect("local addr");
        eprintln!("test_upstream: serving http://{local}/mcp");
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let state = Arc::new(http::State {
            up,
            sse,
            sessions: Default::default(),
            next_session: AtomicU64::new(1),
            expiring: AtomicU64::new(0),
        });
        axum::serve(listener, http::router(state))
            .await
            .expect("serve");
    });
}

fn usage() -> ! {
    eprintln!(
        "usage: test_upstream (--stdio | --http ADDR [--sse] [--threads N]) [--fault MODE]\n\
         MODE: none | crash-after:N | hang-after:N | garbage-after:N | error | slow:MS\n\
         | expire-sessions-after:N | huge:MB | endless-pages[:MS]; --count-file PATH"
    );
    std::process::exit(2)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut stdio, mut http_addr, mut sse, mut threads, mut fault) =
        (false, None, false, 0usize, Fault::None);
    let mut count_file = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--stdio" => stdio = true,
            "--http" => http_addr = Some(args.next().unwrap_or_else(|| usage())),
            "--sse" => sse = true,
            "--threads" => {
                threads = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--fault" => {
                fault = Fault::parse(&args.next().unwrap_or_else(|| usage())).unwrap_or_else(|e| {
                    eprintln!("test_upstream: {e}");
                    usage()
                })
            }
            "--count-file" => {
                count_file = Some(std::path::PathBuf::from(
                    args.next().unwrap_or_else(|| usage()),
                ))
            }
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    let up = Upstream {
        fault,
        calls: AtomicU64::new(0),
        lists: AtomicU64::new(0),
        count_file,
    };
    match (stdio, http_addr) {
        (true, None) => serve_stdio(up),
        (false, Some(addr)) => serve_http(up, &addr, sse, threads),
        _ => usage(),
    }
}
