//! The HTTP API: `/metrics`, `/-/healthy`, `/-/ready`, `/-/reload`, `/api/v1/checks[/<name>]`,
//! `/api/v1/alerts`, `/api/v1/silences[/<id>]` (GET, POST, DELETE), `/api/v1/incidents[/<id>[/updates]]` (the status page's incidents), and the heartbeat pings `/ping/<check>[/start|/fail|/<exit code>]` (GET or POST);
//! the operator view's pages under `/ui/` ([`crate::ui`]) are merged in, behind the same layers.
//!
//! No endpoint takes a probe target from a request: targets come only from configuration files.
//!
//! A ping is checked in this order, before any of its body is read: the check must exist and be
//! a heartbeat check (else 404, the same answer either way), the suffix must be `start`, `fail` or
//! an exit code 0-255 (else 404), and when the check has a token the request must carry
//! `Authorization: Bearer <token>` (else 401; the scheme in any case, exactly one space, the
//! token; compared in constant time, never logged). Then the body is read up to
//! [`BODY_READ_LIMIT`] (more: 413, nothing recorded) and its last
//! [`BODY_KEEP`](crate::probe::heartbeat::BODY_KEEP) bytes are kept.
//!
//! Every other route reads at most [`API_BODY_LIMIT`] of a body (more: 413). Every answer of
//! the API carries a message, unknown paths and methods included.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::access::{self, AccessPolicy, Principal, RequestFacts};
use crate::alert::silence::{Silence, MAX_TIME_MS};
use crate::alert::{from_ms, rfc3339, to_ms};
use crate::daemon::Daemon;
use crate::loader::Config;
use crate::metrics::Format;
use crate::probe::check::Check;
use crate::probe::heartbeat::def::Heartbeat;
use crate::probe::heartbeat::rows::HeartbeatRow;
use crate::probe::heartbeat::{HeartbeatSpec, Ping, Schedule, BODY_READ_LIMIT};
use crate::probe::{CheckResult, Phase};
use crate::shard::Shard;
use crate::status::api::incident_json;
use crate::status::page::{IncidentError, StatusPage};

/// The largest request body of an API route other than the pings (a new silence is a few
/// hundred bytes; its largest valid form is well under this).
pub const API_BODY_LIMIT: usize = 64 * 1024;

/// The API's routes over a daemon without a web configuration: no basic auth, writes allowed
/// from loopback only.
pub fn router(daemon: Arc<Daemon>) -> Router {
    router_with(daemon, Arc::default())
}

/// The API's routes over a daemon behind the web configuration's layers, outermost first:
/// counting (`canaryd_http_requests_total`, so refusals of every layer count), authentication
/// (basic auth and the configured headers: [`crate::web::auth`]), then the write policy
/// ([`crate::access`]), which reads the [`Principal`] authentication left.
pub fn router_with(daemon: Arc<Daemon>, web: Arc<crate::web::WebConfig>) -> Router {
    let policy = AccessPolicy {
        basic_auth: web.auth_required(),
    };
    let routes = Router::new()
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(|| async { "OK\n" }))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload))
        .route("/api/v1/checks", get(checks))
        .route("/api/v1/checks/{check}", get(one_check))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/silences", get(silences).post(add_silence))
        .route(
            "/api/v1/silences/{id}",
            get(one_silence).delete(expire_silence),
        )
        .route("/api/v1/incidents", get(incidents).post(open_incident))
        .route("/api/v1/incidents/{id}", get(one_incident))
        .route("/api/v1/incidents/{id}/updates", post(update_incident))
        .route("/ping/{check}", get(ping).post(ping))
        .route("/ping/{check}/{what}", get(ping_what).post(ping_what))
        .merge(crate::ui::routes())
        // Every answer carries a message, also where no route or method matches.
        .fallback(|uri: axum::http::Uri| async move {
            // The API answers JSON everywhere, its unknown paths included.
            if uri.path().starts_with("/api/") {
                (
                    StatusCode::NOT_FOUND,
                    Json(json!({ "error": "no such endpoint" })),
                )
                    .into_response()
            } else {
                plain(StatusCode::NOT_FOUND, "no such endpoint\n")
            }
        })
        .method_not_allowed_fallback(|| async {
            plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this endpoint\n",
            )
        })
        // Every extractor of a body stops at this (413 past it); pings read their `Body` with
        // their own, larger limit.
        .layer(axum::extract::DefaultBodyLimit::max(API_BODY_LIMIT))
        .with_state(daemon.clone());
    routes
        .layer(axum::middleware::from_fn_with_state(policy, access_layer))
        .layer(axum::middleware::from_fn_with_state(
            crate::web::auth::Auth::new(web),
            crate::web::auth::layer,
        ))
        .layer(axum::middleware::from_fn_with_state(daemon, count_layer))
}

