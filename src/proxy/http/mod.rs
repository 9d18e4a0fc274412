//! The streamable-HTTP downstream: `/mcp` (aggregated) and `/mcp/<server>`, authentication
//! on every POST, GET and DELETE, sessions bound to the subject that opened them, Host and
//! Origin checks, `/healthz`; and the admin listener (`/readyz`, `/metrics`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::handler::{Caller, CallerInfo, Endpoint, Progress, Proxy, RpcError};
use super::lifecycle::{SUPPORTED_VERSIONS, answer_locally, initialize_result, is_modern};
use super::upstream::Event;
use crate::audit::record::{ClientRef, Record, SubjectRef};
use crate::identity::{Identity, KeyVerifier, presented_key};
use crate::policy::Subject;

mod admin;
mod auth;
mod post;
mod sessions;
mod stream;
pub mod token;

pub use admin::admin_router;
pub use auth::Trusted;
use auth::{Authed, guard};
use post::{post_all, post_one};
use sessions::{InflightGuard, Session, delete_all, delete_one, session_of, session_record};
use stream::{get_all, get_one};

/// What the config and the vault decide for the HTTP front: replaced whole on reload. A
/// request loads it once (in [`guard`]) and decides everything against that one state.
/// Built only by [`super::build::Prepared`].
pub struct FrontState {
    pub(super) trusted: Option<Trusted>,
    pub(crate) proxy: Arc<Proxy>,
    pub(super) verifier: KeyVerifier,
    pub(super) api_key_header: String,
    allowed_hosts: Vec<String>,
    allowed_origins: Vec<String>,
    /// Servers that must be connected for `/readyz`.
    pub(super) eager: Vec<String>,
    /// Who may connect, and the key of session tokens every replica shares.
    pub(super) access: Access,
}

/// What decides who may connect and which session ids a replica accepts: resolved when a
/// config is prepared (a start or a reload), so a bad entry refuses it.
#[derive(Default, Clone)]
pub struct Access {
    /// `identity.allowedClients`; empty: every address.
    pub(super) allowed_clients: Vec<ipnet::IpNet>,
    /// The session-token key derived from `cursorKey`; `None`: tokens are sealed under the
    /// process's own key ([`App`]) and good only where they were issued.
    pub(super) session_key: Option<Arc<token::TokenKey>>,
}

