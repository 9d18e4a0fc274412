//! Source positions for JSON pointers, so every finding can name a line and column.

use std::collections::HashMap;

use jsonc_parser::ast::{ObjectPropName, Value};
use jsonc_parser::common::Ranged;
use jsonc_parser::{CollectOptions, ParseOptions, parse_to_ast};

use crate::diagnostics::{Span, pointer_token};

/// Byte ranges of every value (and of its key, for object members) by JSON pointer.
#[derive(Debug, Default, Clone)]
pub struct SpanIndex {
    values: HashMap<String, (usize, usize)>,
    keys: HashMap<String, (usize, usize)>,
    /// Pointers of object members whose key repeats an earlier key of the same object.
    pub duplicate_keys: Vec<String>,
    line_starts: Vec<usize>,
    text: String,
}

fn strict() -> ParseOptions {
    ParseOptions {
        allow_comments: false,
        allow_loose_object_property_names: false,
        allow_trailing_commas: false,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        allow_unary_plus_numbers: false,
        allow_bare_decimal_point_numbers: false,
        allow_non_finite_numbers: false,
        allow_extended_string_escapes: false,
    }
}

impl SpanIndex {
    /// Line information only, for text that is not (known to be) valid JSON.
    pub fn lines(text: &str) -> SpanIndex {
        SpanIndex {
            line_starts: std::iter::once(0)
                .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
            text: text.to_string(),
            ..SpanIndex::default()
        }
    }

    /// Index a JSON text. Call it only on text that serde_json accepted: its nesting limit
    /// (128) bounds the recursion here. Invalid JSON yields line information only.
    pub fn new(text: &str) -> SpanIndex {
        let mut idx = SpanIndex::lines(text);
        if let Ok(parsed) = parse_to_ast(text, &CollectOptions::default(), &strict())
            && let Some(v) = &parsed.value
        {
            idx.walk(v, String::new());
        }
        idx
    }

    fn walk(&mut self, v: &Value, ptr: String) {
        let r = v.range();
        self.values.insert(ptr.clone(), (r.start, r.end));
        match v {
            Value::Object(o) => {
                let mut seen = std::collections::HashSet::new();
                for prop in &o.properties {
                    let name = match &prop.name {
                        ObjectPropName::String(s) => s.value.to_string(),
                        ObjectPropName::Word(w) => w.value.to_string(),
                    };
                    let child = format!("{ptr}/{}", pointer_token(&name));
                    let kr = prop.name.range();
                    if !seen.insert(name) {
                        self.duplicate_keys.push(child.clone());
                    }
                    self.keys.insert(child.clone(), (kr.start, kr.end));
                    self.walk(&prop.value, child);
                }
            }
            Value::Array(a) => {
                for (i, e) in a.elements.iter().enumerate() {
                    self.walk(e, format!("{ptr}/{i}"));
                }
            }
            _ => {}
        }
    }

    /// Line and column (1-based, columns in characters) of a byte offset.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.line_starts.get(line).copied().unwrap_or(0);
        let col = self
            .text
            .get(start..offset)
            .map(|s| s.chars().count())
            .unwrap_or(0)
            + 1;
        (line + 1, col)
    }

    /// Line and column (1-based) of a serde_json-style position (column counts bytes).
    pub fn span_at(&self, line: usize, byte_col: usize) -> Span {
        let start = self
            .line_starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(0);
        let offset = (start + byte_col.saturating_sub(1)).min(self.text.len());
        let (l, c) = self.position(floor_char(&self.text, offset));
        Span {
            line: l,
            column: c,
            end_line: l,
            end_column: c + 1,
        }
    }

    fn span_of(&self, range: (usize, usize)) -> Span {
        let (line, column) = self.position(range.0);
        let (end_line, end_column) = self.position(range.1);
        Span {
            line,
            column,
            end_line,
            end_column,
        }
    }

    /// The span of the value at `pointer`, or of its nearest ancestor that exists.
    pub fn value_span(&self, pointer: &str) -> Option<Span> {
        let mut p = pointer;
        loop {
            if let Some(r) = self.values.get(p) {
                return Some(self.span_of(*r));
            }
            let cut = p.rfind('/')?;
            p = &p[..cut];
        }
    }

    /// The span of the key of the member at `pointer` (falls back to the value).
    pub fn key_span(&self, pointer: &str) -> Option<Span> {
        match self.keys.get(pointer) {
            Some(r) => Some(self.span_of(*r)),
            None => self.value_span(pointer),
        }
    }

    /// Whether a value exists at `pointer`.
    pub fn contains(&self, pointer: &str) -> bool {
        self.values.contains_key(pointer)
    }
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_pointers() {
        let text = "{\n  \"a\": [1, {\"b\": \"é x\"}],\n  \"c\": true\n}";
        let idx = SpanIndex::new(text);
        let s = idx.value_span("/a/1/b").unwrap();
        assert_eq!((s.line, s.column), (2, 18));
        let k = idx.key_span("/c").unwrap();
        assert_eq!((k.line, k.column, k.end_column), (3, 3, 6));
        // Missing pointers fall back to the nearest ancestor.
        assert_eq!(idx.value_span("/a/1/zzz").unwrap().column, 12);
    }

    #[test]
    fn duplicate_keys_are_found() {
        let idx = SpanIndex::new(r#"{"x": {"a": 1, "a": 2}}"#);
        assert_eq!(idx.duplicate_keys, vec!["/x/a".to_string()]);
    }
}
