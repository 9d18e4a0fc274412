//! Findings that need the compiled rules: wildcard allows, shadowed and duplicate rules, glob
//! classes that look like literal text.

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
                    Diagnostic::new(codes::WILDCARD_ALLOW, &*r.info.pointer, "this rule allows every tool of every server the policy's users can see")
                        .help("list the servers and tools the users need; keep `allow *` on `mcp *` for administrators only"),
                );
            }
        }
        // `[...]` that probably meant the brackets themselves.
        for r in &rules {
            bracket_classes(diags, r);
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
                        &*r.info.pointer,
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
            &*r.info.pointer,
            format!(
                "rule can never decide anything: {why} rule {} (`{}`)",
                by.info.index, by.info.summary
            ),
        )
        .help("remove the rule, or narrow the broader one"),
    );
}

/// `[...]` classes of a pattern that look like literal text rather than a set of characters:
/// a bracketed word (`[draft]`, `[id]`), a repeated character (`[secret]`), an IPv6 host
/// (`[::1]`). Ranges (`[0-9]`), negations (`[!x]`), single characters (`[*]`), digit sets
/// (`[01]`) and case pairs (`[Rr]`) are taken as meant.
pub(crate) fn literal_looking_classes(text: &str) -> Vec<&str> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'[' => {
                let mut j = i + 1;
                let negated = matches!(b.get(j), Some(b'!' | b'^'));
                if negated {
                    j += 1;
                }
                if b.get(j) == Some(&b']') {
                    j += 1;
                }
                let Some(end) = text[j..].find(']').map(|k| j + k) else {
                    break;
                };
                let inner = &text[i + 1..end];
                let chars: Vec<char> = inner.chars().collect();
                let has_range = chars.len() >= 3 && chars[1..chars.len() - 1].contains(&'-');
                let case_pair = chars.len() == 2
                    && chars[0] != chars[1]
                    && chars[0].eq_ignore_ascii_case(&chars[1]);
                let repeated = chars
                    .iter()
                    .enumerate()
                    .any(|(k, c)| chars[..k].contains(c));
                let looks_literal = inner.contains(':')
                    || (!negated
                        && !has_range
                        && !case_pair
                        && chars.len() >= 2
                        && (repeated || chars.iter().any(|c| c.is_alphabetic())));
                if looks_literal {
                    out.push(&text[i..=end]);
                }
                i = end + 1;
            }
            _ => i += 1,
        }
    }
    out
}

fn bracket_classes(diags: &mut Vec<Diagnostic>, r: &CompiledRule) {
    let server = (format!("{}/mcp", r.info.pointer), vec![&r.server]);
    let targets = (
        r.info.pointer.to_string(),
        r.targets.0.iter().collect::<Vec<_>>(),
    );
    for (pointer, patterns) in [server, targets] {
        // One finding per field (a target may be compiled twice, as written and canonical).
        let Some((text, class)) = patterns.iter().find_map(|p| {
            let text = p.as_str();
            literal_looking_classes(text).first().map(|c| (text, *c))
        }) else {
            continue;
        };
        let escaped = text.replace('[', "\\[").replace(']', "\\]");
        diags.push(
            Diagnostic::new(
                codes::GLOB_CLASS_LITERAL,
                pointer,
                format!(
                    "`{class}` in `{text}` is a glob class: it matches one character, not the text `{class}`"
                ),
            )
            .help(format!(
                "to match the brackets, escape them: `{escaped}` (in JSON \"{}\"); for one of several words use `{{a,b}}`",
                escaped.replace('\\', "\\\\")
            )),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::literal_looking_classes as classes;

    #[test]
    fn bracket_classes_that_look_literal() {
        assert_eq!(classes("file:///docs/[draft].md"), ["[draft]"]);
        assert_eq!(classes("get_[id]"), ["[id]"]);
        assert_eq!(classes("http://[::1]:8080/*"), ["[::1]"]);
        assert_eq!(classes("file:///[secret]"), ["[secret]"]);
        assert_eq!(classes("[aa]"), ["[aa]"]);
        for meant in [
            "t[01]",
            "s[0-9]*",
            "[Rr]eadme",
            "x[!a]",
            "a[*]",
            "file:///\\[draft\\].md",
            "plain",
            "[a-z_]x",
        ] {
            assert!(classes(meant).is_empty(), "{meant}");
        }
    }
}
