//! Compilation of a config into rule indexes, and the decision procedure.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{Capability, Config, PolicyRef, Rule};
use crate::diagnostics::{Diagnostic, codes};
use crate::suggest::did_you_mean;

use super::lint;
use super::pattern::{Pattern, PatternSet};
use super::uri::{UriError, canonical_pattern, canonicalize, canonicalize_reference};
use super::{KNOWN_OPERATIONS, Operation, TargetKind};

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Allow,
    Deny,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        }
    }
}

/// Where a compiled rule came from, for explanations and audit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RuleInfo {
    /// Policy name (`<group>/inline` or `top-level/inline` for inline policies).
    /// The texts are shared: audit records name the rule without copying them.
    pub policy: Arc<str>,
    /// Index of the rule in its policy's `rules`.
    pub index: usize,
    /// JSON pointer of the rule in the config.
    pub pointer: Arc<str>,
    pub effect: Effect,
    /// A one-line description such as `allow tool:call read_file on filesystem`.
    pub summary: Arc<str>,
}

/// The set of operations a rule covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OpSet {
    pub known: u16,
    pub custom: Option<Box<str>>,
}

impl OpSet {
    #[inline]
    pub fn matches(&self, op: &Operation) -> bool {
        match op {
            Operation::Custom(m) => self.custom.as_deref() == Some(&**m),
            _ => self.known & op.bit() != 0,
        }
    }
    pub fn covers(&self, other: &OpSet) -> bool {
        (self.known & other.known) == other.known
            && (other.custom.is_none() || self.custom == other.custom)
    }
    pub fn display(&self) -> String {
        let mut names: Vec<String> = KNOWN_OPERATIONS
            .iter()
            .filter(|o| self.known & o.bit() != 0)
            .map(|o| o.name().into_owned())
            .collect();
        if names.len() == KNOWN_OPERATIONS.len() {
            names = vec!["*".into()];
        }
        if let Some(c) = &self.custom {
            names.push(format!("custom:{c}"));
        }
        names.join("|")
    }
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    pub effect: Effect,
    pub server: Pattern,
    pub ops: OpSet,
    pub targets: PatternSet,
    pub kind: Option<TargetKind>,
    pub info: RuleInfo,
}

impl CompiledRule {
    #[inline]
    pub fn matches(&self, op: &Operation, target: &str, kind: TargetKind) -> bool {
        self.ops.matches(op) && self.kind.is_none_or(|k| k == kind) && self.targets.matches(target)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledPolicy {
    pub rules: Vec<u32>,
}

#[derive(Debug, Clone)]
pub(crate) struct ServerEntry {
    pub name: String,
    /// The group that declared it privately; `None` for a top-level server.
    pub owner: Option<u32>,
}

/// A policy applied to a set of subjects: one per group with a policy, plus the top-level one.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    pub group: Option<u32>,
    pub policy: u32,
}

/// A compiled policy set for one config.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    pub(crate) rules: Vec<CompiledRule>,
    pub(crate) policies: Vec<CompiledPolicy>,
    pub(crate) servers: Vec<ServerEntry>,
    server_ix: crate::FastMap<Box<str>, Vec<u32>>,
    pub(crate) groups: Vec<String>,
    group_ix: crate::FastMap<Box<str>, u32>,
    pub(crate) scopes: Vec<Scope>,
    /// `index[scope][server]`: the rules of that scope's policy that apply to that server.
    index: Vec<Vec<Box<[u32]>>>,
    top_scope: Option<u32>,
    users: crate::FastMap<Box<str>, UserEntry>,
    /// Every declared user's subject, resolved once per config (not per request).
    subjects: crate::FastMap<Box<str>, std::sync::Arc<Subject>>,
}

#[derive(Debug, Clone, Default)]
struct UserEntry {
    groups: Vec<u32>,
    tenant: Option<String>,
}

/// An authenticated caller, resolved against the engine once per session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub id: String,
    pub tenant: Option<String>,
    /// Group ids, in config order.
    pub groups: Vec<String>,
    group_ix: Vec<u32>,
    scopes: Vec<u32>,
}

impl Subject {
    /// A subject by name only, resolved against no config: no policy scope applies to it,
    /// so the engine allows it nothing. For audit-record tests.
    #[cfg(test)]
    pub(crate) fn named(id: &str, groups: Vec<String>, tenant: Option<String>) -> Subject {
        Subject {
            id: id.to_string(),
            tenant,
            groups,
            group_ix: Vec::new(),
            scopes: Vec::new(),
        }
    }
}

/// One request to decide. Resource targets are canonical by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub(crate) server: &'a str,
    pub(crate) operation: Operation,
    target: Cow<'a, str>,
    pub(crate) kind: TargetKind,
}

