//! Upstream connections: how a server's spec is built for a subject (credentials from the
//! group whose rule allowed the request, then the top level; a scrubbed child environment;
//! headers only from config), and a pool keyed by everything the upstream sees.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::upstream::{Spec, Upstream};
use crate::config::{Auth, Config, EnvValue, Server, Transport};
use crate::policy::Subject;
use crate::vault::{Vault, resolve_source};

/// Variables a stdio child gets from Fentaris' environment without asking.
pub const ENV_ALLOW_LIST: &[&str] = &[
    "PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ", "USER", "LOGNAME",
];

/// Default upstream timeouts.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an upstream may take to start and answer `initialize` (npx may download).
pub const INIT_TIMEOUT: Duration = Duration::from_secs(120);

/// The declaration of `name` as `subject` sees it (top level, or one of its groups' own).
pub fn find_server<'c>(
    config: &'c Config,
    subject: Option<&Subject>,
    name: &str,
) -> Option<(&'c Server, Option<&'c str>)> {
    if let Some(s) = config.servers.iter().find(|s| s.name == name) {
        return Some((s, None));
    }
    let subject = subject?;
    config
        .groups
        .iter()
        .filter(|g| subject.groups.contains(&g.id))
        .find_map(|g| {
            g.servers
                .iter()
                .find(|s| s.name == name)
                .map(|s| (s, Some(g.id.as_str())))
        })
}

/// Everything needed to resolve credentials.
pub struct Secrets<'a> {
    pub config: &'a Config,
    pub vault: Option<&'a Vault>,
    pub env: &'a (dyn Fn(&str) -> Option<String> + Send + Sync),
}

/// Build the spec of `server` for `subject`, with credentials from `group` (the group whose
/// rule allowed the request) and then the top level.
pub fn build_spec(
    server: &Server,
    config_dir: &Path,
    group: Option<&str>,
    subject: Option<&Subject>,
    s: &Secrets,
) -> Result<Spec, String> {
    let resolve = |src| {
        resolve_source(src, s.config, group, s.vault, s.env)
            .map_err(|e| format!("server `{}`: {e}", server.name))
    };
    match &server.transport {
        Transport::Stdio(st) => {
            let mut env = BTreeMap::new();
            for var in ENV_ALLOW_LIST {
                if let Some(v) = (s.env)(var) {
                    env.insert(var.to_string(), v);
                }
            }
            for var in &st.inherit_env {
                if var.starts_with("FENTARIS_") {
                    continue;
                }
                if let Some(v) = (s.env)(var) {
                    env.insert(var.clone(), v);
                }
            }
            for (k, v) in &st.env {
                let value = match v {
                    EnvValue::Literal(l) => l.clone(),
                    EnvValue::Source(src) => resolve(src)?.expose().to_string(),
                };
                env.insert(k.clone(), value);
            }
            let cwd = st.cwd.as_ref().map(|c| config_dir.join(c));
            let command = if st.command.contains('/') && !Path::new(&st.command).is_absolute() {
                config_dir.join(&st.command).display().to_string()
            } else {
                st.command.clone()
            };
            Ok(Spec::Stdio {
                command,
                args: st.args.clone(),
                env,
                cwd,
            })
        }
        Transport::StreamableHttp(h) => {
            let mut headers: Vec<(String, String)> = Vec::new();
            for (k, v) in &server.headers {
                headers.push((k.clone(), v.clone()));
            }
            for (k, var) in &server.env_header_map {
                let v = (s.env)(var).ok_or_else(|| {
                    format!(
                        "server `{}`: environment variable `{var}` (for header {k}) is not set",
                        server.name
                    )
                })?;
                headers.push((k.clone(), v));
            }
            if let Some(sub) = subject {
                for (k, template) in &server.resolve_headers {
                    let v = template
                        .replace("{subject.id}", &sub.id)
                        .replace("{subject.tenantId}", sub.tenant.as_deref().unwrap_or(""))
                        .replace("{subject.groups}", &sub.groups.join(","));
                    headers.push((k.clone(), v));
                }
            } else if !server.resolve_headers.is_empty() {
                return Err(format!(
                    "server `{}` needs a subject to resolve its headers",
                    server.name
                ));
            }
            if let Some(Auth::Bearer(src)) = &server.auth {
                let secret = resolve(src)?;
                headers.push((
                    "authorization".into(),
                    format!("Bearer {}", secret.expose()),
                ));
            }
            let connect_timeout = server
                .timeouts
                .connect
                .map(|d| d.0)
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
            Ok(Spec::Http {
                url: h.url.clone(),
                headers,
                connect_timeout,
            })
        }
    }
}

