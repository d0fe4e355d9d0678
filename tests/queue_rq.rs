//! The RQ reader against a real redis-server, jobs enqueued with RQ's own API and a real RQ worker
//! (`tests/jobs/rq/`, run by the venv's Python).

mod queue_check;
mod queue_support;
mod round_trips;
mod services;

use std::path::PathBuf;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use canaryd::probe::queue::rq::{Rq, RqOptions};
use canaryd::probe::queue::{JobState, QueueError, Snapshot};
use canaryd::probe::Reason;
use queue_check::{assert_backlog_ages_and_stalls, assert_ok, holds, var, QueueCheck, STALLED};
use queue_support::Reader;
use round_trips::RoundTrips;
use services::{repo_root, run_ok, secs, venv_python, Redis, Resp, Worker};

fn reader(url: &str, opts: RqOptions) -> Reader {
    Reader::new(url, Rq::new(&opts))
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

fn jobs_dir() -> PathBuf {
    repo_root().join("tests/jobs/rq")
}

/// Enqueues with RQ's client: each spec is `QUEUE:KIND:COUNT` (see `tests/jobs/rq/enqueue.py`).
fn enqueue(py: &PathBuf, redis: &Redis, specs: &[&str]) {
    let mut cmd = Command::new(py);
    cmd.current_dir(jobs_dir())
        .arg("enqueue.py")
        .arg(redis.url())
        .args(specs);
    run_ok("rq-enqueue", cmd, secs(60));
}

fn start_worker(py: &PathBuf, redis: &Redis, name: &str, queues: &[&str]) -> Worker {
    let mut cmd = Command::new(py);
    cmd.current_dir(jobs_dir())
        .arg("worker.py")
        .arg(redis.url())
        .arg(name)
        .args(queues);
    Worker::spawn("rq-worker", cmd)
}

#[test]
fn backlog_ages_drains_under_a_worker_and_stalls_without_one() {
    let Some(py) = venv_python() else { return };
    let Some(redis) = Redis::start() else { return };
    let mut r = reader(&redis.url(), RqOptions::default());
    let unused = r.collect();
    assert!(unused.queues.is_empty(), "a Redis RQ has not used yet");
    assert_eq!((unused.processed, unused.workers), (Some(0), Some(0)));

    // 1. No worker: the backlog is counted per queue and its oldest job ages.
    enqueue(
        &py,
        &redis,
        &["default:work:5", "mail:work:2", "default:later:1"],
    );
    let first = r.collect();
    let names: Vec<&str> = first.queues.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(
        names,
        ["default", "mail"],
        "discovered from rq:queues, sorted"
    );
    assert_eq!(depth(&first, "default", JobState::Waiting), Some(5));
    assert_eq!(depth(&first, "mail", JobState::Waiting), Some(2));
    assert_eq!(depth(&first, "default", JobState::Scheduled), Some(1));
    assert_eq!(depth(&first, "default", JobState::Active), Some(0));
    assert_eq!(depth(&first, "default", JobState::Failed), Some(0));
    assert_eq!(
        (first.processed, first.failed, first.workers, first.busy),
        (Some(0), Some(0), Some(0), Some(0))
    );
    let enqueued = oldest(&first, "default").expect("the head job's enqueued_at");
    let age1 = now() - enqueued;
    assert!((0.0..60.0).contains(&age1), "age {age1}");
    sleep(Duration::from_millis(50));
    let second = r.collect();
    assert_eq!(oldest(&second, "default"), Some(enqueued), "same head job");
    let age2 = now() - enqueued;
    assert!(age2 > age1, "the oldest job ages: {age1} then {age2}");

    // 2. A real worker drains both queues; its counters are the processed signal.
    let mut worker = start_worker(&py, &redis, "w1", &["default", "mail"]);
    let mut last = None;
    worker.wait_until(secs(30), || {
        let s = r.collect();
        let done = depth(&s, "default", JobState::Waiting) == Some(0)
            && depth(&s, "mail", JobState::Waiting) == Some(0)
            && s.processed == Some(7);
        last = Some(s);
        done
    });
    let drained = last.expect("read at least once");
    assert_eq!(drained.workers, Some(1), "the running worker is counted");
    assert_eq!(oldest(&drained, "default"), None, "nothing waiting");
    assert_eq!(depth(&drained, "default", JobState::Scheduled), Some(1));

    // A failing job and a job that holds the worker until the test releases it.
    enqueue(&py, &redis, &["default:boom:1", "default:hold=release:1"]);
    worker.wait_until(secs(30), || {
        let s = r.collect();
        s.busy == Some(1)
            && depth(&s, "default", JobState::Active) == Some(1)
            && s.failed == Some(1)
    });
    let busy = r.collect();
    assert_eq!(depth(&busy, "default", JobState::Failed), Some(1));
    assert_eq!(busy.processed, Some(8), "processed counts the failure too");
    redis.cmd(&["SET", "release", "1"]);
    worker.wait_until(secs(30), || {
        let s = r.collect();
        s.busy == Some(0) && s.processed == Some(9)
    });
    let idle = r.collect();
    assert_eq!(depth(&idle, "default", JobState::Active), Some(0));

    // 3. Worker stopped (warm shutdown): it leaves rq:workers at once and its counters with it;
    // new jobs wait and the processed signal stays flat.
    worker.stop(secs(15));
    let stopped = r.collect();
    assert_eq!((stopped.workers, stopped.busy), (Some(0), Some(0)));
    assert_eq!(
        stopped.processed,
        Some(0),
        "per-worker counters leave with the worker (a reset for the probe)"
    );
    enqueue(&py, &redis, &["default:work:3"]);
    let a = r.collect();
    sleep(Duration::from_millis(50));
    let b = r.collect();
    assert_eq!(depth(&a, "default", JobState::Waiting), Some(3));
    assert_eq!(depth(&b, "default", JobState::Waiting), Some(3));
    assert_eq!(a.processed, b.processed, "no progress without a worker");
    assert!(oldest(&b, "default").is_some());

    // 4. A worker killed without its warm shutdown stays counted until its hash expires
    // (worker_ttl + 60 s): the hash's existence is the liveness signal, not set membership.
    let mut killed = start_worker(&py, &redis, "w2", &["elsewhere"]);
    killed.wait_until(secs(30), || r.collect().workers == Some(1));
    killed.kill();
    assert_eq!(
        r.collect().workers,
        Some(1),
        "SIGKILL: the hash outlives the worker"
    );
    redis.cmd(&["DEL", "rq:worker:w2"]);
    let expired = r.collect();
    assert_eq!(
        redis.cmd(&["SISMEMBER", "rq:workers", "rq:worker:w2"]),
        Resp::Int(1),
        "still listed in rq:workers"
    );
    assert_eq!(expired.workers, Some(0), "an expired hash is not a worker");
}

/// Parses `INFO commandstats` into (command, calls).
fn command_calls(redis: &Redis) -> Vec<(String, u64)> {
    let info = redis
        .cmd(&["INFO", "commandstats"])
        .as_str()
        .unwrap_or_default();
    info.lines()
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
        .collect()
}

#[test]
fn a_hundred_queues_take_two_round_trips() {
    let Some(py) = venv_python() else { return };
    let Some(redis) = Redis::start() else { return };
    let names: Vec<String> = (0..100).map(|i| format!("q{i:03}")).collect();
    let specs: Vec<String> = names.iter().map(|n| format!("{n}:work:2")).collect();
    let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
    enqueue(&py, &redis, &specs);
    // Two workers as RQ registers them (a real worker is covered above; the count is the point).
    for w in ["a", "b"] {
        let key = format!("rq:worker:{w}");
        redis.cmd(&["SADD", "rq:workers", &key]);
        redis.cmd(&[
            "HSET",
            &key,
            "last_heartbeat",
            "2026-01-01T00:00:00.000000Z",
            "state",
            "idle",
        ]);
    }

    let proxy = RoundTrips::start(redis.port());
    // The instrument itself: three commands awaited one after the other are three round trips.
    let mut pinger = reader(&proxy.url(), RqOptions::default());
    proxy.reset();
    for _ in 0..3 {
        let pong = pinger.cmd(&[b"PING"]);
        assert!(
            matches!(&pong, redis::Value::SimpleString(s) if s == "PONG"),
            "{pong:?}"
        );
    }
    assert_eq!(proxy.count(), 3);

    for configured in [false, true] {
        let opts = RqOptions {
            queues: configured.then(|| names.clone()),
            ..RqOptions::default()
        };
        let mut r = reader(&proxy.url(), opts);
        proxy.reset();
        let s = r.collect();
        assert_eq!(
            proxy.count(),
            2,
            "round trips (configured queues: {configured})"
        );
        assert_eq!(s.queues.len(), 100);
        assert!(s
            .queues
            .iter()
            .all(|q| q.depth(JobState::Waiting) == Some(2) && q.oldest_enqueued_at.is_some()));
        assert_eq!(s.workers, Some(2));
    }

    // The commands themselves: a fixed number per queue and per worker, one script in all.
    let mut r = reader(&redis.url(), RqOptions::default());
    redis.cmd(&["CONFIG", "RESETSTAT"]);
    r.collect();
    let mut calls = command_calls(&redis);
    calls.sort();
    let expected: Vec<(String, u64)> = [
        ("eval", 1),
        // Inside the script: LINDEX and HGET per queue, counted by Redis as well.
        ("hget", 100),
        ("hmget", 2),
        ("lindex", 100),
        ("llen", 200),
        ("smembers", 2),
        ("zcard", 300),
    ]
    .iter()
    .map(|(n, c)| (n.to_string(), *c))
    .collect();
    assert_eq!(calls, expected);
}

#[test]
fn junk_under_rq_keys_is_skipped_or_named_never_a_panic() {
    let Some(py) = venv_python() else { return };
    let Some(redis) = Redis::start() else { return };
    enqueue(&py, &redis, &["default:work:2"]);
    let head = redis
        .cmd(&["LINDEX", "rq:queue:default", "0"])
        .as_str()
        .expect("a job id");
    let mut r = reader(&redis.url(), RqOptions::default());

    // Garbage that RQ would never write, in places a reader must tolerate.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut c = redis::Client::open(redis.url())?
            .get_multiplexed_async_connection()
            .await?;
        redis::pipe()
            // Members that are not queue keys, or not UTF-8.
            .sadd("rq:queues", "not-a-queue-key")
            .sadd("rq:queues", &b"rq:queue:\xff\xfe"[..])
            .sadd("rq:queues", "rq:queue:")
            // A job id at the head of another queue whose hash is gone.
            .rpush("rq:queue:ghost", "no-such-job")
            .sadd("rq:queues", "rq:queue:ghost")
            // Workers: a string instead of a hash, absurd counters, binary state.
            .sadd("rq:workers", "rq:worker:string")
            .set("rq:worker:string", "SECRET-PAYLOAD")
            .sadd("rq:workers", "rq:worker:huge")
            .hset_multiple(
                "rq:worker:huge",
                &[
                    ("last_heartbeat", "x"),
                    ("successful_job_count", "99999999999999999999999"),
                ],
            )
            .sadd("rq:workers", "rq:worker:max")
            .hset_multiple(
                "rq:worker:max",
                &[
                    ("last_heartbeat", "x"),
                    ("successful_job_count", "18446744073709551615"),
                    ("failed_job_count", "18446744073709551615"),
                ],
            )
            .sadd("rq:workers", &b"\xff"[..])
            .exec_async(&mut c)
            .await?;
        Ok::<_, redis::RedisError>(())
    })
    .expect("write junk");
    // The head job's timestamp is not RQ's format.
    redis.cmd(&[
        "HSET",
        &format!("rq:job:{head}"),
        "enqueued_at",
        "yesterday",
    ]);

    let s = r.collect();
    let names: Vec<&str> = s.queues.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, ["default", "ghost"], "junk members skipped");
    assert_eq!(depth(&s, "default", JobState::Waiting), Some(2));
    assert_eq!(oldest(&s, "default"), None, "unparsable enqueued_at");
    assert_eq!(depth(&s, "ghost", JobState::Waiting), Some(1));
    assert_eq!(oldest(&s, "ghost"), None, "missing job hash");
    assert_eq!(s.workers, Some(1), "only the worker with sane counters");
    assert_eq!(
        s.processed,
        Some(u64::MAX),
        "saturates instead of overflowing"
    );
    assert_eq!(s.failed, Some(u64::MAX));

    // Wrong types under the keys RQ reads: a data error naming the key, not the payload.
    redis.cmd(&["SET", "rq:queue:default:intermediate", "SECRET-PAYLOAD"]);
    match r.try_collect() {
        Err(QueueError::Data(msg)) => {
            assert!(msg.contains("rq:queue:default:intermediate"), "{msg}");
            assert!(!msg.contains("SECRET"), "{msg}");
        }
        other => panic!("want a data error, got {other:?}"),
    }
    redis.cmd(&["DEL", "rq:queue:default:intermediate"]);
    redis.cmd(&["HSET", "rq:wip:default", "a", "b"]);
    assert!(matches!(r.try_collect(), Err(QueueError::Data(m)) if m.contains("rq:wip:default")));
    redis.cmd(&["DEL", "rq:wip:default"]);
    redis.cmd(&["DEL", "rq:queues"]);
    redis.cmd(&["SET", "rq:queues", "SECRET-PAYLOAD"]);
    assert!(matches!(r.try_collect(), Err(QueueError::Data(m)) if m.contains("rq:queues")));
    // With the queues configured, the broken set is not read at all.
    let mut configured = reader(
        &redis.url(),
        RqOptions {
            queues: Some(vec!["default".into()]),
            ..RqOptions::default()
        },
    );
    assert_eq!(
        depth(&configured.collect(), "default", JobState::Waiting),
        Some(2)
    );
}

