//! Scripted logins against a server that checks what it is sent: a JSON API login whose bearer
//! token is extracted and used, a form login with a TOTP second factor the server verifies
//! (RFC 6238, ±1 step), `always_run` cleanup after a failure, and a planted canary password,
//! TOTP seed and bearer token that must appear in no output of the real binary — trace logs,
//! `/metrics`, `/api/v1/checks`, error messages, `canaryd probe` (with `--show-values` too, for
//! the configured secrets).

mod services;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use canaryd::config::totp::Totp;
use canaryd::daemon::build_probe;
use canaryd::probe::check::load_checks_str;
use canaryd::probe::{CheckResult, Reason, RunContext};

const BIN: &str = env!("CARGO_BIN_EXE_canaryd");
const PASSWORD: &str = "canary-pw-Hq7Lm2";
/// Base32 of "12345678901234567890" (RFC 6238's SHA-1 seed).
const SEED: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
const BEARER: &str = "canary-bearer-Vt5Kd8";

#[derive(Default)]
struct Site {
    logouts: AtomicU64,
    otp_accepted: AtomicU64,
    /// Session ids waiting for their second factor, and logged-in ones.
    pending: Mutex<Vec<String>>,
    sessions: Mutex<Vec<String>>,
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    let raw = headers.get("cookie")?.to_str().ok()?;
    raw.split(';')
        .map(str::trim)
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_string))
}

fn form(body: &Bytes) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn redirect(to: &str, set_cookie: Option<String>) -> Response {
    let mut b = Response::builder().status(302).header("location", to);
    if let Some(c) = set_cookie {
        b = b.header("set-cookie", c);
    }
    b.body(Body::empty()).unwrap()
}

fn app(site: Arc<Site>) -> Router {
    Router::new()
        // JSON API: password in, bearer token out. A wrong password is echoed back, as careless
        // apps do, to prove canaryd redacts what the peer says.
        .route(
            "/api/login",
            post(|body: Bytes| async move {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let pw = v["password"].as_str().unwrap_or("");
                if v["username"] == "probe" && pw == PASSWORD {
                    ([("content-type", "application/json")], format!(r#"{{"token":"{BEARER}","expires_in":3600}}"#)).into_response()
                } else {
                    (StatusCode::UNAUTHORIZED, format!("bad password {pw}")).into_response()
                }
            }),
        )
        .route(
            "/api/me",
            get(|headers: HeaderMap| async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
                if auth == format!("Bearer {BEARER}") {
                    ([("content-type", "application/json")], r#"{"user":"probe","plan":"pro","orders":3}"#).into_response()
                } else {
                    (StatusCode::UNAUTHORIZED, format!("token {auth} rejected")).into_response()
                }
            }),
        )
        // Form login with a second factor.
        .route(
            "/login",
            get(|| async {
                let token = uuid::Uuid::new_v4().simple().to_string();
                Response::builder()
                    .header("set-cookie", format!("csrftoken={token}; Path=/"))
                    .body(Body::from(format!(r#"<form method="post"><input type="hidden" name="csrf" value="{token}"></form>"#)))
                    .unwrap()
            })
            .post(|State(s): State<Arc<Site>>, headers: HeaderMap, body: Bytes| async move {
                let f = form(&body);
                if cookie(&headers, "csrftoken").as_ref() != f.get("csrf") {
                    return (StatusCode::FORBIDDEN, "CSRF verification failed").into_response();
                }
                if f.get("password").map(String::as_str) != Some(PASSWORD) {
                    return (StatusCode::OK, "Please enter the correct password").into_response();
                }
                let pending = uuid::Uuid::new_v4().simple().to_string();
                s.pending.lock().unwrap().push(pending.clone());
                redirect("/otp", Some(format!("pending={pending}; Path=/")))
            }),
        )
        .route(
            "/otp",
            get(|| async { "<form method=post><input name=code></form>" }).post(
                |State(s): State<Arc<Site>>, headers: HeaderMap, body: Bytes| async move {
                    let Some(p) = cookie(&headers, "pending") else {
                        return (StatusCode::FORBIDDEN, "no pending login").into_response();
                    };
                    if !s.pending.lock().unwrap().contains(&p) {
                        return (StatusCode::FORBIDDEN, "no pending login").into_response();
                    }
                    let code = form(&body).get("code").cloned().unwrap_or_default();
                    let totp = Totp::parse(SEED, "").unwrap();
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs();
                    // The server's own check: the code of this 30 s step or a neighbour.
                    let ok = [now - 30, now, now + 30].iter().any(|t| totp.code_at(*t) == code);
                    if !ok {
                        return (StatusCode::OK, "Invalid code").into_response();
                    }
                    s.otp_accepted.fetch_add(1, Ordering::Relaxed);
                    let session = uuid::Uuid::new_v4().simple().to_string();
                    s.sessions.lock().unwrap().push(session.clone());
                    redirect("/home", Some(format!("session={session}; Path=/")))
                },
            ),
        )
        .route(
            "/home",
            get(|State(s): State<Arc<Site>>, headers: HeaderMap| async move {
                match cookie(&headers, "session") {
                    Some(c) if s.sessions.lock().unwrap().contains(&c) => "Welcome back, Sign out".into_response(),
                    _ => redirect("/login", None),
                }
            }),
        )
        .route(
            "/logout",
            post(|State(s): State<Arc<Site>>| async move {
                s.logouts.fetch_add(1, Ordering::Relaxed);
                "bye"
            }),
        )
        .with_state(site)
}

/// Serves the site on a free port from its own thread and runtime; returns its address.
fn serve(site: Arc<Site>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app(site)).await.unwrap();
        });
    });
    addr
}

