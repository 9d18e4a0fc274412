//! The audit record schema (see docs/audit.md), the per-request slot that policy and the
//! upstream call fill in, and the redaction helpers: argument *shapes* (never values) and
//! URIs without userinfo, query or fragment.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::{Map, Value, json};

/// The subject of a record.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubjectRef {
    pub id: String,
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The API key id (`key_…`), `config:<source>` or `trusted-header`; never the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

impl SubjectRef {
    pub fn of(subject: &crate::policy::Subject, key_id: Option<String>) -> SubjectRef {
        SubjectRef {
            id: subject.id.clone(),
            groups: subject.groups.clone(),
            tenant: subject.tenant.clone(),
            key_id,
        }
    }
}

/// The client of a record: what it said it is (untrusted) and where it connected from.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientRef {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

impl ClientRef {
    fn is_empty(&self) -> bool {
        self.name.is_none() && self.version.is_none() && self.address.is_none()
    }
}

/// The rule that decided.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleRef {
    pub policy: String,
    pub index: usize,
    pub pointer: String,
}

/// One audit line (before `seq` and `chain` are added by the writer).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    /// `request`, `auth.failed`, `session.open`, `session.close`, `upstream.start`,
    /// `upstream.exit`, `serve.start`, `serve.stop`, `log` (middleware), `file.start`.
    pub event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<SubjectRef>,
    #[serde(skip_serializing_if = "ClientRef::is_empty")]
    pub client: ClientRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<RuleRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<&'static str>,
    /// The JSON-RPC error code the client got (never the upstream's message: it may echo
    /// argument values).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_ms: Option<f64>,
    /// Keys, types and sizes of the arguments; never their values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
    /// Event-specific fields (no secrets, no payloads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

impl Record {
    /// A record of `event`, stamped now.
    pub fn new(event: &'static str) -> Record {
        Record {
            time: now_rfc3339(),
            event,
            ..Record::default()
        }
    }
    pub fn detail(mut self, detail: Value) -> Record {
        self.detail = Some(detail);
        self
    }
    pub fn server(mut self, server: &str) -> Record {
        self.server = Some(server.to_string());
        self
    }
}

impl Record {
    /// The record as one JSON object, without `seq` (the writer inserts it after `time`
    /// when it seals the line into the chain). Serialised by the caller, so the sink thread
    /// receives one contiguous text instead of a structure of many small allocations.
    #[inline(never)]
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            // Records are plain data; this cannot happen, but never lose the fact.
            format!(
                r#"{{"time":{},"event":"audit.error","reason":{}}}"#,
                json!(self.time),
                json!(e.to_string())
            )
        })
    }
}

/// Now as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// What one request contributes to its record while it runs: the policy decision, the
/// upstream time, an outcome finer than the client's error, and middleware tags.
#[derive(Debug, Default, Clone)]
pub struct Slot {
    pub request_id: Option<String>,
    pub server: Option<String>,
    pub operation: Option<String>,
    pub target: Option<String>,
    pub decision: Option<&'static str>,
    pub rule: Option<RuleRef>,
    pub reason: Option<String>,
    pub outcome: Option<&'static str>,
    pub upstream: Option<Duration>,
    pub tags: BTreeMap<String, String>,
}

impl Slot {
    /// Fill `record` from this slot.
    pub fn apply(self, record: &mut Record) {
        record.server = self.server.or(record.server.take());
        record.operation = self.operation;
        record.target = self.target;
        record.decision = self.decision;
        record.rule = self.rule;
        record.reason = self.reason;
        if self.outcome.is_some() {
            record.outcome = self.outcome;
        }
        record.upstream_ms = self.upstream.map(ms);
        record.tags.extend(self.tags);
    }
}

/// Set the latency fields of a request record.
pub fn set_latency(record: &mut Record, took: Duration) {
    record.latency_ms = Some(ms(took));
}

tokio::task_local! {
    static CURRENT: Arc<Mutex<Slot>>;
}

