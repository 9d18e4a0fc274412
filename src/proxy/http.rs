//! The streamable-HTTP downstream: `/mcp` (aggregated) and `/mcp/<server>`, authentication
//! on every POST, GET and DELETE, sessions bound to the subject that opened them, Host and
//! Origin checks, `/healthz`; and the admin listener (`/readyz`, `/metrics`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rand::RngCore;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::handler::{Caller, CallerInfo, Endpoint, Progress, Proxy, RpcError};
use super::lifecycle::{SUPPORTED_VERSIONS, answer_locally, initialize_result, is_modern};
use super::upstream::Event;
use crate::audit::record::{ClientRef, Record, SubjectRef};
use crate::identity::{Identity, KeyVerifier, presented_key};
use crate::policy::Subject;

/// One downstream session (2025-03-26 to 2025-11-25 clients).
struct Session {
    user: String,
    endpoint: Endpoint,
    inflight: Mutex<HashMap<String, CancellationToken>>,
    /// (server, canonical URI) this session subscribed to.
    subscriptions: Mutex<HashSet<(String, String)>>,
    /// Answers this client owes to requests Fentaris relayed from an upstream.
    replies: super::handler::Replies,
    last_seen: Mutex<std::time::Instant>,
    /// Key id and client (from `initialize`), for the audit trail.
    info: Arc<CallerInfo>,
    subject: Arc<Subject>,
    /// Cancelled when the session ends (DELETE, idle, revoked key): its GET stream ends too.
    closed: CancellationToken,
}

/// A `session.open` or `session.close` record.
fn session_record(event: &'static str, sid: &str, s: &Session, reason: &str) -> Record {
    let mut r = Record::new(event);
    r.session = Some(sid.to_string());
    r.subject = Some(SubjectRef::of(&s.subject, s.info.key_id.clone()));
    r.client = s.info.client.clone();
    if let Endpoint::Server(srv) = &s.endpoint {
        r.server = Some(srv.clone());
    }
    r.reason = Some(reason.to_string());
    r
}

/// Identity asserted by a trusted reverse proxy (`identity.trustedHeaders`), resolved.
pub struct Trusted {
    pub user_header: String,
    pub secret_header: String,
    pub secret: crate::secret::Secret,
    pub proxies: Vec<ipnet::IpNet>,
}

/// What the config and the vault decide for the HTTP front: replaced whole on reload. A
/// request loads it once (in [`guard`]) and decides everything against that one state.
/// Built only by [`super::build::Prepared`].
pub struct FrontState {
    pub(super) trusted: Option<Trusted>,
    pub(crate) proxy: Arc<Proxy>,
    pub(super) verifier: KeyVerifier,
    pub(super) api_key_header: String,
    allowed_hosts: Vec<String>,
    allowed_origins: Vec<String>,
    /// Servers that must be connected for `/readyz`.
    pub(super) eager: Vec<String>,
}

impl FrontState {
    pub(super) fn new(
        proxy: Arc<Proxy>,
        verifier: KeyVerifier,
        trusted: Option<Trusted>,
    ) -> FrontState {
        let id = &proxy.config.identity;
        FrontState {
            trusted,
            api_key_header: id.api_key_header.to_ascii_lowercase(),
            allowed_hosts: id
                .allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            allowed_origins: id.allowed_origins.clone(),
            eager: super::eager_servers(&proxy.config),
            proxy,
            verifier,
        }
    }

    /// The proxy of this state.
    pub fn proxy(&self) -> &Arc<Proxy> {
        &self.proxy
    }
}

/// Shared state of the HTTP front: the current [`State`], and what outlives a reload
/// (sessions, per-user and per-address counters).
pub struct App {
    state: arc_swap::ArcSwap<FrontState>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Requests in flight per user (`limits.maxInflightPerUser`).
    inflight_by_user: Arc<Mutex<HashMap<String, usize>>>,
    /// Failed authentications per client address in the current minute.
    auth_failures: Mutex<HashMap<std::net::IpAddr, (std::time::Instant, u32)>>,
}

/// Holds one of a user's in-flight slots; frees it when dropped.
struct UserSlot {
    map: Arc<Mutex<HashMap<String, usize>>>,
    user: String,
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.user);
            }
        }
    }
}

