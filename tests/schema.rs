//! The JSON Schema editors use for `canaryd.yaml` and check files (`canaryd schema`): the files
//! in `schema/` are what the command prints, every canaryd YAML file of the repository names
//! its schema in a modeline and validates against it, the bad fixtures fail it wherever a schema
//! can tell (and pass it where only `canaryd check` can), and the schema never rejects what
//! canaryd accepts.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use jsonschema::error::ValidationErrorKind;
use jsonschema::{ValidationError, Validator};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_canaryd");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `canaryd schema <which>`, as a user runs it.
fn schema_output(which: &str) -> String {
    let out = Command::new(BIN).args(["schema", which]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "canaryd schema {which}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn schema(which: &str) -> Value {
    serde_json::from_str(&schema_output(which)).unwrap_or_else(|e| {
        panic!("canaryd schema {which} does not print JSON: {e}");
    })
}

fn validator(which: &str) -> Validator {
    jsonschema::validator_for(&schema(which))
        .unwrap_or_else(|e| panic!("canaryd schema {which} is not a valid JSON Schema: {e}"))
}

/// A YAML file as the schema sees it (through the same YAML decoder canaryd uses).
fn yaml_to_json(src: &str) -> Result<Value, String> {
    serde_saphyr::from_str::<Value>(src).map_err(|e| e.to_string())
}

/// Where an error points: the JSON Pointer of the offending key (for an unknown or missing key,
/// the key itself), then the same for the errors inside `anyOf`/`oneOf` branches, which is where
/// an editor that picks the closest branch points.
fn key_paths(e: &ValidationError, out: &mut BTreeSet<String>) {
    let base = e.instance_path().as_str().to_string();
    match e.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            out.extend(unexpected.iter().map(|k| format!("{base}/{k}")));
        }
        ValidationErrorKind::Required { property } => {
            out.insert(format!("{base}/{}", property.as_str().unwrap_or_default()));
        }
        ValidationErrorKind::PropertyNames { error } => {
            out.insert(format!(
                "{base}/{}",
                error.instance().as_str().unwrap_or_default()
            ));
        }
        ValidationErrorKind::AnyOf { context }
        | ValidationErrorKind::OneOfNotValid { context }
        | ValidationErrorKind::OneOfMultipleValid { context } => {
            out.insert(base);
            for e in context.iter().flatten() {
                key_paths(e, out);
            }
        }
        _ => {
            out.insert(base);
        }
    }
}

/// Every error of `instance` as `pointer: message`, and the key paths they point at.
fn validate(v: &Validator, instance: &Value) -> (Vec<String>, BTreeSet<String>) {
    let mut messages = Vec::new();
    let mut paths = BTreeSet::new();
    for e in v.iter_errors(instance) {
        messages.push(format!("{}: {e}", e.instance_path().as_str()));
        key_paths(&e, &mut paths);
    }
    (messages, paths)
}

// ----- schema/ is what the command prints -------------------------------------------------------

#[test]
fn the_committed_schemas_are_what_canaryd_schema_prints() {
    for (which, file) in [
        ("config", "schema/canaryd.schema.json"),
        ("checks", "schema/checks.schema.json"),
    ] {
        let printed = schema_output(which);
        let committed = std::fs::read_to_string(repo().join(file)).unwrap_or_default();
        assert!(
            printed == committed,
            "{file} is not what `canaryd schema {which}` prints (the model in src/config/model.rs \
             or src/config/schema.rs changed); regenerate it with:\n  \
             cargo run -q -- schema {which} > {file}"
        );
    }
}

#[test]
fn the_schemas_name_themselves_and_their_draft() {
    for (which, id) in [
        ("config", "urn:canaryd:schema:config"),
        ("checks", "urn:canaryd:schema:checks"),
    ] {
        let s = schema(which);
        assert_eq!(s["$id"], id);
        assert_eq!(s["$schema"], "http://json-schema.org/draft-07/schema#");
        assert!(s["title"].as_str().is_some_and(|t| t.contains("canaryd")));
        assert!(s["description"]
            .as_str()
            .is_some_and(|d| d.contains("canaryd check")));
    }
}

#[test]
fn an_unknown_subcommand_argument_is_refused() {
    let out = Command::new(BIN)
        .args(["schema", "dashboards"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("config") && err.contains("checks"), "{err}");
}

// ----- what an editor offers -------------------------------------------------------------------

/// The definition `name` of a schema, its properties, each with a description.
fn documented_properties(s: &Value, def: &str) -> Vec<String> {
    let d = &s["definitions"][def];
    assert_eq!(
        d["additionalProperties"], false,
        "{def}: unknown keys must be flagged"
    );
    let props = d["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{def} has no properties"));
    for (k, p) in props {
        let desc = p["description"].as_str().unwrap_or_default();
        assert!(!desc.is_empty(), "{def}.{k} has no description to show");
    }
    props.keys().cloned().collect()
}

