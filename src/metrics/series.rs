//! Per-check state: plain atomics, updated by `observe` without any lock and read by the encoder.
//! Durations and times are integer nanoseconds.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::families::render_label;
use crate::config::expr::Value;
use crate::probe::canary_job::{CanaryReport, Stage};
use crate::probe::heartbeat::def::{Heartbeat, LATE};
use crate::probe::kind::Kind;
use crate::probe::queue::{JobState, QueueReport};
use crate::probe::{CheckResult, Phase, Reason, StepResult};

/// Buckets of `canary_check_duration_seconds` and `canary_step_duration_seconds`, in seconds.
pub(crate) const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The same bounds in nanoseconds, so observing compares integers exactly.
const BUCKET_NANOS: [u64; 11] = [
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Number of buckets including `+Inf`.
const NB: usize = DURATION_BUCKETS.len() + 1;

/// Marks "no value" in a nanosecond gauge.
const NONE: u64 = u64::MAX;

/// Durations and times are kept as integer nanoseconds (durations, or since the Unix epoch) and
/// written as exact decimal seconds: no rounding, and no float formatting in the encoder.
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(NONE - 1)
}

/// Nanoseconds since the Unix epoch (0 for times before it).
pub(crate) fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, nanos)
}

/// A histogram with the fixed [`DURATION_BUCKETS`].
#[derive(Debug)]
pub(crate) struct DurationHistogram {
    /// Non-cumulative count per bucket, the last one being `+Inf`.
    counts: [AtomicU64; NB],
    sum_nanos: AtomicU64,
}

/// A consistent-enough copy of a histogram for encoding: `count` is the sum of the buckets, so
/// it always equals the `+Inf` bucket (OpenMetrics requires it), even mid-`observe`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HistogramSnapshot {
    pub(crate) sum_nanos: u64,
    pub(crate) count: u64,
    /// Non-cumulative count per bucket, `+Inf` last.
    pub(crate) buckets: [u64; NB],
}

