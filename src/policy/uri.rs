//! Canonical resource URIs (RFC 3986 section 6.2.2): scheme and host lower-cased,
//! percent-encoded unreserved characters decoded, dot segments removed. A URI that would still
//! climb above its root, or that holds an encoded `/` or `\`, is refused: it could name a
//! different resource upstream than the one the policy saw.

use fluent_uri::Uri;
use fluent_uri::normalize::Normalizer;

/// Why a URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    #[error("not a valid URI: {0}")]
    Invalid(String),
    #[error("the URI climbs above its root with `..`")]
    DotSegments,
    #[error("the URI holds an encoded `/` or `\\` (%2F or %5C)")]
    EncodedSeparator,
    #[error("target kind `{kind}` does not fit operation `{operation}`")]
    KindMismatch {
        operation: String,
        kind: &'static str,
    },
}

/// The canonical form of a resource URI, or why it is refused.
pub fn canonicalize(input: &str) -> Result<String, UriError> {
    let uri = Uri::parse(input).map_err(|e| UriError::Invalid(e.to_string()))?;
    let normalized = Normalizer::new()
        .allow_path_underflow(false)
        .normalize(&uri)
        .map_err(|_| UriError::DotSegments)?;
    let out = normalized.as_str().to_string();
    let path = normalized.path().as_str();
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(UriError::DotSegments);
    }
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") {
        return Err(UriError::EncodedSeparator);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises() {
        assert_eq!(canonicalize("FILE:///a/./b/../c").unwrap(), "file:///a/c");
        assert_eq!(
            canonicalize("HTTP://Example.COM/%7Euser").unwrap(),
            "http://example.com/~user"
        );
        assert_eq!(
            canonicalize("file:///secrets%2Eenv").unwrap(),
            "file:///secrets.env"
        );
        assert_eq!(
            canonicalize("file:///public/x?q=1").unwrap(),
            "file:///public/x?q=1"
        );
    }

    #[test]
    fn refuses_escapes() {
        assert_eq!(
            canonicalize("file:///../etc/passwd"),
            Err(UriError::DotSegments)
        );
        assert_eq!(
            canonicalize("file:///a/%2E%2E/%2E%2E/x"),
            Err(UriError::DotSegments)
        );
        assert_eq!(
            canonicalize("file:///public%2F..%2Fsecret"),
            Err(UriError::EncodedSeparator)
        );
        assert!(matches!(
            canonicalize("not a uri"),
            Err(UriError::Invalid(_))
        ));
    }
}
