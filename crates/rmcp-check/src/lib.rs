//! Test-only helper: rmcp 3.11 (the official Rust MCP SDK) on three sides of Fentaris, driven
//! by `tests/e2e_rmcp.rs` at the repository root. Not part of the product: nothing in the
//! `fentaris` crate depends on this package, and the release build does not build it.
//!
//! The program is the example `rmcp-check` (`examples/rmcp-check.rs`, a thin `main`), so
//! the root `cargo test` builds it (with the same features as the tests, no second build)
//! and `cargo run` / `cargo install` of the workspace see only `fentaris`.
//!
//! ```text
//! rmcp-check client http URL KEY initialize|auto   steps (JSON array) on stdin
//! rmcp-check client stdio ARGV_JSON                 spawns ARGV (`fentaris serve --stdio …`)
//! rmcp-check upstream                               an rmcp-built MCP server on stdin/stdout
//! rmcp-check validate                               captured wire messages (JSON lines) on stdin
//! ```
//!
//! - `client`: rmcp's client runs the steps (`{"method": M, "params": P}`, sent as rmcp's typed
//!   `ClientRequest`, answered as its typed `ServerResult`; or `{"wait": METHOD, "ms": N}`,
//!   which waits for a notification) and prints `{"protocol", "server", "results",
//!   "notifications"}`; each result is `{"ok": true, "value": …}` or `{"ok": false, "code",
//!   "message"}`.
//! - `upstream`: tools `add`, `progress` (three progress notifications), `toggle` (adds or
//!   removes the tool `extra` and sends `tools/list_changed`), `log` (a logging message),
//!   `fail` (an `isError` result) and `extra`; one resource and one template; the prompt
//!   `greet` with completion of its `name` argument.
//! - `validate`: each line is `{"context", "request": METHOD|null, "message": {...}}`. The
//!   message must parse as rmcp's `ServerJsonRpcMessage`, its result as the typed result of
//!   METHOD, its notification as the typed notification of its method (not the catch-all
//!   custom one). Prints `{"checked", "failures", "dropped"}`; exits 1 on any failure.
//!   `dropped` lists, per request method (`"M error"` for errors) or notification method, the
//!   fields the typed model did not keep (re-serialised and compared): information for the
//!   caller, not a failure here.

// Logging (SEP-2577) is deprecated in rmcp; it is still part of what Fentaris relays.
#![allow(deprecated)]

use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientRequest, CompleteRequestParams,
    CompleteResult, DiscoverResult, ErrorData, GetPromptRequestParams, GetPromptResponse,
    GetPromptResult, InitializeResult, JsonRpcMessage, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    LoggingMessageNotificationParam, PaginatedRequestParams, ProgressNotificationParam,
    ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    ResourceUpdatedNotificationParam, ServerConfig, ServerJsonRpcMessage, ServerNotification,
    SetLevelRequestParams,
};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, NotificationContext, RequestContext};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, RoleClient, RoleServer, ServerHandler, ServiceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The program: parse the arguments, run, exit 2 with a message on error.
pub fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rmcp-check: cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = rt.block_on(async {
        match args.as_slice() {
            ["client", "http", url, key, mode] => client_http(url, key, mode).await,
            ["client", "stdio", argv] => client_stdio(argv).await,
            ["upstream"] => upstream().await,
            ["validate"] => validate(),
            _ => bail!(
                "usage: rmcp-check client http URL KEY initialize|auto | client stdio ARGV_JSON | upstream | validate"
            ),
        }
    });
    if let Err(e) = run {
        eprintln!("rmcp-check: {e:#}");
        std::process::exit(2);
    }
}

// ---------------------------------------------------------------- client

/// Records the notifications rmcp's client hands to its handler.
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<Value>>>,
}

impl Recorder {
    fn note(&self, method: &str, params: Value) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(json!({ "method": method, "params": params }));
        }
    }
    fn has(&self, method: &str) -> bool {
        self.seen
            .lock()
            .map(|s| s.iter().any(|n| n["method"] == method))
            .unwrap_or(false)
    }
}

impl ClientHandler for Recorder {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.note(
            "notifications/progress",
            serde_json::to_value(params).unwrap_or_default(),
        );
    }
    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.note(
            "notifications/message",
            serde_json::to_value(params).unwrap_or_default(),
        );
    }
    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.note(
            "notifications/resources/updated",
            serde_json::to_value(params).unwrap_or_default(),
        );
    }
    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.note("notifications/tools/list_changed", Value::Null);
    }
    async fn on_prompt_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.note("notifications/prompts/list_changed", Value::Null);
    }
    async fn on_resource_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.note("notifications/resources/list_changed", Value::Null);
    }
}

