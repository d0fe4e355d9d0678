//! The embedded state store: one SQLite database, `state_dir/canaryd.db`.
//!
//! What must survive a restart lives here: heartbeat state, firing alerts, the notification
//! outbox, silences and alert progress. The daemon opens it at startup; `canaryd check` never
//! touches it.
//!
//! The store is the layer below every owner of rows and imports no other canaryd module: it
//! owns the connection, the thread, the schema and the refusals at start; each owner keeps its
//! own rows and their SQL next to its types (`alert::persist` for alerts, the outbox, silences
//! and progress; `probe::heartbeat::rows` for heartbeats) and runs it here through
//! [`Store::request`] or [`Store::call_blocking`].
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
//! [`MIGRATIONS`] (never edit a released one: a test pins each one's text) and the typed row
//! functions in the module that owns the rows.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OptionalExtension};

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
    // 4: the status page. Incidents (opened by hand or by a component's alerts:
    // `auto_component`), their updates (a timeline, never edited), and each component's time
    // per status per UTC day (`day`: days since 1970-01-01), for the 90-day history.
    "CREATE TABLE status_incidents (
        id              INTEGER PRIMARY KEY,
        title           TEXT NOT NULL,
        impact          TEXT NOT NULL,
        state           TEXT NOT NULL,
        components_json TEXT NOT NULL,
        auto_component  TEXT,
        created_ms      INTEGER NOT NULL,
        updated_ms      INTEGER NOT NULL,
        resolved_ms     INTEGER
    ) STRICT;
    CREATE TABLE status_incident_updates (
        id          INTEGER PRIMARY KEY,
        incident_id INTEGER NOT NULL,
        state       TEXT NOT NULL,
        body        TEXT NOT NULL,
        at_ms       INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX status_updates_by_incident ON status_incident_updates (incident_id, id);
    CREATE TABLE status_days (
        component   TEXT NOT NULL,
        day         INTEGER NOT NULL,
        observed_ms INTEGER NOT NULL,
        degraded_ms INTEGER NOT NULL,
        partial_ms  INTEGER NOT NULL,
        major_ms    INTEGER NOT NULL,
        PRIMARY KEY (component, day)
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
        if dir.exists() && !dir.is_dir() {
            return Err(StoreError::CreateDir {
                path: dir.to_path_buf(),
                source: std::io::Error::other("it exists and is not a directory"),
            });
        }
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
    /// [`Pending::wait`], or drop it to fire and forget (the job runs all the same). Jobs run
    /// in the order they were queued, whichever variant queued them.
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
}

/// Sets the pragmas and brings the schema up to date.
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn open_existing_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Store::open_existing(&dir.path().join("none"))
            .unwrap()
            .is_none());
        assert!(!dir.path().join("none").exists());
    }

    /// SHA-256 of each migration's text as released: databases written by earlier versions
    /// must keep opening, so a released migration is never edited (append a new one instead).
    const RELEASED: [&str; 3] = [
        "89f0eddcdaf997e5d8c6026fa0a27941f4d5401e5d9e79b32897166fb2fe4dab",
        "5cbe71f3fc26c8a6e15f8ccc944e9ea2cdf47a6a9646a74158ba89d5d3fbc85f",
        "df3ceb49f618e95bb654b897d528333a26f4995e71edfdb9ce948b0142e67159",
    ];

    #[test]
    fn released_migrations_are_unchanged() {
        use sha2::{Digest, Sha256};
        assert!(
            MIGRATIONS.len() >= RELEASED.len(),
            "a released migration was removed"
        );
        for (i, want) in RELEASED.iter().enumerate() {
            let got: String = Sha256::digest(MIGRATIONS[i].as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(&got, want, "migration {} was edited after release", i + 1);
        }
    }

    #[test]
    fn a_new_store_has_every_table_in_wal_mode_at_the_current_version() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("nested/state");
        let store = Store::open(&state).unwrap();
        assert!(state.join(FILE_NAME).is_file());
        assert_eq!(store.path(), state.join(FILE_NAME));
        let (tables, mode, version): (Vec<String>, String, i64) = store
            .call_blocking(|c| {
                let mut stmt = c.prepare(
                    "SELECT name FROM sqlite_schema WHERE type = 'table'
                     AND name NOT LIKE 'sqlite_%' ORDER BY name",
                )?;
                let tables = stmt
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                Ok((
                    tables,
                    c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?,
                    c.query_row("SELECT version FROM schema_version", [], |r| r.get(0))?,
                ))
            })
            .unwrap();
        assert_eq!(
            tables,
            [
                "alert_alive",
                "alert_progress",
                "alerts",
                "heartbeats",
                "outbox",
                "schema_version",
                "silences",
                "status_days",
                "status_incident_updates",
                "status_incidents"
            ]
        );
        assert_eq!((mode.as_str(), version), ("wal", SCHEMA_VERSION as i64));
        drop(store);
        // Reopening an up-to-date store migrates nothing and keeps the version.
        let store = Store::open(&state).unwrap();
        let version: i64 = store
            .call_blocking(|c| c.query_row("SELECT version FROM schema_version", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION as i64);
    }

    #[tokio::test]
    async fn jobs_run_in_the_order_they_were_queued_awaited_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .call_blocking(|c| c.execute_batch("CREATE TEMP TABLE seen (n INTEGER NOT NULL)"))
            .unwrap();
        let mut awaited = Vec::new();
        for n in 0..50_i64 {
            let job = store.request(move |c| c.execute("INSERT INTO seen (n) VALUES (?1)", [n]));
            // Every other reply is dropped: fire-and-forget jobs still run, in their place.
            if n % 2 == 0 {
                awaited.push(job);
            }
        }
        for job in awaited {
            assert_eq!(job.wait().await.unwrap(), 1);
        }
        let seen: Vec<i64> = store
            .request(|c| {
                let mut stmt = c.prepare("SELECT n FROM seen ORDER BY rowid")?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                rows.collect()
            })
            .wait()
            .await
            .unwrap();
        assert_eq!(seen, (0..50).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_failing_job_names_the_file_and_a_panicking_one_does_not_stop_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let e = store
            .request(|c| c.execute("INSERT INTO no_such_table VALUES (1)", []))
            .wait()
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Sqlite { .. }), "{e:?}");
        let e = e.to_string();
        assert!(
            e.starts_with(&format!("state store {}: ", store.path().display())),
            "{e}"
        );
        assert!(e.contains("no_such_table"), "{e}");
        let panicked = store
            .request(|_| -> rusqlite::Result<()> { panic!("a bug in a job") })
            .wait()
            .await
            .unwrap_err();
        assert!(matches!(panicked, StoreError::Closed), "{panicked:?}");
        let after: i64 = store
            .request(|c| c.query_row("SELECT 41 + 1", [], |r| r.get(0)))
            .wait()
            .await
            .unwrap();
        assert_eq!(after, 42, "the store thread survived the panic");
        assert_eq!(store.call_blocking(|_| Ok(7)).unwrap(), 7);
    }
}
