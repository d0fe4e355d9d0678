//! The whole configuration: the daemon file (`canaryd.yaml`) and every check file it names,
//! loaded and validated all-or-nothing into a [`Config`], and the JSON Schemas of both files.
//!
//! This is the top of the configuration: it assembles what the layers below define and validate
//! (the daemon file's own keys here; checks in `probe::check`, each kind in its own module;
//! receivers, routes and maintenance in `alert`).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};
use serde_saphyr::Spanned;

use crate::alert::receiver::ReceiverDef;
use crate::alert::route::RouteDef;
use crate::alert::silence::MaintenanceDef;
use crate::alert::watchdog::WatchdogDef;
use crate::alert::AlertConfig;
use crate::config::ctx::*;
use crate::config::defaults::{check_defaults, Defaults};
use crate::config::files::*;
use crate::config::limits;
use crate::config::model::*;
use crate::config::schema::{self, Count, Text};
use crate::config::*;
use crate::probe::check::{checks_of, Check, CheckDef, CheckFile};
use crate::shard::Shard;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

/// The whole validated configuration.
#[derive(Debug)]
pub struct Config {
    /// The daemon file this was loaded from.
    pub path: PathBuf,
    /// Listen address of the HTTP server.
    pub listen: SocketAddr,
    /// Where people reach canaryd (`external_url`), without a trailing `/`; `None`: `listen`.
    pub external_url: Option<String>,
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
    pub alerting: AlertConfig,
    /// The check files that were read.
    pub files: Vec<PathBuf>,
    /// The shard this process runs (`--shard`); `checks` holds only the checks it owns.
    pub shard: Shard,
    /// The checks of the files that other shards own, in file order.
    pub elsewhere: Vec<Arc<Check>>,
    /// The public status page (`status_page:`).
    pub status_page: Option<Arc<crate::status::def::StatusPageConfig>>,
    /// `metrics: {step_histograms: every_step}`: one-step checks export their step's histogram
    /// too.
    pub every_step_histogram: bool,
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

    /// The base of the links in pages (`<base>/api/v1/checks/<check>`): `external_url`, else
    /// [`Config::api_url`].
    pub fn link_url(&self) -> String {
        self.external_url.clone().unwrap_or_else(|| self.api_url())
    }
}

/// `external_url`: an absolute http(s) URL without query, fragment or credentials (it is
/// printed in every page), its trailing `/` dropped.
fn external_url(ctx: &mut Ctx, s: &Spanned<String>) -> Option<String> {
    let url = parse_url(ctx, s, "external_url")?;
    // A user name or password is never echoed: it may be a secret.
    let problem = if !url.username().is_empty() || url.password().is_some() {
        Some("must not hold a user name or password: it is printed in every page".to_string())
    } else if url.query().is_some() || url.fragment().is_some() {
        Some(format!(
            "{:?} must not have a query or fragment: pages append /api/v1/checks/<check> to it",
            excerpt(&s.value, 200)
        ))
    } else if url.host_str().is_none_or(str::is_empty) {
        Some(format!("{:?} needs a host", excerpt(&s.value, 200)))
    } else {
        None
    };
    if let Some(p) = problem {
        ctx.err(&s.referenced, "external_url", p);
        return None;
    }
    Some(url.as_str().trim_end_matches('/').to_string())
}

