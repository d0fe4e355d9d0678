//! The running daemon: configuration, scheduler, metrics, API state, reload and shutdown.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use crate::config::{self, Check, CheckKind, Config, ConfigError, ConfigErrors};
use crate::metrics::{CheckMeta, Metrics};
use crate::probe::http::HttpProbe;
use crate::probe::tcp::{TcpProbe, TcpSpec};
use crate::probe::{CheckResult, Probe};
use crate::schedule::{Entry, Scheduler, Sink};

/// Builds the probe of one check (loading TLS material, so errors surface at load time).
pub fn build_probe(check: &Check) -> Result<Arc<dyn Probe>, String> {
    match &check.kind {
        CheckKind::Http(spec) => Ok(Arc::new(HttpProbe::new(spec.clone())?)),
        CheckKind::Tcp(t) => {
            let tls = t.tls.as_ref().map(|s| s.client_config()).transpose()?;
            let server_name = t.tls.as_ref().and_then(|s| s.server_name.clone());
            Ok(Arc::new(TcpProbe::new(TcpSpec {
                target: t.target.clone(),
                tls,
                server_name,
                cert_min_days: t.cert_min_days,
            })))
        }
        CheckKind::Queue(q) => Ok(Arc::new(crate::probe::queue::build_probe(q)?)),
    }
}

/// Loads the configuration and builds every probe: what `canaryd check` validates and what a
/// reload swaps in. All-or-nothing.
pub fn load(path: &Path) -> Result<(Config, Vec<Entry>), ConfigErrors> {
    let config = config::load(path)?;
    let mut errors = Vec::new();
    let mut entries = Vec::with_capacity(config.checks.len());
    for check in &config.checks {
        match build_probe(check) {
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
        Ok((config, entries))
    } else {
        Err(ConfigErrors(errors))
    }
}

/// The last result of every check, for the API.
#[derive(Default)]
pub struct States {
    last: Mutex<HashMap<String, Arc<CheckResult>>>,
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
    }
}

/// The scheduler's sink: metrics, API state and a debug log line per run.
struct Recorder {
    metrics: Arc<Metrics>,
    states: Arc<States>,
}

impl Sink for Recorder {
    fn record(&self, check: &Arc<Check>, result: CheckResult) {
        self.metrics.observe(&check.name, &result);
        if result.success {
            tracing::debug!(check = %check.name, duration_ms = result.duration.as_millis() as u64, "check passed");
        } else {
            tracing::info!(
                check = %check.name,
                reason = result.reason.map(|r| r.as_str()).unwrap_or("unknown"),
                message = result.message.as_deref().unwrap_or(""),
                "check failed"
            );
        }
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
    scheduler: Scheduler,
    /// Metric families.
    pub metrics: Arc<Metrics>,
    /// Last results.
    pub states: Arc<States>,
    reload_lock: tokio::sync::Mutex<()>,
}

fn metas(config: &Config) -> Vec<CheckMeta> {
    config
        .checks
        .iter()
        .map(|c| CheckMeta {
            name: c.name.clone(),
            kind: c.kind.name(),
            steps: c.kind.step_names(),
        })
        .collect()
}

impl Daemon {
    /// Loads the configuration and starts every check. Must run inside a tokio runtime.
    pub fn start(config_path: &Path) -> Result<Arc<Daemon>, ConfigErrors> {
        let (config, entries) = load(config_path)?;
        let metrics = Arc::new(Metrics::new());
        let states = Arc::new(States::default());
        metrics.set_checks(&metas(&config));
        metrics.set_reload(true, SystemTime::now());
        let sink = Arc::new(Recorder {
            metrics: metrics.clone(),
            states: states.clone(),
        });
        let scheduler = Scheduler::new(config.max_concurrency, sink);
        scheduler.apply(entries);
        tracing::info!(
            checks = config.checks.len(),
            files = config.files.len(),
            "configuration loaded"
        );
        Ok(Arc::new(Daemon {
            config_path: config_path.to_path_buf(),
            config: RwLock::new(Arc::new(config)),
            scheduler,
            metrics,
            states,
            reload_lock: tokio::sync::Mutex::new(()),
        }))
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
    pub async fn reload(&self) -> Result<usize, ConfigErrors> {
        let _one_at_a_time = self.reload_lock.lock().await;
        match load(&self.config_path) {
            Ok((config, entries)) => {
                let n = config.checks.len();
                if config.listen != self.config().listen {
                    tracing::warn!("listen address changed: it takes effect after a restart");
                }
                self.metrics.set_checks(&metas(&config));
                let names: Vec<&str> = config.checks.iter().map(|c| c.name.as_str()).collect();
                self.states.retain(&names);
                self.scheduler.apply(entries);
                *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
                self.metrics.set_reload(true, SystemTime::now());
                tracing::info!(checks = n, "configuration reloaded");
                Ok(n)
            }
            Err(errors) => {
                self.metrics.set_reload(false, SystemTime::now());
                tracing::error!(
                    errors = errors.0.len(),
                    "reload refused, the running configuration stays: {errors}"
                );
                Err(errors)
            }
        }
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
    }
}
