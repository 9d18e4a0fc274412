//! The library API: build the same model as `.fentaris/config.json` in Rust, add runtime
//! middleware, and serve. The builders write the config's JSON, and [`App::config`] checks it
//! with the same code as `fentaris policy check`, so the two front doors cannot drift: the
//! same mistakes give the same diagnostics (with JSON pointers into the built document).
//!
//! ```no_run
//! use fentaris::app::*;
//! use fentaris::middleware::{Ctx, Next};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut app = fentaris(Options {
//!     listen: Some("127.0.0.1:8765".into()),
//!     servers: vec![mcp("github", streamable_http("https://api.githubcopilot.com/mcp/")
//!         .auth(bearer(credential_env("GITHUB_TOKEN"))))],
//!     policies: vec![policy("dev").mcp("github").allow(["list_issues", "create_issue"])],
//!     groups: vec![group("devs")
//!         .users([user("alice").tenant("acme").api_keys([credential_env("ALICE_KEY")])])
//!         .policy("dev")],
//!     ..Options::default()
//! });
//! app.mcp("github").tool("create_issue", |ctx: Ctx, next: Next| async move {
//!     let title = ctx.args().get("title").and_then(|t| t.as_str()).unwrap_or("");
//!     if title.len() < 5 {
//!         return ctx.deny("an issue title needs at least 5 characters");
//!     }
//!     next.run(ctx).await
//! })?;
//! app.middleware(|ctx: Ctx, next: Next| async move {
//!     ctx.log().set_tag("via", "library");
//!     next.run(ctx).await
//! });
//! let running = app.start().await?;
//! println!("serving on {}", running.local_addr());
//! running.wait().await;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::config::Config;
use crate::diagnostics::{Diagnostic, Severity};
use crate::middleware::{Middleware, Registry, TargetKind};

/// A credential source: `{"env": VAR}`, `{"vault": NAME}` or `{"credential": NAME}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Source(Value);

/// A named credential binding (`credentials` in config), resolved per group.
pub fn credential(name: &str) -> Source {
    Source(json!({ "credential": name }))
}
/// An environment variable of the Fentaris process.
pub fn credential_env(var: &str) -> Source {
    Source(json!({ "env": var }))
}
/// An entry of the vault.
pub fn credential_vault(name: &str) -> Source {
    Source(json!({ "vault": name }))
}

/// Upstream authentication.
#[derive(Debug, Clone, PartialEq)]
pub struct Auth(Value);

/// `Authorization: Bearer <secret>` to the upstream.
pub fn bearer(source: Source) -> Auth {
    Auth(json!({ "bearer": source.0 }))
}

/// How to reach an upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct Transport {
    kind: &'static str,
    body: Map<String, Value>,
}

/// A child process speaking MCP on stdin/stdout.
pub fn stdio(command: &str) -> Transport {
    let mut body = Map::new();
    body.insert("command".into(), json!(command));
    Transport {
        kind: "stdio",
        body,
    }
}
/// A streamable-HTTP MCP endpoint.
pub fn streamable_http(url: &str) -> Transport {
    let mut body = Map::new();
    body.insert("url".into(), json!(url));
    Transport {
        kind: "streamableHttp",
        body,
    }
}

impl Transport {
    /// Arguments of a stdio command.
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, args: I) -> Self {
        let a: Vec<Value> = args.into_iter().map(|s| json!(s.as_ref())).collect();
        self.body.insert("args".into(), Value::Array(a));
        self
    }
    /// An environment variable of a stdio child, from a credential source.
    pub fn env(mut self, name: &str, source: Source) -> Self {
        let env = self.body.entry("env").or_insert_with(|| json!({}));
        env[name] = source.0;
        self
    }
    /// Upstream authentication (for a server, use [`McpDecl::auth`]).
    pub fn auth(self, auth: Auth) -> McpTransport {
        McpTransport {
            transport: self,
            auth: Some(auth),
        }
    }
}

/// A transport with its authentication.
#[derive(Debug, Clone, PartialEq)]
pub struct McpTransport {
    transport: Transport,
    auth: Option<Auth>,
}

impl From<Transport> for McpTransport {
    fn from(transport: Transport) -> Self {
        McpTransport {
            transport,
            auth: None,
        }
    }
}

/// An upstream server declaration.
#[derive(Debug, Clone, PartialEq)]
pub struct McpDecl(Value);

