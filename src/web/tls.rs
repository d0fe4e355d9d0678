//! `tls_server_config`: the rustls server configuration (ring provider), a certificate resolver
//! that re-reads rotated files, client-certificate policies, and a listener that runs TLS
//! handshakes off the accept loop.
//!
//! Rotation: at most once a second, on a handshake, the certificate and key files' size and
//! modification time are compared with those of the pair in use; when they changed the pair is
//! read again and used from that handshake on. A pair that does not load (half-written, key not
//! matching) is logged and the last good one stays.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme, SupportedCipherSuite};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use serde_saphyr::{Location, Spanned};

use super::{resolve, Errors, TlsModel, MAX_LIST};
use crate::config::limits;

/// How often, at most, the certificate files are looked at for a rotation.
pub const RECHECK_EVERY: Duration = Duration::from_secs(1);
/// A TLS handshake not finished in this time is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most TLS handshakes in progress at once; further connections wait to be accepted.
pub const MAX_HANDSHAKES: usize = 256;

/// exporter-toolkit's `client_auth_type` values (Go's `tls.ClientAuthType` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

const CLIENT_AUTH: &[(&str, ClientAuth)] = &[
    ("NoClientCert", ClientAuth::NoClientCert),
    ("RequestClientCert", ClientAuth::RequestClientCert),
    ("RequireAnyClientCert", ClientAuth::RequireAnyClientCert),
    (
        "VerifyClientCertIfGiven",
        ClientAuth::VerifyClientCertIfGiven,
    ),
    (
        "RequireAndVerifyClientCert",
        ClientAuth::RequireAndVerifyClientCert,
    ),
];

/// Go's TLS 1.2 cipher suite names that the ring provider implements. TLS 1.3 suites are not
/// configurable in Go either; their names are accepted and change nothing.
fn cipher_suite(name: &str) -> Option<Option<SupportedCipherSuite>> {
    use rustls::crypto::ring::cipher_suite as cs;
    Some(Some(match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_AES_128_GCM_SHA256" | "TLS_AES_256_GCM_SHA384" | "TLS_CHACHA20_POLY1305_SHA256" => {
            return Some(None)
        }
        _ => return None,
    }))
}

const TLS12_SUITE_NAMES: &str = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305";

fn curve(name: &str) -> Option<&'static dyn rustls::crypto::SupportedKxGroup> {
    use rustls::crypto::ring::kx_group;
    match name {
        "X25519" => Some(kx_group::X25519),
        "CurveP256" => Some(kx_group::SECP256R1),
        "CurveP384" => Some(kx_group::SECP384R1),
        _ => None,
    }
}

fn version(
    v: &Spanned<String>,
    key: &str,
    errors: &mut Errors,
) -> Option<&'static rustls::SupportedProtocolVersion> {
    match v.value.as_str() {
        "TLS12" => Some(&rustls::version::TLS12),
        "TLS13" => Some(&rustls::version::TLS13),
        "TLS10" | "TLS11" => {
            errors.at(
                &v.referenced,
                key,
                format!(
                    "{} is not supported (canaryd's TLS library speaks TLS12 and TLS13 only)",
                    v.value
                ),
            );
            None
        }
        other => {
            errors.at(
                &v.referenced,
                key,
                format!("unknown TLS version {other:?} (write TLS12 or TLS13)"),
            );
            None
        }
    }
}

/// Where a PEM comes from: a file (re-read on rotation) or the text written inline.
#[derive(Debug, Clone)]
enum Pem {
    File(PathBuf),
    Inline(String),
}

impl Pem {
    fn read(&self) -> Result<String, String> {
        match self {
            Pem::File(p) => limits::read_capped(p, limits::MAX_PEM_FILE_BYTES),
            Pem::Inline(s) => Ok(s.clone()),
        }
    }

    fn stamp(&self) -> Option<(u64, Option<SystemTime>)> {
        match self {
            Pem::File(p) => std::fs::metadata(p)
                .ok()
                .map(|m| (m.len(), m.modified().ok())),
            Pem::Inline(_) => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Pem::File(p) => p.display().to_string(),
            Pem::Inline(_) => "(inline)".into(),
        }
    }
}

/// The certificate chain and key of a pair; errors name the file and the reason, never content.
fn load_pair(
    cert: &Pem,
    key: &Pem,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, (bool, String)> {
    let cert_text = cert.read().map_err(|r| (true, r))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_text.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| (true, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err((true, "holds no PEM certificate".into()));
    }
    let key_text = key.read().map_err(|r| (false, r))?;
    let key_der = PrivateKeyDer::from_pem_slice(key_text.as_bytes())
        .map_err(|_| (false, "holds no PEM private key".to_string()))?;
    CertifiedKey::from_der(chain, key_der, provider)
        .map(Arc::new)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => (
                false,
                "the key does not belong to the certificate".to_string(),
            ),
            other => (false, format!("the key cannot be used: {other}")),
        })
}

