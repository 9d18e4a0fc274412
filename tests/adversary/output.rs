//! Attack class: output (see tests/e2e_adversary.rs). Output that cannot lie: no secret
//! literal in `policy check` (every format, on and off a terminal), `config show` or `auth
//! api-key revoke` errors; no string a client or an upstream chose can forge a line of
//! Fentaris' own log or of `logs tail`, or drive the terminal that shows them.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

const GH_TOKEN: &str = "ghp_Zx9qT2mK7vB4nR8wL1pF6hJ3sD5gA0cE1234";
const HIGH_ENTROPY: &str = "Q7vLm2Xp9RkT4wYz8NcB3dFh6JsG1aUe";
const SLACK: &str = "xoxb-99887766554433-aabbccddeeff";
const BEARER_PW: &str = "correct-horse-battery";
const URL_PW: &str = "urlpass-77341";
const ARG_TOKEN: &str = "sk-live4242424242abcdefgh";

fn secrets() -> [&'static str; 6] {
    [GH_TOKEN, HIGH_ENTROPY, SLACK, BEARER_PW, URL_PW, ARG_TOKEN]
}

/// A config with a secret-looking literal in every place one can be written: a header, an
/// `Authorization` header, an env literal, an argument, a URL's user-info and query.
fn leaky_config() -> Value {
    json!({
        "servers": [
            { "name": "web", "transport": { "streamableHttp": {
                "url": format!("https://bot:{URL_PW}@mcp.example.com/mcp?key={SLACK}") } },
              "headers": { "x-api-key": GH_TOKEN, "Authorization": format!("Bearer {BEARER_PW}") } },
            { "name": "local", "transport": { "stdio": {
                "command": "tool", "args": [format!("--token={ARG_TOKEN}")],
                "env": { "API_TOKEN": HIGH_ENTROPY } } } }
        ],
        "groups": [{ "id": "devs", "users": ["alice"], "policy": { "rules": [
            { "mcp": "web", "allow": "search" }, { "mcp": "local", "allow": "search" }
        ] } }]
    })
}

fn write_config(dir: &Path, text: &str) {
    std::fs::write(dir.join(".fentaris/config.json"), text).unwrap();
}

fn assert_no_secret(what: &str, out: &str) {
    for s in secrets() {
        assert!(!out.contains(s), "{what} shows the secret `{s}`:\n{out}");
    }
}

fn run(dir: &Path, args: &[&str]) -> Output {
    fentaris_cmd(dir)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Run `fentaris ARGS` on a pseudo-terminal (util-linux `script`): stdout and stderr mixed.
fn run_on_tty(dir: &Path, args: &[&str]) -> Option<String> {
    if Command::new("script").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("E2E_REQUIRED").is_none(),
            "`script` (util-linux) is needed for the terminal tests"
        );
        eprintln!("skipped: no `script` for the terminal tests");
        return None;
    }
    let bin = env!("CARGO_BIN_EXE_fentaris");
    let line = std::iter::once(bin)
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let out = fentaris_cmd(dir)
        .env_remove("NO_COLOR")
        .env("TERM", "xterm-256color")
        .stdin(Stdio::null())
        .output_with_program("script", &["-qec", &line, "/dev/null"]);
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

trait WithProgram {
    fn output_with_program(&mut self, program: &str, args: &[&str]) -> Output;
}

impl WithProgram for Command {
    /// This command's directory and environment, another program.
    fn output_with_program(&mut self, program: &str, args: &[&str]) -> Output {
        let mut c = Command::new(program);
        c.args(args);
        if let Some(d) = self.get_current_dir() {
            c.current_dir(d);
        }
        for (k, v) in self.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.stdin(Stdio::null()).output().unwrap()
    }
}

