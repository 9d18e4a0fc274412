//! Lists: visible items per subject; on `/mcp` every server's pages gathered into one answer
//! up to `limits.maxListItems` (and the page, time and byte bounds), then a sealed cursor
//! that resumes at the item where the answer stopped; the routes (prefixed names) they
//! record.

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
        // Every usable server: their pages gathered into one answer up to the bounds, then
        // Fentaris' own cursor (clients that never follow `nextCursor` see every server).
        let servers = self.servers(caller);
        note_list("*", &op, true);
        let start = match params.get("cursor").filter(|c| !c.is_null()) {
            None => Position::default(),
            Some(c) => {
                let invalid = || {
                    RpcError::invalid_params(format!(
                        "invalid cursor: not one Fentaris gave this user for {method}, or its server is gone; list again without a cursor"
                    ))
                };
                let (server, cursor, skip) = self
                    .open_cursor(&caller.subject, key, c)
                    .ok_or_else(invalid)?;
                let server = servers
                    .iter()
                    .position(|s| *s == server)
                    .ok_or_else(invalid)?;
                Position {
                    server,
                    cursor,
                    skip,
                }
            }
        };
        let mut gather = Gather::new(start, servers.len(), Bounds::of(&self.config.limits));
        let list = (key, item_key, method);
        // First pages are read READ_AHEAD servers at a time, concurrently, so an answer waits
        // for about the slowest upstream of each window rather than for their sum; what a
        // bound leaves unused is dropped (at most READ_AHEAD - 1 pages).
        let mut ahead: std::collections::VecDeque<(usize, Result<Option<Page>, RpcError>)> =
            Default::default();
        let next = loop {
            match gather.next() {
                Step::Done(next) => break next,
                Step::Fetch { server, cursor } => {
                    let page = match cursor {
                        Some(c) => {
                            self.aggregated_page(caller, &servers[server], &op, list, Some(c), ct)
                                .await
                        }
                        None => {
                            if ahead.front().is_none_or(|(i, _)| *i != server) {
                                let window = server..servers.len().min(server + READ_AHEAD);
                                let pages = window.clone().map(|i| {
                                    self.aggregated_page(caller, &servers[i], &op, list, None, ct)
                                });
                                ahead = window
                                    .zip(futures_util::future::join_all(pages).await)
                                    .collect();
                            }
                            match ahead.pop_front() {
                                Some((_, page)) => page,
                                None => Ok(None),
                            }
                        }
                    };
                    match page? {
                        Some((kept, next)) => gather.page(kept, next),
                        None => gather.skip_server(),
                    }
                }
            }
        };
        let mut out = Map::new();
        out.insert(key.to_string(), Value::Array(gather.into_items()));
        if let Some(p) = next {
            let c = self.seal_cursor(&caller.subject, key, &servers[p.server], &p);
            out.insert("nextCursor".into(), Value::String(c));
        }
        Ok(Value::Object(out))
    }

    /// One upstream page of an aggregated list: the kept items (renamed) with their index in
    /// the upstream's page, and its `nextCursor`. `None` when the server is left out (nothing
    /// visible, not reachable, or its list failed: logged). Only cancellation is an error.
    async fn aggregated_page(
        &self,
        caller: &Caller,
        server: &str,
        op: &Operation,
        (key, item_key, method): (&str, &str, &str),
        cursor: Option<Value>,
        ct: &CancellationToken,
    ) -> Result<Option<Page>, RpcError> {
        let Some(view) = self.engine.list_view(&caller.subject, server, op) else {
            return Ok(None);
        };
        let group = self.list_group(caller, server, op);
        let up = match self.upstream(Some(caller), server, group.as_deref()).await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(
                    server,
                    "left out of the aggregated list: {}",
                    crate::diagnostics::Escaped(&e.message)
                );
                return Ok(None);
            }
        };
        let first = cursor.is_none();
        let mut p = json!({});
        if let Some(c) = cursor {
            p["cursor"] = c;
        }
        let mut page = match up
            .call(
                crate::proxy::upstream::Call::new(method, p, self.timeout(server)),
                ct,
            )
            .await
        {
            Ok(r) => r,
            Err(UpstreamError::Cancelled) => return Err(RpcError::cancelled()),
            Err(e) => {
                tracing::warn!(
                    server,
                    "left out of the aggregated list: {}",
                    crate::diagnostics::Escaped(&e.to_string())
                );
                return Ok(None);
            }
        };
        let kept = self.keep_indexed(
            caller, &up, server, op, &view, &mut page, key, item_key, first,
        );
        let next = page.get("nextCursor").filter(|c| !c.is_null()).cloned();
        Ok(Some((kept, next)))
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
        self.keep_indexed(
            caller, up, server, op, view, page, key, item_key, first_page,
        )
        .into_iter()
        .map(|(_, i)| i)
        .collect()
    }

    /// [`Proxy::keep`], each kept item with its index in the upstream's page.
    #[allow(clippy::too_many_arguments)]
    fn keep_indexed(
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
    ) -> Vec<(usize, Value)> {
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
            .enumerate()
            .filter(|(_, i)| {
                i.get(item_key)
                    .and_then(Value::as_str)
                    .is_some_and(|n| view.visible(n))
                    && (*op != Operation::ToolsList || self.pins.admits(self, server, i))
            })
            .map(|(ix, mut i)| {
                if rename && let Some(n) = i.get("name").and_then(Value::as_str) {
                    i["name"] = Value::String(format!("{server}{}{n}", self.config.name_separator));
                }
                (ix, i)
            })
            .collect()
    }

    /// An opaque cursor: (list, server, upstream cursor, items of that upstream page already
    /// answered), bound to the subject and MAC'd.
    pub(super) fn seal_cursor(
        &self,
        subject: &Subject,
        list: &str,
        server: &str,
        at: &Position,
    ) -> String {
        let mut payload = json!({ "k": list, "s": server, "c": at.cursor });
        if at.skip > 0 {
            payload["o"] = json!(at.skip);
        }
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let body = base64::Engine::encode(&b64, payload.to_string().as_bytes());
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

    /// Check and open a cursor this subject got from Fentaris for this list (`tools`,
    /// `prompts`, …): (server, upstream cursor, items of that page already answered).
    pub(super) fn open_cursor(
        &self,
        subject: &Subject,
        list: &str,
        cursor: &Value,
    ) -> Option<(String, Option<Value>, usize)> {
        use subtle::ConstantTimeEq;
        let (body, tag) = cursor.as_str()?.split_once('.')?;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let given = base64::Engine::decode(&b64, tag).ok()?;
        let want = self.cursor_tag(subject, body);
        if given.len() != want.len() || !bool::from(want.ct_eq(&given)) {
            return None;
        }
        let v: Value = serde_json::from_slice(&base64::Engine::decode(&b64, body).ok()?).ok()?;
        if v.get("k")?.as_str()? != list {
            return None;
        }
        let server = v.get("s")?.as_str()?.to_string();
        let c = v.get("c").filter(|c| !c.is_null()).cloned();
        let skip = match v.get("o") {
            None => 0,
            Some(o) => usize::try_from(o.as_u64()?).ok()?,
        };
        Some((server, c, skip))
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

/// Servers whose first page of an aggregated list is read concurrently.
const READ_AHEAD: usize = 4;

/// One upstream page of an aggregated list: the kept items with their index in the
/// upstream's page, and its `nextCursor`.
pub(super) type Page = (Vec<(usize, Value)>, Option<Value>);

/// Where an aggregated list resumes: the server (index in [`Proxy::servers`]), the upstream
/// cursor of the page to read, and how many items of that page were already answered.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Position {
    pub server: usize,
    pub cursor: Option<Value>,
    pub skip: usize,
}

/// The bounds of one answer of an aggregated list.
#[derive(Debug, Clone)]
pub(super) struct Bounds {
    /// Items in the answer (`limits.maxListItems`).
    pub items: usize,
    /// Bytes of items (`limits.maxUpstreamMessageBytes`); one item larger than this is still
    /// answered alone, so every answer makes progress.
    pub bytes: usize,
    /// Upstream pages read (`limits.maxListPages`).
    pub pages: usize,
    /// Time after which no further page is read (`limits.listTimeout`).
    pub within: std::time::Duration,
}

impl Bounds {
    pub fn of(l: &crate::config::Limits) -> Bounds {
        Bounds {
            items: l.max_list_items.max(1),
            bytes: l.max_upstream_message_bytes,
            pages: l.max_list_pages.max(1),
            within: l.list_timeout.0,
        }
    }
}

/// What the gathering needs next.
#[derive(Debug, PartialEq)]
pub(super) enum Step {
    /// Read this server's page at this upstream cursor.
    Fetch {
        server: usize,
        cursor: Option<Value>,
    },
    /// The answer is complete; `Some` where the next one resumes.
    Done(Option<Position>),
}

/// One answer of an aggregated list being gathered (pure; the caller reads the pages). At
/// least one page is read per answer and every stop is at an exact item, so following the
/// cursors yields every item once, whatever the bounds.
pub(super) struct Gather {
    at: Position,
    servers: usize,
    bounds: Bounds,
    items: Vec<Value>,
    bytes: usize,
    pages: usize,
    started: std::time::Instant,
    stopped: Option<Position>,
}

impl Gather {
    pub fn new(start: Position, servers: usize, bounds: Bounds) -> Gather {
        Gather {
            at: start,
            servers,
            bounds,
            items: Vec::new(),
            bytes: 0,
            pages: 0,
            started: std::time::Instant::now(),
            stopped: None,
        }
    }

    pub fn next(&self) -> Step {
        if let Some(p) = &self.stopped {
            return Step::Done(Some(p.clone()));
        }
        if self.at.server >= self.servers {
            return Step::Done(None);
        }
        let full = self.items.len() >= self.bounds.items
            || self.pages >= self.bounds.pages
            || self.started.elapsed() >= self.bounds.within;
        if self.pages > 0 && full {
            return Step::Done(Some(self.at.clone()));
        }
        Step::Fetch {
            server: self.at.server,
            cursor: self.at.cursor.clone(),
        }
    }

    /// The page asked for by [`Gather::next`]: its kept items with their index in the
    /// upstream's page, and its `nextCursor`.
    pub fn page(&mut self, kept: Vec<(usize, Value)>, next: Option<Value>) {
        self.pages += 1;
        for (ix, item) in kept {
            if ix < self.at.skip {
                continue;
            }
            let size = json_len(&item);
            if self.items.len() >= self.bounds.items
                || (!self.items.is_empty() && self.bytes.saturating_add(size) > self.bounds.bytes)
            {
                self.stopped = Some(Position {
                    skip: ix,
                    ..self.at.clone()
                });
                return;
            }
            self.bytes = self.bytes.saturating_add(size);
            self.items.push(item);
        }
        self.at = match next {
            Some(c) => Position {
                server: self.at.server,
                cursor: Some(c),
                skip: 0,
            },
            None => Position {
                server: self.at.server + 1,
                ..Position::default()
            },
        };
    }

    /// The server asked for by [`Gather::next`] is left out.
    pub fn skip_server(&mut self) {
        self.at = Position {
            server: self.at.server + 1,
            ..Position::default()
        };
    }

    pub fn into_items(self) -> Vec<Value> {
        self.items
    }
}

/// The length of `v` as JSON, without building the text.
fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upstreams as pages of item names; `None` is a server left out. Names starting with
    /// `h` are hidden by "policy". Returns every answer of following the cursors.
    fn follow(servers: &[Option<Vec<Vec<&str>>>], bounds: &Bounds) -> Vec<Vec<String>> {
        let mut answers = Vec::new();
        let mut start = Position::default();
        loop {
            let mut g = Gather::new(start, servers.len(), bounds.clone());
            let mut pages = 0;
            let next = loop {
                match g.next() {
                    Step::Done(n) => break n,
                    Step::Fetch { server, cursor } => {
                        pages += 1;
                        let Some(upstream) = &servers[server] else {
                            g.skip_server();
                            continue;
                        };
                        let at = cursor.map_or(0, |c| c.as_u64().unwrap() as usize);
                        let kept = upstream[at]
                            .iter()
                            .enumerate()
                            .filter(|(_, n)| !n.starts_with('h'))
                            .map(|(i, n)| (i, json!(format!("s{server}__{n}"))))
                            .collect();
                        let next = (at + 1 < upstream.len()).then(|| json!(at + 1));
                        g.page(kept, next);
                    }
                }
            };
            assert!(pages <= bounds.pages + servers.len(), "{pages} pages read");
            let items: Vec<String> = g
                .into_items()
                .into_iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            assert!(items.len() <= bounds.items, "{items:?}");
            answers.push(items);
            match next {
                Some(p) => start = p,
                None => return answers,
            }
            assert!(answers.len() < 1000, "the cursors do not end");
        }
    }

    fn bounds(items: usize, pages: usize) -> Bounds {
        Bounds {
            items,
            bytes: usize::MAX,
            pages,
            within: std::time::Duration::from_secs(60),
        }
    }

    fn upstreams() -> Vec<Option<Vec<Vec<&'static str>>>> {
        vec![
            Some(vec![
                vec!["a", "hx", "b"],
                vec!["c"],
                vec![],
                vec!["hy", "d", "e"],
            ]),
            None,
            Some(vec![vec![]]),
            Some(vec![vec!["hz"]]),
            Some(vec![vec!["f", "g", "h1", "i", "j"], vec!["k"]]),
        ]
    }

    #[test]
    fn one_answer_holds_every_server_within_the_bounds() {
        let all = follow(&upstreams(), &bounds(1000, 100));
        assert_eq!(
            all,
            [[
                "s0__a", "s0__b", "s0__c", "s0__d", "s0__e", "s4__f", "s4__g", "s4__i", "s4__j",
                "s4__k"
            ]]
        );
    }

    #[test]
    fn following_the_cursors_yields_every_item_once_whatever_the_bounds() {
        let want = follow(&upstreams(), &bounds(1000, 100)).concat();
        for items in 1..=11 {
            for pages in 1..=4 {
                let answers = follow(&upstreams(), &bounds(items, pages));
                assert_eq!(answers.concat(), want, "items {items}, pages {pages}");
            }
            // Only the item bound ends answers: every one but the last is full.
            let answers = follow(&upstreams(), &bounds(items, 100));
            assert_eq!(answers.concat(), want, "items {items}");
            for a in &answers[..answers.len() - 1] {
                assert_eq!(a.len(), items, "{answers:?}");
            }
        }
        // One item per answer: stops inside upstream pages, resuming at the exact item.
        let answers = follow(&upstreams(), &bounds(1, 100));
        assert_eq!(answers.iter().filter(|a| a.is_empty()).count(), 0);
        assert_eq!(answers.len(), want.len());
    }

    #[test]
    fn the_byte_bound_stops_before_an_item_but_never_answers_nothing() {
        let big = "b".repeat(100);
        let mut g = Gather::new(
            Position::default(),
            1,
            Bounds {
                bytes: 150,
                ..bounds(1000, 100)
            },
        );
        assert_eq!(
            g.next(),
            Step::Fetch {
                server: 0,
                cursor: None
            }
        );
        g.page(
            vec![(0, json!(big)), (1, json!(big)), (3, json!("small"))],
            None,
        );
        assert_eq!(
            g.next(),
            Step::Done(Some(Position {
                server: 0,
                cursor: None,
                skip: 1
            }))
        );
        assert_eq!(g.into_items().len(), 1);
        // Resumed there: the second item alone, even though it exceeds what is left.
        let mut g = Gather::new(
            Position {
                server: 0,
                cursor: None,
                skip: 1,
            },
            1,
            Bounds {
                bytes: 50,
                ..bounds(1000, 100)
            },
        );
        g.page(
            vec![(0, json!(big)), (1, json!(big)), (3, json!("small"))],
            None,
        );
        assert_eq!(
            g.next(),
            Step::Done(Some(Position {
                server: 0,
                cursor: None,
                skip: 3
            }))
        );
        assert_eq!(g.into_items(), [json!(big)]);
    }

    #[test]
    fn the_time_bound_stops_before_the_next_page_not_before_the_first() {
        let mut g = Gather::new(Position::default(), 2, bounds(1000, 100));
        g.bounds.within = std::time::Duration::ZERO;
        assert!(matches!(g.next(), Step::Fetch { server: 0, .. }));
        g.page(vec![(0, json!("a"))], Some(json!("p2")));
        assert_eq!(
            g.next(),
            Step::Done(Some(Position {
                server: 0,
                cursor: Some(json!("p2")),
                skip: 0
            }))
        );
    }

    fn proxy() -> Proxy {
        let config: Config = serde_json::from_value(json!({
            "servers": [{ "name": "mem", "transport": { "stdio": { "command": "unused" } } }],
            "groups": [{ "id": "g", "users": ["alice", "bob"],
                "policy": { "rules": [{ "mcp": "mem", "allow": "*" }] } }]
        }))
        .unwrap();
        Proxy::new(config, PathBuf::from("."), None, Box::new(|_| None))
    }

    #[test]
    fn cursors_are_sealed_to_the_subject_and_the_list() {
        let p = proxy();
        let alice = p.engine.subject("alice");
        let bob = p.engine.subject("bob");
        let at = Position {
            server: 0,
            cursor: Some(json!({ "upstream": ["opaque", 1] })),
            skip: 7,
        };
        let c = json!(p.seal_cursor(&alice, "tools", "mem", &at));
        assert_eq!(
            p.open_cursor(&alice, "tools", &c),
            Some(("mem".into(), at.cursor.clone(), 7))
        );
        assert_eq!(p.open_cursor(&bob, "tools", &c), None);
        assert_eq!(p.open_cursor(&alice, "prompts", &c), None);
        // Without an offset and without an upstream cursor.
        let c = json!(p.seal_cursor(&alice, "resources", "mem", &Position::default()));
        assert_eq!(
            p.open_cursor(&alice, "resources", &c),
            Some(("mem".into(), None, 0))
        );
        // Any change to the body or the tag is refused.
        let s = c.as_str().unwrap();
        let (body, tag) = s.split_once('.').unwrap();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let forged = base64::Engine::encode(
            &b64,
            json!({ "k": "resources", "s": "mem", "c": null, "o": 3 }).to_string(),
        );
        for bad in [
            format!("{forged}.{tag}"),
            format!("{body}.{}", &tag[1..]),
            format!("x{s}"),
            body.to_string(),
            String::new(),
        ] {
            assert_eq!(
                p.open_cursor(&alice, "resources", &json!(bad)),
                None,
                "{bad}"
            );
        }
        assert_eq!(p.open_cursor(&alice, "resources", &json!(5)), None);
    }

    #[test]
    fn json_len_is_the_length_of_the_text() {
        let v = json!({ "name": "a\"b", "n": [1, 2.5, null], "é": true });
        assert_eq!(json_len(&v), v.to_string().len());
    }
}
