//! End to end: `fentaris serve` in front of real MCP servers (server-everything from npm, a
//! small Python stdio server, an in-test HTTP upstream), driven by the official Python SDK
//! client and by raw HTTP.
//!
//! Needs `node`, `npm ci --prefix tests/e2e` and `pip install mcp==2.3.0`; `.ci/run` installs
//! them. Without them each test prints why it is skipped, unless E2E_REQUIRED is set (CI),
//! in which case a missing prerequisite fails the test.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

#[test]
fn policy_is_enforced_per_user_in_both_protocol_eras() {
    if !ready() {
        return;
    }
    let s = serve(
        &two_user_config(),
        &[("ALICE_KEY", ALICE), ("BOB_KEY", BOB)],
    );
    let steps = json!([
        {"op": "protocol"},
        {"op": "list_tools"},
        {"op": "call_tool", "name": "everything__echo", "args": {"message": "hi"}},
        {"op": "call_tool", "name": "everything__get-env", "args": {}},
        {"op": "call_tool", "name": "everything__no-such-tool", "args": {}},
        {"op": "call_tool", "name": "env__env", "args": {}},
        {"op": "call_tool", "name": "everything__trigger-long-running-operation", "args": {"duration": 1, "steps": 4}, "progress": true},
        {"op": "get_prompt", "name": "everything__simple-prompt"},
        {"op": "get_prompt", "name": "everything__args-prompt", "args": {"city": "x"}},
        {"op": "complete_prompt", "name": "everything__completable-prompt", "arg": "department", "value": "E"},
        {"op": "list_prompts"},
        {"op": "list_resources"},
        {"op": "read_resource", "uri": "demo://resource/static/document/architecture.md"},
        {"op": "read_resource", "uri": "demo://resource/static/document/startup.md"},
        {"op": "read_resource", "uri": "demo://resource/static/document/../document/startup.md"}
    ]);
    for (mode, version) in [("legacy", "2025-11-25"), ("auto", "2026-07-28")] {
        let r = py(&s.url("/mcp"), ALICE, mode, &steps, None);
        assert_eq!(r[0]["value"], version, "{mode}");
        let tools = names(ok(&r[1]), "tools", "name");
        assert_eq!(
            tools,
            [
                "everything__echo",
                "everything__get-sum",
                "everything__trigger-long-running-operation"
            ],
            "{mode}: list shows exactly what may be called"
        );
        assert_eq!(ok(&r[2])["content"][0]["text"], "Echo: hi");
        // Denied, unknown, and another group's server: the same error.
        assert_eq!(
            err(&r[3]),
            (-32602, "Unknown tool: everything__get-env".into())
        );
        assert_eq!(
            err(&r[4]),
            (-32602, "Unknown tool: everything__no-such-tool".into())
        );
        assert_eq!(err(&r[5]), (-32602, "Unknown tool: env__env".into()));
        // Progress arrives in order, before the result.
        assert_eq!(ok(&r[6])["progress"], json!([1.0, 2.0, 3.0, 4.0]), "{mode}");
        assert!(ok(&r[7])["messages"].is_array());
        assert_eq!(err(&r[8]).0, -32602);
        assert_eq!(ok(&r[9])["completion"]["values"], json!(["Engineering"]));
        assert_eq!(
            names(ok(&r[10]), "prompts", "name"),
            ["everything__simple-prompt"]
        );
        let res = names(ok(&r[11]), "resources", "uri");
        assert!(
            res.contains(&"demo://resource/static/document/architecture.md".to_string()),
            "{res:?}"
        );
        assert!(
            !res.contains(&"demo://resource/static/document/startup.md".to_string()),
            "denied read is not listed"
        );
        assert!(ok(&r[12])["contents"].is_array());
        assert_eq!(err(&r[13]).0, -32002, "denied read");
        assert_eq!(
            err(&r[14]).0,
            -32002,
            "dot segments are resolved before policy: still denied"
        );
    }
    // bob sees only his group's server.
    let r = py(
        &s.url("/mcp"),
        BOB,
        "legacy",
        &json!([{"op": "list_tools"}, {"op": "call_tool", "name": "everything__echo", "args": {"message": "x"}}]),
        None,
    );
    assert_eq!(
        names(ok(&r[0]), "tools", "name"),
        [
            "env__env",
            "env__sleep",
            "env__pid",
            "env__withdraw",
            "env__change",
            "env__read",
            "env__echo"
        ]
    );
    assert_eq!(err(&r[1]).0, -32602);
}

