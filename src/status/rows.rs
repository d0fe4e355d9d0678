//! The status page's rows in the state store: incidents and their updates
//! (`status_incidents`, `status_incident_updates`) and each component's daily time per status
//! (`status_days`). Times are Unix milliseconds; a day is a number of days since 1970-01-01 UTC.
//! These functions run on the store thread.

use rusqlite::{params, Connection};

use super::model::{Day, Impact, Incident, IncidentState, IncidentUpdate};
use crate::alert::{from_ms, to_ms};

/// An incident row with the component whose automatic incident it is.
#[derive(Debug, Clone)]
pub struct IncidentRow {
    /// The incident.
    pub incident: Incident,
    /// The component that opened it automatically.
    pub auto_component: Option<String>,
}

/// Loads incidents created at or after `since_ms`, or still open, with their updates (newest
/// first). Rows that do not read back (an unknown state or impact) are skipped.
pub fn load_incidents(conn: &mut Connection, since_ms: i64) -> rusqlite::Result<Vec<IncidentRow>> {
    let mut stmt = conn.prepare(
        "SELECT id, title, impact, state, components_json, auto_component, created_ms, updated_ms,
                resolved_ms
         FROM status_incidents WHERE resolved_ms IS NULL OR created_ms >= ?1 ORDER BY id",
    )?;
    let rows = stmt
        .query_map(params![since_ms], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, Option<i64>>(8)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut out = Vec::new();
    let mut updates = conn.prepare(
        "SELECT id, state, body, at_ms FROM status_incident_updates
         WHERE incident_id = ?1 ORDER BY id DESC",
    )?;
    for (id, title, impact, state, components, auto, created, updated, resolved) in rows {
        let (Some(impact), Some(state)) = (Impact::parse(&impact), IncidentState::parse(&state))
        else {
            continue;
        };
        let components: Vec<String> = serde_json::from_str(&components).unwrap_or_default();
        let ups = updates
            .query_map(params![id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?
            .into_iter()
            .filter_map(|(id, state, body, at)| {
                Some(IncidentUpdate {
                    id,
                    state: IncidentState::parse(&state)?,
                    body,
                    at: from_ms(at),
                })
            })
            .collect::<Vec<_>>();
        if ups.is_empty() {
            continue;
        }
        out.push(IncidentRow {
            incident: Incident {
                id,
                title,
                impact,
                state,
                components,
                created: from_ms(created),
                updated: from_ms(updated),
                resolved: resolved.map(from_ms),
                automatic: auto.is_some(),
                updates: ups,
            },
            auto_component: auto,
        });
    }
    Ok(out)
}

/// The largest incident id and update id ever written (new ones count on from there).
pub fn max_ids(conn: &mut Connection) -> rusqlite::Result<(i64, i64)> {
    let i = conn.query_row(
        "SELECT COALESCE(MAX(id), 0) FROM status_incidents",
        [],
        |r| r.get(0),
    )?;
    let u = conn.query_row(
        "SELECT COALESCE(MAX(id), 0) FROM status_incident_updates",
        [],
        |r| r.get(0),
    )?;
    Ok((i, u))
}

/// Writes an incident (insert or replace) with its newest update, in one transaction.
pub fn save_incident(
    conn: &mut Connection,
    row: &IncidentRow,
    new_update: Option<&IncidentUpdate>,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    let i = &row.incident;
    tx.execute(
        "INSERT OR REPLACE INTO status_incidents
           (id, title, impact, state, components_json, auto_component, created_ms, updated_ms,
            resolved_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            i.id,
            i.title,
            i.impact.as_str(),
            i.state.as_str(),
            serde_json::to_string(&i.components).unwrap_or_else(|_| "[]".into()),
            row.auto_component,
            to_ms(i.created),
            to_ms(i.updated),
            i.resolved.map(to_ms),
        ],
    )?;
    if let Some(u) = new_update {
        tx.execute(
            "INSERT INTO status_incident_updates (id, incident_id, state, body, at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![u.id, i.id, u.state.as_str(), u.body, to_ms(u.at)],
        )?;
    }
    tx.commit()
}

/// Deletes incidents resolved before `before_ms`, with their updates.
pub fn prune_incidents(conn: &mut Connection, before_ms: i64) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    tx.execute(
        "DELETE FROM status_incident_updates WHERE incident_id IN
           (SELECT id FROM status_incidents WHERE resolved_ms IS NOT NULL AND resolved_ms < ?1)",
        params![before_ms],
    )?;
    tx.execute(
        "DELETE FROM status_incidents WHERE resolved_ms IS NOT NULL AND resolved_ms < ?1",
        params![before_ms],
    )?;
    tx.commit()
}

/// Every component's days from `from_day` on: (component, day number, totals).
pub fn load_days(
    conn: &mut Connection,
    from_day: i64,
) -> rusqlite::Result<Vec<(String, i64, Day)>> {
    let mut stmt = conn.prepare(
        "SELECT component, day, observed_ms, degraded_ms, partial_ms, major_ms
         FROM status_days WHERE day >= ?1",
    )?;
    let rows = stmt
        .query_map(params![from_day], |r| {
            let ms = |i: usize| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                Day {
                    date: None,
                    observed_ms: ms(2)?,
                    degraded_ms: ms(3)?,
                    partial_ms: ms(4)?,
                    major_ms: ms(5)?,
                },
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Saves days (insert or replace) and deletes those before `keep_from_day`, in one
/// transaction.
pub fn save_days(
    conn: &mut Connection,
    days: &[(String, i64, Day)],
    keep_from_day: i64,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for (component, day, d) in days {
        tx.execute(
            "INSERT OR REPLACE INTO status_days
               (component, day, observed_ms, degraded_ms, partial_ms, major_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                component,
                day,
                d.observed_ms as i64,
                d.degraded_ms as i64,
                d.partial_ms as i64,
                d.major_ms as i64
            ],
        )?;
    }
    tx.execute(
        "DELETE FROM status_days WHERE day < ?1",
        params![keep_from_day],
    )?;
    tx.commit()
}
