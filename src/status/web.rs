//! The public listener's router: the status page, one page per incident, the stylesheet, the
//! Atom feed, the Statuspage-format JSON and `/-/healthy`. GET and HEAD only (other methods on
//! these paths answer 405); unknown paths get the HTML 404 page. No handler reads a request body.
//!
//! Every document is rendered once per snapshot version and then served from memory: the first
//! request after a change renders it (under the cache's lock, so a burst renders once), the
//! others clone the bytes. The `ETag` names the process and the version, so `If-None-Match`
//! answers 304 until the page changes.
//!
//! Every response carries the security headers ([`CSP`], `nosniff`, `no-referrer`,
//! `X-Frame-Options: DENY`); the JSON routes also carry `Access-Control-Allow-Origin: *` (they
//! are public, and widgets read them from other origins).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;

use super::model::{Snapshot, Source};
use super::{feed, html, summary};

/// The Content-Security-Policy of every response: nothing but same-origin stylesheets and
/// images, no script at all, no framing.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
                       form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const HTML: &str = "text/html; charset=utf-8";
const JSON: &str = "application/json; charset=utf-8";
const ATOM: &str = "application/atom+xml; charset=utf-8";
const CSS_TYPE: &str = "text/css; charset=utf-8";

/// A cached document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Doc {
    Index,
    Incident(i64),
    NotFound,
    Atom,
    Summary,
    Status,
    Components,
    Incidents,
    Unresolved,
    Maintenances,
}

impl Doc {
    fn content_type(self) -> &'static str {
        match self {
            Doc::Index | Doc::Incident(_) | Doc::NotFound => HTML,
            Doc::Atom => ATOM,
            _ => JSON,
        }
    }

    fn is_api(self) -> bool {
        self.content_type() == JSON
    }

    /// Renders the document, `None` for an incident the snapshot does not have.
    fn render(self, snap: &Snapshot) -> Option<Vec<u8>> {
        Some(match self {
            Doc::Index => html::index(snap).into_bytes(),
            Doc::Incident(id) => html::incident(snap, id)?.into_bytes(),
            Doc::NotFound => html::not_found(snap).into_bytes(),
            Doc::Atom => feed::atom(snap).into_bytes(),
            Doc::Summary => summary::summary(snap),
            Doc::Status => summary::status_json(snap),
            Doc::Components => summary::components_json(snap),
            Doc::Incidents => summary::incidents_json(snap),
            Doc::Unresolved => summary::unresolved_json(snap),
            Doc::Maintenances => summary::maintenances_json(snap),
        })
    }
}

/// The rendered documents of one snapshot version.
#[derive(Default)]
struct Cache {
    version: u64,
    docs: HashMap<Doc, Option<Bytes>>,
}

struct Shared {
    source: Arc<dyn Source>,
    /// Part of every ETag, so a restarted process (whose versions start again) never matches
    /// a client's old one.
    boot: u64,
    cache: Mutex<Cache>,
}

impl Shared {
    /// The document's bytes for this snapshot (rendered at most once per version), `None` when
    /// it does not exist.
    fn bytes(&self, snap: &Snapshot, doc: Doc) -> Option<Bytes> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if snap.version > cache.version || cache.docs.is_empty() {
            cache.version = snap.version;
            cache.docs.clear();
        }
        if snap.version != cache.version {
            // An older snapshot than the cached one (a request that raced a change): render
            // without caching.
            drop(cache);
            return doc.render(snap).map(Bytes::from);
        }
        if let Some(hit) = cache.docs.get(&doc) {
            return hit.clone();
        }
        let rendered = doc.render(snap).map(Bytes::from);
        // Incidents that do not exist are not kept: their ids come from requests.
        if rendered.is_some() || !matches!(doc, Doc::Incident(_)) {
            cache.docs.insert(doc, rendered.clone());
        }
        rendered
    }
}

