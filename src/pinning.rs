//! Tool pinning: `.fentaris/tools.lock.json` holds a SHA-256 digest of every tool and prompt
//! definition each upstream listed when it was locked (`fentaris tools lock`).
//!
//! A tool's digest covers the RFC 8785 canonical JSON (serde_jcs) of its `name`,
//! `description`, `inputSchema`, `outputSchema` and `annotations`; a prompt's covers its
//! `name`, `description` and `arguments`. Fields that are absent are left out, so adding an
//! unrelated field (`title`, `icons`, `_meta`) upstream does not count as drift, while any
//! change to what a model reads (description, schema, hints) does.
//!
//! Everything here is pure except [`ToolLock::load`] and [`ToolLock::save`]. The proxy's
//! enforcement (hide and deny drifted tools) is [`crate::proxy::pinning`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Digest;

use crate::diagnostics::{Diagnostic, codes};

/// The lock file's name, beside `config.json`.
pub const LOCK_FILE: &str = "tools.lock.json";

/// Fields of a tool that its digest covers.
pub const TOOL_FIELDS: [&str; 5] = [
    "name",
    "description",
    "inputSchema",
    "outputSchema",
    "annotations",
];
/// Fields of a prompt that its digest covers.
pub const PROMPT_FIELDS: [&str; 3] = ["name", "description", "arguments"];

/// Tools or prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    Tool,
    Prompt,
}

impl ItemKind {
    pub fn name(self) -> &'static str {
        match self {
            ItemKind::Tool => "tool",
            ItemKind::Prompt => "prompt",
        }
    }
}

/// The digests of one server's definitions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerPins {
    #[serde(default)]
    pub tools: BTreeMap<String, String>,
    #[serde(default)]
    pub prompts: BTreeMap<String, String>,
}

impl ServerPins {
    /// Digests of a server's listed tools and prompts (items without a string `name` are
    /// skipped: no client can call them).
    pub fn of(tools: &[Value], prompts: &[Value]) -> ServerPins {
        let named = |items: &[Value], kind| {
            items
                .iter()
                .filter_map(|i| Some((i.get("name")?.as_str()?.to_string(), digest(kind, i))))
                .collect()
        };
        ServerPins {
            tools: named(tools, ItemKind::Tool),
            prompts: named(prompts, ItemKind::Prompt),
        }
    }

    fn of_kind(&self, kind: ItemKind) -> &BTreeMap<String, String> {
        match kind {
            ItemKind::Tool => &self.tools,
            ItemKind::Prompt => &self.prompts,
        }
    }
}

/// `.fentaris/tools.lock.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolLock {
    /// Format version (1).
    pub version: u32,
    /// Server name -> digests.
    pub servers: BTreeMap<String, ServerPins>,
}

impl Default for ToolLock {
    fn default() -> Self {
        ToolLock {
            version: 1,
            servers: BTreeMap::new(),
        }
    }
}

/// `sha256:<hex>` of the canonical JSON of an item's pinned fields.
pub fn digest(kind: ItemKind, item: &Value) -> String {
    let fields: &[&str] = match kind {
        ItemKind::Tool => &TOOL_FIELDS,
        ItemKind::Prompt => &PROMPT_FIELDS,
    };
    let mut pinned = Map::new();
    for f in fields {
        if let Some(v) = item.get(*f) {
            pinned.insert((*f).to_string(), v.clone());
        }
    }
    // serde_jcs only fails on values JSON cannot hold (non-finite floats), which a parsed
    // `Value` never contains; fall back to serde_json's text to stay total.
    let text = serde_jcs::to_string(&Value::Object(pinned.clone()))
        .unwrap_or_else(|_| Value::Object(pinned).to_string());
    let sum = sha2::Sha256::digest(text.as_bytes());
    let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// What happened to one item since the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

impl ChangeKind {
    pub fn name(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::Changed => "changed",
        }
    }
}

/// One difference between the lock and what a server lists now.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Change {
    pub server: String,
    pub kind: ItemKind,
    pub name: String,
    pub change: ChangeKind,
}

/// The differences for the servers in `current` (servers not listed there, for example
/// because they could not be reached, are not compared). A server missing from the lock
/// counts as all added.
pub fn compare(lock: &ToolLock, current: &BTreeMap<String, ServerPins>) -> Vec<Change> {
    let empty = ServerPins::default();
    let mut out = Vec::new();
    for (server, now) in current {
        let then = lock.servers.get(server).unwrap_or(&empty);
        for kind in [ItemKind::Tool, ItemKind::Prompt] {
            let (a, b) = (then.of_kind(kind), now.of_kind(kind));
            for (name, d) in b {
                let change = match a.get(name) {
                    None => ChangeKind::Added,
                    Some(old) if old != d => ChangeKind::Changed,
                    Some(_) => continue,
                };
                out.push(Change {
                    server: server.clone(),
                    kind,
                    name: name.clone(),
                    change,
                });
            }
            for name in a.keys().filter(|n| !b.contains_key(*n)) {
                out.push(Change {
                    server: server.clone(),
                    kind,
                    name: name.clone(),
                    change: ChangeKind::Removed,
                });
            }
        }
    }
    out.sort();
    out
}