#[test]
fn per_server_endpoint_is_faithful_to_the_upstream() {
    if !ready() {
        return;
    }
    let config = json!({
        "servers": [{ "name": "everything", "transport": { "stdio": { "command": "node", "args": [everything_js()] } } }],
        "groups": [{ "id": "all", "users": [{ "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] }],
            "policy": { "rules": [{ "mcp": "everything", "allowCapability": { "operation": "*", "targetKind": "tool" } },
                { "mcp": "everything", "allowCapability": { "operation": "*", "targetKind": "prompt" } },
                { "mcp": "everything", "allowCapability": { "operation": "*", "targetKind": "resource" } },
                { "mcp": "everything", "allowCapability": { "operation": "*", "targetKind": "resourceTemplate" } }] } }]
    });
    let s = serve(&config, &[("ALICE_KEY", ALICE)]);
    let steps = json!([{"op": "list_tools"}, {"op": "list_prompts"}, {"op": "list_resources"}, {"op": "list_templates"},
        {"op": "call_tool", "name": "get-structured-content", "args": {"location": "New York"}},
        {"op": "read_resource", "uri": "demo://resource/static/document/features.md"}]);
    // Neither client offers sampling, elicitation or roots (the policy allows none, so
    // Fentaris does not offer them upstream), so the upstream registers the same tools.
    let argv = serde_json::to_string(&json!(["node", everything_js()])).unwrap();
    let direct = py(&argv, "", "stdio", &steps, None);
    let proxied = py(&s.url("/mcp/everything"), ALICE, "legacy", &steps, None);
    for (i, (d, p)) in direct.iter().zip(&proxied).enumerate() {
        let (mut d, mut p) = (ok(d).clone(), ok(p).clone());
        for v in [&mut d, &mut p] {
            if let Some(o) = v.as_object_mut() {
                o.remove("resultType");
            }
        }
        assert_eq!(
            d, p,
            "step {i}: proxied result differs from the upstream's own"
        );
    }
    // Unknown fields the SDK's models do not keep are checked at the raw level below.
    let (status, hs, _) = http("POST", &s.url("/mcp/everything"), &[("x-fentaris-api-key", ALICE)], Some(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}))).unwrap();
    assert_eq!(status, 200);
    let sid = hs["mcp-session-id"].clone();
    let (_, _, body) = http(
        "POST",
        &s.url("/mcp/everything"),
        &[("x-fentaris-api-key", ALICE), ("mcp-session-id", &sid)],
        Some(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})),
    )
    .unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    let tool = v["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "simulate-research-query")
        .cloned()
        .unwrap();
    assert!(
        tool.get("execution").is_some(),
        "tool `execution` must pass through: {tool}"
    );
}