#[test]
fn every_key_of_every_object_is_documented_and_no_other_key_is_allowed() {
    for which in ["config", "checks"] {
        let s = schema(which);
        let defs = s["definitions"].as_object().unwrap();
        let objects: Vec<&String> = defs
            .iter()
            .filter(|(_, d)| d.get("properties").is_some())
            .map(|(name, _)| name)
            .collect();
        assert!(objects.len() >= 10, "{which}: {objects:?}");
        for name in objects {
            documented_properties(&s, name);
        }
    }
}

#[test]
fn editors_complete_every_key_with_its_documentation() {
    let checks = schema("checks");
    assert_eq!(checks["additionalProperties"], false);
    assert!(checks["properties"]["checks"]["description"].is_string());
    let check = documented_properties(&checks, "CheckDef");
    for key in [
        "name",
        "interval",
        "timeout",
        "labels",
        "http",
        "tcp",
        "queue",
        "heartbeat",
        "alerts",
    ] {
        assert!(
            check.contains(&key.to_string()),
            "checks[] lacks {key}: {check:?}"
        );
    }
    assert_eq!(
        checks["definitions"]["CheckDef"]["properties"]["http"]["description"],
        "HTTP: one request or scripted steps."
    );
    assert_eq!(
        checks["definitions"]["CheckDef"]["required"],
        serde_json::json!(["name"])
    );
    for (def, keys) in [
        (
            "HttpDef",
            &["base_url", "request", "steps", "expect", "extract"][..],
        ),
        ("RequestDef", &["method", "url", "headers", "form", "json"]),
        (
            "ExpectDef",
            &["status", "body_contains", "json", "header", "max_duration"],
        ),
        (
            "ExtractDef",
            &["regex", "css", "attr", "json", "header", "cookie", "status"],
        ),
        (
            "QueueDef",
            &["system", "redis", "queues", "prefix", "keys", "patterns"],
        ),
        (
            "HeartbeatDef",
            &["every", "cron", "timezone", "grace", "max_runtime", "token"],
        ),
        (
            "AlertDef",
            &["name", "when", "for", "consecutive", "window", "severity"],
        ),
    ] {
        let got = documented_properties(&checks, def);
        for k in keys {
            assert!(got.contains(&k.to_string()), "{def} lacks {k}: {got:?}");
        }
    }
    // Values editors can offer.
    let system = &checks["definitions"]["QueueDef"]["properties"]["system"];
    assert_eq!(
        system["enum"],
        serde_json::json!(["sidekiq", "celery", "rq", "bullmq", "resque", "redis"])
    );
    let severity = &checks["definitions"]["AlertDef"]["properties"]["severity"]["enum"];
    for s in ["critical", "error", "warning", "info"] {
        assert!(
            severity.as_array().unwrap().contains(&Value::from(s)),
            "{severity}"
        );
    }
    let zones = checks["definitions"]["HeartbeatDef"]["properties"]["timezone"]["enum"]
        .as_array()
        .unwrap()
        .clone();
    assert!(zones.len() > 400, "{}", zones.len());
    for z in zones.iter().filter_map(Value::as_str) {
        assert!(
            z.parse::<chrono_tz::Tz>().is_ok(),
            "{z} is offered but not accepted"
        );
    }
    assert!(checks["definitions"]["Duration"]["description"]
        .as_str()
        .unwrap()
        .contains("30s"));

    let config = schema("config");
    assert_eq!(config["additionalProperties"], false);
    for key in [
        "listen",
        "state_dir",
        "check_files",
        "defaults",
        "checks",
        "receivers",
        "routes",
        "maintenance",
        "watchdog",
        "max_concurrency",
    ] {
        let desc = config["properties"][key]["description"].as_str();
        assert!(
            desc.is_some_and(|d| !d.is_empty()),
            "canaryd.yaml {key}: no description"
        );
    }
    let receiver = documented_properties(&config, "ReceiverDef");
    for k in [
        "name",
        "pagerduty",
        "alertmanager",
        "slack",
        "webhook",
        "opsgenie",
        "email",
    ] {
        assert!(receiver.contains(&k.to_string()), "{receiver:?}");
    }
}

// ----- the repository's own files --------------------------------------------------------------

/// YAML files under checks/ and examples/ that belong to other tools. Everything else there is
/// a canaryd file and must carry a modeline, so a new one cannot escape validation.
const NOT_CANARYD: &[&str] = &[
    "examples/prometheus.yml",
    "examples/prometheus-rules.yml",
    "examples/prometheus-rules.test.yml",
    "examples/alertmanager.yml",
    "examples/ha/alertmanager.yml",
];

const MODELINE: &str = "# yaml-language-server: $schema=";

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

