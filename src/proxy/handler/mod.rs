//! One MCP operation from an authenticated caller: decide, route, forward, filter.
//! Transport-independent: HTTP and stdio downstreams both call [`Proxy::handle_answer`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Instant;

use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

mod connect;
mod list;
mod named;
mod relay;

use super::metrics::Metrics;
use super::pool::{
    ConnKey, DEFAULT_REQUEST_TIMEOUT, Owner, Pool, Secrets, build_spec, find_server,
};
use super::upstream::{Event, NameKind, Relayed, Upstream, UpstreamError};
use crate::audit::record::args_shape_json;
use crate::audit::record::{ClientRef, Record, SubjectRef};
use crate::audit::{AuditLog, redact_uri};
use crate::config::Config;
use crate::middleware::authorizer::Authorizers;
use crate::middleware::schema::ArgumentRules;
use crate::middleware::{Ctx, Next, Registry, TargetKind as MwKind};
use crate::policy::{Decision, Engine, Operation, Request, Subject, TargetKind};
use crate::vault::Vault;

/// Which servers an endpoint serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `/mcp`: every server the subject can see, names prefixed.
    All,
    /// `/mcp/<server>`: one server, original names.
    Server(String),
}

/// The caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub subject: Arc<Subject>,
    pub endpoint: Endpoint,
    /// 2026-07-28 or later: results carry `resultType` and cache hints.
    pub modern: bool,
    /// The downstream session (servers with `"isolation": "session"` get one connection each).
    pub session: Option<String>,
    /// The key and client behind the caller, for the audit trail.
    pub info: Arc<CallerInfo>,
}

/// Who is behind a caller, for the audit trail: never the key itself.
#[derive(Debug, Default)]
pub struct CallerInfo {
    /// The API key id, `config:<source>` or `trusted-header` (shared by the audit records).
    pub key_id: Option<Arc<str>>,
    /// What the client said it is (from `initialize`) and where it connected from.
    pub client: Arc<ClientRef>,
    /// The session's `logging/setLevel`, as a [`log_rank`] (0: never set). Shared by the
    /// session's requests; upstream log lines below it are not passed on.
    pub log_level: Arc<std::sync::atomic::AtomicU8>,
}

impl CallerInfo {
    pub fn new(key_id: &str, address: Option<String>) -> CallerInfo {
        CallerInfo {
            key_id: Some(key_id.into()),
            client: Arc::new(ClientRef {
                address,
                ..ClientRef::default()
            }),
            log_level: Arc::default(),
        }
    }

    /// With the client name and version from `initialize` params.
    pub fn with_client_info(mut self, params: &Value) -> CallerInfo {
        let s = |k: &str| {
            params
                .pointer(&format!("/clientInfo/{k}"))
                .and_then(Value::as_str)
                .map(|v| v.chars().take(128).collect::<String>())
        };
        let client = Arc::make_mut(&mut self.client);
        client.name = s("name");
        client.version = s("version");
        self
    }
}

use crate::jsonrpc::code;
pub use crate::jsonrpc::{Kind, RpcError, limit_retry_after};

/// The client's error for a failed upstream call, of the kind the audit trail records.
fn upstream_error(server: &str, e: UpstreamError) -> RpcError {
    match e {
        UpstreamError::Rpc(v) => RpcError::from_upstream(v),
        UpstreamError::Cancelled => RpcError::cancelled(),
        UpstreamError::Timeout(_) => {
            RpcError::internal(format!("upstream `{server}`: {e}")).kind(Kind::Timeout)
        }
        // These name the server already.
        UpstreamError::Closed(m) | UpstreamError::Transport(m) => {
            RpcError::internal(m).kind(Kind::Unavailable)
        }
    }
}

/// A successful result on its way to the client: one Fentaris built or edited (lists,
/// middleware, the 2026-07-28 fields), or the upstream's own bytes, passed through untouched
/// (never parsed into a tree and written again).
#[derive(Debug, Clone)]
pub enum Answer {
    Value(Value),
    Raw(Box<serde_json::value::RawValue>),
}

