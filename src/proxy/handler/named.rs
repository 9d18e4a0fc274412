//! Named operations: tools, prompts, resources, completions, logging and custom methods,
//! each decided, guarded by middleware and forwarded.

use super::*;
use crate::proxy::upstream::Call;

impl Proxy {
    /// Whether `name` is one of the upstream's tools or prompts, refreshing the list once
    /// (every page, within `limits.maxListPages` and `limits.listTimeout`) when it is not
    /// known. An upstream that pages without end gets an error naming it.
    pub(super) async fn ensure_known(
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
                &crate::proxy::upstream::PageLimits::of(&self.config.limits),
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

    pub(super) async fn named(
        &self,
        caller: &Caller,
        kind: NameKind,
        method: &str,
        mut params: Value,
        progress: Option<&Progress>,
        ct: &CancellationToken,
    ) -> Result<Answer, RpcError> {
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
        // The request and decision end here: they are not kept in the future past this.
        let up = {
            let req = match kind {
                NameKind::Tool => Request::tool_call(&server, &name),
                NameKind::Prompt => Request::prompt_get(&server, &name),
            };
            let d = self.decide(caller, &req);
            if !d.is_allow() {
                return Err(hidden(&given));
            }
            self.upstream_for(caller, &server, &d).await?
        };
        // Listing and pinning checks are boxed, and awaited only when they have to ask the
        // upstream: a call's future does not carry their state.
        let known = up.knows(kind, &name) == Some(true)
            || Box::pin(self.ensure_known(&up, kind, &name, ct)).await?;
        if !known {
            return Err(hidden(&given));
        }
        if kind == NameKind::Tool {
            let admitted = match self.pins.settled(&up, &name) {
                Some(v) => v,
                None => Box::pin(self.pins.admits_call(self, &up, &server, &name, ct)).await,
            };
            if !admitted {
                return Err(hidden(&given));
            }
        }
        params["name"] = Value::String(name.clone());
        let (op, mw) = match kind {
            NameKind::Tool => (Operation::ToolCall, MwKind::Tool),
            NameKind::Prompt => (Operation::PromptGet, MwKind::Prompt),
        };
        let step = Step {
            server: &server,
            op,
            target: &name,
            kind: Some(mw),
            args: "arguments",
        };
        self.guarded(caller, up, step, method, params, progress, ct)
            .await
    }

    /// After policy allowed a request: argument schemas, the external authorizer, then the
    /// middleware chain (global, then per target), ending in the upstream.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn guarded(
        &self,
        caller: &Caller,
        up: Arc<Upstream>,
        step: Step<'_>,
        method: &str,
        params: Value,
        progress: Option<&Progress>,
        ct: &CancellationToken,
    ) -> Result<Answer, RpcError> {
        let op_name = step.op.name();
        // Read in place: copied only when a middleware chain takes them.
        let args = args_of(&params, step.args);
        if step.op == Operation::ToolCall {
            self.argument_rules.check(step.server, step.target, args)?;
        }
        if !self.authorizers.is_empty() {
            let waiting = |n: u64| {
                if let Some(p) = progress
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
                args,
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
            args.clone(),
            self.audit.clone(),
        );
        let (caller, ct, method) = (caller.clone(), ct.clone(), method.to_string());
        let progress = progress.cloned();
        Next::new(chain, move |_ctx| {
            Box::pin(async move {
                // Middleware sees (and may edit) the result as a tree.
                me.forward(&up, &method, params, progress.as_ref(), &caller, &ct)
                    .await
                    .and_then(Answer::into_value)
            })
        })
        .run(ctx)
        .await
        .map(Answer::Value)
    }

    pub(super) async fn forward(
        &self,
        up: &Upstream,
        method: &str,
        params: Value,
        channel: Option<&Progress>,
        caller: &Caller,
        ct: &CancellationToken,
    ) -> Result<Answer, RpcError> {
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
                .call_raw(Call::new(method, params, timeout), ct)
                .await
                .map(Answer::Raw)
                .map_err(|e| upstream_error(server, e));
        };
        // Not boxed: every call of a client that takes an SSE stream (as the specification's
        // clients do) comes this way, and a box would cost it an allocation and a copy.
        self.relaying(
            up,
            Call::new(method, params, timeout),
            channel,
            caller,
            log_min,
            ct,
        )
        .await
    }

