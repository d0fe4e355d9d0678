//! The running status page: each component's status from its checks' last results and firing
//! alerts, automatic incidents, incidents by hand, and the daily history; published as an
//! immutable [`Snapshot`] the public listener serves from memory.
//!
//! The rules:
//! - A check is **down** when its last result failed or a critical or error alert fires on it,
//!   **slow** when it passed in more than the component's `degraded_above`, **warned** when a
//!   warning or info alert fires on it. Checks without a result yet (or run by another shard)
//!   are left out.
//! - A component is in major outage when every check it has a verdict for is down, in partial
//!   outage when some are, degraded when one is slow or warned, operational otherwise.
//! - An automatic incident opens when one of its `alerts` fires on one of the component's
//!   checks, or the component reaches its `status`; it resolves when neither holds. After a
//!   start it resolves only once every check of the component has run again, so a restart never
//!   resolves and re-opens an incident. An operator who resolves an automatic incident by hand
//!   wins: it is not re-opened until its cause has cleared once.
//! - Every tick adds the time since the previous tick (at most 5 s: a suspended daemon did not
//!   see anything) to today's total for the component's status. Days are flushed to the store
//!   every minute and at shutdown; incidents are written when they change.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::clock::Clock;
use crate::config::rule::Severity;
use crate::store::{Store, StoreError};

use super::def::{AutoIncident, Component, StatusPageConfig, MAX_NAME_CHARS, MAX_TEXT_CHARS};
use super::model::*;
use super::rows::{self, IncidentRow};

/// What the page knows of one check at a tick.
#[derive(Debug, Clone, Default)]
pub struct CheckInput {
    /// Its last result passed.
    pub success: bool,
    /// How long that run took.
    pub duration: Duration,
    /// When that run started.
    pub started_at: Option<SystemTime>,
    /// Firing alerts: name and severity.
    pub firing: Vec<(String, Severity)>,
}

/// Where the page reads checks: `None` for a check without a result here.
pub trait Inputs {
    /// The check's last result and firing alerts.
    fn check(&self, name: &str) -> Option<CheckInput>;
}

impl<F: Fn(&str) -> Option<CheckInput>> Inputs for F {
    fn check(&self, name: &str) -> Option<CheckInput> {
        self(name)
    }
}

/// Days to save: (component, day number, totals).
type DayRows = Vec<(String, i64, Day)>;

/// The longest time one tick may add to a day.
const MAX_TICK: Duration = Duration::from_secs(5);
/// How often days are written to the store.
const FLUSH_EVERY: Duration = Duration::from_secs(60);
/// At most this many incidents are kept (open and past); the oldest resolved go first.
pub const MAX_INCIDENTS: usize = 1000;
/// At most this many updates per incident.
pub const MAX_UPDATES: usize = 200;
/// Past incidents a snapshot carries.
const SNAPSHOT_PAST: usize = 50;

/// An operator's new incident.
#[derive(Debug, Clone)]
pub struct NewIncident {
    /// Title.
    pub title: String,
    /// First update's text.
    pub body: String,
    /// First state (not resolved).
    pub state: IncidentState,
    /// Impact.
    pub impact: Impact,
    /// Affected components, by name.
    pub components: Vec<String>,
}

/// Why an incident request was refused.
#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    /// Bad input (the message says which field and why).
    #[error("{0}")]
    Invalid(String),
    /// No such incident.
    #[error("no incident {0}")]
    NotFound(i64),
    /// The store did not take it (kept in memory).
    #[error("the incident was recorded but not saved: {0}")]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone)]
struct CompState {
    status: ComponentStatus,
    since: SystemTime,
    /// Every check of the component has a result newer than the start.
    seen_all: bool,
    /// The open automatic incident.
    auto_incident: Option<i64>,
    /// An operator resolved the automatic incident while its cause held: wait for it to clear.
    hold_auto: bool,
}

