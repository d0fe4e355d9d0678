//! The Sidekiq canary (`canaryd::probe::canary_job::sidekiq`) driven directly against a real
//! `sidekiq` process (Debian's ruby-sidekiq 6.4), each test on its own redis-server.
//!
//! Job classes: `tests/jobs/sidekiq/jobs.rb` (`CanarydCanaryJob`, the documented no-op, and
//! `CanarydFailingJob`, which raises "canary boom"). Sidekiq's own record of when a job ran is its
//! job log (`<ISO time, ms> ... jid=<jid> INFO: start`), read here independently.

mod services;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use canaryd::probe::canary_job::sidekiq::SidekiqCanary;
use canaryd::probe::canary_job::system::{Canary, CanarySystem, Seen};
use redis::aio::MultiplexedConnection;
use services::{repo_root, require, secs, Redis, Worker};

const QUEUE: &str = "default";

/// A real Sidekiq process: `threads` threads on queue `default`, 2 s shutdown timeout.
fn start_sidekiq(sidekiq: &PathBuf, redis: &Redis, threads: u32) -> Worker {
    let mut cmd = Command::new(sidekiq);
    cmd.arg("-r")
        .arg(repo_root().join("tests/jobs/sidekiq/jobs.rb"))
        .args(["-q", QUEUE, "-c", &threads.to_string(), "-t", "2"])
        .env("REDIS_URL", redis.url());
    let mut worker = Worker::spawn("sidekiq", cmd);
    // Booted once its first heartbeat registered it.
    worker.wait_until(secs(30), || {
        redis.cmd(&["SCARD", "processes"]).as_int() == Some(1)
    });
    worker
}

