//! A fake Redis on loopback for hostile-server tests: it speaks just enough RESP to let redis-rs
//! connect (the `CLIENT SETINFO` / `SELECT` / `PING` of the handshake get `+OK`), then answers
//! every other command with whatever the test's [`Answer`] function says: a canned reply, a
//! 100 MB bulk string written as fast as the client reads, or a bulk declared huge and trickled.
//! One thread per connection; it ends when the client goes away. Use with `mod fake_redis;`.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// What to send for one command.
pub enum Reply {
    /// These bytes (one or more RESP values).
    Raw(Vec<u8>),
    /// A bulk string of this many bytes, written in 64 KiB pieces until done or the client
    /// hangs up.
    HugeBulk(usize),
    /// `$<declared>\r\n`, then one byte every `every` until the client hangs up.
    Trickle { declared: u64, every: Duration },
}

/// The test's answer to a command (its arguments, the name first).
pub type Answer = Arc<dyn Fn(&[Vec<u8>]) -> Reply + Send + Sync>;

/// A listening fake Redis; it stops accepting when dropped (connections end with their client).
pub struct FakeRedis {
    port: u16,
    /// Commands answered (handshake excluded).
    pub answered: Arc<AtomicUsize>,
    /// Connections accepted.
    pub connections: Arc<AtomicUsize>,
}

impl FakeRedis {
    pub fn start(answer: Answer) -> FakeRedis {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().unwrap().port();
        let answered = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let (a, c) = (answered.clone(), connections.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                let (answer, a) = (answer.clone(), a.clone());
                thread::spawn(move || {
                    let _ = serve(stream, &answer, &a);
                });
            }
        });
        FakeRedis {
            port,
            answered,
            connections,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn answered(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }
}

fn serve(stream: TcpStream, answer: &Answer, answered: &AtomicUsize) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut out = stream.try_clone()?;
    let mut input = BufReader::new(stream);
    loop {
        let args = read_command(&mut input)?;
        let name = args
            .first()
            .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
            .unwrap_or_default();
        let sub = args
            .get(1)
            .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
            .unwrap_or_default();
        if matches!(name.as_str(), "SELECT" | "PING" | "AUTH")
            || (name == "CLIENT" && sub == "SETINFO")
        {
            out.write_all(b"+OK\r\n")?;
            continue;
        }
        answered.fetch_add(1, Ordering::SeqCst);
        match answer(&args) {
            Reply::Raw(bytes) => out.write_all(&bytes)?,
            Reply::HugeBulk(n) => {
                write!(out, "${n}\r\n")?;
                let chunk = vec![b'x'; 64 * 1024];
                let mut left = n;
                while left > 0 {
                    let k = left.min(chunk.len());
                    out.write_all(&chunk[..k])?;
                    left -= k;
                }
                out.write_all(b"\r\n")?;
            }
            Reply::Trickle { declared, every } => {
                write!(out, "${declared}\r\n")?;
                loop {
                    out.write_all(b"x")?;
                    thread::sleep(every);
                }
            }
        }
    }
}

/// One command: a RESP array of bulk strings (what redis-rs sends).
fn read_command(r: &mut impl BufRead) -> io::Result<Vec<Vec<u8>>> {
    let n = header(r, b'*')?;
    let mut args = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let len = header(r, b'$')?;
        let mut buf = vec![0; len + 2];
        r.read_exact(&mut buf)?;
        buf.truncate(len);
        args.push(buf);
    }
    Ok(args)
}

fn header(r: &mut impl BufRead, kind: u8) -> io::Result<usize> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "not a command");
    let rest = line.trim_end().strip_prefix(kind as char).ok_or_else(bad)?;
    rest.parse().map_err(|_| bad())
}

/// RESP encoders for canned replies.
pub mod resp {
    pub fn int(n: i64) -> Vec<u8> {
        format!(":{n}\r\n").into_bytes()
    }

    pub fn bulk(b: &[u8]) -> Vec<u8> {
        let mut out = format!("${}\r\n", b.len()).into_bytes();
        out.extend_from_slice(b);
        out.extend_from_slice(b"\r\n");
        out
    }

    pub fn simple(s: &str) -> Vec<u8> {
        format!("+{s}\r\n").into_bytes()
    }

    pub fn nil() -> Vec<u8> {
        b"$-1\r\n".to_vec()
    }

    pub fn array(items: &[Vec<u8>]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", items.len()).into_bytes();
        for i in items {
            out.extend_from_slice(i);
        }
        out
    }
}
