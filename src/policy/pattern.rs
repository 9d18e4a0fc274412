//! Name and URI patterns. `*` matches any run of characters, `/` included; `?` one character;
//! `[..]` a class; `{a,b}` alternatives. Plain strings compare byte for byte.

use globset::{GlobBuilder, GlobMatcher};

/// A compiled pattern, with fast paths for the common shapes.
#[derive(Debug, Clone)]
pub enum Pattern {
    Any,
    Exact(Box<str>),
    Prefix(Box<str>),
    Glob(Box<str>, GlobMatcher),
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
        let glob = GlobBuilder::new(text)
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .map_err(|e| e.kind().to_string())?;
        Ok(Pattern::Glob(text.into(), glob.compile_matcher()))
    }

    #[inline]
    pub fn matches(&self, s: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Exact(e) => **e == *s,
            Pattern::Prefix(p) => s.starts_with(&**p),
            Pattern::Glob(_, g) => g.is_match(s),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Pattern::Any => "*",
            Pattern::Exact(s) | Pattern::Glob(s, _) => s,
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
            (Pattern::Glob(a, _), Pattern::Glob(b, _)) => a == b,
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
