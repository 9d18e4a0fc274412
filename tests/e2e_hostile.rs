//! End to end: hostile input against the HTTP endpoint. Each case gets its expected status
//! or JSON-RPC error, and the recording upstream shows that none of it reached the upstream.
//! Also the limits: in-flight requests per user, sessions, failed authentications.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;

const ALICE_KEY: &str = "alice-hostile-key-0123456789ab";
const BOB_KEY: &str = "bob-hostile-key-0123456789abcd";

fn post(url: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut req = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    })
}

fn code(body: &str) -> i64 {
    serde_json::from_str::<Value>(body).map_or(0, |v| v["error"]["code"].as_i64().unwrap_or(0))
}

#[test]
fn hostile_requests_are_refused_before_the_upstream() {
    if !ready() {
        return;
    }
    let record = tempfile::NamedTempFile::new().unwrap();
    let config = json!({
        "limits": { "maxInflightPerUser": 2, "maxSessions": 4, "authFailuresPerMinute": 5 },
        "servers": [
            { "name": "env", "transport": { "stdio": { "command": python(), "args": [env_server(), record.path()] } } },
            { "name": "other", "transport": { "stdio": { "command": python(), "args": [env_server()] } } }
        ],
        "groups": [
            { "id": "a", "users": [{ "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] }],
              "policy": { "rules": [{ "mcp": "env", "allow": ["echo", "sleep"] }] } },
            { "id": "b", "users": [{ "id": "bob", "apiKeys": [{ "env": "BOB_KEY" }] }],
              "policy": { "rules": [{ "mcp": "other", "allow": "echo" }] } }
        ]
    });
    let s = serve(&config, &[("ALICE_KEY", ALICE_KEY), ("BOB_KEY", BOB_KEY)]);
    let url = s.url("/mcp");
    let sid = raw_session(&url, ALICE_KEY);
    let auth = [
        ("x-fentaris-api-key", ALICE_KEY),
        ("mcp-session-id", sid.as_str()),
    ];
    let call = |name: &str| {
        json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": { "name": name, "arguments": { "message": "x" } }})
            .to_string()
    };

    // Malformed messages.
    let (st, b) = post(&url, &auth, "{not json");
    assert_eq!((st, code(&b)), (400, -32700), "{b}");
    let (st, b) = post(&url, &auth, &format!("[{}]", call("env__echo")));
    assert_eq!((st, code(&b)), (400, -32600), "{b}");
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"env__echo","arguments":{{"message":"{}"}}}}}}"#,
        "a".repeat(10 << 20)
    );
    let (st, _) = post(&url, &auth, &big);
    assert_eq!(st, 413);
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"env__echo","arguments":{{"message":{}1{}}}}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let (st, b) = post(&url, &auth, &deep);
    assert_eq!((st, code(&b)), (400, -32600), "{b}");
    assert!(b.contains("maxJsonDepth"), "{b}");
    let (st, b) = post(
        &url,
        &auth,
        r#"{"jsonrpc":"2.0","id":1,"method":"evil/method","params":{}}"#,
    );
    assert_eq!((st, code(&b)), (200, -32601), "{b}");

    // Names: another server's prefix, case, look-alikes, separators.
    for name in [
        "other__echo",
        "env__Echo",
        "env__ech\u{043e}",
        "ENV__echo",
        "env__echo\u{200b}",
        "env____echo",
        "env",
    ] {
        let (st, b) = post(&url, &auth, &call(name));
        assert_eq!((st, code(&b)), (200, -32602), "{name}: {b}");
        assert!(b.contains("Unknown tool"), "{name}: {b}");
    }
    // Resource URIs with dot segments or encoded tricks.
    for uri in [
        "file:///srv/../etc/passwd",
        "file:///srv/%2e%2e/etc/passwd",
        "file:///srv%2fetc",
    ] {
        let body = json!({"jsonrpc": "2.0", "id": 3, "method": "resources/read", "params": { "uri": uri }}).to_string();
        let (st, b) = post(&url, &auth, &body);
        assert_eq!(st, 200, "{uri}: {b}");
        assert!(code(&b) != 0, "{uri}: {b}");
    }

    // Transport-level checks.
    let (st, _) = post(
        &url,
        &[auth[0], auth[1], ("mcp-protocol-version", "1999-01-01")],
        &call("env__echo"),
    );
    assert_eq!(st, 400);
    let (st, _) = post(
        &url,
        &[auth[0], auth[1], ("origin", "https://evil.example")],
        &call("env__echo"),
    );
    assert_eq!(st, 403);
    let (st, _) = post(
        &url,
        &[auth[0], auth[1], ("host", "evil.example")],
        &call("env__echo"),
    );
    assert_eq!(st, 403);
    // Bob presenting Alice's session id gets what an unknown id gets.
    let (st, _) = post(
        &url,
        &[("x-fentaris-api-key", BOB_KEY), ("mcp-session-id", &sid)],
        &call("other__echo"),
    );
    assert_eq!(st, 404);
    // Identity headers are ignored when trusted headers are off: still Alice (so denied).
    let (st, b) = post(
        &url,
        &[
            auth[0],
            auth[1],
            ("x-fentaris-user", "bob"),
            ("x-forwarded-user", "bob"),
        ],
        &call("other__echo"),
    );
    assert_eq!((st, code(&b)), (200, -32602), "{b}");

    // In-flight limit per user: the third concurrent call gets 429.
    let slow = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": { "name": "env__sleep", "arguments": { "seconds": 1.5 } }}).to_string();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (u, b, s) = (url.clone(), slow.clone(), sid.clone());
            std::thread::spawn(move || {
                post(
                    &u,
                    &[("x-fentaris-api-key", ALICE_KEY), ("mcp-session-id", &s)],
                    &b,
                )
                .0
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let (st, b) = post(&url, &auth, &call("env__echo"));
    assert_eq!(st, 429, "{b}");
    for w in workers {
        assert_eq!(w.join().unwrap(), 200);
    }
    // Bob is not affected by Alice's limit.
    let bob_sid = raw_session(&url, BOB_KEY);
    let r = raw_call(
        &url,
        BOB_KEY,
        &bob_sid,
        "tools/call",
        json!({ "name": "other__echo", "arguments": { "message": "ok" } }),
    );
    assert!(r.get("result").is_some(), "{r}");

    // Session limit (4): two open, two more, then 503.
    raw_session(&url, ALICE_KEY);
    raw_session(&url, ALICE_KEY);
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}).to_string();
    let (st, b) = post(&url, &[("x-fentaris-api-key", ALICE_KEY)], &init);
    assert_eq!(st, 503, "{b}");

    // Failed authentications: after 5 in a minute, even a valid key gets 429 from there.
    for _ in 0..5 {
        let (st, _) = post(
            &url,
            &[("x-fentaris-api-key", "wrong-key-wrong-key-wrong")],
            &init,
        );
        assert_eq!(st, 401);
    }
    let (st, b) = post(&url, &auth, &call("env__echo"));
    assert_eq!(st, 429, "{b}");

    // The upstream saw only the allowed sleeps: nothing hostile reached it.
    let seen: Vec<Value> = std::fs::read_to_string(record.path())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let calls: Vec<&str> = seen
        .iter()
        .filter(|m| m["method"] == "tools/call")
        .map(|m| m["params"]["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(calls, ["sleep", "sleep"], "{seen:?}");
    assert!(
        seen.iter().all(|m| [
            "initialize",
            "notifications/initialized",
            "tools/list",
            "prompts/list",
            "tools/call"
        ]
        .contains(&m["method"].as_str().unwrap_or("response"))
            || m.get("method").is_none()),
        "{seen:?}"
    );
}
