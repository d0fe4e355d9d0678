//! Every page carries the evidence (issue 14): the demo's identity check is broken (its app
//! reports the wrong database) and the pages that arrive at the five receivers — a local
//! PagerDuty Events v2, a Slack incoming webhook, a generic webhook, a real Alertmanager and
//! email through a real SMTP server (aiosmtpd with STARTTLS and AUTH, `tests/receivers/smtp.rs`)
//! — each hold the probe's message (`expected $.database … got …`) and a link to the check under
//! `external_url` (the email in its plain-text body and, escaped, with the link as an `href`, in
//! its HTML body); the resolves say how long the outage lasted. A queue rule without a summary
//! pages with the values it read (`depth=… processed_rate=… oldest_age=…`) from a real
//! redis-server.

mod receivers;
mod services;

#[path = "../examples/demo/app.rs"]
#[allow(dead_code)]
mod app;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use receivers::smtp::{Mail, Smtp};
use receivers::{PagerDuty, Slack, Webhook};
use serde_json::Value;
use services::{canaryd_run, free_port, http_get, Canaryd};

/// What people reach canaryd at (never `listen`): the base of every check link.
const EXTERNAL_URL: &str = "https://canary.example.test/ops/";
/// The link to the demo's identity check under [`EXTERNAL_URL`].
const IDENTITY_LINK: &str = "https://canary.example.test/ops/api/v1/checks/demo-identity";
/// A PagerDuty routing key is 32 characters.
const ROUTING_KEY: &str = "R0UTINGKEYevidence0123456789abcd";
/// The SMTP account canaryd's email receiver logs in with.
const SMTP_USER: &str = "canaryd-evidence";
const SMTP_PASSWORD: &str = "evidence-smtp-pw";

