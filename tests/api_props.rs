//! Untrusted input to the HTTP API: the silence API's bounds (through the real binary, across a
//! restart with bad rows in the store), the 1,000-silence cap, strict `Authorization` parsing for
//! heartbeat pings, and property tests sending arbitrary silence bodies and arbitrary ping
//! requests to a daemon on loopback: every answer is a 2xx or 4xx with a message, never a
//! panic, a 5xx or a dropped connection.

mod services;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use canaryd::daemon::Daemon;
use proptest::prelude::*;
use serde_json::{json, Value};
use services::{canaryd_run, free_port, Canaryd};

const TOKEN: &str = "hb-token-7Yq2";

const CHECKS: &str = "checks:
  - name: hb
    interval: 1h
    heartbeat: {every: 1h, token: \"hb-token-7Yq2\"}
  - name: open
    interval: 1h
    heartbeat: {every: 1h}
  - name: plain
    interval: 1h
    tcp: {target: \"127.0.0.1:9\"}
";

/// One HTTP/1.1 exchange on a fresh connection: status and body. A server that answers before
/// reading the whole body (413) may reset the connection mid-upload: what it answered counts.
/// Status 0: no answer at all.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, "connect failed".into());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    services::parse_http_answer(&buf)
}

fn post_silence(addr: &str, body: &Value) -> (u16, String) {
    http(
        addr,
        "POST",
        "/api/v1/silences",
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

fn silence(duration: &str, comment: &str) -> Value {
    json!({
        "matchers": {"check": "shop-*"},
        "duration": duration,
        "created_by": "ana",
        "comment": comment,
    })
}

fn list(addr: &str) -> Vec<Value> {
    let (code, body) = http(addr, "GET", "/api/v1/silences", &[], b"");
    assert_eq!(code, 200, "GET /api/v1/silences: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["silences"].as_array().unwrap().clone()
}

fn write_config(dir: &Path, addr: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("checks.yaml"), CHECKS).unwrap();
    let config = dir.join("canaryd.yaml");
    std::fs::write(
        &config,
        format!("listen: {addr}\nstate_dir: state\ncheck_files: [checks.yaml]\n"),
    )
    .unwrap();
    config
}

fn start(config: &Path, addr: &str) -> Canaryd {
    Canaryd::start(canaryd_run(config), addr).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn silences_are_bounded_before_they_are_stored_and_bad_stored_rows_are_skipped_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let config = write_config(dir.path(), &addr);
    let mut d = start(&config, &addr);

    // Once a panic after the silence was stored; then every list failed until a delete by id.
    let (code, body) = post_silence(&addr, &silence("1000000y", "forever"));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("at most one year from now"), "{body}");
    let (code, body) = post_silence(&addr, &silence("584942417355y", "overflow"));
    assert_eq!(code, 400, "{body}");
    let mut far = silence("1h", "far end");
    far["duration"] = Value::Null;
    far["ends_at"] = json!("9999-12-31T23:59:59Z");
    let (code, body) = post_silence(&addr, &far);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("at most one year"), "{body}");
    let (code, body) = post_silence(&addr, &silence("2h", &"x".repeat(4097)));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("the comment is at most 4096 bytes"), "{body}");
    let mut long_author = silence("2h", "deploy");
    long_author["created_by"] = json!("a".repeat(257));
    let (code, body) = post_silence(&addr, &long_author);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("created_by is at most 256 bytes"), "{body}");
    let mut many = silence("2h", "deploy");
    many["matchers"] = (0..33).map(|i| (format!("l{i}"), json!("v"))).collect();
    let (code, body) = post_silence(&addr, &many);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("at most 32 matchers"), "{body}");
    // Past the body limit of the API: 413 before anything is parsed.
    let (code, body) = post_silence(&addr, &silence("2h", &"x".repeat(1_500_000)));
    assert_eq!(code, 413, "{body}");
    assert!(list(&addr).is_empty(), "a refused silence was stored");

    let (code, body) = post_silence(&addr, &silence("2h", "deploy of the shop"));
    assert_eq!(code, 201, "{body}");
    let good: Value = serde_json::from_str(&body).unwrap();
    let shown = list(&addr);
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0]["comment"], "deploy of the shop");
    assert_eq!(shown[0]["state"], "active");

    // Rows an older version (or a hand) could have left: an end in the year 1,000,000, a row
    // that is not a silence.
    d.stop(Duration::from_secs(5));
    {
        let db = rusqlite::Connection::open(dir.path().join("state/canaryd.db")).unwrap();
        let mut bad = good.clone();
        let far: i64 = 31_556_952_000_000_000;
        let row = json!({
            "id": "far-future",
            "matchers": {"check": "x"},
            "starts_at_ms": 0,
            "ends_at_ms": far,
            "created_by": "old",
            "comment": "old",
            "created_at_ms": 0,
        });
        bad["id"] = json!("unused");
        db.execute(
            "INSERT INTO silences (id, silence_json) VALUES (?1, ?2)",
            ("far-future", row.to_string()),
        )
        .unwrap();
        db.execute(
            "INSERT INTO silences (id, silence_json) VALUES ('garbage', '{\"no\": 1}')",
            (),
        )
        .unwrap();
    }
    let d = start(&config, &addr);
    let shown = list(&addr);
    assert_eq!(
        shown.iter().map(|s| s["id"].clone()).collect::<Vec<_>>(),
        [good["id"].clone()],
        "only the good silence is listed"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .args([
            "silence",
            "list",
            "--all",
            "--url",
            &format!("http://{addr}"),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(good["id"].as_str().unwrap()), "{stdout}");
    let log = d.log_tail(200);
    assert!(
        log.contains("skipping a stored silence") && log.contains("far-future"),
        "{log}"
    );
}

#[test]
fn a_ping_flood_meets_the_per_check_rate_limit_and_only_acknowledged_pings_count() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let config = write_config(dir.path(), &addr);
    let _d = start(&config, &addr);
    let auth = format!("Bearer {TOKEN}");
    let (mut ok, mut limited) = (0u64, 0u64);
    for _ in 0..200 {
        let (code, body) = http(&addr, "POST", "/ping/hb", &[("Authorization", &auth)], b"");
        match code {
            200 => ok += 1,
            429 => {
                limited += 1;
                assert!(body.contains("pings at once"), "{body}");
            }
            other => panic!("{other}: {body}"),
        }
    }
    // 40 at once, then 20 a second: far fewer than 200 within the loop's fraction of a second.
    assert!((40..200).contains(&ok), "{ok} accepted, {limited} limited");
    assert!(limited > 0);
    let (code, body) = http(&addr, "GET", "/api/v1/checks/hb", &[], b"");
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["heartbeat"]["ping_count"], ok, "{body}");
}