impl Answer {
    /// The result as a tree (parsed if it was passed through).
    pub fn into_value(self) -> Result<Value, RpcError> {
        match self {
            Answer::Value(v) => Ok(v),
            Answer::Raw(r) => serde_json::from_str(r.get()).map_err(|e| {
                RpcError::internal(format!("an upstream result could not be read: {e}"))
            }),
        }
    }

    /// Whether it is a tool result with `isError: true`.
    pub fn is_tool_error(&self) -> bool {
        #[derive(serde::Deserialize)]
        struct Flag {
            #[serde(rename = "isError", default)]
            is_error: Option<Value>,
        }
        match self {
            Answer::Value(v) => v.get("isError").and_then(Value::as_bool) == Some(true),
            // Nothing to parse when the text has no `true` (a literal cannot be escaped), or
            // spells neither `isError` nor any `\u` escape (the one way a key can spell it
            // otherwise).
            Answer::Raw(r)
                if !r.get().contains("true")
                    || (!r.get().contains("isError") && !r.get().contains("\\u")) =>
            {
                false
            }
            // Only the flag is read; everything else is skipped without being built.
            Answer::Raw(r) => serde_json::from_str::<Flag>(r.get())
                .is_ok_and(|f| f.is_error.and_then(|v| v.as_bool()) == Some(true)),
        }
    }
}

impl Answer {
    /// The JSON-RPC response to `id` with this result, as JSON text: a passed-through result
    /// is written as the upstream's bytes.
    pub fn response_text(&self, id: &Value) -> Result<String, RpcError> {
        #[derive(serde::Serialize)]
        struct Envelope<'a> {
            jsonrpc: &'static str,
            id: &'a Value,
            result: &'a Answer,
        }
        // Sized for a passed-through result in one allocation.
        let size = match self {
            Answer::Raw(r) => r.get().len() + 64,
            Answer::Value(_) => 256,
        };
        let mut out = Vec::with_capacity(size);
        serde_json::to_writer(
            &mut out,
            &Envelope {
                jsonrpc: "2.0",
                id,
                result: self,
            },
        )
        .map_err(|e| RpcError::internal(format!("the result could not be written: {e}")))?;
        String::from_utf8(out)
            .map_err(|e| RpcError::internal(format!("the result could not be written: {e}")))
    }
}

impl serde::Serialize for Answer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Answer::Value(v) => v.serialize(s),
            Answer::Raw(r) => r.serialize(s),
        }
    }
}

/// Answers the client owes Fentaris, by the id Fentaris gave its request to the client.
pub type Replies = Arc<Mutex<HashMap<String, tokio::sync::oneshot::Sender<Result<Value, Value>>>>>;

/// The way back to the client while one of its requests runs: a sink of messages on that
/// request's own stream (progress notifications, and requests from the upstream such as
/// sampling), the client's progress token if it gave one, and where its answers arrive.
#[derive(Clone)]
pub struct Progress {
    pub token: Option<Value>,
    pub sink: mpsc::UnboundedSender<Value>,
    pub replies: Replies,
}

/// Deliver the client's answer (a JSON-RPC response) to the relayed request waiting for it.
pub fn deliver_reply(replies: &Replies, msg: &Value) {
    let Some(id) = msg.get("id") else { return };
    let key = id
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| id.to_string());
    let waiter = replies.lock().remove(&key);
    if let Some(w) = waiter {
        let answer = match (msg.get("result"), msg.get("error")) {
            (Some(r), _) => Ok(r.clone()),
            (_, Some(e)) => Err(e.clone()),
            _ => Err(
                json!({ "code": -32603, "message": "the client answered with neither result nor error" }),
            ),
        };
        let _ = w.send(answer);
    }
}

static NEXT_CLIENT_REQUEST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// An upstream notification for sessions: the server, the key of the connection that sent it
/// (which says whether it is isolated to one session), and the event.
#[derive(Debug, Clone)]
pub struct ServerEvent {
    pub server: String,
    pub connection: ConnKey,
    pub event: Event,
}

