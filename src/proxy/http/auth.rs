//! Who is calling: Host and Origin checks, API keys or trusted identity headers, the
//! client's address, and the per-address limit on failed authentications.

use super::*;

/// Identity asserted by a trusted reverse proxy (`identity.trustedHeaders`), resolved.
#[derive(Clone)]
pub struct Trusted {
    pub user_header: String,
    pub secret_header: String,
    pub secret: crate::secret::Secret,
    pub proxies: Vec<ipnet::IpNet>,
}

impl App {
    /// Whether `addr` has used up its failed authentications for this minute.
    pub(super) fn auth_limited(&self, addr: Option<std::net::IpAddr>, max: u32) -> bool {
        let Some(addr) = addr else { return false };
        let m = self.auth_failures.lock().unwrap_or_else(|e| e.into_inner());
        m.get(&addr).is_some_and(|(since, n)| {
            since.elapsed() < std::time::Duration::from_secs(60) && *n >= max
        })
    }

    pub(super) fn note_auth_failure(&self, addr: Option<std::net::IpAddr>) {
        let Some(addr) = addr else { return };
        let mut m = self.auth_failures.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() > 100_000 {
            m.retain(|_, (since, _)| since.elapsed() < std::time::Duration::from_secs(60));
        }
        let e = m.entry(addr).or_insert((std::time::Instant::now(), 0));
        if e.0.elapsed() >= std::time::Duration::from_secs(60) {
            *e = (std::time::Instant::now(), 0);
        }
        e.1 += 1;
    }
}

/// The authenticated caller, put into request extensions by the auth layer.
#[derive(Clone)]
pub(super) struct Authed {
    pub(super) identity: Identity,
    pub(super) subject: Arc<Subject>,
    /// The client's address (the forwarded one when a trusted proxy sent the request).
    pub(super) ip: Option<std::net::IpAddr>,
    /// The state the request was authenticated against, and is decided against throughout.
    pub(super) st: Arc<FrontState>,
}

impl Authed {
    /// The client's address as text, for the audit trail (written only where a record
    /// needs it: a session's start, a request without a session).
    pub(super) fn address(&self) -> Option<String> {
        self.ip.map(address_text)
    }
}

/// The TCP peer of a request routed by axum (the listener puts it into the extensions).
fn peer_of(req: &Request) -> Option<std::net::IpAddr> {
    req.extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

/// The client's address: the TCP peer, or, when the peer is a configured trusted proxy, the
/// nearest address in `X-Forwarded-For` that is not one.
pub fn client_address(
    st: &FrontState,
    headers: &HeaderMap,
    peer: Option<std::net::IpAddr>,
) -> Option<std::net::IpAddr> {
    let peer = peer?;
    let proxies = st
        .trusted
        .as_ref()
        .map(|t| t.proxies.as_slice())
        .unwrap_or(&[]);
    let trusted = |ip: &std::net::IpAddr| proxies.iter().any(|n| n.contains(ip));
    if !trusted(&peer) {
        return Some(peer);
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
        .collect::<Vec<_>>();
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !trusted(ip))
            .unwrap_or(peer),
    )
}

/// An address as `Display` writes it. IPv4, the common case, without the formatting
/// machinery (which costs ~1.3k instructions per request).
pub(super) fn address_text(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut s = String::with_capacity(15);
            let mut b = itoa::Buffer::new();
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                s.push_str(b.format(o));
            }
            s
        }
        v6 => v6.to_string(),
    }
}

/// The record of a request refused before it is authenticated: why, what it asked for,
/// and only where it connected from (never the presented key).
fn refusal_record(
    event: &'static str,
    reason: &str,
    req: &axum::http::request::Parts,
    ip: Option<std::net::IpAddr>,
) -> Record {
    let mut r = Record::new(event);
    r.reason = Some(reason.into());
    r.method = Some(req.method.to_string());
    r.target = Some(req.uri.path().chars().take(256).collect());
    r.client = Some(Arc::new(ClientRef {
        address: ip.map(address_text),
        ..ClientRef::default()
    }));
    r
}

/// An address or CIDR range (`10.0.0.5`, `10.0.0.0/8`, `fd00::/8`).
pub(super) fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .ok()
}

