//! `fentaris vault status | rekey | trust | protect | recipients list|add|remove`.

use serde_json::json;

use super::auth::ListFormat;
use super::vault_access::{LOCK_TIMEOUT, confirm, interactive, key_lookup, vault_error};
use super::{CliError, CliResult, Context, display_path, output};
use crate::secret::Secret;
use crate::vault::keys::{KeySource, find_key, write_key_file};
use crate::vault::{OpenOptions, Vault, VaultError, read_envelope};

#[derive(Debug, clap::Subcommand)]
pub enum VaultCommand {
    /// Path, id, recipients, counts, key source, pin, and whether the MAC verified
    Status {
        #[arg(long, value_enum, default_value_t)]
        format: ListFormat,
    },
    /// New data key: every value re-sealed, read back and verified before the file is replaced
    Rekey,
    /// Accept a vault whose data key changed or whose generation went back
    Trust {
        /// Do not ask for confirmation
        #[arg(long)]
        yes: bool,
    },
    /// Protect the key file with a passphrase (argon2id; from FENTARIS_PASSPHRASE or a prompt)
    Protect,
    /// List, add or remove recipients (age public keys that can open the vault)
    #[command(subcommand)]
    Recipients(RecipientsCommand),
}

#[derive(Debug, clap::Subcommand)]
pub enum RecipientsCommand {
    List,
    /// Add a recipient: LABEL and an age public key (age1…)
    Add {
        label: String,
        public_key: String,
    },
    /// Remove a recipient by label
    Remove {
        label: String,
        #[arg(long)]
        yes: bool,
    },
}

pub fn run(ctx: &Context, cmd: VaultCommand) -> CliResult {
    match cmd {
        VaultCommand::Status { format } => status(ctx, format),
        VaultCommand::Rekey => rekey(ctx),
        VaultCommand::Trust { yes } => trust(ctx, yes),
        VaultCommand::Protect => protect(ctx),
        VaultCommand::Recipients(RecipientsCommand::List) => {
            let (_, path) = ctx.vault_path()?;
            let env = read_envelope(&path).map_err(vault_error)?;
            let mut t = comfy_table::Table::new();
            t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
            crate::cli::output::fit(&mut t);
            t.set_header(["label", "public key"]);
            for r in &env.recipients {
                t.add_row([r.label.as_str(), r.public_key.as_str()]);
            }
            output::print(&format!("{t}\n"));
            Ok(())
        }
        VaultCommand::Recipients(RecipientsCommand::Add { label, public_key }) => {
            let (_, path) = ctx.vault_path()?;
            Vault::modify(&path, &key_lookup(), LOCK_TIMEOUT, |d| {
                d.add_recipient(&label, &public_key)
            })
            .map_err(vault_error)?;
            eprintln!("Added recipient `{label}`; the data key was re-wrapped (values unchanged).");
            Ok(())
        }
        VaultCommand::Recipients(RecipientsCommand::Remove { label, yes }) => {
            let (_, path) = ctx.vault_path()?;
            confirm(&format!("Remove recipient `{label}`?"), yes)?;
            Vault::modify(&path, &key_lookup(), LOCK_TIMEOUT, |d| {
                d.remove_recipient(&label)
            })
            .map_err(vault_error)?;
            eprintln!(
                "Removed recipient `{label}`. It could still read older copies of the vault: run `fentaris vault rekey` and rotate the upstream secrets."
            );
            Ok(())
        }
    }
}

