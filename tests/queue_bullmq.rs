//! The BullMQ reader against real BullMQ: jobs added with `Queue.add` from a node script, run by a
//! real `Worker` process, read back by `Bullmq::collect` from a fresh redis-server per test.

mod queue_check;
mod services;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use canaryd::probe::queue::bullmq::{Bullmq, BullmqOptions};
use canaryd::probe::queue::{JobState, JobSystem, QueueError, QueueStats, Snapshot};
use queue_check::{assert_backlog_ages_and_stalls, holds, var, QueueCheck, STALLED};
use redis::aio::MultiplexedConnection;
use serde_json::{json, Value};
use services::{secs, Redis, Worker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Node and BullMQ's `node_modules`, or `None` when missing outside CI (the test is skipped).
struct Node {
    node: PathBuf,
    modules: PathBuf,
}

impl Node {
    fn find() -> Option<Node> {
        let (node, dir) = services::node_with_modules()?;
        Some(Node {
            node,
            modules: dir.join("node_modules"),
        })
    }

    /// `node tests/jobs/bullmq/<script> '<spec>'`, resolving `require('bullmq')` through
    /// NODE_PATH (node looks for modules next to the script, not in the working directory).
    fn script(&self, script: &str, spec: &Value) -> Command {
        let mut cmd = Command::new(&self.node);
        cmd.arg(services::repo_root().join("tests/jobs/bullmq").join(script))
            .arg(spec.to_string())
            .env("NODE_PATH", &self.modules);
        cmd
    }

    /// Runs `enqueue.js` to completion: `ops` as documented there.
    fn enqueue(&self, redis: &Redis, prefix: &str, ops: Value) {
        let spec = json!({"port": redis.port(), "prefix": prefix, "ops": ops});
        services::run_ok("bullmq-enqueue", self.script("enqueue.js", &spec), secs(60));
    }

    /// Starts `worker.js` with per-queue worker options.
    fn worker(&self, redis: &Redis, prefix: &str, queues: Value) -> Worker {
        let spec = json!({"port": redis.port(), "prefix": prefix, "queues": queues});
        Worker::spawn("bullmq-worker", self.script("worker.js", &spec))
    }
}

fn reader(queues: Option<&[&str]>, prefix: Option<&str>) -> Bullmq {
    Bullmq::new(&BullmqOptions {
        queues: queues.map(|qs| qs.iter().map(|q| q.to_string()).collect()),
        prefix: prefix.map(str::to_string),
    })
}

async fn connect(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to redis")
}

async fn collect(b: &Bullmq, conn: &mut MultiplexedConnection) -> Snapshot {
    b.collect(conn).await.expect("collect")
}

fn queue<'a>(s: &'a Snapshot, name: &str) -> &'a QueueStats {
    s.queues
        .iter()
        .find(|q| q.name == name)
        .unwrap_or_else(|| panic!("no queue {name} in {s:#?}"))
}

