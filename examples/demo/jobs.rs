//! The demo's background jobs: a private redis-server, a producer that enqueues a job every
//! 500 ms, and a worker that takes them — written in Sidekiq's Redis layout, so canaryd's
//! `sidekiq` reader (`src/probe/queue/sidekiq.rs`) sees them as it would see a Rails app's jobs:
//!
//! | who | writes |
//! |---|---|
//! | producer | `SADD queues default`, `LPUSH queue:default <job JSON with enqueued_at>` |
//! | worker | `BRPOP queue:default`, then `INCR stat:processed` per job |
//! | worker heartbeat, every 2 s | `SADD processes <identity>`, hash `<identity>` with `info` (`concurrency` 1), `busy`, `beat`, `quiet`, `EXPIRE 60` |
//!
//! `/control?stall_worker=1` makes the worker stop taking jobs while its heartbeat goes on — a
//! hung worker, as in the outage where new Redis instrumentation broke every job: jobs pile up (`depth` and `oldest_age` grow),
//! `processed_rate` drops to 0, and `workers` still says 1.
//!
//! The redis-server runs on a free loopback port with its own temporary directory and no
//! persistence, and is killed when [`Jobs`] is dropped.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::app::Controls;

/// The queue the demo's jobs go to (Sidekiq's default).
pub const QUEUE: &str = "default";
/// Time between two enqueued jobs.
const ENQUEUE_EVERY: Duration = Duration::from_millis(500);
/// Time between two worker heartbeats (Sidekiq beats every 5 s; faster here so `workers` shows
/// at once).
const BEAT_EVERY: Duration = Duration::from_secs(2);
/// How long redis-server may take to answer PING after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// redis-server on PATH, if installed.
pub fn find_redis_server() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-server"))
        .find(|p| p.is_file())
}

/// The running queue: redis-server, the producer and the worker.
pub struct Jobs {
    /// `redis://127.0.0.1:PORT`, as canaryd's check reads it (through `DEMO_REDIS_URL`).
    pub url: String,
    tasks: Vec<JoinHandle<()>>,
    /// Declared last: dropped (killed) after the tasks are aborted.
    _server: RedisServer,
}

impl Jobs {
    /// Starts redis-server (`binary`), then the producer and the worker, which obeys
    /// `controls.stall_worker`.
    pub async fn start(binary: &Path, controls: Arc<Controls>) -> Result<Jobs, String> {
        let server = RedisServer::start(binary).await?;
        let url = server.url();
        let client = redis::Client::open(url.as_str()).map_err(|e| format!("{url}: {e}"))?;
        let tasks = vec![
            tokio::spawn(produce(client.clone())),
            tokio::spawn(work(client, controls)),
        ];
        Ok(Jobs {
            url,
            tasks,
            _server: server,
        })
    }
}

