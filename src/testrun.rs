//! `canaryd test`: runs checks once, at the same time, judges each result as the daemon would
//! (the verdict, and which of its alert conditions hold on it), prints one line per check (or
//! JSON), and writes a JUnit XML report for CI systems.
//!
//! A check fails the test when its run fails, or when one of its alert conditions holds on the
//! result (`for`, `consecutive` and `window` need many results, so a condition that holds once
//! counts here). A condition that cannot be judged from one result (a rate) is reported as
//! unknown and fails nothing.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::config::expr;
use crate::probe::CheckResult;
use crate::schedule::{self, Entry};

/// At most this many checks run at once.
const CONCURRENCY: usize = 64;

/// One check's outcome.
#[derive(Debug)]
pub struct Outcome {
    /// The check's name.
    pub name: String,
    /// Its kind.
    pub kind: &'static str,
    /// The run.
    pub result: CheckResult,
    /// Each alert rule: name, severity, and whether its condition holds (None: unknown).
    pub alerts: Vec<(String, &'static str, Option<bool>)>,
}

impl Outcome {
    /// Whether the check passes the test: its run passed and no alert condition holds.
    pub fn passed(&self) -> bool {
        self.result.success && !self.alerts.iter().any(|(_, _, holds)| *holds == Some(true))
    }

    /// Why it failed, in one line (run failure first, then the conditions that hold).
    pub fn failure(&self) -> Option<String> {
        let mut parts = Vec::new();
        if !self.result.success {
            let reason = self.result.reason.map(|r| r.as_str()).unwrap_or("unknown");
            match &self.result.message {
                Some(m) => parts.push(format!("{reason}: {m}")),
                None => parts.push(reason.to_string()),
            }
        }
        for (name, severity, holds) in &self.alerts {
            if *holds == Some(true) {
                parts.push(format!("alert {name} ({severity}) would fire"));
            }
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// Runs `entries` once each, at most [`CONCURRENCY`] at a time; outcomes in `entries`' order.
pub async fn run(entries: Vec<Entry>) -> Vec<Outcome> {
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut tasks = Vec::with_capacity(entries.len());
    for entry in entries {
        let slots = slots.clone();
        tasks.push(tokio::spawn(async move {
            let _slot = slots.acquire_owned().await;
            let result = schedule::run_once(&entry, tokio::time::Instant::now()).await;
            judge(&entry, result)
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        match t.await {
            Ok(o) => out.push(o),
            // run_once catches a probe's panic; a panic here is canaryd's own bug.
            Err(e) => tracing::error!("a test run crashed: {e}"),
        }
    }
    out
}

/// Judges one result of `entry`'s check: its alert conditions evaluated on it.
pub fn judge(entry: &Entry, result: CheckResult) -> Outcome {
    let now = SystemTime::now();
    let kind = &entry.check.kind;
    let alerts = entry
        .check
        .alerts
        .iter()
        .map(|rule| {
            let holds = expr::eval_cond(&rule.expr, &|v| kind.variable(&result, v, now));
            (rule.name.clone(), rule.severity.as_str(), holds)
        })
        .collect();
    Outcome {
        name: entry.check.name.clone(),
        kind: kind.name(),
        result,
        alerts,
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// Each alert condition on one result, a line each (what `canaryd probe` prints last).
pub fn alert_lines(o: &Outcome) -> String {
    let mut s = String::new();
    for (name, severity, holds) in &o.alerts {
        let verdict = match holds {
            Some(true) => "holds: it would fire (after its for/consecutive/window)",
            Some(false) => "does not hold",
            None => "unknown: one run cannot tell (a rate needs two)",
        };
        let _ = writeln!(s, "alert {name} ({severity}): {verdict}");
    }
    s
}

/// One line per check: `PASS name (kind) 120ms` or `FAIL name (kind) 3.0s: why`.
pub fn text(outcomes: &[Outcome]) -> String {
    let mut s = String::new();
    for o in outcomes {
        let took = format!("{:.0}ms", o.result.duration.as_secs_f64() * 1000.0);
        match o.failure() {
            None => {
                let _ = writeln!(s, "PASS  {} ({}) {took}", o.name, o.kind);
            }
            Some(why) => {
                let _ = writeln!(s, "FAIL  {} ({}) {took}: {why}", o.name, o.kind);
            }
        }
        for (name, _, holds) in &o.alerts {
            if holds.is_none() {
                let _ = writeln!(s, "      alert {name}: cannot be judged from one run");
            }
        }
    }
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    let _ = writeln!(
        s,
        "{} checks: {} passed, {failed} failed",
        outcomes.len(),
        outcomes.len() - failed
    );
    s
}

/// The outcomes as JSON.
pub fn json(outcomes: &[Outcome]) -> Value {
    json!({
        "checks": outcomes.iter().map(|o| json!({
            "name": o.name,
            "kind": o.kind,
            "passed": o.passed(),
            "success": o.result.success,
            "reason": o.result.reason.map(|r| r.as_str()),
            "message": o.result.message,
            "duration_seconds": o.result.duration.as_secs_f64(),
            "failure": o.failure(),
            "alerts": o.alerts.iter().map(|(name, severity, holds)| json!({
                "name": name, "severity": severity, "holds": holds,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "passed": outcomes.iter().filter(|o| o.passed()).count(),
        "failed": outcomes.iter().filter(|o| !o.passed()).count(),
    })
}

/// Escapes text for XML content and attribute values; characters XML 1.0 cannot carry become
/// U+FFFD.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A JUnit XML report (the schema Jenkins, GitLab and GitHub test reporters read): one
/// `testcase` per check (`classname` `canaryd.<kind>`), a `failure` with the reason and the
/// run's trace for a failed one.
pub fn junit(outcomes: &[Outcome], traces: &[String]) -> String {
    let failures = outcomes.iter().filter(|o| !o.passed()).count();
    let total: Duration = outcomes.iter().map(|o| o.result.duration).sum();
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        s,
        "<testsuites name=\"canaryd\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{}\">",
        outcomes.len(),
        seconds(total)
    );
    let _ = writeln!(
        s,
        "  <testsuite name=\"canaryd\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"{}\" timestamp=\"{}\">",
        outcomes.len(),
        seconds(total),
        xml(&crate::alert::rfc3339(SystemTime::now())),
    );
    for (o, trace) in outcomes.iter().zip(traces) {
        let _ = write!(
            s,
            "    <testcase classname=\"canaryd.{}\" name=\"{}\" time=\"{}\">",
            xml(o.kind),
            xml(&o.name),
            seconds(o.result.duration)
        );
        if let Some(why) = o.failure() {
            let kind = o.result.reason.map(|r| r.as_str()).unwrap_or("alert");
            let _ = write!(
                s,
                "\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    ",
                xml(&why),
                xml(kind),
                xml(trace)
            );
        } else {
            let _ = write!(s, "\n      <system-out>{}</system-out>\n    ", xml(trace));
        }
        s.push_str("</testcase>\n");
    }
    s.push_str("  </testsuite>\n</testsuites>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_text_is_escaped_and_never_carries_what_xml_cannot() {
        assert_eq!(
            xml("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;"
        );
        assert_eq!(
            xml("bell\u{7}nul\u{0}ok\ttab"),
            "bell\u{fffd}nul\u{fffd}ok\ttab"
        );
    }
}
