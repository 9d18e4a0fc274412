//! Vault fault injection through the real binary (DESIGN section 5): tampered, truncated and
//! forged files, wrong and missing keys, passphrases, SIGKILL in the middle of a write,
//! concurrent writers, rollback, and canary values that must never leak.
//!
//! Every command runs in a temp project with its own `XDG_CONFIG_HOME` (where the key file
//! and pin live), without any `FENTARIS_*` variable unless a test sets one, and with `CI=true`
//! and a non-terminal stdin so nothing ever prompts.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use age::secrecy::ExposeSecret;
use assert_cmd::Command;
use fentaris::vault::{KeyLookup, OpenOptions, Vault, read_envelope};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// No command may hang (a prompt without a terminal would).
const TIMEOUT: Duration = Duration::from_secs(60);

const FENTARIS_VARS: [&str; 4] = [
    "FENTARIS_CONFIG",
    "FENTARIS_VAULT_KEY",
    "FENTARIS_VAULT_KEY_FILE",
    "FENTARIS_PASSPHRASE",
];

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// A temp project (`<root>/project/.fentaris/config.json`) and its own config home
/// (`<root>/xdg`).
struct Project {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    dir: PathBuf,
    xdg: PathBuf,
}

/// The outcome of one command.
struct Run {
    what: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`fentaris {}` exited {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what, self.code, self.stdout, self.stderr
        )
    }
}

impl Run {
    fn success(&self) -> &Self {
        assert_eq!(self.code, Some(0), "expected success: {self}");
        self
    }

    /// Exit `code` and every needle in stderr.
    fn refused(&self, code: i32, needles: &[&str]) -> &Self {
        assert_eq!(self.code, Some(code), "expected exit {code}: {self}");
        for n in needles {
            assert!(
                self.stderr.contains(n),
                "stderr should mention {n:?}: {self}"
            );
        }
        self
    }

