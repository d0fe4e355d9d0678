//! The RQ canary: a job written exactly where and how RQ 2's `Queue.enqueue` writes one, run by
//! the operator's own RQ workers, and followed through the job hash and result stream RQ's worker
//! updates.
//!
//! # What is written (rq 2.12, `site-packages/rq/queue.py` `_enqueue_async_job`, `job.py`)
//!
//! One MULTI/EXEC, the commands RQ's pipeline sends, in its order:
//!
//! | command | why |
//! |---|---|
//! | `SADD rq:queues rq:queue:<queue>` | `enqueue_job` (RQ sends it in its own transaction just before; one is enough here) |
//! | `HSET rq:job:<id> status queued` | `Job.set_status` |
//! | `HSET rq:job:<id>` + the fields of `Job.to_dict` | `Job.save` |
//! | `EXPIRE rq:job:<id> <ttl>`, `EXPIRE rq:job:<id>:dependents <ttl>`, `EXPIRE rq:job:<id>:dependencies <ttl>` | `Job.cleanup(ttl)` |
//! | `RPUSH rq:queue:<queue> <id>` | `Queue.push_job_id` |
//!
//! Redis does not roll a transaction back when one of its commands fails (a queue key of another
//! type): the enqueue returns the error, and the job hash written before it still expires.
//!
//! The hash's fields: `created_at` and `enqueued_at` (both the canary's enqueue time in RQ's
//! `utcformat`, `%Y-%m-%dT%H:%M:%S.%fZ`, UTC, microseconds), `data`, the empty strings RQ writes
//! for `success_callback_name`, `failure_callback_name`, `stopped_callback_name`, `started_at`,
//! `ended_at`, `last_heartbeat`, `worker_name` and `group_id`, `origin` (the queue),
//! `description` (`canaryd canary job of check <check>`), `timeout`, `result_ttl`,
//! `failure_ttl`, `status` (`queued`) and `ttl`. The four durations are all `canary.keep` in
//! whole seconds (rounded up, at least 1): the queued job, its result and its failure all
//! expire then, and a canary stuck in its function is killed by RQ's timeout no later than its
//! records would expire.
//!
//! `data` is what RQ's default serializer makes of `(func_name, None, args, {})`: a protocol-5
//! pickle, written here by a small encoder for the only types needed (str, None, tuple, dict) that
//! produces the bytes `pickle.dumps` does, then zlib-compressed. The compression uses stored
//! (uncompressed) deflate blocks: the same zlib format, read by RQ's `zlib.decompress` to the same
//! job; RQ's own writes use level 6, so the compressed bytes (not the job) differ. The function is
//! `canary.task`, called as `task("canaryd", "<check>")`; [`DEFAULT_TASK`] is `builtins.max`,
//! which any RQ worker imports without application code and which returns one of the two strings
//! (`builtins.len` would not do: it takes one argument, and RQ records the `TypeError`).
//!
//! [`CanarySystem::prepare`]'s payload is `data` in lowercase hex: the job as RQ stores it, as text.
//!
//! # What is read: one pipeline of two commands
//!
//! - `HMGET rq:job:<id> status started_at ended_at`. The worker sets `status` to `started` and
//!   `started_at` when its work horse begins the job (`Job.prepare_for_execution`), and
//!   `finished`/`failed` with `ended_at` at the end (`handle_job_success`/`handle_job_failure`).
//! - `XREVRANGE rq:results:<id> + - COUNT 1`: RQ 2 keeps each run's outcome in this stream
//!   (`results.py`; `type` 1 successful, 2 failed, 3 stopped, 4 retried), with the traceback of a
//!   failure in `exc_string` (base64 of zlib of the text: inflated here, at most the last
//!   [`KEEP_OF_TRACEBACK`] bytes kept) and `execution_started_at`/`execution_ended_at` in Unix
//!   seconds. RQ 2 no longer writes `exc_info` into the job hash.
//!
//! Both are O(1) whatever the queue's length.
//!
//! # What is measured, and how precisely
//!
//! - enqueued: canaryd's clock, written as `enqueued_at` (microseconds).
//! - started: the hash's `started_at`, the worker's clock, microseconds. It is when the work
//!   horse starts the job, after the worker took it off the queue and forked: the execution's
//!   `created_at` (when the worker took it) is earlier by the fork, about 20 ms in the tests here
//!   (`tests/canary_rq.rs` prints both). That earlier time is not read: while the job runs it
//!   sits in `rq:execution:<id>:<execution>`, whose name needs a second, dependent read.
//! - ended: the hash's `ended_at`, microseconds.
//! - When the hash is gone but the result stream is not (someone deleted the hash), the stream's
//!   `execution_started_at`/`execution_ended_at` are used (float seconds, microseconds; the
//!   start is then the pickup itself).
//!
//! The clocks of canaryd, Redis and the worker's host differ by their skew; nothing here corrects
//! it. What cannot be seen: a job taken by a worker whose work horse has not started yet is still
//! `queued` (Waiting), and so is a job popped by a worker that was stopped before it could read
//! it (RQ records nothing until the work horse runs); a worker killed in the middle of the job
//! leaves it `started` (Running) until another worker's registry maintenance marks it failed, so
//! the probe's own deadline is what catches it. Status `deferred` or `scheduled` (never written
//! by canaryd) also reads as Waiting; `stopped` and `canceled` read as Failed. RQ 1.x, which kept
//! the traceback in the hash's `exc_info`, is not targeted: its failures read as Failed with a
//! generic text.
//!
//! # Cleaning up
//!
//! One `EVAL` deletes the job hash, its result stream, dependents/dependencies sets, its
//! executions (`rq:executions:<id>` and the `rq:execution:<id>:<execution>` hashes it lists, at most
//! [`MAX_EXECUTIONS`]), and removes the job from its queue list and intermediate list (`LREM`
//! from the tail, where a recent canary is) and from the started (`rq:wip`), finished, failed,
//! canceled, deferred and scheduled registries of its queue. `rq:queues` keeps the queue: it
//! is the operator's queue, not the canary's. Cleaned while a worker still runs it, the job's
//! hash and result are written again when the run ends, with RQ's expiry (`result_ttl` or
//! `failure_ttl`, the canary's keep): Redis stays bounded either way.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use redis::aio::MultiplexedConnection;
use redis::Value;

