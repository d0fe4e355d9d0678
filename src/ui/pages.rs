//! The operator view's pages, rendered with maud (every spliced value escaped; no
//! `PreEscaped` anywhere). Widths of the waterfall bars are SVG attributes, not styles, so the
//! strict CSP holds.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use maud::{html, Markup, DOCTYPE};

use super::history::{micros, CheckRuns, Run};
use super::{path_segment, SilenceForm};
use crate::alert::engine::{AlertView, Outcome, Phase as AlertPhase};
use crate::alert::silence::{Silence, MAX_TIME_MS};
use crate::alert::{from_ms, to_ms};
use crate::daemon::Daemon;
use crate::probe::check::Check;
use crate::probe::heartbeat::def::Heartbeat;
use crate::probe::heartbeat::rows::HeartbeatRow;
use crate::probe::heartbeat::{HeartbeatSpec, Schedule};
use crate::probe::queue::QueueReport;
use crate::probe::{CheckResult, Phase, StepResult};

/// The navigation: (path, label).
const NAV: [(&str, &str); 5] = [
    ("/ui/", "Checks"),
    ("/ui/alerts", "Alerts"),
    ("/ui/silences", "Silences"),
    ("/ui/heartbeats", "Heartbeats"),
    ("/ui/queues", "Queues"),
];

/// The label of each phase, in [`Phase::ALL`] order.
pub const PHASE_LABELS: [&str; 5] = ["DNS", "connect", "TLS", "processing", "transfer"];

/// The most of a heartbeat's last ping body shown (its tail).
const BODY_SHOWN: usize = 4096;

/// The width of a waterfall, in SVG user units.
const WIDTH: f64 = 1000.0;

