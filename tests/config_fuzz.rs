//! Random mutations of valid configs never panic the loader or the checker.
//!
//! Starting from the example configs, proptest applies byte/char-level mutations (delete,
//! insert, duplicate, truncate, flip bytes) and structural ones (replace, remove or insert JSON
//! values at random pointers, with values of random types: nasty strings, huge numbers, deep
//! arrays, plausible rules, servers and groups). Every mutated text goes through
//! `config::check_source`, the diagnostic renderers and, when it parses, `Engine::compile`,
//! decisions, explanations and list filtering. The only assertions beyond "no panic" are cheap
//! consistency checks (an explanation reports the same effect as the decision).

use fentaris::config::{self, CheckOutcome, Config};
use fentaris::diagnostics::{Report, render_github, render_human, render_json, render_sarif};
use fentaris::policy::{Effect, Engine, Operation, Reason, Request, TargetKind};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Map, Value};

const EXAMPLE: &str = include_str!("../.fentaris.example/config.json");
const REFERENCE: &str = include_str!("../.fentaris.example/reference.json");

fn sources() -> [&'static str; 2] {
    [EXAMPLE, REFERENCE]
}

fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Keep the tree clean: a failure prints its minimal input, which is all we need.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Exercising the loader, the checker and the engine
// ---------------------------------------------------------------------------------------------

/// Check a text the way `fentaris config check` / `policy check` would, and use the result.
fn exercise(text: &str) -> CheckOutcome {
    let outcome = config::check_source(text);
    render(text, &outcome);
    if let Some(cfg) = &outcome.config {
        exercise_config(cfg);
    }
    outcome
}

fn render(text: &str, outcome: &CheckOutcome) {
    let report = Report {
        file: "config.json",
        source: text,
        diagnostics: &outcome.diagnostics,
    };
    let _ = render_human(&report, false);
    let _ = render_human(&report, true);
    let _ = render_json(&report);
    let _ = render_sarif(&report);
    let _ = render_github(&report);
    for d in &outcome.diagnostics {
        let _ = outcome.spans.value_span(&d.pointer);
        let _ = outcome.spans.key_span(&d.pointer);
        let _ = outcome.spans.contains(&d.pointer);
    }
}

/// Every string a rule mentions (tool names, targets), so decisions hit the rules.
fn rule_strings(cfg: &Config) -> Vec<String> {
    let mut rules: Vec<&config::Rule> = cfg.policies.iter().flat_map(|p| p.rules.iter()).collect();
    let inline = |r: &Option<config::PolicyRef>| match r {
        Some(config::PolicyRef::Inline(p)) => p.rules.clone(),
        _ => Vec::new(),
    };
    let mut owned: Vec<config::Rule> = cfg.groups.iter().flat_map(|g| inline(&g.policy)).collect();
    owned.extend(inline(&cfg.policy));
    rules.extend(owned.iter());
    let mut out = Vec::new();
    for r in rules {
        for list in [&r.allow, &r.deny].into_iter().flatten() {
            out.extend(list.as_slice().iter().cloned());
        }
        for cap in [&r.allow_capability, &r.deny_capability]
            .into_iter()
            .flatten()
        {
            out.extend(cap.target.clone());
            out.push(cap.operation.clone());
        }
        out.push(r.mcp.clone());
    }
    out
}