/// Whether `bytes` (JSON text) nests arrays/objects deeper than `max`.
pub fn nesting_exceeds(bytes: &[u8], max: usize) -> bool {
    let (mut depth, mut in_str, mut esc) = (0usize, false, false);
    for &b in bytes {
        if in_str {
            match (esc, b) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

impl App {
    pub fn new(state: FrontState) -> App {
        App {
            state: arc_swap::ArcSwap::from_pointee(state),
            sessions: Mutex::new(HashMap::new()),
            inflight_by_user: Arc::default(),
            auth_failures: Mutex::new(HashMap::new()),
        }
    }

    /// The current state (config, policy, keys).
    pub fn st(&self) -> Arc<FrontState> {
        self.state.load_full()
    }

    /// Put a new state in place (reload); returns the one it replaced.
    pub fn swap(&self, state: FrontState) -> Arc<FrontState> {
        self.state.swap(Arc::new(state))
    }
}

impl App {
    /// Take one of `user`'s in-flight slots, or `None` at the limit.
    fn user_slot(&self, user: &str, max: usize) -> Option<UserSlot> {
        let mut m = self
            .inflight_by_user
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let n = m.entry(user.to_string()).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(UserSlot {
            map: self.inflight_by_user.clone(),
            user: user.to_string(),
        })
    }

    /// Whether `addr` has used up its failed authentications for this minute.
    fn auth_limited(&self, addr: Option<std::net::IpAddr>, max: u32) -> bool {
        let Some(addr) = addr else { return false };
        let m = self.auth_failures.lock().unwrap_or_else(|e| e.into_inner());
        m.get(&addr).is_some_and(|(since, n)| {
            since.elapsed() < std::time::Duration::from_secs(60) && *n >= max
        })
    }

    fn note_auth_failure(&self, addr: Option<std::net::IpAddr>) {
        let Some(addr) = addr else { return };
        let mut m = self.auth_failures.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() > 100_000 {
            m.retain(|_, (since, _)| since.elapsed() < std::time::Duration::from_secs(60));
        }
        let e = m.entry(addr).or_insert((std::time::Instant::now(), 0));
        if e.0.elapsed() >= std::time::Duration::from_secs(60) {
            *e = (std::time::Instant::now(), 0);
        }
        e.1 += 1;
    }

    /// End the sessions `which` selects: removed at once (their ids stop working), a
    /// `session.close` record each, their requests and GET streams cancelled. Returns their
    /// ids, for [`App::close_isolated`].
    fn take_sessions(&self, which: impl Fn(&str, &Session) -> bool, reason: &str) -> Vec<String> {
        let ended: Vec<(String, Arc<Session>)> = {
            let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            let chosen: Vec<String> = sessions
                .iter()
                .filter(|(k, s)| which(k, s))
                .map(|(k, _)| k.clone())
                .collect();
            chosen
                .into_iter()
                .filter_map(|k| sessions.remove(&k).map(|s| (k, s)))
                .collect()
        };
        let audit = self.st().proxy.audit.clone();
        for (sid, s) in &ended {
            audit.write(session_record("session.close", sid, s, reason));
            s.closed.cancel();
            for ct in s
                .inflight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
            {
                ct.cancel();
            }
        }
        ended.into_iter().map(|(sid, _)| sid).collect()
    }

    /// Close the upstream connections isolated to these (ended) sessions.
    async fn close_isolated(&self, sids: &[String]) {
        let pool = self.st().proxy.pool.clone();
        for sid in sids {
            pool.close_matching(&format!("#s:{sid}")).await;
        }
    }

    /// End the sessions whose API key can no longer log in (revoked, expired or removed by a
    /// reload). Returns how many ended.
    pub async fn end_sessions_without_live_key(&self) -> usize {
        let st = self.st();
        let ended = self.take_sessions(
            |_, s| match s.info.key_id.as_deref() {
                None | Some("trusted-header") => false,
                Some(k) => !st.verifier.is_live(k),
            },
            "its API key was revoked or expired",
        );
        self.close_isolated(&ended).await;
        ended.len()
    }

    /// End sessions idle longer than `max_idle`: cancel their requests and close the upstream
    /// connections isolated to them. Returns how many ended.
    pub async fn reap_idle_sessions(&self, max_idle: std::time::Duration) -> usize {
        let ended = self.take_sessions(
            |_, s| {
                s.last_seen
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .elapsed()
                    > max_idle
            },
            "idle for longer than the session timeout",
        );
        self.close_isolated(&ended).await;
        ended.len()
    }
}

struct InflightGuard {
    session: Option<Arc<Session>>,
    key: String,
    /// The user's in-flight slot, freed with the guard.
    _slot: UserSlot,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if let Some(s) = &self.session {
            s.inflight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&self.key);
        }
    }
}

/// The authenticated caller, put into request extensions by the auth layer.
#[derive(Clone)]
struct Authed {
    identity: Identity,
    subject: Arc<Subject>,
    /// The client's address (the forwarded one when a trusted proxy sent the request).
    address: Option<String>,
    /// The state the request was authenticated against, and is decided against throughout.
    st: Arc<FrontState>,
}

/// The client's address: the TCP peer, or, when the peer is a configured trusted proxy, the
/// nearest address in `X-Forwarded-For` that is not one.
pub fn client_address(st: &FrontState, req: &Request) -> Option<std::net::IpAddr> {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())?;
    let proxies = st
        .trusted
        .as_ref()
        .map(|t| t.proxies.as_slice())
        .unwrap_or(&[]);
    let trusted = |ip: &std::net::IpAddr| proxies.iter().any(|n| n.contains(ip));
    if !trusted(&peer) {
        return Some(peer);
    }
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
        .collect::<Vec<_>>();
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !trusted(ip))
            .unwrap_or(peer),
    )
}

