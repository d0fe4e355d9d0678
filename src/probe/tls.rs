//! TLS settings shared by every kind that speaks TLS (http, tcp, queue's `rediss://`): the
//! `tls_config` definition, its validation, and the settings turned into a rustls client
//! configuration when a probe is built.

use schemars::{JsonSchema, Schema};
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::config::ctx::Ctx;
use crate::config::expr::{Type, Value};
use crate::config::schema::{add_rules, needs, Flag, Text};
use crate::probe::kind::{Read, Var};

/// TLS settings of a check, as written (turned into a rustls config when the probe is built).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsSettings {
    /// Verification off (only when the check says so).
    pub insecure_skip_verify: bool,
    /// CA bundle instead of the system roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Client certificate.
    pub cert_file: Option<std::path::PathBuf>,
    /// Client key.
    pub key_file: Option<std::path::PathBuf>,
    /// SNI / verification name override.
    pub server_name: Option<String>,
}

impl TlsSettings {
    /// The rustls client configuration for these settings (reads the CA and client files now,
    /// so a bad file is a load error). Used by every probe kind that speaks TLS.
    pub fn client_config(&self) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
        super::http::transport::client_config(&super::http::transport::TlsOptions {
            insecure_skip_verify: self.insecure_skip_verify,
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
        })
        .map_err(|e| e.to_string())
    }
}

/// TLS options (http, tcp and queue).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = tls_rules)]
pub struct TlsDef {
    /// Turn certificate verification off (explicitly only).
    #[serde(default)]
    #[schemars(with = "Flag")]
    pub insecure_skip_verify: bool,
    /// Extra CA bundle (PEM) instead of the system roots.
    #[schemars(with = "Option<Text>")]
    pub ca_file: Option<Spanned<String>>,
    /// Client certificate (PEM).
    #[schemars(with = "Option<Text>")]
    pub cert_file: Option<Spanned<String>>,
    /// Client key (PEM).
    #[schemars(with = "Option<Text>")]
    pub key_file: Option<Spanned<String>>,
    /// SNI and verification name, when it differs from the URL host.
    #[schemars(with = "Option<Text>")]
    pub server_name: Option<Spanned<String>>,
}

/// TLS files: a client certificate and its key go together.
pub fn tls_rules(schema: &mut Schema) {
    add_rules(
        schema,
        [
            needs("cert_file", "key_file", "cert_file needs key_file"),
            needs("key_file", "cert_file", "key_file needs cert_file"),
        ],
    );
}

pub fn tls(ctx: &mut Ctx, t: Option<&TlsDef>, key: &str) -> TlsSettings {
    let Some(t) = t else {
        return TlsSettings::default();
    };
    let ca_file = t
        .ca_file
        .as_ref()
        .and_then(|p| ctx.path(p, &format!("{key}.ca_file")));
    let cert_file = t
        .cert_file
        .as_ref()
        .and_then(|p| ctx.path(p, &format!("{key}.cert_file")));
    let key_file = t
        .key_file
        .as_ref()
        .and_then(|p| ctx.path(p, &format!("{key}.key_file")));
    match (&t.cert_file, &t.key_file) {
        (Some(c), None) => ctx.err(
            &c.referenced,
            format!("{key}.cert_file"),
            "cert_file needs key_file",
        ),
        (None, Some(k)) => ctx.err(
            &k.referenced,
            format!("{key}.key_file"),
            "key_file needs cert_file",
        ),
        _ => {}
    }
    if let Some(name) = &t.server_name {
        // Checked now: a name TLS cannot carry would fail every run ("invalid TLS server name").
        if rustls::pki_types::ServerName::try_from(name.value.as_str()).is_err() {
            ctx.err(
                &name.referenced,
                format!("{key}.server_name"),
                format!(
                    "invalid server name {:?}: use a DNS name or an IP address",
                    name.value
                ),
            );
        }
    }
    TlsSettings {
        insecure_skip_verify: t.insecure_skip_verify,
        ca_file,
        cert_file,
        key_file,
        server_name: t.server_name.as_ref().map(|s| s.value.clone()),
    }
}

