//! The demo web app canaryd watches: a shop page, a JSON health endpoint, a form login with a
//! CSRF token and a session cookie (one account also needs a TOTP code), a JSON API with bearer
//! tokens, and `/control` to break it the ways real deploys break.
//!
//! | route | what it does |
//! |---|---|
//! | `GET /`, `GET /health` | the shop page; `{"status":"ok","database":"demo-primary"}` |
//! | `GET /accounts/login/` | the login form: a CSRF token in a hidden field and in the `csrftoken` cookie |
//! | `POST /accounts/login/` | checks the token and the password; 302 to `/dashboard/`, or to `/accounts/otp/` for [`TOTP_USER`] |
//! | `GET`/`POST /accounts/otp/` | the second factor: the code from [`TOTP_SEED`] for this 30 s step or a neighbour; 302 to `/dashboard/` |
//! | `GET /dashboard/`, `GET /logout` | needs the session cookie; ends the session |
//! | `POST /api/login` | `{"username", "password"}` → `{"token", "token_type", "expires_in"}` |
//! | `GET /api/orders` | needs `Authorization: Bearer <token>`; the account's orders as JSON |
//! | `GET /control?...` | `fail`, `slow_ms`, `wrong_db`, `break_login`, `stall_worker`, `fail_jobs` (read by the job worker), `reset` |

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{AppendHeaders, Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use canaryd::config::totp::Totp;
use serde_json::json;

/// The password of every demo account. canaryd reads it from `DEMO_PASSWORD`.
pub const PASSWORD: &str = "demo-password";
/// The account whose login has a second factor; every other user name logs in with the
/// password alone.
pub const TOTP_USER: &str = "probe-2fa@example.com";
/// [`TOTP_USER`]'s authenticator seed, in base32 as an authenticator app is given it. canaryd
/// reads it from `DEMO_TOTP_SEED` (`${totp:env:DEMO_TOTP_SEED}` in the check).
pub const TOTP_SEED: &str = "DEMOCANARYDTOTPSEED234567ABCDEFG";

/// How many ids of each kind (sessions, half-done logins, API tokens) the app remembers: a probe
/// logs in every few seconds and the demo may run for days.
const KEEP_IDS: usize = 10_000;

/// The switches `/control` flips. Shared with the job worker, which obeys `stall_worker` and
/// `fail_jobs`.
#[derive(Debug, Default)]
pub struct Controls {
    /// Extra latency added to every page, in milliseconds.
    pub slow_ms: AtomicU64,
    /// Every page answers 500.
    pub failing: AtomicBool,
    /// `/health` reports the wrong database (the outage where a deploy pointed production at the wrong database).
    pub wrong_db: AtomicBool,
    /// Every password is rejected, as after a deploy pointed at the wrong user table.
    pub break_login: AtomicBool,
    /// The job worker stops taking jobs but stays registered, like a hung worker (incident 5).
    pub stall_worker: AtomicBool,
    /// The job worker takes every job and fails it, as when an instrumentation library broke
    /// every job (incident 5): jobs are processed (as failures), so queue rules stay quiet.
    pub fail_jobs: AtomicBool,
    /// Whether the demo runs a job queue at all, so `stall_worker` can say when it has no effect.
    pub queue_running: AtomicBool,
}

impl Controls {
    fn reset(&self) {
        self.slow_ms.store(0, Ordering::Relaxed);
        for flag in [
            &self.failing,
            &self.wrong_db,
            &self.break_login,
            &self.stall_worker,
            &self.fail_jobs,
        ] {
            flag.store(false, Ordering::Relaxed);
        }
    }

    /// One line saying what is switched on, as `/control` answers.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "slow_ms={} fail={} wrong_db={} break_login={} stall_worker={} fail_jobs={}",
            self.slow_ms.load(Ordering::Relaxed),
            self.failing.load(Ordering::Relaxed),
            self.wrong_db.load(Ordering::Relaxed),
            self.break_login.load(Ordering::Relaxed),
            self.stall_worker.load(Ordering::Relaxed),
            self.fail_jobs.load(Ordering::Relaxed),
        );
        if !self.queue_running.load(Ordering::Relaxed) {
            s.push_str(" (no job queue: redis-server is not installed, stall_worker and fail_jobs do nothing)");
        }
        s.push('\n');
        s
    }
}

/// Random ids the app handed out, the most recent [`KEEP_IDS`] of them.
#[derive(Default)]
struct Ids {
    order: VecDeque<String>,
    live: HashSet<String>,
}

impl Ids {
    fn issue(&mut self) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        if self.order.len() >= KEEP_IDS {
            if let Some(old) = self.order.pop_front() {
                self.live.remove(&old);
            }
        }
        self.order.push_back(id.clone());
        self.live.insert(id.clone());
        id
    }

    fn contains(&self, id: &str) -> bool {
        self.live.contains(id)
    }

    /// Ends an id; whether it was live.
    fn take(&mut self, id: &str) -> bool {
        self.live.remove(id)
    }
}