fn depth(s: &Snapshot, name: &str, state: JobState) -> u64 {
    queue(s, name)
        .depth(state)
        .unwrap_or_else(|| panic!("{name} has no {state:?} depth"))
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// Collects until `done` holds, panicking with the last snapshot and the worker's log after
/// `timeout` or when the worker exits.
async fn collect_until(
    b: &Bullmq,
    conn: &mut MultiplexedConnection,
    mut worker: Option<&mut Worker>,
    timeout: Duration,
    done: impl Fn(&Snapshot) -> bool,
) -> Snapshot {
    let deadline = Instant::now() + timeout;
    loop {
        let s = collect(b, conn).await;
        if done(&s) {
            return s;
        }
        let log = |w: &Option<&mut Worker>| w.as_ref().map(|w| w.log_tail(40)).unwrap_or_default();
        if let Some(status) = worker.as_mut().and_then(|w| w.exited()) {
            panic!("worker exited ({status}):\n{}", log(&worker));
        }
        if Instant::now() > deadline {
            panic!(
                "not reached after {timeout:?}: {s:#?}\nworker log:\n{}",
                log(&worker)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn jobs_wait_then_drain_under_a_real_worker_and_stay_flat_once_it_stops() {
    let (Some(redis), Some(node)) = (Redis::start(), Node::find()) else {
        return;
    };
    let queues = ["emails", "reports", "thumbs", "ranked"];
    let bull = reader(Some(&queues), None);
    let mut conn = connect(&redis.url()).await;

    // 1. Jobs added with the worker stopped: plain, prioritized (three levels), one delayed, one
    //    that will fail; a paused queue; a queue whose worker keeps the default completed set.
    let before = now();
    node.enqueue(
        &redis,
        "bull",
        json!([
            {"queue": "emails", "jobs": 5},
            {"queue": "emails", "jobs": 1, "opts": {"priority": 10}},
            {"queue": "emails", "jobs": 1, "opts": {"priority": 1}},
            {"queue": "emails", "jobs": 1, "opts": {"priority": 5}},
            {"queue": "emails", "jobs": 1, "data": {"fail": true}},
            {"queue": "emails", "jobs": 1, "opts": {"delay": 600000}},
            {"queue": "reports", "pause": true},
            {"queue": "reports", "jobs": 2, "opts": {"priority": 3}},
            {"queue": "reports", "jobs": 1},
            {"queue": "thumbs", "jobs": 3},
            // Only prioritized jobs, the oldest at the lowest priority: the last level walked.
            {"queue": "ranked", "jobs": 1, "opts": {"priority": 10}},
            {"queue": "ranked", "jobs": 1, "opts": {"priority": 1}},
            {"queue": "ranked", "jobs": 1, "opts": {"priority": 5}},
        ]),
    );
    let after = now();

    let s1 = collect(&bull, &mut conn).await;
    let names: Vec<&str> = s1.queues.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, queues, "configured order");
    assert_eq!(
        depth(&s1, "emails", JobState::Waiting),
        9,
        "5 plain + 3 prioritized + 1"
    );
    assert_eq!(depth(&s1, "emails", JobState::Delayed), 1);
    assert_eq!(depth(&s1, "emails", JobState::Active), 0);
    assert_eq!(depth(&s1, "emails", JobState::Failed), 0);
    assert_eq!(
        depth(&s1, "reports", JobState::Waiting),
        3,
        "a paused queue's jobs (paused list and prioritized) are waiting"
    );
    assert_eq!(depth(&s1, "thumbs", JobState::Waiting), 3);
    assert_eq!((s1.processed, s1.failed), (Some(0), Some(0)));
    assert_eq!(s1.workers, Some(0));
    assert_eq!(s1.busy, None, "BullMQ does not record busy workers");
    for q in queues {
        let oldest = queue(&s1, q)
            .oldest_enqueued_at
            .unwrap_or_else(|| panic!("{q}: no oldest job"));
        assert!(
            oldest >= before - 0.01 && oldest <= after + 0.01,
            "{q}: oldest {oldest} outside the enqueue window [{before}, {after}]"
        );
    }
    // The oldest is job 1 (ids count up from 1 per queue) of each queue: for emails the first
    // plain job (not the delayed one), for reports a prioritized job ahead of the paused plain
    // one, for ranked the job of the lowest priority level.
    for q in queues {
        let added = redis
            .cmd(&["HGET", &format!("bull:{q}:1"), "timestamp"])
            .as_int()
            .expect("job 1 timestamp") as f64;
        assert_eq!(
            queue(&s1, q).oldest_enqueued_at,
            Some(added / 1000.0),
            "{q}"
        );
    }
    let age = |s: &Snapshot| now() - queue(s, "emails").oldest_enqueued_at.unwrap_or(f64::NAN);
    let age1 = age(&s1);
    tokio::time::sleep(Duration::from_millis(30)).await;
    let s2 = collect(&bull, &mut conn).await;
    let age2 = age(&s2);
    assert!(
        age2 >= age1 + 0.02,
        "the oldest job's age grows: {age1} then {age2}"
    );
    assert_eq!(
        queue(&s2, "emails").oldest_enqueued_at,
        queue(&s1, "emails").oldest_enqueued_at
    );

    // 2. A real worker drains the queues (not the paused one). Emails runs with BullMQ metrics
    //    and keeps only 3 completed jobs: the processed count comes from metrics:completed, not
    //    from the trimmed completed set.
    let mut worker = node.worker(
        &redis,
        "bull",
        json!({
            "emails": {"metrics": true, "removeOnComplete": {"count": 3}, "name": "mailer"},
            "reports": {},
            "thumbs": {},
        }),
    );
    let s3 = collect_until(&bull, &mut conn, Some(&mut worker), secs(30), |s| {
        depth(s, "emails", JobState::Waiting) == 0
            && depth(s, "emails", JobState::Active) == 0
            && depth(s, "thumbs", JobState::Waiting) == 0
            && depth(s, "thumbs", JobState::Active) == 0
            && s.workers == Some(3)
    })
    .await;
    assert_eq!(
        s3.processed,
        Some(8 + 3),
        "emails: 8 from metrics:completed; thumbs: 3 from the completed set"
    );
    assert_eq!(s3.failed, Some(1));
    assert_eq!(depth(&s3, "emails", JobState::Failed), 1);
    assert_eq!(depth(&s3, "emails", JobState::Delayed), 1);
    assert_eq!(queue(&s3, "emails").oldest_enqueued_at, None);
    assert_eq!(
        depth(&s3, "reports", JobState::Waiting),
        3,
        "paused: not run"
    );
    assert_eq!(
        redis.cmd(&["ZCARD", "bull:emails:completed"]).as_int(),
        Some(3),
        "removeOnComplete trimmed the completed set"
    );

    // 4. A stopped worker closes its connections: it is gone as soon as Redis sees them close.
    worker.stop(secs(10));
    collect_until(&bull, &mut conn, None, secs(5), |s| s.workers == Some(0)).await;

    // 3. Jobs added with no worker: depth > 0, processed flat across two reads.
    node.enqueue(&redis, "bull", json!([{"queue": "emails", "jobs": 4}]));
    let s5 = collect(&bull, &mut conn).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let s6 = collect(&bull, &mut conn).await;
    assert_eq!(depth(&s5, "emails", JobState::Waiting), 4);
    assert_eq!(depth(&s6, "emails", JobState::Waiting), 4);
    assert_eq!(s5.processed, s3.processed);
    assert_eq!(s6.processed, s3.processed);
    assert!(queue(&s6, "emails").oldest_enqueued_at.is_some());
}

/// Through the real probe, synchronously: the check's runs block on a runtime of their own.
#[test]
fn the_check_from_yaml_sees_the_backlog_age_then_progress_under_a_worker_then_a_stall() {
    let (Some(redis), Some(node)) = (Redis::start(), Node::find()) else {
        return;
    };
    let jobs = QueueCheck::from_yaml(&format!(
        "checks:\n  - name: jobs\n    interval: 10s\n    timeout: 2s\n    queue:\n      system: bullmq\n      redis: \"{}\"\n      prefix: app\n      queues: [emails]\n",
        redis.url()
    ));

    // Five jobs under the application's prefix, two of them prioritized, and no worker. The
    // first run has nothing to compare with: no rate, so the stalled-jobs alert cannot hold.
    node.enqueue(
        &redis,
        "app",
        json!([
            {"queue": "emails", "jobs": 3},
            {"queue": "emails", "jobs": 2, "opts": {"priority": 5}},
        ]),
    );
    assert_backlog_ages_and_stalls(&jobs);

    // A real worker drains the queue; the completed set grows, and some run sees it as a rate.
    let mut worker = node.worker(&redis, "app", json!({"emails": {}}));
    let mut progressed = false;
    worker.wait_until(secs(30), || {
        let r = jobs.run();
        progressed |= holds(&r, "processed_rate > 0 && !unreachable");
        holds(&r, "depth == 0") && progressed
    });

    // The worker stops with jobs waiting: stalled within two runs.
    worker.stop(secs(10));
    node.enqueue(&redis, "app", json!([{"queue": "emails", "jobs": 3}]));
    let a = jobs.run();
    std::thread::sleep(Duration::from_millis(200));
    let b = jobs.run();
    assert_eq!((var(&a, "depth"), var(&b, "depth")), (Some(3.0), Some(3.0)));
    assert!(holds(&b, STALLED), "{:?}", b.observations);
}

#[tokio::test]
async fn discovery_finds_queues_under_a_custom_prefix_and_counts_their_workers() {
    let (Some(redis), Some(node)) = (Redis::start(), Node::find()) else {
        return;
    };
    // Glob characters in the prefix must match themselves in SCAN MATCH.
    let prefix = "app[1]";
    node.enqueue(
        &redis,
        prefix,
        json!([
            {"queue": "zeta", "jobs": 1},
            {"queue": "alpha", "jobs": 2},
            {"queue": "mid", "jobs": 1, "opts": {"priority": 2}},
        ]),
    );
    // Another application under the default prefix, and a key that only looks like a queue.
    node.enqueue(&redis, "bull", json!([{"queue": "other", "jobs": 1}]));
    redis.cmd(&["HSET", "app1:fake:meta", "paused", "1"]);

    let mut conn = connect(&redis.url()).await;
    let bull = reader(None, Some(prefix));
    let mut worker = node.worker(&redis, prefix, json!({"alpha": {"name": "w1"}, "mid": {}}));
    let mut other = node.worker(&redis, "bull", json!({"other": {}}));
    let s = collect_until(&bull, &mut conn, Some(&mut worker), secs(30), |s| {
        s.workers == Some(2) && depth(s, "alpha", JobState::Waiting) == 0
    })
    .await;
    let names: Vec<&str> = s.queues.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, ["alpha", "mid", "zeta"], "discovered and sorted");
    assert_eq!(depth(&s, "zeta", JobState::Waiting), 1);
    // The other prefix's worker is not one of ours (its queue drains all the same).
    let default = reader(None, None);
    let d = collect_until(&default, &mut conn, Some(&mut other), secs(30), |s| {
        depth(s, "other", JobState::Waiting) == 0 && s.processed == Some(1)
    })
    .await;
    assert_eq!(d.workers, Some(1));
    assert_eq!(d.queues.len(), 1);
    worker.stop(secs(10));
    other.stop(secs(10));
}

/// A TCP proxy in front of Redis that counts round trips: a burst of client bytes after the
/// server last spoke starts a new one (a pipeline is one burst, its replies one answer).
struct CountingProxy {
    port: u16,
    state: Arc<Mutex<ProxyState>>,
}

#[derive(Default)]
struct ProxyState {
    round_trips: u64,
    client_spoke_last: bool,
}

impl CountingProxy {
    async fn start(redis_port: u16) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(("127.0.0.1", redis_port))
                    .await
                    .expect("proxy connects to redis");
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, shared.clone(), true));
                tokio::spawn(pump(sr, cw, shared.clone(), false));
            }
        });
        CountingProxy { port, state }
    }

    fn reset(&self) {
        *self.state.lock().expect("proxy state") = ProxyState::default();
    }

    fn round_trips(&self) -> u64 {
        self.state.lock().expect("proxy state").round_trips
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    state: Arc<Mutex<ProxyState>>,
    from_client: bool,
) {
    // Large enough that one pipeline arrives in one read (the client writes it at once).
    let mut buf = vec![0u8; 1 << 20];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        {
            let mut s = state.lock().expect("proxy state");
            if from_client && !s.client_spoke_last {
                s.round_trips += 1;
            }
            s.client_spoke_last = from_client;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

/// Calls per command since the last `CONFIG RESETSTAT`, from `INFO commandstats`.
fn command_calls(redis: &Redis) -> BTreeMap<String, u64> {
    let info = redis
        .cmd(&["INFO", "commandstats"])
        .as_str()
        .expect("INFO reply");
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(":calls=")?;
            let calls = rest.split(',').next()?.parse().ok()?;
            (name != "info" && name != "config|resetstat").then(|| (name.to_string(), calls))
        })
        .collect()
}

