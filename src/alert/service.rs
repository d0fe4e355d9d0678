//! The running alerting side of the daemon: the engine behind a lock, one delivery worker per
//! receiver, a one-second ticker (time-driven transitions, escalations, reminders, refreshes,
//! outbox lengths), silences, and the watchdog.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::engine::{AlertRow, AlertView, Effects, Engine};
use super::outbox::{backoff, Next, Outbox};
use super::persist;
use super::receiver::Verdict;
use super::receiver::{self, Notifier};
use super::silence::{self, Silence};
use super::watchdog;
use super::{from_ms, to_ms, AlertConfig, AlertEvent, EventKind};
use crate::clock::Clock;
use crate::config::{ConfigError, ConfigErrors};
use crate::metrics::{Metrics, NotificationResult, StoreOp};
use crate::probe::check::Check;
use crate::probe::CheckResult;
use crate::store::{self, Store};

/// How often the ticker runs.
pub const TICK: Duration = Duration::from_secs(1);
/// The outbox counts as wedged when its oldest notification is older than this.
pub const OUTBOX_STUCK: Duration = Duration::from_secs(600);

/// Most notifications kept in memory while the state store cannot be written. Past it the
/// oldest waiting reminder or lease refresh is dropped first, then the oldest waiting trigger or
/// escalation; a resolve is never dropped (there is at most one per alert that fired).
pub const UNSAVED_CAP: usize = 10_000;

/// Longest wait between two attempts to save what the store could not take (1 s, 2 s, 4 s …
/// with jitter, capped here: the write is cheap and every second unsaved counts).
pub const FLUSH_BACKOFF_CAP: Duration = Duration::from_secs(10);

/// A notification the store could not take, kept in memory.
struct UnsavedSend {
    /// Unique within the process (indexes shift as sends leave the queue).
    seq: u64,
    receiver: String,
    event: AlertEvent,
    state: SendState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendState {
    /// To be sent from memory, or saved by the next flush.
    Waiting,
    /// A worker is sending it (a flush waits).
    Sending,
    /// A flush is writing it to the outbox (workers wait).
    Flushing,
}

/// What the store could not take: alert state and notifications, in decision order. While
/// anything is here, every later commit joins it (so the store never sees a later decision
/// before an earlier one), `/-/ready` answers 503 and the watchdog is silent; the ticker
/// retries writing it all in one transaction, with backoff. Sent notifications leave the queue
/// at once (a flush does not queue them again); the others are saved into the outbox.
#[derive(Default)]
struct Unsaved {
    /// The latest alert row per dedup key (`None`: delete).
    rows: HashMap<String, Option<AlertRow>>,
    sends: VecDeque<UnsavedSend>,
    next_seq: u64,
    /// What the store said last.
    last_error: String,
    /// When the store first failed (Unix ms; 0: healthy).
    since_ms: i64,
    /// Failed flushes in a row, and the next one not before (Unix ms).
    flush_failures: u32,
    next_flush_ms: i64,
    flushing: bool,
    /// Per receiver: failed attempts from memory in a row, and not before (Unix ms).
    retry: HashMap<String, (u32, i64)>,
}

impl Unsaved {
    fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.sends.is_empty()
    }

    /// Adds a commit the store refused (or that must wait behind one). Returns the
    /// notifications dropped for the cap.
    fn push(
        &mut self,
        save: Vec<AlertRow>,
        delete: Vec<String>,
        sends: Vec<(String, AlertEvent)>,
    ) -> Vec<(String, AlertEvent)> {
        for row in save {
            self.rows.insert(row.dedup_key.clone(), Some(row));
        }
        for key in delete {
            self.rows.insert(key, None);
        }
        for (receiver, event) in sends {
            // Like the outbox: a waiting reminder or refresh is not queued twice.
            if matches!(event.kind, EventKind::Refresh | EventKind::Reminder)
                && self.sends.iter().any(|s| {
                    s.state == SendState::Waiting
                        && s.receiver == receiver
                        && s.event.dedup_key == event.dedup_key
                        && s.event.kind == event.kind
                })
            {
                continue;
            }
            self.next_seq += 1;
            self.sends.push_back(UnsavedSend {
                seq: self.next_seq,
                receiver,
                event,
                state: SendState::Waiting,
            });
        }
        let mut dropped = Vec::new();
        for droppable in [
            &[EventKind::Reminder, EventKind::Refresh][..],
            &[EventKind::Trigger, EventKind::Escalation],
        ] {
            while self.sends.len() > UNSAVED_CAP {
                let Some(i) = self.sends.iter().position(|s| {
                    s.state == SendState::Waiting && droppable.contains(&s.event.kind)
                }) else {
                    break;
                };
                if let Some(s) = self.sends.remove(i) {
                    dropped.push((s.receiver, s.event));
                }
            }
        }
        dropped
    }

