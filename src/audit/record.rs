//! The audit record schema (see docs/audit.md), the per-request slot that policy and the
//! upstream call fill in, and the redaction helpers: argument *shapes* (never values) and
//! URIs without userinfo, query or fragment.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::{Map, Value, json};

/// The subject of a record: the policy's subject (shared by every request of its user
/// under one config) and the key id, so a record names its subject without copying text.
/// Written as `{"id", "groups", "tenant"?, "keyId"?}`.
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectRef {
    pub subject: Arc<crate::policy::Subject>,
    /// The API key id (`key_…`), `config:<source>` or `trusted-header`; never the key.
    pub key_id: Option<Arc<str>>,
}

impl SubjectRef {
    pub fn of(subject: &Arc<crate::policy::Subject>, key_id: Option<Arc<str>>) -> SubjectRef {
        SubjectRef {
            subject: subject.clone(),
            key_id,
        }
    }
}

impl Serialize for SubjectRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let sub = &self.subject;
        let n = 2 + usize::from(sub.tenant.is_some()) + usize::from(self.key_id.is_some());
        let mut st = s.serialize_struct("SubjectRef", n)?;
        st.serialize_field("id", &sub.id)?;
        st.serialize_field("groups", &sub.groups)?;
        if let Some(t) = &sub.tenant {
            st.serialize_field("tenant", t)?;
        }
        if let Some(k) = &self.key_id {
            st.serialize_field("keyId", k)?;
        }
        st.end()
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
    fn is_none_or_empty(c: &Option<Arc<ClientRef>>) -> bool {
        c.as_ref().is_none_or(|c| c.is_empty())
    }
}

/// The rule that decided (shared with the policy engine's rule table: a request copies
/// no text to name it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleRef {
    pub policy: Arc<str>,
    pub index: usize,
    pub pointer: Arc<str>,
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
    pub request_id: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<SubjectRef>,
    /// Shared by a session's records.
    #[serde(skip_serializing_if = "ClientRef::is_none_or_empty")]
    pub client: Option<Arc<ClientRef>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<RuleRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Arc<str>>,
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
    /// Keys, types and sizes of the arguments; never their values: the serialised JSON
    /// object [`args_shape_json`] wrote (written into the line as it is).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "raw_json")]
    pub args: Option<String>,
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

/// `args` through the derived `Serialize` (the reference the tests hold [`Record::to_json`]
/// to): the text is already JSON.
fn raw_json<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(text) => serde_json::value::RawValue::from_string(text.clone())
            .map_err(serde::ser::Error::custom)?
            .serialize(s),
        None => s.serialize_none(),
    }
}

impl Record {
    /// The record as one JSON object, without `seq` (the audit writer adds it, after
    /// `time`, as it writes the record into its buffer: [`Record::write_line`]).
    pub fn to_json(&self) -> String {
        self.to_json_tagged(&BTreeMap::new())
    }

    /// [`Record::to_json`] with `extra` tags merged in (the record's own tags win): the
    /// line `audit.tags` adds to, without copying them into the record.
    pub fn to_json_tagged(&self, extra: &BTreeMap<String, String>) -> String {
        let mut o = String::with_capacity(self.size_hint());
        self.write_line(&mut o, None, extra);
        o
    }

    /// About how long the record's line is (for sizing a buffer once).
    fn size_hint(&self) -> usize {
        // A request line without its variable parts is about 400 bytes.
        512 + self.args.as_ref().map_or(0, String::len)
            + self.reason.as_ref().map_or(0, |r| r.len())
            + self.target.as_ref().map_or(0, String::len)
    }

