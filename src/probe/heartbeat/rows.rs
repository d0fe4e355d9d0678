//! The heartbeat kind's rows in the state store: one row per heartbeat check (table
//! `heartbeats`, created by the store's first migration), and the functions that read and write
//! them. They run their SQL on the store's thread through [`Store::request`] (awaited by pings)
//! and [`Store::call_blocking`] (startup), so jobs queued under the [`super::Book`]'s lock are
//! stored in the order memory saw them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection};

use crate::store::{Pending, Store, StoreError};

/// How a finished run ended, as a job reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunResult {
    /// `/ping/<check>` or exit code 0.
    Ok,
    /// `/ping/<check>/fail` or a non-zero exit code.
    Fail,
}

impl RunResult {
    /// `ok` or `fail`, as stored and shown by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Ok => "ok",
            RunResult::Fail => "fail",
        }
    }
}

/// The persisted state of one heartbeat check (see [`super`] for what each field means to
/// lateness).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatRow {
    /// The check's name.
    pub check: String,
    /// When canaryd first knew the check: lateness of a check that never got a ping counts
    /// from here, and a restart does not reset it.
    pub first_seen: SystemTime,
    /// The last ping of any kind.
    pub last_ping: Option<SystemTime>,
    /// The last `/start` ping.
    pub last_start: Option<SystemTime>,
    /// The last ping that ended a run (success, `/fail` or an exit code).
    pub last_finish: Option<SystemTime>,
    /// The last successful finish.
    pub last_success: Option<SystemTime>,
    /// The exit code of the last finish, when it carried one (`/ping/<check>` counts as 0).
    pub last_exit_code: Option<u8>,
    /// How the last finished run ended.
    pub last_result: Option<RunResult>,
    /// The tail of the last ping's body (at most [`super::BODY_KEEP`] bytes).
    pub last_body: Option<String>,
    /// Pings received, all kinds.
    pub ping_count: u64,
}

impl HeartbeatRow {
    /// A check canaryd just learned about.
    pub fn new(check: &str, first_seen: SystemTime) -> HeartbeatRow {
        HeartbeatRow {
            check: check.to_string(),
            first_seen,
            last_ping: None,
            last_start: None,
            last_finish: None,
            last_success: None,
            last_exit_code: None,
            last_result: None,
            last_body: None,
            ping_count: 0,
        }
    }
}

fn to_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Last millisecond of the year 9999: later stored times are damage, not data.
const MAX_MS: u64 = 253_402_300_799_999;

/// A stored time back to a `SystemTime`; values outside 1970-9999 read as missing.
fn from_ms(ms: Option<i64>) -> Option<SystemTime> {
    let ms = u64::try_from(ms?).ok().filter(|ms| *ms <= MAX_MS)?;
    UNIX_EPOCH.checked_add(Duration::from_millis(ms))
}

fn select_all(conn: &mut Connection) -> rusqlite::Result<Vec<HeartbeatRow>> {
    let mut stmt = conn.prepare(
        "SELECT check_name, first_seen_ms, last_ping_ms, last_start_ms, last_finish_ms,
                last_success_ms, last_exit_code, last_result, last_body, ping_count
         FROM heartbeats",
    )?;
    let rows = stmt.query_map([], |r| {
        let result: Option<String> = r.get(7)?;
        let exit: Option<i64> = r.get(6)?;
        Ok(HeartbeatRow {
            check: r.get(0)?,
            first_seen: from_ms(Some(r.get(1)?)).unwrap_or(UNIX_EPOCH),
            last_ping: from_ms(r.get(2)?),
            last_start: from_ms(r.get(3)?),
            last_finish: from_ms(r.get(4)?),
            last_success: from_ms(r.get(5)?),
            last_exit_code: exit.and_then(|c| u8::try_from(c).ok()),
            last_result: match result.as_deref() {
                Some("ok") => Some(RunResult::Ok),
                Some("fail") => Some(RunResult::Fail),
                _ => None,
            },
            last_body: r.get(8)?,
            ping_count: u64::try_from(r.get::<_, i64>(9)?).unwrap_or(0),
        })
    })?;
    rows.collect()
}

fn upsert(conn: &Connection, row: &HeartbeatRow) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO heartbeats (check_name, first_seen_ms, last_ping_ms, last_start_ms,
             last_finish_ms, last_success_ms, last_exit_code, last_result, last_body, ping_count)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (check_name) DO UPDATE SET
             first_seen_ms = excluded.first_seen_ms, last_ping_ms = excluded.last_ping_ms,
             last_start_ms = excluded.last_start_ms, last_finish_ms = excluded.last_finish_ms,
             last_success_ms = excluded.last_success_ms, last_exit_code = excluded.last_exit_code,
             last_result = excluded.last_result, last_body = excluded.last_body,
             ping_count = excluded.ping_count",
    )?
    .execute(params![
        row.check,
        to_ms(row.first_seen),
        row.last_ping.map(to_ms),
        row.last_start.map(to_ms),
        row.last_finish.map(to_ms),
        row.last_success.map(to_ms),
        row.last_exit_code.map(i64::from),
        row.last_result.map(RunResult::as_str),
        row.last_body,
        i64::try_from(row.ping_count).unwrap_or(i64::MAX),
    ])?;
    Ok(())
}

