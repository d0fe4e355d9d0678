//! Queue checks against hostile or broken Redis servers and big data: a 100 MB reply and a
//! bulk declared 2 GB then trickled (a fake Redis) leave the daemon's peak RSS under its budget
//! while the checks fail with reason `redis` and `/-/healthy` answers; 100 MB jobs at the heads
//! of real Sidekiq, Resque and RQ queues are reported (depth, oldest age) without being read;
//! replies of the wrong shape fail rq and generic checks instead of passing.

mod fake_redis;
mod services;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use canaryd::daemon::build_probe;
use canaryd::probe::check::{load_checks_str, Check};
use canaryd::probe::{CheckResult, Probe, Reason, RunContext};
use fake_redis::{resp, Answer, FakeRedis, Reply};
use serde_json::Value as Json;
use services::Redis;

/// The daemon's memory budget (for 10,000 configured checks; these tests configure a few).
const RSS_BUDGET_KIB: u64 = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// A daemon against fake servers and big jobs
// ---------------------------------------------------------------------------------------------

struct Daemon {
    canaryd: services::Canaryd,
    config: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(checks_yaml: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("checks")).unwrap();
        std::fs::write(dir.path().join("checks/queues.yaml"), checks_yaml).unwrap();
        let addr = format!("127.0.0.1:{}", services::free_port());
        let config = dir.path().join("canaryd.yaml");
        std::fs::write(
            &config,
            format!("listen: {addr}\nstate_dir: state\ncheck_files: [checks/*.yaml]\n"),
        )
        .unwrap();
        let mut cmd = services::canaryd_run(&config);
        cmd.current_dir(dir.path());
        let canaryd = services::Canaryd::start(cmd, &addr).unwrap_or_else(|e| panic!("{e}"));
        Daemon {
            canaryd,
            config,
            _dir: dir,
        }
    }

    /// The daemon's process: the one whose command line names its configuration file.
    fn pid(&self) -> u32 {
        let needle = self.config.to_string_lossy().into_owned();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let args: Vec<String> = cmdline
                .split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if args.iter().any(|a| a == &needle) && args.iter().any(|a| a == "run") {
                return pid;
            }
        }
        panic!("no canaryd process with {needle}");
    }

    /// Peak resident memory so far (VmHWM), in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }

    fn healthy_within(&self, bound: Duration) -> bool {
        let started = Instant::now();
        services::http_get(&self.canaryd.url("/-/healthy")).is_ok_and(|r| r.status == 200)
            && started.elapsed() < bound
    }

    /// The last result of a check, once it has one.
    fn last(&self, check: &str) -> Option<Json> {
        let body = services::http_get(&self.canaryd.url(&format!("/api/v1/checks/{check}")))
            .ok()?
            .json();
        let last = body.get("last_result")?;
        (!last.is_null()).then(|| last.clone())
    }

    /// Polls (every 100 ms, while checking that `/-/healthy` answers within a second) until `f`
    /// holds for the check's last result; panics with the log after `timeout`.
    fn wait_for(
        &self,
        check: &str,
        timeout: Duration,
        what: &str,
        f: impl Fn(&Json) -> bool,
    ) -> Json {
        let deadline = Instant::now() + timeout;
        loop {
            assert!(
                self.healthy_within(Duration::from_secs(1)),
                "/-/healthy did not answer within 1 s\n{}",
                self.canaryd.log_tail(30)
            );
            if let Some(last) = self.last(check) {
                if f(&last) {
                    return last;
                }
                if Instant::now() > deadline {
                    panic!(
                        "{check}: {what} not seen in {timeout:?}; last result {last:#}\n{}",
                        self.canaryd.log_tail(30)
                    );
                }
            } else if Instant::now() > deadline {
                panic!(
                    "{check}: no result in {timeout:?}\n{}",
                    self.canaryd.log_tail(30)
                );
            }
            sleep(Duration::from_millis(100));
        }
    }
}

fn failed_with(last: &Json, reason: &str, message: &str) -> bool {
    last["success"] == Json::Bool(false)
        && last["reason"] == reason
        && last["message"]
            .as_str()
            .is_some_and(|m| m.contains(message))
}

