//! Celery with the Redis broker: queue depths summed over kombu's priority lists, reserved
//! (unacknowledged) messages, and — only when the application stamps it — the oldest message's
//! enqueue time. Celery keeps no processed counter and no worker registry in Redis.
//!
//! # What is read, and where kombu writes it (kombu 5.7, `site-packages/kombu/transport/redis.py`)
//!
//! Every key starts with the `global_keyprefix` transport option (empty by default;
//! `GlobalKeyPrefixMixin` prefixes `LLEN`, `LPUSH`, `RPOP`, `BRPOP`, `SMEMBERS`, `HSET`, …).
//!
//! | key | type | written by | read as |
//! |---|---|---|---|
//! | `<queue>` and `<queue>\x06\x16<n>` for each priority step `n` ≠ 0 | lists of JSON messages | `Channel._put`: `LPUSH` to `_q_for_pri(queue, priority)`; workers `BRPOP` every step's list (`_brpop_start`), so the right end (index -1) is each list's oldest | `waiting` = sum of `LLEN`s; oldest = the tails |
//! | `_kombu.binding.<exchange>` | set of `<routing_key>\x06\x16<pattern>\x06\x16<queue>` | `Channel._queue_bind`, when a producer or worker declares a queue | queue discovery |
//! | `unacked` | hash delivery tag → `[message, exchange, routing_key]` | `QoS.append` when a worker reserves a message (`ack_emulation`, on by default); removed at ack | `active` under [`ALL_QUEUES`] = `HLEN` |
//!
//! Priority steps are `PRIORITY_STEPS = [0, 3, 6, 9]` (the `priority_steps` option); a message's
//! priority is rounded down to a step (`Channel.priority`, by `bisect`), and step 0 uses the bare
//! queue name (`_q_for_pri`). The separator is `Channel.sep` (`sep` option), `\x06\x16`. Reading
//! only `LLEN <queue>` — what several exporters do — misses every message sent with a priority.
//!
//! Reserved messages are in one hash for all queues, so `active` is reported for
//! [`ALL_QUEUES`]. It counts the messages a worker has prefetched and not yet
//! acknowledged (all of them with `acks_late`, otherwise those not yet started) and messages a
//! killed worker left behind, until kombu restores them after `visibility_timeout` (1 h).
//!
//! # Round trips
//!
//! With configured queues: one pipeline (`LLEN` per queue and step, `LINDEX -1` per queue and
//! step when the enqueue-time header is configured, `HLEN unacked`). Without: a discovery
//! pipeline first, `SMEMBERS _kombu.binding.<exchange>` for each discovery exchange (`celery`,
//! Celery's `task_default_exchange`, unless configured).
//!
//! Discovery is partial, and that is Celery's layout: there is no registry of queues. Each
//! exchange has its own binding table, and a queue Celery creates on the fly for
//! `apply_async(queue="mail")` gets an exchange of its own name (`_kombu.binding.mail`), so only
//! the queues bound to the discovery exchanges are found. Finding every table would take a
//! keyspace scan (`KEYS`/`SCAN _kombu.binding.*`), which a monitor must not run against a
//! production Redis every interval. List the queues in `queues` (or their exchanges in
//! `exchanges`).
//!
//! # Oldest message
//!
//! A Celery message (protocol 2: `body`, `headers` with `task`, `id`, `eta`, `retries`, …,
//! `properties` with `delivery_info`, `priority`, `delivery_tag`) carries no enqueue time, and the
//! task id and delivery tag are random UUIDs, so by default the oldest age is unknown (`None`).
//! An application that stamps one in a header, e.g.
//!
//! ```python
//! @celery.signals.before_task_publish.connect
//! def stamp(headers=None, **_):
//!     headers["enqueued_at"] = time.time()
//! ```
//!
//! can set `enqueued_at_header` to that name: each priority list's tail message is read (through
//! one `EVAL` of [`reply::HEAD_FIELD`]: a message over 64 KiB is not sent, only the header's
//! value extracted inside Redis) and the
//! oldest stamp (Unix seconds, a JSON number or a numeric string) is reported. A tail without a
//! usable stamp is skipped. `eta` is not an enqueue time (and countdown messages are moved to the
//! worker's memory at once), so it is not used.
//!
//! # Progress signal and workers
//!
//! `processed`, `failed`, `workers` and `busy` are `None`: Celery counts nothing in Redis, and the
//! probe derives progress from the waiting depth draining. Workers leave one trace in Redis, their
//! remote-control binding (`_kombu.binding.celery.pidbox`, member `…<node>.celery.pidbox`), but it
//! is not a liveness signal: a warm shutdown removes it, a SIGKILLed worker's stays for as long as
//! any other worker refreshes the table (and forever when none does). Worker heartbeats travel
//! over Pub/Sub (`celeryev`) and are not stored; the pidbox subscriptions are `PSUBSCRIBE`
//! patterns, which `PUBSUB NUMPAT` does not count per pattern.
//!
//! # Unexpected data
//!
//! A queue list, binding set or `unacked` hash of the wrong type fails the read with
//! [`QueueError::Data`] naming the key. A binding member that is not three `sep`-separated fields
//! is skipped, as is a tail message that is not JSON or has no usable stamp.