    /// [`Proxy::forward`] for a client that takes what comes before the result: progress,
    /// log lines, and the upstream's requests to the client.
    async fn relaying(
        &self,
        up: &Upstream,
        call: Call<'_>,
        channel: &Progress,
        caller: &Caller,
        log_min: u8,
        ct: &CancellationToken,
    ) -> Result<Answer, RpcError> {
        let server = up.server.as_str();
        // A progress channel only when the client gave a progress token.
        let (ptx, mut prx) = match channel.token {
            Some(_) => {
                let (tx, rx) = mpsc::unbounded_channel::<Value>();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
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
        let call = up.call_raw(call.progress(ptx.as_ref()).bridge(&btx), ct);
        tokio::pin!(call);
        let mut relayed: Vec<tokio::task::JoinHandle<()>> = Vec::new();
        let result = loop {
            tokio::select! {
                biased;
                Some(p) = crate::proxy::upstream::recv_some(&mut prx) => relay(p),
                Some(item) = brx.recv() => match item {
                    Relayed::Request(req) => relayed.extend(self.to_client(caller, server, req, channel, &done)),
                    Relayed::Notification(method, params) => self.log_to_client(caller, server, &method, params, channel, log_min),
                },
                r = &mut call => {
                    // Progress and log lines the upstream sent before its response are
                    // already queued. (A request still queued is dropped: the upstream gets
                    // an error answer, as its caller's request is over.)
                    while let Some(Ok(p)) = prx.as_mut().map(|r| r.try_recv()) {
                        relay(p);
                    }
                    while let Ok(item) = brx.try_recv() {
                        if let Relayed::Notification(method, params) = item {
                            self.log_to_client(caller, server, &method, params, channel, log_min);
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
        result
            .map(Answer::Raw)
            .map_err(|e| upstream_error(server, e))
    }

    /// Route a resource URI on `/mcp` to the one visible server that listed it.
    pub(super) fn route_uri(&self, caller: &Caller, uri: &str) -> Result<String, RpcError> {
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

    pub(super) async fn resource(
        &self,
        caller: &Caller,
        method: &str,
        mut params: Value,
        progress: Option<&Progress>,
        ct: &CancellationToken,
    ) -> Result<Answer, RpcError> {
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
            args: "",
        };
        self.guarded(caller, up, step, method, params, progress, ct)
            .await
    }

    pub(super) async fn complete(
        &self,
        caller: &Caller,
        mut params: Value,
        ct: &CancellationToken,
    ) -> Result<Answer, RpcError> {
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
        let step = Step {
            server: &server,
            op: Operation::CompletionComplete,
            target: &target,
            kind: Some(mw),
            args: "argument",
        };
        self.guarded(caller, up, step, "completion/complete", params, None, ct)
            .await
    }

    /// Log levels are per session: the level is accepted (if allowed) and kept for the
    /// session, not forwarded (a connection may be shared). Upstream log lines tied to one of
    /// the session's requests are passed on at or above it (see [`Proxy::log_to_client`]).
    pub(super) fn set_level(&self, caller: &Caller, params: &Value) -> Result<Value, RpcError> {
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

    pub(super) async fn custom(
        &self,
        caller: &Caller,
        method: &str,
        params: Value,
        progress: Option<&Progress>,
        ct: &CancellationToken,
    ) -> Result<Answer, RpcError> {
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
            args: "",
        };
        self.guarded(caller, up, step, method, params, progress, ct)
            .await
    }
}

/// The arguments of a request as middleware, authorizers and argument rules see them: the
/// member `key` of `params` (`""`: none), an empty object when it is missing.
fn args_of<'p>(params: &'p Value, key: &str) -> &'p Value {
    static EMPTY: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| json!({}));
    if key.is_empty() {
        return &EMPTY;
    }
    params.get(key).unwrap_or(&EMPTY)
}
