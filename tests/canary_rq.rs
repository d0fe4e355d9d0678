//! The RQ canary against a real redis-server and a real RQ 2 worker (`tests/jobs/rq/`, run by
//! the venv's Python): the job canaryd writes is one RQ reads and runs, `look` follows it as RQ
//! records it, and `clean` leaves nothing behind.

mod services;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use canaryd::probe::canary_job::rq::{RqCanary, DEFAULT_TASK};
use canaryd::probe::canary_job::system::{unix_seconds, Canary, CanarySystem, Seen};
use canaryd::probe::queue::QueueError;
use redis::aio::MultiplexedConnection;
use serde_json::Value;
use services::{repo_root, run_ok, secs, venv_python, Redis, Resp, Worker};

const QUEUE: &str = "canary";

fn jobs_dir() -> PathBuf {
    repo_root().join("tests/jobs/rq")
}

fn start_worker(py: &PathBuf, redis: &Redis, name: &str) -> Worker {
    let mut cmd = Command::new(py);
    cmd.current_dir(jobs_dir())
        .arg("worker.py")
        .arg(redis.url())
        .arg(name)
        .arg(QUEUE);
    let mut worker = Worker::spawn("rq-worker", cmd);
    // Registered means listening: pickup times then measure RQ, not Python's start-up.
    let key = format!("rq:worker:{name}");
    worker.wait_until(secs(30), || {
        redis.cmd(&["SISMEMBER", "rq:workers", &key]) == Resp::Int(1)
    });
    worker
}