fn checks_yaml(addr: &str) -> String {
    format!(
        r#"checks:
  - name: api-login
    interval: 30s
    timeout: 5s
    http:
      base_url: "http://{addr}"
      steps:
        - name: login
          request:
            method: POST
            url: /api/login
            json: {{username: probe, password: "${{env:LOGIN_TEST_PASSWORD}}"}}
          expect:
            status: 200
            json: {{"$.expires_in": {{greater_than: 60}}}}
          extract:
            token: {{json: "$.token"}}
        - name: me
          request:
            url: /api/me
            headers: {{Authorization: "Bearer ${{token}}"}}
          expect:
            status: 200
            json:
              "$.user": probe
              "$.orders": {{less_than: 100}}
              "$.user_id": {{exists: false}}
              "$.plan": {{matches: "^(pro|team)$"}}
  - name: totp-login
    interval: 30s
    timeout: 5s
    http:
      base_url: "http://{addr}"
      steps:
        - name: form
          request: {{url: /login}}
          expect: {{status: 200, cookie: csrftoken}}
          extract:
            csrf: {{css: 'input[name="csrf"]', attr: value}}
        - name: password
          request:
            method: POST
            url: /login
            form: {{username: probe, password: "${{env:LOGIN_TEST_PASSWORD}}", csrf: "${{csrf}}"}}
            follow_redirects: false
          expect: {{status: 302, header: {{Location: /otp}}}}
        - name: second-factor
          request:
            method: POST
            url: /otp
            form: {{code: "${{totp:env:LOGIN_TEST_TOTP_SEED}}"}}
          expect:
            status: 200
            body_contains: Welcome back
            url: /home
        - name: logout
          always_run: true
          request: {{method: POST, url: /logout}}
          expect: {{status: 200}}
"#
    )
}

fn set_env(password: &str, seed: &str) {
    std::env::set_var("LOGIN_TEST_PASSWORD", password);
    std::env::set_var("LOGIN_TEST_TOTP_SEED", seed);
}

async fn run_check(yaml: &str, name: &str) -> CheckResult {
    let checks = load_checks_str(Path::new("login.yaml"), yaml).unwrap_or_else(|e| panic!("{e}"));
    let check = checks.iter().find(|c| c.name == name).unwrap();
    let probe = build_probe(check).unwrap();
    probe
        .run(RunContext {
            deadline: tokio::time::Instant::now() + Duration::from_secs(5),
        })
        .await
}

/// Every test here sets the same process environment; run them one at a time.
static ENV: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread")]
async fn json_login_extracts_a_bearer_token_and_calls_the_api_with_it() {
    let _env = ENV.lock().await;
    let addr = serve(Arc::default());
    set_env(PASSWORD, SEED);
    let r = run_check(&checks_yaml(&addr), "api-login").await;
    assert!(r.success, "{:?}", r.message);
    assert_eq!(r.steps[0].extracted, ["token"]);
    assert_eq!(r.steps[1].status, Some(200));
    assert!(r.steps[1].assertions.iter().all(|a| a.passed));
    assert!(
        !format!("{r:?}").contains(BEARER),
        "the token leaked into the result"
    );

    // Wrong password: the server echoes it; the message names the step and hides the value.
    set_env("wrong-canary-pw-9x", SEED);
    let r = run_check(&checks_yaml(&addr), "api-login").await;
    assert_eq!(r.reason, Some(Reason::Status));
    let msg = r.message.unwrap();
    assert!(
        msg.starts_with("step \"login\": expected status 200, got 401"),
        "{msg}"
    );
    assert!(!msg.contains("wrong-canary-pw-9x"));
}