impl Drop for Jobs {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A redis-server child process, killed on drop.
struct RedisServer {
    child: Child,
    port: u16,
    /// Its working directory and log; removed on drop.
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts on a free port; tries another port when the first was taken in the meantime.
    async fn start(binary: &Path) -> Result<RedisServer, String> {
        let mut last_error = String::new();
        for _ in 0..3 {
            match RedisServer::start_once(binary).await {
                Ok(s) => return Ok(s),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    async fn start_once(binary: &Path) -> Result<RedisServer, String> {
        let dir = tempfile::Builder::new()
            .prefix("canaryd-demo-redis-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        let port = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port on 127.0.0.1: {e}"))?
            .port();
        let log_path = dir.path().join("redis.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let err_log = log
            .try_clone()
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let child = Command::new(binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let mut server = RedisServer {
            child,
            port,
            _dir: dir,
        };
        server.wait_ready(&log_path).await?;
        Ok(server)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn wait_ready(&mut self, log: &Path) -> Result<(), String> {
        let client = redis::Client::open(self.url()).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "redis-server exited ({status}):\n{}",
                    log_tail(log)
                ));
            }
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                let pong: redis::RedisResult<String> =
                    redis::cmd("PING").query_async(&mut conn).await;
                if pong.is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "redis-server did not answer within {READY_TIMEOUT:?}:\n{}",
                    log_tail(log)
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A connection whose replies may take longer than a blocking pop's own timeout.
async fn connect(client: &redis::Client) -> redis::RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(5)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// Logs a lost connection after a pause: on Ctrl-C the terminal stops redis-server together with
/// the demo, whose shutdown aborts the producer and the worker within that pause.
async fn report(who: &str, e: &redis::RedisError) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    tracing::warn!("demo {who}: {e}; retrying");
}

/// Enqueues a job every [`ENQUEUE_EVERY`], as `Sidekiq::Client#push` writes it.
async fn produce(client: redis::Client) {
    let mut tick = tokio::time::interval(ENQUEUE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut conn = None;
    for n in 1u64.. {
        tick.tick().await;
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match connect(&client).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    report("producer", &e).await;
                    continue;
                }
            },
        };
        let now = unix_now();
        let jid = uuid::Uuid::new_v4().simple().to_string();
        let job = json!({
            "class": "ReceiptMailerJob",
            "args": [n],
            "queue": QUEUE,
            "retry": true,
            "jid": &jid[..24],
            "created_at": now,
            "enqueued_at": now,
        });
        let pushed: redis::RedisResult<()> = redis::pipe()
            .cmd("SADD")
            .arg("queues")
            .arg(QUEUE)
            .ignore()
            .cmd("LPUSH")
            .arg(format!("queue:{QUEUE}"))
            .arg(job.to_string())
            .ignore()
            .query_async(c)
            .await;
        if let Err(e) = pushed {
            conn = None;
            report("producer", &e).await;
        }
    }
}

/// Takes jobs until the demo stops, reconnecting after an error.
async fn work(client: redis::Client, controls: Arc<Controls>) {
    let identity = format!("demo:{}:worker", std::process::id());
    loop {
        if let Err(e) = work_on(&client, &identity, &controls).await {
            report("worker", &e).await;
        }
    }
}

async fn work_on(
    client: &redis::Client,
    identity: &str,
    controls: &Controls,
) -> redis::RedisResult<()> {
    let mut conn = connect(client).await?;
    let mut next_beat = Instant::now();
    loop {
        let stalled = controls.stall_worker.load(Ordering::Relaxed);
        if Instant::now() >= next_beat {
            beat(&mut conn, identity).await?;
            next_beat = Instant::now() + BEAT_EVERY;
        }
        if stalled {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        // One second at most, so a stall or the next heartbeat is not held up.
        let job: Option<(String, String)> = redis::cmd("BRPOP")
            .arg(format!("queue:{QUEUE}"))
            .arg(1)
            .query_async(&mut conn)
            .await?;
        if let Some((_, job)) = job {
            if controls.fail_jobs.load(Ordering::Relaxed) {
                fail(&mut conn, &job).await?;
            } else {
                // The job itself (a receipt e-mail) is left to the imagination.
                redis::cmd("INCR")
                    .arg("stat:processed")
                    .query_async::<i64>(&mut conn)
                    .await?;
            }
        }
    }
}

/// What Sidekiq 6.4 does with a job that raised: counted as processed and failed; kept with
/// the error for a retry (`retry` sorted set, due later) while it has retries left (`retry:
/// true` is 25), or in the `dead` set when it has none (`retry: 0`); dropped with `retry:
/// false`.
async fn fail(conn: &mut MultiplexedConnection, job: &str) -> redis::RedisResult<()> {
    const ERROR: &str =
        "Redis::CommandError: instrumentation: wrapped call raised (the demo's fail_jobs)";
    let mut pipe = redis::pipe();
    pipe.cmd("INCR")
        .arg("stat:processed")
        .ignore()
        .cmd("INCR")
        .arg("stat:failed")
        .ignore();
    if let Ok(serde_json::Value::Object(mut msg)) = serde_json::from_str::<serde_json::Value>(job) {
        let retries = match msg.get("retry") {
            Some(serde_json::Value::Bool(false)) | None => None,
            Some(serde_json::Value::Number(n)) => Some(n.as_u64().unwrap_or(0)),
            Some(_) => Some(25),
        };
        let now = unix_now();
        msg.insert("error_class".into(), json!("Redis::CommandError"));
        msg.insert(
            "error_message".into(),
            json!(ERROR.trim_start_matches("Redis::CommandError: ")),
        );
        msg.insert("failed_at".into(), json!(now));
        msg.insert("retry_count".into(), json!(0));
        let payload = serde_json::Value::Object(msg).to_string();
        match retries {
            // Bounded as Sidekiq bounds its dead set (10,000 jobs); the demo's retry set keeps
            // the latest 1,000, as nothing here ever retries them.
            Some(0) => {
                pipe.cmd("ZADD").arg("dead").arg(now).arg(payload).ignore();
                pipe.cmd("ZREMRANGEBYRANK")
                    .arg("dead")
                    .arg(0)
                    .arg(-10_001)
                    .ignore();
            }
            Some(_) => {
                pipe.cmd("ZADD")
                    .arg("retry")
                    .arg(now + 30.0)
                    .arg(payload)
                    .ignore();
                pipe.cmd("ZREMRANGEBYRANK")
                    .arg("retry")
                    .arg(0)
                    .arg(-1_001)
                    .ignore();
            }
            None => {}
        }
    }
    pipe.query_async(conn).await
}

/// The process heartbeat Sidekiq's launcher writes, so the check counts this worker.
async fn beat(conn: &mut MultiplexedConnection, identity: &str) -> redis::RedisResult<()> {
    let info = json!({
        "hostname": "demo",
        "pid": std::process::id(),
        "identity": identity,
        "concurrency": 1,
        "queues": [QUEUE],
    });
    redis::pipe()
        .cmd("SADD")
        .arg("processes")
        .arg(identity)
        .ignore()
        .cmd("HSET")
        .arg(identity)
        .arg("info")
        .arg(info.to_string())
        .arg("busy")
        .arg(0)
        .arg("beat")
        .arg(unix_now())
        .arg("quiet")
        .arg("false")
        .ignore()
        .cmd("EXPIRE")
        .arg(identity)
        .arg(60)
        .ignore()
        .query_async(conn)
        .await
}
