//! Hot reload (`serve --watch`, SIGHUP): a changed config or vault replaces the running one
//! atomically when it validates; otherwise its diagnostics are logged and the old one keeps
//! serving.
//!
//! What a reload does: new requests see the new policy, keys and credentials (the HTTP
//! front's state is swapped whole); sessions stay open, except those whose API key was
//! revoked or expired; connections of removed servers, and of servers whose command, URL or
//! credentials changed, are closed (changed ones restart); unchanged servers are untouched.
//! `listen`, `adminListen` and `audit` settings take effect at the next start.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::json;

use super::connect_eager;
use super::http::{App, Trusted};
use crate::audit::Record;
use crate::config::Config;
use crate::vault::{Vault, VaultError};

/// The config in force: the digest of its bytes, and the identity (device, inode) of its
/// folder at start.
struct Running {
    digest: String,
    folder: Option<(u64, u64)>,
}

static RUNNING: Mutex<Option<Running>> = Mutex::new(None);

/// One reload at a time (a config reload and the vault follower's vault-only reload both
/// read the running state and swap a new one: run together, one would undo the other).
pub static RELOADING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `sha256:<hex>` of a config's bytes (what `config.reload` audit events carry).
pub fn digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(bytes);
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in d {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(unix)]
fn folder_id(config_path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let dir = config_path.parent().filter(|d| !d.as_os_str().is_empty());
    let m = std::fs::metadata(dir.unwrap_or(Path::new("."))).ok()?;
    Some((m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn folder_id(_config_path: &Path) -> Option<(u64, u64)> {
    None
}

/// Remember the config `serve` started with: its digest, and its folder, so a reload from
/// a folder that was swapped for another one (renamed away, a new one planted) is refused.
pub fn pin_config(path: &Path, source: &str) {
    let running = Running {
        digest: digest(source.as_bytes()),
        folder: folder_id(path),
    };
    *RUNNING.lock().unwrap_or_else(|e| e.into_inner()) = Some(running);
}

fn running_digest() -> Option<String> {
    RUNNING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(|r| r.digest.clone())
}

/// A reload must read the config from the folder Fentaris started with.
fn check_folder(path: &Path) -> Result<(), String> {
    let pinned = RUNNING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|r| r.folder);
    let Some(pinned) = pinned else {
        return Ok(());
    };
    match folder_id(path) {
        Some(now) if now == pinned => Ok(()),
        Some(_) => Err(format!(
            "{} is no longer the folder Fentaris started with (it was renamed or replaced): the reload is refused and the running config stays in place\nhelp: restart `fentaris serve` to use the new folder",
            path.parent().unwrap_or(path).display()
        )),
        None => Err(format!(
            "{}: the config folder is gone; the running config stays in place",
            path.display()
        )),
    }
}

/// The trusted-header settings, resolved (the shared secret must resolve).
pub fn trusted_of(
    config: &Config,
    vault: Option<&Vault>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Trusted>, String> {
    let Some(t) = &config.identity.trusted_headers else {
        return Ok(None);
    };
    let secret = crate::vault::resolve_source(&t.secret, config, None, vault, env)
        .map_err(|e| format!("identity.trustedHeaders.secret: {e}"))?;
    let proxies = t
        .proxies
        .iter()
        .map(|p| {
            p.parse::<ipnet::IpNet>()
                .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("identity.trustedHeaders.proxies: {e}"))?;
    Ok(Some(Trusted {
        user_header: t.user_header.to_ascii_lowercase(),
        secret_header: t.secret_header.to_ascii_lowercase(),
        secret,
        proxies,
    }))
}

/// Open the vault beside the config, if there is one (it must open: fail closed).
pub fn open_vault(dir: &Path, config: &Config) -> Result<Option<Vault>, String> {
    let path = dir.join(crate::vault::VAULT_FILE);
    if !path.exists() {
        if let Some((name, _)) = crate::config::vault_references(config).first() {
            return Err(format!(
                "the config uses vault entry `{name}` but there is no vault at {}",
                path.display()
            ));
        }
        return Ok(None);
    }
    Vault::open(
        &path,
        &crate::vault::KeyLookup::from_env(),
        Default::default(),
    )
    .map(Some)
    .map_err(|e: VaultError| e.to_string())
}

/// Load `path` and, if it validates, put it in place. Returns a one-line summary.
pub async fn reload(app: &Arc<App>, path: &Path) -> Result<String, String> {
    let _one = RELOADING.lock().await;
    check_folder(path)?;
    let loaded = crate::config::load_file(path).map_err(|e| e.to_string())?;
    let before = running_digest();
    let after = digest(loaded.source.as_bytes());
    let config = match (&loaded.outcome.config, loaded.outcome.has_errors()) {
        (Some(c), false) => c.clone(),
        _ => {
            let errors: Vec<_> = loaded
                .outcome
                .diagnostics
                .iter()
                .filter(|d| d.severity == crate::diagnostics::Severity::Error)
                .cloned()
                .collect();
            let file = path.display().to_string();
            let report = crate::diagnostics::Report {
                file: &file,
                source: &loaded.source,
                diagnostics: &errors,
            };
            return Err(format!(
                "the changed config has errors; the running config stays in place\n{}",
                crate::diagnostics::render_human(&report, false)
            ));
        }
    };
    let vault = open_vault(&loaded.dir, &config)?;
    // Keys, trusted headers and the tools lock as they are now; a lock file that cannot be
    // read rejects the reload (fail closed), as it refuses a start.
    let prepared = super::build::Prepared::new(config, &loaded.dir, vault)?;
    let config = prepared.config();
    let old = app.st();
    for (what, a, b) in [
        ("listen", &old.proxy.config().listen, &config.listen),
        (
            "adminListen",
            &old.proxy.config().admin_listen,
            &config.admin_listen,
        ),
    ] {
        if a != b {
            tracing::warn!("`{what}` changed: it takes effect when Fentaris restarts");
        }
    }
    if old.proxy.config().audit != config.audit || old.proxy.config().auto_log != config.auto_log {
        tracing::warn!("audit settings changed: they take effect when Fentaris restarts");
    }
    let (proxy, closed, ended) = put_in_force(app, prepared.reload(&old.proxy)).await;
    if let Some(r) = RUNNING.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        r.digest = after.clone();
    }
    let p = proxy.clone();
    tokio::spawn(async move { connect_eager(&p).await });
    proxy
        .audit()
        .write(Record::new("config.reload").detail(json!({
            "outcome": "applied",
            "configBefore": before,
            "configAfter": after,
            "restartedOrStopped": closed,
            "sessionsEnded": ended,
        })));
    Ok(format!(
        "config reloaded; connections closed for: {}; sessions ended (revoked keys): {ended}",
        listed(&closed)
    ))
}

/// Put a reloaded state in force (config reload and the vault follower): swap it in, retire
/// the old proxy, close connections whose spec changed (now, and again once requests still
/// running on the old state are done), and end sessions whose key no longer logs in.
/// Returns the new proxy, the servers whose connections were closed and the sessions ended.
pub(crate) async fn put_in_force(
    app: &Arc<App>,
    state: super::http::FrontState,
) -> (Arc<super::handler::Proxy>, Vec<String>, usize) {
    let proxy = state.proxy().clone();
    let old = app.swap(state);
    old.proxy.retired().cancel();
    let closed = proxy.close_stale().await;
    // Requests that were still running on the old state may have reopened an old
    // connection meanwhile: close those once they are done.
    let later = proxy.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        if !later.retired().is_cancelled() {
            later.close_stale().await;
        }
    });
    let ended = app.end_sessions_without_live_key().await;
    (proxy, closed, ended)
}

/// Server names for a log line (`none` when there are none).
pub(crate) fn listed(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// Reload and log the result (and audit a rejected reload).
pub async fn reload_and_log(app: &Arc<App>, path: &Path) {
    match reload(app, path).await {
        Ok(summary) => tracing::info!("{summary}"),
        Err(e) => {
            tracing::error!("{e}");
            let reason = if check_folder(path).is_err() {
                "folder replaced"
            } else {
                "invalid"
            };
            let after = std::fs::read(path).ok().map(|b| digest(&b));
            app.st()
                .proxy
                .audit()
                .write(Record::new("config.reload").detail(json!({
                    "outcome": "rejected",
                    "reason": reason,
                    "configBefore": running_digest(),
                    "configAfter": after,
                })));
        }
    }
}

/// What tells a changed file: inode (writers replace by rename), mtime and size.
pub(crate) type Stamp = Option<(u64, SystemTime, u64)>;

pub(crate) fn stamp(p: &Path) -> Stamp {
    let m = std::fs::metadata(p).ok()?;
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let ino = 0;
    Some((ino, m.modified().ok()?, m.len()))
}

/// Reload on SIGHUP, and (with `watch`) when the config file changes. The vault is followed
/// whatever `watch` says (`cli/vault_watch.rs`): a revocation never waits for a valid config.
pub fn spawn_triggers(app: Arc<App>, config_path: PathBuf, watch: bool) {
    #[cfg(unix)]
    {
        let app = app.clone();
        let path = config_path.clone();
        tokio::spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading {}", path.display());
                reload_and_log(&app, &path).await;
            }
        });
    }
    if watch {
        tokio::spawn(async move {
            let mut last = stamp(&config_path);
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if stamp(&config_path) != last {
                    // Let a writer finish (editors write in several steps).
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    last = stamp(&config_path);
                    tracing::info!("{} changed: reloading", config_path.display());
                    reload_and_log(&app, &config_path).await;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_sha256_of_the_bytes_and_a_swapped_folder_is_refused() {
        assert_eq!(
            digest(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let dir = tempfile::tempdir().unwrap();
        let fen = dir.path().join(".fentaris");
        std::fs::create_dir(&fen).unwrap();
        let path = fen.join("config.json");
        std::fs::write(&path, "{}").unwrap();
        pin_config(&path, "{}");
        assert_eq!(running_digest(), Some(digest(b"{}")));
        assert!(check_folder(&path).is_ok());
        // Edited in place or replaced by rename inside the folder: still the same folder.
        std::fs::write(fen.join("new.json"), "{ }").unwrap();
        std::fs::rename(fen.join("new.json"), &path).unwrap();
        assert!(check_folder(&path).is_ok());
        std::fs::rename(&fen, dir.path().join("away")).unwrap();
        let e = check_folder(&path).unwrap_err();
        assert!(e.contains("the config folder is gone"), "{e}");
        std::fs::create_dir(&fen).unwrap();
        std::fs::write(&path, "{}").unwrap();
        let e = check_folder(&path).unwrap_err();
        assert!(
            e.contains("no longer the folder Fentaris started with"),
            "{e}"
        );
    }
}
