//! The public status page as its readers see it: the router of `canaryd::status::web` served on
//! a loopback port over fixed snapshots (all operational; an outage with an open incident, a
//! planted `<script>` in every public text and 90 days of mixed history), then read by
//!
//! - headless Chromium (`tests/browser/status_page.mjs`): the texts a person sees, no console
//!   error or CSP violation, no serious/critical axe violation, no sideways scrolling at 375 px,
//!   the planted script shown as text and never run; screenshots at 1280 and 375 px under
//!   `target/test-artefacts/status_page/`;
//! - feedparser (the Atom feed parses cleanly, one entry per incident);
//! - `tests/status/statuspage_client.py`, a Statuspage-format consumer (what a widget reads, every
//!   field validated against Statuspage's schema);
//! - a plain HTTP client (routes, methods, security headers, ETags).
//!
//! [`check_page`] is the reusable part: any URL of a status page, one [`PageReport`].

#[path = "status/page.rs"]
mod page;
mod services;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime};

use chrono::{Days, NaiveDate};
use serde_json::Value;

use canaryd::status::model::{
    slug, uptime, ComponentStatus, ComponentView, Day, Impact, Incident, IncidentState,
    IncidentUpdate, Snapshot, Source, HISTORY_DAYS,
};
use canaryd::status::web::{router, CSP};
use page::check_page;
use services::{http_request, require, HttpResponse};

/// Text planted in every public string: shown as text, it never runs. Run, it would set
/// `window.__pwned` and the document's title.
const PLANT: &str = "<script>window.__pwned='script';document.title='pwned'</script>\
                     <img src=x onerror=\"window.__pwned='img'\">\"'&";

// ---------------------------------------------------------------------------------------------
// Serving snapshots
// ---------------------------------------------------------------------------------------------

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
});

/// Serves `router(source)` on a free loopback port for the rest of the test process; returns
/// `http://127.0.0.1:PORT`.
fn serve(source: Arc<dyn Source>) -> String {
    RUNTIME.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(source)).await });
        format!("http://{addr}")
    })
}

/// A source whose snapshot the test can replace (a page that changes).
struct Switchable(Arc<Mutex<Arc<Snapshot>>>);

impl Source for Switchable {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.0.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------------------------

const DAY_MS: u64 = 86_400_000;

/// 2026-12-04 00:00 UTC plus `secs`.
fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_342_400 + secs)
}

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 4).unwrap()
}

/// 90 days ending today, each made by `f(days_ago)`.
fn history(f: impl Fn(u64) -> (u64, u64, u64, u64)) -> Vec<Day> {
    (0..HISTORY_DAYS as u64)
        .rev()
        .map(|ago| {
            let (observed_ms, degraded_ms, partial_ms, major_ms) = f(ago);
            Day {
                date: Some(today() - Days::new(ago)),
                observed_ms,
                degraded_ms,
                partial_ms,
                major_ms,
            }
        })
        .collect()
}

fn component(
    name: &str,
    description: Option<&str>,
    status: ComponentStatus,
    days: Vec<Day>,
) -> ComponentView {
    let sum = |f: fn(&Day) -> u64| days.iter().map(f).sum::<u64>();
    let up = uptime(
        sum(|d| d.observed_ms),
        sum(|d| d.partial_ms),
        sum(|d| d.major_ms),
    );
    ComponentView {
        id: slug(name),
        name: name.into(),
        description: description.map(Into::into),
        status,
        since: at(3600),
        days,
        uptime: up,
    }
}

fn update(id: i64, state: IncidentState, body: &str, at: SystemTime) -> IncidentUpdate {
    IncidentUpdate {
        id,
        state,
        body: body.into(),
        at,
    }
}

fn resolved_incident(id: i64, title: &str, day_ago: u64, component: &str) -> Incident {
    let start = at(0) - Duration::from_secs(day_ago * 86_400) + Duration::from_secs(9 * 3600);
    let end = start + Duration::from_secs(1800);
    Incident {
        id,
        title: title.into(),
        impact: Impact::Minor,
        state: IncidentState::Resolved,
        components: vec![component.into()],
        created: start,
        updated: end,
        resolved: Some(end),
        automatic: true,
        updates: vec![
            update(id * 10 + 2, IncidentState::Resolved, "Recovered.", end),
            update(
                id * 10 + 1,
                IncidentState::Investigating,
                "Checks fail.",
                start,
            ),
        ],
    }
}

