//! `fentaris connect CLIENT`: print (or merge into the client's config file) the entry that
//! points an MCP client at this Fentaris.
//!
//! Client config formats (checked against each client's documentation):
//!
//! - Claude Code: project file `.mcp.json`, `{"mcpServers": {NAME: {"type": "http", "url",
//!   "headers"}}}`; `${VAR}` (and `${VAR:-default}`) is expanded from the environment in
//!   `command`, `args`, `env`, `url` and `headers`
//!   (<https://code.claude.com/docs/en/mcp>, "Environment variable expansion in .mcp.json").
//! - Cursor: project file `.cursor/mcp.json` (global `~/.cursor/mcp.json`), `{"mcpServers":
//!   {NAME: {"url", "headers"}}}`; values may use `${env:NAME}` (<https://cursor.com/docs/mcp>).
//! - VS Code: workspace file `.vscode/mcp.json`, `{"servers": {NAME: {"type": "http", "url",
//!   "headers"}}, "inputs": [...]}`. The key is an input variable, `${input:fentaris-api-key}`
//!   with a `promptString` input (`password: true`): VS Code asks once and keeps it in its
//!   secret storage (<https://code.visualstudio.com/docs/copilot/reference/mcp-configuration>,
//!   "Input variables"). `${env:NAME}` is not used: it is not substituted in the headers of
//!   HTTP servers (microsoft/vscode issue 245237).
//! - Claude Desktop: `claude_desktop_config.json` in the per-OS app folder (macOS
//!   `~/Library/Application Support/Claude/`, Windows `%APPDATA%\Claude\`; on Linux, where
//!   there is no official build, `$XDG_CONFIG_HOME/Claude/`), `{"mcpServers": {NAME:
//!   {"command", "args", "env"}}}`. Its config file declares only local (stdio) servers, with
//!   no headers, so the entry runs `fentaris serve --stdio --user U --config ABS`
//!   (<https://modelcontextprotocol.io/quickstart/user>).
//!
//! The API key is never written unless `--embed-key` is given; it is then read from stdin.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::vault_access::confirm;
use super::{CliError, CliResult, Context, display_path, output};

/// The environment variable the snippets reference for the API key.
pub const KEY_VAR: &str = "FENTARIS_API_KEY";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Client {
    ClaudeCode,
    ClaudeDesktop,
    Cursor,
    Vscode,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ConnectFormat {
    /// The snippet, and where it goes
    #[default]
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// The client to configure
    #[arg(value_enum)]
    pub client: Client,
    /// The user the client acts as (required for claude-desktop, which starts `serve --stdio`)
    #[arg(long, value_name = "U", add = clap_complete::ArgValueCandidates::new(crate::cli::completions::complete_users))]
    pub user: Option<String>,
    /// The entry's name in the client's config
    #[arg(long, value_name = "NAME", default_value = "fentaris")]
    pub name: String,
    /// Merge the entry into the client's config file (other entries are kept; <file>.bak first)
    #[arg(long)]
    pub write: bool,
    /// Write without asking
    #[arg(long)]
    pub yes: bool,
    /// Put the API key itself in the entry (read from stdin; it is then stored in plain text)
    #[arg(long)]
    pub embed_key: bool,
    #[arg(long, value_enum, default_value_t)]
    pub format: ConnectFormat,
}

/// The URL clients use: the config's `listen`, with a wildcard address replaced by loopback.
pub fn mcp_url(listen: &str) -> String {
    let host_port = match listen.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => format!("127.0.0.1:{}", a.port()),
        Ok(a) => a.to_string(),
        Err(_) => listen.to_string(),
    };
    format!("http://{host_port}/mcp")
}

impl Client {
    fn label(self) -> &'static str {
        match self {
            Client::ClaudeCode => "Claude Code",
            Client::ClaudeDesktop => "Claude Desktop",
            Client::Cursor => "Cursor",
            Client::Vscode => "VS Code",
        }
    }
    /// The key of the server map in the client's file.
    fn root_key(self) -> &'static str {
        match self {
            Client::Vscode => "servers",
            _ => "mcpServers",
        }
    }
    /// How the client spells a reference to the key: an environment variable, or for VS
    /// Code an input it prompts for.
    fn env_ref(self, var: &str) -> String {
        match self {
            Client::ClaudeCode => format!("${{{var}}}"),
            Client::Vscode => format!("${{input:{VSCODE_INPUT}}}"),
            _ => format!("${{env:{var}}}"),
        }
    }
}

/// The id of VS Code's input variable for the key.
pub const VSCODE_INPUT: &str = "fentaris-api-key";

