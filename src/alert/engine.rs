//! The alert engine: every rule of every check, evaluated on each result of its check and on a
//! periodic tick, as a state machine inactive → pending → firing → (resolved) inactive.
//!
//! # Firing conditions
//!
//! - no condition: fires on the first result where `when` holds;
//! - `for: D`: fires once `when` has held without a break for `D` (checked on results and on
//!   ticks, so a 5 m `for` on a 10 m interval fires at the tick after 5 m, not at the next run);
//! - `consecutive: N`: fires on the N-th result in a row where `when` holds;
//! - `window: N of M`: fires when `when` held in N of the last M results, and keeps firing
//!   while it still does (hysteresis: a single good run does not resolve a flapping check).
//!
//! Pending means `when` holds (for a window: at least once in the window) but the condition
//! is not met yet. A firing alert resolves when `when` stops holding (window: fewer than N of
//! the last M), unless `keep_firing_for` is set: then only once `when` has not held for that
//! long (the tick resolves it; a new true result restarts the wait).
//!
//! # Unknown outcomes
//!
//! `when` is evaluated with three values ([`expr::eval_cond`]): a result whose outcome depends
//! on a variable with no value (a queue rate on the probe's first run) is *unknown*, and
//! changes nothing: the phase, the `consecutive` count and the `window` history stay as they
//! were (the result is not counted), the `for` clock stops until the next result where `when`
//! holds, and the tick neither fires nor resolves while the last result is unknown. Time
//! spent unknown counts towards `keep_firing_for` (it runs from the last result where `when`
//! held), but only a result where `when` does not hold resolves.
//!
//! # Reloads and restarts
//!
//! [`Engine::configure`] keeps the tracker of every rule whose identity (dedup key) and
//! definition ([`definition_hash`]: `when`, `for`, `consecutive`, `window`,
//! `keep_firing_for`) are unchanged. A changed rule starts over; if it was firing it keeps
//! firing, without a new page, until its first known result under the new definition
//! decides. A rule that left the configuration resolves once.
//!
//! Each rule's progress ([`Progress`]) is handed out by [`Engine::take_progress`] when it
//! changed (the service saves it every second and at shutdown) and restored after a restart
//! for rules whose definition is unchanged. The `for` clock stops at the last time the old
//! daemon was known alive: downtime does not count, and the clock resumes at the first result
//! after the restart where `when` holds.
//!
//! # Notifications
//!
//! The engine decides what to send and to whom; it never sends. Each decision comes back as
//! [`Effects`]: the events per receiver to put in the outbox and the alert rows to save or
//! delete, which the caller commits in one store transaction (so a page is never in the outbox
//! without its firing state, or the reverse). Firing alerts are kept in the store: after a
//! restart they are restored as firing without notifying again (the alert rows, not the
//! progress saved up to a second later, decide whether an alert fires), and resolved (with a
//! resolve to everyone who heard the trigger) if a result says so, or if their rule is gone.
//!
//! Silences and maintenance mute an alert's trigger, reminders and escalation; if it still
//! fires when the mute ends, the trigger goes out then. A resolve always goes to the receivers
//! that heard the trigger.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::depend::{self, Dependencies};
use super::route::Router;
use super::silence::{in_maintenance, Mutes, Silence};
use super::{dedup_key, to_ms, AlertConfig, AlertEvent, EventKind, Status};
use crate::config::expr;
use crate::config::AlertRule;
use crate::probe::check::Check;
use crate::probe::CheckResult;

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The condition does not hold.
    #[default]
    Inactive,
    /// It holds, but `for` / `consecutive` / `window` is not met yet.
    Pending,
    /// Firing.
    Firing,
}

impl Phase {
    /// `canary_alert_state`: 0 inactive, 1 pending, 2 firing.
    pub fn metric_value(self) -> u8 {
        match self {
            Phase::Inactive => 0,
            Phase::Pending => 1,
            Phase::Firing => 2,
        }
    }

    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Inactive => "inactive",
            Phase::Pending => "pending",
            Phase::Firing => "firing",
        }
    }
}

/// What one evaluation changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing that matters to anyone.
    None,
    /// Inactive → pending.
    Pending,
    /// Pending → inactive without firing.
    Cleared,
    /// → firing.
    Fired,
    /// Firing → inactive.
    Resolved,
}

/// What the last result said of a rule's `when`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// `when` held.
    True,
    /// `when` did not hold.
    False,
    /// `when` depends on a variable that had no value (a rate on the first run of a queue
    /// probe): the result is ignored by the rule.
    Unknown,
}

impl Outcome {
    fn of(cond: Option<bool>) -> Outcome {
        match cond {
            Some(true) => Outcome::True,
            Some(false) => Outcome::False,
            None => Outcome::Unknown,
        }
    }
}

/// The evaluation state of one rule: pure logic, time passed in.
///
/// # Unknown results
///
/// A result whose outcome is unknown neither starts, advances nor resolves the alert: phase,
/// `consecutive` count and `window` history stay exactly as they were, the `for` clock stops
/// (it resumes at the next result where `when` holds), and the tick neither fires nor resolves
/// while the last result is unknown. `keep_firing_for` keeps counting from the last result
/// where `when` held, but a resolve needs a result where it does not hold.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    phase: Phase,
    /// Pending since / firing since.
    since: Option<SystemTime>,
    consecutive: u32,
    window: VecDeque<bool>,
    /// `for` progress banked before the current run of the clock (an unknown result, a
    /// restart, stop the clock without losing what it had counted).
    held: Duration,
    /// Since when the `for` clock runs: set by a result where `when` holds while it is stopped.
    true_since: Option<SystemTime>,
    last_true: Option<SystemTime>,
    /// The last result's outcome; `None` until a result arrives (a restored or carried-over
    /// tracker waits for its first result before a tick may fire or resolve it).
    last: Option<Outcome>,
    /// Firing, but carried over from a changed definition or restored without its progress: the
    /// first known result decides (resolve if `when` does not hold, keep firing otherwise).
    undecided: bool,
}