/// Counts every answer in `canaryd_http_requests_total{handler,code}` (by route pattern, never
/// the raw path), refused ones and unknown paths included.
async fn count_layer(
    State(d): State<Arc<Daemon>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let handler = access::handler_label(request.uri().path());
    let response = next.run(request).await;
    d.metrics
        .count_http_request(handler, response.status().as_u16());
    response
}

/// Applies the access policy to a request. A refusal is logged with the handler, the peer and
/// the reason (never a header's value: credentials stay out of the log).
async fn access_layer(
    State(policy): State<AccessPolicy>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let handler = access::handler_label(request.uri().path());
    let peer = request
        .extensions()
        .get::<ConnectInfo<PeerAddr>>()
        .map(|c| c.0 .0.ip());
    let facts = RequestFacts {
        method: request.method(),
        path: request.uri().path(),
        headers: request.headers(),
        peer,
        authenticated: request.extensions().get::<Principal>().is_some(),
    };
    match access::decide(policy, &facts) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            let peer = peer.map_or_else(|| "unknown".to_string(), |p| p.to_string());
            tracing::warn!(handler = %handler, peer = %peer, reason = %refusal, "request refused");
            let status = refusal.status();
            let mut answer = (status, format!("{refusal}\n")).into_response();
            if status == StatusCode::UNAUTHORIZED {
                answer.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Basic realm=\"canaryd\""),
                );
            }
            answer
        }
    }
}

/// Serves the API until `shutdown` resolves: plain HTTP, no authentication.
pub async fn serve(
    listener: tokio::net::TcpListener,
    daemon: Arc<Daemon>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_web(listener, daemon, Arc::default(), shutdown).await
}

/// The peer's address, as [`ConnectInfo`] for both listeners (plain TCP and TLS): the access
/// policy decides loopback-only writes by it.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>>
    for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

impl
    axum::extract::connect_info::Connected<
        axum::serve::IncomingStream<'_, crate::web::tls::TlsListener>,
    > for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, crate::web::tls::TlsListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