#[test]
fn every_canaryd_file_in_checks_and_examples_names_its_schema_and_validates() {
    let root = repo();
    let mut files = Vec::new();
    yaml_files(&root.join("checks"), &mut files);
    yaml_files(&root.join("examples"), &mut files);
    files.sort();
    let validators = [
        (root.join("schema/canaryd.schema.json"), validator("config")),
        (root.join("schema/checks.schema.json"), validator("checks")),
    ];
    let mut checked = Vec::new();
    let mut failures = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&root).unwrap().to_string_lossy().to_string();
        if NOT_CANARYD.contains(&rel.as_str()) {
            continue;
        }
        let src = std::fs::read_to_string(f).unwrap();
        let first = src.lines().next().unwrap_or_default();
        let Some(target) = first.strip_prefix(MODELINE) else {
            failures.push(format!(
                "{rel}: the first line is not `{MODELINE}<path>` (a canaryd file names its \
                 schema; a file of another tool goes in NOT_CANARYD of tests/schema.rs)"
            ));
            continue;
        };
        let target = f.parent().unwrap().join(target.trim());
        let Some((schema_file, v)) = validators
            .iter()
            .find(|(p, _)| target.canonicalize().ok().as_ref() == Some(p))
        else {
            failures.push(format!(
                "{rel}: the modeline names {}, which is neither schema/canaryd.schema.json nor \
                 schema/checks.schema.json",
                target.display()
            ));
            continue;
        };
        // The daemon file is the one named canaryd.yaml; every other file holds checks.
        let wanted = if f.file_name().is_some_and(|n| n == "canaryd.yaml") {
            "canaryd.schema.json"
        } else {
            "checks.schema.json"
        };
        if !schema_file.ends_with(wanted) {
            failures.push(format!("{rel}: the modeline should name {wanted}"));
        }
        let json = match yaml_to_json(&src) {
            Ok(j) => j,
            Err(e) => {
                failures.push(format!("{rel}: not YAML: {e}"));
                continue;
            }
        };
        let (errors, _) = validate(v, &json);
        for e in errors {
            failures.push(format!("{rel}: {e}"));
        }
        checked.push(rel);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for must in [
        "examples/canaryd.yaml",
        "examples/demo/checks.yaml",
        "examples/demo/jobs.yaml",
        "checks/shop.yaml",
    ] {
        assert!(
            checked.iter().any(|c| c == must),
            "{must} was not checked: {checked:?}"
        );
    }
    assert!(checked.len() >= 9, "{checked:?}");
}

// ----- the bad fixtures ------------------------------------------------------------------------

/// What the schema makes of a bad fixture.
enum Verdict {
    /// Rejected, with an error at each of these key paths (JSON Pointers).
    Rejects(&'static [&'static str]),
    /// Passes: only `canaryd check` can tell (other files, secrets, expressions, semantics).
    CannotTell,
    /// Not a YAML document at all: the editor's YAML parser flags it before any schema.
    NotYaml,
}
use Verdict::*;

