//! The metric families (docs/reference.md's metric table), and their encoding as Prometheus text 0.0.4 or
//! OpenMetrics.
//!
//! # Families
//!
//! Per check (label `check`), from [`Metrics::observe`]:
//! - `canary_check_success` (gauge 0/1) and `canary_check_last_run_timestamp_seconds` (gauge,
//!   when the last run finished): from the check's first run on;
//! - `canary_check_duration_seconds` (histogram, buckets .005 … 10) and
//!   `canary_check_runs_total{result="success"|"failure"}`: from configuration on (zeros first);
//! - `canary_check_failures_total{reason}`: a series per [`Reason`](crate::probe::Reason), from its
//!   first occurrence (a failure without a reason counts as `internal`);
//! - `canary_check_retries_total`: the quick retries a run took (`CheckResult::attempts` - 1),
//!   from configuration on (zero for checks without `retries:`).
//!
//! Per step (labels `check`, `step`; only steps that ran update their series):
//! `canary_step_success`, `canary_http_status_code` (0 when no response arrived),
//! `canary_http_phase_duration_seconds{phase}` (gauge: the last run's value, like
//! blackbox_exporter's `probe_http_duration_seconds`) from the step's first run on;
//! `canary_step_duration_seconds` (histogram) from configuration on;
//! `canary_tls_cert_expiry_timestamp_seconds` while the step's last response came with a
//! certificate (a step that failed before any response keeps the last one seen).
//!
//! Per queue check (from the run's `QueueReport`, kept in `CoreSeries::queue` behind a mutex
//! because queues come and go with discovery): `canary_queue_depth{system,queue,state}`,
//! `canary_queue_oldest_job_age_seconds{system,queue}`, `canary_jobs_processed_total` and
//! `canary_jobs_failed_total{system}` (sums of per-run increases since canaryd started),
//! `canary_workers` and `canary_workers_busy{system}` where the system records them.
//!
//! Canary job checks (from the run's `CanaryReport`, kept in `CoreSeries::canary`, created at
//! the first report): the histograms `canary_job_pickup_latency_seconds`,
//! `canary_job_run_time_seconds` and `canary_job_total_seconds` (each canary once, in the run
//! that saw it finish) and the gauge `canary_job_outstanding_age_seconds`.
//!
//! Heartbeat checks: `canary_heartbeat_last_ping_timestamp_seconds` (set by each ping through
//! [`Metrics::set_heartbeat_last_ping`], and from the state store at start) and
//! `canary_heartbeat_late` (the `late` variable of the check's last run).
//!
//! Self: `canaryd_schedule_lag_seconds` (histogram, 0.5 ms … 5 s), `canaryd_checks`,
//! `canaryd_config_last_reload_successful`, `canaryd_config_last_reload_timestamp_seconds` (the
//! last reload attempt), `canaryd_build_info{version,revision,rustversion}` (1; an OpenMetrics info metric), the
//! standard `process_*` families (`process.rs`: memory, CPU, file descriptors, start time),
//! `canaryd_store_errors_total{op}` (every op from 0), `canaryd_store_unsaved_notifications`
//! and `canaryd_http_requests_total{handler,code}` (a fixed set of route patterns, see
//! [`crate::access::handler_label`]).
//!
//! # Design
//!
//! Per-check state lives in `series.rs`: one `CheckSeries` of atomics per configured check (and
//! one `StepSeries` per step), kept in a map (for `observe`) and a name-sorted list (for
//! encoding) that [`Metrics::set_checks`] replaces in one swap, so a removed check loses every
//! series at once, `observe` takes a read lock only for the map lookup, and an encoding works on
//! a snapshot without holding any lock. Label sets are rendered and escaped once, when a check is
//! configured.
//!
//! Encoding: the self metrics are ordinary prometheus-client metrics on a [`Registry`], encoded
//! by prometheus-client (OpenMetrics; `format.rs` rewrites its `#` lines for text 0.0.4). The
//! per-check families are written by `families.rs` straight into the same output, family by
//! family, from one table: at 10,000 checks (about 400,000 series, 33 MB of text) that costs
//! about 30 ms of CPU, where a prometheus-client `Collector` took 80 ms (budget: 50 ms).
//!
//! Adding a family:
//! - per check: a field in `series.rs`, its update in `record` (or a setter here), and an entry
//!   in `families::CHECK_FAMILIES`. A sample's labels are a pre-rendered set plus at most one
//!   label from a fixed set, so e.g. `canary_queue_depth{check,system,queue,state}` keeps a
//!   rendered `check=..,system=..,queue=..` per queue (rendered when the queue first shows up)
//!   and adds `state`; `canary_alert_state{check,alert,severity}` one per configured alert;
//! - global: register a prometheus-client metric in [`Metrics::new`] and keep a handle (e.g.
//!   `canaryd_notifications_total` as a `Family<[(&'static str, String); 2], Counter>` keyed by
//!   configured receiver name and a fixed result).
//!
//! Labels only ever carry configured check and step names and fixed sets (reasons, phases,
//! results): never URLs, error strings or anything else a target controls.