fn signal(worker: &Worker, sig: &str) {
    let pid = worker.pid().expect("sidekiq pid");
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

struct Setup {
    rt: tokio::runtime::Runtime,
    conn: MultiplexedConnection,
    system: SidekiqCanary,
    next: u64,
}

impl Setup {
    fn new(redis: &Redis) -> Setup {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let conn = rt.block_on(redis.connect(0));
        Setup {
            rt,
            conn,
            system: SidekiqCanary::default(),
            next: 0,
        }
    }

    /// A prepared canary of class `task`, not yet enqueued.
    fn canary(&mut self, task: &str) -> Canary {
        self.next += 1;
        let mut c = Canary {
            id: format!("canaryd-{:016x}", 0x00c0_ffee_0000_0000 + self.next),
            check: "sidekiq-canary-test".to_string(),
            queue: QUEUE.to_string(),
            task: task.to_string(),
            enqueued_at: SystemTime::now(),
            keep: Duration::from_secs(600),
            payload: String::new(),
        };
        c.payload = self.system.prepare(&c).expect("prepare");
        c
    }

    fn enqueue(&mut self, task: &str) -> Canary {
        let c = self.canary(task);
        self.rt
            .block_on(self.system.enqueue(&mut self.conn, &c))
            .expect("enqueue");
        c
    }

    fn look(&mut self, c: &Canary) -> Seen {
        self.rt
            .block_on(self.system.look(&mut self.conn, c))
            .expect("look")
    }

    fn clean(&mut self, c: &Canary) {
        self.rt
            .block_on(self.system.clean(&mut self.conn, c))
            .expect("clean");
    }

    /// Looks every 20 ms until `done` holds (bounded); returns the state and when the first look
    /// that did not find it Waiting ran.
    fn until(
        &mut self,
        c: &Canary,
        timeout: Duration,
        done: impl Fn(&Seen) -> bool,
    ) -> (Seen, Option<SystemTime>) {
        let deadline = Instant::now() + timeout;
        let mut left_queue = None;
        loop {
            let seen = self.look(c);
            if seen != Seen::Waiting && left_queue.is_none() {
                left_queue = Some(SystemTime::now());
            }
            if done(&seen) {
                return (seen, left_queue);
            }
            assert!(
                Instant::now() < deadline,
                "canary {} still {seen:?} after {timeout:?}",
                c.id
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn finished(s: &Seen) -> bool {
    matches!(s, Seen::Finished { .. })
}

/// Sidekiq's own record of when `jid` started: the `INFO: start` line of its job log, whose
/// timestamp has millisecond precision.
fn logged_start(log: &str, jid: &str) -> Option<SystemTime> {
    let needle = format!("jid={jid} ");
    let line = log
        .lines()
        .find(|l| l.contains(&needle) && l.ends_with("INFO: start"))?;
    let stamp = line.split(' ').next()?;
    iso_millis(stamp)
}

/// `2026-12-04T11:08:35.304Z` as a `SystemTime` (UTC).
fn iso_millis(s: &str) -> Option<SystemTime> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, ms) = time.split_once('.')?;
    let mut t = hms.split(':').map(|p| p.parse::<i64>());
    let (h, min, sec) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + min * 60 + sec;
    let millis = u64::try_from(secs).ok()? * 1000 + ms.parse::<u64>().ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_millis(millis))
}

fn ms_between(a: SystemTime, b: SystemTime) -> f64 {
    match b.duration_since(a) {
        Ok(d) => d.as_secs_f64() * 1000.0,
        Err(e) => -e.duration().as_secs_f64() * 1000.0,
    }
}

#[test]
fn iso_times_of_the_sidekiq_log_parse() {
    let t = iso_millis("2026-12-04T11:08:35.304Z").unwrap();
    let unix = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    assert_eq!(unix, 1_796_382_515_304);
}

#[test]
fn a_healthy_sidekiq_runs_the_canary_and_the_pickup_matches_its_log() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let Some(sidekiq) = require("sidekiq") else {
        return;
    };
    let worker = start_sidekiq(&sidekiq, &redis, 2);
    let mut s = Setup::new(&redis);

    let c = s.enqueue("CanarydCanaryJob");
    // The payload in the queue is byte for byte what Sidekiq's client would have pushed.
    let (seen, left_queue) = s.until(&c, secs(15), finished);
    let Seen::Finished {
        started_at,
        ended_at,
    } = seen
    else {
        unreachable!()
    };
    // A no-op runs between two heartbeats: Sidekiq records no start for it in Redis.
    assert_eq!(started_at, None);
    let ended_at = ended_at.expect("ended_at: the first look that found it gone");
    let left_queue = left_queue.expect("a look found it gone");
    let gap = ms_between(ended_at, left_queue);
    assert!(
        (0.0..50.0).contains(&gap),
        "ended_at is the time of the first look that found it gone ({gap:.3} ms before this test's stamp of it)"
    );

    let start = logged_start(&worker.log(), &c.id)
        .unwrap_or_else(|| panic!("no start line for {}\n{}", c.id, worker.log_tail(20)));
    // What canaryd can measure of the pickup (enqueue → the look that found the queue without
    // it) is within a few hundred ms of what Sidekiq logged (enqueue → start).
    let ours = ms_between(c.enqueued_at, ended_at);
    let theirs = ms_between(c.enqueued_at, start);
    assert!(
        theirs >= -5.0 && ours >= theirs - 5.0 && ours - theirs < 300.0,
        "pickup: canaryd {ours:.1} ms, Sidekiq's log {theirs:.1} ms"
    );
    s.clean(&c);
    assert_eq!(redis.cmd(&["LLEN", "queue:default"]).as_int(), Some(0));
    assert_eq!(redis.cmd(&["ZCARD", "dead"]).as_int(), Some(0));
}

#[test]
fn a_canary_running_across_a_heartbeat_shows_its_start_second() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let Some(sidekiq) = require("sidekiq") else {
        return;
    };
    let worker = start_sidekiq(&sidekiq, &redis, 2);
    let mut s = Setup::new(&redis);

    // The job sleeps 6 s: the next heartbeat (every 5 s) writes it into the work hash.
    let c = s.enqueue("CanarydSlowJob");
    let (seen, _) = s.until(&c, secs(10), |s| {
        matches!(
            s,
            Seen::Running {
                started_at: Some(_)
            }
        )
    });
    let Seen::Running {
        started_at: Some(run_at),
    } = seen
    else {
        unreachable!()
    };
    let start = logged_start(&worker.log(), &c.id).expect("start line");
    // `run_at` is the start truncated to the second.
    let early = ms_between(run_at, start);
    assert!(
        (0.0..1000.0).contains(&early),
        "run_at {run_at:?} vs logged start {start:?}"
    );
    let (seen, _) = s.until(&c, secs(15), finished);
    assert!(
        matches!(seen, Seen::Finished { started_at: Some(t), .. } if t == run_at),
        "{seen:?}"
    );
    s.clean(&c);
}

