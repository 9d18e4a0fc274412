//! The sealed checkpoint: where the audit chain ended the last time records were fsynced.
//!
//! Lines cut off the end of the newest file leave a chain that still verifies, so the writer
//! keeps, outside the log folder (`audit.checkpoint.json` beside the config), the last `seq`
//! and chain value it made durable, with the identity of the file. The checkpoint is sealed
//! with the chain's own key (HMAC-SHA256 under the vault's audit key; a plain SHA-256 without
//! a vault, which detects accidents, not forgers). `logs verify` compares the log with it, and
//! `serve` refuses to continue a log that ends before its checkpoint.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::chain::{ChainKey, split_line};

/// The checkpoint's file name, in the config's folder.
pub const FILE: &str = "audit.checkpoint.json";
/// What the MAC is computed "after": never a chain value (those are 64 hex digits), so a
/// checkpoint MAC can never be replayed as a chain link or the other way round.
const DOMAIN: &str = "fentaris/v1/audit-checkpoint";

/// The identity of the active file when the checkpoint was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
}

/// A checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Checkpoint {
    pub version: u32,
    /// The audit file, relative to the config's folder when it is inside it.
    pub log: String,
    pub algorithm: String,
    /// The last record made durable, and its chain value.
    pub seq: u64,
    pub chain: String,
    pub file: FileId,
    pub time: String,
    pub mac: String,
}

/// Why a checkpoint cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read the audit checkpoint {path}: {why}")]
    Unreadable { path: String, why: String },
    #[error(
        "the audit checkpoint {path} was edited or forged: {why}\nhelp: keep it as evidence; `fentaris logs verify` checks the log itself"
    )]
    Forged { path: String, why: String },
}

/// The name a checkpoint gives a log: relative to `dir` when inside it.
pub fn log_name(dir: &Path, log: &Path) -> String {
    log.strip_prefix(dir)
        .unwrap_or(log)
        .to_string_lossy()
        .into_owned()
}

fn mac_of(key: &ChainKey, cp: &Checkpoint) -> String {
    let mut v = serde_json::to_value(cp).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.remove("mac");
    }
    let canonical = serde_jcs::to_string(&v).unwrap_or_default();
    key.link(DOMAIN, &canonical)
}

impl Checkpoint {
    /// A sealed checkpoint.
    pub fn seal(key: &ChainKey, log: String, seq: u64, chain: String, file: FileId) -> Self {
        let mut cp = Checkpoint {
            version: 1,
            log,
            algorithm: key.algorithm().to_string(),
            seq,
            chain,
            file,
            time: super::record::now_rfc3339(),
            mac: String::new(),
        };
        cp.mac = mac_of(key, &cp);
        cp
    }

    /// Parse and check the seal. `path` only names the file in errors.
    pub fn open(text: &str, key: &ChainKey, path: &Path) -> Result<Checkpoint, CheckpointError> {
        let forged = |why: String| CheckpointError::Forged {
            path: path.display().to_string(),
            why,
        };
        let cp: Checkpoint = serde_json::from_str(text)
            .map_err(|e| forged(format!("it is not a checkpoint ({e})")))?;
        if cp.algorithm != key.algorithm() {
            return Err(forged(format!(
                "it is sealed with `{}`, but this log is chained with `{}`",
                cp.algorithm,
                key.algorithm()
            )));
        }
        let want = mac_of(key, &cp);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            want.as_bytes(),
            cp.mac.as_bytes(),
        )) {
            return Err(forged(
                "its MAC does not match its content (or it was sealed with another key)".into(),
            ));
        }
        Ok(cp)
    }

    /// Read `path` (never through a symlink). `Ok(None)` when there is no checkpoint.
    pub fn load(path: &Path, key: &ChainKey) -> Result<Option<Checkpoint>, CheckpointError> {
        let unreadable = |why: String| CheckpointError::Unreadable {
            path: path.display().to_string(),
            why,
        };
        let text = match read_nofollow(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(unreadable(no_symlink_message(&e))),
        };
        Checkpoint::open(&text, key, path).map(Some)
    }

    /// Write atomically (temp file in the same folder, fsync, rename, fsync the folder).
    pub fn store(&self, path: &Path) -> std::io::Result<()> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new()
            .prefix(".audit.checkpoint.")
            .tempfile_in(dir)?;
        let mut text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        text.push('\n');
        tmp.write_all(text.as_bytes())?;
        tmp.as_file().sync_data()?;
        tmp.persist(path).map_err(|e| e.error)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// The checkpoint of the log `log` in config folder `dir`.
pub fn path_for(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Read a file without following a symlink at its last component.
pub fn read_nofollow(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = open_read_nofollow(path)?;
    let mut s = String::new();
    f.read_to_string(&mut s)?;
    Ok(s)
}

/// Open for reading; a symlink is refused (ELOOP).
pub fn open_read_nofollow(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut o, libc::O_NOFOLLOW);
    o.open(path)
}

/// An I/O error, with "it is a symbolic link" spelled out for ELOOP.
pub fn no_symlink_message(e: &std::io::Error) -> String {
    if e.raw_os_error() == Some(libc::ELOOP) {
        "it is a symbolic link, which Fentaris refuses for audit files (replace it with the file itself)".into()
    } else {
        e.to_string()
    }
}

/// What comparing a verified log with its checkpoint found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The log ends before the checkpoint: its tail was cut off.
    Truncated {
        last_seq: Option<u64>,
        expected: u64,
    },
    /// The record at the checkpoint's `seq` has another chain value: the log was replaced.
    Replaced { seq: u64 },
}

