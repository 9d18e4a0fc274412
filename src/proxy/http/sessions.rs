//! Downstream sessions (2025-03-26 to 2025-11-25 clients): opened by `initialize`, bound
//! to the subject that opened them, ended by DELETE, idleness or a revoked key; and the
//! per-user in-flight slots.

use super::token::{Claims, SESSION_MAX_AGE, TokenKey, unix_now};
use super::*;

/// One downstream session (2025-03-26 to 2025-11-25 clients).
pub(super) struct Session {
    /// The short name of its id (token): the same on every replica, used in the audit trail
    /// and for upstream connections isolated to it.
    pub(super) id: String,
    pub(super) user: String,
    pub(super) endpoint: Endpoint,
    pub(super) inflight: Mutex<HashMap<String, CancellationToken>>,
    /// (server, canonical URI) this session subscribed to.
    pub(super) subscriptions: Mutex<HashSet<(String, String)>>,
    /// Answers this client owes to requests Fentaris relayed from an upstream.
    pub(super) replies: crate::proxy::handler::Replies,
    pub(super) last_seen: Mutex<std::time::Instant>,
    /// Key id and client (from `initialize`), for the audit trail.
    pub(super) info: Arc<CallerInfo>,
    pub(super) subject: Arc<Subject>,
    /// Cancelled when the session ends (DELETE, idle, revoked key): its GET stream ends too.
    pub(super) closed: CancellationToken,
    /// When its token expires (Unix seconds): the session ends then, whatever its activity.
    pub(super) expires: u64,
}

impl Session {
    /// A session of `authed` on `endpoint`, for the client `claims` describe.
    pub(super) fn of(authed: &Authed, token: &str, endpoint: Endpoint, claims: &Claims) -> Session {
        let mut info = CallerInfo::new(&claims.key_id, authed.address());
        let client = Arc::make_mut(&mut info.client);
        client.name = claims.client_name.clone();
        client.version = claims.client_version.clone();
        Session {
            id: short_id(token),
            user: authed.identity.user.clone(),
            endpoint,
            inflight: Mutex::new(HashMap::new()),
            subscriptions: Mutex::new(HashSet::new()),
            replies: Default::default(),
            last_seen: Mutex::new(std::time::Instant::now()),
            info: Arc::new(info),
            subject: authed.subject.clone(),
            closed: CancellationToken::new(),
            expires: claims.expires,
        }
    }
}

/// The claims of a new session's token: the caller, the endpoint, what `initialize` said
/// and negotiated, and the expiry.
pub(super) fn claims_of(
    authed: &Authed,
    endpoint: &Endpoint,
    params: &Value,
    protocol: &str,
) -> Claims {
    let s = |k: &str| {
        params
            .pointer(&format!("/clientInfo/{k}"))
            .and_then(Value::as_str)
            .map(|v| v.chars().take(128).collect::<String>())
    };
    let capabilities = params
        .get("capabilities")
        .and_then(Value::as_object)
        .map(|o| {
            o.keys()
                .take(16)
                .map(|k| k.chars().take(64).collect())
                .collect()
        })
        .unwrap_or_default();
    let now = unix_now();
    Claims {
        user: authed.identity.user.clone(),
        key_id: authed.identity.key_id.clone(),
        server: match endpoint {
            Endpoint::Server(s) => Some(s.clone()),
            Endpoint::All => None,
        },
        protocol: protocol.to_string(),
        client_name: s("name"),
        client_version: s("version"),
        capabilities,
        issued: now,
        expires: now + SESSION_MAX_AGE.as_secs(),
    }
}

