//! The `queue` kind: background-job health read from a job system's own Redis layout.
//!
//! One file per job system implements [`JobSystem`]: it knows the system's keys and turns one
//! pipelined read into a [`Snapshot`]. Everything else (the shared connection per Redis URL,
//! timeouts, `unreachable`, rates between runs, oldest-job ages, metrics and alert variables) is
//! done here once for every system.
//!
//! Round trips: a system reads everything for one check with at most two pipelines, whatever the
//! number of queues — one to discover (queue names, worker names) and one for the data.

pub mod budget;
pub mod bullmq;
pub mod celery;
pub mod conn;
pub mod def;
pub mod generic;
mod probe;
mod reply;
pub mod resque;
pub mod rq;
pub mod sidekiq;

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;

use super::BoxFuture;
pub use def::QueueCheck;

pub use probe::QueueProbe;

/// Which job system's layout a check reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum System {
    /// Sidekiq (Ruby).
    Sidekiq,
    /// Celery with the Redis broker (Python).
    Celery,
    /// RQ (Python).
    Rq,
    /// BullMQ (Node.js).
    Bullmq,
    /// Resque (Ruby).
    Resque,
    /// Plain Redis keys (lists, sorted sets, sets, streams, hashes).
    Redis,
}

impl System {
    /// The `system` label value and the config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            System::Sidekiq => "sidekiq",
            System::Celery => "celery",
            System::Rq => "rq",
            System::Bullmq => "bullmq",
            System::Resque => "resque",
            System::Redis => "redis",
        }
    }
}

/// The state a job is in, the `state` label of `canary_queue_depth`. A fixed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobState {
    /// Ready to run, waiting for a worker (what `depth` sums).
    Waiting,
    /// Due at a later time (Sidekiq `schedule`, RQ scheduled registry).
    Scheduled,
    /// Failed and waiting for a retry (Sidekiq `retry`).
    Retry,
    /// Gave up on (Sidekiq `dead`).
    Dead,
    /// Taken by a worker and running (or reserved and unacknowledged).
    Active,
    /// Delayed (BullMQ `delayed`).
    Delayed,
    /// Failed and kept (RQ failed registry, BullMQ `failed`, Resque `failed`).
    Failed,
}

impl JobState {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Waiting => "waiting",
            JobState::Scheduled => "scheduled",
            JobState::Retry => "retry",
            JobState::Dead => "dead",
            JobState::Active => "active",
            JobState::Delayed => "delayed",
            JobState::Failed => "failed",
        }
    }
}

/// The `queue` label for states a system keeps for all queues together (Sidekiq's `retry`,
/// `schedule` and `dead` sets, Resque's `failed` list).
pub const ALL_QUEUES: &str = "_all";

/// What one queue looked like in one read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueStats {
    /// The queue's name as the job system spells it (or [`ALL_QUEUES`]).
    pub name: String,
    /// Job counts by state. A state the system does not keep is absent, not zero.
    pub depths: Vec<(JobState, u64)>,
    /// When the oldest waiting job was enqueued, in Unix seconds (fractional), if there is one
    /// and the system records it.
    pub oldest_enqueued_at: Option<f64>,
}

impl QueueStats {
    /// The count in one state, if the system reported it.
    pub fn depth(&self, state: JobState) -> Option<u64> {
        self.depths
            .iter()
            .find(|(s, _)| *s == state)
            .map(|(_, n)| *n)
    }
}

/// Everything one read found. Counters are the system's own cumulative totals; the probe turns
/// them into per-second rates between runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Per-queue figures, in a stable order (configured order, or sorted when discovered).
    pub queues: Vec<QueueStats>,
    /// Jobs processed since the system started counting, if it keeps such a counter (or an
    /// honest stand-in: see the system's module docs). `None`: the probe derives progress from
    /// the waiting depth draining.
    pub processed: Option<u64>,
    /// Jobs failed since the system started counting, if it keeps such a counter.
    pub failed: Option<u64>,
    /// Live workers (processes or threads, as the system counts them), if it records them.
    pub workers: Option<u64>,
    /// Of those, how many are running a job now.
    pub busy: Option<u64>,
    /// How many queues discovery found when that was more than [`MAX_DISCOVERED_QUEUES`] (only
    /// the first that many, in sorted order, were read); `None` when nothing was left out.
    pub discovered: Option<u64>,
}

