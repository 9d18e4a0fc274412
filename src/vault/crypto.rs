//! The vault's cryptography: HKDF-derived subkeys of the data key, XChaCha20-Poly1305 sealed
//! values bound to (vault id, entry name), an HMAC over the canonical file, keyed API-key
//! digests, and the age wrapping of the data key.

use std::io::{Read, Write};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::secret::SecretKey;

const SEAL_PREFIX: &str = "xc20p:";
const MAC_PREFIX: &str = "hmac-sha256:";

/// Why a cryptographic check failed. Deliberately terse: callers add context.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed value failed authentication")]
    Auth,
}

fn subkey(key: &SecretKey, info: &str) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(None, key.bytes());
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = hk.expand(info.as_bytes(), out.as_mut());
    out
}

fn aad(vault_id: &str, name: &str) -> Vec<u8> {
    let mut a = b"fentaris/v1\0".to_vec();
    a.extend_from_slice(vault_id.as_bytes());
    a.push(0);
    a.extend_from_slice(name.as_bytes());
    a
}

/// Seal `plaintext` as entry `name` of vault `vault_id`.
pub fn seal(dek: &SecretKey, vault_id: &str, name: &str, plaintext: &[u8]) -> String {
    let key = subkey(dek, "fentaris/v1/enc");
    let cipher = XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&key[..]));
    let mut nonce = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let aad = aad(vault_id, name);
    // Encryption with a valid key and nonce cannot fail for in-memory buffers.
    let ct = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .unwrap_or_default();
    let mut blob = nonce.to_vec();
    blob.extend_from_slice(&ct);
    format!("{SEAL_PREFIX}{}", B64.encode(blob))
}

