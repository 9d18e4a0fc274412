//! Name and URI patterns. `*` matches any run of characters, `/` included; `?` one character;
//! `[..]` a class; `{a,b}` alternatives. Plain strings compare byte for byte.

use globset::{GlobBuilder, GlobMatcher};

/// A compiled pattern, with fast paths for the common shapes.
#[derive(Debug, Clone)]
pub enum Pattern {
    Any,
    Exact(Box<str>),
    Prefix(Box<str>),
    /// Only `*` wildcards: the literal pieces between them, matched in order.
    Wildcard(Box<str>, Box<[Box<str>]>),
    Glob(Box<str>, GlobMatcher),
}

/// Compiled globs by text: configs repeat patterns across policies, and compiling one
/// (a regex) costs far more than matching it.
static GLOB_CACHE: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<Box<str>, GlobMatcher>>,
> = std::sync::LazyLock::new(Default::default);

fn wildcard_matches(pieces: &[Box<str>], s: &str) -> bool {
    let (Some(first), Some(last)) = (pieces.first(), pieces.last()) else {
        return true;
    };
    if pieces.len() == 1 {
        return **first == *s;
    }
    if !s.starts_with(&**first) || s.len() < first.len() + last.len() || !s.ends_with(&**last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for piece in &pieces[1..pieces.len() - 1] {
        match rest.find(&**piece) {
            Some(i) => rest = &rest[i + piece.len()..],
            None => return false,
        }
    }
    true
}

fn is_meta(c: char) -> bool {
    matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\')
}

impl Pattern {
    /// Compile a pattern; the error is a human message.
    pub fn new(text: &str) -> Result<Pattern, String> {
        if text.is_empty() {
            return Err("a pattern cannot be empty".into());
        }
        if text == "*" {
            return Ok(Pattern::Any);
        }
        if !text.chars().any(is_meta) {
            return Ok(Pattern::Exact(text.into()));
        }
        if let Some(prefix) = text.strip_suffix('*')
            && !prefix.chars().any(is_meta)
        {
            return Ok(Pattern::Prefix(prefix.into()));
        }
        if !text.chars().any(|c| is_meta(c) && c != '*') {
            let pieces: Box<[Box<str>]> = text.split('*').map(Box::from).collect();
            return Ok(Pattern::Wildcard(text.into(), pieces));
        }
        if let Some(g) = GLOB_CACHE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(text)
        {
            return Ok(Pattern::Glob(text.into(), g.clone()));
        }
        let glob = GlobBuilder::new(text)
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .map_err(|e| e.kind().to_string())?
            .compile_matcher();
        let mut cache = GLOB_CACHE.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() < 100_000 {
            cache.insert(text.into(), glob.clone());
        }
        Ok(Pattern::Glob(text.into(), glob))
    }

    #[inline]
    pub fn matches(&self, s: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Exact(e) => **e == *s,
            Pattern::Prefix(p) => s.starts_with(&**p),
            Pattern::Wildcard(_, pieces) => wildcard_matches(pieces, s),
            Pattern::Glob(_, g) => g.is_match(s),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Pattern::Any => "*",
            Pattern::Exact(s) | Pattern::Wildcard(s, _) | Pattern::Glob(s, _) => s,
            Pattern::Prefix(p) => p, // shown with its star by `display`
        }
    }

    pub fn display(&self) -> String {
        match self {
            Pattern::Prefix(p) => format!("{p}*"),
            other => other.as_str().to_string(),
        }
    }

    pub fn is_literal(&self) -> bool {
        matches!(self, Pattern::Exact(_))
    }

    /// Whether every string this pattern matches is also matched by `self`. Conservative:
    /// `false` means "not known to cover".
    pub fn covers(&self, other: &Pattern) -> bool {
        match (self, other) {
            (Pattern::Any, _) => true,
            (_, Pattern::Exact(s)) => self.matches(s),
            (Pattern::Prefix(a), Pattern::Prefix(b)) => b.starts_with(&**a),
            (Pattern::Glob(a, _), Pattern::Glob(b, _))
            | (Pattern::Wildcard(a, _), Pattern::Wildcard(b, _)) => a == b,
            _ => false,
        }
    }
}

