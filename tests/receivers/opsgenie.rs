//! A fake Opsgenie Alert API, following "Alert API" (create alert, close alert) and "API
//! Access" / "API rate limiting" of Opsgenie's documentation.
//!
//! Answers, in [`Mode::Accept`]:
//! - **401** `{"message":"Could not authenticate","took":0.0,"requestId":"…"}` when the
//!   `Authorization` header is not `GenieKey <key>`, or the key is not the one given to
//!   [`Opsgenie::expect_api_key`] (the real service's message; it checks keys the same way).
//! - `POST /v2/alerts` (create): **202** `{"result":"Request will be processed","took":…,
//!   "requestId":"…"}` for a valid body; **422** `{"message":"Request body is not processable.
//!   Please check the errors.","errors":{"<field>":"<why>"},…}` when it breaks the documented
//!   rules: `message` a non-blank string of at most 130 characters (the only required field),
//!   `alias` at most 512, `description` at most 15,000, `entity` at most 512, `source` and `user`
//!   at most 100, `note` at most 25,000 characters, `priority` one of P1–P5, `tags` at most 20
//!   strings of at most 50 characters, `details` an object of string values of at most 8,000
//!   characters in all (keys and values). The documentation says what is limited, not what
//!   happens past a limit: the fake refuses, so canaryd has to cut (its own choice; the wording
//!   of each error is the fake's own, in the style of "Message can not be empty.").
//! - `POST /v2/alerts/{identifier}/close?identifierType=alias|id|tiny` (default `id`): **202**;
//!   optional body with `user`, `source` (≤ 100) and `note` (≤ 25,000); an unknown identifier
//!   type is 422.
//! - **404** for other paths, **405** for other methods.
//!
//! Alerts follow "Alert De-duplication": a create with the alias of an open alert raises its
//! `count` instead of opening a new one; close closes it; a close of an unknown or closed alias
//! is accepted with 202 (processing is asynchronous) and dropped (counted by `noops()`); a create
//! after a close opens a new alert.
//!
//! Other modes: `Status(c)` → c `{"message":"<reason>"}`; `RateLimit` → 429 `{"message":"You are
//! making too many requests! To avoid errors, we recommend you limit requests."}` (the
//! service's wording) with `Retry-After` when given; `Gone` → 404; `InvalidToken` → 401.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::Router;
use serde_json::{json, Map, Value};

use super::{lock, poll_until, poll_until_async, random_hex, reason, Mode, Reply, Server};

/// One alert as Opsgenie keeps it.
#[derive(Debug, Clone)]
pub struct Alert {
    pub alias: String,
    /// The create body that opened it.
    pub created: Value,
    /// Open until a close arrives.
    pub open: bool,
    /// Creates folded into it, the first included.
    pub count: usize,
    /// The close body, once closed.
    pub closed_with: Option<Value>,
}

/// One request that reached the handler.
#[derive(Debug, Clone)]
pub struct OgRequest {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub authorization: Option<String>,
    pub body: String,
    pub status: u16,
}

#[derive(Debug)]
struct OgState {
    mode: Mode,
    expected_key: Option<String>,
    requests: Vec<OgRequest>,
    /// Accepted actions in order: ("create" | "close", alias).
    actions: Vec<(String, String)>,
    alerts: Vec<Alert>,
    noops: usize,
}

/// The fake (see the module documentation).
pub struct Opsgenie {
    state: Arc<Mutex<OgState>>,
    server: Server,
}

impl Opsgenie {
    /// Starts the fake on a free 127.0.0.1 port, in [`Mode::Accept`], accepting any key.
    pub fn start() -> Opsgenie {
        let state = Arc::new(Mutex::new(OgState {
            mode: Mode::Accept,
            expected_key: None,
            requests: Vec::new(),
            actions: Vec::new(),
            alerts: Vec::new(),
            noops: 0,
        }));
        let router = Router::new()
            .fallback(og_handle)
            .with_state(Arc::clone(&state));
        Opsgenie {
            server: Server::start("opsgenie", router),
            state,
        }
    }