impl DurationHistogram {
    fn new() -> Self {
        DurationHistogram {
            counts: Default::default(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub(crate) fn observe(&self, d: Duration) {
        let n = nanos(d);
        let i = BUCKET_NANOS
            .iter()
            .position(|&le| n <= le)
            .unwrap_or(NB - 1);
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(n, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        let buckets: [u64; NB] = std::array::from_fn(|i| self.counts[i].load(Relaxed));
        HistogramSnapshot {
            sum_nanos: self.sum_nanos.load(Relaxed),
            count: buckets.iter().sum(),
            buckets,
        }
    }
}

fn reason_index(reason: Reason) -> usize {
    Reason::ALL
        .iter()
        .position(|&r| r == reason)
        .unwrap_or(Reason::ALL.len() - 1)
}

/// Everything exported about one configured check.
///
/// Immutable apart from its atomics; a reload that changes the check's steps builds a new one
/// that shares `core` and the steps that remain, so counters carry over.
#[derive(Debug)]
pub(crate) struct CheckSeries {
    pub(crate) name: String,
    /// `check="<name>"`, rendered and escaped once.
    pub(crate) labels: String,
    /// `check="<name>",kind="<kind>",<label>="<value>",...`: `canary_check_info`'s labels.
    pub(crate) info: String,
    /// Its steps export `canary_step_duration_seconds`: more than one step (a one-step check's
    /// step histogram equals the check's), or `step_histograms: every_step`.
    pub(crate) step_histogram: bool,
    pub(crate) kind: &'static str,
    pub(crate) core: Arc<CoreSeries>,
    pub(crate) steps: Box<[Arc<StepSeries>]>,
}

/// The check-level series.
#[derive(Debug)]
pub(crate) struct CoreSeries {
    /// `[success, failure]`.
    pub(crate) runs: [AtomicU64; 2],
    pub(crate) success: AtomicBool,
    /// When the last run finished (started_at + duration), Unix nanoseconds.
    pub(crate) last_run: AtomicU64,
    pub(crate) duration: DurationHistogram,
    /// Indexed like [`Reason::ALL`]; a series is exported once its count is non-zero.
    pub(crate) failures: [AtomicU64; Reason::ALL.len()],
    /// Quick retries run (attempts beyond the first), whatever their outcome.
    pub(crate) retries: AtomicU64,
    /// Queue checks: what the last successful read found, and the job counters.
    pub(crate) queue: Mutex<Option<QueueState>>,
    /// Set once `queue` holds a state, so other checks skip the lock.
    queue_seen: AtomicBool,
    /// Heartbeat checks: the last ping of any kind, Unix nanoseconds; `NONE` before the first.
    /// Set by the ping itself (and from the store at start), not by a run.
    pub(crate) heartbeat_last_ping: AtomicU64,
    /// Heartbeat checks: `late` of the last run (0/1); `LATE_UNKNOWN` before the first run.
    pub(crate) heartbeat_late: AtomicU8,
    /// Canary job checks: the stages of finished canaries; set at the first canary report.
    /// Boxed: three histograms would add about 320 bytes to every check of every kind.
    pub(crate) canary: std::sync::OnceLock<Box<CanarySeries>>,
}

/// The canary job families of one check.
#[derive(Debug)]
pub(crate) struct CanarySeries {
    /// Enqueued → picked up, of each finished canary whose start the system recorded.
    pub(crate) pickup: DurationHistogram,
    /// Picked up → finished.
    pub(crate) run_time: DurationHistogram,
    /// Enqueued → finished.
    pub(crate) total: DurationHistogram,
    /// Age of the canary out at the end of the last run, nanoseconds; `NONE` when none is.
    pub(crate) outstanding_age: AtomicU64,
}

impl CanarySeries {
    fn record(&self, report: &CanaryReport) {
        if report.stage == Stage::Finished {
            for (h, d) in [
                (&self.pickup, report.pickup_latency),
                (&self.run_time, report.run_time),
                (&self.total, report.total),
            ] {
                if let Some(d) = d {
                    h.observe(d);
                }
            }
        }
        self.outstanding_age
            .store(report.outstanding_age.map_or(0, nanos), Relaxed);
    }

    /// Age of the canary out at the end of the last run (0 when none is).
    pub(crate) fn outstanding_age(&self) -> u64 {
        self.outstanding_age.load(Relaxed)
    }
}

/// `heartbeat_late` before any run.
const LATE_UNKNOWN: u8 = u8::MAX;

/// The queue families of one check. Behind a mutex: queues come and go with discovery, and a
/// run replaces them all at once (queue checks are few and run seconds apart).
#[derive(Debug, Default)]
pub(crate) struct QueueState {
    /// `check="..",system=".."`.
    pub(crate) labels: String,
    /// By queue name, in name order.
    pub(crate) queues: BTreeMap<String, QueueEntry>,
    /// Jobs processed, summed over runs (a canaryd-side counter: it starts at 0).
    pub(crate) processed: u64,
    /// Jobs failed, summed over runs, when the system counts failures.
    pub(crate) failed: Option<u64>,
    pub(crate) workers: Option<u64>,
    pub(crate) busy: Option<u64>,
}

/// One queue's last figures.
#[derive(Debug)]
pub(crate) struct QueueEntry {
    /// `check="..",system="..",queue=".."`.
    pub(crate) labels: String,
    pub(crate) depths: Vec<(JobState, u64)>,
    /// Age of the oldest waiting job, nanoseconds.
    pub(crate) oldest_age: Option<u64>,
}

impl QueueState {
    fn record(&mut self, check: &str, report: &QueueReport) {
        if self.labels.is_empty() {
            render_label(&mut self.labels, "check", check);
            render_label(&mut self.labels, "system", report.system.as_str());
        }
        let mut queues = BTreeMap::new();
        for (q, age) in report.snapshot.queues.iter().zip(
            report
                .oldest_age_seconds
                .iter()
                .chain(std::iter::repeat(&None)),
        ) {
            let labels = match self.queues.remove(&q.name) {
                Some(e) => e.labels,
                None => {
                    let mut l = self.labels.clone();
                    render_label(&mut l, "queue", &q.name);
                    l
                }
            };
            let mut depths = q.depths.clone();
            depths.sort_by_key(|(s, _)| *s);
            depths.dedup_by_key(|(s, _)| *s);
            queues.insert(
                q.name.clone(),
                QueueEntry {
                    labels,
                    depths,
                    oldest_age: age.map(|a| nanos(Duration::from_secs_f64(a.clamp(0.0, 1e12)))),
                },
            );
        }
        self.queues = queues;
        self.processed = self
            .processed
            .saturating_add(report.processed_delta.unwrap_or(0));
        if report.snapshot.failed.is_some() {
            self.failed = Some(
                self.failed
                    .unwrap_or(0)
                    .saturating_add(report.failed_delta.unwrap_or(0)),
            );
        }
        self.workers = report.snapshot.workers;
        self.busy = report.snapshot.busy;
    }
}

/// The series of one HTTP step.
#[derive(Debug)]
pub(crate) struct StepSeries {
    pub(crate) name: String,
    /// `check="<check>",step="<name>"`, rendered and escaped once.
    pub(crate) labels: String,
    /// Set once the step has run: its gauges are exported from then on.
    pub(crate) ran: AtomicBool,
    pub(crate) success: AtomicBool,
    /// Final status of the last run of the step; 0 when no response arrived.
    pub(crate) status: AtomicU32,
    pub(crate) duration: DurationHistogram,
    /// Nanoseconds, indexed like [`Phase::ALL`].
    pub(crate) phases: [AtomicU64; Phase::ALL.len()],
    /// Leaf certificate expiry, Unix nanoseconds; `NONE` when none was seen.
    pub(crate) cert_expiry: AtomicU64,
}

impl CoreSeries {
    fn new() -> Self {
        CoreSeries {
            runs: Default::default(),
            success: AtomicBool::new(false),
            last_run: AtomicU64::new(0),
            duration: DurationHistogram::new(),
            failures: Default::default(),
            retries: AtomicU64::new(0),
            queue: Mutex::new(None),
            queue_seen: AtomicBool::new(false),
            heartbeat_last_ping: AtomicU64::new(NONE),
            heartbeat_late: AtomicU8::new(LATE_UNKNOWN),
            canary: std::sync::OnceLock::new(),
        }
    }

    /// When the last heartbeat ping arrived, Unix nanoseconds.
    pub(crate) fn heartbeat_last_ping(&self) -> Option<u64> {
        let v = self.heartbeat_last_ping.load(Relaxed);
        (v != NONE).then_some(v)
    }

    /// Whether the last heartbeat run found the job late.
    pub(crate) fn heartbeat_late(&self) -> Option<bool> {
        match self.heartbeat_late.load(Relaxed) {
            LATE_UNKNOWN => None,
            v => Some(v == 1),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Option<QueueState>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Calls `f` with the queue state, if this is a queue check that has read something. Other
    /// checks answer from an atomic without locking: the encoder asks every check for every
    /// queue family.
    pub(crate) fn with_queue(&self, f: impl FnOnce(&QueueState)) {
        if self.queue_seen.load(Relaxed) {
            if let Some(q) = self.queue().as_ref() {
                f(q);
            }
        }
    }

    /// Whether the check has finished a run since it was configured.
    pub(crate) fn has_run(&self) -> bool {
        self.runs.iter().any(|r| r.load(Relaxed) > 0)
    }

    fn record(&self, check: &str, kind: &str, result: &CheckResult) {
        if kind == Heartbeat::KEY {
            // The `late` alert variable is the gauge's value.
            if let Some(Value::Bool(late)) = LATE.value(result, LATE.name, result.started_at) {
                self.heartbeat_late.store(u8::from(late), Relaxed);
            }
        }
        if let Some(report) = result.detail::<CanaryReport>() {
            self.canary
                .get_or_init(|| {
                    Box::new(CanarySeries {
                        pickup: DurationHistogram::new(),
                        run_time: DurationHistogram::new(),
                        total: DurationHistogram::new(),
                        outstanding_age: AtomicU64::new(0),
                    })
                })
                .record(report);
        }
        if let Some(report) = result.detail::<QueueReport>() {
            self.queue()
                .get_or_insert_with(QueueState::default)
                .record(check, report);
            self.queue_seen.store(true, Relaxed);
        }
        self.duration.observe(result.duration);
        self.success.store(result.success, Relaxed);
        let finished = unix_nanos(result.started_at).saturating_add(nanos(result.duration));
        self.last_run.store(finished, Relaxed);
        self.retries
            .fetch_add(u64::from(result.attempts.saturating_sub(1)), Relaxed);
        if !result.success {
            // A failure without a reason is a probe bug: count it as internal.
            let reason = result.reason.unwrap_or(Reason::Internal);
            self.failures[reason_index(reason)].fetch_add(1, Relaxed);
        }
        // Last, so that a check counted as having run has its gauges set.
        self.runs[usize::from(!result.success)].fetch_add(1, Relaxed);
    }
}

impl StepSeries {
    fn new(check: &str, name: &str) -> Self {
        let mut labels = String::new();
        render_label(&mut labels, "check", check);
        render_label(&mut labels, "step", name);
        StepSeries {
            name: name.to_owned(),
            labels,
            ran: AtomicBool::new(false),
            success: AtomicBool::new(false),
            status: AtomicU32::new(0),
            duration: DurationHistogram::new(),
            phases: Default::default(),
            cert_expiry: AtomicU64::new(NONE),
        }
    }

    fn record(&self, step: &StepResult) {
        self.duration.observe(step.duration);
        self.success.store(step.success, Relaxed);
        self.status.store(step.status.map_or(0, u32::from), Relaxed);
        for (slot, phase) in self.phases.iter().zip(Phase::ALL) {
            slot.store(nanos(step.phases.get(phase)), Relaxed);
        }
        match step.cert_not_after {
            Some(t) => self.cert_expiry.store(unix_nanos(t), Relaxed),
            // A response without a certificate: the target is plain HTTP now. A step that failed
            // before any response keeps the last certificate seen.
            None if step.status.is_some() => self.cert_expiry.store(NONE, Relaxed),
            None => {}
        }
        self.ran.store(true, Relaxed);
    }

    /// The certificate expiry, if a certificate was seen.
    pub(crate) fn cert_expiry(&self) -> Option<u64> {
        let v = self.cert_expiry.load(Relaxed);
        (v != NONE).then_some(v)
    }
}

impl CheckSeries {
    /// The series for a check as configured, reusing what `previous` (the same check before a
    /// reload) had: everything when kind and steps are unchanged, else the check-level series
    /// and the steps that remain. A check whose kind changed starts afresh.
    pub(crate) fn build(
        meta: &super::CheckMeta,
        every_step_histogram: bool,
        previous: Option<&Arc<CheckSeries>>,
    ) -> Arc<CheckSeries> {
        let (name, kind, steps) = (meta.name.as_str(), meta.kind, &meta.steps);
        let previous = previous.filter(|p| p.kind == kind);
        // The info metric's labels: the check, its kind, then its configured labels (by name;
        // one named `check` or `kind`, or reserved with `__`, would clash and is left out).
        let mut info = String::new();
        render_label(&mut info, "check", name);
        render_label(&mut info, "kind", kind);
        let mut user: Vec<&(String, String)> = meta.labels.iter().collect();
        user.sort();
        for (k, v) in user {
            if k != "check" && k != "kind" && !k.starts_with("__") {
                render_label(&mut info, k, v);
            }
        }
        // Duplicate step names would be duplicate series: keep the first.
        let mut names: Vec<&str> = Vec::with_capacity(steps.len());
        for s in steps {
            if !names.contains(&s.as_str()) {
                names.push(s);
            }
        }
        if let Some(p) = previous {
            if p.info == info
                && p.step_histogram == (every_step_histogram || p.steps.len() > 1)
                && p.steps
                    .iter()
                    .map(|s| s.name.as_str())
                    .eq(names.iter().copied())
            {
                return Arc::clone(p);
            }
        }
        let steps = names
            .iter()
            .map(|&n| {
                previous
                    .and_then(|p| p.steps.iter().find(|s| s.name == n))
                    .map(Arc::clone)
                    .unwrap_or_else(|| Arc::new(StepSeries::new(name, n)))
            })
            .collect();
        let mut labels = String::new();
        render_label(&mut labels, "check", name);
        let step_histogram = every_step_histogram || names.len() > 1;
        Arc::new(CheckSeries {
            name: name.to_owned(),
            labels,
            info,
            step_histogram,
            kind,
            core: previous
                .map(|p| Arc::clone(&p.core))
                .unwrap_or_else(|| Arc::new(CoreSeries::new())),
            steps,
        })
    }

    pub(crate) fn record(&self, result: &CheckResult) {
        for (i, step) in result.steps.iter().enumerate() {
            if !step.ran {
                continue;
            }
            // Results list steps in configuration order; fall back to a search otherwise.
            let series = match self.steps.get(i) {
                Some(s) if s.name == step.name => Some(s),
                _ => self.steps.iter().find(|s| s.name == step.name),
            };
            // A step that is not configured (a run that raced a reload) is ignored.
            if let Some(series) = series {
                series.record(step);
            }
        }
        self.core.record(&self.name, self.kind, result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bounds_agree() {
        for (secs, nanos) in DURATION_BUCKETS.iter().zip(BUCKET_NANOS) {
            assert_eq!(Duration::from_secs_f64(*secs).as_nanos(), u128::from(nanos));
        }
    }

    #[test]
    fn histogram_buckets_are_inclusive() {
        let h = DurationHistogram::new();
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_micros(5_001));
        h.observe(Duration::from_secs(11));
        let s = h.snapshot();
        assert_eq!(s.buckets[0], 1);
        assert_eq!(s.buckets[1], 1);
        assert_eq!(s.buckets[NB - 1], 1);
        assert_eq!(s.count, 3);
        assert_eq!(s.sum_nanos, 11_010_001_000);
    }
}
