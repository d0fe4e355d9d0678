//! Resque's Redis layout, read in two pipelined round trips.
//!
//! There is no Resque package on this machine (Debian bookworm has none), so the layout comes from
//! Resque's own source (repository `resque/resque`): `lib/resque/data_store.rb` (every key and
//! command below), `lib/resque/worker.rb` (worker life cycle, heartbeat, pruning),
//! `lib/resque.rb` (the namespace and the heartbeat/prune intervals), `lib/resque/job.rb` and
//! `lib/resque/failure/redis.rb` (the job and failure formats). Every key lives under a
//! redis-namespace, `resque` unless the application set another (`Resque.redis = "host:port/ns"`).
//!
//! | key (after `<ns>:`) | type | written by | read here |
//! |---|---|---|---|
//! | `queues` | set of queue names | `QueueAccess#watch_queue` (`SADD`, on every push) | discovery, unless queues are configured |
//! | `queue:<q>` | list of job JSON `{"class":..,"args":[..]}` | `QueueAccess#push_to_queue` (`RPUSH`); workers take with `pop_from_queue` (`LPOP`) | `LLEN` (waiting), the job at index 0 (the oldest) through [`reply::HEAD_FIELD`] |
//! | `failed` | list of failure JSON | `Failure::Redis#save` (`RPUSH`) | `LLEN`, under queue [`ALL_QUEUES`] as failed |
//! | `stat:processed`, `stat:failed` | counters | `Worker#processed!` / `#failed!` (`INCRBY`) | `GET`: processed and failed |
//! | `workers` | set of worker ids `host:pid:queues` | `Workers#register_worker` (`SADD`), `#unregister_worker` (`SREM`) | discovery |
//! | `workers:heartbeat` | hash worker id → ISO 8601 time | `Workers#heartbeat!` (`HSET`, Redis server time, every `heartbeat_interval`, 60 s) | `HGETALL`: liveness |
//! | `worker:<id>` | string, the job being worked (JSON) | `Workers#set_worker_payload` (`SET`), deleted by `#worker_done_working` | `STRLEN`: busy |
//!
//! (`worker:<id>:started` and the per-worker `stat:processed:<id>` exist too; nothing here needs
//! them. The optional `Failure::RedisMultiQueue` backend keeps `<queue>_failed` lists instead of
//! `failed`; they are not read.)
//!
//! **Oldest job.** Resque writes no enqueue time into its jobs: a job is only `class` and `args`.
//! The one exception read here is Active Job on Resque: its `ResqueAdapter` enqueues the job's
//! serialized form as the first argument, which carries `enqueued_at` as an ISO 8601 UTC string
//! (Rails 6+, `activejob/lib/active_job/core.rb` `serialize`). For plain Resque jobs the oldest
//! time is `None`, and only depth and the processed counter say whether a queue moves.
//!
//! **Progress signal.** `stat:processed`, a real cumulative counter: `Worker#done_working`
//! increments it after every job, failed ones included (a failure also increments
//! `stat:failed` and pushes to `failed`). Workers update it per job, so it has no lag.
//!
//! **Workers and busy.** A worker in `workers` counts unless its heartbeat is older than
//! [`ResqueOptions::stale_after`] by Redis's clock (`TIME`) — Resque's own rule
//! (`Worker.all_workers_with_expired_heartbeats`, which compares with the server time against
//! `prune_interval`, 5 × 60 s by default). As in Resque, a worker that never sent a heartbeat (an
//! older Resque or another client library) counts; one whose heartbeat is not a time is skipped.
//! A worker stopped cleanly unregisters at once; a killed one counts until its heartbeat is
//! stale. `busy` is the number of those workers with a non-empty `worker:<id>` (the rule of
//! `Worker.working`). Each Resque worker is one process running one job at a time.
//!
//! **Bounded job reads.** The oldest job is read through one `EVAL` of [`reply::HEAD_FIELD`] for
//! all queues (in the second pipeline): a job of at most 64 KiB comes back whole, a longer one
//! only as its `enqueued_at` value, extracted inside Redis, so a 100 MB job at a queue head costs
//! canaryd a few bytes. The script needs the `EVAL` permission (`@scripting`); a Redis that
//! refuses it fails the read with a Redis error.
//!
//! **Round trips.** Two, whatever the number of queues and workers: one pipeline for the
//! `queues` and `workers` sets (the worker set is always needed, so configured queues do not
//! save this trip), one for everything else.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use serde::Deserialize;

