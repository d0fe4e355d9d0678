//! Who may change state through the API, and which requests a browser could have sent on
//! someone's behalf.
//!
//! A **write** is every request that is neither a read (`GET`, `HEAD`, `OPTIONS`) nor a
//! heartbeat ping (`/ping/...`): today `POST`/`DELETE /api/v1/silences[/<id>]`,
//! `POST /-/reload` and the operator view's forms (`POST /ui/silences[/<id>/expire]`).
//! Defining writes by what they are not keeps a route added later behind the policy until
//! someone decides otherwise. Pings stay governed by each check's own token: a cron
//! job must not need the API's password.
//!
//! Writes are decided in this order:
//! 1. **No cross-site writes**, whoever asks: a request a web page could make a colleague's
//!    browser send is refused (403). That is one with `Sec-Fetch-Site` other than `same-origin`
//!    or `none`; with an `Origin` that is not the host it was sent to (`null` included); with a
//!    `Content-Type` other than `application/json` (every HTML form sends one); or with a body
//!    but no `Content-Type` while carrying a browser's `Origin`/`Sec-Fetch-Site` (a `fetch` of
//!    raw bytes). `curl -X POST .../-/reload` (no body, no content type, no browser headers) and
//!    the CLI (JSON) pass. The one exception is the operator view's own forms: under
//!    [`FORM_PREFIX`] a write may be `application/x-www-form-urlencoded` when the browser proves
//!    it comes from canaryd's own pages (`Sec-Fetch-Site: same-origin`, or an `Origin` that is
//!    the host it was sent to); a form without that proof is refused like any other.
//! 2. **Who**: with basic auth configured, an authenticated user ([`Principal`], inserted by the
//!    authentication layer; else 401). Without it, only loopback peers (127.0.0.0/8, ::1, and
//!    IPv4-mapped 127.0.0.0/8); anyone else gets 403 saying how to allow them. A default install
//!    then cannot be muted from the network: a silence stops every page, so it needs either
//!    access to the host or a password. A peer address that is unknown counts as not loopback.
//! 3. **DNS rebinding**: in loopback-only mode a browser on the host itself could be pointed at
//!    canaryd under a foreign name that resolves to 127.0.0.1, and its requests would then be
//!    "same-origin". So a write carrying browser headers must also name canaryd by a loopback
//!    host (`localhost`, `127.0.0.1`, `[::1]`).

use std::net::IpAddr;

use http::{header, HeaderMap, Method, StatusCode};

/// The user a request was authenticated as (inserted as a request extension by the basic-auth
/// layer after it verified the credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user name from `basic_auth_users`.
    pub user: String,
}

/// How writes are authorised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    /// Whether basic auth is configured (then writes need a [`Principal`]; else loopback only).
    pub basic_auth: bool,
}

/// What the policy looks at in a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The path, as sent (not decoded).
    pub path: &'a str,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The peer's address, when the listener knows it.
    pub peer: Option<IpAddr>,
    /// Whether the authentication layer verified a user ([`Principal`]).
    pub authenticated: bool,
}

