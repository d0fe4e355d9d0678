//! Configuration: `canaryd.yaml` plus the check files it names.
//!
//! Loading is all-or-nothing: [`load`] returns a complete [`Config`] or every error it found,
//! each as `file:line:col: key: message`. Structural errors (unknown key, wrong type, bad YAML)
//! come from the YAML decoder, one per file (the decoder cannot go on past one); every semantic
//! error of every file that decoded is reported too, so one `canaryd check` run shows them all.

pub mod ctx;
pub mod defaults;
pub mod expr;
pub mod files;
pub mod limits;
pub mod model;
pub mod rule;
pub mod schema;
pub mod template;
pub mod totp;
pub(crate) mod validate;

// The web configuration file (`--web.config.file`) is decoded the same way as this one.
pub(crate) use files::{decode, read_config_file};

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use url::Url;

use template::Template;

pub use defaults::{CheckDefaults, DEFAULT_BODY_LIMIT, DEFAULT_INTERVAL, DEFAULT_TIMEOUT};
pub use rule::{AlertRule, Severity};

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

/// A receiver.
#[derive(Debug)]
pub struct Receiver {
    /// Name used by routes.
    pub name: String,
    /// Kind and settings.
    pub kind: ReceiverKind,
}

/// Receiver kinds.
#[derive(Debug)]
pub enum ReceiverKind {
    /// PagerDuty Events v2.
    PagerDuty {
        /// Routing key (secret).
        routing_key: Template,
        /// Events API URL.
        url: Url,
    },
    /// Alertmanager v2.
    Alertmanager {
        /// Base URL.
        url: Url,
    },
    /// Slack incoming webhook.
    Slack {
        /// Webhook URL (secret).
        webhook_url: Template,
    },
    /// Generic webhook.
    Webhook {
        /// Target.
        url: Template,
        /// HMAC secret.
        secret: Option<Template>,
        /// Extra headers.
        headers: Vec<(String, Template)>,
    },
}

/// A route.
#[derive(Debug)]
pub struct Route {
    /// Label matchers.
    pub matchers: BTreeMap<String, String>,
    /// Receivers notified.
    pub receivers: Vec<String>,
    /// Escalation: after, receivers.
    pub escalate: Option<(Duration, Vec<String>)>,
    /// Reminder interval.
    pub repeat_interval: Option<Duration>,
}

/// A maintenance window.
#[derive(Debug, Clone)]
pub struct Maintenance {
    /// Check name globs.
    pub checks: Vec<glob::Pattern>,
    /// First start.
    pub start: SystemTime,
    /// Length.
    pub duration: Duration,
    /// Recurrence.
    pub every: Option<Duration>,
}

/// Dead-man's switch settings.
#[derive(Debug)]
pub struct Watchdog {
    /// URL (may hold a secret).
    pub url: Template,
    /// How often.
    pub every: Duration,
}
