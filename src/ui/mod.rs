//! The operator view: server-rendered HTML pages on the API's listener, behind the web
//! configuration's authentication like every other route (basic auth when `basic_auth_users`
//! is configured), its forms behind the same write policy ([`crate::access`]: an authenticated
//! user, or loopback; never cross-site; a form only from canaryd's own pages).
//!
//! - `GET /` → 303 to `/ui/`
//! - `GET /ui/`: every check (failing first) with its last result, firing and pending alerts
//! - `GET /ui/checks/{check}`: one check: its last result's steps with the phase waterfall,
//!   assertions and redirects, the waterfall of its last runs ([`history`]), its alerts with
//!   their evidence, its queues or its heartbeat
//! - `GET /ui/alerts`: firing and pending alerts with their evidence
//! - `GET /ui/silences`, `POST /ui/silences` (a form: add), `POST /ui/silences/{id}/expire`
//! - `GET /ui/heartbeats`, `GET /ui/queues`
//! - `GET /ui/static/ui.css`
//!
//! Pages are rendered per request from memory (last results, the alert engine's views, the
//! heartbeat book), with maud: every text is escaped. Nothing of a check's definition that may
//! hold a secret (URLs, request lines, headers, bodies, Redis URLs) is rendered: only names,
//! labels, timings and the results' messages, which the probes have redacted (as the API shows
//! them). Redirect locations are shown as the probe keeps them: origin and path, no query. No script; the stylesheet is the only
//! other resource; every answer carries a strict Content-Security-Policy.

pub mod history;
mod pages;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};

use crate::access::Principal;
use crate::daemon::Daemon;
use crate::server::NewSilence;

/// The stylesheet, served at `/ui/static/ui.css`.
pub const CSS: &str = include_str!("ui.css");

/// The Content-Security-Policy of every answer of the operator view.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
                       form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The operator view's routes, merged into the API's router (so behind the same layers).
pub fn routes() -> Router<Arc<Daemon>> {
    Router::new()
        .route("/", get(|| async { see_other("/ui/") }))
        .route("/ui", get(|| async { see_other("/ui/") }))
        .route("/ui/", get(overview))
        .route("/ui/static/ui.css", get(css))
        .route("/ui/checks/{check}", get(check))
        .route("/ui/alerts", get(alerts))
        .route("/ui/silences", get(silences).post(add_silence))
        .route("/ui/silences/{id}/expire", post(expire_silence))
        .route("/ui/heartbeats", get(heartbeats))
        .route("/ui/queues", get(queues))
        .layer(axum::middleware::from_fn(security_headers))
}

