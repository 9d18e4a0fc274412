//! The lifecycle answers Fentaris gives itself: `initialize`, `server/discover`, and the
//! protocol revisions it speaks downstream.

use serde_json::{Value, json};

use super::handler::{Endpoint, Proxy};
use crate::policy::Subject;

/// Revisions served with a session (`initialize`).
pub const HANDSHAKE_VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];
/// The stateless revision.
pub const MODERN_VERSION: &str = "2026-07-28";
/// Everything accepted in `MCP-Protocol-Version`.
pub const SUPPORTED_VERSIONS: [&str; 4] = ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"];

pub fn server_info() -> Value {
    json!({ "name": "fentaris", "version": env!("CARGO_PKG_VERSION") })
}

/// The version to answer `initialize` with: the client's if we speak it, else our newest.
pub fn negotiate(requested: Option<&str>) -> &'static str {
    HANDSHAKE_VERSIONS
        .iter()
        .find(|v| Some(**v) == requested)
        .copied()
        .unwrap_or(HANDSHAKE_VERSIONS[0])
}

pub fn initialize_result(
    proxy: &Proxy,
    subject: &Subject,
    endpoint: &Endpoint,
    params: &Value,
) -> Value {
    let version = negotiate(params.get("protocolVersion").and_then(Value::as_str));
    json!({
        "protocolVersion": version,
        "capabilities": proxy.capabilities(subject, endpoint),
        "serverInfo": server_info(),
        "instructions": instructions(proxy, endpoint),
    })
}

pub fn discover_result(proxy: &Proxy, subject: &Subject, endpoint: &Endpoint) -> Value {
    json!({
        "resultType": "complete",
        "supportedVersions": SUPPORTED_VERSIONS,
        "capabilities": proxy.capabilities(subject, endpoint),
        "instructions": instructions(proxy, endpoint),
        "ttlMs": 0,
        "cacheScope": "private",
        "_meta": { "io.modelcontextprotocol/serverInfo": server_info() },
    })
}

/// The requests Fentaris answers itself within a session or stateless request, the same
/// over HTTP and stdio (both framings call this before handing a request to
/// [`Proxy::handle_answer`]): `server/discover` and `ping` (in every protocol revision).
/// `initialize` is not here: it opens a session, which each framing keeps its own way.
pub fn answer_locally(
    proxy: &Proxy,
    subject: &Subject,
    endpoint: &Endpoint,
    method: &str,
) -> Option<Value> {
    match method {
        "server/discover" => Some(discover_result(proxy, subject, endpoint)),
        "ping" => Some(json!({})),
        _ => None,
    }
}

fn instructions(proxy: &Proxy, endpoint: &Endpoint) -> String {
    match endpoint {
        Endpoint::All => format!(
            "Fentaris: tools and prompts of several servers, named <server>{}<name>. Calls are checked against policy.",
            proxy.config().name_separator
        ),
        Endpoint::Server(s) => {
            format!("Fentaris: the `{s}` server. Calls are checked against policy.")
        }
    }
}

/// Whether a request uses the stateless 2026-07-28 lifecycle (by its `_meta` or header).
pub fn is_modern(params: &Value, header: Option<&str>) -> bool {
    let meta = params
        .get("_meta")
        .and_then(|m| m.get("io.modelcontextprotocol/protocolVersion"))
        .and_then(Value::as_str);
    meta.or(header).is_some_and(|v| v >= MODERN_VERSION)
}

/// The revision a stateless request declares in `_meta`, if it is not one Fentaris speaks.
pub fn unsupported_meta_version(params: &Value) -> Option<String> {
    let v = params
        .get("_meta")?
        .get("io.modelcontextprotocol/protocolVersion")?;
    match v.as_str() {
        Some(s) if SUPPORTED_VERSIONS.contains(&s) => None,
        _ => Some(v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(negotiate(Some("2025-06-18")), "2025-06-18");
        assert_eq!(negotiate(Some("2024-11-05")), "2025-11-25");
        assert_eq!(negotiate(None), "2025-11-25");
        assert!(is_modern(
            &json!({"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}),
            None
        ));
        assert!(is_modern(&json!({}), Some("2026-07-28")));
        assert!(!is_modern(&json!({}), Some("2025-11-25")));
    }
}
