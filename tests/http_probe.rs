//! The http probe against a small local web app: login flows, redirects, cookies, assertions,
//! extraction and redaction, as a user of `canaryd probe` would see them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use canaryd::probe::{CheckResult, Reason};
use canaryd::schedule::{run_once, Entry};

#[derive(Default)]
struct AppState {
    /// Authorization headers seen, by path.
    auth_seen: Mutex<Vec<(String, Option<String>)>>,
    sessions: Mutex<HashMap<String, String>>,
}

async fn start(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    let raw = headers.get("cookie")?.to_str().ok()?;
    raw.split(';')
        .map(str::trim)
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_string))
}

/// A login app in the shape of Django's: a form with a CSRF token bound to a cookie, a POST that
/// redirects with a session cookie, and a page that needs the session.
fn login_app(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/login",
            get(|| async {
                (
                    [("set-cookie", "csrftoken=tok123; Path=/"), ("content-type", "text/html")],
                    r#"<html><form method="post"><input type="hidden" name="csrfmiddlewaretoken" value="tok123"><input name="password"></form></html>"#,
                )
            })
            .post(|State(s): State<Arc<AppState>>, headers: HeaderMap, body: Bytes| async move {
                let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
                if cookie(&headers, "csrftoken").as_deref() != Some("tok123") || form.get("csrfmiddlewaretoken").map(String::as_str) != Some("tok123") {
                    return (StatusCode::FORBIDDEN, "CSRF verification failed. Request aborted.").into_response();
                }
                if form.get("password").map(String::as_str) != Some("s3cret-canary-pw") {
                    return (StatusCode::OK, "Please enter a correct username and password.").into_response();
                }
                s.sessions.lock().unwrap().insert("sess42".into(), "probe".into());
                Response::builder()
                    .status(302)
                    .header("location", "/dashboard")
                    .header("set-cookie", "sessionid=sess42; Path=/; HttpOnly")
                    .body(axum::body::Body::empty())
                    .unwrap()
            }),
        )
        .route(
            "/dashboard",
            get(|State(s): State<Arc<AppState>>, headers: HeaderMap| async move {
                match cookie(&headers, "sessionid") {
                    Some(id) if s.sessions.lock().unwrap().contains_key(&id) => (StatusCode::OK, "Welcome. Sign out").into_response(),
                    _ => Response::builder().status(302).header("location", "/login").body(axum::body::Body::empty()).unwrap(),
                }
            }),
        )
        .route("/health", get(|| async { ([("content-type", "application/json")], r#"{"database":"prod-primary","version":"1.2.3"}"#) }))
        .route("/unavailable", get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }))
        .route("/echo-auth", get(|headers: HeaderMap| async move {
            let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            ([("x-echo", auth)], "echo")
        }))
        .route("/logout", get(|| async { "bye" }))
        .with_state(state)
}

fn recording_app(state: Arc<AppState>, redirect_to: Option<String>) -> Router {
    Router::new()
        .route(
            "/{*path}",
            get(|State(s): State<Arc<AppState>>, headers: HeaderMap, uri: axum::http::Uri| async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
                s.auth_seen.lock().unwrap().push((uri.path().to_string(), auth));
                match (&redirect_to, uri.path()) {
                    (Some(to), "/start") => Response::builder().status(302).header("location", to.as_str()).body(axum::body::Body::empty()).unwrap(),
                    (None, "/start") => Response::builder().status(302).header("location", "/landed").body(axum::body::Body::empty()).unwrap(),
                    _ => "landed".into_response(),
                }
            }),
        )
        .with_state(state)
}

fn entry(yaml: &str) -> Entry {
    let mut checks = canaryd::probe::check::load_checks_str(Path::new("test.yaml"), yaml)
        .unwrap_or_else(|e| panic!("{e}"));
    let check = checks.remove(0);
    let probe = canaryd::daemon::build_probe(&check).unwrap();
    Entry { check, probe }
}

async fn run(yaml: &str) -> CheckResult {
    let e = entry(yaml);
    run_once(&e, tokio::time::Instant::now()).await
}

fn everything_shown(r: &CheckResult) -> String {
    format!(
        "{}\n{}",
        canaryd::cli::trace("t", "http", r),
        canaryd::server::result_json(r)
    )
}

