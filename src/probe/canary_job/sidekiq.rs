//! The Sidekiq canary: a job pushed exactly as `Sidekiq::Client.push` pushes it, found again in
//! the queue, in the processes' work hashes and in the `retry` / `dead` sets.
//!
//! Targets Sidekiq 6.4 (Debian's `ruby-sidekiq` 6.4.1, read in `lib/sidekiq/client.rb`,
//! `processor.rb`, `launcher.rb`, `job_retry.rb`, `api.rb`). No redis-namespace prefix.
//!
//! **Written** (`enqueue`, one MULTI/EXEC; Sidekiq 6.4's own client sends the same two commands
//! pipelined without MULTI, the transaction only makes them atomic):
//!
//! | key | command | value |
//! |---|---|---|
//! | `queues` | `SADD` | the queue name (Sidekiq's own set of known queues; left there) |
//! | `queue:<q>` | `LPUSH` | the job JSON, keys in the order Sidekiq's client writes them: `{"retry":0,"queue":q,"class":task,"args":[check],"jid":id,"created_at":t,"enqueued_at":t}`, `t` float Unix seconds |
//!
//! `"retry":0` in the job itself (Sidekiq reads the job's `retry` before the class's option):
//! a canary that raises is not retried but goes straight to the `dead` set with its error, where
//! [`look`](CanarySystem::look) sees it, whatever `sidekiq_options` the class declares.
//! The class the application defines (the worker must be able to load it):
//!
//! ```ruby
//! class CanarydCanaryJob
//!   include Sidekiq::Worker
//!   def perform(*); end
//! end
//! ```
//!
//! **Read** (`look`, one `EVAL`, bounded work):
//! - `queue:<q>`: `LPOS` of the exact payload from each end with `MAXLEN` [`QUEUE_WINDOW`]
//!   (10,000 entries each end): found → Waiting. A queue longer than twice the window that has
//!   the canary in neither window counts as Waiting too: the list is FIFO, so a canary not among
//!   the [`QUEUE_WINDOW`] oldest has not been taken yet unless it is gone; that case is wrong only
//!   if the canary was taken while more than 20,000 jobs still waited around it.
//! - `processes` (set of identities) → `<identity>:workers` hashes (thread id → JSON
//!   `{"queue","payload","run_at"}`, `payload` the job JSON as a string): the one whose payload has
//!   the canary's jid → Running, `started_at` = `run_at`, integer Unix seconds (the second the
//!   job started, truncated: up to 1 s early). Work is processes × threads.
//! - `retry`, `dead` sorted sets: the first [`SET_WINDOW`] (200) members scored from
//!   `enqueued_at` − [`CLOCK_MARGIN`] (5 min, for a Sidekiq host whose clock is behind) upwards,
//!   filtered inside Redis for `"jid":"<id>"` → Failed with `error_class: error_message`,
//!   `ended_at` = `retried_at` or `failed_at` (float seconds, Sidekiq's clock). `dead` is scored by
//!   the time of death, so the canary is found unless 200 other jobs died between its enqueue and
//!   its death; `retry` is scored by the next retry time (≥ 15 s after the failure).
//!
//! **What cannot be known, and how it is bounded.** Sidekiq keeps no record of a finished job,
//! and a worker's work hash is written only on its heartbeat, every 5 s: a job is visible as
//! running only if it runs across a heartbeat. Between `BRPOP` and the `ZADD` to `dead` of a job
//! that raises, the canary is in none of the places read. So the first look that finds it
//! nowhere reports Running (it has left the queue: picked up), and only a look at least
//! [`DEFAULT_SETTLE`] (1 s) later that still finds it nowhere reports Finished, with `ended_at` =
//! the wall time of that first look (an upper bound on the real end, late by up to one poll
//! interval) and `started_at` = `run_at` if a heartbeat caught it running, else `None`. A class
//! that runs longer than the settle time but less than a heartbeat period and then raises would
//! be reported Finished: the documented class is a no-op. Pickup time is therefore known only as
//! "between enqueue and the first look that found the queue without it" (to within one poll
//! interval; the test finds it within a few ms of the `start` line of Sidekiq's job log).
//! Sidekiq 6.4's basic fetch loses a job that Redis hands to a process which then hangs (a
//! `BRPOP` pending when it froze); such a canary is in none of the places read, so it is
//! reported Finished, as Sidekiq itself would never know either.
//!
//! The scripts read the `<identity>:workers` keys they find in `processes`, keys not declared
//! to `EVAL`: a standalone Redis (or a primary) is needed, as for Sidekiq itself, not Redis
//! Cluster.
//!
//! **Expiry.** Sidekiq has no per-job TTL: nothing canaryd writes can expire by itself, so
//! `canary.keep` is not used. A queued canary stays until a worker takes it or `clean` removes
//! it; a dead one is trimmed by Sidekiq itself (the dead set keeps at most 10,000 jobs for at most
//! 6 months). A finished canary leaves nothing.
//!
//! **Clean** (one `EVAL`): `LREM` of the exact payload (from the end where `LPOS` found it, so
//! the scan stops there; the whole list only if it is longer than both windows), and `ZREM` of
//! the member found in `retry` / `dead` by the same bounded search as `look`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use redis::aio::MultiplexedConnection;
use redis::Value;
use serde::Serialize;
use serde_json::Value as Json;