/// Why a write was refused: the message the client gets (and the log's reason). Never carries a
/// header's value: those are the requester's to choose.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Loopback-only mode and the peer is elsewhere.
    #[error(
        "writes (silences, reload) are accepted only from loopback when no basic_auth_users are \
         configured, and this request came from {peer}: run the command on canaryd's host, or \
         give canaryd a web configuration file (--web.config.file) with basic_auth_users to \
         allow authenticated writes from the network"
    )]
    NotLoopback {
        /// The peer's address.
        peer: IpAddr,
    },
    /// Loopback-only mode and the listener did not say who the peer is.
    #[error(
        "writes (silences, reload) are accepted only from loopback when no basic_auth_users are \
         configured, and this request's peer address is unknown: configure basic_auth_users in a \
         web configuration file (--web.config.file) to allow authenticated writes"
    )]
    PeerUnknown,
    /// Basic auth is configured and the request carries no verified user.
    #[error("writes need an authenticated user: send the credentials of one of basic_auth_users")]
    Unauthenticated,
    /// `Sec-Fetch-Site` says a browser sent it from another site.
    #[error(
        "cross-site request refused: a browser sent it from another site (Sec-Fetch-Site: {0}); \
         change state with canaryd silence or curl, not from a web page"
    )]
    CrossSite(&'static str),
    /// `Origin` is not the host the request was sent to.
    #[error(
        "cross-site request refused: its Origin is not the host it was sent to; change state \
         with canaryd silence or curl, not from a web page"
    )]
    ForeignOrigin,
    /// A content type a form or a simple cross-site request can send.
    #[error(
        "writes take Content-Type: application/json (a form or a web page sends other types; \
         curl: -H 'Content-Type: application/json')"
    )]
    NotJson,
    /// A browser request with a body and no content type.
    #[error(
        "a write from a browser with a body needs Content-Type: application/json; change state \
         with canaryd silence or curl, not from a web page"
    )]
    UntypedBody,
    /// Loopback-only mode, browser headers, and a Host that is not a loopback name.
    #[error(
        "a browser request must name canaryd by a loopback address (localhost, 127.0.0.1, [::1]) \
         when writes are allowed from loopback only (a foreign name resolving to 127.0.0.1 is \
         how a web page reaches it)"
    )]
    ForeignHost,
}

impl Refusal {
    /// The HTTP status of the answer: 401 when credentials would help, else 403.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Unauthenticated => StatusCode::UNAUTHORIZED,
            _ => StatusCode::FORBIDDEN,
        }
    }
}

/// The paths whose writes may be HTML form posts from canaryd's own pages (the operator view).
pub const FORM_PREFIX: &str = "/ui/";

/// Whether a request changes state (see the module documentation).
pub fn is_write(method: &Method, path: &str) -> bool {
    let read = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    !read && !path.starts_with("/ping/")
}

/// The policy's answer for one request: `Ok` for reads, pings and allowed writes.
pub fn decide(policy: AccessPolicy, req: &RequestFacts<'_>) -> Result<(), Refusal> {
    if !is_write(req.method, req.path) {
        return Ok(());
    }
    let browser = cross_site(req.path, req.headers)?;
    if policy.basic_auth {
        return if req.authenticated {
            Ok(())
        } else {
            Err(Refusal::Unauthenticated)
        };
    }
    match req.peer {
        None => return Err(Refusal::PeerUnknown),
        Some(peer) if !peer.to_canonical().is_loopback() => {
            return Err(Refusal::NotLoopback { peer })
        }
        Some(_) => {}
    }
    if browser && !host(req.headers).is_some_and(is_loopback_host) {
        return Err(Refusal::ForeignHost);
    }
    Ok(())
}

/// The cross-site rules; `Ok(true)` when the request carries a browser's headers.
fn cross_site(path: &str, headers: &HeaderMap) -> Result<bool, Refusal> {
    let fetch_site = headers.get("sec-fetch-site");
    if let Some(site) = fetch_site {
        let site = site.as_bytes();
        if !site.eq_ignore_ascii_case(b"same-origin") && !site.eq_ignore_ascii_case(b"none") {
            let named = if site.eq_ignore_ascii_case(b"same-site") {
                "same-site"
            } else if site.eq_ignore_ascii_case(b"cross-site") {
                "cross-site"
            } else {
                "an unknown value"
            };
            return Err(Refusal::CrossSite(named));
        }
    }
    let origin = headers.get(header::ORIGIN);
    if let Some(origin) = origin {
        let same = origin_authority(origin.as_bytes())
            .zip(host(headers))
            .is_some_and(|(o, h)| o.eq_ignore_ascii_case(h.as_bytes()));
        if !same {
            return Err(Refusal::ForeignOrigin);
        }
    }
    // A form of the operator view: only with proof that canaryd's own page sent it (an Origin
    // reaching this point is the request's host).
    let own_form = path.starts_with(FORM_PREFIX)
        && (origin.is_some()
            || fetch_site.is_some_and(|s| s.as_bytes().eq_ignore_ascii_case(b"same-origin")));
    // Repeated headers: any of them must pass, so look at all.
    for content_type in headers.get_all(header::CONTENT_TYPE) {
        let ct = content_type.as_bytes();
        if !(is_json(ct) || own_form && is_form(ct)) {
            return Err(Refusal::NotJson);
        }
    }
    let browser = origin.is_some() || fetch_site.is_some();
    if browser && !headers.contains_key(header::CONTENT_TYPE) && has_body(headers) {
        return Err(Refusal::UntypedBody);
    }
    Ok(browser)
}