#[test]
fn policy_check_never_prints_a_secret_literal() {
    let dir = project(&leaky_config());
    let pretty = serde_json::to_string_pretty(&leaky_config()).unwrap();
    // Minified, every excerpt holds every secret; with a schema error, validation never ran
    // and no finding flagged them.
    let minified = leaky_config().to_string();
    let mut broken = leaky_config();
    broken["servers"][0]["bogus"] = json!(1);
    let variants = [
        ("pretty", pretty),
        ("minified", minified),
        ("schema error", broken.to_string()),
    ];
    for (variant, text) in &variants {
        write_config(dir.path(), text);
        for format in ["human", "json", "sarif", "github"] {
            let o = run(dir.path(), &["policy", "check", "--format", format]);
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            let what = format!("policy check --format {format} ({variant})");
            assert_no_secret(&what, &all);
            let expect = if *variant == "schema error" {
                "FNT002"
            } else {
                "FNT100"
            };
            assert!(all.contains(expect), "{what}: no {expect}:\n{all}");
            if *variant == "pretty" {
                let flagged = all.matches("FNT100").count();
                assert!(flagged >= 5, "{what}: {flagged} FNT100 findings:\n{all}");
            }
            if let Some(tty) = run_on_tty(dir.path(), &["policy", "check", "--format", format]) {
                assert_no_secret(&format!("{what} on a terminal"), &tty);
                assert!(tty.contains(expect), "{what} on a terminal:\n{tty}");
                if format == "human" {
                    assert!(
                        tty.contains("\u{1b}["),
                        "not coloured on a terminal:\n{tty}"
                    );
                }
            }
        }
    }
}

