//! Process hardening: what keeps Fentaris' own secrets away from the upstream children it
//! runs (which may be any code, running as the same user).
//!
//! - [`take_reserved_env`]: at start, `FENTARIS_*` variables are read once, their values are
//!   wiped from the process' environment block (so `/proc/<pid>/environ` no longer shows
//!   them) and they are removed from the environment; later readers use [`var`].
//! - [`non_dumpable`]: `PR_SET_DUMPABLE 0`, so another process of the same (non-root) user can
//!   neither ptrace Fentaris nor read its `/proc/<pid>/{environ,mem,maps}`.
//! - [`protect_from_children`] (once, by `serve`) and [`child_sandbox`] (per stdio child):
//!   `PR_SET_PDEATHSIG` (the child dies with Fentaris, even on SIGKILL); its own mount
//!   namespace (and user namespace when not root) in which `.fentaris/`, the key folder and
//!   an external audit folder are hidden under empty read-only tmpfs mounts and a key file
//!   under `/dev/null`; then a Landlock domain: signal and abstract-socket scopes, no mount or
//!   umount, no ptrace outside it. Without the namespace, Landlock alone keeps those paths
//!   read-only and unreadable. What is in force: [`sandbox_report`] (docs/security.md).

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

/// How a protected path is covered in a stdio child's mount namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cover {
    /// A folder bound read-only onto itself: readable, but nothing in it can be written,
    /// created, renamed, truncated or deleted, and the folder itself cannot be renamed (it
    /// is a mount point).
    ReadOnly(PathBuf),
    /// A folder hidden under an empty read-only tmpfs (no read, no write).
    Hidden(PathBuf),
    /// A single file covered by `/dev/null` on a read-only `nodev` bind: it cannot be
    /// opened, renamed or deleted.
    Blocked(PathBuf),
}

impl Cover {
    pub fn path(&self) -> &Path {
        match self {
            Cover::ReadOnly(p) | Cover::Hidden(p) | Cover::Blocked(p) => p,
        }
    }
    fn how(&self) -> &'static str {
        match self {
            Cover::ReadOnly(_) => "read-only",
            Cover::Hidden(_) => "hidden",
            Cover::Blocked(_) => "blocked",
        }
    }
    fn rank(&self) -> u8 {
        match self {
            Cover::ReadOnly(_) => 0,
            Cover::Blocked(_) => 1,
            Cover::Hidden(_) => 2,
        }
    }
}

/// The order the covers are mounted in (pure): read-only folders first (outer before
/// inner), then single files, then hidden folders (outer before inner); a path under a
/// hidden folder is dropped (it is hidden already, and could not be reached to mount on),
/// and so are duplicates.
pub fn plan_covers(mut covers: Vec<Cover>) -> Vec<Cover> {
    covers.sort_by(|a, b| {
        (a.rank(), a.path().components().count(), a.path()).cmp(&(
            b.rank(),
            b.path().components().count(),
            b.path(),
        ))
    });
    let hidden: Vec<PathBuf> = covers
        .iter()
        .filter_map(|c| match c {
            Cover::Hidden(p) => Some(p.clone()),
            _ => None,
        })
        .collect();
    let mut out: Vec<Cover> = Vec::new();
    for c in covers {
        let under_hidden = hidden
            .iter()
            .any(|h| c.path().starts_with(h) && !(matches!(c, Cover::Hidden(_)) && c.path() == h));
        if under_hidden || out.iter().any(|o| o.path() == c.path()) {
            continue;
        }
        out.push(c);
    }
    out
}

/// One protected path as `/readyz?verbose` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Protected {
    pub path: String,
    pub how: &'static str,
}

/// Which protections stdio children run under (logged at start, shown by `/readyz?verbose`).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxReport {
    /// Children get their own mount namespace with the covers below.
    pub mount_namespace: bool,
    /// ... inside their own user namespace (Fentaris runs as a non-root user).
    pub user_namespace: bool,
    /// Why there is no mount namespace, when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mount_namespace_error: Option<String>,
    /// The kernel's Landlock ABI (none: no Landlock).
    pub landlock_abi: Option<i64>,
    /// Children cannot signal Fentaris nor reach abstract UNIX sockets outside their
    /// sandbox (Landlock ABI 6 and later).
    pub scoped: bool,
    /// What keeps children from writing the protected paths: `mount-namespace`,
    /// `landlock` (new files cannot be created directly in their parent folders either) or
    /// `none`.
    pub write_protection: &'static str,
    pub protects: Vec<Protected>,
    /// Paths that could not be protected, and why.
    pub unprotected: Vec<String>,
}