    /// Forgets the failure once nothing is left unsaved.
    fn healed(&mut self) {
        if self.is_empty() {
            self.since_ms = 0;
            self.flush_failures = 0;
            self.next_flush_ms = 0;
            self.last_error.clear();
            self.retry.clear();
        }
    }

    fn failed(&mut self, now_ms: i64, error: String) {
        if self.since_ms == 0 {
            self.since_ms = now_ms;
            self.next_flush_ms = now_ms + backoff(0).as_millis() as i64;
        }
        self.last_error = error;
    }
}

/// Builds every receiver's notifier; errors name the receiver (never a secret), in `file` (the
/// daemon file).
pub fn notifiers(
    alerting: &AlertConfig,
    file: &Path,
) -> Result<Vec<Arc<dyn Notifier>>, ConfigErrors> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for r in &alerting.receivers {
        match receiver::build(r) {
            Ok(n) => out.push(n),
            Err(message) => errors.push(ConfigError {
                file: file.to_path_buf(),
                line: 1,
                col: 1,
                key: format!("receivers.{}", r.name),
                message,
            }),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ConfigErrors(errors))
    }
}

struct Worker {
    notifier: Mutex<Arc<dyn Notifier>>,
    wake: Notify,
    stop: AtomicBool,
}

/// Alerting, running.
pub struct Alerting {
    engine: Mutex<Engine>,
    store: Store,
    outbox: Outbox,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    workers: Mutex<HashMap<String, Arc<Worker>>>,
    silences: Mutex<Vec<Silence>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    watchdog: Mutex<Option<JoinHandle<()>>>,
    /// Unix ms of the last result seen (scheduler health for the watchdog).
    last_result_ms: AtomicI64,
    /// Shortest check interval of the running configuration (ms; 0: no checks).
    shortest_interval_ms: AtomicI64,
    /// Unix ms of the oldest waiting notification (0: none).
    oldest_waiting_ms: AtomicI64,
    /// What the store could not take yet (shared with store jobs).
    unsaved: Arc<Mutex<Unsaved>>,
    /// The heartbeat book, whose unsaved rows count for readiness and the watchdog.
    heartbeats: Mutex<Option<std::sync::Weak<crate::probe::heartbeat::Book>>>,
}

impl std::fmt::Debug for Alerting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerting").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts and logs notifications dropped because [`UNSAVED_CAP`] was reached.
fn drop_for_cap(metrics: &Metrics, dropped: &[(String, AlertEvent)]) {
    for (receiver, ev) in dropped {
        metrics.count_notifications(receiver, NotificationResult::Dropped, 1);
        tracing::error!(
            receiver = %receiver,
            check = %ev.check,
            alert = %ev.alert,
            event = ev.kind.as_str(),
            cap = UNSAVED_CAP,
            "notification dropped: the state store cannot be written and the memory queue is full"
        );
    }
}

impl Alerting {
    /// Loads firing alerts and silences from the store, applies the configuration (`checks`
    /// and `alert_config`; `api_url` is the base of generator URLs), and starts the workers, the
    /// ticker and the watchdog. Must run inside a tokio runtime (blocks briefly on the store:
    /// call at startup).
    pub fn start(
        store: Store,
        checks: &[Arc<Check>],
        alert_config: &AlertConfig,
        api_url: String,
        notifiers: Vec<Arc<dyn Notifier>>,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Alerting>, String> {
        let rows = store
            .call_blocking(persist::load_alerts)
            .map_err(|e| e.to_string())?;
        let silences: Vec<Silence> = store
            .call_blocking(persist::load_silences)
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|s| match silence::unusable(s) {
                None => true,
                Some(why) => {
                    tracing::warn!(id = %s.id, "skipping a stored silence: {why}");
                    false
                }
            })
            .collect();
        let (progress, alive_ms) = store
            .call_blocking(persist::load_progress)
            .map_err(|e| e.to_string())?;
        let client = super::outbox::http_client()?;
        let mut engine = Engine::new(api_url);
        engine.restore(rows);
        engine.restore_progress(progress, alive_ms);
        engine.set_silences(silences.clone());
        let now = clock.now();
        let alerting = Arc::new(Alerting {
            engine: Mutex::new(engine),
            outbox: Outbox::new(store.clone(), client, metrics.clone()),
            store,
            metrics,
            clock,
            workers: Mutex::new(HashMap::new()),
            silences: Mutex::new(silences),
            tasks: Mutex::new(Vec::new()),
            watchdog: Mutex::new(None),
            last_result_ms: AtomicI64::new(to_ms(now)),
            shortest_interval_ms: AtomicI64::new(0),
            oldest_waiting_ms: AtomicI64::new(0),
            unsaved: Arc::new(Mutex::new(Unsaved::default())),
            heartbeats: Mutex::new(None),
        });
        alerting.apply(checks, alert_config, notifiers);
        let ticker = tokio::spawn(Alerting::tick_loop(Arc::downgrade(&alerting)));
        lock(&alerting.tasks).push(ticker);
        Ok(alerting)
    }

