//! `system: redis` — plain Redis keys used as queues by hand-rolled job systems.
//!
//! Each listed key (and each key a `patterns` SCAN finds) is one queue named after the key. Its
//! type is detected and its depth read the way that type counts:
//!
//! | type   | waiting                                   | active                     |
//! |--------|-------------------------------------------|----------------------------|
//! | list   | `LLEN`                                    |                            |
//! | zset   | `ZCARD`                                   |                            |
//! | set    | `SCARD`                                   |                            |
//! | hash   | `HLEN`                                    |                            |
//! | stream | lag of the most-behind consumer group (`XINFO GROUPS`), `XLEN` without groups | entries pending in all groups |
//!
//! A listed key that does not exist is an empty queue (a drained list disappears in Redis).
//! Generic keys carry no enqueue times, processed counters or workers: progress is derived from
//! the waiting depth draining.
//!
//! Round trips: SCAN calls for patterns (one per 1,000 keys examined, at most
//! [`MAX_SCAN_CALLS`] per pattern), one pipeline of `TYPE`, one pipeline of counts.

use redis::aio::MultiplexedConnection;
use redis::Value;

use super::{JobState, JobSystem, QueueError, QueueStats, Snapshot, System};
use crate::probe::BoxFuture;

/// Bound on SCAN calls per pattern, so a pattern over a huge keyspace cannot stall a run.
pub const MAX_SCAN_CALLS: usize = 50;
/// Bound on the keys one check reads.
pub const MAX_KEYS: usize = 1_000;

/// Reads listed keys and keys matching patterns.
#[derive(Debug, Clone)]
pub struct GenericRedis {
    keys: Vec<String>,
    patterns: Vec<String>,
}

impl GenericRedis {
    /// Reads `keys` and whatever `patterns` match.
    pub fn new(keys: Vec<String>, patterns: Vec<String>) -> GenericRedis {
        GenericRedis { keys, patterns }
    }

