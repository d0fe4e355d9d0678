//! [`QueueProbe`]: one run of a queue check — read a snapshot through the shared connection,
//! turn counters into rates since the previous run, and report depths, ages, rates and workers
//! as alert variables and metrics.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use super::conn::{ConnectError, RedisConn};
use super::{JobState, JobSystem, QueueError, QueueReport, Snapshot, System};
use crate::probe::{BoxFuture, CheckResult, Probe, Reason, RunContext};

/// What the previous successful read left for computing rates.
#[derive(Debug, Clone, Copy)]
struct Previous {
    at: Instant,
    processed: Option<u64>,
    failed: Option<u64>,
    waiting: u64,
}

/// A queue check, built once and run many times.
pub struct QueueProbe {
    system: Arc<dyn JobSystem>,
    conn: Arc<RedisConn>,
    previous: Mutex<Option<Previous>>,
}

impl std::fmt::Debug for QueueProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueProbe")
            .field("system", &self.system.system())
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

/// How a read attempt failed.
enum Failure {
    Connect(ConnectError),
    Read(QueueError),
    /// The connection was cut because a reply broke the budget (`reply over 8 MiB`, ...).
    Budget(String),
}

impl QueueProbe {
    /// A probe reading `system`'s layout through `conn` (see [`super::conn::shared`]).
    pub fn new(system: Arc<dyn JobSystem>, conn: Arc<RedisConn>) -> QueueProbe {
        QueueProbe {
            system,
            conn,
            previous: Mutex::new(None),
        }
    }

    async fn read_once(&self) -> Result<Snapshot, Failure> {
        let mut live = self.conn.get().await.map_err(Failure::Connect)?;
        let read = self.system.collect(&mut live.conn).await;
        // A reply over budget cuts the connection: every request on it fails with an I/O
        // error, which says nothing of the cause. The stream's flag does.
        if let Some(reason) = live.tripped.reason() {
            self.conn.reset();
            return Err(Failure::Budget(reason.to_string()));
        }
        read.map_err(Failure::Read)
    }

    /// Reads a snapshot; a connection that turns out broken is dropped and the read retried
    /// once on a fresh one (a Redis restart between runs costs no failed run).
    async fn read(&self) -> Result<Snapshot, Failure> {
        match self.read_once().await {
            Err(Failure::Read(QueueError::Redis(e))) if connection_broken(&e) => {
                self.conn.reset();
                self.read_once().await
            }
            other => other,
        }
    }

    async fn run_inner(&self, ctx: RunContext) -> CheckResult {
        let started_at = SystemTime::now();
        let start = Instant::now();
        let outcome = tokio::time::timeout_at(ctx.deadline, self.read()).await;
        let duration = start.elapsed();
        let system = self.system.system();
        let failure = |reason: Reason, message: String| {
            let mut r = CheckResult::failure(reason, message, started_at, duration);
            r.observations.push((
                "unreachable".into(),
                bool_num(reason == Reason::Unreachable),
            ));
            r
        };
        match outcome {
            Err(_) => {
                // A read stuck on the connection leaves it unusable: dial afresh next run.
                self.conn.reset();
                failure(
                    Reason::Unreachable,
                    format!(
                        "{}: no answer from {} before the check's timeout",
                        system.as_str(),
                        self.conn.target()
                    ),
                )
            }
            Ok(Err(Failure::Budget(reason))) => failure(
                Reason::Redis,
                format!("{}: {reason} from {}", system.as_str(), self.conn.target()),
            ),
            Ok(Err(Failure::Connect(e))) => failure(
                Reason::Unreachable,
                format!("{}: redis unreachable: {e}", system.as_str()),
            ),
            Ok(Err(Failure::Read(QueueError::Redis(e)))) => {
                if connection_broken(&e) {
                    self.conn.reset();
                    failure(
                        Reason::Unreachable,
                        format!(
                            "{}: redis unreachable: connection to {} lost: {}",
                            system.as_str(),
                            self.conn.target(),
                            e.category()
                        ),
                    )
                } else {
                    failure(
                        Reason::Redis,
                        format!(
                            "{}: redis error from {}: {e}",
                            system.as_str(),
                            self.conn.target()
                        ),
                    )
                }
            }
            Ok(Err(Failure::Read(QueueError::Data(m)))) => failure(
                Reason::Redis,
                format!(
                    "{}: unexpected data in {}: {m}",
                    system.as_str(),
                    self.conn.target()
                ),
            ),
            Ok(Ok(snapshot)) => {
                // Discovery past the cap is said, not failed: the first queues were read.
                let message = snapshot.discovered.map(|found| {
                    format!(
                        "{}: discovered {found} queues in {}, read the first {} (configure \
                         `queues` to choose them)",
                        system.as_str(),
                        self.conn.target(),
                        super::MAX_DISCOVERED_QUEUES
                    )
                });
                let report = self.report(system, snapshot, started_at, Instant::now());
                let observations = report.observations();
                CheckResult {
                    success: true,
                    reason: None,
                    message,
                    duration,
                    started_at,
                    steps: Vec::new(),
                    observations,
                    detail: Some(std::sync::Arc::new(report)),
                    attempts: 1,
                }
            }
        }
    }