struct Inner {
    config: Arc<StatusPageConfig>,
    started: SystemTime,
    comps: HashMap<String, CompState>,
    /// (component name, day number) → totals.
    days: HashMap<(String, i64), Day>,
    dirty: HashSet<(String, i64)>,
    incidents: BTreeMap<i64, IncidentRow>,
    next_incident: i64,
    next_update: i64,
    last_tick: Option<SystemTime>,
    last_flush: SystemTime,
    version: u64,
}

/// The running status page.
pub struct StatusPage {
    inner: Mutex<Inner>,
    snapshot: Mutex<Arc<Snapshot>>,
    store: Store,
    clock: Arc<dyn Clock>,
}

impl Source for StatusPage {
    fn snapshot(&self) -> Arc<Snapshot> {
        lock(&self.snapshot).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Days since 1970-01-01 (UTC).
pub fn day_number(t: SystemTime) -> i64 {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64) - 1,
    };
    secs.div_euclid(86_400)
}

fn date_of(day: i64) -> Option<chrono::NaiveDate> {
    chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?
        .checked_add_days(chrono::Days::new(day.try_into().ok()?))
}

fn check_text(field: &str, s: &str, max: usize) -> Result<(), IncidentError> {
    let n = s.chars().count();
    if s.trim().is_empty() {
        return Err(IncidentError::Invalid(format!(
            "{field}: must not be empty"
        )));
    }
    if n > max {
        return Err(IncidentError::Invalid(format!(
            "{field}: {n} characters, at most {max} are allowed"
        )));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(IncidentError::Invalid(format!(
            "{field}: must not hold control characters"
        )));
    }
    Ok(())
}

