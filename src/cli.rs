//! The commands behind the binary: `run`, `check`, `probe`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::daemon::{self, Daemon};
use crate::probe::http::{days_until, short_duration};
use crate::probe::{CheckResult, Phase};
use crate::schedule;
use crate::shard::Shard;

/// canaryd: synthetic and background-job health monitor.
#[derive(Debug, Parser)]
#[command(name = "canaryd", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log filter (e.g. info, debug, canaryd=trace); RUST_LOG works too.
    #[arg(long, global = true, default_value = "info")]
    pub log_level: String,
    /// Log line format: `text` (for people; colours only on a terminal, never with NO_COLOR
    /// set), `logfmt` or `json` (one object per line) for log collectors.
    #[arg(long = "log.format", global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// How log lines are written (to standard error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// `ts=… level=… target=… msg="…" key=value …`.
    Logfmt,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (with `message`).
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: schedule every check, serve /metrics and the API.
    Run {
        /// The daemon configuration.
        #[arg(long, short, default_value = "canaryd.yaml")]
        config: PathBuf,
        /// Run only the checks of shard i of n (`2/3`), chosen by a stable hash of each check's
        /// name; start n processes, `1/n` to `n/n`, on the same configuration.
        #[arg(long, value_name = "i/n")]
        shard: Option<Shard>,
        /// The web configuration file (exporter-toolkit's format): TLS, client certificates,
        /// basic auth and response headers of the listener.
        #[arg(long = "web.config.file", value_name = "FILE")]
        web_config_file: Option<PathBuf>,
    },
    /// Validate the configuration and every check file; print every error; exit 1 on any.
    Check {
        /// The daemon configuration.
        #[arg(long, short, default_value = "canaryd.yaml")]
        config: PathBuf,
        /// Also list the checks shard i of n would run (`2/3`).
        #[arg(long, value_name = "i/n")]
        shard: Option<Shard>,
        /// The web configuration file (exporter-toolkit's format): TLS, client certificates,
        /// basic auth and response headers of the listener.
        #[arg(long = "web.config.file", value_name = "FILE")]
        web_config_file: Option<PathBuf>,
        /// Validate without reading any secret (`${env:..}`, `${file:..}`, `${totp:..}`): the
        /// structure, names, references, types and expressions, for CI where the secrets are
        /// not set. Lists the secrets it did not read; probes are not built.
        #[arg(long)]
        no_secrets: bool,
    },
    /// Run one check once and print a trace of every step; exit 0 if it passed, 1 if not.
    Probe {
        /// The daemon configuration.
        #[arg(long, short, default_value = "canaryd.yaml")]
        config: PathBuf,
        /// The check to run.
        name: String,
        /// Print the values of extracted variables (secrets from the configuration stay
        /// redacted even then).
        #[arg(long)]
        show_values: bool,
    },
    /// Run checks once, at the same time, and judge them as the daemon would: the verdict and
    /// the alert conditions that hold; exit 1 if any fails. For CI and smoke tests after a
    /// deploy.
    Test {
        /// The daemon configuration.
        #[arg(long, short, default_value = "canaryd.yaml")]
        config: PathBuf,
        /// The checks to run (or --all).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        names: Vec<String>,
        /// Run every check.
        #[arg(long)]
        all: bool,
        /// Also write a JUnit XML report here (CI systems show each check as a test).
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Print JSON instead of one line per check.
        #[arg(long)]
        json: bool,
    },
    /// Manage silences on a running daemon (through its API).
    Silence {
        /// What to do.
        #[command(subcommand)]
        action: SilenceAction,
        /// Where the daemon is and how to reach it.
        // Boxed: the other commands are much smaller.
        #[command(flatten)]
        api: Box<ApiArgs>,
    },
    /// Open, update and resolve incidents on the status page of a running daemon (through its
    /// API).
    Incident {
        /// What to do.
        #[command(subcommand)]
        action: IncidentAction,
        /// Where the daemon is and how to reach it.
        #[command(flatten)]
        api: Box<ApiArgs>,
    },
    /// Print a shell completion script: `source <(canaryd completion bash)`, or install it
    /// where your shell reads completions.
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page canaryd(1) (`canaryd man | man -l -`), or write one page per
    /// command into a directory.
    Man {
        /// Write canaryd.1, canaryd-run.1, ... into this directory instead.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Print the JSON Schema of canaryd.yaml (`config`) or of a check file (`checks`), for
    /// editors: completion, documentation on hover, errors while typing.
    Schema {
        /// Which file the schema describes.
        #[arg(value_enum)]
        file: crate::loader::SchemaFile,
    },
}

/// Where the daemon's API is, for the commands that talk to it (`silence`, `incident`).
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// The daemon configuration (its `listen` address is where the API is).
    #[arg(long, short, default_value = "canaryd.yaml", global = true)]
    pub config: PathBuf,
    /// The daemon's API base URL, instead of reading `listen` from the configuration
    /// (`https://...` for a daemon with TLS).
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// How to reach and authenticate to the daemon.
    #[command(flatten)]
    pub client: ApiClientArgs,
}

