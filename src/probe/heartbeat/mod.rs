//! The `heartbeat` kind: batch jobs push pings, canaryd notices when they stop.
//!
//! A job calls `/ping/<check>` when it succeeds (or `/ping/<check>/<exit code>`, or
//! `/ping/<check>/fail`), and optionally `/ping/<check>/start` when it begins. The API hands each
//! ping to the [`Book`], which updates its in-memory row and writes it through to the state store
//! at once. Each scheduled run of the check ([`HeartbeatProbe`]) judges that row against the
//! check's schedule with [`evaluate`], using a [`Clock`] that tests can set.
//!
//! # When is a job late?
//!
//! A run is *due* one `every` after the last finish (any result), or, with `cron`, at the first
//! scheduled time after the last finish. Before the first finish, "the last finish" is when
//! canaryd first knew the check (kept in the store, so a restart does not reset it). The check is
//! **late** once `grace` has passed since the due time.
//!
//! A run in progress (a `/start` newer than the last finish) is not late while it may still
//! finish: lateness waits until its start plus `max_runtime`, or, without `max_runtime`, one
//! period after its start (`every`, or the next scheduled time) — plus grace. A run that goes past
//! `max_runtime` fails the check as **running too long**, at once.
//!
//! A finish that reported failure (`/fail`, non-zero exit code) fails the check as **job failed**
//! until the next successful finish; it is not late (the job did report), so alert rules can tell
//! "the job broke" (`failed && !late`) from "the job did not run" (`late`).

pub mod def;
pub mod rows;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use chrono_tz::Tz;

use super::{BoxFuture, CheckResult, Probe, Reason, RunContext};
use crate::clock::Clock;
use crate::config::template::Secret;
use crate::store::{Store, StoreError};
use rows::{load_heartbeats, save_heartbeat, save_heartbeats_blocking, HeartbeatRow, RunResult};

/// Bytes of a ping's body kept (its tail: the end of a job's log says why it failed).
pub const BODY_KEEP: usize = 10 * 1024;

/// Bytes of a ping's body read at most; a bigger body is refused with 413 and not recorded.
pub const BODY_READ_LIMIT: usize = 1024 * 1024;

/// When runs are expected.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// A run every so often, measured from the last finish.
    Every(Duration),
    /// Runs at the times a crontab line names, in a time zone.
    Cron {
        /// The expression as written.
        expr: String,
        /// The parsed expression.
        cron: Box<croner::Cron>,
        /// The zone the expression's wall-clock times are in.
        tz: Tz,
    },
}

/// A time as chrono's UTC time; `None` outside chrono's range (or before 1970), where its own
/// conversion would panic.
fn utc(t: SystemTime) -> Option<chrono::DateTime<chrono::Utc>> {
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    chrono::DateTime::from_timestamp(i64::try_from(d.as_secs()).ok()?, d.subsec_nanos())
}

/// Parses a five-field crontab expression (or a `@daily`-style nickname), as cron does.
pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    use croner::parser::{CronParser, Seconds, Year};
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| e.to_string())
}

impl Schedule {
    /// The first time a run is due after `t`: `t + every`, or the first scheduled time strictly
    /// after `t`. `None` when the expression never fires again.
    pub fn next_after(&self, t: SystemTime) -> Option<SystemTime> {
        match self {
            Schedule::Every(every) => t.checked_add(*every),
            Schedule::Cron { cron, tz, .. } => {
                let local = utc(t)?.with_timezone(tz);
                cron.find_next_occurrence(&local, false)
                    .ok()
                    .map(SystemTime::from)
            }
        }
    }

    /// The shortest gap between runs: `every`, or the smallest gap among the next scheduled
    /// times after `from` (what the default grace is a tenth of).
    pub fn shortest_period(&self, from: SystemTime) -> Option<Duration> {
        match self {
            Schedule::Every(every) => Some(*every),
            Schedule::Cron { .. } => {
                let mut t = self.next_after(from)?;
                let mut shortest: Option<Duration> = None;
                for _ in 0..16 {
                    let next = self.next_after(t)?;
                    let gap = next.duration_since(t).unwrap_or_default();
                    shortest = Some(shortest.map_or(gap, |s| s.min(gap)));
                    t = next;
                }
                shortest
            }
        }
    }

    fn tz(&self) -> Option<Tz> {
        match self {
            Schedule::Every(_) => None,
            Schedule::Cron { tz, .. } => Some(*tz),
        }
    }
}

