//! Starting and stopping everything the demo runs: the app, the job queue when redis-server is
//! installed, and canaryd (in this process) with a configuration written to a temporary
//! directory. `main.rs` and `tests/demo.rs` both go through [`start`].
//!
//! canaryd is given the environment a production deployment would give it: `DEMO_PASSWORD`,
//! `DEMO_TOTP_SEED` and, with the queue, `DEMO_REDIS_URL`, read by the check files through
//! `${env:...}` and `${totp:env:...}`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use canaryd::config::expr;
use canaryd::daemon::Daemon;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::app::{self, Controls};
use crate::jobs::{self, Jobs};
use crate::pager::{self, Pager};

/// The app's address in the check files; rewritten when the app listens elsewhere.
pub const DEFAULT_APP: &str = "127.0.0.1:8088";

/// The check files, relative to the repository: HTTP and TCP checks of the app...
const APP_CHECKS: [&str; 2] = ["checks/demo.yaml", "examples/demo/checks.yaml"];
/// ... and the queue check, loaded only when the demo runs redis-server.
const JOB_CHECKS: &str = "examples/demo/jobs.yaml";

/// Why the job queue is missing, and what to do.
const NO_REDIS: &str = "redis-server is not installed (`sudo apt-get install redis-server`, then \
                        run the demo again to see demo-jobs and stall_worker)";

/// Where to listen (port 0: any free port).
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The demo app.
    pub app: SocketAddr,
    /// canaryd's API and `/metrics`.
    pub canaryd: SocketAddr,
    /// canaryd's public status page.
    pub status: SocketAddr,
}

/// The running demo.
pub struct Demo {
    /// Where the app listens.
    pub app: SocketAddr,
    /// The pages canaryd sent to the demo's pager (`/pager`).
    pub pager: Pager,
    /// Where canaryd listens.
    pub canaryd: SocketAddr,
    /// Where the status page listens.
    pub status: SocketAddr,
    /// The in-process daemon: its configuration and last results.
    pub daemon: Arc<Daemon>,
    /// The job queue, or why it is not running.
    pub jobs: Result<Jobs, String>,
    /// The check files canaryd loaded.
    pub check_files: Vec<PathBuf>,
    /// When the demo started, for the status lines.
    started: Instant,
    /// The app and API servers.
    servers: Vec<JoinHandle<()>>,
    /// canaryd's configuration and state; removed on drop.
    _dir: tempfile::TempDir,
}

/// Starts the app, the job queue (when redis-server is installed) and canaryd. Errors say what
/// to do.
pub async fn start(opts: Options) -> Result<Demo, String> {
    let app_listener = TcpListener::bind(opts.app).await.map_err(|e| {
        format!(
            "cannot listen on {} ({e}); is another demo running? --app-port picks another port",
            opts.app
        )
    })?;
    let api_listener = TcpListener::bind(opts.canaryd).await.map_err(|e| {
        format!(
            "cannot listen on {} ({e}); is canaryd already running? --canaryd-port picks another port",
            opts.canaryd
        )
    })?;
    let status_listener = TcpListener::bind(opts.status).await.map_err(|e| {
        format!(
            "cannot listen on {} ({e}); --status-port picks another port",
            opts.status
        )
    })?;
    let status_addr = status_listener.local_addr().map_err(|e| e.to_string())?;
    let app_addr = app_listener.local_addr().map_err(|e| e.to_string())?;
    let canaryd_addr = api_listener.local_addr().map_err(|e| e.to_string())?;

    let controls = Arc::new(Controls::default());
    let jobs = match jobs::find_redis_server() {
        None => Err(NO_REDIS.to_string()),
        Some(binary) => Jobs::start(&binary, controls.clone())
            .await
            .map_err(|e| format!("redis-server did not start: {e}")),
    };
    controls
        .queue_running
        .store(jobs.is_ok(), Ordering::Relaxed);
    let pager = Pager::default();
    let router = app::router(controls)?.merge(pager.router());
    let mut servers = vec![tokio::spawn(async move {
        if let Err(e) = axum::serve(app_listener, router).await {
            eprintln!("demo: the app stopped: {e}");
        }
    })];

    // What a deployment would put in canaryd's environment.
    std::env::set_var("DEMO_PASSWORD", app::PASSWORD);
    std::env::set_var("DEMO_TOTP_SEED", app::TOTP_SEED);
    std::env::set_var("DEMO_PAGER_SECRET", pager::SECRET);
    if let Ok(jobs) = &jobs {
        std::env::set_var("DEMO_REDIS_URL", &jobs.url);
    }

    let dir = tempfile::Builder::new()
        .prefix("canaryd-demo-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let mut files: Vec<&str> = APP_CHECKS.to_vec();
    if jobs.is_ok() {
        files.push(JOB_CHECKS);
    }
    let check_files = check_files(&files, app_addr, dir.path())?;
    let config = write_config(
        dir.path(),
        canaryd_addr,
        status_addr,
        app_addr,
        &check_files,
        jobs.is_ok(),
    )?;
    let daemon = Daemon::start(&config).map_err(|e| format!("configuration error:\n{e}"))?;
    let api_daemon = daemon.clone();
    servers.push(tokio::spawn(async move {
        if let Err(e) =
            canaryd::server::serve(api_listener, api_daemon, std::future::pending()).await
        {
            eprintln!("demo: canaryd's API stopped: {e}");
        }
    }));
    if let Some(page) = daemon.status.clone() {
        servers.push(tokio::spawn(async move {
            if let Err(e) =
                canaryd::server::serve_status(status_listener, page, std::future::pending()).await
            {
                eprintln!("demo: the status page stopped: {e}");
            }
        }));
    }
    Ok(Demo {
        app: app_addr,
        pager,
        canaryd: canaryd_addr,
        status: status_addr,
        daemon,
        jobs,
        check_files,
        started: Instant::now(),
        servers,
        _dir: dir,
    })
}

/// The repository's check files, or copies in `dir` with the app's address put in when the app
/// does not listen on [`DEFAULT_APP`].
fn check_files(files: &[&str], app: SocketAddr, dir: &Path) -> Result<Vec<PathBuf>, String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let app = app.to_string();
    files
        .iter()
        .map(|f| {
            let original = repo.join(f);
            if app == DEFAULT_APP {
                return Ok(original);
            }
            let text = std::fs::read_to_string(&original)
                .map_err(|e| format!("cannot read {}: {e}", original.display()))?;
            let name = original.file_name().unwrap_or_default();
            let copy = dir.join(name);
            std::fs::write(&copy, text.replace(DEFAULT_APP, &app))
                .map_err(|e| format!("cannot write {}: {e}", copy.display()))?;
            Ok(copy)
        })
        .collect()
}

