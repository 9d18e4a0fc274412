//! End to end: what runs after policy. Argument schemas and the external authorizer from
//! config (through `fentaris serve`), and runtime middleware through the library API.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fentaris::app::*;
use fentaris::middleware::{Ctx, Next};
use serde_json::{Value, json};
use support::*;

const KEY: &str = "alice-middleware-key-0123456789";

fn call(url: &str, sid: &str, tool: &str, args: Value) -> Value {
    raw_call(
        url,
        KEY,
        sid,
        "tools/call",
        json!({ "name": tool, "arguments": args }),
    )
}

fn audit_lines(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join(".fentaris/logs/audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

struct Authorizer {
    child: Child,
    port: u16,
    record: tempfile::NamedTempFile,
}

impl Authorizer {
    fn start() -> Authorizer {
        let port = free_port();
        let record = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(python())
            .arg(repo().join("tests/e2e/authorizer.py"))
            .arg(port.to_string())
            .arg(record.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "authorizer did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Authorizer {
            child,
            port,
            record,
        }
    }
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
    fn asked(&self) -> Vec<Value> {
        std::fs::read_to_string(self.record.path())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Authorizer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn env_upstream() -> Value {
    json!({ "name": "env", "transport": { "stdio": { "command": python(), "args": [env_server()] } } })
}

#[test]
fn argument_schemas_and_the_external_authorizer_narrow_what_policy_allowed() {
    if !ready() {
        return;
    }
    let authz = Authorizer::start();
    let config = json!({
        "autoLog": true,
        "servers": [env_upstream()],
        "groups": [{ "id": "g", "users": [{ "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] }],
            "policy": { "rules": [{ "mcp": "env", "allow": ["echo", "sleep", "pid", "env", "change"] }] } }],
        "middleware": [
            { "argumentSchema": { "mcp": "env", "tool": "echo",
                "schema": { "type": "object", "properties": { "message": { "type": "string", "maxLength": 10 } }, "required": ["message"] },
                "message": "messages are at most 10 characters" } },
            { "externalAuthorizer": { "mcp": "env", "target": "echo", "url": authz.url("/allow"), "includeArguments": true, "cacheAllowFor": "1m" } },
            { "externalAuthorizer": { "mcp": "env", "target": "pid", "url": authz.url("/deny") } },
            { "externalAuthorizer": { "mcp": "env", "target": "sleep", "url": authz.url("/slow"), "timeout": "300ms" } },
            { "externalAuthorizer": { "mcp": "env", "target": "env", "url": authz.url("/500") } },
            { "externalAuthorizer": { "mcp": "env", "target": "change", "url": authz.url("/slow"), "timeout": "10s" } }
        ]
    });
    let s = serve(&config, &[("ALICE_KEY", KEY)]);
    let url = s.url("/mcp");
    let sid = raw_session(&url, KEY);

    // Schema violation: the configured message, and the authorizer is never asked.
    let r = call(
        &url,
        &sid,
        "env__echo",
        json!({ "message": "far too long a message" }),
    );
    assert_eq!(r["error"]["code"], -32003, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 10 characters"),
        "{r}"
    );
    assert_eq!(r["error"]["data"]["deniedBy"], "argumentSchema");
    assert!(authz.asked().is_empty());

    // Allowed by the authorizer, which saw the arguments; the second call is cached.
    let r = call(&url, &sid, "env__echo", json!({ "message": "hello" }));
    assert!(r.get("result").is_some(), "{r}");
    let r = call(&url, &sid, "env__echo", json!({ "message": "hello" }));
    assert!(r.get("result").is_some(), "{r}");
    let asked = authz.asked();
    assert_eq!(asked.len(), 1, "allow answers are cached: {asked:?}");
    assert_eq!(asked[0]["body"]["subject"]["id"], "alice");
    assert_eq!(asked[0]["body"]["operation"], "tool:call");
    assert_eq!(asked[0]["body"]["target"], "echo");
    assert_eq!(asked[0]["body"]["arguments"]["message"], "hello");
    // Different arguments are a different cache key.
    call(&url, &sid, "env__echo", json!({ "message": "other" }));
    assert_eq!(authz.asked().len(), 2);

    // Deny with the authorizer's reason; arguments are not sent without includeArguments.
    let r = call(&url, &sid, "env__pid", json!({}));
    assert_eq!(r["error"]["code"], -32003, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not approved"),
        "{r}"
    );
    let last = authz.asked().pop().unwrap();
    assert!(last["body"].get("arguments").is_none(), "{last}");

    // Timeout, HTTP 500 and garbage all fail closed.
    let started = Instant::now();
    let r = call(&url, &sid, "env__sleep", json!({ "seconds": 0 }));
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did not answer"),
        "{r}"
    );
    assert!(started.elapsed() < Duration::from_millis(1800));
    let r = call(&url, &sid, "env__env", json!({}));
    assert!(
        r["error"]["message"].as_str().unwrap().contains("HTTP 500"),
        "{r}"
    );

    // A slow authorizer does not hold up other requests.
    let (u2, s2) = (url.clone(), sid.clone());
    let started = Instant::now();
    let slow = std::thread::spawn(move || call(&u2, &s2, "env__change", json!({})));
    std::thread::sleep(Duration::from_millis(100));
    let r = call(&url, &sid, "env__echo", json!({ "message": "hello" }));
    assert!(r.get("result").is_some(), "{r}");
    // The approval takes 2 s; the other call finished well before it.
    let other_done = started.elapsed();
    let r = slow.join().unwrap();
    assert!(r.get("result").is_some(), "{r}");
    assert!(
        other_done < Duration::from_millis(1500) && started.elapsed() >= Duration::from_secs(2),
        "other call done at {other_done:?}, approval at {:?}",
        started.elapsed()
    );

    // Every denial is in the audit trail with who denied it.
    let mut s = s;
    assert!(s.stop().success());
    let lines = audit_lines(s.dir());
    let denied: Vec<&Value> = lines
        .iter()
        .filter(|l| l["outcome"] == "denied_by_middleware")
        .collect();
    let reasons: Vec<&str> = denied
        .iter()
        .map(|l| l["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.iter().any(|r| r.starts_with("argumentSchema:")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("authorizer: not approved")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("did not answer")),
        "{reasons:?}"
    );
}

#[test]
fn a_client_waiting_for_an_approval_gets_progress() {
    if !ready() {
        return;
    }
    let authz = Authorizer::start();
    let config = json!({
        "servers": [env_upstream()],
        "groups": [{ "id": "g", "users": [{ "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] }],
            "policy": { "rules": [{ "mcp": "env", "allow": "echo" }] } }],
        "middleware": [{ "externalAuthorizer": { "url": authz.url("/slow"), "timeout": "10s" } }]
    });
    let s = serve(&config, &[("ALICE_KEY", KEY)]);
    let url = s.url("/mcp");
    let sid = raw_session(&url, KEY);
    let msg = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "env__echo", "arguments": { "message": "hi" }, "_meta": { "progressToken": "p1" } }});
    let (status, _, body) = http(
        "POST",
        &url,
        &[("x-fentaris-api-key", KEY), ("mcp-session-id", &sid)],
        Some(&msg),
    )
    .unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains("notifications/progress")
            && body.contains("waiting for the external authorizer"),
        "{body}"
    );
    assert_eq!(
        rpc_body(&body)["result"]["content"][0]["text"],
        "hi",
        "{body}"
    );
}

#[test]
fn the_authorizer_answering_garbage_denies() {
    if !ready() {
        return;
    }
    let authz = Authorizer::start();
    let config = json!({
        "servers": [env_upstream()],
        "groups": [{ "id": "g", "users": [{ "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] }],
            "policy": { "rules": [{ "mcp": "env", "allow": "echo" }] } }],
        "middleware": [{ "externalAuthorizer": { "url": authz.url("/garbage") } }]
    });
    let s = serve(&config, &[("ALICE_KEY", KEY)]);
    let url = s.url("/mcp");
    let sid = raw_session(&url, KEY);
    let r = call(&url, &sid, "env__echo", json!({ "message": "hi" }));
    assert!(
        r["error"]["message"].as_str().unwrap().contains("not JSON"),
        "{r}"
    );
}

#[test]
fn library_middleware_runs_after_policy_in_order_and_its_denials_are_audited() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let order: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut app = fentaris(Options {
        listen: Some("127.0.0.1:0".into()),
        auto_log: true,
        dir: Some(dir.path().join(".fentaris")),
        servers: vec![mcp(
            "env",
            stdio(&python()).args([env_server().to_str().unwrap()]),
        )],
        policies: vec![policy("p").mcp("env").allow(["echo", "pid"]).deny("pid")],
        groups: vec![
            group("g")
                .users([user("alice").api_keys([credential_env("MW_ALICE_KEY")])])
                .policy("p"),
        ],
        ..Options::default()
    });
    let o = order.clone();
    app.mcp("env")
        .tool("echo", move |ctx: Ctx, next: Next| {
            let o = o.clone();
            async move {
                o.lock().unwrap().push(format!("tool:{}", ctx.target()));
                let m = ctx.args()["message"].as_str().unwrap_or("").to_string();
                if m.len() < 5 {
                    return ctx.deny("messages need at least 5 characters");
                }
                next.run(ctx).await
            }
        })
        .unwrap();
    let o = order.clone();
    app.middleware(move |ctx: Ctx, next: Next| {
        let o = o.clone();
        async move {
            o.lock().unwrap().push(format!("global:{}", ctx.target()));
            ctx.log().set_tag("via", "library");
            ctx.log()
                .info("checked", json!({ "subject": ctx.subject().id }));
            next.run(ctx).await
        }
    });
    // SAFETY of the test: only this test reads MW_ALICE_KEY.
    unsafe { std::env::set_var("MW_ALICE_KEY", KEY) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let running = rt.block_on(app.start()).unwrap();
    let url = format!("http://{}/mcp", running.local_addr());
    let sid = raw_session(&url, KEY);

    // Policy denies pid: middleware never sees it.
    let r = call(&url, &sid, "env__pid", json!({}));
    assert_eq!(r["error"]["code"], -32602, "{r}");
    assert!(
        order.lock().unwrap().is_empty(),
        "{:?}",
        order.lock().unwrap()
    );

    // Global before per-tool, both before the upstream.
    let r = call(&url, &sid, "env__echo", json!({ "message": "hello there" }));
    assert_eq!(r["result"]["content"][0]["text"], "hello there", "{r}");
    assert_eq!(*order.lock().unwrap(), ["global:echo", "tool:echo"]);

    // A middleware denial reaches the client with its message.
    let r = call(&url, &sid, "env__echo", json!({ "message": "hi" }));
    assert_eq!(r["error"]["code"], -32003, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at least 5 characters")
    );
    rt.block_on(running.shutdown());

    let lines = audit_lines(dir.path());
    let calls: Vec<&Value> = lines
        .iter()
        .filter(|l| l["event"] == "request" && l["method"] == "tools/call")
        .collect();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0]["decision"], "deny");
    assert!(
        calls[0]["tags"].get("via").is_none(),
        "policy denied before middleware"
    );
    assert_eq!(calls[1]["outcome"], "ok");
    assert_eq!(calls[1]["tags"]["via"], "library");
    assert_eq!(calls[2]["decision"], "deny");
    assert_eq!(calls[2]["outcome"], "denied_by_middleware");
    assert!(
        calls[2]["reason"]
            .as_str()
            .unwrap()
            .contains("at least 5 characters")
    );
    let events: Vec<&Value> = lines.iter().filter(|l| l["event"] == "log").collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["requestId"], calls[1]["requestId"]);
    assert_eq!(events[0]["detail"]["event"], "checked");
}

#[test]
fn the_builder_and_the_config_file_give_the_same_model_and_diagnostics() {
    let built = fentaris(Options {
        servers: vec![
            mcp("github", streamable_http("https://gh.example/mcp"))
                .auth(bearer(credential("gh.token"))),
            mcp("fs", stdio("npx").args(["-y", "server-filesystem", "/srv"])),
        ],
        policies: vec![
            policy("dev")
                .mcp("github")
                .allow(["list_issues", "create_issue"])
                .deny("delete_repo")
                .mcp("fs")
                .allow_capability(
                    json!({ "operation": "resource:read", "target": "file:///srv/*" }),
                ),
        ],
        groups: vec![
            group("devs")
                .users([user("alice")
                    .tenant("acme")
                    .api_keys([credential_env("ALICE_KEY")])])
                .policy("dev"),
        ],
        extra: Some(json!({ "credentials": { "gh.token": { "env": "GH_TOKEN" } } })),
        ..Options::default()
    });
    let text = r#"{
      "servers": [
        { "name": "github", "transport": { "streamableHttp": { "url": "https://gh.example/mcp" } },
          "auth": { "bearer": { "credential": "gh.token" } } },
        { "name": "fs", "transport": { "stdio": { "command": "npx", "args": ["-y", "server-filesystem", "/srv"] } } }
      ],
      "credentials": { "gh.token": { "env": "GH_TOKEN" } },
      "policies": [{ "name": "dev", "rules": [
        { "mcp": "github", "allow": ["list_issues", "create_issue"] },
        { "mcp": "github", "deny": "delete_repo" },
        { "mcp": "fs", "allowCapability": { "operation": "resource:read", "target": "file:///srv/*" } }
      ] }],
      "groups": [{ "id": "devs", "users": [{ "id": "alice", "tenantId": "acme", "apiKeys": [{ "env": "ALICE_KEY" }] }], "policy": "dev" }]
    }"#;
    let from_file = fentaris::config::check_source(text).config.unwrap();
    assert_eq!(built.config().unwrap(), from_file);

    // Incremental declarations, and the same diagnostics as `policy check`.
    let mut app = fentaris(Options::default());
    app.group("empty");
    app.group("devs").users(["bob"]).policy("missing");
    app.mcp("fs").transport(stdio("x"));
    app.policy("p")
        .clone_from(&policy("p").mcp("nope").allow("x"));
    let Err(StartError::Invalid(d)) = app.config() else {
        panic!("expected errors");
    };
    let codes: Vec<&str> = d.iter().map(|d| d.code).collect();
    for c in ["FNT010", "FNT003", "FNT012"] {
        assert!(codes.contains(&c), "{c} missing from {codes:?}");
    }
}

#[test]
fn library_middleware_applies_to_prompts_and_resources() {
    if !ready() {
        return;
    }
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut app = fentaris(Options {
        listen: Some("127.0.0.1:0".into()),
        servers: vec![mcp("everything", stdio("node").args([everything_js().to_str().unwrap()]))],
        policies: vec![policy("p")
            .mcp("everything")
            .allow_capability(json!({ "operation": "prompt:get", "target": "*" }))
            .allow_capability(json!({ "operation": "completion:complete", "target": "*" }))
            .allow_capability(json!({ "operation": "resource:read", "target": "demo://resource/static/document/*" }))],
        groups: vec![group("g")
            .users([user("alice").api_keys([credential_env("MW2_ALICE_KEY")])])
            .policy("p")],
        ..Options::default()
    });
    let s1 = seen.clone();
    let s2 = seen.clone();
    app.mcp("everything")
        .prompt("simple-*", move |ctx: Ctx, next: Next| {
            let s = s1.clone();
            async move {
                s.lock()
                    .unwrap()
                    .push(format!("{} {}", ctx.operation(), ctx.target()));
                next.run(ctx).await
            }
        })
        .unwrap()
        .resource(
            "demo://resource/static/document/*",
            move |ctx: Ctx, _next: Next| {
                let s = s2.clone();
                async move {
                    s.lock()
                        .unwrap()
                        .push(format!("{} {}", ctx.operation(), ctx.target()));
                    ctx.deny("documents are read through the archive")
                }
            },
        )
        .unwrap();
    unsafe { std::env::set_var("MW2_ALICE_KEY", KEY) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let running = rt.block_on(app.start()).unwrap();
    let url = format!("http://{}/mcp/everything", running.local_addr());
    let sid = raw_session(&url, KEY);
    let r = raw_call(
        &url,
        KEY,
        &sid,
        "prompts/get",
        json!({ "name": "simple-prompt" }),
    );
    assert!(r.get("result").is_some(), "{r}");
    let r = raw_call(
        &url,
        KEY,
        &sid,
        "resources/read",
        json!({ "uri": "demo://resource/static/document/architecture.md" }),
    );
    assert_eq!(r["error"]["code"], -32003, "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("archive"));
    rt.block_on(running.shutdown());
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "prompt:get simple-prompt",
            "resource:read demo://resource/static/document/architecture.md"
        ]
    );
}
