//! The Celery canary against a real redis-server and a real `celery worker` with the Redis result
//! backend (`tests/jobs/celery/canary_app.py`, run by the venv's Python): the message compared
//! with one `apply_async` writes, a healthy worker, a stopped one, a raising task, cleanliness
//! over many canaries, and `clean` of a canary still queued.

mod services;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use canaryd::probe::canary_job::celery::{CeleryCanary, DEFAULT_TASK};
use canaryd::probe::canary_job::system::{Canary, CanarySystem, Seen};
use redis::aio::MultiplexedConnection;
use serde_json::Value;
use services::{repo_root, run_ok, secs, venv_python, Redis, Resp, Worker};

fn jobs_dir() -> PathBuf {
    repo_root().join("tests/jobs/celery")
}

fn python(py: &PathBuf, redis: &Redis) -> Command {
    let mut cmd = Command::new(py);
    cmd.current_dir(jobs_dir())
        .env("CELERY_BROKER_URL", format!("{}/0", redis.url()));
    cmd
}

/// `celery worker` on the canary app: one process (solo pool), one message prefetched.
fn start_worker(py: &PathBuf, redis: &Redis) -> Worker {
    start_worker_prefixed(py, redis, None)
}

/// The same, with kombu's and the result backend's `global_keyprefix` set to `prefix`.
fn start_worker_prefixed(py: &PathBuf, redis: &Redis, prefix: Option<&str>) -> Worker {
    let mut cmd = python(py, redis);
    if let Some(p) = prefix {
        cmd.env("CELERY_KEYPREFIX", p);
    }
    cmd.args(["-m", "celery", "-A", "canary_app", "worker", "--pool=solo"])
        .args(["--prefetch-multiplier=1", "--without-gossip"])
        .args(["--without-mingle", "--without-heartbeat"])
        .args(["-l", "INFO", "-n", "canary-test@%h", "-Q", "celery"]);
    Worker::spawn("celery-worker", cmd)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

static NEXT: AtomicU64 = AtomicU64::new(1);

fn canary(system: &CeleryCanary, task: &str) -> Canary {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut c = Canary {
        id: format!("canaryd-{:016x}", 0x00c0_ffee_0000_0000 + n),
        check: "celery-canary".into(),
        queue: "celery".into(),
        task: task.into(),
        enqueued_at: SystemTime::now(),
        keep: Duration::from_secs(600),
        payload: String::new(),
    };
    c.payload = system.prepare(&c).expect("prepare");
    c
}

async fn enqueue(conn: &mut MultiplexedConnection, system: &CeleryCanary, task: &str) -> Canary {
    let mut c = canary(system, task);
    c.enqueued_at = SystemTime::now();
    c.payload = system.prepare(&c).expect("prepare");
    system.enqueue(conn, &c).await.expect("enqueue");
    c
}

/// Polls `look` until it returns something other than Waiting / Running, within `timeout`.
async fn settle(
    conn: &mut MultiplexedConnection,
    system: &CeleryCanary,
    c: &Canary,
    timeout: Duration,
) -> Seen {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = system.look(conn, c).await.expect("look");
        if !matches!(seen, Seen::Waiting | Seen::Running { .. }) {
            return seen;
        }
        assert!(Instant::now() < deadline, "{} still {seen:?}", c.id);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

fn kill(signal: &str, worker: &Worker) {
    let pid = worker.pid().expect("worker pid").to_string();
    let ok = Command::new("kill")
        .args([signal, &pid])
        .status()
        .expect("kill");
    assert!(ok.success(), "kill {signal} {pid}");
}

fn dbsize(redis: &Redis) -> i64 {
    redis.cmd(&["DBSIZE"]).as_int().expect("DBSIZE")
}

#[test]
fn the_message_is_what_apply_async_writes() {
    let Some(py) = venv_python() else { return };
    let Some(redis) = Redis::start() else { return };
    let system = CeleryCanary::default();
    let c = canary(&system, DEFAULT_TASK);

    // Celery's own client, no worker: the message stays in the list for LRANGE.
    let script = format!(
        "from canary_app import app\n\
         app.send_task('{task}', args=['{check}'], task_id='{id}', queue='celery', expires=600)\n",
        task = c.task,
        check = c.check,
        id = c.id
    );
    let mut cmd = python(&py, &redis);
    cmd.args(["-c", &script]);
    run_ok("celery-send", cmd, secs(60));
    let Resp::Bulk(Some(raw)) = redis.cmd(&["LINDEX", "celery", "0"]) else {
        panic!("no message in the celery list")
    };
    let theirs: Value = serde_json::from_slice(&raw).expect("celery message JSON");
    let ours: Value = serde_json::from_str(&c.payload).expect("canary message JSON");

    for top in ["body", "content-encoding", "content-type"] {
        assert_eq!(ours[top], theirs[top], "{top}");
    }
    // Only where the client or the moment of sending shows: the sender, the expiry instant.
    let differ = ["origin", "expires"];
    let (oh, th) = (
        ours["headers"].as_object().unwrap(),
        theirs["headers"].as_object().unwrap(),
    );
    let names = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(oh), names(th), "header names and order");
    for (k, v) in th {
        if !differ.contains(&k.as_str()) {
            assert_eq!(&oh[k], v, "header {k}");
        }
    }
    assert_eq!(oh["origin"], "canaryd");
    let expires = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().expect("expires text"))
            .expect("expires ISO 8601")
            .timestamp() as f64
    };
    assert!(
        (expires(&oh["expires"]) - expires(&th["expires"])).abs() < 60.0,
        "expires {} vs {}",
        oh["expires"],
        th["expires"]
    );
    // The reply queue and delivery tag are random per client; canaryd uses the canary id.
    let (op, tp) = (
        ours["properties"].as_object().unwrap(),
        theirs["properties"].as_object().unwrap(),
    );
    assert_eq!(names(op), names(tp), "property names and order");
    for (k, v) in tp {
        if !["reply_to", "delivery_tag"].contains(&k.as_str()) {
            assert_eq!(&op[k], v, "property {k}");
        }
    }
    assert_eq!(op["delivery_tag"], c.id.as_str());
    // Python's separators, as kombu's `dumps` writes them.
    assert!(c.payload.starts_with("{\"body\": \""), "{}", c.payload);

    // Damaged records: errors naming the key, never a panic or a payload.
    let rt = runtime();
    rt.block_on(async {
        let mut conn = redis.connect(0).await;
        let meta = format!("celery-task-meta-{}", c.id);
        for garbage in ["not json", "{\"status\": \"EXPLODED\"}", "{}"] {
            redis.cmd(&["SET", &meta, garbage]);
            let err = system
                .look(&mut conn, &c)
                .await
                .expect_err(garbage)
                .to_string();
            assert!(err.contains(&meta) && !err.contains(&c.check), "{err}");
        }
        redis.cmd(&["DEL", &meta]);
        redis.cmd(&["HSET", &meta, "status", "SUCCESS"]);
        let err = system.look(&mut conn, &c).await.unwrap_err().to_string();
        assert!(err.contains(&meta), "{err}");
        system
            .clean(&mut conn, &c)
            .await
            .expect("clean deletes it whatever its type");
        redis.cmd(&["SET", "unacked", "x"]);
        let err = system.look(&mut conn, &c).await.unwrap_err().to_string();
        assert!(err.contains("unacked"), "{err}");
        redis.cmd(&["DEL", "celery", "unacked"]);
        redis.cmd(&["SET", "celery", "x"]);
        let err = system.enqueue(&mut conn, &c).await.unwrap_err().to_string();
        assert!(err.contains("celery"), "{err}");
        redis.cmd(&["DEL", "celery"]);
        assert_eq!(
            system.look(&mut conn, &c).await.unwrap(),
            Seen::Running { started_at: None },
            "nowhere, no record: indistinguishable from running"
        );
    });
}

