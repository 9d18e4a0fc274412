//! Process hardening: what keeps Fentaris' own secrets away from the upstream children it
//! runs (which may be any code, running as the same user).
//!
//! - [`take_reserved_env`]: at start, `FENTARIS_*` variables are read once, their values are
//!   wiped from the process' environment block (so `/proc/<pid>/environ` no longer shows
//!   them) and they are removed from the environment; later readers use [`var`].
//! - [`non_dumpable`]: `PR_SET_DUMPABLE 0`, so another process of the same (non-root) user can
//!   neither ptrace Fentaris nor read its `/proc/<pid>/{environ,mem,maps}`.
//! - [`child_sandbox`]: for every stdio child, `PR_SET_PDEATHSIG` (it dies with Fentaris,
//!   even on SIGKILL) and, where the kernel has Landlock, a ruleset under which the child
//!   cannot read the files of Fentaris' key folder, the vault or the audit log.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use zeroize::Zeroizing;

static RESERVED: OnceLock<HashMap<String, Zeroizing<String>>> = OnceLock::new();
static DENIED: OnceLock<Vec<PathBuf>> = OnceLock::new();

/// Read every `FENTARIS_*` variable, wipe its value in place and remove it from the
/// environment. Call first thing in `main`, before any other thread exists.
pub fn take_reserved_env() {
    let mut taken = HashMap::new();
    for (k, v) in std::env::vars_os() {
        let Some(name) = k.to_str().filter(|n| n.starts_with("FENTARIS_")) else {
            continue;
        };
        if let Some(value) = v.to_str() {
            taken.insert(name.to_string(), Zeroizing::new(value.to_string()));
        }
        #[cfg(unix)]
        if let Ok(c) = std::ffi::CString::new(name) {
            // SAFETY: single-threaded at this point (documented precondition); getenv returns
            // a pointer to the NUL-terminated value inside the environment block, which is
            // writable memory owned by this process. Overwriting it in place removes the
            // secret from /proc/<pid>/environ, which shows the original block.
            unsafe {
                let p = libc::getenv(c.as_ptr());
                if !p.is_null() {
                    let len = libc::strlen(p);
                    std::ptr::write_bytes(p, b'x', len);
                }
            }
        }
        // SAFETY: no other thread runs yet, so nothing reads the environment concurrently.
        unsafe { std::env::remove_var(name) };
    }
    let _ = RESERVED.set(taken);
}

/// A `FENTARIS_*` variable: as taken at start, or (when [`take_reserved_env`] was not
/// called, as in library use) from the environment.
pub fn var(name: &str) -> Option<String> {
    match RESERVED.get() {
        Some(m) => m.get(name).map(|v| v.to_string()),
        None => std::env::var(name).ok(),
    }
    .filter(|v| !v.is_empty())
}

/// Make this process non-dumpable (Linux): no ptrace, no `/proc/<pid>/environ` for
/// same-user processes. Root (CAP_SYS_PTRACE) is not stopped by this.
pub fn non_dumpable() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with integer arguments has no memory effects.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

/// Paths stdio children must not read (set once by `serve`).
pub fn deny_to_children(paths: Vec<PathBuf>) {
    let _ = DENIED.set(paths);
}

/// Whether this kernel enforces Landlock (ABI version, if so).
pub fn landlock_abi() -> Option<i64> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) only
        // returns the ABI version.
        let v = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<u8>(),
                0usize,
                1u32,
            )
        };
        (v > 0).then_some(v)
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// Directories and files under which reading is allowed when `denied` must not be read:
/// every sibling along the way down to each denied path (Landlock only grants, so a
/// denial is everything around it).
pub fn allowed_around(denied: &[PathBuf]) -> Vec<PathBuf> {
    fn walk(dir: &Path, denied: &[PathBuf], out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if denied.contains(&p) {
                continue;
            }
            if denied.iter().any(|d| d.starts_with(&p)) {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&p, denied, out);
                }
            } else {
                out.push(p);
            }
        }
    }
    let denied: Vec<PathBuf> = denied
        .iter()
        .filter_map(|d| std::fs::canonicalize(d).ok())
        .collect();
    let mut out = Vec::new();
    if denied.is_empty() {
        out.push(PathBuf::from("/"));
    } else {
        walk(Path::new("/"), &denied, &mut out);
    }
    out
}

/// What runs in a stdio child between fork and exec.
pub struct ChildSandbox {
    #[cfg(target_os = "linux")]
    ruleset: std::sync::Mutex<Option<landlock::RulesetCreated>>,
    parent: i32,
}

/// Prepare the child sandbox (in the parent: everything that allocates happens here).
pub fn child_sandbox() -> ChildSandbox {
    #[cfg(target_os = "linux")]
    let ruleset = DENIED
        .get()
        .filter(|d| !d.is_empty())
        .and_then(|d| build_ruleset(d).ok());
    ChildSandbox {
        #[cfg(target_os = "linux")]
        ruleset: std::sync::Mutex::new(ruleset),
        // SAFETY: getpid has no preconditions.
        parent: unsafe { libc::getpid() },
    }
}

#[cfg(target_os = "linux")]
fn build_ruleset(denied: &[PathBuf]) -> Result<landlock::RulesetCreated, landlock::RulesetError> {
    use landlock::{
        ABI, AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
        RulesetCreatedAttr,
    };
    let abi = ABI::V1;
    let read = AccessFs::ReadFile | AccessFs::ReadDir;
    let mut rs = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(read)?
        .create()?;
    for p in allowed_around(denied) {
        let Ok(fd) = PathFd::new(&p) else { continue };
        let access = if p.is_dir() {
            read
        } else {
            AccessFs::from_file(abi) & read
        };
        rs = rs.add_rule(PathBeneath::new(fd, access))?;
    }
    // Directories on the way to a denied path stay listable (names only, not contents).
    let mut ancestors: Vec<PathBuf> = denied
        .iter()
        .filter_map(|d| std::fs::canonicalize(d).ok())
        .flat_map(|d| {
            d.ancestors()
                .skip(1)
                .map(Path::to_path_buf)
                .collect::<Vec<_>>()
        })
        .collect();
    ancestors.sort();
    ancestors.dedup();
    for a in ancestors {
        if let Ok(fd) = PathFd::new(&a) {
            rs = rs.add_rule(PathBeneath::new(fd, AccessFs::ReadDir))?;
        }
    }
    Ok(rs)
}

impl ChildSandbox {
    /// Run in the child after fork: die with the parent; enforce the Landlock ruleset.
    pub fn apply(&self) -> std::io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: prctl/getppid are async-signal-safe syscalls.
            unsafe {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl.
                if libc::getppid() != self.parent {
                    libc::_exit(1);
                }
            }
            let taken = self.ruleset.lock().ok().and_then(|mut r| r.take());
            if let Some(rs) = taken {
                rs.restrict_self()
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siblings_of_denied_paths_are_allowed_and_the_path_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("keys")).unwrap();
        std::fs::create_dir_all(root.join("other")).unwrap();
        std::fs::write(root.join("file"), "x").unwrap();
        let allowed = allowed_around(&[root.join("keys")]);
        assert!(allowed.contains(&root.join("other")));
        assert!(allowed.contains(&root.join("file")));
        assert!(!allowed.iter().any(|p| p.starts_with(root.join("keys"))));
        assert!(
            !allowed.contains(&root),
            "an ancestor is walked, not granted whole"
        );
    }

    #[test]
    fn var_reads_the_environment_when_nothing_was_taken() {
        assert_eq!(var("FENTARIS_SURELY_NOT_SET_12345"), None);
    }
}