impl<'a> Request<'a> {
    /// `tools/call` of `tool` on `server`.
    pub fn tool_call(server: &'a str, tool: &'a str) -> Self {
        Request {
            server,
            operation: Operation::ToolCall,
            target: Cow::Borrowed(tool),
            kind: TargetKind::Tool,
        }
    }

    /// `prompts/get` of `prompt` on `server`.
    pub fn prompt_get(server: &'a str, prompt: &'a str) -> Self {
        Request {
            server,
            operation: Operation::PromptGet,
            target: Cow::Borrowed(prompt),
            kind: TargetKind::Prompt,
        }
    }

    /// A server-level operation (logging, sampling, elicitation, roots, custom methods).
    pub fn server_op(server: &'a str, operation: Operation) -> Self {
        Request {
            server,
            operation,
            target: Cow::Borrowed(server),
            kind: TargetKind::Server,
        }
    }

    /// A list operation as a whole (no item), for explanations.
    pub fn list(server: &'a str, operation: Operation) -> Self {
        let kind = operation.kinds()[0];
        Request {
            server,
            operation,
            target: Cow::Borrowed(""),
            kind,
        }
    }

    /// Any request. The kind must fit the operation; a `resource` target is canonicalised
    /// (and refused if it cannot be).
    pub fn new(
        server: &'a str,
        operation: Operation,
        target: &'a str,
        kind: TargetKind,
    ) -> Result<Self, UriError> {
        if !operation.kinds().contains(&kind) {
            return Err(UriError::KindMismatch {
                operation: operation.name().into_owned(),
                kind: kind.name(),
            });
        }
        let canonical = match (kind, &operation) {
            (TargetKind::Resource, _) => Some(canonicalize(target)?),
            // completion/complete `ref/resource`: a URI or a URI template.
            (TargetKind::ResourceTemplate, Operation::CompletionComplete) => {
                Some(canonicalize_reference(target)?)
            }
            _ => None,
        };
        let target = if let Some(c) = canonical {
            if c == target {
                Cow::Borrowed(target)
            } else {
                Cow::Owned(c)
            }
        } else {
            Cow::Borrowed(target)
        };
        Ok(Request {
            server,
            operation,
            target,
            kind,
        })
    }

    /// The (canonical) target that policy saw and that is forwarded upstream.
    pub fn target(&self) -> &str {
        &self.target
    }

    pub fn server(&self) -> &str {
        self.server
    }

    pub fn operation(&self) -> &Operation {
        &self.operation
    }

    pub fn kind(&self) -> TargetKind {
        self.kind
    }
}

/// Why a decision came out as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A rule decided (its effect is the decision's).
    Rule(u32),
    /// No rule matched: the baseline is the empty allow-list.
    NoMatchingRule,
    /// The server does not exist or the subject cannot see it (indistinguishable on purpose).
    UnknownServer,
}

/// The outcome of [`Engine::decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub effect: Effect,
    pub reason: Reason,
    /// The scope whose rule decided (for an allow, its group's credential bindings apply).
    scope: Option<u32>,
}

impl Decision {
    pub fn is_allow(&self) -> bool {
        self.effect == Effect::Allow
    }
    fn deny(reason: Reason) -> Self {
        Decision {
            effect: Effect::Deny,
            reason,
            scope: None,
        }
    }
}

fn kinds_display(kinds: &[TargetKind]) -> String {
    kinds
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Scope-independent inputs to rule compilation.
struct RuleCtx<'a> {
    policy_name: &'a str,
    base: &'a str,
}

