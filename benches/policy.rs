//! Policy engine benchmarks.
//!
//! - `decide/*`: one decision against 1,000 rules across 100 groups (target: under 1 µs).
//! - `list_view/*`: filtering a `tools/list` answer of 100 tools.
//! - `policy_check/*`: `check_source` (parse, spans, validation, compile, lint) of a
//!   5,000-rule config given as JSON text (target: under 200 ms).
//!
//! Run with `cargo bench --bench policy` (add `-- --quick` for a short run).

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use fentaris::config::{
    Capability, Config, Group, NamedPolicy, OneOrMany, PolicyRef, Rule, Server, StdioTransport,
    Transport, UserEntry, UserSpec, check_source,
};
use fentaris::policy::{Engine, Operation, Request, TargetKind};

const SERVERS: usize = 20;
const GROUPS: usize = 100;

fn server(i: usize) -> Server {
    Server {
        name: format!("srv-{i}"),
        description: None,
        transport: Transport::Stdio(StdioTransport {
            command: "true".into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            cwd: None,
            inherit_env: Vec::new(),
        }),
        auth: None,
        headers: BTreeMap::new(),
        env_header_map: BTreeMap::new(),
        resolve_headers: BTreeMap::new(),
        isolation: Default::default(),
        timeouts: Default::default(),
    }
}

fn base_rule(mcp: String) -> Rule {
    Rule {
        mcp,
        allow: None,
        deny: None,
        allow_capability: None,
        deny_capability: None,
        description: None,
    }
}

fn capability(operation: &str, target: Option<String>, kind: Option<&str>) -> Capability {
    Capability {
        operation: operation.into(),
        target,
        target_kind: kind.map(Into::into),
    }
}

/// Rule `k` of the policy of group `g`. Every block of ten rules mixes exact tool allows,
/// prefix and glob allows, denies on one server and on all servers, and resource-read
/// capabilities with URI globs. Later blocks use their own names so that no rule repeats
/// or shadows another.
fn rule(g: usize, k: usize) -> Rule {
    let block = k / 10;
    let p = if block == 0 {
        String::new()
    } else {
        format!("b{block}_")
    };
    let data = if block == 0 {
        "data".to_string()
    } else {
        format!("data-b{block}")
    };
    let srv = format!("srv-{}", (g + 10 + k) % SERVERS);
    let mut r = base_rule(srv);
    match k % 10 {
        0 => {
            r.allow = Some(OneOrMany::Many(vec![
                format!("{p}get_issue"),
                format!("{p}list_issues"),
            ]))
        }
        1 => r.allow = Some(OneOrMany::One(format!("{p}get_*"))),
        2 => {
            r.allow = Some(OneOrMany::Many(vec![
                format!("{p}search_code"),
                format!("{p}read_file"),
                format!("{p}*_comment"),
            ]))
        }
        3 => {
            r.mcp = "srv-*".into();
            r.deny = Some(OneOrMany::One(format!("{p}delete_*")));
        }
        4 => r.deny = Some(OneOrMany::One(format!("{p}drop_table"))),
        5 => {
            r.mcp = format!("srv-{}", (g + 10 + k - 5) % SERVERS);
            r.allow_capability = Some(capability(
                "resource:read",
                Some(format!("file:///{data}/*")),
                None,
            ));
        }
        6 => {
            r.mcp = format!("srv-{}", (g + 10 + k - 6) % SERVERS);
            r.deny_capability = Some(capability(
                "resource:read",
                Some(format!("file:///{data}/secret/*")),
                Some("resource"),
            ));
        }
        7 => {
            r.allow_capability = Some(capability(
                "prompt:get",
                Some(format!("{p}summarize_*")),
                None,
            ))
        }
        8 => {
            r.mcp = "srv-1*".into();
            r.allow = Some(OneOrMany::One(format!("{p}create_{g}_*")));
        }
        _ => {
            r.allow_capability = Some(capability(
                "resource:*",
                Some(format!("file:///shared/{{a,b}}/{p}*.md")),
                None,
            ))
        }
    }
    r
}

/// Group `g` has users `user-3g` .. `user-3g+3`, so neighbouring groups share one user
/// (`user-42` is in `group-13` and `group-14`). The first user is written with attributes.
fn users(g: usize) -> Vec<UserEntry> {
    (0..4)
        .map(|i| {
            let id = format!("user-{}", 3 * g + i);
            if i == 0 {
                UserEntry::Spec(UserSpec {
                    id,
                    tenant_id: Some(format!("tenant-{}", g % 5)),
                    api_keys: Vec::new(),
                })
            } else {
                UserEntry::Id(id)
            }
        })
        .collect()
}

/// A config with 20 top-level servers and `GROUPS` groups, each with its own named policy of
/// `rules_per_policy` rules.
fn config(rules_per_policy: usize) -> Config {
    let policies = (0..GROUPS)
        .map(|g| NamedPolicy {
            name: format!("policy-{g}"),
            description: Some(format!("rules of group-{g}")),
            rules: (0..rules_per_policy).map(|k| rule(g, k)).collect(),
        })
        .collect();
    let groups = (0..GROUPS)
        .map(|g| Group {
            id: format!("group-{g}"),
            description: None,
            users: users(g),
            policy: Some(PolicyRef::Named(format!("policy-{g}"))),
            servers: Vec::new(),
            credentials: BTreeMap::new(),
        })
        .collect();
    Config {
        servers: (0..SERVERS).map(server).collect(),
        policies,
        groups,
        ..Config::default()
    }
}