#[test]
fn authentication_sessions_hosts_and_visibility() {
    if !ready() {
        return;
    }
    let s = serve(
        &two_user_config(),
        &[("ALICE_KEY", ALICE), ("BOB_KEY", BOB)],
    );
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let url = s.url("/mcp");
    // No key, a wrong key, and two different keys: 401 with a plain challenge.
    for headers in [
        vec![],
        vec![("x-fentaris-api-key", "wrong-key-0123456789abcdef")],
        vec![
            ("x-fentaris-api-key", ALICE),
            ("authorization", "Bearer bob-key-0123456789abcdefgh"),
        ],
    ] {
        let (status, hs, _) = http("POST", &url, &headers, Some(&init)).unwrap();
        assert_eq!(status, 401, "{headers:?}");
        assert_eq!(hs["www-authenticate"], "Bearer realm=\"fentaris\"");
        assert!(!hs["www-authenticate"].contains("resource_metadata"));
    }
    for method in ["GET", "DELETE"] {
        assert_eq!(http(method, &url, &[], None).unwrap().0, 401, "{method}");
    }
    // Bearer alone works.
    let (status, hs, _) = http(
        "POST",
        &url,
        &[("authorization", &format!("Bearer {ALICE}"))],
        Some(&init),
    )
    .unwrap();
    assert_eq!(status, 200);
    let sid = hs["mcp-session-id"].clone();
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    assert_eq!(
        http(
            "POST",
            &url,
            &[("x-fentaris-api-key", ALICE), ("mcp-session-id", &sid)],
            Some(&list)
        )
        .unwrap()
        .0,
        200
    );
    // Another subject presenting alice's session id: 404, like an unknown session.
    let hijack = http(
        "POST",
        &url,
        &[("x-fentaris-api-key", BOB), ("mcp-session-id", &sid)],
        Some(&list),
    )
    .unwrap();
    let unknown = http(
        "POST",
        &url,
        &[
            ("x-fentaris-api-key", BOB),
            ("mcp-session-id", "no-such-session"),
        ],
        Some(&list),
    )
    .unwrap();
    assert_eq!((hijack.0, &hijack.2), (404, &unknown.2));
    // A server the subject cannot see answers exactly like one that does not exist.
    let hidden = http(
        "POST",
        &s.url("/mcp/env"),
        &[("x-fentaris-api-key", ALICE)],
        Some(&init),
    )
    .unwrap();
    let missing = http(
        "POST",
        &s.url("/mcp/nonexistent"),
        &[("x-fentaris-api-key", ALICE)],
        Some(&init),
    )
    .unwrap();
    assert_eq!((hidden.0, hidden.2.clone()), (404, missing.2.clone()));
    assert_eq!(missing.0, 404);
    // Paths the listener leaves to the router (an escaped name, a nested one, an empty one)
    // answer the same: an escape never reaches a hidden server.
    for path in ["/mcp/e%6Ev", "/mcp/%65nv", "/mcp/env/x", "/mcp/"] {
        let r = http(
            "POST",
            &s.url(path),
            &[("x-fentaris-api-key", ALICE)],
            Some(&init),
        )
        .unwrap();
        assert_eq!((r.0, &r.2), (404, &missing.2), "{path}");
    }
    // DNS rebinding: foreign Host or Origin is refused.
    assert_eq!(
        http(
            "POST",
            &url,
            &[("x-fentaris-api-key", ALICE), ("host", "evil.example")],
            Some(&init)
        )
        .unwrap()
        .0,
        403
    );
    assert_eq!(
        http(
            "POST",
            &url,
            &[
                ("x-fentaris-api-key", ALICE),
                ("origin", "http://evil.example")
            ],
            Some(&init)
        )
        .unwrap()
        .0,
        403
    );
    // Health needs no key and says nothing; readiness and metrics are on the admin port.
    // (Status and body: the headers of two responses differ in `date` across a second.)
    let (st, _, body) = http("GET", &s.url("/healthz"), &[], None).unwrap();
    assert_eq!((st, body.as_str()), (200, "ok"));
    assert_eq!(http("GET", &s.url("/metrics"), &[], None).unwrap().0, 404);
    // The admin port serves only the admin endpoints: no MCP there, even with a valid key.
    for path in ["/mcp", "/mcp/echo", "/mcp/env"] {
        let (st, _, body) = http(
            "POST",
            &format!("http://127.0.0.1:{}{path}", s.admin),
            &[("x-fentaris-api-key", ALICE)],
            Some(&init),
        )
        .unwrap();
        assert_eq!(st, 404, "{path}: {body}");
    }
    // Text a client chooses does not become a metric label: a server it cannot see, a long
    // or unusual method name.
    let junk = "q".repeat(100);
    for (method, params) in [
        (
            "tools/call",
            json!({ "name": "nosuchserver__x", "arguments": {} }),
        ),
        (junk.as_str(), json!({})),
        ("has space", json!({})),
    ] {
        let (st, _, _) = http(
            "POST",
            &url,
            &[("x-fentaris-api-key", ALICE), ("mcp-session-id", &sid)],
            Some(&json!({ "jsonrpc": "2.0", "id": 77, "method": method, "params": params })),
        )
        .unwrap();
        assert_eq!(st, 200, "{method}");
    }
    let (st, _, metrics) = http(
        "GET",
        &format!("http://127.0.0.1:{}/metrics", s.admin),
        &[],
        None,
    )
    .unwrap();
    assert_eq!(st, 200);
    assert!(
        !metrics.contains("nosuchserver")
            && !metrics.contains(&junk[..20])
            && !metrics.contains("has space"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fentaris_decisions_total{server=\"(unknown)\",operation=\"tool:call\",decision=\"deny\"} 1")
            && metrics.contains("fentaris_requests_total{server=\"*\",method=\"(other)\",outcome=\"error\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fentaris_auth_failures_total"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("fentaris_requests_total{server=\"*\",method=\"tools/list\",outcome=\"ok\"}"),
        "{metrics}"
    );
    // Batches and junk.
    assert_eq!(
        http(
            "POST",
            &url,
            &[("x-fentaris-api-key", ALICE), ("mcp-session-id", &sid)],
            Some(&json!([list]))
        )
        .unwrap()
        .0,
        400
    );
    let (st, _, body) = http(
        "POST",
        &url,
        &[("x-fentaris-api-key", ALICE), ("mcp-session-id", &sid)],
        Some(&json!({"id": 3})),
    )
    .unwrap();
    assert_eq!(st, 400, "{body}");
    // DELETE ends the session.
    assert_eq!(
        http(
            "DELETE",
            &url,
            &[("x-fentaris-api-key", ALICE), ("mcp-session-id", &sid)],
            None
        )
        .unwrap()
        .0,
        200
    );
    assert_eq!(
        http(
            "POST",
            &url,
            &[("x-fentaris-api-key", ALICE), ("mcp-session-id", &sid)],
            Some(&list)
        )
        .unwrap()
        .0,
        404
    );
}

#[test]
fn vault_keys_revoked_and_expired_are_refused() {
    if !ready() {
        return;
    }
    let config = json!({
        "servers": [{ "name": "env", "transport": { "stdio": { "command": python(), "args": [env_server()] } } }],
        "groups": [{ "id": "g", "users": ["carol"], "policy": { "rules": [{ "mcp": "env", "allow": "echo" }] } }]
    });
    let dir = project(&config);
    let add = |extra: &[&str], key: &str| {
        let mut args = vec!["auth", "api-key", "add", "carol", "--value-stdin"];
        args.extend_from_slice(extra);
        fentaris_with_stdin(dir.path(), &args, key);
    };
    add(&[], "carol-good-key-0123456789");
    add(&[], "carol-revoked-key-0123456789");
    add(&["--expires-in", "1s"], "carol-expiring-key-0123456789");
    let list = fentaris_cmd(dir.path())
        .args(["auth", "api-key", "list", "--format", "json"])
        .output()
        .unwrap();
    let keys: Value = serde_json::from_slice(&list.stdout).unwrap();
    let revoked_id = keys[1]["keyId"].as_str().unwrap().to_string();
    assert!(
        fentaris_cmd(dir.path())
            .args(["auth", "api-key", "revoke", "carol", &revoked_id])
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(Duration::from_millis(1200));
    let s = serve_in(dir, &[]);
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let url = s.url("/mcp");
    assert_eq!(
        http(
            "POST",
            &url,
            &[("x-fentaris-api-key", "carol-good-key-0123456789")],
            Some(&init)
        )
        .unwrap()
        .0,
        200
    );
    assert_eq!(
        http(
            "POST",
            &url,
            &[("x-fentaris-api-key", "carol-revoked-key-0123456789")],
            Some(&init)
        )
        .unwrap()
        .0,
        401
    );
    assert_eq!(
        http(
            "POST",
            &url,
            &[("x-fentaris-api-key", "carol-expiring-key-0123456789")],
            Some(&init)
        )
        .unwrap()
        .0,
        401
    );
}

#[test]
fn stdio_upstream_gets_a_scrubbed_environment_and_children_are_reaped() {
    if !ready() {
        return;
    }
    let record = tempfile::NamedTempFile::new().unwrap();
    let marker = record.path().display().to_string();
    let config = json!({
        "servers": [{ "name": "env", "transport": { "stdio": { "command": python(), "args": [env_server(), marker],
            "env": { "DECLARED": "yes" }, "inheritEnv": ["INHERITED_OK"] } } }],
        "groups": [{ "id": "g", "users": [{ "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] }],
            "policy": { "rules": [{ "mcp": "env", "allow": "*" }] } }]
    });
    let mut s = serve(
        &config,
        &[
            ("ALICE_KEY", ALICE),
            ("SECRET_CANARY", "canary-outer-env-123"),
            ("INHERITED_OK", "passed"),
            ("FENTARIS_PASSPHRASE", "canary-passphrase-456"),
        ],
    );
    let r = py(
        &s.url("/mcp"),
        ALICE,
        "legacy",
        &json!([{"op": "call_tool", "name": "env__env", "args": {}}]),
        None,
    );
    let env: HashMap<String, String> =
        serde_json::from_str(ok(&r[0])["content"][0]["text"].as_str().unwrap()).unwrap();
    let allowed = [
        "PATH",
        "HOME",
        "LANG",
        "LC_ALL",
        "LC_CTYPE",
        "TMPDIR",
        "TZ",
        "USER",
        "LOGNAME",
        "DECLARED",
        "INHERITED_OK",
    ];
    for k in env.keys() {
        assert!(
            allowed.contains(&k.as_str()),
            "unexpected variable {k} in the child's environment"
        );
    }
    assert_eq!(env["DECLARED"], "yes");
    assert_eq!(env["INHERITED_OK"], "passed");
    for v in env.values() {
        assert!(!v.contains("canary"), "a canary reached the child");
    }
    assert!(!env.values().any(|v| v == ALICE));
    // Shutdown reaps the child.
    let st = s.stop();
    assert!(st.success(), "{st}");
    std::thread::sleep(Duration::from_millis(300));
    let alive = std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(&marker))
            .unwrap_or(false)
    });
    assert!(!alive, "the upstream child outlived fentaris");
}

#[test]
fn cancellation_reaches_the_upstream() {
    if !ready() {
        return;
    }
    let record = tempfile::NamedTempFile::new().unwrap();
    let config = json!({
        "servers": [{ "name": "env", "transport": { "stdio": { "command": python(), "args": [env_server(), record.path()] } } }],
        "groups": [{ "id": "g", "users": [{ "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] }],
            "policy": { "rules": [{ "mcp": "env", "allow": "*" }] } }]
    });
    let s = serve(&config, &[("ALICE_KEY", ALICE)]);
    let url = s.url("/mcp/env");
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let (_, hs, _) = http("POST", &url, &[("x-fentaris-api-key", ALICE)], Some(&init)).unwrap();
    let sid = hs["mcp-session-id"].clone();
    let (u2, sid2) = (url.clone(), sid.clone());
    let call = std::thread::spawn(move || {
        http(
            "POST",
            &u2,
            &[("x-fentaris-api-key", ALICE), ("mcp-session-id", &sid2)],
            Some(
                &json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "sleep", "arguments": {"seconds": 20}}}),
            ),
        )
    });
    std::thread::sleep(Duration::from_millis(800));
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7, "reason": "test"}});
    assert_eq!(
        http(
            "POST",
            &url,
            &[("x-fentaris-api-key", ALICE), ("mcp-session-id", &sid)],
            Some(&cancel)
        )
        .unwrap()
        .0,
        202
    );
    let (status, _, body) = call.join().unwrap().unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains("-32800"),
        "the client's request ends as cancelled: {body}"
    );
    let start = Instant::now();
    loop {
        let seen = std::fs::read_to_string(record.path()).unwrap();
        if seen.lines().any(|l| l.contains("notifications/cancelled")) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the upstream never saw the cancellation: {seen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn http_upstream_receives_configured_credentials_and_no_client_header() {
    if !ready() {
        return;
    }
    let seen: Arc<Mutex<Vec<HashMap<String, String>>>> = Arc::default();
    let port = free_port();
    let seen2 = seen.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.spawn(async move {
        use axum::routing::post;
        let app = axum::Router::new().route(
            "/mcp",
            post(move |headers: axum::http::HeaderMap, body: String| {
                let seen = seen2.clone();
                async move {
                    let msg: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    let hs: HashMap<String, String> = headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
                    seen.lock().unwrap().push(hs);
                    let id = msg.get("id").cloned();
                    let result = match msg["method"].as_str() {
                        Some("initialize") => json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "rec", "version": "1"}}),
                        Some("tools/list") => json!({"tools": [{"name": "whoami", "inputSchema": {"type": "object"}}]}),
                        Some("tools/call") => json!({"content": [{"type": "text", "text": "ok"}]}),
                        _ => return (axum::http::StatusCode::ACCEPTED, [("mcp-session-id", "up-1")], String::new()),
                    };
                    (axum::http::StatusCode::OK, [("mcp-session-id", "up-1")], json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string())
                }
            }),
        );
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        axum::serve(l, app).await.unwrap();
    });
    let config = json!({
        "servers": [{ "name": "rec", "transport": { "streamableHttp": { "url": format!("http://127.0.0.1:{port}/mcp") } },
            "auth": { "bearer": { "credential": "rec.token" } },
            "headers": { "x-static": "static-value" },
            "envHeaderMap": { "x-from-env": "REC_HEADER" },
            "resolveHeaders": { "x-user": "{subject.id}", "x-tenant": "{subject.tenantId}" } }],
        "credentials": { "rec.token": { "env": "REC_TOKEN" } },
        "groups": [{ "id": "g", "users": [{ "id": "alice", "tenantId": "acme", "apiKeys": [{ "env": "ALICE_KEY" }] }],
            "policy": { "rules": [{ "mcp": "rec", "allow": "whoami" }] } }]
    });
    let s = serve(
        &config,
        &[
            ("ALICE_KEY", ALICE),
            ("REC_TOKEN", "rec-token-value"),
            ("REC_HEADER", "from-env-value"),
        ],
    );
    let extra = json!({"x-client-secret": "client-canary-789", "authorization-extra": "nope"});
    let r = py(
        &s.url("/mcp"),
        ALICE,
        "legacy",
        &json!([{"op": "call_tool", "name": "rec__whoami", "args": {}}]),
        Some(&extra),
    );
    assert_eq!(ok(&r[0])["content"][0]["text"], "ok");
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.len() >= 3,
        "initialize, initialized, tools/list, tools/call"
    );
    for hs in &seen {
        assert_eq!(
            hs.get("authorization").map(String::as_str),
            Some("Bearer rec-token-value")
        );
        assert_eq!(hs.get("x-static").map(String::as_str), Some("static-value"));
        assert_eq!(
            hs.get("x-from-env").map(String::as_str),
            Some("from-env-value")
        );
        assert_eq!(hs.get("x-user").map(String::as_str), Some("alice"));
        assert_eq!(hs.get("x-tenant").map(String::as_str), Some("acme"));
        assert!(
            !hs.contains_key("x-client-secret")
                && !hs.contains_key("x-fentaris-api-key")
                && !hs.contains_key("authorization-extra"),
            "a client header reached the upstream: {hs:?}"
        );
        assert!(
            !hs.values()
                .any(|v| v.contains(ALICE) || v.contains("client-canary"))
        );
    }
    drop(s);
    rt.shutdown_background();
}

