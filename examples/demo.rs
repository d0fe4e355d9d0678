//! The newcomer's first run: `cargo run --release --example demo`.
//!
//! Starts a small demo web app on 127.0.0.1:8088 (a page, a JSON health endpoint, a login form
//! with a CSRF token and a session cookie, and controls to make it slow or failing) and canaryd
//! on 127.0.0.1:9464 monitoring it with `checks/demo.yaml`. Every few seconds it prints each
//! check's state, so you can watch a check fail when you break the app.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const APP: &str = "127.0.0.1:8088";
const CANARYD: &str = "127.0.0.1:9464";
const PASSWORD: &str = "demo-password";

#[derive(Default)]
struct Demo {
    /// Extra latency added to every page, in milliseconds.
    slow_ms: AtomicU64,
    /// Every page answers 500.
    failing: AtomicBool,
    /// The app reports the wrong database (incident 1 of DESIGN.md).
    wrong_db: AtomicBool,
    sessions: Mutex<HashMap<String, ()>>,
}

impl Demo {
    async fn degrade(&self) -> Option<Response> {
        let ms = self.slow_ms.load(Ordering::Relaxed);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        self.failing.load(Ordering::Relaxed).then(|| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error (demo control: fail)",
            )
                .into_response()
        })
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    let raw = headers.get("cookie")?.to_str().ok()?;
    raw.split(';')
        .map(str::trim)
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_string))
}

