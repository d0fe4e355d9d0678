//! Alerting's rows in the state store, and the functions that read and write them: firing
//! alerts (`alerts`), the notification outbox (`outbox`), silences (`silences`) and each rule's
//! progress (`alert_progress`, `alert_alive`). The tables are created by the store's migrations;
//! these functions run on the store's thread, passed to [`crate::store::Store::request`] or
//! [`crate::store::Store::call_blocking`] by [`super::service`] and [`super::outbox`], which
//! queue them while holding their own locks so that store order is decision order.

use rusqlite::{params, Connection, OptionalExtension};

use super::engine::{AlertRow, ProgressBatch, ProgressRow};
use super::silence::Silence;
use super::{AlertEvent, EventKind};

/// One notification waiting in the outbox.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    /// Position (FIFO per receiver).
    pub id: i64,
    /// Receiver name.
    pub receiver: String,
    /// What to send.
    pub event: AlertEvent,
    /// When it was queued (Unix ms).
    pub created_ms: i64,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not before (Unix ms).
    pub next_attempt_ms: i64,
}

/// Per receiver: waiting notifications and the creation time of the oldest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxLength {
    /// Receiver name.
    pub receiver: String,
    /// Waiting notifications.
    pub count: u64,
    /// Oldest `created_ms`.
    pub oldest_ms: i64,
}

fn json_err(e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

/// Commits one engine decision: alert rows saved and deleted, notifications queued, in one
/// transaction. A lease refresh or reminder already waiting for the same receiver and alert is
/// not queued twice (a receiver that is down does not pile up a refresh a minute).
pub fn commit_alerts(
    conn: &mut Connection,
    save: &[AlertRow],
    delete: &[String],
    sends: &[(String, AlertEvent)],
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for row in save {
        let json = serde_json::to_string(row).map_err(json_err)?;
        tx.execute(
            "INSERT OR REPLACE INTO alerts (dedup_key, row_json) VALUES (?1, ?2)",
            params![row.dedup_key, json],
        )?;
    }
    for key in delete {
        tx.execute("DELETE FROM alerts WHERE dedup_key = ?1", params![key])?;
    }
    for (receiver, event) in sends {
        if matches!(event.kind, EventKind::Refresh | EventKind::Reminder) {
            let waiting: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM outbox WHERE receiver = ?1 AND dedup_key = ?2 AND kind = ?3)",
                params![receiver, event.dedup_key, event.kind.as_str()],
                |r| r.get(0),
            )?;
            if waiting {
                continue;
            }
        }
        let json = serde_json::to_string(event).map_err(json_err)?;
        tx.execute(
            "INSERT INTO outbox (receiver, dedup_key, kind, event_json, created_ms, next_attempt_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            params![receiver, event.dedup_key, event.kind.as_str(), json, event.created_ms],
        )?;
    }
    tx.commit()
}

/// Every saved firing alert (rows that no longer parse are skipped with a warning).
pub fn load_alerts(conn: &mut Connection) -> rusqlite::Result<Vec<AlertRow>> {
    let mut stmt = conn.prepare("SELECT dedup_key, row_json FROM alerts")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (key, json) = row?;
        match serde_json::from_str(&json) {
            Ok(r) => out.push(r),
            Err(e) => {
                tracing::warn!(dedup_key = %key, "skipping an alert row that does not parse: {e}")
            }
        }
    }
    Ok(out)
}

/// The first `limit` notifications of a receiver, oldest first.
pub fn outbox_head(
    conn: &mut Connection,
    receiver: &str,
    limit: usize,
) -> rusqlite::Result<Vec<OutboxRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, event_json, created_ms, attempts, next_attempt_ms FROM outbox
         WHERE receiver = ?1 ORDER BY id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![receiver, limit as i64], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for row in rows {
        let (id, json, created_ms, attempts, next_attempt_ms) = row?;
        match serde_json::from_str(&json) {
            Ok(event) => out.push(OutboxRow {
                id,
                receiver: receiver.to_string(),
                event,
                created_ms,
                attempts: attempts.clamp(0, u32::MAX as i64) as u32,
                next_attempt_ms,
            }),
            Err(e) => {
                tracing::error!(
                    receiver,
                    id,
                    "dropping a notification that does not parse: {e}"
                );
                bad.push(id);
            }
        }
    }
    drop(stmt);
    outbox_delete(conn, &bad)?;
    Ok(out)
}

/// Removes delivered (or finally refused) notifications.
pub fn outbox_delete(conn: &mut Connection, ids: &[i64]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for id in ids {
        tx.execute("DELETE FROM outbox WHERE id = ?1", params![id])?;
    }
    tx.commit()
}

/// Records a failed attempt: not before `next_ms`.
pub fn outbox_retry(
    conn: &mut Connection,
    ids: &[i64],
    next_ms: i64,
    error: &str,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for id in ids {
        tx.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?2, last_error = ?3 WHERE id = ?1",
            params![id, next_ms, error],
        )?;
    }
    tx.commit()
}

/// Waiting notifications per receiver.
pub fn outbox_lengths(conn: &mut Connection) -> rusqlite::Result<Vec<OutboxLength>> {
    let mut stmt = conn.prepare_cached(
        "SELECT receiver, COUNT(*), MIN(created_ms) FROM outbox GROUP BY receiver ORDER BY receiver",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(OutboxLength {
            receiver: r.get(0)?,
            count: r.get::<_, i64>(1)?.max(0) as u64,
            oldest_ms: r.get(2)?,
        })
    })?;
    rows.collect()
}

