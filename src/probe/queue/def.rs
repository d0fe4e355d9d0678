//! The `queue` kind's definition: the `queue:` keys, their schema rules and validation, and the
//! alert variables a queue check's results give.

use std::sync::Arc;
use std::time::Duration;

use schemars::{JsonSchema, Schema};
use serde::Deserialize;
use serde_json::json;
use serde_saphyr::Spanned;

use crate::config::ctx::*;
use crate::config::expr::Type;
use crate::config::limits;
use crate::config::model::{Capped, Dur};
use crate::config::schema::{self, add_rules, Count, Text};
use crate::config::template::Template;
use crate::probe::kind::{BuildEnv, Kind, KindCx, Var};
use crate::probe::tls::{tls, TlsDef, TlsSettings};
use crate::probe::Probe;
use serde_json::Value;
use serde_saphyr::Location;
use std::collections::HashSet;

/// The `queue` kind.
pub struct Queue;

const fn number(name: &'static str, about: &'static str) -> Var {
    Var::observed(name, Type::Number, about)
}

impl Kind for Queue {
    const KEY: &'static str = "queue";
    const ABOUT: &'static str = "Background-job health read from Redis.";
    const VARS: &'static [Var] = &[
        number("depth", "waiting jobs, summed over the queues read"),
        number(
            "queue.<name>.depth",
            "waiting jobs in that queue (with `queues:`, one of them)",
        ),
        Var::observed(
            "oldest_age",
            Type::Duration,
            "how long the oldest waiting job has waited (0 when nothing waits)",
        ),
        number(
            "processed_rate",
            "jobs processed per second since the previous run",
        ),
        number(
            "failed_rate",
            "jobs failed per second since the previous run",
        ),
        number("workers", "live workers, as the system records them"),
        number("busy", "workers running a job now"),
        number("scheduled", "scheduled and delayed jobs"),
        number("retries", "jobs waiting for a retry (Sidekiq)"),
        number("dead", "dead jobs (Sidekiq)"),
        Var::observed("unreachable", Type::Bool, "Redis could not be reached"),
    ];
    type Def = QueueDef;
    type Spec = QueueCheck;

    fn validate(cx: &mut KindCx<'_, '_>, def: &QueueDef) -> Option<QueueCheck> {
        queue(cx.ctx, def, &cx.key)
    }

    fn fit_timeout(
        cx: &mut KindCx<'_, '_>,
        q: &QueueDef,
        spec: &mut QueueCheck,
        timeout: Duration,
    ) {
        spec.connect_timeout = match &q.connect_timeout {
            Some(d) if d.value.0.is_zero() => {
                cx.ctx.err(
                    &d.referenced,
                    format!("{}.connect_timeout", cx.key),
                    "must be greater than 0",
                );
                timeout
            }
            Some(d) if d.value.0 > timeout => {
                cx.ctx.err(
                    &d.referenced,
                    format!("{}.connect_timeout", cx.key),
                    format!(
                        "connect_timeout {} exceeds the check's timeout {}",
                        fmt_d(d.value.0),
                        fmt_d(timeout)
                    ),
                );
                timeout
            }
            Some(d) => d.value.0,
            None => timeout.min(Duration::from_secs(5)),
        };
    }

    fn check_param(spec: &QueueCheck, _var: &Var, queue: &str) -> Result<(), String> {
        match &spec.queues {
            Some(qs) if !qs.iter().any(|n| n == queue) => Err(format!(
                "unknown queue {queue:?} (this check's queues: {})",
                qs.join(", ")
            )),
            _ => Ok(()),
        }
    }

    fn build(
        _name: &str,
        spec: &Arc<QueueCheck>,
        _env: &BuildEnv,
    ) -> Result<Arc<dyn Probe>, String> {
        Ok(Arc::new(super::build_probe(spec)?))
    }
}

/// A queue check, validated.
#[derive(Debug, Clone)]
pub struct QueueCheck {
    /// Whose layout to read.
    pub system: super::System,
    /// The Redis URL; may carry a password from a secret, so never print its rendering.
    pub redis: Template,
    /// Configured queues; `None`: discover.
    pub queues: Option<Vec<String>>,
    /// Key prefix / namespace, when set.
    pub prefix: Option<String>,
    /// Celery priority steps (default 0, 3, 6, 9).
    pub priority_steps: Vec<u32>,
    /// Celery priority separator (default `\x06\x16`).
    pub priority_separator: String,
    /// Generic redis: exact keys.
    pub keys: Vec<String>,
    /// Generic redis: SCAN patterns.
    pub patterns: Vec<String>,
    /// Bound on connecting.
    pub connect_timeout: Duration,
    /// TLS settings for `rediss://`.
    pub tls: TlsSettings,
}