#[test]
fn a_stopped_sidekiq_leaves_the_canary_waiting_until_it_resumes() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let Some(sidekiq) = require("sidekiq") else {
        return;
    };
    let worker = start_sidekiq(&sidekiq, &redis, 2);
    let mut s = Setup::new(&redis);

    signal(&worker, "STOP");
    // Each thread of the frozen process may still have a BRPOP pending in Redis (Sidekiq 6.4's
    // fetch blocks 2 s): a job pushed then would be handed to the frozen process. Let them time
    // out first, as they would on a worker hung for longer than that.
    std::thread::sleep(Duration::from_millis(2500));
    let c = s.enqueue("CanarydCanaryJob");
    let until = Instant::now() + secs(2);
    while Instant::now() < until {
        assert_eq!(s.look(&c), Seen::Waiting);
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(&worker, "CONT");
    s.until(&c, secs(15), finished);
    assert!(logged_start(&worker.log(), &c.id).is_some());
    s.clean(&c);
}

#[test]
fn a_canary_that_raises_is_failed_with_the_exception_text() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let Some(sidekiq) = require("sidekiq") else {
        return;
    };
    let _worker = start_sidekiq(&sidekiq, &redis, 2);
    let mut s = Setup::new(&redis);

    let c = s.enqueue("CanarydFailingJob");
    let (seen, _) = s.until(&c, secs(15), |s| {
        !matches!(s, Seen::Waiting | Seen::Running { .. })
    });
    let Seen::Failed {
        error, ended_at, ..
    } = seen
    else {
        panic!("expected Failed, got {seen:?}");
    };
    assert_eq!(error, "RuntimeError: canary boom");
    // Sidekiq's own record, read independently: the dead set holds the canary with the same
    // failure time (float seconds).
    let dead = redis.cmd(&["ZRANGE", "dead", "0", "-1"]);
    let services::Resp::Array(Some(members)) = dead else {
        panic!("dead: {dead:?}")
    };
    assert_eq!(members.len(), 1);
    let job: serde_json::Value =
        serde_json::from_str(&members[0].as_str().unwrap()).expect("dead job JSON");
    assert_eq!(job["jid"], c.id.as_str());
    assert_eq!(job["error_message"], "canary boom");
    let failed_at = job["failed_at"].as_f64().unwrap();
    let ours = ended_at
        .unwrap()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((ours - failed_at).abs() < 1e-5, "{ours} vs {failed_at}");

    s.clean(&c);
    assert_eq!(redis.cmd(&["ZCARD", "dead"]).as_int(), Some(0));
    assert_eq!(s.look(&c), Seen::Running { started_at: None });
}

#[test]
fn clean_removes_a_waiting_canary_so_no_worker_ever_runs_it() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let Some(sidekiq) = require("sidekiq") else {
        return;
    };
    let mut s = Setup::new(&redis);
    // Another job queued before the canary and one after: clean takes out only the canary.
    let before = s.enqueue("CanarydCanaryJob");
    let c = s.enqueue("CanarydCanaryJob");
    let after = s.enqueue("CanarydCanaryJob");
    assert_eq!(s.look(&c), Seen::Waiting);
    s.clean(&c);
    assert_eq!(redis.cmd(&["LLEN", "queue:default"]).as_int(), Some(2));
    s.clean(&c); // harmless when already gone

    let worker = start_sidekiq(&sidekiq, &redis, 2);
    s.until(&before, secs(15), finished);
    s.until(&after, secs(15), finished);
    let log = worker.log();
    assert!(logged_start(&log, &after.id).is_some(), "{log}");
    assert!(
        !log.contains(&format!("jid={} ", c.id)),
        "the cleaned canary ran:\n{log}"
    );
}

/// Keys in Redis.
fn dbsize(redis: &Redis) -> i64 {
    redis.cmd(&["DBSIZE"]).as_int().expect("DBSIZE")
}

