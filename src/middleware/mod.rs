//! Middleware: what runs after policy allowed a request and before it reaches the upstream.
//!
//! One chain, in this order: policy (in [`crate::proxy::handler`]), argument schemas
//! ([`schema`], from config), the external authorizer ([`authorizer`], from config), global
//! middleware, per-target middleware (tool, resource URI glob, prompt), then the upstream.
//! Each step may only narrow: middleware sees the arguments read-only, can deny, and cannot
//! reach a target policy denied (a denied request never gets here).
//!
//! ```
//! use fentaris::middleware::{Ctx, Next, MwResult};
//!
//! // A per-tool check: issues need a title of at least 5 characters.
//! async fn title_check(ctx: Ctx, next: Next) -> MwResult {
//!     let title = ctx.args().get("title").and_then(|t| t.as_str()).unwrap_or("");
//!     if title.chars().count() < 5 {
//!         return ctx.deny("an issue title needs at least 5 characters");
//!     }
//!     next.run(ctx).await
//! }
//! # let _ = title_check;
//! ```

pub mod authorizer;
pub mod schema;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::audit::AuditLog;
pub use crate::jsonrpc::RpcError;
use crate::policy::Subject;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a middleware step returns: the upstream's result (possibly inspected), or an error
/// for the client (a denial, see [`Ctx::deny`]).
pub type MwResult = Result<Value, RpcError>;

/// The JSON-RPC code of a denial by middleware, an argument schema or the authorizer.
pub const DENIED: i64 = crate::jsonrpc::code::DENIED;

/// One middleware step: an async function of `(ctx, next)`.
pub trait Middleware: Send + Sync + 'static {
    fn call(&self, ctx: Ctx, next: Next) -> BoxFuture<MwResult>;
}

impl<F, Fut> Middleware for F
where
    F: Fn(Ctx, Next) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = MwResult> + Send + 'static,
{
    fn call(&self, ctx: Ctx, next: Next) -> BoxFuture<MwResult> {
        Box::pin(self(ctx, next))
    }
}

/// A denial for the client and the audit trail: `who` is `middleware`, `argumentSchema` or
/// `authorizer`.
pub fn denial(who: &'static str, message: &str) -> RpcError {
    crate::audit::record::note(|s| {
        s.decision = Some("deny");
        s.reason = Some(format!("{who}: {message}").into());
    });
    RpcError::denied(who, message)
}

/// The request as middleware sees it. Cheap to clone; everything is read-only.
#[derive(Clone)]
pub struct Ctx(Arc<CtxInner>);

struct CtxInner {
    args: Value,
    subject: Arc<Subject>,
    server: String,
    operation: String,
    target: String,
    request_id: Option<std::sync::Arc<str>>,
    log: Log,
}

impl Ctx {
    /// A context (the proxy builds these; public for tests and benchmarks of middleware).
    pub fn new(
        subject: Arc<Subject>,
        server: &str,
        operation: &str,
        target: &str,
        args: Value,
        audit: Arc<AuditLog>,
    ) -> Ctx {
        let request_id = crate::audit::record::current_request_id();
        Ctx(Arc::new(CtxInner {
            args,
            subject,
            server: server.to_string(),
            operation: operation.to_string(),
            target: target.to_string(),
            log: Log {
                audit,
                request_id: request_id.clone(),
            },
            request_id,
        }))
    }
    /// The arguments (tool or prompt arguments, the completion argument; `{}` otherwise).
    pub fn args(&self) -> &Value {
        &self.0.args
    }
    /// Who is calling: id, groups, tenant.
    pub fn subject(&self) -> &Subject {
        &self.0.subject
    }
    pub fn server(&self) -> &str {
        &self.0.server
    }
    /// The policy operation, e.g. `tool:call`, `resource:read`, `prompt:get`.
    pub fn operation(&self) -> &str {
        &self.0.operation
    }
    /// Tool or prompt name, or resource URI.
    pub fn target(&self) -> &str {
        &self.0.target
    }
    pub fn request_id(&self) -> Option<&str> {
        self.0.request_id.as_deref()
    }
    /// Refuse the request with `message` (sent to the client and written to the audit log).
    pub fn deny(&self, message: impl AsRef<str>) -> MwResult {
        Err(denial("middleware", message.as_ref()))
    }
    /// Write to the audit stream, tied to this request.
    pub fn log(&self) -> &Log {
        &self.0.log
    }
}

/// The audit stream as middleware sees it.
#[derive(Clone)]
pub struct Log {
    audit: Arc<AuditLog>,
    request_id: Option<std::sync::Arc<str>>,
}

impl Log {
    /// An event line (`"event": "log"`) with this request's id. Fields are written as given:
    /// put no secrets or argument values in them.
    pub fn info(&self, event: &str, fields: Value) {
        let mut r = crate::audit::Record::new("log");
        r.request_id = self.request_id.clone();
        r.detail = Some(json!({ "event": event, "fields": fields }));
        self.audit.write(r);
    }
    /// A tag on this request's audit line.
    pub fn set_tag(&self, key: impl Into<String>, value: impl Into<String>) {
        let (k, v) = (key.into(), value.into());
        crate::audit::record::note(|s| {
            s.tags.insert(k, v);
        });
    }
}

/// The rest of the chain.
pub struct Next {
    chain: Arc<[Arc<dyn Middleware>]>,
    at: usize,
    end: Box<dyn FnOnce(Ctx) -> BoxFuture<MwResult> + Send>,
}

