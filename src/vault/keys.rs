//! Where the vault key comes from, key files (plain or passphrase-protected), and pins.
//!
//! Lookup order: `FENTARIS_VAULT_KEY` (the `AGE-SECRET-KEY-1…` string), then
//! `FENTARIS_VAULT_KEY_FILE`, then `<config dir>/fentaris/keys/<vault id>.key`. The process
//! environment is read once, by [`KeyLookup::from_env`]; everything else takes a `KeyLookup`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::VaultError;
use super::crypto::{b64, unb64};
use crate::secret::Secret;

/// Asks the user for a passphrase (given the prompt text); `None` if they gave none.
pub type PassphrasePrompt = Box<dyn Fn(&str) -> Option<Secret>>;

/// How to find the key, and how to get a passphrase.
pub struct KeyLookup {
    /// `FENTARIS_VAULT_KEY`.
    pub env_key: Option<Secret>,
    /// `FENTARIS_VAULT_KEY_FILE`.
    pub env_key_file: Option<PathBuf>,
    /// The folder of per-vault key files (`<config dir>/fentaris/keys`).
    pub keys_dir: Option<PathBuf>,
    /// `FENTARIS_PASSPHRASE`.
    pub passphrase: Option<Secret>,
    /// Asks for a passphrase (only set when stdin is a terminal).
    pub prompt: Option<PassphrasePrompt>,
}

impl std::fmt::Debug for KeyLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyLookup")
            .field("env_key", &self.env_key.as_ref().map(|_| "[redacted]"))
            .field("env_key_file", &self.env_key_file)
            .field("keys_dir", &self.keys_dir)
            .field(
                "passphrase",
                &self.passphrase.as_ref().map(|_| "[redacted]"),
            )
            .field("prompt", &self.prompt.is_some())
            .finish()
    }
}

/// The default folder of key files.
pub fn default_keys_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("dev", "fentaris", "fentaris")
        .map(|d| d.config_local_dir().join("keys"))
}

impl KeyLookup {
    /// Read the lookup from the process environment (no prompt).
    pub fn from_env() -> KeyLookup {
        let var = crate::harden::var;
        KeyLookup {
            env_key: var("FENTARIS_VAULT_KEY").map(Secret::from),
            env_key_file: var("FENTARIS_VAULT_KEY_FILE").map(PathBuf::from),
            keys_dir: default_keys_dir(),
            passphrase: var("FENTARIS_PASSPHRASE").map(Secret::from),
            prompt: None,
        }
    }

    /// A lookup that only uses a key folder (tests, embedding).
    pub fn in_dir(keys_dir: impl Into<PathBuf>) -> KeyLookup {
        KeyLookup {
            env_key: None,
            env_key_file: None,
            keys_dir: Some(keys_dir.into()),
            passphrase: None,
            prompt: None,
        }
    }

    pub fn key_file(&self, vault_id: &str) -> Option<PathBuf> {
        self.keys_dir
            .as_ref()
            .map(|d| d.join(format!("{vault_id}.key")))
    }

    pub fn pin_file(&self, vault_id: &str) -> Option<PathBuf> {
        self.keys_dir
            .as_ref()
            .map(|d| d.join(format!("{vault_id}.pin")))
    }
}

/// Where the key in use came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `FENTARIS_VAULT_KEY`: no pin.
    Env,
    /// `FENTARIS_VAULT_KEY_FILE`: no pin.
    EnvFile(PathBuf),
    /// The per-vault key file: pinned.
    KeyFile(PathBuf),
}

impl KeySource {
    pub fn describe(&self) -> String {
        match self {
            KeySource::Env => "FENTARIS_VAULT_KEY (environment; no pin)".into(),
            KeySource::EnvFile(p) => format!("FENTARIS_VAULT_KEY_FILE={} (no pin)", p.display()),
            KeySource::KeyFile(p) => format!("key file {}", p.display()),
        }
    }
    pub fn pinned(&self) -> bool {
        matches!(self, KeySource::KeyFile(_))
    }
}

/// An identity and where it came from.
pub struct FoundKey {
    pub identity: age::x25519::Identity,
    pub source: KeySource,
}

fn parse_identity(text: &str) -> Option<age::x25519::Identity> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .find_map(|l| age::x25519::Identity::from_str(l).ok())
}

