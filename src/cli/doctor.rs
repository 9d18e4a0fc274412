//! `fentaris doctor`: is this machine ready to run this config? Each check says what it
//! found and what to do: the config, the listen ports, upstream commands on PATH, Node for
//! `npx` upstreams, the vault key, and Landlock for the stdio sandbox.
//!
//! Exit status: 0 when nothing failed (warnings allowed), 1 when a check failed, 3 when the
//! config cannot be read.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::{CliError, CliResult, Context, display_path, output};
use crate::config::{Config, StdioTransport, Transport};

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    #[arg(long, value_enum, default_value_t)]
    pub format: super::auth::ListFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Warn,
    Fail,
}

struct Check {
    name: String,
    status: Status,
    detail: String,
}

fn check(name: impl Into<String>, status: Status, detail: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        status,
        detail: detail.into(),
    }
}

/// Every stdio server of the config, with its JSON pointer.
pub(crate) fn stdio_servers(config: &Config) -> Vec<(String, &str, &StdioTransport)> {
    let top = config
        .servers
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("/servers/{i}"), s));
    let grouped = config.groups.iter().enumerate().flat_map(|(g, group)| {
        group
            .servers
            .iter()
            .enumerate()
            .map(move |(i, s)| (format!("/groups/{g}/servers/{i}"), s))
    });
    top.chain(grouped)
        .filter_map(|(p, s)| match &s.transport {
            Transport::Stdio(t) => Some((p, s.name.as_str(), t)),
            _ => None,
        })
        .collect()
}

/// Where `command` would be found: a path (absolute, or relative to the server's working
/// folder) or a name searched on `PATH`. `None` when it is not there or not executable.
pub(crate) fn find_command(command: &str, cwd: &Path) -> Option<PathBuf> {
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            }
            #[cfg(not(unix))]
            {
                m.is_file()
            }
        })
    };
    if command.contains('/') {
        let p = Path::new(command);
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            cwd.join(p)
        };
        return executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(command))
        .find(|p| executable(p))
}

/// The folder a stdio server starts in: its `cwd` under the config folder, else the config
/// folder's parent (the project).
pub(crate) fn server_dir(config_dir: &Path, t: &StdioTransport) -> PathBuf {
    match &t.cwd {
        Some(c) => config_dir.join(c),
        None => config_dir.to_path_buf(),
    }
}

/// FNT206 findings for `policy check`: stdio commands this machine cannot start.
pub(crate) fn command_findings(
    config: &Config,
    config_dir: &Path,
) -> Vec<crate::diagnostics::Diagnostic> {
    stdio_servers(config)
        .into_iter()
        .filter(|(_, _, t)| find_command(&t.command, &server_dir(config_dir, t)).is_none())
        .map(|(p, name, t)| {
            crate::diagnostics::Diagnostic::new(
                crate::diagnostics::codes::COMMAND_NOT_FOUND,
                format!("{p}/transport/stdio/command"),
                format!(
                    "server `{name}`: command `{}` is not found on PATH here, so it cannot start",
                    crate::diagnostics::escape_control(&t.command)
                ),
            )
            .help(install_hint(&t.command))
        })
        .collect()
}

fn install_hint(command: &str) -> String {
    match command {
        "npx" | "node" | "npm" => {
            "install Node.js 18 or later (https://nodejs.org), or put its bin folder on PATH".into()
        }
        "uvx" | "uv" => "install uv (https://docs.astral.sh/uv/), or put it on PATH".into(),
        "python" | "python3" => "install Python 3, or give the interpreter's absolute path".into(),
        "docker" => "install Docker, or put it on PATH".into(),
        _ => "install it, put it on PATH, or give its absolute path in `command`".into(),
    }
}

/// The major version of `node --version` (`v22.3.0` -> 22).
fn node_major() -> Option<(u32, String)> {
    let out = std::process::Command::new("node")
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let major = v.strip_prefix('v')?.split('.').next()?.parse().ok()?;
    Some((major, v))
}

/// The oldest Node the MCP SDK's servers run on.
const MIN_NODE: u32 = 18;

fn port_check(what: &str, addr: &str) -> Check {
    match addr.parse::<std::net::SocketAddr>() {
        Err(e) => check(
            format!("{what} {addr}"),
            Status::Fail,
            format!("not an address: {e}"),
        ),
        Ok(a) => match std::net::TcpListener::bind(a) {
            Ok(_) => check(format!("{what} {a}"), Status::Ok, "free"),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => check(
                format!("{what} {a}"),
                Status::Fail,
                format!("in use (is `fentaris serve` already running?); free it or set `{what}`"),
            ),
            Err(e) => check(
                format!("{what} {a}"),
                Status::Fail,
                format!("cannot listen: {e}"),
            ),
        },
    }
}

