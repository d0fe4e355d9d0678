//! Opsgenie Alert API (`/v2/alerts`): one event per request. Firing events (trigger, reminder,
//! escalation) create an alert whose `alias` is the alert's dedup key — Opsgenie folds a create
//! for an open alias into the open alert (its count goes up) instead of paging again — and a
//! resolve closes the alert by that alias (`POST /v2/alerts/{alias}/close?identifierType=alias`).
//! Both answer 202 Accepted; 429 and 5xx are retried, other 4xx (bad key, unprocessable body)
//! are final. The priority comes from the rule's severity.
//!
//! The API key is a secret: it lives only in the `Authorization: GenieKey …` header.

use std::time::SystemTime;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use serde_saphyr::Spanned;
use url::Url;

use super::pagerduty::truncate;
use super::{Notifier, Outgoing, ReceiverKind};
use crate::alert::{rfc3339, AlertEvent, Status};
use crate::config::ctx::{no_variables, non_empty_secret, parse_url, Ctx};
use crate::config::schema::{self, Text};
use crate::config::template::{Secret, Template};

/// Opsgenie receiver.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpsgenieDef {
    /// API key of an Opsgenie "API" integration (a secret), sent as `Authorization: GenieKey <key>`.
    #[schemars(with = "Text")]
    pub api_key: Spanned<String>,
    /// API base URL: `https://api.opsgenie.com` (the default) or `https://api.eu.opsgenie.com`
    /// for accounts in the EU region (a URL ending in `/v2/alerts` is taken as its base).
    #[schemars(with = "Option<String>", extend("pattern" = schema::HTTP_URL, "patternErrorMessage" = "an http(s) URL"))]
    pub url: Option<Spanned<String>>,
}

/// An Opsgenie receiver, validated.
#[derive(Debug)]
pub struct OpsgenieSettings {
    /// API key (secret).
    pub api_key: Template,
    /// API base URL (`/v2/alerts` is appended).
    pub url: Url,
}

/// Where alerts go unless `url` says otherwise (US region).
pub const API_URL: &str = "https://api.opsgenie.com";

/// Opsgenie's documented field limits, in characters: longer values must be cut by the sender.
pub const MESSAGE_MAX: usize = 130;
/// Alias limit (our alias is the 40-character dedup key, always within it).
pub const ALIAS_MAX: usize = 512;
/// Description limit.
pub const DESCRIPTION_MAX: usize = 15_000;
/// At most this many tags, each at most [`TAG_MAX`] characters.
pub const TAGS_MAX: usize = 20;
/// Tag length limit.
pub const TAG_MAX: usize = 50;
/// Entity limit.
pub const ENTITY_MAX: usize = 512;
/// Total characters of `details` (keys and values) Opsgenie accepts.
pub const DETAILS_MAX: usize = 8_000;

/// An Opsgenie receiver.
#[derive(Debug)]
pub struct Opsgenie {
    name: String,
    api_key: Secret,
    url: Url,
}

impl ReceiverKind for Opsgenie {
    type Def = OpsgenieDef;
    type Settings = OpsgenieSettings;

    /// The API key takes secrets only and must not be empty; the URL is http(s).
    fn validate(ctx: &mut Ctx, def: &OpsgenieDef, key: &str) -> Option<OpsgenieSettings> {
        let akey = format!("{key}.api_key");
        let api_key = ctx
            .template(&def.api_key, &akey)
            .filter(|t| no_variables(ctx, t, &def.api_key, &akey))
            .filter(|t| non_empty_secret(ctx, t, &def.api_key, &akey));
        let url = match &def.url {
            Some(u) => parse_url(ctx, u, &format!("{key}.url")),
            None => Url::parse(API_URL).ok(),
        };
        Some(OpsgenieSettings {
            api_key: api_key?,
            url: url?,
        })
    }