    /// The record's JSON object appended to `o`, with `"seq":N` right after `time` when
    /// `seq` is given: how the audit writer puts a record into its write buffer, with no
    /// text of its own in between.
    ///
    /// Written by hand, byte for byte what `serde_json` writes for the derived `Serialize`
    /// (same members, order, escaping and number forms: the tests pin it), at a fraction
    /// of the cost of going through `serde`.
    #[inline(never)]
    pub fn write_line(&self, o: &mut String, seq: Option<u64>, extra: &BTreeMap<String, String>) {
        let start = o.len();
        o.reserve(self.size_hint());
        if let Err(e) = self.write_json(o, seq, extra) {
            // Records are plain data; this cannot happen, but never lose the fact.
            o.truncate(start);
            o.push_str("{\"time\":");
            jsonw::str(o, &self.time);
            if let Some(n) = seq {
                o.push_str(",\"seq\":");
                jsonw::int(o, n);
            }
            o.push_str(",\"event\":\"audit.error\",\"reason\":");
            jsonw::str(o, &e.to_string());
            o.push('}');
        }
    }

    fn write_json(
        &self,
        o: &mut String,
        seq: Option<u64>,
        extra: &BTreeMap<String, String>,
    ) -> Result<(), serde_json::Error> {
        use jsonw::{f64 as num_f, int, str as s_};
        o.push_str("{\"time\":");
        s_(o, &self.time);
        if let Some(n) = seq {
            o.push_str(",\"seq\":");
            int(o, n);
        }
        o.push_str(",\"event\":");
        s_(o, self.event);
        let opt = |o: &mut String, key: &str, v: Option<&str>| {
            if let Some(v) = v {
                o.push_str(key);
                s_(o, v);
            }
        };
        opt(o, ",\"requestId\":", self.request_id.as_deref());
        opt(o, ",\"session\":", self.session.as_deref());
        if let Some(SubjectRef {
            subject: sub,
            key_id,
        }) = &self.subject
        {
            o.push_str(",\"subject\":{\"id\":");
            s_(o, &sub.id);
            o.push_str(",\"groups\":[");
            for (i, g) in sub.groups.iter().enumerate() {
                if i > 0 {
                    o.push(',');
                }
                s_(o, g);
            }
            o.push(']');
            opt(o, ",\"tenant\":", sub.tenant.as_deref());
            opt(o, ",\"keyId\":", key_id.as_deref());
            o.push('}');
        }
        if let Some(client) = self.client.as_deref().filter(|c| !c.is_empty()) {
            o.push_str(",\"client\":{");
            let mut first = true;
            for (key, v) in [
                ("\"name\":", &client.name),
                ("\"version\":", &client.version),
                ("\"address\":", &client.address),
            ] {
                if let Some(v) = v {
                    if !first {
                        o.push(',');
                    }
                    first = false;
                    o.push_str(key);
                    s_(o, v);
                }
            }
            o.push('}');
        }
        opt(o, ",\"server\":", self.server.as_deref());
        opt(o, ",\"method\":", self.method.as_deref());
        opt(o, ",\"operation\":", self.operation.as_deref());
        opt(o, ",\"target\":", self.target.as_deref());
        opt(o, ",\"decision\":", self.decision);
        if let Some(r) = &self.rule {
            o.push_str(",\"rule\":{\"policy\":");
            s_(o, &r.policy);
            o.push_str(",\"index\":");
            int(o, r.index);
            o.push_str(",\"pointer\":");
            s_(o, &r.pointer);
            o.push('}');
        }
        opt(o, ",\"reason\":", self.reason.as_deref());
        opt(o, ",\"outcome\":", self.outcome);
        if let Some(c) = self.error_code {
            o.push_str(",\"errorCode\":");
            int(o, c);
        }
        if let Some(v) = self.latency_ms {
            o.push_str(",\"latencyMs\":");
            num_f(o, v);
        }
        if let Some(v) = self.upstream_ms {
            o.push_str(",\"upstreamMs\":");
            num_f(o, v);
        }
        if let Some(a) = &self.args {
            o.push_str(",\"args\":");
            // Written by `args_shape_json`: JSON already (checked where it is not ours).
            o.push_str(a);
        }
        if let Some(d) = &self.detail {
            o.push_str(",\"detail\":");
            o.push_str(&serde_json::to_string(d)?);
        }
        if !self.tags.is_empty() || !extra.is_empty() {
            o.push_str(",\"tags\":{");
            let (mut a, mut b) = (self.tags.iter().peekable(), extra.iter().peekable());
            let mut first = true;
            loop {
                // A merge of two sorted maps; on equal keys the record's own tag wins.
                let next = match (a.peek(), b.peek()) {
                    (Some((ka, _)), Some((kb, _))) => match ka.cmp(kb) {
                        std::cmp::Ordering::Less => a.next(),
                        std::cmp::Ordering::Greater => b.next(),
                        std::cmp::Ordering::Equal => {
                            b.next();
                            a.next()
                        }
                    },
                    (Some(_), None) => a.next(),
                    (None, _) => b.next(),
                };
                let Some((k, v)) = next else { break };
                if !first {
                    o.push(',');
                }
                first = false;
                s_(o, k);
                o.push(':');
                s_(o, v);
            }
            o.push('}');
        }
        o.push('}');
        Ok(())
    }
}

