//! The HTTP front in process: a request is decided and forwarded against the one state it
//! was authenticated with, even when a reload swaps the state while it runs.

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{App, FrontState, post_target, router};
use crate::config::Config;
use crate::identity::KeyVerifier;
use crate::middleware::{Ctx, Next, Registry};
use crate::proxy::handler::Proxy;
use crate::proxy::upstream::Upstream;

const KEY: &str = "http-tests-key-0123456789abcdef";

/// Config A: `KEY` is alice's, and alice may call `mem`'s `echo`. Config B: `KEY` is
/// bob's, and bob may call nothing (and `mem` is not a server).
fn config(a: bool) -> Config {
    let v = if a {
        json!({
            "servers": [{ "name": "mem", "transport": { "stdio": { "command": "unused" } } }],
            "groups": [{ "id": "g", "users": [{ "id": "alice", "apiKeys": [{ "env": "K" }] }],
                "policy": { "rules": [{ "mcp": "mem", "allow": ["echo"] }] } }]
        })
    } else {
        json!({
            "servers": [],
            "groups": [{ "id": "g", "users": [{ "id": "bob", "apiKeys": [{ "env": "K" }] }],
                "policy": { "rules": [] } }]
        })
    };
    serde_json::from_value(v).unwrap()
}

fn state(proxy: Proxy) -> FrontState {
    let env = |k: &str| (k == "K").then(|| KEY.to_string());
    let (verifier, _) = KeyVerifier::build(proxy.config(), None, &env);
    FrontState::new(proxy.shared(), verifier, None, Default::default())
}

async fn call(app: &Arc<App>, text: &str) -> (u16, Value) {
    let msg = json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": { "name": "echo", "arguments": { "text": text },
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": { "name": "t", "version": "1" },
                "io.modelcontextprotocol/clientCapabilities": {} } } });
    let mut req = axum::http::Request::post("/mcp/mem")
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("x-fentaris-api-key", KEY)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo")
        .body(Body::from(msg.to_string()))
        .unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            40000,
        ))));
    let resp = router(app.clone()).oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&bytes).to_string();
    let body = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .rfind(|d| !d.is_empty())
        .map(str::to_string)
        .unwrap_or(text);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_reload_during_a_request_does_not_change_what_decides_or_serves_it() {
    // A middleware of state A swaps in state B while the request is between its decision
    // and its forwarding: the request must finish under A (its proxy, upstream and
    // subject); B applies from the next request.
    let app_cell: Arc<OnceLock<Arc<App>>> = Arc::default();
    let mut mw = Registry::default();
    let cell = app_cell.clone();
    mw.add_global(move |ctx: Ctx, next: Next| {
        let cell = cell.clone();
        async move {
            assert_eq!(ctx.subject().id, "alice");
            if let Some(app) = cell.get() {
                app.swap(state(Proxy::new(
                    config(false),
                    ".".into(),
                    None,
                    Box::new(|_| None),
                )));
            }
            next.run(ctx).await
        }
    });
    let a = Proxy::new(config(true), ".".into(), None, Box::new(|_| None)).with_middleware(mw);
    let st = state(a);
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    crate::proxy::handler::tests::fake_upstream(theirs);
    let up = Upstream::in_memory("mem", ours).await.unwrap();
    let key = st.proxy().shared_key("mem").unwrap();
    st.proxy().pool().insert(key, up).await;
    let app = Arc::new(App::new(st));
    app_cell.set(app.clone()).ok().unwrap();

    let (status, v) = call(&app, "under A").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["content"][0]["text"], "under A", "{v}");
    // The swap happened: the same key is bob's now, who may call nothing on a server
    // that does not exist.
    assert!(app.st().proxy().config().servers.is_empty());
    let (status, v) = call(&app, "under B").await;
    assert!(
        status != 200 || v.get("error").is_some(),
        "B did not apply: {status} {v}"
    );
}

#[test]
fn post_targets_the_listener_takes_straight_to_the_handler() {
    assert_eq!(post_target("/mcp"), Some(None));
    assert_eq!(post_target("/mcp/fs"), Some(Some("fs")));
    assert_eq!(post_target("/mcp/a.b-c_d"), Some(Some("a.b-c_d")));
    // Everything else is the router's: escapes it decodes, nested and empty names, other
    // paths (which it answers with 404 or 405).
    for other in [
        "/mcp/",
        "/mcp/a%20b",
        "/mcp/a/b",
        "/mcpx",
        "/mcp2",
        "/",
        "/healthz",
        "//mcp",
        "/MCP",
    ] {
        assert_eq!(post_target(other), None, "{other}");
    }
}
