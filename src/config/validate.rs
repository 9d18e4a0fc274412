//! Config validation (DESIGN section 3): every finding with a stable code, a severity, a JSON
//! pointer and help. Pure: no I/O, no environment, no vault.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use super::model::*;
use crate::diagnostics::{Diagnostic, codes, pointer_token as tok};
use crate::policy::Engine;
use crate::suggest::did_you_mean;

/// The longest `limits` duration accepted: deadlines are `Instant`s, and one far enough away
/// overflows them.
const MAX_LIMIT_DURATION: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// Server names: `^[a-z0-9][a-z0-9-]{0,31}$` (no `_`, so `<server>__<tool>` cannot be forged).
pub fn valid_server_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

const RESERVED_PREFIX: &str = "FENTARIS_";
const PLACEHOLDERS: &[&str] = &["subject.id", "subject.tenantId", "subject.groups"];

/// Validate a parsed config.
pub fn validate(config: &Config) -> Vec<Diagnostic> {
    let (engine, rule_diags) = Engine::compile(config);
    let mut v = run(config, Some(&engine));
    v.diags.extend(rule_diags);
    v.diags
}

/// Every `{"vault": name}` source in the config, with its JSON pointer.
pub fn vault_references(config: &Config) -> Vec<(String, String)> {
    run(config, None).vault_refs
}

/// FNT005: vault sources naming entries the vault does not hold. `names` is `None` when
/// there is no vault file (then each reference is information, as in CI).
pub fn check_vault_entries(
    config: &Config,
    names: Option<&std::collections::BTreeSet<String>>,
) -> Vec<Diagnostic> {
    vault_references(config)
        .into_iter()
        .filter(|(name, _)| names.is_none_or(|n| !n.contains(name)))
        .map(|(name, pointer)| match names {
            Some(_) => Diagnostic::new(
                codes::VAULT_ENTRY_MISSING,
                pointer,
                format!("the vault has no entry `{name}`"),
            )
            .help(format!(
                "add it: fentaris credentials set {name} --value-stdin"
            )),
            None => Diagnostic::new(
                codes::VAULT_ENTRY_MISSING,
                pointer,
                format!("vault entry `{name}` cannot be checked: there is no vault file"),
            )
            .severity(crate::diagnostics::Severity::Info)
            .help(format!(
                "on a machine with the vault: fentaris credentials set {name} --value-stdin"
            )),
        })
        .collect()
}

fn run<'e>(config: &Config, engine: Option<&'e Engine>) -> Validator<'e> {
    let mut v = Validator {
        diags: Vec::new(),
        refs: Vec::new(),
        engine,
        current_server: None,
        vault_refs: Vec::new(),
    };
    v.listeners(config);
    if let Some(src) = &config.cursor_key {
        v.source("/cursorKey".into(), src, None);
    }
    let sep = &config.name_separator;
    if sep.is_empty() || !sep.contains('_') || !sep.chars().all(|c| c == '_' || c == '-') {
        v.push(
            Diagnostic::new(codes::BAD_VALUE, "/nameSeparator", format!("`{sep}` cannot separate server and tool names"))
                .help("use `_` and `-` only, with at least one `_` (server names cannot contain `_`, so the split is never ambiguous); the default is \"__\""),
        );
    }
    v.identity(config);
    v.servers(config);
    v.policies_and_groups(config);
    v.users(config);
    v.credentials(config);
    v.middleware(config);
    v.limits(config);
    if config.audit.on_failure == OnFailure::Allow {
        v.push(
            Diagnostic::new(codes::AUDIT_FAIL_OPEN, "/audit/onFailure", "requests are served even when audit records cannot be written")
                .help("remove `onFailure` (the default, `deny`, refuses requests when the audit sink fails)"),
        );
    }
    v
}

/// A `{"credential": name}` reference and the scope it is resolved in.
struct CredRef {
    name: String,
    pointer: String,
    /// `Some(g)`: a group-private server or a group user; bindings of that group count.
    /// `None`: any group's bindings may serve it (decided per request), or the top level.
    group: Option<usize>,
    /// The top-level server whose connection uses it, if any.
    server: Option<String>,
}

struct Validator<'e> {
    diags: Vec<Diagnostic>,
    refs: Vec<CredRef>,
    engine: Option<&'e Engine>,
    current_server: Option<String>,
    vault_refs: Vec<(String, String)>,
}

fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn valid_header_name(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn valid_env_name(n: &str) -> bool {
    !n.is_empty() && !n.contains('=') && !n.contains('\0')
}

/// Shannon entropy in bits per character.
fn entropy(s: &str) -> f64 {
    let mut counts: HashMap<char, usize> = HashMap::new();
    for c in s.chars() {
        *counts.entry(c).or_default() += 1;
    }
    let n = s.chars().count() as f64;
    counts
        .values()
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Whether a literal looks like a secret: known token prefixes, or a long high-entropy string.
/// Each `=`, `:`, `,` or whitespace separated part is checked, so `--token=ghp_…` is caught.
pub fn looks_like_secret(value: &str) -> Option<&'static str> {
    value
        .split(|c: char| c.is_whitespace() || c == '=' || c == ',' || c == ':')
        .filter(|part| !part.is_empty())
        .find_map(token_looks_like_secret)
}

fn token_looks_like_secret(v: &str) -> Option<&'static str> {
    const PREFIXES: &[(&str, &str)] = &[
        ("ghp_", "a GitHub token"),
        ("gho_", "a GitHub token"),
        ("ghs_", "a GitHub token"),
        ("ghu_", "a GitHub token"),
        ("github_pat_", "a GitHub token"),
        ("sk-", "an API secret key"),
        ("xoxb-", "a Slack token"),
        ("xoxp-", "a Slack token"),
        ("AKIA", "an AWS access key"),
        ("AGE-SECRET-KEY-1", "an age secret key"),
        ("fnt_", "a Fentaris API key"),
        ("glpat-", "a GitLab token"),
    ];
    for (p, what) in PREFIXES {
        if v.starts_with(p) && v.len() >= p.len() + 8 {
            return Some(what);
        }
    }
    let token_like = v.len() >= 32
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+/=_-".contains(c));
    let has_digit = v.chars().any(|c| c.is_ascii_digit());
    let has_alpha = v.chars().any(|c| c.is_ascii_alphabetic());
    if token_like && has_digit && has_alpha && entropy(v) >= 4.0 {
        return Some("a high-entropy token");
    }
    None
}

