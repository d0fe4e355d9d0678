//! The real `canaryd` binary: `check`, `probe`, and `run` with reload and shutdown, as an SRE
//! would drive it. A planted canary secret must appear in none of the outputs.

mod services;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_canaryd");
const CANARY: &str = "canary-secret-Zq9xW4";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Minimal blocking HTTP/1.1 client (no extra dependencies in tests).
fn http(method: &str, addr: &str, path: &str) -> (u16, String) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status = buf
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A target server that answers 200 on /ok and echoes the Authorization header in a body.
fn target() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                use std::io::{BufRead, BufReader, Write};
                let mut reader = BufReader::new(s.try_clone().unwrap());
                let mut first = String::new();
                let _ = reader.read_line(&mut first);
                let mut auth = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if line.to_ascii_lowercase().starts_with("authorization:") {
                        auth = line[14..].trim().to_string();
                    }
                }
                let body = if first.contains("/echo") {
                    format!("you sent {auth}")
                } else {
                    "hello canary".to_string()
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    addr
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

struct Daemon {
    child: Child,
    addr: String,
}

impl Daemon {
    fn start(config: &Path, addr: String) -> Daemon {
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(config)
            .args(["--log-level", "trace"])
            .env("CANARYD_TEST_TOKEN", CANARY)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let d = Daemon { child, addr };
        let t = Instant::now();
        while std::net::TcpStream::connect(&d.addr).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "canaryd did not start listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    fn metrics(&self) -> String {
        http("GET", &self.addr, "/metrics").1
    }

    fn wait_metric(&self, needle: &str) -> String {
        let t = Instant::now();
        loop {
            let m = self.metrics();
            if m.contains(needle) {
                return m;
            }
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "{needle:?} never appeared in:\n{m}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the exit code and everything the daemon logged.
    fn stop(mut self) -> (i32, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "canaryd did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        (status.code().unwrap_or(-1), out)
    }
}

#[test]
fn check_prints_every_error_of_every_broken_file_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "canaryd.yaml", "check_files: [checks/*.yaml]\n");
    std::fs::create_dir(dir.path().join("checks")).unwrap();
    write(dir.path(), "checks/a.yaml", "checks:\n  - name: a\n    interval: 5s\n    timeout: 10s\n    tcp: {target: \"127.0.0.1:1\"}\n  - name: Bad Name\n    tcp: {target: \"127.0.0.1:1\"}\n");
    write(
        dir.path(),
        "checks/b.yaml",
        "checks:\n  - name: b\n    tcp: {target: \"127.0.0.1:1\"}\n    bogus: 1\n",
    );
    write(dir.path(), "checks/c.yaml", "checks:\n  - name: a\n    http: {request: {url: \"http://127.0.0.1:1/\"}}\n    alerts:\n      - {name: X, when: \"duration > 3\"}\n");
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(dir.path().join("canaryd.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let d = dir.path().display();
    let expected = [
        format!("{d}/checks/a.yaml:4:14: checks[0].timeout: timeout 10s exceeds interval 5s (a run must end before the next one is due)"),
        format!("{d}/checks/a.yaml:6:11: checks[1].name: invalid check name \"Bad Name\": use lowercase letters, digits, - and _, starting with a letter or digit"),
        format!("{d}/checks/b.yaml:4:5: checks[0].bogus: unknown field `bogus`, expected one of name, interval, timeout, labels, http, tcp, queue, heartbeat, dns, canary_job, alerts, retries, depends_on"),
        format!("{d}/checks/c.yaml:2:11: checks[0].name: duplicate check name \"a\" (first defined at {d}/checks/a.yaml:2:11)"),
        format!("{d}/checks/c.yaml:5:26: checks[0].alerts[0].when: cannot compare a duration with a number in \"duration > 3\""),
    ];
    let got: Vec<&str> = stdout.lines().collect();
    assert_eq!(got, expected);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "5 errors found"
    );
}

/// The environment variables holding the Redis URLs of `checks/queues.yaml`.
const QUEUE_EXAMPLE_URLS: [&str; 6] = [
    "SIDEKIQ_REDIS_URL",
    "CELERY_BROKER_URL",
    "RQ_REDIS_URL",
    "BULLMQ_REDIS_URL",
    "RESQUE_REDIS_URL",
    "JOBS_REDIS_URL",
];

#[test]
fn check_accepts_the_example_configuration() {
    let out = Command::new(BIN)
        .args(["check", "--config", "examples/canaryd.yaml"])
        .env("DEMO_PASSWORD", "x")
        .env("SHOP_PROBE_PASSWORD", "x")
        .env("DJANGO_PROBE_PASSWORD", "x")
        .env("API_PROBE_PASSWORD", "x")
        .env("ADMIN_PROBE_PASSWORD", "x")
        .env("ADMIN_PROBE_TOTP_SEED", "JBSWY3DPEHPK3PXP")
        .env("HEARTBEAT_TOKEN", "x")
        .env("PAGERDUTY_ROUTING_KEY", "x")
        .env(
            "SLACK_WEBHOOK_URL",
            "https://hooks.slack.example/services/T0/B0/x",
        )
        .env("DEADMAN_URL", "https://deadman.example/ping/x")
        // checks/queues.yaml: Redis URLs, checked for form at load time; nothing is dialled.
        .envs(QUEUE_EXAMPLE_URLS.map(|v| (v, "redis://:x@127.0.0.1:6379/0")))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok: 21 checks in 7 check files"));
}

#[test]
fn run_serves_metrics_reloads_all_or_nothing_and_drains_on_sigterm() {
    let target = target();
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    write(
        dir.path(),
        "canaryd.yaml",
        &format!("listen: {addr}\ncheck_files: [checks.yaml]\n"),
    );
    let good = format!(
        "checks:\n  - name: web\n    interval: 200ms\n    timeout: 150ms\n    http:\n      request:\n        url: \"http://{target}/echo\"\n        headers: {{Authorization: \"Bearer ${{env:CANARYD_TEST_TOKEN}}\"}}\n      expect: {{body_contains: nope}}\n  - name: old\n    interval: 200ms\n    timeout: 150ms\n    tcp: {{target: \"{target}\"}}\n"
    );
    write(dir.path(), "checks.yaml", &good);
    let d = Daemon::start(&dir.path().join("canaryd.yaml"), addr.clone());
    d.wait_metric("canary_check_success{check=\"old\"} 1");
    d.wait_metric("canary_check_success{check=\"web\"} 0");
    assert_eq!(http("GET", &addr, "/-/healthy").0, 200);
    assert_eq!(http("GET", &addr, "/-/ready").0, 200);
    let (_, api) = http("GET", &addr, "/api/v1/checks");
    let api_json: serde_json::Value = serde_json::from_str(&api).unwrap();
    let web = api_json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "web")
        .unwrap();
    assert_eq!(web["last_result"]["reason"], "assertion");
    assert_eq!(
        web["last_result"]["message"],
        "step \"request\": body does not contain \"nope\""
    );

    // A broken file: the reload is refused, the old checks keep running.
    write(
        dir.path(),
        "checks.yaml",
        "checks:\n  - name: web\n    interval: soon\n",
    );
    let (code, body) = http("POST", &addr, "/-/reload");
    assert_eq!(code, 400);
    assert!(
        body.contains("checks.yaml:3:15: checks[0].interval: invalid duration \"soon\""),
        "{body}"
    );
    let m = d.metrics();
    assert!(m.contains("canaryd_config_last_reload_successful 0"), "{m}");
    let runs = |m: &str| -> f64 {
        m.lines()
            .find(|l| l.starts_with("canary_check_runs_total{check=\"old\",result=\"success\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let before = runs(&m);
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        runs(&d.metrics()) > before,
        "the old configuration stopped running after a bad reload"
    );

    // A good file that drops `old` and adds `new`: old series disappear.
    write(dir.path(), "checks.yaml", &format!("checks:\n  - name: new\n    interval: 200ms\n    timeout: 150ms\n    tcp: {{target: \"{target}\"}}\n"));
    let (code, body) = http("POST", &addr, "/-/reload");
    assert_eq!((code, body.trim()), (200, "reloaded: 1 checks"));
    let m = d.wait_metric("canary_check_success{check=\"new\"} 1");
    assert!(m.contains("canaryd_config_last_reload_successful 1"));
    assert!(
        !m.contains("check=\"old\""),
        "series of a removed check remain:\n{m}"
    );
    assert!(!m.contains("check=\"web\""));

    let (code, logs) = d.stop();
    assert_eq!(code, 0, "SIGTERM must drain and exit 0:\n{logs}");
    assert!(logs.contains("shutting down"), "{logs}");
    assert!(
        !logs.contains(CANARY),
        "the canary secret leaked into the logs:\n{logs}"
    );
}

#[test]
fn the_canary_secret_appears_in_no_output() {
    let target = target();
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    write(
        dir.path(),
        "canaryd.yaml",
        &format!("listen: {addr}\ncheck_files: [checks.yaml]\n"),
    );
    // The server echoes the token back; the header assertion fails and would show it.
    write(
        dir.path(),
        "checks.yaml",
        &format!(
            "checks:\n  - name: leak\n    interval: 200ms\n    timeout: 150ms\n    http:\n      request:\n        url: \"http://{target}/echo?token=${{env:CANARYD_TEST_TOKEN}}\"\n        headers: {{Authorization: \"${{env:CANARYD_TEST_TOKEN}}\"}}\n      expect: {{body_regex: \"^nothing$\", body_contains: \"{CANARY}-not\"}}\n"
        ),
    );
    let probe = Command::new(BIN)
        .args(["probe", "--config"])
        .arg(dir.path().join("canaryd.yaml"))
        .arg("leak")
        .env("CANARYD_TEST_TOKEN", CANARY)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert_eq!(probe.status.code(), Some(1));
    let probe_out = format!(
        "{}{}",
        String::from_utf8_lossy(&probe.stdout),
        String::from_utf8_lossy(&probe.stderr)
    );
    assert!(probe_out.contains("FAIL"), "{probe_out}");

    let d = Daemon::start(&dir.path().join("canaryd.yaml"), addr.clone());
    let metrics = d.wait_metric("canary_check_success{check=\"leak\"} 0");
    let (_, api) = http("GET", &addr, "/api/v1/checks");
    let (_, logs) = d.stop();
    for (what, text) in [
        ("canaryd probe", &probe_out),
        ("/metrics", &metrics),
        ("/api/v1/checks", &api),
        ("logs at trace level", &logs),
    ] {
        assert!(
            !text.contains(CANARY)
                || text.contains(&format!("{CANARY}-not"))
                    && !text.replace(&format!("{CANARY}-not"), "").contains(CANARY),
            "the canary secret leaked into {what}:\n{text}"
        );
    }
}

#[test]
fn a_real_prometheus_scrapes_canaryd_and_sees_each_checks_success() {
    let Some(prometheus_bin) = services::require("prometheus") else {
        return;
    };
    let _ = prometheus_bin;
    let www = tempfile::tempdir().unwrap();
    write(www.path(), "index.html", "<h1>Demo shop</h1>");
    let Some(nginx) = services::Nginx::start(www.path()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    write(
        dir.path(),
        "canaryd.yaml",
        &format!("listen: {addr}\ncheck_files: [checks.yaml]\n"),
    );
    let refused = format!("127.0.0.1:{}", free_port());
    write(
        dir.path(),
        "checks.yaml",
        &format!(
            "checks:\n  - name: shop\n    interval: 1s\n    timeout: 500ms\n    http:\n      request: {{url: \"{}/\"}}\n      expect: {{body_contains: Demo shop}}\n  - name: db\n    interval: 1s\n    timeout: 500ms\n    tcp: {{target: \"{refused}\"}}\n",
            nginx.url()
        ),
    );
    let d = Daemon::start(&dir.path().join("canaryd.yaml"), addr.clone());
    let Some(prom) = services::Prometheus::start(&[("canaryd", addr.clone())], "1s") else {
        return;
    };
    let has = |want: f64| move |v: &serde_json::Value| services::sample_value(v) == Some(want);
    prom.wait_for(
        "canary_check_success{check=\"shop\"}",
        has(1.0),
        Duration::from_secs(30),
    );
    prom.wait_for(
        "canary_check_success{check=\"db\"}",
        has(0.0),
        Duration::from_secs(30),
    );
    prom.wait_for(
        "canary_check_failures_total{check=\"db\",reason=\"connect\"} > 0",
        |v| services::sample_value(v).is_some(),
        Duration::from_secs(30),
    );
    prom.wait_for(
        "canary_http_phase_duration_seconds{check=\"shop\",step=\"request\",phase=\"connect\"} > 0",
        |v| services::sample_value(v).is_some(),
        Duration::from_secs(30),
    );
    let (code, _) = d.stop();
    assert_eq!(code, 0);
}
