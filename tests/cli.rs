//! The real binary: exit codes, discovery, and every policy command's output.

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;

fn fentaris(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("fentaris").unwrap();
    c.current_dir(dir)
        .env_remove("FENTARIS_CONFIG")
        .env("NO_COLOR", "1");
    c
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    let p = dir.join(".fentaris");
    std::fs::create_dir_all(&p).unwrap();
    let f = p.join("config.json");
    std::fs::write(&f, text).unwrap();
    f
}

#[test]
fn init_creates_a_clean_deny_by_default_project() {
    let tmp = tempfile::tempdir().unwrap();
    fentaris(tmp.path())
        .arg("init")
        .assert()
        .success()
        .stdout(predicate::str::contains("Created .fentaris"));
    for f in ["config.json", "config.schema.json", ".gitignore"] {
        assert!(tmp.path().join(".fentaris").join(f).is_file(), "{f}");
    }
    // The starter audits from the first request and runs a pinned upstream.
    let starter: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join(".fentaris/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(starter["autoLog"], true);
    let args = starter["servers"][0]["transport"]["stdio"]["args"].to_string();
    assert!(args.contains("server-everything@2026."), "{args}");
    let gi = std::fs::read_to_string(tmp.path().join(".fentaris/.gitignore")).unwrap();
    for line in ["credentials.enc.json", "logs/", "*.key"] {
        assert!(gi.lines().any(|l| l == line), "{line}");
    }
    fentaris(tmp.path())
        .args(["policy", "check", "--deny-warnings"])
        .assert()
        .success();
    // Deny by default: only the starter's one tool is allowed.
    fentaris(tmp.path())
        .args([
            "policy",
            "explain",
            "--user",
            "me",
            "--server",
            "everything",
            "--tool",
            "echo",
        ])
        .assert()
        .code(0);
    fentaris(tmp.path())
        .args([
            "policy",
            "explain",
            "--user",
            "me",
            "--server",
            "everything",
            "--tool",
            "get-env",
        ])
        .assert()
        .code(1);
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "{\"description\": \"mine\"}");
    fentaris(tmp.path()).arg("init").assert().code(1).stderr(
        predicate::str::contains("already exists").and(predicate::str::contains("--force")),
    );
    assert_eq!(
        std::fs::read_to_string(&cfg).unwrap(),
        "{\"description\": \"mine\"}"
    );
    fentaris(tmp.path())
        .args(["init", "--force"])
        .assert()
        .success();
    assert!(
        std::fs::read_to_string(&cfg)
            .unwrap()
            .contains("\"starter\"")
    );
}

#[test]
fn discovery_order() {
    let tmp = tempfile::tempdir().unwrap();
    write_config(tmp.path(), "{}");
    let nested = tmp.path().join("a/b/c");
    std::fs::create_dir_all(&nested).unwrap();
    fentaris(&nested)
        .args(["policy", "check"])
        .assert()
        .success()
        .stdout(predicate::str::contains("config.json: 0 errors"));
    // FENTARIS_CONFIG beats the walk; --config beats both.
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, "{ nope").unwrap();
    fentaris(&nested)
        .env("FENTARIS_CONFIG", &bad)
        .args(["policy", "check"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("FNT001"));
    fentaris(&nested)
        .env("FENTARIS_CONFIG", &bad)
        .args(["policy", "check", "--config"])
        .arg(tmp.path().join(".fentaris/config.json"))
        .assert()
        .success();
}

