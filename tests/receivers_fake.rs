//! Self-test of the local alert receivers in `tests/receivers/`: each fake is driven over real
//! HTTP with the tiny client of `tests/services/`, and its exact statuses, bodies, headers and
//! recorded state are checked against what the services document.

mod receivers;
mod services;

use std::net::TcpStream;
use std::time::Duration;

use receivers::{sign, Incident, Mode, PagerDuty, Slack, Webhook, PD_MAX_EVENT_BYTES};
use serde_json::{json, Value};
use services::{http_get, http_post, http_request, HttpResponse};

const KEY: &str = "0123456789abcdef0123456789ABCDEF";
const OTHER_KEY: &str = "ffffffffffffffffffffffffffffffff";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn post_json(url: &str, body: &Value) -> HttpResponse {
    http_post(url, "application/json", body.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

fn trigger(dedup_key: &str) -> Value {
    json!({
        "routing_key": KEY,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": "canary web-login failed: status 503",
            "source": "canaryd",
            "severity": "critical",
            "timestamp": "2015-07-17T08:42:58.315+0000",
            "component": "web-login",
            "group": "prod",
            "class": "http",
            "custom_details": {"attempts": 3, "last_error": "503"}
        },
        "client": "canaryd",
        "client_url": "http://canaryd.example/checks/web-login",
        "links": [{"href": "http://canaryd.example/checks/web-login", "text": "check"}],
        "images": [{"src": "https://canaryd.example/graph.png"}]
    })
}

fn resolve(dedup_key: &str) -> Value {
    json!({"routing_key": KEY, "event_action": "resolve", "dedup_key": dedup_key})
}

fn invalid(errors: &[&str]) -> Value {
    json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors})
}

// ---------------------------------------------------------------------------------------------
// PagerDuty
// ---------------------------------------------------------------------------------------------

#[test]
fn pd_valid_trigger_is_accepted_and_its_dedup_key_echoed() {
    let pd = PagerDuty::start();
    assert!(pd.url().starts_with("http://127.0.0.1:"));
    assert!(pd.url().ends_with("/v2/enqueue"));

    let r = post_json(&pd.url(), &trigger("canary/web-login"));
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({"status": "success", "message": "Event processed", "dedup_key": "canary/web-login"})
    );
    assert_eq!(pd.events(), vec![trigger("canary/web-login")]);
    assert_eq!(pd.arrival_times().len(), 1);
    assert_eq!(pd.requests(), 1);
    assert!(pd.rejected().is_empty());
    assert_eq!(
        pd.incidents(),
        vec![Incident {
            routing_key: KEY.into(),
            dedup_key: "canary/web-login".into(),
            open: true,
            acknowledged: false,
            triggers: 1,
            opened: 1,
            acknowledges: 0,
            resolves: 0,
        }]
    );
}

#[test]
fn pd_trigger_without_dedup_key_gets_a_new_generated_one() {
    let pd = PagerDuty::start();
    let mut event = trigger("x");
    event.as_object_mut().unwrap().remove("dedup_key");
    let a = post_json(&pd.url(), &event).json();
    let b = post_json(&pd.url(), &event).json();
    let (a, b) = (
        a["dedup_key"].as_str().unwrap(),
        b["dedup_key"].as_str().unwrap(),
    );
    assert_eq!(a.len(), 32, "{a}");
    assert!(a.chars().all(|c| c.is_ascii_hexdigit()), "{a}");
    assert_ne!(a, b, "each trigger without a key opens its own alert");
    assert_eq!(pd.incidents().len(), 2);
    assert!(pd.incident(a).unwrap().open);
}

