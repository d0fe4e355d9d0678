//! Bounds on what a configuration may ask for, and bounded reading of the files it names.
//!
//! Every value here is documented in docs/reference.md's "Limits" table; a configuration beyond one is
//! a located load error, never a crash, a hang or unbounded memory.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// Largest configuration file (daemon file or check file) read, checked before parsing.
pub const MAX_CONFIG_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Largest secret file (`${file:..}`, TOTP seeds) read.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;
/// Largest PEM file (`ca_file`, `cert_file`, `key_file`).
pub const MAX_PEM_FILE_BYTES: u64 = 1024 * 1024;

/// Most YAML events that aliases (`*name`) may replay in one file, all aliases together.
pub const MAX_ALIAS_REPLAYED_EVENTS: usize = 10_000;
/// Most checks in a whole configuration (all files together).
pub const MAX_CHECKS: usize = 10_000;
/// Most check files matched by `check_files`, all patterns together.
pub const MAX_CHECK_FILES: usize = 10_000;
/// Most entries in `check_files`.
pub const MAX_CHECK_FILE_PATTERNS: usize = 100;
/// Deepest directory level a `check_files` pattern descends to (below its literal part).
pub const MAX_GLOB_DEPTH: usize = 16;
/// Most directory entries one `check_files` pattern may look at.
pub const MAX_GLOB_ENTRIES: usize = 100_000;
/// Most steps in one http check.
pub const MAX_STEPS: usize = 100;
/// Most alert rules on one check.
pub const MAX_ALERTS: usize = 100;
/// Most labels on a check or an alert rule; most matchers on a route.
pub const MAX_LABELS: usize = 64;
/// Most annotations on an alert rule.
pub const MAX_ANNOTATIONS: usize = 64;
/// Most entries in each request map (headers, query, form), expected headers, extractions and
/// JSON assertions of one step; headers of a webhook receiver.
pub const MAX_ENTRIES: usize = 100;
/// Most receivers.
pub const MAX_RECEIVERS: usize = 100;
/// Most members (`urls`) of one Alertmanager receiver: every batch goes to each of them.
pub const MAX_ALERTMANAGER_URLS: usize = 8;
/// Most routes; most maintenance windows.
pub const MAX_ROUTES: usize = 1_000;
/// Most receivers named by one route (and by its escalation); most globs of a maintenance window.
pub const MAX_REFS: usize = 100;
/// Most queues listed by a queue check; most keys and patterns of a generic redis check.
pub const MAX_QUEUES: usize = 1_000;
/// Most Celery priority steps (Redis priorities are 0 to 255).
pub const MAX_PRIORITY_STEPS: usize = 256;
/// Longest CSS selector (`extract.css`), in bytes.
pub const MAX_CSS_LEN: usize = 1_024;
/// Deepest nesting of `(` and `[` in a CSS selector.
pub const MAX_CSS_NESTING: usize = 16;

/// Check `interval` (and `defaults.interval`).
pub const INTERVAL: (Duration, Duration) = (Duration::from_millis(100), days(7));
/// Check `timeout`, `defaults.timeout`, a request's `timeout`, queue `connect_timeout`, an
/// expectation's `max_duration` (each also at most the check's interval or timeout).
pub const TIMEOUT: (Duration, Duration) = (Duration::from_millis(1), days(7));
/// Heartbeat `every`, `grace` and `max_runtime`.
pub const HEARTBEAT: (Duration, Duration) = (Duration::from_secs(1), days(366));
/// Alert `for` and `keep_firing_for`.
pub const ALERT_HOLD: (Duration, Duration) = (Duration::ZERO, days(30));
/// Route `repeat_interval`.
pub const REPEAT_INTERVAL: (Duration, Duration) = (Duration::from_secs(60), days(30));
/// Route `escalate.after`.
pub const ESCALATE_AFTER: (Duration, Duration) = (Duration::from_secs(1), days(30));
/// Maintenance `duration`.
pub const MAINTENANCE_DURATION: (Duration, Duration) = (Duration::from_secs(1), days(366));
/// Maintenance `every` (also longer than the window's duration).
pub const MAINTENANCE_EVERY: (Duration, Duration) = (Duration::from_secs(60), days(366));
/// A check's `retries.delay` (also: every attempt and delay together within the interval).
pub const RETRY_DELAY: (Duration, Duration) = (Duration::ZERO, days(7));
/// Watchdog `every`.
pub const WATCHDOG_EVERY: (Duration, Duration) = (Duration::from_secs(1), days(1));

