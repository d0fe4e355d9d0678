//! Local stand-ins for the services canaryd delivers alerts to: PagerDuty's Events API v2, Slack
//! incoming webhooks and a generic JSON webhook. Each one is a real HTTP/1.1 server (axum) on a free
//! 127.0.0.1 port, running on its own std thread with its own single-threaded tokio runtime, so it
//! serves requests whether the test is a plain `#[test]` or a `#[tokio::test]` that blocks its own
//! thread. It stops (its port closes) when dropped. All state sits behind a mutex; accessors return
//! copies.
//!
//! Use from any file under `tests/` with `mod receivers;`:
//!
//! ```ignore
//! mod receivers;
//! use receivers::{Mode, PagerDuty};
//!
//! let pd = PagerDuty::start();
//! // point canaryd at pd.url(), make a check fail ...
//! assert!(pd.wait_for_events(1, Duration::from_secs(10)));
//! let incident = pd.incident("canary/web").unwrap();
//! assert!(incident.open);
//! pd.set_mode(Mode::RateLimit { retry_after_secs: Some(2) });
//! ```
//!
//! What each fake answers is written on its type. Where the services' documentation says what
//! they answer, the fakes answer that; where it says nothing (the body of a 429 or 5xx, the
//! wording of most validation errors), the fake's choice is marked as its own.
//!
//! In an async test, wait with the `*_async` helpers (or `spawn_blocking`): the blocking
//! `wait_until` sleeps the calling thread, which would also stall a canaryd running on a
//! current-thread runtime in that same thread.
#![allow(dead_code)]

pub mod bench;
pub mod opsgenie;
pub mod smtp;

use std::future::IntoFuture;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use data_encoding::HEXLOWER;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How often the blocking and async wait helpers look at the state again.
const POLL: Duration = Duration::from_millis(10);

// ---------------------------------------------------------------------------------------------
// Modes
// ---------------------------------------------------------------------------------------------

/// How a fake answers from now on. Every fake starts in [`Mode::Accept`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Behave like the real service: validate, record, answer success or a validation error.
    Accept,
    /// Answer every request with this status (e.g. 500, 502, 503) and the service's error body;
    /// nothing is recorded as delivered.
    Status(u16),
    /// Answer every request with 429, with `Retry-After: <secs>` when `Some`.
    RateLimit { retry_after_secs: Option<u64> },
    /// Answer nothing: new connections are accepted and reset at once (SO_LINGER 0), and a kept-alive
    /// connection is reset when its next request arrives. The client sees a network error. Such
    /// requests never reach the handler: they are counted by `refused_connections()`, not
    /// `requests()`.
    Refuse,
    /// The endpoint no longer exists: Slack answers 404 `no_service`, PagerDuty 404, the webhook 410.
    Gone,
    /// The credentials are no longer valid: Slack answers 403 `invalid_token`, PagerDuty 400
    /// "Invalid routing key", the webhook 401.
    InvalidToken,
}