#[test]
fn pd_duplicate_triggers_fold_into_one_incident_which_resolve_closes() {
    let pd = PagerDuty::start();
    for _ in 0..2 {
        assert_eq!(post_json(&pd.url(), &trigger("k1")).status, 202);
    }
    let r = post_json(&pd.url(), &resolve("k1"));
    assert_eq!(r.status, 202);
    assert_eq!(r.json()["dedup_key"], "k1");

    let incidents = pd.incidents();
    assert_eq!(incidents.len(), 1);
    let i = &incidents[0];
    assert_eq!((i.opened, i.triggers, i.resolves, i.open), (1, 2, 1, false));
    assert_eq!(i.duplicates(), 1);
    assert_eq!(pd.events().len(), 3);
    assert_eq!(pd.noops(), 0);

    // Resolving it again, or resolving a key never triggered: accepted, dropped.
    assert_eq!(post_json(&pd.url(), &resolve("k1")).status, 202);
    assert_eq!(post_json(&pd.url(), &resolve("never-seen")).status, 202);
    assert_eq!(pd.noops(), 2);
    assert_eq!(pd.incident("k1").unwrap().resolves, 1);
    assert!(pd.incident("never-seen").is_none());

    // A trigger after the resolve opens it again.
    assert_eq!(post_json(&pd.url(), &trigger("k1")).status, 202);
    let i = pd.incident("k1").unwrap();
    assert_eq!((i.opened, i.triggers, i.open), (2, 3, true));

    // The arrival times follow the events.
    let times = pd.arrival_times();
    assert_eq!(times.len(), pd.events().len());
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn pd_acknowledge_marks_an_open_incident_and_a_resolve_from_another_key_is_dropped() {
    let pd = PagerDuty::start();
    assert_eq!(post_json(&pd.url(), &trigger("k2")).status, 202);
    let ack = json!({"routing_key": KEY, "event_action": "acknowledge", "dedup_key": "k2"});
    assert_eq!(post_json(&pd.url(), &ack).status, 202);
    let i = pd.incident("k2").unwrap();
    assert!(i.open && i.acknowledged);
    assert_eq!(i.acknowledges, 1);

    let foreign = json!({"routing_key": OTHER_KEY, "event_action": "resolve", "dedup_key": "k2"});
    assert_eq!(post_json(&pd.url(), &foreign).status, 202);
    assert!(
        pd.incident("k2").unwrap().open,
        "resolve via another routing key is dropped"
    );
    assert_eq!(pd.noops(), 1);
}

#[test]
fn pd_invalid_events_get_the_documented_400() {
    let pd = PagerDuty::start();
    let with = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut e = trigger("k");
        f(e.as_object_mut().unwrap());
        e
    };
    let cases: Vec<(&str, Value, Value)> = vec![
        (
            "missing routing_key",
            with(&|e| {
                e.remove("routing_key");
            }),
            invalid(&["'routing_key' is missing or blank"]),
        ),
        (
            "short routing_key",
            with(&|e| {
                e.insert("routing_key".into(), json!(&KEY[1..]));
            }),
            invalid(&["Length of 'routing_key' is incorrect (should be 32 characters)"]),
        ),
        (
            "routing_key with punctuation",
            with(&|e| {
                e.insert(
                    "routing_key".into(),
                    json!("e+23rschqsESqk9Q6_-gaaaaaaaaaaaa"),
                );
            }),
            invalid(&["'routing_key' cannot contain non-alphanumeric characters."]),
        ),
        (
            "summary of 1025 characters",
            with(&|e| {
                e["payload"]["summary"] = json!("s".repeat(1025));
            }),
            invalid(&["'payload.summary' is too long (maximum is 1024 characters)"]),
        ),
        (
            "bad severity",
            with(&|e| {
                e["payload"]["severity"] = json!("fatal");
            }),
            invalid(&[
                "'payload.severity' must be one of 'critical', 'error', 'warning' or 'info'",
            ]),
        ),
        (
            "missing severity and source",
            with(&|e| {
                let p = e["payload"].as_object_mut().unwrap();
                p.remove("severity");
                p.remove("source");
            }),
            invalid(&[
                "'payload.source' is missing or blank",
                "'payload.severity' is missing or blank",
            ]),
        ),
        (
            "trigger without payload",
            with(&|e| {
                e.remove("payload");
            }),
            invalid(&["'payload' is missing or blank"]),
        ),
        (
            "bad event_action",
            with(&|e| {
                e.insert("event_action".into(), json!("escalate"));
            }),
            invalid(&["'event_action' must be one of 'trigger', 'acknowledge' or 'resolve'"]),
        ),
        (
            "dedup_key of 256 characters",
            with(&|e| {
                e.insert("dedup_key".into(), json!("d".repeat(256)));
            }),
            invalid(&["'dedup_key' is too long (maximum is 255 characters)"]),
        ),
        (
            "timestamp not ISO 8601",
            with(&|e| {
                e["payload"]["timestamp"] = json!("yesterday at noon");
            }),
            invalid(&["'payload.timestamp' is not a valid ISO 8601 timestamp"]),
        ),
        (
            "resolve without dedup_key",
            json!({"routing_key": KEY, "event_action": "resolve"}),
            invalid(&["'dedup_key' is missing or blank"]),
        ),
        (
            "acknowledge with a blank dedup_key",
            json!({"routing_key": KEY, "event_action": "acknowledge", "dedup_key": " "}),
            invalid(&["'dedup_key' is missing or blank"]),
        ),
    ];
    for (what, event, expected) in &cases {
        let r = post_json(&pd.url(), event);
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        assert_eq!(r.json(), *expected, "{what}");
    }

    let not_json = http_post(&pd.url(), "application/json", b"{\"routing_key\": ").unwrap();
    let unrecognized = json!({
        "status": "Unrecognized object",
        "message": "Event object format is unrecognized",
        "errors": ["JSON parse error"]
    });
    assert_eq!(not_json.status, 400);
    assert_eq!(not_json.json(), unrecognized);
    let array = http_post(&pd.url(), "application/json", b"[]").unwrap();
    assert_eq!((array.status, array.json()), (400, unrecognized));

    let huge = with(&|e| {
        e["payload"]["custom_details"] = json!({"blob": "x".repeat(PD_MAX_EVENT_BYTES)});
    });
    let r = post_json(&pd.url(), &huge);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        invalid(&["Event payload exceeds the 512 KB limit"])
    );

    assert!(
        pd.events().is_empty(),
        "nothing invalid is recorded as accepted"
    );
    assert!(pd.incidents().is_empty());
    let total = cases.len() + 3;
    assert_eq!(pd.requests(), total);
    let rejected = pd.rejected();
    assert_eq!(rejected.len(), total);
    assert!(rejected.iter().all(|(s, _)| *s == 400));
    let first: Value = serde_json::from_str(&rejected[0].1).unwrap();
    assert_eq!(first, cases[0].2);
}

