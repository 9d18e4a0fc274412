//! `fentaris completions SHELL`, and the generated files in `completions/` and `man/`.

use clap_complete::Shell;

use super::{CliResult, command, output};

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: Shell,
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
        out.push((format!("{name}.1"), buf));
    }
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        collect_pages(sub, &format!("{name}-{}", sub.get_name()), out);
    }
}
