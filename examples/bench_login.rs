//! `cargo run --release --example bench_login -- [SECONDS] [CONCURRENCY]`
//!
//! CPU per scripted login: the 4-step flow of `checks/shop.yaml` run by the real
//! http probe against a login app served from this process, on loopback:
//!
//! 1. `GET /accounts/login/` → 200, a form; the CSRF token is extracted with a css selector
//!    (the app also sets it as the `csrftoken` cookie, as Django does);
//! 2. `POST /accounts/login/` with the credentials (the password from `${env:..}`) and the token
//!    → 302 to `/dashboard/` with a `sessionid` cookie (token, cookie and password are checked);
//! 3. `GET /dashboard/` with the session cookie → 200, body contains "Sign out";
//! 4. `GET /health` → JSON `$.database == "prod-primary"`.
//!
//! The app (axum) runs on its own thread with its own single-threaded runtime. The probe runs on
//! the main thread, on a single-threaded runtime too: CONCURRENCY flows at a time for SECONDS,
//! then one at a time (what a daemon running one login check every 30 s does) for a third of
//! that. canaryd's CPU is the process's CPU (`/proc/self/stat`) less the app thread's
//! (`/proc/self/task/TID/schedstat`); the main thread's own CPU is printed beside it as a
//! cross-check. Every flow must pass: a failed one is counted and reported.
//!
//! Prints `login4_canaryd cpu_ms_per_flow= flows_per_s= ...` (concurrent) and
//! `login4_canaryd_sequential cpu_ms_per_flow= ...`. `scripts/bench login` tabulates them.
//! blackbox_exporter has no peer figure: its http prober makes one request per probe and cannot
//! carry a token or a cookie from one request to the next.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use canaryd::probe::{Probe, RunContext};

/// The probe account's password, handed to the check as `${env:CANARYD_BENCH_LOGIN_PASSWORD}`.
const PASSWORD_ENV: &str = "CANARYD_BENCH_LOGIN_PASSWORD";
const PASSWORD: &str = "correct horse battery staple";
const USERNAME: &str = "probe@example.com";

type Res<T> = Result<T, String>;

fn main() {
    if let Err(e) = run() {
        eprintln!("bench_login: {e}");
        std::process::exit(1);
    }
}

fn run() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let seconds: f64 = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .or_else(|| {
            std::env::var("CANARYD_BENCH_SECONDS")
                .ok()
                .and_then(|s| s.parse().ok())
        })
        .unwrap_or(10.0);
    let concurrency: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(8);
    // Before any thread exists: the check reads it when it is loaded.
    std::env::set_var(PASSWORD_ENV, PASSWORD);

    let app = Arc::new(LoginApp::new());
    let server = Server::start(app.clone())?;
    println!(
        "login app (axum, own thread and runtime) on 127.0.0.1:{}: login page {} bytes, dashboard {} bytes, /health {} bytes",
        server.port,
        app.login_page("x".repeat(32).as_str()).len(),
        app.dashboard.len(),
        HEALTH.len()
    );

    let check = canaryd::probe::check::load_checks_str(
        Path::new("bench-login.yaml"),
        &check_yaml(server.port),
    )
    .map_err(|e| format!("check definition: {e}"))?
    .remove(0);
    let probe = canaryd::daemon::build_probe(&check)?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        // Warm up, and fail loudly if the flow does not pass.
        for _ in 0..20 {
            let r = probe.run(ctx()).await;
            if !r.success {
                let failed = r.steps.iter().find(|s| !s.success).map(|s| s.name.clone());
                return Err(format!(
                    "the login flow fails at step {failed:?}: {:?}: {}",
                    r.reason,
                    r.message.unwrap_or_default()
                ));
            }
        }
        let m = measure(
            &probe,
            &server,
            concurrency,
            Duration::from_secs_f64(seconds),
        )
        .await?;
        println!("login4_canaryd {} concurrency={concurrency}", m.line());
        let m = measure(
            &probe,
            &server,
            1,
            Duration::from_secs_f64((seconds / 3.0).max(1.0)),
        )
        .await?;
        println!("login4_canaryd_sequential {} concurrency=1", m.line());
        Ok(())
    })?;
    if app.rejected.load(Ordering::Relaxed) > 0 {
        return Err(format!(
            "the app refused {} requests (bad token, password or session)",
            app.rejected.load(Ordering::Relaxed)
        ));
    }
    Ok(())
}

