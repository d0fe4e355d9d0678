//! The Celery canary: one task message in Celery's message protocol 2, pushed on a queue of
//! kombu's Redis transport, found again in the queue, in kombu's reservation records and in the
//! Redis result backend. Targets Celery 5 / kombu 5.7 (the layout [`crate::probe::queue::celery`]
//! reads).
//!
//! # What is written
//!
//! `LPUSH <prefix><queue> <message>`, what kombu's `Channel._put` does for a message of priority 0
//! (the bare list; canaryd sends no priority). `<message>` is the JSON envelope `apply_async`
//! produces (checked field by field against a captured one in `tests/canary_celery.rs`):
//!
//! - `body`: base64 of `[[<check>], {}, {"callbacks": null, "errbacks": null, "chain": null,
//!   "chord": null}]`: the task runs with one positional argument, the check's name (the
//!   default task, `celery.accumulate`, built into every Celery app, returns it and does nothing
//!   else);
//! - `headers`: `lang` `py`, `task`, `id` and `root_id` = the canary id, `expires` = `keep` after
//!   the enqueue time (ISO 8601, UTC: a worker that receives the canary later discards it, records it as
//!   `REVOKED` and never runs it), `retries` 0, `timelimit` `[null, null]`, `argsrepr` (the check,
//!   Python repr), `origin` `canaryd`, and the other protocol-2 headers at Celery's defaults;
//! - `properties`: `correlation_id` = the canary id, `delivery_mode` 2, `expiration` (`keep` in
//!   milliseconds, as Celery writes it next to `expires`), `delivery_info` {exchange `""`,
//!   `routing_key` = the queue}, `priority` 0, `body_encoding` base64, `delivery_tag` = the canary
//!   id (kombu's reservation records are keyed by it, so they are found without a scan). `reply_to`
//!   is the canary id too: only the `rpc://` result backend uses it, and canaryd does not read that
//!   backend.
//!
//! Strings are written as UTF-8 where Python's `json.dumps` escapes non-ASCII as `\uXXXX`; kombu
//! reads both.
//!
//! canaryd does not declare the queue (kombu's `_kombu.binding.*` tables): the worker consuming
//! the queue declares it.
//!
//! # What is read (`look`: one `MULTI`/`EXEC`, so the records are seen at one instant)
//!
//! | key | read | meaning |
//! |---|---|---|
//! | `<result_prefix>celery-task-meta-<id>` | `GET` | the Redis result backend's record: `status` SUCCESS / FAILURE / REVOKED / REJECTED / RETRY / STARTED, `date_done`, `result` (`exc_type`, `exc_message` on failure), `traceback` |
//! | `<prefix><queue>` | `LPOS … RANK -1 MAXLEN n`, `LPOS … RANK 1 MAXLEN n`, `LLEN` | still queued: the exact message among the `n` oldest or the `n` newest entries |
//! | `<prefix>unacked` | `HEXISTS <delivery tag>` | a worker reserved the message (kombu's `QoS.append`), not yet acknowledged |
//! | `<prefix>unacked_index` | `ZSCORE <delivery tag>` | when the worker reserved it (kombu writes `time.time()`) |
//!
//! The verdict, in this order: a result record decides (SUCCESS → `Finished`, FAILURE, REVOKED,
//! REJECTED, RETRY → `Failed` with `exc_type: exc_message`, STARTED → `Running`); else the message
//! in the list → `Waiting`; else a reservation → `Running`; else, when the list is longer than the
//! `2 n` entries searched, `Waiting` (it may be in the middle of a backlog that long; the bound
//! keeps each look O(n)); else the message left the queue and nothing recorded an end: with a
//! result backend that is `Running` (Celery acknowledges a task just before running it, and
//! writes the result just after), without one it is `Finished` (see below).
//!
//! # What is measured, how precisely
//!
//! - End: `date_done` of the result record, the worker's clock, microseconds.
//! - Start: not recorded by Celery. `STARTED` exists only with `task_track_started`, and carries
//!   no time. What kombu records is the reservation, `unacked_index`'s score (microseconds): the
//!   moment a worker took the message off the list. It is reported as `started_at` while the
//!   message is reserved, and is gone once the worker acknowledges it (early acknowledgement: at
//!   the start of the run), so a look after the end has no start: `Finished { started_at: None }`.
//!   Pickup is therefore known to the precision of canaryd's polling unless a look happens to
//!   land in the reservation window; with a prefetching worker a reserved message can still wait
//!   in the worker's memory behind other tasks.
//! - Enqueue: canaryd's own time (Celery's message carries none).
//!
//! # Without a result backend
//!
//! (`result_backend: false`.) Nothing records an end or a failure. What can be known is pickup:
//! the message left the list and no worker holds it reserved, i.e. a worker acknowledged it,
//! which Celery does right before running it. That is reported as `Finished` with no times (the
//! probe takes the time it saw it): for `celery.accumulate`, which does nothing, acknowledgement
//! and end are a few milliseconds apart. A failing task cannot be seen, nor a canary deleted from
//! the queue by someone else (it reads as picked up).
//!
//! # What cannot be known
//!
//! - A message lost after leaving the list (a worker killed while running it, with early
//!   acknowledgement; a flushed queue with a backend configured) reads as `Running`, never
//!   `Missing`: Celery keeps no record of running tasks in Redis. The probe's deadline turns it
//!   into `too_slow`.
//! - A worker hung or stopped while blocked in `BRPOP` (kombu polls with a 1 s timeout) is still
//!   handed the next message by Redis: that one canary leaves the list without being reserved
//!   and reads as `Running` (then `too_slow`), not `Waiting`; the following ones wait.
//! - The result backend must be in the same Redis database as the broker (one connection);
//!   its key prefix (the backend's own `global_keyprefix`) is `result_prefix`. The `rpc://`
//!   and other backends are not read.
//! - Result expiry is the worker's `result_expires` (default one day), not set per message: a
//!   result the worker writes after `clean` (the canary was reserved in the worker's memory) stays
//!   that long. `expires` bounds how late a canary can run at all.
//!
//! # Damaged data
//!
//! A result record that is not JSON, lacks `status`, or has a status Celery does not write, and
//! keys of the wrong type, are [`QueueError::Data`] naming the key.

