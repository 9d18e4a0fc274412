//! Upstream MCP connections at the JSON level, so every field of every result reaches the
//! client exactly as the upstream sent it (rmcp's typed model drops fields it does not know).
//!
//! One [`Upstream`] is one initialized connection: a stdio child in its own process group with
//! a scrubbed environment, or a streamable-HTTP endpoint. Requests get our own ids; responses
//! are matched by id; progress is routed, in wire order, to the request that asked for it;
//! list-changed and resource-updated notifications are broadcast to the sessions that can see
//! this server; log lines and server-to-client requests go to the client request they are tied
//! to ([`Relayed`]); anything that cannot be tied to a request (log lines, server-to-client
//! requests on a shared stdio connection) is dropped or refused, and counted.

mod h1;
mod http;
mod sse;
mod stdio;

use http::{HttpConn, http_post, origin_of};
use stdio::spawn_stdio;
#[cfg(test)]
use stdio::wire_lines;

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// The protocol revision Fentaris speaks to upstreams (the newest with `initialize`).
pub const UPSTREAM_PROTOCOL: &str = "2025-11-25";

/// How to reach an upstream.
#[derive(Debug, Clone)]
pub enum Spec {
    Stdio {
        command: String,
        args: Vec<String>,
        /// The child's whole environment (already scrubbed and resolved).
        env: BTreeMap<String, String>,
        cwd: Option<PathBuf>,
    },
    Http {
        url: String,
        /// Every header sent upstream (auth, literal, env-mapped, resolved); never client headers.
        headers: Vec<(String, String)>,
        connect_timeout: Duration,
    },
}

/// What went wrong with an upstream request. The messages of `Closed` and `Transport` name
/// the server already.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// The upstream answered with a JSON-RPC error (passed through unchanged).
    #[error("{}", rpc_message(.0))]
    Rpc(Value),
    /// The connection is gone (or never started).
    #[error("{0}")]
    Closed(String),
    #[error("timed out after {}s", .0.as_secs_f32())]
    Timeout(Duration),
    #[error("cancelled")]
    Cancelled,
    /// This request could not be carried (HTTP status, unreadable or oversized answer).
    #[error("{0}")]
    Transport(String),
}

fn rpc_message(v: &Value) -> &str {
    v.get("message").and_then(Value::as_str).unwrap_or("error")
}

/// Notifications that sessions may receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    ToolsChanged,
    PromptsChanged,
    ResourcesChanged,
    ResourceUpdated(String),
    Closed,
}

/// Where the answer to one of our requests goes: the upstream's `result`, as the bytes it
/// sent (parsed only where Fentaris needs to look inside).
type Pending = oneshot::Sender<Result<Box<RawValue>, UpstreamError>>;

/// One message from an upstream, read without building a tree of its `result`.
#[derive(serde::Deserialize)]
struct Incoming {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    result: Option<Box<RawValue>>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    params: Option<Value>,
}

/// A request from the upstream to the client (sampling, elicitation, roots), handed to the
/// downstream request that caused it.
pub struct ServerRequest {
    pub method: String,
    pub params: Value,
    /// The client's answer (result or JSON-RPC error object).
    pub reply: oneshot::Sender<Result<Value, Value>>,
    /// Cancelled when the upstream withdraws the request (`notifications/cancelled`).
    pub withdrawn: CancellationToken,
}

/// What an upstream sends toward the client of one request while it runs: a request to
/// answer (sampling, elicitation, roots), or a log line (`notifications/message`).
pub enum Relayed {
    Request(ServerRequest),
    /// A notification's method and params.
    Notification(String, Value),
}

/// Sends a message back to the upstream (a reply to one of its requests).
type Replier = std::sync::Arc<dyn Fn(Value) + Send + Sync>;

/// An HTTP upstream's POST in progress (see [`http::http_post`]).
type HttpPost = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Which kind of name list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Tool,
    Prompt,
}

