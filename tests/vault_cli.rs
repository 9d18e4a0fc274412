//! The vault through the real binary and the library: API keys, credentials, recipients,
//! rekey, status, `policy check` integration, and recovery with the standard `age` tool.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use assert_cmd::Command;
use fentaris::vault::{KeyLookup, OpenOptions, Vault};
use predicates::prelude::*;

struct Project {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Project {
    fn new(config: &str) -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::create_dir_all(dir.join(".fentaris")).unwrap();
        std::fs::write(dir.join(".fentaris/config.json"), config).unwrap();
        Project { _tmp: tmp, dir }
    }
    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("fentaris").unwrap();
        c.current_dir(&self.dir)
            .env_remove("FENTARIS_CONFIG")
            .env_remove("FENTARIS_VAULT_KEY")
            .env_remove("FENTARIS_VAULT_KEY_FILE")
            .env_remove("FENTARIS_PASSPHRASE")
            .env("XDG_CONFIG_HOME", self.dir.join("xdg"))
            .env("CI", "true")
            .env("NO_COLOR", "1")
            .timeout(Duration::from_secs(120));
        c
    }
    fn vault(&self) -> PathBuf {
        self.dir.join(".fentaris/credentials.enc.json")
    }
    fn keys_dir(&self) -> PathBuf {
        self.dir.join("xdg/fentaris/keys")
    }
    fn open(&self) -> Vault {
        Vault::open(
            &self.vault(),
            &KeyLookup::in_dir(self.keys_dir()),
            OpenOptions::default(),
        )
        .unwrap()
    }
    fn key_file(&self) -> PathBuf {
        std::fs::read_dir(self.keys_dir())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "key"))
            .unwrap()
    }
    fn set(&self, name: &str, value: &str) {
        self.cmd()
            .args(["credentials", "set", name, "--value-stdin"])
            .write_stdin(value)
            .assert()
            .success();
    }
}

const USERS: &str = r#"{ "groups": [{ "id": "g", "users": ["alice"] }] }"#;

#[test]
fn init_creates_a_private_key_and_a_vault() {
    let p = Project::new("{}");
    std::fs::remove_file(p.dir.join(".fentaris/config.json")).unwrap();
    p.cmd()
        .arg("init")
        .assert()
        .success()
        .stdout(predicate::str::contains("credentials.enc.json"));
    let key = p.key_file();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(p.keys_dir())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
    }
    let v = p.open();
    assert!(
        key.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&v.envelope.vault_id)
    );
    assert!(
        !key.starts_with(p.dir.join(".fentaris")),
        "keys never live in .fentaris/"
    );
}

#[test]
fn generated_api_keys_verify_and_are_shown_once() {
    let p = Project::new(USERS);
    let out = p
        .cmd()
        .args([
            "auth",
            "api-key",
            "add",
            "alice",
            "--generate",
            "--label",
            "laptop",
        ])
        .assert()
        .success()
        .get_output()
        .clone();
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(fentaris::vault::is_generated_key(&key), "{key}");
    assert!(key.starts_with("fnt_"));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stderr.contains(&key));
    assert!(
        !stderr.contains("not declared"),
        "alice is declared: {stderr}"
    );
    let v = p.open();
    let index = v.api_key_index();
    let m = index.verify(&key, SystemTime::now()).unwrap();
    assert_eq!(m.user, "alice");
    assert!(
        index
            .verify(&format!("{key}x"), SystemTime::now())
            .is_none()
    );
    // The vault never holds the key itself.
    assert!(!std::fs::read_to_string(p.vault()).unwrap().contains(&key));
    // list shows metadata only.
    let list = p
        .cmd()
        .args(["auth", "api-key", "list", "--format", "json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let list = String::from_utf8(list).unwrap();
    assert!(!list.contains(&key[key.len() - 4..]) || !list.contains(&key));
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(v[0]["user"], "alice");
    assert_eq!(v[0]["label"], "laptop");
    assert_eq!(v[0]["status"], "active");
    assert!(v[0].get("verifier").is_none());
}

#[test]
fn api_key_add_validates_input_and_warns_on_unknown_users() {
    let p = Project::new(USERS);
    p.cmd()
        .args(["auth", "api-key", "add", "alice", "--value-stdin"])
        .write_stdin("short\n")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("shorter than 20"));
    p.cmd()
        .args(["auth", "api-key", "add", "alice", "--value-stdin"])
        .write_stdin("has white space in it, long enough\n")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("whitespace"));
    p.cmd()
        .args(["auth", "api-key", "add", "alice"])
        .assert()
        .code(2);
    // A user the config does not declare is refused unless named new on purpose.
    p.cmd()
        .args(["auth", "api-key", "add", "zed", "--value-stdin"])
        .write_stdin("zed-key-0123456789abcdefghij\n")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--new-user"));
    p.cmd()
        .args([
            "auth",
            "api-key",
            "add",
            "zed",
            "--value-stdin",
            "--new-user",
        ])
        .write_stdin("zed-key-0123456789abcdefghij\n")
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "`zed` is not declared in any group",
        ));
    let index = p.open().api_key_index();
    assert_eq!(
        index
            .verify("zed-key-0123456789abcdefghij", SystemTime::now())
            .unwrap()
            .user,
        "zed"
    );
    // The same key twice is refused.
    p.cmd()
        .args(["auth", "api-key", "add", "zed", "--value-stdin"])
        .write_stdin("zed-key-0123456789abcdefghij")
        .assert()
        .code(2);
    for bad in ["soon", "0s", "10000y", "500000000000y"] {
        p.cmd()
            .args([
                "auth",
                "api-key",
                "add",
                "alice",
                "--generate",
                "--expires-in",
                bad,
            ])
            .assert()
            .code(2);
    }
}

