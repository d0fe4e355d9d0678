//! Who may change state through the API, through the real binary: without a web configuration a
//! silence from loopback works and one from a non-loopback peer (a daemon bound inside a network
//! namespace this test creates) is refused; requests a browser could send cross-site are refused
//! and change nothing; every request, refused ones included, is counted in
//! `canaryd_http_requests_total{handler,code}`; `canaryd silence` says what to do on a 403 and
//! works without `$USER`, talks HTTPS with `--ca-file` and sends basic-auth credentials from a
//! password file.

mod adversary;
mod services;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use adversary::{Behavior, ClientPki, Reply, Server, TlsSetup};
use serde_json::{json, Value};
use services::{canaryd_run, free_port, Canaryd};

const CHECKS: &str = "checks:
  - name: nightly-backup
    interval: 1h
    heartbeat: {every: 1h}
";

fn write_config(dir: &Path, listen: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("checks.yaml"), CHECKS).unwrap();
    let config = dir.join("canaryd.yaml");
    std::fs::write(
        &config,
        format!("listen: {listen}\nstate_dir: state\ncheck_files: [checks.yaml]\n"),
    )
    .unwrap();
    config
}

/// One HTTP/1.1 exchange with exactly the headers given (the test chooses `Host`): status and
/// body.
fn raw(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    services::parse_http_answer(&buf)
}

fn silence_body() -> String {
    json!({
        "matchers": {"check": "*"},
        "duration": "8760h",
        "created_by": "mallory",
        "comment": "shh",
    })
    .to_string()
}

fn silences(addr: &str) -> Vec<Value> {
    let (code, body) = raw(addr, "GET", "/api/v1/silences", &[], b"");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["silences"]
        .as_array()
        .unwrap()
        .clone()
}

/// The value of the sample whose line starts with `series` (name and labels as exposed).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn scrape(addr: &str) -> String {
    let (code, body) = raw(addr, "GET", "/metrics", &[], b"");
    assert_eq!(code, 200);
    body
}

fn requests(metrics: &str, handler: &str, code: u16) -> f64 {
    sample(
        metrics,
        &format!("canaryd_http_requests_total{{handler=\"{handler}\",code=\"{code}\"}}"),
    )
    .unwrap_or(0.0)
}

/// A request a browser could send (method, path, headers, body) and what its refusal says.
type Forged<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, &'a [u8], &'a str);

const RELOAD_TS: &str = "canaryd_config_last_reload_timestamp_seconds";

