//! Streamable-HTTP upstreams: POSTs (JSON or SSE answers, see [`super::sse`]), the upstream
//! session id, re-initialization when it expires, replies to the upstream's requests, and
//! same-origin redirects only.

use std::sync::Arc;

use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use parking_lot::Mutex;

use super::{Shared, UpstreamError, sse};

/// Header names of every POST, parsed once (a `&str` name is parsed on every insert).
const MCP_SESSION_ID: reqwest::header::HeaderName =
    reqwest::header::HeaderName::from_static("mcp-session-id");
const MCP_PROTOCOL_VERSION: reqwest::header::HeaderName =
    reqwest::header::HeaderName::from_static("mcp-protocol-version");

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

/// One streamable-HTTP upstream: what every POST needs, built once per connection (the
/// parsed URL, the configured headers plus `Accept` and `Content-Type`), and what changes
/// while it lives (the upstream session id, the negotiated revision).
pub(super) struct HttpConn {
    pub(super) client: reqwest::Client,
    /// For a plain `http://` upstream: connections driven by their callers
    /// ([`super::h1`]) and the request target (origin form). reqwest parses the URL twice
    /// per request and wraps each in a redirect layer; a redirect answer on this path is sent
    /// again through reqwest, which follows same-origin ones.
    plain: Option<(Arc<super::h1::Pool>, http::Uri)>,
    pub(super) url: reqwest::Url,
    /// The configured headers only (auth, literal, env-mapped, resolved).
    pub(super) headers: HeaderMap,
    /// `headers` plus the `Accept` and `Content-Type` of every POST.
    post_headers: HeaderMap,
    /// `Mcp-Session-Id` from the upstream's initialize response.
    pub(super) session: Mutex<Option<HeaderValue>>,
    /// The negotiated revision (`MCP-Protocol-Version`), once known.
    protocol: Mutex<Option<HeaderValue>>,
    /// The initialize params, to open a new upstream session when the old one expires.
    pub(super) init: Mutex<Option<Value>>,
    /// One re-initialization at a time.
    reinit: tokio::sync::Mutex<()>,
}

impl HttpConn {
    pub(super) fn new(
        client: reqwest::Client,
        url: &str,
        headers: HeaderMap,
        connect_timeout: std::time::Duration,
    ) -> Result<HttpConn, String> {
        let url = reqwest::Url::parse(url).map_err(|e| format!("invalid upstream URL: {e}"))?;
        let plain = match url.scheme() {
            "http" => {
                let uri = http::Uri::try_from(url.as_str())
                    .map_err(|e| format!("invalid upstream URL: {e}"))?;
                let pool = super::h1::Pool::new(&uri, connect_timeout)?;
                let target = uri
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .parse::<http::Uri>()
                    .map_err(|e| format!("invalid upstream URL: {e}"))?;
                Some((pool, target))
            }
            _ => None,
        };
        let mut post_headers = headers.clone();
        post_headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        post_headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Ok(HttpConn {
            client,
            plain,
            url,
            headers,
            post_headers,
            session: Mutex::new(None),
            protocol: Mutex::new(None),
            init: Mutex::new(None),
            reinit: tokio::sync::Mutex::new(()),
        })
    }

    /// Record the negotiated revision (sent on every later POST).
    pub(super) fn set_protocol(&self, version: &str) {
        *self.protocol.lock() = HeaderValue::from_str(version).ok();
    }

    /// A POST of `body` with `session` (none: no `Mcp-Session-Id`).
    async fn post(&self, body: String, session: Option<HeaderValue>) -> Result<Answer, PostError> {
        self.post_bytes(body.into(), session).await
    }

    /// The headers of a POST: the configured ones, `Accept`, `Content-Type`, the session and
    /// the negotiated revision.
    fn headers_for(&self, session: Option<HeaderValue>) -> HeaderMap {
        let mut headers = self.post_headers.clone();
        if let Some(s) = session {
            headers.insert(MCP_SESSION_ID, s);
        }
        if let Some(p) = self.protocol.lock().clone() {
            headers.insert(MCP_PROTOCOL_VERSION, p);
        }
        headers
    }

    async fn post_bytes(
        &self,
        body: bytes::Bytes,
        session: Option<HeaderValue>,
    ) -> Result<Answer, PostError> {
        if let Some((pool, target)) = &self.plain {
            let mut req = http::Request::new(http_body_util::Full::new(body.clone()));
            *req.method_mut() = http::Method::POST;
            *req.uri_mut() = target.clone();
            *req.headers_mut() = self.headers_for(session.clone());
            let resp = pool.send(req).await.map_err(|e| PostError {
                connect: e.connect,
                message: e.error,
            })?;
            if !resp.status().is_redirection() {
                return Ok(Answer::Plain(resp));
            }
            // Redirects are reqwest's (same origin only, see `Upstream::connect`).
        }
        let mut req = reqwest::Request::new(reqwest::Method::POST, self.url.clone());
        *req.headers_mut() = self.headers_for(session);
        *req.body_mut() = Some(body.into());
        match self.client.execute(req).await {
            Ok(r) => Ok(Answer::Reqwest(r)),
            Err(e) => Err(PostError {
                connect: e.is_connect(),
                message: e.without_url().to_string(),
            }),
        }
    }