#[tokio::test]
async fn a_hundred_queues_take_one_round_trip_configured_and_two_discovered() {
    let (Some(redis), Some(node)) = (Redis::start(), Node::find()) else {
        return;
    };
    let names: Vec<String> = (0..100).map(|i| format!("q{i:03}")).collect();
    let ops: Vec<Value> = names
        .iter()
        .map(|q| json!({"queue": q, "jobs": 1, "opts": {"priority": 1}}))
        .collect();
    node.enqueue(&redis, "bull", Value::Array(ops));
    // Plain jobs too, so that both the lists and the priority levels are walked.
    let ops: Vec<Value> = names
        .iter()
        .map(|q| json!({"queue": q, "jobs": 1}))
        .collect();
    node.enqueue(&redis, "bull", Value::Array(ops));

    let proxy = CountingProxy::start(redis.port()).await;
    let mut conn = connect(&format!("redis://127.0.0.1:{}", proxy.port)).await;
    let configured: Vec<&str> = names.iter().map(String::as_str).collect();

    proxy.reset();
    redis.cmd(&["CONFIG", "RESETSTAT"]);
    let s = collect(&reader(Some(&configured), None), &mut conn).await;
    assert_eq!(proxy.round_trips(), 1, "configured queues: one pipeline");
    let calls = command_calls(&redis);
    let expected: BTreeMap<String, u64> = [
        ("llen", 300),
        ("zcard", 400),
        ("hget", 200),
        ("eval", 1),
        ("client|list", 1),
    ]
    .map(|(c, n)| (c.to_string(), n))
    .into();
    for (command, &n) in &expected {
        assert_eq!(calls.get(command), Some(&n), "{command} calls in {calls:?}");
    }
    // Everything else ran inside the oldest-job script (commandstats counts script calls too).
    let script_calls = ["lindex", "zrange", "zrangebyscore", "hmget"];
    for command in calls.keys() {
        assert!(
            expected.contains_key(command) || script_calls.contains(&command.as_str()),
            "unexpected {command} in {calls:?}"
        );
    }
    assert_eq!(s.queues.len(), 100);
    for q in &s.queues {
        assert_eq!(q.depth(JobState::Waiting), Some(2), "{}", q.name);
        assert!(q.oldest_enqueued_at.is_some(), "{}", q.name);
    }

    proxy.reset();
    redis.cmd(&["CONFIG", "RESETSTAT"]);
    let d = collect(&reader(None, None), &mut conn).await;
    assert_eq!(
        proxy.round_trips(),
        2,
        "discovery: one SCAN, then the data pipeline"
    );
    assert_eq!(command_calls(&redis).get("scan"), Some(&1));
    assert_eq!(d, s, "discovery reads the same as configuring the queues");
}

