//! Alerting: rules evaluated on every result, routing, silences and maintenance, and durable
//! delivery to receivers.
//!
//! ```text
//! CheckResult ──> engine::Engine::observe (rules: for / consecutive / window / keep_firing_for;
//!                 inactive → pending → firing → resolved; state kept in the store)
//!                     │ Transition (fired, resolved, reminder, escalated)
//!                     v
//!                 route::Router (first matching route → receivers; escalation; repeat)
//!                 silence::Silences + maintenance (suppress, remember, notify when they end)
//!                     │ one AlertEvent per receiver
//!                     v
//!                 outbox::Outbox (SQLite: written before sending, removed once accepted;
//!                 FIFO per receiver; backoff with jitter; 429 Retry-After; 4xx final)
//!                     │ batches of up to Notifier::max_batch events
//!                     v
//!                 receiver::{pagerduty, alertmanager, slack, webhook} (one file each)
//! ```
//!
//! Time is always passed in (`now`), never read inside the engine or the outbox, so tests move
//! a clock instead of sleeping.
//!
//! What `canaryd.yaml` says about alerting (receivers, routes, maintenance, the watchdog) is
//! defined, validated and typed here, next to what uses it: [`AlertConfig`].

pub mod depend;
pub mod engine;
pub mod outbox;
pub mod persist;
pub mod receiver;
pub mod route;
pub mod service;
pub mod silence;
pub mod watchdog;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::ctx::Ctx;
use receiver::{Receiver, ReceiverDef};
use route::{Route, RouteDef};
use silence::{Maintenance, MaintenanceDef};
use watchdog::{Watchdog, WatchdogDef};

/// The alerting part of `canaryd.yaml`, validated: where alerts go and when they keep quiet.
/// (The rules themselves belong to their checks.)
#[derive(Debug, Default)]
pub struct AlertConfig {
    /// Receivers, in file order (names unique).
    pub receivers: Vec<Receiver>,
    /// Routes, in order (first match wins); every receiver they name exists.
    pub routes: Vec<Route>,
    /// Maintenance windows.
    pub maintenance: Vec<Maintenance>,
    /// Dead-man's switch.
    pub watchdog: Option<Watchdog>,
}

impl AlertConfig {
    /// Validates the four keys of the daemon file, reporting every error into `ctx`.
    pub fn validate(
        ctx: &mut Ctx,
        receivers: &[ReceiverDef],
        routes: &[RouteDef],
        maintenance: &[MaintenanceDef],
        watchdog: Option<&WatchdogDef>,
    ) -> AlertConfig {
        // Routes are checked against every receiver written, valid or not: a receiver with an
        // error (an unset secret) is reported once, not again as an unknown name in each route.
        let names: std::collections::HashSet<&str> =
            receivers.iter().map(|r| r.name.value.as_str()).collect();
        let receivers = receiver::validate(ctx, receivers);
        let routes = route::validate(ctx, routes, &names);
        let maintenance = silence::validate_maintenance(ctx, maintenance);
        let watchdog = watchdog.and_then(|w| watchdog::validate(ctx, w));
        AlertConfig {
            receivers,
            routes,
            maintenance,
            watchdog,
        }
    }

    /// The receivers' names, in file order.
    pub fn receiver_names(&self) -> Vec<String> {
        self.receivers.iter().map(|r| r.name.clone()).collect()
    }
}

/// Whether an event reports a firing or a resolved alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The alert is firing.
    Firing,
    /// The alert stopped firing.
    Resolved,
}

impl Status {
    /// `firing` / `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// Why an event is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// The alert started firing (or its silence ended while it fired).
    Trigger,
    /// The alert stopped firing.
    Resolve,
    /// Still firing: a `repeat_interval` reminder.
    Reminder,
    /// Still firing after `escalate.after`: sent to the escalation receivers.
    Escalation,
    /// Still firing: a lease renewal for receivers that expire alerts (Alertmanager).
    Refresh,
}

impl EventKind {
    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Trigger => "trigger",
            EventKind::Resolve => "resolve",
            EventKind::Reminder => "reminder",
            EventKind::Escalation => "escalation",
            EventKind::Refresh => "refresh",
        }
    }
}