/// `cert_expires_in`: how long the soonest-expiring peer certificate of the run stays valid
/// (unknown without TLS), at the evaluation's `now`.
pub const CERT_EXPIRES_IN: Var = Var {
    name: "cert_expires_in",
    ty: Type::Duration,
    read: Read::With(|r, _, now| {
        r.steps
            .iter()
            .filter_map(|s| s.cert_not_after)
            .min()
            .map(|t| Value::Duration(t.duration_since(now).unwrap_or_default()))
    }),
    about: "time until the peer's certificate expires (unknown without TLS)",
};

#[cfg(test)]
mod tests {
    use crate::probe::check::{check_of, errors_of};
    use crate::probe::tcp::Tcp;

    /// A tcp check with TLS and `config` (lines at the indent of `tls_config:`'s keys).
    fn tls_check(config: &str) -> String {
        format!("checks:\n  - name: web\n    tcp:\n      target: \"127.0.0.1:443\"\n      tls: true\n      tls_config:\n{config}")
    }

    #[test]
    fn a_client_certificate_and_its_key_go_together() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("client.pem");
        std::fs::write(&pem, "pem").unwrap();
        let pem = pem.display();
        assert_eq!(
            errors_of(&tls_check(&format!("        cert_file: {pem}\n"))),
            ["t.yaml:7:20: checks[0].tcp.tls_config.cert_file: cert_file needs key_file"]
        );
        assert_eq!(
            errors_of(&tls_check(&format!("        key_file: {pem}\n"))),
            ["t.yaml:7:19: checks[0].tcp.tls_config.key_file: key_file needs cert_file"]
        );
        let c = check_of(&tls_check(&format!(
            "        cert_file: {pem}\n        key_file: {pem}\n        ca_file: {pem}\n        server_name: internal.test\n        insecure_skip_verify: true\n"
        )));
        let tls = c.kind.spec::<Tcp>().unwrap().tls.clone().unwrap();
        let file = Some(dir.path().join("client.pem"));
        assert_eq!(
            (&tls.cert_file, &tls.key_file, &tls.ca_file),
            (&file, &file, &file)
        );
        assert_eq!(tls.server_name.as_deref(), Some("internal.test"));
        assert!(tls.insecure_skip_verify);
    }

    #[test]
    fn the_server_name_is_one_tls_can_carry() {
        for bad in ["a b", "", "host_name!"] {
            assert_eq!(
                errors_of(&tls_check(&format!("        server_name: \"{bad}\"\n"))),
                [format!(
                    "t.yaml:7:22: checks[0].tcp.tls_config.server_name: invalid server name {bad:?}: use a DNS name or an IP address"
                )]
            );
        }
        for good in ["internal.test", "10.0.0.1", "::1", "localhost"] {
            let c = check_of(&tls_check(&format!("        server_name: \"{good}\"\n")));
            let tls = c.kind.spec::<Tcp>().unwrap().tls.clone().unwrap();
            assert_eq!(tls.server_name.as_deref(), Some(good));
        }
    }

    #[test]
    fn tls_files_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("ca.pem");
        assert_eq!(
            errors_of(&tls_check(&format!(
                "        ca_file: {}\n",
                missing.display()
            ))),
            [format!(
                "t.yaml:7:18: checks[0].tcp.tls_config.ca_file: file {} does not exist",
                missing.display()
            )]
        );
        // The same rules under every kind that speaks TLS, with that kind's key path.
        let yaml = format!(
            "checks:\n  - name: web\n    http:\n      request: {{url: \"https://127.0.0.1/\"}}\n      tls_config: {{ca_file: {}}}\n",
            missing.display()
        );
        assert_eq!(
            errors_of(&yaml),
            [format!(
                "t.yaml:5:29: checks[0].http.tls_config.ca_file: file {} does not exist",
                missing.display()
            )]
        );
    }
}
