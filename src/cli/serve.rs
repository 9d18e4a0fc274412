//! `fentaris serve`: run the proxy over streamable HTTP (default) or stdio.

use std::net::SocketAddr;
use std::sync::Arc;

use super::vault_access::{key_lookup, vault_error};
use super::{CliError, CliResult, Context};
use crate::config::vault_references;
use crate::proxy::build::{AdminAddr, Listeners, Prepared, Serving, protect_children};
use crate::proxy::{Proxy, connect_eager, eager_servers, http, shutdown_signal, stdio};
use crate::vault::{OpenOptions, Vault};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Listen address for MCP clients (default: `listen` in the config, 127.0.0.1:8765)
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Serve one client over stdin/stdout instead of HTTP (logs go to stderr)
    #[arg(long, requires = "user")]
    pub stdio: bool,
    /// The user the stdio client acts as
    #[arg(long, requires = "stdio")]
    pub user: Option<String>,
    /// Listen address of the admin endpoints /readyz and /metrics (default: `adminListen`
    /// in the config, 127.0.0.1:8766; when that default is taken, they are left out)
    #[arg(long, value_name = "ADDR", conflicts_with = "stdio")]
    pub admin_listen: Option<SocketAddr>,
    /// Reload when the config or the vault changes (SIGHUP always reloads)
    #[arg(long, conflicts_with = "stdio")]
    pub watch: bool,
    /// Worker threads (default: one per CPU, less one left to the upstreams and the audit
    /// writer; at least 1)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
}

/// One worker per CPU but one: on a 2-CPU host, one worker thread measured 40 % more
/// throughput than two (bench/RESULTS.md), since stdio upstreams and the audit writer need
/// a core too and cross-thread wake-ups dominate the proxy's cost.
fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().saturating_sub(1))
        .unwrap_or(1)
        .max(1)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("fentaris=info,warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .fmt_fields(super::output::log_fields())
        .with_ansi(super::output::stderr_color())
        .with_target(false)
        .try_init();
}

pub fn run(ctx: &Context, args: ServeArgs) -> CliResult {
    init_logging();
    let (loaded, config) = ctx.load_valid()?;
    let vault_path = loaded.dir.join(crate::vault::VAULT_FILE);
    // The vault holds API keys and secrets: when it exists it must open (fail closed).
    let vault = if vault_path.exists() {
        Some(Vault::open(&vault_path, &key_lookup(), OpenOptions::default()).map_err(vault_error)?)
    } else {
        if let Some((name, _)) = vault_references(&config).first() {
            return Err(CliError::fatal(format!(
                "the config uses vault entry `{name}` but there is no vault at {}\nhelp: fentaris credentials set {name}",
                vault_path.display()
            )));
        }
        None
    };
    if args.stdio {
        check_stdio_user(
            &config,
            vault.as_ref(),
            args.user.as_deref().unwrap_or_default(),
        )?;
    }
    let listen = match args.listen {
        Some(l) => l,
        None => config
            .listen
            .parse()
            .map_err(|e| CliError::fatal(format!("listen address `{}`: {e}", config.listen)))?,
    };
    let admin = AdminAddr::of(&config, args.admin_listen).map_err(CliError::fatal)?;
    if args.stdio && config.auto_log && config.audit.sink != crate::config::AuditSink::File {
        return Err(CliError::usage(
            "audit.sink writes to stdout, which `serve --stdio` uses for MCP messages\nhelp: set \"audit\": { \"sink\": \"file\" } for stdio clients",
        ));
    }
    // Everything that can still fail comes before the audit log is opened, so a start that
    // fails (port in use, unreadable tools.lock.json, unresolved trusted-header secret)
    // writes nothing into the live log.
    let prepared = Prepared::new(config, &loaded.dir, vault).map_err(CliError::fatal)?;
    // One runtime thread (the default on 2 cores) is a current-thread runtime: no second
    // thread for the top-level future, no hand-offs between threads (~17 % less CPU per call
    // than a one-worker multi-thread runtime in bench/compare.sh).
    let threads = args.threads.map_or_else(default_threads, usize::from);
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    let rt = builder
        .enable_all()
        .build()
        .map_err(|e| CliError::fatal(format!("cannot start the runtime: {e}")))?;
    let bound = if args.stdio {
        None
    } else {
        Some(
            rt.block_on(Listeners::bind(listen, admin))
                .map_err(CliError::fatal)?,
        )
    };
    let audit = start_audit(prepared.config(), &loaded.dir, prepared.vault())?;
    protect_children(&loaded.dir, Some(&loaded.path), prepared.config());
    crate::proxy::reload::pin_config(&loaded.path, &loaded.source);
    if !args.stdio && prepared.verifier().key_count() == 0 {
        tracing::warn!(
            "no API keys are configured: every request will be refused (add one with `fentaris auth api-key add USER --generate`)"
        );
    }
    let state = prepared.start(audit, Default::default());
    let proxy = state.proxy().clone();
    proxy.audit().write(
        crate::audit::Record::new("serve.start").detail(serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "config": loaded.path.display().to_string(),
            "configSha256": crate::proxy::reload::digest(loaded.source.as_bytes()),
            "transport": if args.stdio { "stdio" } else { "http" },
        })),
    );
    let files = (loaded.path.clone(), vault_path.clone());
    let result = match bound {
        None => {
            serve_stdio(&rt, &proxy, args.user.unwrap_or_default());
            Ok(())
        }
        Some(bound) => serve_http(&rt, state, bound, args.watch, files),
    };
    proxy.audit().write(crate::audit::Record::new("serve.stop"));
    proxy.audit().close(std::time::Duration::from_secs(5));
    result
}

