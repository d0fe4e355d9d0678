//! The Grafana dashboards in `dashboards/`, as a user importing them would meet them.
//!
//! - Every file is importable Grafana JSON with a `datasource` variable and no hard-coded
//!   datasource UID anywhere, unique panel ids, and a Prometheus query in every panel.
//! - Every panel query works: the demo app (a Django-like login), its Redis-backed Sidekiq-style
//!   job system and its pager run in this test (compiled in with `#[path]`, as in `tests/demo.rs`);
//!   an nginx serves HTTPS with a certificate made here; the real `canaryd` binary runs the demo's
//!   check files plus an HTTPS check and a heartbeat, paging the demo's pager and a receiver that
//!   refuses everything, four times (same check files, own state directories): two replicas
//!   running every check (Prometheus job `canaryd`) and two shards splitting them (`--shard 1/2`
//!   and `2/2`, job `canaryd-shards`); a real Prometheus scrapes all four every second. The login
//!   is broken on purpose (`/control?break_login=1`) so failures, a firing alert and
//!   notifications exist.
//!   Then each variable query (`label_values(...)` through the label-values API) and each panel
//!   target (variables replaced as Grafana replaces them with "All" selected, under two
//!   `$__rate_interval`s) is evaluated through `/api/v1/query` until each has parsed and returned
//!   data, within a bounded wait. A failure names the dashboard, the panel and the query.
//! - The panels that count checks, steps, alerts, jobs and workers are right with replicas and
//!   with shards: with both replicas selected each shows what one replica alone shows (not twice
//!   as much), with both shards what the two add up to, and for both the numbers a user knows:
//!   passing + failing checks is the number of checks, the demo's one worker, the jobs parked in
//!   a queue nobody drains.
//!
//! Without prometheus, redis-server or nginx the live test is skipped, except under `CI=true`,
//! where it fails.

mod services;

#[allow(dead_code)]
#[path = "../examples/demo/app.rs"]
mod app;
#[allow(dead_code)]
#[path = "../examples/demo/jobs.rs"]
mod jobs;
#[allow(dead_code)]
#[path = "../examples/demo/pager.rs"]
mod pager;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use services::{http_get, http_request, secs, urlencode, Canaryd, Prometheus};

/// The dashboards the repository ships, by file name.
const FILES: [&str; 4] = [
    "background-jobs.json",
    "canaryd.json",
    "login-flows.json",
    "overview.json",
];

/// Grafana's built-in variables an expression may use, and the panel types the dashboards use.
const BUILT_INS: [&str; 5] = [
    "__rate_interval",
    "__interval",
    "__interval_ms",
    "__range",
    "__range_s",
];
const PANEL_TYPES: [&str; 6] = [
    "timeseries",
    "stat",
    "table",
    "state-timeline",
    "bargauge",
    "row",
];

/// How long the live test waits for every query to have returned data.
const QUERIES_DEADLINE: Duration = Duration::from_secs(150);

/// A Sidekiq queue the demo's check also reads, into which the test puts [`PARKED_JOBS`] jobs that
/// no worker takes, so its depth holds still while two replicas read it.
const PARKED_QUEUE: &str = "parked";
const PARKED_JOBS: usize = 5;

/// The panels that count checks, steps, alerts, jobs or workers (dashboard file, title, refId):
/// with two replicas running the same checks, each must show what one replica alone shows (a
/// `sum` or `count` over the replicas' series would show twice as much); with two shards, what
/// the two shards show added up.
const COUNTING_PANELS: [(&str, &str, &str); 10] = [
    ("overview.json", "Checks passing", "A"),
    ("overview.json", "Checks failing", "A"),
    ("overview.json", "Alerts firing", "A"),
    ("overview.json", "Alerts pending", "A"),
    ("login-flows.json", "Steps failing", "A"),
    ("background-jobs.json", "Jobs waiting", "A"),
    ("background-jobs.json", "Workers / busy", "A"),
    ("background-jobs.json", "Workers / busy", "B"),
    ("background-jobs.json", "Heartbeats late", "A"),
    ("background-jobs.json", "Queue checks failing", "A"),
];

/// How long the replicas may take to agree on the counting panels (their runs are not in step).
const REPLICAS_AGREE_DEADLINE: Duration = Duration::from_secs(40);

/// The Prometheus jobs of the two replicas (each runs every check) and of the two shards (each
/// runs half of them, `--shard 1/2` and `2/2`).
const REPLICAS_JOB: &str = "canaryd";
const SHARDS_JOB: &str = "canaryd-shards";

struct Dashboard {
    file: String,
    json: Value,
}

impl Dashboard {
    fn title(&self) -> &str {
        self.json["title"].as_str().unwrap_or("?")
    }

    fn variables(&self) -> &[Value] {
        self.json["templating"]["list"]
            .as_array()
            .map_or(&[], Vec::as_slice)
    }

    /// Every panel, rows and the panels inside rows included.
    fn all_panels(&self) -> Vec<&Value> {
        let mut out = Vec::new();
        for p in self.json["panels"].as_array().into_iter().flatten() {
            out.push(p);
            out.extend(p["panels"].as_array().into_iter().flatten());
        }
        out
    }

    /// Every panel that shows data (not a row).
    fn query_panels(&self) -> Vec<&Value> {
        self.all_panels()
            .into_iter()
            .filter(|p| p["type"] != "row")
            .collect()
    }
}

