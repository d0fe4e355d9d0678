//! The per-check metric families, as one table, and their encoding.
//!
//! Each family is a name, a help text, a type and a function that lists a check's samples.
//! Encoding walks the table once, and for each family the (name-sorted) checks once, writing
//! straight into the output: label sets are rendered (and escaped) once per check and step when
//! the configuration is set, and values are integers (durations and times in nanoseconds, written
//! as exact decimal seconds), so a sample line costs a handful of `push_str` calls. That keeps
//! 10,000 checks (about 400,000 series, 33 MB) inside the 50 ms budget at about 30 ms of CPU;
//! going through prometheus-client's `Collector` and `MetricEncoder` cost 80 ms (about twenty
//! dynamic `fmt::Write` calls per line). Lines look as prometheus-client writes them (same
//! escaping, `1.0`-style seconds), except that bucket lines put `le` last, as is usual.

use super::format::Format;
use super::series::{CheckSeries, HistogramSnapshot, DURATION_BUCKETS};
use crate::probe::queue::JobState;
use crate::probe::{Phase, Reason};

/// One sample's value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Sample {
    /// A gauge with an integer value.
    Int(i64),
    /// A gauge in seconds, given in nanoseconds (a duration, or a time since the Unix epoch).
    Seconds(u64),
    /// A counter.
    Counter(u64),
    /// A histogram with [`DURATION_BUCKETS`].
    Histogram(HistogramSnapshot),
}

/// A sample's labels: the check's (or step's) pre-rendered label set, then at most one label from
/// a fixed set (result, reason, phase), whose value needs no escaping.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Labels<'a> {
    pub(crate) base: &'a str,
    pub(crate) extra: Option<(&'static str, &'static str)>,
}

impl<'a> Labels<'a> {
    fn of(base: &'a str) -> Self {
        Labels { base, extra: None }
    }

    fn with(base: &'a str, key: &'static str, value: &'static str) -> Self {
        Labels {
            base,
            extra: Some((key, value)),
        }
    }
}

/// Where a family function sends its samples.
pub(crate) type Emit<'e> = dyn FnMut(Labels<'_>, Sample) + 'e;

/// The type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetricType {
    Gauge,
    Counter,
    Histogram,
}

