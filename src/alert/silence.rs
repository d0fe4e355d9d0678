//! Silences (made through the API or `canaryd silence`, kept in the state store) and
//! maintenance windows (from `canaryd.yaml`). A silenced alert still evaluates, shows in the API
//! and in `canary_alert_state`, but sends nothing; if it still fires when the silence ends, it
//! notifies then. A resolve of an alert whose trigger went out is always sent.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::config::Maintenance;

/// One silence. Matchers are label → value, where a value may be a glob (`shop-*`); all must
/// match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    /// Random id.
    pub id: String,
    /// label → value or glob.
    pub matchers: BTreeMap<String, String>,
    /// Start (Unix ms).
    pub starts_at_ms: i64,
    /// End (Unix ms).
    pub ends_at_ms: i64,
    /// Who made it.
    pub created_by: String,
    /// Why.
    pub comment: String,
    /// When it was made (Unix ms).
    pub created_at_ms: i64,
}

impl Silence {
    /// Whether it is in force at `now`.
    pub fn active(&self, now_ms: i64) -> bool {
        self.starts_at_ms <= now_ms && now_ms < self.ends_at_ms
    }

    /// `active`, `pending` (starts later) or `expired`.
    pub fn state(&self, now_ms: i64) -> &'static str {
        if now_ms < self.starts_at_ms {
            "pending"
        } else if now_ms < self.ends_at_ms {
            "active"
        } else {
            "expired"
        }
    }
}

/// Silences with their globs compiled once: the engine asks for every firing alert on every
/// tick.
#[derive(Debug, Default)]
pub struct Mutes(Vec<CompiledSilence>);

#[derive(Debug)]
struct CompiledSilence {
    starts_at_ms: i64,
    ends_at_ms: i64,
    matchers: Vec<(String, glob::Pattern)>,
}

impl Mutes {
    /// Compiles `silences` (a value that is not a valid glob matches itself only).
    pub fn new(silences: &[Silence]) -> Mutes {
        Mutes(
            silences
                .iter()
                .map(|s| CompiledSilence {
                    starts_at_ms: s.starts_at_ms,
                    ends_at_ms: s.ends_at_ms,
                    matchers: s
                        .matchers
                        .iter()
                        .map(|(k, v)| {
                            let p = glob::Pattern::new(v).unwrap_or_else(|_| {
                                glob::Pattern::new(&glob::Pattern::escape(v)).unwrap_or_default()
                            });
                            (k.clone(), p)
                        })
                        .collect(),
                })
                .collect(),
        )
    }

    /// Whether a silence in force at `now_ms` covers these labels.
    pub fn mutes(&self, labels: &BTreeMap<String, String>, now_ms: i64) -> bool {
        self.0.iter().any(|s| {
            s.starts_at_ms <= now_ms
                && now_ms < s.ends_at_ms
                && s.matchers
                    .iter()
                    .all(|(k, p)| labels.get(k).is_some_and(|v| p.matches(v)))
        })
    }
}

/// Checks a new silence; the error says what to fix.
pub fn validate(s: &Silence) -> Result<(), String> {
    if s.matchers.is_empty() {
        return Err("a silence needs at least one matcher (e.g. check=shop-login)".into());
    }
    for (k, v) in &s.matchers {
        if k.is_empty() || v.is_empty() {
            return Err(format!(
                "matcher {k:?}={v:?}: name and value must not be empty"
            ));
        }
        if let Err(e) = glob::Pattern::new(v) {
            return Err(format!("matcher {k}={v:?}: invalid glob: {}", e.msg));
        }
    }
    if s.ends_at_ms <= s.starts_at_ms {
        return Err("the silence must end after it starts".into());
    }
    if s.created_by.trim().is_empty() {
        return Err("say who makes the silence (created_by / --author)".into());
    }
    if s.comment.trim().is_empty() {
        return Err("say why (comment / --comment)".into());
    }
    Ok(())
}

/// Whether `check` is inside one of the maintenance windows at `now`.
pub fn in_maintenance(windows: &[Maintenance], check: &str, now: SystemTime) -> bool {
    windows
        .iter()
        .any(|m| m.checks.iter().any(|g| g.matches(check)) && window_contains(m, now))
}

/// Whether the window (or its latest recurrence) covers `now`.
pub fn window_contains(m: &Maintenance, now: SystemTime) -> bool {
    let Ok(since) = now.duration_since(m.start) else {
        return false;
    };
    let offset = match m.every {
        Some(every) if !every.is_zero() => {
            Duration::from_nanos((since.as_nanos() % every.as_nanos()) as u64)
        }
        _ => since,
    };
    offset < m.duration
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(start: u64, duration: u64, every: Option<u64>) -> Maintenance {
        Maintenance {
            checks: vec![glob::Pattern::new("shop-*").unwrap()],
            start: SystemTime::UNIX_EPOCH + Duration::from_secs(start),
            duration: Duration::from_secs(duration),
            every: every.map(Duration::from_secs),
        }
    }

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn one_off_window() {
        let w = [window(1000, 3600, None)];
        assert!(!in_maintenance(&w, "shop-login", at(999)));
        assert!(in_maintenance(&w, "shop-login", at(1000)));
        assert!(in_maintenance(&w, "shop-login", at(4599)));
        assert!(!in_maintenance(&w, "shop-login", at(4600)));
        assert!(!in_maintenance(&w, "billing", at(2000)));
    }

    #[test]
    fn weekly_recurrence() {
        let week = 7 * 86400;
        let w = [window(1000, 3600, Some(week))];
        for k in [0, 1, 52, 520] {
            let start = 1000 + k * week;
            assert!(!in_maintenance(&w, "shop-login", at(start - 1)), "week {k}");
            assert!(in_maintenance(&w, "shop-login", at(start)), "week {k}");
            assert!(
                in_maintenance(&w, "shop-login", at(start + 3599)),
                "week {k}"
            );
            assert!(
                !in_maintenance(&w, "shop-login", at(start + 3600)),
                "week {k}"
            );
        }
    }

    #[test]
    fn silence_matching_and_validation() {
        let s = Silence {
            id: "x".into(),
            matchers: [("check".to_string(), "shop-*".to_string())].into(),
            starts_at_ms: 0,
            ends_at_ms: 10,
            created_by: "ana".into(),
            comment: "deploy".into(),
            created_at_ms: 0,
        };
        let labels = |c: &str| BTreeMap::from([("check".to_string(), c.to_string())]);
        let mutes = Mutes::new(std::slice::from_ref(&s));
        assert!(mutes.mutes(&labels("shop-login"), 5));
        assert!(!mutes.mutes(&labels("billing"), 5));
        assert!(!mutes.mutes(&labels("shop-login"), 10));
        assert!(s.active(5) && !s.active(10));
        assert_eq!(validate(&s), Ok(()));
        let mut bad = s.clone();
        bad.matchers.clear();
        assert!(validate(&bad).is_err());
        let mut bad = s;
        bad.ends_at_ms = 0;
        assert!(validate(&bad).is_err());
    }
}