/// Whether a stdio server gets a connection per session although its config does not ask
/// for it (`"isolation": "session"`): some policy may allow it to reach a client
/// (`sampling:createMessage`, `elicitation:create`, `roots:list`, or `logging:setLevel` for
/// its log lines).
/// A stdio connection has no per-request stream, so what such a server sends during a call
/// can be tied to the client that caused it only when the connection serves that one
/// session. HTTP upstreams tie it by the request's response stream and stay shared.
pub fn isolated_by_default(engine: &crate::policy::Engine, server: &Server) -> bool {
    use crate::policy::Operation;
    matches!(server.transport, Transport::Stdio(_))
        && server.isolation == crate::config::Isolation::Shared
        && [
            Operation::SamplingCreateMessage,
            Operation::ElicitationCreate,
            Operation::RootsList,
            Operation::LoggingSetLevel,
        ]
        .iter()
        .any(|op| engine.anyone_may(&server.name, op))
}

/// A key for a spec: the server name and a digest of everything the upstream sees.
pub fn spec_key(server: &str, spec: &Spec) -> String {
    let mut h = Sha256::new();
    match spec {
        Spec::Stdio {
            command,
            args,
            env,
            cwd,
        } => {
            h.update(b"stdio\0");
            h.update(command.as_bytes());
            for a in args {
                h.update(b"\0");
                h.update(a.as_bytes());
            }
            for (k, v) in env {
                h.update(b"\x01");
                h.update(k.as_bytes());
                h.update(b"=");
                h.update(v.as_bytes());
            }
            if let Some(c) = cwd {
                h.update(c.display().to_string().as_bytes());
            }
        }
        Spec::Http { url, headers, .. } => {
            h.update(b"http\0");
            h.update(url.as_bytes());
            let mut hs = headers.clone();
            hs.sort();
            for (k, v) in hs {
                h.update(b"\x01");
                h.update(k.to_ascii_lowercase().as_bytes());
                h.update(b":");
                h.update(v.as_bytes());
            }
        }
    }
    let d = h.finalize();
    format!(
        "{server}#{}",
        d.iter()
            .take(12)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// Which connection of a server: its spec key (the server name and a digest of everything
/// the upstream sees, from [`spec_key`]) and whose it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnKey {
    spec: Arc<str>,
    owner: Owner,
}

/// Whose a connection is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Owner {
    /// Shared by every subject whose spec is the same.
    Shared,
    /// Isolated to one downstream session.
    Session(String),
    /// Isolated to one stateless caller (a subject without a session).
    User(String),
}

impl ConnKey {
    pub fn shared(spec: Arc<str>) -> ConnKey {
        ConnKey {
            spec,
            owner: Owner::Shared,
        }
    }
    /// The same spec, isolated to `owner`.
    pub fn owned_by(self, owner: Owner) -> ConnKey {
        ConnKey { owner, ..self }
    }
    /// The spec key.
    pub fn spec(&self) -> &str {
        &self.spec
    }
    pub fn owner(&self) -> &Owner {
        &self.owner
    }
    /// Whether the connection belongs to one session or caller.
    pub fn isolated(&self) -> bool {
        self.owner != Owner::Shared
    }
    /// Whether a session (`None`: a stateless caller) may receive this connection's events:
    /// those of a connection isolated to one session reach only that session, those of a
    /// stateless caller's connection reach no session.
    pub fn reaches(&self, session: Option<&str>) -> bool {
        match &self.owner {
            Owner::Shared => true,
            Owner::Session(owner) => session == Some(owner.as_str()),
            Owner::User(_) => false,
        }
    }
    /// Which connection this is, for audit records: without the digest (it hashes the
    /// resolved credentials).
    pub fn label(&self) -> String {
        match &self.owner {
            Owner::Shared => "shared".to_string(),
            Owner::Session(sid) => format!("session:{sid}"),
            Owner::User(user) => format!("user:{user}"),
        }
    }
}

