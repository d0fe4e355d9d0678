//! A page that is expensive to parse (1 MB of nested `<div>`s: quadratic work for an HTML tree
//! builder) must not stall the daemon: the parse runs off the async workers and the check fails
//! with reason `timeout` by its timeout, while `/-/healthy` keeps answering at once and other
//! checks keep their schedule.

mod adversary;
mod services;

use std::time::{Duration, Instant};

use adversary::{Behavior, Reply, Server};
use services::{canaryd_run, free_port, http_get, parse_sample, Canaryd};

/// The value of the first sample of `name` whose labels include every pair of `want`.
fn sample(metrics: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let (n, labels) = parse_sample(l);
            n == name
                && want
                    .iter()
                    .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn nested_divs_time_out_without_stalling_the_daemon() {
    let page = "<div>".repeat(200_000); // 1,000,000 bytes, within the default 1 MiB body limit
    let nested = Server::start(Behavior::Reply(
        Reply::new(200)
            .header("content-type", "text/html")
            .body(page),
    ));
    let plain = Server::start(Behavior::Reply(Reply::new(200).body("ok")));
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let config = dir.path().join("canaryd.yaml");
    std::fs::write(
        &config,
        format!(
            r#"listen: "{addr}"
state_dir: state
checks:
  - name: nested
    interval: 2s
    timeout: 2s
    http:
      steps:
        - name: page
          request: {{url: "{nested}"}}
          extract:
            title: {{css: "div > p"}}
  - name: plain
    interval: 200ms
    timeout: 150ms
    http:
      request: {{url: "{plain}"}}
"#,
            nested = nested.url("/"),
            plain = plain.url("/"),
        ),
    )
    .unwrap();
    let mut daemon = Canaryd::start(canaryd_run(&config), &addr).unwrap_or_else(|e| panic!("{e}"));

    // Poll /-/healthy every 50 ms across two runs of the nested check (back to back, each holds a
    // parse for its whole 2 s timeout).
    let healthy = daemon.url("/-/healthy");
    let mut slowest = Duration::ZERO;
    let polling = Instant::now();
    let mut polls = 0;
    while polling.elapsed() < Duration::from_millis(5_500) {
        let t = Instant::now();
        let r = http_get(&healthy).expect("GET /-/healthy");
        let took = t.elapsed();
        assert_eq!(r.status, 200);
        slowest = slowest.max(took);
        assert!(
            took < Duration::from_millis(100),
            "/-/healthy took {took:?} on poll {polls}\n{}",
            daemon.log_tail(30)
        );
        polls += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("{polls} polls of /-/healthy, slowest {slowest:?}");

    let metrics = http_get(&daemon.url("/metrics")).unwrap().text();
    let timeouts = sample(
        &metrics,
        "canary_check_failures_total",
        &[("check", "nested"), ("reason", "timeout")],
    );
    assert!(
        timeouts.is_some_and(|n| n >= 1.0),
        "nested check failed with timeout: {timeouts:?}\n{metrics}"
    );
    // Every run of the nested check ended by its timeout (histogram: none above 2.5 s).
    let runs = sample(
        &metrics,
        "canary_check_duration_seconds_count",
        &[("check", "nested")],
    );
    let within = sample(
        &metrics,
        "canary_check_duration_seconds_bucket",
        &[("check", "nested"), ("le", "2.5")],
    );
    assert!(runs.is_some_and(|n| n >= 1.0), "{metrics}");
    assert_eq!(
        runs, within,
        "a nested run took longer than 2.5 s\n{metrics}"
    );

    let api = http_get(&daemon.url("/api/v1/checks/nested"))
        .unwrap()
        .text();
    assert!(
        api.contains(r#"step \"page\": timed out parsing the response"#),
        "{api}"
    );

    // The plain check ran on its 200 ms schedule all along: about 27 runs in 5.5 s.
    let plain_ok = sample(
        &metrics,
        "canary_check_runs_total",
        &[("check", "plain"), ("result", "success")],
    )
    .unwrap_or(0.0);
    assert!(
        plain_ok >= 20.0,
        "plain check ran {plain_ok} times\n{metrics}"
    );

    // SIGTERM is obeyed while a parse is under way (one always is): the daemon drains and exits
    // well before the 10 s grace after which `stop` would kill it.
    let stopping = Instant::now();
    daemon.stop(Duration::from_secs(10));
    let took = stopping.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "SIGTERM took {took:?} to stop canaryd"
    );
}
