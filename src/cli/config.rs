//! `fentaris config schema | show`.

use serde_json::Value;

use super::{CliError, CliResult, Context, output};
use crate::diagnostics::{Diagnostic, REDACTED, codes, redact_secrets, secret_texts};

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Print the JSON Schema of config.json (generated from the types)
    Schema,
    /// Print the resolved config, defaults filled in (credential sources shown as references)
    // Literals that look like secrets are shown as "[redacted]" (kept out of the help text so
    // that the generated completions and man pages do not change).
    Show,
}

pub fn run(ctx: &Context, cmd: ConfigCommand) -> CliResult {
    match cmd {
        ConfigCommand::Schema => {
            output::print_json(&crate::config::json_schema());
            Ok(())
        }
        ConfigCommand::Show => {
            let (loaded, config) = ctx.load_valid()?;
            // Credential sources serialise as their references ({"env": ...}); values are
            // never resolved here. Literals that look like secrets are redacted.
            let mut shown = serde_json::to_value(&config)
                .map_err(|e| CliError::fatal(format!("cannot encode the config as JSON: {e}")))?;
            let known = secret_texts(&loaded.source, &loaded.outcome.diagnostics);
            redact_config(&mut shown, &loaded.outcome.diagnostics, &known);
            output::print_json(&shown);
            Ok(())
        }
    }
}

/// Redact secrets in the shown config: the values that `policy check` flags (FNT100) by their
/// pointer (only the secret-looking part when one can be told, else the whole value), the
/// `known` secret texts of the file, and any other string token that looks like a secret.
fn redact_config(shown: &mut Value, diagnostics: &[Diagnostic], known: &[String]) {
    for d in diagnostics
        .iter()
        .filter(|d| d.code == codes::SECRET_LITERAL.id)
    {
        if let Some(Value::String(s)) = shown.pointer_mut(&d.pointer) {
            let part = redact_secrets(s, &[]);
            *s = if part == *s {
                REDACTED.to_string()
            } else {
                part
            };
        }
    }
    redact_strings(shown, known);
}

fn redact_strings(v: &mut Value, known: &[String]) {
    match v {
        Value::String(s) => {
            let r = redact_secrets(s, known);
            if r != *s {
                *s = r;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| redact_strings(i, known)),
        Value::Object(map) => map.values_mut().for_each(|i| redact_strings(i, known)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flagged_and_secret_looking_values_are_redacted() {
        let key = "ghp_abcdefghijklmnopqrstuvwxyz0123456789";
        let source = serde_json::json!({
            "servers": [
                { "name": "a", "transport": { "streamableHttp": { "url": "https://u:pw-weak@a.example/mcp" } },
                  "headers": { "Authorization": "Basic weak-pass", "x-key": key } },
                { "name": "b", "transport": { "stdio": { "command": "tool", "args": [format!("--token={key}"), "--port=1"],
                  "env": { "DB_PASSWORD": "hunter22" } } } }
            ]
        })
        .to_string();
        let out = crate::config::check_source(&source);
        let mut shown = serde_json::to_value(out.config.as_ref().unwrap()).unwrap();
        let known = secret_texts(&source, &out.diagnostics);
        redact_config(&mut shown, &out.diagnostics, &known);
        let text = shown.to_string();
        for secret in [key, "pw-weak", "weak-pass", "hunter22"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("--token=[redacted]"), "{text}");
        assert!(text.contains("--port=1"), "{text}");
        assert!(text.contains("\"command\":\"tool\""), "{text}");
    }
}
