//! The stdio downstream: `fentaris serve --stdio --user U`. Newline-delimited JSON-RPC on
//! stdin/stdout; every log line goes to stderr.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::handler::{Caller, CallerInfo, Endpoint, Progress, Proxy, RpcError};
use super::lifecycle::{answer_locally, initialize_result, is_modern};
use super::upstream::Event;
use crate::audit::record::{Record, SubjectRef};
use crate::jsonrpc::Message;
use crate::policy::Subject;

/// Serve one client on stdin/stdout until stdin closes. `initialize` is answered at once;
/// the eager upstreams start meanwhile ("waiting for upstream X" on stderr), and when they
/// are up the client is told to list again (`list_changed`).
pub async fn serve(proxy: Arc<Proxy>, user: &str) {
    let subject = Arc::new(proxy.engine().subject(user));
    let endpoint = Endpoint::All;
    let (out_tx, out_rx) = mpsc::unbounded_channel::<Value>();
    // Responses to forwarded requests, already JSON text (a passed-through result is the
    // upstream's bytes). Messages go first: a request's progress and relayed requests are
    // queued on `out_tx` before its response is queued here.
    let (text_tx, text_rx) = mpsc::unbounded_channel::<String>();
    let writer = spawn_writer(out_rx, text_rx);
    // List changes of visible servers (stopped when stdin closes, so the writer can end).
    let changes = spawn_list_changes(&proxy, &subject, out_tx.clone());
    let initialized = Arc::new(tokio::sync::Notify::new());
    let announce = spawn_announce_upstreams(&proxy, out_tx.clone(), initialized.clone());
    let inflight: Arc<Mutex<HashMap<String, CancellationToken>>> = Arc::default();
    let replies: super::handler::Replies = Arc::default();
    let mut info = Arc::new(CallerInfo::new("stdio", Some("stdio".into())));
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim().is_empty() {
            continue;
        }
        let msg: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                let _ = out_tx.send(json!({ "jsonrpc": "2.0", "id": null, "error": RpcError::new(-32700, format!("parse error: {e}")).to_json() }));
                continue;
            }
        };
        let params = msg.get("params").cloned().unwrap_or(json!({}));
        let (id, method) = match Message::classify(&msg) {
            Message::Request { id, method } => (id.clone(), method.to_string()),
            Message::Response { .. } => {
                // The client's answer to a request Fentaris relayed from an upstream.
                super::handler::deliver_reply(&replies, &msg);
                continue;
            }
            Message::Notification { method } => {
                if method == "notifications/cancelled"
                    && let Some(rid) = params.get("requestId")
                    && let Some(ct) = inflight
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(&rid.to_string())
                {
                    ct.cancel();
                }
                continue;
            }
            Message::Invalid => {
                let e = RpcError::new(
                    -32600,
                    "invalid request: not a JSON-RPC request, notification or response",
                );
                let _ = out_tx.send(json!({ "jsonrpc": "2.0", "id": null, "error": e.to_json() }));
                continue;
            }
        };
        let key = id.to_string();
        let reply = |r: Result<Value, RpcError>| match r {
            Ok(v) => json!({ "jsonrpc": "2.0", "id": id, "result": v }),
            Err(e) => json!({ "jsonrpc": "2.0", "id": id, "error": e.to_json() }),
        };
        if let Some(r) = answer_locally(&proxy, &subject, &endpoint, &method) {
            let _ = out_tx.send(reply(Ok(r)));
            continue;
        }
        if method == "initialize" {
            info =
                Arc::new(CallerInfo::new("stdio", Some("stdio".into())).with_client_info(&params));
            let mut r = Record::new("session.open");
            r.session = Some("stdio".into());
            r.subject = Some(SubjectRef::of(&subject, info.key_id.clone()));
            r.client = Some(info.client.clone());
            proxy.audit().write(r);
            let result = initialize_result(&proxy, &subject, &endpoint, &params);
            let _ = out_tx.send(reply(Ok(result)));
            initialized.notify_one();
            continue;
        }
        let caller = Caller {
            session: Some("stdio".into()),
            subject: subject.clone(),
            endpoint: endpoint.clone(),
            modern: is_modern(&params, None),
            info: info.clone(),
        };
        let ct = CancellationToken::new();
        inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), ct.clone());
        // stdout is every request's stream: progress and relayed requests always have a way.
        let progress = Some(Progress {
            token: params
                .get("_meta")
                .and_then(|m| m.get("progressToken"))
                .cloned(),
            sink: out_tx.clone(),
            replies: replies.clone(),
        });
        let proxy = proxy.clone();
        let tx = text_tx.clone();
        let inflight = inflight.clone();
        tokio::spawn(async move {
            let r = Box::pin(proxy.handle_answer(&caller, &method, params, progress, &ct)).await;
            inflight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
            let line = match r.and_then(|a| a.response_text(&id)) {
                Ok(text) => text,
                Err(e) => json!({ "jsonrpc": "2.0", "id": id, "error": e.to_json() }).to_string(),
            };
            let _ = tx.send(line);
        });
    }
    let mut r = Record::new("session.close");
    r.session = Some("stdio".into());
    r.subject = Some(SubjectRef::of(&subject, info.key_id.clone()));
    r.reason = Some("the client closed stdin".into());
    proxy.audit().write(r);
    changes.abort();
    announce.abort();
    drop(out_tx);
    drop(text_tx);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), writer).await;
}

