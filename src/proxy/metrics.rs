//! Prometheus metrics (`prometheus-client`): requests by server, method and outcome; policy
//! decisions; latency; upstream starts, failures, exits, restarts and crash loops; upstream
//! messages dropped because they could not be tied to a client; drifted tools; refused keys.

use std::collections::HashMap;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    server: String,
    method: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    server: String,
    operation: String,
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    server: String,
}

type PerServer<M> = Family<ServerLabels, M>;
type Latency = Family<MethodLabels, Histogram, fn() -> Histogram>;

/// Label values a client chooses are bounded in size and number. Methods of the MCP
/// specification ([`crate::policy::Operation::is_spec_method`]) and the operations of
/// policy rules are labelled as themselves; any other method (or `custom:` operation) is
/// labelled as itself only if it is short plain text ([`plain_label`]) and fewer than this
/// many such label sets exist per family; everything else is counted under [`OTHER`]. So no client can grow `/metrics` (or memory) without
/// bound, nor crowd out the label sets of real traffic.
const MAX_LABEL_SETS: usize = 512;
/// Longest client-chosen label value kept as it is.
const MAX_LABEL_LEN: usize = 64;
/// The label value of a client-chosen name past those bounds. Server names are
/// `[a-z0-9-]`, so it cannot be mistaken for one.
pub const OTHER: &str = "(other)";
/// The server label of a request naming no server the subject can see.
pub const UNKNOWN_SERVER: &str = "(unknown)";

/// `text` as a label value if it is short and plain (`[A-Za-z0-9/_.:-]`), else [`OTHER`].
fn plain_label(text: &str) -> &str {
    let plain = text.len() <= MAX_LABEL_LEN
        && !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_.:-".contains(&b));
    if plain { text } else { OTHER }
}

/// A request's series for one (server, method): its counter per outcome and the method's
/// latency histogram (handles onto the families' series, which they share).
struct RequestCells {
    outcomes: Vec<(&'static str, Counter)>,
    latency: Histogram,
}

/// Series by (server, label), found by `&str`, with the count of label sets whose label a
/// client chose (a method outside the specification, a `custom:` operation).
struct Sets<V> {
    by_server: HashMap<String, HashMap<String, V>>,
    custom: usize,
}

impl<V> Default for Sets<V> {
    fn default() -> Self {
        Sets {
            by_server: HashMap::new(),
            custom: 0,
        }
    }
}

impl<V> Sets<V> {
    fn get(&self, server: &str, label: &str) -> Option<&V> {
        self.by_server.get(server)?.get(label)
    }

    /// The label a set not found here takes: its own, or [`OTHER`] when it is a client's
    /// and [`MAX_LABEL_SETS`] of those exist.
    fn label_for<'a>(&self, server: &str, label: &'a str, known: bool) -> &'a str {
        if !known && self.custom >= MAX_LABEL_SETS && self.get(server, label).is_none() {
            OTHER
        } else {
            label
        }
    }

    /// The set (server, label), made by `make` if new.
    fn get_or_make(
        &mut self,
        server: &str,
        label: &str,
        known: bool,
        make: impl FnOnce() -> V,
    ) -> &mut V {
        use std::collections::hash_map::Entry;
        let by_label = self.by_server.entry(server.to_string()).or_default();
        match by_label.entry(label.to_string()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                if !known && label != OTHER {
                    self.custom += 1;
                }
                e.insert(make())
            }
        }
    }
}

/// The series of the two per-request families, found by `&str` without building label
/// strings (5 allocations and three SipHash lookups of whole label sets per request
/// before). Keyed by text a client may choose, so the maps keep SipHash.
#[derive(Default)]
struct Cells {
    requests: Sets<RequestCells>,
    decisions: Sets<[Option<Counter>; 2]>,
}