/// Whether `identity.allowedClients` lets `addr` in (an empty list lets everyone in; an
/// unknown address only then). IPv4 clients of a dual-stack listener (`::ffff:a.b.c.d`) are
/// matched as IPv4.
pub(super) fn client_allowed(st: &FrontState, addr: Option<std::net::IpAddr>) -> bool {
    let nets = &st.access.allowed_clients;
    if nets.is_empty() {
        return true;
    }
    addr.is_some_and(|a| {
        let a = a.to_canonical();
        nets.iter().any(|n| n.contains(&a))
    })
}

pub(super) fn is_loopback_host(h: &str) -> bool {
    h == "localhost"
        || h.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub(super) fn host_of(authority: &str) -> String {
    let a = authority.trim().to_ascii_lowercase();
    if let Some(rest) = a.strip_prefix('[') {
        return format!("[{}]", rest.split(']').next().unwrap_or(""));
    }
    a.rsplit_once(':')
        .map(|(h, p)| {
            if p.chars().all(|c| c.is_ascii_digit()) {
                h.to_string()
            } else {
                a.clone()
            }
        })
        .unwrap_or(a)
}

/// Host/Origin checks, authentication, and endpoint visibility, as the axum middleware of
/// the router's `/mcp` routes (the listener calls [`authenticate`] itself for POSTs).
pub(super) async fn guard(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let peer = peer_of(&req);
    let (mut parts, body) = req.into_parts();
    match authenticate(&app, &parts, peer) {
        Ok(a) => {
            parts.extensions.insert(a);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(r) => r,
    }
}

/// Host/Origin checks, authentication, and endpoint visibility, for every /mcp request:
/// who is calling, or the refusal to send. `peer` is the TCP peer's address.
// The `Err` is the refusal itself, on the refusal path only: boxing it would buy nothing.
#[allow(clippy::result_large_err)]
pub(super) fn authenticate(
    app: &App,
    req: &axum::http::request::Parts,
    peer: Option<std::net::IpAddr>,
) -> Result<Authed, Response> {
    // One state for the whole request: a reload meanwhile does not mix two configs.
    let st = app.st();
    // `identity.allowedClients`: before anything else, so a refused address learns nothing
    // (not even whether its key is valid).
    let ip = client_address(&st, &req.headers, peer);
    if !client_allowed(&st, ip) {
        st.proxy.metrics().auth_failure();
        // Audited up to the per-address failure budget a minute, so a refused address
        // cannot flood the audit trail; refused either way.
        let max = st.proxy.config().limits.auth_failures_per_minute;
        if !app.auth_limited(ip, max) {
            app.note_auth_failure(ip);
            st.proxy.audit().write(refusal_record(
                "client.refused",
                "address not in identity.allowedClients",
                req,
                ip,
            ));
        }
        return Err(json_response(
            StatusCode::FORBIDDEN,
            json!({ "jsonrpc": "2.0", "id": null, "error": { "code": -32001, "message": "Forbidden: this client address is not allowed (identity.allowedClients)" } }),
        ));
    }
    // DNS rebinding: the Host must be ours, and a browser Origin must be allowed.
    let host = req
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(host_of)
        .unwrap_or_default();
    if !is_loopback_host(&host) && !st.allowed_hosts.contains(&host) {
        return Err((StatusCode::FORBIDDEN, "Forbidden: Host not allowed").into_response());
    }
    if let Some(origin) = req.headers.get(header::ORIGIN) {
        let o = origin.to_str().unwrap_or("");
        let (scheme, rest) = o.split_once("://").unwrap_or(("", ""));
        let ohost = host_of(rest.split('/').next().unwrap_or(""));
        let loopback_origin = matches!(scheme, "http" | "https") && is_loopback_host(&ohost);
        if !st.allowed_origins.iter().any(|a| a == o) && !loopback_origin {
            return Err((StatusCode::FORBIDDEN, "Forbidden: Origin not allowed").into_response());
        }
    }
    if app.auth_limited(ip, st.proxy.config().limits.auth_failures_per_minute) {
        let mut r = json_response(
            StatusCode::TOO_MANY_REQUESTS,
            json!({ "jsonrpc": "2.0", "id": null, "error": { "code": -32001, "message": "Too many failed authentications from this address; try again in a minute" } }),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return Err(r);
    }
    let identity = match trusted_identity(&st, &req.headers, peer) {
        Some(Ok(i)) => Ok(i),
        Some(Err(())) => Err(
            "trusted identity headers refused (not from a listed proxy, wrong secret, or undeclared user)",
        ),
        None => match presented_key(&req.headers, &st.api_key_header) {
            Ok(k) => st
                .verifier
                .verify(k)
                .ok_or("unknown, revoked or expired API key"),
            Err(crate::identity::KeyProblem::Missing) => Err("no API key"),
            Err(crate::identity::KeyProblem::Conflicting) => {
                Err("two different API keys (header and Authorization)")
            }
            Err(crate::identity::KeyProblem::Invalid) => Err("malformed credentials"),
        },
    };
    let identity = match identity {
        Ok(i) => i,
        Err(why) => {
            st.proxy.metrics().auth_failure();
            app.note_auth_failure(ip);
            // Never the presented key: only why it failed, from where, and for what.
            st.proxy
                .audit()
                .write(refusal_record("auth.failed", why, req, ip));
            let mut r = json_response(
                StatusCode::UNAUTHORIZED,
                json!({ "jsonrpc": "2.0", "id": null, "error": { "code": -32001, "message": format!("Unauthorized: invalid or missing API key (header {})", st.api_key_header) } }),
            );
            // A challenge without `resource_metadata`: nothing points an MCP client at an
            // OAuth authorization server (Fentaris takes API keys, not OAuth tokens).
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"fentaris\""),
            );
            return Err(r);
        }
    };
    let subject = st.proxy.engine().shared_subject(&identity.user);
    // `/mcp/<server>` for a server the subject cannot see answers like an unknown path.
    if let Some(name) = req.uri.path().strip_prefix("/mcp/")
        && !st.proxy.engine().can_use(&subject, name)
    {
        return Err(not_found());
    }
    Ok(Authed {
        identity,
        subject,
        ip,
        st,
    })
}

/// `None`: the request asserts no identity by header. `Some(Err)`: it does, but not from a
/// listed proxy address, without the right shared secret, or naming an undeclared user: the
/// request is refused (never silently downgraded to another identity).
pub(super) fn trusted_identity(
    st: &FrontState,
    headers: &HeaderMap,
    peer: Option<std::net::IpAddr>,
) -> Option<Result<Identity, ()>> {
    let t = st.trusted.as_ref()?;
    let user = headers.get(t.user_header.as_str())?;
    let from_proxy = peer.is_some_and(|ip| t.proxies.iter().any(|n| n.contains(&ip)));
    let secret_ok = headers.get(t.secret_header.as_str()).is_some_and(|v| {
        bool::from(subtle::ConstantTimeEq::ct_eq(
            v.as_bytes(),
            t.secret.expose().as_bytes(),
        ))
    });
    let user = user.to_str().ok().map(str::trim).filter(|u| !u.is_empty());
    match user {
        Some(u) if from_proxy && secret_ok && st.proxy.engine().is_declared_user(u) => {
            Some(Ok(Identity {
                user: u.to_string(),
                key_id: "trusted-header".into(),
            }))
        }
        _ => Some(Err(())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for a in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "1.0.10.100",
            "::1",
            "::ffff:10.0.0.1",
            "fd00::1:2",
        ] {
            let ip: std::net::IpAddr = a.parse().unwrap();
            assert_eq!(address_text(ip), ip.to_string());
        }
        proptest::proptest!(|(o: [u8; 4])| {
            let ip = std::net::IpAddr::from(o);
            proptest::prop_assert_eq!(address_text(ip), ip.to_string());
        });
    }

    #[test]
    pub(super) fn hosts() {
        assert_eq!(host_of("127.0.0.1:8765"), "127.0.0.1");
        assert_eq!(host_of("[::1]:8765"), "[::1]");
        assert_eq!(host_of("Example.COM"), "example.com");
        assert!(is_loopback_host("localhost"));
        assert!(
            is_loopback_host("127.0.0.1")
                && is_loopback_host("[::1]")
                && is_loopback_host("127.1.2.3")
        );
        assert!(!is_loopback_host("evil.example"));
        assert!(!is_loopback_host("127.evil.example"));
        assert!(!is_loopback_host("127.0.0.1.evil.example"));
    }
}
