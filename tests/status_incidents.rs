//! The status page's engine end to end through `canaryd run`: a failing check turns its
//! component to outage and opens an incident by itself within one interval plus a second; the
//! public listener never shows a check name, a URL, a failure message or a secret; operators
//! post updates and open incidents with `canaryd incident`; the fix resolves the automatic
//! incident; a restart keeps incidents and history; a reload renames components or is refused.

mod services;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use services::{canaryd_run, free_port, http_get, http_post, Canaryd, Target};

const SECRET: &str = "s3cr3t-Status-Canary-7f3a";

fn wait(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    t.elapsed()
}

fn json(url: &str) -> Value {
    let r = http_get(url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(r.status, 200, "GET {url}: {}", r.text());
    r.json()
}

fn write_config(dir: &Path, api: &str, status: u16, target: &str, extra_component: &str) {
    std::fs::write(
        dir.join("checks.yaml"),
        format!(
            r#"checks:
  - name: shop-login-internal
    interval: 1s
    timeout: 800ms
    http:
      request:
        url: "http://{target}/login?token=${{env:STATUS_CANARY_SECRET}}"
        headers: {{X-Api-Key: "${{env:STATUS_CANARY_SECRET}}"}}
      expect: {{status: 200}}
    alerts:
      - name: LoginDownInternal
        when: failed
        severity: critical
  - name: shop-api-internal
    interval: 1s
    tcp: {{target: "{target}"}}
"#
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("canaryd.yaml"),
        format!(
            r#"listen: {api}
state_dir: state
check_files: [checks.yaml]
status_page:
  listen: 127.0.0.1:{status}
  title: Shop
  public_url: https://status.shop.example
  components:
    - name: Sign-in
      description: Signing in to the shop.
      checks: [shop-login-internal]
      incident:
        alerts: [LoginDownInternal]
        title: "${{component}} is failing"
        message: "Customers cannot use ${{component}}; we are on it."
        resolved_message: "${{component}} is back."
{extra_component}"#
        ),
    )
    .unwrap();
}

fn start(dir: &Path, api: &str) -> Canaryd {
    let mut cmd = canaryd_run(&dir.join("canaryd.yaml"));
    cmd.env("STATUS_CANARY_SECRET", SECRET);
    Canaryd::start(cmd, api).unwrap_or_else(|e| panic!("{e}"))
}

fn incident_cli(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .arg("incident")
        .args(args)
        .arg("--config")
        .arg(dir.join("canaryd.yaml"))
        .env("STATUS_CANARY_SECRET", SECRET)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Every public document: the page, the incident pages, the feed, the JSON, a 404.
fn public_documents(base: &str) -> Vec<(String, String)> {
    let mut paths: Vec<String> = [
        "/",
        "/history.atom",
        "/api/v2/summary.json",
        "/api/v2/status.json",
        "/api/v2/components.json",
        "/api/v2/incidents.json",
        "/api/v2/incidents/unresolved.json",
        "/api/v2/scheduled-maintenances.json",
        "/static/status.css",
        "/no/such/page",
    ]
    .iter()
    .map(|p| p.to_string())
    .collect();
    for i in json(&format!("{base}/api/v2/incidents.json"))["incidents"]
        .as_array()
        .unwrap()
    {
        paths.push(format!("/incidents/{}", i["id"].as_str().unwrap()));
    }
    paths
        .into_iter()
        .map(|p| {
            let r = http_get(&format!("{base}{p}")).unwrap();
            (p, r.text())
        })
        .collect()
}

fn b64(s: &str) -> String {
    use std::fmt::Write as _;
    // Standard base64 without a crate: enough for a canary search.
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                let _ = write!(out, "{}", T[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
    }
    out
}

#[test]
fn a_failing_check_opens_an_incident_that_operators_update_and_the_fix_resolves() {
    let target = Target::start();
    let dir = tempfile::tempdir().unwrap();
    let api = format!("127.0.0.1:{}", free_port());
    let status_port = free_port();
    let base = format!("http://127.0.0.1:{status_port}");
    write_config(dir.path(), &api, status_port, &target.addr, "");
    let mut daemon = start(dir.path(), &api);
    wait(
        "the page to see the check pass",
        Duration::from_secs(10),
        || {
            http_get(&format!("{base}/api/v2/components.json")).is_ok_and(|r| {
                r.status == 200 && r.json()["components"][0]["status"] == "operational"
            })
        },
    );
    let summary = json(&format!("{base}/api/v2/summary.json"));
    assert_eq!(summary["status"]["indicator"], "none", "{summary}");
    assert_eq!(summary["status"]["description"], "All Systems Operational");

    // Broken: the component is in major outage and the incident is open within one interval
    // (1 s) plus the page's one-second tick.
    target.set_broken(true);
    let took = wait("the automatic incident", Duration::from_secs(10), || {
        json(&format!("{base}/api/v2/incidents/unresolved.json"))["incidents"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    });
    assert!(
        took <= Duration::from_millis(2500),
        "the incident took {took:?}: more than one interval plus a second (and scheduling slack)"
    );
    let summary = json(&format!("{base}/api/v2/summary.json"));
    assert_eq!(
        summary["components"][0]["status"], "major_outage",
        "{summary}"
    );
    assert_eq!(summary["status"]["indicator"], "critical", "{summary}");
    let incident = &summary["incidents"][0];
    assert_eq!(incident["name"], "Sign-in is failing");
    assert_eq!(incident["status"], "investigating");
    assert_eq!(
        incident["incident_updates"][0]["body"],
        "Customers cannot use Sign-in; we are on it."
    );
    let id = incident["id"].as_str().unwrap().to_string();

    // Nothing private is public: not the check's name, its URL, its failure message, the
    // alert's name, nor the secret in any encoding.
    let forbidden = [
        "shop-login-internal".to_string(),
        "shop-api-internal".to_string(),
        "LoginDownInternal".to_string(),
        target.addr.clone(),
        "database is down".to_string(),
        SECRET.to_string(),
        services::urlencode(SECRET),
        b64(SECRET),
    ];
    for (path, text) in public_documents(&base) {
        for f in &forbidden {
            assert!(!text.contains(f.as_str()), "{path} shows {f:?}:\n{text}");
        }
    }

    // Operators post an update and open an incident of their own through the CLI.
    let (ok, out) = incident_cli(
        dir.path(),
        &[
            "update",
            &id,
            "--state",
            "identified",
            "--message",
            "A certificate expired; renewing it.",
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("(identified, impact critical)"), "{out}");
    let (ok, out) = incident_cli(
        dir.path(),
        &[
            "open",
            "--title",
            "Slow order emails",
            "--message",
            "Order confirmations arrive late.",
            "--impact",
            "minor",
            "--component",
            "Sign-in",
        ],
    );
    assert!(ok, "{out}");
    let by_hand: String = out
        .split_whitespace()
        .nth(2)
        .unwrap()
        .trim_end_matches(':')
        .to_string();
    let (ok, out) = incident_cli(
        dir.path(),
        &[
            "open",
            "--title",
            "x",
            "--message",
            "y",
            "--component",
            "Payments",
        ],
    );
    assert!(!ok, "an unknown component must be refused");
    assert!(
        out.contains("no component named \"Payments\" on the status page"),
        "{out}"
    );
    let (ok, out) = incident_cli(
        dir.path(),
        &["update", "999", "--state", "monitoring", "-m", "x"],
    );
    assert!(!ok && out.contains("404"), "{out}");
    let page = http_get(&format!("{base}/incidents/{id}")).unwrap().text();
    assert!(
        page.contains("A certificate expired; renewing it."),
        "{page}"
    );
    assert!(page.contains("Identified"), "{page}");

    // Fixed: the automatic incident resolves with its text; the operator's stays open.
    target.set_broken(false);
    wait(
        "the automatic incident to resolve",
        Duration::from_secs(10),
        || {
            json(&format!("{base}/api/v2/incidents/unresolved.json"))["incidents"]
                .as_array()
                .is_some_and(|a| a.len() == 1 && a[0]["id"] == by_hand.as_str())
        },
    );
    let all = json(&format!("{base}/api/v2/incidents.json"));
    let auto = all["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id.as_str())
        .unwrap();
    assert_eq!(auto["status"], "resolved");
    assert_eq!(auto["incident_updates"][0]["body"], "Sign-in is back.");
    assert_eq!(auto["incident_updates"].as_array().unwrap().len(), 3);
    let (ok, out) = incident_cli(
        dir.path(),
        &["resolve", &by_hand, "-m", "Emails are on time."],
    );
    assert!(ok, "{out}");
    let (ok, out) = incident_cli(dir.path(), &["list"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("Slow order emails") && out.contains("Sign-in is failing"),
        "{out}"
    );

    // A restart keeps incidents and today's history (the outage shows in the uptime).
    daemon.stop(Duration::from_secs(10));
    let daemon = start(dir.path(), &api);
    wait(
        "the page after the restart",
        Duration::from_secs(10),
        || {
            http_get(&format!("{base}/api/v2/incidents.json")).is_ok_and(|r| {
                r.status == 200
                    && r.json()["incidents"]
                        .as_array()
                        .is_some_and(|a| a.len() == 2)
            })
        },
    );
    let html = http_get(&format!("{base}/")).unwrap().text();
    assert!(
        html.contains("Sign-in is back."),
        "past incidents are kept:\n{html}"
    );
    assert!(
        !html.contains("100 % uptime") && html.contains("% uptime"),
        "the outage counts in the uptime after a restart:\n{html}"
    );

    // A reload adds a component; a reload naming an unknown check is refused and changes nothing.
    write_config(
        dir.path(),
        &api,
        status_port,
        &target.addr,
        "    - name: API\n      checks: [shop-api-internal]\n",
    );
    let r = http_post(&daemon.url("/-/reload"), "application/json", b"").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    wait("the new component", Duration::from_secs(5), || {
        json(&format!("{base}/api/v2/components.json"))["components"]
            .as_array()
            .is_some_and(|c| c.len() == 2 && c[1]["name"] == "API")
    });
    write_config(
        dir.path(),
        &api,
        status_port,
        &target.addr,
        "    - name: API\n      checks: [shop-api-typo]\n",
    );
    let r = http_post(&daemon.url("/-/reload"), "application/json", b"").unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains(
            "component \"API\" lists \"shop-api-typo\", which is not a check in this configuration"
        ),
        "{}",
        r.text()
    );
    assert_eq!(
        json(&format!("{base}/api/v2/components.json"))["components"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    drop(daemon);
}

#[test]
fn the_incident_api_refuses_bad_input_and_answers_404_without_a_status_page() {
    let dir = tempfile::tempdir().unwrap();
    let api = format!("127.0.0.1:{}", free_port());
    std::fs::write(dir.path().join("canaryd.yaml"), format!("listen: {api}\n")).unwrap();
    let daemon = Canaryd::start(canaryd_run(&dir.path().join("canaryd.yaml")), &api).unwrap();
    let r = http_get(&daemon.url("/api/v1/incidents")).unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "no status_page in the configuration");
    drop(daemon);

    let target = Target::start();
    let status_port = free_port();
    write_config(dir.path(), &api, status_port, &target.addr, "");
    let daemon = start(dir.path(), &api);
    for (body, says) in [
        (r#"{"title":"","message":"x"}"#, "title: must not be empty"),
        (
            r#"{"title":"x","message":"y","state":"resolved"}"#,
            "a new incident cannot be resolved",
        ),
        (
            r#"{"title":"x","message":"y","impact":"huge"}"#,
            "impact: \"huge\" is not one of",
        ),
        (
            r#"{"title":"x\u0007","message":"y"}"#,
            "title: must not hold control characters",
        ),
        (
            r#"{"title":"x","message":"y","extra":1}"#,
            "unknown field `extra`",
        ),
        ("not json", "invalid incident"),
    ] {
        let r = http_post(
            &daemon.url("/api/v1/incidents"),
            "application/json",
            body.as_bytes(),
        )
        .unwrap();
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(
            r.json()["error"].as_str().unwrap().contains(says),
            "{body}: {}",
            r.text()
        );
    }
    let long = format!(r#"{{"title":"{}","message":"y"}}"#, "x".repeat(201));
    let r = http_post(
        &daemon.url("/api/v1/incidents"),
        "application/json",
        long.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("201 characters, at most 200"),
        "{}",
        r.text()
    );
    let r = http_post(
        &daemon.url("/api/v1/incidents"),
        "application/json",
        br#"{"title":"Maintenance tonight","message":"Checkout pauses 22:00-22:15 UTC.","impact":"none"}"#,
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_i64().unwrap();
    let r = http_post(
        &daemon.url(&format!("/api/v1/incidents/{id}/updates")),
        "application/json",
        br#"{"state":"paused","message":"x"}"#,
    )
    .unwrap();
    assert_eq!(r.status, 400);
    let r = http_get(&daemon.url(&format!("/api/v1/incidents/{id}"))).unwrap();
    assert_eq!(r.json()["title"], "Maintenance tonight");
    assert_eq!(
        http_get(&daemon.url("/api/v1/incidents/77"))
            .unwrap()
            .status,
        404
    );
    assert_eq!(
        http_get(&daemon.url("/api/v1/incidents/abc"))
            .unwrap()
            .status,
        404
    );
    // The public listener answers nothing of the API.
    let r = http_get(&format!("http://127.0.0.1:{status_port}/api/v1/incidents")).unwrap();
    assert_eq!(r.status, 404);
    let r = http_get(&format!("http://127.0.0.1:{status_port}/metrics")).unwrap();
    assert_eq!(r.status, 404);
}

#[test]
fn the_public_listener_drops_a_client_that_never_finishes_its_request() {
    use std::io::{Read, Write};
    let target = Target::start();
    let dir = tempfile::tempdir().unwrap();
    let api = format!("127.0.0.1:{}", free_port());
    let status_port = free_port();
    write_config(dir.path(), &api, status_port, &target.addr, "");
    let _daemon = start(dir.path(), &api);
    let base = format!("http://127.0.0.1:{status_port}");
    wait("the status page", Duration::from_secs(10), || {
        http_get(&format!("{base}/-/healthy")).is_ok_and(|r| r.status == 200)
    });
    // A slowloris client: half a request head, then nothing.
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", status_port)).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: status\r\nX-Slow: ")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let t = Instant::now();
    // Others are served meanwhile.
    assert_eq!(http_get(&format!("{base}/")).unwrap().status, 200);
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(15),
        "the half-sent request was held {took:?} (10 s expected)"
    );
    let answer = String::from_utf8_lossy(&buf);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
}
