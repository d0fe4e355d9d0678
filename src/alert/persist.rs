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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::engine::Delivery;
    use crate::store::Store;

    fn event(key: &str, kind: EventKind, created_ms: i64) -> AlertEvent {
        crate::alert::tests_support::event(key, kind, created_ms)
    }

    fn alert_row(key: &str) -> AlertRow {
        AlertRow {
            dedup_key: key.into(),
            event: event(key, EventKind::Trigger, 1),
            delivery: Delivery::default(),
            last_true_ms: Some(1),
        }
    }

    fn commit(
        store: &Store,
        save: Vec<AlertRow>,
        delete: Vec<String>,
        sends: Vec<(String, AlertEvent)>,
    ) {
        store
            .call_blocking(move |c| commit_alerts(c, &save, &delete, &sends))
            .unwrap();
    }

    fn head(store: &Store, receiver: &str) -> Vec<(i64, String, EventKind, u32, i64)> {
        let receiver = receiver.to_string();
        store
            .call_blocking(move |c| outbox_head(c, &receiver, 100))
            .unwrap()
            .into_iter()
            .map(|r| {
                (
                    r.id,
                    r.event.dedup_key,
                    r.event.kind,
                    r.attempts,
                    r.next_attempt_ms,
                )
            })
            .collect()
    }

    #[test]
    fn a_commit_saves_rows_and_queues_sends_in_order_and_a_waiting_refresh_is_not_queued_twice() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let pd = || "pd".to_string();
        commit(
            &store,
            vec![alert_row("k1"), alert_row("k2")],
            Vec::new(),
            vec![
                (pd(), event("k1", EventKind::Trigger, 10)),
                (pd(), event("k1", EventKind::Refresh, 11)),
                ("am".into(), event("k2", EventKind::Trigger, 12)),
            ],
        );
        commit(
            &store,
            Vec::new(),
            vec!["k2".into()],
            vec![
                // Already waiting for pd: not queued again. For another receiver: queued.
                (pd(), event("k1", EventKind::Refresh, 20)),
                ("am".into(), event("k1", EventKind::Refresh, 21)),
                (pd(), event("k1", EventKind::Reminder, 22)),
                (pd(), event("k1", EventKind::Reminder, 23)),
                // Triggers and resolves are always queued.
                (pd(), event("k1", EventKind::Trigger, 24)),
                ("am".into(), event("k2", EventKind::Resolve, 25)),
            ],
        );
        let rows = store.call_blocking(load_alerts).unwrap();
        assert_eq!(rows, vec![alert_row("k1")]);
        let pd_kinds: Vec<(String, EventKind)> = head(&store, "pd")
            .into_iter()
            .map(|(_, k, kind, _, _)| (k, kind))
            .collect();
        assert_eq!(
            pd_kinds,
            [
                ("k1".to_string(), EventKind::Trigger),
                ("k1".to_string(), EventKind::Refresh),
                ("k1".to_string(), EventKind::Reminder),
                ("k1".to_string(), EventKind::Trigger),
            ]
        );
        assert_eq!(
            store.call_blocking(outbox_lengths).unwrap(),
            [
                OutboxLength {
                    receiver: "am".into(),
                    count: 3,
                    oldest_ms: 12
                },
                OutboxLength {
                    receiver: "pd".into(),
                    count: 4,
                    oldest_ms: 10
                },
            ]
        );
    }

    #[test]
    fn retries_deletes_and_unknown_receivers_change_the_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        commit(
            &store,
            Vec::new(),
            Vec::new(),
            vec![
                ("pd".into(), event("k1", EventKind::Trigger, 10)),
                ("pd".into(), event("k2", EventKind::Trigger, 11)),
                ("gone".into(), event("k1", EventKind::Trigger, 12)),
            ],
        );
        let first = head(&store, "pd");
        let (id1, id2) = (first[0].0, first[1].0);
        store
            .call_blocking(move |c| outbox_retry(c, &[id1], 5_000, "503"))
            .unwrap();
        assert_eq!(
            head(&store, "pd"),
            [
                (id1, "k1".into(), EventKind::Trigger, 1, 5_000),
                (id2, "k2".into(), EventKind::Trigger, 0, 11),
            ]
        );
        store
            .call_blocking(move |c| outbox_delete(c, &[id1]))
            .unwrap();
        assert_eq!(
            head(&store, "pd"),
            [(id2, "k2".into(), EventKind::Trigger, 0, 11)]
        );
        let dropped = store
            .call_blocking(|c| outbox_drop_unknown(c, &["pd".to_string()]))
            .unwrap();
        assert_eq!(dropped, 1);
        assert!(head(&store, "gone").is_empty());
        assert_eq!(head(&store, "pd").len(), 1);
    }

    #[test]
    fn a_notification_that_does_not_parse_is_dropped_and_the_rest_still_arrive() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .call_blocking(|c| {
                c.execute(
                    "INSERT INTO outbox (receiver, dedup_key, kind, event_json, created_ms, next_attempt_ms)
                     VALUES ('pd', 'k0', 'trigger', '{\"not\": \"an event\"}', 1, 1)",
                    [],
                )
            })
            .unwrap();
        commit(
            &store,
            Vec::new(),
            Vec::new(),
            vec![("pd".into(), event("k1", EventKind::Trigger, 2))],
        );
        let got = head(&store, "pd");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, "k1");
        let left = store.call_blocking(outbox_lengths).unwrap();
        assert_eq!(left[0].count, 1, "the bad row was removed: {left:?}");
    }

    #[test]
    fn silences_are_saved_replaced_loaded_and_deleted_and_a_bad_one_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let silence = |id: &str, comment: &str| Silence {
            id: id.into(),
            matchers: [("check".to_string(), "web-*".to_string())].into(),
            starts_at_ms: 1,
            ends_at_ms: 2,
            created_by: "ada".into(),
            comment: comment.into(),
            created_at_ms: 1,
        };
        for s in [
            silence("a", "first"),
            silence("b", "b"),
            silence("a", "again"),
        ] {
            store.call_blocking(move |c| save_silence(c, &s)).unwrap();
        }
        store
            .call_blocking(|c| {
                c.execute(
                    "INSERT INTO silences (id, silence_json) VALUES ('bad', '[1, 2]')",
                    [],
                )
            })
            .unwrap();
        let mut got = store.call_blocking(load_silences).unwrap();
        got.sort_by(|x, y| x.id.cmp(&y.id));
        let comments: Vec<(&str, &str)> = got
            .iter()
            .map(|s| (s.id.as_str(), s.comment.as_str()))
            .collect();
        assert_eq!(comments, [("a", "again"), ("b", "b")]);
        store
            .call_blocking(|c| delete_silences(c, &["a".to_string(), "bad".to_string()]))
            .unwrap();
        let left: Vec<String> = store
            .call_blocking(load_silences)
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(left, ["b"]);
    }
}
