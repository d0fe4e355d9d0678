//! Silences (made through the API or `canaryd silence`, kept in the state store) and
//! maintenance windows (from `canaryd.yaml`). A silenced alert still evaluates, shows in the API
//! and in `canary_alert_state`, but sends nothing; if it still fires when the silence ends, it
//! notifies then. A resolve of an alert whose trigger went out is always sent.
//!
//! A maintenance window lives in a time zone (`timezone:`, an IANA name; UTC when unset). Its
//! `start` without an offset is a wall-clock time there; with one (`Z`, `+01:00`) it is that
//! instant. An `every` of whole days recurs by the zone's calendar: a daily window at 02:00
//! Europe/Berlin opens at 02:00 local time on both sides of a DST change. Any other `every`
//! (hours, minutes) recurs in elapsed time from the first start. `duration` is always elapsed
//! time. On a DST-change day a wall-clock start is resolved as cron implementations do:
//! - a time that does not exist (skipped by the spring change: 02:30 in Berlin on the last
//!   Sunday of March) opens the window when the skipped hour ends, the same elapsed time after
//!   the change as the written time after the last valid time before it (02:30 → 03:30 CEST);
//! - a time that exists twice (the autumn change: 02:30 in Berlin on the last Sunday of October)
//!   opens it at the first of the two (02:30 CEST); it does not open again an hour later.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Days, NaiveDateTime, Offset, TimeZone as _, Utc};
use chrono_tz::Tz;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::config::ctx::{fmt_d, Ctx};
use crate::config::limits;
use crate::config::model::Dur;
use crate::config::schema::{self, Text, TimeZone};

/// A maintenance window.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceDef {
    /// Check name globs.
    #[schemars(with = "Vec<Text>")]
    pub checks: Vec<Spanned<String>>,
    /// First start: a wall-clock time in `timezone` (`2026-12-01T22:00:00`), or an RFC 3339
    /// instant with its offset (`2026-12-01T22:00:00Z`, `2026-12-01T23:00:00+01:00`).
    #[schemars(with = "String", extend("pattern" = schema::RFC3339, "patternErrorMessage" = "an RFC 3339 time, e.g. 2026-12-01T22:00:00Z"))]
    pub start: Spanned<String>,
    /// Length of the window.
    #[schemars(with = "Dur")]
    pub duration: Spanned<Dur>,
    /// Optional recurrence: whole days (`1d`, `1w`) recur at the same wall-clock time in
    /// `timezone`; anything else in elapsed time.
    #[schemars(with = "Option<Dur>")]
    pub every: Option<Spanned<Dur>>,
    /// IANA time zone of `start` and of a recurrence by days (default UTC).
    #[schemars(with = "Option<TimeZone>")]
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
    /// The zone whose calendar a recurrence by whole days follows.
    pub tz: Tz,
    /// The first start as a wall-clock time in `tz` (as written when written without offset,
    /// so a start in a DST gap keeps its written time on the days after).
    pub local: NaiveDateTime,
}

const DAY: Duration = Duration::from_secs(86_400);

/// Whether `every` recurs by the calendar (a whole number of days, at least one), and how many.
fn calendar_days(every: Duration) -> Option<u64> {
    (every >= DAY && every.as_nanos().is_multiple_of(DAY.as_nanos()))
        .then_some(every.as_secs() / 86_400)
}

/// Whether a start is written with its offset (`Z`, `+01:00`, `-0500`): an instant. Without
/// one it is a wall-clock time in the window's zone.
fn has_offset(s: &str) -> bool {
    let s = s.trim_end();
    if s.ends_with(['Z', 'z']) {
        return true;
    }
    // The offset follows the time of day: look after the date's own dashes.
    let Some(time) = s.get(10..) else {
        return false;
    };
    time.rfind(['+', '-']).is_some_and(|i| {
        let off = &time[i + 1..];
        !off.is_empty() && off.len() <= 5 && off.chars().all(|c| c.is_ascii_digit() || c == ':')
    })
}

