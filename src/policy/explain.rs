//! `policy explain`: the decision, the rule that decided it, the rules that matched but lost,
//! and why every other rule of the subject's policies did not match.

use serde::Serialize;

use super::TargetKind;
use super::engine::{Effect, Engine, Reason, Request, RuleInfo, Subject, visible};

/// What one rule did for a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "why", rename_all = "camelCase")]
pub enum RuleStatus {
    /// This rule decided.
    Decided,
    /// This rule matched but another decided (deny wins; the first allow is reported).
    Overridden,
    /// The rule applies to the server but not to this request: a near miss.
    NearMiss(String),
    /// The rule does not apply to this server.
    OtherServer(String),
}

/// One rule in the trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleTrace {
    #[serde(flatten)]
    pub rule: RuleInfo,
    /// The group through which the subject holds the policy (`None`: the top-level policy).
    pub group: Option<String>,
    #[serde(flatten)]
    pub status: RuleStatus,
}

/// The full answer of `policy explain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    pub decision: Effect,
    /// A one-line reason.
    pub reason: String,
    pub user: String,
    pub groups: Vec<String>,
    pub server: String,
    pub operation: String,
    pub target: String,
    pub target_kind: TargetKind,
    pub decided_by: Option<RuleInfo>,
    /// The group whose credential bindings an allowed request uses.
    pub credential_group: Option<String>,
    pub rules: Vec<RuleTrace>,
}

impl Engine {
    /// Explain a decision.
    pub fn explain(&self, subject: &Subject, req: &Request) -> Explanation {
        let decision = self.decide(subject, req);
        let decided_rule = match decision.reason {
            Reason::Rule(r) => Some(r),
            _ => None,
        };
        let server_visible = !matches!(decision.reason, Reason::UnknownServer);
        let mut rules = Vec::new();
        for scope in self.subject_scopes(subject) {
            let sc = &self.scopes[scope as usize];
            let group = sc.group.map(|g| self.groups[g as usize].clone());
            for &r in &self.policies[sc.policy as usize].rules {
                let rule = &self.rules[r as usize];
                let status = if !rule.server.matches(req.server) {
                    RuleStatus::OtherServer(format!(
                        "mcp `{}` does not match server `{}`",
                        rule.server.display(),
                        req.server
                    ))
                } else if !server_visible
                    || !self
                        .servers
                        .iter()
                        .any(|s| s.name == req.server && visible(s, sc.group))
                {
                    RuleStatus::OtherServer(format!(
                        "server `{}` is not visible through {}",
                        req.server,
                        group
                            .as_deref()
                            .map(|g| format!("group `{g}`"))
                            .unwrap_or_else(|| "the top-level policy".into())
                    ))
                } else if !rule.ops.matches(&req.operation) {
                    RuleStatus::NearMiss(format!(
                        "operation `{}` is not {}",
                        req.operation,
                        rule.ops.display()
                    ))
                } else if rule.kind.is_some_and(|k| k != req.kind) {
                    RuleStatus::NearMiss(format!(
                        "targetKind is `{}`, the rule wants `{}`",
                        req.kind,
                        rule.kind.map(|k| k.name()).unwrap_or("")
                    ))
                } else if !rule.targets.matches(req.target()) {
                    RuleStatus::NearMiss(format!(
                        "`{}` does not match {}",
                        req.target(),
                        rule.targets.display()
                    ))
                } else if decided_rule == Some(r) {
                    RuleStatus::Decided
                } else {
                    RuleStatus::Overridden
                };
                rules.push(RuleTrace {
                    rule: rule.info.clone(),
                    group: group.clone(),
                    status,
                });
            }
        }
        let decided_by = decided_rule.map(|r| self.rules[r as usize].info.clone());
        let reason =
            match (&decision.reason, &decided_by) {
                (Reason::UnknownServer, _) => format!(
                    "server `{}` does not exist or is not visible to `{}`",
                    req.server, subject.id
                ),
                (Reason::NoMatchingRule, _) => {
                    "no rule allows this request (the baseline is deny)".to_string()
                }
                (Reason::Rule(_), Some(info)) => format!(
                    "{} by rule {} of policy `{}`{}",
                    if info.effect == Effect::Deny {
                        "denied"
                    } else {
                        "allowed"
                    },
                    info.index,
                    info.policy,
                    if info.effect == Effect::Deny
                        && rules.iter().any(|t| t.status == RuleStatus::Overridden
                            && t.rule.effect == Effect::Allow)
                    {
                        " (deny wins over allow)"
                    } else {
                        ""
                    }
                ),
                (Reason::Rule(_), None) => String::new(),
            };
        Explanation {
            decision: decision.effect,
            reason,
            user: subject.id.clone(),
            groups: subject.groups.clone(),
            server: req.server.to_string(),
            operation: req.operation.name().into_owned(),
            target: req.target().to_string(),
            target_kind: req.kind,
            credential_group: if decision.is_allow() {
                self.deciding_group(&decision).map(str::to_string)
            } else {
                None
            },
            decided_by,
            rules,
        }
    }
}
