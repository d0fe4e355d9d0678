//! RQ (Python): queue depths, registries, oldest-job time and worker counters, read from RQ's own
//! keys in two pipelined round trips.
//!
//! # What is read, and where RQ writes it (rq 2.12, `site-packages/rq/`)
//!
//! Every key below starts with `rq:` (the `prefix` option replaces it; RQ hard-codes `rq:` in
//! class attributes, so a different namespace means subclassed `Queue`/`Job`/`Worker` classes or
//! a key-prefixing proxy).
//!
//! | key | type | written by | read as |
//! |---|---|---|---|
//! | `rq:queues` | set of queue *keys* (`rq:queue:<name>`) | `Queue.enqueue_job` → `pipe.sadd(redis_queues_keys, self.key)` (`queue.py`) | queue discovery |
//! | `rq:queue:<name>` | list of job ids | `Queue.push_job_id`: `RPUSH` (`LPUSH` only for `at_front=True`); workers `BLPOP`/`LPOP` or `BLMOVE … LEFT` | `waiting` = `LLEN`; head (index 0) = oldest |
//! | `rq:queue:<name>:intermediate` | list | `Queue.lmove` moves a job here when a worker listens on one queue (`intermediate_queue.py`); removed in `prepare_job_execution` in the same transaction that adds it to `rq:wip` | added to `active` |
//! | `rq:job:<id>` | hash, field `enqueued_at` = `%Y-%m-%dT%H:%M:%S.%fZ` UTC | `Job.to_dict` with `utils.utcformat` (`job.py`, `utils.py`) | oldest enqueue time |
//! | `rq:wip:<name>` | zset (`StartedJobRegistry`, `registry.py`; the 1.x name was `rq:wip` too) | worker, just before running a job | `active` = `ZCARD` |
//! | `rq:scheduled:<name>` | zset (`ScheduledJobRegistry`) | `enqueue_at`/`enqueue_in`, retries with an interval | `scheduled` = `ZCARD` |
//! | `rq:failed:<name>` | zset (`FailedJobRegistry`, entries kept `DEFAULT_FAILURE_TTL` = 1 year) | worker on failure | `failed` = `ZCARD` |
//! | `rq:workers` | set of worker keys (`rq:worker:<name>`) | `worker_registration.register` at birth, `unregister` at death | worker discovery |
//! | `rq:worker:<name>` | hash: `state`, `successful_job_count`, `failed_job_count`, `last_heartbeat`, `death` | `BaseWorker.register_birth`, `set_state`, `increment_*_job_count`, `heartbeat`, `register_death` (`worker/base.py`) | workers, busy, processed, failed |
//!
//! Not reported: the per-queue worker sets `rq:workers:<name>` (workers are counted system-wide),
//! `rq:deferred:<name>` (jobs waiting for a dependency: no [`JobState`] means that,
//! and they are not a backlog a worker can drain), `rq:finished:<name>` and `rq:canceled:<name>`.
//!
//! # Round trips
//!
//! 1. Discovery: `SMEMBERS rq:workers`, plus `SMEMBERS rq:queues` when no queues are configured.
//! 2. Data: per queue `LLEN` ×2 and `ZCARD` ×3, one `HMGET` per worker, and one `EVAL` for the
//!    oldest jobs of all queues together.
//!
//! The oldest job's time needs the head job's id before its hash can be read, a third dependent
//! step. A small read-only Lua script ([`HEAD_ENQUEUED_AT`]) does `LINDEX <queue> 0` then
//! `HGET rq:job:<id> enqueued_at` inside Redis for every queue, so the bound holds whatever the
//! number of queues. RQ itself computes job keys inside Lua the same way (`queue.py`), and RQ does
//! not run on Redis Cluster, where undeclared keys would be refused.
//!
//! The script needs the `EVAL` permission (`@scripting`); a Redis that refuses it fails the read
//! with [`QueueError::Redis`].
//!
//! The head is the oldest job: jobs are appended with `RPUSH` and taken from the left. A job
//! enqueued with `at_front=True` jumps the line and makes the head younger than the oldest job.
//!
//! # Progress signal
//!
//! RQ keeps no queue-wide processed counter. Each live worker's hash counts the jobs it finished
//! (`successful_job_count`) and failed (`failed_job_count`); `processed` is the sum of both over
//! the live workers (processed includes failures, as in Sidekiq) and `failed` the sum of the
//! failures. Limits: the counters belong to a worker process, so the sum **drops** when a worker
//! stops (its hash leaves `rq:workers`) and starts again from zero in a new one — the probe
//! treats a decrease as a counter reset. With no worker the sum is 0 and stays flat, which is the
//! stalled-jobs signal. The finished registry was not chosen: it is trimmed after `result_ttl`
//! (500 s by default), and jobs with `result_ttl=0` never enter it.
//!
//! # Workers
//!
//! A worker counts when its key is in `rq:workers`, its hash still exists (RQ expires it
//! `worker_ttl + 60` s after the last heartbeat, 480 s by default) and has no `death` field. A
//! worker that stops cleanly leaves at once; one killed with SIGKILL stays counted until its hash
//! expires. `busy` counts the workers whose `state` is `busy`.
//!
//! # Unexpected data
//!
//! A queue list, registry or set of the wrong type fails the read with [`QueueError::Data`]
//! naming the key (RQ itself could not use that queue). A worker hash of the wrong type or with
//! unparsable counters is skipped; a head job that is missing or has no parsable `enqueued_at`
//! gives no oldest time for that queue.