/// A set of patterns; empty means "any".
#[derive(Debug, Clone, Default)]
pub struct PatternSet(pub Vec<Pattern>);

impl PatternSet {
    #[inline]
    pub fn matches(&self, s: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|p| p.matches(s))
    }
    pub fn is_any(&self) -> bool {
        self.0.is_empty() || self.0.iter().any(|p| matches!(p, Pattern::Any))
    }
    pub fn covers(&self, other: &PatternSet) -> bool {
        if self.is_any() {
            return true;
        }
        if other.is_any() {
            return false;
        }
        other.0.iter().all(|b| self.0.iter().any(|a| a.covers(b)))
    }
    pub fn display(&self) -> String {
        if self.0.is_empty() {
            return "*".into();
        }
        self.0
            .iter()
            .map(|p| p.display())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert!(matches!(Pattern::new("*").unwrap(), Pattern::Any));
        assert!(matches!(
            Pattern::new("read_file").unwrap(),
            Pattern::Exact(_)
        ));
        assert!(matches!(
            Pattern::new("search_*").unwrap(),
            Pattern::Prefix(_)
        ));
        assert!(matches!(
            Pattern::new("*_issue").unwrap(),
            Pattern::Wildcard(..)
        ));
        assert!(matches!(
            Pattern::new("file:///{a,b}/*").unwrap(),
            Pattern::Glob(..)
        ));
        assert!(Pattern::new("").is_err());
        assert!(Pattern::new("a[").is_err());
    }

    #[test]
    fn star_matches_slash_in_uris() {
        let p = Pattern::new("file:///public/*").unwrap();
        assert!(p.matches("file:///public/a/b/c.txt"));
        assert!(!p.matches("file:///private/a"));
        let g = Pattern::new("file:///*/notes.md").unwrap();
        assert!(g.matches("file:///a/b/notes.md"));
    }

    #[test]
    fn wildcards_without_regex() {
        let p = Pattern::new("*_comment").unwrap();
        assert!(matches!(p, Pattern::Wildcard(..)));
        assert!(p.matches("add_comment") && p.matches("_comment") && !p.matches("comment"));
        let p = Pattern::new("a*b*c").unwrap();
        assert!(
            p.matches("abc")
                && p.matches("a-b-c")
                && p.matches("aXbYbc")
                && !p.matches("acb")
                && !p.matches("ab")
        );
        let p = Pattern::new("file:///*/notes.md").unwrap();
        assert!(p.matches("file:///a/b/notes.md") && !p.matches("file:///notes.md"));
        let p = Pattern::new("*mid*").unwrap();
        assert!(p.matches("mid") && p.matches("amidb") && !p.matches("mi"));
        // Agrees with globset on every case above.
        for (pat, s) in [
            ("*_comment", "x_comment"),
            ("a*b*c", "aXbYbc"),
            ("a*b*c", "acb"),
            ("*mid*", "mi"),
            ("a*a", "a"),
        ] {
            let g = globset::GlobBuilder::new(pat)
                .literal_separator(false)
                .build()
                .unwrap()
                .compile_matcher();
            assert_eq!(
                Pattern::new(pat).unwrap().matches(s),
                g.is_match(s),
                "{pat} {s}"
            );
        }
    }

    #[test]
    fn matching_is_case_sensitive_and_exact() {
        let p = Pattern::new("read_file").unwrap();
        assert!(p.matches("read_file"));
        assert!(!p.matches("Read_File"));
        assert!(!p.matches("read_file "));
    }

    #[test]
    fn cover() {
        let any = Pattern::new("*").unwrap();
        let pre = Pattern::new("read_*").unwrap();
        let ex = Pattern::new("read_file").unwrap();
        assert!(any.covers(&pre));
        assert!(pre.covers(&ex));
        assert!(!ex.covers(&pre));
        assert!(pre.covers(&Pattern::new("read_fi*").unwrap()));
        assert!(!Pattern::new("*_file").unwrap().covers(&pre));
    }
}
