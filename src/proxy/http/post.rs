//! POST: one JSON-RPC message from the client, read within limits, then answered by the
//! session dispatcher (lifecycle) or handed to the proxy.

// The `Err` of the checks below is the refusal itself (an HTTP response), on the refusal
// path only: boxing it would buy nothing.
#![allow(clippy::result_large_err)]

use super::*;
use crate::proxy::handler::Answer;

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

pub(super) async fn post_all(State(app): State<Arc<App>>, req: Request) -> Response {
    routed(app, None, req).await
}
pub(super) async fn post_one(
    State(app): State<Arc<App>>,
    Path(server): Path<String>,
    req: Request,
) -> Response {
    routed(app, Some(server), req).await
}

/// A POST the router matched: [`guard`] put the caller into the extensions.
async fn routed(app: Arc<App>, server: Option<String>, req: Request) -> Response {
    let Some(authed) = req.extensions().get::<Authed>().cloned() else {
        return not_found();
    };
    let (parts, body) = req.into_parts();
    post(app, server, authed, parts, body).await
}

/// `status` with a JSON-RPC error answering `id`.
fn refuse(status: StatusCode, id: Option<&Value>, e: RpcError) -> Response {
    json_response(status, rpc_error_body(id, &e))
}

/// [`refuse`] with `Retry-After: secs`.
fn refuse_for(status: StatusCode, id: &Value, e: RpcError, secs: &'static str) -> Response {
    let mut r = refuse(status, Some(id), e);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(secs));
    r
}

fn reply(id: &Value, result: Result<Value, RpcError>) -> Value {
    match result {
        Ok(r) => json!({ "jsonrpc": "2.0", "id": id, "result": r }),
        Err(e) => rpc_error_body(Some(id), &e),
    }
}

/// The JSON-RPC response to `id` as JSON text: a passed-through result is written as the
/// upstream's bytes (no tree built, nothing written twice).
fn answer_text(id: &Value, result: Result<Answer, RpcError>) -> String {
    match result.and_then(|a| a.response_text(id)) {
        Ok(text) => text,
        Err(e) => reply(id, Err(e)).to_string(),
    }
}

/// [`answer_text`] as the HTTP response (errors through [`limited`]).
fn answer(id: &Value, result: Result<Answer, RpcError>) -> Response {
    match result {
        Ok(a) => json_text_response(StatusCode::OK, answer_text(id, Ok(a))),
        Err(e) => limited(reply(id, Err(e))),
    }
}

/// One POST: the message, then the lifecycle (sessions, revisions) and the dispatch. The
/// whole request uses `authed.st`, the state it was authenticated against.
pub(super) async fn post(
    app: Arc<App>,
    server: Option<String>,
    authed: Authed,
    parts: axum::http::request::Parts,
    body: axum::body::Body,
) -> Response {
    let endpoint = endpoint_of(server);
    let msg = match read_message(&authed.st, body).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let header_version = match protocol_header(&parts.headers, msg.get("id")) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let session = match session_of(&app, &parts.headers, &authed, &endpoint) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let method = msg
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_string);
    let (Some(method), Some(id)) = (method, msg.get("id").cloned()) else {
        let params = msg.get("params").cloned().unwrap_or(json!({}));
        return accept_other(session.as_deref(), &msg, &params);
    };
    // A request: its params are moved out of the message, not copied.
    let mut msg = msg;
    let params = msg
        .get_mut("params")
        .map(Value::take)
        .unwrap_or_else(|| json!({}));
    let st = &authed.st;
    match method.as_str() {
        "initialize" => return open_session(&app, &authed, endpoint, &id, &params),
        // Answered with or without a session, in every revision.
        "server/discover" => {
            let r = answer_locally(&st.proxy, &authed.subject, &endpoint, &method);
            return json_response(StatusCode::OK, reply(&id, r.ok_or_else(internal)));
        }
        _ => {}
    }
    let has_session = session.is_some();
    let modern = match stateless_checks(
        &parts.headers,
        has_session,
        &header_version,
        &id,
        &method,
        &params,
    ) {
        Ok(m) => m,
        Err(r) => return r,
    };
    if let Some(r) = answer_locally(&st.proxy, &authed.subject, &endpoint, &method) {
        return json_response(StatusCode::OK, reply(&id, Ok(r)));
    }
    let request = Forward {
        session_id: session.as_ref().map(|s| s.id.clone()),
        session,
        stream: accepts_sse(&parts.headers),
        endpoint,
        modern,
        id,
        method,
        params,
    };
    forward(&app, &authed, request).await
}

