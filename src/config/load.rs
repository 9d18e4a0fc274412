//! Finding, reading and parsing the config. Only [`discover`] and [`load_file`] touch the
//! file system; [`check_source`] is pure.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde_path_to_error::Segment;

use super::model::Config;
use super::spans::SpanIndex;
use super::validate::validate;
use crate::diagnostics::{Diagnostic, Severity, codes, pointer_token};
use crate::suggest::did_you_mean;

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no Fentaris config found; looked for:\n{}\nhelp: run `fentaris init` here, pass --config PATH, or set FENTARIS_CONFIG",
        .tried.iter().map(|p| format!("  - {}", p.display())).collect::<Vec<_>>().join("\n")
    )]
    NotFound { tried: Vec<PathBuf> },
    #[error("cannot read config {}: {source}\nhelp: check the path and its permissions", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The result of checking a config text.
#[derive(Debug)]
pub struct CheckOutcome {
    /// The parsed config, when the text parsed (it may still have findings).
    pub config: Option<Config>,
    /// Every finding, in source order, with positions filled in.
    pub diagnostics: Vec<Diagnostic>,
    pub spans: SpanIndex,
}

impl CheckOutcome {
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }
}

/// A config read from disk and checked.
#[derive(Debug)]
pub struct Loaded {
    pub path: PathBuf,
    /// The folder paths in the config are relative to.
    pub dir: PathBuf,
    pub source: String,
    pub outcome: CheckOutcome,
}

/// Where the config is: `--config`, else `FENTARIS_CONFIG`, else the nearest
/// `.fentaris/config.json` walking up from `cwd`.
pub fn discover(
    explicit: Option<&Path>,
    env: Option<OsString>,
    cwd: &Path,
) -> Result<PathBuf, ConfigError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(v) = env.filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(v));
    }
    let mut tried = Vec::new();
    for dir in cwd.ancestors() {
        let candidate = dir.join(".fentaris").join("config.json");
        if candidate.is_file() {
            return Ok(candidate);
        }
        tried.push(candidate);
    }
    Err(ConfigError::NotFound { tried })
}

/// Read and check a config file.
pub fn load_file(path: &Path) -> Result<Loaded, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let source = match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("not UTF-8 text: {e}"),
                ),
            });
        }
    };
    let outcome = check_source(&source);
    let dir = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."))
        .to_path_buf();
    Ok(Loaded {
        path: path.to_path_buf(),
        dir,
        source,
        outcome,
    })
}

/// Parse and validate a config text. Pure.
pub fn check_source(text: &str) -> CheckOutcome {
    // serde's struct deserializer would also take an array by position: require an object.
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body)
        && !v.is_object()
    {
        let spans = SpanIndex::new(body);
        let mut d = Diagnostic::new(codes::SCHEMA, "", "the config must be a JSON object")
            .help("start from `fentaris init` or see `fentaris config schema`");
        d.span = spans.value_span("");
        return CheckOutcome {
            config: None,
            diagnostics: vec![d],
            spans,
        };
    }
    let (config, spans) = match parse_json::<Config>(text) {
        Ok(parsed) => parsed,
        Err(d) => {
            return CheckOutcome {
                config: None,
                diagnostics: every_shape_error(body, *d),
                spans: SpanIndex::lines(text),
            };
        }
    };
    let mut diagnostics = validate(&config);
    for p in &spans.duplicate_keys {
        let key = p
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .replace("~1", "/")
            .replace("~0", "~");
        diagnostics.push(
            Diagnostic::new(
                codes::DUPLICATE,
                p.clone(),
                format!(
                    "key `{key}` appears twice in the same object; JSON keeps only the last one"
                ),
            )
            .help("remove or rename one of them"),
        );
    }
    for d in &mut diagnostics {
        if d.span.is_none() {
            d.span = spans.value_span(&d.pointer);
        }
    }
    diagnostics.sort_by(|a, b| {
        let pa = a.span.map(|s| (s.line, s.column)).unwrap_or((0, 0));
        let pb = b.span.map(|s| (s.line, s.column)).unwrap_or((0, 0));
        pa.cmp(&pb)
            .then(a.code.cmp(b.code))
            .then(a.message.cmp(&b.message))
    });
    diagnostics.dedup();
    CheckOutcome {
        config: Some(config),
        diagnostics,
        spans,
    }
}

