//! The operator view (`/ui/`) end to end, through the real `canaryd run` with a web
//! configuration holding a basic-auth user, on free loopback ports:
//!
//! - `demo-login`: the demo app's three-step login (the demo's own app, served by this test);
//! - `echo-api`: an HTTP check whose URL query and header carry a secret (`${env:...}`) and
//!   whose target (served by this test) echoes the secret back after a planted `<script>` in a
//!   header the check asserts on, so the failure message carries both; a label and an alert
//!   annotation carry `<script>` too, and its alert fires;
//! - `jobs`: a Sidekiq queue on a real redis-server with three waiting jobs;
//! - `nightly-backup`: a heartbeat check with a token, pinged with a body holding a `<script>`.
//!
//! In Chromium (playwright-core, axe-core; `tests/browser/operator_view.mjs`) with the user's
//! credentials: every page at 1280 and 375 px (no console errors, no serious axe violations, no
//! sideways scrolling, screenshots under `target/test-artefacts/operator_view/`), the login
//! check's waterfall (its three steps, the phase labels, bars), the last runs, a silence added
//! through the form (listed, its alert shown silenced), then expired through its button (gone).
//! Over plain HTTP: every page is 401 without credentials and shows nothing, forms are refused
//! without credentials and from another site; the secret appears on no page in any encoding;
//! every planted `<script>` shows escaped; every answer carries the security headers.

mod services;

#[path = "../examples/demo/app.rs"]
#[allow(dead_code)]
mod app;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use services::{http_request, require, Canaryd, HttpResponse, Redis};

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery staple";
/// The secret the echo check sends (query and header) and the heartbeat's token: on no page,
/// in no encoding.
const SECRET: &str = "opview+Canary/S3cret:42";
/// The CSP of every page.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// Every page of the operator view (check pages are added per check).
const PAGES: [&str; 5] = [
    "/ui/",
    "/ui/alerts",
    "/ui/silences",
    "/ui/heartbeats",
    "/ui/queues",
];
const CHECKS: [&str; 4] = ["demo-login", "echo-api", "jobs", "nightly-backup"];

/// Polls `done` every 100 ms until it holds, for at most `within`.
fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        data_encoding::BASE64.encode(format!("{user}:{password}").as_bytes())
    )
}

/// What the echo target was sent: (query `key`, header `X-Api-Key`).
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// Everything one test runs: the demo app and the echo target (on a tokio runtime of the
/// test's), redis-server, and canaryd.
struct Fixture {
    canaryd: Canaryd,
    seen: Seen,
    auth: String,
    _redis: Redis,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

/// The echo target: 200 with `X-Note` holding a planted `<script>` and the `key` it was sent.
fn echo_router(seen: Seen) -> axum::Router {
    use axum::extract::{Query, State};
    use axum::http::HeaderMap;
    use axum::response::IntoResponse;
    async fn echo(
        State(seen): State<Seen>,
        Query(q): Query<std::collections::HashMap<String, String>>,
        headers: HeaderMap,
    ) -> axum::response::Response {
        let key = q.get("key").cloned().unwrap_or_default();
        let header = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        seen.lock().unwrap().push((key.clone(), header));
        let note = format!("<script>window.__pwned=1</script> key={key}");
        (
            [("x-note", note.clone())],
            format!("echo: {note} <img src=x onerror=\"window.__pwned=9\">"),
        )
            .into_response()
    }
    axum::Router::new()
        .route("/echo", axum::routing::get(echo))
        .with_state(seen)
}

fn serve(runtime: &tokio::runtime::Runtime, router: axum::Router) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        axum::serve(listener, router).await.expect("serve");
    });
    addr
}