    /// Turns a snapshot into a report, with rates against the previous read.
    fn report(
        &self,
        system: System,
        snapshot: Snapshot,
        wall: SystemTime,
        now: Instant,
    ) -> QueueReport {
        let waiting: u64 = snapshot
            .queues
            .iter()
            .filter_map(|q| q.depth(JobState::Waiting))
            .sum();
        let now_unix = wall
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let ages = snapshot
            .queues
            .iter()
            .map(|q| q.oldest_enqueued_at.map(|t| (now_unix - t).max(0.0)))
            .collect();
        let mut prev = self.previous.lock().unwrap_or_else(PoisonError::into_inner);
        let current = Previous {
            at: now,
            processed: snapshot.processed,
            failed: snapshot.failed,
            waiting,
        };
        let (processed_delta, failed_delta, elapsed) = match *prev {
            Some(p) => {
                let processed = match (p.processed, snapshot.processed) {
                    (Some(a), Some(b)) => counter_delta(a, b),
                    // No counter: what drained from the waiting jobs is the honest lower bound.
                    (None, None) => p.waiting.saturating_sub(waiting),
                    // The counter appeared or vanished (first worker started, last one gone):
                    // no comparable previous value.
                    _ => 0,
                };
                let failed = match (p.failed, snapshot.failed) {
                    (Some(a), Some(b)) => Some(counter_delta(a, b)),
                    _ => None,
                };
                (Some(processed), failed, Some(now.duration_since(p.at)))
            }
            None => (None, None, None),
        };
        *prev = Some(current);
        QueueReport {
            system,
            processed_delta,
            failed_delta,
            since_previous: elapsed,
            oldest_age_seconds: ages,
            snapshot,
        }
    }
}

/// The increase of a cumulative counter; a counter that went down was reset (Redis flushed, a
/// worker's own counter gone), and counts from zero like Prometheus counters do.
fn counter_delta(previous: u64, current: u64) -> u64 {
    if current >= previous {
        current - previous
    } else {
        current
    }
}

