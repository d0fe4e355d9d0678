//! The HTTP API: `/metrics`, `/-/healthy`, `/-/ready`, `/-/reload`, `/api/v1/checks`.
//!
//! No endpoint takes a probe target from a request: targets come only from configuration files.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::daemon::Daemon;
use crate::metrics::Format;
use crate::probe::{CheckResult, Phase};

/// The API's routes over a daemon.
pub fn router(daemon: Arc<Daemon>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(|| async { "OK\n" }))
        .route("/-/ready", get(|| async { "Ready\n" }))
        .route("/-/reload", post(reload))
        .route("/api/v1/checks", get(checks))
        .with_state(daemon)
}

/// Serves the API until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    daemon: Arc<Daemon>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(daemon).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

async fn metrics(State(d): State<Arc<Daemon>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let body = d.metrics.encode(format);
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

async fn reload(State(d): State<Arc<Daemon>>) -> Response {
    match d.reload().await {
        Ok(n) => (StatusCode::OK, format!("reloaded: {n} checks\n")).into_response(),
        Err(errors) => (
            StatusCode::BAD_REQUEST,
            format!("reload refused, the running configuration stays:\n{errors}\n"),
        )
            .into_response(),
    }
}

async fn checks(State(d): State<Arc<Daemon>>) -> Json<Value> {
    let config = d.config();
    let list: Vec<Value> = config
        .checks
        .iter()
        .map(|c| {
            let last = d.states.get(&c.name);
            json!({
                "name": c.name,
                "kind": c.kind.name(),
                "interval_seconds": c.interval.as_secs_f64(),
                "timeout_seconds": c.timeout.as_secs_f64(),
                "labels": c.labels,
                "source": c.origin.to_string(),
                "alerts": c.alerts.iter().map(|a| json!({"name": a.name, "when": a.when, "severity": a.severity.as_str()})).collect::<Vec<_>>(),
                "last_result": last.as_deref().map(result_json),
            })
        })
        .collect();
    Json(json!({ "checks": list }))
}

/// A result as JSON. Messages are already redacted by the probes; extracted names only.
pub fn result_json(r: &CheckResult) -> Value {
    json!({
        "success": r.success,
        "reason": r.reason.map(|x| x.as_str()),
        "message": r.message,
        "duration_seconds": r.duration.as_secs_f64(),
        "started_at": r.started_at.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0),
        "steps": r.steps.iter().map(|s| json!({
            "name": s.name,
            "ran": s.ran,
            "success": s.success,
            "status": s.status,
            "duration_seconds": s.duration.as_secs_f64(),
            "phases": Phase::ALL.iter().map(|p| (p.as_str().to_string(), json!(s.phases.get(*p).as_secs_f64()))).collect::<serde_json::Map<_, _>>(),
            "redirects": s.hops.len(),
            "failed_phase": s.failed_phase.map(|p| p.as_str()),
            "reason": s.reason.map(|x| x.as_str()),
            "message": s.message,
            "extracted": s.extracted,
        })).collect::<Vec<_>>(),
        "variables": r.observations.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "queues": r.queue.as_ref().map(|q| q.snapshot.queues.iter().zip(&q.oldest_age_seconds).map(|(s, age)| json!({
            "name": s.name,
            "depth": s.depths.iter().map(|(st, n)| (st.as_str().to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "oldest_age_seconds": age,
        })).collect::<Vec<_>>()),
    })
}
