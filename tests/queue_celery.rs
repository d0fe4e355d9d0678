//! The Celery reader against a real redis-server, tasks sent with Celery's own API (with
//! priorities, so kombu's priority lists are exercised) and a real `celery worker`
//! (`tests/jobs/celery/`, run by the venv's Python).

mod queue_check;
mod queue_support;
mod round_trips;
mod services;

use std::path::PathBuf;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use canaryd::probe::queue::celery::{Celery, CeleryOptions};
use canaryd::probe::queue::{JobState, QueueError, Snapshot, ALL_QUEUES};
use queue_check::{assert_ok, holds, var, QueueCheck, STALLED};
use queue_support::Reader;
use round_trips::RoundTrips;
use services::{repo_root, run_ok, secs, venv_python, Redis, Resp, Worker};

/// The header `tests/jobs/celery/app.py` stamps every message with.
const HEADER: &str = "enqueued_at";

fn reader(url: &str, opts: CeleryOptions) -> Reader {
    Reader::new(url, Celery::new(&opts))
}

fn configured(queues: &[&str], header: bool) -> CeleryOptions {
    CeleryOptions {
        queues: Some(queues.iter().map(|q| q.to_string()).collect()),
        enqueued_at_header: header.then(|| HEADER.to_string()),
        ..CeleryOptions::default()
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

fn depth(s: &Snapshot, queue: &str, state: JobState) -> Option<u64> {
    s.queues.iter().find(|q| q.name == queue)?.depth(state)
}

fn oldest(s: &Snapshot, queue: &str) -> Option<f64> {
    s.queues
        .iter()
        .find(|q| q.name == queue)?
        .oldest_enqueued_at
}

fn names(s: &Snapshot) -> Vec<&str> {
    s.queues.iter().map(|q| q.name.as_str()).collect()
}

fn jobs_dir() -> PathBuf {
    repo_root().join("tests/jobs/celery")
}

fn python(py: &PathBuf, redis: &Redis, prefix: Option<&str>) -> Command {
    let mut cmd = Command::new(py);
    cmd.current_dir(jobs_dir())
        .env("CELERY_BROKER_URL", format!("{}/0", redis.url()));
    if let Some(p) = prefix {
        cmd.env("CELERY_KEYPREFIX", p);
    }
    cmd
}

/// Sends tasks with `apply_async`: each spec is `QUEUE:KIND:COUNT[:PRIORITY]`.
fn enqueue(py: &PathBuf, redis: &Redis, prefix: Option<&str>, specs: &[&str]) {
    let mut cmd = python(py, redis, prefix);
    cmd.arg("enqueue.py").args(specs);
    run_ok("celery-enqueue", cmd, secs(60));
}

/// `celery worker`, light: one process (solo pool), one message prefetched, no gossip.
fn start_worker(py: &PathBuf, redis: &Redis, queues: &str) -> Worker {
    let mut cmd = python(py, redis, None);
    cmd.args(["-m", "celery", "-A", "app", "worker", "--pool=solo"])
        .args([
            "--prefetch-multiplier=1",
            "--without-gossip",
            "--without-mingle",
        ])
        .args([
            "--without-heartbeat",
            "-l",
            "INFO",
            "-n",
            "canary-test@%h",
            "-Q",
            queues,
        ]);
    Worker::spawn("celery-worker", cmd)
}

#[test]
fn priority_lists_are_summed_and_the_backlog_drains_then_stalls() {
    let Some(py) = venv_python() else { return };
    let Some(redis) = Redis::start() else { return };

    // 1. No worker. The earliest messages go to the priority lists: priority 9 and 5 (step 3).
    enqueue(&py, &redis, None, &["celery:work:2:9", "celery:work:1:5"]);
    let between = now();
    // Then the bare list: no priority, and priority 1 (rounded down to step 0).
    enqueue(
        &py,
        &redis,
        None,
        &["celery:work:3", "celery:work:1:1", "mail:work:2"],
    );

    let mut r = reader(&redis.url(), configured(&["celery", "mail"], true));
    let first = r.collect();
    assert_eq!(names(&first), ["celery", "mail", ALL_QUEUES]);
    assert_eq!(depth(&first, "celery", JobState::Waiting), Some(7));
    assert_eq!(depth(&first, "mail", JobState::Waiting), Some(2));
    assert_eq!(depth(&first, ALL_QUEUES, JobState::Active), Some(0));
    // What an exporter reading only `LLEN celery` would report.
    assert_eq!(redis.cmd(&["LLEN", "celery"]), Resp::Int(4));
    assert_eq!(redis.cmd(&["LLEN", "celery\x06\x169"]), Resp::Int(2));
    assert_eq!(redis.cmd(&["LLEN", "celery\x06\x163"]), Resp::Int(1));
    // Celery counts nothing in Redis and registers no live workers there.
    assert_eq!(
        (first.processed, first.failed, first.workers, first.busy),
        (None, None, None, None)
    );
    // The oldest stamp comes from a priority list's tail, not from the bare list.
    let stamped = oldest(&first, "celery").expect("the stamped enqueue time");
    assert!(
        stamped < between && stamped > between - 60.0,
        "oldest {stamped} should predate {between}"
    );
    let age1 = now() - stamped;
    sleep(Duration::from_millis(50));
    let second = r.collect();
    assert_eq!(oldest(&second, "celery"), Some(stamped));
    assert!(now() - stamped > age1, "the oldest message ages");

    // Without the application's stamp, the age is honestly unknown.
    let mut unstamped = reader(&redis.url(), configured(&["celery", "mail"], false));
    let plain = unstamped.collect();
    assert_eq!(depth(&plain, "celery", JobState::Waiting), Some(7));
    assert_eq!(oldest(&plain, "celery"), None);

    // Discovery reads the default exchange's binding table: `mail` was created on the fly with
    // an exchange of its own, so only listing it (or its exchange) finds it.
    let mut discovering = reader(&redis.url(), CeleryOptions::default());
    assert_eq!(names(&discovering.collect()), ["celery", ALL_QUEUES]);
    let mut both = reader(
        &redis.url(),
        CeleryOptions {
            exchanges: Some(vec!["celery".into(), "mail".into()]),
            ..CeleryOptions::default()
        },
    );
    let found = both.collect();
    assert_eq!(names(&found), ["celery", "mail", ALL_QUEUES]);
    assert_eq!(depth(&found, "celery", JobState::Waiting), Some(7));

    // 2. A real worker drains every priority list of both queues.
    let mut worker = start_worker(&py, &redis, "celery,mail");
    worker.wait_until(secs(60), || {
        let s = r.collect();
        depth(&s, "celery", JobState::Waiting) == Some(0)
            && depth(&s, "mail", JobState::Waiting) == Some(0)
    });
    assert_eq!(
        r.collect().workers,
        None,
        "a running worker is not recorded"
    );

    // A task that runs until released: its message (acks_late) is reserved, i.e. active.
    enqueue(&py, &redis, None, &["celery:hold=release:1"]);
    worker.wait_until(secs(30), || {
        let s = r.collect();
        depth(&s, ALL_QUEUES, JobState::Active) == Some(1)
            && depth(&s, "celery", JobState::Waiting) == Some(0)
    });
    redis.cmd(&["SET", "release", "1"]);
    worker.wait_until(secs(30), || {
        depth(&r.collect(), ALL_QUEUES, JobState::Active) == Some(0)
    });

    // 3. Worker stopped (warm shutdown): new messages wait, and the depth — the progress signal
    // the probe uses for Celery — does not drain.
    worker.stop(secs(15));
    enqueue(&py, &redis, None, &["celery:work:2", "celery:work:1:9"]);
    let a = r.collect();
    sleep(Duration::from_millis(50));
    let b = r.collect();
    assert_eq!(depth(&a, "celery", JobState::Waiting), Some(3));
    assert_eq!(depth(&b, "celery", JobState::Waiting), Some(3));
    assert_eq!((a.processed, b.processed), (None, None));
}

#[test]
fn the_check_from_yaml_sees_the_backlog_then_progress_under_a_worker_then_a_stall() {
    let Some(py) = venv_python() else { return };
    let Some(redis) = Redis::start() else { return };
    let jobs = QueueCheck::new("celery", &redis.url(), &["celery"]);

    // Five tasks, two of them with a priority (kombu's priority lists), and no worker. The
    // first run has nothing to compare with: no rate, so the stalled-jobs alert cannot hold.
    enqueue(&py, &redis, None, &["celery:work:3", "celery:work:2:9"]);
    let first = jobs.run();
    assert_ok(&first);
    assert_eq!(var(&first, "depth"), Some(5.0));
    assert_eq!(var(&first, "processed_rate"), None);
    // Celery's messages carry no enqueue time: the age is unknown, neither zero nor made up
    // (the check has no `enqueued_at_header` option).
    assert_eq!(var(&first, "oldest_age"), None);
    let report = first
        .detail::<canaryd::probe::queue::QueueReport>()
        .expect("a queue report");
    assert!(report.oldest_age_seconds.iter().all(Option::is_none));
    assert!(
        !holds(&first, "oldest_age >= 0s"),
        "an unknown age compares false"
    );
    // Nor does Celery record workers or count jobs in Redis.
    assert_eq!((var(&first, "workers"), var(&first, "busy")), (None, None));
    sleep(Duration::from_millis(300));
    let second = jobs.run();
    assert!(holds(&second, STALLED), "{:?}", second.observations);

    // A real worker drains every priority list; progress is what drained between runs.
    let mut worker = start_worker(&py, &redis, "celery");
    let mut progressed = false;
    worker.wait_until(secs(60), || {
        let r = jobs.run();
        progressed |= holds(&r, "processed_rate > 0 && !unreachable");
        holds(&r, "depth == 0") && progressed
    });

    // The worker stops with tasks waiting: stalled within two runs.
    worker.stop(secs(15));
    enqueue(&py, &redis, None, &["celery:work:2", "celery:work:1:5"]);
    let a = jobs.run();
    sleep(Duration::from_millis(200));
    let b = jobs.run();
    assert_eq!((var(&a, "depth"), var(&b, "depth")), (Some(3.0), Some(3.0)));
    assert!(holds(&b, STALLED), "{:?}", b.observations);
}

#[test]
fn the_global_keyprefix_is_applied_to_every_key() {
    let Some(py) = venv_python() else { return };
    let Some(redis) = Redis::start() else { return };
    enqueue(
        &py,
        &redis,
        Some("app1:"),
        &["celery:work:2", "celery:work:3:6"],
    );
    assert_eq!(redis.cmd(&["LLEN", "app1:celery\x06\x166"]), Resp::Int(3));

    let mut prefixed = reader(
        &redis.url(),
        CeleryOptions {
            prefix: Some("app1:".into()),
            enqueued_at_header: Some(HEADER.into()),
            ..CeleryOptions::default()
        },
    );
    let s = prefixed.collect();
    assert_eq!(
        names(&s),
        ["celery", ALL_QUEUES],
        "discovered under the prefix"
    );
    assert_eq!(depth(&s, "celery", JobState::Waiting), Some(5));
    assert!(oldest(&s, "celery").is_some());

    let mut bare = reader(&redis.url(), configured(&["celery"], false));
    assert_eq!(depth(&bare.collect(), "celery", JobState::Waiting), Some(0));
}

/// Parses `INFO commandstats` into (command, calls).
fn command_calls(redis: &Redis) -> Vec<(String, u64)> {
    let info = redis
        .cmd(&["INFO", "commandstats"])
        .as_str()
        .unwrap_or_default();
    let mut calls: Vec<(String, u64)> = info
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .filter(|(name, _)| name != "info" && name != "config|resetstat")
        .collect();
    calls.sort();
    calls
}

#[test]
fn a_hundred_queues_take_one_round_trip_or_two_with_discovery() {
    let Some(py) = venv_python() else { return };
    let Some(redis) = Redis::start() else { return };
    let queues: Vec<String> = (0..100).map(|i| format!("q{i:03}")).collect();
    let specs: Vec<String> = queues
        .iter()
        .flat_map(|q| [format!("{q}:work:1"), format!("{q}:work:1:9")])
        .collect();
    let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
    enqueue(&py, &redis, None, &specs);

    let proxy = RoundTrips::start(redis.port());
    let names: Vec<&str> = queues.iter().map(String::as_str).collect();
    let mut known = reader(&proxy.url(), configured(&names, true));
    proxy.reset();
    let s = known.collect();
    assert_eq!(proxy.count(), 1, "configured queues: one round trip");
    assert_eq!(s.queues.len(), 101);
    assert!(s.queues[..100]
        .iter()
        .all(|q| q.depth(JobState::Waiting) == Some(2) && q.oldest_enqueued_at.is_some()));

    // Each auto-created queue has its own exchange: discovering through all 100 tables.
    let mut discovering = reader(
        &proxy.url(),
        CeleryOptions {
            exchanges: Some(queues.clone()),
            ..CeleryOptions::default()
        },
    );
    proxy.reset();
    let s = discovering.collect();
    assert_eq!(proxy.count(), 2, "discovery + data");
    assert_eq!(s.queues.len(), 101);

    let mut direct = reader(&redis.url(), configured(&names, true));
    redis.cmd(&["CONFIG", "RESETSTAT"]);
    direct.collect();
    // The tails are read by one script; its LINDEXes run inside Redis and are counted too.
    let want: Vec<(String, u64)> = [("eval", 1), ("hlen", 1), ("lindex", 400), ("llen", 400)]
        .iter()
        .map(|(n, c)| (n.to_string(), *c))
        .collect();
    assert_eq!(command_calls(&redis), want, "4 priority lists per queue");
}

#[test]
fn junk_under_kombu_keys_is_skipped_or_named_never_a_panic() {
    let Some(redis) = Redis::start() else { return };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut c = redis::Client::open(redis.url())?
            .get_multiplexed_async_connection()
            .await?;
        redis::pipe()
            // Binding members of the wrong shape, an empty queue field, bytes that are not UTF-8.
            .sadd("_kombu.binding.celery", "\x06\x16\x06\x16celery")
            .sadd("_kombu.binding.celery", "only-one-field")
            .sadd("_kombu.binding.celery", "a\x06\x16b\x06\x16c\x06\x16d")
            .sadd("_kombu.binding.celery", "rk\x06\x16\x06\x16")
            .sadd("_kombu.binding.celery", &b"rk\x06\x16\x06\x16\xff"[..])
            // Tails that are not kombu messages, or carry junk stamps.
            .lpush("celery", "SECRET-PAYLOAD not json")
            .lpush("celery\x06\x163", r#"{"headers": {"enqueued_at": "soon"}}"#)
            .lpush("celery\x06\x166", r#"{"headers": {"enqueued_at": 1e999}}"#)
            .lpush("celery\x06\x169", &b"\xff\xfe"[..])
            .exec_async(&mut c)
            .await?;
        Ok::<_, redis::RedisError>(())
    })
    .expect("write junk");

    let mut r = reader(
        &redis.url(),
        CeleryOptions {
            enqueued_at_header: Some(HEADER.into()),
            ..CeleryOptions::default()
        },
    );
    let s = r.collect();
    assert_eq!(names(&s), ["celery", ALL_QUEUES]);
    assert_eq!(depth(&s, "celery", JobState::Waiting), Some(4));
    assert_eq!(oldest(&s, "celery"), None);

    // Wrong types under kombu's keys: a data error naming the key, never the payload.
    redis.cmd(&["HSET", "unacked", "tag", "[]"]);
    for key in ["celery\x06\x169", "unacked", "_kombu.binding.celery"] {
        assert_eq!(
            redis.cmd(&["RENAME", key, "saved"]),
            Resp::Simple("OK".into())
        );
        redis.cmd(&["SET", key, "SECRET-PAYLOAD"]);
        match r.try_collect() {
            Err(QueueError::Data(msg)) => {
                let shown = key.escape_debug().to_string();
                assert!(msg.contains(&shown), "{msg} names {shown}");
                assert!(!msg.contains("SECRET"), "{msg}");
            }
            other => panic!("{key:?}: want a data error, got {other:?}"),
        }
        redis.cmd(&["DEL", key]);
        redis.cmd(&["RENAME", "saved", key]);
    }
}
