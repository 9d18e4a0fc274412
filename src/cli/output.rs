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

/// The width tables must fit: `COLUMNS` when set, else the terminal's width when stdout is
/// one; `None` (no limit) for pipes and files, so scripts get whole cells.
pub fn table_width() -> Option<u16> {
    if let Some(w) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<u16>().ok())
        .filter(|w| *w >= 20)
    {
        return Some(w);
    }
    if !std::io::stdout().is_terminal() {
        return None;
    }
    comfy_table::Table::new().width()
}

/// Make a table fit [`table_width`]: long cells wrap instead of running past the edge.
pub fn fit(t: &mut comfy_table::Table) {
    if let Some(w) = table_width() {
        t.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
        t.set_width(w);
    }
}

/// Print JSON to stdout, pretty, with a trailing newline.
pub fn print_json(v: &impl serde::Serialize) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => print(&format!("{s}\n")),
        Err(e) => eprintln!("error: cannot encode JSON: {e}"),
    }
}

/// The field formatter of Fentaris' own log (`serve`): the message and every field value go
/// through [`escape_control`](crate::diagnostics::escape_control), whatever the call site
/// wrote (`%` Display or `?` Debug). Clients and upstreams choose many logged strings
/// (methods, names, URIs, error texts, stderr lines); tracing-subscriber's default escapes
/// only some ANSI characters of the message, and neither newlines nor `%` field values, so a
/// client could forge a log line or drive the terminal that shows the log.
pub fn log_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static
{
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let shown = crate::diagnostics::escape_control(&format!("{value:?}"));
        match field.name() {
            "message" => write!(w, "{shown}"),
            name => write!(w, "{}={shown}", name.strip_prefix("r#").unwrap_or(name)),
        }
    })
    .delimited(" ")
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn log_lines_escape_what_clients_and_upstreams_chose() {
        let buf = Buf::default();
        let out = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .fmt_fields(super::log_fields())
            .with_ansi(false)
            .finish();
        let hostile = "tool\n2026-01-01T00:00:00Z  INFO forged \u{1b}]0;title\u{7}\u{1b}[2J\r\u{202e}txt\u{2028}x\u{200b}\u{feff}";
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!("req", name = %hostile);
            let _g = span.enter();
            tracing::warn!(method = %hostile, debug = ?hostile, "called {hostile}");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.ends_with('\n'));
        let body = text.trim_end_matches('\n');
        assert!(
            !body.chars().any(crate::diagnostics::is_unsafe_char),
            "{body:?}"
        );
        assert!(body.contains("method=tool\\n2026"), "{body}");
        assert!(body.contains("called tool\\n"), "{body}");
        assert!(body.contains("name=tool\\n"), "{body}");
        assert!(body.contains("\\u{202e}txt\\u{2028}x"), "{body}");
    }
}
