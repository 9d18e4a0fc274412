//! Prometheus text metrics: requests by server, method, decision and outcome; latency;
//! upstream starts and failures.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, String, String), u64>,
    decisions: BTreeMap<(String, String, &'static str), u64>,
    latency: BTreeMap<String, ([u64; BUCKETS.len()], u64, f64)>,
    upstream_starts: BTreeMap<String, u64>,
    upstream_failures: BTreeMap<String, u64>,
    upstream_exits: BTreeMap<String, u64>,
    upstream_restarts: BTreeMap<String, u64>,
    upstream_down: BTreeMap<String, u64>,
    auth_failures: u64,
    tool_drift: BTreeMap<String, usize>,
}

/// Counters, behind one lock (cheap next to an upstream round trip).
#[derive(Default)]
pub struct Metrics(
    Mutex<Inner>,
    pub std::sync::Arc<std::sync::atomic::AtomicU64>,
);

impl Metrics {
    fn with(&self, f: impl FnOnce(&mut Inner)) {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }
    pub fn request(&self, server: &str, method: &str, outcome: &str, took: Duration) {
        self.with(|m| {
            *m.requests
                .entry((server.into(), method.into(), outcome.into()))
                .or_default() += 1;
            let e = m
                .latency
                .entry(method.into())
                .or_insert(([0; BUCKETS.len()], 0, 0.0));
            let s = took.as_secs_f64();
            for (i, b) in BUCKETS.iter().enumerate() {
                if s <= *b {
                    e.0[i] += 1;
                }
            }
            e.1 += 1;
            e.2 += s;
        });
    }
    pub fn decision(&self, server: &str, operation: &str, allow: bool) {
        self.with(|m| {
            *m.decisions
                .entry((
                    server.into(),
                    operation.into(),
                    if allow { "allow" } else { "deny" },
                ))
                .or_default() += 1
        });
    }
    pub fn upstream_started(&self, server: &str) {
        self.with(|m| *m.upstream_starts.entry(server.into()).or_default() += 1);
    }
    pub fn upstream_failure(&self, server: &str) {
        self.with(|m| *m.upstream_failures.entry(server.into()).or_default() += 1);
    }
    /// An upstream exited (or closed its output) without being asked to.
    pub fn upstream_exit(&self, server: &str) {
        self.with(|m| *m.upstream_exits.entry(server.into()).or_default() += 1);
    }
    pub fn upstream_restart(&self, server: &str) {
        self.with(|m| *m.upstream_restarts.entry(server.into()).or_default() += 1);
    }
    /// 1 while a server is down after a crash loop.
    pub fn upstream_down(&self, server: &str, down: bool) {
        self.with(|m| {
            m.upstream_down.insert(server.into(), u64::from(down));
        });
    }
    /// Tools of `server` hidden because they drifted from `tools.lock.json`.
    pub fn tool_drift(&self, server: &str, n: usize) {
        self.with(|m| {
            m.tool_drift.insert(server.into(), n);
        });
    }
    pub fn auth_failure(&self) {
        self.with(|m| m.auth_failures += 1);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        let esc = |s: &str| {
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        };
        out.push_str("# HELP fentaris_requests_total MCP requests by server, method and outcome.\n# TYPE fentaris_requests_total counter\n");
        for ((s, meth, o), n) in &m.requests {
            let _ = writeln!(
                out,
                "fentaris_requests_total{{server=\"{}\",method=\"{}\",outcome=\"{}\"}} {n}",
                esc(s),
                esc(meth),
                esc(o)
            );
        }
        out.push_str("# HELP fentaris_decisions_total Policy decisions by server, operation and decision.\n# TYPE fentaris_decisions_total counter\n");
        for ((s, op, d), n) in &m.decisions {
            let _ = writeln!(
                out,
                "fentaris_decisions_total{{server=\"{}\",operation=\"{}\",decision=\"{d}\"}} {n}",
                esc(s),
                esc(op)
            );
        }
        out.push_str("# HELP fentaris_request_duration_seconds Request latency.\n# TYPE fentaris_request_duration_seconds histogram\n");
        for (meth, (b, count, sum)) in &m.latency {
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "fentaris_request_duration_seconds_bucket{{method=\"{}\",le=\"{le}\"}} {}",
                    esc(meth),
                    b[i]
                );
            }
            let _ = writeln!(
                out,
                "fentaris_request_duration_seconds_bucket{{method=\"{}\",le=\"+Inf\"}} {count}",
                esc(meth)
            );
            let _ = writeln!(
                out,
                "fentaris_request_duration_seconds_sum{{method=\"{}\"}} {sum}",
                esc(meth)
            );
            let _ = writeln!(
                out,
                "fentaris_request_duration_seconds_count{{method=\"{}\"}} {count}",
                esc(meth)
            );
        }
        out.push_str("# HELP fentaris_upstream_starts_total Upstream connections started (restarts included).\n# TYPE fentaris_upstream_starts_total counter\n");
        for (s, n) in &m.upstream_starts {
            let _ = writeln!(
                out,
                "fentaris_upstream_starts_total{{server=\"{}\"}} {n}",
                esc(s)
            );
        }
        out.push_str("# HELP fentaris_upstream_failures_total Upstream connections that failed to start.\n# TYPE fentaris_upstream_failures_total counter\n");
        for (s, n) in &m.upstream_failures {
            let _ = writeln!(
                out,
                "fentaris_upstream_failures_total{{server=\"{}\"}} {n}",
                esc(s)
            );
        }
        for (name, help, kind, map) in [
            (
                "fentaris_upstream_exits_total",
                "Upstreams that exited or closed their output unasked.",
                "counter",
                &m.upstream_exits,
            ),
            (
                "fentaris_upstream_restarts_total",
                "Upstreams restarted after an exit.",
                "counter",
                &m.upstream_restarts,
            ),
            (
                "fentaris_upstream_down",
                "1 while an upstream stays down after a crash loop.",
                "gauge",
                &m.upstream_down,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (s, n) in map {
                let _ = writeln!(out, "{name}{{server=\"{}\"}} {n}", esc(s));
            }
        }
        if !m.tool_drift.is_empty() {
            out.push_str("# HELP fentaris_tool_drift Tools hidden because their definition is new or changed since tools.lock.json.\n# TYPE fentaris_tool_drift gauge\n");
            for (s, n) in &m.tool_drift {
                let _ = writeln!(out, "fentaris_tool_drift{{server=\"{}\"}} {n}", esc(s));
            }
        }
        let _ = writeln!(
            out,
            "# HELP fentaris_auth_failures_total Requests refused for a missing or invalid API key.\n# TYPE fentaris_auth_failures_total counter\nfentaris_auth_failures_total {}",
            m.auth_failures
        );
        out
    }
}
