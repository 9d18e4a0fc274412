//! The vault (DESIGN section 5): `.fentaris/credentials.enc.json`.
//!
//! - [`format`]: the JSON envelope.
//! - [`crypto`]: sealing, MAC, API-key digests, age wrapping of the data key.
//! - [`keys`]: where the key comes from, key files, passphrases, pins.
//! - [`Vault::open`] verifies everything before returning (nothing is half-loaded);
//!   [`Vault::modify`] is the only writer: lock, re-open, change, verify, atomic replace.

pub mod crypto;
pub mod format;
pub mod keys;
mod resolve;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rand::Rng;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub use format::{ApiKeyRecord, Entry, Envelope, Recipient};
pub use keys::{FoundKey, KeyLookup, KeySource, Pin};
pub use resolve::{ResolveError, resolve_source};

use crate::secret::{Secret, SecretKey};

/// The vault file's name inside `.fentaris/`.
pub const VAULT_FILE: &str = "credentials.enc.json";

/// Everything that can go wrong with a vault. Messages say what and what to do; they never
/// contain a secret.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("no vault at {}\nhelp: `fentaris credentials set NAME` or `fentaris auth api-key add USER --generate` creates one", .path.display())]
    Missing { path: PathBuf },
    #[error("{} is not a valid vault: {why}\nhelp: restore it from version control or a backup; nothing was changed", .path.display())]
    Malformed { path: PathBuf, why: String },
    #[error("{}: vault id `{id}` is not valid (expected vlt_ and 8-32 lower-case letters or digits); the file was edited by hand or forged", .path.display())]
    BadVaultId { path: PathBuf, id: String },
    #[error("no vault key found; looked in:\n{}\nhelp: set FENTARIS_VAULT_KEY (the AGE-SECRET-KEY-1… string) or FENTARIS_VAULT_KEY_FILE, or copy the key file from the machine that created the vault", .tried.iter().map(|t| format!("  - {t}")).collect::<Vec<_>>().join("\n"))]
    NoKey { tried: Vec<String> },
    #[error("the vault key from {place} is unusable: {why}")]
    BadKey { place: String, why: String },
    #[error("key file {} is readable by other users (mode {mode:03o})\nhelp: chmod 600 {}", .path.display(), .path.display())]
    KeyPermissions { path: PathBuf, mode: u32 },
    #[error("key file {} is protected by a passphrase\nhelp: set FENTARIS_PASSPHRASE, or run the command in a terminal to be asked", .path.display())]
    KeyLocked { path: PathBuf },
    #[error("wrong passphrase for key file {}\nhelp: check FENTARIS_PASSPHRASE (or what you typed); the key file itself is unchanged", .path.display())]
    WrongPassphrase { path: PathBuf },
    #[error("the key from {source_desc} is not one of this vault's recipients ({})\nhelp: use the key of one of those recipients, or ask a recipient to run `fentaris vault recipients add`", .recipients.join(", "))]
    WrongKey {
        source_desc: String,
        recipients: Vec<String>,
    },
    #[error("{} failed its integrity check ({what}): it was modified outside Fentaris, truncated or forged\nhelp: restore it from version control or a backup; nothing was loaded or changed", .path.display())]
    Tampered { path: PathBuf, what: String },
    #[error("{}: its data key changed since you trusted it (pinned fingerprint {pinned}, now {found}); someone may have rebuilt the vault with your public key\nhelp: if you expected this (a teammate ran `vault rekey`), run `fentaris vault trust`", .path.display())]
    PinMismatch {
        path: PathBuf,
        pinned: String,
        found: String,
    },
    #[error("{}: generation {found} is older than generation {pinned} seen before: the file was rolled back\nhelp: if you restored an older vault on purpose, run `fentaris vault trust`", .path.display())]
    Rollback {
        path: PathBuf,
        pinned: u64,
        found: u64,
    },
    #[error("another fentaris process has held the vault lock {} for {}s\nhelp: wait for it to finish, or remove the lock file if no fentaris process is running", .path.display(), .waited.as_secs())]
    LockTimeout { path: PathBuf, waited: Duration },
    #[error("{0}")]
    Invalid(String),
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl VaultError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        VaultError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// An opened, verified vault.
pub struct Vault {
    pub path: PathBuf,
    pub envelope: Envelope,
    dek: SecretKey,
    pepper: SecretKey,
    values: BTreeMap<String, Secret>,
    pub key_source: KeySource,
    identity: age::x25519::Identity,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("path", &self.path)
            .field("vault_id", &self.envelope.vault_id)
            .field("generation", &self.envelope.generation)
            .field("entries", &self.values.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Options for [`Vault::open`].
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenOptions {
    /// Skip the pin check (only `vault trust` does this).
    pub ignore_pin: bool,
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Read and parse the envelope without a key (for `policy check` and `vault status`).
/// The vault id is checked before anything else uses it.
pub fn read_envelope(path: &Path) -> Result<Envelope, VaultError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(VaultError::Missing {
                path: path.to_path_buf(),
            });
        }
        Err(e) => return Err(VaultError::io(path, e)),
    };
    parse_envelope(path, &bytes)
}