impl StatusPage {
    /// Loads incidents and the last 90 days from the store. Blocks: call at start.
    pub fn open(
        config: Arc<StatusPageConfig>,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> Result<StatusPage, StoreError> {
        let now = clock.now();
        let today = day_number(now);
        let from_day = today - HISTORY_DAYS as i64 + 1;
        let since_ms = crate::alert::to_ms(now) - (HISTORY_DAYS as i64) * 86_400_000;
        let (incidents, days, (max_i, max_u)) = store.call_blocking(move |c| {
            rows::prune_incidents(c, since_ms)?;
            Ok((
                rows::load_incidents(c, since_ms)?,
                rows::load_days(c, from_day)?,
                rows::max_ids(c)?,
            ))
        })?;
        let mut inner = Inner {
            config: config.clone(),
            started: now,
            comps: HashMap::new(),
            days: days.into_iter().map(|(c, d, v)| ((c, d), v)).collect(),
            dirty: HashSet::new(),
            incidents: incidents.into_iter().map(|r| (r.incident.id, r)).collect(),
            next_incident: max_i + 1,
            next_update: max_u + 1,
            last_tick: None,
            last_flush: now,
            version: 1,
        };
        inner.apply_config(config, now);
        let snapshot = Arc::new(inner.snapshot(now));
        Ok(StatusPage {
            inner: Mutex::new(inner),
            snapshot: Mutex::new(snapshot),
            store,
            clock,
        })
    }

    /// A reload's new page (same listener): components keep their state by name.
    pub fn reconfigure(&self, config: Arc<StatusPageConfig>) {
        let now = self.clock.now();
        let mut inner = lock(&self.inner);
        inner.apply_config(config, now);
        inner.version += 1;
        self.publish(&inner, now);
    }

    /// The configuration in use.
    pub fn config(&self) -> Arc<StatusPageConfig> {
        lock(&self.inner).config.clone()
    }

    fn publish(&self, inner: &Inner, now: SystemTime) {
        *lock(&self.snapshot) = Arc::new(inner.snapshot(now));
    }

    /// One evaluation: statuses, automatic incidents, time per status. Called every second.
    pub fn tick(&self, inputs: &dyn Inputs) {
        let now = self.clock.now();
        let mut inner = lock(&self.inner);
        let writes = inner.evaluate(inputs, now);
        let flush = now
            .duration_since(inner.last_flush)
            .is_ok_and(|d| d >= FLUSH_EVERY);
        let days = if flush {
            inner.take_dirty_days(now)
        } else {
            None
        };
        for (row, update) in writes {
            self.store_incident(row, update);
        }
        if let Some((days, keep)) = days {
            drop(self.store.request(move |c| rows::save_days(c, &days, keep)));
        }
        // The snapshot is rebuilt every tick: uptime and "today" move on even when no status
        // changes, so the version moves too (renderers re-render at most once a tick).
        inner.version += 1;
        self.publish(&inner, now);
    }

    /// Writes the days not yet saved (at shutdown).
    pub async fn flush(&self) -> Result<(), StoreError> {
        let now = self.clock.now();
        let days = lock(&self.inner).take_dirty_days(now);
        if let Some((days, keep)) = days {
            self.store
                .request(move |c| rows::save_days(c, &days, keep))
                .wait()
                .await?;
        }
        Ok(())
    }

    #[cfg(test)]
    fn flush_blocking_for_tests(&self) {
        let now = self.clock.now();
        if let Some((days, keep)) = lock(&self.inner).take_dirty_days(now) {
            self.store
                .call_blocking(move |c| rows::save_days(c, &days, keep))
                .unwrap();
        }
    }

    fn store_incident(
        &self,
        row: IncidentRow,
        update: Option<IncidentUpdate>,
    ) -> crate::store::Pending<()> {
        self.store
            .request(move |c| rows::save_incident(c, &row, update.as_ref()))
    }

    /// Every incident kept (open and past), newest first.
    pub fn incidents(&self) -> Vec<Incident> {
        lock(&self.inner)
            .incidents
            .values()
            .rev()
            .map(|r| r.incident.clone())
            .collect()
    }

    /// One incident.
    pub fn incident(&self, id: i64) -> Option<Incident> {
        lock(&self.inner)
            .incidents
            .get(&id)
            .map(|r| r.incident.clone())
    }

    /// Opens an incident by hand. The answer waits for the store.
    pub async fn open_incident(&self, new: NewIncident) -> Result<Incident, IncidentError> {
        check_text("title", &new.title, MAX_NAME_CHARS)?;
        check_text("message", &new.body, MAX_TEXT_CHARS)?;
        if new.state == IncidentState::Resolved {
            return Err(IncidentError::Invalid(
                "state: a new incident cannot be resolved".into(),
            ));
        }
        let now = self.clock.now();
        let (incident, pending) = {
            let mut inner = lock(&self.inner);
            let mut components = Vec::new();
            for name in &new.components {
                if !inner.config.components.iter().any(|c| &c.name == name) {
                    return Err(IncidentError::Invalid(format!(
                        "components: no component named {:?} on the status page",
                        crate::config::ctx::excerpt(name, 80)
                    )));
                }
                if !components.contains(name) {
                    components.push(name.clone());
                }
            }
            let order = |n: &String| inner.config.components.iter().position(|c| &c.name == n);
            components.sort_by_key(order);
            let (row, update) = inner.new_incident(NewIncident { components, ..new }, None, now);
            let incident = row.incident.clone();
            inner.version += 1;
            self.publish(&inner, now);
            (incident, self.store_incident(row, Some(update)))
        };
        pending.wait().await?;
        Ok(incident)
    }

    /// Adds an update to an incident (a resolved state resolves it; an update to a resolved
    /// incident re-opens it). The answer waits for the store.
    pub async fn update_incident(
        &self,
        id: i64,
        state: IncidentState,
        body: String,
    ) -> Result<Incident, IncidentError> {
        check_text("message", &body, MAX_TEXT_CHARS)?;
        let now = self.clock.now();
        let (incident, pending) = {
            let mut inner = lock(&self.inner);
            if inner
                .incidents
                .get(&id)
                .is_some_and(|r| r.incident.updates.len() >= MAX_UPDATES)
            {
                return Err(IncidentError::Invalid(format!(
                    "incident {id} has {MAX_UPDATES} updates: open a new one"
                )));
            }
            let (row, update) = inner
                .add_update(id, state, body, now)
                .ok_or(IncidentError::NotFound(id))?;
            // An automatic incident resolved by hand stays resolved until its cause clears.
            if state == IncidentState::Resolved {
                if let Some(comp) = &row.auto_component {
                    if let Some(cs) = inner.comps.get_mut(comp) {
                        if cs.auto_incident == Some(id) {
                            cs.auto_incident = None;
                            cs.hold_auto = true;
                        }
                    }
                }
            }
            let incident = row.incident.clone();
            inner.version += 1;
            self.publish(&inner, now);
            (incident, self.store_incident(row, Some(update)))
        };
        pending.wait().await?;
        Ok(incident)
    }
}

impl Inner {
    fn apply_config(&mut self, config: Arc<StatusPageConfig>, now: SystemTime) {
        let names: HashSet<&str> = config.components.iter().map(|c| c.name.as_str()).collect();
        self.comps.retain(|k, _| names.contains(k.as_str()));
        for c in &config.components {
            self.comps.entry(c.name.clone()).or_insert_with(|| {
                // An automatic incident still open from before a restart stays this one's.
                let auto_incident = self
                    .incidents
                    .values()
                    .rev()
                    .find(|r| {
                        r.incident.resolved.is_none()
                            && r.auto_component.as_deref() == Some(c.name.as_str())
                    })
                    .map(|r| r.incident.id);
                CompState {
                    status: ComponentStatus::Operational,
                    since: now,
                    seen_all: false,
                    auto_incident,
                    hold_auto: false,
                }
            });
        }
        self.config = config;
    }

