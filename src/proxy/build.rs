//! One way to build a running proxy, used by `fentaris serve`, the library's
//! [`crate::app::App::start`] and the reload: [`Prepared`] resolves everything that can fail
//! (API keys, trusted headers, the tools lock) before anything starts or is written; it then
//! becomes a [`FrontState`] (a new proxy, or the running one reloaded). [`protect_children`]
//! and [`Serving`] are the rest of a start: the stdio children's sandbox, and the MCP
//! listener, admin listener and idle reaper, started and stopped together.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::handler::Proxy;
use super::http::{Access, App, FrontState, Trusted};
use super::pinning::Pins;
use crate::audit::AuditLog;
use crate::config::Config;
use crate::identity::KeyVerifier;
use crate::middleware::Registry;
use crate::vault::Vault;

/// A validated config with everything resolved that could refuse a start or a reload.
pub struct Prepared {
    config: Config,
    dir: PathBuf,
    vault: Option<Vault>,
    verifier: KeyVerifier,
    trusted: Option<Trusted>,
    access: Access,
    pins: Pins,
}

fn env_lookup() -> super::handler::EnvLookup {
    Box::new(|k: &str| std::env::var(k).ok())
}

impl Prepared {
    /// Resolve the API keys (warnings are logged), the trusted-header secret (must resolve)
    /// and the tools lock of `dir` (must be readable): fail closed.
    pub fn new(config: Config, dir: &Path, vault: Option<Vault>) -> Result<Prepared, String> {
        let env = |k: &str| std::env::var(k).ok();
        let (verifier, warnings) = KeyVerifier::build(&config, vault.as_ref(), &env);
        for w in warnings {
            tracing::warn!("{w}");
        }
        let trusted = super::reload::trusted_of(&config, vault.as_ref(), &env)?;
        let access = Access::resolve(&config, vault.as_ref(), &env)?;
        let pins = Pins::load(dir).map_err(|e| e.to_string())?;
        Ok(Prepared {
            config,
            dir: dir.to_path_buf(),
            vault,
            verifier,
            trusted,
            access,
            pins,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn vault(&self) -> Option<&Vault> {
        self.vault.as_ref()
    }

    pub fn verifier(&self) -> &KeyVerifier {
        &self.verifier
    }

    /// The first state: a new proxy writing to `audit`, running `middleware`.
    pub fn start(self, audit: AuditLog, middleware: Registry) -> FrontState {
        let proxy = Proxy::new(self.config, self.dir, self.vault, env_lookup())
            .with_audit(audit)
            .with_middleware(middleware)
            .with_pins(self.pins);
        FrontState::new(proxy.shared(), self.verifier, self.trusted, self.access)
    }

    /// `old` with a key verifier that knows no vault key (config `apiKeys` only): what is
    /// in force after the vault changed and could not be opened (fail closed).
    pub fn without_vault_keys(old: &FrontState) -> FrontState {
        let env = |k: &str| std::env::var(k).ok();
        let (verifier, _) = KeyVerifier::build(old.proxy().config(), None, &env);
        FrontState::new(
            old.proxy().clone(),
            verifier,
            old.trusted.clone(),
            old.access.clone(),
        )
    }

    /// The state after a reload: `old`'s pool, audit log, middleware and metrics carry on.
    pub fn reload(self, old: &Proxy) -> FrontState {
        let proxy = old
            .reloaded(self.config, self.vault, env_lookup())
            .with_pins(self.pins);
        FrontState::new(proxy.shared(), self.verifier, self.trusted, self.access)
    }
}

/// Children must not read what protects the secrets (key files, the vault, the audit log),
/// nor write (or signal, or ptrace) what keeps Fentaris honest: its folder (config, vault,
/// pins, tools lock, logs), the key folder or key file, the audit log's folder. `config_file`
/// is the config's path (`None` for a library app, whose config is built in Rust). Logs
/// which protections are in force (a warning when one is missing). The sandbox is set once
/// per process: a second start keeps the first one's.
pub fn protect_children(dir: &Path, config_file: Option<&Path>, config: &Config) {
    use crate::harden::Cover;
    let mut denied = vec![dir.join(crate::vault::VAULT_FILE)];
    denied.extend(crate::vault::keys::default_keys_dir());
    denied.extend(crate::harden::var("FENTARIS_VAULT_KEY_FILE").map(PathBuf::from));
    if config.auto_log
        && let Some(logs) = dir.join(&config.audit.path).parent()
    {
        denied.push(logs.to_path_buf());
        denied.push(crate::audit::checkpoint::path_for(dir));
    }
    crate::harden::deny_to_children(denied);

    let mut covers = Vec::new();
    let mut missing = Vec::new();
    if dir.file_name().is_some_and(|n| n == ".fentaris") {
        // Hidden, not only read-only: a child has no business reading it either, and a
        // folder-level cover holds when the files in it are replaced by rename.
        covers.push(Cover::Hidden(dir.to_path_buf()));
    } else {
        // A config outside a `.fentaris` folder: its folder may be the project itself, so
        // only the files are covered (new files beside them are not prevented).
        covers.extend(config_file.map(|p| Cover::ReadOnly(p.to_path_buf())));
        for f in [crate::vault::VAULT_FILE, crate::pinning::LOCK_FILE] {
            let p = dir.join(f);
            if p.exists() {
                covers.push(Cover::ReadOnly(p));
            }
        }
        missing.push(format!(
            "new files beside {} (keep the config in a .fentaris folder)",
            config_file.unwrap_or(dir).display()
        ));
    }
    if config.auto_log && config.audit.sink == crate::config::AuditSink::File {
        let log = dir.join(&config.audit.path);
        if let Some(logs) = log.parent() {
            let logs = std::fs::canonicalize(logs).unwrap_or_else(|_| logs.to_path_buf());
            let cwd = std::env::current_dir().unwrap_or_default();
            if std::fs::canonicalize(dir).is_ok_and(|d| d.starts_with(&logs))
                || cwd.starts_with(&logs)
            {
                // Hiding an ancestor of the project would hide the project.
                covers.push(Cover::ReadOnly(log.clone()));
                missing.push(format!(
                    "new files beside the audit log {} (give the log a folder of its own)",
                    log.display()
                ));
            } else {
                covers.push(Cover::Hidden(logs));
            }
        }
    }
    match crate::vault::keys::default_keys_dir() {
        Some(k) if k.exists() => covers.push(Cover::Hidden(k)),
        _ => {}
    }
    if let Some(f) = crate::harden::var("FENTARIS_VAULT_KEY_FILE") {
        covers.push(Cover::Blocked(PathBuf::from(f)));
    }
    let report = crate::harden::protect_from_children(covers, missing);
    match report.summary() {
        (true, line) => tracing::warn!("{line}"),
        (false, line) => tracing::info!("{line}"),
    }
}

/// Where the admin endpoints (`/readyz`, `/metrics`) listen.
#[derive(Debug, Clone, Copy)]
pub enum AdminAddr {
    /// Asked for (`--admin-listen`, or `adminListen` in the config): must bind.
    Required(SocketAddr),
    /// The default: when another instance holds it, the admin endpoints are left out (with
    /// a warning) instead of refusing the start.
    Default(SocketAddr),
}

impl AdminAddr {
    /// The admin address of `config` (`explicit` when given on the command line).
    pub fn of(config: &Config, explicit: Option<SocketAddr>) -> Result<AdminAddr, String> {
        if let Some(a) = explicit {
            return Ok(AdminAddr::Required(a));
        }
        let a: SocketAddr = config.admin_listen.parse().map_err(|e| {
            format!(
                "adminListen `{}`: {e}\nhelp: an address like 127.0.0.1:8766",
                config.admin_listen
            )
        })?;
        Ok(
            if config.admin_listen == crate::config::DEFAULT_ADMIN_LISTEN {
                AdminAddr::Default(a)
            } else {
                AdminAddr::Required(a)
            },
        )
    }
}

/// The bound MCP and admin listeners (bound before anything is written: a start that fails
/// here leaves no trace in the audit log).
pub struct Listeners {
    main: TcpListener,
    admin: Option<TcpListener>,
}

impl Listeners {
    pub async fn bind(listen: SocketAddr, admin: AdminAddr) -> Result<Listeners, String> {
        let main =
            super::listener::bind(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let admin = match admin {
            AdminAddr::Required(a) => Some(TcpListener::bind(a).await.map_err(|e| {
                format!("cannot listen on {a} (adminListen / --admin-listen): {e}")
            })?),
            AdminAddr::Default(a) => match TcpListener::bind(a).await {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::warn!(
                        "the admin endpoints (/readyz, /metrics) are not served: cannot listen on {a}: {e} (another Fentaris?)\nhelp: give this one its own with --admin-listen ADDR or adminListen"
                    );
                    None
                }
            },
        };
        Ok(Listeners { main, admin })
    }
}

/// A running HTTP front: the MCP listener, the admin listener, the idle-session reaper.
pub struct Serving {
    front: Arc<App>,
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    stop: CancellationToken,
    main: tokio::task::JoinHandle<()>,
    admin: Option<tokio::task::JoinHandle<()>>,
    reaper: tokio::task::JoinHandle<()>,
}

impl Serving {
    /// Serve `front` on `listeners` (in tasks of the current runtime).
    pub fn start(front: Arc<App>, listeners: Listeners) -> Result<Serving, String> {
        let addr = listeners.main.local_addr().map_err(|e| e.to_string())?;
        let admin_addr = match &listeners.admin {
            Some(l) => Some(l.local_addr().map_err(|e| e.to_string())?),
            None => None,
        };
        let stop = CancellationToken::new();
        // Our own accept loop: header and idle timeouts, and a connection cap (listener.rs).
        let main = tokio::spawn(super::listener::serve(
            listeners.main,
            front.clone(),
            super::listener::Routes::Mcp(super::http::router(front.clone())),
            stop.clone(),
        ));
        // The admin endpoints get the same timeouts and cap (their own count).
        let admin = listeners.admin.map(|l| {
            tokio::spawn(super::listener::serve(
                l,
                front.clone(),
                super::listener::Routes::Only(super::http::admin_router(front.clone())),
                stop.clone(),
            ))
        });
        let reaper = tokio::spawn(reap(front.clone()));
        Ok(Serving {
            front,
            addr,
            admin_addr,
            stop,
            main,
            admin,
            reaper,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Stop accepting, drain requests (bounded), close every upstream.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.main).await;
        if let Some(a) = self.admin {
            let _ = tokio::time::timeout(Duration::from_secs(2), a).await;
        }
        self.reaper.abort();
        self.front.st().proxy.pool().shutdown().await;
    }
}

/// End idle sessions, and stateless callers' isolated connections, now and then.
async fn reap(front: Arc<App>) {
    loop {
        let idle = front.st().proxy.config().limits.session_idle.0;
        tokio::time::sleep((idle / 2).clamp(Duration::from_secs(1), Duration::from_secs(30))).await;
        let st = front.st();
        front
            .reap_idle_sessions(st.proxy.config().limits.session_idle.0)
            .await;
        st.proxy
            .pool()
            .reap_idle_users(Duration::from_secs(600))
            .await;
    }
}