/// Open a sealed value; fails if it was sealed under another key, vault id or name.
pub fn open(
    dek: &SecretKey,
    vault_id: &str,
    name: &str,
    sealed: &str,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let b64 = sealed
        .strip_prefix(SEAL_PREFIX)
        .ok_or(CryptoError::Malformed)?;
    let blob = B64.decode(b64).map_err(|_| CryptoError::Malformed)?;
    if blob.len() < 24 + 16 {
        return Err(CryptoError::Malformed);
    }
    let key = subkey(dek, "fentaris/v1/enc");
    let cipher = XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&key[..]));
    let aad = aad(vault_id, name);
    cipher
        .decrypt(
            XNonce::from_slice(&blob[..24]),
            Payload {
                msg: &blob[24..],
                aad: &aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Auth)
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

/// The file MAC over canonical bytes.
pub fn mac(dek: &SecretKey, canonical: &[u8]) -> String {
    let key = subkey(dek, "fentaris/v1/mac");
    format!("{MAC_PREFIX}{}", B64.encode(hmac(key.as_ref(), canonical)))
}

/// Constant-time check of a file MAC.
pub fn verify_mac(dek: &SecretKey, canonical: &[u8], mac_text: &str) -> bool {
    let Some(given) = mac_text
        .strip_prefix(MAC_PREFIX)
        .and_then(|b| B64.decode(b).ok())
    else {
        return false;
    };
    let key = subkey(dek, "fentaris/v1/mac");
    let want = hmac(key.as_ref(), canonical);
    given.len() == want.len() && bool::from(want.ct_eq(&given))
}

/// A short, stable fingerprint of the data key (for the pin; reveals nothing about the key).
pub fn fingerprint(dek: &SecretKey) -> String {
    let key = subkey(dek, "fentaris/v1/fingerprint");
    let d = Sha256::digest(&key[..]);
    d[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The key of API-key digests, derived from the pepper (which survives `rekey`, so digests
/// stay valid).
/// The key of the audit chain: stable across `vault rekey` (the pepper is re-sealed, not
/// changed), so old audit files stay verifiable.
pub fn audit_subkey(pepper: &SecretKey) -> SecretKey {
    SecretKey(subkey(pepper, "fentaris/v1/audit"))
}

pub fn api_key_subkey(pepper: &SecretKey) -> SecretKey {
    SecretKey(subkey(pepper, "fentaris/v1/apikey"))
}

/// The keyed digest of an API key under [`api_key_subkey`].
pub fn api_key_digest(subkey: &SecretKey, key: &str) -> [u8; 32] {
    hmac(subkey.bytes(), key.as_bytes())
}

pub fn encode_digest(d: &[u8; 32]) -> String {
    format!("{MAC_PREFIX}{}", B64.encode(d))
}

pub fn decode_digest(s: &str) -> Option<[u8; 32]> {
    let v = B64.decode(s.strip_prefix(MAC_PREFIX)?).ok()?;
    v.try_into().ok()
}

/// Wrap the data key to age X25519 recipients: the result is a standard binary age file.
pub fn wrap_key(dek: &SecretKey, recipients: &[age::x25519::Recipient]) -> Result<Vec<u8>, String> {
    let boxed: Vec<Box<dyn age::Recipient + Send>> = recipients
        .iter()
        .map(|r| Box::new(r.clone()) as Box<dyn age::Recipient + Send>)
        .collect();
    let enc =
        age::Encryptor::with_recipients(boxed.iter().map(|b| b.as_ref() as &dyn age::Recipient))
            .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut w = enc.wrap_output(&mut out).map_err(|e| e.to_string())?;
    w.write_all(dek.bytes()).map_err(|e| e.to_string())?;
    w.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

/// Why the data key could not be unwrapped.
#[derive(Debug, thiserror::Error)]
pub enum UnwrapError {
    #[error("this key is not one of the vault's recipients")]
    NoMatchingKey,
    #[error("the wrapped data key is damaged: {0}")]
    Damaged(String),
}

/// Unwrap the data key with an age identity.
pub fn unwrap_key(
    identity: &age::x25519::Identity,
    wrapped: &[u8],
) -> Result<SecretKey, UnwrapError> {
    let d =
        age::Decryptor::new_buffered(wrapped).map_err(|e| UnwrapError::Damaged(e.to_string()))?;
    let mut r = d
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => UnwrapError::NoMatchingKey,
            other => UnwrapError::Damaged(other.to_string()),
        })?;
    let mut buf = Zeroizing::new(Vec::new());
    r.read_to_end(&mut buf)
        .map_err(|e| UnwrapError::Damaged(e.to_string()))?;
    let bytes: [u8; 32] = buf
        .as_slice()
        .try_into()
        .map_err(|_| UnwrapError::Damaged("the data key is not 32 bytes".into()))?;
    Ok(SecretKey(Zeroizing::new(bytes)))
}

pub fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

pub fn unb64(s: &str) -> Option<Vec<u8>> {
    B64.decode(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_are_bound_to_vault_and_name() {
        let k = SecretKey::random();
        let s = seal(&k, "vlt_abcdefgh", "a", b"secret");
        assert_eq!(
            open(&k, "vlt_abcdefgh", "a", &s).unwrap().as_slice(),
            b"secret"
        );
        assert_eq!(open(&k, "vlt_abcdefgh", "b", &s), Err(CryptoError::Auth));
        assert_eq!(open(&k, "vlt_other123", "a", &s), Err(CryptoError::Auth));
        assert_eq!(
            open(&SecretKey::random(), "vlt_abcdefgh", "a", &s),
            Err(CryptoError::Auth)
        );
        assert_eq!(
            open(&k, "vlt_abcdefgh", "a", "nope"),
            Err(CryptoError::Malformed)
        );
    }

    #[test]
    fn mac_and_wrap() {
        let k = SecretKey::random();
        let m = mac(&k, b"{}");
        assert!(verify_mac(&k, b"{}", &m));
        assert!(!verify_mac(&k, b"{ }", &m));
        let id = age::x25519::Identity::generate();
        let wrapped = wrap_key(&k, &[id.to_public()]).unwrap();
        assert_eq!(unwrap_key(&id, &wrapped).unwrap().bytes(), k.bytes());
        let other = age::x25519::Identity::generate();
        assert!(matches!(
            unwrap_key(&other, &wrapped),
            Err(UnwrapError::NoMatchingKey)
        ));
    }
}
