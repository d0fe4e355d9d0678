//! `depends_on:` at run time: whether a dependant's page waits for its parent.
//!
//! When the database or the network in front of everything fails, every check behind it fails
//! at once. A check that declares `depends_on: [db]` has its triggers held while `db` fails, so
//! the on-call gets one page (the parent's, which lists its failing dependants) instead of one
//! per check. Checks run on their own schedules, so "the parent fails" is not known at the
//! moment a dependant fails; the rules below make the answer not depend on which ran first:
//!
//! - a parent whose last run **failed** holds its dependants' triggers;
//! - a parent whose last result is **older** than the dependant's first failure of its current
//!   run of failures (the dependant may have seen an outage the parent has not looked at yet)
//!   holds the trigger until its next result — at most [`patience`] (two parent intervals and a
//!   second), so a parent that stops reporting (paused, on another shard) holds nothing for
//!   long;
//! - a parent that **came back after** the dependant's last result (the dependant has not
//!   run since) holds the trigger until the dependant's next result: if the
//!   dependant still fails then, it pages; if it passes, its alert resolves without a page.
//!
//! Resolves are never held: they go to whoever heard the trigger. Dependencies are direct
//! (`a` → `b` → `c`: `c` failing holds `b`, and `b`, failing, holds `a`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::probe::check::Check;

/// How long a check's next result may take before its silence stops holding anyone: a run
/// with its quick retries ends within one interval of its start, and the next starts one
/// interval later; the second covers scheduling.
pub fn patience(interval: Duration) -> Duration {
    interval
        .saturating_mul(2)
        .saturating_add(Duration::from_secs(1))
}

/// The parents' page lists at most this many failing dependants (and how many more).
pub const LISTED: usize = 20;

/// The last verdict of a check.
#[derive(Debug, Clone, Copy)]
struct Health {
    /// The last run passed.
    ok: bool,
    /// When the last result came.
    at: SystemTime,
    /// When it last came back: the first passing result after a failed one.
    recovered_at: Option<SystemTime>,
    /// Since when it fails: the first failed result of the current run of failures.
    failing_since: Option<SystemTime>,
}

/// Every check's parents and dependants, and the last verdict of every check.
#[derive(Debug)]
pub struct Dependencies {
    parents: HashMap<String, Vec<String>>,
    children: HashMap<String, Vec<String>>,
    patience: HashMap<String, Duration>,
    health: HashMap<String, Health>,
    /// When the configuration was applied: a parent with no result yet holds its dependants
    /// until its patience from then is over.
    configured: SystemTime,
}

impl Default for Dependencies {
    fn default() -> Dependencies {
        Dependencies {
            parents: HashMap::new(),
            children: HashMap::new(),
            patience: HashMap::new(),
            health: HashMap::new(),
            configured: SystemTime::UNIX_EPOCH,
        }
    }
}

fn elapsed(since: SystemTime, now: SystemTime) -> Duration {
    now.duration_since(since).unwrap_or_default()
}

impl Dependencies {
    /// Applies a configuration: `checks` are the ones this daemon runs, `all` every check of
    /// the configuration (a parent run by another shard is named but never reports here).
    /// Verdicts of checks that stay are kept.
    pub fn configure(&mut self, checks: &[Arc<Check>], now: SystemTime) {
        self.parents.clear();
        self.children.clear();
        self.patience.clear();
        for c in checks {
            if c.depends_on.is_empty() {
                continue;
            }
            let parents: Vec<String> = c.depends_on.iter().map(|d| d.check.clone()).collect();
            for p in &parents {
                self.children
                    .entry(p.clone())
                    .or_default()
                    .push(c.name.clone());
            }
            self.parents.insert(c.name.clone(), parents);
        }
        // Only checks with a parent or a dependant are followed: without `depends_on` anywhere
        // a result costs one failed lookup, and nothing is kept per check.
        for c in checks {
            if self.parents.contains_key(&c.name) || self.children.contains_key(&c.name) {
                self.patience.insert(c.name.clone(), patience(c.interval));
            }
        }
        self.health
            .retain(|name, _| self.patience.contains_key(name));
        self.configured = now;
    }

