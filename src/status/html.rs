//! The public status page as HTML (maud, which escapes every value it interpolates): `/` (banner,
//! open incidents, components with their 90-day bars, past incidents by day), one incident with
//! its timeline (`/incidents/{id}`) and the 404 page.
//!
//! Pages work without JavaScript and without inline styles (the CSP allows neither): every look
//! comes from `status.css`, served by [`super::web`] at [`css_href`]. Colour is never the only
//! signal: each status is written next to its colour, and each day of a bar carries its text
//! (a `title` and visually hidden text).

use std::sync::LazyLock;
use std::time::SystemTime;

use chrono::{DateTime, NaiveDate, Utc};
use maud::{html, Markup, DOCTYPE};

use super::model::{ComponentStatus, ComponentView, Day, Impact, Incident, Snapshot};

/// The stylesheet, served at `/static/status.css`.
pub const CSS: &str = include_str!("status.css");

/// The stylesheet's address with a content hash, so a changed stylesheet is fetched afresh.
pub fn css_href() -> &'static str {
    static HREF: LazyLock<String> =
        LazyLock::new(|| format!("/static/status.css?v={:016x}", fnv1a(CSS.as_bytes())));
    &HREF
}

/// FNV-1a, 64 bits: a content hash for cache busting (not for security).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A time as UTC.
pub(crate) fn utc(t: SystemTime) -> DateTime<Utc> {
    DateTime::<Utc>::from(t)
}

/// `2026-12-04T13:00:00Z`, for `<time datetime>`.
pub(crate) fn machine_time(t: SystemTime) -> String {
    utc(t).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `4 Dec 2026, 13:00 UTC`, what a person reads.
pub(crate) fn human_time(t: SystemTime) -> String {
    utc(t).format("%-d %b %Y, %H:%M UTC").to_string()
}

/// `4 Dec 2026`.
pub(crate) fn human_date(d: NaiveDate) -> String {
    d.format("%-d %b %Y").to_string()
}

/// An uptime as a percentage, rounded down to two decimals (99.999 % is not 100 %):
/// `100 %`, `99.2 %`, `99.95 %`.
pub fn percent(uptime: f64) -> String {
    let hundredths = (uptime.clamp(0.0, 1.0) * 10_000.0).floor() as u64;
    let whole = hundredths / 100;
    let frac = hundredths % 100;
    if frac == 0 {
        format!("{whole} %")
    } else if frac.is_multiple_of(10) {
        format!("{whole}.{} %", frac / 10)
    } else {
        format!("{whole}.{frac:02} %")
    }
}

/// A duration in minutes and hours, rounded up to the minute: `1 min`, `12 min`, `2 h 5 min`.
fn minutes(ms: u64) -> String {
    let mins = ms.div_ceil(60_000);
    match (mins / 60, mins % 60) {
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

/// The CSS class of a status (`s-operational`, `s-partial_outage`, ...; `s-none` without data).
fn status_class(status: Option<ComponentStatus>) -> String {
    match status {
        Some(s) => format!("s-{}", s.as_str()),
        None => "s-none".into(),
    }
}

/// What one day of a bar says: `3 Dec 2026: partial outage 12 min, 99.2 % uptime`,
/// `3 Dec 2026: operational, 100 % uptime`, `3 Dec 2026: no data`.
pub fn day_text(day: &Day) -> String {
    let date = day
        .date
        .map(human_date)
        .unwrap_or_else(|| "Unknown day".into());
    let Some(worst) = day.worst() else {
        return format!("{date}: no data");
    };
    let mut parts = Vec::new();
    for (ms, status) in [
        (day.major_ms, ComponentStatus::MajorOutage),
        (day.partial_ms, ComponentStatus::PartialOutage),
        (day.degraded_ms, ComponentStatus::DegradedPerformance),
    ] {
        if ms > 0 {
            parts.push(format!("{} {}", status.label().to_lowercase(), minutes(ms)));
        }
    }
    if parts.is_empty() {
        parts.push(worst.label().to_lowercase());
    }
    let uptime = day.uptime().map(percent).unwrap_or_default();
    format!("{date}: {}, {uptime} uptime", parts.join(", "))
}

fn impact_class(impact: Impact) -> String {
    format!("i-{}", impact.as_str())
}

/// How an impact reads next to an incident.
fn impact_label(impact: Impact) -> &'static str {
    match impact {
        Impact::None => "No impact",
        Impact::Minor => "Minor impact",
        Impact::Major => "Major impact",
        Impact::Critical => "Critical impact",
    }
}

fn time_el(t: SystemTime) -> Markup {
    html! { time datetime=(machine_time(t)) { (human_time(t)) } }
}

fn layout(snap: &Snapshot, title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                @if let Some(d) = &snap.description {
                    meta name="description" content=(d);
                }
                // No icon: without this line browsers ask for /favicon.ico and get the 404 page.
                link rel="icon" href="data:,";
                link rel="stylesheet" href=(css_href());
                link rel="alternate" type="application/atom+xml" title=(format!("{} incident history", snap.title)) href="/history.atom";
            }
            body {
                header.page-header {
                    div.wrap {
                        p.site { a href="/" { (snap.title) } }
                        @if let Some(d) = &snap.description {
                            p.tagline { (d) }
                        }
                    }
                }
                main.wrap { (body) }
                footer.wrap.page-footer {
                    p {
                        "Updated " (time_el(snap.generated)) ". "
                        a href="/history.atom" { "Incident history (Atom feed)" }
                        " · "
                        a href="/api/v2/summary.json" { "Status as JSON" }
                    }
                }
            }
        }
    }
    .into_string()
}