    /// Applies a (re)loaded configuration: rules (of `checks`), routes, maintenance, receivers,
    /// watchdog.
    pub fn apply(
        self: &Arc<Self>,
        checks: &[Arc<Check>],
        alerting: &AlertConfig,
        notifiers: Vec<Arc<dyn Notifier>>,
    ) {
        let refresh: HashMap<String, Duration> = notifiers
            .iter()
            .filter_map(|n| n.refresh_interval().map(|d| (n.name().to_string(), d)))
            .collect();
        let names: Vec<String> = notifiers.iter().map(|n| n.name().to_string()).collect();
        // Workers first, so that effects of the new configuration find their receiver.
        {
            let mut workers = lock(&self.workers);
            workers.retain(|name, w| {
                let keep = names.contains(name);
                if !keep {
                    w.stop.store(true, Ordering::Relaxed);
                    w.wake.notify_one();
                }
                keep
            });
            for n in notifiers {
                match workers.get(n.name()) {
                    Some(w) => *lock(&w.notifier) = n,
                    None => {
                        let w = Arc::new(Worker {
                            notifier: Mutex::new(n.clone()),
                            wake: Notify::new(),
                            stop: AtomicBool::new(false),
                        });
                        workers.insert(n.name().to_string(), w.clone());
                        let task = tokio::spawn(Alerting::worker_loop(Arc::downgrade(self), w));
                        lock(&self.tasks).push(task);
                    }
                }
            }
        }
        self.metrics.retain_receivers(&names);
        let known = names.clone();
        let metrics = self.metrics.clone();
        let dropping = self
            .store
            .request(move |c| persist::outbox_drop_unknown(c, &known));
        tokio::spawn(async move {
            match dropping.wait().await {
                Ok(0) => {}
                Ok(n) => {
                    metrics.count_notifications(
                        "(removed)",
                        crate::metrics::NotificationResult::Dropped,
                        n as u64,
                    );
                    tracing::warn!(
                        notifications = n,
                        "dropped notifications of receivers that left the configuration"
                    );
                }
                Err(e) => tracing::error!("cannot clean the outbox: {e}"),
            }
        });
        let shortest = checks.iter().map(|c| c.interval).min();
        self.shortest_interval_ms.store(
            shortest.map(|d| d.as_millis() as i64).unwrap_or(0),
            Ordering::Relaxed,
        );
        {
            let mut engine = lock(&self.engine);
            let fx = engine.configure(checks, alerting, refresh, self.clock.now());
            let states: Vec<_> = fx
                .states
                .iter()
                .map(|(c, a, s, p)| (c.clone(), a.clone(), *s, p.metric_value()))
                .collect();
            self.metrics.reset_alert_states(&states);
            self.metrics.clear_alert_suppressed();
            self.commit(Effects {
                states: Vec::new(),
                ..fx
            });
        }
        let mut wd = lock(&self.watchdog);
        if let Some(old) = wd.take() {
            old.abort();
        }
        if let Some(w) = &alerting.watchdog {
            *wd = Some(tokio::spawn(Alerting::watchdog_loop(
                Arc::downgrade(self),
                watchdog::Target::new(w),
            )));
        }
    }

    /// A result of `check`.
    pub fn observe(&self, check: &str, result: &CheckResult) {
        let now = self.clock.now();
        self.last_result_ms.store(to_ms(now), Ordering::Relaxed);
        let mut engine = lock(&self.engine);
        let fx = engine.observe(check, result, now);
        self.commit(fx);
    }

    /// Time-driven work at `now` (the ticker calls it every second; tests call it directly).
    pub fn tick(&self) {
        let now = self.clock.now();
        let mut engine = lock(&self.engine);
        let fx = engine.tick(now);
        self.commit(fx);
        if let Some(saving) = self.save_progress(&mut engine, now) {
            tokio::spawn(async move {
                if let Err(e) = saving.wait().await {
                    tracing::error!("alert progress could not be saved: {e}");
                }
            });
        }
    }