/// The `queue:` kind.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = queue_rules)]
pub struct QueueDef {
    /// sidekiq | celery | rq | bullmq | resque | redis (generic keys)
    #[schemars(with = "QueueSystem")]
    pub system: Spanned<String>,
    /// `redis://[:password@]host:port/db` or `rediss://…`; secrets allowed.
    #[schemars(with = "String", extend("pattern" = schema::REDIS_URL, "patternErrorMessage" = "a redis://, rediss:// or unix:// URL"))]
    pub redis: Spanned<String>,
    /// Queues to read (at most 1000); omitted: discover every queue.
    #[schemars(with = "Option<Vec<Text>>", extend("minItems" = 1, "maxItems" = 1000, "uniqueItems" = true))]
    pub queues: Option<Spanned<Capped<String, 1000>>>,
    /// Key prefix or namespace (Sidekiq namespace, Celery `global_keyprefix`, BullMQ prefix,
    /// Resque namespace).
    #[schemars(with = "Option<Text>")]
    pub prefix: Option<Spanned<String>>,
    /// Celery: the priority steps the broker was configured with (at most 256, each 0 to 255).
    #[schemars(with = "Option<Vec<Count>>", extend("maxItems" = 256))]
    pub priority_steps: Option<Spanned<Capped<u32, 256>>>,
    /// Celery: the separator between queue name and priority.
    #[schemars(with = "Option<Text>")]
    pub priority_separator: Option<Spanned<String>>,
    /// Generic `redis`: exact keys (at most 1000).
    #[schemars(with = "Option<Vec<Text>>", extend("maxItems" = 1000))]
    pub keys: Option<Spanned<Capped<String, 1000>>>,
    /// Generic `redis`: SCAN MATCH patterns (at most 1000).
    #[schemars(with = "Option<Vec<Text>>", extend("maxItems" = 1000))]
    pub patterns: Option<Spanned<Capped<String, 1000>>>,
    /// Bound on connecting (the check's timeout bounds the whole run).
    #[schemars(with = "Option<Dur>")]
    pub connect_timeout: Option<Spanned<Dur>>,
    /// TLS options for `rediss://`.
    pub tls_config: Option<TlsDef>,
}

/// Every `queue.system`.
const QUEUE_SYSTEMS: [&str; 6] = ["sidekiq", "celery", "rq", "bullmq", "resque", "redis"];

schema::one_of_strings!(
    /// `queue.system`: the job systems canaryd reads.
    QueueSystem,
    QUEUE_SYSTEMS
);

/// `queue`: options only some systems read, and what the generic `redis` system needs.
pub fn queue_rules(schema: &mut Schema) {
    let system_is = |systems: &[&str]| json!({ "required": ["system"], "properties": { "system": { "enum": systems } } });
    let others = |only: &str| -> Vec<&str> {
        QUEUE_SYSTEMS
            .iter()
            .copied()
            .filter(|s| *s != only)
            .collect()
    };
    let job_systems = others("redis");
    let only_for = |keys: &[&str], systems: &[&str], not: &[&str]| {
        let props: serde_json::Map<String, Value> = keys
            .iter()
            .map(|k| {
                let message = format!("{k} applies to {} only", systems.join(", "));
                (
                    (*k).to_string(),
                    json!({ "type": "null", "errorMessage": message }),
                )
            })
            .collect();
        json!({ "if": system_is(not), "then": { "properties": props } })
    };
    let rules = [
        only_for(
            &["priority_steps", "priority_separator"],
            &["celery"],
            &others("celery"),
        ),
        only_for(&["keys", "patterns"], &["redis"], &job_systems),
        only_for(&["queues", "prefix"], &job_systems, &["redis"]),
        json!({
            "if": system_is(&["redis"]),
            "then": {
                "anyOf": [
                    { "required": ["keys"], "properties": { "keys": { "type": "array", "minItems": 1 } } },
                    { "required": ["patterns"], "properties": { "patterns": { "type": "array", "minItems": 1 } } },
                ],
                "errorMessage": "system redis needs keys or patterns (what to read)",
            },
        }),
        json!({
            "if": system_is(&["bullmq"]),
            "then": {
                "properties": {
                    "queues": {
                        "items": {
                            "pattern": "^[^:]*$",
                            "patternErrorMessage": "BullMQ queue names cannot contain ':'",
                        },
                    },
                },
            },
        }),
    ];
    add_rules(schema, rules);
}