    fn new_incident(
        &mut self,
        new: NewIncident,
        auto_component: Option<String>,
        now: SystemTime,
    ) -> (IncidentRow, IncidentUpdate) {
        let NewIncident {
            title,
            body,
            state,
            impact,
            components,
        } = new;
        let id = self.next_incident;
        self.next_incident += 1;
        let update = IncidentUpdate {
            id: self.next_update,
            state,
            body,
            at: now,
        };
        self.next_update += 1;
        let row = IncidentRow {
            incident: Incident {
                id,
                title,
                impact,
                state,
                components,
                created: now,
                updated: now,
                resolved: None,
                automatic: auto_component.is_some(),
                updates: vec![update.clone()],
            },
            auto_component,
        };
        self.incidents.insert(id, row.clone());
        self.trim_incidents();
        (row, update)
    }

    fn add_update(
        &mut self,
        id: i64,
        state: IncidentState,
        body: String,
        now: SystemTime,
    ) -> Option<(IncidentRow, IncidentUpdate)> {
        let update = IncidentUpdate {
            id: self.next_update,
            state,
            body,
            at: now,
        };
        let row = self.incidents.get_mut(&id)?;
        self.next_update += 1;
        let i = &mut row.incident;
        i.state = state;
        i.updated = now;
        i.resolved = (state == IncidentState::Resolved).then_some(now);
        i.updates.insert(0, update.clone());
        Some((row.clone(), update))
    }

    /// Drops the oldest resolved incidents beyond [`MAX_INCIDENTS`] (from memory; the store
    /// prunes by age).
    fn trim_incidents(&mut self) {
        while self.incidents.len() > MAX_INCIDENTS {
            let Some(oldest) = self
                .incidents
                .values()
                .find(|r| r.incident.resolved.is_some())
                .map(|r| r.incident.id)
            else {
                break;
            };
            self.incidents.remove(&oldest);
        }
    }