    /// The upstream said our session is gone (404): open a new one with the original
    /// initialize params (once, however many requests noticed), so the request can be retried.
    async fn reinitialize(&self, expired: Option<&HeaderValue>) -> Result<(), String> {
        let _one = self.reinit.lock().await;
        let now = self.session.lock().clone();
        if now.as_ref() != expired {
            return Ok(()); // another request already opened a new session
        }
        let params = self.init.lock().clone().ok_or("no initialize params")?;
        let resp = self
            .post(
                json!({ "jsonrpc": "2.0", "id": "fentaris-reinit", "method": "initialize", "params": params })
                    .to_string(),
                None,
            )
            .await
            .map_err(|e| e.message)?;
        if !resp.status().is_success() {
            return Err(format!(
                "initialize answered HTTP {}",
                resp.status().as_u16()
            ));
        }
        let sid = resp.headers().get("mcp-session-id").cloned();
        let mut resp = resp;
        while let Ok(Some(_)) = resp.chunk().await {}
        *self.session.lock() = sid.clone();
        let _ = self
            .post(
                json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }).to_string(),
                sid,
            )
            .await;
        Ok(())
    }

    /// POST a reply (to a server-to-client request) back to the upstream.
    pub(super) async fn reply(&self, reply: Value) {
        let session = self.session.lock().clone();
        match self.post(reply.to_string(), session).await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::warn!(
                "an upstream refused Fentaris' answer to its request (HTTP {})",
                r.status().as_u16()
            ),
            Err(e) => tracing::warn!(
                "cannot send an answer to an upstream's request: {}",
                e.message
            ),
        }
    }
}

/// POST one message (`body`, its JSON text) and hand what comes back to `shared`: the
/// response to request `id` (from a JSON body or an SSE stream, with any progress, log lines
/// and server-to-client requests before it). Awaited by the caller that waits for `id` (no
/// task of its own), so dropping it (cancel, timeout) aborts the POST.
pub(super) fn http_post(
    conn: Arc<HttpConn>,
    body: bytes::Bytes,
    initialize: bool,
    id: Option<u64>,
    shared: Arc<Shared>,
) -> impl Future<Output = ()> + Send {
    http_post_once(conn, body, initialize, id, shared, true)
}