// ---------------------------------------------------------------------------------------------
// Through the real probe: the check as a user writes it, and what its alerts see
// ---------------------------------------------------------------------------------------------

#[test]
fn the_check_from_yaml_sees_the_backlog_age_then_progress_under_a_worker_then_a_stall() {
    let Some(py) = venv_python() else { return };
    let Some(redis) = Redis::start() else { return };
    let jobs = QueueCheck::new("rq", &redis.url(), &["default"]);

    // Five jobs and no worker. The first run has nothing to compare with: no rate, so the
    // stalled-jobs alert cannot hold yet.
    enqueue(&py, &redis, &["default:work:5"]);
    assert_backlog_ages_and_stalls(&jobs);

    // A real worker: the queue drains, and the worker's counters show as a rate on some run.
    let mut worker = start_worker(&py, &redis, "w1", &["default"]);
    let mut progressed = false;
    worker.wait_until(secs(30), || {
        let r = jobs.run();
        progressed |= holds(&r, "processed_rate > 0 && !unreachable");
        holds(&r, "depth == 0") && progressed
    });

    // The worker stops with jobs waiting: stalled within two runs.
    worker.stop(secs(15));
    enqueue(&py, &redis, &["default:work:3"]);
    let a = jobs.run();
    sleep(Duration::from_millis(200));
    let b = jobs.run();
    assert_eq!((var(&a, "depth"), var(&b, "depth")), (Some(3.0), Some(3.0)));
    assert!(holds(&b, STALLED), "{:?}", b.observations);
}

