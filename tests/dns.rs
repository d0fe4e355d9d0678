//! The `dns` kind against a real DNS server: dnsmasq on a free loopback port serving a small zone
//! (`tests/services::Dnsmasq`), plus a UDP socket bound by the test that never answers.

mod services;

use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use canaryd::config::expr::{eval_cond, parse};
use canaryd::probe::check::{load_checks_str, Check};
use canaryd::probe::dns::{
    AnswerCheck, DnsProbe, DnsRun, DnsSpec, Matcher, Quantifier, Rcode, RecordType, Resolver,
    Transport,
};
use canaryd::probe::{CheckResult, Phase, Probe, Reason, RunContext, Value};
use hickory_net::proto::op::Message;
use hickory_net::proto::rr::rdata::{CNAME, MX, TXT};
use hickory_net::proto::rr::{Name, RData, Record};
use regex::Regex;
use services::Dnsmasq;

/// The zone every test asks: dnsmasq is authoritative for `example.test` (SOA, NS, AA flag) and
/// serves these records from it.
const ZONE: &[&str] = &[
    "--auth-server=ns1.example.test,127.0.0.1",
    "--auth-zone=example.test",
    "--auth-soa=2026120401,hostmaster.example.test",
    "--host-record=ns1.example.test,127.0.0.1",
    "--host-record=www.example.test,192.0.2.10,2001:db8::10",
    "--host-record=multi.example.test,192.0.2.21",
    "--host-record=multi.example.test,192.0.2.22",
    "--cname=alias.example.test,www.example.test",
    "--mx-host=example.test,mail.example.test,10",
    "--host-record=mail.example.test,192.0.2.25",
    "--txt-record=example.test,v=spf1 ip4:192.0.2.0/24 -all",
];

fn zone() -> Option<Dnsmasq> {
    Dnsmasq::start(ZONE)
}

fn spec(server: SocketAddr, name: &str, record_type: RecordType) -> DnsSpec {
    DnsSpec::new(name, record_type, Resolver::Server(server)).unwrap()
}

fn expect(spec: &mut DnsSpec, matcher: Matcher, quantifier: Quantifier) {
    spec.expect.answers.push(AnswerCheck {
        matcher,
        quantifier,
    });
}

async fn run(spec: DnsSpec, timeout: Duration) -> DnsRun {
    let probe = DnsProbe::new(spec);
    let ctx = RunContext {
        deadline: tokio::time::Instant::now() + timeout,
    };
    probe.query(ctx).await
}

fn trace(run: &DnsRun) -> String {
    canaryd::cli::trace("dns", "dns", &run.result)
}

/// Every assertion of the run's step, as `ok what` / `FAIL what: detail` lines.
fn outcomes(run: &DnsRun) -> Vec<String> {
    run.result.steps[0]
        .assertions
        .iter()
        .map(|a| match &a.detail {
            None => format!("ok {}", a.what),
            Some(d) => format!("FAIL {}: {d}", a.what),
        })
        .collect()
}

fn observation(run: &DnsRun, name: &str) -> Option<f64> {
    run.result
        .observations
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| *v)
}

const LONG: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_record_asserted_exactly_by_regex_and_by_substring() {
    let Some(dns) = zone() else { return };
    let mut s = spec(dns.addr(), "www.example.test", RecordType::A);
    expect(&mut s, Matcher::Exact("192.0.2.10".into()), Quantifier::Any);
    let re = Regex::new(r"^192\.0\.2\.\d+$").unwrap();
    expect(&mut s, Matcher::Regex(re), Quantifier::All);
    expect(&mut s, Matcher::Contains("0.2.1".into()), Quantifier::Any);
    expect(
        &mut s,
        Matcher::Exact("192.0.2.99".into()),
        Quantifier::None,
    );
    s.expect.authoritative = Some(true);
    s.expect.min_answers = Some(1);
    s.expect.max_answers = Some(1);
    let r = run(s, LONG).await;
    assert!(r.result.success, "{}\n{}", trace(&r), dns.log_tail(20));
    assert_eq!(r.result.reason, None);
    assert_eq!(
        outcomes(&r),
        [
            "ok rcode NOERROR",
            "ok authoritative answer (AA flag set)",
            "ok at least 1 answer(s)",
            "ok at most 1 answer(s)",
            "ok some answer equals \"192.0.2.10\"",
            "ok every answer matches /^192\\.0\\.2\\.\\d+$/",
            "ok some answer contains \"0.2.1\"",
            "ok no answer equals \"192.0.2.99\"",
        ]
    );
    assert_eq!(r.report.answers, ["192.0.2.10"]);
    assert_eq!(r.report.rcode, Some(Rcode::NOERROR));
    assert_eq!(observation(&r, "answers"), Some(1.0));
    let step = &r.result.steps[0];
    assert_eq!(
        step.request_line,
        format!("A www.example.test @{}/udp", dns.addr())
    );
    assert!(
        step.phases.resolve > Duration::ZERO,
        "the round trip is timed"
    );
    assert_eq!(
        step.phases.connect,
        Duration::ZERO,
        "UDP has no connect phase"
    );
    assert!(
        trace(&r).contains(&format!(
            "reply NOERROR from {} (authoritative): 1 answer: 192.0.2.10\n",
            dns.addr()
        )),
        "{}",
        trace(&r)
    );
}

