//! Canonical resource URIs, without parser differentials.
//!
//! Upstreams read the URI they are sent with their own parser: the official SDKs use the WHATWG
//! URL Standard (`new URL(uri).toString()` in the TypeScript SDK), others RFC 3986, and file
//! servers turn `file:` URIs into paths. A URI is accepted only when every one of those
//! readings names the same resource; the canonical form is then:
//!
//! 1. the WHATWG serialisation (scheme and special hosts lower-cased, default port dropped,
//!    dot segments and `%2e` segments resolved, `file://localhost/` read as `file:///`),
//! 2. normalised per RFC 3986 section 6.2.2 (percent-encoded unreserved characters decoded,
//!    remaining escapes upper-cased, hosts of every scheme lower-cased),
//! 3. without its fragment (which names a part of the resource and is never dereferenced by
//!    the resource's server).
//!
//! It must be a fixed point of both parsers, and the RFC 3986 reading of the input must give
//! the same string (for `file:`, RFC 8089 makes `file:/p`, `file:///p` and
//! `file://localhost/p` equal). Everything else is refused: characters WHATWG strips or
//! rewrites (tab, newline, other controls, spaces, `\`), user information, IPv4 shorthand
//! (`0x7f.1`), hosts with a trailing dot or non-ASCII (IDNA) hosts, `..` above the root,
//! encoded `/`, `\` or NUL, and `file:` URIs with a host, a query or an empty segment (a file
//! server reads `//` as `/`).
//!
//! Rule targets go through [`canonical_pattern`], so a deny on `file:///srv/secrets.env`
//! covers every accepted spelling of it.

use fluent_uri::Uri;
use fluent_uri::normalize::Normalizer;

/// Why a URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    #[error("not a valid URI: {0}")]
    Invalid(String),
    #[error("the URI climbs above its root with `..`")]
    DotSegments,
    #[error("the URI holds an encoded `/`, `\\` or NUL (%2F, %5C or %00)")]
    EncodedSeparator,
    #[error("{0}")]
    Refused(String),
    #[error(
        "URL parsers disagree on what this URI names: a WHATWG parser reads `{whatwg}`, an RFC 3986 parser `{rfc}`; send the URI as the upstream lists it"
    )]
    Ambiguous { whatwg: String, rfc: String },
    #[error("target kind `{kind}` does not fit operation `{operation}`")]
    KindMismatch {
        operation: String,
        kind: &'static str,
    },
}

fn refused(msg: impl Into<String>) -> UriError {
    UriError::Refused(msg.into())
}

/// The canonical form of a resource URI, or why it is refused.
pub fn canonicalize(input: &str) -> Result<String, UriError> {
    // Characters a WHATWG parser strips (tab, newline, leading/trailing C0 and space) or
    // rewrites (`\` is `/` in special URLs), and that RFC 3986 does not allow at all.
    if let Some(c) = input.chars().find(|c| c.is_ascii_control() || *c == ' ') {
        return Err(refused(format!(
            "the URI holds a control character or space ({c:?}); URL parsers strip or encode it differently: percent-encode it (e.g. %20) or remove it"
        )));
    }
    if input.contains('\\') {
        return Err(refused(
            "the URI holds a backslash, which WHATWG URL parsers read as `/` and RFC 3986 parsers refuse; write `/`",
        ));
    }
    let input = encode_non_ascii(input)?;

    // The RFC 3986 reading.
    let rfc_uri = Uri::parse(&*input).map_err(|e| UriError::Invalid(e.to_string()))?;
    if rfc_uri.authority().is_some_and(|a| a.userinfo().is_some()) {
        return Err(userinfo());
    }
    let rfc = rfc_normalize(&input)?;

    // The WHATWG reading.
    let mut url = url::Url::parse(&input).map_err(|e| {
        UriError::Invalid(format!(
            "a WHATWG URL parser (as in the MCP SDKs) refuses it: {e}"
        ))
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(userinfo());
    }
    url.set_fragment(None);
    let canonical = without_empty_query(rfc_normalize(url.as_str())?);

    // Both readings must name the same resource, and the canonical form must read back as
    // itself in both parsers (it is what the upstream gets).
    let rfc = without_empty_query(scheme_equivalent(&rfc).unwrap_or(rfc));
    if rfc != canonical {
        return Err(UriError::Ambiguous {
            whatwg: canonical,
            rfc,
        });
    }
    match url::Url::parse(&canonical) {
        Ok(u) if u.as_str() == canonical => {}
        Ok(u) => {
            return Err(UriError::Ambiguous {
                whatwg: u.as_str().to_string(),
                rfc: canonical,
            });
        }
        Err(e) => return Err(UriError::Invalid(e.to_string())),
    }
    check_resource(&canonical)?;
    Ok(canonical)
}

/// The canonical form of a completion reference: a URI, or a URI template whose literal parts
/// are already canonical (templates are compared as text by the SDKs, so they are forwarded
/// as they are).
pub fn canonicalize_reference(input: &str) -> Result<String, UriError> {
    if !input.contains('{') {
        return canonicalize(input);
    }
    let mut probe = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(open) = rest.find('{') {
        probe.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| refused("the URI template has a `{` without its `}`"))?;
        probe.push('x');
        rest = &rest[open + close + 1..];
    }
    probe.push_str(rest);
    if probe.contains('}') {
        return Err(refused("the URI template has a `}` without its `{`"));
    }
    let c = canonicalize(&probe)?;
    if c != probe {
        return Err(refused(format!(
            "the URI template is not in canonical form (its literal parts read as `{c}`); send it as the upstream lists it"
        )));
    }
    Ok(input.to_string())
}

