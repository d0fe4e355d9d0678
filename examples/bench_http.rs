//! `cargo run --release --example bench_http -- URL [SECONDS] [CONCURRENCY]`
//!
//! Runs the real http probe (fresh connection per probe, phases, assertions) in CONCURRENCY
//! loops against URL for SECONDS, then prints probes/s and the process CPU per probe.
//! `scripts/bench` runs it against a local nginx beside blackbox_exporter.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// utime + stime of this process, from /proc (USER_HZ is 100 on Linux).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, s)| s).unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // Fields after the command: state is [0]; utime is field 14 overall → index 11 here.
    Duration::from_millis((f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) * 10)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8080/".into());
    let seconds: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let concurrency: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(32);
    // Two runtime threads: the machine has two cores and the target shares them.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let yaml = format!("checks:\n  - name: bench\n    timeout: 5s\n    http:\n      request: {{url: \"{url}\"}}\n      expect: {{status: 200}}\n");
        let check = canaryd::probe::check::load_checks_str(Path::new("bench.yaml"), &yaml).unwrap().remove(0);
        let probe = canaryd::daemon::build_probe(&check).unwrap();
        let entry = canaryd::schedule::Entry { check, probe };
        // Warm up (and fail loudly if the target is not there).
        let r = canaryd::schedule::run_once(&entry, tokio::time::Instant::now()).await;
        assert!(r.success, "target {url} does not answer 200: {:?}", r.message);
        let done = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let cpu0 = cpu_time();
        let t0 = Instant::now();
        let end = t0 + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (entry, done, failed) = (entry.clone(), done.clone(), failed.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < end {
                    let r = canaryd::schedule::run_once(&entry, tokio::time::Instant::now()).await;
                    done.fetch_add(1, Ordering::Relaxed);
                    if !r.success {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        let wall = t0.elapsed().as_secs_f64();
        let cpu = (cpu_time() - cpu0).as_secs_f64();
        let n = done.load(Ordering::Relaxed);
        println!(
            "canaryd_http probes={n} failed={} seconds={wall:.1} probes_per_sec={:.0} cpu_ms_per_probe={:.4}",
            failed.load(Ordering::Relaxed),
            n as f64 / wall,
            cpu * 1000.0 / n.max(1) as f64
        );
    });
}