use redis::aio::MultiplexedConnection;
use redis::Value;

use super::{reply, JobState, JobSystem, QueueError, QueueStats, Snapshot, System, ALL_QUEUES};
use crate::probe::BoxFuture;

/// kombu's `PRIORITY_STEPS`.
pub const DEFAULT_PRIORITY_STEPS: [u32; 4] = [0, 3, 6, 9];
/// kombu's `Channel.sep`, between a queue name and its priority, and between binding fields.
pub const DEFAULT_SEP: &str = "\x06\x16";
/// kombu's `Channel.unacked_key`.
pub const DEFAULT_UNACKED_KEY: &str = "unacked";
/// Celery's `task_default_exchange` (the default queue's name), whose bindings list its queues.
pub const DEFAULT_EXCHANGE: &str = "celery";

/// What a Celery check reads; the lead's `QueueOptions` maps onto this. `None` fields take
/// kombu's and Celery's defaults.
#[derive(Debug, Clone, Default)]
pub struct CeleryOptions {
    /// Queue names; `None` discovers them from the binding tables of `exchanges`.
    pub queues: Option<Vec<String>>,
    /// The `global_keyprefix` transport option.
    pub prefix: Option<String>,
    /// The `priority_steps` transport option (default `[0, 3, 6, 9]`).
    pub priority_steps: Option<Vec<u32>>,
    /// The `sep` transport option (default `\x06\x16`).
    pub sep: Option<String>,
    /// The `unacked_key` transport option (default `unacked`).
    pub unacked_key: Option<String>,
    /// Exchanges whose binding tables list the queues to discover (default `[celery]`).
    pub exchanges: Option<Vec<String>>,
    /// The message header in which the application stamps the enqueue time (Unix seconds);
    /// `None`: the oldest age is unknown.
    pub enqueued_at_header: Option<String>,
}

/// The Celery (Redis broker) layout reader.
#[derive(Debug, Clone)]
pub struct Celery {
    /// Configured queue names, in configured order; `None` discovers.
    queues: Option<Vec<String>>,
    /// `global_keyprefix`, prepended to every key.
    prefix: String,
    /// Sorted, without duplicates: each list is counted once.
    steps: Vec<u32>,
    /// Between a queue name and its priority step, and between binding fields.
    sep: String,
    /// The hash of reserved messages, without the prefix.
    unacked_key: String,
    /// Exchanges whose bindings list the queues, for discovery.
    exchanges: Vec<String>,
    /// Header holding the application's enqueue stamp, if any.
    enqueued_at_header: Option<String>,
}

impl Celery {
    /// A reader for the queues and transport options in `opts`.
    pub fn new(opts: &CeleryOptions) -> Celery {
        let mut steps = opts
            .priority_steps
            .clone()
            .unwrap_or_else(|| DEFAULT_PRIORITY_STEPS.to_vec());
        steps.sort_unstable();
        steps.dedup();
        if steps.is_empty() {
            // kombu cannot consume with no steps; the bare list is the one a message would use.
            steps.push(0);
        }
        Celery {
            queues: opts.queues.clone(),
            prefix: opts.prefix.clone().unwrap_or_default(),
            steps,
            sep: opts.sep.clone().unwrap_or_else(|| DEFAULT_SEP.to_string()),
            unacked_key: opts
                .unacked_key
                .clone()
                .unwrap_or_else(|| DEFAULT_UNACKED_KEY.to_string()),
            exchanges: opts
                .exchanges
                .clone()
                .unwrap_or_else(|| vec![DEFAULT_EXCHANGE.to_string()]),
            enqueued_at_header: opts.enqueued_at_header.clone(),
        }
    }