impl SandboxReport {
    /// The one-line summary for the start log; `warn` when a protection is missing.
    pub fn summary(&self) -> (bool, String) {
        let paths: Vec<String> = self
            .protects
            .iter()
            .map(|p| format!("{} ({})", p.path, p.how))
            .collect();
        let mut warn = self.write_protection == "none" || !self.scoped;
        let mut line = format!(
            "stdio child sandbox: writes blocked by {}; Landlock {}; signals and ptrace to Fentaris {}; protected: {}",
            self.write_protection,
            self.landlock_abi
                .map_or("unavailable".to_string(), |v| format!("ABI {v}")),
            if self.scoped {
                "blocked"
            } else {
                "NOT blocked (needs Landlock ABI 6)"
            },
            if paths.is_empty() {
                "nothing".to_string()
            } else {
                paths.join(", ")
            }
        );
        if let Some(e) = &self.mount_namespace_error {
            line.push_str(&format!("; no mount namespace: {e}"));
        }
        if !self.unprotected.is_empty() {
            warn = true;
            line.push_str(&format!("; NOT protected: {}", self.unprotected.join("; ")));
        }
        (warn, line)
    }
}

struct Protection {
    covers: Vec<Cover>,
    #[cfg(target_os = "linux")]
    ns: Option<NsPlan>,
    report: SandboxReport,
}

static PROTECTION: OnceLock<Protection> = OnceLock::new();

/// The sandbox in force (after [`protect_from_children`]).
pub fn sandbox_report() -> Option<&'static SandboxReport> {
    PROTECTION.get().map(|p| &p.report)
}

/// Set once by `serve`: the paths stdio children must not write (nor, for hidden and
/// blocked ones, read). Prepares the mount namespace plan, tries it once in a throwaway
/// child, and returns what is in force. `missing` lists paths that should be protected
/// but do not exist (reported, not covered).
pub fn protect_from_children(covers: Vec<Cover>, missing: Vec<String>) -> &'static SandboxReport {
    let mut unprotected = missing;
    let mut present = Vec::new();
    for c in covers {
        match std::fs::canonicalize(c.path()) {
            Ok(p) => present.push(match c {
                Cover::ReadOnly(_) => Cover::ReadOnly(p),
                Cover::Hidden(_) => Cover::Hidden(p),
                Cover::Blocked(_) => Cover::Blocked(p),
            }),
            Err(e) => unprotected.push(format!("{}: {e}", c.path().display())),
        }
    }
    let covers = plan_covers(present);
    let abi = landlock_abi();
    #[cfg(target_os = "linux")]
    let (ns, ns_error) = if covers.is_empty() {
        (None, Some("nothing to protect".to_string()))
    } else {
        match NsPlan::new(&covers).and_then(|plan| plan.probe().map(|()| plan)) {
            Ok(plan) => (Some(plan), None),
            Err(e) => (None, Some(e)),
        }
    };
    #[cfg(not(target_os = "linux"))]
    let (ns_ok, ns_error) = (false, Some("not Linux".to_string()));
    #[cfg(target_os = "linux")]
    let ns_ok = ns.is_some();
    #[cfg(target_os = "linux")]
    if ns.as_ref().is_some_and(|n| !n.userns) && abi.is_none() {
        unprotected.push(
            "the covers themselves: children of a root Fentaris can unmount them when the kernel has no Landlock".to_string(),
        );
    }
    let report = SandboxReport {
        mount_namespace: ns_ok,
        #[cfg(target_os = "linux")]
        user_namespace: ns.as_ref().is_some_and(|n| n.userns),
        #[cfg(not(target_os = "linux"))]
        user_namespace: false,
        mount_namespace_error: ns_error,
        landlock_abi: abi,
        scoped: abi.is_some_and(|v| v >= 6),
        write_protection: if ns_ok {
            "mount-namespace"
        } else if abi.is_some() {
            "landlock"
        } else {
            "none"
        },
        protects: covers
            .iter()
            .map(|c| Protected {
                path: c.path().display().to_string(),
                how: if ns_ok { c.how() } else { "landlock-read-only" },
            })
            .collect(),
        unprotected,
    };
    let _ = PROTECTION.set(Protection {
        covers,
        #[cfg(target_os = "linux")]
        ns,
        report,
    });
    &PROTECTION.get().expect("set just above").report
}