/// What RQ's own API makes of the job (`tests/jobs/rq/canary_show.py`).
fn rq_view(py: &PathBuf, redis: &Redis, id: &str) -> Value {
    let mut cmd = Command::new(py);
    cmd.current_dir(jobs_dir())
        .arg("canary_show.py")
        .arg(redis.url())
        .arg(id);
    let out = run_ok("rq-canary-show", cmd, secs(30));
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

struct Harness {
    rt: tokio::runtime::Runtime,
    conn: MultiplexedConnection,
    rq: RqCanary,
}

impl Harness {
    fn new(redis: &Redis) -> Harness {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let conn = rt.block_on(redis.connect(0));
        Harness {
            rt,
            conn,
            rq: RqCanary::new(),
        }
    }

    /// A prepared canary of `check` running `task`.
    fn canary(&self, check: &str, task: &str) -> Canary {
        let mut canary = Canary {
            id: format!("canaryd-{:016x}", fastrand::u64(..)),
            check: check.into(),
            queue: QUEUE.into(),
            task: task.into(),
            enqueued_at: SystemTime::now(),
            keep: Duration::from_secs(600),
            payload: String::new(),
        };
        canary.payload = self.rq.prepare(&canary).expect("prepare");
        canary
    }

    fn enqueue(&mut self, canary: &mut Canary) {
        canary.enqueued_at = SystemTime::now();
        self.rt
            .block_on(self.rq.enqueue(&mut self.conn, canary))
            .expect("enqueue");
    }

    fn look(&mut self, canary: &Canary) -> Result<Seen, QueueError> {
        self.rt.block_on(self.rq.look(&mut self.conn, canary))
    }

    /// `look` on a fresh RESP3 connection (a map where RESP2 has a flat array).
    fn look_resp3(&mut self, redis: &Redis, canary: &Canary) -> Seen {
        self.rt.block_on(async {
            let mut conn = redis::Client::open(format!("{}?protocol=resp3", redis.url()))
                .expect("redis url")
                .get_multiplexed_async_connection()
                .await
                .expect("connect to redis with RESP3");
            let info: String = redis::cmd("CLIENT")
                .arg("INFO")
                .query_async(&mut conn)
                .await
                .expect("CLIENT INFO");
            assert!(info.split_whitespace().any(|f| f == "resp=3"), "{info}");
            self.rq.look(&mut conn, canary).await.expect("look (RESP3)")
        })
    }

    fn seen(&mut self, canary: &Canary) -> Seen {
        self.look(canary).expect("look")
    }

    fn clean(&mut self, canary: &Canary) {
        self.rt
            .block_on(self.rq.clean(&mut self.conn, canary))
            .expect("clean");
    }

    /// Polls `look` every 2 ms until the canary is no longer Waiting or Running; panics after
    /// `timeout` with the worker's log. States must only move forward.
    fn wait_done(&mut self, canary: &Canary, worker: &mut Worker, timeout: Duration) -> Seen {
        let deadline = Instant::now() + timeout;
        let mut running = false;
        loop {
            match self.seen(canary) {
                Seen::Waiting => assert!(!running, "back to Waiting after Running"),
                Seen::Running { started_at } => {
                    assert!(started_at.is_some(), "RQ records started_at");
                    running = true;
                }
                done => return done,
            }
            if Instant::now() > deadline {
                panic!(
                    "{} not done after {timeout:?}\n{}",
                    canary.id,
                    worker.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn dbsize(redis: &Redis) -> i64 {
    redis.cmd(&["DBSIZE"]).as_int().expect("DBSIZE")
}

fn f64_of(v: &Value, field: &str) -> f64 {
    v[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} missing in {v}"))
}

#[test]
fn healthy_worker_runs_the_canary_and_rq_agrees_on_its_times() {
    let Some(py) = venv_python() else { return };
    let Some(redis) = Redis::start() else { return };
    let mut h = Harness::new(&redis);

    // 1. No worker yet: RQ's own API reads the job canaryd wrote as one it wrote itself.
    let mut canary = h.canary("nightly-rq", DEFAULT_TASK);
    h.enqueue(&mut canary);
    assert_eq!(h.seen(&canary), Seen::Waiting);
    let view = rq_view(&py, &redis, &canary.id);
    assert_eq!(view["func_name"], "builtins.max");
    assert_eq!(view["args"], serde_json::json!(["canaryd", "nightly-rq"]));
    assert_eq!(view["kwargs"], serde_json::json!({}));
    assert_eq!(
        view["call"],
        serde_json::json!(["builtins.max", null, ["canaryd", "nightly-rq"], {}])
    );
    assert_eq!(
        view["data_is_python_pickle"], true,
        "the pickle is byte for byte Python's"
    );
    assert_eq!(
        view["description"],
        "canaryd canary job of check nightly-rq"
    );
    assert_eq!(view["origin"], QUEUE);
    assert_eq!(view["status"], "queued");
    for field in ["timeout", "result_ttl", "failure_ttl", "ttl"] {
        assert_eq!(view[field], 600, "{field} is the canary's keep");
    }
    let enqueued = unix_seconds(canary.enqueued_at);
    assert!((f64_of(&view, "enqueued_at") - enqueued).abs() < 1e-5);
    assert!((f64_of(&view, "created_at") - enqueued).abs() < 1e-5);
    let ttl = redis
        .cmd(&["TTL", &format!("rq:job:{}", canary.id)])
        .as_int()
        .unwrap();
    assert!(
        (590..=600).contains(&ttl),
        "the job hash expires with keep: {ttl}"
    );
    assert_eq!(
        redis.cmd(&["LRANGE", "rq:queue:canary", "0", "-1"]),
        Resp::Array(Some(vec![Resp::Bulk(Some(canary.id.clone().into_bytes()))]))
    );
    assert_eq!(
        redis.cmd(&["SISMEMBER", "rq:queues", "rq:queue:canary"]),
        Resp::Int(1)
    );

    // 2. A worker runs it; look follows it to Finished with RQ's own times.
    let mut worker = start_worker(&py, &redis, "healthy");
    let done = h.wait_done(&canary, &mut worker, secs(20));
    let Seen::Finished {
        started_at: Some(started),
        ended_at: Some(ended),
    } = done.clone()
    else {
        panic!("finished with both times, got {done:?}");
    };
    let view = rq_view(&py, &redis, &canary.id);
    assert_eq!(view["status"], "finished");
    assert_eq!(view["result_type"], "SUCCESSFUL");
    assert_eq!(
        view["return_value"], "nightly-rq",
        "builtins.max ran on the args"
    );
    assert!((f64_of(&view, "started_at") - unix_seconds(started)).abs() < 1e-5);
    assert!((f64_of(&view, "ended_at") - unix_seconds(ended)).abs() < 1e-5);
    assert_eq!(h.look_resp3(&redis, &canary), done, "RESP3 reads the same");
    h.clean(&canary);

    // 3. A fresh canary on the idle worker: pickup latency as look measures it agrees with RQ's
    // record of when the worker took the job (the execution's start, before the work horse
    // forks).
    let mut canary = h.canary("nightly-rq", DEFAULT_TASK);
    h.enqueue(&mut canary);
    let Seen::Finished {
        started_at: Some(started),
        ended_at: Some(ended),
    } = h.wait_done(&canary, &mut worker, secs(20))
    else {
        panic!("finished with both times");
    };
    let view = rq_view(&py, &redis, &canary.id);
    let pickup = unix_seconds(started) - unix_seconds(canary.enqueued_at);
    let rq_pickup = f64_of(&view, "execution_started_at") - f64_of(&view, "enqueued_at");
    eprintln!("pickup: look {pickup:.6} s, RQ's execution start {rq_pickup:.6} s");
    assert!(pickup >= 0.0 && rq_pickup >= 0.0, "{pickup} {rq_pickup}");
    assert!(
        (pickup - rq_pickup).abs() < 0.3,
        "pickup {pickup} vs RQ {rq_pickup}"
    );
    assert!(ended >= started);
    h.clean(&canary);
    worker.stop(secs(15));
}

#[test]
fn a_stopped_worker_leaves_the_canary_waiting_until_it_resumes() {
    let Some(py) = venv_python() else { return };
    let Some(redis) = Redis::start() else { return };
    let mut h = Harness::new(&redis);
    let mut worker = start_worker(&py, &redis, "sleepy");
    let pid = worker.pid().expect("worker pid").to_string();
    run_ok("kill-stop", kill("-STOP", &pid), secs(5));

    let mut canary = h.canary("sleepy-rq", DEFAULT_TASK);
    h.enqueue(&mut canary);
    let until = Instant::now() + Duration::from_secs(2);
    let mut reads = 0;
    while Instant::now() < until {
        assert_eq!(h.seen(&canary), Seen::Waiting, "no worker can run it");
        reads += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(reads > 20);

    run_ok("kill-cont", kill("-CONT", &pid), secs(5));
    let done = h.wait_done(&canary, &mut worker, secs(20));
    let Seen::Finished {
        started_at: Some(started),
        ..
    } = done
    else {
        panic!("finished once resumed, got {done:?}");
    };
    let waited = started
        .duration_since(canary.enqueued_at)
        .expect("started after enqueued");
    assert!(waited >= Duration::from_secs(2), "pickup {waited:?}");
    h.clean(&canary);
    worker.stop(secs(15));
}

fn kill(signal: &str, pid: &str) -> Command {
    let mut cmd = Command::new("kill");
    cmd.arg(signal).arg(pid);
    cmd
}

#[test]
fn a_raising_job_fails_with_the_exception_text() {
    let Some(py) = venv_python() else { return };
    let Some(redis) = Redis::start() else { return };
    let mut h = Harness::new(&redis);
    let mut worker = start_worker(&py, &redis, "raiser");

    let mut canary = h.canary("boom-rq", "canary_jobs.boom");
    h.enqueue(&mut canary);
    let done = h.wait_done(&canary, &mut worker, secs(20));
    assert_eq!(h.look_resp3(&redis, &canary), done, "RESP3 reads the same");
    let Seen::Failed {
        error,
        started_at,
        ended_at,
    } = done
    else {
        panic!("failed, got {done:?}");
    };
    assert_eq!(
        error,
        "RuntimeError: canary boom for boom-rq (expected by the test)"
    );
    assert!(started_at.is_some() && ended_at.is_some());
    let view = rq_view(&py, &redis, &canary.id);
    assert_eq!(view["status"], "failed");
    let exc = view["exc_string"].as_str().expect("RQ's exc_string");
    assert!(
        exc.trim_end().ends_with(&error),
        "the last lines of RQ's traceback: {exc}"
    );
    h.clean(&canary);

    // Why the default is not builtins.len: it takes one argument, and every canary passes two.
    let mut canary = h.canary("len-rq", "builtins.len");
    h.enqueue(&mut canary);
    let done = h.wait_done(&canary, &mut worker, secs(20));
    assert!(
        matches!(&done, Seen::Failed { error, .. }
            if error == "TypeError: len() takes exactly one argument (2 given)"),
        "{done:?}"
    );
    h.clean(&canary);

    // A function the worker cannot import fails the same way, with RQ's words.
    let mut canary = h.canary("missing-rq", "canary_jobs.no_such_function");
    h.enqueue(&mut canary);
    let done = h.wait_done(&canary, &mut worker, secs(20));
    let Seen::Failed { error, .. } = done else {
        panic!("failed, got {done:?}");
    };
    assert!(error.contains("no_such_function"), "{error}");
    h.clean(&canary);
    worker.stop(secs(15));
}

/// How many canaries the cleanliness test runs end to end.
const MANY: usize = 1000;

#[test]
fn many_canaries_leave_a_bounded_number_of_keys() {
    let Some(py) = venv_python() else { return };
    let Some(redis) = Redis::start() else { return };
    let mut h = Harness::new(&redis);
    let mut worker = start_worker(&py, &redis, "busy");
    let started = Instant::now();
    let mut after_ten = 0;
    for n in 1..=MANY {
        let mut canary = h.canary(&format!("check-{n}"), DEFAULT_TASK);
        h.enqueue(&mut canary);
        let done = h.wait_done(&canary, &mut worker, secs(20));
        assert!(matches!(done, Seen::Finished { .. }), "{n}: {done:?}");
        h.clean(&canary);
        assert_eq!(h.seen(&canary), Seen::Missing, "{n}: gone once cleaned");
        if n == 10 {
            after_ten = dbsize(&redis);
        }
    }
    let elapsed = started.elapsed();
    let after_many = dbsize(&redis);
    let keys = redis.cmd(&["KEYS", "*"]);
    eprintln!("{MANY} canaries in {elapsed:?}; keys after 10: {after_ten}, after {MANY}: {after_many}: {keys:?}");
    // What stays is RQ's own: the queue set, the worker's hash and sets.
    assert!(after_ten <= 6, "after 10: {keys:?}");
    assert_eq!(after_many, after_ten, "independent of the count: {keys:?}");
    for pattern in ["rq:job:*", "rq:results:*", "rq:execution*", "rq:finished:*"] {
        assert_eq!(
            redis.cmd(&["KEYS", pattern]),
            Resp::Array(Some(Vec::new())),
            "{pattern}"
        );
    }
    worker.stop(secs(15));
}

#[test]
fn clean_takes_a_waiting_canary_out_of_the_queue() {
    let Some(py) = venv_python() else { return };
    let Some(redis) = Redis::start() else { return };
    let mut h = Harness::new(&redis);

    let mut waiting = h.canary("never-rq", DEFAULT_TASK);
    h.enqueue(&mut waiting);
    assert_eq!(h.seen(&waiting), Seen::Waiting);
    h.clean(&waiting);
    assert_eq!(redis.cmd(&["LLEN", "rq:queue:canary"]), Resp::Int(0));
    assert_eq!(
        redis.cmd(&["EXISTS", &format!("rq:job:{}", waiting.id)]),
        Resp::Int(0)
    );
    assert_eq!(h.seen(&waiting), Seen::Missing);
    h.clean(&waiting); // harmless when already gone

    // A worker started now runs the next canary and never the cleaned one.
    let mut worker = start_worker(&py, &redis, "after");
    let mut next = h.canary("next-rq", DEFAULT_TASK);
    h.enqueue(&mut next);
    assert!(matches!(
        h.wait_done(&next, &mut worker, secs(20)),
        Seen::Finished { .. }
    ));
    assert_eq!(h.seen(&waiting), Seen::Missing);
    assert_eq!(
        redis.cmd(&["EXISTS", &format!("rq:results:{}", waiting.id)]),
        Resp::Int(0)
    );
    assert!(
        !worker.log().contains(&waiting.id),
        "the worker never saw it:\n{}",
        worker.log()
    );
    assert!(worker.log().contains(&next.id), "{}", worker.log());
    h.clean(&next);
    worker.stop(secs(15));

    // Keys of the wrong type are errors naming the key, never panics.
    let bad = h.canary("bad-rq", DEFAULT_TASK);
    redis.cmd(&["SET", &format!("rq:job:{}", bad.id), "x"]);
    match h.look(&bad) {
        Err(QueueError::Data(msg)) => assert!(msg.contains(&bad.id), "{msg}"),
        other => panic!("a data error, got {other:?}"),
    }
    redis.cmd(&["DEL", &format!("rq:job:{}", bad.id)]);
    redis.cmd(&["SET", &format!("rq:results:{}", bad.id), "x"]);
    match h.look(&bad) {
        Err(QueueError::Data(msg)) => assert!(msg.contains(&bad.id), "{msg}"),
        other => panic!("a data error, got {other:?}"),
    }
    h.clean(&bad);
    // A queue key of the wrong type fails the enqueue (MULTI/EXEC: nothing else is kept
    // from it but what Redis applied before the error, which clean removes).
    redis.cmd(&["SET", "rq:queue:canary", "x"]);
    let mut refused = h.canary("refused-rq", DEFAULT_TASK);
    refused.enqueued_at = SystemTime::now();
    let err =
        h.rt.block_on(h.rq.enqueue(&mut h.conn, &refused))
            .expect_err("RPUSH on a string fails the enqueue");
    assert!(matches!(err, QueueError::Redis(_)), "{err:?}");
    redis.cmd(&["DEL", "rq:queue:canary"]);
    h.clean(&refused);
    assert_eq!(
        redis.cmd(&["EXISTS", &format!("rq:job:{}", refused.id)]),
        Resp::Int(0)
    );
    assert_eq!(
        redis.cmd(&["EXISTS", &format!("rq:results:{}", bad.id)]),
        Resp::Int(0),
        "clean deletes whatever holds the canary's keys"
    );
}
