//! The reference (docs/reference.md, which the README links to) stays true, checked against the
//! real thing:
//! - every metric family a running `canaryd` exports is in the reference's metric table with the
//!   type and labels it really has, and every family the table documents is exported (the daemon
//!   runs checks of every kind, a failing one, a heartbeat and a receiver, so every family has
//!   series: families without any are not printed);
//! - every route the API router registers is in the API table, and the table has no other;
//! - every alert variable the expression checker knows, per check kind, is in the variables
//!   table, each with the type the checker gives it, and the table has no other;
//! - every command and flag of the binary is named in the command-line section.
//!
//! The tables are found by their header rows and read cell by cell (the reference says so
//! above each table), so prose around them may change freely.

mod adversary;
mod services;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use adversary::{Behavior, Reply, Server, TlsSetup};
use services::{canaryd_run, free_port, http_get, http_post, Canaryd, Redis};

const BIN: &str = env!("CARGO_BIN_EXE_canaryd");

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    fs::read_to_string(&full).unwrap_or_else(|e| panic!("cannot read {}: {e}", full.display()))
}

/// The reference: every table and section this file checks lives there.
const REFERENCE: &str = "docs/reference.md";

fn reference() -> String {
    repo_file(REFERENCE)
}

// ---------------------------------------------------------------------------------------------
// Reference tables
// ---------------------------------------------------------------------------------------------

/// The cells of a Markdown table row, trimmed; `\|` is a pipe inside a cell.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|');
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut out = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                chars.next();
                out.last_mut().expect("one cell").push('|');
            }
            '|' => out.push(String::new()),
            _ => out.last_mut().expect("one cell").push(c),
        }
    }
    out.iter().map(|c| c.trim().to_string()).collect()
}

/// The body rows of the one table of the reference whose header row is `header`.
fn table(doc: &str, header: &[&str]) -> Vec<Vec<String>> {
    let lines: Vec<&str> = doc.lines().collect();
    let starts: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].trim_start().starts_with('|') && cells(lines[i]) == header)
        .collect();
    assert_eq!(
        starts.len(),
        1,
        "docs/reference.md must have exactly one table with the header row | {} |",
        header.join(" | ")
    );
    let start = starts[0];
    assert!(
        lines.get(start + 1).is_some_and(
            |l| l.trim_start().starts_with("|---") || l.trim_start().starts_with("| ---")
        ),
        "docs/reference.md: the table | {} | needs its |---| separator row right below the header",
        header.join(" | ")
    );
    lines[start + 2..]
        .iter()
        .take_while(|l| l.trim_start().starts_with('|'))
        .map(|l| cells(l))
        .collect()
}

/// Every `code span` in a cell.
fn code_spans(cell: &str) -> Vec<String> {
    cell.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect()
}

/// The text of a section of the reference: from its heading line to the next heading of the same or a
/// higher level.
fn section(doc: &str, heading: &str) -> String {
    let level = heading.chars().take_while(|&c| c == '#').count();
    let mut out = String::new();
    let mut inside = false;
    let mut in_code = false;
    for line in doc.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        if !in_code && line.starts_with('#') {
            let l = line.chars().take_while(|&c| c == '#').count();
            if inside && l <= level {
                break;
            }
            if line.trim() == heading {
                inside = true;
            }
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(
        !out.is_empty(),
        "docs/reference.md has no section {heading:?}"
    );
    out
}

// ---------------------------------------------------------------------------------------------
// The metric reference against a live /metrics
// ---------------------------------------------------------------------------------------------

/// A documented or exported metric family.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Family {
    kind: String,
    labels: BTreeSet<String>,
}

/// The reference's metric table: family name → type and labels.
fn documented_families(doc: &str) -> BTreeMap<String, Family> {
    let mut out = BTreeMap::new();
    for row in table(doc, &["family", "type", "labels", "meaning"]) {
        let names = code_spans(&row[0]);
        assert_eq!(
            names.len(),
            1,
            "docs/reference.md metric table: one family per row, its name in backticks: {row:?}"
        );
        let family = Family {
            kind: row[1].clone(),
            labels: code_spans(&row[2]).into_iter().collect(),
        };
        assert!(
            out.insert(names[0].clone(), family).is_none(),
            "docs/reference.md metric table: {} is listed twice",
            names[0]
        );
    }
    assert!(
        !out.is_empty(),
        "docs/reference.md metric table has no rows"
    );
    out
}

