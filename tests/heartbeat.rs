//! The `heartbeat` kind end to end: jobs ping canaryd over HTTP, the state lands in the store,
//! and each run judges it. Lateness is tested against a clock the test sets (no sleeping for
//! grace periods); the store's survival is tested by restarting the real binary.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use canaryd::clock::ManualClock;
use canaryd::daemon::{build_probe_with, Daemon};
use canaryd::probe::{CheckResult, Reason, RunContext};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod services;

const BIN: &str = env!("CARGO_BIN_EXE_canaryd");
const CANARY: &str = "hb-canary-token-Qx81Lm";

/// 2026-06-01T00:00:00Z
const T0: u64 = 1_780_272_000;
const H: u64 = 3600;

fn at(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(s)
}

/// One HTTP/1.1 exchange on a fresh connection: status and body. A server that answers before
/// reading the whole body (413) may reset the connection mid-upload: what it answered counts.
async fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.write_all(body).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    services::parse_http_answer(&buf)
}

/// A daemon in this process on a free port, with its clock at `clock`.
struct Running {
    daemon: Arc<Daemon>,
    addr: String,
    clock: Arc<ManualClock>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl Running {
    async fn start(checks: &str, t: SystemTime) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Running::start_in(dir.path(), checks, Arc::new(ManualClock::new(t))).await;
        r._dir = Some(dir);
        r
    }

    async fn start_in(dir: &Path, checks: &str, clock: Arc<ManualClock>) -> Running {
        std::fs::write(
            dir.join("canaryd.yaml"),
            "state_dir: state\ncheck_files: [checks.yaml]\n",
        )
        .unwrap();
        std::fs::write(dir.join("checks.yaml"), checks).unwrap();
        let daemon = Daemon::start_with_clock(&dir.join("canaryd.yaml"), clock.clone())
            .unwrap_or_else(|e| panic!("{e}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(canaryd::server::serve(
            listener,
            daemon.clone(),
            std::future::pending(),
        ));
        Running {
            daemon,
            addr,
            clock,
            server,
            _dir: None,
        }
    }

