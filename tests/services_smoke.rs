//! The real services of `tests/services` start, answer, and go away when dropped.

mod services;

use std::net::TcpStream;

use services::{secs, Alertmanager, Nginx, Prometheus, Redis, Resp};

const ALERTMANAGER_YML: &str = "\
route:
  receiver: 'null'
receivers:
  - name: 'null'
";

#[test]
fn prometheus_scrapes_a_target_and_answers_queries() {
    // Alertmanager serves /metrics: a real scrape target.
    let Some(am) = Alertmanager::start(ALERTMANAGER_YML) else {
        return;
    };
    let target = format!("127.0.0.1:{}", am.port());
    let Some(prom) = Prometheus::start(&[("alertmanager", target.clone())], "1s") else {
        return;
    };
    let result = prom.wait_for(
        "up{job=\"alertmanager\"}",
        |v| services::sample_value(v) == Some(1.0),
        secs(30),
    );
    assert_eq!(result[0]["metric"]["instance"], target.as_str());
    assert_eq!(prom.query_f64("1 + 1"), Some(2.0));
    assert!(prom
        .query("up{job=\"nope\"}")
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn nginx_serves_static_files_and_stops_with_its_worker() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("index.html"), "<h1>canary</h1>\n").unwrap();
    std::fs::write(root.path().join("health.json"), r#"{"db":"prod-primary"}"#).unwrap();
    let Some(nginx) = Nginx::start(root.path()) else {
        return;
    };
    let page = services::http_get(&format!("{}/", nginx.url())).unwrap();
    assert_eq!(page.status, 200);
    assert_eq!(page.text(), "<h1>canary</h1>\n");
    assert_eq!(page.header("content-type"), Some("text/html"));
    let health = services::http_get(&format!("{}/health.json", nginx.url())).unwrap();
    assert_eq!(health.json()["db"], "prod-primary");
    let missing = services::http_get(&format!("{}/nope", nginx.url())).unwrap();
    assert_eq!(missing.status, 404);

    let port = nginx.port();
    drop(nginx);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nginx (master or worker) still listens on {port} after drop"
    );
}

#[test]
fn alertmanager_is_ready_and_accepts_alerts() {
    let Some(am) = Alertmanager::start(ALERTMANAGER_YML) else {
        return;
    };
    let ready = services::http_get(&format!("{}/-/ready", am.url())).unwrap();
    assert_eq!(ready.status, 200);
    let posted = services::http_post(
        &format!("{}/api/v2/alerts", am.url()),
        "application/json",
        br#"[{"labels":{"alertname":"SmokeTest","check":"smoke"}}]"#,
    )
    .unwrap();
    assert_eq!(posted.status, 200, "{}", posted.text());
    let alerts = am.alerts();
    assert_eq!(alerts[0]["labels"]["alertname"], "SmokeTest");
}

#[test]
fn redis_answers_ping_and_survives_stop_and_restart() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    assert!(redis.url().starts_with("redis://127.0.0.1:"));
    assert_eq!(raw_ping(&redis.addr()).as_deref(), Some("+PONG"));
    assert_eq!(
        redis.cmd(&["RPUSH", "queue:default", "a", "b"]),
        Resp::Int(2)
    );
    assert_eq!(redis.cmd(&["LLEN", "queue:default"]).as_int(), Some(2));
    assert!(matches!(redis.cmd(&["NOSUCHCOMMAND"]), Resp::Error(_)));

    redis.stop();
    assert!(
        TcpStream::connect(redis.addr()).is_err(),
        "redis still listens after stop"
    );
    let port = redis.port();
    redis.restart();
    assert_eq!(redis.port(), port);
    assert_eq!(raw_ping(&redis.addr()).as_deref(), Some("+PONG"));
    assert_eq!(redis.cmd(&["LLEN", "queue:default"]).as_int(), Some(0));
}

/// PING over a raw socket, inline command form.
fn raw_ping(addr: &str) -> Option<String> {
    use std::io::{BufRead, BufReader, Write};
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(secs(5))).ok()?;
    s.write_all(b"PING\r\n").ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    Some(line.trim_end().to_string())
}

#[test]
fn require_fails_loudly_under_ci_and_skips_otherwise() {
    assert!(services::require("redis-server").is_some() || !services::under_ci());
    let missing = std::panic::catch_unwind(|| services::require("canaryd-no-such-binary"));
    if services::under_ci() {
        let err = missing.expect_err("CI=true: a missing binary must panic");
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("missing: run scripts/setup"), "{msg}");
    } else {
        assert_eq!(missing.ok(), Some(None));
    }
}
