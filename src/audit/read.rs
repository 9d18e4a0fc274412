//! Reading audit files back: the rotated set in order, records parsed, filters.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::writer::rotated;

/// The files of an audit set, oldest first: `audit.jsonl.N` … `audit.jsonl.1`, `audit.jsonl`.
pub fn file_set(path: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = (1..10_000)
        .map(|i| rotated(path, i))
        .take_while(|p| p.exists())
        .collect();
    out.reverse();
    if path.exists() {
        out.push(path.to_path_buf());
    }
    out
}

/// The lines of a file (without newlines); a last line without a newline is kept.
pub fn lines(path: &Path) -> std::io::Result<Vec<String>> {
    let text = std::fs::read(path)?;
    let text = String::from_utf8_lossy(&text);
    Ok(text.lines().map(str::to_string).collect())
}

/// Parse a line into its record (chain member included).
pub fn parse(line: &str) -> Option<Value> {
    serde_json::from_str(line).ok().filter(Value::is_object)
}
