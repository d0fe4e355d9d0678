//! Alertmanager API v2 (`POST <url>/api/v2/alerts`): a JSON array of alerts. Alertmanager
//! resolves an alert by itself once its `endsAt` passes, so a firing alert is sent with a lease
//! (`endsAt` = now + [`LEASE`]) and re-sent every [`REFRESH`] while it fires — as Prometheus
//! does; if canaryd dies, its alerts resolve when their lease runs out. A resolved alert is
//! sent with `endsAt` = when it resolved.

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use super::{Notifier, Outgoing};
use crate::alert::{rfc3339, AlertEvent, Status};
use crate::config::{Receiver, ReceiverKind};

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

impl Alertmanager {
    /// From configuration.
    pub fn new(receiver: &Receiver) -> Result<Alertmanager, String> {
        let ReceiverKind::Alertmanager { url } = &receiver.kind else {
            return Err("not an alertmanager receiver".into());
        };
        let mut url = url.clone();
        let path = format!("{}/api/v2/alerts", url.path().trim_end_matches('/'));
        url.set_path(&path);
        Ok(Alertmanager {
            name: receiver.name.clone(),
            url,
        })
    }

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
        for (k, v) in [
            ("reason", &e.reason),
            ("failed_step", &e.failed_step),
            ("value", &e.value),
        ] {
            if let Some(v) = v {
                annotations.entry(k.into()).or_insert_with(|| v.clone());
            }
        }
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

    #[test]
    fn firing_gets_a_lease_and_resolved_its_end() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let f = Alertmanager::alert(&event(Status::Firing), now);
        assert_eq!(f["endsAt"], rfc3339(now + LEASE));
        assert_eq!(f["labels"]["alertname"], "LoginFailing");
        assert_eq!(f["annotations"]["failed_step"], "submit");
        let mut r = event(Status::Resolved);
        r.ends_at_ms = Some(crate::alert::to_ms(now));
        assert_eq!(Alertmanager::alert(&r, now)["endsAt"], rfc3339(now));
    }

    #[test]
    fn url_gets_the_api_path() {
        let a = Alertmanager::new(&Receiver {
            name: "am".into(),
            kind: ReceiverKind::Alertmanager {
                url: "http://127.0.0.1:9093/am/".parse().unwrap(),
            },
        })
        .unwrap();
        assert_eq!(a.url.as_str(), "http://127.0.0.1:9093/am/api/v2/alerts");
    }
}
