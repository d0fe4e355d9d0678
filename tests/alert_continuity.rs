//! Alert state that survives what a daemon goes through: restarts (SIGTERM and kill -9) and
//! reloads, against real components: a redis-server holding a queue in Sidekiq's layout (the
//! `queues` set and a `queue:<name>` list; no worker, so nothing is processed), the canaryd
//! binary, and the faithful local PagerDuty receiver. What is asserted is what PagerDuty
//! receives.
//!
//! The queue probe has no `processed_rate` on its first run (nothing to compare with), so after
//! every start and every reload the first evaluation of `depth > 0 && processed_rate == 0` is
//! unknown; it must neither resolve the firing alert nor restart its `for:`.

mod receivers;
mod services;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use receivers::PagerDuty;
use serde_json::Value;
use services::{canaryd_run, free_port, http_get, http_post, secs, Canaryd, Redis};

const ROUTING_KEY: &str = "R0UTINGKEYcanary0123456789abcdef";

struct Setup {
    dir: tempfile::TempDir,
    addr: String,
    config: PathBuf,
}

impl Setup {
    /// canaryd.yaml (PagerDuty for everything), `jobs.yaml` (the queue check with `alerts`),
    /// and `other.yaml` (an unrelated heartbeat check).
    fn new(redis: &Redis, pd: &PagerDuty, alerts: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let config = dir.path().join("canaryd.yaml");
        std::fs::write(
            &config,
            format!(
                "listen: {addr}\nstate_dir: state\ncheck_files: [jobs.yaml, other.yaml]\nreceivers:\n  - name: oncall\n    pagerduty: {{routing_key: \"${{env:PD_KEY}}\", url: \"{}\"}}\nroutes:\n  - receivers: [oncall]\n",
                pd.url()
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("jobs.yaml"),
            format!(
                "checks:\n  - name: jobs\n    interval: 1s\n    timeout: 900ms\n    queue: {{system: sidekiq, redis: \"{}\", queues: [default]}}\n    alerts:\n{alerts}",
                redis.url()
            ),
        )
        .unwrap();
        write_other(dir.path(), "1h");
        Setup { dir, addr, config }
    }

    fn start(&self) -> Canaryd {
        let mut cmd = canaryd_run(&self.config);
        cmd.env("PD_KEY", ROUTING_KEY);
        Canaryd::start(cmd, &self.addr).unwrap_or_else(|e| panic!("{e}"))
    }
}

fn write_other(dir: &Path, every: &str) {
    std::fs::write(
        dir.join("other.yaml"),
        format!("checks:\n  - name: nightly\n    heartbeat: {{every: {every}}}\n"),
    )
    .unwrap();
}

/// Jobs waiting in Sidekiq's layout, as Sidekiq's client pushes them.
fn enqueue(redis: &Redis, n: usize) {
    redis.cmd(&["SADD", "queues", "default"]);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for i in 0..n {
        let job = format!(
            r#"{{"class":"InvoiceJob","args":[{i}],"retry":true,"queue":"default","jid":"{i:024x}","created_at":{t},"enqueued_at":{t}}}"#
        );
        redis.cmd(&["LPUSH", "queue:default", &job]);
    }
}

/// The alert `name` as `/api/v1/alerts` shows it.
fn alert(d: &Canaryd, name: &str) -> Option<Value> {
    let r = http_get(&d.url("/api/v1/alerts")).ok()?;
    let all: Value = serde_json::from_str(&r.text()).ok()?;
    all["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["alert"] == name)
        .cloned()
}

fn wait(what: &str, d: &Canaryd, timeout: Duration, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(
            t.elapsed() < timeout,
            "timed out waiting for {what}\n--- canaryd log ---\n{}",
            d.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// PagerDuty's events so far as `action` strings.
fn actions(pd: &PagerDuty) -> Vec<String> {
    pd.events()
        .iter()
        .map(|e| e["event_action"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// Asserts that PagerDuty receives nothing new for `window` (a re-page or resolve after a
/// restart would arrive within the first results plus `for:`).
fn nothing_new(pd: &PagerDuty, d: &Canaryd, seen: usize, window: Duration, after: &str) {
    assert!(
        !pd.wait_for_events(seen + 1, window),
        "{after}: PagerDuty got {:?}\n--- canaryd log ---\n{}",
        actions(pd),
        d.log_tail(40)
    );
}

/// Waits until the daemon has evaluated the rule again after a start or reload: the last
/// evaluation is known to hold (the second result of the rebuilt probe, with a rate). Returns
/// whether an unknown evaluation (the first result, without a rate) was seen on the way.
fn wait_until_it_holds_again(d: &Canaryd, since: Instant) -> bool {
    let mut saw_unknown = false;
    let t = Instant::now();
    loop {
        let last = alert(d, "JobsStalled").map(|a| a["last_evaluation"].clone());
        saw_unknown |= last.as_ref().is_some_and(|l| l == "unknown");
        if since.elapsed() > Duration::from_millis(1500) && last.is_some_and(|l| l == "true") {
            return saw_unknown;
        }
        assert!(
            t.elapsed() < secs(15),
            "timed out waiting for a result where the rule holds\n--- canaryd log ---\n{}",
            d.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_stalled_queue_alert_survives_restarts_kill_9_and_a_reload_with_one_trigger_and_one_resolve() {
    let Some(redis) = Redis::start() else { return };
    let pd = PagerDuty::start();
    pd.expect_routing_key(ROUTING_KEY);
    enqueue(&redis, 3);
    let setup = Setup::new(
        &redis,
        &pd,
        "      - {name: JobsStalled, when: \"depth > 0 && processed_rate == 0\", for: 2s, severity: critical}\n",
    );

    let mut d = setup.start();
    assert!(
        pd.wait_for_events(1, secs(20)),
        "no trigger:\n{}",
        d.log_tail(40)
    );
    let key = pd.events()[0]["dedup_key"].as_str().unwrap().to_string();
    assert_eq!(actions(&pd), ["trigger"]);
    assert_eq!(alert(&d, "JobsStalled").unwrap()["state"], "firing");

    // SIGTERM and start again: the first result (no rate) is unknown, the next holds.
    d.stop(secs(10));
    let d_log = d.log_tail(5);
    assert!(d_log.contains("stopped"), "no clean stop:\n{d_log}");
    drop(d);
    let started = Instant::now();
    let d = setup.start();
    assert_eq!(alert(&d, "JobsStalled").unwrap()["state"], "firing");
    wait_until_it_holds_again(&d, started);
    nothing_new(&pd, &d, 1, secs(3), "after SIGTERM and a restart");

    // kill -9 and start again.
    let mut d = d;
    d.kill();
    drop(d);
    let started = Instant::now();
    let d = setup.start();
    assert_eq!(alert(&d, "JobsStalled").unwrap()["state"], "firing");
    wait_until_it_holds_again(&d, started);
    nothing_new(&pd, &d, 1, secs(3), "after kill -9 and a restart");

    // A reload that touches only another check file (the queue probe is rebuilt all the same).
    write_other(setup.dir.path(), "2h");
    let reloaded = Instant::now();
    let r = http_post(&d.url("/-/reload"), "application/json", b"").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        wait_until_it_holds_again(&d, reloaded),
        "the reload rebuilt the queue probe, so its first result has no rate and is unknown"
    );
    nothing_new(&pd, &d, 1, secs(3), "after an unrelated reload");
    assert_eq!(alert(&d, "JobsStalled").unwrap()["state"], "firing");

    // The queue drains: one resolve, with the trigger's key.
    redis.cmd(&["DEL", "queue:default"]);
    assert!(
        pd.wait_for_events(2, secs(10)),
        "no resolve:\n{}",
        d.log_tail(40)
    );
    nothing_new(&pd, &d, 2, secs(2), "after the resolve");
    assert_eq!(actions(&pd), ["trigger", "resolve"]);
    assert_eq!(pd.events()[1]["dedup_key"], key.as_str());
    let incident = pd.incident(&key).unwrap();
    assert_eq!(
        (
            incident.opened,
            incident.triggers,
            incident.resolves,
            incident.open
        ),
        (1, 1, 1, false)
    );
    assert_eq!(alert(&d, "JobsStalled").unwrap()["state"], "inactive");
}

#[test]
fn a_pending_for_rule_fires_on_time_after_a_restart_and_a_kill_9() {
    let Some(redis) = Redis::start() else { return };
    let pd = PagerDuty::start();
    pd.expect_routing_key(ROUTING_KEY);
    enqueue(&redis, 2);
    let setup = Setup::new(
        &redis,
        &pd,
        "      - {name: JobsStalled, when: \"depth > 0 && processed_rate == 0\", for: 12s, severity: critical}\n",
    );
    let pending = |d: &Canaryd| alert(d, "JobsStalled").is_some_and(|a| a["state"] == "pending");

    // About 4 s of the 12 s before a SIGTERM.
    let mut d = setup.start();
    wait("pending", &d, secs(15), || pending(&d));
    std::thread::sleep(secs(4));
    d.stop(secs(10));
    drop(d);

    // About 4 s more before a kill -9 (the for clock resumes at the first holding result).
    let started = Instant::now();
    let mut d = setup.start();
    assert!(pending(&d), "pending progress restored after SIGTERM");
    wait_until_it_holds_again(&d, started);
    std::thread::sleep(secs(4));
    assert!(pending(&d));
    d.kill();
    drop(d);

    // What is left (about 4 s, at most 5) runs after the next holding result; without the
    // saved progress it would take the whole 12 s again (13 s or more after the start).
    let started = Instant::now();
    let d = setup.start();
    assert!(pending(&d), "pending progress restored after kill -9");
    assert!(
        pd.wait_for_events(1, secs(20)),
        "no trigger:\n{}",
        d.log_tail(40)
    );
    let fired_after = started.elapsed();
    assert!(
        fired_after >= Duration::from_millis(1500) && fired_after <= secs(11),
        "fired {fired_after:?} after the restart; about 4 s (+ the first result, which is unknown) expected"
    );
    assert_eq!(actions(&pd), ["trigger"]);
    nothing_new(&pd, &d, 1, secs(2), "after the trigger");
}
