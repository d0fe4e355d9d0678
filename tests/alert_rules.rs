//! The alert engine's rules, routing, silences and maintenance, driven result by result with a
//! clock the test moves (no sleeping): configurations are real files loaded by
//! `config::load`, results are real `CheckResult`s, and what is asserted is what a receiver
//! would get — which events, to whom, in what order.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use canaryd::alert::engine::{Effects, Engine, Phase};
use canaryd::alert::silence::Silence;
use canaryd::alert::{to_ms, EventKind, Status};
use canaryd::config::{self, Config};
use canaryd::probe::{CheckResult, Reason};

/// 2026-06-01T00:00:00Z
const T0: u64 = 1_780_272_000;

fn write_config(daemon_extra: &str, checks: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let daemon = format!(
        "state_dir: state\ncheck_files: [checks.yaml]\nreceivers:\n  - name: chat\n    webhook: {{url: \"http://127.0.0.1:9/chat\"}}\n  - name: oncall\n    webhook: {{url: \"http://127.0.0.1:9/oncall\"}}\n  - name: am\n    alertmanager: {{url: \"http://127.0.0.1:9/\"}}\n{daemon_extra}"
    );
    std::fs::write(dir.path().join("canaryd.yaml"), daemon).unwrap();
    std::fs::write(dir.path().join("checks.yaml"), checks).unwrap();
    let path = dir.path().join("canaryd.yaml");
    (dir, path)
}

struct Sim {
    engine: Engine,
    config: Config,
    now: SystemTime,
    _dir: tempfile::TempDir,
}

fn result(ok: bool) -> CheckResult {
    if ok {
        CheckResult {
            success: true,
            reason: None,
            message: None,
            duration: Duration::from_millis(120),
            started_at: UNIX_EPOCH,
            steps: Vec::new(),
            observations: Vec::new(),
            queue: None,
        }
    } else {
        CheckResult::failure(
            Reason::Status,
            "step \"request\": expected status 200, got 503",
            UNIX_EPOCH,
            Duration::from_millis(80),
        )
    }
}

impl Sim {
    fn new(daemon_extra: &str, checks: &str) -> Sim {
        Sim::with_refresh(daemon_extra, checks, HashMap::new())
    }

    fn with_refresh(daemon_extra: &str, checks: &str, refresh: HashMap<String, Duration>) -> Sim {
        let (dir, path) = write_config(daemon_extra, checks);
        let config = config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let mut engine = Engine::new("http://127.0.0.1:9464");
        let now = UNIX_EPOCH + Duration::from_secs(T0);
        let fx = engine.configure(&config, refresh, now);
        assert!(fx.sends.is_empty());
        Sim {
            engine,
            config,
            now,
            _dir: dir,
        }
    }