impl Tracker {
    /// A tracker restored or carried over as firing since `since`, whose first known result
    /// decides whether it still fires (after a restart without saved progress, or a reload that
    /// changed its rule's definition).
    pub fn firing(since: SystemTime, last_true: Option<SystemTime>) -> Tracker {
        Tracker {
            phase: Phase::Firing,
            since: Some(since),
            last_true,
            undecided: true,
            ..Tracker::default()
        }
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Pending or firing since.
    pub fn since(&self) -> Option<SystemTime> {
        self.since
    }

    /// The last result's outcome (`None` before the first result).
    pub fn last(&self) -> Option<Outcome> {
        self.last
    }

    /// How long the `for` clock has counted at `now`.
    pub fn held_for(&self, now: SystemTime) -> Duration {
        let running = self
            .true_since
            .map(|t| now.duration_since(t).unwrap_or_default())
            .unwrap_or_default();
        // Saturating: restored progress is read from disk and may hold anything.
        self.held.saturating_add(running)
    }

    /// Whether the `for` clock runs (the last result held).
    pub fn clock_runs(&self) -> bool {
        self.true_since.is_some()
    }

    /// Stops the `for` clock at `at`, banking what it counted.
    fn stop_clock(&mut self, at: SystemTime) {
        if let Some(t) = self.true_since.take() {
            self.held = self
                .held
                .saturating_add(at.duration_since(t).unwrap_or_default());
        }
    }

    /// A result: `cond` is whether `when` held, `None` when that is unknown.
    pub fn observe(&mut self, rule: &AlertRule, cond: Option<bool>, now: SystemTime) -> Change {
        let outcome = Outcome::of(cond);
        self.last = Some(outcome);
        match outcome {
            Outcome::Unknown => {
                self.stop_clock(now);
                return Change::None;
            }
            Outcome::True => {
                self.consecutive = self.consecutive.saturating_add(1);
                self.true_since.get_or_insert(now);
                self.last_true = Some(now);
            }
            Outcome::False => {
                self.consecutive = 0;
                self.true_since = None;
                self.held = Duration::ZERO;
            }
        }
        if let Some((_, m)) = rule.window {
            self.window.push_back(outcome == Outcome::True);
            while self.window.len() > m as usize {
                self.window.pop_front();
            }
        }
        let change = self.settle(rule, now);
        self.undecided = false;
        change
    }

    /// Time passing without a result (`for` reached, `keep_firing_for` over). Nothing happens
    /// before the first result or while the last one is unknown.
    pub fn tick(&mut self, rule: &AlertRule, now: SystemTime) -> Change {
        match self.last {
            Some(Outcome::True | Outcome::False) => self.settle(rule, now),
            None | Some(Outcome::Unknown) => Change::None,
        }
    }

    fn window_count(&self) -> usize {
        self.window.iter().filter(|b| **b).count()
    }

    fn settle(&mut self, rule: &AlertRule, now: SystemTime) -> Change {
        let cond = self.last == Some(Outcome::True);
        let met = if let Some(d) = rule.for_ {
            cond && self.held_for(now) >= d
        } else if let Some(n) = rule.consecutive {
            self.consecutive >= n
        } else if let Some((n, _)) = rule.window {
            self.window_count() >= n as usize
        } else {
            cond
        };
        let holds = match rule.window {
            // The first result after a change of definition decides on its own.
            Some(_) if self.phase == Phase::Firing && self.undecided => cond,
            // Results missing from a history shorter than M count as holding: a firing alert
            // whose history was cut short is not resolved by the first holding result.
            Some((n, m)) if self.phase == Phase::Firing => {
                let missing = (m as usize).saturating_sub(self.window.len());
                self.window_count() + missing >= n as usize
            }
            Some(_) => self.window_count() > 0,
            None => cond,
        };
        match self.phase {
            Phase::Inactive | Phase::Pending if met => {
                self.phase = Phase::Firing;
                self.since = Some(now);
                Change::Fired
            }
            Phase::Inactive if holds => {
                self.phase = Phase::Pending;
                self.since = Some(now);
                Change::Pending
            }
            Phase::Pending if !holds => {
                self.phase = Phase::Inactive;
                self.since = None;
                Change::Cleared
            }
            Phase::Firing if !holds => {
                let kept = rule.keep_firing_for.is_some_and(|k| {
                    self.last_true
                        .is_some_and(|t| now.duration_since(t).unwrap_or_default() < k)
                });
                if kept {
                    return Change::None;
                }
                self.phase = Phase::Inactive;
                self.since = None;
                Change::Resolved
            }
            _ => Change::None,
        }
    }

    /// The tracker of a rule whose definition changed under a reload: a firing alert keeps
    /// firing (same identity, no new page) until its first known result under the new
    /// definition decides; any other progress starts over.
    fn redefined(&self) -> Tracker {
        match (self.phase, self.since) {
            (Phase::Firing, Some(since)) => Tracker::firing(since, self.last_true),
            _ => Tracker::default(),
        }
    }

    /// What is saved of the tracker (everything but the last outcome: after a restart the
    /// tracker waits for a fresh result).
    pub fn progress(&self) -> Progress {
        Progress {
            phase: self.phase,
            since_ms: self.since.map(to_ms),
            consecutive: self.consecutive,
            window: self
                .window
                .iter()
                .map(|b| if *b { 'T' } else { 'F' })
                .collect(),
            held_ms: u64::try_from(self.held.as_millis()).unwrap_or(u64::MAX),
            true_since_ms: self.true_since.map(to_ms),
            last_true_ms: self.last_true.map(to_ms),
            undecided: self.undecided,
        }
    }

    /// A tracker from saved progress (same definition), given the firing row of the alerts
    /// table (which decides whether it fires: it is written with the trigger, while progress
    /// is saved up to a second later) and `stopped`, the last time the daemon was known alive.
    /// The `for` clock stops at `stopped`: downtime does not count, and the clock resumes at
    /// the first result after the restart where `when` holds.
    pub fn restore(
        p: &Progress,
        firing: Option<&AlertRow>,
        rule: &AlertRule,
        stopped: SystemTime,
    ) -> Tracker {
        let mut window: VecDeque<bool> = p.window.chars().map(|c| c == 'T').collect();
        let keep = rule.window.map_or(0, |(_, m)| m as usize);
        while window.len() > keep {
            window.pop_front();
        }
        let mut t = Tracker {
            phase: p.phase,
            since: p.since_ms.map(super::from_ms),
            consecutive: p.consecutive,
            window,
            held: Duration::from_millis(p.held_ms),
            true_since: p.true_since_ms.map(super::from_ms),
            last_true: p.last_true_ms.map(super::from_ms),
            last: None,
            undecided: p.undecided,
        };
        t.stop_clock(stopped);
        match firing {
            Some(row) => {
                if t.phase != Phase::Firing {
                    // Fired after the last save: the saved progress is older than the trigger.
                    t.undecided = true;
                }
                t.phase = Phase::Firing;
                t.since = Some(row.event.starts_at());
                let row_true = row.last_true_ms.map(super::from_ms);
                t.last_true = t.last_true.max(row_true);
            }
            // Resolved after the last save (the resolve deleted the row): start afresh.
            None if t.phase == Phase::Firing => return Tracker::default(),
            None => {}
        }
        t
    }
}

/// A rule's saved progress (see [`Tracker::progress`]); times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// inactive, pending or firing.
    pub phase: Phase,
    /// Pending or firing since.
    #[serde(default)]
    pub since_ms: Option<i64>,
    /// Results in a row where `when` held.
    #[serde(default)]
    pub consecutive: u32,
    /// The `window` history, oldest first: `T` held, `F` did not.
    #[serde(default)]
    pub window: String,
    /// `for` progress banked while the clock was stopped.
    #[serde(default)]
    pub held_ms: u64,
    /// Since when the `for` clock ran (if it ran when saved).
    #[serde(default)]
    pub true_since_ms: Option<i64>,
    /// Last result where `when` held.
    #[serde(default)]
    pub last_true_ms: Option<i64>,
    /// Firing, waiting for its first known result to decide.
    #[serde(default)]
    pub undecided: bool,
}