fn rpc_error_body(id: Option<&Value>, e: &RpcError) -> Value {
    json!({ "jsonrpc": "2.0", "id": id.cloned().unwrap_or(Value::Null), "error": e.to_json() })
}

fn internal() -> RpcError {
    RpcError::new(-32603, "internal error")
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "Not Found").into_response()
}

fn is_loopback_host(h: &str) -> bool {
    h == "localhost"
        || h.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn host_of(authority: &str) -> String {
    let a = authority.trim().to_ascii_lowercase();
    if let Some(rest) = a.strip_prefix('[') {
        return format!("[{}]", rest.split(']').next().unwrap_or(""));
    }
    a.rsplit_once(':')
        .map(|(h, p)| {
            if p.chars().all(|c| c.is_ascii_digit()) {
                h.to_string()
            } else {
                a.clone()
            }
        })
        .unwrap_or(a)
}

/// Host/Origin checks, authentication, and endpoint visibility, for every /mcp request.
async fn guard(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    // One state for the whole request: a reload meanwhile does not mix two configs.
    let st = app.st();
    // DNS rebinding: the Host must be ours, and a browser Origin must be allowed.
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(host_of)
        .unwrap_or_default();
    if !is_loopback_host(&host) && !st.allowed_hosts.contains(&host) {
        return (StatusCode::FORBIDDEN, "Forbidden: Host not allowed").into_response();
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let o = origin.to_str().unwrap_or("");
        let (scheme, rest) = o.split_once("://").unwrap_or(("", ""));
        let ohost = host_of(rest.split('/').next().unwrap_or(""));
        let loopback_origin = matches!(scheme, "http" | "https") && is_loopback_host(&ohost);
        if !st.allowed_origins.iter().any(|a| a == o) && !loopback_origin {
            return (StatusCode::FORBIDDEN, "Forbidden: Origin not allowed").into_response();
        }
    }
    let ip = client_address(&st, &req);
    let address = ip.map(|a| a.to_string());
    if app.auth_limited(ip, st.proxy.config.limits.auth_failures_per_minute) {
        let mut r = json_response(
            StatusCode::TOO_MANY_REQUESTS,
            json!({ "jsonrpc": "2.0", "id": null, "error": { "code": -32001, "message": "Too many failed authentications from this address; try again in a minute" } }),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return r;
    }
    let identity = match trusted_identity(&st, &req) {
        Some(Ok(i)) => Ok(i),
        Some(Err(())) => Err(
            "trusted identity headers refused (not from a listed proxy, wrong secret, or undeclared user)",
        ),
        None => match presented_key(req.headers(), &st.api_key_header) {
            Ok(k) => st
                .verifier
                .verify(k)
                .ok_or("unknown, revoked or expired API key"),
            Err(crate::identity::KeyProblem::Missing) => Err("no API key"),
            Err(crate::identity::KeyProblem::Conflicting) => {
                Err("two different API keys (header and Authorization)")
            }
            Err(crate::identity::KeyProblem::Invalid) => Err("malformed credentials"),
        },
    };
    let identity = match identity {
        Ok(i) => i,
        Err(why) => {
            st.proxy.metrics.auth_failure();
            app.note_auth_failure(ip);
            // Never the presented key: only why it failed, from where, and for what.
            let mut r = Record::new("auth.failed");
            r.reason = Some(why.to_string());
            r.method = Some(req.method().to_string());
            r.target = Some(req.uri().path().chars().take(256).collect());
            r.client = ClientRef {
                address: address.clone(),
                ..ClientRef::default()
            };
            st.proxy.audit.write(r);
            let mut r = json_response(
                StatusCode::UNAUTHORIZED,
                json!({ "jsonrpc": "2.0", "id": null, "error": { "code": -32001, "message": format!("Unauthorized: invalid or missing API key (header {})", st.api_key_header) } }),
            );
            // A challenge without `resource_metadata`: nothing points an MCP client at an
            // OAuth authorization server (Fentaris takes API keys, not OAuth tokens).
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"fentaris\""),
            );
            return r;
        }
    };
    let subject = Arc::new(st.proxy.engine.subject(&identity.user));
    // `/mcp/<server>` for a server the subject cannot see answers like an unknown path.
    let path = req.uri().path().to_string();
    if let Some(name) = path.strip_prefix("/mcp/")
        && !st.proxy.engine.can_use(&subject, name)
    {
        return not_found();
    }
    req.extensions_mut().insert(Authed {
        identity,
        subject,
        address,
        st,
    });
    next.run(req).await
}

