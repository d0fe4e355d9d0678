//! Sidekiq's Redis layout, read in two pipelined round trips.
//!
//! Verified against Sidekiq 6.4.1 as installed from Debian (`ruby-sidekiq`, under
//! `/usr/share/rubygems-integration/all/gems/sidekiq-6.4.1/lib/sidekiq/`) and the layout notes
//! of 7.x and 8.0 (the keys and fields read here are unchanged; only the timestamp unit moved):
//!
//! | key | type | written by | read here |
//! |---|---|---|---|
//! | `queues` | set of queue names | `client.rb` `atomic_push` (`SADD`) | discovery, unless queues are configured |
//! | `queue:<q>` | list of job JSON | `client.rb` `atomic_push` (`LPUSH`); `fetch.rb` `retrieve_work` takes jobs with `BRPOP` | `LLEN` (waiting), the job at index -1 (the oldest: the right end, where `BRPOP` takes from) through [`reply::HEAD_FIELD`] |
//! | `schedule`, `retry`, `dead` | sorted sets | `client.rb`, `job_retry.rb`, `api.rb` `DeadSet` | `ZCARD`, under queue [`ALL_QUEUES`] as scheduled / retry / dead |
//! | `stat:processed`, `stat:failed` | counters | `launcher.rb` `❤` (`INCRBY` every heartbeat, 5 s) and `flush_stats` at exit | `GET`: processed and failed |
//! | `processes` | set of process identities | `launcher.rb` `❤` (`SADD`), `clear_heartbeat` (`SREM` on a clean stop) | discovery |
//! | `<identity>` | hash `info` (JSON with `concurrency`), `busy`, `beat`, `quiet` | `launcher.rb` `❤`, with `EXPIRE 60` | `HMGET`: workers and busy |
//!
//! **Oldest job.** `enqueued_at` of the job at the right end of the list: epoch seconds as a float
//! before Sidekiq 8.0, integer epoch milliseconds from 8.0 (`docs/8.0-Upgrade.md`). A value above
//! 10¹¹ is read as milliseconds (10¹¹ seconds is the year 5138; 10¹¹ ms is 1973). A job without
//! `enqueued_at` or unparsable JSON gives no oldest time for that queue (its depth still counts).
//!
//! **Progress signal.** Sidekiq keeps real cumulative counters: `stat:processed` counts every
//! job that finished, successfully or not (`processor.rb` `stats` increments `PROCESSED` in an
//! `ensure`), `stat:failed` those that raised. They are flushed to Redis on each process heartbeat
//! (every 5 s) and at exit, so `processed` moves in steps up to 5 s behind the jobs themselves.
//!
//! **Workers and busy.** A process counts while its hash still has `info` — the rule of Sidekiq's
//! own `ProcessSet#cleanup` (`api.rb`): the hash expires 60 s after the last heartbeat — and its
//! `beat` is no older than [`SidekiqOptions::stale_after`] by Redis's clock (`TIME`), so a hash
//! left without its TTL does not count forever. A process stopped cleanly removes itself from
//! `processes` at once; a killed one keeps counting until its hash expires (at most 60 s).
//! `workers` is the number of threads (`concurrency`) of live processes that take jobs, i.e.
//! not `quiet` (TSTP or stopping: they finish their jobs but fetch no more); `busy` is the sum
//! of `busy` (jobs running at the last heartbeat) over all live processes, so it may exceed
//! `workers` while a quiet process finishes its jobs. A process hash Sidekiq would not have
//! written (`info` not JSON with an integer `concurrency`, `busy` or `beat` not numbers) is
//! skipped.
//!
//! **Namespace.** [`SidekiqOptions::prefix`] is a redis-namespace name (the `namespace:` option
//! of Sidekiq 6 and older; Sidekiq 7 dropped it): every key above, including the process hashes,
//! is then `<prefix>:<key>`. Queue names and identities inside the sets are not prefixed.
//!
//! **Bounded job reads.** The oldest job is read through one `EVAL` of [`reply::HEAD_FIELD`] for
//! all queues (in the second pipeline): a job of at most 64 KiB comes back whole, a longer one
//! only as its `enqueued_at` value, extracted inside Redis, so a 100 MB job at a queue head costs
//! canaryd a few bytes. The script needs the `EVAL` permission (`@scripting`); a Redis that
//! refuses it fails the read with a Redis error.
//!
//! **Round trips.** Two, whatever the number of queues and processes: one pipeline for the
//! `queues` and `processes` sets (the process set is always needed, so configured queues do not
//! save this trip), one for everything else.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use serde::Deserialize;