    /// Queues the rules' changed progress in the store (one transaction). Called with the
    /// engine lock held, after the tick's effects, so store order is decision order; the
    /// ticker calls it every second, so a crash loses at most about a second of progress.
    fn save_progress(
        &self,
        engine: &mut Engine,
        now: std::time::SystemTime,
    ) -> Option<store::Pending<()>> {
        let batch = engine.take_progress(now);
        if batch.is_empty() {
            return None;
        }
        Some(
            self.store
                .request(move |c| persist::save_progress(c, &batch)),
        )
    }

    /// Saves the rules' progress now and waits for the store (at shutdown, after the last
    /// results, so a clean stop loses none).
    pub async fn flush_progress(&self) {
        let pending = {
            let mut engine = lock(&self.engine);
            self.save_progress(&mut engine, self.clock.now())
        };
        if let Some(Err(e)) = match pending {
            Some(p) => Some(p.wait().await),
            None => None,
        } {
            tracing::error!("alert progress could not be saved: {e}");
        }
    }

    /// Queues the effects in the store (one transaction), updates metrics, wakes workers.
    /// Called with the engine lock held, so store order is decision order.
    fn commit(&self, fx: Effects) {
        for (check, alert, severity, phase) in &fx.states {
            self.metrics
                .set_alert_state(check, alert, severity, phase.metric_value());
        }
        for h in &fx.held {
            self.metrics.set_alert_suppressed(
                &h.check,
                &h.alert,
                h.from.as_deref(),
                h.to.as_deref(),
            );
            match &h.to {
                Some(parent) => tracing::info!(
                    check = %h.check,
                    alert = %h.alert,
                    parent = %parent,
                    "page held: the parent check it depends on fails"
                ),
                None => {
                    tracing::info!(check = %h.check, alert = %h.alert, "page no longer held by a parent")
                }
            }
        }
        if fx.is_empty() {
            return;
        }
        for (receiver, ev) in &fx.sends {
            tracing::info!(
                check = %ev.check,
                alert = %ev.alert,
                severity = %ev.severity,
                receiver = %receiver,
                event = ev.kind.as_str(),
                dedup_key = %ev.dedup_key,
                "alert notification queued"
            );
        }
        let receivers: HashSet<String> = fx.sends.iter().map(|(r, _)| r.clone()).collect();
        let Effects {
            sends,
            save,
            delete,
            ..
        } = fx;
        let unsaved = self.unsaved.clone();
        let metrics = self.metrics.clone();
        let now_ms = to_ms(self.clock.now());
        let path = self.store.path().display().to_string();
        // Runs on the store thread, in order with every other commit and flush, so whether
        // earlier decisions are still unsaved cannot change while it runs.
        let pending = self.store.request(move |c| {
            if !lock(&unsaved).is_empty() {
                let mut u = lock(&unsaved);
                let dropped = u.push(save, delete, sends);
                drop_for_cap(&metrics, &dropped);
                metrics.set_store_unsaved(u.sends.len());
                return Ok(());
            }
            let result = persist::commit_alerts(c, &save, &delete, &sends);
            if let Err(e) = &result {
                metrics.count_store_error(StoreOp::Alerts);
                let mut u = lock(&unsaved);
                u.failed(now_ms, e.to_string());
                let n = sends.len();
                let dropped = u.push(save, delete, sends);
                drop_for_cap(&metrics, &dropped);
                metrics.set_store_unsaved(u.sends.len());
                tracing::error!(
                    state = %path,
                    notifications = n,
                    "alert state and notifications could not be saved: kept in memory, sent from there, saved when the store takes writes again: {e}"
                );
            }
            Ok(())
        });
        let workers = lock(&self.workers);
        for r in receivers {
            if let Some(w) = workers.get(&r) {
                w.wake.notify_one();
            }
        }
        tokio::spawn(async move {
            if let Err(e) = pending.wait().await {
                tracing::error!("alert state and notifications could not be saved: {e}");
            }
        });
    }

