//! The alert engine's rules, routing, silences and maintenance, driven result by result with a
//! clock the test moves (no sleeping): configurations are real files loaded by
//! `loader::load`, results are real `CheckResult`s, and what is asserted is what a receiver
//! would get — which events, to whom, in what order.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use canaryd::alert::engine::{Effects, Engine, Phase};
use canaryd::alert::silence::Silence;
use canaryd::alert::{to_ms, EventKind, Status};
use canaryd::loader::{self, Config};
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
            detail: None,
            attempts: 1,
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
        let config = loader::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let mut engine = Engine::new("http://127.0.0.1:9464");
        let now = UNIX_EPOCH + Duration::from_secs(T0);
        let fx = engine.configure(&config.checks, &config.alerting, refresh, now);
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
    let fx = again.configure(&s.config.checks, &s.config.alerting, HashMap::new(), s.now);
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
    let other = loader::load(&path).unwrap();
    assert_eq!(
        sent(&gone.configure(&other.checks, &other.alerting, HashMap::new(), s.now)),
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
    // Issue 14: the default summary carries the evidence (it used to be
    // "check plain failing: status").
    assert_eq!(
        fx.sends[0].1.summary,
        "plain failing: status: step \"request\": expected status 200, got 503"
    );
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

// ---------------------------------------------------------------------------------------------
// Unknown outcomes, reloads and restarts: continuous alert state
// ---------------------------------------------------------------------------------------------

use canaryd::alert::engine::{Outcome, ProgressRow};

/// A queue check's result: `depth` waiting jobs and, from the second run of a probe on, a
/// `processed_rate` (`None`: the first run, when the rate has no value yet).
fn queue(depth: f64, rate: Option<f64>) -> CheckResult {
    let mut r = result(true);
    r.observations.push(("depth".into(), depth));
    if let Some(rate) = rate {
        r.observations.push(("processed_rate".into(), rate));
    }
    r
}

/// Jobs waiting, nothing processed: `when` holds.
fn stalled() -> CheckResult {
    queue(5.0, Some(0.0))
}
/// Jobs waiting, rate unknown: `depth > 0 && processed_rate == 0` is unknown.
fn unknown() -> CheckResult {
    queue(5.0, None)
}
/// Jobs being processed: `when` does not hold.
fn moving() -> CheckResult {
    queue(5.0, Some(2.0))
}

fn jobs(alerts: &str) -> String {
    format!(
        "checks:\n  - name: jobs\n    interval: 1s\n    queue: {{system: sidekiq, redis: \"redis://127.0.0.1:9/0\"}}\n    alerts:\n{alerts}"
    )
}

const STALLED_FOR_30S: &str =
    "      - {name: JobsStalled, when: \"depth > 0 && processed_rate == 0\", for: 30s}\n";

impl Sim {
    fn feed(&mut self, r: &CheckResult) -> Effects {
        self.engine.observe("jobs", r, self.now)
    }

    fn view(&self, alert: &str) -> canaryd::alert::engine::AlertView {
        self.engine
            .views(self.now)
            .into_iter()
            .find(|v| v.alert == alert)
            .unwrap_or_else(|| panic!("no alert {alert}"))
    }

    /// Reloads from new file contents (same receivers), as `POST /-/reload` does.
    fn reload(&mut self, daemon_extra: &str, checks: &str) -> Effects {
        let (dir, path) = write_config(daemon_extra, checks);
        self.config = loader::load(&path).unwrap_or_else(|e| panic!("{e}"));
        self._dir = dir;
        self.engine.configure(
            &self.config.checks,
            &self.config.alerting,
            HashMap::new(),
            self.now,
        )
    }

    /// A restart after `down`: the saved alert rows and progress (everything handed to the
    /// store so far) go into a new engine, which is configured with `checks`.
    fn restart(
        &mut self,
        saved: &Saved,
        down: Duration,
        daemon_extra: &str,
        checks: &str,
    ) -> Effects {
        self.now += down;
        let (dir, path) = write_config(daemon_extra, checks);
        self.config = loader::load(&path).unwrap_or_else(|e| panic!("{e}"));
        self._dir = dir;
        self.engine = Engine::new("http://127.0.0.1:9464");
        self.engine
            .restore(saved.alerts.values().cloned().collect());
        self.engine
            .restore_progress(saved.progress.values().cloned().collect(), saved.alive_ms);
        self.engine.configure(
            &self.config.checks,
            &self.config.alerting,
            HashMap::new(),
            self.now,
        )
    }
}

/// What the store would hold: alert rows from effects, progress from the ticker's batches.
#[derive(Default)]
struct Saved {
    alerts: HashMap<String, canaryd::alert::engine::AlertRow>,
    progress: HashMap<String, ProgressRow>,
    alive_ms: Option<i64>,
    sends: Vec<String>,
}

impl Saved {
    fn effects(&mut self, fx: &Effects) {
        for row in &fx.save {
            self.alerts.insert(row.dedup_key.clone(), row.clone());
        }
        for key in &fx.delete {
            self.alerts.remove(key);
        }
        self.sends.extend(sent(fx));
    }

    /// The ticker's save (every second in the daemon).
    fn progress(&mut self, s: &mut Sim) {
        let batch = s.engine.take_progress(s.now);
        for key in &batch.delete {
            self.progress.remove(key);
        }
        for row in batch.save {
            self.progress.insert(row.dedup_key.clone(), row);
        }
        if batch.alive_ms.is_some() {
            self.alive_ms = batch.alive_ms;
        }
    }
}

#[test]
fn an_unknown_outcome_neither_starts_nor_advances_nor_resolves_an_alert() {
    let mut s = Sim::new("routes:\n  - receivers: [oncall]\n", &jobs(STALLED_FOR_30S));
    // The first run of a queue probe: no rate yet.
    assert!(s.feed(&unknown()).sends.is_empty());
    assert_eq!(
        s.phase("jobs", "JobsStalled"),
        Phase::Inactive,
        "unknown does not start it"
    );
    assert_eq!(
        s.view("JobsStalled").last_evaluation,
        Some(Outcome::Unknown)
    );
    s.advance(secs(60));
    assert!(s.tick().sends.is_empty());

    // Held 10 s, then unknown for 60 s: the for clock stops at the unknown result.
    assert!(s.feed(&stalled()).sends.is_empty());
    assert_eq!(s.phase("jobs", "JobsStalled"), Phase::Pending);
    s.advance(secs(10));
    assert!(s.feed(&unknown()).sends.is_empty());
    assert_eq!(
        s.phase("jobs", "JobsStalled"),
        Phase::Pending,
        "unknown does not clear it"
    );
    for _ in 0..60 {
        s.advance(S);
        assert!(
            s.tick().sends.is_empty(),
            "the clock does not run while unknown"
        );
    }
    // It resumes at the next holding result: 20 s more reach 30 s.
    assert!(s.feed(&stalled()).sends.is_empty());
    s.advance(secs(19));
    assert!(s.tick().sends.is_empty(), "29 s held");
    s.advance(S);
    let fx = s.tick();
    assert_eq!(
        sent(&fx),
        ["oncall:trigger"],
        "30 s held, unknown time excluded"
    );

    // Firing: unknown results and the ticks after them do not resolve it.
    for _ in 0..120 {
        s.advance(S);
        assert!(s.feed(&unknown()).sends.is_empty());
        assert!(s.tick().sends.is_empty());
    }
    assert_eq!(s.phase("jobs", "JobsStalled"), Phase::Firing);
    // Drained: depth 0 makes `when` false whatever the rate (false && unknown = false).
    s.advance(S);
    assert_eq!(sent(&s.feed(&queue(0.0, None))), ["oncall:resolve"]);
    assert_eq!(s.view("JobsStalled").last_evaluation, Some(Outcome::False));
}

#[test]
fn a_false_result_resets_the_for_clock_an_unknown_one_only_stops_it() {
    let mut s = Sim::new("routes:\n  - receivers: [oncall]\n", &jobs(STALLED_FOR_30S));
    s.feed(&stalled());
    s.advance(secs(20));
    s.feed(&unknown());
    s.advance(secs(5));
    s.feed(&moving());
    assert_eq!(s.phase("jobs", "JobsStalled"), Phase::Inactive);
    s.feed(&stalled());
    s.advance(secs(29));
    assert!(
        s.tick().sends.is_empty(),
        "the 20 s before the false result are gone"
    );
    s.advance(S);
    assert_eq!(sent(&s.tick()), ["oncall:trigger"]);
}

#[test]
fn unknown_results_do_not_break_consecutive_or_enter_the_window() {
    let mut s = Sim::new(
        "routes:\n  - receivers: [oncall]\n",
        &jobs("      - {name: InARow, when: \"depth > 0 && processed_rate == 0\", consecutive: 3}\n      - {name: Often, when: \"depth > 0 && processed_rate == 0\", window: 3 of 4}\n"),
    );
    for r in [stalled(), unknown(), moving(), unknown(), stalled()] {
        assert!(s.feed(&r).sends.is_empty());
    }
    assert_eq!(s.phase("jobs", "InARow"), Phase::Pending, "1 in a row");
    assert_eq!(s.phase("jobs", "Often"), Phase::Pending, "window T F T");
    let fx = s.feed(&stalled());
    assert_eq!(
        sent(&fx),
        ["oncall:trigger"],
        "window T F T T: 3 of 4 (with the unknowns in it, it would be 2)"
    );
    assert_eq!(fx.sends[0].1.alert, "Often");
    assert!(s.feed(&unknown()).sends.is_empty());
    assert!(s.feed(&unknown()).sends.is_empty());
    assert_eq!(s.phase("jobs", "InARow"), Phase::Pending);
    let fx = s.feed(&stalled());
    assert_eq!(sent(&fx), ["oncall:trigger"], "T U U T: 3 in a row");
    assert_eq!(fx.sends[0].1.alert, "InARow");
    for _ in 0..5 {
        assert!(s.feed(&unknown()).sends.is_empty());
    }
    assert_eq!(s.phase("jobs", "Often"), Phase::Firing);
    let fx = s.feed(&moving());
    assert_eq!(
        sent(&fx),
        ["oncall:resolve"],
        "InARow resolves on the first false"
    );
    assert_eq!(fx.sends[0].1.alert, "InARow");
    assert_eq!(s.phase("jobs", "Often"), Phase::Firing, "T T T F: 3 of 4");
    assert_eq!(
        sent(&s.feed(&moving())),
        ["oncall:resolve"],
        "T T F F: 2 of 4"
    );
}

#[test]
fn keep_firing_for_resolves_only_on_a_known_false_result() {
    let mut s = Sim::new(
        "routes:\n  - receivers: [oncall]\n",
        &jobs("      - {name: JobsStalled, when: \"depth > 0 && processed_rate == 0\", keep_firing_for: 1m}\n"),
    );
    assert_eq!(sent(&s.feed(&stalled())), ["oncall:trigger"]);
    s.advance(secs(10));
    assert!(s.feed(&moving()).sends.is_empty(), "kept");
    s.advance(secs(10));
    assert!(s.feed(&unknown()).sends.is_empty());
    s.advance(secs(120));
    assert!(
        s.tick().sends.is_empty(),
        "140 s since the last holding result, but the last result is unknown"
    );
    assert_eq!(s.phase("jobs", "JobsStalled"), Phase::Firing);
    assert_eq!(
        sent(&s.feed(&moving())),
        ["oncall:resolve"],
        "a known false result, long past keep_firing_for"
    );
}

#[test]
fn a_reload_keeps_the_progress_of_unchanged_rules() {
    let rules = "      - {name: JobsStalled, when: \"depth > 0 && processed_rate == 0\", for: 30s, annotations: {summary: old}}\n      - {name: InARow, when: \"depth > 0 && processed_rate == 0\", consecutive: 4}\n      - {name: Often, when: \"depth > 0 && processed_rate == 0\", window: 3 of 5}\n";
    let mut s = Sim::new("routes:\n  - receivers: [oncall]\n", &jobs(rules));
    for _ in 0..2 {
        s.feed(&stalled());
        s.advance(secs(10));
    }
    s.feed(&moving()); // resets the for clock and InARow
    s.feed(&stalled());
    s.advance(secs(10));
    s.feed(&stalled());
    // JobsStalled held 10 s, InARow 2 in a row, Often T T F T T (fired at 3 of 4).
    assert_eq!(s.phase("jobs", "Often"), Phase::Firing);
    assert_eq!(s.phase("jobs", "JobsStalled"), Phase::Pending);
    let since = s.view("JobsStalled").active_since;

    // An unrelated change (annotation, another check): nothing moves, nothing is sent.
    let other = "  - name: web\n    http: {request: {url: \"http://127.0.0.1:9/\"}}\n";
    let fx = s.reload(
        "routes:\n  - receivers: [oncall]\n",
        &format!(
            "{}{other}",
            jobs(&rules.replace("summary: old", "summary: new"))
        ),
    );
    assert!(fx.sends.is_empty(), "{:?}", sent(&fx));
    assert_eq!(s.phase("jobs", "JobsStalled"), Phase::Pending);
    assert_eq!(
        s.view("JobsStalled").active_since,
        since,
        "pending since unchanged"
    );
    assert_eq!(s.phase("jobs", "Often"), Phase::Firing);
    // The first result after a reload may be unknown (the queue probe was rebuilt).
    s.advance(S);
    assert!(s.feed(&unknown()).sends.is_empty());
    assert_eq!(
        s.phase("jobs", "Often"),
        Phase::Firing,
        "no resolve on unknown"
    );
    s.feed(&stalled());
    // for clock: 10 s before + 1 s up to the unknown result; resumes now.
    s.advance(secs(18));
    assert!(s.tick().sends.is_empty(), "29 s held");
    s.advance(S);
    assert_eq!(
        sent(&s.tick()),
        ["oncall:trigger"],
        "30 s: progress carried over"
    );
    assert_eq!(
        sent(&s.feed(&stalled())),
        ["oncall:trigger"],
        "InARow: 2 before the reload, 2 after"
    );
    // A false result resolves the other two; Often's history (T T F T T, then T T after the
    // reload) ends F T T T T → T T T T F: 4 of 5, it keeps firing.
    let fx = s.feed(&moving());
    let mut resolved: Vec<&str> = fx.sends.iter().map(|(_, e)| e.alert.as_str()).collect();
    resolved.sort();
    assert_eq!(resolved, ["InARow", "JobsStalled"]);
    assert_eq!(s.phase("jobs", "Often"), Phase::Firing);
}

#[test]
fn a_changed_rule_starts_over_and_a_firing_one_waits_for_its_first_known_result() {
    let before = "      - {name: JobsStalled, when: \"depth > 0 && processed_rate == 0\", for: 30s}\n      - {name: Backlog, when: \"depth > 0 && processed_rate == 0\", consecutive: 2}\n      - {name: Often, when: \"depth > 0 && processed_rate == 0\", window: 2 of 4}\n";
    let mut s = Sim::new("routes:\n  - receivers: [oncall]\n", &jobs(before));
    s.feed(&stalled());
    s.advance(secs(20));
    let fx = s.feed(&stalled());
    assert_eq!(
        sent(&fx),
        ["oncall:trigger", "oncall:trigger"],
        "Backlog and Often"
    );
    assert_eq!(s.phase("jobs", "JobsStalled"), Phase::Pending);

    let after = "      - {name: JobsStalled, when: \"depth > 0 && processed_rate == 0\", for: 40s}\n      - {name: Backlog, when: \"depth > 1 && processed_rate == 0\", consecutive: 2}\n      - {name: Often, when: \"depth > 0 && processed_rate == 0\", window: 3 of 4}\n";
    let fx = s.reload("routes:\n  - receivers: [oncall]\n", &jobs(after));
    assert!(
        fx.sends.is_empty(),
        "same identity: no new page, no resolve"
    );
    assert_eq!(
        s.phase("jobs", "JobsStalled"),
        Phase::Inactive,
        "pending progress reset"
    );
    assert_eq!(
        s.phase("jobs", "Backlog"),
        Phase::Firing,
        "firing stays firing"
    );
    assert_eq!(s.phase("jobs", "Often"), Phase::Firing);
    s.advance(secs(100));
    assert!(
        s.tick().sends.is_empty(),
        "no result yet under the new definition"
    );
    assert!(
        s.feed(&unknown()).sends.is_empty(),
        "unknown keeps them firing"
    );
    s.advance(S);
    assert!(s.tick().sends.is_empty());
    // True keeps both (Often's cut-short history does not resolve it on a holding result).
    assert!(s.feed(&stalled()).sends.is_empty());
    assert_eq!(s.phase("jobs", "Often"), Phase::Firing);
    assert_eq!(
        s.phase("jobs", "JobsStalled"),
        Phase::Pending,
        "its new for starts now"
    );
    s.advance(secs(39));
    assert!(s.tick().sends.is_empty());
    s.advance(S);
    assert_eq!(
        sent(&s.tick()),
        ["oncall:trigger"],
        "40 s from the first result after the change"
    );

    // A firing rule whose changed definition is false at its first result resolves at once.
    let changed = after.replace("depth > 1 && processed_rate == 0", "depth > 100");
    assert!(s
        .reload("routes:\n  - receivers: [oncall]\n", &jobs(&changed))
        .sends
        .is_empty());
    let fx = s.feed(&stalled());
    assert_eq!(sent(&fx), ["oncall:resolve"]);
    assert_eq!(fx.sends[0].1.alert, "Backlog");

    // A removed rule resolves once.
    let fx = s.reload(
        "routes:\n  - receivers: [oncall]\n",
        &jobs(
            "      - {name: JobsStalled, when: \"depth > 0 && processed_rate == 0\", for: 40s}\n",
        ),
    );
    assert_eq!(sent(&fx), ["oncall:resolve"]);
    assert_eq!(fx.sends[0].1.alert, "Often");
    assert!(s.tick().sends.is_empty());
}

#[test]
fn a_restart_restores_pending_progress_and_the_for_clock_skips_the_downtime() {
    let rules = "      - {name: JobsStalled, when: \"depth > 0 && processed_rate == 0\", for: 2m}\n      - {name: InARow, when: \"depth > 0 && processed_rate == 0\", consecutive: 100}\n      - {name: Often, when: \"depth > 0 && processed_rate == 0\", window: 95 of 100}\n";
    let route = "routes:\n  - receivers: [oncall]\n";
    let mut s = Sim::new(route, &jobs(rules));
    let mut saved = Saved::default();
    // 90 s of stalled results, one a second, the ticker saving progress every second.
    for _ in 0..90 {
        let fx = s.feed(&stalled());
        saved.effects(&fx);
        s.advance(S);
        let fx = s.tick();
        saved.effects(&fx);
        saved.progress(&mut s);
    }
    assert!(saved.sends.is_empty());
    let since = s.view("JobsStalled").active_since;
    assert_eq!(s.phase("jobs", "Often"), Phase::Pending);

    // Killed; back 60 s later. The first result of the rebuilt queue probe is unknown.
    let fx = s.restart(&saved, secs(60), route, &jobs(rules));
    assert!(fx.sends.is_empty());
    assert_eq!(
        s.phase("jobs", "JobsStalled"),
        Phase::Pending,
        "pending restored"
    );
    assert_eq!(s.view("JobsStalled").active_since, since);
    assert_eq!(s.view("JobsStalled").last_evaluation, None);
    s.advance(S);
    assert!(s.feed(&unknown()).sends.is_empty());
    s.advance(S);
    assert!(s.tick().sends.is_empty());
    assert!(
        s.feed(&stalled()).sends.is_empty(),
        "the clock resumes here at 90 s"
    );
    let resumed = s.now;
    let mut fired = Vec::new();
    for _ in 0..40 {
        s.advance(S);
        let fx = s.feed(&stalled());
        fired.extend(fx.sends.iter().map(|(_, e)| (e.alert.clone(), s.now)));
        let fx = s.tick();
        fired.extend(fx.sends.iter().map(|(_, e)| (e.alert.clone(), s.now)));
    }
    let at = |name: &str| {
        fired
            .iter()
            .find(|(a, _)| a == name)
            .map(|(_, t)| t.duration_since(resumed).unwrap())
    };
    assert_eq!(
        at("JobsStalled"),
        Some(secs(30)),
        "2 m less the 90 s held before the restart (downtime not counted)"
    );
    assert_eq!(
        at("InARow"),
        Some(secs(9)),
        "90 before + the resuming one + 9 = 100"
    );
    assert_eq!(at("Often"), Some(secs(4)), "90 + 1 + 4 = 95 of 100");
}

#[test]
fn a_restart_keeps_a_firing_alert_through_unknown_results_and_resolves_it_once() {
    let route = "routes:\n  - receivers: [oncall]\n";
    let rules = jobs("      - {name: JobsStalled, when: \"depth > 0 && processed_rate == 0\", for: 5s}\n      - {name: Often, when: \"depth > 0 && processed_rate == 0\", window: 3 of 6}\n");
    let mut s = Sim::new(route, &rules);
    let mut saved = Saved::default();
    for _ in 0..8 {
        saved.effects(&s.feed(&stalled()));
        s.advance(S);
        saved.effects(&s.tick());
        saved.progress(&mut s);
    }
    assert_eq!(saved.sends, ["oncall:trigger", "oncall:trigger"]);
    for _ in 0..3 {
        assert!(s.restart(&saved, secs(5), route, &rules).sends.is_empty());
        assert_eq!(s.phase("jobs", "JobsStalled"), Phase::Firing);
        for r in [unknown(), stalled(), stalled()] {
            s.advance(S);
            saved.effects(&s.feed(&r));
            saved.effects(&s.tick());
            saved.progress(&mut s);
        }
    }
    assert_eq!(
        saved.sends.len(),
        2,
        "no page and no resolve across restarts: {:?}",
        saved.sends
    );
    saved.effects(&s.feed(&queue(0.0, None)));
    assert_eq!(
        saved.sends[2..],
        ["oncall:resolve"],
        "JobsStalled resolves on the drain"
    );
    saved.effects(&s.feed(&queue(0.0, Some(0.0))));
    saved.effects(&s.feed(&queue(0.0, Some(0.0))));
    saved.effects(&s.feed(&queue(0.0, Some(0.0))));
    assert_eq!(
        saved.sends[3..],
        ["oncall:resolve"],
        "Often holds in 3 of the last 6 until the fourth drained result"
    );
}

#[test]
fn restored_progress_of_a_changed_rule_or_a_stale_save_is_not_trusted() {
    let route = "routes:\n  - receivers: [oncall]\n";
    let rules =
        jobs("      - {name: JobsStalled, when: \"depth > 0 && processed_rate == 0\", for: 1m}\n");
    let mut s = Sim::new(route, &rules);
    let mut saved = Saved::default();
    s.feed(&stalled());
    s.advance(secs(50));
    s.feed(&stalled());
    saved.progress(&mut s);

    // for changed while canaryd was down: the 50 s held do not count for the new rule.
    let changed = rules.replace("for: 1m", "for: 55s");
    s.restart(&saved, secs(1), route, &changed);
    assert_eq!(s.phase("jobs", "JobsStalled"), Phase::Inactive);
    s.feed(&stalled());
    s.advance(secs(54));
    assert!(s.tick().sends.is_empty());
    s.advance(S);
    let fx = s.tick();
    assert_eq!(sent(&fx), ["oncall:trigger"]);
    saved.effects(&fx);
    // Killed before the ticker saved the firing progress: the alert row decides.
    s.restart(&saved, secs(1), route, &changed);
    assert_eq!(s.phase("jobs", "JobsStalled"), Phase::Firing);
    assert!(s.feed(&stalled()).sends.is_empty());
    saved.progress(&mut s);
    // Resolved, killed before the progress (still firing) was saved: the resolve stands.
    let fx = s.feed(&moving());
    assert_eq!(sent(&fx), ["oncall:resolve"]);
    saved.effects(&fx);
    let fx = s.restart(&saved, secs(1), route, &changed);
    assert!(fx.sends.is_empty());
    assert_eq!(s.phase("jobs", "JobsStalled"), Phase::Inactive);
    s.advance(secs(120));
    assert!(s.tick().sends.is_empty());
    // A rule that is gone: its progress row is deleted by the next save.
    s.restart(
        &saved,
        secs(1),
        route,
        &jobs("      - {name: Other, when: \"depth > 9\"}\n"),
    );
    saved.progress(&mut s);
    assert_eq!(saved.progress.len(), 1, "only Other's row");
}

#[test]
fn progress_is_saved_only_when_it_changes_and_deleted_when_its_rule_goes() {
    let route = "routes:\n  - receivers: [oncall]\n";
    let two = jobs("      - {name: JobsStalled, when: \"depth > 0 && processed_rate == 0\", for: 1m}\n      - {name: Other, when: \"depth > 9\"}\n");
    let mut s = Sim::new(route, &two);
    let names: HashMap<String, String> = s
        .engine
        .views(s.now)
        .into_iter()
        .map(|v| (v.dedup_key, v.alert))
        .collect();
    let s_alert = |key: &str| names[key].clone();
    let keys = |b: &canaryd::alert::engine::ProgressBatch| {
        let mut k: Vec<String> = b.save.iter().map(|r| s_alert(&r.dedup_key)).collect();
        k.sort();
        k
    };
    let first = s.engine.take_progress(s.now);
    assert_eq!(keys(&first), ["JobsStalled", "Other"], "every rule once");
    assert_eq!(first.alive_ms, None, "no for clock runs");
    assert!(s.engine.take_progress(s.now).is_empty(), "nothing changed");
    s.feed(&moving());
    assert!(
        s.engine.take_progress(s.now).is_empty(),
        "false on an inactive rule changes no progress"
    );
    s.advance(S);
    s.feed(&stalled());
    let b = s.engine.take_progress(s.now);
    assert_eq!(keys(&b), ["JobsStalled"]);
    assert_eq!(b.alive_ms, Some(to_ms(s.now)), "a for clock runs");
    s.advance(S);
    let b = s.engine.take_progress(s.now);
    assert!(b.save.is_empty());
    assert_eq!(
        b.alive_ms,
        Some(to_ms(s.now)),
        "alive, every save while it runs"
    );
    assert!(s.reload(route, &two).sends.is_empty());
    assert!(
        s.engine.take_progress(s.now).save.is_empty(),
        "an identical reload"
    );
    s.reload(
        route,
        &jobs("      - {name: JobsStalled, when: \"depth > 0 && processed_rate == 0\", for: 1m}\n"),
    );
    let b = s.engine.take_progress(s.now);
    assert!(b.save.is_empty());
    assert_eq!(b.delete.len(), 1);
    assert_eq!(s_alert(&b.delete[0]), "Other");
}

#[test]
fn pages_carry_the_evidence_and_the_resolve_says_how_long_it_lasted() {
    let mut s = Sim::new("", &check("      - {name: Down, when: failed}\n"));
    let fx = s.run("web", false);
    let ev = &fx.sends[0].1;
    assert_eq!(
        ev.summary,
        "web failing: status: step \"request\": expected status 200, got 503"
    );
    assert_eq!(
        ev.message.as_deref(),
        Some("step \"request\": expected status 200, got 503")
    );
    assert_eq!(ev.values["failed"], "true");
    assert_eq!(ev.check_url(), "http://127.0.0.1:9464/api/v1/checks/web");
    s.advance(secs(723));
    let fx = s.run("web", true);
    let ev = &fx.sends[0].1;
    assert_eq!(ev.kind, EventKind::Resolve);
    assert_eq!(ev.summary, "web recovered after 12m3s");
    assert_eq!(ev.lasted(), Some(secs(723)));
}

/// `depends_on` (a TCP check on the database as the parent of an HTTP check and a queue-like
/// TCP check): the dependants' pages wait for the parent's verdict, are held while it fails
/// (the API names it), the parent's page lists them, and a dependant still failing after the
/// parent is back pages then. Resolves go to whoever heard the trigger.
#[test]
fn depends_on_holds_dependants_while_the_parent_fails_and_pages_the_one_still_broken_after() {
    let rule = "    alerts:\n      - {name: Down, when: failed}\n";
    let checks = format!(
        "checks:\n  - name: db\n    interval: 5s\n    tcp: {{target: \"127.0.0.1:9\"}}\n{rule}\
         \x20 - name: api\n    interval: 5s\n    depends_on: [db]\n    http: {{request: {{url: \"http://127.0.0.1:9/\"}}}}\n{rule}\
         \x20 - name: jobs\n    interval: 5s\n    depends_on: [db]\n    tcp: {{target: \"127.0.0.1:6379\"}}\n{rule}"
    );
    let mut s = Sim::new("", &checks);
    let view = |s: &Sim, check: &str| {
        s.engine
            .views(s.now)
            .into_iter()
            .find(|v| v.check == check)
            .unwrap()
    };
    s.run("db", true);
    s.advance(S);
    // api fails after db last looked: its page waits for db's next result.
    assert!(s.run("api", false).sends.is_empty());
    assert_eq!(s.phase("api", "Down"), Phase::Firing);
    assert_eq!(view(&s, "api").suppressed_by.as_deref(), Some("db"));
    s.advance(S);
    assert!(s.tick().sends.is_empty());
    s.run("jobs", false);
    s.advance(S);
    // db fails: its page is the one page, and it lists both dependants.
    let fx = s.run("db", false);
    assert_eq!(sent(&fx), ["chat:trigger", "oncall:trigger", "am:trigger"]);
    let page = &fx.sends[0].1;
    assert_eq!(page.dependants_failing, ["api", "jobs"]);
    assert!(
        page.summary
            .ends_with("(2 dependants failing too: api, jobs)"),
        "{}",
        page.summary
    );
    assert_eq!(view(&s, "db").dependants_failing, ["api", "jobs"]);
    // Held for as long as db fails, through results and ticks.
    for _ in 0..12 {
        s.advance(S);
        assert!(s.tick().sends.is_empty());
        assert!(s.run("api", false).sends.is_empty());
        assert!(s.run("jobs", false).sends.is_empty());
        assert!(s.run("db", false).sends.is_empty());
    }
    assert_eq!(view(&s, "jobs").suppressed_by.as_deref(), Some("db"));
    // db is back: its resolve goes out; jobs recovers with it (no page, so no resolve);
    // api is still broken and pages once it has run again after db came back.
    s.advance(S);
    let fx = s.run("db", true);
    assert_eq!(sent(&fx), ["am:resolve", "chat:resolve", "oncall:resolve"]);
    assert!(fx.sends[0].1.dependants_failing.is_empty());
    assert!(
        s.tick().sends.is_empty(),
        "api has not run since db came back"
    );
    s.advance(S);
    assert!(s.run("jobs", true).sends.is_empty());
    assert_eq!(s.phase("jobs", "Down"), Phase::Inactive);
    let fx = s.run("api", false);
    assert!(fx.sends.is_empty(), "db's last word is older than api's");
    s.advance(S);
    assert!(s.run("db", true).sends.is_empty());
    let fx = s.tick();
    assert_eq!(sent(&fx), ["chat:trigger", "oncall:trigger", "am:trigger"]);
    assert_eq!(fx.sends[0].1.check, "api");
    assert_eq!(view(&s, "api").suppressed_by, None);
    s.advance(S);
    let fx = s.run("api", true);
    assert_eq!(sent(&fx), ["am:resolve", "chat:resolve", "oncall:resolve"]);
}
