//! `cargo run --release --example bench_canary -- [--runs N] [--timeout SECONDS] [--python PATH]`
//!
//! What one run of a `canary_job` check costs, end to end against a real RQ 2 worker: Redis
//! round trips and commands canaryd sends, canaryd's CPU and wall time per run, the canary's
//! pickup latency, Redis's own CPU per run, and the keys left in Redis afterwards.
//!
//! The Redis is `CANARYD_BENCH_REDIS` (a private, empty redis-server: it is flushed here; one
//! holding other data is refused), else a redis-server started here on a free loopback port. The
//! worker is RQ's own (`tests/jobs/rq/worker.py`: `rq.Worker(...).work(with_scheduler=False)`,
//! run by the test venv's Python, `.cache/venv/bin/python` or `--python`) on queue
//! [`QUEUE`]. The check is what the daemon builds (`load_checks_str` + `daemon::build_probe`) of
//! a `canary_job` check with system rq and function [`FUNCTION`], run `--runs` times back to back
//! (default 200), each run with a `--timeout` deadline (default 2 s), in two passes:
//!
//! - **counting**, through the counting proxy of `shared/wire.rs` in front of Redis (the worker
//!   talks to Redis directly, so only canaryd's traffic is counted): round trips (a pipeline or
//!   a MULTI/EXEC is one), commands, connections and bytes each way per run. A run is: read the marker, `SET NX`
//!   it, enqueue (one MULTI/EXEC), poll (`look`, one pipeline each: 10 ms, 20 ms, ... apart
//!   until the canary finished), clean up (one `EVAL`) and one MULTI/EXEC that keeps the verdict
//!   and deletes the marker; so the count moves with how many polls the pickup took. The first
//!   run dials the shared connection and is reported on its own line.
//! - **timing**, straight to Redis: canaryd's CPU per run (the one runtime thread, from
//!   `/proc/thread-self/schedstat`, measured around each run only), wall time per run, pickup
//!   latency p50/p99 (the run's `CanaryReport`: the job hash's `started_at`, written by the work
//!   horse, minus the canary's `enqueued_at`, microseconds), Redis's CPU per run (`INFO cpu`
//!   over the pass divided by the runs: it includes what the worker makes Redis do — taking the
//!   job, its status updates, its result stream, its heartbeats — not canaryd's commands alone),
//!   and the worker's CPU per run (its process plus the work horses it forked and reaped, from
//!   `/proc/PID/stat`, 10 ms ticks).
//!
//! Then the keys in Redis are counted (`DBSIZE`) after 10 timed runs and after all of them, and
//! listed: they must be few and the same whatever the number of runs (every canary's job hash,
//! result stream and registry entries are removed by its run). Six remain: the bench's own
//! `canaryd-bench:owner`; canaryd's `canaryd:canary:<check>:last` (the last verdict, for replicas;
//! it expires after the check's `keep`; the marker itself is deleted by each run); RQ's
//! `rq:queues` (the queue stays listed: it is the operator's queue, not the canary's) and the
//! worker's own registration, `rq:workers`, `rq:workers:<queue>` and `rq:worker:<name>`.
//!
//! Wall time per run is more than the canary's enqueue → finish (`total_*`): polling starts 10 ms
//! after the enqueue and doubles, so a canary that finishes in 12 ms is seen at the second look,
//! 30 ms in.
//!
//! Output: `canary_rq_first_run round_trips= commands= connections=` and `canary_rq round_trips=
//! commands= connections= cpu_ms= wall_ms= pickup_p50_ms= pickup_p99_ms= redis_cpu_ms=
//! keys_after= ...`, which `scripts/bench canary` tabulates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use canaryd::probe::canary_job::{CanaryReport, Stage};
use canaryd::probe::{CheckResult, Probe, RunContext};

#[path = "shared/redis_admin.rs"]
mod redis_admin;
#[path = "shared/wire.rs"]
mod wire;

use redis_admin::{
    bench_redis, claim_and_flush, fmt, info, info_field, process_cpu, redis_cpu, socket_addr,
    thread_cpu, CommandStats, Res,
};
use wire::WireProxy;