#[test]
fn missing_config_is_fatal_and_lists_places_tried() {
    let tmp = tempfile::tempdir().unwrap();
    fentaris(tmp.path())
        .args(["policy", "check"])
        .assert()
        .code(3)
        .stderr(
            predicate::str::contains("no Fentaris config found")
                .and(predicate::str::contains(".fentaris/config.json"))
                .and(predicate::str::contains("fentaris init")),
        );
    fentaris(tmp.path())
        .args(["policy", "check", "--config", "nope.json"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("cannot read config nope.json"));
}

#[test]
fn check_exit_codes_and_formats() {
    let tmp = tempfile::tempdir().unwrap();
    let warn_only = r#"{ "groups": [{ "id": "g", "users": ["a"] }] }"#;
    write_config(tmp.path(), warn_only);
    fentaris(tmp.path())
        .args(["policy", "check"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("warning[FNT203]"));
    fentaris(tmp.path())
        .args(["policy", "check", "--deny-warnings"])
        .assert()
        .code(1);
    fentaris(tmp.path())
        .args(["policy", "check", "--format", "yaml"])
        .assert()
        .code(2);

    write_config(tmp.path(), include_str!("fixtures/findings.json"));
    fentaris(tmp.path())
        .args(["policy", "check"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("4 errors"));
    let gh = fentaris(tmp.path())
        .args(["policy", "check", "--format", "github"])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let gh = String::from_utf8(gh).unwrap();
    assert!(
        gh.lines().all(|l| l.starts_with("::error ")
            || l.starts_with("::warning ")
            || l.starts_with("::notice ")),
        "{gh}"
    );
    assert!(
        gh.contains("::error file=.fentaris/config.json,line=16,col=54"),
        "{gh}"
    );
    let json = fentaris(tmp.path())
        .args(["policy", "check", "--format", "json"])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v["summary"]["errors"], 4);
    let sarif = fentaris(tmp.path())
        .args(["policy", "check", "--format", "sarif"])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&sarif).unwrap();
    assert_eq!(v["version"], "2.1.0");
}

#[test]
fn human_output_has_no_colour_when_not_a_tty() {
    let tmp = tempfile::tempdir().unwrap();
    write_config(tmp.path(), include_str!("fixtures/findings.json"));
    let mut c = Command::cargo_bin("fentaris").unwrap();
    c.current_dir(tmp.path())
        .env_remove("NO_COLOR")
        .args(["policy", "check"]);
    let out = c.assert().code(1).get_output().stdout.clone();
    assert!(!String::from_utf8(out).unwrap().contains('\u{1b}'));
}

#[test]
fn explain_names_the_deciding_rule() {
    let cfg = repo().join(".fentaris.example/reference.json");
    let out = fentaris(repo())
        .arg("--config")
        .arg(&cfg)
        .args([
            "policy",
            "explain",
            "--user",
            "erin",
            "--server",
            "github",
            "--tool",
            "delete_repo",
        ])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.starts_with("DENY  erin → github  tool:call delete_repo"),
        "{out}"
    );
    assert!(
        out.contains("policy `maintainers` rule 1  /policies/3/rules/1"),
        "{out}"
    );
    assert!(
        out.contains("matched but lost (deny wins over allow)"),
        "{out}"
    );

    let json = fentaris(repo())
        .arg("--config")
        .arg(&cfg)
        .args([
            "policy",
            "explain",
            "--user",
            "alice",
            "--server",
            "filesystem",
            "--operation",
            "resource:read",
            "--target",
            "file:///secrets.env",
            "--format",
            "json",
        ])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["decidedBy"]["policy"], "production");
    assert_eq!(v["decidedBy"]["index"], 3);
    assert_eq!(v["decidedBy"]["pointer"], "/policies/0/rules/3");
    assert!(v["decidedBy"]["line"].as_u64().unwrap() > 1);

    fentaris(repo())
        .arg("--config")
        .arg(&cfg)
        .args([
            "policy",
            "explain",
            "--user",
            "bob",
            "--server",
            "github",
            "--tool",
            "create_issue",
        ])
        .assert()
        .code(0)
        .stdout(
            predicate::str::contains("ALLOW")
                .and(predicate::str::contains("bindings of group `support`")),
        );
}