/// Serves the API as the web configuration says (`--web.config.file`): over TLS when it has
/// `tls_server_config`, behind basic auth when it has `basic_auth_users`, with its headers;
/// writes as [`crate::access`] decides.
pub async fn serve_web(
    listener: tokio::net::TcpListener,
    daemon: Arc<Daemon>,
    web: Arc<crate::web::WebConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router_with(daemon, web.clone()).into_make_service_with_connect_info::<PeerAddr>();
    match &web.tls {
        Some(tls) => {
            let listener = crate::web::tls::TlsListener::new(listener, tls.clone())?;
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

/// At most this many connections to the public status page at once; more wait in the kernel's
/// backlog until one closes.
pub const STATUS_MAX_CONNECTIONS: usize = 4096;
/// A client gets this long to send a request's head (also while a kept-alive connection is
/// idle): a slow or silent client cannot hold a connection open (slowloris).
pub const STATUS_HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves the public status page until `shutdown` resolves: plain HTTP/1.1, read-only, nothing
/// of the API. It faces the internet, so connections are capped ([`STATUS_MAX_CONNECTIONS`])
/// and each request head must arrive within [`STATUS_HEADER_TIMEOUT`].
pub async fn serve_status(
    listener: tokio::net::TcpListener,
    page: Arc<StatusPage>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    let app = crate::status::web::router(page);
    let slots = Arc::new(tokio::sync::Semaphore::new(STATUS_MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return Ok(()),
            },
            () = &mut shutdown => return Ok(()),
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    tracing::warn!("status page: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(STATUS_HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = connection.await;
            drop(permit);
        });
    }
}

async fn metrics(State(d): State<Arc<Daemon>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let body = d.metrics.encode(format);
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

/// 200 while everything canaryd promised to keep is in the state store; 503 with the reason
/// while something is kept in memory only (the store cannot be written).
async fn ready(State(d): State<Arc<Daemon>>) -> Response {
    match d.alerting.store_health() {
        Ok(()) => (StatusCode::OK, "Ready\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("Not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn reload(State(d): State<Arc<Daemon>>) -> Response {
    // In a task of its own: a crash inside a reload is answered and counted, not a dropped
    // connection with the reload metric still at 1.
    let reloading = tokio::spawn({
        let d = d.clone();
        async move { d.reload().await }
    });
    match reloading.await {
        Err(e) => {
            d.metrics.set_reload(false, std::time::SystemTime::now());
            tracing::error!("reload crashed, the running configuration stays: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "reload crashed (see canaryd's log); the running configuration stays\n",
            )
                .into_response()
        }
        Ok(Ok(n)) => (StatusCode::OK, format!("reloaded: {n} checks\n")).into_response(),
        Ok(Err(errors)) => (
            StatusCode::BAD_REQUEST,
            format!("reload refused, the running configuration stays:\n{errors}\n"),
        )
            .into_response(),
    }
}

// A path that does not decode (invalid UTF-8) names no check: 404 like any unknown name.
async fn ping(
    State(d): State<Arc<Daemon>>,
    check: Result<Path<String>, PathRejection>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (check, ping) = match check {
        Ok(Path(check)) => (check, Some(Ping::Success)),
        Err(_) => (String::new(), None),
    };
    record_ping(&d, &check, ping, method, &headers, body).await
}

async fn ping_what(
    State(d): State<Arc<Daemon>>,
    path: Result<Path<(String, String)>, PathRejection>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (check, ping) = match path {
        Ok(Path((check, what))) => (check, Ping::from_suffix(&what)),
        Err(_) => (String::new(), None),
    };
    record_ping(&d, &check, ping, method, &headers, body).await
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, text).into_response()
}

/// The shard that owns heartbeat check `name`, when it is configured but not on this shard.
fn heartbeat_elsewhere(config: &Config, name: &str) -> Option<Shard> {
    config
        .elsewhere
        .iter()
        .any(|c| c.name == name && c.kind.spec::<Heartbeat>().is_some())
        .then(|| Shard::owner(name, config.shard.count()))
}

async fn record_ping(
    d: &Daemon,
    check: &str,
    ping: Option<Ping>,
    method: Method,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    // HEAD is answered by GET routes; a HEAD (a link checker, a preview) must not count as a run.
    if method == Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, POST")],
            "",
        )
            .into_response();
    }
    let config = d.config();
    let spec = config
        .checks
        .iter()
        .filter(|c| c.name == check)
        .find_map(|c| c.kind.spec::<Heartbeat>().cloned());
    // An unknown check and a check of another kind look the same from outside.
    let (Some(spec), Some(ping)) = (spec, ping) else {
        if let Some(owner) = heartbeat_elsewhere(&config, check) {
            return (
                StatusCode::NOT_FOUND,
                format!(
                    "heartbeat check {check:?} runs on shard {owner}, not on this one ({}): send its pings there\n",
                    config.shard
                ),
            )
                .into_response();
        }
        return plain(StatusCode::NOT_FOUND, "no such heartbeat ping URL\n");
    };
    if let Some(token) = &spec.token {
        if !bearer_matches(headers, token.expose()) {
            tracing::info!(check, "heartbeat ping refused: missing or wrong token");
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "missing or wrong token: send Authorization: Bearer <token>\n",
            )
                .into_response();
        }
    }
    if !d.ping_rate.allow(check, std::time::Instant::now()) {
        tracing::info!(check, "heartbeat ping refused: over the rate limit");
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "1")],
            format!(
                "more than {} pings at once or {} a second for this check: slow down\n",
                crate::daemon::PingRate::BURST,
                crate::daemon::PingRate::PER_SECOND
            ),
        )
            .into_response();
    }
    let Ok(body) = axum::body::to_bytes(body, BODY_READ_LIMIT).await else {
        tracing::info!(
            check,
            "heartbeat ping refused: body over the limit or unreadable"
        );
        return plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body larger than 1 MiB (only its last 10 KiB is kept: send the tail of the log)\n",
        );
    };
    let body = crate::probe::heartbeat::without_token(&body, spec.token.as_ref());
    match d.ping(check, ping, &body).await.saved {
        Ok(()) => plain(StatusCode::OK, "OK\n"),
        Err(_) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ping recorded in memory, but saving it to the state store failed (see canaryd's log)\n",
        ),
    }
}