/// A check's `retries.count` (re-runs of a failed attempt within one interval).
pub const MAX_RETRIES: u32 = 10;
/// A canary job's `within`.
pub const CANARY_WITHIN: (Duration, Duration) = (Duration::from_millis(100), days(1));
/// A check's `depends_on` (parent checks).
pub const MAX_DEPENDS_ON: usize = 16;
/// `max_concurrency`.
pub const MAX_CONCURRENCY: u32 = 10_000;
/// Alert `consecutive`.
pub const MAX_CONSECUTIVE: u32 = 1_000;
/// Alert `window` M (the engine keeps M results per rule).
pub const MAX_WINDOW: u32 = 1_000;
/// `cert_min_days`.
pub const MAX_CERT_MIN_DAYS: u32 = 3_650;
/// `body_limit` (and `defaults.body_limit`): a response body is held in memory up to this.
pub const MAX_BODY_LIMIT: u64 = 256 * 1024 * 1024;
/// Celery priority step values.
pub const MAX_PRIORITY: u32 = 255;

const fn days(n: u64) -> Duration {
    Duration::from_secs(n * 24 * 60 * 60)
}

/// Reads a regular file of at most `cap` bytes as UTF-8.
///
/// Anything else (a FIFO, a device such as `/dev/zero`, a directory, a bigger file) is refused
/// before or while reading, so a configuration cannot make loading block or exhaust memory. The
/// error names the path and the reason, never the content.
pub fn read_capped(path: &Path, cap: u64) -> Result<String, String> {
    // Metadata first: opening a FIFO for reading blocks until a writer appears.
    check_file(path, cap)?;
    let file = open_nonblocking(path).map_err(|e| io_reason(&e))?;
    // The file may have been swapped or grown since the metadata: read one byte past the cap.
    let mut buf = Vec::new();
    file.take(cap + 1)
        .read_to_end(&mut buf)
        .map_err(|e| io_reason(&e))?;
    if buf.len() as u64 > cap {
        return Err(too_big(cap));
    }
    String::from_utf8(buf).map_err(|_| "not valid UTF-8".into())
}

/// Checks that `path` is a regular file of at most `cap` bytes (for files read later).
pub fn check_file(path: &Path, cap: u64) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| io_reason(&e))?;
    if !meta.is_file() {
        return Err(if meta.is_dir() {
            "is a directory".into()
        } else {
            "not a regular file".into()
        });
    }
    if meta.len() > cap {
        return Err(too_big(cap));
    }
    Ok(())
}

fn too_big(cap: u64) -> String {
    format!("larger than the limit of {}", fmt_bytes(cap))
}

/// `64 KiB`, `4 MiB`.
pub fn fmt_bytes(n: u64) -> String {
    if n >= 1024 * 1024 && n.is_multiple_of(1024 * 1024) {
        format!("{} MiB", n / (1024 * 1024))
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: should the path turn into a FIFO between the metadata and the open, opening
    // does not wait for a writer (and a read then finds nothing).
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::open(path)
}

/// `O_NONBLOCK` (the same value on Linux for every architecture but alpha/sparc/parisc/mips,
/// which canaryd does not build for; macOS and the BSDs use 4).
#[cfg(all(unix, target_os = "linux"))]
const NONBLOCK: i32 = 0o4000;
#[cfg(all(unix, not(target_os = "linux")))]
const NONBLOCK: i32 = 4;

/// A reader-facing reason for an I/O error.
pub fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_directories_and_big_files_are_refused() {
        assert_eq!(
            read_capped(Path::new("/dev/zero"), 10).unwrap_err(),
            "not a regular file"
        );
        assert_eq!(
            read_capped(Path::new("/tmp"), 10).unwrap_err(),
            "is a directory"
        );
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // Would block forever if opened blocking with no writer.
        assert_eq!(read_capped(&fifo, 10).unwrap_err(), "not a regular file");
        let big = dir.path().join("big");
        std::fs::write(&big, "x".repeat(11)).unwrap();
        assert_eq!(
            read_capped(&big, 10).unwrap_err(),
            "larger than the limit of 10 bytes"
        );
        std::fs::write(&big, "x".repeat(10)).unwrap();
        assert_eq!(read_capped(&big, 10).unwrap(), "x".repeat(10));
        assert_eq!(
            read_capped(&dir.path().join("nope"), 10).unwrap_err(),
            "no such file"
        );
    }
}