/// Validates the `redis:` URL of a kind that reads Redis (`queue`, `canary_job`): a template
/// with secrets but no run-time variables, whose rendering is a URL canaryd can dial. Errors
/// never show the password.
pub fn redis_url(ctx: &mut Ctx, redis: &Spanned<String>, key: &str) -> Option<Template> {
    let t = ctx.template(redis, &format!("{key}.redis"))?;
    if let Some(v) = t.variables().next() {
        ctx.err(
            &redis.referenced,
            format!("{key}.redis"),
            format!("${{{v}}}: the redis URL takes secrets (${{env:..}}, ${{file:..}}) but no run-time variables"),
        );
    } else if !t.is_known() {
        // Its secret was not read (`check --no-secrets`): the URL is judged when it is set.
    } else if let Err(e) = t
        .render(|_| None)
        .map_err(|_| "undefined variable".to_string())
        .and_then(|url| crate::probe::queue::conn::check_url(&url))
    {
        // The message is built from the URL's structure, never its password.
        ctx.err(
            &redis.referenced,
            format!("{key}.redis"),
            format!(
                "invalid redis URL {:?}: {e}",
                crate::probe::queue::conn::without_password(t.redacted())
            ),
        );
    }
    Some(t)
}

/// `tls_config` with a plain-text URL would be silently ignored (the traffic stays plain): an
/// error.
pub fn tls_needs_rediss(
    ctx: &mut Ctx,
    redis: Option<&Template>,
    written: &Spanned<String>,
    tls_config: bool,
    key: &str,
) {
    let scheme = redis
        .and_then(|t| t.render(|_| None).ok())
        .and_then(|u| url::Url::parse(u.trim()).ok())
        .map(|u| u.scheme().to_string());
    if let (true, Some(scheme)) = (tls_config, scheme) {
        if scheme != "rediss" {
            ctx.err(
                &written.referenced,
                format!("{key}.tls_config"),
                format!("tls_config applies to rediss:// URLs only, not {scheme}://"),
            );
        }
    }
}