/// canaryd's configuration: where it listens, its state directory, the check files, every
/// alert to the demo's pager (the generic webhook receiver, signed), and a public status page
/// whose "Sign-in" opens an incident by itself when every login fails.
fn write_config(
    dir: &Path,
    listen: SocketAddr,
    status: SocketAddr,
    app: SocketAddr,
    checks: &[PathBuf],
    with_jobs: bool,
) -> Result<PathBuf, String> {
    // check_files are globs: escape the paths; JSON strings are YAML strings.
    let quoted: Vec<String> = checks
        .iter()
        .map(|p| {
            let glob = glob::Pattern::escape(&p.to_string_lossy());
            serde_json::Value::String(glob).to_string()
        })
        .collect();
    let state = serde_json::Value::String(dir.join("state").to_string_lossy().into_owned());
    let config = dir.join("canaryd.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: {listen}\nstate_dir: {state}\ncheck_files: [{}]\n\
             receivers:\n  - name: pager\n    webhook:\n      url: \"http://{app}/pager/events\"\n      secret: \"${{env:DEMO_PAGER_SECRET}}\"\n\
             routes:\n  - receivers: [pager]\n{}",
            quoted.join(", "),
            status_page(status, with_jobs),
        ),
    )
    .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
    Ok(config)
}

/// The demo's status page: what a shop's customers would see.
fn status_page(listen: SocketAddr, with_jobs: bool) -> String {
    let mut s = format!(
        r#"status_page:
  listen: {listen}
  title: Demo shop status
  description: "Live status of the demo shop, measured by canaryd every 5 seconds."
  components:
    - name: Website
      description: "The shop's pages."
      checks: [demo-home, demo-identity, demo-port]
      degraded_above: 1s
    - name: Sign-in
      description: "Signing in, with and without a second factor."
      checks: [demo-login, demo-login-totp]
      degraded_above: 2s
      incident:
        status: major_outage
        alerts: [LoginFailing]
        title: "Customers cannot sign in"
        message: "We are investigating reports that customers cannot sign in."
        resolved_message: "Signing in works again."
    - name: API
      description: "The JSON API for apps."
      checks: [demo-api]
"#
    );
    if with_jobs {
        s.push_str(
            r#"    - name: Order processing
      description: "Background jobs: order confirmations and invoices."
      checks: [demo-jobs, demo-jobs-canary]
"#,
        );
    }
    s
}