/// One alert as a receiver is told about it. Serialized into the outbox, so a field added here
/// needs `#[serde(default)]` to read rows written by an older canaryd. Never holds a secret:
/// annotations may not reference secrets (checked at load), and reasons and messages are built
/// from names, statuses and phases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// Stable identity of the alert ([`dedup_key`]).
    pub dedup_key: String,
    /// Why this event is sent.
    pub kind: EventKind,
    /// Firing or resolved.
    pub status: Status,
    /// Check name.
    pub check: String,
    /// Alert (rule) name.
    pub alert: String,
    /// critical, error, warning or info.
    pub severity: String,
    /// Every label: the check's, the rule's, plus `alertname`, `check` and `severity`.
    pub labels: BTreeMap<String, String>,
    /// Rendered annotations (`summary`, `description`, `runbook_url`, ...).
    pub annotations: BTreeMap<String, String>,
    /// One line for humans (the `summary` annotation, or a default).
    pub summary: String,
    /// Failure reason of the result that decided the transition (`status`, `timeout`, ...).
    #[serde(default)]
    pub reason: Option<String>,
    /// The failed step, for multi-step checks.
    #[serde(default)]
    pub failed_step: Option<String>,
    /// The values of the variables the `when` expression reads (`duration=3.2s depth=40`).
    #[serde(default)]
    pub value: Option<String>,
    /// The same values by variable name (`depth` → `7`, `oldest_age` → `5m4s`), in the human
    /// form; empty when the rule reads none that has a value.
    #[serde(default)]
    pub values: BTreeMap<String, String>,
    /// The probe's message of the result that decided the transition (already redacted by the
    /// probe: `step "submit": expected status 302, got 200`).
    #[serde(default)]
    pub message: Option<String>,
    /// A parent's page (`depends_on`): its dependants, direct and indirect, whose last run
    /// failed when the event was built.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependants_failing: Vec<String>,
    /// When the alert started firing (Unix milliseconds).
    pub starts_at_ms: i64,
    /// When it resolved (Unix milliseconds), for resolve events.
    #[serde(default)]
    pub ends_at_ms: Option<i64>,
    /// When this event was created (Unix milliseconds).
    pub created_ms: i64,
    /// The link to the check: `<external_url>/api/v1/checks/<check>` (canaryd's API answers
    /// with the check's state and last result there). Receivers show it as the check's link.
    pub generator_url: String,
}

impl AlertEvent {
    /// `starts_at_ms` as a time.
    pub fn starts_at(&self) -> SystemTime {
        from_ms(self.starts_at_ms)
    }

    /// `ends_at_ms` as a time.
    pub fn ends_at(&self) -> Option<SystemTime> {
        self.ends_at_ms.map(from_ms)
    }

    /// The link to the check (the same as `generator_url`).
    pub fn check_url(&self) -> &str {
        &self.generator_url
    }

    /// A parent's failing dependants, `a, b, c` (none: not a parent's page, or none fail).
    pub fn dependants(&self) -> Option<String> {
        (!self.dependants_failing.is_empty()).then(|| self.dependants_failing.join(", "))
    }

    /// The `runbook_url` annotation, when the rule sets one.
    pub fn runbook_url(&self) -> Option<&str> {
        self.annotations
            .get("runbook_url")
            .map(String::as_str)
            .filter(|u| !u.is_empty())
    }

    /// How long the alert fired, for a resolve: from `starts_at` to `ends_at`.
    pub fn lasted(&self) -> Option<Duration> {
        let end = self.ends_at_ms?;
        Some(Duration::from_millis(
            end.saturating_sub(self.starts_at_ms).max(0) as u64,
        ))
    }
}

/// A probe's message is cut to this many characters in a page (the summary, `message`): a page
/// stays readable, and an outbox row stays small, whatever the probe reported.
pub const MESSAGE_MAX: usize = 1_000;

/// At most `max` characters of `s`, ending in `…` when cut.
pub fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max.saturating_sub(1)) {
        Some((i, _)) if s[i..].chars().nth(1).is_some() => format!("{}…", &s[..i]),
        _ => s.to_string(),
    }
}

/// A duration as pages show it: whole units, largest first, no spaces (`12m3s`, `2h5m`,
/// `1d3h`, `850ms` under a second).
pub fn short_duration(d: Duration) -> String {
    let total = d.as_secs();
    if total == 0 {
        return format!("{}ms", d.subsec_millis());
    }
    let parts = [
        (total / 86_400, "d"),
        (total / 3_600 % 24, "h"),
        (total / 60 % 60, "m"),
        (total % 60, "s"),
    ];
    let mut out = String::new();
    for (n, unit) in parts.into_iter().filter(|(n, _)| *n > 0) {
        out.push_str(&format!("{n}{unit}"));
    }
    out
}

/// The stable identity of an alert: a hash of the check name, the alert name and every label
/// (sorted). The same on every restart and every replica, so two replicas page once.
pub fn dedup_key(check: &str, alert: &str, labels: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    // Length-prefixed fields: no two different inputs hash the same bytes.
    for part in [check, alert]
        .into_iter()
        .chain(labels.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]))
    {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let digest = h.finalize();
    format!("canaryd-{}", data_encoding::HEXLOWER.encode(&digest[..16]))
}