fn status(ctx: &Context, format: ListFormat) -> CliResult {
    let (loaded, path) = ctx.vault_path()?;
    let env = read_envelope(&path).map_err(vault_error)?;
    let lookup = key_lookup();
    let now = std::time::SystemTime::now();
    // identity.maxKeyAge: keys and credentials due for rotation, on stderr.
    if let Some(max) = loaded
        .outcome
        .config
        .as_ref()
        .and_then(|c| c.identity.max_key_age.as_deref())
        .and_then(|a| crate::config::max_key_age(a).ok())
    {
        for d in crate::config::old_secret_findings(max, &env, now) {
            eprintln!(
                "warning[{}]: {}\n  help: {}",
                d.code,
                d.message,
                d.help.unwrap_or_default()
            );
        }
    }
    let revoked = env.api_keys.iter().filter(|k| k.revoked.is_some()).count();
    let expired = env
        .api_keys
        .iter()
        .filter(|k| {
            k.revoked.is_none()
                && k.expires
                    .as_deref()
                    .and_then(|e| humantime::parse_rfc3339(e).ok())
                    .is_some_and(|e| now >= e)
        })
        .count();
    let opened = Vault::open(&path, &lookup, OpenOptions::default());
    let (verified, key_source, pin, failure) = match &opened {
        Ok(v) => {
            let pin = match &v.key_source {
                KeySource::KeyFile(_) => format!("fingerprint {} trusted up to generation {}", v.fingerprint(), v.pin(&lookup).ok().flatten().map(|p| p.generation).unwrap_or(0)),
                _ => "none: the key comes from the environment, so changes to the data key are not detected by a pin".into(),
            };
            (true, v.key_source.describe(), pin, None)
        }
        Err(VaultError::NoKey { .. }) => (
            false,
            "none found".into(),
            "unknown".into(),
            Some("not verified: no vault key here (as in CI)".to_string()),
        ),
        Err(e) => {
            let src = find_key(&lookup, &env.vault_id)
                .map(|k| k.source.describe())
                .unwrap_or_else(|_| "none".into());
            (false, src, "unknown".into(), Some(e.to_string()))
        }
    };
    let mac = match &failure {
        None => "verified".to_string(),
        Some(f) => f.clone(),
    };
    match format {
        ListFormat::Json => output::print_json(&json!({
            "path": display_path(&path),
            "vaultId": env.vault_id,
            "generation": env.generation,
            "recipients": env.recipients.iter().map(|r| json!({"label": r.label, "publicKey": r.public_key})).collect::<Vec<_>>(),
            "entries": env.entries.len(),
            "apiKeys": { "total": env.api_keys.len(), "revoked": revoked, "expired": expired },
            "keySource": key_source,
            "pin": pin,
            "verified": verified,
            "mac": mac,
        })),
        ListFormat::Table => {
            let mut t = comfy_table::Table::new();
            t.load_preset(comfy_table::presets::NOTHING);
            let recips = env
                .recipients
                .iter()
                .map(|r| format!("{} ({})", r.label, r.public_key))
                .collect::<Vec<_>>()
                .join("\n");
            for (k, v) in [
                ("path", display_path(&path)),
                ("vault id", env.vault_id.clone()),
                ("generation", env.generation.to_string()),
                ("recipients", recips),
                ("entries", env.entries.len().to_string()),
                (
                    "API keys",
                    format!(
                        "{} ({revoked} revoked, {expired} expired)",
                        env.api_keys.len()
                    ),
                ),
                ("key source", key_source),
                ("pin", pin),
                ("integrity", mac),
            ] {
                t.add_row([k.to_string(), v]);
            }
            output::print(&format!("{t}\n"));
        }
    }
    match opened {
        Ok(_) | Err(VaultError::NoKey { .. }) => Ok(()),
        Err(e) => Err(vault_error(e)),
    }
}

