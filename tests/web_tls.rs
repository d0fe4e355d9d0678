//! `--web.config.file` on the real binary: TLS, basic auth, client certificates, certificate
//! rotation, headers, `canaryd check` of the file, and a real Prometheus scraping over TLS with
//! basic auth. The password, its hash and the TLS key must appear in no output.

mod services;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

const BIN: &str = env!("CARGO_BIN_EXE_canaryd");
const PASSWORD: &str = "scrape-Pw-7f3kQz";
const PING_TOKEN: &str = "ping-token-Hh29aL";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A CA and what it issued, as PEM.
struct Ca {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Ca {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// (certificate PEM, key PEM) of a server (`client` false) or client certificate.
    fn issue(&self, cn: &str, client: bool) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let names = if client {
            vec![cn.to_string()]
        } else {
            vec!["127.0.0.1".to_string(), "localhost".to_string()]
        };
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

struct Daemon {
    child: Child,
    addr: String,
    /// Where stdout and stderr go: a pipe nobody reads would fill and stall the daemon.
    log: PathBuf,
}

impl Daemon {
    fn start(dir: &Path, web: &str) -> Daemon {
        let addr = format!("127.0.0.1:{}", free_port());
        std::fs::write(
            dir.join("canaryd.yaml"),
            format!("listen: {addr}\nstate_dir: state\ncheck_files: [checks.yaml]\n"),
        )
        .unwrap();
        std::fs::write(
            dir.join("checks.yaml"),
            format!("checks:\n  - name: db\n    interval: 1s\n    timeout: 500ms\n    tcp: {{target: \"127.0.0.1:1\"}}\n  - name: backup\n    heartbeat:\n      every: 1d\n      token: \"{PING_TOKEN}\"\n"),
        )
        .unwrap();
        std::fs::write(dir.join("web.yml"), web).unwrap();
        let log = dir.join("canaryd.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(dir.join("canaryd.yaml"))
            .arg("--web.config.file")
            .arg(dir.join("web.yml"))
            .args(["--log-level", "trace"])
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap();
        let mut d = Daemon { child, addr, log };
        let t = Instant::now();
        while TcpStream::connect(&d.addr).is_err() {
            if let Some(status) = d.child.try_wait().unwrap() {
                panic!("canaryd exited: {status}: {}", d.output());
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "canaryd did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    /// SIGTERM, then everything it printed.
    fn output(&mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            if t.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Answer {
    status: u16,
    head: String,
    body: String,
    /// The DER of the certificate the server presented.
    served: Vec<u8>,
}

fn client_config(ca_pem: &str, identity: Option<(&str, &str)>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match identity {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                .map(|c| c.unwrap())
                .collect();
            b.with_client_auth_cert(
                chain,
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap()
        }
        None => b.with_no_client_auth(),
    })
}

/// One HTTPS request (Connection: close); Err with the TLS or I/O error.
fn https(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    auth: Option<(&str, &str)>,
) -> Result<Answer, String> {
    https_json(addr, config, method, path, auth, "")
}

/// [`https`] with a JSON body (empty: none).
fn https_json(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    auth: Option<(&str, &str)>,
    json: &str,
) -> Result<Answer, String> {
    let mut tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut conn =
        rustls::ClientConnection::new(config, ServerName::try_from("127.0.0.1").unwrap()).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    let auth = auth
        .map(|(u, p)| {
            format!(
                "Authorization: Basic {}\r\n",
                data_encoding::BASE64.encode(format!("{u}:{p}").as_bytes())
            )
        })
        .unwrap_or_default();
    write!(
        tls,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}{}Content-Length: {}\r\n\r\n{json}",
        if json.is_empty() { "" } else { "Content-Type: application/json\r\n" },
        json.len()
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        // Servers may close without close_notify after `Connection: close`.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e.to_string()),
    }
    let served = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok(Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
        served,
    })
}

fn subject_cn(der: &[u8]) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or("")
        .to_string();
    cn
}

fn write_pair(dir: &Path, (cert, key): &(String, String)) {
    std::fs::write(dir.join("server.pem"), cert).unwrap();
    std::fs::write(dir.join("server.key"), key).unwrap();
}

#[test]
fn tls_with_basic_auth_guards_every_endpoint_but_health_and_pings() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("canaryd web test CA");
    let pair = ca.issue("canaryd-one", false);
    write_pair(dir.path(), &pair);
    let hashed = hash(PASSWORD);
    let web = format!(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\nbasic_auth_users:\n  prometheus: {hashed}\n"
    );
    let mut d = Daemon::start(dir.path(), &web);
    let cfg = client_config(&ca.cert_pem, None);
    // Every answer is kept: no secret may appear in any of them either.
    let answers = std::cell::RefCell::new(String::new());
    let get = |method: &str, path: &str, auth| {
        let a = https(&d.addr, cfg.clone(), method, path, auth).unwrap();
        answers
            .borrow_mut()
            .push_str(&format!("{}\n{}\n", a.head, a.body));
        a
    };

    for (method, path) in [
        ("GET", "/metrics"),
        ("GET", "/-/ready"),
        ("POST", "/-/reload"),
        ("GET", "/api/v1/checks"),
        ("GET", "/api/v1/checks/db"),
        ("GET", "/api/v1/alerts"),
        ("GET", "/api/v1/silences"),
        ("POST", "/api/v1/silences"),
        ("DELETE", "/api/v1/silences/x"),
        ("GET", "/no/such/path"),
    ] {
        let a = get(method, path, None);
        assert_eq!(
            a.status, 401,
            "{method} {path} without credentials: {}",
            a.head
        );
        assert!(
            a.head
                .to_ascii_lowercase()
                .contains("www-authenticate: basic"),
            "{}",
            a.head
        );
        assert!(
            a.head
                .to_ascii_lowercase()
                .contains("x-frame-options: deny"),
            "{}",
            a.head
        );
        let a = get(method, path, Some(("prometheus", "wrong-password")));
        assert_eq!(a.status, 401, "{method} {path} with a wrong password");
        let a = get(method, path, Some(("nobody", PASSWORD)));
        assert_eq!(a.status, 401, "{method} {path} with an unknown user");
    }
    // A silence posted without credentials (or with a wrong password) is refused and not
    // stored; with the right ones it is, through TLS, basic auth and the write policy.
    let silence =
        r#"{"matchers":{"check":"*"},"duration":"1h","created_by":"t","comment":"maintenance"}"#;
    let post = |auth| {
        https_json(
            &d.addr,
            cfg.clone(),
            "POST",
            "/api/v1/silences",
            auth,
            silence,
        )
        .unwrap()
    };
    assert_eq!(post(None).status, 401);
    assert_eq!(post(Some(("prometheus", "wrong-password"))).status, 401);
    let listed = get("GET", "/api/v1/silences", Some(("prometheus", PASSWORD)));
    assert_eq!(listed.status, 200);
    assert!(listed.body.contains("\"silences\":[]"), "{}", listed.body);
    let made = post(Some(("prometheus", PASSWORD)));
    assert_eq!(made.status, 201, "{}", made.body);
    let listed = get("GET", "/api/v1/silences", Some(("prometheus", PASSWORD)));
    assert_eq!(
        listed.body.matches("\"created_by\"").count(),
        1,
        "{}",
        listed.body
    );

    // The first run of the check may still be under way: wait for its series.
    let t = Instant::now();
    let a = loop {
        let a = get("GET", "/metrics", Some(("prometheus", PASSWORD)));
        assert_eq!(a.status, 200, "{}", a.head);
        if a.body.contains("canary_check_success{check=\"db\"}") {
            break a;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{}", a.body);
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(a
        .head
        .to_ascii_lowercase()
        .contains("x-frame-options: deny"));
    assert_eq!(subject_cn(&a.served), "canaryd-one");
    let a = get("GET", "/api/v1/checks/db", Some(("prometheus", PASSWORD)));
    assert_eq!(a.status, 200, "{}", a.body);

    // Liveness and heartbeat pings need no scrape password; a ping still needs its own token.
    assert_eq!(get("GET", "/-/healthy", None).status, 200);
    let ping = |token: Option<&str>| {
        let mut tcp = TcpStream::connect(&d.addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut conn =
            rustls::ClientConnection::new(cfg.clone(), ServerName::try_from("127.0.0.1").unwrap())
                .unwrap();
        let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(tls, "POST /ping/backup HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Length: 0\r\n\r\n").unwrap();
        let mut raw = Vec::new();
        let _ = tls.read_to_end(&mut raw);
        String::from_utf8_lossy(&raw)
            .split(' ')
            .nth(1)
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(ping(Some(PING_TOKEN)), "200");
    assert_eq!(ping(None), "401");

    // Plain HTTP to the TLS listener gets no HTTP answer.
    let mut plain = TcpStream::connect(&d.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        plain,
        "GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = plain.read_to_end(&mut raw);
    assert!(
        !String::from_utf8_lossy(&raw).contains("HTTP/1."),
        "plain HTTP got an HTTP answer: {raw:?}"
    );

    // Also the API's own view of everything.
    for path in [
        "/api/v1/checks",
        "/api/v1/alerts",
        "/api/v1/silences",
        "/-/ready",
    ] {
        get("GET", path, Some(("prometheus", PASSWORD)));
    }
    let out = format!("{}{}", d.output(), answers.borrow());
    let key_body: String = pair.1.lines().filter(|l| !l.starts_with("-----")).collect();
    for secret in [PASSWORD, hashed.as_str(), &key_body[..40]] {
        assert!(
            !out.contains(secret),
            "a secret leaked into the output:\n{out}"
        );
    }
}

#[test]
fn a_certificate_swapped_on_disk_is_served_on_the_next_connection_and_a_broken_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("canaryd rotation CA");
    write_pair(dir.path(), &ca.issue("before-rotation", false));
    let mut d = Daemon::start(
        dir.path(),
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n",
    );
    // A new client (session cache) per connection: a resumed TLS session presents no
    // certificate, and the client would report the one of the first session.
    let served = || {
        subject_cn(
            &https(
                &d.addr,
                client_config(&ca.cert_pem, None),
                "GET",
                "/-/healthy",
                None,
            )
            .unwrap()
            .served,
        )
    };
    assert_eq!(served(), "before-rotation");

    write_pair(dir.path(), &ca.issue("after-rotation", false));
    let t = Instant::now();
    loop {
        if served() == "after-rotation" {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the new certificate was never served"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A half-written rotation (a key of another pair): the last good certificate stays.
    let other = ca.issue("mismatched", false);
    std::fs::write(dir.path().join("server.key"), &other.1).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(served(), "after-rotation");
    assert_eq!(served(), "after-rotation");
    let out = d.output();
    assert!(
        out.contains("do not load (the key does not belong to the certificate); still serving the previous certificate"),
        "{out}"
    );
}

#[test]
fn client_certificates_from_another_ca_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let stranger_ca = Ca::new("stranger CA");
    write_pair(dir.path(), &server_ca.issue("server", false));
    std::fs::write(dir.path().join("clients.pem"), &client_ca.cert_pem).unwrap();
    let d = Daemon::start(
        dir.path(),
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients.pem\n",
    );
    let good = client_ca.issue("scraper", true);
    let bad = stranger_ca.issue("scraper", true);
    let ok = https(
        &d.addr,
        client_config(&server_ca.cert_pem, Some((&good.0, &good.1))),
        "GET",
        "/metrics",
        None,
    )
    .unwrap();
    assert_eq!(ok.status, 200);
    for (what, config) in [
        (
            "a certificate of another CA",
            client_config(&server_ca.cert_pem, Some((&bad.0, &bad.1))),
        ),
        ("no certificate", client_config(&server_ca.cert_pem, None)),
    ] {
        // Refused: a TLS error, or at most a connection that ends without an HTTP answer.
        let status = https(&d.addr, config, "GET", "/metrics", None).map_or(0, |a| a.status);
        assert_eq!(status, 0, "{what} was served");
    }
}

fn check(dir: &Path, web: &str) -> (i32, String) {
    std::fs::write(dir.join("canaryd.yaml"), "check_files: []\n").unwrap();
    std::fs::write(dir.join("web.yml"), web).unwrap();
    let out = Command::new(BIN)
        .arg("check")
        .arg("--config")
        .arg(dir.join("canaryd.yaml"))
        .arg("--web.config.file")
        .arg(dir.join("web.yml"))
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
fn check_validates_the_web_config_file_with_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    let w = web.display();
    let ca = Ca::new("check CA");
    write_pair(dir.path(), &ca.issue("server", false));
    let (code, out) = check(
        dir.path(),
        &format!("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\nbasic_auth_users:\n  alice: {}\n", hash("pw")),
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("{w}: ok")), "{out}");

    let cases: &[(&str, String)] = &[
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_file: missing.key\n",
            format!("{w}:3:13: tls_server_config.key_file: cannot use {}: no such file", dir.path().join("missing.key").display()),
        ),
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  min_version: TLS10\n",
            format!("{w}:4:16: tls_server_config.min_version: TLS10 is not supported (canaryd's TLS library speaks TLS12 and TLS13 only)"),
        ),
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA]\n",
            format!("{w}:4:19: tls_server_config.cipher_suites[0]: cipher suite \"TLS_RSA_WITH_AES_128_CBC_SHA\" is not supported"),
        ),
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  curve_preferences: [CurveP521]\n",
            format!("{w}:4:23: tls_server_config.curve_preferences[0]: curve \"CurveP521\" is not supported"),
        ),
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n",
            format!("{w}:2:3: tls_server_config.client_ca_file: RequireAndVerifyClientCert needs client_ca_file"),
        ),
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: Sometimes\n",
            format!("{w}:4:21: tls_server_config.client_auth_type: invalid value \"Sometimes\""),
        ),
        (
            "http_server_config:\n  headers:\n    Server: canaryd\n",
            format!("{w}:3:13: http_server_config.headers.Server: HTTP header \"Server\" can not be configured"),
        ),
        (
            "basic_auth_users:\n  alice: topsecret-plain\n",
            format!("{w}:2:10: basic_auth_users.alice: not a bcrypt hash"),
        ),
    ];
    for (yaml, want) in cases {
        let (code, out) = check(dir.path(), yaml);
        assert_eq!(code, 1, "{yaml}\n{out}");
        assert!(
            out.contains(want.as_str()),
            "{yaml}\nwanted {want}\ngot {out}"
        );
        assert!(!out.contains("topsecret-plain"), "{out}");
        assert!(!out.contains("PRIVATE KEY"), "{out}");
    }
}