/// One metric family with per-check series.
pub(crate) struct CheckFamily {
    /// The exposed name: counters end in `_total`; a trailing `_seconds` is declared as the
    /// OpenMetrics unit.
    pub(crate) name: &'static str,
    /// One sentence ending in a period; no backslash, quote or newline.
    pub(crate) help: &'static str,
    pub(crate) metric_type: MetricType,
    /// Emits the check's samples of this family (none is fine).
    pub(crate) samples: fn(&CheckSeries, &mut Emit<'_>),
}

use std::sync::atomic::Ordering::Relaxed;

use MetricType::{Counter as COUNTER, Gauge as GAUGE, Histogram as HISTOGRAM};

/// Every per-check family, in exposition order. To add one: a field in `series.rs`, its update
/// in `record` (or a setter on `Metrics`), and an entry here.
pub(crate) const CHECK_FAMILIES: &[CheckFamily] = &[
    CheckFamily {
        name: "canary_check_info",
        help: "Always 1, labelled with the check's kind and its configured labels: join on check to group by team.",
        metric_type: GAUGE,
        samples: |c, emit| emit(Labels::of(&c.info), Sample::Int(1)),
    },
    CheckFamily {
        name: "canary_check_success",
        help: "Whether the last run of the check passed (1) or failed (0).",
        metric_type: GAUGE,
        samples: |c, emit| {
            if c.core.has_run() {
                emit(
                    Labels::of(&c.labels),
                    bool_sample(c.core.success.load(Relaxed)),
                );
            }
        },
    },
    CheckFamily {
        name: "canary_check_duration_seconds",
        help: "Wall time of the check's runs.",
        metric_type: HISTOGRAM,
        samples: |c, emit| {
            emit(
                Labels::of(&c.labels),
                Sample::Histogram(c.core.duration.snapshot()),
            );
        },
    },
    CheckFamily {
        name: "canary_check_last_run_timestamp_seconds",
        help: "When the last run of the check finished, in Unix seconds.",
        metric_type: GAUGE,
        samples: |c, emit| {
            if c.core.has_run() {
                emit(
                    Labels::of(&c.labels),
                    Sample::Seconds(c.core.last_run.load(Relaxed)),
                );
            }
        },
    },
    CheckFamily {
        name: "canary_check_runs_total",
        help: "Finished runs of the check, by result.",
        metric_type: COUNTER,
        samples: |c, emit| {
            for (result, runs) in ["success", "failure"].into_iter().zip(&c.core.runs) {
                emit(
                    Labels::with(&c.labels, "result", result),
                    Sample::Counter(runs.load(Relaxed)),
                );
            }
        },
    },
    CheckFamily {
        name: "canary_check_failures_total",
        help: "Failed runs of the check, by reason.",
        metric_type: COUNTER,
        samples: |c, emit| {
            for (reason, n) in Reason::ALL.into_iter().zip(&c.core.failures) {
                let n = n.load(Relaxed);
                if n > 0 {
                    emit(
                        Labels::with(&c.labels, "reason", reason.as_str()),
                        Sample::Counter(n),
                    );
                }
            }
        },
    },
    CheckFamily {
        name: "canary_check_retries_total",
        help: "Quick retries of the check's failed attempts (attempts beyond the first), whatever their outcome.",
        metric_type: COUNTER,
        samples: |c, emit| {
            emit(
                Labels::of(&c.labels),
                Sample::Counter(c.core.retries.load(Relaxed)),
            );
        },
    },
    CheckFamily {
        name: "canary_step_success",
        help: "Whether the last run of the step passed (1) or failed (0).",
        metric_type: GAUGE,
        samples: |c, emit| {
            for s in c.steps.iter().filter(|s| s.ran.load(Relaxed)) {
                emit(Labels::of(&s.labels), bool_sample(s.success.load(Relaxed)));
            }
        },
    },
    CheckFamily {
        name: "canary_step_duration_seconds",
        help: "Wall time of the step's runs, redirects included.",
        metric_type: HISTOGRAM,
        samples: |c, emit| {
            // A one-step check's step histogram is its check histogram: not exported twice.
            if !c.step_histogram {
                return;
            }
            for s in c.steps.iter() {
                emit(
                    Labels::of(&s.labels),
                    Sample::Histogram(s.duration.snapshot()),
                );
            }
        },
    },
    CheckFamily {
        name: "canary_http_status_code",
        help: "HTTP status of the final response of the step's last run, 0 if none arrived.",
        metric_type: GAUGE,
        samples: |c, emit| {
            for s in c.steps.iter().filter(|s| s.ran.load(Relaxed)) {
                emit(
                    Labels::of(&s.labels),
                    Sample::Int(i64::from(s.status.load(Relaxed))),
                );
            }
        },
    },
    CheckFamily {
        name: "canary_http_phase_duration_seconds",
        help: "Time spent in each HTTP phase during the step's last run, redirects summed.",
        metric_type: GAUGE,
        samples: |c, emit| {
            for s in c.steps.iter().filter(|s| s.ran.load(Relaxed)) {
                for (phase, v) in Phase::ALL.into_iter().zip(&s.phases) {
                    emit(
                        Labels::with(&s.labels, "phase", phase.as_str()),
                        Sample::Seconds(v.load(Relaxed)),
                    );
                }
            }
        },
    },
    CheckFamily {
        name: "canary_tls_cert_expiry_timestamp_seconds",
        help: "When the leaf certificate the step last saw expires, in Unix seconds.",
        metric_type: GAUGE,
        samples: |c, emit| {
            for s in c.steps.iter() {
                if let Some(expiry) = s.cert_expiry() {
                    emit(Labels::of(&s.labels), Sample::Seconds(expiry));
                }
            }
        },
    },
    CheckFamily {
        name: "canary_queue_depth",
        help: "Jobs in each state in the queue, at the last successful read.",
        metric_type: GAUGE,
        samples: |c, emit| {
            c.core.with_queue(|q| {
                for e in q.queues.values() {
                    for (state, n) in &e.depths {
                        emit(
                            Labels::with(&e.labels, "state", state.as_str()),
                            Sample::Int(i64::try_from(*n).unwrap_or(i64::MAX)),
                        );
                    }
                }
            });
        },
    },
    CheckFamily {
        name: "canary_queue_oldest_job_age_seconds",
        help: "How long the oldest waiting job of the queue has waited, 0 when none waits.",
        metric_type: GAUGE,
        samples: |c, emit| {
            c.core.with_queue(|q| {
                for e in q.queues.values() {
                    let waiting = e
                        .depths
                        .iter()
                        .find(|(s, _)| *s == JobState::Waiting)
                        .map(|(_, n)| *n);
                    match (e.oldest_age, waiting) {
                        (Some(age), _) => emit(Labels::of(&e.labels), Sample::Seconds(age)),
                        // Nothing waits: the age is honestly zero. Jobs wait but the system
                        // records no enqueue time: no sample rather than a made-up one. A
                        // pseudo-queue without a waiting state (`_all`: retries, dead jobs)
                        // has no age at all: no sample rather than an always-0 one.
                        (None, Some(0)) => emit(Labels::of(&e.labels), Sample::Seconds(0)),
                        (None, _) => {}
                    }
                }
            });
        },
    },
    CheckFamily {
        name: "canary_jobs_processed_total",
        help: "Jobs processed, as the job system counts them (or as drained from the queue where it keeps no count), since canaryd started.",
        metric_type: COUNTER,
        samples: |c, emit| {
            c.core.with_queue(|q| {
                emit(Labels::of(&q.labels), Sample::Counter(q.processed));
            });
        },
    },
    CheckFamily {
        name: "canary_jobs_failed_total",
        help: "Jobs failed, as the job system counts them, since canaryd started.",
        metric_type: COUNTER,
        samples: |c, emit| {
            c.core.with_queue(|q| {
                if let Some(failed) = q.failed {
                    emit(Labels::of(&q.labels), Sample::Counter(failed));
                }
            });
        },
    },
    CheckFamily {
        name: "canary_workers",
        help: "Live workers the job system records.",
        metric_type: GAUGE,
        samples: |c, emit| {
            c.core.with_queue(|q| {
                if let Some(w) = q.workers {
                    emit(Labels::of(&q.labels), Sample::Int(i64::try_from(w).unwrap_or(i64::MAX)));
                }
            });
        },
    },
    CheckFamily {
        name: "canary_workers_busy",
        help: "Live workers running a job now.",
        metric_type: GAUGE,
        samples: |c, emit| {
            c.core.with_queue(|q| {
                if let Some(b) = q.busy {
                    emit(Labels::of(&q.labels), Sample::Int(i64::try_from(b).unwrap_or(i64::MAX)));
                }
            });
        },
    },
    CheckFamily {
        name: "canary_job_pickup_latency_seconds",
        help: "Canary jobs: enqueued until a worker picked them up, of each finished canary whose start the job system records.",
        metric_type: HISTOGRAM,
        samples: |c, emit| {
            if let Some(k) = c.core.canary.get() {
                emit(Labels::of(&c.labels), Sample::Histogram(k.pickup.snapshot()));
            }
        },
    },
    CheckFamily {
        name: "canary_job_run_time_seconds",
        help: "Canary jobs: picked up until finished, of each finished canary.",
        metric_type: HISTOGRAM,
        samples: |c, emit| {
            if let Some(k) = c.core.canary.get() {
                emit(Labels::of(&c.labels), Sample::Histogram(k.run_time.snapshot()));
            }
        },
    },
    CheckFamily {
        name: "canary_job_total_seconds",
        help: "Canary jobs: enqueued until finished, of each finished canary.",
        metric_type: HISTOGRAM,
        samples: |c, emit| {
            if let Some(k) = c.core.canary.get() {
                emit(Labels::of(&c.labels), Sample::Histogram(k.total.snapshot()));
            }
        },
    },
    CheckFamily {
        name: "canary_job_outstanding_age_seconds",
        help: "Canary jobs: how long the canary still waiting or running at the end of the last run has been out (0 when none is).",
        metric_type: GAUGE,
        samples: |c, emit| {
            if let Some(k) = c.core.canary.get() {
                emit(Labels::of(&c.labels), Sample::Seconds(k.outstanding_age()));
            }
        },
    },
    CheckFamily {
        name: "canary_heartbeat_last_ping_timestamp_seconds",
        help: "When the heartbeat check last received a ping of any kind (start, success, failure), in Unix seconds.",
        metric_type: GAUGE,
        samples: |c, emit| {
            if let Some(t) = c.core.heartbeat_last_ping() {
                emit(Labels::of(&c.labels), Sample::Seconds(t));
            }
        },
    },
    CheckFamily {
        name: "canary_heartbeat_late",
        help: "Whether the heartbeat check's job was late at its last run (1) or not (0).",
        metric_type: GAUGE,
        samples: |c, emit| {
            if let Some(late) = c.core.heartbeat_late() {
                emit(Labels::of(&c.labels), bool_sample(late));
            }
        },
    },
];

fn bool_sample(b: bool) -> Sample {
    Sample::Int(i64::from(b))
}

/// Writes every per-check family with at least one sample, in `format`.
pub(crate) fn encode_checks(
    out: &mut String,
    format: Format,
    checks: &[std::sync::Arc<CheckSeries>],
) {
    for family in CHECK_FAMILIES {
        // Leave out families without any sample, as prometheus-client does for its own.
        let present = checks.iter().any(|check| {
            let mut any = false;
            (family.samples)(check, &mut |_, _| any = true);
            any
        });
        if !present {
            continue;
        }
        write_descriptor(out, format, family);
        let mut scratch = String::with_capacity(256);
        for check in checks {
            (family.samples)(check, &mut |labels, sample| {
                debug_assert!(fits(family.metric_type, &sample), "{}", family.name);
                write_sample(out, &mut scratch, family.name, labels, sample);
            });
        }
    }
}

/// `# HELP`, `# TYPE` and, in OpenMetrics, `# UNIT`, named as each format wants: OpenMetrics
/// names a counter family without `_total`, text 0.0.4 names it as its sample.
fn write_descriptor(out: &mut String, format: Format, family: &CheckFamily) {
    let (name, unit) = match format {
        Format::Text => (family.name, None),
        Format::OpenMetrics => {
            let name = match family.metric_type {
                MetricType::Counter => family.name.strip_suffix("_total").unwrap_or(family.name),
                _ => family.name,
            };
            (name, name.ends_with("_seconds").then_some("seconds"))
        }
    };
    let type_name = match family.metric_type {
        MetricType::Gauge => "gauge",
        MetricType::Counter => "counter",
        MetricType::Histogram => "histogram",
    };
    for (keyword, value) in [("HELP", family.help), ("TYPE", type_name)] {
        for part in ["# ", keyword, " ", name, " ", value, "\n"] {
            out.push_str(part);
        }
    }
    if let Some(unit) = unit {
        for part in ["# UNIT ", name, " ", unit, "\n"] {
            out.push_str(part);
        }
    }
}

/// The end of each bucket line's label set: `le` values of [`DURATION_BUCKETS`] and `+Inf`, as
/// prometheus-client writes them.
const LE_TAILS: [&str; DURATION_BUCKETS.len() + 1] = [
    "0.005\"} ",
    "0.01\"} ",
    "0.025\"} ",
    "0.05\"} ",
    "0.1\"} ",
    "0.25\"} ",
    "0.5\"} ",
    "1.0\"} ",
    "2.5\"} ",
    "5.0\"} ",
    "10.0\"} ",
    "+Inf\"} ",
];

/// Writes `{labels} ` (`{labels,` with `open`, for a label to follow).
fn write_labels(out: &mut String, labels: Labels<'_>, open: bool) {
    out.push('{');
    out.push_str(labels.base);
    let mut first = labels.base.is_empty();
    if let Some((key, value)) = labels.extra {
        if !first {
            out.push(',');
        }
        first = false;
        for part in [key, "=\"", value, "\""] {
            out.push_str(part);
        }
    }
    if open {
        if !first {
            out.push(',');
        }
    } else {
        out.push_str("} ");
    }
}

fn write_u64(out: &mut String, mut v: u64) {
    // Faster than `write!` for the ~300,000 counts of a large encoding.
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[i..]).unwrap_or("0"));
}