#[test]
fn stdio_downstream_mode() {
    if !ready() {
        return;
    }
    let dir = project(&two_user_config());
    let cfg = dir.path().join(".fentaris/config.json");
    let argv = json!([
        env!("CARGO_BIN_EXE_fentaris"),
        "serve",
        "--stdio",
        "--user",
        "alice",
        "--config",
        cfg
    ]);
    let steps = json!([{"op": "call_tool", "name": "everything__echo", "args": {"message": "via stdio"}}, {"op": "call_tool", "name": "everything__get-env", "args": {}}, {"op": "list_tools"}]);
    let r = py(&argv.to_string(), "", "stdio", &steps, None);
    assert_eq!(ok(&r[0])["content"][0]["text"], "Echo: via stdio");
    assert_eq!(
        err(&r[1]),
        (-32602, "Unknown tool: everything__get-env".into())
    );
    assert_eq!(names(ok(&r[2]), "tools", "name").len(), 3);
}

#[test]
fn aggregated_lists_page_with_tamper_checked_cursors() {
    if !ready() {
        return;
    }
    let mut config = two_user_config();
    config["groups"][0]["policy"] = json!({ "rules": [
        { "mcp": "everything", "allow": "echo" },
        { "mcp": "env", "allow": ["echo", "env"] } ] });
    config["groups"][1]["policy"] = json!({ "rules": [{ "mcp": "*", "allow": "*" }] });
    // Every server's items in one answer up to maxListItems (tests/e2e_lists.rs), then pages.
    config["limits"] = json!({ "maxListItems": 2 });
    let s = serve(&config, &[("ALICE_KEY", ALICE), ("BOB_KEY", BOB)]);
    let url = s.url("/mcp");
    let sid = raw_session(&url, ALICE);
    let page1 = raw_call(&url, ALICE, &sid, "tools/list", json!({}));
    let names = |v: &Value| names(&v["result"], "tools", "name");
    assert_eq!(names(&page1), ["everything__echo", "env__env"]);
    let cursor = page1["result"]["nextCursor"].as_str().unwrap().to_string();
    let page2 = raw_call(&url, ALICE, &sid, "tools/list", json!({"cursor": cursor}));
    assert_eq!(names(&page2), ["env__echo"]);
    assert!(page2["result"].get("nextCursor").is_none());
    // A cursor is opaque, tamper-checked and bound to the subject it was given to.
    let mut tampered = cursor.clone();
    tampered.insert(0, 'x');
    assert_eq!(
        raw_call(&url, ALICE, &sid, "tools/list", json!({"cursor": tampered}))["error"]["code"],
        -32602
    );
    let bob_sid = raw_session(&url, BOB);
    assert_eq!(
        raw_call(&url, BOB, &bob_sid, "tools/list", json!({"cursor": cursor}))["error"]["code"],
        -32602
    );
}

