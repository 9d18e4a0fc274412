//! Declarative argument rules (`middleware[].argumentSchema`): the arguments of matching tool
//! calls must satisfy a JSON Schema. Compiled once when the config loads; pure.

use serde_json::Value;

use crate::config::{Config, Middleware};
use crate::jsonrpc::RpcError;
use crate::policy::Pattern;

struct Rule {
    server: Pattern,
    tool: Pattern,
    validator: jsonschema::Validator,
    message: String,
}

/// Every argument rule of a config, compiled.
#[derive(Default)]
pub struct ArgumentRules {
    rules: Vec<Rule>,
}

/// Compile one schema; the error says what is wrong with it.
pub fn compile_schema(schema: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::validator_for(schema).map_err(|e| e.to_string())
}

impl ArgumentRules {
    /// Rules whose patterns or schema do not compile are skipped here: config validation
    /// reports them (FNT006, FNT021) and a config with errors is never served.
    pub fn compile(config: &Config) -> ArgumentRules {
        let rules = config
            .middleware
            .iter()
            .filter_map(|m| match m {
                Middleware::ArgumentSchema(a) => Some(Rule {
                    server: Pattern::new(&a.mcp).ok()?,
                    tool: Pattern::new(&a.tool).ok()?,
                    validator: compile_schema(&a.schema).ok()?,
                    message: a.message.clone().unwrap_or_else(|| {
                        format!(
                            "the arguments of `{}` do not satisfy the configured schema",
                            a.tool
                        )
                    }),
                }),
                Middleware::ExternalAuthorizer(_) => None,
            })
            .collect();
        ArgumentRules { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Check the arguments of a call of `tool` on `server` against every matching rule.
    /// The client gets the configured message (and the first violation's location).
    pub fn check(&self, server: &str, tool: &str, args: &Value) -> Result<(), RpcError> {
        for r in &self.rules {
            if !(r.server.matches(server) && r.tool.matches(tool)) {
                continue;
            }
            if let Some(err) = r.validator.iter_errors(args).next() {
                let at = err.instance_path().to_string();
                let mut e = super::denial("argumentSchema", &r.message);
                if let Some(d) = e.data.as_mut() {
                    d["at"] = Value::String(if at.is_empty() { "/".into() } else { at });
                }
                return Err(e);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matching_rules_check_arguments_with_their_message() {
        let config: Config = serde_json::from_value(json!({
            "middleware": [{ "argumentSchema": { "mcp": "fs*", "tool": "read_*",
                "schema": { "type": "object", "properties": { "path": { "type": "string", "pattern": "^/srv/data/" } }, "required": ["path"] },
                "message": "paths must be under /srv/data" } }]
        }))
        .unwrap();
        let r = ArgumentRules::compile(&config);
        assert!(
            r.check("fs", "read_file", &json!({ "path": "/srv/data/a" }))
                .is_ok()
        );
        let e = r
            .check("fs", "read_file", &json!({ "path": "/etc/passwd" }))
            .unwrap_err();
        assert!(e.message.contains("paths must be under /srv/data"), "{e:?}");
        assert_eq!(e.data.unwrap()["at"], "/path");
        assert!(r.check("fs", "read_file", &json!({})).is_err());
        // Other tools and servers are not checked.
        assert!(r.check("fs", "write_file", &json!({})).is_ok());
        assert!(r.check("github", "read_file", &json!({})).is_ok());
    }

    #[test]
    fn an_invalid_schema_does_not_compile() {
        assert!(compile_schema(&json!({ "type": 12 })).is_err());
        assert!(compile_schema(&json!({ "type": "object" })).is_ok());
    }
}
