//! Generic JSON webhook. Body (documented in docs/reference.md):
//!
//! ```json
//! {"version": "1", "receiver": "hook", "sent_at": "2026-11-21T10:00:00.000Z",
//!  "events": [{"dedup_key": "canaryd-…", "kind": "trigger", "status": "firing",
//!              "check": "shop-login", "alert": "LoginFailing", "severity": "critical",
//!              "labels": {…}, "annotations": {…}, "summary": "…", "reason": "status",
//!              "failed_step": "submit", "value": "…", "starts_at": "…", "ends_at": null,
//!              "generator_url": "http://127.0.0.1:9464/api/v1/checks/shop-login"}]}
//! ```
//!
//! With a `secret`, the header `X-Canaryd-Signature: sha256=<hex HMAC-SHA256(secret, body)>`
//! lets the receiver check the sender. The URL, the secret and header values may come from
//! secrets; none is ever printed.

use std::collections::BTreeMap;
use std::time::SystemTime;

use hmac::{Hmac, KeyInit, Mac};
use http::HeaderName;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};
use serde_saphyr::Spanned;
use sha2::Sha256;

use super::{Notifier, Outgoing, ReceiverKind};
use crate::alert::{rfc3339, AlertEvent};
use crate::config::ctx::{header_value, no_variables, non_empty_secret, receiver_url, Ctx};
use crate::config::limits;
use crate::config::schema::{self, Text};
use crate::config::template::{Secret, Template};

/// Generic webhook receiver.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookDef {
    /// Where to POST.
    #[schemars(with = "String", extend("pattern" = schema::HTTP_URL_TEMPLATE, "patternErrorMessage" = "an http(s) URL or a secret reference"))]
    pub url: Spanned<String>,
    /// HMAC-SHA256 signing secret.
    #[schemars(with = "Option<Text>")]
    pub secret: Option<Spanned<String>>,
    /// Extra headers.
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, Text>>")]
    pub headers: BTreeMap<String, Spanned<String>>,
}

/// A webhook receiver, validated.
#[derive(Debug)]
pub struct WebhookSettings {
    /// Target.
    pub url: Template,
    /// HMAC secret.
    pub secret: Option<Template>,
    /// Extra headers.
    pub headers: Vec<(String, Template)>,
}

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-canaryd-signature";
/// Events per request.
pub const PER_REQUEST: usize = 100;

/// A webhook receiver.
#[derive(Debug)]
pub struct Webhook {
    name: String,
    url: Secret,
    secret: Option<Secret>,
    headers: Vec<(HeaderName, Secret)>,
}

impl ReceiverKind for Webhook {
    type Def = WebhookDef;
    type Settings = WebhookSettings;

    /// The URL renders to an http(s) URL; the secret takes secrets only and is not empty; at
    /// most [`limits::MAX_ENTRIES`] headers, each a valid name with a value a header can carry.
    fn validate(ctx: &mut Ctx, def: &WebhookDef, key: &str) -> Option<WebhookSettings> {
        let k = format!("{key}.url");
        let url = ctx
            .template(&def.url, &k)
            .filter(|t| receiver_url(ctx, t, &def.url, &k));
        let secret = def.secret.as_ref().and_then(|s| {
            let skey = format!("{key}.secret");
            ctx.template(s, &skey)
                .filter(|t| no_variables(ctx, t, s, &skey))
                .filter(|t| non_empty_secret(ctx, t, s, &skey))
        });
        if let Some(first) = def.headers.values().next() {
            ctx.count(
                def.headers.len(),
                limits::MAX_ENTRIES,
                &first.referenced,
                &format!("{key}.headers"),
                "headers",
            );
        }
        let headers = def
            .headers
            .iter()
            .filter_map(|(k, v)| {
                let hkey = format!("{key}.headers.{k}");
                if HeaderName::from_bytes(k.as_bytes()).is_err() {
                    ctx.err(&v.referenced, &hkey, format!("invalid header name {k:?}"));
                    return None;
                }
                let t = ctx.template(v, &hkey)?;
                header_value(ctx, &t, v, &hkey);
                Some((k.clone(), t))
            })
            .collect();
        url.map(|url| WebhookSettings {
            url,
            secret,
            headers,
        })
    }