    /// A result of `check` (kept only for checks with a parent or a dependant).
    pub fn record(&mut self, check: &str, ok: bool, now: SystemTime) {
        if !self.patience.contains_key(check) {
            return;
        }
        let before = self.health.get(check);
        let recovered_at = match before {
            Some(b) if ok && !b.ok => Some(now),
            Some(b) => b.recovered_at,
            None => None,
        };
        let failing_since = match before {
            _ if ok => None,
            Some(b) if !b.ok => b.failing_since.or(Some(now)),
            _ => Some(now),
        };
        let h = Health {
            ok,
            at: now,
            recovered_at,
            failing_since,
        };
        match self.health.get_mut(check) {
            Some(slot) => *slot = h,
            None => {
                self.health.insert(check.to_string(), h);
            }
        }
    }

    /// The parent that holds `check`'s triggers at `now`, if any (see the module docs).
    pub fn held_by(&self, check: &str, now: SystemTime) -> Option<&str> {
        let parents = self.parents.get(check)?;
        let mine = self.health.get(check).map(|h| h.at);
        let failing_since = self.health.get(check).and_then(|h| h.failing_since);
        let patience_of = |name: &str| self.patience.get(name).copied().unwrap_or(Duration::ZERO);
        parents
            .iter()
            .find(|p| match self.health.get(p.as_str()) {
                // Not heard from since the configuration: wait for its first word, if it is
                // run here at all.
                None => {
                    self.patience.contains_key(p.as_str())
                        && elapsed(self.configured, now) <= patience_of(p)
                }
                Some(h) if !h.ok => true,
                Some(h) => {
                    let Some(mine) = mine else {
                        return false;
                    };
                    // The parent has not looked since this check began to fail: its next
                    // result tells whether the failure is the parent's.
                    let parent_behind = failing_since.is_some_and(|f| h.at < f)
                        && elapsed(h.at, now) <= patience_of(p);
                    // Came back after this check's last result: that failure may be the
                    // parent's; this check's next result tells.
                    let recheck = h.recovered_at.is_some_and(|r| r >= mine)
                        && elapsed(mine, now) <= patience_of(check);
                    parent_behind || recheck
                }
            })
            .map(String::as_str)
    }

    /// The dependants of `check`, direct and indirect, whose last run failed, by name.
    pub fn failing_dependants(&self, check: &str) -> Vec<String> {
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut todo: Vec<&str> = vec![check];
        while let Some(c) = todo.pop() {
            for child in self.children.get(c).into_iter().flatten() {
                if child != check && seen.insert(child) {
                    todo.push(child);
                }
            }
        }
        seen.into_iter()
            .filter(|c| self.health.get(*c).is_some_and(|h| !h.ok))
            .map(str::to_string)
            .collect()
    }

    /// Whether `check` has dependants at all.
    pub fn has_dependants(&self, check: &str) -> bool {
        self.children.contains_key(check)
    }
}

