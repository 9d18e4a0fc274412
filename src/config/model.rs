//! The serde model of `.fentaris/config.json` (DESIGN section 3).
//!
//! Every struct denies unknown fields so that a typo is an error with a "did you mean" hint
//! instead of a silently ignored setting. Named items are arrays (not objects) so duplicates can
//! be reported. The JSON Schema printed by `fentaris config schema` is generated from these types.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, json_schema};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Default downstream listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8765";
/// Default admin listen address (`/readyz`, `/metrics`).
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8766";
/// Default name of the header that carries a client API key.
pub const DEFAULT_API_KEY_HEADER: &str = "x-fentaris-api-key";

fn default_listen() -> String {
    DEFAULT_LISTEN.to_string()
}
fn default_admin_listen() -> String {
    DEFAULT_ADMIN_LISTEN.to_string()
}
fn default_separator() -> String {
    "__".to_string()
}
fn default_api_key_header() -> String {
    DEFAULT_API_KEY_HEADER.to_string()
}
fn is_false(b: &bool) -> bool {
    !*b
}

/// The whole project configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Path or URL of the JSON Schema, for editors.
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Free text for people reading the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Downstream (MCP clients) listen address.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Admin listener for `/readyz` and `/metrics`.
    #[serde(default = "default_admin_listen")]
    pub admin_listen: String,
    /// Write an audit record for every decision and outcome.
    #[serde(default)]
    pub auto_log: bool,
    /// Key of Fentaris' own list cursors on `/mcp`; give every replica the same one.
    /// Default: a random key per process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor_key: Option<CredentialSource>,
    /// Joins server and tool/prompt names on the aggregated endpoint: `<server>__<name>`.
    #[serde(default = "default_separator")]
    pub name_separator: String,
    /// How clients authenticate.
    #[serde(default)]
    pub identity: Identity,
    /// Upstream MCP servers visible to every group.
    #[serde(default)]
    pub servers: Vec<Server>,
    /// Named policies, referenced by groups or by the top-level `policy`.
    #[serde(default)]
    pub policies: Vec<NamedPolicy>,
    /// Groups of users, each with a policy and optionally private servers and credentials.
    #[serde(default)]
    pub groups: Vec<Group>,
    /// Top-level credential bindings: name -> source.
    #[serde(default)]
    pub credentials: BTreeMap<String, CredentialSource>,
    /// A policy that applies to every authenticated subject (name or inline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyRef>,
    /// Declarative middleware: argument schemas and an external authorizer.
    #[serde(default)]
    pub middleware: Vec<Middleware>,
    /// Audit sink settings.
    #[serde(default)]
    pub audit: Audit,
    /// Limits on what clients may ask of the proxy.
    #[serde(default)]
    pub limits: Limits,
}

/// Limits on what clients may ask of the proxy; every one has a safe default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// Largest request body (bytes); larger requests get HTTP 413. Default 4 MiB.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Deepest JSON nesting accepted in a request. Default 64.
    #[serde(default = "default_max_depth")]
    pub max_json_depth: usize,
    /// Open sessions (all users); `initialize` beyond it gets HTTP 503. Default 10,000.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Requests one user may have in flight; more get HTTP 429. Default 64.
    #[serde(default = "default_max_inflight")]
    pub max_inflight_per_user: usize,
    /// Sessions idle this long are ended. Default 30m.
    #[serde(default = "default_session_idle")]
    pub session_idle: HumanDuration,
    /// Failed authentications per client address and minute before that address gets
    /// HTTP 429 for the rest of the minute. Default 20.
    #[serde(default = "default_auth_failures")]
    pub auth_failures_per_minute: u32,
    /// Open client connections (all users). At the limit, the connection that has waited
    /// longest for a request (a slow or idle one) is closed to make room; when every
    /// connection is busy, new ones are closed at once. Default 4,096.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Time a client has to send a complete request head (request line and headers) after
    /// connecting or after its first byte on a kept-alive connection; also the time it has to
    /// send the body once the head is read. Slower connections are closed. Default 10s.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout: HumanDuration,
    /// A kept-alive connection with no request in flight is closed after this long, and so is
    /// one whose client has not read what is written to it for this long. Default 60s.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: HumanDuration,
    /// Open sessions per user; `initialize` beyond it gets HTTP 429. Default 1,000.
    #[serde(default = "default_max_sessions_per_user")]
    pub max_sessions_per_user: usize,
    /// Upstream connections one user may hold open for servers with `"isolation":
    /// "session"` (one per session and server); a request that needs one more gets HTTP 429.
    /// Default 32.
    #[serde(default = "default_max_children_per_user")]
    pub max_children_per_user: usize,
    /// Largest message accepted from an upstream (a stdio line, an HTTP response body or one
    /// SSE event), in bytes; never buffered past it. The request fails naming the server,
    /// and a stdio upstream that sent one is restarted. Default 16 MiB.
    #[serde(default = "default_max_upstream_message")]
    pub max_upstream_message_bytes: usize,
    /// Pages Fentaris itself reads from an upstream list (when it refreshes the names of
    /// tools and prompts before a call), and upstream pages gathered into one answer of a
    /// list on `/mcp`. Default 100.
    #[serde(default = "default_max_list_pages")]
    pub max_list_pages: usize,
    /// Time Fentaris spends reading all pages of one upstream list; an answer of a list on
    /// `/mcp` reads no further page after it. Default 30s.
    #[serde(default = "default_list_timeout")]
    pub list_timeout: HumanDuration,
    /// Items in one answer of a list on `/mcp` (tools, prompts, resources or templates of
    /// every server, gathered from their pages); past it, and past `maxUpstreamMessageBytes`
    /// of items, the answer ends with a `nextCursor` that resumes where it stopped.
    /// Default 1,000.
    #[serde(default = "default_max_list_items")]
    pub max_list_items: usize,
}

