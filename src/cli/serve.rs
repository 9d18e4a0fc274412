//! `fentaris serve`: run the proxy over streamable HTTP (default) or stdio.

use std::net::SocketAddr;
use std::sync::Arc;

use super::vault_access::{key_lookup, vault_error};
use super::{CliError, CliResult, Context};
use crate::config::vault_references;
use crate::identity::KeyVerifier;
use crate::proxy::{Proxy, connect_eager, eager_servers, http, serve_http_bound, stdio};
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
    let listen = match args.listen {
        Some(l) => l,
        None => config
            .listen
            .parse()
            .map_err(|e| CliError::fatal(format!("listen address `{}`: {e}", config.listen)))?,
    };
    let admin: SocketAddr = config
        .admin_listen
        .parse()
        .map_err(|e| CliError::fatal(format!("adminListen `{}`: {e}", config.admin_listen)))?;
    let env = |k: &str| std::env::var(k).ok();
    let (verifier, warnings) = KeyVerifier::build(&config, vault.as_ref(), &env);
    for w in warnings {
        tracing::warn!("{w}");
    }
    // Trusted identity headers: the shared secret must resolve, or we do not start.
    let trusted =
        crate::proxy::reload::trusted_of(&config, vault.as_ref(), &env).map_err(CliError::fatal)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.map_or_else(default_threads, usize::from))
        .enable_all()
        .build()
        .map_err(|e| CliError::fatal(format!("cannot start the runtime: {e}")))?;
    if args.stdio && config.auto_log && config.audit.sink != crate::config::AuditSink::File {
        return Err(CliError::usage(
            "audit.sink writes to stdout, which `serve --stdio` uses for MCP messages\nhelp: set \"audit\": { \"sink\": \"file\" } for stdio clients",
        ));
    }
    // Everything that can still fail comes before the audit log is opened, so a start that
    // fails (port in use, unreadable tools.lock.json) writes nothing into the live log.
    let pins = crate::proxy::pinning::Pins::load(&loaded.dir)
        .map_err(|e| CliError::fatal(e.to_string()))?;
    let bound = if args.stdio {
        None
    } else {
        Some(
            rt.block_on(crate::proxy::bind_http(listen, admin))
                .map_err(CliError::fatal)?,
        )
    };
    let audit = start_audit(&config, &loaded.dir, vault.as_ref())?;
    // Children must not read what protects the secrets: key files, the vault, the audit log.
    let mut denied = vec![vault_path.clone()];
    denied.extend(crate::vault::keys::default_keys_dir());
    denied.extend(crate::harden::var("FENTARIS_VAULT_KEY_FILE").map(std::path::PathBuf::from));
    if config.auto_log
        && let Some(dir) = loaded.dir.join(&config.audit.path).parent()
    {
        denied.push(dir.to_path_buf());
        denied.push(crate::audit::checkpoint::path_for(&loaded.dir));
    }
    crate::harden::deny_to_children(denied);
    sandbox_children(&loaded, &config);
    crate::proxy::reload::pin_config(&loaded.path, &loaded.source);
    let mut proxy = Proxy::new(
        config,
        loaded.dir.clone(),
        vault,
        Box::new(|k: &str| std::env::var(k).ok()),
    );
    proxy.audit = Arc::new(audit);
    // Tool pinning: a lock file that cannot be read refused the start above (fail closed).
    proxy.pins = pins;
    let proxy = proxy.shared();
    proxy.audit.write(
        crate::audit::Record::new("serve.start").detail(serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "config": loaded.path.display().to_string(),
            "configSha256": crate::proxy::reload::digest(loaded.source.as_bytes()),
            "transport": if args.stdio { "stdio" } else { "http" },
        })),
    );
    let files = (loaded.path.clone(), vault_path.clone());
    let result = serve(&rt, &proxy, args, verifier, trusted, bound, files);
    proxy.audit.write(crate::audit::Record::new("serve.stop"));
    proxy.audit.close(std::time::Duration::from_secs(5));
    result
}

