//! The state store under real faults the tests create: a small tmpfs that fills up while an
//! alert fires, a read-only bind mount at start, and a second daemon on the same `state_dir`
//! while pings hammer the first. Mounting needs root (CAP_SYS_ADMIN); without it the mount
//! tests are skipped with a message, except under CI=true, where they fail.

mod receivers;
mod services;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use receivers::{Mode, PagerDuty, Webhook};
use services::{canaryd_run, free_port, http_get, http_post, secs, under_ci, Canaryd, Worker};

const ROUTING_KEY: &str = "R0UT1NGKEY0123456789abcdefABCDEF";

// ---------------------------------------------------------------------------------------------
// Mounts
// ---------------------------------------------------------------------------------------------

/// A mount this test made; unmounted (lazily, so a leftover open file cannot keep it) on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount(args: &[&str], target: &Path) -> Result<Mount, String> {
    let out = Command::new("mount")
        .args(args)
        .arg(target)
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    let mounted = Mount(target.to_path_buf());
    if out.status.success() {
        Ok(mounted)
    } else {
        // Nothing was mounted: no unmount.
        std::mem::forget(mounted);
        Err(format!(
            "mount {args:?} {} failed: {}",
            target.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Mounts or, when mounting is impossible here, skips the test (fails under CI=true).
fn mounted(result: Result<Mount, String>) -> Option<Mount> {
    match result {
        Ok(m) => Some(m),
        Err(e) if under_ci() => panic!("{e} (CI=true: store fault tests need root to mount)"),
        Err(e) => {
            eprintln!("skipping: {e} (store fault tests need root to mount)");
            None
        }
    }
}

/// A tmpfs of `size` (e.g. "4m") at `dir` (created).
fn tmpfs(dir: &Path, size: &str) -> Option<Mount> {
    std::fs::create_dir_all(dir).unwrap();
    mounted(mount(
        &[
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0755"),
            "tmpfs",
        ],
        dir,
    ))
}

/// `path` (a directory or a file) made read-only by a bind mount over itself, remounted
/// read-only (one mount: the remount changes the bind mount's flags).
fn read_only(path: &Path) -> Option<Mount> {
    let bind = mounted(mount(&["--bind", &path.display().to_string()], path))?;
    let remount = mounted(mount(&["-o", "remount,ro,bind"], path))?;
    std::mem::forget(remount);
    Some(bind)
}

/// Fills the file system of `dir` with a file until a write fails (ENOSPC); returns it.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let mut small = false;
    loop {
        let buf = if small { &chunk[..4096] } else { &chunk[..] };
        if let Err(e) = f.write_all(buf) {
            assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC: {e}");
            if small {
                break;
            }
            small = true;
        }
    }
    let _ = f.sync_all();
    path
}

// ---------------------------------------------------------------------------------------------
// A TCP target the test breaks and mends
// ---------------------------------------------------------------------------------------------

/// A port that accepts connections (a passing `tcp` check) until [`Port::close`].
struct Port {
    addr: String,
    open: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Port {
    fn new() -> Port {
        let mut p = Port {
            addr: format!("127.0.0.1:{}", free_port()),
            open: None,
        };
        p.reopen();
        p
    }

    fn reopen(&mut self) {
        let listener = TcpListener::bind(&self.addr).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                drop(conn);
            }
        });
        self.open = Some((stop, thread));
    }

    fn close(&mut self) {
        if let Some((stop, thread)) = self.open.take() {
            stop.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect(&self.addr);
            thread.join().unwrap();
        }
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        self.close();
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn wait(what: &str, timeout: Duration, d: Option<&Canaryd>, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(
            t.elapsed() < timeout,
            "timed out waiting for {what}\n--- canaryd log ---\n{}",
            d.map(|d| d.log_tail(40)).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn get(d: &Canaryd, path: &str) -> (u16, String) {
    let r = http_get(&d.url(path)).unwrap();
    (r.status, r.text())
}

fn ping(d: &Canaryd, check: &str) -> u16 {
    http_post(&d.url(&format!("/ping/{check}")), "text/plain", b"done")
        .map(|r| r.status)
        .unwrap_or(0)
}

/// The value of a sample line `name{labels}` in the text format.
fn metric(d: &Canaryd, series: &str) -> Option<f64> {
    get(d, "/metrics")
        .1
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// canaryd.yaml + checks.yaml in `dir`: a `db` tcp check on `port` with a critical alert paged
/// to `pd`, a `nightly` heartbeat check, and the watchdog on `watchdog`.
fn write_config(dir: &Path, listen: &str, port: &Port, pd: &PagerDuty, watchdog: &Webhook) {
    std::fs::write(
        dir.join("canaryd.yaml"),
        format!(
            "listen: {listen}\nstate_dir: state\ncheck_files: [checks.yaml]\n\
             receivers:\n  - name: oncall\n    pagerduty: {{routing_key: \"{ROUTING_KEY}\", url: \"{}\"}}\n\
             routes:\n  - receivers: [oncall]\n\
             watchdog: {{url: \"{}\", every: 1s}}\n",
            pd.url(),
            watchdog.url()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("checks.yaml"),
        format!(
            "checks:\n  - name: db\n    interval: 500ms\n    timeout: 400ms\n    tcp: {{target: \"{}\"}}\n    alerts:\n      - {{name: DbDown, when: failed, severity: critical}}\n  - name: nightly\n    heartbeat: {{every: 1h}}\n",
            port.addr
        ),
    )
    .unwrap();
}

/// What the full-disk tests share: a 4 MB tmpfs as `state_dir`, a PagerDuty receiver, a
/// watchdog webhook, a TCP port the check reaches, and the daemon started on them (`None` when
/// mounting is impossible outside CI). Bound in this order, they drop in the reverse one: the
/// daemon stops before the tmpfs is unmounted.
#[allow(clippy::type_complexity)]
fn full_disk_rig() -> Option<(
    tempfile::TempDir,
    PathBuf,
    Mount,
    PagerDuty,
    Webhook,
    Port,
    String,
    Canaryd,
)> {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let mount = tmpfs(&state, "4m")?;
    let pd = PagerDuty::start();
    let watchdog = Webhook::start();
    let port = Port::new();
    let listen = format!("127.0.0.1:{}", free_port());
    write_config(tmp.path(), &listen, &port, &pd, &watchdog);
    let d = start(tmp.path(), &listen);
    Some((tmp, state, mount, pd, watchdog, port, listen, d))
}

fn start(dir: &Path, listen: &str) -> Canaryd {
    Canaryd::start(canaryd_run(&dir.join("canaryd.yaml")), listen).unwrap_or_else(|e| panic!("{e}"))
}

fn triggers(pd: &PagerDuty) -> usize {
    pd.events()
        .iter()
        .filter(|e| e["event_action"] == "trigger")
        .count()
}

fn resolves(pd: &PagerDuty) -> usize {
    pd.events()
        .iter()
        .filter(|e| e["event_action"] == "resolve")
        .count()
}

// ---------------------------------------------------------------------------------------------
// A full disk while an alert fires
// ---------------------------------------------------------------------------------------------

/// The disk fills, then the alert fires: the page still goes out (once), `/-/ready` says why it
/// is 503, the watchdog stops vouching and a ping answers 500. Space comes back: everything is
/// saved, ready again, nothing sent twice, and a restart neither pages again nor forgets the
/// alert (its resolve arrives once).
#[test]
fn a_full_disk_loses_no_page_and_says_so_until_space_returns() {
    let Some((tmp, state, _mount, pd, watchdog, mut port, listen, mut d)) = full_disk_rig() else {
        return;
    };

    wait("a passing run", secs(10), Some(&d), || {
        metric(&d, "canary_check_success{check=\"db\"}") == Some(1.0)
    });
    assert_eq!(get(&d, "/-/ready"), (200, "Ready\n".to_string()));
    wait("a watchdog call", secs(10), Some(&d), || {
        !watchdog.requests().is_empty()
    });
    assert_eq!(ping(&d, "nightly"), 200);

    let filler = fill(&state);
    port.close();
    wait("the page", secs(15), Some(&d), || triggers(&pd) >= 1);
    let (status, body) = get(&d, "/-/ready");
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("Not ready: the state store "), "{body}");
    assert!(
        body.contains("cannot be written (database or disk is full)"),
        "{body}"
    );
    assert!(
        body.contains("1 alert changes are kept in memory"),
        "{body}"
    );
    assert!(metric(&d, "canaryd_store_errors_total{op=\"alerts\"}").unwrap() >= 1.0);
    // Sent, so no longer waiting in memory (the gauge follows the receiver's answer).
    wait("the page out of memory", secs(5), Some(&d), || {
        metric(&d, "canaryd_store_unsaved_notifications") == Some(0.0)
    });
    assert_eq!(ping(&d, "nightly"), 500, "a ping the store refused");
    assert!(metric(&d, "canaryd_store_errors_total{op=\"heartbeat\"}").unwrap() >= 1.0);
    let alerts = get(&d, "/api/v1/alerts").1;
    assert!(alerts.contains("\"state\":\"firing\""), "{alerts}");

    // The watchdog goes quiet (one call may have been under way when the page went out).
    std::thread::sleep(Duration::from_millis(1500));
    let calls = watchdog.requests().len();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        watchdog.requests().len(),
        calls,
        "the watchdog kept vouching"
    );
    assert_eq!(get(&d, "/-/ready").0, 503);

    std::fs::remove_file(&filler).unwrap();
    // The refused ping counted in memory; its row is saved again once space returns.
    wait("ready again", secs(20), Some(&d), || {
        get(&d, "/-/ready").0 == 200
    });
    wait("the watchdog again", secs(10), Some(&d), || {
        watchdog.requests().len() > calls
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!((triggers(&pd), resolves(&pd)), (1, 0), "{:?}", pd.events());
    assert_eq!(
        metric(
            &d,
            "canaryd_notifications_total{receiver=\"oncall\",result=\"sent\"}"
        ),
        Some(1.0)
    );

    // The firing alert was saved: a restart restores it without paging again.
    d.stop(secs(10));
    drop(d);
    let d = start(tmp.path(), &listen);
    let check = get(&d, "/api/v1/checks/nightly").1;
    assert!(check.contains("\"ping_count\":2"), "{check}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!((triggers(&pd), resolves(&pd)), (1, 0), "{}", d.log_tail(30));
    port.reopen();
    wait("the resolve", secs(15), Some(&d), || resolves(&pd) >= 1);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!((triggers(&pd), resolves(&pd)), (1, 1), "{:?}", pd.events());
    let incident = pd.incidents();
    assert_eq!(incident.len(), 1);
    assert!(!incident[0].open);
    assert_eq!(get(&d, "/-/ready").0, 200);
}

/// A ping refused on a full disk (500) makes `/-/ready` 503 and silences the watchdog until
/// its row is saved again, which happens by itself once space returns.
#[test]
fn a_ping_refused_on_a_full_disk_is_saved_when_space_returns() {
    let Some((_tmp, state, _mount, _pd, watchdog, _port, _listen, mut d)) = full_disk_rig() else {
        return;
    };
    assert_eq!(ping(&d, "nightly"), 200);
    let filler = fill(&state);
    assert_eq!(ping(&d, "nightly"), 500);
    assert_eq!(ping(&d, "nightly"), 500);
    let (status, body) = get(&d, "/-/ready");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("the heartbeat state of 1 checks is kept in memory"),
        "{body}"
    );
    assert_eq!(
        metric(&d, "canaryd_store_errors_total{op=\"heartbeat\"}"),
        Some(2.0)
    );
    std::thread::sleep(Duration::from_millis(1500));
    let calls = watchdog.requests().len();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        watchdog.requests().len(),
        calls,
        "the watchdog kept vouching"
    );

    std::fs::remove_file(&filler).unwrap();
    wait("ready again", secs(10), Some(&d), || {
        get(&d, "/-/ready").0 == 200
    });
    d.stop(secs(10));
    drop(d);
    let store = canaryd::store::Store::open(&state).unwrap();
    let rows = canaryd::probe::heartbeat::rows::load_heartbeats(&store).unwrap();
    assert_eq!(
        rows.iter()
            .find(|r| r.check == "nightly")
            .unwrap()
            .ping_count,
        3
    );
}

/// The receiver is down as well while the disk is full: the page waits in memory, is saved into
/// the outbox when space returns, and goes out once the receiver is back.
#[test]
fn a_page_that_could_not_be_sent_nor_saved_is_saved_then_sent_once() {
    let Some((_tmp, state, _mount, pd, _watchdog, mut port, _listen, d)) = full_disk_rig() else {
        return;
    };
    wait("a passing run", secs(10), Some(&d), || {
        metric(&d, "canary_check_success{check=\"db\"}") == Some(1.0)
    });

    pd.set_mode(Mode::Status(503));
    let filler = fill(&state);
    port.close();
    wait("a failed attempt", secs(15), Some(&d), || {
        pd.requests() >= 1
    });
    assert_eq!(metric(&d, "canaryd_store_unsaved_notifications"), Some(1.0));
    let body = get(&d, "/-/ready").1;
    assert!(
        body.contains("1 notifications and 1 alert changes are kept in memory"),
        "{body}"
    );

    std::fs::remove_file(&filler).unwrap();
    wait("ready again", secs(20), Some(&d), || {
        get(&d, "/-/ready").0 == 200
    });
    wait("the gauge", secs(5), Some(&d), || {
        metric(&d, "canaryd_store_unsaved_notifications") == Some(0.0)
    });
    wait("the outbox length", secs(10), Some(&d), || {
        metric(&d, "canaryd_notification_queue_length{receiver=\"oncall\"}") == Some(1.0)
    });
    assert!(pd.events().is_empty());
    pd.set_mode(Mode::Accept);
    wait("the page", secs(90), Some(&d), || triggers(&pd) >= 1);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(triggers(&pd), 1, "{:?}", pd.events());
}

/// A page saved in the outbox before the disk filled is accepted while it is full: its row
/// cannot be deleted, yet it is not sent again (not every 5 s, not after space returns, not after
/// a restart).
#[test]
fn a_page_delivered_while_the_disk_is_full_is_not_sent_again() {
    let Some((tmp, state, _mount, pd, _watchdog, mut port, listen, mut d)) = full_disk_rig() else {
        return;
    };
    wait("a passing run", secs(10), Some(&d), || {
        metric(&d, "canary_check_success{check=\"db\"}") == Some(1.0)
    });

    pd.set_mode(Mode::Status(503));
    port.close();
    wait("a failed attempt", secs(15), Some(&d), || {
        pd.requests() >= 1
    });
    assert_eq!(
        get(&d, "/-/ready").0,
        200,
        "the page is saved in the outbox"
    );
    let filler = fill(&state);
    pd.set_mode(Mode::Accept);
    wait("the page", secs(30), Some(&d), || triggers(&pd) >= 1);
    wait("not ready", secs(5), Some(&d), || {
        get(&d, "/-/ready").0 == 503
    });
    let body = get(&d, "/-/ready").1;
    assert!(
        body.contains("1 delivered notifications cannot be removed from the outbox"),
        "{body}"
    );
    assert!(metric(&d, "canaryd_store_errors_total{op=\"outbox\"}").unwrap() >= 1.0);
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(triggers(&pd), 1, "sent again: {:?}", pd.events());

    std::fs::remove_file(&filler).unwrap();
    wait("ready again", secs(10), Some(&d), || {
        get(&d, "/-/ready").0 == 200
    });
    d.stop(secs(10));
    drop(d);
    let d = start(tmp.path(), &listen);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        triggers(&pd),
        1,
        "{:?}
{}",
        pd.events(),
        d.log_tail(20)
    );
}

// ---------------------------------------------------------------------------------------------
// Read-only at start
// ---------------------------------------------------------------------------------------------

fn refused_start(dir: &Path) -> (i32, String) {
    let mut w = Worker::spawn("canaryd", canaryd_run(&dir.join("canaryd.yaml")));
    let status = w.wait_exit(secs(20));
    (status.code().unwrap_or(-1), w.log())
}

/// A read-only `state_dir` (new, and with the state of an earlier run), and a read-only
/// database file in a writable directory: each refused at start, naming `state_dir`.
#[test]
fn a_read_only_state_store_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let pd = PagerDuty::start();
    let watchdog = Webhook::start();
    let port = Port::new();
    let listen = format!("127.0.0.1:{}", free_port());
    write_config(tmp.path(), &listen, &port, &pd, &watchdog);
    let config = tmp.path().join("canaryd.yaml").display().to_string();

    // An empty read-only directory.
    {
        let Some(_ro) = read_only(&state) else {
            return;
        };
        let (code, log) = refused_start(tmp.path());
        assert_eq!(code, 1, "{log}");
        assert!(
            log.contains(&format!(
                "{config}:2:12: state_dir: cannot lock the state directory {}",
                state.display()
            )),
            "{log}"
        );
        assert!(log.contains("Read-only file system"), "{log}");
        assert!(
            log.contains("state_dir must be a writable directory"),
            "{log}"
        );
        assert!(!state.join("canaryd.db").exists());
    }

    // The state of an earlier run, then read-only.
    let mut d = start(tmp.path(), &listen);
    assert_eq!(ping(&d, "nightly"), 200);
    d.stop(secs(10));
    drop(d);
    let db = state.join("canaryd.db");
    let before = std::fs::read(&db).unwrap();
    {
        let Some(_ro) = read_only(&state) else {
            return;
        };
        let (code, log) = refused_start(tmp.path());
        assert_eq!(code, 1, "{log}");
        assert!(
            log.contains("state_dir: cannot lock the state directory"),
            "{log}"
        );
        assert!(log.contains("Read-only file system"), "{log}");
    }
    assert_eq!(std::fs::read(&db).unwrap(), before);

    // Only the database file is read-only (the directory, and so the lock, is writable).
    {
        let Some(_ro) = read_only(&db) else {
            return;
        };
        let (code, log) = refused_start(tmp.path());
        assert_eq!(code, 1, "{log}");
        assert!(
            log.contains(&format!(
                "{config}:2:12: state_dir: the state store {} is read-only",
                db.display()
            )),
            "{log}"
        );
        assert!(
            log.contains("must be a writable directory on a writable file system"),
            "{log}"
        );
    }
    assert_eq!(std::fs::read(&db).unwrap(), before);
    // Writable again: it starts, with its state.
    let d = start(tmp.path(), &listen);
    let check = get(&d, "/api/v1/checks/nightly").1;
    assert!(check.contains("\"ping_count\":1"), "{check}");
}

/// Another application's SQLite file in `state_dir` is refused and left byte for byte as it was.
#[test]
fn a_foreign_sqlite_file_is_refused_and_not_touched() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let db = state.join("canaryd.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE invoices (id INTEGER PRIMARY KEY, total INTEGER);
             INSERT INTO invoices (total) VALUES (42);",
        )
        .unwrap();
    }
    let before = std::fs::read(&db).unwrap();
    let pd = PagerDuty::start();
    let watchdog = Webhook::start();
    let port = Port::new();
    let listen = format!("127.0.0.1:{}", free_port());
    write_config(tmp.path(), &listen, &port, &pd, &watchdog);
    let (code, log) = refused_start(tmp.path());
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("state_dir: the state store"), "{log}");
    assert!(
        log.contains("is a SQLite database of another application (tables \"invoices\""),
        "{log}"
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "the foreign file was changed"
    );
    assert!(!state.join("canaryd.db-wal").exists());
}