    /// Statuses, automatic incidents and time per status; returns the incident writes.
    fn evaluate(
        &mut self,
        inputs: &dyn Inputs,
        now: SystemTime,
    ) -> Vec<(IncidentRow, Option<IncidentUpdate>)> {
        let elapsed = self
            .last_tick
            .and_then(|t| now.duration_since(t).ok())
            .unwrap_or_default()
            .min(MAX_TICK);
        self.last_tick = Some(now);
        let today = day_number(now);
        let mut writes = Vec::new();
        let config = self.config.clone();
        for c in &config.components {
            let (status, has_data, seen_all, alert_fires) = self.judge(c, inputs);
            let Some(mut cs) = self.comps.get(&c.name).cloned() else {
                continue;
            };
            if status != cs.status {
                cs.status = status;
                cs.since = now;
                self.version += 1;
            }
            cs.seen_all |= seen_all;
            if has_data && !elapsed.is_zero() {
                let key = (c.name.clone(), today);
                let d = self.days.entry(key.clone()).or_default();
                let ms = elapsed.as_millis() as u64;
                d.observed_ms += ms;
                match status {
                    ComponentStatus::Operational => {}
                    ComponentStatus::DegradedPerformance => d.degraded_ms += ms,
                    ComponentStatus::PartialOutage => d.partial_ms += ms,
                    ComponentStatus::MajorOutage => d.major_ms += ms,
                }
                self.dirty.insert(key);
            }
            if let Some(auto) = &c.incident {
                let cause = alert_fires || auto.status.is_some_and(|s| status >= s);
                self.auto_incident(c, auto, &mut cs, cause, now, &mut writes);
            }
            self.comps.insert(c.name.clone(), cs);
        }
        writes
    }

    fn auto_incident(
        &mut self,
        c: &Component,
        auto: &AutoIncident,
        cs: &mut CompState,
        cause: bool,
        now: SystemTime,
        writes: &mut Vec<(IncidentRow, Option<IncidentUpdate>)>,
    ) {
        // An incident resolved by hand elsewhere (or pruned) is no longer this component's.
        if let Some(id) = cs.auto_incident {
            if self
                .incidents
                .get(&id)
                .is_none_or(|r| r.incident.resolved.is_some())
            {
                cs.auto_incident = None;
            }
        }
        if !cause {
            cs.hold_auto = false;
        }
        match (cs.auto_incident, cause) {
            (None, true) if !cs.hold_auto => {
                let status = cs.status.max(ComponentStatus::PartialOutage);
                let new = NewIncident {
                    title: AutoIncident::render(&auto.title, &c.name, cs.status),
                    body: AutoIncident::render(&auto.message, &c.name, cs.status),
                    state: IncidentState::Investigating,
                    impact: Impact::of(status),
                    components: vec![c.name.clone()],
                };
                let (row, update) = self.new_incident(new, Some(c.name.clone()), now);
                tracing::info!(component = %c.name, incident = row.incident.id, "status page incident opened");
                cs.auto_incident = Some(row.incident.id);
                self.version += 1;
                writes.push((row, Some(update)));
            }
            (Some(id), false) if cs.seen_all => {
                let body = AutoIncident::render(&auto.resolved_message, &c.name, cs.status);
                if let Some((row, update)) = self.add_update(id, IncidentState::Resolved, body, now)
                {
                    tracing::info!(component = %c.name, incident = id, "status page incident resolved");
                    self.version += 1;
                    writes.push((row, Some(update)));
                }
                cs.auto_incident = None;
            }
            (Some(id), true) => {
                // A worse status raises the impact of the open incident (never lowers it).
                let impact = Impact::of(cs.status.max(ComponentStatus::PartialOutage));
                if let Some(row) = self.incidents.get_mut(&id) {
                    if impact > row.incident.impact {
                        row.incident.impact = impact;
                        self.version += 1;
                        writes.push((row.clone(), None));
                    }
                }
            }
            _ => {}
        }
    }

    /// (status, has data, every check has run since start, an incident alert fires).
    fn judge(&self, c: &Component, inputs: &dyn Inputs) -> (ComponentStatus, bool, bool, bool) {
        let (mut known, mut down, mut degraded, mut alert_fires) = (0, 0, false, false);
        let mut seen_all = true;
        for (name, _) in &c.checks {
            let Some(input) = inputs.check(name) else {
                seen_all = false;
                continue;
            };
            if input.started_at.is_none_or(|t| t < self.started) {
                seen_all = false;
            }
            known += 1;
            let critical = input
                .firing
                .iter()
                .any(|(_, s)| matches!(s, Severity::Critical | Severity::Error));
            let warned = input
                .firing
                .iter()
                .any(|(_, s)| matches!(s, Severity::Warning | Severity::Info));
            if let Some(auto) = &c.incident {
                alert_fires |= input
                    .firing
                    .iter()
                    .any(|(a, _)| auto.alerts.iter().any(|(n, _)| n == a));
            }
            if !input.success || critical {
                down += 1;
            } else if warned || c.degraded_above.is_some_and(|d| input.duration > d) {
                degraded = true;
            }
        }
        let status = if known > 0 && down == known {
            ComponentStatus::MajorOutage
        } else if down > 0 {
            ComponentStatus::PartialOutage
        } else if degraded {
            ComponentStatus::DegradedPerformance
        } else {
            ComponentStatus::Operational
        };
        (status, known > 0, seen_all, alert_fires)
    }

