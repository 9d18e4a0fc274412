//! Findings about a config: the diagnostic type, the code catalogue and the renderers
//! (human, json, sarif, github). Pure: renderers return strings, callers print them.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::json;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    Error,
    SecurityWarning,
    Warning,
    Suggestion,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::SecurityWarning => "security-warning",
            Severity::Warning => "warning",
            Severity::Suggestion => "suggestion",
            Severity::Info => "info",
        }
    }
}

/// One entry of the code catalogue. Codes are stable: never renumber, only add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    pub id: &'static str,
    pub severity: Severity,
    /// A PascalCase name, used as the SARIF rule name.
    pub name: &'static str,
    pub summary: &'static str,
}

macro_rules! catalogue {
    ($($konst:ident = $id:literal, $sev:ident, $name:literal, $summary:literal;)*) => {
        /// The code catalogue.
        pub mod codes {
            use super::{Code, Severity};
            $(pub const $konst: Code = Code { id: $id, severity: Severity::$sev, name: $name, summary: $summary };)*
            /// Every code, in catalogue order.
            pub const ALL: &[Code] = &[$($konst),*];
        }
    };
}

catalogue! {
    PARSE = "FNT001", Error, "ParseError", "The file is not valid JSON.";
    SCHEMA = "FNT002", Error, "SchemaViolation", "A field is unknown, missing or of the wrong type.";
    MISSING_POLICY = "FNT003", Error, "MissingPolicy", "A group or the top-level `policy` names a policy that is not defined.";
    UNBOUND_CREDENTIAL = "FNT004", Error, "UnboundCredential", "A `{\"credential\": name}` reference has no binding in scope.";
    VAULT_ENTRY_MISSING = "FNT005", Error, "VaultEntryMissing", "A `{\"vault\": name}` source names an entry the vault does not hold.";
    BAD_GLOB = "FNT006", Error, "InvalidGlob", "A server, tool, target or operation glob cannot be compiled.";
    UNKNOWN_OPERATION = "FNT007", Error, "UnknownOperation", "An operation is not one Fentaris knows, or a glob matches no operation.";
    UNKNOWN_TARGET_KIND = "FNT008", Error, "UnknownTargetKind", "A `targetKind` is not tool, resource, resourceTemplate, prompt or server.";
    KIND_MISMATCH = "FNT009", Error, "OperationKindMismatch", "A `targetKind` does not fit the rule's operation.";
    EMPTY_GROUP = "FNT010", Error, "EmptyGroup", "A group has no users.";
    DUPLICATE = "FNT011", Error, "DuplicateName", "A server, policy, group, user in a group or object key is declared twice.";
    MISSING_SERVER = "FNT012", Error, "MissingServer", "A rule names a server the group cannot see.";
    BAD_SERVER_NAME = "FNT013", Error, "InvalidServerName", "A server name does not match ^[a-z0-9][a-z0-9-]{0,31}$.";
    SERVER_SHADOWS_TOP_LEVEL = "FNT014", Error, "ServerDeclaredTwice", "A server is declared both at top level and in a group.";
    USER_CONFLICT = "FNT015", Error, "UserAttributesConflict", "A user's tenantId or apiKeys differ between groups, or one API key belongs to two users.";
    RESERVED_VARIABLE = "FNT016", Error, "ReservedVariable", "A FENTARIS_* variable is used as a credential source or passed to a child.";
    TRUSTED_HEADERS_NO_PROXIES = "FNT017", Error, "TrustedHeadersWithoutProxies", "Trusted identity headers are enabled without a proxy allow-list.";
    CUSTOM_GLOB = "FNT018", Error, "CustomOperationGlob", "Custom methods must be named one by one, not matched by a glob.";
    BAD_RULE_SHAPE = "FNT019", Error, "InvalidRule", "A rule must have exactly one of allow, deny, allowCapability, denyCapability.";
    BAD_VALUE = "FNT020", Error, "InvalidValue", "A value is malformed (address, URL, header name, placeholder, binding).";
    BAD_ARGUMENT_SCHEMA = "FNT021", Error, "InvalidArgumentSchema", "An argument rule's schema is not a valid JSON Schema.";
    SECRET_LITERAL = "FNT100", SecurityWarning, "SecretLiteral", "A literal value looks like a secret; use a credential source.";
    WILDCARD_ALLOW = "FNT101", SecurityWarning, "WildcardAllow", "`allow *` on `mcp *` grants every tool of every server.";
    PLAINTEXT_CREDENTIALS = "FNT102", SecurityWarning, "CredentialsOverPlainHttp", "Credentials are sent to a non-loopback upstream over http://.";
    AUDIT_FAIL_OPEN = "FNT103", SecurityWarning, "AuditFailOpen", "`audit.onFailure` is `allow`: requests are served when the audit sink fails.";
    TOOL_DRIFT = "FNT104", SecurityWarning, "ToolDrift", "An upstream tool or prompt is new or changed since `fentaris tools lock` (checked by `policy check --online`); `serve` hides such tools.";
    SHADOWED_RULE = "FNT200", Warning, "ShadowedRule", "A rule can never decide anything because another rule already decides every case it covers.";
    UNUSED_POLICY = "FNT201", Warning, "UnusedPolicy", "A named policy is not used by any group or by the top-level policy.";
    UNUSED_CREDENTIAL = "FNT202", Warning, "UnusedCredential", "A credential binding is never referenced.";
    GROUP_WITHOUT_POLICY = "FNT203", Warning, "GroupWithoutPolicy", "A group has no policy, so its users are denied everything.";
    GLOB_CLASS_LITERAL = "FNT204", Warning, "GlobClassLooksLiteral", "A `[...]` in a rule's server or target is a glob class that matches one character, though it looks like literal text (a name in brackets, an IPv6 host); escape the brackets to match them.";
    OLD_SECRET = "FNT205", Warning, "OldKeyOrCredential", "A vault API key or credential is older than `identity.maxKeyAge`: rotate it (`fentaris auth api-key rotate`, `fentaris credentials set`).";
    DUPLICATE_RULE = "FNT300", Suggestion, "DuplicateRule", "A rule repeats an earlier rule of the same policy.";
    VAULT_UNVERIFIED = "FNT090", Info, "VaultUnverified", "The vault's integrity was not verified: no vault key is available here (as in CI).";
    PER_SESSION_CONNECTIONS = "FNT093", Info, "PerSessionConnections", "A stdio server that some policy may let reach a client (sampling, elicitation, roots, log lines) gets one connection per session, so what it sends during a call reaches only the client that caused it.";
    AUDIT_HASH_CHAIN = "FNT092", Info, "AuditPlainHashChain", "Audit lines are chained with plain SHA-256 because there is no vault: edits are detected only if whoever edits does not recompute the chain.";
    COMMAND_NOT_FOUND = "FNT094", Info, "CommandNotFound", "A stdio server's command is not found on PATH (or at its path) on the machine that ran the check, so the server cannot start there (`fentaris doctor` checks the machine that will serve).";
    ONE_REPLICA_SESSIONS = "FNT095", Info, "SessionsOnOneReplica", "The listener is reachable from other machines but there is no `cursorKey`: session ids and list cursors are good only on the process that issued them, so replicas behind a load balancer need sticky sessions.";
    VAULT_INVALID = "FNT091", Error, "VaultInvalid", "The vault file is unreadable, tampered, rolled back, or does not open with the available key.";
}