fn parse_envelope(path: &Path, bytes: &[u8]) -> Result<Envelope, VaultError> {
    let malformed = |why: String| VaultError::Malformed {
        path: path.to_path_buf(),
        why,
    };
    let env: Envelope = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
    if !format::valid_vault_id(&env.vault_id) {
        return Err(VaultError::BadVaultId {
            path: path.to_path_buf(),
            id: crate::diagnostics::escape_control(&env.vault_id),
        });
    }
    // The MAC covers the parsed object: a key repeated in the text (which JSON parsers
    // resolve differently) would go unnoticed, so it is refused.
    let text = String::from_utf8_lossy(bytes);
    let dups = crate::config::SpanIndex::new(&text).duplicate_keys;
    if let Some(d) = dups.first() {
        return Err(malformed(format!("the key at {d} appears twice")));
    }
    let mut labels = std::collections::HashSet::new();
    let mut keys_seen = std::collections::HashSet::new();
    for r in &env.recipients {
        if !labels.insert(r.label.as_str()) || !keys_seen.insert(r.public_key.as_str()) {
            return Err(malformed(format!(
                "recipient `{}` is listed twice",
                crate::diagnostics::escape_control(&r.label)
            )));
        }
    }
    if env.format != format::FORMAT || env.version != format::VERSION {
        return Err(VaultError::Malformed {
            path: path.to_path_buf(),
            why: format!(
                "format `{}` version {} is not `{}` version {}",
                env.format,
                env.version,
                format::FORMAT,
                format::VERSION
            ),
        });
    }
    Ok(env)
}

fn canonical(env: &Envelope) -> Result<Vec<u8>, String> {
    let mut e = env.clone();
    e.mac = None;
    serde_jcs::to_vec(&e).map_err(|e| e.to_string())
}

/// The pieces of an opened envelope, verified.
struct Opened {
    dek: SecretKey,
    pepper: SecretKey,
    values: BTreeMap<String, Secret>,
}

/// Verify an envelope with a data key: MAC, pepper, every entry, every verifier.
fn verify(path: &Path, env: &Envelope, dek: SecretKey) -> Result<Opened, VaultError> {
    let tampered = |what: &str| VaultError::Tampered {
        path: path.to_path_buf(),
        what: what.into(),
    };
    let bytes = canonical(env).map_err(|e| tampered(&e))?;
    match &env.mac {
        Some(m) if crypto::verify_mac(&dek, &bytes, m) => {}
        Some(_) => return Err(tampered("the file MAC does not match")),
        None => return Err(tampered("the file MAC is missing")),
    }
    let pep = crypto::open(&dek, &env.vault_id, format::PEPPER_NAME, &env.pepper)
        .map_err(|_| tampered("the pepper does not open"))?;
    let pep: [u8; 32] = pep
        .as_slice()
        .try_into()
        .map_err(|_| tampered("the pepper has the wrong size"))?;
    let mut values = BTreeMap::new();
    for (name, entry) in &env.entries {
        let v = crypto::open(&dek, &env.vault_id, name, &entry.value)
            .map_err(|_| tampered(&format!("entry `{name}` does not open")))?;
        let s = String::from_utf8(v.to_vec())
            .map_err(|_| tampered(&format!("entry `{name}` is not text")))?;
        values.insert(name.clone(), Secret::from(s));
    }
    for k in &env.api_keys {
        if crypto::decode_digest(&k.verifier).is_none() {
            return Err(tampered(&format!(
                "API key {} has a malformed verifier",
                k.key_id
            )));
        }
    }
    Ok(Opened {
        dek,
        pepper: SecretKey(Zeroizing::new(pep)),
        values,
    })
}