fn variable(last: &Json, name: &str) -> Option<f64> {
    last["variables"].get(name)?.as_f64()
}

/// A plain-keys reader's honest answers: `jobs` is a list of three.
fn sane_generic(args: &[Vec<u8>]) -> Reply {
    match args[0].to_ascii_uppercase().as_slice() {
        b"TYPE" => Reply::Raw(resp::simple("list")),
        b"LLEN" => Reply::Raw(resp::int(3)),
        _ => Reply::Raw(b"-ERR unknown command\r\n".to_vec()),
    }
}

#[test]
fn a_100_mb_reply_and_a_trickled_2_gb_bulk_fail_their_checks_within_the_memory_budget() {
    let honest = Arc::new(AtomicBool::new(false));
    let h = honest.clone();
    let huge = FakeRedis::start(Arc::new(move |args: &[Vec<u8>]| {
        if h.load(Ordering::SeqCst) {
            sane_generic(args)
        } else {
            Reply::HugeBulk(100 << 20)
        }
    }) as Answer);
    let h = honest.clone();
    let trickle = FakeRedis::start(Arc::new(move |args: &[Vec<u8>]| {
        if h.load(Ordering::SeqCst) {
            sane_generic(args)
        } else {
            Reply::Trickle {
                declared: 2_000_000_000,
                every: Duration::from_millis(20),
            }
        }
    }) as Answer);
    let check = |name: &str, url: String, extra: &str| {
        format!(
            "  - name: {name}\n    interval: 1s\n    timeout: 1s\n    queue:\n      redis: \"{url}\"\n{extra}"
        )
    };
    let yaml = format!(
        "checks:\n{}{}{}",
        check(
            "huge",
            huge.url(),
            "      system: redis\n      keys: [jobs]\n"
        ),
        check(
            "trickle",
            trickle.url(),
            "      system: redis\n      keys: [jobs]\n"
        ),
        check("huge-rq", huge.url(), "      system: rq\n"),
    );
    let d = Daemon::start(&yaml);

    let over = |port: u16| format!("reply over 8 MiB from redis://127.0.0.1:{port}");
    d.wait_for("huge", Duration::from_secs(30), "reply over 8 MiB", |l| {
        failed_with(l, "redis", &over(huge.port()))
    });
    d.wait_for(
        "huge-rq",
        Duration::from_secs(30),
        "reply over 8 MiB",
        |l| failed_with(l, "redis", &over(huge.port())),
    );
    // The declared length alone fails the reply: no waiting for the timeout, no 2 GB buffer.
    let last = d.wait_for(
        "trickle",
        Duration::from_secs(30),
        "reply over 8 MiB",
        |l| failed_with(l, "redis", &over(trickle.port())),
    );
    assert!(
        last["duration_seconds"].as_f64().is_some_and(|s| s < 0.5),
        "failed at the header, not by the timeout: {last:#}"
    );
    // A few more runs of each, each a fresh connection and a fresh oversized reply.
    let deadline = Instant::now() + Duration::from_secs(30);
    while huge.answered() < 6 || trickle.answered() < 3 {
        assert!(Instant::now() < deadline, "runs did not continue");
        assert!(d.healthy_within(Duration::from_secs(1)), "/-/healthy");
        sleep(Duration::from_millis(100));
    }
    let peak = d.peak_rss_kib();
    eprintln!("canaryd peak RSS: {peak} KiB");
    assert!(
        peak < RSS_BUDGET_KIB,
        "peak RSS {peak} KiB over the {RSS_BUDGET_KIB} KiB budget"
    );

    // The servers come to their senses: the next runs read them.
    honest.store(true, Ordering::SeqCst);
    for name in ["huge", "trickle"] {
        let last = d.wait_for(name, Duration::from_secs(30), "recovery", |l| {
            l["success"] == Json::Bool(true)
        });
        assert_eq!(variable(&last, "depth"), Some(3.0), "{name}: {last:#}");
    }
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// `2026-11-21T06:20:21.500000Z` for Unix seconds `t`.
fn iso(t: f64, fraction: bool) -> String {
    let dt = chrono::DateTime::from_timestamp(t as i64, 0).unwrap();
    if fraction {
        dt.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    } else {
        dt.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
    }
}

#[test]
fn hundred_mb_jobs_at_queue_heads_are_measured_without_being_read() {
    let Some(redis) = Redis::start() else { return };
    let then = (now_unix() - 600.0).floor();
    let big = "x".repeat(100 << 20);

    // Sidekiq (`client.rb`): LPUSH of the job JSON, `enqueued_at` written after `args`; the
    // oldest job is at the right end. An argument quoting the field name cannot fool the read.
    let job = format!(
        r#"{{"retry":true,"queue":"default","class":"HardJob","args":["{big}","\"enqueued_at\": 1"],"jid":"b1","created_at":{then},"enqueued_at":{then}}}"#
    );
    redis.cmd(&["LPUSH", "queue:default", &job]);
    drop(job);
    let small = format!(r#"{{"class":"X","args":[],"enqueued_at":{}}}"#, now_unix());
    redis.cmd(&["LPUSH", "queue:default", &small]);
    redis.cmd(&["SADD", "queues", "default"]);

    // Active Job on Resque (`ResqueAdapter`): the serialized job is the first argument, its
    // `enqueued_at` after `arguments`.
    let job = format!(
        r#"{{"class":"ActiveJob::QueueAdapters::ResqueAdapter::JobWrapper","args":[{{"job_class":"MailJob","job_id":"j1","queue_name":"mail","arguments":["{big}"],"executions":0,"enqueued_at":"{}"}}]}}"#,
        iso(then, false)
    );
    redis.cmd(&["RPUSH", "resque:queue:mail", &job]);
    drop(job);
    redis.cmd(&["SADD", "resque:queues", "mail"]);

    // RQ: the queue holds ids; the job hash holds the payload (`data`) beside `enqueued_at`.
    redis.cmd(&["RPUSH", "rq:queue:big", "j1"]);
    redis.cmd(&[
        "HSET",
        "rq:job:j1",
        "enqueued_at",
        &iso(then, true),
        "data",
        &big,
    ]);
    redis.cmd(&["SADD", "rq:queues", "rq:queue:big"]);
    drop(big);

    let check = |name: &str, system: &str| {
        format!(
            "  - name: {name}\n    interval: 5s\n    timeout: 4s\n    queue:\n      system: {system}\n      redis: \"{}\"\n",
            redis.url()
        )
    };
    let yaml = format!(
        "checks:\n{}{}{}",
        check("sidekiq", "sidekiq"),
        check("resque", "resque"),
        check("rq", "rq")
    );
    let d = Daemon::start(&yaml);
    for (name, depth) in [("sidekiq", 2.0), ("resque", 1.0), ("rq", 1.0)] {
        let last = d.wait_for(name, Duration::from_secs(30), "a successful read", |l| {
            l["success"] == Json::Bool(true)
        });
        assert_eq!(variable(&last, "depth"), Some(depth), "{name}: {last:#}");
        let age = variable(&last, "oldest_age").unwrap_or(-1.0);
        assert!(
            (599.0..700.0).contains(&age),
            "{name}: oldest_age {age}, the big job was enqueued 600 s ago: {last:#}"
        );
    }
    // Another run of each. (Redis itself takes about a second per 100 MB head to extract the
    // field, hence the generous timeout.)
    sleep(Duration::from_secs(6));
    for name in ["sidekiq", "resque", "rq"] {
        let last = d.last(name).unwrap();
        assert_eq!(last["success"], Json::Bool(true), "{name}: {last:#}");
    }
    let peak = d.peak_rss_kib();
    eprintln!("canaryd peak RSS: {peak} KiB");
    assert!(
        peak < RSS_BUDGET_KIB,
        "peak RSS {peak} KiB over the {RSS_BUDGET_KIB} KiB budget"
    );
}

// ---------------------------------------------------------------------------------------------
// Garbage replies, through the real probe
// ---------------------------------------------------------------------------------------------

fn check(yaml: &str) -> Arc<Check> {
    let checks = load_checks_str(Path::new("queue.yaml"), yaml).unwrap_or_else(|e| panic!("{e}"));
    Arc::clone(&checks[0])
}

fn queue_check(url: &str, extra: &str) -> Arc<Check> {
    check(&format!(
        "checks:\n  - name: jobs\n    interval: 10s\n    timeout: 2s\n    queue:\n      redis: \"{url}\"\n{extra}"
    ))
}

fn run_once(c: &Arc<Check>) -> CheckResult {
    run_within(c, Duration::from_secs(2))
}

fn run_within(c: &Arc<Check>, timeout: Duration) -> CheckResult {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let probe: Arc<dyn Probe> = build_probe(c).unwrap();
    rt.block_on(async {
        let ctx = RunContext {
            deadline: tokio::time::Instant::now() + timeout,
        };
        probe.run(ctx).await
    })
}

fn name_of(args: &[Vec<u8>]) -> String {
    String::from_utf8_lossy(&args[0]).to_ascii_uppercase()
}

/// Runs `extra`'s check against a fake Redis answering `answer`; returns the result.
fn against(
    extra: &str,
    answer: impl Fn(&[Vec<u8>]) -> Reply + Send + Sync + 'static,
) -> CheckResult {
    let fake = FakeRedis::start(Arc::new(answer));
    run_once(&queue_check(&fake.url(), extra))
}

fn assert_fails(r: &CheckResult, message: &str) {
    assert!(!r.success, "passed on garbage: {:?}", r.observations);
    assert_eq!(r.reason, Some(Reason::Redis), "{:?}", r.message);
    let m = r.message.as_deref().unwrap_or("");
    assert!(m.contains(message), "{m:?} does not say {message:?}");
}

const RQ: &str = "      system: rq\n";
const RQ_QUEUES: &str = "      system: rq\n      queues: [default]\n";

#[test]
fn rq_fails_on_garbage_replies_instead_of_passing() {
    // Nil for everything: once read as "no queues, no workers", a pass.
    let r = against(RQ, |_| Reply::Raw(resp::nil()));
    assert_fails(&r, "unexpected reply to SMEMBERS rq:");
    // `+OK` for everything.
    let r = against(RQ_QUEUES, |_| Reply::Raw(resp::simple("OK")));
    assert_fails(&r, "rq:workers");
    // Sets fine, then negative lengths.
    let r = against(RQ_QUEUES, |args| match name_of(args).as_str() {
        "SMEMBERS" => Reply::Raw(resp::array(&[])),
        _ => Reply::Raw(resp::int(-4)),
    });
    assert_fails(&r, "negative length for key rq:queue:default");
    // A worker whose HMGET answers a number.
    let r = against(RQ_QUEUES, |args| match name_of(args).as_str() {
        "SMEMBERS" => Reply::Raw(resp::array(&[resp::bulk(b"rq:worker:w1")])),
        "HMGET" => Reply::Raw(resp::int(5)),
        "EVAL" => Reply::Raw(resp::array(&[resp::nil()])),
        _ => Reply::Raw(resp::int(0)),
    });
    assert_fails(&r, "unexpected reply to HMGET rq:worker:w1");
    // The oldest-job script answering a string instead of one entry per queue.
    let r = against(RQ_QUEUES, |args| match name_of(args).as_str() {
        "SMEMBERS" => Reply::Raw(resp::array(&[])),
        "EVAL" => Reply::Raw(resp::bulk(b"surprise")),
        _ => Reply::Raw(resp::int(0)),
    });
    assert_fails(&r, "oldest-job script (EVAL)");
    let r = against(RQ_QUEUES, |args| match name_of(args).as_str() {
        "SMEMBERS" => Reply::Raw(resp::array(&[])),
        "EVAL" => Reply::Raw(resp::array(&[resp::nil(), resp::nil()])),
        _ => Reply::Raw(resp::int(0)),
    });
    assert_fails(&r, "oldest-job script (EVAL)");

    // The same fake answering honestly passes: the failures above are the garbage's.
    let r = against(RQ_QUEUES, |args| match name_of(args).as_str() {
        "SMEMBERS" => Reply::Raw(resp::array(&[])),
        "EVAL" => Reply::Raw(resp::array(&[resp::nil()])),
        _ => Reply::Raw(resp::int(2)),
    });
    assert!(r.success, "{:?}", r.message);
}

const GENERIC: &str = "      system: redis\n      keys: [jobs]\n";

#[test]
fn generic_fails_on_garbage_replies_instead_of_passing() {
    let r = against(GENERIC, |args| match name_of(args).as_str() {
        "TYPE" => Reply::Raw(resp::simple("list")),
        _ => Reply::Raw(resp::int(-4)),
    });
    assert_fails(&r, "negative count for key \"jobs\"");
    let r = against(GENERIC, |args| match name_of(args).as_str() {
        "TYPE" => Reply::Raw(resp::simple("list")),
        _ => Reply::Raw(resp::simple("OK")),
    });
    assert_fails(&r, "no count for key \"jobs\"");
    let r = against(GENERIC, |_| Reply::Raw(resp::int(7)));
    assert_fails(&r, "unexpected reply to TYPE \"jobs\"");
    let r = against(GENERIC, |args| match name_of(args).as_str() {
        "TYPE" => Reply::Raw(resp::simple("stream")),
        "XLEN" => Reply::Raw(resp::int(3)),
        _ => Reply::Raw(resp::bulk(b"garbage")),
    });
    assert_fails(&r, "unexpected reply to XINFO GROUPS \"jobs\"");
    let r = against(GENERIC, |args| match name_of(args).as_str() {
        "TYPE" => Reply::Raw(resp::simple("stream")),
        "XLEN" => Reply::Raw(resp::int(3)),
        _ => Reply::Raw(resp::array(&[resp::int(1)])),
    });
    assert_fails(&r, "unexpected reply to XINFO GROUPS \"jobs\"");

    // Found by tests/queue_replies_prop.rs: a map answering TYPE was once read as a type name,
    // and an integer answering SCAN as an empty scan.
    let r = against(GENERIC, |args| match name_of(args).as_str() {
        "TYPE" => Reply::Raw(b"%1\r\n+zz\r\n:0\r\n".to_vec()),
        _ => Reply::Raw(resp::int(2)),
    });
    assert_fails(&r, "unexpected reply to TYPE \"jobs\"");
    let r = against(
        "      system: redis\n      patterns: [\"jobs:*\"]\n",
        |args| match name_of(args).as_str() {
            "SCAN" => Reply::Raw(resp::int(-1)),
            _ => Reply::Raw(resp::int(2)),
        },
    );
    assert_fails(&r, "unexpected reply to SCAN");
    let r = against("      system: bullmq\n", |args| {
        match name_of(args).as_str() {
            "SCAN" => Reply::Raw(resp::int(-1)),
            _ => Reply::Raw(resp::int(2)),
        }
    });
    assert_fails(&r, "unexpected reply to SCAN");

    let r = against(GENERIC, sane_generic);
    assert!(r.success, "{:?}", r.message);
    assert!(r.observations.contains(&("depth".to_string(), 3.0)));
}

// ---------------------------------------------------------------------------------------------
// 100,000 queues to discover
// ---------------------------------------------------------------------------------------------

#[test]
fn discovering_100k_queues_reads_the_first_1000_and_says_so() {
    let Some(redis) = Redis::start() else { return };
    let names: Vec<String> = (0..100_000).map(|i| format!("q{i:06}")).collect();
    for chunk in names.chunks(10_000) {
        let mut sidekiq = vec!["SADD", "queues"];
        sidekiq.extend(chunk.iter().map(String::as_str));
        redis.cmd(&sidekiq);
        let rq_keys: Vec<String> = chunk.iter().map(|n| format!("rq:queue:{n}")).collect();
        let mut rq = vec!["SADD", "rq:queues"];
        rq.extend(rq_keys.iter().map(String::as_str));
        redis.cmd(&rq);
    }
    redis.cmd(&[
        "RPUSH",
        "queue:q000000",
        r#"{"class":"X","args":[],"enqueued_at":1}"#,
    ]);

    for system in ["sidekiq", "rq"] {
        let c = queue_check(&redis.url(), &format!("      system: {system}\n"));
        let started = Instant::now();
        // Generous bounds: other tests of this file may load the machine meanwhile. Quadratic
        // work on 100,000 names would take minutes.
        let r = run_within(&c, Duration::from_secs(10));
        let took = started.elapsed();
        assert!(r.success, "{system}: {:?}", r.message);
        assert!(took < Duration::from_secs(5), "{system}: {took:?}");
        let message = r.message.as_deref().unwrap_or("");
        assert!(
            message.contains("discovered 100000 queues") && message.contains("read the first 1000"),
            "{system}: {message:?}"
        );
        let report = r
            .detail::<canaryd::probe::queue::QueueReport>()
            .expect("a queue report");
        assert_eq!(report.snapshot.discovered, Some(100_000), "{system}");
        let read: Vec<&str> = report
            .snapshot
            .queues
            .iter()
            .map(|q| q.name.as_str())
            .filter(|n| *n != "_all")
            .collect();
        assert_eq!(read.len(), 1000, "{system}");
        assert_eq!(
            (read[0], read[999]),
            ("q000000", "q000999"),
            "{system}: sorted, first 1000"
        );
        let depth: Vec<(String, f64)> = r
            .observations
            .iter()
            .filter(|(k, _)| k.starts_with("queue.q00000"))
            .cloned()
            .collect();
        assert!(depth.len() >= 10, "{system}: per-queue depths {depth:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// rediss:// through canaryd's own dialling
// ---------------------------------------------------------------------------------------------

/// A self-signed certificate for 127.0.0.1 (PEM cert, PEM key), valid until 2040.
fn certificate() -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("params");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2040, 1, 1);
    let cert = params.self_signed(&key).expect("self-signed certificate");
    (cert.pem(), key.serialize_pem())
}

#[test]
fn rediss_is_dialled_with_the_checks_tls_settings() {
    let Some(bin) = services::require("redis-server") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate();
    let cert_file = dir.path().join("cert.pem");
    let key_file = dir.path().join("key.pem");
    std::fs::write(&cert_file, &cert).unwrap();
    std::fs::write(&key_file, &key).unwrap();
    let port = services::free_port();
    let mut cmd = std::process::Command::new(bin);
    cmd.args(["--port", "0", "--tls-port", &port.to_string()])
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--tls-cert-file")
        .arg(&cert_file)
        .arg("--tls-key-file")
        .arg(&key_file)
        .arg("--tls-ca-cert-file")
        .arg(&cert_file)
        .args(["--tls-auth-clients", "no"])
        .arg("--dir")
        .arg(dir.path());
    let _server = services::Worker::spawn("redis-tls", cmd);

    let url = format!("rediss://127.0.0.1:{port}");
    let verified = queue_check(
        &url,
        &format!(
            "      system: redis\n      keys: [jobs]\n      tls_config: {{ca_file: \"{}\"}}\n",
            cert_file.display()
        ),
    );
    // Wait for the server with the check itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = run_once(&verified);
        if r.success || Instant::now() > deadline {
            break r;
        }
        sleep(Duration::from_millis(100));
    };
    assert!(r.success, "{:?}", r.message);
    assert!(r.observations.contains(&("depth".to_string(), 0.0)));

    let insecure = queue_check(
        &url,
        "      system: redis\n      keys: [jobs]\n      tls_config: {insecure_skip_verify: true}\n",
    );
    let r = run_once(&insecure);
    assert!(r.success, "{:?}", r.message);

    // The system roots do not know this certificate.
    let unverified = queue_check(&url, "      system: redis\n      keys: [jobs]\n");
    let r = run_once(&unverified);
    assert!(!r.success);
    assert_eq!(r.reason, Some(Reason::Unreachable), "{:?}", r.message);
}