#[test]
fn a_worker_runs_stops_fails_and_clean_unqueues() {
    let Some(py) = venv_python() else { return };
    let Some(redis) = Redis::start() else { return };
    let system = CeleryCanary::default();
    let rt = runtime();
    let mut conn = rt.block_on(redis.connect(0));
    let mut worker = start_worker(&py, &redis);
    worker.wait_until(secs(60), || worker_ready(&redis));

    rt.block_on(async {
        // 1. Healthy: finished, with the worker's end time from the result record.
        let c = enqueue(&mut conn, &system, DEFAULT_TASK).await;
        let seen = settle(&mut conn, &system, &c, secs(20)).await;
        let Seen::Finished {
            started_at: None,
            ended_at: Some(ended),
        } = seen
        else {
            panic!("{seen:?}")
        };
        // Read independently: the backend's record, parsed here.
        let Resp::Bulk(Some(raw)) = redis.cmd(&["GET", &format!("celery-task-meta-{}", c.id)])
        else {
            panic!("no result record")
        };
        let meta: Value = serde_json::from_slice(&raw).expect("result JSON");
        assert_eq!(meta["status"], "SUCCESS");
        assert_eq!(meta["result"], serde_json::json!(["celery-canary"]));
        let done = chrono::DateTime::parse_from_rfc3339(meta["date_done"].as_str().unwrap())
            .expect("date_done");
        let done = done.timestamp_micros() as f64 / 1e6;
        assert!(
            (unix(ended) - done).abs() < 1e-5,
            "{} vs {done}",
            unix(ended)
        );
        let latency = done - unix(c.enqueued_at);
        assert!(
            (0.0..2.0).contains(&latency),
            "enqueue to end {latency:.3}s"
        );
        system.clean(&mut conn, &c).await.expect("clean");
        assert_eq!(
            redis.cmd(&["EXISTS", &format!("celery-task-meta-{}", c.id)]),
            Resp::Int(0)
        );

        // Without a result backend only the pickup shows: gone from the list, not reserved.
        let blind = CeleryCanary {
            result_backend: false,
            ..CeleryCanary::default()
        };
        let c = enqueue(&mut conn, &blind, DEFAULT_TASK).await;
        let seen = settle(&mut conn, &blind, &c, secs(20)).await;
        assert_eq!(
            seen,
            Seen::Finished {
                started_at: None,
                ended_at: None
            }
        );
        settle(&mut conn, &system, &c, secs(20)).await;
        blind.clean(&mut conn, &c).await.expect("clean");

        // A late-acknowledged task: while it runs kombu keeps the reservation, whose time is
        // the pickup, compared with kombu's record read here.
        let c = enqueue(&mut conn, &system, "canary_app.slow").await;
        let deadline = Instant::now() + secs(20);
        let picked = loop {
            if let Seen::Running {
                started_at: Some(t),
            } = system.look(&mut conn, &c).await.expect("look")
            {
                break t;
            }
            assert!(Instant::now() < deadline, "never seen reserved");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let score = redis
            .cmd(&["ZSCORE", "unacked_index", &c.id])
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .expect("kombu's reservation time");
        assert!(
            (unix(picked) - score).abs() < 1e-5,
            "{} vs {score}",
            unix(picked)
        );
        let pickup = score - unix(c.enqueued_at);
        assert!((0.0..0.5).contains(&pickup), "pickup {pickup:.3}s");
        let seen = settle(&mut conn, &system, &c, secs(20)).await;
        assert!(
            matches!(seen, Seen::Finished { ended_at: Some(end), .. } if unix(end) - score >= 1.0),
            "{seen:?}"
        );
        system.clean(&mut conn, &c).await.expect("clean");
    });

    // 2. Stopped worker. A BRPOP the worker sent before the stop is still served by Redis (one
    // message would vanish into its socket), so wait for kombu's 1 s BRPOP timeout to pass.
    kill("-STOP", &worker);
    std::thread::sleep(Duration::from_millis(2500));
    let (waiting, dropped) = rt.block_on(async {
        let c = enqueue(&mut conn, &system, DEFAULT_TASK).await;
        let dropped = enqueue(&mut conn, &system, DEFAULT_TASK).await;
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            assert_eq!(system.look(&mut conn, &c).await.unwrap(), Seen::Waiting);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // 5. `clean` of a canary still waiting takes it off the queue.
        assert_eq!(
            system.look(&mut conn, &dropped).await.unwrap(),
            Seen::Waiting
        );
        system.clean(&mut conn, &dropped).await.expect("clean");
        (c, dropped)
    });
    assert_eq!(redis.cmd(&["LLEN", "celery"]), Resp::Int(1));
    kill("-CONT", &worker);
    rt.block_on(async {
        let seen = settle(&mut conn, &system, &waiting, secs(20)).await;
        assert!(matches!(seen, Seen::Finished { .. }), "{seen:?}");
        system.clean(&mut conn, &waiting).await.expect("clean");

        // 3. A task that raises: Failed with the exception.
        let c = enqueue(&mut conn, &system, "canary_app.boom").await;
        let seen = settle(&mut conn, &system, &c, secs(20)).await;
        let Seen::Failed {
            error,
            ended_at: Some(_),
            ..
        } = &seen
        else {
            panic!("{seen:?}")
        };
        assert_eq!(error, "ValueError: canary boom");
        system.clean(&mut conn, &c).await.expect("clean");

        // A canary found after its `keep`: the worker discards it unrun (`expires`).
        let mut late = canary(&system, "canary_app.boom");
        late.enqueued_at = SystemTime::now() - Duration::from_secs(601);
        late.payload = system.prepare(&late).expect("prepare");
        system.enqueue(&mut conn, &late).await.expect("enqueue");
        let seen = settle(&mut conn, &system, &late, secs(20)).await;
        assert!(
            matches!(&seen, Seen::Failed { error, .. } if error.contains("expired")),
            "{seen:?}"
        );
        system.clean(&mut conn, &late).await.expect("clean");

        // The cleaned canary never ran: no record, ever (the worker ran two tasks since).
        assert_eq!(
            system.look(&mut conn, &dropped).await.unwrap(),
            Seen::Running { started_at: None },
            "gone from the queue, no record: what a running task looks like"
        );
    });
    assert_eq!(
        redis.cmd(&["EXISTS", &format!("celery-task-meta-{}", dropped.id)]),
        Resp::Int(0)
    );
    assert!(
        !worker.log().contains(&dropped.id),
        "the cleaned canary reached the worker"
    );
}

/// The worker consumes the queue: its binding to the default exchange exists.
fn worker_ready(redis: &Redis) -> bool {
    redis.cmd(&["EXISTS", "_kombu.binding.celery"]) == Resp::Int(1)
}

#[test]
fn many_canaries_leave_redis_bounded() {
    let Some(py) = venv_python() else { return };
    let Some(redis) = Redis::start() else { return };
    let system = CeleryCanary::default();
    let rt = runtime();
    let mut conn = rt.block_on(redis.connect(0));
    let mut worker = start_worker(&py, &redis);
    worker.wait_until(secs(60), || worker_ready(&redis));

    let run = |conn: &mut MultiplexedConnection, n: usize| {
        rt.block_on(async {
            for _ in 0..n {
                let c = enqueue(conn, &system, DEFAULT_TASK).await;
                let seen = settle(conn, &system, &c, secs(20)).await;
                assert!(matches!(seen, Seen::Finished { .. }), "{seen:?}");
                system.clean(conn, &c).await.expect("clean");
            }
        })
    };
    run(&mut conn, 10);
    let after_ten = dbsize(&redis);
    let started = Instant::now();
    run(&mut conn, 1000);
    let after_many = dbsize(&redis);
    eprintln!(
        "1000 canaries in {:.1}s; keys after 10: {after_ten}, after 1010: {after_many}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        after_many <= after_ten,
        "{after_ten} keys grew to {after_many}"
    );
    assert!(after_many < 10, "{after_many} keys");
    assert_eq!(redis.cmd(&["LLEN", "celery"]), Resp::Int(0));
    assert_eq!(redis.cmd(&["HLEN", "unacked"]), Resp::Int(0));
}

#[test]
fn a_key_prefix_is_honoured() {
    let Some(py) = venv_python() else { return };
    let Some(redis) = Redis::start() else { return };
    let system = CeleryCanary {
        prefix: "pfx:".into(),
        result_prefix: "pfx:".into(),
        ..CeleryCanary::default()
    };
    let rt = runtime();
    let mut conn = rt.block_on(redis.connect(0));
    let mut worker = start_worker_prefixed(&py, &redis, Some("pfx:"));
    worker.wait_until(secs(60), || {
        redis.cmd(&["EXISTS", "pfx:_kombu.binding.celery"]) == Resp::Int(1)
    });
    rt.block_on(async {
        let c = enqueue(&mut conn, &system, DEFAULT_TASK).await;
        let seen = settle(&mut conn, &system, &c, secs(20)).await;
        assert!(
            matches!(
                seen,
                Seen::Finished {
                    ended_at: Some(_),
                    ..
                }
            ),
            "{seen:?}"
        );
        let meta = format!("pfx:celery-task-meta-{}", c.id);
        assert_eq!(redis.cmd(&["EXISTS", &meta]), Resp::Int(1));
        system.clean(&mut conn, &c).await.expect("clean");
        assert_eq!(redis.cmd(&["EXISTS", &meta]), Resp::Int(0));
    });
}