impl Engine {
    /// Compile a config. Findings about rules (bad globs, unknown operations, kinds that do
    /// not fit, missing servers, shadowed rules) are returned; bad rules are left out, so the
    /// engine only ever denies more than a config with errors asked for.
    pub fn compile(config: &Config) -> (Engine, Vec<Diagnostic>) {
        let mut diags = Vec::new();
        let mut e = Engine::default();

        // Servers: top level, then each group's private ones.
        for s in &config.servers {
            e.add_server(&s.name, None);
        }
        for (gi, g) in config.groups.iter().enumerate() {
            e.group_ix.entry(g.id.as_str().into()).or_insert(gi as u32);
            e.groups.push(g.id.clone());
            for s in &g.servers {
                e.add_server(&s.name, Some(gi as u32));
            }
        }

        // Policies: named ones once, inline ones where they stand.
        let mut named: HashMap<&str, u32> = HashMap::new();
        for (pi, p) in config.policies.iter().enumerate() {
            let base = format!("/policies/{pi}");
            let id = e.compile_policy(
                &p.rules,
                RuleCtx {
                    policy_name: &p.name,
                    base: &base,
                },
                &mut diags,
            );
            named.entry(p.name.as_str()).or_insert(id);
        }
        let mut policy_users: HashMap<u32, Vec<Option<u32>>> = HashMap::new();
        let resolve = |e: &mut Engine,
                       r: &PolicyRef,
                       base: String,
                       owner: String,
                       diags: &mut Vec<Diagnostic>|
         -> Option<u32> {
            match r {
                PolicyRef::Named(n) => named.get(n.as_str()).copied(),
                PolicyRef::Inline(p) => {
                    let name = format!("{owner}/inline");
                    Some(e.compile_policy(
                        &p.rules,
                        RuleCtx {
                            policy_name: &name,
                            base: &base,
                        },
                        diags,
                    ))
                }
            }
        };
        for (gi, g) in config.groups.iter().enumerate() {
            if let Some(r) = &g.policy
                && let Some(pid) = resolve(
                    &mut e,
                    r,
                    format!("/groups/{gi}/policy"),
                    g.id.clone(),
                    &mut diags,
                )
            {
                e.scopes.push(Scope {
                    group: Some(gi as u32),
                    policy: pid,
                });
                policy_users.entry(pid).or_default().push(Some(gi as u32));
            }
        }
        if let Some(r) = &config.policy
            && let Some(pid) = resolve(&mut e, r, "/policy".into(), "top-level".into(), &mut diags)
        {
            e.top_scope = Some(e.scopes.len() as u32);
            e.scopes.push(Scope {
                group: None,
                policy: pid,
            });
            policy_users.entry(pid).or_default().push(None);
        }

        // Index: scope x server -> applicable rules.
        let mut index = Vec::with_capacity(e.scopes.len());
        for scope in &e.scopes {
            let rules = &e.policies[scope.policy as usize].rules;
            let per_server = e
                .servers
                .iter()
                .map(|srv| {
                    if !visible(srv, scope.group) {
                        return Box::<[u32]>::default();
                    }
                    rules
                        .iter()
                        .copied()
                        .filter(|&r| e.rules[r as usize].server.matches(&srv.name))
                        .collect()
                })
                .collect();
            index.push(per_server);
        }
        e.index = index;

        // Users.
        for (gi, g) in config.groups.iter().enumerate() {
            for u in &g.users {
                let entry = e.users.entry(u.id().into()).or_default();
                if !entry.groups.contains(&(gi as u32)) {
                    entry.groups.push(gi as u32);
                }
                if let crate::config::UserEntry::Spec(spec) = u
                    && entry.tenant.is_none()
                {
                    entry.tenant = spec.tenant_id.clone();
                }
            }
        }

        e.check_rule_servers(&policy_users, &mut diags);
        lint::lint(&e, &mut diags);
        e.subjects = e
            .users
            .keys()
            .map(|u| (u.clone(), std::sync::Arc::new(e.subject(u))))
            .collect();
        (e, diags)
    }

    fn add_server(&mut self, name: &str, owner: Option<u32>) {
        let id = self.servers.len() as u32;
        self.servers.push(ServerEntry {
            name: name.to_string(),
            owner,
        });
        self.server_ix.entry(name.into()).or_default().push(id);
    }

    fn compile_policy(&mut self, rules: &[Rule], ctx: RuleCtx, diags: &mut Vec<Diagnostic>) -> u32 {
        let mut ids = Vec::with_capacity(rules.len());
        for (ri, rule) in rules.iter().enumerate() {
            let pointer = format!("{}/rules/{ri}", ctx.base);
            if let Some(mut c) = compile_rule(rule, &pointer, diags) {
                c.info.policy = ctx.policy_name.into();
                c.info.index = ri;
                ids.push(self.rules.len() as u32);
                self.rules.push(c);
            }
        }
        self.policies.push(CompiledPolicy { rules: ids });
        (self.policies.len() - 1) as u32
    }

    /// FNT012: a rule naming (literally) a server that none of the policy's users can see.
    fn check_rule_servers(
        &self,
        users: &HashMap<u32, Vec<Option<u32>>>,
        diags: &mut Vec<Diagnostic>,
    ) {
        for (pi, p) in self.policies.iter().enumerate() {
            let owners = users.get(&(pi as u32));
            for &r in &p.rules {
                let rule = &self.rules[r as usize];
                let Pattern::Exact(name) = &rule.server else {
                    continue;
                };
                let seen =
                    self.servers
                        .iter()
                        .filter(|s| *s.name == **name)
                        .any(|s| match owners {
                            // An unused policy is checked against every server.
                            None => true,
                            Some(groups) => groups.iter().any(|g| visible(s, *g)),
                        });
                if !seen {
                    let mut names: Vec<&str> = self
                        .servers
                        .iter()
                        .filter(|s| owners.is_none_or(|gs| gs.iter().any(|g| visible(s, *g))))
                        .map(|s| s.name.as_str())
                        .collect();
                    names.dedup();
                    let exists_elsewhere = self.servers.iter().any(|s| *s.name == **name);
                    let msg = if exists_elsewhere {
                        format!(
                            "rule names server `{name}`, which is private to a group that does not use policy `{}`",
                            rule.info.policy
                        )
                    } else {
                        format!("rule names server `{name}`, which is not declared")
                    };
                    let mut help = did_you_mean(name, names.iter().copied());
                    if help.is_none() {
                        help = Some(if names.is_empty() {
                            "declare the server under `servers` (or a group's `servers`)".into()
                        } else {
                            format!("servers this policy's users can see: {}", names.join(", "))
                        });
                    }
                    let mut d = Diagnostic::new(
                        codes::MISSING_SERVER,
                        format!("{}/mcp", rule.info.pointer),
                        msg,
                    );
                    d.help = help;
                    diags.push(d);
                }
            }
        }
    }

