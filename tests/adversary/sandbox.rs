//! Attack class: sandbox (see tests/e2e_adversary.rs).
//!
//! A hostile stdio upstream (tests/e2e/sandbox_attacker.py) tries to rewrite Fentaris'
//! config, vault, key file and audit log, to signal and ptrace Fentaris and to undo the
//! mounts that protect them; every attempt must fail, its legitimate writes must succeed,
//! and Fentaris and its audit chain must be intact afterwards. Then: a reload is audited
//! with the config digests, and a reload from a swapped config folder is refused.

use crate::support::*;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const KEY: &str = "alice-sandbox-key-0123456789abc";

fn attacker() -> PathBuf {
    repo().join("tests/e2e/sandbox_attacker.py")
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(bytes);
    format!(
        "sha256:{}",
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

fn audit(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Wait (at most 10 s) for an audit record of `event` beyond the first `skip` ones.
fn wait_record(path: &Path, event: &str, skip: usize) -> Value {
    let start = Instant::now();
    loop {
        if let Some(r) = audit(path)
            .into_iter()
            .filter(|r| r["event"] == event)
            .nth(skip)
        {
            return r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no `{event}` audit record in {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn hup(s: &Serve) {
    // SAFETY: kill with a valid pid of our own child.
    assert_eq!(unsafe { libc::kill(s.child.id() as i32, libc::SIGHUP) }, 0);
}

#[test]
fn a_hostile_stdio_upstream_cannot_touch_fentaris_its_files_or_its_audit_chain() {
    if !ready() {
        return;
    }
    attack_scenario(&python(), false);
}

/// The same attacks with Fentaris running as an unprivileged user (nobody): the child's
/// mount namespace then lives in its own user namespace. Needs root (to become nobody),
/// `setpriv` and a system Python that nobody can run.
#[test]
fn a_hostile_stdio_upstream_of_an_unprivileged_fentaris_cannot_touch_it_either() {
    if !ready() {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let setpriv = std::process::Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let py = Path::new("/usr/bin/python3");
    if !root || !setpriv || !py.exists() {
        eprintln!(
            "skipped: needs root, setpriv and /usr/bin/python3 (root: {root}, setpriv: {setpriv})"
        );
        return;
    }
    attack_scenario(py.to_str().unwrap(), true);
}

fn attack_scenario(python: &str, as_nobody: bool) {
    // An abstract socket outside the child's sandbox (Landlock scopes it away).
    use std::os::linux::net::SocketAddrExt as _;
    let name = format!("fentaris-sandbox-test-{}-{as_nobody}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();

    let config = json!({
        "autoLog": true,
        "servers": [{ "name": "evil", "transport": { "stdio": {
            "command": python, "args": [attacker()],
            "env": { "SANDBOX_ABSTRACT": name } } } }],
        "groups": [{ "id": "g", "users": ["alice"], "policy": { "rules": [{ "mcp": "evil", "allow": ["attack"] }] } }]
    });
    let dir = project(&config);
    fentaris_with_stdin(
        dir.path(),
        &["auth", "api-key", "add", "alice", "--value-stdin"],
        KEY,
    );
    let project = std::fs::canonicalize(dir.path()).unwrap();
    let keys_dir = project.join("xdg/fentaris/keys");
    let key_file = std::fs::read_dir(&keys_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "key"))
        .expect("a key file");
    let vault = project.join(".fentaris/credentials.enc.json");
    let log = project.join(".fentaris/logs/audit.jsonl");
    let config_path = project.join(".fentaris/config.json");

    let mut s = if as_nobody {
        serve_as_nobody(dir)
    } else {
        serve_in(dir, &[])
    };
    let (config_bytes, vault_bytes, key_bytes) = (
        std::fs::read(&config_path).unwrap(),
        std::fs::read(&vault).unwrap(),
        std::fs::read(&key_file).unwrap(),
    );
    let (_, _, verbose) = http(
        "GET",
        &format!("http://127.0.0.1:{}/readyz?verbose", s.admin),
        &[],
        None,
    )
    .unwrap();
    let verbose: Value = serde_json::from_str(&verbose).unwrap();
    eprintln!("sandbox: {}", verbose["sandbox"]);
    assert_eq!(
        verbose["sandbox"]["writeProtection"], "mount-namespace",
        "{verbose}"
    );
    assert_eq!(verbose["sandbox"]["userNamespace"], as_nobody, "{verbose}");
    // Signals and abstract sockets are scoped from Landlock ABI 6 on (Linux 6.12); on an
    // older kernel those attacks would succeed (and SIGTERM would end the test's server).
    let scoped = verbose["sandbox"]["scoped"] == true;
    if !scoped {
        eprintln!(
            "this kernel has no Landlock ABI 6: the signal and abstract-socket attacks are skipped"
        );
    }

    let url = s.url("/mcp");
    let sid = raw_session(&url, KEY);
    let r = raw_call(
        &url,
        KEY,
        &sid,
        "tools/call",
        json!({ "name": "evil__attack", "arguments": {
            "project": project, "keyFile": key_file, "auditLog": log, "vault": vault,
            "signals": scoped } }),
    );
    let text = r["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"));
    let results: Vec<Value> = serde_json::from_str(text).unwrap();
    assert!(results.len() >= if scoped { 35 } else { 30 }, "{results:?}");
    let mut wrong = Vec::new();
    for a in &results {
        let name = a["name"].as_str().unwrap();
        let legit = name.starts_with("legit:");
        eprintln!(
            "{name}: {}",
            if a["ok"] == true {
                "succeeded".to_string()
            } else {
                format!("failed ({})", a["errno"])
            }
        );
        if (a["ok"] == true) != legit {
            wrong.push(a.clone());
        }
    }
    assert!(wrong.is_empty(), "outcomes that must not be: {wrong:#?}");

    // Fentaris is alive, answering and unchanged.
    assert!(s.child.try_wait().unwrap().is_none(), "fentaris exited");
    let (status, _, _) = http(
        "GET",
        &format!("http://127.0.0.1:{}/readyz", s.admin),
        &[],
        None,
    )
    .unwrap();
    assert_eq!(status, 200);
    let again = raw_call(&url, KEY, &sid, "tools/list", json!({}));
    assert_eq!(
        names(&again["result"], "tools", "name"),
        ["evil__attack"],
        "{again}"
    );
    assert_eq!(std::fs::read(&config_path).unwrap(), config_bytes);
    assert_eq!(std::fs::read(&vault).unwrap(), vault_bytes);
    assert_eq!(std::fs::read(&key_file).unwrap(), key_bytes);
    assert!(!project.join(".fentaris/planted.json").exists());
    assert!(!s.log().contains("SIGHUP"), "{}", s.log());
    assert!(
        !audit(&log).iter().any(|r| r["event"] == "config.reload"),
        "a reload happened"
    );
    assert!(s.stop().success());
    let o = fentaris_cmd(&project)
        .args(["logs", "verify"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `fentaris serve` as uid/gid 65534 (the project handed over to it first).
fn serve_as_nobody(dir: tempfile::TempDir) -> Serve {
    let st = std::process::Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    let cfg_path = dir.path().join(".fentaris/config.json");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    let (port, admin) = (free_port(), free_port());
    config["listen"] = json!(format!("127.0.0.1:{port}"));
    config["adminListen"] = json!(format!("127.0.0.1:{admin}"));
    std::fs::write(&cfg_path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    let stderr = dir.path().join("serve.stderr");
    let child = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_fentaris"))
        .arg("serve")
        .current_dir(dir.path())
        .env_remove("FENTARIS_CONFIG")
        .env_remove("FENTARIS_VAULT_KEY")
        .env_remove("FENTARIS_VAULT_KEY_FILE")
        .env("XDG_CONFIG_HOME", dir.path().join("xdg"))
        .env("HOME", dir.path())
        .env("CI", "true")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let mut s = Serve {
        child,
        port,
        admin,
        _dir: dir,
        stderr,
    };
    let readyz = format!("http://127.0.0.1:{admin}/readyz");
    wait_for(&mut s, &readyz);
    s
}

#[test]
fn a_reload_is_audited_with_digests_and_a_swapped_config_folder_is_refused() {
    if !ready() {
        return;
    }
    let config = json!({
        "autoLog": true,
        "servers": [{ "name": "env", "transport": { "stdio": { "command": python(), "args": [env_server()] } } }],
        "groups": [{ "id": "g", "users": ["alice"], "policy": { "rules": [{ "mcp": "env", "allow": ["echo"] }] } }]
    });
    let dir = project(&config);
    let s = serve_in(dir, &[]);
    let fen = s.dir().join(".fentaris");
    let path = fen.join("config.json");
    let before = std::fs::read(&path).unwrap();
    let start = wait_record(&fen.join("logs/audit.jsonl"), "serve.start", 0);
    assert!(start.to_string().contains(&sha256(&before)), "{start}");

    // A valid change, then SIGHUP: applied, with both digests.
    let mut changed: Value = serde_json::from_slice(&before).unwrap();
    changed["groups"][0]["users"] = json!(["alice", "bob"]);
    let after = serde_json::to_vec_pretty(&changed).unwrap();
    std::fs::write(&path, &after).unwrap();
    hup(&s);
    let r = wait_record(&fen.join("logs/audit.jsonl"), "config.reload", 0);
    let text = r.to_string();
    assert!(text.contains("applied"), "{r}");
    assert!(text.contains(&sha256(&before)), "no before digest: {r}");
    assert!(text.contains(&sha256(&after)), "no after digest: {r}");

    // The folder renamed away and a new one planted: the reload is refused. The audit log
    // moved with the folder, which the audit writer counts as tampering: it records
    // `audit.tamper` in the file it holds and stops (fail closed), so the refusal may or may
    // not reach the audit log before that; Fentaris' own log always has it.
    let away = s.dir().join(".fentaris.away");
    std::fs::rename(&fen, &away).unwrap();
    std::fs::create_dir(&fen).unwrap();
    let mut planted = changed.clone();
    planted["groups"][0]["users"] = json!(["alice", "bob", "mallory"]);
    let planted = serde_json::to_vec_pretty(&planted).unwrap();
    std::fs::write(&path, &planted).unwrap();
    hup(&s);
    let start = Instant::now();
    while !s
        .log()
        .contains("no longer the folder Fentaris started with")
    {
        assert!(start.elapsed() < Duration::from_secs(10), "{}", s.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_record(&away.join("logs/audit.jsonl"), "audit.tamper", 0);
    let reloads: Vec<Value> = audit(&away.join("logs/audit.jsonl"))
        .into_iter()
        .filter(|r| r["event"] == "config.reload")
        .collect();
    assert!(!reloads.iter().any(|r| r.to_string().contains(&sha256(&planted))
        && r.to_string().contains("applied")), "{reloads:?}");
    if let Some(r) = reloads.get(1) {
        let text = r.to_string();
        assert!(
            text.contains("rejected") && text.contains("folder replaced"),
            "{r}"
        );
        assert!(text.contains(&sha256(&after)), "running digest: {r}");
        assert!(text.contains(&sha256(&planted)), "refused digest: {r}");
    }
    // Fail closed: the audit sink is stopped, so the proxy is not ready.
    let (status, _, _) = http(
        "GET",
        &format!("http://127.0.0.1:{}/readyz", s.admin),
        &[],
        None,
    )
    .unwrap();
    assert_eq!(status, 503);
}

/// A real upstream that writes files (`server-filesystem`, allowed the whole project folder)
/// still writes new files in the project and its subfolders; it cannot write in
/// `.fentaris`.
#[test]
fn server_filesystem_writes_in_the_project_but_not_in_the_fentaris_folder() {
    if !ready() {
        return;
    }
    let fs_js =
        repo().join("tests/e2e/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js");
    let dir = project(&json!({}));
    let root = std::fs::canonicalize(dir.path()).unwrap();
    std::fs::create_dir_all(root.join("docs")).unwrap();
    let config = json!({
        "servers": [{ "name": "fs", "transport": { "stdio": { "command": "node", "args": [fs_js, root] } } }],
        "groups": [{ "id": "g", "users": [{ "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] }],
            "policy": { "rules": [{ "mcp": "fs", "allow": ["write_file", "read_text_file"] }] } }]
    });
    std::fs::write(
        root.join(".fentaris/config.json"),
        serde_json::to_string_pretty(&config).unwrap(),
    )
    .unwrap();
    let s = serve_in(dir, &[("ALICE_KEY", KEY)]);
    let before = std::fs::read(root.join(".fentaris/config.json")).unwrap();
    let url = s.url("/mcp");
    let sid = raw_session(&url, KEY);
    let write = |path: PathBuf| {
        let r = raw_call(
            &url,
            KEY,
            &sid,
            "tools/call",
            json!({ "name": "fs__write_file", "arguments": { "path": path, "content": "from the upstream" } }),
        );
        let text = r["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default();
        eprintln!("write {}: {text}", path.display());
        (
            r["result"]["isError"] != true && r.get("error").is_none(),
            text.to_string(),
        )
    };
    assert!(
        write(root.join("new.md")).0,
        "a new file in the project folder"
    );
    assert!(
        write(root.join("docs/new.md")).0,
        "a new file in a subfolder"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("docs/new.md")).unwrap(),
        "from the upstream"
    );
    // Refused by the kernel (the server itself allows the whole project folder).
    for f in [".fentaris/config.json", ".fentaris/planted.json"] {
        let (ok, text) = write(root.join(f));
        assert!(!ok && text.contains("EROFS"), "{f}: {text}");
    }
    assert_eq!(
        std::fs::read(root.join(".fentaris/config.json")).unwrap(),
        before
    );
    assert!(!root.join(".fentaris/planted.json").exists());
}

/// An upstream whose `cwd` is the config's folder (`"."`, which the sandbox hides) is
/// refused with a message that says what to do, rather than started where it could see
/// under the cover.
#[test]
fn an_upstream_working_inside_the_hidden_folder_is_refused_with_a_message() {
    if !ready() {
        return;
    }
    let config = json!({
        "servers": [{ "name": "env", "transport": { "stdio": {
            "command": python(), "args": [env_server()], "cwd": "." } } }],
        "groups": [{ "id": "g", "users": ["alice"], "policy": { "rules": [{ "mcp": "env", "allow": ["echo"] }] } }]
    });
    let s = spawn_serve(project(&config), &[]);
    let start = Instant::now();
    while !s.log().contains("which the stdio child sandbox hides") {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no refusal in the log:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        s.log()
            .contains("help: keep upstream programs and their `cwd` outside it")
    );
}
