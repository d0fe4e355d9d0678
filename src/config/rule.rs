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
        // Plain text as the engine tells it (a single literal part): `$${x}` is plain text too.
        let literal_annotation = || {
            rule.annotations.get(v).is_some_and(|a| {
                Template::parse(&a.value, &ctx.dir).is_ok_and(|t| t.as_literal().is_some())
            })
        };
        if FIXED.contains(&v)
            || check_labels.contains_key(v)
            || rule.labels.contains_key(v)
            || literal_annotation()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ctx::test_support::validate;

    /// A kind with two variables of its own, as a kind's declaration would give them.
    fn var_type(name: &str) -> Result<Type, String> {
        match name {
            "failed" => Ok(Type::Bool),
            "duration" => Ok(Type::Duration),
            "reason" => Ok(Type::String),
            "status" => Ok(Type::Number),
            _ => Err(format!(
                "unknown variable {name:?} for a test check (known: failed, duration, reason, status)"
            )),
        }
    }

    /// Validates `yaml` (a list of alert rules) as check `checks[0]` with labels `team`.
    fn rules_of(yaml: &str) -> (Vec<AlertRule>, Vec<String>) {
        let vars = KindVars {
            name: "test",
            var_type: &var_type,
        };
        let labels = BTreeMap::from([("team".to_string(), "core".to_string())]);
        validate(yaml, |ctx, defs: &Vec<AlertDef>| {
            alerts(ctx, defs, "checks[0]", &vars, &labels)
        })
    }

    fn errors_of(yaml: &str) -> Vec<String> {
        rules_of(yaml).1
    }

    #[test]
    fn an_unknown_variable_is_the_kinds_message_at_its_column() {
        assert_eq!(
            errors_of("- name: A\n  when: nope > 1\n"),
            [
                r#"t.yaml:2:9: checks[0].alerts[0].when: unknown variable "nope" for a test check (known: failed, duration, reason, status) in "nope > 1""#
            ]
        );
        // The column points into the quoted text, past the quote.
        assert_eq!(
            errors_of("- name: A\n  when: \"failed || nope\"\n"),
            [
                r#"t.yaml:2:20: checks[0].alerts[0].when: unknown variable "nope" for a test check (known: failed, duration, reason, status) in "failed || nope""#
            ]
        );
    }

    #[test]
    fn a_condition_must_type_check() {
        let errors = errors_of("- name: A\n  when: duration > 5\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(
                "t.yaml:2:9: checks[0].alerts[0].when: cannot compare a duration with a number"
            ),
            "{errors:?}"
        );
        let errors = errors_of("- name: A\n  when: status\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(
                "t.yaml:2:9: checks[0].alerts[0].when: expression is a number, not a condition"
            ),
            "{errors:?}"
        );
        let (rules, errors) = rules_of("- name: A\n  when: duration > 5s && status >= 500\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(rules[0].when, "duration > 5s && status >= 500");
    }

    #[test]
    fn at_most_one_of_for_consecutive_and_window() {
        for (a, b) in [
            ("for: 1m", "consecutive: 2"),
            ("for: 1m", "window: 2 of 3"),
            ("consecutive: 2", "window: 2 of 3"),
        ] {
            assert_eq!(
                errors_of(&format!("- name: A\n  when: failed\n  {a}\n  {b}\n")),
                ["t.yaml:1:9: checks[0].alerts[0]: use one of for, consecutive and window"],
                "{a} and {b}"
            );
        }
    }

    #[test]
    fn a_window_is_n_of_m_within_bounds() {
        for bad in ["0 of 5", "6 of 5", "3 of 1001", "3/5", "x of 5", "of"] {
            assert_eq!(
                errors_of(&format!("- name: A\n  when: failed\n  window: {bad}\n")),
                [format!(
                    "t.yaml:3:11: checks[0].alerts[0].window: invalid window {bad:?}: write \"N of M\" with 1 <= N <= M <= 1000"
                )],
            );
        }
        for (good, n, m) in [
            ("3 of 5", 3, 5),
            ("1 of 1", 1, 1),
            ("1000 of 1000", 1000, 1000),
        ] {
            let (rules, errors) =
                rules_of(&format!("- name: A\n  when: failed\n  window: {good}\n"));
            assert!(errors.is_empty(), "{good}: {errors:?}");
            assert_eq!(rules[0].window, Some((n, m)));
        }
    }

    #[test]
    fn consecutive_and_holds_are_within_their_limits() {
        assert_eq!(
            errors_of("- name: A\n  when: failed\n  consecutive: 0\n"),
            ["t.yaml:3:16: checks[0].alerts[0].consecutive: must be at least 1"]
        );
        assert_eq!(
            errors_of("- name: A\n  when: failed\n  consecutive: 1001\n"),
            ["t.yaml:3:16: checks[0].alerts[0].consecutive: 1001 is more than the limit of 1000"]
        );
        assert_eq!(
            errors_of("- name: A\n  when: failed\n  for: 31d\n  keep_firing_for: 31d\n"),
            [
                "t.yaml:3:8: checks[0].alerts[0].for: must be at most 30d",
                "t.yaml:4:20: checks[0].alerts[0].keep_firing_for: must be at most 30d"
            ]
        );
    }

    #[test]
    fn severities() {
        assert_eq!(
            errors_of("- name: A\n  when: failed\n  severity: fatal\n"),
            [
                r#"t.yaml:3:13: checks[0].alerts[0].severity: invalid severity "fatal": use critical, error, warning or info"#
            ]
        );
        for (written, severity) in [
            ("critical", Severity::Critical),
            ("error", Severity::Error),
            ("warning", Severity::Warning),
            ("info", Severity::Info),
        ] {
            let (rules, errors) = rules_of(&format!(
                "- name: A\n  when: failed\n  severity: {written}\n"
            ));
            assert!(errors.is_empty(), "{errors:?}");
            assert_eq!(rules[0].severity, severity);
            assert_eq!(severity.as_str(), written);
        }
        let (rules, _) = rules_of("- name: A\n  when: failed\n");
        assert_eq!(rules[0].severity, Severity::Critical, "the default");
    }

    #[test]
    fn alert_names_are_valid_and_unique_in_a_check() {
        assert_eq!(
            errors_of("- name: 1bad\n  when: failed\n- name: A\n  when: failed\n- name: A\n  when: failed\n"),
            [
                r#"t.yaml:1:9: checks[0].alerts[0].name: invalid alert name "1bad": use letters, digits and _, starting with a letter"#,
                r#"t.yaml:5:9: checks[0].alerts[2].name: duplicate alert name "A" in this check"#,
            ]
        );
    }

    #[test]
    fn annotations_name_only_what_the_engine_fills_in() {
        assert_eq!(
            errors_of("- name: A\n  when: failed\n  annotations:\n    summary: \"${nope} down\"\n"),
            ["t.yaml:4:14: checks[0].alerts[0].annotations.summary: unknown variable ${nope} in an annotation: use check, alert, severity, reason, failed_step, value, message, a label, another annotation or an alert variable of this test check"]
        );
        // Another annotation may be named only when it is plain text.
        let errors = errors_of(
            "- name: A\n  when: failed\n  annotations:\n    a: \"see ${b}\"\n    b: \"${check} down\"\n",
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("t.yaml:4:8: checks[0].alerts[0].annotations.a: unknown variable ${b} in an annotation (annotation b is itself a template; only plain-text annotations can be referenced)"),
            "{errors:?}"
        );
        // Plain text may hold an escaped `$${`.
        let (rules, errors) = rules_of(
            "- name: A\n  when: failed\n  annotations:\n    a: \"costs $${price}\"\n    b: \"${a}\"\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(rules[0].annotations.len(), 2);
        // Fixed names, the check's and the rule's labels, a plain annotation and the kind's
        // variables.
        let (rules, errors) = rules_of(
            "- name: A\n  when: failed\n  labels:\n    tier: one\n  annotations:\n    summary: \"${check} ${alertname} ${team} ${tier} ${runbook} ${status} ${value}\"\n    runbook: https://runbooks.example/a\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(rules[0].annotations.len(), 2);
    }

    #[test]
    fn annotations_carry_no_secrets() {
        assert_eq!(
            errors_of("- name: A\n  when: failed\n  annotations:\n    summary: \"${env:PATH}\"\n"),
            ["t.yaml:4:14: checks[0].alerts[0].annotations.summary: secrets are not allowed in annotations (they would be sent to receivers)"]
        );
    }

    #[test]
    fn no_rules_give_the_default_check_failing() {
        let (rules, errors) = rules_of("[]");
        assert!(errors.is_empty());
        let [rule] = rules.as_slice() else {
            panic!("{rules:?}")
        };
        assert_eq!(rule.name, "CheckFailing");
        assert_eq!(rule.when, "failed");
        assert_eq!(rule.consecutive, Some(3));
        assert_eq!((rule.for_, rule.window), (None, None));
        assert_eq!(rule.severity, Severity::Critical);
        // No summary annotation: pages carry the summary built from the failure.
        assert!(rule.annotations.is_empty(), "{:?}", rule.annotations);
        // Written rules replace it.
        let (rules, _) = rules_of("- name: A\n  when: failed\n");
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].name, "A");
    }
}