fn ctx() -> RunContext {
    RunContext {
        deadline: tokio::time::Instant::now() + Duration::from_secs(10),
    }
}

/// The flow of `checks/shop.yaml`'s `shop-login`, pointed at the local app.
fn check_yaml(port: u16) -> String {
    format!(
        r#"checks:
  - name: bench-login
    interval: 30s
    timeout: 10s
    http:
      base_url: http://127.0.0.1:{port}
      steps:
        - name: form
          request: {{method: GET, url: /accounts/login/}}
          expect: {{status: 200}}
          extract:
            csrf: {{css: 'input[name="csrfmiddlewaretoken"]', attr: value}}
        - name: submit
          request:
            method: POST
            url: /accounts/login/
            form:
              username: {USERNAME}
              password: "${{env:{PASSWORD_ENV}}}"
              csrfmiddlewaretoken: "${{csrf}}"
            headers: {{Referer: "${{base_url}}/accounts/login/"}}
            follow_redirects: false
          expect: {{status: 302, header: {{Location: "/dashboard/"}}}}
        - name: dashboard
          request: {{method: GET, url: /dashboard/}}
          expect:
            status: 200
            body_contains: "Sign out"
            max_duration: 2s
        - name: identity
          request: {{method: GET, url: /health}}
          expect: {{json: {{"$.database": "prod-primary"}}}}
"#
    )
}

/// One measured pass.
struct Measured {
    flows: u64,
    failed: u64,
    wall: Duration,
    /// Process CPU less the app thread's.
    canaryd_cpu: Duration,
    /// The main (probe) thread alone.
    probe_thread_cpu: Duration,
    /// The app thread.
    server_cpu: Duration,
    /// Flow durations, sorted.
    durations: Vec<Duration>,
}

impl Measured {
    fn line(&self) -> String {
        let per_flow = |d: Duration| d.as_secs_f64() * 1e3 / self.flows.max(1) as f64;
        let pct = |p: f64| {
            let i = (self.durations.len() as f64 * p) as usize;
            let d = self
                .durations
                .get(i.min(self.durations.len().saturating_sub(1)));
            d.map_or(0.0, |d| d.as_secs_f64() * 1e3)
        };
        format!(
            "cpu_ms_per_flow={:.3} flows_per_s={:.0} probe_thread_cpu_ms_per_flow={:.3} server_cpu_ms_per_flow={:.3} flow_p50_ms={:.2} flow_p99_ms={:.2} flows={} failed={} seconds={:.1}",
            per_flow(self.canaryd_cpu),
            self.flows as f64 / self.wall.as_secs_f64(),
            per_flow(self.probe_thread_cpu),
            per_flow(self.server_cpu),
            pct(0.5),
            pct(0.99),
            self.flows,
            self.failed,
            self.wall.as_secs_f64()
        )
    }
}

async fn measure(
    probe: &Arc<dyn Probe>,
    server: &Server,
    concurrency: usize,
    length: Duration,
) -> Res<Measured> {
    let failed = Arc::new(AtomicU64::new(0));
    let proc0 = process_cpu()?;
    let main0 = thread_cpu("/proc/thread-self/schedstat")?;
    let server0 = server.cpu()?;
    let t0 = Instant::now();
    let end = t0 + length;
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (probe, failed) = (probe.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut durations = Vec::new();
            while Instant::now() < end {
                let start = Instant::now();
                let r = probe.run(ctx()).await;
                durations.push(start.elapsed());
                if !r.success {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            durations
        }));
    }
    let mut durations = Vec::new();
    for t in tasks {
        durations.extend(t.await.map_err(|e| e.to_string())?);
    }
    let wall = t0.elapsed();
    let server_cpu = server.cpu()? - server0;
    let probe_thread_cpu = thread_cpu("/proc/thread-self/schedstat")? - main0;
    let process = process_cpu()? - proc0;
    durations.sort();
    let failed = failed.load(Ordering::Relaxed);
    if failed > 0 {
        return Err(format!(
            "{failed} of {} flows failed under load",
            durations.len()
        ));
    }
    Ok(Measured {
        flows: durations.len() as u64,
        failed,
        wall,
        canaryd_cpu: process.saturating_sub(server_cpu),
        probe_thread_cpu,
        server_cpu,
        durations,
    })
}

/// utime + stime of this process, from /proc (USER_HZ is 100 on Linux).
fn process_cpu() -> Res<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").map_err(|e| e.to_string())?;
    let after = stat.rsplit_once(')').map_or("", |(_, s)| s);
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // Fields after the command: state is [0]; utime (field 14 overall) is [11], stime [12].
    Ok(Duration::from_millis(
        (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) * 10,
    ))
}