    /// The subject for an authenticated user id. A user that no group declares still gets the
    /// top-level policy (if any).
    pub fn subject(&self, user: &str) -> Subject {
        let entry = self.users.get(user);
        let group_ix: Vec<u32> = entry.map(|u| u.groups.clone()).unwrap_or_default();
        let mut scopes: Vec<u32> = self
            .scopes
            .iter()
            .enumerate()
            .filter(|(_, s)| s.group.is_some_and(|g| group_ix.contains(&g)))
            .map(|(i, _)| i as u32)
            .collect();
        if let Some(t) = self.top_scope {
            scopes.push(t);
        }
        Subject {
            id: user.to_string(),
            tenant: entry.and_then(|u| u.tenant.clone()),
            groups: group_ix
                .iter()
                .map(|&g| self.groups[g as usize].clone())
                .collect(),
            group_ix,
            scopes,
        }
    }

    /// [`Engine::subject`], shared: a declared user's is resolved once, when the config is
    /// compiled.
    pub fn shared_subject(&self, user: &str) -> std::sync::Arc<Subject> {
        match self.subjects.get(user) {
            Some(s) => s.clone(),
            None => std::sync::Arc::new(self.subject(user)),
        }
    }

    pub(crate) fn subject_scopes<'s>(
        &self,
        subject: &'s Subject,
    ) -> impl Iterator<Item = u32> + 's {
        subject.scopes.iter().copied()
    }

    /// Whether `user` is declared in some group.
    pub fn is_declared_user(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// The server the subject sees under `name`, if any.
    fn resolve_server(&self, subject: &Subject, name: &str) -> Option<u32> {
        self.server_ix
            .get(name)?
            .iter()
            .copied()
            .find(|&i| match self.servers[i as usize].owner {
                None => true,
                Some(g) => subject.group_ix.contains(&g),
            })
    }

    /// Whether the subject can use `server` at all: it can see it and some rule of its
    /// policies allows something there. Endpoints of servers a subject cannot use answer like
    /// servers that do not exist.
    pub fn can_use(&self, subject: &Subject, server: &str) -> bool {
        let Some(srv) = self.resolve_server(subject, server) else {
            return false;
        };
        subject.scopes.iter().any(|&sc| {
            self.rules_for(sc, srv)
                .iter()
                .any(|&r| self.rules[r as usize].effect == Effect::Allow)
        })
    }

    /// Whether any policy allows `op` on a server of this name for anyone (used to decide
    /// which client capabilities, such as sampling, Fentaris offers that upstream).
    pub fn anyone_may(&self, server: &str, op: &Operation) -> bool {
        let Some(ids) = self.server_ix.get(server) else {
            return false;
        };
        (0..self.scopes.len()).any(|si| {
            ids.iter().any(|&srv| {
                self.rules_for(si as u32, srv).iter().any(|&r| {
                    let rule = &self.rules[r as usize];
                    rule.effect == Effect::Allow && rule.ops.matches(op)
                })
            })
        })
    }

    /// The scopes (group ids; `None` for the top-level policy) with a rule that allows
    /// something on a server of this name.
    pub fn scopes_allowing(&self, server: &str) -> Vec<Option<String>> {
        let Some(ids) = self.server_ix.get(server) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (si, scope) in self.scopes.iter().enumerate() {
            let allows = ids.iter().any(|&srv| {
                self.rules_for(si as u32, srv)
                    .iter()
                    .any(|&r| self.rules[r as usize].effect == Effect::Allow)
            });
            if allows {
                let g = scope.group.map(|g| self.groups[g as usize].clone());
                if !out.contains(&g) {
                    out.push(g);
                }
            }
        }
        out
    }

    /// Names of the servers the subject can see, in config order.
    pub fn visible_servers(&self, subject: &Subject) -> Vec<&str> {
        self.servers
            .iter()
            .filter(|s| s.owner.is_none_or(|g| subject.group_ix.contains(&g)))
            .map(|s| s.name.as_str())
            .collect()
    }

    #[inline]
    fn rules_for(&self, scope: u32, server: u32) -> &[u32] {
        &self.index[scope as usize][server as usize]
    }

    /// Decide one request: a matching deny in any of the subject's policies denies; else a
    /// matching allow allows; else deny.
    pub fn decide(&self, subject: &Subject, req: &Request) -> Decision {
        let Some(srv) = self.resolve_server(subject, req.server) else {
            return Decision::deny(Reason::UnknownServer);
        };
        self.decide_on(subject, srv, &req.operation, req.target(), req.kind)
    }

    fn decide_on(
        &self,
        subject: &Subject,
        srv: u32,
        op: &Operation,
        target: &str,
        kind: TargetKind,
    ) -> Decision {
        let mut allow: Option<(u32, u32)> = None;
        for &scope in &subject.scopes {
            for &r in self.rules_for(scope, srv) {
                let rule = &self.rules[r as usize];
                if rule.matches(op, target, kind) {
                    match rule.effect {
                        Effect::Deny => {
                            return Decision {
                                effect: Effect::Deny,
                                reason: Reason::Rule(r),
                                scope: Some(scope),
                            };
                        }
                        Effect::Allow => {
                            if allow.is_none() {
                                allow = Some((r, scope));
                            }
                        }
                    }
                }
            }
        }
        match allow {
            Some((r, scope)) => Decision {
                effect: Effect::Allow,
                reason: Reason::Rule(r),
                scope: Some(scope),
            },
            None => Decision::deny(Reason::NoMatchingRule),
        }
    }

    /// The rule behind a [`Reason::Rule`].
    pub fn rule_info(&self, rule: u32) -> Option<&RuleInfo> {
        self.rules.get(rule as usize).map(|r| &r.info)
    }

    /// The group whose rule decided (for an allow: whose credential bindings are used).
    /// `None` for the top-level policy or when no rule decided.
    pub fn deciding_group(&self, d: &Decision) -> Option<&str> {
        let scope = &self.scopes[d.scope? as usize];
        scope.group.map(|g| self.groups[g as usize].as_str())
    }

    /// Whether the subject may use a list operation on a server at all, and how items are
    /// filtered. `None` when the list is not permitted (it is then empty, or refused).
    ///
    /// A list is permitted when a rule allows it explicitly, or implicitly when the subject
    /// holds any allow for the matching direct operation on that server; a deny of the list
    /// operation without a target denies the whole list.
    pub fn list_view<'e>(
        &'e self,
        subject: &'e Subject,
        server: &str,
        list_op: &Operation,
    ) -> Option<ListView<'e>> {
        let srv = self.resolve_server(subject, server)?;
        let direct = list_op.direct_of_list()?;
        let mut permitted = false;
        for &scope in &subject.scopes {
            for &r in self.rules_for(scope, srv) {
                let rule = &self.rules[r as usize];
                if rule.ops.matches(list_op) {
                    match rule.effect {
                        Effect::Deny
                            if rule.targets.is_any()
                                && rule.kind.is_none_or(|k| list_op.kinds().contains(&k)) =>
                        {
                            return None;
                        }
                        Effect::Deny => {}
                        Effect::Allow => permitted = true,
                    }
                }
                if rule.effect == Effect::Allow && rule.ops.matches(&direct) {
                    permitted = true;
                }
            }
        }
        permitted.then_some(ListView {
            engine: self,
            subject,
            server: srv,
            list_op: list_op.clone(),
        })
    }
}