impl Code {
    pub fn by_id(id: &str) -> Option<Code> {
        codes::ALL.iter().copied().find(|c| c.id == id)
    }
    /// Where the code is documented, relative to the repository root.
    pub fn docs_ref(&self) -> String {
        format!("docs/codes.md#{}", self.id.to_ascii_lowercase())
    }
}

/// The code catalogue as Markdown (`docs/codes.md`, kept current by a test).
pub fn codes_markdown() -> String {
    let mut out = String::from(
        "# Diagnostic codes\n\nGenerated from `src/diagnostics.rs` by `UPDATE_GENERATED=1 cargo test --test generated`; do not edit by hand.\n\nCodes are stable: a code is never renumbered or reused. `fentaris policy check` exits 1 when a finding is an error, or (with `--deny-warnings`) a security warning or warning.\n\n| code | severity | name | meaning |\n|---|---|---|---|\n",
    );
    for c in codes::ALL {
        let _ = writeln!(
            out,
            "| <a id=\"{}\"></a>{} | {} | {} | {} |",
            c.id.to_ascii_lowercase(),
            c.id,
            c.severity.as_str(),
            c.name,
            c.summary.replace('|', "\\|")
        );
    }
    out
}

/// A 1-based position range in the source file (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnostic {
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// JSON pointer (RFC 6901) of the offending value.
    pub pointer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span: Option<Span>,
}

