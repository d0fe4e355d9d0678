//! The Sidekiq reader against a real `sidekiq` process (Debian's ruby-sidekiq 6.4) and jobs
//! enqueued with Sidekiq's own client (`Sidekiq::Client.push`), each test on its own redis-server.
//!
//! Scripts: `tests/jobs/sidekiq/jobs.rb` (job classes the worker runs), `enqueue.rb` (the client).

mod queue_check;
mod queue_support;
mod round_trips;
mod services;

use std::path::PathBuf;
use std::process::Command;
use std::thread::sleep;
use std::time::Duration;

use canaryd::probe::queue::sidekiq::{Sidekiq, SidekiqOptions};
use canaryd::probe::queue::{JobState, QueueError, ALL_QUEUES};
use queue_check::{assert_backlog_ages_and_stalls, assert_ok, holds, var, QueueCheck, STALLED};
use queue_support::{now, poll, queue, Reader};
use round_trips::RoundTrips;
use services::{repo_root, require, run_ok, secs, Redis, Worker};

fn scripts() -> PathBuf {
    repo_root().join("tests/jobs/sidekiq")
}

/// `ruby enqueue.rb CLASS COUNT QUEUE...`: jobs pushed with Sidekiq's own client.
fn enqueue(ruby: &PathBuf, redis: &Redis, class: &str, count: u32, queues: &[&str]) {
    let mut cmd = Command::new(ruby);
    cmd.arg(scripts().join("enqueue.rb"))
        .arg(class)
        .arg(count.to_string())
        .args(queues)
        .env("REDIS_URL", redis.url());
    run_ok("sidekiq-enqueue", cmd, secs(30));
}

/// A real Sidekiq process: two threads on queue `default`, 2 s shutdown timeout.
fn start_sidekiq(sidekiq: &PathBuf, redis: &Redis) -> Worker {
    let mut cmd = Command::new(sidekiq);
    cmd.arg("-r")
        .arg(scripts().join("jobs.rb"))
        .args(["-q", "default", "-c", "2", "-t", "2"])
        .env("REDIS_URL", redis.url());
    Worker::spawn("sidekiq", cmd)
}

fn reader(redis: &Redis, opts: SidekiqOptions) -> Reader {
    Reader::new(&redis.url(), Sidekiq::new(&opts))
}

fn waiting(r: &mut Reader, name: &str) -> u64 {
    queue(&r.collect(), name)
        .depth(JobState::Waiting)
        .expect("waiting depth")
}