/// Filters the items of one permitted list (see [`Engine::list_view`]).
pub struct ListView<'e> {
    engine: &'e Engine,
    subject: &'e Subject,
    server: u32,
    list_op: Operation,
}

impl ListView<'_> {
    /// Whether one item (tool or prompt name, resource URI, template URI) is shown.
    ///
    /// Tools and prompts: exactly those whose call or get is allowed. Resources and
    /// templates: those whose read is allowed, or that an explicit list allow matches and
    /// whose read (and listing) no rule denies.
    pub fn visible(&self, item: &str) -> bool {
        let e = self.engine;
        match self.list_op {
            Operation::ToolsList => e
                .decide_on(
                    self.subject,
                    self.server,
                    &Operation::ToolCall,
                    item,
                    TargetKind::Tool,
                )
                .is_allow(),
            Operation::PromptsList => e
                .decide_on(
                    self.subject,
                    self.server,
                    &Operation::PromptGet,
                    item,
                    TargetKind::Prompt,
                )
                .is_allow(),
            Operation::ResourcesList | Operation::ResourceTemplatesList => {
                let (item, kind): (Cow<str>, TargetKind) =
                    if self.list_op == Operation::ResourcesList {
                        match canonicalize(item) {
                            Ok(c) => (Cow::Owned(c), TargetKind::Resource),
                            Err(_) => return false,
                        }
                    } else {
                        (Cow::Borrowed(item), TargetKind::ResourceTemplate)
                    };
                let read = e.decide_on(
                    self.subject,
                    self.server,
                    &Operation::ResourceRead,
                    &item,
                    TargetKind::Resource,
                );
                if read.is_allow() {
                    return true;
                }
                if matches!(read.reason, Reason::Rule(_)) {
                    return false; // read explicitly denied
                }
                e.decide_on(self.subject, self.server, &self.list_op, &item, kind)
                    .is_allow()
            }
            _ => false,
        }
    }

    /// Keep the visible items of a list.
    pub fn filter<T>(
        &self,
        items: impl IntoIterator<Item = T>,
        key: impl Fn(&T) -> &str,
    ) -> Vec<T> {
        items.into_iter().filter(|t| self.visible(key(t))).collect()
    }
}

