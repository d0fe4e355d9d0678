//! A TCP proxy in front of a test Redis that counts request/response round trips, so a queue
//! test can assert "at most two round trips whatever the number of queues" on the wire rather
//! than infer it from command counts.
//!
//! A round trip starts each time the client sends after the server last spoke (or for the first
//! time): a pipeline written in several segments before any reply is one round trip, and so is a
//! reply that arrives in several segments.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread;

/// Who sent the last bytes through the proxy.
const NOBODY: u8 = 0;
const CLIENT: u8 = 1;
const SERVER: u8 = 2;

#[derive(Default)]
struct Counter {
    last: AtomicU8,
    trips: AtomicU64,
}

/// The proxy; connections are forwarded to `127.0.0.1:<upstream>` until it is dropped.
pub struct RoundTrips {
    port: u16,
    counter: Arc<Counter>,
    stop: Arc<AtomicBool>,
}

impl RoundTrips {
    /// Listens on a free loopback port and forwards every connection to the upstream port.
    pub fn start(upstream: u16) -> RoundTrips {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let counter = Arc::new(Counter::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (counter.clone(), stop.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                pump(
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                    c.clone(),
                    CLIENT,
                );
                pump(server, client, c.clone(), SERVER);
            }
        });
        RoundTrips {
            port,
            counter,
            stop,
        }
    }

    /// `redis://127.0.0.1:<proxy port>`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts counting from zero (after a connection's handshake, before the reads measured).
    pub fn reset(&self) {
        self.counter.last.store(NOBODY, Ordering::SeqCst);
        self.counter.trips.store(0, Ordering::SeqCst);
    }

    /// Round trips since the last [`reset`](Self::reset).
    pub fn count(&self) -> u64 {
        self.counter.trips.load(Ordering::SeqCst)
    }
}

impl Drop for RoundTrips {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies `from` → `to` on a thread, recording the direction before forwarding: the peer can only
/// answer bytes it has received, so the count never races with the reply.
fn pump(mut from: TcpStream, mut to: TcpStream, counter: Arc<Counter>, side: u8) {
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let before = counter.last.swap(side, Ordering::SeqCst);
            if side == CLIENT && before != CLIENT {
                counter.trips.fetch_add(1, Ordering::SeqCst);
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
