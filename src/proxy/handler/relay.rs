//! What an upstream sends toward the client of a running request: log lines and requests
//! (sampling, elicitation, roots), decided by policy and relayed on the request's stream.

use super::*;

impl Proxy {
    /// A log line from the upstream, tied to a running request of this client: passed on, on
    /// that request's stream, when policy lets the subject set the log level on the server
    /// (`logging:setLevel`, the operation that governs logging) and the line is at or above
    /// the client's level (`min`, a [`log_rank`]; 0: none set). Otherwise dropped and counted.
    pub(super) fn log_to_client(
        &self,
        caller: &Caller,
        server: &str,
        method: &str,
        params: Value,
        channel: &Progress,
        min: u8,
    ) {
        let allowed = self
            .engine
            .decide(
                &caller.subject,
                &Request::server_op(server, Operation::LoggingSetLevel),
            )
            .is_allow();
        let rank = params
            .get("level")
            .and_then(Value::as_str)
            .and_then(log_rank);
        match rank {
            Some(r) if allowed && r >= min => {
                let _ = channel
                    .sink
                    .send(crate::jsonrpc::notification(method, Some(params)));
            }
            // Below the session's level: not wanted, not a loss.
            Some(_) if allowed => {}
            _ => {
                self.metrics.messages_dropped(server).inc();
            }
        }
    }

    /// A request from the upstream to the client that caused it: decided by policy
    /// (`sampling:createMessage`, `elicitation:create`, `roots:list`, `custom:<method>`), then
    /// sent on the client request's own stream; the client's answer goes back upstream.
    pub(super) fn to_client(
        &self,
        caller: &Caller,
        server: &str,
        req: crate::proxy::upstream::ServerRequest,
        channel: &Progress,
        done: &CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let refuse = |req: crate::proxy::upstream::ServerRequest, why: String| {
            let _ = req
                .reply
                .send(Err(json!({ "code": -32601, "message": why })));
        };
        let op = match req.method.as_str() {
            "sampling/createMessage" => Operation::SamplingCreateMessage,
            "elicitation/create" => Operation::ElicitationCreate,
            "roots/list" => Operation::RootsList,
            other => Operation::Custom(other.into()),
        };
        let allowed = self
            .decide(caller, &Request::server_op(server, op))
            .is_allow();
        if self.audit.enabled() {
            let mut r = Record::new("relay");
            r.request_id = crate::audit::record::current_request_id();
            r.session = caller.session.clone();
            r.subject = Some(subject_ref(caller));
            r.server = Some(server.to_string());
            r.method = Some(req.method.clone());
            r.decision = Some(if allowed { "allow" } else { "deny" });
            self.audit.write(r);
        }
        if !allowed {
            let why = format!("{} is not allowed for this client", req.method);
            refuse(req, why);
            return None;
        }
        if caller.modern {
            let why = format!(
                "{} cannot reach a 2026-07-28 client through Fentaris",
                req.method
            );
            refuse(req, why);
            return None;
        }
        let id = format!(
            "fnt-{}",
            NEXT_CLIENT_REQUEST.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let (tx, rx) = tokio::sync::oneshot::channel();
        channel.replies.lock().insert(id.clone(), tx);
        let msg = json!({ "jsonrpc": "2.0", "id": id, "method": req.method, "params": req.params });
        if channel.sink.send(msg).is_err() {
            channel.replies.lock().remove(&id);
            refuse(req, "the client is gone".into());
            return None;
        }
        let replies = channel.replies.clone();
        let sink = channel.sink.clone();
        let done = done.clone();
        Some(tokio::spawn(async move {
            let answer = tokio::select! {
                r = tokio::time::timeout(std::time::Duration::from_secs(600), rx) => match r {
                    Ok(Ok(a)) => Some(a),
                    _ => Some(Err(json!({ "code": -32603, "message": "the client did not answer" }))),
                },
                _ = req.withdrawn.cancelled() => {
                    // The upstream withdrew it: cancellation goes on to the client.
                    let _ = sink.send(json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": id, "reason": "withdrawn by the server" } }));
                    None
                }
                _ = done.cancelled() => {
                    // The client request that caused it is over: withdraw it, free the stream.
                    let _ = sink.send(json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": id, "reason": "the request that caused it has ended" } }));
                    Some(Err(json!({ "code": -32800, "message": "the request that caused it has ended" })))
                }
            };
            replies.lock().remove(&id);
            if let Some(a) = answer {
                let _ = req.reply.send(a);
            }
        }))
    }
}