impl ServerEvent {
    /// Whether a session (`None`: a stateless caller) may receive it: events of a connection
    /// isolated to one session reach only that session.
    pub fn for_session(&self, session: Option<&str>) -> bool {
        self.connection.reaches(session)
    }
}

/// Reads the process environment (injectable for tests).
pub type EnvLookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Process-wide proxy state.
pub struct Proxy {
    config: Config,
    config_dir: PathBuf,
    engine: Engine,
    vault: Option<Vault>,
    /// Connections: shared by every config this process serves (reload keeps them).
    pool: Arc<Pool>,
    metrics: Arc<Metrics>,
    /// Upstream specs built for this config.
    specs: super::pool::SpecCache,
    /// Cancelled when a reload replaces this proxy: its supervisors stop.
    retired: CancellationToken,
    env: EnvLookup,
    /// The audit trail (off unless `autoLog`).
    audit: Arc<AuditLog>,
    /// Runtime middleware (library API).
    middleware: Registry,
    /// Tool pinning (`tools.lock.json`; off unless `serve` loads a lock).
    pins: super::pinning::Pins,
    argument_rules: ArgumentRules,
    authorizers: Authorizers,
    /// This proxy, once shared (the middleware chain's last step needs an owned handle).
    me: std::sync::OnceLock<std::sync::Weak<Proxy>>,
    /// Upstream capabilities by server, from the first successful initialize.
    caps: Arc<Mutex<HashMap<String, Value>>>,
    /// Resource URIs and template prefixes each server listed (for routing on `/mcp`).
    routes: Arc<Mutex<HashMap<String, Routes>>>,
    /// (server, event) from every upstream connection.
    events: broadcast::Sender<ServerEvent>,
    /// Key of Fentaris' own list cursors (from `cursorKey`, else random per process).
    cursor_key: crate::secret::SecretKey,
}

#[derive(Default)]
struct Routes {
    uris: std::collections::HashSet<String>,
    template_prefixes: Vec<String>,
}

