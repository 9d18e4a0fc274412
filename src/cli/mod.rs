//! The `fentaris` command line: clap definitions, dispatch, exit codes.
//!
//! Exit codes: 0 ok, 1 findings or denial, 2 usage error, 3 fatal (unreadable or invalid
//! config, I/O).

mod auth;
pub(crate) mod completions;
mod config;
mod connect;
mod credentials;
mod doctor;
mod init;
mod logs;
mod output;
mod policy;
mod serve;
pub(crate) mod tools;
mod vault;
pub(crate) mod vault_access;
mod vault_watch;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use completions::{completion_scripts, man_pages};

/// Fentaris: the MCP security proxy. Identity, allow-list policy on every MCP capability,
/// secrets injection and audit, in one binary.
#[derive(Debug, Parser)]
#[command(name = "fentaris", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create .fentaris/ with a deny-by-default starter config
    Init(init::InitArgs),
    /// Print the config's JSON Schema, or the resolved config
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Check, explain and test policy
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Run the proxy (streamable HTTP, or --stdio for one client)
    Serve(serve::ServeArgs),
    /// Client API keys
    #[command(subcommand)]
    Auth(auth::AuthCommand),
    /// Upstream secrets in the vault
    #[command(subcommand)]
    Credentials(credentials::CredentialsCommand),
    /// The vault: status, rekey, trust, recipients
    #[command(subcommand)]
    Vault(vault::VaultCommand),
    /// Read the audit trail: tail, summary, verify
    #[command(subcommand)]
    Logs(logs::LogsCommand),
    /// The upstreams' tools, prompts and resources; pin them (lock) and show drift (diff)
    #[command(subcommand)]
    Tools(tools::ToolsCommand),
    /// Point an MCP client (Claude Code, Claude Desktop, Cursor, VS Code) at this Fentaris
    Connect(connect::ConnectArgs),
    /// Print a shell completion script
    Completions(completions::CompletionsArgs),
    /// Check this machine can run the config: ports, upstream commands, Node, vault key,
    /// Landlock
    Doctor(doctor::DoctorArgs),
}

/// The clap command, for completions and man pages.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// A failure with its exit code. The message says what is wrong and what to do.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    pub fn fatal(message: impl Into<String>) -> Self {
        CliError {
            code: 3,
            message: message.into(),
        }
    }
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            code: 2,
            message: message.into(),
        }
    }
    pub fn findings(message: impl Into<String>) -> Self {
        CliError {
            code: 1,
            message: message.into(),
        }
    }
    /// A non-zero exit whose output was already printed.
    pub fn silent(code: u8) -> Self {
        CliError {
            code,
            message: String::new(),
        }
    }
}

impl From<crate::config::ConfigError> for CliError {
    fn from(e: crate::config::ConfigError) -> Self {
        CliError::fatal(e.to_string())
    }
}

pub type CliResult = Result<(), CliError>;

/// Run the CLI with the process arguments and return the exit code.
pub fn main() -> ExitCode {
    // Before any thread starts: FENTARIS_* secrets out of the environment, no ptrace/proc.
    crate::harden::take_reserved_env();
    crate::harden::non_dumpable();
    // `COMPLETE=bash fentaris …`: dynamic completion with names from the config.
    completions::complete_from_env();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.message.is_empty() {
                let mut msg = e.message.clone();
                if !msg.starts_with("error") {
                    msg = format!("error: {msg}");
                }
                // Messages can quote upstream answers or file content: escaped line by line.
                let msg: Vec<_> = msg
                    .split('\n')
                    .map(crate::diagnostics::escape_control)
                    .collect();
                eprintln!("{}", msg.join("\n"));
            }
            ExitCode::from(e.code)
        }
    }
}

/// Run a parsed command.
pub fn run(cli: Cli) -> CliResult {
    let ctx = Context { config: cli.config };
    match cli.command {
        Command::Init(a) => init::run(&ctx, a),
        Command::Config(c) => config::run(&ctx, c),
        Command::Policy(c) => policy::run(&ctx, c),
        Command::Serve(a) => serve::run(&ctx, a),
        Command::Auth(c) => auth::run(&ctx, c),
        Command::Credentials(c) => credentials::run(&ctx, c),
        Command::Vault(c) => vault::run(&ctx, c),
        Command::Logs(c) => logs::run(&ctx, c),
        Command::Tools(c) => tools::run(&ctx, c),
        Command::Connect(a) => connect::run(&ctx, a),
        Command::Completions(a) => completions::run(a),
        Command::Doctor(a) => doctor::run(&ctx, a),
    }
}

/// What every command may need.
pub struct Context {
    pub config: Option<PathBuf>,
}

impl Context {
    /// Find and read the config (with its findings).
    pub fn load(&self) -> Result<crate::config::Loaded, CliError> {
        let cwd = std::env::current_dir()
            .map_err(|e| CliError::fatal(format!("cannot read the working directory: {e}")))?;
        let path = crate::config::discover(
            self.config.as_deref(),
            crate::harden::var("FENTARIS_CONFIG").map(std::ffi::OsString::from),
            &cwd,
        )?;
        Ok(crate::config::load_file(&path)?)
    }

    /// Load a config that must have no errors; findings are printed to stderr otherwise.
    pub fn load_valid(&self) -> Result<(crate::config::Loaded, crate::config::Config), CliError> {
        let loaded = self.load()?;
        match (&loaded.outcome.config, loaded.outcome.has_errors()) {
            (Some(c), false) => {
                let c = c.clone();
                Ok((loaded, c))
            }
            _ => {
                let errors: Vec<_> = loaded
                    .outcome
                    .diagnostics
                    .iter()
                    .filter(|d| d.severity == crate::diagnostics::Severity::Error)
                    .cloned()
                    .collect();
                let file = display_path(&loaded.path);
                let report = crate::diagnostics::Report {
                    file: &file,
                    source: &loaded.source,
                    diagnostics: &errors,
                };
                eprint!(
                    "{}",
                    crate::diagnostics::render_human(&report, output::stderr_color())
                );
                Err(CliError::fatal(format!(
                    "{file} has errors; fix them first (`fentaris policy check` lists every finding)"
                )))
            }
        }
    }
}

/// A path as shown to the user: relative to the working directory when below it.
pub fn display_path(path: &Path) -> String {
    if let Ok(cwd) = std::env::current_dir() {
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            cwd.join(path)
        };
        if let Ok(rel) = abs.strip_prefix(&cwd) {
            return rel.display().to_string();
        }
    }
    path.display().to_string()
}