/// Redis's own process id, from `INFO server`.
fn redis_pid(redis: &Redis) -> u32 {
    let info = redis.cmd(&["INFO", "server"]).as_str().expect("INFO text");
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|p| p.trim().parse().ok())
        .expect("process_id in INFO server")
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {pid}: {status}");
}

/// Redis stopped with SIGSTOP: connections are accepted by the kernel, nothing ever answers.
/// Resumed on drop, so a failing test does not leave it frozen.
struct Paused(u32);

impl Paused {
    fn new(redis: &Redis) -> Paused {
        let pid = redis_pid(redis);
        signal(pid, "STOP");
        Paused(pid)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        signal(self.0, "CONT");
    }
}

fn assert_unreachable(r: &canaryd::probe::CheckResult) {
    assert!(!r.success);
    assert_eq!(r.reason, Some(Reason::Unreachable), "{:?}", r.message);
    assert!(holds(r, "unreachable && failed"), "{:?}", r.observations);
    // No made-up figures: the alerts on depth and progress stay silent, `unreachable` speaks.
    assert_eq!(var(r, "depth"), None);
    assert!(!holds(r, STALLED));
}

#[test]
fn redis_killed_is_unreachable_at_once_and_the_check_recovers_when_it_is_back() {
    let Some(py) = venv_python() else { return };
    let Some(mut redis) = Redis::start() else {
        return;
    };
    enqueue(&py, &redis, &["default:work:4"]);
    let jobs = QueueCheck::new("rq", &redis.url(), &["default"]);
    let r = jobs.run();
    assert_ok(&r);
    assert_eq!(var(&r, "depth"), Some(4.0));

    // Killed: the open connection breaks, then there is nothing to dial. A refused connection
    // is an answer, so each run ends well before its timeout.
    redis.stop();
    for _ in 0..2 {
        let (r, took) = jobs.run_timed();
        assert!(took < jobs.check.timeout / 2, "{took:?}");
        assert_unreachable(&r);
        let msg = r.message.as_deref().unwrap_or_default();
        assert!(msg.contains("redis unreachable"), "{msg}");
    }

    // Back on the same port, empty (no persistence), seeded again by RQ's client: the next run
    // dials afresh and reads it.
    redis.restart();
    enqueue(&py, &redis, &["default:work:2"]);
    let r = jobs.run();
    assert_ok(&r);
    assert!(
        holds(&r, "depth == 2 && !unreachable"),
        "{:?}",
        r.observations
    );

    // Killed and back between two runs: the run finds its connection dead, redials within the
    // run and succeeds — a restart costs no failed run.
    redis.restart();
    enqueue(&py, &redis, &["default:work:1"]);
    let r = jobs.run();
    assert_ok(&r);
    assert_eq!(var(&r, "depth"), Some(1.0));
}