// ---------------------------------------------------------------------------------------------
// A second daemon
// ---------------------------------------------------------------------------------------------

/// While pings hammer the first daemon, a second one on the same `state_dir` is refused (naming
/// the directory and the first one's pid); the first keeps running and every acknowledged ping
/// is in the store.
#[test]
fn a_second_daemon_on_the_same_state_dir_is_refused_and_no_acknowledged_ping_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let pd = PagerDuty::start();
    let watchdog = Webhook::start();
    let port = Port::new();
    let listen = format!("127.0.0.1:{}", free_port());
    write_config(tmp.path(), &listen, &port, &pd, &watchdog);
    let state = tmp.path().join("state");
    let mut first = start(tmp.path(), &listen);
    let pid: u32 = std::fs::read_to_string(state.join("canaryd.lock"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    // The second daemon: same state_dir, its own listen address.
    let second_listen = format!("127.0.0.1:{}", free_port());
    let yaml = std::fs::read_to_string(tmp.path().join("canaryd.yaml")).unwrap();
    std::fs::write(
        tmp.path().join("second.yaml"),
        yaml.replace(&listen, &second_listen),
    )
    .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let url = first.url("/ping/nightly");
    let hammers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, acked, failed, url) =
                (stop.clone(), acked.clone(), failed.clone(), url.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match http_post(&url, "text/plain", b"ok") {
                        Ok(r) if r.status == 200 => acked.fetch_add(1, Ordering::SeqCst),
                        // Over the per-check ping rate: refused, not acknowledged, not lost.
                        Ok(r) if r.status == 429 => 0,
                        _ => failed.fetch_add(1, Ordering::SeqCst),
                    };
                }
            })
        })
        .collect();
    wait("pings", secs(10), Some(&first), || {
        acked.load(Ordering::SeqCst) >= 50
    });
    for _ in 0..3 {
        let mut second = Worker::spawn("canaryd-2", canaryd_run(&tmp.path().join("second.yaml")));
        let status = second.wait_exit(secs(20));
        let log = second.log();
        assert_eq!(status.code(), Some(1), "{log}");
        assert!(
            log.contains(&format!(
                "state_dir: the state directory {0} is in use by another canaryd (pid {pid}, lock file {0}/canaryd.lock): run one daemon per state_dir",
                state.display()
            )),
            "{log}"
        );
        assert!(log.contains("run one daemon per state_dir"), "{log}");
        assert!(http_get(&format!("http://{second_listen}/-/healthy")).is_err());
    }
    let before = acked.load(Ordering::SeqCst);
    wait("more pings", secs(10), Some(&first), || {
        acked.load(Ordering::SeqCst) >= before + 50
    });
    stop.store(true, Ordering::SeqCst);
    for h in hammers {
        h.join().unwrap();
    }
    let acked = acked.load(Ordering::SeqCst);
    assert_eq!(failed.load(Ordering::SeqCst), 0, "{}", first.log_tail(20));
    assert_eq!(get(&first, "/-/healthy").0, 200);
    assert_eq!(get(&first, "/-/ready").0, 200);
    // `canaryd probe` takes no lock: it reads the running daemon's store.
    let mut probe = Command::new(env!("CARGO_BIN_EXE_canaryd"));
    probe
        .args(["probe", "--config"])
        .arg(tmp.path().join("canaryd.yaml"))
        .arg("nightly")
        .env("NO_COLOR", "1");
    let mut probe = Worker::spawn("canaryd-probe", probe);
    let status = probe.wait_exit(secs(20));
    assert_eq!(status.code(), Some(0), "{}", probe.log());
    // It saw the pings (a check never pinged has no exit code).
    assert!(probe.log().contains("last_exit_code=0"), "{}", probe.log());
    let check = get(&first, "/api/v1/checks/nightly").1;
    assert!(
        check.contains(&format!("\"ping_count\":{acked}")),
        "{acked}: {check}"
    );

    // What the store kept, read after the first daemon stopped.
    first.stop(secs(10));
    drop(first);
    let store = canaryd::store::Store::open(&state).unwrap();
    let rows = canaryd::probe::heartbeat::rows::load_heartbeats(&store).unwrap();
    let row = rows.iter().find(|r| r.check == "nightly").unwrap();
    assert_eq!(row.ping_count, acked, "acknowledged pings lost");
}