    /// Writes what the store could not take before (one transaction), when its backoff allows
    /// and no notification of it is being sent. The ticker calls it every second.
    pub async fn flush_unsaved(&self) {
        let now_ms = to_ms(self.clock.now());
        {
            let mut u = lock(&self.unsaved);
            if u.is_empty() || u.flushing || u.next_flush_ms > now_ms {
                return;
            }
            u.flushing = true;
        }
        let unsaved = self.unsaved.clone();
        let known: HashSet<String> = lock(&self.workers).keys().cloned().collect();
        let metrics = self.metrics.clone();
        let job = self.store.request(move |c| {
            let (save, delete, sends, seqs) = {
                let mut u = lock(&unsaved);
                if u.sends.iter().any(|s| s.state == SendState::Sending) {
                    return Ok(None);
                }
                // A receiver a reload removed gets nothing (as its outbox rows are dropped).
                u.sends.retain(|s| {
                    let keep = known.contains(&s.receiver);
                    if !keep {
                        metrics.count_notifications("(removed)", NotificationResult::Dropped, 1);
                    }
                    keep
                });
                let mut save = Vec::new();
                let mut delete = Vec::new();
                for (key, row) in &u.rows {
                    match row {
                        Some(row) => save.push(row.clone()),
                        None => delete.push(key.clone()),
                    }
                }
                let mut sends = Vec::new();
                let mut seqs = Vec::new();
                for s in u.sends.iter_mut() {
                    s.state = SendState::Flushing;
                    sends.push((s.receiver.clone(), s.event.clone()));
                    seqs.push(s.seq);
                }
                (save, delete, sends, seqs)
            };
            let result = persist::commit_alerts(c, &save, &delete, &sends);
            let mut u = lock(&unsaved);
            match result {
                Ok(()) => {
                    // Nothing else adds to `unsaved` while this job runs (only store jobs do).
                    u.rows.clear();
                    u.sends.retain(|s| !seqs.contains(&s.seq));
                    metrics.set_store_unsaved(u.sends.len());
                    let since = u.since_ms;
                    u.healed();
                    Ok(Some((sends.len(), since)))
                }
                Err(e) => {
                    for s in u.sends.iter_mut() {
                        s.state = SendState::Waiting;
                    }
                    Err(e)
                }
            }
        });
        let result = job.wait().await;
        let mut u = lock(&self.unsaved);
        u.flushing = false;
        match result {
            Ok(None) => {}
            Ok(Some((n, since))) => {
                self.metrics.set_store_unsaved(u.sends.len());
                drop(u);
                tracing::info!(
                    notifications = n,
                    unsaved_for_s = (now_ms - since).max(0) / 1000,
                    "the state store takes writes again: alert state and notifications kept in memory are saved"
                );
                for w in lock(&self.workers).values() {
                    w.wake.notify_one();
                }
            }
            Err(e) => {
                self.metrics.count_store_error(StoreOp::Alerts);
                u.last_error = e.to_string();
                let wait = backoff(u.flush_failures).min(FLUSH_BACKOFF_CAP);
                u.next_flush_ms = now_ms + wait.as_millis() as i64;
                u.flush_failures = u.flush_failures.saturating_add(1);
                tracing::warn!(
                    notifications = u.sends.len(),
                    "the state store still cannot be written, retrying: {e}"
                );
            }
        }
    }

    /// Sends the first waiting notifications of `notifier`'s receiver kept in memory (called
    /// when its outbox in the store is empty, so FIFO order holds across both).
    async fn deliver_unsaved(&self, notifier: &dyn Notifier, now: std::time::SystemTime) -> Next {
        let name = notifier.name();
        let now_ms = to_ms(now);
        let (seqs, events) = {
            let mut u = lock(&self.unsaved);
            if let Some(&(_, not_before)) = u.retry.get(name) {
                if not_before > now_ms {
                    return Next::At(from_ms(not_before));
                }
            }
            let limit = notifier.max_batch().max(1);
            let mut seqs = Vec::new();
            let mut events = Vec::new();
            let mut blocked = false;
            for s in u.sends.iter_mut().filter(|s| s.receiver == name) {
                if s.state != SendState::Waiting {
                    blocked = true;
                    break;
                }
                s.state = SendState::Sending;
                seqs.push(s.seq);
                events.push(s.event.clone());
                if seqs.len() == limit {
                    break;
                }
            }
            if seqs.is_empty() {
                // A flush is writing them to the outbox: look again shortly.
                return if blocked {
                    Next::At(now + Duration::from_millis(200))
                } else {
                    Next::Idle
                };
            }
            (seqs, events)
        };
        let verdict = self.outbox.send_unsaved(notifier, &events, now).await;
        let mut u = lock(&self.unsaved);
        let next = match verdict {
            Verdict::Accepted | Verdict::Rejected { .. } => {
                u.sends.retain(|s| !seqs.contains(&s.seq));
                u.retry.remove(name);
                u.healed();
                Next::Again
            }
            Verdict::Retry { after, .. } => {
                for s in u.sends.iter_mut().filter(|s| seqs.contains(&s.seq)) {
                    s.state = SendState::Waiting;
                }
                let attempts = u.retry.get(name).map_or(0, |r| r.0);
                let wait = after.unwrap_or_else(|| backoff(attempts));
                let at = now_ms + wait.as_millis() as i64;
                u.retry.insert(name.to_string(), (attempts + 1, at));
                Next::At(from_ms(at))
            }
        };
        self.metrics.set_store_unsaved(u.sends.len());
        next
    }