use std::time::SystemTime;

use redis::aio::MultiplexedConnection;
use redis::Value;
use serde::Serialize;

use super::system::{from_unix_seconds, Canary, CanarySystem, Seen};
use crate::probe::queue::{QueueError, System};
use crate::probe::BoxFuture;

/// The default task: built into every Celery app (`celery.app.builtins`), returns its arguments.
pub const DEFAULT_TASK: &str = "celery.accumulate";
/// Entries searched at each end of the queue list by one look.
pub const DEFAULT_SCAN: u32 = 1000;
/// kombu's `Channel.unacked_key`.
const UNACKED: &str = "unacked";
/// kombu's `Channel.unacked_index_key`.
const UNACKED_INDEX: &str = "unacked_index";
/// The Redis result backend's `task_keyprefix`.
const RESULT_KEY: &str = "celery-task-meta-";

/// The Celery canary system.
#[derive(Debug, Clone)]
pub struct CeleryCanary {
    /// kombu's `global_keyprefix` broker transport option (prefixes the queue and the
    /// reservation keys).
    pub prefix: String,
    /// The result backend's `global_keyprefix` (`result_backend_transport_options`).
    pub result_prefix: String,
    /// Whether the workers store results in the Redis result backend (same database).
    pub result_backend: bool,
    /// Entries searched at each end of the queue list.
    pub scan: u32,
}

