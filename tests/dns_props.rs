//! Property test: whatever a DNS server sends back, the dns probe ends by its deadline with a
//! verdict (never a panic, never a hang), and keeps within its bounds (100 answers, 512 bytes
//! each). The server is a UDP socket on loopback answering every query with the case's bytes:
//! garbage after the query's id, or a genuine reply with bytes flipped anywhere past the id.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use canaryd::probe::dns::{
    AnswerCheck, DnsProbe, DnsSpec, Matcher, Quantifier, RecordType, Resolver, Transport,
};
use canaryd::probe::{Reason, RunContext};
use hickory_net::proto::op::Message;
use hickory_net::proto::rr::rdata::{MX, TXT};
use hickory_net::proto::rr::{Name, RData, Record};
use proptest::prelude::*;

/// What the server does with the next query.
#[derive(Debug, Clone)]
enum Answer {
    /// The query's id, then these bytes.
    Garbage(Vec<u8>),
    /// A genuine reply (A, MX and TXT records) with these (offset, xor) flips past the id.
    Flipped(Vec<(usize, u8)>),
}

fn genuine(query: &Message) -> Vec<u8> {
    let name = query.queries[0].name().clone();
    let mut m = Message::response(query.metadata.id, query.metadata.op_code);
    m.metadata.authoritative = true;
    m.queries = query.queries.clone();
    let mail = Name::from_ascii("mail.example.test.").unwrap();
    m.answers = vec![
        Record::from_rdata(
            name.clone(),
            60,
            RData::A(Ipv4Addr::new(192, 0, 2, 1).into()),
        ),
        Record::from_rdata(
            name.clone(),
            60,
            RData::A(Ipv4Addr::new(192, 0, 2, 2).into()),
        ),
        Record::from_rdata(name.clone(), 60, RData::MX(MX::new(10, mail))),
        Record::from_rdata(
            name,
            60,
            RData::TXT(TXT::new(vec![
                "v=spf1 -all".into(),
                "x".repeat(250),
                "y".repeat(250),
            ])),
        ),
    ];
    m.to_vec().unwrap()
}

fn server(answer: Arc<Mutex<Answer>>) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let reply = match &*answer.lock().unwrap_or_else(|e| e.into_inner()) {
                Answer::Garbage(tail) => {
                    let mut bytes = query.metadata.id.to_be_bytes().to_vec();
                    bytes.extend_from_slice(tail);
                    bytes
                }
                Answer::Flipped(flips) => {
                    let mut bytes = genuine(&query);
                    let len = bytes.len();
                    for (at, xor) in flips {
                        bytes[2 + at % (len - 2)] ^= xor;
                    }
                    bytes
                }
            };
            let _ = socket.send_to(&reply, peer);
        }
    });
    addr
}

fn answer() -> impl Strategy<Value = Answer> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..600).prop_map(Answer::Garbage),
        prop::collection::vec((any::<usize>(), 1..=255u8), 1..6).prop_map(Answer::Flipped),
    ]
}

const DEADLINE: Duration = Duration::from_millis(60);

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn any_reply_ends_by_the_deadline_with_a_bounded_verdict(case in answer()) {
        thread_local! {
            static RIG: (tokio::runtime::Runtime, Arc<Mutex<Answer>>, SocketAddr) = {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                let answer = Arc::new(Mutex::new(Answer::Garbage(Vec::new())));
                let addr = server(answer.clone());
                (rt, answer, addr)
            };
        }
        RIG.with(|(rt, slot, addr)| {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = case.clone();
            let expected = regex::Regex::new(r"^(192\.0\.2\.|v=spf1)").unwrap();
            for record_type in [RecordType::A, RecordType::Txt] {
                let mut spec = DnsSpec::new("www.example.test", record_type, Resolver::Server(*addr)).unwrap();
                spec.transport = Transport::Udp;
                // Expectations too, so damaged answers are judged, not only parsed.
                spec.expect.authoritative = Some(true);
                spec.expect.answers.push(AnswerCheck {
                    matcher: Matcher::Regex(expected.clone()),
                    quantifier: Quantifier::All,
                });
                let probe = DnsProbe::new(spec);
                let started = Instant::now();
                let run = rt.block_on(probe.query(RunContext {
                    deadline: tokio::time::Instant::now() + DEADLINE,
                }));
                let took = started.elapsed();
                prop_assert!(took < DEADLINE + Duration::from_millis(500), "took {took:?}");
                let r = &run.result;
                match r.reason {
                    None => prop_assert!(r.success),
                    Some(Reason::Protocol | Reason::Timeout | Reason::Dns | Reason::Assertion) => {
                        prop_assert!(!r.success);
                        prop_assert!(r.message.is_some());
                    }
                    Some(other) => prop_assert!(false, "unexpected reason {other}: {:?}", r.message),
                }
                prop_assert!(run.report.answers.len() <= 100);
                prop_assert!(run.report.answers.iter().all(|a| a.len() <= 512));
                prop_assert!(run.report.answer_count >= run.report.answers.len());
            }
            Ok(())
        })?;
    }
}