#[tokio::test]
async fn garbage_under_bullmq_keys_is_skipped_or_named_never_a_panic() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let mut conn = connect(&redis.url()).await;
    let empty = collect(&reader(None, None), &mut conn).await;
    assert_eq!(
        (empty.queues.len(), empty.processed, empty.workers),
        (0, Some(0), Some(0)),
        "no queue yet"
    );
    let r = |args: &[&str]| {
        redis.cmd(args);
    };

    // Job-level junk is skipped as an oldest-job candidate; one sane job remains. Candidates:
    // both ends of wait and paused, the head of each priority level.
    r(&["RPUSH", "bull:junk:wait", "1", "2", "3"]);
    r(&[
        "HSET",
        "bull:junk:1",
        "timestamp",
        "garbage",
        "data",
        "password=hunter2",
    ]);
    r(&[
        "HSET",
        "bull:junk:3",
        "timestamp",
        "1700000000000",
        "opts",
        "{not json",
    ]);
    r(&["HSET", "bull:junk:3", "processedOn", "1e400"]);
    r(&["RPUSH", "bull:junk:paused", "nojob", "4"]);
    r(&["SET", "bull:junk:4", "not a hash"]);
    // Level 0, level 2, then an infinite score that ends the walk.
    r(&[
        "ZADD",
        "bull:junk:prioritized",
        "5",
        "p3",
        "8589934593",
        "p4",
        "inf",
        "p1",
    ]);
    r(&[
        "HSET",
        "bull:junk:p3",
        "timestamp",
        "99999999999999999999999",
    ]);
    r(&[
        "HSET",
        "bull:junk:p4",
        "timestamp",
        "1700000005000",
        "opts",
        r#"{"delay": -5}"#,
    ]);
    r(&["HSET", "bull:junk:metrics:completed", "prevTS", "x"]); // no count: falls back
    r(&["SET", "bull:junk:meta", "not a hash"]);
    let s = collect(&reader(None, None), &mut conn).await;
    assert_eq!(s.queues.len(), 1);
    assert_eq!(depth(&s, "junk", JobState::Waiting), 3 + 2 + 3);
    assert_eq!(queue(&s, "junk").oldest_enqueued_at, Some(1_700_000_000.0));
    assert_eq!(s.processed, Some(0));

    // Wrong types under state keys, and counts that are not counts: an error naming the key,
    // never a value.
    let cases: [(&str, &[&str]); 5] = [
        ("bull:a:wait", &["SET", "bull:a:wait", "password=hunter2"]),
        (
            "bull:b:prioritized",
            &["RPUSH", "bull:b:prioritized", "password=hunter2"],
        ),
        (
            "bull:c:active",
            &["HSET", "bull:c:active", "k", "password=hunter2"],
        ),
        (
            "bull:d:metrics:completed",
            &[
                "HSET",
                "bull:d:metrics:completed",
                "count",
                "99999999999999999999999",
            ],
        ),
        (
            "bull:e:metrics:failed",
            &["SET", "bull:e:metrics:failed", "password=hunter2"],
        ),
    ];
    for (key, setup) in cases {
        r(setup);
        let queue = key.split(':').nth(1).expect("queue in key");
        match reader(Some(&[queue]), None).collect(&mut conn).await {
            Err(QueueError::Data(msg)) => {
                assert!(msg.contains(key), "{msg:?} names {key}");
                assert!(!msg.contains("hunter2"), "{msg:?} leaks a value");
            }
            other => panic!("{key}: want a data error, got {other:?}"),
        }
    }
    // All together: the first bad queue stops the read.
    let all = ["junk", "a", "b", "c", "d", "e"];
    assert!(matches!(
        reader(Some(&all), None).collect(&mut conn).await,
        Err(QueueError::Data(_))
    ));

    // Client names: a QueueEvents connection (`:qe`) is not a worker, a named worker is.
    let mut events = connect(&redis.url()).await;
    let mut named = connect(&redis.url()).await;
    let setname = |name: &str| redis::cmd("CLIENT").arg("SETNAME").arg(name).to_owned();
    let _: () = setname("bull:anVuaw==:qe")
        .query_async(&mut events)
        .await
        .expect("setname");
    let _: () = setname("bull:anVuaw==:w:x:w:y")
        .query_async(&mut named)
        .await
        .expect("setname");
    let workers = collect(&reader(Some(&["junk"]), None), &mut conn)
        .await
        .workers;
    assert_eq!(workers, Some(1));
}
