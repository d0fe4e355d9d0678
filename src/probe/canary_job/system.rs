//! What one job system must do for a canary job: build the job in the system's own format,
//! enqueue it, say where it is, and delete what canaryd created. One file per system
//! implements [`CanarySystem`]; the probe ([`super`]) does everything else (one canary at a
//! time per check, the marker key, polling, timing, verdicts, metrics).

use std::time::{Duration, SystemTime};

use redis::aio::MultiplexedConnection;

use crate::probe::queue::{QueueError, System};
use crate::probe::BoxFuture;

/// One canary job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canary {
    /// Unique id, `canaryd-<16 hex digits>`: the system's job id (RQ job id, Celery task id,
    /// Sidekiq jid) wherever the system takes one, so the job is found by it.
    pub id: String,
    /// The check that enqueued it (written into the job's arguments or metadata, so an
    /// operator looking at the queue sees whose job it is).
    pub check: String,
    /// The queue it goes to, as the system spells it.
    pub queue: String,
    /// What runs: Celery task name, RQ function path, Sidekiq class.
    pub task: String,
    /// When canaryd enqueued it (the system's own enqueue time where it records one is the
    /// same instant: canaryd writes it).
    pub enqueued_at: SystemTime,
    /// How long the system should keep what it records of this canary (job hash, result):
    /// the expiry that cleans up after canaryd if canaryd never does (it stopped, Redis was
    /// unreachable at the wrong moment).
    pub keep: Duration,
    /// The job as the system stores it (the JSON or message body), built by
    /// [`CanarySystem::prepare`] and kept with the canary, so finding and removing it later
    /// need not rebuild it.
    pub payload: String,
}

/// Where a canary is, as the system's records say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Still in the queue: no worker took it.
    Waiting,
    /// A worker took it and runs it.
    Running {
        /// When it started, if the system records it.
        started_at: Option<SystemTime>,
    },
    /// Ran to the end.
    Finished {
        /// When it started, if the system records it.
        started_at: Option<SystemTime>,
        /// When it ended, if the system records it (else the probe takes the time it saw it).
        ended_at: Option<SystemTime>,
    },
    /// Raised, or was moved to a retry or dead set.
    Failed {
        /// The system's error text (the exception), as recorded; redacted by the probe.
        error: String,
        /// When it started, if recorded.
        started_at: Option<SystemTime>,
        /// When it failed, if recorded.
        ended_at: Option<SystemTime>,
    },
    /// Nowhere: not queued, not running, no record of an end (records expired, the queue was
    /// flushed). The probe fails the run and enqueues a new canary at the next.
    Missing,
}

/// One job system's canary jobs. Implementations must not panic on any data found in Redis:
/// unexpected data is a [`QueueError::Data`] naming the key, never a payload.
pub trait CanarySystem: Send + Sync + std::fmt::Debug + 'static {
    /// Which system this is.
    fn system(&self) -> System;

    /// The job as the system stores it, for `canary` (whose `payload` is still empty). Pure:
    /// no Redis access.
    fn prepare(&self, canary: &Canary) -> Result<String, QueueError>;

    /// Enqueues the prepared canary exactly as the system's own client would (one pipeline,
    /// atomic where the system's client is: MULTI/EXEC).
    fn enqueue<'a>(
        &'a self,
        conn: &'a mut MultiplexedConnection,
        canary: &'a Canary,
    ) -> BoxFuture<'a, Result<(), QueueError>>;

    /// Where the canary is now: one pipelined read.
    fn look<'a>(
        &'a self,
        conn: &'a mut MultiplexedConnection,
        canary: &'a Canary,
    ) -> BoxFuture<'a, Result<Seen, QueueError>>;

    /// Deletes everything canaryd's canary left (job hash, result, registry entries, the job
    /// still in a queue or a retry/dead set). Called once the canary is done with, whatever
    /// its state; must be harmless when some or all of it is already gone.
    fn clean<'a>(
        &'a self,
        conn: &'a mut MultiplexedConnection,
        canary: &'a Canary,
    ) -> BoxFuture<'a, Result<(), QueueError>>;
}

/// A Unix time in seconds (fractional) as a `SystemTime`; `None` when negative, not finite or
/// beyond what `SystemTime` holds (a damaged record).
pub fn from_unix_seconds(secs: f64) -> Option<SystemTime> {
    if !secs.is_finite() || !(0.0..=1.0e11).contains(&secs) {
        return None;
    }
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs_f64(secs))
}

/// A `SystemTime` as Unix seconds (fractional).
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
