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