impl Vault {
    /// Open and verify a vault: the key, the data key, the MAC, every entry, and the pin.
    pub fn open(path: &Path, lookup: &KeyLookup, opts: OpenOptions) -> Result<Vault, VaultError> {
        let open_once = || -> Result<Vault, VaultError> {
            let env = read_envelope(path)?;
            let key = keys::find_key(lookup, &env.vault_id)?;
            let v = Self::open_with(path, env, key)?;
            if !opts.ignore_pin {
                v.check_pin(lookup)?;
            }
            Ok(v)
        };
        match open_once() {
            // A writer may have replaced the file (and raised the pin) between our read and
            // our pin check: read again before calling it a rollback.
            Err(VaultError::Rollback { .. }) => {
                std::thread::sleep(Duration::from_millis(50));
                open_once()
            }
            other => other,
        }
    }

    fn open_with(path: &Path, env: Envelope, key: FoundKey) -> Result<Vault, VaultError> {
        let wrapped = crypto::unb64(&env.data_key).ok_or_else(|| VaultError::Tampered {
            path: path.to_path_buf(),
            what: "the data key is not base64".into(),
        })?;
        let dek = crypto::unwrap_key(&key.identity, &wrapped).map_err(|e| match e {
            crypto::UnwrapError::NoMatchingKey => VaultError::WrongKey {
                source_desc: key.source.describe(),
                // Labels are not verified yet (no key, no MAC): never print them raw.
                recipients: env
                    .recipients
                    .iter()
                    .map(|r| crate::diagnostics::escape_control(&r.label))
                    .collect(),
            },
            crypto::UnwrapError::Damaged(why) => VaultError::Tampered {
                path: path.to_path_buf(),
                what: format!("the wrapped data key: {why}"),
            },
        })?;
        let opened = verify(path, &env, dek)?;
        Ok(Vault {
            path: path.to_path_buf(),
            envelope: env,
            dek: opened.dek,
            pepper: opened.pepper,
            values: opened.values,
            key_source: key.source,
            identity: key.identity,
        })
    }

    /// The data key's fingerprint (shown by `vault status` and `vault trust`).
    pub fn fingerprint(&self) -> String {
        crypto::fingerprint(&self.dek)
    }

    /// Compare with the pin (keys from files only); first use and newer generations update it.
    fn check_pin(&self, lookup: &KeyLookup) -> Result<(), VaultError> {
        if !self.key_source.pinned() {
            return Ok(());
        }
        let Some(pin_path) = lookup.pin_file(&self.envelope.vault_id) else {
            return Ok(());
        };
        let found = self.fingerprint();
        match keys::read_pin(&pin_path)? {
            Some(pin) if pin.fingerprint != found => Err(VaultError::PinMismatch {
                path: self.path.clone(),
                pinned: pin.fingerprint,
                found,
            }),
            Some(pin) if pin.generation > self.envelope.generation => Err(VaultError::Rollback {
                path: self.path.clone(),
                pinned: pin.generation,
                found: self.envelope.generation,
            }),
            Some(pin) if pin.generation == self.envelope.generation => Ok(()),
            _ => self.raise_pin(lookup),
        }
    }

    /// Write the pin unless it already records this generation or a later one (a concurrent
    /// writer may have moved it on; a pin never goes back).
    fn raise_pin(&self, lookup: &KeyLookup) -> Result<(), VaultError> {
        if let Some(p) = lookup.pin_file(&self.envelope.vault_id)
            && let Some(pin) = keys::read_pin(&p)?
            && pin.fingerprint == self.fingerprint()
            && pin.generation >= self.envelope.generation
        {
            return Ok(());
        }
        self.write_pin(lookup)
    }

    /// Record the current fingerprint and generation as trusted.
    pub fn write_pin(&self, lookup: &KeyLookup) -> Result<(), VaultError> {
        if let Some(p) = lookup.pin_file(&self.envelope.vault_id) {
            keys::write_pin(
                &p,
                &Pin {
                    vault_id: self.envelope.vault_id.clone(),
                    fingerprint: self.fingerprint(),
                    generation: self.envelope.generation,
                },
            )?;
        }
        Ok(())
    }

    /// The pin on record, if any.
    pub fn pin(&self, lookup: &KeyLookup) -> Result<Option<Pin>, VaultError> {
        match lookup.pin_file(&self.envelope.vault_id) {
            Some(p) => keys::read_pin(&p),
            None => Ok(None),
        }
    }