#[test]
fn heartbeat_authorization_is_parsed_strictly() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let config = write_config(dir.path(), &addr);
    let _d = start(&config, &addr);
    for refused in [
        format!("Bearer{TOKEN}"),
        format!("Bearer  {TOKEN}"),
        format!("Basic {TOKEN}"),
        format!("Bearer {TOKEN}x"),
        format!("Bearer {TOKEN} {TOKEN}"),
        "Bearer".to_string(),
    ] {
        let (code, body) = http(
            &addr,
            "POST",
            "/ping/hb",
            &[("Authorization", &refused)],
            b"",
        );
        assert_eq!(code, 401, "{refused:?}: {body}");
        assert!(
            body.contains("send Authorization: Bearer <token>"),
            "{body}"
        );
    }
    // Found by the ping property test: these answered with an empty body.
    let (code, body) = http(&addr, "PUT", "/ping/hb/", &[], b"");
    assert_eq!((code, body.as_str()), (404, "no such endpoint\n"));
    let (code, body) = http(&addr, "PUT", "/ping/hb", &[], b"");
    assert_eq!(
        (code, body.as_str()),
        (405, "method not allowed on this endpoint\n")
    );
    for accepted in [format!("Bearer {TOKEN}"), format!("bEARER {TOKEN}")] {
        let (code, body) = http(
            &addr,
            "POST",
            "/ping/hb",
            &[("Authorization", &accepted)],
            b"",
        );
        assert_eq!((code, body.as_str()), (200, "OK\n"), "{accepted:?}");
    }
}

/// A daemon in this process (its own runtime on a background thread) serving on loopback;
/// shared by the tests below.
fn shared() -> &'static (String, Arc<Daemon>) {
    static SHARED: OnceLock<(String, Arc<Daemon>)> = OnceLock::new();
    SHARED.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let dir = tempfile::tempdir().unwrap();
                let config = write_config(dir.path(), "127.0.0.1:1");
                let daemon = Daemon::start(&config).unwrap_or_else(|e| panic!("{e}"));
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap().to_string();
                tokio::spawn(canaryd::server::serve(
                    listener,
                    daemon.clone(),
                    std::future::pending(),
                ));
                tx.send((addr, daemon)).unwrap();
                std::future::pending::<()>().await;
                drop(dir);
            });
        });
        rx.recv().unwrap()
    })
}