    /// Renders the API key; it must be usable in a header.
    fn build(name: &str, settings: &OpsgenieSettings) -> Result<Opsgenie, String> {
        let key = settings
            .api_key
            .render(|_| None)
            .map_err(|u| format!("api_key: unknown variable ${{{}}}", u.0))?;
        let key = key.trim();
        if http::HeaderValue::from_str(&format!("GenieKey {key}")).is_err() {
            return Err("api_key: not usable in an HTTP header (control characters?)".into());
        }
        Ok(Opsgenie {
            name: name.to_string(),
            api_key: Secret::new(key),
            url: settings.url.clone(),
        })
    }

    fn secrets(settings: &OpsgenieSettings) -> Vec<&Template> {
        vec![&settings.api_key]
    }
}

/// Opsgenie's priority for a canaryd severity: critical P1, error P2, warning P3, info P5.
pub fn priority(severity: &str) -> &'static str {
    match severity {
        "critical" => "P1",
        "error" => "P2",
        "info" => "P5",
        _ => "P3",
    }
}

impl Opsgenie {
    /// `<base>/v2/alerts` or `<base>/v2/alerts/<alias>/close?identifierType=alias`.
    pub fn endpoint(&self, e: &AlertEvent) -> Url {
        let mut url = self.url.clone();
        // A `url` written as the create endpoint (`…/v2/alerts`) is taken as its base.
        let written_as_endpoint = url.path().trim_end_matches('/').ends_with("/v2/alerts");
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.pop_if_empty();
            if !written_as_endpoint {
                segs.extend(["v2", "alerts"]);
            }
            if e.status == Status::Resolved {
                segs.extend([e.dedup_key.as_str(), "close"]);
            }
        }
        if e.status == Status::Resolved {
            url.set_query(Some("identifierType=alias"));
        }
        url
    }

    /// The JSON body: a create for a firing event, a close for a resolve.
    pub fn body(&self, e: &AlertEvent) -> Value {
        if e.status == Status::Resolved {
            return json!({
                "source": "canaryd",
                "user": "canaryd",
                "note": truncate(
                    &match e.lasted() {
                        Some(d) => format!(
                            "Resolved after {}: {}",
                            crate::probe::http::short_duration(d),
                            e.summary
                        ),
                        None => format!("Resolved: {}", e.summary),
                    },
                    DESCRIPTION_MAX
                ),
            });
        }
        let mut details = Map::new();
        let mut room = DETAILS_MAX;
        let mut put = |k: &str, v: &str| {
            // Values are strings (Opsgenie's details are a string map), cut to the room left.
            let cost = k.chars().count() + v.chars().count();
            if cost <= room {
                room -= cost;
                details.insert(k.into(), json!(v));
            } else if room > k.chars().count() + 1 {
                let v = truncate(v, room - k.chars().count());
                room = 0;
                details.insert(k.into(), json!(v));
            }
        };
        put("check", &e.check);
        put("alert", &e.alert);
        put("event", e.kind.as_str());
        put("severity", &e.severity);
        for (k, v) in [
            ("failed_step", &e.failed_step),
            ("reason", &e.reason),
            ("message", &e.message),
            ("value", &e.value),
        ] {
            if let Some(v) = v {
                put(k, v);
            }
        }
        if let Some(d) = e.dependants() {
            put("dependants_failing", &d);
        }
        put("check_url", e.check_url());
        put("starts_at", &rfc3339(e.starts_at()));
        for (k, v) in &e.annotations {
            put(&format!("annotation.{k}"), v);
        }
        for (k, v) in &e.labels {
            put(&format!("label.{k}"), v);
        }
        let mut tags = vec![
            "canaryd".to_string(),
            truncate(&format!("severity:{}", e.severity), TAG_MAX),
            truncate(&format!("check:{}", e.check), TAG_MAX),
        ];
        if let Some(team) = e.labels.get("team") {
            tags.push(truncate(&format!("team:{team}"), TAG_MAX));
        }
        tags.truncate(TAGS_MAX);
        // Opsgenie refuses a blank message (an annotation may render to nothing).
        let message = if e.summary.trim().is_empty() {
            format!("{} {}", e.check, e.alert)
        } else {
            e.summary.clone()
        };
        json!({
            "message": truncate(&message, MESSAGE_MAX),
            "alias": truncate(&e.dedup_key, ALIAS_MAX),
            "description": truncate(&description(e), DESCRIPTION_MAX),
            "priority": priority(&e.severity),
            "source": "canaryd",
            "entity": truncate(&e.check, ENTITY_MAX),
            "tags": tags,
            "details": details,
        })
    }
}