impl Proxy {
    /// The validated config this proxy serves.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The folder of the config (tools lock, vault).
    pub fn config_dir(&self) -> &std::path::Path {
        &self.config_dir
    }
    /// The compiled policy.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
    /// Upstream connections (shared across reloads).
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
    /// Cancelled when a reload replaces this proxy.
    pub fn retired(&self) -> &CancellationToken {
        &self.retired
    }
    /// The audit trail.
    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }
    /// (server, event) from every upstream connection.
    pub fn events(&self) -> &broadcast::Sender<ServerEvent> {
        &self.events
    }
    /// Set once, before the proxy is shared: where audit records go.
    pub fn with_audit(mut self, audit: AuditLog) -> Proxy {
        self.audit = Arc::new(audit);
        self
    }
    /// Set once, before the proxy is shared: the runtime middleware.
    pub fn with_middleware(mut self, middleware: Registry) -> Proxy {
        self.middleware = middleware;
        self
    }
    /// Set once, before the proxy is shared: the tools lock.
    pub fn with_pins(mut self, pins: super::pinning::Pins) -> Proxy {
        self.pins = pins;
        self
    }
    pub fn new(config: Config, config_dir: PathBuf, vault: Option<Vault>, env: EnvLookup) -> Proxy {
        let (engine, _) = Engine::compile(&config);
        let argument_rules = ArgumentRules::compile(&config);
        let authorizers = Authorizers::build(&config, &|src| {
            crate::vault::resolve_source(src, &config, None, vault.as_ref(), &*env)
                .map_err(|e| e.to_string())
        });
        let (events, _) = broadcast::channel(256);
        let cursor_key = config
            .cursor_key
            .as_ref()
            .and_then(|src| {
                crate::vault::resolve_source(src, &config, None, vault.as_ref(), &*env).ok()
            })
            .map(|secret| {
                use sha2::Digest;
                crate::secret::SecretKey::from_bytes(
                    sha2::Sha256::digest(secret.expose().as_bytes()).into(),
                )
            })
            .unwrap_or_else(crate::secret::SecretKey::random);
        Proxy {
            config,
            config_dir,
            engine,
            vault,
            pool: Arc::default(),
            metrics: Arc::default(),
            retired: CancellationToken::new(),
            specs: Default::default(),
            env,
            audit: Arc::new(AuditLog::off()),
            middleware: Registry::default(),
            pins: Default::default(),
            argument_rules,
            authorizers,
            me: std::sync::OnceLock::new(),
            caps: Arc::default(),
            routes: Arc::default(),
            events,
            cursor_key,
        }
    }

    /// The proxy for a new config (and vault): same connections, metrics, audit log,
    /// sessions' event stream and middleware; new policy, credentials and checks.
    pub fn reloaded(&self, config: Config, vault: Option<Vault>, env: EnvLookup) -> Proxy {
        let keep_cursor = config.cursor_key.is_none();
        let mut p = Proxy::new(config, self.config_dir.clone(), vault, env);
        p.pool = self.pool.clone();
        p.metrics = self.metrics.clone();
        p.audit = self.audit.clone();
        p.middleware = self.middleware.clone();
        p.caps = self.caps.clone();
        p.routes = self.routes.clone();
        p.events = self.events.clone();
        if keep_cursor {
            p.cursor_key = self.cursor_key.clone();
        }
        p
    }

    /// Share the proxy (the transports and the middleware chain need an `Arc`).
    pub fn shared(self) -> Arc<Proxy> {
        let me = Arc::new(self);
        let _ = me.me.set(Arc::downgrade(&me));
        me
    }

    /// Whether every server that needs no subject-specific credentials is connected.
    pub fn known_capabilities(&self) -> HashMap<String, Value> {
        self.caps.lock().clone()
    }

    /// Capabilities for `initialize`/`server/discover`: the union of what the visible servers
    /// offer (tools, prompts, resources, completions, logging), never `tasks`.
    pub fn capabilities(&self, subject: &Subject, endpoint: &Endpoint) -> Value {
        let caps = self.caps.lock();
        let servers: Vec<String> = match endpoint {
            Endpoint::All => self
                .engine
                .visible_servers(subject)
                .into_iter()
                .filter(|s| self.engine.can_use(subject, s))
                .map(str::to_string)
                .collect(),
            Endpoint::Server(s) => vec![s.clone()],
        };
        let mut out = Map::new();
        for s in servers {
            let Some(c) = caps.get(&s).and_then(Value::as_object) else {
                // Not connected yet: advertise the basics so clients ask.
                for k in ["tools", "prompts", "resources"] {
                    out.entry(k).or_insert(json!({ "listChanged": true }));
                }
                continue;
            };
            // `logging` only where the subject may set the level (the Inspector, for one,
            // calls logging/setLevel whenever it is advertised).
            let may_log = self
                .engine
                .decide(subject, &Request::server_op(&s, Operation::LoggingSetLevel))
                .is_allow();
            for k in ["tools", "prompts", "resources", "completions", "logging"] {
                if k == "logging" && !may_log {
                    continue;
                }
                if let Some(v) = c.get(k) {
                    let slot = out.entry(k).or_insert(json!({}));
                    if let (Some(dst), Some(src)) = (slot.as_object_mut(), v.as_object()) {
                        for (f, b) in src {
                            if b.as_bool() == Some(true) {
                                dst.insert(f.clone(), Value::Bool(true));
                            }
                        }
                    }
                }
            }
        }
        if let Endpoint::All = endpoint
            && let Some(r) = out.get_mut("resources").and_then(Value::as_object_mut)
        {
            // Subscriptions over several shared upstreams are not offered on `/mcp`.
            r.remove("subscribe");
        }
        Value::Object(out)
    }

    /// [`Proxy::handle_answer`] with the result parsed (tests look inside it).
    #[cfg(test)]
    pub async fn handle(
        &self,
        caller: &Caller,
        method: &str,
        params: Value,
        progress: Option<Progress>,
        ct: &CancellationToken,
    ) -> Result<Value, RpcError> {
        self.handle_answer(caller, method, params, progress, ct)
            .await
            .and_then(Answer::into_value)
    }

    /// Handle one operation. Lifecycle (initialize, ping, notifications) is the transport's.
    /// A result is passed through as the upstream's bytes where nothing had to change in it.
    pub async fn handle_answer(
        &self,
        caller: &Caller,
        method: &str,
        params: Value,
        progress: Option<Progress>,
        ct: &CancellationToken,
    ) -> Result<Answer, RpcError> {
        let started = Instant::now();
        // The dispatch future is boxed: it is several KB, and this one would hold it twice.
        if !self.audit.enabled() {
            let (server_label, result) =
                Box::pin(self.dispatch(caller, method, params, progress.as_ref(), ct)).await;
            self.metrics.request(
                &server_label,
                method,
                metric_outcome(&result),
                started.elapsed(),
            );
            return self.finish(caller, method, result);
        }
        // Fail closed: nothing is forwarded unless its record can be written.
        self.audit
            .admit()
            .await
            .map_err(|e| RpcError::internal(e.to_string()))?;
        // If this future is dropped (the client went away, shutdown), the record is still
        // written, as cancelled: a forwarded request always has its line.
        let mut pending = {
            let record = self.request_record(caller, method, &params);
            PendingRecord {
                audit: self.audit.clone(),
                slot: crate::audit::record::new_slot(record.request_id.clone()),
                record: Some(record),
                started,
            }
        };
        let slot = pending.slot.clone();
        let work = Box::pin(self.dispatch(caller, method, params, progress.as_ref(), ct));
        let (server_label, result) = crate::audit::record::in_slot(slot.clone(), work).await;
        let Some(record) = pending.record.take() else {
            return self.finish(caller, method, result);
        };
        let slot = crate::audit::record::take_slot(&slot);
        let took = started.elapsed();
        self.metrics
            .request(&server_label, method, metric_outcome(&result), took);
        self.complete_record(record, slot, server_label, &result, took);
        self.finish(caller, method, result)
    }

    /// Complete a request record after the call (decision, outcome, latency) and write it.
    /// Not inlined: it is measured on its own (bench/callgrind.sh).
    #[inline(never)]
    fn complete_record(
        &self,
        mut record: Box<Record>,
        slot: crate::audit::Slot,
        server_label: String,
        result: &Result<Answer, RpcError>,
        took: std::time::Duration,
    ) {
        record.server = Some(server_label);
        record.outcome = Some(audit_outcome(result, slot.decision));
        if let Err(e) = result {
            record.error_code = Some(e.code);
        }
        slot.apply(&mut record);
        crate::audit::record::set_latency(&mut record, took);
        self.audit.write_boxed(record);
    }

    fn finish(
        &self,
        caller: &Caller,
        method: &str,
        result: Result<Answer, RpcError>,
    ) -> Result<Answer, RpcError> {
        match result {
            // The 2026-07-28 fields are the one edit a passed-through result needs.
            Ok(a) if caller.modern => Ok(Answer::Value(modernize(a.into_value()?, method))),
            other => other,
        }
    }

    /// The request record before dispatch: who, what, and the shape of the arguments.
    /// Not inlined: it is measured on its own (bench/callgrind.sh).
    #[inline(never)]
    fn request_record(&self, caller: &Caller, method: &str, params: &Value) -> Box<Record> {
        // Boxed from the start: the writer takes it boxed, and the request's future holds
        // a pointer instead of the record (a few hundred bytes moved per request).
        let mut r = Box::new(Record::new("request"));
        r.request_id = Some(crate::audit::record::new_request_id());
        r.session = caller.session.clone();
        r.subject = Some(subject_ref(caller));
        r.client = Some(caller.info.client.clone());
        r.method = Some(crate::audit::record::bounded(method, 128));
        let args = match method {
            "tools/call" | "prompts/get" => params.get("arguments"),
            "completion/complete" => params.get("argument"),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => None,
            _ => Some(params),
        };
        r.args = args
            .filter(|a| a.as_object().is_some_and(|o| !o.is_empty()))
            .map(args_shape_json);
        r
    }

    async fn dispatch(
        &self,
        caller: &Caller,
        method: &str,
        params: Value,
        progress: Option<&Progress>,
        ct: &CancellationToken,
    ) -> (String, Result<Answer, RpcError>) {
        let label = match &caller.endpoint {
            Endpoint::All => "*".to_string(),
            Endpoint::Server(s) => s.clone(),
        };
        let list_op = match method {
            "tools/list" => Some(Operation::ToolsList),
            "prompts/list" => Some(Operation::PromptsList),
            "resources/list" => Some(Operation::ResourcesList),
            "resources/templates/list" => Some(Operation::ResourceTemplatesList),
            _ => None,
        };
        // Every path but the named ones is boxed: this future is moved into a new box per
        // request, and it would hold the state of the largest path it awaits.
        if let Some(op) = list_op {
            let r = Box::pin(self.list(caller, op, params, ct))
                .await
                .map(Answer::Value);
            return (label, r);
        }
        let r = match method {
            "tools/call" => {
                self.named(caller, NameKind::Tool, method, params, progress, ct)
                    .await
            }
            "prompts/get" => {
                self.named(caller, NameKind::Prompt, method, params, progress, ct)
                    .await
            }
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                Box::pin(self.resource(caller, method, params, progress, ct)).await
            }
            "completion/complete" => Box::pin(self.complete(caller, params, ct)).await,
            "logging/setLevel" => self.set_level(caller, &params).map(Answer::Value),
            m if m.starts_with("tasks/") => Err(RpcError::method_not_found(m)),
            other => Box::pin(self.custom(caller, other, params, progress, ct)).await,
        };
        (label, r)
    }

    fn decide(&self, caller: &Caller, req: &Request) -> Decision {
        let d = self.engine.decide(&caller.subject, req);
        // A server the subject cannot see is the client's text: not a label.
        let server = match d.reason {
            crate::policy::Reason::UnknownServer => crate::proxy::metrics::UNKNOWN_SERVER,
            _ => req.server(),
        };
        self.metrics
            .decision(server, &req.operation().name(), d.is_allow());
        if self.audit.enabled() {
            self.note_decision(req, &d);
        }
        d
    }

    /// Put a decision into the running request's audit slot. An allow already there wins
    /// (a relayed request or a later server does not overwrite what let the request through).
    fn note_decision(&self, req: &Request, d: &Decision) {
        use crate::policy::Reason;
        let (rule, reason) = match d.reason {
            Reason::Rule(r) => match self.engine.rule_info(r) {
                Some(i) => (
                    Some(crate::audit::RuleRef {
                        policy: i.policy.clone(),
                        index: i.index,
                        pointer: i.pointer.clone(),
                    }),
                    i.summary.clone(),
                ),
                None => (None, "a rule decided".into()),
            },
            Reason::NoMatchingRule => (None, "no rule allows this (deny by default)".into()),
            Reason::UnknownServer => (
                None,
                "unknown server, or not visible to this subject".into(),
            ),
        };
        // Client-chosen: bounded, so one request cannot write an oversized line.
        let target = match req.kind() {
            TargetKind::Resource | TargetKind::ResourceTemplate => redact_uri(req.target()),
            _ => req.target().to_string(),
        };
        let target = if target.len() <= 512 {
            target
        } else {
            crate::audit::record::bounded(&target, 512)
        };
        let decision = d.effect.as_str();
        crate::audit::record::note(|s| {
            if s.decision == Some("allow") {
                return;
            }
            s.server = Some(req.server().to_string());
            s.operation = Some(req.operation().name());
            s.target = (!target.is_empty()).then_some(target);
            s.decision = Some(decision);
            s.rule = rule;
            s.reason = Some(reason);
        });
    }
}

