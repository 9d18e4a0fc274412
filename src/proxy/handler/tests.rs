//! `Proxy::handle` in process, against an in-memory upstream; and the pure helpers.

use super::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// An upstream in memory: tools `echo` and `secret`; `echo` reports progress first when
/// asked to. Answers every request, ignores notifications.
pub(crate) fn fake_upstream(io: tokio::io::DuplexStream) {
    tokio::spawn(async move {
        let (r, mut w) = tokio::io::split(io);
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let Ok(msg) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let (Some(id), Some(method)) = (msg.get("id"), msg["method"].as_str()) else {
                continue;
            };
            let mut out = String::new();
            let result = match method {
                "initialize" => json!({
                    "protocolVersion": super::super::upstream::UPSTREAM_PROTOCOL,
                    "capabilities": { "tools": { "listChanged": true } },
                    "serverInfo": { "name": "fake", "version": "1" }
                }),
                "tools/list" => json!({ "tools": [
                    { "name": "echo", "inputSchema": { "type": "object" }, "x-extra": 1 },
                    { "name": "secret", "inputSchema": { "type": "object" } }
                ] }),
                "tools/call" => {
                    if let Some(t) = msg.pointer("/params/_meta/progressToken") {
                        out.push_str(
                            &crate::jsonrpc::notification(
                                "notifications/progress",
                                Some(json!({ "progressToken": t, "progress": 1 })),
                            )
                            .to_string(),
                        );
                        out.push('\n');
                    }
                    json!({ "content": [{ "type": "text", "text": msg["params"]["arguments"]["text"] }] })
                }
                _ => json!({}),
            };
            out.push_str(&crate::jsonrpc::response(id.clone(), result).to_string());
            out.push('\n');
            if w.write_all(out.as_bytes()).await.is_err() {
                return;
            }
        }
    });
}

/// A proxy whose server `mem` is the in-memory upstream; alice may call `echo` only.
async fn proxy() -> Arc<Proxy> {
    let config: Config = serde_json::from_value(json!({
        "servers": [{ "name": "mem", "transport": { "stdio": { "command": "unused" } } }],
        "groups": [{ "id": "g", "users": ["alice"],
            "policy": { "rules": [{ "mcp": "mem", "allow": ["echo"] }] } }]
    }))
    .unwrap();
    let proxy = Proxy::new(config, PathBuf::from("."), None, Box::new(|_| None)).shared();
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    fake_upstream(theirs);
    let up = Upstream::in_memory("mem", ours).await.unwrap();
    let key = proxy.shared_key("mem").unwrap();
    proxy.pool.insert(key, up).await;
    proxy
}

fn caller(proxy: &Proxy, endpoint: Endpoint) -> Caller {
    Caller {
        subject: Arc::new(proxy.engine.subject("alice")),
        endpoint,
        modern: false,
        session: None,
        info: Arc::default(),
    }
}

