//! Replicas (DESIGN section 9): identical `fentaris serve` processes sharing one project
//! folder (config and vault), each with its own audit stream (`audit.sink: stdout`, captured
//! per replica), and a shared `cursorKey`. A legacy session opened on one replica is served by
//! the others; a revoked key ends access everywhere; `identity.allowedClients` refuses
//! addresses before any key check; and a real nginx (Debian's package, started here with its
//! own prefix) balances round-robin over three replicas while the Python SDK runs a legacy and
//! a stateless session and one replica is killed.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

const ALICE_KEY: &str = "alice-replica-key-0123456789abcdef";
const ALICE_KEY_2: &str = "alice-replica-key-2-0123456789abcd";
const BOB_KEY: &str = "bob-replica-key-0123456789abcdefgh";
const SESSION_SECRET: &str = "replica-shared-session-secret-5f2a9c";

/// One `fentaris serve` of a shared project folder, on its own ports, its audit lines (stdout)
/// in its own file.
struct Replica {
    child: Child,
    port: u16,
    admin: u16,
    audit: PathBuf,
    stderr: PathBuf,
    /// How it was started, to start it again on other ports.
    dir: PathBuf,
    name: String,
    env: Vec<(String, String)>,
}

impl Replica {
    fn start(dir: &Path, name: &str) -> Replica {
        Replica::start_env(dir, name, &[])
    }

    fn start_env(dir: &Path, name: &str, env: &[(&str, &str)]) -> Replica {
        let (port, admin) = (free_port(), free_port());
        let audit = dir.join(format!("{name}.audit.jsonl"));
        let stderr = dir.join(format!("{name}.stderr"));
        let child = fentaris_cmd(dir)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .args(["--threads", "1"])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&audit).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Replica {
            child,
            port,
            admin,
            audit,
            stderr,
            dir: dir.to_path_buf(),
            name: name.to_string(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Wait until /readyz says ready. A port picked as free can be taken before the replica
    /// binds it (by another test's server, or as the ephemeral port of any connection):
    /// then the replica is started again on other ports (the callers use them after this).
    fn wait_ready(&mut self) {
        let mut url = format!("http://127.0.0.1:{}/readyz", self.admin);
        let mut start = Instant::now();
        let mut restarts = 0;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                if restarts < 3 && self.log().contains("Address already in use") {
                    restarts += 1;
                    eprintln!(
                        "replica {} exited, a port was taken; starting it again on other ports\n{}",
                        self.name,
                        self.log()
                    );
                    let env: Vec<(&str, &str)> = self
                        .env
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    let again = Replica::start_env(&self.dir, &self.name, &env);
                    *self = again;
                    url = format!("http://127.0.0.1:{}/readyz", self.admin);
                    start = Instant::now();
                    continue;
                }
                panic!("replica exited early: {st}\n{}", self.log());
            }
            // Ready, and ours: the port's answer came while our replica runs (a taken admin
            // port could belong to another test's server).
            if let Ok((200, _, _)) = http("GET", &url, &[], None)
                && matches!(self.child.try_wait(), Ok(None))
            {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "replica not ready\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGTERM, then wait (SIGKILL after 20 s); reaped either way.
    fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let start = Instant::now();
            while let Ok(None) = self.child.try_wait() {
                if start.elapsed() > Duration::from_secs(20) {
                    let _ = self.child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.wait();
    }

    fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- replica {} stderr ---\n{}", self.port, self.log());
        }
    }
}

/// A project whose replicas share the config and the vault (API keys, the session secret).
fn project_with(shared_key: bool, identity: Value) -> tempfile::TempDir {
    project_limits(shared_key, identity, json!({}))
}

fn project_limits(shared_key: bool, identity: Value, limits: Value) -> tempfile::TempDir {
    let mut config = json!({
        "limits": limits,
        "autoLog": true,
        "audit": { "sink": "stdout" },
        "identity": identity,
        "servers": [{ "name": "t", "transport": { "stdio": {
            "command": test_upstream(), "args": ["--stdio"] } } }],
        "groups": [
            { "id": "devs", "users": ["alice"], "policy": { "rules": [ { "mcp": "t", "allow": "echo" } ] } },
            { "id": "ops", "users": ["bob"], "policy": { "rules": [ { "mcp": "t", "allow": "echo" } ] } }
        ]
    });
    if shared_key {
        config["cursorKey"] = json!({ "vault": "session-key" });
    }
    let dir = project(&config);
    let add = |user: &str, key: &str| {
        fentaris_with_stdin(
            dir.path(),
            &["auth", "api-key", "add", user, "--value-stdin"],
            key,
        )
    };
    add("alice", ALICE_KEY);
    add("alice", ALICE_KEY_2);
    add("bob", BOB_KEY);
    if shared_key {
        fentaris_with_stdin(
            dir.path(),
            &["credentials", "set", "session-key", "--value-stdin"],
            SESSION_SECRET,
        );
    }
    dir
}

fn start_all(dir: &Path, n: usize) -> Vec<Replica> {
    let mut rs: Vec<Replica> = (0..n)
        .map(|i| Replica::start(dir, &format!("r{i}")))
        .collect();
    for r in &mut rs {
        r.wait_ready();
    }
    rs
}

/// A raw POST on a session: (status, JSON-RPC body or the raw text).
fn post(url: &str, key: &str, sid: &str, msg: &Value) -> (u16, String) {
    let (status, _, body) = http(
        "POST",
        url,
        &[("x-fentaris-api-key", key), ("mcp-session-id", sid)],
        Some(msg),
    )
    .unwrap();
    (status, body)
}

fn echo(i: u64, text: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": i, "method": "tools/call",
           "params": {"name": "t__echo", "arguments": {"message": text}}})
}