impl Diagnostic {
    pub fn new(code: Code, pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            code: code.id,
            severity: code.severity,
            message: message.into(),
            help: None,
            pointer: pointer.into(),
            span: None,
        }
    }
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
    pub fn severity(mut self, s: Severity) -> Self {
        self.severity = s;
        self
    }
}

/// Escape one JSON-pointer token (RFC 6901).
pub fn pointer_token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Counts by severity.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub errors: usize,
    pub security_warnings: usize,
    pub warnings: usize,
    pub suggestions: usize,
    pub infos: usize,
}

impl Summary {
    pub fn of(diags: &[Diagnostic]) -> Summary {
        let mut s = Summary::default();
        for d in diags {
            match d.severity {
                Severity::Error => s.errors += 1,
                Severity::SecurityWarning => s.security_warnings += 1,
                Severity::Warning => s.warnings += 1,
                Severity::Suggestion => s.suggestions += 1,
                Severity::Info => s.infos += 1,
            }
        }
        s
    }

    /// Whether the findings fail a check (`--deny-warnings` also fails on warnings).
    pub fn fails(&self, deny_warnings: bool) -> bool {
        self.errors > 0 || (deny_warnings && (self.security_warnings > 0 || self.warnings > 0))
    }

    pub fn line(&self) -> String {
        fn n(count: usize, one: &str, many: &str) -> String {
            format!("{count} {}", if count == 1 { one } else { many })
        }
        format!(
            "{}, {}, {}, {}",
            n(self.errors, "error", "errors"),
            n(
                self.security_warnings,
                "security warning",
                "security warnings"
            ),
            n(self.warnings, "warning", "warnings"),
            n(self.suggestions, "suggestion", "suggestions"),
        )
    }
}

/// What a renderer needs: the file as shown to the user, its text, and the findings.
pub struct Report<'a> {
    pub file: &'a str,
    pub source: &'a str,
    pub diagnostics: &'a [Diagnostic],
}

fn style_for(sev: Severity) -> anstyle::Style {
    use anstyle::{AnsiColor, Style};
    let c = match sev {
        Severity::Error => AnsiColor::Red,
        Severity::SecurityWarning => AnsiColor::Magenta,
        Severity::Warning => AnsiColor::Yellow,
        Severity::Suggestion | Severity::Info => AnsiColor::Cyan,
    };
    Style::new().fg_color(Some(c.into())).bold()
}

/// A literal that a finding flagged as a secret (FNT100): where it is in the source (a line,
/// 0-based char columns, end exclusive, without its quotes) and its text.
struct Flagged {
    line: usize,
    start: usize,
    end: usize,
    text: String,
}

/// The secret literals of a report, from its FNT100 findings' spans.
fn flagged_secrets(report: &Report) -> Vec<Flagged> {
    let lines: Vec<&str> = report.source.lines().collect();
    report
        .diagnostics
        .iter()
        .filter(|d| d.code == codes::SECRET_LITERAL.id)
        .filter_map(|d| {
            let span = d.span?;
            let chars: Vec<char> = lines.get(span.line.checked_sub(1)?)?.chars().collect();
            let mut start = span.column.saturating_sub(1).min(chars.len());
            let mut end = if span.end_line == span.line {
                span.end_column.saturating_sub(1).clamp(start, chars.len())
            } else {
                chars.len()
            };
            if end >= start + 2 && chars[start] == '"' && chars[end - 1] == '"' {
                start += 1;
                end -= 1;
            }
            Some(Flagged {
                line: span.line,
                start,
                end,
                text: chars[start..end].iter().collect(),
            })
        })
        .collect()
}