#[test]
fn jobs_wait_drain_under_a_real_sidekiq_and_stall_when_it_stops() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let (Some(ruby), Some(sidekiq)) = (require("ruby"), require("sidekiq")) else {
        return;
    };
    let mut r = reader(&redis, SidekiqOptions::default());

    // 1. Five jobs and no worker: depth 5, and the oldest job ages between two reads.
    enqueue(&ruby, &redis, "CanaryJob", 5, &["default"]);
    let first = r.collect();
    let t1 = now();
    let q = queue(&first, "default");
    assert_eq!(q.depth(JobState::Waiting), Some(5));
    let oldest = q.oldest_enqueued_at.expect("oldest job's enqueued_at");
    assert!(
        (0.0..60.0).contains(&(t1 - oldest)),
        "enqueued_at {oldest} read as seconds, {}s before now",
        t1 - oldest
    );
    sleep(Duration::from_millis(200));
    let second = r.collect();
    let t2 = now();
    let oldest_again = queue(&second, "default").oldest_enqueued_at;
    assert_eq!(
        oldest_again,
        Some(oldest),
        "the same job is still the oldest"
    );
    let (age1, age2) = (t1 - oldest, t2 - oldest);
    assert!(
        age2 >= age1 + 0.2,
        "the oldest job's age grows: {age1} then {age2}"
    );
    assert_eq!(first.processed, Some(0), "no stat:processed yet reads 0");
    assert_eq!(first.failed, Some(0));
    assert_eq!((first.workers, first.busy), (Some(0), Some(0)));
    let all = queue(&first, ALL_QUEUES);
    for state in [JobState::Scheduled, JobState::Retry, JobState::Dead] {
        assert_eq!(all.depth(state), Some(0), "{state:?}");
    }

    // 2. A real Sidekiq drains the queue.
    let mut worker = start_sidekiq(&sidekiq, &redis);
    worker.wait_until(secs(30), || waiting(&mut r, "default") == 0);

    // 4. The running process shows up with its two threads (its `concurrency`; its first
    // heartbeat may land after the five quick jobs are done, hence a wait), and a job running
    // across a heartbeat shows as busy. The same heartbeat (every 5 s) flushes the processed
    // counter before it writes `busy`, so by then processed has risen by the drained jobs.
    worker.wait_until(secs(10), || r.collect().workers == Some(2));
    redis.cmd(&["SET", "canary:hold", "1"]);
    enqueue(&ruby, &redis, "HoldJob", 1, &["default"]);
    // The first heartbeat may have caught a CanaryJob running (busy 1) before any count was
    // flushed: wait for the heartbeat that flushed the five, which also wrote the true busy.
    worker.wait_until(secs(20), || {
        let s = r.collect();
        s.busy == Some(1) && s.processed >= Some(5)
    });
    let s = r.collect();
    assert_eq!(s.busy, Some(1), "the held job runs");
    assert_eq!(s.workers, Some(2));
    redis.cmd(&["DEL", "canary:hold"]);

    // 3. Stop it: Sidekiq finishes the released job on TERM, flushes its counters at exit and
    // removes itself from `processes` (4: a stopped process goes away at once). Enqueue again:
    // depth > 0 and processed flat across two reads — what the stalled-jobs alert keys on.
    worker.stop(secs(15));
    let stopped = r.collect();
    assert_eq!((stopped.workers, stopped.busy), (Some(0), Some(0)));
    assert_eq!(stopped.processed, Some(6));
    enqueue(&ruby, &redis, "CanaryJob", 3, &["default"]);
    let a = r.collect();
    sleep(Duration::from_millis(300));
    let b = r.collect();
    for s in [&a, &b] {
        assert_eq!(queue(s, "default").depth(JobState::Waiting), Some(3));
        assert_eq!((s.processed, s.failed), (Some(6), Some(0)));
    }
}

#[test]
fn the_check_from_yaml_sees_the_backlog_age_then_progress_under_sidekiq_then_a_stall() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let (Some(ruby), Some(sidekiq)) = (require("ruby"), require("sidekiq")) else {
        return;
    };
    let jobs = QueueCheck::new("sidekiq", &redis.url(), &["default"]);

    // Five jobs and no Sidekiq. The first run has nothing to compare with: no rate, so the
    // stalled-jobs alert cannot hold yet.
    enqueue(&ruby, &redis, "CanaryJob", 5, &["default"]);
    assert_backlog_ages_and_stalls(&jobs);

    // A real Sidekiq drains the queue. Each process adds its jobs to `stat:processed` only on
    // its heartbeat (every 5 s) and when it stops, so the progress may show only after a
    // graceful stop: a run then sees it, with the queue empty.
    let mut worker = start_sidekiq(&sidekiq, &redis);
    let mut progressed = false;
    worker.wait_until(secs(30), || {
        let r = jobs.run();
        progressed |= holds(&r, "processed_rate > 0");
        holds(&r, "depth == 0")
    });
    worker.stop(secs(15));
    let r = jobs.run();
    assert_ok(&r);
    progressed |= holds(&r, "processed_rate > 0");
    assert!(progressed, "the five jobs never showed as progress");
    assert!(
        holds(&r, "depth == 0 && workers == 0"),
        "{:?}",
        r.observations
    );

    // Jobs wait again, and nothing runs them: stalled within two runs.
    enqueue(&ruby, &redis, "CanaryJob", 3, &["default"]);
    let a = jobs.run();
    sleep(Duration::from_millis(200));
    let b = jobs.run();
    assert_eq!((var(&a, "depth"), var(&b, "depth")), (Some(3.0), Some(3.0)));
    assert!(holds(&b, STALLED), "{:?}", b.observations);
}

/// The environment variables holding the Redis URLs of `checks/queues.yaml`: every check of the
/// file is validated on load, so each must be set.
const EXAMPLE_URLS: [&str; 6] = [
    "SIDEKIQ_REDIS_URL",
    "CELERY_BROKER_URL",
    "RQ_REDIS_URL",
    "BULLMQ_REDIS_URL",
    "RESQUE_REDIS_URL",
    "JOBS_REDIS_URL",
];