impl Finding {
    pub fn message(&self, file: &str) -> String {
        match self {
            Finding::Truncated { last_seq, expected } => format!(
                "{file}: the log was truncated: it ends at seq {} but the checkpoint says records up to seq {expected} were written (expected last seq {expected} or later)",
                last_seq.map_or("-".to_string(), |s| s.to_string()),
            ),
            Finding::Replaced { seq } => format!(
                "{file}: the log was replaced: the record with seq {seq} does not have the chain value the checkpoint holds"
            ),
        }
    }
}

/// Compare a verified set (files oldest first, each as its lines; `last_seq` from
/// verification) with a checkpoint. Pure.
pub fn compare(cp: &Checkpoint, files: &[Vec<String>], last_seq: Option<u64>) -> Option<Finding> {
    if last_seq.is_none_or(|s| s < cp.seq) {
        return Some(Finding::Truncated {
            last_seq,
            expected: cp.seq,
        });
    }
    let value_at = files
        .iter()
        .rev()
        .flat_map(|f| f.iter().rev())
        .find_map(|l| {
            let (body, value) = split_line(l)?;
            let v: Value = serde_json::from_str(&format!("{body}}}")).ok()?;
            (v.get("seq")?.as_u64()? == cp.seq).then(|| value.to_string())
        });
    match value_at {
        Some(v) if v == cp.chain => None,
        // The record is in a file older than the verified set: nothing to compare.
        None if files
            .first()
            .and_then(|f| f.first())
            .and_then(|l| split_line(l))
            .and_then(|(b, _)| serde_json::from_str::<Value>(&format!("{b}}}")).ok())
            .and_then(|v| v.get("seq")?.as_u64())
            .is_some_and(|first| first > cp.seq) =>
        {
            None
        }
        _ => Some(Finding::Replaced { seq: cp.seq }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::{GENESIS, Link};
    use crate::secret::SecretKey;

    fn key() -> ChainKey {
        ChainKey::Hmac(SecretKey::from_bytes([3; 32]))
    }

    fn id() -> FileId {
        FileId {
            dev: 1,
            ino: 2,
            size: 3,
        }
    }

    #[test]
    fn a_checkpoint_round_trips_and_edits_are_refused() {
        let k = key();
        let cp = Checkpoint::seal(&k, "logs/audit.jsonl".into(), 5, "ab".repeat(32), id());
        let text = serde_json::to_string(&cp).unwrap();
        let p = Path::new("cp.json");
        assert_eq!(Checkpoint::open(&text, &k, p).unwrap(), cp);
        let edited = text.replace("\"seq\":5", "\"seq\":4");
        assert!(matches!(
            Checkpoint::open(&edited, &k, p),
            Err(CheckpointError::Forged { .. })
        ));
        let other = ChainKey::Hmac(SecretKey::from_bytes([4; 32]));
        assert!(Checkpoint::open(&text, &other, p).is_err());
        // Resealed with a plain hash by someone without the key: refused by algorithm.
        let forged = Checkpoint::seal(&ChainKey::Sha256, cp.log.clone(), 4, cp.chain, id());
        let e = Checkpoint::open(&serde_json::to_string(&forged).unwrap(), &k, p).unwrap_err();
        assert!(e.to_string().contains("sha256"), "{e}");
        assert!(Checkpoint::open("{", &k, p).is_err());
    }

    #[test]
    fn store_and_load_and_symlinks_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = path_for(d.path());
        let k = key();
        assert_eq!(Checkpoint::load(&p, &k).unwrap(), None);
        let cp = Checkpoint::seal(&k, "a".into(), 1, GENESIS.into(), id());
        cp.store(&p).unwrap();
        assert_eq!(Checkpoint::load(&p, &k).unwrap(), Some(cp));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let l = d.path().join("link.json");
            std::os::unix::fs::symlink(&p, &l).unwrap();
            let e = Checkpoint::load(&l, &k).unwrap_err();
            assert!(e.to_string().contains("symbolic link"), "{e}");
        }
    }

    fn lines(k: &ChainKey, n: u64) -> Vec<String> {
        let mut l = Link::genesis();
        (0..n)
            .map(|i| l.seal(k, format!(r#"{{"seq":{i},"event":"x"}}"#)))
            .collect()
    }

    #[test]
    fn compare_finds_cut_tails_and_replaced_logs() {
        let k = key();
        let all = lines(&k, 6);
        let (_, v4) = split_line(&all[4]).unwrap();
        let cp = Checkpoint::seal(&k, "a".into(), 4, v4.into(), id());
        assert_eq!(compare(&cp, std::slice::from_ref(&all), Some(5)), None);
        assert_eq!(compare(&cp, &[all[..5].to_vec()], Some(4)), None);
        assert_eq!(
            compare(&cp, &[all[..3].to_vec()], Some(2)),
            Some(Finding::Truncated {
                last_seq: Some(2),
                expected: 4
            })
        );
        assert!(matches!(
            compare(&cp, &[vec![]], None),
            Some(Finding::Truncated { .. })
        ));
        let other = lines(&ChainKey::Sha256, 6);
        assert_eq!(
            compare(&cp, &[other], Some(5)),
            Some(Finding::Replaced { seq: 4 })
        );
        let m = Finding::Truncated {
            last_seq: Some(2),
            expected: 4,
        }
        .message("audit.jsonl");
        assert!(
            m.contains("audit.jsonl") && m.contains("expected last seq 4"),
            "{m}"
        );
    }
}
