//! Attack class: uri (see tests/e2e_adversary.rs).
//!
//! A deny on a resource must hold for every spelling of its URI that the upstream's parser
//! reads as that resource. The upstream (tests/e2e/uri_server.mjs) is the official TypeScript
//! SDK's McpServer, which looks resources up by `new URL(uri).toString()` (WHATWG); its
//! subscribe and completion handlers read URIs the same way and record what they were asked.
//! Every spelling must be denied (-32002) or refused by Fentaris (-32602 "invalid resource
//! URI"), never answered by the upstream, and no secret text may come back; `policy explain`
//! must give the same answer as `serve`.

use serde_json::{Value, json};

use crate::support::*;

const CANARIES: [&str; 3] = ["SECRET-ENV-CANARY", "SECRET-HTTPS-CANARY", "PRIVATE-CANARY"];

fn config() -> Value {
    json!({
        "servers": [{ "name": "uris", "transport": { "stdio": {
            "command": "node", "args": [repo().join("tests/e2e/uri_server.mjs")] } } }],
        "policy": { "rules": [
            { "mcp": "uris", "allowCapability": { "operation": "resource:read" } },
            { "mcp": "uris", "allowCapability": { "operation": "resource:subscribe" } },
            { "mcp": "uris", "allowCapability": { "operation": "resources:list" } },
            { "mcp": "uris", "allowCapability": { "operation": "completion:complete", "targetKind": "resourceTemplate" } },
            { "mcp": "uris", "allow": "seen" },
            { "mcp": "uris", "denyCapability": { "operation": "*", "target": "file:///srv/secrets.env" } },
            { "mcp": "uris", "denyCapability": { "operation": "*", "target": "https://example.com/secret" } },
            { "mcp": "uris", "denyCapability": { "operation": "*", "target": "file:///srv/private/*" } }
        ] },
        "groups": [{ "id": "g", "users": [{ "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] }] }]
    })
}

/// Spellings that a WHATWG parser (or a file server) reads as a denied resource, or that
/// parsers read differently.
fn secret_spellings() -> Vec<String> {
    let mut v: Vec<String> = [
        // file:///srv/secrets.env
        "file:///srv/secrets.env",
        "file://localhost/srv/secrets.env",
        "file://LOCALHOST/srv/secrets.env",
        "file:/srv/secrets.env",
        "file:srv/secrets.env",
        "file:/srv/./secrets.env",
        "FILE:///srv/secrets.env",
        "File:///srv/secrets.env",
        "file:///srv/./secrets.env",
        "file:///srv/x/../secrets.env",
        "file:///x/../srv/secrets.env",
        "file:///srv/%2e/secrets.env",
        "file:///srv/%2E%2E/srv/secrets.env",
        "file:///srv/.%2e/srv/secrets.env",
        "file:///srv/%73ecrets.env",
        "file:///srv/secrets%2Eenv",
        "file:///%73%72%76/secrets.env",
        "file:///srv/secrets.env#x",
        "file:///srv/secrets.env#",
        "file:///srv/secrets.env?x=1",
        "file:////srv/secrets.env",
        "file:///srv//secrets.env",
        "file://evil.example/srv/secrets.env",
        "file://127.0.0.1/srv/secrets.env",
        "file:///srv\\secrets.env",
        "file:\\\\\\srv\\secrets.env",
        "file:///srv/sec\trets.env",
        "file:///srv/secrets.env\n",
        "file:///srv/secr\r\nets.env",
        " file:///srv/secrets.env",
        "file:///srv/secrets.env ",
        "\u{0}file:///srv/secrets.env",
        "file:///srv/secrets.env\u{1f}",
        "file:///../srv/secrets.env",
        "file:///srv/secrets.env%00",
        // https://example.com/secret
        "https://example.com/secret",
        "HTTPS://EXAMPLE.COM/secret",
        "https://Example.Com/secret",
        "https://example.com:443/secret",
        "https://example.com:0443/secret",
        "https://example.com:/secret",
        "https:example.com/secret",
        "https:/example.com/secret",
        "https:///example.com/secret",
        "https:\\\\example.com\\secret",
        "https://example.com\\secret",
        "https://example.com/./secret",
        "https://example.com/a/../secret",
        "https://example.com/%2e/secret",
        "https://example.com/%2E%2E/secret",
        "https://example.com/%73ecret",
        "https://example.com/%73%65%63%72%65%74",
        "https://ex%61mple.com/secret",
        "https://EXA%4Dple.com/secret",
        "https://example.com/sec\tret",
        "https://exam\nple.com/secret",
        "https://user@example.com/secret",
        "https://user:pw@example.com/secret",
        "https://@example.com/secret",
        "https://example.com@example.com/secret",
        "https://example.com./secret",
        "https://example.com/secret#top",
        "https://ｅxample.com/secret",
        "https://%EF%BD%85xample.com/secret",
        "https://exa\u{AD}mple.com/secret",
        "https://exa%C2%ADmple.com/secret",
        "https://EXAMPLE.COM/%73%65cret?#",
        "https://EXAMPLE.COM:443/./%73ecret#frag",
        " https://example.com/secret",
        "https://example.com/secret\r\n",
        // the glob file:///srv/private/*
        "file:///srv/private/key.pem",
        "file://localhost/srv/private/key.pem",
        "file:/srv/private/key.pem",
        "file:srv/private/key.pem",
        "FILE:///srv/private/key.pem",
        "file:///srv/public/../private/key.pem",
        "file:///srv/%70rivate/key.pem",
        "file:///srv/./private/key.pem",
        "file:///srv//private/key.pem",
        "file:///srv/private/%2e%2e/private/key.pem",
        "file:///srv\\private\\key.pem",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    // Every spelling also as a non-ASCII variant of its last letter would only name other
    // resources; keep the list to what names the denied ones.
    v.dedup();
    v
}

/// One session's JSON-RPC calls over one HTTP client (a client per call would dominate the
/// run time: there are several hundred calls).
struct Rpc {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    url: String,
    sid: String,
}

impl Rpc {
    fn new(url: String) -> Rpc {
        let sid = raw_session(&url, ALICE);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Rpc {
            rt,
            client: reqwest::Client::new(),
            url,
            sid,
        }
    }

    fn call(&self, method: &str, params: Value) -> Value {
        let msg = json!({"jsonrpc": "2.0", "id": 2, "method": method, "params": params});
        let body = self.rt.block_on(async {
            let resp = self
                .client
                .post(&self.url)
                .timeout(std::time::Duration::from_secs(60))
                .header("x-fentaris-api-key", ALICE)
                .header("mcp-session-id", &self.sid)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(msg.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.text().await.unwrap()
        });
        rpc_body(&body)
    }
}

/// The outcome is a denial (-32002) or a refusal by Fentaris (-32602 invalid resource URI):
/// never an upstream answer or an upstream error.
fn assert_blocked(what: &str, spelling: &str, resp: &Value) -> &'static str {
    let text = resp.to_string();
    for c in CANARIES {
        assert!(!text.contains(c), "{what} {spelling:?} leaked {c}: {text}");
    }
    let code = resp["error"]["code"].as_i64();
    let msg = resp["error"]["message"].as_str().unwrap_or("");
    match code {
        Some(-32002) if msg.starts_with("Resource not found") => "denied",
        Some(-32602) if msg.starts_with("invalid resource URI") => "refused",
        _ => panic!("{what} {spelling:?} was not blocked by Fentaris: {text}"),
    }
}

#[test]
fn every_spelling_of_a_denied_resource_is_denied_or_refused() {
    if !ready() {
        return;
    }
    let s = serve(&config(), &[("ALICE_KEY", ALICE)]);
    let rpc = Rpc::new(s.url("/mcp/uris"));
    let call = |method: &str, params: Value| rpc.call(method, params);

    // The public resources still read, in canonical and equivalent spellings.
    for (uri, want) in [
        ("file:///srv/public.txt", "PUBLIC-FILE"),
        ("file://localhost/srv/public.txt", "PUBLIC-FILE"),
        ("file:/srv/./public.txt", "PUBLIC-FILE"),
        ("https://example.com/public", "PUBLIC-PAGE"),
        ("HTTPS://EXAMPLE.COM:443/%70ublic", "PUBLIC-PAGE"),
    ] {
        let r = call("resources/read", json!({ "uri": uri }));
        assert_eq!(
            r["result"]["contents"][0]["text"], want,
            "public {uri}: {r}"
        );
    }
    let r = call(
        "resources/subscribe",
        json!({ "uri": "file://localhost/srv/public.txt" }),
    );
    assert_eq!(r["result"], json!({}), "{r}");
    // A completion on a public resource is forwarded with the canonical URI.
    let r = call(
        "completion/complete",
        json!({ "ref": { "type": "ref/resource", "uri": "FILE:/srv/public.txt#x" },
                "argument": { "name": "name", "value": "" } }),
    );
    assert_eq!(
        r["result"]["completion"]["values"],
        json!(["nothing-secret"]),
        "{r}"
    );
    // A template under a denied glob is denied; one with non-canonical literal parts refused.
    for (template, want) in [
        ("file:///srv/private/{name}", "denied"),
        ("FILE:///srv/private/{name}", "refused"),
        ("file://localhost/srv/private/{name}", "refused"),
    ] {
        let r = call(
            "completion/complete",
            json!({ "ref": { "type": "ref/resource", "uri": template },
                    "argument": { "name": "name", "value": "" } }),
        );
        assert_eq!(assert_blocked("completion/complete", template, &r), want);
    }

    let spellings = secret_spellings();
    let mut outcomes = Vec::new();
    for sp in &spellings {
        let read = assert_blocked(
            "resources/read",
            sp,
            &call("resources/read", json!({ "uri": sp })),
        );
        let sub = assert_blocked(
            "resources/subscribe",
            sp,
            &call("resources/subscribe", json!({ "uri": sp })),
        );
        let unsub = assert_blocked(
            "resources/unsubscribe",
            sp,
            &call("resources/unsubscribe", json!({ "uri": sp })),
        );
        let complete = call(
            "completion/complete",
            json!({ "ref": { "type": "ref/resource", "uri": sp },
                    "argument": { "name": "name", "value": "" } }),
        );
        let comp = assert_blocked("completion/complete", sp, &complete);
        assert_eq!(read, sub, "{sp:?}: read and subscribe disagree");
        assert_eq!(read, unsub, "{sp:?}: read and unsubscribe disagree");
        assert_eq!(read, comp, "{sp:?}: read and completion disagree");
        outcomes.push(read);
    }
    // Both outcomes occur: canonical spellings are denied by policy, the others refused.
    assert!(outcomes.contains(&"denied") && outcomes.contains(&"refused"));

    // The upstream was never asked about a secret resource, in any spelling.
    let seen = call("tools/call", json!({ "name": "seen", "arguments": {} }));
    let seen: Vec<String> =
        serde_json::from_str(seen["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        seen,
        vec![
            "subscribe file:///srv/public.txt",
            "complete file:///srv/public.txt"
        ],
        "{seen:?}"
    );

    // The aggregated endpoint routes by the canonical URI and decides the same.
    let all = Rpc::new(s.url("/mcp"));
    let listed = all.call("resources/list", json!({}));
    let uris: Vec<&str> = listed["result"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["uri"].as_str())
        .collect();
    assert!(uris.contains(&"file:///srv/public.txt"), "{listed}");
    assert!(!uris.contains(&"file:///srv/secrets.env"), "{listed}");
    let r = all.call(
        "resources/read",
        json!({ "uri": "file://localhost/srv/public.txt" }),
    );
    assert_eq!(r["result"]["contents"][0]["text"], "PUBLIC-FILE", "{r}");
    for sp in &spellings {
        let r = all.call("resources/read", json!({ "uri": sp }));
        assert_blocked("resources/read on /mcp", sp, &r);
    }

    // `policy explain` agrees with serve on every spelling.
    for (sp, outcome) in spellings.iter().zip(&outcomes) {
        if sp.contains('\0') {
            continue; // argv cannot carry NUL
        }
        let out = fentaris_cmd(s.dir())
            .args(["policy", "explain", "--user", "alice", "--server", "uris"])
            .args([
                "--operation",
                "resource:read",
                "--target",
                sp,
                "--format",
                "json",
            ])
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{sp:?}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(v["decision"], "deny", "{sp:?}: {v}");
        let refused = v["reason"]
            .as_str()
            .unwrap_or("")
            .starts_with("target refused");
        assert_eq!(
            refused,
            *outcome == "refused",
            "{sp:?}: explain says {} but serve {outcome}",
            v["reason"]
        );
    }
    for uri in [
        "file://localhost/srv/public.txt",
        "HTTPS://EXAMPLE.COM:443/%70ublic",
    ] {
        let out = fentaris_cmd(s.dir())
            .args(["policy", "explain", "--user", "alice", "--server", "uris"])
            .args([
                "--operation",
                "resource:read",
                "--target",
                uri,
                "--format",
                "json",
            ])
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["decision"], "allow", "{uri}: {v}");
    }
}
