//! `fentaris policy check | explain | test`.

mod check;
mod explain;
mod test;

use crate::policy::{Effect, Engine, Explanation, Operation, Request, TargetKind};

use super::{CliResult, Context};

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Validate the config: every finding with a code, a location and help
    Check(check::CheckArgs),
    /// Explain the decision for one request: the deciding rule, rules that lost, near misses
    Explain(explain::ExplainArgs),
    /// Run policy test cases (default: policy-tests.json beside the config)
    Test(test::TestArgs),
}

pub fn run(ctx: &Context, cmd: PolicyCommand) -> CliResult {
    match cmd {
        PolicyCommand::Check(a) => check::run(ctx, a),
        PolicyCommand::Explain(a) => explain::run(ctx, a),
        PolicyCommand::Test(a) => test::run(ctx, a),
    }
}

/// Human or JSON output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[default]
    Human,
    Json,
}

/// A request as written on the command line or in a test case.
pub struct Query<'a> {
    pub user: &'a str,
    pub server: &'a str,
    pub tool: Option<&'a str>,
    pub operation: Option<&'a str>,
    pub target: Option<&'a str>,
    pub target_kind: Option<&'a str>,
}

/// The evaluated query.
pub struct Evaluated {
    pub effect: Effect,
    /// For list operations: what the decision means.
    pub note: Option<String>,
    pub explanation: Explanation,
}

/// Evaluate a query. `Err` is a usage problem (unknown operation or kind, missing target).
pub fn evaluate(engine: &Engine, q: &Query) -> Result<Evaluated, String> {
    let subject = engine.subject(q.user);
    let (op, target, kind) = match (q.tool, q.operation) {
        (Some(t), None) => (Operation::ToolCall, t.to_string(), TargetKind::Tool),
        (None, Some(op_text)) => {
            let op = Operation::parse(op_text).ok_or_else(|| {
                let names: Vec<String> = crate::policy::KNOWN_OPERATIONS
                    .iter()
                    .map(|o| o.name().into_owned())
                    .collect();
                let hint = crate::suggest::did_you_mean(op_text, names.iter().map(|s| s.as_str()))
                    .unwrap_or_else(|| {
                        format!("operations: {}, custom:<method>", names.join(", "))
                    });
                format!("unknown operation `{op_text}`; {hint}")
            })?;
            let kind = match q.target_kind {
                None => op.kinds()[0],
                Some(k) => {
                    let kind = TargetKind::parse(k).ok_or_else(|| format!("unknown target kind `{k}`; use tool, resource, resourceTemplate, prompt or server"))?;
                    if !op.kinds().contains(&kind) {
                        return Err(format!(
                            "target kind `{kind}` does not fit operation `{op}`"
                        ));
                    }
                    kind
                }
            };
            let target = match (q.target, kind) {
                (Some(t), _) => t.to_string(),
                (None, TargetKind::Server) => q.server.to_string(),
                (None, _) if op.direct_of_list().is_some() => String::new(),
                (None, _) => {
                    return Err(format!(
                        "operation `{op}` needs --target (a {kind} name or URI)"
                    ));
                }
            };
            (op, target, kind)
        }
        _ => return Err("give either a tool, or an operation (with a target)".into()),
    };

    if let Some(direct) = op.direct_of_list() {
        // List operations: is the list permitted, and is the item (if any) shown?
        let view = engine.list_view(&subject, q.server, &op);
        let item_kind = if direct == Operation::ResourceRead {
            TargetKind::Resource
        } else {
            direct.kinds()[0]
        };
        let (effect, note) = match (&view, target.is_empty()) {
            (None, _) => (
                Effect::Deny,
                format!("`{op}` is not permitted for `{}` on `{}`", q.user, q.server),
            ),
            (Some(_), true) => (
                Effect::Allow,
                format!("`{op}` is permitted; items are filtered"),
            ),
            (Some(v), false) => {
                if v.visible(&target) {
                    (Effect::Allow, format!("`{target}` is shown in `{op}`"))
                } else {
                    (Effect::Deny, format!("`{target}` is hidden from `{op}`"))
                }
            }
        };
        // The trace: the item's direct operation (what decides most items), else the list.
        let explanation = match Request::new(q.server, direct.clone(), &target, item_kind) {
            Ok(req) if !target.is_empty() => engine.explain(&subject, &req),
            _ => engine.explain(&subject, &Request::list(q.server, op.clone())),
        };
        return Ok(Evaluated {
            effect,
            note: Some(note),
            explanation,
        });
    }

    let req = match Request::new(q.server, op.clone(), &target, kind) {
        Ok(r) => r,
        Err(e) => {
            // Refused targets are denied before policy; explain what policy would see anyway.
            let raw = Request::server_op(q.server, op.clone());
            let mut explanation = engine.explain(&subject, &raw);
            explanation.decision = Effect::Deny;
            explanation.target = target.clone();
            explanation.reason = format!("target refused before policy: {e}");
            explanation.decided_by = None;
            return Ok(Evaluated {
                effect: Effect::Deny,
                note: Some(format!("`{target}` is refused: {e}")),
                explanation,
            });
        }
    };
    let explanation = engine.explain(&subject, &req);
    Ok(Evaluated {
        effect: explanation.decision,
        note: None,
        explanation,
    })
}
