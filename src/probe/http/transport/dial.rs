//! Resolve, connect and (optionally) the TLS handshake: shared by the HTTP transport and the
//! `tcp` probe kind. Each step records its end in a [`Progress`]; the caller bounds the whole
//! by its deadline.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use url::Host;

use crate::probe::{Phase, Reason};

use super::progress::{Mark, Progress};
use super::tls;
use super::TransportError;

/// Where to connect, and how.
pub(crate) struct Target<'a> {
    /// Host name or IP address.
    pub host: Host<&'a str>,
    /// TCP port.
    pub port: u16,
    /// TLS client configuration, when TLS is spoken.
    pub tls: Option<&'a Arc<ClientConfig>>,
    /// Name for SNI and certificate verification instead of `host`.
    pub server_name: Option<&'a str>,
}

/// An established connection.
pub(crate) enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP (boxed: the TLS state is large).
    Tls(Box<TlsStream<TcpStream>>),
}

/// The result of [`dial`].
pub(crate) struct Dialed {
    pub stream: Stream,
    pub remote: SocketAddr,
    pub cert_not_after: Option<SystemTime>,
}

/// Resolves `target`, connects to its addresses in turn until one accepts, and performs the
/// TLS handshake if configured. Failures are attributed to the phase in progress; `last` is
/// the last phase the caller measures (see [`Progress::phases_at`]). Does not enforce the
/// deadline itself, except to share it between several addresses.
pub(crate) async fn dial(
    target: &Target<'_>,
    deadline: Instant,
    progress: &Progress,
    last: Phase,
) -> Result<Dialed, TransportError> {
    let (tcp, remote) = match target.host {
        Host::Ipv4(ip) => {
            progress.mark_resolved_instantly();
            let addr = SocketAddr::new(ip.into(), target.port);
            connect(std::slice::from_ref(&addr), deadline, progress, last).await?
        }
        Host::Ipv6(ip) => {
            progress.mark_resolved_instantly();
            let addr = SocketAddr::new(ip.into(), target.port);
            connect(std::slice::from_ref(&addr), deadline, progress, last).await?
        }
        Host::Domain(name) => {
            let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((name, target.port)).await {
                Ok(addrs) => addrs.collect(),
                Err(e) => {
                    return Err(progress.fail(
                        Reason::Dns,
                        format!("DNS lookup of {name} failed: {}", dns_error(&e)),
                        last,
                    ))
                }
            };
            if addrs.is_empty() {
                return Err(progress.fail(
                    Reason::Dns,
                    format!("DNS lookup of {name} returned no addresses"),
                    last,
                ));
            }
            progress.mark(Mark::Resolved);
            connect(&addrs, deadline, progress, last).await?
        }
    };
    progress.mark(Mark::Connected);

    let Some(config) = target.tls else {
        return Ok(Dialed {
            stream: Stream::Plain(tcp),
            remote,
            cert_not_after: None,
        });
    };
    let server_name = match target.server_name {
        Some(name) => ServerName::try_from(name.to_owned()),
        None => match target.host {
            Host::Ipv4(ip) => Ok(ServerName::IpAddress(ip.into())),
            Host::Ipv6(ip) => Ok(ServerName::IpAddress(ip.into())),
            Host::Domain(name) => ServerName::try_from(name.to_owned()),
        },
    };
    let server_name = server_name
        .map_err(|_| progress.fail(Reason::Tls, "invalid TLS server name".to_string(), last))?;
    let tls = TlsConnector::from(Arc::clone(config))
        .connect(server_name, tcp)
        .await
        .map_err(|e| progress.fail(Reason::Tls, handshake_error(&e), last))?;
    progress.mark(Mark::TlsDone);
    let cert_not_after = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|leaf| tls::not_after(leaf));
    Ok(Dialed {
        stream: Stream::Tls(Box::new(tls)),
        remote,
        cert_not_after,
    })
}

/// Connects to each address in turn; all but the last get an equal share of the time left.
async fn connect(
    addrs: &[SocketAddr],
    deadline: Instant,
    progress: &Progress,
    last: Phase,
) -> Result<(TcpStream, SocketAddr), TransportError> {
    let mut last_err = None;
    for (i, &addr) in addrs.iter().enumerate() {
        let left = (addrs.len() - i) as u32;
        let res = if left == 1 {
            TcpStream::connect(addr).await
        } else {
            let now = Instant::now();
            let share = deadline.saturating_duration_since(now) / left;
            match tokio::time::timeout_at(now + share, TcpStream::connect(addr)).await {
                Ok(res) => res,
                Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")),
            }
        };
        match res {
            Ok(tcp) => {
                // Best effort: small requests must not wait for Nagle.
                let _ = tcp.set_nodelay(true);
                return Ok((tcp, addr));
            }
            Err(e) => last_err = Some((addr, e)),
        }
    }
    let message = match last_err {
        Some((addr, e)) if addrs.len() > 1 => format!(
            "connect to {addr} failed: {} (tried {} addresses)",
            io_error(&e),
            addrs.len()
        ),
        Some((addr, e)) => format!("connect to {addr} failed: {}", io_error(&e)),
        None => "no address to connect to".to_string(),
    };
    Err(progress.fail(Reason::Connect, message, last))
}

/// A short, stable description of an IO error.
pub(crate) fn io_error(e: &io::Error) -> String {
    use io::ErrorKind as K;
    let text = match e.kind() {
        K::ConnectionRefused => "connection refused",
        K::ConnectionReset => "connection reset by peer",
        K::ConnectionAborted => "connection aborted",
        K::HostUnreachable => "host unreachable",
        K::NetworkUnreachable => "network unreachable",
        K::AddrNotAvailable => "address not available",
        K::TimedOut => "timed out",
        K::UnexpectedEof => "connection closed by peer",
        K::BrokenPipe => "connection closed by peer (broken pipe)",
        _ => return e.to_string(),
    };
    text.to_string()
}

fn dns_error(e: &io::Error) -> String {
    // getaddrinfo errors come as "failed to lookup address information: Name or service not known".
    let text = e.to_string();
    match text.strip_prefix("failed to lookup address information: ") {
        Some(rest) => rest.to_string(),
        None => text,
    }
}

/// The rustls error inside an IO error, if there is one.
pub(crate) fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

fn handshake_error(e: &io::Error) -> String {
    match rustls_error(e) {
        Some(tls_err) => tls::describe(tls_err),
        None => format!("TLS handshake failed: {}", io_error(e)),
    }
}