use redis::aio::MultiplexedConnection;
use redis::Value;

use super::{reply, JobState, JobSystem, QueueError, QueueStats, Snapshot, System};
use crate::probe::BoxFuture;

/// The namespace RQ hard-codes in its class attributes.
pub const DEFAULT_PREFIX: &str = "rq:";

/// Reads, for every queue key in `KEYS`, the `enqueued_at` field of the job at the head of the
/// list (`ARGV[1]` is the job key prefix). Returns one entry per queue, `false` (nil) when the
/// queue is empty, the key has the wrong type or the job has no such field: `pcall` keeps one bad
/// key from failing the whole read, and `false` rather than `nil` keeps the reply array whole.
/// Sizes are bounded inside Redis: a job id over 1 KiB (RQ's are UUIDs) or an `enqueued_at` over
/// 64 bytes (RQ's are 27) gives `false` rather than a big reply.
pub const HEAD_ENQUEUED_AT: &str = r#"
local out = {}
for i, key in ipairs(KEYS) do
  local at = false
  local head = redis.pcall('LINDEX', key, 0)
  if type(head) == 'string' and #head <= 1024 then
    local v = redis.pcall('HGET', ARGV[1] .. head, 'enqueued_at')
    if type(v) == 'string' and #v <= 64 then at = v end
  end
  out[i] = at
end
return out
"#;

/// What an RQ check reads; the lead's `QueueOptions` maps onto this.
#[derive(Debug, Clone, Default)]
pub struct RqOptions {
    /// Queue names (as given to `Queue(name)`); `None` discovers them from `rq:queues`.
    pub queues: Option<Vec<String>>,
    /// Replaces the `rq:` namespace at the start of every key; `None` is `rq:`.
    pub prefix: Option<String>,
}

/// The RQ layout reader.
#[derive(Debug, Clone)]
pub struct Rq {
    /// Configured queue names, in configured order; `None` discovers.
    queues: Option<Vec<String>>,
    /// Namespace of every key, `rq:` unless configured.
    prefix: String,
}