#[tokio::test]
async fn a_wrong_answer_fails_with_assertion_naming_what_came() {
    let Some(dns) = zone() else { return };
    let mut s = spec(dns.addr(), "multi.example.test", RecordType::A);
    expect(
        &mut s,
        Matcher::Contains("192.0.2.2".into()),
        Quantifier::All,
    );
    expect(&mut s, Matcher::Exact("192.0.2.21".into()), Quantifier::All);
    s.expect.min_answers = Some(3);
    let r = run(s, LONG).await;
    assert!(!r.result.success);
    assert_eq!(r.result.reason, Some(Reason::Assertion));
    assert_eq!(
        r.result.message.as_deref(),
        Some("step \"query\": expected at least 3 answer(s), got 2"),
        "the first failure names the run"
    );
    assert_eq!(
        outcomes(&r),
        [
            "ok rcode NOERROR",
            "FAIL at least 3 answer(s): 2",
            "ok every answer contains \"192.0.2.2\"",
            "FAIL every answer equals \"192.0.2.21\": answers 192.0.2.21, 192.0.2.22",
        ]
    );
    assert_eq!(observation(&r, "answers"), Some(2.0));
}

#[tokio::test]
async fn every_record_type_dnsmasq_serves() {
    let Some(dns) = zone() else { return };
    let cases = [
        ("www.example.test", RecordType::Aaaa, "2001:db8::10"),
        ("alias.example.test", RecordType::Cname, "www.example.test."),
        ("example.test", RecordType::Mx, "10 mail.example.test."),
        (
            "example.test",
            RecordType::Txt,
            "v=spf1 ip4:192.0.2.0/24 -all",
        ),
        ("example.test", RecordType::Ns, "ns1.example.test."),
        (
            "example.test",
            RecordType::Soa,
            "ns1.example.test. hostmaster.example.test. 2026120401 1200 180 1209600 600",
        ),
        // An A query for an alias: the CNAME on the way is not one of the answers.
        ("alias.example.test", RecordType::A, "192.0.2.10"),
    ];
    for (name, t, want) in cases {
        let mut s = spec(dns.addr(), name, t);
        expect(&mut s, Matcher::Exact(want.into()), Quantifier::All);
        s.expect.authoritative = Some(true);
        let r = run(s, LONG).await;
        assert!(r.result.success, "{t} {name}:\n{}", trace(&r));
        assert_eq!(r.report.answers, [want], "{t} {name}");
    }
}

#[tokio::test]
async fn nxdomain_fails_with_reason_dns_and_can_be_expected() {
    let Some(dns) = zone() else { return };
    let s = spec(dns.addr(), "nothere.example.test", RecordType::A);
    let r = run(s, LONG).await;
    assert!(!r.result.success);
    assert_eq!(r.result.reason, Some(Reason::Dns));
    assert_eq!(
        r.result.message.as_deref(),
        Some("step \"query\": expected rcode NOERROR, got NXDOMAIN")
    );
    assert_eq!(
        r.result.steps[0].failed_phase, None,
        "a reply came: no phase failed"
    );
    assert_eq!(r.report.rcode, Some(Rcode::NXDOMAIN));
    assert_eq!(observation(&r, "answers"), Some(0.0));

    // A check that a name is gone: NXDOMAIN expected, from the authoritative server.
    let mut s = spec(dns.addr(), "nothere.example.test", RecordType::A);
    s.expect.rcode = Rcode::NXDOMAIN;
    s.expect.authoritative = Some(true);
    expect(
        &mut s,
        Matcher::Regex(Regex::new(".").unwrap()),
        Quantifier::None,
    );
    let r = run(s, LONG).await;
    assert!(r.result.success, "{}", trace(&r));
}