#[test]
fn the_example_sidekiq_check_and_its_alerts_on_a_real_sidekiq_layout() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let Some(ruby) = require("ruby") else {
        return;
    };
    for name in EXAMPLE_URLS {
        std::env::set_var(name, redis.url());
    }
    let jobs = QueueCheck::from_file(&repo_root().join("checks/queues.yaml"), "billing-jobs");

    // Jobs pushed by Sidekiq's client, and one that has waited eleven minutes, as Sidekiq writes
    // it: pushed on the left, so the oldest is the right end, where Sidekiq takes jobs from.
    enqueue(&ruby, &redis, "CanaryJob", 2, &["default", "mailers"]);
    let t = now() - 660.0;
    let old = format!(
        r#"{{"class":"CanaryJob","args":[9],"retry":true,"queue":"mailers","jid":"0123456789abcdef01234567","created_at":{t},"enqueued_at":{t}}}"#
    );
    redis.cmd(&["RPUSH", "queue:mailers", &old]);

    let first = jobs.run();
    assert_ok(&first);
    assert!(
        holds(
            &first,
            "depth == 5 && queue.default.depth == 2 && queue.mailers.depth == 3"
        ),
        "{:?}",
        first.observations
    );
    assert!(jobs.alert_holds("JobsBacklog", &first));
    assert!(jobs.alert_holds("JobsNoWorkers", &first));
    assert!(
        !jobs.alert_holds("JobsStalled", &first),
        "no rate on the first run"
    );
    assert!(!jobs.alert_holds("QueueCheckFailing", &first));
    sleep(Duration::from_millis(200));
    let second = jobs.run();
    assert!(jobs.alert_holds("JobsStalled", &second));

    // Redis gone: the check fails as unreachable, which the file's QueueCheckFailing catches;
    // the alerts on figures stay silent rather than see made-up ones.
    redis.stop();
    let down = jobs.run();
    assert!(holds(&down, "unreachable"), "{:?}", down.message);
    assert!(jobs.alert_holds("QueueCheckFailing", &down));
    for alert in ["JobsStalled", "JobsBacklog", "JobsNoWorkers"] {
        assert!(!jobs.alert_holds(alert, &down), "{alert}");
    }
}

#[test]
fn a_killed_sidekiq_counts_until_its_process_hash_expires() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let Some(sidekiq) = require("sidekiq") else {
        return;
    };
    let mut r = reader(&redis, SidekiqOptions::default());
    // The same layout read with a 1 s staleness rule for `beat`.
    let mut strict = reader(
        &redis,
        SidekiqOptions {
            stale_after: Duration::from_secs(1),
            ..SidekiqOptions::default()
        },
    );
    let mut worker = start_sidekiq(&sidekiq, &redis);
    worker.wait_until(secs(30), || r.collect().workers == Some(2));

    // SIGKILL: no clean-up, the process stays in `processes` and its hash lives out its TTL.
    worker.kill();
    assert_eq!(
        r.collect().workers,
        Some(2),
        "hash still alive: still counted"
    );
    // Its `beat` stops moving (heartbeats come every 5 s): the 1 s rule drops it soon.
    poll(secs(10), "strict reader drops the silent process", || {
        strict.collect().workers == Some(0)
    });
    assert_eq!(r.collect().workers, Some(2));

    // Fast-forward Sidekiq's 60 s TTL on the process hash: then it is gone for everyone.
    let identity = match redis.cmd(&["SMEMBERS", "processes"]) {
        services::Resp::Array(Some(items)) if items.len() == 1 => {
            items[0].as_str().expect("identity")
        }
        other => panic!("one process expected in `processes`, got {other:?}"),
    };
    assert_eq!(
        redis.cmd(&["PEXPIRE", &identity, "1"]),
        services::Resp::Int(1)
    );
    poll(secs(5), "expired process hash no longer counts", || {
        r.collect().workers == Some(0)
    });
}