fn rule_count(c: &Config) -> usize {
    c.policies.iter().map(|p| p.rules.len()).sum()
}

fn bench_decide(c: &mut Criterion) {
    let config = config(10);
    assert_eq!(rule_count(&config), 1_000);
    let (engine, _diags) = Engine::compile(&config);
    let subject = engine.subject("user-42");
    assert_eq!(subject.groups, ["group-13", "group-14"]);

    let allowed = Request::tool_call("srv-3", "get_issue");
    let denied = Request::tool_call("srv-3", "delete_repo");
    let no_match = Request::tool_call("srv-3", "rename_branch");
    assert!(engine.decide(&subject, &allowed).is_allow());
    let d = engine.decide(&subject, &denied);
    assert!(!d.is_allow() && matches!(d.reason, fentaris::policy::Reason::Rule(_)));
    let d = engine.decide(&subject, &no_match);
    assert_eq!(d.reason, fentaris::policy::Reason::NoMatchingRule);

    let read = |uri: &'static str| {
        Request::new("srv-3", Operation::ResourceRead, uri, TargetKind::Resource)
            .expect("valid URI")
    };
    assert!(
        engine
            .decide(&subject, &read("file:///data/x/y.csv"))
            .is_allow()
    );
    assert!(
        engine
            .decide(&subject, &read("FILE:///data/x/../x/%79.csv"))
            .is_allow()
    );
    assert!(
        !engine
            .decide(&subject, &read("file:///data/secret/k.pem"))
            .is_allow()
    );

    let mut group = c.benchmark_group("decide");
    group.bench_function("tool_call_allowed", |b| {
        b.iter(|| engine.decide(black_box(&subject), black_box(&allowed)))
    });
    group.bench_function("tool_call_denied_by_rule", |b| {
        b.iter(|| engine.decide(black_box(&subject), black_box(&denied)))
    });
    group.bench_function("tool_call_no_rule_matches", |b| {
        b.iter(|| engine.decide(black_box(&subject), black_box(&no_match)))
    });
    group.bench_function("resource_read_new_and_decide", |b| {
        b.iter(|| {
            let req = Request::new(
                black_box("srv-3"),
                Operation::ResourceRead,
                black_box("file:///data/x/y.csv"),
                TargetKind::Resource,
            )
            .expect("valid URI");
            engine.decide(black_box(&subject), &req)
        })
    });
    group.bench_function("resource_read_new_and_decide_noncanonical", |b| {
        b.iter(|| {
            let req = Request::new(
                black_box("srv-3"),
                Operation::ResourceRead,
                black_box("FILE:///data/x/../x/%79.csv"),
                TargetKind::Resource,
            )
            .expect("valid URI");
            engine.decide(black_box(&subject), &req)
        })
    });
    group.finish();
}

fn bench_list_view(c: &mut Criterion) {
    let config = config(10);
    let (engine, _diags) = Engine::compile(&config);
    let subject = engine.subject("user-42");
    let verbs = [
        "get", "list", "search", "read", "delete", "create", "update", "drop", "add", "rename",
    ];
    let nouns = [
        "issue", "issues", "file", "code", "table", "comment", "branch", "repo", "user", "label",
    ];
    let tools: Vec<String> = verbs
        .iter()
        .flat_map(|v| nouns.iter().map(move |n| format!("{v}_{n}")))
        .collect();
    assert_eq!(tools.len(), 100);
    let shown = engine
        .list_view(&subject, "srv-3", &Operation::ToolsList)
        .expect("tools/list is permitted")
        .filter(tools.iter(), |t| t.as_str())
        .len();
    assert!(
        shown > 0 && shown < tools.len(),
        "{shown} of 100 tools shown"
    );

    let mut group = c.benchmark_group("list_view");
    group.bench_function("tools_list_100_tools", |b| {
        b.iter(|| {
            let view = engine
                .list_view(
                    black_box(&subject),
                    black_box("srv-3"),
                    &Operation::ToolsList,
                )
                .expect("tools/list is permitted");
            tools.iter().filter(|t| view.visible(black_box(t))).count()
        })
    });
    group.finish();
}

fn bench_policy_check(c: &mut Criterion) {
    let config = config(50);
    assert_eq!(rule_count(&config), 5_000);
    let text = serde_json::to_string_pretty(&config).expect("config serialises");
    let outcome = check_source(&text);
    assert!(
        outcome.config.is_some(),
        "{:?}",
        outcome.diagnostics.first()
    );
    assert!(!outcome.has_errors(), "{:?}", outcome.diagnostics.first());
    eprintln!(
        "policy_check input: {} bytes, {} rules, {} findings",
        text.len(),
        rule_count(&config),
        outcome.diagnostics.len()
    );

    let mut group = c.benchmark_group("policy_check");
    // One check takes tens of milliseconds: ten samples of equal iteration counts.
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    group.bench_function("check_source_5000_rules", |b| {
        b.iter(|| check_source(black_box(&text)))
    });
    group.finish();
}

criterion_group!(benches, bench_decide, bench_list_view, bench_policy_check);
criterion_main!(benches);