    fn output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl Project {
    fn new() -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let dir = root.join("project");
        std::fs::create_dir_all(dir.join(".fentaris")).unwrap();
        std::fs::write(dir.join(".fentaris/config.json"), "{}\n").unwrap();
        let xdg = root.join("xdg");
        std::fs::create_dir_all(&xdg).unwrap();
        Project {
            _tmp: tmp,
            root,
            dir,
            xdg,
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("fentaris").unwrap();
        c.current_dir(&self.dir)
            .env("XDG_CONFIG_HOME", &self.xdg)
            .env("CI", "true")
            .env("NO_COLOR", "1")
            .timeout(TIMEOUT);
        for v in FENTARIS_VARS {
            c.env_remove(v);
        }
        c
    }

    /// The same environment on a plain `std::process::Command` (to spawn and kill).
    fn std_cmd(&self) -> StdCommand {
        let mut c = StdCommand::new(assert_cmd::cargo::cargo_bin("fentaris"));
        c.current_dir(&self.dir)
            .env("XDG_CONFIG_HOME", &self.xdg)
            .env("CI", "true")
            .env("NO_COLOR", "1");
        for v in FENTARIS_VARS {
            c.env_remove(v);
        }
        c
    }

    /// Run a command with optional stdin and extra environment (set after the removals).
    fn run_with(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Run {
        let mut c = self.cmd();
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        if let Some(s) = stdin {
            c.write_stdin(s.to_string());
        }
        let out = c.output().unwrap();
        Run {
            what: args.join(" "),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, None, &[])
    }

    fn set(&self, name: &str, value: &str) {
        self.run_with(
            &["credentials", "set", name, "--value-stdin"],
            Some(value),
            &[],
        )
        .success();
    }

    fn vault_path(&self) -> PathBuf {
        self.dir.join(".fentaris/credentials.enc.json")
    }

    fn keys_dir(&self) -> PathBuf {
        self.xdg.join("fentaris/keys")
    }

    fn vault_id(&self) -> String {
        read_envelope(&self.vault_path()).unwrap().vault_id
    }

    fn key_file(&self) -> PathBuf {
        self.keys_dir().join(format!("{}.key", self.vault_id()))
    }

    fn pin_file(&self) -> PathBuf {
        self.keys_dir().join(format!("{}.pin", self.vault_id()))
    }

    /// The `AGE-SECRET-KEY-1…` line of the (unprotected) key file.
    fn secret_key(&self) -> String {
        std::fs::read_to_string(self.key_file())
            .unwrap()
            .lines()
            .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
            .expect("an AGE-SECRET-KEY-1 line in the key file")
            .to_string()
    }

    /// Open through the library with the key file and the pin, as the CLI does.
    fn open(&self) -> Result<Vault, String> {
        Vault::open(
            &self.vault_path(),
            &KeyLookup::in_dir(self.keys_dir()),
            OpenOptions::default(),
        )
        .map_err(|e| e.to_string())
    }

    fn value(&self, name: &str) -> Option<String> {
        let v = self
            .open()
            .unwrap_or_else(|e| panic!("the vault must open: {e}"));
        v.get(name).map(|s| s.expose().to_string())
    }

    fn vault_bytes(&self) -> Vec<u8> {
        std::fs::read(self.vault_path()).unwrap()
    }

    fn write_vault(&self, bytes: &[u8]) {
        std::fs::write(self.vault_path(), bytes).unwrap();
    }

    fn vault_json(&self) -> Value {
        serde_json::from_slice(&self.vault_bytes()).unwrap()
    }

    fn write_vault_json(&self, v: &Value) {
        self.write_vault(&serde_json::to_vec_pretty(v).unwrap());
    }
}

/// Every file and folder under `root` with its contents (folders as a marker).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                out.insert(p.clone(), b"<dir>".to_vec());
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn assert_same_tree(
    before: &BTreeMap<PathBuf, Vec<u8>>,
    after: &BTreeMap<PathBuf, Vec<u8>>,
    ctx: &dyn fmt::Display,
) {
    let mut diffs = Vec::new();
    for (p, b) in before {
        match after.get(p) {
            None => diffs.push(format!("removed {}", p.display())),
            Some(a) if a != b => diffs.push(format!("changed {}", p.display())),
            Some(_) => {}
        }
    }
    for p in after.keys().filter(|p| !before.contains_key(*p)) {
        diffs.push(format!("created {}", p.display()));
    }
    assert!(
        diffs.is_empty(),
        "files changed: {}\nafter {ctx}",
        diffs.join(", ")
    );
}

fn new_public_key() -> String {
    age::x25519::Identity::generate().to_public().to_string()
}

fn new_secret_key() -> String {
    age::x25519::Identity::generate()
        .to_string()
        .expose_secret()
        .to_string()
}

/// A vault with three entries and one API key (generation 4).
fn populated() -> Project {
    let p = Project::new();
    p.set("alpha", "alpha-value-1");
    p.set("beta", "beta-value-2");
    p.set("gamma", "gamma-value-3");
    p.run(&["auth", "api-key", "add", "alice", "--generate"])
        .success();
    assert_eq!(p.open().unwrap().envelope.generation, 4);
    p
}

/// Every command that reads or writes the vault, with its stdin.
fn vault_commands() -> Vec<(Vec<String>, Option<&'static str>)> {
    let s = |a: &[&str]| a.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    vec![
        (s(&["credentials", "list"]), None),
        (s(&["credentials", "list", "--format", "json"]), None),
        (
            s(&["credentials", "set", "x", "--value-stdin"]),
            Some("new-value"),
        ),
        (
            s(&["credentials", "set", "alpha", "--value-stdin"]),
            Some("overwritten"),
        ),
        (s(&["credentials", "remove", "alpha", "--yes"]), None),
        (s(&["auth", "api-key", "list"]), None),
        (s(&["auth", "api-key", "list", "--format", "json"]), None),
        (s(&["auth", "api-key", "add", "bob", "--generate"]), None),
        (
            s(&["auth", "api-key", "add", "bob", "--value-stdin"]),
            Some("bob-key-0123456789abcdefghij"),
        ),
        (s(&["vault", "status"]), None),
        (s(&["vault", "status", "--format", "json"]), None),
        (s(&["vault", "rekey"]), None),
        (s(&["vault", "trust", "--yes"]), None),
        (s(&["vault", "protect"]), None),
        (
            s(&["vault", "recipients", "add", "eve", &new_public_key()]),
            None,
        ),
    ]
}

/// Every vault command exits 3 naming the problem, and no file anywhere (vault, key, pin,
/// temp files) is created or changed; `policy check` reports it as an error finding.
fn assert_refused_everywhere(p: &Project, needle: &str) {
    for (args, stdin) in vault_commands() {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let before = snapshot(&p.root);
        let r = p.run_with(&args, stdin, &[]);
        r.refused(3, &[needle]);
        assert_same_tree(&before, &snapshot(&p.root), &r);
    }
    let before = snapshot(&p.root);
    let r = p.run(&["policy", "check", "--format", "json"]);
    assert_eq!(r.code, Some(1), "policy check should fail: {r}");
    assert!(
        r.stdout.contains("FNT091") && r.stdout.contains(needle),
        "policy check should report FNT091 mentioning {needle:?}: {r}"
    );
    assert_same_tree(&before, &snapshot(&p.root), &r);
}

/// Change one base64 character in `s` at `i` to another base64 character.
fn flip_base64_char(s: &str, i: usize) -> String {
    let mut b = s.as_bytes().to_vec();
    b[i] = if b[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).unwrap()
}

// ---------------------------------------------------------------------------------------------
// 1. Tampering
// ---------------------------------------------------------------------------------------------

#[test]
fn tamper_flipped_byte_in_a_sealed_value_is_refused() {
    let p = populated();
    let text = String::from_utf8(p.vault_bytes()).unwrap();
    let sealed = p.vault_json()["entries"]["beta"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(sealed.starts_with("xc20p:"));
    // A character in the middle of the ciphertext: still valid base64, one byte different.
    let flipped = flip_base64_char(&sealed, "xc20p:".len() + 40);
    assert_ne!(flipped, sealed);
    assert_eq!(text.matches(&sealed).count(), 1);
    let tampered = text.replace(&sealed, &flipped);
    assert_eq!(tampered.len(), text.len());
    p.write_vault(tampered.as_bytes());
    assert_refused_everywhere(&p, "integrity check");
}

#[test]
fn tamper_swapped_sealed_values_are_refused() {
    let p = populated();
    let mut v = p.vault_json();
    let a = v["entries"]["alpha"]["value"].clone();
    let b = v["entries"]["beta"]["value"].clone();
    v["entries"]["alpha"]["value"] = b;
    v["entries"]["beta"]["value"] = a;
    p.write_vault_json(&v);
    assert_refused_everywhere(&p, "integrity check");
}

#[test]
fn tamper_deleted_entry_is_refused() {
    let p = populated();
    let mut v = p.vault_json();
    assert!(
        v["entries"]
            .as_object_mut()
            .unwrap()
            .shift_remove("gamma")
            .is_some()
    );
    p.write_vault_json(&v);
    assert_refused_everywhere(&p, "integrity check");
}

#[test]
fn tamper_recipient_added_by_hand_is_refused() {
    let p = populated();
    let mut v = p.vault_json();
    v["recipients"]
        .as_array_mut()
        .unwrap()
        .push(json!({"label": "evil", "publicKey": new_public_key()}));
    p.write_vault_json(&v);
    assert_refused_everywhere(&p, "integrity check");
}

#[test]
fn tamper_truncated_to_half_is_refused() {
    let p = populated();
    let bytes = p.vault_bytes();
    p.write_vault(&bytes[..bytes.len() / 2]);
    assert_refused_everywhere(&p, "not a valid vault");
}

#[test]
fn tamper_truncated_to_zero_length_is_refused() {
    let p = populated();
    p.write_vault(b"");
    assert_refused_everywhere(&p, "not a valid vault");
}

#[test]
fn tamper_invalid_json_is_refused() {
    let p = populated();
    p.write_vault(b"{\"format\": \"fentaris-vault\", \"version\": 1,, oops }\n");
    assert_refused_everywhere(&p, "not a valid vault");
}

#[test]
fn tamper_path_traversal_vault_ids_are_refused_before_any_key_file_is_read() {
    for bad in ["../../x", "vlt_../../etc"] {
        let p = populated();
        // A trap where `../../x` would lead the key lookup (`<keys>/../../x.key` is
        // `<xdg>/x.key`): group-readable and not a key, so reading it would fail with a
        // different error ("chmod 600", or "not an age secret key").
        let trap = p.xdg.join("x.key");
        std::fs::write(&trap, "not a key\n").unwrap();
        std::fs::set_permissions(&trap, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut v = p.vault_json();
        v["vaultId"] = json!(bad);
        p.write_vault_json(&v);
        assert_refused_everywhere(&p, "vault id");
        // With a bogus FENTARIS_VAULT_KEY, reaching the key lookup would fail differently.
        let before = snapshot(&p.root);
        for args in [
            &["credentials", "list"][..],
            &["credentials", "set", "x", "--value-stdin"],
            &["vault", "status"],
        ] {
            let r = p.run_with(
                args,
                Some("v"),
                &[
                    ("FENTARIS_VAULT_KEY", "not-a-key"),
                    ("FENTARIS_PASSPHRASE", "pw-pw-pw-pw"),
                ],
            );
            r.refused(3, &["vault id", bad]);
            assert!(
                !r.stderr.contains("FENTARIS_VAULT_KEY") && !r.stderr.contains("chmod"),
                "the key must not have been looked up: {r}"
            );
        }
        assert_same_tree(&before, &snapshot(&p.root), &"the bogus-key runs");
        // Nothing named after the bad id anywhere.
        for path in snapshot(&p.root).keys() {
            let name = path.file_name().unwrap().to_string_lossy();
            let named_after_id = ["x.pin", "etc.key", "etc.pin"].contains(&name.as_ref())
                || name.starts_with("vlt_..")
                || (name == "x.key" && path != &trap);
            assert!(
                !named_after_id,
                "a file named after the bad vault id {bad:?} was created: {}",
                path.display()
            );
        }
        assert_eq!(std::fs::read(&trap).unwrap(), b"not a key\n");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Keys
// ---------------------------------------------------------------------------------------------

const KEY_COMMANDS: [&[&str]; 4] = [
    &["credentials", "list"],
    &["credentials", "set", "x", "--value-stdin"],
    &["auth", "api-key", "list"],
    &["vault", "status"],
];

#[test]
fn wrong_key_is_not_a_recipient() {
    let p = populated();
    let other = new_secret_key();
    // The same wrong key from FENTARIS_VAULT_KEY_FILE.
    let other_file = p.root.join("other.key");
    std::fs::write(&other_file, format!("{other}\n")).unwrap();
    std::fs::set_permissions(&other_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let other_file = other_file.to_str().unwrap().to_string();
    for (var, val, place) in [
        ("FENTARIS_VAULT_KEY", other.as_str(), "FENTARIS_VAULT_KEY"),
        (
            "FENTARIS_VAULT_KEY_FILE",
            other_file.as_str(),
            "FENTARIS_VAULT_KEY_FILE",
        ),
    ] {
        for args in KEY_COMMANDS {
            let before = snapshot(&p.root);
            let r = p.run_with(args, Some("v"), &[(var, val)]);
            r.refused(3, &["not one of this vault's recipients", place]);
            assert!(
                !r.output().contains(&other),
                "the key itself must not be printed: {r}"
            );
            assert_same_tree(&before, &snapshot(&p.root), &r);
        }
    }
    // The right key still works.
    p.run(&["credentials", "list"]).success();
}

#[test]
fn missing_key_lists_every_place_tried() {
    let p = populated();
    let key_file = p.key_file();
    std::fs::remove_file(&key_file).unwrap();
    let shown = key_file.display().to_string();
    for args in &KEY_COMMANDS[..3] {
        let before = snapshot(&p.root);
        let r = p.run_with(args, Some("v"), &[]);
        r.refused(
            3,
            &[
                "no vault key found",
                "FENTARIS_VAULT_KEY (not set)",
                "FENTARIS_VAULT_KEY_FILE (not set)",
                &format!("{shown} (no such file)"),
            ],
        );
        // In particular `credentials set` did not create a new key or vault.
        assert_same_tree(&before, &snapshot(&p.root), &r);
    }
    // `vault status` works without a key (as in CI) and says the vault is not verified.
    let r = p.run(&["vault", "status", "--format", "json"]);
    r.success();
    let status: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(status["verified"], json!(false), "{r}");
    assert!(r.stdout.contains("no vault key"), "{r}");
}

#[test]
fn key_file_readable_by_others_is_refused() {
    let p = populated();
    let key_file = p.key_file();
    for mode in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(mode)).unwrap();
        for args in KEY_COMMANDS {
            let before = snapshot(&p.root);
            let r = p.run_with(args, Some("v"), &[]);
            r.refused(3, &["readable by other users", "chmod 600"]);
            assert_same_tree(&before, &snapshot(&p.root), &r);
        }
    }
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    p.run(&["credentials", "list"]).success();
}

#[test]
fn passphrase_protected_key_needs_the_right_passphrase_and_never_prompts() {
    let p = populated();
    let pass = "correct-horse-battery";
    // 1st KDF run.
    p.run_with(
        &["vault", "protect"],
        None,
        &[("FENTARIS_PASSPHRASE", pass)],
    )
    .success();
    let key_file = p.key_file();
    let text = std::fs::read_to_string(&key_file).unwrap();
    assert!(
        !text.contains("AGE-SECRET-KEY-1") && !text.contains(pass),
        "the protected key file must not hold the key or the passphrase in clear:\n{text}"
    );
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Without FENTARIS_PASSPHRASE and without a terminal: refused at once, no prompt, no KDF.
    for args in [
        &["credentials", "list"][..],
        &["credentials", "set", "x", "--value-stdin"],
    ] {
        let before = snapshot(&p.root);
        let started = Instant::now();
        let r = p.run_with(args, Some("v"), &[]);
        r.refused(3, &["protected by a passphrase", "FENTARIS_PASSPHRASE"]);
        assert!(started.elapsed() < TIMEOUT, "{r}");
        assert_same_tree(&before, &snapshot(&p.root), &r);
    }
    // Wrong passphrase (2nd KDF run).
    let before = snapshot(&p.root);
    let r = p.run_with(
        &["credentials", "list"],
        None,
        &[("FENTARIS_PASSPHRASE", "wrong-horse-battery")],
    );
    r.refused(3, &["wrong passphrase"]);
    assert!(!r.output().contains("wrong-horse-battery"), "{r}");
    assert_same_tree(&before, &snapshot(&p.root), &r);
    // Right passphrase (3rd KDF run).
    let r = p.run_with(
        &["credentials", "list", "--format", "json"],
        None,
        &[("FENTARIS_PASSPHRASE", pass)],
    );
    r.success();
    assert!(r.stdout.contains("\"alpha\""), "{r}");
    assert!(!r.output().contains(pass), "{r}");
}

// ---------------------------------------------------------------------------------------------
// 3. Crash safety
// ---------------------------------------------------------------------------------------------

/// Spawn `credentials set NAME --value-stdin`, feed it `value` and close stdin.
fn spawn_set(p: &Project, name: &str, value: &str) -> std::process::Child {
    let mut child = p
        .std_cmd()
        .args(["credentials", "set", name, "--value-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // The child may already be dead (killed): a broken pipe is fine.
    let _ = stdin.write_all(value.as_bytes());
    drop(stdin);
    child
}

#[test]
fn sigkill_during_set_always_leaves_the_old_or_the_new_vault() {
    const ITERATIONS: u64 = 250;
    let p = Project::new();
    p.set("k", "initial");
    p.set("other", "untouched");

    // Calibrate the kill window on an uncontended run: about twice a full `set`, at least
    // 30 ms, so that kills land before, during and after the write.
    let mut times: Vec<Duration> = (0..5)
        .map(|i| {
            let t = Instant::now();
            let out = spawn_set(&p, "k", &format!("calibration-{i}"))
                .wait_with_output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            t.elapsed()
        })
        .collect();
    times.sort();
    let window = (times[2] * 2).clamp(Duration::from_millis(30), Duration::from_millis(300));
    let mut current = p.value("k").unwrap();
    let mut generation = p.open().unwrap().envelope.generation;

    let started = Instant::now();
    let (mut killed, mut completed, mut landed_after_kill) = (0, 0, 0);
    for i in 0..ITERATIONS {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_0000 + i);
        let delay = Duration::from_micros(rng.gen_range(0..=window.as_micros() as u64));
        let new = format!("value-{i}-{}", if i % 2 == 0 { "even" } else { "odd" });
        let mut child = spawn_set(&p, "k", &new);
        std::thread::sleep(delay);
        let _ = child.kill();
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
        let ctx =
            format!("iteration {i} (kill after {delay:?}, status {status:?}, stderr {stderr:?})");
        match (status.code(), status.signal()) {
            (Some(0), _) => completed += 1,
            (_, Some(9)) => killed += 1,
            _ => panic!("the writer failed on its own: {ctx}"),
        }

        // The vault always opens (key, MAC, every entry, and the pin is never ahead of it).
        let v = p
            .open()
            .unwrap_or_else(|e| panic!("the vault does not open after {ctx}: {e}"));
        let got = v.get("k").expect("k").expose().to_string();
        assert_eq!(
            v.get("other").map(|s| s.expose()),
            Some("untouched"),
            "{ctx}"
        );
        assert_eq!(v.names().count(), 2, "{ctx}");
        let gen_now = v.envelope.generation;
        if got == new {
            assert_eq!(gen_now, generation + 1, "{ctx}");
            if status.code() != Some(0) {
                landed_after_kill += 1;
            }
        } else {
            assert_eq!(
                got, current,
                "k is neither the old nor the new value: {ctx}"
            );
            assert_eq!(gen_now, generation, "{ctx}");
            assert_ne!(status.code(), Some(0), "a successful set was lost: {ctx}");
        }
        current = got;
        generation = gen_now;
    }
    let tmp_left = std::fs::read_dir(p.dir.join(".fentaris"))
        .unwrap()
        .filter(|e| {
            let n = e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .into_owned();
            n.starts_with(".credentials.") && n.ends_with(".tmp")
        })
        .count();
    eprintln!(
        "{ITERATIONS} iterations in {:?} (kill window {window:?}): {completed} completed, \
         {killed} killed ({landed_after_kill} of them after the rename), \
         {tmp_left} temp files left behind",
        started.elapsed()
    );
    assert!(
        killed > 0,
        "no run was ever killed: the test tested nothing"
    );
    assert!(completed > 0, "no run ever completed within {window:?}");
    // The lock is not left held, and the CLI agrees with the library.
    p.set("k", "final");
    let r = p.run(&["credentials", "list", "--format", "json"]);
    r.success();
    assert!(
        r.stdout.contains("\"k\"") && r.stdout.contains("\"other\""),
        "{r}"
    );
    assert_eq!(p.value("k").as_deref(), Some("final"));
}

// ---------------------------------------------------------------------------------------------
// 4. Concurrency
// ---------------------------------------------------------------------------------------------

#[test]
fn concurrent_writers_wait_for_the_lock_and_none_is_lost() {
    let p = Project::new();
    p.set("base", "base-value");
    for round in 0..3 {
        let before = p.open().unwrap().envelope.generation;
        // Start all eight first (each blocks reading stdin), then release them together.
        let mut children: Vec<_> = (0..8)
            .map(|i| {
                p.std_cmd()
                    .args(["credentials", "set", &format!("c{i}"), "--value-stdin"])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut stdins: Vec<_> = children
            .iter_mut()
            .map(|c| c.stdin.take().unwrap())
            .collect();
        for (i, s) in stdins.iter_mut().enumerate() {
            s.write_all(format!("value-{round}-{i}").as_bytes())
                .unwrap();
        }
        drop(stdins);
        for (i, c) in children.into_iter().enumerate() {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: writer c{i} failed ({:?}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let v = p.open().unwrap();
        assert_eq!(
            v.envelope.generation,
            before + 8,
            "round {round}: every write increases the generation once"
        );
        for i in 0..8 {
            assert_eq!(
                v.get(&format!("c{i}")).map(|s| s.expose()),
                Some(format!("value-{round}-{i}").as_str()),
                "round {round}: c{i}"
            );
        }
        assert_eq!(v.get("base").map(|s| s.expose()), Some("base-value"));
        assert_eq!(v.names().count(), 9);
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Forgery and rollback
// ---------------------------------------------------------------------------------------------

/// Commands that must refuse an untrusted vault.
const PIN_COMMANDS: [&[&str]; 5] = [
    &["credentials", "list"],
    &["credentials", "set", "x", "--value-stdin"],
    &["auth", "api-key", "list"],
    &["auth", "api-key", "add", "bob", "--generate"],
    &["vault", "status"],
];

#[test]
fn forged_vault_with_the_same_id_and_recipients_is_refused_until_trusted() {
    let victim = populated();
    let id = victim.vault_id();
    let recipients = victim.vault_json()["recipients"].clone();
    let secret = victim.secret_key();

    // The forger holds the victim's identity (standing in for anyone who can build a
    // well-formed vault for the public recipients) but not the victim's pin.
    let forger = Project::new();
    std::fs::copy(victim.vault_path(), forger.vault_path()).unwrap();
    let env = [("FENTARIS_VAULT_KEY", secret.as_str())];
    forger.run_with(&["vault", "rekey"], None, &env).success();
    forger
        .run_with(
            &["auth", "api-key", "add", "mallory", "--generate"],
            None,
            &env,
        )
        .success();
    let forged = forger.vault_json();
    assert_eq!(forged["vaultId"], json!(id));
    assert_eq!(forged["recipients"], recipients);
    assert!(
        !forger.keys_dir().exists() || std::fs::read_dir(forger.keys_dir()).unwrap().count() == 0,
        "an environment key has no key file and no pin"
    );

    std::fs::copy(forger.vault_path(), victim.vault_path()).unwrap();
    for args in PIN_COMMANDS {
        let before = snapshot(&victim.root);
        let r = victim.run_with(args, Some("v"), &[]);
        r.refused(3, &["data key changed", "vault trust"]);
        assert_same_tree(&before, &snapshot(&victim.root), &r);
    }
    let r = victim.run(&["vault", "trust", "--yes"]);
    r.success();
    assert!(r.stdout.contains("a new data key"), "{r}");
    assert!(
        r.stdout.contains("mallory"),
        "trust shows what it accepts: {r}"
    );
    let r = victim.run(&["auth", "api-key", "list", "--format", "json"]);
    r.success();
    assert!(r.stdout.contains("\"mallory\""), "{r}");
    assert_eq!(victim.value("alpha").as_deref(), Some("alpha-value-1"));
}

#[test]
fn rolled_back_vault_is_refused_until_trusted() {
    let p = populated();
    let old = p.vault_bytes();
    p.set("delta", "delta-value");
    p.set("alpha", "alpha-value-new");
    assert_eq!(p.open().unwrap().envelope.generation, 6);
    p.write_vault(&old);
    for args in PIN_COMMANDS {
        let before = snapshot(&p.root);
        let r = p.run_with(args, Some("v"), &[]);
        r.refused(
            3,
            &[
                "generation 4 is older than generation 6",
                "rolled back",
                "vault trust",
            ],
        );
        assert_same_tree(&before, &snapshot(&p.root), &r);
    }
    let r = p.run(&["vault", "trust", "--yes"]);
    r.success();
    assert!(r.stdout.contains("rolled back"), "{r}");
    p.run(&["credentials", "list"]).success();
    assert_eq!(p.value("alpha").as_deref(), Some("alpha-value-1"));
    assert_eq!(p.value("delta"), None);
    // Writes continue from the restored generation.
    p.set("alpha", "after-restore");
    assert_eq!(p.open().unwrap().envelope.generation, 5);
}

#[test]
fn trust_without_yes_and_without_a_terminal_refuses_and_changes_nothing() {
    let p = populated();
    let old = p.vault_bytes();
    p.set("alpha", "alpha-value-new");
    p.write_vault(&old);
    let before = snapshot(&p.root);
    let r = p.run(&["vault", "trust"]);
    r.refused(2, &["--yes"]);
    assert_same_tree(&before, &snapshot(&p.root), &r);
    p.run(&["credentials", "list"]).refused(3, &["rolled back"]);
    // And the same for a changed data key: a rekey done on another machine (the key from
    // the environment, another config folder), so this machine's pin is not updated.
    let p = populated();
    let secret = p.secret_key();
    let elsewhere = tempfile::tempdir().unwrap();
    let elsewhere = elsewhere.path().display().to_string();
    p.run_with(
        &["vault", "rekey"],
        None,
        &[
            ("FENTARIS_VAULT_KEY", &secret),
            ("XDG_CONFIG_HOME", &elsewhere),
        ],
    )
    .success();
    let before = snapshot(&p.root);
    let r = p.run(&["vault", "trust"]);
    r.refused(2, &["--yes"]);
    assert_same_tree(&before, &snapshot(&p.root), &r);
    p.run(&["credentials", "list"])
        .refused(3, &["data key changed"]);
}

// ---------------------------------------------------------------------------------------------
// 6. Canaries
// ---------------------------------------------------------------------------------------------

#[test]
fn canaries_never_appear_in_output_or_files() {
    const CRED: &str = "canary-7f3a-secret-value-0001";
    const APIKEY: &str = "canary-apikey-9c2e-0002-long-enough";
    let p = Project::new();
    let check = |r: &Run| {
        for c in [CRED, APIKEY] {
            assert!(!r.output().contains(c), "canary {c} leaked: {r}");
        }
    };
    for (args, stdin) in [
        (&["credentials", "set", "tok", "--value-stdin"][..], CRED),
        (
            &["auth", "api-key", "add", "alice", "--value-stdin"],
            APIKEY,
        ),
    ] {
        let r = p.run_with(args, Some(stdin), &[]);
        r.success();
        check(&r);
    }
    assert_eq!(p.value("tok").as_deref(), Some(CRED));
    // Errors that involve the values do not echo them either.
    for (args, stdin, code) in [
        (
            &["auth", "api-key", "add", "alice", "--value-stdin"][..],
            APIKEY,
            2,
        ),
        (
            &["auth", "api-key", "add", "alice", "--value-stdin"],
            "canary-apikey-9c2e-0002 long enough",
            2,
        ),
        (
            &["credentials", "set", "bad name", "--value-stdin"],
            CRED,
            2,
        ),
    ] {
        let r = p.run_with(args, Some(stdin), &[]);
        assert_eq!(r.code, Some(code), "{r}");
        check(&r);
        assert!(!r.output().contains("canary-apikey-9c2e-0002 long"), "{r}");
    }
    for args in [
        &["credentials", "list"][..],
        &["credentials", "list", "--format", "json"],
        &["auth", "api-key", "list"],
        &["auth", "api-key", "list", "--format", "json"],
        &["vault", "status"],
        &["vault", "status", "--format", "json"],
        &["vault", "recipients", "list"],
        &["policy", "check"],
        &["policy", "check", "--format", "json"],
        &["config", "show"],
    ] {
        let r = p.run(args);
        assert_ne!(r.code, Some(3), "{r}");
        check(&r);
    }
    // Not in any file: the vault, the key file, the pin, the lock, temp files.
    let files = snapshot(&p.root);
    assert!(files.contains_key(&p.vault_path()));
    assert!(files.contains_key(&p.key_file()));
    assert!(files.contains_key(&p.pin_file()));
    for (path, bytes) in &files {
        for c in [CRED, APIKEY] {
            assert!(
                !bytes.windows(c.len()).any(|w| w == c.as_bytes()),
                "canary {c} found in {}",
                path.display()
            );
        }
    }
    // Tampering errors do not reveal the values either.
    let text = String::from_utf8(p.vault_bytes()).unwrap();
    let sealed = p.vault_json()["entries"]["tok"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    p.write_vault(
        text.replace(&sealed, &flip_base64_char(&sealed, "xc20p:".len() + 30))
            .as_bytes(),
    );
    for args in [
        &["credentials", "list"][..],
        &["vault", "status"],
        &["policy", "check"],
    ] {
        let r = p.run(args);
        assert_ne!(r.code, Some(0), "{r}");
        check(&r);
    }
}