#[test]
fn two_round_trips_read_a_hundred_queues() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let Some(ruby) = require("ruby") else {
        return;
    };
    let names: Vec<String> = (0..100).map(|i| format!("q{i:03}")).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    enqueue(&ruby, &redis, "CanaryJob", 1, &name_refs);
    // One live process hash, as Sidekiq's heartbeat writes it, so the process read is exercised
    // without a heartbeating process talking to Redis during the measurement.
    let beat = format!("{}", now());
    redis.cmd(&["SADD", "processes", "host:1:abc"]);
    redis.cmd(&[
        "HSET",
        "host:1:abc",
        "info",
        r#"{"hostname":"host","pid":1,"concurrency":5,"queues":["q000"],"identity":"host:1:abc"}"#,
        "busy",
        "1",
        "beat",
        &beat,
        "quiet",
        "false",
    ]);

    // Round trips are counted on the wire by a proxy the reader connects through. The
    // instrument first: three commands one after the other are three round trips.
    let proxy = RoundTrips::start(redis.port());
    let mut r = Reader::new(&proxy.url(), Sidekiq::new(&SidekiqOptions::default()));
    let ((), m) = r.measure_with(&proxy, |r| {
        for _ in 0..3 {
            r.cmd(&[b"PING"]);
        }
    });
    assert_eq!((m.round_trips, m.calls("ping")), (3, 3), "{m:?}");

    // Discovered queues.
    let (snapshot, m) = r.measure(&proxy);
    assert_eq!(snapshot.queues.len(), 101, "100 queues and {ALL_QUEUES}");
    for name in &names {
        let q = queue(&snapshot, name);
        assert_eq!(q.depth(JobState::Waiting), Some(1), "{name}");
        assert!(q.oldest_enqueued_at.is_some(), "{name}");
    }
    assert_eq!((snapshot.workers, snapshot.busy), (Some(5), Some(1)));
    assert_eq!(m.round_trips, 2, "{m:?}");
    assert_eq!(m.calls("llen"), 100, "{m:?}");
    // The heads are read by one script (its LINDEXes run inside Redis and are counted too).
    assert_eq!(m.calls("eval"), 1, "{m:?}");
    assert_eq!(m.calls("lindex"), 100, "{m:?}");
    assert_eq!(m.calls("smembers"), 2, "{m:?}");
    assert_eq!(m.calls("hmget"), 1, "{m:?}");
    assert_eq!(m.total_calls(), 2 + 200 + 1 + 3 + 2 + 1 + 1, "{m:?}");

    // Configured queues: the `queues` set is not read.
    r.read_with(Sidekiq::new(&SidekiqOptions {
        queues: Some(names.clone()),
        ..SidekiqOptions::default()
    }));
    let (snapshot, m) = r.measure(&proxy);
    let order: Vec<&str> = snapshot.queues.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(order[..100], name_refs[..], "configured order");
    assert_eq!(m.round_trips, 2, "{m:?}");
    assert_eq!(m.calls("smembers"), 1, "{m:?}");
    assert_eq!(m.calls("llen"), 100, "{m:?}");
}

#[test]
fn garbage_under_sidekiqs_keys_is_an_error_naming_the_key_or_skipped_never_a_panic() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let mut r = reader(&redis, SidekiqOptions::default());

    // Junk job JSON: the depth still counts, the oldest time is unknown.
    redis.cmd(&["SADD", "queues", "default", "empty"]);
    redis.cmd(&[
        "LPUSH",
        "queue:default",
        "{\"enqueued_at\":",
        "\u{0}\u{1}binary",
    ]);
    let s = r.collect();
    let q = queue(&s, "default");
    assert_eq!(q.depth(JobState::Waiting), Some(2));
    assert_eq!(q.oldest_enqueued_at, None);
    assert_eq!(queue(&s, "empty").depth(JobState::Waiting), Some(0));

    // A queue name that is not UTF-8 is read under its real key.
    r.cmd(&[b"SADD", b"queues", b"caf\xe9"]);
    r.cmd(&[b"LPUSH", b"queue:caf\xe9", b"{}"]);
    let s = r.collect();
    assert_eq!(queue(&s, "caf\u{fffd}").depth(JobState::Waiting), Some(1));

    // Process entries Sidekiq would not write are skipped.
    redis.cmd(&["SADD", "processes", "ghost", "junk", "str"]);
    redis.cmd(&[
        "HSET",
        "junk",
        "info",
        "[not json",
        "busy",
        "x",
        "beat",
        "soon",
    ]);
    redis.cmd(&["SET", "str", "a string where a hash belongs"]);
    let err = r
        .try_collect()
        .expect_err("a process key of the wrong type");
    assert_data_error(&err, "key str is not a hash");
    redis.cmd(&["SREM", "processes", "str"]);
    let s = r.collect();
    assert_eq!((s.workers, s.busy), (Some(0), Some(0)));

    // Wrong types and non-counters under Sidekiq's keys: a Data error naming the key.
    let cases: [(&[&str], &str); 5] = [
        (
            &["SET", "stat:processed", "lots"],
            "key stat:processed holds no counter",
        ),
        (
            &["SET", "stat:processed", "99999999999999999999999"],
            "key stat:processed holds no counter",
        ),
        (&["RPUSH", "retry", "job"], "key retry is not a sorted set"),
        (
            &["SET", "queue:empty", "x"],
            "key queue:empty is not a list",
        ),
        (&["HSET", "queues", "a", "b"], "key queues is not a set"),
    ];
    for (write, message) in cases {
        let key = write[1];
        redis.cmd(&["DEL", key]);
        redis.cmd(write);
        let err = r.try_collect().expect_err(message);
        assert_data_error(&err, message);
        redis.cmd(&["DEL", key]);
    }
    // Everything valid again: reads fine.
    redis.cmd(&["SADD", "queues", "default"]);
    assert!(r.try_collect().is_ok());
}