    /// Stops the daemon as a process exit would: everything holding the state store (and its
    /// `state_dir` lock) is gone when this returns.
    async fn stop(self) {
        self.daemon.shutdown().await;
        self.server.abort();
        let _ = self.server.await;
        let state_dir = self.daemon.config().state_dir.clone();
        drop(self.daemon);
        // The last handles go with tasks the shutdown aborted: wait until the lock is free.
        let t = Instant::now();
        while let Err(e) = canaryd::store::Store::open(&state_dir) {
            assert!(t.elapsed() < Duration::from_secs(5), "{e}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn ping(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> u16 {
        http(&self.addr, "POST", path, headers, body).await.0
    }

    /// One run of the check now, as the scheduler would do it.
    async fn run(&self, name: &str) -> CheckResult {
        let config = self.daemon.config();
        let check = config.checks.iter().find(|c| c.name == name).unwrap();
        let probe = build_probe_with(check, &self.daemon.heartbeats).unwrap();
        probe
            .run(RunContext {
                deadline: tokio::time::Instant::now() + Duration::from_secs(1),
            })
            .await
    }

    async fn api(&self, name: &str) -> Value {
        let (_, body) = http(&self.addr, "GET", "/api/v1/checks", &[], b"").await;
        let v: Value = serde_json::from_str(&body).unwrap();
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap()
    }

    /// Waits until /metrics contains `needle` (the scheduler evaluates every 200 ms).
    async fn wait_metric(&self, needle: &str) -> String {
        let t = Instant::now();
        loop {
            let (_, m) = http(&self.addr, "GET", "/metrics", &[], b"").await;
            if m.contains(needle) {
                return m;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{needle:?} never appeared in:\n{m}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn var(r: &CheckResult, name: &str) -> Option<f64> {
    r.observations
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| *v)
}

const HOURLY: &str = "checks:\n  - name: hourly\n    interval: 200ms\n    heartbeat: {every: 1h, grace: 5m, max_runtime: 20m}\n  - name: web\n    interval: 1h\n    tcp: {target: \"127.0.0.1:1\"}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_pings_on_time_stays_healthy_and_is_late_once_grace_has_passed() {
    let d = Running::start(HOURLY, at(T0)).await;
    d.clock.set(at(T0 + 600));
    assert_eq!(d.ping("/ping/hourly", &[], b"42 invoices").await, 200);
    d.wait_metric("canary_heartbeat_last_ping_timestamp_seconds{check=\"hourly\"} 1780272600.0")
        .await;

    // One hour and four minutes later: due, but within grace.
    d.clock.set(at(T0 + 600 + H + 4 * 60));
    let r = d.run("hourly").await;
    assert!(r.success, "{:?}", r.message);
    assert_eq!(var(&r, "late"), Some(0.0));
    assert_eq!(var(&r, "since_last"), Some((H + 4 * 60) as f64));
    assert_eq!(var(&r, "running_for"), Some(0.0));
    assert_eq!(var(&r, "last_exit_code"), Some(0.0));
    d.wait_metric("canary_heartbeat_late{check=\"hourly\"} 0")
        .await;

    // Grace over.
    d.clock.advance(Duration::from_secs(61));
    let r = d.run("hourly").await;
    assert!(!r.success);
    assert_eq!(r.reason, Some(Reason::Late));
    assert_eq!(
        r.message.as_deref(),
        Some("no ping since 2026-06-01T00:10:00Z, expected every 1h + 5m grace")
    );
    let m = d
        .wait_metric("canary_heartbeat_late{check=\"hourly\"} 1")
        .await;
    assert!(
        m.contains("canary_check_failures_total{check=\"hourly\",reason=\"late\"}"),
        "{m}"
    );
    let api = d.api("hourly").await;
    assert_eq!(api["last_result"]["reason"], "late");
    assert_eq!(api["last_result"]["variables"]["late"], 1.0);
    assert_eq!(api["heartbeat"]["last_body"], "42 invoices");
    assert_eq!(api["heartbeat"]["ping_count"], 1);
    assert_eq!(api["heartbeat"]["every_seconds"], 3600.0);

    // The job comes back: healthy at once.
    assert_eq!(d.ping("/ping/hourly/0", &[], b"").await, 200);
    assert!(d.run("hourly").await.success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_started_but_never_finished_fails_after_max_runtime() {
    let d = Running::start(HOURLY, at(T0)).await;
    assert_eq!(d.ping("/ping/hourly/start", &[], b"").await, 200);
    d.clock.advance(Duration::from_secs(19 * 60));
    let r = d.run("hourly").await;
    assert!(r.success, "{:?}", r.message);
    assert_eq!(var(&r, "running_for"), Some(19.0 * 60.0));
    assert_eq!(d.api("hourly").await["heartbeat"]["running"], true);

    d.clock.advance(Duration::from_secs(2 * 60));
    let r = d.run("hourly").await;
    assert_eq!(r.reason, Some(Reason::RunningTooLong));
    assert_eq!(
        r.message.as_deref(),
        Some("running for 21m since 2026-06-01T00:00:00Z, longer than max_runtime 20m")
    );
    assert_eq!(var(&r, "late"), Some(0.0));
    // Still unfinished once the hour and its grace are over: late as well.
    d.clock.set(at(T0 + H + 5 * 60));
    let r = d.run("hourly").await;
    assert_eq!(r.reason, Some(Reason::RunningTooLong));
    assert_eq!(var(&r, "late"), Some(1.0));
    assert!(r.message.unwrap().ends_with(
        "; the run started at 2026-06-01T00:00:00Z has not finished, expected every 1h + 5m grace"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_and_exit_codes_fail_the_check_and_a_success_clears_it() {
    let d = Running::start(HOURLY, at(T0)).await;
    assert_eq!(d.ping("/ping/hourly/fail", &[], b"disk full").await, 200);
    d.clock.advance(Duration::from_secs(1));
    let r = d.run("hourly").await;
    assert_eq!(r.reason, Some(Reason::JobFailed));
    assert_eq!(
        r.message.as_deref(),
        Some("the last run failed at 2026-06-01T00:00:00Z (reported by /fail)")
    );
    assert_eq!(var(&r, "last_exit_code"), None);

    assert_eq!(d.ping("/ping/hourly/0", &[], b"").await, 200);
    assert!(d.run("hourly").await.success);

    // GET works too (for `curl URL` or `wget -q URL`), and 255 is the largest exit code.
    let (code, _) = http(&d.addr, "GET", "/ping/hourly/255", &[], b"").await;
    assert_eq!(code, 200);
    let r = d.run("hourly").await;
    assert_eq!(r.reason, Some(Reason::JobFailed));
    assert_eq!(var(&r, "last_exit_code"), Some(255.0));
    let api = d.api("hourly").await;
    assert_eq!(api["heartbeat"]["last_exit_code"], 255);
    assert_eq!(api["heartbeat"]["last_result"], "fail");
    assert_eq!(api["heartbeat"]["ping_count"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_schedule_is_read_in_its_time_zone() {
    // 02:00 in New York (EDT, -4) is 06:00Z in June.
    let checks = "checks:\n  - name: nightly\n    heartbeat:\n      cron: \"0 2 * * *\"\n      timezone: America/New_York\n      grace: 30m\n";
    // First seen 2026-06-01T05:00Z = 01:00 in New York: tonight's 02:00 run is due.
    let d = Running::start(checks, at(T0 + 5 * H)).await;
    assert_eq!(
        d.daemon.config().checks[0].interval,
        Duration::from_secs(30)
    );
    d.clock.set(at(T0 + 6 * H + 29 * 60));
    assert!(d.run("nightly").await.success);
    d.clock.set(at(T0 + 6 * H + 30 * 60));
    let r = d.run("nightly").await;
    assert_eq!(r.reason, Some(Reason::Late));
    assert_eq!(
        r.message.as_deref(),
        Some("no ping yet (watched since 2026-06-01T01:00:00-04:00), expected by 2026-06-01T02:00:00-04:00 (cron \"0 2 * * *\" in America/New_York) + 30m grace")
    );
    // The run finishes late, at 02:45: on time again until tomorrow 02:30.
    d.clock.set(at(T0 + 6 * H + 45 * 60));
    assert_eq!(d.ping("/ping/nightly", &[], b"").await, 200);
    d.clock.set(at(T0 + 30 * H + 29 * 60));
    assert!(d.run("nightly").await.success);
    d.clock.set(at(T0 + 30 * H + 30 * 60));
    assert_eq!(d.run("nightly").await.reason, Some(Reason::Late));
    let api = d.api("nightly").await;
    assert_eq!(api["heartbeat"]["cron"], "0 2 * * *");
    assert_eq!(api["heartbeat"]["timezone"], "America/New_York");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_without_the_right_token_get_401_and_record_nothing() {
    std::env::set_var("HB_TEST_TOKEN_401", CANARY);
    let checks = "checks:\n  - name: secured\n    heartbeat:\n      every: 1d\n      token: \"${env:HB_TEST_TOKEN_401}\"\n";
    let d = Running::start(checks, at(T0)).await;
    let wrong = format!("Bearer {CANARY}x");
    let short = format!("Bearer {}", &CANARY[..CANARY.len() - 1]);
    let basic = format!("Basic {CANARY}");
    for headers in [
        vec![],
        vec![("Authorization", wrong.as_str())],
        vec![("Authorization", short.as_str())],
        vec![("Authorization", basic.as_str())],
        vec![("Authorization", "Bearer")],
    ] {
        let (code, body) = http(&d.addr, "POST", "/ping/secured/0", &headers, b"x").await;
        assert_eq!(code, 401, "{headers:?}");
        assert!(!body.contains(CANARY), "{body}");
    }
    let api = d.api("secured").await;
    assert_eq!(api["heartbeat"]["ping_count"], 0);
    assert_eq!(api["heartbeat"]["last_ping"], Value::Null);
    assert_eq!(api["heartbeat"]["token_required"], true);

    let good = format!("Bearer {CANARY}");
    assert_eq!(
        d.ping("/ping/secured", &[("Authorization", &good)], b"")
            .await,
        200
    );
    // The scheme is case-insensitive, as RFC 9110 says.
    let lower = format!("bearer {CANARY}");
    assert_eq!(
        d.ping("/ping/secured/start", &[("Authorization", &lower)], b"")
            .await,
        200
    );
    let (_, api) = http(&d.addr, "GET", "/api/v1/checks", &[], b"").await;
    assert!(api.contains("\"ping_count\":2"), "{api}");
    assert!(
        !api.contains(CANARY),
        "the token leaked into the API: {api}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_checks_other_kinds_and_bad_suffixes_are_404_and_head_records_nothing() {
    let d = Running::start(HOURLY, at(T0)).await;
    for path in [
        "/ping/nope",
        "/ping/web",
        "/ping/web/start",
        "/ping/hourly/256",
        "/ping/hourly/-1",
        "/ping/hourly/finish",
        "/ping/hourly/0/extra",
        "/ping/%ff%00",
    ] {
        let (code, body) = http(&d.addr, "POST", path, &[], b"").await;
        assert_eq!(code, 404, "{path}: {body}");
    }
    let (code, _) = http(&d.addr, "HEAD", "/ping/hourly", &[], b"").await;
    assert_eq!(code, 405);
    assert_eq!(d.api("hourly").await["heartbeat"]["ping_count"], 0);
    assert!(d.api("web").await.get("heartbeat").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_keeps_its_last_10_kib_and_one_over_1_mib_is_refused() {
    let d = Running::start(HOURLY, at(T0)).await;
    let mut log = "line of a long job log\n".repeat(2000).into_bytes();
    log.extend_from_slice(b"ERROR: the end\n");
    assert_eq!(d.ping("/ping/hourly/1", &[], &log).await, 200);
    let api = d.api("hourly").await;
    let kept = api["heartbeat"]["last_body"].as_str().unwrap();
    assert_eq!(kept.len(), 10 * 1024);
    assert!(kept.ends_with("job log\nERROR: the end\n"));

    let huge = vec![b'x'; 2 * 1024 * 1024 + 1];
    let (code, body) = http(&d.addr, "POST", "/ping/hourly/0", &[], &huge).await;
    assert_eq!(code, 413, "{body}");
    let api = d.api("hourly").await;
    assert_eq!(api["heartbeat"]["ping_count"], 1);
    assert_eq!(api["heartbeat"]["last_exit_code"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_watches_new_heartbeat_checks_and_forgets_removed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(at(T0)));
    let d = Running::start_in(dir.path(), HOURLY, clock.clone()).await;
    assert_eq!(d.ping("/ping/hourly", &[], b"").await, 200);
    clock.set(at(T0 + 60));
    std::fs::write(
        dir.path().join("checks.yaml"),
        "checks:\n  - name: daily\n    heartbeat: {every: 1d}\n",
    )
    .unwrap();
    assert_eq!(d.daemon.reload().await.unwrap(), 1);
    assert_eq!(d.ping("/ping/hourly", &[], b"").await, 404);
    let api = d.api("daily").await;
    assert_eq!(api["heartbeat"]["first_seen"], (T0 + 60) as f64);
    // The default grace of a daily job is an hour, and it is judged every 30s (the default).
    assert_eq!(api["heartbeat"]["grace_seconds"], 3600.0);
    assert_eq!(api["interval_seconds"], 30.0);
    assert_eq!(d.ping("/ping/daily", &[], b"").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_seen_survives_a_restart_so_a_job_that_never_pinged_is_still_late() {
    let dir = tempfile::tempdir().unwrap();
    let checks = "checks:\n  - name: hourly\n    heartbeat: {every: 1h, grace: 1m}\n";
    let first = Running::start_in(dir.path(), checks, Arc::new(ManualClock::new(at(T0)))).await;
    assert!(first.run("hourly").await.success);
    first.stop().await;

    // canaryd was down for two hours; it comes back knowing when it started watching.
    let clock = Arc::new(ManualClock::new(at(T0 + 2 * H)));
    let second = Running::start_in(dir.path(), checks, clock).await;
    let r = second.run("hourly").await;
    assert_eq!(r.reason, Some(Reason::Late));
    assert_eq!(
        r.message.as_deref(),
        Some("no ping yet (watched since 2026-06-01T00:00:00Z), expected every 1h + 1m grace")
    );
    assert_eq!(var(&r, "since_last"), Some(2.0 * H as f64));
}

// ---- the real binary ----

struct Proc {
    child: std::process::Child,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Proc {
    fn start(config: &Path, addr: &str) -> Proc {
        let child = std::process::Command::new(BIN)
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "trace")
            .env("HB_TOKEN", CANARY)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let t = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "canaryd did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Proc { child }
    }

    /// SIGTERM; returns everything it logged.
    fn stop(self) -> String {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let out = self.child.wait_with_output().unwrap();
        assert!(out.status.success(), "canaryd exited with {}", out.status);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

async fn wait_for(addr: &str, path: &str, needle: &str) -> String {
    let t = Instant::now();
    loop {
        let (_, body) = http(addr, "GET", path, &[], b"").await;
        if body.contains(needle) {
            return body;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{needle:?} never appeared in {path}:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn metric_line<'a>(metrics: &'a str, prefix: &str) -> &'a str {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in:\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_daemon_keeps_heartbeat_state_across_a_restart_and_never_shows_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    std::fs::write(
        dir.path().join("canaryd.yaml"),
        format!("listen: {addr}\nstate_dir: state\ncheck_files: [checks.yaml]\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("checks.yaml"),
        "checks:\n  - name: nightly\n    interval: 200ms\n    heartbeat:\n      cron: \"0 2 * * *\"\n      timezone: Europe/Paris\n      token: \"${env:HB_TOKEN}\"\n",
    )
    .unwrap();
    let config = dir.path().join("canaryd.yaml");

    let first = Proc::start(&config, &addr);
    // A wrong token first: refused, and the attempt must not be logged with its value.
    let wrong = format!("Bearer {CANARY}-wrong");
    let (code, _) = http(
        &addr,
        "POST",
        "/ping/nightly/0",
        &[("Authorization", &wrong)],
        b"",
    )
    .await;
    assert_eq!(code, 401);
    // A job run through examples/ping.sh: /start, its output, exit code 3.
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let job = std::process::Command::new("sh")
        .arg("examples/ping.sh")
        .args([
            "nightly",
            "sh",
            "-c",
            "echo 'building invoices'; echo 'db timeout' >&2; exit 3",
        ])
        // Two replicas, one of them down: the job is reported to the one that is up, and the
        // one that is down costs a line on stderr, not the job's exit code.
        .env("CANARYD_URL", format!("http://{down} http://{addr}"))
        .env("HEARTBEAT_TOKEN", CANARY)
        .output()
        .unwrap();
    assert_eq!(job.status.code(), Some(3), "{job:?}");
    let stderr = String::from_utf8_lossy(&job.stderr);
    assert!(
        stderr.contains(&format!(
            "could not report to canaryd at http://{down}/ping/nightly/start"
        )) && !stderr.contains(&format!("at http://{addr}")),
        "{stderr}"
    );
    assert_eq!(
        String::from_utf8_lossy(&job.stdout),
        "building invoices\ndb timeout\n"
    );
    let before = wait_for(
        &addr,
        "/metrics",
        "canary_check_failures_total{check=\"nightly\",reason=\"job_failed\"}",
    )
    .await;
    let ping_line = metric_line(
        &before,
        "canary_heartbeat_last_ping_timestamp_seconds{check=\"nightly\"}",
    )
    .to_string();
    let (_, api_before) = http(&addr, "GET", "/api/v1/checks", &[], b"").await;
    let logs_first = first.stop();

    let second = Proc::start(&config, &addr);
    // The last ping is known before the first run of the check, straight from the store.
    let (_, metrics) = http(&addr, "GET", "/metrics", &[], b"").await;
    assert!(
        metrics.contains(&ping_line),
        "{ping_line} missing after restart:\n{metrics}"
    );
    let api = wait_for(&addr, "/api/v1/checks", "\"reason\":\"job_failed\"").await;
    let v: Value = serde_json::from_str(&api).unwrap();
    let hb = &v["checks"][0]["heartbeat"];
    assert_eq!(hb["ping_count"], 2);
    assert_eq!(hb["last_exit_code"], 3);
    assert_eq!(hb["last_result"], "fail");
    assert_eq!(hb["last_body"], "building invoices\ndb timeout\n");
    assert_eq!(hb["running"], false);
    let last = &v["checks"][0]["last_result"];
    assert_eq!(last["variables"]["last_exit_code"], 3.0);
    assert!(
        last["message"].as_str().unwrap().contains("(exit code 3)"),
        "{last}"
    );
    let metrics = wait_for(
        &addr,
        "/metrics",
        "canary_heartbeat_late{check=\"nightly\"} 0",
    )
    .await;

    // `canaryd probe` reads the same state from the store while the daemon runs.
    let probe = std::process::Command::new(BIN)
        .args(["probe", "--config"])
        .arg(&config)
        .arg("nightly")
        .env("RUST_LOG", "trace")
        .env("HB_TOKEN", CANARY)
        .output()
        .unwrap();
    let probe_out = format!(
        "{}{}",
        String::from_utf8_lossy(&probe.stdout),
        String::from_utf8_lossy(&probe.stderr)
    );
    assert_eq!(probe.status.code(), Some(1), "{probe_out}");
    assert!(probe_out.contains("FAIL (job_failed)"), "{probe_out}");
    assert!(probe_out.contains("last_exit_code=3"), "{probe_out}");
    let logs_second = second.stop();

    // Error messages: a broken file next to the token names the token's source, not its value.
    std::fs::write(
        dir.path().join("checks.yaml"),
        "checks:\n  - name: nightly\n    heartbeat:\n      cron: \"0 2 * *\"\n      token: \"${env:HB_TOKEN}\"\n    alerts:\n      - {name: X, when: late, annotations: {summary: \"${env:HB_TOKEN}\"}}\n",
    )
    .unwrap();
    let check = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(&config)
        .env("HB_TOKEN", CANARY)
        .output()
        .unwrap();
    let check_out = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert_eq!(check.status.code(), Some(1), "{check_out}");
    assert!(check_out.contains("invalid cron expression"), "{check_out}");

    assert!(
        logs_first.contains("heartbeat ping refused"),
        "{logs_first}"
    );
    for (what, text) in [
        ("logs of the first run", &logs_first),
        ("logs of the second run", &logs_second),
        ("/metrics", &metrics),
        ("/api/v1/checks before the restart", &api_before),
        ("/api/v1/checks after the restart", &api),
        ("canaryd probe", &probe_out),
        ("canaryd check", &check_out),
    ] {
        assert!(
            !text.contains(CANARY),
            "the token leaked into {what}:\n{text}"
        );
    }
}

#[test]
fn the_daemon_refuses_to_start_on_a_state_dir_it_cannot_use_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("checks.yaml"), "checks: []\n").unwrap();
    std::fs::write(dir.path().join("not-a-dir"), "x").unwrap();
    std::fs::create_dir(dir.path().join("damaged")).unwrap();
    std::fs::write(
        dir.path().join("damaged/canaryd.db"),
        "this is not a database, but long enough to look like a header of one".repeat(100),
    )
    .unwrap();
    let config = dir.path().join("canaryd.yaml");
    for (state_dir, expect) in [
        ("not-a-dir/state", "cannot create the state directory"),
        ("damaged", "is not a canaryd database or is damaged"),
    ] {
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{}\nstate_dir: {state_dir}\ncheck_files: [checks.yaml]\n",
                free_port()
            ),
        )
        .unwrap();
        let out = std::process::Command::new(BIN)
            .args(["run", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&format!("{}:2:12: state_dir: ", config.display())),
            "{stderr}"
        );
        assert!(first.contains(expect), "{stderr}");
    }
}
