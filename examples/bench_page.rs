//! `cargo run --release --example bench_page -- [--runs N] [--peer-runs M] [--canaryd PATH]
//! [--only canaryd,matched,default] [--page-timeout SECONDS]`
//!
//! Time to page (the budget: failure injected → pager receives the trigger within
//! interval × consecutive + 1 s): how long after a login breaks the first "firing" notification
//! reaches a webhook, for canaryd and for the usual peer (blackbox_exporter scraped by Prometheus,
//! which alerts through Alertmanager), measured side by side in the same process.
//!
//! Each side watches its own copy of the demo app (`examples/demo/app.rs`, served here on a free
//! loopback port) and notifies its own recorder: a small HTTP server here that notes when each
//! POST arrives. A run:
//!
//! 1. starts the side's services afresh (fresh temporary directories and state, so that no
//!    alert, group or resolve of an earlier run is pending: every run pages as a first failure);
//! 2. waits until the side has seen the login succeed (canaryd: `/api/v1/checks`, the check's
//!    last result; Prometheus: `probe_success == 1` in a query);
//! 3. waits a random time in [0, interval) (the side's check or scrape interval), so that the
//!    break lands at a uniformly random moment of the cycle;
//! 4. `GET /control?break_login=1` on the app (every password is then refused: the login POST
//!    answers 200 with the form again instead of 302 to `/dashboard/`), t0 when it is answered;
//! 5. waits for the first POST to the recorder that says the alert fires; time to page = its
//!    arrival - t0. Then everything is stopped and the app reset.
//!
//! The sides, each on its own thread (they share nothing but the machine and the blackbox
//! exporter, which keeps no state):
//!
//! - **canaryd** (`target/release/canaryd run`, N runs, `--runs`, default 3): one http check
//!   `bench-login` (the steps of `demo-login` in `checks/demo.yaml`), `interval: 10s`, alert
//!   `LoginFailing` `when: failed`, `consecutive: 2`, routed to a `webhook` receiver. A firing
//!   page is a POST whose JSON `events[]` holds an element with `"status": "firing"` and
//!   `"alert": "LoginFailing"`. With no alert engine in the daemon yet, a run ends after
//!   `--page-timeout` seconds (default 45) with "no page", and the remaining runs are skipped.
//! - **blackbox, matched** (N runs too): Prometheus scrapes blackbox_exporter every 10 s,
//!   evaluates `probe_success == 0` every 10 s with `for: 10s` (about 2 failed probes),
//!   Alertmanager at its defaults (`group_wait: 30s`). About a minute a run.
//! - **blackbox, default** (M runs, `--peer-runs`, default 1): the same at Prometheus's and
//!   Alertmanager's defaults: scrape and evaluation every 1 m, `for: 0s`, `group_wait: 30s`.
//!   A run takes 2-5 minutes.
//!
//! A firing Alertmanager notification is a POST whose `alerts[]` holds an element with
//! `"status": "firing"` and `labels.alertname == "LoginFailing"`. The three sides run at the same
//! time, so the whole takes as long as the slowest (about 5 minutes with the defaults).
//!
//! blackbox_exporter cannot script the login (fetch the form, carry its CSRF token): its module
//! POSTs the form once with a token of its own in both the `csrftoken` cookie and the form field.
//! The demo app checks the token the way Django does (cookie and field must match; it keeps no
//! list of the tokens it issued), so this is a real login, and it expects what canaryd's check
//! expects of that step: 302 with `Location: /dashboard/`.
//!
//! Output (`scripts/bench page` tabulates the `page_*` lines):
//! `page_canaryd mean_s= max_s= min_s= runs=`, `page_blackbox_matched ...`,
//! `page_blackbox_default ...`; a side that never paged prints `NAME runs=0 no_page_within_s=S`.
//! Progress lines start with `-`. Every child process is killed and every temporary directory
//! removed on exit, on error and on SIGINT/SIGTERM/SIGHUP.

#[allow(dead_code)]
#[path = "demo/app.rs"]
mod app;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

type Res<T> = Result<T, String>;

/// The check's interval and the alert's `consecutive` (the budget: 10 × 2 + 1 = 21 s).
const CHECK_INTERVAL: Duration = Duration::from_secs(10);
const CONSECUTIVE: u32 = 2;
/// Name of the check and of the alert, on both sides.
const CHECK: &str = "bench-login";
const ALERT: &str = "LoginFailing";
/// The token blackbox_exporter sends as both the CSRF cookie and the form field.
const BLACKBOX_CSRF: &str = "blackboxbenchtoken";