fn userinfo() -> UriError {
    refused(
        "the URI holds user information (`user@` or `user:password@`), which some upstreams ignore and others send on; remove it",
    )
}

/// RFC 3987 section 3.1: non-ASCII characters are percent-encoded as UTF-8 (as WHATWG does in
/// paths, queries and fragments). A non-ASCII host is refused: WHATWG maps it with IDNA,
/// RFC 3986 does not.
fn encode_non_ascii(input: &str) -> Result<std::borrow::Cow<'_, str>, UriError> {
    if input.is_ascii() {
        return Ok(input.into());
    }
    if let Some((_, after)) = input.split_once("://") {
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        if !after[..end].is_ascii() {
            return Err(refused(
                "the URI's host is not ASCII; URL parsers map international names differently: write the host in its xn-- (punycode) form",
            ));
        }
    }
    let mut out = String::with_capacity(input.len() * 2);
    for c in input.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    Ok(out.into())
}

/// RFC 3986 normalisation (fluent-uri), without the fragment.
fn rfc_normalize(s: &str) -> Result<String, UriError> {
    let uri = Uri::parse(s).map_err(|e| UriError::Invalid(e.to_string()))?;
    let normalized = Normalizer::new()
        .allow_path_underflow(false)
        .normalize(&uri)
        .map_err(|_| UriError::DotSegments)?;
    let mut out = normalized.as_str().to_string();
    if let Some(f) = normalized.fragment() {
        out.truncate(out.len() - f.as_str().len() - 1);
    }
    Ok(out)
}

/// An empty query (`https://h/p?`) names what the URI without it names to every HTTP server
/// (and the fragment is gone already, so a final `?` is an empty query).
fn without_empty_query(mut s: String) -> String {
    let web = ["http:", "https:", "ws:", "wss:"];
    if s.ends_with('?') && web.iter().any(|w| s.starts_with(w)) {
        s.pop();
    }
    s
}

/// Scheme-based equivalence (RFC 3986 section 6.2.3): RFC 8089 makes `file:/p` and
/// `file://localhost/p` name `file:///p`; RFC 9110 makes an empty http(s) path `/`.
fn scheme_equivalent(rfc: &str) -> Option<String> {
    for scheme in ["http://", "https://", "ws://", "wss://", "ftp://"] {
        if let Some(rest) = rfc.strip_prefix(scheme) {
            let end = rest.find(['/', '?']).unwrap_or(rest.len());
            if rest[end..].starts_with('/') {
                return None;
            }
            let end = scheme.len() + end;
            return Some(format!("{}/{}", &rfc[..end], &rfc[end..]));
        }
    }
    let rest = rfc.strip_prefix("file:")?;
    if let Some(path) = rest.strip_prefix("//localhost") {
        return path.starts_with('/').then(|| format!("file://{path}"));
    }
    if rest.starts_with('/') && !rest.starts_with("//") {
        return Some(format!("file://{rest}"));
    }
    None
}