/// The public listener's router over `source` (the running page, or a fixed snapshot).
pub fn router(source: Arc<dyn Source>) -> Router {
    let boot = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ u64::from(std::process::id());
    let shared = Arc::new(Shared {
        source,
        boot: html::fnv1a(&boot.to_le_bytes()),
        cache: Mutex::new(Cache::default()),
    });
    let doc =
        |d: Doc| move |State(s): State<Arc<Shared>>, h: HeaderMap| async move { serve(&s, &h, d) };
    Router::new()
        .route("/", get(doc(Doc::Index)))
        .route("/incidents/{id}", get(incident))
        .route("/static/status.css", get(css))
        .route("/history.atom", get(doc(Doc::Atom)))
        .route("/api/v2/summary.json", get(doc(Doc::Summary)))
        .route("/api/v2/status.json", get(doc(Doc::Status)))
        .route("/api/v2/components.json", get(doc(Doc::Components)))
        .route("/api/v2/incidents.json", get(doc(Doc::Incidents)))
        .route(
            "/api/v2/incidents/unresolved.json",
            get(doc(Doc::Unresolved)),
        )
        .route(
            "/api/v2/scheduled-maintenances.json",
            get(doc(Doc::Maintenances)),
        )
        .route(
            "/api/v2/scheduled-maintenances/upcoming.json",
            get(doc(Doc::Maintenances)),
        )
        .route(
            "/api/v2/scheduled-maintenances/active.json",
            get(doc(Doc::Maintenances)),
        )
        .route("/-/healthy", get(healthy))
        .fallback(not_found)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(shared)
}

/// Whether `If-None-Match` names `etag` (or is `*`).
fn matches_etag(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

fn serve(shared: &Shared, headers: &HeaderMap, doc: Doc) -> Response {
    let snap = shared.source.snapshot();
    let (status, doc, body) = match shared.bytes(&snap, doc) {
        Some(body) if doc == Doc::NotFound => (StatusCode::NOT_FOUND, doc, body),
        Some(body) => (StatusCode::OK, doc, body),
        None => {
            let body = shared
                .bytes(&snap, Doc::NotFound)
                .expect("the 404 page always renders");
            (StatusCode::NOT_FOUND, Doc::NotFound, body)
        }
    };
    let etag = format!("\"{:x}-{:x}\"", shared.boot, snap.version);
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, doc.content_type())
        .header(header::CACHE_CONTROL, "no-cache");
    if doc.is_api() {
        builder = builder.header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*");
    }
    if status == StatusCode::OK {
        builder = builder.header(header::ETAG, &etag);
        if matches_etag(headers, &etag) {
            return builder
                .status(StatusCode::NOT_MODIFIED)
                .body(axum::body::Body::empty())
                .expect("valid response");
        }
    }
    builder
        .status(status)
        .body(axum::body::Body::from(body))
        .expect("valid response")
}

async fn incident(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    // Only plain decimal ids: `+1` or `01` would be a second address for the same page.
    let doc = match id.parse::<i64>() {
        Ok(n) if n.to_string() == id => Doc::Incident(n),
        _ => Doc::NotFound,
    };
    serve(&shared, &headers, doc)
}

async fn not_found(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    serve(&shared, &headers, Doc::NotFound)
}

async fn css(headers: HeaderMap) -> Response {
    let etag = format!("\"css-{:x}\"", html::fnv1a(html::CSS.as_bytes()));
    let base = [
        (header::CACHE_CONTROL, "public, max-age=3600"),
        (header::ETAG, etag.as_str()),
    ];
    if matches_etag(&headers, &etag) {
        return (StatusCode::NOT_MODIFIED, base).into_response();
    }
    (base, [(header::CONTENT_TYPE, CSS_TYPE)], html::CSS).into_response()
}

async fn healthy() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        "Healthy\n",
    )
        .into_response()
}

async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::html::tests::evil_snapshot;

    #[test]
    fn a_document_renders_once_per_version() {
        let snap = evil_snapshot();
        let shared = Shared {
            source: Arc::new(Arc::new(snap.clone())),
            boot: 1,
            cache: Mutex::new(Cache::default()),
        };
        let a = shared.bytes(&snap, Doc::Summary).unwrap();
        let b = shared.bytes(&snap, Doc::Summary).unwrap();
        // The same allocation: the second request did not render.
        assert_eq!(a.as_ptr(), b.as_ptr());
        assert!(shared.bytes(&snap, Doc::Incident(99)).is_none());
        assert!(!shared
            .cache
            .lock()
            .unwrap()
            .docs
            .contains_key(&Doc::Incident(99)));
    }
}