/// The proxy's metrics. A per-request update takes a read lock on [`Cells`] once its label
/// set exists; creating one takes the write lock (and the family's).
pub struct Metrics {
    registry: Registry,
    cells: parking_lot::RwLock<Cells>,
    requests: Family<RequestLabels, Counter>,
    decisions: Family<DecisionLabels, Counter>,
    latency: Latency,
    upstream_starts: PerServer<Counter>,
    upstream_failures: PerServer<Counter>,
    upstream_exits: PerServer<Counter>,
    upstream_restarts: PerServer<Counter>,
    upstream_down: PerServer<Gauge>,
    messages_dropped: PerServer<Counter>,
    tool_drift: PerServer<Gauge>,
    auth_failures: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn server(s: &str) -> ServerLabels {
    ServerLabels { server: s.into() }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::default();
        let decisions = Family::default();
        let latency: Latency = Family::new_with_constructor(|| Histogram::new(BUCKETS));
        let (starts, failures, exits, restarts) = Default::default();
        let (down, dropped, drift) = Default::default();
        let auth_failures = Counter::default();
        // Counters are registered without `_total`: the encoder adds it.
        registry.register(
            "fentaris_requests",
            "MCP requests by server, method and outcome",
            Family::clone(&requests),
        );
        registry.register(
            "fentaris_decisions",
            "Policy decisions by server, operation and decision",
            Family::clone(&decisions),
        );
        registry.register(
            "fentaris_request_duration_seconds",
            "Request latency",
            latency.clone(),
        );
        let per_server: [(&str, &str, &PerServer<Counter>); 5] = [
            (
                "fentaris_upstream_starts",
                "Upstream connections started (restarts included)",
                &starts,
            ),
            (
                "fentaris_upstream_failures",
                "Upstream connections that failed to start",
                &failures,
            ),
            (
                "fentaris_upstream_exits",
                "Upstreams that exited or closed their output unasked",
                &exits,
            ),
            (
                "fentaris_upstream_restarts",
                "Upstreams restarted after an exit",
                &restarts,
            ),
            (
                "fentaris_upstream_messages_dropped",
                "Upstream log lines and requests that could not be tied to a client",
                &dropped,
            ),
        ];
        for (name, help, family) in per_server {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "fentaris_upstream_down",
            "1 while an upstream stays down after a crash loop",
            PerServer::<Gauge>::clone(&down),
        );
        registry.register(
            "fentaris_tool_drift",
            "Tools hidden because their definition is new or changed since tools.lock.json",
            PerServer::<Gauge>::clone(&drift),
        );
        registry.register(
            "fentaris_auth_failures",
            "Requests refused for a missing or invalid API key",
            auth_failures.clone(),
        );
        Metrics {
            registry,
            cells: Default::default(),
            requests,
            decisions,
            latency,
            upstream_starts: starts,
            upstream_failures: failures,
            upstream_exits: exits,
            upstream_restarts: restarts,
            upstream_down: down,
            messages_dropped: dropped,
            tool_drift: drift,
            auth_failures,
        }
    }

