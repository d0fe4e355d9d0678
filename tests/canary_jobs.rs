//! Canary jobs end to end, per job system: `canaryd run` with a canary check and a queue check
//! on the same queue, a real worker of the system on its own redis-server, and a webhook
//! receiver. Healthy: the canary passes with its stages measured. The worker stopped (SIGSTOP)
//! on a quiet queue — the night-time case: the canary pages `not_picked_up` within `within` plus
//! one interval, exactly one page, no second canary enqueued, while the queue rule
//! (`depth > 0 && processed_rate == 0`) stays silent. The worker back (SIGCONT): the canary passes
//! and the page resolves. A task that raises: `job_failed` with the system's error text.

mod receivers;
mod services;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use receivers::Webhook;
use serde_json::Value;
use services::{
    canaryd_run, free_port, http_get, repo_root, secs, venv_python, Canaryd, Redis, Resp, Worker,
};

/// Must finish this long after its enqueue.
const WITHIN: Duration = Duration::from_secs(3);
/// The canary check's interval.
const INTERVAL: Duration = Duration::from_secs(1);

/// One job system's side of the test.
struct System {
    /// `system:` of both checks.
    name: &'static str,
    /// The queue (as the system spells it).
    queue: &'static str,
    /// The key that names the job in the canary check, and a task that raises, with the text
    /// its error must contain.
    task_key: &'static str,
    ok_task: Option<&'static str>,
    failing_task: &'static str,
    error_text: &'static str,
    /// The reasons the stopped worker's page may give: `not_picked_up`, and for a system whose
    /// frozen worker may have been handed the next canary while it blocked waiting for jobs
    /// (Redis gives a blocked BRPOP the job even though the process is stopped), the reason
    /// that canary then reads as.
    stop_reasons: &'static [&'static str],
}

fn wait(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn signal(worker: &Worker, sig: &str) {
    let pid = worker.pid().expect("the worker runs");
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig} {pid}");
}

fn checks_yaml(s: &System, redis: &str, task: Option<&str>) -> String {
    let task = task
        .map(|t| format!("      {}: \"{t}\"\n", s.task_key))
        .unwrap_or_default();
    format!(
        "checks:\n\
         \x20 - name: canary\n    interval: 1s\n    timeout: 900ms\n\
         \x20   canary_job:\n      system: {sys}\n      redis: \"{redis}\"\n      queue: \"{q}\"\n      within: 3s\n{task}\
         \x20   alerts:\n      - {{name: CanaryFailing, when: failed}}\n\
         \x20 - name: jobs\n    interval: 1s\n\
         \x20   queue: {{system: {sys}, redis: \"{redis}\", queues: [\"{q}\"]}}\n\
         \x20   alerts:\n      - {{name: JobsStalled, when: \"depth > 0 && processed_rate == 0\", for: 10s}}\n",
        sys = s.name,
        q = s.queue,
    )
}

fn api(d: &Canaryd, path: &str) -> Value {
    serde_json::from_str(&http_get(&d.url(path)).unwrap().text()).unwrap()
}

/// (status, check, reason, message) of every event the webhook accepted.
fn events(hook: &Webhook) -> Vec<(String, String, String, String)> {
    hook.accepted()
        .iter()
        .filter_map(|r| r.json())
        .flat_map(|b| b["events"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or("").to_string();
            (s("status"), s("check"), s("reason"), s("message"))
        })
        .collect()
}

fn waiting_depth(d: &Canaryd) -> Option<u64> {
    let c = api(d, "/api/v1/checks/jobs");
    c["last_result"]["queues"][0]["depth"]["waiting"].as_u64()
}