    /// Whether everything canaryd promised to keep is in the state store (what `/-/ready`
    /// answers, and part of what the watchdog vouches for).
    pub fn store_health(&self) -> Result<(), String> {
        let u = lock(&self.unsaved);
        if !u.is_empty() {
            let now = to_ms(self.clock.now());
            return Err(format!(
                "the state store {} cannot be written ({}) for {} s: {} notifications and {} alert changes are kept in memory until it can",
                self.store.path().display(),
                u.last_error,
                (now - u.since_ms).max(0) / 1000,
                u.sends.len(),
                u.rows.len(),
            ));
        }
        drop(u);
        let undeleted = self.outbox.undeleted();
        if undeleted > 0 {
            return Err(format!(
                "the state store {} cannot be written: {undeleted} delivered notifications cannot be removed from the outbox",
                self.store.path().display()
            ));
        }
        let book = lock(&self.heartbeats).as_ref().and_then(|b| b.upgrade());
        let checks = book.map_or(0, |b| b.unsaved());
        if checks > 0 {
            return Err(format!(
                "the state store {} cannot be written: the heartbeat state of {checks} checks is kept in memory until it can",
                self.store.path().display()
            ));
        }
        Ok(())
    }

    /// Counts the heartbeat book's unsaved rows in [`Alerting::store_health`].
    pub fn watch_heartbeats(&self, book: &Arc<crate::probe::heartbeat::Book>) {
        *lock(&self.heartbeats) = Some(Arc::downgrade(book));
    }

    /// The firing alerts of one check: name and severity.
    pub fn firing(&self, check: &str) -> Vec<(String, crate::config::rule::Severity)> {
        lock(&self.engine).firing(check)
    }

    /// Every alert, for the API.
    pub fn views(&self) -> Vec<AlertView> {
        lock(&self.engine).views(self.clock.now())
    }

    /// Every silence, newest first.
    pub fn silences(&self) -> Vec<Silence> {
        let mut list = lock(&self.silences).clone();
        list.sort_by_key(|s| std::cmp::Reverse(s.created_at_ms));
        list
    }

    /// Adds a silence (validated, saved, then in force).
    pub async fn add_silence(&self, mut s: Silence) -> Result<Silence, String> {
        let now = to_ms(self.clock.now());
        s.id = uuid::Uuid::new_v4().to_string();
        s.created_at_ms = now;
        silence::validate(&s, now)?;
        let in_force = lock(&self.silences)
            .iter()
            .filter(|x| x.ends_at_ms > now.max(x.starts_at_ms))
            .count();
        if in_force >= silence::MAX_SILENCES {
            return Err(format!(
                "{in_force} silences are active or pending, the most there may be: expire some first"
            ));
        }
        let saved = s.clone();
        self.store
            .request(move |c| persist::save_silence(c, &saved))
            .wait()
            .await
            .map_err(|e| {
                self.metrics.count_store_error(StoreOp::Silence);
                format!("cannot save the silence: {e}")
            })?;
        tracing::info!(id = %s.id, by = %s.created_by, matchers = ?s.matchers, until = %super::rfc3339(from_ms(s.ends_at_ms)), "silence added");
        self.set_silences(|list| list.push(s.clone()));
        Ok(s)
    }

    /// Ends a silence now; `None` if there is no such silence.
    pub async fn expire_silence(&self, id: &str) -> Result<Option<Silence>, String> {
        let now = to_ms(self.clock.now());
        let Some(mut s) = lock(&self.silences).iter().find(|s| s.id == id).cloned() else {
            return Ok(None);
        };
        if s.ends_at_ms > now {
            s.ends_at_ms = now.max(s.starts_at_ms);
            let saved = s.clone();
            self.store
                .request(move |c| persist::save_silence(c, &saved))
                .wait()
                .await
                .map_err(|e| {
                    self.metrics.count_store_error(StoreOp::Silence);
                    format!("cannot save the silence: {e}")
                })?;
        }
        tracing::info!(id = %s.id, "silence expired");
        let updated = s.clone();
        self.set_silences(|list| {
            for x in list.iter_mut() {
                if x.id == updated.id {
                    *x = updated.clone();
                }
            }
        });
        // The ticker notifies alerts the silence was holding back.
        Ok(Some(s))
    }

