//! Attack class: audit (see tests/e2e_adversary.rs).
//!
//! Another process of the same user goes after the audit log of a running `serve`: a second
//! `serve` on the same project, lines appended by a second writer, the file truncated,
//! renamed, deleted or replaced, a symlink planted in the rotation window, the checkpoint
//! forged or deleted. Each test asserts the safe outcome: refused, fail-closed (`/readyz`
//! 503, requests refused), or reported by `fentaris logs verify`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

const KEY: &str = "audit-adversary-key-0123456789";

fn config(extra_audit: Value) -> Value {
    let mut audit = json!({ "fsyncInterval": "50ms" });
    for (k, v) in extra_audit.as_object().unwrap() {
        audit[k] = v.clone();
    }
    json!({
        "autoLog": true,
        "audit": audit,
        "servers": [{ "name": "up", "transport": { "stdio": {
            "command": test_upstream(), "args": ["--stdio"] } } }],
        "groups": [{ "id": "g", "users": [{ "id": "alice", "apiKeys": [{ "env": "AUDIT_KEY" }] }],
                     "policy": { "rules": [{ "mcp": "up", "allow": "echo" }] } }]
    })
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join(".fentaris/logs/audit.jsonl")
}

fn start(extra_audit: Value) -> Serve {
    serve_in(project(&config(extra_audit)), &[("AUDIT_KEY", KEY)])
}

fn call(s: &Serve, sid: &str, msg: &str) -> Value {
    raw_call(
        &s.url("/mcp"),
        KEY,
        sid,
        "tools/call",
        json!({ "name": "up__echo", "arguments": { "message": msg } }),
    )
}

fn readyz(s: &Serve) -> u16 {
    http(
        "GET",
        &format!("http://127.0.0.1:{}/readyz", s.admin),
        &[],
        None,
    )
    .map(|r| r.0)
    .unwrap_or(0)
}

