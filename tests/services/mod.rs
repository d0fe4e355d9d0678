//! Real services for integration tests: Prometheus, Alertmanager, nginx, Redis and dnsmasq, each
//! started on a free 127.0.0.1 port in its own temporary directory, waited for until it answers,
//! and killed (its directory removed) when dropped.
//!
//! Use from any file under `tests/` with `mod services;`:
//!
//! ```ignore
//! mod services;
//! use services::{Prometheus, Redis};
//!
//! let Some(redis) = Redis::start() else { return }; // binary missing, not under CI: skipped
//! let Some(prom) = Prometheus::start(&[("canaryd", addr)], "1s") else { return };
//! prom.wait_for("canary_check_success", |v| !v.as_array().unwrap().is_empty(), secs(20));
//! ```
//!
//! A missing binary skips the test with a message on stderr, except under `CI=true`, where it
//! panics: CI never skips silently (`scripts/setup` installs everything). A service that does not
//! become ready within its bounded wait panics with the tail of its log.
#![allow(dead_code)]

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// How long a service may take to become ready before the test panics.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How many times a service is started on a new port when it exits before being ready
/// (another process took the port between [`free_port`] and the service's bind).
const START_ATTEMPTS: usize = 3;
/// Timeout of each read/write of the test HTTP and RESP clients.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Shorthand for `Duration::from_secs`.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

// ---------------------------------------------------------------------------------------------
// Ports, binaries
// ---------------------------------------------------------------------------------------------

/// A free TCP port on 127.0.0.1, never the same one twice in this process.
///
/// The port is free when this returns; another process may still take it before the caller binds,
/// which is why the services below retry on a new port when they fail to start.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        let mut seen = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if seen.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("free_port: no new free port on 127.0.0.1 after 100 tries");
}

/// True when running under CI (`CI=true`): missing services fail instead of skipping.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Finds `binary` on PATH, in /usr/bin or in /usr/sbin.
///
/// Missing: under `CI=true` this panics (CI never skips silently); otherwise it prints a skip
/// message on stderr and returns `None`, and the caller returns early.
pub fn require(binary: &str) -> Option<PathBuf> {
    if let Some(path) = find_binary(binary) {
        return Some(path);
    }
    if under_ci() {
        panic!("{binary} missing: run scripts/setup (CI=true: tests never skip a missing service)");
    }
    eprintln!(
        "SKIPPED: {binary} not found (PATH, /usr/bin, /usr/sbin); run scripts/setup to install it"
    );
    None
}

fn find_binary(binary: &str) -> Option<PathBuf> {
    if binary.contains('/') {
        let p = PathBuf::from(binary);
        return is_executable(&p).then_some(p);
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .chain(["/usr/bin", "/usr/sbin", "/usr/local/bin", "/bin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(binary))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

// ---------------------------------------------------------------------------------------------
// A child process with a log file
// ---------------------------------------------------------------------------------------------

/// A running service process whose stdout and stderr go to a log file. Killed on drop.
struct Proc {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to `log`, which is emptied first.
    fn spawn(name: &'static str, mut cmd: Command, log: &Path) -> Proc {
        write(log, "");
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("{name}: cannot create log {}: {e}", log.display()));
        let err = out.try_clone().expect("clone log file handle");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot start {cmd:?}: {e}"));
        Proc {
            name,
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// `Some(status)` once the process has exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// The last `lines` lines of the log.
    fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// Polls `ready` until it returns true. Err if the process exits first or the wait runs out.
    fn wait_ready(
        &mut self,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Err(format!(
                    "{} exited before it was ready ({status})",
                    self.name
                ));
            }
            if ready() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("{} not ready after {timeout:?}", self.name));
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL and reap. Idempotent.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits up to `timeout` for the process to exit by itself (after a stop request), then kills it.
    fn reap_within(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.exited().is_none() && Instant::now() < deadline {
            sleep(Duration::from_millis(20));
        }
        self.kill();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned());
    match text {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            let tail = all[all.len().saturating_sub(lines)..].join("\n");
            if tail.is_empty() {
                "(log is empty)".into()
            } else {
                tail
            }
        }
        Err(e) => format!("(cannot read log {}: {e})", path.display()),
    }
}

/// Why a service did not start: the message (with the log tail), and whether its port was taken
/// (worth another try on another port).
struct StartError {
    message: String,
    port_taken: bool,
}

/// Starts a service on a free port; if the port turned out to be taken, again on a new one, up to
/// [`START_ATTEMPTS`] times. Panics with the error (which carries the log tail) otherwise.
fn start_with_retries<T>(name: &str, mut attempt: impl FnMut(u16) -> Result<T, StartError>) -> T {
    let mut errors = String::new();
    for n in 1..=START_ATTEMPTS {
        match attempt(free_port()) {
            Ok(service) => return service,
            Err(e) => {
                let _ = writeln!(errors, "--- attempt {n}/{START_ATTEMPTS}: {}", e.message);
                if !e.port_taken {
                    break;
                }
            }
        }
    }
    panic!("{name} did not start:\n{errors}");
}

fn failure(proc: &Proc, reason: String) -> StartError {
    let tail = proc.log_tail(30);
    StartError {
        port_taken: tail.to_ascii_lowercase().contains("address already in use"),
        message: format!(
            "{reason}\n    log tail ({}):\n{}",
            proc.log.display(),
            indent(&tail)
        ),
    }
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("      {l}\n")).collect()
}

fn tempdir(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("canaryd-test-{name}-"))
        .tempdir()
        .unwrap_or_else(|e| panic!("{name}: cannot create a temporary directory: {e}"))
}

fn write(path: &Path, contents: impl AsRef<[u8]>) {
    fs::write(path, contents).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

fn running_as_root() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2)) // effective uid
            .is_some_and(|uid| uid == "0")
    })
}

