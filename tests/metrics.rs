//! What a user sees on `/metrics`: families, series lifecycle across reloads, both formats,
//! and the text format checked by the real `promtool`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use canaryd::metrics::{CheckMeta, Format, Metrics};
use canaryd::probe::{CheckResult, Phases, Reason, StepResult};

fn http(name: &str, steps: &[&str]) -> CheckMeta {
    CheckMeta {
        name: name.into(),
        kind: "http",
        steps: steps.iter().map(|s| s.to_string()).collect(),
        labels: vec![("team".into(), "web".into())],
    }
}

fn tcp(name: &str) -> CheckMeta {
    CheckMeta {
        name: name.into(),
        kind: "tcp",
        steps: Vec::new(),
        labels: Vec::new(),
    }
}

const STARTED: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z
const CERT_EXPIRY: u64 = 1_798_761_600; // 2027-01-01T00:00:00Z

fn step(name: &str, status: Option<u16>, success: bool) -> StepResult {
    StepResult {
        name: name.into(),
        success,
        ran: true,
        status,
        duration: Duration::from_millis(120),
        phases: Phases {
            resolve: Duration::from_millis(1),
            connect: Duration::from_millis(2),
            tls: Duration::from_millis(30),
            processing: Duration::from_millis(80),
            transfer: Duration::from_millis(7),
        },
        cert_not_after: status.map(|_| UNIX_EPOCH + Duration::from_secs(CERT_EXPIRY)),
        reason: (!success).then_some(Reason::Status),
        ..StepResult::default()
    }
}

fn skipped(name: &str) -> StepResult {
    StepResult {
        name: name.into(),
        ran: false,
        ..StepResult::default()
    }
}

fn result(success: bool, reason: Option<Reason>, steps: Vec<StepResult>) -> CheckResult {
    CheckResult {
        success,
        reason,
        message: None,
        duration: Duration::from_millis(300),
        started_at: UNIX_EPOCH + Duration::from_secs(STARTED),
        steps,
        observations: Vec::new(),
        detail: None,
        attempts: 1,
    }
}

/// A failing run (step "submit" got 403, "dashboard" skipped), then a passing one.
fn fail_then_pass(m: &Metrics, check: &str) {
    m.observe(
        check,
        &result(
            false,
            Some(Reason::Status),
            vec![
                step("form", Some(200), true),
                step("submit", Some(403), false),
                skipped("dashboard"),
            ],
        ),
    );
    m.observe(
        check,
        &result(
            true,
            None,
            vec![
                step("form", Some(200), true),
                step("submit", Some(302), true),
                step("dashboard", Some(200), true),
            ],
        ),
    );
}

fn populated() -> Metrics {
    let m = Metrics::new();
    m.set_checks(&[http("x", &["form", "submit", "dashboard"]), tcp("db")]);
    m.set_reload(true, UNIX_EPOCH + Duration::from_secs(STARTED));
    m.observe_schedule_lag(Duration::from_micros(700));
    fail_then_pass(&m, "x");
    m.observe(
        "db",
        &CheckResult::failure(
            Reason::Timeout,
            "timed out",
            UNIX_EPOCH + Duration::from_secs(STARTED),
            Duration::from_secs(10),
        ),
    );
    m
}

fn assert_has(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "missing line `{line}` in:\n{text}"
    );
}

