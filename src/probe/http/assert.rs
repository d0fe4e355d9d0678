//! Assertions on a step's final response. Each is recorded (for traces); the first that fails
//! sets the step's reason, and the message lists every one that failed, so a wrong status comes
//! with the body assertion that says why (`expected status 302, got 403; body contains "CSRF
//! verification failed"`).

use std::time::Duration;

use cookie_store::CookieStore;
use url::Url;

use super::spec::{JsonOp, StepSpec};
use super::transport::Response;
use super::{days_until, short_duration};
use crate::probe::{AssertionOutcome, Reason, StepResult};

/// Longest excerpt of peer data put in a message.
const EXCERPT: usize = 80;

fn excerpt(s: &str) -> String {
    let mut out: String = s.chars().take(EXCERPT).collect();
    if s.chars().count() > EXCERPT {
        out.push('…');
    }
    out
}

struct Recorder<'a> {
    out: &'a mut StepResult,
    /// The reason of the first failed assertion: one reason per step, for metrics and alerts.
    reason: Option<Reason>,
    /// The detail of every failed assertion, in the order evaluated: the step's message.
    failures: Vec<String>,
}

impl Recorder<'_> {
    fn check(
        &mut self,
        what: String,
        passed: bool,
        reason: Reason,
        detail: impl FnOnce() -> String,
    ) {
        let detail = if passed { None } else { Some(detail()) };
        if let Some(d) = &detail {
            self.reason.get_or_insert(reason);
            self.failures.push(d.clone());
        }
        self.out.assertions.push(AssertionOutcome {
            what,
            passed,
            detail,
        });
    }
}