#[test]
fn trusted_identity_headers_need_a_listed_proxy_the_secret_and_a_declared_user() {
    if !ready() {
        return;
    }
    let mut config = two_user_config();
    config["identity"] = json!({ "trustedHeaders": { "userHeader": "x-user", "secretHeader": "x-proxy-secret",
        "secret": { "env": "PROXY_SECRET" }, "proxies": ["127.0.0.1/32"] } });
    let s = serve(
        &config,
        &[
            ("ALICE_KEY", ALICE),
            ("BOB_KEY", BOB),
            ("PROXY_SECRET", "proxy-secret-0123456789"),
        ],
    );
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let url = s.url("/mcp");
    let post = |h: &[(&str, &str)]| http("POST", &url, h, Some(&init)).unwrap().0;
    assert_eq!(
        post(&[
            ("x-user", "alice"),
            ("x-proxy-secret", "proxy-secret-0123456789")
        ]),
        200
    );
    assert_eq!(
        post(&[("x-user", "alice"), ("x-proxy-secret", "wrong")]),
        401
    );
    assert_eq!(post(&[("x-user", "alice")]), 401);
    assert_eq!(
        post(&[
            ("x-user", "mallory"),
            ("x-proxy-secret", "proxy-secret-0123456789")
        ]),
        401,
        "only declared users"
    );
    // Asserting an identity never falls back to, or combines with, an API key.
    assert_eq!(
        post(&[("x-user", "bob"), ("x-fentaris-api-key", ALICE)]),
        401
    );
    assert_eq!(post(&[("x-fentaris-api-key", ALICE)]), 200);
    drop(s);
    // From an address that is not a listed proxy, the headers are refused.
    config["identity"]["trustedHeaders"]["proxies"] = json!(["10.0.0.0/8"]);
    let s = serve(
        &config,
        &[
            ("ALICE_KEY", ALICE),
            ("BOB_KEY", BOB),
            ("PROXY_SECRET", "proxy-secret-0123456789"),
        ],
    );
    assert_eq!(
        http(
            "POST",
            &s.url("/mcp"),
            &[
                ("x-user", "alice"),
                ("x-proxy-secret", "proxy-secret-0123456789")
            ],
            Some(&init)
        )
        .unwrap()
        .0,
        401
    );
}

