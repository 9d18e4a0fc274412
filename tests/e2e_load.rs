//! End to end: load and leaks. 200 concurrent sessions × 50 calls through Fentaris to the
//! fast test upstream: zero errors, every answer reaches the session that asked (each call
//! echoes a message unique to its session and call). Then 10 rounds of opening, using and
//! closing 200 sessions: resident memory grows by less than [`MAX_GROWTH_KB`] after the
//! first round.
//!
//! Sizes come from LOAD_SESSIONS / LOAD_CALLS / LOAD_ROUNDS; a soak run by hand:
//! `LOAD_SESSIONS=500 LOAD_CALLS=2000 LOAD_ROUNDS=50 cargo test --release --test e2e_load -- --nocapture`.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use support::*;

const KEY: &str = "alice-load-key-0123456789abcdef";
/// Allowed RSS growth between round 1 and the last round of open/close.
const MAX_GROWTH_KB: u64 = 4096;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn rpc(
    client: &reqwest::Client,
    url: &str,
    sid: Option<&str>,
    body: Value,
) -> Result<(Option<String>, Value), String> {
    let mut req = client
        .post(url)
        .header("x-fentaris-api-key", KEY)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(s) = sid {
        req = req.header("mcp-session-id", s);
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = resp.text().await.map_err(|e| e.to_string())?;
    Ok((sid, rpc_body(&text)))
}

async fn session(client: &reqwest::Client, url: &str) -> Result<String, String> {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "load", "version": "1"}}});
    let (sid, _) = rpc(client, url, None, init).await?;
    sid.ok_or_else(|| "no session id".to_string())
}

#[test]
fn concurrent_sessions_get_their_own_answers_and_memory_stays_bounded() {
    if !ready() {
        return;
    }
    let (sessions, calls, rounds) = (
        env_usize("LOAD_SESSIONS", 200),
        env_usize("LOAD_CALLS", 50),
        env_usize("LOAD_ROUNDS", 10),
    );
    let config = json!({
        "limits": { "maxInflightPerUser": sessions * 2, "maxSessions": sessions * 4 },
        "servers": [{ "name": "up", "transport": { "stdio": { "command": test_upstream(), "args": ["--stdio"] } } }],
        "groups": [{ "id": "g", "users": [{ "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] }],
            "policy": { "rules": [{ "mcp": "up", "allow": "echo" }] } }]
    });
    let s = serve(&config, &[("ALICE_KEY", KEY)]);
    let url = s.url("/mcp");
    let pid = s.child.id();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(sessions)
        .build()
        .unwrap();

    // Load: every session checks that each answer is its own.
    let errors = Arc::new(AtomicUsize::new(0));
    let start = std::time::Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..sessions)
            .map(|i| {
                let (client, url, errors) = (client.clone(), url.clone(), errors.clone());
                tokio::spawn(async move {
                    let sid = match session(&client, &url).await {
                        Ok(s) => s,
                        Err(e) => {
                            eprintln!("session {i}: {e}");
                            errors.fetch_add(calls, Ordering::Relaxed);
                            return;
                        }
                    };
                    for j in 0..calls {
                        let msg = format!("s{i}-c{j}");
                        let body = json!({"jsonrpc": "2.0", "id": j + 1, "method": "tools/call",
                            "params": { "name": "up__echo", "arguments": { "message": msg } }});
                        match rpc(&client, &url, Some(&sid), body).await {
                            Ok((_, v))
                                if v["id"] == json!(j + 1)
                                    && v["result"]["content"][0]["text"] == json!(msg) => {}
                            Ok((_, v)) => {
                                eprintln!("session {i} call {j}: {v}");
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                eprintln!("session {i} call {j}: {e}");
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
    let took = start.elapsed();
    assert_eq!(errors.load(Ordering::Relaxed), 0);
    eprintln!(
        "load: {sessions} sessions x {calls} calls in {:.2}s ({:.0} calls/s); fentaris peak RSS {} kB",
        took.as_secs_f64(),
        (sessions * calls) as f64 / took.as_secs_f64(),
        status_kb(pid, "VmHWM:")
    );

    // Leaks: open, use and close `sessions` sessions, `rounds` times.
    let mut after_first = 0;
    for round in 0..rounds {
        rt.block_on(async {
            let tasks: Vec<_> = (0..sessions)
                .map(|i| {
                    let (client, url) = (client.clone(), url.clone());
                    tokio::spawn(async move {
                        let sid = session(&client, &url).await.expect("session");
                        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                            "params": { "name": "up__echo", "arguments": { "message": format!("r{i}") } }});
                        rpc(&client, &url, Some(&sid), body).await.expect("call");
                        client
                            .delete(&url)
                            .header("x-fentaris-api-key", KEY)
                            .header("mcp-session-id", &sid)
                            .send()
                            .await
                            .expect("delete");
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
        let rss = status_kb(pid, "VmRSS:");
        eprintln!("round {}: fentaris RSS {rss} kB", round + 1);
        if round == 0 {
            after_first = rss;
        }
        if round + 1 == rounds {
            assert!(
                rss <= after_first + MAX_GROWTH_KB,
                "RSS grew from {after_first} kB to {rss} kB over {rounds} rounds"
            );
        }
    }
}
