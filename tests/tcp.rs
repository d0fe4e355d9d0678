//! The `tcp` probe kind against real local servers.

mod adversary;

use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use adversary::{unix_seconds, Behavior, Reply, Server, TlsSetup};
use canaryd::probe::http::transport::{client_config, TlsOptions};
use canaryd::probe::tcp::{TcpProbe, TcpSpec};
use canaryd::probe::{CheckResult, Phase, Probe, Reason, RunContext};

const MS: Duration = Duration::from_millis(1);

fn spec(target: String) -> TcpSpec {
    TcpSpec {
        target,
        tls: None,
        server_name: None,
        cert_min_days: None,
    }
}

async fn run(spec: TcpSpec, timeout: Duration) -> (CheckResult, Duration) {
    let probe: Arc<dyn Probe> = Arc::new(TcpProbe::new(spec));
    let started = Instant::now();
    let ctx = RunContext {
        deadline: tokio::time::Instant::now() + timeout,
    };
    let result = probe.run(ctx).await;
    (result, started.elapsed())
}

fn tls_to(server: &Server) -> TcpSpec {
    TcpSpec {
        tls: Some(
            client_config(&TlsOptions {
                ca_file: Some(server.ca_file().to_path_buf()),
                ..TlsOptions::default()
            })
            .unwrap(),
        ),
        ..spec(server.target())
    }
}

#[tokio::test]
async fn connect_succeeds() {
    let server = Server::start(Behavior::Reply(Reply::new(200)));
    let (result, _) = run(spec(server.target()), Duration::from_secs(2)).await;
    assert!(result.success, "{:?}", result.message);
    assert_eq!(result.reason, None);
    assert_eq!(result.steps.len(), 1);
    let step = &result.steps[0];
    assert_eq!(step.name, "connect");
    assert!(step.ran && step.success);
    assert_eq!(step.request_line, format!("connect {}", server.target()));
    assert_eq!(step.phases.resolve, Duration::ZERO);
    assert!(step.phases.connect > Duration::ZERO);
    assert_eq!(step.phases.tls, Duration::ZERO);
    assert_eq!(step.phases.processing, Duration::ZERO);
    assert_eq!(step.cert_not_after, None);
    assert!(step.assertions.is_empty());
    assert!(result.duration >= step.phases.connect);
    // The server accepts on its own thread: give it a moment.
    let waited = Instant::now();
    while server.connections() == 0 && waited.elapsed() < Duration::from_secs(1) {
        tokio::time::sleep(5 * MS).await;
    }
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn connect_by_name_resolves() {
    let server = Server::start(Behavior::Reply(Reply::new(200)));
    let target = format!("localhost:{}", server.addr().port());
    let (result, _) = run(spec(target), Duration::from_secs(2)).await;
    assert!(result.success, "{:?}", result.message);
    assert!(result.steps[0].phases.resolve > Duration::ZERO);
}

#[tokio::test]
async fn refused_fails_with_connect() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (result, _) = run(spec(format!("127.0.0.1:{port}")), Duration::from_secs(2)).await;
    assert!(!result.success);
    assert_eq!(result.reason, Some(Reason::Connect));
    let step = result.failed_step().expect("failed step");
    assert_eq!(step.failed_phase, Some(Phase::Connect));
    assert_eq!(
        result.message.as_deref(),
        Some(
            format!("step \"connect\": connect to 127.0.0.1:{port} failed: connection refused")
                .as_str()
        )
    );
}

