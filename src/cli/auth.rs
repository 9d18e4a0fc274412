//! `fentaris auth api-key add | list | revoke`: client API keys, stored as keyed digests.

use std::time::SystemTime;

use serde_json::json;

use super::vault_access::{LOCK_TIMEOUT, key_lookup, read_stdin_secret, vault_error};
use super::{CliError, CliResult, Context, output};
use crate::diagnostics::escape_control;
use crate::vault::{Vault, generate_api_key};

#[derive(Debug, clap::Subcommand)]
pub enum AuthCommand {
    /// Manage client API keys
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCommand),
}

#[derive(Debug, clap::Subcommand)]
pub enum ApiKeyCommand {
    /// Add a key for USER: generated (printed once) or read from stdin
    #[command(group(clap::ArgGroup::new("how").required(true).args(["value_stdin", "generate"])))]
    Add {
        /// The user the key authenticates as
        user: String,
        /// Read the key from stdin (at least 20 characters, no whitespace)
        #[arg(long)]
        value_stdin: bool,
        /// Generate a new fnt_… key and print it once
        #[arg(long)]
        generate: bool,
        /// A label to recognise the key by
        #[arg(long)]
        label: Option<String>,
        /// Expire the key after this long, e.g. 90d, 12h
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        expires_in: Option<std::time::Duration>,
    },
    /// List keys (never the keys themselves)
    List {
        /// Only this user's keys
        user: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: ListFormat,
    },
    /// Revoke a key
    Revoke { user: String, key_id: String },
}

/// Table or JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    #[default]
    Table,
    Json,
}

/// A key lifetime: more than zero, at most 100 years.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 90d, 12h, 30m)"))?;
    if d.is_zero() {
        return Err(
            "a key that expires at once is useless; give a positive duration such as 90d".into(),
        );
    }
    if d > std::time::Duration::from_secs(100 * 365 * 24 * 3600) {
        return Err(
            "at most 100 years; leave --expires-in out for a key that does not expire".into(),
        );
    }
    Ok(d)
}

pub fn run(ctx: &Context, cmd: AuthCommand) -> CliResult {
    let AuthCommand::ApiKey(cmd) = cmd;
    match cmd {
        ApiKeyCommand::Add {
            user,
            value_stdin,
            generate,
            label,
            expires_in,
        } => add(ctx, &user, value_stdin && !generate, label, expires_in),
        ApiKeyCommand::List { user, format } => list(ctx, user.as_deref(), format),
        ApiKeyCommand::Revoke { user, key_id } => {
            check_revoke_args(&user, &key_id)?;
            let (_, path) = ctx.vault_path()?;
            Vault::modify(&path, &key_lookup(), LOCK_TIMEOUT, |d| {
                d.revoke_api_key(&user, &key_id)
            })
            .map_err(vault_error)?;
            eprintln!(
                "Revoked key {key_id} of `{}`: it is refused from now on. A running `fentaris serve` \
                 applies this within a second (it follows the vault) and ends the sessions opened \
                 with this key.",
                escape_control(&user)
            );
            Ok(())
        }
    }
}

/// `revoke USER KEY_ID` must not echo a key pasted in place of either argument: the error
/// says what is wrong without the value (the id of a generated key is shown, it is no secret).
fn check_revoke_args(user: &str, key_id: &str) -> CliResult {
    let pasted = |what: &str, hint: String| {
        CliError::usage(format!(
            "the {what} argument looks like an API key, not a {what} (not repeated here); {hint}. \
             If it is a real key, it is now in your shell history: revoke it and clear the history entry"
        ))
    };
    if crate::vault::is_generated_key(key_id) {
        let id = key_id.get(4..12).unwrap_or_default();
        return Err(pasted(
            "key id",
            format!(
                "its key id is {id}: `fentaris auth api-key revoke {} {id}`",
                escape_control(user)
            ),
        ));
    }
    if crate::config::looks_like_secret(user).is_some() {
        return Err(pasted(
            "user",
            "the arguments are USER then KEY_ID; `fentaris auth api-key list` shows both".into(),
        ));
    }
    // Key ids are 8 letters and digits. Anything else is not one, and may be a key (keys are
    // at least 20 characters): say so without repeating it.
    if key_id.is_empty() || key_id.len() > 16 || !key_id.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return Err(CliError::usage(format!(
            "the key id argument is not a key id (not repeated here, in case it is a key): key ids \
             are 8 letters and digits, like Ab3dE9xZ; `fentaris auth api-key list {}` shows them. \
             If you pasted a key, it is now in your shell history: revoke it and clear the entry",
            escape_control(user)
        )));
    }
    Ok(())
}