/// VS Code's input declaration: a password prompt, kept in VS Code's secret storage.
fn vscode_input() -> Value {
    json!({
        "type": "promptString",
        "id": VSCODE_INPUT,
        "description": "Fentaris API key (fentaris auth api-key add USER --generate)",
        "password": true,
    })
}

/// The client's config file: project-level for Claude Code, Cursor and VS Code (`project` is
/// the folder holding `.fentaris/`), per user for Claude Desktop.
pub fn config_file(client: Client, project: &Path) -> Result<PathBuf, CliError> {
    Ok(match client {
        Client::ClaudeCode => project.join(".mcp.json"),
        Client::Cursor => project.join(".cursor/mcp.json"),
        Client::Vscode => project.join(".vscode/mcp.json"),
        Client::ClaudeDesktop => directories::BaseDirs::new()
            .ok_or_else(|| {
                CliError::fatal("cannot find your home folder to locate Claude Desktop's config")
            })?
            .config_dir()
            .join("Claude")
            .join("claude_desktop_config.json"),
    })
}

/// The entry for the client (`key`: the embedded key, else an environment reference).
fn entry(
    client: Client,
    url: &str,
    header: &str,
    key: Option<&str>,
    stdio: Option<(&str, &str, &str)>,
) -> Value {
    let value = key.map_or_else(|| client.env_ref(KEY_VAR), str::to_string);
    match client {
        Client::ClaudeCode | Client::Vscode => json!({
            "type": "http",
            "url": url,
            "headers": { header: value },
        }),
        Client::Cursor => json!({
            "url": url,
            "headers": { header: value },
        }),
        Client::ClaudeDesktop => {
            let (exe, user, config) = stdio.unwrap_or_default();
            json!({
                "command": exe,
                "args": ["serve", "--stdio", "--user", user, "--config", config],
            })
        }
    }
}

fn read_key() -> Result<String, CliError> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| CliError::fatal(format!("cannot read the API key from stdin: {e}")))?;
    let key = s.trim().to_string();
    if key.is_empty() {
        return Err(CliError::usage(
            "--embed-key reads the API key from stdin, and stdin was empty\nhelp: printf '%s' \"$KEY\" | fentaris connect … --embed-key",
        ));
    }
    Ok(key)
}

pub fn run(ctx: &Context, args: ConnectArgs) -> CliResult {
    let (loaded, config) = ctx.load_valid()?;
    let config_path = std::path::absolute(&loaded.path)
        .map_err(|e| CliError::fatal(format!("cannot resolve {}: {e}", loaded.path.display())))?;
    // The project folder: the one holding `.fentaris/`.
    let project = config_path
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let client = args.client;
    let url = mcp_url(&config.listen);
    let header = config.identity.api_key_header.clone();
    let exe;
    let cfg_text = config_path.display().to_string();
    let stdio = if client == Client::ClaudeDesktop {
        if args.embed_key {
            return Err(CliError::usage(
                "claude-desktop starts `fentaris serve --stdio`, which needs no API key: drop --embed-key",
            ));
        }
        let Some(user) = args.user.as_deref() else {
            return Err(CliError::usage(
                "claude-desktop starts `fentaris serve --stdio --user U`: give the user with --user U",
            ));
        };
        exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "fentaris".into());
        Some((exe.as_str(), user, cfg_text.as_str()))
    } else {
        None
    };
    let key = if args.embed_key {
        let k = read_key()?;
        eprintln!(
            "warning: the API key is put in the client's config in plain text; keep that file private and out of version control (without --embed-key the entry references ${KEY_VAR})"
        );
        Some(k)
    } else {
        None
    };
    let item = entry(client, &url, &header, key.as_deref(), stdio);
    let file = config_file(client, &project)?;
    if let Some(u) = args.user.as_deref()
        && let Some(m) =
            crate::suggest::unknown_name("user", u, &crate::suggest::config_users(&config))
    {
        eprintln!("warning: {m}; only the top-level policy applies to it");
    }
    // VS Code prompts for the key through an input variable declared beside the server.
    let input = (client == Client::Vscode && key.is_none()).then(vscode_input);
    let mut snippet = json!({ client.root_key(): { &args.name: item.clone() } });
    if let Some(i) = &input {
        snippet["inputs"] = json!([i]);
    }
    if !args.write {
        match args.format {
            ConnectFormat::Json => output::print_json(&json!({
                "client": client.label(),
                "file": file.display().to_string(),
                "snippet": snippet,
                "env": if stdio.is_none() && key.is_none() && input.is_none() { Some(KEY_VAR) } else { None },
            })),
            ConnectFormat::Text => {
                output::print(&format!(
                    "{}\n",
                    serde_json::to_string_pretty(&snippet).unwrap_or_default()
                ));
                eprintln!(
                    "Add this to {} (or run again with --write).",
                    display_path(&file)
                );
                if input.is_some() {
                    eprintln!(
                        "VS Code asks for the key (input `{VSCODE_INPUT}`) when it first starts the server, and keeps it in its secret storage."
                    );
                } else if stdio.is_none() && key.is_none() {
                    eprintln!(
                        "{} sends ${KEY_VAR} as `{header}`: set it to your key (`fentaris auth api-key add USER --generate`) where {} starts.",
                        client.label(),
                        client.label()
                    );
                }
            }
        }
        return Ok(());
    }
    write(
        &file,
        client,
        &args.name,
        item,
        input,
        args.yes,
        args.format,
    )
}

