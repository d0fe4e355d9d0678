//! Basic auth of `basic_auth_users`, and the response headers of `http_server_config`.
//!
//! Every request needs valid credentials except `GET /-/healthy` (liveness probes) and the
//! heartbeat pings `/ping/...` (each check's own token governs those: a cron job must not need
//! the scrape password). bcrypt runs on the blocking pool, at most [`MAX_BCRYPT_AT_ONCE`] at a
//! time; the outcome of each (user, hash, password) is cached under a SHA-256 of the three (as
//! exporter-toolkit does), at most [`CACHE_ENTRIES`] of them, so a scrape pays bcrypt once. A
//! request naming an unknown user is checked against a decoy hash of the highest configured
//! cost, so its answer takes as long as a wrong password's (no user enumeration by timing).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::{Hash, WebConfig};

/// Most cached verification outcomes; past it, an arbitrary one is forgotten.
pub const CACHE_ENTRIES: usize = 1024;
/// Most bcrypt verifications running at once (each holds a CPU for up to a second).
pub const MAX_BCRYPT_AT_ONCE: usize = 2;

/// Who made an authenticated request: the access policy's type, inserted once basic auth passed.
pub use crate::access::Principal;

/// Whether basic auth is configured (a request extension on every request): handlers that
/// change state can tell an anonymous request on an open listener from an authenticated one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthConfigured(pub bool);

/// The state of the auth layer.
pub struct Auth {
    config: Arc<WebConfig>,
    cache: Mutex<HashMap<[u8; 32], bool>>,
    bcrypt: Arc<tokio::sync::Semaphore>,
    decoy: tokio::sync::OnceCell<Option<String>>,
}

impl Auth {
    /// The layer's state for a web configuration.
    pub fn new(config: Arc<WebConfig>) -> Arc<Auth> {
        Arc::new(Auth {
            config,
            cache: Mutex::new(HashMap::new()),
            bcrypt: Arc::new(tokio::sync::Semaphore::new(MAX_BCRYPT_AT_ONCE)),
            decoy: tokio::sync::OnceCell::new(),
        })
    }

    /// The user whose valid credentials `authorization` carries, if any.
    async fn authenticate(&self, authorization: Option<&[u8]>) -> Option<String> {
        let (user, pass) = basic_credentials(authorization?)?;
        let known = self.config.users.get(&user);
        let hash = match known {
            Some(Hash(h)) => h.clone(),
            None => self.decoy().await?,
        };
        let key = cache_key(&user, &hash, &pass);
        let cached = self.lock_cache().get(&key).copied();
        let ok = match cached {
            Some(ok) => ok,
            None => {
                // The permit moves into the blocking task: a client that hangs up does not free
                // it before its bcrypt run ends, so hang-ups cannot pile up runs.
                let permit = self.bcrypt.clone().acquire_owned().await.ok()?;
                let verified = tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    bcrypt::verify(pass.as_bytes(), &hash).unwrap_or(false)
                })
                .await
                .unwrap_or(false);
                let ok = verified && known.is_some();
                let mut cache = self.lock_cache();
                if cache.len() >= CACHE_ENTRIES {
                    if let Some(k) = cache.keys().next().copied() {
                        cache.remove(&k);
                    }
                }
                cache.insert(key, ok);
                ok
            }
        };
        (ok && known.is_some()).then_some(user)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], bool>> {
        match self.cache.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// A hash of a fixed password at the highest configured cost, made once.
    async fn decoy(&self) -> Option<String> {
        self.decoy
            .get_or_init(|| async {
                let cost = self
                    .config
                    .users
                    .values()
                    .filter_map(|Hash(h)| h.get(4..6)?.parse::<u32>().ok())
                    .max()
                    .unwrap_or(bcrypt::DEFAULT_COST);
                // Under a permit too, held by the blocking task (see `authenticate`).
                let permit = self.bcrypt.clone().acquire_owned().await.ok()?;
                tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    bcrypt::hash("canaryd-decoy", cost).ok()
                })
                .await
                .ok()
                .flatten()
            })
            .await
            .clone()
    }
}