/// `(5 dependants failing too: a, b, c, d, e)` for a parent's summary; at most [`LISTED`]
/// names, then how many more.
pub fn dependants_note(names: &[String]) -> String {
    let listed: Vec<&str> = names.iter().take(LISTED).map(String::as_str).collect();
    let more = names.len().saturating_sub(LISTED);
    let tail = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    let noun = if names.len() == 1 {
        "dependant"
    } else {
        "dependants"
    };
    format!(
        "({} {noun} failing too: {}{tail})",
        names.len(),
        listed.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::check::load_checks_str;
    use std::path::Path;
    use std::time::UNIX_EPOCH;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_000_000 + s)
    }

    /// Checks every 10 s, `(name, parents)`, from one check file.
    fn checks(list: &[(&str, &[&str])]) -> Vec<Arc<Check>> {
        let mut yaml = String::from("checks:\n");
        for (name, parents) in list {
            yaml.push_str(&format!(
                "  - name: {name}\n    interval: 10s\n    tcp:\n      target: 127.0.0.1:1\n"
            ));
            if !parents.is_empty() {
                yaml.push_str(&format!("    depends_on: [{}]\n", parents.join(", ")));
            }
        }
        load_checks_str(Path::new("t.yaml"), &yaml).unwrap()
    }

    fn graph() -> Dependencies {
        let mut d = Dependencies::default();
        d.configure(
            &checks(&[
                ("db", &[]),
                ("api", &["db"]),
                ("login", &["api"]),
                ("jobs", &["db"]),
            ]),
            at(0),
        );
        d
    }

    #[test]
    fn a_failing_parent_holds_and_a_passing_one_that_has_looked_since_does_not() {
        let mut d = graph();
        d.record("db", true, at(1));
        d.record("jobs", false, at(2));
        // db's last word (t=1) predates jobs' failure (t=2): wait for db.
        assert_eq!(d.held_by("jobs", at(3)), Some("db"));
        d.record("db", false, at(4));
        assert_eq!(d.held_by("jobs", at(5)), Some("db"));
        assert_eq!(
            d.held_by("jobs", at(500)),
            Some("db"),
            "failing holds for as long as it fails"
        );
        // db comes back at t=600; jobs last ran at t=599: wait for jobs' next result.
        d.record("jobs", false, at(599));
        d.record("db", true, at(600));
        assert_eq!(d.held_by("jobs", at(600)), Some("db"));
        d.record("jobs", true, at(605));
        // Much later, jobs fails on its own: db looked after it (t=701 > 700) and passed.
        d.record("jobs", false, at(700));
        d.record("db", true, at(701));
        assert_eq!(d.held_by("jobs", at(701)), None);
    }

    #[test]
    fn after_the_parent_recovers_the_dependant_runs_once_more_before_it_pages() {
        let mut d = graph();
        d.record("jobs", false, at(10));
        d.record("db", false, at(11));
        d.record("db", true, at(20));
        // db failed (t=11) after jobs' last result (t=10): jobs must run again first.
        assert_eq!(d.held_by("jobs", at(20)), Some("db"));
        d.record("jobs", false, at(21));
        assert_eq!(
            d.held_by("jobs", at(21)),
            None,
            "still failing after the parent is back, and db looked since jobs began to fail: page"
        );
        // Whatever the two checks' offsets, db's results coming between jobs' ones hold nothing.
        for t in 22..26 {
            d.record("db", true, at(t));
            assert_eq!(d.held_by("jobs", at(t)), None);
            d.record("jobs", false, at(t));
            assert_eq!(d.held_by("jobs", at(t)), None, "never held again at t={t}");
        }
        // A dependant that stops reporting is not held for ever (it last ran at t=25).
        d.record("db", false, at(30));
        d.record("db", true, at(31));
        assert_eq!(d.held_by("jobs", at(31)), Some("db"));
        assert_eq!(
            d.held_by("jobs", at(25 + 22)),
            None,
            "21 s is jobs' patience"
        );
    }

    #[test]
    fn a_silent_parent_holds_only_for_its_patience() {
        let mut d = graph();
        d.record("jobs", false, at(5));
        assert_eq!(
            d.held_by("jobs", at(5)),
            Some("db"),
            "db has not run since the start"
        );
        assert_eq!(d.held_by("jobs", at(21)), Some("db"));
        assert_eq!(d.held_by("jobs", at(22)), None);
        d.record("jobs", true, at(29));
        d.record("db", true, at(30));
        // jobs begins to fail after db last looked: db's next word decides, if it comes.
        d.record("jobs", false, at(31));
        assert_eq!(d.held_by("jobs", at(40)), Some("db"));
        assert_eq!(d.held_by("jobs", at(52)), None, "db said nothing for 22 s");
    }

    #[test]
    fn a_parent_not_run_here_holds_nothing() {
        let mut d = Dependencies::default();
        // `db` is another shard's: only `api` runs here.
        let all = checks(&[("db", &[]), ("api", &["db"])]);
        d.configure(&all[1..], at(0));
        d.record("api", false, at(1));
        assert_eq!(d.held_by("api", at(1)), None);
    }

    #[test]
    fn the_parent_lists_direct_and_indirect_dependants_that_fail() {
        let mut d = graph();
        for (c, ok) in [
            ("api", false),
            ("login", false),
            ("jobs", true),
            ("db", false),
        ] {
            d.record(c, ok, at(1));
        }
        assert_eq!(d.failing_dependants("db"), vec!["api", "login"]);
        assert_eq!(d.failing_dependants("api"), vec!["login"]);
        assert!(d.failing_dependants("login").is_empty());
        assert!(d.has_dependants("db") && !d.has_dependants("login"));
        assert_eq!(
            dependants_note(&["api".into(), "login".into()]),
            "(2 dependants failing too: api, login)"
        );
        let many: Vec<String> = (0..25).map(|i| format!("c{i:02}")).collect();
        assert!(dependants_note(&many).ends_with("c19 and 5 more)"));
    }
}
