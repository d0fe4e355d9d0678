//! The running daemon: configuration, scheduler, metrics, API state, state store, reload and
//! shutdown.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use crate::alert::service::{self, Alerting};
use crate::clock::{Clock, SystemClock};
use crate::config::{ConfigError, ConfigErrors};
use crate::loader::{self, Config};
use crate::metrics::{CheckMeta, Metrics};
use crate::probe::check::Check;
use crate::probe::heartbeat::def::Heartbeat;
use crate::probe::heartbeat::{Book, Ping, Pinged};
use crate::probe::kind::BuildEnv;
use crate::probe::{CheckResult, Probe};
use crate::schedule::{Entry, Scheduler, Sink};
use crate::shard::Shard;
use crate::status::page::{CheckInput, StatusPage};
use crate::store::Store;

/// Builds the probe of one check (loading TLS material, so errors surface at load time). A
/// heartbeat probe built here reads a book of its own, in memory: use [`build_probe_with`] to
/// share one.
pub fn build_probe(check: &Check) -> Result<Arc<dyn Probe>, String> {
    build_probe_with(check, &Arc::new(Book::memory(Arc::new(SystemClock))))
}

/// Builds the probe of one check; heartbeat probes read `heartbeats`.
pub fn build_probe_with(check: &Check, heartbeats: &Arc<Book>) -> Result<Arc<dyn Probe>, String> {
    check.kind.build(
        &check.name,
        &BuildEnv {
            heartbeats: heartbeats.clone(),
        },
    )
}

/// Stack of the thread that loads, validates and builds a configuration. Parsers and validators
/// recurse on nested input; a tokio worker's 2 MiB would overflow long before any limit of theirs,
/// and an overflow aborts the process instead of refusing the file.
pub const LOAD_STACK: usize = 64 * 1024 * 1024;

/// Runs `work` (loading, validating, building a configuration from `path`) on a thread of its
/// own with a [`LOAD_STACK`] stack, inside `catch_unwind`: a panic there becomes a load error of
/// `path` carrying the panic message, never a dead process. Blocks the calling thread until the
/// work ends; async callers use [`isolated_async`].
pub fn isolated<T: Send + 'static>(
    path: &Path,
    work: impl FnOnce() -> Result<T, ConfigErrors> + Send + 'static,
) -> Result<T, ConfigErrors> {
    match spawn_loader(move || std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))) {
        Ok(thread) => match thread.join() {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) | Err(panic) => Err(panicked(path, panic.as_ref())),
        },
        Err(e) => Err(load_failed(
            path,
            format!("cannot start the loading thread: {e}"),
        )),
    }
}

/// [`isolated`] for async callers: the tokio worker awaits the loading thread instead of
/// blocking on it.
pub async fn isolated_async<T: Send + 'static>(
    path: &Path,
    work: impl FnOnce() -> Result<T, ConfigErrors> + Send + 'static,
) -> Result<T, ConfigErrors> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = spawn_loader(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)));
    });
    if let Err(e) = spawned {
        return Err(load_failed(
            path,
            format!("cannot start the loading thread: {e}"),
        ));
    }
    match rx.await {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => Err(panicked(path, panic.as_ref())),
        Err(_) => Err(load_failed(
            path,
            "the loading thread ended without an answer".into(),
        )),
    }
}

/// Starts `job` on the `canaryd-load` thread ([`LOAD_STACK`]), inside the caller's runtime when
/// there is one (building probes may need it: timers, lazily spawned connections).
fn spawn_loader<R: Send + 'static>(
    job: impl FnOnce() -> R + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<R>> {
    let handle = tokio::runtime::Handle::try_current().ok();
    std::thread::Builder::new()
        .name("canaryd-load".into())
        .stack_size(LOAD_STACK)
        .spawn(move || {
            let _entered = handle.as_ref().map(|h| h.enter());
            job()
        })
}

/// The text of a panic payload (`panic!` with a literal or a formatted message).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

fn panicked(path: &Path, panic: &(dyn std::any::Any + Send)) -> ConfigErrors {
    load_failed(
        path,
        format!(
            "loading this configuration crashed canaryd's loader ({}); the file was refused (a bug: please report it with the file)",
            panic_message(panic)
        ),
    )
}

