//! [`CanaryProbe`]: one run of a canary job check (see the module docs of [`super`]).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::system::{from_unix_seconds, unix_seconds, Canary, CanarySystem, Seen};
use super::{CanaryReport, Stage};
use crate::probe::queue::conn::{ConnectError, RedisConn};
use crate::probe::queue::QueueError;
use crate::probe::{BoxFuture, CheckResult, Probe, Reason, RunContext};

/// What a canary check needs besides its system and connection.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The queue.
    pub queue: String,
    /// Task, function or class.
    pub task: String,
    /// Must finish this long after its enqueue.
    pub within: Duration,
    /// An outstanding canary older than this is removed and replaced; the system's expiry.
    pub keep: Duration,
    /// Removes the Redis URL's secrets from the system's error texts.
    pub redactor: Arc<crate::redact::Redactor>,
}

/// Polling starts this far apart and doubles up to [`POLL_MAX`].
const POLL_FIRST: Duration = Duration::from_millis(10);
const POLL_MAX: Duration = Duration::from_millis(200);
/// Polling stops this long before the run's deadline, leaving time to clean up and answer.
const MARGIN: Duration = Duration::from_millis(100);
/// An error text from the system is cut to this many characters in the run's message.
const ERROR_MAX: usize = 500;

/// The marker key of a check: names the canary it has out.
pub fn marker_key(check: &str) -> String {
    format!("canaryd:canary:{check}")
}

/// The key that keeps the end of the check's last canary, so a replica that finds the canary
/// gone (another replica of the check judged and cleaned it first) reads what it was.
pub fn last_key(check: &str) -> String {
    format!("canaryd:canary:{check}:last")
}

/// How a canary ended, as the replica that judged it saw it.
#[derive(Debug, Serialize, Deserialize)]
struct Ended {
    id: String,
    failed: bool,
    started_at: Option<f64>,
    ended_at: Option<f64>,
    error: Option<String>,
    /// The verdict it gave (`None`: passed), which runs repeat while the next canary is out
    /// but not late — on every replica, and after a restart.
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl Ended {
    fn of(id: &str, seen: &Seen, ended: Option<SystemTime>) -> Option<Ended> {
        let secs = |t: Option<SystemTime>| t.map(unix_seconds);
        match seen {
            Seen::Finished { started_at, .. } => Some(Ended {
                id: id.to_string(),
                failed: false,
                started_at: secs(*started_at),
                ended_at: secs(ended),
                error: None,
                reason: None,
                message: None,
            }),
            Seen::Failed {
                error,
                started_at,
                ended_at,
            } => Some(Ended {
                id: id.to_string(),
                failed: true,
                started_at: secs(*started_at),
                ended_at: secs(*ended_at),
                error: Some(error.clone()),
                reason: None,
                message: None,
            }),
            _ => None,
        }
    }

    fn seen(self) -> Seen {
        let time = |t: Option<f64>| t.and_then(from_unix_seconds);
        if self.failed {
            Seen::Failed {
                error: self.error.unwrap_or_default(),
                started_at: time(self.started_at),
                ended_at: time(self.ended_at),
            }
        } else {
            Seen::Finished {
                started_at: time(self.started_at),
                ended_at: time(self.ended_at),
            }
        }
    }
}

/// The marker's value: the canary, as JSON.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    system: String,
    id: String,
    queue: String,
    task: String,
    enqueued_at: f64,
    keep_ms: u64,
    payload: String,
}

/// The last conclusive verdict, repeated by runs that end while their canary is out but not
/// yet late.
#[derive(Debug, Clone)]
struct Verdict {
    reason: Option<Reason>,
    message: Option<String>,
}

/// A canary job check, built once and run many times.
pub struct CanaryProbe {
    check: String,
    system: Arc<dyn CanarySystem>,
    conn: Arc<RedisConn>,
    settings: Settings,
    last: Mutex<Option<Verdict>>,
}

impl std::fmt::Debug for CanaryProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CanaryProbe")
            .field("check", &self.check)
            .field("system", &self.system.system())
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

/// How a run failed before it could judge the canary.
enum Failure {
    Connect(ConnectError),
    Redis(QueueError),
}

impl From<QueueError> for Failure {
    fn from(e: QueueError) -> Failure {
        Failure::Redis(e)
    }
}

