//! From the file model to the run-time model, collecting every error on the way.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Method};
use serde_saphyr::{Location, Spanned};
use url::Url;

use super::ctx::*;
use super::expr::{self, Type};
use super::files::*;
use super::limits;
use super::model::*;
use super::template::Template;
use super::*;
use crate::probe::http::spec::*;
use crate::shard::Shard;

struct Defaults {
    interval: Duration,
    timeout: Duration,
    body_limit: u64,
}

/// See [`super::load`].
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let src = match read_config_file(path) {
        Ok(s) => s,
        Err(reason) => {
            return Err(ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                line: 1,
                col: 1,
                key: String::new(),
                message: format!("cannot read configuration: {reason}"),
            }]))
        }
    };
    let daemon: DaemonFile = match decode(path, &src) {
        Ok(d) => d,
        Err(e) => return Err(ConfigErrors(vec![e])),
    };
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    let mut ctx = Ctx {
        file: path.to_path_buf(),
        src: &src,
        dir: dir.clone(),
        errors: &mut errors,
    };

    let listen = match &daemon.listen {
        None => DEFAULT_LISTEN.parse().expect("valid default"),
        Some(s) => s.value.parse::<SocketAddr>().unwrap_or_else(|_| {
            ctx.err(
                &s.referenced,
                "listen",
                format!(
                    "invalid address {:?}: write host:port, e.g. 127.0.0.1:9464",
                    s.value
                ),
            );
            DEFAULT_LISTEN.parse().expect("valid default")
        }),
    };
    let state_dir = daemon
        .state_dir
        .as_ref()
        .map(|s| dir.join(&s.value))
        .unwrap_or_else(|| dir.join("state"));
    let state_dir_origin = match &daemon.state_dir {
        Some(s) => ctx.origin(&s.referenced),
        None => Origin {
            file: path.to_path_buf(),
            line: 1,
            col: 1,
        },
    };
    let max_concurrency = match &daemon.max_concurrency {
        Some(n) if n.value == 0 => {
            ctx.err(&n.referenced, "max_concurrency", "must be at least 1");
            1
        }
        Some(n) => {
            ctx.int_in(Some(n), "max_concurrency", 1, limits::MAX_CONCURRENCY);
            n.value as usize
        }
        None => 256,
    };
    let defaults = daemon_defaults(&mut ctx, &daemon.defaults);

    let alerting = crate::alert::AlertConfig::validate(
        &mut ctx,
        &daemon.receivers,
        &daemon.routes,
        &daemon.maintenance,
        daemon.watchdog.as_ref(),
    );

    let mut seen = HashMap::new();
    let mut checks = Vec::new();
    checks_of(&mut ctx, &daemon.checks, &defaults, &mut seen, &mut checks);

    let mut files = Vec::new();
    let mut have = HashSet::new();
    if let Some(first) = daemon.check_files.get(limits::MAX_CHECK_FILE_PATTERNS) {
        ctx.err(
            &first.referenced,
            "check_files",
            format!(
                "{} patterns: at most {} are allowed",
                daemon.check_files.len(),
                limits::MAX_CHECK_FILE_PATTERNS
            ),
        );
    }
    for pattern in daemon
        .check_files
        .iter()
        .take(limits::MAX_CHECK_FILE_PATTERNS)
    {
        let key = "check_files";
        let matched = match glob_files(&dir, &pattern.value) {
            Ok(v) => v,
            Err(message) => {
                ctx.err(&pattern.referenced, key, message);
                continue;
            }
        };
        if matched.is_empty() {
            let message = if pattern.value.contains(['*', '?', '[']) {
                format!(
                    "pattern {:?} matches no file (relative to {})",
                    pattern.value,
                    dir.display()
                )
            } else {
                format!("file {} does not exist", pattern.value)
            };
            ctx.err(&pattern.referenced, key, message);
        }
        for f in matched {
            if files.len() >= limits::MAX_CHECK_FILES {
                ctx.err(
                    &pattern.referenced,
                    "check_files",
                    format!(
                        "more than {} check files matched: at most {} are allowed",
                        limits::MAX_CHECK_FILES,
                        limits::MAX_CHECK_FILES
                    ),
                );
                break;
            }
            if have.insert(f.clone()) {
                files.push(f);
            }
        }
    }
    drop(ctx);
    for f in &files {
        match limits::read_capped(f, limits::MAX_CONFIG_FILE_BYTES) {
            Ok(src) => match decode::<CheckFile>(f, &src) {
                Ok(cf) => {
                    let fdir = f
                        .parent()
                        .map(Path::to_path_buf)
                        .unwrap_or_else(|| dir.clone());
                    let mut fctx = Ctx {
                        file: f.clone(),
                        src: &src,
                        dir: fdir,
                        errors: &mut errors,
                    };
                    checks_of(&mut fctx, &cf.checks, &defaults, &mut seen, &mut checks);
                }
                Err(e) => errors.push(e),
            },
            Err(reason) => errors.push(ConfigError {
                file: f.clone(),
                line: 1,
                col: 1,
                key: String::new(),
                message: format!("cannot read check file: {reason}"),
            }),
        }
    }

    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(Config {
        path: path.to_path_buf(),
        listen,
        state_dir,
        state_dir_origin,
        max_concurrency,
        checks,
        alerting,
        files,
        shard: Shard::ALL,
        elsewhere: Vec::new(),
    })
}

/// See [`super::load_checks_str`].
pub fn load_checks_str(file: &Path, yaml: &str) -> Result<Vec<Arc<Check>>, ConfigErrors> {
    if yaml.len() as u64 > limits::MAX_CONFIG_FILE_BYTES {
        return Err(ConfigErrors(vec![ConfigError {
            file: file.to_path_buf(),
            line: 1,
            col: 1,
            key: String::new(),
            message: format!(
                "cannot read check file: larger than the limit of {}",
                limits::fmt_bytes(limits::MAX_CONFIG_FILE_BYTES)
            ),
        }]));
    }
    let cf: CheckFile = decode(file, yaml).map_err(|e| ConfigErrors(vec![e]))?;
    let mut errors = Vec::new();
    let dir = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut ctx = Ctx {
        file: file.to_path_buf(),
        src: yaml,
        dir,
        errors: &mut errors,
    };
    let defaults = Defaults {
        interval: DEFAULT_INTERVAL,
        timeout: DEFAULT_TIMEOUT,
        body_limit: DEFAULT_BODY_LIMIT,
    };
    let mut checks = Vec::new();
    checks_of(
        &mut ctx,
        &cf.checks,
        &defaults,
        &mut HashMap::new(),
        &mut checks,
    );
    if errors.is_empty() {
        Ok(checks)
    } else {
        Err(ConfigErrors(errors))
    }
}

