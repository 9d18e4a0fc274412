//! Lists on `/mcp` (issue 16, item 6): every server's pages gathered into one answer up to
//! `limits.maxListItems`, so a client that never follows `nextCursor` (the Python SDK's
//! `list_tools()`) sees every server; past the bound, cursors resume at the exact item.

mod support;

use serde_json::{Value, json};
use support::*;

/// A stdio upstream with `count` tools, prompts, resources and templates, `page` per page.
fn lists_server(name: &str, prefix: &str, count: usize, page: usize) -> Value {
    json!({ "name": name, "transport": { "stdio": { "command": python(), "args": [
        repo().join("tests/e2e/lists_upstream.py"), prefix, count.to_string(), page.to_string()
    ] } } })
}

#[test]
fn a_client_that_never_follows_cursors_sees_and_calls_every_server() {
    if !ready() {
        return;
    }
    let config = json!({
        "servers": [
            { "name": "everything", "transport": { "stdio": { "command": "node", "args": [everything_js()] } } },
            lists_server("pages", "pg", 5, 2)
        ],
        "groups": [{ "id": "g", "users": [{ "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] }],
            "policy": { "rules": [
                { "mcp": "everything", "allow": "echo" },
                { "mcp": "everything", "allowCapability": { "operation": "prompt:get", "target": "simple-prompt" } },
                { "mcp": "pages", "allow": "*" },
                { "mcp": "pages", "deny": "pg-t1" },
                { "mcp": "pages", "allowCapability": { "operation": "prompt:get", "target": "*" } },
                { "mcp": "pages", "allowCapability": { "operation": "resource:read", "target": "pg://r/*" } }
            ] } }]
    });
    let s = serve(&config, &[("ALICE_KEY", ALICE)]);
    let steps = json!([
        {"op": "list_tools"},
        {"op": "call_tool", "name": "pages__pg-t4", "args": {}},
        {"op": "list_prompts"},
        {"op": "get_prompt", "name": "pages__pg-p3"},
        {"op": "list_resources"},
        {"op": "read_resource", "uri": "pg://r/4"},
        {"op": "call_tool", "name": "pages__pg-t1", "args": {}}
    ]);
    for mode in ["legacy", "auto"] {
        let r = py(&s.url("/mcp"), ALICE, mode, &steps, None);
        let tools = ok(&r[0]);
        assert_eq!(
            names(tools, "tools", "name"),
            [
                "everything__echo",
                "pages__pg-t0",
                "pages__pg-t2",
                "pages__pg-t3",
                "pages__pg-t4"
            ],
            "{mode}: one answer holds both servers, every upstream page"
        );
        assert!(tools.get("nextCursor").is_none(), "{mode}: {tools}");
        assert_eq!(ok(&r[1])["content"][0]["text"], "pg called pg-t4", "{mode}");
        let prompts = names(ok(&r[2]), "prompts", "name");
        assert_eq!(prompts[0], "everything__simple-prompt", "{mode}");
        assert_eq!(
            prompts[1..],
            (0..5)
                .map(|i| format!("pages__pg-p{i}"))
                .collect::<Vec<_>>(),
            "{mode}"
        );
        assert_eq!(
            ok(&r[3])["messages"][0]["content"]["text"],
            "pg prompt pg-p3"
        );
        assert_eq!(
            names(ok(&r[4]), "resources", "uri"),
            (0..5).map(|i| format!("pg://r/{i}")).collect::<Vec<_>>(),
            "{mode}"
        );
        assert_eq!(ok(&r[5])["contents"][0]["text"], "pg read pg://r/4");
        // Policy still filters the gathered list: the denied tool is neither listed nor
        // callable.
        assert_eq!(err(&r[6]).0, -32602, "{mode}");
    }
}

/// Follow the cursors of `method` on `/mcp`; every answer's item names (by `field`).
fn follow(url: &str, sid: &str, method: &str, key: &str, field: &str) -> Vec<Vec<String>> {
    let mut answers = Vec::new();
    let mut params = json!({});
    loop {
        let r = raw_call(url, ALICE, sid, method, params.clone());
        let result = &r["result"];
        assert!(result.is_object(), "{method}: {r}");
        answers.push(names(result, key, field));
        match result.get("nextCursor") {
            Some(c) => params = json!({ "cursor": c }),
            None => return answers,
        }
        assert!(answers.len() < 100, "{method}: the cursors do not end");
    }
}

#[test]
fn past_the_item_bound_cursors_page_without_losing_or_repeating_items() {
    if !ready() {
        return;
    }
    let config = json!({
        "limits": { "maxListItems": 3 },
        "servers": [
            lists_server("a", "a", 7, 2),
            lists_server("empty", "e", 0, 2),
            lists_server("b", "b", 4, 3)
        ],
        "groups": [{ "id": "g", "users": [{ "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] }],
            "policy": { "rules": [
                { "mcp": "*", "allow": "*" },
                { "mcp": "a", "deny": "a-t3" },
                { "mcp": "*", "allowCapability": { "operation": "prompt:get", "target": "*" } }
            ] } }]
    });
    let s = serve(&config, &[("ALICE_KEY", ALICE)]);
    let url = s.url("/mcp");
    let sid = raw_session(&url, ALICE);

    let tools = follow(&url, &sid, "tools/list", "tools", "name");
    let want: Vec<String> = [0, 1, 2, 4, 5, 6]
        .iter()
        .map(|i| format!("a__a-t{i}"))
        .chain((0..4).map(|i| format!("b__b-t{i}")))
        .collect();
    assert_eq!(tools.concat(), want, "{tools:?}");
    assert_eq!(
        tools.iter().map(Vec::len).collect::<Vec<_>>(),
        [3, 3, 3, 1],
        "{tools:?}"
    );
    let prompts = follow(&url, &sid, "prompts/list", "prompts", "name");
    let want: Vec<String> = (0..7)
        .map(|i| format!("a__a-p{i}"))
        .chain((0..4).map(|i| format!("b__b-p{i}")))
        .collect();
    assert_eq!(prompts.concat(), want, "{prompts:?}");
    assert!(prompts.iter().all(|a| a.len() <= 3), "{prompts:?}");

    // A tool first listed on a later answer is callable.
    let r = raw_call(
        &url,
        ALICE,
        &sid,
        "tools/call",
        json!({ "name": "b__b-t3", "arguments": {} }),
    );
    assert_eq!(r["result"]["content"][0]["text"], "b called b-t3", "{r}");

    // A cursor belongs to its list and its subject: tools' cursor is refused by prompts/list.
    let first = raw_call(&url, ALICE, &sid, "tools/list", json!({}));
    let cursor = first["result"]["nextCursor"].clone();
    assert!(cursor.is_string(), "{first}");
    let r = raw_call(
        &url,
        ALICE,
        &sid,
        "prompts/list",
        json!({ "cursor": cursor }),
    );
    assert_eq!(r["error"]["code"], -32602, "{r}");

    // The Python SDK's list_tools() without following: the first answer, with its cursor.
    let r = py(&url, ALICE, "legacy", &json!([{"op": "list_tools"}]), None);
    assert_eq!(
        names(ok(&r[0]), "tools", "name"),
        ["a__a-t0", "a__a-t1", "a__a-t2"]
    );
    assert!(ok(&r[0])["nextCursor"].is_string(), "{}", r[0]);
}

#[test]
fn first_pages_of_the_servers_are_read_concurrently() {
    if !ready() {
        return;
    }
    // Four upstreams that take 700 ms per list page: read one after another, an answer
    // would take 2.8 s.
    let servers: Vec<Value> = (0..4)
        .map(|i| {
            let mut s = lists_server(&format!("s{i}"), "x", 2, 5);
            s["transport"]["stdio"]["args"]
                .as_array_mut()
                .unwrap()
                .push(json!("700"));
            s
        })
        .collect();
    let config = json!({
        "servers": servers,
        "groups": [{ "id": "g", "users": [{ "id": "alice", "apiKeys": [{ "env": "ALICE_KEY" }] }],
            "policy": { "rules": [{ "mcp": "*", "allow": "*" }] } }]
    });
    let s = serve(&config, &[("ALICE_KEY", ALICE)]);
    let url = s.url("/mcp");
    let sid = raw_session(&url, ALICE);
    let t = std::time::Instant::now();
    let r = raw_call(&url, ALICE, &sid, "tools/list", json!({}));
    let took = t.elapsed();
    eprintln!("four 700 ms upstreams listed in {took:?}");
    assert_eq!(names(&r["result"], "tools", "name").len(), 8, "{r}");
    assert!(r["result"].get("nextCursor").is_none(), "{r}");
    assert!(took < std::time::Duration::from_millis(2100), "{took:?}");
}