/// SHA-256 over the length-prefixed user, hash and password: the cache never holds a password.
fn cache_key(user: &str, hash: &str, pass: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [user, hash, pass] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

/// `Basic base64(user:password)` (scheme in any case) → (user, password).
pub fn basic_credentials(value: &[u8]) -> Option<(String, String)> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = data_encoding::BASE64.decode(rest.trim().as_bytes()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// Requests that never need credentials.
fn exempt(method: &Method, path: &str) -> bool {
    ((method == Method::GET || method == Method::HEAD) && path == "/-/healthy")
        || path.starts_with("/ping/")
}

/// The layer: checks credentials where needed, marks the request, sets configured headers.
pub async fn layer(State(auth): State<Arc<Auth>>, mut req: Request, next: Next) -> Response {
    let required = auth.config.auth_required();
    req.extensions_mut().insert(AuthConfigured(required));
    let mut resp = if !required || exempt(req.method(), req.uri().path()) {
        next.run(req).await
    } else {
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        match auth.authenticate(authorization).await {
            Some(user) => {
                req.extensions_mut().insert(Principal { user });
                next.run(req).await
            }
            None => {
                // Never the header's value: it is the credentials.
                tracing::warn!(
                    handler = crate::access::handler_label(req.uri().path()),
                    credentials = if authorization.is_some() {
                        "rejected"
                    } else {
                        "missing"
                    },
                    "request refused: basic auth"
                );
                (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Basic")],
                    "unauthorized: this endpoint needs basic-auth credentials\n",
                )
                    .into_response()
            }
        }
    };
    for (name, value) in &auth.config.headers {
        resp.headers_mut().insert(name.clone(), value.clone());
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_parse_like_go() {
        let b = |s: &str| format!("Basic {}", data_encoding::BASE64.encode(s.as_bytes()));
        assert_eq!(
            basic_credentials(b("alice:pa:ss").as_bytes()),
            Some(("alice".into(), "pa:ss".into()))
        );
        assert_eq!(
            basic_credentials(b("alice:").as_bytes()),
            Some(("alice".into(), "".into()))
        );
        assert_eq!(basic_credentials(b("alice").as_bytes()), None);
        assert_eq!(basic_credentials(b"Bearer abc"), None);
        assert_eq!(basic_credentials(b"Basic !!!"), None);
        assert_eq!(basic_credentials(b"Basic"), None);
    }

    #[test]
    fn only_health_and_pings_are_exempt() {
        assert!(exempt(&Method::GET, "/-/healthy"));
        assert!(!exempt(&Method::POST, "/-/healthy"));
        assert!(exempt(&Method::POST, "/ping/backup/0"));
        assert!(!exempt(&Method::GET, "/ping"));
        assert!(!exempt(&Method::GET, "/metrics"));
        assert!(!exempt(&Method::POST, "/api/v1/silences"));
        assert!(!exempt(&Method::GET, "/-/healthy/"));
    }

    /// An auth layer with one user, alice, whose password is `s3cret` (cost 4: fast in tests).
    fn alice_with_s3cret() -> Arc<Auth> {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let mut users = std::collections::BTreeMap::new();
        users.insert("alice".to_string(), Hash(hash));
        Auth::new(Arc::new(WebConfig {
            users,
            ..WebConfig::default()
        }))
    }

    #[tokio::test]
    async fn right_wrong_and_unknown_users() {
        let auth = alice_with_s3cret();
        let b = |s: &str| format!("Basic {}", data_encoding::BASE64.encode(s.as_bytes()));
        for _ in 0..2 {
            // The second round answers from the cache, the same way.
            assert_eq!(
                auth.authenticate(Some(b("alice:s3cret").as_bytes())).await,
                Some("alice".into())
            );
            assert_eq!(
                auth.authenticate(Some(b("alice:wrong").as_bytes())).await,
                None
            );
            assert_eq!(
                auth.authenticate(Some(b("bob:s3cret").as_bytes())).await,
                None
            );
            assert_eq!(auth.authenticate(None).await, None);
        }
        assert_eq!(auth.lock_cache().len(), 3);
    }

    #[tokio::test]
    async fn the_cache_stays_bounded() {
        let auth = alice_with_s3cret();
        for i in 0..CACHE_ENTRIES + 50 {
            let v = format!(
                "Basic {}",
                data_encoding::BASE64.encode(format!("alice:guess{i}").as_bytes())
            );
            assert_eq!(auth.authenticate(Some(v.as_bytes())).await, None);
        }
        assert_eq!(auth.lock_cache().len(), CACHE_ENTRIES);
    }
}