fn read_steps() -> anyhow::Result<Vec<Value>> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("reading the steps from stdin")?;
    serde_json::from_str(&input).context("the steps on stdin are not a JSON array")
}

async fn client_http(url: &str, key: &str, mode: &str) -> anyhow::Result<()> {
    let steps = read_steps()?;
    // `auth_header` sends `Authorization: Bearer KEY`, one of the two ways Fentaris takes a key.
    let config = StreamableHttpClientTransportConfig::with_uri(url.to_string()).auth_header(key);
    let transport = StreamableHttpClientTransport::from_config(config);
    let recorder = Recorder::default();
    let lifecycle = match mode {
        "initialize" => ClientLifecycleMode::Initialize,
        "auto" => ClientLifecycleMode::Auto {
            preferred_versions: vec![ProtocolVersion::LATEST],
            legacy_version: Some(ProtocolVersion::LATEST_WITH_INITIALIZE),
        },
        other => bail!("unknown client mode {other:?} (initialize or auto)"),
    };
    let client = recorder
        .clone()
        .serve_with_lifecycle(transport, lifecycle)
        .await
        .with_context(|| format!("connecting to {url} ({mode})"))?;
    run_steps(client, recorder, steps).await
}

async fn client_stdio(argv: &str) -> anyhow::Result<()> {
    let steps = read_steps()?;
    let argv: Vec<String> = serde_json::from_str(argv).context("ARGV_JSON: a JSON string array")?;
    let (program, rest) = argv.split_first().context("ARGV_JSON is empty")?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(rest);
    let (transport, _) = TokioChildProcess::builder(cmd)
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .with_context(|| format!("spawning {program}"))?;
    let recorder = Recorder::default();
    let client = recorder
        .clone()
        .serve(transport)
        .await
        .context("initialize over stdio")?;
    run_steps(client, recorder, steps).await
}

async fn run_steps(
    client: rmcp::service::RunningService<RoleClient, Recorder>,
    recorder: Recorder,
    steps: Vec<Value>,
) -> anyhow::Result<()> {
    let info = client.peer_info();
    let protocol = info.as_ref().map(|i| i.protocol_version.to_string());
    let server = info
        .as_ref()
        .and_then(|i| i.server_info.as_ref())
        .map(|s| s.name.clone());
    let mut results = Vec::new();
    for step in steps {
        if let Some(method) = step["wait"].as_str() {
            let ms = step["ms"].as_u64().unwrap_or(3000);
            let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
            while !recorder.has(method) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            results.push(json!({ "ok": recorder.has(method), "value": method }));
            continue;
        }
        let request: ClientRequest = serde_json::from_value(json!({
            "method": step["method"],
            "params": step.get("params").cloned().unwrap_or_else(|| json!({})),
        }))
        .with_context(|| format!("step {step} is not a request rmcp's model knows"))?;
        let answer =
            tokio::time::timeout(Duration::from_secs(60), client.peer().send_request(request))
                .await
                .with_context(|| format!("no answer within 60 s to {step}"))?;
        results.push(match answer {
            Ok(r) => json!({ "ok": true, "value": serde_json::to_value(r)? }),
            Err(rmcp::ServiceError::McpError(e)) => {
                json!({ "ok": false, "code": e.code.0, "message": e.message, "data": e.data })
            }
            Err(e) => json!({ "ok": false, "code": 0, "message": e.to_string() }),
        });
    }
    // Progress notifications are handled in their own tasks; let the last ones land.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let notifications = recorder.seen.lock().map(|s| s.clone()).unwrap_or_default();
    let _ = client.cancel().await;
    println!(
        "{}",
        json!({ "protocol": protocol, "server": server, "results": results, "notifications": notifications })
    );
    Ok(())
}

// ---------------------------------------------------------------- upstream

/// An MCP server built on rmcp's `ServerHandler`, served on stdin/stdout.
#[derive(Default)]
struct Upstream {
    extra: Mutex<bool>,
}

fn typed<T: DeserializeOwned>(v: Value) -> Result<T, ErrorData> {
    serde_json::from_value(v).map_err(|e| ErrorData::internal_error(e.to_string(), None))
}