use super::system::{from_unix_seconds, unix_seconds, Canary, CanarySystem, Seen};
use crate::probe::queue::{QueueError, System};
use crate::probe::BoxFuture;

/// Entries `LPOS` compares from each end of the queue.
pub const QUEUE_WINDOW: u32 = 10_000;
/// Members of `retry` and of `dead` examined per look.
pub const SET_WINDOW: u32 = 200;
/// How far before the canary's enqueue time the `retry` / `dead` search starts: those sets are
/// scored by the Sidekiq host's clock.
pub const CLOCK_MARGIN: Duration = Duration::from_secs(300);
/// How long a canary must stay absent from everywhere before it counts as finished.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(1);
/// Canaries whose first absence is remembered at most; beyond it the oldest are forgotten (a
/// forgotten one is reported Running once more, then Finished a settle time later).
const REMEMBERED: usize = 4096;

/// `look`: where the canary is. KEYS: queue, processes, retry, dead. ARGV: payload, jid,
/// min score, queue window, set window. Returns `{queue, work, retry, dead}`: queue is 1 (in a
/// window), 2 (beyond both windows of a long queue) or false; work is `{identity, value}` or
/// false; retry / dead the member or false. A key of the wrong type comes back as its
/// element's error reply.
const LOOK: &str = r#"
local function wrong(r) return type(r) == 'table' and r.err ~= nil end
local function queued(key)
  local w = tonumber(ARGV[4])
  local p = redis.pcall('LPOS', key, ARGV[1], 'MAXLEN', w)
  if wrong(p) then return p, nil end
  if p then return 1, 1 end
  p = redis.pcall('LPOS', key, ARGV[1], 'RANK', -1, 'MAXLEN', w)
  if wrong(p) then return p, nil end
  if p then return 1, -1 end
  if redis.call('LLEN', key) > 2 * w then return 2, 0 end
  return false, nil
end
local function member(key)
  local r = redis.pcall('ZRANGEBYSCORE', key, ARGV[3], '+inf', 'LIMIT', 0, tonumber(ARGV[5]))
  if wrong(r) then return r end
  local needle = '"jid":"' .. ARGV[2] .. '"'
  for _, m in ipairs(r) do
    if string.find(m, needle, 1, true) then return m end
  end
  return false
end
local function working()
  local ps = redis.pcall('SMEMBERS', KEYS[2])
  if wrong(ps) then return ps end
  for _, p in ipairs(ps) do
    local vs = redis.pcall('HVALS', p .. ':workers')
    if not wrong(vs) then
      for _, v in ipairs(vs) do
        if string.find(v, ARGV[2], 1, true) then return {p, v} end
      end
    end
  end
  return false
end
"#;

const LOOK_RETURN: &str = r#"
local q = queued(KEYS[1])
return {q, working(), member(KEYS[3]), member(KEYS[4])}
"#;

const CLEAN_RETURN: &str = r#"
local q, side = queued(KEYS[1])
local removed = 0
if q == 1 or q == 2 then
  removed = removed + redis.call('LREM', KEYS[1], side or 0, ARGV[1])
end
for _, key in ipairs({KEYS[3], KEYS[4]}) do
  local m = member(key)
  if m and not wrong(m) then removed = removed + redis.call('ZREM', key, m) end
end
return removed
"#;

/// Sidekiq canaries (see the module documentation).
#[derive(Debug)]
pub struct SidekiqCanary {
    settle: Duration,
    traces: Mutex<HashMap<String, Trace>>,
}

