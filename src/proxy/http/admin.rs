//! The admin listener: `/readyz` and `/metrics`.

use super::*;

/// The admin router: `/readyz` and `/metrics`.
pub fn admin_router(app: Arc<App>) -> Router {
    Router::new()
        .route(
            "/readyz",
            get(|State(app): State<Arc<App>>, axum::extract::RawQuery(query): axum::extract::RawQuery| async move {
                let (code, text) = readyz(&app);
                // `?verbose`: the same status, as JSON with the stdio child sandbox in force.
                if query.is_some_and(|q| q.split('&').any(|p| p == "verbose")) {
                    let body = serde_json::json!({
                        "ready": code == StatusCode::OK,
                        "detail": text.trim_end(),
                        "sandbox": crate::harden::sandbox_report(),
                    });
                    return (code, [(header::CONTENT_TYPE, "application/json")], body.to_string());
                }
                let text = match crate::harden::sandbox_report() {
                    Some(r) if r.write_protection == "none" => format!(
                        "{text}warning: stdio upstreams can write Fentaris' folder (no mount namespace, no Landlock): see /readyz?verbose\n"
                    ),
                    _ => text,
                };
                (code, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text)
            }),
        )
        .route(
            "/metrics",
            get(|State(app): State<Arc<App>>| async move {
                let mut text = app.st().proxy.metrics().render();
                if let Some((written, dropped, failures, queued)) = app.st().proxy.audit().counters() {
                    use std::fmt::Write as _;
                    let _ = write!(
                        text,
                        "# HELP fentaris_audit_records_written_total Audit records handed to the sink.\n# TYPE fentaris_audit_records_written_total counter\nfentaris_audit_records_written_total {written}\n\
                         # HELP fentaris_audit_records_dropped_total Audit records lost (only with audit.onFailure allow).\n# TYPE fentaris_audit_records_dropped_total counter\nfentaris_audit_records_dropped_total {dropped}\n\
                         # HELP fentaris_audit_sink_failures_total Failed attempts to write the audit sink.\n# TYPE fentaris_audit_sink_failures_total counter\nfentaris_audit_sink_failures_total {failures}\n\
                         # HELP fentaris_audit_queue Audit records waiting for the sink.\n# TYPE fentaris_audit_queue gauge\nfentaris_audit_queue {queued}\n"
                    );
                }
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
            }),
        )
        .with_state(app)
}

/// `/readyz`: ready, or why not.
pub(super) fn readyz(app: &Arc<App>) -> (StatusCode, String) {
    let st = app.st();
    let caps = st.proxy.known_capabilities();
    let missing: Vec<&String> = st.eager.iter().filter(|s| !caps.contains_key(*s)).collect();
    let down = st.proxy.down_servers(&st.eager);
    if !down.is_empty() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: {} down after repeated exits (see the log)\n",
                down.join(", ")
            ),
        )
    } else if !st.proxy.audit().healthy() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the audit log cannot be written\n".to_string(),
        )
    } else if missing.is_empty() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: waiting for {}\n",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    }
}
