//! Driving a `JobSystem` from a synchronous test: a runtime, a connection for the reads under
//! test, a second connection for the test's own commands and for the server's command counts,
//! and polling. Use with `mod queue_support;` next to `mod services;` and `mod round_trips;`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use canaryd::probe::queue::{JobSystem, QueueError, QueueStats, Snapshot};
use redis::aio::MultiplexedConnection;
use tokio::runtime::Runtime;

use crate::round_trips::RoundTrips;

/// One job system reading one Redis, with its own connection (as the probe would have) and an
/// admin connection for everything else the test does.
pub struct Reader {
    rt: Runtime,
    conn: MultiplexedConnection,
    admin: MultiplexedConnection,
    system: Box<dyn JobSystem>,
}

impl Reader {
    pub fn new(url: &str, system: impl JobSystem) -> Reader {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let client = redis::Client::open(url).expect("redis url");
        let conn = rt
            .block_on(client.get_multiplexed_async_connection())
            .expect("connect to redis");
        let admin = rt
            .block_on(client.get_multiplexed_async_connection())
            .expect("connect to redis");
        Reader {
            rt,
            conn,
            admin,
            system: Box::new(system),
        }
    }

    /// Another system's reader on the same runtime and admin connection's server.
    pub fn read_with(&mut self, system: impl JobSystem) {
        self.system = Box::new(system);
    }

    pub fn try_collect(&mut self) -> Result<Snapshot, QueueError> {
        let Reader {
            rt, conn, system, ..
        } = self;
        rt.block_on(system.collect(conn))
    }

    /// One snapshot; panics with the error if the read fails.
    pub fn collect(&mut self) -> Snapshot {
        self.try_collect()
            .unwrap_or_else(|e| panic!("collect failed: {e}"))
    }

    /// A raw command on the admin connection (arguments may be any bytes).
    pub fn cmd(&mut self, args: &[&[u8]]) -> redis::Value {
        let mut cmd = redis::cmd(std::str::from_utf8(args[0]).expect("command name"));
        for a in &args[1..] {
            cmd.arg(*a);
        }
        let Reader { rt, admin, .. } = self;
        rt.block_on(cmd.query_async(admin))
            .unwrap_or_else(|e| panic!("redis {:?}: {e}", String::from_utf8_lossy(args[0])))
    }

    /// Calls per command so far (lowercase name), from `INFO commandstats`.
    fn calls(&mut self) -> HashMap<String, u64> {
        let Reader { rt, admin, .. } = self;
        let text: String = rt
            .block_on(redis::cmd("INFO").arg("commandstats").query_async(admin))
            .expect("INFO commandstats");
        text.lines()
            .filter_map(|l| {
                let (cmd, fields) = l.strip_prefix("cmdstat_")?.split_once(':')?;
                let n = fields.split(',').find_map(|f| f.strip_prefix("calls="))?;
                Some((cmd.to_string(), n.trim().parse().ok()?))
            })
            .collect()
    }

    /// Runs one collect and reports what it did (see [`Reader::measure_with`]).
    pub fn measure(&mut self, proxy: &RoundTrips) -> (Snapshot, Measured) {
        self.measure_with(proxy, Reader::collect)
    }

    /// Runs `f` and reports the round trips `proxy` saw (this reader must be connected through
    /// it) and the calls per command Redis counted meanwhile. Nothing else may send commands to
    /// this Redis meanwhile.
    pub fn measure_with<T>(
        &mut self,
        proxy: &RoundTrips,
        f: impl FnOnce(&mut Reader) -> T,
    ) -> (T, Measured) {
        let before = self.calls();
        proxy.reset();
        let out = f(self);
        let round_trips = proxy.count();
        let after = self.calls();
        let mut calls: HashMap<String, u64> = after
            .into_iter()
            .map(|(cmd, n)| {
                let n = n - before.get(&cmd).copied().unwrap_or(0);
                (cmd, n)
            })
            .collect();
        // The first INFO counts itself in the second one's answer.
        if let Some(n) = calls.get_mut("info") {
            *n -= 1;
        }
        calls.retain(|_, n| *n > 0);
        (out, Measured { round_trips, calls })
    }
}

/// What one measured run did.
#[derive(Debug)]
pub struct Measured {
    /// Request/response round trips on the wire.
    pub round_trips: u64,
    /// Calls per command (lowercase name).
    pub calls: HashMap<String, u64>,
}

impl Measured {
    pub fn calls(&self, cmd: &str) -> u64 {
        self.calls.get(cmd).copied().unwrap_or(0)
    }

    pub fn total_calls(&self) -> u64 {
        self.calls.values().sum()
    }
}

/// The named queue of a snapshot; panics listing the queues if it is missing.
pub fn queue<'a>(snapshot: &'a Snapshot, name: &str) -> &'a QueueStats {
    snapshot
        .queues
        .iter()
        .find(|q| q.name == name)
        .unwrap_or_else(|| {
            let names: Vec<&str> = snapshot.queues.iter().map(|q| q.name.as_str()).collect();
            panic!("no queue {name:?} in snapshot (queues: {names:?})")
        })
}

/// Now in Unix seconds.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// Polls `ready` every 50 ms until it is true; panics naming `what` after `timeout`.
pub fn poll(timeout: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        sleep(Duration::from_millis(50));
    }
}
