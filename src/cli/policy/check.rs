//! `fentaris policy check`.

use crate::cli::vault_access::key_lookup;
use crate::cli::{CliError, CliResult, Context, display_path, output};
use crate::config::{Config, Loaded, check_vault_entries};
use crate::diagnostics::{Diagnostic, codes};
use crate::diagnostics::{Report, Summary, render_github, render_human, render_json, render_sarif};
use crate::vault::{OpenOptions, Vault, VaultError, read_envelope};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckFormat {
    /// Source line with a caret (colour on a TTY unless NO_COLOR)
    #[default]
    Human,
    Json,
    /// SARIF 2.1.0 for GitHub code scanning
    Sarif,
    /// GitHub Actions annotations (::error file=…,line=…::)
    Github,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub format: CheckFormat,
    /// Fail (exit 1) on security warnings and warnings too
    #[arg(long)]
    pub deny_warnings: bool,
    /// Also start the upstreams and report tools and prompts that drifted from tools.lock.json (FNT104)
    #[arg(long)]
    pub online: bool,
}

pub fn run(ctx: &Context, args: CheckArgs) -> CliResult {
    let loaded = ctx.load()?;
    let file = display_path(&loaded.path);
    let mut diags = loaded.outcome.diagnostics.clone();
    if let Some(config) = &loaded.outcome.config {
        diags.extend(vault_findings(config, &loaded));
        if !loaded.outcome.has_errors() {
            diags.extend(connection_findings(config, &loaded));
            diags.extend(replica_findings(config, &loaded));
            let mut found = crate::cli::doctor::command_findings(config, &loaded.dir);
            for d in &mut found {
                d.span = loaded.outcome.spans.value_span(&d.pointer);
            }
            diags.extend(found);
        }
    }
    if args.online && !loaded.outcome.has_errors() {
        diags.extend(online_findings(ctx, &loaded)?);
    }
    let diags = &diags;
    let report = Report {
        file: &file,
        source: &loaded.source,
        diagnostics: diags,
    };
    let text = match args.format {
        CheckFormat::Human => render_human(&report, output::stdout_color()),
        CheckFormat::Json => render_json(&report) + "\n",
        CheckFormat::Sarif => render_sarif(&report) + "\n",
        CheckFormat::Github => render_github(&report),
    };
    output::print(&text);
    let summary = Summary::of(diags);
    // GitHub annotations: a printed `::error` (security warnings are errors there) fails the
    // step, so the check and the annotations agree.
    let github_error = args.format == CheckFormat::Github && summary.security_warnings > 0;
    if summary.fails(args.deny_warnings) || github_error {
        return Err(CliError::silent(1));
    }
    Ok(())
}

/// Vault findings: entries named by `{"vault": …}` sources must exist (checked without a
/// key); with a key, the vault must also verify.
fn vault_findings(config: &Config, loaded: &Loaded) -> Vec<Diagnostic> {
    let path = loaded.dir.join(crate::vault::VAULT_FILE);
    let shown = display_path(&path);
    let mut out = match read_envelope(&path) {
        Ok(env) => {
            let names = env.entries.keys().cloned().collect();
            let mut d = check_vault_entries(config, Some(&names));
            if let Some(max) = config
                .identity
                .max_key_age
                .as_deref()
                .and_then(|a| crate::config::max_key_age(a).ok())
            {
                d.extend(crate::config::old_secret_findings(
                    max,
                    &env,
                    std::time::SystemTime::now(),
                ));
            }
            match Vault::open(&path, &key_lookup(), OpenOptions::default()) {
                Ok(_) => {}
                Err(VaultError::NoKey { .. } | VaultError::KeyLocked { .. }) => d.push(
                    Diagnostic::new(codes::VAULT_UNVERIFIED, "", format!("{shown}: entry names checked; integrity not verified (no vault key here)"))
                        .help("set FENTARIS_VAULT_KEY to verify the vault's MAC too"),
                ),
                Err(e) => d.push(Diagnostic::new(codes::VAULT_INVALID, "", e.to_string())),
            }
            d
        }
        Err(VaultError::Missing { .. }) => {
            let mut d = check_vault_entries(config, None);
            if config.auto_log {
                d.push(
                    Diagnostic::new(codes::AUDIT_HASH_CHAIN, "/autoLog", "the audit log is chained with plain SHA-256: there is no vault to key an HMAC chain")
                        .help("create the vault (`fentaris init`, or `fentaris credentials set`/`auth api-key add`) so audit lines are chained under its key"),
                );
            }
            d
        }
        Err(e) => vec![Diagnostic::new(codes::VAULT_INVALID, "", e.to_string())],
    };
    for d in &mut out {
        if d.span.is_none() && !d.pointer.is_empty() {
            d.span = loaded.outcome.spans.value_span(&d.pointer);
        }
    }
    out
}