/// Drops the notifications of receivers that are no longer configured; returns how many.
pub fn outbox_drop_unknown(conn: &mut Connection, known: &[String]) -> rusqlite::Result<usize> {
    let mut receivers: Vec<String> = {
        let mut stmt = conn.prepare("SELECT DISTINCT receiver FROM outbox")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    receivers.retain(|r| !known.contains(r));
    let mut n = 0;
    for r in receivers {
        n += conn.execute("DELETE FROM outbox WHERE receiver = ?1", params![r])?;
    }
    Ok(n)
}

/// Inserts or replaces a silence.
pub fn save_silence(conn: &mut Connection, s: &Silence) -> rusqlite::Result<()> {
    let json = serde_json::to_string(s).map_err(json_err)?;
    conn.execute(
        "INSERT OR REPLACE INTO silences (id, silence_json) VALUES (?1, ?2)",
        params![s.id, json],
    )?;
    Ok(())
}

/// Every silence (expired ones included, until [`delete_silences`]).
pub fn load_silences(conn: &mut Connection) -> rusqlite::Result<Vec<Silence>> {
    let mut stmt = conn.prepare("SELECT silence_json FROM silences")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for json in rows {
        // One bad row (not text, not a silence) costs that silence, never the others.
        match json.map(|j| serde_json::from_str(&j)) {
            Ok(Ok(s)) => out.push(s),
            Ok(Err(e)) => tracing::warn!("skipping a silence that does not parse: {e}"),
            Err(e) => tracing::warn!("skipping a silence row that cannot be read: {e}"),
        }
    }
    Ok(out)
}

/// Deletes silences (expired ones, pruned a day after they end).
pub fn delete_silences(conn: &mut Connection, ids: &[String]) -> rusqlite::Result<()> {
    for id in ids {
        conn.execute("DELETE FROM silences WHERE id = ?1", params![id])?;
    }
    Ok(())
}

/// Saves one batch of alert progress in one transaction: deletes first (a rule that left the
/// configuration), then rows, then the "last known alive" time.
pub fn save_progress(conn: &mut Connection, batch: &ProgressBatch) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for key in &batch.delete {
        tx.prepare_cached("DELETE FROM alert_progress WHERE dedup_key = ?1")?
            .execute(params![key])?;
    }
    for row in &batch.save {
        let json = serde_json::to_string(&row.progress).map_err(json_err)?;
        tx.prepare_cached(
            "INSERT OR REPLACE INTO alert_progress (dedup_key, definition, saved_ms, progress_json)
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![row.dedup_key, row.definition, row.saved_ms, json])?;
    }
    if let Some(ms) = batch.alive_ms {
        tx.prepare_cached("INSERT OR REPLACE INTO alert_alive (id, alive_ms) VALUES (1, ?1)")?
            .execute(params![ms])?;
    }
    tx.commit()
}

/// Every rule's saved progress (rows that no longer parse are skipped with a warning) and when
/// the daemon that saved them was last known alive (Unix ms).
pub fn load_progress(conn: &mut Connection) -> rusqlite::Result<(Vec<ProgressRow>, Option<i64>)> {
    let mut stmt =
        conn.prepare("SELECT dedup_key, definition, saved_ms, progress_json FROM alert_progress")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (dedup_key, definition, saved_ms, json) = row?;
        match serde_json::from_str(&json) {
            Ok(progress) => out.push(ProgressRow {
                dedup_key,
                definition,
                saved_ms,
                progress,
            }),
            Err(e) => {
                tracing::warn!(%dedup_key, "skipping alert progress that does not parse: {e}")
            }
        }
    }
    let alive = conn
        .query_row("SELECT alive_ms FROM alert_alive WHERE id = 1", [], |r| {
            r.get::<_, i64>(0)
        })
        .optional()?;
    Ok((out, alive))
}

#[cfg(test)]
mod progress_tests {
    use super::*;
    use crate::alert::engine::{Phase, Progress};
    use crate::store::Store;

    fn row(key: &str, consecutive: u32) -> ProgressRow {
        ProgressRow {
            dedup_key: key.into(),
            definition: "d1".into(),
            saved_ms: 1_000,
            progress: Progress {
                phase: Phase::Pending,
                since_ms: Some(900),
                consecutive,
                window: "TFT".into(),
                held_ms: 5_000,
                true_since_ms: Some(950),
                last_true_ms: Some(999),
                undecided: false,
            },
        }
    }

    #[test]
    fn progress_survives_reopening_and_batches_replace_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.call_blocking(load_progress).unwrap(),
            (Vec::new(), None)
        );
        let batch = ProgressBatch {
            save: vec![row("a", 1), row("b", 2)],
            delete: Vec::new(),
            alive_ms: Some(1_500),
        };
        store
            .call_blocking(move |c| save_progress(c, &batch))
            .unwrap();
        let batch = ProgressBatch {
            save: vec![row("a", 3)],
            delete: vec!["b".into()],
            alive_ms: None,
        };
        store
            .call_blocking(move |c| save_progress(c, &batch))
            .unwrap();
        drop(store);

        let store = Store::open(dir.path()).unwrap();
        let (rows, alive) = store.call_blocking(load_progress).unwrap();
        assert_eq!(rows, vec![row("a", 3)]);
        assert_eq!(alive, Some(1_500), "kept when a batch has no new time");
    }

    #[test]
    fn a_progress_row_that_does_not_parse_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .call_blocking(|c| {
                c.execute(
                    "INSERT INTO alert_progress VALUES ('x', 'd', 1, '{\"phase\": \"exploded\"}')",
                    [],
                )
            })
            .unwrap();
        let batch = ProgressBatch {
            save: vec![row("ok", 1)],
            ..ProgressBatch::default()
        };
        store
            .call_blocking(move |c| save_progress(c, &batch))
            .unwrap();
        let (rows, _) = store.call_blocking(load_progress).unwrap();
        assert_eq!(rows, vec![row("ok", 1)]);
    }
}
