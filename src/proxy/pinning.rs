//! Enforcing `tools.lock.json` in `serve`: a tool whose definition no longer matches the lock,
//! or that is not in the lock, is left out of `tools/list` and refused on `tools/call` with
//! the same "Unknown tool" error as a policy denial. Each drift is logged once (a warning
//! and a `drift` audit record) and counted in `fentaris_tool_drift{server}`.
//!
//! Without a lock file nothing is pinned. The digests and the file are [`crate::pinning`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::handler::Proxy;
use super::upstream::{Event, Upstream};
use crate::pinning::{ItemKind, LockError, ToolLock, digest};

/// Tools per connection: name -> whether it matches the lock. Dropped on list_changed.
type Verdicts = HashMap<String, bool>;

#[derive(Default)]
struct State {
    /// (server, tool, digest) already reported.
    reported: HashSet<(String, String, String)>,
    /// Server -> tools currently drifted (the gauge).
    drifted: BTreeMap<String, BTreeSet<String>>,
    /// Connection (by address, [`conn_id`]) -> its tools' verdicts, for `tools/call`.
    verdicts: HashMap<usize, (Weak<Upstream>, Arc<Verdicts>)>,
}

/// The lock in force (if any) and what was seen of it.
#[derive(Default)]
pub struct Pins {
    lock: Option<ToolLock>,
    state: Arc<Mutex<State>>,
}

impl Pins {
    /// Pins from the lock in the config folder `dir` (none when there is no lock file).
    pub fn load(dir: &std::path::Path) -> Result<Pins, LockError> {
        Ok(Pins::new(ToolLock::load(dir)?))
    }

    pub fn new(lock: Option<ToolLock>) -> Pins {
        Pins {
            lock,
            state: Arc::default(),
        }
    }

    fn state(&self) -> parking_lot::MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Whether one listed tool may be shown and called (always, without a lock).
    pub fn admits(&self, proxy: &Proxy, server: &str, tool: &Value) -> bool {
        let Some(lock) = &self.lock else {
            return true;
        };
        let Some(name) = tool.get("name").and_then(Value::as_str) else {
            return false;
        };
        let d = digest(ItemKind::Tool, tool);
        let locked = lock.tool(server, name);
        let mut st = self.state();
        if locked == Some(d.as_str()) {
            if let Some(set) = st.drifted.get_mut(server)
                && set.remove(name)
            {
                proxy.metrics().tool_drift(server, set.len());
            }
            return true;
        }
        if st
            .reported
            .insert((server.to_string(), name.to_string(), d.clone()))
        {
            let change = if locked.is_some() { "changed" } else { "added" };
            let shown = crate::diagnostics::escape_control(name);
            tracing::warn!(
                server,
                "tool `{shown}` is {change} since tools.lock.json: hidden and refused until `fentaris tools lock` accepts it"
            );
            proxy.audit().write(
                crate::audit::Record::new("drift")
                    .server(server)
                    .detail(json!({
                        "kind": "tool",
                        "name": name,
                        "change": change,
                        "digest": d,
                        "locked": locked,
                    })),
            );
            let set = st.drifted.entry(server.to_string()).or_default();
            set.insert(name.to_string());
            proxy.metrics().tool_drift(server, set.len());
        }
        false
    }

    /// [`Pins::admits_call`] when it needs no listing: no lock file, or the verdicts for this
    /// connection are known (`None`: the upstream's tools have to be listed first).
    pub fn settled(&self, up: &Arc<Upstream>, name: &str) -> Option<bool> {
        if self.lock.is_none() {
            return Some(true);
        }
        let id = conn_id(up);
        let state = self.state();
        let (_, v) = state
            .verdicts
            .get(&id)
            .filter(|(w, _)| w.strong_count() > 0)?;
        Some(v.get(name) == Some(&true))
    }

    /// Whether a tool may be called on this connection: its definition (from the
    /// connection's latest full list, fetched once and again after each list_changed) must
    /// match the lock.
    pub async fn admits_call(
        &self,
        proxy: &Proxy,
        up: &Arc<Upstream>,
        server: &str,
        name: &str,
        ct: &CancellationToken,
    ) -> bool {
        if let Some(v) = self.settled(up, name) {
            return v;
        }
        let id = conn_id(up);
        // Subscribe before listing, so a change during the listing is not missed.
        let mut events = up.events();
        let mut verdicts = Verdicts::new();
        // Bounded like every list Fentaris reads whole (limits.maxListPages, listTimeout).
        let listed = up
            .all_pages(
                "tools/list",
                ct,
                super::pool::DEFAULT_REQUEST_TIMEOUT,
                &super::upstream::PageLimits::of(&proxy.config().limits),
                |r| {
                    let mut bytes = 0;
                    for t in r
                        .get("tools")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        if let Some(n) = t.get("name").and_then(Value::as_str) {
                            bytes += n.len() + 16;
                            verdicts.insert(n.to_string(), self.admits(proxy, server, t));
                        }
                    }
                    bytes
                },
            )
            .await;
        if let Err(e) = listed {
            tracing::warn!(
                server,
                "cannot check pinned tools: {}",
                super::upstream::describe(&e)
            );
            return false;
        }
        let ok = verdicts.get(name) == Some(&true);
        self.state()
            .verdicts
            .insert(id, (Arc::downgrade(up), Arc::new(verdicts)));
        // Forget the verdicts when the tools change or the connection closes.
        let state = self.state.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(Event::ToolsChanged | Event::Closed) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            state.lock().verdicts.remove(&id);
        });
        ok
    }
}

/// The key of a connection's verdicts: its address (the `Weak` beside the verdicts tells a
/// live connection from a new one at a reused address).
fn conn_id(up: &Arc<Upstream>) -> usize {
    Arc::as_ptr(up) as usize
}
