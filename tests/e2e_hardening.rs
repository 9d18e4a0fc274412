//! End to end: what a stdio upstream child can and cannot get from Fentaris. It cannot read
//! Fentaris' FENTARIS_* secrets from /proc, the key file or the vault (Landlock), and it dies
//! with Fentaris even when Fentaris is killed with SIGKILL.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

const KEY: &str = "alice-hardening-key-0123456789";
const CANARY: &str = "canary-fentaris-env-secret-7731";

fn read(url: &str, sid: &str, path: &str) -> String {
    let r = raw_call(
        url,
        KEY,
        sid,
        "tools/call",
        json!({ "name": "env__read", "arguments": { "path": path } }),
    );
    r["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks whether the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[test]
fn a_child_cannot_read_fentaris_secrets_and_dies_with_it() {
    if !ready() {
        return;
    }
    let config = json!({
        "servers": [{ "name": "env", "transport": { "stdio": { "command": python(), "args": [env_server()] } } }],
        "groups": [{ "id": "g", "users": ["alice"], "policy": { "rules": [{ "mcp": "env", "allow": ["read", "pid", "env"] }] } }]
    });
    let dir = project(&config);
    // A vault key from the vault's own key file (created by `auth api-key add`).
    fentaris_with_stdin(
        dir.path(),
        &["auth", "api-key", "add", "alice", "--value-stdin"],
        KEY,
    );
    let keys_dir = dir.path().join("xdg/fentaris/keys");
    let key_file = std::fs::read_dir(&keys_dir)
        .unwrap_or_else(|e| panic!("{}: {e}", keys_dir.display()))
        .flatten()
        .map(|e| e.path())
        .next()
        .expect("a key file");
    let vault = dir.path().join(".fentaris/credentials.enc.json");
    let mut s = serve_in(dir, &[("FENTARIS_TEST_CANARY", CANARY)]);
    let url = s.url("/mcp");
    let sid = raw_session(&url, KEY);

    // The child's environment has no FENTARIS_* variable, and /proc shows no secret.
    let env: Value = serde_json::from_str(&{
        let r = raw_call(
            &url,
            KEY,
            &sid,
            "tools/call",
            json!({ "name": "env__env", "arguments": {} }),
        );
        r["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .to_string()
    })
    .unwrap();
    assert!(
        env.as_object()
            .unwrap()
            .keys()
            .all(|k| !k.starts_with("FENTARIS_")),
        "{env}"
    );
    let environ = read(&url, &sid, &format!("/proc/{}/environ", s.child.id()));
    assert!(
        !environ.contains(CANARY),
        "the canary is readable in /proc/<fentaris>/environ"
    );

    if fentaris::harden::landlock_abi().is_some() {
        let k = read(&url, &sid, key_file.to_str().unwrap());
        assert!(k.starts_with("error:"), "the child read the key file: {k}");
        let v = read(&url, &sid, vault.to_str().unwrap());
        assert!(v.starts_with("error:"), "the child read the vault: {v}");
        // Everything else stays readable.
        let other = read(&url, &sid, "/etc/hostname");
        assert!(!other.starts_with("error:"), "{other}");
    } else {
        eprintln!("skipped the key-file check: this kernel has no Landlock");
    }

    // SIGKILL Fentaris: the child goes too.
    let r = raw_call(
        &url,
        KEY,
        &sid,
        "tools/call",
        json!({ "name": "env__pid", "arguments": {} }),
    );
    let pid: i32 = r["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(alive(pid));
    s.child.kill().unwrap();
    let _ = s.child.wait();
    let start = Instant::now();
    while alive(pid) && start.elapsed() < Duration::from_secs(5) {
        // Reap it if it became our zombie (it is not our child, so this only waits).
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(pid), "the upstream outlived a SIGKILLed Fentaris");
}