/// The log levels of `logging/setLevel` and `notifications/message` (RFC 5424), lowest first.
pub const LOG_LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// The rank of a log level (1 = debug … 8 = emergency); `None` for anything else.
pub fn log_rank(level: &str) -> Option<u8> {
    LOG_LEVELS
        .iter()
        .position(|l| *l == level)
        .and_then(|i| u8::try_from(i + 1).ok())
}

/// A list is always answered: filtered to what policy lets the subject see (an empty list
/// when nothing).
fn note_list(server: &str, op: &Operation, any: bool) {
    crate::audit::record::note(|s| {
        s.server = Some(server.to_string());
        s.operation = Some(op.name());
        s.decision = Some(if any { "allow" } else { "deny" });
        s.reason = Some(if any {
            "the list is filtered by policy".into()
        } else {
            "nothing on this server is visible to the subject".into()
        });
    });
}

/// Records the upstream time of a request when the forward ends (also on error).
struct UpstreamTiming(Instant);
impl Drop for UpstreamTiming {
    fn drop(&mut self) {
        let took = self.0.elapsed();
        crate::audit::record::note(|s| s.upstream = Some(took));
    }
}

/// The subject of a caller, for audit records.
pub fn subject_ref(caller: &Caller) -> SubjectRef {
    SubjectRef::of(&caller.subject, caller.info.key_id.clone())
}