/// CPU time a thread has run, from its schedstat (ns).
fn thread_cpu(path: &str) -> Res<Duration> {
    let stat = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let ns = stat
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{path}: unexpected content"))?;
    Ok(Duration::from_nanos(ns))
}

// ---------------------------------------------------------------------------------------------
// The login app

/// The app's state: live sessions and the pages it serves.
struct LoginApp {
    /// Session ids handed out by a successful login.
    sessions: Mutex<HashSet<String>>,
    /// Requests refused (bad token, password or session): any is a bench failure.
    rejected: AtomicU64,
    /// The signed-in page.
    dashboard: String,
}

const HEALTH: &str = r#"{"status":"ok","database":"prod-primary","version":"2026.11.3","checks":{"db":"ok","cache":"ok","queue":"ok"}}"#;

impl LoginApp {
    fn new() -> LoginApp {
        let mut rows = String::new();
        for i in 0..60 {
            rows += &format!(
                "      <tr><td><a href=\"/orders/{n}/\">#{n}</a></td><td>Customer {i}</td><td>{}.{:02} EUR</td><td><span class=\"badge badge-{}\">{}</span></td><td>2026-11-{:02}</td></tr>\n",
                20 + i * 7,
                i % 100,
                if i % 3 == 0 { "ok" } else { "wait" },
                if i % 3 == 0 { "paid" } else { "pending" },
                1 + i % 28,
                n = 100_400 + i,
            );
        }
        let dashboard = format!(
            "{}<main class=\"dashboard\">\n  <h1>Dashboard</h1>\n  <section class=\"cards\"><div class=\"card\"><h2>Orders today</h2><p>412</p></div><div class=\"card\"><h2>Revenue</h2><p>18,230 EUR</p></div><div class=\"card\"><h2>Open tickets</h2><p>7</p></div></section>\n  <table class=\"orders\">\n    <thead><tr><th>Order</th><th>Customer</th><th>Total</th><th>Status</th><th>Date</th></tr></thead>\n    <tbody>\n{rows}    </tbody>\n  </table>\n</main>\n<footer><form method=\"post\" action=\"/accounts/logout/\"><button type=\"submit\">Sign out</button></form></footer>\n</body>\n</html>\n",
            page_head("Dashboard")
        );
        LoginApp {
            sessions: Mutex::new(HashSet::new()),
            rejected: AtomicU64::new(0),
            dashboard,
        }
    }

    fn login_page(&self, token: &str) -> String {
        format!(
            r#"{}<main class="login">
  <h1>Sign in to Shop</h1>
  <form method="post" action="/accounts/login/" id="login-form" novalidate>
    <input type="hidden" name="csrfmiddlewaretoken" value="{token}">
    <div class="field"><label for="id_username">Email</label>
      <input type="email" name="username" id="id_username" autocomplete="username" autofocus required maxlength="254"></div>
    <div class="field"><label for="id_password">Password</label>
      <input type="password" name="password" id="id_password" autocomplete="current-password" required></div>
    <div class="field remember"><input type="checkbox" name="remember" id="id_remember"><label for="id_remember">Keep me signed in</label></div>
    <button type="submit" class="primary">Sign in</button>
    <p class="help"><a href="/accounts/password/reset/">Forgot your password?</a> · <a href="/accounts/signup/">Create an account</a></p>
  </form>
</main>
<footer><p>&copy; 2026 Shop Inc. · <a href="/privacy/">Privacy</a> · <a href="/terms/">Terms</a> · <a href="/status/">Status</a></p></footer>
<script src="/static/js/login.4f1c2e.js" defer></script>
</body>
</html>
"#,
            page_head("Sign in")
        )
    }

    fn refuse(&self, status: StatusCode) -> Response {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        response(status, "text/plain", Body::from("refused"))
    }
}

/// The `<head>` and navigation every page shares, about what a real app sends.
fn page_head(title: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title} · Shop</title>
  <link rel="stylesheet" href="/static/css/app.9b3e1d.css">
  <link rel="icon" href="/static/favicon.ico">
  <meta name="description" content="Shop: orders, invoices and customers in one place.">
</head>
<body>
<header class="top">
  <a class="brand" href="/">Shop</a>
  <nav><ul><li><a href="/orders/">Orders</a></li><li><a href="/customers/">Customers</a></li><li><a href="/invoices/">Invoices</a></li><li><a href="/reports/">Reports</a></li><li><a href="/help/">Help</a></li></ul></nav>