    /// Renders the URL, the secret and the headers.
    fn build(name: &str, settings: &WebhookSettings) -> Result<Webhook, String> {
        let WebhookSettings {
            url,
            secret,
            headers,
        } = settings;
        let render = |t: &Template, what: &str| {
            t.render(|_| None)
                .map(|s| Secret::new(s.trim()))
                .map_err(|u| format!("{what}: unknown variable ${{{}}}", u.0))
        };
        // A secret in the URL's path or query is percent-encoded for its component.
        let rendered = url
            .render_url(|_| None)
            .map(|s| Secret::new(s.trim()))
            .map_err(|u| format!("url: unknown variable ${{{}}}", u.0))?;
        match url::Url::parse(rendered.expose()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => return Err(format!("url ({}) is not an http(s) URL", url.redacted())),
        }
        let mut hs = Vec::new();
        for (k, v) in headers {
            let header = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("headers: invalid header name {k:?}"))?;
            let value = render(v, &format!("headers.{k}"))?;
            http::HeaderValue::from_str(value.expose())
                .map_err(|_| format!("headers.{k}: not a valid header value"))?;
            hs.push((header, value));
        }
        Ok(Webhook {
            name: name.to_string(),
            url: rendered,
            secret: secret.as_ref().map(|s| render(s, "secret")).transpose()?,
            headers: hs,
        })
    }

    fn secrets(settings: &WebhookSettings) -> Vec<&Template> {
        let mut out = vec![&settings.url];
        out.extend(&settings.secret);
        out.extend(settings.headers.iter().map(|(_, t)| t));
        out
    }
}

impl Webhook {
    /// The JSON body of a batch.
    pub fn body(&self, batch: &[AlertEvent], now: SystemTime) -> Value {
        let events: Vec<Value> = batch
            .iter()
            .map(|e| {
                json!({
                    "dedup_key": e.dedup_key,
                    "kind": e.kind,
                    "status": e.status,
                    "check": e.check,
                    "alert": e.alert,
                    "severity": e.severity,
                    "labels": e.labels,
                    "annotations": e.annotations,
                    "summary": e.summary,
                    "reason": e.reason,
                    "failed_step": e.failed_step,
                    "message": e.message,
                    "value": e.value,
                    "values": e.values,
                    "dependants_failing": e.dependants_failing,
                    "runbook_url": e.runbook_url(),
                    "starts_at": rfc3339(e.starts_at()),
                    "ends_at": e.ends_at().map(rfc3339),
                    "duration_seconds": e.lasted().map(|d| d.as_secs_f64()),
                    "check_url": e.check_url(),
                    "generator_url": e.generator_url,
                })
            })
            .collect();
        json!({
            "version": "1",
            "receiver": self.name,
            "sent_at": rfc3339(now),
            "events": events,
        })
    }
}

/// `sha256=<hex>` of the body under the secret.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!(
        "sha256={}",
        data_encoding::HEXLOWER.encode(&mac.finalize().into_bytes())
    )
}

impl Notifier for Webhook {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn max_batch(&self) -> usize {
        PER_REQUEST
    }