/// Find the key for `vault_id`, trying every place in order; the error lists them all.
pub fn find_key(lookup: &KeyLookup, vault_id: &str) -> Result<FoundKey, VaultError> {
    let mut tried = Vec::new();
    if let Some(k) = &lookup.env_key {
        return match parse_identity(k.expose()) {
            Some(identity) => Ok(FoundKey {
                identity,
                source: KeySource::Env,
            }),
            None => Err(VaultError::BadKey {
                place: "FENTARIS_VAULT_KEY".into(),
                why: "it is not an age secret key (AGE-SECRET-KEY-1…)".into(),
            }),
        };
    }
    tried.push("FENTARIS_VAULT_KEY (not set)".to_string());
    if let Some(p) = &lookup.env_key_file {
        let identity = read_key_file(p, lookup).map_err(|e| match e {
            VaultError::Io { source, .. } => VaultError::BadKey {
                place: format!("FENTARIS_VAULT_KEY_FILE={}", p.display()),
                why: format!("{source}; fix the path or unset the variable to use the key file under your config folder"),
            },
            other => other,
        })?;
        return Ok(FoundKey {
            identity,
            source: KeySource::EnvFile(p.clone()),
        });
    }
    tried.push("FENTARIS_VAULT_KEY_FILE (not set)".to_string());
    match lookup.key_file(vault_id) {
        Some(p) if p.exists() => {
            let identity = read_key_file(&p, lookup)?;
            return Ok(FoundKey {
                identity,
                source: KeySource::KeyFile(p),
            });
        }
        Some(p) => tried.push(format!("{} (no such file)", p.display())),
        None => {
            tried.push("the user config folder (cannot be determined: no home directory)".into())
        }
    }
    Err(VaultError::NoKey { tried })
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProtectedKey {
    format: String,
    version: u32,
    public_key: String,
    kdf: KdfParams,
    sealed: String,
}

/// Argon2id parameters, stored beside the salt.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KdfParams {
    pub alg: String,
    pub version: u32,
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
    pub salt: String,
}

/// RFC 9106 second recommended option: m = 64 MiB, t = 3, p = 4.
pub const KDF_M_KIB: u32 = 64 * 1024;
pub const KDF_T: u32 = 3;
pub const KDF_P: u32 = 4;
const KEYFILE_AAD: &[u8] = b"fentaris/v1/keyfile";

fn derive_kek(pass: &Secret, params: &KdfParams) -> Result<Zeroizing<[u8; 32]>, String> {
    if params.alg != "argon2id" || params.version != 19 {
        return Err(format!(
            "unsupported KDF {} v{}",
            params.alg, params.version
        ));
    }
    // Refuse absurd parameters from a tampered file rather than allocating them.
    if params.m_kib > 4 * 1024 * 1024 || params.t > 64 || params.p > 64 {
        return Err("KDF parameters out of range".into());
    }
    let salt = unb64(&params.salt).ok_or("bad salt")?;
    let p = Params::new(params.m_kib, params.t, params.p, Some(32)).map_err(|e| e.to_string())?;
    let mut kek = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, p)
        .hash_password_into(pass.expose().as_bytes(), &salt, kek.as_mut())
        .map_err(|e| e.to_string())?;
    Ok(kek)
}

fn check_permissions(path: &Path) -> Result<(), VaultError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| VaultError::io(path, e))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(VaultError::KeyPermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    Ok(())
}

fn read_key_file(path: &Path, lookup: &KeyLookup) -> Result<age::x25519::Identity, VaultError> {
    check_permissions(path)?;
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| VaultError::io(path, e))?);
    if text.trim_start().starts_with('{') {
        let pk: ProtectedKey = serde_json::from_str(&text).map_err(|e| VaultError::BadKey {
            place: path.display().to_string(),
            why: format!("not a Fentaris key file: {e}"),
        })?;
        let pass = match (&lookup.passphrase, &lookup.prompt) {
            (Some(p), _) => p.clone(),
            (None, Some(ask)) => {
                ask(&format!("Passphrase for {}", path.display())).ok_or(VaultError::KeyLocked {
                    path: path.to_path_buf(),
                })?
            }
            (None, None) => {
                return Err(VaultError::KeyLocked {
                    path: path.to_path_buf(),
                });
            }
        };
        let kek = derive_kek(&pass, &pk.kdf).map_err(|why| VaultError::BadKey {
            place: path.display().to_string(),
            why,
        })?;
        let blob =
            unb64(&pk.sealed)
                .filter(|b| b.len() > 24)
                .ok_or_else(|| VaultError::BadKey {
                    place: path.display().to_string(),
                    why: "damaged".into(),
                })?;
        let cipher = XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&kek[..]));
        let plain = cipher
            .decrypt(
                XNonce::from_slice(&blob[..24]),
                Payload {
                    msg: &blob[24..],
                    aad: KEYFILE_AAD,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| VaultError::WrongPassphrase {
                path: path.to_path_buf(),
            })?;
        let s = Zeroizing::new(String::from_utf8_lossy(&plain).to_string());
        return parse_identity(&s).ok_or_else(|| VaultError::BadKey {
            place: path.display().to_string(),
            why: "no key inside".into(),
        });
    }
    parse_identity(&text).ok_or_else(|| VaultError::BadKey {
        place: path.display().to_string(),
        why: "no AGE-SECRET-KEY-1… line".into(),
    })
}

