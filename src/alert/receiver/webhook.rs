//! Generic JSON webhook. Body (documented in the README):
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

use std::time::SystemTime;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::{Notifier, Outgoing};
use crate::alert::{rfc3339, AlertEvent};
use crate::config::template::Secret;
use crate::config::{Receiver, ReceiverKind};

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
    headers: Vec<(http::HeaderName, Secret)>,
}

impl Webhook {
    /// From configuration (renders URL, secret and headers).
    pub fn new(receiver: &Receiver) -> Result<Webhook, String> {
        let ReceiverKind::Webhook {
            url,
            secret,
            headers,
        } = &receiver.kind
        else {
            return Err("not a webhook receiver".into());
        };
        let render = |t: &crate::config::template::Template, what: &str| {
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
            let name = http::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("headers: invalid header name {k:?}"))?;
            let value = render(v, &format!("headers.{k}"))?;
            http::HeaderValue::from_str(value.expose())
                .map_err(|_| format!("headers.{k}: not a valid header value"))?;
            hs.push((name, value));
        }
        Ok(Webhook {
            name: receiver.name.clone(),
            url: rendered,
            secret: secret.as_ref().map(|s| render(s, "secret")).transpose()?,
            headers: hs,
        })
    }

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
                    "value": e.value,
                    "starts_at": rfc3339(e.starts_at()),
                    "ends_at": e.ends_at().map(rfc3339),
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
    use crate::alert::Status;
    use crate::config::template::Template;

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
        let w = Webhook::new(&Receiver {
            name: "hook".into(),
            kind: ReceiverKind::Webhook {
                url: Template::literal("http://127.0.0.1:1/hook"),
                secret: Some(Template::literal("s3cret")),
                headers: vec![],
            },
        })
        .unwrap();
        let req = w
            .request(&[event(Status::Firing)], SystemTime::now())
            .unwrap();
        let v: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(v["events"][0]["status"], "firing");
        assert_eq!(v["events"][0]["kind"], "trigger");
        assert_eq!(v["events"][0]["failed_step"], "submit");
        let sig = req
            .headers
            .iter()
            .find(|(k, _)| k == SIGNATURE_HEADER)
            .unwrap();
        assert_eq!(sig.1.to_str().unwrap(), signature(b"s3cret", &req.body));
        assert!(!format!("{w:?}").contains("s3cret"));
    }
}
