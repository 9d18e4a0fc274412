//! A load generator for MCP servers over streamable HTTP.
//!
//! ```text
//! loadgen --url http://127.0.0.1:8765/mcp [--header 'K: V']... [--concurrency 16]
//!         [--duration 10s] [--warmup 1s] [--tool echo] [--args '{"message":"hi"}']
//!         [--threads N] [--timeout 30s]
//! loadgen --url URL [--header 'K: V']... --open-sessions 1000 [--concurrency 8] [--hold 5s]
//! ```
//!
//! Call mode: N concurrent sessions, each on its own HTTP/1.1 keep-alive connection:
//! `initialize`, `notifications/initialized`, then sequential `tools/call` until the duration
//! ends, then `DELETE` of the session (not timed). Responses may be `application/json` or
//! `text/event-stream` (the JSON-RPC response is taken from the `data:` lines); each must be
//! a result with the request's id and no error
//! (a result with `isError: true` counts as an error too). Prints one JSON object: calls,
//! calls_per_s, p50/p90/p99/max/mean latency in ms (calls during warm-up not counted),
//! errors (count and the first few messages), concurrency, duration.
//!
//! Open-sessions mode: opens N sessions (initialize + initialized, never DELETEd) over
//! `--concurrency` connections, prints `{"opened": N, ...}`, keeps the connections for
//! `--hold` (default 0) and exits; the sessions stay open on the server.
//!
//! Built on hyper's low-level HTTP/1.1 client (no pool, no URL parsing per request), so one
//! core of load generator drives far more calls per second than the servers it measures.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use serde_json::{Value, json};

struct Opts {
    host: String,
    authority: String,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    concurrency: usize,
    duration: Duration,
    warmup: Duration,
    tool: String,
    args: Value,
    threads: usize,
    timeout: Duration,
    open_sessions: usize,
    hold: Duration,
    protocol: String,
}

fn usage(msg: &str) -> ! {
    eprintln!(
        "loadgen: {msg}\nusage: loadgen --url URL [--header 'K: V']... [--concurrency N] [--duration 10s] \
         [--warmup 1s] [--tool echo] [--args JSON] [--threads N] [--timeout 30s]\n       \
         loadgen --url URL [--header 'K: V']... --open-sessions N [--concurrency 8] [--hold 0s]"
    );
    std::process::exit(2)
}

fn parse_duration(s: &str) -> Duration {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    match num.parse::<f64>() {
        Ok(v) if v >= 0.0 => Duration::from_secs_f64(v * mult),
        _ => usage(&format!("bad duration `{s}`")),
    }
}

fn parse_args() -> Opts {
    let mut url = None;
    let mut headers = Vec::new();
    let mut o = Opts {
        host: String::new(),
        authority: String::new(),
        path: String::new(),
        headers: Vec::new(),
        concurrency: 1,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(1),
        tool: "echo".into(),
        args: Value::Null,
        threads: 0,
        timeout: Duration::from_secs(30),
        open_sessions: 0,
        hold: Duration::ZERO,
        protocol: "2025-11-25".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--url" => url = Some(val()),
            "--header" | "-H" => {
                let h = val();
                let (k, v) = h
                    .split_once(':')
                    .unwrap_or_else(|| usage(&format!("bad header `{h}`")));
                let name = HeaderName::from_bytes(k.trim().as_bytes())
                    .unwrap_or_else(|_| usage(&format!("bad header name `{k}`")));
                let value = HeaderValue::from_str(v.trim())
                    .unwrap_or_else(|_| usage(&format!("bad header value for `{k}`")));
                headers.push((name, value));
            }
            "--concurrency" | "-c" => {
                o.concurrency = val().parse().unwrap_or_else(|_| usage("bad --concurrency"))
            }
            "--duration" | "-d" => o.duration = parse_duration(&val()),
            "--warmup" => o.warmup = parse_duration(&val()),
            "--tool" => o.tool = val(),
            "--args" => {
                o.args =
                    serde_json::from_str(&val()).unwrap_or_else(|e| usage(&format!("--args: {e}")))
            }
            "--threads" => o.threads = val().parse().unwrap_or_else(|_| usage("bad --threads")),
            "--timeout" => o.timeout = parse_duration(&val()),
            "--open-sessions" => {
                o.open_sessions = val()
                    .parse()
                    .unwrap_or_else(|_| usage("bad --open-sessions"))
            }
            "--hold" => o.hold = parse_duration(&val()),
            "--protocol" => o.protocol = val(),
            "-h" | "--help" => usage("help"),
            other => usage(&format!("unknown argument `{other}`")),
        }
    }
    let url = url.unwrap_or_else(|| usage("--url is required"));
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| usage("only http:// URLs are supported"));
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    o.authority = authority.to_string();
    o.host = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    o.path = path.to_string();
    o.headers = headers;
    if o.args.is_null() {
        o.args = match o.tool.as_str() {
            "payload" => json!({ "size": 1024 }),
            _ => json!({ "message": "hello from loadgen" }),
        };
    }
    o.concurrency = o.concurrency.max(1);
    o
}

