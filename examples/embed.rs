//! Embed Fentaris with the library API: a policy, a per-tool middleware (an issue title
//! check) and a global middleware that tags every audit line.
//!
//! ```sh
//! EMBED_KEY=alice-example-key-0123456789 cargo run --example embed
//! ```
//! Then point an MCP client at http://127.0.0.1:8766/mcp with header
//! `x-fentaris-api-key: $EMBED_KEY`. The upstream is the reference "everything" server
//! (`npx -y @modelcontextprotocol/server-everything`); set EMBED_UPSTREAM to run another
//! command instead (its tool `echo` stands in for `create_issue` here).

use fentaris::app::*;
use fentaris::middleware::{Ctx, Next};

#[tokio::main]
async fn main() {
    if std::env::var("EMBED_KEY").is_err() {
        eprintln!("set EMBED_KEY to the API key clients will use (20 characters or more)");
        std::process::exit(2);
    }
    let upstream = std::env::var("EMBED_UPSTREAM")
        .unwrap_or_else(|_| "npx -y @modelcontextprotocol/server-everything".into());
    let mut parts = upstream.split_whitespace();
    let command = parts.next().unwrap_or("npx");
    let mut app = fentaris(Options {
        listen: Some(std::env::var("EMBED_LISTEN").unwrap_or_else(|_| "127.0.0.1:8766".into())),
        auto_log: true,
        dir: Some(std::env::temp_dir().join("fentaris-embed")),
        servers: vec![mcp("everything", stdio(command).args(parts))],
        policies: vec![policy("dev").mcp("everything").allow(["echo", "get-sum"])],
        groups: vec![
            group("devs")
                .users([user("alice").api_keys([credential_env("EMBED_KEY")])])
                .policy("dev"),
        ],
        ..Options::default()
    });
    // Per tool: the "create_issue" title check, on the upstream's `echo` tool.
    app.mcp("everything")
        .tool("echo", |ctx: Ctx, next: Next| async move {
            let title = ctx
                .args()
                .get("message")
                .and_then(|t| t.as_str())
                .unwrap_or("");
            if title.trim().chars().count() < 5 {
                return ctx.deny("an issue title needs at least 5 characters");
            }
            next.run(ctx).await
        })
        .expect("a valid tool glob");
    // Global: tag every request's audit line with the tenant, and log an event.
    app.middleware(|ctx: Ctx, next: Next| async move {
        let tenant = ctx
            .subject()
            .tenant
            .clone()
            .unwrap_or_else(|| "none".into());
        ctx.log().set_tag("tenant", tenant);
        ctx.log().info(
            "example.seen",
            serde_json::json!({ "operation": ctx.operation() }),
        );
        next.run(ctx).await
    });
    match app.start().await {
        Ok(running) => {
            eprintln!(
                "serving http://{}/mcp (Ctrl-C to stop)",
                running.local_addr()
            );
            running.wait().await;
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(3);
        }
    }
}
