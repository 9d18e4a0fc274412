//! Reading audit files back: the rotated set in order, records parsed, filters.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::writer::rotated;

/// The files of an audit set, oldest first: `audit.jsonl.N` … `audit.jsonl.1`, `audit.jsonl`.
pub fn file_set(path: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = (1..10_000)
        .map(|i| rotated(path, i))
        .take_while(|p| p.exists())
        .collect();
    out.reverse();
    if path.exists() {
        out.push(path.to_path_buf());
    }
    out
}

/// The lines of a file (without newlines); a last line without a newline is kept.
pub fn lines(path: &Path) -> std::io::Result<Vec<String>> {
    let text = std::fs::read(path)?;
    let text = String::from_utf8_lossy(&text);
    Ok(text.lines().map(str::to_string).collect())
}

/// The whole lines of a file that may be being written: a last line without its newline
/// (a write in progress) is left out.
pub fn whole_lines(path: &Path) -> std::io::Result<Vec<String>> {
    let text = std::fs::read(path)?;
    let end = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let text = String::from_utf8_lossy(&text[..end]);
    Ok(text.lines().map(str::to_string).collect())
}

/// Parse a line into its record (chain member included).
pub fn parse(line: &str) -> Option<Value> {
    serde_json::from_str(line).ok().filter(Value::is_object)
}

/// Which records `logs tail` and `logs summary` show. Pure: easy to test.
#[derive(Debug, Default)]
pub struct Filter {
    pub since: Option<std::time::SystemTime>,
    pub decision: Option<String>,
    pub user: Option<String>,
    pub server: Option<String>,
    /// A glob over tool names (`tools/call` records only).
    pub tool: Option<globset::GlobMatcher>,
    pub tenant: Option<String>,
    pub tags: Vec<(String, String)>,
    pub event: Option<String>,
}

fn str_at<'v>(v: &'v Value, pointer: &str) -> Option<&'v str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// The time of a record.
pub fn time_of(v: &Value) -> Option<std::time::SystemTime> {
    humantime::parse_rfc3339_weak(str_at(v, "/time")?).ok()
}

impl Filter {
    pub fn matches(&self, v: &Value) -> bool {
        let eq = |want: &Option<String>, pointer: &str| {
            want.as_deref()
                .is_none_or(|w| str_at(v, pointer) == Some(w))
        };
        if let Some(since) = self.since
            && time_of(v).is_none_or(|t| t < since)
        {
            return false;
        }
        if let Some(tool) = &self.tool
            && !(str_at(v, "/method") == Some("tools/call")
                && str_at(v, "/target").is_some_and(|t| tool.is_match(t)))
        {
            return false;
        }
        eq(&self.decision, "/decision")
            && eq(&self.user, "/subject/id")
            && eq(&self.server, "/server")
            && eq(&self.tenant, "/subject/tenant")
            && eq(&self.event, "/event")
            && self.tags.iter().all(|(k, val)| {
                v.get("tags").and_then(|t| t.get(k)).and_then(Value::as_str) == Some(val)
            })
    }
}

/// Denials counted by (subject, server, target), with totals: `logs summary`.
#[derive(Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub requests: u64,
    pub allowed: u64,
    pub denied: u64,
    pub auth_failures: u64,
    pub denials: Vec<DenialCount>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DenialCount {
    pub subject: String,
    pub server: String,
    pub target: String,
    pub count: u64,
    pub last: String,
}

pub fn summarize<'a>(records: impl Iterator<Item = &'a Value>) -> Summary {
    let mut s = Summary::default();
    let mut by: std::collections::BTreeMap<(String, String, String), (u64, String)> =
        Default::default();
    for r in records {
        match str_at(r, "/event") {
            Some("request") => {
                s.requests += 1;
                if str_at(r, "/decision") == Some("deny") {
                    s.denied += 1;
                    let key = (
                        str_at(r, "/subject/id").unwrap_or("-").to_string(),
                        str_at(r, "/server").unwrap_or("-").to_string(),
                        str_at(r, "/target")
                            .or(str_at(r, "/method"))
                            .unwrap_or("-")
                            .to_string(),
                    );
                    let e = by.entry(key).or_default();
                    e.0 += 1;
                    e.1 = str_at(r, "/time").unwrap_or("").to_string();
                } else if str_at(r, "/decision") == Some("allow") {
                    s.allowed += 1;
                }
            }
            Some("auth.failed") => s.auth_failures += 1,
            _ => {}
        }
    }
    s.denials = by
        .into_iter()
        .map(|((subject, server, target), (count, last))| DenialCount {
            subject,
            server,
            target,
            count,
            last,
        })
        .collect();
    s.denials.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.subject.cmp(&b.subject))
    });
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_combine() {
        let r = json!({ "time": "2026-11-26T10:00:00.000Z", "event": "request", "decision": "deny",
            "subject": { "id": "alice", "tenant": "acme" }, "server": "github", "method": "tools/call",
            "target": "create_issue", "tags": { "env": "prod" } });
        assert!(Filter::default().matches(&r));
        let f = Filter {
            decision: Some("deny".into()),
            user: Some("alice".into()),
            tool: Some(globset::Glob::new("create_*").unwrap().compile_matcher()),
            tags: vec![("env".into(), "prod".into())],
            tenant: Some("acme".into()),
            ..Filter::default()
        };
        assert!(f.matches(&r));
        let later = humantime::parse_rfc3339_weak("2026-11-26T11:00:00Z").unwrap();
        assert!(
            !Filter {
                since: Some(later),
                ..Filter::default()
            }
            .matches(&r)
        );
        assert!(
            !Filter {
                decision: Some("allow".into()),
                ..Filter::default()
            }
            .matches(&r)
        );
        assert!(
            !Filter {
                tags: vec![("env".into(), "dev".into())],
                ..Filter::default()
            }
            .matches(&r)
        );
    }

    #[test]
    fn a_write_in_progress_is_left_out() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a");
        std::fs::write(&p, "one\ntwo\nthr").unwrap();
        assert_eq!(whole_lines(&p).unwrap(), ["one", "two"]);
        assert_eq!(lines(&p).unwrap(), ["one", "two", "thr"]);
        std::fs::write(&p, "one\n").unwrap();
        assert_eq!(whole_lines(&p).unwrap(), ["one"]);
        std::fs::write(&p, "on").unwrap();
        assert!(whole_lines(&p).unwrap().is_empty());
    }

    #[test]
    fn summary_counts_denials() {
        let d = json!({ "event": "request", "decision": "deny", "subject": { "id": "a" }, "server": "s", "target": "t", "time": "x" });
        let a = json!({ "event": "request", "decision": "allow" });
        let s = summarize([&d, &d, &a].into_iter());
        assert_eq!((s.requests, s.allowed, s.denied), (3, 1, 2));
        assert_eq!(s.denials[0].count, 2);
    }
}