fn default_max_body() -> usize {
    4 << 20
}
fn default_max_depth() -> usize {
    64
}
fn default_max_sessions() -> usize {
    10_000
}
fn default_max_inflight() -> usize {
    64
}
fn default_session_idle() -> HumanDuration {
    HumanDuration(Duration::from_secs(30 * 60))
}
fn default_auth_failures() -> u32 {
    20
}
fn default_max_connections() -> usize {
    4096
}
fn default_header_read_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}
fn default_idle_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn default_max_sessions_per_user() -> usize {
    1000
}
fn default_max_children_per_user() -> usize {
    32
}
fn default_max_upstream_message() -> usize {
    16 << 20
}
fn default_max_list_pages() -> usize {
    100
}
fn default_max_list_items() -> usize {
    1000
}
fn default_list_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: default_max_body(),
            max_json_depth: default_max_depth(),
            max_sessions: default_max_sessions(),
            max_inflight_per_user: default_max_inflight(),
            session_idle: default_session_idle(),
            auth_failures_per_minute: default_auth_failures(),
            max_connections: default_max_connections(),
            header_read_timeout: default_header_read_timeout(),
            idle_timeout: default_idle_timeout(),
            max_sessions_per_user: default_max_sessions_per_user(),
            max_children_per_user: default_max_children_per_user(),
            max_upstream_message_bytes: default_max_upstream_message(),
            max_list_pages: default_max_list_pages(),
            list_timeout: default_list_timeout(),
            max_list_items: default_max_list_items(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            schema: None,
            description: None,
            listen: default_listen(),
            admin_listen: default_admin_listen(),
            auto_log: false,
            cursor_key: None,
            name_separator: default_separator(),
            identity: Identity::default(),
            servers: Vec::new(),
            policies: Vec::new(),
            groups: Vec::new(),
            credentials: BTreeMap::new(),
            policy: None,
            middleware: Vec::new(),
            audit: Audit::default(),
            limits: Limits::default(),
        }
    }
}

/// Client identity settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Identity {
    /// Header carrying the API key (`Authorization: Bearer` is accepted too).
    #[serde(default = "default_api_key_header")]
    pub api_key_header: String,
    /// Host header values accepted besides loopback names (DNS-rebinding protection).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    /// Origin header values accepted from browsers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    /// Client addresses or CIDR ranges allowed to connect to the MCP listener; others get 403
    /// before any key check. Empty: every address. Behind a reverse proxy listed in
    /// `trustedHeaders.proxies`, the client's forwarded address is checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_clients: Vec<String>,
    /// Identity asserted by a trusted reverse proxy. Off unless configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_headers: Option<TrustedHeaders>,
    /// Warn (`policy check`, `vault status`) about vault API keys and credentials older than
    /// this, e.g. `90d`. Off unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_key_age: Option<String>,
}

impl Default for Identity {
    fn default() -> Self {
        Identity {
            api_key_header: default_api_key_header(),
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            allowed_clients: Vec::new(),
            trusted_headers: None,
            max_key_age: None,
        }
    }
}

