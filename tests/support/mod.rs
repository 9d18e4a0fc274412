//! Shared by the end-to-end tests: prerequisites, a project folder, `fentaris serve` on free
//! ports, raw HTTP, and the Python SDK client driver.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn everything_js() -> PathBuf {
    repo().join("tests/e2e/node_modules/@modelcontextprotocol/server-everything/dist/index.js")
}

pub fn env_server() -> PathBuf {
    repo().join("tests/e2e/env_server.py")
}

/// The real interpreter (a pyenv shim would add its own variables to the child).
pub fn python() -> String {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Whether the end-to-end prerequisites are here; panics in CI when they are not.
pub fn ready() -> bool {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let py = Command::new("python3")
        .args(["-c", "import mcp, httpx2"])
        .output()
        .is_ok_and(|o| o.status.success());
    let npm = everything_js().is_file();
    if node && py && npm {
        return true;
    }
    let why = format!("node: {node}, python mcp: {py}, npm packages in tests/e2e: {npm}");
    if std::env::var_os("E2E_REQUIRED").is_some() {
        panic!(
            "end-to-end prerequisites missing ({why}); run: npm ci --prefix tests/e2e && pip install mcp==2.3.0"
        );
    }
    eprintln!("skipped: end-to-end prerequisites missing ({why})");
    false
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Serve {
    pub child: Child,
    pub port: u16,
    pub admin: u16,
    /// Kept so the project folder lives as long as the server.
    pub _dir: tempfile::TempDir,
    /// Where the server's stderr (its own log) goes; printed when a test fails.
    pub stderr: PathBuf,
}

impl Serve {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st;
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                return self.child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Serve {
    /// The project folder.
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }
    /// What the server wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
        if std::thread::panicking() {
            eprintln!("--- fentaris serve stderr ---\n{}", self.log());
        }
    }
}

pub fn project(config: &Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".fentaris")).unwrap();
    std::fs::write(
        dir.path().join(".fentaris/config.json"),
        serde_json::to_string_pretty(config).unwrap(),
    )
    .unwrap();
    dir
}

pub fn fentaris_cmd(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fentaris"));
    c.current_dir(dir)
        .env_remove("FENTARIS_CONFIG")
        .env_remove("FENTARIS_VAULT_KEY")
        .env_remove("FENTARIS_VAULT_KEY_FILE")
        .env("XDG_CONFIG_HOME", dir.join("xdg"))
        .env("CI", "true");
    c
}

