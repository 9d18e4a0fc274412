//! Property tests of the policy engine (DESIGN section 4).
//!
//! Configs are generated in an abstract form (indexes into small pools of servers, users, tool
//! names, prompts, URIs, operations and kinds) and turned into a valid [`Config`]: a few
//! top-level servers `s0`..`s3`, groups `g0`..`g3` with users from `u0`..`u4` and optionally
//! private servers `g<i>-p<k>`, named policies `pol<i>`, inline group policies and an optional
//! top-level policy. Each property compiles the config with [`Engine::compile`] and checks
//! decisions and list views over a fixed sample of requests:
//!
//! - decisions agree with a small reference model written straight from DESIGN section 4;
//! - deny always wins; an empty policy denies everything;
//! - adding an allow never removes access, adding a deny never adds any (lists included);
//! - list views agree with the direct decisions;
//! - decisions do not depend on the order of groups, policies or rules.

use std::collections::BTreeMap;

use fentaris::config::{
    Capability, Config, Group, InlinePolicy, NamedPolicy, OneOrMany, PolicyRef, Rule, Server,
    UserEntry,
};
use fentaris::diagnostics::Severity;
use fentaris::policy::uri::canonicalize;
use fentaris::policy::{Effect, Engine, Operation, Reason, Request, Subject, TargetKind};
use proptest::prelude::*;
use proptest::sample::{Index, select, subsequence};

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        // A failure prints its minimal config; no regression files in the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Pools
// ---------------------------------------------------------------------------------------------

const TOP_SERVERS: [&str; 4] = ["s0", "s1", "s2", "s3"];
const USERS: [&str; 5] = ["u0", "u1", "u2", "u3", "u4"];
const MAX_PRIVATE: usize = 2;

/// Server globs for `mcp` (private servers are named `g<i>-p<k>`).
const MCP_GLOBS: &[&str] = &["*", "s*", "g*", "g1-*", "s[01]"];
/// Tool names and globs for `allow` / `deny`.
const TOOL_PATTERNS: &[&str] = &["t0", "t1", "t2", "t3", "t4", "t*", "*", "t[01]", "{t2,t4}"];
const TOOL_NAMES: &[&str] = &["t0", "t1", "t2", "t3", "t4"];
const PROMPT_PATTERNS: &[&str] = &["p0", "p1", "p2", "p*", "*"];
/// Resource targets: canonical literals and globs.
const URI_PATTERNS: &[&str] = &[
    "file:///a",
    "file:///b/c",
    "file:///b/d",
    "file:///b/*",
    "file:///secret.env",
    "*",
];
/// Literal resource targets that are not canonical (matched in canonical form).
const URI_NONCANONICAL: &[&str] = &["FILE:///a", "file:///b/./d", "file:///%61"];
const TEMPLATE_PATTERNS: &[&str] = &["file:///t/*", "*"];
const OPERATIONS: &[&str] = &[
    "tool:call",
    "tools:list",
    "prompt:get",
    "prompts:list",
    "resource:read",
    "resources:list",
    "resource:subscribe",
    "resourceTemplates:list",
    "completion:complete",
    "logging:setLevel",
    "custom:x/y",
    "custom:other",
    "*",
    "resource*",
    "prompt*",
    "*:list",
];

/// The target kinds that fit a rule operation (DESIGN: a kind that does not fit is an error).
fn kinds_for(op: &str) -> Vec<&'static str> {
    match op {
        "tool:call" | "tools:list" => vec!["tool"],
        "prompt:get" | "prompts:list" => vec!["prompt"],
        "resource:read" | "resources:list" | "resource:subscribe" => vec!["resource"],
        "resourceTemplates:list" => vec!["resourceTemplate"],
        "completion:complete" => vec!["prompt", "resource", "resourceTemplate"],
        "resource*" => vec!["resource", "resourceTemplate"],
        "prompt*" => vec!["prompt"],
        "logging:setLevel" | "custom:x/y" | "custom:other" => vec!["server"],
        _ => vec!["tool", "resource", "resourceTemplate", "prompt", "server"],
    }
}