    /// The listed keys, then what the patterns found (sorted per pattern, without repeats), at
    /// most [`MAX_KEYS`]; with how many there were when some were left out.
    async fn discover(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> Result<(Vec<String>, Option<u64>), QueueError> {
        let mut keys = self.keys.clone();
        // A set beside the list: a membership test per found key stays O(1), so 100k matches
        // cost 100k lookups rather than 100k scans of the list.
        let mut seen: std::collections::HashSet<String> = keys.iter().cloned().collect();
        let mut truncated = false;
        for pattern in &self.patterns {
            let mut cursor: u64 = 0;
            let mut found = Vec::new();
            for _ in 0..MAX_SCAN_CALLS {
                let reply: Value = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(conn)
                    .await?;
                let (next, batch) = super::reply::scan(reply)?;
                // Keys that are not UTF-8 cannot be named in a configuration or a label.
                found.extend(batch.into_iter().filter_map(|k| String::from_utf8(k).ok()));
                cursor = next;
                if keys.len() + found.len() > MAX_KEYS {
                    truncated = true;
                    break;
                }
                if cursor == 0 {
                    break;
                }
            }
            found.sort();
            for k in found {
                if seen.insert(k.clone()) {
                    keys.push(k);
                }
            }
        }
        let discovered = (truncated || keys.len() > MAX_KEYS).then_some(keys.len() as u64);
        keys.truncate(MAX_KEYS);
        Ok((keys, discovered))
    }

    async fn read(&self, conn: &mut MultiplexedConnection) -> Result<Snapshot, QueueError> {
        let (keys, discovered) = self.discover(conn).await?;
        if keys.is_empty() {
            return Ok(Snapshot::default());
        }
        let mut types = redis::pipe();
        for k in &keys {
            types.cmd("TYPE").arg(k);
        }
        // Read as values, not `Vec<String>`: redis-rs would turn a map or an array into text
        // and a server that is not Redis could pass as a known type.
        let replies: Vec<Value> = types.query_async(conn).await?;
        if replies.len() != keys.len() {
            return Err(QueueError::Data(format!(
                "TYPE: {} replies to {} commands",
                replies.len(),
                keys.len()
            )));
        }
        let types = keys
            .iter()
            .zip(replies)
            .map(|(k, v)| match v {
                Value::SimpleString(t) => Ok(t),
                Value::BulkString(t) => String::from_utf8(t).map_err(|_| {
                    QueueError::Data(format!("unexpected reply to TYPE \"{}\"", show(k)))
                }),
                _ => Err(QueueError::Data(format!(
                    "unexpected reply to TYPE \"{}\"",
                    show(k)
                ))),
            })
            .collect::<Result<Vec<String>, QueueError>>()?;
        if let Some((k, t)) = keys.iter().zip(&types).find(|(_, t)| {
            !matches!(
                t.as_str(),
                "list" | "zset" | "set" | "hash" | "stream" | "none"
            )
        }) {
            return Err(QueueError::Data(format!(
                "key \"{}\" is a {t}, not a list, zset, set, hash or stream",
                show(k)
            )));
        }
        if types.iter().all(|t| t == "none") {
            let queues = keys
                .iter()
                .map(|k| QueueStats {
                    name: k.clone(),
                    depths: vec![(JobState::Waiting, 0)],
                    oldest_enqueued_at: None,
                })
                .collect();
            return Ok(Snapshot {
                queues,
                discovered,
                ..Snapshot::default()
            });
        }

        let mut counts = redis::pipe();
        for (k, t) in keys.iter().zip(&types) {
            match t.as_str() {
                "list" => counts.cmd("LLEN").arg(k),
                "zset" => counts.cmd("ZCARD").arg(k),
                "set" => counts.cmd("SCARD").arg(k),
                "hash" => counts.cmd("HLEN").arg(k),
                "stream" => counts.cmd("XLEN").arg(k).cmd("XINFO").arg("GROUPS").arg(k),
                // Missing key, or a type that is no queue (string): nothing to read.
                _ => &mut counts,
            };
        }
        let values: Vec<Value> = counts.query_async(conn).await?;
        let mut values = values.into_iter();
        let mut queues = Vec::with_capacity(keys.len());
        for (k, t) in keys.iter().zip(&types) {
            let depths = match t.as_str() {
                "list" | "zset" | "set" | "hash" => {
                    vec![(JobState::Waiting, int(values.next(), k)?)]
                }
                "stream" => {
                    let len = int(values.next(), k)?;
                    let (lag, pending) = stream_groups(values.next(), len, k)?;
                    vec![(JobState::Waiting, lag), (JobState::Active, pending)]
                }
                _ => vec![(JobState::Waiting, 0)],
            };
            queues.push(QueueStats {
                name: k.clone(),
                depths,
                oldest_enqueued_at: None,
            });
        }
        Ok(Snapshot {
            queues,
            discovered,
            ..Snapshot::default()
        })
    }
}

/// A key for a message, cut and escaped ([`reply::show`]).
fn show(key: &str) -> String {
    super::reply::show(key.as_bytes())
}

fn int(v: Option<Value>, key: &str) -> Result<u64, QueueError> {
    match v {
        Some(Value::Int(n)) => u64::try_from(n)
            .map_err(|_| QueueError::Data(format!("negative count for key \"{}\"", show(key)))),
        // The key changed type between TYPE and the count: read it as empty this time.
        Some(Value::ServerError(_)) => Ok(0),
        _ => Err(QueueError::Data(format!(
            "no count for key \"{}\"",
            show(key)
        ))),
    }
}

/// Lag of the most-behind group and entries pending across groups, from `XINFO GROUPS`.
/// Without groups, every entry is waiting. A group whose lag Redis cannot tell (after
/// deletions) counts the whole stream, an upper bound.
/// A reply that is neither a list of groups nor an error (a refused `XINFO`) is an error naming
/// the command.
fn stream_groups(v: Option<Value>, len: u64, key: &str) -> Result<(u64, u64), QueueError> {
    let groups = match v {
        Some(Value::Array(groups)) => groups,
        // Redis refused XINFO (ACL) or the key changed type: every entry counts as waiting.
        Some(Value::ServerError(_)) => return Ok((len, 0)),
        _ => {
            return Err(QueueError::Data(format!(
                "unexpected reply to XINFO GROUPS \"{}\"",
                show(key)
            )))
        }
    };
    if groups.is_empty() {
        return Ok((len, 0));
    }
    let mut lag = 0u64;
    let mut pending = 0u64;
    for g in groups {
        let fields: Vec<(String, Value)> = match g {
            Value::Map(m) => m
                .into_iter()
                .filter_map(|(k, v)| redis::from_redis_value::<String>(k).ok().map(|k| (k, v)))
                .collect(),
            Value::Array(items) => {
                let mut out = Vec::new();
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    if let Ok(k) = redis::from_redis_value::<String>(k) {
                        out.push((k, v));
                    }
                }
                out
            }
            _ => {
                return Err(QueueError::Data(format!(
                    "unexpected reply to XINFO GROUPS \"{}\"",
                    show(key)
                )))
            }
        };
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| match v {
                    Value::Int(n) => u64::try_from(*n).ok(),
                    _ => None,
                })
        };
        lag = lag.max(get("lag").unwrap_or(len));
        pending = pending.saturating_add(get("pending").unwrap_or(0));
    }
    Ok((lag, pending))
}

impl JobSystem for GenericRedis {
    fn system(&self) -> System {
        System::Redis
    }

    fn collect<'a>(
        &'a self,
        conn: &'a mut MultiplexedConnection,
    ) -> BoxFuture<'a, Result<Snapshot, QueueError>> {
        Box::pin(self.read(conn))
    }
}
