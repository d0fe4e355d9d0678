//! Turning the replies of one pipelined read into numbers, for the job-system modules.
//!
//! A pipeline is sent with `ignore_errors()`, so one command's error reply (a key of the wrong
//! type) arrives as that command's [`Value::ServerError`] instead of failing the whole read: the
//! helpers here turn `WRONGTYPE` into a [`QueueError::Data`] naming the key, and any other error
//! reply into [`QueueError::Redis`]. They accept both RESP2 and RESP3 shapes (a RESP3 `SMEMBERS`
//! is a set, `HGETALL` a map). Messages name keys, never values: a value may be a job payload.

use redis::Value;

use super::QueueError;

/// Longest key shown in an error message: keys come from Redis (discovered queue names) and a
/// hostile one could be megabytes long.
const KEY_IN_MESSAGE: usize = 120;

/// A key for an error message: lossy UTF-8, escaped, cut at [`KEY_IN_MESSAGE`] characters.
pub(super) fn show(key: &[u8]) -> String {
    // Control characters (kombu's priority separator, a hostile newline) are shown escaped.
    let text = String::from_utf8_lossy(key);
    if text.chars().count() <= KEY_IN_MESSAGE {
        return text.escape_debug().to_string();
    }
    let cut: String = text.chars().take(KEY_IN_MESSAGE).collect();
    format!("{}…", cut.escape_debug())
}

/// Round trip 1 of the Ruby systems (Sidekiq, Resque), which keep the same shape: the `queues`
/// set unless queues are configured, and one more set (Sidekiq's processes, Resque's workers).
pub(super) async fn queues_and_members(
    conn: &mut redis::aio::MultiplexedConnection,
    configured: Option<&Vec<Vec<u8>>>,
    queues_key: &[u8],
    set_key: &[u8],
) -> Result<(Vec<Vec<u8>>, Vec<Vec<u8>>, Option<u64>), QueueError> {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    if configured.is_none() {
        pipe.cmd("SMEMBERS").arg(queues_key);
    }
    pipe.cmd("SMEMBERS").arg(set_key);
    let sent = if configured.is_none() { 2 } else { 1 };
    let mut replies = Replies::new(pipe.query_async(conn).await?, sent)?;
    let mut discovered = None;
    let queues = match configured {
        Some(configured) => configured.clone(),
        None => {
            let mut found = members(replies.next(queues_key, "set")?, queues_key)?;
            discovered = super::cap_discovered(&mut found);
            found
        }
    };
    let set = members(replies.next(set_key, "set")?, set_key)?;
    Ok((queues, set, discovered))
}

/// The replies of a pipeline sent with `ignore_errors()`, one per command, in order.
pub(super) struct Replies(std::vec::IntoIter<Value>);

impl Replies {
    /// Splits a pipeline's reply into its commands' replies; `expected` is the number of commands
    /// sent, so a short reply is an error rather than a panic further on.
    pub(super) fn new(reply: Value, expected: usize) -> Result<Replies, QueueError> {
        let items = match reply {
            Value::Array(items) if items.len() == expected => items,
            Value::Array(items) => {
                return Err(QueueError::Data(format!(
                    "pipeline answered {} replies to {expected} commands",
                    items.len()
                )))
            }
            Value::ServerError(e) => return Err(QueueError::Redis(e.into())),
            _ => return Err(QueueError::Data("pipeline answered no reply list".into())),
        };
        Ok(Replies(items.into_iter()))
    }

    /// The next command's reply, with its error reply turned into a `QueueError`. `key` and
    /// `kind` ("list", "set", ...) name what the command read, for the message.
    pub(super) fn next(&mut self, key: &[u8], kind: &str) -> Result<Value, QueueError> {
        match self.0.next() {
            Some(Value::ServerError(e)) if e.code() == "WRONGTYPE" => Err(QueueError::Data(
                format!("key {} is not a {kind}", show(key)),
            )),
            Some(Value::ServerError(e)) => Err(QueueError::Redis(e.into())),
            Some(v) => Ok(v),
            // Replies::new checked the count; reaching this is a bug, reported, not a panic.
            None => Err(QueueError::Data("pipeline reply ended early".into())),
        }
    }
}