fn daemon_defaults(ctx: &mut Ctx, d: &model::Defaults) -> Defaults {
    let interval = d
        .interval
        .as_ref()
        .map(|i| i.value.0)
        .unwrap_or(DEFAULT_INTERVAL);
    let timeout = d
        .timeout
        .as_ref()
        .map(|t| t.value.0)
        .unwrap_or(DEFAULT_TIMEOUT.min(interval));
    ctx.dur_in(d.interval.as_ref(), "defaults.interval", limits::INTERVAL);
    if let Some(t) = &d.timeout {
        if t.value.0.is_zero() {
            ctx.err(&t.referenced, "defaults.timeout", "must be greater than 0");
        } else if t.value.0 > interval {
            ctx.err(
                &t.referenced,
                "defaults.timeout",
                format!(
                    "{} exceeds the default interval {}",
                    fmt_d(t.value.0),
                    fmt_d(interval)
                ),
            );
        }
    }
    let body_limit = d
        .body_limit
        .as_ref()
        .map(|b| b.value.0)
        .unwrap_or(DEFAULT_BODY_LIMIT);
    if let Some(b) = &d.body_limit {
        body_limit_in(ctx, b, "defaults.body_limit");
    }
    Defaults {
        interval,
        timeout,
        body_limit,
    }
}

fn checks_of(
    ctx: &mut Ctx,
    defs: &[CheckDef],
    defaults: &Defaults,
    seen: &mut HashMap<String, Origin>,
    out: &mut Vec<Arc<Check>>,
) {
    for (i, def) in defs.iter().enumerate() {
        let key = format!("checks[{i}]");
        let name = &def.name.value;
        if seen.len() >= limits::MAX_CHECKS && !seen.contains_key(name) {
            ctx.err(
                &def.name.referenced,
                format!("{key}.name"),
                format!(
                    "more than {} checks in the configuration: at most {} are allowed",
                    limits::MAX_CHECKS,
                    limits::MAX_CHECKS
                ),
            );
            return;
        }
        if !valid_name(name) {
            ctx.err(
                &def.name.referenced,
                format!("{key}.name"),
                format!("invalid check name {name:?}: use lowercase letters, digits, - and _, starting with a letter or digit"),
            );
        }
        let origin = ctx.origin(&def.name.referenced);
        if let Some(first) = seen.get(name) {
            ctx.err(
                &def.name.referenced,
                format!("{key}.name"),
                format!("duplicate check name {name:?} (first defined at {first})"),
            );
        } else {
            seen.insert(name.clone(), origin.clone());
        }
        if let Some(c) = check(ctx, def, &key, defaults, origin) {
            out.push(Arc::new(c));
        }
    }
}

fn check(
    ctx: &mut Ctx,
    def: &CheckDef,
    key: &str,
    defaults: &Defaults,
    origin: Origin,
) -> Option<Check> {
    let n_before = ctx.errors.len();
    // Validated first: its grace sets the default interval.
    let heartbeat = def
        .heartbeat
        .as_ref()
        .map(|h| heartbeat(ctx, &h.value, &format!("{key}.heartbeat"), &h.referenced));
    let interval = def.interval.as_ref().map(|d| d.value.0).unwrap_or_else(|| {
        match &heartbeat {
            // Lateness is noticed within one interval: at most the grace, at least 1s.
            Some(Some(h)) => defaults.interval.min(h.grace).max(Duration::from_secs(1)),
            _ => defaults.interval,
        }
    });
    ctx.dur_in(
        def.interval.as_ref(),
        &format!("{key}.interval"),
        limits::INTERVAL,
    );
    let timeout = match &def.timeout {
        Some(t) => {
            if t.value.0.is_zero() {
                ctx.err(
                    &t.referenced,
                    format!("{key}.timeout"),
                    "must be greater than 0",
                );
            } else if t.value.0 > interval {
                ctx.err(
                    &t.referenced,
                    format!("{key}.timeout"),
                    format!("timeout {} exceeds interval {} (a run must end before the next one is due)", fmt_d(t.value.0), fmt_d(interval)),
                );
            }
            t.value.0
        }
        None => defaults.timeout.min(interval),
    };
    ctx.count(
        def.labels.len(),
        limits::MAX_LABELS,
        &def.name.referenced,
        &format!("{key}.labels"),
        "labels",
    );
    for l in def.labels.keys() {
        if !valid_label(l) {
            ctx.err(
                &def.name.referenced,
                format!("{key}.labels"),
                format!("invalid label name {l:?}: use [a-zA-Z_][a-zA-Z0-9_]*"),
            );
        }
    }
    if !ctx.count(
        def.alerts.len(),
        limits::MAX_ALERTS,
        &def.name.referenced,
        &format!("{key}.alerts"),
        "alert rules",
    ) {
        return None;
    }
    let given: Vec<&str> = [
        ("http", def.http.is_some()),
        ("tcp", def.tcp.is_some()),
        ("queue", def.queue.is_some()),
        ("heartbeat", def.heartbeat.is_some()),
    ]
    .iter()
    .filter(|(_, set)| *set)
    .map(|(k, _)| *k)
    .collect();
    let kind = match given.as_slice() {
        [] => {
            ctx.err(
                &def.name.referenced,
                key,
                format!(
                    "check {:?} has no kind: add one of http, tcp, queue, heartbeat",
                    def.name.value
                ),
            );
            None
        }
        ["http"] => def.http.as_ref().and_then(|h| {
            http(
                ctx,
                &h.value,
                &format!("{key}.http"),
                defaults,
                &h.referenced,
            )
            .map(|h| CheckKind::Http(Arc::new(h)))
        }),
        ["tcp"] => def
            .tcp
            .as_ref()
            .and_then(|t| tcp(ctx, &t.value, &format!("{key}.tcp")).map(CheckKind::Tcp)),
        ["queue"] => def.queue.as_ref().and_then(|q| {
            queue(ctx, &q.value, &format!("{key}.queue"), timeout)
                .map(|q| CheckKind::Queue(Arc::new(q)))
        }),
        ["heartbeat"] => heartbeat
            .flatten()
            .map(|h| CheckKind::Heartbeat(Arc::new(h))),
        several => {
            ctx.err(
                &def.name.referenced,
                key,
                format!(
                    "a check has exactly one kind, this one has {}",
                    several.join(" and ")
                ),
            );
            None
        }
    };
    let kind = kind?;
    let alerts = alerts(ctx, &def.alerts, key, &kind, &def.labels);
    if ctx.errors.len() > n_before {
        return None;
    }
    Some(Check {
        name: def.name.value.clone(),
        interval,
        timeout,
        labels: def.labels.clone(),
        kind,
        alerts,
        origin,
    })
}