use super::reply::{self, Head, Replies};
use super::{JobState, JobSystem, QueueError, QueueStats, Snapshot, System, ALL_QUEUES};
use crate::probe::BoxFuture;

/// How old a process heartbeat may be before the process no longer counts, by default: the TTL
/// Sidekiq puts on the process hash (`launcher.rb`, `EXPIRE key 60`).
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(60);

/// A value of `enqueued_at` above this is epoch milliseconds (Sidekiq ≥ 8.0), below it epoch
/// seconds (Sidekiq < 8.0).
const MILLIS_ABOVE: f64 = 1e11;

/// What a Sidekiq check reads.
#[derive(Debug, Clone)]
pub struct SidekiqOptions {
    /// Queues to report, in this order. `None`: every queue in the `queues` set, sorted.
    pub queues: Option<Vec<String>>,
    /// redis-namespace name: keys are read as `<prefix>:<key>`. `None`: no namespace.
    pub prefix: Option<String>,
    /// A process whose last `beat` is older than this (by Redis's clock) is not counted.
    pub stale_after: Duration,
}

impl Default for SidekiqOptions {
    fn default() -> Self {
        SidekiqOptions {
            queues: None,
            prefix: None,
            stale_after: DEFAULT_STALE_AFTER,
        }
    }
}

/// Reads one Sidekiq installation's queues, counters and processes.
#[derive(Debug, Clone)]
pub struct Sidekiq {
    /// Configured queue names (as bytes, the way they are keyed), or `None` to discover them.
    queues: Option<Vec<Vec<u8>>>,
    /// The redis-namespace name, if any.
    prefix: Option<String>,
    /// [`SidekiqOptions::stale_after`] in seconds.
    stale_after: f64,
}

impl Sidekiq {
    /// A reader for the layout `opts` describes.
    pub fn new(opts: &SidekiqOptions) -> Sidekiq {
        Sidekiq {
            queues: opts
                .queues
                .as_ref()
                .map(|qs| qs.iter().map(|q| q.as_bytes().to_vec()).collect()),
            prefix: opts.prefix.clone(),
            stale_after: opts.stale_after.as_secs_f64(),
        }
    }

    /// A key of the layout, under the namespace if there is one.
    fn key(&self, key: &[u8]) -> Vec<u8> {
        reply::namespaced(self.prefix.as_deref(), key)
    }

    async fn read(&self, conn: &mut MultiplexedConnection) -> Result<Snapshot, QueueError> {
        // Round trip 1: which queues (unless configured) and which processes.
        let queues_key = self.key(b"queues");
        let processes_key = self.key(b"processes");
        let (queues, processes, discovered) =
            reply::queues_and_members(conn, self.queues.as_ref(), &queues_key, &processes_key)
                .await?;

        // Round trip 2: everything else.
        let queue_keys: Vec<Vec<u8>> = queues
            .iter()
            .map(|q| self.key(&reply::concat(b"queue:", q)))
            .collect();
        let process_keys: Vec<Vec<u8>> = processes.iter().map(|p| self.key(p)).collect();
        let sets = [
            (JobState::Scheduled, self.key(b"schedule")),
            (JobState::Retry, self.key(b"retry")),
            (JobState::Dead, self.key(b"dead")),
        ];
        let processed_key = self.key(b"stat:processed");
        let failed_key = self.key(b"stat:failed");

        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for key in &queue_keys {
            pipe.cmd("LLEN").arg(key);
        }
        if !queue_keys.is_empty() {
            reply::push_heads(&mut pipe, &queue_keys, -1, "enqueued_at");
        }
        for (_, key) in &sets {
            pipe.cmd("ZCARD").arg(key);
        }
        pipe.cmd("GET").arg(&processed_key);
        pipe.cmd("GET").arg(&failed_key);
        for key in &process_keys {
            pipe.cmd("HMGET").arg(key).arg(&PROCESS_FIELDS[..]);
        }
        pipe.cmd("TIME");
        let heads_sent = usize::from(!queue_keys.is_empty());
        let sent = queue_keys.len() + heads_sent + sets.len() + 2 + process_keys.len() + 1;
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
                    Some(Head::Whole(job)) => enqueued_at(&job),
                    Some(Head::Field(v)) => stamp(&v),
                    None => None,
                };
            }
        }
        let mut all = QueueStats {
            name: ALL_QUEUES.to_string(),
            ..QueueStats::default()
        };
        for (state, key) in &sets {
            let n = reply::length(replies.next(key, "sorted set")?, key)?;
            all.depths.push((*state, n));
        }
        stats.push(all);
        let processed = reply::counter(replies.next(&processed_key, "string")?, &processed_key)?;
        let failed = reply::counter(replies.next(&failed_key, "string")?, &failed_key)?;
        let mut beats = Vec::with_capacity(process_keys.len());
        for key in &process_keys {
            let fields = reply::fields(replies.next(key, "hash")?, PROCESS_FIELDS.len(), key)?;
            beats.push(Heartbeat::from_fields(fields));
        }
        let now = reply::server_time(replies.next(b"TIME", "time")?)?;
        let (workers, busy) = tally(&beats, now, self.stale_after);

        Ok(Snapshot {
            queues: stats,
            processed: Some(processed),
            failed: Some(failed),
            workers: Some(workers),
            busy: Some(busy),
            discovered,
        })
    }
}

