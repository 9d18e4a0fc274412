//! End to end: upstream faults. A test upstream (examples/test_upstream.rs) told to crash
//! mid-call, hang, answer garbage, close its output or exit at start: each gives the client a
//! clear error within the timeout; crashed upstreams are restarted with backoff (sessions
//! hear list_changed) and stay down after a crash loop (`/readyz` says so).

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

const KEY: &str = "alice-faults-key-0123456789abc";

fn config(servers: Value) -> Value {
    json!({
        "servers": servers,
        "groups": [{ "id": "g", "users": [{ "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] }],
            "policy": { "rules": [{ "mcp": "*", "allow": "*" }] } }]
    })
}

fn faulty(name: &str, fault: &str, timeout: &str) -> Value {
    json!({ "name": name, "transport": { "stdio": { "command": test_upstream(),
        "args": ["--stdio", "--fault", fault] } }, "timeouts": { "request": timeout } })
}

fn echo(url: &str, sid: &str, tool: &str) -> Value {
    raw_call(
        url,
        KEY,
        sid,
        "tools/call",
        json!({ "name": tool, "arguments": { "message": "hi" } }),
    )
}

fn metric(s: &Serve, name: &str) -> f64 {
    let (_, _, body) = http(
        "GET",
        &format!("http://127.0.0.1:{}/metrics", s.admin),
        &[],
        None,
    )
    .unwrap();
    body.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn a_crash_mid_call_fails_at_once_and_the_upstream_comes_back() {
    if !ready() {
        return;
    }
    let s = serve(
        &config(json!([faulty("up", "crash-after:2", "10s")])),
        &[("ALICE_KEY", KEY)],
    );
    let url = s.url("/mcp");
    let sid = raw_session(&url, KEY);
    for _ in 0..2 {
        assert!(echo(&url, &sid, "up__echo").get("result").is_some());
    }
    // A listener hears when the server is back.
    let (u, k, sd) = (url.clone(), KEY.to_string(), sid.clone());
    let listener = std::thread::spawn(move || listen_for(&u, &k, &sd, Duration::from_secs(6)));
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let r = echo(&url, &sid, "up__echo");
    let msg = r["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(msg.contains("`up`") && msg.contains("exited"), "{r}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "the crash was reported at once"
    );
    // While it restarts, calls fail fast with a clear message; then they succeed again.
    let start = Instant::now();
    loop {
        let r = echo(&url, &sid, "up__echo");
        if r.get("result").is_some() {
            break;
        }
        let m = r["error"]["message"].as_str().unwrap_or_default();
        assert!(m.contains("`up`"), "{r}");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "not restarted: {r}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(metric(&s, "fentaris_upstream_restarts_total{server=\"up\"}") >= 1.0);
    assert!(metric(&s, "fentaris_upstream_exits_total{server=\"up\"}") >= 1.0);
    let heard = listener.join().unwrap();
    assert!(
        heard
            .iter()
            .any(|m| m["method"] == "notifications/tools/list_changed"),
        "{heard:?}"
    );
}

#[test]
fn hangs_and_garbage_end_in_a_timeout_error() {
    if !ready() {
        return;
    }
    let s = serve(
        &config(json!([
            faulty("hang", "hang-after:0", "1s"),
            faulty("junk", "garbage-after:0", "1s")
        ])),
        &[("ALICE_KEY", KEY)],
    );
    let url = s.url("/mcp");
    let sid = raw_session(&url, KEY);
    for tool in ["hang__echo", "junk__echo"] {
        let t = Instant::now();
        let r = echo(&url, &sid, tool);
        let msg = r["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("timed out"), "{tool}: {r}");
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "{tool}: {:?}",
            t.elapsed()
        );
    }
    // The other server is not held up by them.
    let r = raw_call(&url, KEY, &sid, "tools/list", json!({}));
    assert!(r.get("result").is_some(), "{r}");
}

#[test]
fn an_upstream_that_cannot_start_stays_down_after_a_crash_loop() {
    if !ready() {
        return;
    }
    let servers = json!([
        { "name": "exits", "transport": { "stdio": { "command": "sh", "args": ["-c", "exit 3"] } } },
        { "name": "mute", "transport": { "stdio": { "command": "sh", "args": ["-c", "exec 1>&-; sleep 30"] } },
          "timeouts": { "connect": "1s" } },
        faulty("fine", "slow:0", "10s")
    ]);
    let mut s = spawn_serve(project(&config(servers)), &[("ALICE_KEY", KEY)]);
    let healthz = s.url("/healthz");
    wait_for(&mut s, &healthz);
    let url = s.url("/mcp");
    let sid = raw_session(&url, KEY);
    // A healthy server keeps working; the broken ones answer with a clear error.
    assert!(echo(&url, &sid, "fine__echo").get("result").is_some());
    let r = echo(&url, &sid, "exits__echo");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("`exits`"),
        "{r}"
    );
    // After repeated failures, /readyz names the servers that stay down.
    let readyz = format!("http://127.0.0.1:{}/readyz", s.admin);
    let start = Instant::now();
    let body = loop {
        let (status, _, body) = http("GET", &readyz, &[], None).unwrap();
        if status == 503 && body.contains("exits") && body.contains("mute") && body.contains("down")
        {
            break body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "readyz: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(body.contains("down"), "{body}");
    // The supervisor records it right after the pool does: give it a moment.
    let start = Instant::now();
    while metric(&s, "fentaris_upstream_down{server=\"exits\"}") != 1.0
        || !s.log().contains("stays down")
    {
        assert!(start.elapsed() < Duration::from_secs(5), "{}", s.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = echo(&url, &sid, "exits__echo");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("is down"),
        "{r}"
    );
    assert!(s.log().contains("stays down"), "{}", s.log());
}

#[test]
fn an_expired_upstream_session_is_reopened_transparently() {
    if !ready() {
        return;
    }
    let port = free_port();
    let mut upstream = Command::new(test_upstream())
        .args([
            "--http",
            &format!("127.0.0.1:{port}"),
            "--fault",
            "expire-sessions-after:2",
        ])
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(50));
    }
    let servers = json!([{ "name": "web", "transport": { "streamableHttp": { "url": format!("http://127.0.0.1:{port}/mcp") } } }]);
    let s = serve(&config(servers), &[("ALICE_KEY", KEY)]);
    let url = s.url("/mcp");
    let sid = raw_session(&url, KEY);
    for i in 0..5 {
        let r = echo(&url, &sid, "web__echo");
        assert!(r.get("result").is_some(), "call {i}: {r}");
    }
    assert!(s.log().contains("re-initialized"), "{}", s.log());
    let _ = upstream.kill();
    let _ = upstream.wait();
}

#[test]
fn progress_restarts_the_request_timeout() {
    if !ready() {
        return;
    }
    let servers = json!([{ "name": "everything", "transport": { "stdio": { "command": "node", "args": [everything_js()] } },
        "timeouts": { "request": "2s" } }]);
    let s = serve(&config(servers), &[("ALICE_KEY", KEY)]);
    let url = s.url("/mcp");
    let sid = raw_session(&url, KEY);
    let call = |meta: bool| {
        let mut params = json!({ "name": "everything__trigger-long-running-operation", "arguments": { "duration": 4, "steps": 8 } });
        if meta {
            params["_meta"] = json!({ "progressToken": "p" });
        }
        let (_, _, body) = http(
            "POST",
            &url,
            &[("x-fentaris-api-key", KEY), ("mcp-session-id", &sid)],
            Some(&json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": params })),
        )
        .unwrap();
        body
    };
    // Progress every 0.5 s keeps a 4 s call alive under a 2 s timeout...
    let body = call(true);
    assert!(body.contains("notifications/progress"), "{body}");
    assert!(rpc_body(&body).get("result").is_some(), "{body}");
    // ...and without progress the same call times out.
    let body = call(false);
    assert!(
        rpc_body(&body)["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("timed out"),
        "{body}"
    );
}

#[test]
fn an_unreachable_http_upstream_is_reconnected_when_it_is_back() {
    if !ready() {
        return;
    }
    let port = free_port();
    let start_upstream = || {
        let child = Command::new(test_upstream())
            .args(["--http", &format!("127.0.0.1:{port}")])
            .spawn()
            .unwrap();
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    };
    let mut upstream = start_upstream();
    let servers = json!([{ "name": "web", "transport": { "streamableHttp": { "url": format!("http://127.0.0.1:{port}/mcp") } } }]);
    let s = serve(&config(servers), &[("ALICE_KEY", KEY)]);
    let url = s.url("/mcp");
    let sid = raw_session(&url, KEY);
    assert!(echo(&url, &sid, "web__echo").get("result").is_some());
    let _ = upstream.kill();
    let _ = upstream.wait();
    let r = echo(&url, &sid, "web__echo");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("`web`"),
        "{r}"
    );
    let mut upstream = start_upstream();
    let start = Instant::now();
    loop {
        if echo(&url, &sid, "web__echo").get("result").is_some() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "not reconnected");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(metric(&s, "fentaris_upstream_restarts_total{server=\"web\"}") >= 1.0);
    let _ = upstream.kill();
    let _ = upstream.wait();
}
