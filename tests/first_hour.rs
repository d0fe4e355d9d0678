//! What a new user meets in the first hour, each behaviour as they would see it: log lines a
//! collector can read.

mod services;

use std::process::{Command, Stdio};
use std::time::Duration;

use services::free_port;

/// Runs `canaryd run` on a check that fails, for a little over one interval, with `args`;
/// returns what it wrote to stderr (a pipe: not a terminal).
fn daemon_log(args: &[&str], env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("canaryd.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{}\nchecks:\n  - name: db\n    interval: 1s\n    tcp: {{target: \"127.0.0.1:{}\"}}\n",
            free_port(),
            free_port()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_canaryd"));
    cmd.args(["run", "--config"])
        .arg(&config)
        .args(args)
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn logs_are_json_or_logfmt_on_request_and_never_coloured_off_a_terminal() {
    let json = daemon_log(&["--log.format", "json"], &[]);
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let failed = lines
        .iter()
        .find(|l| l["fields"]["message"] == "check failed")
        .unwrap_or_else(|| panic!("no check failed line:\n{json}"));
    assert_eq!(failed["fields"]["check"], "db");
    assert_eq!(failed["fields"]["reason"], "connect");
    assert!(failed["fields"]["error"]
        .as_str()
        .unwrap()
        .contains("connection refused"));
    assert_eq!(failed["level"], "INFO");

    let logfmt = daemon_log(&["--log.format", "logfmt"], &[]);
    let line = logfmt
        .lines()
        .find(|l| l.contains("msg=\"check failed\""))
        .unwrap_or_else(|| panic!("no check failed line:\n{logfmt}"));
    assert!(line.starts_with("ts=20"), "{line}");
    assert!(line.contains(" level=info target=canaryd::daemon msg=\"check failed\" check=db reason=connect error=\""), "{line}");
    for l in logfmt.lines() {
        assert!(
            l.starts_with("ts=") && l.contains(" level="),
            "every line is logfmt: {l}"
        );
    }

    // The default format, written to a pipe (a file, journald): no escape codes; NO_COLOR does
    // not change that.
    for env in [&[][..], &[("NO_COLOR", "1")][..]] {
        let text = daemon_log(&[], env);
        assert!(text.contains("check failed"), "{text}");
        assert!(
            !text.contains('\u{1b}'),
            "colour escapes in a log file:\n{text:?}"
        );
    }
}

#[test]
fn metrics_carry_process_figures_build_facts_check_labels_and_no_always_zero_series() {
    use services::{canaryd_run, http_get, Canaryd, Redis};
    let Some(redis) = Redis::start() else { return };
    // A Sidekiq layout with one retrying job: the `_all` pseudo-queue holds retries and dead
    // jobs, never waiting ones.
    redis.cmd(&["SADD", "queues", "default"]);
    redis.cmd(&["ZADD", "retry", "1", "{\"jid\":\"a\",\"class\":\"X\"}"]);
    let dir = tempfile::tempdir().unwrap();
    let api = format!("127.0.0.1:{}", free_port());
    std::fs::write(
        dir.path().join("canaryd.yaml"),
        format!(
            "listen: {api}\nchecks:\n  - name: jobs\n    interval: 1s\n    labels: {{team: payments, service: billing}}\n    queue: {{system: sidekiq, redis: \"{}\"}}\n",
            redis.url()
        ),
    )
    .unwrap();
    let daemon = Canaryd::start(canaryd_run(&dir.path().join("canaryd.yaml")), &api).unwrap();
    let mut text = String::new();
    for _ in 0..50 {
        text = http_get(&daemon.url("/metrics")).unwrap().text();
        if text.contains("canary_queue_depth{") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix}:\n{text}"))
    };
    let rss = value("process_resident_memory_bytes ");
    assert!((1e6..2e9).contains(&rss), "resident memory {rss}");
    assert!(value("process_cpu_seconds_total ") > 0.0);
    assert!(value("process_open_fds ") >= 3.0);
    assert!(value("process_max_fds ") >= value("process_open_fds "));
    let started = value("process_start_time_seconds ");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        now - started < 60.0 && now >= started - 1.0,
        "started {started}, now {now}"
    );
    assert!(value("process_virtual_memory_bytes ") >= rss);

    let build = text
        .lines()
        .find(|l| l.starts_with("canaryd_build_info{"))
        .unwrap();
    assert!(
        build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{build}"
    );
    assert!(
        build.contains("revision=\"") && build.contains("rustversion=\"1."),
        "{build}"
    );
    assert!(
        text.contains(
            r#"canary_check_info{check="jobs",kind="queue",service="billing",team="payments"} 1"#
        ),
        "{text}"
    );
    // The pseudo-queue's depths are real; an oldest-job age it cannot have is not exported.
    assert!(
        text.contains(
            r#"canary_queue_depth{check="jobs",system="sidekiq",queue="_all",state="retry"} 1"#
        ),
        "{text}"
    );
    assert!(
        !text.contains(
            r#"canary_queue_oldest_job_age_seconds{check="jobs",system="sidekiq",queue="_all"}"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"canary_queue_oldest_job_age_seconds{check="jobs",system="sidekiq",queue="default"} 0"#),
        "{text}"
    );
}

fn canaryd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn bash_completes_commands_and_flags_and_the_man_page_renders() {
    let script = canaryd(&["completion", "bash"]);
    assert!(script.status.success());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("canaryd.bash");
    std::fs::write(&path, &script.stdout).unwrap();
    // What bash offers after `canaryd inc<TAB>` and `canaryd incident <TAB>`, as readline
    // would ask the completion function.
    let complete = |words: &str, cword: usize| {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE=\"{words}\"; COMP_POINT=${{#COMP_LINE}}; _canaryd canaryd \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                path.display()
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(complete("canaryd inc", 1).trim(), "incident");
    let sub = complete("canaryd incident ''", 2);
    for s in ["open", "update", "resolve", "list"] {
        assert!(sub.lines().any(|l| l == s), "{sub}");
    }
    let flags = complete("canaryd run --", 2);
    for f in ["--config", "--shard", "--web.config.file", "--log.format"] {
        assert!(flags.lines().any(|l| l == f), "{flags}");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = canaryd(&["completion", shell]);
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("incident"));
    }

    // The man page as man shows it.
    let man = canaryd(&["man"]);
    assert!(man.status.success());
    let rendered = Command::new("groff")
        .args(["-man", "-Tutf8", "-P-cbou"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut g| {
            use std::io::Write as _;
            g.stdin.take().unwrap().write_all(&man.stdout)?;
            g.wait_with_output()
        });
    match rendered {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            for s in [
                "NAME",
                "SYNOPSIS",
                "SUBCOMMANDS",
                "canaryd-incident(1)",
                "--log.format",
            ] {
                assert!(text.contains(s), "{s} missing from the man page:\n{text}");
            }
        }
        Err(e) => assert!(!services::under_ci(), "CI=true: groff: {e}"),
    }
    let pages = tempfile::tempdir().unwrap();
    let out = canaryd(&["man", "--out-dir", pages.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for page in [
        "canaryd.1",
        "canaryd-run.1",
        "canaryd-incident.1",
        "canaryd-incident-open.1",
    ] {
        let text = std::fs::read_to_string(pages.path().join(page)).unwrap();
        assert!(text.contains(".TH "), "{page}");
    }
}

/// `canaryd check` with nothing in the environment but `PATH`, as in a CI job without secrets.
fn check_clean_env(args: &[&str], dir: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .arg("check")
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn check_validates_without_secrets_in_ci_and_reports_each_missing_secret_once() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // The shipped example and every file in checks/ (it loads ../checks/*.yaml).
    let (code, out) = check_clean_env(&["--config", "examples/canaryd.yaml", "--no-secrets"], repo);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("examples/canaryd.yaml: ok:"), "{out}");
    assert!(
        out.contains("secrets not read (--no-secrets): ${env:PAGERDUTY_ROUTING_KEY}"),
        "{out}"
    );
    let example = std::fs::read_to_string(repo.join("examples/canaryd.yaml")).unwrap();
    assert!(
        example.contains("../checks/*.yaml"),
        "the example loads every check file"
    );

    let dir = tempfile::tempdir().unwrap();
    let write = |yaml: &str| std::fs::write(dir.path().join("canaryd.yaml"), yaml).unwrap();
    // A typo'd glob is an error, secrets or not.
    write("check_files: [chekcs/*.yaml]\n");
    let (code, out) = check_clean_env(&["--no-secrets"], dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("canaryd.yaml:1:15: check_files: pattern \"chekcs/*.yaml\" matches no file"),
        "{out}"
    );

    // Structure is still checked without secrets: a bad expression fails.
    let config = r#"receivers:
  - name: oncall
    pagerduty: {routing_key: "${env:PD_KEY}"}
routes:
  - receivers: [oncall]
checks:
  - name: a
    tcp: {target: "127.0.0.1:1"}
    alerts:
      - name: Down
        when: failed &&
  - name: q1
    queue: {system: rq, redis: "${env:REDIS_URL}"}
  - name: q2
    queue: {system: rq, redis: "${env:REDIS_URL}"}
  - name: q3
    queue: {system: rq, redis: "${env:REDIS_URL}"}
"#;
    write(config);
    let (code, out) = check_clean_env(&["--no-secrets"], dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("checks[0].alerts[0].when"), "{out}");
    assert_eq!(out.matches("secret source").count(), 0, "{out}");

    // With secrets read: each unset one once, where else it is used, no cascade of unknown
    // receivers.
    write(&config.replace("failed &&", "failed"));
    let (code, out) = check_clean_env(&[], dir.path());
    assert_eq!(code, 1, "{out}");
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("canaryd.yaml:"))
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("${env:PD_KEY}: environment variable PD_KEY is not set")),
        "{out}"
    );
    let redis = lines
        .iter()
        .find(|l| l.contains("${env:REDIS_URL}"))
        .unwrap();
    assert!(
        redis.contains("canaryd.yaml:13:")
            && redis.ends_with("(also used at canaryd.yaml:15:32, canaryd.yaml:17:32)"),
        "{redis}"
    );
    assert!(!out.contains("unknown receiver"), "{out}");
    assert!(out.contains("2 errors found"), "{out}");
}