/// Every heartbeat row (blocking; at startup, or a one-shot command's read-only store).
pub fn load_heartbeats(store: &Store) -> Result<Vec<HeartbeatRow>, StoreError> {
    store.call_blocking(select_all)
}

/// Inserts or replaces one heartbeat row; await the returned reply for the outcome.
pub fn save_heartbeat(store: &Store, row: HeartbeatRow) -> Pending<()> {
    store.request(move |conn| upsert(conn, &row))
}

/// Inserts or replaces heartbeat rows in one transaction (blocking; at startup).
pub fn save_heartbeats_blocking(store: &Store, rows: Vec<HeartbeatRow>) -> Result<(), StoreError> {
    store.call_blocking(move |conn| {
        let tx = conn.transaction()?;
        for row in &rows {
            upsert(&tx, row)?;
        }
        tx.commit()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FILE_NAME, SCHEMA_VERSION};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn a_new_store_is_migrated_and_keeps_rows_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("nested/state");
        let store = Store::open(&state).unwrap();
        assert!(state.join(FILE_NAME).is_file());
        let mut row = HeartbeatRow::new("nightly", at(1_000));
        row.last_ping = Some(at(2_000));
        row.last_finish = Some(at(2_000));
        row.last_result = Some(RunResult::Fail);
        row.last_exit_code = Some(3);
        row.last_body = Some("disk full".into());
        row.ping_count = 7;
        save_heartbeats_blocking(&store, vec![row.clone(), HeartbeatRow::new("other", at(5))])
            .unwrap();
        drop(store);

        let store = Store::open(&state).unwrap();
        let mut rows = load_heartbeats(&store).unwrap();
        rows.sort_by(|a, b| a.check.cmp(&b.check));
        assert_eq!(rows, vec![row, HeartbeatRow::new("other", at(5))]);
        let (mode, version): (String, i64) = store
            .call_blocking(|c| {
                Ok((
                    c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?,
                    c.query_row("SELECT version FROM schema_version", [], |r| r.get(0))?,
                ))
            })
            .unwrap();
        assert_eq!((mode.as_str(), version), ("wal", SCHEMA_VERSION as i64));
    }

    #[tokio::test]
    async fn async_writes_land_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut pending = Vec::new();
        for n in 0..50 {
            let mut row = HeartbeatRow::new("x", at(1));
            row.ping_count = n;
            pending.push(save_heartbeat(&store, row));
        }
        for p in pending {
            p.wait().await.unwrap();
        }
        assert_eq!(load_heartbeats(&store).unwrap()[0].ping_count, 49);
    }

    #[test]
    fn open_existing_reads_a_closed_store_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        save_heartbeats_blocking(&store, vec![HeartbeatRow::new("x", at(9))]).unwrap();
        drop(store);
        let ro = Store::open_existing(dir.path()).unwrap().unwrap();
        assert_eq!(
            load_heartbeats(&ro).unwrap(),
            vec![HeartbeatRow::new("x", at(9))]
        );
        let e = save_heartbeats_blocking(&ro, vec![HeartbeatRow::new("y", at(9))]).unwrap_err();
        assert!(e.to_string().contains("readonly"), "{e}");
    }

    #[test]
    fn an_empty_file_is_a_new_store() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"").unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(load_heartbeats(&store).unwrap().is_empty());
    }

    #[test]
    fn damaged_values_read_as_missing_never_as_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .call_blocking(|c| {
                c.execute(
                    "INSERT INTO heartbeats (check_name, first_seen_ms, last_ping_ms,
                         last_start_ms, last_exit_code, ping_count)
                     VALUES ('x', -5, 9223372036854775807, 253402300800000, 300, -1)",
                    [],
                )
            })
            .unwrap();
        let rows = load_heartbeats(&store).unwrap();
        assert_eq!(rows, vec![HeartbeatRow::new("x", UNIX_EPOCH)]);
        // The year 9999 still reads back.
        let mut row = HeartbeatRow::new("y", at(1));
        row.last_ping = from_ms(Some(MAX_MS as i64));
        assert!(row.last_ping.is_some());
        save_heartbeats_blocking(&store, vec![row.clone()]).unwrap();
        let back = load_heartbeats(&store).unwrap();
        assert!(back.contains(&row), "{back:?}");
    }
}