fn exercise_config(cfg: &Config) {
    let (engine, _diags) = Engine::compile(cfg);

    // A bounded sample, so each case stays in the low milliseconds in a debug build.
    let mut users: Vec<String> = cfg
        .groups
        .iter()
        .flat_map(|g| g.users.iter().map(|u| u.id().to_string()))
        .take(1)
        .collect();
    users.push("nobody".into());
    let mut servers: Vec<String> = cfg.servers.iter().map(|s| s.name.clone()).take(1).collect();
    servers.extend(
        cfg.groups
            .iter()
            .flat_map(|g| g.servers.iter().map(|s| s.name.clone()))
            .take(1),
    );
    servers.push("nope".into());
    let mut targets: Vec<String> = rule_strings(cfg);
    targets.sort();
    targets.dedup();
    targets.truncate(4);
    targets
        .extend(["read_file", "FILE:///srv/shared/public/./x", "file:///../x"].map(String::from));

    let custom = Operation::Custom("tasks/get".into());
    for user in &users {
        let subject = engine.subject(user);
        let _ = engine.visible_servers(&subject);
        let _ = engine.is_declared_user(user);
        for server in &servers {
            check_request(
                &engine,
                &subject,
                &Request::server_op(server, Operation::LoggingSetLevel),
                true,
            );
            check_request(
                &engine,
                &subject,
                &Request::server_op(server, custom.clone()),
                false,
            );
            check_request(
                &engine,
                &subject,
                &Request::list(server, Operation::ResourcesList),
                false,
            );
            for (i, t) in targets.iter().enumerate() {
                // Explanations are the costly part: one per target, alternating kinds.
                check_request(
                    &engine,
                    &subject,
                    &Request::tool_call(server, t),
                    i % 2 == 0,
                );
                check_request(&engine, &subject, &Request::prompt_get(server, t), false);
                if let Ok(r) =
                    Request::new(server, Operation::ResourceRead, t, TargetKind::Resource)
                {
                    check_request(&engine, &subject, &r, i % 2 == 1);
                }
                if let Ok(r) = Request::new(
                    server,
                    Operation::CompletionComplete,
                    t,
                    TargetKind::ResourceTemplate,
                ) {
                    check_request(&engine, &subject, &r, false);
                }
            }
            for op in [
                Operation::ToolsList,
                Operation::PromptsList,
                Operation::ResourcesList,
                Operation::ResourceTemplatesList,
                Operation::ToolCall,
                custom.clone(),
            ] {
                if let Some(view) = engine.list_view(&subject, server, &op) {
                    let _ = view.filter(targets.iter(), |t| t.as_str());
                }
            }
        }
    }
}

fn check_request(
    engine: &Engine,
    subject: &fentaris::policy::Subject,
    req: &Request,
    explain: bool,
) {
    let d = engine.decide(subject, req);
    if let Reason::Rule(r) = d.reason {
        let info = engine.rule_info(r).expect("a deciding rule has info");
        assert_eq!(
            info.effect, d.effect,
            "the deciding rule's effect is the decision's"
        );
    }
    if d.effect == Effect::Allow {
        assert!(
            matches!(d.reason, Reason::Rule(_)),
            "an allow is always decided by a rule"
        );
    }
    let _ = engine.deciding_group(&d);
    if explain {
        let ex = engine.explain(subject, req);
        assert_eq!(
            ex.decision, d.effect,
            "explain and decide disagree on {req:?}"
        );
        let _ = serde_json::to_string(&ex).expect("explanations serialize");
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies: nasty strings and random JSON values
// ---------------------------------------------------------------------------------------------

const NASTY: &[&str] = &[
    "",
    " ",
    "*",
    "**",
    "?",
    "[",
    "]",
    "[!a]",
    "[z-a]",
    "{",
    "}",
    "{a,",
    "{a,{b,c}}",
    "\\",
    "*[{\\",
    "a\\",
    "t*",
    "read_*",
    "custom:",
    "custom:*",
    "custom:tasks/get",
    "custom:x",
    "tool:call",
    "tools:list",
    "resource:read",
    "resources:list",
    "resourceTemplates:list",
    "prompt:get",
    "prompt*",
    "resource*",
    "completion:complete",
    "logging:setLevel",
    "x:y",
    "tool",
    "resource",
    "resourceTemplate",
    "prompt",
    "server",
    "Tool",
    "filesystem",
    "everything",
    "github",
    "readers",
    "editors",
    "alice",
    "reader",
    "editor",
    "production",
    "file:///secrets.env",
    "file:///../etc/passwd",
    "file:///a/../../b",
    "file:///a/%2F..%2Fb",
    "file:///a%5Cb",
    "file:///%2e%2e/x",
    "FILE:///A/./b/../c",
    "file:///srv/shared/public/*",
    "demo://resource/dynamic/blob/*",
    "http://[::1",
    "http://",
    "https://x.example/mcp",
    "http://10.0.0.1/mcp",
    "127.0.0.1:0",
    "[::1]:99999",
    "0.0.0.0:8765",
    "1s",
    "0ms",
    "999999999999999999999d",
    "-1s",
    "{subject.id}",
    "{subject.nope}",
    "{",
    "${HOME}",
    "FENTARIS_MASTER_KEY",
    "A=B",
    "\u{0}",
    "\u{1b}[31mred",
    "\r\n",
    "\u{202e}evil",
    "\u{feff}",
    "é",
    "𝕏🦀",
    "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB",
    "sk-live-0123456789abcdef0123456789abcdef",
    "~0~1/",
    "/groups/0",
    "a/b~c",
];

fn nasty_string() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(NASTY).prop_map(String::from),
        1 => any::<String>(),
        1 => "[a-z0-9*?/:.%~-]{0,12}",
        1 => (1usize..2000).prop_map(|n| "a".repeat(n)),
        1 => prop::collection::vec(any_char(), 0..8).prop_map(String::from_iter),
    ]
    .boxed()
}

