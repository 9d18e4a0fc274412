//! Downstream sessions (2025-03-26 to 2025-11-25 clients): opened by `initialize`, bound
//! to the subject that opened them, ended by DELETE, idleness or a revoked key; and the
//! per-user in-flight slots.

use super::*;

/// One downstream session (2025-03-26 to 2025-11-25 clients).
pub(super) struct Session {
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
}

/// A `session.open` or `session.close` record.
pub(super) fn session_record(event: &'static str, sid: &str, s: &Session, reason: &str) -> Record {
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

/// Holds one of a user's in-flight slots; frees it when dropped.
pub(super) struct UserSlot {
    pub(super) map: Arc<Mutex<HashMap<String, usize>>>,
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
    /// ids, for [`App::close_isolated`].
    pub(super) fn take_sessions(
        &self,
        which: impl Fn(&str, &Session) -> bool,
        reason: &str,
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
        let audit = self.st().proxy.audit().clone();
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

pub(super) fn new_session_id() -> String {
    let mut b = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
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