impl Default for CeleryCanary {
    fn default() -> Self {
        CeleryCanary {
            prefix: String::new(),
            result_prefix: String::new(),
            result_backend: true,
            scan: DEFAULT_SCAN,
        }
    }
}

/// Protocol 2's envelope as kombu's Redis transport stores it; field order is `apply_async`'s.
#[derive(Serialize)]
struct Envelope<'a> {
    body: String,
    #[serde(rename = "content-encoding")]
    content_encoding: &'a str,
    #[serde(rename = "content-type")]
    content_type: &'a str,
    headers: Headers<'a>,
    properties: Properties<'a>,
}

#[derive(Serialize)]
struct Headers<'a> {
    lang: &'a str,
    task: &'a str,
    id: &'a str,
    shadow: Option<&'a str>,
    eta: Option<&'a str>,
    expires: String,
    group: Option<&'a str>,
    group_index: Option<u32>,
    retries: u32,
    timelimit: [Option<f64>; 2],
    root_id: &'a str,
    parent_id: Option<&'a str>,
    argsrepr: String,
    kwargsrepr: &'a str,
    origin: &'a str,
    ignore_result: Option<bool>,
    replaced_task_nesting: u32,
    stamped_headers: Option<Vec<String>>,
    stamps: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
struct Properties<'a> {
    correlation_id: &'a str,
    reply_to: &'a str,
    delivery_mode: u8,
    expiration: String,
    delivery_info: DeliveryInfo<'a>,
    priority: u8,
    body_encoding: &'a str,
    delivery_tag: &'a str,
}

#[derive(Serialize)]
struct DeliveryInfo<'a> {
    exchange: &'a str,
    routing_key: &'a str,
}

/// The body's third element: no workflow around the task.
#[derive(Serialize)]
struct Embed {
    callbacks: Option<()>,
    errbacks: Option<()>,
    chain: Option<()>,
    chord: Option<()>,
}

/// Python's `json.dumps` separators (`", "`, `": "`), so the message reads like kombu's own.
struct PythonJson;

impl serde_json::ser::Formatter for PythonJson {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

fn python_json(value: &impl Serialize) -> Result<String, QueueError> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonJson);
    value
        .serialize(&mut ser)
        .map_err(|e| QueueError::Data(format!("celery message: {e}")))?;
    String::from_utf8(out).map_err(|_| QueueError::Data("celery message: not UTF-8".into()))
}

/// A string as Python's `repr` writes it (what `argsrepr` holds).
fn python_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// `datetime.isoformat()` of an aware UTC time, as Celery writes `expires`.
fn iso_utc(t: SystemTime) -> String {
    let t: chrono::DateTime<chrono::Utc> = t.into();
    t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// `date_done`: ISO 8601 with an offset (Celery 5's aware `app.now()`), or naive UTC.
pub(super) fn parse_iso(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.into());
    }
    let naive = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    Some(naive.and_utc().into())
}

impl CeleryCanary {
    fn queue_key(&self, canary: &Canary) -> String {
        format!("{}{}", self.prefix, canary.queue)
    }

    fn result_key(&self, canary: &Canary) -> String {
        format!("{}{RESULT_KEY}{}", self.result_prefix, canary.id)
    }

    fn unacked_key(&self) -> String {
        format!("{}{UNACKED}", self.prefix)
    }

    fn unacked_index_key(&self) -> String {
        format!("{}{UNACKED_INDEX}", self.prefix)
    }
}

/// A pipeline reply's command replies, with a `WRONGTYPE` named by its key.
fn checked(v: Value, key: &str) -> Result<Value, QueueError> {
    match v {
        Value::ServerError(e) if e.code() == "WRONGTYPE" => Err(QueueError::Data(format!(
            "key {} holds the wrong type of value",
            key.escape_debug()
        ))),
        Value::ServerError(e) => Err(QueueError::Redis(e.into())),
        v => Ok(v),
    }
}

