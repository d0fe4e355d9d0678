//! The embedded state store: one SQLite database, `state_dir/canaryd.db`.
//!
//! What must survive a restart lives here: heartbeat state, firing alerts, the notification
//! outbox and silences. The daemon opens it at startup; `canaryd check` never touches it.
//!
//! # Threading
//!
//! SQLite calls block. One dedicated thread (`canaryd-store`) owns the only connection and runs
//! jobs from a channel in the order they were sent; async callers await a oneshot reply
//! ([`Store::request`] / [`Pending::wait`]), so no tokio worker ever waits on the disk. One
//! connection and one thread also means writes from this process never contend with each
//! other, and a caller that enqueues while holding its own lock gets its writes stored in the
//! order of its in-memory updates. Startup (open, migrate, first load) uses the blocking
//! variant ([`Store::call_blocking`]) before anything else runs.
//!
//! # Durability
//!
//! WAL journal with `synchronous=NORMAL`: a commit survives a crash of canaryd; a power loss may
//! lose the last few commits but never corrupts the file.
//!
//! # Schema
//!
//! `schema_version` holds one row, the number of [`MIGRATIONS`] applied. Opening applies the
//! missing ones in order, each in its own transaction. Adding a table = appending one entry to
//! [`MIGRATIONS`] (never edit a released one) and a few typed functions below, like the
//! heartbeat ones.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, ErrorCode, OptionalExtension};

/// The database file inside `state_dir`.
pub const FILE_NAME: &str = "canaryd.db";