fn queue(ctx: &mut Ctx, q: &QueueDef, key: &str) -> Option<QueueCheck> {
    use crate::probe::queue::System;
    let system = match q.system.value.as_str() {
        "sidekiq" => Some(System::Sidekiq),
        "celery" => Some(System::Celery),
        "rq" => Some(System::Rq),
        "bullmq" => Some(System::Bullmq),
        "resque" => Some(System::Resque),
        "redis" => Some(System::Redis),
        other => {
            ctx.err(
                &q.system.referenced,
                format!("{key}.system"),
                format!(
                    "unknown system {other:?}: use sidekiq, celery, rq, bullmq, resque or redis"
                ),
            );
            None
        }
    };
    let redis = redis_url(ctx, &q.redis, key);
    // Options that only some systems read: set for another one, they would be silently ignored.
    const JOB_SYSTEMS: &[System] = &[
        System::Sidekiq,
        System::Celery,
        System::Rq,
        System::Bullmq,
        System::Resque,
    ];
    let system_specific: [(&str, Option<&Location>, &[System]); 6] = [
        (
            "priority_steps",
            q.priority_steps.as_ref().map(|s| &s.referenced),
            &[System::Celery],
        ),
        (
            "priority_separator",
            q.priority_separator.as_ref().map(|s| &s.referenced),
            &[System::Celery],
        ),
        (
            "keys",
            q.keys.as_ref().map(|s| &s.referenced),
            &[System::Redis],
        ),
        (
            "patterns",
            q.patterns.as_ref().map(|s| &s.referenced),
            &[System::Redis],
        ),
        (
            "queues",
            q.queues.as_ref().map(|s| &s.referenced),
            JOB_SYSTEMS,
        ),
        (
            "prefix",
            q.prefix.as_ref().map(|s| &s.referenced),
            JOB_SYSTEMS,
        ),
    ];
    for (field, loc, systems) in system_specific {
        if let (Some(loc), Some(system)) = (loc, system) {
            if !systems.contains(&system) {
                let names: Vec<&str> = systems.iter().map(|s| s.as_str()).collect();
                ctx.err(
                    loc,
                    format!("{key}.{field}"),
                    format!(
                        "{field} applies to {} only, not {}",
                        names.join(", "),
                        system.as_str()
                    ),
                );
            }
        }
    }
    for (field, list) in [("keys", &q.keys), ("patterns", &q.patterns)] {
        if let Some(l) = list {
            ctx.count(
                l.value.len(),
                limits::MAX_QUEUES,
                &l.referenced,
                &format!("{key}.{field}"),
                field,
            );
        }
    }
    if let Some(steps) = &q.priority_steps {
        ctx.count(
            steps.value.len(),
            limits::MAX_PRIORITY_STEPS,
            &steps.referenced,
            &format!("{key}.priority_steps"),
            "priority steps",
        );
        if let Some(p) = steps.value.iter().find(|p| **p > limits::MAX_PRIORITY) {
            ctx.err(
                &steps.referenced,
                format!("{key}.priority_steps"),
                format!(
                    "priority {p} is more than the limit of {}",
                    limits::MAX_PRIORITY
                ),
            );
        }
    }
    if let Some(queues) = &q.queues {
        if queues.value.is_empty() {
            ctx.err(
                &queues.referenced,
                format!("{key}.queues"),
                "queues is empty: list queues, or leave it out to discover them",
            );
        }
        let within = ctx.count(
            queues.value.len(),
            limits::MAX_QUEUES,
            &queues.referenced,
            &format!("{key}.queues"),
            "queues",
        );
        // A set, not a scan of the earlier names: 100k names would take quadratic time.
        let mut listed = HashSet::new();
        let names = if within { &queues.value[..] } else { &[] };
        for (i, name) in names.iter().enumerate() {
            if system == Some(System::Bullmq) && name.contains(':') {
                ctx.err(
                    &queues.referenced,
                    format!("{key}.queues[{i}]"),
                    format!("queue name {name:?}: BullMQ queue names cannot contain ':'"),
                );
            }
            if name.is_empty() || !listed.insert(name.as_str()) {
                ctx.err(
                    &queues.referenced,
                    format!("{key}.queues[{i}]"),
                    format!("queue name {name:?} is empty or listed twice"),
                );
            }
        }
    }
    if system == Some(System::Redis)
        && q.keys.as_ref().is_none_or(|k| k.value.is_empty())
        && q.patterns.as_ref().is_none_or(|p| p.value.is_empty())
    {
        ctx.err(
            &q.system.referenced,
            key.to_string(),
            "system redis needs keys or patterns (what to read)",
        );
    }
    tls_needs_rediss(ctx, redis.as_ref(), &q.redis, q.tls_config.is_some(), key);
    // Set by `fit_timeout`, once the check's timeout is known.
    let connect_timeout = Duration::ZERO;
    let tls = tls(ctx, q.tls_config.as_ref(), &format!("{key}.tls_config"));
    Some(QueueCheck {
        system: system?,
        redis: redis?,
        queues: q.queues.as_ref().map(|q| q.value.0.clone()),
        prefix: q.prefix.as_ref().map(|p| p.value.clone()),
        priority_steps: q
            .priority_steps
            .as_ref()
            .map_or_else(|| vec![0, 3, 6, 9], |s| s.value.0.clone()),
        priority_separator: q
            .priority_separator
            .as_ref()
            .map_or_else(|| "\x06\x16".to_string(), |s| s.value.clone()),
        keys: q
            .keys
            .as_ref()
            .map(|k| k.value.0.clone())
            .unwrap_or_default(),
        patterns: q
            .patterns
            .as_ref()
            .map(|p| p.value.0.clone())
            .unwrap_or_default(),
        connect_timeout,
        tls,
    })
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::config::expr::Value;
    use crate::probe::check::{check_of, errors_of};
    use crate::probe::CheckResult;

    /// A queue check with `def` (lines at the indent of `queue:`'s keys).
    fn queue_check(def: &str) -> String {
        format!("checks:\n  - name: jobs\n    queue:\n{def}")
    }

    const SIDEKIQ: &str = "      system: sidekiq\n      redis: \"redis://127.0.0.1:6379\"\n";

    #[test]
    fn the_system_is_one_canaryd_reads() {
        assert_eq!(
            errors_of(&queue_check(
                "      system: kue\n      redis: \"redis://127.0.0.1:6379\"\n"
            )),
            [
                r#"t.yaml:4:15: checks[0].queue.system: unknown system "kue": use sidekiq, celery, rq, bullmq, resque or redis"#
            ]
        );
        let c = check_of(&queue_check(SIDEKIQ));
        let spec = c.kind.spec::<Queue>().unwrap();
        assert_eq!(spec.system, crate::probe::queue::System::Sidekiq);
        assert_eq!(spec.priority_steps, [0, 3, 6, 9], "the default steps");
        assert!(spec.queues.is_none(), "discovered");
    }

    #[test]
    fn the_redis_url_is_checked_without_showing_its_password() {
        assert_eq!(
            errors_of(&queue_check("      system: rq\n      redis: \"redis://${host}:6379\"\n")),
            ["t.yaml:5:14: checks[0].queue.redis: ${host}: the redis URL takes secrets (${env:..}, ${file:..}) but no run-time variables"]
        );
        assert_eq!(
            errors_of(&queue_check(
                "      system: rq\n      redis: \"http://127.0.0.1:6379\"\n"
            )),
            [
                r#"t.yaml:5:14: checks[0].queue.redis: invalid redis URL "http://127.0.0.1:6379/": scheme "http": use redis://, rediss:// or unix://"#
            ]
        );
        assert_eq!(
            errors_of(&queue_check(
                "      system: rq\n      redis: \"redis://:hunter2@/0\"\n"
            )),
            [r#"t.yaml:5:14: checks[0].queue.redis: invalid redis URL "(unparsable)": empty host"#]
        );
        let errors = errors_of(&queue_check(
            "      system: rq\n      redis: \"redis://:hunter2@127.0.0.1:6379/notadb\"\n",
        ));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("t.yaml:5:14: checks[0].queue.redis: invalid redis URL \"redis://:xxxxx@127.0.0.1:6379/notadb\": "),
            "{errors:?}"
        );
        assert!(!errors[0].contains("hunter2"), "{errors:?}");
    }

    #[test]
    fn tls_settings_go_with_a_rediss_url() {
        assert_eq!(
            errors_of(&queue_check(&format!(
                "{SIDEKIQ}      tls_config: {{insecure_skip_verify: true}}\n"
            ))),
            ["t.yaml:5:14: checks[0].queue.tls_config: tls_config applies to rediss:// URLs only, not redis://"]
        );
        let c = check_of(&queue_check(
            "      system: sidekiq\n      redis: \"rediss://127.0.0.1:6380\"\n      tls_config: {server_name: redis.internal}\n",
        ));
        let tls = &c.kind.spec::<Queue>().unwrap().tls;
        assert_eq!(tls.server_name.as_deref(), Some("redis.internal"));
    }

    #[test]
    fn options_of_other_systems_are_refused() {
        assert_eq!(
            errors_of(&queue_check(&format!(
                "{SIDEKIQ}      priority_steps: [0, 5]\n      keys: [a]\n"
            ))),
            [
                "t.yaml:6:23: checks[0].queue.priority_steps: priority_steps applies to celery only, not sidekiq",
                "t.yaml:7:13: checks[0].queue.keys: keys applies to redis only, not sidekiq",
            ]
        );
        assert_eq!(
            errors_of(&queue_check(
                "      system: redis\n      redis: \"redis://127.0.0.1:6379\"\n      keys: [a]\n      queues: [a]\n      prefix: x\n"
            )),
            [
                "t.yaml:7:15: checks[0].queue.queues: queues applies to sidekiq, celery, rq, bullmq, resque only, not redis",
                "t.yaml:8:15: checks[0].queue.prefix: prefix applies to sidekiq, celery, rq, bullmq, resque only, not redis",
            ]
        );
    }

    #[test]
    fn celery_priorities_are_at_most_255() {
        let celery = "      system: celery\n      redis: \"redis://127.0.0.1:6379\"\n";
        assert_eq!(
            errors_of(&queue_check(&format!("{celery}      priority_steps: [0, 256]\n"))),
            ["t.yaml:6:23: checks[0].queue.priority_steps: priority 256 is more than the limit of 255"]
        );
        let c = check_of(&queue_check(&format!(
            "{celery}      priority_steps: [0, 255]\n      priority_separator: \":\"\n"
        )));
        let spec = c.kind.spec::<Queue>().unwrap();
        assert_eq!(spec.priority_steps, [0, 255]);
        assert_eq!(spec.priority_separator, ":");
    }

    #[test]
    fn listed_queues_are_non_empty_and_unique() {
        assert_eq!(
            errors_of(&queue_check(&format!("{SIDEKIQ}      queues: []\n"))),
            ["t.yaml:6:15: checks[0].queue.queues: queues is empty: list queues, or leave it out to discover them"]
        );
        assert_eq!(
            errors_of(&queue_check(&format!(
                "{SIDEKIQ}      queues: [a, b, a, \"\"]\n"
            ))),
            [
                r#"t.yaml:6:15: checks[0].queue.queues[2]: queue name "a" is empty or listed twice"#,
                r#"t.yaml:6:15: checks[0].queue.queues[3]: queue name "" is empty or listed twice"#,
            ]
        );
        assert_eq!(
            errors_of(&queue_check(
                "      system: bullmq\n      redis: \"redis://127.0.0.1:6379\"\n      queues: [\"a:b\"]\n"
            )),
            [r#"t.yaml:6:15: checks[0].queue.queues[0]: queue name "a:b": BullMQ queue names cannot contain ':'"#]
        );
        // Other systems allow ':'.
        let c = check_of(&queue_check(&format!(
            "{SIDEKIQ}      queues: [\"a:b\", c]\n"
        )));
        assert_eq!(
            c.kind.spec::<Queue>().unwrap().queues.as_deref(),
            Some(&["a:b".to_string(), "c".to_string()][..])
        );
    }

    #[test]
    fn the_generic_redis_system_needs_something_to_read() {
        let redis = "      system: redis\n      redis: \"redis://127.0.0.1:6379\"\n";
        assert_eq!(
            errors_of(&queue_check(redis)),
            ["t.yaml:4:15: checks[0].queue: system redis needs keys or patterns (what to read)"]
        );
        assert_eq!(
            errors_of(&queue_check(&format!(
                "{redis}      keys: []\n      patterns: []\n"
            ))),
            ["t.yaml:4:15: checks[0].queue: system redis needs keys or patterns (what to read)"]
        );
        let c = check_of(&queue_check(&format!(
            "{redis}      patterns: [\"jobs:*\"]\n"
        )));
        let spec = c.kind.spec::<Queue>().unwrap();
        assert_eq!(
            (spec.keys.len(), spec.patterns.as_slice()),
            (0, &["jobs:*".to_string()][..])
        );
    }

    #[test]
    fn variables_read_what_their_declaration_says() {
        let c = check_of(&queue_check(&format!(
            "{SIDEKIQ}      queues: [default, mail]\n"
        )));
        for (name, ty) in [
            ("depth", Type::Number),
            ("queue.mail.depth", Type::Number),
            ("oldest_age", Type::Duration),
            ("processed_rate", Type::Number),
            ("failed_rate", Type::Number),
            ("workers", Type::Number),
            ("busy", Type::Number),
            ("scheduled", Type::Number),
            ("retries", Type::Number),
            ("dead", Type::Number),
            ("unreachable", Type::Bool),
        ] {
            assert_eq!(c.kind.var_type(name), Ok(ty), "{name}");
        }
        assert_eq!(
            c.kind.var_type("queue.other.depth"),
            Err(r#"unknown queue "other" (this check's queues: default, mail)"#.to_string())
        );
        // Discovering queues: any name may be asked for.
        let discovering = check_of(&queue_check(SIDEKIQ));
        assert_eq!(
            discovering.kind.var_type("queue.other.depth"),
            Ok(Type::Number)
        );

        let now = SystemTime::UNIX_EPOCH;
        let mut r = CheckResult::failure(
            crate::probe::Reason::Connect,
            "refused",
            now,
            Duration::from_millis(2),
        );
        r.observations = vec![
            ("depth".into(), 12.0),
            ("queue.mail.depth".into(), 2.0),
            ("oldest_age".into(), 90.5),
            ("unreachable".into(), 1.0),
            ("busy".into(), 0.0),
        ];
        let v = |name: &str| c.kind.variable(&r, name, now);
        assert_eq!(v("depth"), Some(Value::Number(12.0)));
        assert_eq!(v("queue.mail.depth"), Some(Value::Number(2.0)));
        assert_eq!(
            v("oldest_age"),
            Some(Value::Duration(Duration::from_secs_f64(90.5)))
        );
        assert_eq!(v("unreachable"), Some(Value::Bool(true)));
        assert_eq!(v("busy"), Some(Value::Number(0.0)));
        // Not read this run: unknown.
        assert_eq!(v("workers"), None);
        assert_eq!(v("queue.default.depth"), None);
        assert_eq!(v("failed"), Some(Value::Bool(true)));
        assert_eq!(v("reason"), Some(Value::String("connect".into())));
    }
}