/// Declare upstream `name` reached over `transport`.
pub fn mcp(name: &str, transport: impl Into<McpTransport>) -> McpDecl {
    let t = transport.into();
    let mut v =
        json!({ "name": name, "transport": { t.transport.kind: Value::Object(t.transport.body) } });
    if let Some(a) = t.auth {
        v["auth"] = a.0;
    }
    McpDecl(v)
}

impl McpDecl {
    pub fn auth(mut self, auth: Auth) -> Self {
        self.0["auth"] = auth.0;
        self
    }
    /// One upstream connection per downstream session (`"isolation": "session"`).
    pub fn isolated(mut self) -> Self {
        self.0["isolation"] = json!("session");
        self
    }
}

/// A user of a group.
#[derive(Debug, Clone, PartialEq)]
pub struct UserDecl(Value);

pub fn user(id: &str) -> UserDecl {
    UserDecl(json!({ "id": id }))
}

impl UserDecl {
    pub fn tenant(mut self, tenant: &str) -> Self {
        self.0["tenantId"] = json!(tenant);
        self
    }
    /// API keys from credential sources (generated keys live in the vault).
    pub fn api_keys<I: IntoIterator<Item = Source>>(mut self, keys: I) -> Self {
        self.0["apiKeys"] = Value::Array(keys.into_iter().map(|s| s.0).collect());
        self
    }
}

impl From<&str> for UserDecl {
    fn from(id: &str) -> Self {
        user(id)
    }
}

/// A group: users and the policy they get.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupDecl(Value);

pub fn group(id: &str) -> GroupDecl {
    GroupDecl(json!({ "id": id, "users": [] }))
}

impl GroupDecl {
    pub fn users<I: IntoIterator<Item = U>, U: Into<UserDecl>>(mut self, users: I) -> Self {
        self.set_users(users);
        self
    }
    fn set_users<I: IntoIterator<Item = U>, U: Into<UserDecl>>(&mut self, users: I) {
        let list = self.0["users"].as_array_mut();
        if let Some(list) = list {
            list.extend(users.into_iter().map(|u| {
                let u = u.into().0;
                // A bare id is written as a string, as in hand-written configs.
                match u.as_object() {
                    Some(o) if o.len() == 1 => u["id"].clone(),
                    _ => u,
                }
            }));
        }
    }
    /// The named policy of this group.
    pub fn policy(mut self, name: &str) -> Self {
        self.0["policy"] = json!(name);
        self
    }
    /// A private server of this group.
    pub fn server(mut self, server: McpDecl) -> Self {
        let list = self.0.as_object_mut().and_then(|o| {
            o.entry("servers")
                .or_insert_with(|| json!([]))
                .as_array_mut()
        });
        if let Some(list) = list {
            list.push(server.0);
        }
        self
    }
}

/// Targets of a rule: one name or glob, or several.
pub struct Targets(Value);

impl From<&str> for Targets {
    fn from(t: &str) -> Self {
        Targets(json!(t))
    }
}
impl<const N: usize> From<[&str; N]> for Targets {
    fn from(t: [&str; N]) -> Self {
        Targets(json!(t.to_vec()))
    }
}
impl From<Vec<&str>> for Targets {
    fn from(t: Vec<&str>) -> Self {
        Targets(json!(t))
    }
}

/// A named policy, built rule by rule: `.mcp(server)` picks the server of the rules after it.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDecl {
    name: String,
    rules: Vec<Value>,
    server: String,
}

pub fn policy(name: &str) -> PolicyDecl {
    PolicyDecl {
        name: name.to_string(),
        rules: Vec::new(),
        server: "*".to_string(),
    }
}

impl PolicyDecl {
    /// The server (name or glob) of the following rules.
    pub fn mcp(mut self, server: &str) -> Self {
        self.server = server.to_string();
        self
    }
    fn rule(mut self, key: &str, value: Value) -> Self {
        self.rules.push(json!({ "mcp": self.server, key: value }));
        self
    }
    /// Allow calling these tools.
    pub fn allow(self, tools: impl Into<Targets>) -> Self {
        let t = tools.into().0;
        self.rule("allow", t)
    }
    /// Deny calling these tools (deny wins).
    pub fn deny(self, tools: impl Into<Targets>) -> Self {
        let t = tools.into().0;
        self.rule("deny", t)
    }
    /// Allow a capability: `{"operation": "resource:read", "target": "file:///srv/*"}`.
    pub fn allow_capability(self, capability: Value) -> Self {
        self.rule("allowCapability", capability)
    }
    /// Deny a capability.
    pub fn deny_capability(self, capability: Value) -> Self {
        self.rule("denyCapability", capability)
    }
    fn to_json(&self) -> Value {
        json!({ "name": self.name, "rules": self.rules })
    }
}

