//! Property test of every job system's reply parsing, through the real probe and redis-rs: a
//! fake Redis answers each command either with a reply of the shape Redis gives (so the read
//! can succeed) or, where the generated plan says so, with a value of a shape Redis never gives
//! for that command (a negative count, a double, a boolean, junk text, a map, nested arrays).
//! Properties: no panic; a read that received any wrong-shaped reply fails with reason `redis`;
//! a read that received none succeeds (so the first property is not vacuous).
//!
//! `CLIENT LIST` is the one command whose odd reply is tolerated by design (BullMQ's worker
//! count becomes unknown rather than failing the read), so it is never given a wrong shape.

mod fake_redis;

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use canaryd::daemon::build_probe;
use canaryd::probe::check::load_checks_str;
use canaryd::probe::{Reason, RunContext};
use fake_redis::{resp, FakeRedis, Reply};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// The plan of one case: per command in order (cycling), `Some(bytes)` for a wrong-shaped
/// reply, `None` for an honest one.
#[derive(Default)]
struct Plan {
    steps: Vec<Option<Vec<u8>>>,
    next: usize,
    wrong_sent: Vec<String>,
}

/// The reply Redis would give, in a shape each reader accepts.
fn honest(args: &[Vec<u8>]) -> Vec<u8> {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
    match name.as_str() {
        "LLEN" | "ZCARD" | "SCARD" | "HLEN" | "XLEN" | "STRLEN" => resp::int(2),
        "SMEMBERS" => resp::array(&[resp::bulk(b"rq:queue:default")]),
        "GET" => resp::bulk(b"7"),
        "HGET" => resp::nil(),
        "HMGET" => resp::array(&vec![resp::nil(); args.len().saturating_sub(2)]),
        "HGETALL" => resp::array(&[]),
        "TIME" => resp::array(&[resp::bulk(b"1700000000"), resp::bulk(b"0")]),
        "TYPE" => resp::simple("list"),
        "EVAL" => {
            let keys: usize = String::from_utf8_lossy(&args[2]).parse().unwrap_or(0);
            let script = String::from_utf8_lossy(&args[1]);
            if script.contains("ZRANGEBYSCORE") {
                // BullMQ's oldest-job script: three keys per queue, a list per queue.
                resp::array(&vec![resp::array(&[]); keys / 3])
            } else {
                resp::array(&vec![resp::nil(); keys])
            }
        }
        "CLIENT" => resp::bulk(b""),
        "XINFO" => resp::array(&[]),
        "SCAN" => resp::array(&[resp::bulk(b"0"), resp::array(&[])]),
        _ => b"-ERR unknown command\r\n".to_vec(),
    }
}

/// Values no command read by a queue check answers with (`CLIENT LIST` aside).
fn wrong_shape() -> impl Strategy<Value = Vec<u8>> {
    let junk = "zz[a-y]{0,12}";
    prop_oneof![
        (1i64..1_000_000).prop_map(|n| resp::int(-n)),
        (-1e9f64..1e9).prop_map(|d| format!(",{d:?}\r\n").into_bytes()),
        Just(b"#t\r\n".to_vec()),
        junk.prop_map(|s| resp::simple(&s)),
        junk.prop_map(|s| resp::bulk(s.as_bytes())),
        (junk, 0i64..100).prop_map(|(k, v)| {
            let mut m = b"%1\r\n".to_vec();
            m.extend(resp::simple(&k));
            m.extend(resp::int(v));
            m
        }),
        proptest::collection::vec(0i64..5, 0..4).prop_map(|ints| {
            // Two or more items, the first a nested array: no reader takes that for its reply.
            let inner: Vec<Vec<u8>> = ints.iter().map(|&i| resp::int(i)).collect();
            resp::array(&[resp::array(&inner), resp::int(1)])
        }),
    ]
}

const SYSTEMS: [&str; 12] = [
    "system: sidekiq",
    "system: sidekiq\n      queues: [default, mail]",
    "system: resque",
    "system: resque\n      queues: [default]",
    "system: rq",
    "system: rq\n      queues: [default, mail]",
    "system: celery",
    "system: celery\n      queues: [default]",
    "system: bullmq",
    "system: bullmq\n      queues: [default]",
    "system: redis\n      keys: [jobs, other]",
    "system: redis\n      patterns: [\"jobs:*\"]",
];

#[test]
fn wrong_shaped_replies_fail_every_reader_and_honest_ones_pass() {
    let plan = Arc::new(Mutex::new(Plan::default()));
    let p = plan.clone();
    let fake = FakeRedis::start(Arc::new(move |args: &[Vec<u8>]| {
        let mut plan = p.lock().unwrap();
        let step = if plan.steps.is_empty() {
            None
        } else {
            let i = plan.next % plan.steps.len();
            plan.next += 1;
            plan.steps[i].clone()
        };
        let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
        match step {
            Some(bytes) if name != "CLIENT" => {
                plan.wrong_sent.push(name);
                Reply::Raw(bytes)
            }
            _ => Reply::Raw(honest(args)),
        }
    }));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = fake.url();

    // Bounded: 600 cases (about 50 per system and variant), seconds on 2 cores. The seed is
    // random unless QUEUE_PROP_SEED gives one, and printed with any failure.
    let seed: u64 = std::env::var("QUEUE_PROP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let mut seed_bytes = [0u8; 32];
    for (i, b) in seed.to_le_bytes().iter().cycle().take(32).enumerate() {
        seed_bytes[i] = *b;
    }
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: 600,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let strategy = (
        0..SYSTEMS.len(),
        proptest::collection::vec(proptest::option::weighted(0.15, wrong_shape()), 1..24),
    );
    let (passed, failed) = (AtomicU32::new(0), AtomicU32::new(0));
    runner
        .run(&strategy, |(system, steps)| {
            {
                let mut p = plan.lock().unwrap();
                *p = Plan {
                    steps,
                    ..Plan::default()
                };
            }
            let yaml = format!(
                "checks:\n  - name: jobs\n    interval: 10s\n    timeout: 2s\n    queue:\n      redis: \"{url}\"\n      {}\n",
                SYSTEMS[system]
            );
            let checks = load_checks_str(Path::new("q.yaml"), &yaml).unwrap();
            let probe = build_probe(&checks[0]).unwrap();
            let r = rt.block_on(probe.run(RunContext {
                deadline: tokio::time::Instant::now() + Duration::from_secs(2),
            }));
            let wrong = std::mem::take(&mut plan.lock().unwrap().wrong_sent);
            if wrong.is_empty() {
                prop_assert!(
                    r.success,
                    "{}: honest replies failed: {:?}",
                    SYSTEMS[system],
                    r.message
                );
                passed.fetch_add(1, Ordering::Relaxed);
            } else {
                prop_assert!(
                    !r.success,
                    "{}: passed after wrong-shaped replies to {wrong:?}",
                    SYSTEMS[system]
                );
                prop_assert_eq!(r.reason, Some(Reason::Redis), "{:?}", r.message);
                failed.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}\nseed {seed}: rerun with QUEUE_PROP_SEED={seed}"));
    let (passed, failed) = (passed.into_inner(), failed.into_inner());
    eprintln!("seed {seed}: {passed} honest reads passed, {failed} reads with wrong-shaped replies failed");
    assert!(passed > 50 && failed > 50, "both kinds of case ran");
}
