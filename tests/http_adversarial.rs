//! Whole check runs (scheduler `run_once`, as the daemon runs them) against misbehaving servers:
//! every run ends within its timeout + 100 ms and names the right reason and phase.

mod adversary;

use std::path::Path;
use std::time::{Duration, Instant};

use adversary::{Behavior, Reply, Server, TlsSetup};
use canaryd::probe::{CheckResult, Phase, Reason};
use canaryd::schedule::{run_once, Entry};

async fn run(yaml: &str) -> (CheckResult, Duration) {
    let check = canaryd::probe::check::load_checks_str(Path::new("t.yaml"), yaml)
        .unwrap_or_else(|e| panic!("{e}"))
        .remove(0);
    let probe = canaryd::daemon::build_probe(&check).unwrap();
    let t = Instant::now();
    let r = run_once(&Entry { check, probe }, tokio::time::Instant::now()).await;
    (r, t.elapsed())
}

fn http_check(url: &str, timeout: &str, extra: &str) -> String {
    format!("checks:\n  - name: adv\n    interval: 30s\n    timeout: {timeout}\n    http:\n      request: {{url: \"{url}\"}}\n{extra}")
}

fn within(took: Duration, timeout: Duration) {
    assert!(
        took <= timeout + Duration::from_millis(100),
        "run took {took:?}, timeout {timeout:?}"
    );
}

#[tokio::test]
async fn a_stalled_server_times_out_in_processing() {
    let s = Server::start(Behavior::Stall);
    let (r, took) = run(&http_check(&s.url("/"), "500ms", "")).await;
    within(took, Duration::from_millis(500));
    assert_eq!(r.reason, Some(Reason::Timeout));
    assert_eq!(r.steps[0].failed_phase, Some(Phase::Processing));
    assert!(
        r.message
            .as_deref()
            .unwrap()
            .starts_with("step \"request\": timed out during processing"),
        "{:?}",
        r.message
    );
}

#[tokio::test]
async fn a_server_trickling_one_byte_a_second_times_out() {
    let reply = Reply::new(200).body(vec![b'x'; 100]);
    let s = Server::start(Behavior::Trickle {
        interval: Duration::from_secs(1),
        reply,
    });
    let (r, took) = run(&http_check(&s.url("/"), "1500ms", "")).await;
    within(took, Duration::from_millis(1500));
    assert_eq!(r.reason, Some(Reason::Timeout));
}

#[tokio::test]
async fn a_reset_connection_is_a_protocol_failure() {
    let s = Server::start(Behavior::Reset);
    let (r, took) = run(&http_check(&s.url("/"), "2s", "")).await;
    within(took, Duration::from_secs(2));
    assert_eq!(r.reason, Some(Reason::Protocol), "{:?}", r.message);
}

#[tokio::test]
async fn a_100_mib_body_fails_fast_with_body_too_large() {
    let s = Server::start(Behavior::Huge {
        length: 100 * 1024 * 1024,
        chunked: true,
    });
    let (r, took) = run(&http_check(&s.url("/"), "5s", "")).await;
    assert_eq!(r.reason, Some(Reason::BodyTooLarge), "{:?}", r.message);
    assert!(
        took < Duration::from_secs(2),
        "took {took:?}: the body must not be read to the end"
    );
    assert!(s.body_bytes_sent() < 32 * 1024 * 1024);
}

#[tokio::test]
async fn a_self_signed_certificate_fails_tls_unless_trusted() {
    let s = Server::start_tls(
        Behavior::Reply(Reply::new(200).body("ok")),
        TlsSetup::default(),
    );
    let (r, took) = run(&http_check(&s.url("/"), "2s", "")).await;
    within(took, Duration::from_secs(2));
    assert_eq!(r.reason, Some(Reason::Tls));
    assert_eq!(
        r.message.as_deref(),
        Some("step \"request\": certificate verification failed: UnknownIssuer")
    );

    let ca = s.ca_file().display().to_string();
    let (r, _) = run(&http_check(
        &s.url("/"),
        "2s",
        &format!("      tls_config: {{ca_file: \"{ca}\"}}\n      expect: {{cert_min_days: 30}}\n"),
    ))
    .await;
    assert!(r.success, "{:?}", r.message);
    assert!(r.steps[0].cert_not_after.is_some());
    assert!(r.steps[0].phases.tls > Duration::ZERO);
}

#[tokio::test]
async fn a_connect_that_never_completes_times_out_in_connect() {
    let s = Server::blackhole();
    let (r, took) = run(&http_check(&s.url("/"), "400ms", "")).await;
    within(took, Duration::from_millis(400));
    assert_eq!(r.reason, Some(Reason::Timeout));
}