/// The instant of wall-clock time `local` in `tz`, resolved as cron implementations do on a
/// DST-change day: a skipped time moves forward by the length of the gap (02:30 → 03:30 on a
/// spring change of one hour); a time that happens twice is its first occurrence.
pub fn resolve_local(tz: Tz, local: NaiveDateTime) -> Option<SystemTime> {
    if let Some(t) = tz.from_local_datetime(&local).earliest() {
        return Some(t.with_timezone(&Utc).into());
    }
    // In a gap: read the wall-clock time with the offset in force before the gap (two days
    // earlier is before any gap the zone database holds, even Samoa's skipped day in 2011).
    let before = local.checked_sub_days(Days::new(2))?;
    let offset = tz.offset_from_utc_datetime(&before).fix();
    let utc = local.checked_sub_signed(chrono::Duration::seconds(i64::from(
        offset.local_minus_utc(),
    )))?;
    Some(Utc.from_utc_datetime(&utc).into())
}

/// `t` as a chrono time; `None` outside chrono's range (its `From` would panic there).
fn utc(t: SystemTime) -> Option<DateTime<Utc>> {
    let (secs, nanos) = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => (i64::try_from(d.as_secs()).ok()?, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).ok()?;
            match d.subsec_nanos() {
                0 => (secs.checked_neg()?, 0),
                n => (secs.checked_neg()?.checked_sub(1)?, 1_000_000_000 - n),
            }
        }
    };
    DateTime::from_timestamp(secs, nanos)
}