/// A request's audit record until it is written: written as `cancelled` if the request is
/// dropped before it ends.
struct PendingRecord {
    audit: Arc<AuditLog>,
    record: Option<Box<Record>>,
    slot: Arc<std::sync::Mutex<crate::audit::Slot>>,
    started: Instant,
}

impl Drop for PendingRecord {
    fn drop(&mut self) {
        if let Some(mut r) = self.record.take() {
            crate::audit::record::take_slot(&self.slot).apply(&mut r);
            r.outcome = Some("cancelled");
            r.reason
                .get_or_insert_with(|| "the client went away before the answer".into());
            crate::audit::record::set_latency(&mut r, self.started.elapsed());
            self.audit.write_boxed(r);
        }
    }
}

/// What the middleware steps see of an allowed request.
struct Step<'a> {
    server: &'a str,
    op: Operation,
    target: &'a str,
    kind: Option<MwKind>,
    /// The member of the request's `params` holding its arguments (`""`: none).
    args: &'static str,
}

/// The outcome label of a request in `/metrics`.
fn metric_outcome<T>(result: &Result<T, RpcError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) if e.kind == Kind::Cancelled => "cancelled",
        Err(_) => "error",
    }
}

/// The outcome of a request in its audit line, from the kind of its error and the policy
/// decision (`None`: it never reached policy).
fn audit_outcome(result: &Result<Answer, RpcError>, decision: Option<&str>) -> &'static str {
    let e = match result {
        Ok(a) if a.is_tool_error() => return "tool_error",
        Ok(_) => return "ok",
        Err(e) => e,
    };
    match e.kind {
        Kind::Cancelled => "cancelled",
        Kind::DeniedByMiddleware => "denied_by_middleware",
        Kind::Timeout => "timeout",
        Kind::Unavailable => "unavailable",
        _ if decision == Some("deny") => "denied",
        Kind::Invalid if decision.is_none() => "invalid",
        _ => "error",
    }
}

