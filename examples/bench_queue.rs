//! `cargo run --release --example bench_queue -- [--system rq|sidekiq] [--queues 10,100,1000]
//! [--exporter PATH|none] [--runs N] [--seconds S]`
//!
//! What one queue-check run costs the Redis it watches, beside redis_exporter watching the same
//! queue keys: Redis round trips, commands, bytes and connections per run, and the CPU and wall
//! time of a run, at 100 queues (and at each size of `--queues`).
//!
//! The Redis is `CANARYD_BENCH_REDIS` (a private, empty redis-server: it is flushed and filled
//! here; one holding other data is refused), else a redis-server started here on a free loopback
//! port. For each size it is filled with the job system's own layout (`--system`, see [`fill`]),
//! then measured in two passes:
//!
//! - **counting**, through a small TCP proxy in front of Redis ([`WireProxy`]): a round trip is
//!   counted each time a client sends after Redis last spoke on that connection (a pipeline is
//!   one), commands are the RESP requests the client wrote, connections the ones it opened.
//!   `INFO commandstats` deltas (less this program's own `INFO`) give the commands Redis
//!   executed, which also counts the commands a Lua script runs inside Redis.
//! - **timing**, straight to Redis: CPU per run (canaryd: the one runtime thread, from
//!   `/proc/thread-self/schedstat`; redis_exporter: its process, from `/proc/PID/stat`), wall time
//!   per run, and Redis's own CPU (`INFO cpu`) per run.
//!
//! canaryd's side is the probe the daemon builds (`config::load_checks_str` +
//! `daemon::build_probe`) on its long-lived shared connection, the first run (which connects)
//! excluded and reported on its own line. redis_exporter is started with `-check-single-keys`
//! naming the queue lists and scraped over HTTP; it dials Redis on every scrape.
//!
//! Output, one line per size (`_N` suffix except at 100 queues):
//! `queue_canaryd round_trips= commands= redis_commands= ... cpu_ms= wall_ms= redis_cpu_ms=` and
//! `queue_redis_exporter round_trips= commands= ...`. `scripts/bench queue` tabulates them.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use canaryd::probe::queue::ALL_QUEUES;
use canaryd::probe::{CheckResult, Probe, RunContext};

#[path = "shared/redis_admin.rs"]
mod redis_admin;
#[path = "shared/wire.rs"]
mod wire;

use redis_admin::{
    bench_redis, claim_and_flush, fmt, free_port, info, info_field, process_cpu, redis_cpu,
    socket_addr, thread_cpu, CommandStats, Res,
};
use wire::WireProxy;

/// The layout filled and read by default (`--system` overrides it; `scripts/bench` passes
/// `BENCH_QUEUE_SYSTEM`). RQ's was chosen because Sidekiq's reader was not on main yet when this
/// bench was written; both are filled and read here.
const DEFAULT_SYSTEM: &str = "rq";
/// Waiting jobs per queue (their number changes no command count; their age is read).
const JOBS_PER_QUEUE: usize = 3;
/// Where Debian's package puts redis_exporter (`scripts/setup` installs it).
const DEFAULT_EXPORTER: &str = "/usr/bin/prometheus-redis-exporter";

fn main() {
    if let Err(e) = run() {
        eprintln!("bench_queue: {e}");
        std::process::exit(1);
    }
}

/// Command-line options.
struct Options {
    /// Job system layout: `rq` or `sidekiq`.
    system: String,
    /// Queue counts measured; the headline is 100.
    sizes: Vec<usize>,
    /// redis_exporter binary, or `None` to skip the peer.
    exporter: Option<PathBuf>,
    /// Runs (scrapes) per counting pass; the counts are the same every run, a few suffice.
    count_runs: u64,
    /// Length of each timing pass.
    pass: Duration,
}