#[test]
fn pd_boundaries_are_accepted() {
    let pd = PagerDuty::start();
    let mut e = trigger(&"d".repeat(255));
    e["payload"]["summary"] = json!("é".repeat(1024)); // characters, not bytes
    e["payload"]["timestamp"] = json!("2026-06-01T00:00:00Z");
    e["payload"]["custom_details"] = json!("a plain string is fine too");
    let r = post_json(&pd.url(), &e);
    assert_eq!(r.status, 202, "{}", r.text());

    let minimal = json!({
        "routing_key": KEY,
        "event_action": "trigger",
        "payload": {"summary": "s", "source": "h", "severity": "info"}
    });
    assert_eq!(post_json(&pd.url(), &minimal).status, 202);
    assert_eq!(pd.events().len(), 2);
}

#[test]
fn pd_expected_routing_key_rejects_others() {
    let pd = PagerDuty::start();
    pd.expect_routing_key(KEY);
    let mut e = trigger("k");
    e["routing_key"] = json!(OTHER_KEY);
    let r = post_json(&pd.url(), &e);
    assert_eq!(r.status, 400);
    assert_eq!(r.json(), invalid(&["Invalid routing key"]));
    assert_eq!(post_json(&pd.url(), &trigger("k")).status, 202);
    assert_eq!(pd.events().len(), 1);
}

#[test]
fn pd_rate_limit_answers_429_with_retry_after() {
    let pd = PagerDuty::start();
    pd.set_mode(Mode::RateLimit {
        retry_after_secs: Some(30),
    });
    let r = post_json(&pd.url(), &trigger("k"));
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("30"));
    assert_eq!(
        r.json(),
        json!({"status": "throttled", "message": "Too many API calls at a time."})
    );

    pd.set_mode(Mode::RateLimit {
        retry_after_secs: None,
    });
    let r = post_json(&pd.url(), &trigger("k"));
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), None);

    assert!(pd.events().is_empty());
    assert_eq!(pd.requests(), 2);
    assert_eq!(pd.rejected().len(), 2);

    pd.set_mode(Mode::Accept);
    assert_eq!(post_json(&pd.url(), &trigger("k")).status, 202);
    assert_eq!(pd.events().len(), 1);
}