fn dashboards_dir() -> PathBuf {
    services::repo_root().join("dashboards")
}

/// Every `*.json` in `dashboards/`, parsed, by file name.
fn dashboards() -> Vec<Dashboard> {
    let dir = dashboards_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                file.ends_with(".json"),
                "dashboards/ holds only dashboards (JSON): {file}"
            );
            let text = std::fs::read_to_string(&path).unwrap();
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("dashboards/{file} is not JSON: {e}"));
            Dashboard { file, json }
        })
        .collect()
}

/// Calls `f(path, object)` for every JSON object under `v`.
fn walk<'a>(v: &'a Value, path: &mut String, f: &mut impl FnMut(&str, &'a Value)) {
    match v {
        Value::Object(map) => {
            f(path, v);
            for (k, child) in map {
                let len = path.len();
                let _ = write!(path, ".{k}");
                walk(child, path, f);
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let len = path.len();
                let _ = write!(path, "[{i}]");
                walk(child, path, f);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// The `$name`, `${name}` and `${name:format}` references in `text`.
fn references(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        let name: String = if let Some(inner) = rest.strip_prefix('{') {
            inner.split('}').next().unwrap_or("").to_string()
        } else {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        };
        out.push(name);
    }
    out
}

/// The query of a query variable, in either of the forms Grafana saves.
fn variable_query(v: &Value) -> Option<&str> {
    v["query"]["query"].as_str().or(v["query"].as_str())
}

#[test]
fn every_dashboard_is_importable_grafana_json_with_a_datasource_variable() {
    let all = dashboards();
    let names: Vec<&str> = all.iter().map(|d| d.file.as_str()).collect();
    assert_eq!(names, FILES, "the dashboards in dashboards/");
    let ds = json!({"type": "prometheus", "uid": "${datasource}"});
    let mut uids = HashSet::new();
    let mut problems = Vec::new();
    for d in &all {
        let mut bad = |m: String| problems.push(format!("dashboards/{}: {m}", d.file));
        let j = &d.json;
        if d.title().is_empty() || d.title() == "?" {
            bad("no title".into());
        }
        match j["uid"].as_str() {
            Some(uid) if !uid.is_empty() && uid.len() <= 40 => {
                if !uids.insert(uid.to_string()) {
                    bad(format!("uid {uid} used by another dashboard"));
                }
            }
            _ => bad("no uid (or one over 40 characters)".into()),
        }
        if !j["tags"]
            .as_array()
            .is_some_and(|t| t.contains(&json!("canaryd")))
        {
            bad("not tagged canaryd".into());
        }
        if j["schemaVersion"].as_u64().is_none_or(|v| v < 36) {
            bad(format!(
                "schemaVersion {} (a modern Grafana writes 36 or later)",
                j["schemaVersion"]
            ));
        }
        if !j["links"].as_array().into_iter().flatten().any(|l| {
            l["type"] == "dashboards" && l["tags"] == json!(["canaryd"]) && l["includeVars"] == true
        }) {
            bad("no link to the other canaryd dashboards (type dashboards, tags [canaryd], includeVars)".into());
        }

        // The datasource variable, and no datasource UID but "${datasource}" anywhere.
        let vars = d.variables();
        if !vars.iter().any(|v| {
            v["name"] == "datasource" && v["type"] == "datasource" && v["query"] == "prometheus"
        }) {
            bad("no `datasource` variable of type datasource querying prometheus".into());
        }
        let mut path = String::from("$");
        walk(j, &mut path, &mut |at, obj| {
            if let Some(d) = obj.get("datasource") {
                match d {
                    Value::Object(m) => {
                        if let Some(uid) = m.get("uid") {
                            if uid != "${datasource}" {
                                bad(format!("{at}.datasource.uid is {uid}, not \"${{datasource}}\""));
                            }
                        }
                    }
                    Value::Null => {}
                    other => bad(format!(
                        "{at}.datasource is {other}: name a datasource as {{\"type\":\"prometheus\",\"uid\":\"${{datasource}}\"}}"
                    )),
                }
            }
        });
        if j.get("__inputs").is_some() {
            bad("__inputs: an exported datasource input; use the datasource variable".into());
        }

        // Variables: every query variable reads Prometheus through the datasource variable.
        let mut defined: HashSet<String> = BUILT_INS.iter().map(|s| s.to_string()).collect();
        for v in vars {
            let name = v["name"].as_str().unwrap_or("");
            match v["type"].as_str() {
                Some("datasource") => {}
                Some("query") => {
                    if v["datasource"] != ds {
                        bad(format!("variable {name}: datasource {}", v["datasource"]));
                    }
                    let Some(q) = variable_query(v) else {
                        bad(format!("variable {name}: no query"));
                        continue;
                    };
                    if !q.starts_with("label_values(") {
                        bad(format!("variable {name}: {q:?} is not label_values(...)"));
                    }
                    for r in references(q) {
                        if !defined.contains(&r) {
                            bad(format!("variable {name}: uses ${r}, not defined before it"));
                        }
                    }
                }
                other => bad(format!("variable {name}: type {other:?}")),
            }
            defined.insert(name.to_string());
        }

        // Panels: unique ids, known types, a description, targets with an expression each.
        let mut ids = HashSet::new();
        for p in d.all_panels() {
            let title = p["title"].as_str().unwrap_or("");
            let mut bad_panel = |m: String| bad(format!("panel {:?} ({}): {m}", title, p["id"]));
            match p["id"].as_u64() {
                Some(id) => {
                    if !ids.insert(id) {
                        bad_panel(format!("id {id} is not unique"));
                    }
                }
                None => bad_panel("no numeric id".into()),
            }
            let kind = p["type"].as_str().unwrap_or("");
            if !PANEL_TYPES.contains(&kind) {
                bad_panel(format!("panel type {kind:?}"));
            }
            let g = &p["gridPos"];
            let (x, w) = (g["x"].as_u64(), g["w"].as_u64());
            if !matches!((x, w), (Some(x), Some(w)) if x + w <= 24) || g["h"].as_u64().is_none() {
                bad_panel(format!("gridPos {g} does not fit the 24-column grid"));
            }
            if title.is_empty() {
                bad_panel("no title".into());
            }
            if kind == "row" {
                continue;
            }
            if p["description"].as_str().is_none_or(str::is_empty) {
                bad_panel("no description".into());
            }
            if p["datasource"] != ds {
                bad_panel(format!("datasource {}", p["datasource"]));
            }
            let targets = p["targets"].as_array().map_or(&[][..], Vec::as_slice);
            if targets.is_empty() {
                bad_panel("no targets".into());
            }
            let mut refs = HashSet::new();
            for t in targets {
                if !refs.insert(t["refId"].as_str().unwrap_or("").to_string()) {
                    bad_panel(format!("refId {} repeated or missing", t["refId"]));
                }
                if t["datasource"] != ds {
                    bad_panel(format!("target datasource {}", t["datasource"]));
                }
                let expr = t["expr"].as_str().unwrap_or("");
                if expr.trim().is_empty() {
                    bad_panel(format!("target {} has no expr", t["refId"]));
                    continue;
                }
                for r in references(expr) {
                    if !defined.contains(&r) {
                        bad_panel(format!("{expr:?} uses ${r}, which no variable defines"));
                    }
                }
                // Range selectors follow the time picker and the scrape interval.
                for window in expr.split('[').skip(1) {
                    let window = window.split(']').next().unwrap_or("");
                    if window != "$__rate_interval" && window != "$__range" {
                        bad_panel(format!(
                            "{expr:?}: range [{window}] (use $__rate_interval or $__range)"
                        ));
                    }
                }
                if (expr.contains("rate(") || expr.contains("increase("))
                    && !(expr.contains("$__rate_interval") || expr.contains("$__range"))
                {
                    bad_panel(format!("{expr:?}: a rate without $__rate_interval"));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------------
// Live: every query against a real Prometheus scraping a real canaryd
// ---------------------------------------------------------------------------------------------

/// Values of Grafana's built-in variables: with a Prometheus datasource whose scrape interval is
/// set to 1 s (as this Prometheus scrapes), and with Grafana's default 15 s.
const PROFILES: [(&str, [(&str, &str); 5]); 2] = [
    (
        "scrape interval 1s",
        [
            ("__rate_interval", "4s"),
            ("__interval", "1s"),
            ("__interval_ms", "1000"),
            ("__range", "3600s"),
            ("__range_s", "3600"),
        ],
    ),
    (
        "scrape interval 15s",
        [
            ("__rate_interval", "1m"),
            ("__interval", "15s"),
            ("__interval_ms", "15000"),
            ("__range", "900s"),
            ("__range_s", "900"),
        ],
    ),
];

/// Replaces `$name` and `${name}` as Grafana does; an unknown name is an error.
fn interpolate(text: &str, vars: &HashMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        let (name, len) = if let Some(inner) = rest.strip_prefix('{') {
            let end = inner
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {text:?}"))?;
            (&inner[..end], end + 2)
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..end], end)
        };
        let value = vars
            .get(name)
            .ok_or_else(|| format!("${name} is not a variable this test knows (in {text:?})"))?;
        out.push_str(value);
        rest = &rest[len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A value as Grafana's Prometheus datasource puts it into a regex matcher: regex
/// metacharacters escaped, written for a PromQL string (so the backslash is doubled).
fn regex_escape(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        if "\\^$*+?.()|{}[]'".contains(c) {
            out.push_str("\\\\");
        }
        out.push(c);
    }
    out
}

/// `label_values(selector, label)` or `label_values(label)`, evaluated as Grafana does: the
/// label-values API with `match[]`.
fn label_values(prom: &Prometheus, query: &str) -> Result<Vec<String>, String> {
    let inner = query
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .ok_or_else(|| format!("not label_values(...): {query:?}"))?;
    let (selector, label) = match inner.rfind(',') {
        Some(i) => (Some(inner[..i].trim()), inner[i + 1..].trim()),
        None => (None, inner.trim()),
    };
    let mut url = format!("{}/api/v1/label/{label}/values", prom.url());
    if let Some(s) = selector {
        let _ = write!(url, "?match[]={}", urlencode(s));
    }
    let body = api_get(&url)?;
    Ok(body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect())
}

/// GET a Prometheus API URL; `Err` unless it answers `status: success`.
fn api_get(url: &str) -> Result<Value, String> {
    let resp = http_get(url).map_err(|e| format!("GET {url}: {e}"))?;
    let body: Value = serde_json::from_slice(&resp.body)
        .map_err(|e| format!("HTTP {}: not JSON ({e}): {}", resp.status, resp.text()))?;
    if body["status"] != "success" {
        return Err(format!(
            "HTTP {}: {}: {}",
            resp.status,
            body["errorType"].as_str().unwrap_or("?"),
            body["error"].as_str().unwrap_or("?")
        ));
    }
    Ok(body)
}

/// What an instant query returned: how many series, and whether any value is a number.
enum Outcome {
    /// Prometheus refused the expression (`bad_data`): it does not parse or type-check.
    Invalid(String),
    /// Another error (network, timeout); worth another try.
    Error(String),
    Data {
        series: usize,
        finite: bool,
    },
}

fn instant_query(prom: &Prometheus, expr: &str) -> Outcome {
    let url = format!("{}/api/v1/query?query={}", prom.url(), urlencode(expr));
    let body = match api_get(&url) {
        Ok(b) => b,
        Err(e) if e.contains("bad_data") => return Outcome::Invalid(e),
        Err(e) => return Outcome::Error(e),
    };
    let data = &body["data"];
    let number = |v: &Value| {
        v[1].as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .is_some_and(f64::is_finite)
    };
    match data["resultType"].as_str() {
        Some("vector") => {
            let r = data["result"].as_array().cloned().unwrap_or_default();
            Outcome::Data {
                series: r.len(),
                finite: r.iter().any(|s| number(&s["value"])),
            }
        }
        Some("scalar") => Outcome::Data {
            series: 1,
            finite: number(&data["result"]),
        },
        other => Outcome::Invalid(format!("result type {other:?}: a panel wants a vector")),
    }
}

/// One thing that must return data: a variable's query or a panel target's expression.
struct Item {
    /// Which dashboard.
    dashboard: usize,
    /// "variable $check" or "panel «Step state» target B".
    what: String,
    /// The expression as written in the dashboard.
    expr: String,
    /// Whether it is a variable query (label_values) rather than a panel target.
    variable: bool,
    /// Per profile: returned at least one series.
    nonempty: [bool; 2],
    /// Returned at least one finite value, in any profile.
    finite: bool,
    /// Why not yet (the last outcome), or a permanent failure.
    last: String,
    invalid: bool,
}

impl Item {
    fn done(&self) -> bool {
        if self.variable {
            self.nonempty[0]
        } else {
            self.nonempty.iter().all(|b| *b) && self.finite
        }
    }
}

/// Grafana's value for "All" of each query variable of `d`, in order; a variable whose query
/// returns nothing yet (or fails) is left out, with the reason in `items`.
fn resolve_variables(
    prom: &Prometheus,
    d: &Dashboard,
    dashboard: usize,
    items: &mut [Item],
) -> (HashMap<String, String>, HashMap<String, Vec<String>>) {
    let mut vars = HashMap::new();
    let mut values_of = HashMap::new();
    for v in d.variables() {
        if v["type"] != "query" {
            continue;
        }
        let name = v["name"].as_str().unwrap_or("");
        let item = items
            .iter_mut()
            .find(|i| i.dashboard == dashboard && i.what == format!("variable ${name}"))
            .expect("an item per variable");
        let query = match interpolate(variable_query(v).unwrap_or(""), &vars) {
            Ok(q) => q,
            Err(e) => {
                item.last = e;
                continue;
            }
        };
        match label_values(prom, &query) {
            Err(e) => {
                item.invalid = e.contains("bad_data");
                item.last = format!("{query}: {e}");
            }
            Ok(values) if values.is_empty() => item.last = format!("{query}: no values"),
            Ok(values) => {
                item.nonempty[0] = true;
                let all = match v["allValue"].as_str() {
                    Some(a) if !a.is_empty() && v["includeAll"] == true => a.to_string(),
                    _ => {
                        let escaped: Vec<String> = values.iter().map(|s| regex_escape(s)).collect();
                        format!("({})", escaped.join("|"))
                    }
                };
                vars.insert(name.to_string(), all);
                values_of.insert(name.to_string(), values);
            }
        }
    }
    (vars, values_of)
}

/// The series a panel's target shows now (labels, value), its variables set to "All" and the
/// built-ins to the first profile.
fn shown(
    prom: &Prometheus,
    d: &Dashboard,
    vars: &HashMap<String, String>,
    title: &str,
    ref_id: &str,
) -> Vec<(Value, f64)> {
    let panel = d
        .query_panels()
        .into_iter()
        .find(|p| p["title"] == title)
        .unwrap_or_else(|| panic!("{}: no panel {title:?}", d.file));
    let target = panel["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["refId"] == ref_id)
        .unwrap_or_else(|| panic!("{}: panel {title:?} has no target {ref_id}", d.file));
    let mut vars = vars.clone();
    for (k, v) in PROFILES[0].1 {
        vars.insert(k.to_string(), v.to_string());
    }
    let expr = interpolate(target["expr"].as_str().unwrap_or(""), &vars).unwrap();
    let result = prom.query(&expr);
    result
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let v = s["value"][1].as_str().and_then(|v| v.parse().ok());
            (s["metric"].clone(), v.unwrap_or(f64::NAN))
        })
        .collect()
}

/// The number a stat panel shows: its only series' value; `None` when it shows no series or more
/// than one.
fn stat(
    prom: &Prometheus,
    d: &Dashboard,
    vars: &HashMap<String, String>,
    title: &str,
    ref_id: &str,
) -> Option<f64> {
    match shown(prom, d, vars, title, ref_id).as_slice() {
        [(_, v)] if v.is_finite() => Some(*v),
        _ => None,
    }
}

/// Puts `PARKED_JOBS` jobs into the Sidekiq queue `PARKED_QUEUE` of the demo's Redis (`redis_url`,
/// `redis://127.0.0.1:PORT`), where no worker takes them.
fn park_jobs(redis_url: &str) {
    let port: u16 = redis_url
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no port in {redis_url}"));
    let redis = |args: &[&str]| {
        services::resp_command(port, args).unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    };
    redis(&["SADD", "queues", PARKED_QUEUE]);
    for n in 0..PARKED_JOBS {
        // No `enqueued_at`: the queue has no oldest-job age, so the demo's backlog alert keeps
        // watching the default queue alone.
        let job = json!({"class": "ParkedJob", "queue": PARKED_QUEUE, "args": [n], "jid": format!("parked{n}")});
        redis(&["LPUSH", &format!("queue:{PARKED_QUEUE}"), &job.to_string()]);
    }
}

/// The check files the canaryd under test runs: the demo's, with the app's address put in (and
/// the parked queue added to the demo's queue check), and one more with an HTTPS check against
/// nginx and a heartbeat.
fn write_check_files(dir: &Path, app: &str, tls_url: &str, ca_file: &Path) {
    let repo = services::repo_root();
    let checks = dir.join("checks");
    std::fs::create_dir_all(&checks).unwrap();
    for (from, to) in [
        ("checks/demo.yaml", "demo.yaml"),
        ("examples/demo/checks.yaml", "demo-more.yaml"),
        ("examples/demo/jobs.yaml", "demo-jobs.yaml"),
    ] {
        let text = std::fs::read_to_string(repo.join(from)).unwrap();
        let text = text.replace("127.0.0.1:8088", app).replace(
            "queues: [default]",
            &format!("queues: [default, {PARKED_QUEUE}]"),
        );
        std::fs::write(checks.join(to), text).unwrap();
    }
    std::fs::write(
        checks.join("dashboards.yaml"),
        format!(
            r#"checks:
  - name: tls-home
    interval: 2s
    timeout: 1s
    http:
      request: {{url: "{tls_url}/"}}
      tls_config: {{ca_file: "{ca}"}}
      expect: {{status: 200, body_contains: "served over TLS"}}
  - name: nightly-export
    interval: 1s
    timeout: 1s
    heartbeat:
      every: 1h
      token: "${{env:DASHBOARDS_HEARTBEAT_TOKEN}}"
"#,
            ca = ca_file.display()
        ),
    )
    .unwrap();
    let jobs = std::fs::read_to_string(checks.join("demo-jobs.yaml")).unwrap();
    assert!(
        jobs.contains(PARKED_QUEUE),
        "examples/demo/jobs.yaml no longer says `queues: [default]`:\n{jobs}"
    );
}

/// canaryd.yaml: every alert to the demo's pager (signed webhook) and to a webhook URL that
/// answers 404, so notifications are both sent and rejected.
fn write_config(dir: &Path, listen: &str, app: &str) -> PathBuf {
    let path = dir.join("canaryd.yaml");
    std::fs::write(
        &path,
        format!(
            r#"listen: {listen}
state_dir: "{state}"
check_files: ["checks/*.yaml"]
receivers:
  - name: pager
    webhook:
      url: "http://{app}/pager/events"
      secret: "${{env:DEMO_PAGER_SECRET}}"
  - name: nowhere
    webhook:
      url: "http://{app}/pager/no-such-endpoint"
routes:
  - receivers: [pager, nowhere]
"#,
            state = dir.join("state").display()
        ),
    )
    .unwrap();
    path
}

/// A self-signed certificate for 127.0.0.1 (PEM cert, PEM key), valid until 2040.
fn certificate() -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "canaryd dashboards test");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2040, 1, 1);
    let cert = params.self_signed(&key).expect("self-signed certificate");
    (cert.pem(), key.serialize_pem())
}

/// The checks each replica runs: the demo's (checks/demo.yaml, examples/demo/checks.yaml and
/// jobs.yaml, with its canary job) and this test's own.
const CHECKS: f64 = 10.0;

#[test]
fn every_panel_query_returns_data_from_prometheus_scraping_canaryd() {
    // Every service first, so a missing one skips (or fails under CI) before anything starts.
    let Some(redis_server) = services::require("redis-server") else {
        return;
    };
    let site = tempfile::tempdir().unwrap();
    std::fs::write(
        site.path().join("index.html"),
        "<html><body>served over TLS</body></html>\n",
    )
    .unwrap();
    let (cert, key) = certificate();
    let Some(nginx) = services::Nginx::start_tls(site.path(), &cert, &key) else {
        return;
    };

    // The demo app, its pager and its job system, in this process.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let controls = Arc::new(app::Controls::default());
    let jobs = rt
        .block_on(jobs::Jobs::start(&redis_server, controls.clone()))
        .unwrap_or_else(|e| panic!("the demo's job system did not start: {e}"));
    controls
        .queue_running
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let pager = pager::Pager::default();
    let router = app::router(controls.clone()).unwrap().merge(pager.router());
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let app_addr = listener.local_addr().unwrap().to_string();
    rt.spawn(async move {
        let _ = axum::serve(listener, router).await;
    });

    park_jobs(&jobs.url);

    // The real canaryd, four times, each with its own configuration (listen address, state
    // directory) and the same check files: two replicas running every check (Prometheus job
    // `canaryd`) and two shards splitting the checks between them (job `canaryd-shards`).
    let token = "dashboards-heartbeat-token";
    let mut dirs = Vec::new();
    let mut daemons = Vec::new();
    for shard in [None, None, Some("1/2"), Some("2/2")] {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &cert).unwrap();
        write_check_files(dir.path(), &app_addr, &nginx.url(), &ca);
        let addr = format!("127.0.0.1:{}", services::free_port());
        let config = write_config(dir.path(), &addr, &app_addr);
        let mut cmd = services::canaryd_run(&config);
        cmd.env("DEMO_PASSWORD", app::PASSWORD)
            .env("DEMO_TOTP_SEED", app::TOTP_SEED)
            .env("DEMO_PAGER_SECRET", pager::SECRET)
            .env("DEMO_REDIS_URL", &jobs.url)
            .env("DASHBOARDS_HEARTBEAT_TOKEN", token);
        let job = match shard {
            Some(shard) => {
                cmd.args(["--shard", shard]);
                SHARDS_JOB
            }
            None => REPLICAS_JOB,
        };
        let daemon = Canaryd::start(cmd, &addr).unwrap_or_else(|e| panic!("{e}"));
        daemons.push((job, daemon));
        dirs.push(dir);
    }
    let addr_of = |i: usize| daemons[i].1.addr().to_string();
    let (canaryd_addr, other_addr) = (addr_of(0), addr_of(1));
    let (shard_1, shard_2) = (addr_of(2), addr_of(3));

    let targets: Vec<(&str, String)> = daemons
        .iter()
        .map(|(job, d)| (*job, d.addr().to_string()))
        .collect();
    let Some(prom) = Prometheus::start(&targets, "1s") else {
        return;
    };

    // The batch job reports in, to every process (as docs/operations.md tells a job to): each replica
    // takes the ping, and of the shards the one that owns the check.
    let auth = format!("Bearer {token}");
    let mut answers = Vec::new();
    for (job, daemon) in &daemons {
        let ping = daemon.url("/ping/nightly-export");
        let r = http_request("POST", &ping, &[("Authorization", &auth)], Some(b"done")).unwrap();
        answers.push(format!("{job} {ping}: HTTP {} {}", r.status, r.text()));
        if *job == REPLICAS_JOB {
            assert!(r.status < 300, "{}", answers.last().unwrap());
        }
    }
    let taken = answers.iter().filter(|a| a.contains(": HTTP 2")).count();
    assert_eq!(
        taken, 3,
        "two replicas and one shard take the ping: {answers:#?}"
    );

    // Healthy first (so every step of the logins has run and has series), then a deploy that
    // rejects every password: failures by reason, LoginFailing firing, pages sent and refused.
    prom.wait_for(
        r#"canary_check_success{check="demo-login"} == 1"#,
        |v| v.as_array().is_some_and(|a| !a.is_empty()),
        secs(60),
    );
    let reply = http_get(&format!("http://{app_addr}/control?break_login=1"))
        .unwrap()
        .text();
    assert!(reply.contains("break_login=true"), "{reply}");

    let all = dashboards();
    let mut items = Vec::new();
    for (n, d) in all.iter().enumerate() {
        for v in d.variables().iter().filter(|v| v["type"] == "query") {
            items.push(Item {
                dashboard: n,
                what: format!("variable ${}", v["name"].as_str().unwrap_or("")),
                expr: variable_query(v).unwrap_or("").to_string(),
                variable: true,
                nonempty: [false; 2],
                finite: false,
                last: "not evaluated".into(),
                invalid: false,
            });
        }
        for p in d.query_panels() {
            for t in p["targets"].as_array().into_iter().flatten() {
                items.push(Item {
                    dashboard: n,
                    what: format!(
                        "panel «{}» target {}",
                        p["title"].as_str().unwrap_or("?"),
                        t["refId"].as_str().unwrap_or("?")
                    ),
                    expr: t["expr"].as_str().unwrap_or("").to_string(),
                    variable: false,
                    nonempty: [false; 2],
                    finite: false,
                    last: "not evaluated".into(),
                    invalid: false,
                });
            }
        }
    }
    assert!(
        items.iter().filter(|i| !i.variable).count() >= 40,
        "the dashboards hold only {} panel queries",
        items.len()
    );

    let deadline = Instant::now() + QUERIES_DEADLINE;
    let mut values: Vec<HashMap<String, Vec<String>>> = vec![HashMap::new(); all.len()];
    let mut resolved: Vec<HashMap<String, String>> = vec![HashMap::new(); all.len()];
    loop {
        for (n, d) in all.iter().enumerate() {
            let (vars, vals) = resolve_variables(&prom, d, n, &mut items);
            for (k, v) in vals {
                values[n].insert(k, v);
            }
            resolved[n].clone_from(&vars);
            for item in items
                .iter_mut()
                .filter(|i| i.dashboard == n && !i.variable && !i.done() && !i.invalid)
            {
                for (p, (profile, built_ins)) in PROFILES.iter().enumerate() {
                    let mut vars = vars.clone();
                    for (k, v) in built_ins {
                        vars.insert(k.to_string(), v.to_string());
                    }
                    let expr = match interpolate(&item.expr, &vars) {
                        Ok(e) => e,
                        Err(e) => {
                            item.last = format!("({profile}) {e}");
                            continue;
                        }
                    };
                    match instant_query(&prom, &expr) {
                        Outcome::Invalid(e) => {
                            item.invalid = true;
                            item.last = format!("({profile}) {expr}\n        {e}");
                        }
                        Outcome::Error(e) => item.last = format!("({profile}) {expr}: {e}"),
                        Outcome::Data { series: 0, .. } => {
                            item.last = format!("({profile}) no data: {expr}")
                        }
                        Outcome::Data { finite, .. } => {
                            item.nonempty[p] = true;
                            item.finite |= finite;
                            if !finite {
                                item.last = format!("({profile}) only NaN/Inf: {expr}");
                            }
                        }
                    }
                }
            }
        }
        // Invalid queries are not asked again; the others are, until each has returned data.
        let pending = items.iter().filter(|i| !i.done() && !i.invalid).count();
        if pending == 0 || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    let failures: Vec<String> = items
        .iter()
        .filter(|i| !i.done())
        .map(|i| {
            format!(
                "dashboard «{}» ({}) {}:\n      {}\n      {}",
                all[i.dashboard].title(),
                all[i.dashboard].file,
                i.what,
                i.expr,
                i.last
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} queries did not parse or return data within {QUERIES_DEADLINE:?}:\n  {}\n\
         targets: {}\ncanaryd log tail:\n{}",
        failures.len(),
        items.len(),
        failures.join("\n  "),
        prom.targets_summary(),
        daemons[0].1.log_tail(20)
    );

    // The variables list what a user picks from.
    let expect = [
        ("login-flows.json", "check", "demo-login"),
        ("login-flows.json", "check", "tls-home"),
        ("login-flows.json", "step", "submit"),
        ("background-jobs.json", "check", "demo-jobs"),
        ("background-jobs.json", "system", "sidekiq"),
        ("background-jobs.json", "queue", jobs::QUEUE),
        ("background-jobs.json", "heartbeat", "nightly-export"),
        ("canaryd.json", "receiver", "pager"),
        ("canaryd.json", "receiver", "nowhere"),
        ("overview.json", "job", "canaryd"),
        ("overview.json", "instance", canaryd_addr.as_str()),
        ("overview.json", "instance", other_addr.as_str()),
        ("overview.json", "check", "demo-identity"),
    ];
    for (file, var, value) in expect {
        let n = all.iter().position(|d| d.file == file).unwrap();
        let got: BTreeSet<&String> = values[n].get(var).into_iter().flatten().collect();
        assert!(
            got.iter().any(|v| *v == value),
            "dashboards/{file}: variable ${var} lists {got:?}, not {value:?}"
        );
    }
    // A few panels, as a user reads them: what they show is what happened.
    let show = |file: &str, title: &str, ref_id: &str| {
        let n = all.iter().position(|d| d.file == file).unwrap();
        shown(&prom, &all[n], &resolved[n], title, ref_id)
    };
    let value = |rows: &[(Value, f64)], labels: Value| {
        rows.iter()
            .find(|(m, _)| labels.as_object().unwrap().iter().all(|(k, v)| m[k] == *v))
            .map(|(_, v)| *v)
    };
    let rows = show("canaryd.json", "Checks configured", "A");
    let checks_of = |addr: &str| value(&rows, json!({ "instance": addr }));
    assert_eq!(checks_of(&canaryd_addr), Some(CHECKS), "{rows:?}");
    assert_eq!(checks_of(&other_addr), Some(CHECKS), "{rows:?}");
    let split = checks_of(&shard_1).zip(checks_of(&shard_2));
    assert!(
        split.is_some_and(|(a, b)| a + b == CHECKS && a > 0.0 && b > 0.0),
        "the shards split the {CHECKS} checks: {rows:?}"
    );
    let rows = show("overview.json", "Firing alerts", "A");
    let firing = json!({"check": "demo-login", "alert": "LoginFailing", "severity": "critical"});
    assert!(value(&rows, firing).is_some(), "{rows:?}");
    let rows = show("login-flows.json", "Failures by reason (time range)", "A");
    assert!(
        value(&rows, json!({"reason": "status"})) >= Some(1.0),
        "{rows:?}"
    );
    let rows = show("login-flows.json", "TLS certificates", "A");
    let expires_in = value(&rows, json!({"check": "tls-home"})).unwrap_or(0.0);
    let expected = 2_208_988_800.0 // 2040-01-01T00:00:00Z
        - std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
    assert!(
        (expires_in - expected).abs() < 120.0,
        "tls-home's certificate expires in {expires_in} s, not {expected} s: {rows:?}"
    );
    let rows = show("login-flows.json", "HTTP phases (stacked)", "A");
    let tls = json!({"check": "tls-home", "phase": "tls"});
    assert!(
        value(&rows, tls) > Some(0.0),
        "no TLS handshake time: {rows:?}"
    );
    let rows = show("canaryd.json", "Notifications (time range)", "A");
    let sent = value(&rows, json!({"receiver": "pager", "result": "sent"}));
    let rejected = value(&rows, json!({"receiver": "nowhere", "result": "rejected"}));
    assert!(sent > Some(0.0) && rejected > Some(0.0), "{rows:?}");

    // Replicas: with both replicas selected, each counting panel shows what each replica alone
    // shows. Shards: with both shards selected, what the two shards show added up (each check runs
    // on one of them). The processes run on their own schedules, so this waits for a moment where
    // they agree.
    let file_index = |file: &str| all.iter().position(|d| d.file == file).unwrap();
    let with = |n: usize, extra: &[(&str, &str)]| {
        let mut vars = resolved[n].clone();
        for (k, v) in extra {
            vars.insert(k.to_string(), regex_escape(v));
        }
        vars
    };
    let counting_panel =
        |(file, title, ref_id): (&str, &str, &str), job: &str, instance: Option<&str>| {
            let n = file_index(file);
            // Only the parked queue: its depth holds still, where the demo's queue moves every
            // 500 ms.
            let mut extra = vec![("job", job)];
            if title == "Jobs waiting" {
                extra.push(("queue", PARKED_QUEUE));
            }
            if let Some(i) = instance {
                extra.push(("instance", i));
            }
            stat(&prom, &all[n], &with(n, &extra), title, ref_id)
        };
    let deadline = Instant::now() + REPLICAS_AGREE_DEADLINE;
    let disagreeing = loop {
        let mut disagreeing = Vec::new();
        for &panel in &COUNTING_PANELS {
            let name = format!("dashboards/{} «{}» {}", panel.0, panel.1, panel.2);
            let both = counting_panel(panel, REPLICAS_JOB, None);
            let first = counting_panel(panel, REPLICAS_JOB, Some(&canaryd_addr));
            let second = counting_panel(panel, REPLICAS_JOB, Some(&other_addr));
            if both.is_none() || both != first || both != second {
                disagreeing.push(format!(
                    "{name}: both replicas {both:?}, {canaryd_addr} alone {first:?}, \
                     {other_addr} alone {second:?}"
                ));
            }
            // A shard without the check (no demo-jobs on it: no queue series) shows no number.
            let shards = counting_panel(panel, SHARDS_JOB, None);
            let one = counting_panel(panel, SHARDS_JOB, Some(&shard_1));
            let two = counting_panel(panel, SHARDS_JOB, Some(&shard_2));
            if shards.is_none() || shards != Some(one.unwrap_or(0.0) + two.unwrap_or(0.0)) {
                disagreeing.push(format!(
                    "{name}: both shards {shards:?}, {shard_1} alone {one:?}, {shard_2} alone \
                     {two:?}"
                ));
            }
        }
        if disagreeing.is_empty() || Instant::now() >= deadline {
            break disagreeing;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        disagreeing.is_empty(),
        "{} counting panel(s) do not show what one replica shows, or what the shards add up to, \
         within {REPLICAS_AGREE_DEADLINE:?}:\n  {}",
        disagreeing.len(),
        disagreeing.join("\n  ")
    );
    // And the numbers themselves, as a user knows them, for the replicas and for the shards.
    for job in [REPLICAS_JOB, SHARDS_JOB] {
        let count = |title: &str, ref_id: &str| {
            let panel = *COUNTING_PANELS
                .iter()
                .find(|p| p.1 == title && p.2 == ref_id)
                .unwrap();
            counting_panel(panel, job, None).unwrap_or(f64::NAN)
        };
        let (passing, failing) = (count("Checks passing", "A"), count("Checks failing", "A"));
        assert_eq!(
            passing + failing,
            CHECKS,
            "{job}: passing {passing} + failing {failing} checks, where {CHECKS} checks run"
        );
        // Both scripted logins fail with every password rejected.
        assert!(failing >= 2.0, "{job}: checks failing: {failing}");
        let firing = count("Alerts firing", "A");
        assert!(
            firing >= 2.0,
            "{job}: both LoginFailing alerts, not {firing}"
        );
        let steps = count("Steps failing", "A");
        assert!(
            steps >= 2.0,
            "{job}: both logins' submit steps, not {steps}"
        );
        assert_eq!(
            count("Jobs waiting", "A"),
            PARKED_JOBS as f64,
            "{job}: parked jobs"
        );
        assert_eq!(
            count("Workers / busy", "A"),
            1.0,
            "{job}: the demo's one worker"
        );
    }
    let n = file_index("background-jobs.json");
    let rows = shown(
        &prom,
        &all[n],
        &with(n, &[("queue", PARKED_QUEUE)]),
        "Queue depth by queue and state",
        "A",
    );
    let parked = json!({"check": "demo-jobs", "queue": PARKED_QUEUE, "state": "waiting"});
    assert_eq!(
        value(&rows, parked),
        Some(PARKED_JOBS as f64),
        "parked jobs by queue and state, two replicas and two shards: {rows:?}"
    );

    // The pages went out: the dashboards' notification panels show real deliveries.
    assert!(
        pager
            .pages()
            .iter()
            .any(|p| p.event["alert"] == "LoginFailing" && p.event["status"] == "firing"),
        "the pager got no LoginFailing page"
    );

    drop(prom);
    for (_, mut daemon) in daemons {
        daemon.stop(secs(5));
    }
    drop(dirs);
    drop(jobs);
    rt.shutdown_timeout(secs(2));
    drop(nginx);
}