/// One command's reply with an error reply turned into a `QueueError`: `WRONGTYPE` under `key`
/// is bad data (the job system could not have used that key either), anything else (no
/// permission, loading, ...) is a Redis error.
pub(super) fn checked(v: Value, key: &[u8]) -> Result<Value, QueueError> {
    match v {
        Value::ServerError(e) if e.code() == "WRONGTYPE" => Err(QueueError::Data(format!(
            "key {} holds the wrong type of value",
            show(key)
        ))),
        Value::ServerError(e) => Err(QueueError::Redis(e.into())),
        v => Ok(v),
    }
}

/// [`members`] of a checked reply, as text (members that are not UTF-8 are skipped).
pub(super) fn text_members(v: Value, key: &[u8]) -> Result<Vec<String>, QueueError> {
    Ok(members(checked(v, key)?, key)?
        .into_iter()
        .filter_map(|m| String::from_utf8(m).ok())
        .collect())
}

/// The reply of `LLEN`, `ZCARD`, `SCARD`, `STRLEN`, `HLEN`: a non-negative integer.
pub(super) fn length(v: Value, key: &[u8]) -> Result<u64, QueueError> {
    match v {
        Value::Int(n) => u64::try_from(n)
            .map_err(|_| QueueError::Data(format!("negative length for key {}", show(key)))),
        _ => Err(QueueError::Data(format!(
            "unexpected reply reading the length of key {}",
            show(key)
        ))),
    }
}

/// The reply of `GET` on a counter kept with `INCRBY`: absent is 0 (the system has not counted
/// anything yet); anything but a non-negative integer is a `Data` error naming the key.
pub(super) fn counter(v: Value, key: &[u8]) -> Result<u64, QueueError> {
    let bad = || QueueError::Data(format!("key {} holds no counter", show(key)));
    match v {
        Value::Nil => Ok(0),
        Value::Int(n) => u64::try_from(n).map_err(|_| bad()),
        Value::BulkString(b) => std::str::from_utf8(&b)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// The reply of `GET`, `LINDEX`, `HGET` or one field of `HMGET`: the bytes, or `None` when absent.
pub(super) fn bulk(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.into_bytes()),
        Value::Int(n) => Some(n.to_string().into_bytes()),
        _ => None,
    }
}

/// The reply of `SMEMBERS` (or any array of strings): the members, sorted and deduplicated so
/// discovered queues come out in a stable order.
pub(super) fn members(v: Value, key: &[u8]) -> Result<Vec<Vec<u8>>, QueueError> {
    // Redis answers SMEMBERS with a (possibly empty) array or set, never nil: a nil is a server
    // that is not Redis, and reading it as "no members" would pass a check on garbage.
    let items = match v {
        Value::Array(items) | Value::Set(items) => items,
        _ => {
            return Err(QueueError::Data(format!(
                "unexpected reply to SMEMBERS {}",
                show(key)
            )))
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::BulkString(b) => out.push(b),
            Value::SimpleString(s) => out.push(s.into_bytes()),
            _ => {
                return Err(QueueError::Data(format!(
                    "unexpected member in the reply reading key {}",
                    show(key)
                )))
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The reply of `HMGET` on `key`: one optional value per field asked for, in order. A key of the
/// wrong type reads as a hash without those fields (the caller skips it); any other shape (not
/// an array of `n` strings or nils) is not Redis, and an error naming the command.
pub(super) fn fields(v: Value, n: usize, key: &[u8]) -> Result<Vec<Option<Vec<u8>>>, QueueError> {
    let bad = || QueueError::Data(format!("unexpected reply to HMGET {}", show(key)));
    let items = match v {
        Value::Array(items) if items.len() == n => items,
        _ => return Err(bad()),
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::Nil => Ok(None),
            Value::BulkString(b) => Ok(Some(b)),
            Value::SimpleString(s) => Ok(Some(s.into_bytes())),
            _ => Err(bad()),
        })
        .collect()
}

/// A hash's field/value pairs.
pub(super) type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The reply of `HGETALL`: field/value pairs (RESP2 flat array or RESP3 map). Anything but
/// strings in pairs is not Redis, and an error naming the command.
pub(super) fn pairs(v: Value, key: &[u8]) -> Result<Pairs, QueueError> {
    let bad = || QueueError::Data(format!("unexpected reply to HGETALL {}", show(key)));
    let text = |v: Value| match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        _ => Err(bad()),
    };
    match v {
        Value::Map(entries) => entries
            .into_iter()
            .map(|(k, v)| Ok((text(k)?, text(v)?)))
            .collect(),
        Value::Array(items) if items.len() % 2 == 0 => {
            let mut out = Vec::with_capacity(items.len() / 2);
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((text(k)?, text(v)?));
            }
            Ok(out)
        }
        _ => Err(bad()),
    }
}

/// The reply of `SCAN`: the next cursor and the keys of this step. Read strictly (redis-rs's
/// typed conversion would take some other shapes for it): anything but `[cursor, [keys...]]` is
/// an error naming the command.
pub(super) fn scan(v: Value) -> Result<(u64, Vec<Vec<u8>>), QueueError> {
    let bad = || QueueError::Data("unexpected reply to SCAN".into());
    let Value::Array(items) = v else {
        return Err(bad());
    };
    let [cursor, keys] = <[Value; 2]>::try_from(items).map_err(|_| bad())?;
    let cursor = bulk(cursor)
        .and_then(|c| std::str::from_utf8(&c).ok()?.parse::<u64>().ok())
        .ok_or_else(bad)?;
    let Value::Array(keys) = keys else {
        return Err(bad());
    };
    let keys = keys
        .into_iter()
        .map(|k| match k {
            Value::BulkString(b) => Ok(b),
            Value::SimpleString(s) => Ok(s.into_bytes()),
            _ => Err(bad()),
        })
        .collect::<Result<_, _>>()?;
    Ok((cursor, keys))
}

/// The reply of `TIME`: the Redis server's clock in Unix seconds.
pub(super) fn server_time(v: Value) -> Result<f64, QueueError> {
    let bad = || QueueError::Data("unexpected reply to TIME".into());
    let Value::Array(items) = v else {
        return Err(bad());
    };
    let mut parts = items
        .into_iter()
        .map(|v| bulk(v).and_then(|b| String::from_utf8(b).ok()?.parse::<u64>().ok()));
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(secs), Some(micros)) => Ok(secs as f64 + micros as f64 / 1e6),
        _ => Err(bad()),
    }
}