fn status_text(ranges: &[(u16, u16)]) -> String {
    ranges
        .iter()
        .map(|(lo, hi)| match (lo, hi) {
            (l, h) if l == h => l.to_string(),
            (l, h) if l % 100 == 0 && *h == l + 99 => format!("{}xx", l / 100),
            (l, h) => format!("{l}-{h}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether the assertions search or parse the body (then they run off the async workers).
pub fn reads_body(step: &StepSpec) -> bool {
    let e = &step.expect;
    !e.body_regex.is_empty() || !e.json.is_empty()
}

/// Evaluates every assertion of `step`; returns whether all passed.
pub fn evaluate(
    step: &StepSpec,
    resp: &Response,
    final_url: &Url,
    jar: &CookieStore,
    took: Duration,
    out: &mut StepResult,
) -> bool {
    let e = &step.expect;
    let mut rec = Recorder {
        out,
        reason: None,
        failures: Vec::new(),
    };
    let status_ok = e
        .status
        .iter()
        .any(|(lo, hi)| (*lo..=*hi).contains(&resp.status));
    let want = status_text(&e.status);
    rec.check(
        format!("status in {want}"),
        status_ok,
        Reason::Status,
        || format!("expected status {want}, got {}", resp.status),
    );

    let body = String::from_utf8_lossy(&resp.body);
    for s in &e.body_contains {
        rec.check(
            format!("body contains {:?}", excerpt(s)),
            body.contains(s.as_str()),
            Reason::Assertion,
            || format!("body does not contain {:?}", excerpt(s)),
        );
    }
    for s in &e.body_not_contains {
        rec.check(
            format!("body does not contain {:?}", excerpt(s)),
            !body.contains(s.as_str()),
            Reason::Assertion,
            || format!("body contains {:?}", excerpt(s)),
        );
    }
    for r in &e.body_regex {
        rec.check(
            format!("body matches /{}/", r.as_str()),
            r.is_match(&body),
            Reason::Assertion,
            || format!("body does not match /{}/", r.as_str()),
        );
    }
    for (name, want) in &e.headers {
        let got = resp
            .headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let ok = got.as_deref() == Some(want.as_str());
        rec.check(
            format!("header {name} = {want:?}"),
            ok,
            Reason::Assertion,
            || match &got {
                Some(g) => format!("expected header {name} {want:?}, got {:?}", excerpt(g)),
                None => format!("expected header {name} {want:?}, but it is missing"),
            },
        );
    }
    if !e.json.is_empty() {
        match serde_json::from_slice::<serde_json::Value>(&resp.body) {
            Err(err) => {
                rec.check("body is JSON".into(), false, Reason::Assertion, || {
                    format!("body is not JSON: {err}")
                });
            }
            Ok(doc) => {
                for a in &e.json {
                    let found = a.path.query(&doc).all();
                    let first = found.first().copied();
                    let (what, ok, detail): (String, bool, String) = match &a.op {
                        JsonOp::Equals(v) => {
                            let shown = first
                                .map(|f| excerpt(&f.to_string()))
                                .unwrap_or_else(|| "nothing".into());
                            (
                                format!("{} == {v}", a.path_src),
                                first == Some(v),
                                format!("expected {} to be {v}, got {shown}", a.path_src),
                            )
                        }
                        JsonOp::Exists(want) => {
                            let ok = first.is_some() == *want;
                            let verb = if *want { "exists" } else { "does not exist" };
                            (
                                format!("{} {verb}", a.path_src),
                                ok,
                                format!(
                                    "expected {} to {}",
                                    a.path_src,
                                    if *want { "exist" } else { "not exist" }
                                ),
                            )
                        }
                        JsonOp::Matches(r) => {
                            let ok = first
                                .and_then(|f| f.as_str())
                                .is_some_and(|s| r.is_match(s));
                            (
                                format!("{} matches /{}/", a.path_src, r.as_str()),
                                ok,
                                format!("expected {} to match /{}/", a.path_src, r.as_str()),
                            )
                        }
                        JsonOp::LessThan(x) => {
                            let ok = first.and_then(|f| f.as_f64()).is_some_and(|n| n < *x);
                            let shown = first
                                .map(|f| excerpt(&f.to_string()))
                                .unwrap_or_else(|| "nothing".into());
                            (
                                format!("{} < {x}", a.path_src),
                                ok,
                                format!("expected {} < {x}, got {shown}", a.path_src),
                            )
                        }
                        JsonOp::GreaterThan(x) => {
                            let ok = first.and_then(|f| f.as_f64()).is_some_and(|n| n > *x);
                            let shown = first
                                .map(|f| excerpt(&f.to_string()))
                                .unwrap_or_else(|| "nothing".into());
                            (
                                format!("{} > {x}", a.path_src),
                                ok,
                                format!("expected {} > {x}, got {shown}", a.path_src),
                            )
                        }
                    };
                    rec.check(what, ok, Reason::Assertion, || detail);
                }
            }
        }
    }
    for name in &e.cookies {
        let ok = jar.iter_unexpired().any(|c| c.name() == name);
        rec.check(format!("cookie {name} set"), ok, Reason::Assertion, || {
            format!("expected cookie {name} to be set")
        });
    }
    if let Some(want) = &e.url {
        let got = if want.starts_with('/') {
            match final_url.query() {
                Some(q) if want.contains('?') => format!("{}?{q}", final_url.path()),
                _ => final_url.path().to_string(),
            }
        } else {
            final_url.as_str().to_string()
        };
        let ok = &got == want;
        rec.check(
            format!("final url = {want:?}"),
            ok,
            Reason::Assertion,
            || {
                format!(
                    "expected final URL {want:?}, got {:?}",
                    super::display_url(final_url)
                )
            },
        );
    }
    if let Some(max) = e.max_duration {
        rec.check(
            format!("duration <= {}", short_duration(max)),
            took <= max,
            Reason::Assertion,
            || {
                format!(
                    "took {}, more than max_duration {}",
                    short_duration(took),
                    short_duration(max)
                )
            },
        );
    }
    if let Some(days) = e.cert_min_days {
        match resp.cert_not_after {
            Some(t) => {
                let left = days_until(t);
                rec.check(
                    format!("certificate valid >= {days} days"),
                    left >= days as f64,
                    Reason::Assertion,
                    || {
                        format!(
                            "certificate expires in {left:.1} days, less than cert_min_days {days}"
                        )
                    },
                );
            }
            None => rec.check(
                format!("certificate valid >= {days} days"),
                false,
                Reason::Assertion,
                || "cert_min_days is set but the response came without TLS".into(),
            ),
        }
    }
    match rec.reason {
        None => true,
        Some(reason) => {
            rec.out.success = false;
            rec.out.reason = Some(reason);
            rec.out.message = Some(rec.failures.join("; "));
            false
        }
    }
}
