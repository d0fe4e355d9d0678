//! canaryd — a synthetic and background-job health monitor.
//!
//! # Layout
//!
//! - [`clock`]: the [`clock::Clock`] every time-dependent part reads (`ManualClock` in tests).
//! - [`config`]: loads `canaryd.yaml` and `checks/*.yaml`, validates everything, reports every
//!   error as `file:line:col: key: message`, resolves secrets into a type that cannot be printed.
//! - [`probe`]: the [`probe::Probe`] trait, [`probe::CheckResult`], and one module per probe kind
//!   (`http` with its transport, `tcp`, `queue`, `heartbeat`).
//! - [`alert`]: the alert engine (rules, state machine, routing, silences, maintenance), the
//!   durable outbox and the receivers (PagerDuty, Alertmanager, Slack, webhook).
//! - [`schedule`]: one task per check, spread offsets, no overlap, concurrency cap, lag measurement.
//! - [`metrics`]: the metric families (the README's metric table), encoded as Prometheus text or OpenMetrics.
//! - [`server`]: the HTTP API (`/metrics`, `/-/healthy`, `/-/ready`, `/-/reload`, `/api/v1/*`,
//!   heartbeat pings under `/ping/*`).
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
pub mod metrics;
pub mod probe;
pub mod redact;
pub mod schedule;
pub mod server;
pub mod shard;
pub mod store;
pub mod web;