/// A validated heartbeat check.
#[derive(Debug, Clone)]
pub struct HeartbeatSpec {
    /// When runs are expected.
    pub schedule: Schedule,
    /// How long after a due time a missing finish becomes late.
    pub grace: Duration,
    /// A started run must finish within this.
    pub max_runtime: Option<Duration>,
    /// Pings must carry `Authorization: Bearer <token>` when set.
    pub token: Option<Secret>,
}

/// Default grace: a tenth of the shortest period, at least 5 s and at most 1 h.
pub fn default_grace(period: Option<Duration>) -> Duration {
    period
        .map(|p| p / 10)
        .unwrap_or(Duration::from_secs(3600))
        .clamp(Duration::from_secs(5), Duration::from_secs(3600))
}

/// What a job says with one ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ping {
    /// `/ping/<check>`: a run succeeded.
    Success,
    /// `/ping/<check>/start`: a run began.
    Start,
    /// `/ping/<check>/fail`: a run failed.
    Fail,
    /// `/ping/<check>/<code>`: a run ended with this exit code (0 is success).
    Exit(u8),
}

impl Ping {
    /// The ping a path suffix names: `start`, `fail` or an exit code 0-255; `None` otherwise.
    pub fn from_suffix(s: &str) -> Option<Ping> {
        match s {
            "start" => Some(Ping::Start),
            "fail" => Some(Ping::Fail),
            _ if !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse::<u8>().ok().map(Ping::Exit)
            }
            _ => None,
        }
    }

    /// For logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Ping::Success => "success",
            Ping::Start => "start",
            Ping::Fail => "fail",
            Ping::Exit(0) => "exit 0",
            Ping::Exit(_) => "exit non-zero",
        }
    }

    /// Applies this ping, received at `now` with `body`, to a row.
    pub fn apply(self, row: &mut HeartbeatRow, now: SystemTime, body: &[u8]) {
        row.ping_count = row.ping_count.saturating_add(1);
        row.last_ping = Some(now);
        row.last_body = body_tail(body);
        let (result, code) = match self {
            Ping::Start => {
                row.last_start = Some(now);
                return;
            }
            Ping::Success => (RunResult::Ok, Some(0)),
            Ping::Exit(0) => (RunResult::Ok, Some(0)),
            Ping::Exit(c) => (RunResult::Fail, Some(c)),
            Ping::Fail => (RunResult::Fail, None),
        };
        row.last_finish = Some(now);
        row.last_result = Some(result);
        row.last_exit_code = code;
        if result == RunResult::Ok {
            row.last_success = Some(now);
        }
    }
}

/// A ping's body with the check's token, in every encoding (raw, JSON-escaped, percent-encoded,
/// base64), replaced by `<redacted>`: a job that logs its own curl command must not publish the
/// token through `last_body`. The whole body is redacted before its tail is kept, so the cut
/// never leaves part of a token behind.
pub fn without_token<'b>(body: &'b [u8], token: Option<&Secret>) -> std::borrow::Cow<'b, [u8]> {
    match token {
        Some(t) if !body.is_empty() => {
            match crate::redact::Redactor::cached(t.expose()).apply_bytes(body) {
                std::borrow::Cow::Borrowed(_) => std::borrow::Cow::Borrowed(body),
                std::borrow::Cow::Owned(b) => std::borrow::Cow::Owned(b),
            }
        }
        _ => std::borrow::Cow::Borrowed(body),
    }
}

/// The last [`BODY_KEEP`] bytes of a body as text (invalid UTF-8 replaced), `None` when empty.
pub fn body_tail(body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let mut tail = &body[body.len().saturating_sub(BODY_KEEP)..];
    // Do not start in the middle of a character.
    while let [b, rest @ ..] = tail {
        if b & 0b1100_0000 != 0b1000_0000 {
            break;
        }
        tail = rest;
    }
    let text = String::from_utf8_lossy(tail);
    if text.len() <= BODY_KEEP {
        return Some(text.into_owned());
    }
    // Replacement characters made it longer: cut again, at a character boundary.
    let mut start = text.len() - BODY_KEEP;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    Some(text[start..].to_string())
}

/// The judgement of one heartbeat row at one time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// No finish by the deadline.
    pub late: bool,
    /// The last finished run reported failure.
    pub failed: bool,
    /// A run is in progress beyond `max_runtime`.
    pub too_long: bool,
    /// How long the run in progress has run (`None`: no run in progress).
    pub running_for: Option<Duration>,
    /// Time since the last ping of any kind (since first seen when there was none).
    pub since_last: Duration,
    /// When the next finish was due (`None`: a cron that never fires again).
    pub due: Option<SystemTime>,
    /// When the check becomes (or became) late.
    pub deadline: Option<SystemTime>,
}

