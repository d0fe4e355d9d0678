//! `--shard i/n`: every check runs on exactly one of n shards, chosen by a stable hash of its
//! name. The assignment is checked over many names (exactly one owner, balance, growth moves few
//! checks, pinned values that a release must not change), and three real `canaryd run --shard`
//! processes on one configuration are shown to split the checks between them: each runs exactly
//! its own, and together they run them all.

mod services;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use canaryd::shard::Shard;

const BIN: &str = env!("CARGO_BIN_EXE_canaryd");

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("check-{i}")).collect()
}

#[test]
fn every_check_has_exactly_one_owner_and_shards_are_balanced() {
    let names = names(10_000);
    for n in 1..=8u32 {
        let mut per_shard = vec![0usize; n as usize];
        for name in &names {
            let owners: Vec<u32> = (1..=n)
                .filter(|&i| Shard::new(i, n).unwrap().owns(name))
                .collect();
            assert_eq!(owners.len(), 1, "{name} at n={n} is owned by {owners:?}");
            assert_eq!(Shard::owner(name, n).index(), owners[0]);
            per_shard[owners[0] as usize - 1] += 1;
        }
        let fair = names.len() as f64 / f64::from(n);
        for (i, &got) in per_shard.iter().enumerate() {
            assert!(
                (got as f64 - fair).abs() <= fair * 0.1,
                "n={n}: shard {} runs {got} of 10000 checks, far from {fair:.0}: {per_shard:?}",
                i + 1
            );
        }
    }
}

#[test]
fn adding_a_shard_moves_only_the_checks_it_takes() {
    let names = names(10_000);
    for n in 1..=7u32 {
        let mut moved = 0;
        for name in &names {
            let before = Shard::owner(name, n).index();
            let after = Shard::owner(name, n + 1).index();
            if before != after {
                assert_eq!(
                    after,
                    n + 1,
                    "{name} moved from {before}/{n} to {after}/{}, not to the new shard",
                    n + 1
                );
                moved += 1;
            }
        }
        let share = moved as f64 / names.len() as f64;
        let expected = 1.0 / f64::from(n + 1);
        assert!(
            (share - expected).abs() < 0.03,
            "{n} -> {} shards moved {share:.3} of the checks, expected about {expected:.3}",
            n + 1
        );
    }
}

#[test]
fn the_assignment_is_pinned_across_releases() {
    // Replicas of different versions must agree on who runs what: these owners were computed
    // once and must never change (a change would make two shards run a check, or none).
    let pinned = [
        ("shop-login", 3, 3),
        ("billing-jobs", 3, 3),
        ("nightly-invoices", 3, 2),
        ("search-export", 5, 2),
        ("api-health", 2, 2),
    ];
    for (name, n, owner) in pinned {
        assert_eq!(
            Shard::owner(name, n).to_string(),
            format!("{owner}/{n}"),
            "{name} of {n}"
        );
    }
}