fn options() -> Res<Options> {
    let bench_secs: f64 = std::env::var("CANARYD_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let mut o = Options {
        system: DEFAULT_SYSTEM.into(),
        sizes: vec![10, 100, 1000],
        exporter: Some(PathBuf::from(DEFAULT_EXPORTER)),
        count_runs: 10,
        // Six timing passes (three sizes, two programs) in about the load-run length.
        pass: Duration::from_secs_f64((bench_secs / 5.0).clamp(0.5, 10.0)),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--system" => o.system = value()?,
            "--queues" => {
                o.sizes = value()?
                    .split(',')
                    .map(|s| s.trim().parse().map_err(|_| format!("--queues: {s:?}")))
                    .collect::<Res<_>>()?
            }
            "--exporter" => {
                let v = value()?;
                o.exporter = (v != "none").then(|| PathBuf::from(v));
            }
            "--runs" => o.count_runs = value()?.parse().map_err(|_| "--runs: a number")?,
            "--seconds" => {
                o.pass =
                    Duration::from_secs_f64(value()?.parse().map_err(|_| "--seconds: a number")?)
            }
            other => return Err(format!("unknown argument {other:?} (see the file's docs)")),
        }
    }
    if !matches!(o.system.as_str(), "rq" | "sidekiq") {
        return Err(format!(
            "--system {}: this bench fills rq or sidekiq layouts",
            o.system
        ));
    }
    Ok(o)
}

fn run() -> Res<()> {
    let opts = options()?;
    // A redis-server of our own unless the harness gave one.
    let (url, own, mut admin) = bench_redis("canaryd-bench-queue")?;
    let upstream = socket_addr(&url)?;
    let version = info_field(&info(&mut admin, "server")?, "redis_version").unwrap_or_default();
    println!(
        "redis-server {version} at {url}{}; layout {}, {JOBS_PER_QUEUE} waiting jobs per queue",
        if own.is_some() { " (started here)" } else { "" },
        opts.system
    );
    let exporter = match &opts.exporter {
        Some(p) if p.exists() => Some(p.clone()),
        Some(p) => {
            println!(
                "redis_exporter: {} not found (scripts/setup installs it): peer not measured",
                p.display()
            );
            None
        }
        None => None,
    };
    if let Some(p) = &exporter {
        println!("redis_exporter: {} {}", p.display(), exporter_version(p));
    }

    let proxy = WireProxy::start(upstream)?;
    let mut bench = Bench {
        proxy_url: format!("redis://{}", proxy.addr),
        url,
        proxy,
        admin,
        // One runtime thread: the probe, its connection's driver task and nothing else run on
        // this thread, so the thread's CPU time is the probe's.
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?,
        count_runs: opts.count_runs,
        pass: opts.pass,
        system: opts.system.clone(),
        last_read: None,
    };

    let mut results: BTreeMap<usize, (Counts, Option<Counts>)> = BTreeMap::new();
    for (i, &n) in opts.sizes.iter().enumerate() {
        claim_and_flush(&mut bench.admin)?;
        let queues: Vec<String> = (0..n).map(|i| format!("q{i:04}")).collect();
        let watched = fill(&mut bench.admin, &opts.system, &queues)?;
        let suffix = if n == 100 {
            String::new()
        } else {
            format!("_{n}")
        };

        if i == 0 {
            // The daemon's first run dials the shared connection: its cost, once.
            let c = bench.canaryd_counts(Some(&queues), 0)?;
            println!(
                "queue_canaryd_first_run round_trips={} commands={} connections={} queues={n} (dials the shared connection; later runs reuse it)",
                fmt(c.round_trips),
                fmt(c.commands),
                fmt(c.connections)
            );
        }
        let counts = bench.canaryd_counts(Some(&queues), 1)?;
        let read = bench.last_read.as_ref().map(describe).unwrap_or_default();
        let timing = bench.canaryd_timing(&queues)?;
        println!(
            "queue_canaryd{suffix} {} {} queues={n} runs={}+{} system={}",
            counts.line(),
            timing.line(),
            opts.count_runs,
            timing.runs,
            opts.system
        );
        if n == 100 {
            println!("{}", counts.by_command_line("canaryd"));
            println!("{read}");
            // Discovering the queues (no `queues:` in the check) instead of naming them.
            let c = bench.canaryd_counts(None, 1)?;
            println!(
                "queue_canaryd_discover {} queues={n} (queues discovered, not configured)",
                c.line()
            );
        }

        let mut peer = None;
        if let Some(bin) = &exporter {
            let counts = bench.exporter_counts(bin, &watched)?;
            let timing = bench.exporter_timing(bin, &watched)?;
            println!(
                "queue_redis_exporter{suffix} {} {} keys={} scrapes={}+{}",
                counts.line(),
                timing.line(),
                watched.len(),
                opts.count_runs,
                timing.runs
            );
            if n == 100 {
                println!("{}", counts.by_command_line("redis_exporter"));
            }
            peer = Some(counts);
        }
        results.insert(n, (counts, peer));
    }

    // What one more queue costs, between the smallest and the largest size.
    if let (Some((&lo, a)), Some((&hi, b))) = (results.first_key_value(), results.last_key_value())
    {
        if hi > lo {
            let per = |x: f64, y: f64| (y - x) / (hi - lo) as f64;
            let mut line = format!(
                "queue_cost_per_added_queue canaryd_round_trips={} canaryd_commands={}",
                fmt(per(a.0.round_trips, b.0.round_trips)),
                fmt(per(a.0.commands, b.0.commands)),
            );
            if let (Some(pa), Some(pb)) = (&a.1, &b.1) {
                line += &format!(
                    " redis_exporter_round_trips={} redis_exporter_commands={}",
                    fmt(per(pa.round_trips, pb.round_trips)),
                    fmt(per(pa.commands, pb.commands)),
                );
            }
            println!("{line} (from {lo} to {hi} queues)");
        }
    }
    drop(bench);
    drop(own);
    Ok(())
}