impl Mode {
    fn check(self) {
        if let Mode::Status(code) = self {
            assert!(
                StatusCode::from_u16(code).is_ok(),
                "Mode::Status({code}) is not an HTTP status code"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The server every fake runs on
// ---------------------------------------------------------------------------------------------

/// Shared between a fake and its listener: whether to refuse, and how many connections (or
/// requests on kept-alive connections) were refused.
#[derive(Default)]
struct Gate {
    refuse: AtomicBool,
    refused: AtomicUsize,
}

impl Gate {
    fn set_mode(&self, mode: Mode) {
        self.refuse
            .store(matches!(mode, Mode::Refuse), Ordering::SeqCst);
    }
}

/// An HTTP server on 127.0.0.1:0 in its own thread and runtime; stopped and joined on drop.
struct Server {
    addr: SocketAddr,
    gate: Arc<Gate>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(name: &str, router: Router) -> Server {
        // Bound here, before the thread starts: the port is known at once, and connections made
        // before the runtime is up wait in the backlog.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("set listener non-blocking");
        let addr = listener.local_addr().expect("listener address");
        let gate = Arc::new(Gate::default());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread_gate = Arc::clone(&gate);
        let thread_name = format!("fake-{name}");
        let thread = std::thread::Builder::new()
            .name(thread_name.clone())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("fake receiver runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("listener into tokio");
                    let gated = GatedListener {
                        listener,
                        gate: thread_gate,
                    };
                    let serve = axum::serve(gated, router).into_future();
                    tokio::select! {
                        res = serve => {
                            if let Err(e) = res {
                                eprintln!("{thread_name}: server stopped: {e}");
                            }
                        }
                        _ = stop_rx => {}
                    }
                });
                // Dropping the runtime here cancels every connection task.
            })
            .expect("spawn fake receiver thread");
        Server {
            addr,
            gate,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A TCP listener that resets connections while its gate says refuse.
struct GatedListener {
    listener: tokio::net::TcpListener,
    gate: Arc<Gate>,
}

impl axum::serve::Listener for GatedListener {
    type Io = GatedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (GatedStream, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, addr)) => {
                    if self.gate.refuse.load(Ordering::SeqCst) {
                        self.gate.refused.fetch_add(1, Ordering::SeqCst);
                        let _ = stream.set_zero_linger();
                        drop(stream); // RST: the client's read or write fails
                        continue;
                    }
                    return (
                        GatedStream {
                            inner: stream,
                            gate: Arc::clone(&self.gate),
                        },
                        addr,
                    );
                }
                // Out of file descriptors and the like: wait a little instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// An accepted connection whose next read fails once the gate says refuse, so that a kept-alive
/// connection is dropped without an answer too.
struct GatedStream {
    inner: tokio::net::TcpStream,
    gate: Arc<Gate>,
}

impl AsyncRead for GatedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.gate.refuse.load(Ordering::SeqCst) {
            self.gate.refused.fetch_add(1, Ordering::SeqCst);
            let _ = self.inner.set_zero_linger();
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "fake receiver refuses connections",
            )));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for GatedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

// ---------------------------------------------------------------------------------------------
// Small shared helpers
// ---------------------------------------------------------------------------------------------

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One answer: status, content type, body, and an optional `Retry-After` or `Allow` header.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
    retry_after: Option<u64>,
    allow: Option<&'static str>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: body.to_string(),
            retry_after: None,
            allow: None,
        }
    }

    fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.to_string(),
            retry_after: None,
            allow: None,
        }
    }

    fn retry_after(mut self, secs: Option<u64>) -> Reply {
        self.retry_after = secs;
        self
    }

    fn allow(mut self, methods: &'static str) -> Reply {
        self.allow = Some(methods);
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(allow) = self.allow {
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        (status, headers, self.body).into_response()
    }
}

/// The canonical reason phrase of `code`, or "Error".
fn reason(code: u16) -> &'static str {
    StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
}

/// Polls `done` every 10 ms until it returns true or `timeout` passes; true if it did.
fn poll_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

async fn poll_until_async(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A new random lowercase-hex string of `len` (at most 32) characters.
fn random_hex(len: usize) -> String {
    let mut s = uuid::Uuid::new_v4().simple().to_string();
    s.truncate(len);
    s
}

// ---------------------------------------------------------------------------------------------
// PagerDuty Events API v2
// ---------------------------------------------------------------------------------------------

/// The path of the Events API v2 alert endpoint.
pub const PD_ENQUEUE_PATH: &str = "/v2/enqueue";
/// The documented size limit of one event ("Events API payloads are limited to 512 KB").
pub const PD_MAX_EVENT_BYTES: usize = 512 * 1024;
const PD_ACTIONS: [&str; 3] = ["trigger", "acknowledge", "resolve"];
const PD_SEVERITIES: [&str; 4] = ["critical", "error", "warning", "info"];

/// One alert of the fake PagerDuty, keyed like PagerDuty's own by the routing key (the service) and
/// the dedup key. Created by the first trigger of that pair; never removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    pub routing_key: String,
    pub dedup_key: String,
    /// Triggered and not resolved since (acknowledged incidents are still open).
    pub open: bool,
    /// Acknowledged since it was last opened.
    pub acknowledged: bool,
    /// Trigger events received for it, duplicates included.
    pub triggers: usize,
    /// Times a trigger opened it (the first trigger, and any trigger after a resolve).
    pub opened: usize,
    /// Acknowledge events that reached it while open.
    pub acknowledges: usize,
    /// Times a resolve event closed it.
    pub resolves: usize,
}

impl Incident {
    /// Triggers that were folded into the already open incident.
    pub fn duplicates(&self) -> usize {
        self.triggers - self.opened
    }
}

#[derive(Debug)]
struct PdState {
    mode: Mode,
    expected_key: Option<String>,
    requests: usize,
    events: Vec<Value>,
    arrivals: Vec<Instant>,
    rejected: Vec<(u16, String)>,
    incidents: Vec<Incident>,
    noops: usize,
}