use super::system::{from_unix_seconds, Canary, CanarySystem, Seen};
use crate::probe::queue::rq::parse_rq_time;
use crate::probe::queue::{QueueError, System};
use crate::probe::BoxFuture;

/// The function a canary runs unless the check names another: importable by any RQ worker
/// without application code, harmless, and taking the two string arguments every canary passes.
pub const DEFAULT_TASK: &str = "builtins.max";

/// The first argument of every canary job (the second is the check's name).
pub const FIRST_ARG: &str = "canaryd";

/// How much of a failure's traceback is kept (its end, where Python puts the exception).
pub const KEEP_OF_TRACEBACK: usize = 64 * 1024;

/// Most execution records cleaned per canary (RQ makes one per run; a canary runs once).
pub const MAX_EXECUTIONS: usize = 100;

/// Longest error text handed to the probe.
pub const ERROR_TEXT: usize = 2000;

/// Largest pickle written: below pickle's frame size target (64 KiB) the whole pickle is one
/// frame, which is what this encoder writes.
pub const MAX_PICKLE: usize = 60 * 1024;

/// The namespace RQ hard-codes in its class attributes.
const PREFIX: &str = "rq:";

/// Deletes what a canary left. KEYS: job hash, results stream, dependents, dependencies,
/// executions zset, queue list, intermediate list, then the queue's registries; ARGV: job id,
/// execution key prefix (`rq:execution:<id>:`), max executions. The execution hashes' keys come
/// from the executions zset, so they cannot be declared: RQ computes keys in Lua the same way and
/// does not run on Redis Cluster. `pcall` keeps a key of a foreign type from stopping the rest.
const CLEAN: &str = r#"
local id = ARGV[1]
local execs = redis.pcall('ZRANGE', KEYS[5], 0, tonumber(ARGV[3]) - 1)
if type(execs) == 'table' then
  for _, e in ipairs(execs) do
    if type(e) == 'string' and #e <= 256 then
      redis.pcall('DEL', ARGV[2] .. e)
      for i = 8, #KEYS do redis.pcall('ZREM', KEYS[i], id .. ':' .. e) end
    end
  end
