//! The `heartbeat` kind's definition: the `heartbeat:` keys, their schema rules and validation,
//! and the alert variables a heartbeat check's results give.

use std::sync::Arc;
use std::time::Duration;

use schemars::{JsonSchema, Schema};
use serde::Deserialize;
use serde_json::json;
use serde_saphyr::{Location, Spanned};

use super::{default_grace, parse_cron, HeartbeatProbe, HeartbeatSpec, Schedule};
use crate::config::ctx::*;
use crate::config::expr::Type;
use crate::config::limits;
use crate::config::model::Dur;
use crate::config::schema::{self, add_rules, exactly_one, set, unset, Text, TimeZone};
use crate::probe::kind::{BuildEnv, Kind, KindCx, Var};
use crate::probe::Probe;

/// The `heartbeat` kind.
pub struct Heartbeat;

/// `late`: the job did not report by its due time plus grace (also the value of
/// `canary_heartbeat_late`).
pub const LATE: Var = Var::observed(
    "late",
    Type::Bool,
    "the job did not report by its due time plus grace",
);

impl Kind for Heartbeat {
    const KEY: &'static str = "heartbeat";
    const ABOUT: &'static str = "Pushed heartbeats from batch jobs (`/ping/<name>`).";
    const RETRIES: bool = false;
    const VARS: &'static [Var] = &[
        LATE,
        Var::observed("since_last", Type::Duration, "since the last ping of any kind (or since canaryd first knew the check)"),
        Var::observed("running_for", Type::Duration, "how long the run in progress has been going (`0s` if none)"),
        Var::observed("last_exit_code", Type::Number, "the last finish's exit code (`/ping/<check>` counts as 0; missing until a finish carried one, `/fail` carries none)"),
    ];
    type Def = HeartbeatDef;
    type Spec = HeartbeatSpec;

    fn validate(cx: &mut KindCx<'_, '_>, def: &HeartbeatDef) -> Option<HeartbeatSpec> {
        let at = cx.at;
        heartbeat(cx.ctx, def, &cx.key, &at)
    }

    /// Lateness is noticed within one interval: at most the grace, at least 1s.
    fn default_interval(spec: &HeartbeatSpec, default: Duration) -> Duration {
        default.min(spec.grace).max(Duration::from_secs(1))
    }

    fn build(
        name: &str,
        spec: &Arc<HeartbeatSpec>,
        env: &BuildEnv,
    ) -> Result<Arc<dyn Probe>, String> {
        Ok(Arc::new(HeartbeatProbe::new(
            name,
            spec.clone(),
            env.heartbeats.clone(),
        )))
    }
}

/// The `heartbeat:` kind: `every` or `cron`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = heartbeat_rules)]
pub struct HeartbeatDef {
    /// A run is expected this long after the previous one finished.
    #[schemars(with = "Option<Dur>")]
    pub every: Option<Spanned<Dur>>,
    /// Or: runs are expected at the times this crontab line names.
    #[schemars(with = "Option<String>", extend("pattern" = schema::CRON, "patternErrorMessage" = "five fields: minute hour day-of-month month day-of-week, e.g. \"0 2 * * *\""))]
    pub cron: Option<Spanned<String>>,
    /// IANA zone of `cron`'s wall-clock times (default UTC).
    #[schemars(with = "Option<TimeZone>")]
    pub timezone: Option<Spanned<String>>,
    /// How long after the due time a missing ping becomes late.
    #[schemars(with = "Option<Dur>")]
    pub grace: Option<Spanned<Dur>>,
    /// A started run must finish within this.
    #[schemars(with = "Option<Dur>")]
    pub max_runtime: Option<Spanned<Dur>>,
    /// Pings must carry `Authorization: Bearer <token>`; secrets allowed.
    #[schemars(with = "Option<Text>")]
    pub token: Option<Spanned<String>>,
}

/// `heartbeat`: every xor cron; a time zone only with cron.
pub fn heartbeat_rules(schema: &mut Schema) {
    add_rules(
        schema,
        [
            exactly_one(
                &["every", "cron"],
                "a heartbeat has every (e.g. every: 1d) or cron (e.g. cron: \"0 2 * * *\"), not both",
            ),
            json!({
                "if": { "not": set("cron") },
                "then": unset("timezone", "timezone goes with cron (every is a plain duration)"),
            }),
        ],
    );
}

