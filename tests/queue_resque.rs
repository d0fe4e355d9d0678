//! The Resque reader against Resque's layout, each test on its own redis-server.
//!
//! There is no Resque on this machine (Debian bookworm packages none), so the jobs, the worker
//! and its heartbeat are written by `tests/jobs/resque/resque_layout.rb`, which replays, command
//! for command, what Resque's source writes (`lib/resque/data_store.rb`, `lib/resque/worker.rb`;
//! see the script's header). The worker is a real process that drains queues with `LPOP` and
//! counts with `INCRBY stat:processed`, as Resque's does.

mod queue_check;
mod queue_support;
mod round_trips;
mod services;

use std::path::PathBuf;
use std::process::Command;
use std::thread::sleep;
use std::time::Duration;

use canaryd::probe::queue::resque::{Resque, ResqueOptions};
use canaryd::probe::queue::{JobState, QueueError, ALL_QUEUES};
use queue_check::{assert_ok, holds, var, QueueCheck, STALLED};
use queue_support::{now, poll, queue, Reader};
use round_trips::RoundTrips;
use services::{repo_root, require, run_ok, secs, Redis, Worker};

fn script() -> PathBuf {
    repo_root().join("tests/jobs/resque/resque_layout.rb")
}

/// `ruby resque_layout.rb ARGS...` to completion, under namespace `ns`.
fn layout(ruby: &PathBuf, redis: &Redis, ns: &str, args: &[&str]) {
    let mut cmd = Command::new(ruby);
    cmd.arg(script())
        .args(args)
        .env("REDIS_URL", redis.url())
        .env("RESQUE_NAMESPACE", ns);
    run_ok("resque-layout", cmd, secs(30));
}

/// A worker on `queues`, polling every 50 ms when idle, with a heartbeat every `heartbeat` s.
fn start_worker(ruby: &PathBuf, redis: &Redis, queues: &str, heartbeat: &str) -> Worker {
    let mut cmd = Command::new(ruby);
    cmd.arg(script())
        .args(["work", queues, "0.05", heartbeat])
        .env("REDIS_URL", redis.url());
    Worker::spawn("resque-worker", cmd)
}

fn reader(redis: &Redis, opts: ResqueOptions) -> Reader {
    Reader::new(&redis.url(), Resque::new(&opts))
}

fn waiting(r: &mut Reader, name: &str) -> u64 {
    queue(&r.collect(), name)
        .depth(JobState::Waiting)
        .expect("waiting depth")
}