/// The headers of every answer: CSP, no sniffing, no referrer to other sites, no framing, not cached (pages
/// show live state and are behind authentication).
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // `same-origin`, not `no-referrer`: with `no-referrer` Chromium sends `Origin: null` on
        // a form post, and the write policy refuses a null origin.
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn see_other(to: &'static str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}

fn page(status: StatusCode, markup: maud::Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

async fn overview(State(d): State<Arc<Daemon>>) -> Response {
    page(StatusCode::OK, pages::overview(&d))
}

async fn check(
    State(d): State<Arc<Daemon>>,
    name: Result<Path<String>, PathRejection>,
) -> Response {
    let name = name.map(|Path(n)| n).unwrap_or_default();
    match pages::check(&d, &name) {
        Some(markup) => page(StatusCode::OK, markup),
        None => page(StatusCode::NOT_FOUND, pages::not_found(&name)),
    }
}

async fn alerts(State(d): State<Arc<Daemon>>) -> Response {
    page(StatusCode::OK, pages::alerts(&d))
}

async fn heartbeats(State(d): State<Arc<Daemon>>) -> Response {
    page(StatusCode::OK, pages::heartbeats(&d))
}

async fn queues(State(d): State<Arc<Daemon>>) -> Response {
    page(StatusCode::OK, pages::queues(&d))
}

/// What the silence form holds (kept to fill it again after an error).
#[derive(Debug, Clone, Default)]
pub struct SilenceForm {
    /// `label=value` lines.
    pub matchers: String,
    /// `2h`, `30m`.
    pub duration: String,
    /// Who.
    pub created_by: String,
    /// Why.
    pub comment: String,
}

impl SilenceForm {
    /// The form's fields from an `application/x-www-form-urlencoded` body or query (unknown
    /// fields ignored). Query parameters other than the form's are matchers to fill in
    /// (`?check=shop&alertname=Down`: the "Silence" links).
    fn parse(bytes: &[u8], matchers_from_others: bool) -> SilenceForm {
        let mut form = SilenceForm::default();
        let mut extra = Vec::new();
        for (k, v) in url::form_urlencoded::parse(bytes) {
            match &*k {
                "matchers" => form.matchers = v.into_owned(),
                "duration" => form.duration = v.into_owned(),
                "created_by" => form.created_by = v.into_owned(),
                "comment" => form.comment = v.into_owned(),
                _ if matchers_from_others => extra.push(format!("{k}={v}")),
                _ => {}
            }
        }
        if form.matchers.is_empty() {
            form.matchers = extra.join("\n");
        }
        form
    }

    /// The API's request for this form, or what is wrong with its matchers.
    fn request(&self) -> Result<NewSilence, String> {
        let mut matchers = std::collections::BTreeMap::new();
        for (i, line) in self.matchers.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let Some((name, value)) = line.split_once('=') else {
                return Err(format!(
                    "matcher on line {}: write label=value (a glob may be the value)",
                    i + 1
                ));
            };
            let name = name.trim();
            if name.is_empty() {
                return Err(format!("matcher on line {}: the label is empty", i + 1));
            }
            if matchers
                .insert(name.to_string(), value.trim().to_string())
                .is_some()
            {
                return Err(format!("matcher on line {}: {name} given twice", i + 1));
            }
        }
        if matchers.is_empty() {
            return Err("give at least one matcher, e.g. check=shop-*".into());
        }
        Ok(NewSilence {
            matchers,
            starts_at: None,
            ends_at: None,
            duration: Some(self.duration.trim().to_string()),
            created_by: self.created_by.trim().to_string(),
            comment: self.comment.trim().to_string(),
        })
    }
}

async fn silences(
    State(d): State<Arc<Daemon>>,
    user: Option<Extension<Principal>>,
    uri: axum::http::Uri,
) -> Response {
    let mut form = SilenceForm::parse(uri.query().unwrap_or_default().as_bytes(), true);
    if form.duration.is_empty() {
        form.duration = "2h".into();
    }
    if form.created_by.is_empty() {
        form.created_by = user.map(|Extension(p)| p.user).unwrap_or_default();
    }
    page(StatusCode::OK, pages::silences(&d, &form, None))
}

async fn add_silence(State(d): State<Arc<Daemon>>, body: Bytes) -> Response {
    let form = SilenceForm::parse(&body, false);
    let now = d.heartbeats.clock().now();
    let added = match form.request().and_then(|r| r.into_silence(now)) {
        Ok(silence) => d.alerting.add_silence(silence).await,
        Err(e) => Err(e),
    };
    match added {
        Ok(_) => see_other("/ui/silences"),
        Err(e) => page(
            StatusCode::BAD_REQUEST,
            pages::silences(&d, &form, Some(&e)),
        ),
    }
}

async fn expire_silence(
    State(d): State<Arc<Daemon>>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(id)) = id else {
        return page(StatusCode::NOT_FOUND, pages::not_found(""));
    };
    match d.alerting.expire_silence(&id).await {
        Ok(Some(_)) => see_other("/ui/silences"),
        Ok(None) => page(StatusCode::NOT_FOUND, pages::no_silence()),
        Err(e) => page(
            StatusCode::INTERNAL_SERVER_ERROR,
            pages::silences(&d, &SilenceForm::default(), Some(&e)),
        ),
    }
}

/// A path segment with everything but unreserved characters percent-encoded (check names in
/// links).
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_becomes_the_apis_request() {
        let form = SilenceForm::parse(
            b"matchers=check%3Dshop-*%0D%0Aseverity+%3D+critical%0D%0A&duration=2h&created_by=alice&comment=DB+work&x=y",
            false,
        );
        let req = form.request().unwrap();
        assert_eq!(req.matchers.len(), 2);
        assert_eq!(req.matchers["check"], "shop-*");
        assert_eq!(req.matchers["severity"], "critical");
        assert_eq!(req.duration.as_deref(), Some("2h"));
        assert_eq!(req.created_by, "alice");
        assert_eq!(req.comment, "DB work");
        for (bad, says) in [
            ("matchers=check", "label=value"),
            ("matchers=%3Dx", "label is empty"),
            ("matchers=a%3D1%0Aa%3D2", "given twice"),
            ("matchers=", "at least one matcher"),
        ] {
            let err = SilenceForm::parse(bad.as_bytes(), false)
                .request()
                .unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
        let prefilled = SilenceForm::parse(b"check=shop&alertname=Down", true);
        assert_eq!(prefilled.matchers, "check=shop\nalertname=Down");
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(path_segment("demo-login_1.x~"), "demo-login_1.x~");
        assert_eq!(path_segment("a b/<c>"), "a%20b%2F%3Cc%3E");
        assert_eq!(path_segment("é"), "%C3%A9");
    }
}