/// One rule's saved progress, keyed by the alert's dedup key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressRow {
    /// Identity.
    pub dedup_key: String,
    /// [`definition_hash`] of the rule the progress belongs to: progress of a changed rule is
    /// not restored.
    pub definition: String,
    /// When it was saved (Unix ms).
    pub saved_ms: i64,
    /// The tracker's state.
    pub progress: Progress,
}

/// What the progress depends on: `when` (as written), `for`, `consecutive`, `window` and
/// `keep_firing_for`. Annotations, severity and labels are not part of it (labels and
/// severity are part of the identity instead).
pub fn definition_hash(rule: &AlertRule) -> String {
    use sha2::{Digest, Sha256};
    let text = format!(
        "when={}\nfor={:?}\nconsecutive={:?}\nwindow={:?}\nkeep_firing_for={:?}",
        rule.when,
        rule.for_.map(|d| d.as_millis()),
        rule.consecutive,
        rule.window,
        rule.keep_firing_for.map(|d| d.as_millis()),
    );
    let digest = Sha256::digest(text.as_bytes());
    data_encoding::HEXLOWER.encode(&digest[..16])
}

/// Who has been told what about a firing alert (kept in the store with it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Receivers that got the trigger (or the escalation): they get the resolve.
    pub notified: BTreeSet<String>,
    /// The trigger was held back by a silence or maintenance.
    pub suppressed: bool,
    /// The escalation went out.
    pub escalated: bool,
    /// Last trigger or reminder (Unix ms).
    pub last_reminder_ms: i64,
    /// Last lease refresh (Unix ms; not saved on its own).
    pub last_refresh_ms: i64,
    /// The trigger is held because this parent check fails (`depends_on`).
    #[serde(default)]
    pub held_by: Option<String>,
}

/// A firing alert as kept in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRow {
    /// Identity.
    pub dedup_key: String,
    /// The event last built for it (labels, annotations, summary, start).
    pub event: AlertEvent,
    /// Who knows.
    pub delivery: Delivery,
    /// Last time the condition held (Unix ms).
    pub last_true_ms: Option<i64>,
}

/// What the caller must commit: outbox events and alert rows, in one transaction.
#[derive(Debug, Default)]
pub struct Effects {
    /// (receiver, event), in order.
    pub sends: Vec<(String, AlertEvent)>,
    /// Rows to insert or replace.
    pub save: Vec<AlertRow>,
    /// Rows to delete (dedup keys).
    pub delete: Vec<String>,
    /// `canary_alert_state` changes: (check, alert, severity, phase).
    pub states: Vec<(String, String, &'static str, Phase)>,
    /// `canary_alert_suppressed` changes.
    pub held: Vec<Held>,
}

/// An alert's trigger held by a failing parent, or no longer (`canary_alert_suppressed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Check name.
    pub check: String,
    /// Alert name.
    pub alert: String,
    /// The parent that held it before (its series goes).
    pub from: Option<String>,
    /// The parent that holds it now (its series is 1).
    pub to: Option<String>,
}

impl Effects {
    /// Whether there is nothing to commit.
    pub fn is_empty(&self) -> bool {
        self.sends.is_empty() && self.save.is_empty() && self.delete.is_empty()
    }

    fn append(&mut self, mut other: Effects) {
        self.sends.append(&mut other.sends);
        self.save.append(&mut other.save);
        self.delete.append(&mut other.delete);
        self.states.append(&mut other.states);
        self.held.append(&mut other.held);
    }
}

/// One rule of one check, with its state.
#[derive(Debug)]
struct Entry {
    check: Arc<Check>,
    rule: usize,
    dedup_key: String,
    labels: BTreeMap<String, String>,
    tracker: Tracker,
    /// The event built from the last result where the condition held (or restored).
    last: Option<AlertEvent>,
    delivery: Delivery,
    /// [`definition_hash`] of the rule.
    definition: String,
    /// What was last handed out to be saved (or restored): progress is saved when it differs.
    saved: Option<(String, Progress)>,
}

impl Entry {
    fn rule(&self) -> &AlertRule {
        &self.check.alerts[self.rule]
    }
}

/// What the API shows of one alert.
#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    /// Check name.
    pub check: String,
    /// Alert name.
    pub alert: String,
    /// Severity.
    pub severity: &'static str,
    /// inactive, pending or firing.
    pub state: Phase,
    /// Identity.
    pub dedup_key: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// The condition.
    pub when: String,
    /// Pending or firing since (RFC 3339).
    pub active_since: Option<String>,
    /// Summary of the last result where the condition held.
    pub summary: Option<String>,
    /// Annotations of the last result where the condition held.
    pub annotations: BTreeMap<String, String>,
    /// Muted now by a silence or maintenance.
    pub silenced: bool,
    /// Firing, but its trigger is held because this parent check fails (`depends_on`).
    pub suppressed_by: Option<String>,
    /// The check's dependants (direct and indirect) whose last run failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dependants_failing: Vec<String>,
    /// Receivers that got the trigger.
    pub notified: Vec<String>,
    /// The escalation went out.
    pub escalated: bool,
    /// What the last result said of `when`: true, false or unknown (a variable had no value,
    /// so the result changed nothing); absent before the first result.
    pub last_evaluation: Option<Outcome>,
}

/// Progress to save in one transaction (the ticker's batch): rows to write, rows to delete,
/// and the time to record as "last known alive" (when some `for` clock runs).
#[derive(Debug, Default)]
pub struct ProgressBatch {
    /// Rows to insert or replace.
    pub save: Vec<ProgressRow>,
    /// Rows to delete (dedup keys of rules that left the configuration).
    pub delete: Vec<String>,
    /// Unix ms to record as the time the `for` clocks stop at after a crash.
    pub alive_ms: Option<i64>,
}

impl ProgressBatch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.save.is_empty() && self.delete.is_empty() && self.alive_ms.is_none()
    }
}

