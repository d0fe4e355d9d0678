//! A check as written (`CheckDef`: a name, timing, labels, exactly one kind's key, alert
//! rules) and as validated ([`Check`]), and the validation between them. The kind's key is
//! decoded and validated by the kind itself, through [`super::kinds`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;

use super::kind::AnyDef;
use super::kind::{CheckKind, KindCx};
use super::kinds;
use crate::config::ctx::*;
use crate::config::defaults::CheckDefaults;
use crate::config::files::decode;
use crate::config::limits;
use crate::config::model::{Capped, Dur};
use crate::config::rule::{self, AlertDef, AlertRule, KindVars};
use crate::config::schema::{self, add_rules, exactly_one, names, property_names, Count, Text};
use crate::config::{ConfigError, ConfigErrors, Origin};

/// One check, validated.
#[derive(Debug)]
pub struct Check {
    /// Unique name.
    pub name: String,
    /// Time between runs.
    pub interval: Duration,
    /// Bound on one run.
    pub timeout: Duration,
    /// Labels copied onto alerts.
    pub labels: BTreeMap<String, String>,
    /// What to probe.
    pub kind: CheckKind,
    /// Alert rules (a default `CheckFailing` when none is written).
    pub alerts: Vec<AlertRule>,
    /// Quick retries of a failed attempt within the same interval (none: `count` 0).
    pub retries: Retries,
    /// The checks this one depends on (`depends_on:`): while one of them fails, this check's
    /// pages are held. Names are checked against the whole configuration by the loader.
    pub depends_on: Vec<Dependency>,
    /// Where it was defined.
    pub origin: Origin,
}

/// One entry of `depends_on:`: a parent check's name, and where it was written (the loader
/// checks that the parent exists and that no cycle forms, once every file is read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The parent check's name.
    pub check: String,
    /// Where the name was written.
    pub at: Origin,
    /// Its key, for errors (`checks[3].depends_on[0]`).
    pub key: String,
}

/// `retries:` of a check, validated: a failed attempt is re-run up to `count` times, `delay`
/// apart, and the run's result is the last attempt's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retries {
    /// Re-runs after a failed attempt (0: none).
    pub count: u32,
    /// Wait between a failed attempt and the next one.
    pub delay: Duration,
}

/// `retries:` as written.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetriesDef {
    /// Re-runs of a failed attempt, 1 to 10.
    #[schemars(with = "Count", extend("minimum" = 1, "maximum" = 10))]
    pub count: Spanned<u32>,
    /// Wait between a failed attempt and the next one (default `0s`). All attempts and delays
    /// together must fit in the interval: `(count + 1) × timeout + count × delay <= interval`.
    #[schemars(with = "Option<Dur>")]
    pub delay: Option<Spanned<Dur>>,
}

/// A check file (`checks/*.yaml`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckFile {
    /// The checks in this file (at most 10000 in all files).
    #[serde(default)]
    #[schemars(with = "Option<Vec<CheckDef>>", extend("maxItems" = 10000))]
    pub checks: Capped<CheckDef, 10000>,
}

/// One check as written. Exactly one kind key must be set.
#[derive(Debug)]
pub struct CheckDef {
    /// Unique across all files.
    pub name: Spanned<String>,
    /// Time between runs.
    pub interval: Option<Spanned<Dur>>,
    /// Bound on a whole run.
    pub timeout: Option<Spanned<Dur>>,
    /// Labels copied onto alerts.
    pub labels: BTreeMap<String, String>,
    /// Every kind key written (one, when the check is valid), in file order.
    pub kinds: Vec<Box<dyn AnyDef>>,
    /// Alert rules.
    pub alerts: Vec<AlertDef>,
    /// Quick retries, and where the key was written.
    pub retries: Option<Spanned<RetriesDef>>,
    /// Parent checks, as written.
    pub depends_on: Vec<Spanned<String>>,
}

