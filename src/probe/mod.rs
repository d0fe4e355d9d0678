//! Probe kinds and the result every run produces.
//!
//! A probe kind is one module implementing [`Probe`]; the scheduler only ever sees
//! `Arc<dyn Probe>` and a [`CheckResult`]. Results carry no secret values: messages are
//! built from check/step names, phases and status codes, never from rendered templates.

pub mod check;
pub mod kind;
pub mod tls;

// Every check kind, one line each: its module and its `Kind`. Nothing else names a kind.
kind::register! {
    http => http::def::Http,
    tcp => tcp::Tcp,
    queue => queue::def::Queue,
    heartbeat => heartbeat::def::Heartbeat,
    dns => dns::Dns,
    canary_job => canary_job::def::CanaryJob,
}

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

pub use crate::config::expr::Value;

/// Why a run failed. A fixed set, so it is safe as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Name resolution failed.
    Dns,
    /// TCP connect failed or was refused.
    Connect,
    /// TLS handshake or certificate verification failed.
    Tls,
    /// The run (or a step) did not finish before its deadline.
    Timeout,
    /// The response status did not match the expectation.
    Status,
    /// A body, header, JSON, duration or certificate assertion failed.
    Assertion,
    /// A value to extract was missing, or an extracted value could not be used in a later
    /// request (a URL or a header that cannot carry it).
    Extraction,
    /// The response body exceeded the configured cap.
    BodyTooLarge,
    /// A Redis command failed or Redis held data the job system would not write (queue checks).
    Redis,
    /// Redis could not be reached: connect refused or timed out, connection lost (queue checks).
    Unreachable,
    /// The peer broke the protocol: reset, garbage, truncated response, too many redirects.
    Protocol,
    /// A heartbeat job did not report by its due time plus grace.
    Late,
    /// A heartbeat job reported that its last run failed (`/fail`, non-zero exit code).
    JobFailed,
    /// A heartbeat job's run has been going for longer than its `max_runtime`.
    RunningTooLong,
    /// A canary job still waits in its queue past `within`: no worker took it.
    NotPickedUp,
    /// A canary job finished, or still runs, past `within`.
    TooSlow,
    /// A bug or an unexpected internal condition (a panicking probe lands here).
    Internal,
}

impl Reason {
    /// Every reason, in label order.
    pub const ALL: [Reason; 17] = [
        Reason::Dns,
        Reason::Connect,
        Reason::Tls,
        Reason::Timeout,
        Reason::Status,
        Reason::Assertion,
        Reason::Extraction,
        Reason::BodyTooLarge,
        Reason::Redis,
        Reason::Unreachable,
        Reason::Protocol,
        Reason::Late,
        Reason::JobFailed,
        Reason::RunningTooLong,
        Reason::NotPickedUp,
        Reason::TooSlow,
        Reason::Internal,
    ];

    /// The label value used in metrics and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Dns => "dns",
            Reason::Connect => "connect",
            Reason::Tls => "tls",
            Reason::Timeout => "timeout",
            Reason::Status => "status",
            Reason::Assertion => "assertion",
            Reason::Extraction => "extraction",
            Reason::BodyTooLarge => "body_too_large",
            Reason::Redis => "redis",
            Reason::Unreachable => "unreachable",
            Reason::Protocol => "protocol",
            Reason::Late => "late",
            Reason::JobFailed => "job_failed",
            Reason::RunningTooLong => "running_too_long",
            Reason::NotPickedUp => "not_picked_up",
            Reason::TooSlow => "too_slow",
            Reason::Internal => "internal",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The phases of one HTTP exchange, as blackbox_exporter defines them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// DNS resolution.
    Resolve,
    /// TCP connect.
    Connect,
    /// TLS handshake.
    Tls,
    /// Request sent until the first response byte.
    Processing,
    /// First response byte until the body is read.
    Transfer,
}

impl Phase {
    /// Every phase, in the order they happen.
    pub const ALL: [Phase; 5] = [
        Phase::Resolve,
        Phase::Connect,
        Phase::Tls,
        Phase::Processing,
        Phase::Transfer,
    ];

    /// The label value used in metrics and traces.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Resolve => "resolve",
            Phase::Connect => "connect",
            Phase::Tls => "tls",
            Phase::Processing => "processing",
            Phase::Transfer => "transfer",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Time spent in each phase; redirect hops of one step are summed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Phases {
    /// DNS resolution (zero for IP literals).
    pub resolve: Duration,
    /// TCP connect.
    pub connect: Duration,
    /// TLS handshake (zero for plain HTTP).
    pub tls: Duration,
    /// Request written until the first response byte.
    pub processing: Duration,
    /// First response byte until the whole body was read.
    pub transfer: Duration,
}

impl Phases {
    /// The duration of one phase.
    pub fn get(&self, phase: Phase) -> Duration {
        match phase {
            Phase::Resolve => self.resolve,
            Phase::Connect => self.connect,
            Phase::Tls => self.tls,
            Phase::Processing => self.processing,
            Phase::Transfer => self.transfer,
        }
    }