    /// A secret by name.
    pub fn get(&self, name: &str) -> Option<&Secret> {
        self.values.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(|k| k.as_str())
    }

    /// The key that chains audit lines (HMAC), derived from the vault's pepper.
    pub fn audit_key(&self) -> SecretKey {
        crypto::audit_subkey(&self.pepper)
    }

    /// The index used to verify presented API keys (build once, share).
    pub fn api_key_index(&self) -> ApiKeyIndex {
        ApiKeyIndex::new(&self.pepper, &self.envelope.api_keys)
    }

    /// The only way to change a vault: take the lock (waiting up to `lock_timeout`), open
    /// the current file (or create a new vault), apply `change`, verify the result opens
    /// with our key, and replace the file atomically. The generation increases by one.
    pub fn modify<T>(
        path: &Path,
        lookup: &KeyLookup,
        lock_timeout: Duration,
        change: impl FnOnce(&mut Draft) -> Result<T, VaultError>,
    ) -> Result<(T, Vault), VaultError> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| VaultError::io(dir, e))?;
        let _lock = lock(&dir.join(".lock"), lock_timeout)?;
        remove_stale_temp_files(dir);
        let (env, key, dek, pepper) = match Vault::open(path, lookup, OpenOptions::default()) {
            Ok(v) => (
                v.envelope,
                FoundKey {
                    identity: v.identity,
                    source: v.key_source,
                },
                v.dek,
                v.pepper,
            ),
            Err(VaultError::Missing { .. }) => new_vault(lookup)?,
            Err(e) => return Err(e),
        };
        let mut draft = Draft {
            env,
            dek,
            pepper,
            identity_public: key.identity.to_public(),
            rewrap: false,
            now: now_rfc3339(),
        };
        let out = change(&mut draft)?;
        let bytes = draft.finish()?;
        // Read back before replacing: the new file must open with our key.
        let parsed = parse_envelope(path, &bytes)?;
        let vault = Vault::open_with(path, parsed, key).map_err(|e| {
            VaultError::Invalid(format!(
                "refusing to write a vault this key could not open: {e}"
            ))
        })?;
        keys::write_atomic(path, &bytes, ".credentials.")?;
        // We wrote this file, so it is trusted here, whatever the key source (a rekey with a
        // key from the environment must not leave a stale pin behind).
        let pin_exists = lookup
            .pin_file(&vault.envelope.vault_id)
            .is_some_and(|p| p.exists());
        if vault.key_source.pinned() || pin_exists {
            vault.write_pin(lookup)?;
        }
        Ok((out, vault))
    }
}

/// A new vault: a random id, data key and pepper, and a key (from the environment, or a new
/// key file named after the vault id).
fn new_vault(lookup: &KeyLookup) -> Result<(Envelope, FoundKey, SecretKey, SecretKey), VaultError> {
    let id = random_vault_id();
    let key = match keys::find_key(lookup, &id) {
        Ok(k) => k,
        Err(VaultError::NoKey { .. }) => {
            let path = lookup.key_file(&id).ok_or_else(|| VaultError::NoKey {
                tried: vec!["no user config folder to create a key file in".into()],
            })?;
            let identity = age::x25519::Identity::generate();
            keys::write_key_file(&path, &identity, None)?;
            FoundKey {
                identity,
                source: KeySource::KeyFile(path),
            }
        }
        Err(e) => return Err(e),
    };
    let label = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local".into());
    let env = Envelope {
        format: format::FORMAT.into(),
        version: format::VERSION,
        vault_id: id,
        generation: 0,
        recipients: vec![Recipient {
            label,
            public_key: key.identity.to_public().to_string(),
        }],
        data_key: String::new(),
        pepper: String::new(),
        entries: BTreeMap::new(),
        api_keys: Vec::new(),
        mac: None,
    };
    Ok((env, key, SecretKey::random(), SecretKey::random()))
}

const BASE36: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const BASE62: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn random_from(alphabet: &[u8], n: usize) -> String {
    let mut rng = rand::rngs::OsRng;
    (0..n)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
        .collect()
}

fn random_vault_id() -> String {
    format!("vlt_{}", random_from(BASE36, 16))
}