/// TLS and credentials of `canaryd silence`. The password never comes from an argument
/// (`ps` shows arguments to every user of the host): from a file or the environment.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ApiClientArgs {
    /// CA certificates (PEM) to verify an https daemon with, instead of the system roots.
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), for a daemon that requires one; with --key-file.
    #[arg(long, global = true, value_name = "FILE", requires = "key_file")]
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, global = true, value_name = "FILE", requires = "cert_file")]
    pub key_file: Option<PathBuf>,
    /// Basic-auth user (default: $CANARYD_USERNAME).
    #[arg(long, global = true)]
    pub username: Option<String>,
    /// A file holding the basic-auth password (default: $CANARYD_PASSWORD_FILE, else the
    /// password in $CANARYD_PASSWORD).
    #[arg(long, global = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

/// The largest password file read (a password is a line; anything larger is a wrong file).
const PASSWORD_FILE_LIMIT: u64 = 4096;

impl ApiClientArgs {
    /// The basic-auth credentials, from the flags and the environment; `None` without any.
    fn credentials(&self) -> Result<Option<(String, String)>, String> {
        self.credentials_from(|name| std::env::var(name).ok())
    }

    fn credentials_from(
        &self,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<(String, String)>, String> {
        let env = |name: &str| var(name).filter(|v| !v.is_empty());
        let user = self.username.clone().or_else(|| env("CANARYD_USERNAME"));
        let file = self
            .password_file
            .clone()
            .or_else(|| env("CANARYD_PASSWORD_FILE").map(PathBuf::from));
        let password = match file {
            Some(path) => Some(read_password(&path)?),
            None => env("CANARYD_PASSWORD"),
        };
        match (user, password) {
            (None, None) => Ok(None),
            (Some(u), Some(p)) => Ok(Some((u, p))),
            (Some(_), None) => Err(
                "a user but no password: set CANARYD_PASSWORD_FILE (or --password-file) to a file holding it, or CANARYD_PASSWORD"
                    .into(),
            ),
            (None, Some(_)) => {
                Err("a password but no user: set CANARYD_USERNAME (or --username)".into())
            }
        }
    }

    /// The HTTP client: the CA file and client certificate given, no redirects (credentials go
    /// only where --url says).
    fn client(&self) -> Result<reqwest::Client, String> {
        let settings = crate::probe::tls::TlsSettings {
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            ..Default::default()
        };
        let mut tls = (*settings.client_config()?).clone();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("canaryd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {}", e.without_url()))
    }
}

/// A password file's first line (its line break dropped), never its content in an error.
fn read_password(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read as _;
    let fail = |e: std::io::Error| format!("password file {}: {e}", path.display());
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(fail)?
        .take(PASSWORD_FILE_LIMIT + 1)
        .read_to_string(&mut text)
        .map_err(|_| format!("password file {}: not UTF-8 text", path.display()))?;
    if text.len() as u64 > PASSWORD_FILE_LIMIT {
        return Err(format!(
            "password file {}: larger than {PASSWORD_FILE_LIMIT} bytes (it should hold the password only)",
            path.display()
        ));
    }
    let password = text.lines().next().unwrap_or_default().to_string();
    if password.is_empty() {
        return Err(format!("password file {}: empty", path.display()));
    }
    Ok(password)
}

/// What to add to an error status of the API, so the user knows what to do.
fn status_advice(status: u16) -> &'static str {
    match status {
        401 => "\n(the daemon requires basic auth: set CANARYD_USERNAME and CANARYD_PASSWORD_FILE (a file holding the password) or CANARYD_PASSWORD, for one of the users in its web configuration's basic_auth_users)",
        403 => "\n(without basic_auth_users in a web configuration, the daemon takes writes only from its own host: run this there, or configure basic_auth_users and set CANARYD_USERNAME and CANARYD_PASSWORD_FILE)",
        _ => "",
    }
}

/// `canaryd silence ...`
#[derive(Debug, Subcommand)]
pub enum SilenceAction {
    /// Silence the alerts whose labels match, for a while.
    Add {
        /// `label=value` (the value may be a glob: `check=shop-*`); repeat for more.
        #[arg(long = "match", short = 'm', required = true)]
        matchers: Vec<String>,
        /// How long (`2h`, `30m`); or give --until.
        #[arg(long, short)]
        duration: Option<String>,
        /// End time (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// Start time (RFC 3339; default now).
        #[arg(long)]
        start: Option<String>,
        /// Who silences (default: $USER, else $LOGNAME, else the basic-auth user, else
        /// `canaryd-cli`).
        #[arg(long)]
        author: Option<String>,
        /// Why.
        #[arg(long, required = true)]
        comment: String,
    },
    /// List silences (active and pending; --all adds expired ones).
    List {
        /// Include expired silences.
        #[arg(long)]
        all: bool,
    },
    /// End a silence now.
    Expire {
        /// The silence id.
        id: String,
    },
}