fn layout(title: &str, current: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · canaryd" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href="/ui/static/ui.css";
            }
            body {
                header.top {
                    a.brand href="/ui/" { "canaryd" }
                    nav aria-label="Operator view" {
                        ul {
                            @for (path, label) in NAV {
                                li {
                                    a href=(path) aria-current=[(path == current).then_some("page")] { (label) }
                                }
                            }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A time as `2026-12-04 13:20:05 UTC`.
fn when(t: SystemTime) -> String {
    let s = humantime::format_rfc3339_seconds(t).to_string();
    s.replacen('T', " ", 1).replace('Z', " UTC")
}

/// How long ago `t` was, roughly (`12 s ago`, `3 min ago`).
fn ago(now: SystemTime, t: SystemTime) -> String {
    match now.duration_since(t) {
        Ok(d) => format!("{} ago", rough(d)),
        Err(e) => format!("in {}", rough(e.duration())),
    }
}

fn rough(d: Duration) -> String {
    let s = d.as_secs();
    if s < 120 {
        format!("{s} s")
    } else if s < 7200 {
        format!("{} min", s / 60)
    } else if s < 172_800 {
        format!("{} h", s / 3600)
    } else {
        format!("{} d", s / 86_400)
    }
}

/// A duration for people: `850 µs`, `12.3 ms`, `1.20 s`.
fn dur_us(us: u32) -> String {
    let us = f64::from(us);
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

fn dur(d: Duration) -> String {
    dur_us(micros(d))
}

/// A time with how long ago it was, in a `<time>` element.
fn time_ago(now: SystemTime, t: SystemTime) -> Markup {
    html! {
        time datetime=(humantime::format_rfc3339_seconds(t).to_string()) { (when(t)) }
        " (" (ago(now, t)) ")"
    }
}

/// `pass`, `fail` or `not run yet`, as a badge (the word carries the meaning, the colour helps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Status {
    Fail,
    NotRun,
    Pass,
}

impl Status {
    fn of(r: Option<&CheckResult>) -> Status {
        match r {
            None => Status::NotRun,
            Some(r) if r.success => Status::Pass,
            Some(_) => Status::Fail,
        }
    }

    fn badge(self) -> Markup {
        let (class, text) = match self {
            Status::Fail => ("badge fail", "fail"),
            Status::NotRun => ("badge none", "not run yet"),
            Status::Pass => ("badge pass", "pass"),
        };
        html! { span class=(class) { (text) } }
    }
}

fn ok_badge(ok: bool) -> Markup {
    if ok {
        Status::Pass.badge()
    } else {
        Status::Fail.badge()
    }
}

fn check_link(name: &str) -> Markup {
    html! { a href={ "/ui/checks/" (path_segment(name)) } { (name) } }
}

fn now(d: &Daemon) -> SystemTime {
    d.heartbeats.clock().now()
}

/// Firing first, then pending; inactive ones are left out.
fn active_alerts(d: &Daemon) -> Vec<AlertView> {
    let mut views: Vec<AlertView> = d
        .alerting
        .views()
        .into_iter()
        .filter(|v| v.state != AlertPhase::Inactive)
        .collect();
    views.sort_by(|a, b| {
        (b.state == AlertPhase::Firing)
            .cmp(&(a.state == AlertPhase::Firing))
            .then_with(|| a.check.cmp(&b.check))
            .then_with(|| a.alert.cmp(&b.alert))
    });
    views
}

fn state_badge(state: AlertPhase) -> Markup {
    let class = match state {
        AlertPhase::Firing => "badge fail",
        AlertPhase::Pending => "badge warn",
        AlertPhase::Inactive => "badge none",
    };
    html! { span class=(class) { (state.as_str()) } }
}

/// A link to the silence form with matchers for this alert filled in.
fn silence_link(check: &str, alert: Option<&str>) -> Markup {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("check", check);
    if let Some(a) = alert {
        query.append_pair("alertname", a);
    }
    html! { a.button href={ "/ui/silences?" (query.finish()) } { "Silence…" } }
}

/// The alerts table of the overview: one row per alert.
fn alerts_table(views: &[AlertView]) -> Markup {
    html! {
        table.stack {
            thead { tr { th scope="col" { "State" } th scope="col" { "Check" } th scope="col" { "Alert" } th scope="col" { "Severity" } th scope="col" { "Since" } th scope="col" { "Summary" } th scope="col" { "Silenced" } } }
            tbody {
                @for v in views {
                    tr {
                        td data-label="State" { (state_badge(v.state)) }
                        td data-label="Check" { (check_link(&v.check)) }
                        td data-label="Alert" { (v.alert) }
                        td data-label="Severity" { (v.severity) }
                        td data-label="Since" { (v.active_since.as_deref().unwrap_or("")) }
                        td data-label="Summary" { (v.summary.as_deref().unwrap_or("")) }
                        td data-label="Silenced" { @if v.silenced { "silenced" } @else { "no" } }
                    }
                }
            }
        }
    }
}

/// One alert with everything it knows: the evidence.
fn alert_card(v: &AlertView, heading: u8) -> Markup {
    let title = html! { (v.check) " · " (v.alert) " " (state_badge(v.state)) };
    html! {
        article.card {
            @if heading == 2 { h2 { (title) } } @else { h3 { (title) } }
            dl {
                dt { "Check" } dd { (check_link(&v.check)) }
                dt { "Severity" } dd { (v.severity) }
                dt { "Since" } dd { (v.active_since.as_deref().unwrap_or("—")) }
                dt { "Condition" } dd { code { (v.when) } }
                dt { "Last evaluation" } dd {
                    (match v.last_evaluation {
                        Some(Outcome::True) => "true",
                        Some(Outcome::False) => "false",
                        Some(Outcome::Unknown) => "unknown",
                        None => "not evaluated yet",
                    })
                }
                dt { "Summary" } dd { (v.summary.as_deref().unwrap_or("—")) }
                @for (k, val) in &v.annotations {
                    @if k != "summary" {
                        dt { (k) } dd { (val) }
                    }
                }
                dt { "Silenced" } dd { @if v.silenced { "yes: it notifies nobody now" } @else { "no" } }
                @if let Some(parent) = &v.suppressed_by {
                    dt { "Suppressed by" } dd { (check_link(parent)) " fails (depends_on)" }
                }
                @if !v.dependants_failing.is_empty() {
                    dt { "Failing dependants" } dd {
                        @for (i, c) in v.dependants_failing.iter().enumerate() {
                            @if i > 0 { ", " } (check_link(c))
                        }
                    }
                }
                dt { "Notified" } dd {
                    @if v.notified.is_empty() { "nobody yet" } @else { (v.notified.join(", ")) }
                    @if v.escalated { " (escalated)" }
                }
                dt { "Labels" } dd { (labels(&v.labels)) }
            }
            p { (silence_link(&v.check, Some(&v.alert))) }
        }
    }
}

fn labels(l: &std::collections::BTreeMap<String, String>) -> Markup {
    html! {
        @if l.is_empty() { "—" }
        ul.labels {
            @for (k, v) in l { li { code { (k) "=" (v) } } }
        }
    }
}

pub fn overview(d: &Daemon) -> Markup {
    let config = d.config();
    let now = now(d);
    let mut rows: Vec<(Status, &Check, Option<std::sync::Arc<CheckResult>>)> = config
        .checks
        .iter()
        .map(|c| {
            let last = d.states.get(&c.name);
            (Status::of(last.as_deref()), &**c, last)
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
    let count = |s: Status| rows.iter().filter(|r| r.0 == s).count();
    let alerts = active_alerts(d);
    let firing = alerts
        .iter()
        .filter(|v| v.state == AlertPhase::Firing)
        .count();
    let body = html! {
        ul.counts aria-label="Counts" {
            li { strong { (rows.len()) } " checks" }
            li.fail[count(Status::Fail) > 0] { strong { (count(Status::Fail)) } " failing" }
            li { strong { (count(Status::Pass)) } " passing" }
            li { strong { (count(Status::NotRun)) } " not run yet" }
            li.fail[firing > 0] { strong { (firing) } " alerts firing" }
            li { strong { (alerts.len() - firing) } " pending" }
        }
        @if !alerts.is_empty() {
            section aria-labelledby="alerts" {
                h2 #alerts { "Firing and pending alerts" }
                (alerts_table(&alerts))
            }
        }
        section aria-labelledby="checks" {
            h2 #checks { "Checks" }
            @if rows.is_empty() { p { "No checks are configured on this replica." } }
            @else {
                table.stack {
                    thead { tr {
                        th scope="col" { "Status" } th scope="col" { "Check" } th scope="col" { "Kind" }
                        th scope="col" { "Reason" } th scope="col" { "Message" } th scope="col" { "Last run" } th scope="col" { "Duration" }
                    } }
                    tbody {
                        @for (status, c, last) in &rows {
                            tr {
                                td data-label="Status" { (status.badge()) }
                                td data-label="Check" { (check_link(&c.name)) }
                                td data-label="Kind" { (c.kind.name()) }
                                td data-label="Reason" { (last.as_ref().and_then(|r| r.reason).map(|r| r.as_str()).unwrap_or("")) }
                                td.msg data-label="Message" { (last.as_ref().and_then(|r| r.message.as_deref()).unwrap_or("")) }
                                td data-label="Last run" { @if let Some(r) = last { (time_ago(now, r.started_at)) } }
                                td data-label="Duration" { @if let Some(r) = last { (dur(r.duration)) } }
                            }
                        }
                    }
                }
            }
        }
    };
    layout("Checks", "/ui/", body)
}

pub fn not_found(name: &str) -> Markup {
    layout(
        "Not found",
        "",
        html! {
            p { "No check named " code { (name) } " runs on this replica." }
            p { a href="/ui/" { "All checks" } }
        },
    )
}

pub fn no_silence() -> Markup {
    layout(
        "Not found",
        "/ui/silences",
        html! { p { "No such silence. " a href="/ui/silences" { "Silences" } } },
    )
}

/// A phase's rectangle: x, width (user units), phase index.
type Rect = (f64, f64, usize);
/// A step's background: x, width, failed.
type Mark = (f64, f64, bool);

/// The SVG rectangles of one step's phases from `x0` (user units), `scale` units per µs.
fn phase_rects(x0: f64, phases: &[u32; 5], scale: f64, out: &mut Vec<Rect>) {
    let mut x = x0;
    for (i, us) in phases.iter().enumerate() {
        if *us == 0 {
            continue;
        }
        let w = (f64::from(*us) * scale).max(1.0);
        out.push((x, w, i));
        x += f64::from(*us) * scale;
    }
}

fn phase_class(i: usize) -> &'static str {
    [
        "ph-dns",
        "ph-connect",
        "ph-tls",
        "ph-processing",
        "ph-transfer",
    ][i]
}

/// One bar: the given rectangles on a track as wide as the scale.
fn bar(label: &str, rects: &[Rect], step_marks: &[Mark]) -> Markup {
    html! {
        svg.bar viewBox="0 0 1000 12" preserveAspectRatio="none" role="img" aria-label=(label) {
            @for (x, w, failed) in step_marks {
                rect class=(if *failed { "step failed" } else { "step" }) x=(fmt_f(*x)) y="0" width=(fmt_f(*w)) height="12" {}
            }
            @for (x, w, i) in rects {
                rect class=(phase_class(*i)) x=(fmt_f(*x)) y="2" width=(fmt_f(*w)) height="8" {}
            }
        }
    }
}

fn fmt_f(x: f64) -> String {
    let mut s = String::new();
    let _ = write!(s, "{:.2}", x.clamp(0.0, WIDTH));
    s
}

fn legend() -> Markup {
    html! {
        ul.legend aria-label="Phases" {
            @for (i, label) in PHASE_LABELS.iter().enumerate() {
                li { svg.swatch viewBox="0 0 10 10" aria-hidden="true" { rect class=(phase_class(i)) width="10" height="10" {} } (label) }
            }
        }
    }
}

/// The waterfall of the last result: one row per step, each step starting where the previous
/// one ended, widths proportional to time.
fn step_waterfall(steps: &[StepResult]) -> Markup {
    let total: u64 = steps.iter().map(|s| u64::from(micros(s.duration))).sum();
    let scale = WIDTH / total.max(1) as f64;
    let mut offset = 0.0;
    let mut rows = Vec::with_capacity(steps.len());
    for s in steps {
        let phases = Phase::ALL.map(|p| micros(s.phases.get(p)));
        let width = f64::from(micros(s.duration)) * scale;
        let mut rects = Vec::new();
        let mut marks = Vec::new();
        if s.ran {
            phase_rects(offset, &phases, scale, &mut rects);
            marks.push((offset, width.max(1.0), !s.success));
        }
        rows.push((s, phase_summary(&s.name, &phases), rects, marks));
        offset += width;
    }
    html! {
        (legend())
        div.waterfall {
            @for (s, described, rects, marks) in &rows {
                div.wf-row {
                    span.wf-name { (s.name) }
                    (bar(described, rects, marks))
                    span.wf-time { @if s.ran { (dur(s.duration)) } @else { "skipped" } }
                }
            }
        }
        table.stack.phases {
            caption { "Phase durations per step" }
            thead { tr {
                th scope="col" { "Step" }
                @for l in PHASE_LABELS { th scope="col" { (l) } }
                th scope="col" { "Total" }
            } }
            tbody {
                @for s in steps {
                    tr {
                        th scope="row" data-label="Step" { (s.name) }
                        @for (i, p) in Phase::ALL.iter().enumerate() {
                            td data-label=(PHASE_LABELS[i]) { (dur(s.phases.get(*p))) }
                        }
                        td data-label="Total" { (dur(s.duration)) }
                    }
                }
            }
        }
    }
}

/// `form: DNS 0 µs, connect 120 µs, ...` (the bar's accessible name).
fn phase_summary(name: &str, phases: &[u32; 5]) -> String {
    let parts: Vec<String> = PHASE_LABELS
        .iter()
        .zip(phases)
        .map(|(l, us)| format!("{l} {}", dur_us(*us)))
        .collect();
    format!("{name}: {}", parts.join(", "))
}

/// The waterfall of the last runs, newest first, on one scale.
fn runs_waterfall(h: &CheckRuns) -> Markup {
    let run_total = |r: &Run| -> u64 {
        let steps: u64 = r.steps.iter().map(|s| u64::from(s.duration_us)).sum();
        steps.max(u64::from(r.duration_us))
    };
    let longest = h.runs.iter().map(run_total).max().unwrap_or(1).max(1);
    let scale = WIDTH / longest as f64;
    let rows: Vec<(&Run, Vec<Rect>, Vec<Mark>, String)> = h
        .runs
        .iter()
        .rev()
        .map(|r| {
            let mut rects = Vec::new();
            let mut marks = Vec::new();
            let mut offset = 0.0;
            for s in r.steps.iter() {
                let w = f64::from(s.duration_us) * scale;
                if s.ran {
                    marks.push((offset, w.max(1.0), !s.success));
                    phase_rects(offset, &s.phases_us, scale, &mut rects);
                }
                offset += w;
            }
            if r.steps.is_empty() {
                marks.push((0.0, (f64::from(r.duration_us) * scale).max(1.0), !r.success));
            }
            let label = format!(
                "run at {}: {}{}, {}",
                when(r.started_at()),
                if r.success { "pass" } else { "fail" },
                r.reason.map(|x| format!(" ({x})")).unwrap_or_default(),
                dur_us(r.duration_us)
            );
            (r, rects, marks, label)
        })
        .collect();
    html! {
        div.waterfall.runs {
            @for (r, rects, marks, label) in &rows {
                div.wf-row {
                    span.wf-name {
                        time datetime=(humantime::format_rfc3339_seconds(r.started_at()).to_string()) { (when(r.started_at()).get(11..19).unwrap_or("")) }
                        " " (ok_badge(r.success))
                        @if let Some(reason) = r.reason { " " (reason.as_str()) }
                    }
                    (bar(label, rects, marks))
                    span.wf-time { (dur_us(r.duration_us)) }
                }
            }
        }
        @if !h.steps.is_empty() {
            p.note { "Steps, left to right: " (h.steps.join(" → ")) "." }
        }
    }
}

fn heartbeat_schedule(spec: &HeartbeatSpec) -> String {
    match &spec.schedule {
        Schedule::Every(e) => format!("every {}", humantime::format_duration(*e)),
        Schedule::Cron { expr, tz, .. } => format!("cron {expr} ({})", tz.name()),
    }
}

/// The tail of a ping body, at most [`BODY_SHOWN`] bytes, cut at a character boundary.
fn body_tail(body: &str) -> &str {
    let mut start = body.len().saturating_sub(BODY_SHOWN);
    while !body.is_char_boundary(start) {
        start += 1;
    }
    &body[start..]
}

fn heartbeat_details(now: SystemTime, spec: &HeartbeatSpec, row: Option<&HeartbeatRow>) -> Markup {
    let t = |x: Option<SystemTime>| match x {
        Some(x) => time_ago(now, x),
        None => html! { "never" },
    };
    html! {
        dl {
            dt { "Schedule" } dd { (heartbeat_schedule(spec)) ", grace " (humantime::format_duration(spec.grace)) }
            @if let Some(m) = spec.max_runtime { dt { "Longest run" } dd { (humantime::format_duration(m)) } }
            dt { "Token required" } dd { @if spec.token.is_some() { "yes" } @else { "no" } }
            @if let Some(row) = row {
                dt { "Last ping" } dd { (t(row.last_ping)) }
                dt { "Last start" } dd { (t(row.last_start)) }
                dt { "Last finish" } dd { (t(row.last_finish)) }
                dt { "Last success" } dd { (t(row.last_success)) }
                dt { "Last exit code" } dd { (row.last_exit_code.map(|c| c.to_string()).unwrap_or_else(|| "—".into())) }
                dt { "Last result" } dd { (row.last_result.map(|r| r.as_str()).unwrap_or("—")) }
                dt { "Pings" } dd { (row.ping_count) }
            } @else {
                dt { "Last ping" } dd { "never" }
            }
        }
        @if let Some(body) = row.and_then(|r| r.last_body.as_deref()).filter(|b| !b.is_empty()) {
            details open {
                summary { "Last ping body (its last " (body_tail(body).len()) " bytes)" }
                // Focusable: a long body scrolls inside its box, and keyboards must reach it.
                pre.body tabindex="0" { (body_tail(body)) }
            }
        }
    }
}

fn queue_table(check: &str, report: &QueueReport, with_check: bool) -> Markup {
    html! {
        @for (q, age) in report.snapshot.queues.iter().zip(&report.oldest_age_seconds) {
            tr {
                @if with_check { td data-label="Check" { (check_link(check)) } }
                td data-label="Queue" { (q.name) }
                td data-label="Depth" {
                    @for (i, (state, n)) in q.depths.iter().enumerate() {
                        @if i > 0 { ", " } (state.as_str()) " " strong { (n) }
                    }
                }
                td data-label="Oldest waiting" {
                    (age.map(|a| rough(Duration::from_secs_f64(a.clamp(0.0, 1e12)))).unwrap_or_else(|| "—".into()))
                }
            }
        }
    }
}

fn queue_head(with_check: bool) -> Markup {
    html! {
        thead { tr {
            @if with_check { th scope="col" { "Check" } }
            th scope="col" { "Queue" } th scope="col" { "Depth" } th scope="col" { "Oldest waiting" }
        } }
    }
}

pub fn check(d: &Daemon, name: &str) -> Option<Markup> {
    let config = d.config();
    let c = config.checks.iter().find(|c| c.name == name)?;
    let now = now(d);
    let last = d.states.get(name);
    let status = Status::of(last.as_deref());
    let alerts: Vec<AlertView> = d
        .alerting
        .views()
        .into_iter()
        .filter(|v| v.check == name)
        .collect();
    let history = d.states.history.get(name);
    let body = html! {
        dl.summary {
            dt { "Status" } dd { (status.badge()) }
            dt { "Kind" } dd { (c.kind.name()) }
            dt { "Interval" } dd { (humantime::format_duration(c.interval)) ", timeout " (humantime::format_duration(c.timeout)) }
            dt { "Labels" } dd { (labels(&c.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect())) }
            @if let Some(r) = &last {
                dt { "Last run" } dd { (time_ago(now, r.started_at)) }
                dt { "Duration" } dd { (dur(r.duration)) @if r.attempts > 1 { " (" (r.attempts) " attempts)" } }
                @if let Some(reason) = r.reason { dt { "Reason" } dd { (reason.as_str()) } }
                @if let Some(m) = &r.message { dt { "Message" } dd.msg { (m) } }
            }
        }
        p { (silence_link(&c.name, None)) }
        @if let Some(r) = &last {
            @if !r.steps.is_empty() {
                section aria-labelledby="steps" {
                    h2 #steps { "Last run: steps and phases" }
                    (step_waterfall(&r.steps))
                    @for s in &r.steps {
                        @if s.ran && (!s.assertions.is_empty() || !s.hops.is_empty() || s.message.is_some()) {
                            article.card {
                                h3 { "Step " (s.name) " " (if s.ran { ok_badge(s.success) } else { html! { span.badge.none { "skipped" } } }) }
                                dl {
                                    @if let Some(st) = s.status { dt { "HTTP status" } dd { (st) } }
                                    @if let Some(p) = s.failed_phase { dt { "Failed in phase" } dd { (p.as_str()) } }
                                    @if let Some(m) = &s.message { dt { "Message" } dd.msg { (m) } }
                                    @if !s.extracted.is_empty() { dt { "Extracted" } dd { (s.extracted.join(", ")) } }
                                }
                                @if !s.assertions.is_empty() {
                                    h4 { "Assertions" }
                                    ul.assertions {
                                        @for a in &s.assertions {
                                            li {
                                                (ok_badge(a.passed)) " " code { (a.what) }
                                                @if let Some(detail) = &a.detail { ": " span.msg { (detail) } }
                                            }
                                        }
                                    }
                                }
                                @if !s.hops.is_empty() {
                                    h4 { "Redirects" }
                                    ol {
                                        @for h in &s.hops { li { (h.status) " → " code { (h.location) } } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(report) = r.detail::<QueueReport>() {
                section aria-labelledby="queues" {
                    h2 #queues { "Queues (" (report.system.as_str()) ")" }
                    table.stack { (queue_head(false)) tbody { (queue_table(&c.name, report, false)) } }
                    @if let (Some(w), busy) = (report.snapshot.workers, report.snapshot.busy) {
                        p { (w) " workers" @if let Some(b) = busy { ", " (b) " busy" } }
                    }
                }
            }
        } @else {
            p { "This check has not run yet." }
        }
        @if let Some(h) = &history {
            section aria-labelledby="runs" {
                h2 #runs { "Last runs" }
                (runs_waterfall(h))
            }
        }
        @if let Some(spec) = c.kind.spec::<Heartbeat>() {
            section aria-labelledby="heartbeat" {
                h2 #heartbeat { "Heartbeat" }
                (heartbeat_details(now, spec, d.heartbeats.get(&c.name).as_ref()))
            }
        }
        section aria-labelledby="check-alerts" {
            h2 #check-alerts { "Alerts" }
            @if alerts.is_empty() { p { "This check has no alert rules." } }
            @for v in &alerts { (alert_card(v, 3)) }
        }
    };
    Some(layout(&c.name, "", body))
}

pub fn alerts(d: &Daemon) -> Markup {
    let alerts = active_alerts(d);
    layout(
        "Alerts",
        "/ui/alerts",
        html! {
            @if alerts.is_empty() { p { "No alert is firing or pending." } }
            @for v in &alerts { (alert_card(v, 2)) }
        },
    )
}

fn silence_time(ms: i64) -> String {
    when(from_ms(ms.clamp(0, MAX_TIME_MS)))
}

pub fn silences(d: &Daemon, form: &SilenceForm, error: Option<&str>) -> Markup {
    let now_ms = to_ms(now(d));
    let list: Vec<Silence> = d
        .alerting
        .silences()
        .into_iter()
        .filter(|s| s.ends_at_ms > now_ms)
        .collect();
    let body = html! {
        section aria-labelledby="active" {
            h2 #active { "Active and pending silences" }
            @if list.is_empty() { p { "No silence is active or pending." } }
            @for s in &list {
                article.card.silence {
                    h3 {
                        @for (i, (k, v)) in s.matchers.iter().enumerate() {
                            @if i > 0 { ", " } code { (k) "=" (v) }
                        }
                        " " span class=(if s.state(now_ms) == "active" { "badge warn" } else { "badge none" }) { (s.state(now_ms)) }
                    }
                    dl {
                        dt { "From" } dd { (silence_time(s.starts_at_ms)) }
                        dt { "Until" } dd { (silence_time(s.ends_at_ms)) }
                        dt { "By" } dd { (s.created_by) }
                        dt { "Comment" } dd.msg { (s.comment) }
                        dt { "Id" } dd { code { (s.id) } }
                    }
                    form method="post" action={ "/ui/silences/" (path_segment(&s.id)) "/expire" } {
                        button type="submit" aria-label={ "Expire silence " (s.id) } { "Expire" }
                    }
                }
            }
        }
        section aria-labelledby="add" {
            h2 #add { "Add a silence" }
            @if let Some(e) = error { p.error role="alert" { "Not added: " (e) } }
            form.silence-form method="post" action="/ui/silences" {
                label for="matchers" { "Matchers, one " code { "label=value" } " per line (the value may be a glob, e.g. " code { "check=shop-*" } ")" }
                textarea #matchers name="matchers" rows="3" required { (form.matchers) }
                label for="duration" { "Duration (e.g. 2h, 30m)" }
                input #duration name="duration" type="text" required value=(form.duration);
                label for="created_by" { "Created by" }
                input #created_by name="created_by" type="text" required value=(form.created_by);
                label for="comment" { "Comment" }
                textarea #comment name="comment" rows="2" required { (form.comment) }
                button type="submit" { "Add silence" }
            }
        }
    };
    layout("Silences", "/ui/silences", body)
}

pub fn heartbeats(d: &Daemon) -> Markup {
    let config = d.config();
    let now = now(d);
    let checks: Vec<(&Check, &HeartbeatSpec)> = config
        .checks
        .iter()
        .filter_map(|c| c.kind.spec::<Heartbeat>().map(|s| (&**c, &**s)))
        .collect();
    layout(
        "Heartbeats",
        "/ui/heartbeats",
        html! {
            @if checks.is_empty() { p { "No heartbeat checks are configured on this replica." } }
            @for (c, spec) in &checks {
                @let last = d.states.get(&c.name);
                article.card {
                    h2 { (check_link(&c.name)) " " (Status::of(last.as_deref()).badge()) }
                    @if let Some(m) = last.as_ref().and_then(|r| r.message.as_deref()) { p.msg { (m) } }
                    (heartbeat_details(now, spec, d.heartbeats.get(&c.name).as_ref()))
                }
            }
        },
    )
}

pub fn queues(d: &Daemon) -> Markup {
    let config = d.config();
    let mut reports = Vec::new();
    let mut waiting = Vec::new();
    for c in &config.checks {
        if c.kind.name() != "queue" {
            continue;
        }
        match d.states.get(&c.name) {
            Some(r) if r.detail::<QueueReport>().is_some() => reports.push((c.name.clone(), r)),
            other => waiting.push((c.name.clone(), other)),
        }
    }
    reports.sort_by(|a, b| a.0.cmp(&b.0));
    layout(
        "Queues",
        "/ui/queues",
        html! {
            @if reports.is_empty() && waiting.is_empty() { p { "No queue checks are configured on this replica." } }
            @if !reports.is_empty() {
                table.stack {
                    (queue_head(true))
                    tbody {
                        @for (name, r) in &reports {
                            @if let Some(report) = r.detail::<QueueReport>() { (queue_table(name, report, true)) }
                        }
                    }
                }
            }
            @for (name, r) in &waiting {
                p {
                    (check_link(name)) ": "
                    @match r {
                        Some(r) => { "no read in its last run (" span.msg { (r.message.as_deref().unwrap_or("failed")) } ")" }
                        None => { "not run yet" }
                    }
                }
            }
        },
    )
}