/// A fresh slot for request `request_id`.
pub fn new_slot(request_id: Option<String>) -> Arc<Mutex<Slot>> {
    Arc::new(Mutex::new(Slot {
        request_id,
        ..Slot::default()
    }))
}

/// Run `fut` with `slot` as the running request's slot.
pub async fn in_slot<F: std::future::Future>(slot: Arc<Mutex<Slot>>, fut: F) -> F::Output {
    CURRENT.scope(slot, fut).await
}

/// What a slot holds now (leaves it empty).
pub fn take_slot(slot: &Mutex<Slot>) -> Slot {
    std::mem::take(&mut *slot.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Run `fut` with a fresh slot for request `request_id`; returns its output and the slot.
pub async fn with_slot<F: std::future::Future>(
    request_id: Option<String>,
    fut: F,
) -> (F::Output, Slot) {
    let slot = new_slot(request_id);
    let out = in_slot(slot.clone(), fut).await;
    (out, take_slot(&slot))
}

/// Update the slot of the request running on this task (no-op outside a request).
pub fn note(f: impl FnOnce(&mut Slot)) {
    let _ = CURRENT.try_with(|s| f(&mut s.lock().unwrap_or_else(|e| e.into_inner())));
}

/// The id of the request running on this task, if any.
pub fn current_request_id() -> Option<String> {
    CURRENT
        .try_with(|s| {
            s.lock()
                .unwrap_or_else(|e| e.into_inner())
                .request_id
                .clone()
        })
        .ok()
        .flatten()
}

/// The shape of a JSON value: types and sizes, never values. Objects list their keys (to
/// depth 3); strings give their length in characters; arrays their length.
pub fn args_shape(v: &Value) -> Value {
    shape(v, 0)
}

fn shape(v: &Value, depth: usize) -> Value {
    match v {
        Value::Null => json!("null"),
        Value::Bool(_) => json!("boolean"),
        Value::Number(_) => json!("number"),
        Value::String(s) => json!({ "type": "string", "len": s.chars().count() }),
        Value::Array(a) => json!({ "type": "array", "len": a.len() }),
        Value::Object(o) if depth >= 3 => json!({ "type": "object", "len": o.len() }),
        Value::Object(o) => {
            let keys: Map<String, Value> = o
                .iter()
                .take(64)
                .map(|(k, v)| (k.chars().take(128).collect(), shape(v, depth + 1)))
                .collect();
            if depth == 0 {
                Value::Object(keys)
            } else {
                json!({ "type": "object", "keys": keys })
            }
        }
    }
}

/// A URI without userinfo, query or fragment (they may carry tokens).
pub fn redact_uri(uri: &str) -> String {
    let cut = uri.find(['?', '#']).unwrap_or(uri.len());
    let uri = &uri[..cut];
    match uri.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_never_contain_values() {
        let v = json!({ "token": "canary-123", "n": 42, "deep": { "a": ["x"], "b": { "c": { "d": "canary" } } } });
        let s = args_shape(&v).to_string();
        assert!(!s.contains("canary"), "{s}");
        assert!(!s.contains("42"), "{s}");
        assert!(s.contains("\"token\""), "{s}");
        assert_eq!(
            args_shape(&json!("x")),
            json!({ "type": "string", "len": 1 })
        );
    }

    #[test]
    fn uris_lose_userinfo_query_and_fragment() {
        assert_eq!(
            redact_uri("https://user:pw@host.example/a/b?token=s#frag"),
            "https://host.example/a/b"
        );
        assert_eq!(redact_uri("file:///etc/x?y"), "file:///etc/x");
        assert_eq!(redact_uri("note://a#b"), "note://a");
    }

    #[test]
    fn records_serialise_compactly() {
        let mut r = Record::new("request");
        r.decision = Some("deny");
        let s = serde_json::to_string(&r).unwrap();
        assert!(s.starts_with("{\"time\":"), "{s}");
        assert!(!s.contains("client"), "{s}");
        assert!(s.ends_with('}'));
    }
}
