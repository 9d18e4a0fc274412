//! `fentaris tools list | lock | diff`: what the upstreams offer, and pinning it.
//!
//! These commands start the configured upstreams (as `serve` would, with the vault's
//! credentials when there is a vault), list their tools, prompts, resources and templates,
//! and stop them again.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::vault_access::{key_lookup, vault_error};
use super::{CliError, CliResult, Context, display_path, output};
use crate::config::Config;
use crate::pinning::{ServerPins, ToolLock, compare};
use crate::policy::{Operation, Request, TargetKind};
use crate::proxy::{Caller, Endpoint, Proxy};
use crate::vault::{OpenOptions, Vault};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    #[default]
    Table,
    Json,
}

#[derive(Debug, clap::Subcommand)]
pub enum ToolsCommand {
    /// List each server's tools, prompts, resources and resource templates (starts the upstreams)
    List(ListArgs),
    /// Pin every tool and prompt definition in .fentaris/tools.lock.json (beside config.json)
    Lock,
    /// Show tools and prompts added, removed or changed since the lock (exit 1 on drift)
    Diff(DiffArgs),
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only this server
    #[arg(long, value_name = "S", add = clap_complete::ArgValueCandidates::new(crate::cli::completions::complete_servers))]
    pub server: Option<String>,
    /// Show the policy decision for this user on every row (and use their credentials)
    #[arg(long, value_name = "U", add = clap_complete::ArgValueCandidates::new(crate::cli::completions::complete_users))]
    pub user: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: ListFormat,
}

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    #[arg(long, value_enum, default_value_t)]
    pub format: ListFormat,
}

pub fn run(ctx: &Context, cmd: ToolsCommand) -> CliResult {
    match cmd {
        ToolsCommand::List(a) => list(ctx, a),
        ToolsCommand::Lock => lock(ctx),
        ToolsCommand::Diff(a) => diff(ctx, a),
    }
}

/// What one server lists.
#[derive(Debug, Default)]
pub struct Catalog {
    pub tools: Vec<Value>,
    pub prompts: Vec<Value>,
    pub resources: Vec<Value>,
    pub templates: Vec<Value>,
}

impl Catalog {
    pub fn pins(&self) -> ServerPins {
        ServerPins::of(&self.tools, &self.prompts)
    }
}

/// Every server declared in the config (top level, then groups' own), in config order.
pub fn declared_servers(config: &Config) -> Vec<String> {
    config
        .servers
        .iter()
        .chain(config.groups.iter().flat_map(|g| g.servers.iter()))
        .map(|s| s.name.clone())
        .collect()
}

/// Build the proxy as `serve` does (vault when present), without audit.
pub(crate) fn build_proxy(ctx: &Context) -> Result<(crate::config::Loaded, Arc<Proxy>), CliError> {
    let (loaded, config) = ctx.load_valid()?;
    let vault_path = loaded.dir.join(crate::vault::VAULT_FILE);
    let vault = if vault_path.exists() {
        Some(Vault::open(&vault_path, &key_lookup(), OpenOptions::default()).map_err(vault_error)?)
    } else {
        None
    };
    let proxy = Proxy::new(
        config,
        loaded.dir.clone(),
        vault,
        Box::new(|k: &str| std::env::var(k).ok()),
    );
    Ok((loaded, proxy.shared()))
}

/// The caller used to reach `server`: the given user, or (for a group's own server) the
/// group's first user, so the group's credentials apply.
fn caller_for(proxy: &Proxy, server: &str, user: Option<&str>) -> Option<Caller> {
    let user = match user {
        Some(u) => u.to_string(),
        None => {
            if let Some(s) = proxy.config().servers.iter().find(|s| s.name == server) {
                // A per-session server needs a session: this command is one.
                return (s.isolation == crate::config::Isolation::Session)
                    .then(|| caller(proxy, "fentaris-tools"));
            }
            let g = proxy
                .config()
                .groups
                .iter()
                .find(|g| g.servers.iter().any(|s| s.name == server))?;
            g.users.first()?.id().to_string()
        }
    };
    Some(caller(proxy, &user))
}

