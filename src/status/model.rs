//! What the public status page shows, as one immutable [`Snapshot`]: the renderers (HTML, Atom,
//! the Statuspage-format JSON) read only this, never a check, a URL or a message. Everything in
//! a snapshot is public by construction: component names and descriptions and incident texts,
//! as configured or written by an operator.

use std::sync::Arc;
use std::time::SystemTime;

use chrono::NaiveDate;

/// How many days of history the page shows (one bar per day).
pub const HISTORY_DAYS: usize = 90;

/// A component's status, Statuspage's four (worst last).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ComponentStatus {
    /// Every check passes and nothing warns.
    Operational,
    /// Every check passes, but one is slow or a warning alert fires.
    DegradedPerformance,
    /// Some of the component's checks fail.
    PartialOutage,
    /// Every check of the component fails.
    MajorOutage,
}

impl ComponentStatus {
    /// Statuspage's name: `operational`, `degraded_performance`, `partial_outage`, `major_outage`.
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentStatus::Operational => "operational",
            ComponentStatus::DegradedPerformance => "degraded_performance",
            ComponentStatus::PartialOutage => "partial_outage",
            ComponentStatus::MajorOutage => "major_outage",
        }
    }

    /// What a person reads: `Operational`, `Degraded performance`, `Partial outage`, `Major outage`.
    pub fn label(self) -> &'static str {
        match self {
            ComponentStatus::Operational => "Operational",
            ComponentStatus::DegradedPerformance => "Degraded performance",
            ComponentStatus::PartialOutage => "Partial outage",
            ComponentStatus::MajorOutage => "Major outage",
        }
    }

    /// Parses [`ComponentStatus::as_str`].
    pub fn parse(s: &str) -> Option<ComponentStatus> {
        [
            ComponentStatus::Operational,
            ComponentStatus::DegradedPerformance,
            ComponentStatus::PartialOutage,
            ComponentStatus::MajorOutage,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// An incident's state, Statuspage's four.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IncidentState {
    /// Something is wrong; the cause is not known yet.
    Investigating,
    /// The cause is known.
    Identified,
    /// A fix is out; watching that it holds.
    Monitoring,
    /// Over.
    Resolved,
}

impl IncidentState {
    /// All four, in their usual order.
    pub const ALL: [IncidentState; 4] = [
        IncidentState::Investigating,
        IncidentState::Identified,
        IncidentState::Monitoring,
        IncidentState::Resolved,
    ];

    /// Statuspage's name: `investigating`, `identified`, `monitoring`, `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentState::Investigating => "investigating",
            IncidentState::Identified => "identified",
            IncidentState::Monitoring => "monitoring",
            IncidentState::Resolved => "resolved",
        }
    }

    /// What a person reads: `Investigating`, `Identified`, `Monitoring`, `Resolved`.
    pub fn label(self) -> &'static str {
        match self {
            IncidentState::Investigating => "Investigating",
            IncidentState::Identified => "Identified",
            IncidentState::Monitoring => "Monitoring",
            IncidentState::Resolved => "Resolved",
        }
    }

    /// Parses [`IncidentState::as_str`].
    pub fn parse(s: &str) -> Option<IncidentState> {
        IncidentState::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// An incident's impact, Statuspage's four (also the page's overall indicator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Impact {
    /// No impact.
    None,
    /// Minor.
    Minor,
    /// Major.
    Major,
    /// Critical.
    Critical,
}

impl Impact {
    /// Statuspage's name: `none`, `minor`, `major`, `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Impact::None => "none",
            Impact::Minor => "minor",
            Impact::Major => "major",
            Impact::Critical => "critical",
        }
    }

    /// Parses [`Impact::as_str`].
    pub fn parse(s: &str) -> Option<Impact> {
        [Impact::None, Impact::Minor, Impact::Major, Impact::Critical]
            .into_iter()
            .find(|c| c.as_str() == s)
    }

    /// The impact a component status implies (an automatic incident's impact; the page's
    /// indicator when no incident is open).
    pub fn of(status: ComponentStatus) -> Impact {
        match status {
            ComponentStatus::Operational => Impact::None,
            ComponentStatus::DegradedPerformance => Impact::Minor,
            ComponentStatus::PartialOutage => Impact::Major,
            ComponentStatus::MajorOutage => Impact::Critical,
        }
    }
}

/// One day of one component: how long it was seen in each status (milliseconds). A day the
/// daemon did not run has `observed_ms` 0 ("no data", never "up").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Day {
    /// The day (UTC).
    pub date: Option<NaiveDate>,
    /// Time observed in any status.
    pub observed_ms: u64,
    /// Time in degraded performance.
    pub degraded_ms: u64,
    /// Time in partial outage.
    pub partial_ms: u64,
    /// Time in major outage.
    pub major_ms: u64,
}

impl Day {
    /// The day's uptime in 0..=1, `None` without data. A major outage counts in full, a partial
    /// outage at 30 % (Statuspage's weighting), degraded performance not at all.
    pub fn uptime(&self) -> Option<f64> {
        uptime(self.observed_ms, self.partial_ms, self.major_ms)
    }