#[derive(Default)]
struct Known {
    tools: Option<std::collections::HashSet<String>>,
    prompts: Option<std::collections::HashSet<String>>,
}

impl Known {
    fn slot(&mut self, kind: NameKind) -> &mut Option<std::collections::HashSet<String>> {
        match kind {
            NameKind::Tool => &mut self.tools,
            NameKind::Prompt => &mut self.prompts,
        }
    }
}

struct Shared {
    name: String,
    /// Our request id -> where server-to-client requests caused by it go.
    bridges: Mutex<crate::FastMap<u64, mpsc::UnboundedSender<Relayed>>>,
    /// The connection belongs to one downstream session (`"isolation": "session"`).
    isolated: bool,
    replier: Mutex<Option<Replier>>,
    /// Requests from the upstream being relayed to a client, by their id.
    inbound: std::sync::Arc<Mutex<HashMap<String, CancellationToken>>>,
    known: Mutex<Known>,
    pending: Mutex<crate::FastMap<u64, Pending>>,
    progress: Mutex<crate::FastMap<String, mpsc::UnboundedSender<Value>>>,
    next_id: AtomicU64,
    events: broadcast::Sender<Event>,
    closed: CancellationToken,
    close_reason: Mutex<Option<String>>,
    /// Shared with the metrics: messages that could not be tied to a request or session.
    dropped: prometheus_client::metrics::counter::Counter,
    /// The largest message accepted (`limits.maxUpstreamMessageBytes`).
    max_message: usize,
}

impl Shared {
    /// Fail request `id`, if it is still waiting for its response, with `error`.
    fn fail(&self, id: Option<u64>, error: UpstreamError) {
        if let Some(id) = id
            && let Some(p) = self.pending.lock().remove(&id)
        {
            let _ = p.send(Err(error));
        }
    }

    fn new(
        server: &str,
        dropped: prometheus_client::metrics::counter::Counter,
        isolated: bool,
        max_message: usize,
    ) -> std::sync::Arc<Shared> {
        let (events, _) = broadcast::channel(64);
        std::sync::Arc::new(Shared {
            name: server.to_string(),
            known: Mutex::new(Known::default()),
            bridges: Mutex::new(crate::FastMap::default()),
            isolated,
            replier: Mutex::new(None),
            inbound: Default::default(),
            pending: Mutex::new(crate::FastMap::default()),
            progress: Mutex::new(crate::FastMap::default()),
            next_id: AtomicU64::new(1),
            events,
            closed: CancellationToken::new(),
            close_reason: Mutex::new(None),
            dropped,
            max_message,
        })
    }

    fn fail_all(&self, reason: &str) {
        *self.close_reason.lock() = Some(reason.to_string());
        self.closed.cancel();
        let pending: Vec<Pending> = self.pending.lock().drain().map(|(_, p)| p).collect();
        for p in pending {
            let _ = p.send(Err(UpstreamError::Closed(reason.to_string())));
        }
        let _ = self.events.send(Event::Closed);
    }

    /// Handle one message from the upstream (its JSON text). `origin` is our request whose
    /// response stream carried it, if known. Returns a reply to send back at once, if any;
    /// `Err` when the text is not one JSON-RPC message object.
    fn dispatch(
        &self,
        text: &[u8],
        origin: Option<u64>,
    ) -> Result<Option<Value>, serde_json::Error> {
        let msg: Incoming = serde_json::from_slice(text)?;
        Ok(self.dispatch_message(msg, origin))
    }