/// Issues, checks or ends an id under its lock. A handler that panicked while holding the lock
/// left nothing half-written that matters here, so a poisoned lock is used as is.
fn ids<T>(m: &Mutex<Ids>, f: impl FnOnce(&mut Ids) -> T) -> T {
    f(&mut m.lock().unwrap_or_else(PoisonError::into_inner))
}

/// The app's state.
struct App {
    controls: Arc<Controls>,
    /// [`TOTP_USER`]'s second factor, as the server verifies it.
    totp: Totp,
    /// Logged-in sessions (`sessionid` cookie).
    sessions: Mutex<Ids>,
    /// Logins that passed the password and wait for their code (`pending_login` cookie).
    pending: Mutex<Ids>,
    /// API bearer tokens.
    tokens: Mutex<Ids>,
}

impl App {
    /// Extra latency and the 500 of `fail`, applied to every page.
    async fn degrade(&self) -> Option<Response> {
        let ms = self.controls.slow_ms.load(Ordering::Relaxed);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        self.controls.failing.load(Ordering::Relaxed).then(|| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error (demo control: fail)",
            )
                .into_response()
        })
    }

    fn password_ok(&self, password: Option<&str>) -> bool {
        !self.controls.break_login.load(Ordering::Relaxed) && password == Some(PASSWORD)
    }

    /// The code of this 30 s step or of a neighbour, as servers allow for clock skew.
    fn code_ok(&self, code: &str) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        code.len() == 6
            && code.bytes().all(|b| b.is_ascii_digit())
            && [now.saturating_sub(30), now, now + 30]
                .iter()
                .any(|t| self.totp.code_at(*t) == code)
    }
}

/// The app's routes, switched by `controls`.
pub fn router(controls: Arc<Controls>) -> Result<Router, String> {
    let totp = Totp::parse(TOTP_SEED, "").map_err(|e| format!("demo TOTP seed: {e}"))?;
    let app = App {
        controls,
        totp,
        sessions: Mutex::default(),
        pending: Mutex::default(),
        tokens: Mutex::default(),
    };
    Ok(Router::new()
        .route("/", get(home))
        .route("/health", get(health))
        .route("/accounts/login/", get(login_form).post(login_submit))
        .route("/accounts/otp/", get(otp_form).post(otp_submit))
        .route("/dashboard/", get(dashboard))
        .route("/logout", get(logout))
        .route("/api/login", post(api_login))
        .route("/api/orders", get(api_orders))
        .route("/control", get(control))
        .with_state(Arc::new(app)))
}

type AppState = State<Arc<App>>;

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    let raw = headers.get(header::COOKIE)?.to_str().ok()?;
    raw.split(';')
        .map(str::trim)
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .map(str::to_string)
}

fn form(body: &Bytes) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// The form's CSRF token matches the `csrftoken` cookie (Django's double-submit rule).
fn csrf_ok(headers: &HeaderMap, form: &HashMap<String, String>) -> bool {
    cookie(headers, "csrftoken").is_some_and(|c| Some(&c) == form.get("csrfmiddlewaretoken"))
}

fn csrf_failed() -> Response {
    (
        StatusCode::FORBIDDEN,
        "CSRF verification failed. Request aborted.",
    )
        .into_response()
}

fn redirect(to: &'static str, set_cookies: Vec<String>) -> Response {
    let cookies = AppendHeaders(set_cookies.into_iter().map(|c| (header::SET_COOKIE, c)));
    (StatusCode::FOUND, [(header::LOCATION, to)], cookies).into_response()
}

/// A page with a form carrying a fresh CSRF token, set in the `csrftoken` cookie too.
fn form_page(fields: &str, error: Option<&str>) -> Response {
    let token = uuid::Uuid::new_v4().simple().to_string();
    let error = error
        .map(|e| format!("<p class=\"error\">{e}</p>\n"))
        .unwrap_or_default();
    (
        [(
            header::SET_COOKIE,
            format!("csrftoken={token}; Path=/; SameSite=Lax"),
        )],
        Html(format!(
            "{error}<form method=\"post\"><input type=\"hidden\" name=\"csrfmiddlewaretoken\" value=\"{token}\">\n{fields}<button>Continue</button></form>"
        )),
    )
        .into_response()
}

const LOGIN_FIELDS: &str = "<input name=\"username\"><input name=\"password\" type=\"password\">";
const OTP_FIELDS: &str =
    "<input name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\">";

async fn home(State(app): AppState) -> Response {
    if let Some(r) = app.degrade().await {
        return r;
    }
    Html("<h1>Demo shop</h1><a href=\"/accounts/login/\">Log in</a>").into_response()
}

async fn health(State(app): AppState) -> Response {
    if let Some(r) = app.degrade().await {
        return r;
    }
    let database = if app.controls.wrong_db.load(Ordering::Relaxed) {
        "demo-staging"
    } else {
        "demo-primary"
    };
    Json(json!({"status": "ok", "database": database})).into_response()
}

async fn login_form(State(app): AppState) -> Response {
    if let Some(r) = app.degrade().await {
        return r;
    }
    form_page(LOGIN_FIELDS, None)
}