/// Unix milliseconds of a time (0 before the epoch).
pub fn to_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The time of Unix milliseconds.
pub fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// RFC 3339 with milliseconds, UTC (`2026-11-21T10:00:00.123Z`).
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_key_is_stable_and_separates_fields() {
        let mut labels = BTreeMap::new();
        labels.insert("team".to_string(), "web".to_string());
        let a = dedup_key("shop-login", "LoginFailing", &labels);
        // Pinned (recomputed independently with Python hashlib): a change here re-pages every
        // firing alert after an upgrade.
        assert_eq!(a, "canaryd-e51e4d03edd0e186feb83fca8a04f3ba");
        assert_eq!(a, dedup_key("shop-login", "LoginFailing", &labels.clone()));
        assert_ne!(a, dedup_key("shop-logi", "nLoginFailing", &labels));
        labels.insert("team".to_string(), "api".to_string());
        assert_ne!(a, dedup_key("shop-login", "LoginFailing", &labels));
    }

    #[test]
    fn an_outbox_row_of_an_older_canaryd_still_loads() {
        // An event as canaryd wrote it into the outbox before `values` and `message` existed.
        let old = r#"{"dedup_key":"canaryd-1","kind":"trigger","status":"firing","check":"web",
            "alert":"Down","severity":"critical","labels":{"check":"web"},"annotations":{},
            "summary":"check web failing: status","reason":"status","failed_step":null,
            "value":"failed=true","starts_at_ms":1000,"ends_at_ms":null,"created_ms":1000,
            "generator_url":"http://127.0.0.1:9464/api/v1/checks/web"}"#;
        let e: AlertEvent = serde_json::from_str(old).unwrap();
        assert_eq!(e.summary, "check web failing: status");
        assert_eq!(e.message, None);
        assert!(e.values.is_empty());
        assert_eq!(e.check_url(), "http://127.0.0.1:9464/api/v1/checks/web");
        assert_eq!(e.lasted(), None);
        // And a new row round-trips with its evidence.
        let mut e = e;
        e.message = Some("expected 200, got 503".into());
        e.values.insert("depth".into(), "7".into());
        let back: AlertEvent = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn long_messages_are_cut_to_the_limit() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcd", 3), "ab…");
        assert_eq!(cut("éééé", 3).chars().count(), 3);
        assert_eq!(
            cut(&"x".repeat(5000), MESSAGE_MAX).chars().count(),
            MESSAGE_MAX
        );
    }

    #[test]
    fn durations_read_short() {
        let s = |n| short_duration(Duration::from_secs(n));
        assert_eq!(s(723), "12m3s");
        assert_eq!(s(304), "5m4s");
        assert_eq!(s(7_500), "2h5m");
        assert_eq!(s(97_200), "1d3h");
        assert_eq!(s(60), "1m");
        assert_eq!(short_duration(Duration::from_millis(850)), "850ms");
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use std::path::{Path, PathBuf};

    use serde::de::DeserializeOwned;

    use crate::config::ctx::Ctx;
    use crate::config::files::decode;

    use super::{AlertEvent, EventKind};

    /// Decodes `yaml` as a `T` with the decoder every configuration file goes through (as if it
    /// were `canaryd.yaml`), runs `validate` on it, and returns its result with every error it
    /// reported as `line:col: key: message`.
    pub fn validated<T: DeserializeOwned, R>(
        yaml: &str,
        validate: impl FnOnce(&mut Ctx, &T) -> R,
    ) -> (R, Vec<String>) {
        let file = Path::new("canaryd.yaml");
        let def: T = decode(file, yaml).unwrap_or_else(|e| panic!("{e}"));
        let mut errors = Vec::new();
        let mut ctx = Ctx {
            file: file.to_path_buf(),
            src: yaml,
            dir: PathBuf::from("."),
            errors: &mut errors,
        };
        let out = validate(&mut ctx, &def);
        let errors = errors
            .iter()
            .map(|e| format!("{}:{}: {}: {}", e.line, e.col, e.key, e.message))
            .collect();
        (out, errors)
    }

    /// A minimal event of check `c`, alert `a`: what the store and the outbox need.
    pub fn event(key: &str, kind: EventKind, created_ms: i64) -> AlertEvent {
        AlertEvent {
            dedup_key: key.into(),
            kind,
            status: if kind == EventKind::Resolve {
                crate::alert::Status::Resolved
            } else {
                crate::alert::Status::Firing
            },
            check: "c".into(),
            alert: "a".into(),
            severity: "critical".into(),
            labels: Default::default(),
            annotations: Default::default(),
            summary: "s".into(),
            reason: None,
            failed_step: None,
            value: None,
            values: Default::default(),
            message: None,
            dependants_failing: Vec::new(),
            starts_at_ms: 0,
            ends_at_ms: None,
            created_ms,
            generator_url: String::new(),
        }
    }
}