/// The mount namespace a child enters (prepared in the parent: nothing allocates after
/// fork).
#[cfg(target_os = "linux")]
struct NsPlan {
    userns: bool,
    setgroups: std::ffi::CString,
    uid_map_path: std::ffi::CString,
    gid_map_path: std::ffi::CString,
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    root: std::ffi::CString,
    ops: Vec<MountOp>,
}

#[cfg(target_os = "linux")]
struct MountOp {
    source: Option<std::ffi::CString>,
    target: std::ffi::CString,
    fstype: Option<std::ffi::CString>,
    flags: libc::c_ulong,
    data: Option<std::ffi::CString>,
    /// For error messages (parent side).
    what: String,
}

/// The mount flags a bind remount must keep (a user namespace cannot clear the locked ones).
#[cfg(target_os = "linux")]
fn kept_flags(p: &Path) -> libc::c_ulong {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return 0;
    };
    // SAFETY: statvfs writes into the zeroed struct we pass; the path is NUL-terminated.
    let f = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return 0;
        }
        st.f_flag
    };
    let mut out = 0;
    for (from, to) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if f & from != 0 {
            out |= to;
        }
    }
    if out & (libc::MS_NOATIME | libc::MS_RELATIME) == 0 {
        out |= libc::MS_STRICTATIME;
    }
    out
}

