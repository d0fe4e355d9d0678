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
        if value.trim().is_empty() {
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
