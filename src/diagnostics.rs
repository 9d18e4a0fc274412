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
    DUPLICATE_RULE = "FNT300", Suggestion, "DuplicateRule", "A rule repeats an earlier rule of the same policy.";
    VAULT_UNVERIFIED = "FNT090", Info, "VaultUnverified", "The vault's integrity was not verified: no vault key is available here (as in CI).";
    PER_SESSION_CONNECTIONS = "FNT093", Info, "PerSessionConnections", "A stdio server that some policy may let reach a client (sampling, elicitation, roots, log lines) gets one connection per session, so what it sends during a call reaches only the client that caused it.";
    AUDIT_HASH_CHAIN = "FNT092", Info, "AuditPlainHashChain", "Audit lines are chained with plain SHA-256 because there is no vault: edits are detected only if whoever edits does not recompute the chain.";
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

/// Human output: each finding with the source line and a caret, then a summary line.
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
    let lines: Vec<&str> = report.source.lines().collect();
    let mut out = String::new();
    for d in report.diagnostics {
        let head = format!("{}[{}]", d.severity.as_str(), d.code);
        let _ = writeln!(
            out,
            "{}: {}",
            paint(style_for(d.severity), &head),
            // Messages can quote config text: never let it drive the terminal.
            paint(bold, &escape_control(&d.message))
        );
        match d.span {
            Some(span) => {
                let num = span.line.to_string();
                let pad = " ".repeat(num.len());
                let _ = writeln!(
                    out,
                    "{pad}{} {}:{}:{} ({})",
                    paint(blue, "-->"),
                    report.file,
                    span.line,
                    span.column,
                    if d.pointer.is_empty() {
                        "/"
                    } else {
                        &d.pointer
                    }
                );
                if let Some(text) = lines.get(span.line.saturating_sub(1)) {
                    let text = escape_control(text);
                    let _ = writeln!(out, "{pad} {}", paint(blue, "|"));
                    let _ = writeln!(out, "{} {} {}", paint(blue, &num), paint(blue, "|"), text);
                    let width = if span.end_line == span.line {
                        span.end_column.saturating_sub(span.column).max(1)
                    } else {
                        text.chars().count().saturating_sub(span.column - 1).max(1)
                    }
                    .min(80);
                    let caret = format!("{}{}", " ".repeat(span.column - 1), "^".repeat(width));
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
                        format_args!("help: {}", escape_control(h))
                    );
                }
            }
            None => {
                let _ = writeln!(
                    out,
                    " {} {} ({})",
                    paint(blue, "-->"),
                    report.file,
                    if d.pointer.is_empty() {
                        "/"
                    } else {
                        &d.pointer
                    }
                );
                if let Some(h) = &d.help {
                    let _ = writeln!(out, "  {} help: {}", paint(blue, "="), escape_control(h));
                }
            }
        }
        out.push('\n');
    }
    let summary = Summary::of(report.diagnostics);
    let _ = writeln!(out, "{}: {}", report.file, summary.line());
    out
}

/// Control characters in logged or echoed strings are shown escaped, never interpreted.
pub fn escape_control(s: &str) -> String {
    if !s.chars().any(|c| c.is_control() && c != '\t') {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// JSON output, stable for scripts.
pub fn render_json(report: &Report) -> String {
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
                "message": d.message,
                "location": loc,
            });
            if let Some(h) = &d.help {
                f["help"] = h.clone().into();
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
    let results: Vec<_> = report
        .diagnostics
        .iter()
        .map(|d| {
            let text = match &d.help {
                Some(h) => format!("{} (help: {h})", d.message),
                None => d.message.clone(),
            };
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
        let msg = match &d.help {
            Some(h) => format!("{} ({})\nhelp: {h}", d.message, d.pointer),
            None => format!("{} ({})", d.message, d.pointer),
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
    }
}
