//! The incident API's bodies (`/api/v1/incidents` on the main listener): what a request may
//! hold, parsed strictly, and an incident as JSON. The handlers live with the API's other
//! routes.

use serde::Deserialize;
use serde_json::{json, Value};

use super::model::{Impact, Incident, IncidentState};
use super::page::NewIncident;
use crate::alert::rfc3339;

/// `POST /api/v1/incidents`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewIncidentBody {
    title: String,
    message: String,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    impact: Option<String>,
    #[serde(default)]
    components: Vec<String>,
}

/// `POST /api/v1/incidents/<id>/updates`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    state: String,
    message: String,
}

fn state_of(s: &str) -> Result<IncidentState, String> {
    IncidentState::parse(s).ok_or_else(|| {
        format!(
            "state: {:?} is not one of investigating, identified, monitoring, resolved",
            crate::config::ctx::excerpt(s, 40)
        )
    })
}

/// Parses a new incident (default state investigating, impact minor).
pub fn parse_new(body: &[u8]) -> Result<NewIncident, String> {
    let b: NewIncidentBody =
        serde_json::from_slice(body).map_err(|e| format!("invalid incident: {e}"))?;
    if b.components.len() > super::def::MAX_COMPONENTS {
        return Err(format!(
            "components: at most {} are allowed",
            super::def::MAX_COMPONENTS
        ));
    }
    Ok(NewIncident {
        title: b.title,
        body: b.message,
        state: match b.state.as_deref() {
            None => IncidentState::Investigating,
            Some(s) => state_of(s)?,
        },
        impact: match b.impact.as_deref() {
            None => Impact::Minor,
            Some(s) => Impact::parse(s).ok_or_else(|| {
                format!(
                    "impact: {:?} is not one of none, minor, major, critical",
                    crate::config::ctx::excerpt(s, 40)
                )
            })?,
        },
        components: b.components,
    })
}

/// Parses an update: its state and text.
pub fn parse_update(body: &[u8]) -> Result<(IncidentState, String), String> {
    let b: UpdateBody = serde_json::from_slice(body).map_err(|e| format!("invalid update: {e}"))?;
    Ok((state_of(&b.state)?, b.message))
}

/// An incident as the API shows it.
pub fn incident_json(i: &Incident) -> Value {
    json!({
        "id": i.id,
        "title": i.title,
        "state": i.state.as_str(),
        "impact": i.impact.as_str(),
        "components": i.components,
        "automatic": i.automatic,
        "created_at": rfc3339(i.created),
        "updated_at": rfc3339(i.updated),
        "resolved_at": i.resolved.map(rfc3339),
        "updates": i.updates.iter().map(|u| json!({
            "id": u.id,
            "state": u.state.as_str(),
            "message": u.body,
            "at": rfc3339(u.at),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_parsed_strictly() {
        let n = parse_new(br#"{"title":"Login slow","message":"Looking","components":["Login"]}"#)
            .unwrap();
        assert_eq!(n.state, IncidentState::Investigating);
        assert_eq!(n.impact, Impact::Minor);
        assert!(parse_new(br#"{"title":"x","message":"y","colour":"red"}"#)
            .unwrap_err()
            .contains("unknown field"));
        assert!(
            parse_new(br#"{"title":"x","message":"y","state":"panicking"}"#)
                .unwrap_err()
                .contains("investigating, identified")
        );
        assert!(parse_update(br#"{"state":"resolved"}"#)
            .unwrap_err()
            .contains("message"));
        assert_eq!(
            parse_update(br#"{"state":"monitoring","message":"fix out"}"#).unwrap(),
            (IncidentState::Monitoring, "fix out".into())
        );
    }
}