/// Write a new key file, mode 0600 in a 0700 folder; with a passphrase, argon2id-protected.
pub fn write_key_file(
    path: &Path,
    identity: &age::x25519::Identity,
    passphrase: Option<&Secret>,
) -> Result<(), VaultError> {
    use age::secrecy::ExposeSecret;
    let secret = identity.to_string();
    let text = match passphrase {
        None => Zeroizing::new(format!(
            "# Fentaris vault key. Keep it private; never commit it.\n# public key: {}\n{}\n",
            identity.to_public(),
            secret.expose_secret()
        )),
        Some(pass) => {
            let mut salt = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut salt);
            let kdf = KdfParams {
                alg: "argon2id".into(),
                version: 19,
                m_kib: KDF_M_KIB,
                t: KDF_T,
                p: KDF_P,
                salt: b64(&salt),
            };
            let kek = derive_kek(pass, &kdf).map_err(|why| VaultError::BadKey {
                place: path.display().to_string(),
                why,
            })?;
            let mut nonce = [0u8; 24];
            rand::rngs::OsRng.fill_bytes(&mut nonce);
            let cipher = XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&kek[..]));
            let ct = cipher
                .encrypt(
                    XNonce::from_slice(&nonce),
                    Payload {
                        msg: secret.expose_secret().as_bytes(),
                        aad: KEYFILE_AAD,
                    },
                )
                .unwrap_or_default();
            let mut blob = nonce.to_vec();
            blob.extend_from_slice(&ct);
            let pk = ProtectedKey {
                format: "fentaris-key".into(),
                version: 1,
                public_key: identity.to_public().to_string(),
                kdf,
                sealed: b64(&blob),
            };
            Zeroizing::new(serde_json::to_string_pretty(&pk).unwrap_or_default() + "\n")
        }
    };
    write_private(path, text.as_bytes())
}

/// Write a private file atomically: 0700 folder, 0600 file.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), VaultError> {
    let dir = path
        .parent()
        .ok_or_else(|| VaultError::io(path, std::io::Error::other("no parent folder")))?;
    std::fs::create_dir_all(dir).map_err(|e| VaultError::io(dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    write_atomic(path, bytes, ".fentaris-")
}

/// Write a 0600 file atomically: a temp file (named `<prefix>…tmp`) in the same folder,
/// fsync, rename, fsync the folder. A crash leaves the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8], prefix: &str) -> Result<(), VaultError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(prefix)
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| VaultError::io(dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| VaultError::io(path, e))?;
    }
    tmp.write_all(bytes).map_err(|e| VaultError::io(path, e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| VaultError::io(path, e))?;
    tmp.persist(path)
        .map_err(|e| VaultError::io(path, e.error))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// What the user trusted: the data key's fingerprint and the highest generation seen.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pin {
    pub vault_id: String,
    pub fingerprint: String,
    pub generation: u64,
}

pub fn read_pin(path: &Path) -> Result<Option<Pin>, VaultError> {
    match std::fs::read_to_string(path) {
        Ok(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|e| VaultError::BadKey {
                place: path.display().to_string(),
                why: format!(
                    "the pin file is damaged ({e}); remove it and run `fentaris vault trust`"
                ),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(VaultError::io(path, e)),
    }
}

pub fn write_pin(path: &Path, pin: &Pin) -> Result<(), VaultError> {
    write_private(
        path,
        (serde_json::to_string_pretty(pin).unwrap_or_default() + "\n").as_bytes(),
    )
}