pub fn run(ctx: &Context, args: DoctorArgs) -> CliResult {
    let loaded = ctx.load()?;
    let file = display_path(&loaded.path);
    let mut checks = Vec::new();
    let errors = loaded
        .outcome
        .diagnostics
        .iter()
        .filter(|d| d.severity == crate::diagnostics::Severity::Error)
        .count();
    checks.push(match (&loaded.outcome.config, errors) {
        (Some(_), 0) => check("config", Status::Ok, format!("{file} is valid")),
        _ => check(
            "config",
            Status::Fail,
            format!("{file} has {errors} error(s): run `fentaris policy check`"),
        ),
    });
    if let Some(config) = &loaded.outcome.config {
        checks.push(port_check("listen", &config.listen));
        checks.push(port_check("adminListen", &config.admin_listen));
        let stdio = stdio_servers(config);
        let mut npx = false;
        for (_, name, t) in &stdio {
            npx |= matches!(t.command.as_str(), "npx" | "node" | "npm");
            let dir = server_dir(&loaded.dir, t);
            checks.push(match find_command(&t.command, &dir) {
                Some(p) => check(
                    format!("server {name}"),
                    Status::Ok,
                    format!("`{}` is {}", t.command, p.display()),
                ),
                None => check(
                    format!("server {name}"),
                    Status::Fail,
                    format!(
                        "`{}` is not found on PATH: {}",
                        crate::diagnostics::escape_control(&t.command),
                        install_hint(&t.command)
                    ),
                ),
            });
        }
        if npx {
            checks.push(match node_major() {
                Some((m, v)) if m >= MIN_NODE => check("node", Status::Ok, v),
                Some((_, v)) => check(
                    "node",
                    Status::Fail,
                    format!(
                        "{v} is too old for npm MCP servers: install Node.js {MIN_NODE} or later"
                    ),
                ),
                None => check(
                    "node",
                    Status::Fail,
                    format!(
                        "`node` does not run here; npx upstreams need Node.js {MIN_NODE} or later"
                    ),
                ),
            });
        }
    }
    let vault_path = loaded.dir.join(crate::vault::VAULT_FILE);
    checks.push(match crate::vault::read_envelope(&vault_path) {
        Err(crate::vault::VaultError::Missing { .. }) => check(
            "vault",
            Status::Ok,
            "no vault yet (created by `fentaris init` or the first `credentials set`)",
        ),
        Err(e) => check("vault", Status::Fail, e.to_string()),
        Ok(env) => {
            let lookup = crate::vault::KeyLookup::from_env();
            match crate::vault::keys::find_key(&lookup, &env.vault_id) {
                Ok(k) => check(
                    "vault key",
                    Status::Ok,
                    format!("found: {}", k.source.describe()),
                ),
                Err(e) => check("vault key", Status::Fail, e.to_string()),
            }
        }
    });
    checks.push(match crate::harden::landlock_abi() {
        Some(abi) => check(
            "landlock",
            Status::Ok,
            format!("ABI {abi}: stdio upstreams cannot read the vault, its keys or the audit log"),
        ),
        None => check(
            "landlock",
            Status::Warn,
            "not available (kernel before 5.13, or disabled): stdio upstreams run without the file sandbox",
        ),
    });
    match args.format {
        super::auth::ListFormat::Json => output::print_json(&json!(
            checks
                .iter()
                .map(|c| json!({ "check": c.name, "status": c.status, "detail": c.detail }))
                .collect::<Vec<_>>()
        )),
        super::auth::ListFormat::Table => {
            let mut out = String::new();
            for c in &checks {
                let tag = match c.status {
                    Status::Ok => "ok  ",
                    Status::Warn => "warn",
                    Status::Fail => "FAIL",
                };
                out.push_str(&format!(
                    "{tag}  {:<22} {}\n",
                    crate::diagnostics::escape_control(&c.name),
                    crate::diagnostics::escape_control(&c.detail)
                ));
            }
            output::print(&out);
        }
    }
    if checks.iter().any(|c| c.status == Status::Fail) {
        return Err(CliError::silent(1));
    }
    Ok(())
}