#[test]
fn run_refuses_to_start_with_a_broken_web_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("canaryd.yaml"),
        format!("listen: 127.0.0.1:{}\ncheck_files: []\n", free_port()),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("web.yml"),
        "basic_auth_users:\n  alice: nope\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(dir.path().join("canaryd.yaml"))
        .arg("--web.config.file")
        .arg(dir.path().join("web.yml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("web.yml:2:10: basic_auth_users.alice: not a bcrypt hash"),
        "{err}"
    );
    assert!(err.contains("not starting"), "{err}");
}

#[test]
fn a_real_prometheus_scrapes_over_tls_with_basic_auth_and_reports_a_wrong_password() {
    if services::require("prometheus").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("prometheus test CA");
    write_pair(dir.path(), &ca.issue("canaryd", false));
    let web = format!(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\nbasic_auth_users:\n  prometheus: {}\n",
        hash(PASSWORD)
    );
    let d = Daemon::start(dir.path(), &web);
    let ca_file: PathBuf = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.cert_pem).unwrap();
    let job = |name: &str, password: &str| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    tls_config:\n      ca_file: {}\n    basic_auth:\n      username: prometheus\n      password: {password}\n    static_configs:\n      - targets: ['{}']\n",
            ca_file.display(),
            d.addr
        )
    };
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{}{}",
        job("right", PASSWORD),
        job("wrong", "not-the-password")
    );
    let Some(prom) = services::Prometheus::start_with_config(&config, &[]) else {
        return;
    };
    let has = |want: f64| move |v: &serde_json::Value| services::sample_value(v) == Some(want);
    prom.wait_for("up{job=\"right\"}", has(1.0), Duration::from_secs(30));
    prom.wait_for(
        "canary_check_success{job=\"right\",check=\"db\"}",
        has(0.0),
        Duration::from_secs(30),
    );
    prom.wait_for("up{job=\"wrong\"}", has(0.0), Duration::from_secs(30));
    let t = Instant::now();
    loop {
        let summary = prom.targets_summary();
        if summary.contains("wrong/") && summary.contains("401") {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the wrong password's 401 never showed in the targets: {summary}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn verify_if_given_and_allowed_sans_follow_exporter_toolkit() {
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let stranger_ca = Ca::new("stranger CA");
    let status = |addr: &str, identity: Option<&(String, String)>| {
        https(
            addr,
            client_config(
                &server_ca.cert_pem,
                identity.map(|(c, k)| (c.as_str(), k.as_str())),
            ),
            "GET",
            "/-/healthy",
            None,
        )
        .map_or(0, |a| a.status)
    };
    let scraper = client_ca.issue("scraper", true);
    let other = client_ca.issue("other", true);
    let stranger = stranger_ca.issue("scraper", true);

    // VerifyClientCertIfGiven: no certificate is fine, a certificate of another CA is not.
    let dir = tempfile::tempdir().unwrap();
    write_pair(dir.path(), &server_ca.issue("server", false));
    std::fs::write(dir.path().join("clients.pem"), &client_ca.cert_pem).unwrap();
    let d = Daemon::start(
        dir.path(),
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: clients.pem\n",
    );
    assert_eq!(status(&d.addr, None), 200);
    assert_eq!(status(&d.addr, Some(&scraper)), 200);
    assert_eq!(status(&d.addr, Some(&stranger)), 0);
    drop(d);

    // client_allowed_sans: a certificate of the right CA with another name is refused.
    let dir = tempfile::tempdir().unwrap();
    write_pair(dir.path(), &server_ca.issue("server", false));
    std::fs::write(dir.path().join("clients.pem"), &client_ca.cert_pem).unwrap();
    let d = Daemon::start(
        dir.path(),
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients.pem\n  client_allowed_sans: [scraper]\n",
    );
    assert_eq!(status(&d.addr, Some(&scraper)), 200);
    assert_eq!(status(&d.addr, Some(&other)), 0);
    assert_eq!(status(&d.addr, None), 0);
}