/// The keys of a check that are not a kind's, for the schema (and its descriptions).
#[derive(JsonSchema)]
#[allow(dead_code)]
struct CommonKeys {
    /// Unique across all files; `[a-z0-9][a-z0-9_-]*`.
    #[schemars(with = "Text", extend("pattern" = schema::NAME, "maxLength" = 128, "patternErrorMessage" = "lowercase letters, digits, - and _, starting with a letter or digit"))]
    name: String,
    /// Time between runs.
    #[schemars(with = "Option<Dur>")]
    interval: Option<Dur>,
    /// Bound on a whole run (all steps); must be <= interval.
    #[schemars(with = "Option<Dur>")]
    timeout: Option<Dur>,
    /// Labels copied onto alerts.
    #[schemars(with = "Option<BTreeMap<String, Text>>", extend("default" = {}))]
    labels: Option<BTreeMap<String, String>>,
    /// Alert rules (none: a default `CheckFailing`, failed 3 runs in a row, critical).
    #[schemars(with = "Option<Vec<AlertDef>>")]
    alerts: Option<Vec<AlertDef>>,
    /// Quick retries: a failed run is re-run up to `count` times, `delay` apart, within the
    /// same interval, before it counts as a failure; a run that passes on a retry passes, and
    /// `canary_check_retries_total` counts the retries. Not for heartbeat checks.
    #[schemars(with = "Option<RetriesDef>")]
    retries: Option<RetriesDef>,
    /// Checks this one depends on (at most 16, by name, in any check file): while one of them
    /// fails, this check's pages are held (the API and `canary_alert_suppressed` name the
    /// parent), and the parent's page lists its failing dependants. No cycles.
    #[schemars(with = "Option<Vec<CheckName>>", extend("maxItems" = 16, "uniqueItems" = true))]
    depends_on: Option<Vec<String>>,
}

/// A check's name where another check refers to it.
#[derive(JsonSchema)]
#[allow(dead_code)]
#[schemars(extend("pattern" = schema::NAME, "maxLength" = 128, "patternErrorMessage" = "a check name: lowercase letters, digits, - and _"))]
struct CheckName(Text);

/// `a, b or c`.
fn one_of(words: &[&str]) -> String {
    match words.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => words.join(""),
    }
}

/// Every key a check may have: the common ones and each kind's, for "unknown field" errors.
static FIELDS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let mut f = vec!["name", "interval", "timeout", "labels"];
    f.extend(kinds::KEYS);
    f.push("alerts");
    f.push("retries");
    f.push("depends_on");
    f
});

impl JsonSchema for CheckDef {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "CheckDef".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut schema = CommonKeys::json_schema(generator);
        schema.insert(
            "description".into(),
            format!(
                "One check. Exactly one kind key ({}) must be set.",
                kinds::KEYS
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
            .into(),
        );
        for (key, kind) in kinds::schemas(generator) {
            if let Some(props) = schema
                .ensure_object()
                .get_mut("properties")
                .and_then(|p| p.as_object_mut())
            {
                props.insert(key.to_string(), kind.to_value());
            }
        }
        schema.insert("additionalProperties".into(), false.into());
        if let Some(required) = schema.get_mut("required") {
            *required = serde_json::json!(["name"]);
        }
        property_names(
            &mut schema,
            "labels",
            names(schema::LABEL_NAME, "label names are [a-zA-Z_][a-zA-Z0-9_]*"),
        );
        add_rules(
            &mut schema,
            [exactly_one(
                kinds::KEYS,
                &format!("a check has exactly one kind: {}", one_of(kinds::KEYS)),
            )],
        );
        add_rules(
            &mut schema,
            kinds::no_retries().into_iter().map(|kind| {
                serde_json::json!({
                    "if": schema::set(kind),
                    "then": schema::unset("retries", &format!("a {kind} check cannot retry")),
                })
            }),
        );
        schema
    }
}

/// A key of a check, refused while it is decoded when it is none of [`FIELDS`] (so the error's
/// path names the key, as derived types' errors do).
struct FieldName(String);

