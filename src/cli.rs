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
    },
    /// Validate the configuration and every check file; print every error; exit 1 on any.
    Check {
        /// The daemon configuration.
        #[arg(long, short, default_value = "canaryd.yaml")]
        config: PathBuf,
        /// Also list the checks shard i of n would run (`2/3`).
        #[arg(long, value_name = "i/n")]
        shard: Option<Shard>,
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
    /// Manage silences on a running daemon (through its API).
    Silence {
        /// What to do.
        #[command(subcommand)]
        action: SilenceAction,
        /// The daemon configuration (its `listen` address is where the API is).
        #[arg(long, short, default_value = "canaryd.yaml", global = true)]
        config: PathBuf,
        /// The daemon's API base URL, instead of reading `listen` from the configuration.
        #[arg(long, global = true)]
        url: Option<String>,
    },
    /// Print the JSON Schema of canaryd.yaml (`config`) or of a check file (`checks`), for
    /// editors: completion, documentation on hover, errors while typing.
    Schema {
        /// Which file the schema describes.
        #[arg(value_enum)]
        file: crate::config::schema::SchemaFile,
    },
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
        /// Who silences (default: $USER).
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

/// Runs a parsed command line.
pub fn main(cli: Cli) -> ExitCode {
    init_logging(&cli.log_level, matches!(cli.command, Command::Run { .. }));
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
        Command::Run { config, shard } => rt.block_on(run(config, shard.unwrap_or(Shard::ALL))),
        Command::Check { config, shard } => check(config, shard),
        Command::Probe {
            config,
            name,
            show_values,
        } => rt.block_on(probe(config, name, show_values)),
        Command::Silence {
            action,
            config,
            url,
        } => rt.block_on(silence(action, config, url)),
        Command::Schema { file } => {
            // Not print!, which panics when the reader went away (`canaryd schema checks | head`).
            use std::io::Write as _;
            match std::io::stdout()
                .lock()
                .write_all(file.to_json().as_bytes())
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("canaryd schema: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The API base URL: `--url`, else `http://<listen>` of the configuration.
fn api_base(config: &std::path::Path, url: Option<String>) -> Result<String, String> {
    if let Some(u) = url {
        return Ok(u.trim_end_matches('/').to_string());
    }
    let path = config.to_path_buf();
    let cfg = daemon::isolated(config, move || crate::config::load(&path))
        .map_err(|e| format!("{e}\n(or give --url)"))?;
    Ok(cfg.api_url())
}

async fn silence(action: SilenceAction, config: PathBuf, url: Option<String>) -> ExitCode {
    match silence_inner(action, &config, url).await {
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

async fn silence_inner(
    action: SilenceAction,
    config: &std::path::Path,
    url: Option<String>,
) -> Result<String, String> {
    let base = api_base(config, url)?;
    let client = crate::alert::outbox::http_client()?;
    let unreachable =
        |e: reqwest::Error| format!("cannot reach the daemon at {base}: {}", e.without_url());
    let answer = |resp: reqwest::Response| async move {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if status.is_success() {
            serde_json::from_str::<serde_json::Value>(&body)
                .map_err(|e| format!("the daemon answered something that is not JSON: {e}"))
        } else {
            let msg = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| body.trim().to_string());
            Err(format!("{}: {msg}", status.as_u16()))
        }
    };
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
            let author = author
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_default();
            let body = serde_json::json!({
                "matchers": m,
                "starts_at": start,
                "ends_at": until,
                "duration": if until.is_none() { Some(duration.unwrap_or_else(|| "1h".into())) } else { duration },
                "created_by": author,
                "comment": comment,
            });
            let resp = client
                .post(format!("{base}/api/v1/silences"))
                .json(&body)
                .send()
                .await
                .map_err(unreachable)?;
            let s = answer(resp).await?;
            Ok(format!(
                "silence {} added: {} until {}\n",
                s["id"].as_str().unwrap_or("?"),
                matchers.join(" "),
                s["ends_at"].as_str().unwrap_or("?")
            ))
        }
        SilenceAction::List { all } => {
            let resp = client
                .get(format!("{base}/api/v1/silences"))
                .send()
                .await
                .map_err(unreachable)?;
            let v = answer(resp).await?;
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
            let resp = client
                .delete(format!("{base}/api/v1/silences/{id}"))
                .send()
                .await
                .map_err(unreachable)?;
            if resp.status() == reqwest::StatusCode::NOT_FOUND {
                return Err(format!("no silence {id:?}"));
            }
            answer(resp).await?;
            Ok(format!("silence {id} expired\n"))
        }
    }
}

fn init_logging(level: &str, daemon: bool) {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty());
    let filter = from_env
        .iter()
        .map(String::as_str)
        .chain([level, "info"])
        .find_map(|spec| tracing_subscriber::EnvFilter::try_new(log_directives(spec, daemon)).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
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

fn check(config: PathBuf, shard: Option<Shard>) -> ExitCode {
    match daemon::load(&config) {
        Ok((mut cfg, _)) => {
            println!(
                "{}: ok: {} checks in {} check files",
                config.display(),
                cfg.checks.len(),
                cfg.files.len()
            );
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
        Err(errors) => {
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

async fn run(config: PathBuf, shard: Shard) -> ExitCode {
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
    tracing::info!(%listen, "serving /metrics and the API");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::server::serve(listener, daemon.clone(), async move {
        let _ = stop_rx.await;
    }));
    wait_for_signals(&daemon).await;
    tracing::info!("shutting down: draining in-flight runs");
    daemon.shutdown().await;
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
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
    if result.success {
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
        let status = st
            .status
            .map(|c| c.to_string())
            .unwrap_or_else(|| "no response".into());
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
    if let Some(q) = &r.queue {
        for (stats, age) in q.snapshot.queues.iter().zip(&q.oldest_age_seconds) {
            let depths: Vec<String> = stats
                .depths
                .iter()
                .map(|(state, n)| format!("{} {n}", state.as_str()))
                .collect();
            let age = age
                .map(|a| {
                    format!(
                        ", oldest waiting {}",
                        short_duration(Duration::from_secs_f64(a.clamp(0.0, 1e12)))
                    )
                })
                .unwrap_or_default();
            let _ = writeln!(s, "queue {:?}: {}{age}", stats.name, depths.join(", "));
        }
    }
    if !r.observations.is_empty() {
        let vars: Vec<String> = r
            .observations
            .iter()
            .map(|(k, v)| format!("{k}={}", (v * 1000.0).round() / 1000.0))
            .collect();
        let _ = writeln!(s, "variables: {}", vars.join(" "));
    }
    match (&r.success, &r.message) {
        (true, _) => {
            let _ = writeln!(s, "PASS in {}", short_duration(r.duration));
        }
        (false, m) => {
            let reason = r.reason.map(|r| r.as_str()).unwrap_or("unknown");
            let _ = writeln!(
                s,
                "FAIL ({reason}) in {}: {}",
                short_duration(r.duration),
                m.as_deref().unwrap_or("")
            );
        }
    }
    s
}

#[cfg(test)]
mod log_filter_tests {
    use super::log_directives;

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