#[test]
fn jobs_wait_drain_under_a_resque_worker_and_stall_when_it_stops() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let Some(ruby) = require("ruby") else {
        return;
    };
    let mut r = reader(&redis, ResqueOptions::default());

    // 1. Jobs and no worker. Plain Resque jobs carry no enqueue time; Active Job's do.
    layout(&ruby, &redis, "resque", &["enqueue", "default", "5"]);
    layout(
        &ruby,
        &redis,
        "resque",
        &["enqueue-active-job", "mail", "2"],
    );
    let first = r.collect();
    let t1 = now();
    let names: Vec<&str> = first.queues.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, ["default", "mail", ALL_QUEUES]);
    let default = queue(&first, "default");
    assert_eq!(default.depth(JobState::Waiting), Some(5));
    assert_eq!(default.oldest_enqueued_at, None, "Resque jobs have no time");
    let mail = queue(&first, "mail");
    assert_eq!(mail.depth(JobState::Waiting), Some(2));
    let oldest = mail.oldest_enqueued_at.expect("Active Job's enqueued_at");
    assert!((0.0..60.0).contains(&(t1 - oldest)), "{oldest} vs {t1}");
    sleep(Duration::from_millis(200));
    let second = r.collect();
    let t2 = now();
    assert_eq!(queue(&second, "mail").oldest_enqueued_at, Some(oldest));
    let (age1, age2) = (t1 - oldest, t2 - oldest);
    assert!(
        age2 >= age1 + 0.2,
        "the oldest job's age grows: {age1} then {age2}"
    );
    assert_eq!((first.processed, first.failed), (Some(0), Some(0)));
    assert_eq!((first.workers, first.busy), (Some(0), Some(0)));
    assert_eq!(queue(&first, ALL_QUEUES).depth(JobState::Failed), Some(0));

    // 2. A worker drains both queues; processed rises with every job.
    let mut worker = start_worker(&ruby, &redis, "default,mail", "1");
    worker.wait_until(secs(20), || r.collect().processed == Some(7));
    assert_eq!(
        (waiting(&mut r, "default"), waiting(&mut r, "mail")),
        (0, 0)
    );

    // 4. The registered worker counts, and is busy while it works a job.
    assert_eq!(r.collect().workers, Some(1));
    redis.cmd(&["SET", "canary:hold", "1"]);
    layout(
        &ruby,
        &redis,
        "resque",
        &["enqueue", "default", "1", "HoldJob"],
    );
    worker.wait_until(secs(20), || r.collect().busy == Some(1));
    redis.cmd(&["DEL", "canary:hold"]);
    worker.wait_until(secs(20), || {
        let s = r.collect();
        s.busy == Some(0) && s.processed == Some(8)
    });

    // A failing job: counted as failed and, as Resque counts it, as processed; kept in `failed`.
    layout(
        &ruby,
        &redis,
        "resque",
        &["enqueue", "default", "1", "FailJob"],
    );
    worker.wait_until(secs(20), || r.collect().failed == Some(1));
    let s = r.collect();
    assert_eq!(s.processed, Some(9));
    assert_eq!(queue(&s, ALL_QUEUES).depth(JobState::Failed), Some(1));

    // 3. Stop it (a clean stop unregisters the worker at once), enqueue again: depth > 0 and
    // processed flat across two reads — what the stalled-jobs alert keys on.
    worker.stop(secs(10));
    let stopped = r.collect();
    assert_eq!((stopped.workers, stopped.busy), (Some(0), Some(0)));
    layout(&ruby, &redis, "resque", &["enqueue", "default", "3"]);
    let a = r.collect();
    sleep(Duration::from_millis(300));
    let b = r.collect();
    for s in [&a, &b] {
        assert_eq!(queue(s, "default").depth(JobState::Waiting), Some(3));
        assert_eq!((s.processed, s.failed), (Some(9), Some(1)));
    }
}

#[test]
fn the_check_from_yaml_sees_the_backlog_then_progress_under_a_worker_then_a_stall() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let Some(ruby) = require("ruby") else {
        return;
    };
    let jobs = QueueCheck::new("resque", &redis.url(), &["default"]);

    // Five jobs and no worker. The first run has nothing to compare with: no rate, so the
    // stalled-jobs alert cannot hold yet.
    layout(&ruby, &redis, "resque", &["enqueue", "default", "5"]);
    let first = jobs.run();
    assert_ok(&first);
    assert_eq!(var(&first, "depth"), Some(5.0));
    assert_eq!(var(&first, "processed_rate"), None);
    // A plain Resque job is only a class and arguments: the age is unknown, neither zero nor
    // made up (Active Job's jobs carry one; see the reader test above).
    assert_eq!(var(&first, "oldest_age"), None);
    assert!(
        !holds(&first, "oldest_age >= 0s"),
        "an unknown age compares false"
    );
    sleep(Duration::from_millis(300));
    let second = jobs.run();
    assert!(holds(&second, "depth == 5 && workers == 0"));
    assert!(holds(&second, STALLED), "{:?}", second.observations);

    // A worker drains the queue; `stat:processed` rises per job, and some run sees it.
    let mut worker = start_worker(&ruby, &redis, "default", "1");
    let mut progressed = false;
    worker.wait_until(secs(20), || {
        let r = jobs.run();
        progressed |= holds(&r, "processed_rate > 0 && !unreachable");
        holds(&r, "depth == 0") && progressed
    });

    // The worker stops with jobs waiting: stalled within two runs.
    worker.stop(secs(10));
    layout(&ruby, &redis, "resque", &["enqueue", "default", "3"]);
    let a = jobs.run();
    sleep(Duration::from_millis(200));
    let b = jobs.run();
    assert_eq!((var(&a, "depth"), var(&b, "depth")), (Some(3.0), Some(3.0)));
    assert!(holds(&b, STALLED), "{:?}", b.observations);
}