#[test]
fn pd_status_mode_answers_every_request_with_it() {
    let pd = PagerDuty::start();
    pd.set_mode(Mode::Status(503));
    let r = post_json(&pd.url(), &trigger("k"));
    assert_eq!(r.status, 503);
    let body = r.json();
    assert_eq!(body["status"], "Service Unavailable");
    assert!(body["message"].is_string());
    assert!(pd.events().is_empty());
    assert!(pd.incidents().is_empty());
    assert_eq!(pd.rejected()[0].0, 503);

    pd.set_mode(Mode::InvalidToken);
    let r = post_json(&pd.url(), &trigger("k"));
    assert_eq!(
        (r.status, r.json()),
        (400, invalid(&["Invalid routing key"]))
    );
    pd.set_mode(Mode::Gone);
    assert_eq!(post_json(&pd.url(), &trigger("k")).status, 404);
    assert_eq!(pd.requests(), 3);
}

#[test]
fn pd_refuse_is_a_connection_error_then_recovers() {
    let pd = PagerDuty::start();
    pd.set_mode(Mode::Refuse);
    let err = http_post(
        &pd.url(),
        "application/json",
        trigger("k").to_string().as_bytes(),
    )
    .expect_err("a refusing receiver must not answer");
    eprintln!("refused as expected: {err}");
    assert_eq!(
        pd.requests(),
        0,
        "a refused request never reaches the handler"
    );
    assert!(pd.refused_connections() >= 1);

    pd.set_mode(Mode::Accept);
    assert_eq!(post_json(&pd.url(), &trigger("k")).status, 202);
    assert_eq!(pd.requests(), 1);
}

/// A client that keeps its connection alive (as canaryd's pooled client will) is cut off too once
/// the fake refuses: its next request on the same connection gets no answer.
#[test]
fn pd_refuse_also_cuts_a_kept_alive_connection() {
    use std::io::{BufRead, BufReader, Read, Write};

    let pd = PagerDuty::start();
    let mut conn = TcpStream::connect(pd.addr()).unwrap();
    conn.set_read_timeout(Some(secs(10))).unwrap();
    let body = trigger("keep").to_string();
    let request = format!(
        "POST /v2/enqueue HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        pd.addr(),
        body.len()
    );
    conn.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    assert!(status_line.starts_with("HTTP/1.1 202"), "{status_line:?}");
    let mut content_length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap();
        }
    }
    let mut first_body = vec![0; content_length];
    reader.read_exact(&mut first_body).unwrap();

    pd.set_mode(Mode::Refuse);
    // The write may already fail if the reset is quick; either way no status line comes back.
    let _ = conn.write_all(request.as_bytes());
    let mut rest = String::new();
    let outcome = reader.read_to_string(&mut rest);
    assert!(
        outcome.is_err() || rest.is_empty(),
        "got an answer on a refused connection: {rest:?}"
    );
    assert_eq!(pd.requests(), 1);
    assert_eq!(pd.events().len(), 1);
    assert!(pd.refused_connections() >= 1);
}

#[test]
fn pd_other_paths_and_methods() {
    let pd = PagerDuty::start();
    let r = http_get(&pd.url()).unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    let r = http_post(
        &format!("{}/v1/enqueue", pd.base_url()),
        "application/json",
        b"{}",
    )
    .unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(pd.requests(), 2);
}

#[test]
fn pd_wait_for_events_sees_an_event_sent_from_another_thread() {
    let pd = PagerDuty::start();
    let url = pd.url();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        post_json(&url, &trigger("late")).status
    });
    assert!(pd.wait_for_events(1, secs(10)));
    assert!(pd.wait_until(|pd| pd.incident("late").is_some_and(|i| i.open), secs(1)));
    assert!(!pd.wait_until(|pd| pd.events().len() >= 2, Duration::from_millis(50)));
    assert_eq!(sender.join().unwrap(), 202);
}

#[tokio::test]
async fn fakes_answer_inside_an_async_test() {
    let pd = PagerDuty::start();
    let url = pd.url();
    let status = tokio::task::spawn_blocking(move || post_json(&url, &trigger("async")).status)
        .await
        .unwrap();
    assert_eq!(status, 202);
    assert!(
        pd.wait_until_async(|pd| pd.events().len() == 1, secs(5))
            .await
    );

    // A blocking call straight from the test's own runtime thread works too: the fake has its own.
    let slack = Slack::start();
    let r = post_json(&slack.url(), &json!({"text": "hi"}));
    assert_eq!((r.status, r.text()), (200, "ok".to_string()));
    assert!(
        slack
            .wait_until_async(|s| s.messages().len() == 1, secs(5))
            .await
    );
}