/// Merge `item` into the client's file: keep everything else, back up first, write atomically.
fn write(
    file: &Path,
    client: Client,
    name: &str,
    item: Value,
    input: Option<Value>,
    yes: bool,
    format: ConnectFormat,
) -> CliResult {
    let shown = display_path(file);
    let existing = match std::fs::read_to_string(file) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(CliError::fatal(format!("cannot read {shown}: {e}"))),
    };
    let mut doc: Value = match &existing {
        None => json!({}),
        Some(t) if t.trim().is_empty() => json!({}),
        Some(t) => serde_json::from_str(t).map_err(|e| {
            CliError::fatal(format!(
                "{shown} is not valid JSON ({e}); nothing was changed\nhelp: fix the file (comments are not supported here), or add the entry by hand: `fentaris connect` without --write prints it"
            ))
        })?,
    };
    let Some(root) = doc.as_object_mut() else {
        return Err(CliError::fatal(format!(
            "{shown} does not hold a JSON object; nothing was changed"
        )));
    };
    let servers = root
        .entry(client.root_key())
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(servers) = servers.as_object_mut() else {
        return Err(CliError::fatal(format!(
            "`{}` in {shown} is not an object; nothing was changed",
            client.root_key()
        )));
    };
    let replaces = servers.get(name).is_some_and(|old| *old != item);
    let same_entry = servers.get(name) == Some(&item);
    servers.insert(name.to_string(), item.clone());
    // VS Code: the input the entry refers to, added unless one with its id is there.
    let mut adds_input = false;
    if let Some(i) = input {
        let inputs = root.entry("inputs").or_insert_with(|| json!([]));
        let Some(list) = inputs.as_array_mut() else {
            return Err(CliError::fatal(format!(
                "`inputs` in {shown} is not an array; nothing was changed"
            )));
        };
        if !list.iter().any(|x| x.get("id") == i.get("id")) {
            list.push(i);
            adds_input = true;
        }
    }
    if same_entry && !adds_input {
        eprintln!("{shown} already has this `{name}` entry; nothing to do");
        return Ok(());
    }
    // Show what is about to be written before asking.
    if format == ConnectFormat::Text {
        eprintln!(
            "{}",
            serde_json::to_string_pretty(&json!({ client.root_key(): { name: item } }))
                .unwrap_or_default()
        );
    }
    let question = if replaces {
        format!("Replace the `{name}` entry in {shown} with the one above?")
    } else {
        format!("Add the `{name}` entry above to {shown}?")
    };
    confirm(&question, yes)?;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::fatal(format!("cannot create {}: {e}", dir.display())))?;
    }
    let backup = match &existing {
        Some(t) => {
            let mut b = file.as_os_str().to_owned();
            b.push(".bak");
            let b = PathBuf::from(b);
            std::fs::write(&b, t).map_err(|e| {
                CliError::fatal(format!(
                    "cannot write the backup {}: {e}; nothing was changed",
                    display_path(&b)
                ))
            })?;
            Some(b)
        }
        None => None,
    };
    let mut text = serde_json::to_string_pretty(&doc)
        .map_err(|e| CliError::fatal(format!("cannot encode JSON: {e}")))?;
    text.push('\n');
    crate::pinning::atomic_write(file, text.as_bytes())
        .map_err(|e| CliError::fatal(format!("cannot write {shown}: {e}")))?;
    match format {
        ConnectFormat::Json => output::print_json(&json!({
            "client": client.label(),
            "file": file.display().to_string(),
            "backup": backup.as_ref().map(|b| b.display().to_string()),
            "written": true,
        })),
        ConnectFormat::Text => {
            eprintln!(
                "wrote the `{name}` entry to {shown}{}; restart {} to pick it up",
                backup
                    .as_ref()
                    .map(|b| format!(" (previous version: {})", display_path(b)))
                    .unwrap_or_default(),
                client.label()
            );
        }
    }
    Ok(())
}
