//! GET: a session's stream of unrelated notifications (list changes, resource updates).

use super::*;

pub(super) async fn get_all(State(app): State<Arc<App>>, req: Request) -> Response {
    listen(app, None, req)
}
pub(super) async fn get_one(
    State(app): State<Arc<App>>,
    Path(server): Path<String>,
    req: Request,
) -> Response {
    listen(app, Some(server), req)
}

/// The session's stream of unrelated notifications (list changes, resource updates).
pub(super) fn listen(app: Arc<App>, server: Option<String>, req: Request) -> Response {
    let Some(authed) = req.extensions().get::<Authed>().cloned() else {
        return not_found();
    };
    let endpoint = endpoint_of(server);
    let session = match session_of(&app, req.headers(), &authed, &endpoint) {
        Ok(Some(s)) => s,
        Ok(None) => return (StatusCode::METHOD_NOT_ALLOWED, "GET needs a session").into_response(),
        Err(r) => return *r,
    };
    let sid = session.id.clone();
    // Notifications only about servers this subject can use now (seeing one is not enough;
    // re-checked per event against the current config), and only while the session lives.
    let (tx, rx) = mpsc::unbounded_channel::<Result<SseEvent, std::convert::Infallible>>();
    let mut events = app.st().proxy.events().subscribe();
    let closed = session.closed.clone();
    let user = authed.identity.user.clone();
    let app2 = app.clone();
    tokio::spawn(async move {
        loop {
            let ev = tokio::select! {
                _ = closed.cancelled() => break,
                _ = tx.closed() => break,
                ev = events.recv() => match ev {
                    Ok(ev) => ev,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
            };
            let srv = ev.server.clone();
            let st = app2.st();
            let subject = st.proxy.engine().subject(&user);
            if !st.proxy.engine().can_use(&subject, &srv)
                || matches!(&session.endpoint, Endpoint::Server(s) if *s != srv)
                || !ev.for_session(Some(&sid))
            {
                continue;
            }
            let msg = match &ev.event {
                Event::ToolsChanged => {
                    json!({ "jsonrpc": "2.0", "method": "notifications/tools/list_changed" })
                }
                Event::PromptsChanged => {
                    json!({ "jsonrpc": "2.0", "method": "notifications/prompts/list_changed" })
                }
                Event::ResourcesChanged => {
                    json!({ "jsonrpc": "2.0", "method": "notifications/resources/list_changed" })
                }
                Event::ResourceUpdated(uri) => {
                    let canon =
                        crate::policy::uri::canonicalize(uri).unwrap_or_else(|_| uri.clone());
                    if !session
                        .subscriptions
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .contains(&(srv.clone(), canon))
                    {
                        continue;
                    }
                    json!({ "jsonrpc": "2.0", "method": "notifications/resources/updated", "params": { "uri": uri } })
                }
                Event::Closed => continue,
            };
            if tx
                .send(Ok(SseEvent::default()
                    .event("message")
                    .data(msg.to_string())))
                .is_err()
            {
                break;
            }
        }
    });
    let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