/// Every file of tests/fixtures/bad/ (whose `# expect:` lines give canaryd's own message).
const FIXTURES: &[(&str, Verdict)] = &[
    // Limits and rules of the robustness work: durations, sizes, files and words are beyond a
    // schema; counts and integer ranges are not.
    (
        "alert-consecutive-too-large.yaml",
        Rejects(&["/checks/0/alerts/0/consecutive"]),
    ),
    ("alert-for-too-long.yaml", CannotTell),
    ("annotation-unknown-variable.yaml", CannotTell),
    ("base-url-userinfo.yaml", CannotTell),
    ("body-limit-too-large.yaml", CannotTell),
    ("ca-file-device.yaml", CannotTell),
    (
        "cert-min-days-too-large.yaml",
        Rejects(&["/checks/0/tcp/cert_min_days"]),
    ),
    ("css-attribute-without-name.yaml", CannotTell),
    ("css-deep-nesting.yaml", CannotTell),
    ("css-too-long.yaml", CannotTell),
    ("css-unknown-pseudo.yaml", CannotTell),
    ("daemon-check-files-unmatched.yaml", CannotTell),
    ("daemon-defaults-interval-too-long.yaml", CannotTell),
    ("daemon-defaults-zero-timeout.yaml", CannotTell),
    ("daemon-escalate-after-too-long.yaml", CannotTell),
    (
        "daemon-metrics-step-histograms.yaml",
        Rejects(&["/metrics/step_histograms"]),
    ),
    ("daemon-status-page-duplicate-component.yaml", CannotTell),
    (
        "daemon-status-page-incident-status.yaml",
        Rejects(&["/status_page/components/0/incident/status"]),
    ),
    ("daemon-status-page-incident-without-cause.yaml", CannotTell),
    ("daemon-status-page-same-listen.yaml", CannotTell),
    ("daemon-status-page-secret-in-template.yaml", CannotTell),
    ("daemon-status-page-unknown-alert.yaml", CannotTell),
    ("daemon-status-page-unknown-check.yaml", CannotTell),
    ("daemon-external-url-credentials.yaml", CannotTell),
    (
        "daemon-external-url-not-http.yaml",
        Rejects(&["/external_url"]),
    ),
    ("daemon-external-url-query.yaml", CannotTell),
    ("daemon-maintenance-muted-forever.yaml", CannotTell),
    (
        "daemon-maintenance-bad-timezone.yaml",
        Rejects(&["/maintenance/0/timezone"]),
    ),
    (
        "retries-count-too-large.yaml",
        Rejects(&["/checks/0/retries/count"]),
    ),
    (
        "retries-count-zero.yaml",
        Rejects(&["/checks/0/retries/count"]),
    ),
    ("retries-on-heartbeat.yaml", Rejects(&["/checks/0/retries"])),
    ("retries-worst-case-exceeds-interval.yaml", CannotTell),
    ("daemon-maintenance-zero-duration.yaml", CannotTell),
    (
        "daemon-max-concurrency-too-large.yaml",
        Rejects(&["/max_concurrency"]),
    ),
    ("daemon-pagerduty-empty-routing-key.yaml", CannotTell),
    ("daemon-email-password-unencrypted.yaml", CannotTell),
    ("daemon-email-bad-recipient.yaml", CannotTell),
    ("daemon-repeat-interval-too-short.yaml", CannotTell),
    ("daemon-watchdog-bad-url.yaml", Rejects(&["/watchdog/url"])),
    ("daemon-watchdog-every-zero.yaml", CannotTell),
    ("daemon-webhook-empty-secret.yaml", CannotTell),
    ("daemon-webhook-header-line-break.yaml", CannotTell),
    // The dns kind: its keys' words, counts and lengths are in the schema; names, addresses'
    // ports, regexes and the relation between min and max are not.
    ("depends-on-cycle.yaml", CannotTell),
    ("depends-on-self.yaml", Rejects(&["/checks/1/depends_on"])),
    (
        "depends-on-too-many.yaml",
        Rejects(&["/checks/17/depends_on"]),
    ),
    ("depends-on-unknown.yaml", CannotTell),
    (
        "dns-answer-no-matcher.yaml",
        Rejects(&["/checks/0/dns/expect/answers/0"]),
    ),
    (
        "dns-answer-two-matchers.yaml",
        Rejects(&["/checks/0/dns/expect/answers/0"]),
    ),
    ("dns-bad-name.yaml", CannotTell),
    ("dns-bad-regex.yaml", CannotTell),
    (
        "dns-empty-contains.yaml",
        Rejects(&["/checks/0/dns/expect/answers/0/contains"]),
    ),
    (
        "dns-exact-too-long.yaml",
        Rejects(&["/checks/0/dns/expect/answers/0/exact"]),
    ),
    ("dns-lowercase-type.yaml", Rejects(&["/checks/0/dns/type"])),
    (
        "dns-max-answers-too-large.yaml",
        Rejects(&["/checks/0/dns/expect/max_answers"]),
    ),
    ("dns-min-above-max.yaml", CannotTell),
    ("dns-missing-name.yaml", Rejects(&["/checks/0/dns"])),
    (
        "dns-server-hostname.yaml",
        Rejects(&["/checks/0/dns/server"]),
    ),
    ("dns-server-port-zero.yaml", CannotTell),
    (
        "dns-too-many-answer-checks.yaml",
        Rejects(&["/checks/0/dns/expect/answers"]),
    ),
    ("dns-unknown-key.yaml", Rejects(&["/checks/0/dns/recurse"])),
    (
        "dns-unknown-match.yaml",
        Rejects(&["/checks/0/dns/expect/answers/0/match"]),
    ),
    (
        "dns-unknown-rcode.yaml",
        Rejects(&["/checks/0/dns/expect/rcode"]),
    ),
    (
        "dns-unknown-transport.yaml",
        Rejects(&["/checks/0/dns/transport"]),
    ),
    ("dns-unknown-type.yaml", Rejects(&["/checks/0/dns/type"])),
    ("dns-unknown-variable.yaml", CannotTell),
    ("header-value-line-break.yaml", CannotTell),
    ("heartbeat-every-too-long.yaml", CannotTell),
    ("huge-interval.yaml", CannotTell),
    (
        "queue-duplicate-queue.yaml",
        Rejects(&["/checks/0/queue/queues"]),
    ),
    (
        "queue-too-many-queues.yaml",
        Rejects(&["/checks/0/queue/queues"]),
    ),
    ("request-timeout-too-long.yaml", CannotTell),
    ("secret-file-device.yaml", CannotTell),
    ("too-many-labels.yaml", CannotTell),
    ("too-many-steps.yaml", Rejects(&["/checks/0/http/steps"])),
    ("url-userinfo.yaml", CannotTell),
    ("url-port-zero.yaml", CannotTell),
    ("tcp-port-zero.yaml", CannotTell),
    (
        "bad-body-limit.yaml",
        Rejects(&["/checks/0/http/body_limit"]),
    ),
    ("bad-css.yaml", CannotTell),
    ("bad-duration.yaml", Rejects(&["/checks/0/interval"])),
    (
        "bad-jsonpath-extract.yaml",
        Rejects(&["/checks/0/http/steps/0/extract/token/json"]),
    ),
    ("bad-jsonpath.yaml", CannotTell),
    ("bad-name.yaml", Rejects(&["/checks/0/name"])),
    ("bad-regex.yaml", CannotTell),
    (
        "bad-severity.yaml",
        Rejects(&["/checks/0/alerts/0/severity"]),
    ),
    // "5 of 3" has the form; N <= M is arithmetic.
    ("bad-window.yaml", CannotTell),
    ("daemon-bad-listen.yaml", Rejects(&["/listen"])),
    (
        "daemon-bad-maintenance-start.yaml",
        Rejects(&["/maintenance/0/start"]),
    ),
    ("daemon-missing-check-file.yaml", CannotTell),
    (
        "daemon-receiver-bad-url.yaml",
        Rejects(&["/receivers/0/slack/webhook_url"]),
    ),
    ("daemon-receiver-two-kinds.yaml", Rejects(&["/receivers/0"])),
    (
        "daemon-alertmanager-url-and-urls.yaml",
        Rejects(&["/receivers/0/alertmanager"]),
    ),
    // The same member written two ways: only canaryd compares URLs as parsed.
    ("daemon-alertmanager-duplicate-urls.yaml", CannotTell),
    ("daemon-unknown-key.yaml", Rejects(&["/recievers"])),
    ("daemon-unknown-receiver.yaml", CannotTell),
    ("duplicate-key.yaml", NotYaml),
    ("duplicate-name.yaml", CannotTell),
    ("duplicate-step.yaml", CannotTell),
    (
        "duration-without-unit.yaml",
        Rejects(&["/checks/0/timeout"]),
    ),
    ("expression-type-mismatch.yaml", CannotTell),
    ("expression-unknown-step.yaml", CannotTell),
    ("expression-unknown-variable.yaml", CannotTell),
    (
        "extract-two-sources.yaml",
        Rejects(&["/checks/0/http/steps/0/extract/csrf"]),
    ),
    (
        "heartbeat-bad-cron.yaml",
        Rejects(&["/checks/0/heartbeat/cron"]),
    ),
    (
        "heartbeat-bad-timezone.yaml",
        Rejects(&["/checks/0/heartbeat/timezone"]),
    ),
    ("heartbeat-cron-never-fires.yaml", CannotTell),
    ("heartbeat-cron-out-of-range.yaml", CannotTell),
    ("heartbeat-empty-token.yaml", CannotTell),
    (
        "heartbeat-every-and-cron.yaml",
        Rejects(&["/checks/0/heartbeat"]),
    ),
    (
        "heartbeat-no-schedule.yaml",
        Rejects(&["/checks/0/heartbeat"]),
    ),
    (
        "heartbeat-timezone-without-cron.yaml",
        Rejects(&["/checks/0/heartbeat/timezone"]),
    ),
    ("heartbeat-token-variable.yaml", CannotTell),
    (
        "heartbeat-unknown-key.yaml",
        Rejects(&["/checks/0/heartbeat/max_run_time"]),
    ),
    ("heartbeat-unknown-variable.yaml", CannotTell),
    // 0s and 500ms are durations; "at least 1s" is arithmetic.
    ("heartbeat-zero-grace.yaml", CannotTell),
    (
        "invalid-base-url.yaml",
        Rejects(&["/checks/0/http/base_url"]),
    ),
    (
        "invalid-method.yaml",
        Rejects(&["/checks/0/http/request/method"]),
    ),
    (
        "invalid-status-class.yaml",
        Rejects(&["/checks/0/http/expect/status"]),
    ),
    (
        "invalid-status.yaml",
        Rejects(&["/checks/0/http/expect/status"]),
    ),
    ("invalid-url.yaml", CannotTell),
    ("invalid-yaml.yaml", NotYaml),
    ("tab-indentation.yaml", NotYaml),
    ("missing-ca-file.yaml", CannotTell),
    ("missing-name.yaml", Rejects(&["/checks/0/name"])),
    ("missing-secret-env.yaml", CannotTell),
    ("missing-secret-file.yaml", CannotTell),
    ("no-kind.yaml", Rejects(&["/checks/0"])),
    (
        "queue-bad-redis-url.yaml",
        Rejects(&["/checks/0/queue/redis"]),
    ),
    (
        "queue-option-for-other-system.yaml",
        Rejects(&["/checks/0/queue/priority_steps", "/checks/1/queue"]),
    ),
    (
        "queue-unknown-system.yaml",
        Rejects(&["/checks/0/queue/system"]),
    ),
    ("queue-unknown-variable.yaml", CannotTell),
    (
        "relative-url-without-base.yaml",
        Rejects(&["/checks/0/http/request/url"]),
    ),
    ("request-and-steps.yaml", Rejects(&["/checks/0/http"])),
    ("tcp-bad-target.yaml", Rejects(&["/checks/0/tcp/target"])),
    ("timeout-exceeds-interval.yaml", CannotTell),
    ("totp-bad-seed.yaml", CannotTell),
    ("two-kinds.yaml", Rejects(&["/checks/0"])),
    ("undefined-variable.yaml", CannotTell),
    ("unknown-key-check.yaml", Rejects(&["/checks/0/intervall"])),
    (
        "unknown-key-expect.yaml",
        Rejects(&["/checks/0/http/expect/body_contain"]),
    ),
    (
        "unknown-key-request.yaml",
        Rejects(&["/checks/0/http/request/metod"]),
    ),
    ("unknown-secret-source.yaml", CannotTell),
    ("unparsable-expression.yaml", CannotTell),
    (
        "unsupported-scheme.yaml",
        Rejects(&["/checks/0/http/request/url"]),
    ),
    ("unterminated-reference.yaml", CannotTell),
    ("wrong-type-interval.yaml", Rejects(&["/checks/0/interval"])),
    (
        "wrong-type-labels.yaml",
        Rejects(&["/checks/0/labels/team"]),
    ),
];