/// `canaryd.yaml`
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DaemonFile {
    /// Address of /metrics, the API and heartbeat pings: an IP address and port (default
    /// 127.0.0.1:9464; host names are not resolved).
    #[schemars(with = "Option<String>", extend("pattern" = schema::SOCKET_ADDR, "patternErrorMessage" = "host:port with an IP address, e.g. 127.0.0.1:9464"))]
    pub listen: Option<Spanned<String>>,
    /// The URL people reach canaryd at (behind a proxy, by its public name), the base of the
    /// check links in every page: `<external_url>/api/v1/checks/<check>`. An absolute http(s)
    /// URL without query or fragment (default: `http://<listen>`, loopback for 0.0.0.0).
    #[schemars(with = "Option<String>", extend("pattern" = schema::HTTP_URL, "patternErrorMessage" = "an http(s) URL"))]
    pub external_url: Option<Spanned<String>>,
    /// Where the embedded state store lives, relative to this file (default ./state).
    #[schemars(with = "Option<Text>")]
    pub state_dir: Option<Spanned<String>>,
    /// Globs of check files, relative to this file.
    #[serde(default)]
    #[schemars(with = "Option<Vec<Text>>")]
    pub check_files: Vec<Spanned<String>>,
    /// Interval and timeout for checks that set none.
    #[serde(default)]
    #[schemars(with = "Option<Defaults>")]
    pub defaults: Defaults,
    /// Checks may also be written inline here (at most 10000 in all files).
    #[serde(default)]
    #[schemars(with = "Option<Vec<CheckDef>>", extend("maxItems" = 10000))]
    pub checks: Capped<CheckDef, 10000>,
    /// Where notifications go.
    #[serde(default)]
    #[schemars(with = "Option<Vec<ReceiverDef>>")]
    pub receivers: Vec<ReceiverDef>,
    /// Which alerts go to which receivers; first match wins.
    #[serde(default)]
    #[schemars(with = "Option<Vec<RouteDef>>")]
    pub routes: Vec<RouteDef>,
    /// Windows in which matching checks' alerts do not notify.
    #[serde(default)]
    #[schemars(with = "Option<Vec<MaintenanceDef>>")]
    pub maintenance: Vec<MaintenanceDef>,
    /// External dead-man's switch.
    pub watchdog: Option<WatchdogDef>,
    /// At most this many runs at once, across all checks (default 256, at most 10000).
    #[schemars(with = "Option<Count>", extend("minimum" = 1, "maximum" = 10000))]
    pub max_concurrency: Option<Spanned<u32>>,
    /// A public status page on a listener of its own: components made of checks, incidents,
    /// 90 days of history, an Atom feed and Statuspage-format JSON.
    pub status_page: Option<crate::status::def::StatusPageDef>,
    /// What canaryd exports about itself and its checks.
    pub metrics: Option<MetricsDef>,
}

/// `metrics:` in `canaryd.yaml`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsDef {
    /// Which checks export `canary_step_duration_seconds`: `multi_step` (default: a one-step
    /// check's step histogram is its `canary_check_duration_seconds`, not exported twice) or
    /// `every_step` (every step of every check, about 15 more series per one-step check).
    #[schemars(with = "Option<String>", extend("enum" = ["multi_step", "every_step"]))]
    pub step_histograms: Option<Spanned<String>>,
}