/// Schema migrations: entry `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: heartbeat state, one row per heartbeat check. Times are Unix milliseconds.
    "CREATE TABLE heartbeats (
        check_name      TEXT PRIMARY KEY NOT NULL,
        first_seen_ms   INTEGER NOT NULL,
        last_ping_ms    INTEGER,
        last_start_ms   INTEGER,
        last_finish_ms  INTEGER,
        last_success_ms INTEGER,
        last_exit_code  INTEGER,
        last_result     TEXT CHECK (last_result IN ('ok', 'fail')),
        last_body       TEXT,
        ping_count      INTEGER NOT NULL DEFAULT 0
    ) STRICT;",
    // 2: alerting. Firing alerts (one JSON row each: event, who was told), the notification
    // outbox (FIFO per receiver by id; a row leaves only when its receiver accepted or refused
    // it for good), and silences.
    "CREATE TABLE alerts (
        dedup_key TEXT PRIMARY KEY NOT NULL,
        row_json  TEXT NOT NULL
    ) STRICT;
    CREATE TABLE outbox (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        receiver        TEXT NOT NULL,
        dedup_key       TEXT NOT NULL,
        kind            TEXT NOT NULL,
        event_json      TEXT NOT NULL,
        created_ms      INTEGER NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL,
        last_error      TEXT
    ) STRICT;
    CREATE INDEX outbox_by_receiver ON outbox (receiver, id);
    CREATE TABLE silences (
        id           TEXT PRIMARY KEY NOT NULL,
        silence_json TEXT NOT NULL
    ) STRICT;",
    // 3: alert progress, one row per rule (phase, pending since, `for` clock, consecutive
    // count, window history) keyed by dedup key, with a hash of the rule's definition so that
    // a changed rule starts over; and one row holding when the daemon was last known alive
    // (where running `for` clocks stop after a crash).
    "CREATE TABLE alert_progress (
        dedup_key     TEXT PRIMARY KEY NOT NULL,
        definition    TEXT NOT NULL,
        saved_ms      INTEGER NOT NULL,
        progress_json TEXT NOT NULL
    ) STRICT;
    CREATE TABLE alert_alive (
        id       INTEGER PRIMARY KEY CHECK (id = 1),
        alive_ms INTEGER NOT NULL
    ) STRICT;",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// What can go wrong with the state store. Every message names the file and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `state_dir` could not be created.
    #[error("cannot create the state directory {}: {source} (set state_dir to a writable directory)", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database file could not be opened or written.
    #[error("cannot open the state store {}: {source} (state_dir must be a writable directory)", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The file is not a SQLite database, or it is damaged.
    #[error("the state store {} is not a canaryd database or is damaged ({source}); move it aside to start with an empty state", path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// A newer canaryd migrated the file past what this build knows.
    #[error("the state store {} has schema version {found}, newer than this canaryd knows ({known}): run the newer canaryd, or move the file aside", path.display())]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Version in the file.
        found: i64,
        /// Version this build writes.
        known: usize,
    },
    /// A statement failed at run time (disk full, I/O error, ...).
    #[error("state store {}: {source}", path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The store thread is gone (a bug; the store is unusable until restart).
    #[error("the state store thread stopped")]
    Closed,
    /// Another process holds `state_dir`'s lock file: a second daemon on the same state.
    #[error("the state directory {} is in use by another canaryd ({}lock file {}): run one daemon per state_dir", dir.display(), holder.as_ref().map(|p| format!("pid {p}, ")).unwrap_or_default(), path.display())]
    Locked {
        /// The state directory.
        dir: PathBuf,
        /// The lock file.
        path: PathBuf,
        /// The pid the holder wrote into the lock file, if it is readable.
        holder: Option<u32>,
    },
    /// The lock file could not be created or locked (a read-only or unwritable directory).
    #[error("cannot lock the state directory {} ({}: {source}): state_dir must be a writable directory", dir.display(), path.display())]
    Lock {
        /// The state directory.
        dir: PathBuf,
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database (or its directory) cannot be written: canaryd would run without being able
    /// to keep anything it promises to keep.
    #[error("the state store {} is read-only ({reason}): state_dir must be a writable directory on a writable file system", path.display())]
    ReadOnly {
        /// The database file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A SQLite database of another application: never migrated in place.
    #[error("the state store {} is a SQLite database of another application (tables {tables}, no canaryd schema_version); canaryd does not change it: point state_dir elsewhere or move the file aside", path.display())]
    Foreign {
        /// The database file.
        path: PathBuf,
        /// Some of its table names.
        tables: String,
    },
}

/// The lock file inside `state_dir` (held for the life of the daemon's store; holds its pid).
pub const LOCK_FILE_NAME: &str = "canaryd.lock";

/// Takes `dir/canaryd.lock` exclusively (an advisory `flock`, released by the kernel when the
/// process ends, even by `kill -9`), and writes this process's pid into it.
fn lock_state_dir(dir: &Path) -> Result<std::fs::File, StoreError> {
    use std::io::{Read, Seek, Write};
    let path = dir.join(LOCK_FILE_NAME);
    let lock_err = |source| StoreError::Lock {
        dir: dir.to_path_buf(),
        path: path.clone(),
        source,
    };
    // Not truncated on open: the holder's pid must stay readable for the refusal message.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(lock_err)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            // The holder's pid is a courtesy: a lock file of any content still refuses.
            let _ = (&file).take(32).read_to_string(&mut text);
            return Err(StoreError::Locked {
                dir: dir.to_path_buf(),
                path,
                holder: text.trim().parse().ok(),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(lock_err(e)),
    }
    file.set_len(0).map_err(lock_err)?;
    file.rewind().map_err(lock_err)?;
    writeln!(file, "{}", std::process::id()).map_err(lock_err)?;
    Ok(file)
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A handle to the store; clones share the one connection thread, which ends when the last
/// handle is dropped (after finishing the jobs already sent).
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Job>,
    path: Arc<PathBuf>,
    /// The daemon's exclusive lock on `state_dir` (none for a read-only [`Store::open_existing`]);
    /// released when the last handle is dropped.
    _lock: Option<Arc<std::fs::File>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// A reply still to come from the store thread.
pub struct Pending<R> {
    rx: tokio::sync::oneshot::Receiver<Result<R, StoreError>>,
}

impl<R> Pending<R> {
    /// Waits for the job's result without blocking the runtime.
    pub async fn wait(self) -> Result<R, StoreError> {
        self.rx.await.unwrap_or(Err(StoreError::Closed))
    }
}

impl Store {
    /// Locks `dir` (see [`LOCK_FILE_NAME`]), then opens (creating the directory and file if
    /// missing) and migrates `dir/canaryd.db`. Refuses a `dir` another process holds, a
    /// database that cannot be written, and a SQLite file that is not canaryd's. Blocks: call at
    /// startup, or from `spawn_blocking`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let lock = lock_state_dir(dir)?;
        let mut store = Store::open_file(&dir.join(FILE_NAME), true)?;
        store._lock = Some(Arc::new(lock));
        Ok(store)
    }

    /// Opens `dir/canaryd.db` read-only if it exists, without migrating it (for one-shot
    /// commands, which must neither create state nor change a running daemon's file).
    pub fn open_existing(dir: &Path) -> Result<Option<Store>, StoreError> {
        let path = dir.join(FILE_NAME);
        if !path.is_file() {
            return Ok(None);
        }
        Store::open_file(&path, false).map(Some)
    }

    fn open_file(path: &Path, writable: bool) -> Result<Store, StoreError> {
        use rusqlite::OpenFlags as F;
        let flags = if writable {
            F::SQLITE_OPEN_READ_WRITE | F::SQLITE_OPEN_CREATE | F::SQLITE_OPEN_NO_MUTEX
        } else {
            F::SQLITE_OPEN_READ_ONLY | F::SQLITE_OPEN_NO_MUTEX
        };
        let mut conn =
            Connection::open_with_flags(path, flags).map_err(|source| StoreError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        if writable {
            prepare(&mut conn, path)?;
        } else {
            conn.busy_timeout(Duration::from_secs(5))
                .map_err(|e| classify(path, e))?;
        }
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("canaryd-store".into())
            .spawn(move || {
                for job in rx {
                    // A panicking job must not take the store down for every later caller.
                    let _ =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut conn)));
                }
            })
            .map_err(|e| StoreError::CreateDir {
                path: path.to_path_buf(),
                source: e,
            })?;
        Ok(Store {
            tx,
            path: Arc::new(path.to_path_buf()),
            _lock: None,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues `f` on the store thread and returns at once; await the reply with
    /// [`Pending::wait`]. Jobs run in the order they were queued.
    pub fn request<R, F>(&self, f: F) -> Pending<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let path = self.path.clone();
        // If the thread is gone the sender is dropped with the job, and `wait` says Closed.
        let _ = self.tx.send(Box::new(move |conn: &mut Connection| {
            let _ = tx.send(f(conn).map_err(|e| classify(&path, e)));
        }));
        Pending { rx }
    }

    /// Runs `f` on the store thread and waits for it, blocking the calling thread.
    pub fn call_blocking<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        let path = self.path.clone();
        self.tx
            .send(Box::new(move |conn: &mut Connection| {
                let _ = tx.send(f(conn).map_err(|e| classify(&path, e)));
            }))
            .map_err(|_| StoreError::Closed)?;
        rx.recv().unwrap_or(Err(StoreError::Closed))
    }

    /// Every heartbeat row (blocking; at startup).
    pub fn load_heartbeats(&self) -> Result<Vec<HeartbeatRow>, StoreError> {
        self.call_blocking(load_heartbeats)
    }

    /// Inserts or replaces one heartbeat row; await the returned reply for the outcome.
    pub fn save_heartbeat(&self, row: HeartbeatRow) -> Pending<()> {
        self.request(move |conn| save_heartbeat(conn, &row))
    }

    /// Inserts or replaces heartbeat rows in one transaction (blocking; at startup).
    pub fn save_heartbeats_blocking(&self, rows: Vec<HeartbeatRow>) -> Result<(), StoreError> {
        self.call_blocking(move |conn| {
            let tx = conn.transaction()?;
            for row in &rows {
                save_heartbeat(&tx, row)?;
            }
            tx.commit()
        })
    }
}

/// Sets the pragmas and brings the schema up to date.
// (alerting rows: see the section at the end of this file)
fn prepare(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let err = |e| classify(path, e);
    // The first statements read the file: a non-database fails here, as Corrupt.
    conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
    // Before anything writes (switching to WAL rewrites the header).
    refuse_foreign(conn, path)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), mode, "the state store could not switch to WAL; it works, with slower writes");
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(err)?;
    if conn.is_readonly(rusqlite::MAIN_DB).map_err(err)? {
        return Err(StoreError::ReadOnly {
            path: path.to_path_buf(),
            reason: "SQLite opened it read-only".into(),
        });
    }
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .map_err(read_only_or(path))?;
    let found: Option<i64> = conn
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .optional()
        .map_err(err)?;
    let found = match found {
        Some(v) => v,
        None => {
            conn.execute("INSERT INTO schema_version (version) VALUES (0)", [])
                .map_err(err)?;
            0
        }
    };
    let Ok(from) = usize::try_from(found) else {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            source: rusqlite::Error::IntegralValueOutOfRange(0, found),
        });
    };
    if from > MIGRATIONS.len() {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            known: MIGRATIONS.len(),
        });
    }
    // Prove the file can be written now, rather than at the first alert: SQLite opens a
    // database on a read-only mount and only fails at the first write.
    conn.execute("UPDATE schema_version SET version = version", [])
        .map_err(read_only_or(path))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(from) {
        let tx = conn.transaction().map_err(err)?;
        tx.execute_batch(sql).map_err(err)?;
        tx.execute("UPDATE schema_version SET version = ?1", [i as i64 + 1])
            .map_err(err)?;
        tx.commit().map_err(err)?;
        tracing::info!(path = %path.display(), version = i + 1, "state store migrated");
    }
    Ok(())
}

