//! The per-check metric families, as one table, and their encoding.
//!
//! Each family is a name, a help text, a type and a function that lists a check's samples.
//! Encoding walks the table once, and for each family the (sorted) checks once.

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::encoding::{MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::series::{CheckSeries, HistogramSnapshot};
use crate::probe::{Phase, Reason};

/// One sample's value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Sample {
    /// A gauge with an integer value.
    Int(i64),
    /// A gauge with a float value.
    Float(f64),
    /// A counter.
    Counter(u64),
    /// A histogram.
    Histogram(HistogramSnapshot),
}

/// A sample's labels, in exposition order.
pub(crate) type Labels<'a> = &'a [(&'static str, &'a str)];

/// Where a family function sends its samples.
pub(crate) type Emit<'e> = dyn FnMut(Labels<'_>, Sample) -> fmt::Result + 'e;

/// One metric family with per-check series.
pub(crate) struct CheckFamily {
    /// The exposed name: counters end in `_total`, a trailing `_seconds` is declared as the
    /// OpenMetrics unit.
    pub(crate) name: &'static str,
    /// One sentence ending in a period; no backslash, quote or newline.
    pub(crate) help: &'static str,
    pub(crate) metric_type: MetricType,
    /// Emits the check's samples of this family (none is fine).
    pub(crate) samples: fn(&CheckSeries, &mut Emit<'_>) -> fmt::Result,
}

const GAUGE: MetricType = MetricType::Gauge;
const COUNTER: MetricType = MetricType::Counter;
const HISTOGRAM: MetricType = MetricType::Histogram;

/// Every per-check family, in exposition order. To add one: a field in `series.rs`, its update
/// in `record` (or a setter on `Metrics`), and an entry here.
pub(crate) const CHECK_FAMILIES: &[CheckFamily] = &[
    CheckFamily {
        name: "canary_check_success",
        help: "Whether the last run of the check passed (1) or failed (0).",
        metric_type: GAUGE,
        samples: |c, emit| {
            if !c.core.has_run() {
                return Ok(());
            }
            emit(&[("check", &c.name)], bool_sample(c.core.success.load(Relaxed)))
        },
    },
    CheckFamily {
        name: "canary_check_duration_seconds",
        help: "Wall time of the check's runs.",
        metric_type: HISTOGRAM,
        samples: |c, emit| {
            emit(
                &[("check", &c.name)],
                Sample::Histogram(c.core.duration.snapshot()),
            )
        },
    },
    CheckFamily {
        name: "canary_check_last_run_timestamp_seconds",
        help: "When the last run of the check finished, in Unix seconds.",
        metric_type: GAUGE,
        samples: |c, emit| {
            if !c.core.has_run() {
                return Ok(());
            }
            emit(&[("check", &c.name)], Sample::Float(c.core.last_run.get()))
        },
    },
    CheckFamily {
        name: "canary_check_runs_total",
        help: "Finished runs of the check, by result.",
        metric_type: COUNTER,
        samples: |c, emit| {
            for (result, runs) in ["success", "failure"].iter().zip(&c.core.runs) {
                emit(
                    &[("check", &c.name), ("result", result)],
                    Sample::Counter(runs.load(Relaxed)),
                )?;
            }
            Ok(())
        },
    },
    CheckFamily {
        name: "canary_check_failures_total",
        help: "Failed runs of the check, by reason.",
        metric_type: COUNTER,
        samples: |c, emit| {
            for (reason, n) in Reason::ALL.iter().zip(&c.core.failures) {
                let n = n.load(Relaxed);
                if n > 0 {
                    emit(
                        &[("check", &c.name), ("reason", reason.as_str())],
                        Sample::Counter(n),
                    )?;
                }
            }
            Ok(())
        },
    },
    CheckFamily {
        name: "canary_step_success",
        help: "Whether the last run of the step passed (1) or failed (0).",
        metric_type: GAUGE,
        samples: |c, emit| {
            for s in c.steps.iter().filter(|s| s.ran.load(Relaxed)) {
                emit(
                    &[("check", &c.name), ("step", &s.name)],
                    bool_sample(s.success.load(Relaxed)),
                )?;
            }
            Ok(())
        },
    },
    CheckFamily {
        name: "canary_step_duration_seconds",
        help: "Wall time of the step's runs, redirects included.",
        metric_type: HISTOGRAM,
        samples: |c, emit| {
            for s in c.steps.iter() {
                emit(
                    &[("check", &c.name), ("step", &s.name)],
                    Sample::Histogram(s.duration.snapshot()),
                )?;
            }
            Ok(())
        },
    },
    CheckFamily {
        name: "canary_http_status_code",
        help: "HTTP status of the final response of the step's last run, 0 if none arrived.",
        metric_type: GAUGE,
        samples: |c, emit| {
            for s in c.steps.iter().filter(|s| s.ran.load(Relaxed)) {
                emit(
                    &[("check", &c.name), ("step", &s.name)],
                    Sample::Int(i64::from(s.status.load(Relaxed))),
                )?;
            }
            Ok(())
        },
    },
    CheckFamily {
        name: "canary_http_phase_duration_seconds",
        help: "Time spent in each HTTP phase during the step's last run, redirects summed.",
        metric_type: GAUGE,
        samples: |c, emit| {
            for s in c.steps.iter().filter(|s| s.ran.load(Relaxed)) {
                for (phase, v) in Phase::ALL.iter().zip(&s.phases) {
                    emit(
                        &[("check", &c.name), ("step", &s.name), ("phase", phase.as_str())],
                        Sample::Float(v.get()),
                    )?;
                }
            }
            Ok(())
        },
    },
    CheckFamily {
        name: "canary_tls_cert_expiry_timestamp_seconds",
        help: "When the leaf certificate the step last saw expires, in Unix seconds.",
        metric_type: GAUGE,
        samples: |c, emit| {
            for s in c.steps.iter() {
                if let Some(expiry) = s.cert_expiry() {
                    emit(
                        &[("check", &c.name), ("step", &s.name)],
                        Sample::Float(expiry),
                    )?;
                }
            }
            Ok(())
        },
    },
];

fn bool_sample(b: bool) -> Sample {
    Sample::Int(i64::from(b))
}

static SECONDS: Unit = Unit::Seconds;

/// The name and unit to give prometheus-client for an exposed name: it appends `_total` to
/// counters and `_<unit>` to names with a unit itself.
pub(crate) fn descriptor(
    name: &'static str,
    metric_type: MetricType,
) -> (&'static str, Option<&'static Unit>) {
    let name = match metric_type {
        MetricType::Counter => name.strip_suffix("_total").unwrap_or(name),
        _ => name,
    };
    match name.strip_suffix("_seconds") {
        Some(base) => (base, Some(&SECONDS)),
        None => (name, None),
    }
}

/// Writes one sample of the family `encoder` was opened for.
pub(crate) fn write_sample(
    encoder: &mut MetricEncoder<'_>,
    labels: Labels<'_>,
    sample: Sample,
) -> fmt::Result {
    let mut e = encoder.encode_family(&labels)?;
    match sample {
        Sample::Int(v) => e.encode_gauge(&v),
        Sample::Float(v) => e.encode_gauge(&v),
        Sample::Counter(v) => e.encode_counter::<NoLabelSet, u64, u64>(&v, None),
        Sample::Histogram(h) => e.encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None),
    }
}

/// Whether a sample fits a family of this type (a mismatch would be malformed output).
pub(crate) fn fits(metric_type: MetricType, sample: &Sample) -> bool {
    matches!(
        (metric_type, sample),
        (MetricType::Gauge, Sample::Int(_) | Sample::Float(_))
            | (MetricType::Counter, Sample::Counter(_))
            | (MetricType::Histogram, Sample::Histogram(_))
    )
}