    /// Adds another hop's phases to these.
    pub fn add(&mut self, other: &Phases) {
        self.resolve += other.resolve;
        self.connect += other.connect;
        self.tls += other.tls;
        self.processing += other.processing;
        self.transfer += other.transfer;
    }
}

/// One assertion and its verdict, for `canaryd probe` traces and the API.
#[derive(Debug, Clone, PartialEq)]
pub struct AssertionOutcome {
    /// What was asserted, e.g. `status in 200-299` (never contains secret values).
    pub what: String,
    /// Whether it held.
    pub passed: bool,
    /// What was seen instead, when it failed (never contains secret values).
    pub detail: Option<String>,
}

/// One redirect hop of a step (the final response is not a hop).
#[derive(Debug, Clone, PartialEq)]
pub struct Hop {
    /// Status code of the redirect response.
    pub status: u16,
    /// The redirect target, as a path or origin+path (query strings are dropped: they may hold tokens).
    pub location: String,
    /// Phases of this hop.
    pub phases: Phases,
}

/// The outcome of one step (a single-request check has exactly one step).
#[derive(Debug, Clone, Default)]
pub struct StepResult {
    /// Step name from the configuration (`request` for the single-request form).
    pub name: String,
    /// Whether the step passed.
    pub success: bool,
    /// Whether the step was run at all (steps after a failure are skipped).
    pub ran: bool,
    /// Method and URL path of the request, secrets redacted, for traces.
    pub request_line: String,
    /// HTTP status of the final response, if one arrived.
    pub status: Option<u16>,
    /// Wall time of the step, all hops included.
    pub duration: Duration,
    /// Phase timings, all hops summed.
    pub phases: Phases,
    /// Redirects followed.
    pub hops: Vec<Hop>,
    /// When the peer's leaf certificate expires (TLS only).
    pub cert_not_after: Option<SystemTime>,
    /// Every assertion that was evaluated, in order.
    pub assertions: Vec<AssertionOutcome>,
    /// Names of variables this step extracted.
    pub extracted: Vec<String>,
    /// The extracted values, for `canaryd probe --show-values` only: a [`Secret`] never prints,
    /// and configured secrets echoed by the peer are already replaced by `<redacted>`.
    ///
    /// [`Secret`]: crate::config::template::Secret
    pub extracted_values: Vec<(String, crate::config::template::Secret)>,
    /// The failure reason, if the step failed.
    pub reason: Option<Reason>,
    /// The phase in progress when the step failed, if it failed inside a phase.
    pub failed_phase: Option<Phase>,
    /// Human-readable failure message (no secret values).
    pub message: Option<String>,
    /// The start of the response body when an assertion or an extraction failed on it (at
    /// most [`BODY_EXCERPT_CHARS`] characters, secrets and extracted values redacted): what
    /// `canaryd probe` and `canaryd test` show to say what came back. Not in the API or alerts.
    pub body_excerpt: Option<String>,
}

/// The longest [`StepResult::body_excerpt`], in characters.
pub const BODY_EXCERPT_CHARS: usize = 400;

/// Numbers a run observed that alert expressions and metrics read (queue depth, ...).
pub type Observations = Vec<(String, f64)>;

/// The outcome of one run of one check.
#[derive(Debug, Clone)]
pub struct CheckResult {
    /// Whether the whole check passed.
    pub success: bool,
    /// The failure reason, if it failed.
    pub reason: Option<Reason>,
    /// `step "submit": expected status 302, got 403` — names step and phase, never a secret.
    pub message: Option<String>,
    /// Wall time of the run.
    pub duration: Duration,
    /// When the run started (wall clock, for metrics and the API).
    pub started_at: SystemTime,
    /// Per-step detail (empty for kinds without steps).
    pub steps: Vec<StepResult>,
    /// Kind-specific numbers for alert expressions.
    pub observations: Observations,
    /// Kind-specific detail (what a queue check read), for the kind's own metric families,
    /// the API and traces.
    pub detail: Option<std::sync::Arc<dyn kind::Detail>>,
    /// How many attempts the run took: 1, or more when the check's `retries:` re-ran a failed
    /// attempt (the result is the last attempt's). Set by the scheduler; probes write 1.
    pub attempts: u32,
}

impl CheckResult {
    /// A failed result with no step detail (used for timeouts and internal errors).
    pub fn failure(
        reason: Reason,
        message: impl Into<String>,
        started_at: SystemTime,
        duration: Duration,
    ) -> Self {
        CheckResult {
            success: false,
            reason: Some(reason),
            message: Some(message.into()),
            duration,
            started_at,
            steps: Vec::new(),
            observations: Vec::new(),
            detail: None,
            attempts: 1,
        }
    }

    /// The first failed step, if any.
    pub fn failed_step(&self) -> Option<&StepResult> {
        self.steps.iter().find(|s| s.ran && !s.success)
    }

    /// The kind-specific detail, when it is a `T`.
    pub fn detail<T: 'static>(&self) -> Option<&T> {
        self.detail.as_ref()?.as_any().downcast_ref::<T>()
    }
}

/// What a probe gets for one run.
#[derive(Debug, Clone, Copy)]
pub struct RunContext {
    /// The run must end by then: the check's timeout from the scheduled start.
    pub deadline: Instant,
}

/// A boxed future, so probes of every kind fit behind one trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One probe kind, built once from its validated configuration and run many times.
pub trait Probe: Send + Sync + 'static {
    /// Runs the check once. Must return by `ctx.deadline` (the scheduler also enforces it),
    /// and must never panic on any peer behaviour.
    fn run<'a>(&'a self, ctx: RunContext) -> BoxFuture<'a, CheckResult>;
}