    fn dispatch_message(&self, msg: Incoming, origin: Option<u64>) -> Option<Value> {
        let Incoming {
            id,
            method,
            result,
            error,
            params,
        } = msg;
        match (id, method) {
            (Some(id), None) => {
                let Some(n) = id.as_u64() else {
                    self.dropped.inc();
                    return None;
                };
                let waiter = self.pending.lock().remove(&n);
                match waiter {
                    Some(w) => {
                        // Passed on as the upstream's bytes: never parsed into a tree and
                        // written again unless something must look inside.
                        let outcome = match (result, error) {
                            (Some(r), _) => Ok(r),
                            (None, Some(e)) => Err(UpstreamError::Rpc(e)),
                            (None, None) => Err(UpstreamError::Transport(format!(
                                "upstream `{}` sent a response with neither result nor error",
                                self.name
                            ))),
                        };
                        let _ = w.send(outcome);
                    }
                    None => {
                        self.dropped.inc();
                    }
                }
                None
            }
            (Some(id), Some(method)) => {
                // A server-to-client request (sampling, elicitation, roots, ping). It goes to
                // the client request that caused it: the one whose response stream carried it,
                // or, on a connection isolated to one session, that session's. Otherwise it
                // cannot be tied to a client and is refused rather than delivered to a guess.
                if method == "ping" {
                    return Some(json!({ "jsonrpc": "2.0", "id": id, "result": {} }));
                }
                let bridge = self.bridge(origin);
                let replier = self.replier.lock().clone();
                if let (Some(tx), Some(replier)) = (bridge, replier) {
                    let (rtx, rrx) = oneshot::channel();
                    let params = params.unwrap_or_else(|| json!({}));
                    let withdrawn = CancellationToken::new();
                    let key = token_key(&id);
                    let request = ServerRequest {
                        method: method.clone(),
                        params,
                        reply: rtx,
                        withdrawn: withdrawn.clone(),
                    };
                    if tx.send(Relayed::Request(request)).is_ok() {
                        self.inbound.lock().insert(key.clone(), withdrawn.clone());
                        let inbound = self.inbound.clone();
                        tokio::spawn(async move {
                            let answer = tokio::select! {
                                r = tokio::time::timeout(Duration::from_secs(600), rrx) => match r {
                                    Ok(Ok(Ok(v))) => Some(json!({ "jsonrpc": "2.0", "id": id, "result": v })),
                                    Ok(Ok(Err(e))) => Some(json!({ "jsonrpc": "2.0", "id": id, "error": e })),
                                    _ => Some(json!({ "jsonrpc": "2.0", "id": id, "error": { "code": -32603, "message": "the client did not answer" } })),
                                },
                                // Withdrawn by the upstream: no answer is owed.
                                _ = withdrawn.cancelled() => None,
                            };
                            inbound.lock().remove(&key);
                            if let Some(a) = answer {
                                replier(a);
                            }
                        });
                        return None;
                    }
                }
                self.dropped.inc();
                tracing::warn!(server = %self.name, method = %crate::diagnostics::Escaped(&method), "refused a server-to-client request that cannot be tied to a client request");
                Some(json!({
                    "jsonrpc": "2.0", "id": id,
                    "error": { "code": -32601, "message": format!("{method} is not available through Fentaris for this request") }
                }))
            }
            (None, Some(method)) => {
                let params = params.unwrap_or(Value::Null);
                match method.as_str() {
                    "notifications/progress" => {
                        let token = params.get("progressToken").map(token_key);
                        let tx = token.and_then(|t| self.progress.lock().get(&t).cloned());
                        match tx {
                            Some(tx) => {
                                let _ = tx.send(params);
                            }
                            None => {
                                self.dropped.inc();
                            }
                        }
                    }
                    "notifications/cancelled" => {
                        // The upstream withdraws a request it sent us: tell the client.
                        let key = params.get("requestId").map(token_key);
                        let token = key.and_then(|k| self.inbound.lock().remove(&k));
                        match token {
                            Some(t) => t.cancel(),
                            None => {
                                self.dropped.inc();
                            }
                        }
                    }
                    "notifications/tools/list_changed" => {
                        self.known.lock().tools = None;
                        let _ = self.events.send(Event::ToolsChanged);
                    }
                    "notifications/prompts/list_changed" => {
                        self.known.lock().prompts = None;
                        let _ = self.events.send(Event::PromptsChanged);
                    }
                    "notifications/resources/list_changed" => {
                        let _ = self.events.send(Event::ResourcesChanged);
                    }
                    "notifications/resources/updated" => {
                        if let Some(uri) = params.get("uri").and_then(Value::as_str) {
                            let _ = self.events.send(Event::ResourceUpdated(uri.to_string()));
                        }
                    }
                    "notifications/message" => {
                        // A log line goes to the client request it is tied to (see `bridge`);
                        // the handler applies policy and the session's level. Untied: dropped.
                        let sent = self.bridge(origin).is_some_and(|tx| {
                            tx.send(Relayed::Notification(method.clone(), params))
                                .is_ok()
                        });
                        if !sent {
                            self.dropped.inc();
                        }
                    }
                    _ => {
                        // Anything else that cannot be tied: not delivered.
                        self.dropped.inc();
                    }
                }
                None
            }
            (None, None) => {
                self.dropped.inc();
                None
            }
        }
    }
}

