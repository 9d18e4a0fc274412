//! `fentaris completions SHELL`, and the generated files in `completions/` and `man/`.

use clap_complete::Shell;

use super::{CliResult, command, output};

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Names from the config, for the dynamic completion (`source <(COMPLETE=bash fentaris)`):
/// the config is found as every command finds it (FENTARIS_CONFIG, else the nearest
/// `.fentaris/config.json` upward). Nothing is offered when there is none or it does not
/// parse.
fn completion_config() -> Option<(crate::config::Config, std::path::PathBuf)> {
    let cwd = std::env::current_dir().ok()?;
    let path = crate::config::discover(
        None,
        crate::harden::var("FENTARIS_CONFIG").map(std::ffi::OsString::from),
        &cwd,
    )
    .ok()?;
    let loaded = crate::config::load_file(&path).ok()?;
    Some((loaded.outcome.config?, loaded.dir))
}

fn candidates(names: Vec<String>) -> Vec<clap_complete::CompletionCandidate> {
    names
        .into_iter()
        .map(clap_complete::CompletionCandidate::new)
        .collect()
}

/// The config's user ids.
pub fn complete_users() -> Vec<clap_complete::CompletionCandidate> {
    candidates(
        completion_config()
            .map(|(c, _)| crate::suggest::config_users(&c))
            .unwrap_or_default(),
    )
}

/// The config's server names.
pub fn complete_servers() -> Vec<clap_complete::CompletionCandidate> {
    candidates(
        completion_config()
            .map(|(c, _)| crate::suggest::config_servers(&c))
            .unwrap_or_default(),
    )
}

/// The operations policy rules and `policy explain` take.
pub fn complete_operations() -> Vec<clap_complete::CompletionCandidate> {
    candidates(
        crate::policy::KNOWN_OPERATIONS
            .iter()
            .map(|o| o.name().into_owned())
            .collect(),
    )
}

/// The vault's entry names (read without the key: names are not secret).
pub fn complete_credentials() -> Vec<clap_complete::CompletionCandidate> {
    let names = completion_config()
        .and_then(|(_, dir)| crate::vault::read_envelope(&dir.join(crate::vault::VAULT_FILE)).ok())
        .map(|e| e.entries.keys().cloned().collect())
        .unwrap_or_default();
    candidates(names)
}

/// Answer a dynamic completion request (`COMPLETE=<shell>` in the environment) and exit;
/// otherwise return at once.
pub fn complete_from_env() {
    clap_complete::CompleteEnv::with_factory(command).complete();
}

pub fn run(args: CompletionsArgs) -> CliResult {
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut command(), "fentaris", &mut buf);
    output::print(&String::from_utf8_lossy(&buf));
    Ok(())
}

/// Every completion script, as (file name, contents), for `completions/`.
pub fn completion_scripts() -> Vec<(String, Vec<u8>)> {
    [
        Shell::Bash,
        Shell::Zsh,
        Shell::Fish,
        Shell::PowerShell,
        Shell::Elvish,
    ]
    .into_iter()
    .map(|shell| {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut command(), "fentaris", &mut buf);
        let name = match shell {
            Shell::Bash => "fentaris.bash".to_string(),
            Shell::Zsh => "_fentaris".to_string(),
            Shell::Fish => "fentaris.fish".to_string(),
            Shell::PowerShell => "_fentaris.ps1".to_string(),
            Shell::Elvish => "fentaris.elv".to_string(),
            _ => format!("fentaris.{shell}"),
        };
        (name, buf)
    })
    .collect()
}

/// One man page per command and subcommand, as (file name, contents), for `man/`.
pub fn man_pages() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut cmd = command();
    cmd.build();
    collect_pages(&cmd, "fentaris", &mut out);
    out
}

