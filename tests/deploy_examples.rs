//! The deployment examples in `examples/`, each checked by the real tool a team would run on
//! them: promtool (`prometheus.yml`, `prometheus-rules.yml` and its unit tests), amtool and a
//! live Alertmanager (`alertmanager.yml`: syntax, routes, templates, inhibitions),
//! systemd-analyze (`canaryd.service`: verify, security), `canaryd check` and amtool with two
//! live cluster members (`ha/`: two replicas → an Alertmanager cluster) — and the rules' metric
//! names and labels against the `/metrics` of a running canaryd, so that a renamed metric cannot
//! leave a rule silently matching nothing.
//!
//! A missing tool skips a test, except under `CI=true`, where it fails (`scripts/setup`
//! installs prometheus, prometheus-alertmanager, systemd and redis-server).

mod adversary;
mod services;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use adversary::{Behavior, Reply, Server, TlsSetup};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_canaryd");

fn example(name: &str) -> PathBuf {
    services::repo_root().join("examples").join(name)
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn read_yaml(path: &Path) -> Value {
    serde_saphyr::from_str(&read(path))
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

/// Runs `cmd` to completion: whether it succeeded, and everything it printed.
fn run(mut cmd: Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Runs `cmd` and panics with its output unless it exits 0; returns the output.
fn run_ok(cmd: Command) -> String {
    let shown = format!("{cmd:?}");
    let (ok, text) = run(cmd);
    assert!(ok, "{shown} failed:\n{text}");
    text
}

fn tool(name: &str, args: &[&str], file: &Path) -> Option<Command> {
    let mut cmd = Command::new(services::require(name)?);
    cmd.args(args).arg(file);
    Some(cmd)
}

// ---------------------------------------------------------------------------------------------
// Prometheus: promtool
// ---------------------------------------------------------------------------------------------

#[test]
fn promtool_accepts_the_prometheus_config_and_the_rule_file_it_names() {
    let Some(cmd) = tool("promtool", &["check", "config"], &example("prometheus.yml")) else {
        return;
    };
    let out = run_ok(cmd);
    // `check config` checks the rule files too: make sure ours was among them.
    assert!(
        out.contains("SUCCESS: 1 rule files found") && out.contains("prometheus-rules.yml"),
        "promtool did not check prometheus-rules.yml through the config:\n{out}"
    );
}

#[test]
fn promtool_accepts_the_rules() {
    let Some(cmd) = tool(
        "promtool",
        &["check", "rules"],
        &example("prometheus-rules.yml"),
    ) else {
        return;
    };
    let out = run_ok(cmd);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn promtool_unit_tests_of_the_rules_pass() {
    let Some(cmd) = tool(
        "promtool",
        &["test", "rules"],
        &example("prometheus-rules.test.yml"),
    ) else {
        return;
    };
    let out = run_ok(cmd);
    assert!(out.contains("SUCCESS"), "{out}");
}

/// Every alert of the rules file has a unit test where it fires and one where it does not, and
/// every recording rule a test of its value.
#[test]
fn the_unit_tests_cover_every_alert_firing_and_not_and_every_recording_rule() {
    let rules = read_yaml(&example("prometheus-rules.yml"));
    let tests = read_yaml(&example("prometheus-rules.test.yml"));
    let (mut alerts, mut records) = (BTreeSet::new(), BTreeSet::new());
    for rule in all_rules(&rules) {
        if let Some(a) = rule["alert"].as_str() {
            alerts.insert(a.to_string());
        }
        if let Some(r) = rule["record"].as_str() {
            records.insert(r.to_string());
        }
    }
    let (mut fires, mut quiet, mut valued) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for test in tests["tests"].as_array().expect("tests: a list") {
        for case in test["alert_rule_test"].as_array().into_iter().flatten() {
            let name = case["alertname"].as_str().unwrap_or_default().to_string();
            match case["exp_alerts"].as_array() {
                Some(exp) if !exp.is_empty() => fires.insert(name),
                _ => quiet.insert(name),
            };
        }
        for case in test["promql_expr_test"].as_array().into_iter().flatten() {
            let expr = case["expr"].as_str().unwrap_or_default();
            valued.extend(
                records
                    .iter()
                    .filter(|r| expr.contains(r.as_str()))
                    .cloned(),
            );
        }
    }
    let missing = |seen: &BTreeSet<String>, of: &BTreeSet<String>| -> Vec<String> {
        of.difference(seen).cloned().collect()
    };
    assert!(alerts.len() >= 10, "only {alerts:?} in the rules file?");
    assert_eq!(
        missing(&fires, &alerts),
        Vec::<String>::new(),
        "alerts without a firing case"
    );
    assert_eq!(
        missing(&quiet, &alerts),
        Vec::<String>::new(),
        "alerts without a not-firing case"
    );
    assert_eq!(
        missing(&valued, &records),
        Vec::<String>::new(),
        "recording rules whose value no promql_expr_test checks"
    );
}

fn all_rules(rules: &Value) -> impl Iterator<Item = &Value> {
    rules["groups"]
        .as_array()
        .expect("groups: a list")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules: a list"))
}

// ---------------------------------------------------------------------------------------------
// Alertmanager: amtool and a live Alertmanager
// ---------------------------------------------------------------------------------------------

// The `*_file` secrets it names (/etc/alertmanager/secrets/...) need not exist: amtool 0.25 and
// Alertmanager read them when a notification is sent, so the example is checked as shipped.
#[test]
fn amtool_accepts_the_alertmanager_config() {
    let Some(cmd) = tool("amtool", &["check-config"], &example("alertmanager.yml")) else {
        return;
    };
    let out = run_ok(cmd);
    assert!(
        out.contains("SUCCESS") && out.contains("3 inhibit rules"),
        "{out}"
    );
}

#[test]
fn alertmanager_routes_pages_to_the_pager_and_the_rest_to_chat_by_team() {
    let Some(amtool) = services::require("amtool") else {
        return;
    };
    let config = example("alertmanager.yml");
    // (labels of an alert, the receiver it must reach)
    let cases: &[(&[&str], &str)] = &[
        // canaryd's own alerts carry the check's labels, team included.
        (
            &[
                "alertname=LoginFailing",
                "check=shop-login",
                "severity=critical",
            ],
            "pager",
        ),
        (
            &[
                "alertname=JobsStalled",
                "check=pay-jobs",
                "severity=critical",
                "team=payments",
            ],
            "payments-pager",
        ),
        (
            &[
                "alertname=LoginSlow",
                "check=pay-login",
                "severity=warning",
                "team=payments",
            ],
            "payments-chat",
        ),
        (
            &[
                "alertname=CheckFailing",
                "check=shop-home",
                "severity=error",
            ],
            "chat",
        ),
        // Prometheus-side alerts: no team, the check's name routes them.
        (
            &[
                "alertname=CheckFailing",
                "check=billing-jobs",
                "severity=critical",
            ],
            "payments-pager",
        ),
        (
            &[
                "alertname=JobsBacklog",
                "check=billing-jobs",
                "severity=warning",
                "cause=age",
            ],
            "payments-chat",
        ),
        (
            &["alertname=CanarydDown", "job=canaryd", "severity=critical"],
            "pager",
        ),
        (
            &[
                "alertname=CanarydDown",
                "job=canaryd",
                "instance=canaryd-3:9464",
                "severity=warning",
            ],
            "chat",
        ),
    ];
    for (labels, receiver) in cases {
        let mut cmd = Command::new(&amtool);
        cmd.args(["config", "routes", "test"])
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--verify.receivers={receiver}"))
            .args(*labels);
        let (ok, out) = run(cmd);
        assert!(ok, "{labels:?} should reach {receiver}:\n{out}");
    }
}

/// Every templated text of the receivers renders (amtool's example data): a typo in a field
/// name or a broken action fails here, not at 3 a.m. when the first page goes out.
#[test]
fn alertmanager_notification_templates_render() {
    let Some(amtool) = services::require("amtool") else {
        return;
    };
    let config = read_yaml(&example("alertmanager.yml"));
    let dir = tempfile::tempdir().unwrap();
    let no_templates = dir.path().join("none.tmpl");
    fs::write(&no_templates, "").unwrap();
    let mut rendered = 0;
    for receiver in config["receivers"].as_array().expect("receivers") {
        let configs = receiver.as_object().into_iter().flatten();
        for (_, list) in configs.filter(|(k, _)| k.ends_with("_configs")) {
            for item in list.as_array().into_iter().flatten() {
                for (field, text) in item.as_object().into_iter().flatten() {
                    let Some(text) = text.as_str().filter(|t| t.contains("{{")) else {
                        continue;
                    };
                    let mut cmd = Command::new(&amtool);
                    cmd.args(["template", "render"])
                        .arg(format!("--template.glob={}", no_templates.display()))
                        .arg(format!("--template.text={text}"));
                    let (ok, out) = run(cmd);
                    assert!(
                        ok,
                        "receiver {}, {field}: {text:?} does not render:\n{out}",
                        receiver["name"]
                    );
                    rendered += 1;
                }
            }
        }
    }
    assert!(rendered >= 4, "only {rendered} templates found");
}

#[test]
fn alertmanager_inhibits_warnings_under_a_page_and_alerts_of_a_replica_that_is_down() {
    let Some(am) = services::Alertmanager::start(&read(&example("alertmanager.yml"))) else {
        return;
    };
    // What Prometheus and canaryd would send during one bad hour.
    let alerts = serde_json::json!([
        {"labels": {"alertname": "CheckFailing", "check": "shop-login", "severity": "critical"}},
        {"labels": {"alertname": "LoginSlow", "check": "shop-login", "severity": "warning"}},
        {"labels": {"alertname": "LoginSlow", "check": "shop-home", "severity": "warning"}},
        {"labels": {"alertname": "CanarydDown", "job": "canaryd", "instance": "canaryd-3:9464",
                    "replica": "c", "severity": "warning"}},
        {"labels": {"alertname": "CanarydNotificationsFailing", "job": "canaryd",
                    "instance": "canaryd-3:9464", "receiver": "oncall", "cause": "stuck",
                    "severity": "critical"}},
        {"labels": {"alertname": "CanarydReloadFailed", "job": "canaryd",
                    "instance": "canaryd-1:9464", "severity": "warning"}},
        {"labels": {"alertname": "CanarydDown", "job": "canaryd", "severity": "critical"}},
    ]);
    let resp = services::http_post(
        &format!("{}/api/v2/alerts", am.url()),
        "application/json",
        alerts.to_string().as_bytes(),
    )
    .expect("POST /api/v2/alerts");
    assert_eq!(resp.status, 200, "{}", resp.text());

    let key = |a: &Value| {
        let l = &a["labels"];
        format!(
            "{} {}",
            l["alertname"].as_str().unwrap_or(""),
            l["check"]
                .as_str()
                .or(l["instance"].as_str())
                .unwrap_or("-")
        )
    };
    // Alertmanager works out inhibitions when asked; poll until it lists all seven.
    let deadline = Instant::now() + Duration::from_secs(15);
    let states: BTreeMap<String, String> = loop {
        let listed = am.alerts();
        let listed = listed.as_array().cloned().unwrap_or_default();
        if listed.len() == 7 || Instant::now() > deadline {
            break listed
                .iter()
                .map(|a| (key(a), a["status"]["state"].as_str().unwrap_or("?").into()))
                .collect();
        }
        sleep(Duration::from_millis(100));
    };
    let expected: BTreeMap<String, String> = [
        ("CheckFailing shop-login", "active"),
        // the page about shop-login makes its warning noise ...
        ("LoginSlow shop-login", "suppressed"),
        // ... not another check's
        ("LoginSlow shop-home", "active"),
        // no replica up: one page, not a warning per replica
        ("CanarydDown canaryd-3:9464", "suppressed"),
        ("CanarydDown -", "active"),
        // the replica is down: its stale notification rate says nothing new
        ("CanarydNotificationsFailing canaryd-3:9464", "suppressed"),
        // a critical alert without a check must not inhibit every warning without one
        ("CanarydReloadFailed canaryd-1:9464", "active"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(
        states,
        expected,
        "alert states in Alertmanager\n{}",
        am.log_tail(20)
    );
}

// ---------------------------------------------------------------------------------------------
// High availability: examples/ha/ (two replicas → an Alertmanager cluster → one notification;
// tests/alertmanager_ha.rs runs that setup end to end)
// ---------------------------------------------------------------------------------------------

#[test]
fn the_ha_replicas_config_passes_canaryd_check_and_sends_to_two_members() {
    let config = example("ha/canaryd.yaml");
    let mut cmd = Command::new(BIN);
    cmd.args(["check", "--config"]).arg(&config);
    let out = run_ok(cmd);
    assert!(out.contains("ok: 1 check in 1 check file"), "{out}");
    let yaml = read_yaml(&config);
    let receivers = yaml["receivers"].as_array().unwrap();
    assert_eq!(receivers.len(), 1, "only the cluster: {receivers:?}");
    let urls = receivers[0]["alertmanager"]["urls"].as_array().unwrap();
    assert_eq!(urls.len(), 2, "{urls:?}");
}

#[test]
fn amtool_accepts_the_ha_alertmanager_config_and_two_members_form_a_cluster_with_it() {
    let config = example("ha/alertmanager.yml");
    let Some(cmd) = tool("amtool", &["check-config"], &config) else {
        return;
    };
    let out = run_ok(cmd);
    assert!(
        out.contains("SUCCESS") && out.contains("1 receivers"),
        "{out}"
    );
    let yaml = read_yaml(&config);
    assert_eq!(
        yaml["receivers"][0]["pagerduty_configs"][0]["send_resolved"],
        true
    );
    // The file as shipped runs a cluster member (the routing key file is read only to notify).
    let text = read(&config);
    let Some(am1) = services::Alertmanager::start_member(&text, &[]) else {
        return;
    };
    let first = am1.cluster_addr().unwrap().to_string();
    let Some(am2) = services::Alertmanager::start_member(&text, &[&first]) else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while am1.cluster_peers() != 2 || am2.cluster_peers() != 2 {
        assert!(
            Instant::now() < deadline,
            "no cluster of two: {} / {}\n{}",
            am1.status(),
            am2.status(),
            am2.log_tail(20)
        );
        sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------------
// systemd: systemd-analyze
// ---------------------------------------------------------------------------------------------

/// A copy of the unit whose binary is the one just built (systemd-analyze verify checks that
/// the binaries exist), in a directory of its own under its own name.
fn unit_copy(dir: &Path) -> PathBuf {
    let unit = read(&example("canaryd.service"));
    let installed = "/usr/local/bin/canaryd";
    assert!(
        unit.contains(&format!("ExecStart={installed} run --config ")),
        "ExecStart should run {installed} run --config ...:\n{unit}"
    );
    let path = dir.join("canaryd.service");
    fs::write(&path, unit.replace(installed, BIN)).unwrap();
    path
}

fn verify(analyze: &Path, unit: &Path) -> (bool, Vec<String>, String) {
    let mut cmd = Command::new(analyze);
    cmd.args(["verify", "--man=no"]).arg(unit);
    let (ok, out) = run(cmd);
    // Only what concerns our unit: a container may lack units others depend on.
    let about_unit = out
        .lines()
        .filter(|l| l.contains("canaryd"))
        .map(str::to_string)
        .collect();
    (ok, about_unit, out)
}

#[test]
fn systemd_analyze_verifies_the_unit_without_a_warning() {
    let Some(analyze) = services::require("systemd-analyze") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_copy(dir.path());
    let (ok, warnings, out) = verify(&analyze, &unit);
    assert!(ok && warnings.is_empty(), "systemd-analyze verify:\n{out}");

    // Silence means something: the same tool, here, reports a mistyped option and a missing
    // binary in a copy.
    let broken = dir.path().join("broken");
    fs::create_dir(&broken).unwrap();
    let text = read(&unit)
        .replace("ProtectSystem=strict", "ProtectSystem=strickt")
        .replace(BIN, "/nonexistent/canaryd");
    let broken_unit = broken.join("canaryd.service");
    fs::write(&broken_unit, text).unwrap();
    let (ok, warnings, out) = verify(&analyze, &broken_unit);
    assert!(!ok, "a missing ExecStart binary should fail verify:\n{out}");
    assert!(
        warnings.iter().any(|l| l.contains("strickt")),
        "the mistyped ProtectSystem= should be reported:\n{out}"
    );
}

#[test]
fn systemd_analyze_rates_the_unit_hardened() {
    let Some(analyze) = services::require("systemd-analyze") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_copy(dir.path());
    // --threshold is the exposure level × 10: 20 is "2.0 OK" on systemd's 0–10 scale
    // (an unhardened service scores 9.6).
    let mut cmd = Command::new(&analyze);
    cmd.args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
        .arg(&unit);
    let (ok, out) = run(cmd);
    let overall = out
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or("(no overall exposure level printed)");
    assert!(ok, "exposure above 2.0: {overall}\n{out}");
}

// ---------------------------------------------------------------------------------------------
// The rules read metrics canaryd exports
// ---------------------------------------------------------------------------------------------

/// What a running canaryd exports: sample names, and for each the label names and values seen.
#[derive(Default)]
struct Exported {
    labels: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

impl Exported {
    /// From the Prometheus text format.
    fn parse(text: &str) -> Exported {
        let mut e = Exported::default();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (name, labels) = services::parse_sample(line);
            let entry = e.labels.entry(name).or_default();
            for (k, v) in labels {
                entry.entry(k).or_default().insert(v);
            }
        }
        e
    }

    fn all_label_names(&self) -> BTreeSet<&str> {
        self.labels
            .values()
            .flat_map(|l| l.keys().map(String::as_str))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num,
    Punct(String),
}

/// PromQL tokens: enough to find selectors, matchers and grouping labels.
fn lex(expr: &str) -> Vec<Tok> {
    let chars: Vec<char> = expr.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if matches!(c, '"' | '\'' | '`') {
            let mut s = String::new();
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' && c != '`' {
                    i += 1;
                }
                if let Some(&ch) = chars.get(i) {
                    s.push(ch);
                }
                i += 1;
            }
            i += 1;
            toks.push(Tok::Str(s));
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // numbers and durations (5m, 1h30m, 1e3)
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            toks.push(Tok::Num);
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            toks.push(Tok::Ident(chars[start..i].iter().collect()));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            if ["==", "!=", "=~", "!~", ">=", "<="].contains(&two.as_str()) {
                toks.push(Tok::Punct(two));
                i += 2;
            } else {
                toks.push(Tok::Punct(c.to_string()));
                i += 1;
            }
        }
    }
    toks
}

/// A series selector: metric name (if written) and matchers `(label, op, value)`.
#[derive(Debug)]
struct Selector {
    name: Option<String>,
    matchers: Vec<(String, String, String)>,
}

/// The selectors of a PromQL expression, and the labels named in `by`, `without`, `on`,
/// `ignoring`, `group_left` and `group_right`.
fn selectors(expr: &str) -> (Vec<Selector>, BTreeSet<String>) {
    const GROUPING: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const KEYWORDS: [&str; 20] = [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "atan2", // operators, numbers
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile", // aggregations: `sum by (x) (...)` has no `(` after `sum`
    ];
    let toks = lex(expr);
    let (mut found, mut grouping) = (Vec::new(), BTreeSet::new());
    let punct = |i: usize, p: &str| matches!(toks.get(i), Some(Tok::Punct(x)) if x == p);
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Ident(w) if GROUPING.contains(&w.to_ascii_lowercase().as_str()) => {
                i += 1;
                if punct(i, "(") {
                    i += 1;
                    while i < toks.len() && !punct(i, ")") {
                        if let Tok::Ident(label) = &toks[i] {
                            grouping.insert(label.clone());
                        }
                        i += 1;
                    }
                }
            }
            Tok::Ident(w) if KEYWORDS.contains(&w.to_ascii_lowercase().as_str()) => i += 1,
            Tok::Ident(_) if punct(i + 1, "(") => i += 1, // a function or aggregation
            Tok::Ident(name) => {
                let name = Some(name.clone());
                i += 1;
                let matchers = if punct(i, "{") {
                    matchers(&toks, &mut i)
                } else {
                    Vec::new()
                };
                found.push(Selector { name, matchers });
            }
            Tok::Punct(p) if p == "{" => {
                let matchers = matchers(&toks, &mut i);
                found.push(Selector {
                    name: None,
                    matchers,
                });
            }
            _ => i += 1,
        }
    }
    (found, grouping)
}

/// Reads `{label op "value", ...}` from `toks[*i]` (the `{`), leaving `*i` after the `}`.
fn matchers(toks: &[Tok], i: &mut usize) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    *i += 1;
    while let (Some(Tok::Ident(label)), Some(Tok::Punct(op)), Some(Tok::Str(value))) =
        (toks.get(*i), toks.get(*i + 1), toks.get(*i + 2))
    {
        out.push((label.clone(), op.clone(), value.clone()));
        *i += 3;
        if matches!(toks.get(*i), Some(Tok::Punct(p)) if p == ",") {
            *i += 1;
        }
    }
    assert!(
        matches!(toks.get(*i), Some(Tok::Punct(p)) if p == "}"),
        "unexpected tokens in a matcher list: {:?}",
        &toks[*i..(*i + 3).min(toks.len())]
    );
    *i += 1;
    out
}

/// Labels Prometheus adds (`job`, `instance`) or the scrape config sets (`replica`), not canaryd.
const TARGET_LABELS: [&str; 3] = ["job", "instance", "replica"];

/// Every problem with the rules' use of canaryd's metrics; empty when they all exist.
fn problems(rules: &Value, exported: &Exported) -> Vec<String> {
    let records: BTreeSet<&str> = all_rules(rules)
        .filter_map(|r| r["record"].as_str())
        .collect();
    let all_labels = exported.all_label_names();
    let mut problems = Vec::new();
    for rule in all_rules(rules) {
        let name = rule["alert"]
            .as_str()
            .or(rule["record"].as_str())
            .unwrap_or("?");
        let expr = rule["expr"].as_str().unwrap_or_default();
        let (found, grouping) = selectors(expr);
        for label in &grouping {
            if !all_labels.contains(label.as_str()) && !TARGET_LABELS.contains(&label.as_str()) {
                problems.push(format!(
                    "{name}: groups by {label:?}, a label no canaryd series has"
                ));
            }
        }
        for sel in found {
            let Some(metric) = sel.name else {
                problems.push(format!("{name}: a selector without a metric name: {sel:?}"));
                continue;
            };
            if metric.contains(':') {
                if !records.contains(metric.as_str()) {
                    problems.push(format!("{name}: reads {metric}, which no rule records"));
                }
                continue;
            }
            if metric == "up" {
                continue; // made by Prometheus for every target
            }
            let Some(labels) = exported.labels.get(&metric) else {
                problems.push(format!(
                    "{name}: reads {metric}, which canaryd does not export"
                ));
                continue;
            };
            for (label, op, value) in &sel.matchers {
                if TARGET_LABELS.contains(&label.as_str()) {
                    continue;
                }
                let Some(values) = labels.get(label) else {
                    problems.push(format!("{name}: {metric} has no label {label:?}"));
                    continue;
                };
                // `=` names a value; `=~` an alternation, of which one must be seen.
                let seen = match op.as_str() {
                    "=" => values.contains(value),
                    "=~" => value.split('|').any(|v| values.contains(v)),
                    _ => true,
                };
                if !seen {
                    problems.push(format!(
                        "{name}: {metric}{{{label}{op}{value:?}}}: canaryd exported only {values:?}"
                    ));
                }
            }
        }
    }
    problems
}

#[test]
fn the_promql_reader_finds_selectors_matchers_and_grouping_labels() {
    let (found, grouping) = selectors(
        r#"sum by (check, le) (rate(x_bucket{job="canaryd", result=~"a|b"}[5m])) > on (check) group_left y offset 10m unless absent(z{q='v'}) and ignoring(le) r:u:le"#,
    );
    let names: Vec<_> = found.iter().map(|s| s.name.clone().unwrap()).collect();
    assert_eq!(names, ["x_bucket", "y", "z", "r:u:le"]);
    assert_eq!(
        found[0].matchers,
        [
            ("job".into(), "=".into(), "canaryd".into()),
            ("result".into(), "=~".into(), "a|b".into())
        ]
    );
    assert_eq!(found[2].matchers, [("q".into(), "=".into(), "v".into())]);
    assert_eq!(grouping.into_iter().collect::<Vec<_>>(), ["check", "le"]);
    assert_eq!(
        services::parse_sample(r#"x{check="a\"b",step="s"} 1"#).1,
        [
            ("check".to_string(), "a\"b".to_string()),
            ("step".to_string(), "s".to_string())
        ]
    );
}

#[test]
fn every_metric_and_label_the_rules_read_is_one_canaryd_exports() {
    let rules = read_yaml(&example("prometheus-rules.yml"));
    let Some(redis) = services::Redis::start() else {
        return;
    };
    // Sidekiq's keys: one waiting job (enqueued 30 s ago), its counters.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let job = format!(
        r#"{{"class":"InvoiceJob","queue":"default","jid":"0123456789abcdef01234567","args":[],"enqueued_at":{}.5}}"#,
        now - 30
    );
    redis.cmd(&["SADD", "queues", "default"]);
    redis.cmd(&["LPUSH", "queue:default", &job]);
    redis.cmd(&["SET", "stat:processed", "10"]);
    redis.cmd(&["SET", "stat:failed", "2"]);

    // An HTTPS login (steps, certificate), a receiver that refuses every notification (4xx:
    // rejected) and one that cannot be reached (retried).
    let site = Server::start_tls(
        Behavior::Reply(Reply::new(200).body("welcome")),
        TlsSetup::default(),
    );
    let rejecting = Server::start(Behavior::Reply(Reply::new(400).body("bad routing key")));
    let closed = services::free_port();

    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", services::free_port());
    fs::write(
        dir.path().join("canaryd.yaml"),
        format!(
            "listen: {addr}\nstate_dir: state\ncheck_files: [checks.yaml]\nreceivers:\n  - name: rejecting\n    webhook: {{url: \"{}\"}}\n  - name: unreachable\n    webhook: {{url: \"http://127.0.0.1:{closed}/hook\"}}\n",
            rejecting.url("/hook")
        ),
    )
    .unwrap();
    fs::write(
        dir.path().join("checks.yaml"),
        format!(
            r#"checks:
  - name: shop-login
    interval: 1s
    timeout: 900ms
    http:
      base_url: "{site}"
      tls_config: {{ca_file: "{ca}"}}
      steps:
        - name: form
          request: {{method: GET, url: /login}}
        - name: submit
          request: {{method: POST, url: /login, form: {{user: probe}}}}
  - name: db
    interval: 1s
    timeout: 500ms
    tcp: {{target: "127.0.0.1:{closed}"}}
    alerts:
      - name: DbDown
        when: failed
        severity: critical
  - name: billing-jobs
    interval: 1s
    timeout: 900ms
    queue:
      system: sidekiq
      redis: "{redis}/0"
      queues: [default]
  - name: nightly-invoices
    interval: 1s
    heartbeat: {{every: 1h}}
"#,
            site = site.url(""),
            ca = site.ca_file().display(),
            redis = redis.url(),
        ),
    )
    .unwrap();

    let config = dir.path().join("canaryd.yaml");
    let daemon = services::Canaryd::start(services::canaryd_run(&config), &addr)
        .unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(30);

    // Scrape until what the rules read has appeared (the first runs, the first failed
    // deliveries), or the wait runs out; then report every problem at once.
    let url = daemon.url("/metrics");
    let (exported, problems) = loop {
        let text = services::http_get(&url).expect("GET /metrics").text();
        let exported = Exported::parse(&text);
        let problems = problems(&rules, &exported);
        if problems.is_empty() || Instant::now() > deadline {
            break (exported, problems);
        }
        sleep(Duration::from_millis(200));
    };
    assert!(
        problems.is_empty(),
        "prometheus-rules.yml reads what canaryd does not export:\n  {}\ncanaryd exported: {:?}",
        problems.join("\n  "),
        exported.labels.keys().collect::<Vec<_>>()
    );
}