impl Validator<'_> {
    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// Limits of zero would refuse everything (or, for timeouts, close every connection).
    fn limits(&mut self, config: &Config) {
        let l = &config.limits;
        let counts = [
            ("maxBodyBytes", l.max_body_bytes),
            ("maxJsonDepth", l.max_json_depth),
            ("maxSessions", l.max_sessions),
            ("maxInflightPerUser", l.max_inflight_per_user),
            ("maxConnections", l.max_connections),
            ("maxSessionsPerUser", l.max_sessions_per_user),
            ("maxChildrenPerUser", l.max_children_per_user),
            ("maxUpstreamMessageBytes", l.max_upstream_message_bytes),
            ("maxListPages", l.max_list_pages),
            ("maxListItems", l.max_list_items),
        ];
        for (name, n) in counts {
            if n == 0 {
                self.push(
                    Diagnostic::new(
                        codes::BAD_VALUE,
                        format!("/limits/{name}"),
                        format!("`limits.{name}` is 0, which would refuse everything"),
                    )
                    .help(
                        "use a positive number, or remove it for the default (see README, Limits)",
                    ),
                );
            }
        }
        let times = [
            ("headerReadTimeout", l.header_read_timeout.0),
            ("idleTimeout", l.idle_timeout.0),
            ("listTimeout", l.list_timeout.0),
            ("sessionIdle", l.session_idle.0),
        ];
        for (name, d) in times {
            if d.is_zero() {
                self.push(
                    Diagnostic::new(
                        codes::BAD_VALUE,
                        format!("/limits/{name}"),
                        format!("`limits.{name}` is 0, which would end everything at once"),
                    )
                    .help("use a positive duration such as \"10s\", or remove it for the default"),
                );
            } else if d > MAX_LIMIT_DURATION {
                self.push(
                    Diagnostic::new(
                        codes::BAD_VALUE,
                        format!("/limits/{name}"),
                        format!("`limits.{name}` is longer than 365 days"),
                    )
                    .help(
                        "use at most \"365d\"; a deadline that far away never ends anything anyway",
                    ),
                );
            }
        }
    }

    fn secret_literal(&mut self, pointer: String, value: &str) {
        if let Some(what) = looks_like_secret(value) {
            self.push(
                Diagnostic::new(codes::SECRET_LITERAL, pointer, format!("this literal looks like {what}"))
                    .help("store it with `fentaris credentials set NAME --value-stdin` and refer to it as {\"vault\": \"NAME\"}, or use {\"env\": \"VAR\"}; rotate it if it was committed"),
            );
        }
    }

    fn reserved(&mut self, pointer: String, var: &str, what: &str) {
        if var.starts_with(RESERVED_PREFIX) {
            self.push(
                Diagnostic::new(codes::RESERVED_VARIABLE, pointer, format!("`{var}` cannot be used as {what}: FENTARIS_* variables hold Fentaris' own secrets"))
                    .help("use another variable name; Fentaris removes FENTARIS_* variables from its environment at start"),
            );
        }
    }

    fn vault_ref(&mut self, pointer: &str, name: &str) {
        if name.is_empty() {
            self.push(Diagnostic::new(
                codes::BAD_VALUE,
                format!("{pointer}/vault"),
                "a vault entry name cannot be empty",
            ));
        } else {
            self.vault_refs
                .push((name.to_string(), format!("{pointer}/vault")));
        }
    }

    /// Check a credential source (a `credential` reference is resolved later).
    fn source(&mut self, pointer: String, src: &CredentialSource, group: Option<usize>) {
        match src {
            CredentialSource::Env(var) => {
                self.reserved(format!("{pointer}/env"), var, "a credential source");
                if !valid_env_name(var) {
                    self.push(Diagnostic::new(
                        codes::BAD_VALUE,
                        format!("{pointer}/env"),
                        format!("`{var}` is not a valid environment variable name"),
                    ));
                }
            }
            CredentialSource::Vault(name) => self.vault_ref(&pointer, name),
            CredentialSource::Credential(name) => {
                let server = self.current_server.clone();
                self.refs.push(CredRef {
                    server,
                    name: name.clone(),
                    pointer: format!("{pointer}/credential"),
                    group,
                });
            }
        }
    }

    fn listeners(&mut self, c: &Config) {
        let listen = c.listen.parse::<SocketAddr>();
        let admin = c.admin_listen.parse::<SocketAddr>();
        for (field, value, parsed) in [
            ("listen", &c.listen, &listen),
            ("adminListen", &c.admin_listen, &admin),
        ] {
            if parsed.is_err() {
                self.push(
                    Diagnostic::new(
                        codes::BAD_VALUE,
                        format!("/{field}"),
                        format!("`{value}` is not an address and port"),
                    )
                    .help("write it as IP:PORT, e.g. \"127.0.0.1:8765\" or \"[::1]:8765\""),
                );
            }
        }
        if let (Ok(a), Ok(b)) = (listen, admin)
            && a == b
        {
            self.push(
                Diagnostic::new(
                    codes::BAD_VALUE,
                    "/adminListen",
                    "the admin listener cannot share the main listener's address",
                )
                .help("give /readyz and /metrics their own port so MCP clients cannot reach them"),
            );
        }
    }

    fn identity(&mut self, c: &Config) {
        let id = &c.identity;
        if !valid_header_name(&id.api_key_header) {
            self.push(Diagnostic::new(
                codes::BAD_VALUE,
                "/identity/apiKeyHeader",
                format!("`{}` is not a valid header name", id.api_key_header),
            ));
        }
        if let Some(age) = &id.max_key_age
            && let Err(e) = max_key_age(age)
        {
            self.push(
                Diagnostic::new(
                    codes::BAD_VALUE,
                    "/identity/maxKeyAge",
                    format!("`{age}` is not a key age: {e}"),
                )
                .help("write a duration such as 90d or 2160h"),
            );
        }
        for (i, c) in id.allowed_clients.iter().enumerate() {
            if !valid_cidr(c) {
                self.push(
                    Diagnostic::new(
                        codes::BAD_VALUE,
                        format!("/identity/allowedClients/{i}"),
                        format!("`{c}` is not an IP address or CIDR range"),
                    )
                    .help("write an address or a range, e.g. \"10.0.0.0/8\", \"192.168.1.20\" or \"fd00::/8\"; behind a reverse proxy, list the clients' addresses and the proxy in `trustedHeaders.proxies`"),
                );
            }
        }
        if let Some(t) = &id.trusted_headers {
            let base = "/identity/trustedHeaders";
            if t.proxies.is_empty() {
                self.push(
                    Diagnostic::new(codes::TRUSTED_HEADERS_NO_PROXIES, format!("{base}/proxies"), "trusted identity headers are enabled without a proxy allow-list")
                        .help("list the reverse proxies' addresses or CIDR ranges in `proxies`; otherwise any client could claim any identity"),
                );
            }
            for (i, p) in t.proxies.iter().enumerate() {
                if !valid_cidr(p) {
                    self.push(
                        Diagnostic::new(
                            codes::BAD_VALUE,
                            format!("{base}/proxies/{i}"),
                            format!("`{p}` is not an IP address or CIDR range"),
                        )
                        .help("e.g. \"10.0.0.5\" or \"10.0.0.0/24\""),
                    );
                }
            }
            for (field, h) in [
                ("userHeader", &t.user_header),
                ("secretHeader", &t.secret_header),
            ] {
                if !valid_header_name(h) {
                    self.push(Diagnostic::new(
                        codes::BAD_VALUE,
                        format!("{base}/{field}"),
                        format!("`{h}` is not a valid header name"),
                    ));
                }
            }
            self.source(format!("{base}/secret"), &t.secret, None);
        }
    }

    fn servers(&mut self, c: &Config) {
        let mut top: HashMap<&str, usize> = HashMap::new();
        for (i, s) in c.servers.iter().enumerate() {
            let p = format!("/servers/{i}");
            self.server(s, &p, None);
            if top.insert(&s.name, i).is_some() {
                self.push(
                    Diagnostic::new(
                        codes::DUPLICATE,
                        format!("{p}/name"),
                        format!("server `{}` is declared twice", s.name),
                    )
                    .help("give each server a unique name"),
                );
            }
        }
        let mut private: HashMap<&str, &str> = HashMap::new();
        for (gi, g) in c.groups.iter().enumerate() {
            let mut own: HashSet<&str> = HashSet::new();
            for (i, s) in g.servers.iter().enumerate() {
                let p = format!("/groups/{gi}/servers/{i}");
                self.server(s, &p, Some(gi));
                if top.contains_key(s.name.as_str()) {
                    self.push(
                        Diagnostic::new(
                            codes::SERVER_SHADOWS_TOP_LEVEL,
                            format!("{p}/name"),
                            format!(
                                "server `{}` is declared both at top level and in group `{}`",
                                s.name, g.id
                            ),
                        )
                        .help("rename one of them"),
                    );
                } else if !own.insert(&s.name) {
                    self.push(Diagnostic::new(
                        codes::DUPLICATE,
                        format!("{p}/name"),
                        format!("server `{}` is declared twice in group `{}`", s.name, g.id),
                    ));
                } else if let Some(other) = private.insert(&s.name, &g.id) {
                    self.push(
                        Diagnostic::new(
                            codes::DUPLICATE,
                            format!("{p}/name"),
                            format!("server `{}` is also declared by group `{other}`", s.name),
                        )
                        .help(
                            "a user in both groups would see two servers with one name; rename one",
                        ),
                    );
                }
            }
        }
    }

    fn server(&mut self, s: &Server, p: &str, group: Option<usize>) {
        self.current_server = group.is_none().then(|| s.name.clone());
        self.server_checks(s, p, group);
        self.current_server = None;
    }

    fn server_checks(&mut self, s: &Server, p: &str, group: Option<usize>) {
        if !valid_server_name(&s.name) {
            self.push(
                Diagnostic::new(codes::BAD_SERVER_NAME, format!("{p}/name"), format!("server name `{}` is not allowed", s.name))
                    .help("use 1-32 characters: lower-case letters, digits and `-`, starting with a letter or digit (no `_`, which separates server and tool names)"),
            );
        }
        let carries_credentials = s.auth.is_some() || !s.env_header_map.is_empty();
        match &s.transport {
            Transport::Stdio(st) => {
                let tp = format!("{p}/transport/stdio");
                if st.command.trim().is_empty() {
                    self.push(Diagnostic::new(
                        codes::BAD_VALUE,
                        format!("{tp}/command"),
                        "the command is empty",
                    ));
                }
                for (i, a) in st.args.iter().enumerate() {
                    self.secret_literal(format!("{tp}/args/{i}"), a);
                }
                for (k, val) in &st.env {
                    let vp = format!("{tp}/env/{}", tok(k));
                    self.reserved(vp.clone(), k, "a child environment variable");
                    if !valid_env_name(k) {
                        self.push(Diagnostic::new(
                            codes::BAD_VALUE,
                            vp.clone(),
                            format!("`{k}` is not a valid environment variable name"),
                        ));
                    }
                    match val {
                        EnvValue::Literal(l) => self.secret_literal(vp, l),
                        EnvValue::Source(src) => self.source(vp, src, group),
                    }
                }
                for (i, var) in st.inherit_env.iter().enumerate() {
                    self.reserved(format!("{tp}/inheritEnv/{i}"), var, "an inherited variable");
                }
            }
            Transport::StreamableHttp(h) => {
                let up = format!("{p}/transport/streamableHttp/url");
                match fluent_uri::Uri::parse(h.url.as_str()) {
                    Err(e) => self.push(
                        Diagnostic::new(
                            codes::BAD_VALUE,
                            up,
                            format!("`{}` is not a valid URL: {e}", h.url),
                        )
                        .help("e.g. \"https://mcp.example.com/mcp\""),
                    ),
                    Ok(u) => {
                        let scheme = u.scheme().as_str().to_ascii_lowercase();
                        let host = u
                            .authority()
                            .map(|a| a.host().to_string())
                            .unwrap_or_default();
                        if scheme != "http" && scheme != "https" || host.is_empty() {
                            self.push(Diagnostic::new(
                                codes::BAD_VALUE,
                                up.clone(),
                                format!("`{}` is not an http(s) URL with a host", h.url),
                            ));
                        } else if u.authority().is_some_and(|a| a.userinfo().is_some()) {
                            self.push(
                                Diagnostic::new(codes::SECRET_LITERAL, up.clone(), "the URL carries credentials in its user-info part")
                                    .help("remove `user:password@` and use `auth` with a credential source"),
                            );
                        }
                        if let Some(q) = u.query() {
                            for pair in q.as_str().split('&') {
                                if let Some((_, val)) = pair.split_once('=') {
                                    self.secret_literal(up.clone(), val);
                                }
                            }
                        }
                        if scheme == "http" && !is_loopback_host(&host) && carries_credentials {
                            self.push(
                                Diagnostic::new(
                                    codes::PLAINTEXT_CREDENTIALS,
                                    up,
                                    format!("credentials are sent to `{host}` over plain http://"),
                                )
                                .help("use https:// for any upstream that is not on this machine"),
                            );
                        }
                    }
                }
            }
        }
        if let Some(Auth::Bearer(src)) = &s.auth {
            self.source(format!("{p}/auth/bearer"), src, group);
        }
        for (h, val) in &s.headers {
            let hp = format!("{p}/headers/{}", tok(h));
            if !valid_header_name(h) {
                self.push(Diagnostic::new(
                    codes::BAD_VALUE,
                    hp.clone(),
                    format!("`{h}` is not a valid header name"),
                ));
            }
            if h.eq_ignore_ascii_case("authorization") {
                self.push(
                    Diagnostic::new(
                        codes::SECRET_LITERAL,
                        hp,
                        "a literal Authorization header puts a secret in the config",
                    )
                    .help("use \"auth\": {\"bearer\": {\"vault\": \"NAME\"}} instead"),
                );
            } else {
                self.secret_literal(hp, val);
            }
        }
        for (h, var) in &s.env_header_map {
            let hp = format!("{p}/envHeaderMap/{}", tok(h));
            if !valid_header_name(h) {
                self.push(Diagnostic::new(
                    codes::BAD_VALUE,
                    hp.clone(),
                    format!("`{h}` is not a valid header name"),
                ));
            }
            self.reserved(hp, var, "a header value source");
        }
        for (h, template) in &s.resolve_headers {
            let hp = format!("{p}/resolveHeaders/{}", tok(h));
            if !valid_header_name(h) {
                self.push(Diagnostic::new(
                    codes::BAD_VALUE,
                    hp.clone(),
                    format!("`{h}` is not a valid header name"),
                ));
            }
            for ph in placeholders(template) {
                if !PLACEHOLDERS.contains(&ph) {
                    let help =
                        did_you_mean(ph, PLACEHOLDERS.iter().copied()).unwrap_or_else(|| {
                            format!(
                                "placeholders: {}",
                                PLACEHOLDERS
                                    .iter()
                                    .map(|p| format!("{{{p}}}"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        });
                    self.push(
                        Diagnostic::new(
                            codes::BAD_VALUE,
                            hp.clone(),
                            format!("unknown placeholder `{{{ph}}}`"),
                        )
                        .help(help),
                    );
                }
            }
        }
    }

    fn policies_and_groups(&mut self, c: &Config) {
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (i, p) in c.policies.iter().enumerate() {
            if p.name.trim().is_empty() {
                self.push(Diagnostic::new(
                    codes::BAD_VALUE,
                    format!("/policies/{i}/name"),
                    "a policy name cannot be empty",
                ));
            }
            if names.insert(&p.name, i).is_some() {
                self.push(
                    Diagnostic::new(
                        codes::DUPLICATE,
                        format!("/policies/{i}/name"),
                        format!("policy `{}` is declared twice", p.name),
                    )
                    .help("give each policy a unique name"),
                );
            }
        }
        let mut used: HashSet<String> = HashSet::new();
        let mut check_ref = |v: &mut Validator, r: &PolicyRef, pointer: String, owner: &str| {
            if let PolicyRef::Named(n) = r {
                used.insert(n.clone());
                if !names.contains_key(n.as_str()) {
                    let help = did_you_mean(n, c.policies.iter().map(|p| p.name.as_str())).unwrap_or_else(|| {
                        if c.policies.is_empty() {
                            "declare it under `policies`, or write the policy inline: {\"rules\": [...]}".into()
                        } else {
                            format!("declared policies: {}", c.policies.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", "))
                        }
                    });
                    v.push(
                        Diagnostic::new(
                            codes::MISSING_POLICY,
                            pointer,
                            format!("{owner} uses policy `{n}`, which is not defined"),
                        )
                        .help(help),
                    );
                }
            }
        };
        let mut ids: HashMap<&str, usize> = HashMap::new();
        for (gi, g) in c.groups.iter().enumerate() {
            let gp = format!("/groups/{gi}");
            if g.id.trim().is_empty() {
                self.push(Diagnostic::new(
                    codes::BAD_VALUE,
                    format!("{gp}/id"),
                    "a group id cannot be empty",
                ));
            }
            if ids.insert(&g.id, gi).is_some() {
                self.push(
                    Diagnostic::new(
                        codes::DUPLICATE,
                        format!("{gp}/id"),
                        format!("group `{}` is declared twice", g.id),
                    )
                    .help("merge the two groups or rename one"),
                );
            }
            if g.users.is_empty() {
                self.push(
                    Diagnostic::new(
                        codes::EMPTY_GROUP,
                        format!("{gp}/users"),
                        format!("group `{}` has no users", g.id),
                    )
                    .help("add users, or remove the group"),
                );
            }
            let mut seen: HashSet<&str> = HashSet::new();
            for (ui, u) in g.users.iter().enumerate() {
                let up = match u {
                    UserEntry::Id(_) => format!("{gp}/users/{ui}"),
                    UserEntry::Spec(_) => format!("{gp}/users/{ui}/id"),
                };
                if u.id().trim().is_empty() {
                    self.push(Diagnostic::new(
                        codes::BAD_VALUE,
                        up.clone(),
                        "a user id cannot be empty",
                    ));
                }
                if !seen.insert(u.id()) {
                    self.push(
                        Diagnostic::new(
                            codes::DUPLICATE,
                            up,
                            format!("user `{}` appears twice in group `{}`", u.id(), g.id),
                        )
                        .help("remove one entry"),
                    );
                }
            }
            match &g.policy {
                None => self.push(
                    Diagnostic::new(
                        codes::GROUP_WITHOUT_POLICY,
                        gp.clone(),
                        format!(
                            "group `{}` has no policy, so its users are denied everything",
                            g.id
                        ),
                    )
                    .help("add \"policy\": \"NAME\" or an inline policy"),
                ),
                Some(r) => check_ref(
                    self,
                    r,
                    format!("{gp}/policy"),
                    &format!("group `{}`", g.id),
                ),
            }
        }
        if let Some(r) = &c.policy {
            check_ref(self, r, "/policy".into(), "the top-level policy");
        }
        for (i, p) in c.policies.iter().enumerate() {
            if !used.contains(&p.name) {
                self.push(
                    Diagnostic::new(
                        codes::UNUSED_POLICY,
                        format!("/policies/{i}/name"),
                        format!(
                            "policy `{}` is not used by any group or by the top-level policy",
                            p.name
                        ),
                    )
                    .help("reference it from a group's `policy`, or remove it"),
                );
            }
        }
    }

    fn users(&mut self, c: &Config) {
        struct Seen<'a> {
            group: &'a str,
            tenant: Option<&'a Option<String>>,
            keys: Option<&'a Vec<CredentialSource>>,
        }
        let mut users: HashMap<&str, Seen> = HashMap::new();
        let mut key_owner: HashMap<&CredentialSource, &str> = HashMap::new();
        for (gi, g) in c.groups.iter().enumerate() {
            for (ui, u) in g.users.iter().enumerate() {
                let UserEntry::Spec(spec) = u else {
                    users.entry(u.id()).or_insert(Seen {
                        group: &g.id,
                        tenant: None,
                        keys: None,
                    });
                    continue;
                };
                let up = format!("/groups/{gi}/users/{ui}");
                for (ki, k) in spec.api_keys.iter().enumerate() {
                    self.source(format!("{up}/apiKeys/{ki}"), k, Some(gi));
                    match key_owner.get(k) {
                        Some(owner) if *owner != spec.id => self.push(
                            Diagnostic::new(
                                codes::USER_CONFLICT,
                                format!("{up}/apiKeys/{ki}"),
                                format!("API key {k} belongs to both `{owner}` and `{}`", spec.id),
                            )
                            .help("give every user their own key"),
                        ),
                        _ => {
                            key_owner.insert(k, &spec.id);
                        }
                    }
                }
                match users.get_mut(spec.id.as_str()) {
                    None => {
                        users.insert(
                            &spec.id,
                            Seen {
                                group: &g.id,
                                tenant: Some(&spec.tenant_id),
                                keys: Some(&spec.api_keys),
                            },
                        );
                    }
                    Some(prev) => {
                        if let Some(t) = prev.tenant
                            && *t != spec.tenant_id
                        {
                            self.push(
                                Diagnostic::new(codes::USER_CONFLICT, format!("{up}/tenantId"), format!("user `{}` has tenantId {:?} here but {:?} in group `{}`", spec.id, spec.tenant_id, t, prev.group))
                                    .help("give a user's attributes once (other groups may list the plain id) or repeat them identically"),
                            );
                        }
                        if let Some(k) = prev.keys
                            && *k != spec.api_keys
                        {
                            self.push(
                                Diagnostic::new(codes::USER_CONFLICT, format!("{up}/apiKeys"), format!("user `{}` has different apiKeys here than in group `{}`", spec.id, prev.group))
                                    .help("give a user's attributes once (other groups may list the plain id) or repeat them identically"),
                            );
                        }
                        if prev.tenant.is_none() {
                            prev.tenant = Some(&spec.tenant_id);
                            prev.keys = Some(&spec.api_keys);
                            prev.group = &g.id;
                        }
                    }
                }
            }
        }
    }

    fn bindings(&mut self, map: &BTreeMap<String, CredentialSource>, base: &str) {
        for (name, src) in map {
            let p = format!("{base}/{}", tok(name));
            match src {
                CredentialSource::Credential(other) => self.push(
                    Diagnostic::new(codes::BAD_VALUE, format!("{p}/credential"), format!("binding `{name}` refers to binding `{other}`; a binding must name a source"))
                        .help("bind it to {\"env\": \"VAR\"} or {\"vault\": \"NAME\"}"),
                ),
                direct => self.source(p, direct, None),
            }
        }
    }

    fn credentials(&mut self, c: &Config) {
        self.bindings(&c.credentials, "/credentials");
        for (gi, g) in c.groups.iter().enumerate() {
            self.bindings(&g.credentials, &format!("/groups/{gi}/credentials"));
        }
        let refs = std::mem::take(&mut self.refs);
        let mut referenced: HashSet<&str> = HashSet::new();
        for r in &refs {
            referenced.insert(r.name.as_str());
            let bound = c.credentials.contains_key(&r.name)
                || match r.group {
                    Some(g) => c.groups[g].credentials.contains_key(&r.name),
                    None => c.groups.iter().any(|g| g.credentials.contains_key(&r.name)),
                };
            // A top-level server's credential bound only in some groups: every group whose
            // rules can allow requests to that server (and the top-level policy) needs it.
            if bound
                && !c.credentials.contains_key(&r.name)
                && let (Some(server), Some(engine)) = (&r.server, self.engine)
            {
                let missing: Vec<String> = engine
                    .scopes_allowing(server)
                    .into_iter()
                    .filter(|g| match g {
                        Some(g) => !c
                            .groups
                            .iter()
                            .any(|x| x.id == *g && x.credentials.contains_key(&r.name)),
                        None => true,
                    })
                    .map(|g| {
                        g.map(|g| format!("group `{g}`"))
                            .unwrap_or_else(|| "the top-level policy".into())
                    })
                    .collect();
                if !missing.is_empty() {
                    self.push(
                        Diagnostic::new(
                            codes::UNBOUND_CREDENTIAL,
                            r.pointer.clone(),
                            format!("credential `{}` of server `{server}` is not bound for {}, whose rules allow requests to it", r.name, missing.join(", ")),
                        )
                        .help(format!("bind `{}` under top-level `credentials`, or in each of those groups' `credentials`", r.name)),
                    );
                }
            }
            if !bound {
                let mut names: Vec<&str> = c.credentials.keys().map(|k| k.as_str()).collect();
                match r.group {
                    Some(g) => names.extend(c.groups[g].credentials.keys().map(|k| k.as_str())),
                    None => names.extend(
                        c.groups
                            .iter()
                            .flat_map(|g| g.credentials.keys().map(|k| k.as_str())),
                    ),
                }
                let help = did_you_mean(&r.name, names.iter().copied()).unwrap_or_else(|| {
                    format!("bind it under `credentials`: \"{}\": {{\"vault\": \"{}\"}} (there is no implicit fall-back to a vault entry of the same name)", r.name, r.name)
                });
                self.push(
                    Diagnostic::new(
                        codes::UNBOUND_CREDENTIAL,
                        r.pointer.clone(),
                        format!("credential `{}` is referenced but never bound", r.name),
                    )
                    .help(help),
                );
            }
        }
        let unused = |map: &BTreeMap<String, CredentialSource>,
                      base: &str,
                      v: &mut Validator<'_>| {
            for name in map.keys() {
                if !referenced.contains(name.as_str()) {
                    v.push(
                        Diagnostic::new(codes::UNUSED_CREDENTIAL, format!("{base}/{}", tok(name)), format!("credential binding `{name}` is never referenced"))
                            .help("reference it with {\"credential\": \"NAME\"} (e.g. in a server's auth), or remove it"),
                    );
                }
            }
        };
        unused(&c.credentials, "/credentials", self);
        for (gi, g) in c.groups.iter().enumerate() {
            unused(&g.credentials, &format!("/groups/{gi}/credentials"), self);
        }
    }

    fn middleware(&mut self, c: &Config) {
        for (i, m) in c.middleware.iter().enumerate() {
            match m {
                Middleware::ArgumentSchema(a) => {
                    let p = format!("/middleware/{i}/argumentSchema");
                    for (field, pat) in [("mcp", &a.mcp), ("tool", &a.tool)] {
                        if let Err(e) = crate::policy::Pattern::new(pat) {
                            self.push(Diagnostic::new(
                                codes::BAD_GLOB,
                                format!("{p}/{field}"),
                                format!("invalid pattern `{pat}`: {e}"),
                            ));
                        }
                    }
                    if !(a.schema.is_object() || a.schema.is_boolean()) {
                        self.push(Diagnostic::new(
                            codes::BAD_VALUE,
                            format!("{p}/schema"),
                            "a JSON Schema must be an object or a boolean",
                        ));
                    } else if let Err(e) = crate::middleware::schema::compile_schema(&a.schema) {
                        self.push(
                            Diagnostic::new(
                                codes::BAD_ARGUMENT_SCHEMA,
                                format!("{p}/schema"),
                                format!("the argument schema is not a valid JSON Schema: {e}"),
                            )
                            .help("fix the schema; https://json-schema.org/understanding-json-schema describes the keywords"),
                        );
                    }
                }
                Middleware::ExternalAuthorizer(x) => {
                    let p = format!("/middleware/{i}/externalAuthorizer");
                    for (field, pat) in [
                        ("mcp", &x.mcp),
                        ("operation", &x.operation),
                        ("target", &x.target),
                    ] {
                        if let Err(e) = crate::policy::Pattern::new(pat) {
                            self.push(Diagnostic::new(
                                codes::BAD_GLOB,
                                format!("{p}/{field}"),
                                format!("invalid pattern `{pat}`: {e}"),
                            ));
                        }
                    }
                    match fluent_uri::Uri::parse(x.url.as_str()) {
                        Ok(u) if matches!(u.scheme().as_str(), "http" | "https") => {
                            let host = u
                                .authority()
                                .map(|a| a.host().to_string())
                                .unwrap_or_default();
                            if u.scheme().as_str() == "http"
                                && !is_loopback_host(&host)
                                && x.auth.is_some()
                            {
                                self.push(
                                    Diagnostic::new(
                                        codes::PLAINTEXT_CREDENTIALS,
                                        format!("{p}/url"),
                                        format!(
                                            "credentials are sent to `{host}` over plain http://"
                                        ),
                                    )
                                    .help("use https://"),
                                );
                            }
                        }
                        _ => self.push(Diagnostic::new(
                            codes::BAD_VALUE,
                            format!("{p}/url"),
                            format!("`{}` is not an http(s) URL", x.url),
                        )),
                    }
                    if let Some(Auth::Bearer(src)) = &x.auth {
                        self.source(format!("{p}/auth/bearer"), src, None);
                    }
                }
            }
        }
    }
}

