//! `cargo run --release --example bench_status -- [PORT]`
//!
//! Serves the public status page's router (`canaryd::status::web::router`) over a realistic,
//! fixed snapshot — 10 components with 90 days of history each, 2 open incidents with 3 updates,
//! 20 past incidents — on `127.0.0.1:PORT` (PORT 0 or none: any free port), prints
//! `status_listen http://127.0.0.1:PORT` and serves until killed. `scripts/bench status` runs
//! wrk against `/` and `/api/v2/summary.json` and compares requests/s and p99 latency with the
//! budget (≥ 2,000 requests/s, p99 ≤ 20 ms on 2 cores).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use canaryd::status::model::{
    slug, uptime, ComponentStatus, ComponentView, Day, Impact, Incident, IncidentState,
    IncidentUpdate, Snapshot, HISTORY_DAYS,
};
use chrono::{Days, Utc};

const DAY_MS: u64 = 86_400_000;

fn snapshot() -> Snapshot {
    let now = SystemTime::now();
    let today = chrono::DateTime::<Utc>::from(now).date_naive();
    let names = [
        "Website",
        "Sign-in",
        "Public API",
        "Checkout",
        "Search",
        "Email delivery",
        "Background jobs",
        "File uploads",
        "Webhooks",
        "Reports",
    ];
    let components = names
        .iter()
        .enumerate()
        .map(|(n, name)| {
            let days: Vec<Day> = (0..HISTORY_DAYS as u64)
                .rev()
                .map(|ago| {
                    let k = ago + n as u64;
                    Day {
                        date: Some(today - Days::new(ago)),
                        observed_ms: if ago > 80 && n == 9 { 0 } else { DAY_MS },
                        degraded_ms: if k.is_multiple_of(11) { 600_000 } else { 0 },
                        partial_ms: if k.is_multiple_of(17) { 900_000 } else { 0 },
                        major_ms: if k.is_multiple_of(41) { 300_000 } else { 0 },
                    }
                })
                .collect();
            let sum = |f: fn(&Day) -> u64| days.iter().map(f).sum::<u64>();
            let up = uptime(
                sum(|d| d.observed_ms),
                sum(|d| d.partial_ms),
                sum(|d| d.major_ms),
            );
            ComponentView {
                id: slug(name),
                name: (*name).into(),
                description: n
                    .is_multiple_of(3)
                    .then(|| format!("What {name} does for customers")),
                status: match n {
                    1 => ComponentStatus::PartialOutage,
                    2 => ComponentStatus::DegradedPerformance,
                    _ => ComponentStatus::Operational,
                },
                since: now - Duration::from_secs(3600),
                days,
                uptime: up,
            }
        })
        .collect();
    let incident = |id: i64, days_ago: u64, open: bool| {
        let created = now - Duration::from_secs(days_ago * 86_400 + 7200);
        let step = Duration::from_secs(1200);
        let states = if open {
            [
                IncidentState::Monitoring,
                IncidentState::Identified,
                IncidentState::Investigating,
            ]
        } else {
            [
                IncidentState::Resolved,
                IncidentState::Identified,
                IncidentState::Investigating,
            ]
        };
        let updates: Vec<IncidentUpdate> = states
            .iter()
            .enumerate()
            .map(|(k, state)| IncidentUpdate {
                id: id * 10 + (3 - k as i64),
                state: *state,
                body: format!(
                    "{}: we are on it.\nThe next update follows within 30 minutes.",
                    state.label()
                ),
                at: created + step * (2 - k as u32),
            })
            .collect();
        Incident {
            id,
            title: format!("Errors in {}", names[id as usize % names.len()]),
            impact: if open { Impact::Major } else { Impact::Minor },
            state: states[0],
            components: vec![names[id as usize % names.len()].into()],
            created,
            updated: updates[0].at,
            resolved: (!open).then_some(updates[0].at),
            automatic: id % 2 == 0,
            updates,
        }
    };
    Snapshot {
        title: "Acme".into(),
        description: Some("Service status of Acme".into()),
        public_url: Some("https://status.example.com".into()),
        generated: now,
        components,
        open: vec![incident(22, 0, true), incident(21, 0, true)],
        past: (1..=20)
            .rev()
            .map(|id| incident(id, 4 * (21 - id as u64), false))
            .collect(),
        version: 1,
    }
}

#[tokio::main]
async fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .map(|p| p.parse().expect("PORT is a number"))
        .unwrap_or(0);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local address");
    let source: Arc<Snapshot> = Arc::new(snapshot());
    println!("status_listen http://{addr}");
    std::io::stdout().flush().ok();
    axum::serve(listener, canaryd::status::web::router(Arc::new(source)))
        .await
        .expect("serve");
}