/// Any character, with control characters, BOMs and multi-byte characters made likely.
fn any_char() -> BoxedStrategy<char> {
    prop_oneof![
        3 => any::<char>(),
        1 => prop::char::range('\0', '\u{1f}'),
        1 => prop::sample::select(vec!['\u{7f}', '\u{85}', '\u{a0}', '\u{2028}', '\u{feff}', '\u{fffd}', 'é', '€', '𝕏', '"', '\\', '{', '}', '[', ']', ',', ':']),
    ]
    .boxed()
}

const KEYS: &[&str] = &[
    "$schema",
    "description",
    "listen",
    "adminListen",
    "autoLog",
    "identity",
    "apiKeyHeader",
    "allowedHosts",
    "trustedHeaders",
    "servers",
    "name",
    "transport",
    "stdio",
    "streamableHttp",
    "command",
    "args",
    "env",
    "cwd",
    "inheritEnv",
    "url",
    "auth",
    "bearer",
    "headers",
    "envHeaderMap",
    "resolveHeaders",
    "isolation",
    "timeouts",
    "connect",
    "request",
    "policies",
    "rules",
    "mcp",
    "allow",
    "deny",
    "allowCapability",
    "denyCapability",
    "operation",
    "target",
    "targetKind",
    "groups",
    "id",
    "users",
    "tenantId",
    "apiKeys",
    "policy",
    "credentials",
    "vault",
    "credential",
    "middleware",
    "argumentSchema",
    "externalAuthorizer",
    "tool",
    "schema",
    "audit",
    "path",
    "sink",
    "onFailure",
    "maxFileBytes",
    "keepFiles",
    "comand",
    "",
    "~",
    "/",
];

fn json_key() -> BoxedStrategy<String> {
    prop_oneof![4 => prop::sample::select(KEYS).prop_map(String::from), 1 => nasty_string()].boxed()
}

fn nested_arrays(depth: usize) -> Value {
    let mut v = Value::Array(Vec::new());
    for _ in 0..depth {
        v = Value::Array(vec![v]);
    }
    v
}

fn json_leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(Value::from),
        1 => prop::sample::select(vec![
            Value::from(u64::MAX),
            Value::from(i64::MIN),
            Value::from(u32::MAX as u64 + 1),
            Value::from(f64::MAX),
            Value::from(-0.0),
            Value::from(1e-300),
            Value::from(0),
            Value::from(-1),
        ]),
        4 => nasty_string().prop_map(Value::String),
    ]
    .boxed()
}

fn json_value() -> BoxedStrategy<Value> {
    let tree = json_leaf().prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((json_key(), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    });
    prop_oneof![
        6 => tree,
        // Around serde_json's recursion limit (128) and beyond.
        1 => (0usize..300).prop_map(nested_arrays),
        2 => plausible_rule(),
        1 => plausible_server(),
        1 => plausible_group(),
    ]
    .boxed()
}

fn string_or_list() -> BoxedStrategy<Value> {
    prop_oneof![
        nasty_string().prop_map(Value::String),
        prop::collection::vec(nasty_string().prop_map(Value::String), 0..4).prop_map(Value::Array),
    ]
    .boxed()
}

fn capability() -> BoxedStrategy<Value> {
    (
        nasty_string(),
        prop::option::of(nasty_string()),
        prop::option::of(nasty_string()),
    )
        .prop_map(|(op, target, kind)| {
            let mut m = Map::new();
            m.insert("operation".into(), op.into());
            if let Some(t) = target {
                m.insert("target".into(), t.into());
            }
            if let Some(k) = kind {
                m.insert("targetKind".into(), k.into());
            }
            Value::Object(m)
        })
        .boxed()
}

/// A rule object with the right field names, so it often survives parsing and reaches the
/// compiler with nasty globs, operations, kinds and URIs.
fn plausible_rule() -> BoxedStrategy<Value> {
    (
        nasty_string(),
        prop::option::of(string_or_list()),
        prop::option::of(string_or_list()),
        prop::option::of(capability()),
        prop::option::of(capability()),
    )
        .prop_map(|(mcp, allow, deny, ac, dc)| {
            let mut m = Map::new();
            m.insert("mcp".into(), mcp.into());
            for (k, v) in [
                ("allow", allow),
                ("deny", deny),
                ("allowCapability", ac),
                ("denyCapability", dc),
            ] {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            }
            Value::Object(m)
        })
        .boxed()
}

