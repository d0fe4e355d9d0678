//! The demo (`cargo run --release --example demo`) as a newcomer sees it, on free ports: every
//! demo check passes; then `/control?break_login=1` makes `demo-login` fail at step "submit",
//! naming the page that came back, `/control?stall_worker=1` makes `demo-jobs-canary` fail
//! `not_picked_up`, `/control?fail_jobs=1` makes it fail `job_failed` while JobsStalled stays
//! quiet (failed jobs count as processed), and `/control?stall_worker=1` makes `demo-jobs` report
//! `depth > 0 && processed_rate == 0` (its JobsStalled rule) while the oldest job ages — all read
//! from canaryd's `/api/v1/checks`, with bounded polling. The demo's pager (`/pager`, canaryd's
//! signed webhook receiver) gets the LoginFailing and JobsStalled pages, then their resolves.
//!
//! The demo's own modules are compiled into this test with `#[path]` and started through the
//! same `launch::start` as the example's `main`, with port 0 for both listeners. Without
//! redis-server the queue part is skipped, except under `CI=true`, where it fails.

mod services;

#[path = "../examples/demo/app.rs"]
mod app;
#[path = "../examples/demo/jobs.rs"]
mod jobs;
#[path = "../examples/demo/launch.rs"]
mod launch;
#[path = "status/page.rs"]
mod page;
#[path = "../examples/demo/pager.rs"]
mod pager;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Polls `done` every 100 ms until it holds, for at most `timeout`.
fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every check's entry in `/api/v1/checks`.
fn checks(demo: &launch::Demo) -> Vec<Value> {
    let url = format!("http://{}/api/v1/checks", demo.canaryd);
    let response = services::http_get(&url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    response.json()["checks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The last result of check `name`, once it has run.
fn last<'a>(checks: &'a [Value], name: &str) -> Option<&'a Value> {
    checks
        .iter()
        .find(|c| c["name"] == name)
        .map(|c| &c["last_result"])
        .filter(|r| !r.is_null())
}

/// An alert variable of check `name`'s last result.
fn variable(checks: &[Value], name: &str, var: &str) -> Option<f64> {
    last(checks, name)?["variables"][var].as_f64()
}

/// Polls `/api/v1/checks` until `done` holds; past `within`, fails with the demo's status print.
fn wait_until(
    demo: &launch::Demo,
    what: &str,
    within: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let checks = checks(demo);
        if done(&checks) {
            return checks;
        }
        assert!(
            start.elapsed() < within,
            "{what}: not within {within:?}\n{}",
            demo.status()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn control(demo: &launch::Demo, query: &str) -> String {
    let url = format!("http://{}/control?{query}", demo.app);
    services::http_get(&url)
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
}

/// A runtime and the demo on free ports (every listener on port 0), as `main` starts it.
fn start_demo() -> (tokio::runtime::Runtime, launch::Demo) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    let demo = rt
        .block_on(launch::start(launch::Options {
            app: any_port,
            canaryd: any_port,
            status: any_port,
        }))
        .unwrap_or_else(|e| panic!("the demo did not start: {e}"));
    (rt, demo)
}

#[test]
fn demo_checks_pass_until_the_login_breaks_and_the_worker_stalls() {
    let (rt, demo) = start_demo();
    let with_jobs = match &demo.jobs {
        Ok(_) => true,
        Err(why) if services::under_ci() => panic!("CI=true: the demo's job queue: {why}"),
        Err(why) => {
            eprintln!("SKIPPED (queue part): {why}");
            false
        }
    };
    let banner = demo.banner();
    assert!(
        banner.contains("control?break_login=1") && banner.contains("control?stall_worker=1"),
        "{banner}"
    );

    let mut expected = vec![
        "demo-home",
        "demo-identity",
        "demo-login",
        "demo-port",
        "demo-login-totp",
        "demo-api",
    ];
    if with_jobs {
        expected.push("demo-jobs");
        expected.push("demo-jobs-canary");
    }
    let configured: Vec<String> = demo
        .daemon
        .config()
        .checks
        .iter()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(configured, expected);

    // Healthy: every check passes (the TOTP code is accepted, the bearer token works) and the
    // worker keeps up with the producer. demo-port runs every 10 s, the longest interval.
    wait_until(
        &demo,
        "every demo check passes",
        Duration::from_secs(25),
        |c| {
            expected
                .iter()
                .all(|n| last(c, n).is_some_and(|r| r["success"] == true))
                && (!with_jobs || variable(c, "demo-jobs", "processed_rate") > Some(0.0))
        },
    );

    // A deploy that rejects every password, and a worker that hangs, at once.
    let reply = control(&demo, "break_login=1&stall_worker=1");
    assert!(
        reply.contains("break_login=true stall_worker=true"),
        "{reply}"
    );

    let c = wait_until(&demo, "demo-login fails", Duration::from_secs(15), |c| {
        last(c, "demo-login").is_some_and(|r| r["success"] == false)
    });
    let login = last(&c, "demo-login").unwrap();
    let failed: Vec<&Value> = login["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["ran"] == true && s["success"] == false)
        .map(|s| &s["name"])
        .collect();
    assert_eq!(failed, ["submit"], "{login:#}");
    assert_eq!(login["reason"], "status");
    let message = login["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "step \"submit\": expected status 302, got 200; \
             body contains \"Please enter a correct username and password\""
        ),
        "{message}"
    );
    assert!(!message.contains(app::PASSWORD), "{message}");

    if with_jobs {
        let stalled = |c: &[Value]| {
            variable(c, "demo-jobs", "depth") > Some(0.0)
                && variable(c, "demo-jobs", "processed_rate") == Some(0.0)
        };
        let c = wait_until(
            &demo,
            "demo-jobs shows depth > 0 && processed_rate == 0",
            Duration::from_secs(15),
            stalled,
        );
        let jobs = last(&c, "demo-jobs").unwrap();
        assert_eq!(jobs["success"], true, "a stalled queue still reads fine");
        assert_eq!(
            jobs["variables"]["workers"], 1.0,
            "the hung worker still beats"
        );
        let age = variable(&c, "demo-jobs", "oldest_age").unwrap_or(0.0);
        wait_until(&demo, "the oldest job ages", Duration::from_secs(10), |c| {
            stalled(c) && variable(c, "demo-jobs", "oldest_age") > Some(age)
        });
        let status = demo.status();
        let line = status.lines().find(|l| l.contains("demo-jobs")).unwrap();
        assert!(line.contains("[when true: JobsStalled]"), "{status}");
        // The canary on the same queue: not picked up within its 5 s.
        let c = wait_until(
            &demo,
            "demo-jobs-canary fails not_picked_up",
            Duration::from_secs(20),
            |c| last(c, "demo-jobs-canary").is_some_and(|r| r["reason"] == "not_picked_up"),
        );
        let canary = last(&c, "demo-jobs-canary").unwrap();
        assert_eq!(canary["canary"]["stage"], "waiting", "{canary:#}");
    }

    // The demo's pager got the pages, signed, seconds after the evidence.
    let paged = |check: &str, alert: &str, status: &str| {
        demo.pager.pages().iter().any(|p| {
            p.event["check"] == check && p.event["alert"] == alert && p.event["status"] == status
        })
    };
    wait_for("the LoginFailing page", Duration::from_secs(30), || {
        paged("demo-login", "LoginFailing", "firing")
    });
    if with_jobs {
        wait_for("the JobsStalled page", Duration::from_secs(40), || {
            paged("demo-jobs", "JobsStalled", "firing")
        });
    }
    let page = services::http_get(&format!("http://{}/pager", demo.app))
        .unwrap()
        .text();
    assert!(
        page.contains("LoginFailing") && page.contains("demo-login"),
        "{page}"
    );

    let reply = control(&demo, "reset");
    assert!(
        reply.contains("break_login=false stall_worker=false"),
        "{reply}"
    );
    wait_for("the LoginFailing resolve", Duration::from_secs(30), || {
        paged("demo-login", "LoginFailing", "resolved")
    });
    if with_jobs {
        wait_for("the JobsStalled resolve", Duration::from_secs(40), || {
            paged("demo-jobs", "JobsStalled", "resolved")
        });
    }
    if with_jobs {
        // The worker takes every job and fails it (seed incident 5): jobs are processed, as
        // failures, so JobsStalled stays quiet; the canary fails with the worker's error.
        wait_until(
            &demo,
            "the canary passes again",
            Duration::from_secs(20),
            |c| last(c, "demo-jobs-canary").is_some_and(|r| r["success"] == true),
        );
        let reply = control(&demo, "fail_jobs=1");
        assert!(reply.contains("fail_jobs=true"), "{reply}");
        let c = wait_until(
            &demo,
            "demo-jobs-canary fails job_failed",
            Duration::from_secs(20),
            |c| last(c, "demo-jobs-canary").is_some_and(|r| r["reason"] == "job_failed"),
        );
        let canary = last(&c, "demo-jobs-canary").unwrap();
        assert!(
            canary["message"]
                .as_str()
                .is_some_and(|m| m.contains("instrumentation")),
            "the worker's error: {canary:#}"
        );
        assert!(
            variable(&c, "demo-jobs", "processed_rate") > Some(0.0),
            "failing jobs count as processed: {:#}",
            last(&c, "demo-jobs").unwrap()
        );
        let stalled = demo
            .daemon
            .alerting
            .views()
            .into_iter()
            .find(|v| v.check == "demo-jobs" && v.alert == "JobsStalled")
            .unwrap();
        assert_ne!(
            stalled.state.as_str(),
            "firing",
            "JobsStalled cannot see failing jobs"
        );
        wait_for("the canary's page", Duration::from_secs(30), || {
            paged("demo-jobs-canary", "JobsNotRunning", "firing")
        });
        control(&demo, "reset");
        wait_until(
            &demo,
            "the canary passes after the reset",
            Duration::from_secs(20),
            |c| last(c, "demo-jobs-canary").is_some_and(|r| r["success"] == true),
        );
    }
    for p in demo.pager.pages() {
        assert!(!p.event.to_string().contains(app::PASSWORD));
    }
    rt.block_on(demo.stop());
}

/// The demo's public status page as a customer sees it, in headless Chromium: every component
/// operational; breaking the login turns "Sign-in" to major outage and opens an incident within
/// one interval (5 s) plus a second; `reset` resolves it. At 1280 and 375 px, with no console
/// error, no serious accessibility violation, no sideways scrolling; screenshots under
/// `target/test-artefacts/demo-status/`.
#[test]
fn the_demo_status_page_shows_customers_a_broken_login_and_its_incident() {
    let (rt, demo) = start_demo();
    let status = format!("http://{}", demo.status);
    assert!(
        demo.banner()
            .contains(&format!("status page      {status}/")),
        "the banner prints the status page's address:\n{}",
        demo.banner()
    );
    let summary = || {
        services::http_get(&format!("{status}/api/v2/summary.json"))
            .unwrap()
            .json()
    };
    let sign_in = |s: &Value| {
        s["components"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == "Sign-in"))
            .map(|c| c["status"].as_str().unwrap_or("").to_string())
    };
    // Both logins have passed once: the page is all green.
    wait_until(&demo, "both logins pass", Duration::from_secs(30), |c| {
        ["demo-login", "demo-login-totp"]
            .iter()
            .all(|n| last(c, n).is_some_and(|r| r["success"] == true))
    });
    wait_for("Sign-in operational", Duration::from_secs(5), || {
        sign_in(&summary()).as_deref() == Some("operational")
    });
    let Some(report) = page::check_page(&format!("{status}/"), "demo-status") else {
        assert!(
            !services::under_ci(),
            "CI=true: node and chromium are needed"
        );
        return;
    };
    assert_eq!(report.faults(&[]), Vec::<String>::new(), "{report:#?}");
    let v = report.at(375);
    assert_eq!(v.title, "Demo shop status");
    let names: Vec<&str> = v
        .components
        .iter()
        .filter_map(|c| c.name.as_deref())
        .collect();
    assert_eq!(&names[..3], ["Website", "Sign-in", "API"], "{names:?}");
    let login = v
        .components
        .iter()
        .find(|c| c.name.as_deref() == Some("Sign-in"))
        .unwrap();
    assert_eq!(login.status.as_deref(), Some("Operational"));
    assert_eq!(login.days, 90);
    assert!(v.incidents.is_empty(), "{:?}", v.incidents);
    for private in ["demo-login", "127.0.0.1", "LoginFailing", app::PASSWORD] {
        assert!(
            !v.text.contains(private),
            "the page shows {private:?}:\n{}",
            v.text
        );
    }

    // Broken: within one interval plus a second, the component is in major outage and the
    // incident is open (0.5 s more for the scheduler and this poll).
    control(&demo, "break_login=1");
    let broke = Instant::now();
    wait_for(
        "Sign-in major outage with an open incident",
        Duration::from_secs(15),
        || {
            let s = summary();
            sign_in(&s).as_deref() == Some("major_outage")
                && s["incidents"].as_array().is_some_and(|i| !i.is_empty())
        },
    );
    let took = broke.elapsed();
    assert!(
        took <= Duration::from_millis(6500),
        "outage and incident after {took:?}: more than one interval (5 s) plus a second"
    );
    let report = page::check_page(&format!("{status}/"), "demo-status-outage").unwrap();
    assert_eq!(report.faults(&[]), Vec::<String>::new(), "{report:#?}");
    for width in [1280, 375] {
        let v = report.at(width);
        assert_eq!(v.banner.as_deref(), Some("Major System Outage"));
        let login = v
            .components
            .iter()
            .find(|c| c.name.as_deref() == Some("Sign-in"))
            .unwrap();
        assert_eq!(login.status.as_deref(), Some("Major outage"));
        let open = &v.incidents[0];
        assert_eq!(open.title.as_deref(), Some("Customers cannot sign in"));
        assert_eq!(open.state.as_deref(), Some("Investigating"));
        assert_eq!(
            open.body.as_deref(),
            Some("We are investigating reports that customers cannot sign in.")
        );
        for private in [
            "demo-login",
            "submit",
            "Please enter a correct",
            "127.0.0.1",
        ] {
            assert!(
                !v.text.contains(private),
                "the page shows {private:?}:\n{}",
                v.text
            );
        }
    }

    // Reset: the next passing runs resolve it; it stays on the page as a past incident.
    control(&demo, "reset");
    wait_for("the incident resolved", Duration::from_secs(15), || {
        let s = summary();
        sign_in(&s).as_deref() == Some("operational")
            && s["incidents"].as_array().is_some_and(|i| i.is_empty())
    });
    let report = page::check_page(&format!("{status}/"), "demo-status-resolved").unwrap();
    assert_eq!(report.faults(&[]), Vec::<String>::new(), "{report:#?}");
    let v = report.at(1280);
    let past = v
        .incidents
        .iter()
        .find(|i| i.title.as_deref() == Some("Customers cannot sign in"))
        .unwrap_or_else(|| panic!("no past incident: {:?}", v.incidents));
    assert_eq!(past.state.as_deref(), Some("Resolved"));
    assert_eq!(past.body.as_deref(), Some("Signing in works again."));
    rt.block_on(demo.stop());
}

/// `canaryd test --all --junit` on `checks/demo.yaml` against the running demo, read by a real
/// JUnit consumer (junitparser from PyPI, as CI systems read reports): every check passes and
/// the exit code is 0; after `control?fail=1` the exit code is 1 and the failing checks are
/// named in the report with their reason.
#[test]
fn canaryd_test_reports_the_demo_checks_as_junit() {
    let (rt, demo) = start_demo();
    let dir = tempfile::tempdir().unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let checks = std::fs::read_to_string(repo.join("checks/demo.yaml"))
        .unwrap()
        .replace(launch::DEFAULT_APP, &demo.app.to_string());
    std::fs::write(dir.path().join("demo.yaml"), checks).unwrap();
    std::fs::write(
        dir.path().join("canaryd.yaml"),
        "check_files: [demo.yaml]\n",
    )
    .unwrap();
    let report = dir.path().join("out.xml");
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_canaryd"))
            .args(["test", "--all", "--junit"])
            .arg(&report)
            .arg("--config")
            .arg(dir.path().join("canaryd.yaml"))
            .env("DEMO_PASSWORD", app::PASSWORD)
            .output()
            .unwrap()
    };
    let Some(python) = services::venv_python() else {
        assert!(
            !services::under_ci(),
            "CI=true: the venv (scripts/setup) is needed"
        );
        return;
    };
    // The report as junitparser reads it: suite totals, then name, result and message per case.
    let read = || {
        let out = std::process::Command::new(&python)
            .arg("-c")
            .arg(
                "import sys, junitparser\n\
                 xml = junitparser.JUnitXml.fromfile(sys.argv[1])\n\
                 for suite in xml:\n\
                 \x20   print('suite', suite.name, suite.tests, suite.failures, suite.errors)\n\
                 \x20   for case in suite:\n\
                 \x20       r = case.result\n\
                 \x20       print('case', case.classname, case.name, 'fail' if r else 'pass', (r[0].type + ' ' + r[0].message) if r else '')\n",
            )
            .arg(&report)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("4 checks: 4 passed, 0 failed"), "{stdout}");
    let seen = read();
    assert!(seen.contains("suite canaryd 4 0 0"), "{seen}");
    for case in [
        "case canaryd.http demo-home pass",
        "case canaryd.http demo-identity pass",
        "case canaryd.http demo-login pass",
        "case canaryd.tcp demo-port pass",
    ] {
        assert!(seen.contains(case), "{case} missing:\n{seen}");
    }
    assert!(!std::fs::read_to_string(&report)
        .unwrap()
        .contains(app::PASSWORD));

    control(&demo, "fail=1");
    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL  demo-login (http)"), "{stdout}");
    let seen = read();
    assert!(seen.contains("suite canaryd 4 3 0"), "{seen}");
    assert!(
        seen.contains("case canaryd.http demo-login fail status status: step \"form\": expected status 200, got 500"),
        "{seen}"
    );
    assert!(seen.contains("case canaryd.tcp demo-port pass"), "{seen}");
    assert!(!std::fs::read_to_string(&report)
        .unwrap()
        .contains(app::PASSWORD));
    control(&demo, "reset");
    rt.block_on(demo.stop());
}