impl Access {
    /// `identity.allowedClients` parsed, and the session-token key from `cursorKey`.
    pub fn resolve(
        config: &crate::config::Config,
        vault: Option<&crate::vault::Vault>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Access, String> {
        let allowed_clients = config
            .identity
            .allowed_clients
            .iter()
            .enumerate()
            .map(|(i, c)| {
                auth::parse_net(c).ok_or_else(|| {
                    format!(
                        "identity.allowedClients[{i}]: `{c}` is not an IP address or CIDR range\nhelp: e.g. \"10.0.0.0/8\" or \"192.168.1.20\""
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let session_key = match &config.cursor_key {
            None => None,
            Some(src) => {
                let secret = crate::vault::resolve_source(src, config, None, vault, env)
                    .map_err(|e| format!("cursorKey: {e}\nhelp: every replica needs the same cursorKey credential; without it, sessions and cursors are good only on the replica that issued them"))?;
                Some(Arc::new(token::TokenKey::derive(
                    secret.expose().as_bytes(),
                )))
            }
        };
        Ok(Access {
            allowed_clients,
            session_key,
        })
    }
}

impl FrontState {
    pub(super) fn new(
        proxy: Arc<Proxy>,
        verifier: KeyVerifier,
        trusted: Option<Trusted>,
        access: Access,
    ) -> FrontState {
        let id = &proxy.config().identity;
        FrontState {
            trusted,
            api_key_header: id.api_key_header.to_ascii_lowercase(),
            allowed_hosts: id
                .allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            allowed_origins: id.allowed_origins.clone(),
            eager: super::eager_servers(proxy.config()),
            proxy,
            verifier,
            access,
        }
    }

    /// The proxy of this state.
    pub fn proxy(&self) -> &Arc<Proxy> {
        &self.proxy
    }
}

/// Shared state of the HTTP front: the current [`State`], and what outlives a reload
/// (sessions, per-user and per-address counters).
pub struct App {
    state: arc_swap::ArcSwap<FrontState>,
    sessions: Mutex<crate::FastMap<String, Arc<Session>>>,
    /// Requests in flight per user (`limits.maxInflightPerUser`).
    inflight_by_user: Arc<Mutex<crate::FastMap<String, usize>>>,
    /// Failed authentications per client address in the current minute.
    auth_failures: Mutex<HashMap<std::net::IpAddr, (std::time::Instant, u32)>>,
    /// Seals session tokens when no `cursorKey` is configured (this process only).
    local_key: token::TokenKey,
    /// Sessions ended here (DELETE, revoked key) whose tokens have not expired yet, by a
    /// digest of the id: this replica does not revive them from their tokens.
    ended: Mutex<HashMap<[u8; 16], u64>>,
}

impl App {
    pub fn new(state: FrontState) -> App {
        App {
            state: arc_swap::ArcSwap::from_pointee(state),
            sessions: Mutex::new(crate::FastMap::default()),
            inflight_by_user: Arc::default(),
            auth_failures: Mutex::new(HashMap::new()),
            local_key: token::TokenKey::random(),
            ended: Mutex::new(HashMap::new()),
        }
    }

    /// The current state (config, policy, keys).
    pub fn st(&self) -> Arc<FrontState> {
        self.state.load_full()
    }

    /// Put a new state in place (reload); returns the one it replaced.
    pub fn swap(&self, state: FrontState) -> Arc<FrontState> {
        self.state.swap(Arc::new(state))
    }
}

fn rpc_error_body(id: Option<&Value>, e: &RpcError) -> Value {
    json!({ "jsonrpc": "2.0", "id": id.cloned().unwrap_or(Value::Null), "error": e.to_json() })
}

fn internal() -> RpcError {
    RpcError::new(-32603, "internal error")
}

fn json_response(status: StatusCode, body: Value) -> Response {
    json_text_response(status, body.to_string())
}

/// `status` with `text` as an `application/json` body (the header value is static, not
/// parsed and copied per response).
fn json_text_response(status: StatusCode, text: String) -> Response {
    let mut r = Response::new(axum::body::Body::from(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "Not Found").into_response()
}

fn endpoint_of(server: Option<String>) -> Endpoint {
    match server {
        Some(s) => Endpoint::Server(s),
        None => Endpoint::All,
    }
}

fn accepts_sse(h: &HeaderMap) -> bool {
    h.get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/event-stream"))
}

/// Every request on the MCP port, as the listener hands it over. A POST to `/mcp` or to
/// `/mcp/<server>` goes straight to [`auth::authenticate`] and [`post::post`]: the hot path of
/// every proxied call, without the router's boxed services and middleware layers.
/// Everything else goes through [`router`] (GET and DELETE, `/healthz`, unknown paths),
/// which runs the same two functions for POSTs. A server name with `%` escapes takes the
/// router's way too, so the name is always decoded by the router's own rules.
pub async fn front_door(
    app: Arc<App>,
    router: Router,
    peer: std::net::SocketAddr,
    req: axum::http::Request<axum::body::Body>,
) -> Response {
    if req.method() == axum::http::Method::POST
        && let Some(server) = post_target(req.uri().path())
    {
        let server = server.map(str::to_string);
        let (parts, body) = req.into_parts();
        return match auth::authenticate(&app, &parts, Some(peer.ip())) {
            Ok(authed) => post::post(app, server, authed, parts, body).await,
            Err(refused) => refused,
        };
    }
    through_router(router, peer, req).await
}

/// A request through `router`, with the client's address in its extensions (where the
/// router's `/mcp` guard reads it).
pub async fn through_router(
    router: Router,
    peer: std::net::SocketAddr,
    mut req: axum::http::Request<axum::body::Body>,
) -> Response {
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    match tower::ServiceExt::oneshot(router, req).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

/// `Some(None)`: `/mcp`; `Some(Some(name))`: `/mcp/<name>`, a name of plain characters (no
/// `%` escape, no `/`), the same one the router would extract; `None`: anything else.
fn post_target(path: &str) -> Option<Option<&str>> {
    match path.strip_prefix("/mcp") {
        Some("") => Some(None),
        Some(rest) => {
            let name = rest.strip_prefix('/')?;
            (!name.is_empty() && !name.contains(['%', '/'])).then_some(Some(name))
        }
        None => None,
    }
}

/// The main router.
pub fn router(app: Arc<App>) -> Router {
    let mcp = Router::new()
        .route(
            "/mcp",
            axum::routing::post(post_all)
                .get(get_all)
                .delete(delete_all),
        )
        .route(
            "/mcp/{server}",
            axum::routing::post(post_one)
                .get(get_one)
                .delete(delete_one),
        )
        .layer(axum::middleware::from_fn_with_state(app.clone(), guard));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(mcp)
        .fallback(|| async { not_found() })
        .with_state(app)
}

#[cfg(test)]
mod tests;
