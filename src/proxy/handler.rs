//! One MCP operation from an authenticated caller: decide, route, forward, filter.
//! Transport-independent: HTTP and stdio downstreams both call [`Proxy::handle`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Instant;

use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
use super::pool::{
    ConnKey, DEFAULT_REQUEST_TIMEOUT, Owner, Pool, Secrets, build_spec, find_server,
};
use super::upstream::{Event, NameKind, Relayed, Upstream, UpstreamError};
use crate::audit::record::{ClientRef, Record, SubjectRef};
use crate::audit::{AuditLog, args_shape, redact_uri};
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
#[derive(Debug, Clone, Default)]
pub struct CallerInfo {
    /// The API key id, `config:<source>` or `trusted-header`.
    pub key_id: Option<String>,
    /// What the client said it is (from `initialize`) and where it connected from.
    pub client: ClientRef,
    /// The session's `logging/setLevel`, as a [`log_rank`] (0: never set). Shared by the
    /// session's requests; upstream log lines below it are not passed on.
    pub log_level: Arc<std::sync::atomic::AtomicU8>,
}

impl CallerInfo {
    pub fn new(key_id: &str, address: Option<String>) -> CallerInfo {
        CallerInfo {
            key_id: Some(key_id.to_string()),
            client: ClientRef {
                address,
                ..ClientRef::default()
            },
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
        self.client.name = s("name");
        self.client.version = s("version");
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

/// Answers the client owes Fentaris, by the id Fentaris gave its request to the client.
pub type Replies = Arc<Mutex<HashMap<String, tokio::sync::oneshot::Sender<Result<Value, Value>>>>>;

/// The way back to the client while one of its requests runs: a sink of messages on that
/// request's own stream (progress notifications, and requests from the upstream such as
/// sampling), the client's progress token if it gave one, and where its answers arrive.
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
    pub config: Config,
    pub config_dir: PathBuf,
    pub engine: Engine,
    pub vault: Option<Vault>,
    /// Connections: shared by every config this process serves (reload keeps them).
    pub pool: Arc<Pool>,
    pub metrics: Arc<Metrics>,
    /// Upstream specs built for this config.
    specs: super::pool::SpecCache,
    /// Cancelled when a reload replaces this proxy: its supervisors stop.
    pub retired: CancellationToken,
    pub env: EnvLookup,
    /// The audit trail (off unless `autoLog`).
    pub audit: Arc<AuditLog>,
    /// Runtime middleware (library API).
    pub middleware: Registry,
    /// Tool pinning (`tools.lock.json`; off unless `serve` loads a lock).
    pub pins: super::pinning::Pins,
    argument_rules: ArgumentRules,
    authorizers: Authorizers,
    /// This proxy, once shared (the middleware chain's last step needs an owned handle).
    me: std::sync::OnceLock<std::sync::Weak<Proxy>>,
    /// Upstream capabilities by server, from the first successful initialize.
    caps: Arc<Mutex<HashMap<String, Value>>>,
    /// Resource URIs and template prefixes each server listed (for routing on `/mcp`).
    routes: Arc<Mutex<HashMap<String, Routes>>>,
    /// (server, event) from every upstream connection.
    pub events: broadcast::Sender<ServerEvent>,
    /// Key of Fentaris' own list cursors (from `cursorKey`, else random per process).
    cursor_key: crate::secret::SecretKey,
}

#[derive(Default)]
struct Routes {
    uris: std::collections::HashSet<String>,
    template_prefixes: Vec<String>,
}

impl Proxy {
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

    /// After a reload: close the connections this config no longer describes (removed
    /// servers, and servers whose command, URL or credentials changed; they restart on
    /// demand or through their supervisor). Returns the servers whose connections closed.
    pub async fn close_stale(&self) -> Vec<String> {
        let mut valid = std::collections::HashSet::new();
        let groups: Vec<Option<String>> = std::iter::once(None)
            .chain(self.config.groups.iter().map(|g| Some(g.id.clone())))
            .collect();
        let servers: Vec<&crate::config::Server> = self
            .config
            .servers
            .iter()
            .chain(self.config.groups.iter().flat_map(|g| g.servers.iter()))
            .collect();
        let secrets = Secrets {
            config: &self.config,
            vault: self.vault.as_ref(),
            env: &*self.env,
        };
        for s in servers {
            if !s.resolve_headers.is_empty() {
                continue;
            }
            for g in &groups {
                if let Ok(spec) = build_spec(s, &self.config_dir, g.as_deref(), None, &secrets) {
                    valid.insert(super::pool::spec_key(&s.name, &spec));
                }
            }
        }
        self.pool
            .close_unless(|key| valid.contains(key.spec()))
            .await
    }

    /// Share the proxy (the transports and the middleware chain need an `Arc`).
    pub fn shared(self) -> Arc<Proxy> {
        let me = Arc::new(self);
        let _ = me.me.set(Arc::downgrade(&me));
        me
    }

    /// The connection to `server` for `caller`, using the credentials of `group`.
    pub async fn upstream(
        &self,
        caller: Option<&Caller>,
        server: &str,
        group: Option<&str>,
    ) -> Result<Arc<Upstream>, RpcError> {
        let subject = caller.map(|c| &*c.subject);
        let (decl, owner) = find_server(&self.config, subject, server)
            .ok_or_else(|| RpcError::invalid_params(format!("Unknown server: {server}")))?;
        // A private server's credentials come from its own group first.
        let group = owner.or(group);
        let secrets = Secrets {
            config: &self.config,
            vault: self.vault.as_ref(),
            env: &*self.env,
        };
        // Built once per (server, group, subject where it matters), not per request.
        let depends_on_subject = subject.filter(|_| !decl.resolve_headers.is_empty());
        let built = self.specs.spec(
            server,
            group,
            depends_on_subject.map(|s| s.id.as_str()),
            || build_spec(decl, &self.config_dir, group, subject, &secrets),
        );
        let (spec, mut key) = built.map_err(|e| {
            tracing::warn!(server, "cannot build the upstream connection: {e}");
            RpcError::internal(format!(
                "upstream `{server}` is not available: its credentials could not be resolved"
            ))
        })?;
        if decl.isolation == crate::config::Isolation::Session
            || (caller.is_some() && self.isolated_by_default(decl))
        {
            // One connection per downstream session (per subject for stateless clients).
            match caller {
                Some(Caller {
                    session: Some(sid), ..
                }) => key = key.owned_by(Owner::Session(sid.clone())),
                Some(c) => key = key.owned_by(Owner::User(c.subject.id.clone())),
                None => {
                    return Err(RpcError::internal(format!(
                        "upstream `{server}` is isolated per session"
                    )));
                }
            }
        }
        // A new session-isolated connection (a child process, or an upstream session) counts
        // against its user's `limits.maxChildrenPerUser`.
        let mut reserved: Option<&str> = None;
        if let Some(Caller { subject, .. }) = caller
            && matches!(key.owner(), Owner::Session(_))
            && !self.pool.live(&key).await
        {
            let max = self.config.limits.max_children_per_user;
            if !self.pool.reserve_child(&subject.id, max) {
                tracing::warn!(server, user = %subject.id, "limits.maxChildrenPerUser ({max}) reached");
                return Err(RpcError::limit(
                    "maxChildrenPerUser",
                    5,
                    format!(
                        "upstream `{server}` runs one connection per session, and this user has {max} open (limits.maxChildrenPerUser); end unused sessions with DELETE and try again"
                    ),
                ));
            }
            reserved = Some(&subject.id);
        }
        let got = self
            .pool
            .get(
                server,
                &key,
                &spec,
                self.metrics.messages_dropped(server),
                || self.client_capabilities(server),
                self.config.limits.max_upstream_message_bytes,
            )
            .await;
        if let Some(user) = reserved {
            match &got {
                Ok((up, true)) => self.pool.hold_child(user, up),
                _ => self.pool.release_child(user),
            }
        }
        let (up, fresh) = got.map_err(|e| {
            tracing::warn!(
                server,
                "upstream failed to start: {}",
                crate::diagnostics::Escaped(&e.to_string())
            );
            self.metrics.upstream_failure(server);
            RpcError::internal(format!("upstream `{server}` is not available: {e}"))
        })?;
        if fresh {
            self.on_connected(server, &up, &key);
        }
        Ok(up)
    }

    /// See [`super::pool::isolated_by_default`]. The shared connection is still kept for
    /// readiness, capabilities and the supervisor.
    pub fn isolated_by_default(&self, decl: &crate::config::Server) -> bool {
        super::pool::isolated_by_default(&self.engine, decl)
    }

    /// The pool key of a server's shared connection (no subject, no group).
    fn shared_key(&self, server: &str) -> Option<ConnKey> {
        let (decl, owner) = find_server(&self.config, None, server)?;
        let secrets = Secrets {
            config: &self.config,
            vault: self.vault.as_ref(),
            env: &*self.env,
        };
        self.specs
            .spec(server, owner, None, || {
                build_spec(decl, &self.config_dir, owner, None, &secrets)
            })
            .ok()
            .map(|(_, key)| key)
    }

    /// Keep a shared server up: start it, and whenever it exits unasked (or fails to
    /// start), restart it after an exponential backoff with jitter, until it exits
    /// [`super::pool::CRASH_LIMIT`] times within a minute; then it stays down (and `/readyz`
    /// says so). Sessions get list-changed notifications when it is back. `first` is told
    /// when the first attempt is over.
    pub async fn keep_up(self: Arc<Self>, server: String, first: tokio::sync::oneshot::Sender<()>) {
        use super::pool::AfterExit;
        let mut first = Some(first);
        let mut restarting = false;
        loop {
            if self.pool.stopping() || self.retired.is_cancelled() {
                return;
            }
            let Some(key) = self.shared_key(&server) else {
                tracing::warn!(server = %server, "cannot start: its credentials could not be resolved");
                return;
            };
            let after = match self.upstream(None, &server, None).await {
                Ok(up) => {
                    if restarting {
                        tracing::info!(server = %server, "restarted");
                        self.metrics.upstream_restart(&server);
                        self.audit
                            .write(Record::new("upstream.restart").server(&server));
                        for event in [
                            Event::ToolsChanged,
                            Event::PromptsChanged,
                            Event::ResourcesChanged,
                        ] {
                            let _ = self.events.send(ServerEvent {
                                server: server.clone(),
                                connection: key.clone(),
                                event,
                            });
                        }
                    } else {
                        self.report_unrepresentable_names(&server).await;
                    }
                    if let Some(f) = first.take() {
                        let _ = f.send(());
                    }
                    tokio::select! {
                        _ = up.closed() => {}
                        _ = self.retired.cancelled() => return,
                    }
                    if self.pool.closed_on_purpose(&key, &up).await {
                        return;
                    }
                    drop(up);
                    self.metrics.upstream_exit(&server);
                    self.pool.note_exit(&key)
                }
                Err(e) => {
                    if let Some(f) = first.take() {
                        let _ = f.send(());
                    }
                    tracing::warn!(server = %server, "could not start: {}", crate::diagnostics::Escaped(&e.message));
                    self.pool.state(&key)
                }
            };
            restarting = true;
            match after {
                AfterExit::Down(n) => {
                    tracing::error!(server = %server, "exited {n} times within {}s: it stays down until Fentaris restarts", super::pool::CRASH_WINDOW.as_secs());
                    self.metrics.upstream_down(&server, true);
                    self.audit.write(
                        Record::new("upstream.down")
                            .server(&server)
                            .detail(json!({ "exits": n })),
                    );
                    return;
                }
                AfterExit::RestartIn(d) => {
                    tracing::warn!(server = %server, "exited; restarting in {:.1}s", d.as_secs_f32());
                    tokio::select! {
                        _ = tokio::time::sleep(d) => {}
                        _ = self.retired.cancelled() => return,
                    }
                }
            }
        }
    }

    /// Shared servers that are down after a crash loop.
    pub fn down_servers(&self, servers: &[String]) -> Vec<String> {
        servers
            .iter()
            .filter(|s| self.shared_key(s).is_some_and(|k| self.pool.is_down(&k)))
            .cloned()
            .collect()
    }

    /// The connection for an allowed request: credentials from the group whose rule allowed it.
    async fn upstream_for(
        &self,
        caller: &Caller,
        server: &str,
        allowed: &Decision,
    ) -> Result<Arc<Upstream>, RpcError> {
        let group = self.engine.deciding_group(allowed).map(str::to_string);
        self.upstream(Some(caller), server, group.as_deref()).await
    }

    /// The client capabilities Fentaris offers an upstream: sampling, elicitation and roots
    /// only where some policy may allow them (deny by default: nothing offered).
    fn client_capabilities(&self, server: &str) -> Value {
        let mut caps = Map::new();
        for (op, key) in [
            (Operation::SamplingCreateMessage, "sampling"),
            (Operation::ElicitationCreate, "elicitation"),
            (Operation::RootsList, "roots"),
        ] {
            if self.engine.anyone_may(server, &op) {
                caps.insert(key.into(), json!({}));
            }
        }
        Value::Object(caps)
    }

    /// The request timeout of a server (`timeouts.request`, default 60 s).
    fn timeout(&self, server: &str) -> std::time::Duration {
        let c = &self.config;
        c.servers
            .iter()
            .chain(c.groups.iter().flat_map(|g| g.servers.iter()))
            .find(|s| s.name == server)
            .and_then(|s| s.timeouts.request.map(|d| d.0))
            .unwrap_or(DEFAULT_REQUEST_TIMEOUT)
    }

    fn on_connected(&self, server: &str, up: &Arc<Upstream>, key: &ConnKey) {
        let caps = up.init.get("capabilities").cloned().unwrap_or(json!({}));
        self.caps.lock().entry(server.to_string()).or_insert(caps);
        self.metrics.upstream_started(server);
        self.audit.write(
            Record::new("upstream.start")
                .server(server)
                .detail(json!({ "connection": key.label() })),
        );
        let mut rx = up.events();
        let tx = self.events.clone();
        let name = server.to_string();
        let key = key.clone();
        let audit = self.audit.clone();
        tokio::spawn(async move {
            let event = |event| ServerEvent {
                server: name.clone(),
                connection: key.clone(),
                event,
            };
            loop {
                match rx.recv().await {
                    Ok(Event::Closed) => {
                        audit.write(
                            Record::new("upstream.exit")
                                .server(&name)
                                .detail(json!({ "connection": key.label() })),
                        );
                        let _ = tx.send(event(Event::Closed));
                        break;
                    }
                    Ok(ev) => {
                        let _ = tx.send(event(ev));
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
    }

    /// Report (at start) tool and prompt names that cannot be represented on `/mcp` as
    /// `<server><separator><name>` within `^[a-zA-Z0-9_-]{1,64}$`, which strict clients require.
    pub async fn report_unrepresentable_names(&self, server: &str) -> Vec<String> {
        let Ok(up) = self.upstream(None, server, None).await else {
            return Vec::new();
        };
        let ct = CancellationToken::new();
        let mut bad = Vec::new();
        for (method, key) in [("tools/list", "tools"), ("prompts/list", "prompts")] {
            let Ok(r) = up
                .call(method, json!({}), None, None, &ct, DEFAULT_REQUEST_TIMEOUT)
                .await
            else {
                continue;
            };
            for n in r
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|i| i.get("name").and_then(Value::as_str))
            {
                let full = format!("{server}{}{n}", self.config.name_separator);
                if full.len() > 64
                    || !full
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    tracing::warn!(
                        server,
                        "`{}` cannot be represented on /mcp as `{}` (over 64 characters or outside [a-zA-Z0-9_-]); use /mcp/{server}",
                        crate::diagnostics::escape_control(n),
                        crate::diagnostics::escape_control(&full)
                    );
                    bad.push(full);
                }
            }
        }
        bad
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

    /// Handle one operation. Lifecycle (initialize, ping, notifications) is the transport's.
    pub async fn handle(
        &self,
        caller: &Caller,
        method: &str,
        params: Value,
        progress: Option<Progress>,
        ct: &CancellationToken,
    ) -> Result<Value, RpcError> {
        let started = Instant::now();
        if !self.audit.enabled() {
            let (server_label, result) = self.dispatch(caller, method, params, progress, ct).await;
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
        let record = self.request_record(caller, method, &params);
        let slot = crate::audit::record::new_slot(record.request_id.clone());
        // If this future is dropped (the client went away, shutdown), the record is still
        // written, as cancelled: a forwarded request always has its line.
        let mut pending = PendingRecord {
            audit: self.audit.clone(),
            record: Some(record),
            slot: slot.clone(),
            started,
        };
        let (server_label, result) = crate::audit::record::in_slot(
            slot.clone(),
            self.dispatch(caller, method, params, progress, ct),
        )
        .await;
        let Some(mut record) = pending.record.take() else {
            return self.finish(caller, method, result);
        };
        let slot = crate::audit::record::take_slot(&slot);
        let took = started.elapsed();
        self.metrics
            .request(&server_label, method, metric_outcome(&result), took);
        record.server = Some(server_label);
        record.outcome = Some(audit_outcome(&result, slot.decision));
        if let Err(e) = &result {
            record.error_code = Some(e.code);
        }
        slot.apply(&mut record);
        crate::audit::record::set_latency(&mut record, took);
        self.audit.write(record);
        self.finish(caller, method, result)
    }

    fn finish(
        &self,
        caller: &Caller,
        method: &str,
        result: Result<Value, RpcError>,
    ) -> Result<Value, RpcError> {
        result.map(|v| {
            if caller.modern {
                modernize(v, method)
            } else {
                v
            }
        })
    }

    /// The request record before dispatch: who, what, and the shape of the arguments.
    fn request_record(&self, caller: &Caller, method: &str, params: &Value) -> Record {
        let mut r = Record::new("request");
        r.request_id = Some(format!("{:016x}", rand::random::<u64>()));
        r.session = caller.session.clone();
        r.subject = Some(subject_ref(caller));
        r.client = caller.info.client.clone();
        r.method = Some(method.chars().take(128).collect());
        let args = match method {
            "tools/call" | "prompts/get" => params.get("arguments"),
            "completion/complete" => params.get("argument"),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => None,
            _ => Some(params),
        };
        r.args = args
            .filter(|a| a.as_object().is_some_and(|o| !o.is_empty()))
            .map(args_shape);
        r
    }

    async fn dispatch(
        &self,
        caller: &Caller,
        method: &str,
        params: Value,
        progress: Option<Progress>,
        ct: &CancellationToken,
    ) -> (String, Result<Value, RpcError>) {
        let label = match &caller.endpoint {
            Endpoint::All => "*".to_string(),
            Endpoint::Server(s) => s.clone(),
        };
        let r = match method {
            "tools/list" => self.list(caller, Operation::ToolsList, params, ct).await,
            "prompts/list" => self.list(caller, Operation::PromptsList, params, ct).await,
            "resources/list" => {
                self.list(caller, Operation::ResourcesList, params, ct)
                    .await
            }
            "resources/templates/list" => {
                self.list(caller, Operation::ResourceTemplatesList, params, ct)
                    .await
            }
            "tools/call" => {
                self.named(caller, NameKind::Tool, method, params, progress, ct)
                    .await
            }
            "prompts/get" => {
                self.named(caller, NameKind::Prompt, method, params, progress, ct)
                    .await
            }
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                self.resource(caller, method, params, progress, ct).await
            }
            "completion/complete" => self.complete(caller, params, ct).await,
            "logging/setLevel" => self.set_level(caller, &params),
            m if m.starts_with("tasks/") => Err(RpcError::method_not_found(m)),
            other => self.custom(caller, other, params, progress, ct).await,
        };
        (label, r)
    }

    fn decide(&self, caller: &Caller, req: &Request) -> Decision {
        let d = self.engine.decide(&caller.subject, req);
        self.metrics
            .decision(req.server(), &req.operation().name(), d.is_allow());
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
                None => (None, "a rule decided".to_string()),
            },
            Reason::NoMatchingRule => (None, "no rule allows this (deny by default)".to_string()),
            Reason::UnknownServer => (
                None,
                "unknown server, or not visible to this subject".to_string(),
            ),
        };
        // Client-chosen: bounded, so one request cannot write an oversized line.
        let target: String = match req.kind() {
            TargetKind::Resource | TargetKind::ResourceTemplate => redact_uri(req.target()),
            _ => req.target().to_string(),
        }
        .chars()
        .take(512)
        .collect();
        let decision = d.effect.as_str();
        crate::audit::record::note(|s| {
            if s.decision == Some("allow") {
                return;
            }
            s.server = Some(req.server().to_string());
            s.operation = Some(req.operation().name().to_string());
            s.target = (!target.is_empty()).then_some(target);
            s.decision = Some(decision);
            s.rule = rule;
            s.reason = Some(reason);
        });
    }

    /// The servers this endpoint reaches for the subject.
    fn servers(&self, caller: &Caller) -> Vec<String> {
        match &caller.endpoint {
            Endpoint::All => self
                .engine
                .visible_servers(&caller.subject)
                .into_iter()
                .filter(|s| self.engine.can_use(&caller.subject, s))
                .map(str::to_string)
                .collect(),
            Endpoint::Server(s) => vec![s.clone()],
        }
    }

    /// Split an aggregated name into (server, name), or take a per-server name as is.
    fn split<'n>(&self, caller: &Caller, name: &'n str) -> Option<(String, &'n str)> {
        match &caller.endpoint {
            Endpoint::Server(s) => Some((s.clone(), name)),
            Endpoint::All => name
                .split_once(self.config.name_separator.as_str())
                .map(|(s, n)| (s.to_string(), n)),
        }
    }

    /// The group whose credentials serve a list for this subject and server.
    fn list_group(&self, caller: &Caller, server: &str, op: &Operation) -> Option<String> {
        let direct = op.direct_of_list().unwrap_or(Operation::ToolCall);
        // The first group of the subject with any allow of the direct operation there.
        let probe = Request::server_op(server, direct);
        let d = self.engine.decide(&caller.subject, &probe);
        self.engine
            .deciding_group(&d)
            .map(str::to_string)
            .or_else(|| caller.subject.groups.first().cloned())
    }

    async fn list(
        &self,
        caller: &Caller,
        op: Operation,
        params: Value,
        ct: &CancellationToken,
    ) -> Result<Value, RpcError> {
        let (key, item_key, method) = match op {
            Operation::ToolsList => ("tools", "name", "tools/list"),
            Operation::PromptsList => ("prompts", "name", "prompts/list"),
            Operation::ResourcesList => ("resources", "uri", "resources/list"),
            _ => (
                "resourceTemplates",
                "uriTemplate",
                "resources/templates/list",
            ),
        };
        let empty = || json!({ key: [] });
        if let Endpoint::Server(server) = &caller.endpoint {
            // One server: one upstream page, its cursor passed through unchanged.
            let Some(view) = self.engine.list_view(&caller.subject, server, &op) else {
                self.metrics.decision(server, &op.name(), false);
                note_list(server, &op, false);
                return Ok(empty());
            };
            self.metrics.decision(server, &op.name(), true);
            note_list(server, &op, true);
            let group = self.list_group(caller, server, &op);
            let up = self
                .upstream(Some(caller), server, group.as_deref())
                .await?;
            let first = params.get("cursor").is_none_or(Value::is_null);
            let mut result = up
                .call(
                    method,
                    strip_progress(params),
                    None,
                    None,
                    ct,
                    self.timeout(server),
                )
                .await
                .map_err(|e| upstream_error(server, e))?;
            let kept = self.keep(
                caller,
                &up,
                server,
                &op,
                &view,
                &mut result,
                key,
                item_key,
                first,
            );
            result[key] = Value::Array(kept);
            return Ok(result);
        }
        // Every usable server, one upstream page per response, behind Fentaris' own cursor.
        let servers = self.servers(caller);
        note_list("*", &op, true);
        let (start, mut upstream_cursor) = match params.get("cursor").filter(|c| !c.is_null()) {
            None => (0, None),
            Some(c) => {
                let (server, uc) = self
                    .open_cursor(&caller.subject, c)
                    .ok_or_else(|| RpcError::invalid_params("invalid cursor"))?;
                let i = servers
                    .iter()
                    .position(|s| *s == server)
                    .ok_or_else(|| RpcError::invalid_params("invalid cursor"))?;
                (i, uc)
            }
        };
        for i in start..servers.len() {
            let server = &servers[i];
            let cursor = upstream_cursor.take();
            let Some(view) = self.engine.list_view(&caller.subject, server, &op) else {
                continue;
            };
            let group = self.list_group(caller, server, &op);
            let up = match self.upstream(Some(caller), server, group.as_deref()).await {
                Ok(u) => u,
                Err(e) => {
                    tracing::warn!(
                        server,
                        "left out of the aggregated list: {}",
                        crate::diagnostics::Escaped(&e.message)
                    );
                    continue;
                }
            };
            let mut p = json!({});
            if let Some(c) = &cursor {
                p["cursor"] = c.clone();
            }
            let mut page = match up
                .call(method, p, None, None, ct, self.timeout(server))
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(
                        server,
                        "left out of the aggregated list: {}",
                        crate::diagnostics::Escaped(&e.to_string())
                    );
                    continue;
                }
            };
            let kept = self.keep(
                caller,
                &up,
                server,
                &op,
                &view,
                &mut page,
                key,
                item_key,
                cursor.is_none(),
            );
            let mut out = Map::new();
            out.insert(key.to_string(), Value::Array(kept));
            let next = match page.get("nextCursor").filter(|c| !c.is_null()) {
                Some(c) => Some(self.seal_cursor(&caller.subject, server, Some(c))),
                None => servers
                    .get(i + 1)
                    .map(|n| self.seal_cursor(&caller.subject, n, None)),
            };
            if let Some(n) = next {
                out.insert("nextCursor".into(), Value::String(n));
            }
            return Ok(Value::Object(out));
        }
        Ok(empty())
    }

    /// Filter one page of a list (and rename for `/mcp`), recording names and routes first.
    #[allow(clippy::too_many_arguments)]
    fn keep(
        &self,
        caller: &Caller,
        up: &Upstream,
        server: &str,
        op: &Operation,
        view: &crate::policy::ListView,
        page: &mut Value,
        key: &str,
        item_key: &str,
        first_page: bool,
    ) -> Vec<Value> {
        let items = page
            .get_mut(key)
            .and_then(Value::as_array_mut)
            .map(std::mem::take)
            .unwrap_or_default();
        let names = items
            .iter()
            .filter_map(|i| i.get(item_key).and_then(Value::as_str));
        match op {
            Operation::ToolsList => up.record_names(NameKind::Tool, names, first_page),
            Operation::PromptsList => up.record_names(NameKind::Prompt, names, first_page),
            _ => self.record_routes(server, op, &items, first_page),
        }
        let rename = caller.endpoint == Endpoint::All
            && matches!(op, Operation::ToolsList | Operation::PromptsList);
        items
            .into_iter()
            .filter(|i| {
                i.get(item_key)
                    .and_then(Value::as_str)
                    .is_some_and(|n| view.visible(n))
                    && (*op != Operation::ToolsList || self.pins.admits(self, server, i))
            })
            .map(|mut i| {
                if rename && let Some(n) = i.get("name").and_then(Value::as_str) {
                    i["name"] = Value::String(format!("{server}{}{n}", self.config.name_separator));
                }
                i
            })
            .collect()
    }

    /// An opaque cursor: (server, upstream cursor), bound to the subject and MAC'd.
    fn seal_cursor(&self, subject: &Subject, server: &str, upstream: Option<&Value>) -> String {
        let payload = json!({ "s": server, "c": upstream }).to_string();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let body = base64::Engine::encode(&b64, payload.as_bytes());
        let tag = self.cursor_tag(subject, &body);
        format!("{body}.{}", base64::Engine::encode(&b64, tag))
    }

    fn cursor_tag(&self, subject: &Subject, body: &str) -> [u8; 32] {
        use hmac::Mac;
        let mut m = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.cursor_key.bytes()[..])
            .expect("HMAC takes any key length");
        m.update(subject.id.as_bytes());
        m.update(b"\0");
        m.update(body.as_bytes());
        m.finalize().into_bytes().into()
    }

