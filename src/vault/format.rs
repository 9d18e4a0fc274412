//! The vault file: a JSON envelope with readable names and sealed values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const FORMAT: &str = "fentaris-vault";
pub const VERSION: u32 = 1;

/// `.fentaris/credentials.enc.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Envelope {
    pub format: String,
    pub version: u32,
    /// `^vlt_[a-z0-9]{8,32}$`, checked before it names any file.
    pub vault_id: String,
    /// Increased by every write; a lower generation than the pin's is a rollback.
    pub generation: u64,
    pub recipients: Vec<Recipient>,
    /// The 32-byte data key as a standard binary age file, base64.
    pub data_key: String,
    /// The API-key pepper, sealed (entry name `fentaris:pepper`).
    pub pepper: String,
    /// Upstream secrets by name (names and metadata readable, values sealed).
    pub entries: BTreeMap<String, Entry>,
    /// Client API keys as keyed digests.
    pub api_keys: Vec<ApiKeyRecord>,
    /// HMAC over the RFC 8785 canonical form of this object without `mac`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Recipient {
    pub label: String,
    /// `age1…`
    pub public_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Entry {
    /// `xc20p:<base64 nonce||ciphertext>`, bound to the vault id and this entry's name.
    pub value: String,
    pub created: String,
    pub updated: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeyRecord {
    pub user: String,
    pub key_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<String>,
    /// `hmac-sha256:<base64>` of the key under the pepper.
    pub verifier: String,
}

/// The name under which the pepper is sealed (not a valid entry name: it has a colon).
pub const PEPPER_NAME: &str = "fentaris:pepper";

/// Vault ids: `^vlt_[a-z0-9]{8,32}$`.
pub fn valid_vault_id(id: &str) -> bool {
    id.strip_prefix("vlt_").is_some_and(|r| {
        (8..=32).contains(&r.len())
            && r.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

/// Entry names: 1-128 characters of letters, digits, `.`, `_`, `-`, `/`.
pub fn valid_entry_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names() {
        assert!(valid_vault_id("vlt_abcd1234"));
        assert!(!valid_vault_id("vlt_abc"));
        assert!(!valid_vault_id("../../x"));
        assert!(!valid_vault_id("vlt_../../etc"));
        assert!(!valid_vault_id("vlt_ABCDEFGH"));
        assert!(valid_entry_name("github.token"));
        assert!(!valid_entry_name(PEPPER_NAME));
        assert!(!valid_entry_name("a b"));
    }
}