async fn login_submit(State(app): AppState, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = app.degrade().await {
        return r;
    }
    let form = form(&body);
    if !csrf_ok(&headers, &form) {
        return csrf_failed();
    }
    if !app.password_ok(form.get("password").map(String::as_str)) {
        return form_page(
            LOGIN_FIELDS,
            Some("Please enter a correct username and password."),
        );
    }
    if form.get("username").map(String::as_str) == Some(TOTP_USER) {
        let pending = ids(&app.pending, Ids::issue);
        return redirect(
            "/accounts/otp/",
            vec![format!("pending_login={pending}; Path=/; HttpOnly")],
        );
    }
    let session = ids(&app.sessions, Ids::issue);
    redirect(
        "/dashboard/",
        vec![format!("sessionid={session}; Path=/; HttpOnly")],
    )
}

/// The half-done login in the request's `pending_login` cookie, if it is one the app issued.
fn pending_login(app: &App, headers: &HeaderMap) -> Option<String> {
    cookie(headers, "pending_login").filter(|p| ids(&app.pending, |ids| ids.contains(p)))
}

async fn otp_form(State(app): AppState, headers: HeaderMap) -> Response {
    if let Some(r) = app.degrade().await {
        return r;
    }
    if pending_login(&app, &headers).is_none() {
        return redirect("/accounts/login/", Vec::new());
    }
    form_page(OTP_FIELDS, None)
}

async fn otp_submit(State(app): AppState, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = app.degrade().await {
        return r;
    }
    let form = form(&body);
    if !csrf_ok(&headers, &form) {
        return csrf_failed();
    }
    let Some(pending) = pending_login(&app, &headers) else {
        return redirect("/accounts/login/", Vec::new());
    };
    if !app.code_ok(form.get("code").map_or("", String::as_str)) {
        return form_page(
            OTP_FIELDS,
            Some("Invalid code. Enter the current 6-digit code from your authenticator app."),
        );
    }
    ids(&app.pending, |ids| ids.take(&pending));
    let session = ids(&app.sessions, Ids::issue);
    redirect(
        "/dashboard/",
        vec![
            format!("sessionid={session}; Path=/; HttpOnly"),
            "pending_login=; Path=/; Max-Age=0".to_string(),
        ],
    )
}

async fn dashboard(State(app): AppState, headers: HeaderMap) -> Response {
    if let Some(r) = app.degrade().await {
        return r;
    }
    match cookie(&headers, "sessionid") {
        Some(s) if ids(&app.sessions, |ids| ids.contains(&s)) => {
            Html("<p>Your orders</p><a href=\"/logout\">Sign out</a>").into_response()
        }
        _ => redirect("/accounts/login/", Vec::new()),
    }
}

async fn logout(State(app): AppState, headers: HeaderMap) -> Response {
    if let Some(s) = cookie(&headers, "sessionid") {
        ids(&app.sessions, |ids| ids.take(&s));
    }
    redirect("/", vec!["sessionid=; Path=/; Max-Age=0".to_string()])
}

fn api_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn api_login(State(app): AppState, body: Bytes) -> Response {
    if let Some(r) = app.degrade().await {
        return r;
    }
    let Ok(login) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "send JSON: {\"username\": ..., \"password\": ...}",
        );
    };
    if !app.password_ok(login["password"].as_str()) {
        return api_error(StatusCode::UNAUTHORIZED, "invalid username or password");
    }
    let token = ids(&app.tokens, Ids::issue);
    Json(json!({"token": token, "token_type": "Bearer", "expires_in": 3600})).into_response()
}

async fn api_orders(State(app): AppState, headers: HeaderMap) -> Response {
    if let Some(r) = app.degrade().await {
        return r;
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !token.is_some_and(|t| ids(&app.tokens, |ids| ids.contains(t))) {
        return (
            [(header::WWW_AUTHENTICATE, "Bearer")],
            api_error(StatusCode::UNAUTHORIZED, "missing or unknown bearer token"),
        )
            .into_response();
    }
    Json(json!({
        "count": 2,
        "orders": [
            {"id": 1001, "status": "shipped", "total": "24.90"},
            {"id": 1002, "status": "processing", "total": "9.50"},
        ],
    }))
    .into_response()
}

async fn control(
    State(app): AppState,
    Query(q): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    let c = &app.controls;
    let on = |v: &String| v == "1" || v == "true";
    if let Some(ms) = q.get("slow_ms").and_then(|v| v.parse().ok()) {
        c.slow_ms.store(ms, Ordering::Relaxed);
    }
    for (key, flag) in [
        ("fail", &c.failing),
        ("wrong_db", &c.wrong_db),
        ("break_login", &c.break_login),
        ("stall_worker", &c.stall_worker),
        ("fail_jobs", &c.fail_jobs),
    ] {
        if let Some(v) = q.get(key) {
            flag.store(on(v), Ordering::Relaxed);
        }
    }
    if q.contains_key("reset") {
        c.reset();
    }
    c.describe()
}