fn write_i64(out: &mut String, v: i64) {
    if v < 0 {
        out.push('-');
    }
    write_u64(out, v.unsigned_abs());
}

/// Writes nanoseconds as exact decimal seconds: `0.03`, `1767225600.3`, `2.0`.
fn write_seconds(out: &mut String, nanos: u64) {
    const NANOS_PER_SEC: u64 = 1_000_000_000;
    write_u64(out, nanos / NANOS_PER_SEC);
    out.push('.');
    let mut frac = nanos % NANOS_PER_SEC;
    if frac == 0 {
        out.push('0');
        return;
    }
    let mut width = 9;
    while frac.is_multiple_of(10) {
        frac /= 10;
        width -= 1;
    }
    let mut digits = [b'0'; 9];
    for slot in digits[..width].iter_mut().rev() {
        *slot = b'0' + (frac % 10) as u8;
        frac /= 10;
    }
    out.push_str(std::str::from_utf8(&digits[..width]).unwrap_or("0"));
}

/// Writes one sample (several lines for a histogram); `scratch` is reused across calls.
fn write_sample(
    out: &mut String,
    scratch: &mut String,
    name: &str,
    labels: Labels<'_>,
    sample: Sample,
) {
    match sample {
        Sample::Int(v) => {
            out.push_str(name);
            write_labels(out, labels, false);
            write_i64(out, v);
        }
        Sample::Seconds(v) => {
            out.push_str(name);
            write_labels(out, labels, false);
            write_seconds(out, v);
        }
        Sample::Counter(v) => {
            out.push_str(name);
            write_labels(out, labels, false);
            write_u64(out, v);
        }
        Sample::Histogram(h) => {
            // `name_bucket{labels,le="` once, then one short tail per bucket.
            scratch.clear();
            scratch.push_str(name);
            scratch.push_str("_bucket");
            write_labels(scratch, labels, true);
            scratch.push_str("le=\"");
            let mut cumulative = 0;
            for (tail, n) in LE_TAILS.iter().zip(h.buckets) {
                cumulative += n;
                out.push_str(scratch);
                out.push_str(tail);
                write_u64(out, cumulative);
                out.push('\n');
            }
            out.push_str(name);
            out.push_str("_sum");
            write_labels(out, labels, false);
            write_seconds(out, h.sum_nanos);
            out.push('\n');
            out.push_str(name);
            out.push_str("_count");
            write_labels(out, labels, false);
            write_u64(out, h.count);
        }
    }
    out.push('\n');
}