/// `None`: the request asserts no identity by header. `Some(Err)`: it does, but not from a
/// listed proxy address, without the right shared secret, or naming an undeclared user: the
/// request is refused (never silently downgraded to another identity).
fn trusted_identity(st: &FrontState, req: &Request) -> Option<Result<Identity, ()>> {
    let t = st.trusted.as_ref()?;
    let user = req.headers().get(t.user_header.as_str())?;
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let from_proxy = peer.is_some_and(|ip| t.proxies.iter().any(|n| n.contains(&ip)));
    let secret_ok = req
        .headers()
        .get(t.secret_header.as_str())
        .is_some_and(|v| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                v.as_bytes(),
                t.secret.expose().as_bytes(),
            ))
        });
    let user = user.to_str().ok().map(str::trim).filter(|u| !u.is_empty());
    match user {
        Some(u) if from_proxy && secret_ok && st.proxy.engine.is_declared_user(u) => {
            Some(Ok(Identity {
                user: u.to_string(),
                key_id: "trusted-header".into(),
            }))
        }
        _ => Some(Err(())),
    }
}

fn endpoint_of(server: Option<String>) -> Endpoint {
    match server {
        Some(s) => Endpoint::Server(s),
        None => Endpoint::All,
    }
}

fn accepts_sse(h: &HeaderMap) -> bool {
    h.get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/event-stream"))
}

fn session_of(
    app: &App,
    h: &HeaderMap,
    authed: &Authed,
    endpoint: &Endpoint,
) -> Result<Option<Arc<Session>>, Box<Response>> {
    let Some(sid) = h.get("mcp-session-id").and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let sessions = app.sessions.lock().unwrap_or_else(|e| e.into_inner());
    match sessions.get(sid) {
        // Another subject presenting this session id gets what an unknown id gets.
        Some(s) if s.user == authed.identity.user && s.endpoint == *endpoint => {
            *s.last_seen.lock().unwrap_or_else(|e| e.into_inner()) = std::time::Instant::now();
            Ok(Some(s.clone()))
        }
        _ => Err(Box::new(not_found())),
    }
}

async fn post_all(State(app): State<Arc<App>>, req: Request) -> Response {
    post(app, None, req).await
}
async fn post_one(
    State(app): State<Arc<App>>,
    Path(server): Path<String>,
    req: Request,
) -> Response {
    post(app, Some(server), req).await
}