/// What the canonical form may not hold, even though both parsers agree on it.
fn check_resource(canonical: &str) -> Result<(), UriError> {
    let uri = Uri::parse(canonical).map_err(|e| UriError::Invalid(e.to_string()))?;
    let path = uri.path().as_str();
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(UriError::DotSegments);
    }
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || canonical.contains("%00") {
        return Err(UriError::EncodedSeparator);
    }
    if let Some(auth) = uri.authority() {
        let host = auth.host();
        if host.len() > 1 && host.ends_with('.') {
            return Err(refused(format!(
                "the URI's host `{host}` ends with a dot, which names the same host as without it; remove the dot"
            )));
        }
    }
    if uri.scheme().as_str() == "file" {
        if uri.authority().is_some_and(|a| !a.host().is_empty()) {
            return Err(refused(
                "a file: URI with a host names a file on another machine, and file servers disagree on it; write file:///path",
            ));
        }
        if uri.query().is_some() {
            return Err(refused(
                "a file: URI has no query (RFC 8089), and file servers ignore it; remove the `?…` part",
            ));
        }
        if path.contains("//") {
            return Err(refused(
                "the file: URI's path has an empty segment (`//`), which a file server reads as `/`; write the path with single slashes",
            ));
        }
    }
    Ok(())
}