/// Everything operational, 90 days of clean history, one past incident.
fn calm() -> Snapshot {
    let full = || history(|_| (DAY_MS, 0, 0, 0));
    Snapshot {
        title: "Acme".into(),
        description: Some("Service status of Acme".into()),
        public_url: None,
        generated: at(13 * 3600),
        components: vec![
            component("Website", None, ComponentStatus::Operational, full()),
            component(
                "Sign-in",
                Some("Logging in"),
                ComponentStatus::Operational,
                full(),
            ),
            component("Public API", None, ComponentStatus::Operational, full()),
        ],
        open: vec![],
        past: vec![resolved_incident(3, "Slow sign-in", 12, "Sign-in")],
        version: 1,
    }
}

fn sign_in() -> String {
    format!("Sign-in {PLANT}")
}

/// One component in partial outage, one in major outage, an open incident with three updates,
/// past incidents on two days, mixed history; [`PLANT`] in every public text.
fn outage() -> Snapshot {
    let mixed = history(|ago| match ago {
        60.. => (0, 0, 0, 0),                   // not watched yet: no data
        1 => (DAY_MS, 0, 720_000, 0),           // yesterday: 12 min partial outage
        5 => (DAY_MS, 3_600_000, 0, 0),         // degraded an hour
        9 => (DAY_MS, 0, 0, 1_800_000),         // half an hour down
        0 => (13 * 3_600_000, 0, 2_400_000, 0), // today so far: 40 min partial
        _ => (DAY_MS, 0, 0, 0),
    });
    let api = history(|ago| match ago {
        0 => (13 * 3_600_000, 0, 0, 1_200_000),
        _ => (DAY_MS, 0, 0, 0),
    });
    let website = history(|_| (DAY_MS, 0, 0, 0));
    let open = Incident {
        id: 41,
        title: format!("Logins failing {PLANT}"),
        impact: Impact::Major,
        state: IncidentState::Monitoring,
        components: vec![sign_in(), "Public API".into()],
        created: at(12 * 3600),
        updated: at(12 * 3600 + 2400),
        resolved: None,
        automatic: false,
        updates: vec![
            update(
                413,
                IncidentState::Monitoring,
                "A fix is out.\nWatching it.",
                at(12 * 3600 + 2400),
            ),
            update(412, IncidentState::Identified, PLANT, at(12 * 3600 + 1200)),
            update(
                411,
                IncidentState::Investigating,
                "We are looking into failed logins.",
                at(12 * 3600),
            ),
        ],
    };
    Snapshot {
        title: format!("Acme {PLANT}"),
        description: Some(format!("Service status {PLANT}")),
        public_url: Some("https://status.example.com".into()),
        generated: at(13 * 3600),
        components: vec![
            component(
                &sign_in(),
                Some(&format!("Logging in {PLANT}")),
                ComponentStatus::PartialOutage,
                mixed,
            ),
            component("Public API", None, ComponentStatus::MajorOutage, api),
            component("Website", None, ComponentStatus::Operational, website),
        ],
        open: vec![open],
        past: vec![
            resolved_incident(40, "Slow pages", 1, "Website"),
            resolved_incident(39, &format!("Queue stuck {PLANT}"), 9, &sign_in()),
            resolved_incident(38, "Queue stuck again", 9, &sign_in()),
        ],
        version: 5,
    }
}

// ---------------------------------------------------------------------------------------------
// The browser
// ---------------------------------------------------------------------------------------------

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------------
// Tests: the browser
// ---------------------------------------------------------------------------------------------