#[tokio::test]
async fn refused_and_the_authoritative_flag() {
    let Some(dns) = zone() else { return };
    let r = run(spec(dns.addr(), "other.test", RecordType::A), LONG).await;
    assert_eq!(r.result.reason, Some(Reason::Dns));
    assert_eq!(
        r.result.message.as_deref(),
        Some("step \"query\": expected rcode NOERROR, got REFUSED")
    );

    // A forwarder in front of the zone answers from its cache the second time: AA clear (the
    // first, relayed, answer keeps the zone's AA flag).
    let upstream = format!("--server=/example.test/127.0.0.1#{}", dns.port());
    let Some(forwarder) = Dnsmasq::start(&[&upstream]) else {
        return;
    };
    let mut s = spec(forwarder.addr(), "www.example.test", RecordType::A);
    s.expect.authoritative = Some(true);
    let relayed = run(s.clone(), LONG).await;
    assert!(relayed.result.success, "{}", trace(&relayed));
    let r = run(s.clone(), LONG).await;
    assert_eq!(r.result.reason, Some(Reason::Assertion), "{}", trace(&r));
    assert_eq!(
        r.result.message.as_deref(),
        Some("step \"query\": expected authoritative answer (AA flag set), got AA flag clear")
    );
    assert_eq!(r.report.answers, ["192.0.2.10"]);
    s.expect.authoritative = Some(false);
    assert!(run(s, LONG).await.result.success);
}

#[tokio::test]
async fn tcp_transport() {
    let Some(dns) = zone() else { return };
    let mut s = spec(dns.addr(), "multi.example.test", RecordType::A);
    s.transport = Transport::Tcp;
    expect(&mut s, Matcher::Exact("192.0.2.22".into()), Quantifier::Any);
    let r = run(s, LONG).await;
    assert!(r.result.success, "{}", trace(&r));
    assert_eq!(r.report.answers, ["192.0.2.21", "192.0.2.22"]);
    assert_eq!(
        r.result.steps[0].request_line,
        format!("A multi.example.test @{}/tcp", dns.addr())
    );
    assert!(
        dns.log_tail(5)
            .contains("auth[A] multi.example.test from 127.0.0.1"),
        "dnsmasq answered it: {}",
        dns.log_tail(5)
    );
}

