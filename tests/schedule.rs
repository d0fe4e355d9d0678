//! Scheduler behaviour under a paused tokio clock: no real waiting.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use canaryd::probe::check::{self, Check};
use canaryd::probe::{BoxFuture, CheckResult, Probe, Reason, RunContext};
use canaryd::schedule::{Entry, Scheduler, Sink};
use tokio::time::Instant;

#[derive(Default)]
struct Recorder {
    results: Mutex<Vec<(String, Instant, CheckResult)>>,
    lags: Mutex<Vec<Duration>>,
}

impl Sink for Recorder {
    fn record(&self, check: &Arc<Check>, result: CheckResult) {
        self.results
            .lock()
            .unwrap()
            .push((check.name.clone(), Instant::now(), result));
    }
    fn schedule_lag(&self, lag: Duration) {
        self.lags.lock().unwrap().push(lag);
    }
}

/// A probe that takes a fixed time and counts how many of its runs overlap.
struct Sleeper {
    takes: Duration,
    running: AtomicUsize,
    max_running: AtomicUsize,
    runs: AtomicUsize,
}

impl Sleeper {
    fn new(takes: Duration) -> Arc<Sleeper> {
        Arc::new(Sleeper {
            takes,
            running: AtomicUsize::new(0),
            max_running: AtomicUsize::new(0),
            runs: AtomicUsize::new(0),
        })
    }
}

impl Probe for Sleeper {
    fn run<'a>(&'a self, _ctx: RunContext) -> BoxFuture<'a, CheckResult> {
        Box::pin(async move {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_running.fetch_max(now, Ordering::SeqCst);
            self.runs.fetch_add(1, Ordering::SeqCst);
            // Counts down even when the scheduler aborts the run at its timeout.
            struct Done<'a>(&'a AtomicUsize);
            impl Drop for Done<'_> {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Ordering::SeqCst);
                }
            }
            let _done = Done(&self.running);
            tokio::time::sleep(self.takes).await;
            CheckResult {
                success: true,
                reason: None,
                message: None,
                duration: self.takes,
                started_at: std::time::SystemTime::now(),
                steps: vec![],
                observations: vec![],
                detail: None,
                attempts: 1,
            }
        })
    }
}

struct Panicker;
impl Probe for Panicker {
    fn run<'a>(&'a self, _ctx: RunContext) -> BoxFuture<'a, CheckResult> {
        Box::pin(async move { panic!("probe bug") })
    }
}

/// Lets `d` pass on the paused test clock (tokio jumps straight to each timer; nothing waits).
async fn elapse(d: Duration) {
    tokio::time::sleep(d).await;
}

fn check(name: &str, interval: &str, timeout: &str) -> Arc<Check> {
    let yaml = format!("checks:\n  - name: {name}\n    interval: {interval}\n    timeout: {timeout}\n    tcp: {{target: \"127.0.0.1:9\"}}\n");
    check::load_checks_str(Path::new("test.yaml"), &yaml)
        .unwrap()
        .remove(0)
}

#[tokio::test(start_paused = true)]
async fn runs_every_interval_without_overlap_and_skips_missed_ticks() {
    let sink = Arc::new(Recorder::default());
    let sched = Scheduler::new(10, sink.clone());
    // Takes 2.5 intervals: ticks that fall inside a run are skipped, never queued up.
    let probe = Sleeper::new(Duration::from_millis(2500));
    sched.apply(vec![Entry {
        check: check("slow", "1s", "1s"),
        probe: probe.clone(),
    }]);
    elapse(Duration::from_secs(20)).await;
    assert_eq!(
        probe.max_running.load(Ordering::SeqCst),
        1,
        "runs overlapped"
    );
    // The 1s timeout cuts each run, so every run is a timeout, one per interval.
    let results = sink.results.lock().unwrap();
    assert!(
        (18..=21).contains(&results.len()),
        "got {} runs",
        results.len()
    );
    assert!(results
        .iter()
        .all(|(_, _, r)| r.reason == Some(Reason::Timeout)));
}

