//! The status page as Statuspage's public API v2 JSON, so widgets, dashboards and bots written
//! for Statuspage read canaryd's page unchanged: `summary.json`, `status.json`,
//! `components.json`, `incidents.json`, `incidents/unresolved.json` and the three
//! `scheduled-maintenances` lists (always empty: canaryd has no scheduled maintenance on its
//! public page).
//!
//! Field names, types and enums are Statuspage's: ids are strings (a component's is its slug, an
//! incident's and an update's their number), times RFC 3339 in UTC with milliseconds
//! (`2026-12-04T13:00:00.000Z`), `page.time_zone` `Etc/UTC`.

use std::time::SystemTime;

use serde_json::{json, Value};

use super::feed::page_url;
use super::html::utc;
use super::model::{slug, ComponentView, Incident, IncidentState, Snapshot};

/// `2026-12-04T13:00:00.000Z`.
pub fn time(t: SystemTime) -> String {
    utc(t).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn opt_time(t: Option<SystemTime>) -> Value {
    t.map(|t| Value::String(time(t))).unwrap_or(Value::Null)
}

/// The page's id: its title's slug.
fn page_id(snap: &Snapshot) -> String {
    slug(&snap.title)
}

fn page(snap: &Snapshot) -> Value {
    json!({
        "id": page_id(snap),
        "name": snap.title,
        "url": snap.public_url,
        "time_zone": "Etc/UTC",
        "updated_at": time(snap.generated),
    })
}

fn status(snap: &Snapshot) -> Value {
    json!({
        "indicator": snap.indicator().as_str(),
        "description": snap.description_of_status(),
    })
}

fn component(snap: &Snapshot, position: usize, c: &ComponentView) -> Value {
    // The first day with data: when the component started being watched.
    let first = c
        .days
        .iter()
        .find(|d| d.observed_ms > 0)
        .and_then(|d| d.date);
    let created = first
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| SystemTime::from(d.and_utc()))
        .map(|t| t.min(c.since))
        .unwrap_or(c.since);
    json!({
        "id": c.id,
        "name": c.name,
        "status": c.status.as_str(),
        "created_at": time(created),
        "updated_at": time(c.since),
        "position": position + 1,
        "description": c.description,
        "showcase": true,
        "start_date": first.map(|d| d.format("%Y-%m-%d").to_string()),
        "group_id": null,
        "page_id": page_id(snap),
        "group": false,
        "only_show_if_degraded": false,
    })
}

fn components(snap: &Snapshot) -> Value {
    Value::Array(
        snap.components
            .iter()
            .enumerate()
            .map(|(n, c)| component(snap, n, c))
            .collect(),
    )
}

fn incident(snap: &Snapshot, i: &Incident) -> Value {
    let id = i.id.to_string();
    // When the incident first went to monitoring (updates are newest first).
    let monitoring_at = i
        .updates
        .iter()
        .rev()
        .find(|u| u.state == IncidentState::Monitoring)
        .map(|u| u.at);
    let affected: Vec<Value> = i
        .components
        .iter()
        .filter_map(|name| {
            snap.components
                .iter()
                .position(|c| &c.name == name)
                .map(|n| component(snap, n, &snap.components[n]))
        })
        .collect();
    let updates: Vec<Value> = i
        .updates
        .iter()
        .map(|u| {
            json!({
                "id": u.id.to_string(),
                "status": u.state.as_str(),
                "body": u.body,
                "incident_id": id,
                "created_at": time(u.at),
                "updated_at": time(u.at),
                "display_at": time(u.at),
                "affected_components": null,
                "deliver_notifications": false,
                "custom_tweet": null,
                "tweet_id": null,
            })
        })
        .collect();
    json!({
        "id": id,
        "name": i.title,
        "status": i.state.as_str(),
        "created_at": time(i.created),
        "updated_at": time(i.updated),
        "monitoring_at": opt_time(monitoring_at),
        "resolved_at": opt_time(i.resolved),
        "impact": i.impact.as_str(),
        "shortlink": snap.public_url.as_ref().map(|_| page_url(snap, &format!("/incidents/{}", i.id))),
        "started_at": time(i.created),
        "page_id": page_id(snap),
        "incident_updates": updates,
        "components": affected,
    })
}

fn incidents<'a>(snap: &Snapshot, list: impl Iterator<Item = &'a Incident>) -> Value {
    Value::Array(list.map(|i| incident(snap, i)).collect())
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("a JSON value serializes")
}

/// `/api/v2/summary.json`: page, status, components, unresolved incidents, maintenances.
pub fn summary(snap: &Snapshot) -> Vec<u8> {
    bytes(&json!({
        "page": page(snap),
        "status": status(snap),
        "components": components(snap),
        "incidents": incidents(snap, snap.open.iter()),
        "scheduled_maintenances": [],
    }))
}

/// `/api/v2/status.json`: page and status.
pub fn status_json(snap: &Snapshot) -> Vec<u8> {
    bytes(&json!({ "page": page(snap), "status": status(snap) }))
}