impl<'de> Deserialize<'de> for FieldName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl Visitor<'_> for KeyVisitor {
            type Value = FieldName;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a check key")
            }

            fn visit_str<E: de::Error>(self, key: &str) -> Result<FieldName, E> {
                if FIELDS.contains(&key) {
                    Ok(FieldName(key.to_string()))
                } else {
                    Err(E::unknown_field(key, &FIELDS))
                }
            }
        }

        deserializer.deserialize_identifier(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for CheckDef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CheckVisitor;

        impl<'de> Visitor<'de> for CheckVisitor {
            type Value = CheckDef;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a check (a mapping with name and one kind)")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CheckDef, A::Error> {
                let mut name: Option<Spanned<String>> = None;
                let mut interval = None;
                let mut timeout = None;
                let mut labels = None;
                let mut alerts = None;
                let mut retries = None;
                let mut depends_on = None;
                let mut kinds_written: Vec<Box<dyn AnyDef>> = Vec::new();
                let mut seen_kinds: Vec<&'static str> = Vec::new();
                while let Some(key) = map.next_key::<FieldName>()? {
                    let FieldName(key) = key;
                    fn once<T, E: de::Error>(slot: &Option<T>, key: &'static str) -> Result<(), E> {
                        match slot {
                            Some(_) => Err(E::duplicate_field(key)),
                            None => Ok(()),
                        }
                    }
                    match key.as_str() {
                        "name" => {
                            once(&name, "name")?;
                            name = Some(map.next_value()?);
                        }
                        "interval" => {
                            once(&interval, "interval")?;
                            interval = Some(map.next_value::<Option<Spanned<Dur>>>()?);
                        }
                        "timeout" => {
                            once(&timeout, "timeout")?;
                            timeout = Some(map.next_value::<Option<Spanned<Dur>>>()?);
                        }
                        "labels" => {
                            once(&labels, "labels")?;
                            labels = Some(map.next_value::<BTreeMap<String, String>>()?);
                        }
                        "alerts" => {
                            once(&alerts, "alerts")?;
                            alerts = Some(map.next_value::<Vec<AlertDef>>()?);
                        }
                        "retries" => {
                            once(&retries, "retries")?;
                            retries = Some(map.next_value::<Option<Spanned<RetriesDef>>>()?);
                        }
                        "depends_on" => {
                            once(&depends_on, "depends_on")?;
                            depends_on = Some(
                                map.next_value::<Option<Capped<Spanned<String>, { limits::MAX_DEPENDS_ON }>>>()?
                                    .map(|c| c.0)
                                    .unwrap_or_default(),
                            );
                        }
                        other => {
                            let Some(&kind_key) = kinds::KEYS.iter().find(|k| **k == other) else {
                                unreachable!("FieldName lets only known keys through");
                            };
                            if seen_kinds.contains(&kind_key) {
                                return Err(de::Error::duplicate_field(kind_key));
                            }
                            seen_kinds.push(kind_key);
                            if let Some(Some(def)) = kinds::decode(other, &mut map)? {
                                kinds_written.push(def);
                            }
                        }
                    }
                }
                Ok(CheckDef {
                    name: name.ok_or_else(|| de::Error::missing_field("name"))?,
                    interval: interval.flatten(),
                    timeout: timeout.flatten(),
                    labels: labels.unwrap_or_default(),
                    kinds: kinds_written,
                    alerts: alerts.unwrap_or_default(),
                    retries: retries.flatten(),
                    depends_on: depends_on.unwrap_or_default(),
                })
            }
        }

        deserializer.deserialize_map(CheckVisitor)
    }
}