#[test]
fn check_and_step_series_after_a_failure_then_a_success() {
    let text = populated().encode(Format::Text);

    assert_has(&text, r#"canary_check_success{check="x"} 1"#);
    assert_has(
        &text,
        r#"canary_check_runs_total{check="x",result="success"} 1"#,
    );
    assert_has(
        &text,
        r#"canary_check_runs_total{check="x",result="failure"} 1"#,
    );
    assert_has(
        &text,
        r#"canary_check_failures_total{check="x",reason="status"} 1"#,
    );
    // Only reasons that occurred have a series.
    assert!(!text.contains(r#"canary_check_failures_total{check="x",reason="dns"}"#));
    assert_has(&text, r#"canary_check_duration_seconds_count{check="x"} 2"#);
    assert_has(
        &text,
        r#"canary_check_duration_seconds_bucket{check="x",le="0.25"} 0"#,
    );
    assert_has(
        &text,
        r#"canary_check_duration_seconds_bucket{check="x",le="0.5"} 2"#,
    );
    assert_has(
        &text,
        r#"canary_check_duration_seconds_bucket{check="x",le="+Inf"} 2"#,
    );
    assert_has(&text, r#"canary_check_duration_seconds_sum{check="x"} 0.6"#);
    assert_has(
        &text,
        r#"canary_check_last_run_timestamp_seconds{check="x"} 1767225600.3"#,
    );

    assert_has(&text, r#"canary_step_success{check="x",step="submit"} 1"#);
    assert_has(
        &text,
        r#"canary_http_status_code{check="x",step="submit"} 302"#,
    );
    assert_has(
        &text,
        r#"canary_http_status_code{check="x",step="dashboard"} 200"#,
    );
    assert_has(
        &text,
        r#"canary_step_duration_seconds_count{check="x",step="form"} 2"#,
    );
    // "dashboard" was skipped by the failing run: it ran once.
    assert_has(
        &text,
        r#"canary_step_duration_seconds_count{check="x",step="dashboard"} 1"#,
    );
    assert_has(
        &text,
        r#"canary_http_phase_duration_seconds{check="x",step="form",phase="tls"} 0.03"#,
    );
    for phase in ["resolve", "connect", "tls", "processing", "transfer"] {
        assert!(text.contains(&format!(
            r#"canary_http_phase_duration_seconds{{check="x",step="submit",phase="{phase}"}} "#
        )));
    }
    assert_has(
        &text,
        r#"canary_tls_cert_expiry_timestamp_seconds{check="x",step="form"} 1798761600.0"#,
    );

    // A tcp check: check series, no step series.
    assert_has(&text, r#"canary_check_success{check="db"} 0"#);
    assert_has(
        &text,
        r#"canary_check_failures_total{check="db",reason="timeout"} 1"#,
    );
    assert!(!text.contains(r#"step_success{check="db""#));

    // Self metrics.
    assert_has(&text, "canaryd_checks 2");
    assert_has(&text, "canaryd_config_last_reload_successful 1");
    assert_has(
        &text,
        "canaryd_config_last_reload_timestamp_seconds 1767225600.0",
    );
    assert_has(
        &text,
        r#"canaryd_schedule_lag_seconds_bucket{le="0.0005"} 0"#,
    );
    assert_has(
        &text,
        r#"canaryd_schedule_lag_seconds_bucket{le="0.001"} 1"#,
    );
    let build = text
        .lines()
        .find(|l| l.starts_with("canaryd_build_info{"))
        .unwrap_or_else(|| panic!("no build info in:\n{text}"));
    assert!(
        build.starts_with(&format!(
            r#"canaryd_build_info{{version="{}",revision=""#,
            env!("CARGO_PKG_VERSION")
        )) && build.contains(",rustversion=\"")
            && build.ends_with("} 1"),
        "{build}"
    );
    // The check's configured labels on its info series.
    assert_has(
        &text,
        r#"canary_check_info{check="x",kind="http",team="web"} 1"#,
    );
    assert_has(&text, r#"canary_check_info{check="db",kind="tcp"} 1"#);
}

#[test]
fn text_format_descriptors() {
    let text = populated().encode(Format::Text);
    assert_has(&text, "# TYPE canary_check_runs_total counter");
    assert_has(&text, "# TYPE canary_check_failures_total counter");
    assert_has(&text, "# TYPE canary_check_duration_seconds histogram");
    assert_has(&text, "# TYPE canary_check_success gauge");
    assert_has(&text, "# TYPE canaryd_build_info gauge");
    assert!(text
        .lines()
        .any(|l| l.starts_with("# HELP canary_check_runs_total ")));
    assert!(!text.contains("# UNIT"), "{text}");
    assert!(!text.contains("# EOF"), "{text}");
    assert!(text.ends_with('\n'));
}

#[test]
fn openmetrics_output() {
    let m = populated();
    let om = m.encode(Format::OpenMetrics);
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert_eq!(om.matches("# EOF").count(), 1);
    assert_has(&om, "# TYPE canary_check_runs counter");
    assert_has(
        &om,
        r#"canary_check_runs_total{check="x",result="success"} 1"#,
    );
    assert_has(&om, "# UNIT canary_check_duration_seconds seconds");
    assert_has(&om, "# TYPE canaryd_build info");
    assert_has(&om, r#"canary_check_success{check="x"} 1"#);

    // Same samples in both formats (but the process's own figures, read at each encoding).
    let samples = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("process_"))
            .map(String::from)
            .collect()
    };
    assert_eq!(samples(&om), samples(&m.encode(Format::Text)));
}

#[test]
fn removing_a_check_removes_all_its_series() {
    let m = Metrics::new();
    m.set_checks(&[
        http("x", &["form", "submit", "dashboard"]),
        http("y", &["request"]),
    ]);
    fail_then_pass(&m, "x");
    m.observe(
        "y",
        &result(true, None, vec![step("request", Some(200), true)]),
    );
    assert!(m.encode(Format::Text).contains(r#"check="x""#));

    m.set_checks(&[http("y", &["request"])]);
    for format in [Format::Text, Format::OpenMetrics] {
        let out = m.encode(format);
        assert!(
            !out.lines().any(|l| l.contains(r#"check="x""#)),
            "series of x left over:\n{out}"
        );
        assert!(out.contains(r#"canary_check_success{check="y"} 1"#));
    }
    assert_has(&m.encode(Format::Text), "canaryd_checks 1");

    // A run that raced the reload is ignored.
    fail_then_pass(&m, "x");
    assert!(!m.encode(Format::Text).contains(r#"check="x""#));
}

#[test]
fn reload_keeps_unchanged_checks_and_remaining_steps() {
    let m = Metrics::new();
    m.set_checks(&[http("x", &["form", "submit", "dashboard"]), tcp("db")]);
    fail_then_pass(&m, "x");
    m.observe("db", &result(true, None, Vec::new()));

    // Same checks: nothing resets.
    m.set_checks(&[http("x", &["form", "submit", "dashboard"]), tcp("db")]);
    let text = m.encode(Format::Text);
    assert_has(
        &text,
        r#"canary_check_runs_total{check="x",result="success"} 1"#,
    );
    assert_has(
        &text,
        r#"canary_check_runs_total{check="db",result="success"} 1"#,
    );

    // A step removed, one added: check counters and the remaining steps carry over.
    m.set_checks(&[http("x", &["form", "submit", "logout"]), tcp("db")]);
    let text = m.encode(Format::Text);
    assert_has(
        &text,
        r#"canary_check_runs_total{check="x",result="failure"} 1"#,
    );
    assert_has(
        &text,
        r#"canary_step_duration_seconds_count{check="x",step="form"} 2"#,
    );
    assert_has(
        &text,
        r#"canary_step_duration_seconds_count{check="x",step="logout"} 0"#,
    );
    assert!(!text.contains(r#"step="dashboard""#), "{text}");
    assert!(!text.contains(r#"canary_step_success{check="x",step="logout"}"#));

    // A check whose kind changed starts afresh.
    m.set_checks(&[
        http("x", &["form", "submit", "logout"]),
        http("db", &["request"]),
    ]);
    let text = m.encode(Format::Text);
    assert_has(
        &text,
        r#"canary_check_runs_total{check="db",result="success"} 0"#,
    );
    assert!(!text.contains(r#"canary_check_success{check="db"}"#));
}

#[test]
fn configured_checks_before_their_first_run() {
    let m = Metrics::new();
    m.set_checks(&[http("fresh", &["request"])]);
    let text = m.encode(Format::Text);
    // Counters and histograms start at zero, so rate() works from the first run ...
    assert_has(
        &text,
        r#"canary_check_runs_total{check="fresh",result="failure"} 0"#,
    );
    assert_has(
        &text,
        r#"canary_check_duration_seconds_count{check="fresh"} 0"#,
    );
    // ... but no gauge claims a verdict that does not exist yet.
    assert!(!text.contains("canary_check_success{"), "{text}");
    assert!(!text.contains("canary_http_status_code{"), "{text}");
    // Families without any series are left out entirely.
    assert!(!text.contains("canary_tls_cert_expiry_timestamp_seconds"));
    assert!(!text.contains("canary_check_failures_total"));
    promtool_accepts(&text);
}

#[test]
fn only_steps_that_ran_change() {
    let m = Metrics::new();
    m.set_checks(&[http("x", &["form", "submit", "dashboard"])]);
    fail_then_pass(&m, "x");
    // "submit" fails before a response: status 0, the certificate seen earlier is kept;
    // "dashboard" does not run and keeps its values.
    let mut no_response = step("submit", None, false);
    no_response.reason = Some(Reason::Connect);
    m.observe(
        "x",
        &result(
            false,
            Some(Reason::Connect),
            vec![
                step("form", Some(200), true),
                no_response,
                skipped("dashboard"),
            ],
        ),
    );
    let text = m.encode(Format::Text);
    assert_has(&text, r#"canary_step_success{check="x",step="submit"} 0"#);
    assert_has(
        &text,
        r#"canary_http_status_code{check="x",step="submit"} 0"#,
    );
    assert_has(
        &text,
        r#"canary_tls_cert_expiry_timestamp_seconds{check="x",step="submit"} 1798761600.0"#,
    );
    assert_has(
        &text,
        r#"canary_step_success{check="x",step="dashboard"} 1"#,
    );
    assert_has(
        &text,
        r#"canary_http_status_code{check="x",step="dashboard"} 200"#,
    );
    assert_has(
        &text,
        r#"canary_check_failures_total{check="x",reason="connect"} 1"#,
    );

    // A response without a certificate (the target went plain HTTP): the series goes.
    let mut plain = step("form", Some(200), true);
    plain.cert_not_after = None;
    m.observe("x", &result(true, None, vec![plain]));
    let text = m.encode(Format::Text);
    assert!(!text.contains(r#"canary_tls_cert_expiry_timestamp_seconds{check="x",step="form"}"#));
}

#[test]
fn label_values_are_escaped() {
    let m = Metrics::new();
    let name = "say \"hi\"\\now";
    m.set_checks(&[http("x", &[name])]);
    m.observe("x", &result(true, None, vec![step(name, Some(200), true)]));
    let text = m.encode(Format::Text);
    assert_has(
        &text,
        r#"canary_step_success{check="x",step="say \"hi\"\\now"} 1"#,
    );
    promtool_accepts(&text);
}

#[test]
fn format_negotiation() {
    let prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
    assert_eq!(Format::negotiate(Some("text/plain")), Format::Text);
    assert_eq!(Format::negotiate(None), Format::Text);
    assert_eq!(
        Format::OpenMetrics.content_type(),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert_eq!(
        Format::Text.content_type(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
}

#[test]
fn metrics_is_send_and_sync() {
    fn shared<T: Send + Sync + 'static>() {}
    shared::<Metrics>();
}

#[test]
fn concurrent_observe_reload_and_encode() {
    let m = Metrics::new();
    let all: Vec<CheckMeta> = (0..50)
        .map(|i| http(&format!("c{i}"), &["request"]))
        .collect();
    m.set_checks(&all);
    std::thread::scope(|s| {
        for t in 0..4 {
            let (m, all) = (&m, &all);
            s.spawn(move || {
                for i in 0..2000 {
                    let ok = (i + t) % 3 != 0;
                    let reason = (!ok).then_some(Reason::Status);
                    m.observe(
                        &all[i % all.len()].name,
                        &result(ok, reason, vec![step("request", Some(200), ok)]),
                    );
                }
            });
        }
        s.spawn(|| {
            for i in 0..50 {
                m.set_checks(&all[..if i % 2 == 0 { 50 } else { 25 }]);
                let _ = m.encode(Format::OpenMetrics);
            }
        });
    });
    m.set_checks(&all);
    let text = m.encode(Format::Text);
    // Histogram counts always equal their +Inf bucket.
    for check in &all {
        let count = format!(
            r#"canary_check_duration_seconds_count{{check="{}"}} "#,
            check.name
        );
        let inf = format!(
            r#"canary_check_duration_seconds_bucket{{check="{}",le="+Inf"}} "#,
            check.name
        );
        let value = |prefix: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .map(str::to_owned)
        };
        assert_eq!(value(&count), value(&inf));
    }
    promtool_accepts(&text);
}

#[test]
fn promtool_accepts_the_text_format() {
    promtool_accepts(&populated().encode(Format::Text));
    // An empty registry too.
    promtool_accepts(&Metrics::new().encode(Format::Text));
}

/// Runs `promtool check metrics` (parse and lint) on `text`. Without promtool the test fails
/// under `CI=true` and is skipped with a message otherwise.
fn promtool_accepts(text: &str) {
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "/usr/bin/promtool".into());
    let child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "CI=true and promtool ({promtool}) cannot run: {e}; install the prometheus package"
            )
        }
        Err(e) => {
            eprintln!(
                "SKIPPED: promtool ({promtool}) cannot run: {e}; install the prometheus package"
            );
            return;
        }
    };
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = text.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("promtool runs");
    writer
        .join()
        .expect("writer thread")
        .expect("write to promtool");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim().is_empty() && stderr.trim().is_empty(),
        "promtool check metrics rejected the output ({}):\n{stdout}{stderr}\n--- input ---\n{text}",
        out.status
    );
}

/// A real Prometheus scrapes both formats from a tiny HTTP server: both targets must be up
/// (Prometheus parsed every line: its OpenMetrics parser is the strict one) with the same
/// number of samples. Without Prometheus the test fails under `CI=true` and is skipped
/// otherwise.
#[test]
fn prometheus_scrapes_both_formats() {
    use std::io::{BufRead, BufReader, Read};
    use std::net::{TcpListener, TcpStream};

    let prometheus = std::env::var("PROMETHEUS").unwrap_or_else(|_| "/usr/bin/prometheus".into());
    if !std::path::Path::new(&prometheus).exists() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true and {prometheus} is missing; install the prometheus package");
        }
        eprintln!("SKIPPED: {prometheus} is missing; install the prometheus package");
        return;
    }

    let m = populated();
    let bodies = [
        ("/text", Format::Text, m.encode(Format::Text)),
        ("/om", Format::OpenMetrics, m.encode(Format::OpenMetrics)),
    ];
    let target = TcpListener::bind("127.0.0.1:0").expect("bind");
    let target_addr = target.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in target.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = request_line.split(' ').nth(1).unwrap_or_default();
            let Some((_, format, body)) = bodies.iter().find(|(p, _, _)| *p == path) else {
                let _ = stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                continue;
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                format.content_type(),
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body.as_bytes());
        }
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let web = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\n\
             scrape_configs:\n\
             - {{job_name: text, metrics_path: /text, static_configs: [{{targets: ['{target_addr}']}}]}}\n\
             - {{job_name: om, metrics_path: /om, static_configs: [{{targets: ['{target_addr}']}}]}}\n"
        ),
    )
    .expect("write config");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Kill(
        Command::new(&prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );

    let get = |path: &str| -> Option<serde_json::Value> {
        let mut s = TcpStream::connect(web).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {web}\r\n\r\n").ok()?;
        let mut response = String::new();
        s.read_to_string(&mut response).ok()?;
        serde_json::from_str(response.split_once("\r\n\r\n")?.1).ok()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut last = None;
    while std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        let Some(targets) = get("/api/v1/targets") else {
            continue;
        };
        let active = targets["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let scraped = active.len() == 2 && active.iter().all(|t| t["health"] != "unknown");
        last = Some(targets);
        if !scraped {
            continue;
        }
        for t in &active {
            assert_eq!(
                t["health"], "up",
                "{} format rejected by Prometheus: {}",
                t["labels"]["job"], t["lastError"]
            );
        }
        let Some(samples) = get("/api/v1/query?query=scrape_samples_scraped") else {
            continue;
        };
        let counts: Vec<(String, String)> = samples["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|r| (r["metric"]["job"].to_string(), r["value"][1].to_string()))
            .collect();
        if counts.len() < 2 {
            continue;
        }
        assert_eq!(counts[0].1, counts[1].1, "sample counts differ: {counts:?}");
        return;
    }
    panic!("Prometheus did not scrape both targets in 30 s; last /api/v1/targets: {last:?}");
}

#[test]
fn quick_retries_are_counted_from_configuration_on() {
    let m = Metrics::new();
    m.set_checks(&[tcp("db"), tcp("api")]);
    let text = m.encode(Format::Text);
    assert_has(&text, r#"canary_check_retries_total{check="db"} 0"#);
    // Passed on the third attempt, then failed after two retries, then passed at once.
    let mut passed_on_retry = result(true, None, Vec::new());
    passed_on_retry.attempts = 3;
    m.observe("db", &passed_on_retry);
    let mut failed = result(false, Some(Reason::Connect), Vec::new());
    failed.attempts = 3;
    m.observe("db", &failed);
    m.observe("db", &result(true, None, Vec::new()));
    let text = m.encode(Format::Text);
    assert_has(&text, r#"canary_check_retries_total{check="db"} 4"#);
    assert_has(&text, r#"canary_check_retries_total{check="api"} 0"#);
    // The run that passed on a retry counts as a success.
    assert_has(
        &text,
        r#"canary_check_runs_total{check="db",result="success"} 2"#,
    );
    let om = m.encode(Format::OpenMetrics);
    assert_has(&om, "# TYPE canary_check_retries counter");
    assert_has(&om, r#"canary_check_retries_total{check="db"} 4"#);
}

#[test]
fn a_one_step_check_exports_one_duration_histogram_unless_every_step_is_asked_for() {
    let series_of = |every_step: bool| {
        let m = Metrics::new();
        m.set_step_histograms(every_step);
        m.set_checks(&[
            http("one", &["request"]),
            http("x", &["form", "submit", "dashboard"]),
        ]);
        m.observe(
            "one",
            &result(true, None, vec![step("request", Some(200), true)]),
        );
        fail_then_pass(&m, "x");
        m.encode(Format::Text)
    };
    let text = series_of(false);
    let one: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(r#"check="one""#))
        .collect();
    assert!(
        !text.contains(r#"canary_step_duration_seconds_count{check="one""#),
        "{text}"
    );
    assert_has(
        &text,
        r#"canary_check_duration_seconds_count{check="one"} 1"#,
    );
    assert_has(
        &text,
        r#"canary_step_duration_seconds_count{check="x",step="form"} 2"#,
    );
    // The documented count for a passing one-step http check (plain HTTP, no certificate).
    assert_eq!(one.len(), 28, "{}", one.join("\n"));

    let text = series_of(true);
    assert_has(
        &text,
        r#"canary_step_duration_seconds_count{check="one",step="request"} 1"#,
    );
}