    /// The list holding `queue`'s messages of priority step `step` (kombu's `_q_for_pri`), with
    /// the global prefix.
    fn list_key(&self, queue: &str, step: u32) -> String {
        if step == 0 {
            format!("{}{queue}", self.prefix)
        } else {
            format!("{}{queue}{}{step}", self.prefix, self.sep)
        }
    }

    /// Queue names from the binding tables (round trip 1), sorted.
    async fn discover(&self, conn: &mut MultiplexedConnection) -> Result<Vec<String>, QueueError> {
        let keys: Vec<String> = self
            .exchanges
            .iter()
            .map(|ex| format!("{}_kombu.binding.{ex}", self.prefix))
            .collect();
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for key in &keys {
            pipe.cmd("SMEMBERS").arg(key);
        }
        let mut replies = Replies::new(pipe.query_async(conn).await?, keys.len())?;
        let mut names = Vec::new();
        for key in &keys {
            for member in members(replies.next(key)?, key)? {
                // `routing_key SEP pattern SEP queue` (`_queue_bind`); anything else is skipped.
                let fields: Vec<&str> = member.split(self.sep.as_str()).collect();
                if let [_, _, queue] = fields.as_slice() {
                    if !queue.is_empty() {
                        names.push((*queue).to_string());
                    }
                }
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn read(&self, conn: &mut MultiplexedConnection) -> Result<Snapshot, QueueError> {
        let mut discovered = None;
        let queues = match &self.queues {
            Some(names) => names.clone(),
            None => {
                let mut names = self.discover(conn).await?;
                discovered = super::cap_discovered(&mut names);
                names
            }
        };
        let lists: Vec<Vec<String>> = queues
            .iter()
            .map(|q| self.steps.iter().map(|&s| self.list_key(q, s)).collect())
            .collect();
        let unacked = format!("{}{}", self.prefix, self.unacked_key);

        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let all_lists: Vec<Vec<u8>> = lists
            .iter()
            .flatten()
            .map(|k| k.as_bytes().to_vec())
            .collect();
        for key in lists.iter().flatten() {
            pipe.cmd("LLEN").arg(key);
        }
        if let Some(header) = &self.enqueued_at_header {
            if !all_lists.is_empty() {
                reply::push_heads(&mut pipe, &all_lists, -1, header);
            }
        }
        pipe.cmd("HLEN").arg(&unacked);
        let heads_sent = usize::from(self.enqueued_at_header.is_some() && !all_lists.is_empty());
        let mut replies = Replies::new(
            pipe.query_async(conn).await?,
            all_lists.len() + heads_sent + 1,
        )?;
        let mut waiting_per_list = Vec::with_capacity(all_lists.len());
        for key in lists.iter().flatten() {
            waiting_per_list.push(count(replies.next(key)?, key)?);
        }
        let mut stamps: Vec<Option<f64>> = vec![None; all_lists.len()];
        if let Some(header) = &self.enqueued_at_header {
            if !all_lists.is_empty() {
                let heads = reply::heads(replies.next("EVAL")?, all_lists.len())?;
                for (slot, head) in stamps.iter_mut().zip(heads) {
                    *slot = match head {
                        Some(reply::Head::Whole(m)) => stamp(&m, header),
                        Some(reply::Head::Field(v)) => stamp_value(&v),
                        None => None,
                    };
                }
            }
        }
        let mut per_list = waiting_per_list.into_iter().zip(stamps);

        let mut stats = Vec::with_capacity(queues.len() + 1);
        for (name, keys) in queues.iter().zip(&lists) {
            let mut waiting = 0u64;
            let mut oldest: Option<f64> = None;
            for _ in keys {
                let Some((n, stamp)) = per_list.next() else {
                    return Err(QueueError::Data(
                        "celery: pipeline reply ended early".into(),
                    ));
                };
                waiting = waiting.saturating_add(n);
                oldest = match (oldest, stamp) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            stats.push(QueueStats {
                name: name.clone(),
                depths: vec![(JobState::Waiting, waiting)],
                oldest_enqueued_at: oldest,
            });
        }
        let active = count(replies.next(&unacked)?, &unacked)?;
        stats.push(QueueStats {
            name: ALL_QUEUES.to_string(),
            depths: vec![(JobState::Active, active)],
            oldest_enqueued_at: None,
        });

        Ok(Snapshot {
            queues: stats,
            processed: None,
            failed: None,
            workers: None,
            busy: None,
            discovered,
        })
    }
}

impl JobSystem for Celery {
    fn system(&self) -> System {
        System::Celery
    }

    fn collect<'a>(
        &'a self,
        conn: &'a mut MultiplexedConnection,
    ) -> BoxFuture<'a, Result<Snapshot, QueueError>> {
        Box::pin(self.read(conn))
    }
}

/// The enqueue stamp in a kombu message's `headers.<header>`: Unix seconds as a JSON number or a
/// numeric string. `None` for anything else, including a message that is not JSON.
pub fn stamp(message: &[u8], header: &str) -> Option<f64> {
    let msg: serde_json::Value = serde_json::from_slice(message).ok()?;
    stamp_value(msg.get("headers")?.get(header)?)
}

/// Unix seconds from a stamp's JSON value: a number or a numeric string.
fn stamp_value(v: &serde_json::Value) -> Option<f64> {
    let secs = match v {
        serde_json::Value::Number(n) => n.as_f64()?,
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then_some(secs)
}

/// The replies of one pipeline, taken in the order the commands were added.
struct Replies(std::vec::IntoIter<Value>);

impl Replies {
    /// `sent` is the number of commands: another number of replies is not Redis.
    fn new(values: Vec<Value>, sent: usize) -> Result<Replies, QueueError> {
        if values.len() != sent {
            return Err(QueueError::Data(format!(
                "celery: pipeline answered {} replies to {sent} commands",
                values.len()
            )));
        }
        Ok(Replies(values.into_iter()))
    }

    /// The next reply; `what` names the key if Redis answered fewer replies than commands.
    fn next(&mut self, what: &str) -> Result<Value, QueueError> {
        self.0.next().ok_or_else(|| {
            QueueError::Data(format!("celery: no reply for \"{}\"", what.escape_debug()))
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(steps: Option<Vec<u32>>, prefix: Option<&str>) -> Celery {
        Celery::new(&CeleryOptions {
            priority_steps: steps,
            prefix: prefix.map(str::to_string),
            ..CeleryOptions::default()
        })
    }

    #[test]
    fn priority_lists_are_named_as_kombu_names_them() {
        let c = reader(None, None);
        let keys: Vec<String> = c.steps.iter().map(|&s| c.list_key("mail", s)).collect();
        assert_eq!(
            keys,
            ["mail", "mail\x06\x163", "mail\x06\x166", "mail\x06\x169"]
        );
        let c = reader(Some(vec![9, 0, 5, 5]), Some("app:"));
        let keys: Vec<String> = c.steps.iter().map(|&s| c.list_key("q", s)).collect();
        assert_eq!(keys, ["app:q", "app:q\x06\x165", "app:q\x06\x169"]);
        assert_eq!(reader(Some(vec![]), None).steps, [0]);
    }

    #[test]
    fn reads_a_stamp_only_from_the_named_header() {
        let msg = br#"{"body": "e30=", "headers": {"task": "t", "eta": 5, "enqueued_at": 1700000000.25}, "properties": {}}"#;
        assert_eq!(stamp(msg, "enqueued_at"), Some(1_700_000_000.25));
        assert_eq!(stamp(msg, "eta"), Some(5.0));
        assert_eq!(stamp(msg, "missing"), None);
        assert_eq!(stamp(br#"{"headers": {"t": "12.5"}}"#, "t"), Some(12.5));
        for junk in [
            &b"not json"[..],
            br#"{"headers": {"t": "soon"}}"#,
            br#"{"headers": {"t": -1}}"#,
            br#"{"headers": {"t": 1e400}}"#,
            br#"{"headers": ["t"]}"#,
            br#"[1, 2]"#,
        ] {
            assert_eq!(stamp(junk, "t"), None);
        }
    }
}