/// The pieces of JSON text records are written with: what `serde_json`'s compact
/// serialiser writes for the same values.
mod jsonw {
    /// A JSON string: `"` and `\` escaped, control characters as `\b \t \n \f \r` or
    /// `\u00xx` (lowercase), everything else (DEL, non-ASCII) as it is.
    pub fn str(o: &mut String, s: &str) {
        o.reserve(s.len() + 2);
        o.push('"');
        let clean = plain_prefix(s.as_bytes());
        // `clean` is the length of the string or the index of an ASCII byte: a boundary.
        o.push_str(&s[..clean]);
        if clean < s.len() {
            escape(o, s, clean);
        }
        o.push('"');
    }

    /// How many leading bytes need no escaping: eight at a time, then one at a time.
    fn plain_prefix(bytes: &[u8]) -> usize {
        const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
        const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
        // Whether any byte of `w` is zero (exact for the question "any").
        let zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH != 0;
        let (chunks, _) = bytes.as_chunks::<8>();
        let mut at = 0;
        for c in chunks {
            let w = u64::from_ne_bytes(*c);
            // A byte below 0x20 (exact for "any" as 0x20 <= 0x80), a `"` or a `\`.
            let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH != 0;
            if control || zero(w ^ (ONES * u64::from(b'"'))) || zero(w ^ (ONES * u64::from(b'\\')))
            {
                break;
            }
            at += 8;
        }
        at + bytes[at..]
            .iter()
            .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
            .unwrap_or(bytes.len() - at)
    }

    /// The rest of `s` from `start` (a byte that needs escaping), escaped.
    fn escape(o: &mut String, s: &str, mut start: usize) {
        let bytes = s.as_bytes();
        for (i, &b) in bytes.iter().enumerate().skip(start) {
            if b >= 0x20 && b != b'"' && b != b'\\' {
                continue;
            }
            // `i` is at an ASCII byte, so both slices fall on character boundaries.
            o.push_str(&s[start..i]);
            start = i + 1;
            match b {
                b'"' => o.push_str("\\\""),
                b'\\' => o.push_str("\\\\"),
                0x08 => o.push_str("\\b"),
                0x09 => o.push_str("\\t"),
                0x0a => o.push_str("\\n"),
                0x0c => o.push_str("\\f"),
                0x0d => o.push_str("\\r"),
                _ => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    o.push_str("\\u00");
                    o.push(char::from(HEX[usize::from(b >> 4)]));
                    o.push(char::from(HEX[usize::from(b & 0xf)]));
                }
            }
        }
        o.push_str(&s[start..]);
    }

    /// An integer.
    pub fn int<I: itoa::Integer>(o: &mut String, n: I) {
        o.push_str(itoa::Buffer::new().format(n));
    }

    /// A float: `null` when not finite, else what `serde_json`'s own formatter writes (its
    /// float printer is an implementation detail: `zmij` now, `ryu` before).
    pub fn f64(o: &mut String, v: f64) {
        use serde_json::ser::Formatter as _;
        if !v.is_finite() {
            o.push_str("null");
            return;
        }
        let mut buf = [0u8; 40];
        let mut w = &mut buf[..];
        let written = serde_json::ser::CompactFormatter
            .write_f64(&mut w, v)
            .map(|()| 40 - w.len());
        match written
            .ok()
            .and_then(|n| std::str::from_utf8(&buf[..n]).ok())
        {
            Some(text) => o.push_str(text),
            // Longer than any float is written (24 bytes): never, but stay exact.
            None => o.push_str(&serde_json::to_string(&v).unwrap_or_else(|_| "null".into())),
        }
    }
}