    fn set_silences(&self, f: impl FnOnce(&mut Vec<Silence>)) {
        let mut list = lock(&self.silences);
        f(&mut list);
        lock(&self.engine).set_silences(list.clone());
    }

    /// Whether the scheduler and the outbox are healthy (what the watchdog vouches for).
    pub fn health(&self) -> Result<(), String> {
        let now = to_ms(self.clock.now());
        let shortest = self.shortest_interval_ms.load(Ordering::Relaxed);
        if shortest > 0 {
            let allowed = (2 * shortest).max(60_000);
            let since = now - self.last_result_ms.load(Ordering::Relaxed);
            if since > allowed {
                return Err(format!(
                    "no check result for {} s (expected one every {} s at most)",
                    since / 1000,
                    allowed / 1000
                ));
            }
        }
        let oldest = self.oldest_waiting_ms.load(Ordering::Relaxed);
        if oldest > 0 && now - oldest > OUTBOX_STUCK.as_millis() as i64 {
            return Err(format!(
                "a notification has waited in the outbox for {} s",
                (now - oldest) / 1000
            ));
        }
        self.store_health()
    }

    /// Stops the workers, ticker and watchdog (notifications stay in the outbox).
    pub fn shutdown(&self) {
        if let Err(why) = self.store_health() {
            tracing::error!("stopping with unsaved state (lost with this process): {why}");
        }
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
        if let Some(w) = lock(&self.watchdog).take() {
            w.abort();
        }
    }

