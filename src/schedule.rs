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
//! - Quick retries (`retries:` of a check) run inside the run: a failed attempt is re-run up to
//!   `count` times, `delay` apart, each attempt with a fresh deadline of `timeout`; the result is
//!   the last attempt's, with `attempts` saying how many it took. Validation keeps every attempt
//!   and delay within the interval, so a run with retries never overlaps the next one (and if a
//!   run does overrun, the missed tick is skipped as above). The concurrency permit is given back
//!   during a delay, so a waiting retry does not hold up other checks.
//! - [`Scheduler::apply`] swaps in a new configuration: unchanged checks (same name, same interval)
//!   keep their schedule and pick up the new definition at their next tick.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{watch, Semaphore, SemaphorePermit};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::probe::check::Check;
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

/// Shortest period the scheduler runs a check at. Configuration validation sets its own bounds;
/// this only keeps the scheduler's own arithmetic defined (no remainder by zero, no busy loop)
/// whatever `Check::interval` holds.
pub const MIN_PERIOD: Duration = Duration::from_millis(1);

/// `interval` as the scheduler uses it, in nanoseconds: at least [`MIN_PERIOD`].
fn period_nanos(interval: Duration) -> u128 {
    interval.max(MIN_PERIOD).as_nanos()
}

/// A duration of `nanos` nanoseconds, saturating at `Duration::MAX`.
fn from_nanos_u128(nanos: u128) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    match u64::try_from(nanos / NANOS_PER_SEC) {
        Ok(secs) => Duration::new(secs, (nanos % NANOS_PER_SEC) as u32),
        Err(_) => Duration::MAX,
    }
}

/// Offset of a check's runs within its interval: stable across restarts and replicas.
pub fn spread_offset(name: &str, interval: Duration) -> Duration {
    let hash = u128::from(xxhash_rust::xxh3::xxh3_64(name.as_bytes()));
    from_nanos_u128(hash % period_nanos(interval))
}

/// Time from `now` (since the Unix epoch) until the next slot of a check.
pub fn first_delay(name: &str, interval: Duration, now: Duration) -> Duration {
    let period = period_nanos(interval);
    let offset = spread_offset(name, interval).as_nanos();
    // offset < period, so neither side underflows; u128 nanoseconds hold any two Durations.
    let phase = (now.as_nanos() % period + period - offset) % period;
    let wait = if phase == 0 { 0 } else { period - phase };
    from_nanos_u128(wait)
}

/// When the tick after one due `late` ago fires, counted from the due time: one period on,
/// or, when the tick fired more than [`SKIP_AFTER`] late, the first slot of the check's grid
/// after now (missed ticks are skipped, never burst). `None` past any representable time: the
/// check never runs again.
pub fn next_tick(late: Duration, interval: Duration) -> Option<Duration> {
    let period = period_nanos(interval);
    let next = if late > SKIP_AFTER {
        let late = late.as_nanos();
        late.checked_add(period - late % period)?
    } else {
        period
    };
    let next = from_nanos_u128(next);
    (next != Duration::MAX).then_some(next)
}