impl Rq {
    /// A reader for the queues and namespace in `opts`.
    pub fn new(opts: &RqOptions) -> Rq {
        Rq {
            queues: opts.queues.clone(),
            prefix: opts
                .prefix
                .clone()
                .unwrap_or_else(|| DEFAULT_PREFIX.to_string()),
        }
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// `rq:queue:<name>`, what `Queue.key` is.
    fn queue_key(&self, name: &str) -> String {
        format!("{}queue:{name}", self.prefix)
    }

    async fn read(&self, conn: &mut MultiplexedConnection) -> Result<Snapshot, QueueError> {
        // Round trip 1: discovery.
        let queues_key = self.key("queues");
        let workers_key = self.key("workers");
        let mut discovery = redis::pipe();
        discovery.ignore_errors();
        if self.queues.is_none() {
            discovery.cmd("SMEMBERS").arg(&queues_key);
        }
        discovery.cmd("SMEMBERS").arg(&workers_key);
        let sent = if self.queues.is_none() { 2 } else { 1 };
        let mut replies = Replies::new(discovery.query_async(conn).await?, sent)?;
        let mut discovered = None;
        let queues = match &self.queues {
            Some(names) => names.clone(),
            None => {
                let queue_prefix = self.queue_key("");
                let mut names: Vec<String> = members(replies.next(&queues_key)?, &queues_key)?
                    .into_iter()
                    .filter_map(|k| k.strip_prefix(&queue_prefix).map(str::to_string))
                    .filter(|n| !n.is_empty())
                    .collect();
                names.sort();
                names.dedup();
                discovered = super::cap_discovered(&mut names);
                names
            }
        };
        let mut workers = members(replies.next(&workers_key)?, &workers_key)?;
        workers.sort();
        workers.dedup();

        if queues.is_empty() && workers.is_empty() {
            // Nothing to read (a Redis RQ has not used yet): no second round trip.
            return Ok(Snapshot {
                queues: Vec::new(),
                processed: Some(0),
                failed: Some(0),
                workers: Some(0),
                busy: Some(0),
                discovered: None,
            });
        }

        // Round trip 2: everything else.
        let mut data = redis::pipe();
        data.ignore_errors();
        let mut per_queue = Vec::with_capacity(queues.len());
        for name in &queues {
            let keys = QueueKeys {
                list: self.queue_key(name),
                intermediate: format!("{}:intermediate", self.queue_key(name)),
                wip: self.key(&format!("wip:{name}")),
                scheduled: self.key(&format!("scheduled:{name}")),
                failed: self.key(&format!("failed:{name}")),
            };
            data.cmd("LLEN").arg(&keys.list);
            data.cmd("LLEN").arg(&keys.intermediate);
            data.cmd("ZCARD").arg(&keys.wip);
            data.cmd("ZCARD").arg(&keys.scheduled);
            data.cmd("ZCARD").arg(&keys.failed);
            per_queue.push(keys);
        }
        for worker in &workers {
            data.cmd("HMGET").arg(worker).arg(&WORKER_FIELDS[..]);
        }
        if !queues.is_empty() {
            data.cmd("EVAL")
                .arg(HEAD_ENQUEUED_AT)
                .arg(per_queue.len())
                .arg(per_queue.iter().map(|k| &k.list).collect::<Vec<_>>())
                .arg(self.key("job:"));
        }
        let sent = 5 * per_queue.len() + workers.len() + usize::from(!queues.is_empty());
        let mut replies = Replies::new(data.query_async(conn).await?, sent)?;

        let mut stats = Vec::with_capacity(queues.len());
        for (name, keys) in queues.iter().zip(&per_queue) {
            let waiting = count(replies.next(&keys.list)?, &keys.list)?;
            let intermediate = count(replies.next(&keys.intermediate)?, &keys.intermediate)?;
            let wip = count(replies.next(&keys.wip)?, &keys.wip)?;
            let scheduled = count(replies.next(&keys.scheduled)?, &keys.scheduled)?;
            let failed = count(replies.next(&keys.failed)?, &keys.failed)?;
            stats.push(QueueStats {
                name: name.clone(),
                depths: vec![
                    (JobState::Waiting, waiting),
                    (JobState::Active, wip.saturating_add(intermediate)),
                    (JobState::Scheduled, scheduled),
                    (JobState::Failed, failed),
                ],
                oldest_enqueued_at: None,
            });
        }

        let mut tally = WorkerTally::default();
        for worker in &workers {
            tally.add(replies.next(worker)?, worker)?;
        }

        if !queues.is_empty() {
            match replies.next("the oldest-job script")? {
                Value::Array(heads) if heads.len() == stats.len() => {
                    for (queue, head) in stats.iter_mut().zip(heads) {
                        queue.oldest_enqueued_at = match head {
                            Value::Nil | Value::Boolean(false) => None,
                            Value::BulkString(_) => text(&head).as_deref().and_then(parse_rq_time),
                            _ => {
                                return Err(QueueError::Data(
                                    "rq: unexpected reply from the oldest-job script (EVAL)".into(),
                                ))
                            }
                        };
                    }
                }
                // The script reads with `pcall`, so no data makes it fail: an error here is
                // Redis refusing it (an ACL without EVAL, scripting disabled), said as such
                // rather than hidden behind ages that are never reported.
                Value::ServerError(err) => return Err(QueueError::Redis(err.into())),
                _ => {
                    return Err(QueueError::Data(
                        "rq: unexpected reply from the oldest-job script (EVAL)".into(),
                    ))
                }
            }
        }

        Ok(Snapshot {
            queues: stats,
            processed: Some(tally.successful.saturating_add(tally.failed)),
            failed: Some(tally.failed),
            workers: Some(tally.live),
            busy: Some(tally.busy),
            discovered,
        })
    }
}

impl JobSystem for Rq {
    fn system(&self) -> System {
        System::Rq
    }

    fn collect<'a>(
        &'a self,
        conn: &'a mut MultiplexedConnection,
    ) -> BoxFuture<'a, Result<Snapshot, QueueError>> {
        Box::pin(self.read(conn))
    }
}

/// The keys of one queue read in the data pipeline, kept to name them in errors.
struct QueueKeys {
    list: String,
    intermediate: String,
    wip: String,
    scheduled: String,
    failed: String,
}

/// The worker hash fields read, in this order.
const WORKER_FIELDS: [&str; 5] = [
    "last_heartbeat",
    "death",
    "state",
    "successful_job_count",
    "failed_job_count",
];

/// Sums over the live workers.
#[derive(Default)]
struct WorkerTally {
    live: u64,
    busy: u64,
    successful: u64,
    failed: u64,
}