    /// `http://127.0.0.1:PORT`, the API base (`/v2/alerts` below it).
    pub fn url(&self) -> String {
        self.server.base_url()
    }

    pub fn set_mode(&self, mode: Mode) {
        mode.check();
        lock(&self.state).mode = mode;
        self.server.gate.set_mode(mode);
    }

    /// From now on only `GenieKey <key>` authenticates.
    pub fn expect_api_key(&self, key: &str) {
        lock(&self.state).expected_key = Some(key.to_string());
    }

    /// Every request that reached the handler, whatever the answer.
    pub fn requests(&self) -> Vec<OgRequest> {
        lock(&self.state).requests.clone()
    }

    /// Accepted creates and closes, in order: (action, alias).
    pub fn actions(&self) -> Vec<(String, String)> {
        lock(&self.state).actions.clone()
    }

    /// Every alert, in the order they were opened.
    pub fn alerts(&self) -> Vec<Alert> {
        lock(&self.state).alerts.clone()
    }

    /// Closes that matched no open alert.
    pub fn noops(&self) -> usize {
        lock(&self.state).noops
    }

    /// Blocks until `done(self)` is true (true) or `timeout` passes (false).
    pub fn wait_until(&self, mut done: impl FnMut(&Opsgenie) -> bool, timeout: Duration) -> bool {
        poll_until(timeout, || done(self))
    }

    /// [`Opsgenie::wait_until`] for async tests.
    pub async fn wait_until_async(
        &self,
        mut done: impl FnMut(&Opsgenie) -> bool,
        timeout: Duration,
    ) -> bool {
        poll_until_async(timeout, || done(self)).await
    }
}

fn og_json(status: u16, mut body: Value) -> Reply {
    body["took"] = json!(0.01);
    body["requestId"] = json!(random_hex(32));
    Reply::json(status, body)
}

fn unprocessable(errors: Map<String, Value>) -> Reply {
    og_json(
        422,
        json!({"message": "Request body is not processable. Please check the errors.", "errors": errors}),
    )
}

async fn og_handle(
    State(state): State<Arc<Mutex<OgState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let mut st = lock(&state);
    let authorization = headers
        .get("authorization")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let reply = og_answer(&mut st, &method, &uri, authorization.as_deref(), &body);
    st.requests.push(OgRequest {
        method: method.to_string(),
        target: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_string(), |pq| pq.as_str().to_string()),
        authorization,
        body: String::from_utf8_lossy(&body).into_owned(),
        status: reply.status,
    });
    reply
}