/// `canaryd incident ...`
#[derive(Debug, Subcommand)]
pub enum IncidentAction {
    /// Open an incident on the status page.
    Open {
        /// The title customers read.
        #[arg(long)]
        title: String,
        /// The first update's text.
        #[arg(long, short)]
        message: String,
        /// investigating, identified or monitoring.
        #[arg(long, default_value = "investigating")]
        state: String,
        /// none, minor, major or critical.
        #[arg(long, default_value = "minor")]
        impact: String,
        /// An affected component, by its name on the page; repeat for more.
        #[arg(long = "component")]
        components: Vec<String>,
    },
    /// Post an update to an incident.
    Update {
        /// The incident's id.
        id: i64,
        /// investigating, identified, monitoring or resolved.
        #[arg(long)]
        state: String,
        /// The update's text.
        #[arg(long, short)]
        message: String,
    },
    /// Resolve an incident.
    Resolve {
        /// The incident's id.
        id: i64,
        /// The resolving update's text.
        #[arg(long, short, default_value = "This incident has been resolved.")]
        message: String,
    },
    /// List incidents (open and of the last 90 days).
    List,
}

/// Runs a parsed command line.
pub fn main(cli: Cli) -> ExitCode {
    init_logging(
        &cli.log_level,
        cli.log_format,
        matches!(cli.command, Command::Run { .. }),
    );
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("canaryd: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Run {
            config,
            shard,
            web_config_file,
        } => rt.block_on(run(config, shard.unwrap_or(Shard::ALL), web_config_file)),
        Command::Check {
            config,
            shard,
            web_config_file,
            no_secrets,
        } => check(config, shard, web_config_file, no_secrets),
        Command::Probe {
            config,
            name,
            show_values,
        } => rt.block_on(probe(config, name, show_values)),
        Command::Silence { action, api } => rt.block_on(silence(action, *api)),
        Command::Test {
            config,
            names,
            all,
            junit,
            json,
        } => rt.block_on(test(config, names, all, junit, json)),
        Command::Incident { action, api } => rt.block_on(async move {
            match incident(action, &api).await {
                Ok(out) => {
                    print!("{out}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("canaryd incident: {e}");
                    ExitCode::FAILURE
                }
            }
        }),
        Command::Completion { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "canaryd", &mut out);
            print_stdout(&out, "completion")
        }
        Command::Man { out_dir } => {
            let cmd = <Cli as clap::CommandFactory>::command();
            match out_dir {
                Some(dir) => match clap_mangen::generate_to(cmd, &dir) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("canaryd man: {}: {e}", dir.display());
                        ExitCode::FAILURE
                    }
                },
                None => {
                    let mut out = Vec::new();
                    match clap_mangen::Man::new(cmd).render(&mut out) {
                        Ok(()) => print_stdout(&out, "man"),
                        Err(e) => {
                            eprintln!("canaryd man: {e}");
                            ExitCode::FAILURE
                        }
                    }
                }
            }
        }
        Command::Schema { file } => print_stdout(file.to_json().as_bytes(), "schema"),
    }
}