/// What every pass needs: the Redis (straight and through the proxy), a connection of our own
/// to ask it about itself, and the runtime the probe runs on.
struct Bench {
    /// The Redis itself, for timing passes.
    url: String,
    /// The same Redis through [`WireProxy`], for counting passes.
    proxy_url: String,
    proxy: WireProxy,
    /// Fills Redis and reads `INFO`; never through the proxy.
    admin: redis::Connection,
    rt: tokio::runtime::Runtime,
    count_runs: u64,
    pass: Duration,
    system: String,
    /// The last counted run's result.
    last_read: Option<CheckResult>,
}

impl Bench {
    /// Runs (through the proxy) of a check over `queues` (`None`: discovered), on a connection
    /// of its own: `count_runs` runs after one uncounted run, or with `warm_up` 0 the first run
    /// alone, which dials.
    fn canaryd_counts(&mut self, queues: Option<&[String]>, warm_up: u32) -> Res<Counts> {
        let n = self.queue_count()?;
        let probe = build_probe(&check_yaml(&self.system, &self.proxy_url, queues))?;
        for _ in 0..warm_up {
            self.rt.block_on(run_ok(&*probe, n))?;
        }
        let runs = if warm_up == 0 { 1 } else { self.count_runs };
        let before = CommandStats::read(&mut self.admin)?;
        self.proxy.reset();
        for _ in 0..runs {
            self.last_read = Some(self.rt.block_on(run_ok(&*probe, n))?);
        }
        Counts::measure(&self.proxy, &before, &mut self.admin, runs)
    }

    /// CPU and wall time of runs straight to Redis, for one timing pass.
    fn canaryd_timing(&mut self, queues: &[String]) -> Res<Timing> {
        let n = queues.len();
        let probe = build_probe(&check_yaml(&self.system, &self.url, Some(queues)))?;
        self.rt.block_on(run_ok(&*probe, n))?;
        let redis0 = redis_cpu(&mut self.admin)?;
        let cpu0 = thread_cpu()?;
        let t0 = Instant::now();
        let mut runs = 0u64;
        while runs < 3 || t0.elapsed() < self.pass {
            self.rt.block_on(run_ok(&*probe, n))?;
            runs += 1;
        }
        let wall = t0.elapsed();
        let cpu = thread_cpu()? - cpu0;
        let redis = redis_cpu(&mut self.admin)? - redis0;
        Ok(Timing::new(runs, wall, cpu, redis))
    }

    /// Scrapes of redis_exporter reaching Redis through the proxy.
    fn exporter_counts(&mut self, bin: &Path, watched: &[String]) -> Res<Counts> {
        let ex = Exporter::start(bin, &self.proxy_url, watched)?;
        ex.scrape_checked(watched.len())?;
        let before = CommandStats::read(&mut self.admin)?;
        self.proxy.reset();
        for _ in 0..self.count_runs {
            ex.scrape()?;
        }
        Counts::measure(&self.proxy, &before, &mut self.admin, self.count_runs)
    }

    /// redis_exporter's process CPU and wall time per scrape, straight to Redis.
    fn exporter_timing(&mut self, bin: &Path, watched: &[String]) -> Res<Timing> {
        let ex = Exporter::start(bin, &self.url, watched)?;
        ex.scrape_checked(watched.len())?;
        let redis0 = redis_cpu(&mut self.admin)?;
        let cpu0 = ex.cpu()?;
        let t0 = Instant::now();
        let mut runs = 0u64;
        while runs < 3 || t0.elapsed() < self.pass {
            ex.scrape()?;
            runs += 1;
        }
        let wall = t0.elapsed();
        let cpu = ex.cpu()? - cpu0;
        let redis = redis_cpu(&mut self.admin)? - redis0;
        Ok(Timing::new(runs, wall, cpu, redis))
    }

