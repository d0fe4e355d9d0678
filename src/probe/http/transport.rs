//! HTTP/1.1 transport with phase timings: one exchange over a fresh connection.
//!
//! [`send`] resolves the URL's host, connects (trying each address in turn), performs the TLS
//! handshake for `https`, writes one request with `Connection: close`, reads the response and
//! its body up to a cap, and closes the connection. Redirects are not followed here: the step
//! runner does that hop by hop.
//!
//! Phases are those of blackbox_exporter: `resolve` (zero for IP literals), `connect`, `tls`
//! (zero for plain HTTP), `processing` (request written until the first response byte) and
//! `transfer` (first response byte until the body is read). The first byte is timestamped by
//! an IO adapter under hyper when it is read from the connection, not when hyper has parsed the
//! headers.
//!
//! Every call ends by [`Options::deadline`] whatever the peer does, with [`Reason::Timeout`]
//! and the phase in progress. Error messages never contain query strings or header values.
//!
//! The hot path builds no TLS configuration (see [`client_config`]) and spawns no task: the
//! hyper connection is driven in the caller's task together with the request.

mod dial;
mod progress;
mod timed;
mod tls;

use std::error::Error as _;
use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use url::{Position, Url};

use crate::probe::{Phase, Phases, Reason};

pub(crate) use dial::{dial, Target};
pub(crate) use progress::Progress;
pub use tls::{client_config, TlsConfigError, TlsOptions};

/// The `User-Agent` sent unless the request sets one.
pub const DEFAULT_USER_AGENT: &str = concat!("canaryd/", env!("CARGO_PKG_VERSION"));

/// One HTTP request. `Debug` shows header names only: values may be secrets.
#[derive(Clone)]
pub struct Request {
    /// Request method.
    pub method: Method,
    /// Absolute `http` or `https` URL.
    pub url: Url,
    /// Request headers. `Host`, `User-Agent` (when absent), `Connection: close` and
    /// `Content-Length` are added by the transport; `Transfer-Encoding` is ignored.
    pub headers: HeaderMap,
    /// Request body (empty for none).
    pub body: Bytes,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &UrlWithoutQuery(&self.url))
            .field("headers", &HeaderNames(&self.headers))
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// How to send one request.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    /// TLS client configuration for `https` URLs (from [`client_config`], built once).
    pub tls: &'a Arc<rustls::ClientConfig>,
    /// Name for SNI and certificate verification instead of the URL host.
    pub server_name: Option<&'a str>,
    /// Maximum response body size in bytes; larger bodies fail with [`Reason::BodyTooLarge`].
    pub body_limit: usize,
    /// The call returns by then, whatever the peer does.
    pub deadline: tokio::time::Instant,
}

/// One HTTP response. `Debug` shows header names only.
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The whole body (at most [`Options::body_limit`] bytes).
    pub body: Bytes,
    /// Phase timings of this exchange.
    pub phases: Phases,
    /// `notAfter` of the server's leaf certificate (`https` only).
    pub cert_not_after: Option<SystemTime>,
    /// The address connected to.
    pub remote: SocketAddr,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &HeaderNames(&self.headers))
            .field("body_len", &self.body.len())
            .field("phases", &self.phases)
            .field("cert_not_after", &self.cert_not_after)
            .field("remote", &self.remote)
            .finish()
    }
}

/// Why an exchange failed. The message names the phase or the peer's misbehaviour; it holds
/// host and path at most, never a query string or a header value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TransportError {
    /// Failure reason.
    pub reason: Reason,
    /// The phase in progress when it failed.
    pub phase: Option<Phase>,
    /// Human-readable description.
    pub message: String,
    /// Phase timings up to the failure (the failed phase until the moment it failed).
    pub phases: Phases,
}

/// Sends `req` over a fresh connection and reads the whole response; see the module docs.
pub async fn send(req: &Request, opts: &Options<'_>) -> Result<Response, TransportError> {
    let https = match req.url.scheme() {
        "http" => false,
        "https" => true,
        _ => {
            return Err(early(
                Reason::Protocol,
                "unsupported URL scheme (want http or https)",
            ))
        }
    };
    let request = build_request(req).map_err(|msg| early(Reason::Protocol, msg))?;
    let progress = Progress::new(https);
    match tokio::time::timeout_at(
        opts.deadline,
        exchange(req, request, opts, https, &progress),
    )
    .await
    {
        Ok(res) => res,
        Err(_) => Err(progress.timeout(Phase::Transfer)),
    }
}

fn early(reason: Reason, message: &str) -> TransportError {
    TransportError {
        reason,
        phase: None,
        message: message.to_string(),
        phases: Phases::default(),
    }
}