/// A fake PagerDuty Events API v2 (`POST /v2/enqueue`), following "Send an Alert Event" and the
/// "Events API v2 Overview" of PagerDuty's developer documentation and the Events v2 OpenAPI schema.
///
/// Answers, in [`Mode::Accept`]:
/// - **202** `{"status":"success","message":"Event processed","dedup_key":"<key>"}` for a valid
///   event; a trigger without `dedup_key` gets a new 32-hex-character key, as the real service
///   generates a UUID.
/// - **400** `{"status":"invalid event","message":"Event object is invalid","errors":[...]}` when
///   the event breaks the documented rules: `routing_key` a 32-character alphanumeric string;
///   `event_action` one of trigger, acknowledge, resolve; `dedup_key` a string of at most 255
///   characters, required unless triggering; for a trigger a `payload` object with `summary`
///   (1..=1024 characters), `source` (non-blank) and `severity` (critical, error, warning, info),
///   optional `timestamp` (ISO 8601), string `component`/`group`/`class`, any `custom_details`;
///   optional string `client`/`client_url`, `links` (objects with a string `href`) and `images`
///   (objects with a string `src`). All errors found are listed. The wording of "Length of
///   'routing_key' is incorrect (should be 32 characters)", "'routing_key' cannot contain
///   non-alphanumeric characters." and "'payload.severity' is missing or blank" is the real
///   service's; the other messages follow that style but are the fake's own.
/// - **400** `{"status":"Unrecognized object","message":"Event object format is unrecognized",
///   "errors":["JSON parse error"]}` when the body is not a JSON object (the error example of the
///   Events v2 OpenAPI schema).
/// - **400** invalid event, error "Event payload exceeds the 512 KB limit" (the fake's wording:
///   the documentation gives the limit, not the answer) above [`PD_MAX_EVENT_BYTES`].
/// - **400** invalid event, error "Invalid routing key", for a well-formed key other than the one
///   given to [`PagerDuty::expect_routing_key`]. Third-party reports show the real service
///   answering an unknown key with 400 "Invalid routing key"; exactly how it words it is not
///   documented.
/// - 404 for another path, 405 (with `Allow: POST`) for another method.
///
/// Incidents follow "Alert De-Duplication": a trigger for an open (routing key, dedup key) is
/// folded into it; acknowledge marks it acknowledged; resolve closes it; acknowledge or resolve
/// of an unknown or closed one is accepted with 202 and dropped (counted by `noops()`); a trigger
/// after a resolve opens it again.
///
/// Other modes answer, for every request: `Status(c)` → c with
/// `{"status":"<reason phrase>","message":"..."}` (the Error schema's shape); `RateLimit` → 429
/// `{"status":"throttled","message":"Too many API calls at a time."}` (the body is the fake's
/// own; the documentation gives none); `Gone` → 404; `InvalidToken` → 400 "Invalid routing key".
pub struct PagerDuty {
    state: Arc<Mutex<PdState>>,
    server: Server,
}

impl PagerDuty {
    /// Starts the fake on a free 127.0.0.1 port, in [`Mode::Accept`], accepting any routing key.
    pub fn start() -> PagerDuty {
        let state = Arc::new(Mutex::new(PdState {
            mode: Mode::Accept,
            expected_key: None,
            requests: 0,
            events: Vec::new(),
            arrivals: Vec::new(),
            rejected: Vec::new(),
            incidents: Vec::new(),
            noops: 0,
        }));
        let router = Router::new()
            .fallback(pd_handle)
            .with_state(Arc::clone(&state));
        PagerDuty {
            server: Server::start("pagerduty", router),
            state,
        }
    }

    /// `http://127.0.0.1:PORT/v2/enqueue`.
    pub fn url(&self) -> String {
        format!("{}{PD_ENQUEUE_PATH}", self.server.base_url())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    pub fn set_mode(&self, mode: Mode) {
        mode.check();
        lock(&self.state).mode = mode;
        self.server.gate.set_mode(mode);
    }

    pub fn mode(&self) -> Mode {
        lock(&self.state).mode
    }

    /// From now on, well-formed events with another routing key are answered 400 "Invalid
    /// routing key" (see the type's documentation).
    pub fn expect_routing_key(&self, key: &str) {
        lock(&self.state).expected_key = Some(key.to_string());
    }

    /// Accepted (202) events, as received, in arrival order.
    pub fn events(&self) -> Vec<Value> {
        lock(&self.state).events.clone()
    }

    /// When each accepted event arrived, in the order of [`PagerDuty::events`].
    pub fn arrival_times(&self) -> Vec<Instant> {
        lock(&self.state).arrivals.clone()
    }

    /// Requests that reached the handler, whatever the answer (refused connections excluded).
    pub fn requests(&self) -> usize {
        lock(&self.state).requests
    }

    /// Every answer other than 202, in order: status and body.
    pub fn rejected(&self) -> Vec<(u16, String)> {
        lock(&self.state).rejected.clone()
    }

    /// Connections (or requests on kept-alive connections) reset in [`Mode::Refuse`].
    pub fn refused_connections(&self) -> usize {
        self.server.gate.refused.load(Ordering::SeqCst)
    }

    /// Every incident, in the order they were first triggered.
    pub fn incidents(&self) -> Vec<Incident> {
        lock(&self.state).incidents.clone()
    }

    /// The incident with this dedup key (the first one, should several routing keys use it).
    pub fn incident(&self, dedup_key: &str) -> Option<Incident> {
        lock(&self.state)
            .incidents
            .iter()
            .find(|i| i.dedup_key == dedup_key)
            .cloned()
    }

    /// Accepted acknowledge and resolve events that matched no open incident, and were dropped.
    pub fn noops(&self) -> usize {
        lock(&self.state).noops
    }

    /// Blocks until `done(self)` is true (true) or `timeout` passes (false).
    pub fn wait_until(&self, mut done: impl FnMut(&PagerDuty) -> bool, timeout: Duration) -> bool {
        poll_until(timeout, || done(self))
    }

    /// [`PagerDuty::wait_until`] for async tests: sleeps on the caller's runtime.
    pub async fn wait_until_async(
        &self,
        mut done: impl FnMut(&PagerDuty) -> bool,
        timeout: Duration,
    ) -> bool {
        poll_until_async(timeout, || done(self)).await
    }

    /// Blocks until at least `n` events were accepted.
    pub fn wait_for_events(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(|pd| pd.events().len() >= n, timeout)
    }
}

async fn pd_handle(
    State(state): State<Arc<Mutex<PdState>>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Reply {
    let arrived = Instant::now();
    let mut st = lock(&state);
    st.requests += 1;
    let reply = pd_answer(&mut st, &method, uri.path(), &body, arrived);
    if reply.status != 202 {
        st.rejected.push((reply.status, reply.body.clone()));
    }
    reply
}

fn pd_invalid(errors: Vec<String>) -> Reply {
    Reply::json(
        400,
        json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors}),
    )
}

