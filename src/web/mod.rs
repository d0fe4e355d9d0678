//! The web configuration file (`--web.config.file`): TLS, client certificates, basic auth and
//! response headers of canaryd's own HTTP listener, in the format of Prometheus' exporter-toolkit
//! (so one file serves canaryd and the exporters beside it).
//!
//! Parsed like the other configuration files (unknown keys refused, every error
//! `file:line:col: key: message`); relative paths resolve against the file's directory.
//! Certificates are re-read when their files change (see [`tls`]); everything else is read once
//! at start.

pub mod auth;
pub mod tls;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use crate::config::{ConfigError, ConfigErrors};

pub use auth::{AuthConfigured, Principal};

/// Most users in `basic_auth_users` (each failed lookup pays one bcrypt run; exporter-toolkit
/// advises few users).
pub const MAX_USERS: usize = 100;
/// Highest bcrypt cost accepted: one verification at cost 14 takes about a second; past it, a
/// single request could hold a CPU for minutes.
pub const MAX_BCRYPT_COST: u32 = 14;
/// Most entries in `cipher_suites` and in `curve_preferences`.
pub const MAX_LIST: usize = 32;

/// The headers `http_server_config.headers` may set, with their allowed values (`None`: any),
/// as exporter-toolkit allows them. Any other header is refused: canaryd's own headers
/// (content type, authentication) must not be overridden.
const SETTABLE_HEADERS: &[(&str, Option<&[&str]>)] = &[
    ("Strict-Transport-Security", None),
    ("X-Content-Type-Options", Some(&["nosniff"])),
    ("X-Frame-Options", Some(&["deny", "sameorigin"])),
    ("X-XSS-Protection", None),
    ("Content-Security-Policy", None),
];

// ---- the file as written ------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileModel {
    #[serde(default)]
    tls_server_config: Option<Spanned<TlsModel>>,
    #[serde(default)]
    http_server_config: Option<Spanned<HttpModel>>,
    #[serde(default)]
    basic_auth_users: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    #[serde(default)]
    rate_limit: Option<Spanned<serde::de::IgnoredAny>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsModel {
    #[serde(default)]
    cert: Option<Spanned<String>>,
    #[serde(default)]
    key: Option<Spanned<String>>,
    #[serde(default)]
    client_ca: Option<Spanned<String>>,
    #[serde(default)]
    cert_file: Option<Spanned<String>>,
    #[serde(default)]
    key_file: Option<Spanned<String>>,
    #[serde(default)]
    client_auth_type: Option<Spanned<String>>,
    #[serde(default)]
    client_ca_file: Option<Spanned<String>>,
    #[serde(default)]
    client_allowed_sans: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    min_version: Option<Spanned<String>>,
    #[serde(default)]
    max_version: Option<Spanned<String>>,
    #[serde(default)]
    cipher_suites: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    prefer_server_cipher_suites: Option<bool>,
    #[serde(default)]
    curve_preferences: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpModel {
    #[serde(default)]
    http2: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
}

// ---- the validated configuration ----------------------------------------------------------

/// A bcrypt hash from `basic_auth_users`: a secret, never printed.
#[derive(Clone)]
pub struct Hash(pub(crate) String);

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hash(<redacted>)")
    }
}

/// The validated web configuration.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    /// The file it came from (None: no `--web.config.file`, plain HTTP without auth).
    pub path: Option<PathBuf>,
    /// The TLS server configuration, when `tls_server_config` is set.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Headers set on every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// User name → bcrypt hash; empty: no basic auth.
    pub users: BTreeMap<String, Hash>,
}

impl WebConfig {
    /// Whether requests need basic-auth credentials.
    pub fn auth_required(&self) -> bool {
        !self.users.is_empty()
    }
}

/// Collects located errors of one file.
pub(crate) struct Errors<'a> {
    file: &'a Path,
    list: Vec<ConfigError>,
}

impl Errors<'_> {
    pub(crate) fn at(&mut self, loc: &Location, key: &str, message: impl Into<String>) {
        self.list.push(ConfigError {
            file: self.file.to_path_buf(),
            line: loc.line().max(1),
            col: loc.column().max(1),
            key: key.to_string(),
            message: message.into(),
        });
    }
}

/// Reads and validates a web configuration file.
pub fn load(path: &Path) -> Result<WebConfig, ConfigErrors> {
    let whole = |message: String| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 1,
            col: 1,
            key: String::new(),
            message,
        }])
    };
    let src = crate::config::read_config_file(path)
        .map_err(|reason| whole(format!("cannot read the web configuration file: {reason}")))?;
    load_str(path, &src)
}