#[test]
fn a_bad_shard_is_refused_with_its_form() {
    for bad in ["0/3", "4/3", "2", "1/0", "a/b"] {
        let out = Command::new(BIN)
            .args([
                "run",
                "--config",
                "/nonexistent/canaryd.yaml",
                "--shard",
                bad,
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--shard {bad}: {stderr}");
        assert!(
            stderr.contains("write i/n with 1 <= i <= n"),
            "--shard {bad}: {stderr}"
        );
    }
}

/// A real `canaryd run --shard i/n` with its own listen address and state directory.
struct Replica {
    shard: Shard,
    daemon: services::Canaryd,
}

impl Replica {
    fn start(dir: &Path, shard: Shard) -> Replica {
        let addr = format!("127.0.0.1:{}", services::free_port());
        let config = dir.join(format!("canaryd-{}.yaml", shard.index()));
        std::fs::write(
            &config,
            format!(
                "listen: {addr}\nstate_dir: state-{}\ncheck_files: [checks/*.yaml]\n",
                shard.index()
            ),
        )
        .unwrap();
        let mut cmd = services::canaryd_run(&config);
        cmd.args(["--shard", &shard.to_string()]);
        let daemon =
            services::Canaryd::start(cmd, &addr).unwrap_or_else(|e| panic!("replica {shard}: {e}"));
        Replica { shard, daemon }
    }

    fn get(&self, path: &str) -> services::HttpResponse {
        services::http_get(&self.daemon.url(path)).unwrap()
    }

    /// The checks this replica lists, once each of them has run.
    fn checks_after_a_run(&self) -> (String, BTreeSet<String>) {
        let t = Instant::now();
        loop {
            let body = self.get("/api/v1/checks").json();
            let checks = body["checks"].as_array().cloned().unwrap_or_default();
            let ran = checks.iter().all(|c| !c["last_result"].is_null());
            if ran && !checks.is_empty() {
                let names = checks
                    .iter()
                    .map(|c| c["name"].as_str().unwrap().to_string())
                    .collect();
                return (body["shard"].as_str().unwrap_or("").to_string(), names);
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "replica {} never ran all its checks: {body}",
                self.shard
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The `check` label values of `family` in a `/metrics` page.
fn checks_in_metrics(page: &str, family: &str) -> BTreeSet<String> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .map(services::parse_sample)
        .filter(|(name, _)| name == family)
        .flat_map(|(_, labels)| labels.into_iter().filter(|(k, _)| k == "check"))
        .map(|(_, check)| check)
        .collect()
}

#[test]
fn three_replicas_split_the_checks_between_them() {
    // A TCP target that accepts every connection: each check is a connect to it.
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let target_addr = target.local_addr().unwrap();
    std::thread::spawn(move || for _ in target.incoming() {});

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("checks")).unwrap();
    let tcp: Vec<String> = names(30);
    let heartbeats = ["nightly-a", "nightly-b", "nightly-c", "nightly-d"];
    let mut yaml = String::from("checks:\n");
    for name in &tcp {
        yaml += &format!(
            "  - {{name: {name}, interval: 1s, timeout: 1s, tcp: {{target: \"{target_addr}\"}}}}\n"
        );
    }
    for name in heartbeats {
        yaml += &format!("  - {{name: {name}, interval: 1s, heartbeat: {{every: 1h}}}}\n");
    }
    std::fs::write(dir.path().join("checks/all.yaml"), &yaml).unwrap();
    let all: BTreeSet<String> = tcp
        .iter()
        .cloned()
        .chain(heartbeats.iter().map(|s| s.to_string()))
        .collect();

    let replicas: Vec<Replica> = (1..=3)
        .map(|i| Replica::start(dir.path(), Shard::new(i, 3).unwrap()))
        .collect();

    let mut seen = BTreeSet::new();
    for r in &replicas {
        let (shard, mine) = r.checks_after_a_run();
        assert_eq!(shard, r.shard.to_string());
        let expected: BTreeSet<String> = all
            .iter()
            .filter(|name| Shard::owner(name, 3) == r.shard)
            .cloned()
            .collect();
        assert!(!mine.is_empty(), "shard {} runs nothing", r.shard);
        assert_eq!(mine, expected, "shard {} runs the wrong checks", r.shard);
        let twice: Vec<_> = seen.intersection(&mine).collect();
        assert!(twice.is_empty(), "run on two shards: {twice:?}");
        seen.extend(mine.iter().cloned());

        // Its metrics carry only its own checks, and say how many it runs.
        let page = r.get("/metrics").text();
        let in_metrics = checks_in_metrics(&page, "canary_check_runs_total");
        assert_eq!(in_metrics, mine, "shard {} /metrics", r.shard);
        assert!(
            page.lines()
                .any(|l| l == format!("canaryd_checks {}", mine.len())),
            "shard {}: canaryd_checks is not {}",
            r.shard,
            mine.len()
        );
    }
    assert_eq!(seen, all, "some checks run on no shard");

    // A heartbeat ping sent to the wrong replica names the one that owns the check.
    for name in heartbeats {
        let owner = Shard::owner(name, 3);
        for r in &replicas {
            let url = r.daemon.url(&format!("/ping/{name}"));
            let response = services::http_post(&url, "text/plain", b"").unwrap();
            if r.shard == owner {
                assert_eq!(response.status, 200, "{name} at its own shard {owner}");
            } else {
                assert_eq!(response.status, 404, "{name} at shard {}", r.shard);
                assert!(
                    response.text().contains(&format!("runs on shard {owner}")),
                    "{name} at shard {}: {}",
                    r.shard,
                    response.text()
                );
            }
        }
    }

    // `canaryd check --shard` lists what a shard would run, from the same files.
    let config = dir.path().join("canaryd-1.yaml");
    for r in &replicas {
        let out = Command::new(BIN)
            .args(["check", "--config"])
            .arg(&config)
            .args(["--shard", &r.shard.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success());
        let stdout = String::from_utf8_lossy(&out.stdout);
        let listed: BTreeSet<String> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("  "))
            .map(str::to_string)
            .collect();
        let expected: BTreeSet<String> = all
            .iter()
            .filter(|n| Shard::owner(n, 3) == r.shard)
            .cloned()
            .collect();
        assert_eq!(listed, expected, "canaryd check --shard {}", r.shard);
    }
}

#[test]
fn a_reload_keeps_the_shard() {
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let target_addr = target.local_addr().unwrap();
    std::thread::spawn(move || for _ in target.incoming() {});
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("checks")).unwrap();
    let write = |names: &[String]| {
        let mut yaml = String::from("checks:\n");
        for name in names {
            yaml += &format!("  - {{name: {name}, interval: 1s, timeout: 1s, tcp: {{target: \"{target_addr}\"}}}}\n");
        }
        std::fs::write(dir.path().join("checks/all.yaml"), yaml).unwrap();
    };
    let before = names(10);
    write(&before);
    let shard = Shard::new(2, 2).unwrap();
    let r = Replica::start(dir.path(), shard);
    let (_, mine) = r.checks_after_a_run();
    let owned = |all: &[String]| -> BTreeSet<String> {
        all.iter().filter(|n| shard.owns(n)).cloned().collect()
    };
    assert_eq!(mine, owned(&before));

    let after = names(20);
    write(&after);
    let reload = services::http_post(&r.daemon.url("/-/reload"), "application/json", b"").unwrap();
    assert_eq!(reload.status, 200, "{}", reload.text());
    let (_, mine) = r.checks_after_a_run();
    assert_eq!(mine, owned(&after), "after the reload");
}