mod families;
mod format;
mod process;
mod series;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::probe::CheckResult;

pub use format::Format;

use families::encode_checks;
use series::CheckSeries;

/// Buckets of `canaryd_schedule_lag_seconds`: fine around the 5 ms p99 budget.
const SCHEDULE_LAG_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

/// What the metrics layer needs to know about one configured check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckMeta {
    /// The check's unique name (the `check` label).
    pub name: String,
    /// Its probe kind: `"http"`, `"tcp"`, ...
    pub kind: &'static str,
    /// Step names in configuration order (the `step` label); empty for kinds without steps.
    pub steps: Vec<String>,
    /// The check's configured labels (`labels:`), exported on `canary_check_info` only.
    pub labels: Vec<(String, String)>,
}

/// The registry of every metric canaryd exports. `Send + Sync`: share it as `Arc<Metrics>`.
pub struct Metrics {
    registry: Registry,
    checks: Arc<CheckSet>,
    /// Serialises `set_checks`, so concurrent reloads cannot lose each other's series.
    reload: Mutex<()>,
    /// Export `canary_step_duration_seconds` for one-step checks too (`metrics:
    /// {step_histograms: every_step}`); by default a one-step check's histogram is the check's.
    every_step_histogram: std::sync::atomic::AtomicBool,
    schedule_lag: Histogram,
    checks_gauge: Gauge,
    reload_successful: Gauge,
    reload_timestamp: Gauge<f64, AtomicU64>,
    /// Capacity for the next encoding: the last output's size plus a margin.
    size_hint: AtomicUsize,
    alert_state: Family<AlertLabels, Gauge>,
    alert_suppressed: Family<AlertLabels, Gauge>,
    notifications: Family<[(&'static str, String); 2], Counter>,
    queue_length: Family<[(&'static str, String); 1], Gauge>,
    delivery: DeliveryFamily,
    store_errors: Family<[(&'static str, String); 1], Counter>,
    store_unsaved: Gauge,
    http_requests: Family<[(&'static str, String); 2], Counter>,
}

/// What a failed state-store write was doing (the `op` label of `canaryd_store_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    /// Committing alert state and the notifications it queued (retried until it succeeds).
    Alerts,
    /// Removing a delivered notification from the outbox, or recording a failed attempt.
    Outbox,
    /// Saving a heartbeat ping (answered 500).
    Heartbeat,
    /// Saving a silence (the API call fails).
    Silence,
}

impl StoreOp {
    /// Every op, to start each series at 0.
    pub const ALL: [StoreOp; 4] = [
        StoreOp::Alerts,
        StoreOp::Outbox,
        StoreOp::Heartbeat,
        StoreOp::Silence,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreOp::Alerts => "alerts",
            StoreOp::Outbox => "outbox",
            StoreOp::Heartbeat => "heartbeat",
            StoreOp::Silence => "silence",
        }
    }
}

/// `canaryd_notification_delivery_seconds{receiver}`.
type DeliveryFamily = Family<[(&'static str, String); 1], Histogram, fn() -> Histogram>;

/// `check`, `alert`, `severity`.
type AlertLabels = [(&'static str, String); 3];

/// Buckets of `canaryd_notification_delivery_seconds` (queued → accepted).
const DELIVERY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0, 3600.0,
];

fn delivery_histogram() -> Histogram {
    Histogram::new(DELIVERY_BUCKETS)
}

/// How a notification ended (the `result` label of `canaryd_notifications_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationResult {
    /// Accepted by the receiver.
    Sent,
    /// An attempt failed and will be retried (network error, 429, 5xx).
    Retried,
    /// Refused for good (4xx), dropped.
    Rejected,
    /// Dropped without sending (its receiver left the configuration).
    Dropped,
}

impl NotificationResult {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationResult::Sent => "sent",
            NotificationResult::Retried => "retried",
            NotificationResult::Rejected => "rejected",
            NotificationResult::Dropped => "dropped",
        }
    }
}

/// The configured checks, replaced as a whole by `set_checks`.
#[derive(Default)]
struct CheckSet {
    current: RwLock<Arc<Checks>>,
}

#[derive(Default)]
struct Checks {
    by_name: HashMap<String, Arc<CheckSeries>>,
    sorted: Vec<Arc<CheckSeries>>,
}

impl CheckSet {
    fn snapshot(&self) -> Arc<Checks> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn get(&self, name: &str) -> Option<Arc<CheckSeries>> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        current.by_name.get(name).cloned()
    }

    fn replace(&self, checks: Checks) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(checks);
    }
}

impl fmt::Debug for CheckSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckSet")
            .field("checks", &self.snapshot().sorted.len())
            .finish()
    }
}

impl Metrics {
    /// A registry with every family and no checks.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let checks = Arc::new(CheckSet::default());

        let schedule_lag = Histogram::new(SCHEDULE_LAG_BUCKETS);
        let checks_gauge = Gauge::default();
        let reload_successful = Gauge::default();
        let reload_timestamp = Gauge::<f64, AtomicU64>::default();
        // prometheus-client appends a period to these help texts.
        registry.register_with_unit(
            "canaryd_schedule_lag",
            "How late check runs started compared with their schedule",
            Unit::Seconds,
            schedule_lag.clone(),
        );
        registry.register(
            "canaryd_checks",
            "Number of checks this process runs (under --shard, its shard's)",
            checks_gauge.clone(),
        );
        registry.register(
            "canaryd_config_last_reload_successful",
            "Whether the last configuration reload succeeded (1) or was refused (0)",
            reload_successful.clone(),
        );
        registry.register_with_unit(
            "canaryd_config_last_reload_timestamp",
            "When the configuration was last loaded or a reload was attempted, in Unix seconds",
            Unit::Seconds,
            reload_timestamp.clone(),
        );
        registry.register(
            "canaryd_build",
            "canaryd build information",
            Info::new([
                ("version", env!("CARGO_PKG_VERSION")),
                ("revision", env!("CANARYD_REVISION")),
                ("rustversion", env!("CANARYD_RUSTC_VERSION")),
            ]),
        );
        registry.register_collector(Box::new(process::ProcessCollector));

        let alert_state = Family::<AlertLabels, Gauge>::default();
        registry.register(
            "canary_alert_state",
            "State of each alert rule: 0 inactive, 1 pending, 2 firing",
            alert_state.clone(),
        );
        let alert_suppressed = Family::<AlertLabels, Gauge>::default();
        registry.register(
            "canary_alert_suppressed",
            "1 while a firing alert's page is held because the parent check it depends on fails (depends_on)",
            alert_suppressed.clone(),
        );
        let notifications = Family::<[(&'static str, String); 2], Counter>::default();
        registry.register(
            "canaryd_notifications",
            "Notifications by receiver and result (sent, retried, rejected, dropped)",
            notifications.clone(),
        );
        let queue_length = Family::<[(&'static str, String); 1], Gauge>::default();
        registry.register(
            "canaryd_notification_queue_length",
            "Notifications waiting in the outbox, by receiver",
            queue_length.clone(),
        );
        let delivery: DeliveryFamily = Family::new_with_constructor(delivery_histogram);
        registry.register_with_unit(
            "canaryd_notification_delivery",
            "Time from a notification being queued to its receiver accepting it",
            Unit::Seconds,
            delivery.clone(),
        );

        let store_errors = Family::<[(&'static str, String); 1], Counter>::default();
        registry.register(
            "canaryd_store_errors",
            "Failed state store writes, by what they were for (alerts, outbox, heartbeat, silence)",
            store_errors.clone(),
        );
        for op in StoreOp::ALL {
            drop(store_errors.get_or_create(&[("op", op.as_str().to_string())]));
        }
        let store_unsaved = Gauge::default();
        registry.register(
            "canaryd_store_unsaved_notifications",
            "Notifications kept in memory because the state store could not be written",
            store_unsaved.clone(),
        );

        let http_requests = Family::<[(&'static str, String); 2], Counter>::default();
        registry.register(
            "canaryd_http_requests",
            "HTTP requests to canaryd's API by route pattern and status code, refused ones included",
            http_requests.clone(),
        );

        Metrics {
            http_requests,
            store_errors,
            store_unsaved,
            alert_state,
            alert_suppressed,
            notifications,
            queue_length,
            delivery,
            registry,
            checks,
            reload: Mutex::new(()),
            every_step_histogram: std::sync::atomic::AtomicBool::new(false),
            schedule_lag,
            checks_gauge,
            reload_successful,
            reload_timestamp,
            size_hint: AtomicUsize::new(4096),
        }
    }

    /// Sets the configured checks, on start and on every successful reload.
    ///
    /// Checks not in `checks` lose all their series; new ones are added; a check whose name and
    /// kind are unchanged keeps its counters and histograms (and those of the steps it still
    /// has). Duplicate check or step names keep the first.
    pub fn set_checks(&self, checks: &[CheckMeta]) {
        let _reload = self.reload.lock().unwrap_or_else(PoisonError::into_inner);
        let old = self.checks.snapshot();
        let mut by_name = HashMap::with_capacity(checks.len());
        for meta in checks {
            if by_name.contains_key(&meta.name) {
                continue;
            }
            let every_step = self.every_step_histogram.load(Relaxed);
            let series = CheckSeries::build(meta, every_step, old.by_name.get(&meta.name));
            by_name.insert(meta.name.clone(), series);
        }
        let mut sorted: Vec<_> = by_name.values().cloned().collect();
        sorted.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        let count = sorted.len();
        self.checks.replace(Checks { by_name, sorted });
        self.checks_gauge
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Whether one-step checks export `canary_step_duration_seconds` too (it equals their
    /// `canary_check_duration_seconds`); applies from the next [`Metrics::set_checks`].
    pub fn set_step_histograms(&self, every_step: bool) {
        self.every_step_histogram.store(every_step, Relaxed);
    }

    /// Records one finished run of a check; ignored if the check is unknown (a run that raced a
    /// reload). Steps that did not run keep their series as they were.
    pub fn observe(&self, check: &str, result: &CheckResult) {
        if let Some(series) = self.checks.get(check) {
            series.record(result);
        }
    }

    /// Records when a heartbeat check last got a ping (`canary_heartbeat_last_ping_timestamp_seconds`);
    /// ignored if the check is unknown.
    pub fn set_heartbeat_last_ping(&self, check: &str, at: SystemTime) {
        if let Some(series) = self.checks.get(check) {
            series
                .core
                .heartbeat_last_ping
                .store(series::unix_nanos(at), std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Records how late a run started compared with its schedule.
    pub fn observe_schedule_lag(&self, lag: Duration) {
        self.schedule_lag.observe(lag.as_secs_f64());
    }

    /// Counts one answered HTTP request. `handler` comes from a fixed set (the route patterns),
    /// and a status code is one of at most 900 values, so the series stay bounded.
    pub fn count_http_request(&self, handler: &'static str, code: u16) {
        self.http_requests
            .get_or_create(&[("handler", handler.to_string()), ("code", code.to_string())])
            .inc();
    }

    /// Records the outcome of a configuration load or reload attempt.
    pub fn set_reload(&self, ok: bool, at: SystemTime) {
        self.reload_successful.set(i64::from(ok));
        let seconds = at
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.reload_timestamp.set(seconds);
    }

    /// Sets `canary_alert_state` of one alert.
    pub fn set_alert_state(&self, check: &str, alert: &str, severity: &'static str, state: u8) {
        self.alert_state
            .get_or_create(&alert_labels(check, alert, severity))
            .set(i64::from(state));
    }

    /// Replaces every `canary_alert_state` series (after a configuration change).
    pub fn reset_alert_states(&self, states: &[(String, String, &'static str, u8)]) {
        self.alert_state.clear();
        for (check, alert, severity, state) in states {
            self.set_alert_state(check, alert, severity, *state);
        }
    }

    /// Moves `canary_alert_suppressed{check,alert,parent}` of one alert from the parent that
    /// held it (`from`) to the one that holds it now (`to`; none: the series goes).
    pub fn set_alert_suppressed(
        &self,
        check: &str,
        alert: &str,
        from: Option<&str>,
        to: Option<&str>,
    ) {
        let labels = |parent: &str| -> AlertLabels {
            [
                ("check", check.to_string()),
                ("alert", alert.to_string()),
                ("parent", parent.to_string()),
            ]
        };
        if let Some(from) = from {
            self.alert_suppressed.remove(&labels(from));
        }
        if let Some(to) = to {
            self.alert_suppressed.get_or_create(&labels(to)).set(1);
        }
    }

    /// Forgets every `canary_alert_suppressed` series (after a configuration change, before
    /// the held alerts are set again).
    pub fn clear_alert_suppressed(&self) {
        self.alert_suppressed.clear();
    }

    /// Counts `n` notifications of a receiver with a result.
    pub fn count_notifications(&self, receiver: &str, result: NotificationResult, n: u64) {
        self.notifications
            .get_or_create(&[
                ("receiver", receiver.to_string()),
                ("result", result.as_str().to_string()),
            ])
            .inc_by(n);
    }

    /// Sets the outbox length of a receiver.
    pub fn set_notification_queue_length(&self, receiver: &str, n: u64) {
        self.queue_length
            .get_or_create(&[("receiver", receiver.to_string())])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Forgets the outbox length series of receivers no longer configured.
    pub fn retain_receivers(&self, receivers: &[String]) {
        self.queue_length.clear();
        for r in receivers {
            self.set_notification_queue_length(r, 0);
        }
    }

    /// Counts a failed state store write.
    pub fn count_store_error(&self, op: StoreOp) {
        self.store_errors
            .get_or_create(&[("op", op.as_str().to_string())])
            .inc();
    }

    /// Sets how many notifications wait in memory for the state store.
    pub fn set_store_unsaved(&self, n: usize) {
        self.store_unsaved.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Records how long a notification waited from queued to accepted.
    pub fn observe_delivery(&self, receiver: &str, waited: Duration) {
        self.delivery
            .get_or_create(&[("receiver", receiver.to_string())])
            .observe(waited.as_secs_f64());
    }

    /// Every family, in the given format.
    pub fn encode(&self, format: Format) -> String {
        let mut out = String::with_capacity(self.size_hint.load(Relaxed));
        // The registered (self) metrics through prometheus-client ...
        let result = match format {
            Format::OpenMetrics => text::encode_registry(&mut out, &self.registry),
            Format::Text => {
                let mut writer = format::TextRewriter::new(&mut out);
                let result = text::encode_registry(&mut writer, &self.registry);
                writer.finish();
                result
            }
        };
        // Writing to a String cannot fail, and neither can the registered metrics.
        if result.is_err() {
            tracing::error!("encoding metrics failed; the output may be incomplete");
        }
        // ... then the per-check families.
        encode_checks(&mut out, format, &self.checks.snapshot().sorted);
        if format == Format::OpenMetrics {
            out.push_str("# EOF\n");
        }
        self.size_hint
            .store(out.len() + out.len() / 16 + 1024, Relaxed);
        out
    }
}

fn alert_labels(check: &str, alert: &str, severity: &'static str) -> AlertLabels {
    [
        ("check", check.to_string()),
        ("alert", alert.to_string()),
        ("severity", severity.to_string()),
    ]
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("checks", &self.checks)
            .finish_non_exhaustive()
    }
}