#[test]
fn at_most_1000_silences_are_in_force_at_once() {
    let (addr, daemon) = shared();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut made = Vec::new();
    let in_force = |d: &Daemon| {
        let now = canaryd::alert::to_ms(std::time::SystemTime::now());
        d.alerting
            .silences()
            .iter()
            .filter(|s| s.ends_at_ms > now.max(s.starts_at_ms))
            .count()
    };
    while in_force(daemon) < 1000 {
        let (code, body) = post_silence(addr, &silence("1h", "load"));
        assert_eq!(code, 201, "{body}");
        made.push(
            serde_json::from_str::<Value>(&body).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let (code, body) = post_silence(addr, &silence("1h", "one too many"));
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("1000 silences are active or pending"),
        "{body}"
    );
    // Expiring one makes room again.
    let (code, _) = http(
        addr,
        "DELETE",
        &format!("/api/v1/silences/{}", made[0]),
        &[],
        b"",
    );
    assert_eq!(code, 200);
    let (code, body) = post_silence(addr, &silence("1h", "room again"));
    assert_eq!(code, 201, "{body}");
    for id in made.iter().skip(1) {
        let (code, _) = http(addr, "DELETE", &format!("/api/v1/silences/{id}"), &[], b"");
        assert_eq!(code, 200);
    }
    let id: String = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .into();
    assert_eq!(
        http(addr, "DELETE", &format!("/api/v1/silences/{id}"), &[], b"").0,
        200
    );
}

/// The cap test and the property tests share one daemon's silence count.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Strings that probe the parsers: valid and broken times, durations with huge numbers and odd
/// units, unicode, empty.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,25}(ns|us|ms|s|m|h|d|w|M|y|years|)",
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})?",
        "\\PC{0,40}",
        Just(String::new()),
        "[a-z*?\\[\\]!-]{1,20}",
        (1usize..6000).prop_map(|n| "c".repeat(n)),
    ]
}

fn silence_body() -> impl Strategy<Value = Vec<u8>> {
    let field = |s: BoxedStrategy<String>| prop::option::of(s.prop_map(Value::from));
    let structured = (
        prop::collection::btree_map("\\PC{0,12}", text(), 0..40),
        field(text().boxed()),
        field(text().boxed()),
        field(text().boxed()),
        field(text().boxed()),
        field(text().boxed()),
    )
        .prop_map(|(m, starts, ends, dur, by, comment)| {
            let mut o = serde_json::Map::new();
            o.insert("matchers".into(), json!(m));
            for (k, v) in [
                ("starts_at", starts),
                ("ends_at", ends),
                ("duration", dur),
                ("created_by", by),
                ("comment", comment),
            ] {
                if let Some(v) = v {
                    o.insert(k.into(), v);
                }
            }
            Value::Object(o).to_string().into_bytes()
        });
    // Mostly valid silences, so that the accepting path (stored, shown, within a year) is
    // exercised as often as the refusing ones; sizes straddle the limits.
    let likely = (
        "[a-z]{1,10}",
        "[1-9][0-9]{0,3}(s|m|h|d|w)",
        prop_oneof![1usize..300, 4000usize..4200],
        prop_oneof![1usize..20, 250usize..260],
    )
        .prop_map(|(check, duration, comment, by)| {
            json!({
                "matchers": {"check": check},
                "duration": duration,
                "created_by": "b".repeat(by),
                "comment": "c".repeat(comment),
            })
            .to_string()
            .into_bytes()
        });
    prop_oneof![
        2 => likely,
        3 => structured,
        1 => prop::collection::vec(any::<u8>(), 0..300),
        1 => (0usize..200_000).prop_map(|n| format!("{{\"comment\": \"{}\"}}", "z".repeat(n)).into_bytes()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn any_silence_body_gets_a_clear_2xx_or_4xx(body in silence_body()) {
        let (addr, _) = shared();
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let (code, answer) = http(addr, "POST", "/api/v1/silences", &[], &body);
        prop_assert!(matches!(code, 201 | 400 | 413), "{code}: {answer}");
        prop_assert!(!answer.trim().is_empty(), "{code} without a message");
        if code == 400 {
            let v: Value = serde_json::from_str(&answer).unwrap();
            prop_assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{answer}");
        }
        if code == 201 {
            let s: Value = serde_json::from_str(&answer).unwrap();
            let id = s["id"].as_str().unwrap();
            let (code, shown) = http(addr, "GET", &format!("/api/v1/silences/{id}"), &[], b"");
            prop_assert_eq!(code, 200, "{}", shown);
            let ends = humantime::parse_rfc3339(s["ends_at"].as_str().unwrap()).unwrap();
            prop_assert!(ends <= std::time::SystemTime::now() + Duration::from_secs(366 * 86_400));
            let (code, _) = http(addr, "DELETE", &format!("/api/v1/silences/{id}"), &[], b"");
            prop_assert_eq!(code, 200);
        }
        let (code, list) = http(addr, "GET", "/api/v1/silences", &[], b"");
        prop_assert_eq!(code, 200, "{}", list);
    }
}

/// A path segment: a name the daemon knows, or anything, percent-encoded where needed.
fn segment(known: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(known).prop_map(str::to_string),
        prop::collection::vec(any::<u8>(), 0..24).prop_map(|bytes| bytes
            .iter()
            .map(|b| if b.is_ascii_alphanumeric() {
                (*b as char).to_string()
            } else {
                format!("%{b:02X}")
            })
            .collect()),
    ]
}

fn authorization() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        Just(format!("Bearer {TOKEN}")),
        Just(format!("bearer {TOKEN}")),
        Just(format!("Bearer{TOKEN}")),
        Just(format!("Bearer  {TOKEN}")),
        Just(format!("Basic {TOKEN}")),
        Just("Bearer wrong".to_string()),
        "[ -~]{0,60}",
    ])
}