fn pd_answer(st: &mut PdState, method: &Method, path: &str, body: &[u8], now: Instant) -> Reply {
    match st.mode {
        Mode::Accept => {}
        Mode::Status(code) => {
            return Reply::json(
                code,
                json!({"status": reason(code), "message": "The fake PagerDuty is answering every request with this status."}),
            )
        }
        Mode::RateLimit { retry_after_secs } => {
            return Reply::json(
                429,
                json!({"status": "throttled", "message": "Too many API calls at a time."}),
            )
            .retry_after(retry_after_secs)
        }
        // Only a request already read when the mode changed gets here.
        Mode::Refuse => return Reply::text(503, "refusing"),
        Mode::Gone => {
            return Reply::json(404, json!({"status": "Not Found", "message": "Not Found"}))
        }
        Mode::InvalidToken => return pd_invalid(vec!["Invalid routing key".into()]),
    }
    if path != PD_ENQUEUE_PATH {
        return Reply::json(404, json!({"status": "Not Found", "message": "Not Found"}));
    }
    if method != Method::POST {
        return Reply::json(
            405,
            json!({"status": "Method Not Allowed", "message": "Method Not Allowed"}),
        )
        .allow("POST");
    }
    if body.len() > PD_MAX_EVENT_BYTES {
        return pd_invalid(vec!["Event payload exceeds the 512 KB limit".into()]);
    }
    let event = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map,
        _ => {
            return Reply::json(
                400,
                json!({"status": "Unrecognized object", "message": "Event object format is unrecognized", "errors": ["JSON parse error"]}),
            )
        }
    };
    let checked = match pd_validate(&event) {
        Ok(checked) => checked,
        Err(errors) => return pd_invalid(errors),
    };
    if st
        .expected_key
        .as_ref()
        .is_some_and(|k| *k != checked.routing_key)
    {
        return pd_invalid(vec!["Invalid routing key".into()]);
    }
    let dedup_key = checked.dedup_key.unwrap_or_else(|| random_hex(32));
    pd_apply(st, &checked.action, &checked.routing_key, &dedup_key);
    st.events.push(Value::Object(event));
    st.arrivals.push(now);
    Reply::json(
        202,
        json!({"status": "success", "message": "Event processed", "dedup_key": dedup_key}),
    )
}

/// The parts of a valid event the incident model needs.
struct PdEvent {
    routing_key: String,
    action: String,
    /// None only for a trigger without one.
    dedup_key: Option<String>,
}

fn blank(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.trim().is_empty(),
        _ => false,
    }
}

/// Checks an optional field that must be a string when present (null counts as absent).
fn optional_string(obj: &Map<String, Value>, field: &str, name: &str, errors: &mut Vec<String>) {
    match obj.get(field) {
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(_) => errors.push(format!("'{name}' must be a string")),
    }
}

/// Checks an optional array of objects that each need the string field `required`.
fn optional_objects(
    obj: &Map<String, Value>,
    field: &str,
    required: &str,
    errors: &mut Vec<String>,
) {
    match obj.get(field) {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let ok = item
                    .as_object()
                    .and_then(|o| o.get(required))
                    .is_some_and(|v| v.as_str().is_some_and(|s| !s.trim().is_empty()));
                if !ok {
                    errors.push(format!("'{field}[{i}].{required}' is missing or blank"));
                }
            }
        }
        Some(_) => errors.push(format!("'{field}' must be an array")),
    }
}

