//! A byte budget on every Redis reply, enforced below redis-rs.
//!
//! redis-rs 1.x has no limit on a reply's size: it parses whatever a server sends, so one
//! 100 MB bulk string (a job at a queue head, a hostile or broken server) costs canaryd hundreds
//! of megabytes. [`Budgeted`] wraps the socket that the multiplexed connection reads and follows
//! the RESP framing of the bytes passing through ([`ReplyScanner`]): it knows where each
//! top-level reply starts and ends without building any value. When one reply grows past
//! [`MAX_REPLY_BYTES`], declares a bulk length or element count that could not fit in it, holds
//! more than [`MAX_REPLY_VALUES`] values, or nests deeper than redis-rs accepts, the read fails
//! with an I/O error: the connection is dropped (every request on it fails) and the reason is
//! kept in a shared [`Tripped`] flag, so the probe can say "reply over 8 MiB" instead of
//! "connection lost" and does not retry into the same reply.
//!
//! Nothing is ever reserved from a declared length: `$2000000000\r\n` fails as soon as its header
//! line is read.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most bytes one reply (one command's answer) may take on the wire: 8 MiB.
pub const MAX_REPLY_BYTES: u64 = 8 * 1024 * 1024;

/// The most values (strings, numbers, nils, arrays...) one reply may hold: 262,144. Each value
/// costs redis-rs about 50 bytes in memory however short it is on the wire, so this bounds the
/// parsed reply to about 15 MB.
pub const MAX_REPLY_VALUES: u64 = 256 * 1024;

/// Nesting redis-rs's parser accepts (its `MAX_RECURSE_DEPTH`); deeper replies fail here first,
/// with a message.
pub const MAX_REPLY_DEPTH: usize = 100;

/// Longest header line (`$123\r\n`, `:42\r\n`, a simple string or error) within a reply; simple
/// strings longer than this are not something Redis sends.
const MAX_LINE: usize = 64 * 1024;

/// Why a connection was cut, shared between its stream and the probe.
#[derive(Debug, Default)]
pub struct Tripped(OnceLock<String>);

impl Tripped {
    /// What the reply broke, if it did: `reply over 8 MiB`, ...
    pub fn reason(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }

    fn trip(&self, reason: String) -> io::Error {
        let _ = self.0.set(reason.clone());
        io::Error::new(io::ErrorKind::InvalidData, reason)
    }
}

/// A stream whose incoming bytes are checked against the reply budget.
pub struct Budgeted<S> {
    inner: S,
    scanner: ReplyScanner,
    tripped: Arc<Tripped>,
}

impl<S> Budgeted<S> {
    /// Wraps `inner`; `tripped` receives the reason when a reply breaks the budget.
    pub fn new(inner: S, tripped: Arc<Tripped>) -> Budgeted<S> {
        Budgeted {
            inner,
            scanner: ReplyScanner::default(),
            tripped,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Budgeted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(reason) = this.tripped.reason() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                reason.to_string(),
            )));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if let Err(reason) = this.scanner.feed(&buf.filled()[before..]) {
                    // The bytes already in `buf` are withdrawn: redis-rs never sees a reply
                    // that broke the budget.
                    buf.set_filled(before);
                    return Poll::Ready(Err(this.tripped.trip(reason)));
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Budgeted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Where the scanner is inside the current value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// Expecting a type byte.
    Type,
    /// Reading a header line; the type byte says what it is.
    Line(u8),
    /// Skipping a bulk payload and its CRLF: bytes left.
    Payload(u64),
}

/// Follows RESP2/RESP3 framing byte by byte, counting the bytes and values of the current
/// top-level reply. Allocation is bounded: the header line (at most [`MAX_LINE`] bytes, in
/// practice a number) and a stack of at most [`MAX_REPLY_DEPTH`] counters.
#[derive(Debug)]
pub struct ReplyScanner {
    at: At,
    line: Vec<u8>,
    /// Values still expected by each open aggregate, innermost last.
    open: Vec<u64>,
    /// Bytes and values of the current top-level reply so far.
    bytes: u64,
    values: u64,
}

