//! Who is calling: API keys from the vault and from config `apiKeys` sources, presented in the
//! configured header or `Authorization: Bearer`.

use std::time::SystemTime;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{Config, UserEntry};
use crate::vault::{ApiKeyIndex, Vault, resolve_source};

/// An authenticated caller, as the HTTP layer hands it to the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    /// The vault key id, or `config:<source>` for keys from config sources.
    pub key_id: String,
}

/// Why a request carries no usable key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyProblem {
    Missing,
    /// The API-key header and `Authorization: Bearer` are both present and differ.
    Conflicting,
    Invalid,
}

/// Verifies presented keys. Built once at start (and on reload).
pub struct KeyVerifier {
    vault: Option<ApiKeyIndex>,
    /// SHA-256 of config-sourced keys -> identity.
    config_keys: crate::FastMap<[u8; 32], Identity>,
}

impl KeyVerifier {
    /// Resolve every config `apiKeys` source; returns the verifier and warnings for keys
    /// that could not be resolved (those users cannot log in with them: fail closed).
    pub fn build(
        config: &Config,
        vault: Option<&Vault>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> (KeyVerifier, Vec<String>) {
        let mut warnings = Vec::new();
        let mut config_keys = crate::FastMap::default();
        for g in &config.groups {
            for u in &g.users {
                let UserEntry::Spec(spec) = u else { continue };
                for src in &spec.api_keys {
                    match resolve_source(src, config, Some(&g.id), vault, env) {
                        Ok(secret) if secret.len() >= 20 => {
                            let d: [u8; 32] = Sha256::digest(secret.expose().as_bytes()).into();
                            config_keys.insert(d, Identity { user: spec.id.clone(), key_id: format!("config:{src}") });
                        }
                        Ok(_) => warnings.push(format!("API key {src} of user `{}` is shorter than 20 characters and is ignored", spec.id)),
                        Err(e) => warnings.push(format!("API key {src} of user `{}` is unavailable ({e}); that key cannot log in", spec.id)),
                    }
                }
            }
        }
        (
            KeyVerifier {
                vault: vault.map(|v| v.api_key_index()),
                config_keys,
            },
            warnings,
        )
    }

    /// The identity for a presented key, if valid (not unknown, revoked or expired).
    pub fn verify(&self, presented: &str) -> Option<Identity> {
        if let Some(index) = &self.vault
            && let Some(m) = index.verify(presented, SystemTime::now())
        {
            return Some(Identity {
                user: m.user,
                key_id: m.key_id,
            });
        }
        let d: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let (stored, id) = self.config_keys.get_key_value(&d)?;
        bool::from(stored.ct_eq(&d)).then(|| id.clone())
    }

    /// Whether sessions opened with `key_id` may stay open (the key can still log in).
    pub fn is_live(&self, key_id: &str) -> bool {
        self.config_keys.values().any(|i| i.key_id == key_id)
            || self
                .vault
                .as_ref()
                .is_some_and(|v| v.is_live(key_id, SystemTime::now()))
    }

    pub fn key_count(&self) -> usize {
        self.config_keys.len() + self.vault.as_ref().map_or(0, |v| v.len())
    }
}

/// The key presented in `headers`: the configured header, or `Authorization: Bearer`.
pub fn presented_key<'h>(
    headers: &'h http::HeaderMap,
    header_name: &str,
) -> Result<&'h str, KeyProblem> {
    let custom = headers
        .get(header_name)
        .map(|v| v.to_str().map_err(|_| KeyProblem::Invalid))
        .transpose()?;
    let bearer = match headers.get(http::header::AUTHORIZATION) {
        None => None,
        Some(v) => {
            let s = v.to_str().map_err(|_| KeyProblem::Invalid)?;
            let (scheme, rest) = s.split_once(' ').ok_or(KeyProblem::Invalid)?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(KeyProblem::Invalid);
            }
            Some(rest.trim())
        }
    };
    match (custom, bearer) {
        (Some(a), Some(b)) if !bool::from(a.as_bytes().ct_eq(b.as_bytes())) => {
            Err(KeyProblem::Conflicting)
        }
        (Some(a), _) | (None, Some(a)) if !a.is_empty() => Ok(a),
        _ => Err(KeyProblem::Missing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn key_extraction() {
        let h = "x-fentaris-api-key";
        assert_eq!(presented_key(&headers(&[(h, "k1")]), h), Ok("k1"));
        assert_eq!(
            presented_key(&headers(&[("authorization", "Bearer k1")]), h),
            Ok("k1")
        );
        assert_eq!(
            presented_key(&headers(&[(h, "k1"), ("authorization", "Bearer k1")]), h),
            Ok("k1")
        );
        assert_eq!(
            presented_key(&headers(&[(h, "k1"), ("authorization", "Bearer k2")]), h),
            Err(KeyProblem::Conflicting)
        );
        assert_eq!(
            presented_key(&headers(&[("authorization", "Basic abc")]), h),
            Err(KeyProblem::Invalid)
        );
        assert_eq!(presented_key(&headers(&[]), h), Err(KeyProblem::Missing));
    }

    #[test]
    fn config_keys_verify() {
        let cfg = crate::config::check_source(
            r#"{"groups":[{"id":"g","users":[{"id":"bob","apiKeys":[{"env":"BOB_KEY"},{"env":"UNSET"}]}]}]}"#,
        )
        .config
        .unwrap();
        let env = |k: &str| (k == "BOB_KEY").then(|| "bob-key-0123456789-abcdef".to_string());
        let (v, warnings) = KeyVerifier::build(&cfg, None, &env);
        assert_eq!(warnings.len(), 1);
        assert_eq!(v.verify("bob-key-0123456789-abcdef").unwrap().user, "bob");
        assert!(v.verify("bob-key-0123456789-abcdeX").is_none());
    }
}