/// The short, stable name of a session token (24 hex digits of its SHA-256).
pub(super) fn short_id(token: &str) -> String {
    ended_digest(token)[..12]
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// How many ended sessions a replica remembers (by digest) so it does not revive them.
const MAX_ENDED: usize = 200_000;

fn ended_digest(sid: &str) -> [u8; 16] {
    use sha2::Digest;
    let d = sha2::Sha256::digest(sid.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

/// A `session.open` or `session.close` record.
pub(super) fn session_record(event: &'static str, s: &Session, reason: &str) -> Record {
    let mut r = Record::new(event);
    r.session = Some(s.id.clone());
    r.subject = Some(SubjectRef::of(&s.subject, s.info.key_id.clone()));
    r.client = Some(s.info.client.clone());
    if let Endpoint::Server(srv) = &s.endpoint {
        r.server = Some(srv.clone());
    }
    r.reason = Some(reason.into());
    r
}

/// Holds one of a user's in-flight slots; frees it when dropped.
pub(super) struct UserSlot {
    pub(super) map: Arc<Mutex<crate::FastMap<String, usize>>>,
    pub(super) user: String,
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

impl App {
    /// The key that seals and opens session tokens under `st`: derived from `cursorKey`
    /// (every replica), else this process's own.
    pub(super) fn token_key<'a>(&'a self, st: &'a FrontState) -> &'a TokenKey {
        st.access.session_key.as_deref().unwrap_or(&self.local_key)
    }

    /// Remember that these sessions ended here, until their tokens expire.
    fn note_ended(&self, ended: &[(String, Arc<Session>)]) {
        let mut m = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        for (sid, s) in ended {
            m.insert(ended_digest(sid), s.expires);
        }
        if m.len() > MAX_ENDED {
            let now = unix_now();
            m.retain(|_, exp| *exp > now);
        }
        if m.len() > MAX_ENDED {
            // Still full of live entries: forget those expiring first (best effort; a
            // forgotten one could be revived here from its token until it expires).
            let mut exps: Vec<u64> = m.values().copied().collect();
            exps.sort_unstable();
            let cut = exps[exps.len() - MAX_ENDED / 2];
            m.retain(|_, exp| *exp >= cut);
        }
    }

    fn ended_here(&self, sid: &str) -> bool {
        self.ended
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&ended_digest(sid))
    }

    /// Take one of `user`'s in-flight slots, or `None` at the limit.
    pub(super) fn user_slot(&self, user: &str, max: usize) -> Option<UserSlot> {
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

    /// End the sessions `which` selects: removed at once (their ids stop working), a
    /// `session.close` record each, their requests and GET streams cancelled. Returns their
    /// short ids ([`Session::id`]), for [`App::close_isolated`].
    pub(super) fn take_sessions(
        &self,
        which: impl Fn(&str, &Session) -> bool,
        reason: &str,
    ) -> Vec<String> {
        self.take_sessions_for(which, reason, true)
    }

    /// [`App::take_sessions`]; with `remember`, this replica will not revive them from their
    /// tokens (DELETE, revoked key; not idleness, since other replicas may still serve them).
    pub(super) fn take_sessions_for(
        &self,
        which: impl Fn(&str, &Session) -> bool,
        reason: &str,
        remember: bool,
    ) -> Vec<String> {
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
        if remember {
            self.note_ended(&ended);
        }
        let audit = self.st().proxy.audit().clone();
        for (_, s) in &ended {
            audit.write(session_record("session.close", s, reason));
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
        ended.into_iter().map(|(_, s)| s.id.clone()).collect()
    }

    /// Close the upstream connections isolated to these (ended) sessions.
    pub(super) async fn close_isolated(&self, sids: &[String]) {
        let pool = self.st().proxy.pool().clone();
        for sid in sids {
            pool.close_session(sid).await;
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
        let now = unix_now();
        let mut ended = self.take_sessions_for(
            |_, s| s.expires <= now,
            "its token expired (sessions last at most 12 hours)",
            true,
        );
        // With a shared session key another replica may be serving the session: only this
        // replica's state of it ends (a later request here rebuilds it from its token).
        let shared = self.st().access.session_key.is_some();
        ended.extend(self.take_sessions_for(
            |_, s| {
                s.last_seen
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .elapsed()
                    > max_idle
            },
            if shared {
                "idle here for longer than the session timeout (its token stays good on every replica until it expires)"
            } else {
                "idle for longer than the session timeout"
            },
            !shared,
        ));
        self.close_isolated(&ended).await;
        ended.len()
    }
}

pub(super) struct InflightGuard {
    pub(super) session: Option<Arc<Session>>,
    pub(super) key: String,
    /// The user's in-flight slot, freed with the guard.
    pub(super) _slot: UserSlot,
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

pub(super) fn session_of(
    app: &App,
    h: &HeaderMap,
    authed: &Authed,
    endpoint: &Endpoint,
) -> Result<Option<Arc<Session>>, Box<Response>> {
    let Some(sid) = h.get("mcp-session-id").and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let now = unix_now();
    {
        let sessions = app.sessions.lock().unwrap_or_else(|e| e.into_inner());
        match sessions.get(sid) {
            // Another subject presenting this session id gets what an unknown id gets.
            Some(s) if s.user == authed.identity.user && s.endpoint == *endpoint => {
                if s.expires <= now {
                    return Err(Box::new(not_found()));
                }
                *s.last_seen.lock().unwrap_or_else(|e| e.into_inner()) = std::time::Instant::now();
                return Ok(Some(s.clone()));
            }
            Some(_) => return Err(Box::new(not_found())),
            None => {}
        }
    }
    resume(app, sid, authed, endpoint, now).map(Some)
}

/// A session this replica does not hold (opened on another replica, or before a restart):
/// rebuilt from its token when it is sealed under the shared key, has not expired, was not
/// ended here, belongs to this caller's user and endpoint, and was opened with a key that
/// can still log in. Anything else gets what an unknown id gets (404), so the client
/// re-initializes.
fn resume(
    app: &App,
    sid: &str,
    authed: &Authed,
    endpoint: &Endpoint,
    now: u64,
) -> Result<Arc<Session>, Box<Response>> {
    let st = &authed.st;
    let gone = || Box::new(not_found());
    let Some(key) = st.access.session_key.as_deref() else {
        return Err(gone());
    };
    if app.ended_here(sid) {
        return Err(gone());
    }
    let claims = key.open(sid, now).map_err(|_| gone())?;
    let server = match endpoint {
        Endpoint::Server(s) => Some(s),
        Endpoint::All => None,
    };
    if claims.user != authed.identity.user || claims.server.as_ref() != server {
        return Err(gone());
    }
    if claims.key_id != "trusted-header" && !st.verifier.is_live(&claims.key_id) {
        return Err(gone());
    }
    let limits = &st.proxy.config().limits;
    let session = {
        let mut sessions = app.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = sessions.get(sid) {
            // Rebuilt by a concurrent request meanwhile.
            return if s.user == authed.identity.user && s.endpoint == *endpoint {
                Ok(s.clone())
            } else {
                Err(gone())
            };
        }
        let mine = sessions
            .values()
            .filter(|s| s.user == authed.identity.user)
            .count();
        // The caps of `initialize` hold for rebuilt sessions too (per replica).
        let full = if sessions.len() >= limits.max_sessions {
            Some((StatusCode::SERVICE_UNAVAILABLE, "limits.maxSessions"))
        } else if mine >= limits.max_sessions_per_user {
            Some((StatusCode::TOO_MANY_REQUESTS, "limits.maxSessionsPerUser"))
        } else {
            None
        };
        if let Some((status, limit)) = full {
            let mut r = json_response(
                status,
                json!({ "jsonrpc": "2.0", "id": null, "error": { "code": -32000, "message": format!("too many open sessions on this replica ({limit}); end unused sessions with DELETE or try again later") } }),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return Err(Box::new(r));
        }
        let s = Arc::new(Session::of(authed, sid, endpoint.clone(), &claims));
        sessions.insert(sid.to_string(), s.clone());
        s
    };
    st.proxy.audit().write(session_record(
        "session.open",
        &session,
        "resumed from its token (opened on another replica or before a restart)",
    ));
    Ok(session)
}

pub(super) async fn delete_all(State(app): State<Arc<App>>, req: Request) -> Response {
    end(app, None, req)
}
pub(super) async fn delete_one(
    State(app): State<Arc<App>>,
    Path(server): Path<String>,
    req: Request,
) -> Response {
    end(app, Some(server), req)
}

pub(super) fn end(app: Arc<App>, server: Option<String>, req: Request) -> Response {
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