impl Demo {
    /// What the demo prints first: where everything is and how to break it.
    pub fn banner(&self) -> String {
        let (app, canaryd, status) = (self.app, self.canaryd, self.status);
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let files: Vec<String> = self
            .check_files
            .iter()
            .map(|f| f.strip_prefix(repo).unwrap_or(f).display().to_string())
            .collect();
        let mut s = format!(
            "\ncanaryd demo running.\n\
             \n  demo app         http://{app}/   (log in as any user, password {password:?};\
             \n                   {totp_user} also asks for the code of TOTP seed {seed})\
             \n  JSON API         POST http://{app}/api/login → token;  GET http://{app}/api/orders\
             \n  metrics          http://{canaryd}/metrics\
             \n  check states     http://{canaryd}/api/v1/checks\
             \n  status page      http://{status}/   (what customers see; JSON at /api/v2/summary.json)\
             \n  checks           {files}\n",
            password = app::PASSWORD,
            totp_user = app::TOTP_USER,
            seed = app::TOTP_SEED,
            files = files.join(", "),
        );
        match &self.jobs {
            Ok(jobs) => {
                let _ = writeln!(
                    s,
                    "  job queue        {} (Sidekiq layout: a job every 500 ms, one worker)",
                    jobs.url
                );
            }
            Err(why) => {
                let _ = writeln!(s, "  job queue        not running: {why}");
            }
        }
        let _ = write!(
            s,
            "\nBreak the app and watch the checks fail within one interval (5s):\
             \n  curl 'http://{app}/control?fail=1'          every page answers 500\
             \n  curl 'http://{app}/control?slow_ms=2500'    pages take 2.5s (the logins' max_duration is 2s)\
             \n  curl 'http://{app}/control?wrong_db=1'      /health reports the wrong database\
             \n  curl 'http://{app}/control?break_login=1'   every password is rejected (demo-login fails at \"submit\")\
             \n  curl 'http://{app}/control?stall_worker=1'  the worker stops taking jobs (JobsStalled in demo-jobs, not_picked_up in demo-jobs-canary)\
             \n  curl 'http://{app}/control?fail_jobs=1'     the worker fails every job (job_failed in demo-jobs-canary; the queue rules stay quiet)\
             \n  curl 'http://{app}/control?reset'           back to normal\
             \n\nPages canaryd sends arrive at http://{app}/pager (and are printed here).\
             \n\nCtrl-C stops.\n"
        );
        s
    }

    /// Each check's state, one line each: ok or the failure message, the queue's figures, and
    /// the alert rules whose `when` is true on the last result (their `for`/`consecutive` is not
    /// applied here).
    pub fn status(&self) -> String {
        let config = self.daemon.config();
        let width = config
            .checks
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(0);
        let pages = self.pager.pages();
        let firing = pages
            .iter()
            .filter(|p| p.event["status"] == "firing")
            .count();
        let mut out = format!(
            "-- {}s -- pages received: {firing} firing, {} resolved (http://{}/pager)\n",
            self.started.elapsed().as_secs(),
            pages.len() - firing,
            self.app
        );
        for check in &config.checks {
            let _ = write!(out, "  {:width$}  ", check.name);
            let Some(result) = self.daemon.states.get(&check.name) else {
                out.push_str("… (first run pending)\n");
                continue;
            };
            if result.success {
                out.push_str("ok");
            } else {
                let _ = write!(out, "FAIL {}", result.message.as_deref().unwrap_or(""));
            }
            if result.detail.is_some() {
                let var = |name: &str| {
                    result
                        .observations
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| *v)
                };
                let _ = write!(
                    out,
                    "  waiting {}, oldest {:.1}s, {}, workers {}",
                    var("depth").unwrap_or(0.0),
                    var("oldest_age").unwrap_or(0.0),
                    var("processed_rate")
                        .map_or("rate after the next run".to_string(), |r| format!(
                            "{r:.1} jobs/s"
                        )),
                    var("workers").unwrap_or(0.0),
                );
            }
            let now = std::time::SystemTime::now();
            let lookup = |name: &str| check.kind.variable(&result, name, now);
            let true_now: Vec<&str> = check
                .alerts
                .iter()
                .filter(|a| expr::truthy(expr::eval(&a.expr, &lookup)))
                .map(|a| a.name.as_str())
                .collect();
            if !true_now.is_empty() {
                let _ = write!(out, "  [when true: {}]", true_now.join(", "));
            }
            out.push('\n');
        }
        out
    }

    /// Stops the job queue (producer, worker, redis-server), canaryd (in-flight runs end) and the
    /// servers.
    pub async fn stop(mut self) {
        // First, so that the producer and worker do not report the lost redis-server.
        self.jobs = Err("stopped".into());
        self.daemon.shutdown().await;
        for s in &self.servers {
            s.abort();
        }
    }
}
