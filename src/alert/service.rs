//! The running alerting side of the daemon: the engine behind a lock, one delivery worker per
//! receiver, a one-second ticker (time-driven transitions, escalations, reminders, refreshes,
//! outbox lengths), silences, and the watchdog.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::engine::{AlertView, Effects, Engine};
use super::outbox::{Next, Outbox};
use super::receiver::{self, Notifier};
use super::silence::{self, Silence};
use super::{from_ms, to_ms};
use crate::config::{Config, ConfigError, ConfigErrors, Watchdog};
use crate::metrics::Metrics;
use crate::probe::heartbeat::Clock;
use crate::probe::CheckResult;
use crate::store::{self, Store};

/// How often the ticker runs.
pub const TICK: Duration = Duration::from_secs(1);
/// The outbox counts as wedged when its oldest notification is older than this.
pub const OUTBOX_STUCK: Duration = Duration::from_secs(600);

/// Builds every receiver's notifier; errors name the receiver (never a secret).
pub fn notifiers(config: &Config) -> Result<Vec<Arc<dyn Notifier>>, ConfigErrors> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for r in &config.receivers {
        match receiver::build(r) {
            Ok(n) => out.push(n),
            Err(message) => errors.push(ConfigError {
                file: config.path.clone(),
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
}

impl std::fmt::Debug for Alerting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerting").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Alerting {
    /// Loads firing alerts and silences from the store, applies `config`, and starts the
    /// workers, the ticker and the watchdog. Must run inside a tokio runtime (blocks briefly on
    /// the store: call at startup).
    pub fn start(
        store: Store,
        config: &Config,
        notifiers: Vec<Arc<dyn Notifier>>,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Alerting>, String> {
        let rows = store
            .call_blocking(store::load_alerts)
            .map_err(|e| e.to_string())?;
        let silences: Vec<Silence> = store
            .call_blocking(store::load_silences)
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
            .call_blocking(store::load_progress)
            .map_err(|e| e.to_string())?;
        let client = super::outbox::http_client()?;
        let mut engine = Engine::new(config.api_url());
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
        });
        alerting.apply(config, notifiers);
        let ticker = tokio::spawn(Alerting::tick_loop(Arc::downgrade(&alerting)));
        lock(&alerting.tasks).push(ticker);
        Ok(alerting)
    }

    /// Applies a (re)loaded configuration: rules, routes, maintenance, receivers, watchdog.
    pub fn apply(self: &Arc<Self>, config: &Config, notifiers: Vec<Arc<dyn Notifier>>) {
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
            .request(move |c| store::outbox_drop_unknown(c, &known));
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
        let shortest = config.checks.iter().map(|c| c.interval).min();
        self.shortest_interval_ms.store(
            shortest.map(|d| d.as_millis() as i64).unwrap_or(0),
            Ordering::Relaxed,
        );
        {
            let mut engine = lock(&self.engine);
            let fx = engine.configure(config, refresh, self.clock.now());
            let states: Vec<_> = fx
                .states
                .iter()
                .map(|(c, a, s, p)| (c.clone(), a.clone(), *s, p.metric_value()))
                .collect();
            self.metrics.reset_alert_states(&states);
            self.commit(Effects {
                states: Vec::new(),
                ..fx
            });
        }
        let mut wd = lock(&self.watchdog);
        if let Some(old) = wd.take() {
            old.abort();
        }
        if let Some(w) = &config.watchdog {
            *wd = Some(tokio::spawn(Alerting::watchdog_loop(
                Arc::downgrade(self),
                WatchdogTarget::new(w),
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
        Some(self.store.request(move |c| store::save_progress(c, &batch)))
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
        let pending = self
            .store
            .request(move |c| store::commit_alerts(c, &save, &delete, &sends));
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
            .request(move |c| store::save_silence(c, &saved))
            .wait()
            .await
            .map_err(|e| format!("cannot save the silence: {e}"))?;
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
                .request(move |c| store::save_silence(c, &saved))
                .wait()
                .await
                .map_err(|e| format!("cannot save the silence: {e}"))?;
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
        Ok(())
    }

    /// Stops the workers, ticker and watchdog (notifications stay in the outbox).
    pub fn shutdown(&self) {
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
            match outbox.deliver_once(notifier.as_ref(), now).await {
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
        match self.store.request(store::outbox_lengths).wait().await {
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
            .request(move |c| store::delete_silences(c, &ids))
            .wait()
            .await
        {
            tracing::error!("cannot prune expired silences: {e}");
            return;
        }
        self.set_silences(|list| list.retain(|s| !old.contains(&s.id)));
    }

    async fn watchdog_loop(this: std::sync::Weak<Alerting>, target: WatchdogTarget) {
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

/// The watchdog URL, rendered (it may hold a secret).
struct WatchdogTarget {
    url: Option<crate::config::template::Secret>,
    redacted: String,
    every: Duration,
}

impl WatchdogTarget {
    fn new(w: &Watchdog) -> WatchdogTarget {
        WatchdogTarget {
            url: w
                .url
                .render(|_| None)
                .ok()
                .map(|s| crate::config::template::Secret::new(s.trim())),
            redacted: w.url.redacted().to_string(),
            every: w.every.max(Duration::from_secs(1)),
        }
    }

    async fn call(&self, outbox: &Outbox) {
        let Some(url) = &self.url else {
            tracing::error!(url = %self.redacted, "watchdog URL cannot be rendered");
            return;
        };
        match outbox.client().get(url.expose()).send().await {
            Ok(r) if r.status().is_success() => tracing::debug!("watchdog called"),
            Ok(r) => {
                tracing::warn!(url = %self.redacted, status = r.status().as_u16(), "watchdog call refused")
            }
            Err(e) => {
                tracing::warn!(url = %self.redacted, "watchdog call failed: {}", e.without_url())
            }
        }
    }
}