fn incident_summary(i: &Incident, heading: u8) -> Markup {
    let latest = i.updates.first();
    let link = html! { a href=(format!("/incidents/{}", i.id)) { (i.title) } };
    html! {
        article class={"incident " (impact_class(i.impact))} {
            @if heading == 3 { h3 { (link) } } @else { h4 { (link) } }
            p.meta {
                span.state { (i.state.label()) }
                " · " (impact_label(i.impact))
            }
            @if let Some(u) = latest {
                p.body { (u.body) }
                p.when { "Posted " (time_el(u.at)) }
            }
            @if !i.components.is_empty() {
                p.affects { "Affected: " (i.components.join(", ")) }
            }
        }
    }
}

fn component(c: &ComponentView) -> Markup {
    let label_id = format!("bars-{}", c.id);
    html! {
        li class={"component " (status_class(Some(c.status)))} {
            div.component-head {
                h3.component-name { (c.name) }
                p.component-status {
                    span.dot aria-hidden="true" {}
                    (c.status.label())
                }
            }
            @if let Some(d) = &c.description {
                p.component-description { (d) }
            }
            p.vh id=(label_id) { "Last " (c.days.len()) " days of " (c.name) ", oldest first" }
            ol.bars aria-labelledby=(label_id) {
                @for day in &c.days {
                    @let text = day_text(day);
                    li class={"day " (status_class(day.worst()))} title=(text) {
                        span.vh { (text) }
                    }
                }
            }
            p.bar-legend {
                span { (c.days.len()) " days ago" }
                span.uptime {
                    @match c.uptime {
                        Some(u) => { (percent(u)) " uptime" },
                        None => { "No data yet" },
                    }
                }
                span { "Today" }
            }
        }
    }
}

/// The page at `/`.
pub fn index(snap: &Snapshot) -> String {
    let indicator = snap.indicator();
    let mut past_days: Vec<(NaiveDate, Vec<&Incident>)> = Vec::new();
    for i in &snap.past {
        let day = utc(i.created).date_naive();
        match past_days.iter_mut().find(|(d, _)| *d == day) {
            Some((_, list)) => list.push(i),
            None => past_days.push((day, vec![i])),
        }
    }
    past_days.sort_by_key(|d| std::cmp::Reverse(d.0));
    let body = html! {
        h1 { "Current status" }
        section class={"banner " (impact_class(indicator))} aria-label="Overall status" {
            p { (snap.description_of_status()) }
        }
        @if !snap.open.is_empty() {
            section.open aria-labelledby="open-heading" {
                h2 #open-heading { "Open incidents" }
                @for i in &snap.open { (incident_summary(i, 3)) }
            }
        }
        section aria-labelledby="components-heading" {
            h2 #components-heading { "Components" }
            @if snap.components.is_empty() {
                p { "No components are configured." }
            } @else {
                ul.components { @for c in &snap.components { (component(c)) } }
            }
        }
        section.past aria-labelledby="past-heading" {
            h2 #past-heading { "Past incidents" }
            @if past_days.is_empty() {
                p { "No incidents in the last 90 days." }
            }
            @for (day, list) in &past_days {
                section.past-day {
                    h3 { time datetime=(day.format("%Y-%m-%d").to_string()) { (human_date(*day)) } }
                    @for i in list { (incident_summary(i, 4)) }
                }
            }
        }
    };
    layout(snap, &snap.title, body)
}

/// The page of one incident, `None` when the snapshot has no incident with this id.
pub fn incident(snap: &Snapshot, id: i64) -> Option<String> {
    let i = snap.open.iter().chain(&snap.past).find(|i| i.id == id)?;
    let body = html! {
        p.back { a href="/" { "← All systems" } }
        article class={"incident-page " (impact_class(i.impact))} {
            h1 { (i.title) }
            p.meta {
                span.state { (i.state.label()) }
                " · " (impact_label(i.impact))
                " · Opened " (time_el(i.created))
                @if let Some(r) = i.resolved { " · Resolved " (time_el(r)) }
            }
            @if !i.components.is_empty() {
                p.affects { "Affected: " (i.components.join(", ")) }
            }
            h2 { "Updates" }
            ol.timeline {
                @for u in &i.updates {
                    li {
                        h3.update-state { (u.state.label()) }
                        p.when { (time_el(u.at)) }
                        p.body { (u.body) }
                    }
                }
            }
        }
    };
    Some(layout(snap, &format!("{} — {}", i.title, snap.title), body))
}