/// Whether the request carries `Authorization: Bearer <expected>`. The comparison takes the
/// same time wherever the bytes differ (only a length mismatch returns sooner).
fn bearer_matches(headers: &HeaderMap, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    let Some(value) = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()) else {
        return false;
    };
    let Some(token) = bearer_token(value) else {
        return false;
    };
    token.ct_eq(expected.as_bytes()).into()
}

/// The token of an `Authorization` value `Bearer <token>`: the scheme in any case, exactly one
/// space, then a non-empty token (`BearerTOKEN`, `Bearer  TOKEN` and `Basic ...` carry none).
pub fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    let token = rest.strip_prefix(b" ")?;
    let well_formed = scheme.eq_ignore_ascii_case(b"bearer")
        && !token.is_empty()
        && !token.iter().any(|b| b.is_ascii_whitespace());
    well_formed.then_some(token)
}

fn unix(t: std::time::SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A heartbeat check's configuration and live state for the API (never its token).
fn heartbeat_json(spec: &HeartbeatSpec, row: Option<&HeartbeatRow>) -> Value {
    let (every, cron, timezone) = match &spec.schedule {
        Schedule::Every(e) => (Some(e.as_secs_f64()), None, None),
        Schedule::Cron { expr, tz, .. } => (None, Some(expr.as_str()), Some(tz.name())),
    };
    let running = row.is_some_and(|r| {
        r.last_start
            .is_some_and(|s| r.last_finish.is_none_or(|f| s > f))
    });
    json!({
        "every_seconds": every,
        "cron": cron,
        "timezone": timezone,
        "grace_seconds": spec.grace.as_secs_f64(),
        "max_runtime_seconds": spec.max_runtime.map(|m| m.as_secs_f64()),
        "token_required": spec.token.is_some(),
        "first_seen": row.map(|r| unix(r.first_seen)),
        "last_ping": row.and_then(|r| r.last_ping.map(unix)),
        "last_start": row.and_then(|r| r.last_start.map(unix)),
        "last_finish": row.and_then(|r| r.last_finish.map(unix)),
        "last_success": row.and_then(|r| r.last_success.map(unix)),
        "last_exit_code": row.and_then(|r| r.last_exit_code),
        "last_result": row.and_then(|r| r.last_result.map(|x| x.as_str())),
        "running": running,
        "ping_count": row.map_or(0, |r| r.ping_count),
        "last_body": row.and_then(|r| r.last_body.as_deref()),
    })
}

async fn checks(State(d): State<Arc<Daemon>>) -> Json<Value> {
    let config = d.config();
    let list: Vec<Value> = config.checks.iter().map(|c| check_json(&d, c)).collect();
    Json(json!({ "shard": config.shard.to_string(), "checks": list }))
}

async fn one_check(
    State(d): State<Arc<Daemon>>,
    check: Result<Path<String>, PathRejection>,
) -> Response {
    let config = d.config();
    let Ok(Path(name)) = check else {
        return plain(StatusCode::NOT_FOUND, "no such check\n");
    };
    if let Some(c) = config.checks.iter().find(|c| c.name == name) {
        return Json(check_json(&d, c)).into_response();
    }
    if config.elsewhere.iter().any(|c| c.name == name) {
        let owner = Shard::owner(&name, config.shard.count());
        return (
            StatusCode::NOT_FOUND,
            format!(
                "check {name:?} runs on shard {owner}, not on this one ({})\n",
                config.shard
            ),
        )
            .into_response();
    }
    plain(StatusCode::NOT_FOUND, "no such check\n")
}

fn check_json(d: &Daemon, c: &Check) -> Value {
    let last = d.states.get(&c.name);
    let mut check = json!({
        "name": c.name,
        "kind": c.kind.name(),
        "interval_seconds": c.interval.as_secs_f64(),
        "timeout_seconds": c.timeout.as_secs_f64(),
        "labels": c.labels,
        "source": c.origin.to_string(),
        "depends_on": c.depends_on.iter().map(|p| p.check.as_str()).collect::<Vec<_>>(),
        "alerts": c.alerts.iter().map(|a| json!({
            "name": a.name,
            "when": a.when,
            "severity": a.severity.as_str(),
            "for_seconds": a.for_.map(|d| d.as_secs_f64()),
            "consecutive": a.consecutive,
            "window": a.window.map(|(n, m)| json!({"failing": n, "of": m})),
            "keep_firing_for_seconds": a.keep_firing_for.map(|d| d.as_secs_f64()),
        })).collect::<Vec<_>>(),
        "last_result": last.as_deref().map(result_json),
    });
    if let Some(h) = c.kind.spec::<Heartbeat>() {
        check["heartbeat"] = heartbeat_json(h, d.heartbeats.get(&c.name).as_ref());
    }
    check
}

async fn alerts(State(d): State<Arc<Daemon>>) -> Json<Value> {
    Json(json!({ "alerts": d.alerting.views() }))
}

fn silence_json(s: &Silence, now_ms: i64) -> Value {
    // Stored silences are checked at start and new ones when made; the clamp keeps the formatter
    // (which panics past the year 9999) safe whatever a row holds.
    let time = |ms: i64| rfc3339(from_ms(ms.clamp(0, MAX_TIME_MS)));
    json!({
        "id": s.id,
        "matchers": s.matchers,
        "starts_at": time(s.starts_at_ms),
        "ends_at": time(s.ends_at_ms),
        "created_by": s.created_by,
        "comment": s.comment,
        "created_at": time(s.created_at_ms),
        "state": s.state(now_ms),
    })
}

async fn silences(State(d): State<Arc<Daemon>>) -> Json<Value> {
    let now = to_ms(d.heartbeats.clock().now());
    let list: Vec<Value> = d
        .alerting
        .silences()
        .iter()
        .map(|s| silence_json(s, now))
        .collect();
    Json(json!({ "silences": list }))
}

async fn one_silence(
    State(d): State<Arc<Daemon>>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let now = to_ms(d.heartbeats.clock().now());
    let Ok(Path(id)) = id else {
        return plain(StatusCode::NOT_FOUND, "no such silence\n");
    };
    match d.alerting.silences().iter().find(|s| s.id == id) {
        Some(s) => Json(silence_json(s, now)).into_response(),
        None => plain(StatusCode::NOT_FOUND, "no such silence\n"),
    }
}

/// `POST /api/v1/silences` body (and what the operator view's silence form fills in).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    /// label → value or glob.
    pub matchers: std::collections::BTreeMap<String, String>,
    /// RFC 3339; default now.
    pub starts_at: Option<String>,
    /// RFC 3339; or give `duration`.
    pub ends_at: Option<String>,
    /// `2h`, `30m` (from `starts_at`).
    pub duration: Option<String>,
    /// Who makes it.
    pub created_by: String,
    /// Why.
    pub comment: String,
}