// ---------------------------------------------------------------------------------------------
// A tiny HTTP/1.1 client (tests only; one request per connection)
// ---------------------------------------------------------------------------------------------

/// A response read by [`http_request`].
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.text()))
    }
}

/// `GET url` (`http://host:port/path?query` only).
pub fn http_get(url: &str) -> io::Result<HttpResponse> {
    http_request("GET", url, &[], None)
}

/// `POST url` with a body of the given content type.
pub fn http_post(url: &str, content_type: &str, body: &[u8]) -> io::Result<HttpResponse> {
    http_request("POST", url, &[("Content-Type", content_type)], Some(body))
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`); reads the whole response,
/// de-chunking it if needed. `http://` URLs only. Each read and write times out after 10 s.
pub fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> io::Result<HttpResponse> {
    request_within(method, url, headers, body, IO_TIMEOUT)
}

fn request_within(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> io::Result<HttpResponse> {
    let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| invalid(format!("not an http:// URL: {url}")))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut stream = TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;

    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (name, value) in headers {
        let _ = write!(req, "{name}: {value}\r\n");
    }
    if let Some(body) = body {
        let _ = write!(req, "Content-Length: {}\r\n", body.len());
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    stream.write_all(&bytes)?;

    let mut reader = BufReader::new(stream);
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad(format!("bad status line from {url}: {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(bad(format!("{url}: connection closed inside the headers")));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status) {
        // no body
    } else if find("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size_str = line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_str, 16)
                .map_err(|_| bad(format!("{url}: bad chunk size {line:?}")))?;
            if size == 0 {
                break; // trailers, if any, are ignored
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            line.clear();
            reader.read_line(&mut line)?; // CRLF after the chunk
        }
    } else if let Some(len) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    } else {
        reader.read_to_end(&mut body)?;
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// Readiness probe: 200 within a second.
fn http_ok(url: &str) -> bool {
    request_within("GET", url, &[], None, Duration::from_secs(1)).is_ok_and(|r| r.status == 200)
}

/// Percent-encodes a query parameter value.
pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

// ---------------------------------------------------------------------------------------------
// Prometheus
// ---------------------------------------------------------------------------------------------

/// A Prometheus server (Debian's `prometheus`) with its TSDB in a temporary directory.
pub struct Prometheus {
    proc: Proc,
    port: u16,
    dir: TempDir,
}

impl Prometheus {
    /// Scrapes each `(job, "host:port")` target at `scrape_interval` (e.g. `"1s"`); rules are
    /// evaluated at the same interval. The first scrape comes about 5 s after the start
    /// (Prometheus's service-discovery update throttle), then one every interval.
    pub fn start(scrape_targets: &[(&str, String)], scrape_interval: &str) -> Option<Prometheus> {
        let mut config = format!(
            "global:\n  scrape_interval: {scrape_interval}\n  scrape_timeout: {scrape_interval}\n  evaluation_interval: {scrape_interval}\nscrape_configs:\n"
        );
        let mut jobs: Vec<&str> = Vec::new();
        for (job, _) in scrape_targets {
            if !jobs.contains(job) {
                jobs.push(job);
            }
        }
        for job in jobs {
            let targets: Vec<String> = scrape_targets
                .iter()
                .filter(|(j, _)| *j == job)
                .map(|(_, t)| format!("'{t}'"))
                .collect();
            let _ = write!(
                config,
                "  - job_name: '{job}'\n    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            );
        }
        Self::start_with_config(&config, &[])
    }

    /// Starts with a whole `prometheus.yml`; `files` (name, contents) are written beside it, so the
    /// config can name them relatively (e.g. `rule_files: [rules.yml]`).
    pub fn start_with_config(config_yaml: &str, files: &[(&str, &str)]) -> Option<Prometheus> {
        let bin = require("prometheus")?;
        let dir = tempdir("prometheus");
        let config = dir.path().join("prometheus.yml");
        write(&config, config_yaml);
        for (name, contents) in files {
            write(&dir.path().join(name), contents);
        }
        let log = dir.path().join("prometheus.log");
        let service = start_with_retries("prometheus", |port| {
            let mut cmd = Command::new(&bin);
            cmd.arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--web.enable-lifecycle")
                .arg("--log.level=info");
            let mut proc = Proc::spawn("prometheus", cmd, &log);
            let ready = format!("http://127.0.0.1:{port}/-/ready");
            match proc.wait_ready(READY_TIMEOUT, || http_ok(&ready)) {
                Ok(()) => Ok((proc, port)),
                Err(e) => Err(failure(&proc, e)),
            }
        });
        Some(Prometheus {
            proc: service.0,
            port: service.1,
            dir,
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.proc.log_tail(lines)
    }

    /// Instant query through `/api/v1/query`; returns `data.result` (for a vector: an array of
    /// `{"metric": {...}, "value": [ts, "v"]}`). Panics if Prometheus answers with an error.
    pub fn query(&self, expr: &str) -> Value {
        match self.try_query(expr) {
            Ok(v) => v,
            Err(e) => panic!("prometheus query {expr:?} failed: {e}"),
        }
    }

    fn try_query(&self, expr: &str) -> Result<Value, String> {
        let url = format!("{}/api/v1/query?query={}", self.url(), urlencode(expr));
        let resp = http_get(&url).map_err(|e| format!("GET {url}: {e}"))?;
        let body: Value = serde_json::from_slice(&resp.body)
            .map_err(|e| format!("HTTP {}: not JSON ({e}): {}", resp.status, resp.text()))?;
        if body["status"] != "success" {
            return Err(format!(
                "HTTP {}: {} {}",
                resp.status, body["errorType"], body["error"]
            ));
        }
        Ok(body["data"]["result"].clone())
    }

    /// The value of the first sample of an instant vector (or of a scalar), if any.
    pub fn query_f64(&self, expr: &str) -> Option<f64> {
        sample_value(&self.query(expr))
    }

    /// Polls `expr` every 200 ms until `predicate(result)` holds, returning that result; panics
    /// after `timeout` with the last result and the scrape targets' health.
    pub fn wait_for(
        &self,
        expr: &str,
        predicate: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            last = self.try_query(expr);
            if let Ok(v) = &last {
                if predicate(v) {
                    return v.clone();
                }
            }
            if Instant::now() >= deadline {
                break;
            }
            sleep(Duration::from_millis(200));
        }
        panic!(
            "prometheus: {expr:?} did not satisfy the condition within {timeout:?}\n    last result: {}\n    targets: {}\n    log tail:\n{}",
            match &last {
                Ok(v) => v.to_string(),
                Err(e) => e.clone(),
            },
            self.targets_summary(),
            indent(&self.log_tail(15))
        );
    }

    /// One line per scrape target: job, instance, health and last error.
    pub fn targets_summary(&self) -> String {
        let url = format!("{}/api/v1/targets", self.url());
        let Ok(resp) = http_get(&url) else {
            return "(cannot read /api/v1/targets)".into();
        };
        let body: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        let targets = body["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if targets.is_empty() {
            return "(none)".into();
        }
        targets
            .iter()
            .map(|t| {
                format!(
                    "{}/{} {} {}",
                    t["labels"]["job"].as_str().unwrap_or("?"),
                    t["labels"]["instance"].as_str().unwrap_or("?"),
                    t["health"].as_str().unwrap_or("?"),
                    t["lastError"].as_str().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The numeric value of the first sample of a query result (instant vector or scalar).
pub fn sample_value(result: &Value) -> Option<f64> {
    let value = match result {
        Value::Array(items) if items.first().is_some_and(|i| i.get("value").is_some()) => {
            &items[0]["value"]
        }
        Value::Array(_) if result[1].is_string() => result, // scalar: [ts, "v"]
        _ => return None,
    };
    value[1].as_str()?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Alertmanager
// ---------------------------------------------------------------------------------------------

/// An Alertmanager (Debian's `prometheus-alertmanager`), storage in a temporary directory;
/// clustering off ([`Alertmanager::start`]) or on, as a member of a cluster on loopback
/// ([`Alertmanager::start_member`]).
pub struct Alertmanager {
    proc: Proc,
    port: u16,
    /// `127.0.0.1:PORT` of its cluster listener, when clustering is on.
    cluster_addr: Option<String>,
    dir: TempDir,
}

/// `--cluster.peer-timeout` of cluster members: how long the member at position `n` of the
/// cluster waits (`n` times this) before it notifies, unless the notification log gossiped from
/// a member ahead of it says that was done.
pub const AM_PEER_TIMEOUT: Duration = Duration::from_secs(2);

impl Alertmanager {
    /// Starts with the given `alertmanager.yml`, clustering off.
    pub fn start(config_yaml: &str) -> Option<Alertmanager> {
        Alertmanager::spawn(config_yaml, None)
    }

    /// Starts a member of a cluster with the given `alertmanager.yml`: its cluster listener on a
    /// free loopback port, joining the members at `peers` (`127.0.0.1:PORT`, see
    /// [`Alertmanager::cluster_addr`]; none for the first member). Gossip is fast (50 ms, push-pull
    /// every 1 s, settled within 5 s) and the peer timeout is [`AM_PEER_TIMEOUT`], so a test sees
    /// the cluster form and deduplicate in seconds.
    pub fn start_member(config_yaml: &str, peers: &[&str]) -> Option<Alertmanager> {
        Alertmanager::spawn(config_yaml, Some(peers))
    }

    fn spawn(config_yaml: &str, cluster: Option<&[&str]>) -> Option<Alertmanager> {
        let bin = require("prometheus-alertmanager")?;
        let dir = tempdir("alertmanager");
        let config = dir.path().join("alertmanager.yml");
        write(&config, config_yaml);
        let log = dir.path().join("alertmanager.log");
        let (proc, port, cluster_addr) = start_with_retries("alertmanager", |port| {
            let mut cmd = Command::new(&bin);
            cmd.arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"));
            let cluster_addr = match cluster {
                None => {
                    cmd.arg("--cluster.listen-address=");
                    None
                }
                Some(peers) => {
                    let addr = format!("127.0.0.1:{}", free_port());
                    cmd.arg(format!("--cluster.listen-address={addr}"))
                        .arg(format!("--cluster.advertise-address={addr}"))
                        .arg(format!(
                            "--cluster.peer-timeout={}ms",
                            AM_PEER_TIMEOUT.as_millis()
                        ))
                        .arg("--cluster.gossip-interval=50ms")
                        .arg("--cluster.pushpull-interval=1s")
                        .arg("--cluster.settle-timeout=5s")
                        .arg("--cluster.reconnect-interval=1s");
                    for peer in peers {
                        cmd.arg(format!("--cluster.peer={peer}"));
                    }
                    Some(addr)
                }
            };
            let mut proc = Proc::spawn("alertmanager", cmd, &log);
            let ready = format!("http://127.0.0.1:{port}/-/ready");
            match proc.wait_ready(READY_TIMEOUT, || http_ok(&ready)) {
                Ok(()) => Ok((proc, port, cluster_addr)),
                Err(e) => Err(failure(&proc, e)),
            }
        });
        Some(Alertmanager {
            proc,
            port,
            cluster_addr,
            dir,
        })
    }

    /// `127.0.0.1:PORT` of its cluster listener (what another member's `peers` names); `None`
    /// with clustering off.
    pub fn cluster_addr(&self) -> Option<&str> {
        self.cluster_addr.as_deref()
    }

    /// `GET /api/v2/status` as JSON (`cluster.status`, `cluster.peers`, ...).
    pub fn status(&self) -> Value {
        let url = format!("{}/api/v2/status", self.url());
        http_get(&url)
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
            .json()
    }

    /// How many members its cluster has, as it sees them (itself included; 0 with clustering
    /// off).
    pub fn cluster_peers(&self) -> usize {
        self.status()["cluster"]["peers"]
            .as_array()
            .map_or(0, Vec::len)
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.proc.log_tail(lines)
    }

    /// `GET /api/v2/alerts` as JSON (every alert Alertmanager holds).
    pub fn alerts(&self) -> Value {
        let url = format!("{}/api/v2/alerts", self.url());
        http_get(&url)
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
            .json()
    }
}

// ---------------------------------------------------------------------------------------------
// nginx
// ---------------------------------------------------------------------------------------------

/// nginx serving the files of a directory (master process + 1 worker, no access log).
pub struct Nginx {
    proc: Proc,
    port: u16,
    bin: PathBuf,
    dir: TempDir,
    /// Serving HTTPS (started with [`Nginx::start_tls`]).
    tls: bool,
}

impl Nginx {
    /// Serves `root` (a directory of static files) at `http://127.0.0.1:PORT/`.
    pub fn start(root: impl AsRef<Path>) -> Option<Nginx> {
        Self::start_with(root.as_ref(), None)
    }

    /// Serves `root` at `https://127.0.0.1:PORT/` with the given PEM certificate (chain) and
    /// private key; [`Nginx::url`] is then the `https://` URL.
    pub fn start_tls(root: impl AsRef<Path>, cert_pem: &str, key_pem: &str) -> Option<Nginx> {
        Self::start_with(root.as_ref(), Some((cert_pem, key_pem)))
    }

    fn start_with(root: &Path, tls: Option<(&str, &str)>) -> Option<Nginx> {
        let bin = require("nginx")?;
        let root = fs::canonicalize(root)
            .unwrap_or_else(|e| panic!("nginx: root {}: {e}", root.display()));
        let dir = tempdir("nginx");
        let d = dir.path().to_path_buf();
        fs::create_dir_all(d.join("tmp")).expect("create nginx tmp dir");
        let ssl = match tls {
            None => String::new(),
            Some((cert, key)) => {
                write(&d.join("cert.pem"), cert);
                write(&d.join("key.pem"), key);
                format!(
                    "        ssl_certificate {d}/cert.pem;\n        ssl_certificate_key {d}/key.pem;\n",
                    d = d.display()
                )
            }
        };
        let listen_ssl = if tls.is_some() { " ssl" } else { "" };
        let log = d.join("error.log");
        let (proc, port) = start_with_retries("nginx", |port| {
            // As root, the workers would switch to `nobody`, which cannot read a 0700 tempdir.
            let user = if running_as_root() {
                "user root;\n"
            } else {
                ""
            };
            let conf = format!(
                r#"{user}daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    default_type application/octet-stream;
    types {{ text/html html htm; text/plain txt; application/json json; text/css css; }}
    client_body_temp_path {d}/tmp/client_body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port}{listen_ssl};
{ssl}        root {root};
        location / {{ }}
    }}
}}
"#,
                d = d.display(),
                root = root.display(),
            );
            let conf_path = d.join("nginx.conf");
            write(&conf_path, conf);
            let mut cmd = Command::new(&bin);
            cmd.arg("-p")
                .arg(&d)
                .arg("-c")
                .arg(&conf_path)
                .arg("-e")
                .arg(&log);
            let mut proc = Proc::spawn("nginx", cmd, &log);
            match proc.wait_ready(READY_TIMEOUT, || {
                TcpStream::connect(("127.0.0.1", port)).is_ok()
            }) {
                Ok(()) => Ok((proc, port)),
                Err(e) => {
                    let msg = failure(&proc, e);
                    stop_nginx(&bin, &d, &mut proc);
                    Err(msg)
                }
            }
        });
        Some(Nginx {
            proc,
            port,
            bin,
            dir,
            tls: tls.is_some(),
        })
    }

    /// `http://127.0.0.1:PORT` (`https://` when started with [`Nginx::start_tls`])
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.proc.log_tail(lines)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        stop_nginx(&self.bin, self.dir.path(), &mut self.proc);
    }
}

/// Stops nginx's master and workers: `nginx -s stop` (SIGTERM to the master, which ends its
/// workers), then SIGKILL to whatever is left. Killing only the master would orphan the worker.
fn stop_nginx(bin: &Path, dir: &Path, proc: &mut Proc) {
    if proc.exited().is_some() {
        return proc.kill();
    }
    let workers = proc.pid().map(children_of).unwrap_or_default();
    let _ = Command::new(bin)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"))
        .args(["-s", "stop"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    proc.reap_within(Duration::from_secs(5));
    let left: Vec<String> = workers
        .iter()
        .filter(|pid| Path::new(&format!("/proc/{pid}")).exists())
        .map(|pid| pid.to_string())
        .collect();
    if !left.is_empty() {
        let _ = Command::new("kill").arg("-KILL").args(&left).status();
    }
}

/// Direct children of `pid` (Linux: /proc/PID/task/PID/children).
fn children_of(pid: u32) -> Vec<u32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------------

/// A redis-server with no persistence, which a test can stop and restart on the same port.
pub struct Redis {
    proc: Proc,
    port: u16,
    bin: PathBuf,
    dir: TempDir,
}

/// A RESP2 reply, as read by [`Redis::cmd`].
#[derive(Debug, Clone, PartialEq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

impl Resp {
    /// The reply as text (simple string, bulk string or integer).
    pub fn as_str(&self) -> Option<String> {
        match self {
            Resp::Simple(s) => Some(s.clone()),
            Resp::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            Resp::Int(i) => Some(i.to_string()),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Resp::Int(i) => Some(*i),
            _ => self.as_str()?.parse().ok(),
        }
    }
}

impl Redis {
    /// A redis-rs multiplexed connection to this server (database `db`), as the library under
    /// test and its job-system clients use.
    pub async fn connect(&self, db: u32) -> redis::aio::MultiplexedConnection {
        redis::Client::open(format!("{}/{db}", self.url()))
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to redis")
    }

    /// `redis-server --port P --bind 127.0.0.1 --save '' --appendonly no`, data dir in a tempdir.
    pub fn start() -> Option<Redis> {
        let bin = require("redis-server")?;
        let dir = tempdir("redis");
        let (proc, port) = start_with_retries("redis", |port| {
            Self::spawn(&bin, dir.path(), port).map(|p| (p, port))
        });
        Some(Redis {
            proc,
            port,
            bin,
            dir,
        })
    }

    fn spawn(bin: &Path, dir: &Path, port: u16) -> Result<Proc, StartError> {
        let mut cmd = Command::new(bin);
        cmd.args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(dir);
        let mut proc = Proc::spawn("redis-server", cmd, &dir.join("redis.log"));
        let pinged = || ping(port);
        match proc.wait_ready(READY_TIMEOUT, pinged) {
            Ok(()) => Ok(proc),
            Err(e) => Err(failure(&proc, e)),
        }
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.proc.log_tail(lines)
    }

    /// Kills the server (SIGKILL, as if it died); the port then refuses connections.
    pub fn stop(&mut self) {
        self.proc.kill();
    }

    /// Starts the server again on the same port (stopping it first if it runs). The data is gone:
    /// nothing is persisted.
    pub fn restart(&mut self) {
        self.stop();
        let mut errors = String::new();
        // The port is ours until now; retry briefly in case the kernel has not released it yet.
        for n in 1..=START_ATTEMPTS {
            match Self::spawn(&self.bin, self.dir.path(), self.port) {
                Ok(proc) => {
                    self.proc = proc;
                    return;
                }
                Err(e) => {
                    let _ = writeln!(errors, "--- attempt {n}/{START_ATTEMPTS}: {}", e.message);
                    if !e.port_taken {
                        break;
                    }
                    sleep(Duration::from_millis(200));
                }
            }
        }
        panic!("redis did not restart on port {}:\n{errors}", self.port);
    }

    /// Sends one command and reads its reply, e.g. `redis.cmd(&["LPUSH", "queue:default", job])`.
    /// Panics on a connection error; a Redis error reply is returned as [`Resp::Error`].
    pub fn cmd(&self, args: &[&str]) -> Resp {
        resp_command(self.port, args).unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }
}

/// Readiness probe: PONG within a second.
fn ping(port: u16) -> bool {
    command_within(port, &["PING"], Duration::from_secs(1))
        .is_ok_and(|r| r == Resp::Simple("PONG".into()))
}

/// One RESP2 command on a fresh connection to 127.0.0.1:port (10 s timeouts).
pub fn resp_command(port: u16, args: &[&str]) -> io::Result<Resp> {
    command_within(port, args, IO_TIMEOUT)
}

fn command_within(port: u16, args: &[&str], timeout: Duration) -> io::Result<Resp> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut req = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        req.extend_from_slice(a.as_bytes());
        req.extend_from_slice(b"\r\n");
    }
    stream.write_all(&req)?;
    read_resp(&mut BufReader::new(stream))
}

fn read_resp(r: &mut impl BufRead) -> io::Result<Resp> {
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line
        .split_at_checked(1)
        .ok_or_else(|| bad("empty reply".into()))?;
    let int = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| bad(format!("bad RESP line {line:?}")))
    };
    Ok(match kind {
        "+" => Resp::Simple(rest.to_string()),
        "-" => Resp::Error(rest.to_string()),
        ":" => Resp::Int(int(rest)?),
        "$" => match int(rest)? {
            n if n < 0 => Resp::Bulk(None),
            n => {
                let mut buf = vec![0; n as usize + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(n as usize);
                Resp::Bulk(Some(buf))
            }
        },
        "*" => match int(rest)? {
            n if n < 0 => Resp::Array(None),
            n => Resp::Array(Some(
                (0..n).map(|_| read_resp(r)).collect::<io::Result<_>>()?,
            )),
        },
        _ => return Err(bad(format!("unknown RESP reply {line:?}"))),
    })
}

// ---------------------------------------------------------------------------------------------
// Job-system workers (RQ, Celery, BullMQ, Sidekiq) and the tools that run them
// ---------------------------------------------------------------------------------------------

/// The repository root (where `scripts/setup` puts `.cache/venv` and `scripts/lib/node`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python of the test virtualenv (`.cache/venv`, made by `scripts/setup`), with Django, RQ
/// and Celery. Missing: panics under CI, otherwise skips like [`require`].
pub fn venv_python() -> Option<PathBuf> {
    require(&repo_root().join(".cache/venv/bin/python").to_string_lossy())
}

/// `node` and the directory whose `node_modules` holds BullMQ (`scripts/lib/node`, installed by
/// `scripts/setup`); run scripts with this as their working directory or `NODE_PATH`.
pub fn node_with_modules() -> Option<(PathBuf, PathBuf)> {
    let node = require("node")?;
    let dir = repo_root().join("scripts/lib/node");
    if dir.join("node_modules/bullmq").is_dir() {
        return Some((node, dir));
    }
    if under_ci() {
        panic!("scripts/lib/node/node_modules/bullmq missing: run scripts/setup (CI=true: tests never skip)");
    }
    eprintln!("SKIPPED: BullMQ not installed under scripts/lib/node; run scripts/setup");
    None
}

/// A worker or helper process (a job system's worker, an enqueuing script) with its output in a
/// log file. Killed on drop.
pub struct Worker {
    proc: Proc,
    _dir: Option<TempDir>,
}

impl Worker {
    /// Starts `cmd` with stdout and stderr going to a log in a fresh temporary directory.
    pub fn spawn(name: &'static str, cmd: Command) -> Worker {
        let dir = TempDir::new().expect("temp dir for worker log");
        let log = dir.path().join(format!("{name}.log"));
        Worker {
            proc: Proc::spawn(name, cmd, &log),
            _dir: Some(dir),
        }
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    /// Whether it has exited (and how).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.proc.exited()
    }

    /// The last `lines` lines of its output.
    pub fn log_tail(&self, lines: usize) -> String {
        self.proc.log_tail(lines)
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        fs::read(&self.proc.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Polls `ready` until true; panics with the log tail if the process exits or `timeout` passes.
    pub fn wait_until(&mut self, timeout: Duration, ready: impl FnMut() -> bool) {
        if let Err(e) = self.proc.wait_ready(timeout, ready) {
            panic!(
                "{e}\n--- {} log ---\n{}",
                self.proc.name,
                self.proc.log_tail(40)
            );
        }
    }

    /// Waits for the process to exit by itself within `timeout` and returns its status; panics
    /// with the log tail otherwise (a one-shot script that hangs or fails).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.proc.exited() {
                return status;
            }
            if Instant::now() >= deadline {
                let tail = self.proc.log_tail(40);
                self.proc.kill();
                panic!("{} did not exit within {timeout:?}\n{tail}", self.proc.name);
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM (a worker's graceful stop), then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if let Some(pid) = self.proc.pid() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        self.proc.reap_within(grace);
    }

    /// SIGKILL now (a worker that dies without cleaning up).
    pub fn kill(&mut self) {
        self.proc.kill();
    }
}

/// The status and body of a raw HTTP/1.1 answer (status 0 when nothing parseable arrived), for
/// the tests that speak HTTP by hand to control every header.
pub fn parse_http_answer(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// One sample line of the Prometheus text format (`name{k="v",...} value`): its name and its
/// labels, values unescaped.
pub fn parse_sample(line: &str) -> (String, Vec<(String, String)>) {
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = line[..name_end].to_string();
    let mut pairs = Vec::new();
    let Some(rest) = line[name_end..].strip_prefix('{') else {
        return (name, pairs);
    };
    let mut chars = rest.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let key = key.trim_start_matches(',').trim().to_string();
        if key.is_empty() || key.starts_with('}') || chars.next() != Some('"') {
            break;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        pairs.push((key, value));
        if chars.peek() == Some(&'}') {
            break;
        }
    }
    (name, pairs)
}

/// `canaryd run --config <config>` of the binary under test (no colours in its log); add
/// arguments (`--shard`) and environment before [`Canaryd::start`].
pub fn canaryd_run(config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_canaryd"));
    cmd.args(["run", "--config"])
        .arg(config)
        .env("NO_COLOR", "1");
    cmd
}

/// A running canaryd daemon (a [`Worker`]: output in a log, killed on drop) listening on `addr`.
pub struct Canaryd {
    worker: Worker,
    addr: String,
}

impl Canaryd {
    /// Starts `cmd` (see [`canaryd_run`]) and waits until `addr` answers `/-/healthy`. `Err`
    /// with the log tail when it exits first (a bad configuration, a port taken meanwhile).
    pub fn start(cmd: Command, addr: &str) -> Result<Canaryd, String> {
        let mut worker = Worker::spawn("canaryd", cmd);
        let healthy = format!("http://{addr}/-/healthy");
        worker
            .proc
            .wait_ready(secs(30), || {
                http_get(&healthy).is_ok_and(|r| r.status == 200)
            })
            .map_err(|e| format!("{e}\n--- canaryd log ---\n{}", worker.log_tail(40)))?;
        Ok(Canaryd {
            worker,
            addr: addr.to_string(),
        })
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The listen address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.worker.log_tail(lines)
    }

    /// Its process id (to send it signals), `None` once it was reaped.
    pub fn pid(&self) -> Option<u32> {
        self.worker.pid()
    }

    /// Whether it has exited (with its status).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.worker.exited()
    }

    /// SIGTERM (canaryd drains), then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        self.worker.stop(grace);
    }

    /// SIGKILL now (a crash: no drain, nothing flushed).
    pub fn kill(&mut self) {
        self.worker.kill();
    }
}

/// Runs a one-shot command to completion (bounded by `timeout`), panicking with its output if it
/// fails; returns its stdout.
pub fn run_ok(name: &'static str, cmd: Command, timeout: Duration) -> String {
    let mut w = Worker::spawn(name, cmd);
    let status = w.wait_exit(timeout);
    let log = w.log();
    assert!(status.success(), "{name} failed ({status}):\n{log}");
    log
}

// ---------------------------------------------------------------------------------------------
// dnsmasq
// ---------------------------------------------------------------------------------------------

/// A dnsmasq DNS server on 127.0.0.1 (UDP and TCP on one free port) that serves only the records
/// it is given: no upstream servers, no /etc/hosts, no configuration file.
pub struct Dnsmasq {
    proc: Proc,
    port: u16,
    _dir: TempDir,
}

impl Dnsmasq {
    /// Starts dnsmasq with `records`: its own options, e.g.
    /// `--host-record=www.example.test,192.0.2.1`, `--txt-record=...`, `--mx-host=...`,
    /// `--cname=...`, `--auth-zone=...`. Ready once it accepts TCP on its port.
    pub fn start(records: &[&str]) -> Option<Dnsmasq> {
        let bin = require("dnsmasq")?;
        let dir = tempdir("dnsmasq");
        let (proc, port) = start_with_retries("dnsmasq", |port| {
            let mut cmd = Command::new(&bin);
            cmd.args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--no-poll",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--log-facility=-",
                "--log-queries",
                "--pid-file=",
            ])
            .arg(format!("--port={port}"))
            .args(records);
            if running_as_root() {
                // Keeps root's rights instead of switching to `nobody`, who cannot log to the
                // test's directory.
                cmd.arg("--user=root");
            }
            let mut proc = Proc::spawn("dnsmasq", cmd, &dir.path().join("dnsmasq.log"));
            let ready = || TcpStream::connect(("127.0.0.1", port)).is_ok();
            match proc.wait_ready(READY_TIMEOUT, ready) {
                Ok(()) => Ok((proc, port)),
                Err(e) => Err(failure(&proc, e)),
            }
        });
        Some(Dnsmasq {
            proc,
            port,
            _dir: dir,
        })
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.proc.log_tail(lines)
    }
}

// ---------------------------------------------------------------------------------------------
// A target the test breaks and restores
// ---------------------------------------------------------------------------------------------

/// `GET /login` answers 200 "Sign out" while healthy, 500 while broken.
pub struct Target {
    pub addr: String,
    broken: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Target {
    pub fn start() -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let broken = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let b = broken.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let broken = b.load(std::sync::atomic::Ordering::SeqCst);
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(s.try_clone().unwrap());
                    let mut line = String::new();
                    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                        line.clear();
                    }
                    let (status, body) = if broken {
                        ("500 Internal Server Error", "database is down")
                    } else {
                        ("200 OK", "Welcome. Sign out")
                    };
                    let _ = write!(
                        s,
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        Target { addr, broken }
    }

    pub fn set_broken(&self, b: bool) {
        self.broken.store(b, std::sync::atomic::Ordering::SeqCst);
    }
}
