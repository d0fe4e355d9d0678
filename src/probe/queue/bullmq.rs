//! BullMQ (Node.js): queue depths, the oldest waiting job, completed/failed counts and workers,
//! read from BullMQ's own Redis layout in one pipelined round trip (two when the queues are
//! discovered).
//!
//! # The layout (BullMQ 5.x, checked against 5.81.5)
//!
//! Every key of a queue is `<prefix>:<queue>:<type>` (`classes/queue-keys.js`, `QueueKeys::toKey`;
//! the prefix defaults to `bull`, and a queue name cannot contain `:`, `classes/queue-base.js`).
//! What this module reads, and where BullMQ writes it:
//!
//! | key | type | read as | written by |
//! |---|---|---|---|
//! | `wait` | list | waiting | `commands/addStandardJob-9.lua` (`LPUSH`, or `RPUSH` for `lifo`); workers take from the right (`moveToActive-11.lua`, `RPOPLPUSH wait active`) |
//! | `paused` | list | waiting | a paused queue's jobs: `pause-7.lua` renames `wait` to `paused` and sets `meta.paused`; `includes/getTargetQueueList.lua` adds to it while paused |
//! | `prioritized` | sorted set | waiting | `addPrioritizedJob-9.lua`, score `priority * 2^32 + counter` (`includes/getPriorityScore.lua`), also while paused |
//! | `active` | list | active | `moveToActive-11.lua`; removed by `moveToFinished-14.lua` |
//! | `delayed` | sorted set | delayed | `addDelayedJob-6.lua`, and retries with backoff (`moveToDelayed-12.lua`) |
//! | `failed` | sorted set | failed (depth), failed counter fallback | `moveToFinished-14.lua` (`ZADD` unless `removeOnFail` removes it) |
//! | `completed` | sorted set | processed counter fallback | `moveToFinished-14.lua` (`ZADD` unless `removeOnComplete` removes it) |
//! | `metrics:completed`, `metrics:failed` | hash, field `count` | processed / failed counters | `includes/collectMetrics.lua` (`HINCRBY count 1` per finished job), only when the worker runs with the `metrics` option |
//! | `meta` | hash | queue discovery | the `Queue` constructor (`classes/queue.js`, `HSET meta` with `version`), and `includes/getOrSetMaxEvents.lua` on every add |
//! | `<prefix>:<queue>:<jobId>` | hash: `timestamp`, `processedOn`, `opts` | oldest waiting job | `includes/storeJob.lua` (`timestamp` = `Queue.add` time, ms), `includes/prepareJobForProcessing.lua` (`processedOn`) |
//!
//! `getCounts-1.lua` and `classes/queue-getters.js` count the same way: `waiting` is `wait` plus
//! `paused` (BullMQ's `sanitizeJobTypes`), lists by `LLEN`, sets by `ZCARD`. (`getCounts` also
//! discounts a `0:…` marker at the end of `wait`, a BullMQ 4 leftover no 5.x release writes;
//! such a list reads one job too many here until a BullMQ 5 worker consumes it.) Jobs in
//! `waiting-children` (parents of unfinished flows) are not ready to run and are not reported.
//!
//! # What the snapshot holds
//!
//! - **Waiting** = `LLEN wait + LLEN paused + ZCARD prioritized`. A paused queue's jobs count as
//!   waiting: nothing runs them, which is what `depth > 0 && processed_rate == 0` should catch.
//!   **Active**, **Delayed**, **Failed**: `LLEN active`, `ZCARD delayed`, `ZCARD failed`.
//! - **Oldest waiting job**: the candidates are both ends of `wait` and of `paused` and the head of
//!   every priority level in `prioritized` (within a level jobs run in insertion order; up to
//!   [`PRIORITY_LEVELS`] levels, highest priority first). The right end of a list is the next job
//!   to run, the oldest one when jobs are added FIFO; with `lifo` jobs (pushed to the right) the
//!   oldest is at the left end. A list mixing both can hide its oldest job in the middle: then
//!   the older of the two ends is reported. A job's enqueue time is `timestamp + opts.delay` (a delayed job
//!   became ready when its delay ran out), or `processedOn` when later (a retried or stalled job
//!   waits again since its last attempt started). BullMQ keeps no "entered wait" time, so a job
//!   retried with a backoff counts from its last attempt's start, not from the end of its backoff.
//! - **processed** (the progress signal), summed over the queues, per queue: the `count` of
//!   `metrics:completed` when it exists, else `ZCARD completed`.
//!   - `metrics:completed` is an exact cumulative count of completed jobs, but BullMQ writes it only
//!     from workers started with `metrics: { maxDataPoints }`; jobs finished by a worker without
//!     that option are not counted.
//!   - `ZCARD completed` only grows while BullMQ keeps finished jobs (the default). With
//!     `removeOnComplete: true` it stays 0, and with `removeOnComplete: { count: N }` or
//!     `{ age }` it plateaus: processed then looks flat while jobs are running, and a
//!     `processed_rate == 0` alert can fire on a healthy queue. Enable the workers' `metrics`
//!     option for such queues.
//! - **failed**: the same per queue with `metrics:failed` and `ZCARD failed` (`removeOnFail`
//!   trims it). Both count jobs that failed for good, not attempts that will be retried.
//! - **workers**: BullMQ names each `Worker`'s blocking connection `<prefix>:<base64(queue)>`, or
//!   `<prefix>:<base64(queue)>:w:<name>` with the `name` option (`classes/worker.js`,
//!   `QueueBase::clientName`); `Queue::getWorkers` finds them in `CLIENT LIST`, and so does this
//!   module, counting one per `Worker` instance (whatever its `concurrency`) of the read queues.
//!   A worker that stops or dies closes its connection and disappears at once; one whose host
//!   vanishes stays until Redis drops the connection (`tcp-keepalive`, 300 s by default).
//!   `CLIENT LIST TYPE normal` returns every ordinary client's line (~300 bytes each): fine for
//!   hundreds of clients, some MB for tens of thousands. When Redis refuses it (ACL, managed Redis
//!   without `CLIENT`), `workers` is `None` and the rest of the snapshot stands.
//! - **busy**: `None`. BullMQ records which jobs run (`active`, reported per queue) but not which
//!   worker runs them, and one worker runs up to `concurrency` jobs at once.
//!
//! # Round trips
//!
//! With configured queues: **one** pipeline — nine counts per queue, one `EVAL` for the oldest
//! job of every queue (the job's hash is named by an id read from a list, so reading it needs
//! a second step; the script does both steps server side, see [`OLDEST_SCRIPT`]: per queue four
//! `LINDEX`, one `ZRANGE` and one `ZRANGEBYSCORE` per priority level, one `HMGET` per candidate),
//! and one `CLIENT LIST`. The pipeline is not a transaction: a job moving between states during the read
//! may be seen in both or neither.
//!
//! Without configured queues, discovery comes first. BullMQ keeps no registry of queues, so this
//! module scans for `<prefix>:*:meta` keys (`SCAN … COUNT 10000`). A SCAN cursor needs one call
//! per step, so discovery takes one round trip per 10,000 keys in the database, at most
//! [`MAX_SCAN_CALLS`]; past that the read fails and asks for the queues to be configured. Each
//! job is a key, so a database that keeps many finished jobs needs several calls: configure the
//! queues to keep every read to one round trip. A queue appears once the application created a
//! `Queue` object for it or added a job to it (both write `meta`; a `Worker` alone does not), and
//! disappears with `Queue.obliterate`. Workers are counted for the discovered queues only.
//!
//! # Unexpected data
//!
//! A state key of the wrong type (a `wait` that is not a list, …) or a count that is not a
//! number is a [`QueueError::Data`] naming the key: BullMQ itself would fail on that queue. A
//! job hash that is missing, not a hash, or holds a non-numeric `timestamp` or junk `opts` is
//! skipped as an oldest-job candidate, and so is one whose `timestamp` or `processedOn` is over
//! 64 bytes or whose `opts` is over 64 KiB (the script drops such values inside Redis, so a
//! broken job cannot make a big reply). Job payloads are never read.