/// What the daemon must answer, when the request is one whose answer the rules fix.
fn expected(method: &str, check: &str, suffix: Option<&str>, auth: Option<&str>) -> Option<u16> {
    if !matches!(method, "GET" | "POST" | "HEAD") {
        return Some(405);
    }
    let suffix_ok = suffix.is_none_or(|s| {
        matches!(s, "start" | "fail")
            || (s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u8>().is_ok())
    });
    if method == "HEAD" {
        return Some(405);
    }
    if !matches!(check, "hb" | "open") || !suffix_ok {
        return Some(404);
    }
    if check == "open" {
        return Some(200);
    }
    let Some(auth) = auth else {
        return Some(401);
    };
    // Values with surrounding whitespace are trimmed by the HTTP parser: no fixed answer.
    if auth.trim() != auth {
        return None;
    }
    Some(match auth.split_at_checked(7) {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer ") && token == TOKEN => 200,
        _ => 401,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn any_ping_gets_the_answer_its_rules_say(
        method in prop::sample::select(&["GET", "POST", "HEAD", "PUT", "DELETE"][..]),
        check in segment(&["hb", "open", "plain", "nope"]),
        suffix in prop::option::of(segment(&["start", "fail", "0", "255", "256", "007", "-1", "x"])),
        auth in authorization(),
        body in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let (addr, _) = shared();
        let path = match &suffix {
            Some(s) => format!("/ping/{check}/{s}"),
            None => format!("/ping/{check}"),
        };
        let mut headers = Vec::new();
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        let (code, answer) = http(addr, method, &path, &headers, &body);
        prop_assert!((200..300).contains(&code) || (400..500).contains(&code), "{method} {path} {auth:?}: {code} {answer}");
        if method != "HEAD" {
            prop_assert!(!answer.trim().is_empty(), "{code} without a message");
        }
        // An empty segment or one decoding to something else is not one of the names.
        let plain = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric());
        let fixed = (plain(&check) && !check.is_empty() && suffix.as_deref().is_none_or(|s| plain(s) && !s.is_empty()))
            .then(|| expected(method, &check, suffix.as_deref(), auth.as_deref()))
            .flatten();
        if let Some(want) = fixed {
            // A ping that would be accepted may meet the per-check rate limit instead.
            let rate_limited = want == 200 && code == 429;
            if !rate_limited {
                prop_assert_eq!(code, want, "{} {} {:?}: {}", method, path, auth, answer);
            }
        }
    }
}
