//! Lists: visible items per subject, one upstream page per response on `/mcp` with sealed
//! cursors, and the routes (prefixed names) they record.

use super::*;

impl Proxy {
    /// The servers this endpoint reaches for the subject.
    pub(super) fn servers(&self, caller: &Caller) -> Vec<String> {
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
    pub(super) fn split<'n>(&self, caller: &Caller, name: &'n str) -> Option<(String, &'n str)> {
        match &caller.endpoint {
            Endpoint::Server(s) => Some((s.clone(), name)),
            Endpoint::All => name
                .split_once(self.config.name_separator.as_str())
                .map(|(s, n)| (s.to_string(), n)),
        }
    }

    /// The group whose credentials serve a list for this subject and server.
    pub(super) fn list_group(
        &self,
        caller: &Caller,
        server: &str,
        op: &Operation,
    ) -> Option<String> {
        let direct = op.direct_of_list().unwrap_or(Operation::ToolCall);
        // The first group of the subject with any allow of the direct operation there.
        let probe = Request::server_op(server, direct);
        let d = self.engine.decide(&caller.subject, &probe);
        self.engine
            .deciding_group(&d)
            .map(str::to_string)
            .or_else(|| caller.subject.groups.first().cloned())
    }

    pub(super) async fn list(
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
                    crate::proxy::upstream::Call::new(
                        method,
                        strip_progress(params),
                        self.timeout(server),
                    ),
                    ct,
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
                .call(
                    crate::proxy::upstream::Call::new(method, p, self.timeout(server)),
                    ct,
                )
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
    pub(super) fn keep(
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
    pub(super) fn seal_cursor(
        &self,
        subject: &Subject,
        server: &str,
        upstream: Option<&Value>,
    ) -> String {
        let payload = json!({ "s": server, "c": upstream }).to_string();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let body = base64::Engine::encode(&b64, payload.as_bytes());
        let tag = self.cursor_tag(subject, &body);
        format!("{body}.{}", base64::Engine::encode(&b64, tag))
    }

    pub(super) fn cursor_tag(&self, subject: &Subject, body: &str) -> [u8; 32] {
        use hmac::Mac;
        let mut m = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.cursor_key.bytes()[..])
            .expect("HMAC takes any key length");
        m.update(subject.id.as_bytes());
        m.update(b"\0");
        m.update(body.as_bytes());
        m.finalize().into_bytes().into()
    }

    /// Check and open a cursor this subject got from Fentaris.
    pub(super) fn open_cursor(
        &self,
        subject: &Subject,
        cursor: &Value,
    ) -> Option<(String, Option<Value>)> {
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

    pub(super) fn record_routes(&self, server: &str, op: &Operation, items: &[Value], first: bool) {
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
}