/// The body, read within `limits` (size, time, nesting), as one JSON-RPC 2.0 message.
async fn read_message(st: &FrontState, body: axum::body::Body) -> Result<Value, Response> {
    let limits = &st.proxy.config().limits;
    let read_timeout = limits.header_read_timeout.0;
    let bad = |status, e| Err(refuse(status, None, e));
    let bytes: Bytes =
        match tokio::time::timeout(read_timeout, body_within(body, limits.max_body_bytes)).await {
            Ok(Ok(b)) => b,
            Ok(Err(_)) => {
                return bad(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    RpcError::new(-32600, "request body too large"),
                );
            }
            Err(_) => {
                return bad(
                    StatusCode::REQUEST_TIMEOUT,
                    RpcError::new(
                        -32600,
                        format!(
                            "the request body did not arrive within {}s (limits.headerReadTimeout)",
                            read_timeout.as_secs_f32()
                        ),
                    ),
                );
            }
        };
    if nesting_exceeds(&bytes, limits.max_json_depth) {
        return bad(
            StatusCode::BAD_REQUEST,
            RpcError::new(
                -32600,
                format!(
                    "the request nests deeper than {} levels (limits.maxJsonDepth)",
                    limits.max_json_depth
                ),
            ),
        );
    }
    let msg: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            return bad(
                StatusCode::BAD_REQUEST,
                RpcError::new(-32700, format!("parse error: {e}")),
            );
        }
    };
    if msg.is_array() {
        return bad(
            StatusCode::BAD_REQUEST,
            RpcError::new(-32600, "JSON-RPC batches are not supported"),
        );
    }
    if !msg.is_object() || msg.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            msg.get("id"),
            RpcError::new(-32600, "not a JSON-RPC 2.0 message"),
        ));
    }
    Ok(msg)
}

/// At most this much of an oversized body is read (and discarded) before its refusal.
const DRAIN_MAX: usize = 16 << 20;

/// The body, if it is at most `max` bytes. An oversized one is read on to its end and
/// discarded (up to [`DRAIN_MAX`] more bytes, within the caller's time limit) before it is
/// refused, so the client, still sending, reads the 413 instead of a reset connection.
async fn body_within(body: axum::body::Body, max: usize) -> Result<Bytes, ()> {
    use http_body_util::BodyExt as _;
    let mut body = body;
    let mut chunks: Vec<Bytes> = Vec::new();
    let (mut kept, mut over) = (0usize, 0usize);
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| ())?.into_data() else {
            continue; // trailers
        };
        if over == 0 && kept + data.len() <= max {
            kept += data.len();
            chunks.push(data);
            continue;
        }
        chunks.clear();
        over += data.len();
        if over > DRAIN_MAX {
            break;
        }
    }
    if over > 0 {
        return Err(());
    }
    Ok(match chunks.len() {
        1 => chunks.pop().unwrap_or_default(),
        _ => chunks.concat().into(),
    })
}

/// `MCP-Protocol-Version`, when sent: one Fentaris speaks.
fn protocol_header(h: &HeaderMap, id: Option<&Value>) -> Result<Option<String>, Response> {
    let version = h
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match &version {
        Some(v) if !SUPPORTED_VERSIONS.contains(&v.as_str()) => Err(refuse(
            StatusCode::BAD_REQUEST,
            id,
            RpcError::new(
                -32600,
                format!(
                    "unsupported MCP-Protocol-Version {v}; supported: {}",
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ),
        )),
        _ => Ok(version),
    }
}

/// A notification (cancellation) or the client's answer to a relayed request: 202.
fn accept_other(session: Option<&Session>, msg: &Value, params: &Value) -> Response {
    match (msg.get("method").and_then(Value::as_str), session) {
        (Some("notifications/cancelled"), Some(s)) => {
            if let Some(rid) = params.get("requestId")
                && let Some(ct) = s
                    .inflight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&rid.to_string())
            {
                ct.cancel();
            }
        }
        // The client's answer to a request Fentaris relayed (sampling, elicitation, roots).
        (None, Some(s)) if msg.get("id").is_some() => {
            crate::proxy::handler::deliver_reply(&s.replies, msg);
        }
        _ => {}
    }
    StatusCode::ACCEPTED.into_response()
}

