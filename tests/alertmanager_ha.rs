//! High availability without duplicate pages: two canaryd replicas running the same check, each
//! with its own state, both sending to every member of a cluster of two real Alertmanagers
//! (Debian's `prometheus-alertmanager`, clustered on loopback). A failure reaches the on-call
//! webhook behind the cluster exactly once, and so does its resolve: each member holds the
//! alert (canaryd told both), and the cluster's notification log lets only one of them notify.

mod receivers;
mod services;

use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use receivers::{Webhook, WebhookRequest};
use serde_json::Value;
use services::{canaryd_run, free_port, http_get, Alertmanager, Canaryd, Target, AM_PEER_TIMEOUT};

/// Alertmanager's `group_interval` in the test's configuration: how often a group may notify
/// again (a resolve waits for the next one).
const GROUP_INTERVAL: Duration = Duration::from_secs(2);

/// How long to keep listening after a notification before concluding that no duplicate comes:
/// the second member in the cluster notifies `AM_PEER_TIMEOUT` after the first unless the
/// gossiped notification log stops it, and a group may notify again every `GROUP_INTERVAL`;
/// plus a margin for a busy machine.
fn quiet_period() -> Duration {
    AM_PEER_TIMEOUT + GROUP_INTERVAL + Duration::from_secs(3)
}

fn wait(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        sleep(Duration::from_millis(50));
    }
}

fn metric_is(d: &Canaryd, line: &str) -> bool {
    http_get(&d.url("/metrics")).is_ok_and(|r| r.text().contains(line))
}

/// The notifications the webhook got with this `status` (`firing` / `resolved`).
fn notifications(hook: &Webhook, status: &str) -> Vec<Value> {
    hook.requests()
        .iter()
        .filter_map(WebhookRequest::json)
        .filter(|n| n["status"] == status)
        .collect()
}

