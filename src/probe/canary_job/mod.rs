//! The `canary_job` kind: a real, harmless job enqueued in a job system's own format on a real
//! queue, and timed through enqueued → picked up → finished.
//!
//! A queue rule (`depth > 0 && processed_rate == 0`) is blind on a quiet queue (nothing waits,
//! nothing is processed, dead workers look healthy) and to workers that take every job and fail
//! it. A canary is not: it is a job, so it shows whether a job runs, end to end.
//!
//! One run ([`probe::CanaryProbe`]):
//!
//! 1. The check's marker key `canaryd:canary:<check>` in the system's Redis names the canary
//!    outstanding, if any. None: a new canary is prepared, the marker set with `SET NX` (so two
//!    replicas of one check share one canary) and the job enqueued. **At most one canary per
//!    check is ever out**: a dead worker meets one canary when it comes back, not hundreds.
//! 2. The canary's state is read ([`system::CanarySystem::look`]) until it is finished or failed,
//!    polling 10 ms, 20 ms, … up to 200 ms apart, until shortly before the run's deadline.
//! 3. The verdict: finished within `within` of its enqueue passes; finished later fails
//!    `too_slow`; failed (raised, moved to retry or dead) fails `job_failed` with the system's
//!    error text; still waiting past `within` fails `not_picked_up`, still running past it
//!    `too_slow` (and stays out: no second canary); vanished fails `job_failed`. A run that
//!    ends while its canary is out but not yet late repeats the previous verdict (passing when
//!    there is none): no evidence either way yet. A canary out longer than `keep` is removed
//!    and replaced.
//! 4. A finished or failed canary is cleaned up ([`system::CanarySystem::clean`]) and the
//!    marker deleted; the system's own expiry of its records (set from `keep`) is the backstop
//!    when canaryd cannot clean up.

pub mod celery;
pub mod def;
pub mod probe;
#[cfg(test)]
mod props;
pub mod rq;
pub mod sidekiq;
pub mod system;

use std::sync::Arc;
use std::time::Duration;

pub use def::{CanaryJob, CanaryJobSpec};
pub use probe::CanaryProbe;

use crate::probe::queue::{conn, System};
use system::CanarySystem;

/// Where the canary was at the end of a run (the `stage` variable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// In the queue, not picked up.
    Waiting,
    /// Picked up, not finished.
    Running,
    /// Finished (whether in time or not).
    Finished,
    /// Raised, or moved to retry or dead.
    Failed,
    /// Nowhere to be found.
    Missing,
}

impl Stage {
    /// The value of the `stage` variable.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Waiting => "waiting",
            Stage::Running => "running",
            Stage::Finished => "finished",
            Stage::Failed => "failed",
            Stage::Missing => "missing",
        }
    }
}

/// What one run of a canary check saw: the result's [`crate::probe::kind::Detail`].
#[derive(Debug, Clone)]
pub struct CanaryReport {
    /// The job system.
    pub system: System,
    /// The canary's id (the system's job id).
    pub id: String,
    /// Where it was at the end of the run.
    pub stage: Stage,
    /// Whether this run enqueued it.
    pub enqueued_now: bool,
    /// Enqueued → picked up, when this run saw it finish and the system recorded the start.
    pub pickup_latency: Option<Duration>,
    /// Picked up → finished, when known.
    pub run_time: Option<Duration>,
    /// Enqueued → finished, when known.
    pub total: Option<Duration>,
    /// How long the canary still out has been out (`None` when none is).
    pub outstanding_age: Option<Duration>,
}

impl CanaryReport {
    /// The numeric alert variables.
    pub fn observations(&self) -> Vec<(String, f64)> {
        let mut out = vec![(
            "outstanding_age".to_string(),
            self.outstanding_age.map_or(0.0, |d| d.as_secs_f64()),
        )];
        for (name, v) in [
            ("pickup_latency", self.pickup_latency),
            ("run_time", self.run_time),
            ("total", self.total),
        ] {
            if let Some(d) = v {
                out.push((name.to_string(), d.as_secs_f64()));
            }
        }
        out.push(("unreachable".to_string(), 0.0));
        out
    }
}

impl crate::probe::kind::Detail for CanaryReport {
    /// `{"canary": {"system", "id", "stage", "pickup_latency_seconds", ...}}` in the API.
    fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
        let mut out = serde_json::Map::new();
        out.insert(
            "canary".into(),
            serde_json::json!({
                "system": self.system.as_str(),
                "id": self.id,
                "stage": self.stage.as_str(),
                "enqueued_now": self.enqueued_now,
                "pickup_latency_seconds": secs(self.pickup_latency),
                "run_time_seconds": secs(self.run_time),
                "total_seconds": secs(self.total),
                "outstanding_age_seconds": secs(self.outstanding_age),
            }),
        );
        out
    }

    /// `canary canaryd-…: finished; picked up after 12ms, ran 3ms, 15ms in all`.
    fn trace(&self, out: &mut String) {
        use std::fmt::Write;
        let d = |d: Duration| crate::probe::http::short_duration(d);
        let mut parts = Vec::new();
        if let Some(p) = self.pickup_latency {
            parts.push(format!("picked up after {}", d(p)));
        }
        if let Some(r) = self.run_time {
            parts.push(format!("ran {}", d(r)));
        }
        if let Some(t) = self.total {
            parts.push(format!("{} in all", d(t)));
        }
        if let Some(a) = self.outstanding_age {
            parts.push(format!("out for {}", d(a)));
        }
        let _ = writeln!(
            out,
            "canary {} ({}{}): {}{}{}",
            self.id,
            self.system.as_str(),
            if self.enqueued_now {
                ", enqueued by this run"
            } else {
                ""
            },
            self.stage.as_str(),
            if parts.is_empty() { "" } else { "; " },
            parts.join(", ")
        );
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The job system's canary for a spec.
pub fn canary_system(spec: &CanaryJobSpec) -> Result<Arc<dyn CanarySystem>, String> {
    match spec.system {
        System::Rq => Ok(Arc::new(rq::RqCanary::new())),
        // One per check, kept across runs: it remembers when a canary was last seen.
        System::Sidekiq => Ok(Arc::new(sidekiq::SidekiqCanary::default())),
        System::Celery => Ok(Arc::new(celery::CeleryCanary::default())),
        other => Err(format!("{} has no canary job", other.as_str())),
    }
}

/// Builds the probe of check `name`.
pub fn build_probe(name: &str, spec: &CanaryJobSpec) -> Result<CanaryProbe, String> {
    let system = canary_system(spec)?;
    let url = spec
        .redis
        .render(|_| None)
        .map_err(|_| "the redis URL references a run-time variable".to_string())?;
    let conn = conn::shared(&url, &spec.tls, spec.connect_timeout)?;
    // A job's error text may quote the broker URL it failed to reach (`Error connecting to
    // redis://:<password>@...`): the URL's secrets and its password are cut from it.
    let mut secrets: Vec<String> = spec
        .redis
        .secrets()
        .map(|s| s.expose().to_string())
        .collect();
    if let Some(password) = url::Url::parse(url.trim())
        .ok()
        .and_then(|u| u.password().map(str::to_string))
    {
        secrets.push(password);
    }
    secrets.retain(|s| !s.is_empty());
    Ok(CanaryProbe::new(
        name,
        system,
        conn,
        probe::Settings {
            queue: spec.queue.clone(),
            task: spec.task.clone(),
            within: spec.within,
            keep: spec.keep,
            redactor: Arc::new(crate::redact::Redactor::new(secrets)),
        },
    ))
}
