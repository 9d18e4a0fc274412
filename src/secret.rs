//! Secret values in memory: zeroized on drop, `[redacted]` in Debug and Display.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

/// A secret string (an upstream token, an API key, a passphrase).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(Zeroizing::new(value))
    }

    /// The value. Call sites are the only places a secret leaves this type: keep them few.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(mut s: String) -> Self {
        let out = Secret::new(s.clone());
        s.zeroize();
        out
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// 32 secret bytes (a data key, a pepper), zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(pub(crate) Zeroizing<[u8; 32]>);

impl SecretKey {
    pub fn random() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, k.as_mut());
        SecretKey(k)
    }
    /// Wrap raw key bytes (e.g. a data key recovered with the `age` tool).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SecretKey(Zeroizing::new(bytes))
    }
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("ghp_canary".into());
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(format!("{:?}", SecretKey::random()), "[redacted]");
        assert_eq!(s.expose(), "ghp_canary");
    }
}
