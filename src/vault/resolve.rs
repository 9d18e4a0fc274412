//! Resolving a credential source (DESIGN section 3) into a secret.

use crate::config::{Config, CredentialSource};
use crate::secret::Secret;

use super::Vault;

/// Why a credential could not be resolved. Names sources, never values.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    #[error("environment variable `{0}` is not set")]
    EnvMissing(String),
    #[error("FENTARIS_* variables cannot be credential sources (`{0}`)")]
    Reserved(String),
    #[error("the vault has no entry `{0}`; add it with `fentaris credentials set {0}`")]
    VaultEntryMissing(String),
    #[error("credential `{0}` needs the vault, which is not open")]
    NoVault(String),
    #[error("credential `{0}` is not bound in the group or at top level")]
    Unbound(String),
    #[error(
        "binding `{0}` refers to another binding; a binding must name an env var or vault entry"
    )]
    Indirect(String),
}

/// Resolve a source. `{"credential": n}` is looked up in `group`'s bindings, then the
/// top-level `credentials`; there is no implicit fall-back to a vault entry named `n`.
pub fn resolve_source(
    source: &CredentialSource,
    config: &Config,
    group: Option<&str>,
    vault: Option<&Vault>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Secret, ResolveError> {
    let direct = |s: &CredentialSource| -> Result<Secret, ResolveError> {
        match s {
            CredentialSource::Env(var) if var.starts_with("FENTARIS_") => {
                Err(ResolveError::Reserved(var.clone()))
            }
            CredentialSource::Env(var) => env(var)
                .map(Secret::from)
                .ok_or_else(|| ResolveError::EnvMissing(var.clone())),
            CredentialSource::Vault(name) => {
                let v = vault.ok_or_else(|| ResolveError::NoVault(name.clone()))?;
                v.get(name)
                    .cloned()
                    .ok_or_else(|| ResolveError::VaultEntryMissing(name.clone()))
            }
            CredentialSource::Credential(n) => Err(ResolveError::Indirect(n.clone())),
        }
    };
    match source {
        CredentialSource::Credential(name) => {
            let in_group = group
                .and_then(|g| config.groups.iter().find(|x| x.id == g))
                .and_then(|g| g.credentials.get(name));
            let binding = in_group
                .or_else(|| config.credentials.get(name))
                .ok_or_else(|| ResolveError::Unbound(name.clone()))?;
            direct(binding)
        }
        other => direct(other),
    }
}