#[test]
fn revoked_and_expired_keys_fail() {
    let p = Project::new(USERS);
    p.cmd()
        .args([
            "auth",
            "api-key",
            "add",
            "alice",
            "--value-stdin",
            "--expires-in",
            "1h",
        ])
        .write_stdin("alice-key-0123456789abcdef")
        .assert()
        .success();
    let v = p.open();
    let id = v.envelope.api_keys[0].key_id.clone();
    let index = v.api_key_index();
    assert!(
        index
            .verify("alice-key-0123456789abcdef", SystemTime::now())
            .is_some()
    );
    assert!(
        index
            .verify(
                "alice-key-0123456789abcdef",
                SystemTime::now() + Duration::from_secs(7200)
            )
            .is_none(),
        "expired"
    );
    p.cmd()
        .args(["auth", "api-key", "revoke", "alice", &id])
        .assert()
        .success();
    assert!(
        p.open()
            .api_key_index()
            .verify("alice-key-0123456789abcdef", SystemTime::now())
            .is_none(),
        "revoked"
    );
    p.cmd()
        .args(["auth", "api-key", "revoke", "alice", &id])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already revoked"));
    p.cmd()
        .args(["auth", "api-key", "revoke", "alice", "nope"])
        .assert()
        .code(2);
    let list = p
        .cmd()
        .args(["auth", "api-key", "list", "alice", "--format", "json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&list).unwrap();
    assert_eq!(v[0]["status"], "revoked");
}

#[test]
fn credentials_set_list_remove() {
    let p = Project::new("{}");
    p.set("github.token", "ghp_first_value_0000000000");
    p.set("github.token", "ghp_second_value_000000000");
    p.set("slack.token", "xoxb-value-000000000000");
    let v = p.open();
    assert_eq!(
        v.get("github.token").unwrap().expose(),
        "ghp_second_value_000000000"
    );
    assert_eq!(
        v.names().collect::<Vec<_>>(),
        ["github.token", "slack.token"]
    );
    let list = p
        .cmd()
        .args(["credentials", "list", "--format", "json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let list: serde_json::Value = serde_json::from_slice(&list).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    p.cmd()
        .args(["credentials", "remove", "slack.token"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--yes"));
    p.cmd()
        .args(["credentials", "remove", "slack.token", "--yes"])
        .assert()
        .success();
    p.cmd()
        .args(["credentials", "remove", "slack.token", "--yes"])
        .assert()
        .code(1);
    assert!(p.open().get("slack.token").is_none());
    p.cmd()
        .args(["credentials", "set", "bad name", "--value-stdin"])
        .write_stdin("x")
        .assert()
        .code(2);
    p.cmd()
        .args(["credentials", "set", "empty", "--value-stdin"])
        .write_stdin("")
        .assert()
        .code(2);
    // Without a terminal and without --value-stdin there is nothing to read from.
    p.cmd()
        .args(["credentials", "set", "x"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--value-stdin"));
}

#[test]
fn rekey_keeps_values_and_api_keys_valid() {
    let p = Project::new(USERS);
    p.set("a", "value-a");
    let key = p
        .cmd()
        .args(["auth", "api-key", "add", "alice", "--generate"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let key = String::from_utf8(key).unwrap().trim().to_string();
    let before = p.open();
    p.cmd().args(["vault", "rekey"]).assert().success();
    let after = p.open();
    assert_ne!(before.fingerprint(), after.fingerprint());
    assert_ne!(before.envelope.data_key, after.envelope.data_key);
    assert_ne!(
        before.envelope.entries["a"].value,
        after.envelope.entries["a"].value
    );
    assert_eq!(after.get("a").unwrap().expose(), "value-a");
    assert_eq!(
        after
            .api_key_index()
            .verify(&key, SystemTime::now())
            .unwrap()
            .user,
        "alice"
    );
}

#[test]
fn recipients_add_and_remove() {
    let p = Project::new("{}");
    p.set("a", "value-a");
    let other = age::x25519::Identity::generate();
    let pk = other.to_public().to_string();
    p.cmd()
        .args(["vault", "recipients", "add", "ci", &pk])
        .assert()
        .success();
    p.cmd()
        .args(["vault", "recipients", "add", "ci2", &pk])
        .assert()
        .code(2);
    p.cmd()
        .args(["vault", "recipients", "add", "bad", "age1nope"])
        .assert()
        .code(2);
    p.cmd()
        .args(["vault", "recipients", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("ci").and(predicate::str::contains(&pk)));
    // The new recipient can open the vault with its own key from the environment.
    use age::secrecy::ExposeSecret;
    let secret = other.to_string().expose_secret().to_string();
    p.cmd()
        .env("FENTARIS_VAULT_KEY", &secret)
        .args(["credentials", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("a"));
    p.cmd()
        .env("FENTARIS_VAULT_KEY", &secret)
        .args(["vault", "status", "--format", "json"])
        .assert()
        .success()
        .stdout(predicate::str::contains("no pin"));
    // Removing the key in use is refused; removing another works.
    let v = p.open();
    let mine = v.envelope.recipients[0].label.clone();
    p.cmd()
        .args(["vault", "recipients", "remove", &mine, "--yes"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("lock you out"));
    p.cmd()
        .args(["vault", "recipients", "remove", "ci", "--yes"])
        .assert()
        .success();
    p.cmd()
        .env("FENTARIS_VAULT_KEY", &secret)
        .args(["credentials", "list"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains(
            "not one of this vault's recipients",
        ));
}

#[test]
fn status_reports_source_pin_and_integrity() {
    let p = Project::new("{}");
    p.set("a", "value-a");
    let out = p
        .cmd()
        .args(["vault", "status", "--format", "json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["verified"], true);
    assert_eq!(v["entries"], 1);
    assert!(v["keySource"].as_str().unwrap().starts_with("key file"));
    assert!(v["pin"].as_str().unwrap().contains("fingerprint"));
    // Without a key: reported, not fatal.
    std::fs::remove_file(p.key_file()).unwrap();
    let out = p
        .cmd()
        .args(["vault", "status", "--format", "json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["verified"], false);
    assert!(v["mac"].as_str().unwrap().contains("no vault key"));
}

#[test]
fn policy_check_reports_missing_vault_entries() {
    let config = r#"{
  "servers": [{ "name": "gh", "transport": { "streamableHttp": { "url": "https://gh.example/mcp" } },
    "auth": { "bearer": { "vault": "github.token" } } }]
}"#;
    let p = Project::new(config);
    // No vault file: information only, as in CI.
    let out = p
        .cmd()
        .args(["policy", "check", "--format", "json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let f = &v["findings"][0];
    assert_eq!(f["code"], "FNT005");
    assert_eq!(f["severity"], "info");
    assert_eq!(f["location"]["pointer"], "/servers/0/auth/bearer/vault");
    assert_eq!(f["location"]["line"], 3);
    // A vault without the entry: an error (no key needed for that).
    p.set("other", "x");
    let key = std::fs::read_to_string(p.key_file()).unwrap();
    std::fs::remove_file(p.key_file()).unwrap();
    p.cmd().args(["policy", "check"]).assert().code(1).stdout(
        predicate::str::contains("error[FNT005]: the vault has no entry `github.token`")
            .and(predicate::str::contains("info[FNT090]")),
    );
    // With the entry, and the key from the environment: clean, and the MAC is verified.
    let secret_line = key
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .unwrap()
        .to_string();
    p.cmd()
        .env("FENTARIS_VAULT_KEY", &secret_line)
        .args(["credentials", "set", "github.token", "--value-stdin"])
        .write_stdin("ghp_x")
        .assert()
        .success();
    p.cmd()
        .env("FENTARIS_VAULT_KEY", &secret_line)
        .args(["policy", "check", "--deny-warnings"])
        .assert()
        .success()
        .stdout(predicate::str::contains("0 errors"));
    // A tampered vault fails the check when a key is available.
    let text = std::fs::read_to_string(p.vault())
        .unwrap()
        .replace("\"other\"", "\"0ther\"");
    std::fs::write(p.vault(), text).unwrap();
    p.cmd()
        .env("FENTARIS_VAULT_KEY", &secret_line)
        .args(["policy", "check"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("error[FNT091]"));
}

fn age_binary() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("age"))
            .find(|p| p.is_file())
    })
}

#[test]
fn the_wrapped_data_key_is_a_standard_age_file() {
    let Some(age_bin) = age_binary() else {
        if std::env::var_os("CI").is_some() {
            panic!("the `age` command is required in CI (Debian package `age`)");
        }
        eprintln!("skipped: the `age` command is not installed (apt-get install age)");
        return;
    };
    let p = Project::new("{}");
    p.set("a", "value-a");
    let v = p.open();
    let wrapped = fentaris::vault::crypto::unb64(&v.envelope.data_key).unwrap();
    let file = p.dir.join("datakey.age");
    std::fs::write(&file, wrapped).unwrap();
    let out = std::process::Command::new(age_bin)
        .arg("-d")
        .arg("-i")
        .arg(p.key_file())
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), 32, "the data key is 32 bytes");
    // And that key opens the sealed values (the format is recoverable without Fentaris' key handling).
    let dek = fentaris::secret::SecretKey::from_bytes(out.stdout.as_slice().try_into().unwrap());
    let plain = fentaris::vault::crypto::open(
        &dek,
        &v.envelope.vault_id,
        "a",
        &v.envelope.entries["a"].value,
    )
    .unwrap();
    assert_eq!(plain.as_slice(), b"value-a");
}

#[test]
fn resolve_sources_through_bindings() {
    use fentaris::config::{CredentialSource as S, check_source};
    use fentaris::vault::{ResolveError, resolve_source};
    let p = Project::new("{}");
    p.set("github.token", "from-vault");
    let v = p.open();
    let cfg = check_source(
        r#"{ "credentials": { "gh": { "vault": "github.token" } },
             "groups": [{ "id": "ops", "users": ["a"], "credentials": { "gh": { "env": "OPS_GH" } } }] }"#,
    )
    .config
    .unwrap();
    let env = |k: &str| (k == "OPS_GH").then(|| "from-env".to_string());
    let r = |s: &S, g: Option<&str>| {
        resolve_source(s, &cfg, g, Some(&v), &env).map(|x| x.expose().to_string())
    };
    assert_eq!(r(&S::Credential("gh".into()), None).unwrap(), "from-vault");
    assert_eq!(
        r(&S::Credential("gh".into()), Some("ops")).unwrap(),
        "from-env"
    );
    assert_eq!(
        r(&S::Credential("nope".into()), None),
        Err(ResolveError::Unbound("nope".into()))
    );
    assert_eq!(
        r(&S::Vault("missing".into()), None),
        Err(ResolveError::VaultEntryMissing("missing".into()))
    );
    assert_eq!(
        r(&S::Env("UNSET_VAR".into()), None),
        Err(ResolveError::EnvMissing("UNSET_VAR".into()))
    );
    assert_eq!(
        r(&S::Env("FENTARIS_VAULT_KEY".into()), None),
        Err(ResolveError::Reserved("FENTARIS_VAULT_KEY".into()))
    );
    // Secrets never print.
    assert_eq!(
        format!("{:?}", v.get("github.token").unwrap()),
        "[redacted]"
    );
    assert!(!format!("{v:?}").contains("from-vault"));
}

#[test]
fn policy_check_notes_an_unkeyed_audit_chain_only_without_a_vault() {
    let p = Project::new(r#"{ "autoLog": true }"#);
    let out = p
        .cmd()
        .args(["policy", "check", "--format", "json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let f = &v["findings"][0];
    assert_eq!(f["code"], "FNT092");
    assert_eq!(f["severity"], "info");
    assert_eq!(f["location"]["pointer"], "/autoLog");
    // With a vault, lines are chained under its key: nothing to note.
    p.set("anything", "x");
    p.cmd()
        .args(["policy", "check"])
        .assert()
        .success()
        .stdout(predicate::str::contains("FNT092").not());
}