/// Every alert of a configuration.
#[derive(Debug)]
pub struct Engine {
    /// Every rule's entry, by check name (a result touches only its own check's).
    entries: HashMap<String, Vec<Entry>>,
    /// Restored firing alerts not yet matched to a rule (resolved by `configure`).
    restored: HashMap<String, AlertRow>,
    /// Restored progress not yet matched to a rule (deleted by `configure`).
    progress: HashMap<String, ProgressRow>,
    /// When the daemon that saved the progress was last known alive (Unix ms).
    alive_ms: Option<i64>,
    /// Progress rows to delete at the next save.
    progress_gone: Vec<String>,
    router: Router,
    maintenance: Vec<super::silence::Maintenance>,
    /// Receivers that want lease refreshes, and how often.
    refresh: HashMap<String, Duration>,
    silences: Mutes,
    /// `depends_on`: every check's last verdict, and which parent holds whose triggers.
    deps: Dependencies,
    /// `http://listen` for generator URLs.
    base_url: String,
}

impl Engine {
    /// An engine with no rules; `base_url` prefixes generator URLs (`http://127.0.0.1:9464`).
    pub fn new(base_url: impl Into<String>) -> Engine {
        Engine {
            entries: HashMap::new(),
            restored: HashMap::new(),
            progress: HashMap::new(),
            alive_ms: None,
            progress_gone: Vec::new(),
            router: Router::default(),
            maintenance: Vec::new(),
            refresh: HashMap::new(),
            silences: Mutes::default(),
            deps: Dependencies::default(),
            base_url: base_url.into(),
        }
    }

    /// Firing alerts loaded from the store, before the first [`Engine::configure`].
    pub fn restore(&mut self, rows: Vec<AlertRow>) {
        for row in rows {
            self.restored.insert(row.dedup_key.clone(), row);
        }
    }

    /// Saved progress of every rule and the time its daemon was last known alive (Unix ms),
    /// before the first [`Engine::configure`].
    pub fn restore_progress(&mut self, rows: Vec<ProgressRow>, alive_ms: Option<i64>) {
        for row in rows {
            self.progress.insert(row.dedup_key.clone(), row);
        }
        self.alive_ms = alive_ms;
    }

    /// Progress that changed since the last call, rules gone, and the time to record as alive
    /// when some `for` clock runs (so a crash loses at most the time since this call).
    pub fn take_progress(&mut self, now: SystemTime) -> ProgressBatch {
        let mut batch = ProgressBatch {
            delete: std::mem::take(&mut self.progress_gone),
            ..ProgressBatch::default()
        };
        let mut clock_runs = false;
        for e in self.entries.values_mut().flatten() {
            clock_runs |= e.tracker.clock_runs();
            let p = e.tracker.progress();
            if e.saved
                .as_ref()
                .is_some_and(|(d, saved)| *d == e.definition && *saved == p)
            {
                continue;
            }
            batch.save.push(ProgressRow {
                dedup_key: e.dedup_key.clone(),
                definition: e.definition.clone(),
                saved_ms: to_ms(now),
                progress: p.clone(),
            });
            e.saved = Some((e.definition.clone(), p));
        }
        if clock_runs {
            batch.alive_ms = Some(to_ms(now));
        }
        batch
    }

    /// Replaces the silences.
    pub fn set_silences(&mut self, silences: Vec<Silence>) {
        self.silences = Mutes::new(&silences);
    }

    /// Applies a configuration (the checks with their rules, and where alerts go): rules kept
    /// by identity keep their state, new ones start inactive, restored firing alerts find their
    /// rule; a firing alert whose rule is gone is resolved. `refresh` names the receivers that
    /// want lease refreshes.
    pub fn configure(
        &mut self,
        checks: &[Arc<Check>],
        alerting: &AlertConfig,
        refresh: HashMap<String, Duration>,
        now: SystemTime,
    ) -> Effects {
        self.router = Router::new(&alerting.routes, &alerting.receiver_names());
        self.maintenance = alerting.maintenance.clone();
        self.deps.configure(checks, now);
        self.refresh = refresh;
        let mut old = std::mem::take(&mut self.entries);
        let mut fx = Effects::default();
        for check in checks {
            for (i, rule) in check.alerts.iter().enumerate() {
                let labels = alert_labels(check, rule);
                let key = dedup_key(&check.name, &rule.name, &labels);
                let previous = old.get_mut(&check.name).and_then(|list| {
                    let i = list.iter().position(|e| e.rule().name == rule.name)?;
                    Some(list.swap_remove(i))
                });
                let definition = definition_hash(rule);
                let entry = match previous {
                    Some(mut e) if e.dedup_key == key => {
                        e.check = check.clone();
                        e.rule = i;
                        if e.definition != definition {
                            e.tracker = e.tracker.redefined();
                            e.definition = definition;
                        }
                        e
                    }
                    other => {
                        if let Some(gone) = other {
                            fx.append(self.retire(gone, now));
                        }
                        let mut e = Entry {
                            check: check.clone(),
                            rule: i,
                            dedup_key: key.clone(),
                            labels,
                            tracker: Tracker::default(),
                            last: None,
                            delivery: Delivery::default(),
                            definition,
                            saved: None,
                        };
                        let firing = self.restored.remove(&key);
                        let saved = self.progress.remove(&key);
                        match saved.filter(|p| p.definition == e.definition) {
                            Some(p) => {
                                let stopped = self.alive_ms.unwrap_or(0).max(p.saved_ms);
                                e.tracker = Tracker::restore(
                                    &p.progress,
                                    firing.as_ref(),
                                    rule,
                                    super::from_ms(stopped),
                                );
                            }
                            None => {
                                if let Some(row) = &firing {
                                    e.tracker = Tracker::firing(
                                        row.event.starts_at(),
                                        row.last_true_ms.map(super::from_ms),
                                    );
                                }
                            }
                        }
                        if let Some(row) = firing {
                            e.last = Some(row.event);
                            e.delivery = row.delivery;
                        }
                        e
                    }
                };
                fx.states.push((
                    check.name.clone(),
                    rule.name.clone(),
                    rule.severity.as_str(),
                    entry.tracker.phase(),
                ));
                if let Some(parent) = &entry.delivery.held_by {
                    fx.held.push(Held {
                        check: check.name.clone(),
                        alert: rule.name.clone(),
                        from: None,
                        to: Some(parent.clone()),
                    });
                }
                self.entries
                    .entry(check.name.clone())
                    .or_default()
                    .push(entry);
            }
        }
        for gone in old.into_values().flatten() {
            fx.append(self.retire(gone, now));
        }
        for (_, row) in std::mem::take(&mut self.restored) {
            fx.append(self.resolve_row(row, now));
        }
        self.progress_gone
            .extend(std::mem::take(&mut self.progress).into_keys());
        fx
    }