fn placeholders(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end) => {
                out.push(&after[..end]);
                rest = &after[end + 1..];
            }
            None => {
                out.push(after);
                break;
            }
        }
    }
    out
}

fn valid_cidr(s: &str) -> bool {
    match s.split_once('/') {
        None => s.parse::<IpAddr>().is_ok(),
        Some((ip, bits)) => match (ip.parse::<IpAddr>(), bits.parse::<u8>()) {
            (Ok(IpAddr::V4(_)), Ok(b)) => b <= 32,
            (Ok(IpAddr::V6(_)), Ok(b)) => b <= 128,
            _ => false,
        },
    }
}

/// FNT205: active vault API keys created, and credentials last set, longer than `max_age`
/// before `now`. Pure: the caller reads the vault envelope (dates are not secret) and the
/// clock.
pub fn old_secret_findings(
    max_age: std::time::Duration,
    envelope: &crate::vault::Envelope,
    now: std::time::SystemTime,
) -> Vec<Diagnostic> {
    let older = |stamp: &str| {
        humantime::parse_rfc3339(stamp)
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .filter(|age| *age > max_age)
    };
    let days = |d: std::time::Duration| d.as_secs() / 86_400;
    let limit = humantime::format_duration(max_age);
    let mut out = Vec::new();
    for k in &envelope.api_keys {
        let expired = k
            .expires
            .as_deref()
            .and_then(|e| humantime::parse_rfc3339(e).ok())
            .is_some_and(|e| now >= e);
        if k.revoked.is_some() || expired {
            continue;
        }
        if let Some(age) = older(&k.created) {
            out.push(
                Diagnostic::new(
                    codes::OLD_SECRET,
                    "/identity/maxKeyAge",
                    format!(
                        "API key {} of `{}` is {} days old, older than maxKeyAge ({limit})",
                        k.key_id,
                        crate::diagnostics::escape_control(&k.user),
                        days(age)
                    ),
                )
                .help(format!(
                    "fentaris auth api-key rotate {} {}",
                    crate::diagnostics::escape_control(&k.user),
                    k.key_id
                )),
            );
        }
    }
    for (name, e) in &envelope.entries {
        if let Some(age) = older(&e.updated) {
            out.push(
                Diagnostic::new(
                    codes::OLD_SECRET,
                    "/identity/maxKeyAge",
                    format!(
                        "credential `{name}` was last set {} days ago, longer than maxKeyAge ({limit})",
                        days(age)
                    ),
                )
                .help(format!(
                    "rotate it upstream, then `fentaris credentials set {name}`"
                )),
            );
        }
    }
    out
}