fn checksum(body: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(body.as_bytes());
    d.iter()
        .take(6)
        .map(|b| BASE62[(*b as usize) % 62] as char)
        .collect()
}

/// A new API key: `fnt_<key id>_<secret>_<checksum>` (the checksum lets secret scanners
/// recognise keys offline). Returns (key id, key).
pub fn generate_api_key() -> (String, Secret) {
    let id = random_from(BASE62, 8);
    let body = format!("fnt_{id}_{}", random_from(BASE62, 43));
    let key = format!("{body}_{}", checksum(&body));
    (id, Secret::from(key))
}

/// Whether a string has the generated key shape with a correct checksum.
pub fn is_generated_key(key: &str) -> bool {
    match key.rsplit_once('_') {
        Some((body, sum)) => {
            body.starts_with("fnt_") && body.len() == 4 + 8 + 1 + 43 && checksum(body) == sum
        }
        None => false,
    }
}

/// Changes to a vault, applied by [`Vault::modify`].
pub struct Draft {
    env: Envelope,
    dek: SecretKey,
    pepper: SecretKey,
    identity_public: age::x25519::Recipient,
    rewrap: bool,
    now: String,
}

impl Draft {
    pub fn envelope(&self) -> &Envelope {
        &self.env
    }

    /// Set a secret; returns whether it was new.
    pub fn set(&mut self, name: &str, value: &Secret) -> Result<bool, VaultError> {
        if !format::valid_entry_name(name) {
            return Err(VaultError::Invalid(format!(
                "`{name}` is not a valid credential name: use letters, digits, `.`, `_`, `-` and `/` (at most 128)"
            )));
        }
        let sealed = crypto::seal(
            &self.dek,
            &self.env.vault_id,
            name,
            value.expose().as_bytes(),
        );
        let now = self.now.clone();
        match self.env.entries.get_mut(name) {
            Some(e) => {
                e.value = sealed;
                e.updated = now;
                Ok(false)
            }
            None => {
                self.env.entries.insert(
                    name.to_string(),
                    Entry {
                        value: sealed,
                        created: now.clone(),
                        updated: now,
                        metadata: BTreeMap::new(),
                    },
                );
                Ok(true)
            }
        }
    }

    /// Remove a secret; returns whether it existed.
    pub fn remove(&mut self, name: &str) -> bool {
        self.env.entries.remove(name).is_some()
    }

    /// Store the verifier of an API key; returns its key id.
    pub fn add_api_key(
        &mut self,
        user: &str,
        key: &Secret,
        key_id: Option<String>,
        label: Option<String>,
        expires: Option<SystemTime>,
    ) -> Result<String, VaultError> {
        let digest = crypto::api_key_digest(&crypto::api_key_subkey(&self.pepper), key.expose());
        let verifier = crypto::encode_digest(&digest);
        if self.env.api_keys.iter().any(|k| k.verifier == verifier) {
            return Err(VaultError::Invalid(
                "this API key is already stored; generate a new one".into(),
            ));
        }
        let mut id = key_id.unwrap_or_else(|| random_from(BASE62, 8));
        while self.env.api_keys.iter().any(|k| k.key_id == id) {
            id = random_from(BASE62, 8);
        }
        self.env.api_keys.push(ApiKeyRecord {
            user: user.to_string(),
            key_id: id.clone(),
            label,
            created: self.now.clone(),
            expires: expires.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
            revoked: None,
            verifier,
        });
        Ok(id)
    }

    /// Make a key expire at `at` (or keep its earlier expiry); for rotation with an overlap.
    /// Returns the expiry in force.
    pub fn expire_api_key(
        &mut self,
        user: &str,
        key_id: &str,
        at: SystemTime,
    ) -> Result<String, VaultError> {
        let Some(k) = self
            .env
            .api_keys
            .iter_mut()
            .find(|k| k.user == user && k.key_id == key_id)
        else {
            return Err(VaultError::Invalid(format!(
                "`{user}` has no API key {key_id}; `fentaris auth api-key list {user}` shows the key ids"
            )));
        };
        if k.revoked.is_some() {
            return Err(VaultError::Invalid(format!(
                "key {key_id} of `{user}` is revoked; rotate a key that is still active"
            )));
        }
        let current = k
            .expires
            .as_deref()
            .and_then(|e| humantime::parse_rfc3339(e).ok());
        if current.is_none_or(|c| c > at) {
            k.expires = Some(humantime::format_rfc3339_seconds(at).to_string());
        }
        Ok(k.expires.clone().unwrap_or_default())
    }