#[tokio::test(start_paused = true)]
async fn a_stalling_probe_ends_at_its_timeout() {
    let sink = Arc::new(Recorder::default());
    let sched = Scheduler::new(10, sink.clone());
    let probe = Sleeper::new(Duration::from_secs(3600));
    sched.apply(vec![Entry {
        check: check("stall", "10s", "2s"),
        probe,
    }]);
    elapse(Duration::from_secs(25)).await;
    let results = sink.results.lock().unwrap();
    assert!(results.len() >= 2);
    for (_, _, r) in results.iter() {
        assert_eq!(r.reason, Some(Reason::Timeout));
        assert!(r.duration < Duration::from_millis(2100), "{:?}", r.duration);
        assert_eq!(r.message.as_deref(), Some("timed out after 2s"));
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_probe_is_reported_and_the_scheduler_goes_on() {
    let sink = Arc::new(Recorder::default());
    let sched = Scheduler::new(10, sink.clone());
    sched.apply(vec![
        Entry {
            check: check("buggy", "1s", "1s"),
            probe: Arc::new(Panicker),
        },
        Entry {
            check: check("fine", "1s", "1s"),
            probe: Sleeper::new(Duration::from_millis(10)),
        },
    ]);
    elapse(Duration::from_secs(5)).await;
    let results = sink.results.lock().unwrap();
    let buggy: Vec<_> = results.iter().filter(|(n, _, _)| n == "buggy").collect();
    assert!(buggy.len() >= 4, "the panicking check kept its schedule");
    assert!(buggy
        .iter()
        .all(|(_, _, r)| r.reason == Some(Reason::Internal)));
    assert!(
        results
            .iter()
            .filter(|(n, _, r)| n == "fine" && r.success)
            .count()
            >= 4
    );
}

#[tokio::test(start_paused = true)]
async fn the_concurrency_cap_holds() {
    let sink = Arc::new(Recorder::default());
    let sched = Scheduler::new(3, sink.clone());
    let probe = Sleeper::new(Duration::from_millis(900));
    let entries = (0..20)
        .map(|i| Entry {
            check: check(&format!("c{i}"), "1s", "1s"),
            probe: probe.clone(),
        })
        .collect();
    sched.apply(entries);
    elapse(Duration::from_secs(10)).await;
    assert!(probe.max_running.load(Ordering::SeqCst) <= 3);
    assert!(probe.runs.load(Ordering::SeqCst) > 10);
    // Waiting for a permit shows up as lateness.
    assert!(sink
        .lags
        .lock()
        .unwrap()
        .iter()
        .any(|l| *l > Duration::from_millis(100)));
}

#[tokio::test(start_paused = true)]
async fn reload_keeps_unchanged_schedules_and_drops_removed_checks() {
    let sink = Arc::new(Recorder::default());
    let sched = Scheduler::new(10, sink.clone());
    let a = Sleeper::new(Duration::from_millis(1));
    let b = Sleeper::new(Duration::from_millis(1));
    sched.apply(vec![
        Entry {
            check: check("keep", "10s", "1s"),
            probe: a.clone(),
        },
        Entry {
            check: check("gone", "10s", "1s"),
            probe: b.clone(),
        },
    ]);
    elapse(Duration::from_secs(35)).await;
    let before: Vec<Instant> = sink
        .results
        .lock()
        .unwrap()
        .iter()
        .filter(|(n, _, _)| n == "keep")
        .map(|(_, t, _)| *t)
        .collect();
    let a2 = Sleeper::new(Duration::from_millis(1));
    sched.apply(vec![Entry {
        check: check("keep", "10s", "1s"),
        probe: a2.clone(),
    }]);
    let gone_runs = b.runs.load(Ordering::SeqCst);
    elapse(Duration::from_secs(30)).await;
    assert_eq!(
        b.runs.load(Ordering::SeqCst),
        gone_runs,
        "a removed check kept running"
    );
    assert!(
        a2.runs.load(Ordering::SeqCst) >= 2,
        "the new definition is used"
    );
    let after: Vec<Instant> = sink
        .results
        .lock()
        .unwrap()
        .iter()
        .filter(|(n, _, _)| n == "keep")
        .map(|(_, t, _)| *t)
        .collect();
    // Same phase: every run is a whole number of intervals after the first one.
    let first = before[0];
    for t in &after {
        let since = t.duration_since(first).as_millis();
        assert!(since % 10_000 <= 5, "run at +{since}ms is off the schedule");
    }
    assert_eq!(sched.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_in_flight_runs_finish() {
    let sink = Arc::new(Recorder::default());
    let sched = Scheduler::new(10, sink.clone());
    let probe = Sleeper::new(Duration::from_millis(500));
    sched.apply(vec![Entry {
        check: check("drain", "1s", "1s"),
        probe: probe.clone(),
    }]);
    // Wait until a run is in flight, then shut down.
    while probe.running.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let n = sink.results.lock().unwrap().len();
    sched.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        sink.results.lock().unwrap().len(),
        n + 1,
        "the in-flight run was recorded"
    );
    assert!(sched.is_empty());
}

/// Intervals and timeouts the configuration should never let through (zero, 2^64 ns, the
/// longest Duration): the scheduler's own arithmetic must still not panic (once a remainder by
/// zero and an Instant overflow).
#[tokio::test(start_paused = true)]
async fn any_interval_and_timeout_schedule_without_a_panic() {
    let sink = Arc::new(Recorder::default());
    let sched = Scheduler::new(10, sink.clone());
    let odd = [
        ("zero", Duration::ZERO),
        ("one-ns", Duration::from_nanos(1)),
        ("two-pow-64-ns", Duration::new(18_446_744_073, 709_551_616)),
        ("max", Duration::MAX),
    ];
    let probe = Sleeper::new(Duration::from_millis(10));
    sched.apply(
        odd.iter()
            .map(|(name, interval)| {
                let mut c = Arc::try_unwrap(check(name, "1s", "1s")).unwrap();
                c.interval = *interval;
                c.timeout = Duration::MAX;
                Entry {
                    check: Arc::new(c),
                    probe: probe.clone(),
                }
            })
            .collect(),
    );
    elapse(Duration::from_secs(2)).await;
    assert_eq!(sched.len(), 4, "a task ended");
    let results = sink.results.lock().unwrap();
    let runs = |n: &str| results.iter().filter(|(c, _, _)| c == n).count();
    // Below the 1 ms floor: a run every millisecond at most, each taking 10 ms, none overlapping.
    for n in ["zero", "one-ns"] {
        assert!((100..=200).contains(&runs(n)), "{n}: {} runs", runs(n));
    }
    assert!(results.iter().all(|(_, _, r)| r.success), "a run failed");
    assert_eq!(
        probe.max_running.load(Ordering::SeqCst),
        2,
        "runs of one check overlapped"
    );
}

// ----- Quick retries ---------------------------------------------------------------------------

/// A probe whose attempts fail until `fail_first` have failed (then pass), or fail by stalling
/// past their deadline when `stall`; records when each attempt began and its deadline.
struct Flaky {
    fail_first: usize,
    stall: bool,
    attempts: Mutex<Vec<(Instant, Instant)>>,
}

impl Flaky {
    fn new(fail_first: usize, stall: bool) -> Arc<Flaky> {
        Arc::new(Flaky {
            fail_first,
            stall,
            attempts: Mutex::new(Vec::new()),
        })
    }
}

impl Probe for Flaky {
    fn run<'a>(&'a self, ctx: RunContext) -> BoxFuture<'a, CheckResult> {
        Box::pin(async move {
            let n = {
                let mut a = self.attempts.lock().unwrap();
                a.push((Instant::now(), ctx.deadline));
                a.len()
            };
            if n <= self.fail_first && self.stall {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            let ok = n > self.fail_first;
            let mut r = CheckResult::failure(
                Reason::Status,
                format!("attempt {n}"),
                std::time::SystemTime::now(),
                Duration::from_millis(10),
            );
            r.success = ok;
            r
        })
    }
}

fn retried(interval: &str, timeout: &str, retries: &str) -> Arc<Check> {
    let yaml = format!("checks:\n  - name: flaky\n    interval: {interval}\n    timeout: {timeout}\n    retries: {retries}\n    tcp: {{target: \"127.0.0.1:9\"}}\n");
    check::load_checks_str(Path::new("test.yaml"), &yaml)
        .unwrap()
        .remove(0)
}

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_is_retried_after_the_delay_and_passing_on_a_retry_passes() {
    let probe = Flaky::new(2, false);
    let entry = Entry {
        check: retried("10s", "1s", "{count: 3, delay: 500ms}"),
        probe: probe.clone(),
    };
    let begun = Instant::now();
    let r = canaryd::schedule::run_once(&entry, begun).await;
    assert!(r.success, "{r:?}");
    assert_eq!(r.attempts, 3);
    let a = probe.attempts.lock().unwrap().clone();
    assert_eq!(a.len(), 3, "no attempt after the one that passed");
    for (i, w) in a.windows(2).enumerate() {
        // Each attempt takes 10ms, then the delay.
        assert_eq!(
            w[1].0 - w[0].0,
            Duration::from_millis(510),
            "attempt {}",
            i + 2
        );
    }
    for (at, deadline) in &a {
        assert_eq!(
            *deadline - *at,
            Duration::from_secs(1),
            "a fresh deadline each"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn every_attempt_failing_reports_the_last_one_and_stalls_end_at_each_timeout() {
    let probe = Flaky::new(usize::MAX, true);
    let entry = Entry {
        check: retried("10s", "1s", "{count: 2, delay: 2s}"),
        probe: probe.clone(),
    };
    let begun = Instant::now();
    let r = canaryd::schedule::run_once(&entry, begun).await;
    assert!(!r.success);
    assert_eq!(r.reason, Some(Reason::Timeout));
    assert_eq!(r.attempts, 3);
    assert_eq!(probe.attempts.lock().unwrap().len(), 3);
    // Three timeouts (each cut within 50ms of its deadline) and two delays: inside the 10s
    // interval, as validation promised.
    let took = Instant::now() - begun;
    assert!(took >= Duration::from_secs(7), "{took:?}");
    assert!(took <= Duration::from_millis(7_200), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn retries_stay_inside_the_interval_and_are_reported_once_per_run() {
    let sink = Arc::new(Recorder::default());
    let sched = Scheduler::new(10, sink.clone());
    // Always fails: every run is 1 + 2 attempts of 10ms with 300ms between them.
    let probe = Flaky::new(usize::MAX, false);
    sched.apply(vec![Entry {
        check: retried("1s", "100ms", "{count: 2, delay: 300ms}"),
        probe: probe.clone(),
    }]);
    elapse(Duration::from_secs(10)).await;
    let results = sink.results.lock().unwrap();
    assert!((9..=11).contains(&results.len()), "{} runs", results.len());
    assert!(results
        .iter()
        .all(|(_, _, r)| r.attempts == 3 && !r.success));
    // One result per interval, never two runs' attempts interleaved.
    let attempts = probe.attempts.lock().unwrap();
    assert!(
        attempts.len() >= results.len() * 3 && attempts.len() <= results.len() * 3 + 3,
        "{} attempts for {} runs",
        attempts.len(),
        results.len()
    );
    for w in results.windows(2) {
        assert!(
            w[1].1 - w[0].1 >= Duration::from_millis(990),
            "runs overlapped"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_waiting_retry_gives_its_concurrency_permit_to_other_checks() {
    let sink = Arc::new(Recorder::default());
    // One permit: while the flaky check waits out its 30s delay, the other check still runs.
    let sched = Scheduler::new(1, sink.clone());
    let flaky = Flaky::new(usize::MAX, false);
    sched.apply(vec![
        Entry {
            check: retried("1m", "1s", "{count: 1, delay: 30s}"),
            probe: flaky.clone(),
        },
        Entry {
            check: check("steady", "1s", "500ms"),
            probe: Sleeper::new(Duration::from_millis(10)),
        },
    ]);
    // The flaky check's first slot lies somewhere in its first minute; its retry 30s later.
    elapse(Duration::from_secs(100)).await;
    let results = sink.results.lock().unwrap();
    let steady = results.iter().filter(|(n, _, _)| n == "steady").count();
    assert!(steady >= 95, "steady ran {steady} times");
    assert!(results
        .iter()
        .any(|(n, _, r)| n == "flaky" && r.attempts == 2));
}

#[test]
fn retries_without_a_setting_mean_one_attempt() {
    assert_eq!(check("plain", "1s", "1s").retries.count, 0);
}