async fn post(app: Arc<App>, server: Option<String>, req: Request) -> Response {
    let Some(authed) = req.extensions().get::<Authed>().cloned() else {
        return not_found();
    };
    let st = authed.st.clone();
    let endpoint = endpoint_of(server);
    let (parts, body) = req.into_parts();
    let limits = &st.proxy.config.limits;
    let max = limits.max_body_bytes;
    let read_timeout = limits.header_read_timeout.0;
    let bytes: Bytes = match tokio::time::timeout(read_timeout, axum::body::to_bytes(body, max))
        .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            return json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                rpc_error_body(None, &RpcError::new(-32600, "request body too large")),
            );
        }
        Err(_) => {
            return json_response(
                StatusCode::REQUEST_TIMEOUT,
                rpc_error_body(
                    None,
                    &RpcError::new(
                        -32600,
                        format!(
                            "the request body did not arrive within {}s (limits.headerReadTimeout)",
                            read_timeout.as_secs_f32()
                        ),
                    ),
                ),
            );
        }
    };
    if nesting_exceeds(&bytes, limits.max_json_depth) {
        return json_response(
            StatusCode::BAD_REQUEST,
            rpc_error_body(
                None,
                &RpcError::new(
                    -32600,
                    format!(
                        "the request nests deeper than {} levels (limits.maxJsonDepth)",
                        limits.max_json_depth
                    ),
                ),
            ),
        );
    }
    let msg: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                rpc_error_body(None, &RpcError::new(-32700, format!("parse error: {e}"))),
            );
        }
    };
    if msg.is_array() {
        return json_response(
            StatusCode::BAD_REQUEST,
            rpc_error_body(
                None,
                &RpcError::new(-32600, "JSON-RPC batches are not supported"),
            ),
        );
    }
    if !msg.is_object() || msg.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return json_response(
            StatusCode::BAD_REQUEST,
            rpc_error_body(
                msg.get("id"),
                &RpcError::new(-32600, "not a JSON-RPC 2.0 message"),
            ),
        );
    }
    let header_version = parts
        .headers
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(v) = &header_version
        && !SUPPORTED_VERSIONS.contains(&v.as_str())
    {
        return json_response(
            StatusCode::BAD_REQUEST,
            rpc_error_body(
                msg.get("id"),
                &RpcError::new(
                    -32600,
                    format!(
                        "unsupported MCP-Protocol-Version {v}; supported: {}",
                        SUPPORTED_VERSIONS.join(", ")
                    ),
                ),
            ),
        );
    }
    let session = match session_of(&app, &parts.headers, &authed, &endpoint) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let id = msg.get("id").cloned();
    let method = msg
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_string);
    let params = msg.get("params").cloned().unwrap_or(json!({}));
    let (method, id) = match (method, id) {
        (Some(m), Some(id)) => (m, id),
        (Some(m), None) => {
            if m == "notifications/cancelled"
                && let Some(s) = &session
                && let Some(rid) = params.get("requestId")
                && let Some(ct) = s
                    .inflight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&rid.to_string())
            {
                ct.cancel();
            }
            return StatusCode::ACCEPTED.into_response();
        }
        (None, Some(_)) => {
            // The client's answer to a request Fentaris relayed (sampling, elicitation, roots).
            if let Some(s) = &session {
                super::handler::deliver_reply(&s.replies, &msg);
            }
            return StatusCode::ACCEPTED.into_response();
        }
        (None, None) => return StatusCode::ACCEPTED.into_response(),
    };
    let reply = {
        let id = id.clone();
        move |result: Result<Value, RpcError>| -> Value {
            match result {
                Ok(r) => json!({ "jsonrpc": "2.0", "id": id, "result": r }),
                Err(e) => rpc_error_body(Some(&id), &e),
            }
        }
    };
    match method.as_str() {
        "initialize" => {
            let open = app.sessions.lock().unwrap_or_else(|e| e.into_inner()).len();
            if open >= st.proxy.config.limits.max_sessions {
                return json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    reply(Err(RpcError::new(
                        -32000,
                        "too many open sessions (limits.maxSessions); try again later",
                    ))),
                );
            }
            let per_user = st.proxy.config.limits.max_sessions_per_user;
            let mine = app
                .sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .filter(|s| s.user == authed.identity.user)
                .count();
            if mine >= per_user {
                let mut r = json_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    reply(Err(RpcError::new(
                        -32000,
                        format!(
                            "too many open sessions for this user (limits.maxSessionsPerUser is {per_user}); end unused sessions with DELETE or wait for them to go idle"
                        ),
                    ))),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                return r;
            }
            let result = initialize_result(&st.proxy, &authed.subject, &endpoint, &params);
            let sid = new_session_id();
            let session = Arc::new(Session {
                user: authed.identity.user.clone(),
                endpoint: endpoint.clone(),
                inflight: Mutex::new(HashMap::new()),
                subscriptions: Mutex::new(HashSet::new()),
                replies: Default::default(),
                last_seen: Mutex::new(std::time::Instant::now()),
                info: Arc::new(
                    CallerInfo::new(&authed.identity.key_id, authed.address.clone())
                        .with_client_info(&params),
                ),
                subject: authed.subject.clone(),
                closed: CancellationToken::new(),
            });
            st.proxy
                .audit
                .write(session_record("session.open", &sid, &session, "initialize"));
            app.sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(sid.clone(), session);
            let mut r = json_response(StatusCode::OK, reply(Ok(result)));
            if let Ok(v) = HeaderValue::from_str(&sid) {
                r.headers_mut().insert("mcp-session-id", v);
            }
            return r;
        }
        "server/discover" => {
            let r = answer_locally(&st.proxy, &authed.subject, &endpoint, &method);
            return json_response(StatusCode::OK, reply(r.ok_or_else(internal)));
        }
        _ => {}
    }
    if let Some(v) = super::lifecycle::unsupported_meta_version(&params) {
        let mut e = RpcError::new(-32022, format!("unsupported protocol version {v}"));
        e.data = Some(json!({ "supported": SUPPORTED_VERSIONS }));
        return json_response(StatusCode::BAD_REQUEST, rpc_error_body(Some(&id), &e));
    }
    let modern = session.is_none() && is_modern(&params, header_version.as_deref());
    if session.is_none() && !modern {
        return json_response(
            StatusCode::BAD_REQUEST,
            rpc_error_body(
                Some(&id),
                &RpcError::new(
                    -32000,
                    "Bad Request: no valid session; send initialize first",
                ),
            ),
        );
    }
    if modern
        && let Some(h) = parts
            .headers
            .get("mcp-method")
            .and_then(|v| v.to_str().ok())
        && h != method
    {
        return json_response(
            StatusCode::BAD_REQUEST,
            rpc_error_body(
                Some(&id),
                &RpcError::new(-32020, "Mcp-Method header does not match the body"),
            ),
        );
    }
    if let Some(r) = answer_locally(&st.proxy, &authed.subject, &endpoint, &method) {
        return json_response(StatusCode::OK, reply(Ok(r)));
    }
    let session_id = parts
        .headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .filter(|_| session.is_some())
        .map(str::to_string);
    let info = match &session {
        Some(s) => s.info.clone(),
        None => Arc::new(
            CallerInfo::new(&authed.identity.key_id, authed.address.clone())
                .with_client_info(params.get("_meta").unwrap_or(&Value::Null)),
        ),
    };
    let caller = Caller {
        session: session_id,
        subject: authed.subject.clone(),
        endpoint: endpoint.clone(),
        modern,
        info,
    };
    let Some(slot) = app.user_slot(
        &authed.identity.user,
        st.proxy.config.limits.max_inflight_per_user,
    ) else {
        let mut r = json_response(
            StatusCode::TOO_MANY_REQUESTS,
            reply(Err(RpcError::new(
                -32000,
                format!(
                    "too many requests in flight for this user (limits.maxInflightPerUser is {})",
                    st.proxy.config.limits.max_inflight_per_user
                ),
            ))),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    };
    let ct = CancellationToken::new();
    let key = id.to_string();
    if let Some(s) = &session {
        s.inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), ct.clone());
    }
    // Removes the in-flight entry even when the client goes away mid-request.
    let inflight_guard = InflightGuard {
        session: session.clone(),
        key: key.clone(),
        _slot: slot,
    };
    let token = params
        .get("_meta")
        .and_then(|m| m.get("progressToken"))
        .cloned();
    let after = {
        let session = session.clone();
        let method = method.clone();
        let params = params.clone();
        move |ok: bool| {
            if let Some(s) = &session {
                s.inflight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&key);
                if ok
                    && let (Endpoint::Server(srv), Some(uri)) =
                        (&s.endpoint, params.get("uri").and_then(Value::as_str))
                {
                    let canon =
                        crate::policy::uri::canonicalize(uri).unwrap_or_else(|_| uri.to_string());
                    let mut subs = s.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
                    match method.as_str() {
                        "resources/subscribe" => {
                            subs.insert((srv.clone(), canon));
                        }
                        "resources/unsubscribe" => {
                            subs.remove(&(srv.clone(), canon));
                        }
                        _ => {}
                    }
                }
            }
        }
    };
    // Requests that may report progress or cause requests to the client (sampling,
    // elicitation, roots) get their own SSE stream when the client takes one.
    let may_call_back = matches!(
        method.as_str(),
        "tools/call" | "prompts/get" | "resources/read"
    );
    let stream_it =
        accepts_sse(&parts.headers) && (token.is_some() || (may_call_back && session.is_some()));
    match stream_it {
        true => {
            // Progress, requests to the client, then the response, on this request's stream.
            let (tx, rx) = mpsc::unbounded_channel::<Value>();
            let proxy = st.proxy.clone();
            let sink = tx.clone();
            let replies = session
                .as_ref()
                .map(|s| s.replies.clone())
                .unwrap_or_default();
            let gone = tx.clone();
            tokio::spawn(async move {
                let _inflight = inflight_guard;
                let work = proxy.handle(
                    &caller,
                    &method,
                    params,
                    Some(Progress {
                        token,
                        sink,
                        replies,
                    }),
                    &ct,
                );
                // The client went away (its stream was dropped): cancel the work (upstream
                // calls, list paging) instead of finishing it for nobody; it then ends (and is
                // audited) as cancelled.
                tokio::pin!(work);
                let result = tokio::select! {
                    r = &mut work => r,
                    _ = gone.closed() => {
                        ct.cancel();
                        work.await
                    }
                };
                drop(gone);
                after(result.is_ok());
                let _ = tx.send(reply(result));
            });
            // A result that comes before any progress or request to the client is answered as
            // plain JSON: one write instead of SSE headers, an event and the chunked end (the
            // stream is opened only when something must precede the result).
            let mut rx = rx;
            let first = match rx.recv().await {
                Some(v) if v.get("method").is_none() => {
                    return limited(v);
                }
                Some(v) => v,
                None => {
                    return json_response(
                        StatusCode::OK,
                        rpc_error_body(Some(&id), &RpcError::new(-32603, "internal error")),
                    );
                }
            };
            let stream = tokio_stream::StreamExt::chain(
                tokio_stream::once(first),
                tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
            );
            let stream = tokio_stream::StreamExt::map(stream, |v: Value| {
                Ok::<_, std::convert::Infallible>(
                    SseEvent::default().event("message").data(v.to_string()),
                )
            });
            Sse::new(stream).into_response()
        }
        false => {
            let _inflight = inflight_guard;
            let result = st.proxy.handle(&caller, &method, params, None, &ct).await;
            after(result.is_ok());
            limited(reply(result))
        }
    }
}