impl Shared {
    /// Where messages tied to a client request go: the request whose response stream carried
    /// them (`origin`, HTTP upstreams), or, on a connection isolated to one session (or one
    /// stateless subject), any running request of it: every one belongs to the same client.
    fn bridge(&self, origin: Option<u64>) -> Option<mpsc::UnboundedSender<Relayed>> {
        let b = self.bridges.lock();
        origin.and_then(|o| b.get(&o).cloned()).or_else(|| {
            if self.isolated {
                b.values().next().cloned()
            } else {
                None
            }
        })
    }
}

fn token_key(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

enum Conn {
    Stdio {
        tx: mpsc::UnboundedSender<String>,
        child: tokio::sync::Mutex<Option<Box<dyn process_wrap::tokio::ChildWrapper>>>,
    },
    Http(std::sync::Arc<HttpConn>),
}

/// One request to an upstream: what to send, how long to wait for it (each progress
/// notification restarts the wait), and where its progress notifications and the upstream's
/// requests and log lines tied to it go.
pub struct Call<'a> {
    pub method: &'a str,
    pub params: Value,
    pub timeout: Duration,
    pub progress: Option<&'a mpsc::UnboundedSender<Value>>,
    pub bridge: Option<&'a mpsc::UnboundedSender<Relayed>>,
}