use std::collections::{BTreeSet, HashSet};

use redis::aio::MultiplexedConnection;
use redis::Value;

use super::{JobState, JobSystem, QueueError, QueueStats, Snapshot, System};
use crate::probe::BoxFuture;

/// BullMQ's default key prefix (`QueueKeys` constructor, `QueueBaseOptions.prefix`).
pub const DEFAULT_PREFIX: &str = "bull";

/// Priority levels whose head job is considered for the oldest waiting job, highest priority
/// (lowest number) first. Each level costs one `ZRANGEBYSCORE … LIMIT 0 1` in the script.
pub const PRIORITY_LEVELS: u32 = 64;

/// How many `SCAN` calls queue discovery may make before it gives up.
pub const MAX_SCAN_CALLS: u32 = 100;

/// Keys examined per `SCAN` call (a hint to Redis): large, so that discovery over a database of
/// a few hundred thousand keys stays a handful of calls, each a few milliseconds of server time.
const SCAN_COUNT: u32 = 10_000;

/// What a `bullmq` check reads. The lead maps the check's `queue:` configuration onto this.
#[derive(Debug, Clone, Default)]
pub struct BullmqOptions {
    /// Queue names as given to `new Queue(name)`. `None`: discover every queue under the prefix.
    pub queues: Option<Vec<String>>,
    /// The `prefix` option of the application's queues and workers; `None`: `bull`.
    pub prefix: Option<String>,
}

