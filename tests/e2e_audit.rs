//! End to end: the audit trail of `fentaris serve` (autoLog), read back with `fentaris logs`.

mod support;

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

const CANARY_ARG: &str = "canary-argument-value-5521";
const CANARY_SECRET: &str = "canary-upstream-secret-8834";
const ALICE_KEY: &str = "alice-audit-key-0123456789abcdef";

fn add_key(dir: &Path, user: &str, key: &str) {
    fentaris_with_stdin(dir, &["auth", "api-key", "add", user, "--value-stdin"], key);
}

fn set_credential(dir: &Path, name: &str, value: &str) {
    fentaris_with_stdin(dir, &["credentials", "set", name, "--value-stdin"], value);
}

fn audit_config(extra_audit: Value) -> Value {
    let mut audit = json!({ "tags": { "env": "test" } });
    for (k, v) in extra_audit.as_object().unwrap() {
        audit[k] = v.clone();
    }
    json!({
        "autoLog": true,
        "audit": audit,
        "servers": [{ "name": "env", "transport": { "stdio": {
            "command": python(), "args": [env_server()],
            "env": { "UPSTREAM_TOKEN": { "vault": "upstream-token" } } } } }],
        "groups": [{ "id": "devs", "users": ["alice"], "policy": { "rules": [
            { "mcp": "env", "allow": ["echo", "sleep"] },
            { "mcp": "env", "deny": "sleep" }
        ] } }]
    })
}