/// `initialize`: a new session bound to this subject and endpoint, within the session caps.
fn open_session(
    app: &App,
    authed: &Authed,
    endpoint: Endpoint,
    id: &Value,
    params: &Value,
) -> Response {
    let limits = &authed.st.proxy.config().limits;
    let (open, mine) = {
        let sessions = app.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let mine = sessions
            .values()
            .filter(|s| s.user == authed.identity.user)
            .count();
        (sessions.len(), mine)
    };
    if open >= limits.max_sessions {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(id),
            RpcError::new(
                -32000,
                "too many open sessions (limits.maxSessions); try again later",
            ),
        );
    }
    if mine >= limits.max_sessions_per_user {
        return refuse_for(
            StatusCode::TOO_MANY_REQUESTS,
            id,
            RpcError::new(
                -32000,
                format!(
                    "too many open sessions for this user (limits.maxSessionsPerUser is {}); end unused sessions with DELETE or wait for them to go idle",
                    limits.max_sessions_per_user
                ),
            ),
            "5",
        );
    }
    let result = initialize_result(&authed.st.proxy, &authed.subject, &endpoint, params);
    // The id is a sealed token of the session (see `token`): a replica that does not hold
    // the session rebuilds it from there.
    let protocol = result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let claims = sessions::claims_of(authed, &endpoint, params, protocol);
    let sid = app.token_key(&authed.st).seal(&claims);
    let session = Arc::new(Session::of(authed, &sid, endpoint, &claims));
    authed
        .st
        .proxy
        .audit()
        .write(session_record("session.open", &session, "initialize"));
    app.sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(sid.clone(), session);
    let mut r = json_response(StatusCode::OK, reply(id, Ok(result)));
    if let Ok(v) = HeaderValue::from_str(&sid) {
        r.headers_mut().insert("mcp-session-id", v);
    }
    r
}

/// Without a session, only a stateless (2026-07-28) request goes on, with a revision
/// Fentaris speaks and an `Mcp-Method` header that matches. Returns whether it is one.
fn stateless_checks(
    h: &HeaderMap,
    has_session: bool,
    header_version: &Option<String>,
    id: &Value,
    method: &str,
    params: &Value,
) -> Result<bool, Response> {
    if let Some(v) = crate::proxy::lifecycle::unsupported_meta_version(params) {
        let mut e = RpcError::new(-32022, format!("unsupported protocol version {v}"));
        e.data = Some(json!({ "supported": SUPPORTED_VERSIONS }));
        return Err(refuse(StatusCode::BAD_REQUEST, Some(id), e));
    }
    let modern = !has_session && is_modern(params, header_version.as_deref());
    if !has_session && !modern {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            Some(id),
            RpcError::new(
                -32000,
                "Bad Request: no valid session; send initialize first",
            ),
        ));
    }
    if modern
        && let Some(m) = h.get("mcp-method").and_then(|v| v.to_str().ok())
        && m != method
    {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            Some(id),
            RpcError::new(-32020, "Mcp-Method header does not match the body"),
        ));
    }
    Ok(modern)
}

/// A request for the proxy, past the lifecycle checks.
struct Forward {
    session: Option<Arc<Session>>,
    session_id: Option<String>,
    /// The client takes an SSE stream.
    stream: bool,
    endpoint: Endpoint,
    modern: bool,
    id: Value,
    method: String,
    params: Value,
}

/// Hand the request to the proxy, within the user's in-flight cap; answered as JSON, or on
/// an SSE stream when it may report progress or call back the client.
async fn forward(app: &App, authed: &Authed, rq: Forward) -> Response {
    let max = authed.st.proxy.config().limits.max_inflight_per_user;
    let Some(slot) = app.user_slot(&authed.identity.user, max) else {
        return refuse_for(
            StatusCode::TOO_MANY_REQUESTS,
            &rq.id,
            RpcError::new(
                -32000,
                format!(
                    "too many requests in flight for this user (limits.maxInflightPerUser is {max})"
                ),
            ),
            "1",
        );
    };
    let info = match &rq.session {
        Some(s) => s.info.clone(),
        None => Arc::new(
            CallerInfo::new(&authed.identity.key_id, authed.address())
                .with_client_info(rq.params.get("_meta").unwrap_or(&Value::Null)),
        ),
    };
    let caller = Caller {
        session: rq.session_id.clone(),
        subject: authed.subject.clone(),
        endpoint: rq.endpoint.clone(),
        modern: rq.modern,
        info,
    };
    let ct = CancellationToken::new();
    let key = rq.id.to_string();
    if let Some(s) = &rq.session {
        s.inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), ct.clone());
    }
    // Removes the in-flight entry (and frees the slot) even when the client goes away.
    let guard = InflightGuard {
        session: rq.session.clone(),
        key,
        _slot: slot,
    };
    let token = rq
        .params
        .get("_meta")
        .and_then(|m| m.get("progressToken"))
        .cloned();
    // Requests that may report progress or cause requests to the client (sampling,
    // elicitation, roots) get their own SSE stream when the client takes one.
    let may_call_back = matches!(
        rq.method.as_str(),
        "tools/call" | "prompts/get" | "resources/read"
    );
    let proxy = authed.st.proxy.clone();
    if rq.stream && (token.is_some() || (may_call_back && rq.session.is_some())) {
        return streamed(proxy, caller, rq, token, ct, guard).await;
    }
    let Forward {
        session,
        method,
        params,
        id,
        ..
    } = rq;
    // Only resources/(un)subscribe needs the params after the call (its `uri`).
    let uri = params.get("uri").cloned();
    // Boxed: the handler's future is large, and moving it (into the response future, which
    // axum boxes again) is a memcpy of all of it per request.
    let result = Box::pin(proxy.handle_answer(&caller, &method, params, None, &ct)).await;
    finished(
        session.as_deref(),
        &method,
        uri.as_ref().and_then(Value::as_str),
        result.is_ok(),
    );
    drop(guard);
    answer(&id, result)
}

