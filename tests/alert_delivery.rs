//! Alert delivery end to end: the durable outbox against local receivers that implement
//! PagerDuty's, Slack's and a webhook's documented APIs (`tests/receivers/`), a simulated
//! hour-long outage on a clock the test moves, `kill -9` of the real daemon while an alert
//! fires, a storm of 1,000 alerts, and a canary search for receiver secrets in every output.

mod receivers;
mod services;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use canaryd::alert::outbox::Next;
use canaryd::alert::receiver::Verdict;
use canaryd::loader as config;
use canaryd::metrics::{Format, Metrics};
use canaryd::store::Store;
use receivers::bench::{at, failure, success, Bench};
use receivers::{Mode, PagerDuty, Slack, Webhook};
use serde_json::Value;
use services::Target;

const BIN: &str = env!("CARGO_BIN_EXE_canaryd");
/// A PagerDuty routing key is 32 characters.
const ROUTING_KEY: &str = "R0UTINGKEYcanary0123456789abcdef";
const HOOK_SECRET: &str = "hook-hmac-canary-Zq93";
const HEADER_SECRET: &str = "header-canary-Lp27";

/// 2026-06-01T00:00:00Z
const T0: u64 = 1_780_272_000;

// ---------------------------------------------------------------------------------------------
// A target whose "login" breaks on demand, and the real daemon
// ---------------------------------------------------------------------------------------------