#[tokio::test]
async fn tcp_refused_is_a_connect_failure() {
    // A port nothing listens on: bound and dropped.
    let port = services::free_port();
    let mut s = spec(
        SocketAddr::from(([127, 0, 0, 1], port)),
        "www.example.test",
        RecordType::A,
    );
    s.transport = Transport::Tcp;
    let r = run(s, LONG).await;
    assert_eq!(r.result.reason, Some(Reason::Connect), "{}", trace(&r));
    assert_eq!(r.result.steps[0].failed_phase, Some(Phase::Connect));
    assert_eq!(
        r.result.message.as_deref(),
        Some("step \"query\": connection refused")
    );
    assert_eq!(
        observation(&r, "answers"),
        None,
        "no reply, no answer count"
    );
    assert_eq!(r.report.rcode, None);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_by_the_deadline() {
    // Bound by the test, never read: the query is swallowed.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let started = Instant::now();
    let r = run(
        spec(addr, "www.example.test", RecordType::A),
        Duration::from_millis(600),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(r.result.reason, Some(Reason::Timeout), "{}", trace(&r));
    assert_eq!(r.result.steps[0].failed_phase, Some(Phase::Resolve));
    let message = r.result.message.clone().unwrap();
    assert!(
        message.starts_with("step \"query\": no reply within ")
            && message.ends_with(" ms (resolve)"),
        "{message}"
    );
    assert!(
        took >= Duration::from_millis(550),
        "waited for the deadline: {took:?}"
    );
    assert!(
        took < Duration::from_millis(1500),
        "and not longer: {took:?}"
    );
    let mut buf = [0u8; 512];
    silent.set_nonblocking(true).unwrap();
    let mut received = 0;
    while silent.recv_from(&mut buf).is_ok() {
        received += 1;
    }
    assert_eq!(
        received, 1,
        "one query, no retry: a retry would hide packet loss"
    );
}

#[tokio::test]
async fn system_resolver_reads_resolv_conf() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("resolv.conf");
    std::fs::write(&conf, "search example.test\nnameserver 127.0.0.1\n").unwrap();
    let mut s = DnsSpec::new("www.example.test", RecordType::A, Resolver::System).unwrap();
    s.transport = Transport::Tcp;
    let probe = DnsProbe::new(s).with_resolv_conf(&conf);
    let ctx = RunContext {
        deadline: tokio::time::Instant::now() + Duration::from_secs(2),
    };
    let r = probe.query(ctx).await;
    assert_eq!(
        r.result.steps[0].request_line,
        "A www.example.test @127.0.0.1:53/tcp (system)"
    );
    assert_eq!(r.report.server, Some("127.0.0.1:53".parse().unwrap()));

    // Another first server, read afresh at the next run.
    std::fs::write(&conf, "nameserver 127.0.0.2\nnameserver 127.0.0.1\n").unwrap();
    let r = probe.query(ctx).await;
    assert_eq!(r.report.server, Some("127.0.0.2:53".parse().unwrap()));

    // A FIFO in its place is not opened (it would block): the C library's default.
    std::fs::remove_file(&conf).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&conf)
        .status()
        .unwrap();
    assert!(made.success());
    let started = Instant::now();
    let r = probe.query(ctx).await;
    assert_eq!(r.report.server, Some("127.0.0.1:53".parse().unwrap()));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "bounded by the deadline"
    );
}

/// A DNS server played by the test: answers each query with what `reply` makes of it (raw bytes,
/// so it can lie), over UDP or TCP on a loopback port; `None` stays silent.
struct FakeDns {
    addr: SocketAddr,
}

type Reply = fn(&Message) -> Option<Vec<u8>>;

impl FakeDns {
    fn udp(reply: Reply) -> FakeDns {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok((n, peer)) = socket.recv_from(&mut buf) {
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                if let Some(bytes) = reply(&query) {
                    let _ = socket.send_to(&bytes, peer);
                }
            }
        });
        FakeDns { addr }
    }

    fn tcp(reply: Reply) -> FakeDns {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut len = [0u8; 2];
                if conn.read_exact(&mut len).is_err() {
                    continue;
                }
                let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
                if conn.read_exact(&mut buf).is_err() {
                    continue;
                }
                let Ok(query) = Message::from_vec(&buf) else {
                    continue;
                };
                if let Some(bytes) = reply(&query) {
                    let len = u16::try_from(bytes.len()).unwrap().to_be_bytes();
                    let _ = conn.write_all(&len);
                    let _ = conn.write_all(&bytes);
                }
                // Kept open until the client goes: the probe reads one reply and hangs up.
                let _ = conn.read(&mut len);
            }
        });
        FakeDns { addr }
    }
}

/// A reply to `query` with its id, question and these answers.
fn reply_with(query: &Message, answers: Vec<Record>) -> Vec<u8> {
    let mut m = Message::response(query.metadata.id, query.metadata.op_code);
    m.metadata.recursion_desired = query.metadata.recursion_desired;
    m.queries = query.queries.clone();
    m.answers = answers;
    m.to_vec().unwrap()
}

fn asked(query: &Message) -> Name {
    query.queries[0].name().clone()
}

#[tokio::test]
async fn garbage_with_the_right_id_is_a_protocol_failure() {
    let fake = FakeDns::udp(|q| {
        let mut bytes = q.metadata.id.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0x81, 0x80, 0xff, 0xff, 0xff, 0xff, 0xde, 0xad]);
        Some(bytes)
    });
    let r = run(spec(fake.addr, "www.example.test", RecordType::A), LONG).await;
    assert_eq!(r.result.reason, Some(Reason::Protocol), "{}", trace(&r));
    assert_eq!(r.result.steps[0].failed_phase, Some(Phase::Resolve));
    let message = r.result.message.unwrap();
    assert!(
        message.starts_with("step \"query\": malformed reply"),
        "{message}"
    );
}