/// Remove the client's progress token (the upstream gets ours when the client asked), and
/// the 2026-07-28 per-request envelope: upstream connections are initialized (handshake
/// era), and handshake-era servers refuse requests carrying it (Python `mcp` 2.x: -32600).
fn strip_progress(mut params: Value) -> Value {
    if let Some(meta) = params.get_mut("_meta").and_then(Value::as_object_mut) {
        meta.remove("progressToken");
        for k in [
            "io.modelcontextprotocol/protocolVersion",
            "io.modelcontextprotocol/clientInfo",
            "io.modelcontextprotocol/clientCapabilities",
            "io.modelcontextprotocol/logLevel",
        ] {
            meta.remove(k);
        }
        if meta.is_empty()
            && let Some(o) = params.as_object_mut()
        {
            o.remove("_meta");
        }
    }
    params
}

/// Fields the 2026-07-28 revision requires on results.
fn modernize(mut v: Value, method: &str) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.entry("resultType").or_insert(json!("complete"));
        if method.ends_with("/list") || method == "resources/read" {
            o.entry("ttlMs").or_insert(json!(0));
            // Filtered, per-identity results must never be shared between identities.
            o.insert("cacheScope".into(), json!("private"));
        }
    }
    v
}

#[cfg(test)]
pub(crate) mod tests;