    /// Under the read lock: count through `hit` into the set of `label` if it exists, or
    /// into the overflow set if a new one would take [`OTHER`] and that exists (`None`:
    /// counted). Else the label the new set takes, for the write path.
    fn count_existing<'a>(
        &self,
        label: &'a str,
        hit: impl Fn(&Cells, &str) -> Option<()>,
        label_for: impl FnOnce(&Cells) -> &'a str,
    ) -> Option<&'a str> {
        let cells = self.cells.read();
        if hit(&cells, label).is_some() {
            return None;
        }
        let label = label_for(&cells);
        if label == OTHER && hit(&cells, OTHER).is_some() {
            return None;
        }
        Some(label)
    }

    /// A request of `server` (a configured server or `*`) ended with `outcome`.
    pub fn request(&self, server: &str, method: &str, outcome: &'static str, took: Duration) {
        let secs = took.as_secs_f64();
        let known = crate::policy::Operation::is_spec_method(method);
        let method = if known { method } else { plain_label(method) };
        let hit = |cells: &Cells, method: &str| {
            let c = cells.requests.get(server, method)?;
            let (_, n) = c.outcomes.iter().find(|(o, _)| *o == outcome)?;
            n.inc();
            c.latency.observe(secs);
            Some(())
        };
        let Some(method) =
            self.count_existing(method, hit, |c| c.requests.label_for(server, method, known))
        else {
            return;
        };
        let mut cells = self.cells.write();
        let c = cells
            .requests
            .get_or_make(server, method, known, || RequestCells {
                outcomes: Vec::new(),
                latency: self
                    .latency
                    .get_or_create(&MethodLabels {
                        method: method.into(),
                    })
                    .clone(),
            });
        let n = match c.outcomes.iter().find(|(o, _)| *o == outcome) {
            Some((_, n)) => n.clone(),
            None => {
                let n = self
                    .requests
                    .get_or_create(&RequestLabels {
                        server: server.into(),
                        method: method.into(),
                        outcome,
                    })
                    .clone();
                c.outcomes.push((outcome, n.clone()));
                n
            }
        };
        n.inc();
        c.latency.observe(secs);
    }

    /// A policy decision on `server` (a configured server, or [`UNKNOWN_SERVER`]) for
    /// `operation` (a rule operation name, `custom:<method>` for other methods).
    pub fn decision(&self, server: &str, operation: &str, allow: bool) {
        let i = usize::from(!allow);
        let known = !operation.starts_with("custom:");
        let operation = if known {
            operation
        } else {
            plain_label(operation)
        };
        let hit = |cells: &Cells, operation: &str| {
            let n = cells.decisions.get(server, operation)?[i].as_ref()?;
            n.inc();
            Some(())
        };
        let Some(operation) = self.count_existing(operation, hit, |c| {
            c.decisions.label_for(server, operation, known)
        }) else {
            return;
        };
        let mut cells = self.cells.write();
        let c = cells
            .decisions
            .get_or_make(server, operation, known, Default::default);
        let n = c[i].get_or_insert_with(|| {
            self.decisions
                .get_or_create(&DecisionLabels {
                    server: server.into(),
                    operation: operation.into(),
                    decision: if allow { "allow" } else { "deny" },
                })
                .clone()
        });
        n.inc();
    }
    pub fn upstream_started(&self, s: &str) {
        self.upstream_starts.get_or_create(&server(s)).inc();
    }
    pub fn upstream_failure(&self, s: &str) {
        self.upstream_failures.get_or_create(&server(s)).inc();
    }
    /// An upstream exited (or closed its output) without being asked to.
    pub fn upstream_exit(&self, s: &str) {
        self.upstream_exits.get_or_create(&server(s)).inc();
    }
    pub fn upstream_restart(&self, s: &str) {
        self.upstream_restarts.get_or_create(&server(s)).inc();
    }
    /// 1 while a server is down after a crash loop.
    pub fn upstream_down(&self, s: &str, down: bool) {
        self.upstream_down
            .get_or_create(&server(s))
            .set(i64::from(down));
    }
    /// The counter of `s`'s upstream messages that were dropped or refused because they could
    /// not be tied to a client (handed to each connection of the server).
    pub fn messages_dropped(&self, s: &str) -> Counter {
        self.messages_dropped.get_or_create(&server(s)).clone()
    }
    /// Tools of `server` hidden because they drifted from `tools.lock.json`.
    pub fn tool_drift(&self, s: &str, n: usize) {
        self.tool_drift
            .get_or_create(&server(s))
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    pub fn auth_failure(&self) {
        self.auth_failures.inc();
    }

    /// The text exposition, without the closing `# EOF` (the admin endpoint appends the audit
    /// sink's counters).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            return String::new();
        }
        if let Some(body) = out.strip_suffix("# EOF\n") {
            out.truncate(body.len());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    #[test]
    fn client_chosen_labels_are_bounded_and_nothing_goes_uncounted() {
        let m = Metrics::new();
        let n = MAX_LABEL_SETS + 100;
        for i in 0..n {
            m.request("fs", &format!("x/m{i}"), "ok", Duration::from_millis(1));
            m.decision("fs", &format!("custom:x/m{i}"), i % 2 == 0);
        }
        // Past the cap: specification methods, rule operations and label sets that exist
        // still count as themselves.
        m.request("fs", "x/m0", "error", Duration::from_millis(1));
        m.request("fs", "tools/call", "ok", Duration::from_millis(1));
        m.decision("fs", "custom:x/m1", true);
        m.decision("fs", "tool:call", true);
        // Long or unusual text never becomes a label, cap or not.
        let long = "y".repeat(MAX_LABEL_LEN + 1);
        let fresh = Metrics::new();
        for odd in [long.as_str(), "a b", "a\"b", "é", "a\nb"] {
            fresh.request("fs", odd, "ok", Duration::from_millis(1));
            fresh.decision("fs", &format!("custom:{odd}"), false);
        }
        let t = fresh.render();
        assert_eq!(
            value(
                &t,
                r#"fentaris_requests_total{server="fs",method="(other)",outcome="ok"}"#
            ),
            Some(5.0),
            "{t}"
        );
        assert_eq!(
            value(
                &t,
                r#"fentaris_decisions_total{server="fs",operation="(other)",decision="deny"}"#
            ),
            Some(5.0),
            "{t}"
        );
        assert!(!t.contains("yyyy") && !t.contains("a b"), "{t}");

        let t = m.render();
        let series = |prefix: &str| t.lines().filter(|l| l.starts_with(prefix)).count();
        let sum = |prefix: &str| -> f64 {
            t.lines()
                .filter(|l| l.starts_with(prefix))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        // 512 custom sets, one overflow set, m0's error, tools/call.
        assert_eq!(series("fentaris_requests_total{"), MAX_LABEL_SETS + 3);
        assert_eq!(sum("fentaris_requests_total{"), (n + 2) as f64);
        assert_eq!(
            value(
                &t,
                r#"fentaris_requests_total{server="fs",method="(other)",outcome="ok"}"#
            ),
            Some((n - MAX_LABEL_SETS) as f64)
        );
        assert_eq!(
            value(
                &t,
                r#"fentaris_requests_total{server="fs",method="x/m0",outcome="error"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &t,
                r#"fentaris_requests_total{server="fs",method="tools/call",outcome="ok"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            series("fentaris_request_duration_seconds_count{"),
            MAX_LABEL_SETS + 2
        );
        // 512 custom sets; the overflow set allowed and denied; x/m1 allowed; tool:call.
        assert_eq!(series("fentaris_decisions_total{"), MAX_LABEL_SETS + 4);
        assert_eq!(sum("fentaris_decisions_total{"), (n + 2) as f64);
        assert_eq!(
            value(
                &t,
                r#"fentaris_decisions_total{server="fs",operation="custom:x/m1",decision="allow"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &t,
                r#"fentaris_decisions_total{server="fs",operation="tool:call",decision="allow"}"#
            ),
            Some(1.0)
        );
    }

    #[test]
    fn every_metric_keeps_its_name_and_labels() {
        let m = Metrics::new();
        m.request("fs", "tools/call", "ok", Duration::from_millis(3));
        m.request("fs", "tools/call", "ok", Duration::from_millis(30));
        m.decision("fs", "tools:call", false);
        m.upstream_started("fs");
        m.upstream_failure("fs");
        m.upstream_exit("fs");
        m.upstream_restart("fs");
        m.upstream_down("fs", true);
        m.tool_drift("fs", 2);
        m.auth_failure();
        let dropped = m.messages_dropped("fs");
        dropped.inc();
        m.messages_dropped("fs").inc();
        let t = m.render();
        for (series, want) in [
            (
                r#"fentaris_requests_total{server="fs",method="tools/call",outcome="ok"}"#,
                2.0,
            ),
            (
                r#"fentaris_decisions_total{server="fs",operation="tools:call",decision="deny"}"#,
                1.0,
            ),
            (
                r#"fentaris_request_duration_seconds_bucket{le="0.005",method="tools/call"}"#,
                1.0,
            ),
            (
                r#"fentaris_request_duration_seconds_count{method="tools/call"}"#,
                2.0,
            ),
            (r#"fentaris_upstream_starts_total{server="fs"}"#, 1.0),
            (r#"fentaris_upstream_failures_total{server="fs"}"#, 1.0),
            (r#"fentaris_upstream_exits_total{server="fs"}"#, 1.0),
            (r#"fentaris_upstream_restarts_total{server="fs"}"#, 1.0),
            (r#"fentaris_upstream_down{server="fs"}"#, 1.0),
            (
                r#"fentaris_upstream_messages_dropped_total{server="fs"}"#,
                2.0,
            ),
            (r#"fentaris_tool_drift{server="fs"}"#, 2.0),
            ("fentaris_auth_failures_total", 1.0),
        ] {
            assert_eq!(value(&t, series), Some(want), "{series} in\n{t}");
        }
        assert!(!t.contains("# EOF"));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.request("a\"b\nc", "x", "ok", Duration::ZERO);
        let t = m.render();
        assert!(t.contains(r#"server="a\"b\nc""#), "{t}");
    }
}
