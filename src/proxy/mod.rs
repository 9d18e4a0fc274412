//! `fentaris serve`: the proxy.
//!
//! - [`upstream`]: JSON-level upstream connections (stdio children, streamable HTTP).
//! - [`pool`]: upstream specs (credentials, scrubbed environments) and the connection pool.
//! - [`handler`]: one operation: decide, route, forward, filter ([`handler::Proxy::handle_answer`]).
//! - [`http`] and [`stdio`]: the downstream transports; [`lifecycle`]: initialize/discover.
//! - [`build`]: the one way to build and start a proxy (serve, library, reload).
//! - [`metrics`]: Prometheus text.
//! - [`pinning`]: tools whose definition drifted from `tools.lock.json` are hidden and denied.

pub mod build;
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

use std::sync::Arc;

pub use handler::{Caller, Endpoint, Proxy};

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
    let firsts: Vec<_> = eager_servers(proxy.config())
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
