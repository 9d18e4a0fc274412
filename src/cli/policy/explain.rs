//! `fentaris policy explain`.

use std::fmt::Write as _;

use serde_json::Value;

use super::{Evaluated, Format, Query, evaluate};
use crate::cli::{CliError, CliResult, Context, display_path, output};
use crate::config::SpanIndex;
use crate::policy::{Effect, Engine, RuleInfo, RuleStatus};

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["tool", "operation"])))]
pub struct ExplainArgs {
    /// The user (subject) making the request
    #[arg(long)]
    pub user: String,
    /// The server, by its config name
    #[arg(long)]
    pub server: String,
    /// A tool name (shorthand for --operation tool:call --target TOOL)
    #[arg(long, conflicts_with_all = ["operation", "target", "target_kind"])]
    pub tool: Option<String>,
    /// An operation, e.g. resource:read, prompt:get, resources:list, custom:<method>
    #[arg(long)]
    pub operation: Option<String>,
    /// The target: a name or URI (for list operations: an item, to ask whether it is shown)
    #[arg(long, requires = "operation")]
    pub target: Option<String>,
    /// The target kind: tool, resource, resourceTemplate, prompt, server
    #[arg(long, requires = "operation")]
    pub target_kind: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub fn run(ctx: &Context, a: ExplainArgs) -> CliResult {
    let (loaded, config) = ctx.load_valid()?;
    let (engine, _) = Engine::compile(&config);
    let q = Query {
        user: &a.user,
        server: &a.server,
        tool: a.tool.as_deref(),
        operation: a.operation.as_deref(),
        target: a.target.as_deref(),
        target_kind: a.target_kind.as_deref(),
    };
    let ev = evaluate(&engine, &q).map_err(CliError::usage)?;
    let file = display_path(&loaded.path);
    if !engine.is_declared_user(&a.user) {
        eprintln!(
            "warning: user `{}` is not declared in any group; only the top-level policy applies",
            a.user
        );
    }
    match a.format {
        Format::Human => output::print(&render(
            &ev,
            &loaded.outcome.spans,
            &file,
            output::stdout_color(),
        )),
        Format::Json => output::print_json(&to_json(&ev, &loaded.outcome.spans, &file)),
    }
    match ev.effect {
        Effect::Allow => Ok(()),
        Effect::Deny => Err(CliError::silent(1)),
    }
}

fn line_of(spans: &SpanIndex, pointer: &str) -> Option<usize> {
    spans.value_span(pointer).map(|s| s.line)
}

/// JSON output: the explanation with file and line added to every rule.
pub fn to_json(ev: &Evaluated, spans: &SpanIndex, file: &str) -> Value {
    let mut v = serde_json::to_value(&ev.explanation).unwrap_or(Value::Null);
    let locate = |r: &mut Value| {
        if let Some(p) = r
            .get("pointer")
            .and_then(|p| p.as_str())
            .map(str::to_string)
        {
            r["file"] = file.into();
            if let Some(l) = line_of(spans, &p) {
                r["line"] = l.into();
            }
        }
    };
    if let Some(d) = v.get_mut("decidedBy").filter(|d| !d.is_null()) {
        locate(d);
    }
    if let Some(Value::Array(rules)) = v.get_mut("rules") {
        rules.iter_mut().for_each(locate);
    }
    if let Some(n) = &ev.note {
        v["note"] = n.clone().into();
    }
    v
}

fn paint(color: bool, style: anstyle::Style, s: &str) -> String {
    if color {
        format!("{style}{s}{style:#}")
    } else {
        s.to_string()
    }
}

/// Human output.
pub fn render(ev: &Evaluated, spans: &SpanIndex, file: &str, color: bool) -> String {
    use anstyle::{AnsiColor, Style};
    let red = Style::new().fg_color(Some(AnsiColor::Red.into())).bold();
    let green = Style::new().fg_color(Some(AnsiColor::Green.into())).bold();
    let dim = Style::new().dimmed();
    let bold = Style::new().bold();
    let e = &ev.explanation;
    let mut out = String::new();
    let verdict = match ev.effect {
        Effect::Allow => paint(color, green, "ALLOW"),
        Effect::Deny => paint(color, red, "DENY "),
    };
    let _ = writeln!(
        out,
        "{verdict} {} → {}  {} {}",
        e.user,
        e.server,
        e.operation,
        crate::diagnostics::escape_control(&e.target)
    );
    let groups = if e.groups.is_empty() {
        "none".to_string()
    } else {
        e.groups.join(", ")
    };
    let _ = writeln!(out, "  user `{}` (groups: {groups})", e.user);
    if let Some(n) = &ev.note {
        let _ = writeln!(out, "  {n}");
    }
    let _ = writeln!(out, "  reason: {}", e.reason);
    if let Some(g) = &e.credential_group {
        let _ = writeln!(
            out,
            "  credentials: bindings of group `{g}`, then top-level `credentials`"
        );
    }
    let loc = |r: &RuleInfo| match line_of(spans, &r.pointer) {
        Some(l) => format!("{file}:{l}"),
        None => file.to_string(),
    };
    let rule_line = |r: &RuleInfo, mark: &str| {
        format!(
            "  {mark} {:<5}  policy `{}` rule {}  {}  {}\n          {}\n",
            r.effect.as_str(),
            r.policy,
            r.index,
            r.pointer,
            loc(r),
            r.summary
        )
    };
    let section = |out: &mut String, title: &str, items: Vec<String>| {
        if !items.is_empty() {
            let _ = writeln!(out, "\n{}", paint(color, bold, title));
            for i in items {
                out.push_str(&i);
            }
        }
    };
    let decided: Vec<String> = e
        .decided_by
        .iter()
        .map(|r| {
            rule_line(
                r,
                if r.effect == Effect::Deny {
                    "✗"
                } else {
                    "✓"
                },
            )
        })
        .collect();
    section(&mut out, "decided by", decided);
    let lost: Vec<String> = e
        .rules
        .iter()
        .filter(|t| t.status == RuleStatus::Overridden)
        .map(|t| {
            rule_line(
                &t.rule,
                if t.rule.effect == Effect::Deny {
                    "✗"
                } else {
                    "✓"
                },
            )
        })
        .collect();
    let lost_title = if e.decision == Effect::Deny {
        "matched but lost (deny wins over allow)"
    } else {
        "also matched"
    };
    section(&mut out, lost_title, lost);
    let near: Vec<String> = e
        .rules
        .iter()
        .filter_map(|t| match &t.status {
            RuleStatus::NearMiss(why) => Some(format!(
                "  · {:<5}  policy `{}` rule {}  {}  {}\n          {}\n",
                t.rule.effect.as_str(),
                t.rule.policy,
                t.rule.index,
                t.rule.pointer,
                loc(&t.rule),
                paint(color, dim, why)
            )),
            _ => None,
        })
        .collect();
    section(&mut out, "not matched (same server)", near);
    let other = e
        .rules
        .iter()
        .filter(|t| matches!(t.status, RuleStatus::OtherServer(_)))
        .count();
    if other > 0 {
        let _ = writeln!(
            out,
            "\n  ({other} rule{} for other servers not shown; --format json lists them)",
            if other == 1 { "" } else { "s" }
        );
    }
    out
}