/// Now as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    rfc3339_millis(SystemTime::now())
}

/// `t` as RFC 3339 UTC with milliseconds, what `humantime::format_rfc3339_millis` writes:
/// the part up to the second is formatted once per second and thread, then copied.
fn rfc3339_millis(t: SystemTime) -> String {
    use std::cell::RefCell;
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }
    let Ok(since) = t.duration_since(SystemTime::UNIX_EPOCH) else {
        return humantime::format_rfc3339_millis(t).to_string();
    };
    let secs = since.as_secs();
    let millis = since.subsec_millis();
    SECOND.with_borrow_mut(|(second, prefix)| {
        if *second != secs || prefix.is_empty() {
            let whole = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
            *prefix = humantime::format_rfc3339_seconds(whole).to_string();
            // `…:SSZ`: the milliseconds go before the zone.
            prefix.pop();
            *second = secs;
        }
        let mut out = String::with_capacity(prefix.len() + 5);
        out.push_str(prefix);
        out.push('.');
        for d in [millis / 100, millis / 10 % 10, millis % 10] {
            out.push(char::from(b'0' + (d as u8)));
        }
        out.push('Z');
        out
    })
}

/// A fresh request id: 16 lowercase hex digits of a random `u64`.
pub fn new_request_id() -> Arc<str> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = rand::random::<u64>();
    let mut id = [0u8; 16];
    for (i, d) in id.iter_mut().enumerate() {
        *d = HEX[((n >> ((15 - i) * 4)) & 0xf) as usize];
    }
    Arc::from(std::str::from_utf8(&id).unwrap_or_default())
}

