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
    /// Say which user and key id a key is (the key is read from stdin, never argv)
    Whoami,
}

#[derive(Debug, clap::Subcommand)]
pub enum ApiKeyCommand {
    /// Add a key for USER: generated (printed once) or read from stdin
    #[command(group(clap::ArgGroup::new("how").required(true).args(["value_stdin", "generate"])))]
    Add {
        /// The user the key authenticates as
        #[arg(add = clap_complete::ArgValueCandidates::new(crate::cli::completions::complete_users))]
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
        /// USER is not declared in the config yet, and that is intended
        #[arg(long)]
        new_user: bool,
    },
    /// Issue a new key for USER and expire the old one after an overlap (the new key is
    /// printed once)
    Rotate {
        #[arg(add = clap_complete::ArgValueCandidates::new(crate::cli::completions::complete_users))]
        user: String,
        /// The key to replace (default: USER's only active key)
        key_id: Option<String>,
        /// How long the old key keeps working, so clients can switch (0s: at once)
        #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_overlap)]
        overlap: std::time::Duration,
        /// Expire the new key after this long, e.g. 90d
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        expires_in: Option<std::time::Duration>,
    },
    /// List keys with their age and last use (never the keys themselves)
    List {
        /// Only this user's keys
        #[arg(add = clap_complete::ArgValueCandidates::new(crate::cli::completions::complete_users))]
        user: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: ListFormat,
    },
    /// Revoke a key
    Revoke {
        #[arg(add = clap_complete::ArgValueCandidates::new(crate::cli::completions::complete_users))]
        user: String,
        key_id: String,
    },
}

/// Table or JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    #[default]
    Table,
    Json,
}