/// What earlier looks learned of one canary that Redis no longer shows.
#[derive(Debug, Clone, Copy, Default)]
struct Trace {
    /// `run_at` of a work hash that held it.
    started_at: Option<SystemTime>,
    /// When a look first found it nowhere (monotonic, and wall time for `ended_at`).
    gone_since: Option<(Instant, SystemTime)>,
}

impl Default for SidekiqCanary {
    fn default() -> Self {
        SidekiqCanary::new(DEFAULT_SETTLE)
    }
}

impl SidekiqCanary {
    /// A canary system that reports Finished once a canary has been absent from every place
    /// read for `settle`.
    pub fn new(settle: Duration) -> SidekiqCanary {
        SidekiqCanary {
            settle,
            traces: Mutex::new(HashMap::new()),
        }
    }

    fn traces(&self) -> std::sync::MutexGuard<'_, HashMap<String, Trace>> {
        // A panic elsewhere while holding the lock leaves a map that is still consistent.
        self.traces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn read(
        &self,
        conn: &mut MultiplexedConnection,
        canary: &Canary,
    ) -> Result<Seen, QueueError> {
        let queue_key = format!("queue:{}", canary.queue);
        let reply: Value = script(LOOK_RETURN, &queue_key, canary)
            .query_async(conn)
            .await?;
        let found = Found::from_reply(reply, &queue_key, &canary.id)?;
        Ok(self.judge(canary, found, Instant::now(), SystemTime::now()))
    }

    /// Turns one look's findings into a state, with what earlier looks remembered.
    fn judge(&self, canary: &Canary, found: Found, now: Instant, wall: SystemTime) -> Seen {
        if let Some(failed) = found.failed {
            self.traces().remove(&canary.id);
            return failed;
        }
        let mut traces = self.traces();
        if found.queued {
            traces.remove(&canary.id);
            return Seen::Waiting;
        }
        if traces.len() >= REMEMBERED && !traces.contains_key(&canary.id) {
            forget_oldest(&mut traces);
        }
        let trace = traces.entry(canary.id.clone()).or_default();
        if let Some(started_at) = found.running {
            trace.started_at = started_at.or(trace.started_at);
            trace.gone_since = None;
            return Seen::Running {
                started_at: trace.started_at,
            };
        }
        match trace.gone_since {
            Some((since, at)) if now.duration_since(since) >= self.settle => Seen::Finished {
                started_at: trace.started_at,
                ended_at: Some(at),
            },
            Some(_) => Seen::Running {
                started_at: trace.started_at,
            },
            None => {
                trace.gone_since = Some((now, wall));
                Seen::Running {
                    started_at: trace.started_at,
                }
            }
        }
    }
}

/// Drops the half of the remembered canaries that went missing first (those never seen gone
/// count as oldest): a canary is normally cleaned, and forgotten, within one check timeout.
fn forget_oldest(traces: &mut HashMap<String, Trace>) {
    let mut ages: Vec<(Option<Instant>, String)> = traces
        .iter()
        .map(|(id, t)| (t.gone_since.map(|(i, _)| i), id.clone()))
        .collect();
    ages.sort();
    for (_, id) in ages.into_iter().take(traces.len() / 2 + 1) {
        traces.remove(&id);
    }
}

/// The `EVAL` of `body` (after the shared functions) on the canary's keys.
fn script(body: &str, queue_key: &str, canary: &Canary) -> redis::Cmd {
    let min = (unix_seconds(canary.enqueued_at) - CLOCK_MARGIN.as_secs_f64()).max(0.0);
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(format!("{LOOK}{body}"))
        .arg(4)
        .arg(queue_key)
        .arg("processes")
        .arg("retry")
        .arg("dead")
        .arg(&canary.payload)
        .arg(&canary.id)
        .arg(format!("{min:.6}"))
        .arg(QUEUE_WINDOW)
        .arg(SET_WINDOW);
    cmd
}

/// What one look found, parsed.
#[derive(Debug, Default, PartialEq)]
struct Found {
    queued: bool,
    /// In a work hash, with its `run_at`.
    running: Option<Option<SystemTime>>,
    /// In `retry` or `dead`.
    failed: Option<Seen>,
}