#[test]
fn small_frictions_are_gone() {
    use services::{canaryd_run, http_get, Canaryd};
    let dir = tempfile::tempdir().unwrap();
    // Something that accepts connections: a passing tcp check.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap();
    let api = format!("127.0.0.1:{}", free_port());
    std::fs::write(dir.path().join("checks.yaml"), format!(
        "checks:\n  - name: port\n    interval: 1s\n    tcp: {{target: \"{target}\"}}\n    alerts:\n      - name: Down\n        when: failed\n        for: 2m\n      - name: Flapping\n        when: failed\n        consecutive: 3\n"
    )).unwrap();
    let config = dir.path().join("canaryd.yaml");
    std::fs::write(
        &config,
        format!("listen: {api}\ncheck_files: [checks.yaml]\n"),
    )
    .unwrap();

    // `check`: singular words, and a note that nobody gets paged.
    let out = canaryd(&["check", "--config", config.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(": ok: 1 check in 1 check file\n"), "{text}");
    assert!(
        text.contains(
            "note: no receivers: alerts show in /api/v1/alerts and /metrics but page nobody"
        ),
        "{text}"
    );

    // `probe` of a passing tcp check: "ok", not "no response".
    let out = canaryd(&["probe", "--config", config.to_str().unwrap(), "port"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("  ok in ") && !text.contains("no response"),
        "{text}"
    );
    // ... and what it means for the check's alert rules.
    assert!(
        text.contains("\nalert Down (critical): does not hold\n"),
        "{text}"
    );
    assert!(
        text.contains("\nalert Flapping (critical): does not hold\n"),
        "{text}"
    );

    // The daemon: a warning when nothing would page; JSON 404s under /api/; the rules' timing
    // in /api/v1/checks.
    let mut cmd = canaryd_run(&config);
    cmd.current_dir(dir.path());
    let mut daemon = Canaryd::start(cmd, &api).unwrap();
    let r = http_get(&daemon.url("/api/v1/nope")).unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "no such endpoint");
    let r = http_get(&daemon.url("/api/v1/checks/port")).unwrap();
    let alerts = &r.json()["alerts"];
    assert_eq!(alerts[0]["for_seconds"], 120.0, "{alerts}");
    assert_eq!(alerts[1]["consecutive"], 3, "{alerts}");
    daemon.stop(Duration::from_secs(5));
    assert!(
        daemon.log_tail(50).contains("no receivers configured"),
        "{}",
        daemon.log_tail(50)
    );

    // A state_dir that is a file says so.
    std::fs::write(
        &config,
        format!("listen: {api}\nstate_dir: checks.yaml\ncheck_files: [checks.yaml]\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("checks.yaml: it exists and is not a directory"),
        "{err}"
    );
    drop(listener);
}

/// A server that answers every request 200 with a login page that says the password was wrong,
/// echoing the request's `X-Token` header into the page (as a debug page might).
fn wrong_password_page() -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut reader = BufReader::new(s.try_clone().unwrap());
            let mut token = String::new();
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                if let Some(v) = line
                    .strip_prefix("X-Token: ")
                    .or_else(|| line.strip_prefix("x-token: "))
                {
                    token = v.trim().to_string();
                }
                line.clear();
            }
            let body = format!(
                "<html><body><form><p class=\"error\">Please enter a correct username and password.</p>\n<!-- debug: token={token} --></form></body></html>"
            );
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

#[test]
fn probe_shows_what_came_back_when_an_assertion_or_extraction_fails_with_secrets_redacted() {
    const TOKEN: &str = "tok-Excerpt-Canary-93b1";
    let addr = wrong_password_page();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("canaryd.yaml");
    std::fs::write(
        &config,
        format!(
            r#"checks:
  - name: login
    http:
      request: {{url: "http://{addr}/login", headers: {{X-Token: "${{env:EXCERPT_TOKEN}}"}}}}
      expect: {{status: 200, body_contains: "Sign out"}}
  - name: csrf
    http:
      request: {{url: "http://{addr}/login"}}
      extract:
        csrf: {{css: 'input[name="csrfmiddlewaretoken"]', attr: value}}
"#
        ),
    )
    .unwrap();
    for check in ["login", "csrf"] {
        let out = Command::new(env!("CARGO_BIN_EXE_canaryd"))
            .args(["probe", "--config"])
            .arg(&config)
            .arg(check)
            .env("EXCERPT_TOKEN", TOKEN)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(text.contains("  response body:\n"), "{text}");
        assert!(
            text.contains("  | <html><body><form><p class=\"error\">Please enter a correct username and password.</p>"),
            "{text}"
        );
        assert!(!text.contains(TOKEN), "the secret leaked:\n{text}");
        if check == "login" {
            assert!(text.contains("  | <!-- debug: token="), "{text}");
        }
    }
}

#[test]
fn a_silence_that_matches_nothing_says_so_and_cron_jobs_can_add_silences() {
    use services::{canaryd_run, http_post, Canaryd};
    let dir = tempfile::tempdir().unwrap();
    let api = format!("127.0.0.1:{}", free_port());
    let config = dir.path().join("canaryd.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: {api}\nchecks:\n  - name: shop-login\n    interval: 1m\n    labels: {{team: web}}\n    tcp: {{target: \"127.0.0.1:{}\"}}\n",
            free_port()
        ),
    )
    .unwrap();
    let mut cmd = canaryd_run(&config);
    cmd.current_dir(dir.path());
    let daemon = Canaryd::start(cmd, &api).unwrap();
    let add = |matchers: &str| {
        let body = format!(
            r#"{{"matchers": {matchers}, "duration": "1h", "created_by": "me", "comment": "test"}}"#
        );
        let r = http_post(
            &daemon.url("/api/v1/silences"),
            "application/json",
            body.as_bytes(),
        )
        .unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["warnings"].clone()
    };
    let w = add(r#"{"tema": "web"}"#);
    assert!(
        w[0].as_str().unwrap().starts_with("no alert carries the label \"tema\", so this silence matches nothing now (labels in use: alertname, check, severity, team)"),
        "{w}"
    );
    let w = add(r#"{"check": "shop-lgoin"}"#);
    assert_eq!(
        w[0],
        "no alert has check=\"shop-lgoin\", so this silence matches nothing now"
    );
    assert_eq!(
        add(r#"{"check": "shop-*", "team": "web"}"#),
        serde_json::json!([])
    );

    // From cron or a container: no $USER, no $LOGNAME; the CLI still adds it, and says when it
    // matches nothing.
    let out = Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .args([
            "silence",
            "add",
            "--match",
            "tema=web",
            "--duration",
            "10m",
            "--comment",
            "deploy",
            "--config",
        ])
        .arg(&config)
        .env_remove("USER")
        .env_remove("LOGNAME")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("silence ") && stdout.contains(" added: tema=web until "),
        "{stdout}"
    );
    assert!(
        stderr.contains("warning: no alert carries the label \"tema\""),
        "{stderr}"
    );
    let list = services::http_get(&daemon.url("/api/v1/silences"))
        .unwrap()
        .json();
    assert!(
        list["silences"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["created_by"] == "canaryd-cli"),
        "{list}"
    );
}
