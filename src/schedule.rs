//! The scheduler: one task per check.
//!
//! - The first run of a check lands at a deterministic offset inside its interval (a hash of the
//!   name, aligned to the wall clock), so 10,000 checks with one interval do not fire together and
//!   a restart or a second replica keeps the same phase.
//! - Missed ticks are skipped, never burst; a run never overlaps the previous run of its check
//!   (the task awaits the run before it waits for the next tick).
//! - A global semaphore caps concurrent runs; lateness (tick → run start, permit wait included)
//!   goes to `canaryd_schedule_lag_seconds`.
//! - Every run is bounded by its timeout: the probe gets the deadline, and the scheduler aborts
//!   it shortly after if it does not return. A panicking probe is reported as `internal`.
//! - [`Scheduler::apply`] swaps in a new configuration: unchanged checks (same name, same interval)
//!   keep their schedule and pick up the new definition at their next tick.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::config::Check;
use crate::probe::{CheckResult, Probe, Reason, RunContext};

/// A check ready to run: its definition and its built probe.
#[derive(Clone)]
pub struct Entry {
    /// The definition.
    pub check: Arc<Check>,
    /// The probe built from it.
    pub probe: Arc<dyn Probe>,
}

/// Where results go (metrics, API state, the alert engine).
pub trait Sink: Send + Sync + 'static {
    /// One run finished.
    fn record(&self, check: &Arc<Check>, result: CheckResult);
    /// How late a run started.
    fn schedule_lag(&self, lag: Duration);
}

/// Slack given to a probe past its deadline before the scheduler aborts it.
const ABORT_GRACE: Duration = Duration::from_millis(50);

/// Tokio's timer wheel rounds every deadline up to the next millisecond, so a tick armed for T
/// fires in (T, T+1ms] plus the OS wake-up time. Arming ticks this much early cancels the rounding;
/// lateness is still measured against the true slot, and a run that starts before it counts as 0.
const TIMER_ROUNDING: Duration = Duration::from_millis(1);

struct Task {
    interval: Duration,
    slot: Arc<Mutex<Entry>>,
    handle: JoinHandle<()>,
}

/// Runs every check on its schedule.
pub struct Scheduler {
    tasks: Mutex<HashMap<String, Task>>,
    permits: Arc<Semaphore>,
    sink: Arc<dyn Sink>,
    stop_tx: watch::Sender<bool>,
}

/// Offset of a check's runs within its interval: stable across restarts and replicas.
pub fn spread_offset(name: &str, interval: Duration) -> Duration {
    let period = interval.as_nanos().max(1) as u64;
    Duration::from_nanos(xxhash_rust::xxh3::xxh3_64(name.as_bytes()) % period)
}

/// Time from `now` (since the Unix epoch) until the next slot of a check.
pub fn first_delay(name: &str, interval: Duration, now: Duration) -> Duration {
    let period = interval.as_nanos().max(1);
    let offset = spread_offset(name, interval).as_nanos();
    let phase = (now.as_nanos() + period - offset) % period;
    let wait = if phase == 0 { 0 } else { period - phase };
    Duration::from_nanos(wait as u64)
}

impl Scheduler {
    /// A scheduler with at most `max_concurrency` runs at once.
    pub fn new(max_concurrency: usize, sink: Arc<dyn Sink>) -> Scheduler {
        let (stop_tx, _) = watch::channel(false);
        Scheduler {
            tasks: Mutex::new(HashMap::new()),
            permits: Arc::new(Semaphore::new(max_concurrency.max(1))),
            sink,
            stop_tx,
        }
    }

