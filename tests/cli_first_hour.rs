//! The operator's first hour (issue 16, CLI side): revocation reaches a running `serve`
//! without flags, key rotation, `whoami`, every error of a config in one `policy check`,
//! did-you-mean for names, `doctor`, `policy explain --request-id`.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

const BOB: &str = "bob-first-hour-key-0123456789abcdef";

fn run(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut c = fentaris_cmd(dir);
    c.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn base_config() -> Value {
    json!({
        "servers": [],
        "groups": [{ "id": "dev", "users": ["bob", "alice"],
            "policy": { "rules": [{ "mcp": "*", "allow": ["*"] }] } }]
    })
}

fn list_tools(url: &str, key: &str) -> u16 {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}});
    http(
        "POST",
        url,
        &[
            ("x-fentaris-api-key", key),
            ("mcp-protocol-version", "2025-11-25"),
        ],
        Some(&body),
    )
    .map(|(st, _, _)| st)
    .unwrap_or(0)
}

fn key_ids(dir: &Path, user: &str) -> Vec<Value> {
    let o = run(
        dir,
        &["auth", "api-key", "list", user, "--format", "json"],
        None,
    );
    assert!(o.status.success(), "{:?}", text(&o));
    serde_json::from_slice::<Vec<Value>>(&o.stdout).unwrap()
}

/// Add `BOB` as a vault key of bob; its key id.
fn add_bob_key(dir: &Path) -> String {
    let o = run(
        dir,
        &["auth", "api-key", "add", "bob", "--value-stdin"],
        Some(BOB),
    );
    assert!(o.status.success(), "{:?}", text(&o));
    key_ids(dir, "bob")[0]["keyId"]
        .as_str()
        .unwrap()
        .to_string()
}

fn wait_ready(s: &mut Serve) {
    let readyz = format!("http://127.0.0.1:{}/readyz", s.admin);
    wait_for(s, &readyz);
}

#[test]
fn revoking_a_key_takes_effect_in_a_running_serve_without_flags() {
    let dir = project(&base_config());
    let id = add_bob_key(dir.path());
    let mut s = spawn_serve(dir, &[]);
    wait_ready(&mut s);
    let url = s.url("/mcp");
    let sid = raw_session(&url, BOB);
    assert!(!sid.is_empty());

    let o = run(s.dir(), &["auth", "api-key", "revoke", "bob", &id], None);
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains(&format!("Revoked key {id}")), "{err}");
    assert!(err.contains("running `fentaris serve`"), "{err}");
    let start = Instant::now();
    loop {
        if list_tools(&url, BOB) == 401 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the revoked key still works after 10 s\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Well within the poll interval plus a vault open.
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(s.log().contains("the vault changed"), "{}", s.log());
}