/// `application/json`, parameters allowed (`; charset=utf-8`), in any case.
fn is_json(value: &[u8]) -> bool {
    let essence = value.split(|b| *b == b';').next().unwrap_or_default();
    essence
        .trim_ascii()
        .eq_ignore_ascii_case(b"application/json")
}

/// `application/x-www-form-urlencoded`, parameters allowed, in any case.
fn is_form(value: &[u8]) -> bool {
    let essence = value.split(|b| *b == b';').next().unwrap_or_default();
    essence
        .trim_ascii()
        .eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
}

/// Whether the request announces a body (a length over 0, or chunks).
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|v| v.as_bytes() != b"0")
}

/// The `host[:port]` of an Origin `scheme://host[:port]` (`null` and anything else: none).
fn origin_authority(origin: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = origin.split_at_checked(origin.iter().position(|b| *b == b':')?)?;
    let authority = rest.strip_prefix(b"://")?;
    let known = scheme.eq_ignore_ascii_case(b"http") || scheme.eq_ignore_ascii_case(b"https");
    (known && !authority.is_empty() && !authority.contains(&b'/')).then_some(authority)
}

/// The one `Host` header, as text.
fn host(headers: &HeaderMap) -> Option<&str> {
    let mut all = headers.get_all(header::HOST).iter();
    let first = all.next()?;
    all.next().is_none().then(|| first.to_str().ok()).flatten()
}

/// `localhost`, a loopback IP literal, or either with a port.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // `[::1]` or `[::1]:9100`
        match rest.split_once(']') {
            Some((ip, port)) if port.is_empty() || port.starts_with(':') => ip,
            _ => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// The `handler` label of `canaryd_http_requests_total`: the route pattern a path matches, or
/// `other` (never the raw path, so the label set stays fixed).
pub fn handler_label(path: &str) -> &'static str {
    let segments: Vec<&str> = match path.strip_prefix('/') {
        Some(rest) => rest.split('/').collect(),
        None => return "other",
    };
    let named = |s: &str| !s.is_empty();
    match segments.as_slice() {
        ["metrics"] => "/metrics",
        ["-", "healthy"] => "/-/healthy",
        ["-", "ready"] => "/-/ready",
        ["-", "reload"] => "/-/reload",
        ["api", "v1", "checks"] => "/api/v1/checks",
        ["api", "v1", "checks", c] if named(c) => "/api/v1/checks/{check}",
        ["api", "v1", "alerts"] => "/api/v1/alerts",
        ["api", "v1", "silences"] => "/api/v1/silences",
        ["api", "v1", "silences", id] if named(id) => "/api/v1/silences/{id}",
        ["api", "v1", "incidents"] => "/api/v1/incidents",
        ["api", "v1", "incidents", id] if named(id) => "/api/v1/incidents/{id}",
        ["api", "v1", "incidents", id, "updates"] if named(id) => "/api/v1/incidents/{id}/updates",
        ["ping", c] if named(c) => "/ping/{check}",
        ["ping", c, w] if named(c) && named(w) => "/ping/{check}/{what}",
        // The operator view.
        [""] => "/",
        ["ui"] => "/ui",
        ["ui", ""] => "/ui/",
        ["ui", "static", "ui.css"] => "/ui/static/ui.css",
        ["ui", "checks", c] if named(c) => "/ui/checks/{check}",
        ["ui", "alerts"] => "/ui/alerts",
        ["ui", "silences"] => "/ui/silences",
        ["ui", "silences", id, "expire"] if named(id) => "/ui/silences/{id}/expire",
        ["ui", "heartbeats"] => "/ui/heartbeats",
        ["ui", "queues"] => "/ui/queues",
        _ => "other",
    }
}