/// Parses a maintenance `start` in `tz`: with an offset an instant, without one a wall-clock time
/// there (see [`resolve_local`]). Returns the instant and the wall-clock time in `tz`; the error
/// is the RFC 3339 parser's.
pub fn parse_start(s: &str, tz: Tz) -> Result<(SystemTime, NaiveDateTime), String> {
    if has_offset(s) {
        let at: SystemTime = match DateTime::parse_from_rfc3339(s.trim()) {
            Ok(t) => t.with_timezone(&Utc).into(),
            // `2026-12-01 22:00:00Z` and the other spellings the weak parser has always taken.
            Err(_) => humantime::parse_rfc3339_weak(s).map_err(|e| e.to_string())?,
        };
        let local = utc(at)
            .ok_or("the time is out of range")?
            .with_timezone(&tz)
            .naive_local();
        return Ok((at, local));
    }
    // Without an offset the weak parser reads the fields as UTC: those fields are the wall clock.
    let fields = humantime::parse_rfc3339_weak(s).map_err(|e| e.to_string())?;
    let local = utc(fields).ok_or("the time is out of range")?.naive_utc();
    let at = resolve_local(tz, local).ok_or_else(|| "the time is out of range".to_string())?;
    Ok((at, local))
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
        // Reported after `start`'s error, in file order.
        let tz = m
            .timezone
            .as_ref()
            .map_or(Ok(Tz::UTC), |t| t.value.parse::<Tz>().map_err(|_| t));
        let start = match parse_start(&m.start.value, tz.unwrap_or(Tz::UTC)) {
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
        if let Err(t) = tz {
            ctx.err(
                &t.referenced,
                format!("{key}.timezone"),
                format!(
                    "unknown time zone {:?}: use an IANA name such as Europe/Berlin, America/New_York or UTC",
                    t.value
                ),
            );
        }
        if ctx.errors.len() > n_before {
            continue;
        }
        if let (Some((start, local)), Ok(tz)) = (start, tz) {
            out.push(Maintenance {
                checks,
                start,
                local,
                duration: m.duration.value.0,
                every: m.every.as_ref().map(|d| d.value.0),
                tz,
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
    if let Some(days) = m.every.and_then(calendar_days) {
        return calendar_window_contains(m, days, now);
    }
    let offset = match m.every {
        Some(every) if !every.is_zero() => {
            Duration::from_nanos((since.as_nanos() % every.as_nanos()) as u64)
        }
        _ => since,
    };
    offset < m.duration
}

/// The recurrences of a window every `days` calendar days in its zone: the one of the latest
/// start date on or before `now`'s local date, and the two before it (a window may run past
/// midnight, and a DST day is 23 or 25 hours long), each at the first start's wall-clock time.
fn calendar_window_contains(m: &Maintenance, days: u64, now: SystemTime) -> bool {
    let Some(local_now) = utc(now).map(|t| t.with_timezone(&m.tz)) else {
        return false;
    };
    let (date, time) = (m.local.date(), m.local.time());
    let elapsed_days = (local_now.date_naive() - date).num_days();
    let Ok(elapsed_days) = u64::try_from(elapsed_days) else {
        return false;
    };
    let latest = elapsed_days / days;
    (latest.saturating_sub(2)..=latest).any(|k| {
        // The first start is the instant as written (with an offset it may be the second of two
        // equal wall-clock times); later ones are resolved from the wall clock.
        let start = if k == 0 {
            Some(m.start)
        } else {
            k.checked_mul(days)
                .and_then(|d| date.checked_add_days(Days::new(d)))
                .and_then(|d| resolve_local(m.tz, d.and_time(time)))
        };
        let Some(start) = start else {
            return false;
        };
        now.duration_since(start)
            .is_ok_and(|since| since < m.duration)
    })
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
            "- checks: [\"shop-[\"]\n  start: \"next tuesday\"\n  duration: 1h\n  timezone: Europe/Pariss\n- checks: [shop-*]\n  start: 2026-12-01T22:00:00Z\n  duration: 1h\n  every: 1w\n",
        );
        assert_eq!(
            errors,
            [
                "1:12: maintenance[0].checks: invalid glob \"shop-[\": invalid range pattern",
                "2:10: maintenance[0].start: invalid time \"next tuesday\": timestamp format is invalid (write RFC 3339, e.g. 2026-12-01T22:00:00Z)",
                "4:13: maintenance[0].timezone: unknown time zone \"Europe/Pariss\": use an IANA name such as Europe/Berlin, America/New_York or UTC",
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
            tz: Tz::UTC,
            local: utc(SystemTime::UNIX_EPOCH + Duration::from_secs(start))
                .unwrap()
                .naive_utc(),
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

    // ----- Time zones and DST ------------------------------------------------------------------
    // 2026 changes: Europe/Berlin 29 March 01:00Z (02:00 CET → 03:00 CEST) and 25 October 01:00Z
    // (03:00 CEST → 02:00 CET); America/New_York 8 March 07:00Z (02:00 EST → 03:00 EDT) and
    // 1 November 06:00Z (02:00 EDT → 01:00 EST).

    fn utc_at(s: &str) -> SystemTime {
        humantime::parse_rfc3339(s).unwrap()
    }

    fn one(yaml: &str) -> Maintenance {
        let (mut out, errors) = maintenance(yaml);
        assert!(errors.is_empty(), "{errors:?}");
        out.remove(0)
    }

    /// The window is open at every `open` instant (UTC) and closed at every `closed` one.
    fn opens(m: &Maintenance, open: &[&str], closed: &[&str]) {
        for t in open {
            assert!(window_contains(m, utc_at(t)), "closed at {t}: {m:?}");
        }
        for t in closed {
            assert!(!window_contains(m, utc_at(t)), "open at {t}: {m:?}");
        }
    }

    #[test]
    fn a_daily_window_keeps_its_wall_clock_time_across_both_berlin_changes() {
        let m = one("- checks: [\"*\"]\n  start: 2026-03-20T04:00:00\n  duration: 1h\n  every: 1d\n  timezone: Europe/Berlin\n");
        opens(
            &m,
            &[
                "2026-03-20T03:00:00Z",
                // The day before the spring change: 04:00 CET.
                "2026-03-28T03:00:00Z",
                "2026-03-28T03:59:59Z",
                // The change day and after: 04:00 CEST.
                "2026-03-29T02:00:00Z",
                "2026-03-29T02:59:59Z",
                "2026-03-30T02:00:00Z",
                "2026-10-24T02:00:00Z",
                // The autumn change day (back to CET at 01:00Z) and after: 04:00 CET.
                "2026-10-25T03:00:00Z",
                "2026-10-25T03:59:59Z",
                "2026-10-26T03:30:00Z",
            ],
            &[
                "2026-03-20T02:59:59Z",
                "2026-03-28T02:59:59Z",
                "2026-03-28T04:00:00Z",
                "2026-03-29T01:59:59Z",
                // Elapsed 24h steps would still open at 03:00Z (05:00 CEST).
                "2026-03-29T03:00:00Z",
                "2026-03-30T03:00:00Z",
                "2026-10-24T03:00:00Z",
                "2026-10-25T02:00:00Z",
                "2026-10-25T04:00:00Z",
            ],
        );
    }

    #[test]
    fn berlin_skipped_and_repeated_times_open_once_as_cron_does() {
        // 02:30 does not exist on 29 March (it opens at 03:30 CEST, 01:30Z) and exists twice on
        // 25 October (it opens at the first, 02:30 CEST, 00:30Z, not again at 02:30 CET).
        let m = one("- checks: [\"*\"]\n  start: 2026-03-01T02:30:00\n  duration: 10m\n  every: 1d\n  timezone: Europe/Berlin\n");
        opens(
            &m,
            &[
                "2026-03-28T01:30:00Z",
                "2026-03-29T01:30:00Z",
                "2026-03-29T01:39:59Z",
                "2026-03-30T00:30:00Z",
                "2026-10-24T00:30:00Z",
                "2026-10-25T00:30:00Z",
                "2026-10-25T00:39:59Z",
                "2026-10-26T01:30:00Z",
            ],
            &[
                "2026-03-29T00:30:00Z",
                "2026-03-29T01:40:00Z",
                "2026-03-30T01:30:00Z",
                "2026-10-25T01:30:00Z",
                "2026-10-25T00:40:00Z",
                "2026-10-26T00:30:00Z",
            ],
        );
        // A start written in the gap itself opens at 03:30 CEST that day, 02:30 local after.
        let m = one("- checks: [\"*\"]\n  start: 2026-03-29T02:30:00\n  duration: 10m\n  every: 1d\n  timezone: Europe/Berlin\n");
        opens(
            &m,
            &["2026-03-29T01:30:00Z", "2026-03-30T00:30:00Z"],
            &["2026-03-29T00:30:00Z", "2026-03-30T01:30:00Z"],
        );
        // With an offset, the second 02:30 of 25 October is that instant; the day after it is
        // 02:30 CET again.
        let m = one("- checks: [\"*\"]\n  start: \"2026-10-25T02:30:00+01:00\"\n  duration: 10m\n  every: 1d\n  timezone: Europe/Berlin\n");
        opens(
            &m,
            &["2026-10-25T01:30:00Z", "2026-10-26T01:30:00Z"],
            &["2026-10-25T00:30:00Z", "2026-10-26T00:30:00Z"],
        );
    }

    #[test]
    fn new_york_windows_across_the_march_and_november_changes() {
        // 02:30 is skipped on 8 March: the window opens at 03:30 EDT (07:30Z).
        let gap = one("- checks: [\"*\"]\n  start: 2026-03-01T02:30:00\n  duration: 10m\n  every: 1d\n  timezone: America/New_York\n");
        opens(
            &gap,
            &[
                "2026-03-07T07:30:00Z",
                "2026-03-08T07:30:00Z",
                "2026-03-09T06:30:00Z",
                "2026-10-31T06:30:00Z",
                "2026-11-01T07:30:00Z",
                "2026-11-02T07:35:00Z",
            ],
            &[
                "2026-03-08T06:30:00Z",
                "2026-03-09T07:30:00Z",
                "2026-11-01T06:30:00Z",
            ],
        );
        // 01:30 happens twice on 1 November: the window opens at the first (01:30 EDT, 05:30Z).
        let twice = one("- checks: [\"*\"]\n  start: 2026-03-01T01:30:00\n  duration: 10m\n  every: 1d\n  timezone: America/New_York\n");
        opens(
            &twice,
            &[
                "2026-03-07T06:30:00Z",
                "2026-03-08T06:30:00Z",
                "2026-03-09T05:30:00Z",
                "2026-10-31T05:30:00Z",
                "2026-11-01T05:30:00Z",
                "2026-11-01T05:39:59Z",
                "2026-11-02T06:30:00Z",
            ],
            &[
                "2026-03-08T05:30:00Z",
                "2026-11-01T06:30:00Z",
                "2026-11-02T05:30:00Z",
            ],
        );
        // A weekly window (Sundays 22:00 local, 3h: it runs past midnight) over both changes.
        let weekly = one("- checks: [\"*\"]\n  start: 2026-03-01T22:00:00\n  duration: 3h\n  every: 1w\n  timezone: America/New_York\n");
        opens(
            &weekly,
            &[
                "2026-03-02T03:00:00Z",
                "2026-03-09T02:00:00Z",
                "2026-03-09T04:59:59Z",
                "2026-11-02T03:00:00Z",
                "2026-11-02T05:59:59Z",
            ],
            &[
                "2026-03-09T01:59:59Z",
                "2026-03-09T05:00:00Z",
                "2026-11-02T02:00:00Z",
                "2026-11-02T06:00:00Z",
                "2026-03-10T03:00:00Z",
            ],
        );
    }

    #[test]
    fn an_instant_start_recurs_at_its_wall_clock_time_in_the_zone() {
        // 22:00Z on 1 December is 17:00 EST: the daily window stays at 17:00 local in summer.
        let m = one("- checks: [\"*\"]\n  start: \"2026-12-01T22:00:00Z\"\n  duration: 1h\n  every: 1d\n  timezone: America/New_York\n");
        opens(
            &m,
            &["2026-12-01T22:00:00Z", "2027-07-01T21:00:00Z"],
            &["2026-12-01T21:59:59Z", "2027-07-01T22:00:00Z"],
        );
    }

    #[test]
    fn an_every_of_hours_recurs_in_elapsed_time_and_no_timezone_means_utc() {
        // 12h steps from 12:00 CET (11:00Z) stay 12 elapsed hours apart across the change.
        let m = one("- checks: [\"*\"]\n  start: 2026-03-28T12:00:00\n  duration: 1h\n  every: 12h\n  timezone: Europe/Berlin\n");
        opens(
            &m,
            &["2026-03-28T23:00:00Z", "2026-03-29T11:00:00Z"],
            &["2026-03-29T10:00:00Z"],
        );
        let m =
            one("- checks: [\"*\"]\n  start: 2026-03-28T12:00:00\n  duration: 1h\n  every: 1d\n");
        opens(
            &m,
            &["2026-03-28T12:00:00Z", "2026-03-29T12:30:00Z"],
            &["2026-03-29T11:00:00Z"],
        );
    }

    #[test]
    fn times_far_outside_the_calendar_do_not_panic() {
        let m = one("- checks: [\"*\"]\n  start: 2026-03-01T02:30:00\n  duration: 10m\n  every: 1d\n  timezone: Europe/Berlin\n");
        for now in [
            SystemTime::UNIX_EPOCH,
            SystemTime::UNIX_EPOCH + Duration::from_secs(i64::MAX as u64 / 2),
            SystemTime::UNIX_EPOCH + Duration::from_secs(400_000 * 366 * 86_400),
        ] {
            let _ = window_contains(&m, now);
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

            /// In UTC a calendar day is 24 hours: recurrence by days and by elapsed time agree.
            #[test]
            fn utc_calendar_days_equal_elapsed_days(
                start in 0u64..4_000_000_000,
                duration in 1u64..86_400,
                days in 1u64..30,
                after in 0u64..2_000_000_000,
            ) {
                let every = days * 86_400;
                let w = window(start, duration.min(every - 1), Some(every));
                let now = at(start + after);
                let since = after % every;
                prop_assert_eq!(window_contains(&w, now), since < w.duration.as_secs());
            }

            /// In any zone a window opens at most once per recurrence and never panics: over
            /// one recurrence of `days` days, the open time is at most `duration`.
            #[test]
            fn a_zoned_daily_window_is_open_for_its_duration_per_recurrence(
                zone in prop::sample::select(vec!["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Pacific/Apia", "Asia/Kolkata"]),
                day in 0u64..3_000,
                minute in 0u32..1_440,
                duration_min in 1u64..600,
            ) {
                let tz: Tz = zone.parse().unwrap();
                let date = chrono::NaiveDate::from_ymd_opt(2020, 1, 1).unwrap() + Days::new(day);
                let local = date.and_hms_opt(minute / 60, minute % 60, 0).unwrap();
                let start = resolve_local(tz, local).unwrap();
                let m = Maintenance {
                    checks: vec![glob::Pattern::new("*").unwrap()],
                    start,
                    duration: Duration::from_secs(duration_min * 60),
                    every: Some(DAY),
                    tz,
                    local,
                };
                prop_assert!(window_contains(&m, start));
                // Sample the next two days every 10 minutes: open at most duration + one step
                // per 24 hours, and at least the duration minus one step.
                let step = 600;
                let open = (0..(2 * 86_400 / step))
                    .filter(|i| window_contains(&m, start + Duration::from_secs(i * step)))
                    .count() as u64;
                let per_two_days = 2 * duration_min * 60;
                prop_assert!(open * step <= per_two_days + 2 * 3_600 + 2 * step, "open {open} steps");
                prop_assert!(open * step + 2 * 3_600 + 2 * step >= per_two_days, "open {open} steps");
            }
        }
    }
}
