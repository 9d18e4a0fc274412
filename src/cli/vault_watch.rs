//! `serve` follows the vault without `--watch`: revoking or rotating an API key, or changing a
//! credential, takes effect in a running `serve` within about a second.
//!
//! A cheap poll (one `stat` every 500 ms: inode, mtime, size) notices a new vault file (every
//! write is a rename of a fresh file); the vault is then re-opened (verified) and the front
//! state is rebuilt from the *running* config with the new keys and credentials. The config
//! file itself is not re-read (that is `--watch` and SIGHUP), so a config being edited, or one
//! with errors, never holds back a revocation. Sessions opened with a key that no longer logs
//! in are ended; connections whose credentials changed are closed (they restart on demand).
//! A changed vault that cannot be opened (tampered, truncated, deleted, its key gone) fails
//! closed: API keys from the vault are refused (401) until a vault that opens is back, since
//! the running key list may hold keys that were revoked in the change. Keys from the config
//! (`apiKeys` from the environment) and the upstream credentials in force stay.
//!
//! Reloads are serialised with config reloads (`reload::RELOADING`), and the vault is
//! followed with or without `--watch`, so an invalid config being edited never holds back a
//! revocation.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::proxy::build::Prepared;
use crate::proxy::http::App;
use crate::proxy::reload;
use crate::vault::{KeyLookup, Vault};

/// How often the vault file is looked at.
pub const POLL: Duration = Duration::from_millis(500);

/// Start following `vault_path`. Must be called inside the runtime.
pub fn spawn(app: Arc<App>, vault_path: PathBuf) {
    tokio::spawn(async move {
        let mut last = reload::stamp(&vault_path);
        loop {
            tokio::time::sleep(POLL).await;
            let now = reload::stamp(&vault_path);
            if now == last {
                continue;
            }
            last = now;
            match reload_vault(&app, &vault_path).await {
                Ok(summary) => tracing::info!("{summary}"),
                Err(e) => {
                    let ended = refuse_vault_keys(&app).await;
                    tracing::error!(
                        "the vault changed but cannot be opened, so API keys from the vault are refused until it can be (fail closed; {ended} sessions ended): {e}\nhelp: fix or restore the vault (`fentaris vault status`); it is picked up as soon as it opens"
                    );
                    app.st().proxy().audit().write(
                        crate::audit::Record::new("vault.reload").detail(json!({
                            "outcome": "rejected",
                            "vaultKeysRefused": true,
                            "sessionsEnded": ended,
                        })),
                    );
                }
            }
        }
    });
}

/// Fail closed after a vault change that cannot be opened: the running config and proxy
/// stay, with a key verifier that knows no vault key. Returns the sessions ended.
async fn refuse_vault_keys(app: &Arc<App>) -> usize {
    let _one = reload::RELOADING.lock().await;
    let old = app.st();
    app.swap(Prepared::without_vault_keys(&old));
    app.end_sessions_without_live_key().await
}

/// Re-open the vault and put its keys and credentials in force under the running config.
pub async fn reload_vault(app: &Arc<App>, vault_path: &Path) -> Result<String, String> {
    let _one = reload::RELOADING.lock().await;
    let old = app.st();
    let config = old.proxy.config().clone();
    let vault = if vault_path.exists() {
        Some(
            Vault::open(vault_path, &KeyLookup::from_env(), Default::default())
                .map_err(|e| e.to_string())?,
        )
    } else {
        if let Some((name, _)) = crate::config::vault_references(&config).first() {
            return Err(format!(
                "the config uses vault entry `{name}` but the vault at {} is gone",
                vault_path.display()
            ));
        }
        None
    };
    // The same builder as a start and a config reload (proxy/build.rs): keys, trusted
    // headers and the tools lock resolved from the running config and the new vault.
    let prepared = Prepared::new(config, old.proxy.config_dir(), vault)?;
    let (proxy, closed, ended) = reload::put_in_force(app, prepared.reload(&old.proxy)).await;
    proxy
        .audit()
        .write(crate::audit::Record::new("vault.reload").detail(json!({
            "outcome": "applied",
            "restartedOrStopped": closed,
            "sessionsEnded": ended,
        })));
    Ok(format!(
        "the vault changed: keys and credentials reloaded; connections closed for: {}; sessions ended (revoked or expired keys): {ended}",
        reload::listed(&closed)
    ))
}