    /// The worst status seen that day (`None` without data).
    pub fn worst(&self) -> Option<ComponentStatus> {
        if self.observed_ms == 0 {
            None
        } else if self.major_ms > 0 {
            Some(ComponentStatus::MajorOutage)
        } else if self.partial_ms > 0 {
            Some(ComponentStatus::PartialOutage)
        } else if self.degraded_ms > 0 {
            Some(ComponentStatus::DegradedPerformance)
        } else {
            Some(ComponentStatus::Operational)
        }
    }
}

/// Uptime over `observed_ms`: a major outage counts in full, a partial one at 30 %.
pub fn uptime(observed_ms: u64, partial_ms: u64, major_ms: u64) -> Option<f64> {
    if observed_ms == 0 {
        return None;
    }
    let down = major_ms as f64 + 0.3 * partial_ms as f64;
    Some((1.0 - down / observed_ms as f64).clamp(0.0, 1.0))
}

/// One component as the page shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentView {
    /// A stable identifier derived from the name (Statuspage's `id`): lowercase letters,
    /// digits and `-`, unique within the page.
    pub id: String,
    /// The configured name (public).
    pub name: String,
    /// The configured description (public), if any.
    pub description: Option<String>,
    /// Status now.
    pub status: ComponentStatus,
    /// When the status last changed (or when the page started).
    pub since: SystemTime,
    /// The last [`HISTORY_DAYS`] days, oldest first, today last.
    pub days: Vec<Day>,
    /// Uptime over those days (`None` without data).
    pub uptime: Option<f64>,
}

/// One update of an incident.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentUpdate {
    /// Identifier, unique across incidents.
    pub id: i64,
    /// The state this update set.
    pub state: IncidentState,
    /// The text (public; plain text, never HTML).
    pub body: String,
    /// When it was posted.
    pub at: SystemTime,
}

/// An incident: opened by an alert (automatic) or by an operator.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// Identifier.
    pub id: i64,
    /// Title (public).
    pub title: String,
    /// Impact.
    pub impact: Impact,
    /// The latest update's state.
    pub state: IncidentState,
    /// Names of the components it affects (public), in page order.
    pub components: Vec<String>,
    /// Opened at.
    pub created: SystemTime,
    /// Last update at.
    pub updated: SystemTime,
    /// Resolved at.
    pub resolved: Option<SystemTime>,
    /// Opened by canaryd from an alert (and resolved by it when the alert resolves).
    pub automatic: bool,
    /// Updates, newest first (at least one: the opening).
    pub updates: Vec<IncidentUpdate>,
}

/// Everything the public page shows, at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The page's title.
    pub title: String,
    /// An optional line under the title.
    pub description: Option<String>,
    /// The page's public address (feeds and the JSON link to it), when configured.
    pub public_url: Option<String>,
    /// When this snapshot was made.
    pub generated: SystemTime,
    /// Components in configured order.
    pub components: Vec<ComponentView>,
    /// Unresolved incidents, newest first.
    pub open: Vec<Incident>,
    /// Resolved incidents of the last [`HISTORY_DAYS`] days, newest first (at most 50).
    pub past: Vec<Incident>,
    /// Grows with every change of what the page shows; renderers cache by it.
    pub version: u64,
}

impl Snapshot {
    /// The worst component status.
    pub fn worst(&self) -> ComponentStatus {
        self.components
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(ComponentStatus::Operational)
    }

    /// The page's indicator (Statuspage's `status.indicator`): the highest impact of an open
    /// incident, or of the worst component status when it is worse.
    pub fn indicator(&self) -> Impact {
        let incidents = self
            .open
            .iter()
            .map(|i| i.impact)
            .max()
            .unwrap_or(Impact::None);
        incidents.max(Impact::of(self.worst()))
    }

    /// The sentence for the indicator (Statuspage's `status.description`).
    pub fn description_of_status(&self) -> &'static str {
        match self.indicator() {
            Impact::None => "All Systems Operational",
            Impact::Minor => "Minor Service Outage",
            Impact::Major => "Partial System Outage",
            Impact::Critical => "Major System Outage",
        }
    }
}

/// Where the public listener gets its snapshot (the running status page; a fixed one in tests).
pub trait Source: Send + Sync + 'static {
    /// The current snapshot (cheap: an `Arc` clone).
    fn snapshot(&self) -> Arc<Snapshot>;
}

impl Source for Arc<Snapshot> {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.clone()
    }
}

/// A component's identifier from its name: lowercase ASCII letters and digits, other runs
/// turned into one `-`, at most 64 characters; `component` when nothing is left.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
        if out.len() >= 64 {
            break;
        }
    }
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() {
        "component".into()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_weights_partial_outages() {
        assert_eq!(uptime(0, 0, 0), None);
        assert_eq!(uptime(1000, 0, 0), Some(1.0));
        assert_eq!(uptime(1000, 0, 500), Some(0.5));
        assert!((uptime(1000, 1000, 0).unwrap() - 0.7).abs() < 1e-9);
    }

    #[test]
    fn slugs_are_stable_and_plain() {
        assert_eq!(slug("Sign-in & accounts"), "sign-in-accounts");
        assert_eq!(slug("  API v2 "), "api-v2");
        assert_eq!(slug("<script>"), "script");
        assert_eq!(slug("日本"), "component");
    }
}