/// Loads and validates the daemon file and every check file it names.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let src = match read_config_file(path) {
        Ok(s) => s,
        Err(reason) => {
            return Err(ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                line: 1,
                col: 1,
                key: String::new(),
                message: format!("cannot read configuration: {reason}"),
            }]))
        }
    };
    let daemon: DaemonFile = match decode(path, &src) {
        Ok(d) => d,
        Err(e) => return Err(ConfigErrors(vec![e])),
    };
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    let mut ctx = Ctx {
        file: path.to_path_buf(),
        src: &src,
        dir: dir.clone(),
        errors: &mut errors,
    };

    let listen = match &daemon.listen {
        None => DEFAULT_LISTEN.parse().expect("valid default"),
        Some(s) => s.value.parse::<SocketAddr>().unwrap_or_else(|_| {
            ctx.err(
                &s.referenced,
                "listen",
                format!(
                    "invalid address {:?}: write host:port, e.g. 127.0.0.1:9464",
                    s.value
                ),
            );
            DEFAULT_LISTEN.parse().expect("valid default")
        }),
    };
    let external_url = daemon
        .external_url
        .as_ref()
        .and_then(|s| external_url(&mut ctx, s));
    let state_dir = daemon
        .state_dir
        .as_ref()
        .map(|s| dir.join(&s.value))
        .unwrap_or_else(|| dir.join("state"));
    let state_dir_origin = match &daemon.state_dir {
        Some(s) => ctx.origin(&s.referenced),
        None => Origin {
            file: path.to_path_buf(),
            line: 1,
            col: 1,
        },
    };
    let max_concurrency = match &daemon.max_concurrency {
        Some(n) if n.value == 0 => {
            ctx.err(&n.referenced, "max_concurrency", "must be at least 1");
            1
        }
        Some(n) => {
            ctx.int_in(Some(n), "max_concurrency", 1, limits::MAX_CONCURRENCY);
            n.value as usize
        }
        None => 256,
    };
    let defaults = check_defaults(&mut ctx, &daemon.defaults);

    let alerting = AlertConfig::validate(
        &mut ctx,
        &daemon.receivers,
        &daemon.routes,
        &daemon.maintenance,
        daemon.watchdog.as_ref(),
    );

    let every_step_histogram = match daemon
        .metrics
        .as_ref()
        .and_then(|m| m.step_histograms.as_ref())
    {
        None => false,
        Some(s) if s.value == "multi_step" => false,
        Some(s) if s.value == "every_step" => true,
        Some(s) => {
            ctx.err(
                &s.referenced,
                "metrics.step_histograms",
                format!(
                    "{:?} is not multi_step or every_step",
                    excerpt(&s.value, 60)
                ),
            );
            false
        }
    };
    let status_page = daemon
        .status_page
        .as_ref()
        .and_then(|def| crate::status::def::validate(&mut ctx, def));
    if let (Some(page), Some(def)) = (&status_page, &daemon.status_page) {
        if page.listen == listen {
            ctx.err(
                &def.listen.referenced,
                "status_page.listen",
                "is the API's address: the public page needs a listener of its own",
            );
        }
    }

    let mut seen = HashMap::new();
    let mut checks = Vec::new();
    checks_of(&mut ctx, &daemon.checks, &defaults, &mut seen, &mut checks);

    let mut files = Vec::new();
    let mut have = HashSet::new();
    if let Some(first) = daemon.check_files.get(limits::MAX_CHECK_FILE_PATTERNS) {
        ctx.err(
            &first.referenced,
            "check_files",
            format!(
                "{} patterns: at most {} are allowed",
                daemon.check_files.len(),
                limits::MAX_CHECK_FILE_PATTERNS
            ),
        );
    }
    for pattern in daemon
        .check_files
        .iter()
        .take(limits::MAX_CHECK_FILE_PATTERNS)
    {
        let key = "check_files";
        let matched = match glob_files(&dir, &pattern.value) {
            Ok(v) => v,
            Err(message) => {
                ctx.err(&pattern.referenced, key, message);
                continue;
            }
        };
        if matched.is_empty() {
            let message = if pattern.value.contains(['*', '?', '[']) {
                format!(
                    "pattern {:?} matches no file (relative to {})",
                    pattern.value,
                    dir.display()
                )
            } else {
                format!("file {} does not exist", pattern.value)
            };
            ctx.err(&pattern.referenced, key, message);
        }
        for f in matched {
            if files.len() >= limits::MAX_CHECK_FILES {
                ctx.err(
                    &pattern.referenced,
                    "check_files",
                    format!(
                        "more than {} check files matched: at most {} are allowed",
                        limits::MAX_CHECK_FILES,
                        limits::MAX_CHECK_FILES
                    ),
                );
                break;
            }
            if have.insert(f.clone()) {
                files.push(f);
            }
        }
    }
    drop(ctx);
    for f in &files {
        match limits::read_capped(f, limits::MAX_CONFIG_FILE_BYTES) {
            Ok(src) => match decode::<CheckFile>(f, &src) {
                Ok(cf) => {
                    let fdir = f
                        .parent()
                        .map(Path::to_path_buf)
                        .unwrap_or_else(|| dir.clone());
                    let mut fctx = Ctx {
                        file: f.clone(),
                        src: &src,
                        dir: fdir,
                        errors: &mut errors,
                    };
                    checks_of(&mut fctx, &cf.checks, &defaults, &mut seen, &mut checks);
                }
                Err(e) => errors.push(e),
            },
            Err(reason) => errors.push(ConfigError {
                file: f.clone(),
                line: 1,
                col: 1,
                key: String::new(),
                message: format!("cannot read check file: {reason}"),
            }),
        }
    }

    errors.extend(crate::probe::check::dependency_errors(&checks, &seen));
    if let Some(page) = &status_page {
        errors.extend(crate::status::def::reference_errors(page, &checks));
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(fold_missing_secrets(errors)));
    }
    Ok(Config {
        path: path.to_path_buf(),
        listen,
        external_url,
        state_dir,
        state_dir_origin,
        max_concurrency,
        checks,
        alerting,
        files,
        shard: Shard::ALL,
        elsewhere: Vec::new(),
        status_page: status_page.map(Arc::new),
        every_step_histogram,
    })
}