fn plausible_server() -> BoxedStrategy<Value> {
    (nasty_string(), nasty_string(), any::<bool>()).prop_map(|(name, x, http)| {
        let transport = if http {
            serde_json::json!({ "streamableHttp": { "url": x } })
        } else {
            serde_json::json!({ "stdio": { "command": x, "env": { "K": { "env": "FENTARIS_X" } } } })
        };
        serde_json::json!({ "name": name, "transport": transport })
    })
    .boxed()
}

fn plausible_group() -> BoxedStrategy<Value> {
    (
        nasty_string(),
        prop::collection::vec(nasty_string(), 0..3),
        prop_oneof![
            nasty_string().prop_map(Value::String),
            prop::collection::vec(plausible_rule(), 0..3).prop_map(|r| serde_json::json!({ "rules": r })),
        ],
        prop::collection::vec(plausible_server(), 0..2),
    )
        .prop_map(|(id, users, policy, servers)| {
            serde_json::json!({ "id": id, "users": users, "policy": policy, "servers": servers })
        })
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// Text mutations
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum TextMutation {
    /// Delete up to `len` characters from a position.
    Delete(Index, usize),
    /// Insert a string at a position.
    Insert(Index, String),
    /// Copy a slice and insert the copy at another position.
    Duplicate(Index, usize, Index),
    /// Cut the text at a position.
    Truncate(Index),
    /// Set one byte, then repair the text as a lossy UTF-8 decode would.
    SetByte(Index, u8),
    /// Remove one byte (may split a multi-byte character), then repair lossily.
    RemoveByte(Index),
}

fn insert_text() -> BoxedStrategy<String> {
    prop_oneof![
        2 => prop::collection::vec(any_char(), 1..6).prop_map(String::from_iter),
        2 => prop::sample::select(vec![
            "{", "}", "[", "]", ",", ":", "\"", "\\", "\\u0000", "\\ud800", "\\udc00\\ud800", "\\x41", "\u{feff}", "/* c */",
            "// c\n", "\r\n", "\r", "\t", "null", "true", "1e999", "-0", "123456789012345678901234567890", "1.5e-400",
            "\"*[{\\\\\"", "\u{0}\u{1}\u{7f}", "\u{85}", "\u{2028}", "é", "🦀", "NaN", "Infinity", "0x10", "+1", ".5",
            "'single'", "\"a\":", "\"a\": 1,", "[[[[[[[[", "]]]]]]]]", "{\"\":{\"\":{\"\":",
        ]).prop_map(String::from),
        1 => nasty_string(),
    ]
    .boxed()
}

fn text_mutation() -> BoxedStrategy<TextMutation> {
    prop_oneof![
        3 => (any::<Index>(), 1usize..64).prop_map(|(i, n)| TextMutation::Delete(i, n)),
        4 => (any::<Index>(), insert_text()).prop_map(|(i, s)| TextMutation::Insert(i, s)),
        2 => (any::<Index>(), 1usize..200, any::<Index>()).prop_map(|(i, n, j)| TextMutation::Duplicate(i, n, j)),
        1 => any::<Index>().prop_map(TextMutation::Truncate),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| TextMutation::SetByte(i, b)),
        1 => any::<Index>().prop_map(TextMutation::RemoveByte),
    ]
    .boxed()
}

/// Byte offsets of every character boundary, the end included.
fn boundaries(s: &str) -> Vec<usize> {
    s.char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(s.len()))
        .collect()
}