/// After the first shape error, the others: the offending member is taken out of the
/// document and it is deserialised again, until it fits (at most 200 rounds). Errors about an
/// object something was taken out of (a required field now missing) are not reported. So one run
/// of `policy check` names every typo, not one per CI round. Pure.
fn every_shape_error(body: &str, first: Diagnostic) -> Vec<Diagnostic> {
    let mut out = vec![first];
    if out[0].code != codes::SCHEMA.id {
        return out;
    }
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(body) else {
        return out;
    };
    let spans = SpanIndex::new(body);
    let mut removed: Vec<String> = Vec::new();
    let mut last = out[0].clone();
    for _ in 0..200 {
        let Some(gone) = take_out(&mut value, &last.pointer) else {
            break;
        };
        removed.push(gone);
        let e = match serde_path_to_error::deserialize::<_, Config>(&value) {
            Ok(_) => break,
            Err(e) => e,
        };
        let d = serde_diagnostic(&e, &spans);
        // An object we took a member out of may now miss a field or match no variant.
        let caused_by_us = removed
            .iter()
            .any(|r| r.starts_with(&format!("{}/", d.pointer)));
        if out
            .iter()
            .any(|o| o.pointer == d.pointer && o.message == d.message)
        {
            break;
        }
        if !caused_by_us {
            out.push(d.clone());
        }
        last = d;
    }
    out.sort_by_key(|d| d.span.map(|s| (s.line, s.column)).unwrap_or((0, 0)));
    out
}

/// Remove the deepest object member at or above `pointer`; returns its pointer.
fn take_out(value: &mut serde_json::Value, pointer: &str) -> Option<String> {
    let mut p = pointer.to_string();
    while let Some(i) = p.rfind('/') {
        let (parent, token) = (&p[..i], &p[i + 1..]);
        let key = token.replace("~1", "/").replace("~0", "~");
        if let Some(obj) = value.pointer_mut(parent).and_then(|v| v.as_object_mut())
            && obj.remove(&key).is_some()
        {
            return Some(p);
        }
        p.truncate(i);
    }
    None
}

/// Parse any JSON document into `T`, turning the first error into a located diagnostic
/// (FNT001 for syntax, FNT002 for shape). Pure.
pub fn parse_json<T: serde::de::DeserializeOwned>(
    text: &str,
) -> Result<(T, SpanIndex), Box<Diagnostic>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Syntax (and nesting depth, at most 128) first, so the span indexer only sees
    // well-formed, bounded input.
    if let Err(e) = serde_json::from_str::<serde_json::Value>(text) {
        let spans = SpanIndex::lines(text);
        let mut d = Diagnostic::new(
            codes::PARSE,
            "",
            format!("invalid JSON: {}", strip_position(&e.to_string())),
        )
        .help("fix the JSON syntax (comments and trailing commas are not allowed)");
        d.span = Some(spans.span_at(e.line(), e.column()));
        // serde_json reports a trailing comma where the list ends: point at the comma.
        if e.to_string().contains("trailing comma")
            && let Some(comma) = comma_before(text, e.line(), e.column())
        {
            let (line, column) = spans.position(comma);
            d.span = Some(crate::diagnostics::Span {
                line,
                column,
                end_line: line,
                end_column: column + 1,
            });
            d.help = Some("remove this comma: JSON allows no comma after the last item".into());
        }
        return Err(Box::new(d));
    }
    let spans = SpanIndex::new(text);
    let v = parse_typed(text, &spans)?;
    Ok((v, spans))
}

/// The byte offset of the `,` before serde_json's position (line, byte column), skipping
/// whitespace.
fn comma_before(text: &str, line: usize, byte_col: usize) -> Option<usize> {
    let start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let at = (start + byte_col.saturating_sub(1)).min(text.len());
    let before = text.get(..at)?;
    let (i, c) = before
        .char_indices()
        .rev()
        .find(|(_, c)| !c.is_whitespace())?;
    (c == ',').then_some(i)
}

fn parse_typed<T: serde::de::DeserializeOwned>(
    text: &str,
    spans: &SpanIndex,
) -> Result<T, Box<Diagnostic>> {
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| Box::new(serde_diagnostic(&e, spans)))
}

fn strip_position(msg: &str) -> &str {
    match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    }
}

fn path_pointer(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("/{index}")),
            Segment::Map { key } => out.push_str(&format!("/{}", pointer_token(key))),
            Segment::Enum { variant } => out.push_str(&format!("/{}", pointer_token(variant))),
            Segment::Unknown => break,
        }
    }
    out
}

/// The words in backticks of a serde message, after `skip` of them.
fn backticked(msg: &str) -> Vec<&str> {
    msg.split('`').skip(1).step_by(2).collect()
}

