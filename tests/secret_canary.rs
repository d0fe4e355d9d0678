//! Secret canaries: a random secret with `"`, `\`, `#`, `&`, space, `+`, `/`, `=` and non-ASCII
//! in it is planted where canaryd takes secrets (a URL's path and query, a request header, a
//! receiver's URL and header, a heartbeat token), every peer echoes it back in another encoding,
//! and every output of canaryd is searched for it in each encoding: raw, JSON-escaped (and its
//! `\uXXXX` form), percent-encoded (`%20` and `+` styles, upper and lower hex), and base64 of the
//! secret and of `user:secret`.
//!
//! The canary is also an Opsgenie API key (the Opsgenie API refuses it with 401 and echoes the
//! `Authorization` header it got) and an SMTP password (a real aiosmtpd with STARTTLS and AUTH
//! accepts it and the mail arrives).
//!
//! Outputs searched: the daemon's log at `RUST_LOG=trace`, `/metrics`, `/api/v1/checks`,
//! `/api/v1/alerts`, the payloads a local webhook receiver got, the mail the SMTP server got, a
//! heartbeat's stored ping body, and `canaryd probe` with and without `--show-values`.

mod receivers;
mod services;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use data_encoding::{BASE64, BASE64URL};
use receivers::smtp::Smtp;
use receivers::Webhook;
use services::{canaryd_run, free_port, http_get, http_request, Canaryd};

/// A fresh canary per run: a value nobody else prints, with every character that changes
/// between encodings.
fn canary() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "Cn{:08x}{:04x}\"q\\ #&k=1 +/é☃=",
        nanos,
        std::process::id() & 0xffff
    )
}

fn json_escaped(s: &str) -> String {
    let j = serde_json::to_string(s).unwrap();
    j[1..j.len() - 1].to_string()
}