fn apply_text(text: &mut String, m: &TextMutation) {
    let b = boundaries(text);
    let at = |i: &Index| b[i.index(b.len())];
    let after = |i: &Index, n: usize| {
        let k = i.index(b.len());
        (b[k], b[(k + n).min(b.len() - 1)])
    };
    match m {
        TextMutation::Delete(i, n) => {
            let (s, e) = after(i, *n);
            text.replace_range(s..e, "");
        }
        TextMutation::Insert(i, s) => text.insert_str(at(i), s),
        TextMutation::Duplicate(i, n, j) => {
            let (s, e) = after(i, *n);
            let slice = text[s..e].to_string();
            text.insert_str(at(j), &slice);
        }
        TextMutation::Truncate(i) => text.truncate(at(i)),
        TextMutation::SetByte(i, byte) => {
            let mut bytes = std::mem::take(text).into_bytes();
            if !bytes.is_empty() {
                let k = i.index(bytes.len());
                bytes[k] = *byte;
            }
            *text = String::from_utf8_lossy(&bytes).into_owned();
        }
        TextMutation::RemoveByte(i) => {
            let mut bytes = std::mem::take(text).into_bytes();
            if !bytes.is_empty() {
                bytes.remove(i.index(bytes.len()));
            }
            *text = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Structural mutations
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum JsonMutation {
    /// Replace the value at a random pointer with a random value.
    Replace(Index, Value),
    /// Replace a random string with a nasty one (keeps the shape, so it reaches the checker).
    ReplaceString(Index, String),
    /// Remove the value at a random pointer from its object or array.
    Remove(Index),
    /// Insert into a random object (under a key) or array (at a position).
    Insert(Index, String, Index, Value),
    /// Duplicate an element of a random array (duplicate servers, groups, rules, users...).
    DuplicateElement(Index, Index),
    /// Copy the value at one pointer over the value at another.
    CopyOver(Index, Index),
    /// Insert a value into an array held under a given key (a rule into some `rules`, a server
    /// into some `servers`...), so the result usually still has the config's shape.
    AddTo(&'static str, Index, Index, Value),
}

/// Mutations that mostly keep the config's shape, so the text gets past the typed parse and
/// reaches validation, rule compilation and decisions with nasty values.
fn gentle_json_mutation() -> BoxedStrategy<JsonMutation> {
    prop_oneof![
        6 => (any::<Index>(), nasty_string()).prop_map(|(i, s)| JsonMutation::ReplaceString(i, s)),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(i, j)| JsonMutation::DuplicateElement(i, j)),
        3 => (any::<Index>(), any::<Index>(), plausible_rule()).prop_map(|(i, j, v)| JsonMutation::AddTo("rules", i, j, v)),
        1 => (any::<Index>(), any::<Index>(), plausible_server()).prop_map(|(i, j, v)| JsonMutation::AddTo("servers", i, j, v)),
        1 => (any::<Index>(), any::<Index>(), plausible_group()).prop_map(|(i, j, v)| JsonMutation::AddTo("groups", i, j, v)),
        1 => (any::<Index>(), any::<Index>(), nasty_string().prop_map(Value::String)).prop_map(|(i, j, v)| JsonMutation::AddTo("users", i, j, v)),
    ]
    .boxed()
}

fn json_mutation() -> BoxedStrategy<JsonMutation> {
    prop_oneof![
        3 => (any::<Index>(), json_value()).prop_map(|(i, v)| JsonMutation::Replace(i, v)),
        4 => (any::<Index>(), nasty_string()).prop_map(|(i, s)| JsonMutation::ReplaceString(i, s)),
        2 => any::<Index>().prop_map(JsonMutation::Remove),
        3 => (any::<Index>(), json_key(), any::<Index>(), json_value()).prop_map(|(i, k, j, v)| JsonMutation::Insert(i, k, j, v)),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(i, j)| JsonMutation::DuplicateElement(i, j)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(i, j)| JsonMutation::CopyOver(i, j)),
    ]
    .boxed()
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Ix(usize),
}

/// Every path in a document (the root is the empty path).
fn paths(v: &Value, prefix: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    out.push(prefix.clone());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                prefix.push(Seg::Key(k.clone()));
                paths(c, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                prefix.push(Seg::Ix(i));
                paths(c, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn get_mut<'v>(mut v: &'v mut Value, path: &[Seg]) -> Option<&'v mut Value> {
    for seg in path {
        v = match (seg, v) {
            (Seg::Key(k), Value::Object(m)) => m.get_mut(k)?,
            (Seg::Ix(i), Value::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(v)
}

fn get<'v>(v: &'v Value, path: &[Seg]) -> Option<&'v Value> {
    let mut v = v;
    for seg in path {
        v = match (seg, v) {
            (Seg::Key(k), Value::Object(m)) => m.get(k)?,
            (Seg::Ix(i), Value::Array(a)) => a.get(*i)?,
            _ => return None,
        };
    }
    Some(v)
}

fn apply_json(doc: &mut Value, m: &JsonMutation) {
    let mut all = Vec::new();
    paths(doc, &mut Vec::new(), &mut all);
    let pick = |i: &Index, pred: &dyn Fn(&Value) -> bool| -> Option<Vec<Seg>> {
        let fits: Vec<&Vec<Seg>> = all
            .iter()
            .filter(|p| get(doc, p).is_some_and(pred))
            .collect();
        (!fits.is_empty()).then(|| fits[i.index(fits.len())].clone())
    };
    match m {
        JsonMutation::Replace(i, v) => {
            let p = all[i.index(all.len())].clone();
            if let Some(slot) = get_mut(doc, &p) {
                *slot = v.clone();
            }
        }
        JsonMutation::ReplaceString(i, s) => {
            if let Some(p) = pick(i, &|v| v.is_string())
                && let Some(slot) = get_mut(doc, &p)
            {
                *slot = Value::String(s.clone());
            }
        }
        JsonMutation::Remove(i) => {
            let p = all[i.index(all.len())].clone();
            let Some((last, parent)) = p.split_last() else {
                *doc = Value::Null;
                return;
            };
            match (last, get_mut(doc, parent)) {
                (Seg::Key(k), Some(Value::Object(m))) => {
                    m.shift_remove(k);
                }
                (Seg::Ix(ix), Some(Value::Array(a))) if *ix < a.len() => {
                    a.remove(*ix);
                }
                _ => {}
            }
        }
        JsonMutation::Insert(i, key, j, v) => {
            if let Some(p) = pick(i, &|v| v.is_object() || v.is_array()) {
                match get_mut(doc, &p) {
                    Some(Value::Object(m)) => {
                        m.insert(key.clone(), v.clone());
                    }
                    Some(Value::Array(a)) => {
                        let at = j.index(a.len() + 1);
                        a.insert(at, v.clone());
                    }
                    _ => {}
                }
            }
        }
        JsonMutation::DuplicateElement(i, j) => {
            if let Some(p) = pick(i, &|v| v.as_array().is_some_and(|a| !a.is_empty()))
                && let Some(Value::Array(a)) = get_mut(doc, &p)
            {
                let e = a[j.index(a.len())].clone();
                let at = j.index(a.len() + 1);
                a.insert(at, e);
            }
        }
        JsonMutation::AddTo(key, i, j, v) => {
            let under_key = |p: &&Vec<Seg>| matches!(p.last(), Some(Seg::Key(k)) if k == key);
            let lists: Vec<&Vec<Seg>> = all
                .iter()
                .filter(under_key)
                .filter(|p| get(doc, p).is_some_and(Value::is_array))
                .collect();
            if !lists.is_empty() {
                let p = lists[i.index(lists.len())].clone();
                if let Some(Value::Array(a)) = get_mut(doc, &p) {
                    let at = j.index(a.len() + 1);
                    a.insert(at, v.clone());
                }
            }
        }
        JsonMutation::CopyOver(i, j) => {
            let from = all[i.index(all.len())].clone();
            let to = all[j.index(all.len())].clone();
            if let Some(v) = get(doc, &from).cloned()
                && let Some(slot) = get_mut(doc, &to)
            {
                *slot = v;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

#[test]
fn example_configs_are_clean_and_exercised() {
    for src in sources() {
        let out = exercise(src);
        assert!(out.config.is_some(), "the example config parses");
        assert!(
            !out.has_errors(),
            "the example config has no errors: {:#?}",
            out.diagnostics
        );
    }
}

proptest! {
    #![proptest_config(proptest_config(512))]

    #[test]
    fn text_mutations_never_panic(
        which in 0usize..2,
        muts in prop::collection::vec(text_mutation(), 1..5),
    ) {
        let mut text = sources()[which].to_string();
        for m in &muts {
            apply_text(&mut text, m);
        }
        exercise(&text);
    }
}

proptest! {
    #![proptest_config(proptest_config(384))]

    #[test]
    fn structural_mutations_never_panic(
        which in 0usize..2,
        muts in prop::collection::vec(json_mutation(), 1..5),
        pretty in any::<bool>(),
        crlf in any::<bool>(),
    ) {
        let mut doc: Value = serde_json::from_str(sources()[which]).expect("example parses");
        for m in &muts {
            apply_json(&mut doc, m);
        }
        let mut text = if pretty { serde_json::to_string_pretty(&doc) } else { serde_json::to_string(&doc) }
            .expect("a Value serializes");
        if crlf {
            text = text.replace('\n', "\r\n");
        }
        exercise(&text);
    }
}

proptest! {
    #![proptest_config(proptest_config(384))]

    #[test]
    fn shape_preserving_mutations_never_panic(
        which in 0usize..2,
        muts in prop::collection::vec(gentle_json_mutation(), 1..6),
    ) {
        let mut doc: Value = serde_json::from_str(sources()[which]).expect("example parses");
        for m in &muts {
            apply_json(&mut doc, m);
        }
        let text = serde_json::to_string_pretty(&doc).expect("a Value serializes");
        exercise(&text);
    }
}

proptest! {
    #![proptest_config(proptest_config(256))]

    #[test]
    fn structural_then_text_mutations_never_panic(
        which in 0usize..2,
        jmuts in prop::collection::vec(json_mutation(), 1..3),
        tmuts in prop::collection::vec(text_mutation(), 1..3),
    ) {
        let mut doc: Value = serde_json::from_str(sources()[which]).expect("example parses");
        for m in &jmuts {
            apply_json(&mut doc, m);
        }
        let mut text = serde_json::to_string_pretty(&doc).expect("a Value serializes");
        for m in &tmuts {
            apply_text(&mut text, m);
        }
        exercise(&text);
    }
}

// ---------------------------------------------------------------------------------------------
// Deterministic regressions: nasty whole inputs
// ---------------------------------------------------------------------------------------------

#[test]
fn trivial_and_degenerate_inputs() {
    let inputs = [
        "",
        " ",
        "\n",
        "\r\n\r\n",
        "[]",
        "null",
        "true",
        "0",
        "-0",
        "1e999",
        "\"\"",
        "{}",
        "{",
        "}",
        "\"",
        "\\",
        "\u{0}",
        "{}\u{0}",
        "{} {}",
        "{\"servers\": [,]}",
        "{\"servers\": [],}",
        "// comment\n{}",
        "{\"servers\": [], \"servers\": []}",
        "{\"a\": 1, \"a\": 2}",
        "{\"description\": \"\\ud800\"}",
        "{\"description\": \"\\udc00\\ud800\"}",
        "{\"description\": \"\\ud800\\u0041\"}",
        "{\"description\": \"\u{0}\u{1b}[31m\u{202e}\"}",
        "{\"\u{feff}servers\": []}",
        "{\"audit\": {\"maxFileBytes\": 184467440737095516160}}",
        "{\"audit\": {\"maxFileBytes\": 1e400}}",
        "{\"audit\": {\"keepFiles\": -1}}",
        "{\"audit\": {\"keepFiles\": 4294967296}}",
        "{\"groups\": [{\"id\": \"g\", \"users\": [\"u\"], \"policy\": {\"rules\": [{\"mcp\": \"*[{\\\\\", \"allow\": \"*[{\\\\\"}]}}]}",
        "{\"policy\": {\"rules\": [{\"mcp\": \"*\", \"allowCapability\": {\"operation\": \"custom:*\"}}]}}",
        "{\"policy\": {\"rules\": [{\"mcp\": \"*\", \"denyCapability\": {\"operation\": \"resource:read\", \"target\": \"file:///a/%2F..\"}}]}}",
        "{\"policy\": {\"rules\": [{\"mcp\": \"*\", \"allow\": []}]}}",
        "{\"policy\": {\"rules\": [{\"mcp\": \"\"}]}}",
        "{\"policy\": \"nope\"}",
        "{\"servers\": [{\"name\": \"\", \"transport\": {\"stdio\": {\"command\": \"\"}}}]}",
        "{\"~0~1/\": 1}",
    ];
    for text in inputs {
        exercise(text);
    }
}

#[test]
fn byte_order_marks() {
    exercise("\u{feff}");
    exercise("\u{feff}{}");
    exercise("\u{feff}\u{feff}{}");
    exercise("{}\u{feff}");
    for src in sources() {
        let out = exercise(&format!("\u{feff}{src}"));
        assert!(out.config.is_some(), "a leading BOM is accepted");
        exercise(&format!("\u{feff}\u{feff}{src}"));
        // A syntax error on the first line of a BOM-prefixed file still gets a position.
        exercise(&format!("\u{feff}{{,{}", &src[1..]));
    }
}

#[test]
fn line_ending_variants() {
    for src in sources() {
        for text in [
            src.replace('\n', "\r\n"),
            src.replace('\n', "\r"),
            src.replace('\n', "\u{2028}"),
            src.replace('\n', ""),
        ] {
            exercise(&text);
        }
    }
}

fn nest(depth: usize, open: &str, inner: &str, close: &str) -> String {
    let mut s = String::with_capacity(depth * (open.len() + close.len()) + inner.len());
    for _ in 0..depth {
        s.push_str(open);
    }
    s.push_str(inner);
    for _ in 0..depth {
        s.push_str(close);
    }
    s
}

/// Depths around serde_json's recursion limit (128) and jsonc-parser's nesting limit (512),
/// whole documents and nested inside fields of a config.
const DEPTHS: &[usize] = &[1, 126, 127, 128, 129, 200, 510, 511, 512, 513, 600, 10_000];

#[test]
fn deeply_nested_documents_error_without_overflow() {
    // Depth 1 is left out: `[]` is accepted as a config (see `array_document_is_not_a_config`).
    for &depth in DEPTHS.iter().filter(|&&d| d > 1) {
        for text in [
            nest(depth, "[", "", "]"),
            nest(depth, "{\"a\":", "1", "}"),
            nest(depth, "[{\"a\":", "1", "}]"),
            // Unclosed: the error is at the end of the input.
            nest(depth, "[", "", ""),
            nest(depth, "{\"a\":", "", ""),
        ] {
            let out = exercise(&text);
            assert!(
                out.config.is_none(),
                "depth {depth}: a nested array or object is not a config"
            );
            assert!(out.has_errors());
        }
    }
}

/// The span indexer (jsonc-parser, nesting limit 512, then a recursive walk) really descends
/// to the deepest value it accepts, while serde_json refuses the text at depth 128.
#[test]
fn span_index_walks_deep_documents() {
    for depth in [127usize, 200, 511] {
        let text = nest(depth, "[", "", "]");
        let idx = fentaris::config::SpanIndex::new(&text);
        let deepest = "/0".repeat(depth - 1);
        assert!(
            idx.contains(&deepest),
            "depth {depth}: the innermost array is indexed"
        );
        assert!(idx.value_span(&format!("{deepest}/0/0")).is_some());
    }
    // An object member counts twice against jsonc-parser's limit (about 256 levels).
    for depth in [127usize, 200, 255] {
        let text = nest(depth, "{\"a\":", "1", "}");
        let idx = fentaris::config::SpanIndex::new(&text);
        assert!(
            idx.contains(&"/a".repeat(depth)),
            "depth {depth}: the innermost value is indexed"
        );
    }
    // Past jsonc-parser's limit the index is empty, not a stack overflow.
    let idx = fentaris::config::SpanIndex::new(&nest(10_000, "[", "", "]"));
    assert!(!idx.contains(""));
}

/// FINDING (not fixed here, src/ is out of scope): a JSON *array* is accepted as a whole
/// config. serde's derived `Deserialize` for `Config` also takes a sequence (fields by
/// position), so `[]` is an empty config and `[null, "d", "0.0.0.0:1"]` sets `description`
/// and `listen` without a single diagnostic, although the schema says the document is an object.
#[test]
fn array_document_is_not_a_config() {
    for text in ["[]", "[null]", "[null, \"d\", \"0.0.0.0:1\"]"] {
        let out = config::check_source(text);
        assert!(
            out.config.is_none() || out.has_errors(),
            "{text:?} was accepted as a config without errors"
        );
    }
}

#[test]
fn deeply_nested_values_inside_a_config() {
    for &depth in DEPTHS {
        let inner = nest(depth, "[", "", "]");
        for text in [
            format!("{{\"description\": {inner}}}"),
            format!(
                "{{\"middleware\": [{{\"argumentSchema\": {{\"mcp\": \"*\", \"tool\": \"*\", \"schema\": {inner}}}}}]}}"
            ),
            format!("{{\"policy\": {{\"rules\": [{{\"mcp\": \"*\", \"allow\": {inner}}}]}}}}"),
        ] {
            exercise(&text);
        }
    }
    // Below serde_json's limit a deep schema is a valid config, and it is checked and compiled.
    let schema = nest(100, "{\"items\":", "{}", "}");
    let text = format!(
        "{{\"middleware\": [{{\"argumentSchema\": {{\"mcp\": \"*\", \"tool\": \"*\", \"schema\": {schema}}}}}]}}"
    );
    let out = exercise(&text);
    assert!(out.config.is_some(), "{:#?}", out.diagnostics);
}

#[test]
fn huge_inputs() {
    // A long single line, many rules, many servers: no quadratic blow-up that would time out.
    let long = format!("{{\"description\": \"{}\"}}", "x".repeat(1 << 20));
    exercise(&long);
    let rules: Vec<String> = (0..1000)
        .map(|i| format!("{{\"mcp\": \"*\", \"allow\": \"t{i}\"}}"))
        .collect();
    let text = format!(
        "{{\"servers\": [{{\"name\": \"s\", \"transport\": {{\"stdio\": {{\"command\": \"x\"}}}}}}], \"groups\": [{{\"id\": \"g\", \"users\": [\"u\"], \"policy\": {{\"rules\": [{}]}}}}]}}",
        rules.join(",")
    );
    let out = config::check_source(&text);
    render(&text, &out);
    let cfg = out.config.expect("a config with many rules parses");
    let (engine, _) = Engine::compile(&cfg);
    let subject = engine.subject("u");
    assert!(
        engine
            .decide(&subject, &Request::tool_call("s", "t999"))
            .is_allow()
    );
    assert!(
        !engine
            .decide(&subject, &Request::tool_call("s", "t1000"))
            .is_allow()
    );
}