fn load_failed(path: &Path, message: String) -> ConfigErrors {
    ConfigErrors(vec![ConfigError {
        file: path.to_path_buf(),
        line: 1,
        col: 1,
        key: String::new(),
        message,
    }])
}

/// Loads the configuration and builds every probe: what `canaryd check` validates and
/// `canaryd probe` runs. All-or-nothing. Heartbeat probes built here read the daemon's state
/// store on their first run, if there is one, and write nothing; building them touches nothing.
/// Runs [`isolated`]: a crash of the loader is an error, not an abort.
pub fn load(path: &Path) -> Result<(Config, Vec<Entry>), ConfigErrors> {
    let owned = path.to_path_buf();
    isolated(path, move || load_here(&owned))
}

fn load_here(path: &Path) -> Result<(Config, Vec<Entry>), ConfigErrors> {
    let config = loader::load(path)?;
    let book = Arc::new(Book::offline(
        config.state_dir.clone(),
        Arc::new(SystemClock),
    ));
    let entries = entries(&config, &book)?;
    service::notifiers(&config.alerting, &config.path)?;
    Ok((config, entries))
}

/// Builds every check's probe, heartbeat probes reading `heartbeats`.
fn entries(config: &Config, heartbeats: &Arc<Book>) -> Result<Vec<Entry>, ConfigErrors> {
    let mut errors = Vec::new();
    let mut entries = Vec::with_capacity(config.checks.len());
    for check in &config.checks {
        match build_probe_with(check, heartbeats) {
            Ok(probe) => entries.push(Entry {
                check: check.clone(),
                probe,
            }),
            Err(message) => errors.push(ConfigError {
                file: check.origin.file.clone(),
                line: check.origin.line,
                col: check.origin.col,
                key: format!("check {:?}", check.name),
                message,
            }),
        }
    }
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Names of the heartbeat checks of a configuration.
fn heartbeat_names(config: &Config) -> impl Iterator<Item = &str> {
    config
        .checks
        .iter()
        .filter(|c| c.kind.spec::<Heartbeat>().is_some())
        .map(|c| c.name.as_str())
}

/// The last result of every check, for the API.
#[derive(Default)]
pub struct States {
    last: Mutex<HashMap<String, Arc<CheckResult>>>,
    /// The last runs of every check, for the operator view.
    pub history: crate::ui::history::History,
}

impl States {
    /// The last result of a check.
    pub fn get(&self, name: &str) -> Option<Arc<CheckResult>> {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    fn retain(&self, names: &[&str]) {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| names.contains(&k.as_str()));
        self.history.retain(names);
    }
}

/// The scheduler's sink: metrics, alerts, API state and a log line per run.
struct Recorder {
    metrics: Arc<Metrics>,
    states: Arc<States>,
    alerting: Arc<Alerting>,
}

impl Sink for Recorder {
    fn record(&self, check: &Arc<Check>, result: CheckResult) {
        self.metrics.observe(&check.name, &result);
        self.alerting.observe(&check.name, &result);
        if result.success {
            tracing::debug!(check = %check.name, duration_ms = result.duration.as_millis() as u64, "check passed");
        } else {
            tracing::info!(
                check = %check.name,
                reason = result.reason.map(|r| r.as_str()).unwrap_or("unknown"),
                error = result.message.as_deref().unwrap_or(""),
                "check failed"
            );
        }
        self.states.history.record(&check.name, &result);
        self.states
            .last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(check.name.clone(), Arc::new(result));
    }

    fn schedule_lag(&self, lag: Duration) {
        self.metrics.observe_schedule_lag(lag);
    }
}

/// A running daemon.
pub struct Daemon {
    config_path: PathBuf,
    config: RwLock<Arc<Config>>,
    shard: Shard,
    scheduler: Scheduler,
    /// Metric families.
    pub metrics: Arc<Metrics>,
    /// Last results.
    pub states: Arc<States>,
    /// Heartbeat state: what pings said, in memory and in the store.
    pub heartbeats: Arc<Book>,
    /// The state store under `state_dir` (kept across reloads; a new `state_dir` needs a
    /// restart).
    pub store: Store,
    /// Alert rules, silences and delivery.
    pub alerting: Arc<Alerting>,
    reload_lock: tokio::sync::Mutex<()>,
    /// Pings per heartbeat check (a job or a script gone wrong must not turn every ping into a
    /// store write without end).
    pub ping_rate: PingRate,
    /// The public status page, when the configuration had one at start (a reload changes its
    /// components; adding or removing it, or moving its listener, takes a restart).
    pub status: Option<Arc<StatusPage>>,
}

/// An error of the alerting start-up, reported against `state_dir`.
fn store_error_message(config: &Config, message: String) -> ConfigErrors {
    let o = &config.state_dir_origin;
    ConfigErrors(vec![ConfigError {
        file: o.file.clone(),
        line: o.line,
        col: o.col,
        key: "state_dir".into(),
        message,
    }])
}

/// Sets each heartbeat check's last-ping metric from the book (after a start or a reload).
fn seed_heartbeat_metrics(metrics: &Metrics, heartbeats: &Book, config: &Config) {
    for name in heartbeat_names(config) {
        if let Some(t) = heartbeats.get(name).and_then(|r| r.last_ping) {
            metrics.set_heartbeat_last_ping(name, t);
        }
    }
}

fn metas(config: &Config) -> Vec<CheckMeta> {
    config
        .checks
        .iter()
        .map(|c| CheckMeta {
            name: c.name.clone(),
            kind: c.kind.name(),
            steps: c.kind.step_names(),
            labels: c.labels.clone().into_iter().collect(),
        })
        .collect()
}

impl Daemon {
    /// Loads the configuration, opens the state store and starts every check. Must run inside
    /// a tokio runtime. A state store that cannot be opened is reported as an error of
    /// `state_dir`.
    pub fn start(config_path: &Path) -> Result<Arc<Daemon>, ConfigErrors> {
        Daemon::open(config_path, Arc::new(SystemClock), Shard::ALL)
    }

    /// [`Daemon::start`] running only the checks `shard` owns (`--shard i/n`). The whole
    /// configuration is still loaded and validated, at start and on every reload.
    pub fn start_sharded(config_path: &Path, shard: Shard) -> Result<Arc<Daemon>, ConfigErrors> {
        Daemon::open(config_path, Arc::new(SystemClock), shard)
    }

    /// [`Daemon::start`] with the clock heartbeat lateness is judged by (tests set it).
    pub fn start_with_clock(
        config_path: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Daemon>, ConfigErrors> {
        Daemon::open(config_path, clock, Shard::ALL)
    }

    fn open(
        config_path: &Path,
        clock: Arc<dyn Clock>,
        shard: Shard,
    ) -> Result<Arc<Daemon>, ConfigErrors> {
        let path = config_path.to_path_buf();
        let mut config = isolated(config_path, move || loader::load(&path))?;
        config.keep_shard(shard);
        let store_error = |e: crate::store::StoreError| {
            let o = &config.state_dir_origin;
            ConfigErrors(vec![ConfigError {
                file: o.file.clone(),
                line: o.line,
                col: o.col,
                key: "state_dir".into(),
                message: e.to_string(),
            }])
        };
        let store = Store::open(&config.state_dir).map_err(store_error)?;
        let heartbeats = Book::open(store.clone(), clock).map_err(store_error)?;
        heartbeats
            .track_blocking(heartbeat_names(&config))
            .map_err(store_error)?;
        let heartbeats = Arc::new(heartbeats);
        heartbeats.keep_saving();
        let config = Arc::new(config);
        let (entries, notifiers) = {
            let (config, heartbeats) = (config.clone(), heartbeats.clone());
            isolated(config_path, move || {
                Ok((
                    entries(&config, &heartbeats)?,
                    service::notifiers(&config.alerting, &config.path)?,
                ))
            })?
        };
        let metrics = Arc::new(Metrics::new());
        let states = Arc::new(States::default());
        metrics.set_step_histograms(config.every_step_histogram);
        metrics.set_checks(&metas(&config));
        seed_heartbeat_metrics(&metrics, &heartbeats, &config);
        metrics.set_reload(true, SystemTime::now());
        let alerting = Alerting::start(
            store.clone(),
            &config.checks,
            &config.alerting,
            config.link_url(),
            notifiers,
            metrics.clone(),
            heartbeats.clock(),
        )
        .map_err(|message| store_error_message(&config, message))?;
        alerting.watch_heartbeats(&heartbeats);
        let sink = Arc::new(Recorder {
            metrics: metrics.clone(),
            states: states.clone(),
            alerting: alerting.clone(),
        });
        let scheduler = Scheduler::new(config.max_concurrency, sink);
        scheduler.apply(entries);
        let status = match &config.status_page {
            Some(page) => {
                let page = StatusPage::open(page.clone(), store.clone(), heartbeats.clock())
                    .map_err(|e| store_error_message(&config, e.to_string()))?;
                let page = Arc::new(page);
                tick_status_page(&page, &states, &alerting);
                Some(page)
            }
            None => None,
        };
        tracing::info!(
            checks = config.checks.len(),
            files = config.files.len(),
            state = %store.path().display(),
            "configuration loaded"
        );
        if config.alerting.receivers.is_empty() {
            tracing::warn!("no receivers configured: alerts show in /api/v1/alerts and /metrics but page nobody (add receivers: and routes:)");
        }
        if !shard.is_all() {
            tracing::info!(
                %shard,
                checks = config.checks.len(),
                other_shards = config.elsewhere.len(),
                "running this shard's checks only"
            );
        }
        Ok(Arc::new(Daemon {
            config_path: config_path.to_path_buf(),
            config: RwLock::new(config),
            shard,
            scheduler,
            metrics,
            states,
            heartbeats,
            store,
            alerting,
            reload_lock: tokio::sync::Mutex::new(()),
            ping_rate: PingRate::default(),
            status,
        }))
    }

    /// Records a heartbeat ping for `check` (which the caller has found to be a configured
    /// heartbeat check): state, store and the last-ping metric at once.
    pub async fn ping(&self, check: &str, ping: Ping, body: &[u8]) -> Pinged {
        let pinged = self.heartbeats.ping(check, ping, body).await;
        if pinged.saved.is_err() {
            self.metrics
                .count_store_error(crate::metrics::StoreOp::Heartbeat);
        }
        if let Some(t) = pinged.row.last_ping {
            self.metrics.set_heartbeat_last_ping(check, t);
        }
        match &pinged.saved {
            Ok(()) => tracing::debug!(
                check,
                ping = ping.as_str(),
                body_bytes = body.len(),
                "heartbeat ping"
            ),
            Err(e) => tracing::error!(
                check,
                ping = ping.as_str(),
                "heartbeat ping kept in memory but not saved: {e}"
            ),
        }
        pinged
    }

    /// The running configuration.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reloads from disk. On any error the running configuration stays untouched and
    /// `canaryd_config_last_reload_successful` drops to 0.
    ///
    /// Loading, validating and building every probe run [`isolated`] (a thread with a big
    /// stack, panics caught): everything that can fail is done before anything running is
    /// touched, then the new configuration is swapped in.
    pub async fn reload(&self) -> Result<usize, ConfigErrors> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let path = self.config_path.clone();
        let shard = self.shard;
        let heartbeats = self.heartbeats.clone();
        let loaded = isolated_async(&self.config_path, move || {
            let mut config = loader::load(&path)?;
            config.keep_shard(shard);
            let entries = entries(&config, &heartbeats)?;
            let notifiers = service::notifiers(&config.alerting, &config.path)?;
            let metas = metas(&config);
            Ok((Arc::new(config), entries, notifiers, metas))
        })
        .await;
        let (config, entries, notifiers, metas) = match loaded {
            Ok(x) => x,
            Err(errors) => {
                self.metrics.set_reload(false, SystemTime::now());
                tracing::error!(
                    errors = errors.0.len(),
                    "reload refused, the running configuration stays: {errors}"
                );
                return Err(errors);
            }
        };
        let n = config.checks.len();
        let running = self.config();
        if config.listen != running.listen {
            tracing::warn!("listen address changed: it takes effect after a restart");
        }
        if config.external_url != running.external_url {
            tracing::warn!("external_url changed: it takes effect after a restart");
        }
        if config.state_dir != running.state_dir {
            tracing::warn!("state_dir changed: it takes effect after a restart");
        }
        match (&config.status_page, &self.status) {
            (Some(new), Some(page)) if new.listen != page.config().listen => {
                tracing::warn!("status_page.listen changed: it takes effect after a restart")
            }
            (Some(_), None) => {
                tracing::warn!("status_page added: it is served after a restart")
            }
            (None, Some(_)) => tracing::warn!(
                "status_page removed: the page keeps its last components until a restart"
            ),
            _ => {}
        }
        drop(running);
        if let Err(e) = self.heartbeats.track(heartbeat_names(&config)).await {
            tracing::error!("new heartbeat checks are watched but not saved: {e}");
        }
        // Nothing below is expected to fail (the scheduler and the engine take any validated
        // configuration); the catch is the last line of defence, so that the reload metric
        // tells the truth and the daemon stays up.
        let swapped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.scheduler.apply(entries);
            self.alerting
                .apply(&config.checks, &config.alerting, notifiers);
            *self.config.write().unwrap_or_else(|e| e.into_inner()) = config.clone();
            self.metrics
                .set_step_histograms(config.every_step_histogram);
            self.metrics.set_checks(&metas);
            seed_heartbeat_metrics(&self.metrics, &self.heartbeats, &config);
            let names: Vec<&str> = config.checks.iter().map(|c| c.name.as_str()).collect();
            self.states.retain(&names);
            if let (Some(new), Some(page)) = (&config.status_page, &self.status) {
                page.reconfigure(new.clone());
            }
        }));
        if let Err(panic) = swapped {
            self.metrics.set_reload(false, SystemTime::now());
            let message = format!(
                "applying the new configuration crashed ({}); it may be in force in part: fix the file and reload again, or restart canaryd (a bug: please report it)",
                panic_message(panic.as_ref())
            );
            tracing::error!("{message}");
            return Err(load_failed(&self.config_path, message));
        }
        self.metrics.set_reload(true, SystemTime::now());
        tracing::info!(checks = n, "configuration reloaded");
        Ok(n)
    }

    /// Stops scheduling and waits (bounded) for in-flight runs.
    pub async fn shutdown(&self) {
        let longest = self
            .config()
            .checks
            .iter()
            .map(|c| c.timeout)
            .max()
            .unwrap_or_default();
        self.scheduler
            .shutdown(longest.min(Duration::from_secs(30)) + Duration::from_millis(200))
            .await;
        // The last results' alert progress, so a clean stop loses none of it.
        self.alerting.flush_progress().await;
        if let Some(page) = &self.status {
            if let Err(e) = page.flush().await {
                tracing::error!("the status page's last minute of history was not saved: {e}");
            }
        }
        self.alerting.shutdown();
    }
}