fn assert_data_error(err: &QueueError, message: &str) {
    match err {
        QueueError::Data(m) => assert_eq!(m, message),
        other => panic!("expected a Data error {message:?}, got {other:?}"),
    }
}

#[test]
fn a_namespaced_layout_is_read_under_its_prefix_only() {
    let Some(redis) = Redis::start() else {
        return;
    };
    // Sidekiq 6 with `namespace: "myapp"` (redis-namespace) prefixes every key with `myapp:`;
    // the values inside the sets are not prefixed. An unprefixed layout on the same Redis is
    // another application's and must not be read.
    let t = now() - 30.0;
    let job = format!(r#"{{"class":"CanaryJob","args":[1],"queue":"mail","enqueued_at":{t}}}"#);
    redis.cmd(&["SADD", "myapp:queues", "mail"]);
    redis.cmd(&["LPUSH", "myapp:queue:mail", &job]);
    redis.cmd(&["ZADD", "myapp:retry", "1", "a", "2", "b"]);
    redis.cmd(&["SET", "myapp:stat:processed", "7"]);
    redis.cmd(&["SET", "myapp:stat:failed", "2"]);
    redis.cmd(&["SADD", "myapp:processes", "host:9:def"]);
    redis.cmd(&[
        "HSET",
        "myapp:host:9:def",
        "info",
        r#"{"concurrency":3}"#,
        "busy",
        "0",
        "beat",
        &format!("{}", now()),
        "quiet",
        "false",
    ]);
    redis.cmd(&["SADD", "queues", "other"]);
    redis.cmd(&["SET", "stat:processed", "1000"]);

    let mut r = reader(
        &redis,
        SidekiqOptions {
            prefix: Some("myapp".into()),
            ..SidekiqOptions::default()
        },
    );
    let s = r.collect();
    let names: Vec<&str> = s.queues.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, ["mail", ALL_QUEUES]);
    let mail = queue(&s, "mail");
    assert_eq!(mail.depth(JobState::Waiting), Some(1));
    let at = mail.oldest_enqueued_at.expect("enqueued_at");
    assert!((at - t).abs() < 1e-3, "{at} vs {t}");
    assert_eq!(queue(&s, ALL_QUEUES).depth(JobState::Retry), Some(2));
    assert_eq!((s.processed, s.failed), (Some(7), Some(2)));
    assert_eq!((s.workers, s.busy), (Some(3), Some(0)));
}

#[test]
fn sidekiq_8_millisecond_timestamps_read_as_seconds() {
    let Some(redis) = Redis::start() else {
        return;
    };
    // Sidekiq 8.0 writes `enqueued_at` as integer epoch milliseconds.
    let ms = (now() * 1000.0) as u64 - 5_000;
    let job = format!(r#"{{"class":"CanaryJob","args":[],"enqueued_at":{ms}}}"#);
    redis.cmd(&["SADD", "queues", "default"]);
    redis.cmd(&["LPUSH", "queue:default", &job]);
    let mut r = reader(&redis, SidekiqOptions::default());
    let at = queue(&r.collect(), "default")
        .oldest_enqueued_at
        .expect("enqueued_at");
    assert!((at - ms as f64 / 1000.0).abs() < 1e-3, "{at}");
}