pub(super) fn exec_replies(reply: Value, expected: usize) -> Result<Vec<Value>, QueueError> {
    // An atomic pipeline answers one array (EXEC's) holding the commands' replies.
    let inner = match reply {
        Value::Array(mut outer) if outer.len() == 1 => outer.pop().unwrap_or(Value::Nil),
        other => other,
    };
    match inner {
        Value::Array(items) if items.len() == expected => Ok(items),
        Value::ServerError(e) => Err(QueueError::Redis(e.into())),
        _ => Err(QueueError::Data(format!(
            "transaction did not answer {expected} replies"
        ))),
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

fn float(v: &Value) -> Option<f64> {
    match v {
        Value::Double(f) => Some(*f),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        Value::Int(i) => Some(*i as f64),
        _ => None,
    }
}

/// The error text of a FAILURE / REVOKED / REJECTED / RETRY record: `exc_type: exc_message`
/// (Celery's JSON form of an exception), else the traceback's last line, else the status.
fn error_text(meta: &serde_json::Value, status: &str) -> String {
    let result = &meta["result"];
    let message = match &result["exc_message"] {
        serde_json::Value::Array(parts) => parts
            .iter()
            .map(|p| match p {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", "),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    if let Some(kind) = result["exc_type"].as_str() {
        return if message.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}: {message}")
        };
    }
    if let Some(last) = meta["traceback"]
        .as_str()
        .and_then(|t| t.lines().rev().find(|l| !l.trim().is_empty()))
    {
        return last.trim().to_string();
    }
    match result {
        serde_json::Value::String(s) if !s.is_empty() => format!("{status}: {s}"),
        _ => status.to_string(),
    }
}

/// The verdict of a result record; `None` for states that say nothing yet (PENDING, RECEIVED).
pub(super) fn from_result(raw: &[u8], key: &str) -> Result<Option<Seen>, QueueError> {
    let bad = |what: &str| QueueError::Data(format!("key {}: {what}", key.escape_debug()));
    let meta: serde_json::Value =
        serde_json::from_slice(raw).map_err(|_| bad("not a JSON result record"))?;
    let status = meta["status"]
        .as_str()
        .ok_or_else(|| bad("result record without a status"))?;
    let ended_at = meta["date_done"].as_str().and_then(parse_iso);
    Ok(match status {
        "SUCCESS" => Some(Seen::Finished {
            started_at: None,
            ended_at,
        }),
        "FAILURE" | "REVOKED" | "REJECTED" | "RETRY" => Some(Seen::Failed {
            error: error_text(&meta, status),
            started_at: None,
            ended_at,
        }),
        "STARTED" => Some(Seen::Running { started_at: None }),
        "PENDING" | "RECEIVED" => None,
        _ => return Err(bad("unknown task status")),
    })
}

/// What the queue and reservation replies say, once no result record decided.
struct Broker {
    queued: bool,
    /// The list is longer than the entries searched at both ends.
    beyond_scan: bool,
    reserved: bool,
    reserved_at: Option<SystemTime>,
}

fn from_broker(b: &Broker, result_backend: bool) -> Seen {
    if b.queued {
        Seen::Waiting
    } else if b.reserved {
        Seen::Running {
            started_at: b.reserved_at,
        }
    } else if b.beyond_scan {
        Seen::Waiting
    } else if result_backend {
        Seen::Running { started_at: None }
    } else {
        Seen::Finished {
            started_at: None,
            ended_at: None,
        }
    }
}

impl CanarySystem for CeleryCanary {
    fn system(&self) -> System {
        System::Celery
    }

    fn prepare(&self, canary: &Canary) -> Result<String, QueueError> {
        let body = python_json(&(
            [canary.check.as_str()],
            serde_json::Map::new(),
            Embed {
                callbacks: None,
                errbacks: None,
                chain: None,
                chord: None,
            },
        ))?;
        let expires_at = canary
            .enqueued_at
            .checked_add(canary.keep)
            .unwrap_or(canary.enqueued_at);
        let envelope = Envelope {
            body: data_encoding::BASE64.encode(body.as_bytes()),
            content_encoding: "utf-8",
            content_type: "application/json",
            headers: Headers {
                lang: "py",
                task: &canary.task,
                id: &canary.id,
                shadow: None,
                eta: None,
                expires: iso_utc(expires_at),
                group: None,
                group_index: None,
                retries: 0,
                timelimit: [None, None],
                root_id: &canary.id,
                parent_id: None,
                argsrepr: format!("[{}]", python_repr(&canary.check)),
                kwargsrepr: "{}",
                origin: "canaryd",
                ignore_result: None,
                replaced_task_nesting: 0,
                stamped_headers: None,
                stamps: serde_json::Map::new(),
            },
            properties: Properties {
                correlation_id: &canary.id,
                reply_to: &canary.id,
                delivery_mode: 2,
                expiration: canary.keep.as_millis().to_string(),
                delivery_info: DeliveryInfo {
                    exchange: "",
                    routing_key: &canary.queue,
                },
                priority: 0,
                body_encoding: "base64",
                delivery_tag: &canary.id,
            },
        };
        python_json(&envelope)
    }

    fn enqueue<'a>(
        &'a self,
        conn: &'a mut MultiplexedConnection,
        canary: &'a Canary,
    ) -> BoxFuture<'a, Result<(), QueueError>> {
        Box::pin(async move {
            let key = self.queue_key(canary);
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            pipe.cmd("LPUSH").arg(&key).arg(&canary.payload);
            let reply = match pipe.query_async(conn).await? {
                Value::Array(mut items) if items.len() == 1 => items.pop().unwrap_or(Value::Nil),
                _ => return Err(QueueError::Data("LPUSH answered no reply".into())),
            };
            checked(reply, &key).map(|_| ())
        })
    }

    fn look<'a>(
        &'a self,
        conn: &'a mut MultiplexedConnection,
        canary: &'a Canary,
    ) -> BoxFuture<'a, Result<Seen, QueueError>> {
        Box::pin(async move {
            let (result, queue) = (self.result_key(canary), self.queue_key(canary));
            let (unacked, index) = (self.unacked_key(), self.unacked_index_key());
            let scan = self.scan.max(1);
            let mut pipe = redis::pipe();
            pipe.atomic().ignore_errors();
            pipe.cmd("GET").arg(&result);
            for rank in [-1i64, 1] {
                pipe.cmd("LPOS")
                    .arg(&queue)
                    .arg(&canary.payload)
                    .arg("RANK")
                    .arg(rank)
                    .arg("MAXLEN")
                    .arg(scan);
            }
            pipe.cmd("LLEN").arg(&queue);
            pipe.cmd("HEXISTS").arg(&unacked).arg(&canary.id);
            pipe.cmd("ZSCORE").arg(&index).arg(&canary.id);
            let mut replies = exec_replies(pipe.query_async(conn).await?, 6)?.into_iter();
            let mut next = |key: &str| checked(replies.next().unwrap_or(Value::Nil), key);

            let record = next(&result)?;
            let oldest_end = next(&queue)?;
            let newest_end = next(&queue)?;
            let length = next(&queue)?;
            let reserved = next(&unacked)?;
            let reserved_at = next(&index)?;

            if self.result_backend {
                match record {
                    Value::Nil => {}
                    Value::BulkString(raw) => {
                        if let Some(seen) = from_result(&raw, &result)? {
                            return Ok(seen);
                        }
                    }
                    _ => {
                        return Err(QueueError::Data(format!(
                            "key {} is not a result record",
                            result.escape_debug()
                        )))
                    }
                }
            }
            let broker = Broker {
                queued: int(&oldest_end).is_some() || int(&newest_end).is_some(),
                beyond_scan: int(&length).unwrap_or(0) > 2 * i64::from(scan),
                reserved: int(&reserved) == Some(1),
                reserved_at: float(&reserved_at).and_then(from_unix_seconds),
            };
            Ok(from_broker(&broker, self.result_backend))
        })
    }

    fn clean<'a>(
        &'a self,
        conn: &'a mut MultiplexedConnection,
        canary: &'a Canary,
    ) -> BoxFuture<'a, Result<(), QueueError>> {
        Box::pin(async move {
            let (result, queue) = (self.result_key(canary), self.queue_key(canary));
            let (unacked, index) = (self.unacked_key(), self.unacked_index_key());
            let mut pipe = redis::pipe();
            pipe.atomic().ignore_errors();
            pipe.cmd("DEL").arg(&result);
            pipe.cmd("LREM").arg(&queue).arg(0).arg(&canary.payload);
            pipe.cmd("HDEL").arg(&unacked).arg(&canary.id);
            pipe.cmd("ZREM").arg(&index).arg(&canary.id);
            let replies = exec_replies(pipe.query_async(conn).await?, 4)?;
            for (reply, key) in replies.into_iter().zip([&result, &queue, &unacked, &index]) {
                checked(reply, key)?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn canary(check: &str) -> Canary {
        Canary {
            id: "canaryd-0123456789abcdef".into(),
            check: check.into(),
            queue: "celery".into(),
            task: DEFAULT_TASK.into(),
            enqueued_at: SystemTime::UNIX_EPOCH + Duration::from_micros(1_796_380_000_123_456),
            keep: Duration::from_secs(600),
            payload: String::new(),
        }
    }

    #[test]
    fn prepare_writes_protocol_2_as_kombu_stores_it() {
        let payload = CeleryCanary::default().prepare(&canary("nightly")).unwrap();
        let body = data_encoding::BASE64.encode(
            br#"[["nightly"], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]"#,
        );
        let expected = format!(
            concat!(
                r#"{{"body": "{body}", "content-encoding": "utf-8", "content-type": "application/json", "#,
                r#""headers": {{"lang": "py", "task": "celery.accumulate", "id": "canaryd-0123456789abcdef", "#,
                r#""shadow": null, "eta": null, "expires": "2026-12-04T10:36:40.123456+00:00", "group": null, "#,
                r#""group_index": null, "retries": 0, "timelimit": [null, null], "#,
                r#""root_id": "canaryd-0123456789abcdef", "parent_id": null, "argsrepr": "['nightly']", "#,
                r#""kwargsrepr": "{{}}", "origin": "canaryd", "ignore_result": null, "#,
                r#""replaced_task_nesting": 0, "stamped_headers": null, "stamps": {{}}}}, "#,
                r#""properties": {{"correlation_id": "canaryd-0123456789abcdef", "#,
                r#""reply_to": "canaryd-0123456789abcdef", "delivery_mode": 2, "expiration": "600000", "#,
                r#""delivery_info": {{"exchange": "", "routing_key": "celery"}}, "priority": 0, "#,
                r#""body_encoding": "base64", "delivery_tag": "canaryd-0123456789abcdef"}}}}"#
            ),
            body = body
        );
        assert_eq!(payload, expected);
    }

    #[test]
    fn argsrepr_is_pythons_repr() {
        assert_eq!(python_repr("a"), "'a'");
        assert_eq!(python_repr("it's"), "\"it's\"");
        assert_eq!(python_repr("'\"\\\n"), "'\\'\"\\\\\\n'");
        assert_eq!(python_repr("\u{1}é"), "'\\x01é'");
    }

    #[test]
    fn result_records_give_verdicts_and_damaged_ones_name_the_key() {
        let key = "celery-task-meta-x";
        let ok = br#"{"status": "SUCCESS", "result": ["c"], "traceback": null, "children": [], "date_done": "2026-12-04T11:00:00.250000+00:00", "task_id": "x"}"#;
        let ended = SystemTime::UNIX_EPOCH + Duration::from_micros(1_796_382_000_250_000);
        assert_eq!(
            from_result(ok, key).unwrap(),
            Some(Seen::Finished {
                started_at: None,
                ended_at: Some(ended)
            })
        );
        let failed = br#"{"status": "FAILURE", "result": {"exc_type": "ValueError", "exc_message": ["boom"], "exc_module": "builtins"}, "traceback": "Traceback...\nValueError: boom\n", "date_done": "2026-12-04T11:00:00.25"}"#;
        assert_eq!(
            from_result(failed, key).unwrap(),
            Some(Seen::Failed {
                error: "ValueError: boom".into(),
                started_at: None,
                ended_at: Some(ended)
            })
        );
        let revoked = br#"{"status": "REVOKED", "result": {"exc_type": "TaskRevokedError", "exc_message": ["expired"]}, "date_done": null}"#;
        assert!(matches!(
            from_result(revoked, key).unwrap(),
            Some(Seen::Failed { error, ended_at: None, .. }) if error == "TaskRevokedError: expired"
        ));
        let traceback_only =
            br#"{"status": "FAILURE", "result": 7, "traceback": "x\nKeyError: 'k'\n\n"}"#;
        assert!(matches!(
            from_result(traceback_only, key).unwrap(),
            Some(Seen::Failed { error, .. }) if error == "KeyError: 'k'"
        ));
        assert_eq!(
            from_result(br#"{"status": "STARTED", "result": {"pid": 1}}"#, key).unwrap(),
            Some(Seen::Running { started_at: None })
        );
        assert_eq!(from_result(br#"{"status": "PENDING"}"#, key).unwrap(), None);
        // A date that is not a date is no end time, not an error.
        assert!(matches!(
            from_result(br#"{"status": "SUCCESS", "date_done": "soon"}"#, key).unwrap(),
            Some(Seen::Finished { ended_at: None, .. })
        ));
        for damaged in [
            &b"not json"[..],
            b"[]",
            b"{}",
            b"{\"status\": 3}",
            b"{\"status\": \"EXPLODED\"}",
            b"\xff\xfe",
        ] {
            let Err(QueueError::Data(msg)) = from_result(damaged, key) else {
                panic!("{damaged:?} accepted")
            };
            assert!(msg.contains(key), "{msg}");
        }
    }

    #[test]
    fn the_broker_records_decide_without_a_result() {
        let b = |queued, beyond_scan, reserved, reserved_at| Broker {
            queued,
            beyond_scan,
            reserved,
            reserved_at,
        };
        let t = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(5));
        assert_eq!(
            from_broker(&b(true, true, false, None), true),
            Seen::Waiting
        );
        assert_eq!(
            from_broker(&b(false, false, true, t), true),
            Seen::Running { started_at: t }
        );
        assert_eq!(
            from_broker(&b(false, true, false, None), true),
            Seen::Waiting
        );
        assert_eq!(
            from_broker(&b(false, false, false, None), true),
            Seen::Running { started_at: None }
        );
        assert_eq!(
            from_broker(&b(false, false, false, None), false),
            Seen::Finished {
                started_at: None,
                ended_at: None
            }
        );
    }

    #[test]
    fn odd_reply_shapes_are_errors_not_panics() {
        assert!(exec_replies(Value::Nil, 6).is_err());
        assert!(exec_replies(Value::Array(vec![Value::Nil; 5]), 6).is_err());
        assert!(exec_replies(Value::Array(vec![Value::Array(vec![Value::Nil; 6])]), 6).is_ok());
        assert_eq!(float(&Value::BulkString(b"1.5".to_vec())), Some(1.5));
        assert_eq!(float(&Value::BulkString(b"nan?".to_vec())), None);
        assert_eq!(int(&Value::Okay), None);
    }
}