/// The check's name (its marker key is `canaryd:canary:bench-canary`).
const CHECK: &str = "bench-canary";
/// The queue the worker listens on and the canary goes to.
const QUEUE: &str = "canary-bench";
/// The function the canary calls, `max("canaryd", CHECK)`: any RQ worker imports it without
/// application code. Named, not left to the check's default: the canary calls its function with
/// two arguments (see `src/probe/canary_job/rq.rs`), which `builtins.len` does not take.
const FUNCTION: &str = "builtins.max";
/// The worker's name (`rq:worker:<name>`).
const WORKER: &str = "canaryd-bench-worker";
/// Timed runs after which the keys are counted a first time.
const EARLY_RUNS: u64 = 10;

fn main() {
    if let Err(e) = run() {
        eprintln!("bench_canary: {e}");
        std::process::exit(1);
    }
}

/// Command-line options.
struct Options {
    /// Runs per pass.
    runs: u64,
    /// Deadline of each run.
    timeout: Duration,
    /// The Python with RQ installed.
    python: PathBuf,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn options() -> Res<Options> {
    let mut o = Options {
        runs: 200,
        timeout: Duration::from_secs(2),
        python: repo_root().join(".cache/venv/bin/python"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--runs" => o.runs = value()?.parse().map_err(|_| "--runs: a number")?,
            "--timeout" => {
                o.timeout = value()?
                    .parse()
                    .ok()
                    .filter(|s: &f64| *s > 0.2 && *s < 3600.0)
                    .map(Duration::from_secs_f64)
                    .ok_or("--timeout: seconds, more than 0.2")?
            }
            "--python" => o.python = PathBuf::from(value()?),
            other => return Err(format!("unknown argument {other:?} (see the file's docs)")),
        }
    }
    if o.runs < EARLY_RUNS {
        return Err(format!("--runs: at least {EARLY_RUNS}"));
    }
    if !o.python.exists() {
        return Err(format!(
            "{} not found: scripts/setup installs RQ into .cache/venv (or pass --python)",
            o.python.display()
        ));
    }
    Ok(o)
}

fn run() -> Res<()> {
    let opts = options()?;
    // A redis-server of our own unless the harness gave one.
    let (url, own, mut admin) = bench_redis("canaryd-bench-canary")?;
    let upstream = socket_addr(&url)?;
    claim_and_flush(&mut admin)?;
    let version = info_field(&info(&mut admin, "server")?, "redis_version").unwrap_or_default();
    let worker = RqWorker::start(&opts.python, &url, &mut admin)?;
    println!(
        "redis-server {version} at {url}{}; RQ {} worker {WORKER} (pid {}, tests/jobs/rq/worker.py, no scheduler) on queue {QUEUE}; function {FUNCTION}; {} runs per pass, {} s deadline each",
        if own.is_some() { " (started here)" } else { "" },
        worker.version,
        worker.pid(),
        opts.runs,
        opts.timeout.as_secs_f64()
    );

    let proxy = WireProxy::start(upstream)?;
    let proxy_url = format!("redis://{}", proxy.addr);
    // One runtime thread: the probe and its connection's driver task run on it and nothing else
    // does, so the thread's CPU time during a run is the run's.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;

    // Counting pass, through the proxy.
    let probe = build_probe(&check_yaml(&proxy_url, opts.timeout))?;
    proxy.reset();
    rt.block_on(run_finished(&*probe, opts.timeout))?;
    let first = proxy.snapshot();
    println!(
        "canary_rq_first_run round_trips={} commands={} connections={} (dials the shared connection; later runs reuse it)",
        first.round_trips, first.commands, first.connections
    );
    let stats0 = CommandStats::read(&mut admin)?;
    let jobs0 = worker.successful_jobs(&mut admin)?;
    proxy.reset();
    for _ in 0..opts.runs {
        rt.block_on(run_finished(&*probe, opts.timeout))?;
    }
    let wire = proxy.snapshot();
    let stats1 = CommandStats::read(&mut admin)?;
    let ran = worker.successful_jobs(&mut admin)? - jobs0;
    let per = |v: u64| v as f64 / opts.runs as f64;
    let executed = stats0.executed_until(&stats1);
    // The worker's own bookkeeping (heartbeats, maintenance) also runs during the pass: these are
    // the commands of canaryd and the worker together, per canary.
    let redis_commands = per(executed.values().sum());
    let mut by_command: Vec<(String, u64)> = executed.into_iter().collect();
    by_command.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    drop(probe);

    // Timing pass, straight to Redis.
    let probe = build_probe(&check_yaml(&url, opts.timeout))?;
    rt.block_on(run_finished(&*probe, opts.timeout))?;
    let redis0 = redis_cpu(&mut admin)?;
    let worker0 = worker.cpu()?;
    let mut cpu = Duration::ZERO;
    let mut wall = Duration::ZERO;
    let mut pickup = Vec::new();
    let mut total = Vec::new();
    let mut keys_early = 0;
    for i in 0..opts.runs {
        let (c0, t0) = (thread_cpu()?, Instant::now());
        let report = rt.block_on(run_finished(&*probe, opts.timeout))?;
        wall += t0.elapsed();
        cpu += thread_cpu()? - c0;
        pickup.extend(report.pickup_latency);
        total.extend(report.total);
        if i + 1 == EARLY_RUNS {
            keys_early = dbsize(&mut admin)?;
        }
    }
    let redis = redis_cpu(&mut admin)? - redis0;
    let worker_cpu = worker.cpu()? - worker0;
    let keys = all_keys(&mut admin)?;
    if pickup.len() as u64 != opts.runs {
        return Err(format!(
            "{} of {} runs reported no pickup latency (RQ's started_at missing)",
            opts.runs - pickup.len() as u64,
            opts.runs
        ));
    }

    let ms = |d: Duration| d.as_secs_f64() * 1e3 / opts.runs as f64;
    println!(
        "canary_rq round_trips={} commands={} connections={} bytes_out={} bytes_in={} cpu_ms={:.3} wall_ms={:.2} pickup_p50_ms={:.2} pickup_p99_ms={:.2} total_p50_ms={:.2} total_p99_ms={:.2} redis_cpu_ms={:.3} redis_commands={} worker_cpu_ms={:.1} keys_after_{EARLY_RUNS}={keys_early} keys_after={} runs={}+{} worker_ran={ran}",
        fmt(per(wire.round_trips)),
        fmt(per(wire.commands)),
        fmt(per(wire.connections)),
        per(wire.bytes_out).round(),
        per(wire.bytes_in).round(),
        ms(cpu),
        ms(wall),
        percentile_ms(&mut pickup, 0.50),
        percentile_ms(&mut pickup, 0.99),
        percentile_ms(&mut total, 0.50),
        percentile_ms(&mut total, 0.99),
        ms(redis),
        fmt(redis_commands),
        ms(worker_cpu),
        keys.len(),
        opts.runs,
        opts.runs,
    );
    let parts: Vec<String> = by_command
        .iter()
        .map(|(k, v)| format!("{k} {}", fmt(per(*v))))
        .collect();
    println!(
        "  (commands Redis ran per canary, canaryd's and the worker's: {})",
        parts.join(", ")
    );
    println!(
        "  (keys after the runs: {})",
        keys.iter()
            .map(|(k, t)| format!("{k} [{t}]"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if keys.len() as u64 != keys_early {
        return Err(format!(
            "{keys_early} keys after {EARLY_RUNS} runs, {} after {}: a canary leaves something behind",
            keys.len(),
            opts.runs
        ));
    }
    if ran != opts.runs {
        return Err(format!(
            "the worker ran {ran} jobs during the {} counted runs: each run should have been one canary",
            opts.runs
        ));
    }
    drop(worker);
    drop(own);
    Ok(())
}

fn check_yaml(url: &str, timeout: Duration) -> String {
    format!(
        "checks:\n  - name: {CHECK}\n    interval: 30s\n    timeout: {}ms\n    canary_job:\n      system: rq\n      redis: \"{url}\"\n      queue: {QUEUE}\n      function: {FUNCTION}\n      within: 30s\n",
        timeout.as_millis()
    )
}

fn build_probe(yaml: &str) -> Res<Arc<dyn Probe>> {
    let check = canaryd::probe::check::load_checks_str(Path::new("bench.yaml"), yaml)
        .map_err(|e| format!("check definition: {e}"))?
        .remove(0);
    canaryd::daemon::build_probe(&check)
}

/// One run; fails unless it passed with a canary it enqueued itself and saw finish (a run that
/// found the previous canary still out would measure half a canary).
async fn run_finished(probe: &dyn Probe, timeout: Duration) -> Res<CanaryReport> {
    let deadline = tokio::time::Instant::now() + timeout;
    let r: CheckResult = probe.run(RunContext { deadline }).await;
    let report = r.detail::<CanaryReport>().cloned().ok_or_else(|| {
        format!(
            "canary run without a report: {:?}: {:?}",
            r.reason, r.message
        )
    })?;
    if !r.success || report.stage != Stage::Finished || !report.enqueued_now {
        return Err(format!(
            "canary run: success {}, stage {}, enqueued by this run {}: {:?}: {}",
            r.success,
            report.stage.as_str(),
            report.enqueued_now,
            r.reason,
            r.message.unwrap_or_default()
        ));
    }
    Ok(report)
}

/// The `q` quantile (nearest rank) in milliseconds.
fn percentile_ms(v: &mut [Duration], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1].as_secs_f64() * 1e3
}

fn dbsize(con: &mut redis::Connection) -> Res<u64> {
    redis::cmd("DBSIZE")
        .query(con)
        .map_err(|e| format!("DBSIZE: {e}"))
}

/// Every key and its type, sorted (the database is small: this is after the runs).
fn all_keys(con: &mut redis::Connection) -> Res<BTreeMap<String, String>> {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(con)
        .map_err(|e| format!("KEYS: {e}"))?;
    let mut out = BTreeMap::new();
    for k in keys {
        let t: String = redis::cmd("TYPE")
            .arg(&k)
            .query(con)
            .map_err(|e| format!("TYPE {k}: {e}"))?;
        out.insert(k, t);
    }
    Ok(out)
}

/// RQ's own worker on [`QUEUE`], warm-stopped (SIGTERM) when dropped.
struct RqWorker {
    child: Child,
    version: String,
    log: PathBuf,
}

impl RqWorker {
    fn start(python: &Path, url: &str, admin: &mut redis::Connection) -> Res<RqWorker> {
        let jobs = repo_root().join("tests/jobs/rq");
        let version = Command::new(python)
            .args(["-c", "import rq; print(rq.__version__)"])
            .output()
            .map_err(|e| format!("{}: {e}", python.display()))?;
        let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
        let log = std::env::temp_dir().join(format!(
            "canaryd-bench-canary-worker.{}.log",
            std::process::id()
        ));
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(python)
            .current_dir(&jobs)
            .arg("worker.py")
            .args([url, WORKER, QUEUE])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("start the RQ worker: {e}"))?;
        let mut w = RqWorker {
            child,
            version,
            log,
        };
        // Registered in rq:workers once it listens on its queue.
        let key = format!("rq:worker:{WORKER}");
        let t0 = Instant::now();
        loop {
            let listed: bool = redis::cmd("SISMEMBER")
                .arg("rq:workers")
                .arg(&key)
                .query(admin)
                .map_err(|e| format!("SISMEMBER rq:workers: {e}"))?;
            if listed {
                return Ok(w);
            }
            if t0.elapsed() > Duration::from_secs(30) || w.child.try_wait().ok().flatten().is_some()
            {
                return Err(format!(
                    "the RQ worker did not register within 30 s:\n{}",
                    w.log_tail()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The worker's own count of jobs it finished.
    fn successful_jobs(&self, admin: &mut redis::Connection) -> Res<u64> {
        let key = format!("rq:worker:{WORKER}");
        let n: Option<u64> = redis::cmd("HGET")
            .arg(&key)
            .arg("successful_job_count")
            .query(admin)
            .map_err(|e| format!("HGET {key} successful_job_count: {e}"))?;
        Ok(n.unwrap_or(0))
    }

    /// The worker's CPU and its reaped work horses'.
    fn cpu(&self) -> Res<Duration> {
        process_cpu(self.pid(), true)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for RqWorker {
    fn drop(&mut self) {
        // Warm shutdown: RQ unregisters the worker; a kill after 5 s if it does not exit.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