/// ISO 8601 date and time, with or without a colon in the offset (PagerDuty's own example is
/// `2015-07-17T08:42:58.315+0000`), or without an offset.
fn is_iso8601(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
        || chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z").is_ok()
        || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
}

fn pd_validate(event: &Map<String, Value>) -> Result<PdEvent, Vec<String>> {
    let mut errors = Vec::new();

    let routing_key = match event.get("routing_key") {
        v if blank(v) => {
            errors.push("'routing_key' is missing or blank".to_string());
            None
        }
        Some(Value::String(k)) => {
            if k.chars().count() != 32 {
                errors.push(
                    "Length of 'routing_key' is incorrect (should be 32 characters)".to_string(),
                );
            }
            if !k.chars().all(|c| c.is_ascii_alphanumeric()) {
                errors
                    .push("'routing_key' cannot contain non-alphanumeric characters.".to_string());
            }
            Some(k.clone())
        }
        _ => {
            errors.push("'routing_key' must be a string".to_string());
            None
        }
    };

    let action = match event.get("event_action") {
        v if blank(v) => {
            errors.push("'event_action' is missing or blank".to_string());
            None
        }
        Some(Value::String(a)) if PD_ACTIONS.contains(&a.as_str()) => Some(a.clone()),
        _ => {
            errors.push(
                "'event_action' must be one of 'trigger', 'acknowledge' or 'resolve'".to_string(),
            );
            None
        }
    };

    let dedup_key = match event.get("dedup_key") {
        v if blank(v) => {
            if action.as_deref().is_some_and(|a| a != "trigger") {
                errors.push("'dedup_key' is missing or blank".to_string());
            }
            None
        }
        Some(Value::String(k)) => {
            if k.chars().count() > 255 {
                errors.push("'dedup_key' is too long (maximum is 255 characters)".to_string());
            }
            Some(k.clone())
        }
        _ => {
            errors.push("'dedup_key' must be a string".to_string());
            None
        }
    };

    if action.as_deref() == Some("trigger") {
        match event.get("payload") {
            None | Some(Value::Null) => errors.push("'payload' is missing or blank".to_string()),
            Some(Value::Object(payload)) => pd_validate_payload(payload, &mut errors),
            Some(_) => errors.push("'payload' must be an object".to_string()),
        }
    }
    optional_string(event, "client", "client", &mut errors);
    optional_string(event, "client_url", "client_url", &mut errors);
    optional_objects(event, "links", "href", &mut errors);
    optional_objects(event, "images", "src", &mut errors);

    match (routing_key, action) {
        (Some(routing_key), Some(action)) if errors.is_empty() => Ok(PdEvent {
            routing_key,
            action,
            dedup_key,
        }),
        _ => Err(errors),
    }
}

fn pd_validate_payload(payload: &Map<String, Value>, errors: &mut Vec<String>) {
    match payload.get("summary") {
        v if blank(v) => errors.push("'payload.summary' is missing or blank".to_string()),
        Some(Value::String(s)) if s.chars().count() > 1024 => {
            errors.push("'payload.summary' is too long (maximum is 1024 characters)".to_string())
        }
        Some(Value::String(_)) => {}
        _ => errors.push("'payload.summary' must be a string".to_string()),
    }
    match payload.get("source") {
        v if blank(v) => errors.push("'payload.source' is missing or blank".to_string()),
        Some(Value::String(_)) => {}
        _ => errors.push("'payload.source' must be a string".to_string()),
    }
    match payload.get("severity") {
        v if blank(v) => errors.push("'payload.severity' is missing or blank".to_string()),
        Some(Value::String(s)) if PD_SEVERITIES.contains(&s.as_str()) => {}
        _ => errors.push(
            "'payload.severity' must be one of 'critical', 'error', 'warning' or 'info'"
                .to_string(),
        ),
    }
    match payload.get("timestamp") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if is_iso8601(t) => {}
        _ => errors.push("'payload.timestamp' is not a valid ISO 8601 timestamp".to_string()),
    }
    for field in ["component", "group", "class"] {
        optional_string(payload, field, &format!("payload.{field}"), errors);
    }
    // custom_details: any JSON.
}