/// Every notification the webhook got, for failure messages.
fn shown(hook: &Webhook) -> String {
    hook.requests()
        .iter()
        .map(|r| format!("{} {}: {}", r.method, r.path, r.text()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The LoginFailing alert an Alertmanager holds as active, if any.
fn held(am: &Alertmanager) -> Option<Value> {
    am.alerts()
        .as_array()?
        .iter()
        .find(|a| a["labels"]["alertname"] == "LoginFailing" && a["status"]["state"] == "active")
        .cloned()
}

/// A replica: its own directory, listen port and `state_dir`; the shared check file; an
/// Alertmanager receiver that lists every member of the cluster.
fn replica(dir: &Path, name: &str, checks: &Path, members: &[&Alertmanager]) -> Canaryd {
    let own = dir.join(name);
    std::fs::create_dir(&own).unwrap();
    let port = free_port();
    let urls: Vec<String> = members.iter().map(|m| format!("\"{}\"", m.url())).collect();
    std::fs::write(
        own.join("canaryd.yaml"),
        format!(
            "listen: 127.0.0.1:{port}\nstate_dir: state\ncheck_files: [\"{}\"]\n\
             receivers:\n  - name: am\n    alertmanager: {{urls: [{}]}}\n",
            checks.display(),
            urls.join(", ")
        ),
    )
    .unwrap();
    Canaryd::start(
        canaryd_run(&own.join("canaryd.yaml")),
        &format!("127.0.0.1:{port}"),
    )
    .unwrap_or_else(|e| panic!("replica {name} did not start: {e}"))
}

#[test]
fn two_replicas_and_a_two_member_alertmanager_cluster_page_once_and_resolve_once() {
    let hook = Webhook::start();
    let am_config = format!(
        "route:\n  receiver: oncall\n  group_by: [alertname, check]\n  group_wait: 1s\n  \
         group_interval: {}s\n  repeat_interval: 1h\n\
         receivers:\n  - name: oncall\n    webhook_configs:\n      - url: \"{}\"\n        send_resolved: true\n",
        GROUP_INTERVAL.as_secs(),
        hook.url()
    );
    let Some(am1) = Alertmanager::start_member(&am_config, &[]) else {
        return;
    };
    let first = am1.cluster_addr().unwrap().to_string();
    let Some(am2) = Alertmanager::start_member(&am_config, &[&first]) else {
        return;
    };
    let cluster = [&am1, &am2];
    // Each member sees both, and has settled (a member notifies only once it has).
    wait("a cluster of two, settled", Duration::from_secs(20), || {
        cluster.iter().all(|am| {
            let status = am.status();
            status["cluster"]["peers"].as_array().map_or(0, Vec::len) == 2
                && status["cluster"]["status"] == "ready"
        })
    });
    assert_eq!(am1.cluster_peers(), 2);
    assert_eq!(am2.cluster_peers(), 2);

    let target = Target::start();
    let dir = tempfile::tempdir().unwrap();
    let checks = dir.path().join("checks.yaml");
    std::fs::write(
        &checks,
        format!(
            "checks:\n  - name: shop-login\n    interval: 1s\n    timeout: 900ms\n    labels: {{team: web}}\n    \
             http:\n      request: {{url: \"http://{}/login\"}}\n      expect: {{status: 200, body_contains: Sign out}}\n    \
             alerts:\n      - {{name: LoginFailing, when: failed, consecutive: 2, severity: critical}}\n",
            target.addr
        ),
    )
    .unwrap();
    let replicas = [
        replica(dir.path(), "a", &checks, &cluster),
        replica(dir.path(), "b", &checks, &cluster),
    ];
    for d in &replicas {
        wait(
            "a passing run on each replica",
            Duration::from_secs(15),
            || metric_is(d, "canary_check_success{check=\"shop-login\"} 1"),
        );
    }

    // Broken: both replicas fire and tell both members; one notification comes out.
    target.set_broken(true);
    wait("the firing notification", Duration::from_secs(20), || {
        !notifications(&hook, "firing").is_empty()
    });
    for d in &replicas {
        wait(
            "each replica's trigger sent",
            Duration::from_secs(10),
            || {
                metric_is(
                    d,
                    "canaryd_notifications_total{receiver=\"am\",result=\"sent\"} 1",
                )
            },
        );
    }
    for (i, am) in cluster.iter().enumerate() {
        let alert = held(am).unwrap_or_else(|| {
            panic!(
                "Alertmanager {} does not hold the alert: {}",
                i + 1,
                am.alerts()
            )
        });
        assert_eq!(alert["labels"]["check"], "shop-login");
        assert_eq!(alert["labels"]["severity"], "critical");
    }
    sleep(quiet_period());
    let firing = notifications(&hook, "firing");
    assert_eq!(
        firing.len(),
        1,
        "one page, not one per member or replica:\n{}",
        shown(&hook)
    );
    let alerts = firing[0]["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{}", firing[0]);
    assert_eq!(alerts[0]["labels"]["alertname"], "LoginFailing");
    assert_eq!(alerts[0]["labels"]["check"], "shop-login");
    assert_eq!(alerts[0]["status"], "firing");

    // Restored: both replicas resolve at both members; one resolved notification comes out.
    target.set_broken(false);
    wait("the resolved notification", Duration::from_secs(20), || {
        !notifications(&hook, "resolved").is_empty()
    });
    for d in &replicas {
        wait(
            "each replica's resolve sent",
            Duration::from_secs(10),
            || {
                metric_is(
                    d,
                    "canaryd_notifications_total{receiver=\"am\",result=\"sent\"} 2",
                )
            },
        );
    }
    for (i, am) in cluster.iter().enumerate() {
        assert!(
            held(am).is_none(),
            "Alertmanager {} still holds the alert as active: {}",
            i + 1,
            am.alerts()
        );
    }
    sleep(quiet_period());
    let resolved = notifications(&hook, "resolved");
    assert_eq!(resolved.len(), 1, "one resolve:\n{}", shown(&hook));
    assert_eq!(
        resolved[0]["alerts"][0]["labels"]["alertname"],
        "LoginFailing"
    );
    assert_eq!(resolved[0]["alerts"][0]["status"], "resolved");
    assert_eq!(
        hook.requests().len(),
        2,
        "nothing but one page and one resolve:\n{}",
        shown(&hook)
    );
}
