//! Silences (made through the API or `canaryd silence`, kept in the state store) and
//! maintenance windows (from `canaryd.yaml`). A silenced alert still evaluates, shows in the API
//! and in `canary_alert_state`, but sends nothing; if it still fires when the silence ends, it
//! notifies then. A resolve of an alert whose trigger went out is always sent.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::config::ctx::{fmt_d, Ctx};
use crate::config::limits;
use crate::config::model::Dur;
use crate::config::schema::{self, Text, UtcOnly};

/// A maintenance window.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceDef {
    /// Check name globs.
    #[schemars(with = "Vec<Text>")]
    pub checks: Vec<Spanned<String>>,
    /// RFC 3339 start.
    #[schemars(with = "String", extend("pattern" = schema::RFC3339, "patternErrorMessage" = "an RFC 3339 time, e.g. 2026-12-01T22:00:00Z"))]
    pub start: Spanned<String>,
    /// Length of the window.
    #[schemars(with = "Dur")]
    pub duration: Spanned<Dur>,
    /// Optional recurrence.
    #[schemars(with = "Option<Dur>")]
    pub every: Option<Spanned<Dur>>,
    /// IANA time zone (documentation only when `start` has an offset).
    #[schemars(with = "Option<UtcOnly>")]
    pub timezone: Option<Spanned<String>>,
}

/// A maintenance window, validated.
#[derive(Debug, Clone)]
pub struct Maintenance {
    /// Check name globs.
    pub checks: Vec<glob::Pattern>,
    /// First start.
    pub start: SystemTime,
    /// Length.
    pub duration: Duration,
    /// Recurrence.
    pub every: Option<Duration>,
}

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

/// The furthest a new silence may end, counted from its creation: one year.
pub const MAX_SILENCE_SPAN_MS: i64 = 365 * 86_400_000;
/// The most silences that may be active or pending at once.
pub const MAX_SILENCES: usize = 1_000;
/// The most matchers one silence may have.
pub const MAX_MATCHERS: usize = 32;
/// The longest matcher label name, in bytes.
pub const MAX_MATCHER_NAME: usize = 256;
/// The longest matcher value (or glob), in bytes.
pub const MAX_MATCHER_VALUE: usize = 1_024;
/// The longest `created_by`, in bytes.
pub const MAX_CREATED_BY: usize = 256;
/// The longest `comment`, in bytes.
pub const MAX_COMMENT: usize = 4_096;
/// The last millisecond RFC 3339 can write (9999-12-31T23:59:59.999Z): the API prints every
/// time of a silence that way.
pub const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// Checks a new silence made at `now_ms`; the error says what to fix.
pub fn validate(s: &Silence, now_ms: i64) -> Result<(), String> {
    if s.matchers.is_empty() {
        return Err("a silence needs at least one matcher (e.g. check=shop-login)".into());
    }
    if s.matchers.len() > MAX_MATCHERS {
        return Err(format!(
            "a silence has at most {MAX_MATCHERS} matchers (this one has {})",
            s.matchers.len()
        ));
    }
    for (k, v) in &s.matchers {
        if k.is_empty() || v.is_empty() {
            return Err(format!(
                "matcher {k:?}={v:?}: name and value must not be empty"
            ));
        }
        if k.len() > MAX_MATCHER_NAME {
            return Err(format!(
                "a matcher name is at most {MAX_MATCHER_NAME} bytes (one has {})",
                k.len()
            ));
        }
        if v.len() > MAX_MATCHER_VALUE {
            return Err(format!(
                "matcher {k}: a value is at most {MAX_MATCHER_VALUE} bytes (this one has {})",
                v.len()
            ));
        }
        if let Err(e) = glob::Pattern::new(v) {
            return Err(format!("matcher {k}={v:?}: invalid glob: {}", e.msg));
        }
    }
    if s.starts_at_ms < 0 {
        return Err("the silence must start after 1970-01-01T00:00:00Z".into());
    }
    if s.ends_at_ms <= s.starts_at_ms {
        return Err("the silence must end after it starts".into());
    }
    if s.ends_at_ms > now_ms.saturating_add(MAX_SILENCE_SPAN_MS).min(MAX_TIME_MS) {
        return Err(
            "a silence ends at most one year from now (make a new one when it ends)".into(),
        );
    }
    if s.created_by.trim().is_empty() {
        return Err("say who makes the silence (created_by / --author)".into());
    }
    if s.created_by.len() > MAX_CREATED_BY {
        return Err(format!(
            "created_by is at most {MAX_CREATED_BY} bytes (this one has {})",
            s.created_by.len()
        ));
    }
    if s.comment.trim().is_empty() {
        return Err("say why (comment / --comment)".into());
    }
    if s.comment.len() > MAX_COMMENT {
        return Err(format!(
            "the comment is at most {MAX_COMMENT} bytes (this one has {}): link to a ticket for more",
            s.comment.len()
        ));
    }
    Ok(())
}