    /// A rule that left the configuration: its firing alert is resolved.
    fn retire(&mut self, e: Entry, now: SystemTime) -> Effects {
        self.progress_gone.push(e.dedup_key.clone());
        if e.tracker.phase() != Phase::Firing {
            return Effects::default();
        }
        match e.last {
            Some(event) => self.resolve_row(
                AlertRow {
                    dedup_key: e.dedup_key,
                    event,
                    delivery: e.delivery,
                    last_true_ms: None,
                },
                now,
            ),
            None => Effects {
                delete: vec![e.dedup_key],
                ..Effects::default()
            },
        }
    }

    fn resolve_row(&self, row: AlertRow, now: SystemTime) -> Effects {
        let mut event = row.event;
        event.kind = EventKind::Resolve;
        event.status = Status::Resolved;
        event.ends_at_ms = Some(to_ms(now));
        event.created_ms = to_ms(now);
        resolved_summary(&mut event);
        Effects {
            sends: row
                .delivery
                .notified
                .iter()
                .map(|r| (r.clone(), event.clone()))
                .collect(),
            delete: vec![row.dedup_key],
            ..Effects::default()
        }
    }

    /// A result of `check`: every rule of the check is evaluated.
    pub fn observe(&mut self, check: &str, result: &CheckResult, now: SystemTime) -> Effects {
        let mut fx = Effects::default();
        self.deps.record(check, result.success, now);
        let Some(mut list) = self.entries.remove(check) else {
            return fx;
        };
        for e in list.iter_mut() {
            let rule = e.rule();
            let kind = &e.check.kind;
            let cond = expr::eval_cond(&rule.expr, &|v| kind.variable(result, v, now));
            if cond == Some(true) || e.last.is_none() {
                e.last = Some(self.build_event(e, result, now));
            }
            let check = e.check.clone();
            let change = e.tracker.observe(&check.alerts[e.rule], cond, now);
            fx.append(self.after(e, change, now));
        }
        self.entries.insert(check.to_string(), list);
        fx
    }

    /// Time-driven work: `for` reached, `keep_firing_for` over, silences ended, escalations,
    /// reminders and lease refreshes.
    pub fn tick(&mut self, now: SystemTime) -> Effects {
        let mut fx = Effects::default();
        let mut all = std::mem::take(&mut self.entries);
        for e in all.values_mut().flatten() {
            let check = e.check.clone();
            let change = e.tracker.tick(&check.alerts[e.rule], now);
            fx.append(self.after(e, change, now));
            if e.tracker.phase() == Phase::Firing && change == Change::None {
                fx.append(self.while_firing(e, now));
            }
        }
        self.entries = all;
        fx
    }

    fn muted(&self, e: &Entry, now: SystemTime) -> bool {
        in_maintenance(&self.maintenance, &e.check.name, now)
            || self.silences.mutes(&e.labels, to_ms(now))
    }

    fn event(&self, e: &Entry, kind: EventKind, status: Status, now: SystemTime) -> AlertEvent {
        let mut ev = e.last.clone().unwrap_or_else(|| AlertEvent {
            dedup_key: e.dedup_key.clone(),
            kind,
            status,
            check: e.check.name.clone(),
            alert: e.rule().name.clone(),
            severity: e.rule().severity.as_str().into(),
            labels: e.labels.clone(),
            annotations: BTreeMap::new(),
            summary: format!("{} on {}", e.rule().name, e.check.name),
            reason: None,
            failed_step: None,
            value: None,
            values: BTreeMap::new(),
            message: None,
            dependants_failing: Vec::new(),
            starts_at_ms: to_ms(now),
            ends_at_ms: None,
            created_ms: to_ms(now),
            generator_url: self.generator_url(&e.check.name),
        });
        ev.kind = kind;
        ev.status = status;
        ev.created_ms = to_ms(now);
        if let Some(since) = e.tracker.since().filter(|_| status == Status::Firing) {
            ev.starts_at_ms = to_ms(since);
        }
        let failing = match status {
            Status::Firing => self.deps.failing_dependants(&e.check.name),
            Status::Resolved => Vec::new(),
        };
        with_dependants(&mut ev, failing);
        if status == Status::Resolved {
            ev.ends_at_ms = Some(to_ms(now));
            resolved_summary(&mut ev);
        }
        ev
    }

    fn generator_url(&self, check: &str) -> String {
        format!("{}/api/v1/checks/{check}", self.base_url)
    }

    fn row(&self, e: &Entry, now: SystemTime) -> AlertRow {
        AlertRow {
            dedup_key: e.dedup_key.clone(),
            event: self.event(e, EventKind::Trigger, Status::Firing, now),
            delivery: e.delivery.clone(),
            last_true_ms: e.tracker.last_true.map(to_ms),
        }
    }

    fn state(e: &Entry) -> (String, String, &'static str, Phase) {
        (
            e.check.name.clone(),
            e.rule().name.clone(),
            e.rule().severity.as_str(),
            e.tracker.phase(),
        )
    }

    /// Effects of a state change.
    fn after(&self, e: &mut Entry, change: Change, now: SystemTime) -> Effects {
        let mut fx = Effects::default();
        match change {
            Change::None => return fx,
            Change::Pending | Change::Cleared => {}
            Change::Fired => {
                e.delivery = Delivery {
                    last_reminder_ms: to_ms(now),
                    last_refresh_ms: to_ms(now),
                    ..Delivery::default()
                };
                if self.muted(e, now) {
                    e.delivery.suppressed = true;
                } else if let Some(parent) = self.deps.held_by(&e.check.name, now) {
                    e.delivery.held_by = Some(parent.to_string());
                    fx.held.push(Held {
                        check: e.check.name.clone(),
                        alert: e.rule().name.clone(),
                        from: None,
                        to: Some(parent.to_string()),
                    });
                } else {
                    fx.sends = self.trigger(e, EventKind::Trigger, now);
                }
                fx.save.push(self.row(e, now));
            }
            Change::Resolved => {
                let ev = self.event(e, EventKind::Resolve, Status::Resolved, now);
                fx.sends = e
                    .delivery
                    .notified
                    .iter()
                    .map(|r| (r.clone(), ev.clone()))
                    .collect();
                fx.delete.push(e.dedup_key.clone());
                if let Some(parent) = e.delivery.held_by.take() {
                    fx.held.push(Held {
                        check: e.check.name.clone(),
                        alert: e.rule().name.clone(),
                        from: Some(parent),
                        to: None,
                    });
                }
                e.delivery = Delivery::default();
            }
        }
        fx.states.push(Engine::state(e));
        fx
    }