/// The BullMQ layout reader.
#[derive(Debug, Clone)]
pub struct Bullmq {
    /// Configured queues, read in this order; `None` discovers them on every read so that new
    /// queues show up without a reload.
    queues: Option<Vec<String>>,
    /// Key prefix, the first segment of every key and worker connection name.
    prefix: String,
}

/// The lengths read per queue, in pipeline order: (command, key suffix).
const LENGTHS: [(&str, &str); 7] = [
    ("LLEN", "wait"),
    ("LLEN", "paused"),
    ("ZCARD", "prioritized"),
    ("LLEN", "active"),
    ("ZCARD", "delayed"),
    ("ZCARD", "failed"),
    ("ZCARD", "completed"),
];

/// BullMQ's metrics hashes, read per queue after the [`LENGTHS`] as `HGET <key> count`.
const METRICS: [&str; 2] = ["metrics:completed", "metrics:failed"];

/// Pipeline commands per queue.
const PER_QUEUE: usize = LENGTHS.len() + METRICS.len();

/// Finds the oldest-waiting-job candidates of every queue in one server-side step, since a
/// job's hash is named by an id that first has to be read from a list.
///
/// `KEYS`: per queue `wait`, `paused`, `prioritized`. `ARGV[1]`: how many priority levels to
/// visit; `ARGV[1 + i]`: queue i's job key prefix (`<prefix>:<queue>:`). Returns per queue a
/// flat list of `timestamp, processedOn, opts` per candidate job (nil where a field is missing).
/// Every call is `redis.pcall` and anything unexpected (wrong key type, non-numeric score) ends
/// that part of the search: wrong types are reported by the plain counts instead.
///
/// Priority levels: a prioritized job's score is `priority * 2^32 + insertion counter`
/// (`includes/getPriorityScore.lua`), so the lowest score of a level is its oldest job and the
/// next level starts at the next multiple of 2^32. Scores stay below 2^53 for BullMQ's maximum
/// priority (2^21), so `%.0f` prints them exactly.
///
/// The job keys are built from `ARGV`, as BullMQ's own scripts do (`includes/storeJob.lua`):
/// they share the queue's prefix and so its hash slot.
pub const OLDEST_SCRIPT: &str = r#"
local levels = tonumber(ARGV[1]) or 0
local result = {}
for q = 1, #KEYS / 3 do
  local ids = {}
  for k = 3 * q - 2, 3 * q - 1 do
    for _, index in ipairs({-1, 0}) do
      local id = redis.pcall('LINDEX', KEYS[k], index)
      if type(id) == 'string' then ids[#ids + 1] = id end
    end
  end
  local head = redis.pcall('ZRANGE', KEYS[3 * q], 0, 0, 'WITHSCORES')
  local visited = 0
  while visited < levels and type(head) == 'table' and head.err == nil and #head == 2 do
    ids[#ids + 1] = head[1]
    visited = visited + 1
    local score = tonumber(head[2])
    if score == nil then break end
    local nextLevel = (math.floor(score / 4294967296) + 1) * 4294967296
    -- An infinite score, or one too large for the next level to be a different number.
    if not (nextLevel > score) then break end
    head = redis.pcall('ZRANGEBYSCORE', KEYS[3 * q], string.format('%.0f', nextLevel), '+inf',
      'WITHSCORES', 'LIMIT', 0, 1)
  end
  local fields = {}
  for _, id in ipairs(ids) do
    local job = redis.pcall('HMGET', ARGV[1 + q] .. id, 'timestamp', 'processedOn', 'opts')
    if type(job) == 'table' and job.err == nil then
      -- Bounded inside Redis: a timestamp is a dozen digits, opts a small JSON object; longer
      -- values (a hostile or broken job) are dropped rather than sent.
      for f = 1, 3 do
        local v = job[f]
        local max = 64
        if f == 3 then max = 65536 end
        if type(v) == 'string' and #v > max then v = false end
        fields[#fields + 1] = v
      end
    end
  end
  result[q] = fields
end
return result
"#;

impl Bullmq {
    /// A reader for the given queues (or all, discovered) under the given prefix.
    pub fn new(opts: &BullmqOptions) -> Bullmq {
        Bullmq {
            queues: opts.queues.clone(),
            prefix: opts
                .prefix
                .clone()
                .unwrap_or_else(|| DEFAULT_PREFIX.to_string()),
        }
    }

    /// `<prefix>:<queue>:<suffix>`, BullMQ's `QueueKeys::toKey`.
    fn key(&self, queue: &str, suffix: &str) -> String {
        format!("{}:{queue}:{suffix}", self.prefix)
    }

    /// Every queue with a `meta` key under the prefix, sorted.
    async fn discover(&self, conn: &mut MultiplexedConnection) -> Result<Vec<String>, QueueError> {
        let pattern = format!("{}:*:meta", glob_escape(&self.prefix));
        let mut names = BTreeSet::new();
        let mut cursor: u64 = 0;
        for _ in 0..MAX_SCAN_CALLS {
            let reply: Value = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(conn)
                .await?;
            let (next, keys) = super::reply::scan(reply)?;
            names.extend(keys.iter().filter_map(|k| self.queue_of_meta_key(k)));
            if next == 0 {
                return Ok(names.into_iter().collect());
            }
            cursor = next;
        }
        Err(QueueError::Data(format!(
            "discovering BullMQ queues under prefix {:?} did not finish within {MAX_SCAN_CALLS} \
             SCAN calls ({} keys examined): list the check's queues to skip discovery",
            self.prefix,
            u64::from(MAX_SCAN_CALLS) * u64::from(SCAN_COUNT),
        )))
    }

    /// The queue name in `<prefix>:<queue>:meta`, if the key is one BullMQ could have written
    /// (a name is never empty and never contains `:`).
    fn queue_of_meta_key(&self, key: &[u8]) -> Option<String> {
        let key = std::str::from_utf8(key).ok()?;
        let name = key
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(':')?
            .strip_suffix(":meta")?;
        (!name.is_empty() && !name.contains(':')).then(|| name.to_string())
    }

    /// The data pipeline: per queue the [`LENGTHS`] and [`METRICS`], then one [`OLDEST_SCRIPT`] for all queues,
    /// then `CLIENT LIST`.
    fn data_pipeline(&self, queues: &[String]) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        // Per-command results: a wrong-typed key is reported by name, and a refused CLIENT LIST
        // only loses the worker count.
        pipe.ignore_errors();
        for queue in queues {
            for (command, suffix) in LENGTHS {
                pipe.cmd(command).arg(self.key(queue, suffix));
            }
            for suffix in METRICS {
                pipe.cmd("HGET").arg(self.key(queue, suffix)).arg("count");
            }
        }
        let eval = pipe.cmd("EVAL").arg(OLDEST_SCRIPT).arg(queues.len() * 3);
        for queue in queues {
            for suffix in ["wait", "paused", "prioritized"] {
                eval.arg(self.key(queue, suffix));
            }
        }
        eval.arg(PRIORITY_LEVELS);
        for queue in queues {
            eval.arg(self.key(queue, ""));
        }
        pipe.cmd("CLIENT").arg("LIST").arg("TYPE").arg("normal");
        pipe
    }

    async fn read(&self, conn: &mut MultiplexedConnection) -> Result<Snapshot, QueueError> {
        let found;
        let mut discovered = None;
        let queues = match &self.queues {
            Some(queues) => queues.as_slice(),
            None => {
                let mut names = self.discover(conn).await?;
                discovered = super::cap_discovered(&mut names);
                found = names;
                found.as_slice()
            }
        };
        let replies: Vec<Value> = self.data_pipeline(queues).query_async(conn).await?;
        let n_counts = queues.len() * PER_QUEUE;
        let (counts, rest) = replies.split_at(replies.len().min(n_counts));
        let [oldest, clients] = rest else {
            return Err(QueueError::Data(format!(
                "Redis answered {} replies to a pipeline of {} commands",
                replies.len(),
                n_counts + 2
            )));
        };

        let oldest = oldest_per_queue(oldest, queues.len())?;
        let mut stats = Vec::with_capacity(queues.len());
        let (mut processed, mut failed) = (0u64, 0u64);
        for ((queue, replies), oldest) in queues
            .iter()
            .zip(counts.chunks_exact(PER_QUEUE))
            .zip(oldest)
        {
            let c = QueueCounts::from_replies(self, queue, replies)?;
            processed = processed.saturating_add(c.metrics_completed.unwrap_or(c.completed));
            failed = failed.saturating_add(c.metrics_failed.unwrap_or(c.failed));
            let waiting = c
                .wait
                .saturating_add(c.paused)
                .saturating_add(c.prioritized);
            stats.push(QueueStats {
                name: queue.clone(),
                depths: vec![
                    (JobState::Waiting, waiting),
                    (JobState::Active, c.active),
                    (JobState::Delayed, c.delayed),
                    (JobState::Failed, c.failed),
                ],
                oldest_enqueued_at: if waiting > 0 { oldest } else { None },
            });
        }
        Ok(Snapshot {
            queues: stats,
            processed: Some(processed),
            failed: Some(failed),
            workers: self.count_workers(clients, queues),
            busy: None,
            discovered,
        })
    }

    /// `Worker` connections of the read queues in the `CLIENT LIST` reply; `None` when Redis
    /// refused the command.
    fn count_workers(&self, reply: &Value, queues: &[String]) -> Option<u64> {
        // A refusal (an error reply) leaves the count unknown; any other reply that is not the
        // text of a client list is too, rather than a count made up from it.
        let list = match reply {
            Value::BulkString(bytes) => String::from_utf8_lossy(bytes),
            Value::VerbatimString { text, .. } => text.as_str().into(),
            _ => return None,
        };
        let names: HashSet<String> = queues
            .iter()
            .map(|q| format!("{}:{}", self.prefix, base64(q.as_bytes())))
            .collect();
        let workers = list
            .lines()
            .filter_map(|line| {
                line.split(' ')
                    .find_map(|field| field.strip_prefix("name="))
            })
            .filter(|name| is_worker_of(name, &names))
            .count();
        Some(workers as u64)
    }
}

/// The oldest enqueue time per queue, from the [`OLDEST_SCRIPT`] reply.
fn oldest_per_queue(reply: &Value, queues: usize) -> Result<Vec<Option<f64>>, QueueError> {
    let per_queue = match reply {
        Value::Array(items) if items.len() == queues => items,
        Value::ServerError(e) => return Err(QueueError::Redis(e.clone().into())),
        _ => {
            return Err(QueueError::Data(
                "the oldest-job script answered an unexpected reply".into(),
            ))
        }
    };
    per_queue
        .iter()
        .map(|fields| match fields {
            // The script answers a list per queue, of three fields per candidate job.
            Value::Array(fields) if fields.len() % 3 == 0 => Ok(fields
                .chunks_exact(3)
                .filter_map(|job| match job {
                    [timestamp, processed_on, opts] => enqueued_at(timestamp, processed_on, opts),
                    _ => None,
                })
                .min_by(f64::total_cmp)),
            _ => Err(QueueError::Data(
                "the oldest-job script answered an unexpected reply".into(),
            )),
        })
        .collect()
}

/// Whether a client name is `<base>` or `<base>:w:<worker name>` for one of the bases
/// (`Queue::getWorkers`). A worker name may itself contain `:w:`, so every split is tried.
fn is_worker_of(name: &str, bases: &HashSet<String>) -> bool {
    bases.contains(name)
        || name
            .match_indices(":w:")
            .any(|(i, _)| bases.contains(&name[..i]))
}

/// One queue's counts, parsed from its [`LENGTHS`] and [`METRICS`] replies.
#[derive(Debug)]
struct QueueCounts {
    wait: u64,
    paused: u64,
    prioritized: u64,
    active: u64,
    delayed: u64,
    failed: u64,
    completed: u64,
    metrics_completed: Option<u64>,
    metrics_failed: Option<u64>,
}

impl QueueCounts {
    fn from_replies(bullmq: &Bullmq, queue: &str, replies: &[Value]) -> Result<Self, QueueError> {
        let (length_replies, metrics_replies) = replies.split_at(LENGTHS.len().min(replies.len()));
        let mut lengths = [0; LENGTHS.len()];
        for ((slot, (_, suffix)), reply) in lengths.iter_mut().zip(LENGTHS).zip(length_replies) {
            *slot = length(reply, &bullmq.key(queue, suffix))?;
        }
        let mut metrics = [None; METRICS.len()];
        for ((slot, suffix), reply) in metrics.iter_mut().zip(METRICS).zip(metrics_replies) {
            *slot = metrics_count(reply, &bullmq.key(queue, suffix))?;
        }
        let [wait, paused, prioritized, active, delayed, failed, completed] = lengths;
        let [metrics_completed, metrics_failed] = metrics;
        Ok(QueueCounts {
            wait,
            paused,
            prioritized,
            active,
            delayed,
            failed,
            completed,
            metrics_completed,
            metrics_failed,
        })
    }
}

/// An `LLEN`/`ZCARD` reply; a server error (WRONGTYPE) names the key.
fn length(reply: &Value, key: &str) -> Result<u64, QueueError> {
    match reply {
        Value::Int(n) => {
            u64::try_from(*n).map_err(|_| QueueError::Data(format!("{key}: negative length {n}")))
        }
        Value::ServerError(e) => Err(server_error(e, key)),
        _ => Err(QueueError::Data(format!("{key}: unexpected length reply"))),
    }
}

/// An `HGET <metrics key> count` reply: `None` when BullMQ never wrote it.
fn metrics_count(reply: &Value, key: &str) -> Result<Option<u64>, QueueError> {
    let text = match reply {
        Value::Nil => return Ok(None),
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes),
        Value::Int(n) => return u64::try_from(*n).map(Some).map_err(|_| not_a_count(key)),
        Value::ServerError(e) => return Err(server_error(e, key)),
        _ => return Err(not_a_count(key)),
    };
    text.trim().parse().map(Some).map_err(|_| not_a_count(key))
}

fn not_a_count(key: &str) -> QueueError {
    QueueError::Data(format!("{key}: field count is not a non-negative integer"))
}

/// A per-command server error: a wrong type is BullMQ data gone bad, named by its key; anything
/// else (a refused command, an out-of-memory server) is a Redis error.
fn server_error(e: &redis::ServerError, key: &str) -> QueueError {
    if e.code() == "WRONGTYPE" {
        QueueError::Data(format!("{key}: not the type BullMQ writes there"))
    } else {
        QueueError::Redis(e.clone().into())
    }
}

/// When a waiting job was enqueued, in Unix seconds: `timestamp + opts.delay`, or `processedOn`
/// when later (see the module docs). `None` when `timestamp` is missing or not a positive
/// finite number of milliseconds.
fn enqueued_at(timestamp: &Value, processed_on: &Value, opts: &Value) -> Option<f64> {
    let timestamp = millis(timestamp)?;
    let delay = match opts {
        Value::BulkString(bytes) => serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|o| o.get("delay")?.as_f64())
            .filter(|d| d.is_finite() && *d > 0.0)
            .unwrap_or(0.0),
        _ => 0.0,
    };
    let ready = timestamp + delay;
    let at = millis(processed_on).map_or(ready, |p| p.max(ready));
    at.is_finite().then_some(at / 1000.0)
}

