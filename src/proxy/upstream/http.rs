//! Streamable-HTTP upstreams: POSTs (JSON or SSE answers, see [`super::sse`]), the upstream
//! session id, re-initialization when it expires, replies to the upstream's requests, and
//! same-origin redirects only.

use serde_json::{Value, json};

use parking_lot::Mutex;

use super::{Shared, UpstreamError, sse};

pub(super) fn origin_of(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}:{}",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.port_or_known_default().unwrap_or(0)
        ),
        Err(_) => String::new(),
    }
}

#[derive(Clone)]
pub(super) struct HttpTarget {
    client: reqwest::Client,
    url: String,
    headers: reqwest::header::HeaderMap,
    session: std::sync::Arc<Mutex<Option<String>>>,
    protocol: Option<String>,
    init: std::sync::Arc<Mutex<Option<Value>>>,
    reinit: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl HttpTarget {
    /// Where to POST on `conn`, with the negotiated `protocol` revision once known.
    pub(super) fn of(conn: &super::HttpConn, protocol: Option<String>) -> HttpTarget {
        HttpTarget {
            client: conn.client.clone(),
            url: conn.url.clone(),
            headers: conn.headers.clone(),
            session: conn.session.clone(),
            protocol,
            init: conn.init.clone(),
            reinit: conn.reinit.clone(),
        }
    }

    /// The upstream said our session is gone (404): open a new one with the original
    /// initialize params (once, however many requests noticed), so the request can be retried.
    async fn reinitialize(&self, expired: Option<&str>) -> Result<(), String> {
        let _one = self.reinit.lock().await;
        let now = self.session.lock().clone();
        if now.as_deref() != expired {
            return Ok(()); // another request already opened a new session
        }
        let params = self.init.lock().clone().ok_or("no initialize params")?;
        let post = |body: Value, session: Option<&str>| {
            let mut req = self
                .client
                .post(&self.url)
                .headers(self.headers.clone())
                .header("accept", "application/json, text/event-stream")
                .header("content-type", "application/json")
                .body(body.to_string());
            if let Some(s) = session {
                req = req.header("mcp-session-id", s);
            }
            if let Some(p) = &self.protocol {
                req = req.header("mcp-protocol-version", p);
            }
            req.send()
        };
        let resp = post(
            json!({ "jsonrpc": "2.0", "id": "fentaris-reinit", "method": "initialize", "params": params }),
            None,
        )
        .await
        .map_err(|e| e.without_url().to_string())?;
        if !resp.status().is_success() {
            return Err(format!(
                "initialize answered HTTP {}",
                resp.status().as_u16()
            ));
        }
        let sid = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let _ = resp.bytes().await;
        *self.session.lock() = sid.clone();
        let _ = post(
            json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }),
            sid.as_deref(),
        )
        .await;
        Ok(())
    }

    /// POST a reply (to a server-to-client request) back to the upstream.
    pub(super) async fn reply(&self, reply: Value) {
        let session = self.session.lock().clone();
        let mut req = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(reply.to_string());
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        if let Some(p) = &self.protocol {
            req = req.header("mcp-protocol-version", p);
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::warn!(
                "an upstream refused Fentaris' answer to its request (HTTP {})",
                r.status().as_u16()
            ),
            Err(e) => tracing::warn!(
                "cannot send an answer to an upstream's request: {}",
                e.without_url()
            ),
        }
    }
}

pub(super) async fn http_post(
    target: HttpTarget,
    msg: Value,
    id: Option<u64>,
    shared: std::sync::Arc<Shared>,
) {
    http_post_once(target, msg, id, shared, true).await
}