/// Validates a web configuration given as text; `path` names it in errors and is the base of
/// relative paths.
pub fn load_str(path: &Path, src: &str) -> Result<WebConfig, ConfigErrors> {
    // An empty file is a valid (empty) configuration, as in exporter-toolkit.
    let model: FileModel = if src.trim().is_empty() {
        FileModel {
            tls_server_config: None,
            http_server_config: None,
            basic_auth_users: None,
            rate_limit: None,
        }
    } else {
        crate::config::decode(path, src).map_err(|e| ConfigErrors(vec![e]))?
    };
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut errors = Errors {
        file: path,
        list: Vec::new(),
    };
    let mut out = WebConfig {
        path: Some(path.to_path_buf()),
        ..WebConfig::default()
    };
    if let Some(r) = &model.rate_limit {
        errors.at(
            &r.referenced,
            "rate_limit",
            "not supported by canaryd (limit request rates in a reverse proxy in front of it)",
        );
    }
    if let Some(http) = &model.http_server_config {
        // `http2` is accepted for compatibility: canaryd serves HTTP/1.1 only, whatever it says.
        let _ = http.value.http2;
        for (name, value) in &http.value.headers {
            let key = format!("http_server_config.headers.{name}");
            let Some((canonical, allowed)) = SETTABLE_HEADERS.iter().find(|(h, _)| h == name)
            else {
                let names: Vec<&str> = SETTABLE_HEADERS.iter().map(|(h, _)| *h).collect();
                errors.at(
                    &value.referenced,
                    &key,
                    format!(
                        "HTTP header {name:?} can not be configured (allowed: {})",
                        names.join(", ")
                    ),
                );
                continue;
            };
            if let Some(allowed) = allowed {
                if !allowed.contains(&value.value.as_str()) {
                    errors.at(
                        &value.referenced,
                        &key,
                        format!(
                            "invalid value {:?}: expected one of {}",
                            value.value,
                            allowed.join(", ")
                        ),
                    );
                    continue;
                }
            }
            // Blank: unset.
            if value.value.is_empty() {
                continue;
            }
            match HeaderValue::from_str(&value.value) {
                Ok(v) => out
                    .headers
                    .push((HeaderName::from_static(lower(canonical)), v)),
                Err(_) => errors.at(
                    &value.referenced,
                    &key,
                    "not a valid header value (control characters or line breaks)",
                ),
            }
        }
    }
    if let Some(users) = &model.basic_auth_users {
        if users.value.len() > MAX_USERS {
            errors.at(
                &users.referenced,
                "basic_auth_users",
                format!(
                    "{} users: at most {MAX_USERS} are allowed",
                    users.value.len()
                ),
            );
        } else {
            for (user, hash) in &users.value {
                let key = format!("basic_auth_users.{user}");
                if user.contains(':') {
                    errors.at(
                        &hash.referenced,
                        &key,
                        "a user name cannot contain ':' (basic auth splits at the first one)",
                    );
                    continue;
                }
                match bcrypt_cost(&hash.value) {
                    Ok(cost) if cost > MAX_BCRYPT_COST => errors.at(
                        &hash.referenced,
                        &key,
                        format!(
                            "bcrypt cost {cost} is more than the limit of {MAX_BCRYPT_COST} (each verification would take minutes)"
                        ),
                    ),
                    Ok(_) => {
                        out.users.insert(user.clone(), Hash(hash.value.clone()));
                    }
                    // Never the value: it is a secret.
                    Err(why) => errors.at(&hash.referenced, &key, why),
                }
            }
        }
    }
    if let Some(t) = &model.tls_server_config {
        if let Some(cfg) = tls::build(&t.value, &t.referenced, &dir, &mut errors) {
            out.tls = Some(cfg);
        }
    }
    if errors.list.is_empty() {
        Ok(out)
    } else {
        Err(ConfigErrors(errors.list))
    }
}

