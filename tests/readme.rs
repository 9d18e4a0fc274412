//! README.md's checked examples run as written, in a copy of the repository's example folder.
//!
//! A ```sh block is checked when the line before it is `<!-- check -->`. Each line runs with
//! `bash` in a temporary folder holding a copy of `.fentaris.example/` (the "clone"), with the
//! binary under test first on PATH as `fentaris`. The rules:
//!
//! - `cargo install …` is skipped: the binary under test stands in for the installed one.
//! - `cargo run -q -- ARGS` runs as `fentaris ARGS`.
//! - `export NAME=…` lines apply to the following lines of the block.
//! - A line whose comment says `(exit N)` must exit with N; any other line must exit 0.
//! - `fentaris serve …` starts in the background; the test waits until `/readyz` answers
//!   200 (the copied config's `listen` and `adminListen` are moved to free ports first),
//!   runs the remaining checked blocks, then stops it.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{free_port, http, ready, repo};

/// The checked blocks of README.md, each a list of lines.
fn checked_blocks(readme: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut lines = readme.lines().peekable();
    while let Some(l) = lines.next() {
        if l.trim() != "<!-- check -->" {
            continue;
        }
        let fence = lines.next().unwrap_or("");
        assert_eq!(
            fence.trim(),
            "```sh",
            "`<!-- check -->` must precede a ```sh block"
        );
        let mut block = Vec::new();
        for b in lines.by_ref() {
            if b.trim_start().starts_with("```") {
                break;
            }
            block.push(b.to_string());
        }
        out.push(block);
    }
    out
}

/// Copy a folder recursively.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

fn expected_exit(line: &str) -> i32 {
    line.split_once('#')
        .and_then(|(_, c)| c.split_once("(exit "))
        .and_then(|(_, r)| r.split(')').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        // The shell was started in its own process group: stop the whole group.
        // bash's builtin `kill` with `--`: a negative pid is a process group (procps' `kill`
        // reads `-PID` as an option and, as root, may signal every process).
        let _ = Command::new("bash")
            .args(["-c", &format!("kill -TERM -- -{}", self.0.id())])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn readme_checked_blocks_run() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let blocks = checked_blocks(&readme);
    assert!(!blocks.is_empty(), "README.md has no checked block");
    // The quick start starts upstreams from npm with npx.
    if !ready() {
        return;
    }
    let clone = tempfile::tempdir().unwrap();
    let root = clone.path();
    copy_dir(
        &repo().join(".fentaris.example"),
        &root.join(".fentaris.example"),
    );
    let cfg_path = root.join(".fentaris.example/config.json");
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    let admin = free_port();
    cfg["listen"] = json!(format!("127.0.0.1:{}", free_port()));
    cfg["adminListen"] = json!(format!("127.0.0.1:{admin}"));
    std::fs::write(&cfg_path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_fentaris"), bin.join("fentaris")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let xdg: PathBuf = root.join("xdg");

    let mut background: Vec<Background> = Vec::new();
    for block in &blocks {
        let mut exports = String::new();
        for raw in block {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with("cargo install") {
                continue;
            }
            let line = line.replace("cargo run -q -- ", "fentaris ");
            if line.starts_with("export ") {
                exports.push_str(&line);
                exports.push('\n');
                continue;
            }
            let script = format!("{exports}{line}");
            let mut cmd = Command::new("bash");
            cmd.args(["-c", &script])
                .current_dir(root)
                .env("PATH", &path)
                .env("XDG_CONFIG_HOME", &xdg)
                .env("NO_COLOR", "1")
                .env_remove("FENTARIS_CONFIG")
                .env_remove("FENTARIS_VAULT_KEY")
                .env_remove("FENTARIS_VAULT_KEY_FILE");
            if line.contains("fentaris serve") {
                use std::os::unix::process::CommandExt;
                let log = std::fs::File::create(root.join("serve.log")).unwrap();
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log)
                    .process_group(0);
                let mut child = cmd.spawn().unwrap();
                let start = Instant::now();
                let url = format!("http://127.0.0.1:{admin}/readyz");
                loop {
                    if let Ok(Some(st)) = child.try_wait() {
                        panic!(
                            "`{line}` exited early ({st}):\n{}",
                            std::fs::read_to_string(root.join("serve.log")).unwrap_or_default()
                        );
                    }
                    if let Ok((200, _, _)) = http("GET", &url, &[], None) {
                        break;
                    }
                    assert!(
                        start.elapsed() < Duration::from_secs(120),
                        "`{line}` did not become ready:\n{}",
                        std::fs::read_to_string(root.join("serve.log")).unwrap_or_default()
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
                background.push(Background(child));
                continue;
            }
            let out = cmd.stdin(Stdio::null()).output().unwrap();
            assert_eq!(
                out.status.code(),
                Some(expected_exit(&line)),
                "README line `{line}`\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    drop(background);
}

#[test]
fn exit_markers_parse() {
    assert_eq!(expected_exit("fentaris x   # DENY (exit 1)"), 1);
    assert_eq!(expected_exit("fentaris x"), 0);
    assert_eq!(
        checked_blocks("a\n<!-- check -->\n```sh\none\ntwo\n```\n```sh\nno\n```\n"),
        vec![vec!["one".to_string(), "two".to_string()]]
    );
}