/// `prefix:key` when the system's keys live under a namespace (redis-namespace's layout),
/// `key` otherwise.
pub(super) fn namespaced(prefix: Option<&str>, key: &[u8]) -> Vec<u8> {
    match prefix {
        Some(p) => {
            let mut out = Vec::with_capacity(p.len() + 1 + key.len());
            out.extend_from_slice(p.as_bytes());
            out.push(b':');
            out.extend_from_slice(key);
            out
        }
        None => key.to_vec(),
    }
}

/// `a` followed by `b`: builds `queue:<name>` from raw bytes (queue names need not be UTF-8).
pub(super) fn concat(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    out.extend_from_slice(a);
    out.extend_from_slice(b);
    out
}

/// The largest job head read whole: 64 KiB. A longer head is not sent at all; the script
/// extracts its timestamp field server side (see [`HEAD_FIELD`]).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Reads the job at one end of each list in `KEYS` (`ARGV[1]`: the index, `0` or `-1`) without
/// sending a big job over the wire. A head of at most `ARGV[3]` bytes comes back whole; a longer
/// one comes back as `\0` followed by the raw JSON value of the **last** `"<ARGV[2]>": value` in
/// it (a quoted string without escapes or a number, at most 64 bytes), or `false` when there is
/// none. The last occurrence is the job's own field: the job systems write the timestamp after
/// the arguments (Sidekiq's `enqueued_at` after `args`, Active Job's after `arguments`, kombu's
/// headers after `body`), and inside a JSON string every quote is escaped, so an argument that
/// merely contains the text cannot match `"name"` followed by a colon.
///
/// A missing key or one of the wrong type gives `false` (`pcall`), so one bad key does not fail
/// the others: the `LLEN` of the same key reports the wrong type by name.
pub const HEAD_FIELD: &str = r#"
local out = {}
local needle = '"' .. ARGV[2] .. '"'
local max = tonumber(ARGV[3])
for i, key in ipairs(KEYS) do
  local head = redis.pcall('LINDEX', key, ARGV[1])
  local r = false
  if type(head) == 'string' then
    if #head <= max then
      r = head
    else
      local last = nil
      local from = 1
      while true do
        local s, e = string.find(head, needle, from, true)
        if s == nil then break end
        last = e + 1
        from = e + 1
      end
      if last then
        local v = string.match(head, '^%s*:%s*("[^"\\]*")', last)
          or string.match(head, '^%s*:%s*([%-%d%.eE%+]+)', last)
        if v and #v <= 64 then r = '\0' .. v end
      end
    end
  end
  out[i] = r
end
return out
"#;

