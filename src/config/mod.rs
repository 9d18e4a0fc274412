//! The config model, loading with source positions, and validation.

mod load;
mod model;
mod spans;
mod validate;

pub use load::{CheckOutcome, ConfigError, Loaded, check_source, discover, load_file, parse_json};
pub use model::*;
pub use spans::SpanIndex;
pub use validate::looks_like_secret;
pub use validate::{
    check_vault_entries, max_key_age, old_secret_findings, validate, vault_references,
};

/// The JSON Schema of the config file, generated from the types.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Config);
    let mut v = serde_json::to_value(&schema).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "title".into(),
            "Fentaris config (.fentaris/config.json)".into(),
        );
    }
    v
}