impl WorkerTally {
    /// Adds one worker's `HMGET` reply; a hash that is not a live RQ worker's is skipped, a
    /// reply that no `HMGET` gives (not an array of five values) fails the read.
    fn add(&mut self, reply: Value, key: &str) -> Result<(), QueueError> {
        let bad = || {
            QueueError::Data(format!(
                "rq: unexpected reply to HMGET {}",
                reply::show(key.as_bytes())
            ))
        };
        let fields = match reply {
            Value::Array(fields) => fields,
            // A key of the wrong type: not a worker RQ wrote; skipped as the docs say.
            Value::ServerError(e) if e.code() == "WRONGTYPE" => return Ok(()),
            Value::ServerError(e) => return Err(QueueError::Redis(e.into())),
            _ => return Err(bad()),
        };
        let [heartbeat, death, state, successful, failed] = fields.as_slice() else {
            return Err(bad());
        };
        if fields.iter().any(|f| {
            !matches!(
                f,
                Value::Nil | Value::BulkString(_) | Value::SimpleString(_)
            )
        }) {
            return Err(bad());
        }
        // An expired hash reads as all nils; a stopped worker has `death` for its last 60 s.
        if matches!(heartbeat, Value::Nil) || !matches!(death, Value::Nil) {
            return Ok(());
        }
        // A counter RQ would not write (not a non-negative integer) makes the hash suspect.
        let parse = |v: &Value| match v {
            Value::Nil => Some(0),
            other => text(other)?.trim().parse::<u64>().ok(),
        };
        let (Some(successful), Some(failed)) = (parse(successful), parse(failed)) else {
            return Ok(());
        };
        self.live += 1;
        if text(state).as_deref() == Some("busy") {
            self.busy += 1;
        }
        self.successful = self.successful.saturating_add(successful);
        self.failed = self.failed.saturating_add(failed);
        Ok(())
    }
}

/// The replies of one pipeline, taken in the order the commands were added.
struct Replies(std::vec::IntoIter<Value>);

impl Replies {
    /// `sent` is the number of commands: a pipeline answered with another number of replies
    /// is not Redis, and fails the read rather than be read as "nothing there".
    fn new(values: Vec<Value>, sent: usize) -> Result<Replies, QueueError> {
        if values.len() != sent {
            return Err(QueueError::Data(format!(
                "rq: pipeline answered {} replies to {sent} commands",
                values.len()
            )));
        }
        Ok(Replies(values.into_iter()))
    }

    /// The next reply; `what` names the key if Redis answered fewer replies than commands.
    fn next(&mut self, what: &str) -> Result<Value, QueueError> {
        self.0
            .next()
            .ok_or_else(|| QueueError::Data(format!("rq: no reply for {}", what.escape_debug())))
    }
}

/// An `LLEN`/`ZCARD`/`HLEN` reply, error replies included.
fn count(reply: Value, key: &str) -> Result<u64, QueueError> {
    reply::length(reply::checked(reply, key.as_bytes())?, key.as_bytes())
}

/// An `SMEMBERS` reply (an array in RESP2, a set in RESP3), sorted; members that are not text
/// are skipped.
fn members(reply: Value, key: &str) -> Result<Vec<String>, QueueError> {
    reply::text_members(reply, key.as_bytes())
}

/// A string reply as UTF-8 text.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

/// Parses RQ's `utcformat` (`2026-11-21T06:20:21.117990Z`) or the seconds-only format of older
/// jobs that `utils.utcparse` also accepts, into Unix seconds.
pub fn parse_rq_time(s: &str) -> Option<f64> {
    let naive = s.strip_suffix('Z')?;
    // chrono would take a signed year (`+026-...`); RQ writes four digits.
    if !naive.bytes().take(4).all(|b| b.is_ascii_digit()) {
        return None;
    }
    // `%.f` takes an optional fraction; chrono checks ranges (month 13, Feb 30) itself.
    let t = chrono::NaiveDateTime::parse_from_str(naive, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    let utc = t.and_utc();
    Some(utc.timestamp() as f64 + f64::from(utc.timestamp_subsec_nanos()) / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_timestamps_rq_writes() {
        assert_eq!(parse_rq_time("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(
            parse_rq_time("2026-11-21T06:20:21.500000Z"),
            Some(1_795_242_021.5)
        );
        assert_eq!(parse_rq_time("2000-02-29T12:00:00Z"), Some(951_825_600.0));
    }

    #[test]
    fn rejects_what_rq_would_not_write() {
        for bad in [
            "",
            "2026-11-21",
            "2026-11-21T06:20:21",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-21T24:00:00Z",
            "2026-11-21T06:20:21.Z",
            "+026-11-21T06:20:21Z",
            "２０２６-11-21T06:20:21Z",
        ] {
            assert_eq!(parse_rq_time(bad), None, "{bad:?}");
        }
    }
}