/// What a text-format (0.0.4) scrape exports: family → type and the label names of its samples
/// (a histogram's `le` left out), and the families that have a `# HELP` line.
#[derive(Debug, Default)]
struct Scrape {
    families: BTreeMap<String, Family>,
    helped: BTreeSet<String>,
    problems: Vec<String>,
}

fn parse_scrape(text: &str) -> Scrape {
    let mut s = Scrape::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            s.helped
                .insert(rest.split(' ').next().unwrap_or("").to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            let (name, kind) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            s.families.insert(
                name.to_string(),
                Family {
                    kind: kind.to_string(),
                    labels: BTreeSet::new(),
                },
            );
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (name, labels) = services::parse_sample(line);
        let labels = labels.into_iter().map(|(k, _)| k);
        let family = if s.families.contains_key(&name) {
            Some(name.clone())
        } else {
            ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
                let base = name.strip_suffix(suffix)?;
                (s.families.get(base)?.kind == "histogram").then(|| base.to_string())
            })
        };
        match family.and_then(|f| s.families.get_mut(&f)) {
            Some(f) => {
                let histogram = f.kind == "histogram";
                f.labels
                    .extend(labels.into_iter().filter(|l| !(histogram && l == "le")));
            }
            None => s.problems.push(format!(
                "sample {name} has no # TYPE line before it: {line}"
            )),
        }
    }
    s
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[test]
fn every_exported_metric_family_is_documented_with_its_labels_and_every_documented_one_exists() {
    let documented = documented_families(&reference());

    // Targets for every kind of check: an HTTPS page (steps, phases, a certificate), a page
    // that fails (a failure reason, an alert that fires and notifies) and one that depends on
    // it (its page held: canary_alert_suppressed), a TCP port, a Sidekiq
    // queue in a real Redis (queue families), a heartbeat (pings), a canary job no worker
    // takes (canary families), and a webhook receiver.
    let Some(redis) = Redis::start() else { return };
    redis.cmd(&["SADD", "queues", "default"]);
    let job = format!(
        r#"{{"class":"InvoiceJob","queue":"default","jid":"j1","enqueued_at":{}}}"#,
        unix_now() - 30.0
    );
    redis.cmd(&["LPUSH", "queue:default", &job]);
    let https = Server::start_tls(
        Behavior::Reply(Reply::new(200).body("hello canary")),
        TlsSetup::default(),
    );
    let broken = Server::start(Behavior::Reply(Reply::new(500).body("down")));
    let hook = Server::start(Behavior::Reply(Reply::new(200)));

    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(
        dir.path().join("checks.yaml"),
        format!(
            r#"checks:
  - name: web
    interval: 1s
    http:
      base_url: "{https}"
      tls_config: {{ca_file: "{ca}"}}
      steps:
        - name: home
          request: {{url: /}}
          expect: {{status: 200, body_contains: hello}}
        - name: again
          request: {{url: /again}}
          expect: {{status: 200}}
  - name: broken
    interval: 1s
    http:
      request: {{url: "{broken}"}}
    alerts:
      - name: BrokenPage
        when: failed
  - name: behind
    interval: 1s
    depends_on: [broken]
    http:
      request: {{url: "{broken}"}}
    alerts:
      - name: BehindBroken
        when: failed
  - name: port
    interval: 1s
    tcp: {{target: "{port}"}}
  - name: jobs
    interval: 1s
    queue: {{system: sidekiq, redis: "{redis}/0", queues: [default]}}
    alerts:
      - name: JobsUnreachable
        when: unreachable
  - name: nightly
    interval: 1s
    heartbeat: {{every: 1h}}
  - name: canary
    interval: 1s
    timeout: 500ms
    canary_job: {{system: rq, redis: "{redis}/1", queue: nobody-works-here}}
"#,
            https = https.url(""),
            ca = https.ca_file().display(),
            broken = broken.url("/"),
            port = broken.target(),
            redis = redis.url(),
        ),
    )
    .expect("write checks.yaml");
    // A free port can be taken before canaryd binds it: then again on another one.
    let mut failures = Vec::new();
    let daemon = loop {
        let addr = format!("127.0.0.1:{}", free_port());
        let config = dir.path().join("canaryd.yaml");
        fs::write(
            &config,
            format!(
                "listen: {addr}\n\
                 state_dir: state\n\
                 check_files: [checks.yaml]\n\
                 receivers:\n  - name: hook\n    webhook: {{url: \"{hook}\"}}\n\
                 status_page:\n  listen: 127.0.0.1:{status}\n  components:\n    - name: Web\n      checks: [broken]\n",
                hook = hook.url("/hook"),
                status = free_port(),
            ),
        )
        .expect("write canaryd.yaml");
        match Canaryd::start(canaryd_run(&config), &addr) {
            Ok(d) => break d,
            Err(e) if failures.len() < 2 && e.contains("cannot listen") => failures.push(e),
            Err(e) => panic!("{}\n{e}", failures.join("\n")),
        }
    };
    let ping =
        http_post(&daemon.url("/ping/nightly"), "text/plain", b"done").expect("heartbeat ping");
    assert_eq!(ping.status, 200, "heartbeat ping: {}", ping.text());

    // Poll until every documented family has series (runs every second; the alert fires on the
    // first failed run and its notification reaches the webhook a moment later).
    let deadline = Instant::now() + Duration::from_secs(60);
    let (scrape, text) = loop {
        let resp = http_get(&daemon.url("/metrics")).expect("GET /metrics");
        assert_eq!(resp.status, 200);
        let text = resp.text();
        let scrape = parse_scrape(&text);
        let missing = documented
            .keys()
            .any(|name| !scrape.families.contains_key(name));
        if !missing || Instant::now() >= deadline {
            break (scrape, text);
        }
        std::thread::sleep(Duration::from_millis(200));
    };

    let mut problems = scrape.problems.clone();
    for (name, got) in &scrape.families {
        match documented.get(name) {
            None => problems.push(format!(
                "{name} ({}, labels {:?}) is exported but not in docs/reference.md's metric table",
                got.kind, got.labels
            )),
            Some(doc) => {
                if doc.kind != got.kind {
                    problems.push(format!(
                        "{name}: docs/reference.md says type {:?}, canaryd exports {:?}",
                        doc.kind, got.kind
                    ));
                }
                for label in got.labels.difference(&doc.labels) {
                    problems.push(format!(
                        "{name}: label {label:?} is exported but not documented in docs/reference.md"
                    ));
                }
                for label in doc.labels.difference(&got.labels) {
                    problems.push(format!(
                        "{name}: docs/reference.md documents label {label:?}, but canaryd's series do not carry it"
                    ));
                }
            }
        }
        if !scrape.helped.contains(name) {
            problems.push(format!("{name} has no # HELP line"));
        }
    }
    for name in documented.keys() {
        if !scrape.families.contains_key(name) {
            problems.push(format!(
                "docs/reference.md documents {name}, but canaryd exported no such family (with http, tcp, queue and heartbeat checks, a failing check, a fired alert and a receiver)"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/reference.md's metric table and canaryd's /metrics disagree:\n  {}\n\n/metrics was:\n{text}\n\ncanaryd log:\n{}",
        problems.join("\n  "),
        daemon.log_tail(40)
    );

    // The documented GET endpoints without placeholders answer the first status of their row
    // (200, or 303 for a redirect), as the API table says.
    for row in table(&reference(), &["method", "path", "returns", "status"]) {
        let path = code_spans(&row[1]).remove(0);
        if row[0].contains("GET") && !path.contains('<') {
            let expected: u16 = row[3]
                .split(|c: char| !c.is_ascii_digit())
                .find(|s| !s.is_empty())
                .and_then(|s| s.parse().ok())
                .expect("a status in the row");
            let resp = http_get(&daemon.url(&path)).expect("GET a documented endpoint");
            assert_eq!(resp.status, expected, "GET {path}: {}", resp.text());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The API reference against the router
// ---------------------------------------------------------------------------------------------

/// The reference's API table: (method, path) pairs, placeholders written `<name>`.
fn documented_routes(doc: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for row in table(doc, &["method", "path", "returns", "status"]) {
        let paths = code_spans(&row[1]);
        assert_eq!(
            paths.len(),
            1,
            "docs/reference.md API table: one path per row: {row:?}"
        );
        for method in row[0].split(',') {
            out.insert((method.trim().to_string(), paths[0].clone()));
        }
    }
    out
}

/// The routes a router source registers: every `.route("path", get(..).post(..))`.
fn router_routes(source: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let pieces: Vec<&str> = source.split(".route(").skip(1).collect();
    assert!(!pieces.is_empty(), "src/server.rs registers no .route(...)");
    for piece in &pieces {
        let piece = piece.split(".with_state(").next().unwrap_or(piece);
        let path = piece
            .split('"')
            .nth(1)
            .unwrap_or_else(|| panic!("src/server.rs: no path literal in .route({piece}"));
        let path = path.replace('{', "<").replace('}', ">");
        let mut methods = 0;
        for method in ["get", "post", "put", "patch", "delete"] {
            let needle = format!("{method}(");
            let found = piece.match_indices(&needle).any(|(i, _)| {
                !piece[..i]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_')
            });
            if found {
                out.insert((method.to_ascii_uppercase(), path.clone()));
                methods += 1;
            }
        }
        assert!(methods > 0, "src/server.rs: no method for route {path}");
    }
    out
}

#[test]
fn every_api_route_is_documented_and_every_documented_route_exists() {
    // The API's routes and the operator view's, which the API's router merges.
    let ui = repo_file("src/ui/mod.rs");
    let ui_routes = ui
        .split("pub fn routes()")
        .nth(1)
        .and_then(|rest| rest.split("\n}\n").next())
        .expect("src/ui/mod.rs has pub fn routes()");
    let routes = router_routes(&(repo_file("src/server.rs") + ui_routes));
    assert!(
        routes.contains(&("GET".to_string(), "/metrics".to_string())),
        "the router parse found no GET /metrics: {routes:?}"
    );
    let documented = documented_routes(&reference());
    let mut problems = Vec::new();
    for (method, path) in routes.difference(&documented) {
        problems.push(format!(
            "{method} {path} is served but not in docs/reference.md's API table"
        ));
    }
    for (method, path) in documented.difference(&routes) {
        problems.push(format!(
            "docs/reference.md documents {method} {path}, but src/server.rs has no such route"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Alert variables against the expression checker
// ---------------------------------------------------------------------------------------------

/// Check kinds: the reference's kind name, the check's kind YAML, and what `<name>` stands for in it.
const KINDS: [(&str, &str, &str); 6] = [
    (
        "http",
        "http: {steps: [{name: login, request: {url: \"http://127.0.0.1:1/\"}}]}",
        "login",
    ),
    ("tcp", "tcp: {target: \"127.0.0.1:1\", tls: true}", ""),
    (
        "queue",
        "queue: {system: sidekiq, redis: \"redis://127.0.0.1:1/0\", queues: [default]}",
        "default",
    ),
    ("heartbeat", "heartbeat: {every: 1h}", ""),
    ("dns", "dns: {name: www.example.com, server: 127.0.0.1}", ""),
    (
        "canary_job",
        "canary_job: {system: rq, redis: \"redis://127.0.0.1:1/0\"}",
        "",
    ),
];

fn load_with_alert(kind_yaml: &str, when: &str) -> Result<(), String> {
    let yaml = format!(
        "checks:\n  - name: docs\n    {kind_yaml}\n    alerts:\n      - name: Docs\n        when: {}\n",
        serde_json::to_string(when).expect("quote")
    );
    canaryd::probe::check::load_checks_str(Path::new("docs.yaml"), &yaml)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn every_alert_variable_is_documented_with_its_type_and_every_documented_one_is_known() {
    let rows = table(&reference(), &["kind", "variable", "type", "meaning"]);
    let mut documented: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
    for row in &rows {
        let vars = code_spans(&row[1]);
        assert_eq!(
            vars.len(),
            1,
            "docs/reference.md variables table: one variable per row: {row:?}"
        );
        let kinds: Vec<&str> = match row[0].as_str() {
            "every check" => KINDS.iter().map(|k| k.0).collect(),
            k => vec![KINDS
                .iter()
                .map(|k| k.0)
                .find(|known| *known == k)
                .unwrap_or_else(|| {
                    panic!("docs/reference.md variables table: unknown kind {k:?}")
                })],
        };
        for kind in kinds {
            let previous = documented
                .entry(kind)
                .or_default()
                .insert(vars[0].clone(), row[2].clone());
            assert!(
                previous.is_none(),
                "docs/reference.md: {kind} variable {} listed twice",
                vars[0]
            );
        }
    }

    let mut problems = Vec::new();
    for (kind, kind_yaml, placeholder) in KINDS {
        // The checker's own list, as it tells a user who wrote an unknown variable.
        let err = load_with_alert(kind_yaml, "zz_no_such_variable")
            .expect_err("an unknown variable must be a load error");
        let known = err
            .split_once("(known: ")
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(list, _)| list)
            .unwrap_or_else(|| {
                panic!("{kind}: the unknown-variable error names no known variables: {err}")
            });
        let mut checker = BTreeSet::new();
        for entry in known.split(", ") {
            match entry.rsplit_once('.') {
                Some((head, alternatives)) if alternatives.contains('|') => {
                    for a in alternatives.split('|') {
                        checker.insert(format!("{head}.{a}"));
                    }
                }
                _ => {
                    checker.insert(entry.to_string());
                }
            }
        }
        let docs = documented.get(kind).cloned().unwrap_or_default();
        for var in &checker {
            if !docs.contains_key(var) {
                problems.push(format!(
                    "{kind} variable {var} is known to the checker but not in docs/reference.md's variables table"
                ));
            }
        }
        for (var, ty) in &docs {
            if !checker.contains(var) {
                problems.push(format!(
                    "docs/reference.md documents {kind} variable {var}, but the checker does not list it: {known}"
                ));
            }
            // An expression that type-checks only if the variable has the documented type.
            let name = var.replace("<name>", placeholder);
            let when = match ty.as_str() {
                "boolean" => name.clone(),
                "number" => format!("{name} == 1"),
                "duration" => format!("{name} > 1s"),
                "string" => format!("{name} == 'x'"),
                other => {
                    problems.push(format!(
                        "docs/reference.md: {kind} variable {var} has type {other:?} (boolean, number, duration or string)"
                    ));
                    continue;
                }
            };
            if let Err(e) = load_with_alert(kind_yaml, &when) {
                problems.push(format!(
                    "docs/reference.md says {kind} variable {var} is a {ty}, but `when: {when}` is refused: {e}"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// The command line
// ---------------------------------------------------------------------------------------------

/// `canaryd <path> -h`: its subcommands (without `help`) and its long flags (without `--help`
/// and `--version`).
fn help(path: &[String]) -> (Vec<String>, Vec<String>) {
    let out = Command::new(BIN)
        .args(path)
        .arg("-h")
        .output()
        .expect("run canaryd -h");
    assert!(out.status.success(), "canaryd {} -h failed", path.join(" "));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (mut commands, mut flags) = (Vec::new(), Vec::new());
    let mut in_commands = false;
    for line in text.lines() {
        if !line.starts_with(' ') {
            in_commands = line.trim_end() == "Commands:";
            continue;
        }
        let trimmed = line.trim_start();
        if in_commands && line.len() - trimmed.len() == 2 {
            let name = trimmed.split_whitespace().next().unwrap_or("");
            if name != "help" {
                commands.push(name.to_string());
            }
        }
        if trimmed.starts_with('-') {
            // The option itself, before the two spaces that start its description.
            let spec = trimmed.split("  ").next().unwrap_or("");
            for word in spec.split([' ', ',', '=', '<', '[']) {
                if let Some(flag) = word.strip_prefix("--") {
                    if !flag.is_empty() && flag != "help" && flag != "version" {
                        flags.push(format!("--{flag}"));
                    }
                }
            }
        }
    }
    (commands, flags)
}

fn mentions_flag(text: &str, flag: &str) -> bool {
    text.match_indices(flag).any(|(i, _)| {
        !text[i + flag.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '_')
    })
}

#[test]
fn every_command_and_flag_is_in_the_command_line_reference() {
    let cli = section(&reference(), "## Command line");
    let mut problems = Vec::new();
    let mut todo = vec![Vec::<String>::new()];
    let mut seen = 0;
    while let Some(path) = todo.pop() {
        let (commands, flags) = help(&path);
        if !path.is_empty() {
            seen += 1;
            let name = format!("canaryd {}", path.join(" "));
            if !cli.contains(&name) {
                problems.push(format!(
                    "`{name}` is not in docs/reference.md's Command line section"
                ));
            }
        }
        for flag in flags {
            if !mentions_flag(&cli, &flag) {
                let mut at = String::from("canaryd");
                for p in &path {
                    let _ = write!(at, " {p}");
                }
                problems.push(format!(
                    "{at}: flag {flag} is not in docs/reference.md's Command line section"
                ));
            }
        }
        for c in commands {
            let mut sub = path.clone();
            sub.push(c);
            todo.push(sub);
        }
    }
    assert!(seen >= 4, "found only {seen} subcommands in canaryd -h");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
