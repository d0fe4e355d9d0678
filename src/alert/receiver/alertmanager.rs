//! Alertmanager API v2 (`POST <url>/api/v2/alerts`): a JSON array of alerts. Alertmanager
//! resolves an alert by itself once its `endsAt` passes, so a firing alert is sent with a lease
//! (`endsAt` = now + [`LEASE`]) and re-sent every [`REFRESH`] while it fires — as Prometheus
//! does; if canaryd dies, its alerts resolve when their lease runs out. A resolved alert is
//! sent with `endsAt` = when it resolved.

use std::time::{Duration, SystemTime};

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};
use serde_saphyr::Spanned;
use url::Url;

use super::{Notifier, Outgoing, ReceiverKind};
use crate::alert::{rfc3339, AlertEvent, Status};
use crate::config::ctx::{parse_url, Ctx};
use crate::config::schema;

/// Alertmanager receiver.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerDef {
    /// Base URL of Alertmanager.
    #[schemars(with = "String", extend("pattern" = schema::HTTP_URL, "patternErrorMessage" = "an http(s) URL"))]
    pub url: Spanned<String>,
}

/// An Alertmanager receiver, validated.
#[derive(Debug)]
pub struct AlertmanagerSettings {
    /// Base URL.
    pub url: Url,
}

/// How often a firing alert is re-sent.
pub const REFRESH: Duration = Duration::from_secs(60);
/// How long Alertmanager keeps a firing alert without news (4 refreshes, like Prometheus).
pub const LEASE: Duration = Duration::from_secs(240);

/// An Alertmanager receiver.
#[derive(Debug)]
pub struct Alertmanager {
    name: String,
    url: url::Url,
}

impl ReceiverKind for Alertmanager {
    type Def = AlertmanagerDef;
    type Settings = AlertmanagerSettings;

    /// The URL is http(s) (no secrets: Alertmanager's API takes none).
    fn validate(ctx: &mut Ctx, def: &AlertmanagerDef, key: &str) -> Option<AlertmanagerSettings> {
        parse_url(ctx, &def.url, &format!("{key}.url")).map(|url| AlertmanagerSettings { url })
    }

    /// The API path appended to the base URL.
    fn build(name: &str, settings: &AlertmanagerSettings) -> Result<Alertmanager, String> {
        let mut url = settings.url.clone();
        let path = format!("{}/api/v2/alerts", url.path().trim_end_matches('/'));
        url.set_path(&path);
        Ok(Alertmanager {
            name: name.to_string(),
            url,
        })
    }
}

impl Alertmanager {
    /// One alert of the API's `postableAlerts`.
    pub fn alert(e: &AlertEvent, now: SystemTime) -> Value {
        let ends = match (e.status, e.ends_at()) {
            (Status::Resolved, Some(t)) => t,
            (Status::Resolved, None) => now,
            (Status::Firing, _) => now + LEASE,
        };
        let mut annotations = e.annotations.clone();
        annotations
            .entry("summary".into())
            .or_insert_with(|| e.summary.clone());
        // Annotations are strings: `values` is the `name=value` list (`depth=7 processed_rate=0`).
        for (k, v) in [
            ("message", &e.message),
            ("reason", &e.reason),
            ("failed_step", &e.failed_step),
            ("value", &e.value),
            ("values", &e.value),
        ] {
            if let Some(v) = v {
                annotations.entry(k.into()).or_insert_with(|| v.clone());
            }
        }
        annotations
            .entry("check_url".into())
            .or_insert_with(|| e.check_url().to_string());
        json!({
            "labels": e.labels,
            "annotations": annotations,
            "startsAt": rfc3339(e.starts_at()),
            "endsAt": rfc3339(ends),
            "generatorURL": e.generator_url,
        })
    }
}

impl Notifier for Alertmanager {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "alertmanager"
    }

    fn max_batch(&self) -> usize {
        100
    }

    fn refresh_interval(&self) -> Option<Duration> {
        Some(REFRESH)
    }

    fn request(&self, batch: &[AlertEvent], now: SystemTime) -> Result<Outgoing, String> {
        let alerts: Vec<Value> = batch.iter().map(|e| Alertmanager::alert(e, now)).collect();
        Ok(Outgoing {
            method: http::Method::POST,
            url: self.url.clone(),
            headers: vec![(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            )],
            body: serde_json::to_vec(&alerts).map_err(|e| e.to_string())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::receiver::tests_support::event;
    use crate::alert::tests_support::validated;

    #[test]
    fn the_url_must_be_http() {
        let (settings, errors) =
            validated("url: \"127.0.0.1:9093\"\n", |ctx, def: &AlertmanagerDef| {
                Alertmanager::validate(ctx, def, "receivers[0].alertmanager")
            });
        assert!(settings.is_none());
        assert_eq!(
            errors,
            ["1:6: receivers[0].alertmanager.url: invalid URL \"127.0.0.1:9093\": relative URL without a base"]
        );
    }

    #[test]
    fn firing_gets_a_lease_and_resolved_its_end() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let f = Alertmanager::alert(&event(Status::Firing), now);
        assert_eq!(f["endsAt"], rfc3339(now + LEASE));
        assert_eq!(f["labels"]["alertname"], "LoginFailing");
        assert_eq!(f["annotations"]["failed_step"], "submit");
        assert_eq!(
            f["annotations"]["message"],
            "step \"submit\": expected status 302, got 200"
        );
        assert_eq!(
            f["generatorURL"],
            "http://127.0.0.1:9464/api/v1/checks/shop-login"
        );
        let mut values = event(Status::Firing);
        values.value = Some("depth=7 processed_rate=0".into());
        let v = Alertmanager::alert(&values, now);
        assert_eq!(v["annotations"]["values"], "depth=7 processed_rate=0");
        let mut r = event(Status::Resolved);
        r.ends_at_ms = Some(crate::alert::to_ms(now));
        assert_eq!(Alertmanager::alert(&r, now)["endsAt"], rfc3339(now));
    }

    #[test]
    fn url_gets_the_api_path() {
        let a = Alertmanager::build(
            "am",
            &AlertmanagerSettings {
                url: "http://127.0.0.1:9093/am/".parse().unwrap(),
            },
        )
        .unwrap();
        assert_eq!(a.url.as_str(), "http://127.0.0.1:9093/am/api/v2/alerts");
    }
}
