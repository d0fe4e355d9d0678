//! The email and Opsgenie receivers end to end: the alert engine and the durable outbox on a
//! clock the test moves, delivering to a real SMTP server on loopback (aiosmtpd with STARTTLS
//! and AUTH, `tests/receivers/smtp.rs`) and to a local Opsgenie Alert API that validates what
//! the real one does (`tests/receivers/opsgenie.rs`).

mod receivers;

use std::time::{Duration, SystemTime};

use canaryd::alert::outbox::Next;
use canaryd::alert::receiver::Verdict;
use canaryd::metrics::Format;
use receivers::bench::{at, failure, success, Bench};
use receivers::opsgenie::Opsgenie;
use receivers::smtp::Smtp;
use receivers::Mode;
use serde_json::Value;

const OG_KEY: &str = "0c1b9f2e-og-canary-key-7d41";
const SMTP_USER: &str = "canaryd-mailer";
const SMTP_PASSWORD: &str = "smtp-pw \"canary\" é+/=";

/// 2026-06-01T00:00:00Z
const T0: u64 = 1_780_272_000;

/// Two checks; login-b's summary has HTML in it.
fn checks() -> String {
    "checks:
  - name: login-a
    labels: {team: web}
    http: {request: {url: \"http://127.0.0.1:9/\"}}
    alerts:
      - {name: Down, when: failed, annotations: {runbook_url: \"https://runbooks.example.test/login\"}}
  - name: login-b
    http: {request: {url: \"http://127.0.0.1:9/\"}}
    alerts:
      - {name: Down, when: failed, severity: warning, annotations: {summary: \"<b>login</b> & <script>alert(1)</script> broken\"}}
"
    .into()
}

/// The series of `canaryd_notifications_total` for a receiver and result.
fn metric(receiver: &str, result: &str) -> String {
    format!("canaryd_notifications_total{{receiver=\"{receiver}\",result=\"{result}\"}}")
}

/// The shared bench with this file's checks, the secrets its receivers name set first.
fn bench(receivers_yaml: &str, now: SystemTime) -> Bench {
    std::env::set_var("MAILOPS_OG_KEY", OG_KEY);
    std::env::set_var("MAILOPS_SMTP_PASSWORD", SMTP_PASSWORD);
    Bench::new(receivers_yaml, &checks(), now)
}

// ---------------------------------------------------------------------------------------------
// Opsgenie
// ---------------------------------------------------------------------------------------------

fn og_receivers(og: &Opsgenie) -> String {
    format!(
        "receivers:\n  - name: ops\n    opsgenie: {{api_key: \"${{env:MAILOPS_OG_KEY}}\", url: \"{}\"}}\nroutes:\n  - receivers: [ops]\n",
        og.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opsgenie_gets_a_create_then_a_close_by_alias_with_priority_from_severity() {
    let og = Opsgenie::start();
    og.expect_api_key(OG_KEY);
    let now = at(T0);
    let mut b = bench(&og_receivers(&og), now);
    b.observe("login-a", &failure(), now);
    b.observe("login-b", &failure(), now);
    assert_eq!(b.deliver("ops", now).await.1, Some(Verdict::Accepted));
    assert_eq!(b.deliver("ops", now).await.1, Some(Verdict::Accepted));
    let later = now + Duration::from_secs(30);
    b.observe("login-a", &success(), later);
    assert_eq!(b.deliver("ops", later).await.1, Some(Verdict::Accepted));
    assert_eq!(b.deliver("ops", later).await.0, Next::Idle);

    let alerts = og.alerts();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    let a = &alerts[0];
    let created = &a.created;
    assert_eq!(created["details"]["check"], "login-a");
    assert!(
        a.alias.starts_with("canaryd-") && a.alias.len() == 40,
        "the alias is the alert's dedup key: {}",
        a.alias
    );
    assert_eq!(created["priority"], "P1", "critical (the default) is P1");
    assert_eq!(alerts[1].created["priority"], "P3", "warning is P3");
    assert_eq!(created["details"]["reason"], "status");
    assert_eq!(created["details"]["label.team"], "web");
    assert!(created["tags"]
        .as_array()
        .unwrap()
        .contains(&Value::from("team:web")));
    assert!(
        created["description"]
            .as_str()
            .unwrap()
            .contains("runbook: https://runbooks.example.test/login"),
        "{created}"
    );
    assert!(!a.open, "login-a's alert was closed");
    assert!(alerts[1].open, "login-b's alert is still open");
    assert_eq!(
        og.actions(),
        [
            ("create".to_string(), a.alias.clone()),
            ("create".to_string(), alerts[1].alias.clone()),
            ("close".to_string(), a.alias.clone()),
        ]
    );
    let close = og.requests().last().unwrap().clone();
    assert_eq!(
        close.target,
        format!("/v2/alerts/{}/close?identifierType=alias", a.alias)
    );
    assert_eq!(
        close.authorization.as_deref(),
        Some(format!("GenieKey {OG_KEY}").as_str())
    );
    assert_eq!(og.noops(), 0);
    let m = b.metrics.encode(Format::Text);
    assert!(m.contains(&format!("{} 3", metric("ops", "sent"))), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opsgenie_rate_limits_and_5xx_are_retried_then_accepted_once() {
    let og = Opsgenie::start();
    let mut now = at(T0);
    let mut b = bench(&og_receivers(&og), now);
    b.observe("login-a", &failure(), now);
    og.set_mode(Mode::RateLimit {
        retry_after_secs: Some(7),
    });
    match b.deliver("ops", now).await {
        (Next::Again, Some(Verdict::Retry { after, reason })) => {
            assert_eq!(after, Some(Duration::from_secs(7)));
            assert!(reason.starts_with("429"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        b.deliver("ops", now).await.0,
        Next::At(now + Duration::from_secs(7)),
        "the head waits Retry-After"
    );
    now += Duration::from_secs(7);
    og.set_mode(Mode::Status(503));
    assert!(matches!(
        b.deliver("ops", now).await.1,
        Some(Verdict::Retry { .. })
    ));
    og.set_mode(Mode::Accept);
    loop {
        match b.deliver("ops", now).await {
            (Next::Idle, _) => break,
            (Next::At(t), _) => now = t,
            (Next::Again, _) => {}
        }
    }
    assert_eq!(og.actions().len(), 1, "delivered once");
    assert_eq!(og.alerts()[0].count, 1);
    assert_eq!(b.waiting(), 0);
    let m = b.metrics.encode(Format::Text);
    assert!(
        m.contains(&format!("{} 2", metric("ops", "retried"))),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opsgenie_refusing_the_key_is_final_and_never_quotes_it() {
    let og = Opsgenie::start();
    og.expect_api_key("another-key");
    let now = at(T0);
    let mut b = bench(&og_receivers(&og), now);
    b.observe("login-a", &failure(), now);
    match b.deliver("ops", now).await {
        (Next::Again, Some(Verdict::Rejected { reason })) => {
            assert!(
                reason.starts_with("HTTP 401: {") && reason.contains("Could not authenticate"),
                "{reason}"
            );
            assert!(!reason.contains(OG_KEY), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(b.waiting(), 0, "final: dropped, not retried");
    assert!(og.alerts().is_empty());
    let m = b.metrics.encode(Format::Text);
    assert!(
        m.contains(&format!("{} 1", metric("ops", "rejected"))),
        "{m}"
    );
    assert!(!m.contains(OG_KEY));
}

// ---------------------------------------------------------------------------------------------
// Email
// ---------------------------------------------------------------------------------------------

fn mail_receivers(addr: &str, ca_file: &std::path::Path, password: &str) -> String {
    format!(
        "receivers:
  - name: mail
    email:
      smtp: \"{addr}\"
      username: {SMTP_USER}
      password: \"{password}\"
      from: \"canaryd <canaryd@example.test>\"
      to: [oncall@example.test, \"Web Team <web@example.test>\"]
      ca_file: \"{}\"
routes:
  - receivers: [mail]
",
        ca_file.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_over_starttls_and_auth_carries_the_evidence_in_text_and_html() {
    let Some(smtp) = Smtp::start(SMTP_USER, SMTP_PASSWORD) else {
        return;
    };
    let now = at(T0);
    let mut b = bench(
        &mail_receivers(&smtp.addr(), &smtp.ca_file, "${env:MAILOPS_SMTP_PASSWORD}"),
        now,
    );
    b.observe("login-a", &failure(), now);
    b.observe("login-b", &failure(), now);
    assert_eq!(b.deliver("mail", now).await.1, Some(Verdict::Accepted));
    assert_eq!(b.deliver("mail", now).await.1, Some(Verdict::Accepted));
    let later = now + Duration::from_secs(90);
    b.observe("login-a", &success(), later);
    assert_eq!(b.deliver("mail", later).await.1, Some(Verdict::Accepted));
    assert!(smtp.wait_for_mails(3, Duration::from_secs(5)));

    let mails = smtp.mails();
    let (trigger, html_one, resolve) = (&mails[0], &mails[1], &mails[2]);
    let env = &trigger.envelope;
    assert_eq!(env["tls"], true, "STARTTLS before anything else");
    assert_eq!(env["auth_user"], SMTP_USER);
    assert_eq!(env["mail_from"], "canaryd@example.test");
    assert_eq!(
        env["rcpt_tos"],
        serde_json::json!(["oncall@example.test", "web@example.test"])
    );
    assert_eq!(env["content_type"], "multipart/alternative");
    let subject = env["subject"].as_str().unwrap();
    assert!(subject.starts_with("[FIRING] "), "{subject}");
    assert!(subject.contains("login-a"), "{subject}");
    assert_eq!(
        trigger.header("From").as_deref(),
        Some("canaryd <canaryd@example.test>")
    );
    assert!(trigger.header("To").unwrap().contains("web@example.test"));
    assert!(trigger.header("Date").is_some());
    let text = env["text"].as_str().unwrap();
    for want in [
        "Check:       login-a",
        "Alert:       Down",
        "Severity:    critical",
        "Reason:      status",
        "team = web",
        "Runbook: https://runbooks.example.test/login",
        "Check status: http://127.0.0.1:9464/",
    ] {
        assert!(text.contains(want), "{want:?} in the text part:\n{text}");
    }
    let html = env["html"].as_str().unwrap();
    assert!(
        html.contains("<a href=\"https://runbooks.example.test/login\">Runbook</a>"),
        "{html}"
    );
    assert!(html.contains("<td>login-a</td>"), "{html}");

    // A summary with markup arrives escaped in the HTML part, as written in the text part.
    let b_html = html_one.envelope["html"].as_str().unwrap();
    assert!(
        b_html.contains(
            "&lt;b&gt;login&lt;/b&gt; &amp; &lt;script&gt;alert(1)&lt;/script&gt; broken"
        ),
        "{b_html}"
    );
    assert!(!b_html.contains("<script>"), "{b_html}");
    assert!(html_one.envelope["text"]
        .as_str()
        .unwrap()
        .contains("<b>login</b> & <script>alert(1)</script> broken"));

    // The resolve threads under its trigger.
    assert!(resolve.envelope["subject"]
        .as_str()
        .unwrap()
        .starts_with("[RESOLVED] "));
    let refs = trigger.header("References").unwrap();
    assert!(refs.ends_with("@canaryd>"), "{refs}");
    assert_eq!(resolve.header("References").as_deref(), Some(refs.as_str()));
    assert_ne!(
        html_one.header("References").as_deref(),
        Some(refs.as_str())
    );
    assert!(resolve.envelope["text"]
        .as_str()
        .unwrap()
        .contains("Until:"));

    for m in &mails {
        assert!(!m.raw.contains(SMTP_PASSWORD) && !m.raw.contains("canary\""));
    }
    assert_eq!(b.waiting(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_4xx_and_a_dead_server_are_retried_5xx_and_bad_credentials_are_final() {
    let Some(smtp) = Smtp::start(SMTP_USER, SMTP_PASSWORD) else {
        return;
    };
    let mut now = at(T0);
    let mut b = bench(
        &mail_receivers(&smtp.addr(), &smtp.ca_file, "${env:MAILOPS_SMTP_PASSWORD}"),
        now,
    );
    b.observe("login-a", &failure(), now);
    smtp.set_rcpt_reply(Some("450 4.2.1 Mailbox busy, try later"));
    match b.deliver("mail", now).await.1 {
        Some(Verdict::Retry {
            after: None,
            reason,
        }) => {
            assert!(
                reason.contains("450") && reason.contains("Mailbox busy"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(b.waiting(), 1, "kept for a retry");
    smtp.set_rcpt_reply(Some("550 5.1.1 No such user"));
    if let (Next::At(t), None) = b.deliver("mail", now).await {
        now = t;
    }
    match b.deliver("mail", now).await.1 {
        Some(Verdict::Rejected { reason }) => {
            assert!(
                reason.contains("550") && reason.contains("No such user"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(b.waiting(), 0, "a 5xx is final");
    smtp.set_rcpt_reply(None);

    // Wrong credentials: AUTH answers 535, final, and the reason names no password.
    std::env::set_var("MAILOPS_WRONG_PASSWORD", "wrong-pw-Zx81");
    let mut wrong = bench(
        &mail_receivers(&smtp.addr(), &smtp.ca_file, "${env:MAILOPS_WRONG_PASSWORD}"),
        now,
    );
    wrong.observe("login-a", &failure(), now);
    match wrong.deliver("mail", now).await.1 {
        Some(Verdict::Rejected { reason }) => {
            assert!(reason.contains("535"), "{reason}");
            assert!(
                !reason.contains("wrong-pw") && !reason.contains(SMTP_PASSWORD),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }

    // Nobody listening: retried.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let mut gone = bench(
        &mail_receivers(&dead, &smtp.ca_file, "${env:MAILOPS_SMTP_PASSWORD}"),
        now,
    );
    gone.observe("login-a", &failure(), now);
    assert!(matches!(
        gone.deliver("mail", now).await.1,
        Some(Verdict::Retry { .. })
    ));
    assert!(smtp.mails().is_empty(), "nothing was delivered");
}