impl<'a> Call<'a> {
    pub fn new(method: &'a str, params: Value, timeout: Duration) -> Call<'a> {
        Call {
            method,
            params,
            timeout,
            progress: None,
            bridge: None,
        }
    }
    /// Progress notifications go to `to` (the request then carries our progress token).
    pub fn progress(mut self, to: Option<&'a mpsc::UnboundedSender<Value>>) -> Call<'a> {
        self.progress = to;
        self
    }
    /// The upstream's requests and log lines tied to this request go to `to`.
    pub fn bridge(mut self, to: &'a mpsc::UnboundedSender<Relayed>) -> Call<'a> {
        self.bridge = Some(to);
        self
    }
}

/// One initialized upstream connection.
pub struct Upstream {
    pub server: String,
    conn: Conn,
    shared: std::sync::Arc<Shared>,
    /// The upstream's `initialize` result (capabilities, serverInfo, instructions).
    pub init: Value,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// Start and initialize a connection.
    pub async fn connect(
        server: &str,
        spec: &Spec,
        init_timeout: Duration,
        dropped: prometheus_client::metrics::counter::Counter,
        isolated: bool,
        client_capabilities: Value,
        max_message: usize,
    ) -> Result<std::sync::Arc<Upstream>, String> {
        let shared = Shared::new(server, dropped, isolated, max_message);
        let conn = match spec {
            Spec::Stdio {
                command,
                args,
                env,
                cwd,
            } => spawn_stdio(server, command, args, env, cwd.as_ref(), &shared)?,
            Spec::Http {
                url,
                headers,
                connect_timeout,
            } => {
                let mut map = reqwest::header::HeaderMap::new();
                for (k, v) in headers {
                    let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                        .map_err(|_| format!("invalid header name `{k}`"))?;
                    let mut value = reqwest::header::HeaderValue::from_str(v)
                        .map_err(|_| format!("invalid value for header `{k}`"))?;
                    value.set_sensitive(true);
                    map.insert(name, value);
                }
                let origin = origin_of(url);
                let client = reqwest::Client::builder()
                    .connect_timeout(*connect_timeout)
                    .tcp_nodelay(true)
                    .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                        // Never follow a redirect to another origin (credentials would follow it).
                        if attempt.previous().len() < 5
                            && origin_of(attempt.url().as_str()) == origin
                        {
                            attempt.follow()
                        } else {
                            attempt.stop()
                        }
                    }))
                    .build()
                    .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
                Conn::Http(std::sync::Arc::new(HttpConn::new(
                    client,
                    url,
                    map,
                    *connect_timeout,
                )?))
            }
        };
        if let Conn::Http(h) = &conn {
            // Replies carry the negotiated revision once the handshake has set it.
            let target = h.clone();
            let replier: Replier = std::sync::Arc::new(move |v: Value| {
                let t = target.clone();
                tokio::spawn(async move { t.reply(v).await });
            });
            *shared.replier.lock() = Some(replier);
        }
        Upstream {
            server: server.to_string(),
            conn,
            shared,
            init: Value::Null,
        }
        .handshake(client_capabilities, init_timeout)
        .await
    }

    /// `initialize`, then `notifications/initialized`.
    async fn handshake(
        mut self,
        client_capabilities: Value,
        init_timeout: Duration,
    ) -> Result<std::sync::Arc<Upstream>, String> {
        let params = json!({
            "protocolVersion": UPSTREAM_PROTOCOL,
            "capabilities": client_capabilities,
            "clientInfo": { "name": "fentaris", "version": env!("CARGO_PKG_VERSION") }
        });
        if let Conn::Http(h) = &self.conn {
            *h.init.lock() = Some(params.clone());
        }
        let init = self
            .call(
                Call::new("initialize", params, init_timeout),
                &CancellationToken::new(),
            )
            .await
            .map_err(|e| format!("initialize failed: {}", describe(&e)))?;
        if let Conn::Http(h) = &self.conn {
            let v = init
                .get("protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or(UPSTREAM_PROTOCOL);
            h.set_protocol(v);
        }
        self.init = init;
        self.notify("notifications/initialized", None).await;
        Ok(std::sync::Arc::new(self))
    }

    /// A connection over an in-memory pipe speaking newline-delimited JSON-RPC (the other
    /// end plays the upstream), initialized like a child's.
    #[cfg(test)]
    pub(crate) async fn in_memory(
        server: &str,
        io: tokio::io::DuplexStream,
    ) -> Result<std::sync::Arc<Upstream>, String> {
        let shared = Shared::new(server, Default::default(), false, 1 << 20);
        let (read, write) = tokio::io::split(io);
        let tx = wire_lines(server, write, read, &shared);
        Upstream {
            server: server.to_string(),
            conn: Conn::Stdio {
                tx,
                child: tokio::sync::Mutex::new(None),
            },
            shared,
            init: Value::Null,
        }
        .handshake(json!({}), Duration::from_secs(5))
        .await
    }

    /// Subscribe to list-changed and resource-updated notifications.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.is_cancelled()
    }

    /// Resolves when the connection is closed (the child exited, its output closed, or
    /// Fentaris closed it).
    pub async fn closed(&self) {
        self.shared.closed.cancelled().await
    }