impl From<redis::RedisError> for Failure {
    fn from(e: redis::RedisError) -> Failure {
        Failure::Redis(QueueError::Redis(e))
    }
}

/// What a run found, before it becomes a result.
struct Found {
    canary: Canary,
    enqueued_now: bool,
    seen: Seen,
    /// When `seen` was read.
    seen_at: SystemTime,
    /// Whether this run saw the canary out (waiting or running) before it ended: then its end
    /// is known to the polling step even where the system records none.
    watched: bool,
    /// A canary this run removed because it was out longer than `keep`.
    replaced: Option<String>,
}

fn since(from: SystemTime, to: SystemTime) -> Duration {
    to.duration_since(from).unwrap_or_default()
}

impl CanaryProbe {
    /// A probe of check `check` running canaries on `system` through `conn`.
    pub fn new(
        check: &str,
        system: Arc<dyn CanarySystem>,
        conn: Arc<RedisConn>,
        settings: Settings,
    ) -> CanaryProbe {
        CanaryProbe {
            check: check.to_string(),
            system,
            conn,
            settings,
            last: Mutex::new(None),
        }
    }

    fn new_canary(&self) -> Canary {
        Canary {
            id: format!("canaryd-{:016x}", fastrand::u64(..)),
            check: self.check.clone(),
            queue: self.settings.queue.clone(),
            task: self.settings.task.clone(),
            enqueued_at: SystemTime::now(),
            keep: self.settings.keep,
            payload: String::new(),
        }
    }

    fn marker_of(&self, c: &Canary) -> Marker {
        Marker {
            system: self.system.system().as_str().to_string(),
            id: c.id.clone(),
            queue: c.queue.clone(),
            task: c.task.clone(),
            enqueued_at: unix_seconds(c.enqueued_at),
            keep_ms: u64::try_from(c.keep.as_millis()).unwrap_or(u64::MAX),
            payload: c.payload.clone(),
        }
    }

    /// The canary the marker names, if it is one of this check's current configuration.
    fn canary_of(&self, m: Marker) -> Option<Canary> {
        let same = m.system == self.system.system().as_str()
            && m.queue == self.settings.queue
            && m.task == self.settings.task;
        Some(Canary {
            id: m.id,
            check: self.check.clone(),
            queue: m.queue,
            task: m.task,
            enqueued_at: from_unix_seconds(m.enqueued_at)?,
            keep: Duration::from_millis(m.keep_ms),
            payload: m.payload,
        })
        .filter(|_| same)
    }