#[tokio::test]
async fn lists_show_only_what_policy_allows_and_keep_unknown_fields() {
    let proxy = proxy().await;
    let ct = CancellationToken::new();
    let c = caller(&proxy, Endpoint::Server("mem".into()));
    let list = proxy
        .handle(&c, "tools/list", json!({}), None, &ct)
        .await
        .unwrap();
    let tools = list["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 1, "{list}");
    assert_eq!(tools[0]["name"], "echo");
    assert_eq!(tools[0]["x-extra"], 1);
}

#[tokio::test]
async fn a_denied_tool_is_unknown_and_an_allowed_one_is_forwarded() {
    let proxy = proxy().await;
    let ct = CancellationToken::new();
    let c = caller(&proxy, Endpoint::Server("mem".into()));
    let call = |name: &str| json!({ "name": name, "arguments": { "text": "hi" } });
    let denied = proxy
        .handle(&c, "tools/call", call("secret"), None, &ct)
        .await
        .unwrap_err();
    let unknown = proxy
        .handle(&c, "tools/call", call("nope"), None, &ct)
        .await
        .unwrap_err();
    assert_eq!(
        (denied.code, denied.message.as_str()),
        (-32602, "Unknown tool: secret")
    );
    assert_eq!(unknown.code, denied.code);
    let ok = proxy
        .handle(&c, "tools/call", call("echo"), None, &ct)
        .await
        .unwrap();
    assert_eq!(ok["content"][0]["text"], "hi");
    // The 2026-07-28 shape for modern callers.
    let modern = Caller { modern: true, ..c };
    let ok = proxy
        .handle(&modern, "tools/call", call("echo"), None, &ct)
        .await
        .unwrap();
    assert_eq!(ok["resultType"], "complete");
}

#[tokio::test]
async fn progress_reaches_the_caller_with_its_own_token_before_the_result() {
    let proxy = proxy().await;
    let ct = CancellationToken::new();
    let c = caller(&proxy, Endpoint::Server("mem".into()));
    let (sink, mut rx) = mpsc::unbounded_channel();
    let progress = Progress {
        token: Some(json!("mine")),
        sink,
        replies: Replies::default(),
    };
    let params = json!({ "name": "echo", "arguments": { "text": "hi" }, "_meta": { "progressToken": "mine" } });
    let ok = proxy
        .handle(&c, "tools/call", params, Some(progress), &ct)
        .await
        .unwrap();
    assert_eq!(ok["content"][0]["text"], "hi");
    let note = rx.try_recv().expect("progress before the result");
    assert_eq!(note["method"], "notifications/progress");
    assert_eq!(note["params"]["progressToken"], "mine");
}

#[tokio::test]
async fn a_cancelled_request_is_cancelled() {
    let proxy = proxy().await;
    let c = caller(&proxy, Endpoint::Server("mem".into()));
    // Names known first (a cancelled first call cannot list them).
    let live = CancellationToken::new();
    proxy
        .handle(&c, "tools/list", json!({}), None, &live)
        .await
        .unwrap();
    let ct = CancellationToken::new();
    ct.cancel();
    let e = proxy
        .handle(
            &c,
            "tools/call",
            json!({ "name": "echo", "arguments": {} }),
            None,
            &ct,
        )
        .await
        .unwrap_err();
    assert_eq!((e.code, e.kind), (-32800, Kind::Cancelled));
    assert_eq!(metric_outcome(&Err::<Answer, _>(e)), "cancelled");
}

#[test]
fn audit_outcomes_come_from_the_kind_and_the_decision() {
    let err = |e: RpcError| Err::<Answer, _>(e);
    let ok = |v: Value| Ok(Answer::Value(v));
    let raw = |s: &str| Ok(Answer::Raw(serde_json::from_str(s).unwrap()));
    assert_eq!(
        audit_outcome(&ok(json!({ "isError": true })), Some("allow")),
        "tool_error"
    );
    assert_eq!(audit_outcome(&ok(json!({})), Some("allow")), "ok");
    // A passed-through result: only its flag is read.
    assert_eq!(
        audit_outcome(
            &raw(r#"{"content":[{"type":"text","text":"isError"}],"isError":true}"#),
            Some("allow")
        ),
        "tool_error"
    );
    assert_eq!(
        audit_outcome(&raw(r#"{"content":[],"isError":false}"#), Some("allow")),
        "ok"
    );
    assert_eq!(
        audit_outcome(&raw(r#"{"nested":{"isError":true}}"#), Some("allow")),
        "ok"
    );
    // The key spelled with escapes is still the key; text without it is not parsed.
    assert_eq!(
        audit_outcome(
            &raw(r#"{"content":[],"\u0069sErr\u006fr":true}"#),
            Some("allow")
        ),
        "tool_error"
    );
    assert_eq!(
        audit_outcome(
            &raw(r#"{"content":[{"type":"text","text":"hi"}]}"#),
            Some("allow")
        ),
        "ok"
    );
    assert_eq!(
        audit_outcome(&raw(r#"{"content":[],"isError":false}"#), Some("allow")),
        "ok"
    );
    assert_eq!(
        audit_outcome(
            &raw(r#"{"structuredContent":{"ok":true},"isError":false}"#),
            Some("allow")
        ),
        "ok"
    );
    assert_eq!(
        audit_outcome(
            &raw(r#"{"structuredContent":{"isError":true},"content":[]}"#),
            Some("allow")
        ),
        "ok"
    );
    assert_eq!(
        audit_outcome(
            &raw(r#"{"content":[{"type":"text","text":"true"}],"isError":true}"#),
            Some("allow")
        ),
        "tool_error"
    );
    assert_eq!(
        audit_outcome(&err(RpcError::unknown_tool("x")), Some("deny")),
        "denied"
    );
    assert_eq!(
        audit_outcome(&err(RpcError::unknown_tool("x")), None),
        "invalid"
    );
    assert_eq!(
        audit_outcome(&err(RpcError::denied("middleware", "no")), Some("deny")),
        "denied_by_middleware"
    );
    let timeout = upstream_error(
        "s",
        UpstreamError::Timeout(std::time::Duration::from_secs(1)),
    );
    assert_eq!(audit_outcome(&err(timeout), Some("allow")), "timeout");
    let gone = upstream_error("s", UpstreamError::Closed("upstream `s` exited".into()));
    assert_eq!(gone.message, "upstream `s` exited");
    assert_eq!(audit_outcome(&err(gone), Some("allow")), "unavailable");
    let theirs = upstream_error(
        "s",
        UpstreamError::Rpc(json!({ "code": -32602, "message": "bad" })),
    );
    assert_eq!(audit_outcome(&err(theirs), Some("allow")), "error");
}

#[test]
fn progress_tokens_and_the_new_envelope_are_stripped_before_forwarding() {
    let p = strip_progress(json!({ "a": 1, "_meta": {
        "progressToken": "t",
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {},
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/logLevel": "info"
    } }));
    assert_eq!(p, json!({ "a": 1 }));
    let p = strip_progress(json!({ "_meta": { "progressToken": "t", "keep": true } }));
    assert_eq!(p, json!({ "_meta": { "keep": true } }));
}

#[test]
fn modern_results_get_result_type_and_cache_hints() {
    let v = modernize(json!({ "tools": [] }), "tools/list");
    assert_eq!(
        v,
        json!({ "tools": [], "resultType": "complete", "ttlMs": 0, "cacheScope": "private" })
    );
    let v = modernize(
        json!({ "content": [], "resultType": "other" }),
        "tools/call",
    );
    assert_eq!(v, json!({ "content": [], "resultType": "other" }));
}

#[test]
fn events_of_isolated_connections_reach_only_their_session() {
    let key = ConnKey::shared(Arc::from("mem#00"));
    let ev = |connection: ConnKey| ServerEvent {
        server: "mem".into(),
        connection,
        event: Event::ToolsChanged,
    };
    assert!(ev(key.clone()).for_session(Some("a")));
    let mine = ev(key.clone().owned_by(Owner::Session("a".into())));
    assert!(mine.for_session(Some("a")) && !mine.for_session(Some("b")));
    assert!(!ev(key.owned_by(Owner::User("u".into()))).for_session(None));
}

#[test]
/// The caller carries the subject its request was authenticated with (`post` takes it
/// from `Authed` per request), so after a reload a session's records name the new one.
fn a_records_subject_is_the_callers_shared_subject_and_key_id_not_a_copy() {
    let engine = |groups: serde_json::Value| -> crate::policy::Engine {
        let c: Config = serde_json::from_value(json!({
            "servers": [{ "name": "mem", "transport": { "stdio": { "command": "unused" } } }],
            "groups": groups,
        }))
        .unwrap();
        crate::policy::Engine::compile(&c).0
    };
    let before = engine(json!([{ "id": "g", "users": ["alice"], "policy": { "rules": [] } }]));
    let mut caller = Caller {
        subject: before.shared_subject("alice"),
        endpoint: Endpoint::All,
        modern: false,
        session: None,
        info: Arc::new(CallerInfo::new("key_1", Some("10.0.0.1".into()))),
    };
    let a = subject_ref(&caller);
    assert!(
        Arc::ptr_eq(&a.subject, &caller.subject),
        "no copy of the subject"
    );
    let (Some(k), Some(info_k)) = (&a.key_id, &caller.info.key_id) else {
        panic!("a key id")
    };
    assert!(Arc::ptr_eq(k, info_k), "no copy of the key id");
    let text = |r: SubjectRef| {
        let mut rec = crate::audit::Record::new("request");
        rec.subject = Some(r);
        serde_json::from_str::<Value>(&rec.to_json()).unwrap()["subject"].clone()
    };
    assert_eq!(
        text(a),
        json!({ "id": "alice", "groups": ["g"], "keyId": "key_1" })
    );
    // The caller of a request after a reload: the record names the new groups.
    let after = engine(json!([
        { "id": "g", "users": ["alice"], "policy": { "rules": [] } },
        { "id": "h", "users": ["alice"], "policy": { "rules": [] } }
    ]));
    caller.subject = after.shared_subject("alice");
    assert_eq!(
        text(subject_ref(&caller)),
        json!({ "id": "alice", "groups": ["g", "h"], "keyId": "key_1" })
    );
}

/// The futures every call builds carry no cold path: the dispatch future is moved into a new
/// box per request, so its size is bytes copied (and cache lines touched) per call. Paths a
/// plain `tools/call` does not take (lists, resources, completion, custom methods, listing
/// and pinning checks, connecting) are boxed where they are awaited; relaying (progress,
/// requests to the client) is not, as every call of an SSE client takes it
/// (bench/PROFILE.md, round seven).
/// Measured with rustc 1.95, the same in the test and the release profiles: dispatch 2368 B,
/// handle_answer 576 B. The bounds leave 3 % and 10 %: lists, resources or completion
/// awaited unboxed grow dispatch past its bound (paths smaller than relaying do not grow it
/// at all). A new compiler may move these numbers: re-measure then (the test prints them).
#[tokio::test]
async fn a_calls_futures_carry_no_cold_paths() {
    let proxy = proxy().await;
    let ct = CancellationToken::new();
    let c = caller(&proxy, Endpoint::Server("mem".into()));
    let dispatch = proxy.dispatch(&c, "tools/call", json!({}), None, &ct);
    let answer = proxy.handle_answer(&c, "tools/call", json!({}), None, &ct);
    let sizes = (size_of_val(&dispatch), size_of_val(&answer));
    eprintln!(
        "future sizes: dispatch {} B, handle_answer {} B",
        sizes.0, sizes.1
    );
    assert!(sizes.0 <= 2440, "dispatch's future is {} B", sizes.0);
    assert!(sizes.1 <= 640, "handle_answer's future is {} B", sizes.1);
}