impl Found {
    fn from_reply(reply: Value, queue_key: &str, id: &str) -> Result<Found, QueueError> {
        let items = match reply {
            Value::Array(items) if items.len() == 4 => items,
            Value::ServerError(e) => return Err(QueueError::Redis(e.into())),
            _ => {
                return Err(QueueError::Data(
                    "sidekiq canary look: unexpected script reply".to_string(),
                ))
            }
        };
        let mut items = items.into_iter();
        let mut next = |key: &str| -> Result<Value, QueueError> {
            match items.next().unwrap_or(Value::Nil) {
                Value::ServerError(e) if e.code() == "WRONGTYPE" => Err(QueueError::Data(format!(
                    "key {key:?} holds the wrong kind of value for Sidekiq"
                ))),
                Value::ServerError(e) => Err(QueueError::Redis(e.into())),
                v => Ok(v),
            }
        };
        let queued = !matches!(next(queue_key)?, Value::Nil);
        let running = match next("processes")? {
            Value::Array(pair) if pair.len() == 2 => {
                let identity = bytes(&pair[0]).unwrap_or_default();
                let key = format!("{}:workers", String::from_utf8_lossy(&identity));
                let value = bytes(&pair[1]).ok_or_else(|| {
                    QueueError::Data(format!("{key:?}: a work entry not a string"))
                })?;
                parse_work(&value, id, &key)?
            }
            _ => None,
        };
        let mut failed = None;
        for key in ["retry", "dead"] {
            let v = next(key)?;
            if failed.is_none() {
                if let Some(member) = bytes(&v) {
                    failed = parse_failure(&member, id, key)?;
                }
            }
        }
        Ok(Found {
            queued,
            running,
            failed,
        })
    }
}

fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        _ => None,
    }
}

/// A work hash value holding the canary: `Some(run_at)`; `None` when the id matched text
/// inside another job (its arguments), not its jid. A value that is not Sidekiq's JSON is an
/// error naming `key`.
pub(super) fn parse_work(value: &[u8], id: &str, key: &str) -> Result<Option<Option<SystemTime>>, QueueError> {
    let bad = || QueueError::Data(format!("{key:?}: a work entry that is not Sidekiq's JSON"));
    let work: Json = serde_json::from_slice(value).map_err(|_| bad())?;
    let payload = match work.get("payload") {
        // Sidekiq 6.4 stores the job as the JSON string it fetched.
        Some(Json::String(s)) => serde_json::from_str::<Json>(s).map_err(|_| bad())?,
        Some(obj @ Json::Object(_)) => obj.clone(),
        _ => return Err(bad()),
    };
    if payload.get("jid").and_then(Json::as_str) != Some(id) {
        return Ok(None);
    }
    let run_at = work
        .get("run_at")
        .and_then(Json::as_f64)
        .and_then(from_unix_seconds);
    Ok(Some(run_at))
}

/// A `retry` / `dead` member holding the canary as Failed; `None` when the jid is another's.
pub(super) fn parse_failure(member: &[u8], id: &str, key: &str) -> Result<Option<Seen>, QueueError> {
    let bad = || QueueError::Data(format!("{key:?}: a member that is not a Sidekiq job"));
    let job: Json = serde_json::from_slice(member).map_err(|_| bad())?;
    if !job.is_object() {
        return Err(bad());
    }
    if job.get("jid").and_then(Json::as_str) != Some(id) {
        return Ok(None);
    }
    let text = |f: &str| job.get(f).and_then(Json::as_str).unwrap_or("");
    let error = match (text("error_class"), text("error_message")) {
        ("", "") => format!("in the Sidekiq {key} set"),
        (class, "") => class.to_string(),
        ("", message) => message.to_string(),
        (class, message) => format!("{class}: {message}"),
    };
    let time = |f: &str| {
        job.get(f)
            .and_then(Json::as_f64)
            .and_then(from_unix_seconds)
    };
    Ok(Some(Seen::Failed {
        error,
        started_at: None,
        ended_at: time("retried_at").or_else(|| time("failed_at")),
    }))
}

/// The job JSON, fields in the order Sidekiq 6.4's client writes them (`normalize_item`: the
/// default options `retry`, `queue` first, then the pushed hash, then `created_at`, and
/// `atomic_push` adds `enqueued_at`).
#[derive(Serialize)]
struct Job<'a> {
    retry: u32,
    queue: &'a str,
    class: &'a str,
    args: [&'a str; 1],
    jid: &'a str,
    created_at: f64,
    enqueued_at: f64,
}