fn pd_apply(st: &mut PdState, action: &str, routing_key: &str, dedup_key: &str) {
    let found = st
        .incidents
        .iter_mut()
        .find(|i| i.routing_key == routing_key && i.dedup_key == dedup_key);
    match (action, found) {
        ("trigger", Some(incident)) => {
            incident.triggers += 1;
            if !incident.open {
                incident.open = true;
                incident.acknowledged = false;
                incident.opened += 1;
            }
        }
        ("trigger", None) => st.incidents.push(Incident {
            routing_key: routing_key.to_string(),
            dedup_key: dedup_key.to_string(),
            open: true,
            acknowledged: false,
            triggers: 1,
            opened: 1,
            acknowledges: 0,
            resolves: 0,
        }),
        ("acknowledge", Some(incident)) if incident.open => {
            incident.acknowledged = true;
            incident.acknowledges += 1;
        }
        ("resolve", Some(incident)) if incident.open => {
            incident.open = false;
            incident.acknowledged = false;
            incident.resolves += 1;
        }
        _ => st.noops += 1,
    }
}

// ---------------------------------------------------------------------------------------------
// Slack incoming webhook
// ---------------------------------------------------------------------------------------------

/// The team and bot segments of the fake's webhook path.
pub const SLACK_SERVICE_PREFIX: &str = "/services/T0CANARY/B0CANARY/";

#[derive(Debug)]
struct SlackState {
    mode: Mode,
    secret_path: String,
    requests: usize,
    messages: Vec<Value>,
    arrivals: Vec<Instant>,
    rejected: Vec<(u16, String)>,
}

/// A fake Slack incoming webhook, following Slack's "Sending messages using incoming webhooks",
/// the changelog "Improving error conditions for Incoming Webhooks" (2016-05-17) and "Rate limits".
///
/// Its URL is `http://127.0.0.1:PORT/services/T0CANARY/B0CANARY/<24 random hex characters>`: the
/// last segment plays the secret token, so a test can search canaryd's logs for
/// [`Slack::secret_path`]. Answers, in [`Mode::Accept`], to `POST` on that path:
/// - **200** `ok` (text/plain) for a JSON object with a non-empty `text`, a non-empty `blocks`
///   array or a non-empty `attachments` array; the body may also be form-encoded as
///   `payload=<json>`, which Slack accepts too.
/// - **400** `invalid_payload` when the body is not a JSON object (or `text` is not a string).
/// - **400** `no_text` when it has none of the three.
/// - **400** `invalid_blocks_format` when `blocks` is not an array, `invalid_blocks` when one of
///   them is not an object with a string `type`.
///
/// Any other path under `/services/T0CANARY/B0CANARY/` (a wrong token) gets **403**
/// `invalid_token`; any other path **404** `no_service`; another method **405**.
///
/// Other modes answer every request: `Status(500)` → `rollup_error` (Slack's documented 500 body),
/// `Status(c)` → c with its reason phrase; `RateLimit` → 429 `rate_limited` with `Retry-After`
/// (the header is documented, the body string is the fake's choice); `Gone` → 404 `no_service`;
/// `InvalidToken` → 403 `invalid_token`.
pub struct Slack {
    state: Arc<Mutex<SlackState>>,
    server: Server,
}

impl Slack {
    /// Starts the fake on a free 127.0.0.1 port with a new random secret path.
    pub fn start() -> Slack {
        let secret_path = format!("{SLACK_SERVICE_PREFIX}{}", random_hex(24));
        let state = Arc::new(Mutex::new(SlackState {
            mode: Mode::Accept,
            secret_path,
            requests: 0,
            messages: Vec::new(),
            arrivals: Vec::new(),
            rejected: Vec::new(),
        }));
        let router = Router::new()
            .fallback(slack_handle)
            .with_state(Arc::clone(&state));
        Slack {
            server: Server::start("slack", router),
            state,
        }
    }

    /// The full webhook URL, secret path included.
    pub fn url(&self) -> String {
        format!("{}{}", self.server.base_url(), self.secret_path())
    }

    /// `/services/T0CANARY/B0CANARY/<token>`: what must never appear in canaryd's logs.
    pub fn secret_path(&self) -> String {
        lock(&self.state).secret_path.clone()
    }