/// Every message to the client, one line each, in order: messages (`out_rx`) and the
/// responses to forwarded requests as JSON text (`text_rx`); what was queued as a message
/// before a response was queued goes out before it (a request's progress, say).
fn spawn_writer(
    mut out_rx: mpsc::UnboundedReceiver<Value>,
    mut text_rx: mpsc::UnboundedReceiver<String>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        loop {
            let mut out = tokio::select! {
                biased;
                Some(v) = out_rx.recv() => v.to_string(),
                Some(t) = text_rx.recv() => {
                    let mut out = String::new();
                    while let Ok(v) = out_rx.try_recv() {
                        out.push_str(&v.to_string());
                        out.push('\n');
                    }
                    out.push_str(&t);
                    out
                }
                else => break,
            };
            out.push('\n');
            if stdout.write_all(out.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    })
}

/// `list_changed` of the servers this subject can use, from connections it may hear.
fn spawn_list_changes(
    proxy: &Arc<Proxy>,
    subject: &Subject,
    tx: mpsc::UnboundedSender<Value>,
) -> tokio::task::JoinHandle<()> {
    let visible: Vec<String> = proxy
        .engine()
        .visible_servers(subject)
        .into_iter()
        .filter(|s| proxy.engine().can_use(subject, s))
        .map(str::to_string)
        .collect();
    let mut rx = proxy.events().subscribe();
    tokio::spawn(async move {
        while let Ok(e) = rx.recv().await {
            if !visible.contains(&e.server) || !e.for_session(Some("stdio")) {
                continue;
            }
            let method = match e.event {
                Event::ToolsChanged => "notifications/tools/list_changed",
                Event::PromptsChanged => "notifications/prompts/list_changed",
                Event::ResourcesChanged => "notifications/resources/list_changed",
                _ => continue,
            };
            if tx
                .send(json!({ "jsonrpc": "2.0", "method": method }))
                .is_err()
            {
                break;
            }
        }
    })
}

/// Start the eager upstreams, saying which ones we wait for; once they are up (and the
/// client has initialized) tell the client to list again.
fn spawn_announce_upstreams(
    proxy: &Arc<Proxy>,
    tx: mpsc::UnboundedSender<Value>,
    initialized: Arc<tokio::sync::Notify>,
) -> tokio::task::JoinHandle<()> {
    let proxy = proxy.clone();
    tokio::spawn(async move {
        let eager = super::eager_servers(proxy.config());
        if eager.is_empty() {
            return;
        }
        for name in &eager {
            tracing::info!("waiting for upstream {name}");
        }
        super::connect_eager(&proxy).await;
        let up = proxy.known_capabilities();
        for name in &eager {
            match up.contains_key(name) {
                true => tracing::info!("upstream {name} is up"),
                false => tracing::warn!("upstream {name} did not start (see above)"),
            }
        }
        // Notifications only after the client's initialize.
        initialized.notified().await;
        for method in [
            "notifications/tools/list_changed",
            "notifications/prompts/list_changed",
            "notifications/resources/list_changed",
        ] {
            let _ = tx.send(json!({ "jsonrpc": "2.0", "method": method }));
        }
    })
}