/// Targets that make sense for a rule operation and kind. Non-canonical literal URIs appear
/// only with operations whose every member takes a resource (see
/// `noncanonical_uri_with_operation_glob`), and a completion rule without a kind never names a
/// prompt literally (see `completion_rule_on_a_prompt_name`).
fn targets_for(op: &str, kind: Option<&str>) -> Vec<&'static str> {
    let uris = || {
        URI_PATTERNS
            .iter()
            .chain(URI_NONCANONICAL)
            .copied()
            .collect::<Vec<_>>()
    };
    match (op, kind) {
        ("tool:call" | "tools:list", _) | ("*", Some("tool")) => TOOL_PATTERNS.to_vec(),
        ("prompt:get" | "prompts:list", _) | (_, Some("prompt")) => PROMPT_PATTERNS.to_vec(),
        ("resource:read" | "resources:list" | "resource:subscribe", _) => uris(),
        (_, Some("resource")) => uris(),
        ("resourceTemplates:list", _) | (_, Some("resourceTemplate")) => TEMPLATE_PATTERNS.to_vec(),
        (_, Some("server")) | ("logging:setLevel" | "custom:x/y" | "custom:other", _) => {
            vec!["s0", "s*", "*"]
        }
        ("prompt*", _) => PROMPT_PATTERNS.to_vec(),
        ("completion:complete", None) => URI_PATTERNS.iter().chain(&["p*"]).copied().collect(),
        _ => TOOL_PATTERNS
            .iter()
            .chain(PROMPT_PATTERNS)
            .chain(URI_PATTERNS)
            .copied()
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Abstract configs and their strategies
// ---------------------------------------------------------------------------------------------

/// A rule's server: the i-th declared top-level server, the i-th private server of the group
/// that holds the policy inline (else a top-level one), a glob, or a given name.
#[derive(Debug, Clone)]
enum Mcp {
    Top(usize),
    Own(usize),
    Glob(&'static str),
    Name(String),
}

#[derive(Debug, Clone)]
struct Cap {
    op: &'static str,
    target: Option<&'static str>,
    kind: Option<&'static str>,
}

#[derive(Debug, Clone)]
enum Body {
    Allow(Vec<&'static str>),
    Deny(Vec<&'static str>),
    AllowCap(Cap),
    DenyCap(Cap),
}

#[derive(Debug, Clone)]
struct ARule {
    mcp: Mcp,
    body: Body,
}

#[derive(Debug, Clone)]
enum APolicy {
    None,
    Named(usize),
    Inline(Vec<ARule>),
}

#[derive(Debug, Clone)]
struct AGroup {
    users: Vec<usize>,
    policy: APolicy,
    private: usize,
}

#[derive(Debug, Clone)]
struct AConfig {
    top: Vec<&'static str>,
    policies: Vec<Vec<ARule>>,
    groups: Vec<AGroup>,
    top_policy: APolicy,
}

/// Where an extra rule goes.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Named(usize),
    Group(usize),
    Top,
}

fn mcp() -> BoxedStrategy<Mcp> {
    prop_oneof![
        4 => (0usize..4).prop_map(Mcp::Top),
        2 => (0usize..MAX_PRIVATE).prop_map(Mcp::Own),
        2 => select(MCP_GLOBS).prop_map(Mcp::Glob),
    ]
    .boxed()
}

fn cap() -> BoxedStrategy<Cap> {
    select(OPERATIONS)
        .prop_flat_map(|op| (Just(op), prop::option::weighted(0.3, select(kinds_for(op)))))
        .prop_flat_map(|(op, kind)| {
            (
                Just(op),
                Just(kind),
                prop::option::weighted(0.6, select(targets_for(op, kind))),
            )
        })
        .prop_map(|(op, kind, target)| Cap { op, target, kind })
        .boxed()
}

fn tools() -> BoxedStrategy<Vec<&'static str>> {
    prop::collection::vec(select(TOOL_PATTERNS), 1..3).boxed()
}

fn body() -> BoxedStrategy<Body> {
    prop_oneof![
        4 => tools().prop_map(Body::Allow),
        1 => tools().prop_map(Body::Deny),
        4 => cap().prop_map(Body::AllowCap),
        1 => cap().prop_map(Body::DenyCap),
    ]
    .boxed()
}

fn allow_body() -> BoxedStrategy<Body> {
    prop_oneof![
        tools().prop_map(Body::Allow),
        cap().prop_map(Body::AllowCap)
    ]
    .boxed()
}

fn deny_body() -> BoxedStrategy<Body> {
    prop_oneof![tools().prop_map(Body::Deny), cap().prop_map(Body::DenyCap)].boxed()
}

fn rule_with(body: BoxedStrategy<Body>) -> BoxedStrategy<ARule> {
    (mcp(), body)
        .prop_map(|(mcp, body)| ARule { mcp, body })
        .boxed()
}

fn rules() -> BoxedStrategy<Vec<ARule>> {
    prop::collection::vec(rule_with(body()), 0..8).boxed()
}

fn policy_ref(none_weight: u32) -> BoxedStrategy<APolicy> {
    prop_oneof![
        none_weight => Just(APolicy::None),
        2 => (0usize..4).prop_map(APolicy::Named),
        3 => rules().prop_map(APolicy::Inline),
    ]
    .boxed()
}

fn group() -> BoxedStrategy<AGroup> {
    (
        subsequence((0..USERS.len()).collect::<Vec<_>>(), 1..=3),
        policy_ref(1),
        0..=MAX_PRIVATE,
    )
        .prop_map(|(users, policy, private)| AGroup {
            users,
            policy,
            private,
        })
        .boxed()
}

fn aconfig() -> BoxedStrategy<AConfig> {
    (
        subsequence(TOP_SERVERS.to_vec(), 0..=4),
        prop::collection::vec(rules(), 0..4),
        prop::collection::vec(group(), 1..5),
        policy_ref(4),
    )
        .prop_map(|(top, policies, groups, top_policy)| AConfig {
            top,
            policies,
            groups,
            top_policy,
        })
        .boxed()
}

fn slot() -> BoxedStrategy<Slot> {
    prop_oneof![
        2 => (0usize..4).prop_map(Slot::Named),
        3 => (0usize..4).prop_map(Slot::Group),
        1 => Just(Slot::Top),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// Abstract -> concrete
// ---------------------------------------------------------------------------------------------

fn private_name(group: usize, k: usize) -> String {
    format!("g{group}-p{k}")
}

fn server(name: &str) -> Server {
    // `Server` has many optional fields and no `Default`; the serde defaults fill them in.
    serde_json::from_value(serde_json::json!({
        "name": name,
        "transport": { "stdio": { "command": "true" } }
    }))
    .expect("a minimal server")
}

impl AConfig {
    /// The concrete `mcp` of a rule held inline by `owner` (a group index), or by a named or
    /// top-level policy (`None`). Literal names are always ones the policy's users can see.
    fn mcp(&self, m: &Mcp, owner: Option<usize>) -> String {
        let top = |i: usize| {
            if self.top.is_empty() {
                "*".to_string()
            } else {
                self.top[i % self.top.len()].to_string()
            }
        };
        match *m {
            Mcp::Top(i) => top(i),
            Mcp::Own(i) => match owner {
                Some(g) if self.groups[g].private > 0 => {
                    private_name(g, i % self.groups[g].private)
                }
                _ => top(i),
            },
            Mcp::Glob(g) => g.to_string(),
            Mcp::Name(ref n) => n.clone(),
        }
    }

    fn rule(&self, r: &ARule, owner: Option<usize>) -> Rule {
        let list = |v: &[&str]| {
            if v.len() == 1 {
                OneOrMany::One(v[0].to_string())
            } else {
                OneOrMany::Many(v.iter().map(|s| s.to_string()).collect())
            }
        };
        let cap = |c: &Cap| Capability {
            operation: c.op.to_string(),
            target: c.target.map(str::to_string),
            target_kind: c.kind.map(str::to_string),
        };
        let mut rule = Rule {
            mcp: self.mcp(&r.mcp, owner),
            allow: None,
            deny: None,
            allow_capability: None,
            deny_capability: None,
            description: None,
        };
        match &r.body {
            Body::Allow(v) => rule.allow = Some(list(v)),
            Body::Deny(v) => rule.deny = Some(list(v)),
            Body::AllowCap(c) => rule.allow_capability = Some(cap(c)),
            Body::DenyCap(c) => rule.deny_capability = Some(cap(c)),
        }
        rule
    }

    fn policy_ref(&self, p: &APolicy, owner: Option<usize>) -> Option<PolicyRef> {
        match p {
            APolicy::None => None,
            APolicy::Named(_) if self.policies.is_empty() => None,
            APolicy::Named(i) => Some(PolicyRef::Named(format!("pol{}", i % self.policies.len()))),
            APolicy::Inline(rules) => Some(PolicyRef::Inline(InlinePolicy {
                description: None,
                rules: rules.iter().map(|r| self.rule(r, owner)).collect(),
            })),
        }
    }

    fn build(&self) -> Config {
        Config {
            servers: self.top.iter().map(|n| server(n)).collect(),
            policies: self
                .policies
                .iter()
                .enumerate()
                .map(|(i, rules)| NamedPolicy {
                    name: format!("pol{i}"),
                    description: None,
                    rules: rules.iter().map(|r| self.rule(r, None)).collect(),
                })
                .collect(),
            groups: self
                .groups
                .iter()
                .enumerate()
                .map(|(gi, g)| Group {
                    id: format!("g{gi}"),
                    description: None,
                    users: g
                        .users
                        .iter()
                        .map(|&u| UserEntry::Id(USERS[u].to_string()))
                        .collect(),
                    policy: self.policy_ref(&g.policy, Some(gi)),
                    servers: (0..g.private)
                        .map(|k| server(&private_name(gi, k)))
                        .collect(),
                    credentials: BTreeMap::new(),
                })
                .collect(),
            policy: self.policy_ref(&self.top_policy, None),
            ..Config::default()
        }
    }

    /// Add a rule to a policy; a group or top level without a policy gets an inline one.
    fn add_rule(&mut self, slot: Slot, at: Index, rule: ARule) {
        let insert = |rules: &mut Vec<ARule>, rule: ARule| {
            let i = at.index(rules.len() + 1);
            rules.insert(i, rule);
        };
        let target: &mut APolicy = match slot {
            Slot::Named(i) if !self.policies.is_empty() => {
                let n = self.policies.len();
                return insert(&mut self.policies[i % n], rule);
            }
            Slot::Named(_) | Slot::Top => &mut self.top_policy,
            Slot::Group(i) => {
                let n = self.groups.len();
                &mut self.groups[i % n].policy
            }
        };
        match target {
            APolicy::Inline(rules) => insert(rules, rule),
            APolicy::Named(i) if !self.policies.is_empty() => {
                let n = self.policies.len();
                insert(&mut self.policies[*i % n], rule)
            }
            APolicy::None | APolicy::Named(_) => *target = APolicy::Inline(vec![rule]),
        }
    }

    /// The same config with every rule removed (policies kept, now empty).
    fn without_rules(&self) -> AConfig {
        let mut a = self.clone();
        for p in &mut a.policies {
            p.clear();
        }
        let clear = |p: &mut APolicy| {
            if let APolicy::Inline(r) = p {
                r.clear();
            }
        };
        for g in &mut a.groups {
            clear(&mut g.policy);
        }
        clear(&mut a.top_policy);
        a
    }
}

// ---------------------------------------------------------------------------------------------
// The request sample
// ---------------------------------------------------------------------------------------------

const TOOL_REQS: &[&str] = &["t0", "t1", "t2", "t3", "t4", "t5", "x", "T0", "t*"];
const PROMPT_REQS: &[&str] = &["p0", "p1", "p2", "p3", "t0"];
const URI_REQS: &[&str] = &[
    "file:///a",
    "FILE:///a",
    "file:///%61",
    "file:///b/c",
    "file:///b/./c",
    "file:///b/d",
    "file:///secret.env",
    "file:///z",
];
const TEMPLATE_REQS: &[&str] = &["file:///t/{x}", "file:///b/{y}"];
const LIST_OPS: [Operation; 4] = [
    Operation::ToolsList,
    Operation::PromptsList,
    Operation::ResourcesList,
    Operation::ResourceTemplatesList,
];

fn sample_users() -> Vec<&'static str> {
    USERS.iter().copied().chain(["nobody"]).collect()
}

/// Declared servers (top level and private), one undeclared name and one private name of a
/// group that does not exist.
fn sample_servers(cfg: &Config) -> Vec<String> {
    let mut out: Vec<String> = cfg.servers.iter().map(|s| s.name.clone()).collect();
    out.extend(
        cfg.groups
            .iter()
            .flat_map(|g| g.servers.iter().map(|s| s.name.clone())),
    );
    out.sort();
    out.extend(["zz".to_string(), private_name(7, 0)]);
    out
}

fn req<'a>(server: &'a str, op: Operation, target: &'a str, kind: TargetKind) -> Request<'a> {
    Request::new(server, op, target, kind).expect("sample targets are valid")
}

/// Every request of the sample on one server.
fn requests(server: &str) -> Vec<Request<'_>> {
    use Operation as O;
    use TargetKind as K;
    let mut out = Vec::new();
    out.extend(TOOL_REQS.iter().map(|t| Request::tool_call(server, t)));
    out.extend(PROMPT_REQS.iter().map(|t| Request::prompt_get(server, t)));
    for &u in URI_REQS {
        out.push(req(server, O::ResourceRead, u, K::Resource));
        out.push(req(server, O::ResourceSubscribe, u, K::Resource));
    }
    for &u in &URI_REQS[..4] {
        out.push(req(server, O::ResourcesList, u, K::Resource));
        out.push(req(server, O::CompletionComplete, u, K::Resource));
    }
    for &p in &PROMPT_REQS[..2] {
        out.push(req(server, O::CompletionComplete, p, K::Prompt));
    }
    for &t in TEMPLATE_REQS {
        out.push(req(
            server,
            O::ResourceTemplatesList,
            t,
            K::ResourceTemplate,
        ));
        out.push(req(server, O::CompletionComplete, t, K::ResourceTemplate));
    }
    for op in LIST_OPS {
        out.push(Request::list(server, op));
    }
    out.push(Request::server_op(server, O::LoggingSetLevel));
    out.push(Request::server_op(server, O::SamplingCreateMessage));
    out.push(Request::server_op(server, O::Custom("x/y".into())));
    out
}

/// The sample servers with their requests (built once: resource requests canonicalise).
fn sample_requests(servers: &[String]) -> Vec<(&str, Vec<Request<'_>>)> {
    servers.iter().map(|s| (s.as_str(), requests(s))).collect()
}

/// The items offered to a list view.
fn list_items(op: &Operation) -> &'static [&'static str] {
    match op {
        Operation::ToolsList => TOOL_REQS,
        Operation::PromptsList => PROMPT_REQS,
        Operation::ResourcesList => URI_REQS,
        _ => TEMPLATE_REQS,
    }
}

/// (user, server, list operation)
type ListKey = (String, String, String);

/// A comparable digest of everything the engine answers for the sample.
#[derive(Debug, PartialEq, Eq)]
struct Answers {
    /// (user, server, request index) -> effect
    decisions: Vec<((String, String, usize), Effect)>,
    /// (user, server, list op) -> visible items, or None when the list is not permitted
    lists: Vec<(ListKey, Option<Vec<&'static str>>)>,
}

fn answers(cfg: &Config) -> Answers {
    let (engine, _) = Engine::compile(cfg);
    let servers = sample_servers(cfg);
    let mut decisions = Vec::new();
    let mut lists = Vec::new();
    let sample = sample_requests(&servers);
    for user in sample_users() {
        let subject = engine.subject(user);
        for (server, reqs) in &sample {
            for (i, r) in reqs.iter().enumerate() {
                decisions.push((
                    (user.to_string(), server.to_string(), i),
                    engine.decide(&subject, r).effect,
                ));
            }
            for op in LIST_OPS {
                let view = engine.list_view(&subject, server, &op);
                let visible = view.map(|v| {
                    list_items(&op)
                        .iter()
                        .copied()
                        .filter(|i| v.visible(i))
                        .collect()
                });
                lists.push((
                    (user.to_string(), server.to_string(), op.name().into_owned()),
                    visible,
                ));
            }
        }
    }
    Answers { decisions, lists }
}

// ---------------------------------------------------------------------------------------------
// A reference model of DESIGN section 4, written without the engine's data structures
// ---------------------------------------------------------------------------------------------

/// `*` (any run, `/` included), `?`, `[abc]` and `{a,b}`: enough for the pools above.
fn glob(p: &str, s: &str) -> bool {
    fn go(p: &[char], s: &[char]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some('*') => (0..=s.len()).any(|i| go(&p[1..], &s[i..])),
            Some('?') => !s.is_empty() && go(&p[1..], &s[1..]),
            Some('[') => {
                let end = p.iter().position(|&c| c == ']').expect("closed class");
                !s.is_empty() && p[1..end].contains(&s[0]) && go(&p[end + 1..], &s[1..])
            }
            Some('{') => {
                let end = p
                    .iter()
                    .position(|&c| c == '}')
                    .expect("closed alternation");
                p[1..end].split(|&c| c == ',').any(|alt| {
                    let mut q = alt.to_vec();
                    q.extend_from_slice(&p[end + 1..]);
                    go(&q, s)
                })
            }
            Some(c) => s.first() == Some(c) && go(&p[1..], &s[1..]),
        }
    }
    let p: Vec<char> = p.chars().collect();
    let s: Vec<char> = s.chars().collect();
    go(&p, &s)
}

fn is_glob(s: &str) -> bool {
    s.chars()
        .any(|c| matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\'))
}

/// Whether a rule's operation (and kind, which narrows it) covers `op`.
fn rule_covers_op(rule: &Rule, op: &Operation) -> bool {
    if rule.allow.is_some() || rule.deny.is_some() {
        return *op == Operation::ToolCall;
    }
    let cap = rule
        .allow_capability
        .as_ref()
        .or(rule.deny_capability.as_ref())
        .expect("one body");
    let op_ok = if is_glob(&cap.operation) {
        !matches!(op, Operation::Custom(_)) && glob(&cap.operation, &op.name())
    } else {
        Operation::parse(&cap.operation).as_ref() == Some(op)
    };
    op_ok
        && cap
            .target_kind
            .as_deref()
            .is_none_or(|k| op.kinds().iter().any(|x| x.name() == k))
}

fn is_deny(rule: &Rule) -> bool {
    rule.deny.is_some() || rule.deny_capability.is_some()
}

/// Whether a rule target matches a request target. Request resource URIs are canonical, and
/// so is a literal resource URI in a rule ("targets are canonical before they are matched").
fn target_matches(pattern: &str, req: &Request) -> bool {
    if req.kind() == TargetKind::Resource && !is_glob(pattern) {
        return canonicalize(pattern).is_ok_and(|c| c == req.target());
    }
    glob(pattern, req.target())
}

fn rule_matches(rule: &Rule, req: &Request) -> bool {
    if !rule_covers_op(rule, req.operation()) {
        return false;
    }
    if let Some(list) = rule.allow.as_ref().or(rule.deny.as_ref()) {
        return req.kind() == TargetKind::Tool
            && list.as_slice().iter().any(|p| glob(p, req.target()));
    }
    let cap = rule
        .allow_capability
        .as_ref()
        .or(rule.deny_capability.as_ref())
        .expect("one body");
    cap.target_kind
        .as_deref()
        .is_none_or(|k| k == req.kind().name())
        && cap.target.as_deref().is_none_or(|t| target_matches(t, req))
}

/// The rules of a subject's policies that apply to one server: each group policy only for
/// servers that group can see; the top-level policy for every server the subject can see.
struct Applicable<'c> {
    /// Whether the subject sees the server at all.
    visible: bool,
    rules: Vec<&'c Rule>,
}

fn applicable<'c>(cfg: &'c Config, user: &str, server: &str) -> Applicable<'c> {
    let top_has = cfg.servers.iter().any(|s| s.name == server);
    let groups: Vec<&Group> = cfg
        .groups
        .iter()
        .filter(|g| g.users.iter().any(|u| u.id() == user))
        .collect();
    let visible = top_has
        || groups
            .iter()
            .any(|g| g.servers.iter().any(|s| s.name == server));
    let resolve = |p: &'c PolicyRef| -> &'c [Rule] {
        match p {
            PolicyRef::Named(n) => cfg
                .policies
                .iter()
                .find(|q| q.name == *n)
                .map_or(&[], |q| &q.rules),
            PolicyRef::Inline(i) => &i.rules,
        }
    };
    let mut scopes: Vec<(bool, &'c [Rule])> = Vec::new();
    for g in &groups {
        if let Some(p) = &g.policy {
            scopes.push((
                top_has || g.servers.iter().any(|s| s.name == server),
                resolve(p),
            ));
        }
    }
    if let Some(p) = &cfg.policy {
        // The top-level policy applies to every server the subject can see.
        scopes.push((visible, resolve(p)));
    }
    let rules = scopes
        .into_iter()
        .filter(|(sees, _)| *sees)
        .flat_map(|(_, rules)| rules.iter().filter(|r| glob(&r.mcp, server)))
        .collect();
    Applicable { visible, rules }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Model {
    UnknownServer,
    NoMatchingRule,
    Allow,
    Deny,
}

fn model_decide(app: &Applicable, req: &Request) -> Model {
    if !app.visible {
        return Model::UnknownServer;
    }
    let matching: Vec<&&Rule> = app.rules.iter().filter(|r| rule_matches(r, req)).collect();
    if matching.iter().any(|r| is_deny(r)) {
        Model::Deny
    } else if !matching.is_empty() {
        Model::Allow
    } else {
        Model::NoMatchingRule
    }
}

/// DESIGN section 4, lists: permitted when allowed explicitly or when the subject holds any
/// allow for the direct operation; a deny of the list operation without a target refuses it.
fn model_list_permitted(app: &Applicable, list_op: &Operation) -> bool {
    let direct = list_op.direct_of_list().expect("a list operation");
    let whole_list_denied = app.rules.iter().any(|r| {
        is_deny(r)
            && rule_covers_op(r, list_op)
            && r.deny_capability
                .as_ref()
                .is_some_and(|c| c.target.as_deref().is_none_or(|t| t == "*"))
    });
    let held = app
        .rules
        .iter()
        .any(|r| !is_deny(r) && (rule_covers_op(r, list_op) || rule_covers_op(r, &direct)));
    app.visible && !whole_list_denied && held
}

fn engine_view(d: fentaris::policy::Decision, engine: &Engine) -> Model {
    match (d.effect, d.reason) {
        (_, Reason::UnknownServer) => {
            assert_eq!(d.effect, Effect::Deny);
            Model::UnknownServer
        }
        (_, Reason::NoMatchingRule) => {
            assert_eq!(d.effect, Effect::Deny, "no matching rule is a deny");
            Model::NoMatchingRule
        }
        (effect, Reason::Rule(r)) => {
            let info = engine.rule_info(r).expect("the deciding rule exists");
            assert_eq!(
                info.effect, effect,
                "the deciding rule has the decision's effect"
            );
            match effect {
                Effect::Allow => Model::Allow,
                Effect::Deny => Model::Deny,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers for the properties
// ---------------------------------------------------------------------------------------------

fn compile(cfg: &Config) -> Engine {
    Engine::compile(cfg).0
}

fn visible_items(
    engine: &Engine,
    subject: &Subject,
    server: &str,
    op: &Operation,
) -> Option<Vec<&'static str>> {
    let view = engine.list_view(subject, server, op)?;
    Some(
        list_items(op)
            .iter()
            .copied()
            .filter(|i| view.visible(i))
            .collect(),
    )
}

fn is_subset(a: &Option<Vec<&str>>, b: &Option<Vec<&str>>) -> bool {
    match (a, b) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => a.iter().all(|x| b.contains(x)),
    }
}

/// Compare two configs request by request: `ok(before, after)` must hold for every decision
/// and `list_ok` for every list (visible items before, after).
fn compare(
    before: &Config,
    after: &Config,
    ok: impl Fn(Effect, Effect) -> bool,
    list_ok: impl Fn(&Option<Vec<&str>>, &Option<Vec<&str>>) -> bool,
) -> Result<(), TestCaseError> {
    let (e1, e2) = (compile(before), compile(after));
    let mut servers = sample_servers(before);
    servers.extend(sample_servers(after));
    servers.sort();
    servers.dedup();
    let sample = sample_requests(&servers);
    for user in sample_users() {
        let (s1, s2) = (e1.subject(user), e2.subject(user));
        for (server, reqs) in &sample {
            for r in reqs {
                let (a, b) = (e1.decide(&s1, r).effect, e2.decide(&s2, r).effect);
                prop_assert!(ok(a, b), "user {user}, {r:?}: {a:?} became {b:?}");
            }
            for op in LIST_OPS {
                let (a, b) = (
                    visible_items(&e1, &s1, server, &op),
                    visible_items(&e2, &s2, server, &op),
                );
                prop_assert!(
                    list_ok(&a, &b),
                    "user {user}, server {server}, {op}: {a:?} became {b:?}"
                );
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(64))]

    /// The generator makes valid configs (no error findings), and they survive a round trip
    /// through JSON and the loader unchanged.
    #[test]
    fn generated_configs_are_valid(a in aconfig()) {
        let cfg = a.build();
        let errors: Vec<_> = fentaris::config::validate(&cfg)
            .into_iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        prop_assert!(errors.is_empty(), "errors: {errors:#?}");
        let text = serde_json::to_string_pretty(&cfg).expect("a config serializes");
        let out = fentaris::config::check_source(&text);
        prop_assert!(!out.has_errors(), "{:#?}", out.diagnostics);
        prop_assert_eq!(out.config.as_ref(), Some(&cfg));
    }
}

proptest! {
    #![proptest_config(cases(256))]

    /// Every decision agrees with the reference model, reason category included.
    #[test]
    fn decisions_match_the_reference_model(a in aconfig()) {
        let cfg = a.build();
        let engine = compile(&cfg);
        let servers = sample_servers(&cfg);
        let sample = sample_requests(&servers);
        for user in sample_users() {
            let subject = engine.subject(user);
            for (server, reqs) in &sample {
                let app = applicable(&cfg, user, server);
                for r in reqs {
                    let got = engine_view(engine.decide(&subject, r), &engine);
                    let want = model_decide(&app, r);
                    prop_assert_eq!(got, want, "user {}, {:?}", user, r);
                }
            }
        }
    }

    /// Deny always wins: a deny rule naming the server and tool, added anywhere in a policy of
    /// one of the user's groups, denies the call, whatever else allows it.
    #[test]
    fn an_added_deny_always_wins(
        mut a in aconfig(),
        g in any::<Index>(),
        u in any::<Index>(),
        s in any::<Index>(),
        tool in select(TOOL_NAMES),
        at in any::<Index>(),
        as_list in any::<bool>(),
    ) {
        let gi = g.index(a.groups.len());
        let user = USERS[a.groups[gi].users[u.index(a.groups[gi].users.len())]];
        // A server that group can see: top level or its own.
        let mut seen: Vec<String> = a.top.iter().map(|s| s.to_string()).collect();
        seen.extend((0..a.groups[gi].private).map(|k| private_name(gi, k)));
        prop_assume!(!seen.is_empty());
        let server = seen[s.index(seen.len())].clone();
        let tools = if as_list { vec!["x", tool] } else { vec![tool] };
        // Through the group's own policy (inline, or the named one it uses).
        a.add_rule(Slot::Group(gi), at, ARule { mcp: Mcp::Name(server.clone()), body: Body::Deny(tools) });
        let cfg = a.build();
        let engine = compile(&cfg);
        let subject = engine.subject(user);
        let d = engine.decide(&subject, &Request::tool_call(&server, tool));
        prop_assert_eq!(d.effect, Effect::Deny);
        let Reason::Rule(r) = d.reason else {
            return Err(TestCaseError::fail(format!("denied without a rule: {:?}", d.reason)));
        };
        prop_assert_eq!(engine.rule_info(r).map(|i| i.effect), Some(Effect::Deny));
        // And the tool is hidden from the tools list.
        if let Some(view) = engine.list_view(&subject, &server, &Operation::ToolsList) {
            prop_assert!(!view.visible(tool));
        }
    }

}

proptest! {
    #![proptest_config(cases(128))]

    /// The general form: whenever any applicable deny rule matches a request, it is denied.
    #[test]
    fn any_matching_deny_denies(a in aconfig()) {
        let cfg = a.build();
        let engine = compile(&cfg);
        let servers = sample_servers(&cfg);
        let sample = sample_requests(&servers);
        for user in sample_users() {
            let subject = engine.subject(user);
            for (server, reqs) in &sample {
                let app = applicable(&cfg, user, server);
                for r in reqs {
                    if app.rules.iter().any(|rule| is_deny(rule) && rule_matches(rule, r)) {
                        prop_assert_eq!(engine.decide(&subject, r).effect, Effect::Deny, "user {}, {:?}", user, r);
                    }
                }
            }
        }
    }

    /// A config whose policies have no rules denies every request and permits no list.
    #[test]
    fn empty_policies_deny_everything(a in aconfig()) {
        let cfg = a.without_rules().build();
        let engine = compile(&cfg);
        let servers = sample_servers(&cfg);
        let sample = sample_requests(&servers);
        for user in sample_users() {
            let subject = engine.subject(user);
            for (server, reqs) in &sample {
                for r in reqs {
                    let d = engine.decide(&subject, r);
                    prop_assert_eq!(d.effect, Effect::Deny);
                    prop_assert!(matches!(d.reason, Reason::NoMatchingRule | Reason::UnknownServer));
                }
                for op in LIST_OPS {
                    prop_assert!(engine.list_view(&subject, server, &op).is_none());
                }
            }
        }
    }

    /// Adding an allow rule to any policy never turns an allow into a deny, and never hides a
    /// listed item.
    #[test]
    fn adding_an_allow_never_removes_access(
        a in aconfig(),
        slot in slot(),
        at in any::<Index>(),
        rule in rule_with(allow_body()),
    ) {
        let mut b = a.clone();
        b.add_rule(slot, at, rule);
        compare(
            &a.build(),
            &b.build(),
            |x, y| x == Effect::Deny || y == Effect::Allow,
            is_subset,
        )?;
    }

    /// Adding a deny rule to any policy never turns a deny into an allow, and never shows an
    /// item that was hidden.
    #[test]
    fn adding_a_deny_never_adds_access(
        a in aconfig(),
        slot in slot(),
        at in any::<Index>(),
        rule in rule_with(deny_body()),
    ) {
        let mut b = a.clone();
        b.add_rule(slot, at, rule);
        compare(
            &a.build(),
            &b.build(),
            |x, y| x == Effect::Allow || y == Effect::Deny,
            |x, y| is_subset(y, x),
        )?;
    }

}

proptest! {
    #![proptest_config(cases(256))]

    /// List views agree with the direct decisions (DESIGN section 4, lists).
    #[test]
    fn list_views_agree_with_decisions(a in aconfig()) {
        let cfg = a.build();
        let engine = compile(&cfg);
        for user in sample_users() {
            let subject = engine.subject(user);
            for server in sample_servers(&cfg) {
                let app = applicable(&cfg, user, &server);
                for op in LIST_OPS {
                    let view = engine.list_view(&subject, &server, &op);
                    prop_assert_eq!(
                        view.is_some(),
                        model_list_permitted(&app, &op),
                        "user {}, server {}, {} permitted", user, server, op
                    );
                    let Some(view) = view else {
                        // A refused list shows nothing; without a deny of the whole list that
                        // means no direct operation is allowed either.
                        continue;
                    };
                    match op {
                        Operation::ToolsList => {
                            for t in TOOL_REQS {
                                let d = engine.decide(&subject, &Request::tool_call(&server, t));
                                prop_assert_eq!(view.visible(t), d.is_allow(), "user {}, server {}, tool {}", user, server, t);
                            }
                        }
                        Operation::PromptsList => {
                            for p in PROMPT_REQS {
                                let d = engine.decide(&subject, &Request::prompt_get(&server, p));
                                prop_assert_eq!(view.visible(p), d.is_allow(), "user {}, server {}, prompt {}", user, server, p);
                            }
                        }
                        Operation::ResourcesList => {
                            for &u in URI_REQS {
                                let read = engine.decide(&subject, &req(&server, Operation::ResourceRead, u, TargetKind::Resource));
                                let shown = view.visible(u);
                                if read.is_allow() {
                                    prop_assert!(shown, "user {user}, server {server}: readable {u} is not listed");
                                } else if matches!(read.reason, Reason::Rule(_)) {
                                    prop_assert!(!shown, "user {user}, server {server}: {u} is listed although its read is denied by a rule");
                                } else {
                                    // Discovery: shown iff the list operation allows this item.
                                    let listed = engine.decide(&subject, &req(&server, Operation::ResourcesList, u, TargetKind::Resource));
                                    prop_assert_eq!(shown, listed.is_allow(), "user {}, server {}, uri {}", user, server, u);
                                }
                            }
                            // A URI that cannot be made canonical is never listed.
                            prop_assert!(!view.visible("file:///../etc/passwd"));
                            prop_assert!(!view.visible("file:///b%2Fc"));
                        }
                        _ => {
                            for t in TEMPLATE_REQS {
                                let _ = view.visible(t);
                            }
                        }
                    }
                }
                // Every tool call allowed implies a permitted tools list (and so for prompts
                // and resources), unless a deny refuses the whole list.
                for (list_op, reqs) in [
                    (Operation::ToolsList, TOOL_REQS.iter().map(|t| Request::tool_call(&server, t)).collect::<Vec<_>>()),
                    (Operation::PromptsList, PROMPT_REQS.iter().map(|p| Request::prompt_get(&server, p)).collect()),
                    (Operation::ResourcesList, URI_REQS.iter().map(|u| req(&server, Operation::ResourceRead, u, TargetKind::Resource)).collect()),
                ] {
                    if engine.list_view(&subject, &server, &list_op).is_none() {
                        let whole_list_denied = app.rules.iter().any(|r| {
                            is_deny(r) && rule_covers_op(r, &list_op)
                                && r.deny_capability.as_ref().is_some_and(|c| c.target.as_deref().is_none_or(|t| t == "*"))
                        });
                        if !whole_list_denied {
                            for r in &reqs {
                                prop_assert!(!engine.decide(&subject, r).is_allow(), "user {user}: {r:?} is allowed but {list_op} is refused");
                            }
                        }
                    }
                }
            }
        }
    }

}

proptest! {
    #![proptest_config(cases(128))]

    /// Effects and list views do not depend on the order of groups, of named policies, or of
    /// the rules in a policy.
    #[test]
    fn decisions_do_not_depend_on_order(
        a in aconfig(),
        keys in prop::collection::vec(any::<u32>(), 4),
        reverse_rules in any::<bool>(),
    ) {
        let cfg = a.build();
        let mut shuffled = cfg.clone();
        let mut order: Vec<usize> = (0..shuffled.groups.len()).collect();
        order.sort_by_key(|&i| (keys[i], i));
        shuffled.groups = order.iter().map(|&i| cfg.groups[i].clone()).collect();
        if reverse_rules {
            shuffled.policies.reverse();
            for p in &mut shuffled.policies {
                p.rules.reverse();
            }
            for g in &mut shuffled.groups {
                if let Some(PolicyRef::Inline(p)) = &mut g.policy {
                    p.rules.reverse();
                }
            }
            if let Some(PolicyRef::Inline(p)) = &mut shuffled.policy {
                p.rules.reverse();
            }
        }
        prop_assert_eq!(answers(&cfg), answers(&shuffled));
        let mut reversed = cfg.clone();
        reversed.groups.reverse();
        prop_assert_eq!(answers(&cfg), answers(&reversed));
    }
}

// ---------------------------------------------------------------------------------------------
// Deterministic cases
// ---------------------------------------------------------------------------------------------

#[test]
fn model_glob_agrees_with_the_pools() {
    assert!(glob("t*", "t5"));
    assert!(glob("t[01]", "t1") && !glob("t[01]", "t2"));
    assert!(glob("{t2,t4}", "t4") && !glob("{t2,t4}", "t3"));
    assert!(glob("file:///b/*", "file:///b/c/d"));
    assert!(glob("resource*", "resources:list") && !glob("resource*", "tool:call"));
    assert!(!glob("s[01]", "s2"));
}

/// A one-group config from JSON rules, for the deterministic cases.
fn one_group(rules: serde_json::Value) -> Config {
    serde_json::from_value(serde_json::json!({
        "servers": [{ "name": "s0", "transport": { "stdio": { "command": "true" } } }],
        "groups": [{ "id": "g0", "users": ["u0"], "policy": { "rules": rules } }]
    }))
    .expect("a valid config shape")
}

fn error_codes(cfg: &Config) -> Vec<&'static str> {
    fentaris::config::validate(cfg)
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.code)
        .collect()
}

/// BUG: DESIGN section 4 says a `completion:complete` target is "prompt name or template URI".
/// A rule `allowCapability {operation: "completion:complete", target: "p0"}` (no targetKind) is
/// treated as a resource rule because one of the operation's kinds is `resource`: compiling it
/// reports FNT020 "target `p0` is not a usable resource URI" and the rule is dropped, so a
/// completion on prompt `p0` is denied (NoMatchingRule) instead of allowed.
#[test]
fn completion_rule_on_a_prompt_name() {
    let cfg = one_group(serde_json::json!([
        { "mcp": "s0", "allowCapability": { "operation": "completion:complete", "target": "p0" } }
    ]));
    assert_eq!(error_codes(&cfg), Vec::<&str>::new());
    let engine = compile(&cfg);
    let r = req(
        "s0",
        Operation::CompletionComplete,
        "p0",
        TargetKind::Prompt,
    );
    assert_eq!(
        engine.decide(&engine.subject("u0"), &r).effect,
        Effect::Allow
    );
}

/// BUG: a literal resource URI in a rule is matched in canonical form only when every operation
/// of the rule takes a resource. With an operation glob (`*`, `resource*`) and no targetKind the
/// literal is kept as written, so a non-canonical spelling never matches the (canonical)
/// request: `denyCapability {operation: "*", target: "FILE:///secret.env"}` does not deny
/// reading `file:///secret.env` when another rule allows reads. A deny that silently never
/// applies fails open, and no diagnostic says so.
#[test]
fn noncanonical_uri_with_operation_glob() {
    for op in ["*", "resource*"] {
        let cfg = one_group(serde_json::json!([
            { "mcp": "s0", "allowCapability": { "operation": "resource:read" } },
            { "mcp": "s0", "denyCapability": { "operation": op, "target": "FILE:///secret.env" } }
        ]));
        let engine = compile(&cfg);
        let subject = engine.subject("u0");
        for uri in ["file:///secret.env", "FILE:///secret.env"] {
            let r = req("s0", Operation::ResourceRead, uri, TargetKind::Resource);
            assert_eq!(
                engine.decide(&subject, &r).effect,
                Effect::Deny,
                "operation {op}, read {uri}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// URI spellings (issue 13): every spelling of a URI that a WHATWG or an RFC 3986 parser (or a
// file server) reads as a resource gets that resource's decision, or is refused.
// ---------------------------------------------------------------------------------------------

/// Canonical URIs the spelling properties start from.
const SPELLING_BASES: &[&str] = &[
    "file:///srv/secrets.env",
    "file:///srv/public.txt",
    "file:///srv/private/key.pem",
    "https://example.com/secret",
    "https://example.com/public",
    "http://example.com/a/b~c",
    "demo://host/x/y-z",
];

/// A policy that allows reads and denies the secret ones, its targets written in `spell`.
fn spelling_policy(spell: &dyn Fn(&str) -> String) -> Config {
    one_group(serde_json::json!([
        { "mcp": "s0", "allowCapability": { "operation": "resource:read" } },
        { "mcp": "s0", "denyCapability": { "operation": "*", "target": spell("file:///srv/secrets.env") } },
        { "mcp": "s0", "denyCapability": { "operation": "resource:read", "target": spell("https://example.com/secret") } },
        { "mcp": "s0", "denyCapability": { "operation": "resource*", "target": format!("{}*", spell("file:///srv/private/")) } }
    ]))
}

/// `Some(effect)`, or `None` when the URI is refused before policy.
fn read_decision(engine: &Engine, uri: &str) -> Option<Effect> {
    let r = Request::new("s0", Operation::ResourceRead, uri, TargetKind::Resource).ok()?;
    Some(engine.decide(&engine.subject("u0"), &r).effect)
}

/// How to spell a canonical URI differently without changing what any parser reads.
#[derive(Debug, Clone)]
struct Spelling {
    scheme_upper: Vec<bool>,
    host_upper: Vec<bool>,
    default_port: bool,
    /// file: 0 `file:///p`, 1 `file://localhost/p`, 2 `file:/p`.
    file_form: u8,
    /// Percent-encode these path characters (unreserved ones only).
    encode: Vec<bool>,
    lower_hex: bool,
    /// Insert a dot segment: 0 none, 1 `./`, 2 `x/../`, 3 `%2e/`, 4 `x/%2E%2e/`.
    dots: u8,
    dot_at: Index,
    fragment: bool,
}

fn spelling() -> impl Strategy<Value = Spelling> {
    (
        prop::collection::vec(any::<bool>(), 8),
        prop::collection::vec(any::<bool>(), 16),
        any::<bool>(),
        0u8..3,
        prop::collection::vec(prop::bool::weighted(0.2), 32),
        any::<bool>(),
        0u8..5,
        any::<Index>(),
        any::<bool>(),
    )
        .prop_map(
            |(
                scheme_upper,
                host_upper,
                default_port,
                file_form,
                encode,
                lower_hex,
                dots,
                dot_at,
                fragment,
            )| {
                Spelling {
                    scheme_upper,
                    host_upper,
                    default_port,
                    file_form,
                    encode,
                    lower_hex,
                    dots,
                    dot_at,
                    fragment,
                }
            },
        )
}

fn flip_case(s: &str, upper: &[bool]) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            if upper.get(i % upper.len().max(1)).copied().unwrap_or(false) {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

impl Spelling {
    fn apply(&self, base: &str) -> String {
        let (scheme, rest) = base.split_once(':').unwrap();
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let mut out = flip_case(scheme, &self.scheme_upper);
        out.push(':');
        if scheme == "file" {
            out.push_str(match self.file_form {
                0 => "//",
                1 => "//localhost",
                _ => "",
            });
            if self.file_form == 1 {
                let n = out.len() - "localhost".len();
                let h = flip_case(&out[n..], &self.host_upper);
                out.truncate(n);
                out.push_str(&h);
            }
        } else {
            out.push_str("//");
            out.push_str(&flip_case(host, &self.host_upper));
            if self.default_port {
                match scheme {
                    "https" => out.push_str(":443"),
                    "http" => out.push_str(":80"),
                    _ => {}
                }
            }
        }
        // The path, with a dot segment inserted after one of its slashes.
        let slashes: Vec<usize> = path.match_indices('/').map(|(i, _)| i).collect();
        let at = slashes[self.dot_at.index(slashes.len())] + 1;
        let dot = match self.dots {
            1 => "./",
            2 => "x/../",
            3 => "%2e/",
            4 => "x/%2E%2e/",
            _ => "",
        };
        let path = format!("{}{dot}{}", &path[..at], &path[at..]);
        for (i, c) in path.chars().enumerate() {
            let unreserved = c.is_ascii_alphanumeric() || "-._~".contains(c);
            // Never encode the dots of an inserted dot segment, nor inside an escape.
            let in_dot = i >= at && i < at + dot.len();
            if unreserved && !in_dot && self.encode.get(i % 32).copied().unwrap_or(false) {
                let e = format!("%{:02X}", c as u32);
                out.push_str(&if self.lower_hex {
                    e.to_ascii_lowercase()
                } else {
                    e
                });
            } else {
                out.push(c);
            }
        }
        if self.fragment {
            out.push_str("#frag");
        }
        out
    }
}

/// Edits that some parser reads as the same resource but that parsers disagree on.
const HOSTILE_EDITS: &[&str] = &[
    "tab",
    "newline",
    "cr",
    "backslash",
    "userinfo",
    "no-slashes",
    "one-slash",
    "three-slashes",
    "leading-space",
    "trailing-space",
    "leading-c0",
    "trailing-dot-host",
    "file-host",
    "file-double-slash",
    "file-relative",
    "fullwidth-host",
];

fn hostile(base: &str, edit: &str, at: Index) -> String {
    let (scheme, rest) = base.split_once(':').unwrap();
    let pos = at.index(base.len() - scheme.len() - 1) + scheme.len() + 1;
    match edit {
        "tab" => format!("{}\t{}", &base[..pos], &base[pos..]),
        "newline" => format!("{}\n{}", &base[..pos], &base[pos..]),
        "cr" => format!("{}\r\n{}", &base[..pos], &base[pos..]),
        "backslash" => {
            let slashes: Vec<usize> = base.match_indices('/').map(|(i, _)| i).collect();
            let i = slashes[at.index(slashes.len())];
            format!("{}\\{}", &base[..i], &base[i + 1..])
        }
        "userinfo" => format!("{scheme}://user@{}", rest.trim_start_matches('/')),
        "no-slashes" => format!("{scheme}:{}", rest.trim_start_matches('/')),
        "one-slash" => format!("{scheme}:/{}", rest.trim_start_matches('/')),
        "three-slashes" => format!("{scheme}:///{}", rest.trim_start_matches('/')),
        "leading-space" => format!(" {base}"),
        "trailing-space" => format!("{base} "),
        "leading-c0" => format!("\u{1}{base}"),
        "trailing-dot-host" => match rest.strip_prefix("//").and_then(|r| r.split_once('/')) {
            Some((host, path)) if !host.is_empty() => format!("{scheme}://{host}./{path}"),
            _ => base.to_string(),
        },
        "file-host" => format!("{scheme}://evil.example{}", rest.trim_start_matches("//")),
        "file-double-slash" => base.replacen("/srv/", "/srv//", 1),
        "file-relative" => format!("{scheme}:{}", rest.trim_start_matches('/')),
        "fullwidth-host" => base.replacen("example", "ｅxample", 1),
        _ => unreachable!(),
    }
}

/// The WHATWG reading (what `new URL(s).toString()` gives, without the fragment), with
/// percent-encoded unreserved characters decoded (and other escapes upper-cased).
fn whatwg_reading(s: &str) -> Option<String> {
    let mut u = url::Url::parse(s).ok()?;
    u.set_fragment(None);
    // Every HTTP server reads an empty query as none (Fentaris drops it).
    if u.query() == Some("") && matches!(u.scheme(), "http" | "https" | "ws" | "wss") {
        u.set_query(None);
    }
    Some(decode_unreserved(u.as_str()))
}

/// What a file server opens for a `file:` URI: the WHATWG path, decoded, `//` read as `/`.
fn file_server_reading(s: &str) -> Option<String> {
    let u = url::Url::parse(s).ok()?;
    if u.scheme() != "file" {
        return None;
    }
    let mut path = decode_unreserved(u.path())
        .replace("%2F", "/")
        .replace("%2f", "/");
    while path.contains("//") {
        path = path.replace("//", "/");
    }
    Some(path)
}

/// Hosts compared without case (RFC 3986 section 6.2.2.1; WHATWG keeps the case of
/// non-special hosts, Fentaris lower-cases and forwards the lower-cased form).
fn fold_host(s: &str) -> String {
    match s.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            format!(
                "{scheme}://{}{}",
                rest[..end].to_ascii_lowercase(),
                &rest[end..]
            )
        }
        None => s.to_string(),
    }
}

fn decode_unreserved(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            if v.is_ascii_alphanumeric() || b"-._~".contains(&v) {
                out.push(v as char);
            } else {
                out.push_str(&format!("%{v:02X}"));
            }
            i += 3;
            continue;
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

/// Pieces of URI-like strings, some valid, some hostile: scheme, slashes, host, port, path
/// pieces and an ending.
const SCHEME_PIECES: &[&str] = &[
    "file:", "file:", "file:", "FILE:", "https:", "https:", "HTTPS:", "http:", "demo:", " https:",
    "\tfile:",
];
const SLASH_PIECES: &[&str] = &[
    "//", "//", "//", "", "/", "///", "////", "\\\\", "/\\", "\\/",
];
const HOST_PIECES: &[&str] = &[
    "",
    "",
    "",
    "localhost",
    "LOCALHOST",
    "example.com",
    "example.com",
    "EXAMPLE.com",
    "ex%61mple.com",
    "example.com.",
    "example.com:443",
    "127.1",
    "0x7f.1",
    "user@example.com",
    "@example.com",
    "\u{ff45}xample.com",
    "exa\tmple.com",
    "evil",
];
const PORT_PIECES: &[&str] = &["", "", "", ":443", ":80", ":", ":0443"];
const PATH_PIECES: &[&str] = &[
    "/srv",
    "/srv",
    "/srv/secrets.env",
    "/srv/secrets.env",
    "/srv/private/",
    "/srv/private/",
    "/secret",
    "/secret",
    "/secrets.env",
    "/private",
    "/key.pem",
    "/",
    "srv",
    "/%73ecrets.env",
    "/secrets%2Eenv",
    "/.",
    "/..",
    "/%2e",
    "/%2E%2e",
    "//",
    "\\",
    "/x",
    "%2f",
    "/sec\tret",
    "~",
    "/%7e",
    "\u{e9}",
    "%00",
];
const END_PIECES: &[&str] = &["", "", "", "", "#", "#frag", "?", "?x", " ", "\n"];

fn uri_like() -> impl Strategy<Value = String> {
    (
        select(SCHEME_PIECES),
        select(SLASH_PIECES),
        select(HOST_PIECES),
        select(PORT_PIECES),
        prop::collection::vec(select(PATH_PIECES), 1..4),
        select(END_PIECES),
    )
        .prop_map(|(a, b, c, d, e, f)| format!("{a}{b}{c}{d}{}{f}", e.concat()))
}

proptest! {
    #![proptest_config(cases(1024))]

    /// Spellings that every parser reads as the same resource are accepted, canonicalise to
    /// the same URI, and get the same decision, whichever spelling the rules use.
    #[test]
    fn equivalent_spellings_get_one_decision(
        base in select(SPELLING_BASES),
        sp in spelling(),
        rule_sp in spelling(),
    ) {
        let spelled = sp.apply(base);
        let got = canonicalize(&spelled);
        prop_assert_eq!(got.as_deref(), Ok(base), "{:?}", spelled);
        let canonical_rules = compile(&spelling_policy(&|u| u.to_string()));
        // A fragment in a glob's literal part is not a spelling of the pattern.
        let rule_sp = Spelling { fragment: false, ..rule_sp };
        let spelled_rules = compile(&spelling_policy(&|u| rule_sp.apply(u)));
        let want = read_decision(&canonical_rules, base);
        prop_assert!(want.is_some());
        prop_assert_eq!(read_decision(&canonical_rules, &spelled), want, "{:?}", spelled);
        prop_assert_eq!(read_decision(&spelled_rules, &spelled), want, "{:?} with rules in {:?}", spelled, rule_sp);
        prop_assert_eq!(read_decision(&spelled_rules, base), want);
    }

    /// Spellings that parsers read differently are refused, or read as the resource itself.
    #[test]
    fn disputed_spellings_are_refused_or_mean_the_resource(
        base in select(SPELLING_BASES),
        edit in select(HOSTILE_EDITS),
        at in any::<Index>(),
    ) {
        let spelled = hostile(base, edit, at);
        // Slashes after a non-special scheme change the URI for every parser alike.
        if base.starts_with("demo:") && (edit.ends_with("slashes") || edit == "one-slash")
            || !base.starts_with("file:") && edit.starts_with("file-")
        {
            return Ok(());
        }
        match canonicalize(&spelled) {
            Err(_) => {}
            Ok(c) => prop_assert_eq!(c.as_str(), base, "{} {:?}", edit, spelled),
        }
        let engine = compile(&spelling_policy(&|u| u.to_string()));
        let d = read_decision(&engine, &spelled);
        prop_assert!(d.is_none() || d == read_decision(&engine, base), "{} {:?}", edit, spelled);
    }

    /// For any URI-like string: what Fentaris accepts reads back as itself in a WHATWG parser,
    /// is stable, and is what a WHATWG parser and a file server read the input as; whatever a
    /// WHATWG parser or a file server reads as a denied resource is denied or refused.
    #[test]
    fn no_parser_reads_past_a_deny(s in uri_like()) {
        let engine = compile(&spelling_policy(&|u| u.to_string()));
        if let Ok(c) = canonicalize(&s) {
            let u = url::Url::parse(&c).expect("canonical URIs parse");
            prop_assert_eq!(u.as_str(), c.as_str(), "not a WHATWG fixed point: {:?}", s);
            let again = canonicalize(&c);
            prop_assert_eq!(again.as_deref(), Ok(c.as_str()), "not idempotent: {:?}", s);
            prop_assert_eq!(
                whatwg_reading(&s).map(|w| decode_unreserved(&fold_host(&w))),
                Some(decode_unreserved(&fold_host(&c))),
                "{:?}", s
            );
            if let Some(p) = file_server_reading(&s) {
                prop_assert_eq!(Some(p), file_server_reading(&c), "{:?}", s);
            }
        }
        let reads = |d: &str| {
            whatwg_reading(&s).as_deref() == Some(d)
                || file_server_reading(&s).is_some_and(|p| format!("file://{p}") == d)
        };
        let denied = ["file:///srv/secrets.env", "https://example.com/secret"].into_iter().any(reads)
            || whatwg_reading(&s).is_some_and(|w| w.starts_with("file:///srv/private/"))
            || file_server_reading(&s).is_some_and(|p| p.starts_with("/srv/private/"));
        if denied {
            let d = read_decision(&engine, &s);
            prop_assert!(d.is_none() || d == Some(Effect::Deny), "{:?} read as a denied resource but {:?}", s, d);
        }
    }
}
