//! `checks/django-admin.yaml` against a real Django admin (Django from the test venv, `runserver`
//! on a free port, an empty SQLite database and one superuser): the example SREs copy logs in,
//! and when the password is wrong or the CSRF token is not sent, the probe fails at step "submit"
//! and says why. The password is a canary that appears in no output.

mod services;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use canaryd::probe::{CheckResult, Reason};
use canaryd::schedule::{run_once, Entry};
use services::{http_get, run_ok, secs, Worker};
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_canaryd");
/// The example check, as shipped.
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/checks/django-admin.yaml");
/// The base_url written in the example (runserver's default), replaced by the test server's.
const EXAMPLE_BASE_URL: &str = "http://127.0.0.1:8000";
/// The superuser the example logs in as.
const USERNAME: &str = "canary-probe";
/// The superuser's password; it must appear in no output.
const PASSWORD: &str = "django-canary-pw-Vx83Kq";
/// A wrong password, just as secret.
const WRONG_PASSWORD: &str = "django-wrong-pw-Jm27Rt";

/// A Django admin on a free loopback port, over a fresh database. Killed on drop.
struct Django {
    _server: Worker,
    /// Holds the database; removed on drop.
    dir: TempDir,
    base_url: String,
}

impl Django {
    /// Migrates a new database, creates the superuser and starts `runserver`; `None` (skipped)
    /// when the venv is missing outside CI.
    fn start() -> Option<Django> {
        let python = services::venv_python()?;
        let dir = tempfile::Builder::new()
            .prefix("canaryd-test-django-")
            .tempdir()
            .unwrap();
        let manage = |args: &[&str]| {
            let mut cmd = Command::new(&python);
            cmd.current_dir(services::repo_root().join("tests/django"))
                .arg("manage.py")
                .args(args)
                .env("CANARYD_DJANGO_DIR", dir.path())
                .env("PYTHONDONTWRITEBYTECODE", "1"); // nothing written into tests/django
            cmd
        };
        run_ok(
            "django-migrate",
            manage(&["migrate", "--noinput", "-v0"]),
            secs(60),
        );
        let mut create = manage(&[
            "createsuperuser",
            "--noinput",
            "--username",
            USERNAME,
            "--email",
            "probe@example.com",
        ]);
        create.env("DJANGO_SUPERUSER_PASSWORD", PASSWORD);
        run_ok("django-createsuperuser", create, secs(60));

        // Another process may take the free port before runserver binds it: then a new port.
        for _ in 0..3 {
            let port = services::free_port();
            let addr = format!("127.0.0.1:{port}");
            let mut server = Worker::spawn(
                "django-runserver",
                manage(&["runserver", &addr, "--noreload"]),
            );
            let base_url = format!("http://{addr}");
            let login = format!("{base_url}/admin/login/");
            let deadline = Instant::now() + secs(30);
            loop {
                if let Some(status) = server.exited() {
                    let log = server.log();
                    assert!(
                        log.contains("already in use"),
                        "runserver exited ({status}):\n{log}"
                    );
                    break;
                }
                if http_get(&login).is_ok_and(|r| r.status == 200) {
                    return Some(Django {
                        _server: server,
                        dir,
                        base_url,
                    });
                }
                assert!(
                    Instant::now() < deadline,
                    "runserver not answering on {addr} after 30s:\n{}",
                    server.log_tail(40)
                );
                sleep(Duration::from_millis(50));
            }
        }
        panic!("runserver found no free port in 3 tries");
    }

    /// Writes a canaryd configuration whose only check file is the example, pointed at this
    /// server and passed through `edit`; returns the path of `canaryd.yaml`.
    fn config(&self, name: &str, edit: impl FnOnce(String) -> String) -> PathBuf {
        let example = std::fs::read_to_string(EXAMPLE).unwrap();
        assert_eq!(example.matches(EXAMPLE_BASE_URL).count(), 1, "{example}");
        let checks = edit(example.replace(EXAMPLE_BASE_URL, &self.base_url));
        let dir = self.dir.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("django-admin.yaml"), checks).unwrap();
        std::fs::write(
            dir.join("canaryd.yaml"),
            "check_files: [django-admin.yaml]\n",
        )
        .unwrap();
        dir.join("canaryd.yaml")
    }
}

/// What a user sees of one run: `canaryd probe` (stdout, stderr at trace level, exit code), and
/// the same run through the library (the result the daemon records and the API serves).
struct Seen {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    result: CheckResult,
}

impl Seen {
    /// Every text a user could read: probe output, trace logs, the API's JSON, the message.
    fn everything(&self) -> String {
        format!(
            "{}\n{}\n{}\n{:?}",
            self.stdout,
            self.stderr,
            canaryd::server::result_json(&self.result),
            self.result
        )
    }

    fn assert_no_password(&self) {
        let all = self.everything();
        for secret in [PASSWORD, WRONG_PASSWORD] {
            assert!(!all.contains(secret), "a password leaked:\n{all}");
        }
    }
}