/// The secrets to redact wherever they are quoted: the flagged literals, and (so that a file
/// that did not parse or validate, where no finding flagged anything, is covered too) every
/// string of the JSON whose key names a secret, and every URL's user-info.
fn known_secrets(report: &Report, flagged: &[Flagged]) -> Vec<String> {
    // `parent` is the key of the enclosing object: literal headers and environment variables
    // whose name says they hold a secret.
    fn walk(v: &serde_json::Value, parent: &str, key: &str, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) => {
                let k = key.to_ascii_lowercase().replace(['-', '_'], "");
                let sensitive = (parent == "headers" || parent == "env")
                    && [
                        "authorization",
                        "token",
                        "secret",
                        "password",
                        "passwd",
                        "cookie",
                        "apikey",
                    ]
                    .iter()
                    .any(|w| k.contains(w));
                if sensitive {
                    out.push(s.clone());
                }
                if let Some((_, rest)) = s.split_once("://") {
                    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
                    if let Some((userinfo, _)) = authority.rsplit_once('@') {
                        out.push(userinfo.to_string());
                        out.extend(userinfo.split_once(':').map(|(_, pw)| pw.to_string()));
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, parent, key, out)),
            serde_json::Value::Object(map) => map.iter().for_each(|(k, v)| walk(v, key, k, out)),
            _ => {}
        }
    }
    let mut out: Vec<String> = flagged.iter().map(|f| f.text.clone()).collect();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(report.source) {
        walk(&v, "", "", &mut out);
    }
    // Longest first, so that a secret is not half-redacted by a shorter one inside it.
    out.retain(|s| s.chars().count() >= MIN_KNOWN);
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// The secrets of a config file that output must never show (see [`render_human`]): for
/// [`redact_secrets`] elsewhere, e.g. `config show`.
pub fn secret_texts(source: &str, diagnostics: &[Diagnostic]) -> Vec<String> {
    let report = Report {
        file: "",
        source,
        diagnostics,
    };
    known_secrets(&report, &flagged_secrets(&report))
}

/// Known secrets shorter than this are not searched for in text (they would redact unrelated
/// words); their excerpts are still masked by position when a finding flagged them.
const MIN_KNOWN: usize = 4;

/// One source line as shown: flagged secrets (`masks`, 0-based char ranges) and tokens that
/// look like secrets replaced by [`REDACTED`], tabs as four spaces, unsafe characters escaped.
/// Also the display column of every source column (one more entry for the line's end), so
/// carets still point at the right place.
fn excerpt(text: &str, masks: &[(usize, usize)], known: &[String]) -> (String, Vec<usize>) {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut masked = vec![false; chars.len()];
    // Byte ranges to char indices (ranges from `match_indices` and `secret_tokens` start and
    // end on char boundaries).
    let mut mask_bytes = |r: std::ops::Range<usize>| {
        let a = chars.partition_point(|&(i, _)| i < r.start);
        let b = chars.partition_point(|&(i, _)| i < r.end);
        masked[a..b].iter_mut().for_each(|m| *m = true);
    };
    for k in known.iter().filter(|k| k.chars().count() >= MIN_KNOWN) {
        for (at, _) in text.match_indices(k.as_str()) {
            mask_bytes(at..at + k.len());
        }
    }
    for r in secret_tokens(text) {
        mask_bytes(r);
    }
    for &(a, b) in masks {
        let b = b.min(masked.len());
        masked[a.min(b)..b].iter_mut().for_each(|m| *m = true);
    }
    let mut out = String::new();
    let mut width = 0;
    let mut map = Vec::with_capacity(chars.len() + 1);
    for (i, &(_, c)) in chars.iter().enumerate() {
        map.push(width);
        let shown = if masked[i] {
            if i > 0 && masked[i - 1] {
                continue;
            }
            REDACTED.to_string()
        } else if c == '\t' {
            "    ".to_string()
        } else {
            escape_control(c.encode_utf8(&mut [0; 4]))
        };
        width += shown.chars().count();
        out.push_str(&shown);
    }
    map.push(width);
    (out, map)
}

