//! Every file in tests/fixtures/regressions/ once crashed, hung or was wrongly accepted. Each
//! starts with `# ` lines saying what it was, a line `# expect: <text>` (what `canaryd check`
//! prints for it, or `ok` for an input that must pass) and any `# env: NAME=value` it needs.
//! `daemon-*.yaml` files are whole canaryd.yaml files; the others are check files, wrapped in a
//! canaryd.yaml whose `check_files` names them.
//!
//! 1. `canaryd check` on each: exit 1 with the expected text (exit 0 for `ok`) within a second.
//! 2. One running daemon receives each file through SIGHUP and through `POST /-/reload`: it
//!    keeps running and answering, a refused reload reads `canaryd_config_last_reload_successful
//!    0`, and its one good check keeps running throughout.

mod services;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use services::{canaryd_run, free_port, http_get, http_post, parse_sample, Canaryd};

const DIR: &str = "tests/fixtures/regressions";
/// How long `canaryd check` may take on one fixture.
const CHECK_BUDGET: Duration = Duration::from_secs(1);

struct Fixture {
    path: PathBuf,
    name: String,
    /// `None` for `# expect: ok`.
    expect: Option<String>,
    env: Vec<(String, String)>,
    /// A whole canaryd.yaml (`daemon-*.yaml`).
    daemon: bool,
}

fn fixtures() -> Vec<Fixture> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(DIR);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let src = std::fs::read_to_string(&path).unwrap();
            let expect = src
                .lines()
                .find_map(|l| l.strip_prefix("# expect: "))
                .unwrap_or_else(|| panic!("{name}: no `# expect: ` line"))
                .trim_end()
                .to_string();
            let env = src
                .lines()
                .filter_map(|l| l.strip_prefix("# env: "))
                .map(|l| {
                    let (k, v) = l
                        .split_once('=')
                        .unwrap_or_else(|| panic!("{name}: `# env: {l}` is not NAME=value"));
                    (k.trim().to_string(), v.to_string())
                })
                .collect();
            Fixture {
                daemon: name.starts_with("daemon-"),
                expect: (expect != "ok").then_some(expect),
                path,
                name,
                env,
            }
        })
        .collect()
}

/// The canaryd.yaml `canaryd check` reads for `f` (a check file is wrapped in one in `dir`).
fn check_config(f: &Fixture, dir: &Path) -> PathBuf {
    if f.daemon {
        return f.path.clone();
    }
    let config = dir.join(format!("canaryd-{}", f.name));
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{}\nstate_dir: {}\ncheck_files: [{:?}]\n",
            free_port(),
            dir.join("state").display(),
            f.path.display().to_string()
        ),
    )
    .unwrap();
    config
}