#[derive(Debug)]
struct Current {
    checked: Instant,
    stamps: [Option<(u64, Option<SystemTime>)>; 2],
    key: Arc<CertifiedKey>,
}

/// Serves the certificate pair of the files, re-read when they change.
#[derive(Debug)]
pub struct RotatingCert {
    cert: Pem,
    key: Pem,
    provider: Arc<CryptoProvider>,
    current: Mutex<Current>,
}

impl RotatingCert {
    fn refreshed(&self) -> Arc<CertifiedKey> {
        let mut cur = match self.current.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if cur.checked.elapsed() < RECHECK_EVERY {
            return cur.key.clone();
        }
        cur.checked = Instant::now();
        let stamps = [self.cert.stamp(), self.key.stamp()];
        if stamps == cur.stamps {
            return cur.key.clone();
        }
        match load_pair(&self.cert, &self.key, &self.provider) {
            Ok(key) => {
                tracing::info!(
                    cert_file = %self.cert.describe(),
                    "TLS certificate changed on disk; serving the new one"
                );
                cur.key = key;
                cur.stamps = stamps;
            }
            Err((in_cert, reason)) => {
                // Remember the stamps: the same broken files are reported once, not per handshake.
                cur.stamps = stamps;
                let file = if in_cert { &self.cert } else { &self.key };
                tracing::warn!(
                    file = %file.describe(),
                    "TLS certificate files changed but do not load ({reason}); still serving the previous certificate"
                );
            }
        }
        cur.key.clone()
    }
}

impl ResolvesServerCert for RotatingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.refreshed())
    }
}