    /// How many queues the layout in Redis has (what a run must read).
    fn queue_count(&mut self) -> Res<usize> {
        let set = if self.system == "rq" {
            "rq:queues"
        } else {
            "queues"
        };
        redis::cmd("SCARD")
            .arg(set)
            .query(&mut self.admin)
            .map_err(|e| format!("SCARD {set}: {e}"))
    }
}

// ---------------------------------------------------------------------------------------------
// canaryd's side

fn check_yaml(system: &str, url: &str, queues: Option<&[String]>) -> String {
    let queues = queues
        .map(|q| format!("      queues: [{}]\n", q.join(", ")))
        .unwrap_or_default();
    format!(
        "checks:\n  - name: bench-queue\n    interval: 30s\n    timeout: 10s\n    queue:\n      system: {system}\n      redis: \"{url}\"\n{queues}"
    )
}

fn build_probe(yaml: &str) -> Res<Arc<dyn Probe>> {
    let check = canaryd::probe::check::load_checks_str(Path::new("bench.yaml"), yaml)
        .map_err(|e| format!("check definition: {e}"))?
        .remove(0);
    canaryd::daemon::build_probe(&check)
}

/// One run; fails unless it succeeded and read every queue.
async fn run_ok(probe: &dyn Probe, queues: usize) -> Res<CheckResult> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let r = probe.run(RunContext { deadline }).await;
    if !r.success {
        return Err(format!(
            "queue check failed: {:?}: {}",
            r.reason,
            r.message.unwrap_or_default()
        ));
    }
    let read = r
        .detail::<canaryd::probe::queue::QueueReport>()
        .map_or(0, |q| {
            q.snapshot
                .queues
                .iter()
                .filter(|q| q.name != ALL_QUEUES)
                .count()
        });
    if read != queues {
        return Err(format!("queue check read {read} queues, not {queues}"));
    }
    Ok(r)
}

/// `(canaryd read: depth 300, oldest_age 14520, ...)`: what a run found, to show that the
/// layout was read in full (ages, workers), not only counted.
fn describe(r: &CheckResult) -> String {
    let parts: Vec<String> = r
        .observations
        .iter()
        .filter(|(k, _)| !k.starts_with("queue."))
        .map(|(k, v)| format!("{k} {}", fmt(v.round())))
        .collect();
    format!("  (canaryd read: {})", parts.join(", "))
}