/// The most queues one check reads when it discovers them (no `queues:` configured): 1,000, the
/// first in sorted order. More are reported (`Snapshot::discovered`, the run's message) but not
/// read, so a Redis holding 100,000 queue names costs one sorted list of names, not 100,000
/// reads.
pub const MAX_DISCOVERED_QUEUES: usize = 1_000;

/// Keeps the first [`MAX_DISCOVERED_QUEUES`] of sorted, deduplicated discovered names; returns
/// how many there were when some were left out.
pub(crate) fn cap_discovered<T>(names: &mut Vec<T>) -> Option<u64> {
    if names.len() <= MAX_DISCOVERED_QUEUES {
        return None;
    }
    let found = names.len() as u64;
    names.truncate(MAX_DISCOVERED_QUEUES);
    Some(found)
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis answered with an error or the connection failed mid-read.
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    /// A key held data the system would not have written (wrong type, unparsable job).
    /// The message names the key, never a job's payload.
    #[error("{0}")]
    Data(String),
}

/// One job system's Redis layout.
pub trait JobSystem: Send + Sync + 'static {
    /// Which system this is.
    fn system(&self) -> System;

    /// Reads one snapshot with at most two pipelined round trips. Must not panic on any data
    /// found in Redis: unexpected data is a [`QueueError::Data`] or is skipped.
    fn collect<'a>(
        &'a self,
        conn: &'a mut MultiplexedConnection,
    ) -> BoxFuture<'a, Result<Snapshot, QueueError>>;
}

/// What one successful run of a queue check found, for metrics, alert variables and the API.
#[derive(Debug, Clone)]
pub struct QueueReport {
    /// Which system was read.
    pub system: System,
    /// The raw read.
    pub snapshot: Snapshot,
    /// Age in seconds of each queue's oldest waiting job (same order as `snapshot.queues`).
    pub oldest_age_seconds: Vec<Option<f64>>,
    /// Jobs processed since the previous run: from the system's counter when it keeps one,
    /// else what drained from the waiting depth. `None` on the first run.
    pub processed_delta: Option<u64>,
    /// Jobs failed since the previous run, when the system counts failures.
    pub failed_delta: Option<u64>,
    /// Time since the previous successful read.
    pub since_previous: Option<Duration>,
}

/// The job-system reader for a validated queue check.
pub fn build_system(check: &QueueCheck) -> Result<Arc<dyn JobSystem>, String> {
    match check.system {
        System::Redis => Ok(Arc::new(generic::GenericRedis::new(
            check.keys.clone(),
            check.patterns.clone(),
        ))),
        System::Bullmq => Ok(Arc::new(bullmq::Bullmq::new(&bullmq::BullmqOptions {
            queues: check.queues.clone(),
            prefix: check.prefix.clone(),
        }))),
        System::Rq => Ok(Arc::new(rq::Rq::new(&rq::RqOptions {
            queues: check.queues.clone(),
            prefix: check.prefix.clone(),
        }))),
        System::Celery => Ok(Arc::new(celery::Celery::new(&celery::CeleryOptions {
            queues: check.queues.clone(),
            prefix: check.prefix.clone(),
            priority_steps: Some(check.priority_steps.clone()),
            sep: Some(check.priority_separator.clone()),
            ..Default::default()
        }))),
        System::Sidekiq => Ok(Arc::new(sidekiq::Sidekiq::new(&sidekiq::SidekiqOptions {
            queues: check.queues.clone(),
            prefix: check.prefix.clone(),
            ..Default::default()
        }))),
        System::Resque => Ok(Arc::new(resque::Resque::new(&resque::ResqueOptions {
            queues: check.queues.clone(),
            prefix: check.prefix.clone(),
            ..Default::default()
        }))),
    }
}

/// The probe for a validated queue check: its system's reader on the shared connection for its
/// URL. Nothing is dialled here.
pub fn build_probe(check: &QueueCheck) -> Result<QueueProbe, String> {
    let system = build_system(check)?;
    let url = check
        .redis
        .render(|_| None)
        .map_err(|_| "the redis URL references a run-time variable".to_string())?;
    let conn = conn::shared(&url, &check.tls, check.connect_timeout)?;
    Ok(QueueProbe::new(system, conn))
}
