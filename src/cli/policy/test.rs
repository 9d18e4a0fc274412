//! `fentaris policy test`: table-driven policy cases.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Format, Query, evaluate, explain};
use crate::cli::{CliError, CliResult, Context, display_path, output};
use crate::diagnostics::{Report, render_human};
use crate::policy::{Effect, Engine};

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The test file (default: policy-tests.json beside the config)
    pub file: Option<PathBuf>,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// One case of a policy test file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Case {
    pub name: Option<String>,
    pub user: String,
    pub server: String,
    pub tool: Option<String>,
    pub operation: Option<String>,
    pub target: Option<String>,
    pub target_kind: Option<String>,
    pub expect: Expect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Allow,
    Deny,
}

pub fn run(ctx: &Context, a: TestArgs) -> CliResult {
    let (loaded, config) = ctx.load_valid()?;
    let path = a
        .file
        .unwrap_or_else(|| loaded.dir.join("policy-tests.json"));
    let shown = display_path(&path);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| CliError::fatal(format!("cannot read policy tests {shown}: {e}\nhelp: write a JSON list of cases {{\"user\", \"server\", \"tool\" | \"operation\"+\"target\", \"expect\": \"allow\"|\"deny\"}}")))?;
    let (cases, spans) = match crate::config::parse_json::<Vec<Case>>(&text) {
        Ok(x) => x,
        Err(d) => {
            let report = Report {
                file: &shown,
                source: &text,
                diagnostics: std::slice::from_ref(&*d),
            };
            eprint!("{}", render_human(&report, output::stderr_color()));
            return Err(CliError::fatal(format!(
                "{shown} is not a valid policy test file"
            )));
        }
    };
    let (engine, _) = Engine::compile(&config);
    let config_file = display_path(&loaded.path);
    let mut passed = 0usize;
    let mut failed = 0usize;
    let mut results = Vec::new();
    let mut text_out = String::new();
    for (i, c) in cases.iter().enumerate() {
        let name = c.name.clone().unwrap_or_else(|| {
            format!(
                "{} {} {}",
                c.user,
                c.server,
                c.tool
                    .clone()
                    .or_else(|| c.operation.clone().map(|o| format!(
                        "{o} {}",
                        c.target.clone().unwrap_or_default()
                    )
                    .trim()
                    .to_string()))
                    .unwrap_or_default()
            )
        });
        let line = spans
            .value_span(&format!("/{i}"))
            .map(|s| s.line)
            .unwrap_or(0);
        if c.tool.is_some() == c.operation.is_some()
            || (c.tool.is_some() && (c.target.is_some() || c.target_kind.is_some()))
        {
            return Err(CliError::fatal(format!(
                "{shown}:{line}: case {i} must have either `tool`, or `operation` (with `target`)"
            )));
        }
        let q = Query {
            user: &c.user,
            server: &c.server,
            tool: c.tool.as_deref(),
            operation: c.operation.as_deref(),
            target: c.target.as_deref(),
            target_kind: c.target_kind.as_deref(),
        };
        let ev = evaluate(&engine, &q)
            .map_err(|e| CliError::fatal(format!("{shown}:{line}: case {i}: {e}")))?;
        let want = match c.expect {
            Expect::Allow => Effect::Allow,
            Expect::Deny => Effect::Deny,
        };
        let ok = ev.effect == want;
        if ok {
            passed += 1;
            text_out.push_str(&format!("PASS  {name}\n"));
        } else {
            failed += 1;
            text_out.push_str(&format!(
                "FAIL  {name}  ({shown}:{line}): expected {}, got {}\n",
                want.as_str(),
                ev.effect.as_str()
            ));
            for l in explain::render(
                &ev,
                &loaded.outcome.spans,
                &config_file,
                output::stdout_color(),
            )
            .lines()
            {
                text_out.push_str(&format!("      {l}\n"));
            }
        }
        results.push(serde_json::json!({
            "name": name,
            "line": line,
            "expect": want.as_str(),
            "actual": ev.effect.as_str(),
            "passed": ok,
            "explanation": if ok { serde_json::Value::Null } else { explain::to_json(&ev, &loaded.outcome.spans, &config_file) },
        }));
    }
    match a.format {
        Format::Human => output::print(&format!("{text_out}\n{passed} passed, {failed} failed\n")),
        Format::Json => output::print_json(
            &serde_json::json!({ "file": shown, "passed": passed, "failed": failed, "cases": results }),
        ),
    }
    if failed > 0 {
        return Err(CliError::silent(1));
    }
    Ok(())
}