impl CanarySystem for SidekiqCanary {
    fn system(&self) -> System {
        System::Sidekiq
    }

    fn prepare(&self, canary: &Canary) -> Result<String, QueueError> {
        if canary.queue.is_empty() || canary.task.is_empty() {
            return Err(QueueError::Data(
                "a Sidekiq canary needs a queue and a class".to_string(),
            ));
        }
        let at = unix_seconds(canary.enqueued_at);
        serde_json::to_string(&Job {
            retry: 0,
            queue: &canary.queue,
            class: &canary.task,
            args: [&canary.check],
            jid: &canary.id,
            created_at: at,
            enqueued_at: at,
        })
        .map_err(|e| QueueError::Data(format!("sidekiq canary job: {e}")))
    }

    fn enqueue<'a>(
        &'a self,
        conn: &'a mut MultiplexedConnection,
        canary: &'a Canary,
    ) -> BoxFuture<'a, Result<(), QueueError>> {
        Box::pin(async move {
            redis::pipe()
                .atomic()
                .cmd("SADD")
                .arg("queues")
                .arg(&canary.queue)
                .ignore()
                .cmd("LPUSH")
                .arg(format!("queue:{}", canary.queue))
                .arg(&canary.payload)
                .ignore()
                .query_async::<()>(conn)
                .await?;
            Ok(())
        })
    }

    fn look<'a>(
        &'a self,
        conn: &'a mut MultiplexedConnection,
        canary: &'a Canary,
    ) -> BoxFuture<'a, Result<Seen, QueueError>> {
        Box::pin(self.read(conn, canary))
    }

    fn clean<'a>(
        &'a self,
        conn: &'a mut MultiplexedConnection,
        canary: &'a Canary,
    ) -> BoxFuture<'a, Result<(), QueueError>> {
        Box::pin(async move {
            self.traces().remove(&canary.id);
            let queue_key = format!("queue:{}", canary.queue);
            let reply: Value = script(CLEAN_RETURN, &queue_key, canary)
                .query_async(conn)
                .await?;
            match reply {
                Value::ServerError(e) if e.code() == "WRONGTYPE" => Err(QueueError::Data(
                    format!("sidekiq canary clean: a key of {queue_key:?}, retry or dead holds the wrong kind of value"),
                )),
                Value::ServerError(e) => Err(QueueError::Redis(e.into())),
                _ => Ok(()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canary() -> Canary {
        Canary {
            id: "canaryd-0123456789abcdef".to_string(),
            check: "billing-jobs".to_string(),
            queue: "default".to_string(),
            task: "CanarydCanaryJob".to_string(),
            enqueued_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_733_312_345_250),
            keep: Duration::from_secs(3600),
            payload: String::new(),
        }
    }

    #[test]
    fn prepare_writes_the_job_as_sidekiqs_client_does() {
        let job = SidekiqCanary::default().prepare(&canary()).unwrap();
        assert_eq!(
            job,
            r#"{"retry":0,"queue":"default","class":"CanarydCanaryJob","args":["billing-jobs"],"jid":"canaryd-0123456789abcdef","created_at":1733312345.25,"enqueued_at":1733312345.25}"#
        );
    }

    #[test]
    fn prepare_escapes_and_refuses_an_empty_queue() {
        let mut c = canary();
        c.check = "a\"b".to_string();
        let job = SidekiqCanary::default().prepare(&c).unwrap();
        let v: Json = serde_json::from_str(&job).unwrap();
        assert_eq!(v["args"][0], "a\"b");
        c.queue.clear();
        assert!(SidekiqCanary::default().prepare(&c).is_err());
    }

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn reply(queue: Value, work: Value, retry: Value, dead: Value) -> Value {
        Value::Array(vec![queue, work, retry, dead])
    }

    const ID: &str = "canaryd-0123456789abcdef";

    #[test]
    fn a_dead_member_is_failed_with_the_error() {
        let dead = r#"{"class":"Boom","jid":"canaryd-0123456789abcdef","error_class":"RuntimeError","error_message":"canary boom","failed_at":1733312346.5}"#;
        let f = Found::from_reply(
            reply(Value::Nil, Value::Nil, Value::Nil, bulk(dead)),
            "queue:default",
            ID,
        )
        .unwrap();
        assert_eq!(
            f.failed,
            Some(Seen::Failed {
                error: "RuntimeError: canary boom".to_string(),
                started_at: None,
                ended_at: from_unix_seconds(1733312346.5),
            })
        );
    }

    #[test]
    fn a_work_entry_gives_the_start_second() {
        let job = r#"{"jid":"canaryd-0123456789abcdef"}"#;
        let work =
            serde_json::json!({"queue":"default","payload":job,"run_at":1733312346}).to_string();
        let f = Found::from_reply(
            reply(
                Value::Nil,
                Value::Array(vec![bulk("host:1:abc"), bulk(&work)]),
                Value::Nil,
                Value::Nil,
            ),
            "queue:default",
            ID,
        )
        .unwrap();
        assert_eq!(f.running, Some(from_unix_seconds(1733312346.0)));
    }

    #[test]
    fn damaged_records_are_errors_naming_the_key_never_the_data() {
        let cases = [
            (
                reply(
                    Value::Nil,
                    Value::Array(vec![bulk("host:1"), bulk("{not json SECRET")]),
                    Value::Nil,
                    Value::Nil,
                ),
                "host:1:workers",
            ),
            (
                reply(
                    Value::Nil,
                    Value::Array(vec![bulk("host:1"), bulk(r#"{"payload":"[SECRET"}"#)]),
                    Value::Nil,
                    Value::Nil,
                ),
                "host:1:workers",
            ),
            (
                reply(Value::Nil, Value::Nil, bulk("\"jid\":\"SECRET"), Value::Nil),
                "retry",
            ),
            (
                reply(Value::Nil, Value::Nil, Value::Nil, bulk("[1,2] SECRET")),
                "dead",
            ),
        ];
        for (r, key) in cases {
            let e = Found::from_reply(r, "queue:default", ID).unwrap_err();
            let text = e.to_string();
            assert!(text.contains(key), "{text}");
            assert!(!text.contains("SECRET"), "{text}");
        }
        for r in [Value::Nil, Value::Int(3), Value::Array(vec![Value::Nil])] {
            assert!(Found::from_reply(r, "queue:default", ID).is_err());
        }
    }

    #[test]
    fn another_jobs_mention_of_the_id_is_not_the_canary() {
        let other = r#"{"jid":"x","args":["canaryd-0123456789abcdef"],"error_class":"E"}"#;
        let job = r#"{"jid":"x","args":["canaryd-0123456789abcdef"]}"#;
        let work = serde_json::json!({"payload":job,"run_at":1}).to_string();
        let f = Found::from_reply(
            reply(
                Value::Nil,
                Value::Array(vec![bulk("h"), bulk(&work)]),
                bulk(other),
                Value::Nil,
            ),
            "queue:default",
            ID,
        )
        .unwrap();
        assert_eq!(f, Found::default());
    }

    #[test]
    fn finished_only_after_the_settle_time_absent_from_everywhere() {
        let s = SidekiqCanary::new(Duration::from_millis(500));
        let c = canary();
        let t0 = Instant::now();
        let wall = SystemTime::now();
        let queued = Found {
            queued: true,
            ..Found::default()
        };
        assert_eq!(s.judge(&c, queued, t0, wall), Seen::Waiting);
        let started = from_unix_seconds(1733312346.0);
        let running = Found {
            running: Some(started),
            ..Found::default()
        };
        assert_eq!(
            s.judge(&c, running, t0, wall),
            Seen::Running {
                started_at: started
            }
        );
        let gone = s.judge(&c, Found::default(), t0, wall);
        assert_eq!(
            gone,
            Seen::Running {
                started_at: started
            }
        );
        let early = s.judge(&c, Found::default(), t0 + Duration::from_millis(400), wall);
        assert!(matches!(early, Seen::Running { .. }));
        let later = s.judge(&c, Found::default(), t0 + Duration::from_millis(600), wall);
        assert_eq!(
            later,
            Seen::Finished {
                started_at: started,
                ended_at: Some(wall)
            }
        );
    }

    #[test]
    fn the_memory_of_absent_canaries_is_bounded() {
        let s = SidekiqCanary::new(Duration::from_secs(1));
        let mut c = canary();
        for n in 0..(REMEMBERED * 3) {
            c.id = format!("canaryd-{n:016x}");
            s.judge(&c, Found::default(), Instant::now(), SystemTime::now());
        }
        assert!(s.traces().len() <= REMEMBERED);
    }
}