    /// The token alone (the path's last segment).
    pub fn token(&self) -> String {
        self.secret_path()[SLACK_SERVICE_PREFIX.len()..].to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    pub fn set_mode(&self, mode: Mode) {
        mode.check();
        lock(&self.state).mode = mode;
        self.server.gate.set_mode(mode);
    }

    pub fn mode(&self) -> Mode {
        lock(&self.state).mode
    }

    /// Accepted (200 `ok`) messages, as received, in arrival order.
    pub fn messages(&self) -> Vec<Value> {
        lock(&self.state).messages.clone()
    }

    /// When each accepted message arrived.
    pub fn arrival_times(&self) -> Vec<Instant> {
        lock(&self.state).arrivals.clone()
    }

    /// Requests that reached the handler, whatever the answer (refused connections excluded).
    pub fn requests(&self) -> usize {
        lock(&self.state).requests
    }

    /// Every answer other than 200, in order: status and body.
    pub fn rejected(&self) -> Vec<(u16, String)> {
        lock(&self.state).rejected.clone()
    }

    /// Connections (or requests on kept-alive connections) reset in [`Mode::Refuse`].
    pub fn refused_connections(&self) -> usize {
        self.server.gate.refused.load(Ordering::SeqCst)
    }

    /// Blocks until `done(self)` is true (true) or `timeout` passes (false).
    pub fn wait_until(&self, mut done: impl FnMut(&Slack) -> bool, timeout: Duration) -> bool {
        poll_until(timeout, || done(self))
    }

    /// [`Slack::wait_until`] for async tests.
    pub async fn wait_until_async(
        &self,
        mut done: impl FnMut(&Slack) -> bool,
        timeout: Duration,
    ) -> bool {
        poll_until_async(timeout, || done(self)).await
    }

    /// Blocks until at least `n` messages were accepted.
    pub fn wait_for_messages(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(|s| s.messages().len() >= n, timeout)
    }
}

async fn slack_handle(
    State(state): State<Arc<Mutex<SlackState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let arrived = Instant::now();
    let mut st = lock(&state);
    st.requests += 1;
    let reply = slack_answer(&mut st, &method, uri.path(), &headers, &body, arrived);
    if reply.status != 200 {
        st.rejected.push((reply.status, reply.body.clone()));
    }
    reply
}

fn slack_answer(
    st: &mut SlackState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: Instant,
) -> Reply {
    match st.mode {
        Mode::Accept => {}
        Mode::Status(500) => return Reply::text(500, "rollup_error"),
        Mode::Status(code) => return Reply::text(code, reason(code)),
        Mode::RateLimit { retry_after_secs } => {
            return Reply::text(429, "rate_limited").retry_after(retry_after_secs)
        }
        Mode::Refuse => return Reply::text(503, "refusing"),
        Mode::Gone => return Reply::text(404, "no_service"),
        Mode::InvalidToken => return Reply::text(403, "invalid_token"),
    }
    if path != st.secret_path {
        return if path.starts_with(SLACK_SERVICE_PREFIX) {
            Reply::text(403, "invalid_token")
        } else {
            Reply::text(404, "no_service")
        };
    }
    if method != Method::POST {
        return Reply::text(405, "invalid_method").allow("POST");
    }
    let Some(message) = slack_parse(headers, body) else {
        return Reply::text(400, "invalid_payload");
    };
    if let Err(error) = slack_validate(&message) {
        return Reply::text(400, error);
    }
    st.messages.push(Value::Object(message));
    st.arrivals.push(now);
    Reply::text(200, "ok")
}

/// The message object: the JSON body, or the `payload` field of a form-encoded body.
fn slack_parse(headers: &HeaderMap, body: &[u8]) -> Option<Map<String, Value>> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    let value: Value = if form {
        let payload = url::form_urlencoded::parse(body)
            .find(|(k, _)| k == "payload")
            .map(|(_, v)| v.into_owned())?;
        serde_json::from_str(&payload).ok()?
    } else {
        serde_json::from_slice(body).ok()?
    };
    match value {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

fn slack_validate(message: &Map<String, Value>) -> Result<(), &'static str> {
    let has_text = match message.get("text") {
        None | Some(Value::Null) => false,
        Some(Value::String(t)) => !t.is_empty(),
        Some(_) => return Err("invalid_payload"),
    };
    let has_blocks = match message.get("blocks") {
        None | Some(Value::Null) => false,
        Some(Value::Array(blocks)) => {
            let well_formed = blocks.iter().all(|b| {
                b.as_object()
                    .and_then(|o| o.get("type"))
                    .is_some_and(Value::is_string)
            });
            if !well_formed {
                return Err("invalid_blocks");
            }
            !blocks.is_empty()
        }
        Some(_) => return Err("invalid_blocks_format"),
    };
    let has_attachments = message
        .get("attachments")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if has_text || has_blocks || has_attachments {
        Ok(())
    } else {
        Err("no_text")
    }
}

// ---------------------------------------------------------------------------------------------
// Generic webhook
// ---------------------------------------------------------------------------------------------

/// The header the generic webhook's signature travels in.
pub const SIGNATURE_HEADER: &str = "x-canaryd-signature";

/// `sha256=<lowercase hex HMAC-SHA256(secret, body)>`: the value a correct sender puts in
/// `X-Canaryd-Signature`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(body);
    format!("sha256={}", HEXLOWER.encode(&mac.finalize().into_bytes()))
}