/// Spinners for upstreams starting, on a terminal only (hidden bars otherwise).
fn start_progress(names: &[String]) -> Vec<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    let multi = std::io::stderr()
        .is_terminal()
        .then(indicatif::MultiProgress::new);
    names
        .iter()
        .map(|name| match &multi {
            Some(m) => {
                let b = m.add(indicatif::ProgressBar::new_spinner());
                b.set_style(
                    indicatif::ProgressStyle::with_template("{spinner} {msg}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                b.enable_steady_tick(std::time::Duration::from_millis(120));
                b.set_message(format!("{name}: starting"));
                b
            }
            None => indicatif::ProgressBar::hidden(),
        })
        .collect()
}

/// The audit log of `autoLog`: chained under the vault's audit key, or a plain hash chain
/// when there is no vault (which `policy check` notes).
fn start_audit(
    config: &crate::config::Config,
    dir: &std::path::Path,
    vault: Option<&Vault>,
) -> Result<crate::audit::AuditLog, CliError> {
    if !config.auto_log {
        return Ok(crate::audit::AuditLog::off());
    }
    let key = match vault {
        Some(v) => crate::audit::ChainKey::Hmac(v.audit_key()),
        None => crate::audit::ChainKey::Sha256,
    };
    let opts = crate::audit::writer::Options::from_config(&config.audit, dir, key);
    let log = crate::audit::AuditLog::start(opts).map_err(CliError::fatal)?;
    if !log.healthy() {
        tracing::error!(
            "the audit log cannot be written: requests will be refused until it can (see the error above)"
        );
    }
    Ok(log)
}

/// `serve --stdio --user U`, like `auth api-key add`: a user declared nowhere (in no group of
/// the config, and owning no key of the vault, as one added with `--new-user` does) is
/// refused with a did-you-mean, since a typo would silently serve the top-level policy only.
/// A config without users is all top-level policy: any name is accepted.
fn check_stdio_user(
    config: &crate::config::Config,
    vault: Option<&Vault>,
    user: &str,
) -> CliResult {
    if user.trim().is_empty() || user.chars().any(char::is_whitespace) {
        return Err(CliError::usage(
            "--user: a user id cannot be empty or contain whitespace",
        ));
    }
    let declared = crate::suggest::config_users(config);
    let has_key = vault.is_some_and(|v| v.envelope.api_keys.iter().any(|k| k.user == user));
    if declared.is_empty() || has_key {
        return Ok(());
    }
    match crate::suggest::unknown_name("user", user, &declared) {
        Some(m) => Err(CliError::usage(format!(
            "--user: {m}\nhelp: name a user of one of the config's groups (the one the client acts as), or add the user to a group"
        ))),
        None => Ok(()),
    }
}

/// One client on stdin/stdout; upstreams start meanwhile (see [`stdio::serve`]).
fn serve_stdio(rt: &tokio::runtime::Runtime, proxy: &Arc<Proxy>, user: String) {
    if !proxy.engine().is_declared_user(&user) {
        tracing::warn!(
            "user `{user}` is not declared in any group; only the top-level policy applies"
        );
    }
    rt.block_on(async {
        stdio::serve(proxy.clone(), &user).await;
        proxy.pool().shutdown().await;
    });
}

/// HTTP until SIGINT or SIGTERM; upstreams start in the background (`/readyz` reports when
/// they are up); SIGHUP (and `--watch`) reload.
fn serve_http(
    rt: &tokio::runtime::Runtime,
    state: http::FrontState,
    bound: Listeners,
    watch: bool,
    (config_path, vault_path): (std::path::PathBuf, std::path::PathBuf),
) -> CliResult {
    rt.block_on(async {
        let proxy = state.proxy().clone();
        let names = eager_servers(proxy.config());
        tokio::spawn(async move {
            // On a terminal, a line per server while they start, then how each went.
            let bars = start_progress(&names);
            connect_eager(&proxy).await;
            let up = proxy.known_capabilities();
            for (name, bar) in names.iter().zip(bars) {
                if up.contains_key(name) {
                    bar.finish_with_message(format!("{name}: started"));
                } else {
                    bar.finish_with_message(format!("{name}: not started (see the log)"));
                }
            }
        });
        let front = Arc::new(http::App::new(state));
        // The vault is always followed (revocations apply without --watch): cli/vault_watch.rs.
        super::vault_watch::spawn(front.clone(), vault_path);
        crate::proxy::reload::spawn_triggers(front.clone(), config_path, watch);
        let serving = Serving::start(front, bound)?;
        let listen = serving.local_addr();
        let admin = match serving.admin_addr() {
            Some(a) => format!("http://{a}/readyz, /metrics"),
            None => "not served".to_string(),
        };
        tracing::info!("listening on http://{listen}/mcp (admin: {admin})");
        eprintln!("fentaris: serving http://{listen}/mcp (admin {admin})");
        shutdown_signal().await;
        tracing::info!("shutting down: draining requests");
        serving.shutdown().await;
        Ok::<_, String>(())
    })
    .map_err(CliError::fatal)
}
