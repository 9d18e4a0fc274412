//! End to end: hot reload (`serve --watch` and SIGHUP). New requests see the new policy,
//! sessions stay open, removed servers stop, changed servers restart, unchanged servers are
//! untouched; an invalid config is logged and the old one keeps serving; a revoked key's
//! sessions end; and reloading under load fails no request both configs allow.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

const ALICE: &str = "alice-reload-key-0123456789abc";

fn write_config(dir: &Path, config: &Value, port: u16, admin: u16) {
    let mut c = config.clone();
    c["listen"] = json!(format!("127.0.0.1:{port}"));
    c["adminListen"] = json!(format!("127.0.0.1:{admin}"));
    let path = dir.join(".fentaris/config.json");
    let tmp = dir.join(".fentaris/config.json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&c).unwrap()).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

fn env_server_decl(name: &str, extra_args: &[&str]) -> Value {
    let mut args = vec![json!(env_server())];
    args.extend(extra_args.iter().map(|a| json!(a)));
    json!({ "name": name, "transport": { "stdio": { "command": python(), "args": args } } })
}

fn config(servers: Value, allow: Value) -> Value {
    json!({
        "servers": servers,
        "groups": [{ "id": "g", "users": [{ "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] }, "bob"],
            "policy": { "rules": [{ "mcp": "*", "allow": allow }] } }]
    })
}

fn call(url: &str, key: &str, sid: &str, tool: &str) -> Value {
    raw_call(
        url,
        key,
        sid,
        "tools/call",
        json!({ "name": tool, "arguments": { "message": "hi" } }),
    )
}

fn pid_of(url: &str, sid: &str, server: &str) -> i32 {
    let r = call(url, ALICE, sid, &format!("{server}__pid"));
    r["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .parse()
        .unwrap()
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks existence.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn watch_reloads_policy_servers_and_keys_without_dropping_sessions() {
    if !ready() {
        return;
    }
    let first = config(
        json!([
            env_server_decl("keep", &[]),
            env_server_decl("gone", &[]),
            env_server_decl("change", &[])
        ]),
        json!(["echo", "pid"]),
    );
    let dir = project(&first);
    // Bob's key lives in the vault, so revoking it is a vault change.
    fentaris_with_stdin(
        dir.path(),
        &["auth", "api-key", "add", "bob", "--value-stdin"],
        "bob-reload-key-0123456789abcdef",
    );

    let mut s = spawn_serve_with(dir, &[("ALICE_KEY", ALICE)], &["--watch"]);
    let readyz = format!("http://127.0.0.1:{}/readyz", s.admin);
    wait_for(&mut s, &readyz);
    let url = s.url("/mcp");
    let sid = raw_session(&url, ALICE);
    let bob_sid = raw_session(&url, "bob-reload-key-0123456789abcdef");
    let (keep, gone, change) = (
        pid_of(&url, &sid, "keep"),
        pid_of(&url, &sid, "gone"),
        pid_of(&url, &sid, "change"),
    );
    assert!(
        call(&url, ALICE, &sid, "keep__echo")
            .get("result")
            .is_some()
    );

    // New policy (echo denied), `gone` removed, `change` gets another argument.
    let second = config(
        json!([
            env_server_decl("keep", &[]),
            env_server_decl("change", &["/dev/null"])
        ]),
        json!(["pid", "env"]),
    );
    write_config(s.dir(), &second, s.port, s.admin);
    wait_until("the new policy", || {
        call(&url, ALICE, &sid, "keep__echo").get("error").is_some()
    });
    // The same session goes on; the policy is the new one.
    assert!(call(&url, ALICE, &sid, "keep__env").get("result").is_some());
    assert_eq!(
        pid_of(&url, &sid, "keep"),
        keep,
        "an unchanged server is untouched"
    );
    wait_until("the removed server's child to exit", || !alive(gone));
    let r = call(&url, ALICE, &sid, "gone__pid");
    assert_eq!(r["error"]["code"], -32602, "{r}");
    let changed = pid_of(&url, &sid, "change");
    assert_ne!(changed, change, "a changed server is restarted");
    wait_until("the changed server's old child to exit", || !alive(change));

    // An invalid config is reported and the running one stays.
    let path = s.dir().join(".fentaris/config.json");
    std::fs::write(&path, r#"{ "servers": [ { "name": "BAD NAME" } ] }"#).unwrap();
    wait_until("the rejection in the log", || {
        s.log().contains("the changed config has errors")
    });
    assert!(call(&url, ALICE, &sid, "keep__env").get("result").is_some());
    assert!(s.log().contains("FNT"), "{}", s.log());
    write_config(s.dir(), &second, s.port, s.admin);

    // Revoking Bob's key ends his session and refuses the key.
    let list = fentaris_cmd(s.dir())
        .args(["auth", "api-key", "list", "--format", "json"])
        .output()
        .unwrap();
    let keys: Value = serde_json::from_slice(&list.stdout).unwrap();
    let bob_key_id = keys[0]["keyId"].as_str().unwrap().to_string();
    assert!(
        fentaris_cmd(s.dir())
            .args(["auth", "api-key", "revoke", "bob", &bob_key_id])
            .status()
            .unwrap()
            .success()
    );
    wait_until("bob's session to end", || {
        let (st, _, _) = http(
            "POST",
            &url,
            &[
                ("x-fentaris-api-key", "bob-reload-key-0123456789abcdef"),
                ("mcp-session-id", &bob_sid),
            ],
            Some(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}})),
        )
        .unwrap();
        st == 401
    });
    assert!(s.log().contains("config reloaded"), "{}", s.log());
}

#[test]
fn reloading_under_load_fails_no_request_both_configs_allow() {
    if !ready() {
        return;
    }
    let a = config(json!([env_server_decl("env", &[])]), json!(["echo", "pid"]));
    let b = config(json!([env_server_decl("env", &[])]), json!(["echo", "env"]));
    let s = serve(&a, &[("ALICE_KEY", ALICE)]);
    let url = s.url("/mcp");
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (url, stop, ok, failed) = (url.clone(), stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                let sid = raw_session(&url, ALICE);
                while !stop.load(Ordering::Relaxed) {
                    let r = call(&url, ALICE, &sid, "env__echo");
                    if r.get("result").is_some() {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        eprintln!("failed: {r}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let pid = s.child.id().to_string();
    for i in 0..20 {
        write_config(s.dir(), if i % 2 == 0 { &b } else { &a }, s.port, s.admin);
        let st = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
        assert!(st.success());
        std::thread::sleep(Duration::from_millis(150));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(
        ok.load(Ordering::Relaxed) > 20,
        "{}",
        ok.load(Ordering::Relaxed)
    );
    let reloads = s.log().matches("config reloaded").count();
    assert!(reloads >= 15, "{reloads} reloads\n{}", s.log());
}