fn lower(canonical: &'static str) -> &'static str {
    match canonical {
        "Strict-Transport-Security" => "strict-transport-security",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-Frame-Options" => "x-frame-options",
        "X-XSS-Protection" => "x-xss-protection",
        _ => "content-security-policy",
    }
}

/// The cost of a bcrypt hash, or why it is not one (without echoing it).
fn bcrypt_cost(hash: &str) -> Result<u32, String> {
    use std::str::FromStr as _;
    let not_hash = || {
        "not a bcrypt hash (expected $2y$, $2b$ or $2a$, a cost and 53 characters; make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)".to_string()
    };
    if hash.len() != 60 {
        return Err(not_hash());
    }
    bcrypt::HashParts::from_str(hash)
        .map(|p| p.get_cost())
        .map_err(|_| not_hash())
}

/// Resolves a path written in the file against the file's directory.
pub(crate) fn resolve(dir: &Path, written: &str) -> PathBuf {
    let p = Path::new(written);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(yaml: &str) -> String {
        match load_str(Path::new("web.yml"), yaml) {
            Ok(_) => "ok".into(),
            Err(e) => e.to_string(),
        }
    }

    const HASH: &str = "$2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze";

    #[test]
    fn empty_file_is_plain_http_without_auth() {
        let c = load_str(Path::new("web.yml"), "").unwrap();
        assert!(c.tls.is_none() && !c.auth_required() && c.headers.is_empty());
    }

    #[test]
    fn unknown_keys_are_located() {
        assert_eq!(
            errs("basic_auth_users: {}\ntls_server_confg: {}\n"),
            "web.yml:2:1: tls_server_confg: unknown field `tls_server_confg`, expected one of tls_server_config, http_server_config, basic_auth_users, rate_limit"
        );
    }

    #[test]
    fn headers_follow_exporter_toolkit() {
        assert_eq!(
            errs("http_server_config:\n  headers:\n    Content-Type: text/html\n"),
            "web.yml:3:19: http_server_config.headers.Content-Type: HTTP header \"Content-Type\" can not be configured (allowed: Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, X-XSS-Protection, Content-Security-Policy)"
        );
        assert_eq!(
            errs("http_server_config:\n  headers:\n    X-Frame-Options: allow\n"),
            "web.yml:3:22: http_server_config.headers.X-Frame-Options: invalid value \"allow\": expected one of deny, sameorigin"
        );
        let c = load_str(
            Path::new("web.yml"),
            "http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n    Content-Security-Policy: \"\"\n",
        )
        .unwrap();
        assert_eq!(c.headers.len(), 1);
        assert_eq!(c.headers[0].0, "x-frame-options");
    }

    #[test]
    fn bad_hashes_are_located_and_not_echoed() {
        let e = errs("basic_auth_users:\n  alice: hunter2-plain\n");
        assert!(
            e.starts_with("web.yml:2:10: basic_auth_users.alice: not a bcrypt hash"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
        let costly = "$2y$31$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze";
        let e = errs(&format!("basic_auth_users:\n  alice: {costly}\n"));
        assert!(
            e.contains("bcrypt cost 31 is more than the limit of 14"),
            "{e}"
        );
        assert!(!e.contains(costly), "{e}");
        let c = load_str(
            Path::new("web.yml"),
            &format!("basic_auth_users:\n  alice: {HASH}\n"),
        )
        .unwrap();
        assert!(c.auth_required());
        assert!(!format!("{c:?}").contains(HASH));
    }

    #[test]
    fn rate_limit_is_refused_not_ignored() {
        assert_eq!(
            errs("rate_limit:\n  interval: 1s\n  burst: 20\n"),
            "web.yml:2:3: rate_limit: not supported by canaryd (limit request rates in a reverse proxy in front of it)"
        );
    }

    // Any document built from the file's keys and hostile values loads or fails with located
    // errors; it never panics and never echoes a basic-auth hash.
    mod props {
        use super::super::*;
        use proptest::prelude::*;

        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("TLS13".to_string()),
                Just("TLS10".to_string()),
                Just("RequireAndVerifyClientCert".to_string()),
                Just("[X25519, CurveP521]".to_string()),
                Just("{}".to_string()),
                Just("[]".to_string()),
                Just("~".to_string()),
                Just("\"\\u0000\\n\"".to_string()),
                Just("$2y$99$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze".to_string()),
                "[a-zA-Z0-9$./ ]{0,70}",
            ]
        }

        fn key() -> impl Strategy<Value = &'static str> {
            prop::sample::select(vec![
                "tls_server_config",
                "http_server_config",
                "basic_auth_users",
                "rate_limit",
                "cert_file",
                "key_file",
                "cert",
                "key",
                "client_ca",
                "client_ca_file",
                "client_auth_type",
                "client_allowed_sans",
                "min_version",
                "max_version",
                "cipher_suites",
                "curve_preferences",
                "prefer_server_cipher_suites",
                "headers",
                "http2",
                "X-Frame-Options",
                "Server",
                "alice",
                "unknown",
            ])
        }

        fn doc() -> impl Strategy<Value = String> {
            prop::collection::vec((key(), key(), value(), 0..3usize), 0..8).prop_map(|entries| {
                let mut s = String::new();
                for (outer, inner, v, depth) in entries {
                    match depth {
                        0 => s.push_str(&format!("{outer}: {v}\n")),
                        1 => s.push_str(&format!("{outer}:\n  {inner}: {v}\n")),
                        _ => s.push_str(&format!("{outer}:\n  {inner}:\n    {inner}: {v}\n")),
                    }
                }
                s
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            #[test]
            fn any_document_loads_or_fails_located(src in doc()) {
                if let Err(e) = load_str(Path::new("web.yml"), &src) {
                    for err in &e.0 {
                        prop_assert!(err.line >= 1 && err.col >= 1);
                        prop_assert!(!err.message.contains("mDwo.lAisC94"), "{}", err);
                    }
                }
            }

            #[test]
            fn any_authorization_header_decodes_or_is_refused(raw in prop::collection::vec(any::<u8>(), 0..200)) {
                let mut v = b"Basic ".to_vec();
                v.extend_from_slice(&raw);
                let _ = auth::basic_credentials(&v);
                let _ = auth::basic_credentials(&raw);
            }
        }
    }
}