/// Start `fentaris serve` on free ports and wait until /readyz says ready. A port picked as
/// free can be taken before the server binds it (by another test's server, or as the
/// ephemeral port of any connection): then the server is started again on other ports.
pub fn serve_in(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Serve {
    let mut s = spawn_serve(dir, env);
    let mut restarts = 0;
    loop {
        let readyz = format!("http://127.0.0.1:{}/readyz", s.admin);
        match wait_ready(&mut s, &readyz) {
            Wait::Exited(_) if restarts < 3 && s.log().contains("Address already in use") => {
                restarts += 1;
                s.respawn(env, &[]);
            }
            other => {
                other.expect_ready(&s, &readyz);
                return s;
            }
        }
    }
}

/// How waiting for a server to answer ended.
enum Wait {
    Ready,
    Exited(std::process::ExitStatus),
    TimedOut,
}

impl Wait {
    /// Panics, with the server's log, unless the server became ready.
    fn expect_ready(self, s: &Serve, url: &str) {
        match self {
            Wait::Ready => {}
            Wait::Exited(st) => panic!("fentaris serve exited early: {st}\n{}", s.log()),
            Wait::TimedOut => panic!("fentaris serve did not become ready: {url}\n{}", s.log()),
        }
    }
}

/// Wait until `url` answers 200, the server exits, or 90 s pass. A 200 counts once the
/// server is still running a moment later: it may come from another test's server on a port
/// ours failed to take.
fn wait_ready(s: &mut Serve, url: &str) -> Wait {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(90) {
        if let Ok(Some(st)) = s.child.try_wait() {
            return Wait::Exited(st);
        }
        if let Ok((200, _, _)) = http("GET", url, &[], None) {
            std::thread::sleep(Duration::from_millis(100));
            return match s.child.try_wait() {
                Ok(Some(st)) => Wait::Exited(st),
                _ => Wait::Ready,
            };
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Wait::TimedOut
}

/// Wait until `url` answers 200 (panics if the server exits or takes over 90 s).
pub fn wait_for(s: &mut Serve, url: &str) {
    wait_ready(s, url).expect_ready(s, url);
}

/// Start `fentaris serve` on free ports (stderr to a file in the project), without waiting.
pub fn spawn_serve(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Serve {
    spawn_serve_with(dir, env, &[])
}

/// Like [`spawn_serve`], with extra `serve` arguments.
pub fn spawn_serve_with(dir: tempfile::TempDir, env: &[(&str, &str)], args: &[&str]) -> Serve {
    let (child, port, admin, stderr) = launch(dir.path(), env, args);
    Serve {
        child,
        port,
        admin,
        _dir: dir,
        stderr,
    }
}

impl Serve {
    /// Start the server again in the same project, on new free ports (after it exited).
    pub fn respawn(&mut self, env: &[(&str, &str)], args: &[&str]) {
        let _ = self.child.wait();
        let (child, port, admin, stderr) = launch(self._dir.path(), env, args);
        (self.child, self.port, self.admin, self.stderr) = (child, port, admin, stderr);
    }
}

/// `fentaris serve` in `dir` with its listeners moved to free ports: the child, the two
/// ports, and the file its stderr goes to.
fn launch(
    dir: &Path,
    env: &[(&str, &str)],
    args: &[&str],
) -> (Child, u16, u16, std::path::PathBuf) {
    let cfg_path = dir.join(".fentaris/config.json");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    let (port, admin) = (free_port(), free_port());
    config["listen"] = json!(format!("127.0.0.1:{port}"));
    config["adminListen"] = json!(format!("127.0.0.1:{admin}"));
    std::fs::write(&cfg_path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    let stderr = dir.join("serve.stderr");
    let mut cmd = fentaris_cmd(dir);
    cmd.arg("serve")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    (cmd.spawn().unwrap(), port, admin, stderr)
}

pub fn serve(config: &Value, env: &[(&str, &str)]) -> Serve {
    serve_in(project(config), env)
}

/// A raw HTTP request: (status, headers, body).
pub fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Result<(u16, HashMap<String, String>, String), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let mut req = client
            .request(method.parse().unwrap(), url)
            .timeout(Duration::from_secs(60));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(b.to_string());
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let hs = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        Ok((status, hs, text))
    })
}

/// Run the Python SDK client with `steps`; one result per step.
pub fn py(
    url: &str,
    key: &str,
    mode: &str,
    steps: &Value,
    extra_headers: Option<&Value>,
) -> Vec<Value> {
    py_with(url, key, mode, steps, extra_headers, false)
}

/// Like [`py`]; with `callbacks` the client offers sampling, elicitation and roots.
pub fn py_with(
    url: &str,
    key: &str,
    mode: &str,
    steps: &Value,
    extra_headers: Option<&Value>,
    callbacks: bool,
) -> Vec<Value> {
    let mut cmd = Command::new("python3");
    cmd.arg(repo().join("tests/e2e/mcp_client.py"))
        .args([url, key, mode]);
    if let Some(h) = extra_headers {
        cmd.env("EXTRA_HEADERS", h.to_string());
    }
    if callbacks {
        cmd.env("CALLBACKS", "1");
    }
    run_client(cmd, steps, "python client")
}

/// Run an MCP client driver: `steps` as JSON on stdin, one JSON result per step on stdout.
pub fn run_client(mut cmd: Command, steps: &Value, what: &str) -> Vec<Value> {
    let mut child = cmd
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
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bad client output ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

pub const ALICE: &str = "alice-key-0123456789abcdef";
pub const BOB: &str = "bob-key-0123456789abcdefgh";

pub fn two_user_config() -> Value {
    json!({
        "servers": [
            { "name": "everything", "transport": { "stdio": { "command": "node", "args": [everything_js()] } } },
            { "name": "env", "transport": { "stdio": { "command": python(), "args": [env_server()] } } }
        ],
        "policies": [
            { "name": "reader", "rules": [
                { "mcp": "everything", "allow": ["echo", "get-sum", "trigger-long-running-operation"] },
                { "mcp": "everything", "allowCapability": { "operation": "prompt:get", "target": "simple-prompt" } },
                { "mcp": "everything", "allowCapability": { "operation": "completion:complete", "target": "completable-prompt" } },
                { "mcp": "everything", "allowCapability": { "operation": "resources:list", "targetKind": "resource" } },
                { "mcp": "everything", "allowCapability": { "operation": "resource:read", "target": "demo://resource/static/document/*" } },
                { "mcp": "everything", "denyCapability": { "operation": "resource:read", "target": "demo://resource/static/document/startup.md" } }
            ] },
            { "name": "env-only", "rules": [ { "mcp": "env", "allow": "*" } ] }
        ],
        "groups": [
            { "id": "readers", "users": [{ "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] }], "policy": "reader" },
            { "id": "ops", "users": [{ "id": "bob", "apiKeys": [{ "env": "BOB_KEY" }] }], "policy": "env-only" }
        ]
    })
}

pub fn ok(r: &Value) -> &Value {
    assert_eq!(r["ok"], true, "{r}");
    &r["value"]
}

pub fn err(r: &Value) -> (i64, String) {
    assert_eq!(r["ok"], false, "{r}");
    (
        r["code"].as_i64().unwrap_or(0),
        r["message"].as_str().unwrap_or("").to_string(),
    )
}

pub fn names(v: &Value, key: &str, field: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t[field].as_str().unwrap().to_string())
        .collect()
}

/// Initialize a legacy session over raw HTTP; returns the session id.
pub fn raw_session(url: &str, key: &str) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let (status, hs, body) =
        http("POST", url, &[("x-fentaris-api-key", key)], Some(&init)).unwrap();
    assert_eq!(status, 200, "{body}");
    hs["mcp-session-id"].clone()
}

/// The JSON-RPC message of a response body: plain JSON, or the last `data:` of an SSE stream.
pub fn rpc_body(body: &str) -> Value {
    match body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .rfind(|d| !d.is_empty())
    {
        Some(data) if !body.trim_start().starts_with('{') => serde_json::from_str(data).unwrap(),
        _ => serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}")),
    }
}

pub fn raw_call(url: &str, key: &str, sid: &str, method: &str, params: Value) -> Value {
    let msg = json!({"jsonrpc": "2.0", "id": 2, "method": method, "params": params});
    let (status, _, body) = http(
        "POST",
        url,
        &[("x-fentaris-api-key", key), ("mcp-session-id", sid)],
        Some(&msg),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    rpc_body(&body)
}

/// Read `GET` SSE notifications of a session for `wait`; returns the JSON messages.
pub fn listen_for(url: &str, key: &str, sid: &str, wait: Duration) -> Vec<Value> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resp = reqwest::Client::new()
            .get(url)
            .header("x-fentaris-api-key", key)
            .header("mcp-session-id", sid)
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let mut resp = resp;
        let mut text = String::new();
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(deadline, resp.chunk()).await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    })
}

/// The fast test upstream binary (examples/test_upstream.rs), built here when `cargo test`
/// did not build the examples.
pub fn test_upstream() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_fentaris"));
    let path = bin.parent().unwrap().join("examples/test_upstream");
    if !path.exists() {
        let st = Command::new(env!("CARGO"))
            .args(["build", "--example", "test_upstream"])
            .current_dir(repo())
            .status()
            .unwrap();
        assert!(st.success());
    }
    path
}

/// Run `fentaris ARGS` in the project `dir` with `input` on stdin (how secrets enter);
/// asserts that it succeeds.
pub fn fentaris_with_stdin(dir: &Path, args: &[&str], input: &str) {
    let mut c = fentaris_cmd(dir);
    c.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "fentaris {args:?} failed");
}