impl Next {
    /// A chain of `steps` ending in `end` (the upstream call).
    pub fn new(
        chain: Arc<[Arc<dyn Middleware>]>,
        end: impl FnOnce(Ctx) -> BoxFuture<MwResult> + Send + 'static,
    ) -> Next {
        Next {
            chain,
            at: 0,
            end: Box::new(end),
        }
    }

    /// Continue with the next step (the upstream, after the last).
    pub fn run(self, ctx: Ctx) -> BoxFuture<MwResult> {
        match self.chain.get(self.at).cloned() {
            Some(step) => step.call(
                ctx,
                Next {
                    chain: self.chain,
                    at: self.at + 1,
                    end: self.end,
                },
            ),
            None => (self.end)(ctx),
        }
    }
}

/// What a per-target middleware is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Tool,
    /// A resource URI glob (also used for completion of a resource template).
    Resource,
    /// A prompt name (also used for completion of that prompt's arguments).
    Prompt,
}

#[derive(Clone)]
struct Scoped {
    server: String,
    kind: TargetKind,
    target: globset::GlobMatcher,
    step: Arc<dyn Middleware>,
}

/// Runtime middleware, registered through the library API.
#[derive(Default, Clone)]
pub struct Registry {
    global: Vec<Arc<dyn Middleware>>,
    scoped: Vec<Scoped>,
}

impl Registry {
    pub fn is_empty(&self) -> bool {
        self.global.is_empty() && self.scoped.is_empty()
    }
    /// A middleware for every request that policy allowed.
    pub fn add_global(&mut self, step: impl Middleware) {
        self.global.push(Arc::new(step));
    }
    /// A middleware for one server's targets of `kind` matching the glob `target`.
    pub fn add_scoped(
        &mut self,
        server: &str,
        kind: TargetKind,
        target: &str,
        step: impl Middleware,
    ) -> Result<(), globset::Error> {
        let glob = globset::GlobBuilder::new(target)
            .literal_separator(false)
            .build()?
            .compile_matcher();
        self.scoped.push(Scoped {
            server: server.to_string(),
            kind,
            target: glob,
            step: Arc::new(step),
        });
        Ok(())
    }
    /// Global steps, then the steps attached to this target, in registration order.
    pub fn chain_for(
        &self,
        server: &str,
        kind: Option<TargetKind>,
        target: &str,
    ) -> Arc<[Arc<dyn Middleware>]> {
        self.global
            .iter()
            .cloned()
            .chain(
                self.scoped
                    .iter()
                    .filter(|s| {
                        Some(s.kind) == kind && s.server == server && s.target.is_match(target)
                    })
                    .map(|s| s.step.clone()),
            )
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn ctx() -> Ctx {
        let config: crate::config::Config = serde_json::from_value(json!({
            "groups": [{ "id": "g", "users": ["alice"] }]
        }))
        .unwrap();
        let (engine, _) = crate::policy::Engine::compile(&config);
        Ctx::new(
            Arc::new(engine.subject("alice")),
            "github",
            "tool:call",
            "create_issue",
            json!({ "title": "hi" }),
            Arc::new(AuditLog::off()),
        )
    }

    #[tokio::test]
    async fn global_runs_before_per_target_and_both_before_the_end() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut r = Registry::default();
        let o = order.clone();
        r.add_scoped(
            "github",
            TargetKind::Tool,
            "create_*",
            move |c: Ctx, n: Next| {
                let o = o.clone();
                async move {
                    o.lock().unwrap().push("tool");
                    n.run(c).await
                }
            },
        )
        .unwrap();
        let o = order.clone();
        r.add_global(move |c: Ctx, n: Next| {
            let o = o.clone();
            async move {
                o.lock().unwrap().push("global");
                n.run(c).await
            }
        });
        let chain = r.chain_for("github", Some(TargetKind::Tool), "create_issue");
        assert_eq!(chain.len(), 2);
        let o = order.clone();
        let out = Next::new(chain, move |_| {
            Box::pin(async move {
                o.lock().unwrap().push("upstream");
                Ok(json!({ "ok": true }))
            })
        })
        .run(ctx())
        .await
        .unwrap();
        assert_eq!(out, json!({ "ok": true }));
        assert_eq!(*order.lock().unwrap(), ["global", "tool", "upstream"]);
        // Other servers, kinds and names do not get the per-tool step.
        assert_eq!(
            r.chain_for("other", Some(TargetKind::Tool), "create_issue")
                .len(),
            1
        );
        assert_eq!(
            r.chain_for("github", Some(TargetKind::Prompt), "create_issue")
                .len(),
            1
        );
        assert_eq!(
            r.chain_for("github", Some(TargetKind::Tool), "delete")
                .len(),
            1
        );
    }

    #[tokio::test]
    async fn a_denial_stops_the_chain_with_its_message() {
        let mut r = Registry::default();
        r.add_global(|c: Ctx, _n: Next| async move { c.deny("not today") });
        let reached = Arc::new(Mutex::new(false));
        let rr = reached.clone();
        let e = Next::new(r.chain_for("github", None, ""), move |_| {
            Box::pin(async move {
                *rr.lock().unwrap() = true;
                Ok(json!({}))
            })
        })
        .run(ctx())
        .await
        .unwrap_err();
        assert_eq!(e.code, DENIED);
        assert!(e.message.contains("not today"));
        assert!(!*reached.lock().unwrap());
    }
}