/// Wait (bounded) until the log holds `requests` request records and the checkpoint holds
/// its last line.
fn wait_for_checkpoint(dir: &Path, requests: usize) {
    let cp = dir.join(".fentaris/audit.checkpoint.json");
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(log_path(dir)).unwrap_or_default();
        let n: usize = (1..100)
            .map(|i| dir.join(format!(".fentaris/logs/audit.jsonl.{i}")))
            .map_while(|p| std::fs::read_to_string(p).ok())
            .chain([text.clone()])
            .map(|t| t.matches("\"event\":\"request\"").count())
            .sum();
        let last_seq = Some(&text)
            .filter(|_| n >= requests)
            .and_then(|t| t.lines().last().map(str::to_string))
            .and_then(|l| serde_json::from_str::<Value>(&l).ok())
            .and_then(|v| v["seq"].as_u64());
        let cp_seq = std::fs::read_to_string(&cp)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["seq"].as_u64());
        if last_seq.is_some() && cp_seq == last_seq {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no checkpoint for seq {last_seq:?} (have {cp_seq:?})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait (bounded) until the sink has failed closed: /readyz 503 and a call refused.
fn assert_fails_closed(s: &Serve, sid: &str) {
    let start = Instant::now();
    while readyz(s) != 503 {
        // A request makes the sink look at its file now rather than at its next idle tick.
        let _ = call(s, sid, "poke");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "/readyz stayed ready after the audit file was tampered with\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = call(s, sid, "after");
    let msg = r["error"]["message"].as_str().unwrap_or("");
    assert!(msg.contains("audit log cannot record this request"), "{r}");
}

fn logs(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let o = fentaris_cmd(dir).arg("logs").args(args).output().unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A running serve with a few requests written and checkpointed; returns its session.
fn busy(extra_audit: Value) -> (Serve, String) {
    let s = start(extra_audit);
    let sid = raw_session(&s.url("/mcp"), KEY);
    for i in 0..3 {
        assert!(call(&s, &sid, &format!("m{i}")).get("result").is_some());
    }
    wait_for_checkpoint(s.dir(), 3);
    (s, sid)
}

/// `fentaris serve` in `dir` with another config file beside the first (other ports, same
/// folder, so the same audit log): how a second serve on the same project starts.
fn second_serve(dir: &Path, args: &[&str]) -> std::process::Output {
    let cfg = dir.join(".fentaris/config.json");
    let mut c: Value = serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    c["listen"] = json!(format!("127.0.0.1:{}", free_port()));
    c["adminListen"] = json!(format!("127.0.0.1:{}", free_port()));
    let second = dir.join(".fentaris/second.json");
    std::fs::write(&second, c.to_string()).unwrap();
    let mut cmd = fentaris_cmd(dir);
    cmd.arg("--config")
        .arg(&second)
        .arg("serve")
        .args(args)
        .env("AUDIT_KEY", KEY)
        .stdin(Stdio::null());
    // Bounded: a second serve that did start would never exit by itself.
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_second_serve_on_the_same_project_is_refused_and_writes_nothing() {
    let (s, _sid) = busy(json!({}));
    let before = std::fs::read_to_string(log_path(s.dir())).unwrap();
    for args in [&[][..], &["--stdio", "--user", "alice"][..]] {
        let o = second_serve(s.dir(), args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {err}");
        assert!(
            err.contains("another fentaris process is writing the audit log")
                && err.contains("audit.jsonl")
                && err.contains("help:"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(log_path(s.dir())).unwrap(),
            before,
            "{args:?}: the refused serve wrote into the live log"
        );
    }
    assert_eq!(readyz(&s), 200, "the first serve is unaffected");
    // Even with the lock file deleted, the lock on the log file itself holds.
    std::fs::remove_file(s.dir().join(".fentaris/logs/audit.jsonl.lock")).unwrap();
    let o = second_serve(s.dir(), &[]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(std::fs::read_to_string(log_path(s.dir())).unwrap(), before);
}

#[test]
fn a_start_that_fails_writes_no_record() {
    let mut s = start(json!({}));
    assert!(s.stop().success());
    let dir = s.dir().to_path_buf();
    let before = std::fs::read_to_string(log_path(&dir)).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let o = fentaris_cmd(&dir)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("AUDIT_KEY", KEY)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("cannot listen"), "{err}");
    assert_eq!(std::fs::read_to_string(log_path(&dir)).unwrap(), before);
    let (code, out, err) = logs(&dir, &["verify"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("matches the checkpoint"), "{out}");
}

#[test]
fn a_second_writer_appending_lines_is_stopped_and_reported() {
    let (mut s, sid) = busy(json!({}));
    let p = log_path(s.dir());
    let text = std::fs::read_to_string(&p).unwrap();
    let n = text.lines().count();
    // A forged copy of the last line, as another process of the same user would append it.
    let forged = text
        .lines()
        .last()
        .unwrap()
        .replace("\"decision\":\"allow\"", "\"decision\":\"deny\"");
    let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
    std::io::Write::write_all(&mut f, format!("{forged}\n").as_bytes()).unwrap();
    drop(f);
    let after = std::fs::read_to_string(&p).unwrap();
    assert_fails_closed(&s, &sid);
    assert!(
        s.log().contains("was written to by another process"),
        "{}",
        s.log()
    );
    assert_eq!(
        std::fs::read_to_string(&p).unwrap(),
        after,
        "nothing written after the foreign bytes"
    );
    s.stop();
    let (code, _, err) = logs(s.dir(), &["verify"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("audit.jsonl:{}:", n + 1)), "{err}");
}

#[test]
fn truncating_the_log_under_a_running_serve_is_stopped_and_verify_names_the_cut() {
    let (mut s, sid) = busy(json!({}));
    let p = log_path(s.dir());
    let text = std::fs::read_to_string(&p).unwrap();
    let last_seq = serde_json::from_str::<Value>(text.lines().last().unwrap()).unwrap()["seq"]
        .as_u64()
        .unwrap();
    // Cut the last two records at a line boundary: the rest is still a valid chain.
    let keep: usize = text
        .lines()
        .take(text.lines().count() - 2)
        .map(|l| l.len() + 1)
        .sum();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(keep as u64)
        .unwrap();
    assert_fails_closed(&s, &sid);
    assert!(s.log().contains("was truncated"), "{}", s.log());
    s.stop();
    assert_eq!(std::fs::metadata(&p).unwrap().len(), keep as u64);
    let (code, out, err) = logs(s.dir(), &["verify"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("audit.jsonl")
            && err.contains("truncated")
            && err.contains(&format!("expected last seq {last_seq}")),
        "{err}"
    );
    let (code, out, _) = logs(s.dir(), &["verify", "--format", "json"]);
    assert_eq!(code, Some(1));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], false);
    // And `serve` refuses to continue the cut log (it would overwrite the evidence).
    let o = fentaris_cmd(s.dir())
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
        .env("AUDIT_KEY", KEY)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("tail was cut off"), "{err}");
    assert_eq!(std::fs::metadata(&p).unwrap().len(), keep as u64);
}

#[test]
fn renaming_deleting_or_replacing_the_log_fails_closed() {
    for action in ["rename", "unlink", "replace"] {
        let (mut s, sid) = busy(json!({}));
        let p = log_path(s.dir());
        let moved = s.dir().join("moved.jsonl");
        match action {
            "rename" => std::fs::rename(&p, &moved).unwrap(),
            "unlink" => std::fs::remove_file(&p).unwrap(),
            _ => {
                std::fs::write(&moved, "planted\n").unwrap();
                std::fs::rename(&moved, &p).unwrap();
            }
        }
        assert_fails_closed(&s, &sid);
        let log = s.log();
        assert!(
            log.contains("audit.jsonl") && log.contains("restart"),
            "{action}: {log}"
        );
        match action {
            "rename" => {
                // The moved file says what happened, in the chain.
                let t = std::fs::read_to_string(&moved).unwrap();
                let last = t.lines().last().unwrap();
                assert!(last.contains("\"event\":\"audit.tamper\""), "{last}");
                assert!(!p.exists(), "nothing re-created at the path");
            }
            "replace" => {
                assert_eq!(std::fs::read_to_string(&p).unwrap(), "planted\n");
            }
            _ => assert!(!p.exists()),
        }
        s.stop();
    }
}

#[test]
fn a_forged_or_deleted_checkpoint_is_reported() {
    let (mut s, _sid) = busy(json!({}));
    s.stop();
    let dir = s.dir().to_path_buf();
    // A copy put in the file's place: same records, so it verifies, with a note.
    let copy = dir.join("copy.jsonl");
    std::fs::copy(log_path(&dir), &copy).unwrap();
    std::fs::rename(&copy, log_path(&dir)).unwrap();
    let (code, out, err) = logs(&dir, &["verify"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("copied or restored"), "{out}");
    let cp = dir.join(".fentaris/audit.checkpoint.json");
    let text = std::fs::read_to_string(&cp).unwrap();
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["seq"] = json!(v["seq"].as_u64().unwrap() - 2);
    std::fs::write(&cp, v.to_string()).unwrap();
    let (code, _, err) = logs(&dir, &["verify"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("edited or forged"), "{err}");
    std::fs::remove_file(&cp).unwrap();
    let (code, _, err) = logs(&dir, &["verify"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("checkpoint") && err.contains("missing"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn files_are_private_under_umask_000_and_symlinks_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = project(&config(json!({})));
    let d = dir.path().to_path_buf();
    // Start under umask 000 through a shell; stop it with SIGTERM.
    let cfg = d.join(".fentaris/config.json");
    let mut c: Value = serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    let admin = free_port();
    c["listen"] = json!(format!("127.0.0.1:{}", free_port()));
    c["adminListen"] = json!(format!("127.0.0.1:{admin}"));
    std::fs::write(&cfg, c.to_string()).unwrap();
    let bin = env!("CARGO_BIN_EXE_fentaris");
    let cmd = fentaris_cmd(&d);
    let envs: Vec<_> = cmd
        .get_envs()
        .map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned())))
        .collect();
    let mut sh = Command::new("sh");
    sh.args(["-c", "umask 000; exec \"$0\" serve", bin])
        .current_dir(&d)
        .env("AUDIT_KEY", KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in envs {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    let mut child = sh.spawn().unwrap();
    let start = Instant::now();
    let readyz = format!("http://127.0.0.1:{admin}/readyz");
    while !matches!(http("GET", &readyz, &[], None), Ok((200, _, _))) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "serve did not start"
        );
        assert!(child.try_wait().unwrap().is_none(), "serve exited");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let logs_dir = d.join(".fentaris/logs");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert_eq!(mode(&logs_dir), 0o700);
    assert_eq!(mode(&log_path(&d)), 0o600);
    assert_eq!(mode(&logs_dir.join("audit.jsonl.lock")), 0o600);
    assert_eq!(mode(&d.join(".fentaris/audit.checkpoint.json")), 0o600);

    // A symlink at a rotated file's place: serve refuses to start, and writes nothing.
    let victim = d.join("victim.txt");
    std::fs::write(&victim, "").unwrap();
    std::os::unix::fs::symlink(&victim, logs_dir.join("audit.jsonl.1")).unwrap();
    let before = std::fs::read_to_string(log_path(&d)).unwrap();
    let o = fentaris_cmd(&d)
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
        .env("AUDIT_KEY", KEY)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("audit.jsonl.1") && err.contains("symbolic link"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(log_path(&d)).unwrap(), before);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "");
    drop(dir);
}

#[cfg(unix)]
#[test]
fn a_symlink_planted_in_the_rotation_window_is_never_written_through() {
    // Tiny files: every few requests the sink renames the file and creates a new one. An
    // attacker loops, planting a symlink to a victim file whenever the path is free.
    let (s, sid) = busy(json!({ "maxFileBytes": 1500, "keepFiles": 50 }));
    let p = log_path(s.dir());
    let victim = s.dir().join("victim.txt");
    std::fs::write(&victim, "").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attacker = {
        let (p, victim, stop) = (p.clone(), victim.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut planted = 0u32;
            let deadline = Instant::now() + Duration::from_secs(8);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                if std::os::unix::fs::symlink(&victim, &p).is_ok() {
                    planted += 1;
                }
                std::thread::yield_now();
            }
            planted
        })
    };
    let mut refused = false;
    for i in 0..60 {
        let r = call(&s, &sid, &format!("r{i}"));
        if r.get("error").is_some() {
            refused = true;
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let planted = attacker.join().unwrap();
    eprintln!("planted {planted} symlinks; refused: {refused}");
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "",
        "Fentaris wrote through a planted symlink"
    );
    if planted > 0 {
        // The attacker won the window at least once: the sink noticed and failed closed.
        assert!(
            refused || readyz(&s) == 503,
            "planted {planted} symlinks, still ready"
        );
        assert!(
            s.log().contains("symbolic link") || s.log().contains("replaced"),
            "{}",
            s.log()
        );
    }
}

#[test]
fn verify_during_a_busy_serve_never_reports_a_cut() {
    // Not an attack, the control: records and checkpoints keep coming while verify reads.
    let (s, sid) = busy(json!({ "maxFileBytes": 4000, "keepFiles": 50 }));
    let url = s.url("/mcp");
    let load = std::thread::spawn(move || {
        for i in 0..80 {
            let r = raw_call(
                &url,
                KEY,
                &sid,
                "tools/call",
                json!({ "name": "up__echo", "arguments": { "message": format!("l{i}") } }),
            );
            assert!(r.get("result").is_some(), "{r}");
        }
    });
    let mut runs = 0;
    while !load.is_finished() || runs < 3 {
        let (code, out, err) = logs(s.dir(), &["verify"]);
        assert_eq!(code, Some(0), "run {runs}: {out}{err}");
        runs += 1;
    }
    load.join().unwrap();
}