/// One error per unset secret: a secret used in many places (`${env:REDIS_URL}` in six queue
/// checks) is reported at its first use, with where else it is used, instead of once per use.
fn fold_missing_secrets(errors: Vec<ConfigError>) -> Vec<ConfigError> {
    let mut out: Vec<ConfigError> = Vec::with_capacity(errors.len());
    let mut first: HashMap<String, (usize, Vec<String>)> = HashMap::new();
    for e in errors {
        let source = e
            .message
            .strip_prefix("secret source ")
            .and_then(|m| m.split_once(": "))
            .filter(|(_, why)| why.ends_with(" is not set") || why.contains("cannot read"))
            .map(|(source, _)| source.to_string());
        match source {
            Some(source) => match first.get_mut(&source) {
                Some((_, also)) => also.push(format!("{}:{}:{}", e.file.display(), e.line, e.col)),
                None => {
                    first.insert(source, (out.len(), Vec::new()));
                    out.push(e);
                }
            },
            None => out.push(e),
        }
    }
    for (at, also) in first.into_values() {
        if also.is_empty() {
            continue;
        }
        let shown: Vec<&str> = also.iter().take(5).map(String::as_str).collect();
        let more = also.len().saturating_sub(shown.len());
        let tail = if more > 0 {
            format!(", and {more} more")
        } else {
            String::new()
        };
        out[at].message = format!(
            "{} (also used at {}{tail})",
            out[at].message,
            shown.join(", ")
        );
    }
    out
}

/// Which file a schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaFile {
    /// The daemon configuration, `canaryd.yaml`.
    Config,
    /// A check file (`checks/*.yaml`).
    Checks,
}

impl SchemaFile {
    /// The schema, in JSON Schema draft 7: the draft the YAML language server (VS Code's YAML
    /// extension and every editor built on it) implements; later drafts it only partly reads.
    pub fn schema(self) -> Value {
        let generator = SchemaSettings::draft07().into_generator();
        let (mut schema, id, title, description) = match self {
            SchemaFile::Config => (
                generator.into_root_schema_for::<DaemonFile>(),
                "urn:canaryd:schema:config",
                "canaryd daemon configuration (canaryd.yaml)",
                "Where canaryd listens, which check files it loads, defaults, receivers, routes, \
                 maintenance windows and the watchdog. Checks may also be written inline. \
                 `canaryd check --config canaryd.yaml` validates what this schema cannot: \
                 files, secrets, references between keys and alert expressions.",
            ),
            SchemaFile::Checks => (
                generator.into_root_schema_for::<CheckFile>(),
                "urn:canaryd:schema:checks",
                "canaryd check file",
                "Checks canaryd runs: each has a name and exactly one kind (http, tcp, queue, \
                 heartbeat), and alert rules. `canaryd check --config canaryd.yaml` validates \
                 what this schema cannot: duplicate names, secrets, variables, alert \
                 expressions, regexes, JSONPaths and CSS selectors.",
            ),
        };
        // An empty file (or one of comments only) is an empty configuration to canaryd.
        schema.insert("type".into(), json!(["object", "null"]));
        schema.insert("$id".into(), id.into());
        schema.insert("title".into(), title.into());
        schema.insert("description".into(), description.into());
        schema.to_value()
    }

    /// The schema as `canaryd schema` prints it and `schema/` holds it: pretty JSON, one
    /// trailing newline.
    pub fn to_json(self) -> String {
        let mut s = serde_json::to_string_pretty(&self.schema()).expect("a schema is JSON");
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_daemon(yaml: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("canaryd.yaml");
        std::fs::write(&path, yaml).unwrap();
        load(&path).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn links_go_under_external_url_else_under_listen_with_loopback_for_any_address() {
        let c = load_daemon("listen: 0.0.0.0:9555\n");
        assert_eq!(c.external_url, None);
        assert_eq!(c.link_url(), "http://127.0.0.1:9555");
        let c = load_daemon(
            "listen: 0.0.0.0:9555\nexternal_url: \"https://canary.example.test/ops/\"\n",
        );
        assert_eq!(c.link_url(), "https://canary.example.test/ops");
        assert_eq!(
            c.api_url(),
            "http://127.0.0.1:9555",
            "the CLI still talks to listen"
        );
    }
}