#[cfg(target_os = "linux")]
impl NsPlan {
    fn new(covers: &[Cover]) -> Result<NsPlan, String> {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| {
            CString::new(p.as_os_str().as_bytes())
                .map_err(|_| format!("{}: a path with a NUL byte", p.display()))
        };
        let lit = |s: &str| CString::new(s).expect("no NUL in a literal");
        let mut ops = Vec::new();
        for cover in covers {
            let p = cover.path();
            let target = c(p)?;
            match cover {
                Cover::ReadOnly(_) => {
                    ops.push(MountOp {
                        source: Some(target.clone()),
                        target: target.clone(),
                        fstype: None,
                        flags: libc::MS_BIND | libc::MS_REC,
                        data: None,
                        what: format!("bind {}", p.display()),
                    });
                    ops.push(MountOp {
                        source: None,
                        target,
                        fstype: None,
                        flags: libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | kept_flags(p),
                        data: None,
                        what: format!("make {} read-only", p.display()),
                    });
                }
                Cover::Hidden(_) => ops.push(MountOp {
                    source: Some(lit("tmpfs")),
                    target,
                    fstype: Some(lit("tmpfs")),
                    flags: libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    data: Some(lit("size=4k,mode=0555")),
                    what: format!("hide {} under a tmpfs", p.display()),
                }),
                Cover::Blocked(_) => {
                    ops.push(MountOp {
                        source: Some(lit("/dev/null")),
                        target: target.clone(),
                        fstype: None,
                        flags: libc::MS_BIND,
                        data: None,
                        what: format!("cover {} with /dev/null", p.display()),
                    });
                    ops.push(MountOp {
                        source: None,
                        target,
                        fstype: None,
                        flags: libc::MS_REMOUNT
                            | libc::MS_BIND
                            | libc::MS_RDONLY
                            | kept_flags(Path::new("/dev/null"))
                            | libc::MS_NODEV
                            | libc::MS_NOSUID
                            | libc::MS_NOEXEC,
                        data: None,
                        what: format!("make the cover of {} read-only", p.display()),
                    });
                }
            }
        }
        // SAFETY: geteuid/getegid have no preconditions.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        Ok(NsPlan {
            userns: uid != 0,
            setgroups: lit("/proc/self/setgroups"),
            uid_map_path: lit("/proc/self/uid_map"),
            gid_map_path: lit("/proc/self/gid_map"),
            // The same ids inside: file ownership and permissions are unchanged.
            uid_map: format!("{uid} {uid} 1").into_bytes(),
            gid_map: format!("{gid} {gid} 1").into_bytes(),
            root: lit("/"),
            ops,
        })
    }

    /// Describe a failure of [`enter`](Self::enter) (parent side).
    fn describe(&self, stage: usize, errno: i32) -> String {
        let what = match stage {
            0 => "unshare the user and mount namespaces".to_string(),
            1 => "write /proc/self/setgroups".to_string(),
            2 => "write /proc/self/uid_map".to_string(),
            3 => "write /proc/self/gid_map".to_string(),
            4 => "make the mounts private".to_string(),
            n => self
                .ops
                .get(n - 5)
                .map_or_else(|| "mount".to_string(), |o| o.what.clone()),
        };
        format!("{what}: {}", std::io::Error::from_raw_os_error(errno))
    }

    /// In a child after fork: own mount namespace (and user namespace when not root),
    /// nothing propagating back, then the covers. Only syscalls on prepared data.
    /// Err: (stage, errno).
    fn enter(&self) -> Result<(), (usize, i32)> {
        let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        // SAFETY: every call is a plain syscall on NUL-terminated strings and buffers
        // prepared in the parent; nothing allocates or takes a lock.
        unsafe {
            if self.userns {
                // Writing our own uid_map needs /proc/self to be ours: a non-dumpable
                // process' /proc files belong to root. Dumpable again only until the maps
                // are written (this copy of Fentaris' memory is replaced by exec anyway).
                libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);
                if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) != 0 {
                    return Err((0, errno()));
                }
                for (stage, path, data) in [
                    (1, &self.setgroups, &b"deny"[..]),
                    (2, &self.uid_map_path, &self.uid_map[..]),
                    (3, &self.gid_map_path, &self.gid_map[..]),
                ] {
                    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 {
                        return Err((stage, errno()));
                    }
                    let n = libc::write(fd, data.as_ptr().cast(), data.len());
                    let e = errno();
                    libc::close(fd);
                    if n != data.len() as isize {
                        return Err((stage, e));
                    }
                }
                libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
            } else if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err((0, errno()));
            }
            let null = std::ptr::null::<libc::c_char>();
            if libc::mount(
                null,
                self.root.as_ptr(),
                null,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err((4, errno()));
            }
            for (i, op) in self.ops.iter().enumerate() {
                let r = libc::mount(
                    op.source.as_ref().map_or(null, |s| s.as_ptr()),
                    op.target.as_ptr(),
                    op.fstype.as_ref().map_or(null, |s| s.as_ptr()),
                    op.flags,
                    op.data
                        .as_ref()
                        .map_or(std::ptr::null(), |s| s.as_ptr().cast()),
                );
                if r != 0 {
                    return Err((5 + i, errno()));
                }
            }
        }
        Ok(())
    }

    /// Enter the plan once in a throwaway child, so a start says whether it works (and why
    /// not) instead of every spawn failing.
    fn probe(&self) -> Result<(), String> {
        let mut fds = [0i32; 2];
        // SAFETY: fork in a (possibly) multi-threaded process: the child only makes
        // syscalls (enter, write, _exit) on memory prepared before the fork.
        unsafe {
            if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
                return Err(format!("pipe: {}", std::io::Error::last_os_error()));
            }
            let pid = libc::fork();
            if pid < 0 {
                let e = std::io::Error::last_os_error();
                libc::close(fds[0]);
                libc::close(fds[1]);
                return Err(format!("fork: {e}"));
            }
            if pid == 0 {
                libc::close(fds[0]);
                let code = match self.enter() {
                    Ok(()) => [0u64; 2],
                    Err((stage, errno)) => [stage as u64 + 1, errno as u64],
                };
                libc::write(fds[1], code.as_ptr().cast(), 16);
                libc::_exit(0);
            }
            libc::close(fds[1]);
            let mut code = [0u64; 2];
            let n = libc::read(fds[0], code.as_mut_ptr().cast(), 16);
            libc::close(fds[0]);
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            if n != 16 {
                return Err("the probe child died".to_string());
            }
            if code[0] == 0 {
                Ok(())
            } else {
                Err(self.describe(code[0] as usize - 1, code[1] as i32))
            }
        }
    }
}

/// What runs in a stdio child between fork and exec.
pub struct ChildSandbox {
    /// The ruleset, or why it could not be built (the child then refuses to run).
    #[cfg(target_os = "linux")]
    ruleset: std::sync::Mutex<Ruleset>,
    #[cfg(target_os = "linux")]
    ns: Option<&'static NsPlan>,
    /// Room for the child's working directory (see [`ChildSandbox::apply`]).
    #[cfg(target_os = "linux")]
    cwd: std::sync::Mutex<Vec<u8>>,
    parent: i32,
}

