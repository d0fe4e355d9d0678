//! The building blocks of the configuration (the lowest layer above the clock: it imports no
//! other part of canaryd). Every part of `canaryd.yaml` and the check files is defined and
//! validated next to what uses it (a kind in its module, receivers in `alert`, the daemon file
//! in `loader`); what they share lives here: reading and decoding files ([`files`]), errors
//! located as `file:line:col: key: message` ([`ConfigError`]), the validation context every part
//! reports through ([`ctx::Ctx`]), scalars ([`model`]), expressions, templates and secrets, alert
//! rules ([`rule`]), `defaults:` ([`defaults`]) and the schema building blocks ([`schema`]).
//!
//! Loading (`loader::load`) is all-or-nothing. Structural errors (unknown key, wrong type, bad
//! YAML) come from the YAML decoder, one per file (the decoder cannot go on past one); every
//! semantic error of every file that decoded is reported too, so one `canaryd check` run shows
//! them all.

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

// The web configuration file (`--web.config.file`) is decoded the same way as this one.
pub(crate) use files::{decode, read_config_file};

use std::fmt;
use std::path::PathBuf;

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

impl ConfigError {
    /// An error at a place recorded earlier (references checked once every file is loaded).
    pub fn at(origin: &Origin, key: String, message: String) -> ConfigError {
        ConfigError {
            file: origin.file.clone(),
            line: origin.line,
            col: origin.col,
            key,
            message,
        }
    }
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