/// Whether `header` is `sha256=` followed by the lowercase hex HMAC-SHA256 of `body` (compared in
/// constant time).
fn signature_matches(secret: &[u8], body: &[u8], header: Option<&HeaderValue>) -> bool {
    let Some(hex) = header
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
    else {
        return false;
    };
    let Ok(tag) = HEXLOWER.decode(hex.as_bytes()) else {
        return false;
    };
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

/// One request received by the generic webhook.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    /// Header names lower-cased, in order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
    /// With a secret set: whether `X-Canaryd-Signature` was present and right. Without: None.
    pub signature_ok: Option<bool>,
    /// The status the fake answered.
    pub status: u16,
}

impl WebhookRequest {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Debug)]
struct WebhookState {
    mode: Mode,
    secret: Option<Vec<u8>>,
    requests: Vec<WebhookRequest>,
}

/// A generic webhook receiver: records every request that reaches it (any method, any path) and
/// answers, in [`Mode::Accept`], **200** `ok`. With [`Webhook::with_hmac_secret`] it checks
/// `X-Canaryd-Signature: sha256=<lowercase hex HMAC-SHA256(secret, raw body)>` and answers **401**
/// `invalid signature` when it is missing or wrong (uppercase hex counts as wrong).
///
/// Other modes answer every request (still recorded, signature still checked): `Status(c)` → c;
/// `RateLimit` → 429 with `Retry-After`; `Gone` → 410; `InvalidToken` → 401.
pub struct Webhook {
    state: Arc<Mutex<WebhookState>>,
    server: Server,
}

impl Webhook {
    /// Starts the fake on a free 127.0.0.1 port, without a signature check.
    pub fn start() -> Webhook {
        let state = Arc::new(Mutex::new(WebhookState {
            mode: Mode::Accept,
            secret: None,
            requests: Vec::new(),
        }));
        let router = Router::new()
            .fallback(webhook_handle)
            .with_state(Arc::clone(&state));
        Webhook {
            server: Server::start("webhook", router),
            state,
        }
    }

    /// Requires every request from now on to carry a correct signature made with `secret`.
    pub fn with_hmac_secret(self, secret: impl AsRef<[u8]>) -> Webhook {
        lock(&self.state).secret = Some(secret.as_ref().to_vec());
        self
    }

    /// `http://127.0.0.1:PORT/hook` (any other path is received the same way).
    pub fn url(&self) -> String {
        format!("{}/hook", self.server.base_url())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    pub fn set_mode(&self, mode: Mode) {
        mode.check();
        lock(&self.state).mode = mode;
        self.server.gate.set_mode(mode);
    }

    pub fn mode(&self) -> Mode {
        lock(&self.state).mode
    }

    /// Every request that reached the handler, in arrival order, whatever the answer.
    pub fn requests(&self) -> Vec<WebhookRequest> {
        lock(&self.state).requests.clone()
    }

    /// The requests answered 200.
    pub fn accepted(&self) -> Vec<WebhookRequest> {
        lock(&self.state)
            .requests
            .iter()
            .filter(|r| r.status == 200)
            .cloned()
            .collect()
    }

    /// Connections (or requests on kept-alive connections) reset in [`Mode::Refuse`].
    pub fn refused_connections(&self) -> usize {
        self.server.gate.refused.load(Ordering::SeqCst)
    }

    /// Blocks until `done(self)` is true (true) or `timeout` passes (false).
    pub fn wait_until(&self, mut done: impl FnMut(&Webhook) -> bool, timeout: Duration) -> bool {
        poll_until(timeout, || done(self))
    }

    /// [`Webhook::wait_until`] for async tests.
    pub async fn wait_until_async(
        &self,
        mut done: impl FnMut(&Webhook) -> bool,
        timeout: Duration,
    ) -> bool {
        poll_until_async(timeout, || done(self)).await
    }

    /// Blocks until at least `n` requests arrived.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(|w| w.requests().len() >= n, timeout)
    }
}

async fn webhook_handle(
    State(state): State<Arc<Mutex<WebhookState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let at = Instant::now();
    let mut st = lock(&state);
    let signature_ok = st
        .secret
        .as_ref()
        .map(|secret| signature_matches(secret, &body, headers.get(SIGNATURE_HEADER)));
    let reply = match st.mode {
        Mode::Accept if signature_ok == Some(false) => Reply::text(401, "invalid signature"),
        Mode::Accept => Reply::text(200, "ok"),
        Mode::Status(code) => Reply::text(code, reason(code)),
        Mode::RateLimit { retry_after_secs } => {
            Reply::text(429, "Too Many Requests").retry_after(retry_after_secs)
        }
        Mode::Refuse => Reply::text(503, "refusing"),
        Mode::Gone => Reply::text(410, "Gone"),
        Mode::InvalidToken => Reply::text(401, "Unauthorized"),
    };
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_string(), |pq| pq.as_str().to_string());
    st.requests.push(WebhookRequest {
        method: method.to_string(),
        path,
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
        at,
        signature_ok,
        status: reply.status,
    });
    reply
}