#[cfg(target_os = "linux")]
impl ChildSandbox {
    fn new(ruleset: Ruleset, ns: Option<&'static NsPlan>) -> ChildSandbox {
        ChildSandbox {
            ruleset: std::sync::Mutex::new(ruleset),
            ns,
            cwd: std::sync::Mutex::new(vec![0; libc::PATH_MAX as usize + 1]),
            // SAFETY: getpid has no preconditions.
            parent: unsafe { libc::getpid() },
        }
    }
}

/// Refuse, with a message, a child that would start inside (or from) a folder the sandbox
/// hides: it could not work there, and a working directory inside a folder hidden after it
/// was entered would still see what is under the cover.
pub fn check_child_paths(command: &str, cwd: Option<&Path>) -> Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        let Some(p) = PROTECTION.get().filter(|p| p.ns.is_some()) else {
            return Ok(());
        };
        let wd = cwd
            .map(Path::to_path_buf)
            .or_else(|| std::env::current_dir().ok());
        let cmd = Path::new(command);
        let candidates = [
            wd.as_deref().map(|w| ("working directory", w)),
            cmd.is_absolute().then_some(("command", cmd)),
        ];
        for (what, path) in candidates.into_iter().flatten() {
            let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
            if let Some(c) = p
                .covers
                .iter()
                .find(|c| matches!(c, Cover::Hidden(_)) && real.starts_with(c.path()))
            {
                return Err(format!(
                    "its {what} {} is inside {}, which the stdio child sandbox hides from upstreams\nhelp: keep upstream programs and their `cwd` outside it (`cwd` is relative to the config's folder: \"..\" is the project folder)",
                    path.display(),
                    c.path().display()
                ));
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (command, cwd);
    Ok(())
}

#[cfg(target_os = "linux")]
type Ruleset = Result<landlock::RulesetCreated, std::io::Error>;

/// Prepare the child sandbox (in the parent: everything that allocates happens here).
pub fn child_sandbox() -> ChildSandbox {
    #[cfg(target_os = "linux")]
    let (ruleset, ns) = {
        let protection = PROTECTION.get();
        let ns = protection.and_then(|p| p.ns.as_ref());
        // Without a mount namespace, Landlock keeps the protected paths from being written
        // (and new files from being created directly in their parent folders).
        let write_protect: Vec<PathBuf> = match (protection, ns) {
            (Some(p), None) => p.covers.iter().map(|c| c.path().to_path_buf()).collect(),
            _ => Vec::new(),
        };
        // With the mount namespace, the covers also keep children from reading the
        // protected paths: no per-path Landlock rules (they would make new files in the
        // folders above them unreadable).
        let denied = match ns {
            Some(_) => &[][..],
            None => DENIED.get().map(Vec::as_slice).unwrap_or(&[]),
        };
        (prepared_ruleset(denied, &write_protect), ns)
    };
    #[cfg(target_os = "linux")]
    return ChildSandbox::new(ruleset, ns);
    #[cfg(not(target_os = "linux"))]
    ChildSandbox {
        // SAFETY: getpid has no preconditions.
        parent: unsafe { libc::getpid() },
    }
}

#[cfg(target_os = "linux")]
fn prepared_ruleset(denied: &[PathBuf], write_protect: &[PathBuf]) -> Ruleset {
    build_ruleset(denied, write_protect)
        .map_err(|e| std::io::Error::other(format!("the Landlock ruleset cannot be built: {e}")))
}

/// The Landlock ruleset of a child: reading `denied` is refused; with `write_protect`,
/// writing there too; signals and abstract UNIX sockets are scoped to the child's domain
/// (ABI 6). Handling file access at all also forbids mount and umount, and a Landlock
/// domain cannot ptrace (or read `/proc/<pid>/{mem,root,...}` of) a process outside it.
#[cfg(target_os = "linux")]
fn build_ruleset(
    denied: &[PathBuf],
    write_protect: &[PathBuf],
) -> Result<landlock::RulesetCreated, landlock::RulesetError> {
    use landlock::{
        ABI, Access, AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
        RulesetCreatedAttr, Scope,
    };
    let abi = ABI::V3;
    let read = AccessFs::ReadFile | AccessFs::ReadDir;
    let write = AccessFs::from_write(abi);
    let handled = match (denied.is_empty(), write_protect.is_empty()) {
        // Nothing to deny by path: handle only making block devices (granted nowhere), so
        // the domain still forbids mount and umount.
        (true, true) => AccessFs::MakeBlock.into(),
        (false, true) => read,
        (true, false) => write,
        (false, false) => read | write,
    };
    let mut rs = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(handled)?
        .scope(Scope::from_all(ABI::V6))?
        .create()?;
    for (paths, rights) in [(denied, read), (write_protect, write)] {
        if paths.is_empty() || !handled.contains(rights) {
            continue;
        }
        for p in allowed_around(paths) {
            let Ok(fd) = PathFd::new(&p) else { continue };
            let access = if p.is_dir() {
                rights
            } else {
                AccessFs::from_file(abi) & rights
            };
            rs = rs.add_rule(PathBeneath::new(fd, access))?;
        }
    }
    // Directories on the way to a path denied reading stay listable (names only, not
    // contents).
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
    /// Run in the child after fork: die with the parent; enter the mount namespace; enforce
    /// the Landlock ruleset.
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
            // Fail closed: a child that cannot enter the namespace the start probe entered
            // does not run.
            if let Some(ns) = self.ns {
                ns.enter()
                    .map_err(|(_, errno)| std::io::Error::from_raw_os_error(errno))?;
                // The working directory was entered before the covers were mounted, so it
                // still refers to what is under them: enter it again through the new mount
                // table (fail closed if it is now hidden).
                if let Ok(mut buf) = self.cwd.lock() {
                    // SAFETY: getcwd writes at most buf.len() bytes (NUL included) into our
                    // buffer; chdir reads the NUL-terminated path it wrote.
                    unsafe {
                        if libc::getcwd(buf.as_mut_ptr().cast(), buf.len()).is_null()
                            || libc::chdir(buf.as_ptr().cast()) != 0
                        {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                }
            }
            let taken = self.ruleset.lock().ok().map(|mut r| {
                std::mem::replace(
                    &mut *r,
                    Err(std::io::Error::from_raw_os_error(libc::EINVAL)),
                )
            });
            match taken {
                Some(Ok(rs)) => {
                    rs.restrict_self()
                        .map_err(|e| std::io::Error::other(e.to_string()))?;
                }
                Some(Err(e)) => return Err(e),
                None => return Err(std::io::Error::from_raw_os_error(libc::EINVAL)),
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
    fn covers_are_ordered_outer_first_and_paths_under_a_hidden_folder_are_dropped() {
        let p = |s: &str| PathBuf::from(s);
        let plan = plan_covers(vec![
            Cover::Hidden(p("/p/.fentaris/logs")),
            Cover::Blocked(p("/k/key")),
            Cover::Hidden(p("/p/.fentaris")),
            Cover::ReadOnly(p("/q/config.json")),
            Cover::Blocked(p("/p/.fentaris/vault")),
            Cover::Hidden(p("/x/keys")),
            Cover::Hidden(p("/x/keys")),
        ]);
        assert_eq!(
            plan,
            vec![
                Cover::ReadOnly(p("/q/config.json")),
                Cover::Blocked(p("/k/key")),
                Cover::Hidden(p("/p/.fentaris")),
                Cover::Hidden(p("/x/keys")),
            ]
        );
    }

    fn report(write: &'static str, abi: Option<i64>, unprotected: Vec<String>) -> SandboxReport {
        SandboxReport {
            mount_namespace: write == "mount-namespace",
            user_namespace: false,
            mount_namespace_error: None,
            landlock_abi: abi,
            scoped: abi.is_some_and(|v| v >= 6),
            write_protection: write,
            protects: vec![Protected {
                path: "/p/.fentaris".into(),
                how: "hidden",
            }],
            unprotected,
        }
    }

    #[test]
    fn the_start_line_warns_when_a_protection_is_missing() {
        let (warn, line) = report("mount-namespace", Some(7), vec![]).summary();
        assert!(!warn, "{line}");
        assert!(line.contains("/p/.fentaris (hidden)"), "{line}");
        let (warn, line) = report("mount-namespace", Some(5), vec![]).summary();
        assert!(warn && line.contains("NOT blocked"), "{line}");
        assert!(report("none", None, vec![]).summary().0);
        let (warn, line) = report("landlock", Some(7), vec!["/k: gone".into()]).summary();
        assert!(warn && line.contains("NOT protected: /k: gone"), "{line}");
        let json = serde_json::to_value(report("none", None, vec![])).unwrap();
        assert_eq!(json["writeProtection"], "none");
        assert_eq!(json["landlockAbi"], serde_json::Value::Null);
    }

    /// A shell script that exits 1 at the first of `must_fail` that succeeds or the first
    /// of `must_work` that fails.
    fn checks(must_fail: &[String], must_work: &[String]) -> String {
        let mut s = String::new();
        for c in must_fail {
            s.push_str(&format!(
                "if ({c}) 2>/dev/null; then echo \"succeeded: {c}\"; exit 1; fi\n"
            ));
        }
        for c in must_work {
            s.push_str(&format!(
                "if ! ({c}); then echo \"failed: {c}\"; exit 1; fi\n"
            ));
        }
        s
    }

    /// Run `script` under `sh` in a child with `sandbox` applied; its exit code.
    #[cfg(target_os = "linux")]
    fn sandboxed_sh(sandbox: ChildSandbox, script: &str) -> i32 {
        sandboxed_sh_in(sandbox, script, None)
    }

    #[cfg(target_os = "linux")]
    fn sandboxed_sh_in(sandbox: ChildSandbox, script: &str, cwd: Option<&Path>) -> i32 {
        use std::os::unix::process::CommandExt as _;
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.args(["-c", script]);
        if let Some(d) = cwd {
            cmd.current_dir(d);
        }
        // SAFETY: apply only makes syscalls on data prepared before the fork.
        unsafe {
            cmd.pre_exec(move || sandbox.apply());
        }
        cmd.status().unwrap().code().unwrap_or(-1)
    }

    #[cfg(target_os = "linux")]
    fn project() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(root.join(".fentaris")).unwrap();
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join(".fentaris/config.json"), "{}").unwrap();
        (dir, root)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn in_the_mount_namespace_the_folder_is_hidden_and_the_project_writable() {
        let (_dir, root) = project();
        std::fs::write(root.join("key"), "secret").unwrap();
        let plan = NsPlan::new(&[
            Cover::Hidden(root.join(".fentaris")),
            Cover::Blocked(root.join("key")),
        ])
        .unwrap();
        if let Err(e) = plan.probe() {
            panic!("no mount namespace here: {e}");
        }
        let plan: &'static NsPlan = Box::leak(Box::new(plan));
        let sandbox = ChildSandbox::new(prepared_ruleset(&[], &[]), Some(plan));
        let r = root.display();
        let code = sandboxed_sh(
            sandbox,
            &checks(
                &[
                    format!("echo x > {r}/.fentaris/config.json"),
                    format!("touch {r}/.fentaris/new"),
                    format!("mv {r}/.fentaris {r}/moved"),
                    format!("cat {r}/.fentaris/config.json"),
                    format!("kill -0 {}", std::process::id()),
                    format!("cat {r}/key"),
                    format!("echo x > {r}/key"),
                    format!("rm {r}/key"),
                    format!("mv {r}/key {r}/key2"),
                ],
                &[format!("echo x > {r}/new"), format!("echo x > {r}/sub/new")],
            ),
        );
        assert_eq!(code, 0);
        assert_eq!(
            std::fs::read_to_string(root.join(".fentaris/config.json")).unwrap(),
            "{}"
        );
        assert!(root.join("new").exists() && root.join("sub/new").exists());
        assert!(!root.join(".fentaris/new").exists());
        assert_eq!(std::fs::read_to_string(root.join("key")).unwrap(), "secret");
    }

    /// A child started with its working directory inside the hidden folder: it is moved
    /// onto the cover, so relative paths do not reach what is under it.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_working_directory_inside_the_hidden_folder_does_not_see_under_the_cover() {
        let (_dir, root) = project();
        let plan = NsPlan::new(&[Cover::Hidden(root.join(".fentaris"))]).unwrap();
        let plan: &'static NsPlan = Box::leak(Box::new(plan));
        let sandbox = ChildSandbox::new(prepared_ruleset(&[], &[]), Some(plan));
        let code = sandboxed_sh_in(
            sandbox,
            &checks(
                &[
                    "cat config.json".to_string(),
                    "echo x > config.json".to_string(),
                    "touch new".to_string(),
                ],
                &[],
            ),
            Some(&root.join(".fentaris")),
        );
        assert_eq!(code, 0);
        assert_eq!(
            std::fs::read_to_string(root.join(".fentaris/config.json")).unwrap(),
            "{}"
        );
        // Deeper inside: the folder does not exist on the cover, so the child does not start.
        std::fs::create_dir(root.join(".fentaris/deeper")).unwrap();
        let sandbox = ChildSandbox::new(prepared_ruleset(&[], &[]), Some(plan));
        use std::os::unix::process::CommandExt as _;
        let mut cmd = std::process::Command::new("/bin/true");
        cmd.current_dir(root.join(".fentaris/deeper"));
        // SAFETY: as in sandboxed_sh.
        unsafe {
            cmd.pre_exec(move || sandbox.apply());
        }
        assert!(cmd.status().is_err(), "started inside a hidden folder");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn without_a_mount_namespace_landlock_keeps_the_folder_from_being_written() {
        if landlock_abi().is_none_or(|v| v < 3) {
            eprintln!("skipped: no Landlock ABI 3 here");
            return;
        }
        let (_dir, root) = project();
        let sandbox = ChildSandbox::new(prepared_ruleset(&[], &[root.join(".fentaris")]), None);
        let r = root.display();
        // New files directly in the project folder cannot be created here (the documented
        // cost of Landlock alone); in a subfolder they can.
        let code = sandboxed_sh(
            sandbox,
            &checks(
                &[
                    format!("echo x > {r}/.fentaris/config.json"),
                    format!("touch {r}/.fentaris/new"),
                    format!("truncate -s 0 {r}/.fentaris/config.json"),
                    format!("mv {r}/.fentaris {r}/moved"),
                    format!("mv {r}/.fentaris/config.json {r}/sub/"),
                    format!("rm {r}/.fentaris/config.json"),
                    format!("touch {r}/new"),
                ],
                &[format!("echo x > {r}/sub/new")],
            ),
        );
        assert_eq!(code, 0);
        assert_eq!(
            std::fs::read_to_string(root.join(".fentaris/config.json")).unwrap(),
            "{}"
        );
        assert!(root.join("sub/new").exists());
    }

    /// The cost the sandbox adds to starting a child (`cargo test --lib harden -- --ignored
    /// --nocapture spawn_cost`).
    #[cfg(target_os = "linux")]
    #[test]
    #[ignore]
    fn spawn_cost() {
        use std::os::unix::process::CommandExt as _;
        let (_dir, root) = project();
        let plan: &'static NsPlan = Box::leak(Box::new(
            NsPlan::new(&[
                Cover::Hidden(root.join(".fentaris")),
                Cover::Hidden(root.join("sub")),
            ])
            .unwrap(),
        ));
        let n = 200;
        let time = |sandboxed: bool| {
            let start = std::time::Instant::now();
            for _ in 0..n {
                let mut cmd = std::process::Command::new("/bin/true");
                if sandboxed {
                    let sandbox = ChildSandbox::new(prepared_ruleset(&[], &[]), Some(plan));
                    // SAFETY: as in sandboxed_sh.
                    unsafe {
                        cmd.pre_exec(move || sandbox.apply());
                    }
                }
                assert!(cmd.status().unwrap().success());
            }
            start.elapsed() / n
        };
        let (plain, sandboxed) = (time(false), time(true));
        // The Landlock-only fallback (and the sandbox before the mount namespace): a ruleset
        // walked from `/` around the protected paths, per spawn.
        let start = std::time::Instant::now();
        for _ in 0..n {
            let sandbox = ChildSandbox::new(
                prepared_ruleset(&[root.join(".fentaris")], &[root.join(".fentaris")]),
                None,
            );
            let mut cmd = std::process::Command::new("/bin/true");
            // SAFETY: as in sandboxed_sh.
            unsafe {
                cmd.pre_exec(move || sandbox.apply());
            }
            assert!(cmd.status().unwrap().success());
        }
        let fallback = start.elapsed() / n;
        eprintln!(
            "spawn+wait /bin/true: plain {plain:?}, mount namespace + Landlock scopes {sandboxed:?}, Landlock-only fallback {fallback:?}"
        );
    }

    #[test]
    fn var_reads_the_environment_when_nothing_was_taken() {
        assert_eq!(var("FENTARIS_SURELY_NOT_SET_12345"), None);
    }
}
