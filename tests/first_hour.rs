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
    let mut child = cmd.spawn().unwrap();
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
