//! `cargo run --release --example bench_schedule -- [CHECKS] [TARGET host:port] [SECONDS]`
//!
//! Schedules CHECKS (default 10,000) real tcp checks at a 10s interval against TARGET (a local
//! nginx in `scripts/bench`), runs them for SECONDS (default 25), and prints schedule lateness
//! p50/p99/max, the process RSS, and the time to encode /metrics for all of them.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use canaryd::metrics::{CheckMeta, Format, Metrics};
use canaryd::probe::check::Check;
use canaryd::probe::CheckResult;
use canaryd::schedule::{Entry, Scheduler, Sink};

struct Collect {
    metrics: Arc<Metrics>,
    lags: Mutex<Vec<Duration>>,
    /// Lateness is counted after the first interval: the start-up spawn of every task is not steady state.
    measure_from: Instant,
    runs: Mutex<(u64, u64)>,
}

impl Sink for Collect {
    fn record(&self, check: &Arc<Check>, result: CheckResult) {
        self.metrics.observe(&check.name, &result);
        let mut r = self.runs.lock().unwrap();
        r.0 += 1;
        r.1 += u64::from(!result.success);
    }
    fn schedule_lag(&self, lag: Duration) {
        self.metrics.observe_schedule_lag(lag);
        if Instant::now() >= self.measure_from {
            self.lags.lock().unwrap().push(lag);
        }
    }
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let target = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let seconds: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(25);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let rss0 = rss_mib();
        let mut yaml = String::from("checks:\n");
        for i in 0..n {
            yaml.push_str(&format!("  - name: check-{i}\n    interval: 10s\n    timeout: 2s\n    tcp: {{target: \"{target}\"}}\n"));
        }
        let checks = canaryd::probe::check::load_checks_str(Path::new("bench.yaml"), &yaml).unwrap();
        let metrics = Arc::new(Metrics::new());
        let metas: Vec<CheckMeta> = checks.iter().map(|c| CheckMeta { name: c.name.clone(), kind: c.kind.name(), steps: c.kind.step_names(), labels: Vec::new() }).collect();
        metrics.set_checks(&metas);
        let sink = Arc::new(Collect { metrics: metrics.clone(), lags: Mutex::new(Vec::new()), measure_from: Instant::now() + Duration::from_secs(10), runs: Mutex::new((0, 0)) });
        let sched = Scheduler::new(256, sink.clone());
        let entries: Vec<Entry> = checks.into_iter().map(|c| Entry { probe: canaryd::daemon::build_probe(&c).unwrap(), check: c }).collect();
        drop(yaml);
        sched.apply(entries);
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let rss = rss_mib();
        let mut lags = std::mem::take(&mut *sink.lags.lock().unwrap());
        lags.sort();
        let (runs, failed) = *sink.runs.lock().unwrap();
        let mut encode_ms = Vec::new();
        let mut bytes = 0;
        for _ in 0..5 {
            let t = Instant::now();
            bytes = metrics.encode(Format::Text).len();
            encode_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        encode_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
        sched.shutdown(Duration::from_secs(3)).await;
        println!(
            "canaryd_schedule checks={n} runs={runs} failed={failed} lag_p50_ms={:.2} lag_p99_ms={:.2} lag_max_ms={:.2} rss_mib={rss:.1} rss_before_mib={rss0:.1} metrics_encode_ms={:.1} metrics_bytes={bytes}",
            pct(&lags, 0.5),
            pct(&lags, 0.99),
            pct(&lags, 1.0),
            encode_ms[encode_ms.len() / 2],
        );
    });
}