</header>
"#
    )
}

fn response(status: StatusCode, content_type: &str, body: Body) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .body(body)
        .unwrap_or_default()
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        })
}

fn router(app: Arc<LoginApp>) -> Router {
    Router::new()
        .route(
            "/accounts/login/",
            get(|State(app): State<Arc<LoginApp>>| async move {
                let token = uuid::Uuid::new_v4().simple().to_string();
                let mut r = response(
                    StatusCode::OK,
                    "text/html; charset=utf-8",
                    Body::from(app.login_page(&token)),
                );
                if let Ok(v) = format!("csrftoken={token}; Path=/; SameSite=Lax").parse() {
                    r.headers_mut().insert(header::SET_COOKIE, v);
                }
                r
            })
            .post(
                |State(app): State<Arc<LoginApp>>, headers: HeaderMap, body: Bytes| async move {
                    let (mut user, mut pass, mut token) = (None, None, None);
                    for (k, v) in url::form_urlencoded::parse(&body) {
                        match &*k {
                            "username" => user = Some(v.into_owned()),
                            "password" => pass = Some(v.into_owned()),
                            "csrfmiddlewaretoken" => token = Some(v.into_owned()),
                            _ => {}
                        }
                    }
                    let csrf_ok = token.is_some() && token == cookie(&headers, "csrftoken");
                    if !csrf_ok {
                        return app.refuse(StatusCode::FORBIDDEN);
                    }
                    if user.as_deref() != Some(USERNAME) || pass.as_deref() != Some(PASSWORD) {
                        return app.refuse(StatusCode::OK);
                    }
                    let session = uuid::Uuid::new_v4().simple().to_string();
                    app.sessions
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(session.clone());
                    let mut r = response(StatusCode::FOUND, "text/html", Body::empty());
                    r.headers_mut().insert(
                        header::LOCATION,
                        header::HeaderValue::from_static("/dashboard/"),
                    );
                    if let Ok(v) =
                        format!("sessionid={session}; HttpOnly; Path=/; SameSite=Lax").parse()
                    {
                        r.headers_mut().insert(header::SET_COOKIE, v);
                    }
                    r
                },
            ),
        )
        .route(
            "/dashboard/",
            get(
                |State(app): State<Arc<LoginApp>>, headers: HeaderMap| async move {
                    let signed_in = cookie(&headers, "sessionid").is_some_and(|s| {
                        app.sessions
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .contains(&s)
                    });
                    if !signed_in {
                        return app.refuse(StatusCode::FORBIDDEN);
                    }
                    response(
                        StatusCode::OK,
                        "text/html; charset=utf-8",
                        Body::from(app.dashboard.clone()),
                    )
                },
            ),
        )
        .route(
            "/health",
            get(|| async { response(StatusCode::OK, "application/json", Body::from(HEALTH)) }),
        )
        .with_state(app)
}

/// The app on its own thread and single-threaded runtime, so that its CPU time is that
/// thread's and can be taken out of the process's.
struct Server {
    port: u16,
    /// `/proc/self/task/TID/schedstat` of the app's thread.
    schedstat: String,
}

impl Server {
    fn start(app: Arc<LoginApp>) -> Res<Server> {
        let (tx, rx) = std::sync::mpsc::channel::<Res<(u16, String)>>();
        std::thread::Builder::new()
            .name("login-app".into())
            .spawn(move || {
                let started = (|| -> Res<_> {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?;
                    let listener = rt
                        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                        .map_err(|e| e.to_string())?;
                    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
                    // `/proc/thread-self` links to this thread's `PID/task/TID`.
                    let me = std::fs::read_link("/proc/thread-self")
                        .map_err(|e| format!("/proc/thread-self: {e}"))?;
                    let schedstat = Path::new("/proc").join(me).join("schedstat");
                    Ok((rt, listener, port, schedstat.display().to_string()))
                })();
                match started {
                    Ok((rt, listener, port, schedstat)) => {
                        let _ = tx.send(Ok((port, schedstat)));
                        let _ =
                            rt.block_on(async move { axum::serve(listener, router(app)).await });
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        let (port, schedstat) = rx.recv().map_err(|e| e.to_string())??;
        Ok(Server { port, schedstat })
    }

    fn cpu(&self) -> Res<Duration> {
        thread_cpu(&self.schedstat)
    }
}