/// Live connections by key. A closed connection is replaced on next use.
#[derive(Default)]
pub struct Pool {
    conns: tokio::sync::Mutex<crate::FastMap<ConnKey, Arc<OnceCell<Arc<Upstream>>>>>,
    last_used: parking_lot::Mutex<crate::FastMap<ConnKey, std::time::Instant>>,
    /// Exits and failed starts by key: the restart backoff and the crash-loop limit.
    health: parking_lot::Mutex<HashMap<ConnKey, Health>>,
    /// Set by `shutdown`: connections closing now are not restarted.
    stopping: std::sync::atomic::AtomicBool,
    /// Open (or starting) session-isolated connections per user (`limits.maxChildrenPerUser`).
    children: Arc<parking_lot::Mutex<HashMap<String, usize>>>,
}

/// A connection that exits this many times within [`CRASH_WINDOW`] stays down.
pub const CRASH_LIMIT: usize = 5;
pub const CRASH_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);
const BACKOFF_BASE: std::time::Duration = std::time::Duration::from_millis(500);
const BACKOFF_CAP: std::time::Duration = std::time::Duration::from_secs(30);

/// The exit history of one connection key.
#[derive(Debug, Default)]
struct Health {
    exits: std::collections::VecDeque<std::time::Instant>,
    next_try: Option<std::time::Instant>,
    down: bool,
}

/// What the pool says after a connection exits or fails to start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AfterExit {
    /// Restart after this delay (exponential, capped, with jitter).
    RestartIn(std::time::Duration),
    /// Too many exits within [`CRASH_WINDOW`]: stays down.
    Down(usize),
}

/// The backoff after `n` exits in the window: 0.5 s doubling to a 30 s cap, ±25 % jitter.
pub fn backoff(n: usize) -> std::time::Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << (n.saturating_sub(1)).min(16));
    let capped = exp.min(BACKOFF_CAP);
    capped.mul_f64(0.75 + rand::random::<f64>() * 0.5)
}

/// A built upstream spec and its pool key.
type BuiltSpec = (Arc<Spec>, Arc<str>);

/// Built specs and their keys by (server, credential group, subject when the spec depends on
/// it): building one resolves credentials, reads the environment and hashes it all, so it is
/// done once rather than on every request. One cache per config (each `Proxy` has its own),
/// so a request still running on a replaced config cannot put a stale spec in the new one.
#[derive(Default)]
pub struct SpecCache {
    specs: parking_lot::Mutex<HashMap<String, BuiltSpec>>,
}

impl SpecCache {
    /// The spec and (shared) connection key of `server` for (`group`, `subject`), built by `build` on first use.
    /// Pass `subject` only when the spec depends on it (`resolveHeaders`). Failures are not
    /// remembered.
    pub fn spec(
        &self,
        server: &str,
        group: Option<&str>,
        subject: Option<&str>,
        build: impl FnOnce() -> Result<Spec, String>,
    ) -> Result<(Arc<Spec>, ConnKey), String> {
        let mut id = String::with_capacity(server.len() + 32);
        for part in [Some(server), group, subject] {
            // Length-prefixed, so no choice of names can make two tuples collide.
            let part = part.unwrap_or("\u{0}");
            id.push_str(&part.len().to_string());
            id.push(':');
            id.push_str(part);
        }
        if let Some((spec, key)) = self.specs.lock().get(&id) {
            return Ok((spec.clone(), ConnKey::shared(key.clone())));
        }
        let spec = Arc::new(build()?);
        let key: Arc<str> = Arc::from(spec_key(server, &spec));
        self.specs.lock().insert(id, (spec.clone(), key.clone()));
        Ok((spec, ConnKey::shared(key)))
    }
}

impl Pool {
    /// Record an exit (or a failed start) of `key`: when to restart, or that it stays down.
    pub fn note_exit(&self, key: &ConnKey) -> AfterExit {
        let now = std::time::Instant::now();
        let mut all = self.health.lock();
        let h = all.entry(key.clone()).or_default();
        h.exits.push_back(now);
        while h
            .exits
            .front()
            .is_some_and(|t| now.duration_since(*t) > CRASH_WINDOW)
        {
            h.exits.pop_front();
        }
        if h.exits.len() >= CRASH_LIMIT {
            h.down = true;
            h.next_try = None;
            return AfterExit::Down(h.exits.len());
        }
        let delay = backoff(h.exits.len());
        h.next_try = Some(now + delay);
        AfterExit::RestartIn(delay)
    }