    /// Sends `kind` to the route's receivers and records them as notified.
    fn trigger(
        &self,
        e: &mut Entry,
        kind: EventKind,
        now: SystemTime,
    ) -> Vec<(String, AlertEvent)> {
        let Some(dest) = self.router.route(&e.labels) else {
            return Vec::new();
        };
        let ev = self.event(e, kind, Status::Firing, now);
        dest.receivers
            .iter()
            .filter(|r| e.delivery.notified.insert((*r).clone()))
            .map(|r| (r.clone(), ev.clone()))
            .collect()
    }

    /// Escalation, reminders, refreshes and the end of a mute, for a firing alert.
    fn while_firing(&self, e: &mut Entry, now: SystemTime) -> Effects {
        let mut fx = Effects::default();
        let now_ms = to_ms(now);
        let muted = self.muted(e, now);
        let mut changed = false;
        if e.delivery.suppressed || e.delivery.held_by.is_some() {
            // A trigger waits for its mute to end and for its parents (`depends_on`).
            let held = self.deps.held_by(&e.check.name, now).map(str::to_string);
            if held != e.delivery.held_by {
                fx.held.push(Held {
                    check: e.check.name.clone(),
                    alert: e.rule().name.clone(),
                    from: e.delivery.held_by.take(),
                    to: held.clone(),
                });
                e.delivery.held_by = held;
                changed = true;
            }
            if !muted && e.delivery.held_by.is_none() {
                e.delivery.suppressed = false;
                e.delivery.last_reminder_ms = now_ms;
                fx.sends.extend(self.trigger(e, EventKind::Trigger, now));
                changed = true;
            }
        }
        let waiting = muted || e.delivery.suppressed || e.delivery.held_by.is_some();
        let dest = self.router.route(&e.labels).cloned();
        if let (Some(dest), false) = (&dest, waiting) {
            if let Some((after, receivers)) = &dest.escalate {
                let since = e.tracker.since().unwrap_or(now);
                if !e.delivery.escalated && now.duration_since(since).unwrap_or_default() >= *after
                {
                    e.delivery.escalated = true;
                    let ev = self.event(e, EventKind::Escalation, Status::Firing, now);
                    for r in receivers {
                        if e.delivery.notified.insert(r.clone()) {
                            fx.sends.push((r.clone(), ev.clone()));
                        }
                    }
                    changed = true;
                }
            }
            if let Some(every) = dest.repeat_interval {
                if now_ms - e.delivery.last_reminder_ms >= every.as_millis() as i64 {
                    e.delivery.last_reminder_ms = now_ms;
                    let ev = self.event(e, EventKind::Reminder, Status::Firing, now);
                    for r in &e.delivery.notified {
                        if !self.refresh.contains_key(r) {
                            fx.sends.push((r.clone(), ev.clone()));
                        }
                    }
                    changed = true;
                }
            }
        }
        // Leases are kept up even while muted: a muted alert must not look resolved.
        let due: Vec<&String> = e
            .delivery
            .notified
            .iter()
            .filter(|r| {
                self.refresh.get(*r).is_some_and(|every| {
                    now_ms - e.delivery.last_refresh_ms >= every.as_millis() as i64
                })
            })
            .collect();
        if !due.is_empty() {
            let ev = self.event(e, EventKind::Refresh, Status::Firing, now);
            fx.sends
                .extend(due.into_iter().map(|r| (r.clone(), ev.clone())));
            e.delivery.last_refresh_ms = now_ms;
        }
        if changed {
            fx.save.push(self.row(e, now));
        }
        fx
    }

    /// The event a result makes for an entry (labels, rendered annotations, summary, value).
    fn build_event(&self, e: &Entry, result: &CheckResult, now: SystemTime) -> AlertEvent {
        let rule = e.rule();
        // `{:#}`: the human form (`3.200s`, `5m`), not the literal form expressions parse.
        let read: Vec<(String, String)> = rule
            .expr
            .variables()
            .iter()
            .filter_map(|v| {
                e.check
                    .kind
                    .variable(result, v, now)
                    .map(|x| (v.to_string(), format!("{x:#}")))
            })
            .collect();
        let value = read
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        let reason = result.reason.map(|r| r.as_str().to_string());
        let message = result
            .message
            .as_deref()
            .map(|m| super::cut(m, super::MESSAGE_MAX));
        let failed_step = result.failed_step().map(|s| s.name.clone());
        let literal: BTreeMap<&str, &str> = rule
            .annotations
            .iter()
            .filter_map(|(k, t)| t.as_literal().map(|v| (k.as_str(), v)))
            .collect();
        let lookup = |name: &str| -> Option<std::borrow::Cow<'_, str>> {
            let s: String = match name {
                "check" => e.check.name.clone(),
                "alert" | "alertname" => rule.name.clone(),
                "severity" => rule.severity.as_str().into(),
                "reason" => reason.clone().unwrap_or_else(|| "none".into()),
                "failed_step" => failed_step.clone().unwrap_or_default(),
                "value" => value.clone(),
                "message" => result.message.clone().unwrap_or_default(),
                _ => {
                    if let Some(v) = e.labels.get(name) {
                        v.clone()
                    } else if let Some(v) = literal.get(name) {
                        (*v).to_string()
                    } else {
                        format!("{:#}", e.check.kind.variable(result, name, now)?)
                    }
                }
            };
            Some(std::borrow::Cow::Owned(s))
        };
        let annotations: BTreeMap<String, String> = rule
            .annotations
            .iter()
            .map(|(k, t)| {
                let v = t
                    .render(lookup)
                    .map(|s| s.into_owned())
                    .unwrap_or_else(|_| t.redacted().to_string());
                (k.clone(), v)
            })
            .collect();
        let summary = annotations.get("summary").cloned().unwrap_or_else(|| {
            default_summary(&Evidence {
                check: &e.check.name,
                alert: &rule.name,
                failed: !result.success,
                failed_step: failed_step.as_deref(),
                reason: reason.as_deref(),
                message: message.as_deref(),
                values: &read,
            })
        });
        AlertEvent {
            dedup_key: e.dedup_key.clone(),
            kind: EventKind::Trigger,
            status: Status::Firing,
            check: e.check.name.clone(),
            alert: rule.name.clone(),
            severity: rule.severity.as_str().into(),
            labels: e.labels.clone(),
            annotations,
            summary,
            reason,
            failed_step,
            value: (!value.is_empty()).then_some(value),
            values: read.into_iter().collect(),
            message,
            dependants_failing: Vec::new(),
            starts_at_ms: to_ms(e.tracker.since().unwrap_or(now)),
            ends_at_ms: None,
            created_ms: to_ms(now),
            generator_url: self.generator_url(&e.check.name),
        }
    }

    /// The firing alerts of one check: name and severity (a cheap lookup, for the status page).
    pub fn firing(&self, check: &str) -> Vec<(String, crate::config::rule::Severity)> {
        self.entries
            .get(check)
            .into_iter()
            .flatten()
            .filter(|e| e.tracker.phase() == Phase::Firing)
            .map(|e| (e.rule().name.clone(), e.rule().severity))
            .collect()
    }

    /// Every alert, by check then alert name.
    pub fn views(&self, now: SystemTime) -> Vec<AlertView> {
        let mut out: Vec<AlertView> = self
            .entries
            .values()
            .flatten()
            .map(|e| AlertView {
                check: e.check.name.clone(),
                alert: e.rule().name.clone(),
                severity: e.rule().severity.as_str(),
                state: e.tracker.phase(),
                dedup_key: e.dedup_key.clone(),
                labels: e.labels.clone(),
                when: e.rule().when.clone(),
                active_since: e.tracker.since().map(super::rfc3339),
                summary: e
                    .last
                    .as_ref()
                    .filter(|_| e.tracker.phase() != Phase::Inactive)
                    .map(|l| l.summary.clone()),
                annotations: e
                    .last
                    .as_ref()
                    .filter(|_| e.tracker.phase() != Phase::Inactive)
                    .map(|l| l.annotations.clone())
                    .unwrap_or_default(),
                silenced: self.muted(e, now),
                suppressed_by: e
                    .delivery
                    .held_by
                    .clone()
                    .filter(|_| e.tracker.phase() == Phase::Firing),
                dependants_failing: self.deps.failing_dependants(&e.check.name),
                notified: e.delivery.notified.iter().cloned().collect(),
                escalated: e.delivery.escalated,
                last_evaluation: e.tracker.last(),
            })
            .collect();
        out.sort_by(|a, b| (&a.check, &a.alert).cmp(&(&b.check, &b.alert)));
        out
    }
}