/// Trusted identity headers from a reverse proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrustedHeaders {
    /// Header naming the user (must be a declared user).
    pub user_header: String,
    /// Header carrying the shared secret the proxy presents.
    pub secret_header: String,
    /// Where the shared secret comes from.
    pub secret: CredentialSource,
    /// Addresses or CIDR ranges of the proxies allowed to assert identity.
    #[serde(default)]
    pub proxies: Vec<String>,
}

/// One upstream MCP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Server {
    /// `^[a-z0-9][a-z0-9-]{0,31}$`
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub transport: Transport,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    /// Literal, non-secret headers sent to a streamable HTTP upstream.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Header name -> environment variable holding its value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_header_map: BTreeMap<String, String>,
    /// Per-request headers from subject attributes, e.g. `{"x-user": "{subject.id}"}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resolve_headers: BTreeMap<String, String>,
    /// `shared` (default): connections keyed by what the upstream sees; `session`: one per session.
    #[serde(default)]
    pub isolation: Isolation,
    #[serde(default)]
    pub timeouts: Timeouts,
}

/// How Fentaris reaches an upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Transport {
    Stdio(StdioTransport),
    StreamableHttp(HttpTransport),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StdioTransport {
    pub command: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment of the child: a literal or a credential source per variable.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, EnvValue>,
    /// Working directory, relative to the config's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Variables passed through from Fentaris' own environment, named one by one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inherit_env: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpTransport {
    pub url: String,
}

/// Upstream authentication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Auth {
    /// `Authorization: Bearer <secret>`.
    Bearer(CredentialSource),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Isolation {
    #[default]
    Shared,
    Session,
}

/// Upstream timeouts, as durations such as `"30s"` or `"2m"`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Timeouts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<HumanDuration>,
}

/// Where a secret comes from. Shown as this reference, never as its value.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum CredentialSource {
    /// An environment variable of the Fentaris process.
    Env(String),
    /// An entry of `.fentaris/credentials.enc.json`.
    Vault(String),
    /// A named binding (group `credentials`, then top-level `credentials`).
    Credential(String),
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::Env(v) => write!(f, "env:{v}"),
            CredentialSource::Vault(v) => write!(f, "vault:{v}"),
            CredentialSource::Credential(v) => write!(f, "credential:{v}"),
        }
    }
}

/// A child environment value: a literal or a credential source.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum EnvValue {
    Literal(String),
    Source(CredentialSource),
}

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EnvValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a credential source such as {\"env\": \"VAR\"}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EnvValue, E> {
                Ok(EnvValue::Literal(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<EnvValue, A::Error> {
                CredentialSource::deserialize(de::value::MapAccessDeserializer::new(m))
                    .map(EnvValue::Source)
            }
        }
        d.deserialize_any(V)
    }
}

/// A named policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamedPolicy {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// An inline policy (in a group or at top level).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InlinePolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// A policy given by name or inline.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum PolicyRef {
    Named(String),
    Inline(InlinePolicy),
}

impl<'de> Deserialize<'de> for PolicyRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PolicyRef;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a policy name or an inline policy {\"rules\": [...]}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PolicyRef, E> {
                Ok(PolicyRef::Named(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<PolicyRef, A::Error> {
                InlinePolicy::deserialize(de::value::MapAccessDeserializer::new(m))
                    .map(PolicyRef::Inline)
            }
        }
        d.deserialize_any(V)
    }
}

/// One policy rule: exactly one of `allow`, `deny`, `allowCapability`, `denyCapability`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Server name or glob (`*`, `git*`).
    pub mcp: String,
    /// Tool name(s) or glob(s) to allow calling (shorthand for `tool:call`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<OneOrMany>,
    /// Tool name(s) or glob(s) to deny calling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny: Option<OneOrMany>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_capability: Option<Capability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_capability: Option<Capability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A string or a list of strings.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn as_slice(&self) -> &[String] {
        match self {
            OneOrMany::One(s) => std::slice::from_ref(s),
            OneOrMany::Many(v) => v,
        }
    }
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a tool name or a list of tool names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(v.to_string()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, s: A) -> Result<OneOrMany, A::Error> {
                Vec::<String>::deserialize(de::value::SeqAccessDeserializer::new(s))
                    .map(OneOrMany::Many)
            }
        }
        d.deserialize_any(V)
    }
}