fn rekey(ctx: &Context) -> CliResult {
    let (_, path) = ctx.vault_path()?;
    let bar = if interactive() {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template("re-sealing {bar:30} {pos}/{len}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };
    let (_, v) = Vault::modify(&path, &key_lookup(), LOCK_TIMEOUT, |d| {
        d.rekey(|i, n| {
            if let Some(b) = &bar {
                b.set_length(n as u64);
                b.set_position(i as u64);
            }
        })
    })
    .map_err(vault_error)?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    eprintln!(
        "Re-keyed {}: new data key {}, generation {}. API keys stay valid. Other machines will be asked to `fentaris vault trust` the new key.",
        display_path(&path),
        v.fingerprint(),
        v.envelope.generation
    );
    Ok(())
}

fn trust(ctx: &Context, yes: bool) -> CliResult {
    let (_, path) = ctx.vault_path()?;
    let lookup = key_lookup();
    let v = Vault::open(&path, &lookup, OpenOptions { ignore_pin: true }).map_err(vault_error)?;
    if !v.key_source.pinned() {
        output::print("The key comes from the environment: there is no pin to update.\n");
        return Ok(());
    }
    let pin = v.pin(&lookup).map_err(vault_error)?;
    let now = (v.fingerprint(), v.envelope.generation);
    match &pin {
        Some(p) if p.fingerprint == now.0 && p.generation <= now.1 => {
            output::print(&format!(
                "Already trusted: data key {}, generation {}.\n",
                now.0, now.1
            ));
            return Ok(());
        }
        Some(p) => {
            output::print(&format!(
                "{} changed since you trusted it:\n  data key:   {} -> {}{}\n  generation: {} -> {}{}\n",
                display_path(&path),
                p.fingerprint,
                now.0,
                if p.fingerprint != now.0 {
                    "  (a new data key: a rekey, or a vault rebuilt by someone with your public key)"
                } else {
                    ""
                },
                p.generation,
                now.1,
                if now.1 < p.generation {
                    "  (older: the file was rolled back)"
                } else {
                    ""
                },
            ));
        }
        None => output::print(&format!(
            "No pin yet for {}: data key {}, generation {}.\n",
            v.envelope.vault_id, now.0, now.1
        )),
    }
    let esc = crate::diagnostics::escape_control;
    output::print(&format!(
        "Recipients (who can open it): {}\nEntries: {}\nAPI keys: {}\n",
        v.envelope
            .recipients
            .iter()
            .map(|r| format!("{} ({})", esc(&r.label), r.public_key))
            .collect::<Vec<_>>()
            .join(", "),
        v.names().map(esc).collect::<Vec<_>>().join(", "),
        v.envelope
            .api_keys
            .iter()
            .map(|k| format!("{}:{}", esc(&k.user), esc(&k.key_id)))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    confirm("Trust this vault?", yes)?;
    v.write_pin(&lookup).map_err(vault_error)?;
    eprintln!("Trusted data key {}, generation {}.", now.0, now.1);
    Ok(())
}

fn protect(ctx: &Context) -> CliResult {
    let (_, path) = ctx.vault_path()?;
    let lookup = key_lookup();
    let v = Vault::open(&path, &lookup, OpenOptions::default()).map_err(vault_error)?;
    let KeySource::KeyFile(key_path) = &v.key_source else {
        return Err(CliError::usage(
            "the key comes from the environment; protect it where it is stored",
        ));
    };
    let pass = match &lookup.passphrase {
        Some(p) => p.clone(),
        None if interactive() => dialoguer::Password::new()
            .with_prompt("New passphrase")
            .with_confirmation("Repeat it", "the two entries differ")
            .interact()
            .map(Secret::from)
            .map_err(|e| CliError::fatal(format!("cannot read the passphrase: {e}")))?,
        None => {
            return Err(CliError::usage(
                "set FENTARIS_PASSPHRASE, or run in a terminal to be asked",
            ));
        }
    };
    if pass.len() < 8 {
        return Err(CliError::usage("use a passphrase of at least 8 characters"));
    }
    let key = find_key(&lookup, &v.envelope.vault_id).map_err(vault_error)?;
    write_key_file(key_path, &key.identity, Some(&pass)).map_err(vault_error)?;
    eprintln!(
        "Protected {} with a passphrase (argon2id, 64 MiB, t=3, p=4).",
        key_path.display()
    );
    Ok(())
}