#[test]
fn config_show_never_prints_a_secret_literal() {
    let dir = project(&leaky_config());
    let o = run(dir.path(), &["config", "show"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_no_secret("config show", &out);
    assert_no_secret("config show (stderr)", &String::from_utf8_lossy(&o.stderr));
    let shown: Value = serde_json::from_str(&out).unwrap();
    // What is not secret is still shown; what is, is marked.
    assert_eq!(shown["servers"][1]["transport"]["stdio"]["command"], "tool");
    assert_eq!(
        shown["servers"][1]["transport"]["stdio"]["args"][0],
        "--token=[redacted]"
    );
    assert!(out.contains("[redacted]"));
    if let Some(tty) = run_on_tty(dir.path(), &["config", "show"]) {
        assert_no_secret("config show on a terminal", &tty);
        assert!(tty.contains("\"tool\""), "{tty}");
    }
}

#[test]
fn revoke_does_not_echo_a_pasted_key() {
    let dir = project(&json!({
        "groups": [{ "id": "devs", "users": ["alice"], "policy": { "rules": [] } }]
    }));
    let o = run(
        dir.path(),
        &["auth", "api-key", "add", "alice", "--generate"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let generated = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(generated.starts_with("fnt_"), "{generated}");
    let id = &generated[4..12];
    let stdin_key = "alice-pasted-key-0123456789abcdef";
    fentaris_with_stdin(
        dir.path(),
        &["auth", "api-key", "add", "alice", "--value-stdin"],
        stdin_key,
    );
    let cases: [(&[&str], &str); 4] = [
        (&["alice", &generated], generated.as_str()),
        (&["alice", stdin_key], stdin_key),
        (&[&generated, id], generated.as_str()),
        (
            &[
                "alice",
                "Ab3dE9xZ\u{1b}]0;x\u{7}Q7vLm2Xp9RkT4wYz8NcB3dFh6JsG1aUe",
            ],
            "Q7vLm2Xp9RkT4wYz",
        ),
    ];
    for (args, secret) in cases {
        let mut full = vec!["auth", "api-key", "revoke"];
        full.extend_from_slice(args);
        let o = run(dir.path(), &full);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains(secret), "revoke echoed the key:\n{err}");
        assert!(!String::from_utf8_lossy(&o.stdout).contains(secret));
        assert!(!err.contains('\u{1b}'), "{err:?}");
        assert!(err.contains("not repeated here"), "{err}");
    }
    // A pasted generated key: the error names its id, and revoking by id works.
    let o = run(
        dir.path(),
        &["auth", "api-key", "revoke", "alice", &generated],
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains(id));
    let o = run(dir.path(), &["auth", "api-key", "revoke", "alice", id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

// --- client- and upstream-chosen strings in the log and in `logs tail` ---

const KEY: &str = "alice-output-key-0123456789abcdef";
/// What a client sends: escapes, a forged log line, bidi overrides, zero-width characters and
/// line separators.
const CLIENT: &str = "x\u{1b}[31m\u{1b}]0;owned\u{7}\u{1b}[2J\r\n2026-01-01T00:00:00.000000Z  INFO FORGED-CLIENT\u{202e}cod.exe\u{2066}\u{200b}\u{feff}\u{2028}FORGED-LS\u{2029}\u{85}";

/// Characters that must never reach the log or a table raw.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c as u32, 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x2069 | 0xFEFF | 0x2028 | 0x2029 | 0x061C)
}

/// Every line is one of ours (no raw unsafe character, none starts with forged text).
fn assert_lines_are_ours(what: &str, text: &str) {
    for line in text.split('\n') {
        if let Some(c) = line.chars().find(|&c| unsafe_char(c)) {
            panic!("{what}: raw U+{:04X} in line {line:?}", c as u32);
        }
        assert!(
            !line.starts_with("2026-01-01T00:00:00") && !line.trim_start().starts_with("FORGED"),
            "{what}: a forged line: {line:?}"
        );
    }
}

fn post(url: &str, sid: Option<&str>, body: &Value) -> (u16, String) {
    let mut h = vec![("x-fentaris-api-key", KEY)];
    if let Some(s) = sid {
        h.push(("mcp-session-id", s));
    }
    let (status, _, text) = http("POST", url, &h, Some(body)).unwrap();
    (status, text)
}

#[test]
fn client_and_upstream_strings_cannot_forge_log_lines_or_table_rows() {
    if !ready() {
        return;
    }
    let fixture = repo().join("tests/e2e/output_hostile_upstream.py");
    let dir = project(&json!({
        "autoLog": true,
        "servers": [{ "name": "hostile", "transport": { "stdio": {
            "command": python(), "args": [fixture] } } }],
        "groups": [{ "id": "devs", "users": ["alice"], "policy": { "rules": [
            { "mcp": "hostile", "allow": ["echo", "x*"] }
        ] } }]
    }));
    fentaris_with_stdin(
        dir.path(),
        &["auth", "api-key", "add", "alice", "--value-stdin"],
        KEY,
    );
    let mut s = serve_in(dir, &[("RUST_LOG", "fentaris=trace,info")]);
    let url = s.url("/mcp");
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": { "name": CLIENT, "version": CLIENT }}});
    let (_, hs, body) = http("POST", &url, &[("x-fentaris-api-key", KEY)], Some(&init)).unwrap();
    assert!(body.contains("result"), "{body}");
    let sid = hs.get("mcp-session-id").cloned();
    let sid = sid.as_deref();
    post(
        &url,
        sid,
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    );
    let calls = [
        json!({"method": "tools/list", "params": {}}),
        json!({"method": "tools/call", "params": {"name": "hostile__echo", "arguments": {"m": CLIENT}}}),
        json!({"method": "tools/call", "params": {"name": format!("hostile__x{CLIENT}"), "arguments": {}}}),
        json!({"method": "tools/call", "params": {"name": CLIENT, "arguments": {}}}),
        json!({"method": format!("custom/{CLIENT}"), "params": {}}),
        json!({"method": "prompts/get", "params": {"name": format!("hostile__{CLIENT}")}}),
        json!({"method": "resources/read", "params": {"uri": format!("file:///{CLIENT}")}}),
        json!({"method": "resources/read", "params": {"uri": format!("hostile://{CLIENT}")}}),
    ];
    for (i, c) in calls.iter().enumerate() {
        let mut msg = c.clone();
        msg["jsonrpc"] = json!("2.0");
        msg["id"] = json!(i + 2);
        post(&url, sid, &msg);
    }
    // The upstream's unsolicited request and its stderr reach the log.
    let start = Instant::now();
    while !(s.log().contains("FORGED-METHOD") && s.log().contains("FORGED-BYTES")) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the upstream's lines never reached the log:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    s.stop();
    let log = s.log();
    assert_lines_are_ours("serve's log", &log);
    // Shown, escaped, not dropped.
    for shown in [
        "\\u{1b}[31m",
        "\\u{202e}",
        "\\u{2028}FORGED-LS",
        "\\u{1b}]0;owned-title\\u{7}",
        "FORGED-STDERR",
        "FORGED-METHOD",
        "not utf-8: \u{fffd}",
    ] {
        assert!(log.contains(shown), "`{shown}` not in the log:\n{log}");
    }

    let dir = s.dir().to_path_buf();
    let audit = std::fs::read_to_string(dir.join(".fentaris/logs/audit.jsonl")).unwrap();
    assert!(audit.contains("FORGED-CLIENT"), "{audit}");
    for args in [
        &["logs", "tail", "-n", "100"][..],
        &["logs", "tail", "-n", "100", "--format", "table"],
        &["logs", "summary"],
    ] {
        let o = run(&dir, args);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_lines_are_ours(&format!("{args:?}"), &out);
        assert!(
            out.contains("FORGED-CLIENT"),
            "{args:?} does not show the attempts:\n{out}"
        );
        assert!(out.contains("\\u{202e}"), "{args:?}:\n{out}");
    }
}