/// Whether a scope's rules apply to a server: a group's rules to top-level servers and its
/// own; the top-level policy's to every server (a subject still reaches only the private
/// servers of its own groups, so a top-level `deny` holds everywhere it can go).
pub(crate) fn visible(srv: &ServerEntry, group: Option<u32>) -> bool {
    match (srv.owner, group) {
        (None, _) => true,
        (Some(o), Some(g)) => o == g,
        (Some(_), None) => true,
    }
}

fn compile_patterns(
    items: &[String],
    pointer: &str,
    many: bool,
    diags: &mut Vec<Diagnostic>,
) -> Option<PatternSet> {
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    if items.is_empty() {
        diags.push(
            Diagnostic::new(
                codes::BAD_RULE_SHAPE,
                pointer,
                "an empty list matches nothing",
            )
            .help("name at least one tool, or remove the rule"),
        );
        return None;
    }
    for (i, t) in items.iter().enumerate() {
        let p = if many {
            format!("{pointer}/{i}")
        } else {
            pointer.to_string()
        };
        match Pattern::new(t) {
            Ok(pat) => out.push(pat),
            Err(e) => {
                ok = false;
                diags.push(
                    Diagnostic::new(codes::BAD_GLOB, p, format!("invalid pattern `{t}`: {e}"))
                        .help("patterns use `*` (any run of characters), `?`, `[abc]` and `{a,b}`; escape a literal with `\\`"),
                );
            }
        }
    }
    ok.then_some(PatternSet(out))
}

fn compile_rule(rule: &Rule, pointer: &str, diags: &mut Vec<Diagnostic>) -> Option<CompiledRule> {
    let present: Vec<&str> = [
        ("allow", rule.allow.is_some()),
        ("deny", rule.deny.is_some()),
        ("allowCapability", rule.allow_capability.is_some()),
        ("denyCapability", rule.deny_capability.is_some()),
    ]
    .into_iter()
    .filter(|(_, p)| *p)
    .map(|(n, _)| n)
    .collect();
    if present.len() != 1 {
        let msg = if present.is_empty() {
            "rule has none of allow, deny, allowCapability, denyCapability".to_string()
        } else {
            format!("rule has {} at once", present.join(" and "))
        };
        diags.push(
            Diagnostic::new(codes::BAD_RULE_SHAPE, pointer, msg)
                .help("give each rule exactly one of allow, deny, allowCapability or denyCapability; split it into several rules"),
        );
        return None;
    }
    let server = match Pattern::new(&rule.mcp) {
        Ok(p) => p,
        Err(e) => {
            diags.push(Diagnostic::new(
                codes::BAD_GLOB,
                format!("{pointer}/mcp"),
                format!("invalid server pattern `{}`: {e}", rule.mcp),
            ));
            return None;
        }
    };
    let (effect, field, ops, targets, kind) = if let Some(list) =
        rule.allow.as_ref().or(rule.deny.as_ref())
    {
        let (effect, field) = if rule.allow.is_some() {
            (Effect::Allow, "allow")
        } else {
            (Effect::Deny, "deny")
        };
        let many = matches!(list, crate::config::OneOrMany::Many(_));
        let targets =
            compile_patterns(list.as_slice(), &format!("{pointer}/{field}"), many, diags)?;
        (
            effect,
            field,
            OpSet {
                known: Operation::ToolCall.bit(),
                custom: None,
            },
            targets,
            None,
        )
    } else {
        let (effect, field, cap) = match (&rule.allow_capability, &rule.deny_capability) {
            (Some(c), _) => (Effect::Allow, "allowCapability", c),
            (_, Some(c)) => (Effect::Deny, "denyCapability", c),
            _ => return None,
        };
        let (ops, targets, kind) = compile_capability(cap, &format!("{pointer}/{field}"), diags)?;
        (effect, field, ops, targets, kind)
    };
    let summary = format!(
        "{} {}{} {} on {}",
        effect.as_str(),
        ops.display(),
        kind.map(|k| format!(" ({k})")).unwrap_or_default(),
        targets.display(),
        server.display()
    );
    let _ = field;
    Some(CompiledRule {
        effect,
        server,
        ops,
        targets,
        kind,
        info: RuleInfo {
            policy: "".into(),
            index: 0,
            pointer: pointer.into(),
            effect,
            summary: summary.into(),
        },
    })
}