fn caller(proxy: &Proxy, user: &str) -> Caller {
    Caller {
        subject: Arc::new(proxy.engine().subject(user)),
        endpoint: Endpoint::All,
        modern: false,
        session: Some("fentaris-tools".into()),
        info: Arc::new(crate::proxy::handler::CallerInfo::new("cli", None)),
    }
}

/// Every page of one list.
async fn list_all(
    up: &crate::proxy::upstream::Upstream,
    method: &str,
    key: &str,
    ct: &CancellationToken,
) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    let mut cursor: Option<Value> = None;
    for _ in 0..1000 {
        let mut p = json!({});
        if let Some(c) = &cursor {
            p["cursor"] = c.clone();
        }
        let r = up
            .call(
                crate::proxy::upstream::Call::new(
                    method,
                    p,
                    crate::proxy::pool::DEFAULT_REQUEST_TIMEOUT,
                ),
                ct,
            )
            .await
            .map_err(|e| format!("{method}: {}", crate::proxy::upstream::describe(&e)))?;
        out.extend(
            r.get(key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        );
        match r.get("nextCursor").filter(|c| !c.is_null()) {
            Some(c) => cursor = Some(c.clone()),
            None => return Ok(out),
        }
    }
    Err(format!("{method}: more than 1000 pages"))
}

/// One server's listing, or why it failed.
pub type Listed = (String, Result<Catalog, String>);

