//! `fentaris credentials set | list | remove`: upstream secrets in the vault.

use serde_json::json;

use super::auth::ListFormat;
use super::vault_access::{LOCK_TIMEOUT, confirm, key_lookup, read_secret, vault_error};
use super::{CliError, CliResult, Context, output};
use crate::vault::Vault;

#[derive(Debug, clap::Subcommand)]
pub enum CredentialsCommand {
    /// Store a secret (hidden prompt on a terminal, or --value-stdin)
    Set {
        /// The entry name, e.g. github.token
        name: String,
        /// Read the value from stdin
        #[arg(long)]
        value_stdin: bool,
    },
    /// List entry names and dates (never values)
    List {
        #[arg(long, value_enum, default_value_t)]
        format: ListFormat,
    },
    /// Remove an entry
    Remove {
        #[arg(add = clap_complete::ArgValueCandidates::new(crate::cli::completions::complete_credentials))]
        name: String,
        /// Do not ask for confirmation
        #[arg(long)]
        yes: bool,
    },
}

pub fn run(ctx: &Context, cmd: CredentialsCommand) -> CliResult {
    match cmd {
        CredentialsCommand::Set { name, value_stdin } => {
            let (_, path) = ctx.vault_path()?;
            let value = read_secret(value_stdin, &name)?;
            if value.is_empty() {
                return Err(CliError::usage("the value is empty; nothing was stored"));
            }
            let (created, _) =
                Vault::modify(&path, &key_lookup(), LOCK_TIMEOUT, |d| d.set(&name, &value))
                    .map_err(vault_error)?;
            eprintln!(
                "{} `{name}`. A running `fentaris serve` applies it within a second (it follows \
                 the vault): upstream connections using it restart with the new value.",
                if created { "Stored" } else { "Updated" }
            );
            Ok(())
        }
        CredentialsCommand::List { format } => {
            let (_, vault) = ctx.open_vault()?;
            let entries = &vault.envelope.entries;
            match format {
                ListFormat::Json => output::print_json(&json!(entries
                    .iter()
                    .map(|(n, e)| json!({ "name": n, "created": e.created, "updated": e.updated }))
                    .collect::<Vec<_>>())),
                ListFormat::Table => {
                    let mut t = comfy_table::Table::new();
                    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
                    crate::cli::output::fit(&mut t);
                    t.set_header(["name", "created", "updated"]);
                    for (n, e) in entries {
                        t.add_row([n.as_str(), e.created.as_str(), e.updated.as_str()]);
                    }
                    output::print(&format!("{t}\n"));
                }
            }
            Ok(())
        }
        CredentialsCommand::Remove { name, yes } => {
            let (_, path) = ctx.vault_path()?;
            let env = crate::vault::read_envelope(&path).map_err(vault_error)?;
            if !env.entries.contains_key(&name) {
                let hint =
                    crate::suggest::did_you_mean(&name, env.entries.keys().map(String::as_str))
                        .map(|h| format!("; {h}"))
                        .unwrap_or_else(|| {
                            "; `fentaris credentials list` shows the entries".into()
                        });
                return Err(CliError::findings(format!(
                    "the vault has no entry `{}`{hint}\nnothing was changed",
                    crate::diagnostics::escape_control(&name)
                )));
            }
            confirm(&format!("Remove `{name}` from the vault?"), yes)?;
            Vault::modify(&path, &key_lookup(), LOCK_TIMEOUT, |d| Ok(d.remove(&name)))
                .map_err(vault_error)?;
            eprintln!("Removed `{name}`.");
            Ok(())
        }
    }
}