/// FNT093: stdio servers that get a connection per session because some policy may let them
/// reach a client (sampling, elicitation, roots, log lines).
fn connection_findings(config: &Config, loaded: &Loaded) -> Vec<Diagnostic> {
    let (engine, _) = crate::policy::Engine::compile(config);
    let declared = config
        .servers
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("/servers/{i}"), s))
        .chain(config.groups.iter().enumerate().flat_map(|(g, group)| {
            group
                .servers
                .iter()
                .enumerate()
                .map(move |(i, s)| (format!("/groups/{g}/servers/{i}"), s))
        }));
    declared
        .filter(|(_, s)| crate::proxy::pool::isolated_by_default(&engine, s))
        .map(|(pointer, s)| {
            let mut d = Diagnostic::new(
                codes::PER_SESSION_CONNECTIONS,
                format!("{pointer}/name"),
                format!(
                    "stdio server `{}` gets one connection (one child process) per session: a policy may let it reach clients (sampling, elicitation, roots or log lines), and a shared stdio connection cannot tell which client a message is for",
                    s.name
                ),
            )
            .help("to share one child, allow none of sampling:createMessage, elicitation:create, roots:list and logging:setLevel on it, or serve it over streamable HTTP");
            d.span = loaded.outcome.spans.value_span(&d.pointer);
            d
        })
        .collect()
}

/// FNT095: a listener other machines can reach, without a `cursorKey` shared by replicas.
fn replica_findings(config: &Config, loaded: &Loaded) -> Vec<Diagnostic> {
    let reachable = config
        .listen
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| !a.ip().is_loopback());
    if !reachable || config.cursor_key.is_some() {
        return Vec::new();
    }
    let mut d = Diagnostic::new(
        codes::ONE_REPLICA_SESSIONS,
        "/listen",
        "without `cursorKey`, session ids and list cursors are sealed under a random key per process: they work only on the replica that issued them",
    )
    .help("to run several replicas behind a load balancer without sticky sessions, set `cursorKey` to the same credential source on every replica (e.g. { \"vault\": \"session-key\" }); one replica needs nothing");
    d.span = loaded.outcome.spans.value_span(&d.pointer);
    vec![d]
}

/// `--online`: connect to every upstream and compare with `tools.lock.json` (FNT104).
fn online_findings(ctx: &Context, loaded: &Loaded) -> Result<Vec<Diagnostic>, CliError> {
    let lock =
        crate::pinning::ToolLock::load(&loaded.dir).map_err(|e| CliError::fatal(e.to_string()))?;
    let Some(lock) = lock else {
        eprintln!(
            "note: no {} to compare with: `fentaris tools lock` creates it",
            display_path(&crate::pinning::ToolLock::path(&loaded.dir))
        );
        return Ok(Vec::new());
    };
    let (_, proxy) = crate::cli::tools::build_proxy(ctx)?;
    let (pins, failed) = crate::cli::tools::current_pins(&proxy)?;
    for f in &failed {
        eprintln!(
            "warning: not compared with the lock: {}",
            crate::diagnostics::escape_control(f)
        );
    }
    let config = &proxy.config();
    let pointer_of = |server: &str| {
        if let Some(i) = config.servers.iter().position(|s| s.name == server) {
            return format!("/servers/{i}/name");
        }
        for (gi, g) in config.groups.iter().enumerate() {
            if let Some(i) = g.servers.iter().position(|s| s.name == server) {
                return format!("/groups/{gi}/servers/{i}/name");
            }
        }
        String::new()
    };
    let changes = crate::pinning::compare(&lock, &pins);
    let mut out = crate::pinning::drift_findings(&changes, &pointer_of);
    for d in &mut out {
        if d.span.is_none() && !d.pointer.is_empty() {
            d.span = loaded.outcome.spans.value_span(&d.pointer);
        }
    }
    Ok(out)
}