fn checks_yaml(app: SocketAddr, echo: SocketAddr, redis: &str) -> String {
    format!(
        r#"checks:
  - name: demo-login
    interval: 1s
    timeout: 900ms
    labels: {{team: web}}
    http:
      base_url: "http://{app}"
      steps:
        - name: form
          request: {{url: /accounts/login/}}
          expect: {{status: 200, cookie: csrftoken}}
          extract:
            csrf: {{css: 'input[name="csrfmiddlewaretoken"]', attr: value}}
        - name: submit
          request:
            method: POST
            url: /accounts/login/
            form:
              username: probe@example.com
              password: "${{env:DEMO_PASSWORD}}"
              csrfmiddlewaretoken: "${{csrf}}"
            headers: {{Referer: "${{base_url}}/accounts/login/"}}
            follow_redirects: false
          expect:
            status: 302
            header: {{Location: "/dashboard/"}}
        - name: dashboard
          request: {{url: /dashboard/}}
          expect:
            status: 200
            body_contains: "Sign out"
    alerts:
      - name: LoginFailing
        when: failed
        consecutive: 2
        severity: critical
        annotations: {{summary: "Login broken at step ${{failed_step}}: ${{reason}}"}}

  - name: echo-api
    interval: 1s
    timeout: 900ms
    labels: {{team: "<script>window.__pwned=5</script>"}}
    http:
      request:
        url: "http://{echo}/echo?key=${{env:OPVIEW_SECRET}}"
        headers: {{X-Api-Key: "${{env:OPVIEW_SECRET}}"}}
      expect:
        status: 200
        header: {{X-Note: fine}}
    alerts:
      - name: EchoFailing
        when: failed
        severity: warning
        annotations: {{summary: "<script>window.__pwned=2</script> echo broken: ${{reason}}"}}

  - name: jobs
    interval: 1s
    timeout: 900ms
    queue:
      system: sidekiq
      redis: "{redis}"
      queues: [default]

  - name: nightly-backup
    heartbeat:
      every: 1h
      token: "${{env:OPVIEW_SECRET}}"
"#
    )
}

impl Fixture {
    /// Everything started; `None` when redis-server is missing outside CI.
    fn start() -> Option<Fixture> {
        require("chromium")?;
        require("node")?;
        let redis = Redis::start()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let app = serve(
            &runtime,
            app::router(Arc::new(app::Controls::default())).expect("demo app"),
        );
        let seen = Seen::default();
        let echo = serve(&runtime, echo_router(seen.clone()));
        // Three waiting jobs, the oldest enqueued a minute ago.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        for (i, age) in [60.0, 30.0, 5.0].iter().enumerate() {
            let job = format!(
                r#"{{"class":"Mailer","args":[],"jid":"j{i}","enqueued_at":{}}}"#,
                now - age
            );
            redis.cmd(&["LPUSH", "queue:default", &job]);
        }
        redis.cmd(&["SADD", "queues", "default"]);