fn serde_diagnostic(
    e: &serde_path_to_error::Error<serde_json::Error>,
    spans: &SpanIndex,
) -> Diagnostic {
    let pointer = path_pointer(e.path());
    let msg = strip_position(&e.inner().to_string()).to_string();
    let words = backticked(&msg);
    let what = if msg.starts_with("unknown field") {
        Some("field")
    } else if msg.starts_with("unknown variant") {
        Some("variant")
    } else {
        None
    };
    if let (Some(what), Some(name)) = (what, words.first()) {
        let expected = &words[1..];
        let member = format!("{pointer}/{}", pointer_token(name));
        let help = did_you_mean(name, expected.iter().copied()).unwrap_or_else(|| {
            if expected.is_empty() {
                format!("this object takes no {what}s")
            } else {
                format!("expected one of: {}", expected.join(", "))
            }
        });
        let ptr = if spans.contains(&member) {
            member
        } else {
            pointer
        };
        let mut d = Diagnostic::new(
            codes::SCHEMA,
            ptr.clone(),
            format!("unknown {what} `{name}`"),
        )
        .help(help);
        d.span = spans.key_span(&ptr);
        return d;
    }
    let help = if let Some(field) = msg
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
    {
        format!("add `{field}` (see `fentaris config schema`)")
    } else {
        "see `fentaris config schema` for the expected shape".to_string()
    };
    let mut d = Diagnostic::new(codes::SCHEMA, pointer.clone(), msg).help(help);
    d.span = spans
        .value_span(&pointer)
        .or_else(|| Some(spans.span_at(e.inner().line(), e.inner().column())));
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_has_pointer_and_hint() {
        let text = "{\n  \"servers\": [\n    {\"name\": \"fs\", \"transport\": {\"stdio\": {\"comand\": \"npx\"}}}\n  ]\n}\n";
        let out = check_source(text);
        assert!(out.config.is_none());
        let d = &out.diagnostics[0];
        assert_eq!(d.code, "FNT002");
        assert_eq!(d.pointer, "/servers/0/transport/stdio/comand");
        assert_eq!(d.span.unwrap().line, 3);
        assert_eq!(d.help.as_deref(), Some("did you mean `command`?"));
    }

    #[test]
    fn every_shape_error_is_reported_at_once() {
        let text = "{\n  \"servres\": [],\n  \"servers\": [{\"name\": \"fs\", \"transport\": {\"stdio\": {\"comand\": \"npx\"}}}],\n  \"autoLog\": \"yes\",\n  \"groups\": [{\"id\": \"g\", \"usres\": []}]\n}\n";
        let out = check_source(text);
        assert!(out.config.is_none());
        let got: Vec<_> = out
            .diagnostics
            .iter()
            .map(|d| (d.span.unwrap().line, d.pointer.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (2, "/servres"),
                (3, "/servers/0/transport/stdio/comand"),
                (4, "/autoLog"),
                (5, "/groups/0/usres"),
            ],
            "{:#?}",
            out.diagnostics
        );
        // `comand` taken out leaves `command` missing: that is not a second finding.
        assert!(
            !out.diagnostics
                .iter()
                .any(|d| d.message.contains("missing field `command`"))
        );
    }

    #[test]
    fn trailing_comma_points_at_the_comma() {
        let out = check_source("{\n  \"servers\": [],\n  \"groups\": [] ,\n}\n");
        let d = &out.diagnostics[0];
        assert_eq!(d.code, "FNT001");
        let span = d.span.unwrap();
        assert_eq!((span.line, span.column), (3, 16), "{d:?}");
        assert!(d.help.as_deref().unwrap().contains("remove this comma"));
    }

    #[test]
    fn parse_error_has_position() {
        let out = check_source("{\n  \"servers\": [,]\n}");
        let d = &out.diagnostics[0];
        assert_eq!(d.code, "FNT001");
        assert_eq!(d.span.unwrap().line, 2);
    }

    #[test]
    fn discovery_walks_up() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::create_dir_all(dir.path().join(".fentaris")).unwrap();
        std::fs::write(dir.path().join(".fentaris/config.json"), "{}").unwrap();
        let found = discover(None, None, &nested).unwrap();
        assert_eq!(found, dir.path().join(".fentaris/config.json"));
        assert_eq!(
            discover(Some(Path::new("x.json")), Some("y".into()), &nested).unwrap(),
            PathBuf::from("x.json")
        );
        assert_eq!(
            discover(None, Some("y.json".into()), &nested).unwrap(),
            PathBuf::from("y.json")
        );
    }
}