    /// One run of `check` at the current time, then the clock moves by `step`.
    fn run(&mut self, check: &str, ok: bool) -> Effects {
        self.engine.observe(check, &result(ok), self.now)
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    fn tick(&mut self) -> Effects {
        self.engine.tick(self.now)
    }

    fn phase(&self, check: &str, alert: &str) -> Phase {
        self.engine
            .views(self.now)
            .into_iter()
            .find(|v| v.check == check && v.alert == alert)
            .unwrap_or_else(|| panic!("no alert {check}/{alert}"))
            .state
    }
}

/// `receiver:kind` of every send, in order.
fn sent(fx: &Effects) -> Vec<String> {
    fx.sends
        .iter()
        .map(|(r, e)| format!("{r}:{}", e.kind.as_str()))
        .collect()
}

const S: Duration = Duration::from_secs(1);
fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn check(alert: &str) -> String {
    format!(
        "checks:\n  - name: web\n    interval: 10s\n    labels: {{team: web}}\n    http: {{request: {{url: \"http://127.0.0.1:9/\"}}}}\n    alerts:\n{alert}"
    )
}

#[test]
fn consecutive_fires_on_the_nth_failure_in_a_row_and_resolves_on_the_first_success() {
    let mut s = Sim::new(
        "",
        &check("      - {name: Down, when: failed, consecutive: 3}\n"),
    );
    assert!(s.run("web", false).sends.is_empty());
    assert_eq!(s.phase("web", "Down"), Phase::Pending);
    assert!(
        s.run("web", true).sends.is_empty(),
        "a success breaks the run"
    );
    assert_eq!(s.phase("web", "Down"), Phase::Inactive);
    assert!(s.run("web", false).sends.is_empty());
    assert!(s.run("web", false).sends.is_empty());
    let fx = s.run("web", false);
    // No routes: every receiver hears it.
    assert_eq!(sent(&fx), ["chat:trigger", "oncall:trigger", "am:trigger"]);
    let ev = &fx.sends[0].1;
    assert_eq!(ev.status, Status::Firing);
    assert_eq!(ev.labels["team"], "web");
    assert_eq!(ev.labels["alertname"], "Down");
    assert_eq!(ev.reason.as_deref(), Some("status"));
    assert_eq!(ev.value.as_deref(), Some("failed=true"));
    assert!(
        ev.summary.contains("expected status 200, got 503"),
        "{}",
        ev.summary
    );
    assert_eq!(
        fx.save.len(),
        1,
        "the firing state is saved with the notification"
    );
    assert!(
        s.run("web", false).sends.is_empty(),
        "firing: no second trigger"
    );
    let fx = s.run("web", true);
    let mut resolves = sent(&fx);
    resolves.sort();
    assert_eq!(resolves, ["am:resolve", "chat:resolve", "oncall:resolve"]);
    assert_eq!(
        fx.sends[0].1.dedup_key, ev.dedup_key,
        "resolve carries the trigger's key"
    );
    assert_eq!(fx.delete, std::slice::from_ref(&ev.dedup_key));
    assert_eq!(s.phase("web", "Down"), Phase::Inactive);
}

#[test]
fn for_fires_on_the_tick_after_the_condition_held_long_enough() {
    let mut s = Sim::new(
        "routes:\n  - receivers: [chat]\n",
        &check("      - {name: Slow, when: \"duration > 100ms\", for: 30s}\n"),
    );
    assert!(s.run("web", false).sends.is_empty(), "80 ms is not slow");
    s.advance(secs(10));
    assert!(s.run("web", true).sends.is_empty(), "120 ms: pending");
    assert_eq!(s.phase("web", "Slow"), Phase::Pending);
    s.advance(secs(10));
    assert!(s.run("web", true).sends.is_empty());
    s.advance(secs(10));
    assert!(s.tick().sends.is_empty(), "20 s held");
    s.advance(secs(10));
    let fx = s.tick();
    assert_eq!(sent(&fx), ["chat:trigger"], "30 s held: fires on the tick");
    assert_eq!(fx.sends[0].1.starts_at_ms, to_ms(s.now));
    s.advance(secs(10));
    assert_eq!(sent(&s.run("web", false)), ["chat:resolve"]);
}

#[test]
fn window_fires_on_n_of_m_and_one_good_run_does_not_resolve_it() {
    let mut s = Sim::new(
        "routes:\n  - receivers: [chat]\n",
        &check("      - {name: Flaky, when: failed, window: 3 of 5}\n"),
    );
    for ok in [false, true, false, true] {
        assert!(s.run("web", ok).sends.is_empty());
    }
    assert_eq!(s.phase("web", "Flaky"), Phase::Pending);
    assert_eq!(
        sent(&s.run("web", false)),
        ["chat:trigger"],
        "F T F T F: 3 of 5"
    );
    // Failures in the window: T F T F T = 2 < 3.
    assert_eq!(sent(&s.run("web", true)), ["chat:resolve"]);

    let mut s = Sim::new(
        "routes:\n  - receivers: [chat]\n",
        &check("      - {name: Flaky, when: failed, window: 3 of 5}\n"),
    );
    for _ in 0..2 {
        assert!(s.run("web", false).sends.is_empty());
    }
    assert_eq!(sent(&s.run("web", false)), ["chat:trigger"]);
    assert!(
        s.run("web", true).sends.is_empty(),
        "F F F T: still 3 of the last 5"
    );
    assert!(s.run("web", true).sends.is_empty(), "F F F T T: still 3");
    assert_eq!(sent(&s.run("web", true)), ["chat:resolve"], "F F T T T: 2");
}

#[test]
fn keep_firing_for_damps_flapping() {
    let mut s = Sim::new(
        "routes:\n  - receivers: [chat]\n",
        &check("      - {name: Down, when: failed, keep_firing_for: 1m}\n"),
    );
    assert_eq!(sent(&s.run("web", false)), ["chat:trigger"]);
    s.advance(secs(10));
    assert!(
        s.run("web", true).sends.is_empty(),
        "recovered 10 s ago: kept"
    );
    s.advance(secs(10));
    assert!(
        s.run("web", false).sends.is_empty(),
        "flapped back: no new trigger"
    );
    s.advance(secs(10));
    assert!(s.run("web", true).sends.is_empty());
    s.advance(secs(49));
    assert!(s.tick().sends.is_empty(), "59 s since the last failure");
    s.advance(S);
    assert_eq!(
        sent(&s.tick()),
        ["chat:resolve"],
        "60 s: resolved by the tick"
    );
}

#[test]
fn a_warning_goes_to_chat_and_pages_after_30_minutes_once() {
    let mut s = Sim::new(
        "routes:\n  - match: {severity: critical}\n    receivers: [oncall, chat]\n  - receivers: [chat]\n    escalate: {after: 30m, receivers: [oncall]}\n",
        &check("      - {name: Slow, when: failed, severity: warning}\n      - {name: Down, when: failed, consecutive: 2, severity: critical}\n"),
    );
    assert_eq!(
        sent(&s.run("web", false)),
        ["chat:trigger"],
        "warning → chat only"
    );
    assert_eq!(
        sent(&s.run("web", false)),
        ["oncall:trigger", "chat:trigger"],
        "critical → first route"
    );
    s.advance(secs(29 * 60 + 59));
    assert!(s.tick().sends.is_empty());
    s.advance(S);
    let fx = s.tick();
    assert_eq!(
        sent(&fx),
        ["oncall:escalation"],
        "still firing after 30 m → page"
    );
    assert_eq!(fx.sends[0].1.status, Status::Firing);
    assert_eq!(fx.sends[0].1.alert, "Slow");
    s.advance(secs(3600));
    assert!(s.tick().sends.is_empty(), "escalates once");
    let mut resolves = sent(&s.run("web", true));
    resolves.sort();
    assert_eq!(
        resolves,
        [
            "chat:resolve",
            "chat:resolve",
            "oncall:resolve",
            "oncall:resolve"
        ],
        "both alerts resolve everywhere they were heard, escalation included"
    );
}

#[test]
fn repeat_interval_reminds_while_firing_but_not_receivers_that_get_leases() {
    let mut refresh = HashMap::new();
    refresh.insert("am".to_string(), Duration::from_secs(60));
    let mut s = Sim::with_refresh(
        "routes:\n  - receivers: [chat, am]\n    repeat_interval: 1h\n",
        &check("      - {name: Down, when: failed}\n"),
        refresh,
    );
    assert_eq!(sent(&s.run("web", false)), ["chat:trigger", "am:trigger"]);
    let mut reminders = 0;
    let mut refreshes = 0;
    for _ in 0..(2 * 3600) {
        s.advance(S);
        for line in sent(&s.tick()) {
            match line.as_str() {
                "chat:reminder" => reminders += 1,
                "am:refresh" => refreshes += 1,
                other => panic!("unexpected {other}"),
            }
        }
    }
    assert_eq!(reminders, 2, "one reminder an hour to chat");
    assert_eq!(refreshes, 120, "Alertmanager's lease renewed every minute");
}

#[test]
fn a_silence_holds_the_trigger_back_and_it_goes_out_when_the_silence_ends() {
    let mut s = Sim::new(
        "routes:\n  - receivers: [oncall]\n",
        &check("      - {name: Down, when: failed}\n"),
    );
    let now = to_ms(s.now);
    s.engine.set_silences(vec![Silence {
        id: "s1".into(),
        matchers: [("check".to_string(), "w*".to_string())].into(),
        starts_at_ms: now,
        ends_at_ms: now + 600_000,
        created_by: "ana".into(),
        comment: "deploy".into(),
        created_at_ms: now,
    }]);
    assert!(s.run("web", false).sends.is_empty(), "silenced");
    let view = s.engine.views(s.now).remove(0);
    assert_eq!(
        view.state,
        Phase::Firing,
        "a silenced alert still evaluates"
    );
    assert!(view.silenced);
    s.advance(secs(599));
    assert!(s.tick().sends.is_empty());
    s.advance(S);
    let fx = s.tick();
    assert_eq!(
        sent(&fx),
        ["oncall:trigger"],
        "still firing when the silence ended"
    );
    assert_eq!(
        fx.sends[0].1.starts_at_ms,
        to_ms(s.now - secs(600)),
        "starts when it fired"
    );
    assert_eq!(sent(&s.run("web", true)), ["oncall:resolve"]);

    // Fired and resolved inside a silence: nothing at all.
    let now = to_ms(s.now);
    s.engine.set_silences(vec![Silence {
        id: "s2".into(),
        matchers: [("alertname".to_string(), "Down".to_string())].into(),
        starts_at_ms: now,
        ends_at_ms: now + 600_000,
        created_by: "ana".into(),
        comment: "deploy".into(),
        created_at_ms: now,
    }]);
    assert!(s.run("web", false).sends.is_empty());
    assert!(s.run("web", true).sends.is_empty());
    s.advance(secs(700));
    assert!(s.tick().sends.is_empty());
}

#[test]
fn weekly_maintenance_mutes_only_inside_each_window() {
    // T0 is a Monday 00:00 UTC; the window is every Monday 00:00–01:00 from the week before.
    let mut s = Sim::new(
        "routes:\n  - receivers: [oncall]\nmaintenance:\n  - checks: [we*]\n    start: \"2026-05-25T00:00:00Z\"\n    duration: 1h\n    every: 1w\n",
        &check("      - {name: Down, when: failed}\n"),
    );
    assert!(
        s.run("web", false).sends.is_empty(),
        "inside this week's window"
    );
    s.advance(secs(3600));
    assert_eq!(sent(&s.tick()), ["oncall:trigger"], "window over: notifies");
    assert_eq!(sent(&s.run("web", true)), ["oncall:resolve"]);
    s.advance(secs(3 * 86400));
    assert_eq!(
        sent(&s.run("web", false)),
        ["oncall:trigger"],
        "Thursday: not muted"
    );
    assert_eq!(sent(&s.run("web", true)), ["oncall:resolve"]);
    s.advance(secs(4 * 86400 - 3600 + 60));
    assert!(
        s.run("web", false).sends.is_empty(),
        "next Monday 00:01: muted again"
    );
}

#[test]
fn restored_firing_alerts_do_not_page_again_and_resolve_when_cleared() {
    let checks = check("      - {name: Down, when: failed, consecutive: 2}\n");
    let mut s = Sim::new("routes:\n  - receivers: [oncall]\n", &checks);
    s.run("web", false);
    let fx = s.run("web", false);
    assert_eq!(sent(&fx), ["oncall:trigger"]);
    let rows = fx.save.clone();

    // A new engine from the saved rows, as after a restart.
    let mut again = Engine::new("http://127.0.0.1:9464");
    again.restore(rows.clone());
    let fx = again.configure(&s.config, HashMap::new(), s.now);
    assert!(fx.sends.is_empty(), "restored, not re-triggered");
    assert!(
        again.tick(s.now + secs(3600)).sends.is_empty(),
        "no result yet: keeps firing"
    );
    assert!(
        again.observe("web", &result(false), s.now).sends.is_empty(),
        "still failing"
    );
    let fx = again.observe("web", &result(true), s.now);
    assert_eq!(
        sent(&fx),
        ["oncall:resolve"],
        "cleared while down: resolved"
    );
    assert_eq!(fx.sends[0].1.dedup_key, rows[0].dedup_key);

    // A restored alert whose rule is gone is resolved at once.
    let mut gone = Engine::new("http://127.0.0.1:9464");
    gone.restore(rows);
    let (_d, path) = write_config(
        "routes:\n  - receivers: [oncall]\n",
        &check("      - {name: Other, when: failed}\n"),
    );
    let other = config::load(&path).unwrap();
    assert_eq!(
        sent(&gone.configure(&other, HashMap::new(), s.now)),
        ["oncall:resolve"]
    );
}

#[test]
fn default_rule_is_check_failing_after_three_failures() {
    let mut s = Sim::new(
        "",
        "checks:\n  - name: plain\n    http: {request: {url: \"http://127.0.0.1:9/\"}}\n",
    );
    s.run("plain", false);
    s.run("plain", false);
    let fx = s.run("plain", false);
    assert_eq!(fx.sends.len(), 3);
    assert_eq!(fx.sends[0].1.alert, "CheckFailing");
    assert_eq!(fx.sends[0].1.severity, "critical");
    assert_eq!(fx.sends[0].1.summary, "check plain failing: status");
}

#[test]
fn annotations_are_templated_from_the_result() {
    let mut s = Sim::new(
        "",
        &check("      - name: Down\n        when: failed\n        annotations:\n          summary: \"${check} (${team}) failed: ${reason} [${value}] ${message}\"\n          runbook_url: https://runbooks.example/web\n          description: \"see ${runbook_url}\"\n"),
    );
    let fx = s.run("web", false);
    let ev = &fx.sends[0].1;
    assert_eq!(
        ev.summary,
        "web (web) failed: status [failed=true] step \"request\": expected status 200, got 503"
    );
    assert_eq!(
        ev.annotations["description"],
        "see https://runbooks.example/web"
    );
    assert_eq!(ev.generator_url, "http://127.0.0.1:9464/api/v1/checks/web");
}

#[test]
fn dedup_keys_are_the_same_for_every_replica() {
    let a = Sim::new("", &check("      - {name: Down, when: failed}\n"));
    let b = Sim::new("", &check("      - {name: Down, when: failed}\n"));
    let key = |s: &Sim| s.engine.views(s.now)[0].dedup_key.clone();
    assert_eq!(key(&a), key(&b));
    let c = Sim::new(
        "",
        &check("      - {name: Down, when: failed, labels: {tier: gold}}\n"),
    );
    assert_ne!(key(&a), key(&c), "labels are part of the identity");
    assert!(matches!(EventKind::Trigger, EventKind::Trigger));
}