/// Judges a row at `now` (see the module docs for the rules).
pub fn evaluate(spec: &HeartbeatSpec, row: &HeartbeatRow, now: SystemTime) -> Verdict {
    let since = |t: SystemTime| now.duration_since(t).unwrap_or_default();
    let base = row.last_finish.unwrap_or(row.first_seen);
    let due = spec.schedule.next_after(base);
    let running_since = row
        .last_start
        .filter(|s| row.last_finish.is_none_or(|f| *s > f));
    let running_for = running_since.map(since);
    // A run in progress may still finish: its own end of allowed time moves the deadline.
    let run_end = running_since.and_then(|s| match spec.max_runtime {
        Some(m) => s.checked_add(m),
        None => spec.schedule.next_after(s),
    });
    let deadline = match (due, run_end) {
        (Some(d), Some(r)) => Some(d.max(r)),
        (d, None) => d,
        (None, Some(_)) => None,
    }
    .and_then(|d| d.checked_add(spec.grace));
    Verdict {
        late: deadline.is_some_and(|d| now >= d),
        failed: row.last_result == Some(RunResult::Fail),
        too_long: match (running_for, spec.max_runtime) {
            (Some(r), Some(m)) => r > m,
            _ => false,
        },
        running_for,
        since_last: since(row.last_ping.unwrap_or(row.first_seen)),
        due,
        deadline,
    }
}

