//! Adversarial local servers for integration tests: they stall, trickle, reset, send huge or
//! broken responses, inject known delays, speak TLS with throw-away certificates, and record
//! every request they receive.
//!
//! Each [`Server`] listens on `127.0.0.1:0` and runs on its own thread with its own tokio
//! runtime, so its timing does not depend on the test's runtime. Dropping it stops it and
//! closes every connection.
//!
//! ```ignore
//! mod adversary;
//! use adversary::{Behavior, Reply, Server};
//! let server = Server::start(Behavior::Reply(Reply::new(200).body("ok")));
//! let url = server.url("/health");
//! // ... probe it ...
//! assert_eq!(server.requests()[0].header("user-agent"), Some("canaryd/0.1.0"));
//! ```
#![allow(dead_code)] // each test binary uses a different subset

use std::fmt;
use std::future::pending;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::time::{sleep, Instant};
use tokio_rustls::TlsAcceptor;

/// A response the server sends. `Content-Length` and `Connection: close` are added unless
/// the headers already frame the body.
#[derive(Clone, Debug, Default)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Reply {
    /// A reply with this status, no headers and an empty body.
    pub fn new(status: u16) -> Self {
        Reply {
            status,
            ..Reply::default()
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The status line and headers, with framing added.
    fn head(&self) -> Vec<u8> {
        let reason = http::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Whatever");
        let mut head = format!("HTTP/1.1 {} {reason}\r\n", self.status);
        let mut framed = false;
        for (name, value) in &self.headers {
            framed |= name.eq_ignore_ascii_case("content-length")
                || name.eq_ignore_ascii_case("transfer-encoding");
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !framed {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        head.push_str("Connection: close\r\n\r\n");
        head.into_bytes()
    }

    /// Head and body as sent on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = self.head();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// Computes a reply from the request received (for routing, redirects, cookies, ...).
pub type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

/// What the server does with each connection.
#[derive(Clone)]
pub enum Behavior {
    /// Reads the request, then never answers and never closes.
    Stall,
    /// Accepts the connection but never reads from it or answers (stalls a TLS handshake).
    StallBeforeRead,
    /// Sends the whole response (head included) one byte per `interval`.
    Trickle { interval: Duration, reply: Reply },
    /// Sends the head at once, then the body one byte per `interval`.
    TrickleBody { interval: Duration, reply: Reply },
    /// Reads the request, then resets the connection (`SO_LINGER` 0).
    Reset,
    /// Sends the head and `sent` bytes of a `length`-byte body, then resets the connection.
    ResetMidBody { length: usize, sent: usize },
    /// Sends a `length`-byte body of zeros, with `Content-Length` or chunked.
    Huge { length: u64, chunked: bool },
    /// Headers and `first` after `processing`; `rest` after `transfer` more. Timed from the
    /// moment the whole request was read.
    Delayed {
        processing: Duration,
        transfer: Duration,
        first: Vec<u8>,
        rest: Vec<u8>,
    },
    /// Raw pieces, each written after its delay (timed from the end of the previous write,
    /// the first from the moment the whole request was read), then close.
    Script(Vec<(Duration, Vec<u8>)>),
    /// A fixed reply.
    Reply(Reply),
    /// A reply computed from the request.
    Handler(Handler),
    /// Raw bytes, then close (for malformed responses).
    Raw(Vec<u8>),
    /// Reads the request, then closes without answering.
    CloseWithoutReply,
}

impl fmt::Debug for Behavior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Behavior::Stall => "Stall",
            Behavior::StallBeforeRead => "StallBeforeRead",
            Behavior::Trickle { .. } => "Trickle",
            Behavior::TrickleBody { .. } => "TrickleBody",
            Behavior::Reset => "Reset",
            Behavior::ResetMidBody { .. } => "ResetMidBody",
            Behavior::Huge { .. } => "Huge",
            Behavior::Delayed { .. } => "Delayed",
            Behavior::Script(_) => "Script",
            Behavior::Reply(_) => "Reply",
            Behavior::Handler(_) => "Handler",
            Behavior::Raw(_) => "Raw",
            Behavior::CloseWithoutReply => "CloseWithoutReply",
        };
        f.write_str(name)
    }
}

/// A request as the server received it.
#[derive(Clone, Debug, Default)]
pub struct Recorded {
    /// Method.
    pub method: String,
    /// Request target (path and query).
    pub target: String,
    /// Headers in the order received, names as sent.
    pub headers: Vec<(String, String)>,
    /// Body (by `Content-Length`).
    pub body: Vec<u8>,
}

impl Recorded {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// TLS settings of a test server.
#[derive(Clone, Debug)]
pub struct TlsSetup {
    /// The certificate's `notAfter` (year, month, day; midnight UTC).
    pub not_after: (i32, u8, u8),
    /// Require a client certificate issued by the CA in this PEM file.
    pub client_ca_file: Option<PathBuf>,
}

impl Default for TlsSetup {
    fn default() -> Self {
        TlsSetup {
            not_after: (2040, 1, 1),
            client_ca_file: None,
        }
    }
}

/// `(year, month, day)` at midnight UTC as seconds since the Unix epoch.
pub fn unix_seconds(year: i32, month: u8, day: u8) -> u64 {
    rcgen::date_time_ymd(year, month, day)
        .unix_timestamp()
        .try_into()
        .expect("date after 1970")
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Recorded>>,
    connections: AtomicUsize,
    body_bytes_sent: AtomicU64,
}

/// A running test server; stops when dropped.
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    ca_file: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// A plain-HTTP server.
    pub fn start(behavior: Behavior) -> Server {
        spawn(Mode::Serve(Arc::new(behavior), None), None)
    }

    /// An HTTPS server with a fresh self-signed certificate for `localhost` and `127.0.0.1`.
    pub fn start_tls(behavior: Behavior, setup: TlsSetup) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert, key) = self_signed(setup.not_after);
        let ca_file = dir.path().join("server.pem");
        std::fs::write(&ca_file, cert.pem()).expect("write server.pem");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("protocol versions");
        let builder = match &setup.client_ca_file {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(path).expect("client CA file") {
                    roots.add(cert.expect("client CA PEM")).expect("client CA");
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .expect("client verifier");
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .expect("server certificate");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let mut server = spawn(Mode::Serve(Arc::new(behavior), Some(acceptor)), Some(dir));
        server.ca_file = Some(ca_file);
        server
    }

    /// A listener whose accept queue is full, so that connecting to it hangs (SYNs dropped).
    pub fn blackhole() -> Server {
        spawn(Mode::Blackhole, None)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http(s)://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.ca_file.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// `host:port` for a `tcp` check.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// PEM file of the server's self-signed certificate (TLS servers only).
    pub fn ca_file(&self) -> &Path {
        self.ca_file.as_deref().expect("not a TLS server")
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().expect("lock").clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Body bytes written to clients so far ([`Behavior::Huge`]).
    pub fn body_bytes_sent(&self) -> u64 {
        self.shared.body_bytes_sent.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A throw-away CA and a client certificate it issued, as PEM files.
pub struct ClientPki {
    /// The CA certificate (for [`TlsSetup::client_ca_file`]).
    pub ca_file: PathBuf,
    /// The client certificate.
    pub cert_file: PathBuf,
    /// The client's private key.
    pub key_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl ClientPki {
    /// Generates the CA and the client certificate.
    pub fn generate() -> ClientPki {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "canaryd test client CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
        let issuer = Issuer::new(ca_params, ca_key);

        let key = KeyPair::generate().expect("client key");
        let mut params = CertificateParams::new(vec!["canaryd-probe".to_string()]).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "canaryd-probe");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &issuer).expect("client cert");

        let ca_file = dir.path().join("client-ca.pem");
        let cert_file = dir.path().join("client.pem");
        let key_file = dir.path().join("client.key");
        std::fs::write(&ca_file, ca_cert.pem()).expect("write");
        std::fs::write(&cert_file, cert.pem()).expect("write");
        std::fs::write(&key_file, key.serialize_pem()).expect("write");
        ClientPki {
            ca_file,
            cert_file,
            key_file,
            _dir: dir,
        }
    }
}

fn self_signed(not_after: (i32, u8, u8)) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, "canaryd test server");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let cert = params.self_signed(&key).expect("self-signed cert");
    (cert, key)
}

enum Mode {
    Serve(Arc<Behavior>, Option<TlsAcceptor>),
    Blackhole,
}

fn spawn(mode: Mode, dir: Option<tempfile::TempDir>) -> Server {
    let shared = Arc::new(Shared::default());
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let thread_shared = shared.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("server runtime");
        rt.block_on(async move {
            let socket = TcpSocket::new_v4().expect("socket");
            socket
                .bind("127.0.0.1:0".parse().expect("addr"))
                .expect("bind");
            let backlog = match mode {
                Mode::Blackhole => 0,
                Mode::Serve(..) => 1024,
            };
            let listener = socket.listen(backlog).expect("listen");
            let addr = listener.local_addr().expect("local addr");
            match mode {
                Mode::Blackhole => {
                    // Fill the accept queue (backlog 0 holds one connection) and never accept.
                    let _filler = TcpStream::connect(addr).await.expect("filler connection");
                    addr_tx.send(addr).expect("report address");
                    let _ = stop_rx.await;
                }
                Mode::Serve(behavior, tls) => {
                    addr_tx.send(addr).expect("report address");
                    let accept_loop = async {
                        loop {
                            let Ok((tcp, _)) = listener.accept().await else {
                                continue;
                            };
                            thread_shared.connections.fetch_add(1, Ordering::SeqCst);
                            let behavior = behavior.clone();
                            let tls = tls.clone();
                            let shared = thread_shared.clone();
                            tokio::spawn(async move {
                                let _ = tcp.set_nodelay(true);
                                match tls {
                                    None => serve(tcp, &behavior, &shared).await,
                                    Some(acceptor) => {
                                        if matches!(*behavior, Behavior::StallBeforeRead) {
                                            pending::<()>().await;
                                        }
                                        if let Ok(stream) = acceptor.accept(tcp).await {
                                            serve(stream, &behavior, &shared).await;
                                        }
                                    }
                                }
                            });
                        }
                    };
                    tokio::select! {
                        _ = stop_rx => {}
                        _ = accept_loop => {}
                    }
                }
            }
        });
        // Dropping the runtime cancels every connection task and closes its socket.
        drop(rt);
    });
    let addr = addr_rx.recv().expect("server thread started");
    Server {
        addr,
        shared,
        ca_file: None,
        _dir: dir,
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

trait Conn: AsyncRead + AsyncWrite + Unpin + Send {
    fn tcp(&self) -> &TcpStream;
}

impl Conn for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Conn for tokio_rustls::server::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

async fn serve<S: Conn>(mut s: S, behavior: &Behavior, shared: &Shared) {
    if matches!(behavior, Behavior::StallBeforeRead) {
        pending::<()>().await;
    }
    let Some(request) = read_request(&mut s).await else {
        return;
    };
    let received = Instant::now();
    let reply = match behavior {
        Behavior::Handler(handler) => Some(handler(&request)),
        Behavior::Reply(reply) => Some(reply.clone()),
        _ => None,
    };
    shared.requests.lock().expect("lock").push(request);

    match behavior {
        Behavior::Stall | Behavior::StallBeforeRead => pending::<()>().await,
        Behavior::Reply(_) | Behavior::Handler(_) => {
            let bytes = reply.unwrap_or_default().to_bytes();
            if write_all(&mut s, &bytes).await {
                let _ = s.shutdown().await;
            }
        }
        Behavior::Raw(bytes) => {
            if write_all(&mut s, bytes).await {
                let _ = s.shutdown().await;
            }
        }
        Behavior::CloseWithoutReply => {
            let _ = s.shutdown().await;
        }
        Behavior::Trickle { interval, reply } => {
            for byte in reply.to_bytes() {
                if !write_all(&mut s, &[byte]).await {
                    return;
                }
                sleep(*interval).await;
            }
            let _ = s.shutdown().await;
        }
        Behavior::TrickleBody { interval, reply } => {
            if !write_all(&mut s, &reply.head()).await {
                return;
            }
            for &byte in &reply.body {
                sleep(*interval).await;
                if !write_all(&mut s, &[byte]).await {
                    return;
                }
            }
            let _ = s.shutdown().await;
        }
        Behavior::Reset => reset(s),
        Behavior::ResetMidBody { length, sent } => {
            let reply = Reply::new(200).header("Content-Length", &length.to_string());
            let mut bytes = reply.head();
            bytes.resize(bytes.len() + sent, b'x');
            if write_all(&mut s, &bytes).await {
                // Give the client time to read what was sent before the reset.
                sleep(Duration::from_millis(50)).await;
                reset(s);
            }
        }
        Behavior::Huge { length, chunked } => {
            let header = if *chunked {
                ("Transfer-Encoding", "chunked".to_string())
            } else {
                ("Content-Length", length.to_string())
            };
            let head = Reply::new(200).header(header.0, &header.1).head();
            if !write_all(&mut s, &head).await {
                return;
            }
            let chunk = vec![0u8; 64 * 1024];
            let mut left = *length;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                let ok = if *chunked {
                    write_all(&mut s, format!("{n:x}\r\n").as_bytes()).await
                        && write_all(&mut s, &chunk[..n]).await
                        && write_all(&mut s, b"\r\n").await
                } else {
                    write_all(&mut s, &chunk[..n]).await
                };
                if !ok {
                    return;
                }
                shared.body_bytes_sent.fetch_add(n as u64, Ordering::SeqCst);
                left -= n as u64;
            }
            if *chunked {
                let _ = write_all(&mut s, b"0\r\n\r\n").await;
            }
            let _ = s.shutdown().await;
        }
        Behavior::Script(pieces) => {
            let mut from = received;
            for (delay, bytes) in pieces {
                precise_sleep_until(from + *delay).await;
                if !write_all(&mut s, bytes).await {
                    return;
                }
                from = Instant::now();
            }
            let _ = s.shutdown().await;
        }
        Behavior::Delayed {
            processing,
            transfer,
            first,
            rest,
        } => {
            let reply =
                Reply::new(200).header("Content-Length", &(first.len() + rest.len()).to_string());
            let mut bytes = reply.head();
            bytes.extend_from_slice(first);
            precise_sleep_until(received + *processing).await;
            if !write_all(&mut s, &bytes).await {
                return;
            }
            precise_sleep_until(Instant::now() + *transfer).await;
            if write_all(&mut s, rest).await {
                let _ = s.shutdown().await;
            }
        }
    }
}

/// Sleeps until `deadline` to within a few tens of microseconds: the tokio timer has a
/// resolution of 1 ms, so the last 2 ms are slept on the thread (a test server may block its
/// own runtime that long).
async fn precise_sleep_until(deadline: Instant) {
    let coarse = deadline.checked_sub(Duration::from_millis(2));
    if let Some(coarse) = coarse {
        tokio::time::sleep_until(coarse).await;
    }
    let left = deadline.saturating_duration_since(Instant::now());
    if !left.is_zero() {
        std::thread::sleep(left);
    }
}

/// Closes with a TCP reset.
fn reset<S: Conn>(s: S) {
    let _ = s.tcp().set_zero_linger();
    drop(s);
}

async fn write_all<S: Conn>(s: &mut S, bytes: &[u8]) -> bool {
    s.write_all(bytes).await.is_ok() && s.flush().await.is_ok()
}

/// Reads one request (head and `Content-Length` body). `None` if the client went away or sent
/// something that is not HTTP/1.1.
async fn read_request<S: Conn>(s: &mut S) -> Option<Recorded> {
    let mut buf = Vec::with_capacity(4096);
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 1 << 20 {
            return None;
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let mut recorded = Recorded {
        method: request_line.next()?.to_string(),
        target: request_line.next()?.to_string(),
        ..Recorded::default()
    };
    for line in lines {
        let (name, value) = line.split_once(':')?;
        recorded
            .headers
            .push((name.to_string(), value.trim().to_string()));
    }
    let length: usize = recorded
        .header("content-length")
        .map(|v| v.parse().unwrap_or(0))
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = vec![0u8; (length - body.len()).min(64 * 1024)];
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    recorded.body = body;
    Some(recorded)
}