impl JobSystem for Sidekiq {
    fn system(&self) -> System {
        System::Sidekiq
    }

    fn collect<'a>(
        &'a self,
        conn: &'a mut MultiplexedConnection,
    ) -> BoxFuture<'a, Result<Snapshot, QueueError>> {
        Box::pin(self.read(conn))
    }
}

/// The process hash fields read, in this order (`launcher.rb` `❤` writes them with `HMSET`).
const PROCESS_FIELDS: [&str; 4] = ["info", "busy", "beat", "quiet"];

/// One process hash as read: each field absent when the hash (or the field) is gone.
#[derive(Debug, Default, Clone, PartialEq)]
struct Heartbeat {
    info: Option<Vec<u8>>,
    busy: Option<Vec<u8>>,
    beat: Option<Vec<u8>>,
    quiet: Option<Vec<u8>>,
}

impl Heartbeat {
    fn from_fields(fields: Vec<Option<Vec<u8>>>) -> Heartbeat {
        let mut it = fields.into_iter();
        Heartbeat {
            info: it.next().flatten(),
            busy: it.next().flatten(),
            beat: it.next().flatten(),
            quiet: it.next().flatten(),
        }
    }
}

/// The part of a process's `info` JSON read here.
#[derive(Deserialize)]
struct ProcessInfo {
    concurrency: u64,
}

/// Live worker threads (of processes taking jobs) and busy threads (of all live processes),
/// with `now` and `stale_after` in seconds. See the module docs for the rule.
fn tally(beats: &[Heartbeat], now: f64, stale_after: f64) -> (u64, u64) {
    let (mut workers, mut busy) = (0u64, 0u64);
    for hb in beats {
        // No `info`: the hash expired, the process is gone (Sidekiq's own rule).
        let Some(info) = hb.info.as_deref() else {
            continue;
        };
        let Some(beat) = hb.beat.as_deref().and_then(number) else {
            continue;
        };
        if now - beat > stale_after {
            continue;
        }
        let Ok(info) = serde_json::from_slice::<ProcessInfo>(info) else {
            continue;
        };
        let Some(running) = hb.busy.as_deref().and_then(number) else {
            continue;
        };
        if running < 0.0 || running.fract() != 0.0 {
            continue;
        }
        // A quiet process finishes its jobs but fetches no more: its threads are not workers.
        if hb.quiet.as_deref() != Some(b"true") {
            workers = workers.saturating_add(info.concurrency);
        }
        busy = busy.saturating_add(running as u64);
    }
    (workers, busy)
}

/// A finite number written as text (`beat` is `Time.now.to_f`, `busy` an integer).
fn number(text: &[u8]) -> Option<f64> {
    std::str::from_utf8(text)
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite())
}

/// The `enqueued_at` of a job's JSON, in Unix seconds: a float of seconds (Sidekiq < 8.0), an
/// integer of milliseconds (≥ 8.0), or either written as a string (some middlewares do).
fn enqueued_at(job: &[u8]) -> Option<f64> {
    #[derive(Deserialize)]
    struct Job {
        enqueued_at: Option<serde_json::Value>,
    }
    let job: Job = serde_json::from_slice(job).ok()?;
    stamp(&job.enqueued_at?)
}