/// Human output: each finding with the source line and a caret, then a summary line. Secret
/// literals are never shown: neither the ones a finding flagged nor any token that looks like
/// one, in excerpts, messages or help.
pub fn render_human(report: &Report, color: bool) -> String {
    let paint = |style: anstyle::Style, s: &str| -> String {
        if color {
            format!("{style}{s}{style:#}")
        } else {
            s.to_string()
        }
    };
    let bold = anstyle::Style::new().bold();
    let blue = anstyle::Style::new()
        .fg_color(Some(anstyle::AnsiColor::Blue.into()))
        .bold();
    let flagged = flagged_secrets(report);
    let known = known_secrets(report, &flagged);
    // Messages can quote config text: never let it drive the terminal or show a secret.
    let clean = |s: &str| escape_control(&redact_secrets(s, &known));
    let lines: Vec<&str> = report.source.lines().collect();
    let mut excerpts = std::collections::HashMap::new();
    let mut out = String::new();
    for d in report.diagnostics {
        let head = format!("{}[{}]", d.severity.as_str(), d.code);
        let _ = writeln!(
            out,
            "{}: {}",
            paint(style_for(d.severity), &head),
            paint(bold, &clean(&d.message))
        );
        let pointer = if d.pointer.is_empty() {
            "/".to_string()
        } else {
            escape_control(&d.pointer)
        };
        match d.span {
            Some(span) => {
                let num = span.line.to_string();
                let pad = " ".repeat(num.len());
                let _ = writeln!(
                    out,
                    "{pad}{} {}:{}:{} ({pointer})",
                    paint(blue, "-->"),
                    escape_control(report.file),
                    span.line,
                    span.column,
                );
                if let Some(text) = lines.get(span.line.saturating_sub(1)) {
                    // One excerpt per line, however many findings point into it.
                    let (text, map) = excerpts.entry(span.line).or_insert_with(|| {
                        let masks: Vec<_> = flagged
                            .iter()
                            .filter(|f| f.line == span.line)
                            .map(|f| (f.start, f.end))
                            .collect();
                        excerpt(text, &masks, &known)
                    });
                    let last = map.len() - 1;
                    let start = map[span.column.saturating_sub(1).min(last)];
                    let end = if span.end_line == span.line {
                        map[span.end_column.saturating_sub(1).min(last)]
                    } else {
                        map[last]
                    };
                    let width = end.saturating_sub(start).clamp(1, 80);
                    let _ = writeln!(out, "{pad} {}", paint(blue, "|"));
                    let _ = writeln!(out, "{} {} {}", paint(blue, &num), paint(blue, "|"), text);
                    let caret = format!("{}{}", " ".repeat(start), "^".repeat(width));
                    let _ = writeln!(
                        out,
                        "{pad} {} {}",
                        paint(blue, "|"),
                        paint(style_for(d.severity), &caret)
                    );
                }
                if let Some(h) = &d.help {
                    let _ = writeln!(
                        out,
                        "{pad} {} {}",
                        paint(blue, "="),
                        format_args!("help: {}", clean(h))
                    );
                }
            }
            None => {
                let _ = writeln!(
                    out,
                    " {} {} ({pointer})",
                    paint(blue, "-->"),
                    escape_control(report.file),
                );
                if let Some(h) = &d.help {
                    let _ = writeln!(out, "  {} help: {}", paint(blue, "="), clean(h));
                }
            }
        }
        out.push('\n');
    }
    let summary = Summary::of(report.diagnostics);
    let _ = writeln!(out, "{}: {}", report.file, summary.line());
    out
}

/// Whether a character must never reach a terminal, a log line or a table raw: control
/// characters (C0 with tab, newline and CR, DEL, C1: they start ANSI/OSC sequences or forge
/// lines), format characters (bidi embeddings, overrides and isolates U+202A–U+202E,
/// U+2066–U+2069, marks U+200E/U+200F and U+061C, zero-width U+200B–U+200D, U+2060–U+2064,
/// U+FEFF: they reorder or hide text) and the line and paragraph separators U+2028, U+2029.
pub fn is_unsafe_char(c: char) -> bool {
    use unicode_general_category::{GeneralCategory as G, get_general_category};
    matches!(
        get_general_category(c),
        G::Control | G::Format | G::LineSeparator | G::ParagraphSeparator
    )
}

/// Strings that others chose (clients, upstreams, config authors, files on disk), made safe
/// to print: every [`is_unsafe_char`] is written as a Rust escape (`\n`, `\t`, `\u{1b}`,
/// `\u{202e}`), so it is shown, never interpreted. The one escaping function: log lines
/// (the log field formatter), tables, excerpts and messages all use it. Idempotent.
pub fn escape_control(s: &str) -> String {
    if !s.chars().any(is_unsafe_char) {
        return s.to_string();
    }
    Escaped(s).to_string()
}

