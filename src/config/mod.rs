//! Configuration: `canaryd.yaml` plus the check files it names.
//!
//! Loading is all-or-nothing: [`load`] returns a complete [`Config`] or every error it found,
//! each as `file:line:col: key: message`. Structural errors (unknown key, wrong type, bad YAML)
//! come from the YAML decoder, one per file (the decoder cannot go on past one); every semantic
//! error of every file that decoded is reported too, so one `canaryd check` run shows them all.

pub mod ctx;
pub mod expr;
pub mod files;
pub mod limits;
pub mod model;
pub mod schema;
pub mod template;
pub mod totp;
mod validate;

// The web configuration file (`--web.config.file`) is decoded the same way as this one.
pub(crate) use files::{decode, read_config_file};

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::probe::heartbeat::HeartbeatSpec;
use crate::probe::http::spec::{HttpSpec, TlsSettings};
use crate::shard::Shard;
use template::Template;

/// One configuration error, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, as it was named (relative paths stay relative).
    pub file: PathBuf,
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub col: u64,
    /// The key path, e.g. `checks[0].http.request.url`.
    pub key: String,
    /// What is wrong and, where possible, what to write instead.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.col,
                self.message
            )
        } else {
            write!(
                f,
                "{}:{}:{}: {}: {}",
                self.file.display(),
                self.line,
                self.col,
                self.key,
                self.message
            )
        }
    }
}

/// Every error found while loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Where a definition was written (for messages and the API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// File.
    pub file: PathBuf,
    /// Line.
    pub line: u64,
    /// Column.
    pub col: u64,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}

/// The whole validated configuration.
#[derive(Debug)]
pub struct Config {
    /// The daemon file this was loaded from.
    pub path: PathBuf,
    /// Listen address of the HTTP server.
    pub listen: SocketAddr,
    /// State directory (the embedded store lives in `state_dir/canaryd.db`).
    pub state_dir: PathBuf,
    /// Where `state_dir` was written (the daemon file's start when it was left out), for errors
    /// opening the store.
    pub state_dir_origin: Origin,
    /// Global cap on concurrent runs.
    pub max_concurrency: usize,
    /// Every check, in file order.
    pub checks: Vec<Arc<Check>>,
    /// Receivers, routes, maintenance windows and the watchdog.
    pub alerting: crate::alert::AlertConfig,
    /// The check files that were read.
    pub files: Vec<PathBuf>,
    /// The shard this process runs (`--shard`); `checks` holds only the checks it owns.
    pub shard: Shard,
    /// The checks of the files that other shards own, in file order.
    pub elsewhere: Vec<Arc<Check>>,
}

impl Config {
    /// Keeps in `checks` only the checks `shard` owns, moving the others to `elsewhere`.
    pub fn keep_shard(&mut self, shard: Shard) {
        self.shard = shard;
        let (mine, others): (Vec<_>, Vec<_>) = std::mem::take(&mut self.checks)
            .into_iter()
            .partition(|c| shard.owns(&c.name));
        self.checks = mine;
        self.elsewhere.extend(others);
    }

    /// `http://<listen>`, where the API answers (an unspecified address becomes loopback): the
    /// base of alerts' generator URLs and of `canaryd silence`.
    pub fn api_url(&self) -> String {
        let mut addr = self.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{addr}")
    }
}

/// One check.
#[derive(Debug)]
pub struct Check {
    /// Unique name.
    pub name: String,
    /// Time between runs.
    pub interval: Duration,
    /// Bound on one run.
    pub timeout: Duration,
    /// Labels copied onto alerts.
    pub labels: BTreeMap<String, String>,
    /// What to probe.
    pub kind: CheckKind,
    /// Alert rules (a default `CheckFailing` when none is written).
    pub alerts: Vec<AlertRule>,
    /// Where it was defined.
    pub origin: Origin,
}

/// The kinds of check.
#[derive(Debug)]
pub enum CheckKind {
    /// HTTP request or flow.
    Http(Arc<HttpSpec>),
    /// TCP connect.
    Tcp(TcpCheck),
    /// Job-system health read from Redis.
    Queue(Arc<QueueCheck>),
    /// Pushed heartbeats from batch jobs.
    Heartbeat(Arc<HeartbeatSpec>),
}

impl CheckKind {
    /// The kind's name (`http`, `tcp`, `queue`, `heartbeat`).
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::Http(_) => "http",
            CheckKind::Tcp(_) => "tcp",
            CheckKind::Queue(_) => "queue",
            CheckKind::Heartbeat(_) => "heartbeat",
        }
    }

    /// Step names, for metrics (empty for kinds without steps).
    pub fn step_names(&self) -> Vec<String> {
        match self {
            CheckKind::Http(h) => h.steps.iter().map(|s| s.name.clone()).collect(),
            CheckKind::Tcp(_) => vec!["connect".into()],
            CheckKind::Queue(_) | CheckKind::Heartbeat(_) => Vec::new(),
        }
    }
}

/// A TCP check.
#[derive(Debug, Clone)]
pub struct TcpCheck {
    /// `host:port`
    pub target: String,
    /// TLS after connecting.
    pub tls: Option<TlsSettings>,
    /// Minimum days of certificate validity.
    pub cert_min_days: Option<u32>,
}

/// A queue check, validated.
#[derive(Debug, Clone)]
pub struct QueueCheck {
    /// Whose layout to read.
    pub system: crate::probe::queue::System,
    /// The Redis URL; may carry a password from a secret, so never print its rendering.
    pub redis: Template,
    /// Configured queues; `None`: discover.
    pub queues: Option<Vec<String>>,
    /// Key prefix / namespace, when set.
    pub prefix: Option<String>,
    /// Celery priority steps (default 0, 3, 6, 9).
    pub priority_steps: Vec<u32>,
    /// Celery priority separator (default `\x06\x16`).
    pub priority_separator: String,
    /// Generic redis: exact keys.
    pub keys: Vec<String>,
    /// Generic redis: SCAN patterns.
    pub patterns: Vec<String>,
    /// Bound on connecting.
    pub connect_timeout: Duration,
    /// TLS settings for `rediss://`.
    pub tls: TlsSettings,
}

/// Alert severities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Pages.
    Critical,
    /// Needs attention soon.
    Error,
    /// Look at it.
    Warning,
    /// For the record.
    Info,
}

impl Severity {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// One alert rule, type-checked against its check's variables.
#[derive(Debug)]
pub struct AlertRule {
    /// Alert name.
    pub name: String,
    /// The condition as written.
    pub when: String,
    /// The parsed condition.
    pub expr: expr::Expr,
    /// True for this long.
    pub for_: Option<Duration>,
    /// True this many runs in a row.
    pub consecutive: Option<u32>,
    /// True in N of the last M runs.
    pub window: Option<(u32, u32)>,
    /// Damping.
    pub keep_firing_for: Option<Duration>,
    /// Severity.
    pub severity: Severity,
    /// Extra labels.
    pub labels: BTreeMap<String, String>,
    /// Annotation templates (no secrets allowed).
    pub annotations: Vec<(String, Template)>,
}

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";
/// Default interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// Default timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default response body cap.
pub const DEFAULT_BODY_LIMIT: u64 = 1024 * 1024;

/// Loads and validates the daemon file and every check file it names.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    validate::load(path)
}

/// Loads only the given check files with default settings (for tests and tools).
pub fn load_checks_str(file: &Path, yaml: &str) -> Result<Vec<Arc<Check>>, ConfigErrors> {
    validate::load_checks_str(file, yaml)
}