use super::reply::{self, Head, Replies};
use super::{JobState, JobSystem, QueueError, QueueStats, Snapshot, System, ALL_QUEUES};
use crate::probe::BoxFuture;

/// Resque's namespace when the application sets none (`lib/resque.rb`, `redis=`).
pub const DEFAULT_PREFIX: &str = "resque";

/// How old a heartbeat may be before its worker no longer counts, by default: Resque's
/// `DEFAULT_PRUNE_INTERVAL` (5 × the 60 s heartbeat interval).
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(300);

/// What a Resque check reads.
#[derive(Debug, Clone)]
pub struct ResqueOptions {
    /// Queues to report, in this order. `None`: every queue in the `queues` set, sorted.
    pub queues: Option<Vec<String>>,
    /// The redis-namespace: keys are read as `<prefix>:<key>`. `None`: [`DEFAULT_PREFIX`].
    pub prefix: Option<String>,
    /// A worker whose heartbeat is older than this (by Redis's clock) is not counted; set it to
    /// the application's `Resque.prune_interval` if it changed it.
    pub stale_after: Duration,
}

impl Default for ResqueOptions {
    fn default() -> Self {
        ResqueOptions {
            queues: None,
            prefix: None,
            stale_after: DEFAULT_STALE_AFTER,
        }
    }
}

/// Reads one Resque installation's queues, counters and workers.
#[derive(Debug, Clone)]
pub struct Resque {
    /// Configured queue names (as bytes, the way they are keyed), or `None` to discover them.
    queues: Option<Vec<Vec<u8>>>,
    /// The namespace every key lives under.
    prefix: String,
    /// [`ResqueOptions::stale_after`] in seconds.
    stale_after: f64,
}

impl Resque {
    /// A reader for the layout `opts` describes.
    pub fn new(opts: &ResqueOptions) -> Resque {
        Resque {
            queues: opts
                .queues
                .as_ref()
                .map(|qs| qs.iter().map(|q| q.as_bytes().to_vec()).collect()),
            prefix: opts
                .prefix
                .clone()
                .unwrap_or_else(|| DEFAULT_PREFIX.to_string()),
            stale_after: opts.stale_after.as_secs_f64(),
        }
    }

    /// A key of the layout, under the namespace.
    fn key(&self, key: &[u8]) -> Vec<u8> {
        reply::namespaced(Some(&self.prefix), key)
    }

