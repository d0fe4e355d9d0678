//! PagerDuty Events API v2 (`POST /v2/enqueue`): one event per request. Firing events (trigger,
//! reminder, escalation) are `trigger` actions with the alert's dedup key — PagerDuty folds a
//! repeated trigger into the open incident — and a resolve is a `resolve` with the same key.
//!
//! The routing key is a secret: it lives only in the request body.

use std::time::SystemTime;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use serde_saphyr::Spanned;
use url::Url;

use super::{Notifier, Outgoing, ReceiverKind};
use crate::alert::{rfc3339, AlertEvent, Status};
use crate::config::ctx::{no_variables, non_empty_secret, parse_url, Ctx};
use crate::config::schema::{self, Text};
use crate::config::template::{Secret, Template};

/// PagerDuty receiver.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyDef {
    /// Integration routing key (a secret).
    #[schemars(with = "Text")]
    pub routing_key: Spanned<String>,
    /// Events API URL override.
    #[schemars(with = "Option<String>", extend("pattern" = schema::HTTP_URL, "patternErrorMessage" = "an http(s) URL"))]
    pub url: Option<Spanned<String>>,
}

/// A PagerDuty receiver, validated.
#[derive(Debug)]
pub struct PagerDutySettings {
    /// Routing key (secret).
    pub routing_key: Template,
    /// Events API URL.
    pub url: Url,
}

/// Where events go unless `url` says otherwise.
pub const EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// PagerDuty caps `payload.summary` at 1024 characters.
pub const SUMMARY_MAX: usize = 1024;

/// A PagerDuty receiver.
#[derive(Debug)]
pub struct PagerDuty {
    name: String,
    routing_key: Secret,
    url: url::Url,
}

impl ReceiverKind for PagerDuty {
    type Def = PagerDutyDef;
    type Settings = PagerDutySettings;

    /// The routing key takes secrets only and must not be empty; the URL is http(s).
    fn validate(ctx: &mut Ctx, def: &PagerDutyDef, key: &str) -> Option<PagerDutySettings> {
        let rkey = format!("{key}.routing_key");
        let routing_key = ctx
            .template(&def.routing_key, &rkey)
            .filter(|t| no_variables(ctx, t, &def.routing_key, &rkey))
            .filter(|t| non_empty_secret(ctx, t, &def.routing_key, &rkey));
        let url = match &def.url {
            Some(u) => parse_url(ctx, u, &format!("{key}.url")),
            None => Url::parse(EVENTS_URL).ok(),
        };
        Some(PagerDutySettings {
            routing_key: routing_key?,
            url: url?,
        })
    }

    /// Renders the routing key.
    fn build(name: &str, settings: &PagerDutySettings) -> Result<PagerDuty, String> {
        let key = settings
            .routing_key
            .render(|_| None)
            .map_err(|u| format!("routing_key: unknown variable ${{{}}}", u.0))?;
        Ok(PagerDuty {
            name: name.to_string(),
            routing_key: Secret::new(key.trim()),
            url: settings.url.clone(),
        })
    }

    fn secrets(settings: &PagerDutySettings) -> Vec<&Template> {
        vec![&settings.routing_key]
    }
}

impl PagerDuty {
    /// The Events v2 body of one event.
    pub fn event_body(&self, e: &AlertEvent) -> Value {
        let action = match e.status {
            Status::Firing => "trigger",
            Status::Resolved => "resolve",
        };
        let mut body = json!({
            "routing_key": self.routing_key.expose(),
            "event_action": action,
            "dedup_key": e.dedup_key,
        });
        if e.status == Status::Firing {
            let mut details = Map::new();
            details.insert("check".into(), json!(e.check));
            details.insert("alert".into(), json!(e.alert));
            details.insert("event".into(), json!(e.kind.as_str()));
            // `step` is the name earlier versions sent; `failed_step` the one every receiver uses.
            for (k, v) in [
                ("message", &e.message),
                ("failed_step", &e.failed_step),
                ("step", &e.failed_step),
                ("reason", &e.reason),
                ("value", &e.value),
            ] {
                if let Some(v) = v {
                    details.insert(k.into(), json!(v));
                }
            }
            if !e.dependants_failing.is_empty() {
                details.insert("dependants_failing".into(), json!(e.dependants_failing));
            }
            if !e.values.is_empty() {
                details.insert("values".into(), json!(e.values));
            }
            details.insert("labels".into(), json!(e.labels));
            if let Some(runbook) = e.runbook_url() {
                details.insert("runbook_url".into(), json!(runbook));
            }
            details.insert("check_url".into(), json!(e.check_url()));
            if !e.annotations.is_empty() {
                details.insert("annotations".into(), json!(e.annotations));
            }
            let mut payload = json!({
                "summary": truncate(&e.summary, SUMMARY_MAX),
                "source": e.check,
                "severity": e.severity,
                "timestamp": rfc3339(e.starts_at()),
                "component": e.check,
                "class": e.alert,
                "custom_details": details,
            });
            if let Some(team) = e.labels.get("team") {
                payload["group"] = json!(team);
            }
            body["payload"] = payload;
            body["client"] = json!("canaryd");
            body["client_url"] = json!(e.check_url());
            // Events v2 `links`: shown on the incident (and in the notification) as clickable.
            // The runbook first (what to do), then the check (the evidence).
            let mut links = Vec::new();
            if let Some(runbook) = e.runbook_url() {
                links.push(json!({"href": runbook, "text": "Runbook"}));
            }
            links.push(json!({"href": e.check_url(), "text": format!("check {}", e.check)}));
            body["links"] = json!(links);
        }
        body
    }
}