/// Writes a command's output; a reader that went away (`| head`) is no error.
fn print_stdout(bytes: &[u8], command: &str) -> ExitCode {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(bytes) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("canaryd {command}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The API base URL: `--url`, else `http://<listen>` of the configuration.
fn api_base(config: &std::path::Path, url: Option<String>) -> Result<String, String> {
    if let Some(u) = url {
        return Ok(u.trim_end_matches('/').to_string());
    }
    let path = config.to_path_buf();
    let cfg = daemon::isolated(config, move || crate::loader::load(&path))
        .map_err(|e| format!("{e}\n(or give --url)"))?;
    Ok(cfg.api_url())
}

async fn silence(action: SilenceAction, api: ApiArgs) -> ExitCode {
    match silence_inner(action, &api).await {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("canaryd silence: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A session with the daemon's API: the base URL, the client (TLS settings) and the
/// credentials, shared by `canaryd silence` and `canaryd incident`.
struct Api {
    base: String,
    http: reqwest::Client,
    credentials: Option<(String, String)>,
}

impl Api {
    fn new(args: &ApiArgs) -> Result<Api, String> {
        Ok(Api {
            base: api_base(&args.config, args.url.clone())?,
            credentials: args.client.credentials()?,
            http: args.client.client()?,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.credentials {
            Some((user, password)) => r.basic_auth(user, Some(password)),
            None => r,
        }
    }

    /// Sends a request; the status and, for a success, the JSON answer (else the daemon's
    /// message with advice for 401 and 403).
    async fn send(
        &self,
        r: reqwest::RequestBuilder,
    ) -> Result<(u16, Result<serde_json::Value, String>), String> {
        let resp = r.send().await.map_err(|e| {
            format!(
                "cannot reach the daemon at {}: {}",
                self.base,
                e.without_url()
            )
        })?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        let answer = if status.is_success() {
            serde_json::from_str::<serde_json::Value>(&body)
                .map_err(|e| format!("the daemon answered something that is not JSON: {e}"))
        } else {
            let msg = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| body.trim().to_string());
            Err(format!(
                "{}: {msg}{}",
                status.as_u16(),
                status_advice(status.as_u16())
            ))
        };
        Ok((status.as_u16(), answer))
    }

    /// [`Api::send`], any error status an error.
    async fn call(&self, r: reqwest::RequestBuilder) -> Result<serde_json::Value, String> {
        self.send(r).await?.1
    }
}

async fn silence_inner(action: SilenceAction, args: &ApiArgs) -> Result<String, String> {
    let api = Api::new(args)?;
    let credentials = &api.credentials;
    match action {
        SilenceAction::Add {
            matchers,
            duration,
            until,
            start,
            author,
            comment,
        } => {
            let mut m = serde_json::Map::new();
            for pair in &matchers {
                let Some((k, v)) = pair.split_once('=') else {
                    return Err(format!("--match {pair:?}: write label=value"));
                };
                m.insert(k.trim().to_string(), serde_json::Value::from(v.trim()));
            }
            // The daemon refuses an empty created_by: a cron job or a container has no $USER.
            let author = author
                .or_else(|| std::env::var("USER").ok())
                .or_else(|| std::env::var("LOGNAME").ok())
                .filter(|a| !a.trim().is_empty())
                .or_else(|| credentials.as_ref().map(|(user, _)| user.clone()))
                .unwrap_or_else(|| "canaryd-cli".to_string());
            let body = serde_json::json!({
                "matchers": m,
                "starts_at": start,
                "ends_at": until,
                "duration": if until.is_none() { Some(duration.unwrap_or_else(|| "1h".into())) } else { duration },
                "created_by": author,
                "comment": comment,
            });
            let s = api
                .call(
                    api.request(reqwest::Method::POST, "/api/v1/silences")
                        .json(&body),
                )
                .await?;
            for w in s["warnings"].as_array().into_iter().flatten() {
                eprintln!("warning: {}", w.as_str().unwrap_or_default());
            }
            Ok(format!(
                "silence {} added: {} until {}\n",
                s["id"].as_str().unwrap_or("?"),
                matchers.join(" "),
                s["ends_at"].as_str().unwrap_or("?")
            ))
        }
        SilenceAction::List { all } => {
            let v = api
                .call(api.request(reqwest::Method::GET, "/api/v1/silences"))
                .await?;
            let mut out = String::new();
            let _ = writeln!(
                out,
                "{:<36}  {:<8}  {:<24}  {:<12}  {:<30}  COMMENT",
                "ID", "STATE", "ENDS", "BY", "MATCHERS"
            );
            for s in v["silences"].as_array().into_iter().flatten() {
                let state = s["state"].as_str().unwrap_or("?");
                if state == "expired" && !all {
                    continue;
                }
                let matchers = s["matchers"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{:<36}  {:<8}  {:<24}  {:<12}  {:<30}  {}",
                    s["id"].as_str().unwrap_or("?"),
                    state,
                    s["ends_at"].as_str().unwrap_or("?"),
                    s["created_by"].as_str().unwrap_or(""),
                    matchers,
                    s["comment"].as_str().unwrap_or("")
                );
            }
            Ok(out)
        }
        SilenceAction::Expire { id } => {
            let path = format!("/api/v1/silences/{id}");
            match api
                .send(api.request(reqwest::Method::DELETE, &path))
                .await?
            {
                (404, _) => return Err(format!("no silence {id:?}")),
                (_, answer) => answer?,
            };
            Ok(format!("silence {id} expired\n"))
        }
    }
}

async fn incident(action: IncidentAction, args: &ApiArgs) -> Result<String, String> {
    let api = Api::new(args)?;
    let line = |i: &serde_json::Value| {
        format!(
            "incident {}: {} ({}, impact {})",
            i["id"],
            i["title"].as_str().unwrap_or("?"),
            i["state"].as_str().unwrap_or("?"),
            i["impact"].as_str().unwrap_or("?"),
        )
    };
    let update = |id: i64, state: String, message: String| {
        let body = serde_json::json!({ "state": state, "message": message });
        api.request(
            reqwest::Method::POST,
            &format!("/api/v1/incidents/{id}/updates"),
        )
        .json(&body)
    };
    match action {
        IncidentAction::Open {
            title,
            message,
            state,
            impact,
            components,
        } => {
            let body = serde_json::json!({
                "title": title, "message": message, "state": state, "impact": impact,
                "components": components,
            });
            let i = api
                .call(
                    api.request(reqwest::Method::POST, "/api/v1/incidents")
                        .json(&body),
                )
                .await?;
            Ok(format!("opened {}\n", line(&i)))
        }
        IncidentAction::Update { id, state, message } => {
            let i = api.call(update(id, state, message)).await?;
            Ok(format!("updated {}\n", line(&i)))
        }
        IncidentAction::Resolve { id, message } => {
            let i = api.call(update(id, "resolved".into(), message)).await?;
            Ok(format!("resolved {}\n", line(&i)))
        }
        IncidentAction::List => {
            let v = api
                .call(api.request(reqwest::Method::GET, "/api/v1/incidents"))
                .await?;
            let mut out = String::new();
            let _ = writeln!(
                out,
                "{:<6}  {:<13}  {:<8}  {:<24}  TITLE",
                "ID", "STATE", "IMPACT", "UPDATED"
            );
            for i in v["incidents"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    out,
                    "{:<6}  {:<13}  {:<8}  {:<24}  {}",
                    i["id"],
                    i["state"].as_str().unwrap_or("?"),
                    i["impact"].as_str().unwrap_or("?"),
                    i["updated_at"].as_str().unwrap_or("?"),
                    i["title"].as_str().unwrap_or("?"),
                );
            }
            Ok(out)
        }
    }
}

fn init_logging(level: &str, format: LogFormat, daemon: bool) {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty());
    let filter = from_env
        .iter()
        .map(String::as_str)
        .chain([level, "info"])
        .find_map(|spec| tracing_subscriber::EnvFilter::try_new(log_directives(spec, daemon)).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(colour(std::env::var_os("NO_COLOR")))
            .try_init(),
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Logfmt => builder.event_format(Logfmt).try_init(),
    };
}

/// Colours only on a terminal, and never when `NO_COLOR` is set to anything but empty
/// (no-color.org): a log file or journald gets no escape codes.
fn colour(no_color: Option<std::ffi::OsString>) -> bool {
    use std::io::IsTerminal as _;
    no_color.is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// logfmt lines: `ts=2026-12-04T13:00:00.123Z level=info target=canaryd::daemon msg="…" k=v`,
/// values quoted when they hold a space, `=`, a quote or a control character.
struct Logfmt;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Logfmt
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let ts = crate::alert::rfc3339(std::time::SystemTime::now());
        write!(
            writer,
            "ts={ts} level={} target={}",
            meta.level().as_str().to_lowercase(),
            logfmt_value(meta.target())
        )?;
        let mut fields = LogfmtFields::default();
        event.record(&mut fields);
        if let Some(msg) = fields.message {
            write!(writer, " msg={}", logfmt_value(&msg))?;
        }
        for (k, v) in fields.pairs {
            write!(writer, " {k}={}", logfmt_value(&v))?;
        }
        writeln!(writer)
    }
}

#[derive(Default)]
struct LogfmtFields {
    message: Option<String>,
    pairs: Vec<(&'static str, String)>,
}

impl tracing::field::Visit for LogfmtFields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.put(field, value.to_string());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}

impl LogfmtFields {
    fn put(&mut self, field: &tracing::field::Field, value: String) {
        if field.name() == "message" {
            self.message = Some(value);
        } else {
            self.pairs.push((field.name(), value));
        }
    }
}

/// A logfmt value: bare when it is plain, else quoted with `\"`, `\\` and `\n` escaped (one
/// event is always one line).
fn logfmt_value(v: &str) -> String {
    let plain = !v.is_empty()
        && !v
            .chars()
            .any(|c| c == ' ' || c == '=' || c == '"' || c == '\\' || c.is_control());
    if plain {
        return v.to_string();
    }
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The filter directives for a `RUST_LOG` / `--log-level` value. A bare level (`trace`) applies
/// to canaryd's own logs only: every other crate (hyper, rustls, html5ever, selectors, reqwest,
/// ...) stays at `warn` at most, because their debug and trace logs print protocol and parser
/// tokens, response bytes and echoed secrets included. A directive naming a crate
/// (`hyper=debug`) is kept as written: the user asked for that crate by name. One-shot commands
/// keep stdout for their own output and log warnings and errors only.
fn log_directives(spec: &str, daemon: bool) -> String {
    use tracing_subscriber::filter::LevelFilter;
    let cap = |l: LevelFilter| if daemon { l } else { l.min(LevelFilter::WARN) };
    let mut out: Vec<String> = Vec::new();
    for directive in split_directives(spec) {
        let d = directive.trim();
        if d.is_empty() {
            continue;
        }
        match d.parse::<LevelFilter>() {
            Ok(l) if !d.contains(['=', '[']) => {
                out.push(cap(l).min(LevelFilter::WARN).to_string());
                out.push(format!("canaryd={}", cap(l)));
            }
            _ => out.push(d.to_string()),
        }
    }
    out.join(",")
}

/// `spec` split at the commas between directives (not those inside a span's `[{a=1,b=2}]`).
fn split_directives(spec: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in spec.char_indices() {
        match c {
            '[' | '{' => depth += 1,
            ']' | '}' => depth -= 1,
            ',' if depth <= 0 => {
                out.push(&spec[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&spec[start..]);
    out
}

/// Loads `--web.config.file` when given (no file: plain HTTP, no auth).
fn load_web(
    path: Option<&std::path::Path>,
) -> Result<crate::web::WebConfig, crate::config::ConfigErrors> {
    match path {
        Some(p) => crate::web::load(p),
        None => Ok(crate::web::WebConfig::default()),
    }
}

fn check(
    config: PathBuf,
    shard: Option<Shard>,
    web_config_file: Option<PathBuf>,
    no_secrets: bool,
) -> ExitCode {
    let web = load_web(web_config_file.as_deref());
    if let (Ok(_), Some(p)) = (&web, &web_config_file) {
        println!("{}: ok", p.display());
    }
    let web_errors = web.err().map(|e| e.0).unwrap_or_default();
    let loaded = if no_secrets {
        let path = config.clone();
        daemon::isolated(&config, move || {
            let unread = crate::config::template::SecretsUnread::enter();
            let loaded = crate::loader::load(&path);
            let sources = unread.finish();
            loaded.map(|c| (c, sources))
        })
        .map(|(c, sources)| {
            let n = sources.len();
            if n > 0 {
                println!(
                    "{} secret{} not read (--no-secrets): {}",
                    n,
                    if n == 1 { "" } else { "s" },
                    sources.join(", ")
                );
            }
            (c, Vec::new())
        })
    } else {
        daemon::load(&config)
    };
    match loaded {
        Ok(_) if !web_errors.is_empty() => {
            for e in &web_errors {
                println!("{e}");
            }
            eprintln!(
                "{} error{} found",
                web_errors.len(),
                if web_errors.len() == 1 { "" } else { "s" }
            );
            ExitCode::from(1)
        }
        Ok((mut cfg, _)) => {
            let plural = |n: usize, one: &str, many: &str| {
                format!("{n} {}", if n == 1 { one } else { many })
            };
            println!(
                "{}: ok: {} in {}",
                config.display(),
                plural(cfg.checks.len(), "check", "checks"),
                plural(cfg.files.len(), "check file", "check files")
            );
            if cfg.alerting.receivers.is_empty() {
                println!(
                    "note: no receivers: alerts show in /api/v1/alerts and /metrics but page nobody (add receivers: and routes:)"
                );
            }
            if let Some(shard) = shard {
                cfg.keep_shard(shard);
                println!(
                    "shard {shard} runs {} of {} checks:",
                    cfg.checks.len(),
                    cfg.checks.len() + cfg.elsewhere.len()
                );
                for c in &cfg.checks {
                    println!("  {}", c.name);
                }
            }
            ExitCode::SUCCESS
        }
        Err(mut errors) => {
            errors.0.extend(web_errors);
            for e in &errors.0 {
                println!("{e}");
            }
            eprintln!(
                "{} error{} found",
                errors.0.len(),
                if errors.0.len() == 1 { "" } else { "s" }
            );
            ExitCode::from(1)
        }
    }
}

async fn run(config: PathBuf, shard: Shard, web_config_file: Option<PathBuf>) -> ExitCode {
    // Before anything starts: a listener that was asked to be secured never serves in the clear.
    let web = match load_web(web_config_file.as_deref()) {
        Ok(w) => std::sync::Arc::new(w),
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "canaryd: web configuration has {} error(s); not starting",
                errors.0.len()
            );
            return ExitCode::from(1);
        }
    };
    let daemon = match Daemon::start_sharded(&config, shard) {
        Ok(d) => d,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "canaryd: configuration has {} error(s); not starting",
                errors.0.len()
            );
            return ExitCode::from(1);
        }
    };
    let listen = daemon.config().listen;
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("canaryd: cannot listen on {listen}: {e}");
            return ExitCode::from(1);
        }
    };
    tracing::info!(
        %listen,
        tls = web.tls.is_some(),
        basic_auth = web.auth_required(),
        "serving /metrics and the API"
    );
    // The public status page: a listener of its own, plain HTTP (put a proxy with TLS in
    // front of it), nothing of the API on it.
    let status = match &daemon.status {
        Some(page) => {
            let at = page.config().listen;
            match tokio::net::TcpListener::bind(at).await {
                Ok(l) => {
                    tracing::info!(listen = %at, "serving the status page");
                    Some((l, page.clone()))
                }
                Err(e) => {
                    eprintln!("canaryd: cannot listen on {at} (status_page.listen): {e}");
                    return ExitCode::from(1);
                }
            }
        }
        None => None,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let server = tokio::spawn(crate::server::serve_web(
        listener,
        daemon.clone(),
        web,
        stopped(stop_rx.clone()),
    ));
    let status_server = status.map(|(listener, page)| {
        tokio::spawn(crate::server::serve_status(
            listener,
            page,
            stopped(stop_rx.clone()),
        ))
    });
    wait_for_signals(&daemon).await;
    tracing::info!("shutting down: draining in-flight runs");
    daemon.shutdown().await;
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    if let Some(s) = status_server {
        let _ = tokio::time::timeout(Duration::from_secs(5), s).await;
    }
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

#[cfg(unix)]
async fn wait_for_signals(daemon: &std::sync::Arc<Daemon>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        std::future::pending::<()>().await;
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                // In a task of its own: whatever happens in a reload, the signal loop (and so
                // the process) goes on.
                let d = daemon.clone();
                if let Err(e) = tokio::spawn(async move { d.reload().await }).await {
                    daemon.metrics.set_reload(false, std::time::SystemTime::now());
                    tracing::error!("reload crashed, the running configuration stays: {e}");
                }
            }
            _ = term.recv() => return,
            _ = int.recv() => return,
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signals(_daemon: &std::sync::Arc<Daemon>) {
    let _ = tokio::signal::ctrl_c().await;
}

async fn probe(config: PathBuf, name: String, show_values: bool) -> ExitCode {
    let (_, entries) = match daemon::load(&config) {
        Ok(x) => x,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    let Some(entry) = entries.into_iter().find(|e| e.check.name == name) else {
        eprintln!("canaryd: no check named {name:?} in {}", config.display());
        return ExitCode::from(2);
    };
    let result = schedule::run_once(&entry, tokio::time::Instant::now()).await;
    print!(
        "{}",
        trace_with(
            &entry.check.name,
            entry.check.kind.name(),
            &result,
            show_values
        )
    );
    let success = result.success;
    print!(
        "{}",
        crate::testrun::alert_lines(&crate::testrun::judge(&entry, result))
    );
    if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

async fn test(
    config: PathBuf,
    names: Vec<String>,
    all: bool,
    junit: Option<PathBuf>,
    json: bool,
) -> ExitCode {
    let (_, entries) = match daemon::load(&config) {
        Ok(x) => x,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    let selected: Vec<_> = if all {
        entries
    } else {
        let unknown: Vec<&String> = names
            .iter()
            .filter(|n| !entries.iter().any(|e| &e.check.name == *n))
            .collect();
        if !unknown.is_empty() {
            eprintln!(
                "canaryd test: no check named {} in {}",
                unknown
                    .iter()
                    .map(|n| format!("{n:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                config.display()
            );
            return ExitCode::from(2);
        }
        entries
            .into_iter()
            .filter(|e| names.contains(&e.check.name))
            .collect()
    };
    let outcomes = crate::testrun::run(selected).await;
    if let Some(path) = &junit {
        let traces: Vec<String> = outcomes
            .iter()
            .map(|o| trace(&o.name, o.kind, &o.result))
            .collect();
        if let Err(e) = std::fs::write(path, crate::testrun::junit(&outcomes, &traces)) {
            eprintln!("canaryd test: cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    let out = if json {
        let mut s = crate::testrun::json(&outcomes).to_string();
        s.push('\n');
        s
    } else {
        crate::testrun::text(&outcomes)
    };
    let code = print_stdout(out.as_bytes(), "test");
    if code != ExitCode::SUCCESS {
        return code;
    }
    if outcomes.iter().all(|o| o.passed()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1000.0)
}

/// A readable trace of one run (what `canaryd probe` prints). Contains no secret values:
/// request lines come from redacted templates, messages were redacted by the probe.
pub fn trace(name: &str, kind: &str, r: &CheckResult) -> String {
    trace_with(name, kind, r, false)
}

/// [`trace`], with the values of extracted variables when `show_values` (`--show-values`);
/// configured secrets are already redacted inside them.
pub fn trace_with(name: &str, kind: &str, r: &CheckResult, show_values: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "check {name} ({kind})");
    for (i, st) in r.steps.iter().enumerate() {
        let _ = writeln!(s, "step {} {:?}: {}", i + 1, st.name, st.request_line);
        if !st.ran {
            let _ = writeln!(s, "  skipped (an earlier step failed)");
            continue;
        }
        for hop in &st.hops {
            let _ = writeln!(s, "  redirect {} -> {}", hop.status, hop.location);
        }
        // A step without an HTTP status (a TCP connect, a DNS query) that passed got what it
        // asked for: "ok", not "no response".
        let status = match st.status {
            Some(c) => c.to_string(),
            None if st.success => "ok".into(),
            None => "no response".into(),
        };
        let phases: Vec<String> = Phase::ALL
            .iter()
            .map(|p| format!("{} {}", p, ms(st.phases.get(*p))))
            .collect();
        let _ = writeln!(
            s,
            "  {status} in {}  [{}]",
            short_duration(st.duration),
            phases.join(", ")
        );
        if let Some(t) = st.cert_not_after {
            let _ = writeln!(s, "  certificate expires in {:.1} days", days_until(t));
        }
        for a in &st.assertions {
            match &a.detail {
                None => {
                    let _ = writeln!(s, "  ok   {}", a.what);
                }
                Some(d) => {
                    let _ = writeln!(s, "  FAIL {}: {d}", a.what);
                }
            }
        }
        // What came back, when an assertion or extraction failed on it (redacted).
        if let Some(body) = &st.body_excerpt {
            let _ = writeln!(s, "  response body:");
            for line in body.lines().take(40) {
                let _ = writeln!(s, "  | {line}");
            }
        }
        if show_values && !st.extracted_values.is_empty() {
            let _ = writeln!(s, "  extracted:");
            for (name, value) in &st.extracted_values {
                let _ = writeln!(s, "    {name} = {:?}", value.expose());
            }
        } else if !st.extracted.is_empty() {
            let _ = writeln!(
                s,
                "  extracted: {} (values hidden)",
                st.extracted.join(", ")
            );
        }
        if let (false, Some(m)) = (st.success, &st.message) {
            let phase = st
                .failed_phase
                .map(|p| format!(" during {p}"))
                .unwrap_or_default();
            let reason = st.reason.map(|r| r.as_str()).unwrap_or("failed");
            let _ = writeln!(s, "  error ({reason}{phase}): {m}");
        }
    }
    if let Some(d) = &r.detail {
        d.trace(&mut s);
    }
    if !r.observations.is_empty() {
        let vars: Vec<String> = r
            .observations
            .iter()
            .map(|(k, v)| format!("{k}={}", (v * 1000.0).round() / 1000.0))
            .collect();
        let _ = writeln!(s, "variables: {}", vars.join(" "));
    }
    // Quick retries: the trace above is the last attempt's; say how many it took.
    let attempts = match r.attempts {
        0 | 1 => String::new(),
        2 => " on attempt 2 (after 1 quick retry)".to_string(),
        n => format!(" on attempt {n} (after {} quick retries)", n - 1),
    };
    match (&r.success, &r.message) {
        (true, _) => {
            let _ = writeln!(s, "PASS in {}{attempts}", short_duration(r.duration));
        }
        (false, m) => {
            let reason = r.reason.map(|r| r.as_str()).unwrap_or("unknown");
            let _ = writeln!(
                s,
                "FAIL ({reason}) in {}{attempts}: {}",
                short_duration(r.duration),
                m.as_deref().unwrap_or("")
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(username: Option<&str>, password_file: Option<&std::path::Path>) -> ApiClientArgs {
        ApiClientArgs {
            username: username.map(str::to_string),
            password_file: password_file.map(std::path::Path::to_path_buf),
            ..ApiClientArgs::default()
        }
    }

    #[test]
    fn credentials_come_from_flags_files_and_the_environment_never_half() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "s3cret-from-file\n").unwrap();
        let env_file = file.to_str().unwrap().to_string();
        let none = |_: &str| None;
        assert_eq!(args(None, None).credentials_from(none), Ok(None));
        assert_eq!(
            args(Some("ana"), Some(&file)).credentials_from(none),
            Ok(Some(("ana".into(), "s3cret-from-file".into())))
        );
        let env = |name: &str| match name {
            "CANARYD_USERNAME" => Some("bob".to_string()),
            "CANARYD_PASSWORD_FILE" => Some(env_file.clone()),
            "CANARYD_PASSWORD" => Some("from-env".to_string()),
            _ => None,
        };
        // A file wins over the password in the environment; a flag over the environment.
        assert_eq!(
            args(None, None).credentials_from(env),
            Ok(Some(("bob".into(), "s3cret-from-file".into())))
        );
        let only_password = |name: &str| (name == "CANARYD_PASSWORD").then(|| "p".to_string());
        let err = args(None, None)
            .credentials_from(only_password)
            .unwrap_err();
        assert!(err.contains("CANARYD_USERNAME"), "{err}");
        let err = args(Some("ana"), None).credentials_from(none).unwrap_err();
        assert!(err.contains("CANARYD_PASSWORD_FILE"), "{err}");
    }

    #[test]
    fn a_bad_password_file_is_a_clear_error_without_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, "x".repeat(5000)).unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let missing = dir.path().join("missing");
        for (path, says) in [
            (&big, "larger than 4096"),
            (&empty, "empty"),
            (&missing, "missing"),
        ] {
            let err = read_password(path).unwrap_err();
            assert!(err.contains(says), "{err}");
            assert!(!err.contains("xxxx"), "{err}");
        }
    }

    #[test]
    fn refusals_say_what_to_do() {
        assert!(status_advice(401).contains("CANARYD_PASSWORD_FILE"));
        assert!(status_advice(403).contains("basic_auth_users"));
        assert_eq!(status_advice(400), "");
    }

    #[test]
    fn a_bare_level_reaches_canaryd_only_and_named_crates_keep_theirs() {
        assert_eq!(log_directives("trace", true), "warn,canaryd=trace");
        assert_eq!(log_directives("error", true), "error,canaryd=error");
        assert_eq!(
            log_directives("trace,html5ever=trace,canaryd::probe=debug", true),
            "warn,canaryd=trace,html5ever=trace,canaryd::probe=debug"
        );
        assert_eq!(log_directives("debug", false), "warn,canaryd=warn");
        assert_eq!(
            log_directives("info,[run{a=1,b=2}]=trace", true),
            "warn,canaryd=info,[run{a=1,b=2}]=trace"
        );
    }
}