fn bool_num(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// Whether an error means the connection itself is gone (as opposed to Redis refusing a command).
fn connection_broken(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() || e.is_timeout()
}

impl crate::probe::kind::Detail for QueueReport {
    /// `{"queues": [{"name", "depth": {state: n}, "oldest_age_seconds"}]}` in the API.
    fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        let queues = self
            .snapshot
            .queues
            .iter()
            .zip(&self.oldest_age_seconds)
            .map(|(s, age)| {
                serde_json::json!({
                    "name": s.name,
                    "depth": s.depths.iter().map(|(st, n)| (st.as_str().to_string(), serde_json::json!(n))).collect::<serde_json::Map<_, _>>(),
                    "oldest_age_seconds": age,
                })
            })
            .collect::<Vec<_>>();
        let mut out = serde_json::Map::new();
        out.insert("queues".into(), queues.into());
        out
    }

    /// `queue "default": waiting 3, active 1, oldest waiting 5m4s`, one line per queue.
    fn trace(&self, out: &mut String) {
        use std::fmt::Write;
        for (stats, age) in self.snapshot.queues.iter().zip(&self.oldest_age_seconds) {
            let depths: Vec<String> = stats
                .depths
                .iter()
                .map(|(state, n)| format!("{} {n}", state.as_str()))
                .collect();
            let age = age
                .map(|a| {
                    format!(
                        ", oldest waiting {}",
                        crate::probe::http::short_duration(std::time::Duration::from_secs_f64(
                            a.clamp(0.0, 1e12)
                        ))
                    )
                })
                .unwrap_or_default();
            let _ = writeln!(out, "queue {:?}: {}{age}", stats.name, depths.join(", "));
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl QueueReport {
    /// Alert variables: `depth`, `queue.<q>.depth`, `oldest_age`, `processed_rate`,
    /// `failed_rate`, `workers`, `busy`, `scheduled`, `retries`, `dead`, `unreachable`. Rates
    /// are missing on the first run (nothing to compare with); counts the system does not keep
    /// are missing rather than zero.
    pub fn observations(&self) -> Vec<(String, f64)> {
        let mut out = Vec::with_capacity(12 + self.snapshot.queues.len());
        let sum = |state: JobState| -> Option<u64> {
            let mut any = false;
            let total = self
                .snapshot
                .queues
                .iter()
                .filter_map(|q| q.depth(state))
                .inspect(|_| any = true)
                .sum();
            any.then_some(total)
        };
        out.push(("depth".into(), sum(JobState::Waiting).unwrap_or(0) as f64));
        for q in &self.snapshot.queues {
            if q.name != super::ALL_QUEUES {
                if let Some(d) = q.depth(JobState::Waiting) {
                    out.push((format!("queue.{}.depth", q.name), d as f64));
                }
            }
        }
        // The oldest known age (a queue with nothing waiting counts as zero). Jobs wait but
        // none carries an enqueue time (Celery, plain Resque, plain keys): no value rather than
        // a made-up zero, as in `canary_queue_oldest_job_age_seconds`.
        let (mut oldest, mut known, mut unknown) = (0.0_f64, false, false);
        for (q, age) in self.snapshot.queues.iter().zip(&self.oldest_age_seconds) {
            match (age, q.depth(JobState::Waiting)) {
                (Some(age), _) => (oldest, known) = (oldest.max(*age), true),
                (None, Some(n)) if n > 0 => unknown = true,
                _ => {}
            }
        }
        if known || !unknown {
            out.push(("oldest_age".into(), oldest));
        }
        if let Some(elapsed) = self.since_previous.filter(|d| !d.is_zero()) {
            let secs = elapsed.as_secs_f64();
            if let Some(p) = self.processed_delta {
                out.push(("processed_rate".into(), p as f64 / secs));
            }
            if let Some(f) = self.failed_delta {
                out.push(("failed_rate".into(), f as f64 / secs));
            }
        }
        if let Some(w) = self.snapshot.workers {
            out.push(("workers".into(), w as f64));
        }
        if let Some(b) = self.snapshot.busy {
            out.push(("busy".into(), b as f64));
        }
        let scheduled = [JobState::Scheduled, JobState::Delayed]
            .into_iter()
            .filter_map(sum)
            .reduce(|a, b| a + b);
        for (name, value) in [
            ("scheduled", scheduled),
            ("retries", sum(JobState::Retry)),
            ("dead", sum(JobState::Dead)),
        ] {
            if let Some(v) = value {
                out.push((name.into(), v as f64));
            }
        }
        out.push(("unreachable".into(), 0.0));
        out
    }
}

impl Probe for QueueProbe {
    fn run<'a>(&'a self, ctx: RunContext) -> BoxFuture<'a, CheckResult> {
        Box::pin(self.run_inner(ctx))
    }
}