/// A rotation overlap: zero (at once) up to one year.
fn parse_overlap(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 24h, 7d, 0s)"))?;
    if d > std::time::Duration::from_secs(365 * 24 * 3600) {
        return Err("at most a year: an old key that keeps working longer is not rotated".into());
    }
    Ok(d)
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
    let cmd = match cmd {
        AuthCommand::ApiKey(c) => c,
        AuthCommand::Whoami => return whoami(ctx),
    };
    match cmd {
        ApiKeyCommand::Add {
            user,
            value_stdin,
            generate,
            label,
            expires_in,
            new_user,
        } => add(
            ctx,
            &user,
            value_stdin && !generate,
            label,
            expires_in,
            new_user,
        ),
        ApiKeyCommand::Rotate {
            user,
            key_id,
            overlap,
            expires_in,
        } => rotate(ctx, &user, key_id, overlap, expires_in),
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
    new_user: bool,
) -> CliResult {
    if user.trim().is_empty() || user.chars().any(char::is_whitespace) {
        return Err(CliError::usage(
            "a user id cannot be empty or contain whitespace",
        ));
    }
    let (loaded, path) = ctx.vault_path()?;
    // A typo here would create a key nobody's policy applies to: the user must be in the
    // config, or be named new on purpose.
    // (A config without any users yet is all top-level policy: nothing to mistype.)
    let declared = loaded
        .outcome
        .config
        .as_ref()
        .map(crate::suggest::config_users)
        .unwrap_or_default();
    if !new_user
        && !declared.is_empty()
        && let Some(m) = crate::suggest::unknown_name("user", user, &declared)
    {
        return Err(CliError::usage(format!(
            "{m}\nhelp: add the user to a group in the config first, or pass --new-user if a key for an undeclared user is intended (only the top-level policy applies to it)"
        )));
    }
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

/// `rotate`: a new key for the user and, in the same vault write, the old key expiring after
/// the overlap (so both work meanwhile). The new key is printed once.
fn rotate(
    ctx: &Context,
    user: &str,
    key_id: Option<String>,
    overlap: std::time::Duration,
    expires_in: Option<std::time::Duration>,
) -> CliResult {
    let (_, path) = ctx.vault_path()?;
    let envelope = crate::vault::read_envelope(&path).map_err(vault_error)?;
    let now = SystemTime::now();
    let active: Vec<_> = envelope
        .api_keys
        .iter()
        .filter(|k| k.user == user && k.revoked.is_none() && !is_expired(k, now))
        .collect();
    let old_id = match key_id {
        Some(id) => {
            check_revoke_args(user, &id)?;
            id
        }
        None => match active.as_slice() {
            [one] => one.key_id.clone(),
            [] => {
                let users: Vec<String> = envelope.api_keys.iter().map(|k| k.user.clone()).collect();
                let hint = crate::suggest::did_you_mean(user, users.iter().map(String::as_str))
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default();
                return Err(CliError::usage(format!(
                    "`{}` has no active key to rotate{hint}\nhelp: `fentaris auth api-key add {} --generate` issues a first key",
                    escape_control(user),
                    escape_control(user)
                )));
            }
            many => {
                let ids: Vec<_> = many.iter().map(|k| k.key_id.as_str()).collect();
                return Err(CliError::usage(format!(
                    "`{}` has {} active keys ({}): name the one to rotate, e.g. `fentaris auth api-key rotate {} {}`",
                    escape_control(user),
                    ids.len(),
                    ids.join(", "),
                    escape_control(user),
                    ids[0]
                )));
            }
        },
    };
    let label = envelope
        .api_keys
        .iter()
        .find(|k| k.user == user && k.key_id == old_id)
        .and_then(|k| k.label.clone());
    let (new_id, key) = generate_api_key();
    let at = now.checked_add(overlap).unwrap_or(now);
    let expires = expires_in.and_then(|d| now.checked_add(d));
    let ((id, old_expires), _) = Vault::modify(&path, &key_lookup(), LOCK_TIMEOUT, |d| {
        let old_expires = d.expire_api_key(user, &old_id, at)?;
        let id = d.add_api_key(user, &key, Some(new_id.clone()), label.clone(), expires)?;
        Ok((id, old_expires))
    })
    .map_err(vault_error)?;
    output::print(&format!("{}\n", key.expose()));
    let when = if overlap.is_zero() {
        "now".to_string()
    } else {
        format!("at {old_expires}")
    };
    eprintln!(
        "Created key {id} for `{}` (shown once: store it now). The old key {old_id} stops working {when}; \
         a running `fentaris serve` applies both within a second.",
        escape_control(user)
    );
    Ok(())
}

fn is_expired(k: &crate::vault::format::ApiKeyRecord, now: SystemTime) -> bool {
    k.expires
        .as_deref()
        .and_then(|e| humantime::parse_rfc3339(e).ok())
        .is_some_and(|e| now >= e)
}

/// `auth whoami`: the key on stdin, checked against the vault and the config's `apiKeys`.
/// Exit 0 when it logs in, 1 when it is known but revoked or expired, or unknown.
fn whoami(ctx: &Context) -> CliResult {
    let key = read_stdin_secret()?;
    let (loaded, path) = ctx.vault_path()?;
    let vault = if path.exists() {
        Some(Vault::open(&path, &key_lookup(), Default::default()).map_err(vault_error)?)
    } else {
        None
    };
    let now = SystemTime::now();
    if let Some(v) = &vault
        && let Some((m, expires, revoked)) = v.api_key_index().identify(key.expose())
    {
        let user = escape_control(&m.user);
        if revoked {
            return Err(CliError::findings(format!(
                "this is key {} of `{user}`, and it is revoked: it cannot log in",
                m.key_id
            )));
        }
        if let Some(e) = expires.filter(|e| now >= *e) {
            return Err(CliError::findings(format!(
                "this is key {} of `{user}`, and it expired at {}: it cannot log in",
                m.key_id,
                humantime::format_rfc3339_seconds(e)
            )));
        }
        let until = expires
            .map(|e| format!(", expires {}", humantime::format_rfc3339_seconds(e)))
            .unwrap_or_default();
        output::print(&format!("user {user}, key {} (vault{until})\n", m.key_id));
        return Ok(());
    }
    if let Some(config) = &loaded.outcome.config {
        let env = |k: &str| std::env::var(k).ok();
        let (verifier, _) = crate::identity::KeyVerifier::build(config, vault.as_ref(), &env);
        if let Some(id) = verifier.verify(key.expose()) {
            output::print(&format!(
                "user {}, key {} (config apiKeys)\n",
                escape_control(&id.user),
                escape_control(&id.key_id)
            ));
            return Ok(());
        }
    }
    Err(CliError::findings(
        "this key is not known here (not in the vault, not a config `apiKeys` source that resolves in this environment)",
    ))
}

/// When each key id was last seen in the audit log (requests carry `subject.keyId`). Only
/// what `autoLog` recorded: `None` when audit is off (or written to stdout) or unreadable.
fn last_used(
    loaded: &crate::config::Loaded,
) -> Option<std::collections::HashMap<String, SystemTime>> {
    let config = loaded.outcome.config.as_ref()?;
    if !config.auto_log || config.audit.sink != crate::config::AuditSink::File {
        return None;
    }
    // No file yet: audit is on and nothing was used.
    let files = crate::audit::read::file_set(&loaded.dir.join(&config.audit.path));
    let mut out = std::collections::HashMap::new();
    for f in files {
        for line in crate::audit::read::lines(&f).ok()? {
            let Some(v) = crate::audit::read::parse(&line) else {
                continue;
            };
            let (Some(id), Some(t)) = (
                v.pointer("/subject/keyId").and_then(|k| k.as_str()),
                crate::audit::read::time_of(&v),
            ) else {
                continue;
            };
            let e = out.entry(id.to_string()).or_insert(t);
            if t > *e {
                *e = t;
            }
        }
    }
    Some(out)
}

/// A rough age: `3d`, `5h`, `12m`, `now`.
pub(crate) fn age(since: SystemTime, now: SystemTime) -> String {
    let s = now.duration_since(since).unwrap_or_default().as_secs();
    match s {
        0..60 => "now".into(),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

fn list(ctx: &Context, user: Option<&str>, format: ListFormat) -> CliResult {
    let (loaded, vault) = ctx.open_vault()?;
    if let Some(u) = user
        && !vault.envelope.api_keys.iter().any(|k| k.user == u)
    {
        let mut known: Vec<String> = vault
            .envelope
            .api_keys
            .iter()
            .map(|k| k.user.clone())
            .collect();
        if let Some(c) = &loaded.outcome.config {
            known.extend(crate::suggest::config_users(c));
        }
        known.dedup();
        if let Some(hint) = crate::suggest::did_you_mean(u, known.iter().map(String::as_str)) {
            eprintln!("note: `{}` has no keys; {hint}", escape_control(u));
        }
    }
    let now = SystemTime::now();
    let used = last_used(&loaded);
    let last = |id: &str| -> String {
        match &used {
            None => "not tracked".into(),
            Some(m) => m
                .get(id)
                .map(|t| humantime::format_rfc3339_seconds(*t).to_string())
                .unwrap_or_else(|| "never".into()),
        }
    };
    let rows: Vec<_> = vault
        .envelope
        .api_keys
        .iter()
        .filter(|k| user.is_none_or(|u| u == k.user))
        .map(|k| {
            let status = if k.revoked.is_some() {
                "revoked"
            } else if is_expired(k, now) {
                "expired"
            } else {
                "active"
            };
            let created = humantime::parse_rfc3339(&k.created).ok();
            let age = created.map(|c| age(c, now)).unwrap_or_default();
            (k, status, age, last(&k.key_id))
        })
        .collect();
    match format {
        ListFormat::Json => output::print_json(&json!(
            rows.iter()
                .map(|(k, status, age, last)| json!({
                    "user": k.user, "keyId": k.key_id, "label": k.label, "created": k.created,
                    "expires": k.expires, "revoked": k.revoked, "status": status,
                    "age": age, "lastUsed": last,
                }))
                .collect::<Vec<_>>()
        )),
        ListFormat::Table => {
            let mut t = comfy_table::Table::new();
            t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
            crate::cli::output::fit(&mut t);
            t.set_header([
                "user",
                "key id",
                "label",
                "created",
                "age",
                "last used",
                "expires",
                "status",
            ]);
            for (k, status, age, last) in &rows {
                t.add_row([
                    k.user.as_str(),
                    k.key_id.as_str(),
                    k.label.as_deref().unwrap_or(""),
                    k.created.as_str(),
                    age.as_str(),
                    last.as_str(),
                    k.expires.as_deref().unwrap_or("never"),
                    status,
                ]);
            }
            output::print(&format!("{t}\n"));
            if used.is_none() {
                eprintln!(
                    "note: last use is read from the audit log, which is off here (set \"autoLog\": true); serve does not write to the vault per request"
                );
            }
        }
    }
    Ok(())
}