fn heartbeat(ctx: &mut Ctx, h: &HeartbeatDef, key: &str, at: &Location) -> Option<HeartbeatSpec> {
    let n_before = ctx.errors.len();
    let at_least_1s = |ctx: &mut Ctx, d: &Option<Spanned<Dur>>, field: &str| {
        ctx.dur_in(d.as_ref(), &format!("{key}.{field}"), limits::HEARTBEAT);
    };
    at_least_1s(ctx, &h.every, "every");
    at_least_1s(ctx, &h.grace, "grace");
    at_least_1s(ctx, &h.max_runtime, "max_runtime");
    let tz = match &h.timezone {
        None => Some(chrono_tz::Tz::UTC),
        Some(t) => match t.value.parse::<chrono_tz::Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                ctx.err(
                    &t.referenced,
                    format!("{key}.timezone"),
                    format!(
                        "unknown time zone {:?}: use an IANA name such as Europe/Paris, America/New_York or UTC",
                        t.value
                    ),
                );
                None
            }
        },
    };
    if let (Some(t), None) = (&h.timezone, &h.cron) {
        ctx.err(
            &t.referenced,
            format!("{key}.timezone"),
            "timezone goes with cron (every is a plain duration)",
        );
    }
    let schedule = match (&h.every, &h.cron) {
        (None, None) => {
            ctx.err(
                at,
                key,
                "heartbeat needs every (e.g. every: 1d) or cron (e.g. cron: \"0 2 * * *\")",
            );
            None
        }
        (Some(_), Some(c)) => {
            ctx.err(
                &c.referenced,
                format!("{key}.cron"),
                "write either every or cron, not both",
            );
            None
        }
        (Some(e), None) => Some(Schedule::Every(e.value.0)),
        (None, Some(c)) => match parse_cron(&c.value) {
            Err(e) => {
                ctx.err(
                    &c.referenced,
                    format!("{key}.cron"),
                    format!(
                        "invalid cron expression {:?}: {e} (write five fields: minute hour day-of-month month day-of-week, e.g. \"0 2 * * *\")",
                        c.value
                    ),
                );
                None
            }
            Ok(cron) => tz.and_then(|tz| {
                let s = Schedule::Cron {
                    expr: c.value.clone(),
                    cron: Box::new(cron),
                    tz,
                };
                if s.next_after(std::time::SystemTime::now()).is_none() {
                    ctx.err(
                        &c.referenced,
                        format!("{key}.cron"),
                        format!("cron expression {:?} never fires", c.value),
                    );
                    return None;
                }
                Some(s)
            }),
        },
    };
    let token = h.token.as_ref().and_then(|t| {
        let tkey = format!("{key}.token");
        let template = ctx.template(t, &tkey)?;
        if let Some(v) = template.variables().next() {
            ctx.err(
                &t.referenced,
                tkey,
                format!("${{{v}}}: the token takes secrets (${{env:..}}, ${{file:..}}) but no run-time variables"),
            );
            return None;
        }
        let value = template.render(|_| None).ok()?;
        if template.is_known() && value.trim().is_empty() {
            ctx.err(
                &t.referenced,
                tkey,
                format!(
                    "the token {} is empty: set it, or leave token out to accept pings without one",
                    template.redacted()
                ),
            );
            return None;
        }
        Some(crate::config::template::Secret::new(value.into_owned()))
    });
    let schedule = schedule?;
    let grace = h.grace.as_ref().map_or_else(
        || default_grace(schedule.shortest_period(std::time::SystemTime::now())),
        |g| g.value.0,
    );
    if ctx.errors.len() > n_before {
        return None;
    }
    Some(HeartbeatSpec {
        schedule,
        grace,
        max_runtime: h.max_runtime.as_ref().map(|m| m.value.0),
        token,
    })
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::config::expr::Value;
    use crate::probe::check::{check_of, errors_of};
    use crate::probe::CheckResult;

    /// A heartbeat check with `def` (lines at the indent of `heartbeat:`'s keys).
    fn hb_check(def: &str) -> String {
        format!("checks:\n  - name: nightly\n    heartbeat:\n{def}")
    }

    #[test]
    fn durations_are_within_the_heartbeat_limits() {
        assert_eq!(
            errors_of(&hb_check(
                "      every: 500ms\n      grace: 367d\n      max_runtime: 0s\n"
            )),
            [
                "t.yaml:4:14: checks[0].heartbeat.every: must be at least 1s",
                "t.yaml:5:14: checks[0].heartbeat.grace: must be at most 366d",
                "t.yaml:6:20: checks[0].heartbeat.max_runtime: must be at least 1s",
            ]
        );
        let c = check_of(&hb_check(
            "      every: 366d\n      grace: 1s\n      max_runtime: 2h\n",
        ));
        let spec = c.kind.spec::<Heartbeat>().unwrap();
        assert_eq!(spec.grace, Duration::from_secs(1));
        assert_eq!(spec.max_runtime, Some(Duration::from_secs(7200)));
    }

    #[test]
    fn a_schedule_is_every_or_cron() {
        assert_eq!(
            errors_of("checks:\n  - name: nightly\n    heartbeat: {grace: 1m}\n"),
            [
                r#"t.yaml:3:16: checks[0].heartbeat: heartbeat needs every (e.g. every: 1d) or cron (e.g. cron: "0 2 * * *")"#
            ]
        );
        assert_eq!(
            errors_of(&hb_check("      every: 1d\n      cron: \"0 2 * * *\"\n")),
            ["t.yaml:5:13: checks[0].heartbeat.cron: write either every or cron, not both"]
        );
        let errors = errors_of(&hb_check("      cron: \"0 25 * * *\"\n"));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(
                r#"t.yaml:4:13: checks[0].heartbeat.cron: invalid cron expression "0 25 * * *": "#
            ),
            "{errors:?}"
        );
        assert!(
            errors[0].ends_with(r#"(write five fields: minute hour day-of-month month day-of-week, e.g. "0 2 * * *")"#),
            "{errors:?}"
        );
        assert_eq!(
            errors_of(&hb_check("      cron: \"0 0 31 2 *\"\n")),
            [r#"t.yaml:4:13: checks[0].heartbeat.cron: cron expression "0 0 31 2 *" never fires"#]
        );
    }

    #[test]
    fn a_time_zone_is_known_and_goes_with_cron() {
        assert_eq!(
            errors_of(&hb_check(
                "      cron: \"0 2 * * *\"\n      timezone: Mars/Olympus\n"
            )),
            [
                r#"t.yaml:5:17: checks[0].heartbeat.timezone: unknown time zone "Mars/Olympus": use an IANA name such as Europe/Paris, America/New_York or UTC"#
            ]
        );
        assert_eq!(
            errors_of(&hb_check("      every: 1d\n      timezone: Europe/Paris\n")),
            ["t.yaml:5:17: checks[0].heartbeat.timezone: timezone goes with cron (every is a plain duration)"]
        );
        let c = check_of(&hb_check(
            "      cron: \"0 2 * * *\"\n      timezone: Europe/Paris\n",
        ));
        match &c.kind.spec::<Heartbeat>().unwrap().schedule {
            Schedule::Cron { expr, tz, .. } => {
                assert_eq!(
                    (expr.as_str(), *tz),
                    ("0 2 * * *", chrono_tz::Europe::Paris)
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_default_grace_is_a_tenth_of_the_period() {
        let c = check_of(&hb_check("      every: 1h\n"));
        assert_eq!(
            c.kind.spec::<Heartbeat>().unwrap().grace,
            Duration::from_secs(360)
        );
        let c = check_of(&hb_check("      cron: \"0 * * * *\"\n"));
        assert_eq!(
            c.kind.spec::<Heartbeat>().unwrap().grace,
            Duration::from_secs(360)
        );
    }

    #[test]
    fn a_token_is_a_non_empty_secret() {
        assert_eq!(
            errors_of(&hb_check("      every: 1d\n      token: \"${check}\"\n")),
            ["t.yaml:5:14: checks[0].heartbeat.token: ${check}: the token takes secrets (${env:..}, ${file:..}) but no run-time variables"]
        );
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("token");
        std::fs::write(&empty, "\n").unwrap();
        assert_eq!(
            errors_of(&hb_check(&format!(
                "      every: 1d\n      token: \"${{file:{}}}\"\n",
                empty.display()
            ))),
            [format!(
                "t.yaml:5:14: checks[0].heartbeat.token: the token ${{file:{}}} is empty: set it, or leave token out to accept pings without one",
                empty.display()
            )]
        );
        std::fs::write(&empty, "s3cret\n").unwrap();
        let c = check_of(&hb_check(&format!(
            "      every: 1d\n      token: \"${{file:{}}}\"\n",
            empty.display()
        )));
        assert!(c.kind.spec::<Heartbeat>().unwrap().token.is_some());
    }

    #[test]
    fn variables_read_what_their_declaration_says() {
        let c = check_of(&hb_check("      every: 1d\n"));
        for (name, ty) in [
            ("late", Type::Bool),
            ("since_last", Type::Duration),
            ("running_for", Type::Duration),
            ("last_exit_code", Type::Number),
        ] {
            assert_eq!(c.kind.var_type(name), Ok(ty), "{name}");
        }
        assert!(c.kind.var_type("depth").is_err());
        let now = SystemTime::UNIX_EPOCH;
        let mut r =
            CheckResult::failure(crate::probe::Reason::Assertion, "late", now, Duration::ZERO);
        r.observations = vec![
            ("late".into(), 1.0),
            ("since_last".into(), 90_000.0),
            ("running_for".into(), 0.0),
        ];
        let v = |name: &str| c.kind.variable(&r, name, now);
        assert_eq!(v("late"), Some(Value::Bool(true)));
        assert_eq!(
            v("since_last"),
            Some(Value::Duration(Duration::from_secs(90_000)))
        );
        assert_eq!(v("running_for"), Some(Value::Duration(Duration::ZERO)));
        // No finish carried an exit code yet: unknown.
        assert_eq!(v("last_exit_code"), None);
        r.observations = vec![("late".into(), 0.0), ("last_exit_code".into(), 2.0)];
        let v = |name: &str| c.kind.variable(&r, name, now);
        assert_eq!(v("late"), Some(Value::Bool(false)));
        assert_eq!(v("last_exit_code"), Some(Value::Number(2.0)));
    }
}