pub fn checks_of(
    ctx: &mut Ctx,
    defs: &[CheckDef],
    defaults: &CheckDefaults,
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

/// Where a kind's key is written in a check whose `name:` is on line `name_line` (1-based):
/// the first later line at the indentation of the check's keys that starts with `<kind>:`;
/// `None` past the check's end (a line indented less, or the next `- ` item).
fn kind_key_at(src: &str, name_line: usize, kind: &str) -> Option<(u64, u64)> {
    let lines: Vec<&str> = src.lines().collect();
    let name = lines.get(name_line.checked_sub(1)?)?;
    // The indentation of the check's keys: where `name:` starts, after any `- `.
    let base = name.len() - name.trim_start_matches([' ', '-']).len();
    for (i, line) in lines.iter().enumerate().skip(name_line) {
        let body = line.trim_start();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let indent = line.len() - body.len();
        if indent < base {
            return None;
        }
        if indent == base && body.strip_prefix(kind).is_some_and(|r| r.starts_with(':')) {
            return Some((i as u64 + 1, indent as u64 + 1));
        }
    }
    None
}

fn check(
    ctx: &mut Ctx,
    def: &CheckDef,
    key: &str,
    defaults: &CheckDefaults,
    origin: Origin,
) -> Option<Check> {
    let n_before = ctx.errors.len();
    ctx.labels(&def.labels, &def.name.referenced, &format!("{key}.labels"));
    if !ctx.count(
        def.alerts.len(),
        limits::MAX_ALERTS,
        &def.name.referenced,
        &format!("{key}.alerts"),
        "alert rules",
    ) {
        return None;
    }
    let mut timing = |cx: &mut KindCx<'_, '_>, default_interval: Duration| {
        let ctx = &mut *cx.ctx;
        let interval = def
            .interval
            .as_ref()
            .map(|d| d.value.0)
            .unwrap_or(default_interval);
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
        (interval, timeout)
    };
    let (kind, interval, timeout) = match def.kinds.as_slice() {
        [one] => {
            let mut cx = KindCx {
                key: format!("{key}.{}", one.key()),
                at: one.at(),
                ctx: &mut *ctx,
                defaults,
            };
            one.validate(&mut cx, &mut timing)
        }
        none_or_several => {
            let mut cx = KindCx {
                key: key.to_string(),
                at: def.name.referenced,
                ctx: &mut *ctx,
                defaults,
            };
            let (interval, timeout) = timing(&mut cx, defaults.interval);
            match none_or_several {
                [] => ctx.err(
                    &def.name.referenced,
                    key,
                    format!(
                        "check {:?} has no kind: add one of {}",
                        def.name.value,
                        kinds::KEYS.join(", ")
                    ),
                ),
                several => {
                    let names: Vec<&str> = several.iter().map(|k| k.key()).collect();
                    let message = format!(
                        "a check has exactly one kind, this one has {}",
                        names.join(" and ")
                    );
                    // Point at the second kind's key (the one to move or delete), found in the
                    // check's own lines; the check's name when it cannot be found (flow style).
                    let second = names.iter().skip(1).find_map(|k| {
                        kind_key_at(ctx.src, def.name.referenced.line() as usize, k)
                            .map(|(line, col)| (line, col, *k))
                    });
                    match second {
                        Some((line, col, k)) => {
                            ctx.err_at(line, col, format!("{key}.{k}"), message)
                        }
                        None => ctx.err(&def.name.referenced, key, message),
                    }
                }
            }
            (None, interval, timeout)
        }
    };
    let retry_kind = match def.kinds.as_slice() {
        [one] => Some((one.key(), one.retries())),
        _ => None,
    };
    let retries = retries(ctx, def, key, retry_kind, interval, timeout);
    let depends_on = depends_on(ctx, def, key);
    let kind = kind?;
    let var_type = |name: &str| kind.var_type(name);
    let vars = KindVars {
        name: kind.name(),
        var_type: &var_type,
    };
    let alerts = rule::alerts(ctx, &def.alerts, key, &vars, &def.labels);
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
        retries,
        depends_on,
        origin,
    })
}

/// Validates the names of `depends_on:` on their own (well-formed, not the check itself, no
/// repeats); whether each parent exists and that no cycle forms is [`dependency_errors`]'s, once
/// every check file is read.
fn depends_on(ctx: &mut Ctx, def: &CheckDef, key: &str) -> Vec<Dependency> {
    let mut out: Vec<Dependency> = Vec::new();
    for (i, parent) in def.depends_on.iter().enumerate() {
        let pkey = format!("{key}.depends_on[{i}]");
        let name = &parent.value;
        if !valid_name(name) {
            ctx.err(
                &parent.referenced,
                pkey,
                format!("invalid check name {name:?}: use lowercase letters, digits, - and _, starting with a letter or digit"),
            );
        } else if *name == def.name.value {
            ctx.err(
                &parent.referenced,
                pkey,
                format!("check {name:?} cannot depend on itself"),
            );
        } else if out.iter().any(|d| d.check == *name) {
            ctx.err(
                &parent.referenced,
                pkey,
                format!("{name:?} is listed twice"),
            );
        } else {
            out.push(Dependency {
                check: name.clone(),
                at: ctx.origin(&parent.referenced),
                key: pkey,
            });
        }
    }
    out
}

/// The errors of `depends_on:` across the whole configuration: a parent that is no check, and
/// cycles (`a` → `b` → `a`), each reported once, at the entry that closes it.
/// `names` holds every check name written (a check refused for another error still exists, so
/// its dependants get no second, false error).
pub fn dependency_errors(
    checks: &[Arc<Check>],
    names: &HashMap<String, Origin>,
) -> Vec<ConfigError> {
    let by_name: HashMap<&str, &Check> = checks.iter().map(|c| (c.name.as_str(), &**c)).collect();
    let mut errors = Vec::new();
    let err = ConfigError::at;
    for c in checks {
        for d in &c.depends_on {
            if !names.contains_key(&d.check) {
                errors.push(err(
                    &d.at,
                    d.key.clone(),
                    format!(
                        "check {:?} depends on {:?}, which is not a check in this configuration",
                        c.name, d.check
                    ),
                ));
            }
        }
    }
    // Depth-first search over the parents; colours: absent white, false grey (on the current
    // path), true black (done). Iterative, so a chain of 10,000 checks cannot overflow a stack.
    let mut colour: HashMap<&str, bool> = HashMap::new();
    for start in checks {
        if colour.contains_key(start.name.as_str()) {
            continue;
        }
        let mut path: Vec<(&Check, usize)> = vec![(&**start, 0)];
        colour.insert(&start.name, false);
        while let Some(top) = path.last_mut() {
            let (node, i) = *top;
            top.1 += 1;
            let Some(dep) = node.depends_on.get(i) else {
                colour.insert(&node.name, true);
                path.pop();
                continue;
            };
            let Some(parent) = by_name.get(dep.check.as_str()) else {
                continue;
            };
            match colour.get(parent.name.as_str()) {
                None => {
                    colour.insert(&parent.name, false);
                    path.push((parent, 0));
                }
                Some(false) => {
                    let from = path
                        .iter()
                        .position(|(c, _)| c.name == parent.name)
                        .unwrap_or(0);
                    let mut cycle: Vec<&str> =
                        path[from..].iter().map(|(c, _)| c.name.as_str()).collect();
                    cycle.push(&parent.name);
                    errors.push(err(
                        &dep.at,
                        dep.key.clone(),
                        format!("dependency cycle: {}", cycle.join(" -> ")),
                    ));
                }
                Some(true) => {}
            }
        }
    }
    errors
}