async fn exchange(
    req: &Request,
    request: http::Request<Full<Bytes>>,
    opts: &Options<'_>,
    https: bool,
    progress: &Progress,
) -> Result<Response, TransportError> {
    // `build_request` has checked that there is a host.
    let host = req
        .url
        .host()
        .ok_or_else(|| early(Reason::Protocol, "URL has no host"))?;
    let port = req
        .url
        .port_or_known_default()
        .unwrap_or(if https { 443 } else { 80 });
    let target = Target {
        host,
        port,
        tls: https.then_some(opts.tls),
        server_name: opts.server_name,
    };
    let dialed = dial(&target, opts.deadline, progress, Phase::Transfer).await?;
    let (parts, body) = match dialed.stream {
        dial::Stream::Plain(io) => roundtrip(io, request, opts.body_limit, progress).await?,
        dial::Stream::Tls(io) => roundtrip(*io, request, opts.body_limit, progress).await?,
    };
    let (phases, _) = progress.phases_at(Instant::now(), Phase::Transfer);
    Ok(Response {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
        phases,
        cert_not_after: dialed.cert_not_after,
        remote: dialed.remote,
    })
}

/// Builds the hyper request: origin-form target, `Host` first, default `User-Agent`,
/// `Connection: close` and `Content-Length`.
fn build_request(req: &Request) -> Result<http::Request<Full<Bytes>>, &'static str> {
    let url = &req.url;
    let host = url.host_str().ok_or("URL has no host")?;
    let target = &url[Position::BeforePath..Position::AfterQuery];
    let uri = match target {
        "" => Uri::from_static("/"),
        t => Uri::try_from(t).map_err(|_| "URL path is not a valid request target")?,
    };

    let mut headers = HeaderMap::with_capacity(req.headers.len() + 4);
    if !req.headers.contains_key(HOST) {
        let value = match url.port() {
            Some(port) => HeaderValue::try_from(format!("{host}:{port}")),
            None => HeaderValue::from_str(host),
        };
        headers.insert(
            HOST,
            value.map_err(|_| "URL host is not a valid Host header")?,
        );
    }
    for (name, value) in &req.headers {
        if name != CONNECTION && name != CONTENT_LENGTH && name != TRANSFER_ENCODING {
            headers.append(name.clone(), value.clone());
        }
    }
    if !headers.contains_key(USER_AGENT) {
        headers.insert(USER_AGENT, HeaderValue::from_static(DEFAULT_USER_AGENT));
    }
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    if !req.body.is_empty()
        || req.method == Method::POST
        || req.method == Method::PUT
        || req.method == Method::PATCH
    {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(req.body.len()));
    }

    let mut request = http::Request::new(Full::new(req.body.clone()));
    *request.method_mut() = req.method.clone();
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok(request)
}

/// Writes the request and reads the response over `io`, driving hyper's connection in this
/// task alongside the request.
async fn roundtrip<S>(
    io: S,
    request: http::Request<Full<Bytes>>,
    body_limit: usize,
    progress: &Progress,
) -> Result<(http::response::Parts, Bytes), TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let io = TokioIo::new(timed::Timed::new(io, progress));
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .handshake::<_, Full<Bytes>>(io)
        .await
        .map_err(|e| hyper_failure(&e, progress))?;
    // Queues the request now; the connection writes it when polled below.
    let response = sender.send_request(request);
    let exchange = async move {
        let response = response.await.map_err(|e| hyper_failure(&e, progress))?;
        let (parts, body) = response.into_parts();
        let body = read_body(body, body_limit, progress).await?;
        Ok((parts, body))
    };

    let mut conn = conn;
    let mut exchange = pin!(exchange);
    let mut conn_done = false;
    poll_fn(|cx| {
        // The connection first: it does the IO and hands the response to `exchange`. Once it
        // has finished (cleanly or not) it has delivered everything, errors included. No
        // `shutdown` at the end: dropping the socket closes it, one system call fewer.
        if !conn_done && conn.poll_without_shutdown(cx).is_ready() {
            conn_done = true;
        }
        exchange.as_mut().poll(cx)
    })
    .await
}

/// Reads the body up to `limit` bytes; stops reading as soon as it is known to be larger.
async fn read_body(
    mut body: Incoming,
    limit: usize,
    progress: &Progress,
) -> Result<Bytes, TransportError> {
    let too_large = |progress: &Progress| {
        progress.fail(
            Reason::BodyTooLarge,
            format!("response body exceeds the limit of {limit} bytes"),
            Phase::Transfer,
        )
    };
    let announced = body.size_hint().lower();
    if announced > limit as u64 {
        return Err(too_large(progress));
    }
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| hyper_failure(&e, progress))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        total = total.saturating_add(data.len());
        if total > limit {
            return Err(too_large(progress));
        }
        match first.take() {
            None if rest.is_empty() => first = Some(data),
            None => rest.extend_from_slice(&data),
            Some(f) => {
                let want = usize::try_from(announced)
                    .unwrap_or(0)
                    .max(f.len() + data.len());
                rest.reserve(want.min(limit));
                rest.extend_from_slice(&f);
                rest.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| rest.freeze()))
}