/// One HTTP/1.1 connection carrying one MCP session.
struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    session: Option<HeaderValue>,
    next_id: u64,
}

async fn connect(o: &Opts) -> Result<Conn, String> {
    let tcp = tokio::net::TcpStream::connect(&o.host)
        .await
        .map_err(|e| format!("connect {}: {e}", o.host))?;
    let _ = tcp.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Conn {
        sender,
        session: None,
        next_id: 1,
    })
}

impl Conn {
    /// POST one message; returns (status, session header, body text, content type is SSE).
    async fn post(
        &mut self,
        o: &Opts,
        body: Vec<u8>,
    ) -> Result<(u16, Option<HeaderValue>, Bytes, bool), String> {
        let mut req = Request::post(o.path.as_str())
            .header(hyper::header::HOST, o.authority.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::ACCEPT, "application/json, text/event-stream")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let h = req.headers_mut();
        for (k, v) in &o.headers {
            h.append(k.clone(), v.clone());
        }
        if let Some(s) = &self.session {
            h.insert("mcp-session-id", s.clone());
            h.insert(
                "mcp-protocol-version",
                HeaderValue::from_str(&o.protocol).map_err(|e| e.to_string())?,
            );
        }
        self.sender
            .ready()
            .await
            .map_err(|e| format!("connection: {e}"))?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = resp.status().as_u16();
        let sid = resp.headers().get("mcp-session-id").cloned();
        let sse = resp
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("text/event-stream"));
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok((status, sid, body, sse))
    }

    /// A request; returns its result (checked: the request's id, no error).
    async fn request(&mut self, o: &Opts, method: &str, params: &Value) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        let body = serde_json::to_vec(
            &json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }),
        )
        .map_err(|e| e.to_string())?;
        let (status, sid, body, sse) = self.post(o, body).await?;
        if method == "initialize" {
            self.session = sid;
        }
        if status != 200 {
            return Err(format!(
                "{method}: HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ));
        }
        let msg = if sse {
            find_sse_response(&body, id)
                .ok_or_else(|| format!("{method}: no response with id {id} in the SSE stream"))?
        } else {
            serde_json::from_slice::<Value>(&body)
                .map_err(|e| format!("{method}: unreadable JSON: {e}"))?
        };
        check(msg, id, method)
    }

    async fn notify_initialized(&mut self, o: &Opts) -> Result<(), String> {
        let body = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_vec();
        let (status, _, body, _) = self.post(o, body).await?;
        if !(200..300).contains(&status) {
            return Err(format!(
                "notifications/initialized: HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ));
        }
        Ok(())
    }

    /// End the session (DELETE), so a server measured round after round does not keep one
    /// idle session per worker and round (a server may answer 405: sessions it cannot end).
    async fn close_session(&mut self, o: &Opts) {
        let Some(s) = self.session.take() else { return };
        let Ok(mut req) = Request::delete(o.path.as_str())
            .header(hyper::header::HOST, o.authority.as_str())
            .header("mcp-session-id", s)
            .body(Full::new(Bytes::new()))
        else {
            return;
        };
        for (k, v) in &o.headers {
            req.headers_mut().append(k.clone(), v.clone());
        }
        if self.sender.ready().await.is_ok()
            && let Ok(resp) = self.sender.send_request(req).await
        {
            let _ = resp.into_body().collect().await;
        }
    }

    async fn open_session(&mut self, o: &Opts) -> Result<(), String> {
        self.session = None;
        let init = json!({
            "protocolVersion": o.protocol,
            "capabilities": {},
            "clientInfo": { "name": "fentaris-loadgen", "version": "1" }
        });
        self.request(o, "initialize", &init).await?;
        self.notify_initialized(o).await
    }
}

fn check(msg: Value, id: u64, method: &str) -> Result<Value, String> {
    if msg.get("id").and_then(Value::as_u64) != Some(id) {
        return Err(format!(
            "{method}: response id {:?} is not {id}",
            msg.get("id")
        ));
    }
    if let Some(e) = msg.get("error") {
        return Err(format!("{method}: JSON-RPC error {e}"));
    }
    let Some(result) = msg.get("result") else {
        return Err(format!("{method}: response without result"));
    };
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        return Err(format!("{method}: tool error {result}"));
    }
    Ok(msg)
}

/// The JSON-RPC response with `id` among the SSE events of `body` (notifications and
/// requests before it are skipped).
fn find_sse_response(body: &[u8], id: u64) -> Option<Value> {
    let text = String::from_utf8_lossy(body);
    let text = text.replace("\r\n", "\n");
    for event in text.split("\n\n") {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        if data.is_empty() {
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(&data.join("\n")) else {
            continue;
        };
        if v.get("method").is_none() && v.get("id").and_then(Value::as_u64) == Some(id) {
            return Some(v);
        }
    }
    None
}

#[derive(Default)]
struct Errors {
    count: u64,
    first: Vec<String>,
}

impl Errors {
    fn add(&mut self, e: String) {
        self.count += 1;
        if self.first.len() < 5 && !self.first.contains(&e) {
            self.first.push(e);
        }
    }
}

async fn worker(o: Arc<Opts>, start: Instant, errors: Arc<Mutex<Errors>>) -> (Vec<u32>, u64) {
    let warm_end = start + o.warmup;
    let end = warm_end + o.duration;
    let mut lat = Vec::with_capacity(4096);
    let params = json!({ "name": o.tool, "arguments": o.args });
    let mut conn: Option<Conn> = None;
    let mut uncounted = 0u64;
    while Instant::now() < end {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => {
                let opened = async {
                    let mut c = connect(&o).await?;
                    c.open_session(&o).await?;
                    Ok::<_, String>(c)
                };
                match tokio::time::timeout(o.timeout, opened).await {
                    Ok(Ok(c)) => conn.insert(c),
                    Ok(Err(e)) => {
                        errors.lock().unwrap().add(format!("session: {e}"));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    Err(_) => {
                        errors.lock().unwrap().add("session: timed out".into());
                        continue;
                    }
                }
            }
        };
        let t0 = Instant::now();
        let r = tokio::time::timeout(o.timeout, c.request(&o, "tools/call", &params)).await;
        let t1 = Instant::now();
        let counted = t0 >= warm_end && t1 <= end;
        match r {
            Ok(Ok(_)) => {
                if counted {
                    lat.push((t1 - t0).as_micros().min(u32::MAX as u128) as u32);
                } else {
                    uncounted += 1;
                }
            }
            Ok(Err(e)) => {
                if counted {
                    errors.lock().unwrap().add(e.clone());
                }
                // A transport failure ends the connection; a JSON-RPC error does not.
                if e.starts_with("connection") || e.starts_with("request") || e.starts_with("body")
                {
                    conn = None;
                }
            }
            Err(_) => {
                if counted {
                    errors
                        .lock()
                        .unwrap()
                        .add(format!("tools/call: timed out after {:?}", o.timeout));
                }
                conn = None;
            }
        }
    }
    // After the measured window: not counted.
    if let Some(c) = conn.as_mut() {
        let _ = tokio::time::timeout(o.timeout, c.close_session(&o)).await;
    }
    (lat, uncounted)
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

async fn run_calls(o: Arc<Opts>) -> Value {
    let errors = Arc::new(Mutex::new(Errors::default()));
    let start = Instant::now();
    let tasks: Vec<_> = (0..o.concurrency)
        .map(|_| tokio::spawn(worker(o.clone(), start, errors.clone())))
        .collect();
    let mut all = Vec::new();
    let mut uncounted = 0u64;
    for t in tasks {
        if let Ok((lat, warm)) = t.await {
            all.extend(lat);
            uncounted += warm;
        }
    }
    all.sort_unstable();
    let calls = all.len() as u64;
    let secs = o.duration.as_secs_f64();
    let mean = if calls > 0 {
        all.iter().map(|&x| x as f64).sum::<f64>() / calls as f64 / 1000.0
    } else {
        0.0
    };
    let e = errors.lock().unwrap();
    json!({
        "url": format!("http://{}{}", o.authority, o.path),
        "tool": o.tool,
        "concurrency": o.concurrency,
        "duration_s": secs,
        "warmup_s": o.warmup.as_secs_f64(),
        "calls": calls,
        // Every successful call, warm-up included (for CPU per call over the whole run).
        "calls_total": calls + uncounted,
        "calls_per_s": round3(calls as f64 / secs),
        "p50_ms": round3(pct(&all, 0.50)),
        "p90_ms": round3(pct(&all, 0.90)),
        "p99_ms": round3(pct(&all, 0.99)),
        "max_ms": round3(all.last().map(|&x| x as f64 / 1000.0).unwrap_or(0.0)),
        "mean_ms": round3(mean),
        "errors": e.count,
        "error_messages": e.first,
    })
}

async fn run_open_sessions(o: Arc<Opts>) -> Value {
    let errors = Arc::new(Mutex::new(Errors::default()));
    let start = Instant::now();
    let per = o.open_sessions.div_ceil(o.concurrency);
    let tasks: Vec<_> = (0..o.concurrency)
        .map(|i| {
            let o = o.clone();
            let errors = errors.clone();
            tokio::spawn(async move {
                let n = per.min(o.open_sessions.saturating_sub(i * per));
                let mut opened = 0usize;
                let mut conn = match connect(&o).await {
                    Ok(c) => c,
                    Err(e) => {
                        errors.lock().unwrap().add(e);
                        return (0, None);
                    }
                };
                for _ in 0..n {
                    match conn.open_session(&o).await {
                        Ok(()) => opened += 1,
                        Err(e) => errors.lock().unwrap().add(e),
                    }
                }
                (opened, Some(conn))
            })
        })
        .collect();
    let mut opened = 0;
    let mut conns = Vec::new();
    for t in tasks {
        if let Ok((n, c)) = t.await {
            opened += n;
            conns.extend(c);
        }
    }
    let took = start.elapsed();
    let (count, first) = {
        let e = errors.lock().unwrap();
        (e.count, e.first.clone())
    };
    let out = json!({
        "opened": opened,
        "connections": conns.len(),
        "seconds": round3(took.as_secs_f64()),
        "errors": count,
        "error_messages": first,
    });
    if !o.hold.is_zero() {
        println!("{out}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tokio::time::sleep(o.hold).await;
        drop(conns);
        return Value::Null;
    }
    out
}

fn main() {
    let o = Arc::new(parse_args());
    let rt = if o.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if o.threads > 0 {
            b.worker_threads(o.threads);
        }
        b.enable_all().build()
    }
    .expect("runtime");
    let out = rt.block_on(async {
        if o.open_sessions > 0 {
            run_open_sessions(o.clone()).await
        } else {
            run_calls(o.clone()).await
        }
    });
    if !out.is_null() {
        println!("{out}");
    }
}