    /// Check and open a cursor this subject got from Fentaris.
    fn open_cursor(&self, subject: &Subject, cursor: &Value) -> Option<(String, Option<Value>)> {
        use subtle::ConstantTimeEq;
        let (body, tag) = cursor.as_str()?.split_once('.')?;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let given = base64::Engine::decode(&b64, tag).ok()?;
        let want = self.cursor_tag(subject, body);
        if given.len() != want.len() || !bool::from(want.ct_eq(&given)) {
            return None;
        }
        let v: Value = serde_json::from_slice(&base64::Engine::decode(&b64, body).ok()?).ok()?;
        let server = v.get("s")?.as_str()?.to_string();
        let c = v.get("c").filter(|c| !c.is_null()).cloned();
        Some((server, c))
    }

    fn record_routes(&self, server: &str, op: &Operation, items: &[Value], first: bool) {
        let mut routes = self.routes.lock();
        let r = routes.entry(server.to_string()).or_default();
        match op {
            Operation::ResourcesList => {
                if first {
                    r.uris.clear();
                }
                r.uris.extend(
                    items
                        .iter()
                        .filter_map(|i| i.get("uri").and_then(Value::as_str))
                        .filter_map(|u| crate::policy::uri::canonicalize(u).ok()),
                );
            }
            _ => {
                if first {
                    r.template_prefixes.clear();
                }
                r.template_prefixes.extend(
                    items
                        .iter()
                        .filter_map(|i| i.get("uriTemplate").and_then(Value::as_str))
                        .map(|t| t.split('{').next().unwrap_or(t).to_string())
                        .filter(|p| !p.is_empty()),
                );
            }
        }
    }