    async fn worker_loop(this: std::sync::Weak<Alerting>, w: Arc<Worker>) {
        loop {
            if w.stop.load(Ordering::Relaxed) {
                return;
            }
            let Some(a) = this.upgrade() else { return };
            let notifier = lock(&w.notifier).clone();
            let now = a.clock.now();
            let outbox = a.outbox.clone();
            drop(a);
            let mut next = outbox.deliver_once(notifier.as_ref(), now).await;
            if let Ok((Next::Idle, _)) = next {
                // The store's queue is empty: what the store could not take goes out from memory.
                let Some(a) = this.upgrade() else { return };
                next = Ok((a.deliver_unsaved(notifier.as_ref(), now).await, None));
            }
            match next {
                Ok((Next::Again, _)) => tokio::task::yield_now().await,
                Ok((Next::Idle, _)) => w.wake.notified().await,
                Ok((Next::At(t), _)) => {
                    let wait = t.duration_since(now).unwrap_or_default();
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = w.wake.notified() => {}
                    }
                }
                Err(e) => {
                    tracing::error!(
                        receiver = notifier.name(),
                        "outbox unreadable, retrying in 5 s: {e}"
                    );
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        }
    }

    async fn tick_loop(this: std::sync::Weak<Alerting>) {
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n: u64 = 0;
        loop {
            interval.tick().await;
            let Some(a) = this.upgrade() else { return };
            a.tick();
            a.flush_unsaved().await;
            a.outbox.delete_finished().await;
            n += 1;
            if n % 5 == 1 {
                a.refresh_outbox_state().await;
            }
            if n.is_multiple_of(3600) {
                a.prune_silences().await;
            }
        }
    }

    /// Reads the outbox lengths into metrics and the watchdog's health (the ticker does it
    /// every 5 s).
    pub async fn refresh_outbox_state(&self) {
        match self.store.request(persist::outbox_lengths).wait().await {
            Ok(list) => {
                let names: Vec<String> = lock(&self.workers).keys().cloned().collect();
                for name in &names {
                    let count = list
                        .iter()
                        .find(|l| &l.receiver == name)
                        .map_or(0, |l| l.count);
                    self.metrics.set_notification_queue_length(name, count);
                }
                let oldest = list.iter().map(|l| l.oldest_ms).min().unwrap_or(0);
                self.oldest_waiting_ms.store(oldest, Ordering::Relaxed);
            }
            Err(e) => tracing::error!("cannot read the outbox length: {e}"),
        }
    }

    /// Forgets silences that ended more than a day ago.
    async fn prune_silences(&self) {
        let cutoff = to_ms(self.clock.now()) - 86_400_000;
        let old: Vec<String> = lock(&self.silences)
            .iter()
            .filter(|s| s.ends_at_ms < cutoff)
            .map(|s| s.id.clone())
            .collect();
        if old.is_empty() {
            return;
        }
        let ids = old.clone();
        if let Err(e) = self
            .store
            .request(move |c| persist::delete_silences(c, &ids))
            .wait()
            .await
        {
            tracing::error!("cannot prune expired silences: {e}");
            return;
        }
        self.set_silences(|list| list.retain(|s| !old.contains(&s.id)));
    }

    async fn watchdog_loop(this: std::sync::Weak<Alerting>, target: watchdog::Target) {
        let mut interval = tokio::time::interval(target.every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let Some(a) = this.upgrade() else { return };
            match a.health() {
                Ok(()) => target.call(&a.outbox).await,
                Err(why) => tracing::warn!("watchdog not called, canaryd is unhealthy: {why}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(key: &str, kind: EventKind) -> AlertEvent {
        crate::alert::tests_support::event(key, kind, 0)
    }

    fn kinds(u: &Unsaved) -> Vec<(String, EventKind)> {
        u.sends
            .iter()
            .map(|s| (s.event.dedup_key.clone(), s.event.kind))
            .collect()
    }

    #[test]
    fn the_memory_queue_drops_reminders_then_the_oldest_triggers_and_never_a_resolve() {
        let mut u = Unsaved::default();
        let mut sends = Vec::new();
        for i in 0..UNSAVED_CAP - 2 {
            sends.push(("r".to_string(), event(&format!("k{i}"), EventKind::Trigger)));
        }
        sends.push(("r".to_string(), event("old", EventKind::Reminder)));
        sends.push(("r".to_string(), event("k0", EventKind::Resolve)));
        assert!(u.push(Vec::new(), Vec::new(), sends).is_empty());
        assert_eq!(u.sends.len(), UNSAVED_CAP);

        // One more: the reminder goes first, though it is not the oldest.
        let dropped = u.push(
            Vec::new(),
            Vec::new(),
            vec![("r".into(), event("new", EventKind::Trigger))],
        );
        assert_eq!(dropped.len(), 1);
        assert_eq!(
            (dropped[0].1.dedup_key.as_str(), dropped[0].1.kind),
            ("old", EventKind::Reminder)
        );
        // Then the oldest trigger; a notification being sent stays.
        u.sends[0].state = SendState::Sending;
        let dropped = u.push(
            Vec::new(),
            Vec::new(),
            vec![("r".into(), event("k1", EventKind::Resolve))],
        );
        assert_eq!(dropped.len(), 1);
        assert_eq!(
            (dropped[0].1.dedup_key.as_str(), dropped[0].1.kind),
            ("k1", EventKind::Trigger)
        );
        assert_eq!(u.sends.len(), UNSAVED_CAP);
        assert_eq!(kinds(&u)[0], ("k0".into(), EventKind::Trigger));
        let tail = kinds(&u).split_off(UNSAVED_CAP - 3);
        assert_eq!(
            tail,
            vec![
                ("k0".into(), EventKind::Resolve),
                ("new".into(), EventKind::Trigger),
                ("k1".into(), EventKind::Resolve)
            ]
        );

        // Only resolves left: the queue goes past the cap rather than drop one.
        let mut u = Unsaved::default();
        let resolves: Vec<_> = (0..UNSAVED_CAP + 5)
            .map(|i| ("r".to_string(), event(&format!("k{i}"), EventKind::Resolve)))
            .collect();
        assert!(u.push(Vec::new(), Vec::new(), resolves).is_empty());
        assert_eq!(u.sends.len(), UNSAVED_CAP + 5);
    }

    #[test]
    fn a_waiting_reminder_is_not_queued_twice_and_rows_keep_the_latest_decision() {
        let mut u = Unsaved::default();
        for _ in 0..3 {
            u.push(
                Vec::new(),
                vec!["gone".into()],
                vec![
                    ("r".into(), event("k", EventKind::Reminder)),
                    ("r".into(), event("k", EventKind::Refresh)),
                    ("r".into(), event("k", EventKind::Escalation)),
                ],
            );
        }
        assert_eq!(u.sends.len(), 5, "{:?}", kinds(&u));
        assert_eq!(u.rows.len(), 1);
        assert_eq!(u.rows.get("gone"), Some(&None));
        assert!(!u.is_empty());
        u.failed(1_000, "disk full".into());
        u.failed(9_000, "still full".into());
        assert_eq!((u.since_ms, u.last_error.as_str()), (1_000, "still full"));
        u.healed();
        assert_eq!(u.since_ms, 1_000, "not healed while something is unsaved");
        u.rows.clear();
        u.sends.clear();
        u.healed();
        assert_eq!((u.since_ms, u.last_error.as_str()), (0, ""));
    }
}
