//! Slack incoming webhook: one message per batch, one line per alert, so a storm of alerts
//! becomes a few messages. The webhook URL is the secret (it carries the token); it is used only
//! to send. Slack answers 200 `ok`; 400 `invalid_payload`/`no_text`, 403 `invalid_token` and
//! 404 `no_service` are final, 429 (with `Retry-After`) and 5xx are retried.

use std::fmt::Write as _;
use std::time::SystemTime;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use serde_saphyr::Spanned;

use super::{Notifier, Outgoing, ReceiverKind};
use crate::alert::{AlertEvent, EventKind, Status};
use crate::config::ctx::{receiver_url, Ctx};
use crate::config::schema;
use crate::config::template::{Secret, Template};

/// Slack receiver.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlackDef {
    /// Incoming webhook URL (a secret).
    #[schemars(with = "String", extend("pattern" = schema::HTTP_URL_TEMPLATE, "patternErrorMessage" = "an http(s) URL or a secret reference"))]
    pub webhook_url: Spanned<String>,
}

/// A Slack receiver, validated.
#[derive(Debug)]
pub struct SlackSettings {
    /// Webhook URL (secret).
    pub webhook_url: Template,
}

/// Alerts listed line by line in one message (Slack folds long messages; 20 lines stay
/// readable); the rest of a batch is summed up in one last line.
pub const LINES: usize = 20;
/// Alerts per message: a storm of 1,000 alerts becomes 10 messages.
pub const PER_MESSAGE: usize = 100;

/// A Slack receiver.
#[derive(Debug)]
pub struct Slack {
    name: String,
    webhook_url: Secret,
}

impl ReceiverKind for Slack {
    type Def = SlackDef;
    type Settings = SlackSettings;

    /// The webhook URL renders (secrets resolved) to an http(s) URL.
    fn validate(ctx: &mut Ctx, def: &SlackDef, key: &str) -> Option<SlackSettings> {
        let k = format!("{key}.webhook_url");
        ctx.template(&def.webhook_url, &k)
            .filter(|t| receiver_url(ctx, t, &def.webhook_url, &k))
            .map(|webhook_url| SlackSettings { webhook_url })
    }

    /// Renders the webhook URL and checks that it is an http(s) URL without printing it.
    fn build(name: &str, settings: &SlackSettings) -> Result<Slack, String> {
        let webhook_url = &settings.webhook_url;
        let url = webhook_url
            .render(|_| None)
            .map_err(|u| format!("webhook_url: unknown variable ${{{}}}", u.0))?;
        match url::Url::parse(url.trim()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => {
                return Err(format!(
                    "webhook_url ({}) is not an http(s) URL",
                    webhook_url.redacted()
                ))
            }
        }
        Ok(Slack {
            name: name.to_string(),
            webhook_url: Secret::new(url.trim()),
        })
    }

    fn secrets(settings: &SlackSettings) -> Vec<&Template> {
        vec![&settings.webhook_url]
    }
}