fn tool(name: &str, description: &str, properties: Value, required: &[&str]) -> Value {
    json!({ "name": name, "description": description,
            "inputSchema": { "type": "object", "properties": properties, "required": required } })
}

impl ServerHandler for Upstream {
    fn get_info(&self) -> ServerConfig {
        // Constant and known to parse (checked by the unit test below).
        serde_json::from_value(json!({
            "protocolVersion": "2025-11-25",
            "capabilities": { "tools": { "listChanged": true }, "resources": {}, "prompts": {},
                              "completions": {}, "logging": {} },
            "serverInfo": { "name": "rmcp-upstream", "version": "1.0.0" },
            "instructions": "rmcp-built test upstream"
        }))
        .unwrap_or_default()
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut tools = vec![
            tool(
                "add",
                "a + b",
                json!({"a": {"type": "number"}, "b": {"type": "number"}}),
                &["a", "b"],
            ),
            tool("progress", "three progress steps", json!({}), &[]),
            tool("toggle", "adds or removes `extra`", json!({}), &[]),
            tool(
                "log",
                "sends a logging message",
                json!({"text": {"type": "string"}}),
                &[],
            ),
            tool("fail", "an isError result", json!({}), &[]),
        ];
        if self.extra.lock().map(|g| *g).unwrap_or(false) {
            tools.push(tool("extra", "appears after toggle", json!({}), &[]));
        }
        typed(json!({ "tools": tools }))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.clone().unwrap_or_default();
        let text =
            |t: String| typed::<CallToolResult>(json!({"content": [{"type": "text", "text": t}]}));
        let result = match request.name.as_ref() {
            "add" => {
                let (a, b) = (
                    args.get("a").and_then(Value::as_f64),
                    args.get("b").and_then(Value::as_f64),
                );
                let (Some(a), Some(b)) = (a, b) else {
                    return Err(ErrorData::invalid_params("add needs numbers a and b", None));
                };
                typed(
                    json!({"content": [{"type": "text", "text": format!("{}", a + b)}],
                             "structuredContent": {"sum": a + b}}),
                )?
            }
            "progress" => {
                if let Some(token) = ctx.meta.get_progress_token() {
                    for i in 1..=3 {
                        let p: ProgressNotificationParam = typed(json!({
                            "progressToken": token, "progress": i, "total": 3, "message": format!("step {i}")
                        }))?;
                        let _ = ctx.peer.notify_progress(p).await;
                    }
                }
                text("done".into())?
            }
            "toggle" => {
                let now = {
                    let mut g = self
                        .extra
                        .lock()
                        .map_err(|_| ErrorData::internal_error("state poisoned", None))?;
                    *g = !*g;
                    *g
                };
                let _ = ctx.peer.notify_tool_list_changed().await;
                text(format!("extra: {now}"))?
            }
            "log" => {
                let t = args.get("text").and_then(Value::as_str).unwrap_or("hello");
                #[allow(deprecated)]
                let _ = ctx
                    .peer
                    .notify_logging_message(typed(
                        json!({"level": "info", "logger": "rmcp-upstream", "data": t}),
                    )?)
                    .await;
                text("logged".into())?
            }
            "fail" => {
                typed(json!({"content": [{"type": "text", "text": "it failed"}], "isError": true}))?
            }
            "extra" if self.extra.lock().map(|g| *g).unwrap_or(false) => text("extra".into())?,
            other => {
                return Err(ErrorData::invalid_params(
                    format!("Unknown tool: {other}"),
                    None,
                ));
            }
        };
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        typed(
            json!({"resources": [{"uri": "rmcp://notes/one", "name": "one", "mimeType": "text/plain"}]}),
        )
    }

    async fn list_resource_templates(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        typed(json!({"resourceTemplates": [{"uriTemplate": "rmcp://notes/{id}", "name": "note"}]}))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let Some(id) = request.uri.strip_prefix("rmcp://notes/") else {
            return Err(ErrorData::resource_not_found(
                format!("no resource {}", request.uri),
                None,
            ));
        };
        let r: ReadResourceResult = typed(json!({"contents": [
            {"uri": request.uri, "mimeType": "text/plain", "text": format!("note {id}")}
        ]}))?;
        Ok(r.into())
    }