/// An alert's labels: the check's, the rule's, and `alertname`, `check`, `severity` (which
/// win over user labels of the same name).
pub fn alert_labels(check: &Check, rule: &AlertRule) -> BTreeMap<String, String> {
    let mut labels = check.labels.clone();
    labels.extend(rule.labels.clone());
    labels.insert("alertname".into(), rule.name.clone());
    labels.insert("check".into(), check.name.clone());
    labels.insert("severity".into(), rule.severity.as_str().into());
    labels
}

/// What a default summary is built from.
#[derive(Debug, Clone, Copy)]
pub struct Evidence<'a> {
    /// Check name.
    pub check: &'a str,
    /// Alert (rule) name.
    pub alert: &'a str,
    /// Whether the check's run failed.
    pub failed: bool,
    /// The step that failed.
    pub failed_step: Option<&'a str>,
    /// The failure reason (`status`, `assertion`, `timeout`, ...).
    pub reason: Option<&'a str>,
    /// The probe's (redacted) message.
    pub message: Option<&'a str>,
    /// The variables the rule reads, with their values, in the rule's order.
    pub values: &'a [(String, String)],
}

/// The summary of a page whose rule sets no `summary` annotation. A failed run says where and
/// why: `<check> failing at step <step>: <reason>: <message>` (what is missing left out); a rule
/// on values of a run that worked names them: `<check>: <alert> (depth=7 processed_rate=0)`.
pub fn default_summary(ev: &Evidence<'_>) -> String {
    if ev.failed {
        let mut s = format!("{} failing", ev.check);
        if let Some(step) = ev.failed_step.filter(|s| !s.is_empty()) {
            s.push_str(&format!(" at step {step}"));
        }
        for part in [ev.reason, ev.message].into_iter().flatten() {
            if !part.is_empty() {
                s.push_str(": ");
                s.push_str(part);
            }
        }
        return s;
    }
    let values: Vec<String> = ev.values.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if values.is_empty() {
        format!("{}: {}", ev.check, ev.alert)
    } else {
        format!("{}: {} ({})", ev.check, ev.alert, values.join(" "))
    }
}

/// Sets the failing dependants of a parent's event; without a `summary` annotation the summary
/// ends with them: `db failing: connect: refused (2 dependants failing too: api, jobs)`.
/// Idempotent: an event restored from the store already carries an older list.
fn with_dependants(ev: &mut AlertEvent, failing: Vec<String>) {
    if !ev.dependants_failing.is_empty() {
        let old = format!(" {}", depend::dependants_note(&ev.dependants_failing));
        if let Some(base) = ev.summary.strip_suffix(&old) {
            ev.summary = base.to_string();
        }
    }
    if !failing.is_empty() && !ev.annotations.contains_key("summary") {
        ev.summary = format!("{} {}", ev.summary, depend::dependants_note(&failing));
    }
    ev.dependants_failing = failing;
}

/// A resolve without a `summary` annotation says how long the alert lasted:
/// `<check> recovered after 12m3s`.
fn resolved_summary(ev: &mut AlertEvent) {
    if ev.annotations.contains_key("summary") {
        return;
    }
    if let Some(d) = ev.lasted() {
        ev.summary = format!("{} recovered after {}", ev.check, super::short_duration(d));
    }
}

#[cfg(test)]
mod summary_tests {
    use super::*;