/// Every value [`handler_label`] returns.
pub const HANDLERS: [&str; 25] = [
    "/metrics",
    "/-/healthy",
    "/-/ready",
    "/-/reload",
    "/api/v1/checks",
    "/api/v1/checks/{check}",
    "/api/v1/alerts",
    "/api/v1/silences",
    "/api/v1/silences/{id}",
    "/api/v1/incidents",
    "/api/v1/incidents/{id}",
    "/api/v1/incidents/{id}/updates",
    "/ping/{check}",
    "/ping/{check}/{what}",
    "/",
    "/ui",
    "/ui/",
    "/ui/static/ui.css",
    "/ui/checks/{check}",
    "/ui/alerts",
    "/ui/silences",
    "/ui/silences/{id}/expire",
    "/ui/heartbeats",
    "/ui/queues",
    "other",
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn decide_with(
        policy: AccessPolicy,
        method: Method,
        path: &str,
        pairs: &[(&str, &str)],
        peer: Option<IpAddr>,
        authenticated: bool,
    ) -> Result<(), Refusal> {
        let h = headers(pairs);
        decide(
            policy,
            &RequestFacts {
                method: &method,
                path,
                headers: &h,
                peer,
                authenticated,
            },
        )
    }

    const LOOPBACK_ONLY: AccessPolicy = AccessPolicy { basic_auth: false };
    const BASIC_AUTH: AccessPolicy = AccessPolicy { basic_auth: true };
    const LOCAL: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    const REMOTE: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));
    const JSON: (&str, &str) = ("content-type", "application/json");

    #[test]
    fn writes_are_silences_and_reload_never_reads_or_pings() {
        for (method, path) in [
            (Method::POST, "/api/v1/silences"),
            (Method::DELETE, "/api/v1/silences/abc"),
            (Method::POST, "/-/reload"),
            (Method::PUT, "/api/v1/silences"),
            (Method::POST, "/anything/else"),
        ] {
            assert!(is_write(&method, path), "{method} {path}");
        }
        for (method, path) in [
            (Method::GET, "/api/v1/silences"),
            (Method::HEAD, "/-/reload"),
            (Method::OPTIONS, "/api/v1/silences"),
            (Method::POST, "/ping/backup"),
            (Method::POST, "/ping/backup/fail"),
        ] {
            assert!(!is_write(&method, path), "{method} {path}");
        }
    }

    #[test]
    fn without_basic_auth_only_loopback_peers_may_write() {
        let loopbacks: [IpAddr; 4] = [
            Ipv4Addr::LOCALHOST.into(),
            Ipv4Addr::new(127, 9, 8, 7).into(),
            Ipv6Addr::LOCALHOST.into(),
            Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped().into(),
        ];
        for peer in loopbacks {
            assert_eq!(
                decide_with(
                    LOOPBACK_ONLY,
                    Method::POST,
                    "/api/v1/silences",
                    &[JSON],
                    Some(peer),
                    false
                ),
                Ok(()),
                "{peer}"
            );
        }
        let others: [IpAddr; 5] = [
            Ipv4Addr::new(10, 1, 2, 3).into(),
            Ipv4Addr::new(192, 168, 0, 1).into(),
            Ipv4Addr::UNSPECIFIED.into(),
            Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped().into(),
            "2001:db8::1".parse().unwrap(),
        ];
        for peer in others {
            let refused = decide_with(
                LOOPBACK_ONLY,
                Method::POST,
                "/-/reload",
                &[],
                Some(peer),
                false,
            );
            assert_eq!(refused, Err(Refusal::NotLoopback { peer }), "{peer}");
            let message = refused.unwrap_err().to_string();
            assert!(message.contains("basic_auth_users"), "{message}");
            assert!(message.contains(&peer.to_string()), "{message}");
        }
        assert_eq!(
            decide_with(LOOPBACK_ONLY, Method::POST, "/-/reload", &[], None, false),
            Err(Refusal::PeerUnknown)
        );
        // Reads and pings stay open from anywhere.
        assert_eq!(
            decide_with(
                LOOPBACK_ONLY,
                Method::GET,
                "/api/v1/silences",
                &[],
                REMOTE,
                false
            ),
            Ok(())
        );
        assert_eq!(
            decide_with(
                LOOPBACK_ONLY,
                Method::POST,
                "/ping/job",
                &[("content-type", "text/plain")],
                REMOTE,
                false
            ),
            Ok(())
        );
    }

    #[test]
    fn with_basic_auth_writes_need_a_user_from_anywhere() {
        assert_eq!(
            decide_with(
                BASIC_AUTH,
                Method::POST,
                "/api/v1/silences",
                &[JSON],
                REMOTE,
                true
            ),
            Ok(())
        );
        for peer in [REMOTE, LOCAL, None] {
            let refused = decide_with(
                BASIC_AUTH,
                Method::DELETE,
                "/api/v1/silences/x",
                &[],
                peer,
                false,
            );
            assert_eq!(refused, Err(Refusal::Unauthenticated));
            assert_eq!(refused.unwrap_err().status(), StatusCode::UNAUTHORIZED);
        }
    }

    #[test]
    fn cross_site_writes_are_refused_even_from_loopback_and_authenticated() {
        let cases: [(&[(&str, &str)], Refusal); 9] = [
            (
                &[
                    ("content-type", "text/plain"),
                    ("origin", "http://evil.example"),
                ],
                Refusal::ForeignOrigin,
            ),
            (&[("content-type", "text/plain")], Refusal::NotJson),
            (
                &[
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("content-length", "0"),
                ],
                Refusal::NotJson,
            ),
            (
                &[("content-type", "multipart/form-data; boundary=x")],
                Refusal::NotJson,
            ),
            (&[JSON, ("content-type", "text/plain")], Refusal::NotJson),
            (
                &[JSON, ("sec-fetch-site", "cross-site")],
                Refusal::CrossSite("cross-site"),
            ),
            (
                &[JSON, ("sec-fetch-site", "same-site")],
                Refusal::CrossSite("same-site"),
            ),
            (
                &[JSON, ("origin", "null"), ("host", "127.0.0.1:9100")],
                Refusal::ForeignOrigin,
            ),
            (
                &[
                    ("origin", "http://127.0.0.1:9100"),
                    ("host", "127.0.0.1:9100"),
                    ("content-length", "12"),
                ],
                Refusal::UntypedBody,
            ),
        ];
        for (pairs, refusal) in cases {
            for policy in [LOOPBACK_ONLY, BASIC_AUTH] {
                let got = decide_with(policy, Method::POST, "/api/v1/silences", pairs, LOCAL, true);
                assert_eq!(got, Err(refusal.clone()), "{pairs:?}");
                assert_eq!(refusal.status(), StatusCode::FORBIDDEN);
            }
        }
    }

    #[test]
    fn programs_and_same_origin_requests_pass() {
        let allowed: [&[(&str, &str)]; 7] = [
            // curl -X POST http://127.0.0.1:9100/-/reload
            &[("host", "127.0.0.1:9100")],
            &[("content-length", "0")],
            // a program's body without a content type (no browser sends one without an Origin)
            &[("content-length", "30")],
            &[("content-type", "Application/JSON; charset=utf-8")],
            &[
                JSON,
                ("origin", "http://localhost:9100"),
                ("host", "localhost:9100"),
            ],
            &[
                JSON,
                ("origin", "http://[::1]:9100"),
                ("host", "[::1]:9100"),
                ("sec-fetch-site", "same-origin"),
            ],
            &[("sec-fetch-site", "none"), ("host", "127.0.0.1")],
        ];
        for pairs in allowed {
            assert_eq!(
                decide_with(
                    LOOPBACK_ONLY,
                    Method::POST,
                    "/-/reload",
                    pairs,
                    LOCAL,
                    false
                ),
                Ok(()),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn a_browser_on_the_host_must_name_canaryd_by_a_loopback_address() {
        // DNS rebinding: evil.example resolves to 127.0.0.1, so its page is "same-origin".
        let rebound: &[(&str, &str)] = &[
            JSON,
            ("origin", "http://evil.example:9100"),
            ("host", "evil.example:9100"),
        ];
        assert_eq!(
            decide_with(
                LOOPBACK_ONLY,
                Method::POST,
                "/api/v1/silences",
                rebound,
                LOCAL,
                false
            ),
            Err(Refusal::ForeignHost)
        );
        // With basic auth the browser has no credentials for evil.example: the user decides.
        assert_eq!(
            decide_with(
                BASIC_AUTH,
                Method::POST,
                "/api/v1/silences",
                rebound,
                LOCAL,
                true
            ),
            Ok(())
        );
        // Without browser headers any Host passes (curl http://$(hostname):9100/-/reload).
        assert_eq!(
            decide_with(
                LOOPBACK_ONLY,
                Method::POST,
                "/-/reload",
                &[("host", "myhost:9100")],
                LOCAL,
                false
            ),
            Ok(())
        );
        for host in [
            "localhost",
            "LOCALHOST:1",
            "127.0.0.1",
            "127.3.2.1:80",
            "[::1]",
            "[::1]:9100",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "evil.example",
            "10.0.0.1:80",
            "[::1]x",
            "[2001:db8::1]:80",
            "localhost.evil:80",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn the_operator_views_forms_pass_only_from_its_own_pages() {
        const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");
        let own: [&[(&str, &str)]; 3] = [
            &[
                FORM,
                ("origin", "http://canaryd.example:9464"),
                ("host", "canaryd.example:9464"),
                ("sec-fetch-site", "same-origin"),
            ],
            &[
                FORM,
                ("origin", "https://canaryd.example"),
                ("host", "canaryd.example"),
            ],
            &[FORM, ("sec-fetch-site", "same-origin")],
        ];
        for pairs in own {
            for path in ["/ui/silences", "/ui/silences/abc/expire"] {
                assert_eq!(
                    decide_with(BASIC_AUTH, Method::POST, path, pairs, REMOTE, true),
                    Ok(()),
                    "{path} {pairs:?}"
                );
                // Still a write: a user is needed.
                assert_eq!(
                    decide_with(BASIC_AUTH, Method::POST, path, pairs, REMOTE, false),
                    Err(Refusal::Unauthenticated)
                );
            }
            // Forms go to the operator view only.
            assert_eq!(
                decide_with(
                    BASIC_AUTH,
                    Method::POST,
                    "/api/v1/silences",
                    pairs,
                    REMOTE,
                    true
                ),
                Err(Refusal::NotJson)
            );
        }
        // A forged form from another site, with the user's credentials: refused.
        let forged: [(&[(&str, &str)], Refusal); 5] = [
            (
                &[
                    FORM,
                    ("origin", "http://evil.example"),
                    ("host", "canaryd.example:9464"),
                    ("sec-fetch-site", "cross-site"),
                ],
                Refusal::CrossSite("cross-site"),
            ),
            (
                &[
                    FORM,
                    ("origin", "http://evil.example"),
                    ("host", "canaryd.example:9464"),
                ],
                Refusal::ForeignOrigin,
            ),
            (
                &[FORM, ("origin", "null"), ("host", "canaryd.example")],
                Refusal::ForeignOrigin,
            ),
            (
                &[FORM, ("sec-fetch-site", "same-site")],
                Refusal::CrossSite("same-site"),
            ),
            // No proof of where it came from (an old browser, a plain program): not a form.
            (&[FORM, ("host", "canaryd.example")], Refusal::NotJson),
        ];
        for (pairs, refusal) in forged {
            assert_eq!(
                decide_with(BASIC_AUTH, Method::POST, "/ui/silences", pairs, LOCAL, true),
                Err(refusal),
                "{pairs:?}"
            );
        }
        // Loopback-only mode: a page of a foreign name resolving to 127.0.0.1 is refused.
        let rebound: &[(&str, &str)] = &[
            FORM,
            ("origin", "http://evil.example:9464"),
            ("host", "evil.example:9464"),
        ];
        assert_eq!(
            decide_with(
                LOOPBACK_ONLY,
                Method::POST,
                "/ui/silences",
                rebound,
                LOCAL,
                false
            ),
            Err(Refusal::ForeignHost)
        );
        let local: &[(&str, &str)] = &[
            FORM,
            ("origin", "http://127.0.0.1:9464"),
            ("host", "127.0.0.1:9464"),
        ];
        assert_eq!(
            decide_with(
                LOOPBACK_ONLY,
                Method::POST,
                "/ui/silences",
                local,
                LOCAL,
                false
            ),
            Ok(())
        );
    }

    #[test]
    fn origins_are_parsed_strictly() {
        assert_eq!(origin_authority(b"http://a:1"), Some(&b"a:1"[..]));
        assert_eq!(origin_authority(b"HTTPS://a"), Some(&b"a"[..]));
        for bad in [
            &b"null"[..],
            b"http://",
            b"ftp://a",
            b"http://a/b",
            b"http:a",
            b"",
        ] {
            assert_eq!(
                origin_authority(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // Two Host headers: no host to compare with, so an Origin cannot match.
        let h = headers(&[("host", "a"), ("host", "a"), ("origin", "http://a")]);
        assert_eq!(cross_site("/", &h), Err(Refusal::ForeignOrigin));
    }

    #[test]
    fn handler_labels_are_route_patterns_never_raw_paths() {
        for (path, label) in [
            ("/metrics", "/metrics"),
            ("/-/reload", "/-/reload"),
            ("/api/v1/silences", "/api/v1/silences"),
            ("/api/v1/silences/0b1c", "/api/v1/silences/{id}"),
            ("/api/v1/checks/shop", "/api/v1/checks/{check}"),
            ("/ping/backup", "/ping/{check}"),
            ("/ping/backup/fail", "/ping/{check}/{what}"),
            ("/ping/", "other"),
            ("/metrics/", "other"),
            ("/api/v1/silences/", "other"),
            ("/secret-token-in-path", "other"),
            ("/", "/"),
            ("/ui/", "/ui/"),
            ("/ui/checks/shop", "/ui/checks/{check}"),
            ("/ui/checks/", "other"),
            ("/ui/silences/0b1c/expire", "/ui/silences/{id}/expire"),
            ("/ui/silences//expire", "other"),
            ("/ui/static/other.css", "other"),
            ("", "other"),
            ("*", "other"),
        ] {
            assert_eq!(handler_label(path), label, "{path}");
            assert!(HANDLERS.contains(&label));
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn method() -> impl Strategy<Value = Method> {
            prop::sample::select(vec![
                Method::GET,
                Method::HEAD,
                Method::OPTIONS,
                Method::POST,
                Method::DELETE,
                Method::PUT,
                Method::PATCH,
            ])
        }

        fn path() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(vec![
                    "/api/v1/silences",
                    "/api/v1/silences/x",
                    "/-/reload",
                    "/ping/hb",
                    "/ping/hb/fail",
                    "/metrics",
                    "/ui/silences",
                    "/ui/silences/x/expire",
                ])
                .prop_map(str::to_string),
                "/[a-z/{}%.-]{0,30}",
            ]
        }

        /// Headers a browser, a program or an attacker could send (values any visible ASCII).
        fn header_pairs() -> impl Strategy<Value = Vec<(&'static str, String)>> {
            let name = prop::sample::select(vec![
                "host",
                "origin",
                "content-type",
                "content-length",
                "transfer-encoding",
                "sec-fetch-site",
                "authorization",
            ]);
            let value = prop_oneof![
                prop::sample::select(vec![
                    "application/json",
                    "application/x-www-form-urlencoded",
                    "text/plain",
                    "127.0.0.1:9464",
                    "http://127.0.0.1:9464",
                    "null",
                    "cross-site",
                    "same-origin",
                    "0",
                    "12",
                ])
                .prop_map(str::to_string),
                "[ -~]{0,40}",
            ];
            prop::collection::vec((name, value), 0..6)
        }

        fn peer() -> impl Strategy<Value = Option<IpAddr>> {
            prop::option::of(any::<[u8; 16]>().prop_map(|b| {
                let v6 = Ipv6Addr::from(b);
                match b[0] % 3 {
                    0 => IpAddr::V4(Ipv4Addr::new(b[1], b[2], b[3], b[4])),
                    1 => IpAddr::V6(Ipv4Addr::new(127, b[2], b[3], b[4]).to_ipv6_mapped()),
                    _ => IpAddr::V6(v6),
                }
            }))
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

            #[test]
            fn the_policy_holds_for_any_request(
                method in method(),
                path in path(),
                pairs in header_pairs(),
                peer in peer(),
                basic_auth in any::<bool>(),
                authenticated in any::<bool>(),
            ) {
                let mut headers = HeaderMap::new();
                for (k, v) in &pairs {
                    if let Ok(v) = v.parse() {
                        headers.append(*k, v);
                    }
                }
                let facts = RequestFacts { method: &method, path: &path, headers: &headers, peer, authenticated };
                let policy = AccessPolicy { basic_auth };
                let got = decide(policy, &facts);
                prop_assert!(HANDLERS.contains(&handler_label(&path)));
                if !is_write(&method, &path) {
                    prop_assert_eq!(got, Ok(()));
                    return Ok(());
                }
                if got.is_ok() {
                    // Whatever passed: JSON or no content type, no foreign site, and a user
                    // or a loopback peer.
                    // (or a form of the operator view that a page of canaryd's own origin sent)
                    let own_page = headers.contains_key(header::ORIGIN)
                        || headers.get("sec-fetch-site").is_some_and(|s| s.as_bytes().eq_ignore_ascii_case(b"same-origin"));
                    for ct in headers.get_all(header::CONTENT_TYPE) {
                        let form = path.starts_with(FORM_PREFIX) && own_page && is_form(ct.as_bytes());
                        prop_assert!(is_json(ct.as_bytes()) || form, "{:?}", ct);
                    }
                    if let Some(site) = headers.get("sec-fetch-site") {
                        let site = site.to_str().unwrap_or("").to_ascii_lowercase();
                        prop_assert!(site == "same-origin" || site == "none", "{}", site);
                    }
                    if let Some(origin) = headers.get(header::ORIGIN) {
                        let host = host(&headers).unwrap_or_default().to_ascii_lowercase();
                        let origin = origin.to_str().unwrap_or("").to_ascii_lowercase();
                        prop_assert!(
                            origin == format!("http://{host}") || origin == format!("https://{host}"),
                            "{} vs {}", origin, host
                        );
                    }
                    if basic_auth {
                        prop_assert!(authenticated);
                    } else {
                        prop_assert!(peer.is_some_and(|p| p.to_canonical().is_loopback()), "{:?}", peer);
                    }
                } else if let Err(refusal) = got {
                    prop_assert!(!refusal.to_string().is_empty());
                }
            }
        }
    }
}