#[test]
fn an_outage_reads_right_and_planted_markup_stays_text() {
    let base = serve(Arc::new(Arc::new(outage())));
    let Some(report) = check_page(&format!("{base}/"), "status_page/outage") else {
        return;
    };
    assert_eq!(report.faults(&[]), Vec::<String>::new(), "{report:#?}");
    for v in &report.views {
        assert_eq!(v.status, 200);
        assert_eq!(v.title, format!("Acme {PLANT}"), "the title is text");
        // The title heads the page (above); the main heading says what follows.
        assert_eq!(v.h1.as_deref(), Some("Current status"));
        assert_eq!(v.banner.as_deref(), Some("Major System Outage"));
        let seen: Vec<(&str, &str)> = v
            .components
            .iter()
            .map(|c| (c.name.as_deref().unwrap(), c.status.as_deref().unwrap()))
            .collect();
        assert_eq!(
            seen,
            [
                (sign_in().as_str(), "Partial outage"),
                ("Public API", "Major outage"),
                ("Website", "Operational")
            ]
        );
        let c = &v.components[0];
        assert_eq!(
            c.description.as_deref(),
            Some(format!("Logging in {PLANT}").as_str())
        );
        assert_eq!(c.days, HISTORY_DAYS);
        assert!(
            c.day_width >= 1.5,
            "{}px: a day is {} px wide",
            v.width,
            c.day_width
        );
        let texts: Vec<&str> = c.day_texts.iter().map(|t| t.as_deref().unwrap()).collect();
        assert_eq!(texts[0], "6 Sep 2026: no data");
        assert_eq!(
            texts[88],
            "3 Dec 2026: partial outage 12 min, 99.75 % uptime"
        );
        assert_eq!(
            texts[84],
            "29 Nov 2026: degraded performance 1 h, 100 % uptime"
        );
        assert_eq!(
            texts[80],
            "25 Nov 2026: major outage 30 min, 97.91 % uptime"
        );
        assert_eq!(
            texts[89],
            "4 Dec 2026: partial outage 40 min, 98.46 % uptime"
        );
        assert_eq!(texts[50], "26 Oct 2026: operational, 100 % uptime");
        assert_eq!(c.uptime.as_deref(), Some("99.94 % uptime"));
        assert_eq!(v.components[2].uptime.as_deref(), Some("100 % uptime"));

        let open = &v.incidents[0];
        assert_eq!(
            open.title.as_deref(),
            Some(format!("Logins failing {PLANT}").as_str())
        );
        assert_eq!(open.state.as_deref(), Some("Monitoring"));
        assert_eq!(open.body.as_deref(), Some("A fix is out.\nWatching it."));
        assert_eq!(
            open.affects.as_deref(),
            Some(format!("Affected: {}, Public API", sign_in()).as_str())
        );
        assert_eq!(
            open.link.as_deref(),
            Some(format!("{base}/incidents/41").as_str())
        );
        assert_eq!(v.incidents.len(), 4, "one open, three past");
        assert_eq!(v.past_days, ["3 Dec 2026", "25 Nov 2026"]);
        assert!(
            v.text.contains("Updated 4 Dec 2026, 13:00 UTC"),
            "{}",
            v.text
        );
    }
}