/// After a request: a successful `resources/(un)subscribe` on a server endpoint updates
/// the session's subscriptions.
fn finished(session: Option<&Session>, method: &str, uri: Option<&str>, ok: bool) {
    let Some(s) = session else { return };
    if ok && let (Endpoint::Server(srv), Some(uri)) = (&s.endpoint, uri) {
        let canon = crate::policy::uri::canonicalize(uri).unwrap_or_else(|_| uri.to_string());
        let mut subs = s.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
        match method {
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

/// Progress, requests to the client, then the response, on this request's stream.
async fn streamed(
    proxy: Arc<Proxy>,
    caller: Caller,
    rq: Forward,
    token: Option<Value>,
    ct: CancellationToken,
    guard: InflightGuard,
) -> Response {
    let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
    let replies = rq
        .session
        .as_ref()
        .map(|s| s.replies.clone())
        .unwrap_or_default();
    let Forward {
        session,
        method,
        params,
        id,
        ..
    } = rq;
    let progress = Progress {
        token,
        sink: tx.clone(),
        replies,
    };
    let uri = params.get("uri").cloned();
    let work_ct = ct.clone();
    // The whole request, owned and boxed: driven here while nothing has to precede the result
    // (no task and no hop between tasks per request), moved into a task of its own only when
    // the response becomes a stream.
    let mut work = Box::pin(async move {
        let result = proxy
            .handle_answer(&caller, &method, params, Some(progress), &work_ct)
            .await;
        finished(
            session.as_deref(),
            &method,
            uri.as_ref().and_then(Value::as_str),
            result.is_ok(),
        );
        // Done before the answer leaves: a next request may reuse the id.
        drop(guard);
        result
    });
    // A result that comes before any progress or request to the client is answered as plain
    // JSON: one write instead of SSE headers, an event and the chunked end (the stream is
    // opened only when something must precede the result). Whatever was sent before the
    // result is already queued when it arrives, and is looked at first.
    let (first, result) = tokio::select! {
        biased;
        Some(v) = rx.recv() => (v, None),
        r = &mut work => match rx.try_recv() {
            Ok(v) => (v, Some(r)),
            Err(_) => return answer(&id, r),
        },
    };
    let done_rx = match result {
        // Finished already: what it sent is queued, and nothing more comes.
        Some(r) => {
            drop(tx);
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            let _ = done_tx.send(r);
            done_rx
        }
        None => {
            let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Result<Answer, RpcError>>();
            tokio::spawn(async move {
                // The client went away (its stream was dropped): cancel the work (upstream
                // calls, list paging) instead of finishing it for nobody; it then ends (and
                // is audited) as cancelled.
                let result = tokio::select! {
                    r = &mut work => r,
                    _ = tx.closed() => {
                        ct.cancel();
                        work.await
                    }
                };
                drop(tx);
                let _ = done_tx.send(result);
            });
            done_rx
        }
    };
    use futures_util::StreamExt as _;
    let before = futures_util::stream::once(std::future::ready(first))
        .chain(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .map(|v: Value| v.to_string());
    let last = futures_util::stream::once(done_rx)
        .filter_map(move |r| std::future::ready(r.ok().map(|r| answer_text(&id, r))));
    let stream = before.chain(last).map(|text| {
        Ok::<_, std::convert::Infallible>(SseEvent::default().event("message").data(text))
    });
    Sse::new(stream).into_response()
}

/// The response to a request: HTTP 200, or 429 with `Retry-After` when a per-user limit
/// refused it (see [`RpcError::limit`]).
pub(super) fn limited(v: Value) -> Response {
    match crate::proxy::handler::limit_retry_after(&v) {
        Some(secs) => {
            let mut r = json_response(StatusCode::TOO_MANY_REQUESTS, v);
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            r
        }
        None => json_response(StatusCode::OK, v),
    }
}