/// The 404 page.
pub fn not_found(snap: &Snapshot) -> String {
    let body = html! {
        h1 { "Page not found" }
        p { "There is nothing at this address. " a href="/" { "See the current status" } "." }
    };
    layout(snap, &format!("Not found — {}", snap.title), body)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::status::model::{IncidentState, IncidentUpdate, HISTORY_DAYS};
    use std::time::Duration;

    pub(crate) const EVIL: &str = "<script>alert(1)</script>\"'&";

    pub(crate) fn at(secs: u64) -> SystemTime {
        // 2026-12-04T00:00:00Z
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_342_400 + secs)
    }

    /// A snapshot with the planted text in every public string.
    pub(crate) fn evil_snapshot() -> Snapshot {
        let start = NaiveDate::from_ymd_opt(2026, 9, 6).unwrap();
        let days = (0..HISTORY_DAYS)
            .map(|n| Day {
                date: Some(start + chrono::Days::new(n as u64)),
                observed_ms: if n < 10 { 0 } else { 86_400_000 },
                degraded_ms: 0,
                partial_ms: if n == 88 { 720_000 } else { 0 },
                major_ms: 0,
            })
            .collect();
        let incident = |id: i64, state: IncidentState, resolved: Option<SystemTime>| Incident {
            id,
            title: format!("Title {EVIL}"),
            impact: Impact::Major,
            state,
            components: vec![format!("Sign-in {EVIL}")],
            created: at(3600),
            updated: at(7200),
            resolved,
            automatic: false,
            updates: vec![
                IncidentUpdate {
                    id: id * 10 + 2,
                    state,
                    body: format!("line one {EVIL}\nline two"),
                    at: at(7200),
                },
                IncidentUpdate {
                    id: id * 10 + 1,
                    state: IncidentState::Investigating,
                    body: "Looking".into(),
                    at: at(3600),
                },
            ],
        };
        Snapshot {
            title: format!("Acme {EVIL}"),
            description: Some(format!("desc {EVIL}")),
            public_url: Some("https://status.example.com".into()),
            generated: at(7300),
            components: vec![ComponentView {
                id: "sign-in-script-alert-1-script".into(),
                name: format!("Sign-in {EVIL}"),
                description: Some(format!("Component {EVIL}")),
                status: ComponentStatus::PartialOutage,
                since: at(3600),
                days,
                uptime: Some(0.9991),
            }],
            open: vec![incident(1, IncidentState::Identified, None)],
            past: vec![incident(2, IncidentState::Resolved, Some(at(7200)))],
            version: 7,
        }
    }

    #[test]
    fn planted_markup_is_escaped_everywhere() {
        let snap = evil_snapshot();
        for page in [index(&snap), incident(&snap, 1).unwrap(), not_found(&snap)] {
            assert!(!page.contains("<script>"), "{page}");
            assert!(!page.contains("\"'&"), "unescaped quote or ampersand");
        }
        let page = index(&snap);
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;'&amp;"));
        assert!(page.contains("Title &lt;script&gt;"));
        assert!(page.contains("line one &lt;script&gt;"));
    }

    #[test]
    fn the_index_shows_status_bars_and_incidents() {
        let snap = evil_snapshot();
        let page = index(&snap);
        assert!(page.contains("Partial System Outage"), "{page}");
        assert!(page.contains("Partial outage"));
        assert_eq!(page.matches("<li class=\"day ").count(), HISTORY_DAYS);
        assert!(
            page.contains("3 Dec 2026: partial outage 12 min, 99.75 % uptime"),
            "{page}"
        );
        assert!(page.contains("15 Sep 2026: no data"));
        assert!(page.contains("99.91 % uptime"));
        assert!(page.contains("href=\"/incidents/1\""));
        assert!(
            page.contains("<time datetime=\"2026-12-04T02:00:00Z\">4 Dec 2026, 02:00 UTC</time>")
        );
        assert!(!page.contains("style="), "no inline style");
        assert!(incident(&snap, 3).is_none());
    }

    #[test]
    fn an_empty_page_still_reads() {
        let snap = Snapshot {
            title: "Empty".into(),
            description: None,
            public_url: None,
            generated: at(0),
            components: vec![],
            open: vec![],
            past: vec![],
            version: 0,
        };
        let page = index(&snap);
        assert!(page.contains("All Systems Operational"));
        assert!(page.contains("No components are configured."));
        assert!(page.contains("No incidents in the last 90 days."));
        assert!(!page.contains("Open incidents"));
        let mut day = Day::default();
        assert_eq!(day_text(&day), "Unknown day: no data");
        day.date = NaiveDate::from_ymd_opt(2026, 12, 3);
        day.observed_ms = 86_400_000;
        assert_eq!(day_text(&day), "3 Dec 2026: operational, 100 % uptime");
    }

    #[test]
    fn percentages_round_down() {
        assert_eq!(percent(1.0), "100 %");
        assert_eq!(percent(0.99999), "99.99 %");
        assert_eq!(percent(0.992), "99.2 %");
        assert_eq!(percent(0.0), "0 %");
        assert_eq!(minutes(1), "1 min");
        assert_eq!(minutes(125 * 60_000), "2 h 5 min");
    }
}