/// A capability: an operation, optionally narrowed to targets of one kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Capability {
    /// `tool:call`, `resource:read`, `resources:list`, ..., a glob, or `custom:<method>`.
    pub operation: String,
    /// Target name, URI or glob. Absent means every target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `tool`, `resource`, `resourceTemplate`, `prompt` or `server`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "target_kind_schema")]
    pub target_kind: Option<String>,
}

fn target_kind_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    json_schema!({
        "type": "string",
        "enum": ["tool", "resource", "resourceTemplate", "prompt", "server"]
    })
}

/// A group of users sharing a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Group {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub users: Vec<UserEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyRef>,
    /// Servers visible only to this group's members.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<Server>,
    /// Credential bindings used when this group's rule allowed the request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub credentials: BTreeMap<String, CredentialSource>,
}

/// A user: a plain id, or an object with attributes.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum UserEntry {
    Id(String),
    Spec(UserSpec),
}

impl UserEntry {
    pub fn id(&self) -> &str {
        match self {
            UserEntry::Id(id) => id,
            UserEntry::Spec(s) => &s.id,
        }
    }
}

impl<'de> Deserialize<'de> for UserEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = UserEntry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a user id or {\"id\": ..., \"tenantId\": ..., \"apiKeys\": [...]}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<UserEntry, E> {
                Ok(UserEntry::Id(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<UserEntry, A::Error> {
                UserSpec::deserialize(de::value::MapAccessDeserializer::new(m)).map(UserEntry::Spec)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserSpec {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// API keys for this user from config sources (the vault holds generated ones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<CredentialSource>,
}

/// Declarative middleware.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Middleware {
    /// Arguments of matching tool calls must satisfy a JSON Schema.
    ArgumentSchema(ArgumentSchema),
    /// An HTTP authorizer asked after policy (fails closed).
    ExternalAuthorizer(ExternalAuthorizer),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArgumentSchema {
    /// Server name or glob.
    pub mcp: String,
    /// Tool name or glob.
    pub tool: String,
    /// JSON Schema the arguments must satisfy.
    pub schema: serde_json::Value,
    /// Message returned to the client on violation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalAuthorizer {
    /// Servers it is asked for (glob; default every server).
    #[serde(default = "star")]
    pub mcp: String,
    /// Operations it is asked for (glob over operation names; default `tool:call`).
    #[serde(default = "tool_call")]
    pub operation: String,
    /// Targets it is asked for (glob over tool/prompt names and URIs; default all).
    #[serde(default = "star")]
    pub target: String,
    pub url: String,
    /// Default 1s; minutes are allowed for approval flows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// Send tool arguments to the authorizer.
    #[serde(default, skip_serializing_if = "is_false")]
    pub include_arguments: bool,
    /// Cache allow answers for this long (off by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_allow_for: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
}

/// Where audit records go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AuditSink {
    #[default]
    File,
    Stdout,
    Both,
}

/// What happens when the audit sink cannot accept records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OnFailure {
    /// Refuse requests (fail closed).
    #[default]
    Deny,
    /// Keep serving without audit (a security warning).
    Allow,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Audit {
    /// File path relative to the config's folder.
    #[serde(default = "default_audit_path")]
    pub path: String,
    #[serde(default)]
    pub sink: AuditSink,
    /// Tags added to every record.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub on_failure: OnFailure,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsync_interval: Option<HumanDuration>,
    /// Rotate the file when it exceeds this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_file_bytes: Option<u64>,
    /// Number of rotated files kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_files: Option<u32>,
}

fn star() -> String {
    "*".to_string()
}

fn tool_call() -> String {
    "tool:call".to_string()
}

fn default_audit_path() -> String {
    "logs/audit.jsonl".to_string()
}

impl Default for Audit {
    fn default() -> Self {
        Audit {
            path: default_audit_path(),
            sink: AuditSink::default(),
            tags: BTreeMap::new(),
            on_failure: OnFailure::default(),
            fsync_interval: None,
            max_file_bytes: None,
            keep_files: None,
        }
    }
}

/// A duration written as `"1s"`, `"500ms"`, `"2m"`, `"90d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map(HumanDuration).map_err(|e| {
            de::Error::custom(format!(
                "invalid duration `{s}` ({e}); write a number and a unit such as \"500ms\", \"30s\" or \"2m\""
            ))
        })
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        json_schema!({
            "type": "string",
            "description": "A duration such as \"500ms\", \"30s\", \"2m\" or \"1h\".",
            "pattern": "^\\s*[0-9]+\\s*[a-zA-Z]+(\\s*[0-9]+\\s*[a-zA-Z]+)*\\s*$"
        })
    }
}