/// Start each server and list what it offers (a progress line per server on a terminal).
pub fn snapshot(
    proxy: &Arc<Proxy>,
    servers: &[String],
    user: Option<&str>,
) -> Result<Vec<Listed>, CliError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::fatal(format!("cannot start the runtime: {e}")))?;
    let progress = std::io::stderr()
        .is_terminal()
        .then(indicatif::MultiProgress::new);
    let out = rt.block_on(async {
        let tasks: Vec<_> = servers
            .iter()
            .map(|name| {
                let bar = progress.as_ref().map(|m| {
                    let b = m.add(indicatif::ProgressBar::new_spinner());
                    b.set_style(
                        indicatif::ProgressStyle::with_template("{spinner} {msg}")
                            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                    );
                    b.enable_steady_tick(std::time::Duration::from_millis(100));
                    b.set_message(format!("{name}: starting"));
                    b
                });
                let p = proxy.clone();
                let name = name.clone();
                let caller = caller_for(proxy, &name, user);
                tokio::spawn(async move {
                    let r = fetch(&p, &name, caller.as_ref()).await;
                    if let Some(b) = bar {
                        b.finish_with_message(match &r {
                            Ok(c) => format!(
                                "{name}: {} tools, {} prompts",
                                c.tools.len(),
                                c.prompts.len()
                            ),
                            Err(e) => format!("{name}: failed: {e}"),
                        });
                    }
                    (name, r)
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            match t.await {
                Ok(r) => out.push(r),
                Err(e) => return Err(CliError::fatal(format!("a listing task failed: {e}"))),
            }
        }
        proxy.pool().shutdown().await;
        Ok(out)
    });
    if let Some(m) = progress {
        let _ = m.clear();
    }
    out
}

async fn fetch(proxy: &Proxy, server: &str, caller: Option<&Caller>) -> Result<Catalog, String> {
    let up = proxy
        .upstream(caller, server, None)
        .await
        .map_err(|e| e.message)?;
    let caps = up.init.get("capabilities").cloned().unwrap_or(json!({}));
    let ct = CancellationToken::new();
    let mut c = Catalog::default();
    if caps.get("tools").is_some() {
        c.tools = list_all(&up, "tools/list", "tools", &ct).await?;
    }
    if caps.get("prompts").is_some() {
        c.prompts = list_all(&up, "prompts/list", "prompts", &ct).await?;
    }
    if caps.get("resources").is_some() {
        c.resources = list_all(&up, "resources/list", "resources", &ct).await?;
        // Templates are optional even for servers with resources.
        c.templates = list_all(&up, "resources/templates/list", "resourceTemplates", &ct)
            .await
            .unwrap_or_default();
    }
    Ok(c)
}

fn select(config: &Config, server: Option<&str>) -> Result<Vec<String>, CliError> {
    let all = declared_servers(config);
    match server {
        None => Ok(all),
        Some(s) if all.iter().any(|a| a == s) => Ok(vec![s.to_string()]),
        Some(s) => {
            let hint = crate::suggest::did_you_mean(s, all.iter().map(String::as_str))
                .unwrap_or_else(|| format!("servers: {}", all.join(", ")));
            Err(CliError::usage(format!(
                "there is no server `{s}` in the config; {hint}"
            )))
        }
    }
}

fn failures(results: &[Listed]) -> usize {
    let mut n = 0;
    for (s, r) in results {
        if let Err(e) = r {
            eprintln!("error: server `{s}` could not be listed: {e}");
            n += 1;
        }
    }
    n
}

fn list(ctx: &Context, args: ListArgs) -> CliResult {
    let (_, proxy) = build_proxy(ctx)?;
    let servers = select(proxy.config(), args.server.as_deref())?;
    let results = snapshot(&proxy, &servers, args.user.as_deref())?;
    let failed = failures(&results);
    let engine = &proxy.engine();
    let subject = args.user.as_deref().map(|u| engine.subject(u));
    let mut rows = Vec::new();
    for (server, r) in &results {
        let Ok(c) = r else { continue };
        let kinds: [(&str, &Vec<Value>, &str); 4] = [
            ("tool", &c.tools, "name"),
            ("prompt", &c.prompts, "name"),
            ("resource", &c.resources, "uri"),
            ("template", &c.templates, "uriTemplate"),
        ];
        for (kind, items, key) in kinds {
            for i in items {
                let Some(name) = i.get(key).and_then(Value::as_str) else {
                    continue;
                };
                let mut row = json!({
                    "server": server,
                    "kind": kind,
                    "name": name,
                    "description": i.get("description").and_then(Value::as_str).unwrap_or(""),
                });
                if let Some(s) = &subject {
                    let (allow, rule, summary) = decision(engine, s, server, kind, name);
                    row["decision"] = json!(if allow { "allow" } else { "deny" });
                    row["rule"] = json!(rule);
                    if let Some(summary) = summary {
                        row["ruleSummary"] = json!(summary);
                    }
                }
                rows.push(row);
            }
        }
    }
    match args.format {
        ListFormat::Json => output::print_json(&rows),
        ListFormat::Table => {
            let mut t = comfy_table::Table::new();
            t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
            crate::cli::output::fit(&mut t);
            let mut header = vec!["server", "kind", "name", "description"];
            if subject.is_some() {
                header.extend(["decision", "rule"]);
            }
            t.set_header(header);
            for r in &rows {
                let s = |k: &str| crate::diagnostics::escape_control(r[k].as_str().unwrap_or(""));
                let mut desc = s("description");
                if let Some((i, _)) = desc.char_indices().nth(60) {
                    desc.truncate(i);
                    desc.push('…');
                }
                let mut cells = vec![s("server"), s("kind"), s("name"), desc];
                if subject.is_some() {
                    cells.extend([s("decision"), s("rule")]);
                }
                t.add_row(cells);
            }
            output::print(&format!("{t}\n"));
        }
    }
    if failed > 0 {
        return Err(CliError::silent(1));
    }
    Ok(())
}

/// allow/deny for one row, the deciding rule's JSON pointer (or why no rule decided), and
/// the rule's one-line summary.
fn decision(
    engine: &crate::policy::Engine,
    subject: &crate::policy::Subject,
    server: &str,
    kind: &str,
    name: &str,
) -> (bool, String, Option<String>) {
    let req = match kind {
        "tool" => Request::tool_call(server, name),
        "prompt" => Request::prompt_get(server, name),
        "resource" => {
            match Request::new(server, Operation::ResourceRead, name, TargetKind::Resource) {
                Ok(r) => r,
                Err(_) => return (false, "not a usable resource URI".into(), None),
            }
        }
        _ => {
            // A template is shown when the template listing allows it.
            let shown = engine
                .list_view(subject, server, &Operation::ResourceTemplatesList)
                .is_some_and(|v| v.visible(name));
            let why = if shown {
                "resource template listing"
            } else {
                "not listed for this user"
            };
            return (shown, why.into(), None);
        }
    };
    let d = engine.decide(subject, &req);
    let (rule, summary) = match d.reason {
        crate::policy::Reason::Rule(r) => match engine.rule_info(r) {
            Some(i) => (i.pointer.to_string(), Some(i.summary.to_string())),
            None => (String::new(), None),
        },
        crate::policy::Reason::NoMatchingRule => ("no rule (deny by default)".into(), None),
        crate::policy::Reason::UnknownServer => ("server not visible".into(), None),
    };
    (d.is_allow(), rule, summary)
}

/// Connect to every server and compute its pins; `Err` names the servers that failed.
pub fn current_pins(
    proxy: &Arc<Proxy>,
) -> Result<(BTreeMap<String, ServerPins>, Vec<String>), CliError> {
    let servers = declared_servers(proxy.config());
    let results = snapshot(proxy, &servers, None)?;
    let mut pins = BTreeMap::new();
    let mut failed = Vec::new();
    for (s, r) in results {
        match r {
            Ok(c) => {
                pins.insert(s, c.pins());
            }
            Err(e) => failed.push(format!("{s}: {e}")),
        }
    }
    Ok((pins, failed))
}

fn lock(ctx: &Context) -> CliResult {
    let (loaded, proxy) = build_proxy(ctx)?;
    let (pins, failed) = current_pins(&proxy)?;
    if !failed.is_empty() {
        return Err(CliError::fatal(format!(
            "not locked: some servers could not be listed (the lock would hide all their tools):\n  {}\nhelp: fix them (or remove them from the config), then run `fentaris tools lock` again",
            failed.join("\n  ")
        )));
    }
    let old = ToolLock::load(&loaded.dir).map_err(|e| CliError::fatal(e.to_string()))?;
    let new = ToolLock {
        version: 1,
        servers: pins,
    };
    let changes = old
        .as_ref()
        .map(|o| compare(o, &new.servers))
        .unwrap_or_default();
    let path = new
        .save(&loaded.dir)
        .map_err(|e| CliError::fatal(e.to_string()))?;
    let (t, p): (usize, usize) = new
        .servers
        .values()
        .fold((0, 0), |(t, p), s| (t + s.tools.len(), p + s.prompts.len()));
    eprintln!(
        "locked {t} tools and {p} prompts of {} servers in {}{}",
        new.servers.len(),
        display_path(&path),
        if old.is_some() {
            format!(" ({} changes accepted)", changes.len())
        } else {
            String::new()
        }
    );
    Ok(())
}

fn diff(ctx: &Context, args: DiffArgs) -> CliResult {
    let (loaded, proxy) = build_proxy(ctx)?;
    let Some(lock) = ToolLock::load(&loaded.dir).map_err(|e| CliError::fatal(e.to_string()))?
    else {
        return Err(CliError::fatal(format!(
            "there is no {} yet\nhelp: create it with `fentaris tools lock`",
            display_path(&ToolLock::path(&loaded.dir))
        )));
    };
    let (pins, failed) = current_pins(&proxy)?;
    for f in &failed {
        eprintln!("error: not compared: {f}");
    }
    let changes = compare(&lock, &pins);
    match args.format {
        ListFormat::Json => output::print_json(&changes),
        ListFormat::Table => {
            if changes.is_empty() {
                output::print("no drift: every tool and prompt matches the lock\n");
            } else {
                let mut t = comfy_table::Table::new();
                t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
                crate::cli::output::fit(&mut t);
                t.set_header(["server", "kind", "name", "change"]);
                for c in &changes {
                    t.add_row([
                        c.server.clone(),
                        c.kind.name().to_string(),
                        crate::diagnostics::escape_control(&c.name),
                        c.change.name().to_string(),
                    ]);
                }
                output::print(&format!("{t}\n"));
            }
        }
    }
    if !changes.is_empty() || !failed.is_empty() {
        return Err(CliError::silent(1));
    }
    Ok(())
}
