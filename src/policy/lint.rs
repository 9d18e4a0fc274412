//! Findings that need the compiled rules: wildcard allows, shadowed and duplicate rules.

use std::collections::HashMap;

use crate::diagnostics::{Diagnostic, codes};

use super::engine::{CompiledRule, Effect, Engine};
use super::pattern::Pattern;
use super::{Operation, TargetKind};

fn covers(a: &CompiledRule, b: &CompiledRule) -> bool {
    a.ops.covers(&b.ops)
        && (a.kind.is_none() || a.kind == b.kind)
        && a.server.covers(&b.server)
        && a.targets.covers(&b.targets)
}

fn is_broad(r: &CompiledRule) -> bool {
    !r.server.is_literal()
        || r.targets.0.is_empty()
        || r.targets.0.iter().any(|p| !p.is_literal())
        || r.ops.known.count_ones() > 1
}

/// A key equal for rules that match exactly the same requests (up to pattern spelling).
fn key(r: &CompiledRule) -> (String, u16, Option<Box<str>>, Option<TargetKind>, String) {
    let mut targets: Vec<String> = r.targets.0.iter().map(|p| p.display()).collect();
    targets.sort();
    targets.dedup();
    (
        r.server.display(),
        r.ops.known,
        r.ops.custom.clone(),
        r.kind,
        targets.join("\u{0}"),
    )
}

pub(crate) fn lint(e: &Engine, diags: &mut Vec<Diagnostic>) {
    for p in &e.policies {
        let rules: Vec<&CompiledRule> = p.rules.iter().map(|&r| &e.rules[r as usize]).collect();
        // Wildcard allow.
        for r in &rules {
            if r.effect == Effect::Allow
                && matches!(r.server, Pattern::Any)
                && r.ops.matches(&Operation::ToolCall)
                && r.targets.is_any()
                && r.kind.is_none_or(|k| k == TargetKind::Tool)
            {
                diags.push(
                    Diagnostic::new(codes::WILDCARD_ALLOW, &r.info.pointer, "this rule allows every tool of every server the policy's users can see")
                        .help("list the servers and tools the users need; keep `allow *` on `mcp *` for administrators only"),
                );
            }
        }
        // Duplicates and rules a deny makes moot, by exact key.
        let keys: Vec<_> = rules.iter().map(|r| key(r)).collect();
        let mut first: HashMap<&_, [Option<usize>; 2]> = HashMap::new();
        for (j, r) in rules.iter().enumerate() {
            let slot = first.entry(&keys[j]).or_default();
            let ei = if r.effect == Effect::Allow { 0 } else { 1 };
            if let Some(i) = slot[ei] {
                diags.push(
                    Diagnostic::new(
                        codes::DUPLICATE_RULE,
                        &r.info.pointer,
                        format!(
                            "rule repeats rule {} of policy `{}`",
                            rules[i].info.index, r.info.policy
                        ),
                    )
                    .help("remove one of the two"),
                );
            } else {
                slot[ei] = Some(j);
            }
        }
        let mut reported = vec![false; rules.len()];
        for (j, r) in rules.iter().enumerate() {
            if r.effect == Effect::Allow
                && let Some(i) = first.get(&keys[j]).and_then(|s| s[1])
            {
                shadowed(diags, r, rules[i]);
                reported[j] = true;
            }
        }
        // Rules a broader rule decides entirely.
        let broad: Vec<usize> = (0..rules.len()).filter(|&i| is_broad(rules[i])).collect();
        for (j, r) in rules.iter().enumerate() {
            if reported[j] {
                continue;
            }
            for &i in &broad {
                let b = rules[i];
                if i == j || keys[i] == keys[j] {
                    continue;
                }
                let decides =
                    b.effect == r.effect || (b.effect == Effect::Deny && r.effect == Effect::Allow);
                if decides && covers(b, r) {
                    shadowed(diags, r, b);
                    break;
                }
            }
        }
    }
}

fn shadowed(diags: &mut Vec<Diagnostic>, r: &CompiledRule, by: &CompiledRule) {
    let why = if by.effect == Effect::Deny && r.effect == Effect::Allow {
        "every case it allows is denied by"
    } else {
        "every case it covers is already decided by"
    };
    diags.push(
        Diagnostic::new(
            codes::SHADOWED_RULE,
            &r.info.pointer,
            format!(
                "rule can never decide anything: {why} rule {} (`{}`)",
                by.info.index, by.info.summary
            ),
        )
        .help("remove the rule, or narrow the broader one"),
    );
}