/// Evaluates the status page every second from the checks' last results and firing alerts,
/// for as long as the page lives.
fn tick_status_page(page: &Arc<StatusPage>, states: &Arc<States>, alerting: &Arc<Alerting>) {
    let (page, states, alerting) = (
        Arc::downgrade(page),
        Arc::downgrade(states),
        Arc::downgrade(alerting),
    );
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let (Some(page), Some(states), Some(alerting)) =
                (page.upgrade(), states.upgrade(), alerting.upgrade())
            else {
                return;
            };
            let inputs = |name: &str| {
                let last = states.get(name)?;
                Some(CheckInput {
                    success: last.success,
                    duration: last.duration,
                    started_at: Some(last.started_at),
                    firing: alerting.firing(name),
                })
            };
            page.tick(&inputs);
        }
    });
}

/// A token bucket per heartbeat check: [`PingRate::BURST`] pings at once, then
/// [`PingRate::PER_SECOND`] a second. A cron job sends two pings a run (start, finish); a job
/// that pings in a loop gets 429 instead of a store write per request.
#[derive(Default)]
pub struct PingRate {
    buckets: std::sync::Mutex<HashMap<String, (f64, std::time::Instant)>>,
}

impl PingRate {
    /// Pings a check may send at once.
    pub const BURST: f64 = 40.0;
    /// Pings a second a check may send after its burst.
    pub const PER_SECOND: f64 = 20.0;
    /// Checks remembered; past it the buckets start over (only configured heartbeat checks get
    /// here, so this is reached only after many reloads that renamed checks).
    const MAX_CHECKS: usize = 100_000;