    fn request(&self, batch: &[AlertEvent], now: SystemTime) -> Result<Outgoing, String> {
        let body = serde_json::to_vec(&self.body(batch, now)).map_err(|e| e.to_string())?;
        let mut headers = vec![(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        )];
        for (k, v) in &self.headers {
            let mut value = http::HeaderValue::from_str(v.expose())
                .map_err(|_| format!("header {k}: not a valid value"))?;
            value.set_sensitive(true);
            headers.push((k.clone(), value));
        }
        if let Some(secret) = &self.secret {
            let sig = signature(secret.expose().as_bytes(), &body);
            headers.push((
                http::HeaderName::from_static(SIGNATURE_HEADER),
                http::HeaderValue::from_str(&sig).map_err(|e| e.to_string())?,
            ));
        }
        Ok(Outgoing {
            method: http::Method::POST,
            url: url::Url::parse(self.url.expose()).map_err(|_| "url is not a URL".to_string())?,
            headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::receiver::tests_support::event;
    use crate::alert::tests_support::validated;
    use crate::alert::Status;

    fn webhook(yaml: &str) -> (Option<WebhookSettings>, Vec<String>) {
        validated(yaml, |ctx, def: &WebhookDef| {
            Webhook::validate(ctx, def, "receivers[0].webhook")
        })
    }

    #[test]
    fn header_names_must_be_valid_and_values_one_line() {
        let (_, errors) = webhook(
            "url: http://127.0.0.1:9/\nheaders:\n  X-Ok: fine\n  Bad Name: v\n  X-Note: \"a\\nb\"\n",
        );
        assert_eq!(
            errors,
            [
                "4:13: receivers[0].webhook.headers.Bad Name: invalid header name \"Bad Name\"",
                "5:11: receivers[0].webhook.headers.X-Note: the value contains a line break or NUL character, which a header cannot carry",
            ]
        );
    }

    #[test]
    fn at_most_100_headers_and_a_secret_without_variables() {
        let headers: String = (0..=limits::MAX_ENTRIES)
            .map(|i| format!("  X-H{i:03}: v\n"))
            .collect();
        let (_, errors) = webhook(&format!(
            "url: http://127.0.0.1:9/\nsecret: \"${{csrf}}\"\nheaders:\n{headers}"
        ));
        assert_eq!(
            errors,
            [
                "2:9: receivers[0].webhook.secret: ${csrf}: this key takes secrets (${env:..}, ${file:..}) but no run-time variables",
                "4:11: receivers[0].webhook.headers: 101 headers: at most 100 are allowed",
            ]
        );
    }

    #[test]
    fn the_url_must_be_http_and_its_error_never_shows_the_secret() {
        std::env::set_var("CANARYD_TEST_WEBHOOK_FTP_URL", "ftp://files.example/s3cret");
        let (settings, errors) = webhook("url: \"${env:CANARYD_TEST_WEBHOOK_FTP_URL}\"\n");
        assert!(settings.is_none());
        assert_eq!(
            errors,
            ["1:6: receivers[0].webhook.url: \"${env:CANARYD_TEST_WEBHOOK_FTP_URL}\" is not an http(s) URL (run-time variables are not available here)"]
        );
        let (settings, errors) = webhook("url: mailto:ops@example.com\n");
        assert!(settings.is_none());
        assert_eq!(
            errors,
            ["1:6: receivers[0].webhook.url: \"mailto:ops@example.com\" is not an http(s) URL (run-time variables are not available here)"]
        );
    }

    #[test]
    fn signature_matches_rfc_4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn body_and_signature_header() {
        let w = Webhook::build(
            "hook",
            &WebhookSettings {
                url: Template::literal("http://127.0.0.1:1/hook"),
                secret: Some(Template::literal("s3cret")),
                headers: vec![],
            },
        )
        .unwrap();
        let req = w
            .request(&[event(Status::Firing)], SystemTime::now())
            .unwrap();
        let v: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(v["events"][0]["status"], "firing");
        assert_eq!(v["events"][0]["kind"], "trigger");
        assert_eq!(v["events"][0]["failed_step"], "submit");
        assert_eq!(
            v["events"][0]["message"],
            "step \"submit\": expected status 302, got 200"
        );
        assert_eq!(
            v["events"][0]["check_url"],
            "http://127.0.0.1:9464/api/v1/checks/shop-login"
        );
        assert_eq!(v["events"][0]["runbook_url"], Value::Null);
        assert_eq!(v["events"][0]["duration_seconds"], Value::Null);
        let mut resolved = event(Status::Resolved);
        resolved.ends_at_ms = Some(resolved.starts_at_ms + 723_000);
        let r = w.body(&[resolved], SystemTime::now());
        assert_eq!(r["events"][0]["duration_seconds"], 723.0);
        let sig = req
            .headers
            .iter()
            .find(|(k, _)| k == SIGNATURE_HEADER)
            .unwrap();
        assert_eq!(sig.1.to_str().unwrap(), signature(b"s3cret", &req.body));
        assert!(!format!("{w:?}").contains("s3cret"));
    }
}