    async fn read(&self, conn: &mut MultiplexedConnection) -> Result<Snapshot, QueueError> {
        // Round trip 1: which queues (unless configured) and which workers.
        let queues_key = self.key(b"queues");
        let workers_key = self.key(b"workers");
        let (queues, workers, discovered) =
            reply::queues_and_members(conn, self.queues.as_ref(), &queues_key, &workers_key)
                .await?;

        // Round trip 2: everything else.
        let queue_keys: Vec<Vec<u8>> = queues
            .iter()
            .map(|q| self.key(&reply::concat(b"queue:", q)))
            .collect();
        let payload_keys: Vec<Vec<u8>> = workers
            .iter()
            .map(|w| self.key(&reply::concat(b"worker:", w)))
            .collect();
        let failed_list = self.key(b"failed");
        let processed_key = self.key(b"stat:processed");
        let failed_key = self.key(b"stat:failed");
        let heartbeat_key = self.key(b"workers:heartbeat");

        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for key in &queue_keys {
            pipe.cmd("LLEN").arg(key);
        }
        if !queue_keys.is_empty() {
            reply::push_heads(&mut pipe, &queue_keys, 0, "enqueued_at");
        }
        pipe.cmd("LLEN").arg(&failed_list);
        pipe.cmd("GET").arg(&processed_key);
        pipe.cmd("GET").arg(&failed_key);
        for key in &payload_keys {
            pipe.cmd("STRLEN").arg(key);
        }
        pipe.cmd("HGETALL").arg(&heartbeat_key);
        pipe.cmd("TIME");
        let heads_sent = usize::from(!queue_keys.is_empty());
        let sent = queue_keys.len() + heads_sent + 3 + payload_keys.len() + 2;
        let mut replies = Replies::new(pipe.query_async(conn).await?, sent)?;

        let mut stats = Vec::with_capacity(queues.len() + 1);
        for (name, key) in queues.iter().zip(&queue_keys) {
            let waiting = reply::length(replies.next(key, "list")?, key)?;
            stats.push(QueueStats {
                name: String::from_utf8_lossy(name).into_owned(),
                depths: vec![(JobState::Waiting, waiting)],
                oldest_enqueued_at: None,
            });
        }
        if heads_sent > 0 {
            let heads = reply::heads(replies.next(b"EVAL", "script")?, queue_keys.len())?;
            for (queue, head) in stats.iter_mut().zip(heads) {
                queue.oldest_enqueued_at = match head {
                    Some(Head::Whole(job)) => active_job_enqueued_at(&job),
                    Some(Head::Field(serde_json::Value::String(at))) => {
                        rfc3339_seconds(at.as_bytes())
                    }
                    _ => None,
                };
            }
        }
        let failed_jobs = reply::length(replies.next(&failed_list, "list")?, &failed_list)?;
        stats.push(QueueStats {
            name: ALL_QUEUES.to_string(),
            depths: vec![(JobState::Failed, failed_jobs)],
            oldest_enqueued_at: None,
        });
        let processed = reply::counter(replies.next(&processed_key, "string")?, &processed_key)?;
        let failed = reply::counter(replies.next(&failed_key, "string")?, &failed_key)?;
        let mut working = Vec::with_capacity(payload_keys.len());
        for key in &payload_keys {
            working.push(reply::length(replies.next(key, "string")?, key)? > 0);
        }
        let heartbeats = reply::pairs(replies.next(&heartbeat_key, "hash")?, &heartbeat_key)?;
        let now = reply::server_time(replies.next(b"TIME", "time")?)?;
        let (live, busy) = tally(&workers, &working, &heartbeats, now, self.stale_after);

        Ok(Snapshot {
            queues: stats,
            processed: Some(processed),
            failed: Some(failed),
            workers: Some(live),
            busy: Some(busy),
            discovered,
        })
    }
}

impl JobSystem for Resque {
    fn system(&self) -> System {
        System::Resque
    }

    fn collect<'a>(
        &'a self,
        conn: &'a mut MultiplexedConnection,
    ) -> BoxFuture<'a, Result<Snapshot, QueueError>> {
        Box::pin(self.read(conn))
    }
}

/// Live workers and, of those, busy ones. `working[i]` says whether `workers[i]` has a job
/// payload; `heartbeats` is the `workers:heartbeat` hash; `now` and `stale_after` in seconds.
fn tally(
    workers: &[Vec<u8>],
    working: &[bool],
    heartbeats: &[(Vec<u8>, Vec<u8>)],
    now: f64,
    stale_after: f64,
) -> (u64, u64) {
    let beats: HashMap<&[u8], &[u8]> = heartbeats
        .iter()
        .map(|(w, at)| (w.as_slice(), at.as_slice()))
        .collect();
    let (mut live, mut busy) = (0u64, 0u64);
    for (id, &is_working) in workers.iter().zip(working) {
        match beats.get(id.as_slice()) {
            // Never sent a heartbeat: Resque does not prune such workers, so neither do we.
            None => {}
            Some(beat) => match rfc3339_seconds(beat) {
                Some(at) if now - at > stale_after => continue,
                Some(_) => {}
                None => continue,
            },
        }
        live += 1;
        if is_working {
            busy += 1;
        }
    }
    (live, busy)
}

/// The `enqueued_at` of an Active Job enqueued through Resque: the job's first argument is the
/// Active Job payload (`ResqueAdapter#enqueue` pushes `JobWrapper` with `job.serialize`).
fn active_job_enqueued_at(job: &[u8]) -> Option<f64> {
    #[derive(Deserialize)]
    struct Job {
        args: Vec<serde_json::Value>,
    }
    let job: Job = serde_json::from_slice(job).ok()?;
    let at = job.args.first()?.get("enqueued_at")?.as_str()?;
    rfc3339_seconds(at.as_bytes())
}