/// `RequestClientCert` / `RequireAnyClientCert`: a client certificate is asked for (or
/// required) and its signature over the handshake checked, but it is not verified against a CA
/// (Go's semantics for these values; exporter-toolkit calls them insecure).
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `client_allowed_sans`: after the inner verifier accepted a certificate, one of its subject
/// alternative names (DNS, IP, e-mail or URI) must equal an entry of the list.
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    sans: Vec<String>,
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let names = cert_sans(end_entity);
        if names.iter().any(|n| self.sans.contains(n)) {
            Ok(ok)
        } else {
            Err(rustls::Error::General(
                "client certificate has no subject alternative name in client_allowed_sans".into(),
            ))
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn cert_sans(der: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                Some(s.to_string())
            }
            GeneralName::IPAddress(b) => match b.len() {
                4 => <[u8; 4]>::try_from(*b)
                    .ok()
                    .map(|a| std::net::IpAddr::from(a).to_string()),
                16 => <[u8; 16]>::try_from(*b)
                    .ok()
                    .map(|a| std::net::IpAddr::from(a).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// A PEM source from `X` (inline) or `X_file` (a path): exactly one, else an error.
fn pem_source(
    inline: &Option<Spanned<String>>,
    file: &Option<Spanned<String>>,
    names: (&str, &str),
    dir: &Path,
    errors: &mut Errors,
) -> Option<(Pem, Location)> {
    match (inline, file) {
        (Some(i), Some(_)) => {
            errors.at(
                &i.referenced,
                &format!("tls_server_config.{}", names.0),
                format!("give {} or {}, not both", names.0, names.1),
            );
            None
        }
        (Some(i), None) => Some((Pem::Inline(i.value.clone()), i.referenced)),
        (None, Some(f)) if f.value.trim().is_empty() => {
            errors.at(
                &f.referenced,
                &format!("tls_server_config.{}", names.1),
                "is empty",
            );
            None
        }
        (None, Some(f)) => Some((Pem::File(resolve(dir, &f.value)), f.referenced)),
        (None, None) => None,
    }
}

/// Validates `tls_server_config` and builds the server configuration.
pub(super) fn build(
    t: &TlsModel,
    at: &Location,
    dir: &Path,
    errors: &mut Errors,
) -> Option<Arc<rustls::ServerConfig>> {
    let before = errors.list.len();
    let cert = pem_source(&t.cert, &t.cert_file, ("cert", "cert_file"), dir, errors);
    let key = pem_source(&t.key, &t.key_file, ("key", "key_file"), dir, errors);
    let ca = pem_source(
        &t.client_ca,
        &t.client_ca_file,
        ("client_ca", "client_ca_file"),
        dir,
        errors,
    );
    if t.cert.is_none() && t.cert_file.is_none() {
        errors.at(
            at,
            "tls_server_config",
            "cert_file (or cert) is required to serve TLS",
        );
    }
    if t.key.is_none() && t.key_file.is_none() {
        errors.at(
            at,
            "tls_server_config",
            "key_file (or key) is required to serve TLS",
        );
    }

    let client_auth = match &t.client_auth_type {
        None => ClientAuth::NoClientCert,
        Some(s) => match CLIENT_AUTH.iter().find(|(n, _)| *n == s.value) {
            Some((_, a)) => *a,
            None => {
                let names: Vec<&str> = CLIENT_AUTH.iter().map(|(n, _)| *n).collect();
                errors.at(
                    &s.referenced,
                    "tls_server_config.client_auth_type",
                    format!(
                        "invalid value {:?}: expected one of {}",
                        s.value,
                        names.join(", ")
                    ),
                );
                ClientAuth::NoClientCert
            }
        },
    };
    let verifies = matches!(
        client_auth,
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
    );
    if let (Some((_, loc)), ClientAuth::NoClientCert) = (&ca, client_auth) {
        if t.client_auth_type.is_some() || t.client_ca.is_some() || t.client_ca_file.is_some() {
            errors.at(
                loc,
                "tls_server_config.client_ca_file",
                "client CAs are configured without a client_auth_type (set RequireAndVerifyClientCert)",
            );
        }
    }
    if verifies && ca.is_none() {
        errors.at(
            at,
            "tls_server_config.client_ca_file",
            format!("{client_auth:?} needs client_ca_file (the CAs client certificates are verified against)"),
        );
    }
    if let Some(sans) = &t.client_allowed_sans {
        if !matches!(
            client_auth,
            ClientAuth::RequireAnyClientCert | ClientAuth::RequireAndVerifyClientCert
        ) {
            errors.at(
                &sans.referenced,
                "tls_server_config.client_allowed_sans",
                "needs client_auth_type RequireAnyClientCert or RequireAndVerifyClientCert (otherwise a client may send no certificate to match)",
            );
        }
    }

    let min = t
        .min_version
        .as_ref()
        .map(|v| version(v, "tls_server_config.min_version", errors));
    let max = t
        .max_version
        .as_ref()
        .map(|v| version(v, "tls_server_config.max_version", errors));
    let min_v = min.flatten().unwrap_or(&rustls::version::TLS12);
    let max_v = max.flatten().unwrap_or(&rustls::version::TLS13);
    let rank = |v: &rustls::SupportedProtocolVersion| u16::from(v.version);
    if rank(min_v) > rank(max_v) {
        if let Some(m) = &t.min_version {
            errors.at(
                &m.referenced,
                "tls_server_config.min_version",
                "is above max_version",
            );
        }
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [&rustls::version::TLS12, &rustls::version::TLS13]
            .into_iter()
            .filter(|v| rank(v) >= rank(min_v) && rank(v) <= rank(max_v))
            .collect();

    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(list) = &t.cipher_suites {
        if list.value.len() > MAX_LIST {
            errors.at(
                &list.referenced,
                "tls_server_config.cipher_suites",
                format!(
                    "{} entries: at most {MAX_LIST} are allowed",
                    list.value.len()
                ),
            );
        } else if !list.value.is_empty() {
            // TLS 1.3 suites first (not configurable, as in Go), then the TLS 1.2 ones in the
            // order written (the server's preference).
            let mut suites: Vec<SupportedCipherSuite> = provider
                .cipher_suites
                .iter()
                .filter(|s| s.tls13().is_some())
                .copied()
                .collect();
            for (i, name) in list.value.iter().enumerate() {
                match cipher_suite(&name.value) {
                    Some(Some(s)) => {
                        if !suites.iter().any(|x| x.suite() == s.suite()) {
                            suites.push(s)
                        }
                    }
                    Some(None) => {}
                    None => errors.at(
                        &name.referenced,
                        &format!("tls_server_config.cipher_suites[{i}]"),
                        format!(
                            "cipher suite {:?} is not supported by canaryd's TLS library (supported for TLS 1.2: {TLS12_SUITE_NAMES})",
                            name.value
                        ),
                    ),
                }
            }
            provider.cipher_suites = suites;
        }
    }
    if let Some(list) = &t.curve_preferences {
        if list.value.len() > MAX_LIST {
            errors.at(
                &list.referenced,
                "tls_server_config.curve_preferences",
                format!(
                    "{} entries: at most {MAX_LIST} are allowed",
                    list.value.len()
                ),
            );
        } else if !list.value.is_empty() {
            let mut groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup> = Vec::new();
            for (i, name) in list.value.iter().enumerate() {
                match curve(&name.value) {
                    Some(g) => {
                        if !groups.iter().any(|x| x.name() == g.name()) {
                            groups.push(g)
                        }
                    }
                    None => errors.at(
                        &name.referenced,
                        &format!("tls_server_config.curve_preferences[{i}]"),
                        format!(
                            "curve {:?} is not supported by canaryd's TLS library (supported: X25519, CurveP256, CurveP384)",
                            name.value
                        ),
                    ),
                }
            }
            provider.kx_groups = groups;
        }
    }
    if errors.list.len() > before {
        return None;
    }
    let (Some((cert, cert_at)), Some((key, key_at))) = (cert, key) else {
        return None;
    };
    let provider = Arc::new(provider);
    let pair = match load_pair(&cert, &key, &provider) {
        Ok(k) => k,
        Err((in_cert, reason)) => {
            let (loc, name) = if in_cert {
                (
                    cert_at,
                    if matches!(cert, Pem::File(_)) {
                        "cert_file"
                    } else {
                        "cert"
                    },
                )
            } else {
                (
                    key_at,
                    if matches!(key, Pem::File(_)) {
                        "key_file"
                    } else {
                        "key"
                    },
                )
            };
            let what = if in_cert { &cert } else { &key };
            let reason = match what {
                Pem::File(p) => format!("cannot use {}: {reason}", p.display()),
                Pem::Inline(_) => reason,
            };
            errors.at(&loc, &format!("tls_server_config.{name}"), reason);
            return None;
        }
    };

    let verifier: Arc<dyn ClientCertVerifier> = match client_auth {
        ClientAuth::NoClientCert => rustls::server::WebPkiClientVerifier::no_client_auth(),
        ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert => {
            Arc::new(AnyClientCert {
                mandatory: client_auth == ClientAuth::RequireAnyClientCert,
                provider: provider.clone(),
            })
        }
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert => {
            let (ca, ca_at) = ca?;
            let mut roots = rustls::RootCertStore::empty();
            let loaded = ca.read().and_then(|text| {
                let certs: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_slice_iter(text.as_bytes())
                        .collect::<Result<_, _>>()
                        .map_err(|e| format!("not a PEM certificate list: {e}"))?;
                if certs.is_empty() {
                    return Err("holds no PEM certificate".into());
                }
                for c in certs {
                    roots
                        .add(c)
                        .map_err(|e| format!("a certificate cannot be used as a CA: {e}"))?;
                }
                Ok(())
            });
            if let Err(reason) = loaded {
                let reason = match &ca {
                    Pem::File(p) => format!("cannot use {}: {reason}", p.display()),
                    Pem::Inline(_) => reason,
                };
                errors.at(&ca_at, "tls_server_config.client_ca_file", reason);
                return None;
            }
            let builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let builder = if client_auth == ClientAuth::VerifyClientCertIfGiven {
                builder.allow_unauthenticated()
            } else {
                builder
            };
            match builder.build() {
                Ok(v) => v,
                Err(e) => {
                    errors.at(
                        &ca_at,
                        "tls_server_config.client_ca_file",
                        format!("cannot verify clients with these CAs: {e}"),
                    );
                    return None;
                }
            }
        }
    };
    let verifier: Arc<dyn ClientCertVerifier> = match &t.client_allowed_sans {
        Some(sans) => Arc::new(AllowedSans {
            inner: verifier,
            sans: sans.value.clone(),
        }),
        None => verifier,
    };
    let resolver = RotatingCert {
        cert: cert.clone(),
        key: key.clone(),
        provider: provider.clone(),
        current: Mutex::new(Current {
            checked: Instant::now(),
            stamps: [cert.stamp(), key.stamp()],
            key: pair,
        }),
    };
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| errors.at(at, "tls_server_config", format!("{e}")))
        .ok()?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(resolver));
    let mut config = config;
    config.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Some(Arc::new(config))
}

/// A listener whose connections arrive TLS-wrapped: TCP connections are accepted in a task of
/// their own and each handshake runs in its own task (at most [`MAX_HANDSHAKES`] at once, each
/// at most [`HANDSHAKE_TIMEOUT`]), so a slow or silent client delays nobody else.
pub struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        SocketAddr,
    )>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Serves TLS with `config` on `listener`.
    pub fn new(
        listener: tokio::net::TcpListener,
        config: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let accepting = tokio::spawn(async move {
            let permits = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
            loop {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let (tcp, peer) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        tracing::warn!("cannot accept a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            rx,
            local,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(x) => x,
            // The accept task ended (its runtime is shutting down): no more connections.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