/// The whole story for one system; `start_worker` starts its real worker on `redis`.
fn story(s: &System, start_worker: impl Fn(&Redis) -> Worker) {
    let Some(redis) = Redis::start() else { return };
    let worker = start_worker(&redis);
    let hook = Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let write = |p: &Path, text: &str| std::fs::write(p, text).unwrap();
    write(
        &dir.path().join("canaryd.yaml"),
        &format!(
            "listen: {addr}\nstate_dir: state\ncheck_files: [checks.yaml]\n\
             receivers:\n  - name: hook\n    webhook: {{url: \"{}\"}}\n",
            hook.url()
        ),
    );
    let checks = dir.path().join("checks.yaml");
    write(&checks, &checks_yaml(s, &redis.url(), s.ok_task));
    let d = Canaryd::start(canaryd_run(&dir.path().join("canaryd.yaml")), &addr)
        .expect("canaryd starts");

    // Healthy: canaries pass, with their stages.
    wait("two finished canaries", secs(30), || {
        let m = http_get(&d.url("/metrics")).unwrap().text();
        m.contains("canary_check_success{check=\"canary\"} 1")
            && m.lines().any(|l| {
                l.starts_with("canary_job_total_seconds_count{check=\"canary\"}")
                    && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) >= Some(2.0)
            })
    });
    let last = api(&d, "/api/v1/checks/canary")["last_result"].clone();
    assert_eq!(last["success"], true, "{last}");
    let total = last["canary"]["total_seconds"].as_f64();
    assert!(
        total.is_some_and(|t| t < WITHIN.as_secs_f64()),
        "a healthy canary's total: {last}"
    );
    assert!(events(&hook).is_empty(), "{:?}", events(&hook));

    // The night: the worker hangs on a quiet queue.
    signal(&worker, "-STOP");
    let stopped = Instant::now();
    wait("the canary's page", WITHIN + INTERVAL + secs(8), || {
        events(&hook).iter().any(|e| e.0 == "firing")
    });
    let paged_after = stopped.elapsed();
    assert!(
        paged_after <= WITHIN + INTERVAL + INTERVAL + secs(2),
        "paged {paged_after:?} after the stop (within {WITHIN:?} + one interval, and the run's own wait)"
    );
    let out = api(&d, "/api/v1/checks/canary")["last_result"]["canary"].clone();
    std::thread::sleep(secs(3));
    let still = api(&d, "/api/v1/checks/canary")["last_result"]["canary"].clone();
    assert_eq!(
        (out["id"].as_str(), still["id"].as_str()),
        (still["id"].as_str(), out["id"].as_str()),
        "the same canary is out run after run: {out} {still}"
    );
    assert!(
        still["stage"] == "waiting" || still["stage"] == "running",
        "{still}"
    );
    assert_eq!(still["enqueued_now"], false, "{still}");
    let evs = events(&hook);
    let fired: Vec<_> = evs.iter().filter(|e| e.0 == "firing").collect();
    assert_eq!(fired.len(), 1, "one page: {evs:?}");
    assert_eq!(fired[0].1, "canary");
    assert!(s.stop_reasons.contains(&fired[0].2.as_str()), "{evs:?}");
    // At most the one canary in the queue (a worker stopped right after it took the canary
    // from the list leaves none there).
    assert!(
        waiting_depth(&d) <= Some(1),
        "no second canary was enqueued: depth {:?}",
        waiting_depth(&d)
    );
    let stalled = api(&d, "/api/v1/alerts")["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["alert"] == "JobsStalled")
        .cloned()
        .unwrap();
    assert_ne!(
        stalled["state"], "firing",
        "the queue rule is still quiet: {stalled}"
    );

    // The worker comes back: the canary runs, the page resolves.
    signal(&worker, "-CONT");
    wait("the resolve", secs(20), || {
        events(&hook)
            .iter()
            .any(|e| e.0 == "resolved" && e.1 == "canary")
    });
    wait("the queue drained", secs(10), || {
        waiting_depth(&d) == Some(0)
    });

    // A task that raises.
    write(&checks, &checks_yaml(s, &redis.url(), Some(s.failing_task)));
    let reload = services::http_post(&d.url("/-/reload"), "application/json", b"{}").unwrap();
    assert_eq!(reload.status, 200, "{}", reload.text());
    wait("the job_failed page", secs(20), || {
        events(&hook)
            .iter()
            .any(|e| e.0 == "firing" && e.2 == "job_failed")
    });
    let evs = events(&hook);
    let failed = evs.iter().find(|e| e.2 == "job_failed").unwrap();
    assert!(failed.3.contains(s.error_text), "{failed:?}");
    drop(d);
    drop(worker);
}