fn key_id(dir: &Path, user: &str, n: usize) -> String {
    let out = fentaris_cmd(dir)
        .args(["auth", "api-key", "list", user, "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v[n]["keyId"].as_str().unwrap().to_string()
}

/// `fentaris logs verify FILE` for one replica's audit stream.
fn verify(dir: &Path, file: &Path) {
    let out = fentaris_cmd(dir)
        .args(["logs", "verify", "--format", "json"])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}{}",
        file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_session_opened_on_one_replica_is_served_by_the_others_until_its_key_is_revoked() {
    if !ready() {
        return;
    }
    let dir = project_with(true, json!({}));
    let rs = start_all(dir.path(), 3);
    let (a, b, c) = (&rs[0], &rs[1], &rs[2]);
    let sid = raw_session(&a.url("/mcp"), ALICE_KEY);
    assert!(sid.starts_with("fs1.") && !sid.contains("alice"), "{sid}");

    // B never saw the session: it rebuilds it from the token and serves it.
    let (st, body) = post(&b.url("/mcp"), ALICE_KEY, &sid, &echo(2, "via b"));
    assert_eq!(st, 200, "{body}");
    assert_eq!(rpc_body(&body)["result"]["content"][0]["text"], "via b");
    // Another key of the same user may carry on the session; another user's key may not.
    let (st, _) = post(&c.url("/mcp"), ALICE_KEY_2, &sid, &echo(3, "via c"));
    assert_eq!(st, 200);
    let (st, _) = post(&c.url("/mcp"), BOB_KEY, &sid, &echo(4, "bob"));
    assert_eq!(st, 404, "a session is bound to its user on every replica");
    // Bound to its endpoint too.
    let (st, _) = post(&b.url("/mcp/t"), ALICE_KEY, &sid, &echo(5, "x"));
    assert_eq!(st, 404);
    // A forged or altered token is an unknown session.
    let mut forged = sid.clone();
    forged.replace_range(10..11, if &sid[10..11] == "A" { "B" } else { "A" });
    let (st, _) = post(&b.url("/mcp"), ALICE_KEY, &forged, &echo(6, "x"));
    assert_eq!(st, 404);

    // The audit trails name the session alike (a short id, not the token). Records reach
    // the file through the audit writer thread, possibly after the response: waited for.
    let opened = |r: &Replica, reason: &str| {
        let find = || {
            r.records().into_iter().find(|l| {
                l["event"] == "session.open" && l["reason"].as_str().unwrap().contains(reason)
            })
        };
        wait_until(reason, || find().is_some());
        find()
    };
    let first = opened(a, "initialize").expect("session.open on A");
    let resumed = opened(b, "resumed").expect("session.open (resumed) on B");
    assert_eq!(first["session"], resumed["session"]);
    assert_eq!(first["session"].as_str().unwrap().len(), 24);
    assert_eq!(resumed["subject"]["id"], "alice");
    assert_eq!(resumed["client"]["name"], "t");

    // DELETE ends the session on the replica that gets it; the others cannot know (the
    // documented trade-off) until the token expires.
    let (st, _, _) = http(
        "DELETE",
        &b.url("/mcp"),
        &[("x-fentaris-api-key", ALICE_KEY), ("mcp-session-id", &sid)],
        None,
    )
    .unwrap();
    assert_eq!(st, 200);
    let (st, _) = post(&b.url("/mcp"), ALICE_KEY, &sid, &echo(7, "x"));
    assert_eq!(st, 404, "a replica does not revive a session DELETEd there");
    let (st, _) = post(&a.url("/mcp"), ALICE_KEY, &sid, &echo(8, "x"));
    assert_eq!(st, 200);

    // Revoking the key that opened a session ends it everywhere: the replicas follow the
    // vault; the revoked key is refused (401), and the session cannot be revived with the
    // user's other key either.
    let sid2 = raw_session(&a.url("/mcp"), ALICE_KEY);
    let kid = key_id(dir.path(), "alice", 0);
    let out = fentaris_cmd(dir.path())
        .args(["auth", "api-key", "revoke", "alice", &kid])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for r in &rs {
        wait_until("the replica follows the vault", || {
            post(&r.url("/mcp"), ALICE_KEY, &sid2, &echo(9, "x")).0 == 401
        });
        let (st, _) = post(&r.url("/mcp"), ALICE_KEY_2, &sid2, &echo(10, "x"));
        assert_eq!(st, 404, "replica {}", r.port);
    }
    drop(rs);

    // Every replica's audit stream verifies on its own.
    for i in 0..3 {
        verify(dir.path(), &dir.path().join(format!("r{i}.audit.jsonl")));
    }
}

#[test]
fn without_a_cursor_key_a_session_lives_on_its_own_replica_only() {
    if !ready() {
        return;
    }
    let dir = project_with(false, json!({}));
    let rs = start_all(dir.path(), 2);
    let sid = raw_session(&rs[0].url("/mcp"), ALICE_KEY);
    let (st, _) = post(&rs[0].url("/mcp"), ALICE_KEY, &sid, &echo(2, "x"));
    assert_eq!(st, 200);
    let (st, _) = post(&rs[1].url("/mcp"), ALICE_KEY, &sid, &echo(2, "x"));
    assert_eq!(st, 404, "each process seals under its own random key");
    // And a DELETEd session is gone.
    let (st, _, _) = http(
        "DELETE",
        &rs[0].url("/mcp"),
        &[("x-fentaris-api-key", ALICE_KEY), ("mcp-session-id", &sid)],
        None,
    )
    .unwrap();
    assert_eq!(st, 200);
    let (st, _) = post(&rs[0].url("/mcp"), ALICE_KEY, &sid, &echo(3, "x"));
    assert_eq!(st, 404);
}

#[test]
fn allowed_clients_refuse_other_addresses_before_any_key_check() {
    if !ready() {
        return;
    }
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    // Loopback is not listed: every request is refused, a valid key or none.
    let dir = project_with(
        false,
        json!({ "allowedClients": ["192.0.2.0/24", "fd00::/8"] }),
    );
    let rs = start_all(dir.path(), 1);
    let url = rs[0].url("/mcp");
    for key in [Some(ALICE_KEY), None, Some("not-a-key-at-all-0123456789")] {
        let headers: Vec<(&str, &str)> =
            key.map(|k| ("x-fentaris-api-key", k)).into_iter().collect();
        let (st, _, body) = http("POST", &url, &headers, Some(&init)).unwrap();
        assert_eq!(st, 403, "{body}");
        assert!(body.contains("identity.allowedClients"), "{body}");
    }
    // A forwarded address counts only from a trusted proxy (none configured here).
    let (st, _, _) = http(
        "POST",
        &url,
        &[
            ("x-fentaris-api-key", ALICE_KEY),
            ("x-forwarded-for", "192.0.2.7"),
        ],
        Some(&init),
    )
    .unwrap();
    assert_eq!(st, 403);
    let (st, _, _) = http("GET", &rs[0].url("/healthz"), &[], None).unwrap();
    assert_eq!(st, 200, "health checks stay open to the load balancer");
    drop(rs);
    let records: Vec<Value> = std::fs::read_to_string(dir.path().join("r0.audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let refused: Vec<&Value> = records
        .iter()
        .filter(|r| r["event"] == "client.refused")
        .collect();
    assert_eq!(refused.len(), 4, "{records:?}");
    assert_eq!(refused[0]["client"]["address"], "127.0.0.1");
    assert!(
        !records.iter().any(|r| r["event"] == "auth.failed"),
        "no key was checked"
    );
    verify(dir.path(), &dir.path().join("r0.audit.jsonl"));

    // Behind a trusted proxy (this host), the forwarded address is the client's.
    let dir = project_with(
        false,
        json!({
            "allowedClients": ["192.0.2.0/24"],
            "trustedHeaders": { "userHeader": "x-user", "secretHeader": "x-proxy-secret",
                                "secret": { "env": "PROXY_SECRET" }, "proxies": ["127.0.0.1"] }
        }),
    );
    let mut r = Replica::start_env(
        dir.path(),
        "p0",
        &[("PROXY_SECRET", "proxy-secret-0123456789")],
    );
    r.wait_ready();
    let url = r.url("/mcp");
    let send = |xff: &str| {
        http(
            "POST",
            &url,
            &[("x-fentaris-api-key", ALICE_KEY), ("x-forwarded-for", xff)],
            Some(&init),
        )
        .unwrap()
        .0
    };
    assert_eq!(send("192.0.2.7"), 200);
    assert_eq!(send("198.51.100.1"), 403);
    assert_eq!(
        send("192.0.2.7, 198.51.100.1"),
        403,
        "the nearest untrusted hop counts"
    );
    drop(r);
    let text = std::fs::read_to_string(dir.path().join("p0.audit.jsonl")).unwrap();
    assert!(text.contains("\"address\":\"198.51.100.1\""), "{text}");
}

#[test]
fn bad_allowed_clients_are_reported_with_their_pointer() {
    let dir = project(
        &json!({ "identity": { "allowedClients": ["10.0.0.0/8", "10.0.0.0/33", "office"] } }),
    );
    let out = fentaris_cmd(dir.path())
        .args(["policy", "check", "--format", "json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = v.to_string();
    for p in ["/identity/allowedClients/1", "/identity/allowedClients/2"] {
        assert!(text.contains(p), "{p}: {text}");
    }
    assert!(!text.contains("/identity/allowedClients/0"), "{text}");
    assert!(
        text.contains("is not an IP address or CIDR range"),
        "{text}"
    );
}

/// nginx from the system's packages, or `None` (skipped locally, a failure in CI).
fn nginx_binary() -> Option<PathBuf> {
    for p in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(p).is_file() {
            return Some(PathBuf::from(p));
        }
    }
    if std::env::var_os("E2E_REQUIRED").is_some() {
        panic!("nginx is missing; install it with: apt-get install -y nginx-light");
    }
    eprintln!("skipped: nginx is not installed (apt-get install -y nginx-light)");
    None
}

/// nginx in the foreground with its own prefix (config, pid, logs, temp folders), round-robin
/// over `backends`, on a loopback port; stopped and reaped on drop.
struct Nginx {
    child: Child,
    port: u16,
    prefix: tempfile::TempDir,
}

impl Nginx {
    fn start(bin: &Path, backends: &[u16]) -> Nginx {
        let prefix = tempfile::tempdir().unwrap();
        let p = prefix.path();
        let port = free_port();
        let servers: String = backends
            .iter()
            .map(|b| format!("    server 127.0.0.1:{b} max_fails=1 fail_timeout=60s;\n"))
            .collect();
        let conf = format!(
            r#"daemon off;
master_process on;
worker_processes 1;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{ worker_connections 256; }}
http {{
  log_format balance '$request_method|$status|$upstream_addr';
  access_log {p}/access.log balance;
  client_body_temp_path {p}/body;
  proxy_temp_path {p}/proxy;
  fastcgi_temp_path {p}/fastcgi;
  uwsgi_temp_path {p}/uwsgi;
  scgi_temp_path {p}/scgi;
  upstream fentaris {{
{servers}  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://fentaris;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      # SSE answers and GET streams go through as they come.
      proxy_buffering off;
      proxy_read_timeout 60s;
      # A replica that refuses connections: the request goes to the next one.
      proxy_next_upstream error timeout;
    }}
  }}
}}
"#,
            p = p.display()
        );
        std::fs::write(p.join("nginx.conf"), conf).unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(p)
            .arg("-c")
            .arg(p.join("nginx.conf"))
            .arg("-e")
            .arg(p.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(p.join("stderr")).unwrap())
            .spawn()
            .unwrap();
        let mut n = Nginx {
            child,
            port,
            prefix,
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(st)) = n.child.try_wait() {
                panic!("nginx exited: {st}\n{}", n.errors());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "nginx did not start\n{}",
                n.errors()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        n
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn errors(&self) -> String {
        let p = self.prefix.path();
        format!(
            "{}{}",
            std::fs::read_to_string(p.join("stderr")).unwrap_or_default(),
            std::fs::read_to_string(p.join("error.log")).unwrap_or_default()
        )
    }

    /// (method, status, upstream addresses tried) per request.
    fn access(&self) -> Vec<(String, u16, String)> {
        std::fs::read_to_string(self.prefix.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut f = l.splitn(3, '|');
                Some((
                    f.next()?.to_string(),
                    f.next()?.parse().ok()?,
                    f.next()?.to_string(),
                ))
            })
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT: graceful stop of the master and its worker.
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-QUIT", &self.child.id().to_string()])
                .status();
            let start = Instant::now();
            while let Ok(None) = self.child.try_wait() {
                if start.elapsed() > Duration::from_secs(10) {
                    let _ = self.child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- nginx ---\n{}", self.errors());
        }
    }
}

#[test]
fn three_replicas_behind_nginx_lose_no_call_when_one_is_killed() {
    if !ready() {
        return;
    }
    let Some(bin) = nginx_binary() else { return };
    let dir = project_with(true, json!({}));
    let mut rs = start_all(dir.path(), 3);
    let ports: Vec<u16> = rs.iter().map(|r| r.port).collect();
    let lb = Nginx::start(&bin, &ports);
    // The replica that dies half-way; the test started it and reaps it.
    let victim = rs[1].child.id();
    let (calls, kill_at) = (30, 15);
    let mut cmd = Command::new("python3");
    cmd.arg(repo().join("tests/e2e/replica_client.py"))
        .arg(lb.url("/mcp"))
        .args([ALICE_KEY, "t__echo"])
        .args([calls.to_string(), kill_at.to_string(), victim.to_string()])
        .arg(rs[1].port.to_string());
    let started = Instant::now();
    let done = cmd.stdin(Stdio::null()).output().unwrap();
    let took = started.elapsed();
    assert!(
        done.status.success(),
        "replica client failed: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    let out: Value = serde_json::from_slice(&done.stdout).unwrap();
    let _ = rs[1].child.wait();
    eprintln!("replica client: {out} in {took:?}");
    for (session, protocol) in [("legacy", "2025-11-25"), ("stateless", "2026-07-28")] {
        let r = &out[session];
        assert_eq!(r["protocol"], protocol, "{out}");
        assert_eq!(r["errors"], json!([]), "{session}: {out}");
        assert_eq!(r["ok"], calls, "{session}: {out}");
        // Every replica accepts the session's token: nothing to re-initialize.
        assert_eq!(r["reinitialized"], 0, "{session}: {out}");
    }

    // nginx spread the calls over all three replicas before the kill, none reached the dead
    // one after it, and every request got a good answer.
    let access = lb.access();
    let victim_addr = format!("127.0.0.1:{}", rs[1].port);
    let served_by = |a: &str| a.rsplit(", ").next().unwrap_or("").to_string();
    for r in &rs {
        let addr = format!("127.0.0.1:{}", r.port);
        assert!(
            access
                .iter()
                .any(|(m, _, up)| m == "POST" && served_by(up) == addr),
            "{addr} served nothing: {access:?}"
        );
    }
    for (m, status, up) in &access {
        if m == "POST" {
            assert!(matches!(status, 200 | 202), "{m} {status} {up}");
        }
    }
    assert!(
        access
            .iter()
            .any(|(_, _, up)| up.starts_with(&victim_addr) && up.contains(", ")),
        "after the kill nginx found the replica down and went on: {access:?}"
    );

    // The legacy session was opened on one replica and served by the others too.
    drop(lb);
    for r in rs.iter_mut() {
        r.stop();
    }
    let opened: Vec<(usize, Value)> = rs
        .iter()
        .enumerate()
        .flat_map(|(i, r)| {
            r.records()
                .into_iter()
                .filter(|l| l["event"] == "session.open")
                .map(move |l| (i, l))
        })
        .collect();
    let first = opened
        .iter()
        .find(|(_, l)| l["reason"] == "initialize")
        .map(|(_, l)| l["session"].clone())
        .expect("the legacy session was opened");
    let calls_by_replica: Vec<usize> = rs
        .iter()
        .map(|r| {
            r.records()
                .iter()
                .filter(|l| {
                    l["event"] == "request" && l["session"] == first && l["method"] == "tools/call"
                })
                .count()
        })
        .collect();
    assert!(
        calls_by_replica.iter().filter(|n| **n > 0).count() >= 2,
        "one session, served by several replicas: {calls_by_replica:?}"
    );
    // Each replica's audit stream verifies on its own, the killed one's included.
    for r in &rs {
        verify(dir.path(), &r.audit);
    }
}

#[test]
fn policy_check_notes_sessions_tied_to_one_replica() {
    let check = |config: Value| -> Vec<Value> {
        let dir = project(&config);
        let out = fentaris_cmd(dir.path())
            .args(["policy", "check", "--format", "json"])
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["code"] == "FNT095")
            .cloned()
            .collect()
    };
    let found = check(json!({ "listen": "0.0.0.0:8765" }));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["location"]["pointer"], "/listen");
    assert!(found[0]["help"].as_str().unwrap().contains("cursorKey"));
    // A shared key, or a loopback listener, needs no note.
    assert!(
        check(json!({ "listen": "0.0.0.0:8765", "cursorKey": { "env": "SESSION_SECRET" } }))
            .is_empty()
    );
    assert!(check(json!({ "listen": "127.0.0.1:8765" })).is_empty());
}

#[test]
fn a_rebuilt_session_counts_against_the_session_caps_of_its_replica() {
    if !ready() {
        return;
    }
    let dir = project_limits(true, json!({}), json!({ "maxSessionsPerUser": 1 }));
    let rs = start_all(dir.path(), 2);
    let on_a = raw_session(&rs[0].url("/mcp"), ALICE_KEY);
    let on_b = raw_session(&rs[1].url("/mcp"), ALICE_KEY);
    // B holds alice's one session already: it will not rebuild another.
    let (st, body) = post(&rs[1].url("/mcp"), ALICE_KEY, &on_a, &echo(2, "x"));
    assert_eq!(st, 429, "{body}");
    assert!(body.contains("limits.maxSessionsPerUser"), "{body}");
    // Once that one ends, it does.
    let (st, _, _) = http(
        "DELETE",
        &rs[1].url("/mcp"),
        &[("x-fentaris-api-key", ALICE_KEY), ("mcp-session-id", &on_b)],
        None,
    )
    .unwrap();
    assert_eq!(st, 200);
    let (st, body) = post(&rs[1].url("/mcp"), ALICE_KEY, &on_a, &echo(3, "x"));
    assert_eq!(st, 200, "{body}");
}

#[test]
fn with_a_shared_key_idleness_frees_a_replicas_copy_and_the_token_rebuilds_it() {
    if !ready() {
        return;
    }
    let dir = project_limits(true, json!({}), json!({ "sessionIdle": "1s" }));
    let rs = start_all(dir.path(), 1);
    let sid = raw_session(&rs[0].url("/mcp"), ALICE_KEY);
    wait_until("the idle session is reaped", || {
        rs[0]
            .records()
            .iter()
            .any(|l| l["event"] == "session.close")
    });
    let (st, body) = post(&rs[0].url("/mcp"), ALICE_KEY, &sid, &echo(2, "back"));
    assert_eq!(st, 200, "{body}");
    // The audit writer thread may write the `resumed` record after the response.
    wait_until("the resumed session is audited", || {
        rs[0].records().iter().any(|l| {
            l["event"] == "session.open"
                && l["reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("resumed"))
        })
    });
    let records = rs[0].records();
    let close = records
        .iter()
        .find(|l| l["event"] == "session.close")
        .unwrap();
    assert!(
        close["reason"].as_str().unwrap().contains("stays good"),
        "{close}"
    );
    assert!(
        records.iter().any(|l| l["event"] == "session.open"
            && l["reason"].as_str().unwrap().starts_with("resumed")
            && l["session"] == close["session"]),
        "{records:?}"
    );
}