async fn http_post_once(
    target: HttpTarget,
    msg: Value,
    id: Option<u64>,
    shared: std::sync::Arc<Shared>,
    may_reinit: bool,
) {
    let fail = |shared: &Shared, message: String| {
        if let Some(id) = id
            && let Some(p) = shared.pending.lock().remove(&id)
        {
            let _ = p.send(Err(UpstreamError::Transport(message)));
        }
    };
    let session = target.session.lock().clone();
    let mut req = target
        .client
        .post(&target.url)
        .headers(target.headers.clone())
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(msg.to_string());
    if let Some(s) = &session {
        req = req.header("mcp-session-id", s);
    }
    if let Some(p) = &target.protocol {
        req = req.header("mcp-protocol-version", p);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            let connect = e.is_connect();
            let why = format!(
                "upstream `{}` is unreachable: {}",
                shared.name,
                e.without_url()
            );
            if connect {
                // Nothing listens there any more: the connection is over. Its supervisor (or
                // the next request) reconnects, with backoff after repeated failures.
                shared.fail_all(&why);
            } else {
                fail(&shared, why);
            }
            return;
        }
    };
    let status = resp.status();
    if status == reqwest::StatusCode::ACCEPTED {
        return;
    }
    if status == reqwest::StatusCode::NOT_FOUND
        && may_reinit
        && session.is_some()
        && msg.get("method").and_then(Value::as_str) != Some("initialize")
    {
        // The upstream session expired: open a new one and send this message again, once.
        match target.reinitialize(session.as_deref()).await {
            Ok(()) => {
                tracing::info!(server = %shared.name, "upstream session expired; re-initialized");
                return Box::pin(http_post_once(target, msg, id, shared, false)).await;
            }
            Err(e) => {
                fail(
                    &shared,
                    format!(
                        "upstream `{}` lost its session and could not open a new one: {e}",
                        shared.name
                    ),
                );
                return;
            }
        }
    }
    if !status.is_success() {
        let what = if status == reqwest::StatusCode::UNAUTHORIZED
            || status == reqwest::StatusCode::FORBIDDEN
        {
            format!(
                "upstream `{}` rejected Fentaris' credentials (HTTP {})",
                shared.name,
                status.as_u16()
            )
        } else {
            format!(
                "upstream `{}` answered HTTP {}",
                shared.name,
                status.as_u16()
            )
        };
        fail(&shared, what);
        return;
    }
    if msg.get("method").and_then(Value::as_str) == Some("initialize")
        && let Some(s) = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
    {
        *target.session.lock() = Some(s.to_string());
    }
    let is_sse = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/event-stream"));
    if is_sse {
        use futures_util::StreamExt as _;
        let events = sse::data_events(sse::body_chunks(resp), shared.max_message);
        tokio::pin!(events);
        while let Some(event) = events.next().await {
            let data = match event {
                Ok(data) => data,
                Err(sse::SseError::TooLarge) => {
                    // Stop reading (dropping the response closes the stream).
                    fail(
                        &shared,
                        too_large(&shared.name, shared.max_message, "an SSE event"),
                    );
                    return;
                }
                Err(e) => {
                    fail(
                        &shared,
                        format!("upstream `{}` stream failed: {e}", shared.name),
                    );
                    return;
                }
            };
            if let Ok(v) = serde_json::from_str::<Value>(&data)
                && let Some(reply) = shared.dispatch(v, id)
            {
                target.reply(reply).await;
            }
        }
        fail(
            &shared,
            format!(
                "upstream `{}` ended the stream without a response",
                shared.name
            ),
        );
    } else {
        let max = shared.max_message;
        if resp.content_length().is_some_and(|n| n > max as u64) {
            fail(&shared, too_large(&shared.name, max, "a response body"));
            return;
        }
        // Read up to the cap, never past it (the length header may be absent or lie).
        let mut resp = resp;
        let mut body: Vec<u8> = Vec::new();
        let read = loop {
            match resp.chunk().await {
                Ok(Some(c)) if body.len() + c.len() > max => {
                    fail(&shared, too_large(&shared.name, max, "a response body"));
                    return;
                }
                Ok(Some(c)) => body.extend_from_slice(&c),
                Ok(None) => break Ok(body),
                Err(e) => break Err(e.without_url().to_string()),
            }
        };
        let parsed =
            read.and_then(|b| serde_json::from_slice::<Value>(&b).map_err(|e| e.to_string()));
        match parsed {
            Ok(v) => {
                if let Some(reply) = shared.dispatch(v, id) {
                    target.reply(reply).await;
                }
            }
            Err(e) => fail(
                &shared,
                format!(
                    "upstream `{}` sent an unreadable response: {e}",
                    shared.name
                ),
            ),
        }
    }
}

/// The error for an upstream message over `limits.maxUpstreamMessageBytes`.
pub(super) fn too_large(server: &str, max: usize, what: &str) -> String {
    tracing::warn!(
        server,
        "sent {what} over {max} bytes (limits.maxUpstreamMessageBytes)"
    );
    format!(
        "upstream `{server}` sent {what} over {max} bytes (limits.maxUpstreamMessageBytes); the request failed"
    )
}