fn tls(ctx: &mut Ctx, t: Option<&TlsDef>, key: &str) -> TlsSettings {
    let Some(t) = t else {
        return TlsSettings::default();
    };
    let ca_file = t
        .ca_file
        .as_ref()
        .and_then(|p| ctx.path(p, &format!("{key}.ca_file")));
    let cert_file = t
        .cert_file
        .as_ref()
        .and_then(|p| ctx.path(p, &format!("{key}.cert_file")));
    let key_file = t
        .key_file
        .as_ref()
        .and_then(|p| ctx.path(p, &format!("{key}.key_file")));
    match (&t.cert_file, &t.key_file) {
        (Some(c), None) => ctx.err(
            &c.referenced,
            format!("{key}.cert_file"),
            "cert_file needs key_file",
        ),
        (None, Some(k)) => ctx.err(
            &k.referenced,
            format!("{key}.key_file"),
            "key_file needs cert_file",
        ),
        _ => {}
    }
    TlsSettings {
        insecure_skip_verify: t.insecure_skip_verify,
        ca_file,
        cert_file,
        key_file,
        server_name: t.server_name.as_ref().map(|s| s.value.clone()),
    }
}

fn tcp(ctx: &mut Ctx, t: &TcpDef, key: &str) -> Option<TcpCheck> {
    let target = &t.target.value;
    // The tcp probe's own parser: what loads here is exactly what the probe can dial.
    // Its error says what is wrong (no port, port 0, invalid host...).
    if let Err(e) = crate::probe::tcp::parse_target(target) {
        ctx.err(&t.target.referenced, format!("{key}.target"), e.to_string());
    }
    if t.tls_config.is_some() && !t.tls {
        let loc = t.target.referenced;
        ctx.err(
            &loc,
            format!("{key}.tls_config"),
            "tls_config is set but tls is false",
        );
    }
    let tls = t
        .tls
        .then(|| tls(ctx, t.tls_config.as_ref(), &format!("{key}.tls_config")));
    ctx.int_in(
        t.cert_min_days.as_ref(),
        &format!("{key}.cert_min_days"),
        0,
        limits::MAX_CERT_MIN_DAYS,
    );
    if let (Some(d), false) = (&t.cert_min_days, t.tls) {
        ctx.err(
            &d.referenced,
            format!("{key}.cert_min_days"),
            "cert_min_days needs tls: true",
        );
    }
    Some(TcpCheck {
        target: target.clone(),
        tls,
        cert_min_days: t.cert_min_days.as_ref().map(|d| d.value),
    })
}