/// JSON with non-ASCII as `\uXXXX` (Python's default `json.dumps`).
fn json_ascii(s: &str) -> String {
    let mut out = String::new();
    for c in json_escaped(s).chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut u = [0u16; 2];
            for unit in c.encode_utf16(&mut u) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

fn percent(s: &str, space_plus: bool, lower: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else if b == b' ' && space_plus {
            out.push('+');
        } else if lower {
            out.push_str(&format!("%{b:02x}"));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The canary in every encoding an output could carry it in.
fn encodings(s: &str) -> Vec<(&'static str, String)> {
    vec![
        ("raw", s.to_string()),
        ("json-escaped", json_escaped(s)),
        ("json \\u-escaped", json_ascii(s)),
        ("percent %20", percent(s, false, false)),
        ("percent %20 lower", percent(s, false, true)),
        ("percent +", percent(s, true, false)),
        ("percent + lower", percent(s, true, true)),
        ("base64", BASE64.encode(s.as_bytes())),
        ("base64url", BASE64URL.encode(s.as_bytes())),
        (
            "base64 user:secret",
            BASE64.encode(format!("user:{s}").as_bytes()),
        ),
    ]
}

fn assert_clean(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        assert_clean_of(what, text, s);
    }
}

fn assert_clean_of(what: &str, text: &str, secret: &str) {
    for (name, enc) in encodings(secret) {
        assert!(
            !text.contains(&enc),
            "{what} shows the secret ({name}: {enc:?}):\n{}",
            &text[text.len().saturating_sub(4000)..]
        );
    }
    // The distinctive prefix alone (a truncated echo) must not show either.
    assert!(
        !text.contains(&secret[..14]),
        "{what} shows a part of the secret:\n{}",
        &text[text.len().saturating_sub(4000)..]
    );
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 3 <= b.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What an echo server saw: the request target and its headers.
#[derive(Clone, Debug, Default)]
struct Seen {
    target: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> String {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

/// A loopback HTTP server that answers every request with `status` and a body `answer` builds
/// from what it saw (echoing the secret back, as a careless peer would).
fn echo_server(status: u16, answer: fn(&Seen) -> String) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = Vec::new();
            if reader.read_until(b'\n', &mut line).is_err() {
                continue;
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            let target = line.split(' ').nth(1).unwrap_or("").to_string();
            let mut headers = Vec::new();
            let mut length = 0usize;
            loop {
                let mut h = Vec::new();
                if reader.read_until(b'\n', &mut h).unwrap_or(0) == 0 {
                    break;
                }
                let h = String::from_utf8_lossy(&h).trim_end().to_string();
                if h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    headers.push((k.trim().to_string(), v.trim().to_string()));
                }
            }
            let mut body = vec![0u8; length.min(1 << 20)];
            let _ = reader.read_exact(&mut body);
            let s = Seen { target, headers };
            let text = answer(&s);
            log.lock().unwrap().push(s);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (addr, seen)
}

/// The check's target: echoes the key header JSON-escaped, `\u`-escaped, as base64 of
/// `user:key`, percent-encoded, and the raw request target.
fn target_answer(s: &Seen) -> String {
    let key = s.header("x-api-key");
    serde_json::json!({
        "seen_key": key,
        "seen_url": s.target,
        "b64": BASE64.encode(format!("user:{key}").as_bytes()),
        "ascii": json_ascii(&key),
        "pct": percent(&key, true, true),
    })
    .to_string()
}

/// A receiver that refuses (400) and quotes what it got: its URL and the secret header.
fn refusing_receiver_answer(s: &Seen) -> String {
    serde_json::json!({
        "error": format!("bad key {}", s.header("x-api-key")),
        "url": s.target,
        "b64": BASE64.encode(s.header("x-api-key").as_bytes()),
    })
    .to_string()
}

/// An Opsgenie API refusing the key (401) and quoting the `Authorization` header it got.
fn opsgenie_refusing_answer(s: &Seen) -> String {
    serde_json::json!({
        "message": format!("Could not authenticate {}", s.header("authorization")),
        "took": 0.0,
    })
    .to_string()
}

fn wait(what: &str, timeout: Duration, mut done: impl FnMut() -> bool, log: impl Fn() -> String) {
    let t = Instant::now();
    while !done() {
        assert!(
            t.elapsed() < timeout,
            "timed out waiting for {what}:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn write_config(
    dir: &Path,
    port: u16,
    target: &str,
    refusing: &str,
    opsgenie: &str,
    smtp: Option<&Smtp>,
    hook: &Webhook,
) {
    let (mail, mail_route) = match smtp {
        Some(smtp) => (
            format!(
                "  - name: mail\n    email:\n      smtp: \"{}\"\n      username: mailer\n      password: \"${{env:CANARY_SECRET}}\"\n      from: canaryd@example.test\n      to: [oncall@example.test]\n      ca_file: \"{}\"\n",
                smtp.addr(),
                smtp.ca_file.display()
            ),
            ", mail",
        ),
        None => (String::new(), ""),
    };
    std::fs::write(
        dir.join("canaryd.yaml"),
        format!(
            "listen: 127.0.0.1:{port}\nstate_dir: state\ncheck_files: [checks.yaml]\n\
receivers:\n  - name: hook\n    webhook: {{url: \"{}\"}}\n  - name: refusing\n    webhook:\n      url: \"http://{refusing}/hook/${{env:CANARY_SECRET}}?t=${{env:CANARY_SECRET}}\"\n      headers: {{X-Api-Key: \"${{env:CANARY_SECRET}}\"}}\n  - name: ops\n    opsgenie: {{api_key: \"${{env:CANARY_SECRET}}\", url: \"http://{opsgenie}\"}}\n{mail}\
routes:\n  - receivers: [hook, refusing, ops{mail_route}]\n",
            hook.url()
        ),
    )
    .unwrap();
    let url =
        format!("http://{target}/p/${{env:CANARY_SECRET}}/x?k=${{env:CANARY_SECRET}}&plain=1");
    std::fs::write(
        dir.join("checks.yaml"),
        format!(
            "checks:
  - name: echo
    interval: 2s
    timeout: 1500ms
    http:
      steps:
        - name: fetch
          request:
            url: \"{url}\"
            headers: {{X-Api-Key: \"${{env:CANARY_SECRET}}\"}}
          expect: {{status: 200}}
          extract:
            seen: {{json: \"$.seen_key\"}}
            b64: {{json: \"$.b64\"}}
        - name: judge
          request:
            url: \"{url}\"
            headers: {{X-Api-Key: \"${{env:CANARY_SECRET}}\"}}
          expect:
            status: 200
            json:
              \"$.seen_key\": nope
              \"$.b64\": nope
              \"$.ascii\": nope
              \"$.pct\": nope
    alerts:
      - name: EchoFailing
        when: failed
        consecutive: 1
        annotations: {{summary: \"echo failed: ${{message}}\"}}
      # The default summary and the payloads' `message` and `values` carry the evidence too.
      - {{name: EchoEvidence, when: failed, consecutive: 1}}
  - name: nightly
    heartbeat:
      every: 1h
      token: \"${{env:CANARY_TOKEN}}\"
"
        ),
    )
    .unwrap();
}

#[test]
fn a_canary_secret_never_shows_in_any_output() {
    let secret = canary();
    // A bearer token has no whitespace; everything else of the canary stays.
    let token = secret.replace(' ', "_");
    let dir = tempfile::tempdir().unwrap();
    let (target, target_seen) = echo_server(200, target_answer);
    let (refusing, refusing_seen) = echo_server(400, refusing_receiver_answer);
    let (opsgenie, opsgenie_seen) = echo_server(401, opsgenie_refusing_answer);
    let smtp = Smtp::start("mailer", &secret);
    let hook = Webhook::start();
    let port = free_port();
    write_config(
        dir.path(),
        port,
        &target,
        &refusing,
        &opsgenie,
        smtp.as_ref(),
        &hook,
    );
    let config = dir.path().join("canaryd.yaml");

    let mut cmd = canaryd_run(&config);
    cmd.current_dir(dir.path())
        .env("CANARY_SECRET", &secret)
        .env("CANARY_TOKEN", &token)
        .env("RUST_LOG", "trace");
    let mut d = Canaryd::start(cmd, &format!("127.0.0.1:{port}")).expect("canaryd starts");

    // A heartbeat ping whose body logs the token in several encodings.
    let ping_body = format!(
        "curl -H 'Authorization: Bearer {token}' ...\n{{\"token\":\"{}\"}}\n?token={}\nb64={}\nexit 0\n",
        json_escaped(&token),
        percent(&token, true, false),
        BASE64.encode(token.as_bytes()),
    );
    let auth = format!("Bearer {token}");
    let r = http_request(
        "POST",
        &d.url("/ping/nightly"),
        &[("authorization", &auth), ("content-type", "text/plain")],
        Some(ping_body.as_bytes()),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    let log = || d_log_tail(&d);
    wait(
        "an alert at the webhook and a refusal logged",
        Duration::from_secs(30),
        || {
            !hook.requests().is_empty()
                && !refusing_seen.lock().unwrap().is_empty()
                && !opsgenie_seen.lock().unwrap().is_empty()
                && smtp.as_ref().is_none_or(|s| !s.mails().is_empty())
                && d.log_tail(100000)
                    .contains("notification refused by the receiver")
        },
        log,
    );

    // (c) The secret reached the target decoded exactly as set, in the path and in the query.
    let seen = target_seen.lock().unwrap().clone();
    let first = seen.first().expect("the target was called");
    let (path, query) = first.target.split_once('?').unwrap();
    let segs: Vec<&str> = path.split('/').collect();
    assert_eq!(segs.len(), 4, "the secret stays one path segment: {path}");
    assert_eq!(percent_decode(segs[2]), secret);
    let k = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("k="))
        .unwrap();
    assert_eq!(percent_decode(k), secret, "the query value arrives whole");
    assert!(
        query.ends_with("&plain=1"),
        "no parameter was added: {query}"
    );
    assert_eq!(first.header("x-api-key"), secret);
    // The refusing receiver also got the secret whole in its path and query.
    let r0 = refusing_seen.lock().unwrap()[0].clone();
    let (rpath, rquery) = r0.target.split_once('?').unwrap();
    assert_eq!(percent_decode(rpath.trim_start_matches("/hook/")), secret);
    assert_eq!(percent_decode(rquery.trim_start_matches("t=")), secret);

    // The Opsgenie API got the key whole; the SMTP server authenticated the password (it
    // accepts no other) and got the mail.
    assert_eq!(
        opsgenie_seen.lock().unwrap()[0].header("authorization"),
        format!("GenieKey {secret}")
    );
    if let Some(smtp) = &smtp {
        let mails = smtp.mails();
        assert_eq!(mails[0].envelope["auth_user"], "mailer");
        for m in &mails {
            assert_clean("the mail", &m.raw, &[&secret, &token]);
            assert_clean(
                "the decoded mail",
                &m.envelope.to_string(),
                &[&secret, &token],
            );
        }
    }

    // Every output, in every encoding.
    let checks = http_get(&d.url("/api/v1/checks")).unwrap().text();
    assert!(
        checks.contains("<redacted>"),
        "the echo is shown redacted: {checks}"
    );
    assert!(checks.contains("exit 0"), "the ping body is kept: {checks}");
    assert_clean("/api/v1/checks", &checks, &[&secret, &token]);
    let alerts = http_get(&d.url("/api/v1/alerts")).unwrap().text();
    assert!(alerts.contains("EchoFailing"), "{alerts}");
    assert_clean("/api/v1/alerts", &alerts, &[&secret, &token]);
    assert_clean(
        "/metrics",
        &http_get(&d.url("/metrics")).unwrap().text(),
        &[&secret, &token],
    );
    for req in hook.requests() {
        assert_clean("the webhook payload", &req.text(), &[&secret, &token]);
        assert_clean(
            "the webhook headers",
            &format!("{:?}", req.headers),
            &[&secret, &token],
        );
    }
    d.stop(Duration::from_secs(10));
    let full_log = d.log_tail(1_000_000);
    assert!(
        full_log.contains("notification refused by the receiver, dropped: HTTP 400: {")
            && full_log.contains("\"error\":\"bad key <redacted>\"")
            && full_log
                .contains("HTTP 401: {\"message\":\"Could not authenticate GenieKey <redacted>\""),
        "the refusal is logged with a redacted excerpt:\n{}",
        tail(&full_log)
    );
    assert_clean("the daemon's log at trace", &full_log, &[&secret, &token]);
    // (e) Other crates' logs stay at warn under a bare RUST_LOG=trace.
    for line in full_log.lines() {
        if !["TRACE", "DEBUG", " INFO"].iter().any(|l| line.contains(l)) {
            continue;
        }
        for krate in [
            "hyper",
            "hyper_util",
            "rustls",
            "tokio_rustls",
            "reqwest",
            "h2",
            "html5ever",
            "selectors",
            "axum",
            "tower",
            "rusqlite",
        ] {
            assert!(
                !line.contains(&format!(" {krate}::")) && !line.contains(&format!(" {krate}: ")),
                "a third-party log line below warn: {line}"
            );
        }
    }
    assert!(
        full_log.contains("TRACE") || full_log.contains("DEBUG"),
        "canaryd's own logs follow RUST_LOG=trace:\n{}",
        tail(&full_log)
    );

    // `canaryd probe`, with and without --show-values.
    for show in [false, true] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_canaryd"));
        cmd.args(["probe", "--config"])
            .arg(&config)
            .arg("echo")
            .current_dir(dir.path())
            .env("CANARY_SECRET", &secret)
            .env("CANARY_TOKEN", &token)
            .env("RUST_LOG", "trace")
            .env("NO_COLOR", "1");
        if show {
            cmd.arg("--show-values");
        }
        let out = cmd.output().unwrap();
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "the judge step fails: {text}");
        assert!(text.contains("expected $.seen_key to be"), "{text}");
        if show {
            assert!(
                text.contains("seen") && text.contains("<redacted>"),
                "{text}"
            );
        }
        assert_clean(
            if show {
                "canaryd probe --show-values"
            } else {
                "canaryd probe"
            },
            &text,
            &[&secret, &token],
        );
    }
}

fn d_log_tail(d: &Canaryd) -> String {
    d.log_tail(60)
}

fn tail(s: &str) -> &str {
    &s[s.len().saturating_sub(4000)..]
}
