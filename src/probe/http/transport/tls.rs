//! rustls client configurations: built once at configuration load, shared by every run.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// TLS settings of one check, as written in its configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Accept any server certificate (verification off). Only when a check asks for it.
    pub insecure_skip_verify: bool,
    /// PEM file of CA certificates to trust instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate chain (with `key_file`).
    pub cert_file: Option<PathBuf>,
    /// PEM file of the client private key (with `cert_file`).
    pub key_file: Option<PathBuf>,
}

/// Why a TLS configuration could not be built. Messages name the file at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsConfigError {
    /// A file could not be read or parsed.
    #[error("{}: {message}", path.display())]
    File {
        /// The file at fault.
        path: PathBuf,
        /// What was wrong with it.
        message: String,
    },
    /// Only one of `cert_file` and `key_file` was given.
    #[error("cert_file and key_file must be set together")]
    ClientAuthIncomplete,
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Invalid(String),
}

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The client configuration for `opts`. The default (verification on, system roots, no client
/// certificate) is built once per process and shared; others are built on each call, so call
/// this once per check at configuration load.
pub fn client_config(opts: &TlsOptions) -> Result<Arc<ClientConfig>, TlsConfigError> {
    if *opts == TlsOptions::default() {
        static DEFAULT: OnceLock<Result<Arc<ClientConfig>, TlsConfigError>> = OnceLock::new();
        return DEFAULT.get_or_init(|| build(opts)).clone();
    }
    build(opts)
}

fn build(opts: &TlsOptions) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Invalid(e.to_string()))?;

    let builder = if opts.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
    } else {
        let roots = match &opts.ca_file {
            Some(path) => ca_file_roots(path)?,
            None => system_roots(),
        };
        builder.with_root_certificates(roots)
    };

    let mut config = match (&opts.cert_file, &opts.key_file) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert_file), Some(key_file)) => {
            let certs = read_certs(cert_file)?;
            let key_pem = read_pem(key_file)?;
            let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| {
                TlsConfigError::File {
                    path: key_file.clone(),
                    message: format!("no usable PEM private key: {e}"),
                }
            })?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| TlsConfigError::File {
                    path: key_file.clone(),
                    message: format!("key does not fit the certificate of cert_file: {e}"),
                })?
        }
        _ => return Err(TlsConfigError::ClientAuthIncomplete),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Every run measures (and verifies) a full handshake, like a first-time visitor.
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

/// A PEM file, read as the configuration check read it: a regular file of at most
/// [`MAX_PEM_FILE_BYTES`](crate::config::limits::MAX_PEM_FILE_BYTES), so a file swapped for a FIFO
/// or grown between the check and the build cannot block or exhaust the loader.
fn read_pem(path: &Path) -> Result<String, TlsConfigError> {
    crate::config::limits::read_capped(path, crate::config::limits::MAX_PEM_FILE_BYTES).map_err(
        |message| TlsConfigError::File {
            path: path.to_path_buf(),
            message,
        },
    )
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let file_err = |message: String| TlsConfigError::File {
        path: path.to_path_buf(),
        message,
    };
    let pem = read_pem(path)?;
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(file_err("no PEM certificate found".into()));
    }
    Ok(certs)
}

fn ca_file_roots(path: &Path) -> Result<RootCertStore, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots.add(cert).map_err(|e| TlsConfigError::File {
            path: path.to_path_buf(),
            message: format!("unusable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for err in &found.errors {
        tracing::warn!("loading system CA certificates: {err}");
    }
    let mut roots = RootCertStore::empty();
    let (_, ignored) = roots.add_parsable_certificates(found.certs);
    if ignored > 0 {
        tracing::warn!("ignored {ignored} unparsable system CA certificates");
    }
    if roots.is_empty() {
        tracing::warn!("no system CA certificates found: TLS verification will fail");
    }
    roots
}

/// `insecure_skip_verify`: any certificate is accepted, but handshake signatures are still
/// checked (so the handshake itself is real).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The `notAfter` of a DER certificate, if it parses.
pub(crate) fn not_after(der: &[u8]) -> Option<SystemTime> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let secs = cert.validity().not_after.timestamp();
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    }
}

/// A short description of a handshake failure (no secrets: rustls errors hold none).
pub(crate) fn describe(err: &rustls::Error) -> String {
    match err {
        rustls::Error::InvalidCertificate(e) => format!("certificate verification failed: {e}"),
        other => format!("TLS handshake failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_shared() {
        let a = client_config(&TlsOptions::default()).unwrap();
        let b = client_config(&TlsOptions::default()).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn errors_name_the_file() {
        let opts = TlsOptions {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsOptions::default()
        };
        let err = client_config(&opts).unwrap_err().to_string();
        assert!(err.starts_with("/nonexistent/ca.pem: "), "{err}");

        let opts = TlsOptions {
            cert_file: Some("/nonexistent/cert.pem".into()),
            ..TlsOptions::default()
        };
        assert_eq!(
            client_config(&opts).unwrap_err(),
            TlsConfigError::ClientAuthIncomplete
        );
    }

    #[test]
    fn empty_ca_file_is_an_error() {
        let dir = std::env::temp_dir().join(format!("canaryd-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let opts = TlsOptions {
            ca_file: Some(path.clone()),
            ..TlsOptions::default()
        };
        let err = client_config(&opts).unwrap_err().to_string();
        assert!(err.contains("empty.pem"), "{err}");
        assert!(err.contains("no PEM certificate"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn not_after_of_garbage_is_none() {
        assert_eq!(not_after(b"garbage"), None);
    }
}
