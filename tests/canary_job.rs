//! The canary job probe's own rules, whatever the job system: one canary out per check (also
//! across replicas), the verdicts (`not_picked_up`, `too_slow`, `job_failed`, a late canary that
//! finally finishes), the previous verdict repeated while a new canary is out but not late, the
//! replacement of a canary out longer than `keep`, and clean-up — against a real redis-server,
//! with a job system written in this test (a list and a hash per job) whose "worker" the test
//! plays by setting each job's state. The real systems' own files are tested against their real
//! workers in `tests/canary_{rq,celery,sidekiq}.rs`.

mod services;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use canaryd::probe::canary_job::probe::{last_key, marker_key, CanaryProbe, Settings};
use canaryd::probe::canary_job::system::{Canary, CanarySystem, Seen};
use canaryd::probe::canary_job::CanaryReport;
use canaryd::probe::queue::{conn, QueueError, System};
use canaryd::probe::tls::TlsSettings;
use canaryd::probe::{BoxFuture, CheckResult, Probe, Reason, RunContext};
use redis::aio::MultiplexedConnection;
use services::Redis;

/// The test's job system: `RPUSH fake:queue <id>` and a hash `fake:job:<id>` whose `state`
/// the test sets (waiting, running, finished, failed), with `started_at`/`ended_at`/`error`.
#[derive(Debug, Default)]
struct Fake {
    enqueued: Mutex<Vec<String>>,
}

impl CanarySystem for Fake {
    fn system(&self) -> System {
        System::Rq
    }

    fn prepare(&self, canary: &Canary) -> Result<String, QueueError> {
        Ok(format!(
            "{{\"id\":\"{}\",\"check\":\"{}\"}}",
            canary.id, canary.check
        ))
    }

    fn enqueue<'a>(
        &'a self,
        conn: &'a mut MultiplexedConnection,
        canary: &'a Canary,
    ) -> BoxFuture<'a, Result<(), QueueError>> {
        Box::pin(async move {
            self.enqueued.lock().unwrap().push(canary.id.clone());
            let () = redis::pipe()
                .atomic()
                .cmd("HSET")
                .arg(format!("fake:job:{}", canary.id))
                .arg("state")
                .arg("waiting")
                .ignore()
                .cmd("RPUSH")
                .arg("fake:queue")
                .arg(&canary.id)
                .ignore()
                .query_async(conn)
                .await?;
            Ok(())
        })
    }

    fn look<'a>(
        &'a self,
        conn: &'a mut MultiplexedConnection,
        canary: &'a Canary,
    ) -> BoxFuture<'a, Result<Seen, QueueError>> {
        Box::pin(async move {
            let (state, started, ended, error): (
                Option<String>,
                Option<f64>,
                Option<f64>,
                Option<String>,
            ) = redis::cmd("HMGET")
                .arg(format!("fake:job:{}", canary.id))
                .arg(&["state", "started_at", "ended_at", "error"][..])
                .query_async(conn)
                .await?;
            let t = |s: Option<f64>| s.map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(s));
            Ok(match state.as_deref() {
                Some("waiting") => Seen::Waiting,
                Some("running") => Seen::Running {
                    started_at: t(started),
                },
                Some("finished") => Seen::Finished {
                    started_at: t(started),
                    ended_at: t(ended),
                },
                Some("failed") => Seen::Failed {
                    error: error.unwrap_or_default(),
                    started_at: t(started),
                    ended_at: t(ended),
                },
                _ => Seen::Missing,
            })
        })
    }

    fn clean<'a>(
        &'a self,
        conn: &'a mut MultiplexedConnection,
        canary: &'a Canary,
    ) -> BoxFuture<'a, Result<(), QueueError>> {
        Box::pin(async move {
            let () = redis::pipe()
                .cmd("DEL")
                .arg(format!("fake:job:{}", canary.id))
                .ignore()
                .cmd("LREM")
                .arg("fake:queue")
                .arg(0)
                .arg(&canary.id)
                .ignore()
                .query_async(conn)
                .await?;
            Ok(())
        })
    }
}

struct Bench {
    rt: tokio::runtime::Runtime,
    redis: Redis,
    fake: Arc<Fake>,
    probe: CanaryProbe,
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

impl Bench {
    fn new(within: Duration, keep: Duration) -> Option<Bench> {
        let redis = Redis::start()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let fake = Arc::new(Fake::default());
        let probe = Bench::probe(&redis, &fake, within, keep);
        Some(Bench {
            rt,
            redis,
            fake,
            probe,
        })
    }