/// `/api/v2/components.json`.
pub fn components_json(snap: &Snapshot) -> Vec<u8> {
    bytes(&json!({ "page": page(snap), "components": components(snap) }))
}

/// `/api/v2/incidents.json`: every incident the page knows (open and past), newest first.
pub fn incidents_json(snap: &Snapshot) -> Vec<u8> {
    let mut all: Vec<&Incident> = snap.open.iter().chain(&snap.past).collect();
    all.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
    bytes(&json!({ "page": page(snap), "incidents": incidents(snap, all.into_iter()) }))
}

/// `/api/v2/incidents/unresolved.json`.
pub fn unresolved_json(snap: &Snapshot) -> Vec<u8> {
    bytes(&json!({ "page": page(snap), "incidents": incidents(snap, snap.open.iter()) }))
}

/// `/api/v2/scheduled-maintenances.json` and its `upcoming` and `active` lists: empty.
pub fn maintenances_json(snap: &Snapshot) -> Vec<u8> {
    bytes(&json!({ "page": page(snap), "scheduled_maintenances": [] }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::html::tests::evil_snapshot;

    fn keys(v: &Value) -> Vec<&str> {
        let mut k: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        k.sort_unstable();
        k
    }

    #[test]
    fn summary_has_statuspage_fields() {
        let snap = evil_snapshot();
        let v: Value = serde_json::from_slice(&summary(&snap)).unwrap();
        assert_eq!(
            keys(&v),
            [
                "components",
                "incidents",
                "page",
                "scheduled_maintenances",
                "status"
            ]
        );
        assert_eq!(
            keys(&v["page"]),
            ["id", "name", "time_zone", "updated_at", "url"]
        );
        assert_eq!(v["page"]["updated_at"], "2026-12-04T02:01:40.000Z");
        assert_eq!(v["page"]["url"], "https://status.example.com");
        assert_eq!(v["status"]["indicator"], "major");
        assert_eq!(v["status"]["description"], "Partial System Outage");
        let c = &v["components"][0];
        assert_eq!(
            keys(c),
            [
                "created_at",
                "description",
                "group",
                "group_id",
                "id",
                "name",
                "only_show_if_degraded",
                "page_id",
                "position",
                "showcase",
                "start_date",
                "status",
                "updated_at"
            ]
        );
        assert_eq!(c["status"], "partial_outage");
        assert_eq!(c["start_date"], "2026-09-16");
        assert_eq!(c["created_at"], "2026-09-16T00:00:00.000Z");
        assert_eq!(c["position"], 1);
        let i = &v["incidents"][0];
        assert_eq!(
            keys(i),
            [
                "components",
                "created_at",
                "id",
                "impact",
                "incident_updates",
                "monitoring_at",
                "name",
                "page_id",
                "resolved_at",
                "shortlink",
                "started_at",
                "status",
                "updated_at"
            ]
        );
        assert_eq!(i["id"], "1");
        assert_eq!(i["status"], "identified");
        assert_eq!(i["resolved_at"], Value::Null);
        assert_eq!(i["shortlink"], "https://status.example.com/incidents/1");
        assert_eq!(i["components"][0]["id"], c["id"]);
        let u = &i["incident_updates"][0];
        assert_eq!(u["incident_id"], "1");
        assert_eq!(u["status"], "identified");
        assert_eq!(u["display_at"], "2026-12-04T02:00:00.000Z");
        assert_eq!(v["scheduled_maintenances"], json!([]));
    }

    #[test]
    fn planted_text_stays_text_in_json() {
        let snap = evil_snapshot();
        let v: Value = serde_json::from_slice(&summary(&snap)).unwrap();
        assert_eq!(
            v["incidents"][0]["incident_updates"][0]["body"],
            "line one <script>alert(1)</script>\"'&\nline two"
        );
        assert_eq!(
            v["components"][0]["name"],
            "Sign-in <script>alert(1)</script>\"'&"
        );
        let raw = String::from_utf8(summary(&snap)).unwrap();
        assert!(raw.contains(r#"<script>alert(1)</script>\"'&"#));
    }

    #[test]
    fn the_other_lists() {
        let snap = evil_snapshot();
        let all: Value = serde_json::from_slice(&incidents_json(&snap)).unwrap();
        assert_eq!(all["incidents"].as_array().unwrap().len(), 2);
        assert_eq!(
            all["incidents"][0]["resolved_at"],
            "2026-12-04T02:00:00.000Z"
        );
        let open: Value = serde_json::from_slice(&unresolved_json(&snap)).unwrap();
        assert_eq!(open["incidents"].as_array().unwrap().len(), 1);
        let s: Value = serde_json::from_slice(&status_json(&snap)).unwrap();
        assert_eq!(keys(&s), ["page", "status"]);
        let m: Value = serde_json::from_slice(&maintenances_json(&snap)).unwrap();
        assert_eq!(m["scheduled_maintenances"], json!([]));
        let c: Value = serde_json::from_slice(&components_json(&snap)).unwrap();
        assert_eq!(c["components"].as_array().unwrap().len(), 1);
    }
}