#[test]
fn explain_usage_errors() {
    let cfg = repo().join(".fentaris.example/config.json");
    fentaris(repo())
        .arg("--config")
        .arg(&cfg)
        .args(["policy", "explain", "--user", "a", "--server", "s"])
        .assert()
        .code(2);
    fentaris(repo())
        .arg("--config")
        .arg(&cfg)
        .args([
            "policy",
            "explain",
            "--user",
            "a",
            "--server",
            "s",
            "--operation",
            "resource:reed",
            "--target",
            "x",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("did you mean `resource:read`?"));
    fentaris(repo())
        .arg("--config")
        .arg(&cfg)
        .args([
            "policy",
            "explain",
            "--user",
            "a",
            "--server",
            "s",
            "--tool",
            "t",
            "--operation",
            "tool:call",
        ])
        .assert()
        .code(2);
}

#[test]
fn commands_refuse_an_invalid_config() {
    let tmp = tempfile::tempdir().unwrap();
    write_config(tmp.path(), include_str!("fixtures/findings.json"));
    fentaris(tmp.path())
        .args([
            "policy",
            "explain",
            "--user",
            "alice",
            "--server",
            "filesystem",
            "--tool",
            "read_file",
        ])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("FNT003").and(predicate::str::contains("has errors")));
    fentaris(tmp.path())
        .args(["config", "show"])
        .assert()
        .code(3);
}

#[test]
fn policy_tests_of_the_examples_pass() {
    let ex = repo().join(".fentaris.example");
    fentaris(repo())
        .arg("--config")
        .arg(ex.join("config.json"))
        .args(["policy", "test"])
        .assert()
        .success()
        .stdout(predicate::str::contains(" 0 failed"));
    fentaris(repo())
        .arg("--config")
        .arg(ex.join("reference.json"))
        .args(["policy", "test"])
        .arg(ex.join("reference-tests.json"))
        .assert()
        .success()
        .stdout(predicate::str::contains(" 0 failed"));
    for cfg in ["config.json", "reference.json"] {
        let out = fentaris(repo())
            .arg("--config")
            .arg(ex.join(cfg))
            .args(["policy", "check", "--format", "json"])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["summary"]["errors"], 0, "{cfg}");
    }
}

#[test]
fn failing_policy_test_prints_the_trace() {
    let tmp = tempfile::tempdir().unwrap();
    write_config(tmp.path(), include_str!("../.fentaris.example/config.json"));
    let tests = tmp.path().join(".fentaris/policy-tests.json");
    std::fs::write(
        &tests,
        r#"[
  { "name": "ok", "user": "alice", "server": "filesystem", "tool": "read_text_file", "expect": "allow" },
  { "name": "wrong on purpose", "user": "alice", "server": "filesystem", "tool": "write_file", "expect": "allow" }
]"#,
    )
    .unwrap();
    fentaris(tmp.path())
        .args(["policy", "test"])
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("PASS  ok")
                .and(predicate::str::contains("FAIL  wrong on purpose  (.fentaris/policy-tests.json:3): expected allow, got deny"))
                .and(predicate::str::contains("policy `reader` rule 1"))
                .and(predicate::str::contains("1 passed, 1 failed")),
        );
    std::fs::write(
        &tests,
        r#"[{ "user": "a", "server": "s", "tool": "t", "expect": "maybe" }]"#,
    )
    .unwrap();
    fentaris(tmp.path())
        .args(["policy", "test"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("FNT002"));
}

#[test]
fn config_show_prints_references_never_values() {
    let cfg = repo().join(".fentaris.example/reference.json");
    let out = fentaris(repo())
        .env("GITHUB_TOKEN", "canary-ghp-value-123")
        .env("BOB_API_KEY", "canary-bob-key-456")
        .arg("--config")
        .arg(&cfg)
        .args(["config", "show"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    assert!(!out.contains("canary"), "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["groups"][0]["credentials"]["github.token"]["env"],
        "GITHUB_TOKEN"
    );
    assert_eq!(v["identity"]["apiKeyHeader"], "x-fentaris-api-key");
    assert_eq!(
        v["servers"][0]["isolation"], "shared",
        "defaults are filled in"
    );
}

#[test]
fn schema_and_completions() {
    let out = fentaris(repo())
        .args(["config", "schema"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert!(v["properties"]["servers"].is_object());
    fentaris(repo())
        .args(["completions", "bash"])
        .assert()
        .success()
        .stdout(predicate::str::contains("_fentaris"));
    fentaris(repo())
        .args(["completions", "nushell"])
        .assert()
        .code(2);
}