impl NewSilence {
    /// The silence this asks for at `now`: times parsed and checked here, the rest (matchers,
    /// lengths, the span) by [`crate::alert::service::Alerting::add_silence`]. The message says
    /// what is wrong.
    pub fn into_silence(self, now: std::time::SystemTime) -> Result<Silence, String> {
        let parse_time = |s: &str, what: &str| {
            humantime::parse_rfc3339_weak(s).map_err(|e| {
                format!(
                    "{what}: invalid time {s:?}: {e} (write RFC 3339, e.g. 2026-12-01T22:00:00Z)"
                )
            })
        };
        let starts = self
            .starts_at
            .as_deref()
            .map(|s| parse_time(s, "starts_at"))
            .transpose()?
            .unwrap_or(now);
        let ends = match (self.ends_at.as_deref(), self.duration.as_deref()) {
            (Some(e), None) => parse_time(e, "ends_at"),
            (None, Some(d)) => match humantime::parse_duration(d) {
                Ok(span) => starts.checked_add(span).ok_or_else(|| {
                    format!(
                        "duration: {d:?} is too long (a silence ends at most one year from now)"
                    )
                }),
                Err(e) => Err(format!(
                    "duration: invalid {d:?}: {e} (write e.g. 2h or 30m)"
                )),
            },
            _ => Err("give exactly one of ends_at and duration".to_string()),
        }?;
        Ok(Silence {
            id: String::new(),
            matchers: self.matchers,
            starts_at_ms: saturating_ms(starts),
            ends_at_ms: saturating_ms(ends),
            created_by: self.created_by,
            comment: self.comment,
            created_at_ms: 0,
        })
    }
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

async fn add_silence(State(d): State<Arc<Daemon>>, body: axum::body::Bytes) -> Response {
    let req: NewSilence = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(format!("invalid silence: {e}")),
    };
    let now = d.heartbeats.clock().now();
    let silence = match req.into_silence(now) {
        Ok(s) => s,
        Err(e) => return bad_request(e),
    };
    let warnings = silence_warnings(&d.config(), &silence.matchers);
    match d.alerting.add_silence(silence).await {
        Ok(s) => {
            let mut body = silence_json(&s, to_ms(now));
            body["warnings"] = json!(warnings);
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Err(e) => bad_request(e),
    }
}

/// What a new silence's matchers match in the configuration, said when it is nothing: a label
/// no alert carries (a typo: `tema` for `team`), or a value no alert has. A silence may be meant
/// for alerts still to come, so these are warnings, not refusals.
pub fn silence_warnings(
    config: &Config,
    matchers: &std::collections::BTreeMap<String, String>,
) -> Vec<String> {
    let mut values: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for check in config.checks.iter().chain(&config.elsewhere) {
        for rule in &check.alerts {
            for (k, v) in crate::alert::engine::alert_labels(check, rule) {
                values.entry(k).or_default().insert(v);
            }
        }
    }
    let mut out = Vec::new();
    for (label, pattern) in matchers {
        match values.get(label) {
            None => {
                let known: Vec<&str> = values.keys().map(String::as_str).collect();
                out.push(format!(
                    "no alert carries the label {label:?}, so this silence matches nothing now (labels in use: {})",
                    known.join(", ")
                ));
            }
            Some(seen) => {
                let glob = glob::Pattern::new(pattern).ok();
                let any = seen
                    .iter()
                    .any(|v| glob.as_ref().map_or(v == pattern, |g| g.matches(v)));
                if !any {
                    out.push(format!(
                        "no alert has {label}={pattern:?}, so this silence matches nothing now"
                    ));
                }
            }
        }
    }
    out
}

/// Unix milliseconds of `t`, saturating (so a far-future end stays far in the future and is
/// refused as such instead of wrapping around).
fn saturating_ms(t: std::time::SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

async fn expire_silence(
    State(d): State<Arc<Daemon>>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(id)) = id else {
        return plain(StatusCode::NOT_FOUND, "no such silence\n");
    };
    let now = to_ms(d.heartbeats.clock().now());
    match d.alerting.expire_silence(&id).await {
        Ok(Some(s)) => Json(silence_json(&s, now)).into_response(),
        Ok(None) => plain(StatusCode::NOT_FOUND, "no such silence\n"),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": e })),
        )
            .into_response(),
    }
}