    async fn list_prompts(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        typed(
            json!({"prompts": [{"name": "greet", "description": "a greeting",
                                   "arguments": [{"name": "name", "required": true}]}]}),
        )
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        if request.name != "greet" {
            return Err(ErrorData::invalid_params(
                format!("Unknown prompt: {}", request.name),
                None,
            ));
        }
        let name = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("you")
            .to_string();
        let r: GetPromptResult = typed(json!({"description": "a greeting", "messages": [
            {"role": "user", "content": {"type": "text", "text": format!("Hello, {name}!")}}
        ]}))?;
        Ok(r.into())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let prefix = request.argument.value.to_lowercase();
        let values: Vec<&str> = ["alice", "alfred", "bob"]
            .into_iter()
            .filter(|v| v.starts_with(&prefix))
            .collect();
        typed(json!({"completion": {"values": values, "total": values.len(), "hasMore": false}}))
    }

    async fn set_level(
        &self,
        _: SetLevelRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Ok(())
    }
}

async fn upstream() -> anyhow::Result<()> {
    let running = Upstream::default()
        .serve(rmcp::transport::stdio())
        .await
        .context("serving on stdio")?;
    running.waiting().await.context("stdio service")?;
    Ok(())
}

// ---------------------------------------------------------------- validate

/// Parse `v` as `T` and return the fields the typed model did not keep.
fn parse_as<T: DeserializeOwned + serde::Serialize>(v: &Value) -> Result<Vec<String>, String> {
    let t: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&t).map_err(|e| e.to_string())?;
    let mut dropped = Vec::new();
    missing(v, &back, String::new(), &mut dropped);
    Ok(dropped)
}