/// A job hash field holding milliseconds since the epoch.
fn millis(value: &Value) -> Option<f64> {
    let Value::BulkString(bytes) = value else {
        return None;
    };
    std::str::from_utf8(bytes)
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|ms| ms.is_finite() && *ms > 0.0)
}

/// Escapes Redis glob metacharacters, so that a prefix like `app[1]` matches itself in `SCAN
/// MATCH`.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Standard base64 with padding, as Node's `Buffer.toString('base64')` writes queue names into
/// worker connection names.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> shift) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl JobSystem for Bullmq {
    fn system(&self) -> System {
        System::Bullmq
    }

    fn collect<'a>(
        &'a self,
        conn: &'a mut MultiplexedConnection,
    ) -> BoxFuture<'a, Result<Snapshot, QueueError>> {
        Box::pin(self.read(conn))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_node_buffer() {
        // Node: Buffer.from(s).toString('base64')
        assert_eq!(base64(b"other"), "b3RoZXI=");
        assert_eq!(base64(b"emails"), "ZW1haWxz");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b""), "");
        assert_eq!(base64("é/ü".as_bytes()), "w6kvw7w=");
    }

    #[test]
    fn worker_names_match_unnamed_and_named_workers_only() {
        let bases: HashSet<String> = ["bull:ZW1haWxz".to_string()].into();
        assert!(is_worker_of("bull:ZW1haWxz", &bases));
        assert!(is_worker_of("bull:ZW1haWxz:w:mailer", &bases));
        assert!(is_worker_of("bull:ZW1haWxz:w:a:w:b", &bases));
        assert!(!is_worker_of("bull:ZW1haWxz:qe", &bases)); // QueueEvents
        assert!(!is_worker_of("bull:b3RoZXI=", &bases));
        assert!(!is_worker_of("", &bases));
    }

    #[test]
    fn meta_keys_name_queues_under_the_prefix_only() {
        let b = Bullmq::new(&BullmqOptions {
            queues: None,
            prefix: Some("app".into()),
        });
        assert_eq!(
            b.queue_of_meta_key(b"app:emails:meta").as_deref(),
            Some("emails")
        );
        assert_eq!(b.queue_of_meta_key(b"app::meta"), None);
        assert_eq!(b.queue_of_meta_key(b"app:a:b:meta"), None);
        assert_eq!(b.queue_of_meta_key(b"apple:x:meta"), None);
        assert_eq!(b.queue_of_meta_key(b"app:\xff:meta"), None);
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    #[test]
    fn enqueue_time_takes_the_delay_and_the_last_attempt() {
        let s = |v: &str| Value::BulkString(v.as_bytes().to_vec());
        assert_eq!(enqueued_at(&s("1000"), &Value::Nil, &Value::Nil), Some(1.0));
        assert_eq!(
            enqueued_at(&s("1000"), &Value::Nil, &s(r#"{"delay":2000}"#)),
            Some(3.0)
        );
        assert_eq!(
            enqueued_at(&s("1000"), &s("5000"), &s(r#"{"delay":2000}"#)),
            Some(5.0)
        );
        assert_eq!(
            enqueued_at(&s("1000"), &s("junk"), &s("{not json")),
            Some(1.0)
        );
        assert_eq!(
            enqueued_at(&s("1000"), &Value::Nil, &s(r#"{"delay":"x"}"#)),
            Some(1.0)
        );
        assert_eq!(enqueued_at(&s("garbage"), &s("5000"), &Value::Nil), None);
        assert_eq!(enqueued_at(&s("inf"), &Value::Nil, &Value::Nil), None);
        assert_eq!(enqueued_at(&s("-5"), &Value::Nil, &Value::Nil), None);
        assert_eq!(enqueued_at(&Value::Nil, &Value::Nil, &Value::Nil), None);
        let huge = enqueued_at(&s("1e300"), &Value::Nil, &s(r#"{"delay":1e308}"#));
        assert!(huge.is_some_and(f64::is_finite));
    }
}