    /// Whether `name` is one of the upstream's tools or prompts, refreshing the list once
    /// (every page, within `limits.maxListPages` and `limits.listTimeout`) when it is not
    /// known. An upstream that pages without end gets an error naming it.
    async fn ensure_known(
        &self,
        up: &Upstream,
        kind: NameKind,
        name: &str,
        ct: &CancellationToken,
    ) -> Result<bool, RpcError> {
        if up.knows(kind, name) == Some(true) {
            return Ok(true);
        }
        let (method, key) = match kind {
            NameKind::Tool => ("tools/list", "tools"),
            NameKind::Prompt => ("prompts/list", "prompts"),
        };
        let mut first = true;
        let listed = up
            .all_pages(
                method,
                ct,
                DEFAULT_REQUEST_TIMEOUT,
                &super::upstream::PageLimits::of(&self.config.limits),
                |r| {
                    let names: Vec<&str> = r
                        .get(key)
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|i| i.get("name").and_then(Value::as_str))
                        .collect();
                    let bytes = names.iter().map(|n| n.len() + 16).sum();
                    up.record_names(kind, names.into_iter(), first);
                    first = false;
                    bytes
                },
            )
            .await;
        match listed {
            Ok(()) => Ok(up.knows(kind, name) == Some(true)),
            Err(UpstreamError::Transport(why)) => {
                tracing::warn!(server = %up.server, "{why}");
                Err(RpcError::internal(why))
            }
            Err(_) => Ok(false),
        }
    }

    async fn named(
        &self,
        caller: &Caller,
        kind: NameKind,
        method: &str,
        mut params: Value,
        progress: Option<Progress>,
        ct: &CancellationToken,
    ) -> Result<Value, RpcError> {
        let hidden = |n: &str| match kind {
            NameKind::Tool => RpcError::unknown_tool(n),
            NameKind::Prompt => RpcError::unknown_prompt(n),
        };
        let given = params
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| RpcError::invalid_params("`name` is required"))?
            .to_string();
        let (server, name) = self.split(caller, &given).ok_or_else(|| hidden(&given))?;
        let name = name.to_string();
        let req = match kind {
            NameKind::Tool => Request::tool_call(&server, &name),
            NameKind::Prompt => Request::prompt_get(&server, &name),
        };
        let d = self.decide(caller, &req);
        if !d.is_allow() {
            return Err(hidden(&given));
        }
        let up = self.upstream_for(caller, &server, &d).await?;
        if !self.ensure_known(&up, kind, &name, ct).await? {
            return Err(hidden(&given));
        }
        if kind == NameKind::Tool && !self.pins.admits_call(self, &up, &server, &name, ct).await {
            return Err(hidden(&given));
        }
        params["name"] = Value::String(name.clone());
        let (op, mw) = match kind {
            NameKind::Tool => (Operation::ToolCall, MwKind::Tool),
            NameKind::Prompt => (Operation::PromptGet, MwKind::Prompt),
        };
        let args = params.get("arguments").cloned().unwrap_or(json!({}));
        let step = Step {
            server: &server,
            op,
            target: &name,
            kind: Some(mw),
            args,
        };
        self.guarded(caller, up, step, method, params, progress, ct)
            .await
    }

    /// After policy allowed a request: argument schemas, the external authorizer, then the
    /// middleware chain (global, then per target), ending in the upstream.
    #[allow(clippy::too_many_arguments)]
    async fn guarded(
        &self,
        caller: &Caller,
        up: Arc<Upstream>,
        step: Step<'_>,
        method: &str,
        params: Value,
        progress: Option<Progress>,
        ct: &CancellationToken,
    ) -> Result<Value, RpcError> {
        let op_name = step.op.name();
        if step.op == Operation::ToolCall {
            self.argument_rules
                .check(step.server, step.target, &step.args)?;
        }
        if !self.authorizers.is_empty() {
            let waiting = |n: u64| {
                if let Some(p) = &progress
                    && let Some(t) = &p.token
                {
                    let _ = p.sink.send(json!({ "jsonrpc": "2.0", "method": "notifications/progress",
                        "params": { "progressToken": t, "progress": n, "message": "waiting for the external authorizer" } }));
                }
            };
            let request_id = crate::audit::record::current_request_id();
            let q = crate::middleware::authorizer::Question {
                subject: &caller.subject,
                server: step.server,
                operation: &op_name,
                target: step.target,
                request_id: request_id.as_deref(),
                args: &step.args,
            };
            self.authorizers.check(&q, &waiting).await?;
        }
        let chain = self
            .middleware
            .chain_for(step.server, step.kind, step.target);
        if chain.is_empty() {
            return self
                .forward(&up, method, params, progress, caller, ct)
                .await;
        }
        let me = self
            .me
            .get()
            .and_then(std::sync::Weak::upgrade)
            .ok_or_else(|| RpcError::internal("middleware needs a shared proxy (Proxy::shared)"))?;
        let ctx = Ctx::new(
            caller.subject.clone(),
            step.server,
            &op_name,
            step.target,
            step.args,
            self.audit.clone(),
        );
        let (caller, ct, method) = (caller.clone(), ct.clone(), method.to_string());
        Next::new(chain, move |_ctx| {
            Box::pin(async move {
                me.forward(&up, &method, params, progress, &caller, &ct)
                    .await
            })
        })
        .run(ctx)
        .await
    }

    async fn forward(
        &self,
        up: &Upstream,
        method: &str,
        params: Value,
        channel: Option<Progress>,
        caller: &Caller,
        ct: &CancellationToken,
    ) -> Result<Value, RpcError> {
        let server = up.server.as_str();
        // The lowest log level this request's client wants: the session's `logging/setLevel`,
        // or for a 2026-07-28 client the level its request names (none named: no log lines).
        let log_min = if caller.modern {
            params
                .pointer("/_meta/io.modelcontextprotocol~1logLevel")
                .and_then(Value::as_str)
                .and_then(log_rank)
                .unwrap_or(u8::MAX)
        } else {
            caller
                .info
                .log_level
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        let params = strip_progress(params);
        let timeout = self.timeout(server);
        let sent = Instant::now();
        let _timing = UpstreamTiming(sent);
        let Some(channel) = channel else {
            return up
                .call(method, params, None, None, ct, timeout)
                .await
                .map_err(|e| upstream_error(server, e));
        };
        let (ptx, mut prx) = mpsc::unbounded_channel::<Value>();
        // Relayed requests still open when this call ends are withdrawn from the client.
        let done = CancellationToken::new();
        let _done_guard = done.clone().drop_guard();
        let (btx, mut brx) = mpsc::unbounded_channel::<Relayed>();
        let relay = |mut p: Value| {
            if let Some(t) = &channel.token {
                p["progressToken"] = t.clone();
                let _ = channel.sink.send(
                    json!({ "jsonrpc": "2.0", "method": "notifications/progress", "params": p }),
                );
            }
        };
        let call = up.call(
            method,
            params,
            channel.token.is_some().then_some(&ptx),
            Some(&btx),
            ct,
            timeout,
        );
        tokio::pin!(call);
        let mut relayed: Vec<tokio::task::JoinHandle<()>> = Vec::new();
        let result = loop {
            tokio::select! {
                biased;
                Some(p) = prx.recv() => relay(p),
                Some(item) = brx.recv() => match item {
                    Relayed::Request(req) => relayed.extend(self.to_client(caller, server, req, &channel, &done)),
                    Relayed::Notification(method, params) => self.log_to_client(caller, server, &method, params, &channel, log_min),
                },
                r = &mut call => {
                    // Progress and log lines the upstream sent before its response are
                    // already queued. (A request still queued is dropped: the upstream gets
                    // an error answer, as its caller's request is over.)
                    while let Ok(p) = prx.try_recv() {
                        relay(p);
                    }
                    while let Ok(item) = brx.try_recv() {
                        if let Relayed::Notification(method, params) = item {
                            self.log_to_client(caller, server, &method, params, &channel, log_min);
                        }
                    }
                    break r;
                }
            }
        };
        // Relayed requests still open are withdrawn now, so every message about them reaches
        // the client before the response.
        done.cancel();
        for h in relayed {
            let _ = h.await;
        }
        result.map_err(|e| upstream_error(server, e))
    }

    /// A log line from the upstream, tied to a running request of this client: passed on, on
    /// that request's stream, when policy lets the subject set the log level on the server
    /// (`logging:setLevel`, the operation that governs logging) and the line is at or above
    /// the client's level (`min`, a [`log_rank`]; 0: none set). Otherwise dropped and counted.
    fn log_to_client(
        &self,
        caller: &Caller,
        server: &str,
        method: &str,
        params: Value,
        channel: &Progress,
        min: u8,
    ) {
        let allowed = self
            .engine
            .decide(
                &caller.subject,
                &Request::server_op(server, Operation::LoggingSetLevel),
            )
            .is_allow();
        let rank = params
            .get("level")
            .and_then(Value::as_str)
            .and_then(log_rank);
        match rank {
            Some(r) if allowed && r >= min => {
                let _ = channel
                    .sink
                    .send(crate::jsonrpc::notification(method, Some(params)));
            }
            // Below the session's level: not wanted, not a loss.
            Some(_) if allowed => {}
            _ => {
                self.metrics.messages_dropped(server).inc();
            }
        }
    }

    /// A request from the upstream to the client that caused it: decided by policy
    /// (`sampling:createMessage`, `elicitation:create`, `roots:list`, `custom:<method>`), then
    /// sent on the client request's own stream; the client's answer goes back upstream.
    fn to_client(
        &self,
        caller: &Caller,
        server: &str,
        req: super::upstream::ServerRequest,
        channel: &Progress,
        done: &CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let refuse = |req: super::upstream::ServerRequest, why: String| {
            let _ = req
                .reply
                .send(Err(json!({ "code": -32601, "message": why })));
        };
        let op = match req.method.as_str() {
            "sampling/createMessage" => Operation::SamplingCreateMessage,
            "elicitation/create" => Operation::ElicitationCreate,
            "roots/list" => Operation::RootsList,
            other => Operation::Custom(other.into()),
        };
        let allowed = self
            .decide(caller, &Request::server_op(server, op))
            .is_allow();
        if self.audit.enabled() {
            let mut r = Record::new("relay");
            r.request_id = crate::audit::record::current_request_id();
            r.session = caller.session.clone();
            r.subject = Some(subject_ref(caller));
            r.server = Some(server.to_string());
            r.method = Some(req.method.clone());
            r.decision = Some(if allowed { "allow" } else { "deny" });
            self.audit.write(r);
        }
        if !allowed {
            let why = format!("{} is not allowed for this client", req.method);
            refuse(req, why);
            return None;
        }
        if caller.modern {
            let why = format!(
                "{} cannot reach a 2026-07-28 client through Fentaris",
                req.method
            );
            refuse(req, why);
            return None;
        }
        let id = format!(
            "fnt-{}",
            NEXT_CLIENT_REQUEST.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let (tx, rx) = tokio::sync::oneshot::channel();
        channel.replies.lock().insert(id.clone(), tx);
        let msg = json!({ "jsonrpc": "2.0", "id": id, "method": req.method, "params": req.params });
        if channel.sink.send(msg).is_err() {
            channel.replies.lock().remove(&id);
            refuse(req, "the client is gone".into());
            return None;
        }
        let replies = channel.replies.clone();
        let sink = channel.sink.clone();
        let done = done.clone();
        Some(tokio::spawn(async move {
            let answer = tokio::select! {
                r = tokio::time::timeout(std::time::Duration::from_secs(600), rx) => match r {
                    Ok(Ok(a)) => Some(a),
                    _ => Some(Err(json!({ "code": -32603, "message": "the client did not answer" }))),
                },
                _ = req.withdrawn.cancelled() => {
                    // The upstream withdrew it: cancellation goes on to the client.
                    let _ = sink.send(json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": id, "reason": "withdrawn by the server" } }));
                    None
                }
                _ = done.cancelled() => {
                    // The client request that caused it is over: withdraw it, free the stream.
                    let _ = sink.send(json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": id, "reason": "the request that caused it has ended" } }));
                    Some(Err(json!({ "code": -32800, "message": "the request that caused it has ended" })))
                }
            };
            replies.lock().remove(&id);
            if let Some(a) = answer {
                let _ = req.reply.send(a);
            }
        }))
    }

    /// Route a resource URI on `/mcp` to the one visible server that listed it.
    fn route_uri(&self, caller: &Caller, uri: &str) -> Result<String, RpcError> {
        let visible: Vec<String> = self.servers(caller);
        let routes = self.routes.lock();
        let mut hits: Vec<String> = visible
            .iter()
            .filter(|s| {
                routes.get(*s).is_some_and(|r| {
                    r.uris.contains(uri)
                        || r.template_prefixes
                            .iter()
                            .any(|p| uri.starts_with(p.as_str()))
                })
            })
            .cloned()
            .collect();
        hits.dedup();
        match hits.len() {
            0 => Err(RpcError::unknown_resource(uri)),
            1 => Ok(hits.remove(0)),
            _ => Err(RpcError::invalid_params(format!(
                "resource {uri} is offered by several servers; read it through one of: {}",
                hits.iter()
                    .map(|s| format!("/mcp/{s}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    async fn resource(
        &self,
        caller: &Caller,
        method: &str,
        mut params: Value,
        progress: Option<Progress>,
        ct: &CancellationToken,
    ) -> Result<Value, RpcError> {
        let raw = params
            .get("uri")
            .and_then(Value::as_str)
            .ok_or_else(|| RpcError::invalid_params("`uri` is required"))?
            .to_string();
        let canonical = crate::policy::uri::canonicalize(&raw)
            .map_err(|e| RpcError::invalid_params(format!("invalid resource URI: {e}")))?;
        let server = match &caller.endpoint {
            Endpoint::Server(s) => s.clone(),
            Endpoint::All => {
                if method != "resources/read" {
                    return Err(RpcError::new(
                        code::METHOD_NOT_FOUND,
                        "subscriptions are offered on the per-server endpoints (/mcp/<server>)",
                    )
                    .kind(Kind::Invalid));
                }
                self.route_uri(caller, &canonical)?
            }
        };
        let op = if method == "resources/read" {
            Operation::ResourceRead
        } else {
            Operation::ResourceSubscribe
        };
        let req = Request::new(&server, op.clone(), &canonical, TargetKind::Resource)
            .map_err(|e| RpcError::invalid_params(format!("invalid resource URI: {e}")))?;
        let d = self.decide(caller, &req);
        if !d.is_allow() {
            return Err(RpcError::unknown_resource(&raw));
        }
        let up = self.upstream_for(caller, &server, &d).await?;
        params["uri"] = Value::String(canonical.clone());
        let step = Step {
            server: &server,
            op,
            target: &canonical,
            kind: Some(MwKind::Resource),
            args: json!({}),
        };
        self.guarded(caller, up, step, method, params, progress, ct)
            .await
    }

    async fn complete(
        &self,
        caller: &Caller,
        mut params: Value,
        ct: &CancellationToken,
    ) -> Result<Value, RpcError> {
        let r#ref = params
            .get("ref")
            .cloned()
            .ok_or_else(|| RpcError::invalid_params("`ref` is required"))?;
        let kind = r#ref.get("type").and_then(Value::as_str).unwrap_or("");
        let mut sent_uri = String::new();
        let (server, target, tkind) = match kind {
            "ref/prompt" => {
                let given = r#ref
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| RpcError::invalid_params("`ref.name` is required"))?;
                let (server, name) = self
                    .split(caller, given)
                    .ok_or_else(|| RpcError::unknown_prompt(given))?;
                params["ref"]["name"] = Value::String(name.to_string());
                (server, name.to_string(), TargetKind::Prompt)
            }
            "ref/resource" => {
                let raw = r#ref
                    .get("uri")
                    .and_then(Value::as_str)
                    .ok_or_else(|| RpcError::invalid_params("`ref.uri` is required"))?;
                // Canonical (or refused) like resources/read; forwarded in that form.
                let uri = crate::policy::uri::canonicalize_reference(raw)
                    .map_err(|e| RpcError::invalid_params(format!("invalid resource URI: {e}")))?;
                let server = match &caller.endpoint {
                    Endpoint::Server(s) => s.clone(),
                    Endpoint::All => self.route_uri(caller, &uri)?,
                };
                params["ref"]["uri"] = Value::String(uri.clone());
                sent_uri = raw.to_string();
                (server, uri, TargetKind::ResourceTemplate)
            }
            other => {
                return Err(RpcError::invalid_params(format!(
                    "unknown completion reference type `{other}`"
                )));
            }
        };
        let req = Request::new(&server, Operation::CompletionComplete, &target, tkind)
            .map_err(|e| RpcError::invalid_params(format!("invalid resource URI: {e}")))?;
        let d = self.decide(caller, &req);
        if !d.is_allow() {
            return Err(match tkind {
                TargetKind::Prompt => RpcError::unknown_prompt(&target),
                _ => RpcError::unknown_resource(&sent_uri),
            });
        }
        let up = self.upstream_for(caller, &server, &d).await?;
        // A prompt name reaches the upstream only as it listed it, byte for byte.
        if tkind == TargetKind::Prompt
            && !self
                .ensure_known(&up, NameKind::Prompt, &target, ct)
                .await?
        {
            return Err(RpcError::unknown_prompt(&target));
        }
        let mw = match tkind {
            TargetKind::Prompt => MwKind::Prompt,
            _ => MwKind::Resource,
        };
        let args = params.get("argument").cloned().unwrap_or(json!({}));
        let step = Step {
            server: &server,
            op: Operation::CompletionComplete,
            target: &target,
            kind: Some(mw),
            args,
        };
        self.guarded(caller, up, step, "completion/complete", params, None, ct)
            .await
    }

    /// Log levels are per session: the level is accepted (if allowed) and kept for the
    /// session, not forwarded (a connection may be shared). Upstream log lines tied to one of
    /// the session's requests are passed on at or above it (see [`Proxy::log_to_client`]).
    fn set_level(&self, caller: &Caller, params: &Value) -> Result<Value, RpcError> {
        let allowed = self.servers(caller).iter().any(|s| {
            self.decide(caller, &Request::server_op(s, Operation::LoggingSetLevel))
                .is_allow()
        });
        if !allowed {
            return Err(RpcError::method_not_found("logging/setLevel"));
        }
        let level = params.get("level").and_then(Value::as_str).unwrap_or("");
        let rank = log_rank(level).ok_or_else(|| {
            RpcError::invalid_params(format!(
                "invalid log level `{}`; use one of: {}",
                level.chars().take(32).collect::<String>(),
                LOG_LEVELS.join(", ")
            ))
        })?;
        caller
            .info
            .log_level
            .store(rank, std::sync::atomic::Ordering::Relaxed);
        Ok(json!({}))
    }

    async fn custom(
        &self,
        caller: &Caller,
        method: &str,
        params: Value,
        progress: Option<Progress>,
        ct: &CancellationToken,
    ) -> Result<Value, RpcError> {
        let Endpoint::Server(server) = &caller.endpoint else {
            return Err(RpcError::method_not_found(method));
        };
        let req = Request::server_op(server, Operation::Custom(method.into()));
        let d = self.decide(caller, &req);
        if !d.is_allow() {
            return Err(RpcError::method_not_found(method));
        }
        let up = self.upstream_for(caller, server, &d).await?;
        let step = Step {
            server,
            op: Operation::Custom(method.into()),
            target: "",
            kind: None,
            args: json!({}),
        };
        self.guarded(caller, up, step, method, params, progress, ct)
            .await
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
        s.operation = Some(op.name().to_string());
        s.decision = Some(if any { "allow" } else { "deny" });
        s.reason = Some(if any {
            "the list is filtered by policy".to_string()
        } else {
            "nothing on this server is visible to the subject".to_string()
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
    record: Option<Record>,
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
            self.audit.write(r);
        }
    }
}

/// What the middleware steps see of an allowed request.
struct Step<'a> {
    server: &'a str,
    op: Operation,
    target: &'a str,
    kind: Option<MwKind>,
    args: Value,
}

/// The outcome label of a request in `/metrics`.
fn metric_outcome(result: &Result<Value, RpcError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) if e.kind == Kind::Cancelled => "cancelled",
        Err(_) => "error",
    }
}

/// The outcome of a request in its audit line, from the kind of its error and the policy
/// decision (`None`: it never reached policy).
fn audit_outcome(result: &Result<Value, RpcError>, decision: Option<&str>) -> &'static str {
    let e = match result {
        Ok(v) if v.get("isError").and_then(Value::as_bool) == Some(true) => return "tool_error",
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
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    /// An upstream in memory: tools `echo` and `secret`; `echo` reports progress first when
    /// asked to. Answers every request, ignores notifications.
    fn fake_upstream(io: tokio::io::DuplexStream) {
        tokio::spawn(async move {
            let (r, mut w) = tokio::io::split(io);
            let mut lines = BufReader::new(r).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(msg) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let (Some(id), Some(method)) = (msg.get("id"), msg["method"].as_str()) else {
                    continue;
                };
                let mut out = String::new();
                let result = match method {
                    "initialize" => json!({
                        "protocolVersion": super::super::upstream::UPSTREAM_PROTOCOL,
                        "capabilities": { "tools": { "listChanged": true } },
                        "serverInfo": { "name": "fake", "version": "1" }
                    }),
                    "tools/list" => json!({ "tools": [
                        { "name": "echo", "inputSchema": { "type": "object" }, "x-extra": 1 },
                        { "name": "secret", "inputSchema": { "type": "object" } }
                    ] }),
                    "tools/call" => {
                        if let Some(t) = msg.pointer("/params/_meta/progressToken") {
                            out.push_str(
                                &crate::jsonrpc::notification(
                                    "notifications/progress",
                                    Some(json!({ "progressToken": t, "progress": 1 })),
                                )
                                .to_string(),
                            );
                            out.push('\n');
                        }
                        json!({ "content": [{ "type": "text", "text": msg["params"]["arguments"]["text"] }] })
                    }
                    _ => json!({}),
                };
                out.push_str(&crate::jsonrpc::response(id.clone(), result).to_string());
                out.push('\n');
                if w.write_all(out.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }

    /// A proxy whose server `mem` is the in-memory upstream; alice may call `echo` only.
    async fn proxy() -> Arc<Proxy> {
        let config: Config = serde_json::from_value(json!({
            "servers": [{ "name": "mem", "transport": { "stdio": { "command": "unused" } } }],
            "groups": [{ "id": "g", "users": ["alice"],
                "policy": { "rules": [{ "mcp": "mem", "allow": ["echo"] }] } }]
        }))
        .unwrap();
        let proxy = Proxy::new(config, PathBuf::from("."), None, Box::new(|_| None)).shared();
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        fake_upstream(theirs);
        let up = Upstream::in_memory("mem", ours).await.unwrap();
        let key = proxy.shared_key("mem").unwrap();
        proxy.pool.insert(key, up).await;
        proxy
    }

    fn caller(proxy: &Proxy, endpoint: Endpoint) -> Caller {
        Caller {
            subject: Arc::new(proxy.engine.subject("alice")),
            endpoint,
            modern: false,
            session: None,
            info: Arc::default(),
        }
    }

    #[tokio::test]
    async fn lists_show_only_what_policy_allows_and_keep_unknown_fields() {
        let proxy = proxy().await;
        let ct = CancellationToken::new();
        let c = caller(&proxy, Endpoint::Server("mem".into()));
        let list = proxy
            .handle(&c, "tools/list", json!({}), None, &ct)
            .await
            .unwrap();
        let tools = list["tools"].as_array().unwrap();
        assert_eq!(tools.len(), 1, "{list}");
        assert_eq!(tools[0]["name"], "echo");
        assert_eq!(tools[0]["x-extra"], 1);
    }

    #[tokio::test]
    async fn a_denied_tool_is_unknown_and_an_allowed_one_is_forwarded() {
        let proxy = proxy().await;
        let ct = CancellationToken::new();
        let c = caller(&proxy, Endpoint::Server("mem".into()));
        let call = |name: &str| json!({ "name": name, "arguments": { "text": "hi" } });
        let denied = proxy
            .handle(&c, "tools/call", call("secret"), None, &ct)
            .await
            .unwrap_err();
        let unknown = proxy
            .handle(&c, "tools/call", call("nope"), None, &ct)
            .await
            .unwrap_err();
        assert_eq!(
            (denied.code, denied.message.as_str()),
            (-32602, "Unknown tool: secret")
        );
        assert_eq!(unknown.code, denied.code);
        let ok = proxy
            .handle(&c, "tools/call", call("echo"), None, &ct)
            .await
            .unwrap();
        assert_eq!(ok["content"][0]["text"], "hi");
        // The 2026-07-28 shape for modern callers.
        let modern = Caller { modern: true, ..c };
        let ok = proxy
            .handle(&modern, "tools/call", call("echo"), None, &ct)
            .await
            .unwrap();
        assert_eq!(ok["resultType"], "complete");
    }

    #[tokio::test]
    async fn progress_reaches_the_caller_with_its_own_token_before_the_result() {
        let proxy = proxy().await;
        let ct = CancellationToken::new();
        let c = caller(&proxy, Endpoint::Server("mem".into()));
        let (sink, mut rx) = mpsc::unbounded_channel();
        let progress = Progress {
            token: Some(json!("mine")),
            sink,
            replies: Replies::default(),
        };
        let params = json!({ "name": "echo", "arguments": { "text": "hi" }, "_meta": { "progressToken": "mine" } });
        let ok = proxy
            .handle(&c, "tools/call", params, Some(progress), &ct)
            .await
            .unwrap();
        assert_eq!(ok["content"][0]["text"], "hi");
        let note = rx.try_recv().expect("progress before the result");
        assert_eq!(note["method"], "notifications/progress");
        assert_eq!(note["params"]["progressToken"], "mine");
    }

    #[tokio::test]
    async fn a_cancelled_request_is_cancelled() {
        let proxy = proxy().await;
        let c = caller(&proxy, Endpoint::Server("mem".into()));
        // Names known first (a cancelled first call cannot list them).
        let live = CancellationToken::new();
        proxy
            .handle(&c, "tools/list", json!({}), None, &live)
            .await
            .unwrap();
        let ct = CancellationToken::new();
        ct.cancel();
        let e = proxy
            .handle(
                &c,
                "tools/call",
                json!({ "name": "echo", "arguments": {} }),
                None,
                &ct,
            )
            .await
            .unwrap_err();
        assert_eq!((e.code, e.kind), (-32800, Kind::Cancelled));
        assert_eq!(metric_outcome(&Err(e)), "cancelled");
    }

    #[test]
    fn audit_outcomes_come_from_the_kind_and_the_decision() {
        let err = |e: RpcError| Err::<Value, _>(e);
        assert_eq!(
            audit_outcome(&Ok(json!({ "isError": true })), Some("allow")),
            "tool_error"
        );
        assert_eq!(audit_outcome(&Ok(json!({})), Some("allow")), "ok");
        assert_eq!(
            audit_outcome(&err(RpcError::unknown_tool("x")), Some("deny")),
            "denied"
        );
        assert_eq!(
            audit_outcome(&err(RpcError::unknown_tool("x")), None),
            "invalid"
        );
        assert_eq!(
            audit_outcome(&err(RpcError::denied("middleware", "no")), Some("deny")),
            "denied_by_middleware"
        );
        let timeout = upstream_error(
            "s",
            UpstreamError::Timeout(std::time::Duration::from_secs(1)),
        );
        assert_eq!(audit_outcome(&err(timeout), Some("allow")), "timeout");
        let gone = upstream_error("s", UpstreamError::Closed("upstream `s` exited".into()));
        assert_eq!(gone.message, "upstream `s` exited");
        assert_eq!(audit_outcome(&err(gone), Some("allow")), "unavailable");
        let theirs = upstream_error(
            "s",
            UpstreamError::Rpc(json!({ "code": -32602, "message": "bad" })),
        );
        assert_eq!(audit_outcome(&err(theirs), Some("allow")), "error");
    }

    #[test]
    fn progress_tokens_and_the_new_envelope_are_stripped_before_forwarding() {
        let p = strip_progress(json!({ "a": 1, "_meta": {
            "progressToken": "t",
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {},
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/logLevel": "info"
        } }));
        assert_eq!(p, json!({ "a": 1 }));
        let p = strip_progress(json!({ "_meta": { "progressToken": "t", "keep": true } }));
        assert_eq!(p, json!({ "_meta": { "keep": true } }));
    }

    #[test]
    fn modern_results_get_result_type_and_cache_hints() {
        let v = modernize(json!({ "tools": [] }), "tools/list");
        assert_eq!(
            v,
            json!({ "tools": [], "resultType": "complete", "ttlMs": 0, "cacheScope": "private" })
        );
        let v = modernize(
            json!({ "content": [], "resultType": "other" }),
            "tools/call",
        );
        assert_eq!(v, json!({ "content": [], "resultType": "other" }));
    }

    #[test]
    fn events_of_isolated_connections_reach_only_their_session() {
        let key = ConnKey::shared(Arc::from("mem#00"));
        let ev = |connection: ConnKey| ServerEvent {
            server: "mem".into(),
            connection,
            event: Event::ToolsChanged,
        };
        assert!(ev(key.clone()).for_session(Some("a")));
        let mine = ev(key.clone().owned_by(Owner::Session("a".into())));
        assert!(mine.for_session(Some("a")) && !mine.for_session(Some("b")));
        assert!(!ev(key.owned_by(Owner::User("u".into()))).for_session(None));
    }
}