#[tokio::test]
async fn unknown_host_fails_with_dns() {
    let (result, _) = run(
        spec("no-such-host.invalid:443".into()),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(result.reason, Some(Reason::Dns), "{:?}", result.message);
    assert_eq!(result.steps[0].failed_phase, Some(Phase::Resolve));
}

#[tokio::test]
async fn invalid_target_fails_without_panicking() {
    let (result, _) = run(spec("no-port".into()), Duration::from_secs(1)).await;
    assert_eq!(result.reason, Some(Reason::Internal));
    assert!(result.message.unwrap().contains("no-port"));
}

#[tokio::test]
async fn connect_that_hangs_ends_by_the_deadline() {
    let server = Server::blackhole();
    let (result, took) = run(spec(server.target()), 300 * MS).await;
    assert_eq!(result.reason, Some(Reason::Timeout), "{:?}", result.message);
    assert_eq!(result.steps[0].failed_phase, Some(Phase::Connect));
    assert!(took + MS >= 300 * MS && took <= 400 * MS, "took {took:?}");
    assert_eq!(
        result.message.as_deref(),
        Some("step \"connect\": timed out during connect after 0.30s")
    );
}

#[tokio::test]
async fn tls_handshake_that_stalls_ends_by_the_deadline() {
    let server = Server::start_tls(Behavior::StallBeforeRead, TlsSetup::default());
    let (result, took) = run(tls_to(&server), 300 * MS).await;
    assert_eq!(result.reason, Some(Reason::Timeout), "{:?}", result.message);
    assert_eq!(result.steps[0].failed_phase, Some(Phase::Tls));
    assert!(result.steps[0].phases.tls >= 290 * MS);
    assert!(took + MS >= 300 * MS && took <= 400 * MS, "took {took:?}");
}

#[tokio::test]
async fn tls_reports_certificate_expiry() {
    let server = Server::start_tls(
        Behavior::Reply(Reply::new(200)),
        TlsSetup {
            not_after: (2031, 6, 15),
            ..TlsSetup::default()
        },
    );
    let spec = TcpSpec {
        cert_min_days: Some(30),
        ..tls_to(&server)
    };
    let (result, _) = run(spec, Duration::from_secs(2)).await;
    assert!(result.success, "{:?}", result.message);
    let step = &result.steps[0];
    assert!(step.phases.tls > Duration::ZERO);
    let not_after = step.cert_not_after.expect("cert expiry");
    assert_eq!(
        not_after.duration_since(UNIX_EPOCH).unwrap().as_secs(),
        unix_seconds(2031, 6, 15)
    );
    assert_eq!(step.assertions.len(), 1);
    assert!(step.assertions[0].passed);
    assert_eq!(
        step.assertions[0].what,
        "certificate valid for at least 30 days"
    );
    let (name, secs) = &result.observations[0];
    assert_eq!(name, "cert_expires_in");
    assert!(*secs > 0.0);
}

#[tokio::test]
async fn certificate_too_close_to_expiry_fails_the_assertion() {
    let server = Server::start_tls(
        Behavior::Reply(Reply::new(200)),
        TlsSetup {
            not_after: (2031, 6, 15),
            ..TlsSetup::default()
        },
    );
    let spec = TcpSpec {
        cert_min_days: Some(100_000),
        ..tls_to(&server)
    };
    let (result, _) = run(spec, Duration::from_secs(2)).await;
    assert!(!result.success);
    assert_eq!(result.reason, Some(Reason::Assertion));
    let step = &result.steps[0];
    assert!(!step.assertions[0].passed);
    let message = result.message.unwrap();
    assert!(
        message.starts_with("step \"connect\": certificate expires in "),
        "{message}"
    );
    assert!(
        message.ends_with("days (want at least 100000)"),
        "{message}"
    );
}

#[tokio::test]
async fn untrusted_certificate_fails_with_tls() {
    let server = Server::start_tls(Behavior::Reply(Reply::new(200)), TlsSetup::default());
    let spec = TcpSpec {
        tls: Some(client_config(&TlsOptions::default()).unwrap()),
        ..spec(server.target())
    };
    let (result, _) = run(spec, Duration::from_secs(2)).await;
    assert_eq!(result.reason, Some(Reason::Tls));
    assert_eq!(result.steps[0].failed_phase, Some(Phase::Tls));
    assert_eq!(
        result.message.as_deref(),
        Some("step \"connect\": certificate verification failed: UnknownIssuer")
    );
}

#[tokio::test]
async fn server_name_overrides_the_target_host() {
    let server = Server::start_tls(Behavior::Reply(Reply::new(200)), TlsSetup::default());
    let ok = TcpSpec {
        server_name: Some("localhost".into()),
        ..tls_to(&server)
    };
    assert!(run(ok, Duration::from_secs(2)).await.0.success);
    let wrong = TcpSpec {
        server_name: Some("db.example.com".into()),
        ..tls_to(&server)
    };
    let (result, _) = run(wrong, Duration::from_secs(2)).await;
    assert_eq!(result.reason, Some(Reason::Tls), "{:?}", result.message);
}
