//! The `queue` kind end to end on a real redis-server, with `system: redis` (plain keys): depth,
//! progress derived from draining, stream consumer-group lag, the shared connection, Redis going
//! away and coming back, metrics, and the config errors of the kind.

mod services;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use canaryd::daemon::build_probe;
use canaryd::metrics::{CheckMeta, Format, Metrics};
use canaryd::probe::check::{load_checks_str, Check};
use canaryd::probe::{CheckResult, Probe, Reason, RunContext};
use services::Redis;

fn check(yaml: &str) -> Arc<Check> {
    let checks = load_checks_str(Path::new("queue.yaml"), yaml).unwrap_or_else(|e| panic!("{e}"));
    Arc::clone(&checks[0])
}

async fn run(probe: &dyn Probe, timeout: Duration) -> CheckResult {
    let ctx = RunContext {
        deadline: tokio::time::Instant::now() + timeout,
    };
    probe.run(ctx).await
}

fn var(r: &CheckResult, name: &str) -> Option<f64> {
    r.observations
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| *v)
}

/// Evaluates an alert expression against a result, as the alert engine does.
fn holds(r: &CheckResult, when: &str) -> bool {
    let e = canaryd::config::expr::parse(when).unwrap();
    canaryd::config::expr::truthy(canaryd::config::expr::eval(&e, &|n| {
        canaryd::probe::kind::variable_of(
            <canaryd::probe::queue::def::Queue as canaryd::probe::kind::Kind>::VARS,
            r,
            n,
            std::time::SystemTime::now(),
        )
    }))
}

fn generic(url: &str, extra: &str) -> String {
    format!(
        "checks:\n  - name: jobs\n    interval: 10s\n    timeout: 2s\n    queue:\n      system: redis\n      redis: \"{url}\"\n{extra}"
    )
}

#[tokio::test]
async fn list_depth_and_progress_from_draining() {
    let Some(redis) = Redis::start() else { return };
    for i in 0..5 {
        redis.cmd(&["RPUSH", "jobs:default", &format!("job-{i}")]);
    }
    let c = check(&generic(
        &redis.url(),
        "      keys: [jobs:default, jobs:missing]\n",
    ));
    let probe = build_probe(&c).unwrap();

    let r1 = run(probe.as_ref(), Duration::from_secs(2)).await;
    assert!(r1.success, "{:?}", r1.message);
    assert_eq!(var(&r1, "depth"), Some(5.0));
    assert_eq!(var(&r1, "queue.jobs:default.depth"), Some(5.0));
    assert_eq!(var(&r1, "queue.jobs:missing.depth"), Some(0.0));
    assert_eq!(var(&r1, "unreachable"), Some(0.0));
    // Nothing to compare with on the first run: no rate rather than a made-up zero.
    assert_eq!(var(&r1, "processed_rate"), None);
    assert!(!holds(&r1, "depth > 0 && processed_rate == 0"));

    // Nobody works the queue: depth stays, rate is zero — the stalled-jobs signal.
    let r2 = run(probe.as_ref(), Duration::from_secs(2)).await;
    assert_eq!(var(&r2, "depth"), Some(5.0));
    assert_eq!(var(&r2, "processed_rate"), Some(0.0));
    assert!(holds(&r2, "depth > 0 && processed_rate == 0"));
    assert!(holds(&r2, "queue.jobs:default.depth == 5 && !unreachable"));

    // A worker takes three: progress is derived from the drain.
    for _ in 0..3 {
        redis.cmd(&["LPOP", "jobs:default"]);
    }
    let r3 = run(probe.as_ref(), Duration::from_secs(2)).await;
    assert_eq!(var(&r3, "depth"), Some(2.0));
    assert!(
        var(&r3, "processed_rate").unwrap() > 0.0,
        "{:?}",
        r3.observations
    );

    let metrics = Metrics::new();
    metrics.set_checks(&[CheckMeta {
        name: "jobs".into(),
        kind: "queue",
        steps: vec![],
        labels: vec![],
    }]);
    metrics.observe("jobs", &r1);
    metrics.observe("jobs", &r3);
    let text = metrics.encode(Format::Text);
    for line in [
        r#"canary_queue_depth{check="jobs",system="redis",queue="jobs:default",state="waiting"} 2"#,
        r#"canary_queue_depth{check="jobs",system="redis",queue="jobs:missing",state="waiting"} 0"#,
        r#"canary_jobs_processed_total{check="jobs",system="redis"} 3"#,
        r#"canary_queue_oldest_job_age_seconds{check="jobs",system="redis",queue="jobs:missing"} 0.0"#,
    ] {
        assert!(text.contains(line), "missing {line}\n{text}");
    }
    // Jobs wait but plain keys carry no enqueue time: no made-up age.
    assert!(!text.contains(
        r#"canary_queue_oldest_job_age_seconds{check="jobs",system="redis",queue="jobs:default"}"#
    ));
}