/// The response to a request: HTTP 200, or 429 with `Retry-After` when a per-user limit
/// refused it (see [`RpcError::limit`]).
fn limited(v: Value) -> Response {
    match super::handler::limit_retry_after(&v) {
        Some(secs) => {
            let mut r = json_response(StatusCode::TOO_MANY_REQUESTS, v);
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            r
        }
        None => json_response(StatusCode::OK, v),
    }
}

fn new_session_id() -> String {
    let mut b = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn get_all(State(app): State<Arc<App>>, req: Request) -> Response {
    listen(app, None, req)
}
async fn get_one(
    State(app): State<Arc<App>>,
    Path(server): Path<String>,
    req: Request,
) -> Response {
    listen(app, Some(server), req)
}

/// The session's stream of unrelated notifications (list changes, resource updates).
fn listen(app: Arc<App>, server: Option<String>, req: Request) -> Response {
    let Some(authed) = req.extensions().get::<Authed>().cloned() else {
        return not_found();
    };
    let endpoint = endpoint_of(server);
    let session = match session_of(&app, req.headers(), &authed, &endpoint) {
        Ok(Some(s)) => s,
        Ok(None) => return (StatusCode::METHOD_NOT_ALLOWED, "GET needs a session").into_response(),
        Err(r) => return *r,
    };
    let sid = req
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    // Notifications only about servers this subject can use now (seeing one is not enough;
    // re-checked per event against the current config), and only while the session lives.
    let (tx, rx) = mpsc::unbounded_channel::<Result<SseEvent, std::convert::Infallible>>();
    let mut events = app.st().proxy.events.subscribe();
    let closed = session.closed.clone();
    let user = authed.identity.user.clone();
    let app2 = app.clone();
    tokio::spawn(async move {
        loop {
            let ev = tokio::select! {
                _ = closed.cancelled() => break,
                _ = tx.closed() => break,
                ev = events.recv() => match ev {
                    Ok(ev) => ev,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
            };
            let srv = ev.server.clone();
            let st = app2.st();
            let subject = st.proxy.engine.subject(&user);
            if !st.proxy.engine.can_use(&subject, &srv)
                || matches!(&session.endpoint, Endpoint::Server(s) if *s != srv)
                || !ev.for_session(Some(&sid))
            {
                continue;
            }
            let msg = match &ev.event {
                Event::ToolsChanged => {
                    json!({ "jsonrpc": "2.0", "method": "notifications/tools/list_changed" })
                }
                Event::PromptsChanged => {
                    json!({ "jsonrpc": "2.0", "method": "notifications/prompts/list_changed" })
                }
                Event::ResourcesChanged => {
                    json!({ "jsonrpc": "2.0", "method": "notifications/resources/list_changed" })
                }
                Event::ResourceUpdated(uri) => {
                    let canon =
                        crate::policy::uri::canonicalize(uri).unwrap_or_else(|_| uri.clone());
                    if !session
                        .subscriptions
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .contains(&(srv.clone(), canon))
                    {
                        continue;
                    }
                    json!({ "jsonrpc": "2.0", "method": "notifications/resources/updated", "params": { "uri": uri } })
                }
                Event::Closed => continue,
            };
            if tx
                .send(Ok(SseEvent::default()
                    .event("message")
                    .data(msg.to_string())))
                .is_err()
            {
                break;
            }
        }
    });
    let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn delete_all(State(app): State<Arc<App>>, req: Request) -> Response {
    end(app, None, req)
}
async fn delete_one(
    State(app): State<Arc<App>>,
    Path(server): Path<String>,
    req: Request,
) -> Response {
    end(app, Some(server), req)
}

fn end(app: Arc<App>, server: Option<String>, req: Request) -> Response {
    let Some(authed) = req.extensions().get::<Authed>().cloned() else {
        return not_found();
    };
    let endpoint = endpoint_of(server);
    match session_of(&app, req.headers(), &authed, &endpoint) {
        Ok(Some(_)) => {
            let sid = req
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let ended = app.take_sessions(|id, _| id == sid, "closed by the client (DELETE)");
            // Connections isolated to this session end with it.
            tokio::spawn(async move { app.close_isolated(&ended).await });
            StatusCode::OK.into_response()
        }
        Ok(None) => (StatusCode::BAD_REQUEST, "DELETE needs a session").into_response(),
        Err(r) => *r,
    }
}

/// The main router.
pub fn router(app: Arc<App>) -> Router {
    let mcp = Router::new()
        .route(
            "/mcp",
            axum::routing::post(post_all)
                .get(get_all)
                .delete(delete_all),
        )
        .route(
            "/mcp/{server}",
            axum::routing::post(post_one)
                .get(get_one)
                .delete(delete_one),
        )
        .layer(axum::middleware::from_fn_with_state(app.clone(), guard));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(mcp)
        .fallback(|| async { not_found() })
        .with_state(app)
}

/// The admin router: `/readyz` and `/metrics`.
pub fn admin_router(app: Arc<App>) -> Router {
    Router::new()
        .route(
            "/readyz",
            get(|State(app): State<Arc<App>>, axum::extract::RawQuery(query): axum::extract::RawQuery| async move {
                let (code, text) = readyz(&app);
                // `?verbose`: the same status, as JSON with the stdio child sandbox in force.
                if query.is_some_and(|q| q.split('&').any(|p| p == "verbose")) {
                    let body = serde_json::json!({
                        "ready": code == StatusCode::OK,
                        "detail": text.trim_end(),
                        "sandbox": crate::harden::sandbox_report(),
                    });
                    return (code, [(header::CONTENT_TYPE, "application/json")], body.to_string());
                }
                let text = match crate::harden::sandbox_report() {
                    Some(r) if r.write_protection == "none" => format!(
                        "{text}warning: stdio upstreams can write Fentaris' folder (no mount namespace, no Landlock): see /readyz?verbose\n"
                    ),
                    _ => text,
                };
                (code, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text)
            }),
        )
        .route(
            "/metrics",
            get(|State(app): State<Arc<App>>| async move {
                let mut text = app.st().proxy.metrics.render();
                if let Some((written, dropped, failures, queued)) = app.st().proxy.audit.counters() {
                    use std::fmt::Write as _;
                    let _ = write!(
                        text,
                        "# HELP fentaris_audit_records_written_total Audit records handed to the sink.\n# TYPE fentaris_audit_records_written_total counter\nfentaris_audit_records_written_total {written}\n\
                         # HELP fentaris_audit_records_dropped_total Audit records lost (only with audit.onFailure allow).\n# TYPE fentaris_audit_records_dropped_total counter\nfentaris_audit_records_dropped_total {dropped}\n\
                         # HELP fentaris_audit_sink_failures_total Failed attempts to write the audit sink.\n# TYPE fentaris_audit_sink_failures_total counter\nfentaris_audit_sink_failures_total {failures}\n\
                         # HELP fentaris_audit_queue Audit records waiting for the sink.\n# TYPE fentaris_audit_queue gauge\nfentaris_audit_queue {queued}\n"
                    );
                }
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
            }),
        )
        .with_state(app)
}

/// `/readyz`: ready, or why not.
fn readyz(app: &Arc<App>) -> (StatusCode, String) {
    let st = app.st();
    let caps = st.proxy.known_capabilities();
    let missing: Vec<&String> = st.eager.iter().filter(|s| !caps.contains_key(*s)).collect();
    let down = st.proxy.down_servers(&st.eager);
    if !down.is_empty() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: {} down after repeated exits (see the log)\n",
                down.join(", ")
            ),
        )
    } else if !st.proxy.audit.healthy() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the audit log cannot be written\n".to_string(),
        )
    } else if missing.is_empty() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: waiting for {}\n",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(host_of("127.0.0.1:8765"), "127.0.0.1");
        assert_eq!(host_of("[::1]:8765"), "[::1]");
        assert_eq!(host_of("Example.COM"), "example.com");
        assert!(is_loopback_host("localhost"));
        assert!(
            is_loopback_host("127.0.0.1")
                && is_loopback_host("[::1]")
                && is_loopback_host("127.1.2.3")
        );
        assert!(!is_loopback_host("evil.example"));
        assert!(!is_loopback_host("127.evil.example"));
        assert!(!is_loopback_host("127.0.0.1.evil.example"));
    }
}