/// Whether a sample fits a family of this type (a mismatch would be malformed output).
fn fits(metric_type: MetricType, sample: &Sample) -> bool {
    matches!(
        (metric_type, sample),
        (MetricType::Gauge, Sample::Int(_) | Sample::Seconds(_))
            | (MetricType::Counter, Sample::Counter(_))
            | (MetricType::Histogram, Sample::Histogram(_))
    )
}

/// Renders `key="value"` with the value escaped as both formats want (`\\`, `\"`, `\n`).
pub(crate) fn render_label(out: &mut String, key: &str, value: &str) {
    if !out.is_empty() {
        out.push(',');
    }
    out.push_str(key);
    out.push_str("=\"");
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            _ => out.push(ch),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn le_labels_match_the_buckets() {
        for (tail, bound) in LE_TAILS.iter().zip(DURATION_BUCKETS) {
            assert_eq!(*tail, format!("{bound:?}\"}} "));
        }
        assert_eq!(LE_TAILS[LE_TAILS.len() - 1], "+Inf\"} ");
    }

    #[test]
    fn numbers() {
        let mut s = String::new();
        for v in [0, 7, 10, 302, u64::MAX] {
            s.clear();
            write_u64(&mut s, v);
            assert_eq!(s, v.to_string());
        }
        for v in [0, -1, i64::MIN, i64::MAX] {
            s.clear();
            write_i64(&mut s, v);
            assert_eq!(s, v.to_string());
        }
        for (nanos, text) in [
            (0, "0.0"),
            (30_000_000, "0.03"),
            (1_767_225_600_300_000_000, "1767225600.3"),
            (1, "0.000000001"),
            (2_000_000_000, "2.0"),
            (123_456_789_012, "123.456789012"),
            (u64::MAX, "18446744073.709551615"),
        ] {
            s.clear();
            write_seconds(&mut s, nanos);
            assert_eq!(s, text);
        }
    }

    #[test]
    fn label_escaping() {
        let mut s = String::new();
        render_label(&mut s, "check", "x");
        render_label(&mut s, "step", "a\"b\\c\nd");
        assert_eq!(s, r#"check="x",step="a\"b\\c\nd""#);
    }

    #[test]
    fn counters_are_named_total() {
        for f in CHECK_FAMILIES {
            assert_eq!(
                f.metric_type == MetricType::Counter,
                f.name.ends_with("_total"),
                "{}",
                f.name
            );
        }
    }
}