/// A failed write at startup: read-only (file, directory or mount) as [`StoreError::ReadOnly`],
/// anything else classified as usual.
fn read_only_or(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| match e.sqlite_error_code() {
        Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => {
            StoreError::ReadOnly {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }
        }
        _ => classify(path, e),
    }
}

/// Refuses a database that has tables but no `schema_version`: another application's file,
/// which canaryd must not migrate in place. (An empty file, new or zero-length, is canaryd's
/// to create.)
fn refuse_foreign(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let err = |e| classify(path, e);
    let ours: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'schema_version')",
            [],
            |r| r.get(0),
        )
        .map_err(err)?;
    if ours {
        return Ok(());
    }
    let mut stmt = conn
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') ORDER BY name LIMIT 6",
        )
        .map_err(err)?;
    let names: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .map_err(err)?
        .collect::<rusqlite::Result<_>>()
        .map_err(err)?;
    if names.is_empty() {
        return Ok(());
    }
    let mut tables: Vec<String> = names.iter().take(5).map(|n| format!("{n:?}")).collect();
    if names.len() > 5 {
        tables.push("...".into());
    }
    Err(StoreError::Foreign {
        path: path.to_path_buf(),
        tables: tables.join(", "),
    })
}

/// Tells a damaged or foreign file apart from an ordinary failure.
fn classify(path: &Path, e: rusqlite::Error) -> StoreError {
    let path = path.to_path_buf();
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            StoreError::Corrupt { path, source: e }
        }
        Some(ErrorCode::CannotOpen | ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => {
            StoreError::Open { path, source: e }
        }
        _ => StoreError::Sqlite { path, source: e },
    }
}

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