    /// Record names from a list result. `first_page` starts a new set.
    pub fn record_names<'a>(
        &self,
        kind: NameKind,
        names: impl Iterator<Item = &'a str>,
        first_page: bool,
    ) {
        let mut k = self.shared.known.lock();
        let slot = k.slot(kind);
        if first_page || slot.is_none() {
            *slot = Some(Default::default());
        }
        if let Some(set) = slot {
            set.extend(names.map(str::to_string));
        }
    }

    /// Whether `name` is, byte for byte, a name of the upstream's last list (`None`: no list
    /// seen since the last change).
    pub fn knows(&self, kind: NameKind, name: &str) -> Option<bool> {
        let mut k = self.shared.known.lock();
        k.slot(kind).as_ref().map(|set| set.contains(name))
    }

    /// Send a notification (fire and forget).
    pub async fn notify(&self, method: &str, params: Option<Value>) {
        self.notify_now(method, params);
    }

    /// Send a message; for an HTTP upstream, the POST to await (it carries the response).
    #[must_use]
    fn send(&self, text: String, method: &str, id: Option<u64>) -> Option<HttpPost> {
        match &self.conn {
            Conn::Stdio { tx, .. } => {
                if tx.send(text).is_err() {
                    self.shared.fail(
                        id,
                        UpstreamError::Closed(format!("upstream `{}` is not running", self.server)),
                    );
                }
                None
            }
            Conn::Http(h) => Some(Box::pin(http_post(
                h.clone(),
                text.into(),
                method == "initialize",
                id,
                self.shared.clone(),
            ))),
        }
    }

    /// Send a request and wait for its result, parsed. `on_progress` receives the upstream's
    /// progress notifications for this request, in wire order and all before the result.
    pub async fn call(
        &self,
        call: Call<'_>,
        ct: &CancellationToken,
    ) -> Result<Value, UpstreamError> {
        let raw = self.call_raw(call, ct).await?;
        serde_json::from_str(raw.get()).map_err(|e| {
            UpstreamError::Transport(format!(
                "upstream `{}` sent an unreadable result: {e}",
                self.server
            ))
        })
    }

    /// [`Upstream::call`], with the result as the upstream sent it (its JSON text).
    pub async fn call_raw(
        &self,
        call: Call<'_>,
        ct: &CancellationToken,
    ) -> Result<Box<RawValue>, UpstreamError> {
        let Call {
            method,
            mut params,
            timeout,
            progress,
            bridge,
        } = call;
        if self.shared.closed.is_cancelled() {
            let reason = self.shared.close_reason.lock().clone();
            return Err(UpstreamError::Closed(reason.unwrap_or_else(|| {
                format!("upstream `{}` is closed", self.server)
            })));
        }
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.shared.pending.lock().insert(id, tx);
        if let Some(b) = bridge {
            self.shared.bridges.lock().insert(id, b.clone());
        }
        // Progress passes through here: each notification restarts the timeout.
        // A progress channel only when someone listens (most calls have none).
        let (token, mut prx) = match progress {
            Some(_) => {
                let t = format!("fnt-{id}");
                let (ptx, prx) = mpsc::unbounded_channel::<Value>();
                self.shared.progress.lock().insert(t.clone(), ptx);
                (Some(t), Some(prx))
            }
            None => (None, None),
        };
        if let Some(t) = &token {
            if !params.is_object() {
                params = json!({});
            }
            let meta = params.as_object_mut().and_then(|o| {
                o.entry("_meta").or_insert_with(|| json!({}));
                o.get_mut("_meta").and_then(Value::as_object_mut)
            });
            if let Some(m) = meta {
                m.insert("progressToken".into(), Value::String(t.clone()));
            }
        }
        let text = match outgoing(Some(id), method, &params) {
            Ok(t) => t,
            Err(e) => {
                self.forget(id, token.as_deref());
                return Err(UpstreamError::Transport(format!(
                    "the request to upstream `{}` could not be written: {e}",
                    self.server
                )));
            }
        };
        drop(params);
        // An HTTP upstream's POST is driven here, by the caller that waits for its response
        // (no task and no hop between tasks per request).
        let mut post = self.send(text, method, Some(id));
        let mut guard = CallGuard {
            up: self,
            id,
            token: token.clone(),
            armed: true,
        };
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut rx = rx;
        let outcome = loop {
            tokio::select! {
                biased;
                () = async { if let Some(p) = post.as_mut() { p.await } }, if post.is_some() => {
                    // The POST is over: its response (or failure) went to `rx`.
                    post = None;
                }
                Some(p) = recv_some(&mut prx) => {
                    deadline.as_mut().reset(tokio::time::Instant::now() + timeout);
                    if let Some(out) = progress {
                        let _ = out.send(p);
                    }
                }
                r = &mut rx => {
                    // Progress sent before the response goes first.
                    while let Some(Ok(p)) = prx.as_mut().map(|r| r.try_recv()) {
                        if let Some(out) = progress {
                            let _ = out.send(p);
                        }
                    }
                    break match r {
                        Ok(Ok(v)) => Ok(v),
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err(UpstreamError::Closed(format!("upstream `{}` closed the connection", self.server))),
                    };
                }
                _ = ct.cancelled() => {
                    self.notify_now("notifications/cancelled", Some(json!({ "requestId": id, "reason": "cancelled by the client" })));
                    break Err(UpstreamError::Cancelled);
                }
                _ = &mut deadline => {
                    self.notify_now("notifications/cancelled", Some(json!({ "requestId": id, "reason": "timed out in Fentaris" })));
                    break Err(UpstreamError::Timeout(timeout));
                }
            }
        };
        guard.armed = false;
        drop(guard);
        self.forget(id, token.as_deref());
        outcome
    }

    /// Read every page of a list that Fentaris needs whole (names of tools or prompts),
    /// handing each page to `each`, which returns how many bytes of it it kept. Bounded:
    /// at most `limits.maxPages` pages, `limits.within` in all, and kept bytes within
    /// `limits.maxUpstreamMessageBytes`; cancelled with `ct` (the client went away).
    pub async fn all_pages(
        &self,
        method: &str,
        ct: &CancellationToken,
        per_call: Duration,
        limits: &PageLimits,
        mut each: impl FnMut(&Value) -> usize,
    ) -> Result<(), UpstreamError> {
        let deadline = tokio::time::Instant::now() + limits.within;
        let mut cursor: Option<Value> = None;
        let mut kept = 0usize;
        for _ in 0..limits.max_pages {
            let mut p = json!({});
            if let Some(c) = cursor.take() {
                p["cursor"] = c;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let r = match tokio::time::timeout(left, self.call(Call::new(method, p, per_call), ct))
                .await
            {
                Ok(r) => r?,
                Err(_) => {
                    return Err(UpstreamError::Transport(format!(
                        "upstream `{}` did not finish listing ({method}) within {}s (limits.listTimeout)",
                        self.server,
                        limits.within.as_secs_f32()
                    )));
                }
            };
            kept += each(&r);
            if kept > limits.max_bytes {
                return Err(UpstreamError::Transport(format!(
                    "upstream `{}` listed more than {} bytes of names ({method}; limits.maxUpstreamMessageBytes)",
                    self.server, limits.max_bytes
                )));
            }
            match r.get("nextCursor").filter(|c| !c.is_null()) {
                Some(c) => cursor = Some(c.clone()),
                None => return Ok(()),
            }
        }
        Err(UpstreamError::Transport(format!(
            "upstream `{}` lists more than {} pages ({method}; limits.maxListPages); Fentaris stopped reading them",
            self.server, limits.max_pages
        )))
    }

    fn forget(&self, id: u64, token: Option<&str>) {
        self.shared.bridges.lock().remove(&id);
        self.shared.pending.lock().remove(&id);
        if let Some(t) = token {
            self.shared.progress.lock().remove(t);
        }
    }

    /// Send a notification now (without waiting).
    pub fn notify_now(&self, method: &str, params: Option<Value>) {
        let text = match outgoing(None, method, params.as_ref().unwrap_or(&Value::Null)) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(server = %self.server, "a `{method}` notification could not be written: {e}");
                return;
            }
        };
        if let Some(post) = self.send(text, method, None) {
            tokio::spawn(post);
        }
    }

    /// Close the connection: stdin EOF, then the process group is terminated and reaped.
    pub async fn shutdown(&self) {
        self.shared
            .fail_all(&format!("upstream `{}` is shutting down", self.server));
        if let Conn::Stdio { child, tx } = &self.conn {
            let _ = tx; // dropping the writer closes stdin when the Upstream is dropped
            if let Some(mut c) = child.lock().await.take() {
                let exited = tokio::time::timeout(Duration::from_millis(500), c.wait())
                    .await
                    .is_ok();
                if !exited {
                    let _ = c.start_kill();
                    let _ = tokio::time::timeout(Duration::from_secs(3), c.wait()).await;
                }
            }
        }
        if let Conn::Http(h) = &self.conn {
            let session = h.session.lock().clone();
            if let Some(s) = session {
                let _ = h
                    .client
                    .delete(h.url.clone())
                    .headers(h.headers.clone())
                    .header("mcp-session-id", s)
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await;
            }
        }
    }
}