impl Slack {
    /// The message text of a batch (Slack mrkdwn).
    pub fn text(batch: &[AlertEvent]) -> String {
        let firing = batch.iter().filter(|e| e.status == Status::Firing).count();
        let mut out = String::new();
        if batch.len() > 1 {
            let _ = writeln!(
                out,
                "*{} alerts: {} firing, {} resolved*",
                batch.len(),
                firing,
                batch.len() - firing
            );
        }
        for e in batch.iter().take(LINES) {
            let tag = match (e.status, e.kind) {
                (Status::Resolved, _) => ":large_green_circle: [RESOLVED]",
                (_, EventKind::Reminder) => ":red_circle: [STILL FIRING]",
                (_, EventKind::Escalation) => ":rotating_light: [ESCALATED]",
                _ => ":red_circle: [FIRING]",
            };
            let _ = write!(
                out,
                "{tag} *{}* on `{}` ({}): {}",
                escape(&e.alert),
                escape(&e.check),
                e.severity,
                escape(&e.summary)
            );
            // The probe's message, unless the summary already says it (the default one does).
            if let Some(m) = e.message.as_deref().filter(|m| !e.summary.contains(m)) {
                let _ = write!(out, " — {}", escape(m));
            }
            // A parent's failing dependants, unless the (default) summary lists them.
            if let Some(d) = e
                .dependants()
                .filter(|_| !e.summary.contains("failing too"))
            {
                let _ = write!(out, " — failing too: {}", escape(&d));
            }
            if let Some(d) = e.lasted().filter(|_| e.status == Status::Resolved) {
                if !e.summary.contains("recovered after") {
                    let _ = write!(out, " (lasted {})", crate::alert::short_duration(d));
                }
            }
            // Slack links: `<url|text>`, the URL with `&<>` escaped like any text.
            let _ = write!(out, " <{}|check>", escape(e.check_url()));
            if let Some(r) = e.runbook_url() {
                let _ = write!(out, " <{}|runbook>", escape(r));
            }
            out.push('\n');
        }
        if batch.len() > LINES {
            let rest = &batch[LINES..];
            let names: Vec<String> = rest
                .iter()
                .take(50)
                .map(|e| format!("{}/{}", escape(&e.check), escape(&e.alert)))
                .collect();
            let _ = write!(
                out,
                "…and {} more: {}{}",
                rest.len(),
                names.join(", "),
                if rest.len() > names.len() {
                    ", …"
                } else {
                    ""
                }
            );
        }
        out.truncate(out.trim_end().len());
        out
    }
}

/// Slack's three control characters.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Notifier for Slack {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "slack"
    }

    fn max_batch(&self) -> usize {
        PER_MESSAGE
    }

    fn request(&self, batch: &[AlertEvent], _now: SystemTime) -> Result<Outgoing, String> {
        let url = url::Url::parse(self.webhook_url.expose())
            .map_err(|_| "webhook_url is not a URL".to_string())?;
        Ok(Outgoing {
            method: http::Method::POST,
            url,
            headers: vec![(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            )],
            body: serde_json::to_vec(&json!({ "text": Slack::text(batch) }))
                .map_err(|e| e.to_string())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::receiver::tests_support::event;
    use crate::alert::tests_support::validated;

    #[test]
    fn the_webhook_url_must_render_to_http() {
        let (settings, errors) = validated(
            "webhook_url: hooks.slack.example/services/T0/B0/x\n",
            |ctx, def: &SlackDef| Slack::validate(ctx, def, "receivers[0].slack"),
        );
        assert!(settings.is_none());
        assert_eq!(
            errors,
            ["1:14: receivers[0].slack.webhook_url: \"hooks.slack.example/services/T0/B0/x\" is not an http(s) URL (run-time variables are not available here)"]
        );
    }

    #[test]
    fn one_line_per_alert_with_a_header_for_groups() {
        let mut r = event(Status::Resolved);
        r.check = "a<b>".into();
        let t = Slack::text(&[event(Status::Firing), r]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "*2 alerts: 1 firing, 1 resolved*");
        assert!(lines[1]
            .starts_with(":red_circle: [FIRING] *LoginFailing* on `shop-login` (critical): "));
        assert!(lines[2].contains("on `a&lt;b&gt;`"));
        assert_eq!(Slack::text(&[event(Status::Firing)]).lines().count(), 1);
        let mut one = event(Status::Firing);
        one.summary = "custom: the login is broken".into();
        one.generator_url = "https://canary.example/a?b=1&c=<2>".into();
        one.annotations.insert(
            "runbook_url".into(),
            "https://runbooks.example/login".into(),
        );
        assert_eq!(
            Slack::text(&[one]),
            ":red_circle: [FIRING] *LoginFailing* on `shop-login` (critical): custom: the login \
             is broken — step \"submit\": expected status 302, got 200 \
             <https://canary.example/a?b=1&amp;c=&lt;2&gt;|check> <https://runbooks.example/login|runbook>"
        );
        let storm: Vec<_> = (0..100).map(|_| event(Status::Firing)).collect();
        let t = Slack::text(&storm);
        assert_eq!(
            t.lines().count(),
            1 + LINES + 1,
            "header, 20 alerts, the rest in one line"
        );
        assert!(t
            .lines()
            .last()
            .unwrap()
            .starts_with("…and 80 more: shop-login/LoginFailing, "));
    }
}