        let dir = tempfile::tempdir().expect("tempdir");
        let port = services::free_port();
        let addr = format!("127.0.0.1:{port}");
        std::fs::write(
            dir.path().join("checks.yaml"),
            checks_yaml(app, echo, &format!("{}/0", redis.url())),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("canaryd.yaml"),
            format!("listen: {addr}\nstate_dir: state\ncheck_files: [checks.yaml]\n"),
        )
        .unwrap();
        let hash = bcrypt::hash(PASSWORD, 4).unwrap();
        std::fs::write(
            dir.path().join("web.yml"),
            format!("basic_auth_users:\n  {USER}: {hash}\n"),
        )
        .unwrap();
        let mut cmd = services::canaryd_run(&dir.path().join("canaryd.yaml"));
        cmd.arg("--web.config.file")
            .arg(dir.path().join("web.yml"))
            .env("DEMO_PASSWORD", app::PASSWORD)
            .env("OPVIEW_SECRET", SECRET);
        let canaryd = Canaryd::start(cmd, &addr).unwrap_or_else(|e| panic!("canaryd: {e}"));
        let f = Fixture {
            canaryd,
            seen,
            auth: basic(USER, PASSWORD),
            _redis: redis,
            _runtime: runtime,
            _dir: dir,
        };
        // The job's ping: a log long enough to scroll in its box, a planted script, the token.
        let mut log: String = (0..80)
            .map(|i| format!("line {i}: copying files\n"))
            .collect();
        log.push_str(&format!(
            "<script>window.__pwned=3</script> backup done, token {SECRET}\n"
        ));
        let ping = f.request(
            "POST",
            "/ping/nightly-backup/0",
            &[("Authorization", &format!("Bearer {SECRET}"))],
            Some(log.as_bytes()),
            false,
        );
        assert_eq!(ping.status, 200, "{}", ping.text());
        Some(f)
    }

    /// A request to canaryd, with the user's credentials when `authenticated`.
    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        authenticated: bool,
    ) -> HttpResponse {
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if authenticated {
            all.push(("Authorization", &self.auth));
        }
        http_request(method, &self.canaryd.url(path), &all, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    fn get(&self, path: &str) -> HttpResponse {
        self.request("GET", path, &[], None, true)
    }

    /// The API's view of one check.
    fn check(&self, name: &str) -> Value {
        self.get(&format!("/api/v1/checks/{name}")).json()
    }

    /// Waits until every check ran as expected: the login passed at least twice, the echo
    /// check failed with the secret delivered, the queue was read, the echo alert fires.
    fn wait_until_settled(&self) {
        wait_for(
            "demo-login to pass twice and the others to run",
            Duration::from_secs(20),
            || {
                let login = self.check("demo-login");
                let echo = self.check("echo-api");
                let jobs = self.check("jobs");
                login["last_result"]["success"] == true
                    && echo["last_result"]["success"] == false
                    && jobs["last_result"]["queues"].is_array()
                    && self
                        .get("/ui/checks/demo-login")
                        .text()
                        .matches("class=\"wf-row\"")
                        .count()
                        >= 3 + 2
            },
        );
        wait_for("EchoFailing to fire", Duration::from_secs(10), || {
            self.get("/api/v1/alerts").json()["alerts"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|a| a["alert"] == "EchoFailing" && a["state"] == "firing")
        });
    }

    fn silences(&self) -> Vec<Value> {
        self.get("/api/v1/silences").json()["silences"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn all_pages(&self) -> Vec<String> {
        PAGES
            .iter()
            .map(|p| p.to_string())
            .chain(CHECKS.iter().map(|c| format!("/ui/checks/{c}")))
            .collect()
    }
}

/// Where this test's screenshots go.
fn artefacts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artefacts/operator_view")
}

/// Runs a page script with `input` as its argument; its last stdout line, as JSON.
fn run_script(script: &str, input: &Value) -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("node")
        .arg(root.join("tests/browser").join(script))
        .arg(input.to_string())
        .env(
            "CANARYD_NODE_MODULES",
            root.join("scripts/lib/node/node_modules"),
        )
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("{script}: not JSON ({e}): {stdout}\n{stderr}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
        .collect()
}

#[test]
fn in_chromium_the_pages_show_the_waterfall_and_silences_are_added_and_expired() {
    let Some(f) = Fixture::start() else { return };
    f.wait_until_settled();
    let out = run_script(
        "operator_view.mjs",
        &serde_json::json!({
            "base": f.canaryd.url(""),
            "user": USER,
            "password": PASSWORD,
            "pages": f.all_pages(),
            "artefacts": artefacts(),
        }),
    );
    let log = || f.canaryd.log_tail(30);

    // Every page, at both widths: no console errors, no serious axe violation, no sideways
    // scrolling, nothing executed.
    for page in out["pages"].as_array().expect("pages") {
        let name = page["name"].as_str().unwrap_or("?");
        assert_eq!(page["status"], 200, "{name}: {page}");
        assert!(
            strings(&page["problems"]).is_empty(),
            "{name}: {}",
            page["problems"]
        );
        assert!(strings(&page["axe"]).is_empty(), "{name}: {}", page["axe"]);
        assert_eq!(page["overflows"], false, "{name} scrolls sideways");
        assert_eq!(page["pwned"], Value::Null, "{name}: a planted script ran");
        assert_eq!(page["scripts"], 0, "{name}: a script element in the page");
        assert!(Path::new(page["screenshot"].as_str().unwrap()).is_file());
    }
    // Both widths, the silences with one listed, and the alerts after the silence flow.
    assert_eq!(
        out["pages"].as_array().unwrap().len(),
        2 * f.all_pages().len() + 2
    );
    assert!(strings(&out["dialogs"]).is_empty(), "{}", out["dialogs"]);

    // The overview lists every check, failing first.
    let overview = &out["overview"];
    let rank = |status: &str| {
        ["fail", "not run yet", "pass"]
            .iter()
            .position(|s| *s == status)
    };
    let ranks: Vec<Option<usize>> = strings(&overview["statuses"])
        .iter()
        .map(|s| rank(s))
        .collect();
    assert!(ranks.iter().all(Option::is_some), "{overview}");
    assert!(
        ranks.windows(2).all(|w| w[0] <= w[1]),
        "failing first: {overview}"
    );
    let echo_row = strings(&overview["checks"])
        .iter()
        .position(|c| c == "echo-api");
    assert_eq!(
        strings(&overview["statuses"])[echo_row.unwrap()],
        "fail",
        "{overview}"
    );
    let mut listed = strings(&overview["checks"]);
    listed.sort();
    assert_eq!(listed, CHECKS.map(String::from).to_vec(), "{overview}");
    assert!(overview["text"].as_str().unwrap().contains("EchoFailing"));

    // The login check's waterfall: its three steps, the phase labels, bars with width.
    let w = &out["waterfall"];
    assert_eq!(strings(&w["steps"]), ["form", "submit", "dashboard"], "{w}");
    for label in ["DNS", "connect", "TLS", "processing", "transfer"] {
        assert!(
            strings(&w["legend"]).contains(&label.to_string()),
            "{label}: {w}"
        );
    }
    for (i, bars) in w["phase_bars_per_step"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        assert!(
            bars.as_u64().unwrap() >= 2,
            "step {i}: connect and processing at least: {w}"
        );
    }
    assert!(w["widest_bar_px"].as_f64().unwrap() > 20.0, "{w}");
    assert!(w["runs"].as_u64().unwrap() >= 2, "last runs: {w}");
    assert!(
        w["table_text"].as_str().unwrap().contains("processing"),
        "{w}"
    );

    // The echo check's message: the planted script as text, the secret redacted.
    let echo = out["echo_text"].as_str().unwrap();
    assert!(echo.contains("<script>window.__pwned=1</script>"), "{echo}");
    assert!(echo.contains("<redacted>"), "{echo}");

    // The silence: added through the form, listed, its alert silenced; expired, gone.
    let s = &out["silence"];
    assert_eq!(s["add_status"], 303, "{s}");
    assert_eq!(s["after_add_url"], f.canaryd.url("/ui/silences"), "{s}");
    assert!(
        s["listed"].as_str().unwrap().contains("check=echo-api"),
        "{s}"
    );
    assert!(
        s["listed"].as_str().unwrap().contains("<b>maintenance</b>"),
        "comment escaped: {s}"
    );
    assert_eq!(s["alert_silenced"], true, "{s}\n{}", log());
    assert_eq!(s["expire_status"], 303, "{s}");
    assert_eq!(s["after_expire_url"], f.canaryd.url("/ui/silences"), "{s}");
    assert_eq!(s["gone"], true, "{s}");
    assert_eq!(s["alert_unsilenced"], true, "{s}");
    let silences = f.silences();
    assert_eq!(silences.len(), 1, "{silences:?}");
    assert_eq!(silences[0]["created_by"], USER);
    assert_eq!(silences[0]["state"], "expired");
    assert_eq!(silences[0]["matchers"]["alertname"], "EchoFailing");
}

#[test]
fn without_credentials_nothing_shows_and_forged_forms_are_refused() {
    let Some(f) = Fixture::start() else { return };
    // Every page: 401 without credentials or with a wrong password, and nothing of the page.
    let mut paths = f.all_pages();
    paths.extend(["/".to_string(), "/ui/static/ui.css".to_string()]);
    for path in &paths {
        for auth in [
            None,
            Some(basic(USER, "wrong")),
            Some(basic("mallory", PASSWORD)),
        ] {
            let headers: Vec<(&str, &str)> =
                auth.iter().map(|a| ("Authorization", a.as_str())).collect();
            let r = f.request("GET", path, &headers, None, false);
            assert_eq!(r.status, 401, "GET {path} {auth:?}: {}", r.text());
            let text = r.text();
            for leak in ["<html", "demo-login", "echo-api", "nightly", "canaryd</a>"] {
                assert!(!text.contains(leak), "GET {path}: {leak} in {text}");
            }
        }
    }
    // With credentials: `/` leads to the overview.
    let root = f.get("/");
    assert_eq!(root.status, 303);
    assert_eq!(root.header("location"), Some("/ui/"));

    let host = f.canaryd.addr().to_string();
    let own_origin = format!("http://{host}");
    let form = b"matchers=check%3Decho-api&duration=1h&created_by=alice&comment=forged";
    let form_type = ("Content-Type", "application/x-www-form-urlencoded");
    let post = |path: &str, headers: &[(&str, &str)], authenticated: bool| {
        let mut all = vec![form_type];
        all.extend_from_slice(headers);
        f.request("POST", path, &all, Some(form), authenticated)
    };
    let same_origin = [
        ("Origin", own_origin.as_str()),
        ("Sec-Fetch-Site", "same-origin"),
    ];
    // Without credentials, even from canaryd's own page: 401.
    let r = post("/ui/silences", &same_origin, false);
    assert_eq!(r.status, 401, "{}", r.text());
    // With credentials, from another site (the browser would send them): 403.
    for forged in [
        &[
            ("Origin", "http://evil.example"),
            ("Sec-Fetch-Site", "cross-site"),
        ][..],
        &[("Origin", "http://evil.example")],
        &[("Sec-Fetch-Site", "cross-site")],
        &[("Origin", "null")],
        // No proof of the page it came from.
        &[],
    ] {
        let r = post("/ui/silences", forged, true);
        assert_eq!(r.status, 403, "{forged:?}: {}", r.text());
        // The API refuses a form of any origin.
        let r = post("/api/v1/silences", &same_origin, true);
        assert_eq!(r.status, 403, "{}", r.text());
    }
    assert!(f.silences().is_empty(), "{:?}", f.silences());

    // From canaryd's own page with credentials: added (so the refusals above were the policy's).
    let r = post("/ui/silences", &same_origin, true);
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/ui/silences"));
    let silences = f.silences();
    assert_eq!(silences.len(), 1);
    let id = silences[0]["id"].as_str().unwrap().to_string();
    assert_eq!(silences[0]["state"], "active");
    // Expiring: refused cross-site and without credentials, done from the own page.
    let expire = format!("/ui/silences/{id}/expire");
    for (headers, authenticated, status) in [
        (
            &[
                ("Origin", "http://evil.example"),
                ("Sec-Fetch-Site", "cross-site"),
            ][..],
            true,
            403,
        ),
        (&same_origin[..], false, 401),
    ] {
        let r = f.request("POST", &expire, headers, None, authenticated);
        assert_eq!(r.status, status, "{headers:?}: {}", r.text());
        assert_eq!(f.silences()[0]["state"], "active");
    }
    let r = f.request("POST", &expire, &same_origin, None, true);
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(f.silences()[0]["state"], "expired");
    // A bad form: 400 with the form and what is wrong, nothing added.
    let r = f.request(
        "POST",
        "/ui/silences",
        &[form_type, same_origin[0], same_origin[1]],
        Some(b"matchers=check%3Dx&duration=forever&created_by=a&comment=c"),
        true,
    );
    assert_eq!(r.status, 400);
    assert!(r.text().contains("duration: invalid"), "{}", r.text());
    assert_eq!(f.silences().len(), 1);

    // Every refusal is counted under the operator view's route pattern.
    let metrics = f.get("/metrics").text();
    let count = |handler: &str, code: u16| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with("canaryd_http_requests_total{"))
            .filter(|l| {
                l.contains(&format!("handler=\"{handler}\""))
                    && l.contains(&format!("code=\"{code}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(count("/ui/silences", 403), 5.0, "{metrics}");
    assert_eq!(count("/ui/silences", 303), 1.0, "{metrics}");
    assert_eq!(count("/ui/silences/{id}/expire", 403), 1.0, "{metrics}");
    assert_eq!(count("/ui/checks/{check}", 401), 12.0, "{metrics}");
}

#[test]
fn no_page_shows_the_secret_and_planted_markup_shows_escaped() {
    let Some(f) = Fixture::start() else { return };
    f.wait_until_settled();
    // The secret reached the target both ways, and came back in the header the check reads.
    {
        let seen = f.seen.lock().unwrap();
        assert!(
            seen.iter().any(|(q, h)| q == SECRET && h == SECRET),
            "the target never got the secret: {seen:?}"
        );
    }
    let encodings = [
        SECRET.to_string(),
        "S3cret".to_string(),
        services::urlencode(SECRET),
        services::urlencode(SECRET).to_ascii_lowercase(),
        SECRET
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace(':', "%3A"),
        data_encoding::BASE64.encode(SECRET.as_bytes()),
        data_encoding::BASE64URL_NOPAD.encode(SECRET.as_bytes()),
        data_encoding::BASE64.encode(format!("key={SECRET}").as_bytes()),
    ];
    let mut seen_markers = Vec::new();
    for path in f.all_pages() {
        let r = f.get(&path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(
            r.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        assert_eq!(r.header("content-security-policy"), Some(CSP), "{path}");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(r.header("referrer-policy"), Some("same-origin"), "{path}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
        let html = r.text();
        for e in &encodings {
            assert!(!html.contains(e.as_str()), "{path} shows the secret as {e}");
        }
        assert!(
            !html.to_ascii_lowercase().contains("<script"),
            "{path}: a script element"
        );
        assert!(!html.contains("<img"), "{path}: markup from the target");
        assert!(!html.contains(" style="), "{path}: an inline style");
        for marker in 1..=5 {
            if html.contains(&format!(
                "&lt;script&gt;window.__pwned={marker}&lt;/script&gt;"
            )) {
                seen_markers.push(marker);
            }
        }
        if path == "/ui/checks/echo-api" {
            assert!(
                html.contains("&lt;redacted&gt;"),
                "the echoed secret, redacted: {html}"
            );
        }
    }
    seen_markers.sort();
    seen_markers.dedup();
    // 1: the check's message, 2: the alert's annotation, 3: the ping body, 5: a label.
    assert_eq!(seen_markers, [1, 2, 3, 5], "planted scripts shown as text");
    let css = f.get("/ui/static/ui.css");
    assert_eq!(css.status, 200);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(css.header("content-security-policy"), Some(CSP));
    // The heartbeat's token in its ping body was stored redacted; the page says a token is
    // required and shows the ping.
    let hb = f.get("/ui/heartbeats").text();
    assert!(hb.contains("backup done, token &lt;redacted&gt;"), "{hb}");
    // The queue: depth and oldest age.
    let queues = f.get("/ui/queues").text();
    assert!(queues.contains("default"), "{queues}");
    assert!(queues.contains("waiting <strong>3</strong>"), "{queues}");
    // The oldest of the three jobs was enqueued a minute before canaryd started.
    let age: u64 = queues
        .split("data-label=\"Queue\">default</td>")
        .nth(1)
        .and_then(|row| row.split("data-label=\"Oldest waiting\">").nth(1))
        .into_iter()
        .flat_map(|rest| rest.split(' ').next())
        .find_map(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no oldest age: {queues}"));
    assert!((60..120).contains(&age), "{age}: {queues}");
}