end
redis.pcall('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
redis.pcall('LREM', KEYS[6], -1, id)
redis.pcall('LREM', KEYS[7], -1, id)
for i = 8, #KEYS do redis.pcall('ZREM', KEYS[i], id) end
return 1
"#;

/// RQ 2 canaries.
#[derive(Debug, Clone, Default)]
pub struct RqCanary;

impl RqCanary {
    /// The RQ canary system.
    pub fn new() -> RqCanary {
        RqCanary
    }
}

fn job_key(id: &str) -> String {
    format!("{PREFIX}job:{id}")
}

fn results_key(id: &str) -> String {
    format!("{PREFIX}results:{id}")
}

fn queue_key(queue: &str) -> String {
    format!("{PREFIX}queue:{queue}")
}

/// Whole seconds of `keep`, rounded up and at least 1: RQ reads 0 as "delete at once" and a
/// negative value as "never expire".
pub fn keep_seconds(keep: Duration) -> u64 {
    let secs = keep.as_secs() + u64::from(keep.subsec_nanos() > 0);
    secs.max(1)
}

/// RQ's `utcformat`: `%Y-%m-%dT%H:%M:%S.%fZ`, UTC, microseconds.
pub fn rq_time(t: SystemTime) -> String {
    let utc: chrono::DateTime<chrono::Utc> = t.into();
    utc.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The hash's description of a canary job, for an operator reading the queue.
pub fn description(check: &str) -> String {
    format!("canaryd canary job of check {check}")
}

// ---------------------------------------------------------------------------------------------
// pickle (protocol 5) for str, None, tuple and dict, as CPython's `_pickle` writes them
// ---------------------------------------------------------------------------------------------

/// A Python value of the kinds a canary job's data holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Py<'a> {
    /// `str`.
    Str(&'a str),
    /// `None`.
    None,
    /// `tuple`.
    Tuple(Vec<Py<'a>>),
    /// `dict`, in insertion order.
    Dict(Vec<(Py<'a>, Py<'a>)>),
}

const PROTO: u8 = 0x80;
const FRAME: u8 = 0x95;
const MEMOIZE: u8 = 0x94;
const SHORT_BINUNICODE: u8 = 0x8c;
const BINUNICODE: u8 = b'X';
const NONE: u8 = b'N';
const EMPTY_TUPLE: u8 = b')';
const TUPLE1: u8 = 0x85;
const MARK: u8 = b'(';
const TUPLE: u8 = b't';
const EMPTY_DICT: u8 = b'}';
const SETITEM: u8 = b's';
const SETITEMS: u8 = b'u';
const STOP: u8 = b'.';
/// CPython's `BATCHSIZE`: dict items per SETITEMS.
const BATCH: usize = 1000;

/// `pickle.dumps(value, protocol=5)` for values whose pickle is under [`MAX_PICKLE`] bytes (one
/// frame) and in which no object appears twice (CPython would write a memo reference, `BINGET`,
/// for the second; equal strings built separately are separate objects, as in RQ).
pub fn pickle(value: &Py) -> Result<Vec<u8>, QueueError> {
    let mut body = Vec::new();
    save(value, &mut body);
    body.push(STOP);
    if body.len() > MAX_PICKLE {
        return Err(QueueError::Data(format!(
            "rq: the canary job's data would be {} bytes, over the {MAX_PICKLE} written here",
            body.len()
        )));
    }
    let mut out = Vec::with_capacity(body.len() + 11);
    out.extend_from_slice(&[PROTO, 5, FRAME]);
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

fn save(value: &Py, out: &mut Vec<u8>) {
    match value {
        Py::None => out.push(NONE),
        Py::Str(s) => {
            let b = s.as_bytes();
            match u8::try_from(b.len()) {
                Ok(n) => out.extend_from_slice(&[SHORT_BINUNICODE, n]),
                Err(_) => {
                    // Bounded by MAX_PICKLE before it is used, so it fits in the 4-byte length.
                    out.push(BINUNICODE);
                    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                }
            }
            out.extend_from_slice(b);
            out.push(MEMOIZE);
        }
        Py::Tuple(items) if items.is_empty() => out.push(EMPTY_TUPLE),
        Py::Tuple(items) if items.len() <= 3 => {
            items.iter().for_each(|i| save(i, out));
            out.push(TUPLE1 + (items.len() as u8 - 1));
            out.push(MEMOIZE);
        }
        Py::Tuple(items) => {
            out.push(MARK);
            items.iter().for_each(|i| save(i, out));
            out.push(TUPLE);
            out.push(MEMOIZE);
        }
        Py::Dict(items) => {
            out.extend_from_slice(&[EMPTY_DICT, MEMOIZE]);
            if let [(k, v)] = items.as_slice() {
                save(k, out);
                save(v, out);
                out.push(SETITEM);
            } else if !items.is_empty() {
                // CPython's `batch_dict_exact`: MARK … SETITEMS per BATCH items, and one more
                // (empty) batch after a full last one.
                let mut rest = items.as_slice();
                loop {
                    let (batch, after) = rest.split_at(rest.len().min(BATCH));
                    out.push(MARK);
                    for (k, v) in batch {
                        save(k, out);
                        save(v, out);
                    }
                    out.push(SETITEMS);
                    if batch.len() < BATCH {
                        break;
                    }
                    rest = after;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// zlib: stored blocks out, a bounded inflate in
// ---------------------------------------------------------------------------------------------

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    (b << 16) | a
}

/// A zlib stream of `data` in stored (uncompressed) deflate blocks.
pub fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    // CMF 0x78 (deflate, 32 KiB window), FLG 0x01 (fastest level, no dictionary, check bits).
    out.extend_from_slice(&[0x78, 0x01]);
    let mut chunks = data.chunks(0xffff).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none()));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    buf: u32,
    count: u32,
}

impl Bits<'_> {
    fn take(&mut self, n: u32) -> Option<u32> {
        while self.count < n {
            let byte = *self.data.get(self.pos)?;
            self.pos += 1;
            self.buf |= u32::from(byte) << self.count;
            self.count += 8;
        }
        let v = self.buf & ((1u32 << n) - 1);
        self.buf = self.buf.checked_shr(n).unwrap_or(0);
        self.count -= n;
        Some(v)
    }
}

/// A canonical Huffman code: the number of codes of each length and the symbols in code order.
struct Huffman {
    counts: [u16; 16],
    symbols: Vec<u16>,
}

impl Huffman {
    fn new(lengths: &[u8]) -> Option<Huffman> {
        let mut counts = [0u16; 16];
        for &l in lengths {
            counts[usize::from(l)] += 1;
        }
        counts[0] = 0;
        let mut left: i32 = 1;
        for &c in &counts[1..] {
            left = left * 2 - i32::from(c);
            if left < 0 {
                return None; // over-subscribed
            }
        }
        let mut offsets = [0u16; 16];
        for len in 1..15 {
            offsets[len + 1] = offsets[len] + counts[len];
        }
        let mut symbols = vec![0u16; lengths.len()];
        for (sym, &l) in lengths.iter().enumerate() {
            if l != 0 {
                symbols[usize::from(offsets[usize::from(l)])] = sym as u16;
                offsets[usize::from(l)] += 1;
            }
        }
        Some(Huffman { counts, symbols })
    }

    fn decode(&self, bits: &mut Bits) -> Option<u16> {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..16 {
            code |= bits.take(1)? as i32;
            let count = i32::from(self.counts[len]);
            if code - first < count {
                return self.symbols.get((index + code - first) as usize).copied();
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        None
    }
}

const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
const CODE_LENGTH_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// The decompressed zlib stream `data`, keeping only its last `keep` bytes (at least 32 KiB are
/// kept while inflating, deflate's window). `None` for anything that is not a whole zlib stream.
/// The Adler-32 trailer is not checked: the text is shown, not trusted.
pub fn inflate_tail(data: &[u8], keep: usize) -> Option<Vec<u8>> {
    let keep = keep.max(32 * 1024);
    let (&cmf, &flg) = (data.first()?, data.get(1)?);
    if cmf & 0x0f != 8 || (u16::from(cmf) * 256 + u16::from(flg)) % 31 != 0 || flg & 0x20 != 0 {
        return None;
    }
    let mut bits = Bits {
        data,
        pos: 2,
        buf: 0,
        count: 0,
    };
    let mut out: Vec<u8> = Vec::new();
    loop {
        let last = bits.take(1)?;
        match bits.take(2)? {
            0 => {
                bits.buf = 0;
                bits.count = 0;
                let header = data.get(bits.pos..bits.pos + 4)?;
                let len = u16::from_le_bytes([header[0], header[1]]);
                let nlen = u16::from_le_bytes([header[2], header[3]]);
                if len != !nlen {
                    return None;
                }
                let start = bits.pos + 4;
                out.extend_from_slice(data.get(start..start + usize::from(len))?);
                bits.pos = start + usize::from(len);
            }
            1 => {
                let mut lengths = [0u8; 288];
                lengths[..144].fill(8);
                lengths[144..256].fill(9);
                lengths[256..280].fill(7);
                lengths[280..].fill(8);
                let lit = Huffman::new(&lengths)?;
                let dist = Huffman::new(&[5u8; 30])?;
                codes(&mut bits, &mut out, &lit, &dist, keep)?;
            }
            2 => {
                let (lit, dist) = dynamic_tables(&mut bits)?;
                codes(&mut bits, &mut out, &lit, &dist, keep)?;
            }
            _ => return None,
        }
        trim(&mut out, keep);
        if last == 1 {
            break;
        }
    }
    if out.len() > keep {
        out.drain(..out.len() - keep);
    }
    Some(out)
}

/// Drops all but the last `keep` bytes once `out` holds twice that, so memory stays bounded
/// whatever the stream's size.
fn trim(out: &mut Vec<u8>, keep: usize) {
    if out.len() > 2 * keep {
        out.drain(..out.len() - keep);
    }
}

fn dynamic_tables(bits: &mut Bits) -> Option<(Huffman, Huffman)> {
    let nlen = bits.take(5)? as usize + 257;
    let ndist = bits.take(5)? as usize + 1;
    let ncode = bits.take(4)? as usize + 4;
    if nlen > 286 || ndist > 30 {
        return None;
    }
    let mut code_lengths = [0u8; 19];
    for &i in &CODE_LENGTH_ORDER[..ncode] {
        code_lengths[i] = bits.take(3)? as u8;
    }
    let lencode = Huffman::new(&code_lengths)?;
    let mut lengths = vec![0u8; nlen + ndist];
    let mut i = 0;
    while i < nlen + ndist {
        let sym = lencode.decode(bits)?;
        let (value, repeat) = match sym {
            0..=15 => (sym as u8, 1),
            16 => (*lengths.get(i.checked_sub(1)?)?, 3 + bits.take(2)? as usize),
            17 => (0, 3 + bits.take(3)? as usize),
            18 => (0, 11 + bits.take(7)? as usize),
            _ => return None,
        };
        if i + repeat > nlen + ndist {
            return None;
        }
        lengths[i..i + repeat].fill(value);
        i += repeat;
    }
    if lengths[256] == 0 {
        return None; // no end-of-block code
    }
    Some((
        Huffman::new(&lengths[..nlen])?,
        Huffman::new(&lengths[nlen..])?,
    ))
}

fn codes(
    bits: &mut Bits,
    out: &mut Vec<u8>,
    lit: &Huffman,
    dist: &Huffman,
    keep: usize,
) -> Option<()> {
    loop {
        let sym = usize::from(lit.decode(bits)?);
        match sym {
            0..=255 => out.push(sym as u8),
            256 => return Some(()),
            _ => {
                let i = sym - 257;
                let len = usize::from(*LEN_BASE.get(i)?)
                    + bits.take(u32::from(*LEN_EXTRA.get(i)?))? as usize;
                let d = usize::from(dist.decode(bits)?);
                let back = usize::from(*DIST_BASE.get(d)?)
                    + bits.take(u32::from(*DIST_EXTRA.get(d)?))? as usize;
                if back > out.len() {
                    return None;
                }
                let start = out.len() - back;
                for k in 0..len {
                    out.push(out[start + k]);
                }
            }
        }
        trim(out, keep);
    }
}

// ---------------------------------------------------------------------------------------------
// Reading replies
// ---------------------------------------------------------------------------------------------

fn text(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// The exception at the end of a Python traceback: the lines after the last frame line (frame
/// lines are indented; the exception and its notes are not). A message whose later lines are
/// indented keeps only the lines after the last indented one; at most [`ERROR_TEXT`] characters.
pub fn exception_text(traceback: &str) -> String {
    let trimmed = traceback.trim_end();
    let lines: Vec<&str> = trimmed.lines().collect();
    let start = lines
        .iter()
        .rposition(|l| l.starts_with(' ') || l.starts_with("Traceback (most recent call last)"))
        .map_or(0, |i| i + 1);
    let mut text = lines[start..].join("\n");
    if text.trim().is_empty() {
        text = trimmed.trim_start().to_string();
    }
    if text.chars().count() > ERROR_TEXT {
        let mut cut: String = text.chars().take(ERROR_TEXT).collect();
        cut.push('…');
        text = cut;
    }
    text
}

/// The latest entry of a result stream, as RQ 2 writes it.
#[derive(Debug, Default, PartialEq)]
pub(super) struct RunResult {
    kind: Option<u8>,
    exc_string: Option<Vec<u8>>,
    started: Option<SystemTime>,
    ended: Option<SystemTime>,
}

/// The reply of `XREVRANGE … COUNT 1`: `None` when the stream is empty or absent.
pub(super) fn run_result(v: Value, key: &str) -> Result<Option<RunResult>, QueueError> {
    let bad = || QueueError::Data(format!("rq: unexpected reply to XREVRANGE {key}"));
    let entries = match v {
        Value::ServerError(e) if e.code() == "WRONGTYPE" => {
            return Err(QueueError::Data(format!("rq: {key} is not a stream")))
        }
        Value::ServerError(e) => return Err(QueueError::Redis(e.into())),
        Value::Nil => return Ok(None),
        Value::Array(entries) => entries,
        _ => return Err(bad()),
    };
    let Some(entry) = entries.into_iter().next() else {
        return Ok(None);
    };
    let Value::Array(parts) = entry else {
        return Err(bad());
    };
    let [_, fields] = <[Value; 2]>::try_from(parts).map_err(|_| bad())?;
    let pairs: Vec<(Value, Value)> = match fields {
        Value::Map(m) => m,
        Value::Array(items) if items.len() % 2 == 0 => {
            let mut it = items.into_iter();
            let mut out = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((k, v));
            }
            out
        }
        _ => return Err(bad()),
    };
    let mut result = RunResult::default();
    let seconds = |v: &Value| {
        text(v)
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .and_then(from_unix_seconds)
    };
    for (k, v) in &pairs {
        match text(k).ok_or_else(bad)? {
            b"type" => {
                result.kind = text(v)
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .and_then(|s| s.parse().ok());
            }
            b"exc_string" => result.exc_string = text(v).map(<[u8]>::to_vec),
            b"execution_started_at" => result.started = seconds(v),
            b"execution_ended_at" => result.ended = seconds(v),
            _ => {}
        }
    }
    Ok(Some(result))
}

/// The traceback of a failed run, from `exc_string` (base64 of zlib of the text).
fn failure_text(result: Option<&RunResult>) -> Option<String> {
    let raw = result?.exc_string.as_deref()?;
    let compressed = data_encoding::BASE64.decode(raw.trim_ascii()).ok()?;
    let tail = inflate_tail(&compressed, KEEP_OF_TRACEBACK)?;
    let text = exception_text(&String::from_utf8_lossy(&tail));
    (!text.is_empty()).then_some(text)
}

/// The job hash's fields `look` reads.
#[derive(Debug)]
pub(super) struct JobRecord {
    status: String,
    started_at: Option<SystemTime>,
    ended_at: Option<SystemTime>,
}

/// The job hash's fields read by `look`; `None` when the hash does not exist.
pub(super) fn job_fields(v: Value, key: &str) -> Result<Option<JobRecord>, QueueError> {
    let bad = || QueueError::Data(format!("rq: unexpected reply to HMGET {key}"));
    let items = match v {
        Value::ServerError(e) if e.code() == "WRONGTYPE" => {
            return Err(QueueError::Data(format!("rq: {key} is not a hash")))
        }
        Value::ServerError(e) => return Err(QueueError::Redis(e.into())),
        Value::Array(items) => items,
        _ => return Err(bad()),
    };
    let [status, started, ended] = <[Value; 3]>::try_from(items).map_err(|_| bad())?;
    let time = |v: &Value| {
        text(v)
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(parse_rq_time)
            .and_then(from_unix_seconds)
    };
    let Some(status) = text(&status) else {
        if matches!(status, Value::Nil) && matches!(started, Value::Nil) {
            return Ok(None);
        }
        // Times without a status: not a job RQ wrote.
        return Err(QueueError::Data(format!("rq: {key} has no status")));
    };
    Ok(Some(JobRecord {
        status: String::from_utf8_lossy(status).into_owned(),
        started_at: time(&started),
        ended_at: time(&ended),
    }))
}

/// Where the canary is, from the job hash (`None` when gone) and its latest result.
pub(super) fn seen(job: Option<JobRecord>, result: Option<RunResult>, key: &str) -> Result<Seen, QueueError> {
    let Some(JobRecord {
        status,
        started_at,
        ended_at,
    }) = job
    else {
        // The hash is gone (expired with its result, or deleted): the result stream, if it
        // outlived it, still says how the run ended.
        return Ok(match result.as_ref().and_then(|r| r.kind) {
            Some(1) => Seen::Finished {
                started_at: result.as_ref().and_then(|r| r.started),
                ended_at: result.as_ref().and_then(|r| r.ended),
            },
            Some(2) => Seen::Failed {
                error: failure_text(result.as_ref())
                    .unwrap_or_else(|| "RQ recorded the run as failed".into()),
                started_at: result.as_ref().and_then(|r| r.started),
                ended_at: result.as_ref().and_then(|r| r.ended),
            },
            Some(3) => Seen::Failed {
                error: "stopped: RQ recorded the run as stopped".into(),
                started_at: result.as_ref().and_then(|r| r.started),
                ended_at: result.as_ref().and_then(|r| r.ended),
            },
            _ => Seen::Missing,
        });
    };
    Ok(match status.as_str() {
        "queued" | "deferred" | "scheduled" | "created" => Seen::Waiting,
        "started" => Seen::Running { started_at },
        "finished" => Seen::Finished {
            started_at,
            ended_at,
        },
        "failed" => Seen::Failed {
            error: failure_text(result.as_ref())
                .unwrap_or_else(|| "RQ marked the job failed and recorded no exception".into()),
            started_at,
            ended_at,
        },
        "stopped" => Seen::Failed {
            error: "stopped: the job was stopped while it ran (rq job stop)".into(),
            started_at,
            ended_at,
        },
        "canceled" => Seen::Failed {
            error: "canceled: the job was canceled before it ran".into(),
            started_at,
            ended_at,
        },
        _ => {
            return Err(QueueError::Data(format!(
                "rq: {key} has a status RQ does not write"
            )))
        }
    })
}

/// The job's `data` field: zlib of the pickle of `(func_name, None, ("canaryd", check), {})`.
pub fn job_data(task: &str, check: &str) -> Result<Vec<u8>, QueueError> {
    let call = Py::Tuple(vec![
        Py::Str(task),
        Py::None,
        Py::Tuple(vec![Py::Str(FIRST_ARG), Py::Str(check)]),
        Py::Dict(Vec::new()),
    ]);
    Ok(zlib_stored(&pickle(&call)?))
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

impl CanarySystem for RqCanary {
    fn system(&self) -> System {
        System::Rq
    }

    fn prepare(&self, canary: &Canary) -> Result<String, QueueError> {
        Ok(hex(&job_data(&canary.task, &canary.check)?))
    }

    fn enqueue<'a>(
        &'a self,
        conn: &'a mut MultiplexedConnection,
        canary: &'a Canary,
    ) -> BoxFuture<'a, Result<(), QueueError>> {
        Box::pin(async move {
            let data = data_encoding::HEXLOWER
                .decode(canary.payload.as_bytes())
                .map_err(|_| QueueError::Data("rq: the canary's payload is not hex".into()))?;
            let key = job_key(&canary.id);
            let queue = queue_key(&canary.queue);
            let at = rq_time(canary.enqueued_at);
            let ttl = keep_seconds(canary.keep).to_string();
            let description = description(&canary.check);
            // Job.to_dict's fields, in its order.
            let fields: [(&str, &[u8]); 18] = [
                ("created_at", at.as_bytes()),
                ("data", &data),
                ("success_callback_name", b""),
                ("failure_callback_name", b""),
                ("stopped_callback_name", b""),
                ("started_at", b""),
                ("ended_at", b""),
                ("last_heartbeat", b""),
                ("worker_name", b""),
                ("group_id", b""),
                ("origin", canary.queue.as_bytes()),
                ("description", description.as_bytes()),
                ("enqueued_at", at.as_bytes()),
                ("timeout", ttl.as_bytes()),
                ("result_ttl", ttl.as_bytes()),
                ("failure_ttl", ttl.as_bytes()),
                ("status", b"queued"),
                ("ttl", ttl.as_bytes()),
            ];
            let mut pipe = redis::pipe();
            pipe.atomic();
            pipe.cmd("SADD")
                .arg(format!("{PREFIX}queues"))
                .arg(&queue)
                .ignore();
            pipe.cmd("HSET")
                .arg(&key)
                .arg("status")
                .arg("queued")
                .ignore();
            let hset = pipe.cmd("HSET").arg(&key);
            for (field, value) in fields {
                hset.arg(field).arg(value);
            }
            hset.ignore();
            pipe.cmd("EXPIRE").arg(&key).arg(&ttl).ignore();
            pipe.cmd("EXPIRE")
                .arg(format!("{key}:dependents"))
                .arg(&ttl)
                .ignore();
            pipe.cmd("EXPIRE")
                .arg(format!("{key}:dependencies"))
                .arg(&ttl)
                .ignore();
            pipe.cmd("RPUSH").arg(&queue).arg(&canary.id).ignore();
            pipe.query_async::<()>(conn).await?;
            Ok(())
        })
    }

    fn look<'a>(
        &'a self,
        conn: &'a mut MultiplexedConnection,
        canary: &'a Canary,
    ) -> BoxFuture<'a, Result<Seen, QueueError>> {
        Box::pin(async move {
            let key = job_key(&canary.id);
            let results = results_key(&canary.id);
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            pipe.cmd("HMGET")
                .arg(&key)
                .arg("status")
                .arg("started_at")
                .arg("ended_at");
            pipe.cmd("XREVRANGE")
                .arg(&results)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1);
            let reply: Value = pipe.query_async(conn).await?;
            let items = match reply {
                Value::Array(items) if items.len() == 2 => items,
                _ => {
                    return Err(QueueError::Data(format!(
                        "rq: unexpected pipeline reply reading {key}"
                    )))
                }
            };
            let [job, result] = <[Value; 2]>::try_from(items)
                .map_err(|_| QueueError::Data(format!("rq: short reply reading {key}")))?;
            let job = job_fields(job, &key)?;
            let result = run_result(result, &results)?;
            seen(job, result, &key)
        })
    }

    fn clean<'a>(
        &'a self,
        conn: &'a mut MultiplexedConnection,
        canary: &'a Canary,
    ) -> BoxFuture<'a, Result<(), QueueError>> {
        Box::pin(async move {
            let id = &canary.id;
            let q = &canary.queue;
            let job = job_key(id);
            let keys = [
                job.clone(),
                results_key(id),
                format!("{job}:dependents"),
                format!("{job}:dependencies"),
                format!("{PREFIX}executions:{id}"),
                queue_key(q),
                format!("{}:intermediate", queue_key(q)),
                format!("{PREFIX}wip:{q}"),
                format!("{PREFIX}finished:{q}"),
                format!("{PREFIX}failed:{q}"),
                format!("{PREFIX}canceled:{q}"),
                format!("{PREFIX}deferred:{q}"),
                format!("{PREFIX}scheduled:{q}"),
            ];
            redis::cmd("EVAL")
                .arg(CLEAN)
                .arg(keys.len())
                .arg(&keys[..])
                .arg(id)
                .arg(format!("{PREFIX}execution:{id}:"))
                .arg(MAX_EXECUTIONS)
                .query_async::<Value>(conn)
                .await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        data_encoding::HEXLOWER.decode(s.as_bytes()).unwrap()
    }

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn pickles_the_job_call_as_python_does() {
        // pickle.dumps(('builtins.max', None, ('canaryd', 'mycheck'), {}), protocol=5)
        let expected = unhex(
            "8005952c00000000000000288c0c6275696c74696e732e6d6178944e8c0763616e61727964948c076d79\
             636865636b9486947d9474942e",
        );
        let call = Py::Tuple(vec![
            Py::Str("builtins.max"),
            Py::None,
            Py::Tuple(vec![Py::Str("canaryd"), Py::Str("mycheck")]),
            Py::Dict(Vec::new()),
        ]);
        assert_eq!(pickle(&call).unwrap(), expected);
    }

    #[test]
    fn pickles_long_tuples_dicts_and_long_strings_as_python_does() {
        // pickle.dumps(('x', ('a','b','c','d'), {'k':'v'}, {'e':None,'f':(),'g':('h',)},
        //               'é'*300), protocol=5)
        let mut expected = String::from(
            "8005959c02000000000000288c017894288c0161948c0162948c0163948c01649474947d948c016b948c\
             017694737d94288c0165944e8c016694298c0167948c0168948594755858020000",
        );
        expected.push_str(&"c3a9".repeat(300));
        expected.push_str("9474942e");
        let long = "é".repeat(300);
        let value = Py::Tuple(vec![
            Py::Str("x"),
            Py::Tuple(["a", "b", "c", "d"].map(Py::Str).to_vec()),
            Py::Dict(vec![(Py::Str("k"), Py::Str("v"))]),
            Py::Dict(vec![
                (Py::Str("e"), Py::None),
                (Py::Str("f"), Py::Tuple(Vec::new())),
                (Py::Str("g"), Py::Tuple(vec![Py::Str("h")])),
            ]),
            Py::Str(&long),
        ]);
        assert_eq!(pickle(&value).unwrap(), unhex(&expected));
    }

    #[test]
    fn pickles_dicts_in_cpythons_batches() {
        use sha2::{Digest, Sha256};
        // sha256(pickle.dumps({str(i): None for i in range(n)}, protocol=5))
        for (n, len, digest) in [
            (
                2,
                26,
                "cab490e621bab14105e378859e820c69b7249dd81849f1f5111f4d84dde83e20",
            ),
            (
                1000,
                6908,
                "3afe52b6d1dc73cc3d4193ee06f448ba15eb58bc7a497e1880cfa8da88e4d644",
            ),
            (
                1001,
                6916,
                "6c902cc12d273731a9357e28426f7a88b9787d8e5d967504fde0e70296455c71",
            ),
        ] {
            let keys: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            let dict = Py::Dict(keys.iter().map(|k| (Py::Str(k), Py::None)).collect());
            let bytes = pickle(&dict).unwrap();
            assert_eq!(bytes.len(), len, "{n} items");
            assert_eq!(hex(&Sha256::digest(&bytes)), digest, "{n} items");
        }
    }

    #[test]
    fn refuses_a_pickle_over_one_frame() {
        let huge = "x".repeat(MAX_PICKLE);
        assert!(matches!(
            job_data("builtins.max", &huge),
            Err(QueueError::Data(_))
        ));
    }

    #[test]
    fn prepare_is_the_hex_of_the_zlib_of_the_pickle() {
        let canary = Canary {
            id: "canaryd-0123456789abcdef".into(),
            check: "mycheck".into(),
            queue: "default".into(),
            task: DEFAULT_TASK.into(),
            enqueued_at: SystemTime::UNIX_EPOCH,
            keep: Duration::from_secs(60),
            payload: String::new(),
        };
        let payload = RqCanary::new().prepare(&canary).unwrap();
        let data = unhex(&payload);
        assert_eq!(&data[..2], &[0x78, 0x01], "a zlib header");
        let pickled = inflate_tail(&data, KEEP_OF_TRACEBACK).unwrap();
        assert_eq!(
            pickled,
            unhex(
                "8005952c00000000000000288c0c6275696c74696e732e6d6178944e8c0763616e61727964948c07\
                 6d79636865636b9486947d9474942e"
            )
        );
        // The Adler-32 of the pickle closes the stream (zlib.decompress checks it).
        assert_eq!(
            &data[data.len() - 4..],
            &adler32(&pickled).to_be_bytes(),
            "adler-32 trailer"
        );
    }

    #[test]
    fn stored_zlib_round_trips_across_blocks() {
        for len in [0, 1, 0xffff, 0x10000, 200_000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let z = zlib_stored(&data);
            assert_eq!(inflate_tail(&z, len + 1).unwrap(), data, "{len} bytes");
        }
        assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
    }

    /// base64(zlib.compress(traceback)) for a 3,080-byte traceback: dynamic Huffman blocks, as
    /// RQ's worker writes `exc_string`.
    const DYNAMIC: &str = "eJyN1s1q21AQxfG9n+KSVQKh8Zwjf+6bJwhdFhTllpoqtpGVkLx93GoMcwyFubsrrv6rH8M8DW1Xn9vuT7l9PZzGMtSu7sfStX1f+vY03m1npTzu+lpuHtrj8eF1/u34eXNf+t2+lvl92e3Lr/n5STn/Ob4N55vdftz9++Dnp5+rjoWOTR2TDnIdhA6mDqTDXIehw6lD6TS5ThM6zdRppLPIdRahs5g6C+ksc51l6CynzlI6q1xnFTqrqbOSzjrXWYfOeuqspbPJdTahs5k6G3U4T0KMos1J25XpLGpRfWGtri0J26Jsc9qmti2J26Juc96mvi0J3KJwc+Kmxi2J3KJyc+amzi0J3aJ0c+qm1i2J3aJ2c+6m3i0J3qJ4c/Km5i2J3qJ6c/am7pF0j+ge7h7qHkn3iO7h7nE1z7MDXSb6ZaSreyTdI7qHu4e6R9I9onu4e6h7JN0juoe7h7pH0j2ie7h7qHsk3SO6h7uHukfSPaJ7uHuoeyTdI7qHu4e6Z9I9o3u6e6p7Jt0zuqe7p7pn0j2je7p7Xu0y2WVGtpnLOqPumXTP6J7unuqeSfeM7unuqe6ZdM/onu6e6p5J94zu6e6p7pl0z+ie7p7qnkn3jO7p7qnum/+6/9H2b/X7MByGbXluX8r733tpMNsfxrotp1rL+LuWl0N3mn0BTVQeyQ==";

    #[test]
    fn inflates_what_python_compresses_and_keeps_the_tail() {
        let z = data_encoding::BASE64.decode(DYNAMIC.as_bytes()).unwrap();
        let text = String::from_utf8(inflate_tail(&z, KEEP_OF_TRACEBACK).unwrap()).unwrap();
        assert_eq!(text.len(), 3080);
        assert!(text.starts_with("Traceback (most recent call last):\n  File \"/app/m0.py\""));
        assert_eq!(
            exception_text(&text),
            "ValueError: bad value 42\nnote: see the docs"
        );
        // A longer stream keeps its end only (the window stays whole while inflating).
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 97) as u8).collect();
        let tail = inflate_tail(&zlib_stored(&data), 40_000).unwrap();
        assert_eq!(tail, &data[data.len() - 40_000..]);
    }

    #[test]
    fn damaged_zlib_is_none_never_a_panic() {
        let z = data_encoding::BASE64.decode(DYNAMIC.as_bytes()).unwrap();
        assert_eq!(inflate_tail(b"", 10), None);
        assert_eq!(inflate_tail(b"\x78", 10), None);
        assert_eq!(inflate_tail(b"\x78\x02", 10), None, "bad check bits");
        for cut in 0..z.len() - 4 {
            assert_eq!(inflate_tail(&z[..cut], 1 << 20), None, "cut at {cut}");
        }
        // Every single-byte corruption either decodes to something or is None.
        for i in 2..z.len() {
            let mut bad = z.clone();
            bad[i] ^= 0x5a;
            let _ = inflate_tail(&bad, 1 << 20);
        }
        // A back reference before the start of the output.
        assert_eq!(inflate_tail(&[0x78, 0x01, 0x03, 0x02, 0x00], 10), None);
    }

    #[test]
    fn exception_text_is_the_end_of_a_traceback() {
        let tb = "Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n    \
                  raise RuntimeError('boom')\nRuntimeError: boom (expected by the test)\n";
        assert_eq!(
            exception_text(tb),
            "RuntimeError: boom (expected by the test)"
        );
        assert_eq!(exception_text("just text"), "just text");
        assert_eq!(
            exception_text("Traceback (most recent call last):\n"),
            "Traceback (most recent call last):"
        );
        let long = format!("E: {}", "y".repeat(5000));
        assert_eq!(exception_text(&long).chars().count(), ERROR_TEXT + 1);
    }

    #[test]
    fn times_are_rqs_utcformat() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_micros(1_795_242_021_117_990);
        assert_eq!(rq_time(t), "2026-11-21T06:20:21.117990Z");
        assert_eq!(parse_rq_time(&rq_time(t)), Some(1_795_242_021.117_99));
        assert_eq!(keep_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(keep_seconds(Duration::ZERO), 1);
        assert_eq!(keep_seconds(Duration::from_secs(3600)), 3600);
    }

    fn hash(status: Value, started: Value, ended: Value) -> Value {
        Value::Array(vec![status, started, ended])
    }

    fn look_at(job: Value, result: Value) -> Result<Seen, QueueError> {
        let job = job_fields(job, "rq:job:x")?;
        let result = run_result(result, "rq:results:x")?;
        seen(job, result, "rq:job:x")
    }

    fn entry(fields: &[(&str, &str)]) -> Value {
        let flat = fields
            .iter()
            .flat_map(|(k, v)| [bulk(k), bulk(v)])
            .collect();
        Value::Array(vec![Value::Array(vec![
            bulk("1796381023100-0"),
            Value::Array(flat),
        ])])
    }

    fn at(s: &str) -> Option<SystemTime> {
        parse_rq_time(s).and_then(from_unix_seconds)
    }

    #[test]
    fn look_reads_each_status() {
        let none = || Value::Array(Vec::new());
        let started = "2026-12-04T10:43:43.098391Z";
        let ended = "2026-12-04T10:43:43.098930Z";
        assert_eq!(
            look_at(hash(bulk("queued"), bulk(""), bulk("")), none()).unwrap(),
            Seen::Waiting
        );
        assert_eq!(
            look_at(hash(bulk("started"), bulk(started), bulk("")), none()).unwrap(),
            Seen::Running {
                started_at: at(started)
            }
        );
        assert_eq!(
            look_at(hash(bulk("finished"), bulk(started), bulk(ended)), none()).unwrap(),
            Seen::Finished {
                started_at: at(started),
                ended_at: at(ended)
            }
        );
        let failed = entry(&[("type", "2"), ("exc_string", DYNAMIC)]);
        assert_eq!(
            look_at(hash(bulk("failed"), bulk(started), bulk(ended)), failed).unwrap(),
            Seen::Failed {
                error: "ValueError: bad value 42\nnote: see the docs".into(),
                started_at: at(started),
                ended_at: at(ended)
            }
        );
        assert!(matches!(
            look_at(hash(bulk("stopped"), bulk(started), bulk(ended)), none()).unwrap(),
            Seen::Failed { .. }
        ));
        assert_eq!(
            look_at(hash(Value::Nil, Value::Nil, Value::Nil), none()).unwrap(),
            Seen::Missing
        );
        assert_eq!(
            look_at(hash(Value::Nil, Value::Nil, Value::Nil), Value::Nil).unwrap(),
            Seen::Missing
        );
    }

    #[test]
    fn a_result_outliving_its_hash_still_tells_the_end() {
        let gone = || hash(Value::Nil, Value::Nil, Value::Nil);
        let done = entry(&[
            ("type", "1"),
            ("execution_started_at", "1796381023.088645"),
            ("execution_ended_at", "1796381023.09893"),
        ]);
        let Seen::Finished {
            started_at: Some(s),
            ended_at: Some(e),
        } = look_at(gone(), done).unwrap()
        else {
            panic!("finished with both times");
        };
        let took = e.duration_since(s).unwrap().as_secs_f64();
        assert!((took - 0.010285).abs() < 1e-5, "{took}");
        let failed = entry(&[("type", "2"), ("exc_string", "not base64!")]);
        assert!(matches!(
            look_at(gone(), failed).unwrap(),
            Seen::Failed { error, .. } if error == "RQ recorded the run as failed"
        ));
        assert_eq!(
            look_at(gone(), entry(&[("type", "4")])).unwrap(),
            Seen::Missing
        );
    }

    #[test]
    fn damaged_records_are_errors_naming_the_key_or_read_leniently() {
        let none = || Value::Array(Vec::new());
        // Unparsable times are unknown times, not errors.
        assert_eq!(
            look_at(
                hash(bulk("started"), bulk("yesterday"), bulk("\u{0}")),
                none()
            )
            .unwrap(),
            Seen::Running { started_at: None }
        );
        // A status RQ never writes, a hash without status, a short HMGET reply.
        for job in [
            hash(bulk("exploded"), bulk(""), bulk("")),
            hash(Value::Nil, bulk("2026-12-04T10:43:43.098391Z"), Value::Nil),
            Value::Array(vec![bulk("queued")]),
            Value::Int(3),
        ] {
            let err = look_at(job, none()).unwrap_err();
            let QueueError::Data(msg) = err else {
                panic!("a data error");
            };
            assert!(msg.contains("rq:job:x"), "{msg}");
        }
        // A result stream of the wrong shape.
        for result in [
            Value::Int(1),
            Value::Array(vec![Value::Int(1)]),
            Value::Array(vec![Value::Array(vec![bulk("1-0")])]),
            Value::Array(vec![Value::Array(vec![
                bulk("1-0"),
                Value::Array(vec![bulk("odd")]),
            ])]),
        ] {
            let err = look_at(hash(bulk("failed"), bulk(""), bulk("")), result).unwrap_err();
            let QueueError::Data(msg) = err else {
                panic!("a data error");
            };
            assert!(msg.contains("rq:results:x"), "{msg}");
        }
        // A failure whose stream entry holds garbage still fails, with a generic text.
        let garbage = entry(&[
            ("type", "x"),
            ("exc_string", "eJzzSM3JyVcozy/KSQEAGKsEPQ=="),
        ]);
        let Seen::Failed { error, .. } =
            look_at(hash(bulk("failed"), bulk(""), bulk("")), garbage).unwrap()
        else {
            panic!("failed");
        };
        assert_eq!(error, "Hello world");
    }
}
