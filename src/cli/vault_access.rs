//! Shared plumbing for the commands that use the vault: where it is, how to get the key,
//! how to ask for secrets, and how vault errors map to exit codes.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::time::Duration;

use crate::secret::Secret;
use crate::vault::{KeyLookup, Vault, VaultError};

use super::{CliError, Context};

/// How long a writer waits for another writer's lock.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether we may prompt: stdin is a terminal and this is not CI.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal()
        && std::env::var_os("CI").is_none_or(|v| v.is_empty() || v == "false")
}

/// The key lookup from the environment, with a hidden passphrase prompt on a terminal only.
pub fn key_lookup() -> KeyLookup {
    let mut l = KeyLookup::from_env();
    if interactive() {
        l.prompt = Some(Box::new(|prompt: &str| {
            dialoguer::Password::new()
                .with_prompt(prompt)
                .interact()
                .ok()
                .map(Secret::from)
        }));
    }
    l
}

/// Vault errors: input problems exit 2, everything else (missing or wrong key, tampering)
/// is fatal (3).
pub fn vault_error(e: VaultError) -> CliError {
    match e {
        VaultError::Invalid(m) => CliError::usage(m),
        other => CliError::fatal(other.to_string()),
    }
}

impl Context {
    /// The vault path: `credentials.enc.json` beside the config.
    pub fn vault_path(&self) -> Result<(crate::config::Loaded, PathBuf), CliError> {
        let loaded = self.load()?;
        let path = loaded.dir.join(crate::vault::VAULT_FILE);
        Ok((loaded, path))
    }

    /// Open the vault, verified.
    pub fn open_vault(&self) -> Result<(crate::config::Loaded, Vault), CliError> {
        let (loaded, path) = self.vault_path()?;
        let v = Vault::open(&path, &key_lookup(), Default::default()).map_err(vault_error)?;
        Ok((loaded, v))
    }
}

/// Read a secret from stdin (one value; a trailing newline is not part of it).
pub fn read_stdin_secret() -> Result<Secret, CliError> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| CliError::fatal(format!("cannot read stdin: {e}")))?;
    let trimmed = s.trim_end_matches(['\n', '\r']).to_string();
    let out = Secret::from(trimmed);
    drop(Secret::from(s));
    Ok(out)
}

/// A secret from stdin (`--value-stdin`) or a hidden prompt on a terminal.
pub fn read_secret(value_stdin: bool, what: &str) -> Result<Secret, CliError> {
    if value_stdin {
        return read_stdin_secret();
    }
    if !interactive() {
        return Err(CliError::usage(format!(
            "no terminal to ask for {what}; pass --value-stdin and pipe the value in (never put secrets in arguments)"
        )));
    }
    dialoguer::Password::new()
        .with_prompt(format!("Value of {what}"))
        .interact()
        .map(Secret::from)
        .map_err(|e| CliError::fatal(format!("cannot read the value: {e}")))
}

/// Ask before a destructive action: `--yes` skips; without a terminal we refuse.
pub fn confirm(question: &str, yes: bool) -> Result<(), CliError> {
    if yes {
        return Ok(());
    }
    if !interactive() {
        return Err(CliError::usage(format!(
            "{question} needs confirmation; pass --yes to confirm without a terminal"
        )));
    }
    match dialoguer::Confirm::new()
        .with_prompt(question)
        .default(false)
        .interact()
    {
        Ok(true) => Ok(()),
        Ok(false) => Err(CliError::findings("cancelled; nothing was changed")),
        Err(e) => Err(CliError::fatal(format!("cannot ask for confirmation: {e}"))),
    }
}