fn queue(ctx: &mut Ctx, q: &QueueDef, key: &str, timeout: Duration) -> Option<QueueCheck> {
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
    let redis = ctx.template(&q.redis, &format!("{key}.redis"));
    if let Some(t) = &redis {
        if let Some(v) = t.variables().next() {
            ctx.err(
                &q.redis.referenced,
                format!("{key}.redis"),
                format!("${{{v}}}: the redis URL takes secrets (${{env:..}}, ${{file:..}}) but no run-time variables"),
            );
        } else if let Err(e) = t
            .render(|_| None)
            .map_err(|_| "undefined variable".to_string())
            .and_then(|url| crate::probe::queue::conn::check_url(&url))
        {
            // The message is built from the URL's structure, never its password.
            ctx.err(
                &q.redis.referenced,
                format!("{key}.redis"),
                format!(
                    "invalid redis URL {:?}: {e}",
                    crate::probe::queue::conn::without_password(t.redacted())
                ),
            );
        }
    }
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
    let connect_timeout = match &q.connect_timeout {
        Some(d) if d.value.0.is_zero() => {
            ctx.err(
                &d.referenced,
                format!("{key}.connect_timeout"),
                "must be greater than 0",
            );
            timeout
        }
        Some(d) if d.value.0 > timeout => {
            ctx.err(
                &d.referenced,
                format!("{key}.connect_timeout"),
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

fn heartbeat(
    ctx: &mut Ctx,
    h: &HeartbeatDef,
    key: &str,
    at: &Location,
) -> Option<crate::probe::heartbeat::HeartbeatSpec> {
    use crate::probe::heartbeat::{default_grace, parse_cron, HeartbeatSpec, Schedule};
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

fn http(
    ctx: &mut Ctx,
    h: &HttpDef,
    key: &str,
    defaults: &Defaults,
    at: &Location,
) -> Option<HttpSpec> {
    let base_url = h
        .base_url
        .as_ref()
        .and_then(|b| match Url::parse(&b.value) {
            Ok(u) if has_userinfo(&u) => {
                ctx.err(&b.referenced, format!("{key}.base_url"), USERINFO);
                None
            }
            Ok(u) if u.port() == Some(0) => {
                ctx.err(
                    &b.referenced,
                    format!("{key}.base_url"),
                    format!("invalid URL {:?}: port 0 cannot be connected to", b.value),
                );
                None
            }
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            Ok(u) => {
                ctx.err(
                    &b.referenced,
                    format!("{key}.base_url"),
                    format!(
                        "unsupported URL {:?}: only http and https with a host",
                        u.as_str()
                    ),
                );
                None
            }
            Err(e) => {
                ctx.err(
                    &b.referenced,
                    format!("{key}.base_url"),
                    format!("invalid URL {:?}: {e}", b.value),
                );
                None
            }
        });
    let follow = h.follow_redirects.unwrap_or(true);
    let mut steps = Vec::new();
    match (&h.request, &h.steps) {
        (Some(_), Some(s)) => {
            ctx.err(
                &s.referenced,
                format!("{key}.steps"),
                "write either request (one request) or steps (a flow), not both",
            );
        }
        (None, None) => ctx.err(at, key, "http needs a request or steps"),
        (Some(r), None) => {
            let parts = StepParts {
                name: "request".into(),
                prefix: key.to_string(),
                request: &r.value,
                expect: h.expect.as_ref(),
                extract: &h.extract,
                always_run: false,
                continue_on_failure: false,
            };
            steps.extend(step(
                ctx,
                parts,
                base_url.is_some(),
                follow,
                &mut builtins(),
            ));
        }
        (None, Some(s)) => {
            if h.expect.is_some() || !h.extract.is_empty() {
                ctx.err(
                    &s.referenced,
                    format!("{key}.expect"),
                    "with steps, put expect and extract inside each step",
                );
            }
            if s.value.is_empty() {
                ctx.err(&s.referenced, format!("{key}.steps"), "steps is empty");
            }
            if !ctx.count(
                s.value.len(),
                limits::MAX_STEPS,
                &s.referenced,
                &format!("{key}.steps"),
                "steps",
            ) {
                return None;
            }
            let mut known = builtins();
            let mut names = HashSet::new();
            for (i, st) in s.value.iter().enumerate() {
                let skey = format!("{key}.steps[{i}]");
                let name = &st.name.value;
                if !valid_name(name) {
                    ctx.err(
                        &st.name.referenced,
                        format!("{skey}.name"),
                        format!(
                            "invalid step name {name:?}: use lowercase letters, digits, - and _"
                        ),
                    );
                } else if !names.insert(name.clone()) {
                    ctx.err(
                        &st.name.referenced,
                        format!("{skey}.name"),
                        format!("duplicate step name {name:?}"),
                    );
                }
                let parts = StepParts {
                    name: name.clone(),
                    prefix: skey,
                    request: &st.request.value,
                    expect: st.expect.as_ref(),
                    extract: &st.extract,
                    always_run: st.always_run,
                    continue_on_failure: st.continue_on_failure,
                };
                steps.extend(step(ctx, parts, base_url.is_some(), follow, &mut known));
            }
        }
    }
    let tls = tls(ctx, h.tls_config.as_ref(), &format!("{key}.tls_config"));
    let body_limit = h
        .body_limit
        .as_ref()
        .map(|b| b.value.0)
        .unwrap_or(defaults.body_limit);
    if let Some(b) = &h.body_limit {
        body_limit_in(ctx, b, &format!("{key}.body_limit"));
    }
    let max_redirects = h.max_redirects.as_ref().map(|m| m.value).unwrap_or(10);
    if let Some(m) = &h.max_redirects {
        if m.value > 100 {
            ctx.err(&m.referenced, format!("{key}.max_redirects"), "at most 100");
        }
    }
    Some(HttpSpec {
        base_url,
        steps,
        tls,
        body_limit: usize::try_from(body_limit).unwrap_or(usize::MAX),
        max_redirects,
    })
}

/// One step as written. The single-request form is a step named `request` whose keys sit
/// directly under `http`, so both forms are validated by [`step`].
struct StepParts<'a> {
    name: String,
    /// Key path that `request`, `expect` and `extract` hang from (for messages).
    prefix: String,
    request: &'a RequestDef,
    expect: Option<&'a ExpectDef>,
    extract: &'a BTreeMap<String, Spanned<ExtractDef>>,
    always_run: bool,
    continue_on_failure: bool,
}

/// Validates one step; variables it extracts become known to the steps after it.
fn step(
    ctx: &mut Ctx,
    p: StepParts,
    has_base: bool,
    follow: bool,
    known: &mut HashSet<String>,
) -> Option<StepSpec> {
    let prefix = &p.prefix;
    let request = request(
        ctx,
        p.request,
        &format!("{prefix}.request"),
        has_base,
        known,
    );
    let expect = expect_spec(ctx, p.expect, &format!("{prefix}.expect"));
    let extract = extracts(ctx, p.extract, &format!("{prefix}.extract"), known);
    Some(StepSpec {
        name: p.name,
        request: request?,
        expect: expect?,
        extract,
        always_run: p.always_run,
        continue_on_failure: p.continue_on_failure,
        follow_redirects: p.request.follow_redirects.unwrap_or(follow),
        timeout: p.request.timeout.as_ref().map(|t| t.value.0),
    })
}

fn builtins() -> HashSet<String> {
    ["base_url", "uuid", "now"]
        .into_iter()
        .map(String::from)
        .collect()
}

fn request(
    ctx: &mut Ctx,
    r: &RequestDef,
    key: &str,
    has_base: bool,
    known: &HashSet<String>,
) -> Option<RequestSpec> {
    let n_before = ctx.errors.len();
    let method = match &r.method {
        None => Method::GET,
        Some(m) => {
            let up = m.value.trim().to_ascii_uppercase();
            match up.as_str() {
                "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS" => {
                    Method::from_bytes(up.as_bytes()).ok()?
                }
                _ => {
                    ctx.err(&m.referenced, format!("{key}.method"), format!("invalid method {:?}: use GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS", m.value));
                    Method::GET
                }
            }
        }
    };
    let url = ctx.template(&r.url, &format!("{key}.url"));
    if let Some(u) = &url {
        check_vars(ctx, u, &r.url.referenced, &format!("{key}.url"), known);
        // A URL whose scheme and host are written literally is checked now. Schemes are
        // case-insensitive (`HTTP://` is http).
        let text = u.redacted();
        let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            let probe = text.replace("${", "x").replace('}', "");
            match Url::parse(&probe) {
                Err(e) => ctx.err(
                    &r.url.referenced,
                    format!("{key}.url"),
                    format!("invalid URL {:?}: {e}", text),
                ),
                Ok(parsed) if has_userinfo(&parsed) => {
                    ctx.err(&r.url.referenced, format!("{key}.url"), USERINFO)
                }
                Ok(parsed) if parsed.port() == Some(0) => ctx.err(
                    &r.url.referenced,
                    format!("{key}.url"),
                    format!("invalid URL {text:?}: port 0 cannot be connected to"),
                ),
                Ok(_) => {}
            }
        } else if let Some((scheme, _)) = text.split_once("://") {
            ctx.err(
                &r.url.referenced,
                format!("{key}.url"),
                format!("unsupported scheme {scheme:?}: only http and https"),
            );
        } else if !text.starts_with('/') && !text.starts_with("${") {
            ctx.err(
                &r.url.referenced,
                format!("{key}.url"),
                format!(
                    "invalid URL {text:?}: write an absolute http(s) URL or a path starting with /"
                ),
            );
        } else if !has_base && text.starts_with('/') {
            ctx.err(
                &r.url.referenced,
                format!("{key}.url"),
                format!("relative URL {text:?} needs http.base_url"),
            );
        }
    }
    for (what, n, loc) in [
        ("headers", r.headers.len(), r.headers.values().next()),
        ("query", r.query.len(), r.query.values().next()),
        (
            "form",
            r.form.as_ref().map_or(0, BTreeMap::len),
            r.form.as_ref().and_then(|f| f.values().next()),
        ),
    ] {
        if let Some(first) = loc {
            ctx.count(
                n,
                limits::MAX_ENTRIES,
                &first.referenced,
                &format!("{key}.{what}"),
                &format!("{what} entries"),
            );
        }
    }
    let mut headers = Vec::new();
    for (name, v) in &r.headers {
        let hkey = format!("{key}.headers.{name}");
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) => {
                if let Some(t) = ctx.template(v, &hkey) {
                    check_vars(ctx, &t, &v.referenced, &hkey, known);
                    header_value(ctx, &t, v, &hkey);
                    headers.push((h, t));
                }
            }
            Err(_) => ctx.err(&v.referenced, hkey, format!("invalid header name {name:?}")),
        }
    }
    let mut query = Vec::new();
    for (name, v) in &r.query {
        let qkey = format!("{key}.query.{name}");
        if let Some(t) = ctx.template(v, &qkey) {
            check_vars(ctx, &t, &v.referenced, &qkey, known);
            query.push((name.clone(), t));
        }
    }
    let bodies = [r.body.is_some(), r.form.is_some(), r.json.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if bodies > 1 {
        ctx.err(
            &r.url.referenced,
            key,
            "write at most one of body, form, json",
        );
    }
    let body = if let Some(b) = &r.body {
        ctx.template(b, &format!("{key}.body"))
            .map(BodySpec::Raw)
            .unwrap_or(BodySpec::None)
    } else if let Some(form) = &r.form {
        let mut fields = Vec::new();
        for (name, v) in form {
            let fkey = format!("{key}.form.{name}");
            if let Some(t) = ctx.template(v, &fkey) {
                check_vars(ctx, &t, &v.referenced, &fkey, known);
                fields.push((name.clone(), t));
            }
        }
        BodySpec::Form(fields)
    } else if let Some(j) = &r.json {
        json_template(ctx, &j.value, &j.referenced, &format!("{key}.json"), known)
            .map(BodySpec::Json)
            .unwrap_or(BodySpec::None)
    } else {
        BodySpec::None
    };
    if let Some(t) = &r.timeout {
        if t.value.0.is_zero() {
            ctx.err(
                &t.referenced,
                format!("{key}.timeout"),
                "must be greater than 0",
            );
        } else {
            ctx.dur_in(Some(t), &format!("{key}.timeout"), limits::TIMEOUT);
        }
    }
    if ctx.errors.len() > n_before {
        return None;
    }
    Some(RequestSpec {
        method,
        url: url?,
        headers,
        query,
        body,
    })
}

/// The error for `https://user:pass@host/`: the http probe does not send URL credentials.
const USERINFO: &str = "the URL carries a user name or password (user:pass@host), which would not be sent: put credentials in an Authorization header instead";

fn has_userinfo(u: &Url) -> bool {
    !u.username().is_empty() || u.password().is_some()
}

fn json_template(
    ctx: &mut Ctx,
    v: &serde_json::Value,
    loc: &Location,
    key: &str,
    known: &HashSet<String>,
) -> Option<JsonTemplate> {
    Some(match v {
        serde_json::Value::String(s) => {
            let t = match Template::parse(s, &ctx.dir) {
                Ok(t) => t,
                Err(e) => {
                    ctx.err(loc, key, e);
                    return None;
                }
            };
            check_vars(ctx, &t, loc, key, known);
            JsonTemplate::String(t)
        }
        serde_json::Value::Array(a) => JsonTemplate::Array(
            a.iter()
                .map(|x| json_template(ctx, x, loc, key, known))
                .collect::<Option<Vec<_>>>()?,
        ),
        serde_json::Value::Object(o) => JsonTemplate::Object(
            o.iter()
                .map(|(k, x)| {
                    json_template(ctx, x, loc, &format!("{key}.{k}"), known).map(|t| (k.clone(), t))
                })
                .collect::<Option<Vec<_>>>()?,
        ),
        other => JsonTemplate::Scalar(other.clone()),
    })
}

fn check_vars(ctx: &mut Ctx, t: &Template, loc: &Location, key: &str, known: &HashSet<String>) {
    for v in t.variables() {
        if !known.contains(v) {
            ctx.err(loc, key, format!("undefined variable ${{{v}}}: no earlier step extracts it and it is not a built-in (base_url, uuid, now)"));
        }
    }
}

fn extracts(
    ctx: &mut Ctx,
    defs: &BTreeMap<String, Spanned<ExtractDef>>,
    key: &str,
    known: &mut HashSet<String>,
) -> Vec<ExtractSpec> {
    let mut out = Vec::new();
    if let Some(first) = defs.values().next() {
        if !ctx.count(
            defs.len(),
            limits::MAX_ENTRIES,
            &first.referenced,
            key,
            "extractions",
        ) {
            return out;
        }
    }
    for (var, def) in defs {
        let ekey = format!("{key}.{var}");
        let loc = def.referenced;
        let d = &def.value;
        if !super::template::is_var_name(var) || builtins().contains(var) {
            ctx.err(&loc, &ekey, format!("invalid variable name {var:?}"));
            continue;
        }
        let n = [
            d.regex.is_some(),
            d.css.is_some(),
            d.json.is_some(),
            d.header.is_some(),
            d.cookie.is_some(),
            d.status.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if n != 1 {
            ctx.err(
                &loc,
                &ekey,
                "an extraction has exactly one source: regex, css, json, header, cookie or status",
            );
            continue;
        }
        if d.attr.is_some() && d.css.is_none() {
            ctx.err(&loc, format!("{ekey}.attr"), "attr goes with css");
            continue;
        }
        let source = if let Some(r) = &d.regex {
            ctx.regex(&r.value, &r.referenced, &format!("{ekey}.regex"))
                .map(ExtractSource::Regex)
        } else if let Some(c) = &d.css {
            // Bounded before parsing: the parser recurses once per nesting level and 1,000
            // nested `:not(` overflow the stack.
            let too_big = css_too_big(&c.value);
            if let Some(message) = too_big {
                ctx.err(&c.referenced, format!("{ekey}.css"), message);
                None
            } else {
                match scraper::Selector::parse(&c.value) {
                    Ok(selector) => Some(ExtractSource::Css {
                        selector,
                        src: c.value.clone(),
                        attr: d.attr.clone(),
                    }),
                    Err(e) => {
                        ctx.err(
                            &c.referenced,
                            format!("{ekey}.css"),
                            format!("invalid CSS selector {:?}: {}", c.value, css_error(&e)),
                        );
                        None
                    }
                }
            }
        } else if let Some(j) = &d.json {
            ctx.jsonpath(&j.value, &j.referenced, &format!("{ekey}.json"))
                .map(|path| ExtractSource::Json {
                    path,
                    src: j.value.clone(),
                })
        } else if let Some(h) = &d.header {
            match HeaderName::from_bytes(h.as_bytes()) {
                Ok(h) => Some(ExtractSource::Header(h)),
                Err(_) => {
                    ctx.err(
                        &loc,
                        format!("{ekey}.header"),
                        format!("invalid header name {h:?}"),
                    );
                    None
                }
            }
        } else if let Some(c) = &d.cookie {
            Some(ExtractSource::Cookie(c.clone()))
        } else {
            Some(ExtractSource::Status)
        };
        if let Some(source) = source {
            known.insert(var.clone());
            out.push(ExtractSpec {
                var: var.clone(),
                source,
            });
        }
    }
    out
}

/// Why a selector is too long or nests too deeply to be parsed, if it is.
fn css_too_big(s: &str) -> Option<String> {
    if s.len() > limits::MAX_CSS_LEN {
        return Some(format!(
            "CSS selector of {} bytes: at most {} are allowed",
            s.len(),
            limits::MAX_CSS_LEN
        ));
    }
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut quote = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (_, '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '(' | '[') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (None, ')' | ']') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    (deepest > limits::MAX_CSS_NESTING).then(|| {
        format!(
            "CSS selector nests ( and [ {deepest} deep: at most {} levels are allowed",
            limits::MAX_CSS_NESTING
        )
    })
}

/// A selector parse error in words (the parser's own names, such as
/// `NoQualifiedNameInAttributeSelector(SquareBracketBlock)`, mean nothing to a reader).
fn css_error(e: &scraper::error::SelectorErrorKind) -> String {
    use scraper::error::SelectorErrorKind as K;
    let tok = |t: &dyn std::fmt::Debug| css_token(&format!("{t:?}"));
    match e {
        K::UnexpectedToken(t) => format!("unexpected {}", tok(t)),
        K::EndOfLine => "the selector ends too early".into(),
        K::ExpectedColonOnPseudoElement(t) => {
            format!("expected : in a pseudo-element, found {}", tok(t))
        }
        K::ExpectedIdentityOnPseudoElement(t) => {
            format!("expected a name after ::, found {}", tok(t))
        }
        K::UnexpectedSelectorParseError(kind) => {
            // The parser's error kinds are not nameable from here: read their debug form,
            // `Name(argument)`.
            let debug = format!("{kind:?}");
            let (name, arg) = match debug.split_once('(') {
                Some((n, rest)) => (n, rest.strip_suffix(')').unwrap_or(rest)),
                None => (debug.as_str(), ""),
            };
            let t = css_token(arg);
            match name {
                "NoQualifiedNameInAttributeSelector" => {
                    format!("expected an attribute name in [...], found {t}")
                }
                "EmptySelector" => "empty selector".into(),
                "DanglingCombinator" => {
                    "a combinator (>, +, ~ or a space) has nothing after it".into()
                }
                "NonCompoundSelector" => "a compound selector is required here".into(),
                "UnexpectedTokenInAttributeSelector" => {
                    format!("unexpected {t} in an attribute selector")
                }
                "PseudoElementExpectedColon" => {
                    format!("expected : in a pseudo-element, found {t}")
                }
                "PseudoElementExpectedIdent" | "NoIdentForPseudo" => {
                    format!("expected a pseudo-class name after :, found {t}")
                }
                "UnsupportedPseudoClassOrElement" => {
                    format!("unsupported pseudo-class or pseudo-element {arg}")
                }
                "UnexpectedIdent" => format!("unexpected name {arg}"),
                "ExpectedNamespace" => format!("unknown namespace {arg}"),
                "ExpectedBarInAttr" => format!("expected | in an attribute selector, found {t}"),
                "BadValueInAttr" => format!("invalid value {t} in an attribute selector"),
                "InvalidQualNameInAttr" => format!("invalid attribute name {t}"),
                "ExplicitNamespaceUnexpectedToken" => format!("unexpected {t} after a namespace"),
                "ClassNeedsIdent" => format!("expected a class name after ., found {t}"),
                _ => debug.clone(),
            }
        }
        other => other
            .to_string()
            .lines()
            .next()
            .unwrap_or("parse error")
            .to_string(),
    }
}

/// A css token as the reader wrote it, from its debug name (`Delim('>')` → `'>'`).
fn css_token(debug: &str) -> String {
    let named = [
        ("SquareBracketBlock", "["),
        ("ParenthesisBlock", "("),
        ("CurlyBracketBlock", "{"),
        ("CloseSquareBracket", "]"),
        ("CloseParenthesis", ")"),
        ("CloseCurlyBracket", "}"),
        ("Colon", ":"),
        ("Semicolon", ";"),
        ("Comma", ","),
        ("IncludeMatch", "~="),
        ("DashMatch", "|="),
        ("PrefixMatch", "^="),
        ("SubstringMatch", "*="),
        ("SuffixMatch", "$="),
    ];
    if let Some((_, t)) = named.iter().find(|(n, _)| *n == debug) {
        return format!("'{t}'");
    }
    if debug.starts_with("WhiteSpace") {
        return "a space".into();
    }
    if let Some(inner) = debug
        .strip_prefix("Delim(")
        .and_then(|r| r.strip_suffix(')'))
    {
        return inner.to_string();
    }
    for prefix in [
        "Ident(",
        "Function(",
        "QuotedString(",
        "AtKeyword(",
        "Hash(",
        "IDHash(",
    ] {
        if let Some(inner) = debug.strip_prefix(prefix).and_then(|r| r.strip_suffix(')')) {
            return inner.to_string();
        }
    }
    debug.to_string()
}

fn expect_spec(ctx: &mut Ctx, e: Option<&ExpectDef>, key: &str) -> Option<ExpectSpec> {
    let Some(e) = e else {
        return Some(ExpectSpec::default());
    };
    let n_before = ctx.errors.len();
    let mut spec = ExpectSpec::default();
    if let Some(s) = &e.status {
        spec.status = s.value.0.iter().map(|r| (r.0, r.1)).collect();
    }
    spec.body_contains = e.body_contains.clone().map(|o| o.0).unwrap_or_default();
    spec.body_not_contains = e.body_not_contains.clone().map(|o| o.0).unwrap_or_default();
    if let Some(rs) = &e.body_regex {
        for r in &rs.value.0 {
            if let Some(re) = ctx.regex(r, &rs.referenced, &format!("{key}.body_regex")) {
                spec.body_regex.push(re);
            }
        }
    }
    for (name, v) in &e.header {
        match HeaderName::from_bytes(name.0.value.as_bytes()) {
            Ok(h) => spec.headers.push((h, v.clone())),
            Err(_) => ctx.err(
                &name.0.referenced,
                format!("{key}.header"),
                format!("invalid header name {:?}", name.0.value),
            ),
        }
    }
    for (path, want) in &e.json {
        let jkey = format!("{key}.json.{}", path.0.value);
        let Some(compiled) = ctx.jsonpath(&path.0.value, &path.0.referenced, &jkey) else {
            continue;
        };
        let op = match &want.value {
            JsonExpect::Equals(v) => Some(JsonOp::Equals(v.clone())),
            JsonExpect::Ops(ops) => {
                let n = [
                    ops.equals.is_some(),
                    ops.exists.is_some(),
                    ops.matches.is_some(),
                    ops.less_than.is_some(),
                    ops.greater_than.is_some(),
                ]
                .iter()
                .filter(|b| **b)
                .count();
                if n != 1 {
                    ctx.err(&want.referenced, &jkey, "write one operator per JSON assertion (equals, exists, matches, less_than or greater_than)");
                    None
                } else if let Some(v) = &ops.equals {
                    Some(JsonOp::Equals(v.clone()))
                } else if let Some(b) = ops.exists {
                    Some(JsonOp::Exists(b))
                } else if let Some(m) = &ops.matches {
                    ctx.regex(m, &want.referenced, &format!("{jkey}.matches"))
                        .map(JsonOp::Matches)
                } else if let Some(x) = ops.less_than {
                    Some(JsonOp::LessThan(x))
                } else {
                    ops.greater_than.map(JsonOp::GreaterThan)
                }
            }
        };
        if let Some(op) = op {
            spec.json.push(JsonAssertion {
                path_src: path.0.value.clone(),
                path: compiled,
                op,
            });
        }
    }
    if let Some(first) = e.json.keys().next() {
        ctx.count(
            e.json.len(),
            limits::MAX_ENTRIES,
            &first.0.referenced,
            &format!("{key}.json"),
            "JSON assertions",
        );
    }
    if let Some(first) = e.header.keys().next() {
        ctx.count(
            e.header.len(),
            limits::MAX_ENTRIES,
            &first.0.referenced,
            &format!("{key}.header"),
            "expected headers",
        );
    }
    ctx.dur_in(
        e.max_duration.as_ref(),
        &format!("{key}.max_duration"),
        limits::TIMEOUT,
    );
    ctx.int_in(
        e.cert_min_days.as_ref(),
        &format!("{key}.cert_min_days"),
        0,
        limits::MAX_CERT_MIN_DAYS,
    );
    spec.max_duration = e.max_duration.as_ref().map(|d| d.value.0);
    spec.cert_min_days = e.cert_min_days.as_ref().map(|d| d.value);
    spec.cookies = e.cookie.clone().map(|o| o.0).unwrap_or_default();
    spec.url = e.url.as_ref().map(|u| u.value.clone());
    if ctx.errors.len() > n_before {
        return None;
    }
    Some(spec)
}

/// The alert variables a check provides, with their types.
pub fn var_type(kind: &CheckKind, name: &str) -> Result<Type, String> {
    match name {
        "failed" => return Ok(Type::Bool),
        "duration" => return Ok(Type::Duration),
        "reason" => return Ok(Type::String),
        _ => {}
    }
    match kind {
        CheckKind::Http(h) => {
            match name {
                "status" => return Ok(Type::Number),
                "failed_step" => return Ok(Type::String),
                "cert_expires_in" => return Ok(Type::Duration),
                _ => {}
            }
            if let Some(rest) = name.strip_prefix("step.") {
                let Some((step, field)) = rest.rsplit_once('.') else {
                    return Err(format!("unknown variable {name:?}: write step.<name>.duration, .status or .failed"));
                };
                if !h.steps.iter().any(|s| s.name == step) {
                    let names: Vec<&str> = h.steps.iter().map(|s| s.name.as_str()).collect();
                    return Err(format!("unknown step {step:?} (this check's steps: {})", names.join(", ")));
                }
                return match field {
                    "duration" => Ok(Type::Duration),
                    "status" => Ok(Type::Number),
                    "failed" => Ok(Type::Bool),
                    _ => Err(format!("unknown variable {name:?}: a step has duration, status and failed")),
                };
            }
            Err(format!(
                "unknown variable {name:?} for an http check (known: failed, duration, reason, status, failed_step, cert_expires_in, step.<name>.duration|status|failed)"
            ))
        }
        CheckKind::Tcp(_) => match name {
            "cert_expires_in" => Ok(Type::Duration),
            _ => Err(format!("unknown variable {name:?} for a tcp check (known: failed, duration, reason, cert_expires_in)")),
        },
        CheckKind::Queue(q) => match name {
            "depth" | "processed_rate" | "failed_rate" | "workers" | "busy" | "scheduled"
            | "retries" | "dead" => Ok(Type::Number),
            "oldest_age" => Ok(Type::Duration),
            "unreachable" => Ok(Type::Bool),
            _ => {
                if let Some(rest) = name.strip_prefix("queue.") {
                    if let Some(queue) = rest.strip_suffix(".depth") {
                        return match &q.queues {
                            Some(qs) if !qs.iter().any(|n| n == queue) => Err(format!(
                                "unknown queue {queue:?} (this check's queues: {})",
                                qs.join(", ")
                            )),
                            _ => Ok(Type::Number),
                        };
                    }
                }
                Err(format!("unknown variable {name:?} for a queue check (known: failed, duration, reason, depth, queue.<name>.depth, oldest_age, processed_rate, failed_rate, workers, busy, scheduled, retries, dead, unreachable)"))
            }
        },
        CheckKind::Heartbeat(_) => match name {
            "late" => Ok(Type::Bool),
            "since_last" | "running_for" => Ok(Type::Duration),
            "last_exit_code" => Ok(Type::Number),
            _ => Err(format!("unknown variable {name:?} for a heartbeat check (known: failed, duration, reason, late, since_last, running_for, last_exit_code)")),
        },
    }
}

/// The variables an annotation may name: what the alert engine fills in when it renders one
/// (`alert::engine`): fixed names, the alert's labels, the rule's literal annotations and the
/// check kind's alert variables. Anything else would ship the annotation unrendered.
fn annotation_vars(
    ctx: &mut Ctx,
    t: &Template,
    at: &Spanned<String>,
    key: &str,
    kind: &CheckKind,
    rule: &AlertDef,
    check_labels: &BTreeMap<String, String>,
) {
    const FIXED: [&str; 8] = [
        "check",
        "alert",
        "alertname",
        "severity",
        "reason",
        "failed_step",
        "value",
        "message",
    ];
    for v in t.variables() {
        let literal_annotation = rule
            .annotations
            .get(v)
            .is_some_and(|a| !a.value.contains("${"));
        if FIXED.contains(&v)
            || check_labels.contains_key(v)
            || rule.labels.contains_key(v)
            || literal_annotation
            || var_type(kind, v).is_ok()
        {
            continue;
        }
        let other = if rule.annotations.contains_key(v) {
            format!(" (annotation {v} is itself a template; only plain-text annotations can be referenced)")
        } else {
            String::new()
        };
        ctx.err(
            &at.referenced,
            key,
            format!(
                "unknown variable ${{{v}}} in an annotation{other}: use check, alert, severity, reason, failed_step, value, message, a label, another annotation or an alert variable of this {} check",
                kind.name()
            ),
        );
    }
}

fn alerts(
    ctx: &mut Ctx,
    defs: &[AlertDef],
    key: &str,
    kind: &CheckKind,
    check_labels: &BTreeMap<String, String>,
) -> Vec<AlertRule> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for (i, a) in defs.iter().enumerate() {
        let akey = format!("{key}.alerts[{i}]");
        let name = &a.name.value;
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            ctx.err(&a.name.referenced, format!("{akey}.name"), format!("invalid alert name {name:?}: use letters, digits and _, starting with a letter"));
        } else if !names.insert(name.clone()) {
            ctx.err(
                &a.name.referenced,
                format!("{akey}.name"),
                format!("duplicate alert name {name:?} in this check"),
            );
        }
        let expr = match expr::check(&a.when.value, &|v| var_type(kind, v)) {
            Ok(e) => Some(e),
            Err(e) => {
                let col = ctx.text_col(&a.when.referenced) + e.offset as u64;
                ctx.err_at(
                    a.when.referenced.line(),
                    col,
                    format!("{akey}.when"),
                    format!("{} in {:?}", e.message, excerpt(&a.when.value, 120)),
                );
                None
            }
        };
        let severity = match a.severity.as_ref().map(|s| s.value.as_str()) {
            None | Some("critical") => Severity::Critical,
            Some("error") => Severity::Error,
            Some("warning") => Severity::Warning,
            Some("info") => Severity::Info,
            Some(other) => {
                let loc = a
                    .severity
                    .as_ref()
                    .map(|s| s.referenced)
                    .unwrap_or(a.name.referenced);
                ctx.err(
                    &loc,
                    format!("{akey}.severity"),
                    format!("invalid severity {other:?}: use critical, error, warning or info"),
                );
                Severity::Critical
            }
        };
        if a.for_.is_some() as u8 + a.consecutive.is_some() as u8 + a.window.is_some() as u8 > 1 {
            ctx.err(
                &a.name.referenced,
                &akey,
                "use one of for, consecutive and window",
            );
        }
        if let Some(c) = &a.consecutive {
            if c.value == 0 {
                ctx.err(
                    &c.referenced,
                    format!("{akey}.consecutive"),
                    "must be at least 1",
                );
            } else {
                ctx.int_in(
                    Some(c),
                    &format!("{akey}.consecutive"),
                    1,
                    limits::MAX_CONSECUTIVE,
                );
            }
        }
        ctx.dur_in(a.for_.as_ref(), &format!("{akey}.for"), limits::ALERT_HOLD);
        ctx.dur_in(
            a.keep_firing_for.as_ref(),
            &format!("{akey}.keep_firing_for"),
            limits::ALERT_HOLD,
        );
        let window = a.window.as_ref().and_then(|w| {
            let parsed = w.value.split_once(" of ").and_then(|(n, m)| {
                Some((n.trim().parse::<u32>().ok()?, m.trim().parse::<u32>().ok()?))
            });
            match parsed {
                Some((n, m)) if n >= 1 && n <= m && m <= 1000 => Some((n, m)),
                _ => {
                    ctx.err(
                        &w.referenced,
                        format!("{akey}.window"),
                        format!(
                            "invalid window {:?}: write \"N of M\" with 1 <= N <= M <= 1000",
                            w.value
                        ),
                    );
                    None
                }
            }
        });
        ctx.count(
            a.labels.len(),
            limits::MAX_LABELS,
            &a.name.referenced,
            &format!("{akey}.labels"),
            "labels",
        );
        for l in a.labels.keys() {
            if !valid_label(l) {
                ctx.err(
                    &a.name.referenced,
                    format!("{akey}.labels"),
                    format!("invalid label name {l:?}"),
                );
            }
        }
        if let Some(first) = a.annotations.values().next() {
            ctx.count(
                a.annotations.len(),
                limits::MAX_ANNOTATIONS,
                &first.referenced,
                &format!("{akey}.annotations"),
                "annotations",
            );
        }
        let mut annotations = Vec::new();
        for (k, v) in &a.annotations {
            let ankey = format!("{akey}.annotations.{k}");
            if let Some(t) = ctx.template(v, &ankey) {
                if t.has_secret() {
                    ctx.err(
                        &v.referenced,
                        ankey,
                        "secrets are not allowed in annotations (they would be sent to receivers)",
                    );
                } else {
                    annotation_vars(ctx, &t, v, &ankey, kind, a, check_labels);
                    annotations.push((k.clone(), t));
                }
            }
        }
        if let Some(expr) = expr {
            out.push(AlertRule {
                name: name.clone(),
                when: a.when.value.clone(),
                expr,
                for_: a.for_.as_ref().map(|d| d.value.0),
                consecutive: a.consecutive.as_ref().map(|c| c.value),
                window,
                keep_firing_for: a.keep_firing_for.as_ref().map(|d| d.value.0),
                severity,
                labels: a.labels.clone(),
                annotations,
            });
        }
    }
    if defs.is_empty() {
        out.push(AlertRule {
            name: "CheckFailing".into(),
            when: "failed".into(),
            expr: expr::parse("failed").expect("valid default expression"),
            for_: None,
            consecutive: Some(3),
            window: None,
            keep_firing_for: None,
            severity: Severity::Critical,
            labels: BTreeMap::new(),
            annotations: vec![(
                "summary".into(),
                Template::parse("check ${check} failing: ${reason}", Path::new("."))
                    .expect("valid default summary"),
            )],
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The caps are what keeps the selector parser's recursion small: the deepest selector
    /// they allow parses on a 256 KiB stack (a tokio worker has 2 MiB).
    #[test]
    fn the_deepest_selector_within_the_caps_parses_on_a_small_stack() {
        let depth = limits::MAX_CSS_NESTING;
        let deepest = format!(
            "{}a{}",
            ":not(:is(".repeat(depth / 2),
            "))".repeat(depth / 2)
        );
        assert!(css_too_big(&deepest).is_none(), "{deepest}");
        let one_more = format!("[x]{}a{}", ":not(".repeat(depth + 1), ")".repeat(depth + 1));
        assert_eq!(
            css_too_big(&one_more).unwrap(),
            "CSS selector nests ( and [ 17 deep: at most 16 levels are allowed"
        );
        // Brackets inside quotes and escaped ones do not count.
        let quoted = format!("a[title=\"{}\"]", "(".repeat(100));
        assert!(css_too_big(&quoted).is_none());
        assert!(css_too_big(&"\\(".repeat(100)).is_none());
        let parsed = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || scraper::Selector::parse(&deepest).is_ok())
            .unwrap()
            .join()
            .unwrap();
        assert!(parsed);
    }
}