#[test]
fn an_incident_page_shows_its_timeline() {
    let base = serve(Arc::new(Arc::new(outage())));
    let Some(report) = check_page(&format!("{base}/incidents/41"), "status_page/outage") else {
        return;
    };
    assert_eq!(report.faults(&[]), Vec::<String>::new(), "{report:#?}");
    let v = report.at(375);
    assert_eq!(
        v.h1.as_deref(),
        Some(format!("Logins failing {PLANT}").as_str())
    );
    assert!(
        v.title.starts_with("Logins failing <script>"),
        "{}",
        v.title
    );
    let timeline: Vec<(&str, &str, &str)> = v
        .timeline
        .iter()
        .map(|u| {
            (
                u.state.as_deref().unwrap(),
                u.datetime.as_deref().unwrap(),
                u.body.as_deref().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        timeline,
        [
            (
                "Monitoring",
                "2026-12-04T12:40:00Z",
                "A fix is out.\nWatching it."
            ),
            ("Identified", "2026-12-04T12:20:00Z", PLANT),
            (
                "Investigating",
                "2026-12-04T12:00:00Z",
                "We are looking into failed logins."
            ),
        ]
    );
    assert_eq!(v.timeline[0].when.as_deref(), Some("4 Dec 2026, 12:40 UTC"));
    assert!(v.text.contains("Major impact"), "{}", v.text);
}

#[test]
fn all_operational_and_the_404_page() {
    let base = serve(Arc::new(Arc::new(calm())));
    let Some(report) = check_page(&format!("{base}/"), "status_page/calm") else {
        return;
    };
    assert_eq!(report.faults(&[]), Vec::<String>::new(), "{report:#?}");
    let v = report.at(1280);
    assert_eq!(v.banner.as_deref(), Some("All Systems Operational"));
    assert!(v
        .components
        .iter()
        .all(|c| c.status.as_deref() == Some("Operational")
            && c.uptime.as_deref() == Some("100 % uptime")));
    assert_eq!(v.components.len(), 3);
    assert!(!v.text.contains("Open incidents"));
    assert_eq!(v.past_days, ["22 Nov 2026"]);
    assert_eq!(v.incidents[0].title.as_deref(), Some("Slow sign-in"));
    assert_eq!(v.incidents[0].state.as_deref(), Some("Resolved"));

    let missing = format!("{base}/no/such/page");
    let report = check_page(&missing, "status_page/calm").unwrap();
    let expected = [
        format!("HTTP 404: {missing}"),
        "the server responded with a status of 404".to_string(),
    ];
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_eq!(report.faults(&expected), Vec::<String>::new());
    let v = report.at(375);
    assert_eq!(v.status, 404);
    assert_eq!(v.h1.as_deref(), Some("Page not found"));
    assert!(v.text.contains("See the current status"));
}

// ---------------------------------------------------------------------------------------------
// Tests: feed and JSON readers
// ---------------------------------------------------------------------------------------------

fn python() -> Option<PathBuf> {
    let venv = repo().join(".cache/venv/bin/python");
    if venv.is_file() {
        return Some(venv);
    }
    require(venv.to_str().unwrap())
}

fn run_python(args: &[&str]) -> Value {
    let out = Command::new(python().unwrap())
        .args(args)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python {args:?}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

const FEEDPARSER: &str = r#"
import feedparser, json, sys
d = feedparser.parse(sys.argv[1])
print(json.dumps({
    "bozo": d.bozo,
    "bozo_exception": str(d.get("bozo_exception", "")),
    "version": d.version,
    "title": d.feed.get("title"),
    "id": d.feed.get("id"),
    "entries": [{
        "id": e.get("id"),
        "title": e.get("title"),
        "link": e.get("link"),
        "updated": e.get("updated"),
        "content": e.content[0].value if e.get("content") else None,
    } for e in d.entries],
}))
"#;

#[test]
fn feedparser_reads_the_atom_feed() {
    if python().is_none() {
        return;
    }
    let base = serve(Arc::new(Arc::new(outage())));
    let feed = run_python(&["-c", FEEDPARSER, &format!("{base}/history.atom")]);
    assert_eq!(feed["bozo"], false, "{feed:#}");
    assert_eq!(feed["version"], "atom10");
    assert_eq!(feed["title"], format!("Acme {PLANT} incident history"));
    let entries = feed["entries"].as_array().unwrap();
    let ids: Vec<&str> = entries.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let tag = format!("tag:canaryd,2026:{}", slug(&format!("Acme {PLANT}")));
    assert_eq!(
        ids,
        [41, 40, 39, 38].map(|n| format!("{tag}:incident:{n}")),
        "newest first"
    );
    let first = &entries[0];
    assert_eq!(
        first["title"],
        format!("Logins failing {PLANT} (Monitoring)")
    );
    assert_eq!(first["link"], "https://status.example.com/incidents/41");
    assert_eq!(first["updated"], "2026-12-04T12:40:00+00:00");
    let content = first["content"].as_str().unwrap();
    assert!(
        content.contains("Monitoring — 4 Dec 2026, 12:40 UTC\nA fix is out.\nWatching it."),
        "{content}"
    );
    assert!(content.contains(&format!("Identified — 4 Dec 2026, 12:20 UTC\n{PLANT}")));
}

#[test]
fn a_statuspage_consumer_reads_summary_and_status() {
    if python().is_none() {
        return;
    }
    let client = repo().join("tests/status/statuspage_client.py");
    let base = serve(Arc::new(Arc::new(outage())));
    let read = run_python(&[client.to_str().unwrap(), &base]);
    assert_eq!(read["errors"], serde_json::json!([]), "{read:#}");
    assert_eq!(read["page"], format!("Acme {PLANT}"));
    assert_eq!(
        read["indicator"], "critical",
        "a component is in major outage"
    );
    assert_eq!(read["description"], "Major System Outage");
    assert_eq!(
        read["components"]["partial_outage"],
        serde_json::json!([sign_in()])
    );
    assert_eq!(
        read["components"]["major_outage"],
        serde_json::json!(["Public API"])
    );
    assert_eq!(
        read["components"]["operational"],
        serde_json::json!(["Website"])
    );
    let incidents = read["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1, "only the unresolved one");
    assert_eq!(incidents[0]["name"], format!("Logins failing {PLANT}"));
    assert_eq!(incidents[0]["status"], "monitoring");
    assert_eq!(incidents[0]["impact"], "major");
    assert_eq!(incidents[0]["latest_update"], "A fix is out.\nWatching it.");
    assert_eq!(incidents[0]["latest_update_at"], "2026-12-04T12:40:00.000Z");
    assert_eq!(
        incidents[0]["components"],
        serde_json::json!([sign_in(), "Public API"])
    );

    let base = serve(Arc::new(Arc::new(calm())));
    let read = run_python(&[client.to_str().unwrap(), &base]);
    assert_eq!(read["errors"], serde_json::json!([]), "{read:#}");
    assert_eq!(read["indicator"], "none");
    assert_eq!(read["description"], "All Systems Operational");
    assert_eq!(read["incidents"], serde_json::json!([]));
}

// ---------------------------------------------------------------------------------------------
// Tests: HTTP
// ---------------------------------------------------------------------------------------------

fn get(url: &str, headers: &[(&str, &str)]) -> HttpResponse {
    http_request("GET", url, headers, None).unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

#[test]
fn routes_methods_and_security_headers() {
    let base = serve(Arc::new(Arc::new(outage())));
    let html = "text/html; charset=utf-8";
    let json = "application/json; charset=utf-8";
    for (path, status, ctype) in [
        ("/", 200, html),
        ("/incidents/41", 200, html),
        ("/incidents/39", 200, html),
        ("/incidents/7", 404, html),
        ("/incidents/041", 404, html),
        ("/incidents/x", 404, html),
        ("/nope", 404, html),
        ("/static/status.css", 200, "text/css; charset=utf-8"),
        ("/history.atom", 200, "application/atom+xml; charset=utf-8"),
        ("/api/v2/summary.json", 200, json),
        ("/api/v2/status.json", 200, json),
        ("/api/v2/components.json", 200, json),
        ("/api/v2/incidents.json", 200, json),
        ("/api/v2/incidents/unresolved.json", 200, json),
        ("/api/v2/scheduled-maintenances.json", 200, json),
        ("/api/v2/scheduled-maintenances/upcoming.json", 200, json),
        ("/api/v2/scheduled-maintenances/active.json", 200, json),
        ("/-/healthy", 200, "text/plain; charset=utf-8"),
    ] {
        let url = format!("{base}{path}");
        let r = get(&url, &[]);
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some(ctype), "{path}");
        assert_eq!(r.header("content-security-policy"), Some(CSP), "{path}");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{path}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(
            r.header("access-control-allow-origin"),
            path.starts_with("/api/").then_some("*"),
            "{path}"
        );
        assert!(!r.body.is_empty(), "{path}");
        if status == 404 {
            assert!(r.text().contains("Page not found"), "{path}");
        }
        let head = http_request("HEAD", &url, &[], None).unwrap();
        assert_eq!(head.status, status, "HEAD {path}");
        assert_eq!(head.header("content-type"), Some(ctype), "HEAD {path}");
    }
    let css = get(&format!("{base}/static/status.css"), &[]);
    assert_eq!(css.header("cache-control"), Some("public, max-age=3600"));
    let index = get(&format!("{base}/"), &[]).text();
    assert!(
        index.contains("href=\"/static/status.css?v="),
        "the page links its stylesheet"
    );
    assert!(!index.contains("<script"), "no script at all");
    assert!(!index.contains("style="), "no inline style");

    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        for path in ["/", "/api/v2/summary.json", "/incidents/41"] {
            let r = http_request(method, &format!("{base}{path}"), &[], Some(b"x=1")).unwrap();
            assert_eq!(r.status, 405, "{method} {path}");
            assert_eq!(r.header("content-security-policy"), Some(CSP));
        }
    }
    let statuspage: Value = get(&format!("{base}/api/v2/incidents.json"), &[]).json();
    let names: Vec<&str> = statuspage["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["41", "40", "39", "38"], "newest first");
}

#[test]
fn etags_hold_until_the_page_changes() {
    let page = Arc::new(Mutex::new(Arc::new(calm())));
    let base = serve(Arc::new(Switchable(page.clone())));
    for path in ["/", "/api/v2/summary.json", "/history.atom"] {
        let url = format!("{base}{path}");
        let first = get(&url, &[]);
        let etag = first.header("etag").expect("an ETag").to_string();
        let again = get(&url, &[("If-None-Match", &etag)]);
        assert_eq!(again.status, 304, "{path}");
        assert!(again.body.is_empty());
        assert_eq!(again.header("content-security-policy"), Some(CSP));
    }
    let url = format!("{base}/");
    let etag = get(&url, &[]).header("etag").unwrap().to_string();
    let mut next = outage();
    next.version = 2;
    *page.lock().unwrap() = Arc::new(next);
    let changed = get(&url, &[("If-None-Match", &etag)]);
    assert_eq!(changed.status, 200, "a new version is a new page");
    assert_ne!(changed.header("etag"), Some(etag.as_str()));
    assert!(changed.text().contains("Major System Outage"));
}