/// A tick that fires later than this after its slot makes the next one skip to the grid.
const SKIP_AFTER: Duration = Duration::from_millis(5);

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
                    let start = Instant::now().checked_add(first_delay(&name, interval, now));
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
    start: Option<Instant>,
    interval: Duration,
    permits: Arc<Semaphore>,
    sink: Arc<dyn Sink>,
    mut stop: watch::Receiver<bool>,
) {
    // The ticks of the check, each armed TIMER_ROUNDING before its slot; `None`: no further
    // slot is representable (an interval of centuries), the check waits for a reload or stop.
    let mut due = start;
    loop {
        let Some(slot_at) = due else {
            let _ = stop.changed().await;
            return;
        };
        let armed = slot_at.checked_sub(TIMER_ROUNDING).unwrap_or(slot_at);
        tokio::select! {
            _ = tokio::time::sleep_until(armed) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let late = Instant::now().saturating_duration_since(slot_at);
        due = next_tick(late, interval).and_then(|d| slot_at.checked_add(d));
        let Ok(permit) = permits.acquire().await else {
            return;
        };
        let begun = Instant::now();
        sink.schedule_lag(begun.saturating_duration_since(slot_at));
        let entry = slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let result = run_attempts(&entry, begun, Some((&permits, permit))).await;
        sink.record(&entry.check, result);
    }
}

/// Runs one check once, with its quick retries, each attempt bounded by the timeout; never panics.
pub async fn run_once(entry: &Entry, begun: Instant) -> CheckResult {
    run_attempts(entry, begun, None).await
}

/// The first attempt at `begun`, then up to `retries.count` more while attempts fail, each
/// `retries.delay` after the last one ended. `permit` (the scheduler's concurrency permit and its
/// semaphore) is released during each delay and taken again before the next attempt.
async fn run_attempts(
    entry: &Entry,
    begun: Instant,
    mut permit: Option<(&Semaphore, SemaphorePermit<'_>)>,
) -> CheckResult {
    let retries = entry.check.retries;
    let mut result = attempt(entry, begun).await;
    let mut attempts: u32 = 1;
    while !result.success && attempts <= retries.count {
        if let Some((permits, held)) = permit.take() {
            drop(held);
            tokio::time::sleep(retries.delay).await;
            match permits.acquire().await {
                Ok(again) => permit = Some((permits, again)),
                // Closed semaphore: the scheduler is gone; the last attempt's result stands.
                Err(_) => break,
            }
        } else {
            tokio::time::sleep(retries.delay).await;
        }
        result = attempt(entry, Instant::now()).await;
        attempts += 1;
    }
    result.attempts = attempts;
    result
}

/// One attempt of a check, bounded by its timeout from `begun`; never panics.
async fn attempt(entry: &Entry, begun: Instant) -> CheckResult {
    let started_at = SystemTime::now();
    // A timeout past any representable instant means no deadline in practice (validation
    // bounds timeouts; this keeps the arithmetic from panicking whatever it holds).
    let deadline = begun
        .checked_add(entry.check.timeout)
        .unwrap_or_else(|| far_future(begun));
    let abort_at = deadline.checked_add(ABORT_GRACE).unwrap_or(deadline);
    let probe = entry.probe.clone();
    let mut handle = tokio::spawn(async move { probe.run(RunContext { deadline }).await });
    match tokio::time::timeout_at(abort_at, &mut handle).await {
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

/// About thirty years after `from`, or `from` itself if even that is not representable.
fn far_future(from: Instant) -> Instant {
    from.checked_add(Duration::from_secs(86_400 * 365 * 30))
        .unwrap_or(from)
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

    /// 2^64 ns: its nanoseconds do not fit a u64 (once a remainder by zero).
    const TWO_POW_64_NS: Duration = Duration::new(18_446_744_073, 709_551_616);

    #[test]
    fn offsets_and_delays_of_a_2_pow_64_ns_interval_are_defined() {
        let now = Duration::from_secs(1_800_000_000);
        let off = spread_offset("x", TWO_POW_64_NS);
        assert!(off < TWO_POW_64_NS);
        let d = first_delay("x", TWO_POW_64_NS, now);
        assert!(d < TWO_POW_64_NS);
        assert_eq!(
            (now + d).as_nanos() % TWO_POW_64_NS.as_nanos(),
            off.as_nanos()
        );
    }

    #[test]
    fn the_longest_interval_and_the_latest_now_do_not_overflow() {
        for now in [
            Duration::ZERO,
            Duration::from_secs(1_800_000_000),
            Duration::MAX,
        ] {
            let d = first_delay("x", Duration::MAX, now);
            assert!(d < Duration::MAX);
            let off = spread_offset("x", Duration::MAX);
            assert!(off < Duration::MAX);
        }
    }

    #[test]
    fn a_zero_interval_runs_at_the_minimum_period() {
        assert_eq!(
            spread_offset("x", Duration::ZERO),
            spread_offset("x", MIN_PERIOD)
        );
        let now = Duration::from_secs(1_800_000_000) + Duration::from_nanos(123_456);
        assert!(first_delay("x", Duration::ZERO, now) < MIN_PERIOD);
        assert_eq!(next_tick(Duration::ZERO, Duration::ZERO), Some(MIN_PERIOD));
    }

    #[test]
    fn next_tick_is_one_period_on_when_on_time() {
        let i = Duration::from_secs(30);
        assert_eq!(next_tick(Duration::ZERO, i), Some(i));
        assert_eq!(next_tick(SKIP_AFTER, i), Some(i));
    }

    #[test]
    fn next_tick_skips_missed_slots_onto_the_grid() {
        let i = Duration::from_secs(30);
        // 75 s late: the slots at 30 s and 60 s are skipped, the next is at 90 s.
        assert_eq!(
            next_tick(Duration::from_secs(75), i),
            Some(Duration::from_secs(90))
        );
        // Exactly on a later slot: the one after it.
        assert_eq!(
            next_tick(Duration::from_secs(60), i),
            Some(Duration::from_secs(90))
        );
        assert_eq!(next_tick(Duration::from_millis(6), i), Some(i));
    }

    #[test]
    fn next_tick_past_any_representable_time_is_none() {
        assert_eq!(next_tick(Duration::ZERO, Duration::MAX), None);
        assert_eq!(next_tick(Duration::MAX, Duration::from_secs(1)), None);
        assert_eq!(next_tick(Duration::MAX, Duration::MAX), None);
        // 2^64 ns is representable: one period on.
        assert_eq!(
            next_tick(Duration::ZERO, TWO_POW_64_NS),
            Some(TWO_POW_64_NS)
        );
    }

    #[test]
    fn far_future_never_panics() {
        let now = Instant::now();
        assert!(far_future(now) > now);
    }
}