/// The status page, or the answer that there is none.
fn status_page(d: &Daemon) -> Result<&Arc<StatusPage>, Box<Response>> {
    d.status.as_ref().ok_or_else(|| {
        Box::new(
            (
                StatusCode::NOT_FOUND,
                Json(json!({ "error": "no status_page in the configuration" })),
            )
                .into_response(),
        )
    })
}

fn incident_error(e: IncidentError) -> Response {
    let status = match e {
        IncidentError::Invalid(_) => StatusCode::BAD_REQUEST,
        IncidentError::NotFound(_) => StatusCode::NOT_FOUND,
        IncidentError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, Json(json!({ "error": e.to_string() }))).into_response()
}

async fn incidents(State(d): State<Arc<Daemon>>) -> Response {
    match status_page(&d) {
        Ok(page) => Json(json!({
            "incidents": page.incidents().iter().map(incident_json).collect::<Vec<_>>()
        }))
        .into_response(),
        Err(r) => *r,
    }
}

async fn one_incident(
    State(d): State<Arc<Daemon>>,
    id: Result<Path<i64>, PathRejection>,
) -> Response {
    let page = match status_page(&d) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    match id.ok().and_then(|Path(id)| page.incident(id)) {
        Some(i) => Json(incident_json(&i)).into_response(),
        None => plain(StatusCode::NOT_FOUND, "no such incident\n"),
    }
}