    fn ev<'a>(failed: bool, values: &'a [(String, String)]) -> Evidence<'a> {
        Evidence {
            check: "demo-identity",
            alert: "CheckFailing",
            failed,
            failed_step: Some("request"),
            reason: Some("assertion"),
            message: Some(r#"expected $.database to be "demo-primary", got "demo-staging""#),
            values,
        }
    }

    #[test]
    fn a_failure_names_step_reason_and_message() {
        assert_eq!(
            default_summary(&ev(true, &[])),
            r#"demo-identity failing at step request: assertion: expected $.database to be "demo-primary", got "demo-staging""#
        );
        let bare = Evidence {
            failed_step: None,
            message: None,
            ..ev(true, &[])
        };
        assert_eq!(default_summary(&bare), "demo-identity failing: assertion");
        let nothing = Evidence {
            reason: None,
            ..bare
        };
        assert_eq!(default_summary(&nothing), "demo-identity failing");
    }

    #[test]
    fn a_rule_on_values_names_the_values() {
        let values: Vec<(String, String)> = [
            ("depth", "7"),
            ("processed_rate", "0"),
            ("oldest_age", "5m4s"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let queue = Evidence {
            check: "demo-jobs",
            alert: "JobsStalled",
            ..ev(false, &values)
        };
        assert_eq!(
            default_summary(&queue),
            "demo-jobs: JobsStalled (depth=7 processed_rate=0 oldest_age=5m4s)"
        );
        assert_eq!(
            default_summary(&Evidence {
                values: &[],
                ..queue
            }),
            "demo-jobs: JobsStalled"
        );
    }

    #[test]
    fn a_resolve_says_how_long_it_lasted_unless_the_rule_has_a_summary() {
        let mut e = crate::alert::tests_support::event("k", EventKind::Resolve, 0);
        e.check = "demo-identity".into();
        e.starts_at_ms = 1_000;
        e.ends_at_ms = Some(1_000 + 723_000);
        resolved_summary(&mut e);
        assert_eq!(e.summary, "demo-identity recovered after 12m3s");
        e.annotations.insert("summary".into(), "mine".into());
        e.summary = "mine".into();
        resolved_summary(&mut e);
        assert_eq!(e.summary, "mine");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::expr::{self, Type};
    use crate::config::Severity;
    use proptest::prelude::*;
    use std::time::UNIX_EPOCH;

    fn rule(kind: u8, a: u32, b: u32, keep_ms: Option<u64>) -> AlertRule {
        let (n, m) = (a.min(b).max(1), a.max(b).max(1));
        AlertRule {
            name: "R".into(),
            when: "failed".into(),
            expr: expr::check("failed", &|_| Ok(Type::Bool)).unwrap(),
            for_: (kind == 1).then(|| Duration::from_millis(u64::from(a) * 1000)),
            consecutive: (kind == 2).then_some(a.max(1)),
            window: (kind == 3).then_some((n, m)),
            keep_firing_for: keep_ms.map(Duration::from_millis),
            severity: Severity::Critical,
            labels: BTreeMap::new(),
            annotations: Vec::new(),
        }
    }

    fn firing_row(t: &Tracker) -> Option<AlertRow> {
        let since = t.since()?;
        (t.phase() == Phase::Firing).then(|| AlertRow {
            dedup_key: "k".into(),
            event: AlertEvent {
                dedup_key: "k".into(),
                kind: EventKind::Trigger,
                status: Status::Firing,
                check: "c".into(),
                alert: "R".into(),
                severity: "critical".into(),
                labels: BTreeMap::new(),
                annotations: BTreeMap::new(),
                summary: String::new(),
                reason: None,
                failed_step: None,
                value: None,
                values: BTreeMap::new(),
                message: None,
                dependants_failing: Vec::new(),
                starts_at_ms: to_ms(since),
                ends_at_ms: None,
                created_ms: to_ms(since),
                generator_url: String::new(),
            },
            delivery: Delivery::default(),
            last_true_ms: t.last_true.map(to_ms),
        })
    }

    /// One step: a result (true, false, unknown) or a tick, after `gap_ms`.
    fn step() -> impl Strategy<Value = (Option<Option<bool>>, u64)> {
        (
            prop_oneof![
                Just(Some(Some(true))),
                Just(Some(Some(false))),
                Just(Some(None)),
                Just(None)
            ],
            0u64..20_000,
        )
    }

    fn rules() -> impl Strategy<Value = AlertRule> {
        (0u8..4, 1u32..8, 1u32..8, prop::option::of(0u64..30_000))
            .prop_map(|(k, a, b, keep)| rule(k, a, b, keep))
    }

    fn run(
        t: &mut Tracker,
        r: &AlertRule,
        steps: &[(Option<Option<bool>>, u64)],
        now: &mut SystemTime,
    ) -> Vec<Change> {
        steps
            .iter()
            .map(|(what, gap)| {
                *now += Duration::from_millis(*gap);
                match what {
                    Some(cond) => t.observe(r, *cond, *now),
                    None => t.tick(r, *now),
                }
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        /// An unknown result changes nothing but the `for` clock, which it stops; the ticks
        /// after it change nothing either.
        #[test]
        fn an_unknown_result_changes_no_progress(
            r in rules(),
            prefix in prop::collection::vec(step(), 0..40),
            ticks in prop::collection::vec(0u64..600_000, 0..5),
        ) {
            let mut now = UNIX_EPOCH + Duration::from_secs(1_780_272_000);
            let mut t = Tracker::default();
            run(&mut t, &r, &prefix, &mut now);
            let before = t.progress();
            now += Duration::from_millis(1);
            prop_assert_eq!(t.observe(&r, None, now), Change::None);
            let held = t.held_for(now);
            let after = t.progress();
            prop_assert_eq!(
                (after.phase, after.since_ms, after.consecutive, &after.window, after.last_true_ms, after.undecided),
                (before.phase, before.since_ms, before.consecutive, &before.window, before.last_true_ms, before.undecided)
            );
            prop_assert!(!t.clock_runs());
            for gap in ticks {
                now += Duration::from_millis(gap);
                prop_assert_eq!(t.tick(&r, now), Change::None);
                prop_assert_eq!(t.held_for(now), held);
            }
            prop_assert_eq!(t.progress(), after);
        }

        /// A tracker restored from its own saved progress (no downtime) makes the same
        /// decisions as the one that kept running, from the first result on.
        #[test]
        fn restored_progress_decides_like_the_running_tracker(
            r in rules(),
            prefix in prop::collection::vec(step(), 0..40),
            first in prop::option::of(any::<bool>()),
            rest in prop::collection::vec(step(), 0..40),
        ) {
            let mut now = UNIX_EPOCH + Duration::from_secs(1_780_272_000);
            let mut t = Tracker::default();
            run(&mut t, &r, &prefix, &mut now);
            let mut restored = Tracker::restore(&t.progress(), firing_row(&t).as_ref(), &r, now);
            prop_assert_eq!(restored.phase(), t.phase());
            prop_assert_eq!(restored.since(), t.since());
            prop_assert_eq!(t.observe(&r, first, now), restored.observe(&r, first, now));
            let mut later = now;
            let a = run(&mut t, &r, &rest, &mut now);
            let b = run(&mut restored, &r, &rest, &mut later);
            prop_assert_eq!(a, b);
        }

        /// Whatever a progress row holds (it is read from disk), restoring and running never
        /// panics and the window never outgrows M.
        #[test]
        fn any_saved_progress_restores_without_panicking(
            r in rules(),
            phase in prop_oneof![Just(Phase::Inactive), Just(Phase::Pending), Just(Phase::Firing)],
            since_ms in prop::option::of(any::<i64>()),
            consecutive in any::<u32>(),
            window in "[TFx]{0,20}",
            held_ms in any::<u64>(),
            true_since_ms in prop::option::of(any::<i64>()),
            last_true_ms in prop::option::of(any::<i64>()),
            undecided in any::<bool>(),
            stopped_ms in any::<i64>(),
            steps in prop::collection::vec(step(), 0..30),
        ) {
            let p = Progress { phase, since_ms, consecutive, window, held_ms, true_since_ms, last_true_ms, undecided };
            let mut t = Tracker::restore(&p, None, &r, super::super::from_ms(stopped_ms));
            let mut now = UNIX_EPOCH + Duration::from_secs(1_780_272_000);
            run(&mut t, &r, &steps, &mut now);
            prop_assert!(t.window.len() <= r.window.map_or(0, |(_, m)| m as usize));
            let _ = t.progress();
        }
    }
}