#[tokio::test]
async fn replies_with_another_id_are_ignored_until_the_deadline() {
    let fake = FakeDns::udp(|q| {
        let mut forged = Message::from_vec(&reply_with(q, Vec::new())).unwrap();
        forged.metadata.id = q.metadata.id.wrapping_add(1);
        Some(forged.to_vec().unwrap())
    });
    let r = run(
        spec(fake.addr, "www.example.test", RecordType::A),
        Duration::from_millis(400),
    )
    .await;
    assert_eq!(r.result.reason, Some(Reason::Timeout), "{}", trace(&r));
}

#[tokio::test]
async fn huge_replies_are_bounded_not_kept_whole() {
    // 150 A records over TCP (a UDP reply that large would be cut to the advertised size).
    let fake = FakeDns::tcp(|q| {
        let answers = (0..150u32)
            .map(|i| {
                let ip = std::net::Ipv4Addr::from(0xC000_0200 + i);
                Record::from_rdata(asked(q), 60, RData::A(ip.into()))
            })
            .collect();
        Some(reply_with(q, answers))
    });
    let mut s = spec(fake.addr, "many.example.test", RecordType::A);
    s.transport = Transport::Tcp;
    s.expect.max_answers = Some(100);
    let r = run(s, LONG).await;
    assert_eq!(r.report.answer_count, 150);
    assert_eq!(r.report.answers.len(), 100, "at most 100 kept");
    assert_eq!(observation(&r, "answers"), Some(150.0), "all are counted");
    assert_eq!(
        r.result.message.as_deref(),
        Some("step \"query\": expected at most 100 answer(s), got 150")
    );
    let shown = trace(&r);
    assert!(
        shown.contains(": 150 answers: 192.0.2.0, 192.0.2.1, ")
            && shown.contains(", 192.0.2.99, … (50 not kept)\n"),
        "{shown}"
    );

    // One TXT record of 40 strings of 255 bytes: its text is cut to 512 bytes.
    let fake = FakeDns::tcp(|q| {
        let strings = vec!["t".repeat(255); 40];
        let txt = Record::from_rdata(asked(q), 60, RData::TXT(TXT::new(strings)));
        Some(reply_with(q, vec![txt]))
    });
    let mut s = spec(fake.addr, "big.example.test", RecordType::Txt);
    s.transport = Transport::Tcp;
    expect(
        &mut s,
        Matcher::Regex(Regex::new("^t+$").unwrap()),
        Quantifier::All,
    );
    let r = run(s, LONG).await;
    assert!(r.result.success, "{}", trace(&r));
    assert_eq!(r.report.answers[0].len(), 512);
}

#[tokio::test]
async fn records_of_other_types_are_not_answers() {
    // A CNAME chain and a stray MX before the A record asked for.
    let fake = FakeDns::udp(|q| {
        let target = Name::from_ascii("target.example.test.").unwrap();
        let cname = Record::from_rdata(asked(q), 60, RData::CNAME(CNAME(target.clone())));
        let mx = Record::from_rdata(target.clone(), 60, RData::MX(MX::new(5, target.clone())));
        let a = Record::from_rdata(
            target,
            60,
            RData::A(std::net::Ipv4Addr::new(192, 0, 2, 7).into()),
        );
        Some(reply_with(q, vec![cname, mx, a]))
    });
    let mut s = spec(fake.addr, "alias.example.test", RecordType::A);
    s.expect.min_answers = Some(1);
    s.expect.max_answers = Some(1);
    let r = run(s, LONG).await;
    assert!(r.result.success, "{}", trace(&r));
    assert_eq!(r.report.answers, ["192.0.2.7"]);
}

// ----- the kind through YAML: load, validate, build, run ---------------------------------------

/// Checks loaded from YAML (as a check file), each with its built probe.
fn load(yaml: &str) -> Vec<(Arc<Check>, Arc<dyn Probe>)> {
    let checks =
        load_checks_str(Path::new("dns.yaml"), yaml).unwrap_or_else(|e| panic!("{yaml}\n{e}"));
    checks
        .into_iter()
        .map(|c| {
            let probe = canaryd::daemon::build_probe(&c).unwrap();
            (c, probe)
        })
        .collect()
}