#[tokio::test]
async fn login_flow_with_csrf_cookie_and_secret_password_passes() {
    std::env::set_var("CANARYD_TEST_LOGIN_PW", "s3cret-canary-pw");
    let addr = start(login_app(Arc::default())).await;
    let r = run(&format!(
        r#"
checks:
  - name: login
    http:
      base_url: "http://{addr}"
      steps:
        - name: form
          request: {{url: /login}}
          expect: {{status: 200, cookie: csrftoken}}
          extract:
            csrf: {{css: 'input[name="csrfmiddlewaretoken"]', attr: value}}
        - name: submit
          request:
            method: POST
            url: /login
            form: {{csrfmiddlewaretoken: "${{csrf}}", password: "${{env:CANARYD_TEST_LOGIN_PW}}"}}
          expect: {{status: 200, body_contains: "Sign out", url: /dashboard}}
        - name: identity
          request: {{url: /health}}
          expect: {{json: {{"$.database": "prod-primary", "$.version": {{matches: '^1\.'}}}}}}
"#
    ))
    .await;
    assert!(r.success, "{}", everything_shown(&r));
    assert_eq!(r.steps.len(), 3);
    assert_eq!(r.steps[0].extracted, ["csrf"]);
    // The POST was redirected (302 → GET /dashboard) with the session cookie set on the redirect.
    assert_eq!(r.steps[1].hops.len(), 1);
    assert_eq!(r.steps[1].hops[0].status, 302);
    assert_eq!(r.steps[1].status, Some(200));
    assert!(r.steps[0].phases.connect > Duration::ZERO);
    let shown = everything_shown(&r);
    assert!(
        !shown.contains("s3cret-canary-pw") && !shown.contains("tok123"),
        "{shown}"
    );
}