#[test]
fn rotation_issues_a_new_key_and_expires_the_old_one_after_the_overlap() {
    let dir = project(&base_config());
    add_bob_key(dir.path());
    let old = key_ids(dir.path(), "bob")[0]["keyId"]
        .as_str()
        .unwrap()
        .to_string();
    let o = run(
        dir.path(),
        &["auth", "api-key", "rotate", "bob", "--overlap", "2h"],
        None,
    );
    let (new_key, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let new_key = new_key.trim().to_string();
    assert!(new_key.starts_with("fnt_"), "{new_key}");
    assert!(
        err.contains(&format!("old key {old} stops working at")),
        "{err}"
    );
    let keys = key_ids(dir.path(), "bob");
    assert_eq!(keys.len(), 2);
    let old_row = keys.iter().find(|k| k["keyId"] == old.as_str()).unwrap();
    let expires = humantime::parse_rfc3339(old_row["expires"].as_str().unwrap()).unwrap();
    let left = expires
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(
        left > Duration::from_secs(7000) && left <= Duration::from_secs(7200),
        "{left:?}"
    );
    assert_eq!(old_row["status"], "active");
    assert_eq!(keys[1]["age"], "now");
    // With audit off, last use is said to be untracked rather than shown as "never".
    assert_eq!(keys[1]["lastUsed"], "not tracked");

    // whoami names both keys; a key nobody issued is refused with exit 1.
    let o = run(dir.path(), &["auth", "whoami"], Some(&new_key));
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let new_id = &new_key[4..12];
    assert!(out.contains(&format!("user bob, key {new_id}")), "{out}");
    let o = run(dir.path(), &["auth", "whoami"], Some(BOB));
    assert!(text(&o).0.contains(&format!("key {old}")), "{:?}", text(&o));
    let o = run(
        dir.path(),
        &["auth", "whoami"],
        Some("nobody-issued-this-key-0123456789"),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("not known here"), "{:?}", text(&o));

    // Two active keys now: rotate must be told which; overlap 0 retires the old one at once.
    let o = run(dir.path(), &["auth", "api-key", "rotate", "bob"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("2 active keys"), "{:?}", text(&o));
    let o = run(
        dir.path(),
        &["auth", "api-key", "rotate", "bob", &old, "--overlap", "0s"],
        None,
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let o = run(dir.path(), &["auth", "whoami"], Some(BOB));
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("expired"), "{:?}", text(&o));
}

#[test]
fn adding_a_key_for_an_undeclared_user_needs_new_user_and_suggests_the_name() {
    let dir = project(&base_config());
    let o = run(
        dir.path(),
        &["auth", "api-key", "add", "alcie", "--generate"],
        None,
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(out.is_empty(), "no key may be printed: {out}");
    assert!(err.contains("did you mean `alice`?"), "{err}");
    assert!(err.contains("--new-user"), "{err}");
    let o = run(
        dir.path(),
        &[
            "auth",
            "api-key",
            "add",
            "carol",
            "--generate",
            "--new-user",
        ],
        None,
    );
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(text(&o).1.contains("not declared"), "{:?}", text(&o));
}

#[test]
fn policy_check_reports_every_shape_error_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".fentaris")).unwrap();
    std::fs::write(
        dir.path().join(".fentaris/config.json"),
        "{\n  \"servres\": [],\n  \"autoLog\": \"yes\",\n  \"groups\": [{ \"id\": \"g\", \"usres\": [] }]\n}\n",
    )
    .unwrap();
    let o = run(dir.path(), &["policy", "check", "--format", "json"], None);
    let (out, err) = text(&o);
    assert_ne!(o.status.code(), Some(0), "{out}{err}");
    for (pointer, line) in [("/servres", 2), ("/autoLog", 3), ("/groups/0/usres", 4)] {
        assert!(
            out.contains(&format!("\"{pointer}\"")),
            "{pointer} (line {line}) missing from one run:\n{out}"
        );
    }

    // A trailing comma is pointed at where it is, not where the list ends.
    std::fs::write(
        dir.path().join(".fentaris/config.json"),
        "{\n  \"servers\": [],\n  \"groups\": [],\n}\n",
    )
    .unwrap();
    let o = run(dir.path(), &["policy", "check"], None);
    let (out, err) = text(&o);
    let all = format!("{out}{err}");
    assert!(all.contains(":3:15"), "{all}");
    assert!(all.contains("remove this comma"), "{all}");
}

fn explain_config() -> Value {
    json!({
        "autoLog": true,
        "servers": [{ "name": "files", "transport": { "stdio": { "command": "true" } } }],
        "groups": [{ "id": "dev", "users": ["alice"],
            "policy": { "rules": [{ "mcp": "files", "allow": ["read_file"] }] } }]
    })
}

#[test]
fn names_get_did_you_mean_in_explain_connect_credentials_and_logs() {
    let dir = project(&explain_config());
    let o = run(
        dir.path(),
        &[
            "policy",
            "explain",
            "--user",
            "alcie",
            "--server",
            "flies",
            "--tool",
            "read_file",
        ],
        None,
    );
    let (_, err) = text(&o);
    assert!(err.contains("did you mean `alice`?"), "{err}");
    assert!(err.contains("did you mean `files`?"), "{err}");

    let o = run(
        dir.path(),
        &["connect", "claude-desktop", "--user", "alcie"],
        None,
    );
    assert!(
        text(&o).1.contains("did you mean `alice`?"),
        "{:?}",
        text(&o)
    );

    let o = run(
        dir.path(),
        &["credentials", "set", "github.token", "--value-stdin"],
        Some("ghp_not_a_real_token_0123456789"),
    );
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(
        text(&o).1.contains("running `fentaris serve`"),
        "{:?}",
        text(&o)
    );
    let o = run(
        dir.path(),
        &["credentials", "remove", "github.tokn", "--yes"],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).1.contains("did you mean `github.token`?"),
        "{:?}",
        text(&o)
    );

    write_audit(dir.path());
    let o = run(dir.path(), &["logs", "tail", "--user", "alcie"], None);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(
        text(&o).1.contains("did you mean `alice`?"),
        "{:?}",
        text(&o)
    );
    let o = run(dir.path(), &["logs", "tail", "--server", "flies"], None);
    assert!(
        text(&o).1.contains("did you mean `files`?"),
        "{:?}",
        text(&o)
    );
}