#[test]
fn a_killed_resque_worker_counts_until_its_heartbeat_is_stale() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let Some(ruby) = require("ruby") else {
        return;
    };
    // Heartbeat every second, stale after four: Resque.heartbeat_interval = 1 and
    // Resque.prune_interval = 4 in the application's terms. (Heartbeats are whole seconds.)
    let mut r = reader(
        &redis,
        ResqueOptions {
            stale_after: Duration::from_secs(4),
            ..ResqueOptions::default()
        },
    );
    let mut worker = start_worker(&ruby, &redis, "default", "1");
    // Registered and heartbeating: the heartbeat thread writes its first beat on a connection of
    // its own, which may land after the registration; a worker killed before its first beat
    // would count for ever (Resque never prunes a worker without a heartbeat).
    worker.wait_until(secs(20), || {
        r.collect().workers == Some(1)
            && redis.cmd(&["HLEN", "resque:workers:heartbeat"]) == services::Resp::Int(1)
    });

    // SIGKILL: the worker cannot unregister; it stays in `workers` with its last heartbeat.
    worker.kill();
    assert_eq!(r.collect().workers, Some(1), "heartbeat still fresh");
    poll(secs(10), "the silent worker's heartbeat goes stale", || {
        r.collect().workers == Some(0)
    });
    assert_eq!(
        redis.cmd(&["SCARD", "resque:workers"]),
        services::Resp::Int(1),
        "still registered: only its heartbeat says it is gone"
    );
    // With Resque's default prune interval (300 s) it would still count.
    r.read_with(Resque::new(&ResqueOptions::default()));
    assert_eq!(r.collect().workers, Some(1));
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
    layout(&ruby, &redis, "resque", &["enqueue", &names.join(","), "1"]);
    // One registered, working worker with a fresh heartbeat, written as Resque writes them, so
    // the worker read is exercised without a worker talking to Redis during the measurement.
    let id = "host:1:q000";
    redis.cmd(&["SADD", "resque:workers", id]);
    redis.cmd(&["HSET", "resque:workers:heartbeat", id, &iso8601_now(&ruby)]);
    redis.cmd(&[
        "SET",
        &format!("resque:worker:{id}"),
        r#"{"queue":"q000","run_at":"2024-01-01T00:00:00Z","payload":{"class":"X","args":[]}}"#,
    ]);

    // Round trips are counted on the wire by a proxy the reader connects through. The
    // instrument first: three commands one after the other are three round trips.
    let proxy = RoundTrips::start(redis.port());
    let mut r = Reader::new(&proxy.url(), Resque::new(&ResqueOptions::default()));
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
        assert_eq!(
            queue(&snapshot, name).depth(JobState::Waiting),
            Some(1),
            "{name}"
        );
    }
    assert_eq!((snapshot.workers, snapshot.busy), (Some(1), Some(1)));
    assert_eq!(m.round_trips, 2, "{m:?}");
    assert_eq!(m.calls("llen"), 101, "100 queues and `failed`: {m:?}");
    // The heads are read by one script (its LINDEXes run inside Redis and are counted too).
    assert_eq!(m.calls("eval"), 1, "{m:?}");
    assert_eq!(m.calls("lindex"), 100, "{m:?}");
    assert_eq!(m.calls("smembers"), 2, "{m:?}");
    assert_eq!(m.total_calls(), 2 + 200 + 1 + 1 + 2 + 1 + 1 + 1, "{m:?}");

    // Configured queues: the `queues` set is not read.
    r.read_with(Resque::new(&ResqueOptions {
        queues: Some(names.clone()),
        ..ResqueOptions::default()
    }));
    let (snapshot, m) = r.measure(&proxy);
    let order: Vec<&str> = snapshot.queues.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(order[..100], name_refs[..], "configured order");
    assert_eq!(m.round_trips, 2, "{m:?}");
    assert_eq!(m.calls("smembers"), 1, "{m:?}");
    assert_eq!(m.calls("llen"), 101, "{m:?}");
}