fn records(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join(".fentaris/logs/audit.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn logs(dir: &Path, args: &[&str]) -> std::process::Output {
    fentaris_cmd(dir).arg("logs").args(args).output().unwrap()
}

#[test]
fn requests_are_audited_field_by_field_and_the_chain_detects_tampering() {
    if !ready() {
        return;
    }
    let dir = project(&audit_config(json!({})));
    add_key(dir.path(), "alice", ALICE_KEY);
    set_credential(dir.path(), "upstream-token", CANARY_SECRET);
    let mut s = serve_in(dir, &[]);
    let url = s.url("/mcp");
    let steps = json!([
        { "op": "call_tool", "name": "env__echo", "args": { "message": CANARY_ARG } },
        { "op": "call_tool", "name": "env__sleep", "args": { "seconds": 0 } },
        { "op": "call_tool", "name": "env__env", "args": {} },
        { "op": "list_tools" }
    ]);
    let out = py(&url, ALICE_KEY, "legacy", &steps, None);
    assert_eq!(out[0]["ok"], true, "{out:?}");
    assert_eq!(out[1]["ok"], false, "{out:?}");
    assert_eq!(out[2]["ok"], false, "{out:?}");
    // A failed authentication: recorded without the presented key.
    let bad = "wrong-key-that-must-not-be-logged-42";
    let (status, _, _) = http(
        "POST",
        &url,
        &[("x-fentaris-api-key", bad)],
        Some(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"})),
    )
    .unwrap();
    assert_eq!(status, 401);
    assert!(s.stop().success());
    let dir = s.dir().to_path_buf();
    let recs = records(&dir);

    assert_eq!(recs[0]["event"], "file.start");
    assert_eq!(recs[0]["detail"]["chain"], "hmac-sha256");
    let events: Vec<&str> = recs.iter().map(|r| r["event"].as_str().unwrap()).collect();
    for e in [
        "serve.start",
        "upstream.start",
        "session.open",
        "request",
        "auth.failed",
        "serve.stop",
    ] {
        assert!(events.contains(&e), "no {e} record in {events:?}");
    }
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r["seq"], i as u64, "seq of line {}", i + 1);
        assert_eq!(r["tags"]["env"], "test", "tags on {r}");
        let t = r["time"].as_str().unwrap();
        assert!(t.ends_with('Z') && t.len() == 24, "time {t}");
    }

    let calls: Vec<&Value> = recs
        .iter()
        .filter(|r| r["event"] == "request" && r["method"] == "tools/call")
        .collect();
    assert_eq!(calls.len(), 3, "{calls:?}");
    let echo = calls[0];
    assert_eq!(echo["subject"]["id"], "alice");
    assert_eq!(echo["subject"]["groups"], json!(["devs"]));
    assert_eq!(
        echo["subject"]["keyId"].as_str().unwrap().len(),
        8,
        "{echo}"
    );
    assert_eq!(echo["client"]["address"], "127.0.0.1");
    assert!(echo["client"]["name"].is_string(), "{echo}");
    assert!(echo["session"].is_string() && echo["requestId"].is_string());
    assert_eq!(echo["server"], "env");
    assert_eq!(echo["operation"], "tool:call");
    assert_eq!(echo["target"], "echo");
    assert_eq!(echo["decision"], "allow");
    assert_eq!(echo["outcome"], "ok");
    assert_eq!(echo["rule"]["pointer"], "/groups/0/policy/rules/0");
    assert_eq!(
        echo["args"],
        json!({ "message": { "type": "string", "len": CANARY_ARG.len() } })
    );
    assert!(echo["latencyMs"].as_f64().unwrap() >= echo["upstreamMs"].as_f64().unwrap());

    let sleep = calls[1];
    assert_eq!(sleep["decision"], "deny");
    assert_eq!(sleep["outcome"], "denied");
    assert_eq!(sleep["rule"]["pointer"], "/groups/0/policy/rules/1");
    assert!(
        sleep.get("upstreamMs").is_none(),
        "a denied call never reached the upstream"
    );
    let env = calls[2];
    assert_eq!(env["decision"], "deny");
    assert!(env["reason"].as_str().unwrap().contains("no rule"), "{env}");
    let auth = recs.iter().find(|r| r["event"] == "auth.failed").unwrap();
    assert_eq!(auth["client"]["address"], "127.0.0.1");

    // Never in the log: argument values, the upstream secret, API keys (presented or valid).
    let text = std::fs::read_to_string(dir.join(".fentaris/logs/audit.jsonl")).unwrap();
    let own = s.log();
    for canary in [CANARY_ARG, CANARY_SECRET, ALICE_KEY, bad] {
        assert!(!text.contains(canary), "{canary} is in the audit log");
        assert!(!own.contains(canary), "{canary} is in Fentaris' own log");
    }

    // `logs tail --decision deny --format json` is exactly the denied requests.
    let o = logs(&dir, &["tail", "--decision", "deny", "--format", "json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let denied: Vec<Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let want: Vec<&Value> = recs.iter().filter(|r| r["decision"] == "deny").collect();
    assert_eq!(denied.len(), 2);
    assert_eq!(denied.iter().collect::<Vec<_>>(), want);
    // Filters and the table.
    let o = logs(
        &dir,
        &[
            "tail", "--user", "alice", "--tool", "ec*", "--format", "json",
        ],
    );
    assert_eq!(String::from_utf8(o.stdout).unwrap().lines().count(), 1);
    let o = logs(&dir, &["tail", "-n", "100"]);
    let table = String::from_utf8(o.stdout).unwrap();
    assert!(
        table.contains("DENY") && table.contains("sleep") && table.contains("alice"),
        "{table}"
    );
    assert!(!table.contains('\u{1b}'), "no colour when not a terminal");
    let o = logs(&dir, &["summary", "--format", "json"]);
    let sum: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(sum["denied"], 2);
    assert_eq!(sum["authFailures"], 1);

    // verify: intact, then edited, deleted and swapped lines are each named.
    let o = logs(&dir, &["verify"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("{} records", recs.len())));
    let path = dir.join(".fentaris/logs/audit.jsonl");
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let n = lines
        .iter()
        .position(|l| l.contains("\"decision\":\"deny\""))
        .unwrap();
    let check = |variant: Vec<String>, expect_line: usize, expect: &str| {
        let f = dir.join("tampered.jsonl");
        std::fs::write(&f, variant.join("\n") + "\n").unwrap();
        let o = logs(&dir, &["verify", f.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!("tampered.jsonl:{expect_line}:")) && err.contains(expect),
            "{err}"
        );
    };
    let mut edited = lines.clone();
    edited[n] = edited[n].replace("\"decision\":\"deny\"", "\"decision\":\"allow\"");
    check(edited, n + 1, "changed");
    let mut deleted = lines.clone();
    deleted.remove(n);
    check(deleted, n + 1, "missing");
    let mut swapped = lines.clone();
    swapped.swap(n, n + 1);
    check(swapped, n + 1, "out of order");
    // A forger who rewrites everything as a plain hash chain is refused: with a vault the
    // chain must be an HMAC under its key, whatever the file claims.
    let key = fentaris::audit::chain::ChainKey::Sha256;
    let mut link = fentaris::audit::chain::Link::genesis();
    let forged: Vec<String> = lines
        .iter()
        .map(|l| {
            let (body, _) = fentaris::audit::chain::split_line(l).unwrap();
            let body = body
                .replace("\"hmac-sha256\"", "\"sha256\"")
                .replace("\"decision\":\"deny\"", "\"decision\":\"allow\"");
            link.seal(&key, format!("{body}}}")).trim_end().to_string()
        })
        .collect();
    check(forged, 1, "sha256");
    assert!(path.exists());
}

#[test]
fn an_unwritable_audit_sink_refuses_requests() {
    if !ready() {
        return;
    }
    let dir = project(&json!({
        "autoLog": true,
        "audit": { "path": "/dev/full" },
        "servers": [{ "name": "env", "transport": { "stdio": { "command": python(), "args": [env_server()] } } }],
        "groups": [{ "id": "g", "users": [{ "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] }],
                     "policy": { "rules": [{ "mcp": "env", "allow": "echo" }] } }]
    }));
    let mut s = spawn_serve(dir, &[("ALICE_KEY", ALICE_KEY)]);
    let healthz = s.url("/healthz");
    wait_for(&mut s, &healthz);
    let (status, _, body) = http(
        "GET",
        &format!("http://127.0.0.1:{}/readyz", s.admin),
        &[],
        None,
    )
    .unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("audit"), "{body}");
    let url = s.url("/mcp");
    let sid = raw_session(&url, ALICE_KEY);
    let started = Instant::now();
    let r = raw_call(
        &url,
        ALICE_KEY,
        &sid,
        "tools/call",
        json!({ "name": "env__echo", "arguments": { "message": "hi" } }),
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let msg = r["error"]["message"].as_str().unwrap_or("");
    assert!(msg.contains("audit log cannot record this request"), "{r}");
    assert!(
        s.log().contains("cannot write the audit log"),
        "{}",
        s.log()
    );
}

#[test]
fn rotation_while_tail_follows_loses_no_line() {
    if !ready() {
        return;
    }
    let mut config = audit_config(json!({ "maxFileBytes": 4096, "keepFiles": 100 }));
    config["groups"][0]["users"] = json!([{ "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] }]);
    config["servers"][0]["transport"]["stdio"]
        .as_object_mut()
        .unwrap()
        .remove("env");
    let dir = project(&config);
    let mut s = serve_in(dir, &[("ALICE_KEY", ALICE_KEY)]);
    let dir = s.dir().to_path_buf();
    let mut tail = fentaris_cmd(&dir)
        .args(["logs", "tail", "-f", "-n", "100000", "--format", "raw"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = tail.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let done = line.contains("\"event\":\"serve.stop\"");
            got.push(line);
            if done {
                break;
            }
        }
        got
    });
    let url = s.url("/mcp");
    let sid = raw_session(&url, ALICE_KEY);
    for i in 0..60 {
        let r = raw_call(
            &url,
            ALICE_KEY,
            &sid,
            "tools/call",
            json!({ "name": "env__echo", "arguments": { "message": format!("m{i}") } }),
        );
        assert!(r.get("result").is_some(), "{r}");
    }
    assert!(s.stop().success());
    let got = reader.join().unwrap();
    let _ = tail.kill();
    let _ = tail.wait();
    let files: Vec<_> = (1..100)
        .map(|i| dir.join(format!(".fentaris/logs/audit.jsonl.{i}")))
        .take_while(|p| p.exists())
        .collect();
    assert!(files.len() >= 3, "the log rotated: {} files", files.len());
    let mut all: Vec<String> = Vec::new();
    for f in files
        .iter()
        .rev()
        .chain(std::iter::once(&dir.join(".fentaris/logs/audit.jsonl")))
    {
        all.extend(
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(str::to_string),
        );
    }
    assert_eq!(got, all, "tail -f printed every line once, in order");
    // The rotated set verifies as one chain.
    let o = logs(&dir, &["verify"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let _ = Command::new("true").status();
}

#[test]
fn a_request_whose_client_goes_away_is_still_audited() {
    if !ready() {
        return;
    }
    let dir = project(&json!({
        "autoLog": true,
        "servers": [{ "name": "env", "transport": { "stdio": { "command": python(), "args": [env_server()] } } }],
        "groups": [{ "id": "g", "users": [{ "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] }],
                     "policy": { "rules": [{ "mcp": "env", "allow": "sleep" }] } }]
    }));
    let mut s = serve_in(dir, &[("ALICE_KEY", ALICE_KEY)]);
    let url = s.url("/mcp");
    let sid = raw_session(&url, ALICE_KEY);
    // The client gives up after 300 ms and closes its connection; the call was forwarded.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(async {
        reqwest::Client::new()
            .post(&url)
            .timeout(Duration::from_millis(300))
            .header("x-fentaris-api-key", ALICE_KEY)
            .header("mcp-session-id", &sid)
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(
                json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                "params": { "name": "env__sleep", "arguments": { "seconds": 2 } }})
                .to_string(),
            )
            .send()
            .await
    });
    assert!(r.is_err(), "the client timed out");
    std::thread::sleep(Duration::from_millis(500));
    assert!(s.stop().success());
    let recs = records(s.dir());
    let sleep = recs
        .iter()
        .find(|r| r["event"] == "request" && r["target"] == "sleep")
        .unwrap_or_else(|| panic!("no record of the abandoned call: {recs:?}"));
    assert_eq!(sleep["decision"], "allow");
    // Either the call finished after the client left (hyper keeps serving it), or the request
    // was dropped and the guard wrote it as cancelled: never no line.
    assert!(
        sleep["outcome"] == "ok" || sleep["outcome"] == "cancelled",
        "{sleep}"
    );
}