/// One run within the check's own timeout.
async fn run_check(check: &Check, probe: &Arc<dyn Probe>) -> CheckResult {
    let ctx = RunContext {
        deadline: tokio::time::Instant::now() + check.timeout,
    };
    probe.run(ctx).await
}

fn var(check: &Check, r: &CheckResult, name: &str) -> Option<Value> {
    check.kind.variable(r, name, SystemTime::now())
}

fn holds(check: &Check, r: &CheckResult, when: &str) -> Option<bool> {
    eval_cond(&parse(when).unwrap(), &|n| var(check, r, n))
}

#[tokio::test]
async fn yaml_checks_against_dnsmasq() {
    let Some(dns) = zone() else { return };
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let yaml = format!(
        r#"checks:
  - name: www
    dns:
      name: www.example.test
      server: {addr}
      expect:
        authoritative: true
        min_answers: 1
        answers:
          - exact: 192.0.2.10
          - regex: '^192\.0\.2\.[0-9]+$'
            match: all
          - contains: "0.2.9"
            match: none
  - name: mail
    dns:
      name: example.test
      type: MX
      server: {addr}
      transport: tcp
      recursion: false
      expect:
        answers:
          - exact: 10 mail.example.test.
  - name: gone
    dns:
      name: nothere.example.test
      server: {addr}
    alerts:
      - name: NameGone
        when: rcode == "NXDOMAIN" && answers == 0
  - name: silent
    timeout: 500ms
    dns:
      name: www.example.test
      type: AAAA
      server: {silent}
"#,
        addr = dns.addr(),
        silent = silent.local_addr().unwrap(),
    );
    let checks = load(&yaml);
    assert_eq!(checks.len(), 4);
    for (check, _) in &checks {
        assert_eq!(check.kind.name(), "dns");
        assert_eq!(check.kind.step_names(), ["query"]);
    }

    let (www, probe) = &checks[0];
    let r = run_check(www, probe).await;
    assert!(r.success, "{}", canaryd::cli::trace("www", "dns", &r));
    assert_eq!(var(www, &r, "rcode"), Some(Value::String("NOERROR".into())));
    assert_eq!(var(www, &r, "answers"), Some(Value::Number(1.0)));
    assert!(matches!(var(www, &r, "duration"), Some(Value::Duration(_))));
    assert_eq!(
        holds(www, &r, r#"rcode == "NOERROR" && answers >= 1"#),
        Some(true)
    );

    let (mail, probe) = &checks[1];
    let r = run_check(mail, probe).await;
    assert!(r.success, "{}", canaryd::cli::trace("mail", "dns", &r));
    let trace = canaryd::cli::trace("mail", "dns", &r);
    assert!(
        trace.contains(&format!("MX example.test @{}/tcp", dns.addr()))
            && trace.contains("1 answer: 10 mail.example.test."),
        "{trace}"
    );

    let (gone, probe) = &checks[2];
    let r = run_check(gone, probe).await;
    assert!(!r.success);
    assert_eq!(r.reason, Some(Reason::Dns));
    assert_eq!(
        r.message.as_deref(),
        Some("step \"query\": expected rcode NOERROR, got NXDOMAIN")
    );
    assert_eq!(
        var(gone, &r, "rcode"),
        Some(Value::String("NXDOMAIN".into()))
    );
    assert_eq!(var(gone, &r, "reason"), Some(Value::String("dns".into())));
    let when = &gone.alerts[0];
    assert_eq!(when.name, "NameGone");
    assert_eq!(
        holds(gone, &r, r#"rcode == "NXDOMAIN" && answers == 0"#),
        Some(true)
    );

    let (silent_check, probe) = &checks[3];
    let started = Instant::now();
    let r = run_check(silent_check, probe).await;
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(r.reason, Some(Reason::Timeout));
    assert_eq!(
        var(silent_check, &r, "reason"),
        Some(Value::String("timeout".into()))
    );
    assert_eq!(var(silent_check, &r, "rcode"), None, "no reply: unknown");
    assert_eq!(var(silent_check, &r, "answers"), None, "no reply: unknown");
    assert_eq!(holds(silent_check, &r, r#"rcode == "NOERROR""#), None);
}

#[test]
fn alert_expressions_know_the_dns_variables() {
    let bad = r#"checks:
  - name: www
    dns: {name: www.example.test, server: 127.0.0.1}
    alerts:
      - name: Slow
        when: status == 200
"#;
    let e = load_checks_str(Path::new("dns.yaml"), bad)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unknown variable \"status\" for a dns check (known: failed, duration, reason, rcode, answers)"),
        "{e}"
    );
    let typed = bad.replace("status == 200", "rcode > 3");
    let e = load_checks_str(Path::new("dns.yaml"), &typed)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("rcode"),
        "a string is not compared with a number: {e}"
    );
}

#[test]
fn canaryd_probe_prints_the_reply_and_exits_by_the_verdict() {
    let Some(dns) = zone() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("canaryd.yaml"),
        "state_dir: state\ncheck_files: [checks.yaml]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("checks.yaml"),
        format!(
            "checks:\n  - name: txt\n    dns: {{name: example.test, type: TXT, server: \"{0}\", expect: {{answers: [{{contains: spf1}}]}}}}\n  - name: gone\n    dns: {{name: gone.example.test, server: \"{0}\"}}\n",
            dns.addr()
        ),
    )
    .unwrap();
    let probe = |name: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_canaryd"))
            .current_dir(dir.path())
            .args(["probe", name])
            .output()
            .unwrap()
    };
    let out = probe("txt");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("check txt (dns)"), "{stdout}");
    assert!(
        stdout.contains("ok   some answer contains \"spf1\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 answer: v=spf1 ip4:192.0.2.0/24 -all"),
        "{stdout}"
    );
    let out = probe("gone");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("error (dns): expected rcode NOERROR, got NXDOMAIN"),
        "{stdout}"
    );
}