fn add(
    ctx: &Context,
    user: &str,
    from_stdin: bool,
    label: Option<String>,
    expires_in: Option<std::time::Duration>,
) -> CliResult {
    if user.trim().is_empty() || user.chars().any(char::is_whitespace) {
        return Err(CliError::usage(
            "a user id cannot be empty or contain whitespace",
        ));
    }
    let (loaded, path) = ctx.vault_path()?;
    let (key_id, key, generated) = if from_stdin {
        let key = read_stdin_secret()?;
        if key.len() < 20 {
            return Err(CliError::usage(
                "the key is shorter than 20 characters; use a long random value, or --generate",
            ));
        }
        if key.expose().chars().any(char::is_whitespace) {
            return Err(CliError::usage(
                "the key contains whitespace; keys are one token",
            ));
        }
        (None, key, false)
    } else {
        let (id, key) = generate_api_key();
        (Some(id), key, true)
    };
    let expires = expires_in.and_then(|d| SystemTime::now().checked_add(d));
    let (id, _) = Vault::modify(&path, &key_lookup(), LOCK_TIMEOUT, |d| {
        d.add_api_key(user, &key, key_id, label, expires)
    })
    .map_err(vault_error)?;
    if let Some(config) = &loaded.outcome.config {
        let (engine, _) = crate::policy::Engine::compile(config);
        if !engine.is_declared_user(user) {
            eprintln!(
                "warning: user `{user}` is not declared in any group, so only the top-level policy applies to this key"
            );
        }
    }
    if generated {
        output::print(&format!("{}\n", key.expose()));
        eprintln!(
            "Created key {id} for `{user}`. It is shown once: store it now (e.g. in your client's secret store)."
        );
    } else {
        eprintln!("Stored key {id} for `{user}`.");
    }
    Ok(())
}

fn list(ctx: &Context, user: Option<&str>, format: ListFormat) -> CliResult {
    let (_, vault) = ctx.open_vault()?;
    let now = SystemTime::now();
    let rows: Vec<_> = vault
        .envelope
        .api_keys
        .iter()
        .filter(|k| user.is_none_or(|u| u == k.user))
        .map(|k| {
            let expired = k
                .expires
                .as_deref()
                .and_then(|e| humantime::parse_rfc3339(e).ok())
                .is_some_and(|e| now >= e);
            let status = if k.revoked.is_some() {
                "revoked"
            } else if expired {
                "expired"
            } else {
                "active"
            };
            (k, status)
        })
        .collect();
    match format {
        ListFormat::Json => output::print_json(&json!(
            rows.iter()
                .map(|(k, status)| json!({
                    "user": k.user, "keyId": k.key_id, "label": k.label, "created": k.created,
                    "expires": k.expires, "revoked": k.revoked, "status": status,
                }))
                .collect::<Vec<_>>()
        )),
        ListFormat::Table => {
            let mut t = comfy_table::Table::new();
            t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
            t.set_header(["user", "key id", "label", "created", "expires", "status"]);
            for (k, status) in &rows {
                t.add_row([
                    k.user.as_str(),
                    k.key_id.as_str(),
                    k.label.as_deref().unwrap_or(""),
                    k.created.as_str(),
                    k.expires.as_deref().unwrap_or("never"),
                    status,
                ]);
            }
            output::print(&format!("{t}\n"));
        }
    }
    Ok(())
}