/// JSON pointers of the keys in `orig` that are absent from `back`.
fn missing(orig: &Value, back: &Value, at: String, out: &mut Vec<String>) {
    match (orig, back) {
        (Value::Object(o), Value::Object(b)) => {
            for (k, v) in o {
                let p = format!("{at}/{k}");
                match b.get(k) {
                    Some(bv) => missing(v, bv, p, out),
                    None => out.push(p),
                }
            }
        }
        (Value::Array(o), Value::Array(b)) => {
            for (i, (v, bv)) in o.iter().zip(b).enumerate() {
                missing(v, bv, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// The typed result of `method`, parsed from `result`.
fn check_result(method: &str, result: &Value) -> Result<Vec<String>, String> {
    match method {
        "initialize" => parse_as::<InitializeResult>(result),
        "server/discover" => parse_as::<DiscoverResult>(result),
        "tools/list" => parse_as::<ListToolsResult>(result),
        "tools/call" => parse_as::<CallToolResult>(result),
        "resources/list" => parse_as::<ListResourcesResult>(result),
        "resources/templates/list" => parse_as::<ListResourceTemplatesResult>(result),
        "resources/read" => parse_as::<ReadResourceResult>(result),
        "prompts/list" => parse_as::<ListPromptsResult>(result),
        "prompts/get" => parse_as::<GetPromptResult>(result),
        "completion/complete" => parse_as::<CompleteResult>(result),
        "ping" | "logging/setLevel" | "resources/subscribe" | "resources/unsubscribe" => {
            // An empty result: `{}` (with `_meta` at most).
            match result.as_object() {
                Some(o) if o.keys().all(|k| k == "_meta" || k == "resultType") => Ok(vec![]),
                _ => Err(format!("expected an empty result, got {result}")),
            }
        }
        other => Err(format!("no typed result known for method {other:?}")),
    }
}

/// The typed notification of the message's own method (a known method must not fall back to
/// rmcp's catch-all `CustomNotification`).
fn check_notification(n: &ServerNotification, params: &Value) -> Result<Vec<String>, String> {
    let p = || params.clone();
    match n {
        ServerNotification::ProgressNotification(_) => parse_as::<ProgressNotificationParam>(&p()),
        ServerNotification::LoggingMessageNotification(_) => {
            parse_as::<LoggingMessageNotificationParam>(&p())
        }
        ServerNotification::ResourceUpdatedNotification(_) => {
            parse_as::<ResourceUpdatedNotificationParam>(&p())
        }
        ServerNotification::CustomNotification(c) => Err(format!(
            "parsed only as a custom notification ({})",
            c.method
        )),
        _ => Ok(vec![]),
    }
}

/// Check one captured entry; the fields the typed model dropped, or why it is unreadable.
fn check_entry(entry: &Value) -> Result<Vec<String>, String> {
    let msg = &entry["message"];
    let parsed: ServerJsonRpcMessage = serde_json::from_value(msg.clone())
        .map_err(|e| format!("not an rmcp ServerJsonRpcMessage: {e}"))?;
    match (&parsed, entry["request"].as_str()) {
        (JsonRpcMessage::Response(_), Some(method)) => check_result(method, &msg["result"]),
        (JsonRpcMessage::Response(_), None) => Err("a response to no request".into()),
        (JsonRpcMessage::Error(e), _) => {
            if msg["error"]["message"].as_str().is_none_or(str::is_empty) {
                Err(format!("an error without a message: {:?}", e.error))
            } else {
                parse_as::<ErrorData>(&msg["error"])
            }
        }
        (JsonRpcMessage::Notification(n), _) => check_notification(&n.notification, &msg["params"]),
        (JsonRpcMessage::Request(r), _) => Err(format!(
            "an unexpected server-to-client request: {:?}",
            r.request
        )),
    }
}

fn validate() -> anyhow::Result<()> {
    let mut checked = 0usize;
    let mut failures = Vec::new();
    let mut dropped: HashMap<String, Vec<String>> = HashMap::new();
    for (n, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.context("reading stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        let entry: Value =
            serde_json::from_str(&line).with_context(|| format!("line {}: not JSON", n + 1))?;
        checked += 1;
        match check_entry(&entry) {
            Ok(d) => {
                if d.is_empty() {
                    continue;
                }
                // Keyed by the request's method (" error" appended for errors) or the
                // notification's method.
                let msg = &entry["message"];
                let what = entry["request"].as_str().or(msg["method"].as_str());
                let key = match (what, msg.get("error").is_some()) {
                    (Some(w), false) => w.to_string(),
                    (w, true) => format!("{} error", w.unwrap_or("-")),
                    (None, false) => "-".to_string(),
                };
                let list = dropped.entry(key).or_default();
                for p in d {
                    if !list.contains(&p) {
                        list.push(p);
                    }
                }
            }
            Err(why) => failures.push(
                json!({"context": entry["context"], "why": why, "message": entry["message"]}),
            ),
        }
    }
    let ok = failures.is_empty() && checked > 0;
    println!(
        "{}",
        json!({"checked": checked, "failures": failures, "dropped": dropped})
    );
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_info_parses() {
        let info = Upstream::default().get_info();
        assert_eq!(info.server_info.name, "rmcp-upstream");
        assert!(info.capabilities.tools.is_some());
    }

    #[test]
    fn validation_rejects_what_rmcp_cannot_read() {
        assert!(check_result("tools/list", &json!({"tools": [{"name": "x"}]})).is_err());
        assert!(check_result("tools/call", &json!({"content": "not a list"})).is_err());
        assert!(check_result("ping", &json!({"x": 1})).is_err());
        let ok = json!({"tools": [{"name": "x", "inputSchema": {"type": "object"}, "zz": 1}]});
        assert_eq!(
            check_result("tools/list", &ok).unwrap(),
            vec!["/tools/0/zz"]
        );
    }

    fn entry(request: Option<&str>, message: Value) -> Value {
        json!({"context": "t", "request": request, "message": message})
    }

    #[test]
    fn validation_of_whole_messages() {
        let ok = |r: Option<&str>, m: Value| check_entry(&entry(r, m));
        // Readable: a typed result, an error (id null, as for a 401), a known notification.
        assert!(
            ok(
                Some("tools/call"),
                json!({"jsonrpc": "2.0", "id": 1, "result": {"content": []}})
            )
            .is_ok()
        );
        assert!(
            ok(
                None,
                json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32001, "message": "no"}})
            )
            .is_ok()
        );
        assert!(ok(None, json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}})).is_ok());
        // Unreadable or wrong: each is a failure.
        let bad = [
            (
                Some("tools/call"),
                json!({"jsonrpc": "1.0", "id": 1, "result": {"content": []}}),
            ),
            (
                Some("tools/list"),
                json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": {}}}),
            ),
            (
                Some("initialize"),
                json!({"jsonrpc": "2.0", "id": 1, "result": {"capabilities": {}}}),
            ),
            (None, json!({"jsonrpc": "2.0", "id": 1, "result": {}})),
            (
                None,
                json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32602}}),
            ),
            (
                None,
                json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": ""}}),
            ),
            (
                None,
                json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}}),
            ),
            (
                None,
                json!({"jsonrpc": "2.0", "method": "notifications/whatever"}),
            ),
            (
                None,
                json!({"jsonrpc": "2.0", "id": 5, "method": "sampling/createMessage", "params": {}}),
            ),
        ];
        for (r, m) in bad {
            assert!(ok(r, m.clone()).is_err(), "accepted: {m}");
        }
    }
}