fn collect_pages(cmd: &clap::Command, name: &str, out: &mut Vec<(String, Vec<u8>)>) {
    let page_cmd = cmd.clone().name(name.to_string());
    let mut buf = Vec::new();
    if clap_mangen::Man::new(page_cmd).render(&mut buf).is_ok() {
        let page = String::from_utf8_lossy(&buf).into_owned();
        let extra = extra_sections(name);
        // Before VERSION (clap_mangen's last section), as man-pages(7) orders them.
        let page = match page.find("\n.SH VERSION") {
            Some(i) => format!("{}\n{}{}", &page[..i], extra.trim_end(), &page[i..]),
            None => format!("{page}{extra}"),
        };
        out.push((format!("{name}.1"), page.into_bytes()));
    }
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        collect_pages(sub, &format!("{name}-{}", sub.get_name()), out);
    }
}

/// Text for a roff line: backslashes and hyphens escaped, no leading control character.
fn roff(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

/// (what it does, the command) per page; every page has at least one.
fn examples(page: &str) -> Vec<(&'static str, String)> {
    let e = |what: &'static str, cmd: &str| (what, cmd.to_string());
    match page {
        "fentaris" => vec![
            e(
                "Start a project, check it, and serve it:",
                "fentaris init && fentaris policy check && fentaris serve",
            ),
            e("Check this machine can run the config:", "fentaris doctor"),
        ],
        "fentaris-init" => vec![e(
            "Create .fentaris/ with the starter config and the vault:",
            "fentaris init",
        )],
        "fentaris-policy-check" => vec![
            e(
                "Every finding, with line and help:",
                "fentaris policy check",
            ),
            e(
                "In GitHub Actions (annotations; exit 1 on any ::error):",
                "fentaris policy check --format github",
            ),
        ],
        "fentaris-policy-explain" => vec![
            e(
                "Why may alice (not) call echo?",
                "fentaris policy explain --user alice --server everything --tool echo",
            ),
            e(
                "Replay a logged decision (ids in the request column of logs tail):",
                "fentaris policy explain --request-id 8f3a2c1d9e0b7a64",
            ),
        ],
        "fentaris-policy-test" => vec![e(
            "Run policy-tests.json beside the config:",
            "fentaris policy test",
        )],
        "fentaris-serve" => vec![
            e(
                "Serve HTTP clients on the configured address:",
                "fentaris serve",
            ),
            e(
                "Serve one stdio client as alice:",
                "fentaris serve --stdio --user alice",
            ),
        ],
        "fentaris-auth-api-key-add" => vec![e(
            "Issue a key for alice (printed once):",
            "fentaris auth api-key add alice --generate --expires-in 90d",
        )],
        "fentaris-auth-api-key-rotate" => vec![e(
            "Replace alice's key; the old one works 24 more hours:",
            "fentaris auth api-key rotate alice --overlap 24h",
        )],
        "fentaris-auth-api-key-list" => vec![e(
            "Keys with age and last use:",
            "fentaris auth api-key list",
        )],
        "fentaris-auth-api-key-revoke" => vec![e(
            "Revoke a key (a running serve refuses it within a second):",
            "fentaris auth api-key revoke alice Ab3dE9xZ",
        )],
        "fentaris-auth-whoami" => vec![e(
            "Whose key is this?",
            "printf '%s' \"$KEY\" | fentaris auth whoami",
        )],
        "fentaris-credentials-set" => vec![e(
            "Store a token from the environment:",
            "printf '%s' \"$GITHUB_TOKEN\" | fentaris credentials set github.token --value-stdin",
        )],
        "fentaris-logs-tail" => vec![
            e("The last denials:", "fentaris logs tail --decision deny"),
            e(
                "Follow alice's requests:",
                "fentaris logs tail -f --user alice",
            ),
        ],
        "fentaris-logs-verify" => vec![e("Check the audit chain:", "fentaris logs verify")],
        "fentaris-tools-list" => vec![e(
            "What alice may use, with the deciding rules:",
            "fentaris tools list --user alice",
        )],
        "fentaris-connect" => vec![e(
            "Add Fentaris to Claude Code's .mcp.json:",
            "fentaris connect claude-code --write",
        )],
        "fentaris-doctor" => vec![e(
            "Ports, commands, Node, vault key, Landlock:",
            "fentaris doctor",
        )],
        "fentaris-vault-status" => vec![e(
            "Where the key comes from, and whether the vault verifies:",
            "fentaris vault status",
        )],
        "fentaris-completions" => vec![
            e(
                "Static completion for bash:",
                "fentaris completions bash > ~/.local/share/bash-completion/completions/fentaris",
            ),
            e(
                "Completion with user and server names from the config:",
                "source <(COMPLETE=bash fentaris)",
            ),
        ],
        _ => {
            let words = page.replace('-', " ").replace("api key", "api-key");
            vec![e("Options and arguments:", &format!("{words} --help"))]
        }
    }
}

/// EXAMPLES, EXIT STATUS, ENVIRONMENT and FILES, in roff.
fn extra_sections(page: &str) -> String {
    let mut out = String::from(".SH EXAMPLES\n");
    for (what, cmd) in examples(page) {
        out.push_str(&format!(
            ".PP\n{}\n.PP\n.RS 4\n.nf\n{}\n.fi\n.RE\n",
            roff(what),
            roff(&cmd)
        ));
    }
    out.push_str(".SH \"EXIT STATUS\"\n");
    for (code, what) in [
        ("0", "Success."),
        (
            "1",
            "Findings, a denial, or a failed check (policy check errors, policy explain DENY, doctor FAIL, an unknown key for auth whoami).",
        ),
        (
            "2",
            "Usage error: a bad argument or input (short key, bad name).",
        ),
        (
            "3",
            "Fatal: the config cannot be read or has errors, the vault does not open, or I/O failed.",
        ),
    ] {
        out.push_str(&format!(".TP\n{code}\n{}\n", roff(what)));
    }
    out.push_str(".SH ENVIRONMENT\n");
    for (var, what) in [
        (
            "FENTARIS_CONFIG",
            "The config file, when --config is not given (else the nearest .fentaris/config.json upward).",
        ),
        (
            "FENTARIS_VAULT_KEY",
            "The vault's age identity (AGE-SECRET-KEY-1...), for CI and servers. Taken out of the environment at start.",
        ),
        (
            "FENTARIS_VAULT_KEY_FILE",
            "A file holding the vault's key, instead of the per-vault key file.",
        ),
        ("NO_COLOR", "No colour when set and not empty."),
        (
            "COLUMNS",
            "The width tables fit (else the terminal's width).",
        ),
        ("CI", "When set (and not false), commands never prompt."),
        (
            "COMPLETE",
            "Set to a shell name (bash, zsh, fish, elvish, powershell) to print the dynamic completion script.",
        ),
        (
            "RUST_LOG",
            "serve's log filter (default fentaris=info,warn).",
        ),
    ] {
        out.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", roff(var), roff(what)));
    }
    out.push_str(".SH FILES\n");
    for (file, what) in [
        (
            ".fentaris/config.json",
            "The project config (JSON; its schema: fentaris config schema).",
        ),
        (
            ".fentaris/credentials.enc.json",
            "The vault: API key digests and encrypted credentials.",
        ),
        (
            "~/.config/fentaris/keys/<vault id>.key",
            "The vault's key (0600), outside the project.",
        ),
        (
            ".fentaris/logs/audit.jsonl",
            "The audit log (autoLog), with its rotated files.",
        ),
        (
            ".fentaris/tools.lock.json",
            "Pinned tool and prompt digests (fentaris tools lock).",
        ),
        (
            ".fentaris/policy-tests.json",
            "Policy test cases (fentaris policy test).",
        ),
    ] {
        out.push_str(&format!(".TP\n\\fI{}\\fR\n{}\n", roff(file), roff(what)));
    }
    out
}
