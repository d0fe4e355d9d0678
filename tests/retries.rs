//! Quick retries end to end: the real daemon probes two targets that each fail one request in
//! three. The check without `retries:` pages (through a webhook receiver); the check with
//! `retries: {count: 2, delay: 200ms}` passes every run, pages nothing, and
//! `canary_check_retries_total` counts its retries.

mod receivers;
mod services;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use receivers::Webhook;
use serde_json::Value;
use services::{canaryd_run, free_port, http_get, parse_sample, Canaryd};

/// A target whose every third request answers 500 (requests 3, 6, 9, … or, with `first`,
/// requests 1, 4, 7, …), counting both.
struct Flaky {
    addr: String,
    served: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl Flaky {
    fn start() -> Flaky {
        Flaky::failing(0)
    }

    /// Request `n` fails when `n % 3 == phase`.
    fn failing(phase: u64) -> Flaky {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let served = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (s, f) = (served.clone(), failed.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let n = s.fetch_add(1, Ordering::SeqCst) + 1;
                let (status, body) = if n % 3 == phase {
                    f.fetch_add(1, Ordering::SeqCst);
                    ("500 Internal Server Error", "dropped")
                } else {
                    ("200 OK", "ok")
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Flaky {
            addr,
            served,
            failed,
        }
    }
}

fn write_setup(dir: &Path, port: u16, plain: &Flaky, retried: &Flaky, hook: &Webhook) {
    std::fs::write(
        dir.join("canaryd.yaml"),
        format!(
            "listen: 127.0.0.1:{port}\nstate_dir: state\ncheck_files: [checks.yaml]\n\
             receivers:\n  - name: hook\n    webhook: {{url: \"{}\"}}\nroutes:\n  - receivers: [hook]\n",
            hook.url()
        ),
    )
    .unwrap();
    // `when: failed` pages on the first failed run: one dropped request is enough without
    // retries. Worst case with retries: 3 × 500ms + 2 × 200ms = 1.9s, inside the 2s interval
    // (timeouts generous for a loaded CI machine: only the target's 500s should fail attempts).
    let rule = "    alerts:\n      - {name: Flaky, when: failed}\n";
    std::fs::write(
        dir.join("checks.yaml"),
        format!(
            "checks:\n\
             \x20 - name: flaky-plain\n    interval: 2s\n    timeout: 500ms\n    http:\n      request: {{url: \"http://{}/\"}}\n{rule}\
             \x20 - name: flaky-retried\n    interval: 2s\n    timeout: 500ms\n    retries: {{count: 2, delay: 200ms}}\n    http:\n      request: {{url: \"http://{}/\"}}\n{rule}",
            plain.addr, retried.addr
        ),
    )
    .unwrap();
}

/// The value of the sample `name{check="<check>", extra…}` in a text exposition.
fn sample(metrics: &str, name: &str, check: &str, extra: &[(&str, &str)]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (n, labels) = parse_sample(l);
            let wanted = n == name
                && labels.iter().any(|(k, v)| k == "check" && v == check)
                && extra
                    .iter()
                    .all(|(ek, ev)| labels.iter().any(|(k, v)| k == ek && v == ev));
            wanted.then(|| l.rsplit(' ').next()?.parse().ok()).flatten()
        })
}

fn pages_for(hook: &Webhook, check: &str) -> Vec<Value> {
    hook.accepted()
        .iter()
        .filter_map(|r| r.json())
        .flat_map(|v| v["events"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["check"] == check && e["kind"] == "trigger")
        .collect()
}

#[test]
fn a_target_failing_one_request_in_three_pages_without_retries_and_passes_with_them() {
    let plain = Flaky::start();
    let retried = Flaky::start();
    let hook = Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    write_setup(dir.path(), port, &plain, &retried, &hook);
    let mut cmd = canaryd_run(&dir.path().join("canaryd.yaml"));
    cmd.current_dir(dir.path());
    let daemon = Canaryd::start(cmd, &format!("127.0.0.1:{port}")).unwrap();
    let metrics = || {
        http_get(&daemon.url("/metrics"))
            .map(|r| r.text())
            .unwrap_or_default()
    };

    // Six runs of the retried check see at least two dropped requests (requests 3 and 6 of
    // its target are 500s, whatever the interleaving of runs and retries).
    let started = Instant::now();
    loop {
        let m = metrics();
        let ok = sample(
            &m,
            "canary_check_runs_total",
            "flaky-retried",
            &[("result", "success")],
        );
        if ok.is_some_and(|n| n >= 6.0) && !pages_for(&hook, "flaky-plain").is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "waited 40s for 6 runs and a page:\n{m}\npages: {:?}",
            hook.accepted().len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let m = metrics();

    // Without retries: a dropped request fails the run and pages.
    let page = &pages_for(&hook, "flaky-plain")[0];
    assert_eq!(page["alert"], "Flaky", "{page}");
    assert!(
        sample(
            &m,
            "canary_check_runs_total",
            "flaky-plain",
            &[("result", "failure")]
        )
        .is_some_and(|n| n >= 1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "canary_check_retries_total", "flaky-plain", &[]),
        Some(0.0),
        "{m}"
    );

    // With retries: every run passed, nothing paged, and every dropped request was retried.
    assert_eq!(
        sample(
            &m,
            "canary_check_runs_total",
            "flaky-retried",
            &[("result", "failure")]
        ),
        Some(0.0),
        "{m}"
    );
    assert!(
        pages_for(&hook, "flaky-retried").is_empty(),
        "the retried check paged: {:?}",
        pages_for(&hook, "flaky-retried")
    );
    let retries = sample(&m, "canary_check_retries_total", "flaky-retried", &[]).unwrap();
    // Read between runs or during a retry's delay: the last dropped request may still await
    // its retry.
    let dropped = retried.failed.load(Ordering::SeqCst) as f64;
    assert!(retries >= 2.0, "{m}");
    assert!(
        retries == dropped || retries + 1.0 == dropped,
        "retries {retries}, dropped requests {dropped}, served {}",
        retried.served.load(Ordering::SeqCst)
    );

    // The API says how many attempts the last run took.
    let checks = http_get(&daemon.url("/api/v1/checks")).unwrap().json();
    let last = checks["checks"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "flaky-retried"))
        .map(|c| c["last_result"]["attempts"].clone());
    assert!(
        last.as_ref()
            .and_then(Value::as_u64)
            .is_some_and(|n| (1..=2).contains(&n)),
        "{checks}"
    );
}

#[test]
fn canaryd_probe_says_a_run_passed_on_a_retry() {
    // The first request fails, the retry passes.
    let target = Flaky::failing(1);
    let hook = Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    write_setup(dir.path(), free_port(), &target, &target, &hook);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .args(["probe", "--config"])
        .arg(dir.path().join("canaryd.yaml"))
        .arg("flaky-retried")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains(" on attempt 2 (after 1 quick retry)") && stdout.contains("PASS in "),
        "{stdout}"
    );
    assert_eq!(target.served.load(Ordering::SeqCst), 2);
    assert_eq!(target.failed.load(Ordering::SeqCst), 1);
}