/// The persisted state of one heartbeat check (see `probe::heartbeat` for what each field means
/// to lateness).
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
    /// The tail of the last ping's body (at most [`crate::probe::heartbeat::BODY_KEEP`] bytes).
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

fn load_heartbeats(conn: &mut Connection) -> rusqlite::Result<Vec<HeartbeatRow>> {
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

fn save_heartbeat(conn: &Connection, row: &HeartbeatRow) -> rusqlite::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        store
            .save_heartbeats_blocking(vec![row.clone(), HeartbeatRow::new("other", at(5))])
            .unwrap();
        drop(store);

        let store = Store::open(&state).unwrap();
        let mut rows = store.load_heartbeats().unwrap();
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
            pending.push(store.save_heartbeat(row));
        }
        for p in pending {
            p.wait().await.unwrap();
        }
        assert_eq!(store.load_heartbeats().unwrap()[0].ping_count, 49);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), vec![0x5a; 8192]).unwrap();
        let e = Store::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("is not a canaryd database or is damaged"), "{e}");
        assert!(e.contains("move it aside"), "{e}");
    }

    #[test]
    fn a_store_from_a_newer_canaryd_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let conn = Connection::open(dir.path().join(FILE_NAME)).unwrap();
        conn.execute("UPDATE schema_version SET version = 99", [])
            .unwrap();
        drop(conn);
        let e = Store::open(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains(&format!(
                "schema version 99, newer than this canaryd knows ({SCHEMA_VERSION})"
            )),
            "{e}"
        );
    }

    #[test]
    fn a_state_dir_that_cannot_be_created_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        std::fs::write(&file, "x").unwrap();
        let e = Store::open(&file.join("state")).unwrap_err().to_string();
        assert!(e.starts_with("cannot create the state directory"), "{e}");
        assert!(e.contains("writable directory"), "{e}");
    }

    #[test]
    fn open_existing_reads_a_closed_store_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .save_heartbeats_blocking(vec![HeartbeatRow::new("x", at(9))])
            .unwrap();
        drop(store);
        let ro = Store::open_existing(dir.path()).unwrap().unwrap();
        assert_eq!(
            ro.load_heartbeats().unwrap(),
            vec![HeartbeatRow::new("x", at(9))]
        );
        let e = ro
            .save_heartbeats_blocking(vec![HeartbeatRow::new("y", at(9))])
            .unwrap_err();
        assert!(e.to_string().contains("readonly"), "{e}");
    }

    #[test]
    fn a_second_store_on_the_same_state_dir_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap();
        let e = Store::open(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains(&format!(
                "the state directory {} is in use by another canaryd (pid {}, lock file ",
                dir.path().display(),
                std::process::id()
            )),
            "{e}"
        );
        assert!(e.contains("run one daemon per state_dir"), "{e}");
        // A read-only reader (canaryd probe) does not need the lock.
        assert!(Store::open_existing(dir.path()).unwrap().is_some());
        // The lock goes with the last handle.
        let clone = first.clone();
        drop(first);
        assert!(Store::open(dir.path()).is_err());
        drop(clone);
        drop(Store::open(dir.path()).unwrap());
    }

    #[test]
    fn a_foreign_sqlite_file_is_refused_and_left_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);
             INSERT INTO users (name) VALUES ('ada');",
        )
        .unwrap();
        drop(conn);
        let before = std::fs::read(&path).unwrap();
        let e = Store::open(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("is a SQLite database of another application (tables \"users\""),
            "{e}"
        );
        assert!(e.contains("canaryd does not change it"), "{e}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the file was written"
        );
        assert!(!dir.path().join("canaryd.db-wal").exists());
    }

    #[test]
    fn an_empty_file_is_a_new_store() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"").unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.load_heartbeats().unwrap().is_empty());
    }

    #[test]
    fn open_existing_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Store::open_existing(&dir.path().join("none"))
            .unwrap()
            .is_none());
        assert!(!dir.path().join("none").exists());
    }
}

// ---------------------------------------------------------------------------------------------
// Alerting: firing alerts, the outbox, silences
// ---------------------------------------------------------------------------------------------

use crate::alert::engine::{AlertRow, ProgressBatch, ProgressRow};
use crate::alert::silence::Silence;
use crate::alert::{AlertEvent, EventKind};

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