    /// The canary the marker names: `Ok` when it is one of this check's current
    /// configuration, `Err(id)` when the check's system, queue or task changed since.
    async fn read_marker(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> Result<Option<Result<Canary, String>>, Failure> {
        let raw: Option<Vec<u8>> = redis::cmd("GET")
            .arg(marker_key(&self.check))
            .query_async(conn)
            .await?;
        let Some(raw) = raw else { return Ok(None) };
        // A marker canaryd would not have written is dropped (and a new canary enqueued): it
        // names nothing canaryd could find or clean.
        let Ok(m) = serde_json::from_slice::<Marker>(&raw) else {
            self.delete_marker(conn).await?;
            return Ok(None);
        };
        let id = m.id.clone();
        Ok(Some(self.canary_of(m).ok_or(id)))
    }

    async fn delete_marker(&self, conn: &mut MultiplexedConnection) -> Result<(), Failure> {
        let _: i64 = redis::cmd("DEL")
            .arg(marker_key(&self.check))
            .query_async(conn)
            .await?;
        Ok(())
    }

    /// Enqueues a new canary, unless another replica of the check got there first (then its
    /// canary is the one to watch).
    async fn enqueue(&self, conn: &mut MultiplexedConnection) -> Result<(Canary, bool), Failure> {
        let mut c = self.new_canary();
        c.payload = self.system.prepare(&c)?;
        let marker = serde_json::to_vec(&self.marker_of(&c)).unwrap_or_default();
        // Twice `keep`: the marker must outlive the canary's `keep`, so the run that finds it
        // out too long removes it (a marker gone first would leave it queued beside the next).
        let keep_ms = u64::try_from(self.settings.keep.saturating_mul(2).as_millis())
            .unwrap_or(u64::MAX);
        let set: Option<String> = redis::cmd("SET")
            .arg(marker_key(&self.check))
            .arg(marker)
            .arg("NX")
            .arg("PX")
            .arg(keep_ms)
            .query_async(conn)
            .await?;
        if set.is_none() {
            if let Some(Ok(theirs)) = self.read_marker(conn).await? {
                return Ok((theirs, false));
            }
            return Err(Failure::Redis(QueueError::Data(format!(
                "{}: another canaryd holds the canary of this check",
                marker_key(&self.check)
            ))));
        }
        if let Err(e) = self.system.enqueue(conn, &c).await {
            let _ = self.delete_marker(conn).await;
            return Err(e.into());
        }
        Ok((c, true))
    }

    /// How the canary ended, when another replica of the check judged it first.
    async fn ended_elsewhere(
        &self,
        conn: &mut MultiplexedConnection,
        canary: &Canary,
    ) -> Result<Option<Seen>, Failure> {
        Ok(self
            .last_ended(conn)
            .await?
            .filter(|e| e.id == canary.id)
            .map(Ended::seen))
    }

    /// How the check's last canary ended, as kept in Redis (`None`: none kept, or unreadable).
    async fn last_ended(&self, conn: &mut MultiplexedConnection) -> Result<Option<Ended>, Failure> {
        let raw: Option<Vec<u8>> = redis::cmd("GET")
            .arg(last_key(&self.check))
            .query_async(conn)
            .await?;
        Ok(raw.and_then(|r| serde_json::from_slice::<Ended>(&r).ok()))
    }

    /// A canary is done with: how it ended is kept for the other replicas, what it left is
    /// removed, and the marker deleted, so the next run enqueues a new one.
    async fn conclude(
        &self,
        conn: &mut MultiplexedConnection,
        canary: &Canary,
        ended: Option<Ended>,
    ) -> Result<(), Failure> {
        self.system.clean(conn, canary).await?;
        let keep_ms = u64::try_from(self.settings.keep.as_millis()).unwrap_or(u64::MAX);
        let mut pipe = redis::pipe();
        pipe.atomic();
        if let Some(e) = ended {
            pipe.cmd("SET")
                .arg(last_key(&self.check))
                .arg(serde_json::to_vec(&e).unwrap_or_default())
                .arg("PX")
                .arg(keep_ms)
                .ignore();
        }
        pipe.cmd("DEL").arg(marker_key(&self.check)).ignore();
        let () = pipe.query_async(conn).await?;
        Ok(())
    }

    /// The verdict the check's last finished canary gave (kept in Redis, so replicas and a
    /// restarted daemon repeat the same one), else this probe's own last one.
    async fn previous(&self, conn: &mut MultiplexedConnection) -> Result<Option<Verdict>, Failure> {
        let stored = self.last_ended(conn).await?.map(|e| Verdict {
            reason: e
                .reason
                .as_deref()
                .and_then(|r| Reason::ALL.into_iter().find(|x| x.as_str() == r)),
            message: e.message,
        });
        Ok(stored.or_else(|| {
            self.last
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        }))
    }

    async fn attempt(&self, deadline: Instant) -> Result<(Verdict, CanaryReport), Failure> {
        let mut live = self.conn.get().await.map_err(Failure::Connect)?;
        let conn = &mut live.conn;
        let mut replaced = None;
        let outstanding = match self.read_marker(conn).await? {
            Some(Ok(c)) if since(c.enqueued_at, SystemTime::now()) <= c.keep => Some(c),
            Some(Ok(c)) => {
                // Out longer than `keep`: removed, so a worker that comes back never meets
                // more than one canary of this check. Its verdict stands until the next one
                // says otherwise.
                let short = crate::probe::http::short_duration;
                let ended = Ended {
                    id: c.id.clone(),
                    failed: true,
                    started_at: None,
                    ended_at: None,
                    error: None,
                    reason: Some(Reason::NotPickedUp.as_str().to_string()),
                    message: Some(format!(
                        "{} canary {} on queue {:?} not done {} after it was enqueued (within {})",
                        self.system.system().as_str(),
                        c.id,
                        c.queue,
                        short(since(c.enqueued_at, SystemTime::now())),
                        short(self.settings.within)
                    )),
                };
                self.conclude(conn, &c, Some(ended)).await?;
                replaced = Some(c.id);
                None
            }
            Some(Err(other)) => {
                // The check's system, queue or task changed: that canary is not this check's
                // any more; the system's expiry removes it.
                self.delete_marker(conn).await?;
                replaced = Some(other);
                None
            }
            None => None,
        };
        let (canary, enqueued_now) = match outstanding {
            Some(c) => (c, false),
            None => self.enqueue(conn).await?,
        };
        let stop = deadline.checked_sub(MARGIN).unwrap_or(deadline);
        let mut step = POLL_FIRST;
        let mut watched = false;
        loop {
            let seen = self.system.look(conn, &canary).await?;
            let seen_at = SystemTime::now();
            let out = matches!(seen, Seen::Waiting | Seen::Running { .. });
            if out && Instant::now() + step < stop {
                watched = true;
                tokio::time::sleep(step).await;
                step = (step * 2).min(POLL_MAX);
                continue;
            }
            let seen = match seen {
                Seen::Missing => self.ended_elsewhere(conn, &canary).await?.unwrap_or(seen),
                other => other,
            };
            let previous = if out { self.previous(conn).await? } else { None };
            let found = Found {
                canary,
                enqueued_now,
                seen,
                seen_at,
                watched,
                replaced,
            };
            let (verdict, report) = self.judge(&found, previous);
            if !out {
                let ended = match &found.seen {
                    Seen::Finished { ended_at, .. } => ended_at.or(watched.then_some(seen_at)),
                    _ => None,
                };
                let ended = Ended::of(&found.canary.id, &found.seen, ended).map(|e| Ended {
                    reason: verdict.reason.map(|r| r.as_str().to_string()),
                    message: verdict.message.clone(),
                    ..e
                });
                self.conclude(conn, &found.canary, ended).await?;
            }
            return Ok((verdict, report));
        }
    }

    /// The verdict on what a run found; `previous` is repeated while a canary is out but not
    /// yet late.
    fn judge(&self, f: &Found, previous: Option<Verdict>) -> (Verdict, CanaryReport) {
        let within = self.settings.within;
        let c = &f.canary;
        let system = self.system.system().as_str();
        let short = crate::probe::http::short_duration;
        let mut report = CanaryReport {
            system: self.system.system(),
            id: c.id.clone(),
            stage: Stage::Waiting,
            enqueued_now: f.enqueued_now,
            pickup_latency: None,
            run_time: None,
            total: None,
            outstanding_age: None,
        };
        let age = since(c.enqueued_at, f.seen_at);
        let (verdict, conclusive) = match &f.seen {
            Seen::Finished {
                started_at: s,
                ended_at,
            } => {
                report.stage = Stage::Finished;
                // Where the system records no end, the time this run saw it is the end, to the
                // polling step, if this run watched it; else it ended between runs.
                let ended = ended_at.or(f.watched.then_some(f.seen_at));
                report.pickup_latency = s.map(|s| since(c.enqueued_at, s));
                report.run_time = s.zip(ended).map(|(s, e)| since(s, e));
                report.total = ended.map(|e| since(c.enqueued_at, e));
                match report.total {
                    Some(t) if t > within => (
                        Verdict {
                            reason: Some(Reason::TooSlow),
                            message: Some(format!(
                                "{system} canary {} finished {} after it was enqueued, more than within {}",
                                c.id,
                                short(t),
                                short(within)
                            )),
                        },
                        true,
                    ),
                    _ => (
                        Verdict {
                            reason: None,
                            message: None,
                        },
                        true,
                    ),
                }
            }
            Seen::Failed {
                error,
                started_at: s,
                ended_at,
            } => {
                report.stage = Stage::Failed;
                report.pickup_latency = s.map(|s| since(c.enqueued_at, s));
                report.run_time = s.zip(*ended_at).map(|(s, e)| since(s, e));
                let error = self.settings.redactor.apply(error);
                let error: String = error.chars().take(ERROR_MAX).collect();
                (
                    Verdict {
                        reason: Some(Reason::JobFailed),
                        message: Some(format!(
                            "{system} canary {} on queue {:?} failed: {error}",
                            c.id, c.queue
                        )),
                    },
                    true,
                )
            }
            Seen::Missing => {
                report.stage = Stage::Missing;
                (
                    Verdict {
                        reason: Some(Reason::JobFailed),
                        message: Some(format!(
                            "{system} canary {} vanished from queue {:?}: not waiting, not running, and no record of its end (a worker dropped it, or its records were removed)",
                            c.id, c.queue
                        )),
                    },
                    true,
                )
            }
            Seen::Waiting | Seen::Running { .. } => {
                let running = matches!(f.seen, Seen::Running { .. });
                report.stage = if running {
                    Stage::Running
                } else {
                    Stage::Waiting
                };
                report.outstanding_age = Some(age);
                if let Seen::Running {
                    started_at: Some(s),
                } = f.seen
                {
                    report.pickup_latency = Some(since(c.enqueued_at, s));
                }
                if age > within {
                    let (reason, what) = if running {
                        (Reason::TooSlow, "still running")
                    } else {
                        (Reason::NotPickedUp, "not picked up")
                    };
                    (
                        Verdict {
                            reason: Some(reason),
                            message: Some(format!(
                                "{system} canary {} on queue {:?} {what} {} after it was enqueued (within {})",
                                c.id,
                                c.queue,
                                short(age),
                                short(within)
                            )),
                        },
                        true,
                    )
                } else {
                    (
                        previous.unwrap_or(Verdict {
                            reason: None,
                            message: None,
                        }),
                        false,
                    )
                }
            }
        };
        if conclusive {
            *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(verdict.clone());
        }
        let mut verdict = verdict;
        if let Some(old) = &f.replaced {
            let note = format!("replaced canary {old}, out longer than {}", short(c.keep));
            verdict.message = Some(match verdict.message {
                Some(m) => format!("{m}; {note}"),
                None => note,
            });
        }
        (verdict, report)
    }

    /// The result of a run that judged its canary.
    fn result(
        verdict: Verdict,
        report: CanaryReport,
        started_at: SystemTime,
        duration: Duration,
    ) -> CheckResult {
        CheckResult {
            success: verdict.reason.is_none(),
            reason: verdict.reason,
            message: verdict.message,
            duration,
            started_at,
            steps: Vec::new(),
            observations: report.observations(),
            detail: Some(Arc::new(report)),
            attempts: 1,
        }
    }

    async fn run_inner(&self, ctx: RunContext) -> CheckResult {
        let started_at = SystemTime::now();
        let start = Instant::now();
        let outcome = tokio::time::timeout_at(ctx.deadline, self.attempt(ctx.deadline)).await;
        let duration = start.elapsed();
        let system = self.system.system().as_str();
        let failure = |reason: Reason, message: String| {
            let mut r = CheckResult::failure(reason, message, started_at, duration);
            r.observations.push((
                "unreachable".into(),
                if reason == Reason::Unreachable {
                    1.0
                } else {
                    0.0
                },
            ));
            r
        };
        match outcome {
            Ok(Ok((verdict, report))) => Self::result(verdict, report, started_at, duration),
            Err(_) => {
                self.conn.reset();
                failure(
                    Reason::Unreachable,
                    format!(
                        "{system}: no answer from {} before the check's timeout",
                        self.conn.target()
                    ),
                )
            }
            Ok(Err(Failure::Connect(e))) => failure(
                Reason::Unreachable,
                format!("{system}: redis unreachable: {e}"),
            ),
            Ok(Err(Failure::Redis(QueueError::Redis(e)))) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                    self.conn.reset();
                    failure(
                        Reason::Unreachable,
                        format!(
                            "{system}: redis unreachable: connection to {} lost: {}",
                            self.conn.target(),
                            e.category()
                        ),
                    )
                } else {
                    failure(
                        Reason::Redis,
                        format!("{system}: redis error from {}: {e}", self.conn.target()),
                    )
                }
            }
            Ok(Err(Failure::Redis(QueueError::Data(m)))) => failure(
                Reason::Redis,
                format!("{system}: unexpected data in {}: {m}", self.conn.target()),
            ),
        }
    }
}

impl Probe for CanaryProbe {
    fn run<'a>(&'a self, ctx: RunContext) -> BoxFuture<'a, CheckResult> {
        Box::pin(self.run_inner(ctx))
    }
}
