//! Encoding cost of `/metrics` at 10,000 HTTP checks (one step each, a few observations each).
//!
//! `cargo run --release --example bench_encode` prints
//! `metrics_encode_ms_10k_checks text=<ms> openmetrics=<ms> bytes=<n> series=<n>` (median of
//! several runs; bytes and series of the text output), then the minimum of those runs, and the
//! RSS growth: for the per-check state, after the encodings, and the process peak (which
//! includes one encoded output).

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use canaryd::metrics::{CheckMeta, Format, Metrics};
use canaryd::probe::{CheckResult, Phases, Reason, StepResult};

const CHECKS: usize = 10_000;
const RUNS: usize = 11;

/// VmRSS or VmHWM of this process in KiB, if /proc says.
fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU time this thread has run, from /proc/thread-self/schedstat (ns), if available.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

fn result(i: usize, run: usize) -> CheckResult {
    let success = !(i + run).is_multiple_of(7);
    let now = SystemTime::now();
    CheckResult {
        success,
        reason: (!success).then_some(if run.is_multiple_of(2) {
            Reason::Status
        } else {
            Reason::Timeout
        }),
        message: None,
        duration: Duration::from_micros(20_000 + (i as u64 * 37 + run as u64 * 1_000) % 400_000),
        started_at: now,
        steps: vec![StepResult {
            name: "request".into(),
            success,
            ran: true,
            status: Some(if success { 200 } else { 503 }),
            duration: Duration::from_micros(19_000 + (i as u64 * 13) % 300_000),
            phases: Phases {
                resolve: Duration::from_micros(300 + i as u64 % 500),
                connect: Duration::from_micros(200 + i as u64 % 300),
                tls: Duration::from_micros(4_000 + i as u64 % 2_000),
                processing: Duration::from_micros(10_000 + i as u64 % 9_000),
                transfer: Duration::from_micros(100 + i as u64 % 800),
            },
            cert_not_after: Some(now + Duration::from_secs(90 * 86_400)),
            ..StepResult::default()
        }],
        observations: Vec::new(),
        detail: None,
        attempts: 1,
    }
}

fn median_ms(samples: &[Duration]) -> f64 {
    let mut samples = samples.to_vec();
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e3
}

fn min_ms(samples: &[Duration]) -> f64 {
    samples.iter().min().map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

fn main() {
    let rss_before = proc_status_kib("VmRSS:");

    let metrics = Metrics::new();
    let checks: Vec<CheckMeta> = (0..CHECKS)
        .map(|i| CheckMeta {
            name: format!("shop-login-{i:05}"),
            kind: "http",
            steps: vec!["request".into()],
            labels: vec![("team".into(), "shop".into())],
        })
        .collect();
    metrics.set_checks(&checks);
    for run in 0..3 {
        for (i, check) in checks.iter().enumerate() {
            metrics.observe(&check.name, &result(i, run));
        }
    }
    metrics.observe_schedule_lag(Duration::from_micros(800));
    metrics.set_reload(true, SystemTime::now());
    drop(checks);
    let rss_state = proc_status_kib("VmRSS:");

    let mut text_times = Vec::with_capacity(RUNS);
    let mut om_times = Vec::with_capacity(RUNS);
    let mut cpu_times = Vec::with_capacity(RUNS);
    let (mut bytes, mut series) = (0, 0);
    for _ in 0..RUNS {
        let cpu = thread_cpu();
        let start = Instant::now();
        let text = black_box(metrics.encode(Format::Text));
        text_times.push(start.elapsed());
        if let (Some(before), Some(after)) = (cpu, thread_cpu()) {
            cpu_times.push(after.saturating_sub(before));
        }
        bytes = text.len();
        series = text.lines().filter(|l| !l.starts_with('#')).count();
        drop(text);

        let start = Instant::now();
        let om = black_box(metrics.encode(Format::OpenMetrics));
        om_times.push(start.elapsed());
        drop(om);
    }
    let rss_after = proc_status_kib("VmRSS:");
    let peak = proc_status_kib("VmHWM:");

    println!(
        "metrics_encode_ms_10k_checks text={:.1} openmetrics={:.1} bytes={bytes} series={series}",
        median_ms(&text_times),
        median_ms(&om_times),
    );
    // The minimum is what an idle machine gives; the median includes whatever else runs.
    // On a busy machine the median includes other processes' time; the minimum and the CPU
    // time of the encoding thread (text) are what an idle machine gives.
    println!(
        "metrics_encode_min_ms_10k_checks text={:.1} openmetrics={:.1} text_cpu_median={:.1} runs={RUNS}",
        min_ms(&text_times),
        min_ms(&om_times),
        if cpu_times.is_empty() { f64::NAN } else { median_ms(&cpu_times) },
    );
    if let (Some(before), Some(state), Some(after), Some(peak)) =
        (rss_before, rss_state, rss_after, peak)
    {
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!(
            "metrics_rss_mib_10k_checks state={:.1} after_encodes={:.1} peak_process={:.1} (base {:.1})",
            mib(state.saturating_sub(before)),
            mib(after.saturating_sub(before)),
            mib(peak),
            mib(before),
        );
    }
}