/// The canonical spelling of a URI pattern's literal part, if it differs: `Ok(None)` when the
/// pattern is already canonical (or `*`), `Err` when it has no glob and is not a usable URI.
///
/// A glob's literal part (up to its first `*`, `?`, `[`, `{` or `\`) is canonicalised only
/// where that cannot widen the pattern: its end must lie in the path or the query, not inside
/// a dot segment, a percent escape or the fragment; a literal part that ends in the scheme or
/// authority is only lower-cased.
pub fn canonical_pattern(text: &str) -> Result<Option<String>, UriError> {
    let cut = text.find(['*', '?', '[', '{', '\\']).unwrap_or(text.len());
    let (literal, rest) = text.split_at(cut);
    if literal.is_empty() {
        return Ok(None);
    }
    if rest.is_empty() {
        let c = canonicalize(literal)?;
        return Ok((c != text).then_some(c));
    }
    let Some(colon) = literal.find(':') else {
        return Ok(None);
    };
    if literal.contains('#') || literal.contains('@') {
        return Ok(None);
    }
    // Where the path starts: after `scheme:` or after `scheme://authority`.
    let after_scheme = &literal[colon + 1..];
    let path_start = match after_scheme.strip_prefix("//") {
        Some(auth) => auth.find('/').map(|i| colon + 3 + i),
        None => Some(colon + 1),
    };
    let Some(path_start) = path_start else {
        // The literal ends in the authority: only case can be normalised there.
        let lower = literal.to_ascii_lowercase();
        let c = format!("{lower}{rest}");
        return Ok((c != text).then_some(c));
    };
    if path_start >= literal.len() && !literal.ends_with('/') {
        return Ok(None); // ends right after `scheme:`
    }
    let last_segment = literal.rsplit('/').next().unwrap_or("");
    let decoded_dots = last_segment.to_ascii_lowercase().replace("%2e", ".");
    if !decoded_dots.is_empty() && decoded_dots.chars().all(|c| c == '.') {
        return Ok(None); // inside a possible dot segment
    }
    let tail = literal.as_bytes();
    let n = tail.len();
    if tail[n.saturating_sub(2)..].contains(&b'%') {
        return Ok(None); // inside a percent escape
    }
    let c = match canonicalize(literal) {
        Ok(c) => c,
        Err(_) => return Ok(None),
    };
    let c = format!("{c}{rest}");
    Ok((c != text).then_some(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        canonicalize(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn normalises() {
        assert_eq!(ok("FILE:///a/./b/../c"), "file:///a/c");
        assert_eq!(ok("HTTP://Example.COM/%7Euser"), "http://example.com/~user");
        assert_eq!(ok("file:///secrets%2Eenv"), "file:///secrets.env");
        assert_eq!(ok("file:///public/x"), "file:///public/x");
        assert_eq!(ok("https://example.com/p?q=1"), "https://example.com/p?q=1");
        assert_eq!(ok("https://example.com/p#frag"), "https://example.com/p");
        assert_eq!(ok("test://static/resource/1"), "test://static/resource/1");
        assert_eq!(
            ok("demo://resource/static/document/a.md"),
            "demo://resource/static/document/a.md"
        );
        assert_eq!(ok("urn:isbn:0451450523"), "urn:isbn:0451450523");
        assert_eq!(ok("file:///caf%c3%a9"), "file:///caf%C3%A9");
        assert_eq!(ok("file:///café"), "file:///caf%C3%A9");
    }

    #[test]
    fn every_spelling_of_a_file_uri_is_one() {
        for s in [
            "file:///srv/secrets.env",
            "file://localhost/srv/secrets.env",
            "file://LOCALHOST/srv/secrets.env",
            "file:/srv/secrets.env",
            "FILE:///srv/secrets.env",
            "file:///srv/./secrets.env",
            "file:///srv/x/../secrets.env",
            "file:///srv/%2e/secrets.env",
            "file:///srv/x/%2E%2E/secrets.env",
            "file:///srv/%73ecrets.env",
            "file:///srv/secrets.env#x",
        ] {
            assert_eq!(ok(s), "file:///srv/secrets.env", "{s}");
        }
    }

    #[test]
    fn every_spelling_of_an_https_uri_is_one() {
        for s in [
            "https://example.com/secret",
            "HTTPS://EXAMPLE.COM/secret",
            "https://example.com:443/secret",
            "https://example.com:0443/secret",
            "https://example.com:/secret",
            "https://example.com/./secret",
            "https://example.com/a/../secret",
            "https://example.com/%73ecret",
            "https://ex%61mple.com/secret",
            "https://example.com/secret#top",
            "https://example.com/secret?",
            "https://example.com/secret?#",
        ] {
            assert_eq!(ok(s), "https://example.com/secret", "{s}");
        }
        assert_eq!(ok("http://example.com"), "http://example.com/");
        assert_eq!(ok("http://example.com?q"), "http://example.com/?q");
        assert_eq!(ok("http://example.com?q/r"), "http://example.com/?q/r");
    }

    #[test]
    fn refuses_what_parsers_read_differently() {
        for s in [
            "file:srv/secrets.env",
            "file://evil/srv/secrets.env",
            "file:////srv/secrets.env",
            "file:///srv//secrets.env",
            "file:///srv/secrets.env?x",
            "https:example.com/secret",
            "https:/example.com/secret",
            "https:///example.com/secret",
            "https://example.com\\secret",
            "https://example.com/\\secret",
            "https://exa\tmple.com/secret",
            "https://example.com/sec\nret",
            " https://example.com/secret",
            "https://example.com/secret ",
            "https://user@example.com/secret",
            "https://user:pw@example.com/secret",
            "https://@example.com/secret",
            "http://0x7f.1/",
            "http://127.1/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "https://example.com./secret",
            "https://exämple.com/secret",
            "https://example.com/a?b='c'",
            "file:///../etc/passwd",
            "file:///a/%2E%2E/%2E%2E/x",
            "file:///public%2F..%2Fsecret",
            "file:///a%00b",
            "not a uri",
            "relative/path",
            "https://example.com/a|b",
        ] {
            assert!(canonicalize(s).is_err(), "{s} -> {:?}", canonicalize(s));
        }
    }

    #[test]
    fn templates() {
        assert_eq!(
            canonicalize_reference("file:///{path}").unwrap(),
            "file:///{path}"
        );
        assert_eq!(
            canonicalize_reference("file://localhost/srv/secrets.env").unwrap(),
            "file:///srv/secrets.env"
        );
        assert!(canonicalize_reference("FILE:///{path}").is_err());
        assert!(canonicalize_reference("file:///{path").is_err());
    }

    #[test]
    fn patterns() {
        let c = |s: &str| canonical_pattern(s).unwrap();
        assert_eq!(c("FILE:///secret*").as_deref(), Some("file:///secret*"));
        assert_eq!(
            c("http://Internal.example:80/*").as_deref(),
            Some("http://internal.example/*")
        );
        assert_eq!(
            c("file://localhost/srv/*").as_deref(),
            Some("file:///srv/*")
        );
        assert_eq!(c("HTTPS://Example*").as_deref(), Some("https://example*"));
        assert_eq!(c("file:///a/../b.env").as_deref(), Some("file:///b.env"));
        assert_eq!(
            c("file://localhost/srv/secrets.env").as_deref(),
            Some("file:///srv/secrets.env")
        );
        assert_eq!(c("file:///public/*"), None);
        assert_eq!(c("file:///srv/%2e*"), None);
        assert_eq!(c("file:///srv/a%2*"), None);
        assert_eq!(c("https://x/a#*"), None);
        assert_eq!(c("read_*"), None);
        assert_eq!(c("*"), None);
        assert!(canonical_pattern("file:///../x").is_err());
        assert!(canonical_pattern("file:srv/x").is_err());
    }
}