// ---------------------------------------------------------------------------------------------
// The Redis: our own server, flushing only what we own, the job systems' layouts

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Writes the job system's layout for `queues` and returns the queue lists' keys (what
/// redis_exporter is told to watch).
///
/// - rq: `rq:queues`, `rq:queue:<q>` lists of job ids, `rq:job:<id>` hashes with `enqueued_at`,
///   a few `rq:wip:`/`rq:scheduled:`/`rq:failed:` registries, two workers.
/// - sidekiq: `queues`, `queue:<q>` lists of JSON jobs with `enqueued_at`, `stat:processed`,
///   `stat:failed`, `retry`/`schedule`/`dead`, two processes.
fn fill(con: &mut redis::Connection, system: &str, queues: &[String]) -> Res<Vec<String>> {
    let now = now_unix();
    let mut p = redis::pipe();
    let mut watched = Vec::with_capacity(queues.len());
    for (i, q) in queues.iter().enumerate() {
        // Oldest job a few minutes to a few hours old, different per queue.
        let oldest = now - 120.0 - (i % 240) as f64 * 60.0;
        match system {
            "rq" => {
                let list = format!("rq:queue:{q}");
                p.cmd("SADD").arg("rq:queues").arg(&list).ignore();
                for j in 0..JOBS_PER_QUEUE {
                    let id = uuid::Uuid::new_v4().to_string();
                    let at = rq_time(oldest + j as f64 * 10.0);
                    p.cmd("HSET")
                        .arg(format!("rq:job:{id}"))
                        .arg(
                            &[
                                ("created_at", at.as_str()),
                                ("enqueued_at", at.as_str()),
                                ("status", "queued"),
                                ("origin", q.as_str()),
                                ("description", "app.tasks.send_invoice(4211)"),
                                ("timeout", "180"),
                                ("result_ttl", "500"),
                            ][..],
                        )
                        .ignore();
                    p.cmd("RPUSH").arg(&list).arg(&id).ignore();
                }
                if i % 10 == 0 {
                    for (registry, score) in [
                        ("wip", now + 180.0),
                        ("scheduled", now + 3600.0),
                        ("failed", now + 3e7),
                    ] {
                        p.cmd("ZADD")
                            .arg(format!("rq:{registry}:{q}"))
                            .arg(score)
                            .arg(uuid::Uuid::new_v4().to_string())
                            .ignore();
                    }
                }
                watched.push(list);
            }
            _ => {
                let list = format!("queue:{q}");
                p.cmd("SADD").arg("queues").arg(q).ignore();
                // Sidekiq LPUSHes and workers BRPOP: the oldest job is at the tail.
                for j in 0..JOBS_PER_QUEUE {
                    let at = oldest + j as f64 * 10.0;
                    let job = serde_json::json!({
                        "retry": true, "queue": q, "class": "InvoiceJob", "args": [4211],
                        "jid": uuid::Uuid::new_v4().simple().to_string()[..24],
                        "created_at": at, "enqueued_at": at,
                    });
                    p.cmd("LPUSH").arg(&list).arg(job.to_string()).ignore();
                }
                watched.push(list);
            }
        }
    }
    match system {
        "rq" => {
            for (w, state) in [("bench-a", "busy"), ("bench-b", "idle")] {
                let key = format!("rq:worker:{w}");
                p.cmd("SADD").arg("rq:workers").arg(&key).ignore();
                p.cmd("HSET")
                    .arg(&key)
                    .arg(
                        &[
                            ("birth", rq_time(now - 86_400.0)),
                            ("last_heartbeat", rq_time(now - 5.0)),
                            ("state", state.to_string()),
                            ("successful_job_count", "1042".to_string()),
                            ("failed_job_count", "7".to_string()),
                        ][..],
                    )
                    .ignore();
            }
        }
        _ => {
            p.cmd("SET").arg("stat:processed").arg(104_211).ignore();
            p.cmd("SET").arg("stat:failed").arg(312).ignore();
            for (set, score) in [
                ("retry", now + 60.0),
                ("schedule", now + 3600.0),
                ("dead", now - 3600.0),
            ] {
                let job = serde_json::json!({"queue": "q0000", "class": "InvoiceJob", "args": [1],
                    "jid": uuid::Uuid::new_v4().simple().to_string()[..24], "enqueued_at": now - 7200.0});
                p.cmd("ZADD")
                    .arg(set)
                    .arg(score)
                    .arg(job.to_string())
                    .ignore();
            }
            for (identity, busy) in [("bench-host:1001:a1b2c3", 1), ("bench-host:1002:d4e5f6", 0)] {
                let info = serde_json::json!({"hostname": "bench-host", "started_at": now - 86_400.0,
                    "pid": 1001, "tag": "app", "concurrency": 5, "queues": queues, "labels": [],
                    "identity": identity});
                p.cmd("SADD").arg("processes").arg(identity).ignore();
                p.cmd("HSET")
                    .arg(identity)
                    .arg(
                        &[
                            ("info", info.to_string()),
                            ("busy", busy.to_string()),
                            ("beat", format!("{:.3}", now - 2.0)),
                            ("quiet", "false".to_string()),
                        ][..],
                    )
                    .ignore();
            }
        }
    }
    p.query::<()>(con).map_err(|e| format!("fill: {e}"))?;
    Ok(watched)
}

/// RQ's `utcformat`: `%Y-%m-%dT%H:%M:%S.%fZ`.
fn rq_time(unix: f64) -> String {
    let secs = unix.floor() as i64;
    let micros = ((unix - secs as f64) * 1e6) as u32;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

// ---------------------------------------------------------------------------------------------
// Figures

/// Per-run averages of one counting pass.
#[derive(Clone)]
struct Counts {
    /// Commands Redis executed, by name (per run).
    by_command: BTreeMap<String, f64>,
    round_trips: f64,
    commands: f64,
    redis_commands: f64,
    connections: f64,
    bytes_out: f64,
    bytes_in: f64,
}

impl Counts {
    fn measure(
        proxy: &WireProxy,
        before: &CommandStats,
        admin: &mut redis::Connection,
        runs: u64,
    ) -> Res<Counts> {
        let w = proxy.snapshot();
        let after = CommandStats::read(admin)?;
        let per = |v: u64| v as f64 / runs.max(1) as f64;
        let executed = before.executed_until(&after);
        Ok(Counts {
            round_trips: per(w.round_trips),
            commands: per(w.commands),
            redis_commands: per(executed.values().sum()),
            by_command: executed.into_iter().map(|(k, v)| (k, per(v))).collect(),
            connections: per(w.connections),
            bytes_out: per(w.bytes_out),
            bytes_in: per(w.bytes_in),
        })
    }

    /// `(WHO per run: llen 200, zcard 300, ...)`, as Redis counted them.
    fn by_command_line(&self, who: &str) -> String {
        let mut parts: Vec<(&String, &f64)> = self.by_command.iter().collect();
        parts.sort_by(|a, b| b.1.total_cmp(a.1).then(a.0.cmp(b.0)));
        let parts: Vec<String> = parts
            .iter()
            .map(|(k, v)| format!("{k} {}", fmt(**v)))
            .collect();
        format!(
            "  ({who}, commands Redis ran per run: {})",
            parts.join(", ")
        )
    }

    fn line(&self) -> String {
        format!(
            "round_trips={} commands={} redis_commands={} connections={} bytes_out={} bytes_in={}",
            fmt(self.round_trips),
            fmt(self.commands),
            fmt(self.redis_commands),
            fmt(self.connections),
            self.bytes_out.round(),
            self.bytes_in.round()
        )
    }
}

/// Per-run averages of one timing pass.
struct Timing {
    runs: u64,
    cpu_ms: f64,
    wall_ms: f64,
    redis_cpu_ms: f64,
}

impl Timing {
    fn new(runs: u64, wall: Duration, cpu: Duration, redis: Duration) -> Timing {
        let per = |d: Duration| d.as_secs_f64() * 1e3 / runs.max(1) as f64;
        Timing {
            runs,
            cpu_ms: per(cpu),
            wall_ms: per(wall),
            redis_cpu_ms: per(redis),
        }
    }

    fn line(&self) -> String {
        format!(
            "cpu_ms={:.3} wall_ms={:.3} redis_cpu_ms={:.3}",
            self.cpu_ms, self.wall_ms, self.redis_cpu_ms
        )
    }
}

// ---------------------------------------------------------------------------------------------
// redis_exporter

/// A redis_exporter process watching the queue lists, stopped when dropped.
struct Exporter {
    child: Child,
    port: u16,
}

fn exporter_version(bin: &Path) -> String {
    let out = Command::new(bin).arg("-version").output();
    let text = out
        .map(|o| {
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
        })
        .unwrap_or_default();
    // `... msg="Redis Metrics Exporter 1.45.0-2+b4    build date: ..."`
    text.split("Exporter ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or("(version unknown)")
        .to_string()
}

impl Exporter {
    fn start(bin: &Path, redis_url: &str, keys: &[String]) -> Res<Exporter> {
        let port = free_port()?;
        let child = Command::new(bin)
            .arg(format!("-redis.addr={redis_url}"))
            .arg(format!("-web.listen-address=127.0.0.1:{port}"))
            .arg(format!("-check-single-keys={}", keys.join(",")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start {}: {e}", bin.display()))?;
        let ex = Exporter { child, port };
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if t0.elapsed() > Duration::from_secs(10) {
                return Err("redis_exporter did not listen within 10 s".into());
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(ex)
    }

    /// One scrape of /metrics on a fresh connection; returns the body. HTTP/1.0, so that the
    /// body comes whole rather than chunked.
    fn scrape(&self) -> Res<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        write!(
            s,
            "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n\r\n",
            self.port
        )
        .map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or("redis_exporter: no HTTP answer")?;
        if !(head.starts_with("HTTP/1.") && head.get(8..13) == Some(" 200 ")) {
            return Err(format!(
                "redis_exporter answered {}",
                head.lines().next().unwrap_or("")
            ));
        }
        Ok(body.to_string())
    }

    /// A scrape that reached Redis and reported every watched key.
    fn scrape_checked(&self, keys: usize) -> Res<()> {
        let body = self.scrape()?;
        let sizes = body
            .lines()
            .filter(|l| l.starts_with("redis_key_size{"))
            .count();
        if !body.lines().any(|l| l == "redis_up 1") || sizes != keys {
            return Err(format!(
                "redis_exporter scrape: redis_up 1 and {keys} redis_key_size series expected, found {sizes}"
            ));
        }
        Ok(())
    }

    fn cpu(&self) -> Res<Duration> {
        process_cpu(self.child.id(), false)
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