/// If a caller stops waiting (the client went away), the upstream is told to cancel and the
/// request's bookkeeping is removed.
struct CallGuard<'a> {
    up: &'a Upstream,
    id: u64,
    token: Option<String>,
    armed: bool,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.up.forget(self.id, self.token.as_deref());
            self.up.notify_now(
                "notifications/cancelled",
                Some(json!({ "requestId": self.id, "reason": "the client went away" })),
            );
        }
    }
}

/// The next message of an optional receiver (none: never).
pub(crate) async fn recv_some<T>(rx: &mut Option<mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// Bounds on reading a whole list ([`Upstream::all_pages`]).
#[derive(Debug, Clone)]
pub struct PageLimits {
    pub max_pages: usize,
    pub within: Duration,
    pub max_bytes: usize,
}

impl PageLimits {
    pub fn of(l: &crate::config::Limits) -> PageLimits {
        PageLimits {
            max_pages: l.max_list_pages,
            within: l.list_timeout.0,
            max_bytes: l.max_upstream_message_bytes,
        }
    }
}

/// A one-line description of an upstream error for logs and client messages.
pub fn describe(e: &UpstreamError) -> String {
    e.to_string()
}

/// A request (with `id`) or a notification to an upstream, as JSON text, written in one pass
/// from borrowed parts (no map built for the envelope). A null `params` is left out.
fn outgoing(id: Option<u64>, method: &str, params: &Value) -> serde_json::Result<String> {
    #[derive(serde::Serialize)]
    struct Envelope<'a> {
        jsonrpc: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        method: &'a str,
        #[serde(skip_serializing_if = "Value::is_null")]
        params: &'a Value,
    }
    serde_json::to_string(&Envelope {
        jsonrpc: "2.0",
        id,
        method,
        params,
    })
}

#[cfg(test)]
mod outgoing_tests {
    use super::*;

    #[test]
    fn requests_and_notifications_are_written_as_the_envelope_they_were_built_as() {
        let params = json!({ "name": "echo", "arguments": { "z": "\u{1}\"", "a": [1, 2.5] } });
        let text = outgoing(Some(41), "tools/call", &params).unwrap();
        assert_eq!(
            text,
            json!({ "jsonrpc": "2.0", "id": 41, "method": "tools/call", "params": params })
                .to_string()
        );
        assert_eq!(
            outgoing(None, "notifications/initialized", &Value::Null).unwrap(),
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#
        );
        assert_eq!(
            outgoing(Some(1), "ping", &Value::Null).unwrap(),
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#
        );
    }
}
