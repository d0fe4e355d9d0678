//! What the Redis benches (`bench_queue`, `bench_canary`) share besides the wire proxy: a private
//! redis-server, flushing only a Redis the bench owns, what Redis says about itself (`INFO`), and
//! CPU clocks of threads and processes. Included with `#[path = "shared/redis_admin.rs"] mod
//! redis_admin;`.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

pub type Res<T> = Result<T, String>;

/// A key the benches set in the Redis they use, so that they only ever flush their own data.
pub const OWNER_KEY: &str = "canaryd-bench:owner";

/// A redis-server started for this run, stopped when dropped.
pub struct OwnRedis {
    child: Child,
    dir: PathBuf,
    pub port: u16,
}

impl OwnRedis {
    /// `name` names its directory (`$TMPDIR/NAME.PID`).
    pub fn start(name: &str) -> Res<OwnRedis> {
        let dir = std::env::temp_dir().join(format!("{name}.{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let port = free_port()?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start redis-server (scripts/setup installs it): {e}"))?;
        let r = OwnRedis { child, dir, port };
        let url = format!("redis://127.0.0.1:{port}");
        let t0 = Instant::now();
        loop {
            let ok = redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok();
            if ok {
                return Ok(r);
            }
            if t0.elapsed() > Duration::from_secs(10) {
                return Err("redis-server did not answer within 10 s".into());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The Redis a bench runs against: `CANARYD_BENCH_REDIS` when the harness gives one, else a
/// redis-server started here (`name` names its directory; it stops when the `OwnRedis` drops),
/// with an admin connection to it.
pub fn bench_redis(name: &str) -> Res<(String, Option<OwnRedis>, redis::Connection)> {
    let (url, own) = match std::env::var("CANARYD_BENCH_REDIS") {
        Ok(u) if !u.is_empty() => (u, None),
        _ => {
            let r = OwnRedis::start(name)?;
            (format!("redis://127.0.0.1:{}", r.port), Some(r))
        }
    };
    let admin = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection())
        .map_err(|e| format!("connect to {url}: {e}"))?;
    Ok((url, own, admin))
}

/// Empties the database, refusing one that holds data this program did not write.
pub fn claim_and_flush(con: &mut redis::Connection) -> Res<()> {
    let size: u64 = redis::cmd("DBSIZE").query(con).map_err(|e| e.to_string())?;
    let ours: bool = redis::cmd("EXISTS")
        .arg(OWNER_KEY)
        .query(con)
        .map_err(|e| e.to_string())?;
    if size > 0 && !ours {
        return Err(format!(
            "the Redis holds {size} keys this bench did not write: CANARYD_BENCH_REDIS must be a private, empty redis-server"
        ));
    }
    redis::cmd("FLUSHDB")
        .query::<()>(con)
        .map_err(|e| e.to_string())?;
    redis::cmd("SET")
        .arg(OWNER_KEY)
        .arg(std::process::id())
        .query::<()>(con)
        .map_err(|e| e.to_string())
}

pub fn info(con: &mut redis::Connection, section: &str) -> Res<String> {
    redis::cmd("INFO")
        .arg(section)
        .query(con)
        .map_err(|e| format!("INFO {section}: {e}"))
}

pub fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// Redis's own CPU time (user + sys), from `INFO cpu`.
pub fn redis_cpu(con: &mut redis::Connection) -> Res<Duration> {
    let i = info(con, "cpu")?;
    let secs: f64 = ["used_cpu_user", "used_cpu_sys"]
        .iter()
        .filter_map(|f| info_field(&i, f)?.parse::<f64>().ok())
        .sum();
    Ok(Duration::from_secs_f64(secs))
}

/// Calls per command, from `INFO commandstats`.
pub struct CommandStats(pub BTreeMap<String, u64>);

impl CommandStats {
    pub fn read(con: &mut redis::Connection) -> Res<CommandStats> {
        let text = info(con, "commandstats")?;
        let calls = text
            .lines()
            .filter_map(|l| {
                let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
                Some((name.to_string(), calls.parse().ok()?))
            })
            .collect();
        Ok(CommandStats(calls))
    }

    /// Commands executed between `self` and `later`, by name, without the `INFO` that read
    /// `self` (counted once it returned; the one that read `later` is not in its own answer).
    pub fn executed_until(&self, later: &CommandStats) -> BTreeMap<String, u64> {
        let mut delta: BTreeMap<String, u64> = later
            .0
            .iter()
            .map(|(name, n)| {
                (
                    name.clone(),
                    n - self.0.get(name).copied().unwrap_or(0).min(*n),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        if let Some(n) = delta.get_mut("info") {
            *n -= 1;
            if *n == 0 {
                delta.remove("info");
            }
        }
        delta
    }
}

/// A count as an integer when it is one, else with two decimals.
pub fn fmt(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round())
    } else {
        format!("{v:.2}")
    }
}

/// CPU time this thread has run, from /proc/thread-self/schedstat (ns).
pub fn thread_cpu() -> Res<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat")
        .map_err(|e| format!("/proc/thread-self/schedstat: {e}"))?;
    let ns = stat
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or("/proc/thread-self/schedstat: unexpected content")?;
    Ok(Duration::from_nanos(ns))
}

/// utime + stime of a process, from /proc/PID/stat (USER_HZ is 100 on Linux); with
/// `reaped_children`, plus cutime + cstime: the CPU of the children it has waited for (a worker
/// that forks a process per job).
pub fn process_cpu(pid: u32, reaped_children: bool) -> Res<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    let after = stat.rsplit_once(')').map_or("", |(_, s)| s);
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // Fields after the command: state is [0]; utime (field 14 overall) is [11], stime [12],
    // cutime [13], cstime [14].
    let fields = if reaped_children { 11..15 } else { 11..13 };
    let ticks: u64 = fields.map(|i| f.get(i).copied().unwrap_or(0)).sum();
    Ok(Duration::from_millis(ticks * 10))
}

pub fn free_port() -> Res<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

pub fn socket_addr(url: &str) -> Res<SocketAddr> {
    let u = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    let host = u.host_str().ok_or_else(|| format!("{url}: no host"))?;
    let port = u.port().unwrap_or(6379);
    use std::net::ToSocketAddrs;
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: no address"))
}