#[test]
fn a_dropped_fake_closes_its_port() {
    let pd = PagerDuty::start();
    let addr = pd.addr();
    assert!(TcpStream::connect(addr).is_ok());
    drop(pd);
    assert!(TcpStream::connect(addr).is_err(), "port {addr} still open");
}

// ---------------------------------------------------------------------------------------------
// Slack
// ---------------------------------------------------------------------------------------------

#[test]
fn slack_accepts_text_or_blocks_and_answers_ok() {
    let slack = Slack::start();
    let secret = slack.secret_path();
    assert!(
        secret.starts_with("/services/T0CANARY/B0CANARY/"),
        "{secret}"
    );
    assert_eq!(slack.token().len(), 24);
    assert!(slack.url().ends_with(&secret));
    assert_ne!(
        Slack::start().secret_path(),
        secret,
        "each fake has its own token"
    );

    let r = post_json(&slack.url(), &json!({"text": "canary web-login is down"}));
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "ok");
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));

    let blocks =
        json!({"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*down*"}}]});
    assert_eq!(post_json(&slack.url(), &blocks).status, 200);

    let form = format!(
        "payload={}",
        services::urlencode(&json!({"text": "form-encoded"}).to_string())
    );
    let r = http_post(
        &slack.url(),
        "application/x-www-form-urlencoded",
        form.as_bytes(),
    )
    .unwrap();
    assert_eq!((r.status, r.text()), (200, "ok".to_string()));

    assert_eq!(
        slack.messages(),
        vec![
            json!({"text": "canary web-login is down"}),
            blocks,
            json!({"text": "form-encoded"})
        ]
    );
    assert_eq!(slack.requests(), 3);
    assert_eq!(slack.arrival_times().len(), 3);
    assert!(slack.wait_for_messages(3, secs(1)));
}