fn app(demo: Arc<Demo>) -> Router {
    Router::new()
        .route(
            "/",
            get(|State(d): State<Arc<Demo>>| async move {
                if let Some(r) = d.degrade().await {
                    return r;
                }
                Html("<h1>Demo shop</h1><a href=\"/accounts/login/\">Log in</a>").into_response()
            }),
        )
        .route(
            "/health",
            get(|State(d): State<Arc<Demo>>| async move {
                if let Some(r) = d.degrade().await {
                    return r;
                }
                let db = if d.wrong_db.load(Ordering::Relaxed) { "demo-staging" } else { "demo-primary" };
                ([("content-type", "application/json")], format!(r#"{{"status":"ok","database":"{db}"}}"#)).into_response()
            }),
        )
        .route(
            "/accounts/login/",
            get(|State(d): State<Arc<Demo>>| async move {
                if let Some(r) = d.degrade().await {
                    return r;
                }
                let token = uuid::Uuid::new_v4().simple().to_string();
                Response::builder()
                    .header("content-type", "text/html")
                    .header("set-cookie", format!("csrftoken={token}; Path=/; SameSite=Lax"))
                    .body(Body::from(format!(
                        r#"<form method="post"><input type="hidden" name="csrfmiddlewaretoken" value="{token}">
<input name="username"><input name="password" type="password"><button>Log in</button></form>"#
                    )))
                    .unwrap()
            })
            .post(|State(d): State<Arc<Demo>>, headers: HeaderMap, body: Bytes| async move {
                if let Some(r) = d.degrade().await {
                    return r;
                }
                let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
                let csrf_ok = cookie(&headers, "csrftoken").is_some_and(|c| Some(&c) == form.get("csrfmiddlewaretoken"));
                if !csrf_ok {
                    return (StatusCode::FORBIDDEN, "CSRF verification failed. Request aborted.").into_response();
                }
                if form.get("password").map(String::as_str) != Some(PASSWORD) {
                    return Html("Please enter a correct username and password.").into_response();
                }
                let session = uuid::Uuid::new_v4().simple().to_string();
                d.sessions.lock().unwrap().insert(session.clone(), ());
                Response::builder()
                    .status(302)
                    .header("location", "/dashboard/")
                    .header("set-cookie", format!("sessionid={session}; Path=/; HttpOnly"))
                    .body(Body::empty())
                    .unwrap()
            }),
        )
        .route(
            "/dashboard/",
            get(|State(d): State<Arc<Demo>>, headers: HeaderMap| async move {
                if let Some(r) = d.degrade().await {
                    return r;
                }
                match cookie(&headers, "sessionid") {
                    Some(s) if d.sessions.lock().unwrap().contains_key(&s) => Html("<p>Your orders</p><a href=\"/logout\">Sign out</a>").into_response(),
                    _ => Response::builder().status(302).header("location", "/accounts/login/").body(Body::empty()).unwrap(),
                }
            }),
        )
        .route(
            "/control",
            get(|State(d): State<Arc<Demo>>, Query(q): Query<HashMap<String, String>>| async move {
                if let Some(ms) = q.get("slow_ms").and_then(|v| v.parse().ok()) {
                    d.slow_ms.store(ms, Ordering::Relaxed);
                }
                if let Some(v) = q.get("fail") {
                    d.failing.store(v == "1" || v == "true", Ordering::Relaxed);
                }
                if let Some(v) = q.get("wrong_db") {
                    d.wrong_db.store(v == "1" || v == "true", Ordering::Relaxed);
                }
                if q.contains_key("reset") {
                    d.slow_ms.store(0, Ordering::Relaxed);
                    d.failing.store(false, Ordering::Relaxed);
                    d.wrong_db.store(false, Ordering::Relaxed);
                }
                format!(
                    "slow_ms={} fail={} wrong_db={}\n",
                    d.slow_ms.load(Ordering::Relaxed),
                    d.failing.load(Ordering::Relaxed),
                    d.wrong_db.load(Ordering::Relaxed)
                )
            }),
        )
        .with_state(demo)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let app_listener = match tokio::net::TcpListener::bind(APP).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("demo: cannot listen on {APP} ({e}); is another demo running?");
            return std::process::ExitCode::from(1);
        }
    };
    tokio::spawn(async move { axum::serve(app_listener, app(Arc::new(Demo::default()))).await });

    // The demo's embedded configuration: canaryd on its default port, the demo checks.
    let dir = std::env::temp_dir().join(format!("canaryd-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let checks = concat!(env!("CARGO_MANIFEST_DIR"), "/checks/demo.yaml");
    let config = dir.join("canaryd.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: {CANARYD}\nstate_dir: {}\ncheck_files: [{checks}]\n",
            dir.join("state").display()
        ),
    )
    .expect("write config");
    // The login check reads its password as a secret from the environment, as production would.
    std::env::set_var("DEMO_PASSWORD", PASSWORD);

    let daemon = match canaryd::daemon::Daemon::start(&config) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("demo: configuration error:\n{e}");
            return std::process::ExitCode::from(1);
        }
    };
    let listener = match tokio::net::TcpListener::bind(CANARYD).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("demo: cannot listen on {CANARYD} ({e}); is canaryd already running?");
            return std::process::ExitCode::from(1);
        }
    };
    tokio::spawn(canaryd::server::serve(
        listener,
        daemon.clone(),
        std::future::pending(),
    ));

    println!(
        "\ncanaryd demo running.\n\
         \n  demo app         http://{APP}/   (login: any user, password {PASSWORD:?})\
         \n  metrics          http://{CANARYD}/metrics\
         \n  check states     http://{CANARYD}/api/v1/checks\
         \n  checks           {checks}\
         \n\nBreak the app and watch the checks fail within one interval (5s):\
         \n  curl 'http://{APP}/control?fail=1'         every page answers 500\
         \n  curl 'http://{APP}/control?slow_ms=2500'   pages take 2.5s (demo-login's max_duration is 2s)\
         \n  curl 'http://{APP}/control?wrong_db=1'     /health reports the wrong database\
         \n  curl 'http://{APP}/control?reset'          back to normal\
         \n\nCtrl-C stops.\n"
    );
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let config = daemon.config();
                let line: Vec<String> = config.checks.iter().map(|c| match daemon.states.get(&c.name) {
                    None => format!("{} …", c.name),
                    Some(r) if r.success => format!("{} ok", c.name),
                    Some(r) => format!("{} FAIL ({})", c.name, r.message.as_deref().unwrap_or("")),
                }).collect();
                println!("{}", line.join(" | "));
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    daemon.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    std::process::ExitCode::SUCCESS
}
