//! The `canary_job` kind's definition: the `canary_job:` keys, their validation, and the alert
//! variables a canary run gives.

use std::sync::Arc;
use std::time::Duration;

use schemars::{JsonSchema, Schema};
use serde::Deserialize;
use serde_json::json;
use serde_saphyr::Spanned;

use crate::config::ctx::*;
use crate::config::expr::{Type, Value};
use crate::config::model::Dur;
use crate::config::schema::{self, add_rules, Text};
use crate::config::template::Template;
use crate::probe::kind::{BuildEnv, Kind, KindCx, Read, Var};
use crate::probe::queue::def::{redis_url, tls_needs_rediss};
use crate::probe::queue::System;
use crate::probe::tls::{tls, TlsDef, TlsSettings};
use crate::probe::{CheckResult, Probe};

use super::CanaryReport;

/// The `canary_job` kind.
pub struct CanaryJob;

/// The systems a canary job runs on, as written.
const SYSTEMS: [&str; 3] = ["celery", "rq", "sidekiq"];

schema::one_of_strings!(CanarySystemName, SYSTEMS);

/// The default Celery task: built into every Celery app (`celery.accumulate` returns its
/// arguments), so the canary needs no application code.
pub const CELERY_TASK: &str = "celery.accumulate";
/// The default RQ function: a harmless standard-library callable the worker imports itself
/// (called with the canary's two arguments, `("canaryd", <check>)`).
pub const RQ_FUNCTION: &str = super::rq::DEFAULT_TASK;

fn stage(r: &CheckResult, _: &str, _: std::time::SystemTime) -> Option<Value> {
    let report = r.detail::<CanaryReport>()?;
    Some(Value::String(report.stage.as_str().to_string()))
}

impl Kind for CanaryJob {
    const KEY: &'static str = "canary_job";
    const ABOUT: &'static str = "A real, harmless job enqueued on a job system's queue and timed until it finishes.";
    const VARS: &'static [Var] = &[
        Var::observed(
            "pickup_latency",
            Type::Duration,
            "enqueued → picked up by a worker, of the canary that finished this run",
        ),
        Var::observed(
            "run_time",
            Type::Duration,
            "picked up → finished, of the canary that finished this run",
        ),
        Var::observed(
            "total",
            Type::Duration,
            "enqueued → finished, of the canary that finished this run",
        ),
        Var::observed(
            "outstanding_age",
            Type::Duration,
            "how long the canary still waiting or running has been out (0 when none is)",
        ),
        Var {
            name: "stage",
            ty: Type::String,
            read: Read::With(stage),
            about: "where the canary was at the end of the run: waiting, running, finished, failed or missing",
        },
        Var::observed("unreachable", Type::Bool, "Redis could not be reached"),
    ];
    type Def = CanaryJobDef;
    type Spec = CanaryJobSpec;

    fn validate(cx: &mut KindCx<'_, '_>, def: &CanaryJobDef) -> Option<CanaryJobSpec> {
        canary_job(cx.ctx, def, &cx.key)
    }

    fn fit_timeout(
        cx: &mut KindCx<'_, '_>,
        def: &CanaryJobDef,
        spec: &mut CanaryJobSpec,
        timeout: Duration,
    ) {
        spec.connect_timeout = match &def.connect_timeout {
            Some(d) if d.value.0.is_zero() || d.value.0 > timeout => {
                cx.ctx.err(
                    &d.referenced,
                    format!("{}.connect_timeout", cx.key),
                    format!(
                        "connect_timeout must be greater than 0 and at most the check's timeout {}",
                        fmt_d(timeout)
                    ),
                );
                timeout
            }
            Some(d) => d.value.0,
            None => timeout.min(Duration::from_secs(5)),
        };
    }

    fn build(
        name: &str,
        spec: &Arc<CanaryJobSpec>,
        _env: &BuildEnv,
    ) -> Result<Arc<dyn Probe>, String> {
        Ok(Arc::new(super::build_probe(name, spec)?))
    }
}