    /// Revoke a key (kept, marked revoked, so listings and audits can name it).
    pub fn revoke_api_key(&mut self, user: &str, key_id: &str) -> Result<(), VaultError> {
        let now = self.now.clone();
        match self
            .env
            .api_keys
            .iter_mut()
            .find(|k| k.user == user && k.key_id == key_id)
        {
            Some(k) if k.revoked.is_some() => Err(VaultError::Invalid(format!(
                "key {key_id} of `{user}` is already revoked"
            ))),
            Some(k) => {
                k.revoked = Some(now);
                Ok(())
            }
            None => {
                // A mistyped user: name the one who holds this key id, or the closest user.
                let owner = self.env.api_keys.iter().find(|k| k.key_id == key_id);
                let hint = match owner {
                    Some(k) => format!("key {key_id} belongs to `{}`", k.user),
                    None => crate::suggest::did_you_mean(
                        user,
                        self.env.api_keys.iter().map(|k| k.user.as_str()),
                    )
                    .filter(|_| !self.env.api_keys.iter().any(|k| k.user == user))
                    .unwrap_or_else(|| {
                        format!("`fentaris auth api-key list {user}` shows the key ids")
                    }),
                };
                Err(VaultError::Invalid(format!(
                    "`{user}` has no API key {key_id}; {hint}"
                )))
            }
        }
    }

    pub fn add_recipient(&mut self, label: &str, public_key: &str) -> Result<(), VaultError> {
        let pk: age::x25519::Recipient = public_key.parse().map_err(|_| {
            VaultError::Invalid("that is not an age public key (it starts with age1…; never paste a secret key here)".into())
        })?;
        if label.trim().is_empty() {
            return Err(VaultError::Invalid("a recipient needs a label".into()));
        }
        if self.env.recipients.iter().any(|r| r.label == label) {
            return Err(VaultError::Invalid(format!(
                "a recipient labelled `{label}` exists already"
            )));
        }
        if self
            .env
            .recipients
            .iter()
            .any(|r| r.public_key == pk.to_string())
        {
            return Err(VaultError::Invalid(
                "this public key is a recipient already".into(),
            ));
        }
        self.env.recipients.push(Recipient {
            label: label.to_string(),
            public_key: pk.to_string(),
        });
        self.rewrap = true;
        Ok(())
    }

    pub fn remove_recipient(&mut self, label: &str) -> Result<(), VaultError> {
        let Some(i) = self.env.recipients.iter().position(|r| r.label == label) else {
            return Err(VaultError::Invalid(format!(
                "no recipient labelled `{label}`"
            )));
        };
        if self.env.recipients[i].public_key == self.identity_public.to_string() {
            return Err(VaultError::Invalid(format!(
                "`{label}` is the key in use; removing it would lock you out (use another recipient's key to remove it)"
            )));
        }
        self.env.recipients.remove(i);
        self.rewrap = true;
        Ok(())
    }

    /// A new data key: every value re-sealed, the data key re-wrapped. API keys stay valid
    /// (their digests depend on the pepper, which is re-sealed, not changed).
    pub fn rekey(&mut self, mut progress: impl FnMut(usize, usize)) -> Result<(), VaultError> {
        let new = SecretKey::random();
        let total = self.env.entries.len();
        let names: Vec<String> = self.env.entries.keys().cloned().collect();
        for (i, name) in names.iter().enumerate() {
            let entry = self
                .env
                .entries
                .get_mut(name)
                .ok_or_else(|| VaultError::Invalid("entry vanished".into()))?;
            let plain = crypto::open(&self.dek, &self.env.vault_id, name, &entry.value)
                .map_err(|_| VaultError::Invalid(format!("entry `{name}` does not open")))?;
            entry.value = crypto::seal(&new, &self.env.vault_id, name, &plain);
            progress(i + 1, total);
        }
        self.dek = new;
        self.rewrap = true;
        self.env.pepper = String::new();
        Ok(())
    }

