//! The last runs of every check, compact, for the operator view's waterfall of recent runs.
//!
//! Per check at most [`RUNS`] runs, each with its start, duration, verdict, reason and, per step,
//! whether it ran and passed and its five phase durations as `u32` microseconds (a phase over
//! 71 minutes saturates). Step names are kept once per check, not per run: a run whose steps
//! are named differently (the check's definition changed) starts the history over. About 100
//! bytes a run with three steps, so about 1 KiB a check. In memory only; a check a reload
//! removes loses its history ([`History::retain`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::probe::{CheckResult, Phase, Reason};

/// Runs kept per check.
pub const RUNS: usize = 10;

/// One step of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepRun {
    /// Whether the step was run (steps after a failure are skipped).
    pub ran: bool,
    /// Whether it passed.
    pub success: bool,
    /// Wall time of the step, microseconds (saturating).
    pub duration_us: u32,
    /// Phase durations in [`Phase::ALL`] order, microseconds (saturating).
    pub phases_us: [u32; 5],
}

/// One run of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// When it started, Unix milliseconds.
    pub started_at_ms: i64,
    /// Wall time, microseconds (saturating).
    pub duration_us: u32,
    /// Whether the check passed.
    pub success: bool,
    /// Why it failed.
    pub reason: Option<Reason>,
    /// Its steps, in the order of [`CheckRuns::steps`].
    pub steps: Box<[StepRun]>,
}

impl Run {
    /// When it started.
    pub fn started_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.started_at_ms.max(0) as u64)
    }
}

/// The recent runs of one check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckRuns {
    /// Step names (every run has these steps).
    pub steps: Box<[Box<str>]>,
    /// Oldest first, at most [`RUNS`].
    pub runs: VecDeque<Run>,
}

/// Every check's recent runs.
#[derive(Debug, Default)]
pub struct History {
    checks: Mutex<HashMap<String, CheckRuns>>,
}

/// Microseconds of `d`, saturating at `u32::MAX`.
pub fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

impl History {
    /// Adds `result` as the newest run of `check` (the oldest beyond [`RUNS`] goes).
    pub fn record(&self, check: &str, result: &CheckResult) {
        let run = Run {
            started_at_ms: result
                .started_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            duration_us: micros(result.duration),
            success: result.success,
            reason: result.reason,
            steps: result
                .steps
                .iter()
                .map(|s| StepRun {
                    ran: s.ran,
                    success: s.success,
                    duration_us: micros(s.duration),
                    phases_us: Phase::ALL.map(|p| micros(s.phases.get(p))),
                })
                .collect(),
        };
        let mut checks = self.lock();
        let same_steps = |c: &CheckRuns| {
            c.steps.len() == result.steps.len()
                && c.steps
                    .iter()
                    .zip(&result.steps)
                    .all(|(a, b)| **a == *b.name)
        };
        match checks.get_mut(check) {
            Some(c) if same_steps(c) => {
                if c.runs.len() >= RUNS {
                    c.runs.pop_front();
                }
                c.runs.push_back(run);
            }
            _ => {
                let mut runs = VecDeque::with_capacity(RUNS);
                runs.push_back(run);
                let steps = result
                    .steps
                    .iter()
                    .map(|s| s.name.as_str().into())
                    .collect();
                checks.insert(check.to_string(), CheckRuns { steps, runs });
            }
        }
    }

    /// The recent runs of `check`, oldest first.
    pub fn get(&self, check: &str) -> Option<CheckRuns> {
        self.lock().get(check).cloned()
    }

    /// Forgets every check not in `names` (after a reload).
    pub fn retain(&self, names: &[&str]) {
        self.lock().retain(|k, _| names.contains(&k.as_str()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CheckRuns>> {
        self.checks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Phases, StepResult};

    fn result(at_s: u64, success: bool, steps: &[(&str, u64)]) -> CheckResult {
        CheckResult {
            success,
            reason: (!success).then_some(Reason::Status),
            message: None,
            duration: Duration::from_millis(steps.iter().map(|s| s.1).sum()),
            started_at: UNIX_EPOCH + Duration::from_secs(at_s),
            steps: steps
                .iter()
                .map(|(name, ms)| StepResult {
                    name: name.to_string(),
                    ran: true,
                    success,
                    duration: Duration::from_millis(*ms),
                    phases: Phases {
                        connect: Duration::from_millis(1),
                        processing: Duration::from_millis(*ms - 1),
                        ..Phases::default()
                    },
                    ..StepResult::default()
                })
                .collect(),
            observations: Vec::new(),
            detail: None,
            attempts: 1,
        }
    }

    #[test]
    fn keeps_the_last_ten_runs_oldest_first() {
        let h = History::default();
        for i in 0..25 {
            h.record(
                "login",
                &result(i, i % 2 == 1, &[("form", 10), ("submit", 20)]),
            );
        }
        let got = h.get("login").unwrap();
        assert_eq!(got.runs.len(), RUNS);
        assert_eq!(
            &*got.steps,
            &["form".into(), "submit".into()] as &[Box<str>]
        );
        assert_eq!(got.runs[0].started_at_ms, 15_000);
        assert_eq!(got.runs[9].started_at_ms, 24_000);
        assert!(!got.runs[9].success);
        assert_eq!(got.runs[9].reason, Some(Reason::Status));
        let submit = got.runs[9].steps[1];
        assert_eq!(submit.duration_us, 20_000);
        assert_eq!(submit.phases_us, [0, 1_000, 0, 19_000, 0]);
        assert!(h.get("other").is_none());
    }

    #[test]
    fn changed_steps_start_over_and_reloads_forget_removed_checks() {
        let h = History::default();
        h.record("a", &result(1, true, &[("one", 5)]));
        h.record("a", &result(2, true, &[("one", 5)]));
        h.record("a", &result(3, true, &[("one", 5), ("two", 5)]));
        let got = h.get("a").unwrap();
        assert_eq!(got.runs.len(), 1);
        assert_eq!(got.steps.len(), 2);
        h.record("b", &result(1, true, &[]));
        h.retain(&["b"]);
        assert!(h.get("a").is_none());
        assert_eq!(h.get("b").unwrap().runs.len(), 1);
    }

    #[test]
    fn a_run_costs_about_a_hundred_bytes() {
        // The budget: about 1 KiB per check of three steps.
        let per_run = std::mem::size_of::<Run>() + 3 * std::mem::size_of::<StepRun>();
        assert!(per_run <= 128, "{per_run} bytes a run");
        assert_eq!(micros(Duration::from_secs(100_000)), u32::MAX);
    }
}