#[test]
fn cross_site_writes_are_refused_change_nothing_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let config = write_config(dir.path(), &addr);
    let d = Canaryd::start(canaryd_run(&config), &addr).unwrap_or_else(|e| panic!("{e}"));
    let before = scrape(&addr);
    let reloaded_at = sample(&before, RELOAD_TS).expect("reload timestamp exported");
    let silence = silence_body();
    let origin_host = format!("http://{addr}");

    // What a web page a colleague opens could make their browser send.
    let refused: [Forged; 7] = [
        (
            "POST",
            "/api/v1/silences",
            vec![
                ("Content-Type", "text/plain"),
                ("Origin", "http://evil.example"),
            ],
            silence.as_bytes(),
            "cross-site request refused",
        ),
        (
            "POST",
            "/api/v1/silences",
            vec![("Content-Type", "text/plain;charset=UTF-8")],
            silence.as_bytes(),
            "Content-Type: application/json",
        ),
        (
            "POST",
            "/api/v1/silences",
            vec![
                ("Content-Type", "application/json"),
                ("Sec-Fetch-Site", "cross-site"),
            ],
            silence.as_bytes(),
            "Sec-Fetch-Site: cross-site",
        ),
        (
            "POST",
            "/api/v1/silences",
            vec![
                ("Origin", "http://evil.example"),
                ("Content-Type", "application/json"),
            ],
            silence.as_bytes(),
            "its Origin is not the host",
        ),
        (
            // DNS rebinding: a foreign name resolving to 127.0.0.1 makes the page "same-origin".
            "POST",
            "/api/v1/silences",
            vec![
                ("Host", "evil.example:9100"),
                ("Origin", "http://evil.example:9100"),
                ("Content-Type", "application/json"),
            ],
            silence.as_bytes(),
            "loopback address",
        ),
        (
            "POST",
            "/-/reload",
            vec![
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Origin", "null"),
                // A refused request's credentials must not reach the log.
                ("Authorization", "Basic YWRtaW46czNjcmV0LWNhbmFyeQ=="),
            ],
            b"",
            "cross-site request refused",
        ),
        (
            "POST",
            "/-/reload",
            vec![("Content-Type", "application/x-www-form-urlencoded")],
            b"a=1",
            "Content-Type: application/json",
        ),
    ];
    for (method, path, headers, body, says) in &refused {
        let (code, answer) = raw(&addr, method, path, headers, body);
        assert_eq!(code, 403, "{method} {path} {headers:?}: {answer}");
        assert!(answer.contains(says), "{headers:?}: {answer}");
    }
    assert_eq!(
        silences(&addr),
        Vec::<Value>::new(),
        "a refused silence was stored"
    );
    let after = scrape(&addr);
    assert_eq!(
        sample(&after, RELOAD_TS),
        Some(reloaded_at),
        "a refused reload ran"
    );
    assert_eq!(requests(&after, "/api/v1/silences", 403), 5.0, "{after}");
    assert_eq!(requests(&after, "/-/reload", 403), 2.0, "{after}");

    // The API's own clients pass: curl -X POST (no body) and JSON, with a same-origin Origin too.
    let (code, answer) = raw(&addr, "POST", "/-/reload", &[], b"");
    assert_eq!(code, 200, "{answer}");
    let (code, answer) = raw(
        &addr,
        "POST",
        "/api/v1/silences",
        &[
            ("Content-Type", "application/json"),
            ("Origin", &origin_host),
        ],
        silence.as_bytes(),
    );
    assert_eq!(code, 201, "{answer}");
    let id = serde_json::from_str::<Value>(&answer).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(silences(&addr).len(), 1);
    let (code, answer) = raw(&addr, "DELETE", &format!("/api/v1/silences/{id}"), &[], b"");
    assert_eq!(code, 200, "{answer}");

    // Unknown paths count under `other`, never under their raw path.
    let (code, _) = raw(&addr, "GET", "/secret-looking-path-c4n4ry", &[], b"");
    assert_eq!(code, 404);
    let end = scrape(&addr);
    assert_ne!(
        sample(&end, RELOAD_TS),
        Some(reloaded_at),
        "the accepted reload is visible"
    );
    assert_eq!(requests(&end, "/-/reload", 200), 1.0, "{end}");
    assert_eq!(requests(&end, "/api/v1/silences", 201), 1.0, "{end}");
    assert_eq!(requests(&end, "/api/v1/silences/{id}", 200), 1.0, "{end}");
    assert_eq!(requests(&end, "other", 404), 1.0, "{end}");
    assert!(requests(&end, "/metrics", 200) >= 2.0, "{end}");
    assert!(!end.contains("c4n4ry"), "a raw path became a label:\n{end}");

    let log = d.log_tail(200);
    assert!(
        log.contains("request refused") && log.contains("handler=/api/v1/silences"),
        "refusals are logged with their handler:\n{log}"
    );
    assert!(log.contains("peer=127.0.0.1"), "{log}");
    for secret in ["YWRtaW46czNjcmV0LWNhbmFyeQ", "s3cret-canary"] {
        assert!(!log.contains(secret), "credentials in the log:\n{log}");
    }
}