    /// Makes `entries` the running set: adds, updates in place, or removes tasks.
    pub fn apply(&self, entries: Vec<Entry>) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        let mut keep = HashMap::with_capacity(entries.len());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        for entry in entries {
            let name = entry.check.name.clone();
            let interval = entry.check.interval;
            match tasks.remove(&name) {
                Some(task) if task.interval == interval && !task.handle.is_finished() => {
                    *task.slot.lock().unwrap_or_else(|e| e.into_inner()) = entry;
                    keep.insert(name, task);
                }
                old => {
                    if let Some(old) = old {
                        old.handle.abort();
                    }
                    let slot = Arc::new(Mutex::new(entry));
                    let start = Instant::now() + first_delay(&name, interval, now);
                    let handle = tokio::spawn(run_loop(
                        slot.clone(),
                        start,
                        interval,
                        self.permits.clone(),
                        self.sink.clone(),
                        self.stop_tx.subscribe(),
                    ));
                    keep.insert(
                        name,
                        Task {
                            interval,
                            slot,
                            handle,
                        },
                    );
                }
            }
        }
        for (_, task) in tasks.drain() {
            task.handle.abort();
        }
        *tasks = keep;
    }

    /// Number of scheduled checks.
    pub fn len(&self) -> usize {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no check is scheduled.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops scheduling new runs, lets in-flight runs finish for up to `grace`, then aborts the rest.
    pub async fn shutdown(&self, grace: Duration) {
        let _ = self.stop_tx.send(true);
        let handles: Vec<JoinHandle<()>> = {
            let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
            tasks.drain().map(|(_, t)| t.handle).collect()
        };
        let aborts: Vec<_> = handles.iter().map(|h| h.abort_handle()).collect();
        let all = async {
            for h in handles {
                let _ = h.await;
            }
        };
        if tokio::time::timeout(grace, all).await.is_err() {
            for a in aborts {
                a.abort();
            }
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        for (_, t) in self
            .tasks
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
        {
            t.handle.abort();
        }
    }
}

async fn run_loop(
    slot: Arc<Mutex<Entry>>,
    start: Instant,
    interval: Duration,
    permits: Arc<Semaphore>,
    sink: Arc<dyn Sink>,
    mut stop: watch::Receiver<bool>,
) {
    let armed = start.checked_sub(TIMER_ROUNDING).unwrap_or(start);
    let early = start - armed;
    let mut ticker = tokio::time::interval_at(armed, interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        let tick = tokio::select! {
            t = ticker.tick() => t,
            _ = stop.changed() => return,
        };
        if *stop.borrow() {
            return;
        }
        let Ok(_permit) = permits.acquire().await else {
            return;
        };
        let begun = Instant::now();
        sink.schedule_lag(begun.saturating_duration_since(tick + early));
        let entry = slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let result = run_once(&entry, begun).await;
        sink.record(&entry.check, result);
    }
}

/// Runs one check once, bounded by its timeout; never panics.
pub async fn run_once(entry: &Entry, begun: Instant) -> CheckResult {
    let started_at = SystemTime::now();
    let deadline = begun + entry.check.timeout;
    let probe = entry.probe.clone();
    let mut handle = tokio::spawn(async move { probe.run(RunContext { deadline }).await });
    match tokio::time::timeout_at(deadline + ABORT_GRACE, &mut handle).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => {
            let what = if join.is_panic() {
                "the probe panicked (a bug: please report it)"
            } else {
                "the probe was cancelled"
            };
            CheckResult::failure(Reason::Internal, what, started_at, begun.elapsed())
        }
        Err(_) => {
            handle.abort();
            let msg = format!(
                "timed out after {}",
                humantime::format_duration(entry.check.timeout)
            );
            CheckResult::failure(Reason::Timeout, msg, started_at, begun.elapsed())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_spread_and_are_stable() {
        let i = Duration::from_secs(30);
        assert_eq!(
            spread_offset("shop-login", i),
            spread_offset("shop-login", i)
        );
        let mut buckets = [0u32; 10];
        for n in 0..10_000 {
            let o = spread_offset(&format!("check-{n}"), i);
            assert!(o < i);
            buckets[(o.as_secs_f64() / 3.0) as usize] += 1;
        }
        // Each tenth of the interval gets roughly a tenth of the checks.
        assert!(
            buckets.iter().all(|b| (800..1200).contains(b)),
            "{buckets:?}"
        );
    }

    #[test]
    fn first_delay_lands_on_the_checks_slot() {
        let i = Duration::from_secs(60);
        let off = spread_offset("x", i);
        let now = Duration::from_secs(1_800_000_000) + Duration::from_millis(123);
        let d = first_delay("x", i, now);
        assert!(d < i);
        let at = now + d;
        assert_eq!(at.as_nanos() % i.as_nanos(), off.as_nanos());
    }
}