    fn take_dirty_days(&mut self, now: SystemTime) -> Option<(DayRows, i64)> {
        self.last_flush = now;
        let keep = day_number(now) - HISTORY_DAYS as i64 + 1;
        self.days.retain(|(_, d), _| *d >= keep);
        if self.dirty.is_empty() {
            return None;
        }
        let rows = self
            .dirty
            .drain()
            .filter_map(|k| self.days.get(&k).map(|d| (k.0.clone(), k.1, *d)))
            .collect();
        Some((rows, keep))
    }

    fn snapshot(&self, now: SystemTime) -> Snapshot {
        let today = day_number(now);
        let config = &self.config;
        let components = config
            .components
            .iter()
            .map(|c| {
                let days: Vec<Day> = (0..HISTORY_DAYS as i64)
                    .rev()
                    .map(|back| {
                        let n = today - back;
                        let mut d = self
                            .days
                            .get(&(c.name.clone(), n))
                            .copied()
                            .unwrap_or_default();
                        d.date = date_of(n);
                        d
                    })
                    .collect();
                let (obs, partial, major) = days.iter().fold((0, 0, 0), |(o, p, m), d| {
                    (o + d.observed_ms, p + d.partial_ms, m + d.major_ms)
                });
                let cs = self.comps.get(&c.name);
                ComponentView {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    description: c.description.clone(),
                    status: cs.map_or(ComponentStatus::Operational, |s| s.status),
                    since: cs.map_or(self.started, |s| s.since),
                    days,
                    uptime: uptime(obs, partial, major),
                }
            })
            .collect();
        let cutoff = now
            .checked_sub(Duration::from_secs(86_400 * HISTORY_DAYS as u64))
            .unwrap_or(UNIX_EPOCH);
        let mut open = Vec::new();
        let mut past = Vec::new();
        for r in self.incidents.values().rev() {
            match r.incident.resolved {
                None => open.push(r.incident.clone()),
                Some(t) if t >= cutoff && past.len() < SNAPSHOT_PAST => {
                    past.push(r.incident.clone())
                }
                Some(_) => {}
            }
        }
        Snapshot {
            title: config.title.clone(),
            description: config.description.clone(),
            public_url: config.public_url.clone(),
            generated: now,
            components,
            open,
            past,
            version: self.version,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::config::Origin;

    fn origin() -> Origin {
        Origin {
            file: "canaryd.yaml".into(),
            line: 1,
            col: 1,
        }
    }

    fn config() -> Arc<StatusPageConfig> {
        let comp = |name: &str, checks: &[&str], incident: Option<AutoIncident>| {
            Arc::new(Component {
                name: name.into(),
                id: slug(name),
                description: None,
                checks: checks.iter().map(|c| (c.to_string(), origin())).collect(),
                degraded_above: Some(Duration::from_secs(2)),
                incident,
            })
        };
        Arc::new(StatusPageConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            title: "Shop status".into(),
            description: None,
            public_url: None,
            components: vec![
                comp(
                    "Login",
                    &["login-a", "login-b"],
                    Some(AutoIncident {
                        alerts: vec![("LoginDown".into(), origin())],
                        status: Some(ComponentStatus::MajorOutage),
                        title: "${component}: ${status}".into(),
                        message: "Looking at ${component}.".into(),
                        resolved_message: "${component} works again.".into(),
                    }),
                ),
                comp("API", &["api"], None),
            ],
        })
    }

    struct World {
        results: Mutex<HashMap<String, CheckInput>>,
    }

    impl World {
        fn set(
            &self,
            check: &str,
            success: bool,
            ms: u64,
            at: SystemTime,
            firing: &[(&str, Severity)],
        ) {
            lock(&self.results).insert(
                check.into(),
                CheckInput {
                    success,
                    duration: Duration::from_millis(ms),
                    started_at: Some(at),
                    firing: firing.iter().map(|(a, s)| (a.to_string(), *s)).collect(),
                },
            );
        }
    }

    impl Inputs for World {
        fn check(&self, name: &str) -> Option<CheckInput> {
            lock(&self.results).get(name).cloned()
        }
    }

    fn t0() -> SystemTime {
        // 2026-12-03T23:59:00Z: a minute before a day changes.
        UNIX_EPOCH + Duration::from_secs(1_796_428_740)
    }

    fn status(page: &StatusPage, name: &str) -> ComponentStatus {
        page.snapshot()
            .components
            .iter()
            .find(|c| c.name == name)
            .unwrap()
            .status
    }

    #[test]
    fn statuses_incidents_and_days_follow_the_checks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let clock = Arc::new(ManualClock::new(t0()));
        let page = StatusPage::open(config(), store.clone(), clock.clone()).unwrap();
        let world = World {
            results: Mutex::new(HashMap::new()),
        };
        page.tick(&world);
        assert_eq!(status(&page, "Login"), ComponentStatus::Operational);
        assert_eq!(page.snapshot().components[0].uptime, None, "no data yet");

        let now = |clock: &ManualClock| clock.now();
        clock.advance(Duration::from_secs(1));
        world.set("login-a", true, 100, now(&clock), &[]);
        world.set("login-b", true, 2500, now(&clock), &[]);
        world.set(
            "api",
            true,
            10,
            now(&clock),
            &[("Backlog", Severity::Warning)],
        );
        page.tick(&world);
        assert_eq!(
            status(&page, "Login"),
            ComponentStatus::DegradedPerformance,
            "slow"
        );
        assert_eq!(
            status(&page, "API"),
            ComponentStatus::DegradedPerformance,
            "warned"
        );

        clock.advance(Duration::from_secs(1));
        world.set("login-b", false, 100, now(&clock), &[]);
        page.tick(&world);
        assert_eq!(status(&page, "Login"), ComponentStatus::PartialOutage);
        assert!(
            page.snapshot().open.is_empty(),
            "partial outage opens nothing here"
        );

        clock.advance(Duration::from_secs(1));
        world.set("login-a", false, 100, now(&clock), &[]);
        page.tick(&world);
        let snap = page.snapshot();
        assert_eq!(status(&page, "Login"), ComponentStatus::MajorOutage);
        assert_eq!(snap.open.len(), 1);
        let inc = &snap.open[0];
        assert_eq!(inc.title, "Login: major outage");
        assert_eq!(inc.updates[0].body, "Looking at Login.");
        assert_eq!(inc.impact, Impact::Critical);
        assert!(inc.automatic);
        assert_eq!(inc.components, vec!["Login".to_string()]);

        // A restart keeps the incident open until every check of the component has run again.
        page.flush_blocking_for_tests();
        drop(page);
        clock.advance(Duration::from_secs(60));
        let page = StatusPage::open(config(), store.clone(), clock.clone()).unwrap();
        world.set(
            "login-a",
            true,
            100,
            now(&clock) - Duration::from_secs(30),
            &[],
        );
        world.set(
            "login-b",
            true,
            100,
            now(&clock) - Duration::from_secs(30),
            &[],
        );
        page.tick(&world);
        assert_eq!(
            page.snapshot().open.len(),
            1,
            "results from before the start resolve nothing"
        );
        clock.advance(Duration::from_secs(1));
        world.set("login-a", true, 100, now(&clock), &[]);
        world.set("login-b", true, 100, now(&clock), &[]);
        page.tick(&world);
        let snap = page.snapshot();
        assert!(snap.open.is_empty());
        assert_eq!(snap.past.len(), 1);
        assert_eq!(snap.past[0].state, IncidentState::Resolved);
        assert_eq!(snap.past[0].updates[0].body, "Login works again.");
        assert_eq!(snap.past[0].updates.len(), 2);

        // The days: a minute before midnight, three seconds observed (1 degraded, 1 partial,
        // 1 major) on the first day; after the restart the next day.
        let days = &snap.components[0].days;
        assert_eq!(days.len(), HISTORY_DAYS);
        let yesterday = days[HISTORY_DAYS - 2];
        assert_eq!(
            (
                yesterday.observed_ms,
                yesterday.degraded_ms,
                yesterday.partial_ms,
                yesterday.major_ms
            ),
            (3000, 1000, 1000, 1000)
        );
        assert_eq!(yesterday.worst(), Some(ComponentStatus::MajorOutage));
        assert_eq!(days[HISTORY_DAYS - 1].observed_ms, 1000);
        assert_eq!(days[0].worst(), None);
    }

