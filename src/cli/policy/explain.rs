//! `fentaris policy explain`.

use std::fmt::Write as _;

use serde_json::Value;

use super::{Evaluated, Format, Query, evaluate};
use crate::cli::{CliError, CliResult, Context, display_path, output};
use crate::config::SpanIndex;
use crate::policy::{Effect, Engine, RuleInfo, RuleStatus};

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["tool", "operation", "request_id"])))]
pub struct ExplainArgs {
    /// The user (subject) making the request
    #[arg(long, required_unless_present = "request_id", add = clap_complete::ArgValueCandidates::new(crate::cli::completions::complete_users))]
    pub user: Option<String>,
    /// The server, by its config name
    #[arg(long, required_unless_present = "request_id", add = clap_complete::ArgValueCandidates::new(crate::cli::completions::complete_servers))]
    pub server: Option<String>,
    /// Replay the decision of a logged request (the `request` column of `fentaris logs tail`)
    /// under the current config
    #[arg(long, value_name = "ID", conflicts_with_all = ["user", "server", "tool", "operation", "target", "target_kind"])]
    pub request_id: Option<String>,
    /// A tool name (shorthand for --operation tool:call --target TOOL)
    #[arg(long, conflicts_with_all = ["operation", "target", "target_kind"])]
    pub tool: Option<String>,
    /// An operation, e.g. resource:read, prompt:get, resources:list, custom:<method>
    #[arg(long, add = clap_complete::ArgValueCandidates::new(crate::cli::completions::complete_operations))]
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
    let logged = match &a.request_id {
        Some(id) => Some(logged_request(&loaded, &config, id)?),
        None => None,
    };
    let q = match &logged {
        Some(l) => Query {
            user: &l.user,
            server: &l.server,
            tool: None,
            operation: Some(&l.operation),
            target: Some(&l.target),
            target_kind: None,
        },
        None => Query {
            user: a.user.as_deref().unwrap_or_default(),
            server: a.server.as_deref().unwrap_or_default(),
            tool: a.tool.as_deref(),
            operation: a.operation.as_deref(),
            target: a.target.as_deref(),
            target_kind: a.target_kind.as_deref(),
        },
    };
    let ev = evaluate(&engine, &q).map_err(CliError::usage)?;
    let file = display_path(&loaded.path);
    if !engine.is_declared_user(q.user) {
        let hint = crate::suggest::closest(
            q.user,
            crate::suggest::config_users(&config)
                .iter()
                .map(String::as_str),
        )
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default();
        eprintln!(
            "warning: user `{}` is not declared in any group{hint}; only the top-level policy applies",
            crate::diagnostics::escape_control(q.user)
        );
    }
    if let Some(m) =
        crate::suggest::unknown_name("server", q.server, &crate::suggest::config_servers(&config))
    {
        eprintln!("warning: {m}");
    }
    if let Some(l) = &logged {
        let now = match ev.effect {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        };
        eprintln!(
            "request {}: `{}` {} `{}` on `{}` at {}, logged decision: {}",
            crate::diagnostics::escape_control(&l.id),
            crate::diagnostics::escape_control(&l.user),
            crate::diagnostics::escape_control(&l.operation),
            crate::diagnostics::escape_control(&l.target),
            crate::diagnostics::escape_control(&l.server),
            crate::diagnostics::escape_control(&l.time),
            crate::diagnostics::escape_control(&l.decision),
        );
        if !l.decision.is_empty() && l.decision != now {
            eprintln!(
                "note: the current config decides `{now}`: the config changed since (or middleware decided then)"
            );
        }
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

/// A request as the audit log recorded it.
struct Logged {
    id: String,
    time: String,
    user: String,
    server: String,
    operation: String,
    target: String,
    decision: String,
}

/// Find the `request` record with this id in the configured audit log (and its rotated
/// files).
fn logged_request(
    loaded: &crate::config::Loaded,
    config: &crate::config::Config,
    id: &str,
) -> Result<Logged, CliError> {
    if config.audit.sink != crate::config::AuditSink::File {
        return Err(CliError::usage(
            "audit.sink is `stdout`: there is no audit file to find the request in",
        ));
    }
    let path = loaded.dir.join(&config.audit.path);
    let files = crate::audit::read::file_set(&path);
    if files.is_empty() {
        return Err(CliError::usage(format!(
            "no audit log at {}\nhelp: set \"autoLog\": true in the config and run `fentaris serve`",
            display_path(&path)
        )));
    }
    let s = |v: &serde_json::Value, p: &str| {
        v.pointer(p)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    for f in files.iter().rev() {
        let lines = crate::audit::read::lines(f)
            .map_err(|e| CliError::fatal(format!("cannot read {}: {e}", f.display())))?;
        for line in lines.iter().rev() {
            let Some(v) = crate::audit::read::parse(line) else {
                continue;
            };
            if v.get("requestId").and_then(serde_json::Value::as_str) != Some(id) {
                continue;
            }
            let operation = s(&v, "/operation");
            if operation.is_empty() {
                return Err(CliError::usage(format!(
                    "request {} has no policy decision to explain (method `{}`: lifecycle traffic needs only a user)",
                    crate::diagnostics::escape_control(id),
                    crate::diagnostics::escape_control(&s(&v, "/method"))
                )));
            }
            return Ok(Logged {
                id: id.to_string(),
                time: s(&v, "/time"),
                user: s(&v, "/subject/id"),
                server: s(&v, "/server"),
                operation,
                target: s(&v, "/target"),
                decision: s(&v, "/decision"),
            });
        }
    }
    Err(CliError::findings(format!(
        "no request {} in {} (or its rotated files)\nhelp: `fentaris logs tail` shows request ids in its `request` column",
        crate::diagnostics::escape_control(id),
        display_path(&path)
    )))
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
