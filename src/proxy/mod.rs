//! `fentaris serve`: the proxy.
//!
//! - [`upstream`]: JSON-level upstream connections (stdio children, streamable HTTP).
//! - [`pool`]: upstream specs (credentials, scrubbed environments) and the connection pool.
//! - [`handler`]: one operation: decide, route, forward, filter ([`handler::Proxy::handle`]).
//! - [`http`] and [`stdio`]: the downstream transports; [`lifecycle`]: initialize/discover.
//! - [`metrics`]: Prometheus text.
//! - [`pinning`]: tools whose definition drifted from `tools.lock.json` are hidden and denied.

pub mod handler;
pub mod http;
pub mod lifecycle;
pub mod listener;
pub mod metrics;
pub mod pinning;
pub mod pool;
pub mod reload;
pub mod stdio;
pub mod upstream;

use std::net::SocketAddr;

use std::sync::Arc;
use std::time::Duration;

pub use handler::{Caller, Endpoint, Proxy, RpcError};

/// Top-level servers whose connection depends neither on the subject nor on the session:
/// started at once, and required by `/readyz`.
pub fn eager_servers(config: &crate::config::Config) -> Vec<String> {
    config
        .servers
        .iter()
        .filter(|s| s.resolve_headers.is_empty() && s.isolation == crate::config::Isolation::Shared)
        .map(|s| s.name.clone())
        .collect()
}

/// Start the eager servers, so `/readyz` can report them and `initialize` can advertise
/// their capabilities.
/// Each one is then kept up (restarted with backoff when it exits; see [`Proxy::keep_up`]).
/// Returns when every eager server has been tried once.
pub async fn connect_eager(proxy: &Arc<Proxy>) {
    let firsts: Vec<_> = eager_servers(&proxy.config)
        .into_iter()
        .map(|name| {
            let (tx, rx) = tokio::sync::oneshot::channel();
            tokio::spawn(proxy.clone().keep_up(name, tx));
            rx
        })
        .collect();
    for f in firsts {
        let _ = f.await;
    }
}

/// Serve the MCP endpoints on `listener` until `stop` (the library's [`crate::app`] uses
/// this; `fentaris serve` adds the admin listener and signal handling in [`serve_http`]).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    app: Arc<http::App>,
    stop: tokio_util::sync::CancellationToken,
) {
    listener::serve(listener, app.clone(), http::router(app), stop).await;
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Serve HTTP on `listen` and the admin endpoints on `admin` until a signal arrives; then
/// drain (bounded) and close every upstream.
pub async fn serve_http(
    app: Arc<http::App>,
    listen: SocketAddr,
    admin: SocketAddr,
) -> Result<(), String> {
    let bound = bind_http(listen, admin).await?;
    serve_http_bound(app, bound).await
}

/// Bind the MCP and admin listeners (before anything is written: a start that fails here
/// leaves no trace in the audit log).
pub async fn bind_http(
    listen: SocketAddr,
    admin: SocketAddr,
) -> Result<(tokio::net::TcpListener, tokio::net::TcpListener), String> {
    let main = listener::bind(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let admin_l = tokio::net::TcpListener::bind(admin)
        .await
        .map_err(|e| format!("cannot listen on {admin} (adminListen): {e}"))?;
    Ok((main, admin_l))
}

/// [`serve_http`] on listeners from [`bind_http`].
pub async fn serve_http_bound(
    app: Arc<http::App>,
    (main, admin_l): (tokio::net::TcpListener, tokio::net::TcpListener),
) -> Result<(), String> {
    let listen = main.local_addr().map_err(|e| e.to_string())?;
    let admin = admin_l.local_addr().map_err(|e| e.to_string())?;
    tracing::info!("listening on http://{listen}/mcp (admin: http://{admin}/readyz, /metrics)");
    eprintln!("fentaris: serving http://{listen}/mcp (admin http://{admin})");
    let stop = tokio_util::sync::CancellationToken::new();
    let s1 = stop.clone();
    let s2 = stop.clone();
    // Our own accept loop: header and idle timeouts, and a connection cap (listener.rs).
    let main_srv = listener::serve(main, app.clone(), http::router(app.clone()), s1);
    // The admin endpoints get the same timeouts and cap (their own count).
    let admin_srv = listener::serve(admin_l, app.clone(), http::admin_router(app.clone()), s2);
    let main_task = tokio::spawn(main_srv);
    // End idle sessions, and stateless callers' isolated connections, now and then.
    let reaper = {
        let app = app.clone();
        tokio::spawn(async move {
            loop {
                let idle = app.st().proxy.config.limits.session_idle.0;
                tokio::time::sleep(
                    (idle / 2).clamp(Duration::from_secs(1), Duration::from_secs(30)),
                )
                .await;
                app.reap_idle_sessions(app.st().proxy.config.limits.session_idle.0)
                    .await;
                app.st()
                    .proxy
                    .pool
                    .reap_idle_users(Duration::from_secs(600))
                    .await;
            }
        })
    };
    let admin_task = tokio::spawn(admin_srv);
    shutdown_signal().await;
    tracing::info!("shutting down: draining requests");
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), main_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), admin_task).await;
    reaper.abort();
    app.st().proxy.pool.shutdown().await;
    Ok(())
}