    #[test]
    fn an_alert_opens_the_incident_and_a_hand_resolve_holds_until_it_clears() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let clock = Arc::new(ManualClock::new(t0()));
        let page = StatusPage::open(config(), store, clock.clone()).unwrap();
        let world = World {
            results: Mutex::new(HashMap::new()),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        clock.advance(Duration::from_secs(1));
        world.set(
            "login-a",
            true,
            100,
            clock.now(),
            &[("LoginDown", Severity::Critical)],
        );
        world.set("login-b", true, 100, clock.now(), &[]);
        page.tick(&world);
        let open = page.snapshot().open.clone();
        assert_eq!(open.len(), 1, "the alert opened it");
        assert_eq!(
            status(&page, "Login"),
            ComponentStatus::PartialOutage,
            "a critical alert counts as down"
        );
        let resolved = rt
            .block_on(page.update_incident(
                open[0].id,
                IncidentState::Resolved,
                "Fixed by hand.".into(),
            ))
            .unwrap();
        assert_eq!(resolved.state, IncidentState::Resolved);
        clock.advance(Duration::from_secs(1));
        page.tick(&world);
        assert!(
            page.snapshot().open.is_empty(),
            "not re-opened while the alert still fires"
        );
        world.set("login-a", true, 100, clock.now(), &[]);
        page.tick(&world);
        world.set(
            "login-a",
            true,
            100,
            clock.now(),
            &[("LoginDown", Severity::Critical)],
        );
        page.tick(&world);
        assert_eq!(
            page.snapshot().open.len(),
            1,
            "a new firing opens a new incident"
        );

        // By hand: validation, then open, update, resolve; kept in the store.
        let bad = rt.block_on(page.open_incident(NewIncident {
            title: "x".into(),
            body: "y".into(),
            state: IncidentState::Investigating,
            impact: Impact::Minor,
            components: vec!["Payments".into()],
        }));
        assert!(bad
            .unwrap_err()
            .to_string()
            .contains("no component named \"Payments\""));
        let i = rt
            .block_on(page.open_incident(NewIncident {
                title: "Slow checkout".into(),
                body: "We see slow card payments.".into(),
                state: IncidentState::Identified,
                impact: Impact::Major,
                components: vec!["API".into(), "Login".into()],
            }))
            .unwrap();
        assert_eq!(
            i.components,
            vec!["Login".to_string(), "API".to_string()],
            "page order"
        );
        rt.block_on(page.update_incident(i.id, IncidentState::Monitoring, "Fix deployed.".into()))
            .unwrap();
        assert!(matches!(
            rt.block_on(page.update_incident(9999, IncidentState::Monitoring, "x".into())),
            Err(IncidentError::NotFound(9999))
        ));
        let got = page.incident(i.id).unwrap();
        assert_eq!(got.updates.len(), 2);
        assert_eq!(got.updates[0].body, "Fix deployed.");
        assert_eq!(got.state, IncidentState::Monitoring);
    }
}
