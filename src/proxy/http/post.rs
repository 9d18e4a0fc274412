//! POST: one JSON-RPC message from the client, read within limits, then answered by the
//! session dispatcher (lifecycle) or handed to the proxy.

use super::*;

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
    post(app, None, req).await
}
pub(super) async fn post_one(
    State(app): State<Arc<App>>,
    Path(server): Path<String>,
    req: Request,
) -> Response {
    post(app, Some(server), req).await
}

pub(super) async fn post(app: Arc<App>, server: Option<String>, req: Request) -> Response {
    let Some(authed) = req.extensions().get::<Authed>().cloned() else {
        return not_found();
    };
    let st = authed.st.clone();
    let endpoint = endpoint_of(server);
    let (parts, body) = req.into_parts();
    let limits = &st.proxy.config.limits;
    let max = limits.max_body_bytes;
    let read_timeout = limits.header_read_timeout.0;
    let bytes: Bytes = match tokio::time::timeout(read_timeout, axum::body::to_bytes(body, max))
        .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            return json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                rpc_error_body(None, &RpcError::new(-32600, "request body too large")),
            );
        }
        Err(_) => {
            return json_response(
                StatusCode::REQUEST_TIMEOUT,
                rpc_error_body(
                    None,
                    &RpcError::new(
                        -32600,
                        format!(
                            "the request body did not arrive within {}s (limits.headerReadTimeout)",
                            read_timeout.as_secs_f32()
                        ),
                    ),
                ),
            );
        }
    };
    if nesting_exceeds(&bytes, limits.max_json_depth) {
        return json_response(
            StatusCode::BAD_REQUEST,
            rpc_error_body(
                None,
                &RpcError::new(
                    -32600,
                    format!(
                        "the request nests deeper than {} levels (limits.maxJsonDepth)",
                        limits.max_json_depth
                    ),
                ),
            ),
        );
    }
    let msg: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                rpc_error_body(None, &RpcError::new(-32700, format!("parse error: {e}"))),
            );
        }
    };
    if msg.is_array() {
        return json_response(
            StatusCode::BAD_REQUEST,
            rpc_error_body(
                None,
                &RpcError::new(-32600, "JSON-RPC batches are not supported"),
            ),
        );
    }
    if !msg.is_object() || msg.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return json_response(
            StatusCode::BAD_REQUEST,
            rpc_error_body(
                msg.get("id"),
                &RpcError::new(-32600, "not a JSON-RPC 2.0 message"),
            ),
        );
    }
    let header_version = parts
        .headers
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(v) = &header_version
        && !SUPPORTED_VERSIONS.contains(&v.as_str())
    {
        return json_response(
            StatusCode::BAD_REQUEST,
            rpc_error_body(
                msg.get("id"),
                &RpcError::new(
                    -32600,
                    format!(
                        "unsupported MCP-Protocol-Version {v}; supported: {}",
                        SUPPORTED_VERSIONS.join(", ")
                    ),
                ),
            ),
        );
    }
    let session = match session_of(&app, &parts.headers, &authed, &endpoint) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let id = msg.get("id").cloned();
    let method = msg
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_string);
    let params = msg.get("params").cloned().unwrap_or(json!({}));
    let (method, id) = match (method, id) {
        (Some(m), Some(id)) => (m, id),
        (Some(m), None) => {
            if m == "notifications/cancelled"
                && let Some(s) = &session
                && let Some(rid) = params.get("requestId")
                && let Some(ct) = s
                    .inflight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&rid.to_string())
            {
                ct.cancel();
            }
            return StatusCode::ACCEPTED.into_response();
        }
        (None, Some(_)) => {
            // The client's answer to a request Fentaris relayed (sampling, elicitation, roots).
            if let Some(s) = &session {
                crate::proxy::handler::deliver_reply(&s.replies, &msg);
            }
            return StatusCode::ACCEPTED.into_response();
        }
        (None, None) => return StatusCode::ACCEPTED.into_response(),
    };
    let reply = {
        let id = id.clone();
        move |result: Result<Value, RpcError>| -> Value {
            match result {
                Ok(r) => json!({ "jsonrpc": "2.0", "id": id, "result": r }),
                Err(e) => rpc_error_body(Some(&id), &e),
            }
        }
    };
    match method.as_str() {
        "initialize" => {
            let open = app.sessions.lock().unwrap_or_else(|e| e.into_inner()).len();
            if open >= st.proxy.config.limits.max_sessions {
                return json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    reply(Err(RpcError::new(
                        -32000,
                        "too many open sessions (limits.maxSessions); try again later",
                    ))),
                );
            }
            let per_user = st.proxy.config.limits.max_sessions_per_user;
            let mine = app
                .sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .filter(|s| s.user == authed.identity.user)
                .count();
            if mine >= per_user {
                let mut r = json_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    reply(Err(RpcError::new(
                        -32000,
                        format!(
                            "too many open sessions for this user (limits.maxSessionsPerUser is {per_user}); end unused sessions with DELETE or wait for them to go idle"
                        ),
                    ))),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                return r;
            }
            let result = initialize_result(&st.proxy, &authed.subject, &endpoint, &params);
            let sid = new_session_id();
            let session = Arc::new(Session {
                user: authed.identity.user.clone(),
                endpoint: endpoint.clone(),
                inflight: Mutex::new(HashMap::new()),
                subscriptions: Mutex::new(HashSet::new()),
                replies: Default::default(),
                last_seen: Mutex::new(std::time::Instant::now()),
                info: Arc::new(
                    CallerInfo::new(&authed.identity.key_id, authed.address.clone())
                        .with_client_info(&params),
                ),
                subject: authed.subject.clone(),
                closed: CancellationToken::new(),
            });
            st.proxy
                .audit
                .write(session_record("session.open", &sid, &session, "initialize"));
            app.sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(sid.clone(), session);
            let mut r = json_response(StatusCode::OK, reply(Ok(result)));
            if let Ok(v) = HeaderValue::from_str(&sid) {
                r.headers_mut().insert("mcp-session-id", v);
            }
            return r;
        }
        "server/discover" => {
            let r = answer_locally(&st.proxy, &authed.subject, &endpoint, &method);
            return json_response(StatusCode::OK, reply(r.ok_or_else(internal)));
        }
        _ => {}
    }
    if let Some(v) = crate::proxy::lifecycle::unsupported_meta_version(&params) {
        let mut e = RpcError::new(-32022, format!("unsupported protocol version {v}"));
        e.data = Some(json!({ "supported": SUPPORTED_VERSIONS }));
        return json_response(StatusCode::BAD_REQUEST, rpc_error_body(Some(&id), &e));
    }
    let modern = session.is_none() && is_modern(&params, header_version.as_deref());
    if session.is_none() && !modern {
        return json_response(
            StatusCode::BAD_REQUEST,
            rpc_error_body(
                Some(&id),
                &RpcError::new(
                    -32000,
                    "Bad Request: no valid session; send initialize first",
                ),
            ),
        );
    }
    if modern
        && let Some(h) = parts
            .headers
            .get("mcp-method")
            .and_then(|v| v.to_str().ok())
        && h != method
    {
        return json_response(
            StatusCode::BAD_REQUEST,
            rpc_error_body(
                Some(&id),
                &RpcError::new(-32020, "Mcp-Method header does not match the body"),
            ),
        );
    }
    if let Some(r) = answer_locally(&st.proxy, &authed.subject, &endpoint, &method) {
        return json_response(StatusCode::OK, reply(Ok(r)));
    }
    let session_id = parts
        .headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .filter(|_| session.is_some())
        .map(str::to_string);
    let info = match &session {
        Some(s) => s.info.clone(),
        None => Arc::new(
            CallerInfo::new(&authed.identity.key_id, authed.address.clone())
                .with_client_info(params.get("_meta").unwrap_or(&Value::Null)),
        ),
    };
    let caller = Caller {
        session: session_id,
        subject: authed.subject.clone(),
        endpoint: endpoint.clone(),
        modern,
        info,
    };
    let Some(slot) = app.user_slot(
        &authed.identity.user,
        st.proxy.config.limits.max_inflight_per_user,
    ) else {
        let mut r = json_response(
            StatusCode::TOO_MANY_REQUESTS,
            reply(Err(RpcError::new(
                -32000,
                format!(
                    "too many requests in flight for this user (limits.maxInflightPerUser is {})",
                    st.proxy.config.limits.max_inflight_per_user
                ),
            ))),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    };
    let ct = CancellationToken::new();
    let key = id.to_string();
    if let Some(s) = &session {
        s.inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), ct.clone());
    }
    // Removes the in-flight entry even when the client goes away mid-request.
    let inflight_guard = InflightGuard {
        session: session.clone(),
        key: key.clone(),
        _slot: slot,
    };
    let token = params
        .get("_meta")
        .and_then(|m| m.get("progressToken"))
        .cloned();
    let after = {
        let session = session.clone();
        let method = method.clone();
        let params = params.clone();
        move |ok: bool| {
            if let Some(s) = &session {
                s.inflight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&key);
                if ok
                    && let (Endpoint::Server(srv), Some(uri)) =
                        (&s.endpoint, params.get("uri").and_then(Value::as_str))
                {
                    let canon =
                        crate::policy::uri::canonicalize(uri).unwrap_or_else(|_| uri.to_string());
                    let mut subs = s.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
                    match method.as_str() {
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
        }
    };
    // Requests that may report progress or cause requests to the client (sampling,
    // elicitation, roots) get their own SSE stream when the client takes one.
    let may_call_back = matches!(
        method.as_str(),
        "tools/call" | "prompts/get" | "resources/read"
    );
    let stream_it =
        accepts_sse(&parts.headers) && (token.is_some() || (may_call_back && session.is_some()));
    match stream_it {
        true => {
            // Progress, requests to the client, then the response, on this request's stream.
            let (tx, rx) = mpsc::unbounded_channel::<Value>();
            let proxy = st.proxy.clone();
            let sink = tx.clone();
            let replies = session
                .as_ref()
                .map(|s| s.replies.clone())
                .unwrap_or_default();
            let gone = tx.clone();
            tokio::spawn(async move {
                let _inflight = inflight_guard;
                let work = proxy.handle(
                    &caller,
                    &method,
                    params,
                    Some(Progress {
                        token,
                        sink,
                        replies,
                    }),
                    &ct,
                );
                // The client went away (its stream was dropped): cancel the work (upstream
                // calls, list paging) instead of finishing it for nobody; it then ends (and is
                // audited) as cancelled.
                tokio::pin!(work);
                let result = tokio::select! {
                    r = &mut work => r,
                    _ = gone.closed() => {
                        ct.cancel();
                        work.await
                    }
                };
                drop(gone);
                after(result.is_ok());
                let _ = tx.send(reply(result));
            });
            // A result that comes before any progress or request to the client is answered as
            // plain JSON: one write instead of SSE headers, an event and the chunked end (the
            // stream is opened only when something must precede the result).
            let mut rx = rx;
            let first = match rx.recv().await {
                Some(v) if v.get("method").is_none() => {
                    return limited(v);
                }
                Some(v) => v,
                None => {
                    return json_response(
                        StatusCode::OK,
                        rpc_error_body(Some(&id), &RpcError::new(-32603, "internal error")),
                    );
                }
            };
            let stream = tokio_stream::StreamExt::chain(
                tokio_stream::once(first),
                tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
            );
            let stream = tokio_stream::StreamExt::map(stream, |v: Value| {
                Ok::<_, std::convert::Infallible>(
                    SseEvent::default().event("message").data(v.to_string()),
                )
            });
            Sse::new(stream).into_response()
        }
        false => {
            let _inflight = inflight_guard;
            let result = st.proxy.handle(&caller, &method, params, None, &ct).await;
            after(result.is_ok());
            limited(reply(result))
        }
    }
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