#[test]
fn redis_paused_ends_every_run_by_its_timeout_and_the_check_redials_once_it_resumes() {
    let Some(py) = venv_python() else { return };
    let Some(redis) = Redis::start() else { return };
    enqueue(&py, &redis, &["default:work:3"]);
    // Two checks on the same Redis, hence one shared connection: a slow one, which dials first,
    // and a quick one with a shorter timeout.
    let check = |name: &str, timeout: &str| {
        QueueCheck::from_yaml(&format!(
            "checks:\n  - name: {name}\n    interval: 10s\n    timeout: {timeout}\n    queue:\n      system: rq\n      redis: \"{}\"\n      queues: [default]\n",
            redis.url()
        ))
    };
    let slow = check("slow", "1500ms");
    let quick = check("quick", "500ms");
    for r in [slow.run(), quick.run()] {
        assert_ok(&r);
        assert_eq!(var(&r, "depth"), Some(3.0));
    }

    let paused = Paused::new(&redis);
    // First on the connection they share, which now never answers; then, that connection
    // dropped, on a fresh one that connects (the kernel accepts) but never completes its
    // handshake. Each run ends by its own timeout, the quick one too while the slow one dials.
    for round in 0..2 {
        for (c, (r, took)) in [&slow, &quick]
            .into_iter()
            .zip(QueueCheck::run_both(&slow, &quick))
        {
            let timeout = c.check.timeout;
            assert!(
                took >= timeout && took < timeout + Duration::from_millis(200),
                "round {round}, {}: took {took:?}, timeout {timeout:?}",
                c.check.name
            );
            assert_unreachable(&r);
        }
    }

    // Resumed: the next run dials afresh and reads.
    drop(paused);
    for c in [&slow, &quick] {
        let r = c.run();
        assert_ok(&r);
        assert!(
            holds(&r, "depth == 3 && !unreachable"),
            "{:?}",
            r.observations
        );
    }
}