/// Why a silence read back from the state store cannot be used (written by an older version
/// without today's checks, or edited by hand): `None` when it can. Only what would break the
/// API or the engine counts; limits on sizes apply to new silences only.
pub fn unusable(s: &Silence) -> Option<&'static str> {
    if s.matchers.is_empty() {
        Some("it has no matcher (it would silence everything)")
    } else if !(0..=MAX_TIME_MS).contains(&s.starts_at_ms)
        || !(0..=MAX_TIME_MS).contains(&s.ends_at_ms)
        || !(0..=MAX_TIME_MS).contains(&s.created_at_ms)
    {
        Some("a time of it lies outside the years 1970 to 9999")
    } else {
        None
    }
}

/// Validates `maintenance:`: counts within [`limits`], durations within theirs (a recurrence
/// longer than the window), globs, an RFC 3339 start, UTC only. Windows with errors are left out.
pub fn validate_maintenance(ctx: &mut Ctx, defs: &[MaintenanceDef]) -> Vec<Maintenance> {
    let mut out = Vec::new();
    if let Some(first) = defs.first() {
        if !ctx.count(
            defs.len(),
            limits::MAX_ROUTES,
            &first.start.referenced,
            "maintenance",
            "maintenance windows",
        ) {
            return out;
        }
    }
    for (i, m) in defs.iter().enumerate() {
        let key = format!("maintenance[{i}]");
        if let Some(first) = m.checks.first() {
            ctx.count(
                m.checks.len(),
                limits::MAX_REFS,
                &first.referenced,
                &format!("{key}.checks"),
                "check globs",
            );
        }
        let n_before = ctx.errors.len();
        ctx.dur_in(
            Some(&m.duration),
            &format!("{key}.duration"),
            limits::MAINTENANCE_DURATION,
        );
        ctx.dur_in(
            m.every.as_ref(),
            &format!("{key}.every"),
            limits::MAINTENANCE_EVERY,
        );
        if let Some(every) = &m.every {
            if every.value.0 <= m.duration.value.0 {
                ctx.err(
                    &every.referenced,
                    format!("{key}.every"),
                    format!(
                        "every {} is not longer than the duration {}: the checks would be muted forever",
                        fmt_d(every.value.0),
                        fmt_d(m.duration.value.0)
                    ),
                );
            }
        }
        let mut checks = Vec::new();
        for g in &m.checks {
            match glob::Pattern::new(&g.value) {
                Ok(p) => checks.push(p),
                Err(e) => ctx.err(
                    &g.referenced,
                    format!("{key}.checks"),
                    format!("invalid glob {:?}: {}", g.value, e.msg),
                ),
            }
        }
        let start = match humantime::parse_rfc3339_weak(&m.start.value) {
            Ok(t) => Some(t),
            Err(e) => {
                ctx.err(
                    &m.start.referenced,
                    format!("{key}.start"),
                    format!(
                        "invalid time {:?}: {e} (write RFC 3339, e.g. 2026-12-01T22:00:00Z)",
                        m.start.value
                    ),
                );
                None
            }
        };
        if let Some(tz) = &m.timezone {
            if tz.value != "UTC" {
                ctx.err(
                    &tz.referenced,
                    format!("{key}.timezone"),
                    format!(
                        "unsupported timezone {:?}: only UTC is supported so far",
                        tz.value
                    ),
                );
            }
        }
        if ctx.errors.len() > n_before {
            continue;
        }
        if let Some(start) = start {
            out.push(Maintenance {
                checks,
                start,
                duration: m.duration.value.0,
                every: m.every.as_ref().map(|d| d.value.0),
            });
        }
    }
    out
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
    use crate::alert::tests_support::validated;

    fn maintenance(yaml: &str) -> (Vec<Maintenance>, Vec<String>) {
        validated(yaml, |ctx, defs: &Vec<MaintenanceDef>| {
            validate_maintenance(ctx, defs)
        })
    }

    #[test]
    fn a_window_that_recurs_before_it_ends_is_refused() {
        let (out, errors) = maintenance(
            "- checks: [\"*\"]\n  start: 2026-12-01T22:00:00Z\n  duration: 2h\n  every: 2h\n",
        );
        assert!(out.is_empty());
        assert_eq!(
            errors,
            ["4:10: maintenance[0].every: every 2h is not longer than the duration 2h: the checks would be muted forever"]
        );
    }

    #[test]
    fn globs_start_and_timezone_are_checked() {
        let (out, errors) = maintenance(
            "- checks: [\"shop-[\"]\n  start: \"next tuesday\"\n  duration: 1h\n  timezone: Europe/Paris\n- checks: [shop-*]\n  start: 2026-12-01T22:00:00Z\n  duration: 1h\n  every: 1w\n",
        );
        assert_eq!(
            errors,
            [
                "1:12: maintenance[0].checks: invalid glob \"shop-[\": invalid range pattern",
                "2:10: maintenance[0].start: invalid time \"next tuesday\": timestamp format is invalid (write RFC 3339, e.g. 2026-12-01T22:00:00Z)",
                "4:13: maintenance[0].timezone: unsupported timezone \"Europe/Paris\": only UTC is supported so far",
            ]
        );
        // The valid window is kept, the other left out.
        assert_eq!(out.len(), 1);
        assert!(window_contains(
            &out[0],
            humantime::parse_rfc3339("2026-12-08T22:30:00Z").unwrap()
        ));
        assert!(in_maintenance(
            &out,
            "shop-login",
            humantime::parse_rfc3339("2026-12-01T22:59:59Z").unwrap()
        ));
        assert!(!in_maintenance(
            &out,
            "api",
            humantime::parse_rfc3339("2026-12-01T22:30:00Z").unwrap()
        ));
    }

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
        assert_eq!(validate(&s, 0), Ok(()));
        let mut bad = s.clone();
        bad.matchers.clear();
        assert!(validate(&bad, 0).is_err());
        let mut bad = s;
        bad.ends_at_ms = 0;
        assert!(validate(&bad, 0).is_err());
    }

    fn good(now_ms: i64) -> Silence {
        Silence {
            id: "x".into(),
            matchers: [("check".to_string(), "shop-*".to_string())].into(),
            starts_at_ms: now_ms,
            ends_at_ms: now_ms + 3_600_000,
            created_by: "ana".into(),
            comment: "deploy".into(),
            created_at_ms: now_ms,
        }
    }

    fn refused(s: &Silence, now_ms: i64, why: &str) {
        match validate(s, now_ms) {
            Err(e) => assert!(e.contains(why), "{e:?} does not say {why:?}"),
            Ok(()) => panic!("accepted: {s:?}"),
        }
    }

    #[test]
    fn every_limit_of_a_new_silence_is_an_error_that_names_it() {
        let now = 1_800_000_000_000;
        assert_eq!(validate(&good(now), now), Ok(()));
        let mut s = good(now);
        s.ends_at_ms = now + MAX_SILENCE_SPAN_MS;
        assert_eq!(validate(&s, now), Ok(()), "exactly one year is fine");
        s.ends_at_ms += 1;
        refused(&s, now, "at most one year");
        s.ends_at_ms = i64::MAX;
        refused(&s, i64::MAX - 1, "at most one year");
        let mut s = good(now);
        s.starts_at_ms = -1;
        refused(&s, now, "start after 1970");
        let mut s = good(now);
        s.comment = "x".repeat(MAX_COMMENT);
        assert_eq!(validate(&s, now), Ok(()));
        s.comment.push('x');
        refused(&s, now, "at most 4096 bytes");
        let mut s = good(now);
        s.created_by = "x".repeat(MAX_CREATED_BY + 1);
        refused(&s, now, "created_by is at most 256 bytes");
        let mut s = good(now);
        s.matchers = (0..=MAX_MATCHERS)
            .map(|i| (format!("l{i}"), "v".to_string()))
            .collect();
        refused(&s, now, "at most 32 matchers");
        let mut s = good(now);
        s.matchers = [("x".repeat(MAX_MATCHER_NAME + 1), "v".to_string())].into();
        refused(&s, now, "name is at most 256 bytes");
        let mut s = good(now);
        s.matchers = [("check".to_string(), "v".repeat(MAX_MATCHER_VALUE + 1))].into();
        refused(&s, now, "value is at most 1024 bytes");
    }

    #[test]
    fn stored_silences_outside_printable_times_are_unusable() {
        let now = 1_800_000_000_000;
        assert_eq!(unusable(&good(now)), None);
        let mut s = good(now);
        s.ends_at_ms = MAX_TIME_MS + 1;
        assert!(unusable(&s).is_some());
        let mut s = good(now);
        s.created_at_ms = -5;
        assert!(unusable(&s).is_some());
        let mut s = good(now);
        s.matchers.clear();
        assert!(unusable(&s).is_some());
        // The last printable millisecond formats without a panic.
        assert_eq!(
            crate::alert::rfc3339(crate::alert::from_ms(MAX_TIME_MS)),
            "9999-12-31T23:59:59.999Z"
        );
    }
}
