//! Output helpers: colour decisions and writing that tolerates a closed pipe.

use std::io::{IsTerminal, Write};

fn color_allowed(is_tty: bool) -> bool {
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        return false;
    }
    if std::env::var_os("CLICOLOR_FORCE").is_some_and(|v| !v.is_empty() && v != "0") {
        return true;
    }
    is_tty && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// Whether to colour stdout (a TTY, and neither NO_COLOR nor TERM=dumb).
pub fn stdout_color() -> bool {
    color_allowed(std::io::stdout().is_terminal())
}

/// Whether to colour stderr.
pub fn stderr_color() -> bool {
    color_allowed(std::io::stderr().is_terminal())
}

/// Print to stdout; a closed pipe (`| head`) is not an error.
pub fn print(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes());
    let _ = out.flush();
}

/// Print JSON to stdout, pretty, with a trailing newline.
pub fn print_json(v: &impl serde::Serialize) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => print(&format!("{s}\n")),
        Err(e) => eprintln!("error: cannot encode JSON: {e}"),
    }
}