/// Runs `script` with sh inside a new network namespace where loopback is up and also holds
/// 10.213.0.1, so a client connecting to that address is a non-loopback peer. `None` when
/// namespaces cannot be made here (never under CI=true: then it panics).
fn in_network_namespace(script: &str, env: &[(&str, &str)]) -> Option<std::process::Output> {
    let setup = "ip link set lo up && ip addr add 10.213.0.1/32 dev lo || exit 90\n";
    let mut cmd = Command::new("unshare");
    cmd.args(["-n", "--", "sh", "-c"])
        .arg(format!("{setup}{script}"));
    cmd.envs(env.iter().copied());
    let out = cmd.output();
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let unavailable = match &out {
        Err(e) => Some(e.to_string()),
        Ok(o)
            if o.status.code() == Some(90)
                || String::from_utf8_lossy(&o.stderr).starts_with("unshare:") =>
        {
            Some(format!(
                "{}: {}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            ))
        }
        Ok(_) => None,
    };
    if let Some(why) = unavailable {
        assert!(!ci, "cannot create a network namespace (unshare -n): {why}");
        eprintln!("skipped: cannot create a network namespace (unshare -n): {why}");
        return None;
    }
    out.ok()
}

#[test]
fn without_a_web_config_writes_come_from_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "0.0.0.0:9100");
    let bin = env!("CARGO_BIN_EXE_canaryd");
    // Each request writes `<name> <status>` to results and its answer to <name>.body.
    let script = r#"
"$CANARYD" run --config "$CONFIG" >"$DIR/log" 2>&1 &
pid=$!
i=0
until curl -fsS -o /dev/null http://127.0.0.1:9100/-/healthy 2>/dev/null; do
  i=$((i+1)); if [ $i -gt 300 ]; then kill $pid; exit 92; fi; sleep 0.1
done
req() { name=$1; shift; printf '%s %s\n' "$name" "$(curl -s -o "$DIR/$name.body" -w '%{http_code}' "$@")" >>"$DIR/results"; }
J='Content-Type: application/json'
req remote_silence -X POST -H "$J" --data-binary "$SILENCE" http://10.213.0.1:9100/api/v1/silences
req remote_reload -X POST http://10.213.0.1:9100/-/reload
req remote_read http://10.213.0.1:9100/api/v1/silences
req remote_ping -X POST http://10.213.0.1:9100/ping/nightly-backup
env -u USER "$CANARYD" silence --url http://10.213.0.1:9100 add -m check=nightly-backup --comment remote >"$DIR/cli_remote.out" 2>&1
echo "cli_remote $?" >>"$DIR/results"
req local_silence -X POST -H "$J" --data-binary "$SILENCE" http://127.0.0.1:9100/api/v1/silences
env -u USER "$CANARYD" silence --url http://127.0.0.1:9100 add -m check=nightly-backup --comment maintenance >"$DIR/cli_local.out" 2>&1
echo "cli_local $?" >>"$DIR/results"
req local_list http://127.0.0.1:9100/api/v1/silences
req metrics http://127.0.0.1:9100/metrics
kill $pid; wait $pid
exit 0
"#;
    let silence = silence_body();
    let Some(out) = in_network_namespace(
        script,
        &[
            ("CANARYD", bin),
            ("CONFIG", config.to_str().unwrap()),
            ("DIR", dir.path().to_str().unwrap()),
            ("SILENCE", &silence),
            ("NO_COLOR", "1"),
        ],
    ) else {
        return;
    };
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    let log = read("log");
    assert!(
        out.status.success(),
        "{}\n{}\n--- canaryd log ---\n{log}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let results = read("results");
    let status = |name: &str| {
        results
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in\n{results}"))
            .to_string()
    };
    assert_eq!(
        status("remote_silence"),
        "403",
        "{}",
        read("remote_silence.body")
    );
    let refusal = read("remote_silence.body");
    assert!(
        refusal.contains("only from loopback")
            && refusal.contains("10.213.0.1")
            && refusal.contains("basic_auth_users"),
        "{refusal}"
    );
    assert_eq!(
        status("remote_reload"),
        "403",
        "{}",
        read("remote_reload.body")
    );
    assert_eq!(status("remote_read"), "200");
    assert_eq!(status("remote_ping"), "200", "pings are not writes");
    assert_eq!(status("cli_remote"), "1");
    let cli = read("cli_remote.out");
    assert!(
        cli.contains("403") && cli.contains("basic_auth_users"),
        "{cli}"
    );
    assert!(
        cli.contains("CANARYD_USERNAME"),
        "the CLI says how to send credentials: {cli}"
    );

    assert_eq!(
        status("local_silence"),
        "201",
        "{}",
        read("local_silence.body")
    );
    assert_eq!(status("cli_local"), "0", "{}", read("cli_local.out"));
    let list: Value = serde_json::from_str(&read("local_list.body")).unwrap();
    let list = list["silences"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let cli_silence = list.iter().find(|s| s["comment"] == "maintenance").unwrap();
    assert!(
        !cli_silence["created_by"].as_str().unwrap().is_empty(),
        "{cli_silence}"
    );

    let metrics = read("metrics.body");
    assert_eq!(
        requests(&metrics, "/api/v1/silences", 403),
        2.0,
        "{metrics}"
    );
    assert_eq!(requests(&metrics, "/-/reload", 403), 1.0, "{metrics}");
    assert_eq!(
        requests(&metrics, "/api/v1/silences", 201),
        2.0,
        "{metrics}"
    );
    assert_eq!(requests(&metrics, "/ping/{check}", 200), 1.0, "{metrics}");
    assert!(log.contains("peer=10.213.0.1"), "{log}");
}

/// `canaryd silence` against a TLS server that records what it receives, with the given reply;
/// the password comes from a file, `$USER` and `$LOGNAME` are unset.
fn cli_over_tls(reply: Reply, ca: bool) -> (std::process::Output, Server, String) {
    let server = Server::start_tls(Behavior::Reply(reply), TlsSetup::default());
    let dir = tempfile::tempdir().unwrap();
    let password = "pw-c4n4ry-9f2".to_string();
    let file = dir.path().join("password");
    std::fs::write(&file, format!("{password}\n")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_canaryd"));
    cmd.args(["silence", "--url", &server.url("")]);
    if ca {
        cmd.arg("--ca-file").arg(server.ca_file());
    }
    cmd.args([
        "add",
        "-m",
        "check=nightly-backup",
        "--comment",
        "maintenance",
    ])
    .env_remove("USER")
    .env_remove("LOGNAME")
    .env_remove("CANARYD_PASSWORD")
    .env("CANARYD_USERNAME", "ana")
    .env("CANARYD_PASSWORD_FILE", &file)
    .env("NO_COLOR", "1");
    (cmd.output().unwrap(), server, password)
}

#[test]
fn the_cli_talks_https_with_a_ca_file_and_sends_credentials_from_a_file() {
    let created = json!({"id": "0b1c", "ends_at": "2026-12-04T00:00:00Z"}).to_string();
    let (out, server, password) = cli_over_tls(
        Reply::new(201)
            .header("Content-Type", "application/json")
            .body(created),
        true,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("silence 0b1c added"), "{stdout}");
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let r = &requests[0];
    assert_eq!(
        (r.method.as_str(), r.target.as_str()),
        ("POST", "/api/v1/silences")
    );
    let expected = format!(
        "Basic {}",
        data_encoding::BASE64.encode(format!("ana:{password}").as_bytes())
    );
    assert_eq!(r.header("authorization"), Some(expected.as_str()));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    // No $USER: the basic-auth user, not an empty created_by the daemon would refuse.
    assert_eq!(body["created_by"], "ana", "{body}");
    assert!(!stdout.contains(&password) && !stderr.contains(&password));

    // Without the CA file the server's certificate is not trusted: nothing is sent.
    let (out, server, _) = cli_over_tls(Reply::new(201), false);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach the daemon"), "{stderr}");
    assert!(server.requests().is_empty());
}

#[test]
fn the_cli_says_what_to_do_on_401_without_echoing_the_password() {
    let (out, _server, password) = cli_over_tls(
        Reply::new(401)
            .header("WWW-Authenticate", "Basic realm=\"canaryd\"")
            .body("Unauthorized\n"),
        true,
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("401")
            && stderr.contains("CANARYD_PASSWORD_FILE")
            && stderr.contains("basic_auth_users"),
        "{stderr}"
    );
    assert!(!stderr.contains(&password), "{stderr}");
}

#[test]
fn the_cli_presents_a_client_certificate_when_the_daemon_requires_one() {
    let pki = ClientPki::generate();
    let listed = json!({"silences": []}).to_string();
    let server = Server::start_tls(
        Behavior::Reply(
            Reply::new(200)
                .header("Content-Type", "application/json")
                .body(listed),
        ),
        TlsSetup {
            client_ca_file: Some(pki.ca_file.clone()),
            ..TlsSetup::default()
        },
    );
    let list = |client_cert: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_canaryd"));
        cmd.args(["silence", "--url", &server.url("")])
            .arg("--ca-file")
            .arg(server.ca_file());
        if client_cert {
            cmd.arg("--cert-file")
                .arg(&pki.cert_file)
                .arg("--key-file")
                .arg(&pki.key_file);
        }
        cmd.arg("list").env("NO_COLOR", "1").output().unwrap()
    };
    let out = list(false);
    assert_eq!(out.status.code(), Some(1), "no certificate, no answer");
    assert!(server.requests().is_empty());
    let out = list(true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ID "));
    assert_eq!(server.requests().len(), 1);
}