fn wait(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The demo's `demo-identity` check, exactly as `checks/demo.yaml` writes it, pointed at `app`
/// and run every second instead of every 5 s.
fn demo_identity_check(app: &str) -> String {
    let demo = std::fs::read_to_string(services::repo_root().join("checks/demo.yaml")).unwrap();
    let start = demo
        .find("  - name: demo-identity\n")
        .expect("checks/demo.yaml has demo-identity");
    let rest = &demo[start..];
    let end = rest[1..].find("\n  - name: ").map_or(rest.len(), |i| i + 2);
    let check = rest[..end]
        .replace("127.0.0.1:8088", app)
        .replace("interval: 5s", "interval: 1s")
        .replace("timeout: 3s", "timeout: 900ms");
    assert!(
        check.contains("\"$.database\": \"demo-primary\""),
        "{check}"
    );
    assert!(
        !check.contains("alerts:"),
        "the default rule (CheckFailing) is what pages"
    );
    format!("checks:\n{check}")
}

/// The demo app (`examples/demo/app.rs`) on a free port, with its switches.
fn start_demo_app() -> (String, Arc<app::Controls>, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let controls = Arc::new(app::Controls::default());
    let router = app::router(controls.clone()).unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    rt.spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (addr, controls, rt)
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn metric_is(d: &Canaryd, line: &str) -> bool {
    http_get(&d.url("/metrics")).is_ok_and(|r| r.text().contains(line))
}

/// `s` as it reads in HTML text or an attribute value: the five special characters escaped.
fn html_escaped(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The first mail whose subject starts with `prefix`.
fn mail_with_subject(smtp: &Smtp, prefix: &str) -> Option<Mail> {
    smtp.mails().into_iter().find(|m| {
        m.envelope["subject"]
            .as_str()
            .is_some_and(|s| s.starts_with(prefix))
    })
}

/// A duration as canaryd writes it (`850ms`, `12.34s`, `1h2m3s`), in seconds.
fn seconds_of(short: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut rest = short;
    while !rest.is_empty() {
        let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let n: f64 = rest[..end].parse().ok()?;
        rest = &rest[end..];
        let (unit, len) = [
            ("ms", 0.001),
            ("d", 86_400.0),
            ("h", 3_600.0),
            ("m", 60.0),
            ("s", 1.0),
        ]
        .into_iter()
        .find_map(|(u, secs)| rest.starts_with(u).then_some((secs, u.len())))?;
        total += n * unit;
        rest = &rest[len..];
    }
    (!short.is_empty()).then_some(total)
}

#[test]
fn a_broken_identity_check_pages_every_receiver_with_the_message_and_a_link() {
    let am_hook = Webhook::start();
    let Some(am) = services::Alertmanager::start(&format!(
        "route:\n  receiver: hook\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: \"{}\"\n        send_resolved: true\n",
        am_hook.url()
    )) else {
        return;
    };
    let pd = PagerDuty::start();
    pd.expect_routing_key(ROUTING_KEY);
    let slack = Slack::start();
    let hook = Webhook::start();
    let Some(smtp) = Smtp::start(SMTP_USER, SMTP_PASSWORD) else {
        return;
    };
    let (app_addr, controls, _rt) = start_demo_app();

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    write(
        dir.path(),
        "canaryd.yaml",
        &format!(
            "listen: 127.0.0.1:{port}\nexternal_url: \"{EXTERNAL_URL}\"\nstate_dir: state\ncheck_files: [checks.yaml]\n\
             receivers:\n\
             \x20 - name: oncall\n    pagerduty: {{routing_key: \"${{env:PD_KEY}}\", url: \"{}\"}}\n\
             \x20 - name: chat\n    slack: {{webhook_url: \"${{env:SLACK_URL}}\"}}\n\
             \x20 - name: hook\n    webhook: {{url: \"{}\"}}\n\
             \x20 - name: am\n    alertmanager: {{url: \"{}\"}}\n\
             \x20 - name: mail\n    email: {{smtp: \"{}\", username: {SMTP_USER}, password: \"${{env:SMTP_PASSWORD}}\", \
             from: \"canaryd <canaryd@example.test>\", to: [oncall@example.test], ca_file: \"{}\"}}\n",
            pd.url(),
            hook.url(),
            am.url(),
            smtp.addr(),
            smtp.ca_file.display()
        ),
    );
    write(dir.path(), "checks.yaml", &demo_identity_check(&app_addr));
    let mut cmd = canaryd_run(&dir.path().join("canaryd.yaml"));
    cmd.env("PD_KEY", ROUTING_KEY)
        .env("SLACK_URL", slack.url())
        .env("SMTP_PASSWORD", SMTP_PASSWORD);
    let d = Canaryd::start(cmd, &format!("127.0.0.1:{port}")).expect("canaryd starts");
    wait("a passing run", Duration::from_secs(15), || {
        metric_is(&d, "canary_check_success{check=\"demo-identity\"} 1")
    });

    // The deploy that pointed the app at the staging database.
    controls.wrong_db.store(true, Ordering::SeqCst);
    let broke = Instant::now();

    // The link works: canaryd's API serves the check at the path under external_url.
    let path = IDENTITY_LINK.trim_start_matches("https://canary.example.test/ops");
    let state = http_get(&d.url(path)).unwrap();
    assert_eq!(state.status, 200, "{}", state.text());

    // The message as the console shows it: `expected $.database … got …`.
    let evidence = |text: &str| {
        text.contains("expected $.database")
            && text.contains("demo-primary")
            && text.contains("got \"demo-staging\"")
    };

    // PagerDuty: custom_details.message, and a link to the check.
    assert!(
        pd.wait_for_events(1, Duration::from_secs(20)),
        "no PagerDuty event:\n{}",
        d.log_tail(30)
    );
    let trigger = pd.events()[0].clone();
    assert_eq!(trigger["event_action"], "trigger", "{trigger:#}");
    let details = &trigger["payload"]["custom_details"];
    assert!(
        evidence(details["message"].as_str().unwrap_or("")),
        "{details:#}"
    );
    assert_eq!(details["failed_step"], "request", "{details:#}");
    assert_eq!(details["reason"], "assertion", "{details:#}");
    assert_eq!(details["check_url"], IDENTITY_LINK);
    assert!(
        trigger["links"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["href"] == IDENTITY_LINK),
        "{trigger:#}"
    );
    // The default summary is the evidence too: check, step, reason, message.
    let summary = trigger["payload"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("demo-identity failing at step request: assertion: ")
            && evidence(summary),
        "{summary}"
    );

    // Slack: the message and a mrkdwn link in the text.
    assert!(
        slack.wait_for_messages(1, Duration::from_secs(10)),
        "no Slack message"
    );
    let text = slack.messages()[0]["text"].as_str().unwrap().to_string();
    assert!(evidence(&text), "{text}");
    assert!(text.contains(&format!("<{IDENTITY_LINK}|check>")), "{text}");

    // The webhook: message, failed_step, reason, labels and the link as JSON fields.
    assert!(
        hook.wait_for_requests(1, Duration::from_secs(10)),
        "no webhook request"
    );
    let body = hook.accepted()[0].json().unwrap();
    let e = &body["events"][0];
    assert!(evidence(e["message"].as_str().unwrap_or("")), "{e:#}");
    assert_eq!(e["failed_step"], "request");
    assert_eq!(e["reason"], "assertion");
    assert_eq!(e["labels"]["check"], "demo-identity");
    assert_eq!(e["check_url"], IDENTITY_LINK);

    // Alertmanager: the message in the annotations, the link as generatorURL.
    let active = || -> Option<Value> {
        am.alerts()
            .as_array()?
            .iter()
            .find(|a| a["labels"]["check"] == "demo-identity")
            .cloned()
    };
    wait("the alert in Alertmanager", Duration::from_secs(15), || {
        active().is_some()
    });
    let a = active().unwrap();
    assert!(
        evidence(a["annotations"]["message"].as_str().unwrap_or("")),
        "{a:#}"
    );
    assert_eq!(a["generatorURL"], IDENTITY_LINK, "{a:#}");

    // Email: the message and the link in the plain-text body (lines end in CRLF, as mail does);
    // in the HTML body the message escaped and the link as an href.
    let message = details["message"].as_str().unwrap().to_string();
    wait("the firing email", Duration::from_secs(15), || {
        mail_with_subject(&smtp, "[FIRING] ").is_some()
    });
    let mail = mail_with_subject(&smtp, "[FIRING] ").unwrap();
    assert_eq!(mail.envelope["tls"], true, "{:#}", mail.envelope);
    let text = mail.envelope["text"].as_str().unwrap_or("");
    assert!(evidence(text), "{text}");
    assert!(
        text.lines().any(|l| l == format!("Message:     {message}")),
        "the message {message:?} in the text body:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l == format!("  Check status: {IDENTITY_LINK}")),
        "{text}"
    );
    let html = mail.envelope["html"].as_str().unwrap_or("");
    assert!(
        message.contains('"') && html.contains(&format!("<td>{}</td>", html_escaped(&message))),
        "the message {message:?}, escaped, in the HTML body:\n{html}"
    );
    assert!(
        !html.contains(&message),
        "unescaped in the HTML body:\n{html}"
    );
    assert!(
        html.contains(&format!("<a href=\"{IDENTITY_LINK}\">")),
        "{html}"
    );

    // Fixed: every resolve says how long it lasted.
    controls.wrong_db.store(false, Ordering::SeqCst);
    wait("the webhook's resolve", Duration::from_secs(15), || {
        hook.accepted().iter().any(|r| {
            r.json()
                .is_some_and(|v| v["events"][0]["status"] == "resolved")
        })
    });
    let lasted_at_most = broke.elapsed().as_secs_f64();
    let resolve = hook
        .accepted()
        .iter()
        .filter_map(|r| r.json())
        .find(|v| v["events"][0]["status"] == "resolved")
        .unwrap();
    let r = &resolve["events"][0];
    let seconds = r["duration_seconds"].as_f64().unwrap();
    assert!(seconds > 0.0 && seconds <= lasted_at_most, "{r:#}");
    let summary = r["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("demo-identity recovered after "),
        "{summary}"
    );
    wait("Slack's resolve", Duration::from_secs(10), || {
        slack.messages().iter().any(|m| {
            m["text"]
                .as_str()
                .is_some_and(|t| t.contains("[RESOLVED]") && t.contains("recovered after"))
        })
    });
    wait("PagerDuty's resolve", Duration::from_secs(10), || {
        pd.events().iter().any(|e| e["event_action"] == "resolve")
    });
    wait("the resolve email", Duration::from_secs(10), || {
        mail_with_subject(&smtp, "[RESOLVED] ").is_some()
    });
    let mail = mail_with_subject(&smtp, "[RESOLVED] ").unwrap();
    let subject = mail.envelope["subject"].as_str().unwrap();
    let after = subject
        .strip_prefix("[RESOLVED] demo-identity recovered after ")
        .unwrap_or_else(|| panic!("{subject}"));
    let text = mail.envelope["text"].as_str().unwrap_or("");
    let lasted = text
        .lines()
        .find_map(|l| l.strip_prefix("Lasted:"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no Lasted: line in the resolve email:\n{text}"));
    // The subject and the body's row say the same duration, in the same words (`12m3s`).
    assert_eq!(lasted, after, "{text}");
    let lasted_s = seconds_of(lasted).unwrap_or_else(|| panic!("Lasted: {lasted:?}"));
    assert!(
        lasted_s > 0.0 && lasted_s <= lasted_at_most,
        "lasted {lasted} ({lasted_s} s), the subject says {after}, the outage took at most \
         {lasted_at_most} s:\n{text}"
    );
    let html = mail.envelope["html"].as_str().unwrap_or("");
    assert!(
        html.contains(&format!("<th align=\"left\">Lasted</th><td>{lasted}</td>")),
        "{html}"
    );
    assert_eq!(
        mail.header("References"),
        mail_with_subject(&smtp, "[FIRING] ")
            .unwrap()
            .header("References"),
        "the resolve threads under its trigger"
    );
    wait(
        "the alert resolved in Alertmanager",
        Duration::from_secs(15),
        || active().is_none(),
    );
}

#[test]
fn a_queue_rule_without_a_summary_pages_with_the_values_it_read() {
    let Some(redis) = services::Redis::start() else {
        return;
    };
    // Sidekiq's layout: three jobs enqueued five minutes ago, no worker, a processed counter
    // that does not move.
    let five_min_ago = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        - 300.0;
    for n in 0..3 {
        let job = format!(
            "{{\"class\":\"HardJob\",\"jid\":\"j{n}\",\"queue\":\"default\",\"args\":[],\"enqueued_at\":{five_min_ago}}}"
        );
        redis.cmd(&["LPUSH", "queue:default", &job]);
    }
    redis.cmd(&["SADD", "queues", "default"]);
    redis.cmd(&["SET", "stat:processed", "41"]);

    let hook = Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    write(
        dir.path(),
        "canaryd.yaml",
        &format!(
            "listen: 127.0.0.1:{port}\nstate_dir: state\ncheck_files: [checks.yaml]\n\
             receivers:\n  - name: hook\n    webhook: {{url: \"{}\"}}\n",
            hook.url()
        ),
    );
    write(
        dir.path(),
        "checks.yaml",
        &format!(
            "checks:\n  - name: jobs\n    interval: 1s\n    timeout: 900ms\n    queue:\n      system: sidekiq\n      redis: \"{}\"\n      queues: [default]\n    alerts:\n      - name: JobsStalled\n        when: depth > 0 && processed_rate == 0 && oldest_age > 1m\n",
            redis.url()
        ),
    );
    let d = Canaryd::start(
        canaryd_run(&dir.path().join("canaryd.yaml")),
        &format!("127.0.0.1:{port}"),
    )
    .expect("canaryd starts");
    assert!(
        hook.wait_for_requests(1, Duration::from_secs(15)),
        "no page:\n{}",
        d.log_tail(30)
    );
    let body = hook.accepted()[0].json().unwrap();
    let e = &body["events"][0];
    let summary = e["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("jobs: JobsStalled (depth=3 processed_rate=0 oldest_age=5m"),
        "{summary}"
    );
    assert_eq!(e["values"]["depth"], "3", "{e:#}");
    assert_eq!(e["values"]["processed_rate"], "0", "{e:#}");
    assert!(
        e["values"]["oldest_age"]
            .as_str()
            .unwrap()
            .starts_with("5m"),
        "{e:#}"
    );
    assert_eq!(
        e["message"],
        Value::Null,
        "a queue that reads fine has no failure message"
    );
}