fn fmt_d(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// A time as RFC 3339, in the schedule's zone for cron (so it reads like the crontab line).
fn fmt_t(t: SystemTime, tz: Option<Tz>) -> String {
    match (utc(t), tz) {
        (Some(t), None) => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        (Some(t), Some(tz)) => t
            .with_timezone(&tz)
            .format("%Y-%m-%dT%H:%M:%S%:z")
            .to_string(),
        // Only a damaged store holds such times: say what it is rather than fail.
        (None, _) => format!("{:?}", t),
    }
}

/// "expected every 1day + 30m grace" / "expected by <due> (cron "0 2 * * *" in Europe/Paris) + 30m grace"
fn expectation(spec: &HeartbeatSpec, due: Option<SystemTime>) -> String {
    let grace = fmt_d(spec.grace);
    match &spec.schedule {
        Schedule::Every(every) => format!("expected every {} + {grace} grace", fmt_d(*every)),
        Schedule::Cron { expr, tz, .. } => match due {
            Some(due) => format!(
                "expected by {} (cron {expr:?} in {tz}) + {grace} grace",
                fmt_t(due, Some(*tz))
            ),
            None => format!("cron {expr:?} in {tz} never fires again"),
        },
    }
}

/// The check's result for a verdict: reason running_too_long, then job_failed, then late.
pub fn result(
    spec: &HeartbeatSpec,
    row: &HeartbeatRow,
    v: &Verdict,
    started_at: SystemTime,
) -> CheckResult {
    let tz = spec.schedule.tz();
    let mut problems: Vec<(Reason, String)> = Vec::new();
    if v.too_long {
        if let (Some(start), Some(running), Some(max)) =
            (row.last_start, v.running_for, spec.max_runtime)
        {
            problems.push((
                Reason::RunningTooLong,
                format!(
                    "running for {} since {}, longer than max_runtime {}",
                    fmt_d(running),
                    fmt_t(start, tz),
                    fmt_d(max)
                ),
            ));
        }
    }
    if v.failed {
        let at = row.last_finish.map(|t| fmt_t(t, tz)).unwrap_or_default();
        let how = match row.last_exit_code {
            Some(code) => format!("exit code {code}"),
            None => "reported by /fail".to_string(),
        };
        problems.push((
            Reason::JobFailed,
            format!("the last run failed at {at} ({how})"),
        ));
    }
    if v.late {
        let what = match (v.running_for, row.last_finish) {
            (Some(_), _) => format!(
                "the run started at {} has not finished",
                row.last_start.map(|t| fmt_t(t, tz)).unwrap_or_default()
            ),
            (None, Some(f)) => format!("no ping since {}", fmt_t(f, tz)),
            (None, None) => format!("no ping yet (watched since {})", fmt_t(row.first_seen, tz)),
        };
        problems.push((
            Reason::Late,
            format!("{what}, {}", expectation(spec, v.due)),
        ));
    }
    let mut observations = vec![
        ("late".to_string(), if v.late { 1.0 } else { 0.0 }),
        ("since_last".to_string(), v.since_last.as_secs_f64()),
        (
            "running_for".to_string(),
            v.running_for.unwrap_or_default().as_secs_f64(),
        ),
    ];
    if let Some(code) = row.last_exit_code {
        observations.push(("last_exit_code".to_string(), f64::from(code)));
    }
    let reason = problems.first().map(|(r, _)| *r);
    let message = (!problems.is_empty()).then(|| {
        problems
            .iter()
            .map(|(_, m)| m.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    });
    CheckResult {
        success: problems.is_empty(),
        reason,
        message,
        duration: Duration::ZERO,
        started_at,
        steps: Vec::new(),
        observations,
        detail: None,
        attempts: 1,
    }
}

/// Where a [`Book`] keeps its rows besides memory.
#[derive(Debug)]
enum Backing {
    /// Nowhere (tests, `build_probe` on its own).
    Memory,
    /// The daemon's store: every change is written through.
    Store(Store),
    /// `canaryd probe`: the daemon's store read once, on first use; nothing is written.
    Offline {
        dir: PathBuf,
        loaded: tokio::sync::OnceCell<()>,
    },
}

/// Every heartbeat check's state: in memory for the probes and the API, backed by the store.
#[derive(Debug)]
pub struct Book {
    clock: Arc<dyn Clock>,
    rows: Mutex<HashMap<String, HeartbeatRow>>,
    backing: Backing,
    /// Checks whose row in memory may be newer than the store's (a save failed), each with the
    /// generation of its last failure; [`Book::save_unsaved`] writes them again.
    unsaved: Mutex<(u64, HashMap<String, u64>)>,
}

/// What became of one ping.
#[derive(Debug)]
pub struct Pinged {
    /// The row after the ping.
    pub row: HeartbeatRow,
    /// Whether it also reached the store (the in-memory state counts either way).
    pub saved: Result<(), StoreError>,
}

impl Book {
    /// A book kept in memory only.
    pub fn memory(clock: Arc<dyn Clock>) -> Book {
        Book {
            clock,
            rows: Mutex::new(HashMap::new()),
            backing: Backing::Memory,
            unsaved: Mutex::default(),
        }
    }

    /// A book loaded from the store and written through to it. Blocks (startup).
    pub fn open(store: Store, clock: Arc<dyn Clock>) -> Result<Book, StoreError> {
        let rows = load_heartbeats(&store)?
            .into_iter()
            .map(|r| (r.check.clone(), r))
            .collect();
        Ok(Book {
            clock,
            rows: Mutex::new(rows),
            backing: Backing::Store(store),
            unsaved: Mutex::default(),
        })
    }

    /// A book that reads the store under `state_dir` on first use, if it exists, and never
    /// writes (for one-shot commands: `canaryd check` never touches it).
    pub fn offline(state_dir: PathBuf, clock: Arc<dyn Clock>) -> Book {
        Book {
            clock,
            rows: Mutex::new(HashMap::new()),
            backing: Backing::Offline {
                dir: state_dir,
                loaded: tokio::sync::OnceCell::new(),
            },
            unsaved: Mutex::default(),
        }
    }

    /// The book's clock (shared with alerting, so tests move one clock).
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// The book's clock, to the millisecond (what the store keeps, so a time reads the same
    /// before and after a restart).
    pub fn now(&self) -> SystemTime {
        let now = self.clock.now();
        match now.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => now - Duration::from_nanos(u64::from(d.subsec_nanos() % 1_000_000)),
            Err(_) => now,
        }
    }

    /// The store this book writes to, if any.
    pub fn store(&self) -> Option<&Store> {
        match &self.backing {
            Backing::Store(s) => Some(s),
            _ => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HeartbeatRow>> {
        self.rows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A check's state.
    pub fn get(&self, check: &str) -> Option<HeartbeatRow> {
        self.lock().get(check).cloned()
    }

    /// Rows for checks not seen before, first seen now (kept in memory, not yet saved).
    fn add_new<'a>(&self, checks: impl IntoIterator<Item = &'a str>) -> Vec<HeartbeatRow> {
        let now = self.now();
        let mut rows = self.lock();
        let mut added = Vec::new();
        for name in checks {
            if !rows.contains_key(name) {
                let row = HeartbeatRow::new(name, now);
                rows.insert(name.to_string(), row.clone());
                added.push(row);
            }
        }
        added
    }

    /// Records "first seen now" for heartbeat checks the book does not know yet. Blocks on the
    /// store (startup).
    pub fn track_blocking<'a>(
        &self,
        checks: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), StoreError> {
        let added = self.add_new(checks);
        match (&self.backing, added.is_empty()) {
            (Backing::Store(store), false) => save_heartbeats_blocking(store, added),
            _ => Ok(()),
        }
    }

    /// [`Book::track_blocking`] for a running daemon (reload).
    pub async fn track<'a>(
        &self,
        checks: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), StoreError> {
        let added = self.add_new(checks);
        if let Backing::Store(store) = &self.backing {
            for row in added {
                save_heartbeat(store, row).wait().await?;
            }
        }
        Ok(())
    }

    /// Records a ping now: in memory at once, then in the store.
    pub async fn ping(&self, check: &str, ping: Ping, body: &[u8]) -> Pinged {
        let now = self.now();
        let (row, pending) = {
            let mut rows = self.lock();
            let row = rows
                .entry(check.to_string())
                .or_insert_with(|| HeartbeatRow::new(check, now));
            ping.apply(row, now, body);
            let row = row.clone();
            // Queued under the lock: the store sees the rows in the order memory did.
            let pending = match &self.backing {
                Backing::Store(store) => Some(save_heartbeat(store, row.clone())),
                _ => None,
            };
            (row, pending)
        };
        let saved = match pending {
            Some(p) => p.wait().await,
            None => Ok(()),
        };
        if saved.is_err() {
            self.mark_unsaved(check);
        }
        Pinged { row, saved }
    }

    fn unsaved_lock(&self) -> std::sync::MutexGuard<'_, (u64, HashMap<String, u64>)> {
        self.unsaved.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn mark_unsaved(&self, check: &str) {
        let mut u = self.unsaved_lock();
        u.0 += 1;
        let generation = u.0;
        u.1.insert(check.to_string(), generation);
    }

    /// Checks whose latest state is in memory only (a save failed and was not redone yet).
    pub fn unsaved(&self) -> usize {
        self.unsaved_lock().1.len()
    }

    /// Saves again the rows whose save failed (their current state, queued under the same lock
    /// as pings, so a newer ping's row is never overwritten by an older one). The daemon calls
    /// it every second ([`Book::keep_saving`]).
    pub async fn save_unsaved(&self) {
        let Backing::Store(store) = &self.backing else {
            return;
        };
        let dirty: Vec<(String, u64)> = self
            .unsaved_lock()
            .1
            .iter()
            .map(|(k, g)| (k.clone(), *g))
            .collect();
        for (check, generation) in dirty {
            let pending = {
                let rows = self.lock();
                rows.get(&check)
                    .map(|row| save_heartbeat(store, row.clone()))
            };
            let saved = match pending {
                Some(p) => p.wait().await.is_ok(),
                None => true,
            };
            if !saved {
                // Still failing: the next round tries again.
                return;
            }
            let mut u = self.unsaved_lock();
            if u.1.get(&check) == Some(&generation) {
                u.1.remove(&check);
                tracing::info!(check = %check, "heartbeat state saved after the store took writes again");
            }
        }
    }

    /// Runs [`Book::save_unsaved`] every second while the book lives.
    pub fn keep_saving(self: &Arc<Self>) {
        let book = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let Some(book) = book.upgrade() else { return };
                if book.unsaved() > 0 {
                    book.save_unsaved().await;
                }
            }
        });
    }

    /// The row a run judges: loaded from disk first in offline mode; a check the book does not
    /// know (a run racing a reload) starts being watched now.
    async fn row_for_run(&self, check: &str) -> HeartbeatRow {
        if let Backing::Offline { dir, loaded } = &self.backing {
            loaded
                .get_or_init(|| async {
                    let dir = dir.clone();
                    let read = tokio::task::spawn_blocking(move || {
                        Store::open_existing(&dir)?
                            .map(|s| load_heartbeats(&s))
                            .transpose()
                    })
                    .await;
                    match read {
                        Ok(Ok(rows)) => {
                            let mut map = self.lock();
                            for r in rows.into_iter().flatten() {
                                map.insert(r.check.clone(), r);
                            }
                        }
                        Ok(Err(e)) => tracing::warn!("cannot read heartbeat state: {e}"),
                        Err(_) => tracing::warn!("cannot read heartbeat state: the reader failed"),
                    }
                })
                .await;
        }
        if let Some(row) = self.get(check) {
            return row;
        }
        let added = self.add_new([check]);
        if let (Backing::Store(store), Some(row)) = (&self.backing, added.first()) {
            if let Err(e) = save_heartbeat(store, row.clone()).wait().await {
                tracing::warn!(check, "cannot save heartbeat state: {e}");
            }
        }
        self.get(check)
            .unwrap_or_else(|| HeartbeatRow::new(check, self.now()))
    }
}

