//! Attack class: exhaustion (see tests/e2e_adversary.rs). Slow and idle connections, one
//! user taking every session or child process, an upstream answering 150 MB or paging without
//! end: each is cut by a limit, with a clear message, while other clients keep being served
//! and Fentaris' memory stays bounded. Numbers are printed (run with `--nocapture`).

use crate::support::*;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const ALICE_KEY: &str = "alice-exhaust-key-0123456789ab";
const BOB_KEY: &str = "bob-exhaust-key-0123456789abcd";

fn config(servers: Value, limits: Value) -> Value {
    json!({
        "servers": servers,
        "limits": limits,
        "groups": [{ "id": "g", "users": [
            { "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] },
            { "id": "bob", "apiKeys": [{ "env": "BOB_KEY" }] }
        ], "policy": { "rules": [{ "mcp": "*", "allow": "*" }] } }]
    })
}

fn start(servers: Value, limits: Value) -> Serve {
    serve(
        &config(servers, limits),
        &[("ALICE_KEY", ALICE_KEY), ("BOB_KEY", BOB_KEY)],
    )
}

fn stdio(name: &str, args: &[&str]) -> Value {
    json!({ "name": name, "transport": { "stdio": { "command": test_upstream(), "args": args } } })
}

/// A POST to Fentaris: (status, headers, JSON-RPC message).
fn post(
    url: &str,
    key: &str,
    sid: Option<&str>,
    method: &str,
    params: Value,
) -> (u16, HashMap<String, String>, Value) {
    let msg = json!({ "jsonrpc": "2.0", "id": 7, "method": method, "params": params });
    let mut h = vec![("x-fentaris-api-key", key)];
    if let Some(s) = sid {
        h.push(("mcp-session-id", s));
    }
    let (status, hs, body) = http("POST", url, &h, Some(&msg)).unwrap();
    (status, hs, rpc_body(&body))
}

fn init(url: &str, key: &str) -> (u16, HashMap<String, String>, Value) {
    post(
        url,
        key,
        None,
        "initialize",
        json!({ "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "t", "version": "1" } }),
    )
}

fn echo(url: &str, key: &str, sid: &str, tool: &str) -> (u16, HashMap<String, String>, Value) {
    post(
        url,
        key,
        Some(sid),
        "tools/call",
        json!({ "name": tool, "arguments": { "message": "hi" } }),
    )
}

/// A field of /proc/<pid>/status, in kB.
fn proc_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim_start_matches(':').split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// A process this test started, killed and reaped when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_upstream(args: &[&str]) -> (Reaped, u16) {
    let port = free_port();
    let child = Command::new(test_upstream())
        .args(["--http", &format!("127.0.0.1:{port}")])
        .args(args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let child = Reaped(child);
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "test upstream did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, port)
}

/// How long until the server closes `tcp` (reads until EOF or error; at most `max`).
fn time_to_close(tcp: &mut std::net::TcpStream, max: Duration) -> Duration {
    let t = Instant::now();
    tcp.set_read_timeout(Some(max)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) | Err(_) => return t.elapsed(),
            Ok(_) => {}
        }
        if t.elapsed() >= max {
            return t.elapsed();
        }
    }
}

/// Open `n` slow connections to `port` (even ones send nothing; odd ones a request line and
/// headers, one byte every 200 ms, never finishing) and keep them until `stop`. Returns the
/// thread, how many are connected, and how many the server has closed.
fn slowloris(
    port: u16,
    n: usize,
    stop: Arc<AtomicBool>,
) -> (
    std::thread::JoinHandle<()>,
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
) {
    let connected = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let (c, d) = (connected.clone(), closed.clone());
    let t = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut tasks = Vec::new();
            for i in 0..n {
                if i % 100 == 99 {
                    // Bursts of 100: the test measures Fentaris, not the kernel's accept queue.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let (c, d, stop) = (c.clone(), d.clone(), stop.clone());
                tasks.push(tokio::spawn(async move {
                    let Ok(mut tcp) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                    else {
                        d.fetch_add(1, Ordering::Relaxed);
                        return;
                    };
                    c.fetch_add(1, Ordering::Relaxed);
                    let partial = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
                    let mut sent = 0;
                    let mut buf = [0u8; 1024];
                    let mut tick = tokio::time::interval(Duration::from_millis(200));
                    while !stop.load(Ordering::Relaxed) {
                        tokio::select! {
                            r = tcp.read(&mut buf) => {
                                if matches!(r, Ok(0) | Err(_)) {
                                    d.fetch_add(1, Ordering::Relaxed);
                                    return;
                                }
                            }
                            _ = tick.tick() => {
                                if i % 2 == 1 && sent < partial.len() {
                                    if tcp.write_all(&partial[sent..sent + 1]).await.is_err() {
                                        d.fetch_add(1, Ordering::Relaxed);
                                        return;
                                    }
                                    sent += 1;
                                }
                            }
                        }
                    }
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        });
    });
    (t, connected, closed)
}

#[test]
fn slowloris_does_not_lock_out_a_valid_client() {
    if !ready() {
        return;
    }
    // Fewer slots than slow connections: the cap must make room, not lock valid clients out.
    let s = start(
        json!([stdio("up", &["--stdio"])]),
        json!({ "maxConnections": 600, "headerReadTimeout": "3s" }),
    );
    let url = s.url("/mcp");
    let stop = Arc::new(AtomicBool::new(false));
    let (slow, connected, closed) = slowloris(s.port, 1000, stop.clone());
    let t = Instant::now();
    while connected.load(Ordering::Relaxed) + closed.load(Ordering::Relaxed) < 1000 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "slow connections not opened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    // A valid client: a new connection per request, each answered within 1 s.
    let t = Instant::now();
    let (status, hs, r) = init(&url, ALICE_KEY);
    let t_init = t.elapsed();
    assert_eq!(status, 200, "{r}");
    let sid = hs["mcp-session-id"].clone();
    let t = Instant::now();
    let (status, _, r) = echo(&url, ALICE_KEY, &sid, "up__echo");
    let t_call = t.elapsed();
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["result"]["content"][0]["text"], "hi", "{r}");
    eprintln!(
        "slowloris: 1000 slow connections (cap 600); valid client: initialize {t_init:?}, tools/call {t_call:?}"
    );
    assert!(
        t_init < Duration::from_secs(1),
        "initialize took {t_init:?}"
    );
    assert!(
        t_call < Duration::from_secs(1),
        "tools/call took {t_call:?}"
    );
    // The header timeout closes the rest of them (3 s after they connected).
    let t = Instant::now();
    while closed.load(Ordering::Relaxed) < 1000 {
        assert!(
            t.elapsed() < Duration::from_secs(8),
            "only {} of 1000 slow connections closed ({} connected)",
            closed.load(Ordering::Relaxed),
            connected.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "slowloris: all 1000 slow connections closed {:?} after the valid client",
        t.elapsed()
    );
    stop.store(true, Ordering::Relaxed);
    slow.join().unwrap();
    // One log line for the whole burst (rate-limited), naming the limit.
    let log = s.log();
    let lines = log
        .lines()
        .filter(|l| l.contains("connection limit reached"))
        .count();
    assert_eq!(lines, 1, "{log}");
    assert!(log.contains("limits.maxConnections = 600"), "{log}");
    // Still serving.
    let (status, _, r) = echo(&url, ALICE_KEY, &sid, "up__echo");
    assert_eq!(status, 200, "{r}");
}

#[test]
fn slow_heads_and_idle_connections_are_closed_on_their_own_timers() {
    if !ready() {
        return;
    }
    let s = start(
        json!([stdio("up", &["--stdio"])]),
        json!({ "headerReadTimeout": "1s", "idleTimeout": "3s" }),
    );
    // A head that never ends: closed after headerReadTimeout.
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    slow.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let head = time_to_close(&mut slow, Duration::from_secs(10));
    // A kept-alive connection after a complete request: closed after idleTimeout, not after
    // the (shorter) header timeout.
    let mut idle = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let idle_t = time_to_close(&mut idle, Duration::from_secs(10));
    eprintln!("timeouts: slow head closed after {head:?}, idle connection after {idle_t:?}");
    assert!(
        head >= Duration::from_millis(800) && head < Duration::from_secs(3),
        "{head:?}"
    );
    assert!(
        idle_t >= Duration::from_millis(2500) && idle_t < Duration::from_secs(5),
        "{idle_t:?}"
    );
    // A request body that never arrives is refused after the same read timeout.
    let mut body = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    body.write_all(
        format!("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nx-fentaris-api-key: {ALICE_KEY}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"jsonrpc\"")
            .as_bytes(),
    )
    .unwrap();
    body.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let t = Instant::now();
    let n = body.read(&mut buf).unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("headerReadTimeout"), "{answer}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[test]
fn a_client_that_does_not_read_its_response_is_cut_after_the_idle_timeout() {
    if !ready() {
        return;
    }
    let s = start(
        json!([stdio("up", &["--stdio"])]),
        json!({ "idleTimeout": "2s", "maxUpstreamMessageBytes": 67108864 }),
    );
    let url = s.url("/mcp");
    let (_, hs, _) = init(&url, ALICE_KEY);
    let sid = hs["mcp-session-id"].clone();
    // 48 MB asked for, none of it read: more than the socket buffers hold.
    let body = json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": { "name": "up__payload", "arguments": { "size": 48 << 20 } } })
    .to_string();
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    tcp.write_all(
        format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nx-fentaris-api-key: {ALICE_KEY}\r\nmcp-session-id: {sid}\r\ncontent-type: application/json\r\naccept: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    // The answer starts (the upstream's 48 MB are in Fentaris), then the client stops reading.
    let mut first = [0u8; 1];
    tcp.read_exact(&mut first).unwrap();
    std::thread::sleep(Duration::from_secs(5));
    // Now read: the server gave up on this client, so less than the whole answer arrives.
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (mut got, mut buf) = (0usize, vec![0u8; 1 << 16]);
    loop {
        match tcp.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    eprintln!(
        "slow reader: {} of 48 MiB delivered before the cut",
        got >> 20
    );
    assert!(got > 0, "the response had started");
    assert!(
        got < 48 << 20,
        "the whole response was kept for a client that did not read"
    );
    // The server is fine.
    let (status, _, r) = echo(&url, ALICE_KEY, &sid, "up__echo");
    assert_eq!(status, 200, "{r}");
}

#[test]
fn one_user_at_its_caps_leaves_room_for_others() {
    if !ready() {
        return;
    }
    let iso = json!({ "name": "iso", "isolation": "session",
        "transport": { "stdio": { "command": test_upstream(), "args": ["--stdio"] } } });
    let s = start(
        json!([iso]),
        json!({ "maxSessionsPerUser": 3, "maxChildrenPerUser": 2 }),
    );
    let url = s.url("/mcp");
    let sids: Vec<String> = (0..3)
        .map(|_| {
            let (status, hs, r) = init(&url, ALICE_KEY);
            assert_eq!(status, 200, "{r}");
            hs["mcp-session-id"].clone()
        })
        .collect();
    // A fourth session for alice: 429, Retry-After, and a JSON-RPC error naming the limit.
    let (status, hs, r) = init(&url, ALICE_KEY);
    assert_eq!(status, 429, "{r}");
    assert!(hs.contains_key("retry-after"), "{hs:?}");
    let msg = r["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("limits.maxSessionsPerUser is 3"), "{r}");
    // Two isolated children for alice; the third session's call is refused the same way.
    for sid in &sids[..2] {
        let (status, _, r) = echo(&url, ALICE_KEY, sid, "iso__echo");
        assert_eq!(status, 200, "{r}");
        assert_eq!(r["result"]["content"][0]["text"], "hi", "{r}");
    }
    let (status, hs, r) = echo(&url, ALICE_KEY, &sids[2], "iso__echo");
    assert_eq!(status, 429, "{r}");
    assert_eq!(
        hs.get("retry-after").map(String::as_str),
        Some("5"),
        "{hs:?}"
    );
    let msg = r["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("`iso`") && msg.contains("limits.maxChildrenPerUser"),
        "{r}"
    );
    // Bob is not affected by alice's caps.
    let (status, hs, r) = init(&url, BOB_KEY);
    assert_eq!(status, 200, "{r}");
    let bob = hs["mcp-session-id"].clone();
    let (status, _, r) = echo(&url, BOB_KEY, &bob, "iso__echo");
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["result"]["content"][0]["text"], "hi", "{r}");
    // Ending one of alice's sessions frees its child: her third session can call now.
    let (status, _, _) = http(
        "DELETE",
        &url,
        &[
            ("x-fentaris-api-key", ALICE_KEY),
            ("mcp-session-id", &sids[0]),
        ],
        None,
    )
    .unwrap();
    assert_eq!(status, 200);
    let t = Instant::now();
    loop {
        let (status, _, r) = echo(&url, ALICE_KEY, &sids[2], "iso__echo");
        if status == 200 {
            assert_eq!(r["result"]["content"][0]["text"], "hi", "{r}");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "child not freed: {r}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_150_mb_upstream_message_is_cut_and_memory_stays_bounded() {
    if !ready() {
        return;
    }
    let (_json_up, json_port) = http_upstream(&["--fault", "huge:150"]);
    let (_sse_up, sse_port) = http_upstream(&["--sse", "--fault", "huge:150"]);
    let servers = json!([
        stdio("huge", &["--stdio", "--fault", "huge:150"]),
        { "name": "hugejson", "transport": { "streamableHttp": { "url": format!("http://127.0.0.1:{json_port}/mcp") } } },
        { "name": "hugesse", "transport": { "streamableHttp": { "url": format!("http://127.0.0.1:{sse_port}/mcp") } } },
        stdio("ok", &["--stdio"])
    ]);
    let s = start(servers, json!({}));
    let url = s.url("/mcp");
    let pid = s.child.id();
    let (_, hs, _) = init(&url, ALICE_KEY);
    let sid = hs["mcp-session-id"].clone();
    for tool in ["huge__echo", "hugejson__echo", "hugesse__echo", "ok__echo"] {
        let (status, _, r) = echo(&url, ALICE_KEY, &sid, tool);
        assert_eq!(status, 200, "{r}");
        assert_eq!(r["result"]["content"][0]["text"], "hi", "{tool}: {r}");
    }
    let before = proc_kb(pid, "VmHWM");
    let rss_before = proc_kb(pid, "VmRSS");
    // Bob keeps calling another server meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let bob = {
        let (url, stop) = (url.clone(), stop.clone());
        std::thread::spawn(move || {
            let (_, hs, _) = init(&url, BOB_KEY);
            let sid = hs["mcp-session-id"].clone();
            let (mut n, mut slowest) = (0, Duration::ZERO);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let (status, _, r) = echo(&url, BOB_KEY, &sid, "ok__echo");
                slowest = slowest.max(t.elapsed());
                assert_eq!(status, 200, "{r}");
                assert_eq!(r["result"]["content"][0]["text"], "hi", "{r}");
                n += 1;
            }
            (n, slowest)
        })
    };
    for server in ["huge", "hugejson", "hugesse"] {
        let t = Instant::now();
        let (status, _, r) = post(
            &url,
            ALICE_KEY,
            Some(&sid),
            "tools/call",
            json!({ "name": format!("{server}__payload"), "arguments": {} }),
        );
        assert_eq!(status, 200, "{r}");
        let msg = r["error"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains(&format!("`{server}`")) && msg.contains("limits.maxUpstreamMessageBytes"),
            "{server}: {r}"
        );
        eprintln!("150 MB from `{server}`: refused after {:?}", t.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    let (n, slowest) = bob.join().unwrap();
    let after = proc_kb(pid, "VmHWM");
    let rss_after = proc_kb(pid, "VmRSS");
    eprintln!(
        "memory: VmHWM {before} kB -> {after} kB (+{} MB); VmRSS {rss_before} kB -> {rss_after} kB; bob: {n} calls meanwhile, slowest {slowest:?}",
        after.saturating_sub(before) / 1024
    );
    assert!(n > 0, "bob was not served meanwhile");
    assert!(
        after.saturating_sub(before) < 100 * 1024,
        "peak memory grew by {} kB",
        after - before
    );
    // The stdio connection that sent the oversized line is restarted; the HTTP ones were
    // only this request.
    let t = Instant::now();
    loop {
        let (_, _, r) = echo(&url, ALICE_KEY, &sid, "huge__echo");
        if r.get("result").is_some() {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "not restarted: {r}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, _, r) = echo(&url, ALICE_KEY, &sid, "hugejson__echo");
    assert_eq!(r["result"]["content"][0]["text"], "hi", "{r}");
    assert!(s.log().contains("connection is restarted"), "{}", s.log());
}

/// The pages the upstream has answered so far.
fn pages(f: &std::path::Path) -> u64 {
    std::fs::read_to_string(f)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn endless_paging_is_cut_and_stops_when_the_client_goes_away() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fast = dir.path().join("fast");
    let slow = dir.path().join("slow");
    let servers = json!([
        stdio(
            "pages",
            &[
                "--stdio",
                "--fault",
                "endless-pages",
                "--count-file",
                fast.to_str().unwrap()
            ]
        ),
        stdio(
            "slowpages",
            &[
                "--stdio",
                "--fault",
                "endless-pages:50",
                "--count-file",
                slow.to_str().unwrap()
            ]
        ),
        stdio("ok", &["--stdio"])
    ]);
    let s = start(servers, json!({ "maxListPages": 100 }));
    let url = s.url("/mcp");
    let (_, hs, _) = init(&url, ALICE_KEY);
    let sid = hs["mcp-session-id"].clone();
    // A call to a tool the upstream has not listed makes Fentaris read its whole list.
    let before = pages(&fast);
    let t = Instant::now();
    let (status, _, r) = echo(&url, ALICE_KEY, &sid, "pages__echo");
    let cut = t.elapsed();
    assert_eq!(status, 200, "{r}");
    let msg = r["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("`pages`") && msg.contains("limits.maxListPages"),
        "{r}"
    );
    let read = pages(&fast) - before;
    eprintln!("endless paging: cut after {read} pages in {cut:?}");
    assert!((100..=101).contains(&read), "{read} pages read");
    assert!(cut < Duration::from_secs(10), "{cut:?}");
    // Slow endless paging (50 ms a page); the client goes away after 500 ms: the paging
    // stops, for a session's SSE request and for a stateless 2026-07-28 request alike.
    let requests = [
        (
            "session, SSE",
            vec![("mcp-session-id", sid.as_str())],
            json!({ "name": "slowpages__echo", "arguments": {}, "_meta": { "progressToken": "p1" } }),
        ),
        (
            "stateless 2026-07-28",
            vec![
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
            ],
            json!({ "name": "slowpages__echo", "arguments": {}, "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": { "name": "t", "version": "1" },
                "io.modelcontextprotocol/clientCapabilities": {} } }),
        ),
    ];
    for (what, headers, params) in requests {
        let start = pages(&slow);
        let body = json!({ "jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": params })
            .to_string();
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        let mut req = format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nx-fentaris-api-key: {ALICE_KEY}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (k, v) in &headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(&body);
        tcp.write_all(req.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        drop(tcp);
        std::thread::sleep(Duration::from_millis(500));
        let a = pages(&slow);
        std::thread::sleep(Duration::from_millis(1000));
        let b = pages(&slow);
        eprintln!(
            "endless paging ({what}): {} pages read before the client left; {} more in the next second",
            a - start,
            b - a
        );
        assert!(a > start, "{what}: the paging did not start");
        assert!(
            b - a <= 1,
            "{what}: paging went on after the client left ({a} -> {b})"
        );
    }
    // Other servers are served meanwhile and after.
    let (status, _, r) = echo(&url, ALICE_KEY, &sid, "ok__echo");
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["result"]["content"][0]["text"], "hi", "{r}");
}