/// Everything [`fentaris`] takes; the rest of the config keeps its defaults.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Listen address (default `127.0.0.1:8765`; port 0 picks a free one).
    pub listen: Option<String>,
    pub servers: Vec<McpDecl>,
    pub policies: Vec<PolicyDecl>,
    pub groups: Vec<GroupDecl>,
    /// Write the audit trail.
    pub auto_log: bool,
    /// Folder for relative paths (audit log, vault); default the working directory.
    pub dir: Option<PathBuf>,
    /// Any other config fields, as they would appear in config.json (merged last).
    pub extra: Option<Value>,
}

/// Why an app cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the configuration has errors:\n{}", .0.iter().map(|d| format!("  {}[{}] {}: {}", d.severity.as_str(), d.code, if d.pointer.is_empty() { "/" } else { &d.pointer }, d.message)).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
    #[error("{0}")]
    Io(String),
}

/// An embedded Fentaris: the model, then middleware, then [`App::start`].
pub struct App {
    doc: Value,
    policies: Vec<PolicyDecl>,
    groups: Vec<GroupDecl>,
    dir: PathBuf,
    middleware: Registry,
}

/// Start building an app.
pub fn fentaris(options: Options) -> App {
    let mut doc = json!({});
    if let Some(l) = &options.listen {
        doc["listen"] = json!(l);
    }
    if options.auto_log {
        doc["autoLog"] = json!(true);
    }
    doc["servers"] = Value::Array(options.servers.into_iter().map(|s| s.0).collect());
    if let Some(Value::Object(extra)) = options.extra {
        for (k, v) in extra {
            doc[k] = v;
        }
    }
    App {
        doc,
        policies: options.policies,
        groups: options.groups,
        dir: options
            .dir
            .unwrap_or_else(|| std::env::current_dir().unwrap_or_default()),
        middleware: Registry::default(),
    }
}

/// Attaching middleware to (or declaring) one server: see [`App::mcp`].
pub struct ServerScope<'a> {
    app: &'a mut App,
    server: String,
}

impl ServerScope<'_> {
    /// Declare this server (if not declared in the options).
    pub fn transport(self, transport: impl Into<McpTransport>) -> Self {
        let decl = mcp(&self.server, transport);
        if let Some(list) = self.app.doc["servers"].as_array_mut() {
            list.retain(|s| s["name"] != self.server.as_str());
            list.push(decl.0);
        }
        self
    }
    fn add(self, kind: TargetKind, target: &str, mw: impl Middleware) -> Result<Self, StartError> {
        self.app
            .middleware
            .add_scoped(&self.server, kind, target, mw)
            .map_err(|e| StartError::Io(format!("middleware target `{target}`: {e}")))?;
        Ok(self)
    }
    /// Middleware for calls of tools matching `tool` (a name or glob) on this server.
    pub fn tool(self, tool: &str, mw: impl Middleware) -> Result<Self, StartError> {
        self.add(TargetKind::Tool, tool, mw)
    }
    /// Middleware for reads of (and completions on) resources whose URI matches `uri_glob`.
    pub fn resource(self, uri_glob: &str, mw: impl Middleware) -> Result<Self, StartError> {
        self.add(TargetKind::Resource, uri_glob, mw)
    }
    /// Middleware for `prompts/get` (and completions) of prompts matching `prompt`.
    pub fn prompt(self, prompt: &str, mw: impl Middleware) -> Result<Self, StartError> {
        self.add(TargetKind::Prompt, prompt, mw)
    }
}

impl App {
    /// A named policy, created if new: add rules with `.mcp(s).allow(..)`.
    pub fn policy(&mut self, name: &str) -> &mut PolicyDecl {
        if let Some(i) = self.policies.iter().position(|p| p.name == name) {
            return &mut self.policies[i];
        }
        self.policies.push(policy(name));
        self.policies.last_mut().expect("just pushed")
    }

    /// Add a policy built elsewhere (replaces one of the same name).
    pub fn add_policy(&mut self, p: PolicyDecl) -> &mut Self {
        self.policies.retain(|q| q.name != p.name);
        self.policies.push(p);
        self
    }