    /// Seal, wrap, MAC and serialise.
    fn finish(mut self) -> Result<Vec<u8>, VaultError> {
        self.env.generation += 1;
        if self.env.data_key.is_empty() || self.rewrap {
            let recipients: Vec<age::x25519::Recipient> = self
                .env
                .recipients
                .iter()
                .map(|r| {
                    r.public_key.parse().map_err(|_| {
                        VaultError::Invalid(format!(
                            "recipient `{}` has an invalid public key",
                            r.label
                        ))
                    })
                })
                .collect::<Result<_, _>>()?;
            let wrapped = crypto::wrap_key(&self.dek, &recipients).map_err(VaultError::Invalid)?;
            self.env.data_key = crypto::b64(&wrapped);
        }
        if self.env.pepper.is_empty() || self.rewrap {
            self.env.pepper = crypto::seal(
                &self.dek,
                &self.env.vault_id,
                format::PEPPER_NAME,
                self.pepper.bytes(),
            );
        }
        self.env.mac = None;
        let canon = canonical(&self.env).map_err(VaultError::Invalid)?;
        self.env.mac = Some(crypto::mac(&self.dek, &canon));
        let mut out =
            serde_json::to_vec_pretty(&self.env).map_err(|e| VaultError::Invalid(e.to_string()))?;
        out.push(b'\n');
        Ok(out)
    }
}

/// Temp files of writers that died before their rename (only ciphertext; safe to remove
/// while we hold the lock, since no other writer can be between write and rename).
fn remove_stale_temp_files(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".credentials.") && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Hold the sidecar lock, waiting up to `timeout` for another writer.
fn lock(path: &Path, timeout: Duration) -> Result<std::fs::File, VaultError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).truncate(false).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let f = opts.open(path).map_err(|e| VaultError::io(path, e))?;
    let start = std::time::Instant::now();
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(f),
            Err(std::fs::TryLockError::WouldBlock) => {
                if start.elapsed() >= timeout {
                    return Err(VaultError::LockTimeout {
                        path: path.to_path_buf(),
                        waited: start.elapsed(),
                    });
                }
                std::thread::sleep(Duration::from_millis(rand::rngs::OsRng.gen_range(5..25)));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(VaultError::io(path, e)),
        }
    }
}

/// A verified API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyMatch {
    pub user: String,
    pub key_id: String,
}

/// Verifies presented API keys: one keyed digest and one hash-map lookup, no KDF.
pub struct ApiKeyIndex {
    subkey: SecretKey,
    by_digest: HashMap<[u8; 32], (ApiKeyMatch, Option<SystemTime>, bool)>,
}

impl ApiKeyIndex {
    /// Whether `key_id` is a key that can still log in (not revoked, not expired).
    pub fn is_live(&self, key_id: &str, now: SystemTime) -> bool {
        self.by_digest.values().any(|(m, expires, revoked)| {
            m.key_id == key_id && !revoked && expires.is_none_or(|e| e > now)
        })
    }

    fn new(pepper: &SecretKey, records: &[ApiKeyRecord]) -> Self {
        let mut by_digest = HashMap::new();
        for r in records {
            if let Some(d) = crypto::decode_digest(&r.verifier) {
                let expires = r
                    .expires
                    .as_deref()
                    .and_then(|e| humantime::parse_rfc3339(e).ok());
                by_digest.insert(
                    d,
                    (
                        ApiKeyMatch {
                            user: r.user.clone(),
                            key_id: r.key_id.clone(),
                        },
                        expires,
                        r.revoked.is_some(),
                    ),
                );
            }
        }
        ApiKeyIndex {
            subkey: crypto::api_key_subkey(pepper),
            by_digest,
        }
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// Who a presented key is, even when it can no longer log in: the match, its expiry and
    /// whether it is revoked. `None` for a key this vault does not know.
    pub fn identify(&self, presented: &str) -> Option<(ApiKeyMatch, Option<SystemTime>, bool)> {
        let d = crypto::api_key_digest(&self.subkey, presented);
        let (stored, entry) = self.by_digest.get_key_value(&d)?;
        bool::from(stored.ct_eq(&d)).then(|| entry.clone())
    }

    /// The user and key id of a valid key; `None` for unknown, expired or revoked keys.
    pub fn verify(&self, presented: &str, now: SystemTime) -> Option<ApiKeyMatch> {
        let d = crypto::api_key_digest(&self.subkey, presented);
        let (stored, entry) = self.by_digest.get_key_value(&d)?;
        if !bool::from(stored.ct_eq(&d)) {
            return None;
        }
        let (m, expires, revoked) = entry;
        if *revoked || expires.is_some_and(|e| now >= e) {
            return None;
        }
        Some(m.clone())
    }
}