#[tokio::test]
async fn wrong_password_fails_at_the_submit_step_and_names_it() {
    std::env::set_var("CANARYD_TEST_LOGIN_PW_WRONG", "not-the-password");
    let addr = start(login_app(Arc::default())).await;
    let r = run(&format!(
        r#"
checks:
  - name: login
    http:
      base_url: "http://{addr}"
      steps:
        - name: form
          request: {{url: /login}}
          extract:
            csrf: {{regex: 'name="csrfmiddlewaretoken" value="([^"]+)"'}}
        - name: submit
          request:
            method: POST
            url: /login
            form: {{csrfmiddlewaretoken: "${{csrf}}", password: "${{env:CANARYD_TEST_LOGIN_PW_WRONG}}"}}
          expect: {{body_contains: "Sign out"}}
        - name: dashboard
          request: {{url: /dashboard}}
        - name: logout
          always_run: true
          request: {{url: /logout}}
"#
    ))
    .await;
    assert!(!r.success);
    assert_eq!(r.reason, Some(Reason::Assertion));
    assert_eq!(
        r.message.as_deref(),
        Some(r#"step "submit": body does not contain "Sign out""#)
    );
    assert!(!r.steps[2].ran, "steps after a failure are skipped");
    assert!(
        r.steps[3].ran && r.steps[3].success,
        "always_run steps still run"
    );
}

#[tokio::test]
async fn missing_csrf_token_is_rejected_and_the_reason_says_so() {
    let addr = start(login_app(Arc::default())).await;
    let r = run(&format!(
        r#"
checks:
  - name: login
    http:
      base_url: "http://{addr}"
      steps:
        - name: submit
          request: {{method: POST, url: /login, form: {{password: x}}}}
          expect: {{status: 302}}
"#
    ))
    .await;
    assert_eq!(r.reason, Some(Reason::Status));
    assert_eq!(
        r.message.as_deref(),
        Some(r#"step "submit": expected status 302, got 403"#)
    );

    // A body assertion beside the status names the page that came back: the message lists every
    // failed assertion, the reason stays the first one's.
    let r = run(&format!(
        r#"
checks:
  - name: login
    http:
      base_url: "http://{addr}"
      steps:
        - name: submit
          request: {{method: POST, url: /login, form: {{password: x}}}}
          expect: {{status: 302, body_not_contains: "CSRF verification failed"}}
"#
    ))
    .await;
    assert_eq!(r.reason, Some(Reason::Status));
    assert_eq!(
        r.message.as_deref(),
        Some(
            r#"step "submit": expected status 302, got 403; body contains "CSRF verification failed""#
        )
    );
}

#[tokio::test]
async fn status_and_json_failures_have_clear_messages() {
    let addr = start(login_app(Arc::default())).await;
    let r = run(&format!("checks:\n  - name: down\n    http:\n      request: {{url: \"http://{addr}/unavailable\"}}\n")).await;
    assert_eq!(r.reason, Some(Reason::Status));
    assert_eq!(
        r.message.as_deref(),
        Some(r#"step "request": expected status 2xx, got 503"#)
    );

    let r = run(&format!(
        "checks:\n  - name: ident\n    http:\n      request: {{url: \"http://{addr}/health\"}}\n      expect: {{json: {{\"$.database\": \"prod-replica\"}}}}\n"
    ))
    .await;
    assert_eq!(r.reason, Some(Reason::Assertion));
    assert_eq!(
        r.message.as_deref(),
        Some(r#"step "request": expected $.database to be "prod-replica", got "prod-primary""#)
    );
}

#[tokio::test]
async fn a_missing_extraction_fails_with_reason_extraction_naming_variable_and_source() {
    let addr = start(login_app(Arc::default())).await;
    let r = run(&format!(
        "checks:\n  - name: x\n    http:\n      base_url: \"http://{addr}\"\n      steps:\n        - name: page\n          request: {{url: /health}}\n          extract:\n            token: {{json: \"$.token\"}}\n"
    ))
    .await;
    assert_eq!(r.reason, Some(Reason::Extraction));
    assert_eq!(
        r.message.as_deref(),
        Some(r#"step "page": could not extract token from json $.token"#)
    );
}

#[tokio::test]
async fn credentials_are_dropped_on_a_cross_host_redirect_and_kept_on_the_same_host() {
    std::env::set_var("CANARYD_TEST_BEARER", "bearer-canary-777");
    let other_state = Arc::new(AppState::default());
    let other = start(recording_app(other_state.clone(), None)).await;
    let first_state = Arc::new(AppState::default());
    let first = start(recording_app(
        first_state.clone(),
        Some(format!("http://{other}/elsewhere")),
    ))
    .await;
    let r = run(&format!(
        "checks:\n  - name: x\n    http:\n      request:\n        url: \"http://{first}/start\"\n        headers: {{Authorization: \"Bearer ${{env:CANARYD_TEST_BEARER}}\"}}\n"
    ))
    .await;
    assert!(r.success, "{}", everything_shown(&r));
    let seen_first = first_state.auth_seen.lock().unwrap().clone();
    assert_eq!(
        seen_first,
        vec![(
            "/start".to_string(),
            Some("Bearer bearer-canary-777".to_string())
        )]
    );
    let seen_other = other_state.auth_seen.lock().unwrap().clone();
    assert_eq!(
        seen_other,
        vec![("/elsewhere".to_string(), None)],
        "the other host must not get the token"
    );

    // Same host: the header follows the redirect.
    let same_state = Arc::new(AppState::default());
    let same = start(recording_app(same_state.clone(), None)).await;
    let r = run(&format!(
        "checks:\n  - name: x\n    http:\n      request:\n        url: \"http://{same}/start\"\n        headers: {{Authorization: \"Bearer ${{env:CANARYD_TEST_BEARER}}\"}}\n"
    ))
    .await;
    assert!(r.success);
    let seen = same_state.auth_seen.lock().unwrap().clone();
    assert_eq!(
        seen[1],
        (
            "/landed".to_string(),
            Some("Bearer bearer-canary-777".to_string())
        )
    );
}

#[tokio::test]
async fn a_secret_echoed_by_the_server_is_redacted_from_every_message() {
    std::env::set_var("CANARYD_TEST_ECHO_SECRET", "echo-canary-secret-31337");
    let addr = start(login_app(Arc::default())).await;
    let r = run(&format!(
        "checks:\n  - name: x\n    http:\n      request:\n        url: \"http://{addr}/echo-auth\"\n        headers: {{Authorization: \"${{env:CANARYD_TEST_ECHO_SECRET}}\"}}\n      expect: {{header: {{X-Echo: nope}}}}\n"
    ))
    .await;
    assert_eq!(r.reason, Some(Reason::Assertion));
    assert_eq!(
        r.message.as_deref(),
        Some(r#"step "request": expected header x-echo "nope", got "<redacted>""#)
    );
    let shown = everything_shown(&r);
    assert!(!shown.contains("echo-canary-secret-31337"), "{shown}");
    assert!(!format!("{r:?}").contains("echo-canary-secret-31337"));
}

#[tokio::test]
async fn redirect_limit_is_enforced() {
    let state = Arc::new(AppState::default());
    // /start redirects to itself forever.
    let looping = start(
        Router::new()
            .route(
                "/start",
                get(|| async {
                    Response::builder()
                        .status(302)
                        .header("location", "/start")
                        .body(axum::body::Body::empty())
                        .unwrap()
                }),
            )
            .with_state(state),
    )
    .await;
    let r = run(&format!("checks:\n  - name: x\n    http:\n      max_redirects: 3\n      request: {{url: \"http://{looping}/start\"}}\n")).await;
    assert_eq!(r.reason, Some(Reason::Protocol));
    assert_eq!(
        r.message.as_deref(),
        Some(r#"step "request": more than 3 redirects"#)
    );
    assert_eq!(r.steps[0].hops.len(), 3);
}

#[tokio::test]
async fn an_extracted_value_a_header_cannot_carry_fails_with_reason_extraction() {
    // The target hands out a token with a line break in it: a header injection attempt, or a
    // broken app. The next step must fail as an extraction problem, not an internal error.
    let app = Router::new().route(
        "/token",
        get(|| async { axum::Json(serde_json::json!({"token": "abc\r\nX-Injected: 1"})) }),
    );
    let addr = start(app).await;
    let r = run(&format!(
        "checks:\n  - name: x\n    http:\n      base_url: \"http://{addr}\"\n      steps:\n        - name: token\n          request: {{url: /token}}\n          extract:\n            token: {{json: \"$.token\"}}\n        - name: use\n          request: {{url: /token, headers: {{X-Token: \"${{token}}\"}}}}\n"
    ))
    .await;
    assert_eq!(r.reason, Some(Reason::Extraction), "{:?}", r.message);
    assert_eq!(
        r.message.as_deref(),
        Some("step \"use\": header x-token: the value after filling in variables is not a valid header value (a line break or control character)")
    );
}
