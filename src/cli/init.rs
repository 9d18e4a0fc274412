//! `fentaris init`: create `.fentaris/` with a deny-by-default starter.

use std::path::PathBuf;

use super::{CliError, CliResult, Context, display_path, output};

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Folder in which to create .fentaris/ (default: the working directory)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Overwrite an existing .fentaris/config.json
    #[arg(long)]
    pub force: bool,
    /// Do not create the vault and its key now (they are created on first write)
    #[arg(long)]
    pub no_vault: bool,
}

/// The starter config written by `fentaris init`.
pub const STARTER_CONFIG: &str = r#"{
  "$schema": "./config.schema.json",
  "description": "Fentaris project config. Deny by default: a client may use only what a policy rule allows. Add upstream servers under `servers`, rules under `policies`, and users under `groups`. Check it with `fentaris policy check`; see `fentaris config schema` and the .fentaris.example/ folder of the Fentaris repository for every option.",
  "autoLog": true,
  "servers": [
    {
      "name": "everything",
      "description": "The MCP reference server, from npm, at a pinned version (an unpinned npx package runs whatever is published next).",
      "transport": {
        "stdio": { "command": "npx", "args": ["-y", "@modelcontextprotocol/server-everything@2026.8.31"] }
      }
    }
  ],
  "policies": [
    {
      "name": "starter",
      "description": "Allows one harmless tool; everything else is denied.",
      "rules": [
        { "mcp": "everything", "allow": "echo" }
      ]
    }
  ],
  "groups": [
    { "id": "developers", "users": ["me"], "policy": "starter" }
  ]
}
"#;

/// What `fentaris init` writes to `.fentaris/.gitignore`.
pub const GITIGNORE: &str = "# Written by `fentaris init`. The vault and logs are private; keys never live here.\ncredentials.enc.json\nlogs/\n*.key\n.lock\n";

pub fn run(_ctx: &Context, args: InitArgs) -> CliResult {
    let base = match args.dir {
        Some(d) => d,
        None => std::env::current_dir()
            .map_err(|e| CliError::fatal(format!("cannot read the working directory: {e}")))?,
    };
    let dir = base.join(".fentaris");
    let config = dir.join("config.json");
    if config.exists() && !args.force {
        return Err(CliError::findings(format!(
            "{} already exists; nothing was changed\nhelp: pass --force to replace it with the starter config",
            display_path(&config)
        )));
    }
    let io = |what: &str, p: &std::path::Path, e: std::io::Error| {
        CliError::fatal(format!("cannot {what} {}: {e}", display_path(p)))
    };
    std::fs::create_dir_all(&dir).map_err(|e| io("create", &dir, e))?;
    let schema =
        serde_json::to_string_pretty(&crate::config::json_schema()).unwrap_or_default() + "\n";
    let files = [
        (config.clone(), STARTER_CONFIG.to_string()),
        (dir.join("config.schema.json"), schema),
        (dir.join(".gitignore"), GITIGNORE.to_string()),
    ];
    for (path, text) in &files {
        if path.ends_with(".gitignore") && path.exists() && !args.force {
            continue;
        }
        std::fs::write(path, text).map_err(|e| io("write", path, e))?;
    }
    let vault_path = dir.join(crate::vault::VAULT_FILE);
    let mut vault_note = String::new();
    if !args.no_vault && !vault_path.exists() {
        let lookup = super::vault_access::key_lookup();
        let (_, v) = crate::vault::Vault::modify(
            &vault_path,
            &lookup,
            super::vault_access::LOCK_TIMEOUT,
            |_| Ok(()),
        )
        .map_err(super::vault_access::vault_error)?;
        vault_note = format!(
            "  credentials.enc.json  the vault ({}), key: {}\n",
            v.envelope.vault_id,
            v.key_source.describe()
        );
    }
    output::print(&format!(
        "Created {}\n  config.json         deny-by-default starter (edit servers, policies and groups)\n  config.schema.json  JSON Schema for editors\n  .gitignore          keeps the vault and logs out of git\n{vault_note}Next: `fentaris policy check`, then `fentaris policy explain --user me --server everything --tool echo`.\n",
        display_path(&dir)
    ));
    Ok(())
}