/// Validates `retries:` against the kind and the check's timing. The decisive rule: the worst
/// case, every attempt running its full `timeout` and every delay in between, must end within
/// the interval, so a run with its retries never overlaps the next run.
fn retries(
    ctx: &mut Ctx,
    def: &CheckDef,
    key: &str,
    kind: Option<(&'static str, bool)>,
    interval: Duration,
    timeout: Duration,
) -> Retries {
    let Some(r) = &def.retries else {
        return Retries::default();
    };
    let rkey = format!("{key}.retries");
    if let Some((kind, false)) = kind {
        ctx.err(
            &r.referenced,
            &rkey,
            format!("a {kind} check cannot retry: its result judges what it was told (pings), which a retry would only read again; remove retries"),
        );
        return Retries::default();
    }
    let count_ok = ctx.int_in(
        Some(&r.value.count),
        &format!("{rkey}.count"),
        1,
        limits::MAX_RETRIES,
    );
    let delay_ok = ctx.dur_in(
        r.value.delay.as_ref(),
        &format!("{rkey}.delay"),
        limits::RETRY_DELAY,
    );
    let count = r.value.count.value;
    let delay = r.value.delay.as_ref().map_or(Duration::ZERO, |d| d.value.0);
    if count_ok && delay_ok {
        // Both are bounded (count <= 10, each duration <= 7 days): no overflow, but stay total.
        let worst = timeout
            .checked_mul(count + 1)
            .and_then(|runs| runs.checked_add(delay.checked_mul(count)?));
        if worst.is_none_or(|w| w > interval) {
            let worst = worst.map_or_else(|| "too long".to_string(), fmt_d);
            ctx.err(
                &r.referenced,
                &rkey,
                format!(
                    "{} attempts of timeout {} and {count} {} of {} take up to {worst}, more than the interval {} (all retries must end before the next run is due: lower count, delay or timeout, or raise interval)",
                    count + 1,
                    fmt_d(timeout),
                    if count == 1 { "delay" } else { "delays" },
                    fmt_d(delay),
                    fmt_d(interval)
                ),
            );
        }
    }
    Retries { count, delay }
}

/// Loads the checks of one check file given as text, with default settings (for tests and tools).
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
    let defaults = CheckDefaults::default();
    let mut checks = Vec::new();
    let mut seen = HashMap::new();
    checks_of(&mut ctx, &cf.checks, &defaults, &mut seen, &mut checks);
    errors.extend(dependency_errors(&checks, &seen));
    if errors.is_empty() {
        Ok(checks)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Every error of check file `t.yaml` holding `yaml`, as the user sees it (none: it loads).
#[cfg(test)]
pub(crate) fn errors_of(yaml: &str) -> Vec<String> {
    match load_checks_str(Path::new("t.yaml"), yaml) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

/// The one check of check file `t.yaml` holding `yaml`, which must load.
#[cfg(test)]
pub(crate) fn check_of(yaml: &str) -> Arc<Check> {
    match load_checks_str(Path::new("t.yaml"), yaml) {
        Ok(mut checks) if checks.len() == 1 => checks.remove(0),
        Ok(checks) => panic!("{} checks in\n{yaml}", checks.len()),
        Err(e) => panic!("{e}\nin\n{yaml}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::defaults::{DEFAULT_INTERVAL, DEFAULT_TIMEOUT};
    use crate::probe::queue::def::Queue;

    const TCP: &str = "tcp: {target: \"127.0.0.1:1\"}";

    /// A tcp check named `name` with `extra` lines under it.
    fn tcp_check(name: &str, extra: &str) -> String {
        format!("checks:\n  - name: {name}\n    {TCP}\n{extra}")
    }

    #[test]
    fn check_names_follow_the_pattern_and_length() {
        assert_eq!(
            errors_of(&tcp_check("Bad", "")),
            [
                r#"t.yaml:2:11: checks[0].name: invalid check name "Bad": use lowercase letters, digits, - and _, starting with a letter or digit"#
            ]
        );
        for bad in ["-a", "_a", "a.b", "a b", "\"\""] {
            let errors = errors_of(&tcp_check(bad, ""));
            assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
            assert!(
                errors[0].contains("checks[0].name: invalid check name"),
                "{errors:?}"
            );
        }
        let longest = "a".repeat(128);
        assert_eq!(check_of(&tcp_check(&longest, "")).name, longest);
        let errors = errors_of(&tcp_check(&"a".repeat(129), ""));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("invalid check name"), "{errors:?}");
        assert_eq!(check_of(&tcp_check("0-a_b", "")).name, "0-a_b");
    }

    #[test]
    fn a_duplicate_name_points_at_the_first_definition() {
        let yaml = format!(
            "checks:\n  - name: web\n    {TCP}\n  - name: other\n    {TCP}\n  - name: web\n    {TCP}\n"
        );
        assert_eq!(
            errors_of(&yaml),
            [
                r#"t.yaml:6:11: checks[2].name: duplicate check name "web" (first defined at t.yaml:2:11)"#
            ]
        );
    }

    #[test]
    fn a_check_has_exactly_one_kind() {
        for key in ["http", "tcp", "queue", "heartbeat"] {
            assert!(kinds::KEYS.contains(&key), "{key} is registered");
        }
        assert_eq!(
            errors_of("checks:\n  - name: web\n    interval: 1m\n"),
            [format!(
                "t.yaml:2:11: checks[0]: check \"web\" has no kind: add one of {}",
                kinds::KEYS.join(", ")
            )]
        );
        assert_eq!(
            errors_of(&tcp_check(
                "web",
                "    heartbeat: {every: 1h}\n"
            )),
            ["t.yaml:4:5: checks[0].heartbeat: a check has exactly one kind, this one has tcp and heartbeat"]
        );
        // The timing of a check without a kind is still validated.
        assert_eq!(
            errors_of("checks:\n  - name: web\n    interval: 1ms\n"),
            [
                "t.yaml:3:15: checks[0].interval: must be at least 100ms".to_string(),
                format!(
                    "t.yaml:2:11: checks[0]: check \"web\" has no kind: add one of {}",
                    kinds::KEYS.join(", ")
                )
            ]
        );
    }

    #[test]
    fn an_unknown_key_names_its_path_and_the_expected_keys() {
        let errors = errors_of(&tcp_check("web", "    intervall: 1m\n"));
        assert_eq!(errors.len(), 1, "{errors:?}");
        let expected_keys = FIELDS.join(", ");
        assert_eq!(
            errors[0],
            format!("t.yaml:4:5: checks[0].intervall: unknown field `intervall`, expected one of {expected_keys}")
        );
        assert!(
            expected_keys.starts_with("name, interval, timeout, labels, http"),
            "{expected_keys}"
        );
        assert!(
            expected_keys.ends_with(", alerts, retries, depends_on"),
            "{expected_keys}"
        );
    }

    #[test]
    fn the_interval_is_within_its_limits() {
        assert_eq!(
            errors_of(&tcp_check("web", "    interval: 50ms\n")),
            ["t.yaml:4:15: checks[0].interval: must be at least 100ms"]
        );
        assert_eq!(
            errors_of(&tcp_check("web", "    interval: 8d\n")),
            ["t.yaml:4:15: checks[0].interval: must be at most 7d"]
        );
        let c = check_of(&tcp_check("web", "    interval: 7d\n"));
        assert_eq!(c.interval, Duration::from_secs(7 * 86_400));
        assert_eq!(check_of(&tcp_check("web", "")).interval, DEFAULT_INTERVAL);
    }

    #[test]
    fn the_timeout_is_positive_and_within_the_interval() {
        assert_eq!(
            errors_of(&tcp_check("web", "    timeout: 0s\n")),
            ["t.yaml:4:14: checks[0].timeout: must be greater than 0"]
        );
        assert_eq!(
            errors_of(&tcp_check("web", "    interval: 30s\n    timeout: 1m\n")),
            ["t.yaml:5:14: checks[0].timeout: timeout 1m exceeds interval 30s (a run must end before the next one is due)"]
        );
        // Without an interval, the default one bounds it.
        assert_eq!(
            errors_of(&tcp_check("web", "    timeout: 31s\n")),
            ["t.yaml:4:14: checks[0].timeout: timeout 31s exceeds interval 30s (a run must end before the next one is due)"]
        );
        let c = check_of(&tcp_check("web", "    interval: 1m\n    timeout: 1m\n"));
        assert_eq!(c.timeout, Duration::from_secs(60));
    }

    #[test]
    fn the_default_timeout_is_at_most_the_interval() {
        let c = check_of(&tcp_check("web", "    interval: 2s\n"));
        assert_eq!(
            (c.interval, c.timeout),
            (Duration::from_secs(2), Duration::from_secs(2))
        );
        let c = check_of(&tcp_check("web", "    interval: 1m\n"));
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn labels_have_valid_names_and_a_bounded_count() {
        assert_eq!(
            errors_of(&tcp_check(
                "web",
                "    labels: {team: core, 1x: a, a-b: c}\n"
            )),
            [
                r#"t.yaml:2:11: checks[0].labels: invalid label name "1x": use [a-zA-Z_][a-zA-Z0-9_]*"#,
                r#"t.yaml:2:11: checks[0].labels: invalid label name "a-b": use [a-zA-Z_][a-zA-Z0-9_]*"#,
            ]
        );
        let labels = |n: usize| {
            let l: Vec<String> = (0..n).map(|i| format!("l{i}: v")).collect();
            format!("    labels: {{{}}}\n", l.join(", "))
        };
        assert_eq!(
            errors_of(&tcp_check("web", &labels(limits::MAX_LABELS + 1))),
            ["t.yaml:2:11: checks[0].labels: 65 labels: at most 64 are allowed"]
        );
        let c = check_of(&tcp_check("web", &labels(limits::MAX_LABELS)));
        assert_eq!(c.labels.len(), limits::MAX_LABELS);
    }

    #[test]
    fn the_number_of_alert_rules_is_bounded() {
        let alerts = |n: usize| {
            let a: Vec<String> = (0..n)
                .map(|i| format!("      - {{name: A{i}, when: failed}}\n"))
                .collect();
            format!("    alerts:\n{}", a.concat())
        };
        assert_eq!(
            errors_of(&tcp_check("web", &alerts(limits::MAX_ALERTS + 1))),
            ["t.yaml:2:11: checks[0].alerts: 101 alert rules: at most 100 are allowed"]
        );
        let c = check_of(&tcp_check("web", &alerts(limits::MAX_ALERTS)));
        assert_eq!(c.alerts.len(), limits::MAX_ALERTS);
        let c = check_of(&tcp_check("web", ""));
        assert_eq!(c.alerts[0].name, "CheckFailing");
    }

    #[test]
    fn an_unknown_variable_lists_the_kinds_variables_folded() {
        let yaml = "checks:\n  - name: web\n    http:\n      request: {url: \"http://127.0.0.1/\"}\n    alerts:\n      - name: A\n        when: nope > 1\n";
        assert_eq!(
            errors_of(yaml),
            [
                r#"t.yaml:7:15: checks[0].alerts[0].when: unknown variable "nope" for an http check (known: failed, duration, reason, status, failed_step, cert_expires_in, step.<name>.duration|status|failed) in "nope > 1""#
            ]
        );
        let yaml = tcp_check(
            "web",
            "    alerts:\n      - name: A\n        when: status > 1\n",
        );
        assert_eq!(
            errors_of(&yaml),
            [
                r#"t.yaml:6:15: checks[0].alerts[0].when: unknown variable "status" for a tcp check (known: failed, duration, reason, cert_expires_in) in "status > 1""#
            ]
        );
        // A step variable names one of the check's steps.
        let yaml = "checks:\n  - name: web\n    http:\n      request: {url: \"http://127.0.0.1/\"}\n    alerts:\n      - name: A\n        when: step.login.duration > 1s\n";
        assert_eq!(
            errors_of(yaml),
            [
                r#"t.yaml:7:15: checks[0].alerts[0].when: unknown step "login" (this check's steps: request) in "step.login.duration > 1s""#
            ]
        );
    }

    #[test]
    fn a_heartbeats_default_interval_comes_from_its_grace() {
        let hb = |extra: &str| {
            check_of(&format!(
                "checks:\n  - name: job\n    heartbeat: {{every: 1h{extra}}}\n"
            ))
        };
        // At most the grace, so lateness is noticed within one grace.
        let c = hb(", grace: 5s");
        assert_eq!(
            (c.interval, c.timeout),
            (Duration::from_secs(5), Duration::from_secs(5))
        );
        // A long grace leaves the default.
        assert_eq!(hb(", grace: 10m").interval, DEFAULT_INTERVAL);
        // Without one, the default grace (a tenth of the period, at least 5s) decides.
        let c = check_of("checks:\n  - name: job\n    heartbeat: {every: 1m}\n");
        assert_eq!(c.interval, Duration::from_secs(6));
        // A written interval wins.
        let c = check_of(
            "checks:\n  - name: job\n    interval: 1m\n    heartbeat: {every: 1h, grace: 5s}\n",
        );
        assert_eq!(c.interval, Duration::from_secs(60));
    }

    #[test]
    fn a_queue_connect_timeout_fits_in_the_checks_timeout() {
        let q = |extra: &str, timing: &str| {
            format!("checks:\n  - name: jobs\n{timing}    queue: {{system: sidekiq, redis: \"redis://127.0.0.1:6379\"{extra}}}\n")
        };
        assert_eq!(
            errors_of(&q(", connect_timeout: 3s", "    timeout: 2s\n")),
            ["t.yaml:4:80: checks[0].queue.connect_timeout: connect_timeout 3s exceeds the check's timeout 2s"]
        );
        assert_eq!(
            errors_of(&q(", connect_timeout: 0s", "")),
            ["t.yaml:3:80: checks[0].queue.connect_timeout: must be greater than 0"]
        );
        let connect_timeout =
            |yaml: &str| check_of(yaml).kind.spec::<Queue>().unwrap().connect_timeout;
        assert_eq!(
            connect_timeout(&q(", connect_timeout: 2s", "    timeout: 2s\n")),
            Duration::from_secs(2)
        );
        // Unset: the check's timeout, at most 5s.
        assert_eq!(connect_timeout(&q("", "")), Duration::from_secs(5));
        assert_eq!(
            connect_timeout(&q("", "    timeout: 2s\n")),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn a_kinds_errors_and_the_timing_errors_are_all_reported() {
        let yaml = "checks:\n  - name: web\n    timeout: 0s\n    tcp: {target: nowhere}\n";
        assert_eq!(
            errors_of(yaml),
            [
                r#"t.yaml:4:19: checks[0].tcp.target: invalid target "nowhere": no port (want host:port)"#,
                "t.yaml:3:14: checks[0].timeout: must be greater than 0",
            ]
        );
    }

    #[test]
    fn the_number_of_checks_in_all_files_is_bounded() {
        let yaml = format!("checks:\n  - name: web\n    {TCP}\n  - name: api\n    {TCP}\n");
        let file: CheckFile = decode(Path::new("t.yaml"), &yaml).unwrap();
        let other = Origin {
            file: "other.yaml".into(),
            line: 1,
            col: 1,
        };
        // Earlier files defined the most there may be, `web` among them.
        let mut seen: HashMap<String, Origin> = (1..limits::MAX_CHECKS)
            .map(|i| (format!("c{i}"), other.clone()))
            .chain([("web".to_string(), other.clone())])
            .collect();
        let mut errors = Vec::new();
        let mut ctx = Ctx {
            file: "t.yaml".into(),
            src: &yaml,
            dir: PathBuf::from("."),
            errors: &mut errors,
        };
        let mut out = Vec::new();
        checks_of(
            &mut ctx,
            &file.checks,
            &CheckDefaults::default(),
            &mut seen,
            &mut out,
        );
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                r#"t.yaml:2:11: checks[0].name: duplicate check name "web" (first defined at other.yaml:1:1)"#,
                "t.yaml:4:11: checks[1].name: more than 10000 checks in the configuration: at most 10000 are allowed",
            ]
        );
        assert_eq!(seen.len(), limits::MAX_CHECKS);
    }

    #[test]
    fn a_check_file_over_the_size_cap_is_refused_before_parsing() {
        let yaml = format!(
            "checks: []\n#{}",
            "x".repeat(limits::MAX_CONFIG_FILE_BYTES as usize)
        );
        assert_eq!(
            errors_of(&yaml),
            ["t.yaml:1:1: cannot read check file: larger than the limit of 4 MiB"]
        );
    }
}