/// `canaryd run` with its output in a file (so a `kill -9` loses none of it).
struct Daemon {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Daemon {
    fn start(config: &Path, addr: &str, log: &Path) -> Daemon {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(BIN)
            .args(["run", "--log-level", "trace", "--config"])
            .arg(config)
            .env("PD_KEY", ROUTING_KEY)
            .env("HOOK_SECRET", HOOK_SECRET)
            .env("HEADER_SECRET", HEADER_SECRET)
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap();
        let d = Daemon {
            child,
            addr: addr.to_string(),
            log: log.to_path_buf(),
        };
        let t = Instant::now();
        while std::net::TcpStream::connect(&d.addr).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "canaryd did not start:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    fn get(&self, path: &str) -> String {
        services::http_get(&format!("http://{}{path}", self.addr))
            .map(|r| r.text())
            .unwrap_or_default()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            if t.elapsed() > Duration::from_secs(15) {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_setup(dir: &Path, port: u16, target: &Target, receivers: &str, rule: &str) -> PathBuf {
    std::fs::write(
        dir.join("canaryd.yaml"),
        format!(
            "listen: 127.0.0.1:{port}\nstate_dir: state\ncheck_files: [checks.yaml]\n{receivers}"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("checks.yaml"),
        format!(
            "checks:\n  - name: shop-login\n    interval: 1s\n    timeout: 900ms\n    labels: {{team: web}}\n    http:\n      request: {{url: \"http://{}/login\"}}\n      expect: {{status: 200, body_contains: Sign out}}\n    alerts:\n{rule}",
            target.addr
        ),
    )
    .unwrap();
    dir.join("canaryd.yaml")
}

fn wait(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// PagerDuty through the real daemon
// ---------------------------------------------------------------------------------------------

const LOGIN_RULE: &str =
    "      - {name: LoginFailing, when: failed, consecutive: 2, severity: critical}\n";

fn pd_receivers(pd: &PagerDuty) -> String {
    format!(
        "receivers:\n  - name: oncall\n    pagerduty: {{routing_key: \"${{env:PD_KEY}}\", url: \"{}\"}}\nroutes:\n  - receivers: [oncall]\n",
        pd.url()
    )
}

#[test]
fn pagerduty_gets_a_trigger_then_a_resolve_with_the_same_dedup_key() {
    let pd = PagerDuty::start();
    pd.expect_routing_key(ROUTING_KEY);
    let target = Target::start();
    let dir = tempfile::tempdir().unwrap();
    let port = services::free_port();
    let cfg = write_setup(dir.path(), port, &target, &pd_receivers(&pd), LOGIN_RULE);
    let d = Daemon::start(&cfg, &format!("127.0.0.1:{port}"), &dir.path().join("log"));

    wait("a passing run", Duration::from_secs(10), || {
        d.get("/metrics")
            .contains("canary_check_success{check=\"shop-login\"} 1")
    });
    target.set_broken(true);
    assert!(
        pd.wait_for_events(1, Duration::from_secs(10)),
        "no trigger:\n{}",
        d.log()
    );
    let trigger = pd.events()[0].clone();
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["payload"]["severity"], "critical");
    assert_eq!(trigger["payload"]["custom_details"]["check"], "shop-login");
    assert_eq!(trigger["payload"]["custom_details"]["reason"], "status");
    assert!(trigger["payload"]["summary"]
        .as_str()
        .unwrap()
        .contains("got 500"));
    let alerts: Value = serde_json::from_str(&d.get("/api/v1/alerts")).unwrap();
    let a = &alerts["alerts"][0];
    assert_eq!(a["state"], "firing");
    assert_eq!(a["dedup_key"], trigger["dedup_key"]);
    assert!(d.get("/metrics").contains(
        "canary_alert_state{check=\"shop-login\",alert=\"LoginFailing\",severity=\"critical\"} 2"
    ));

    target.set_broken(false);
    assert!(
        pd.wait_for_events(2, Duration::from_secs(10)),
        "no resolve:\n{}",
        d.log()
    );
    let resolve = &pd.events()[1];
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
    let incidents = pd.incidents();
    assert_eq!(incidents.len(), 1);
    assert!(!incidents[0].open);
    assert_eq!(incidents[0].opened, 1);
    // The fake records the event before its answer reaches canaryd, which counts it then.
    let sent = "canaryd_notifications_total{receiver=\"oncall\",result=\"sent\"} 2";
    wait(
        "both notifications counted as sent",
        Duration::from_secs(10),
        || d.get("/metrics").contains(sent),
    );
    d.stop();
}

#[test]
fn kill_9_while_firing_neither_repages_nor_loses_the_resolve_or_a_queued_trigger() {
    let pd = PagerDuty::start();
    let target = Target::start();
    let dir = tempfile::tempdir().unwrap();
    let port = services::free_port();
    let addr = format!("127.0.0.1:{port}");
    let cfg = write_setup(dir.path(), port, &target, &pd_receivers(&pd), LOGIN_RULE);
    let log = dir.path().join("log");

    // 1. PagerDuty is down when the alert fires: the trigger waits in the outbox ...
    pd.set_mode(Mode::Status(503));
    let d = Daemon::start(&cfg, &addr, &log);
    target.set_broken(true);
    wait("a refused trigger", Duration::from_secs(10), || {
        pd.requests() >= 1
    });
    // ... when canaryd is killed.
    d.kill9();
    assert!(pd.events().is_empty());

    // 2. Restarted with PagerDuty back: the queued trigger goes out, once.
    pd.set_mode(Mode::Accept);
    let d = Daemon::start(&cfg, &addr, &log);
    assert!(
        pd.wait_for_events(1, Duration::from_secs(15)),
        "queued trigger lost:\n{}",
        d.log()
    );
    // Still failing for several runs after the restart: restored as firing, no new page.
    std::thread::sleep(Duration::from_secs(3));
    d.kill9();
    assert_eq!(
        pd.events().len(),
        1,
        "re-paged after a restart: {:?}",
        pd.events()
    );

    // 3. Fixed while canaryd is down: the next start resolves it.
    target.set_broken(false);
    let d = Daemon::start(&cfg, &addr, &log);
    assert!(
        pd.wait_for_events(2, Duration::from_secs(15)),
        "no resolve after restart:\n{}",
        d.log()
    );
    let events = pd.events();
    assert_eq!(events[1]["event_action"], "resolve");
    assert_eq!(events[1]["dedup_key"], events[0]["dedup_key"]);
    let inc = pd.incidents();
    assert_eq!(
        (inc.len(), inc[0].opened, inc[0].triggers, inc[0].open),
        (1, 1, 1, false)
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(pd.events().len(), 2);
    d.stop();
}

// ---------------------------------------------------------------------------------------------
// The outbox on a clock the test moves
// ---------------------------------------------------------------------------------------------

fn two_checks() -> String {
    let mut s = String::from("checks:\n");
    for name in ["login-a", "login-b"] {
        s.push_str(&format!(
            "  - name: {name}\n    http: {{request: {{url: \"http://127.0.0.1:9/\"}}}}\n    alerts:\n      - {{name: Down, when: failed}}\n"
        ));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hour_long_pagerduty_outage_loses_nothing_and_delivers_in_order() {
    let pd = PagerDuty::start();
    let mut now = at(T0);
    std::env::set_var("PD_KEY", ROUTING_KEY);
    let mut b = Bench::new(&pd_receivers(&pd), &two_checks(), now);
    pd.set_mode(Mode::Status(502));
    b.observe("login-a", &failure(), now);
    b.observe("login-b", &failure(), now);
    now += Duration::from_secs(30);
    b.observe("login-a", &success(), now);
    assert_eq!(b.waiting(), 3, "trigger a, trigger b, resolve a");

    // One simulated hour of 5xx, network refusals and 429s, checked every 5 s.
    let end = now + Duration::from_secs(3600);
    let mut attempts = 0;
    while now < end {
        let elapsed = now.duration_since(at(T0)).unwrap().as_secs();
        pd.set_mode(match (elapsed / 600) % 3 {
            0 => Mode::Status(502),
            1 => Mode::Refuse,
            _ => Mode::Status(503),
        });
        if let (Next::Again, Some(v)) = b.deliver("oncall", now).await {
            assert!(matches!(v, Verdict::Retry { .. }), "{v:?}");
            attempts += 1;
        }
        now += Duration::from_secs(5);
    }
    assert!(pd.events().is_empty());
    assert_eq!(b.waiting(), 3, "nothing dropped during the outage");
    // Capped backoff: about one attempt a minute, never a tight loop, never given up.
    assert!(
        (55..=140).contains(&attempts),
        "{attempts} attempts in an hour"
    );

    // Rate limited with Retry-After: the next attempt waits exactly that long.
    pd.set_mode(Mode::RateLimit {
        retry_after_secs: Some(120),
    });
    let due = loop {
        match b.deliver("oncall", now).await {
            (Next::At(t), None) => now = t,
            (Next::Again, Some(Verdict::Retry { after, .. })) => {
                assert_eq!(after, Some(Duration::from_secs(120)));
                break now;
            }
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        b.deliver("oncall", due).await.0,
        Next::At(due + Duration::from_secs(120))
    );

    // Recovery: everything, in order, each once.
    pd.set_mode(Mode::Accept);
    now = due + Duration::from_secs(120);
    loop {
        match b.deliver("oncall", now).await {
            (Next::Idle, _) => break,
            (Next::At(t), _) => now = t,
            (Next::Again, _) => {}
        }
    }
    let got: Vec<(String, String)> = pd
        .events()
        .iter()
        .map(|e| {
            let check = e["payload"]["custom_details"]["check"]
                .as_str()
                .unwrap_or("")
                .to_string();
            (e["event_action"].as_str().unwrap().to_string(), check)
        })
        .collect();
    assert_eq!(got[0], ("trigger".into(), "login-a".into()));
    assert_eq!(got[1], ("trigger".into(), "login-b".into()));
    assert_eq!(
        got[2].0, "resolve",
        "the resolve never overtakes its trigger"
    );
    assert_eq!(got.len(), 3);
    assert_eq!(b.waiting(), 0);
    let inc = pd.incidents();
    assert_eq!(
        inc.iter().filter(|i| i.open).count(),
        1,
        "b still open, a resolved"
    );
    let m = b.metrics.encode(Format::Text);
    assert!(
        m.contains("canaryd_notifications_total{receiver=\"oncall\",result=\"sent\"} 3"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_is_final_counted_and_does_not_block_the_queue() {
    let pd = PagerDuty::start();
    pd.expect_routing_key("another-key-another-key-another-k");
    let now = at(T0);
    std::env::set_var("PD_KEY", ROUTING_KEY);
    let mut b = Bench::new(&pd_receivers(&pd), &two_checks(), now);
    b.observe("login-a", &failure(), now);
    match b.deliver("oncall", now).await {
        (Next::Again, Some(Verdict::Rejected { reason })) => {
            assert!(reason.starts_with("HTTP 400"), "{reason}");
            assert!(!reason.contains(ROUTING_KEY));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(b.waiting(), 0, "final: dropped, not retried");
    let m = b.metrics.encode(Format::Text);
    assert!(
        m.contains("canaryd_notifications_total{receiver=\"oncall\",result=\"rejected\"} 1"),
        "{m}"
    );
    pd.expect_routing_key(ROUTING_KEY);
    b.observe("login-b", &failure(), now);
    assert_eq!(b.deliver("oncall", now).await.1, Some(Verdict::Accepted));
    assert_eq!(pd.events().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_1000_failures_becomes_a_few_bounded_notifications() {
    let hook = Webhook::start();
    let slack = Slack::start();
    let mut checks = String::from("checks:\n");
    for i in 0..1000 {
        checks.push_str(&format!(
            "  - name: site-{i:04}\n    http: {{request: {{url: \"http://127.0.0.1:9/\"}}}}\n    alerts:\n      - {{name: Down, when: failed}}\n"
        ));
    }
    let receivers = format!(
        "receivers:\n  - name: hook\n    webhook: {{url: \"{}\"}}\n  - name: chat\n    slack: {{webhook_url: \"{}\"}}\n",
        hook.url(),
        slack.url()
    );
    let now = at(T0);
    std::env::set_var("PD_KEY", ROUTING_KEY);
    let mut b = Bench::new(&receivers, &checks, now);
    for i in 0..1000 {
        b.observe(&format!("site-{i:04}"), &failure(), now);
    }
    for r in ["hook", "chat"] {
        while b.deliver(r, now).await.0 != Next::Idle {}
    }
    let requests = hook.accepted();
    assert_eq!(
        requests.len(),
        10,
        "1,000 alerts in 10 webhook requests of 100"
    );
    let mut keys = std::collections::HashSet::new();
    for r in &requests {
        let events = r.json().unwrap()["events"].as_array().unwrap().clone();
        assert!(events.len() <= 100);
        for e in events {
            assert_eq!(e["status"], "firing");
            keys.insert(e["dedup_key"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(keys.len(), 1000, "every alert exactly once");
    let messages = slack.messages();
    assert_eq!(messages.len(), 10, "10 Slack messages, not 1,000");
    for m in &messages {
        let text = m["text"].as_str().unwrap();
        assert!(
            text.starts_with("*100 alerts: 100 firing, 0 resolved*"),
            "{text}"
        );
        assert!(
            text.lines().count() <= 22,
            "bounded: {} lines",
            text.lines().count()
        );
        assert!(text.contains("…and 80 more"));
    }
}

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

#[test]
fn routing_keys_and_webhook_secrets_never_appear_in_logs_errors_metrics_or_the_api() {
    let pd = PagerDuty::start();
    pd.set_mode(Mode::Status(400)); // every page refused: errors get logged
    let slack = Slack::start();
    slack.set_mode(Mode::Gone);
    let hook = Webhook::start().with_hmac_secret(HOOK_SECRET);
    hook.set_mode(Mode::Status(500));
    let target = Target::start();
    let dir = tempfile::tempdir().unwrap();
    let port = services::free_port();
    let receivers = format!(
        "receivers:\n  - name: oncall\n    pagerduty: {{routing_key: \"${{env:PD_KEY}}\", url: \"{}\"}}\n  - name: chat\n    slack: {{webhook_url: \"{}\"}}\n  - name: hook\n    webhook:\n      url: \"{}\"\n      secret: \"${{env:HOOK_SECRET}}\"\n      headers: {{X-Api-Key: \"${{env:HEADER_SECRET}}\"}}\n  - name: am\n    alertmanager: {{url: \"http://127.0.0.1:9\"}}\n",
        pd.url(),
        slack.url(),
        hook.url()
    );
    let cfg = write_setup(
        dir.path(),
        port,
        &target,
        &receivers,
        "      - {name: LoginFailing, when: failed}\n",
    );
    let d = Daemon::start(&cfg, &format!("127.0.0.1:{port}"), &dir.path().join("log"));
    target.set_broken(true);
    wait("every receiver tried", Duration::from_secs(20), || {
        pd.requests() >= 1 && slack.requests() >= 1 && hook.requests().len() >= 2
    });
    // The webhook got a valid signature and the header, so the secrets were used ...
    let req = &hook.requests()[0];
    assert_eq!(req.signature_ok, Some(true));
    assert_eq!(req.header("x-api-key"), Some(HEADER_SECRET));
    target.set_broken(false);
    std::thread::sleep(Duration::from_secs(2));
    // ... and appear nowhere a person or a scraper can see.
    let outputs = [
        d.get("/metrics"),
        d.get("/api/v1/alerts"),
        d.get("/api/v1/checks"),
        d.get("/api/v1/checks/shop-login"),
    ];
    let token = slack.token();
    d.stop();
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(
        log.contains("notification refused by the receiver"),
        "{log}"
    );
    assert!(log.contains("will retry"), "{log}");
    for (i, out) in outputs.iter().chain([&log]).enumerate() {
        for secret in [
            ROUTING_KEY,
            HOOK_SECRET,
            HEADER_SECRET,
            token.as_str(),
            slack.secret_path().as_str(),
        ] {
            assert!(!out.contains(secret), "output {i} leaks a secret:\n{out}");
        }
    }
    let check = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&cfg)
        .env("PD_KEY", ROUTING_KEY)
        .env("HOOK_SECRET", HOOK_SECRET)
        .env("HEADER_SECRET", HEADER_SECRET)
        .output()
        .unwrap();
    let mut all = String::new();
    let _ = check.stdout.as_slice().read_to_string(&mut all);
    let _ = check.stderr.as_slice().read_to_string(&mut all);
    assert!(!all.contains(ROUTING_KEY));
}

// ---------------------------------------------------------------------------------------------
// A real Alertmanager
// ---------------------------------------------------------------------------------------------

#[test]
fn a_real_alertmanager_shows_the_login_failure_firing_then_resolved() {
    // Alertmanager forwards to a webhook, with resolved notifications, so its own view of
    // "resolved" is observable too.
    let am_hook = Webhook::start();
    let Some(am) = services::Alertmanager::start(&format!(
        "route:\n  receiver: hook\n  group_by: [alertname, check]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: \"{}\"\n        send_resolved: true\n",
        am_hook.url()
    )) else {
        return;
    };
    let target = Target::start();
    let dir = tempfile::tempdir().unwrap();
    let port = services::free_port();
    let receivers = format!(
        "receivers:\n  - name: am\n    alertmanager: {{url: \"{}\"}}\n",
        am.url()
    );
    let cfg = write_setup(dir.path(), port, &target, &receivers, LOGIN_RULE);
    let d = Daemon::start(&cfg, &format!("127.0.0.1:{port}"), &dir.path().join("log"));
    wait("a passing run", Duration::from_secs(10), || {
        d.get("/metrics")
            .contains("canary_check_success{check=\"shop-login\"} 1")
    });
    target.set_broken(true);
    let active = |am: &services::Alertmanager| -> Option<Value> {
        am.alerts()
            .as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == "LoginFailing")
            .cloned()
    };
    wait("the alert in Alertmanager", Duration::from_secs(15), || {
        active(&am).is_some()
    });
    let a = active(&am).unwrap();
    assert_eq!(a["status"]["state"], "active");
    assert_eq!(a["labels"]["check"], "shop-login");
    assert_eq!(a["labels"]["severity"], "critical");
    assert_eq!(a["labels"]["team"], "web");
    assert_eq!(a["annotations"]["failed_step"], "request");
    assert!(a["annotations"]["summary"]
        .as_str()
        .unwrap()
        .contains("got 500"));
    assert_eq!(
        a["generatorURL"],
        format!("http://127.0.0.1:{port}/api/v1/checks/shop-login")
    );
    // endsAt is a lease, minutes ahead: Alertmanager keeps it while canaryd refreshes it.
    let ends = humantime::parse_rfc3339_weak(
        a["endsAt"]
            .as_str()
            .unwrap()
            .trim_end_matches('Z')
            .split('.')
            .next()
            .unwrap(),
    )
    .unwrap();
    assert!(ends > SystemTime::now() + Duration::from_secs(120));
    wait(
        "Alertmanager's firing notification",
        Duration::from_secs(15),
        || {
            am_hook
                .accepted()
                .iter()
                .any(|r| r.json().is_some_and(|v| v["status"] == "firing"))
        },
    );

    target.set_broken(false);
    wait(
        "the alert resolved in Alertmanager",
        Duration::from_secs(15),
        || active(&am).is_none(),
    );
    wait(
        "Alertmanager's resolved notification",
        Duration::from_secs(15),
        || {
            am_hook.accepted().iter().any(|r| {
                r.json().is_some_and(|v| {
                    v["status"] == "resolved"
                        && v["alerts"][0]["labels"]["alertname"] == "LoginFailing"
                })
            })
        },
    );
    d.stop();
}

// ---------------------------------------------------------------------------------------------
// Silences through the CLI and the API, and the watchdog
// ---------------------------------------------------------------------------------------------

fn cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn a_silence_from_the_cli_holds_the_page_until_it_is_expired_and_the_watchdog_is_called() {
    let hook = Webhook::start();
    let deadman = Webhook::start();
    let target = Target::start();
    let dir = tempfile::tempdir().unwrap();
    let port = services::free_port();
    let receivers = format!(
        "receivers:\n  - name: hook\n    webhook: {{url: \"{}\"}}\nwatchdog: {{url: \"{}\", every: 1s}}\n",
        hook.url(),
        deadman.url()
    );
    let cfg = write_setup(dir.path(), port, &target, &receivers, LOGIN_RULE);
    let d = Daemon::start(&cfg, &format!("127.0.0.1:{port}"), &dir.path().join("log"));
    let api = format!("http://127.0.0.1:{port}");

    // The dead-man's switch hears from a healthy canaryd every second.
    wait("watchdog calls", Duration::from_secs(10), || {
        deadman.requests().len() >= 2
    });
    assert_eq!(deadman.requests()[0].method, "GET");

    let (code, out) = cli(&[
        "silence",
        "add",
        "--url",
        &api,
        "--match",
        "check=shop-*",
        "--duration",
        "1h",
        "--author",
        "ana",
        "--comment",
        "DB migration",
    ]);
    assert_eq!(code, 0, "{out}");
    let id = out
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    let (code, out) = cli(&["silence", "list", "--url", &api]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&id)
            && out.contains("active")
            && out.contains("check=shop-*")
            && out.contains("DB migration"),
        "{out}"
    );

    target.set_broken(true);
    wait(
        "the alert firing, silenced",
        Duration::from_secs(10),
        || {
            let v: Value = serde_json::from_str(&d.get("/api/v1/alerts")).unwrap_or_default();
            v["alerts"][0]["state"] == "firing" && v["alerts"][0]["silenced"] == true
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(hook.requests().is_empty(), "a silenced alert paged");
    assert!(d.get("/metrics").contains(
        "canary_alert_state{check=\"shop-login\",alert=\"LoginFailing\",severity=\"critical\"} 2"
    ));

    let (code, out) = cli(&["silence", "expire", "--url", &api, &id]);
    assert_eq!(code, 0, "{out}");
    assert!(
        hook.wait_for_requests(1, Duration::from_secs(10)),
        "no page after the silence ended"
    );
    let ev = &hook.requests()[0].json().unwrap()["events"][0];
    assert_eq!(
        (ev["kind"].as_str(), ev["alert"].as_str()),
        (Some("trigger"), Some("LoginFailing"))
    );
    let (_, out) = cli(&["silence", "list", "--url", &api]);
    assert!(
        !out.contains(&id),
        "expired silences are hidden without --all: {out}"
    );
    let (_, out) = cli(&["silence", "list", "--all", "--url", &api]);
    assert!(out.contains(&id) && out.contains("expired"), "{out}");

    // Bad requests say what is wrong.
    let (code, out) = cli(&["silence", "expire", "--url", &api, "no-such-id"]);
    assert_eq!(code, 1);
    assert!(out.contains("no silence \"no-such-id\""), "{out}");
    for (body, expect) in [
        (
            r#"{"matchers": {}, "duration": "1h", "created_by": "a", "comment": "c"}"#,
            "at least one matcher",
        ),
        (
            r#"{"matchers": {"check": "x"}, "duration": "soon", "created_by": "a", "comment": "c"}"#,
            "duration: invalid",
        ),
        (
            r#"{"matchers": {"check": "x"}, "duration": "1h", "created_by": "", "comment": "c"}"#,
            "who makes the silence",
        ),
        (
            r#"{"matchers": {"check": "x"}, "created_by": "a", "comment": "c"}"#,
            "exactly one of ends_at and duration",
        ),
        (
            r#"{"matchers": {"check": "x"}, "duration": "1h", "by": "a"}"#,
            "unknown field",
        ),
    ] {
        let r = services::http_post(
            &format!("{api}/api/v1/silences"),
            "application/json",
            body.as_bytes(),
        )
        .unwrap();
        assert_eq!(r.status, 400, "{body}");
        assert!(r.text().contains(expect), "{body}: {}", r.text());
    }
    d.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_vouches_only_for_a_running_scheduler_and_a_moving_outbox() {
    use canaryd::alert::service::{notifiers, Alerting};
    use canaryd::clock::{Clock, ManualClock};

    let pd = PagerDuty::start();
    pd.set_mode(Mode::Refuse);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("canaryd.yaml"),
        format!(
            "state_dir: state\ncheck_files: [checks.yaml]\n{}",
            pd_receivers(&pd)
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("checks.yaml"),
        two_checks().replace("    http:", "    interval: 10s\n    http:"),
    )
    .unwrap();
    std::env::set_var("PD_KEY", ROUTING_KEY);
    let cfg = config::load(&dir.path().join("canaryd.yaml")).unwrap();
    let clock = Arc::new(ManualClock::new(at(T0)));
    let store = Store::open(&dir.path().join("state")).unwrap();
    let metrics = Arc::new(Metrics::new());
    let a = Alerting::start(
        store,
        &cfg.checks,
        &cfg.alerting,
        cfg.api_url(),
        notifiers(&cfg.alerting, &cfg.path).unwrap(),
        metrics.clone(),
        clock.clone(),
    )
    .unwrap();
    assert_eq!(a.health(), Ok(()));

    // No result for 70 s with a 10 s interval: the scheduler is not running.
    clock.advance(Duration::from_secs(70));
    let e = a.health().unwrap_err();
    assert!(e.starts_with("no check result for 70 s"), "{e}");
    a.observe("login-a", &success());
    assert_eq!(a.health(), Ok(()));

    // A page that cannot get out for more than 10 minutes: the delivery path is wedged.
    a.observe("login-b", &failure());
    wait_async(|| pd.refused_connections() >= 1).await;
    clock.advance(Duration::from_secs(30));
    a.observe("login-a", &success());
    a.refresh_outbox_state().await;
    assert_eq!(
        a.health(),
        Ok(()),
        "30 s of waiting is a retry, not a wedge"
    );
    assert!(metrics
        .encode(Format::Text)
        .contains("canaryd_notification_queue_length{receiver=\"oncall\"} 1"));
    clock.advance(Duration::from_secs(600));
    a.observe("login-a", &success());
    a.refresh_outbox_state().await;
    let e = a.health().unwrap_err();
    assert!(
        e.starts_with("a notification has waited in the outbox for 630 s"),
        "{e}"
    );
    assert!(clock.now() > at(T0));
    a.shutdown();
}

async fn wait_async(mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < Duration::from_secs(10), "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