fn rq_jobs() -> PathBuf {
    repo_root().join("tests/jobs/rq")
}

#[test]
fn rq_canary_pages_a_stopped_worker_on_a_quiet_queue_and_a_raising_job() {
    let Some(py) = venv_python() else { return };
    story(
        &System {
            name: "rq",
            queue: "canary",
            task_key: "function",
            ok_task: None,
            failing_task: "canary_jobs.boom",
            error_text: "RuntimeError: canary boom for canary",
            stop_reasons: &["not_picked_up"],
        },
        |redis| {
            let mut cmd = Command::new(&py);
            cmd.current_dir(rq_jobs())
                .arg("worker.py")
                .arg(redis.url())
                .arg("e2e")
                .arg("canary");
            let mut w = Worker::spawn("rq-worker", cmd);
            w.wait_until(secs(30), || {
                redis.cmd(&["SISMEMBER", "rq:workers", "rq:worker:e2e"]) == Resp::Int(1)
            });
            w
        },
    );
}

#[test]
fn sidekiq_canary_pages_a_stopped_worker_on_a_quiet_queue_and_a_raising_job() {
    let Some(sidekiq) = services::require("sidekiq") else {
        return;
    };
    story(
        &System {
            name: "sidekiq",
            queue: "default",
            task_key: "class",
            ok_task: Some("CanarydCanaryJob"),
            failing_task: "CanarydFailingJob",
            error_text: "RuntimeError: canary boom",
            // A swallowed canary reads as finished (Sidekiq keeps no record): the next one waits.
            stop_reasons: &["not_picked_up"],
        },
        |redis| {
            let mut cmd = Command::new(&sidekiq);
            cmd.arg("-r")
                .arg(repo_root().join("tests/jobs/sidekiq/jobs.rb"))
                .args(["-q", "default", "-c", "2", "-t", "2"])
                .env("REDIS_URL", redis.url());
            let mut w = Worker::spawn("sidekiq", cmd);
            w.wait_until(secs(30), || {
                redis.cmd(&["SCARD", "processes"]).as_int() == Some(1)
            });
            w
        },
    );
}

#[test]
fn celery_canary_pages_a_stopped_worker_on_a_quiet_queue_and_a_raising_job() {
    let Some(py) = venv_python() else { return };
    story(
        &System {
            name: "celery",
            queue: "celery",
            task_key: "task",
            ok_task: None,
            failing_task: "canary_app.boom",
            error_text: "ValueError: canary boom",
            // A canary the frozen worker was handed reads as running (too_slow).
            stop_reasons: &["not_picked_up", "too_slow"],
        },
        |redis| {
            let mut cmd = Command::new(&py);
            cmd.current_dir(repo_root().join("tests/jobs/celery"))
                .env("CELERY_BROKER_URL", format!("{}/0", redis.url()))
                .args(["-m", "celery", "-A", "canary_app", "worker", "--pool=solo"])
                .args(["--prefetch-multiplier=1", "--without-gossip"])
                .args(["--without-mingle", "--without-heartbeat"])
                .args(["-l", "INFO", "-n", "canary-e2e@%h", "-Q", "celery"]);
            let mut w = Worker::spawn("celery-worker", cmd);
            w.wait_until(secs(60), || {
                redis.cmd(&["EXISTS", "_kombu.binding.celery"]) == Resp::Int(1)
            });
            w
        },
    );
}