#[tokio::test(flavor = "multi_thread")]
async fn totp_second_factor_is_accepted_by_a_verifying_server_and_logout_always_runs() {
    let _env = ENV.lock().await;
    let site = Arc::new(Site::default());
    let addr = serve(Arc::clone(&site));
    set_env(PASSWORD, SEED);
    let r = run_check(&checks_yaml(&addr), "totp-login").await;
    assert!(r.success, "{:?}", r.message);
    assert_eq!(site.otp_accepted.load(Ordering::Relaxed), 1);
    assert_eq!(site.logouts.load(Ordering::Relaxed), 1);
    assert_eq!(r.steps[2].hops.len(), 1, "the code post redirects to /home");

    // A seed that is not the account's: the server rejects the code, the flow fails at the
    // second factor, and the logout step still runs.
    set_env(PASSWORD, "JBSWY3DPEHPK3PXP");
    let r = run_check(&checks_yaml(&addr), "totp-login").await;
    assert!(!r.success);
    let msg = r.message.clone().unwrap();
    assert!(msg.starts_with("step \"second-factor\":"), "{msg}");
    assert!(
        msg.contains("body does not contain \"Welcome back\""),
        "{msg}"
    );
    assert_eq!(site.otp_accepted.load(Ordering::Relaxed), 1);
    assert_eq!(
        site.logouts.load(Ordering::Relaxed),
        2,
        "always_run logout after a failure"
    );
    let logout = r.steps.iter().find(|s| s.name == "logout").unwrap();
    assert!(logout.ran && logout.success);
    assert_eq!(
        canaryd::probe::kind::variable_of(
            <canaryd::probe::http::def::Http as canaryd::probe::kind::Kind>::VARS,
            &r,
            "failed_step",
            std::time::SystemTime::now()
        ),
        Some(canaryd::probe::Value::String("second-factor".into()))
    );
}

#[test]
fn canary_password_seed_and_token_appear_in_no_output() {
    let _env = ENV.blocking_lock();
    let addr = serve(Arc::default());
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", services::free_port());
    std::fs::create_dir(dir.path().join("checks")).unwrap();
    std::fs::write(
        dir.path().join("canaryd.yaml"),
        format!("listen: {listen}\nstate_dir: state\ncheck_files: [checks/*.yaml]\n"),
    )
    .unwrap();
    let mut yaml = checks_yaml(&addr)
        .replace("interval: 30s", "interval: 1s")
        .replace("timeout: 5s", "timeout: 1s");
    // A third check whose password is wrong, so the server echoes the secret in an error.
    yaml.push_str(&format!(
        r#"  - name: echo-failure
    interval: 1s
    timeout: 1s
    http:
      request:
        method: POST
        url: "http://{addr}/api/login"
        json: {{username: probe, password: "${{env:LOGIN_TEST_PASSWORD}}-x"}}
      expect: {{status: 200, body_contains: "token"}}
"#
    ));
    std::fs::write(dir.path().join("checks/login.yaml"), yaml).unwrap();
    let config = dir.path().join("canaryd.yaml");
    let env = [
        ("LOGIN_TEST_PASSWORD", PASSWORD),
        ("LOGIN_TEST_TOTP_SEED", SEED),
        ("RUST_LOG", "trace"),
    ];

    let mut outputs: Vec<(String, String)> = Vec::new();
    for (name, show) in [
        ("api-login", false),
        ("totp-login", false),
        ("echo-failure", false),
        ("api-login", true),
        ("echo-failure", true),
    ] {
        let mut cmd = Command::new(BIN);
        cmd.args(["probe", "--config"]).arg(&config).arg(name);
        if show {
            cmd.arg("--show-values");
        }
        let out = cmd.envs(env).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.status.code(),
            Some(if name == "echo-failure" { 1 } else { 0 }),
            "{name}: {text}"
        );
        if show {
            // Configured secrets never show, even with --show-values.
            assert!(!text.contains(PASSWORD) && !text.contains(SEED), "{text}");
        }
        if show && name == "api-login" {
            // --show-values shows extracted values: the token the server issued is one.
            assert!(text.contains(&format!("token = \"{BEARER}\"")), "{text}");
        } else {
            outputs.push((format!("canaryd probe {name}"), text));
        }
    }

    let child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .args(["--log-level", "trace"])
        .envs(env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let mut metrics = String::new();
    // Wait until every check has run at least twice (pass, pass, fail).
    while t0.elapsed() < Duration::from_secs(15) {
        if let Ok(r) = services::http_get(&format!("http://{listen}/metrics")) {
            metrics = r.text();
            let ran_twice = ["api-login", "totp-login", "echo-failure"].iter().all(|c| {
                metrics.lines().any(|l| {
                    l.starts_with(&format!("canary_check_runs_total{{check=\"{c}\""))
                        && l.rsplit(' ').next().and_then(|v| v.parse::<u64>().ok()) >= Some(2)
                })
            });
            if ran_twice {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        metrics.contains("canary_check_success{check=\"totp-login\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("canary_check_success{check=\"echo-failure\"} 0"),
        "{metrics}"
    );
    let api = services::http_get(&format!("http://{listen}/api/v1/checks"))
        .unwrap()
        .text();
    assert!(api.contains("expected status 200, got 401"), "{api}");
    unsafe_kill_term(child.id());
    let out = child.wait_with_output().unwrap();
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "trace logging was on: {logs}"
    );
    outputs.push(("/metrics".into(), metrics));
    outputs.push(("/api/v1/checks".into(), api));
    outputs.push(("daemon logs at trace level".into(), logs));

    for (what, text) in &outputs {
        for (secret, value) in [
            ("password", PASSWORD),
            ("TOTP seed", SEED),
            ("bearer token", BEARER),
        ] {
            assert!(
                !text.contains(value),
                "the {secret} leaked into {what}:\n{text}"
            );
        }
    }
}

/// SIGTERM, so the daemon drains and exits as in production.
fn unsafe_kill_term(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}