/// Two request lines as `serve` writes them (the chain is not checked by these readers).
fn write_audit(dir: &Path) {
    let line = |id: &str, target: &str, decision: &str| {
        json!({"time": "2026-12-01T10:00:00.000Z", "seq": 1, "event": "request", "requestId": id,
            "subject": {"id": "alice", "groups": ["dev"], "keyId": "AbCdEf12"}, "server": "files",
            "method": "tools/call", "operation": "tool:call", "target": target, "decision": decision,
            "reason": "r", "outcome": "ok", "latencyMs": 1.0})
        .to_string()
    };
    std::fs::create_dir_all(dir.join(".fentaris/logs")).unwrap();
    std::fs::write(
        dir.join(".fentaris/logs/audit.jsonl"),
        format!(
            "{}\n{}\n",
            line("00aa11bb22cc33dd", "read_file", "allow"),
            line("44ee55ff66aa77bb", "write_file", "allow")
        ),
    )
    .unwrap();
}

#[test]
fn explain_replays_a_logged_request_and_logs_tail_links_to_it() {
    let dir = project(&explain_config());
    write_audit(dir.path());
    let o = run(dir.path(), &["logs", "tail"], None);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("44ee55ff66aa77bb"), "{out}");
    assert!(
        err.contains("fentaris policy explain --request-id 44ee55ff66aa77bb"),
        "{err}"
    );

    let o = run(
        dir.path(),
        &["policy", "explain", "--request-id", "00aa11bb22cc33dd"],
        None,
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("ALLOW"), "{out}");
    assert!(err.contains("logged decision: allow"), "{err}");

    // Logged as allowed, denied by today's config: replayed and the difference said.
    let o = run(
        dir.path(),
        &[
            "policy",
            "explain",
            "--request-id",
            "44ee55ff66aa77bb",
            "--format",
            "json",
        ],
        None,
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("the current config decides `deny`"), "{err}");

    let o = run(
        dir.path(),
        &["policy", "explain", "--request-id", "ffffffffffffffff"],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).1.contains("no request ffffffffffffffff"),
        "{:?}",
        text(&o)
    );
}

#[test]
fn connect_write_shows_the_entry_before_asking() {
    let dir = project(&explain_config());
    let o = run(dir.path(), &["connect", "cursor", "--write"], None);
    let (_, err) = text(&o);
    assert_ne!(
        o.status.code(),
        Some(0),
        "off a terminal without --yes: refused"
    );
    let entry = err.find("\"mcpServers\"").expect(&err);
    let question = err.find("Add the `fentaris` entry above").expect(&err);
    assert!(entry < question, "{err}");
    assert!(!dir.path().join(".cursor/mcp.json").exists());
}

#[test]
fn tables_fit_the_terminal_width() {
    let dir = project(&explain_config());
    write_audit(dir.path());
    let widest = |cols: Option<&str>| {
        let mut c = fentaris_cmd(dir.path());
        c.args(["logs", "tail"]);
        match cols {
            Some(w) => c.env("COLUMNS", w),
            None => c.env_remove("COLUMNS"),
        };
        let o = c.output().unwrap();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(0)
    };
    assert!(widest(None) > 100);
    assert!(widest(Some("80")) <= 80, "{}", widest(Some("80")));
}

#[test]
fn github_format_fails_when_it_prints_an_error_annotation() {
    let dir = project(&json!({
        "servers": [{ "name": "s", "transport": { "stdio": { "command": "true" } } }],
        "groups": [{ "id": "g", "users": ["a"], "policy": { "rules": [{ "mcp": "*", "allow": "*" }] } }]
    }));
    let o = run(dir.path(), &["policy", "check", "--format", "github"], None);
    let (out, _) = text(&o);
    assert!(out.contains("::error "), "{out}");
    assert_eq!(o.status.code(), Some(1), "{out}");
    // The human format keeps security warnings advisory unless --deny-warnings.
    let o = run(dir.path(), &["policy", "check"], None);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
}