/// At most `max` characters, ending in `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

impl Notifier for PagerDuty {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "pagerduty"
    }

    fn max_batch(&self) -> usize {
        1
    }

    fn request(&self, batch: &[AlertEvent], _now: SystemTime) -> Result<Outgoing, String> {
        let [event] = batch else {
            return Err(format!(
                "pagerduty sends one event per request, got {}",
                batch.len()
            ));
        };
        Ok(Outgoing {
            method: http::Method::POST,
            url: self.url.clone(),
            headers: vec![(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            )],
            body: serde_json::to_vec(&self.event_body(event)).map_err(|e| e.to_string())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::receiver::tests_support::event;
    use crate::alert::tests_support::validated;

    fn pd() -> PagerDuty {
        PagerDuty::build(
            "oncall",
            &PagerDutySettings {
                routing_key: Template::literal("R0UT1NGKEYR0UT1NGKEYR0UT1NGKEY32"),
                url: "http://127.0.0.1:1/v2/enqueue".parse().unwrap(),
            },
        )
        .unwrap()
    }

    #[test]
    fn the_routing_key_takes_a_non_empty_secret_and_the_url_is_http() {
        std::env::set_var("CANARYD_TEST_PD_EMPTY_KEY", "  ");
        let (settings, errors) = validated(
            "routing_key: \"${env:CANARYD_TEST_PD_EMPTY_KEY}\"\nurl: ftp://127.0.0.1/\n",
            |ctx, def: &PagerDutyDef| PagerDuty::validate(ctx, def, "receivers[0].pagerduty"),
        );
        assert!(settings.is_none());
        assert_eq!(
            errors,
            [
                "1:14: receivers[0].pagerduty.routing_key: ${env:CANARYD_TEST_PD_EMPTY_KEY} is empty: it must have a value",
                "2:6: receivers[0].pagerduty.url: unsupported URL \"ftp://127.0.0.1/\": only http and https",
            ]
        );
        let (_, errors) = validated("routing_key: \"${token}\"\n", |ctx, def: &PagerDutyDef| {
            PagerDuty::validate(ctx, def, "receivers[0].pagerduty")
        });
        assert_eq!(
            errors,
            ["1:14: receivers[0].pagerduty.routing_key: ${token}: this key takes secrets (${env:..}, ${file:..}) but no run-time variables"]
        );
        let (settings, errors) = validated("routing_key: k3y\n", |ctx, def: &PagerDutyDef| {
            PagerDuty::validate(ctx, def, "receivers[0].pagerduty")
        });
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(settings.unwrap().url.as_str(), EVENTS_URL);
    }

    #[test]
    fn trigger_carries_summary_severity_and_details() {
        let mut e = event(Status::Firing);
        e.summary = "x".repeat(2000);
        e.annotations
            .insert("runbook_url".into(), "https://runbooks/login".into());
        let b = pd().event_body(&e);
        assert_eq!(b["event_action"], "trigger");
        assert_eq!(b["dedup_key"], e.dedup_key);
        assert_eq!(b["payload"]["severity"], "critical");
        assert_eq!(
            b["payload"]["summary"].as_str().unwrap().chars().count(),
            1024
        );
        assert_eq!(b["payload"]["custom_details"]["step"], "submit");
        assert_eq!(b["payload"]["custom_details"]["reason"], "status");
        assert_eq!(b["payload"]["group"], "web");
        assert_eq!(b["links"][0]["href"], "https://runbooks/login");
        assert_eq!(b["links"][1]["href"], e.generator_url);
        assert_eq!(b["links"][1]["text"], "check shop-login");
        let d = &b["payload"]["custom_details"];
        assert_eq!(
            d["message"],
            "step \"submit\": expected status 302, got 200"
        );
        assert_eq!(d["failed_step"], "submit");
        assert_eq!(d["runbook_url"], "https://runbooks/login");
        assert_eq!(d["labels"]["team"], "web");
        assert_eq!(d["check_url"], e.generator_url);
        assert!(d.get("values").is_none(), "no variables, no values");
        e.values.insert("depth".into(), "7".into());
        let b = pd().event_body(&e);
        assert_eq!(b["payload"]["custom_details"]["values"]["depth"], "7");
    }

    #[test]
    fn resolve_is_key_only_and_debug_hides_the_routing_key() {
        let p = pd();
        let b = p.event_body(&event(Status::Resolved));
        assert_eq!(b["event_action"], "resolve");
        assert!(b.get("payload").is_none());
        let req = p
            .request(&[event(Status::Resolved)], SystemTime::now())
            .unwrap();
        assert!(!format!("{p:?} {req:?}").contains("R0UT1NGKEY"));
    }
}