async fn open_incident(State(d): State<Arc<Daemon>>, body: axum::body::Bytes) -> Response {
    let page = match status_page(&d) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let new = match crate::status::api::parse_new(&body) {
        Ok(n) => n,
        Err(e) => return bad_request(e),
    };
    match page.open_incident(new).await {
        Ok(i) => {
            tracing::info!(incident = i.id, "status page incident opened by hand");
            (StatusCode::CREATED, Json(incident_json(&i))).into_response()
        }
        Err(e) => incident_error(e),
    }
}

async fn update_incident(
    State(d): State<Arc<Daemon>>,
    id: Result<Path<i64>, PathRejection>,
    body: axum::body::Bytes,
) -> Response {
    let page = match status_page(&d) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let Ok(Path(id)) = id else {
        return plain(StatusCode::NOT_FOUND, "no such incident\n");
    };
    let (state, message) = match crate::status::api::parse_update(&body) {
        Ok(u) => u,
        Err(e) => return bad_request(e),
    };
    match page.update_incident(id, state, message).await {
        Ok(i) => {
            tracing::info!(
                incident = i.id,
                state = state.as_str(),
                "status page incident updated"
            );
            Json(incident_json(&i)).into_response()
        }
        Err(e) => incident_error(e),
    }
}

/// A result as JSON. Messages are already redacted by the probes; extracted names only.
pub fn result_json(r: &CheckResult) -> Value {
    let mut out = json!({
        "success": r.success,
        "reason": r.reason.map(|x| x.as_str()),
        "message": r.message,
        "duration_seconds": r.duration.as_secs_f64(),
        "attempts": r.attempts,
        "started_at": r.started_at.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0),
        "steps": r.steps.iter().map(|s| json!({
            "name": s.name,
            "ran": s.ran,
            "success": s.success,
            "status": s.status,
            "duration_seconds": s.duration.as_secs_f64(),
            "phases": Phase::ALL.iter().map(|p| (p.as_str().to_string(), json!(s.phases.get(*p).as_secs_f64()))).collect::<serde_json::Map<_, _>>(),
            "redirects": s.hops.len(),
            "failed_phase": s.failed_phase.map(|p| p.as_str()),
            "reason": s.reason.map(|x| x.as_str()),
            "message": s.message,
            "extracted": s.extracted,
        })).collect::<Vec<_>>(),
        "variables": r.observations.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
    });
    // The kind's own detail (a queue check's queues), under its own keys.
    if let (Some(d), Some(o)) = (&r.detail, out.as_object_mut()) {
        o.extend(d.json());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn bearer_tokens_are_parsed_strictly() {
        assert_eq!(bearer_token(b"Bearer s3cret"), Some(&b"s3cret"[..]));
        assert_eq!(bearer_token(b"bEaReR s3cret"), Some(&b"s3cret"[..]));
        for refused in [
            &b"Bearers3cret"[..],
            b"Bearer  s3cret",
            b"Bearer s3cret extra",
            b"Bearer ",
            b"Bearer",
            b"Basic s3cret",
            b"",
            b"Bearer\ts3cret",
        ] {
            assert_eq!(
                bearer_token(refused),
                None,
                "{:?}",
                String::from_utf8_lossy(refused)
            );
        }
    }
}