/// How long a side may take to see the login succeed after its services start. Prometheus at
/// its defaults scrapes first up to a minute after it starts.
const READY_CANARYD: Duration = Duration::from_secs(40);
const READY_MATCHED: Duration = Duration::from_secs(60);
const READY_DEFAULT: Duration = Duration::from_secs(150);
/// How long after the break the peer may take to page before the run counts as "no page":
/// at most about scrape + evaluation + `for` + group_wait + a margin.
const PAGE_TIMEOUT_MATCHED: Duration = Duration::from_secs(150);
const PAGE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(330);

fn main() {
    install_signal_cleanup();
    let result = run();
    cleanup_all();
    if let Err(e) = result {
        eprintln!("bench_page: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// Options

struct Options {
    runs: usize,
    peer_runs: usize,
    canaryd: PathBuf,
    canaryd_page_timeout: Duration,
    sides: HashSet<String>,
}

fn options() -> Res<Options> {
    let mut o = Options {
        runs: 3,
        peer_runs: 1,
        canaryd: PathBuf::from("target/release/canaryd"),
        canaryd_page_timeout: Duration::from_secs(45),
        sides: ["canaryd", "matched", "default"]
            .map(String::from)
            .into_iter()
            .collect(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| -> Res<usize> {
            v.parse()
                .map_err(|_| format!("{flag}: a number expected, not {v:?}"))
        };
        match flag.as_str() {
            "--runs" => o.runs = number(value()?)?.max(1),
            "--peer-runs" => o.peer_runs = number(value()?)?,
            "--canaryd" => o.canaryd = PathBuf::from(value()?),
            "--page-timeout" => {
                o.canaryd_page_timeout = Duration::from_secs(number(value()?)? as u64)
            }
            "--only" => {
                o.sides = value()?.split(',').map(|s| s.trim().to_string()).collect();
                for s in &o.sides {
                    if !matches!(s.as_str(), "canaryd" | "matched" | "default") {
                        return Err(format!(
                            "--only: unknown side {s:?} (canaryd, matched, default)"
                        ));
                    }
                }
            }
            other => return Err(format!("unknown argument {other:?} (see the file's docs)")),
        }
    }
    Ok(o)
}

// ---------------------------------------------------------------------------------------------
// The measurement

fn run() -> Res<()> {
    let opts = options()?;
    let apps = AppServer::start(3)?;
    let want = |s: &str| opts.sides.contains(s);

    let mut sides: Vec<Side> = Vec::new();
    if want("canaryd") {
        let bin = std::fs::canonicalize(&opts.canaryd).map_err(|e| {
            format!(
                "{}: {e} (build it: cargo build --release)",
                opts.canaryd.display()
            )
        })?;
        sides.push(Side {
            key: "page_canaryd",
            title: format!(
                "canaryd: check every {}s, alert when failed {CONSECUTIVE} consecutive, webhook receiver",
                CHECK_INTERVAL.as_secs()
            ),
            runs: opts.runs,
            cycle: CHECK_INTERVAL,
            ready_timeout: READY_CANARYD,
            page_timeout: opts.canaryd_page_timeout,
            stop_after_no_page: true,
            kind: Kind::Canaryd(bin),
        });
    }
    let peer_wanted = want("matched") || want("default");
    let blackbox = if peer_wanted {
        Some(Blackbox::start()?)
    } else {
        None
    };
    if let Some(bb) = &blackbox {
        let mut versions = vec![format!("blackbox_exporter {}", bb.version)];
        for bin in ["prometheus", "prometheus-alertmanager"] {
            versions.push(format!("{bin} {}", version_of(bin)));
        }
        println!("- peer: {} (Debian packages)", versions.join(", "));
        println!(
            "- peer probe: blackbox http module POSTing the login form with its own CSRF token in cookie and field"
        );
        println!(
            "-   (the app checks that they match, as Django does); expects 302 Location /dashboard/ like canaryd's step"
        );
        if want("matched") {
            sides.push(Side {
                key: "page_blackbox_matched",
                title: "blackbox + Prometheus + Alertmanager, matched: scrape 10s, evaluation 10s, for 10s, group_wait 30s (default)".into(),
                runs: opts.runs,
                cycle: Duration::from_secs(10),
                ready_timeout: READY_MATCHED,
                page_timeout: PAGE_TIMEOUT_MATCHED,
                stop_after_no_page: false,
                kind: Kind::Prometheus(PeerTimings::Matched, bb.port),
            });
        }
        if want("default") && opts.peer_runs > 0 {
            sides.push(Side {
                key: "page_blackbox_default",
                title: "blackbox + Prometheus + Alertmanager at their defaults: scrape 1m, evaluation 1m, for 0s, group_wait 30s".into(),
                runs: opts.peer_runs,
                cycle: Duration::from_secs(60),
                ready_timeout: READY_DEFAULT,
                page_timeout: PAGE_TIMEOUT_DEFAULT,
                stop_after_no_page: false,
                kind: Kind::Prometheus(PeerTimings::Default, bb.port),
            });
        }
    }
    if sides.is_empty() {
        return Err("nothing to measure (--only, --peer-runs 0)".into());
    }
    for s in &sides {
        println!("- {}: {}, {} run(s)", s.key, s.title, s.runs);
    }

    // Every side on its own thread, with its own app.
    let outcomes: Vec<(String, Res<Outcome>)> = thread::scope(|scope| {
        let handles: Vec<_> = sides
            .iter()
            .zip(apps.ports.iter())
            .map(|(side, &app_port)| {
                (
                    side.key.to_string(),
                    scope.spawn(move || side.measure(app_port)),
                )
            })
            .collect();
        handles
            .into_iter()
            .map(|(key, h)| {
                let r = h
                    .join()
                    .unwrap_or_else(|_| Err("the measuring thread panicked".into()));
                (key, r)
            })
            .collect()
    });
    drop(blackbox);

    // A side that failed is reported here; the others' figures still count (the exit status is
    // non-zero only when no side measured anything).
    let mut failed = 0;
    let total = outcomes.len();
    for (key, outcome) in outcomes {
        match outcome {
            Ok(o) => println!("{}", o.line(&key)),
            Err(e) => {
                failed += 1;
                let mut lines = e.lines();
                println!("- {key}: FAILED: {}", lines.next().unwrap_or(""));
                for l in lines {
                    println!("-   {l}");
                }
            }
        }
    }
    if failed == total {
        Err("no side measured anything (see above)".into())
    } else {
        Ok(())
    }
}

enum PeerTimings {
    Matched,
    Default,
}

enum Kind {
    /// The canaryd binary.
    Canaryd(PathBuf),
    /// Prometheus + Alertmanager with these timings, probing through blackbox on this port.
    Prometheus(PeerTimings, u16),
}

/// One side of the comparison.
struct Side {
    key: &'static str,
    title: String,
    runs: usize,
    /// The break lands at a uniformly random moment of this cycle (check or scrape interval).
    cycle: Duration,
    ready_timeout: Duration,
    page_timeout: Duration,
    /// After a run with no page, skip the others (canaryd before its alert engine).
    stop_after_no_page: bool,
    kind: Kind,
}

/// What a side measured.
struct Outcome {
    /// Seconds from the break to the page, for the runs that paged.
    pages: Vec<f64>,
    /// Runs that saw no page within the timeout.
    no_page: usize,
    page_timeout: Duration,
}

impl Outcome {
    fn line(&self, key: &str) -> String {
        if self.pages.is_empty() {
            return format!(
                "{key} runs=0 no_page_within_s={}",
                self.page_timeout.as_secs()
            );
        }
        let n = self.pages.len() as f64;
        let mean = self.pages.iter().sum::<f64>() / n;
        let max = self.pages.iter().cloned().fold(f64::MIN, f64::max);
        let min = self.pages.iter().cloned().fold(f64::MAX, f64::min);
        let mut s = format!(
            "{key} mean_s={mean:.1} max_s={max:.1} min_s={min:.1} runs={}",
            self.pages.len()
        );
        if self.no_page > 0 {
            let _ = write!(
                s,
                " runs_without_page={} no_page_within_s={}",
                self.no_page,
                self.page_timeout.as_secs()
            );
        }
        s
    }
}

/// Services of one run, stopped when dropped.
struct Running {
    procs: Vec<Proc>,
    _dir: TmpDir,
    /// Whether the side has seen the login succeed (Err: it cannot tell, e.g. not answering yet).
    ready: Box<dyn Fn() -> Res<bool> + Send>,
    /// What the side reports about the check after a run without a page.
    diagnose: Box<dyn Fn() -> String + Send>,
}

impl Running {
    /// A process that exited, with its log tail.
    fn exited(&mut self) -> Option<String> {
        self.procs.iter_mut().find_map(|p| {
            p.exited()
                .map(|st| format!("{} exited ({st}):\n{}", p.name, indent(&p.log_tail(15))))
        })
    }

    fn logs(&self) -> String {
        self.procs
            .iter()
            .map(|p| format!("{} log:\n{}", p.name, indent(&p.log_tail(10))))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Side {
    fn measure(&self, app_port: u16) -> Res<Outcome> {
        let recorder = Recorder::start()?;
        let mut out = Outcome {
            pages: Vec::new(),
            no_page: 0,
            page_timeout: self.page_timeout,
        };
        for run in 1..=self.runs {
            control(app_port, "reset")?;
            recorder.clear();
            let mut services = match &self.kind {
                Kind::Canaryd(bin) => start_canaryd(bin, app_port, recorder.port)?,
                Kind::Prometheus(t, bb) => start_prometheus(t, *bb, app_port, recorder.port)?,
            };
            let started = Instant::now();
            // 2. the side has seen the login succeed
            loop {
                if let Some(why) = services.exited() {
                    return Err(why);
                }
                if let Ok(true) = (services.ready)() {
                    break;
                }
                if started.elapsed() > self.ready_timeout {
                    return Err(format!(
                        "run {run}: no successful login seen within {:?} of the start\n{}",
                        self.ready_timeout,
                        services.logs()
                    ));
                }
                thread::sleep(Duration::from_millis(100));
            }
            let ready_after = started.elapsed();
            // 3. a random moment of the cycle
            let delay = self.cycle.mul_f64(random_fraction());
            thread::sleep(delay);
            // 4. the break
            control(app_port, "break_login=1")?;
            let t0 = Instant::now();
            if recorder.first_after(started, t0, self.matcher()).is_some() {
                println!(
                    "- {} run {run}: WARNING: a firing notification arrived before the break",
                    self.key
                );
            }
            // 5. the page
            let mut page = None;
            while t0.elapsed() < self.page_timeout {
                if let Some(at) = recorder.first_after(t0, Instant::now(), self.matcher()) {
                    page = Some(at.duration_since(t0));
                    break;
                }
                if let Some(why) = services.exited() {
                    return Err(format!("run {run}: {why}"));
                }
                thread::sleep(Duration::from_millis(20));
            }
            let posts = recorder.count();
            match page {
                Some(d) => {
                    println!(
                        "- {} run {run}: page {:.1} s after the break (login seen ok {:.1} s after the start, broken a random {:.1} s later)",
                        self.key,
                        d.as_secs_f64(),
                        ready_after.as_secs_f64(),
                        delay.as_secs_f64()
                    );
                    out.pages.push(d.as_secs_f64());
                }
                None => {
                    out.no_page += 1;
                    println!(
                        "- {} run {run}: no page within {} s of the break ({posts} POSTs to the recorder, none firing {ALERT}); {}",
                        self.key,
                        self.page_timeout.as_secs(),
                        (services.diagnose)()
                    );
                }
            }
            drop(services);
            control(app_port, "reset")?;
            if page.is_none() && self.stop_after_no_page && run < self.runs {
                println!(
                    "- {}: the other {} run(s) skipped",
                    self.key,
                    self.runs - run
                );
                break;
            }
        }
        Ok(out)
    }

    /// Whether a notification body says our alert fires.
    fn matcher(&self) -> fn(&Value) -> bool {
        match self.kind {
            Kind::Canaryd(_) => canaryd_fires,
            Kind::Prometheus(..) => alertmanager_fires,
        }
    }
}

/// canaryd's webhook: `{"version": "1", "events": [{"status": "firing", "alert": ..}, ..]}`.
fn canaryd_fires(body: &Value) -> bool {
    body["events"].as_array().is_some_and(|events| {
        events
            .iter()
            .any(|e| e["status"] == "firing" && e["alert"] == ALERT)
    })
}

/// Alertmanager's webhook: `{"version": "4", "alerts": [{"status": "firing", "labels":
/// {"alertname": ..}}, ..]}`.
fn alertmanager_fires(body: &Value) -> bool {
    body["alerts"].as_array().is_some_and(|alerts| {
        alerts
            .iter()
            .any(|a| a["status"] == "firing" && a["labels"]["alertname"] == ALERT)
    })
}

/// A fraction in [0, 1) from the system's random source (through uuid's v4).
fn random_fraction() -> f64 {
    (uuid::Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64
}

// ---------------------------------------------------------------------------------------------
// canaryd

fn start_canaryd(bin: &Path, app_port: u16, hook_port: u16) -> Res<Running> {
    let dir = TmpDir::new("canaryd-bench-page-canaryd")?;
    let port = free_port()?;
    let config = format!(
        r#"listen: 127.0.0.1:{port}
state_dir: {state}
check_files: [checks.yaml]
receivers:
  - name: hook
    webhook: {{url: "http://127.0.0.1:{hook_port}/hook"}}
routes:
  - receivers: [hook]
"#,
        state = Value::String(dir.path().join("state").to_string_lossy().into_owned()),
    );
    write(&dir.path().join("canaryd.yaml"), &config)?;
    write(&dir.path().join("checks.yaml"), &canaryd_checks(app_port))?;
    let mut cmd = Command::new(bin);
    cmd.arg("run")
        .arg("--config")
        .arg(dir.path().join("canaryd.yaml"))
        .env("DEMO_PASSWORD", app::PASSWORD)
        .current_dir(dir.path());
    let proc = Proc::spawn("canaryd", cmd, &dir.path().join("canaryd.log"))?;
    let api = "/api/v1/checks";
    let last_result = move || -> Res<Value> {
        let (status, body) = http_get(port, api)?;
        if status != 200 {
            return Err(format!("/api/v1/checks: HTTP {status}"));
        }
        let v: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        let check = v["checks"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == CHECK))
            .ok_or("the check is not in /api/v1/checks")?;
        Ok(check["last_result"].clone())
    };
    let last = last_result;
    Ok(Running {
        procs: vec![proc],
        _dir: dir,
        ready: Box::new(move || Ok(last()?["success"] == true)),
        diagnose: Box::new(move || match last_result() {
            Ok(r) if r["success"] == false => {
                let step = r["steps"]
                    .as_array()
                    .and_then(|s| s.iter().find(|s| s["success"] == false))
                    .and_then(|s| s["name"].as_str())
                    .unwrap_or("?")
                    .to_string();
                format!(
                    "canaryd's last result: failed at step {step:?} ({}) — the check sees the break; no alert engine delivered a page",
                    r["reason"].as_str().unwrap_or("?")
                )
            }
            Ok(r) => format!("canaryd's last result: {}", r),
            Err(e) => format!("canaryd's API: {e}"),
        }),
    })
}

/// The check: the steps of `demo-login` (checks/demo.yaml) against the app's port.
fn canaryd_checks(app_port: u16) -> String {
    format!(
        r#"checks:
  - name: {CHECK}
    interval: {interval}s
    timeout: 4s
    labels: {{team: web}}
    http:
      base_url: "http://127.0.0.1:{app_port}"
      steps:
        - name: form
          request: {{url: /accounts/login/}}
          expect: {{status: 200, cookie: csrftoken}}
          extract:
            csrf: {{css: 'input[name="csrfmiddlewaretoken"]', attr: value}}
        - name: submit
          request:
            method: POST
            url: /accounts/login/
            form:
              username: probe@example.com
              password: "${{env:DEMO_PASSWORD}}"
              csrfmiddlewaretoken: "${{csrf}}"
            headers: {{Referer: "${{base_url}}/accounts/login/"}}
            follow_redirects: false
          expect:
            status: 302
            header: {{Location: "/dashboard/"}}
            body_not_contains:
              - CSRF verification failed
              - Please enter a correct username and password
        - name: dashboard
          request: {{url: /dashboard/}}
          expect:
            status: 200
            body_contains: "Sign out"
            max_duration: 2s
    alerts:
      - name: {ALERT}
        when: failed
        consecutive: {CONSECUTIVE}
        severity: critical
"#,
        interval = CHECK_INTERVAL.as_secs()
    )
}

// ---------------------------------------------------------------------------------------------
// The peer: blackbox_exporter, Prometheus, Alertmanager

/// The blackbox module: the login POST, with the token in cookie and field.
fn blackbox_config() -> String {
    format!(
        r#"modules:
  demo_login:
    prober: http
    timeout: 5s
    http:
      method: POST
      preferred_ip_protocol: ip4
      follow_redirects: false
      valid_status_codes: [302]
      headers:
        Content-Type: application/x-www-form-urlencoded
        Cookie: csrftoken={BLACKBOX_CSRF}
      body: "username=probe%40example.com&password={password}&csrfmiddlewaretoken={BLACKBOX_CSRF}"
      fail_if_header_not_matches:
        - header: Location
          regexp: '^/dashboard/$'
"#,
        password =
            url::form_urlencoded::byte_serialize(app::PASSWORD.as_bytes()).collect::<String>()
    )
}

/// One blackbox_exporter for every peer run (it keeps no state between probes).
struct Blackbox {
    _proc: Proc,
    _dir: TmpDir,
    port: u16,
    version: String,
}

impl Blackbox {
    fn start() -> Res<Blackbox> {
        let bin = find_binary("prometheus-blackbox-exporter")?;
        let dir = TmpDir::new("canaryd-bench-page-blackbox")?;
        let config = dir.path().join("blackbox.yml");
        write(&config, &blackbox_config())?;
        let port = free_port()?;
        let mut cmd = Command::new(&bin);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let mut proc = Proc::spawn("blackbox_exporter", cmd, &dir.path().join("blackbox.log"))?;
        wait_ready(&mut proc, port, "/-/healthy", Duration::from_secs(20))?;
        Ok(Blackbox {
            _proc: proc,
            _dir: dir,
            port,
            version: version_of("prometheus-blackbox-exporter"),
        })
    }
}

fn start_prometheus(
    timings: &PeerTimings,
    blackbox_port: u16,
    app_port: u16,
    hook_port: u16,
) -> Res<Running> {
    let prom_bin = find_binary("prometheus")?;
    let am_bin = find_binary("prometheus-alertmanager")?;
    let dir = TmpDir::new("canaryd-bench-page-prometheus")?;
    let d = dir.path();

    // Alertmanager: its defaults (group_wait 30s, group_interval 5m, repeat_interval 4h).
    write(
        &d.join("alertmanager.yml"),
        &format!(
            r#"route:
  receiver: hook
  group_by: [alertname]
receivers:
  - name: hook
    webhook_configs:
      - url: "http://127.0.0.1:{hook_port}/hook"
"#
        ),
    )?;
    let am_port = free_port()?;
    let mut cmd = Command::new(&am_bin);
    cmd.arg(format!(
        "--config.file={}",
        d.join("alertmanager.yml").display()
    ))
    .arg(format!("--storage.path={}", d.join("am-data").display()))
    .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
    .arg("--cluster.listen-address=");
    let mut am = Proc::spawn("alertmanager", cmd, &d.join("alertmanager.log"))?;
    wait_ready(&mut am, am_port, "/-/ready", Duration::from_secs(30))?;

    let (global, rule_for) = match timings {
        // Nothing set: scrape_interval 1m, evaluation_interval 1m, scrape_timeout 10s.
        PeerTimings::Default => ("", "0s"),
        PeerTimings::Matched => (
            "global:\n  scrape_interval: 10s\n  evaluation_interval: 10s\n",
            "10s",
        ),
    };
    write(
        &d.join("rules.yml"),
        &format!(
            r#"groups:
  - name: bench
    rules:
      - alert: {ALERT}
        expr: probe_success{{job="blackbox"}} == 0
        for: {rule_for}
        labels: {{severity: critical}}
"#
        ),
    )?;
    write(
        &d.join("prometheus.yml"),
        &format!(
            r#"{global}rule_files: [rules.yml]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:{am_port}"]
scrape_configs:
  - job_name: blackbox
    metrics_path: /probe
    params:
      module: [demo_login]
      target: ["http://127.0.0.1:{app_port}/accounts/login/"]
    static_configs:
      - targets: ["127.0.0.1:{blackbox_port}"]
"#
        ),
    )?;
    let prom_port = free_port()?;
    let mut cmd = Command::new(&prom_bin);
    cmd.arg(format!(
        "--config.file={}",
        d.join("prometheus.yml").display()
    ))
    .arg(format!("--storage.tsdb.path={}", d.join("data").display()))
    .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"));
    let mut prom = Proc::spawn("prometheus", cmd, &d.join("prometheus.log"))?;
    wait_ready(&mut prom, prom_port, "/-/ready", Duration::from_secs(30))?;

    let query = move |expr: &str| -> Res<Value> {
        let path = format!(
            "/api/v1/query?query={}",
            url::form_urlencoded::byte_serialize(expr.as_bytes()).collect::<String>()
        );
        let (status, body) = http_get(prom_port, &path)?;
        let v: Value = serde_json::from_str(&body)
            .map_err(|e| format!("prometheus query: HTTP {status}: {e}"))?;
        if v["status"] != "success" {
            return Err(format!("prometheus query: {body}"));
        }
        Ok(v["data"]["result"].clone())
    };
    let value = move |expr: &str| -> Option<String> {
        query(expr).ok()?[0]["value"][1].as_str().map(String::from)
    };
    let value2 = value;
    Ok(Running {
        procs: vec![prom, am],
        _dir: dir,
        ready: Box::new(move || {
            Ok(value(r#"probe_success{job="blackbox"}"#).as_deref() == Some("1"))
        }),
        diagnose: Box::new(move || {
            format!(
                "Prometheus: probe_success {}, ALERTS {}",
                value2(r#"probe_success{job="blackbox"}"#).unwrap_or("-".into()),
                value2(&format!(
                    r#"ALERTS{{alertname="{ALERT}",alertstate="firing"}}"#
                ))
                .map_or("not firing".to_string(), |_| "firing".into())
            )
        }),
    })
}

fn version_of(bin: &str) -> String {
    let Ok(path) = find_binary(bin) else {
        return "(not installed)".into();
    };
    let out = Command::new(path).arg("--version").output();
    let text = out
        .map(|o| {
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
        })
        .unwrap_or_default();
    // `prometheus, version 2.42.0+ds (branch: ...`
    text.split("version ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or("(version unknown)")
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// The demo apps

/// Copies of the demo app, each with its own controls, on one thread with its own runtime.
struct AppServer {
    ports: Vec<u16>,
}

impl AppServer {
    fn start(copies: usize) -> Res<AppServer> {
        let mut listeners = Vec::new();
        let mut ports = Vec::new();
        for _ in 0..copies {
            let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            ports.push(l.local_addr().map_err(|e| e.to_string())?.port());
            let router = app::router(Arc::new(app::Controls::default()))?;
            listeners.push((l, router));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        // The thread lives as long as the process.
        thread::spawn(move || {
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for (l, router) in listeners {
                    let Ok(l) = tokio::net::TcpListener::from_std(l) else {
                        continue;
                    };
                    tasks.push(tokio::spawn(async move {
                        let _ = axum::serve(l, router).await;
                    }));
                }
                for t in tasks {
                    let _ = t.await;
                }
            })
        });
        for &p in &ports {
            let t0 = Instant::now();
            while http_get(p, "/health").map(|(s, _)| s) != Ok(200) {
                if t0.elapsed() > Duration::from_secs(10) {
                    return Err("the demo app did not answer within 10 s".into());
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(AppServer { ports })
    }
}

/// `GET /control?WHAT` on an app.
fn control(app_port: u16, what: &str) -> Res<()> {
    match http_get(app_port, &format!("/control?{what}"))? {
        (200, _) => Ok(()),
        (s, body) => Err(format!("/control?{what}: HTTP {s}: {body}")),
    }
}

// ---------------------------------------------------------------------------------------------
// The recorder: a webhook receiver that notes when each POST arrives

struct Post {
    at: Instant,
    body: Value,
}

struct Recorder {
    port: u16,
    posts: Arc<Mutex<Vec<Post>>>,
    stop: Arc<AtomicBool>,
}

impl Recorder {
    fn start() -> Res<Recorder> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let posts = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (posts.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let p = p.clone();
                thread::spawn(move || serve_hook(conn, &p));
            }
        });
        Ok(Recorder { port, posts, stop })
    }

    fn clear(&self) {
        self.posts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn count(&self) -> usize {
        self.posts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Arrival of the first matching POST in [from, to).
    fn first_after(
        &self,
        from: Instant,
        to: Instant,
        fires: fn(&Value) -> bool,
    ) -> Option<Instant> {
        self.posts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|p| p.at >= from && p.at < to && fires(&p.body))
            .map(|p| p.at)
            .min()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Reads HTTP/1.1 requests on a connection (Content-Length or chunked bodies), answers 200 to
/// each and records the POSTs with their arrival time (when the body is complete).
fn serve_hook(mut conn: TcpStream, posts: &Mutex<Vec<Post>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        // Headers.
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let is_post = head.starts_with("post ");
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(|v| v.trim().to_string())
        };
        let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        buf.drain(..head_end);
        // Body.
        let body = loop {
            let parsed = if chunked {
                dechunk(&buf)
            } else if buf.len() >= length {
                Some((buf[..length].to_vec(), length))
            } else {
                None
            };
            if let Some((body, used)) = parsed {
                buf.drain(..used);
                break body;
            }
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let at = Instant::now();
        if is_post {
            let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
            posts
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Post { at, body });
        }
        if conn
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A complete chunked body at the start of `b`: (body, bytes used).
fn dechunk(b: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut at = 0;
    let mut body = Vec::new();
    loop {
        let line_end = at + find(&b[at..], b"\r\n")?;
        let size_text = std::str::from_utf8(&b[at..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            // Trailers end with an empty line.
            let end = at + find(&b[at..], b"\r\n")?;
            return Some((body, end + 2));
        }
        if b.len() < at + size + 2 {
            return None;
        }
        body.extend_from_slice(&b[at..at + size]);
        at += size + 2;
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP client, ports, files

/// `GET path` on 127.0.0.1:port over HTTP/1.0 (so the body comes whole, not chunked).
fn http_get(port: u16, path: &str) -> Res<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let _ = s.shutdown(Shutdown::Both);
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP answer")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {}", head.lines().next().unwrap_or("")))?;
    Ok((status, body.to_string()))
}

/// A free port on 127.0.0.1, never the same twice in this process.
fn free_port() -> Res<u16> {
    static HANDED_OUT: Mutex<BTreeMap<u16, ()>> = Mutex::new(BTreeMap::new());
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let mut seen = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.insert(port, ()).is_none() {
            return Ok(port);
        }
    }
    Err("no new free port after 100 tries".into())
}

fn find_binary(name: &str) -> Res<PathBuf> {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .chain(["/usr/bin", "/usr/sbin", "/usr/local/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{name} not found (scripts/setup installs it)"))
}

fn write(path: &Path, text: &str) -> Res<()> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    | {l}\n")).collect()
}

fn wait_ready(proc: &mut Proc, port: u16, path: &str, timeout: Duration) -> Res<()> {
    let t0 = Instant::now();
    loop {
        if let Some(st) = proc.exited() {
            return Err(format!(
                "{} exited before it was ready ({st}):\n{}",
                proc.name,
                indent(&proc.log_tail(15))
            ));
        }
        if http_get(port, path).is_ok_and(|(s, _)| s == 200) {
            return Ok(());
        }
        if t0.elapsed() > timeout {
            return Err(format!(
                "{} not ready after {timeout:?}:\n{}",
                proc.name,
                indent(&proc.log_tail(15))
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// Child processes and temporary directories, cleaned up on drop, on exit and on signals

/// Children and directories alive now, for the signal handler.
static CHILDREN: Mutex<BTreeMap<u64, Child>> = Mutex::new(BTreeMap::new());
static DIRS: Mutex<BTreeMap<u64, PathBuf>> = Mutex::new(BTreeMap::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A child process whose output goes to a log file; killed when dropped.
struct Proc {
    id: u64,
    name: &'static str,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, mut cmd: Command, log: &Path) -> Res<Proc> {
        let out = std::fs::File::create(log)
            .map_err(|e| format!("{name}: cannot create {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        // Under the lock, so that a signal cannot come between the start and the registration.
        let mut children = CHILDREN.lock().unwrap_or_else(PoisonError::into_inner);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name} ({:?}): {e}", cmd.get_program()))?;
        let id = NEXT_ID.fetch_add(1, Ordering::SeqCst);
        children.insert(id, child);
        Ok(Proc {
            id,
            name,
            log: log.to_path_buf(),
        })
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let mut children = CHILDREN.lock().unwrap_or_else(PoisonError::into_inner);
        children.get_mut(&self.id)?.try_wait().ok().flatten()
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let child = CHILDREN
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
        if let Some(mut c) = child {
            stop_child(&mut c);
        }
    }
}

/// SIGTERM, up to 5 s to exit (Prometheus and Alertmanager flush their data), then SIGKILL.
fn stop_child(c: &mut Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(c.id().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    let _ = c.wait();
}

/// A temporary directory, removed when dropped (or by the signal handler).
struct TmpDir {
    id: u64,
    dir: Option<tempfile::TempDir>,
}

impl TmpDir {
    fn new(prefix: &str) -> Res<TmpDir> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        let id = NEXT_ID.fetch_add(1, Ordering::SeqCst);
        DIRS.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, dir.path().to_path_buf());
        Ok(TmpDir { id, dir: Some(dir) })
    }

    fn path(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new("/nonexistent"), |d| d.path())
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        DIRS.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
        drop(self.dir.take());
    }
}

/// Kills every child still registered and removes every registered directory.
fn cleanup_all() {
    let children: Vec<Child> =
        std::mem::take(&mut *CHILDREN.lock().unwrap_or_else(PoisonError::into_inner))
            .into_values()
            .collect();
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    let dirs = std::mem::take(&mut *DIRS.lock().unwrap_or_else(PoisonError::into_inner));
    for d in dirs.values() {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// On SIGINT, SIGTERM (`timeout` in scripts/bench) or SIGHUP: clean up and exit.
fn install_signal_cleanup() {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench_page: no signal handling ({e}): children may outlive an interrupt");
            return;
        }
    };
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        rt.block_on(async move {
            let (got_tx, mut got) = tokio::sync::mpsc::unbounded_channel();
            for (kind, n) in [
                (SignalKind::interrupt(), 2),
                (SignalKind::terminate(), 15),
                (SignalKind::hangup(), 1),
            ] {
                match signal(kind) {
                    Ok(mut stream) => {
                        let got_tx = got_tx.clone();
                        tokio::spawn(async move {
                            stream.recv().await;
                            let _ = got_tx.send(n);
                        });
                    }
                    Err(e) => eprintln!("bench_page: signal {n} not handled: {e}"),
                }
            }
            let _ = tx.send(());
            if let Some(n) = got.recv().await {
                eprintln!("bench_page: signal {n}: stopping the services");
                cleanup_all();
                std::process::exit(128 + n);
            }
        })
    });
    // The handlers are in place before any child starts.
    let _ = rx.recv_timeout(Duration::from_secs(5));
}
