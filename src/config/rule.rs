//! Alert rules as written (`alerts:` of a check) and validated: the condition parsed and
//! type-checked against the check kind's variables, the firing settings within their limits,
//! annotation templates naming only what the engine fills in.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::ctx::*;
use super::expr::{self, Type};
use super::limits;
use super::model::Dur;
use super::schema::{
    self, add_rules, at_most_one, names, property_names, Count, Severity as SeverityName, Text,
    LABEL_NAME,
};
use super::template::Template;
use schemars::Schema;
use std::collections::HashSet;

/// What an alert rule may name of its check's kind.
pub struct KindVars<'k> {
    /// The kind's key (`http`), for messages.
    pub name: &'k str,
    /// The type of a variable, or why it is not one of the check's.
    pub var_type: &'k dyn Fn(&str) -> Result<Type, String>,
}

/// One alert rule.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = alert_rules)]
pub struct AlertDef {
    /// Alert name (`LoginFailing`).
    #[schemars(with = "Text", extend("pattern" = schema::ALERT_NAME, "patternErrorMessage" = "letters, digits and _, starting with a letter"))]
    pub name: Spanned<String>,
    /// Condition over the check's variables.
    #[schemars(with = "Text")]
    pub when: Spanned<String>,
    /// True for this long before firing.
    #[serde(rename = "for")]
    #[schemars(with = "Option<Dur>")]
    pub for_: Option<Spanned<Dur>>,
    /// True for this many runs in a row before firing (1 to 1000).
    #[schemars(with = "Option<Count>", extend("minimum" = 1, "maximum" = 1000))]
    pub consecutive: Option<Spanned<u32>>,
    /// `N of M`: true in N of the last M runs.
    #[schemars(with = "Option<String>", extend("pattern" = schema::WINDOW, "patternErrorMessage" = "N of M, e.g. 3 of 5"))]
    pub window: Option<Spanned<String>>,
    /// Keep firing this long after the condition clears (damps flapping).
    #[schemars(with = "Option<Dur>")]
    pub keep_firing_for: Option<Spanned<Dur>>,
    /// critical (default), error, warning or info.
    #[schemars(with = "Option<SeverityName>")]
    pub severity: Option<Spanned<String>>,
    /// Extra labels (routing).
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, Text>>")]
    pub labels: BTreeMap<String, String>,
    /// Templated annotations (`summary`, `runbook_url`, ...).
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, Text>>")]
    pub annotations: BTreeMap<String, Spanned<String>>,
}

/// Alert severities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Pages.
    Critical,
    /// Needs attention soon.
    Error,
    /// Look at it.
    Warning,
    /// For the record.
    Info,
}

impl Severity {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// One alert rule, type-checked against its check's variables.
#[derive(Debug)]
pub struct AlertRule {
    /// Alert name.
    pub name: String,
    /// The condition as written.
    pub when: String,
    /// The parsed condition.
    pub expr: expr::Expr,
    /// True for this long.
    pub for_: Option<Duration>,
    /// True this many runs in a row.
    pub consecutive: Option<u32>,
    /// True in N of the last M runs.
    pub window: Option<(u32, u32)>,
    /// Damping.
    pub keep_firing_for: Option<Duration>,
    /// Severity.
    pub severity: Severity,
    /// Extra labels.
    pub labels: BTreeMap<String, String>,
    /// Annotation templates (no secrets allowed).
    pub annotations: Vec<(String, Template)>,
}

/// An alert rule: at most one firing condition; label names.
pub fn alert_rules(schema: &mut Schema) {
    property_names(
        schema,
        "labels",
        names(LABEL_NAME, "label names are [a-zA-Z_][a-zA-Z0-9_]*"),
    );
    add_rules(
        schema,
        [at_most_one(
            &["for", "consecutive", "window"],
            "use one of for, consecutive and window",
        )],
    );
}

pub fn alerts(
    ctx: &mut Ctx,
    defs: &[AlertDef],
    key: &str,
    kind: &KindVars<'_>,
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
        let expr = match expr::check(&a.when.value, &|v| (kind.var_type)(v)) {
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
        ctx.labels(&a.labels, &a.name.referenced, &format!("{akey}.labels"));
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
            // No summary: the alert's default summary names the failed step, the reason and
            // the probe's message.
            annotations: Vec::new(),
        });
    }
    out
}

/// The variables an annotation may name: what the alert engine fills in when it renders one
/// (`alert::engine`): fixed names, the alert's labels, the rule's literal annotations and the
/// check kind's alert variables. Anything else would ship the annotation unrendered.
fn annotation_vars(
    ctx: &mut Ctx,
    t: &Template,
    at: &Spanned<String>,
    key: &str,
    kind: &KindVars<'_>,
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
            || (kind.var_type)(v).is_ok()
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
                kind.name
            ),
        );
    }
}