#[test]
fn canaryd_check_answers_every_regression_fixture_with_its_message_within_a_second() {
    let all = fixtures();
    assert!(!all.is_empty(), "{DIR} holds no fixture");
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for f in &all {
        let config = check_config(f, dir.path());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_canaryd"));
        cmd.args(["check", "--config"])
            .arg(&config)
            .envs(f.env.iter().map(|(k, v)| (k, v)))
            .env("NO_COLOR", "1")
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let began = Instant::now();
        let mut child = cmd.spawn().expect("spawn canaryd check");
        // Read both pipes while waiting, so a large answer cannot block the child.
        let out = std::thread::spawn({
            let mut o = child.stdout.take().unwrap();
            move || {
                let mut s = String::new();
                let _ = std::io::Read::read_to_string(&mut o, &mut s);
                s
            }
        });
        let err = std::thread::spawn({
            let mut e = child.stderr.take().unwrap();
            move || {
                let mut s = String::new();
                let _ = std::io::Read::read_to_string(&mut e, &mut s);
                s
            }
        });
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if began.elapsed() > CHECK_BUDGET * 10 {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let took = began.elapsed();
        let output = format!("{}{}", out.join().unwrap(), err.join().unwrap());
        let shown: String = output.chars().take(2_000).collect();
        let Some(status) = status else {
            failures.push(format!(
                "{}: `canaryd check` still running after {took:?}",
                f.name
            ));
            continue;
        };
        if took > CHECK_BUDGET {
            failures.push(format!("{}: `canaryd check` took {took:?}", f.name));
        }
        match &f.expect {
            None if status.code() != Some(0) => failures.push(format!(
                "{}: must pass, but `canaryd check` ended with {status}:\n{shown}",
                f.name
            )),
            Some(_) if status.code() != Some(1) => failures.push(format!(
                "{}: `canaryd check` must exit 1, it ended with {status}:\n{shown}",
                f.name
            )),
            Some(text) if !output.contains(text.as_str()) => {
                failures.push(format!("{}: the output lacks {text:?}:\n{shown}", f.name))
            }
            _ => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures:\n\n{}",
        failures.len(),
        all.len(),
        failures.join("\n\n")
    );
}

/// One sample's value from a `/metrics` text (the sum over the samples of that name whose labels
/// include `labels`).
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (n, pairs) = parse_sample(line);
        if n != name
            || !labels
                .iter()
                .all(|(k, v)| pairs.iter().any(|(pk, pv)| pk == k && pv == v))
        {
            continue;
        }
        let value: f64 = line.rsplit(' ').next()?.parse().ok()?;
        *found.get_or_insert(0.0) += value;
    }
    found
}

struct Running {
    daemon: Canaryd,
    config: PathBuf,
    slot: PathBuf,
    good_config: String,
}

const GOOD_SLOT: &str = "checks:\n  - name: slot\n    interval: 1s\n    timeout: 500ms\n    tcp: {target: \"127.0.0.1:9\"}\n";

impl Running {
    fn metrics(&self) -> String {
        let r = http_get(&self.daemon.url("/metrics")).expect("GET /metrics");
        assert_eq!(r.status, 200);
        r.text()
    }

    fn reload_metric(&self) -> f64 {
        metric(
            &self.metrics(),
            "canaryd_config_last_reload_successful",
            &[],
        )
        .expect("canaryd_config_last_reload_successful")
    }

    fn reload_time(&self) -> f64 {
        metric(
            &self.metrics(),
            "canaryd_config_last_reload_timestamp_seconds",
            &[],
        )
        .expect("canaryd_config_last_reload_timestamp_seconds")
    }

    fn good_runs(&self) -> f64 {
        metric(
            &self.metrics(),
            "canary_check_runs_total",
            &[("check", "good")],
        )
        .unwrap_or(0.0)
    }

    fn alive(&mut self, what: &str) {
        if let Some(status) = self.daemon.exited() {
            panic!(
                "canaryd died ({status}) {what}:\n{}",
                self.daemon.log_tail(60)
            );
        }
        let r = http_get(&self.daemon.url("/-/healthy"))
            .unwrap_or_else(|e| panic!("/-/healthy {what}: {e}\n{}", self.daemon.log_tail(60)));
        assert_eq!(r.status, 200, "/-/healthy {what}");
    }

    /// Puts the good configuration back and reloads it.
    fn restore(&mut self, what: &str) {
        std::fs::write(&self.config, &self.good_config).unwrap();
        std::fs::write(&self.slot, GOOD_SLOT).unwrap();
        let r = http_post(&self.daemon.url("/-/reload"), "application/json", b"")
            .unwrap_or_else(|e| panic!("POST /-/reload {what}: {e}"));
        assert_eq!(
            (r.status, r.text()),
            (200, "reloaded: 2 checks\n".to_string()),
            "restoring {what}"
        );
        assert_eq!(self.reload_metric(), 1.0, "restoring {what}");
    }

    /// Swaps the fixture in: a check file into the slot, a daemon file over the configuration.
    fn swap_in(&self, f: &Fixture) {
        let src = std::fs::read_to_string(&f.path).unwrap();
        if f.daemon {
            std::fs::write(&self.config, src).unwrap();
        } else {
            std::fs::write(&self.slot, src).unwrap();
        }
    }