#[test]
fn a_running_daemon_exports_dns_results_in_metrics_and_the_api() {
    let Some(dns) = zone() else { return };
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", services::free_port());
    std::fs::write(
        dir.path().join("canaryd.yaml"),
        format!("listen: {addr}\nstate_dir: state\ncheck_files: [checks.yaml]\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("checks.yaml"),
        format!(
            "checks:\n  - name: www\n    interval: 200ms\n    timeout: 150ms\n    dns: {{name: www.example.test, server: \"{0}\", expect: {{answers: [{{exact: 192.0.2.10}}]}}}}\n  - name: gone\n    interval: 200ms\n    timeout: 150ms\n    dns: {{name: gone.example.test, server: \"{0}\", transport: tcp}}\n",
            dns.addr()
        ),
    )
    .unwrap();
    let daemon = services::Canaryd::start(
        services::canaryd_run(&dir.path().join("canaryd.yaml")),
        &addr,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let wanted = [
        "canary_check_success{check=\"www\"} 1",
        "canary_check_success{check=\"gone\"} 0",
        "canary_step_success{check=\"www\",step=\"query\"} 1",
        "canary_check_failures_total{check=\"gone\",reason=\"dns\"}",
    ];
    let deadline = Instant::now() + Duration::from_secs(8);
    let metrics = loop {
        let text = services::http_get(&daemon.url("/metrics"))
            .map(|r| r.text())
            .unwrap_or_default();
        if wanted.iter().all(|w| text.contains(w)) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed {wanted:?}:\n{text}\n{}",
            daemon.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        metrics.contains(
            "canary_http_phase_duration_seconds{check=\"gone\",step=\"query\",phase=\"connect\"}"
        ),
        "TCP's connect phase is exported"
    );
    let api = services::http_get(&daemon.url("/api/v1/checks"))
        .unwrap()
        .json();
    let checks = api["checks"].as_array().unwrap();
    let find = |name: &str| {
        checks
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {api}"))
    };
    let www = find("www").to_string();
    assert!(www.contains("\"answers\":[\"192.0.2.10\"]"), "{www}");
    assert!(www.contains("\"rcode\":\"NOERROR\""), "{www}");
    let gone = find("gone").to_string();
    assert!(gone.contains("\"rcode\":\"NXDOMAIN\""), "{gone}");
    assert!(
        gone.contains("expected rcode NOERROR, got NXDOMAIN"),
        "{gone}"
    );
}