    /// A group, created if new.
    pub fn group(&mut self, id: &str) -> GroupScope<'_> {
        let i = match self.groups.iter().position(|g| g.0["id"] == id) {
            Some(i) => i,
            None => {
                self.groups.push(group(id));
                self.groups.len() - 1
            }
        };
        GroupScope {
            group: &mut self.groups[i],
        }
    }

    /// A server: declare it with `.transport(..)`, attach middleware with `.tool(..)`,
    /// `.resource(..)`, `.prompt(..)`.
    pub fn mcp(&mut self, name: &str) -> ServerScope<'_> {
        ServerScope {
            app: self,
            server: name.to_string(),
        }
    }

    /// Middleware for every request policy allowed (runs before per-target middleware).
    pub fn middleware(&mut self, mw: impl Middleware) -> &mut Self {
        self.middleware.add_global(mw);
        self
    }

    /// The config document the builders produced (as config.json would hold it).
    pub fn to_json(&self) -> Value {
        let mut doc = self.doc.clone();
        doc["policies"] = Value::Array(self.policies.iter().map(PolicyDecl::to_json).collect());
        doc["groups"] = Value::Array(self.groups.iter().map(|g| g.0.clone()).collect());
        doc
    }

    /// Validate like `fentaris policy check`: the model, or every error.
    pub fn config(&self) -> Result<Config, StartError> {
        let text = serde_json::to_string_pretty(&self.to_json()).unwrap_or_default();
        let outcome = crate::config::check_source(&text);
        let errors: Vec<Diagnostic> = outcome
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .cloned()
            .collect();
        match outcome.config {
            Some(c) if errors.is_empty() => Ok(c),
            _ => Err(StartError::Invalid(errors)),
        }
    }

    /// Validate, start the upstreams and serve HTTP. Fails with the same diagnostics as
    /// `policy check` when the model has errors.
    pub async fn start(self) -> Result<Running, StartError> {
        use crate::proxy::build::{AdminAddr, Listeners, Prepared, Serving, protect_children};
        let config = self.config()?;
        let vault = crate::proxy::reload::open_vault(&self.dir, &config).map_err(StartError::Io)?;
        let listen: SocketAddr = config
            .listen
            .parse()
            .map_err(|e| StartError::Io(format!("listen `{}`: {e}", config.listen)))?;
        let admin = AdminAddr::of(&config, None).map_err(StartError::Io)?;
        // The same preparation as `fentaris serve`: API keys, trusted headers, tools lock.
        let prepared = Prepared::new(config, &self.dir, vault).map_err(StartError::Io)?;
        // Bind before the audit log is opened: a start that fails writes nothing into it.
        let listeners = Listeners::bind(listen, admin)
            .await
            .map_err(StartError::Io)?;
        let config = prepared.config();
        let audit = if config.auto_log {
            let key = match prepared.vault() {
                Some(v) => crate::audit::ChainKey::Hmac(v.audit_key()),
                None => crate::audit::ChainKey::Sha256,
            };
            crate::audit::AuditLog::start(crate::audit::writer::Options::from_config(
                &config.audit,
                &self.dir,
                key,
            ))
            .map_err(StartError::Io)?
        } else {
            crate::audit::AuditLog::off()
        };
        protect_children(&self.dir, None, config);
        let state = prepared.start(audit, self.middleware);
        let proxy = state.proxy().clone();
        crate::proxy::connect_eager(&proxy).await;
        let front = Arc::new(crate::proxy::http::App::new(state));
        let serving = Serving::start(front, listeners).map_err(StartError::Io)?;
        Ok(Running { serving, proxy })
    }
}

/// A group being declared on an app.
pub struct GroupScope<'a> {
    group: &'a mut GroupDecl,
}

impl GroupScope<'_> {
    pub fn users<I: IntoIterator<Item = U>, U: Into<UserDecl>>(self, users: I) -> Self {
        self.group.set_users(users);
        self
    }
    pub fn policy(self, name: &str) -> Self {
        self.group.0["policy"] = json!(name);
        self
    }
}

/// A started app.
pub struct Running {
    serving: crate::proxy::build::Serving,
    proxy: Arc<crate::proxy::Proxy>,
}

impl Running {
    /// Where MCP clients connect: `http://<addr>/mcp`.
    pub fn local_addr(&self) -> SocketAddr {
        self.serving.local_addr()
    }
    /// Where `/readyz` and `/metrics` are served (`adminListen`); `None` when the default
    /// address was taken by another instance.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.serving.admin_addr()
    }
    /// Stop serving, close the upstreams, flush the audit log.
    pub async fn shutdown(self) {
        self.serving.shutdown().await;
        self.proxy.audit().close(std::time::Duration::from_secs(5));
    }
    /// Serve until SIGINT or SIGTERM, then shut down.
    pub async fn wait(self) {
        crate::proxy::shutdown_signal().await;
        self.shutdown().await;
    }
}