/// A canary job check, validated.
#[derive(Debug, Clone)]
pub struct CanaryJobSpec {
    /// Which job system.
    pub system: System,
    /// The Redis URL (the broker); may carry a password from a secret: never print its
    /// rendering.
    pub redis: Template,
    /// The queue the canary goes to.
    pub queue: String,
    /// What runs: Celery task, RQ function, Sidekiq class.
    pub task: String,
    /// The canary must finish this long after it was enqueued.
    pub within: Duration,
    /// How long an outstanding canary is waited for before it is removed and replaced, and how
    /// long the system keeps its records: `max(4 × within, 10m)`.
    pub keep: Duration,
    /// Bound on connecting.
    pub connect_timeout: Duration,
    /// TLS settings for `rediss://`.
    pub tls: TlsSettings,
}

/// `canary_job:` as written.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = canary_rules)]
pub struct CanaryJobDef {
    /// The job system: celery, rq or sidekiq.
    #[schemars(with = "CanarySystemName")]
    pub system: Spanned<String>,
    /// The Redis the system uses as its broker (`redis://`, `rediss://`, `unix://`); secrets
    /// with `${env:..}` or `${file:..}`.
    #[schemars(with = "String", extend("pattern" = schema::REDIS_URL, "patternErrorMessage" = "a redis://, rediss:// or unix:// URL"))]
    pub redis: Spanned<String>,
    /// The queue the canary goes to (default `default`).
    #[schemars(with = "Option<Text>", extend("minLength" = 1, "maxLength" = 256))]
    pub queue: Option<Spanned<String>>,
    /// The canary must have finished this long after it was enqueued (default 30s).
    #[schemars(with = "Option<Dur>")]
    pub within: Option<Spanned<Dur>>,
    /// Celery: the task to run (default `celery.accumulate`, built into every Celery app).
    #[schemars(with = "Option<Text>", extend("minLength" = 1, "maxLength" = 256))]
    pub task: Option<Spanned<String>>,
    /// RQ: the function to run, `module.name`, called with `("canaryd", <check>)` (default
    /// `builtins.max`).
    #[schemars(with = "Option<Text>", extend("minLength" = 1, "maxLength" = 256))]
    pub function: Option<Spanned<String>>,
    /// Sidekiq: the job class to run (required: a no-op class the app defines).
    #[schemars(with = "Option<Text>", extend("minLength" = 1, "maxLength" = 256))]
    pub class: Option<Spanned<String>>,
    /// Bound on connecting to Redis (default the smaller of the timeout and 5s).
    #[schemars(with = "Option<Dur>")]
    pub connect_timeout: Option<Spanned<Dur>>,
    /// TLS for `rediss://`.
    pub tls_config: Option<TlsDef>,
}

fn canary_rules(schema: &mut Schema) {
    let only = |key: &str, system: &str| {
        let others: Vec<&str> = SYSTEMS.iter().copied().filter(|s| *s != system).collect();
        json!({
            "if": { "required": ["system"], "properties": { "system": { "enum": others } } },
            "then": { "properties": { key: { "type": "null", "errorMessage": format!("{key} applies to {system} only") } } },
        })
    };
    add_rules(
        schema,
        [
            only("task", "celery"),
            only("function", "rq"),
            only("class", "sidekiq"),
            json!({
                "if": { "required": ["system"], "properties": { "system": { "const": "sidekiq" } } },
                "then": { "required": ["class"], "errorMessage": "a sidekiq canary needs class: a no-op job class the app defines" },
            }),
        ],
    );
}

fn name_like(ctx: &mut Ctx, v: &Spanned<String>, key: &str, what: &str) -> Option<String> {
    let s = v.value.trim();
    if s.is_empty() || s.len() > 256 || s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        ctx.err(
            &v.referenced,
            key,
            format!("{what} {:?}: 1 to 256 characters, no spaces or control characters", v.value),
        );
        return None;
    }
    Some(s.to_string())
}

