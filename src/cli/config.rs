//! `fentaris config schema | show`.

use super::{CliResult, Context, output};

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Print the JSON Schema of config.json (generated from the types)
    Schema,
    /// Print the resolved config, defaults filled in (credential sources shown as references)
    Show,
}

pub fn run(ctx: &Context, cmd: ConfigCommand) -> CliResult {
    match cmd {
        ConfigCommand::Schema => {
            output::print_json(&crate::config::json_schema());
            Ok(())
        }
        ConfigCommand::Show => {
            let (_, config) = ctx.load_valid()?;
            // Credential sources serialise as their references ({"env": ...}); values are
            // never resolved here.
            output::print_json(&config);
            Ok(())
        }
    }
}
