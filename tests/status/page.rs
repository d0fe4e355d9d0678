//! A status page as a person sees it in headless Chromium: [`check_page`] loads any URL of a
//! status page at 1280 and 375 px (`tests/browser/status_page.mjs`) and returns a
//! [`PageReport`] (the texts shown, console errors and CSP violations, serious axe violations,
//! sideways overflow, a planted script that ran, screenshots).
//!
//! Use from a test file that has `mod services;`:
//!
//! ```ignore
//! mod services;
//! #[path = "status/page.rs"]
//! mod page;
//!
//! let Some(report) = page::check_page(&format!("{base}/"), "demo") else { return };
//! assert_eq!(report.faults(&[]), Vec::<String>::new());
//! assert_eq!(report.at(375).banner.as_deref(), Some("Partial System Outage"));
//! ```
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use serde::Deserialize;

use crate::services::require;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A URL's path as a file name: `index` for `/`, `incidents-41`.
fn page_name(url: &str) -> String {
    let path = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(_, p)| p)
        .unwrap_or("");
    let name: String = path
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches('-').to_string();
    if name.is_empty() {
        "index".into()
    } else {
        name
    }
}

/// What one width of one page showed.
#[derive(Debug, Deserialize)]
pub struct PageView {
    pub width: u32,
    /// The HTTP status of the page.
    pub status: u16,
    /// `document.title`.
    pub title: String,
    pub h1: Option<String>,
    /// The overall status sentence.
    pub banner: Option<String>,
    /// The stylesheet applied.
    pub styled: bool,
    pub components: Vec<ComponentSeen>,
    /// Incident summaries (open ones first, then past ones).
    pub incidents: Vec<IncidentSeen>,
    /// An incident page's updates, newest first.
    pub timeline: Vec<UpdateSeen>,
    /// The dates heading the past incidents.
    pub past_days: Vec<String>,
    /// The page's whole visible text.
    pub text: String,
    /// `window.__pwned`: set only if a planted script ran.
    pub pwned: Option<String>,
    /// `<script>` elements in the page (before axe was injected).
    pub scripts: usize,
    /// Wider than the viewport (sideways scrolling).
    pub overflow: bool,
    /// axe-core violations of impact serious or critical.
    pub violations: Vec<String>,
    /// Console errors and warnings (CSP violations among them), page errors, failed requests,
    /// HTTP errors.
    pub problems: Vec<String>,
    pub screenshot: PathBuf,
}

#[derive(Debug, Deserialize)]
pub struct ComponentSeen {
    pub name: Option<String>,
    pub status: Option<String>,
    pub description: Option<String>,
    pub uptime: Option<String>,
    pub days: usize,
    pub day_texts: Vec<Option<String>>,
    /// Width in CSS pixels of one day's bar.
    pub day_width: f64,
}

#[derive(Debug, Deserialize)]
pub struct IncidentSeen {
    pub title: Option<String>,
    pub state: Option<String>,
    pub body: Option<String>,
    pub affects: Option<String>,
    pub link: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct UpdateSeen {
    pub state: Option<String>,
    pub when: Option<String>,
    pub datetime: Option<String>,
    pub body: Option<String>,
}

/// One page at 1280 and 375 px.
#[derive(Debug, Deserialize)]
pub struct PageReport {
    pub views: Vec<PageView>,
}

impl PageReport {
    /// The view at this width.
    pub fn at(&self, width: u32) -> &PageView {
        self.views
            .iter()
            .find(|v| v.width == width)
            .unwrap_or_else(|| panic!("no view at {width} px"))
    }

    /// Everything a reader should never meet, across widths: console errors and CSP
    /// violations, failed requests, serious axe violations, sideways scrolling, an unstyled
    /// page, a planted script that ran. `allowed` lists problems expected (a 404 page's own
    /// status).
    pub fn faults(&self, allowed: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        for v in &self.views {
            let w = v.width;
            out.extend(
                v.problems
                    .iter()
                    .filter(|p| !allowed.iter().any(|a| p.contains(a)))
                    .map(|p| format!("{w}px: {p}")),
            );
            out.extend(v.violations.iter().map(|p| format!("{w}px: axe {p}")));
            if v.overflow {
                out.push(format!("{w}px: wider than the viewport"));
            }
            if !v.styled {
                out.push(format!("{w}px: the stylesheet did not apply"));
            }
            if let Some(p) = &v.pwned {
                out.push(format!("{w}px: a planted script ran ({p})"));
            }
            if v.scripts > 0 {
                out.push(format!("{w}px: {} <script> elements", v.scripts));
            }
            if !v.screenshot.is_file() {
                out.push(format!(
                    "{w}px: no screenshot at {}",
                    v.screenshot.display()
                ));
            }
        }
        out
    }
}

/// Loads `url` in headless Chromium at 1280 and 375 px and reports what a person sees; the
/// screenshots go to `target/test-artefacts/<artefact_name>/<page>-<width>.png` (`<page>` from
/// the URL's path). `None` when node or chromium is missing outside CI (the test is skipped);
/// under `CI=true` that panics.
pub fn check_page(url: &str, artefact_name: &str) -> Option<PageReport> {
    let node = require("node")?;
    require("chromium")?;
    let name = page_name(url);
    let dir = repo().join("target/test-artefacts").join(artefact_name);
    let input = serde_json::json!({ "url": url, "dir": dir, "name": name, "widths": [1280, 375] });
    let out = Command::new(node)
        .arg(repo().join("tests/browser/status_page.mjs"))
        .arg(input.to_string())
        .env(
            "CANARYD_NODE_MODULES",
            repo().join("scripts/lib/node/node_modules"),
        )
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "status_page.mjs failed on {url}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    Some(serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}")))
}