    fn probe(redis: &Redis, fake: &Arc<Fake>, within: Duration, keep: Duration) -> CanaryProbe {
        let conn = conn::shared(
            &redis.url(),
            &TlsSettings::default(),
            Duration::from_secs(2),
        )
        .unwrap();
        CanaryProbe::new(
            "jobs-canary",
            fake.clone(),
            conn,
            Settings {
                queue: "default".into(),
                task: "noop".into(),
                within,
                keep,
                redactor: Arc::new(canaryd::redact::Redactor::new(["s3cret-broker-pw"])),
            },
        )
    }

    /// One run with a timeout of `timeout`.
    fn run_with(&self, probe: &CanaryProbe, timeout: Duration) -> CheckResult {
        self.rt.block_on(async {
            probe
                .run(RunContext {
                    deadline: tokio::time::Instant::now() + timeout,
                })
                .await
        })
    }

    fn run(&self) -> CheckResult {
        self.run_with(&self.probe, Duration::from_millis(400))
    }

    fn enqueued(&self) -> Vec<String> {
        self.fake.enqueued.lock().unwrap().clone()
    }

    fn set(&self, id: &str, fields: &[(&str, String)]) {
        let mut args: Vec<String> = vec!["HSET".into(), format!("fake:job:{id}")];
        for (k, v) in fields {
            args.push((*k).into());
            args.push(v.clone());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.redis.cmd(&refs);
    }

    fn keys(&self) -> Vec<String> {
        match self.redis.cmd(&["KEYS", "*"]) {
            services::Resp::Array(Some(v)) => {
                let mut k: Vec<String> = v.iter().filter_map(|x| x.as_str()).collect();
                k.sort();
                k
            }
            other => panic!("KEYS: {other:?}"),
        }
    }
}

fn report(r: &CheckResult) -> &CanaryReport {
    r.detail::<CanaryReport>().expect("a canary report")
}

#[test]
fn a_healthy_system_passes_with_the_stages_the_system_recorded_and_leaves_one_key() {
    let Some(b) = Bench::new(Duration::from_secs(5), Duration::from_secs(600)) else {
        return;
    };
    // The "worker": picks each canary up 30 ms after its enqueue and finishes 20 ms later.
    let r = b.run();
    assert!(r.success, "{r:?}");
    let rep = report(&r);
    assert_eq!(rep.stage.as_str(), "waiting", "nobody ran it yet");
    assert!(rep.enqueued_now);
    let id = b.enqueued()[0].clone();
    let enq = now_secs();
    b.set(
        &id,
        &[
            ("state", "finished".into()),
            ("started_at", format!("{}", enq + 0.030)),
            ("ended_at", format!("{}", enq + 0.050)),
        ],
    );
    let r = b.run();
    assert!(r.success, "{r:?}");
    let rep = report(&r);
    assert_eq!(rep.stage.as_str(), "finished");
    assert!(
        !rep.enqueued_now,
        "the outstanding canary was judged, no new one"
    );
    assert_eq!(b.enqueued().len(), 1);
    let run_time = rep.run_time.unwrap().as_secs_f64();
    assert!((run_time - 0.020).abs() < 0.002, "{run_time}");
    assert!(rep.pickup_latency.is_some() && rep.total.is_some());
    let vars: Vec<&str> = r.observations.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        vars.contains(&"pickup_latency") && vars.contains(&"total"),
        "{vars:?}"
    );
    // Done with: cleaned; only the last end is kept (for replicas).
    assert_eq!(b.keys(), [last_key("jobs-canary")]);
    // The next run enqueues the next canary.
    let r = b.run();
    assert!(report(&r).enqueued_now);
    assert_eq!(b.enqueued().len(), 2);
}

#[test]
fn a_dead_worker_meets_one_canary_which_fails_not_picked_up_and_then_too_slow() {
    let Some(b) = Bench::new(Duration::from_millis(600), Duration::from_secs(600)) else {
        return;
    };
    let r = b.run();
    assert!(r.success, "not late yet: {r:?}");
    std::thread::sleep(Duration::from_millis(700));
    for _ in 0..5 {
        let r = b.run();
        assert_eq!(r.reason, Some(Reason::NotPickedUp), "{r:?}");
        assert!(
            r.message.as_deref().unwrap().contains("not picked up"),
            "{:?}",
            r.message
        );
        assert!(report(&r).outstanding_age.unwrap() > Duration::from_millis(600));
    }
    assert_eq!(
        b.enqueued().len(),
        1,
        "never a second canary while one is out"
    );
    assert_eq!(b.redis.cmd(&["LLEN", "fake:queue"]).as_int(), Some(1));
    // The worker comes back and runs it: late, recorded as too slow, then cleaned.
    let id = b.enqueued()[0].clone();
    b.set(
        &id,
        &[
            ("state", "running".into()),
            ("started_at", format!("{}", now_secs())),
        ],
    );
    let r = b.run();
    assert_eq!(r.reason, Some(Reason::TooSlow), "{r:?}");
    b.set(
        &id,
        &[
            ("state", "finished".into()),
            ("ended_at", format!("{}", now_secs())),
        ],
    );
    let r = b.run();
    assert_eq!(
        r.reason,
        Some(Reason::TooSlow),
        "a late canary is recorded: {r:?}"
    );
    assert_eq!(report(&r).stage.as_str(), "finished");
    assert_eq!(b.redis.cmd(&["LLEN", "fake:queue"]).as_int(), Some(0));
    // The next canary, picked up at once: the check recovers.
    let r = b.run();
    assert!(report(&r).enqueued_now);
    let next = b.enqueued()[1].clone();
    b.set(&next, &[("state", "finished".into())]);
    let r = b.run_with(&b.probe, Duration::from_millis(400));
    assert!(r.success, "{r:?}");
}

#[test]
fn a_failing_job_fails_job_failed_with_its_error_and_the_verdict_holds_while_the_next_is_out() {
    let Some(b) = Bench::new(Duration::from_secs(5), Duration::from_secs(600)) else {
        return;
    };
    b.run();
    let id = b.enqueued()[0].clone();
    b.set(
        &id,
        &[
            ("state", "failed".into()),
            (
                "error",
                "RuntimeError: instrumentation broke every job (redis://:s3cret-broker-pw@db:6379)"
                    .into(),
            ),
        ],
    );
    let r = b.run();
    assert_eq!(r.reason, Some(Reason::JobFailed));
    assert!(
        r.message
            .as_deref()
            .unwrap()
            .contains("failed: RuntimeError: instrumentation broke every job"),
        "{:?}",
        r.message
    );
    assert!(
        !r.message.as_deref().unwrap().contains("s3cret-broker-pw"),
        "the broker's password is cut from the job's error: {:?}",
        r.message
    );
    // A new canary goes out and waits (not late): no evidence of recovery yet.
    let r = b.run();
    assert!(report(&r).enqueued_now);
    assert_eq!(r.reason, Some(Reason::JobFailed), "{r:?}");
    // It finishes: recovered.
    let next = b.enqueued()[1].clone();
    b.set(&next, &[("state", "finished".into())]);
    assert!(b.run().success);
    // A canary that vanishes (records removed) fails too.
    b.run();
    let third = b.enqueued()[2].clone();
    b.redis.cmd(&["DEL", &format!("fake:job:{third}")]);
    let r = b.run();
    assert_eq!(r.reason, Some(Reason::JobFailed));
    assert!(
        r.message.as_deref().unwrap().contains("vanished"),
        "{:?}",
        r.message
    );
}

#[test]
fn two_replicas_share_one_canary_and_agree_on_how_it_ended() {
    let Some(b) = Bench::new(Duration::from_secs(5), Duration::from_secs(600)) else {
        return;
    };
    let other = Bench::probe(
        &b.redis,
        &b.fake,
        Duration::from_secs(5),
        Duration::from_secs(600),
    );
    b.run();
    let r = b.run_with(&other, Duration::from_millis(300));
    assert!(
        !report(&r).enqueued_now,
        "the replica watches the same canary"
    );
    assert_eq!(b.enqueued().len(), 1);
    let id = b.enqueued()[0].clone();
    b.set(&id, &[("state", "failed".into()), ("error", "boom".into())]);
    let first = b.run();
    assert_eq!(first.reason, Some(Reason::JobFailed));
    // The first replica judged and cleaned it: the second reads how it ended.
    let second = b.run_with(&other, Duration::from_millis(300));
    assert_eq!(second.reason, Some(Reason::JobFailed), "{second:?}");
    assert!(second.message.as_deref().unwrap().ends_with("failed: boom"));
}

#[test]
fn a_canary_out_longer_than_keep_is_removed_and_replaced() {
    let Some(b) = Bench::new(Duration::from_millis(200), Duration::from_millis(800)) else {
        return;
    };
    b.run();
    std::thread::sleep(Duration::from_millis(900));
    let r = b.run();
    assert_eq!(b.enqueued().len(), 2, "{r:?}");
    assert!(
        r.message
            .as_deref()
            .unwrap_or("")
            .contains("replaced canary"),
        "{r:?}"
    );
    assert_eq!(
        r.reason,
        Some(Reason::NotPickedUp),
        "the replaced canary's verdict stands while the new one is out"
    );
    assert_eq!(
        b.redis.cmd(&["LLEN", "fake:queue"]).as_int(),
        Some(1),
        "the old one left the queue"
    );
    assert!(b.keys().contains(&marker_key("jobs-canary")));
}