fn compile_capability(
    cap: &Capability,
    pointer: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<(OpSet, PatternSet, Option<TargetKind>)> {
    let op_ptr = format!("{pointer}/operation");
    let text = cap.operation.as_str();
    let is_glob = text.chars().any(|c| matches!(c, '*' | '?' | '[' | '{'));
    let mut ops = if is_glob {
        if text.contains("custom:") {
            diags.push(
                Diagnostic::new(
                    codes::CUSTOM_GLOB,
                    op_ptr,
                    format!("operation glob `{text}` would match custom methods"),
                )
                .help("name each custom method on its own, e.g. \"custom:tasks/get\""),
            );
            return None;
        }
        let pat = match Pattern::new(text) {
            Ok(p) => p,
            Err(e) => {
                diags.push(Diagnostic::new(
                    codes::BAD_GLOB,
                    op_ptr,
                    format!("invalid operation pattern `{text}`: {e}"),
                ));
                return None;
            }
        };
        let known = KNOWN_OPERATIONS
            .iter()
            .filter(|o| pat.matches(&o.name()))
            .fold(0u16, |acc, o| acc | o.bit());
        if known == 0 {
            diags.push(
                Diagnostic::new(
                    codes::UNKNOWN_OPERATION,
                    op_ptr,
                    format!("operation pattern `{text}` matches no operation"),
                )
                .help(format!("operations: {}", known_names())),
            );
            return None;
        }
        OpSet {
            known,
            custom: None,
        }
    } else {
        match Operation::parse(text) {
            Some(Operation::Custom(m)) => OpSet {
                known: 0,
                custom: Some(m),
            },
            Some(op) => OpSet {
                known: op.bit(),
                custom: None,
            },
            None => {
                let names: Vec<String> = KNOWN_OPERATIONS
                    .iter()
                    .map(|o| o.name().into_owned())
                    .collect();
                let help =
                    did_you_mean(text, names.iter().map(|s| s.as_str())).unwrap_or_else(|| {
                        format!("operations: {}, or custom:<method>", known_names())
                    });
                diags.push(
                    Diagnostic::new(
                        codes::UNKNOWN_OPERATION,
                        op_ptr,
                        format!("unknown operation `{text}`"),
                    )
                    .help(help),
                );
                return None;
            }
        }
    };
    let kind = match &cap.target_kind {
        None => None,
        Some(k) => match TargetKind::parse(k) {
            Some(kind) => Some(kind),
            None => {
                let help = did_you_mean(k, TargetKind::ALL.iter().map(|k| k.name()))
                    .unwrap_or_else(|| {
                        format!("target kinds: {}", kinds_display(&TargetKind::ALL))
                    });
                diags.push(
                    Diagnostic::new(
                        codes::UNKNOWN_TARGET_KIND,
                        format!("{pointer}/targetKind"),
                        format!("unknown targetKind `{k}`"),
                    )
                    .help(help),
                );
                return None;
            }
        },
    };
    if let Some(kind) = kind {
        let fitting = KNOWN_OPERATIONS
            .iter()
            .filter(|o| ops.known & o.bit() != 0 && o.kinds().contains(&kind))
            .fold(0u16, |acc, o| acc | o.bit());
        let custom_fits = ops.custom.is_some() && kind == TargetKind::Server;
        if fitting == 0 && !custom_fits {
            let fits = match &ops.custom {
                Some(_) => "server".to_string(),
                None => {
                    let mut ks: Vec<&str> = KNOWN_OPERATIONS
                        .iter()
                        .filter(|o| ops.known & o.bit() != 0)
                        .flat_map(|o| o.kinds().iter().map(|k| k.name()))
                        .collect();
                    ks.sort();
                    ks.dedup();
                    ks.join(", ")
                }
            };
            diags.push(
                Diagnostic::new(
                    codes::KIND_MISMATCH,
                    format!("{pointer}/targetKind"),
                    format!("targetKind `{kind}` does not fit operation `{text}`"),
                )
                .help(format!("use one of: {fits}; or leave targetKind out")),
            );
            return None;
        }
        ops.known = fitting;
    }
    let targets = match &cap.target {
        None => PatternSet::default(),
        Some(t) => {
            let mut set = compile_patterns(
                std::slice::from_ref(t),
                &format!("{pointer}/target"),
                false,
                diags,
            )?;
            // Resource URIs are matched in canonical form, like requests: a target that may
            // match resources also matches the canonical spelling of its literal part
            // (`FILE:///secret*` matches `file:///secret.env`). A rule that only applies to
            // resources must be a usable URI; one that may also match other kinds (prompt
            // names for completion, `*` operations) keeps its text as written too.
            let matched_ops = || KNOWN_OPERATIONS.iter().filter(|o| ops.known & o.bit() != 0);
            let may_match_resources = ops.known != 0
                && kind.is_none_or(|k| k == TargetKind::Resource)
                && matched_ops().any(|o| o.kinds().contains(&TargetKind::Resource));
            let only_resources = may_match_resources
                && ops.custom.is_none()
                && (kind == Some(TargetKind::Resource)
                    || matched_ops().all(|o| o.kinds() == [TargetKind::Resource]));
            if may_match_resources {
                match canonical_pattern(t) {
                    Ok(Some(c)) if only_resources && set.0[0].is_literal() => {
                        set = PatternSet(vec![Pattern::Exact(c.into())])
                    }
                    Ok(Some(c)) => {
                        if let Ok(p) = Pattern::new(&c) {
                            set.0.push(p);
                        }
                    }
                    Ok(None) => {}
                    Err(e) if only_resources => {
                        diags.push(
                            Diagnostic::new(codes::BAD_VALUE, format!("{pointer}/target"), format!("target `{t}` is not a usable resource URI: {e}"))
                                .help("write the URI as the upstream lists it, e.g. file:///srv/data/report.csv, or a glob such as file:///srv/data/*"),
                        );
                        return None;
                    }
                    Err(_) => {}
                }
            }
            set
        }
    };
    Some((ops, targets, kind))
}

fn known_names() -> String {
    KNOWN_OPERATIONS
        .iter()
        .map(|o| o.name().into_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::check_source;

    fn engine(text: &str) -> Engine {
        let out = check_source(text);
        let errors: Vec<_> = out
            .diagnostics
            .iter()
            .filter(|d| d.severity == crate::diagnostics::Severity::Error)
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");
        Engine::compile(&out.config.unwrap()).0
    }

    #[test]
    fn uri_patterns_match_their_canonical_spelling() {
        assert_eq!(
            canonical_pattern("FILE:///secret*").unwrap().as_deref(),
            Some("file:///secret*")
        );
        assert_eq!(
            canonical_pattern("http://Internal.example:80/*")
                .unwrap()
                .as_deref(),
            Some("http://internal.example/*")
        );
        assert_eq!(
            canonical_pattern("file:///a/../b.env").unwrap().as_deref(),
            Some("file:///b.env")
        );
        assert_eq!(canonical_pattern("file:///public/*").unwrap(), None);
        assert_eq!(canonical_pattern("read_*").unwrap(), None);
        assert_eq!(canonical_pattern("*").unwrap(), None);
        assert!(canonical_pattern("file:///../x").is_err());
        let e = engine(
            r#"{ "servers": [{ "name": "fs", "transport": { "stdio": { "command": "x" } } }],
                 "policy": { "rules": [
                   { "mcp": "fs", "allowCapability": { "operation": "resource:read" } },
                   { "mcp": "fs", "denyCapability": { "operation": "*", "target": "FILE:///secret*" } } ] } }"#,
        );
        let s = e.subject("anyone");
        let read = |u: &str| {
            e.decide(
                &s,
                &Request::new("fs", Operation::ResourceRead, u, TargetKind::Resource).unwrap(),
            )
        };
        assert_eq!(read("file:///secret.env").effect, Effect::Deny);
        assert_eq!(read("FILE:///secret.env").effect, Effect::Deny);
        assert_eq!(read("file:///public.txt").effect, Effect::Allow);
    }

    #[test]
    fn requests_must_fit_their_kind() {
        assert!(matches!(
            Request::new(
                "fs",
                Operation::ResourceRead,
                "file:///a/../b",
                TargetKind::Tool
            ),
            Err(UriError::KindMismatch { .. })
        ));
    }

    #[test]
    fn a_top_level_deny_holds_on_private_servers() {
        let e = engine(
            r#"{ "groups": [{ "id": "a", "users": ["alice"],
                   "servers": [{ "name": "priv", "transport": { "stdio": { "command": "x" } } }],
                   "policy": { "rules": [{ "mcp": "priv", "allow": "*" }] } }],
                 "policy": { "rules": [{ "mcp": "*", "deny": "delete_*" }] } }"#,
        );
        let alice = e.subject("alice");
        assert_eq!(
            e.decide(&alice, &Request::tool_call("priv", "read")).effect,
            Effect::Allow
        );
        assert_eq!(
            e.decide(&alice, &Request::tool_call("priv", "delete_all"))
                .effect,
            Effect::Deny
        );
        // Others still cannot reach the private server at all.
        let bob = e.subject("bob");
        assert_eq!(
            e.decide(&bob, &Request::tool_call("priv", "read")).reason,
            Reason::UnknownServer
        );
    }
}
