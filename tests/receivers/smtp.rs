//! A real SMTP server on loopback: Python's aiosmtpd (`smtp_server.py` next to this file, run
//! with the test virtualenv's Python) with STARTTLS required, AUTH PLAIN/LOGIN required after
//! it, and a self-signed certificate for 127.0.0.1 made here. Received mails are read back from
//! its output directory. Stopped (its stdin closed, then killed) on drop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// One mail as the server received it.
#[derive(Debug, Clone)]
pub struct Mail {
    /// The message as received (headers and body, MIME-encoded).
    pub raw: String,
    /// `mail_from`, `rcpt_tos`, `auth_user`, `tls`.
    pub envelope: Value,
}

impl Mail {
    /// The first header `name` (unfolded), if any.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.raw.split("\r\n\r\n").next().unwrap_or("");
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// The server (see the module documentation).
pub struct Smtp {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    /// The CA a client must trust (the server's self-signed certificate), as a PEM file.
    pub ca_file: PathBuf,
}

fn venv_python() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/venv/bin/python");
    let has_aiosmtpd = p.is_file()
        && Command::new(&p)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if has_aiosmtpd {
        return Some(p);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("aiosmtpd missing in .cache/venv: run scripts/setup (CI=true: tests never skip a missing service)");
    }
    eprintln!("SKIPPED: aiosmtpd not installed in .cache/venv; run scripts/setup");
    None
}

impl Smtp {
    /// Starts the server for `user` / `password`. `None` (test skipped) when the virtualenv or
    /// aiosmtpd is missing outside CI.
    pub fn start(user: &str, password: &str) -> Option<Smtp> {
        let python = venv_python()?;
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2040, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        let ca_file = dir.path().join("smtp-cert.pem");
        std::fs::write(&ca_file, cert.pem()).unwrap();
        std::fs::write(dir.path().join("smtp-key.pem"), key.serialize_pem()).unwrap();
        std::fs::write(dir.path().join("password"), password).unwrap();
        let out = dir.path().join("mails");
        std::fs::create_dir(&out).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/receivers/smtp_server.py");
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = Command::new(&python)
                .arg(&script)
                .arg(port.to_string())
                .arg(&ca_file)
                .arg(dir.path().join("smtp-key.pem"))
                .arg(user)
                .arg(dir.path().join("password"))
                .arg(&out)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start smtp_server.py");
            let mut line = String::new();
            let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
            if line.trim() == "READY" {
                return Some(Smtp {
                    child,
                    dir,
                    port,
                    ca_file,
                });
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("aiosmtpd did not start (see its stderr above)");
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// From now on RCPT answers `reply` (`"450 4.2.1 Mailbox busy"`), or accepts (`None`).
    pub fn set_rcpt_reply(&self, reply: Option<&str>) {
        std::fs::write(
            self.dir.path().join("mails/mode"),
            reply.unwrap_or("accept"),
        )
        .unwrap();
    }

    /// Every mail received, in order.
    pub fn mails(&self) -> Vec<Mail> {
        let out = self.dir.path().join("mails");
        let mut names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|n| {
                let base = n.trim_end_matches(".json");
                Mail {
                    raw: String::from_utf8_lossy(
                        &std::fs::read(out.join(format!("{base}.eml"))).unwrap(),
                    )
                    .into_owned(),
                    envelope: serde_json::from_slice(&std::fs::read(out.join(n)).unwrap()).unwrap(),
                }
            })
            .collect()
    }

    /// Blocks until `n` mails arrived (true) or `timeout` passes (false).
    pub fn wait_for_mails(&self, n: usize, timeout: Duration) -> bool {
        let t = Instant::now();
        while self.mails().len() < n {
            if t.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