/// [`escape_control`] as a `Display` wrapper, for format arguments and tracing fields
/// (`tracing::warn!(method = %Escaped(m), ...)`) without an allocation.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut rest = self.0;
        while let Some((i, c)) = rest.char_indices().find(|&(_, c)| is_unsafe_char(c)) {
            f.write_str(&rest[..i])?;
            write!(f, "{}", c.escape_default())?;
            rest = &rest[i + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// What a redacted secret is shown as.
pub const REDACTED: &str = "[redacted]";

/// Whether `c` separates tokens when looking for secrets in free text (messages, source
/// lines): everything that cannot be part of a token, quotes and JSON/URL punctuation.
fn is_token_separator(c: char) -> bool {
    c.is_whitespace() || is_unsafe_char(c) || "\"'`=,:;{}[]()<>@?&#!|\\".contains(c)
}

/// Byte ranges of the tokens of `text` that look like secrets (the same test as the
/// FNT100 finding, `looks_like_secret`).
fn secret_tokens(text: &str) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        if is_token_separator(c) {
            if let Some(s) = start.take() {
                let token = text[s..i].trim_end_matches(['.', '/']);
                let secret = |t: &str| crate::config::looks_like_secret(t).is_some();
                if secret(token) || token.split('/').any(secret) {
                    out.push(s..i);
                }
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    out
}

/// Free text with every token that looks like a secret, and every one of `known` (literal
/// values a finding flagged), replaced by [`REDACTED`].
pub fn redact_secrets(text: &str, known: &[String]) -> String {
    let mut s = text.to_string();
    for k in known.iter().filter(|k| k.chars().count() >= MIN_KNOWN) {
        if s.contains(k.as_str()) {
            s = s.replace(k.as_str(), REDACTED);
        }
    }
    let ranges = secret_tokens(&s);
    for r in ranges.into_iter().rev() {
        s.replace_range(r, REDACTED);
    }
    s
}

/// JSON output, stable for scripts.
pub fn render_json(report: &Report) -> String {
    let known = {
        let f = flagged_secrets(report);
        known_secrets(report, &f)
    };
    let findings: Vec<_> = report
        .diagnostics
        .iter()
        .map(|d| {
            let mut loc = json!({ "file": report.file, "pointer": d.pointer });
            if let Some(s) = d.span {
                loc["line"] = s.line.into();
                loc["column"] = s.column.into();
                loc["endLine"] = s.end_line.into();
                loc["endColumn"] = s.end_column.into();
            }
            let mut f = json!({
                "code": d.code,
                "severity": d.severity,
                "message": redact_secrets(&d.message, &known),
                "location": loc,
            });
            if let Some(h) = &d.help {
                f["help"] = redact_secrets(h, &known).into();
            }
            if let Some(c) = Code::by_id(d.code) {
                f["docs"] = c.docs_ref().into();
            }
            f
        })
        .collect();
    let v = json!({
        "version": 1,
        "tool": { "name": "fentaris", "version": env!("CARGO_PKG_VERSION") },
        "summary": Summary::of(report.diagnostics),
        "findings": findings,
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

fn sarif_level(s: Severity) -> &'static str {
    match s {
        Severity::Error | Severity::SecurityWarning => "error",
        Severity::Warning => "warning",
        Severity::Suggestion | Severity::Info => "note",
    }
}

/// SARIF 2.1.0, as GitHub code scanning accepts it.
pub fn render_sarif(report: &Report) -> String {
    let mut used: Vec<Code> = Vec::new();
    for d in report.diagnostics {
        if let Some(c) = Code::by_id(d.code)
            && !used.contains(&c)
        {
            used.push(c);
        }
    }
    let rules: Vec<_> = used
        .iter()
        .map(|c| {
            let mut r = json!({
                "id": c.id,
                "name": c.name,
                "shortDescription": { "text": c.summary },
                "help": { "text": format!("{} See {} in the Fentaris repository.", c.summary, c.docs_ref()) },
                "defaultConfiguration": { "level": sarif_level(c.severity) },
            });
            if c.severity == Severity::SecurityWarning {
                r["properties"] = json!({ "tags": ["security"], "security-severity": "7.0" });
            }
            r
        })
        .collect();
    let known = {
        let f = flagged_secrets(report);
        known_secrets(report, &f)
    };
    let results: Vec<_> = report
        .diagnostics
        .iter()
        .map(|d| {
            let text = match &d.help {
                Some(h) => format!("{} (help: {h})", d.message),
                None => d.message.clone(),
            };
            let text = redact_secrets(&text, &known);
            let mut phys = json!({ "artifactLocation": { "uri": report.file } });
            if let Some(s) = d.span {
                phys["region"] = json!({
                    "startLine": s.line, "startColumn": s.column,
                    "endLine": s.end_line, "endColumn": s.end_column,
                });
            }
            json!({
                "ruleId": d.code,
                "ruleIndex": used.iter().position(|c| c.id == d.code).unwrap_or(0),
                "level": sarif_level(d.severity),
                "message": { "text": text },
                "locations": [{
                    "physicalLocation": phys,
                    "logicalLocations": [{ "fullyQualifiedName": d.pointer, "kind": "member" }],
                }],
                "properties": { "severity": d.severity, "pointer": d.pointer },
            })
        })
        .collect();
    let v = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "fentaris",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "results": results,
        }],
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

fn gh_escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}
fn gh_escape_prop(s: &str) -> String {
    gh_escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// GitHub Actions workflow commands (`::error file=…,line=…,col=…::message`).
pub fn render_github(report: &Report) -> String {
    let known = {
        let f = flagged_secrets(report);
        known_secrets(report, &f)
    };
    let mut out = String::new();
    for d in report.diagnostics {
        let cmd = match d.severity {
            Severity::Error | Severity::SecurityWarning => "error",
            Severity::Warning => "warning",
            Severity::Suggestion | Severity::Info => "notice",
        };
        let mut props = format!("file={}", gh_escape_prop(report.file));
        if let Some(s) = d.span {
            let _ = write!(
                props,
                ",line={},col={},endLine={},endColumn={}",
                s.line, s.column, s.end_line, s.end_column
            );
        }
        let _ = write!(
            props,
            ",title={}",
            gh_escape_prop(&format!("{} {}", d.code, d.severity.as_str()))
        );
        // Workflow logs are shown by terminals and web views: escape what others wrote.
        // (Newlines stay: they are encoded as %0A below, as GitHub documents.)
        let clean = |s: &str| {
            redact_secrets(s, &known)
                .split('\n')
                .map(escape_control)
                .collect::<Vec<_>>()
                .join("\n")
        };
        let msg = match &d.help {
            Some(h) => format!(
                "{} ({})\nhelp: {}",
                clean(&d.message),
                clean(&d.pointer),
                clean(h)
            ),
            None => format!("{} ({})", clean(&d.message), clean(&d.pointer)),
        };
        let _ = writeln!(out, "::{cmd} {props}::{}", gh_escape_data(&msg));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_well_formed() {
        let mut ids: Vec<_> = codes::ALL.iter().map(|c| c.id).collect();
        ids.sort();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n, "duplicate code ids");
        for c in codes::ALL {
            assert!(c.id.starts_with("FNT") && c.id.len() == 6, "{}", c.id);
        }
    }

    #[test]
    fn github_escapes_newlines_and_separators() {
        let d = Diagnostic::new(codes::PARSE, "/a", "bad\nthing: 100%");
        let r = Report {
            file: "a,b:c.json",
            source: "",
            diagnostics: &[d],
        };
        let out = render_github(&r);
        assert_eq!(out.lines().count(), 1);
        assert!(out.contains("file=a%2Cb%3Ac.json"));
        assert!(out.contains("bad%0Athing: 100%25"));
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_control("a\u{1b}[31mb"), "a\\u{1b}[31mb");
        assert_eq!(escape_control("a\nb\rc\td"), "a\\nb\\rc\\td");
        assert_eq!(escape_control("\u{1b}]8;;x\u{7}"), "\\u{1b}]8;;x\\u{7}");
        assert_eq!(escape_control("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(escape_control("plain café ✓"), "plain café ✓");
    }

    #[test]
    fn bidi_zero_width_and_separators_are_escaped() {
        let listed = (0x202A..=0x202E)
            .chain(0x2066..=0x2069)
            .chain(0x200B..=0x200F)
            .chain([0xFEFF, 0x2028, 0x2029, 0x061C, 0x2060]);
        for cp in listed {
            let c = char::from_u32(cp).unwrap();
            assert!(is_unsafe_char(c), "U+{cp:04X}");
            let shown = escape_control(&format!("a{c}b"));
            assert_eq!(shown, format!("a\\u{{{cp:x}}}b"));
        }
    }

    #[test]
    fn escaping_is_idempotent_and_the_wrapper_agrees() {
        let s = "x\u{202e}y\n\u{1b}[2J\u{2028}z";
        let once = escape_control(s);
        assert_eq!(escape_control(&once), once);
        assert_eq!(Escaped(s).to_string(), once);
    }

    proptest::proptest! {
        #[test]
        fn escaped_output_never_holds_an_unsafe_char(s in proptest::prelude::any::<String>(),
            hostile in "[\u{0}-\u{1f}\u{7f}-\u{9f}\u{200b}-\u{200f}\u{2028}\u{2029}\u{202a}-\u{202e}\u{2066}-\u{2069}\u{feff}a]{0,40}") {
            for input in [s.as_str(), hostile.as_str()] {
                let out = escape_control(input);
                proptest::prop_assert!(!out.chars().any(is_unsafe_char), "{out:?}");
                proptest::prop_assert!(!out.chars().any(|c| c.is_control()));
                proptest::prop_assert_eq!(out.lines().count(), 1.min(out.len()));
                // Safe text is shown as it is.
                if !input.chars().any(is_unsafe_char) {
                    proptest::prop_assert_eq!(&out, input);
                }
            }
        }
    }

    const KEY: &str = "ghp_abcdefghijklmnopqrstuvwxyz0123456789";

    fn report_of(source: &str) -> Vec<Diagnostic> {
        crate::config::check_source(source).diagnostics
    }

    #[test]
    fn secret_literals_are_redacted_in_every_format() {
        let source = format!(
            "{{\"servers\": [{{\"name\": \"gh\", \"transport\": {{\"streamableHttp\": {{\"url\": \"https://gh.example/mcp\"}}}}, \"headers\": {{\"x-token\": \"{KEY}\", \"Authorization\": \"Bearer hunter2-pass\"}}}}]}}"
        );
        let diags = report_of(&source);
        assert!(
            diags.iter().filter(|d| d.code == "FNT100").count() == 2,
            "{diags:?}"
        );
        let r = Report {
            file: "c.json",
            source: &source,
            diagnostics: &diags,
        };
        for out in [
            render_human(&r, false),
            render_human(&r, true),
            render_json(&r),
            render_sarif(&r),
            render_github(&r),
        ] {
            assert!(!out.contains(KEY), "{out}");
            assert!(!out.contains("hunter2"), "{out}");
            assert!(!out.contains("abcdefghijklmnop"), "{out}");
        }
        let human = render_human(&r, false);
        assert!(human.contains(REDACTED), "{human}");
    }

    #[test]
    fn carets_point_at_the_redacted_value() {
        let source = format!(
            "{{\"servers\": [{{\"name\": \"gh\", \"transport\": {{\"streamableHttp\": {{\"url\": \"https://gh.example/mcp\"}}}}, \"headers\": {{\"x-token\": \"{KEY}\", \"Bad Name\": \"v\"}}}}]}}"
        );
        let diags = report_of(&source);
        let r = Report {
            file: "c.json",
            source: &source,
            diagnostics: &diags,
        };
        let human = render_human(&r, false);
        let lines: Vec<&str> = human.lines().collect();
        // Each excerpt line is followed by its caret line: the carets sit under the value.
        let mut seen = 0;
        for (i, l) in lines.iter().enumerate() {
            if l.starts_with("1 | ") {
                seen += 1;
                let caret = lines[i + 1];
                let at = caret.find('^').unwrap();
                let len = caret.matches('^').count();
                let shown: String = l.chars().skip(at).take(len).collect();
                assert!(
                    shown == format!("\"{REDACTED}\"") || shown == "\"v\"",
                    "{shown:?} in\n{human}"
                );
            }
        }
        assert_eq!(seen, 2, "{human}");
        assert!(!human.contains(KEY));
    }

    #[test]
    fn excerpts_escape_and_keep_carets_aligned() {
        let (text, map) = excerpt("\t\"a\u{1b}b\": 1", &[], &[]);
        assert_eq!(text, "    \"a\\u{1b}b\": 1");
        assert_eq!(map[1], 4);
        assert_eq!(map[8], text.chars().count() - 1);
        assert_eq!(map[9], text.chars().count());
    }

    #[test]
    fn free_text_redaction() {
        assert_eq!(
            redact_secrets(
                &format!("invalid type: string \"{KEY}\", expected a map"),
                &[]
            ),
            format!("invalid type: string \"{REDACTED}\", expected a map")
        );
        assert_eq!(
            redact_secrets(&format!("`https://u:{KEY}@host/x` is bad"), &[]),
            format!("`https://u:{REDACTED}@host/x` is bad")
        );
        assert_eq!(
            redact_secrets(
                "header Bearer hunter2-pass here",
                &["Bearer hunter2-pass".into()]
            ),
            format!("header {REDACTED} here")
        );
        assert_eq!(
            redact_secrets("/srv/shared --port=8080", &[]),
            "/srv/shared --port=8080"
        );
    }
}