async fn http_post_once(
    target: Arc<HttpConn>,
    body: bytes::Bytes,
    initialize: bool,
    id: Option<u64>,
    shared: Arc<Shared>,
    may_reinit: bool,
) {
    let fail =
        |shared: &Shared, message: String| shared.fail(id, UpstreamError::Transport(message));
    let session = target.session.lock().clone();
    let resp = match target.post_bytes(body.clone(), session.clone()).await {
        Ok(r) => r,
        Err(e) => {
            let connect = e.connect;
            let why = format!("upstream `{}` is unreachable: {}", shared.name, e.message);
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
    if status == reqwest::StatusCode::NOT_FOUND && may_reinit && session.is_some() && !initialize {
        // The upstream session expired: open a new one and send this message again, once.
        // Boxed, like every path a plain call does not take: a future holds the state of
        // every path it awaits, and this one is moved into a new box per call.
        match Box::pin(target.reinitialize(session.as_ref())).await {
            Ok(()) => {
                tracing::info!(server = %shared.name, "upstream session expired; re-initialized");
                return Box::pin(http_post_once(target, body, initialize, id, shared, false)).await;
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
    if initialize && let Some(s) = resp.headers().get("mcp-session-id") {
        *target.session.lock() = Some(s.clone());
    }
    let is_sse = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/event-stream"));
    if is_sse {
        Box::pin(read_events(&target, resp, id, &shared)).await;
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
                Err(e) => break Err(e),
            }
        };
        let dispatched = read.and_then(|b| shared.dispatch(&b, id).map_err(|e| e.to_string()));
        match dispatched {
            Ok(Some(reply)) => Box::pin(target.reply(reply)).await,
            Ok(None) => {}
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

/// The response to a POST is an SSE stream: dispatch its events (progress, log lines,
/// server-to-client requests) until the response to `id`.
async fn read_events(target: &HttpConn, resp: Answer, id: Option<u64>, shared: &Shared) {
    let fail =
        |shared: &Shared, message: String| shared.fail(id, UpstreamError::Transport(message));
    use futures_util::StreamExt as _;
    let events = sse::data_events(sse::body_chunks(resp), shared.max_message);
    tokio::pin!(events);
    while let Some(event) = events.next().await {
        let data = match event {
            Ok(data) => data,
            Err(sse::SseError::TooLarge) => {
                // Stop reading (dropping the response closes the stream).
                fail(
                    shared,
                    too_large(&shared.name, shared.max_message, "an SSE event"),
                );
                return;
            }
            Err(e) => {
                fail(
                    shared,
                    format!("upstream `{}` stream failed: {e}", shared.name),
                );
                return;
            }
        };
        if let Ok(Some(reply)) = shared.dispatch(data.as_bytes(), id) {
            target.reply(reply).await;
        }
    }
    fail(
        shared,
        format!(
            "upstream `{}` ended the stream without a response",
            shared.name
        ),
    );
}

/// Why a POST got no answer: whether nothing could be connected, and what happened.
pub(super) struct PostError {
    connect: bool,
    message: String,
}

/// An error and its causes, on one line.
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// An upstream's answer to a POST, from hyper's client (plain HTTP) or reqwest.
pub(super) enum Answer {
    Plain(super::h1::Driven),
    Reqwest(reqwest::Response),
}

impl Answer {
    fn status(&self) -> http::StatusCode {
        match self {
            Answer::Plain(r) => r.status(),
            Answer::Reqwest(r) => r.status(),
        }
    }

    fn headers(&self) -> &HeaderMap {
        match self {
            Answer::Plain(r) => r.headers(),
            Answer::Reqwest(r) => r.headers(),
        }
    }

    /// The body's length, when announced.
    fn content_length(&self) -> Option<u64> {
        match self {
            Answer::Plain(r) => r.content_length(),
            Answer::Reqwest(r) => r.content_length(),
        }
    }

    /// The next chunk of the body (`None`: the end).
    pub(super) async fn chunk(&mut self) -> Result<Option<bytes::Bytes>, String> {
        match self {
            Answer::Plain(r) => r.chunk().await,
            Answer::Reqwest(r) => r.chunk().await.map_err(|e| e.without_url().to_string()),
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

#[cfg(test)]
mod tests {
    use super::super::{Call, Spec, Upstream};
    use axum::http::{HeaderMap as AxHeaders, StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use serde_json::{Value, json};
    use std::time::Duration;
    use tokio_util::sync::CancellationToken;

    /// A minimal streamable-HTTP upstream at `/mcp`; `/moved` redirects there (307) and
    /// `/away` redirects to `elsewhere` (another origin).
    async fn upstream(elsewhere: String) -> String {
        async fn mcp(h: AxHeaders, body: axum::body::Bytes) -> Response {
            let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let Some(id) = msg.get("id").cloned() else {
                return StatusCode::ACCEPTED.into_response();
            };
            let method = msg["method"].as_str().unwrap_or("").to_string();
            let result = match method.as_str() {
                "initialize" => json!({ "protocolVersion": "2025-11-25", "capabilities": {},
                    "serverInfo": { "name": "t", "version": "1" } }),
                _ => {
                    json!({ "method": method, "session": h.get("mcp-session-id").and_then(|v| v.to_str().ok()) })
                }
            };
            let mut r = (
                [(header::CONTENT_TYPE, "application/json")],
                json!({ "jsonrpc": "2.0", "id": id, "result": result }).to_string(),
            )
                .into_response();
            r.headers_mut()
                .insert("mcp-session-id", header::HeaderValue::from_static("s1"));
            r
        }
        let app = axum::Router::new()
            .route("/mcp", axum::routing::post(mcp))
            .route(
                "/moved",
                axum::routing::post(|| async {
                    (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, "/mcp")])
                }),
            )
            .route(
                "/away",
                axum::routing::post(move || async move {
                    (
                        StatusCode::TEMPORARY_REDIRECT,
                        [(header::LOCATION, elsewhere)],
                    )
                }),
            );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        format!("http://{addr}")
    }

    async fn connect(url: String) -> Result<std::sync::Arc<Upstream>, String> {
        let spec = Spec::Http {
            url,
            headers: vec![],
            connect_timeout: Duration::from_secs(2),
        };
        Upstream::connect(
            "t",
            &spec,
            Duration::from_secs(5),
            Default::default(),
            false,
            json!({}),
            1 << 20,
        )
        .await
    }

    #[tokio::test]
    async fn plain_http_posts_pass_results_through_and_follow_same_origin_redirects_only() {
        let other = upstream("http://127.0.0.1:9/nowhere".into()).await;
        let base = upstream(format!("{other}/mcp")).await;
        let ct = CancellationToken::new();
        // Direct: hyper's client; the session id from initialize goes on every POST.
        let up = connect(format!("{base}/mcp")).await.unwrap();
        let raw = up
            .call_raw(
                Call::new("tools/list", json!({}), Duration::from_secs(5)),
                &ct,
            )
            .await
            .unwrap();
        assert_eq!(raw.get(), r#"{"method":"tools/list","session":"s1"}"#);
        // A same-origin redirect is followed (through reqwest), for the handshake and calls.
        let up = connect(format!("{base}/moved")).await.unwrap();
        let v = up
            .call(
                Call::new("tools/list", json!({}), Duration::from_secs(5)),
                &ct,
            )
            .await
            .unwrap();
        assert_eq!(v["method"], "tools/list");
        // Another origin is never followed: the credentials would go with it.
        let e = connect(format!("{base}/away")).await.unwrap_err();
        assert!(e.contains("initialize failed"), "{e}");
    }
}