/// Unix seconds of an RFC 3339 / ISO 8601 date-time with a zone: `2024-05-01T12:00:00Z`,
/// `2024-05-01T14:00:00+02:00` (Ruby's `Time#iso8601`, what Resque heartbeats hold) or with a
/// fraction (`.123456789Z`, Active Job). `None` for anything else.
fn rfc3339_seconds(text: &[u8]) -> Option<f64> {
    let t = chrono::DateTime::parse_from_rfc3339(std::str::from_utf8(text).ok()?.trim()).ok()?;
    Some(t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_times_as_ruby_and_active_job_write_them() {
        assert_eq!(rfc3339_seconds(b"1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(
            rfc3339_seconds(b"2023-11-14T22:13:20+00:00"),
            Some(1_700_000_000.0)
        );
        assert_eq!(
            rfc3339_seconds(b"2023-11-15T00:13:20+02:00"),
            Some(1_700_000_000.0)
        );
        assert_eq!(
            rfc3339_seconds(b"2023-11-14T17:13:20-05:00"),
            Some(1_700_000_000.0)
        );
        assert_eq!(
            rfc3339_seconds(b"2023-11-14T22:13:20.250000000Z"),
            Some(1_700_000_000.25)
        );
        assert_eq!(
            rfc3339_seconds(b"2024-02-29T00:00:00Z"),
            Some(1_709_164_800.0)
        );
    }

    #[test]
    fn junk_times_are_none() {
        for t in [
            &b""[..],
            b"yesterday",
            b"2023-11-14",
            b"2023-11-14T22:13:20",
            b"2023-13-14T22:13:20Z",
            b"2023-11-14T25:13:20Z",
            b"2023-11-14T22:13:20.Z",
            b"2023-11-14T22:13:20+0200",
            b"2023-11-14T22:13:20+99:00",
            b"2023-11-14T22:13:20Zjunk",
            b"+023-11-14T22:13:20Z",
            b"\xff\xfe",
        ] {
            assert_eq!(rfc3339_seconds(t), None, "{}", String::from_utf8_lossy(t));
        }
    }

    #[test]
    fn plain_resque_jobs_carry_no_enqueue_time() {
        assert_eq!(
            active_job_enqueued_at(br#"{"class":"Archive","args":[35,"tar"]}"#),
            None
        );
        assert_eq!(active_job_enqueued_at(br#"{"class":"X","args":[]}"#), None);
        assert_eq!(active_job_enqueued_at(b"not json"), None);
        assert_eq!(active_job_enqueued_at(br#"{"args":"nope"}"#), None);
    }

    #[test]
    fn active_job_on_resque_carries_enqueued_at_in_its_first_argument() {
        let job = br#"{"class":"ActiveJob::QueueAdapters::ResqueAdapter::JobWrapper",
            "args":[{"job_class":"MailJob","job_id":"x","queue_name":"mail","arguments":[],
                     "enqueued_at":"2023-11-14T22:13:20.500000000Z"}]}"#;
        assert_eq!(active_job_enqueued_at(job), Some(1_700_000_000.5));
    }

    fn ids(names: &[&str]) -> Vec<Vec<u8>> {
        names.iter().map(|n| n.as_bytes().to_vec()).collect()
    }

    fn beat(id: &str, at: &str) -> (Vec<u8>, Vec<u8>) {
        (id.as_bytes().to_vec(), at.as_bytes().to_vec())
    }

    const NOW: f64 = 1_700_000_000.0; // 2023-11-14T22:13:20Z

    #[test]
    fn workers_count_until_their_heartbeat_is_older_than_the_prune_interval() {
        let workers = ids(&["h:1:default", "h:2:default", "h:3:default", "h:4:default"]);
        let working = [true, false, true, true];
        let heartbeats = [
            beat("h:1:default", "2023-11-14T22:12:20+00:00"), // 60 s ago
            beat("h:2:default", "2023-11-14T22:13:10+00:00"), // 10 s ago
            beat("h:3:default", "2023-11-14T22:03:20+00:00"), // 600 s ago: stale
            beat("h:4:default", "not a time"),
        ];
        assert_eq!(tally(&workers, &working, &heartbeats, NOW, 300.0), (2, 1));
    }

    #[test]
    fn a_worker_that_never_sent_a_heartbeat_counts_as_resque_does() {
        let workers = ids(&["old:1:*"]);
        assert_eq!(tally(&workers, &[true], &[], NOW, 300.0), (1, 1));
    }
}
