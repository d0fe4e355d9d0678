//! The demo's pager: a webhook receiver canaryd notifies (the generic `webhook` receiver, signed
//! with HMAC-SHA256), and a page that lists the pages that arrived. Break the login or stall the
//! worker, and a trigger shows up here seconds later; fix it, and its resolve follows.
//!
//! | route | what it does |
//! |---|---|
//! | `POST /pager/events` | canaryd's webhook payload; the signature must match [`SECRET`] |
//! | `GET /pager` | the pages received, newest first (HTML) |
//! | `GET /pager/events.json` | the same as JSON |

use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

/// The HMAC secret canaryd signs with (given to it as `DEMO_PAGER_SECRET`).
pub const SECRET: &str = "demo-pager-secret";

/// One notification as it arrived.
#[derive(Debug, Clone)]
pub struct Page {
    /// When it arrived.
    pub received: SystemTime,
    /// The event (`status`, `kind`, `check`, `alert`, `summary`, ...).
    pub event: Value,
}

/// Everything received, oldest first.
#[derive(Debug, Default, Clone)]
pub struct Pager(Arc<Mutex<Vec<Page>>>);

impl Pager {
    /// Every page so far, oldest first.
    pub fn pages(&self) -> Vec<Page> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Routes under `/pager`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/pager", get(page))
            .route("/pager/events", post(receive))
            .route("/pager/events.json", get(list))
            .with_state(self.clone())
    }
}

async fn receive(State(p): State<Pager>, headers: HeaderMap, body: Bytes) -> Response {
    let signature = headers
        .get("x-canaryd-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if signature != canaryd::alert::receiver::webhook::signature(SECRET.as_bytes(), &body) {
        return (StatusCode::UNAUTHORIZED, "bad signature\n").into_response();
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON\n").into_response();
    };
    let now = SystemTime::now();
    let mut pages = p.0.lock().unwrap_or_else(PoisonError::into_inner);
    for event in payload["events"].as_array().into_iter().flatten() {
        println!(
            "demo pager: {} {} {} on {}: {}",
            event["kind"].as_str().unwrap_or("?").to_uppercase(),
            event["severity"].as_str().unwrap_or(""),
            event["alert"].as_str().unwrap_or("?"),
            event["check"].as_str().unwrap_or("?"),
            event["summary"].as_str().unwrap_or("")
        );
        pages.push(Page {
            received: now,
            event: event.clone(),
        });
    }
    (StatusCode::OK, "ok\n").into_response()
}

async fn list(State(p): State<Pager>) -> Json<Value> {
    let pages: Vec<Value> = p
        .pages()
        .iter()
        .map(|pg| json!({"received": canaryd::alert::rfc3339(pg.received), "event": pg.event}))
        .collect();
    Json(json!({ "pages": pages }))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

async fn page(State(p): State<Pager>) -> Html<String> {
    let mut rows = String::new();
    for pg in p.pages().iter().rev() {
        let e = &pg.event;
        let status = e["status"].as_str().unwrap_or("");
        let colour = if status == "resolved" { "#2a7" } else { "#c33" };
        rows.push_str(&format!(
            "<tr><td>{}</td><td style=\"color:{colour}\"><b>{}</b></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            canaryd::alert::rfc3339(pg.received),
            escape(e["kind"].as_str().unwrap_or("")),
            escape(e["severity"].as_str().unwrap_or("")),
            escape(e["alert"].as_str().unwrap_or("")),
            escape(e["check"].as_str().unwrap_or("")),
            escape(e["summary"].as_str().unwrap_or("")),
        ));
    }
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=6>No pages yet. Break something: <code>/control?break_login=1</code> or <code>/control?stall_worker=1</code>.</td></tr>");
    }
    Html(format!(
        "<!doctype html><meta http-equiv=refresh content=2><title>demo pager</title>\
         <h1>Pages from canaryd</h1><table border=1 cellpadding=4>\
         <tr><th>received</th><th>event</th><th>severity</th><th>alert</th><th>check</th><th>summary</th></tr>\n{rows}</table>"
    ))
}
