//! The external authorizer (`middleware[].externalAuthorizer`): an HTTP endpoint asked after
//! policy and argument schemas, for decisions that need live state or a person's approval.
//!
//! Fentaris POSTs `{"subject": {"id", "groups", "tenant"}, "server", "operation", "target",
//! "requestId", "arguments"?}` (arguments only with `includeArguments`) and expects
//! `{"decision": "allow" | "deny", "reason": "..."}`. A timeout (default 1 s), a non-2xx
//! status, or an answer that is not that shape denies the request: it fails closed. While it
//! waits, a client that sent a progress token gets a progress notification every second.
//! Allow answers are cached only when `cacheAllowFor` is set, keyed by subject, server,
//! operation, target and a digest of the arguments.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::{Auth, Config, CredentialSource, Middleware};
use crate::jsonrpc::RpcError;
use crate::policy::{Pattern, Subject};
use crate::secret::Secret;

/// Default time an authorizer has to answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

struct Authorizer {
    server: Pattern,
    operation: Pattern,
    target: Pattern,
    url: String,
    timeout: Duration,
    include_args: bool,
    cache_for: Option<Duration>,
    bearer: Option<Secret>,
    /// Allow answers: key digest -> until when.
    cache: Mutex<HashMap<[u8; 32], Instant>>,
}

/// Every external authorizer of a config.
#[derive(Default)]
pub struct Authorizers {
    list: Vec<Authorizer>,
    client: Option<reqwest::Client>,
}

/// What the authorizer is asked about.
pub struct Question<'a> {
    pub subject: &'a Subject,
    pub server: &'a str,
    pub operation: &'a str,
    pub target: &'a str,
    pub request_id: Option<&'a str>,
    pub args: &'a Value,
}

impl Authorizers {
    /// Build from config; `resolve` gives bearer credentials. An authorizer whose credential
    /// cannot be resolved stays in the list without it, so its requests fail closed at the
    /// authorizer rather than skipping it.
    pub fn build(
        config: &Config,
        resolve: &dyn Fn(&CredentialSource) -> Result<Secret, String>,
    ) -> Authorizers {
        let list: Vec<Authorizer> = config
            .middleware
            .iter()
            .filter_map(|m| match m {
                Middleware::ExternalAuthorizer(x) => Some(Authorizer {
                    server: Pattern::new(&x.mcp).ok()?,
                    operation: Pattern::new(&x.operation).ok()?,
                    target: Pattern::new(&x.target).ok()?,
                    url: x.url.clone(),
                    timeout: x.timeout.map_or(DEFAULT_TIMEOUT, |d| d.0),
                    include_args: x.include_arguments,
                    cache_for: x.cache_allow_for.map(|d| d.0),
                    bearer: match &x.auth {
                        Some(Auth::Bearer(src)) => match resolve(src) {
                            Ok(s) => Some(s),
                            Err(e) => {
                                tracing::error!(url = %x.url, "the external authorizer's credential is unavailable ({e}); its requests will be denied");
                                Some(Secret::from(String::new()))
                            }
                        },
                        _ => None,
                    },
                    cache: Mutex::new(HashMap::new()),
                }),
                Middleware::ArgumentSchema(_) => None,
            })
            .collect();
        let client = (!list.is_empty()).then(|| {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default()
        });
        Authorizers { list, client }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Ask every authorizer that applies; the first denial wins. `waiting` is called about
    /// once a second while an answer is outstanding (for progress notifications).
    pub async fn check(
        &self,
        q: &Question<'_>,
        waiting: &(dyn Fn(u64) + Sync),
    ) -> Result<(), RpcError> {
        for a in &self.list {
            if !(a.server.matches(q.server)
                && a.operation.matches(q.operation)
                && a.target.matches(q.target))
            {
                continue;
            }
            let key = a.cache_for.map(|_| cache_key(q));
            if let Some(k) = &key {
                let cache = a.cache.lock();
                if cache.get(k).is_some_and(|until| *until > Instant::now()) {
                    continue;
                }
            }
            let client = self.client.clone().unwrap_or_default();
            let ask = ask(&client, a, q);
            tokio::pin!(ask);
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let mut n = 0u64;
            let answer = loop {
                tokio::select! {
                    r = &mut ask => break r,
                    _ = tick.tick() => { n += 1; waiting(n); }
                }
            };
            match answer {
                Ok(()) => {
                    if let (Some(k), Some(ttl)) = (key, a.cache_for) {
                        let mut cache = a.cache.lock();
                        let now = Instant::now();
                        cache.retain(|_, until| *until > now);
                        cache.insert(k, now + ttl);
                    }
                }
                Err(reason) => return Err(super::denial("authorizer", &reason)),
            }
        }
        Ok(())
    }
}

fn cache_key(q: &Question<'_>) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [q.subject.id.as_str(), q.server, q.operation, q.target] {
        h.update(part.as_bytes());
        h.update(b"\0");
    }
    h.update(serde_jcs::to_string(q.args).unwrap_or_default().as_bytes());
    h.finalize().into()
}

/// One question to one authorizer: `Ok` for allow, `Err(reason)` for deny or any failure.
async fn ask(client: &reqwest::Client, a: &Authorizer, q: &Question<'_>) -> Result<(), String> {
    let mut body = json!({
        "subject": { "id": q.subject.id, "groups": q.subject.groups, "tenant": q.subject.tenant },
        "server": q.server,
        "operation": q.operation,
        "target": q.target,
        "requestId": q.request_id,
    });
    if a.include_args {
        body["arguments"] = q.args.clone();
    }
    let mut req = client
        .post(&a.url)
        .timeout(a.timeout)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body.to_string());
    if let Some(b) = &a.bearer {
        req = req.bearer_auth(b.expose());
    }
    let resp = req.send().await.map_err(|e| {
        if e.is_timeout() {
            format!(
                "the external authorizer did not answer within {} (fail closed)",
                humantime::format_duration(a.timeout)
            )
        } else {
            "the external authorizer cannot be reached (fail closed)".to_string()
        }
    })?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!(
            "the external authorizer answered HTTP {} (fail closed)",
            status.as_u16()
        ));
    }
    let bytes = resp.bytes().await.map_err(|_| {
        "the external authorizer's answer could not be read (fail closed)".to_string()
    })?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|_| "the external authorizer's answer is not JSON (fail closed)".to_string())?;
    let reason = v
        .get("reason")
        .and_then(Value::as_str)
        .map(|r| r.chars().take(500).collect::<String>());
    match v.get("decision").and_then(Value::as_str) {
        Some("allow") => Ok(()),
        Some("deny") => {
            Err(reason.unwrap_or_else(|| "the external authorizer denied this request".into()))
        }
        _ => Err(
            "the external authorizer's answer has no decision \"allow\" or \"deny\" (fail closed)"
                .into(),
        ),
    }
}
