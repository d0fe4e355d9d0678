//! A counting TCP proxy in front of Redis, shared by the Redis benches (`bench_queue`,
//! `bench_canary`), which include it with `#[path = "shared/wire.rs"] mod wire;`.
//!
//! It counts what a client sends and Redis answers, on the wire: round trips (see
//! [`WireProxy`]), commands (complete RESP requests), connections opened and bytes each way.
//! Nothing is parsed beyond finding where each RESP message ends.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

/// Totals over every connection since the last reset.
#[derive(Default)]
struct Wire {
    round_trips: AtomicU64,
    commands: AtomicU64,
    connections: AtomicU64,
    bytes_out: AtomicU64,
    bytes_in: AtomicU64,
}

/// Plain copies of [`Wire`].
pub struct WireSnapshot {
    pub round_trips: u64,
    pub commands: u64,
    pub connections: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
}

/// One proxied connection: requests the client completed and replies Redis completed.
#[derive(Default)]
struct InFlight {
    sent: AtomicU64,
    answered: AtomicU64,
}

/// A TCP proxy on a free loopback port in front of Redis, counting on the wire.
///
/// A round trip starts when a client begins a request while everything it sent before has been
/// answered: it had nothing in flight, so it waited for Redis. A pipeline is one round trip
/// however many segments it is written in, even when Redis starts answering a long one before
/// the client has finished writing it (which a "client spoke after the server" rule would count
/// several times). Commands are the RESP requests the client completed.
pub struct WireProxy {
    /// Where clients connect instead of Redis.
    pub addr: SocketAddr,
    wire: Arc<Wire>,
    stop: Arc<AtomicBool>,
}

impl WireProxy {
    /// A proxy on a free loopback port, forwarding every connection to `upstream`.
    pub fn start(upstream: SocketAddr) -> Result<WireProxy, String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let wire = Arc::new(Wire::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (w, s) = (wire.clone(), stop.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                w.connections.fetch_add(1, Ordering::SeqCst);
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                let conn = Arc::new(InFlight::default());
                pump(c2, s2, w.clone(), conn.clone(), Side::Client);
                pump(server, client, w.clone(), conn, Side::Server);
            }
        });
        Ok(WireProxy { addr, wire, stop })
    }

    /// Starts counting from zero, between runs (no request in flight).
    pub fn reset(&self) {
        for c in [
            &self.wire.round_trips,
            &self.wire.commands,
            &self.wire.connections,
            &self.wire.bytes_out,
            &self.wire.bytes_in,
        ] {
            c.store(0, Ordering::SeqCst);
        }
    }

    /// The totals since the last reset.
    pub fn snapshot(&self) -> WireSnapshot {
        let w = &self.wire;
        WireSnapshot {
            round_trips: w.round_trips.load(Ordering::SeqCst),
            commands: w.commands.load(Ordering::SeqCst),
            connections: w.connections.load(Ordering::SeqCst),
            bytes_out: w.bytes_out.load(Ordering::SeqCst),
            bytes_in: w.bytes_in.load(Ordering::SeqCst),
        }
    }
}

impl Drop for WireProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    /// Client → Redis: requests.
    Client,
    /// Redis → client: replies.
    Server,
}

/// Copies `from` → `to` on a thread, counting before forwarding: the peer can only answer bytes
/// it has received, so a count is always in place before the answer it leads to.
fn pump(mut from: TcpStream, mut to: TcpStream, wire: Arc<Wire>, conn: Arc<InFlight>, side: Side) {
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut resp = RespCounter::new(side);
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            match side {
                Side::Client => {
                    let idle = !resp.partial()
                        && conn.sent.load(Ordering::SeqCst) == conn.answered.load(Ordering::SeqCst);
                    if idle {
                        wire.round_trips.fetch_add(1, Ordering::SeqCst);
                    }
                    let requests = resp.feed(&buf[..n]);
                    conn.sent.fetch_add(requests, Ordering::SeqCst);
                    wire.commands.fetch_add(requests, Ordering::SeqCst);
                    wire.bytes_out.fetch_add(n as u64, Ordering::SeqCst);
                }
                Side::Server => {
                    let replies = resp.feed(&buf[..n]);
                    conn.answered.fetch_add(replies, Ordering::SeqCst);
                    wire.bytes_in.fetch_add(n as u64, Ordering::SeqCst);
                }
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// Counts complete RESP messages in one direction of a connection: requests (arrays of bulk
/// strings, or inline commands) from the client; replies (RESP2 and RESP3 values; push
/// messages answer no request and are not counted) from Redis.
struct RespCounter {
    side: Side,
    /// Bytes of a message not complete yet.
    pending: Vec<u8>,
}

impl RespCounter {
    fn new(side: Side) -> RespCounter {
        RespCounter {
            side,
            pending: Vec::new(),
        }
    }

    /// Whether a message has begun and not ended.
    fn partial(&self) -> bool {
        !self.pending.is_empty()
    }

    fn feed(&mut self, bytes: &[u8]) -> u64 {
        self.pending.extend_from_slice(bytes);
        let mut at = 0;
        let mut count = 0;
        while at < self.pending.len() {
            let b = &self.pending[at..];
            let Some(end) = (match self.side {
                Side::Client => request_end(b),
                Side::Server => value_end(b, 0),
            }) else {
                break;
            };
            // A push message answers no request (an attribute is counted with its value).
            if self.side == Side::Client || b[0] != b'>' {
                count += 1;
            }
            at += end;
        }
        self.pending.drain(..at);
        count
    }
}

/// The line starting at `at` (without its CRLF) and where the next one starts.
fn resp_line(b: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let len = b.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
    Some((&b[at..at + len], at + len + 2))
}

fn resp_number(s: &[u8]) -> Option<i64> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// End of the complete request at the start of `b`, if it is all there.
fn request_end(b: &[u8]) -> Option<usize> {
    if b.first()? != &b'*' {
        // Inline command: up to the end of the line.
        return b.iter().position(|&c| c == b'\n').map(|i| i + 1);
    }
    let (head, mut at) = resp_line(b, 0)?;
    for _ in 0..resp_number(&head[1..])?.max(0) {
        let (h, next) = resp_line(b, at)?;
        if h.first() != Some(&b'$') {
            return None;
        }
        at = next + usize::try_from(resp_number(&h[1..])?).ok()? + 2;
        if at > b.len() {
            return None;
        }
    }
    Some(at)
}

/// End of the complete value starting at `at`, if it is all there.
fn value_end(b: &[u8], at: usize) -> Option<usize> {
    let (head, next) = resp_line(b, at)?;
    let n = || resp_number(head.get(1..)?);
    match head.first()? {
        // Bulk string, blob error, verbatim string (-1: null).
        b'$' | b'!' | b'=' => {
            let len = n()?;
            if len < 0 {
                return Some(next);
            }
            let end = next + usize::try_from(len).ok()? + 2;
            (end <= b.len()).then_some(end)
        }
        // Array, set, push (-1: null); map and attribute hold pairs.
        kind @ (b'*' | b'~' | b'>' | b'%' | b'|') => {
            let per = if matches!(kind, b'%' | b'|') { 2 } else { 1 };
            let mut at = next;
            for _ in 0..n()?.max(0) * per {
                at = value_end(b, at)?;
            }
            // An attribute precedes the value it describes.
            if *kind == b'|' {
                return value_end(b, at);
            }
            Some(at)
        }
        // Simple string, error, integer, null, boolean, double, big number: one line.
        _ => Some(next),
    }
}