/// Maps a hyper error to a reason and a message without secrets.
fn hyper_failure(e: &hyper::Error, progress: &Progress) -> TransportError {
    let (reason, message) = describe_hyper(e);
    progress.fail(reason, message, Phase::Transfer)
}

fn describe_hyper(e: &hyper::Error) -> (Reason, String) {
    let mut source = e.source();
    while let Some(err) = source {
        if let Some(io_err) = err.downcast_ref::<io::Error>() {
            if let Some(tls_err) = dial::rustls_error(io_err) {
                return (Reason::Tls, tls::describe(tls_err));
            }
            let message = match io_err.kind() {
                io::ErrorKind::UnexpectedEof => {
                    "connection closed before the response was complete".to_string()
                }
                // hyper's body decoder (chunked framing) reports bad framing this way.
                io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput => {
                    format!("invalid HTTP response: {io_err}")
                }
                _ => dial::io_error(io_err),
            };
            return (Reason::Protocol, message);
        }
        source = err.source();
    }
    let message = if e.is_incomplete_message() {
        "connection closed before the response was complete".to_string()
    } else if e.is_parse_too_large() {
        "invalid HTTP response: head too large".to_string()
    } else if e.is_parse() || e.is_parse_status() {
        format!("invalid HTTP response: {e}")
    } else {
        match e.source() {
            Some(inner) => format!("{e}: {inner}"),
            None => e.to_string(),
        }
    };
    (Reason::Protocol, message)
}

struct HeaderNames<'a>(&'a HeaderMap);

impl fmt::Debug for HeaderNames<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

struct UrlWithoutQuery<'a>(&'a Url);

impl fmt::Debug for UrlWithoutQuery<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0[..Position::AfterPath])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(url: &str) -> Request {
        Request {
            method: Method::GET,
            url: Url::parse(url).unwrap(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    #[test]
    fn request_headers() {
        let mut req = request("http://example.com:8080/a/b?token=s3cret");
        req.headers
            .insert("authorization", HeaderValue::from_static("Bearer x"));
        req.headers
            .insert(CONNECTION, HeaderValue::from_static("keep-alive"));
        let r = build_request(&req).unwrap();
        assert_eq!(r.uri(), "/a/b?token=s3cret");
        let h = r.headers();
        assert_eq!(h[HOST], "example.com:8080");
        assert_eq!(h[USER_AGENT], DEFAULT_USER_AGENT);
        assert_eq!(h[CONNECTION], "close");
        assert_eq!(h.get_all(CONNECTION).iter().count(), 1);
        assert!(h.get(CONTENT_LENGTH).is_none());
        assert_eq!(h.keys().next(), Some(&HOST));
    }

    #[test]
    fn request_host_and_length() {
        let mut req = request("https://[::1]/");
        req.method = Method::POST;
        req.headers
            .insert(USER_AGENT, HeaderValue::from_static("custom/1"));
        let r = build_request(&req).unwrap();
        assert_eq!(r.headers()[HOST], "[::1]");
        assert_eq!(r.headers()[USER_AGENT], "custom/1");
        assert_eq!(r.headers()[CONTENT_LENGTH], "0");

        let mut req = request("http://example.com/x");
        req.body = Bytes::from_static(b"hello");
        req.headers
            .insert(HOST, HeaderValue::from_static("virtual.example"));
        let r = build_request(&req).unwrap();
        assert_eq!(r.headers()[HOST], "virtual.example");
        assert_eq!(r.headers()[CONTENT_LENGTH], "5");
    }

    #[test]
    fn odd_paths_are_valid_targets() {
        for url in [
            "http://h/a|b^c{d}",
            "http://h/%ZZ",
            "http://h/?q=\"x y\"&z=<>",
            "http://h/\u{e9}t\u{e9}?\u{fc}",
            "http://h/a`b",
        ] {
            build_request(&request(url)).unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }

    #[test]
    fn debug_hides_values_and_query() {
        let mut req = request("http://example.com/login?password=hunter2");
        req.headers
            .insert("authorization", HeaderValue::from_static("Bearer s3cret"));
        let text = format!("{req:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("authorization"), "{text}");
    }
}