#[tokio::test]
async fn stream_lag_patterns_and_types() {
    let Some(redis) = Redis::start() else { return };
    redis.cmd(&["XGROUP", "CREATE", "events", "workers", "$", "MKSTREAM"]);
    for i in 0..4 {
        redis.cmd(&["XADD", "events", "*", "n", &i.to_string()]);
    }
    // One entry delivered to a consumer and not acknowledged: pending.
    redis.cmd(&[
        "XREADGROUP",
        "GROUP",
        "workers",
        "w1",
        "COUNT",
        "1",
        "STREAMS",
        "events",
        ">",
    ]);
    redis.cmd(&["ZADD", "sched:a", "1", "x", "2", "y"]);
    redis.cmd(&["SADD", "sched:b", "x"]);
    redis.cmd(&["HSET", "sched:c", "k", "v"]);
    redis.cmd(&["SET", "sched:d", "a string"]);
    let c = check(&generic(
        &redis.url(),
        "      keys: [events]\n      patterns: [\"sched:[abc]\"]\n",
    ));
    let probe = build_probe(&c).unwrap();
    let r = run(probe.as_ref(), Duration::from_secs(2)).await;
    assert!(r.success, "{:?}", r.message);
    let q = r.detail::<canaryd::probe::queue::QueueReport>().unwrap();
    let names: Vec<&str> = q.snapshot.queues.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, ["events", "sched:a", "sched:b", "sched:c"]);
    assert_eq!(var(&r, "queue.events.depth"), Some(3.0), "lag of the group");
    let events = &q.snapshot.queues[0];
    assert_eq!(
        events.depth(canaryd::probe::queue::JobState::Active),
        Some(1)
    );
    assert_eq!(var(&r, "queue.sched:a.depth"), Some(2.0));
    assert_eq!(var(&r, "depth"), Some(3.0 + 2.0 + 1.0 + 1.0));

    // A listed key holding a string is not a queue: the run says which key, and fails as redis.
    let c = check(&generic(&redis.url(), "      keys: [sched:d]\n"));
    let r = run(build_probe(&c).unwrap().as_ref(), Duration::from_secs(2)).await;
    assert_eq!(r.reason, Some(Reason::Redis));
    assert!(
        r.message.as_deref().unwrap().contains("sched:d"),
        "{:?}",
        r.message
    );
}

#[tokio::test]
async fn redis_down_is_unreachable_and_recovers_by_itself() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    redis.cmd(&["RPUSH", "q", "a", "b"]);
    let c = check(&generic(&redis.url(), "      keys: [q]\n"));
    let probe = build_probe(&c).unwrap();
    assert!(run(probe.as_ref(), Duration::from_secs(2)).await.success);

    redis.stop();
    let t0 = std::time::Instant::now();
    let r = run(probe.as_ref(), Duration::from_secs(2)).await;
    assert!(
        t0.elapsed() < Duration::from_millis(2_100),
        "{:?}",
        t0.elapsed()
    );
    assert!(!r.success);
    assert_eq!(r.reason, Some(Reason::Unreachable), "{:?}", r.message);
    assert_eq!(var(&r, "unreachable"), Some(1.0));
    assert!(holds(&r, "unreachable && failed"));
    let msg = r.message.unwrap();
    assert!(msg.contains("redis unreachable"), "{msg}");

    // Back on the same port: the next run dials afresh and reads again.
    redis.restart();
    redis.cmd(&["RPUSH", "q", "c"]);
    let r = run(probe.as_ref(), Duration::from_secs(2)).await;
    assert!(r.success, "{:?}", r.message);
    assert_eq!(var(&r, "depth"), Some(1.0));
    assert_eq!(var(&r, "unreachable"), Some(0.0));
}

#[tokio::test]
async fn daemon_starts_while_redis_is_down_and_password_never_shows() {
    let port = services::free_port();
    let url = format!("redis://:canary-redis-pw-7f3a@127.0.0.1:{port}/0");
    std::env::set_var("QUEUE_TEST_REDIS_URL", &url);
    let c = check(&generic("${env:QUEUE_TEST_REDIS_URL}", "      keys: [q]\n"));
    // Building the probe dials nothing.
    let probe = build_probe(&c).unwrap();
    let r = run(probe.as_ref(), Duration::from_secs(2)).await;
    assert_eq!(r.reason, Some(Reason::Unreachable));
    let msg = r.message.unwrap();
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(!msg.contains("canary-redis-pw-7f3a"), "{msg}");
    assert!(!format!("{c:?}").contains("canary-redis-pw-7f3a"));
}

#[test]
fn config_errors_name_the_key() {
    let bad = |yaml: &str| {
        load_checks_str(Path::new("q.yaml"), yaml)
            .unwrap_err()
            .to_string()
    };
    let e = bad(
        "checks:\n  - name: q\n    queue:\n      system: kafka\n      redis: redis://127.0.0.1/0\n",
    );
    assert!(
        e.contains("q.yaml:4:15: checks[0].queue.system: unknown system \"kafka\""),
        "{e}"
    );
    let e = bad("checks:\n  - name: q\n    queue:\n      system: sidekiq\n      redis: http://127.0.0.1/0\n");
    assert!(
        e.contains("checks[0].queue.redis: invalid redis URL"),
        "{e}"
    );
    let e = bad(
        "checks:\n  - name: q\n    queue:\n      system: redis\n      redis: redis://127.0.0.1/0\n",
    );
    assert!(e.contains("system redis needs keys or patterns"), "{e}");
    let e = bad("checks:\n  - name: q\n    queue:\n      system: rq\n      redis: redis://127.0.0.1/0\n      priority_steps: [0, 5]\n");
    assert!(
        e.contains("priority_steps applies to celery only, not rq"),
        "{e}"
    );
    let e = bad("checks:\n  - name: q\n    queue:\n      system: rq\n      redis: redis://127.0.0.1/0\n      queues: [a]\n    alerts:\n      - {name: X, when: queue.b.depth > 3}\n");
    assert!(e.contains("unknown queue \"b\""), "{e}");
    let e = bad("checks:\n  - name: q\n    queue:\n      system: rq\n      redis: redis://127.0.0.1/0\n    alerts:\n      - {name: X, when: status > 3}\n");
    assert!(
        e.contains("unknown variable \"status\" for a queue check"),
        "{e}"
    );
}