#[test]
fn slack_rejects_bad_payloads_with_its_error_strings() {
    let slack = Slack::start();
    let cases: [(&[u8], u16, &str); 6] = [
        (b"{}", 400, "no_text"),
        (br#"{"text": ""}"#, 400, "no_text"),
        (br#"{"username": "canaryd", "blocks": []}"#, 400, "no_text"),
        (b"text=hello", 400, "invalid_payload"),
        (
            br#"{"text": "x", "blocks": {"type": "section"}}"#,
            400,
            "invalid_blocks_format",
        ),
        (
            br#"{"blocks": [{"text": "no type"}]}"#,
            400,
            "invalid_blocks",
        ),
    ];
    for (body, status, text) in cases {
        let r = http_post(&slack.url(), "application/json", body).unwrap();
        let shown = String::from_utf8_lossy(body);
        assert_eq!(r.status, status, "{shown}");
        assert_eq!(r.text(), text, "{shown}");
    }
    assert!(slack.messages().is_empty());
    assert_eq!(slack.rejected().len(), cases.len());
    assert_eq!(slack.rejected()[0], (400, "no_text".to_string()));
}

#[test]
fn slack_wrong_token_unknown_hook_and_modes() {
    let slack = Slack::start();
    let msg = json!({"text": "hi"});

    let wrong_token = format!(
        "{}/services/T0CANARY/B0CANARY/{}",
        slack.base_url(),
        "0".repeat(24)
    );
    let r = post_json(&wrong_token, &msg);
    assert_eq!((r.status, r.text()), (403, "invalid_token".to_string()));
    let r = post_json(&format!("{}/services/T1/B1/x", slack.base_url()), &msg);
    assert_eq!((r.status, r.text()), (404, "no_service".to_string()));

    slack.set_mode(Mode::Gone);
    let r = post_json(&slack.url(), &msg);
    assert_eq!((r.status, r.text()), (404, "no_service".to_string()));

    slack.set_mode(Mode::InvalidToken);
    let r = post_json(&slack.url(), &msg);
    assert_eq!((r.status, r.text()), (403, "invalid_token".to_string()));

    slack.set_mode(Mode::RateLimit {
        retry_after_secs: Some(1),
    });
    let r = post_json(&slack.url(), &msg);
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.text(), "rate_limited");

    slack.set_mode(Mode::Status(500));
    let r = post_json(&slack.url(), &msg);
    assert_eq!((r.status, r.text()), (500, "rollup_error".to_string()));
    slack.set_mode(Mode::Status(502));
    assert_eq!(post_json(&slack.url(), &msg).status, 502);

    slack.set_mode(Mode::Refuse);
    assert!(http_post(&slack.url(), "application/json", b"{\"text\":\"x\"}").is_err());

    assert!(slack.messages().is_empty());
    assert_eq!(slack.requests(), 7);

    slack.set_mode(Mode::Accept);
    assert_eq!(post_json(&slack.url(), &msg).status, 200);
    assert_eq!(slack.messages(), vec![msg]);
}

// ---------------------------------------------------------------------------------------------
// Generic webhook
// ---------------------------------------------------------------------------------------------

#[test]
fn webhook_records_every_request() {
    let hook = Webhook::start();
    let body = br#"{"check":"web-login","status":"failing"}"#;
    let r = http_request(
        "POST",
        &format!("{}?source=canaryd", hook.url()),
        &[("Content-Type", "application/json"), ("X-Custom", "Yes")],
        Some(body),
    )
    .unwrap();
    assert_eq!((r.status, r.text()), (200, "ok".to_string()));

    let reqs = hook.requests();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/hook?source=canaryd");
    assert_eq!(req.header("x-custom"), Some("Yes"));
    assert_eq!(req.header("Content-Type"), Some("application/json"));
    assert!(req
        .headers
        .iter()
        .all(|(n, _)| *n == n.to_ascii_lowercase()));
    assert_eq!(req.body, body);
    assert_eq!(req.json().unwrap()["status"], "failing");
    assert_eq!(req.signature_ok, None);
    assert_eq!(req.status, 200);

    hook.set_mode(Mode::Status(500));
    assert_eq!(post_json(&hook.url(), &json!({})).status, 500);
    hook.set_mode(Mode::RateLimit {
        retry_after_secs: Some(7),
    });
    let r = post_json(&hook.url(), &json!({}));
    assert_eq!((r.status, r.header("retry-after")), (429, Some("7")));
    hook.set_mode(Mode::Gone);
    assert_eq!(post_json(&hook.url(), &json!({})).status, 410);
    hook.set_mode(Mode::Refuse);
    assert!(http_post(&hook.url(), "application/json", b"{}").is_err());
    assert_eq!(hook.requests().len(), 4, "the refused one never arrived");
    assert_eq!(hook.accepted().len(), 1);
    assert!(hook.refused_connections() >= 1);
}

#[test]
fn webhook_hmac_signature_good_bad_missing() {
    let secret = "s3cret-canary";
    let hook = Webhook::start().with_hmac_secret(secret);
    let body = br#"{"check":"web-login"}"#;
    let good = sign(secret.as_bytes(), body);
    assert!(good.starts_with("sha256="));
    assert_eq!(good.len(), "sha256=".len() + 64);

    let send = |sig: Option<&str>| {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(sig) = sig {
            headers.push(("X-Canaryd-Signature", sig));
        }
        http_request("POST", &hook.url(), &headers, Some(body)).unwrap()
    };
    let r = send(Some(&good));
    assert_eq!((r.status, r.text()), (200, "ok".to_string()));
    let wrong = sign(b"another secret", body);
    let r = send(Some(&wrong));
    assert_eq!((r.status, r.text()), (401, "invalid signature".to_string()));
    let r = send(None);
    assert_eq!(r.status, 401);
    let upper = format!("sha256={}", good["sha256=".len()..].to_ascii_uppercase());
    assert_eq!(send(Some(&upper)).status, 401, "the hex must be lowercase");
    assert_eq!(
        send(Some(&good["sha256=".len()..])).status,
        401,
        "the prefix is required"
    );

    // A known vector: HMAC-SHA256(key "key", "The quick brown fox jumps over the lazy dog").
    assert_eq!(
        sign(b"key", b"The quick brown fox jumps over the lazy dog"),
        "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    );

    let oks: Vec<Option<bool>> = hook.requests().iter().map(|r| r.signature_ok).collect();
    assert_eq!(
        oks,
        vec![
            Some(true),
            Some(false),
            Some(false),
            Some(false),
            Some(false)
        ]
    );
    assert_eq!(hook.accepted().len(), 1);
}
