//! One shared Redis connection per Redis URL, made lazily and remade after a failure.
//!
//! Every queue check naming the same URL (and TLS settings) shares one multiplexed connection:
//! a hundred checks against one Redis cost one socket, and their pipelines interleave on it.
//! Nothing connects at load time, so canaryd starts while Redis is down; the first run that needs
//! the connection makes it, bounded by the check's `connect_timeout`. A run that sees the
//! connection fail (I/O error, dropped, timed out) throws it away, so the next run — or the one
//! retry the probe allows itself — dials afresh.
//!
//! The URL may hold a password from a secret: it is used to dial and never printed. Messages
//! from this module describe the URL by scheme, host and port only.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisError,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use url::Url;

use super::budget::{Budgeted, Tripped};

use crate::probe::tls::TlsSettings;

/// Checks that a rendered Redis URL is one canaryd can dial. The error never quotes the URL.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = Url::parse(url).map_err(|e| format!("{e}"))?;
    match parsed.scheme() {
        "redis" | "rediss" => {}
        "unix" | "redis+unix" => {}
        other => {
            return Err(format!(
                "scheme {other:?}: use redis://, rediss:// or unix://"
            ))
        }
    }
    if matches!(parsed.scheme(), "redis" | "rediss") && parsed.host_str().is_none_or(str::is_empty)
    {
        return Err("no host".into());
    }
    url.into_connection_info()
        .map(|_| ())
        .map_err(|e| e.category().to_string())
}

/// Where a connection goes, for messages: `redis://host:port/db`, without credentials.
pub fn describe(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("");
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let path = if u.path().is_empty() || u.path() == "/" {
                String::new()
            } else {
                u.path().to_string()
            };
            format!("{}://{host}{port}{path}", u.scheme())
        }
        Err(_) => "redis".into(),
    }
}

/// The URL as written with a literal password masked, for messages (a `${env:..}` reference is
/// already shown by name). Unparsable text is not quoted at all.
pub fn without_password(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() && !u.password().is_some_and(|p| p.starts_with("$%7B")) {
                let _ = u.set_password(Some("xxxxx"));
            }
            u.to_string()
        }
        Err(_) => "(unparsable)".into(),
    }
}

/// A lazily made, shared connection to one Redis.
pub struct RedisConn {
    /// Where and how to dial (address, database, credentials, protocol).
    info: ConnectionInfo,
    /// For `rediss://`: the rustls configuration built from the check's TLS settings.
    tls_config: Option<Arc<rustls::ClientConfig>>,
    /// SNI / verification name instead of the URL's host.
    server_name: Option<String>,
    /// `redis://host:port/db`, safe to print.
    target: String,
    connect_timeout: Duration,
    /// The live connection, if one was made and has not failed since. A plain mutex, never held
    /// across an await: forgetting a connection never waits, not even for a dial under way, so
    /// a run past its deadline can drop a wedged connection and still return in time.
    live: Mutex<Option<Live>>,
    /// Held while dialling, so concurrent callers wait for one dial rather than each making
    /// their own.
    dialling: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConn")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Connecting did not finish within `connect_timeout`.
    #[error("connect to {target} timed out after {after:?}")]
    Timeout {
        /// Where (no credentials).
        target: String,
        /// The bound that ran out.
        after: Duration,
    },
    /// Connecting failed (refused, DNS, TLS, AUTH).
    #[error("connect to {target}: {error}")]
    Failed {
        /// Where (no credentials).
        target: String,
        /// What the client said (redis-rs never includes the URL's password in an error).
        error: RedisError,
    },
}

impl RedisConn {
    fn new(url: &str, tls: &TlsSettings, connect_timeout: Duration) -> Result<RedisConn, String> {
        let info = with_insecure(url, tls)
            .as_str()
            .into_connection_info()
            .map_err(|e| format!("invalid redis URL {}: {}", describe(url), e.category()))?;
        let tls_config = match info.addr() {
            ConnectionAddr::TcpTls { insecure, .. } => {
                // `#insecure` written in the URL itself turns verification off, as in redis-rs.
                let mut tls = tls.clone();
                tls.insecure_skip_verify |= *insecure;
                let config = tls
                    .client_config()
                    .map_err(|e| format!("TLS settings for {}: {e}", describe(url)))?;
                // The shared configuration offers HTTP/1.1 by ALPN; Redis speaks none.
                let mut config = (*config).clone();
                config.alpn_protocols.clear();
                Some(Arc::new(config))
            }
            _ => None,
        };
        Ok(RedisConn {
            info,
            tls_config,
            server_name: tls.server_name.clone(),
            target: describe(url),
            connect_timeout,
            live: Mutex::new(None),
            dialling: tokio::sync::Mutex::new(()),
        })
    }

    /// `redis://host:port/db`, for messages.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The live connection, dialling one if there is none. Cheap when connected (a clone of a
    /// handle); concurrent callers wait for one dial rather than each making their own.
    pub async fn get(&self) -> Result<Live, ConnectError> {
        if let Some(conn) = self.live() {
            return Ok(conn);
        }
        let _dialling = self.dialling.lock().await;
        // Another caller may have dialled while this one waited.
        if let Some(conn) = self.live() {
            return Ok(conn);
        }
        // One bound around the whole dial (DNS, TCP, TLS, AUTH/SELECT/HELLO).
        match tokio::time::timeout(self.connect_timeout, self.dial()).await {
            Ok(Ok(conn)) => {
                *self.slot() = Some(conn.clone());
                Ok(conn)
            }
            Ok(Err(error)) if error.is_timeout() => Err(ConnectError::Timeout {
                target: self.target.clone(),
                after: self.connect_timeout,
            }),
            Ok(Err(error)) => Err(ConnectError::Failed {
                target: self.target.clone(),
                error,
            }),
            Err(_) => Err(ConnectError::Timeout {
                target: self.target.clone(),
                after: self.connect_timeout,
            }),
        }
    }