#[test]
fn doctor_and_policy_check_find_missing_commands_and_busy_ports() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let dir = project(&json!({
        "listen": format!("127.0.0.1:{port}"),
        "adminListen": format!("127.0.0.1:{}", free_port()),
        "servers": [
            { "name": "ok", "transport": { "stdio": { "command": "true" } } },
            { "name": "gone", "transport": { "stdio": { "command": "no-such-mcp-server-cmd" } } }
        ],
        "groups": [{ "id": "g", "users": ["a"], "policy": { "rules": [{ "mcp": "ok", "allow": "t" }] } }]
    }));
    let o = run(dir.path(), &["doctor", "--format", "json"], None);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    let checks: Vec<Value> = serde_json::from_str(&out).unwrap();
    let status = |name: &str| {
        checks
            .iter()
            .find(|c| c["check"].as_str().unwrap().starts_with(name))
            .unwrap_or_else(|| panic!("{name}: {out}"))["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(status("config"), "ok");
    assert_eq!(status("listen"), "fail");
    assert_eq!(status("adminListen"), "ok");
    assert_eq!(status("server ok"), "ok");
    assert_eq!(status("server gone"), "fail");
    assert!(["ok", "warn"].contains(&status("landlock").as_str()));
    drop(busy);

    let o = run(dir.path(), &["policy", "check", "--format", "json"], None);
    let (out, _) = text(&o);
    assert!(out.contains("FNT094"), "{out}");
    assert!(out.contains("/servers/1/transport/stdio/command"), "{out}");
    assert!(!out.contains("/servers/0/transport/stdio/command"), "{out}");
}

#[test]
fn old_keys_and_credentials_are_flagged_with_max_key_age() {
    let dir = project(&json!({
        "identity": { "maxKeyAge": "1s" },
        "servers": [],
        "groups": [{ "id": "g", "users": ["bob"], "policy": { "rules": [] } }]
    }));
    add_bob_key(dir.path());
    let o = run(
        dir.path(),
        &["credentials", "set", "gh.token", "--value-stdin"],
        Some("not-a-real-token-0123456789"),
    );
    assert!(o.status.success(), "{:?}", text(&o));
    std::thread::sleep(Duration::from_millis(2100));
    let o = run(dir.path(), &["policy", "check", "--format", "json"], None);
    let (out, _) = text(&o);
    assert!(out.contains("FNT205"), "{out}");
    assert!(out.contains("API key"), "{out}");
    assert!(out.contains("credential `gh.token`"), "{out}");
    assert!(out.contains("fentaris auth api-key rotate bob"), "{out}");
    let o = run(dir.path(), &["vault", "status"], None);
    let (_, err) = text(&o);
    assert!(err.contains("FNT205") && err.contains("gh.token"), "{err}");

    // Off by default: the same vault without maxKeyAge has no such finding.
    let cfg = dir.path().join(".fentaris/config.json");
    std::fs::write(
        &cfg,
        json!({ "servers": [], "groups": [{ "id": "g", "users": ["bob"], "policy": { "rules": [] } }] })
            .to_string(),
    )
    .unwrap();
    let o = run(dir.path(), &["policy", "check", "--format", "json"], None);
    assert!(!text(&o).0.contains("FNT205"), "{:?}", text(&o));
    // A malformed age is a config error.
    std::fs::write(
        &cfg,
        json!({ "identity": { "maxKeyAge": "soon" }, "servers": [] }).to_string(),
    )
    .unwrap();
    let o = run(dir.path(), &["policy", "check", "--format", "json"], None);
    assert!(text(&o).0.contains("/identity/maxKeyAge"), "{:?}", text(&o));
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn man_pages_have_the_usual_sections() {
    let man = repo().join("man");
    let mut pages = 0;
    for e in std::fs::read_dir(&man).unwrap() {
        let path = e.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for section in [
            ".SH EXAMPLES",
            ".SH \"EXIT STATUS\"",
            ".SH ENVIRONMENT",
            ".SH FILES",
        ] {
            assert!(text.contains(section), "{}: no {section}", path.display());
        }
        pages += 1;
    }
    assert!(pages > 20, "{pages}");
    let rotate = std::fs::read_to_string(man.join("fentaris-auth-api-key-rotate.1")).unwrap();
    assert!(
        rotate.contains("fentaris auth api\\-key rotate alice"),
        "{rotate}"
    );
}

/// What the dynamic completion offers for the last word of `words`.
fn complete(dir: &Path, words: &[&str]) -> Vec<String> {
    let o = fentaris_cmd(dir)
        .env("COMPLETE", "bash")
        .env("_CLAP_COMPLETE_INDEX", (words.len() - 1).to_string())
        .env("_CLAP_IFS", "\n")
        .arg("--")
        .args(words)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn completion_offers_users_servers_and_operations_from_the_config() {
    let dir = project(&explain_config());
    let users = complete(dir.path(), &["fentaris", "policy", "explain", "--user", ""]);
    assert_eq!(users, ["alice"]);
    let servers = complete(dir.path(), &["fentaris", "logs", "tail", "--server", ""]);
    assert_eq!(servers, ["files"]);
    let users = complete(dir.path(), &["fentaris", "auth", "api-key", "add", "al"]);
    assert_eq!(users, ["alice"]);
    let ops = complete(
        dir.path(),
        &["fentaris", "policy", "explain", "--operation", "resource:"],
    );
    assert!(ops.iter().any(|o| o == "resource:read"), "{ops:?}");
    // The registration script that `source <(COMPLETE=bash fentaris)` runs.
    let o = fentaris_cmd(dir.path())
        .env("COMPLETE", "bash")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("complete"));
}

#[test]
fn a_changed_credential_reaches_the_upstream_of_a_running_serve_without_flags() {
    if !ready() {
        return;
    }
    const ALICE: &str = "alice-first-hour-key-0123456789ab";
    let dir = project(&json!({
        "servers": [{ "name": "env", "transport": { "stdio": {
            "command": python(), "args": [env_server()],
            "env": { "TOKEN": { "vault": "tok" } } } } }],
        "groups": [{ "id": "g", "users": [{ "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] }],
            "policy": { "rules": [{ "mcp": "env", "allow": "env" }] } }]
    }));
    let o = run(
        dir.path(),
        &["credentials", "set", "tok", "--value-stdin"],
        Some("first-value"),
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let s = serve_in(dir, &[("ALICE_KEY", ALICE)]);
    let url = s.url("/mcp");
    let sid = raw_session(&url, ALICE);
    let token = || {
        let r = raw_call(
            &url,
            ALICE,
            &sid,
            "tools/call",
            json!({ "name": "env__env", "arguments": {} }),
        );
        let env: Value = r["result"]["content"][0]["text"]
            .as_str()
            .map(|t| serde_json::from_str(t).unwrap())
            .unwrap_or_else(|| panic!("{r}"));
        env["TOKEN"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(token(), "first-value");
    let o = run(
        s.dir(),
        &["credentials", "set", "tok", "--value-stdin"],
        Some("second-value"),
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let start = Instant::now();
    while token() != "second-value" {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the upstream still has the old value\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn key_list_shows_last_use_from_the_audit_log() {
    let dir = project(&explain_config());
    let o = run(
        dir.path(),
        &["auth", "api-key", "add", "alice", "--value-stdin"],
        Some(BOB),
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let id = key_ids(dir.path(), "alice")[0]["keyId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(key_ids(dir.path(), "alice")[0]["lastUsed"], "never");
    std::fs::create_dir_all(dir.path().join(".fentaris/logs")).unwrap();
    let line = |t: &str| {
        json!({"time": t, "seq": 1, "event": "request", "requestId": "1",
            "subject": {"id": "alice", "groups": ["dev"], "keyId": id}, "server": "files",
            "method": "tools/call", "operation": "tool:call", "target": "read_file",
            "decision": "allow"})
        .to_string()
    };
    std::fs::write(
        dir.path().join(".fentaris/logs/audit.jsonl"),
        format!(
            "{}\n{}\n",
            line("2026-12-01T10:00:00.000Z"),
            line("2026-12-02T11:30:00.000Z")
        ),
    )
    .unwrap();
    assert_eq!(
        key_ids(dir.path(), "alice")[0]["lastUsed"],
        "2026-12-02T11:30:00Z"
    );
}

#[test]
fn revoking_for_a_mistyped_user_names_the_owner() {
    let dir = project(&base_config());
    let id = add_bob_key(dir.path());
    let o = run(dir.path(), &["auth", "api-key", "revoke", "bbo", &id], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).1.contains(&format!("key {id} belongs to `bob`")),
        "{:?}",
        text(&o)
    );
    let o = run(
        dir.path(),
        &["auth", "api-key", "revoke", "bobb", "Zz9Zz9Zz"],
        None,
    );
    assert!(text(&o).1.contains("did you mean `bob`?"), "{:?}", text(&o));
}

/// The HTTP status of an `initialize` with `key` (200: the key logs in).
fn login(url: &str, key: &str) -> u16 {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    http("POST", url, &[("x-fentaris-api-key", key)], Some(&init))
        .map(|(st, _, _)| st)
        .unwrap_or(0)
}

fn until_status(s: &Serve, url: &str, key: &str, want: u16, what: &str) -> Duration {
    let start = Instant::now();
    while login(url, key) != want {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what}: still not HTTP {want} after 10 s\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

/// Replace a file the way every writer of the vault does (a fresh file renamed in place).
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp-test");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn a_changed_vault_that_cannot_be_opened_fails_closed_until_it_opens_again() {
    let dir = project(&base_config());
    add_bob_key(dir.path());
    let mut s = spawn_serve(dir, &[]);
    wait_ready(&mut s);
    let url = s.url("/mcp");
    assert_eq!(login(&url, BOB), 200);
    let vault = s.dir().join(".fentaris/credentials.enc.json");
    let good = std::fs::read(&vault).unwrap();

    // Tampered (one byte of the sealed content flipped): the key list cannot be trusted.
    let mut bad = good.clone();
    let i = bad.len() / 2;
    bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
    replace(&vault, &bad);
    let took = until_status(&s, &url, BOB, 401, "a tampered vault");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let log = s.log();
    assert!(
        log.contains("cannot be opened") && log.contains("fail closed"),
        "{log}"
    );
    assert!(!log.contains(BOB), "the key leaked into the log");

    // Restored: the keys are back without a restart.
    replace(&vault, &good);
    until_status(&s, &url, BOB, 200, "the restored vault");

    // Deleted: the same.
    std::fs::remove_file(&vault).unwrap();
    until_status(&s, &url, BOB, 401, "a deleted vault");
}

#[test]
fn with_watch_an_invalid_config_being_edited_does_not_hold_back_a_revocation() {
    let dir = project(&base_config());
    let id = add_bob_key(dir.path());
    let mut s = spawn_serve_with(dir, &[], &["--watch"]);
    wait_ready(&mut s);
    let url = s.url("/mcp");
    assert_eq!(login(&url, BOB), 200);
    // The operator is half-way through an edit: the config does not parse.
    let cfg = s.dir().join(".fentaris/config.json");
    let text_now = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{},", text_now.trim_end())).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert!(s.log().contains("has errors"), "{}", s.log());
    assert_eq!(login(&url, BOB), 200, "the running config stays");
    let o = run(s.dir(), &["auth", "api-key", "revoke", "bob", &id], None);
    assert!(o.status.success(), "{:?}", text(&o));
    until_status(&s, &url, BOB, 401, "a revocation under an invalid config");
}

#[test]
fn serve_stdio_refuses_a_user_declared_nowhere_and_suggests_the_name() {
    let dir = project(&base_config());
    let stdio = |user: &str| run(dir.path(), &["serve", "--stdio", "--user", user], None);
    // A typo: refused before anything starts, with the closest user.
    let o = stdio("alcie");
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("no user `alcie` in the config; did you mean `alice`?")
            && err.contains("help:"),
        "{err}"
    );
    // No close match: the known users.
    let (_, err) = text(&stdio("zed"));
    assert!(err.contains("known users: `bob`, `alice`"), "{err}");
    assert_eq!(stdio("").status.code(), Some(2));
    // A declared user is served; stdin is closed at once, so it ends at once (it used to
    // wait 5 s for its list-change forwarder).
    let t = Instant::now();
    let o = stdio("alice");
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(!text(&o).1.contains("not declared"), "{:?}", text(&o));
    // A user who owns a vault key (added with --new-user) is known: served, with the
    // warning that only the top-level policy applies.
    let o = run(
        dir.path(),
        &[
            "auth",
            "api-key",
            "add",
            "carol",
            "--generate",
            "--new-user",
        ],
        None,
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let o = stdio("carol");
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(
        text(&o).1.contains("only the top-level policy applies"),
        "{:?}",
        text(&o)
    );
    // A config without users is all top-level policy: any name is served.
    let dir = project(&json!({ "servers": [], "policy": { "rules": [] } }));
    let o = run(dir.path(), &["serve", "--stdio", "--user", "anyone"], None);
    assert!(o.status.success(), "{:?}", text(&o));
}