    /// Takes one ping of `check`'s allowance at `now`; false when it has none left.
    pub fn allow(&self, check: &str, now: std::time::Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= Self::MAX_CHECKS && !buckets.contains_key(check) {
            buckets.clear();
        }
        let (tokens, last) = buckets
            .entry(check.to_string())
            .or_insert((Self::BURST, now));
        let refill = now.saturating_duration_since(*last).as_secs_f64() * Self::PER_SECOND;
        *tokens = (*tokens + refill).min(Self::BURST);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Uses about `depth` × 16 KiB of stack.
    fn deep(depth: u32) -> u64 {
        let frame = std::hint::black_box([depth as u8; 16 * 1024]);
        if depth == 0 {
            return u64::from(frame[0]);
        }
        u64::from(frame[100]) + deep(depth - 1)
    }

    #[test]
    fn a_panicking_load_is_an_error_of_the_file_with_the_panic_message() {
        let path = Path::new("conf/canaryd.yaml");
        let errors = isolated::<()>(path, || panic!("boom at offset {}", 7)).unwrap_err();
        let text = errors.to_string();
        assert!(text.starts_with("conf/canaryd.yaml:1:1: "), "{text}");
        assert!(
            text.contains("crashed canaryd's loader (boom at offset 7)"),
            "{text}"
        );
        let errors = isolated::<()>(path, || std::panic::panic_any(42_u8)).unwrap_err();
        assert!(errors.to_string().contains("(no message)"));
    }

    #[test]
    fn the_loader_has_stack_for_what_would_overflow_a_tokio_worker() {
        // 16 MiB of frames: eight times a tokio worker's stack, a quarter of the loader's.
        let got = isolated(Path::new("c.yaml"), || Ok(deep(1024))).unwrap();
        assert_eq!(got, deep_sum(1024));
    }

    fn deep_sum(depth: u32) -> u64 {
        (0..=depth).map(|d| u64::from(d as u8)).sum()
    }

    #[tokio::test]
    async fn the_async_loader_answers_and_refuses_panics() {
        let path = Path::new("c.yaml");
        assert_eq!(
            isolated_async(path, || Ok(deep(1024))).await.unwrap(),
            deep_sum(1024)
        );
        let errors = isolated_async::<()>(path, || panic!("bad input"))
            .await
            .unwrap_err();
        assert!(errors.to_string().contains("(bad input)"), "{errors}");
        // Errors pass through unchanged.
        let errors =
            isolated_async::<()>(path, || Err(load_failed(Path::new("x.yaml"), "no".into())))
                .await
                .unwrap_err();
        assert_eq!(errors.to_string(), "x.yaml:1:1: no");
    }

    #[test]
    fn pings_past_the_burst_wait_for_the_refill() {
        let rate = PingRate::default();
        let t0 = std::time::Instant::now();
        let burst = PingRate::BURST as usize;
        assert!((0..burst).all(|_| rate.allow("job", t0)));
        assert!(!rate.allow("job", t0), "the burst is spent");
        assert!(rate.allow("other", t0), "each check has its own allowance");
        let later = t0 + std::time::Duration::from_millis(200);
        assert!(
            rate.allow("job", later),
            "20 a second: four more after 200 ms"
        );
        assert!((0..3).all(|_| rate.allow("job", later)));
        assert!(!rate.allow("job", later));
        let much_later = t0 + std::time::Duration::from_secs(3600);
        assert!((0..burst).all(|_| rate.allow("job", much_later)));
        assert!(
            !rate.allow("job", much_later),
            "the refill stops at the burst"
        );
    }
}