    /// SIGHUP, then waits until the daemon has answered it (the reload timestamp moves).
    fn sighup(&mut self, what: &str) {
        let before = self.reload_time();
        let pid = self.daemon.pid().expect("canaryd pid");
        // The timestamp has sub-second resolution, but two reloads may share a clock reading.
        std::thread::sleep(Duration::from_millis(5));
        let status = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -HUP {pid}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.reload_time() == before {
            self.alive(&format!("after SIGHUP with {what}"));
            assert!(
                Instant::now() < deadline,
                "SIGHUP with {what}: no reload within 5 s\n{}",
                self.daemon.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn one_daemon_survives_every_regression_fixture_by_sighup_and_post_reload() {
    let all = fixtures();
    let dir = tempfile::tempdir().unwrap();
    // Relative paths of daemon fixtures (their check files, secret files) resolve in `dir`
    // as they would next to the fixture.
    let fixtures_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(DIR);
    for entry in std::fs::read_dir(&fixtures_dir).unwrap() {
        let p = entry.unwrap().path();
        std::os::unix::fs::symlink(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    // The good check: a TCP connect to a listener that stays open for the whole test.
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let good = dir.path().join("good-checks.yaml");
    std::fs::write(
        &good,
        format!(
            "checks:\n  - name: good\n    interval: 1s\n    timeout: 500ms\n    tcp: {{target: \"{}\"}}\n",
            target.local_addr().unwrap()
        ),
    )
    .unwrap();
    let slot = dir.path().join("slot-checks.yaml");
    std::fs::write(&slot, GOOD_SLOT).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let good_config = format!(
        "listen: {addr}\nstate_dir: {}\ncheck_files: [good-checks.yaml, slot-checks.yaml]\n",
        dir.path().join("state").display()
    );
    let config = dir.path().join("canaryd-under-test.yaml");
    std::fs::write(&config, &good_config).unwrap();
    let env: BTreeMap<&str, &str> = all
        .iter()
        .flat_map(|f| f.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .collect();
    let mut cmd = canaryd_run(&config);
    cmd.envs(env).env("RUST_BACKTRACE", "0");
    let daemon = Canaryd::start(cmd, &addr).expect("canaryd starts on the good configuration");
    let mut d = Running {
        daemon,
        config,
        slot,
        good_config,
    };
    let runs_at_start = d.good_runs();
    // Survival is asserted at once; a wrong verdict is collected, so that one run shows the
    // daemon surviving every file and lists every file it judged wrongly.
    let mut wrong = Vec::new();
    for f in &all {
        let refused = f.expect.is_some();
        let want = if refused { 0.0 } else { 1.0 };
        // SIGHUP.
        d.swap_in(f);
        d.sighup(&f.name);
        d.alive(&format!("after SIGHUP with {}", f.name));
        let got = d.reload_metric();
        if got != want {
            wrong.push(format!(
                "{}: canaryd_config_last_reload_successful {got} after SIGHUP, want {want}",
                f.name
            ));
        }
        d.restore(&f.name);
        // POST /-/reload.
        d.swap_in(f);
        let r = http_post(&d.daemon.url("/-/reload"), "application/json", b"")
            .unwrap_or_else(|e| panic!("POST /-/reload with {}: {e}", f.name));
        let body = r.text();
        d.alive(&format!("after POST /-/reload with {}", f.name));
        let text = f.expect.as_deref().unwrap_or_default();
        let verdict_ok = if refused {
            // Where the expected text names no file, the daemon's message carries it too (the
            // swapped-in copy has the same lines and columns).
            r.status == 400
                && body.contains("reload refused")
                && (text.contains(".yaml") || body.contains(text))
        } else {
            r.status == 200
        };
        if !verdict_ok {
            let shown: String = body.chars().take(500).collect();
            wrong.push(format!(
                "{}: POST /-/reload answered {} {shown:?}",
                f.name, r.status
            ));
        }
        let got = d.reload_metric();
        if got != want {
            wrong.push(format!(
                "{}: canaryd_config_last_reload_successful {got} after POST /-/reload, want {want}",
                f.name
            ));
        }
        d.restore(&f.name);
    }
    // The good check ran all along: at 1 s intervals it has at least two more runs by now
    // (waiting for them if every fixture was quick).
    let deadline = Instant::now() + Duration::from_secs(5);
    while d.good_runs() < runs_at_start + 2.0 {
        d.alive("at the end");
        assert!(
            Instant::now() < deadline,
            "the good check stopped running: {} runs at the start, {} now\n{}",
            runs_at_start,
            d.good_runs(),
            d.daemon.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let checks = http_get(&d.daemon.url("/api/v1/checks")).unwrap().json();
    let names: Vec<&str> = checks["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["good", "slot"]);
    drop(target);
    assert!(
        wrong.is_empty(),
        "the daemon survived every fixture, but judged {} wrongly:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// `interval: 18446744073s 709551616ns` (2^64 ns) once made `POST /-/reload` panic half-way
/// (`canaryd_checks` showed the new count, the API the old configuration, the reload metric
/// stayed 1) and `canaryd run` exit 101. Whether the interval is accepted or refused at load,
/// the daemon now stays up and every view of it agrees.
#[test]
fn a_reload_with_a_2_pow_64_ns_interval_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let good = format!(
        "  - name: good\n    interval: 1s\n    timeout: 500ms\n    tcp: {{target: \"{}\"}}\n",
        target.local_addr().unwrap()
    );
    let huge = "  - name: huge\n    interval: 18446744073s 709551616ns\n    timeout: 1s\n    tcp: {target: \"127.0.0.1:9\"}\n";
    let checks = dir.path().join("checks.yaml");
    std::fs::write(&checks, format!("checks:\n{good}")).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let config = dir.path().join("canaryd.yaml");
    std::fs::write(
        &config,
        format!("listen: {addr}\nstate_dir: state\ncheck_files: [checks.yaml]\n"),
    )
    .unwrap();
    let mut daemon = Canaryd::start(canaryd_run(&config), &addr).unwrap();

    std::fs::write(&checks, format!("checks:\n{good}{huge}")).unwrap();
    let r = http_post(&daemon.url("/-/reload"), "application/json", b"").unwrap();
    let accepted = match r.status {
        200 => true,
        400 => false,
        other => panic!("POST /-/reload: {other} {}", r.text()),
    };
    if let Some(status) = daemon.exited() {
        panic!("canaryd died ({status}):\n{}", daemon.log_tail(40));
    }
    let m = http_get(&daemon.url("/metrics")).unwrap().text();
    let api = http_get(&daemon.url("/api/v1/checks")).unwrap().json();
    let listed = api["checks"].as_array().unwrap().len();
    let want = if accepted { 2 } else { 1 };
    assert_eq!(listed, want, "{}", r.text());
    assert_eq!(metric(&m, "canaryd_checks", &[]), Some(want as f64), "{m}");
    assert_eq!(
        metric(&m, "canaryd_config_last_reload_successful", &[]),
        Some(if accepted { 1.0 } else { 0.0 }),
        "{m}"
    );

    // `canaryd run` on it: refused (exit 1) or running; never 101 or a signal.
    let alone = dir.path().join("alone.yaml");
    let addr2 = format!("127.0.0.1:{}", free_port());
    std::fs::write(dir.path().join("huge.yaml"), format!("checks:\n{huge}")).unwrap();
    std::fs::write(
        &alone,
        format!("listen: {addr2}\nstate_dir: state2\ncheck_files: [huge.yaml]\n"),
    )
    .unwrap();
    let mut child = canaryd_run(&alone)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    match status {
        Some(s) => assert_eq!(s.code(), Some(1), "canaryd run ended with {s}"),
        None => {
            let r = http_get(&format!("http://{addr2}/-/healthy")).unwrap();
            assert_eq!(r.status, 200);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    drop(target);
}
