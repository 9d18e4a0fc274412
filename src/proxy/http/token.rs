//! Session ids that any replica can serve: a legacy (2025-xx) session id is a sealed token
//! (XChaCha20-Poly1305) carrying what a replica needs to rebuild the session: the user, the
//! API key id that opened it, the endpoint, the negotiated protocol version, the client's
//! name, version and capability names, and the expiry.
//!
//! The key is derived (HKDF-SHA256, its own label) from the `cursorKey` credential, so every
//! replica given the same credential opens every replica's tokens. Without `cursorKey` the key
//! is random per process: a token is then only good on the process that issued it (and only
//! while that process still holds the session), which is single-replica behaviour.
//!
//! Tokens hold no secret (the API key is checked on every request, never carried), but they
//! are sealed rather than only MAC'd so that user names and client details are not readable
//! from a header a load balancer may log.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::secret::SecretKey;

/// What every token starts with (the format's version).
const PREFIX: &str = "fs1.";
/// Bound into every seal as associated data: a value sealed for another purpose never opens.
const AAD: &[u8] = b"fentaris/v1/session-token";
/// HKDF label of the token key (the cursor key uses the credential differently).
const LABEL: &[u8] = b"fentaris/v1/session-token-key";
/// Longest token accepted (a header value; real ones are a few hundred bytes).
const MAX_TOKEN: usize = 4096;

/// How long a session lives at most, whatever its activity: replicas cannot share the time
/// of a session's last request, so the one expiry they can all enforce is in the token.
pub const SESSION_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

/// What a session token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user the session is bound to.
    #[serde(rename = "u")]
    pub user: String,
    /// The API key id (or `trusted-header`) that opened it.
    #[serde(rename = "k")]
    pub key_id: String,
    /// `/mcp/<server>`, or `None` for `/mcp`.
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The protocol version `initialize` negotiated.
    #[serde(rename = "p")]
    pub protocol: String,
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(rename = "cv", default, skip_serializing_if = "Option::is_none")]
    pub client_version: Option<String>,
    /// The names of the capabilities the client declared (`sampling`, `roots`, ...).
    #[serde(rename = "c", default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// Issued and expires, in seconds since the Unix epoch.
    #[serde(rename = "i")]
    pub issued: u64,
    #[serde(rename = "e")]
    pub expires: u64,
}

/// Why a token does not open. Callers answer all of them alike (404, like an unknown id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not a token of this format.
    Malformed,
    /// Sealed under another key, or altered.
    Forged,
    /// Past its expiry.
    Expired,
}

/// The key that seals session tokens.
pub struct TokenKey {
    key: SecretKey,
}

impl TokenKey {
    /// A key for this process only.
    pub fn random() -> TokenKey {
        TokenKey {
            key: SecretKey::random(),
        }
    }

    /// The key every replica given the same `secret` derives.
    pub fn derive(secret: &[u8]) -> TokenKey {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(None, secret);
        let mut out = Zeroizing::new([0u8; 32]);
        // 32 bytes is always a valid HKDF-SHA256 output length.
        let _ = hk.expand(LABEL, out.as_mut());
        TokenKey {
            key: SecretKey::from_bytes(*out),
        }
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&self.key.bytes()[..]))
    }

    /// The token for `claims`: `fs1.` and base64url(nonce, ciphertext).
    pub fn seal(&self, claims: &Claims) -> String {
        let plain = Zeroizing::new(serde_json::to_vec(claims).unwrap_or_default());
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        // Encryption with a valid key and nonce cannot fail.
        let ct = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: AAD,
                },
            )
            .unwrap_or_default();
        let mut raw = nonce.to_vec();
        raw.extend_from_slice(&ct);
        format!("{PREFIX}{}", B64.encode(raw))
    }

    /// The claims of `token`, if it is one of ours and has not expired at `now` (Unix seconds).
    pub fn open(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN {
            return Err(TokenError::Malformed);
        }
        let body = token.strip_prefix(PREFIX).ok_or(TokenError::Malformed)?;
        let raw = B64.decode(body).map_err(|_| TokenError::Malformed)?;
        if raw.len() < 24 + 16 {
            return Err(TokenError::Malformed);
        }
        let (nonce, ct) = raw.split_at(24);
        let plain = Zeroizing::new(
            self.cipher()
                .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: AAD })
                .map_err(|_| TokenError::Forged)?,
        );
        let claims: Claims = serde_json::from_slice(&plain).map_err(|_| TokenError::Forged)?;
        if claims.expires <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: u64) -> Claims {
        Claims {
            user: "alice".into(),
            key_id: "k_0123abcd".into(),
            server: Some("env".into()),
            protocol: "2025-11-25".into(),
            client_name: Some("t".into()),
            client_version: Some("1".into()),
            capabilities: vec!["roots".into(), "sampling".into()],
            issued: now,
            expires: now + 60,
        }
    }

    #[test]
    fn round_trip_and_every_replica_with_the_same_credential_opens_it() {
        let now = unix_now();
        let a = TokenKey::derive(b"shared cursor credential");
        let b = TokenKey::derive(b"shared cursor credential");
        let t = a.seal(&claims(now));
        assert!(t.starts_with(PREFIX));
        // Visible ASCII only (the MCP rule for session ids), and no readable claim.
        assert!(t.bytes().all(|c| (0x21..=0x7e).contains(&c)));
        assert!(!t.contains("alice"));
        assert_eq!(b.open(&t, now), Ok(claims(now)));
        // Two seals of the same claims differ (random nonce).
        assert_ne!(a.seal(&claims(now)), t);
    }

    #[test]
    fn other_keys_tampering_and_expiry_are_refused() {
        let now = unix_now();
        let a = TokenKey::derive(b"one credential");
        let t = a.seal(&claims(now));
        assert_eq!(
            TokenKey::derive(b"another credential").open(&t, now),
            Err(TokenError::Forged)
        );
        assert_eq!(TokenKey::random().open(&t, now), Err(TokenError::Forged));
        // Flip one character of the ciphertext.
        let mut bytes = t.clone().into_bytes();
        let i = bytes.len() - 5;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(bytes).unwrap();
        assert_eq!(a.open(&flipped, now), Err(TokenError::Forged));
        assert_eq!(a.open(&t, now + 60), Err(TokenError::Expired));
        for bad in [
            "",
            "fs1.",
            "fs1.!!!",
            "0123abcd",
            "fs2.AAAA",
            &"x".repeat(5000),
        ] {
            assert_eq!(a.open(bad, now), Err(TokenError::Malformed), "{bad}");
        }
        // A short body (under nonce + tag).
        assert_eq!(
            a.open(&format!("{PREFIX}{}", B64.encode([0u8; 30])), now),
            Err(TokenError::Malformed)
        );
    }
}