#[test]
fn bad_fixtures_fail_the_schema_where_it_can_tell_and_only_there() {
    let dir = repo().join("tests/fixtures/bad");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    on_disk.sort();
    let listed: Vec<&str> = FIXTURES.iter().map(|(n, _)| *n).collect();
    let unlisted: Vec<&String> = on_disk
        .iter()
        .filter(|n| !listed.contains(&n.as_str()))
        .collect();
    assert!(
        unlisted.is_empty(),
        "fixtures missing from FIXTURES in tests/schema.rs (say whether the schema can tell): {unlisted:?}"
    );
    let stale: Vec<&&str> = listed
        .iter()
        .filter(|n| !on_disk.iter().any(|d| d == *n))
        .collect();
    assert!(
        stale.is_empty(),
        "FIXTURES names files that do not exist: {stale:?}"
    );

    let config = validator("config");
    let checks = validator("checks");
    let mut failures = Vec::new();
    for (name, verdict) in FIXTURES {
        let src = std::fs::read_to_string(dir.join(name)).unwrap();
        let v = if name.starts_with("daemon-") {
            &config
        } else {
            &checks
        };
        let json = yaml_to_json(&src);
        match (verdict, json) {
            (NotYaml, Err(_)) => {}
            (NotYaml, Ok(_)) => failures.push(format!("{name}: parses as YAML")),
            (_, Err(e)) => failures.push(format!("{name}: not YAML: {e}")),
            (CannotTell, Ok(j)) => {
                let (errors, _) = validate(v, &j);
                if !errors.is_empty() {
                    failures.push(format!(
                        "{name}: listed as beyond the schema, yet it fails it:\n  {}",
                        errors.join("\n  ")
                    ));
                }
            }
            (Rejects(paths), Ok(j)) => {
                let (errors, at) = validate(v, &j);
                if errors.is_empty() {
                    failures.push(format!("{name}: passes the schema"));
                }
                for p in *paths {
                    if !at.contains(*p) {
                        failures.push(format!(
                            "{name}: no error at {p}; errors:\n  {}",
                            errors.join("\n  ")
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ----- the schema never rejects what canaryd accepts -------------------------------------------

/// Check files canaryd accepts, written the ways its YAML decoder allows: numbers and YAML 1.1
/// booleans where text is expected, quoted numbers, null for "not set", every form of status,
/// duration and size.
const ACCEPTED_CHECKS: &[&str] = &[
    // Scalars read as text, booleans as YAML 1.1 words, integers from strings.
    r#"checks:
  - name: 123
    labels: {team: 42, paging: yes, _x: n}
    http:
      base_url: HTTP://127.0.0.1:8080
      follow_redirects: yes
      max_redirects: "0x10"
      body_limit: " 512 KiB "
      request:
        method: " post "
        url: /login
        headers: {X-Version: 2, Accept: on}
        query: {page: 1, all: true}
        form: {pin: 1234, remember: y}
        follow_redirects: Off
        timeout: 1.5s
      expect:
        status: [[200, 201], "3xx", " 404 ", "+200", "0200 - 299"]
        header: {Content-Type: 1}
        body_contains: ok
        body_not_contains: [1, true, error]
        body_regex: [ "^ok" ]
        cookie: [session]
        cert_min_days: "+30"
        url: 42
        json:
          "$.a": {exists: yes}
          "$.b": {a: 1, b: 2}
          "$.c": {}
          "$.d": [1, 2]
          "$.e": null
          "$.f": {equals: {x: 1}}
          "$.g": {exists: true, matches: ~}
          "$.h": {less_than: 3.5}
      extract:
        token: {json: "$.token"}
        x-y: {header: X-Token}
        code: {status: false}
        csrf: {css: "input", attr: 7}
    alerts:
      - name: y
        when: failed
        consecutive: "3"
        severity: ~
        labels: {route: 1}
        annotations: {summary: 5}
"#,
    // Null is "not set": a second kind, a body, a schedule key left empty.
    r#"checks:
  - name: a
    interval: 1h 30m
    timeout: "10s"
    tcp: {target: "[::1]:+443", tls: "true", cert_min_days: 7, tls_config: {insecure_skip_verify: Yes}}
    http: ~
    queue:
    alerts:
      - {name: A, when: failed, for: ~, window: " 3 of 5 "}
  - name: b
    interval: 0.5m
    http:
      base_url: ~
      request: {url: "http://127.0.0.1/", body: ~, json: {a: "${uuid}"}, method: ~}
      steps: ~
  - name: c
    heartbeat: {cron: "@daily", every: ~, timezone: Europe/Paris, grace: 1 hour}
  - name: d
    heartbeat: {every: 1d, cron: ~, timezone: ~}
"#,
    // Null for a list or map left empty, and files with nothing in them.
    r#"checks:
  - name: a
    labels: ~
    alerts: ~
    http:
      request: {url: "http://h/", headers: ~, query: ~, form: ~, json: ~}
      extract: ~
      expect: {header: ~, json: ~, status: ~}
  - name: b
    tcp: {target: "h:1", tls_config: ~}
    alerts:
      - {name: A, when: failed, labels: ~, annotations: ~}
"#,
    "checks:\n",
    "# nothing yet\n",
    "",
    // Every job system with the options it reads.
    r#"checks:
  - name: q1
    queue: {system: celery, redis: "redis://127.0.0.1:6379/0", priority_steps: [0, "3", 0x6], priority_separator: ":", queues: [celery, 1], prefix: ~}
  - name: q2
    queue: {system: redis, redis: "REDIS://127.0.0.1/0", keys: [a], patterns: ~, queues: ~}
  - name: q3
    queue: {system: bullmq, redis: "rediss://h:6380", queues: [mail], keys: ~, connect_timeout: 500ms}
  - name: q4
    queue: {system: sidekiq, redis: "unix:///tmp/redis.sock"}
"#,
    // The dns kind: every server form, flags as words, counts from strings, numbers as text.
    r#"checks:
  - name: d1
    dns:
      name: 1.example.test.
      type: AAAA
      server: "::1"
      transport: tcp
      recursion: no
      expect:
        rcode: NXDOMAIN
        authoritative: "yes"
        min_answers: "0"
        max_answers: 0x10
        answers:
          - {exact: 2001:db8::1}
          - {regex: "^2001:", match: all}
          - {contains: 42, match: none}
  - name: d2
    dns: {name: bücher.example, type: TXT, server: "192.0.2.53:5353", expect: ~}
  - name: d3
    dns: {name: example.test, server: "[2001:db8::53]:53", expect: {answers: ~}}
  - name: d4
    dns: {name: ., type: NS}
"#,
];

#[test]
fn the_schema_accepts_every_form_canaryd_accepts() {
    let checks = validator("checks");
    for (i, src) in ACCEPTED_CHECKS.iter().enumerate() {
        let file = PathBuf::from(format!("accepted-{i}.yaml"));
        if let Err(e) = canaryd::probe::check::load_checks_str(&file, src) {
            panic!("canaryd rejects case {i} (the case itself is wrong):\n{e}");
        }
        let (errors, _) = validate(&checks, &yaml_to_json(src).unwrap());
        assert!(
            errors.is_empty(),
            "the schema rejects case {i}, which canaryd accepts:\n{}",
            errors.join("\n")
        );
    }
}

#[test]
fn the_schema_accepts_every_form_of_canaryd_yaml_canaryd_accepts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.yaml"), "checks: []\n").unwrap();
    let daemon = r#"listen: "[::1]:9464"
state_dir: 5
check_files: [c.yaml]
max_concurrency: "8"
defaults: {interval: 1m, timeout: "5s", body_limit: 1048576}
receivers:
  - name: am
    alertmanager: {url: http://127.0.0.1:9093}
    slack: ~
  - name: hook
    webhook: {url: " https://127.0.0.1/hook", secret: 12345, headers: {X-Team: 7}}
  - name: pd
    pagerduty: {routing_key: 1234, url: ~}
routes:
  - match: {severity: critical, paging: yes}
    receivers: [am, hook]
    escalate: {after: 30m, receivers: [pd]}
    repeat_interval: ~
maintenance:
  - checks: [1]
    start: "2026-12-01 22:00:00"
    duration: 1h
    every: ~
    timezone: UTC
watchdog: {url: "http://127.0.0.1/ping", every: ~}
checks:
  - name: inline
    tcp: {target: "127.0.0.1:80"}
"#;
    let empty = "check_files: ~\ndefaults: ~\nchecks: ~\nreceivers: ~\nroutes:\n  - {receivers: [], match: ~}\nmaintenance: ~\n";
    let config = validator("config");
    for (i, src) in [daemon, empty, "# nothing yet\n"].iter().enumerate() {
        let path = dir.path().join("canaryd.yaml");
        std::fs::write(&path, src).unwrap();
        if let Err(e) = canaryd::loader::load(&path) {
            panic!("canaryd rejects case {i} (the case itself is wrong):\n{e}");
        }
        let (errors, _) = validate(&config, &yaml_to_json(src).unwrap());
        assert!(errors.is_empty(), "case {i}:\n{}", errors.join("\n"));
    }
}

// ----- rules beyond the fixtures: canaryd and the schema agree ---------------------------------

/// Check files canaryd rejects for a rule the schema states too, and where the schema says so.
const REJECTED_CHECKS: &[(&str, &str)] = &[
    (
        "checks:\n  - name: a\n    http:\n      request: {url: \"http://h/\", body: x, form: {a: b}}\n",
        "/checks/0/http/request",
    ),
    (
        "checks:\n  - name: a\n    http:\n      request: {url: \"http://h/\"}\n      extract:\n        v: {regex: x, attr: href}\n",
        "/checks/0/http/extract/v/css",
    ),
    (
        "checks:\n  - name: a\n    http:\n      request: {url: \"http://h/\"}\n      extract:\n        t: {json: \" $.t\"}\n",
        "/checks/0/http/extract/t/json",
    ),
    (
        "checks:\n  - name: a\n    http:\n      request: {url: \"http://h/\"}\n      extract:\n        uuid: {header: X-Id}\n",
        "/checks/0/http/extract/uuid",
    ),
    (
        "checks:\n  - name: a\n    http:\n      request: {url: \"http://h/\"}\n      expect:\n        json: {\"$.a\": {exists: true, equals: 1}}\n",
        "/checks/0/http/expect/json/$.a",
    ),
    (
        "checks:\n  - name: a\n    http:\n      request: {url: \"http://h/\"}\n      expect:\n        json: {\"$.a\": {exist: true}}\n",
        "/checks/0/http/expect/json/$.a",
    ),
    (
        "checks:\n  - name: a\n    http:\n      request: {url: \"http://h/\"}\n      expect:\n        header: {\"Bad Name\": x}\n",
        "/checks/0/http/expect/header/Bad Name",
    ),
    (
        "checks:\n  - name: a\n    http:\n      base_url: \"http://h\"\n      expect: {status: 200}\n      steps:\n        - {name: s, request: {url: /}}\n",
        "/checks/0/http/expect",
    ),
    (
        "checks:\n  - name: a\n    http:\n      steps:\n        - {name: s, request: {url: /x}}\n",
        "/checks/0/http/steps/0/request/url",
    ),
    (
        "checks:\n  - name: a\n    http:\n      base_url: \"http://h\"\n      steps: []\n",
        "/checks/0/http/steps",
    ),
    (
        "checks:\n  - name: a\n    http:\n      base_url: \"http://h\"\n      steps:\n        - {name: Form, request: {url: /}}\n",
        "/checks/0/http/steps/0/name",
    ),
    (
        "checks:\n  - name: a\n    http:\n      request: {url: \"http://h/\"}\n      max_redirects: 101\n",
        "/checks/0/http/max_redirects",
    ),
    (
        "checks:\n  - name: a\n    http:\n      request: {url: \"http://h/\"}\n      tls_config: {cert_file: c.pem}\n",
        "/checks/0/http/tls_config/key_file",
    ),
    (
        "checks:\n  - name: a\n    labels: {team-name: web}\n    tcp: {target: \"h:1\"}\n",
        "/checks/0/labels/team-name",
    ),
    (
        "checks:\n  - name: a\n    tcp: {target: \"h:1\"}\n    alerts:\n      - {name: A, when: failed, for: 1m, consecutive: 2}\n",
        "/checks/0/alerts/0",
    ),
    (
        "checks:\n  - name: a\n    tcp: {target: \"h:1\"}\n    alerts:\n      - {name: 1A, when: failed}\n",
        "/checks/0/alerts/0/name",
    ),
    (
        "checks:\n  - name: a\n    tcp: {target: \"h:1\"}\n    alerts:\n      - {name: A, when: failed, consecutive: 0}\n",
        "/checks/0/alerts/0/consecutive",
    ),
    (
        "checks:\n  - name: a\n    tcp: {target: \"h:1\"}\n    alerts:\n      - {name: A, when: failed, window: three of five}\n",
        "/checks/0/alerts/0/window",
    ),
    (
        "checks:\n  - name: a\n    queue: {system: bullmq, redis: \"redis://h\", queues: [\"a:b\"]}\n",
        "/checks/0/queue/queues/0",
    ),
    (
        "checks:\n  - name: a\n    queue: {system: sidekiq, redis: \"redis://h\", queues: []}\n",
        "/checks/0/queue/queues",
    ),
    (
        "checks:\n  - name: a\n    queue: {system: sidekiq, redis: \"redis://h\", queues: [a, a]}\n",
        "/checks/0/queue/queues",
    ),
    (
        "checks:\n  - name: a\n    queue: {system: redis, redis: \"redis://h\", keys: [k], prefix: p}\n",
        "/checks/0/queue/prefix",
    ),
    (
        "checks:\n  - name: a\n    queue: {system: sidekiq, redis: \"redis://h\", keys: [k]}\n",
        "/checks/0/queue/keys",
    ),
    (
        "checks:\n  - name: a\n    interval: 30\n    tcp: {target: \"h:1\"}\n",
        "/checks/0/interval",
    ),
    (
        "checks:\n  - name: a\n    tcp: {target: \"h:1\", tls: maybe}\n",
        "/checks/0/tcp/tls",
    ),
];

#[test]
fn where_the_schema_states_a_rule_canaryd_enforces_it_too() {
    let checks = validator("checks");
    let mut failures = Vec::new();
    for (src, path) in REJECTED_CHECKS {
        if canaryd::probe::check::load_checks_str(Path::new("case.yaml"), src).is_ok() {
            failures.push(format!("canaryd accepts (the case is wrong):\n{src}"));
        }
        let (errors, at) = validate(&checks, &yaml_to_json(src).unwrap());
        if !at.contains(*path) {
            failures.push(format!(
                "no schema error at {path} for:\n{src}errors:\n  {}",
                errors.join("\n  ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
