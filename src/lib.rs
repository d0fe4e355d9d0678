//! canaryd — a synthetic and background-job health monitor.
//!
//! # Layout
//!
//! Layers, bottom to top (a module never imports a higher layer; `tests/architecture.rs`
//! enforces it): `clock`, `redact`, `shard`, `access` → `config` → `store` → `probe` →
//! `metrics` → `alert` → `web` → `schedule`, `loader`, `daemon`, `server`, `ui`, `cli`.
//!
//! - [`clock`]: the [`clock::Clock`] every time-dependent part reads (`ManualClock` in tests).
//! - [`config`]: the building blocks of the configuration: files, errors located as
//!   `file:line:col: key: message`, scalars, expressions, templates (secrets in a type that
//!   cannot be printed), alert rules, the validation context every part validates through.
//! - [`loader`]: loads `canaryd.yaml` and `checks/*.yaml` into one validated [`loader::Config`].
//! - [`probe`]: the [`probe::Probe`] trait, [`probe::CheckResult`], the [`probe::kind::Kind`]
//!   trait and one module per kind (`http`, `tcp`, `queue`, `heartbeat`), each owning its
//!   definition, validation, alert variables and probe.
//! - [`alert`]: the alert engine (rules, state machine, routing, silences, maintenance), the
//!   durable outbox and the receivers (PagerDuty, Alertmanager, Slack, webhook).
//! - [`schedule`]: one task per check, spread offsets, no overlap, concurrency cap, lag measurement.
//! - [`metrics`]: the metric families (docs/reference.md's metric table), encoded as Prometheus text or OpenMetrics.
//! - [`server`]: the HTTP API (`/metrics`, `/-/healthy`, `/-/ready`, `/-/reload`, `/api/v1/*`,
//!   heartbeat pings under `/ping/*`).
//! - [`ui`]: the operator view, HTML pages under `/ui/` on the API's listener.
//! - [`store`]: the embedded SQLite state store under `state_dir` (heartbeat state, firing alerts,
//!   the notification outbox, silences; one thread owns the connection).
//! - [`shard`]: `--shard i/n`, which checks a replica runs (rendezvous hashing of check names).
//! - [`daemon`]: wires config, scheduler, metrics and server together; reload and shutdown.
//! - [`cli`]: the `run`, `check`, `probe` and `silence` commands (the binary only parses arguments).
#![forbid(unsafe_code)]

pub mod access;
pub mod alert;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod loader;
pub mod metrics;
pub mod probe;
pub mod redact;
pub mod schedule;
pub mod server;
pub mod shard;
pub mod status;
pub mod store;
pub mod testrun;
pub mod ui;
pub mod web;
