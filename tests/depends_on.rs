//! `depends_on` end to end: a TCP check on "the database" (a real redis-server) is the parent of
//! five checks of three kinds that all need it — two HTTP endpoints of an app that asks Redis
//! on every request, two queue checks reading Redis, and a heartbeat whose job pings only while
//! it can work (it stops with the database and comes back before it). Stopping Redis fails all six; the on-call gets exactly one page, the parent's,
//! listing the five. Bringing Redis back while one endpoint stays broken pages that one alone;
//! every resolve arrives.

mod receivers;
mod services;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use receivers::Webhook;
use serde_json::Value;
use services::{canaryd_run, free_port, http_get, http_post, resp_command, Canaryd, Redis};

fn wait(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn redis_up(port: u16) -> bool {
    resp_command(port, &["PING"]).is_ok_and(|r| r == services::Resp::Simple("PONG".into()))
}

/// The app: `GET /api` and `GET /login` answer 200 when Redis answers PING, 503 when not;
/// `/login` also answers 500 while `login_broken` is set (a bug of its own).
fn start_app(redis_port: u16, login_broken: Arc<AtomicBool>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let broken = login_broken.clone();
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                // The rest of the head.
                let mut h = String::new();
                while reader.read_line(&mut h).is_ok_and(|n| n > 2) {
                    h.clear();
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let status = if !redis_up(redis_port) {
                    "503 Service Unavailable"
                } else if path == "/login" && broken.load(Ordering::SeqCst) {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                );
            });
        }
    });
    addr
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// (status, check, summary, dependants_failing) of every event the webhook accepted.
fn events(hook: &Webhook) -> Vec<(String, String, String, Vec<String>)> {
    hook.accepted()
        .iter()
        .filter_map(|r| r.json())
        .flat_map(|body| body["events"].as_array().cloned().unwrap_or_default())
        .map(|e: Value| {
            (
                e["status"].as_str().unwrap_or("").to_string(),
                e["check"].as_str().unwrap_or("").to_string(),
                e["summary"].as_str().unwrap_or("").to_string(),
                e["dependants_failing"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
            )
        })
        .collect()
}

fn triggers(hook: &Webhook) -> Vec<String> {
    events(hook)
        .into_iter()
        .filter(|e| e.0 == "firing")
        .map(|e| e.1)
        .collect()
}

fn resolves(hook: &Webhook) -> Vec<String> {
    events(hook)
        .into_iter()
        .filter(|e| e.0 == "resolved")
        .map(|e| e.1)
        .collect()
}

fn alerts(d: &Canaryd) -> Vec<Value> {
    let body = http_get(&d.url("/api/v1/alerts")).unwrap().text();
    let v: Value = serde_json::from_str(&body).unwrap();
    v["alerts"].as_array().cloned().unwrap_or_default()
}

const DEPENDANTS: [&str; 5] = [
    "api",
    "login",
    "nightly-sync",
    "queue-default",
    "queue-mail",
];

#[test]
fn a_database_outage_pages_once_and_a_dependant_still_broken_after_it_pages_then() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let rport = redis.port();
    let login_broken = Arc::new(AtomicBool::new(false));
    let app = start_app(rport, login_broken.clone());
    let hook = Webhook::start();

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    write(
        dir.path(),
        "canaryd.yaml",
        &format!(
            "listen: {addr}\nstate_dir: state\ncheck_files: [checks.yaml]\n\
             receivers:\n  - name: hook\n    webhook: {{url: \"{}\"}}\n",
            hook.url()
        ),
    );
    let down = "    alerts:\n      - {name: Down, when: failed}\n";
    write(
        dir.path(),
        "checks.yaml",
        &format!(
            "checks:\n\
             \x20 - name: db\n    interval: 1s\n    tcp: {{target: \"127.0.0.1:{rport}\"}}\n\
             \x20   alerts:\n      - {{name: DatabaseDown, when: failed, consecutive: 5}}\n\
             \x20 - name: api\n    interval: 1s\n    depends_on: [db]\n    http: {{request: {{url: \"http://{app}/api\"}}}}\n{down}\
             \x20 - name: login\n    interval: 1s\n    depends_on: [db]\n    http: {{request: {{url: \"http://{app}/login\"}}}}\n{down}\
             \x20 - name: queue-default\n    interval: 1s\n    depends_on: [db]\n    queue: {{system: rq, redis: \"redis://127.0.0.1:{rport}\", queues: [default]}}\n{down}\
             \x20 - name: queue-mail\n    interval: 1s\n    depends_on: [db]\n    queue: {{system: sidekiq, redis: \"redis://127.0.0.1:{rport}\", queues: [mail]}}\n{down}\
             \x20 - name: nightly-sync\n    depends_on: [db]\n    heartbeat: {{every: 1s, grace: 1s}}\n{down}"
        ),
    );
    let d = Canaryd::start(canaryd_run(&dir.path().join("canaryd.yaml")), &addr)
        .expect("canaryd starts");

    // The job: pings its heartbeat every 100 ms while `job_up` (the test says when it can work:
    // it fails with the database, and is back before it).
    let job_up = Arc::new(AtomicBool::new(true));
    let stop_job = Arc::new(AtomicBool::new(false));
    let ping_url = d.url("/ping/nightly-sync");
    let job = {
        let (up, stop) = (job_up.clone(), stop_job.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if up.load(Ordering::SeqCst) {
                    let _ = http_post(&ping_url, "text/plain", b"ok");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let all_pass = |d: &Canaryd| {
        let text = http_get(&d.url("/metrics")).unwrap().text();
        std::iter::once("db")
            .chain(DEPENDANTS)
            .all(|c| text.contains(&format!("canary_check_success{{check=\"{c}\"}} 1")))
    };
    wait("every check passing", Duration::from_secs(20), || {
        all_pass(&d)
    });
    assert!(triggers(&hook).is_empty(), "{:?}", events(&hook));

    // The database dies, and the job with it.
    job_up.store(false, Ordering::SeqCst);
    redis.stop();
    wait("the parent's page", Duration::from_secs(20), || {
        !triggers(&hook).is_empty()
    });
    // Time for any other page to arrive: every dependant fires on its first failure.
    std::thread::sleep(Duration::from_secs(3));
    let evs = events(&hook);
    let fired: Vec<_> = evs.iter().filter(|e| e.0 == "firing").collect();
    assert_eq!(
        fired.len(),
        1,
        "exactly one page: {evs:?}\n{}",
        d.log_tail(60)
    );
    let (_, check, summary, listed) = fired[0];
    assert_eq!(check, "db");
    assert_eq!(
        listed, &DEPENDANTS,
        "the parent's page lists the failing dependants"
    );
    assert!(
        summary.contains(
            "(5 dependants failing too: api, login, nightly-sync, queue-default, queue-mail)"
        ),
        "{summary}"
    );
    // Every dependant fires, held by db: the API and the metric name the parent.
    let held: Vec<String> = alerts(&d)
        .iter()
        .filter(|a| a["state"] == "firing" && a["suppressed_by"] == "db")
        .map(|a| a["check"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(held, DEPENDANTS, "{:?}", alerts(&d));
    let metrics = http_get(&d.url("/metrics")).unwrap().text();
    for c in DEPENDANTS {
        let line =
            format!("canary_alert_suppressed{{check=\"{c}\",alert=\"Down\",parent=\"db\"}} 1");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }

    // Restored: the job first (its heartbeat passes again), then the database; login has a
    // bug of its own.
    login_broken.store(true, Ordering::SeqCst);
    job_up.store(true, Ordering::SeqCst);
    wait("the heartbeat passing", Duration::from_secs(10), || {
        http_get(&d.url("/metrics"))
            .unwrap()
            .text()
            .contains("canary_check_success{check=\"nightly-sync\"} 1")
    });
    redis.restart();
    let t = std::time::Instant::now();
    while !(resolves(&hook).contains(&"db".to_string()) && triggers(&hook).len() >= 2) {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the parent's resolve and login's page did not both arrive: {:?}\nalerts: {}\n{}",
            events(&hook),
            http_get(&d.url("/api/v1/alerts")).unwrap().text(),
            d.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(triggers(&hook), ["db", "login"], "{:?}", events(&hook));
    assert_eq!(resolves(&hook), ["db"], "{:?}", events(&hook));
    let metrics = http_get(&d.url("/metrics")).unwrap().text();
    assert!(
        !metrics.contains("canary_alert_suppressed{"),
        "nothing held any more:\n{metrics}"
    );

    // login fixed: its resolve arrives.
    login_broken.store(false, Ordering::SeqCst);
    wait("login's resolve", Duration::from_secs(20), || {
        resolves(&hook).len() == 2
    });
    assert_eq!(resolves(&hook), ["db", "login"]);
    assert_eq!(triggers(&hook), ["db", "login"]);
    stop_job.store(true, Ordering::SeqCst);
    job.join().unwrap();
}