/// A job head as [`HEAD_FIELD`] returns it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Head {
    /// The whole job (it was at most [`MAX_HEAD_BYTES`]).
    Whole(Vec<u8>),
    /// Only the timestamp field's JSON value, extracted from a longer job.
    Field(serde_json::Value),
}

/// Adds one [`HEAD_FIELD`] call for `keys` to `pipe`: heads at `index` (0 or -1), extracting
/// `field` from long ones.
pub(super) fn push_heads(pipe: &mut redis::Pipeline, keys: &[Vec<u8>], index: i64, field: &str) {
    let eval = pipe.cmd("EVAL").arg(HEAD_FIELD).arg(keys.len());
    for key in keys {
        eval.arg(key);
    }
    eval.arg(index).arg(field).arg(MAX_HEAD_BYTES);
}

/// The reply of a [`push_heads`] call for `n` keys: one optional head per key. A reply of any
/// other shape (not an array of `n` strings or nils) is an error naming the script, never a
/// silent "no oldest job".
pub(super) fn heads(v: Value, n: usize) -> Result<Vec<Option<Head>>, QueueError> {
    let bad = || QueueError::Data("unexpected reply from the job-head script (EVAL)".into());
    let items = match v {
        Value::Array(items) if items.len() == n => items,
        Value::ServerError(e) => return Err(QueueError::Redis(e.into())),
        _ => return Err(bad()),
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::Nil | Value::Boolean(false) => Ok(None),
            Value::BulkString(b) => Ok(Some(match b.strip_prefix(b"\0") {
                Some(raw) => match serde_json::from_slice(raw) {
                    Ok(v) => Head::Field(v),
                    Err(_) => return Ok(None),
                },
                None => Head::Whole(b),
            })),
            _ => Err(bad()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_counter_is_zero_and_a_garbage_one_names_its_key() {
        assert_eq!(counter(Value::Nil, b"stat:processed").unwrap(), 0);
        assert_eq!(
            counter(Value::BulkString(b"42".to_vec()), b"stat:processed").unwrap(),
            42
        );
        let e = counter(Value::BulkString(b"-3".to_vec()), b"stat:processed").unwrap_err();
        assert_eq!(e.to_string(), "key stat:processed holds no counter");
        let huge = Value::BulkString(b"99999999999999999999999".to_vec());
        assert!(counter(huge, b"stat:failed").is_err());
    }

    #[test]
    fn long_keys_are_cut_in_messages() {
        let key = vec![b'q'; 10_000];
        assert_eq!(show(&key).chars().count(), KEY_IN_MESSAGE + 1);
        assert_eq!(show(b"queue:\xff"), "queue:\u{fffd}");
    }

    #[test]
    fn a_short_pipeline_reply_is_an_error_not_a_panic() {
        let reply = Value::Array(vec![Value::Int(1)]);
        assert!(Replies::new(reply, 2).is_err());
        let mut r = Replies::new(Value::Array(vec![Value::Int(1)]), 1).unwrap();
        assert!(r.next(b"k", "list").is_ok());
        assert!(r.next(b"k", "list").is_err());
    }

    #[test]
    fn hash_pairs_read_both_protocols() {
        let flat = Value::Array(vec![
            Value::BulkString(b"a".to_vec()),
            Value::BulkString(b"1".to_vec()),
        ]);
        assert_eq!(
            pairs(flat, b"h").unwrap(),
            vec![(b"a".to_vec(), b"1".to_vec())]
        );
        let dangling = Value::Array(vec![Value::BulkString(b"a".to_vec())]);
        assert!(pairs(dangling, b"h").is_err());
        let nested = Value::Array(vec![Value::BulkString(b"a".to_vec()), Value::Array(vec![])]);
        assert!(pairs(nested, b"h").is_err());
        assert!(pairs(Value::Nil, b"h").is_err());
        let map = Value::Map(vec![(
            Value::BulkString(b"b".to_vec()),
            Value::BulkString(b"2".to_vec()),
        )]);
        assert_eq!(
            pairs(map, b"h").unwrap(),
            vec![(b"b".to_vec(), b"2".to_vec())]
        );
    }

    #[test]
    fn server_time_reads_seconds_and_microseconds() {
        let v = Value::Array(vec![
            Value::BulkString(b"1700000000".to_vec()),
            Value::BulkString(b"250000".to_vec()),
        ]);
        assert_eq!(server_time(v).unwrap(), 1_700_000_000.25);
        assert!(server_time(Value::Nil).is_err());
    }
}