#[test]
fn session_isolation_gives_each_session_its_own_upstream() {
    if !ready() {
        return;
    }
    let config = json!({
        "servers": [
            { "name": "iso", "isolation": "session", "transport": { "stdio": { "command": python(), "args": [env_server()] } } },
            { "name": "shared", "transport": { "stdio": { "command": python(), "args": [env_server()] } } }
        ],
        "groups": [{ "id": "g", "users": [{ "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] }],
            "policy": { "rules": [{ "mcp": "*", "allow": "pid" }] } }]
    });
    let s = serve(&config, &[("ALICE_KEY", ALICE)]);
    let url = s.url("/mcp");
    let pid = |sid: &str, tool: &str| -> u32 {
        let r = raw_call(
            &url,
            ALICE,
            sid,
            "tools/call",
            json!({"name": tool, "arguments": {}}),
        );
        r["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("{r}"))
            .parse()
            .unwrap()
    };
    let (a, b) = (raw_session(&url, ALICE), raw_session(&url, ALICE));
    let (a1, a2, b1) = (
        pid(&a, "iso__pid"),
        pid(&a, "iso__pid"),
        pid(&b, "iso__pid"),
    );
    assert_eq!(a1, a2, "one connection per session");
    assert_ne!(a1, b1, "sessions do not share an isolated upstream");
    assert_eq!(
        pid(&a, "shared__pid"),
        pid(&b, "shared__pid"),
        "shared servers are shared"
    );
    // Ending the session ends its isolated upstream.
    assert_eq!(
        http(
            "DELETE",
            &url,
            &[("x-fentaris-api-key", ALICE), ("mcp-session-id", &a)],
            None
        )
        .unwrap()
        .0,
        200
    );
    let start = Instant::now();
    while Path::new(&format!("/proc/{a1}")).exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the isolated upstream outlived its session"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(Path::new(&format!("/proc/{b1}")).exists());
}

#[test]
fn sampling_reaches_the_client_whose_request_caused_it_only_when_allowed() {
    if !ready() {
        return;
    }
    let config = json!({
        "servers": [{ "name": "everything", "isolation": "session", "transport": { "stdio": { "command": "node", "args": [everything_js()] } } }],
        "groups": [
            { "id": "samplers", "users": [{ "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] }], "policy": { "rules": [
                { "mcp": "everything", "allow": "trigger-sampling-request" },
                { "mcp": "everything", "allowCapability": { "operation": "sampling:createMessage" } } ] } },
            { "id": "others", "users": [{ "id": "bob", "apiKeys": [{ "env": "BOB_KEY" }] }], "policy": { "rules": [
                { "mcp": "everything", "allow": "trigger-sampling-request" } ] } }
        ]
    });
    let s = serve(&config, &[("ALICE_KEY", ALICE), ("BOB_KEY", BOB)]);
    let steps = json!([{"op": "call_tool", "name": "trigger-sampling-request", "args": {"prompt": "hello", "maxTokens": 10}}]);
    let alice = py_with(
        &s.url("/mcp/everything"),
        ALICE,
        "legacy",
        &steps,
        None,
        true,
    );
    let text = ok(&alice[0]).to_string();
    assert!(
        text.contains("sampled by the client"),
        "alice's client answered the sampling request: {text}"
    );
    let bob = py_with(&s.url("/mcp/everything"), BOB, "legacy", &steps, None, true);
    let text = bob[0].to_string();
    assert!(
        !text.contains("sampled by the client"),
        "bob may not be asked to sample: {text}"
    );
}

#[test]
fn resource_updates_reach_only_subscribed_sessions() {
    if !ready() {
        return;
    }
    let config = json!({
        "servers": [{ "name": "everything", "transport": { "stdio": { "command": "node", "args": [everything_js()] } } }],
        "groups": [{ "id": "g", "users": [{ "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] }], "policy": { "rules": [
            { "mcp": "everything", "allow": "toggle-subscriber-updates" },
            { "mcp": "everything", "allowCapability": { "operation": "resource:subscribe", "target": "demo://resource/static/document/*" } } ] } }]
    });
    let s = serve(&config, &[("ALICE_KEY", ALICE)]);
    let url = s.url("/mcp/everything");
    let (a, b) = (raw_session(&url, ALICE), raw_session(&url, ALICE));
    let uri = "demo://resource/static/document/features.md";
    let r = raw_call(&url, ALICE, &a, "resources/subscribe", json!({"uri": uri}));
    assert!(r.get("result").is_some(), "{r}");
    // A resource outside the rule cannot be subscribed to.
    let r = raw_call(
        &url,
        ALICE,
        &a,
        "resources/subscribe",
        json!({"uri": "demo://resource/dynamic/text/1"}),
    );
    assert_eq!(r["error"]["code"], -32002, "{r}");
    let r = raw_call(
        &url,
        ALICE,
        &a,
        "tools/call",
        json!({"name": "toggle-subscriber-updates", "arguments": {}}),
    );
    assert!(r.get("result").is_some(), "{r}");
    let (u2, k2, b2) = (url.clone(), ALICE.to_string(), b.clone());
    let other = std::thread::spawn(move || listen_for(&u2, &k2, &b2, Duration::from_secs(8)));
    let mine = listen_for(&url, ALICE, &a, Duration::from_secs(8));
    let other = other.join().unwrap();
    let updated = |msgs: &[Value]| {
        msgs.iter()
            .filter(|m| m["method"] == "notifications/resources/updated")
            .count()
    };
    assert!(
        updated(&mine) > 0,
        "the subscribed session got no update: {mine:?}"
    );
    assert!(
        mine.iter()
            .all(|m| m["method"] != "notifications/resources/updated" || m["params"]["uri"] == uri),
        "{mine:?}"
    );
    assert_eq!(
        updated(&other),
        0,
        "a session that did not subscribe got updates: {other:?}"
    );
}

#[test]
fn an_upstream_withdrawing_its_request_cancels_it_at_the_client() {
    if !ready() {
        return;
    }
    let config = json!({
        "servers": [{ "name": "env", "isolation": "session", "transport": { "stdio": { "command": python(), "args": [env_server()] } } }],
        "groups": [{ "id": "g", "users": [{ "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] }], "policy": { "rules": [
            { "mcp": "env", "allow": "withdraw" },
            { "mcp": "env", "allowCapability": { "operation": "sampling:createMessage" } } ] } }]
    });
    let s = serve(&config, &[("ALICE_KEY", ALICE)]);
    let url = s.url("/mcp/env");
    let sid = raw_session(&url, ALICE);
    let msg = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "withdraw", "arguments": {}}});
    let (status, _, body) = http(
        "POST",
        &url,
        &[("x-fentaris-api-key", ALICE), ("mcp-session-id", &sid)],
        Some(&msg),
    )
    .unwrap();
    assert_eq!(status, 200);
    let events: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect();
    let request = events
        .iter()
        .find(|e| e["method"] == "sampling/createMessage")
        .unwrap_or_else(|| panic!("{body}"));
    let cancel = events
        .iter()
        .find(|e| e["method"] == "notifications/cancelled")
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(
        cancel["params"]["requestId"], request["id"],
        "the client is told which request was withdrawn"
    );
    assert_eq!(
        events.last().unwrap()["result"]["content"][0]["text"],
        "withdrawn"
    );
}

