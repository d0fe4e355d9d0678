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