/// Unix seconds from the value of `enqueued_at` (a number, or a number written as a string).
fn stamp(v: &serde_json::Value) -> Option<f64> {
    let raw = match v {
        serde_json::Value::Number(n) => n.as_f64()?,
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    epoch_seconds(raw)
}

/// Seconds from a Sidekiq timestamp of either unit; `None` for what cannot be a time.
fn epoch_seconds(raw: f64) -> Option<f64> {
    if !raw.is_finite() || raw <= 0.0 {
        return None;
    }
    Some(if raw > MILLIS_ABOVE {
        raw / 1000.0
    } else {
        raw
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enqueued_at_reads_float_seconds_before_8_0() {
        let job = br#"{"class":"X","args":[],"enqueued_at":1700000000.25,"created_at":1.0}"#;
        assert_eq!(enqueued_at(job), Some(1_700_000_000.25));
    }

    #[test]
    fn enqueued_at_reads_integer_milliseconds_from_8_0() {
        let job = br#"{"class":"X","args":[],"enqueued_at":1700000000250}"#;
        assert_eq!(enqueued_at(job), Some(1_700_000_000.25));
    }

    #[test]
    fn enqueued_at_reads_a_number_written_as_a_string() {
        assert_eq!(
            enqueued_at(br#"{"enqueued_at":"1700000000.5"}"#),
            Some(1_700_000_000.5)
        );
    }

    #[test]
    fn enqueued_at_is_none_for_junk() {
        for job in [
            &b"not json"[..],
            b"[1,2,3]",
            b"{}",
            br#"{"enqueued_at":null}"#,
            br#"{"enqueued_at":"soon"}"#,
            br#"{"enqueued_at":-5}"#,
            br#"{"enqueued_at":1e400}"#,
            br#"{"enqueued_at":{"a":1}}"#,
            b"",
        ] {
            assert_eq!(enqueued_at(job), None, "{}", String::from_utf8_lossy(job));
        }
        // Deeply nested JSON hits serde_json's recursion limit instead of the stack.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(enqueued_at(deep.as_bytes()), None);
    }

    fn hb(info: &str, busy: &str, beat: f64, quiet: &str) -> Heartbeat {
        Heartbeat {
            info: Some(info.as_bytes().to_vec()),
            busy: Some(busy.as_bytes().to_vec()),
            beat: Some(beat.to_string().into_bytes()),
            quiet: Some(quiet.as_bytes().to_vec()),
        }
    }

    const NOW: f64 = 1_700_000_000.0;

    #[test]
    fn live_processes_count_their_threads_and_busy_jobs() {
        let beats = [
            hb(
                r#"{"concurrency":5,"queues":["default"]}"#,
                "2",
                NOW - 4.0,
                "false",
            ),
            hb(r#"{"concurrency":10}"#, "0", NOW - 1.0, "false"),
        ];
        assert_eq!(tally(&beats, NOW, 60.0), (15, 2));
    }

    #[test]
    fn a_process_with_a_stale_beat_or_an_expired_hash_does_not_count() {
        let beats = [
            hb(r#"{"concurrency":5}"#, "1", NOW - 61.0, "false"),
            Heartbeat::default(), // hash expired: HMGET answers nils
            hb(r#"{"concurrency":3}"#, "1", NOW - 59.0, "false"),
        ];
        assert_eq!(tally(&beats, NOW, 60.0), (3, 1));
    }

    #[test]
    fn a_quiet_process_finishes_its_jobs_but_is_not_a_worker() {
        let beats = [hb(r#"{"concurrency":5}"#, "3", NOW, "true")];
        assert_eq!(tally(&beats, NOW, 60.0), (0, 3));
    }

    #[test]
    fn process_hashes_sidekiq_would_not_write_are_skipped() {
        let beats = [
            hb("garbage", "1", NOW, "false"),
            hb(r#"{"concurrency":"many"}"#, "1", NOW, "false"),
            hb(r#"{"concurrency":2}"#, "lots", NOW, "false"),
            hb(r#"{"concurrency":2}"#, "-1", NOW, "false"),
            Heartbeat {
                beat: Some(b"yesterday".to_vec()),
                ..hb(r#"{"concurrency":2}"#, "0", NOW, "false")
            },
            hb(r#"{"concurrency":18446744073709551615}"#, "0", NOW, "false"),
            hb(r#"{"concurrency":18446744073709551615}"#, "0", NOW, "false"),
        ];
        // Only the two huge ones are well-formed; their sum saturates instead of overflowing.
        assert_eq!(tally(&beats, NOW, 60.0), (u64::MAX, 0));
    }
}