#[test]
fn list_changes_reach_every_session_that_can_see_the_server() {
    if !ready() {
        return;
    }
    let config = json!({
        "servers": [
            { "name": "env", "transport": { "stdio": { "command": python(), "args": [env_server()] } } },
            { "name": "other", "transport": { "stdio": { "command": python(), "args": [env_server()] } } }
        ],
        "groups": [
            { "id": "a", "users": [{ "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] }], "policy": { "rules": [{ "mcp": "env", "allow": "change" }] } },
            { "id": "b", "users": [{ "id": "bob", "apiKeys": [{ "env": "BOB_KEY" }] }], "policy": { "rules": [{ "mcp": "other", "allow": "*" }] } }
        ]
    });
    let s = serve(&config, &[("ALICE_KEY", ALICE), ("BOB_KEY", BOB)]);
    let url = s.url("/mcp");
    let (a1, a2, b) = (
        raw_session(&url, ALICE),
        raw_session(&url, ALICE),
        raw_session(&url, BOB),
    );
    let listeners: Vec<_> = [(ALICE, a2.clone()), (BOB, b.clone())]
        .into_iter()
        .map(|(k, sid)| {
            let u = url.clone();
            std::thread::spawn(move || listen_for(&u, k, &sid, Duration::from_secs(4)))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    let r = raw_call(
        &url,
        ALICE,
        &a1,
        "tools/call",
        json!({"name": "env__change", "arguments": {}}),
    );
    assert_eq!(r["result"]["content"][0]["text"], "changed", "{r}");
    let mut got = listeners.into_iter().map(|h| h.join().unwrap());
    let (alice_other_session, bob) = (got.next().unwrap(), got.next().unwrap());
    let changed = |msgs: &[Value]| {
        msgs.iter()
            .any(|m| m["method"] == "notifications/tools/list_changed")
    };
    assert!(
        changed(&alice_other_session),
        "another session of a user who can see `env` is told: {alice_other_session:?}"
    );
    assert!(
        !changed(&bob),
        "a user who cannot use `env` is not told: {bob:?}"
    );
}

#[test]
fn notifications_from_an_isolated_connection_reach_only_its_session() {
    if !ready() {
        return;
    }
    let config = json!({
        "servers": [{ "name": "everything", "isolation": "session", "transport": { "stdio": { "command": "node", "args": [everything_js()] } } }],
        "groups": [{ "id": "g", "users": [
                { "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] }, { "id": "bob", "apiKeys": [{ "env": "BOB_KEY" }] } ],
            "policy": { "rules": [
                { "mcp": "everything", "allow": "toggle-subscriber-updates" },
                { "mcp": "everything", "allowCapability": { "operation": "resource:subscribe" } } ] } }]
    });
    let s = serve(&config, &[("ALICE_KEY", ALICE), ("BOB_KEY", BOB)]);
    let url = s.url("/mcp/everything");
    let (a, b) = (raw_session(&url, ALICE), raw_session(&url, BOB));
    let uri = "demo://resource/static/document/architecture.md";
    for (key, sid) in [(ALICE, &a), (BOB, &b)] {
        assert!(
            raw_call(&url, key, sid, "resources/subscribe", json!({"uri": uri}))
                .get("result")
                .is_some()
        );
    }
    // Only alice's own upstream process starts sending updates.
    assert!(
        raw_call(
            &url,
            ALICE,
            &a,
            "tools/call",
            json!({"name": "toggle-subscriber-updates", "arguments": {}})
        )
        .get("result")
        .is_some()
    );
    let (u2, b2) = (url.clone(), b.clone());
    let bobs = std::thread::spawn(move || listen_for(&u2, BOB, &b2, Duration::from_secs(8)));
    let alices = listen_for(&url, ALICE, &a, Duration::from_secs(8));
    let bobs = bobs.join().unwrap();
    let updated = |msgs: &[Value]| {
        msgs.iter()
            .filter(|m| m["method"] == "notifications/resources/updated")
            .count()
    };
    assert!(updated(&alices) > 0, "{alices:?}");
    assert_eq!(
        updated(&bobs),
        0,
        "bob received updates caused by alice's connection: {bobs:?}"
    );
}