    /// Dials the socket itself (rather than through `redis::Client`) so that every byte Redis
    /// sends passes the reply budget ([`super::budget`]).
    async fn dial(&self) -> Result<Live, RedisError> {
        let tripped = Arc::new(Tripped::default());
        let stream: Box<dyn Stream> = match self.info.addr() {
            ConnectionAddr::Tcp(host, port) => {
                let tcp = TcpStream::connect((host.as_str(), *port)).await?;
                tcp.set_nodelay(true)?;
                Box::new(tcp)
            }
            ConnectionAddr::TcpTls { host, port, .. } => {
                let tcp = TcpStream::connect((host.as_str(), *port)).await?;
                tcp.set_nodelay(true)?;
                let config = self.tls_config.clone().ok_or_else(|| {
                    RedisError::from((redis::ErrorKind::InvalidClientConfig, "no TLS settings"))
                })?;
                let name = self.server_name.as_deref().unwrap_or(host);
                let name =
                    rustls_pki_types::ServerName::try_from(name.to_string()).map_err(|_| {
                        RedisError::from((redis::ErrorKind::InvalidClientConfig, "bad TLS name"))
                    })?;
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await?;
                Box::new(tls)
            }
            ConnectionAddr::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
            _ => {
                return Err(RedisError::from((
                    redis::ErrorKind::InvalidClientConfig,
                    "unsupported address",
                )))
            }
        };
        let config = AsyncConnectionConfig::new()
            // The probe bounds each run by its deadline; no separate response timeout.
            .set_response_timeout(None);
        let (conn, driver) = MultiplexedConnection::new_with_config(
            self.info.redis_settings(),
            Budgeted::new(stream, tripped.clone()),
            config,
        )
        .await?;
        // The driver ends when the socket fails or every handle is dropped.
        tokio::spawn(driver);
        Ok(Live { conn, tripped })
    }

    /// Forgets the live connection after it failed (or a run timed out on it), so the next
    /// caller dials afresh. Never waits. When another caller already replaced it, the
    /// replacement goes too: one more dial, never a wrong read.
    pub fn reset(&self) {
        *self.slot() = None;
    }

    /// The live connection unless a reply broke its budget (its driver is gone; the caller that
    /// saw it fail may not have reset it yet).
    fn live(&self) -> Option<Live> {
        self.slot()
            .clone()
            .filter(|live| live.tripped.reason().is_none())
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Live>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One dialled connection: the redis-rs handle and the flag its stream sets when a reply breaks
/// the budget.
#[derive(Clone)]
pub struct Live {
    /// The multiplexed handle the readers use.
    pub conn: MultiplexedConnection,
    /// Set when this connection was cut for an oversized or malformed reply.
    pub tripped: Arc<Tripped>,
}

/// The socket types a connection runs over, behind one box.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// redis-rs turns verification off with a `#insecure` fragment on a `rediss://` URL.
fn with_insecure(url: &str, tls: &TlsSettings) -> String {
    if tls.insecure_skip_verify && url.starts_with("rediss://") && !url.contains('#') {
        format!("{url}#insecure")
    } else {
        url.to_string()
    }
}

/// Identity of a connection: the URL (with its password) and the TLS settings. Kept as a hash so
/// the registry holds no secret.
fn key(url: &str, tls: &TlsSettings) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    url.hash(&mut h);
    tls.insecure_skip_verify.hash(&mut h);
    tls.ca_file.hash(&mut h);
    tls.cert_file.hash(&mut h);
    tls.key_file.hash(&mut h);
    h.finish()
}

fn registry() -> &'static Mutex<HashMap<u64, Weak<RedisConn>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<u64, Weak<RedisConn>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// The shared connection for this URL and TLS settings: the existing one while any check holds
/// it (a reload keeps it), else a new, not yet connected one.
pub fn shared(
    url: &str,
    tls: &TlsSettings,
    connect_timeout: Duration,
) -> Result<Arc<RedisConn>, String> {
    let k = key(url, tls);
    let mut map = registry().lock().unwrap_or_else(PoisonError::into_inner);
    map.retain(|_, w| w.strong_count() > 0);
    if let Some(conn) = map.get(&k).and_then(Weak::upgrade) {
        return Ok(conn);
    }
    let conn = Arc::new(RedisConn::new(url, tls, connect_timeout)?);
    map.insert(k, Arc::downgrade(&conn));
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(check_url("redis://127.0.0.1:6379/0").is_ok());
        assert!(check_url("rediss://:pw@redis.internal:6380/2").is_ok());
        assert!(check_url("http://x").unwrap_err().contains("scheme"));
        assert!(check_url("not a url").is_err());
        let e = check_url("redis://:hunter2@/0").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn describe_drops_credentials() {
        assert_eq!(
            describe("redis://user:hunter2@db.internal:6380/3"),
            "redis://db.internal:6380/3"
        );
        assert_eq!(describe("redis://127.0.0.1"), "redis://127.0.0.1");
    }

    #[test]
    fn one_connection_per_url() {
        let tls = TlsSettings::default();
        let a = shared("redis://127.0.0.1:1/0", &tls, Duration::from_secs(1)).unwrap();
        let b = shared("redis://127.0.0.1:1/0", &tls, Duration::from_secs(1)).unwrap();
        let c = shared("redis://127.0.0.1:1/1", &tls, Duration::from_secs(1)).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
