//! `fentaris connect`: the snippet each client gets, merging into its config file (backup,
//! other entries kept), and refusing to write without confirmation when not on a terminal.

use std::path::Path;

use assert_cmd::Command;
use serde_json::{Value, json};

const CONFIG: &str = r#"{
  "listen": "0.0.0.0:9911",
  "identity": { "apiKeyHeader": "x-team-key" },
  "servers": [{ "name": "s", "transport": { "stdio": { "command": "true" } } }],
  "groups": [{ "id": "g", "users": ["alice"], "policy": { "rules": [{ "mcp": "s", "allow": "t" }] } }]
}"#;

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".fentaris")).unwrap();
    std::fs::write(dir.path().join(".fentaris/config.json"), CONFIG).unwrap();
    dir
}

fn fentaris(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("fentaris").unwrap();
    c.current_dir(dir)
        .env_remove("FENTARIS_CONFIG")
        .env("NO_COLOR", "1")
        .env("HOME", dir.join("home"))
        .env("XDG_CONFIG_HOME", dir.join("home/.config"))
        .env("CI", "true");
    c
}

fn stdout_json(c: &mut Command) -> Value {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn snippets_use_each_clients_format() {
    let p = project();
    let dir = p.path();
    let url = "http://127.0.0.1:9911/mcp";
    let cc = stdout_json(fentaris(dir).args(["connect", "claude-code"]));
    assert_eq!(
        cc,
        json!({"mcpServers": {"fentaris": {"type": "http", "url": url, "headers": {"x-team-key": "${FENTARIS_API_KEY}"}}}})
    );
    let cursor = stdout_json(fentaris(dir).args(["connect", "cursor"]));
    assert_eq!(
        cursor,
        json!({"mcpServers": {"fentaris": {"url": url, "headers": {"x-team-key": "${env:FENTARIS_API_KEY}"}}}})
    );
    // VS Code does not substitute ${env:…} in HTTP headers: it prompts through an input.
    let vscode = stdout_json(fentaris(dir).args(["connect", "vscode", "--name", "fx"]));
    assert_eq!(
        vscode,
        json!({"servers": {"fx": {"type": "http", "url": url, "headers": {"x-team-key": "${input:fentaris-api-key}"}}},
            "inputs": [{"type": "promptString", "id": "fentaris-api-key",
                "description": "Fentaris API key (fentaris auth api-key add USER --generate)", "password": true}]})
    );
    // Claude Desktop cannot send headers: a stdio command with the absolute config path.
    let desk = stdout_json(fentaris(dir).args([
        "connect",
        "claude-desktop",
        "--user",
        "alice",
        "--format",
        "json",
    ]));
    let entry = &desk["snippet"]["mcpServers"]["fentaris"];
    assert!(
        entry["command"].as_str().unwrap().contains("fentaris"),
        "{desk}"
    );
    let cfg = std::fs::canonicalize(dir.join(".fentaris/config.json")).unwrap();
    let args: Vec<&str> = entry["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(&args[..4], ["serve", "--stdio", "--user", "alice"]);
    assert_eq!(args[4], "--config");
    assert_eq!(
        std::fs::canonicalize(args[5]).unwrap(),
        cfg,
        "absolute config path"
    );
    assert!(
        desk["file"]
            .as_str()
            .unwrap()
            .ends_with("home/.config/Claude/claude_desktop_config.json"),
        "{desk}"
    );
    // Without --user, claude-desktop is a usage error.
    let out = fentaris(dir)
        .args(["connect", "claude-desktop"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--user"));
}

/// (client, file under the project or home, root key)
const FILES: [(&str, &str, &str); 4] = [
    ("claude-code", ".mcp.json", "mcpServers"),
    ("cursor", ".cursor/mcp.json", "mcpServers"),
    ("vscode", ".vscode/mcp.json", "servers"),
    (
        "claude-desktop",
        "home/.config/Claude/claude_desktop_config.json",
        "mcpServers",
    ),
];

#[test]
fn write_merges_keeps_other_entries_and_backs_up() {
    for (client, file, root) in FILES {
        let p = project();
        let dir = p.path();
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let before = json!({ "theme": "dark", root: { "other": { "command": "other-server", "args": ["x"] } } });
        let before_text = serde_json::to_string_pretty(&before).unwrap();
        std::fs::write(&path, &before_text).unwrap();
        fentaris(dir)
            .args(["connect", client, "--user", "alice", "--write", "--yes"])
            .assert()
            .success();
        let after: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(after["theme"], "dark", "{client}: {after}");
        assert_eq!(
            after[root]["other"], before[root]["other"],
            "{client}: {after}"
        );
        assert!(after[root]["fentaris"].is_object(), "{client}: {after}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("fnt_"), "no key written");
        let mut bak = path.as_os_str().to_owned();
        bak.push(".bak");
        assert_eq!(
            std::fs::read_to_string(bak).unwrap(),
            before_text,
            "{client}"
        );
    }
}

#[test]
fn write_creates_a_missing_file() {
    let p = project();
    let dir = p.path();
    fentaris(dir)
        .args(["connect", "vscode", "--write", "--yes"])
        .assert()
        .success();
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(".vscode/mcp.json")).unwrap())
            .unwrap();
    assert_eq!(v["servers"]["fentaris"]["type"], "http");
    assert_eq!(v["inputs"][0]["id"], "fentaris-api-key");
    assert_eq!(v["inputs"].as_array().unwrap().len(), 1);
    assert!(!dir.join(".vscode/mcp.json.bak").exists());
    // Writing again adds no second input.
    fentaris(dir)
        .args(["connect", "vscode", "--write", "--yes"])
        .assert()
        .success();
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(".vscode/mcp.json")).unwrap())
            .unwrap();
    assert_eq!(v["inputs"].as_array().unwrap().len(), 1);
}

#[test]
fn write_without_yes_off_a_terminal_is_refused() {
    for (client, file, _) in FILES {
        let p = project();
        let dir = p.path();
        let out = fentaris(dir)
            .args(["connect", client, "--user", "alice", "--write"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{client}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--yes"), "{client}: {err}");
        assert!(!dir.join(file).exists(), "{client}: nothing written");
    }
}

#[test]
fn invalid_client_file_is_left_alone() {
    let p = project();
    let dir = p.path();
    std::fs::write(dir.join(".mcp.json"), "{ // comment\n}").unwrap();
    let out = fentaris(dir)
        .args(["connect", "claude-code", "--write", "--yes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid JSON"));
    assert_eq!(
        std::fs::read_to_string(dir.join(".mcp.json")).unwrap(),
        "{ // comment\n}"
    );
}

#[test]
fn embed_key_reads_stdin_and_warns() {
    let p = project();
    let dir = p.path();
    let out = fentaris(dir)
        .args(["connect", "cursor", "--embed-key"])
        .write_stdin("fnt_secret_key_value_123\n")
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["mcpServers"]["fentaris"]["headers"]["x-team-key"],
        "fnt_secret_key_value_123"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning"));
    // Empty stdin: refused.
    fentaris(dir)
        .args(["connect", "cursor", "--embed-key"])
        .write_stdin("")
        .assert()
        .code(2);
}