/// The full text of a firing event (the message is cut at 130 characters; this is not).
fn description(e: &AlertEvent) -> String {
    let mut out = format!("{}\n\ncheck: {}\nalert: {}\n", e.summary, e.check, e.alert);
    for (k, v) in [
        ("failed step", &e.failed_step),
        ("reason", &e.reason),
        ("value", &e.value),
    ] {
        if let Some(v) = v {
            out.push_str(&format!("{k}: {v}\n"));
        }
    }
    if let Some(runbook) = e.annotations.get("runbook_url") {
        out.push_str(&format!("runbook: {runbook}\n"));
    }
    out.push_str(&format!("check status: {}\n", e.generator_url));
    out
}

impl Notifier for Opsgenie {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "opsgenie"
    }

    fn max_batch(&self) -> usize {
        1
    }

    fn request(&self, batch: &[AlertEvent], _now: SystemTime) -> Result<Outgoing, String> {
        let [event] = batch else {
            return Err(format!(
                "opsgenie sends one event per request, got {}",
                batch.len()
            ));
        };
        let auth = http::HeaderValue::from_str(&format!("GenieKey {}", self.api_key.expose()))
            .map_err(|_| "api_key: not usable in an HTTP header".to_string())?;
        Ok(Outgoing {
            method: http::Method::POST,
            url: self.endpoint(event),
            headers: vec![
                (
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                ),
                (http::header::AUTHORIZATION, auth),
            ],
            body: serde_json::to_vec(&self.body(event)).map_err(|e| e.to_string())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::receiver::tests_support::event;
    use crate::alert::tests_support::validated;

    fn og(url: &str) -> Opsgenie {
        Opsgenie::build(
            "ops",
            &OpsgenieSettings {
                api_key: Template::literal("0penS3same-key"),
                url: url.parse().unwrap(),
            },
        )
        .unwrap()
    }

    #[test]
    fn the_api_key_takes_a_non_empty_secret_and_the_url_defaults_to_the_us_api() {
        std::env::set_var("CANARYD_TEST_OG_EMPTY_KEY", "");
        let (settings, errors) = validated(
            "api_key: \"${env:CANARYD_TEST_OG_EMPTY_KEY}\"\nurl: ftp://127.0.0.1/\n",
            |ctx, def: &OpsgenieDef| Opsgenie::validate(ctx, def, "receivers[0].opsgenie"),
        );
        assert!(settings.is_none());
        assert_eq!(
            errors,
            [
                "1:10: receivers[0].opsgenie.api_key: ${env:CANARYD_TEST_OG_EMPTY_KEY} is empty: it must have a value",
                "2:6: receivers[0].opsgenie.url: unsupported URL \"ftp://127.0.0.1/\": only http and https",
            ]
        );
        let (settings, errors) = validated("api_key: k3y\n", |ctx, def: &OpsgenieDef| {
            Opsgenie::validate(ctx, def, "receivers[0].opsgenie")
        });
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(settings.unwrap().url.as_str(), "https://api.opsgenie.com/");
    }

    #[test]
    fn a_trigger_creates_with_the_dedup_key_as_alias_and_a_resolve_closes_it() {
        let written_as_endpoint = og("https://api.eu.opsgenie.com/v2/alerts/");
        assert_eq!(
            written_as_endpoint
                .endpoint(&event(Status::Firing))
                .as_str(),
            "https://api.eu.opsgenie.com/v2/alerts"
        );
        let o = og("https://api.eu.opsgenie.com");
        let mut e = event(Status::Firing);
        e.summary = "y".repeat(400);
        let req = o
            .request(std::slice::from_ref(&e), SystemTime::now())
            .unwrap();
        assert_eq!(req.url.as_str(), "https://api.eu.opsgenie.com/v2/alerts");
        let auth = req
            .headers
            .iter()
            .find(|(k, _)| k == http::header::AUTHORIZATION)
            .unwrap();
        assert_eq!(auth.1, "GenieKey 0penS3same-key");
        let b: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(b["alias"], e.dedup_key);
        assert_eq!(b["priority"], "P1");
        assert_eq!(b["message"].as_str().unwrap().chars().count(), MESSAGE_MAX);
        assert!(b["description"].as_str().unwrap().contains(&e.summary));
        assert_eq!(b["details"]["failed_step"], "submit");
        assert_eq!(b["details"]["label.team"], "web");

        let r = event(Status::Resolved);
        let req = o
            .request(std::slice::from_ref(&r), SystemTime::now())
            .unwrap();
        assert_eq!(
            req.url.as_str(),
            format!(
                "https://api.eu.opsgenie.com/v2/alerts/{}/close?identifierType=alias",
                r.dedup_key
            )
        );
        assert!(!format!("{o:?} {req:?}").contains("0penS3same"));
    }

    #[test]
    fn severities_map_to_priorities() {
        assert_eq!(
            ["critical", "error", "warning", "info"].map(priority),
            ["P1", "P2", "P3", "P5"]
        );
    }

    #[test]
    fn details_stay_within_8000_characters_however_many_labels() {
        let o = og("http://127.0.0.1:1/");
        let mut e = event(Status::Firing);
        for i in 0..200 {
            e.labels.insert(format!("l{i:03}"), "v".repeat(100));
        }
        let b = o.body(&e);
        let total: usize = b["details"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| k.chars().count() + v.as_str().unwrap().chars().count())
            .sum();
        assert!(total <= DETAILS_MAX, "{total}");
        assert_eq!(b["details"]["check"], "shop-login");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, ..Default::default() })]

        /// Whatever the summary, labels and annotations, a create stays within every limit
        /// Opsgenie documents (so it is never refused for its size).
        #[test]
        fn a_create_is_within_opsgenie_limits_whatever_the_event(
            summary in "\\PC{0,300}",
            labels in proptest::collection::btree_map("[a-z_]{1,80}", "\\PC{0,400}", 0..40),
            annotations in proptest::collection::btree_map("[a-z_]{1,20}", "\\PC{0,2000}", 0..10),
            team in proptest::option::of("\\PC{0,80}"),
        ) {
            let mut e = event(Status::Firing);
            e.summary = summary;
            e.labels.extend(labels);
            if let Some(t) = team {
                e.labels.insert("team".into(), t);
            }
            e.annotations = annotations;
            let b = og("http://127.0.0.1:1/").body(&e);
            let len = |v: &Value| v.as_str().unwrap().chars().count();
            let message = b["message"].as_str().unwrap();
            proptest::prop_assert!(!message.trim().is_empty());
            proptest::prop_assert!(len(&b["message"]) <= MESSAGE_MAX);
            proptest::prop_assert!(len(&b["alias"]) <= ALIAS_MAX);
            proptest::prop_assert!(len(&b["description"]) <= DESCRIPTION_MAX);
            proptest::prop_assert!(len(&b["entity"]) <= ENTITY_MAX);
            let tags = b["tags"].as_array().unwrap();
            proptest::prop_assert!(tags.len() <= TAGS_MAX);
            proptest::prop_assert!(tags.iter().all(|t| len(t) <= TAG_MAX));
            let details: usize = b["details"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| k.chars().count() + len(v))
                .sum();
            proptest::prop_assert!(details <= DETAILS_MAX, "{}", details);
        }
    }
}
