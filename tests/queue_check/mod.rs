//! A queue check as a user writes it — YAML through `load_checks_str`, built by
//! `daemon::build_probe` — run through the real probe from synchronous test code (the worker
//! helpers poll with plain closures), with its results read as the alert engine reads them.
//! Use with `mod queue_check;`.
#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use canaryd::config::expr;
use canaryd::probe::check::{load_checks_str, Check};
use canaryd::probe::{CheckResult, Probe, RunContext};
use tokio::runtime::Runtime;

/// The stalled-jobs alert: jobs wait and none were processed since the last run.
pub const STALLED: &str = "depth > 0 && processed_rate == 0";

/// One runtime for every check of a test binary. Connections are shared per Redis URL across
/// checks, and a connection's driver task lives on the runtime that dialled it: with one
/// multi-threaded runtime it keeps running whichever test thread drives a run.
fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// A loaded check and its probe.
pub struct QueueCheck {
    /// The validated definition (its timeout bounds each run, its alert rules can be evaluated).
    pub check: Arc<Check>,
    probe: Arc<dyn Probe>,
}

impl QueueCheck {
    /// The check a user writes to watch `queues` of a `system` on the Redis at `url`:
    /// `queue: {system, redis, queues}`, 10 s interval, 2 s timeout.
    pub fn new(system: &str, url: &str, queues: &[&str]) -> QueueCheck {
        QueueCheck::from_yaml(&format!(
            "checks:\n  - name: jobs\n    interval: 10s\n    timeout: 2s\n    queue:\n      system: {system}\n      redis: \"{url}\"\n      queues: [{}]\n",
            queues.join(", ")
        ))
    }

    /// The first check of a check file's text.
    pub fn from_yaml(yaml: &str) -> QueueCheck {
        let checks =
            load_checks_str(Path::new("queue.yaml"), yaml).unwrap_or_else(|e| panic!("{e}"));
        QueueCheck::build(Arc::clone(&checks[0]))
    }

    /// The check called `name` in the check file at `path`.
    pub fn from_file(path: &Path, name: &str) -> QueueCheck {
        let yaml = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let checks = load_checks_str(path, &yaml).unwrap_or_else(|e| panic!("{e}"));
        let check = checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no check {name:?} in {}", path.display()));
        QueueCheck::build(Arc::clone(check))
    }

    fn build(check: Arc<Check>) -> QueueCheck {
        let probe = canaryd::daemon::build_probe(&check).unwrap_or_else(|e| panic!("{e}"));
        QueueCheck { check, probe }
    }

    /// One run, bounded by the check's timeout as the scheduler bounds it.
    pub fn run(&self) -> CheckResult {
        self.run_timed().0
    }

    /// One run and how long it took.
    pub fn run_timed(&self) -> (CheckResult, Duration) {
        runtime().block_on(self.timed())
    }

    /// Runs two checks at once (as the scheduler does when their slots coincide); each result
    /// comes with how long its run took.
    pub fn run_both(a: &QueueCheck, b: &QueueCheck) -> [(CheckResult, Duration); 2] {
        runtime().block_on(async {
            let (ra, rb) = tokio::join!(a.timed(), b.timed());
            [ra, rb]
        })
    }

    async fn timed(&self) -> (CheckResult, Duration) {
        let start = Instant::now();
        let deadline = tokio::time::Instant::now() + self.check.timeout;
        let r = self.probe.run(RunContext { deadline }).await;
        (r, start.elapsed())
    }

    /// Whether the check's own alert rule `alert` holds for a result.
    pub fn alert_holds(&self, alert: &str, r: &CheckResult) -> bool {
        let rule = self
            .check
            .alerts
            .iter()
            .find(|a| a.name == alert)
            .unwrap_or_else(|| panic!("check {} has no alert {alert}", self.check.name));
        let now = std::time::SystemTime::now();
        expr::truthy(expr::eval(&rule.expr, &|n| {
            self.check.kind.variable(r, n, now)
        }))
    }
}

/// An alert variable's raw value (seconds for durations, 0/1 for booleans), `None` when the run
/// has none.
pub fn var(r: &CheckResult, name: &str) -> Option<f64> {
    r.observations
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| *v)
}

/// Evaluates an alert expression against a result, as the alert engine does.
pub fn holds(r: &CheckResult, when: &str) -> bool {
    let e = expr::parse(when).unwrap_or_else(|e| panic!("{when}: {e:?}"));
    expr::truthy(expr::eval(&e, &|n| {
        canaryd::probe::kind::variable_of(
            <canaryd::probe::queue::def::Queue as canaryd::probe::kind::Kind>::VARS,
            r,
            n,
            std::time::SystemTime::now(),
        )
    }))
}

/// Panics with the run's message unless it succeeded.
pub fn assert_ok(r: &CheckResult) {
    assert!(
        r.success,
        "run failed: {:?} {:?}",
        r.reason,
        r.message.as_deref()
    );
}

/// The backlog phase of every end-to-end queue test for a system that records enqueue times:
/// five jobs wait and no worker runs. The first run has nothing to compare with (no rate, so the
/// stalled-jobs alert cannot hold yet); a run 300 ms later sees the oldest job aged by that
/// much, nothing moved, and the alert holding.
pub fn assert_backlog_ages_and_stalls(jobs: &QueueCheck) {
    let first = jobs.run();
    assert_ok(&first);
    assert_eq!(var(&first, "depth"), Some(5.0));
    assert_eq!(var(&first, "processed_rate"), None);
    assert!(!holds(&first, STALLED));
    std::thread::sleep(Duration::from_millis(300));
    let second = jobs.run();
    let age = |r| var(r, "oldest_age").expect("the system records enqueue times");
    assert!(
        age(&second) >= age(&first) + 0.3,
        "the oldest job ages: {} then {}",
        age(&first),
        age(&second)
    );
    assert!(holds(
        &second,
        "depth == 5 && workers == 0 && oldest_age > 250ms"
    ));
    assert!(holds(&second, STALLED), "{:?}", second.observations);
}