/// `identity.maxKeyAge` as a duration: more than zero.
pub fn max_key_age(text: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("it must be more than zero".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        assert!(valid_server_name("github"));
        assert!(valid_server_name("fs-2"));
        assert!(!valid_server_name("my_server"));
        assert!(!valid_server_name("-x"));
        assert!(!valid_server_name("GitHub"));
        assert!(!valid_server_name(&"a".repeat(33)));
    }

    #[test]
    fn secret_shapes() {
        assert!(looks_like_secret("ghp_abcdefghijklmnopqrstuvwxyz0123456789").is_some());
        assert!(looks_like_secret("Bearer sk-abcdefghijklmnop").is_some());
        assert!(looks_like_secret("/srv/shared").is_none());
        assert!(looks_like_secret("@modelcontextprotocol/server-filesystem").is_none());
        assert!(looks_like_secret("Zx9qT2mK7vB4nR8wL1pF6hJ3sD5gA0cE").is_some());
        assert!(looks_like_secret("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1").is_none());
        assert!(looks_like_secret("--token=ghp_abcdefghijklmnopqrstuvwxyz0123").is_some());
        assert!(looks_like_secret("AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ").is_some());
        assert!(looks_like_secret("fnt_ab12cd34_secretsecretsecret_abc123").is_some());
        assert!(looks_like_secret("--port=8080").is_none());
    }

    #[test]
    fn placeholder_parsing() {
        assert_eq!(
            placeholders("u-{subject.id}-{subject.tenantId}"),
            vec!["subject.id", "subject.tenantId"]
        );
        assert_eq!(placeholders("{oops"), vec!["oops"]);
    }

    #[test]
    fn timeouts_beyond_a_year_are_refused_with_their_pointer() {
        let mut c = Config::default();
        c.limits.idle_timeout = crate::config::HumanDuration(MAX_LIMIT_DURATION);
        assert!(validate(&c).is_empty(), "365 days is allowed");
        c.limits.idle_timeout =
            crate::config::HumanDuration(std::time::Duration::from_secs(u64::MAX / 4));
        let d = validate(&c);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].pointer, "/limits/idleTimeout");
    }

    #[test]
    fn zero_limits_are_refused_with_their_pointer() {
        let mut c = Config::default();
        c.limits.max_connections = 0;
        c.limits.header_read_timeout = crate::config::HumanDuration(std::time::Duration::ZERO);
        let d = validate(&c);
        let pointers: Vec<&str> = d
            .iter()
            .filter(|d| d.code == codes::BAD_VALUE.id)
            .map(|d| d.pointer.as_str())
            .collect();
        assert_eq!(
            pointers,
            vec!["/limits/maxConnections", "/limits/headerReadTimeout"]
        );
        assert!(validate(&Config::default()).is_empty());
    }
}
