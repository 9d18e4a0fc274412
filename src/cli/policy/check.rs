//! `fentaris policy check`.

use crate::cli::{CliError, CliResult, Context, display_path, output};
use crate::diagnostics::{Report, Summary, render_github, render_human, render_json, render_sarif};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckFormat {
    /// Source line with a caret (colour on a TTY unless NO_COLOR)
    #[default]
    Human,
    Json,
    /// SARIF 2.1.0 for GitHub code scanning
    Sarif,
    /// GitHub Actions annotations (::error file=…,line=…::)
    Github,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub format: CheckFormat,
    /// Fail (exit 1) on security warnings and warnings too
    #[arg(long)]
    pub deny_warnings: bool,
}

pub fn run(ctx: &Context, args: CheckArgs) -> CliResult {
    let loaded = ctx.load()?;
    let file = display_path(&loaded.path);
    let diags = &loaded.outcome.diagnostics;
    let report = Report {
        file: &file,
        source: &loaded.source,
        diagnostics: diags,
    };
    let text = match args.format {
        CheckFormat::Human => render_human(&report, output::stdout_color()),
        CheckFormat::Json => render_json(&report) + "\n",
        CheckFormat::Sarif => render_sarif(&report) + "\n",
        CheckFormat::Github => render_github(&report),
    };
    output::print(&text);
    if Summary::of(diags).fails(args.deny_warnings) {
        return Err(CliError::silent(1));
    }
    Ok(())
}