/// Children must not write (or signal, or ptrace) what keeps Fentaris honest: its folder
/// (config, vault, pins, tools lock, logs), the key folder or key file, the audit log's
/// folder. Logs which protections are in force (a warning when one is missing).
fn sandbox_children(loaded: &crate::config::Loaded, config: &crate::config::Config) {
    use crate::harden::Cover;
    let mut covers = Vec::new();
    let mut missing = Vec::new();
    let dir = &loaded.dir;
    if dir.file_name().is_some_and(|n| n == ".fentaris") {
        // Hidden, not only read-only: a child has no business reading it either, and a
        // folder-level cover holds when the files in it are replaced by rename.
        covers.push(Cover::Hidden(dir.clone()));
    } else {
        // A config outside a `.fentaris` folder: its folder may be the project itself, so
        // only the files are covered (new files beside them are not prevented).
        covers.push(Cover::ReadOnly(loaded.path.clone()));
        for f in [crate::vault::VAULT_FILE, crate::pinning::LOCK_FILE] {
            let p = dir.join(f);
            if p.exists() {
                covers.push(Cover::ReadOnly(p));
            }
        }
        missing.push(format!(
            "new files beside {} (keep the config in a .fentaris folder)",
            loaded.path.display()
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
        covers.push(Cover::Blocked(std::path::PathBuf::from(f)));
    }
    let report = crate::harden::protect_from_children(covers, missing);
    match report.summary() {
        (true, line) => tracing::warn!("{line}"),
        (false, line) => tracing::info!("{line}"),
    }
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

#[allow(clippy::too_many_arguments)]
fn serve(
    rt: &tokio::runtime::Runtime,
    proxy: &Arc<Proxy>,
    args: ServeArgs,
    verifier: KeyVerifier,
    trusted: Option<http::Trusted>,
    bound: Option<(tokio::net::TcpListener, tokio::net::TcpListener)>,
    (config_path, vault_path): (std::path::PathBuf, std::path::PathBuf),
) -> CliResult {
    let Some(bound) = bound.filter(|_| !args.stdio) else {
        let user = args.user.unwrap_or_default();
        if !proxy.engine.is_declared_user(&user) {
            tracing::warn!(
                "user `{user}` is not declared in any group; only the top-level policy applies"
            );
        }
        rt.block_on(async {
            connect_eager(proxy).await;
            stdio::serve(proxy.clone(), &user).await;
            proxy.pool.shutdown().await;
        });
        return Ok(());
    };
    if verifier.key_count() == 0 {
        tracing::warn!(
            "no API keys are configured: every request will be refused (add one with `fentaris auth api-key add USER --generate`)"
        );
    }
    rt.block_on(async {
        // Upstreams start in the background; /readyz reports when they are up.
        let eager = eager_servers(&proxy.config);
        let p = proxy.clone();
        let names = eager.clone();
        tokio::spawn(async move {
            // On a terminal, a line per server while they start, then how each went.
            let bars = start_progress(&names);
            connect_eager(&p).await;
            let up = p.known_capabilities();
            for (name, bar) in names.iter().zip(bars) {
                if up.contains_key(name) {
                    bar.finish_with_message(format!("{name}: started"));
                } else {
                    bar.finish_with_message(format!("{name}: not started (see the log)"));
                }
            }
        });
        let app = Arc::new(http::App::new(http::FrontState::new(
            proxy.clone(),
            verifier,
            trusted,
            eager,
        )));
        // The vault is always followed (revocations apply without --watch): cli/vault_watch.rs.
        super::vault_watch::spawn(app.clone(), vault_path.clone(), args.watch);
        crate::proxy::reload::spawn_triggers(app.clone(), config_path, vault_path, args.watch);
        serve_http_bound(app, bound).await
    })
    .map_err(CliError::fatal)
}