fn og_answer(
    st: &mut OgState,
    method: &Method,
    uri: &Uri,
    authorization: Option<&str>,
    body: &[u8],
) -> Reply {
    match st.mode {
        Mode::Accept | Mode::Refuse => {}
        Mode::Status(c) => return og_json(c, json!({"message": reason(c)})),
        Mode::RateLimit { retry_after_secs } => {
            return og_json(
                429,
                json!({"message": "You are making too many requests! To avoid errors, we recommend you limit requests."}),
            )
            .retry_after(retry_after_secs)
        }
        Mode::Gone => return og_json(404, json!({"message": "Not Found"})),
        Mode::InvalidToken => return og_json(401, json!({"message": "Could not authenticate"})),
    }
    let segs: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    let close_of = match segs.as_slice() {
        ["v2", "alerts"] => None,
        ["v2", "alerts", id, "close"] if !id.is_empty() => Some(id.to_string()),
        _ => return og_json(404, json!({"message": "Not Found"})),
    };
    if method != Method::POST {
        return og_json(405, json!({"message": "Method Not Allowed"})).allow("POST");
    }
    let key = authorization.and_then(|a| a.strip_prefix("GenieKey "));
    let authentic = match (&st.expected_key, key) {
        (_, None) => false,
        (Some(want), Some(got)) => want == got,
        (None, Some(got)) => !got.trim().is_empty(),
    };
    if !authentic {
        return og_json(401, json!({"message": "Could not authenticate"}));
    }
    let parsed: Option<Map<String, Value>> = if body.is_empty() && close_of.is_some() {
        Some(Map::new())
    } else {
        serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.as_object().cloned())
    };
    let Some(obj) = parsed else {
        return og_json(
            400,
            json!({"message": "Could not parse the request body as JSON"}),
        );
    };
    let mut errors = Map::new();
    let mut limit = |field: &str, max: usize| match obj.get(field) {
        None => {}
        Some(Value::String(s)) if s.chars().count() <= max => {}
        Some(Value::String(_)) => {
            errors.insert(
                field.into(),
                json!(format!("{field} can not be longer than {max} characters.")),
            );
        }
        Some(_) => {
            errors.insert(field.into(), json!(format!("{field} must be a string.")));
        }
    };
    for (f, max) in [("source", 100), ("user", 100), ("note", 25_000)] {
        limit(f, max);
    }
    match close_of {
        Some(id) => {
            let kind = uri
                .query()
                .unwrap_or("")
                .split('&')
                .find_map(|kv| kv.strip_prefix("identifierType="))
                .unwrap_or("id");
            if !["id", "alias", "tiny"].contains(&kind) {
                errors.insert(
                    "identifierType".into(),
                    json!("identifierType should be one of id, alias or tiny."),
                );
            }
            if !errors.is_empty() {
                return unprocessable(errors);
            }
            let open = st
                .alerts
                .iter_mut()
                .find(|a| a.open && kind == "alias" && a.alias == id);
            match open {
                Some(a) => {
                    a.open = false;
                    a.closed_with = Some(Value::Object(obj));
                    st.actions.push(("close".into(), id));
                }
                None => st.noops += 1,
            }
        }
        None => {
            for (f, max) in [("alias", 512), ("description", 15_000), ("entity", 512)] {
                limit(f, max);
            }
            match obj.get("message") {
                Some(Value::String(m)) if m.trim().is_empty() => {
                    errors.insert("message".into(), json!("Message can not be empty."));
                }
                Some(Value::String(m)) if m.chars().count() > 130 => {
                    errors.insert(
                        "message".into(),
                        json!("Message can not be longer than 130 characters."),
                    );
                }
                Some(Value::String(_)) => {}
                _ => {
                    errors.insert("message".into(), json!("Message can not be empty."));
                }
            }
            if let Some(p) = obj.get("priority") {
                if !["P1", "P2", "P3", "P4", "P5"].contains(&p.as_str().unwrap_or("")) {
                    errors.insert(
                        "priority".into(),
                        json!("Priority should be one of [P1, P2, P3, P4, P5]."),
                    );
                }
            }
            match obj.get("tags") {
                None => {}
                Some(Value::Array(tags))
                    if tags.len() <= 20
                        && tags
                            .iter()
                            .all(|t| t.as_str().is_some_and(|t| t.chars().count() <= 50)) => {}
                Some(_) => {
                    errors.insert(
                        "tags".into(),
                        json!("At most 20 tags of at most 50 characters each."),
                    );
                }
            }
            match obj.get("details") {
                None => {}
                Some(Value::Object(d))
                    if d.values().all(Value::is_string)
                        && d.iter()
                            .map(|(k, v)| {
                                k.chars().count() + v.as_str().unwrap_or("").chars().count()
                            })
                            .sum::<usize>()
                            <= 8000 => {}
                Some(_) => {
                    errors.insert(
                        "details".into(),
                        json!("Details should be a map of strings of at most 8000 characters."),
                    );
                }
            }
            if !errors.is_empty() {
                return unprocessable(errors);
            }
            let alias = obj
                .get("alias")
                .and_then(Value::as_str)
                .or_else(|| obj.get("message").and_then(Value::as_str))
                .unwrap_or("")
                .to_string();
            match st.alerts.iter_mut().find(|a| a.open && a.alias == alias) {
                Some(a) => a.count += 1,
                None => st.alerts.push(Alert {
                    alias: alias.clone(),
                    created: Value::Object(obj),
                    open: true,
                    count: 1,
                    closed_with: None,
                }),
            }
            st.actions.push(("create".into(), alias));
        }
    }
    og_json(202, json!({"result": "Request will be processed"}))
}