/// Runs check `django-admin` of `config` once with `password` in `DJANGO_PROBE_PASSWORD`.
fn probe(config: &Path, password: &str) -> Seen {
    let out = Command::new(BIN)
        .args(["probe", "--config"])
        .arg(config)
        .arg("django-admin")
        .env("DJANGO_PROBE_PASSWORD", password)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();

    // The library reads the secret from this process's environment; the scenarios run one at a
    // time in one test, so nothing else reads it meanwhile.
    std::env::set_var("DJANGO_PROBE_PASSWORD", password);
    let file = config.with_file_name("django-admin.yaml");
    let yaml = std::fs::read_to_string(&file).unwrap();
    let mut checks =
        canaryd::probe::check::load_checks_str(&file, &yaml).unwrap_or_else(|e| panic!("{e}"));
    std::env::remove_var("DJANGO_PROBE_PASSWORD");
    let check = checks.remove(0);
    let probe = canaryd::daemon::build_probe(&check).unwrap();
    let entry = Entry { check, probe };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = rt.block_on(run_once(&entry, tokio::time::Instant::now()));

    Seen {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        result,
    }
}

/// The step statuses of a run (`None`: the step did not run or got no response).
fn statuses(r: &CheckResult) -> Vec<Option<u16>> {
    r.steps.iter().map(|s| s.status).collect()
}

#[test]
fn the_django_admin_example_logs_in_and_explains_each_way_a_login_breaks() {
    let Some(django) = Django::start() else {
        return;
    };
    the_example_validates(&django);
    the_right_password_reaches_the_admin_index(&django);
    a_wrong_password_fails_at_submit_with_djangos_message(&django);
    without_the_csrf_token_submit_fails_with_djangos_csrf_rejection(&django);
}

fn the_example_validates(django: &Django) {
    let config = django.config("validate", |c| c);
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&config)
        .env("DJANGO_PROBE_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains(": ok: 1 check in 1 check file\n"),
        "{stdout}"
    );
}

fn the_right_password_reaches_the_admin_index(django: &Django) {
    let seen = probe(&django.config("login", |c| c), PASSWORD);
    assert_eq!(seen.code, Some(0), "{}", seen.everything());
    assert!(seen.result.success, "{}", seen.everything());
    assert_eq!(statuses(&seen.result), [Some(200), Some(302), Some(200)]);
    assert_eq!(seen.result.steps[0].extracted, ["csrf"]);

    let out = &seen.stdout;
    for line in [
        "check django-admin (http)\n",
        "step 1 \"form\": GET /admin/login/\n  200 in ",
        "  ok   cookie csrftoken set\n  extracted: csrf (values hidden)\n",
        "step 2 \"submit\": POST /admin/login/\n  302 in ",
        "  ok   header location = \"/admin/\"\n",
        "step 3 \"index\": GET /admin/\n  200 in ",
        "  ok   body contains \"Site administration\"\n",
        "\nPASS in ",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    seen.assert_no_password();
}

fn a_wrong_password_fails_at_submit_with_djangos_message(django: &Django) {
    let seen = probe(&django.config("wrong-password", |c| c), WRONG_PASSWORD);
    assert_eq!(seen.code, Some(1), "{}", seen.everything());
    let r = &seen.result;
    // Django renders the form again, with 200, instead of redirecting.
    assert_eq!(r.reason, Some(Reason::Status));
    assert_eq!(
        r.message.as_deref(),
        Some(
            "step \"submit\": expected status 302, got 200; \
             body contains \"Please enter the correct username and password\"; \
             expected header location \"/admin/\", but it is missing"
        )
    );
    assert_eq!(statuses(r), [Some(200), Some(200), None]);
    assert!(
        !r.steps[2].ran,
        "the index is not fetched after a failed login"
    );

    let out = &seen.stdout;
    for line in [
        "step 2 \"submit\": POST /admin/login/\n  200 in ",
        "  FAIL status in 302: expected status 302, got 200\n",
        ": step \"submit\": expected status 302, got 200; body contains \"Please enter the correct username and password\"",
        "step 3 \"index\": GET /admin/\n  skipped (an earlier step failed)\n",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    seen.assert_no_password();
}

fn without_the_csrf_token_submit_fails_with_djangos_csrf_rejection(django: &Django) {
    let field = "              csrfmiddlewaretoken: \"${csrf}\"\n";
    let config = django.config("no-csrf", |c| {
        assert!(c.contains(field), "{c}");
        c.replace(field, "")
    });
    let seen = probe(&config, PASSWORD);
    assert_eq!(seen.code, Some(1), "{}", seen.everything());
    let r = &seen.result;
    assert_eq!(r.reason, Some(Reason::Status));
    assert_eq!(
        r.message.as_deref(),
        Some(
            "step \"submit\": expected status 302, got 403; \
             body contains \"CSRF verification failed\"; \
             expected header location \"/admin/\", but it is missing"
        )
    );
    assert_eq!(statuses(r), [Some(200), Some(403), None]);

    let out = &seen.stdout;
    for line in [
        "step 2 \"submit\": POST /admin/login/\n  403 in ",
        "  FAIL body does not contain \"CSRF verification failed\": body contains \"CSRF verification failed\"\n",
        ": step \"submit\": expected status 302, got 403; body contains \"CSRF verification failed\"",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    seen.assert_no_password();
}