// ---------------------------------------------------------------------------------------------
// In process, without mounts: a store that refuses writes (SQLite's query_only)
// ---------------------------------------------------------------------------------------------

fn refuse_writes(store: &canaryd::store::Store, refuse: bool) {
    store
        .call_blocking(move |c| c.pragma_update(None, "query_only", refuse))
        .unwrap();
}

/// The same promise as the tmpfs tests, in process (no root needed): a commit the store refuses
/// is sent from memory, reported by `store_health`, and saved by the ticker once the store
/// takes writes; the resolve follows once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_the_store_refuses_is_sent_from_memory_and_saved_later() {
    use canaryd::alert::persist;
    use canaryd::alert::service::{notifiers, Alerting};
    use canaryd::clock::SystemClock;
    use canaryd::probe::{CheckResult, Reason};
    use canaryd::store::Store;
    use std::time::UNIX_EPOCH;

    let pd = PagerDuty::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("canaryd.yaml"),
        format!(
            "state_dir: state\ncheck_files: [checks.yaml]\nreceivers:\n  - name: oncall\n    pagerduty: {{routing_key: \"{ROUTING_KEY}\", url: \"{}\"}}\nroutes:\n  - receivers: [oncall]\n",
            pd.url()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("checks.yaml"),
        "checks:\n  - name: db\n    tcp: {target: \"127.0.0.1:1\"}\n    alerts:\n      - {name: DbDown, when: failed}\n",
    )
    .unwrap();
    let cfg = canaryd::loader::load(&dir.path().join("canaryd.yaml")).unwrap();
    let store = Store::open(&dir.path().join("state")).unwrap();
    let metrics = Arc::new(canaryd::metrics::Metrics::new());
    let a = Alerting::start(
        store.clone(),
        &cfg.checks,
        &cfg.alerting,
        cfg.api_url(),
        notifiers(&cfg.alerting, &cfg.path).unwrap(),
        metrics.clone(),
        Arc::new(SystemClock),
    )
    .unwrap();
    assert_eq!(a.store_health(), Ok(()));

    refuse_writes(&store, true);
    let failure = CheckResult::failure(
        Reason::Connect,
        "connection refused",
        UNIX_EPOCH,
        Duration::from_millis(1),
    );
    a.observe("db", &failure);
    assert!(pd.wait_until_async(|pd| triggers(pd) == 1, secs(10)).await);
    let why = a.store_health().unwrap_err();
    assert!(
        why.contains("attempt to write a readonly database"),
        "{why}"
    );
    assert!(why.contains("1 alert changes are kept in memory"), "{why}");
    assert!(a.health().is_err(), "the watchdog would vouch");
    assert!(store
        .call_blocking(persist::load_alerts)
        .unwrap()
        .is_empty());
    let text = metrics.encode(canaryd::metrics::Format::Text);
    assert!(
        text.contains("canaryd_store_errors_total{op=\"alerts\"} "),
        "{text}"
    );
    assert!(
        !text.contains("canaryd_store_errors_total{op=\"alerts\"} 0"),
        "{text}"
    );

    refuse_writes(&store, false);
    let t = Instant::now();
    while a.store_health().is_err() {
        assert!(
            t.elapsed() < secs(15),
            "never saved: {:?}",
            a.store_health()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.call_blocking(persist::load_alerts).unwrap().len(), 1);
    assert!(
        store
            .call_blocking(persist::outbox_lengths)
            .unwrap()
            .is_empty(),
        "sent twice?"
    );

    let success = CheckResult {
        success: true,
        reason: None,
        message: None,
        duration: Duration::from_millis(1),
        started_at: UNIX_EPOCH,
        steps: Vec::new(),
        observations: Vec::new(),
        detail: None,
        attempts: 1,
    };
    a.observe("db", &success);
    assert!(pd.wait_until_async(|pd| resolves(pd) == 1, secs(10)).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!((triggers(&pd), resolves(&pd)), (1, 1));
    assert!(store
        .call_blocking(persist::load_alerts)
        .unwrap()
        .is_empty());
    a.shutdown();
}
