//! Connections of a proxy: specs and pool keys per caller, isolation and the per-user
//! children cap, the supervisor of shared servers, and what happens on connect.

use super::*;

impl Proxy {
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
                    valid.insert(crate::proxy::pool::spec_key(&s.name, &spec));
                }
            }
        }
        self.pool
            .close_unless(|key| valid.contains(key.spec()))
            .await
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
                || self.metrics.messages_dropped(server),
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

    /// See [`crate::proxy::pool::isolated_by_default`]. The shared connection is still kept for
    /// readiness, capabilities and the supervisor.
    pub fn isolated_by_default(&self, decl: &crate::config::Server) -> bool {
        crate::proxy::pool::isolated_by_default(&self.engine, decl)
    }

    /// The pool key of a server's shared connection (no subject, no group).
    pub(crate) fn shared_key(&self, server: &str) -> Option<ConnKey> {
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
    /// [`crate::proxy::pool::CRASH_LIMIT`] times within a minute; then it stays down (and `/readyz`
    /// says so). Sessions get list-changed notifications when it is back. `first` is told
    /// when the first attempt is over.
    pub async fn keep_up(self: Arc<Self>, server: String, first: tokio::sync::oneshot::Sender<()>) {
        use crate::proxy::pool::AfterExit;
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
                    tracing::error!(server = %server, "exited {n} times within {}s: it stays down until Fentaris restarts", crate::proxy::pool::CRASH_WINDOW.as_secs());
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
    pub(super) async fn upstream_for(
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
    pub(super) fn client_capabilities(&self, server: &str) -> Value {
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
    pub(super) fn timeout(&self, server: &str) -> std::time::Duration {
        let c = &self.config;
        c.servers
            .iter()
            .chain(c.groups.iter().flat_map(|g| g.servers.iter()))
            .find(|s| s.name == server)
            .and_then(|s| s.timeouts.request.map(|d| d.0))
            .unwrap_or(DEFAULT_REQUEST_TIMEOUT)
    }

    pub(super) fn on_connected(&self, server: &str, up: &Arc<Upstream>, key: &ConnKey) {
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
                .call(
                    crate::proxy::upstream::Call::new(method, json!({}), DEFAULT_REQUEST_TIMEOUT),
                    &ct,
                )
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
}