/// Runs `n` canaries in batches of `batch` (all of a batch enqueued, waited for, cleaned).
fn run_canaries(s: &mut Setup, n: usize, batch: usize) {
    let mut done = 0;
    while done < n {
        let k = batch.min(n - done);
        let canaries: Vec<Canary> = (0..k).map(|_| s.enqueue("CanarydCanaryJob")).collect();
        let deadline = Instant::now() + secs(20);
        let mut pending: Vec<&Canary> = canaries.iter().collect();
        while !pending.is_empty() {
            assert!(
                Instant::now() < deadline,
                "{} canaries unfinished",
                pending.len()
            );
            let mut still = Vec::new();
            for c in pending {
                match s.look(c) {
                    Seen::Finished { .. } => {}
                    Seen::Failed { error, .. } => panic!("{} failed: {error}", c.id),
                    _ => still.push(c),
                }
            }
            pending = still;
            std::thread::sleep(Duration::from_millis(50));
        }
        for c in &canaries {
            s.clean(c);
        }
        done += k;
    }
}

#[test]
fn a_thousand_canaries_leave_redis_no_bigger_than_ten() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let Some(sidekiq) = require("sidekiq") else {
        return;
    };
    let _worker = start_sidekiq(&sidekiq, &redis, 5);
    let mut s = Setup::new(&redis);

    let started = Instant::now();
    run_canaries(&mut s, 10, 10);
    let after_ten = dbsize(&redis);
    run_canaries(&mut s, 990, 110);
    let after_thousand = dbsize(&redis);
    eprintln!(
        "1000 canaries in {:?}; keys after 10: {after_ten}, after 1000: {after_thousand}",
        started.elapsed()
    );
    // Sidekiq's own keys (queues, processes, the process hash and its work hash, the stat
    // counters a heartbeat may add meanwhile): nothing grows with the count.
    assert!(
        after_thousand <= after_ten + 4 && after_thousand <= 16,
        "keys after 10: {after_ten}, after 1000: {after_thousand}"
    );
    assert_eq!(redis.cmd(&["LLEN", "queue:default"]).as_int(), Some(0));
    assert_eq!(redis.cmd(&["ZCARD", "dead"]).as_int(), Some(0));
    assert_eq!(redis.cmd(&["ZCARD", "retry"]).as_int(), Some(0));
}

/// Pushes `n` filler jobs (not canaries) onto the left of the queue, as new jobs arrive.
fn push_fillers(s: &mut Setup, n: usize) {
    let fillers: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"class":"Filler","args":[{i}],"jid":"f{i}"}}"#))
        .collect();
    s.rt.block_on(async {
        redis::cmd("LPUSH")
            .arg("queue:default")
            .arg(&fillers)
            .query_async::<()>(&mut s.conn)
            .await
    })
    .expect("LPUSH fillers");
}

#[test]
fn a_canary_deep_in_a_long_queue_is_waiting_and_clean_finds_it() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let mut s = Setup::new(&redis);
    use canaryd::probe::canary_job::sidekiq::QUEUE_WINDOW;
    let window = QUEUE_WINDOW as usize;

    // Older than the canary: more than one window; newer: less than one. Found from the left.
    push_fillers(&mut s, window + 5);
    let c = s.enqueue("CanarydCanaryJob");
    push_fillers(&mut s, 10);
    assert_eq!(s.look(&c), Seen::Waiting);

    // More than a window newer as well: found by neither LPOS, counted Waiting because the
    // queue is longer than both windows.
    push_fillers(&mut s, window);
    assert_eq!(s.look(&c), Seen::Waiting);
    let len = redis.cmd(&["LLEN", "queue:default"]).as_int().unwrap();
    s.clean(&c);
    assert_eq!(
        redis.cmd(&["LLEN", "queue:default"]).as_int(),
        Some(len - 1)
    );
    assert_eq!(
        redis.cmd(&["LPOS", "queue:default", &c.payload]).as_str(),
        None
    );
    // Gone from a long queue: still counted as waiting (the documented blind spot).
    assert_eq!(s.look(&c), Seen::Waiting);

    // Fewer than a window older, many newer: found from the right.
    redis.cmd(&["DEL", "queue:default"]);
    push_fillers(&mut s, 3);
    let d = s.enqueue("CanarydCanaryJob");
    push_fillers(&mut s, window * 2 + 10);
    assert_eq!(s.look(&d), Seen::Waiting);
    s.clean(&d);
    assert_eq!(
        redis.cmd(&["LLEN", "queue:default"]).as_int(),
        Some(window as i64 * 2 + 13)
    );
}