/// Now as Ruby's `Time#iso8601` writes it (what Resque's heartbeat holds).
fn iso8601_now(ruby: &PathBuf) -> String {
    let out = Command::new(ruby)
        .args(["-rtime", "-e", "print Time.now.iso8601"])
        .output()
        .expect("run ruby");
    String::from_utf8(out.stdout).expect("utf-8 time")
}

#[test]
fn garbage_under_resques_keys_is_an_error_naming_the_key_or_skipped_never_a_panic() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let mut r = reader(&redis, ResqueOptions::default());

    // Junk job JSON and an Active Job payload with a junk time: depth counts, no oldest time.
    redis.cmd(&["SADD", "resque:queues", "default", "mail"]);
    redis.cmd(&["RPUSH", "resque:queue:default", "{\"class\":", "\u{0}\u{1}"]);
    redis.cmd(&[
        "RPUSH",
        "resque:queue:mail",
        r#"{"class":"JobWrapper","args":[{"enqueued_at":"last tuesday"}]}"#,
    ]);
    let s = r.collect();
    assert_eq!(queue(&s, "default").depth(JobState::Waiting), Some(2));
    assert_eq!(queue(&s, "default").oldest_enqueued_at, None);
    assert_eq!(queue(&s, "mail").oldest_enqueued_at, None);

    // Workers whose heartbeat is not a time are skipped; one that never sent any counts.
    redis.cmd(&[
        "SADD",
        "resque:workers",
        "a:1:default",
        "b:2:default",
        "junk",
    ]);
    redis.cmd(&[
        "HSET",
        "resque:workers:heartbeat",
        "a:1:default",
        "soon",
        "x",
        "y",
    ]);
    let s = r.collect();
    assert_eq!((s.workers, s.busy), (Some(2), Some(0)));

    // Wrong types and non-counters under Resque's keys: a Data error naming the key.
    let cases: [(&[&str], &str); 6] = [
        (
            &["SET", "resque:stat:processed", "-1"],
            "key resque:stat:processed holds no counter",
        ),
        (
            &["SET", "resque:failed", "x"],
            "key resque:failed is not a list",
        ),
        (
            &["SADD", "resque:queue:mail", "x"],
            "key resque:queue:mail is not a list",
        ),
        (
            &["SET", "resque:workers:heartbeat", "x"],
            "key resque:workers:heartbeat is not a hash",
        ),
        (
            &["RPUSH", "resque:worker:junk", "x"],
            "key resque:worker:junk is not a string",
        ),
        (
            &["SET", "resque:workers", "x"],
            "key resque:workers is not a set",
        ),
    ];
    for (write, message) in cases {
        let key = write[1];
        redis.cmd(&["RENAME", key, "saved"]);
        redis.cmd(write);
        let err = r.try_collect().expect_err(message);
        match &err {
            QueueError::Data(m) => assert_eq!(m, message),
            other => panic!("expected a Data error {message:?}, got {other:?}"),
        }
        redis.cmd(&["DEL", key]);
        redis.cmd(&["RENAME", "saved", key]);
    }
    assert!(r.try_collect().is_ok(), "valid again after the cases");
}

#[test]
fn a_custom_namespace_is_read_and_the_default_one_ignored() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let Some(ruby) = require("ruby") else {
        return;
    };
    layout(&ruby, &redis, "myapp", &["enqueue", "billing", "4"]);
    layout(&ruby, &redis, "resque", &["enqueue", "other", "9"]);
    let mut r = reader(
        &redis,
        ResqueOptions {
            prefix: Some("myapp".into()),
            ..ResqueOptions::default()
        },
    );
    let s = r.collect();
    let names: Vec<&str> = s.queues.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, ["billing", ALL_QUEUES]);
    assert_eq!(queue(&s, "billing").depth(JobState::Waiting), Some(4));
}