    /// Whether `key` may be (re)started now; the error says why not.
    fn may_start(&self, server: &str, key: &ConnKey) -> Result<(), String> {
        let all = self.health.lock();
        match all.get(key) {
            Some(h) if h.down => Err(format!(
                "upstream `{server}` is down: it exited {CRASH_LIMIT} times within {}s (fix it, then restart Fentaris)",
                CRASH_WINDOW.as_secs()
            )),
            Some(Health {
                next_try: Some(t), ..
            }) if *t > std::time::Instant::now() => Err(format!(
                "upstream `{server}` exited and is restarting (next attempt in {:.1}s)",
                t.saturating_duration_since(std::time::Instant::now())
                    .as_secs_f32()
            )),
            _ => Ok(()),
        }
    }

    /// Where `key` stands after its last exit or failed start.
    pub fn state(&self, key: &ConnKey) -> AfterExit {
        let all = self.health.lock();
        match all.get(key) {
            Some(h) if h.down => AfterExit::Down(h.exits.len()),
            Some(Health {
                next_try: Some(t), ..
            }) => AfterExit::RestartIn(t.saturating_duration_since(std::time::Instant::now())),
            _ => AfterExit::RestartIn(BACKOFF_BASE),
        }
    }

    /// Whether the connection `key` is down after a crash loop.
    pub fn is_down(&self, key: &ConnKey) -> bool {
        self.health.lock().get(key).is_some_and(|h| h.down)
    }