impl Default for ReplyScanner {
    fn default() -> Self {
        ReplyScanner {
            at: At::Type,
            line: Vec::new(),
            open: Vec::new(),
            bytes: 0,
            values: 0,
        }
    }
}

fn over_bytes() -> String {
    format!("reply over {} MiB", MAX_REPLY_BYTES / (1024 * 1024))
}

impl ReplyScanner {
    /// Takes the next bytes of the stream; an error says which limit a reply broke (the stream
    /// cannot be followed after that).
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), String> {
        while !data.is_empty() {
            match self.at {
                At::Payload(left) => {
                    let take = left.min(data.len() as u64);
                    self.count_bytes(take)?;
                    data = &data[take as usize..];
                    if take == left {
                        self.at = At::Type;
                        self.value_done();
                    } else {
                        self.at = At::Payload(left - take);
                    }
                }
                At::Type => {
                    let b = data[0];
                    data = &data[1..];
                    self.count_bytes(1)?;
                    self.values += 1;
                    if self.values > MAX_REPLY_VALUES {
                        return Err(format!("reply of more than {MAX_REPLY_VALUES} values"));
                    }
                    if !b"+-:_#,($!=*~>%|".contains(&b) {
                        return Err(format!("not a RESP reply (type byte {:#04x})", b));
                    }
                    self.line.clear();
                    self.at = At::Line(b);
                }
                At::Line(kind) => {
                    let end = data.iter().position(|&b| b == b'\n');
                    let take = end.map_or(data.len(), |i| i + 1);
                    self.count_bytes(take as u64)?;
                    if self.line.len() + take > MAX_LINE {
                        return Err(format!("reply line over {} KiB", MAX_LINE / 1024));
                    }
                    self.line.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if end.is_some() {
                        self.line_done(kind)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn count_bytes(&mut self, n: u64) -> Result<(), String> {
        self.bytes += n;
        if self.bytes > MAX_REPLY_BYTES {
            return Err(over_bytes());
        }
        Ok(())
    }

    /// The header line of a value of type `kind` is complete (it ends with `\n`).
    fn line_done(&mut self, kind: u8) -> Result<(), String> {
        let text = self
            .line
            .strip_suffix(b"\r\n")
            .or_else(|| self.line.strip_suffix(b"\n"))
            .unwrap_or(&self.line);
        let number = || -> Result<i64, String> {
            std::str::from_utf8(text)
                .ok()
                .and_then(|t| t.parse::<i64>().ok())
                .ok_or_else(|| "malformed RESP length".to_string())
        };
        match kind {
            // Bulk string, bulk error, verbatim string: the payload and its CRLF follow.
            b'$' | b'!' | b'=' => {
                let n = number()?;
                if n < 0 {
                    self.value_done();
                } else {
                    let n = n as u64;
                    if n.saturating_add(2).saturating_add(self.bytes) > MAX_REPLY_BYTES {
                        return Err(over_bytes());
                    }
                    self.at = At::Payload(n + 2);
                    return Ok(());
                }
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let n = number()?;
                if n <= 0 {
                    self.value_done();
                } else {
                    let per = if matches!(kind, b'%' | b'|') { 2 } else { 1 };
                    let n = (n as u64).saturating_mul(per);
                    // Every value takes at least three bytes (`_\r\n`) and counts as one.
                    if n.saturating_add(self.values) > MAX_REPLY_VALUES {
                        return Err(format!("reply of more than {MAX_REPLY_VALUES} values"));
                    }
                    if n.saturating_mul(3).saturating_add(self.bytes) > MAX_REPLY_BYTES {
                        return Err(over_bytes());
                    }
                    if self.open.len() >= MAX_REPLY_DEPTH {
                        return Err(format!("reply nests deeper than {MAX_REPLY_DEPTH}"));
                    }
                    // An attribute (`|`) precedes the value it describes: one more value.
                    self.open.push(if kind == b'|' { n + 1 } else { n });
                    self.at = At::Type;
                    return Ok(());
                }
            }
            _ => self.value_done(),
        }
        self.at = At::Type;
        Ok(())
    }

    /// One value is complete: close the aggregates it completes; a top-level reply that is
    /// complete resets the budget for the next one.
    fn value_done(&mut self) {
        self.at = At::Type;
        while let Some(left) = self.open.last_mut() {
            *left -= 1;
            if *left > 0 {
                return;
            }
            self.open.pop();
        }
        self.bytes = 0;
        self.values = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> Result<ReplyScanner, String> {
        let mut s = ReplyScanner::default();
        for c in chunks {
            s.feed(c)?;
        }
        Ok(s)
    }

    #[test]
    fn ordinary_replies_pass_and_reset_the_budget() {
        let s = scan(&[
            b"+OK\r\n:42\r\n$5\r\nhel",
            b"lo\r\n*2\r\n$-1\r\n*0\r\n%1\r\n+a\r\n_\r\n",
        ])
        .unwrap();
        assert_eq!((s.at, s.open.len(), s.bytes, s.values), (At::Type, 0, 0, 0));
    }

    #[test]
    fn many_replies_under_the_cap_each_pass_however_many_in_total() {
        let mut s = ReplyScanner::default();
        let one = format!("${}\r\n{}\r\n", 1 << 20, "x".repeat(1 << 20));
        for _ in 0..20 {
            s.feed(one.as_bytes()).unwrap();
        }
    }

    #[test]
    fn a_declared_bulk_over_the_cap_fails_at_its_header() {
        let e = scan(&[b"$2000000000\r\n"]).unwrap_err();
        assert_eq!(e, "reply over 8 MiB");
        let e = scan(&[b"*1\r\n$8388608\r\n"]).unwrap_err();
        assert_eq!(e, "reply over 8 MiB");
    }

    #[test]
    fn an_aggregate_too_long_or_too_deep_fails() {
        assert!(scan(&[b"*2000000000\r\n"]).unwrap_err().contains("values"));
        let deep = "*1\r\n".repeat(MAX_REPLY_DEPTH + 1);
        assert!(scan(&[deep.as_bytes()]).unwrap_err().contains("deeper"));
    }

    #[test]
    fn many_tiny_values_count_against_the_value_cap() {
        let mut s = ReplyScanner::default();
        s.feed(b"*300000\r\n").unwrap_err();
        let mut s = ReplyScanner::default();
        s.feed(b"*2\r\n*200000\r\n").unwrap();
        for _ in 0..200_000 {
            s.feed(b"_\r\n").unwrap();
        }
        assert!(s.feed(b"*100000\r\n").unwrap_err().contains("values"));
    }

    #[test]
    fn garbage_and_endless_lines_fail() {
        assert!(scan(&[b"hello"]).unwrap_err().contains("type byte"));
        assert!(scan(&[b"$x\r\n"]).unwrap_err().contains("malformed"));
        let long = vec![b'a'; MAX_LINE + 1];
        assert!(scan(&[b"+", &long]).unwrap_err().contains("line"));
    }

    #[test]
    fn a_reply_growing_past_the_cap_in_small_pieces_fails() {
        let mut s = ReplyScanner::default();
        s.feed(b"*100\r\n").unwrap();
        let element = format!("$100000\r\n{}\r\n", "x".repeat(100_000));
        let mut fed = 0;
        let err = loop {
            match s.feed(element.as_bytes()) {
                Ok(()) => fed += element.len(),
                Err(e) => break e,
            }
            assert!(fed < 9 << 20, "no error after {fed} bytes");
        };
        assert_eq!(err, "reply over 8 MiB");
        assert!(fed > 8_000_000);
    }
}
