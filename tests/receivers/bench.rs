//! The alert engine, store, outbox and notifiers of one configuration, without a daemon: what
//! the delivery tests drive result by result.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use canaryd::alert::engine::Engine;
use canaryd::alert::outbox::{http_client, Next, Outbox};
use canaryd::alert::persist;
use canaryd::alert::receiver::{self, Notifier, Verdict};
use canaryd::loader as config;
use canaryd::metrics::Metrics;
use canaryd::probe::{CheckResult, Reason};
use canaryd::store::Store;

/// An engine over `checks` routed to `receivers` (YAML), with its store and outbox, driven by
/// the test's clock: results in, deliveries out. Secrets the YAML names must be set first.
pub struct Bench {
    pub _dir: tempfile::TempDir,
    pub engine: Engine,
    pub store: Store,
    pub outbox: Outbox,
    pub metrics: Arc<Metrics>,
    pub notifiers: HashMap<String, Arc<dyn Notifier>>,
}

impl Bench {
    pub fn new(receivers_yaml: &str, checks_yaml: &str, now: SystemTime) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("canaryd.yaml"),
            format!("state_dir: state\ncheck_files: [checks.yaml]\n{receivers_yaml}"),
        )
        .unwrap();
        std::fs::write(dir.path().join("checks.yaml"), checks_yaml).unwrap();
        let cfg = config::load(&dir.path().join("canaryd.yaml")).unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(&dir.path().join("state")).unwrap();
        let metrics = Arc::new(Metrics::new());
        let outbox = Outbox::new(store.clone(), http_client().unwrap(), metrics.clone());
        let notifiers: HashMap<_, _> = cfg
            .alerting
            .receivers
            .iter()
            .map(|r| (r.name.clone(), receiver::build(r).unwrap()))
            .collect();
        let mut engine = Engine::new("http://127.0.0.1:9464");
        engine.configure(&cfg.checks, &cfg.alerting, HashMap::new(), now);
        Bench {
            _dir: dir,
            engine,
            store,
            outbox,
            metrics,
            notifiers,
        }
    }

    pub fn observe(&mut self, check: &str, result: &CheckResult, now: SystemTime) {
        let fx = self.engine.observe(check, result, now);
        let (sends, save, delete) = (fx.sends, fx.save, fx.delete);
        self.store
            .call_blocking(move |c| persist::commit_alerts(c, &save, &delete, &sends))
            .unwrap();
    }

    pub async fn deliver(&self, receiver: &str, now: SystemTime) -> (Next, Option<Verdict>) {
        let n = self.notifiers[receiver].clone();
        let (next, attempt) = self.outbox.deliver_once(n.as_ref(), now).await.unwrap();
        (next, attempt.map(|a| a.verdict))
    }

    pub fn waiting(&self) -> u64 {
        self.store
            .call_blocking(persist::outbox_lengths)
            .unwrap()
            .iter()
            .map(|l| l.count)
            .sum()
    }
}

/// `s` seconds after the Unix epoch: the tests' clock.
pub fn at(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(s)
}

/// A failed run (status 500).
pub fn failure() -> CheckResult {
    CheckResult::failure(
        Reason::Status,
        "expected status 200, got 500",
        UNIX_EPOCH,
        Duration::from_millis(5),
    )
}

/// A passing run.
pub fn success() -> CheckResult {
    CheckResult {
        success: true,
        reason: None,
        message: None,
        duration: Duration::from_millis(5),
        started_at: UNIX_EPOCH,
        steps: Vec::new(),
        observations: Vec::new(),
        detail: None,
        attempts: 1,
    }
}