/// Findings for `policy check --online`: one FNT104 per added or changed item (a removed
/// item cannot be used, so it is not a risk). `pointer_of` gives a server's declaration.
pub fn drift_findings(changes: &[Change], pointer_of: &dyn Fn(&str) -> String) -> Vec<Diagnostic> {
    changes
        .iter()
        .filter(|c| c.change != ChangeKind::Removed)
        .map(|c| {
            let what = match c.change {
                ChangeKind::Added => "is new since the lock",
                _ => "changed since the lock",
            };
            Diagnostic::new(
                codes::TOOL_DRIFT,
                pointer_of(&c.server),
                format!(
                    "{} `{}` of server `{}` {what}; `fentaris serve` hides it until it is locked",
                    c.kind.name(),
                    crate::diagnostics::escape_control(&c.name),
                    c.server
                ),
            )
            .help("review it with `fentaris tools diff`, then accept it with `fentaris tools lock`")
        })
        .collect()
}

/// Errors reading or writing the lock file.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot read {path}: {source}\nhelp: check the file's permissions")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a valid tool lock: {source}\nhelp: recreate it with `fentaris tools lock` (it is generated, not edited by hand)"
    )]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "{path} has version {version}; this Fentaris reads version 1\nhelp: recreate it with `fentaris tools lock`"
    )]
    Version { path: PathBuf, version: u32 },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ToolLock {
    /// The lock file of the project whose config folder is `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(LOCK_FILE)
    }

    /// Read the lock in `dir`; `Ok(None)` when there is none.
    pub fn load(dir: &Path) -> Result<Option<ToolLock>, LockError> {
        let path = Self::path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(LockError::Read { path, source }),
        };
        let lock: ToolLock = serde_json::from_str(&text).map_err(|source| LockError::Parse {
            path: path.clone(),
            source,
        })?;
        if lock.version != 1 {
            return Err(LockError::Version {
                path,
                version: lock.version,
            });
        }
        Ok(Some(lock))
    }

    /// Write the lock in `dir` atomically (a temporary file in the same folder, renamed).
    pub fn save(&self, dir: &Path) -> Result<PathBuf, LockError> {
        let path = Self::path(dir);
        let write = |source| LockError::Write {
            path: path.clone(),
            source,
        };
        let mut text = serde_json::to_string_pretty(self).map_err(|e| write(e.into()))?;
        text.push('\n');
        atomic_write(&path, text.as_bytes()).map_err(write)?;
        Ok(path)
    }

    /// The locked digest of a tool (`None`: not in the lock).
    pub fn tool(&self, server: &str, name: &str) -> Option<&str> {
        self.servers
            .get(server)
            .and_then(|s| s.tools.get(name))
            .map(String::as_str)
    }
}

/// Write `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn digest_ignores_key_order_and_unpinned_fields() {
        let a = json!({"name": "t", "description": "d", "inputSchema": {"type": "object", "properties": {"a": {}, "b": {}}}});
        let b = json!({"inputSchema": {"properties": {"b": {}, "a": {}}, "type": "object"}, "description": "d", "name": "t", "title": "x"});
        assert_eq!(digest(ItemKind::Tool, &a), digest(ItemKind::Tool, &b));
        let c = json!({"name": "t", "description": "d!", "inputSchema": {"type": "object"}});
        assert_ne!(digest(ItemKind::Tool, &a), digest(ItemKind::Tool, &c));
        assert!(digest(ItemKind::Tool, &a).starts_with("sha256:"));
    }

    #[test]
    fn compare_reports_added_removed_changed() {
        let t = |n: &str, d: &str| json!({"name": n, "description": d});
        let then = ServerPins::of(&[t("a", "1"), t("b", "1")], &[]);
        let lock = ToolLock {
            version: 1,
            servers: [("s".to_string(), then)].into(),
        };
        let now: BTreeMap<_, _> = [(
            "s".to_string(),
            ServerPins::of(&[t("a", "2"), t("c", "1")], &[]),
        )]
        .into();
        let got: Vec<_> = compare(&lock, &now)
            .into_iter()
            .map(|c| (c.name, c.change))
            .collect();
        assert_eq!(got.len(), 3);
        assert!(got.contains(&("c".into(), ChangeKind::Added)));
        assert!(got.contains(&("b".into(), ChangeKind::Removed)));
        assert!(got.contains(&("a".into(), ChangeKind::Changed)));
        assert!(compare(&lock, &BTreeMap::new()).is_empty());
    }
}