/// `s` cut to its first `max` characters (client-chosen text in a record stays bounded).
pub fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        // At most `max` bytes: at most `max` characters.
        s.to_owned()
    } else {
        s.chars().take(max).collect()
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// What one request contributes to its record while it runs: the policy decision, the
/// upstream time, an outcome finer than the client's error, and middleware tags.
#[derive(Debug, Default, Clone)]
pub struct Slot {
    pub request_id: Option<Arc<str>>,
    pub server: Option<String>,
    pub operation: Option<Cow<'static, str>>,
    pub target: Option<String>,
    pub decision: Option<&'static str>,
    pub rule: Option<RuleRef>,
    pub reason: Option<Arc<str>>,
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
pub fn new_slot(request_id: Option<Arc<str>>) -> Arc<Mutex<Slot>> {
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
    request_id: Option<Arc<str>>,
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
pub fn current_request_id() -> Option<Arc<str>> {
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

/// [`args_shape`] as JSON text, written directly (no `Value` tree on the request path).
pub fn args_shape_json(v: &Value) -> String {
    let mut o = String::with_capacity(64);
    write_shape(&mut o, v, 0);
    o
}

fn write_shape(o: &mut String, v: &Value, depth: usize) {
    match v {
        Value::Null => o.push_str("\"null\""),
        Value::Bool(_) => o.push_str("\"boolean\""),
        Value::Number(_) => o.push_str("\"number\""),
        Value::String(s) => {
            o.push_str("{\"type\":\"string\",\"len\":");
            jsonw::int(o, s.chars().count());
            o.push('}');
        }
        Value::Array(a) => {
            o.push_str("{\"type\":\"array\",\"len\":");
            jsonw::int(o, a.len());
            o.push('}');
        }
        Value::Object(m) if depth >= 3 => {
            o.push_str("{\"type\":\"object\",\"len\":");
            jsonw::int(o, m.len());
            o.push('}');
        }
        Value::Object(m) => {
            // Keys longer than 128 characters are cut, and two cut keys may then be equal:
            // the map `shape` builds keeps one of them. Rare: that object takes that path.
            if m.keys()
                .take(64)
                .any(|k| k.len() > 128 && k.chars().nth(128).is_some())
            {
                o.push_str(&shape(v, depth).to_string());
                return;
            }
            if depth > 0 {
                o.push_str("{\"type\":\"object\",\"keys\":");
            }
            o.push('{');
            for (i, (k, v)) in m.iter().take(64).enumerate() {
                if i > 0 {
                    o.push(',');
                }
                jsonw::str(o, k);
                o.push(':');
                write_shape(o, v, depth + 1);
            }
            o.push('}');
            if depth > 0 {
                o.push('}');
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
    use crate::policy::Subject;

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

    /// What the derived `Serialize` writes for `r` with `extra` tags merged (the record's
    /// own tags win): the reference the hand-written serialiser must match byte for byte.
    fn reference(r: &Record, extra: &BTreeMap<String, String>) -> String {
        let mut r = r.clone();
        for (k, v) in extra {
            r.tags.entry(k.clone()).or_insert_with(|| v.clone());
        }
        serde_json::to_string(&r).unwrap()
    }

    fn full_request() -> Record {
        let mut r = Record::new("request");
        r.time = "2026-12-03T08:41:47.007Z".into();
        r.request_id = Some("00ff00ff00ff00ff".into());
        r.session = Some("sess-1".into());
        r.subject = Some(SubjectRef {
            subject: Arc::new(Subject::named(
                "ané \"q\" \\ \u{1F600}",
                vec!["ops".into(), "dev\n".into()],
                Some("acme".into()),
            )),
            key_id: Some("key_abc".into()),
        });
        r.client = Some(Arc::new(ClientRef {
            name: Some("cli\u{0}\u{1f}\u{7f}".into()),
            version: Some("1.0\t\r\u{8}\u{c}".into()),
            address: Some("127.0.0.1:5000".into()),
        }));
        r.server = Some("fs".into());
        r.method = Some("tools/call".into());
        r.operation = Some("tools/call".into());
        r.target = Some("read_file".into());
        r.decision = Some("allow");
        r.rule = Some(RuleRef {
            policy: "p</script>".into(),
            index: 3,
            pointer: "/policies/0/rules/3".into(),
        });
        r.reason = Some("allowed by \"rule\" 3".into());
        r.outcome = Some("ok");
        r.error_code = Some(-32_603);
        r.latency_ms = Some(1.5);
        r.upstream_ms = Some(1.0);
        r.args = Some(args_shape_json(&json!({
            "path": "/etc/ü",
            "n": 1,
            "flag": true,
            "none": null,
            "list": [1, 2],
            "obj": { "a": { "b": { "c": 1 } } },
        })));
        r.detail = Some(json!({ "z": 1, "a": "x" }));
        r.tags = BTreeMap::from([("team".into(), "blue".into()), ("b".into(), "1".into())]);
        r
    }

    #[test]
    fn a_full_request_record_is_written_exactly_so() {
        let r = full_request();
        let extra = BTreeMap::from([
            ("team".to_string(), "red".to_string()),
            ("a".to_string(), "0".to_string()),
            ("z".to_string(), "9".to_string()),
        ]);
        let text = r.to_json_tagged(&extra);
        assert_eq!(
            text,
            concat!(
                r#"{"time":"2026-12-03T08:41:47.007Z","event":"request","requestId":"00ff00ff00ff00ff","#,
                r#""session":"sess-1","subject":{"id":"ané \"q\" \\ 😀","groups":["ops","dev\n"],"#,
                r#""tenant":"acme","keyId":"key_abc"},"client":{"name":"cli\u0000\u001f"#,
                "\u{7f}",
                r#"","version":"1.0\t\r\b\f","address":"127.0.0.1:5000"},"server":"fs","#,
                r#""method":"tools/call","operation":"tools/call","target":"read_file","#,
                r#""decision":"allow","rule":{"policy":"p</script>","index":3,"#,
                r#""pointer":"/policies/0/rules/3"},"reason":"allowed by \"rule\" 3","#,
                r#""outcome":"ok","errorCode":-32603,"latencyMs":1.5,"upstreamMs":1.0,"#,
                r#""args":{"path":{"type":"string","len":6},"n":"number","flag":"boolean","#,
                r#""none":"null","list":{"type":"array","len":2},"obj":{"type":"object","#,
                r#""keys":{"a":{"type":"object","keys":{"b":{"type":"object","len":1}}}}}},"#,
                r#""detail":{"z":1,"a":"x"},"tags":{"a":"0","b":"1","team":"blue","z":"9"}}"#,
            )
        );
        assert_eq!(text, reference(&r, &extra));
        assert_eq!(r.to_json(), reference(&r, &BTreeMap::new()));
    }

    #[test]
    fn a_minimal_request_record_is_written_exactly_so() {
        let mut r = Record::new("request");
        r.time = "2026-01-01T00:00:00.000Z".into();
        assert_eq!(
            r.to_json(),
            r#"{"time":"2026-01-01T00:00:00.000Z","event":"request"}"#
        );
        r.subject = Some(SubjectRef {
            subject: Arc::new(Subject::named("u", Vec::new(), None)),
            key_id: None,
        });
        r.client = Some(Arc::new(ClientRef {
            version: Some("2".into()),
            ..ClientRef::default()
        }));
        r.latency_ms = Some(f64::NAN);
        let extra = BTreeMap::from([("env".to_string(), "prod".to_string())]);
        let text = r.to_json_tagged(&extra);
        assert_eq!(
            text,
            concat!(
                r#"{"time":"2026-01-01T00:00:00.000Z","event":"request","#,
                r#""subject":{"id":"u","groups":[]},"client":{"version":"2"},"#,
                r#""latencyMs":null,"tags":{"env":"prod"}}"#
            )
        );
        assert_eq!(text, reference(&r, &extra));
    }

    fn text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            "[a-z/_.]{0,12}",
            proptest::collection::vec(any::<char>(), 0..12).prop_map(String::from_iter),
            proptest::collection::vec(0u8..0x80, 0..12)
                .prop_map(|b| b.into_iter().map(char::from).collect()),
        ]
    }

    fn value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            text().prop_map(Value::String),
        ];
        leaf.prop_recursive(5, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec((text(), inner), 0..8)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn hand_written_records_match_the_derived_serialisation(
            strings in proptest::collection::vec(proptest::option::of(text()), 16),
            groups in proptest::collection::vec(text(), 0..3),
            numbers in (proptest::option::of(proptest::prelude::any::<i64>()),
                        proptest::option::of(proptest::prelude::any::<f64>()),
                        proptest::option::of(proptest::prelude::any::<u32>()),
                        proptest::prelude::any::<usize>()),
            args in proptest::option::of(value()),
            detail in proptest::option::of(value()),
            tags in proptest::collection::btree_map(text(), text(), 0..3),
            extra in proptest::collection::btree_map(text(), text(), 0..3),
        ) {
            let s = |i: usize| strings[i].clone();
            let mut r = Record::new("request");
            r.time = s(0).unwrap_or_default();
            r.request_id = s(1).map(Into::into);
            r.session = s(2);
            r.subject = s(3).map(|id| SubjectRef {
                subject: Arc::new(Subject::named(&id, groups, s(4))),
                key_id: s(5).map(Into::into),
            });
            r.client = Some(Arc::new(ClientRef { name: s(6), version: s(7), address: s(8) }));
            r.server = s(9);
            r.method = s(10);
            r.operation = s(11).map(Into::into);
            r.target = s(12);
            r.decision = s(13).map(|_| "deny");
            r.rule = s(14).map(|policy| RuleRef { policy: policy.into(), index: numbers.3, pointer: s(15).unwrap_or_default().into() });
            r.reason = s(15).map(Into::into);
            r.outcome = s(4).map(|_| "tool_error");
            r.error_code = numbers.0;
            r.latency_ms = numbers.1;
            r.upstream_ms = numbers.2.map(|n| ms(Duration::from_micros(u64::from(n))));
            r.args = args.as_ref().map(args_shape_json);
            r.detail = detail;
            r.tags = tags;
            proptest::prop_assert_eq!(r.to_json_tagged(&extra), reference(&r, &extra));
            if let Some(a) = &args {
                proptest::prop_assert_eq!(args_shape_json(a), args_shape(a).to_string());
            }
        }
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them_at_every_position() {
        let fillers = [
            "abcdefghijklmnopqrstuvwx",
            "é😀ü~\u{7f}\u{80}ÿ0123456789abcdef",
        ];
        for filler in fillers {
            let chars: Vec<char> = filler.chars().collect();
            for c in (0u8..0x80).map(char::from).chain(['é', '\u{2028}', '😀']) {
                for at in 0..=chars.len() {
                    let mut s: String = chars[..at].iter().collect();
                    s.push(c);
                    s.extend(&chars[at..]);
                    let mut out = String::new();
                    jsonw::str(&mut out, &s);
                    assert_eq!(out, serde_json::to_string(&s).unwrap(), "{s:?}");
                }
            }
        }
        let mut out = String::new();
        jsonw::str(&mut out, "");
        assert_eq!(out, "\"\"");
    }

    #[test]
    fn argument_shapes_as_text_are_the_shapes() {
        let long = |c: char, tail: &str| format!("{}{tail}", c.to_string().repeat(130));
        let many: Map<String, Value> = (0..70).map(|i| (format!("k{i:02}"), json!(i))).collect();
        for v in [
            json!({ "token": "canary-123", "n": 42, "deep": { "a": ["x"], "b": { "c": { "d": "canary" } } } }),
            json!({ "é\"\n": "ü😀" }),
            // Two keys equal once cut to 128 characters: the later value, the earlier place.
            json!({ long('x', "1"): 1, "m": true, long('x', "2"): "s" }),
            json!({ "o": { long('é', "a"): null, long('é', "b"): [] } }),
            json!({ long('y', ""): 1 }),
            Value::Object(many),
        ] {
            let text = args_shape_json(&v);
            assert_eq!(text, args_shape(&v).to_string());
            assert!(!text.contains("canary"), "{text}");
            serde_json::from_str::<Value>(&text).unwrap();
        }
    }

    #[test]
    fn times_are_what_humantime_writes() {
        let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_290_907);
        let mut steps = vec![
            0, 1, 999, 1_000, 1_001, 59_999, 60_000, 86_399_999, 86_400_000,
        ];
        steps.extend((0..200).map(|i| i * 7_919));
        for ms in steps {
            for t in [
                base + Duration::from_millis(ms),
                base + Duration::from_millis(ms) + Duration::from_nanos(999_999),
                SystemTime::UNIX_EPOCH + Duration::from_millis(ms),
            ] {
                assert_eq!(
                    rfc3339_millis(t),
                    humantime::format_rfc3339_millis(t).to_string()
                );
            }
        }
        let now = now_rfc3339();
        assert_eq!(now.len(), 24, "{now}");
        assert!(now.ends_with('Z'), "{now}");
    }

    #[test]
    fn request_ids_are_16_hex_digits_and_bounded_text_is_cut_by_characters() {
        let id = new_request_id();
        assert_eq!(id.len(), 16);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(new_request_id(), id);
        assert_eq!(bounded("tools/call", 128), "tools/call");
        assert_eq!(bounded(&"é".repeat(100), 128), "é".repeat(100));
        assert_eq!(bounded(&"é".repeat(200), 128), "é".repeat(128));
        assert_eq!(bounded("abc", 2), "ab");
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