    /// Whether a closed connection was closed on purpose (removed from the pool, or the pool
    /// is shutting down) rather than by the upstream exiting.
    pub async fn closed_on_purpose(&self, key: &ConnKey, up: &Arc<Upstream>) -> bool {
        if self.stopping.load(std::sync::atomic::Ordering::Acquire) {
            return true;
        }
        // Closing on purpose removes the key (close_session, close_unless, reaping); a key
        // still present means the upstream went away by itself, even if a request has
        // already started a new connection under it.
        let _ = up;
        !self.conns.lock().await.contains_key(key)
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The connection for `key`, connecting (once, even under concurrency) if needed.
    pub async fn get(
        &self,
        server: &str,
        key: &ConnKey,
        spec: &Spec,
        dropped: impl FnOnce() -> prometheus_client::metrics::counter::Counter,
        client_capabilities: impl FnOnce() -> serde_json::Value,
        max_message: usize,
    ) -> Result<(Arc<Upstream>, bool), String> {
        {
            // The key is copied only the first time (this runs on every call).
            let now = std::time::Instant::now();
            let mut used = self.last_used.lock();
            match used.get_mut(key) {
                Some(t) => *t = now,
                None => {
                    used.insert(key.clone(), now);
                }
            }
        }
        let cell = {
            let mut map = self.conns.lock().await;
            match map.get_mut(key) {
                Some(entry) => {
                    if entry.get().is_some_and(|u| u.is_closed()) {
                        *entry = Arc::new(OnceCell::new());
                    }
                    entry.clone()
                }
                None => {
                    let cell = Arc::new(OnceCell::new());
                    map.insert(key.clone(), cell.clone());
                    cell
                }
            }
        };
        if let Some(up) = cell.get() {
            return Ok((up.clone(), false));
        }
        // Boxed: connecting is rare, and its future would be part of every call's.
        let mut fresh = false;
        let up = Box::pin(cell.get_or_try_init(|| async {
            fresh = true;
            self.may_start(server, key)?;
            let r = Upstream::connect(
                server,
                spec,
                INIT_TIMEOUT,
                dropped(),
                key.isolated(),
                client_capabilities(),
                max_message,
            )
            .await;
            if r.is_err() {
                self.note_exit(key);
            }
            r
        }))
        .await?;
        Ok((up.clone(), fresh))
    }

    /// Close a session's isolated connections.
    pub async fn close_session(&self, session: &str) {
        let owner = Owner::Session(session.to_string());
        self.close_unless(|k| k.owner != owner).await;
    }

    /// Close every connection whose key `keep` rejects; returns their servers.
    pub async fn close_unless(&self, keep: impl Fn(&ConnKey) -> bool) -> Vec<String> {
        let closing: Vec<Arc<Upstream>> = {
            let mut map = self.conns.lock().await;
            let keys: Vec<ConnKey> = map.keys().filter(|k| !keep(k)).cloned().collect();
            keys.into_iter()
                .filter_map(|k| map.remove(&k))
                .filter_map(|c| c.get().cloned())
                .collect()
        };
        let mut servers: Vec<String> = closing.iter().map(|u| u.server.clone()).collect();
        for up in closing {
            up.shutdown().await;
        }
        servers.sort();
        servers.dedup();
        servers
    }

    /// Close stateless callers' isolated connections that were not used for `max_idle`.
    pub async fn reap_idle_users(&self, max_idle: std::time::Duration) {
        let idle: Vec<ConnKey> = {
            let mut used = self.last_used.lock();
            let keys: Vec<ConnKey> = used
                .iter()
                .filter(|(k, t)| matches!(k.owner, Owner::User(_)) && t.elapsed() > max_idle)
                .map(|(k, _)| k.clone())
                .collect();
            for k in &keys {
                used.remove(k);
            }
            keys
        };
        if !idle.is_empty() {
            self.close_unless(|k| !idle.contains(k)).await;
        }
    }

    /// Every live connection.
    pub async fn all(&self) -> Vec<Arc<Upstream>> {
        self.conns
            .lock()
            .await
            .values()
            .filter_map(|c| c.get().cloned())
            .collect()
    }

    /// Close every connection and reap every child.
    pub async fn shutdown(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Release);
        let all = self.all().await;
        let tasks: Vec<_> = all
            .into_iter()
            .map(|u| tokio::spawn(async move { u.shutdown().await }))
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// Session-isolated connections per user (`limits.maxChildrenPerUser`).
impl Pool {
    /// Whether `key` has a live connection (using it starts nothing).
    pub async fn live(&self, key: &ConnKey) -> bool {
        self.conns
            .lock()
            .await
            .get(key)
            .and_then(|c| c.get())
            .is_some_and(|u| !u.is_closed())
    }

    /// Count one more isolated connection for `user`, unless it has `max` already.
    pub fn reserve_child(&self, user: &str, max: usize) -> bool {
        let mut m = self.children.lock();
        let n = m.entry(user.to_string()).or_default();
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    /// Give back a reservation (the connection was not started, or has closed).
    pub fn release_child(&self, user: &str) {
        release(&self.children, user);
    }

    /// The reservation of a started connection is given back when it closes.
    pub fn hold_child(&self, user: &str, up: &Arc<Upstream>) {
        let (children, user, up) = (self.children.clone(), user.to_string(), up.clone());
        tokio::spawn(async move {
            up.closed().await;
            drop(up);
            release(&children, &user);
        });
    }
}

fn release(children: &parking_lot::Mutex<HashMap<String, usize>>, user: &str) {
    let mut m = children.lock();
    if let Some(n) = m.get_mut(user) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            m.remove(user);
        }
    }
}

#[cfg(test)]
impl Pool {
    /// Put a ready connection under `key` (an in-memory upstream in tests).
    pub(crate) async fn insert(&self, key: ConnKey, up: Arc<Upstream>) {
        self.conns
            .lock()
            .await
            .insert(key, Arc::new(OnceCell::new_with(Some(up))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_keys_say_whose_events_reach_whom() {
        let shared = ConnKey::shared(Arc::from("fs#0123"));
        let mine = shared.clone().owned_by(Owner::Session("s1".into()));
        let stateless = shared.clone().owned_by(Owner::User("alice".into()));
        assert!(shared.reaches(Some("s1")) && shared.reaches(None));
        assert!(mine.reaches(Some("s1")));
        assert!(!mine.reaches(Some("s2")) && !mine.reaches(None));
        // A session id that merely ends like another is another session.
        assert!(!mine.reaches(Some("xs1")));
        assert!(!stateless.reaches(Some("alice")) && !stateless.reaches(None));
        assert_eq!(
            [shared.label(), mine.label(), stateless.label()],
            ["shared", "session:s1", "user:alice"]
        );
        assert!(!shared.isolated() && mine.isolated() && stateless.isolated());
        assert_eq!(mine.spec(), "fs#0123");
        assert_ne!(shared, mine);
    }

    #[test]
    fn specs_are_built_once_per_server_group_and_subject() {
        let cache = SpecCache::default();
        let spec = || {
            Ok(Spec::Stdio {
                command: "true".into(),
                args: vec![],
                env: Default::default(),
                cwd: None,
            })
        };
        let (_, a) = cache.spec("fs", Some("g"), None, spec).unwrap();
        let (_, b) = cache
            .spec("fs", Some("g"), None, || Err("built twice".into()))
            .unwrap();
        assert_eq!(a, b);
        assert!(
            cache
                .spec("fs", Some("h"), None, || Err("x".into()))
                .is_err()
        );
        // Same spec under another group: the same connection.
        let (_, c) = cache.spec("fs", Some("h"), None, spec).unwrap();
        assert_eq!(a, c);
    }
}