/// Judges one heartbeat check's state on each scheduled run.
pub struct HeartbeatProbe {
    check: String,
    spec: Arc<HeartbeatSpec>,
    book: Arc<Book>,
}

impl HeartbeatProbe {
    /// A probe for the check named `check`, reading `book`.
    pub fn new(check: &str, spec: Arc<HeartbeatSpec>, book: Arc<Book>) -> HeartbeatProbe {
        HeartbeatProbe {
            check: check.to_string(),
            spec,
            book,
        }
    }
}

impl Probe for HeartbeatProbe {
    fn run<'a>(&'a self, _ctx: RunContext) -> BoxFuture<'a, CheckResult> {
        Box::pin(async move {
            let row = self.book.row_for_run(&self.check).await;
            let now = self.book.now();
            let verdict = evaluate(&self.spec, &row, now);
            result(&self.spec, &row, &verdict, now)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const H: u64 = 3600;
    const DAY: u64 = 86400;

    /// 2026-06-01T00:00:00Z
    const T0: u64 = 1_780_272_000;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    fn every(every: u64, grace: u64, max_runtime: Option<u64>) -> HeartbeatSpec {
        HeartbeatSpec {
            schedule: Schedule::Every(Duration::from_secs(every)),
            grace: Duration::from_secs(grace),
            max_runtime: max_runtime.map(Duration::from_secs),
            token: None,
        }
    }

    fn cron(expr: &str, tz: &str, grace: u64) -> HeartbeatSpec {
        HeartbeatSpec {
            schedule: Schedule::Cron {
                expr: expr.into(),
                cron: Box::new(parse_cron(expr).unwrap()),
                tz: tz.parse().unwrap(),
            },
            grace: Duration::from_secs(grace),
            max_runtime: None,
            token: None,
        }
    }

    fn pinged(row: &mut HeartbeatRow, ping: Ping, t: u64) {
        ping.apply(row, at(t), b"");
    }

    #[test]
    fn on_time_until_every_plus_grace_has_passed_since_the_last_finish() {
        let spec = every(DAY, 30 * 60, None);
        let mut row = HeartbeatRow::new("n", at(T0));
        pinged(&mut row, Ping::Success, T0 + H);
        let v = evaluate(&spec, &row, at(T0 + H + DAY + 30 * 60 - 1));
        assert!(!v.late && !v.failed);
        assert_eq!(v.deadline, Some(at(T0 + H + DAY + 30 * 60)));
        let v = evaluate(&spec, &row, at(T0 + H + DAY + 30 * 60));
        assert!(v.late);
        assert_eq!(v.since_last, Duration::from_secs(DAY + 30 * 60));
        let r = result(&spec, &row, &v, at(T0 + H + DAY + 30 * 60));
        assert_eq!(r.reason, Some(Reason::Late));
        assert_eq!(
            r.message.as_deref(),
            Some("no ping since 2026-06-01T01:00:00Z, expected every 1day + 30m grace")
        );
    }

    #[test]
    fn a_check_that_never_got_a_ping_is_late_one_period_and_grace_after_first_seen() {
        let spec = every(H, 60, None);
        let row = HeartbeatRow::new("n", at(T0));
        assert!(!evaluate(&spec, &row, at(T0 + H + 59)).late);
        let v = evaluate(&spec, &row, at(T0 + H + 60));
        assert!(v.late);
        let r = result(&spec, &row, &v, at(T0 + H + 60));
        assert_eq!(
            r.message.as_deref(),
            Some("no ping yet (watched since 2026-06-01T00:00:00Z), expected every 1h + 1m grace")
        );
        // No finish yet: no exit code variable rather than a made-up one.
        assert!(!r.observations.iter().any(|(k, _)| k == "last_exit_code"));
    }

    #[test]
    fn a_run_in_progress_postpones_lateness_until_its_max_runtime() {
        let spec = every(H, 60, Some(2 * H));
        let mut row = HeartbeatRow::new("n", at(T0));
        pinged(&mut row, Ping::Success, T0);
        pinged(&mut row, Ping::Start, T0 + H - 10);
        // Due at T0+1h, but the run started in time may take up to 2h.
        let v = evaluate(&spec, &row, at(T0 + 2 * H));
        assert!(!v.late && !v.too_long);
        assert_eq!(v.running_for, Some(Duration::from_secs(H + 10)));
        // Past max_runtime: running too long at once, late after grace.
        let v = evaluate(&spec, &row, at(T0 + 3 * H - 9));
        assert!(v.too_long && !v.late);
        let r = result(&spec, &row, &v, at(T0 + 3 * H - 9));
        assert_eq!(r.reason, Some(Reason::RunningTooLong));
        assert_eq!(
            r.message.as_deref(),
            Some("running for 2h 1s since 2026-06-01T00:59:50Z, longer than max_runtime 2h")
        );
        let v = evaluate(&spec, &row, at(T0 + 3 * H - 10 + 60));
        assert!(v.too_long && v.late);
        // It finishes: on time again, measured from this finish.
        pinged(&mut row, Ping::Success, T0 + 3 * H);
        let v = evaluate(&spec, &row, at(T0 + 3 * H + 1));
        assert!(!v.late && !v.too_long && v.running_for.is_none());
    }

    #[test]
    fn a_hung_run_without_max_runtime_is_late_one_period_after_it_started() {
        let spec = every(H, 60, None);
        let mut row = HeartbeatRow::new("n", at(T0));
        pinged(&mut row, Ping::Start, T0 + 30 * 60);
        assert!(!evaluate(&spec, &row, at(T0 + H + 30 * 60 + 59)).late);
        assert!(evaluate(&spec, &row, at(T0 + H + 30 * 60 + 60)).late);
    }

    #[test]
    fn a_reported_failure_fails_the_check_until_the_next_success() {
        let spec = every(DAY, 60, None);
        let mut row = HeartbeatRow::new("n", at(T0));
        pinged(&mut row, Ping::Exit(3), T0 + 10);
        let v = evaluate(&spec, &row, at(T0 + 20));
        assert!(v.failed && !v.late);
        let r = result(&spec, &row, &v, at(T0 + 20));
        assert_eq!(r.reason, Some(Reason::JobFailed));
        assert_eq!(
            r.message.as_deref(),
            Some("the last run failed at 2026-06-01T00:00:10Z (exit code 3)")
        );
        assert!(r.observations.contains(&("last_exit_code".into(), 3.0)));
        pinged(&mut row, Ping::Fail, T0 + 30);
        let r = result(
            &spec,
            &row,
            &evaluate(&spec, &row, at(T0 + 40)),
            at(T0 + 40),
        );
        assert!(r.message.unwrap().ends_with("(reported by /fail)"));
        // A new run starting does not clear the failure; its success does.
        pinged(&mut row, Ping::Start, T0 + 50);
        assert!(evaluate(&spec, &row, at(T0 + 60)).failed);
        pinged(&mut row, Ping::Exit(0), T0 + 70);
        let v = evaluate(&spec, &row, at(T0 + 80));
        assert!(!v.failed && !v.late);
        assert_eq!(row.last_success, Some(at(T0 + 70)));
        assert_eq!(row.ping_count, 4);
    }

    #[test]
    fn cron_due_times_are_wall_clock_times_in_the_checks_zone() {
        // 02:00 in Paris is 00:00Z in summer (CEST, +2) and 01:00Z in winter (CET, +1).
        let spec = cron("0 2 * * *", "Europe/Paris", 30 * 60);
        // First seen 2026-06-01T00:30Z = 02:30 Paris: today's run is past, tomorrow's is due.
        let row = HeartbeatRow::new("n", at(T0 + 30 * 60));
        let v = evaluate(&spec, &row, at(T0 + DAY + 29 * 60));
        assert_eq!(v.due, Some(at(T0 + DAY)));
        assert!(!v.late);
        let v = evaluate(&spec, &row, at(T0 + DAY + 30 * 60));
        assert!(v.late);
        let r = result(&spec, &row, &v, at(T0 + DAY + 30 * 60));
        assert_eq!(
            r.message.as_deref(),
            Some("no ping yet (watched since 2026-06-01T02:30:00+02:00), expected by 2026-06-02T02:00:00+02:00 (cron \"0 2 * * *\" in Europe/Paris) + 30m grace")
        );
        // The run of 2026-06-02 finished at 02:10 Paris: nothing due until 2026-06-03 02:00.
        let mut row = row;
        pinged(&mut row, Ping::Success, T0 + DAY + 10 * 60);
        assert!(!evaluate(&spec, &row, at(T0 + 2 * DAY + 29 * 60)).late);
        assert!(evaluate(&spec, &row, at(T0 + 2 * DAY + 30 * 60)).late);
        // In winter the same line means 01:00Z: 2026-12-01T01:00Z.
        let dec = 1_796_083_200; // 2026-12-01T00:00:00Z
        let row = HeartbeatRow::new("n", at(dec - 3 * H));
        assert_eq!(evaluate(&spec, &row, at(dec)).due, Some(at(dec + H)));
    }

    #[test]
    fn a_cron_finish_counts_for_the_next_scheduled_time_only() {
        // Every 15 minutes; a run that finished at :14 does not excuse the :15 and :30 runs.
        let spec = cron("*/15 * * * *", "UTC", 60);
        let mut row = HeartbeatRow::new("n", at(T0 - H));
        pinged(&mut row, Ping::Success, T0 + 14 * 60);
        let v = evaluate(&spec, &row, at(T0 + 16 * 60));
        assert_eq!(v.due, Some(at(T0 + 15 * 60)));
        assert!(v.late);
    }

    #[test]
    fn default_grace_is_a_tenth_of_the_period_within_bounds() {
        assert_eq!(
            default_grace(Some(Duration::from_secs(DAY))),
            Duration::from_secs(H)
        );
        assert_eq!(
            default_grace(Some(Duration::from_secs(600))),
            Duration::from_secs(60)
        );
        assert_eq!(
            default_grace(Some(Duration::from_secs(10))),
            Duration::from_secs(5)
        );
        let weekdays = cron("0 2 * * 1-5", "UTC", 1).schedule;
        assert_eq!(
            weekdays.shortest_period(at(T0)),
            Some(Duration::from_secs(DAY))
        );
        let quarter = cron("*/15 * * * *", "UTC", 1).schedule;
        assert_eq!(
            default_grace(quarter.shortest_period(at(T0))),
            Duration::from_secs(90)
        );
    }

    #[test]
    fn times_no_calendar_can_hold_are_judged_without_panicking() {
        // What a damaged store or an absurd `every` could produce.
        let far = UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
        let mut row = HeartbeatRow::new("n", far);
        row.last_start = Some(far);
        row.last_finish = Some(UNIX_EPOCH);
        for spec in [
            cron("0 2 * * *", "Europe/Paris", 60),
            every(u64::MAX / 2, 60, Some(u64::MAX / 2)),
        ] {
            let v = evaluate(&spec, &row, far);
            assert!(!result(&spec, &row, &v, far).observations.is_empty());
        }
    }

    #[test]
    fn ping_suffixes() {
        assert_eq!(Ping::from_suffix("start"), Some(Ping::Start));
        assert_eq!(Ping::from_suffix("fail"), Some(Ping::Fail));
        assert_eq!(Ping::from_suffix("0"), Some(Ping::Exit(0)));
        assert_eq!(Ping::from_suffix("255"), Some(Ping::Exit(255)));
        for bad in ["256", "-1", "+1", "1000", "", "x", "0x1", " 1", "start/"] {
            assert_eq!(Ping::from_suffix(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn bodies_keep_their_last_10_kib_as_text() {
        assert_eq!(body_tail(b""), None);
        assert_eq!(body_tail(b"done").as_deref(), Some("done"));
        let mut big = vec![b'a'; BODY_KEEP * 3];
        big.extend_from_slice(b"the end");
        let t = body_tail(&big).unwrap();
        assert_eq!(t.len(), BODY_KEEP);
        assert!(t.ends_with("aaathe end"));
        // A cut inside a multi-byte character starts at the next whole one.
        let mut s = "é".repeat(BODY_KEEP).into_bytes();
        s.push(b'!');
        let t = body_tail(&s).unwrap();
        assert!(t.len() <= BODY_KEEP && t.ends_with("éé!") && t.starts_with('é'));
        // Invalid bytes become replacement characters, still within the cap.
        let t = body_tail(&vec![0xff; BODY_KEEP + 5]).unwrap();
        assert!(t.len() <= BODY_KEEP && t.chars().all(|c| c == '\u{fffd}'));
    }

    #[test]
    fn the_token_is_stripped_from_a_body_in_every_encoding() {
        let token = Secret::new("tok\"en\\ #&=+/é-42");
        let json = serde_json::to_string(token.expose()).unwrap();
        let body = format!(
            "curl -H 'Authorization: Bearer {}' ...\n{{\"t\":{json}}}\n?k={}\n",
            token.expose(),
            crate::redact::percent_strict(token.expose())
        );
        let mut big = vec![b'x'; BODY_KEEP];
        big.extend_from_slice(body.as_bytes());
        let out = without_token(&big, Some(&token));
        let tail = body_tail(&out).unwrap();
        assert!(
            tail.ends_with("Bearer <redacted>' ...\n{\"t\":\"<redacted>\"}\n?k=<redacted>\n"),
            "{tail}"
        );
        assert!(!tail.contains("tok"), "{tail}");
        assert_eq!(
            &*without_token(b"no token here", Some(&token)),
            b"no token here"
        );
        assert_eq!(&*without_token(b"tok", None), b"tok");
    }
}