fn canary_job(ctx: &mut Ctx, d: &CanaryJobDef, key: &str) -> Option<CanaryJobSpec> {
    let system = match d.system.value.as_str() {
        "celery" => Some(System::Celery),
        "rq" => Some(System::Rq),
        "sidekiq" => Some(System::Sidekiq),
        "bullmq" | "resque" => {
            ctx.err(
                &d.system.referenced,
                format!("{key}.system"),
                format!(
                    "{} has no canary job: its jobs run JavaScript/Ruby code canaryd cannot enqueue faithfully without the app; use a heartbeat check pinged by a scheduled job of the app instead",
                    d.system.value
                ),
            );
            None
        }
        other => {
            ctx.err(
                &d.system.referenced,
                format!("{key}.system"),
                format!("unknown system {other:?}: use celery, rq or sidekiq"),
            );
            None
        }
    };
    let redis = redis_url(ctx, &d.redis, key);
    let queue = match &d.queue {
        Some(q) => name_like(ctx, q, &format!("{key}.queue"), "queue name"),
        None => Some("default".to_string()),
    };
    let within = match &d.within {
        Some(w) => {
            ctx.dur_in(Some(w), &format!("{key}.within"), crate::config::limits::CANARY_WITHIN);
            w.value.0
        }
        None => Duration::from_secs(30),
    };
    // Which key names the job for which system; one set for another system would be ignored.
    let mut task = None;
    for (field, value, for_system, what) in [
        ("task", &d.task, System::Celery, "task name"),
        ("function", &d.function, System::Rq, "function"),
        ("class", &d.class, System::Sidekiq, "class name"),
    ] {
        let Some(v) = value else { continue };
        if system.is_some_and(|s| s != for_system) {
            ctx.err(
                &v.referenced,
                format!("{key}.{field}"),
                format!(
                    "{field} applies to {} only, not {}",
                    for_system.as_str(),
                    d.system.value
                ),
            );
            continue;
        }
        task = name_like(ctx, v, &format!("{key}.{field}"), what);
    }
    let task = match (system, task) {
        (_, Some(t)) => Some(t),
        (Some(System::Celery), None) => Some(CELERY_TASK.to_string()),
        (Some(System::Rq), None) => Some(RQ_FUNCTION.to_string()),
        (Some(System::Sidekiq), None) => {
            ctx.err(
                &d.system.referenced,
                key.to_string(),
                "a sidekiq canary needs class: a no-op job class the app defines (see docs/reference.md, canary_job)",
            );
            None
        }
        _ => None,
    };
    tls_needs_rediss(ctx, redis.as_ref(), &d.redis, d.tls_config.is_some(), key);
    let tls = tls(ctx, d.tls_config.as_ref(), &format!("{key}.tls_config"));
    Some(CanaryJobSpec {
        system: system?,
        redis: redis?,
        queue: queue?,
        task: task?,
        within,
        keep: within.saturating_mul(4).max(Duration::from_secs(600)),
        // Set by `fit_timeout`, once the check's timeout is known.
        connect_timeout: Duration::ZERO,
        tls,
    })
}

#[cfg(test)]
mod tests {
    use crate::probe::check::{check_of, errors_of};

    fn canary(body: &str) -> String {
        format!("checks:\n  - name: c\n    interval: 1m\n    canary_job:\n{body}")
    }

    #[test]
    fn defaults_per_system_and_the_keys_that_name_the_job() {
        let c = check_of(&canary(
            "      system: celery\n      redis: \"redis://127.0.0.1:6379/0\"\n",
        ));
        let s = c.kind.spec::<super::CanaryJob>().unwrap();
        assert_eq!(
            (s.queue.as_str(), s.task.as_str(), s.within.as_secs()),
            ("default", "celery.accumulate", 30)
        );
        assert_eq!(s.keep.as_secs(), 600);
        let c = check_of(&canary(
            "      system: rq\n      redis: \"redis://127.0.0.1:6379\"\n      queue: low\n      within: 5m\n",
        ));
        let s = c.kind.spec::<super::CanaryJob>().unwrap();
        assert_eq!((s.task.as_str(), s.keep.as_secs()), ("builtins.max", 1200));
        assert_eq!(
            errors_of(&canary(
                "      system: sidekiq\n      redis: \"redis://127.0.0.1:6379\"\n      function: x.y\n"
            )),
            [
                "t.yaml:7:17: checks[0].canary_job.function: function applies to rq only, not sidekiq",
                "t.yaml:5:15: checks[0].canary_job: a sidekiq canary needs class: a no-op job class the app defines (see docs/reference.md, canary_job)",
            ]
        );
        let e = errors_of(&canary(
            "      system: bullmq\n      redis: \"redis://127.0.0.1:6379\"\n",
        ));
        assert!(e[0].contains("bullmq has no canary job"), "{e:?}");
        let e = errors_of(&canary(
            "      system: rq\n      redis: \"redis://127.0.0.1:6379\"\n      within: 10ms\n",
        ));
        assert!(e[0].contains("checks[0].canary_job.within"), "{e:?}");
    }
}
