//! The `http` probe kind: one request or scripted steps.
//!
//! One run = one fresh cookie jar and one variable scope; nothing leaks between runs. Each step
//! renders its request from templates, sends it over a fresh connection ([`transport::send`]),
//! follows redirects hop by hop (cookies set on a hop are kept; credentials are dropped when a
//! hop leaves the host), evaluates its assertions, then extracts variables for later steps.
//! Every message is passed through [`Redactor`] so no secret or extracted value is ever shown.

mod assert;
pub mod def;
mod extract;
pub mod heavy;

#[cfg(test)]
mod props;
pub mod spec;
pub mod transport;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cookie_store::CookieStore;
use http::header::{self, HeaderMap, HeaderValue};
use http::Method;
use tokio::time::Instant;
use url::Url;

use super::{
    BoxFuture, CheckResult, Hop, Probe, Reason, RunContext, StepResult, BODY_EXCERPT_CHARS,
};
use crate::config::template::{Secret, Template, Undefined};
use heavy::JobError;
use spec::{BodySpec, HttpSpec, JsonTemplate, StepSpec};

/// A built `http` probe.
pub struct HttpProbe {
    spec: Arc<HttpSpec>,
    tls: Arc<rustls::ClientConfig>,
    /// Every secret value this check's templates carry.
    secret_values: Vec<String>,
    /// Their redactor, built at the first run (compiling the patterns of every check's secrets
    /// at load would slow down `canaryd check` and reloads).
    secrets: std::sync::OnceLock<Redactor>,
}

impl HttpProbe {
    /// Builds the probe: loads TLS material now, so a bad file is a load error, not a run error.
    pub fn new(spec: Arc<HttpSpec>) -> Result<HttpProbe, String> {
        let tls = spec.tls.client_config()?;
        let mut secrets = Vec::new();
        for step in &spec.steps {
            collect_secrets(step, &mut secrets);
        }
        Ok(HttpProbe {
            spec,
            tls,
            secret_values: secrets,
            secrets: std::sync::OnceLock::new(),
        })
    }

    /// The definition this probe runs.
    pub fn spec(&self) -> &HttpSpec {
        &self.spec
    }

    /// The redactor of this check's secrets.
    fn secrets(&self) -> &Redactor {
        self.secrets
            .get_or_init(|| Redactor::new(&self.secret_values))
    }
}

fn collect_secrets(step: &StepSpec, out: &mut Vec<String>) {
    let mut add = |t: &Template| {
        out.extend(
            t.secrets()
                .map(|s| s.expose().to_string())
                .filter(|s| !s.is_empty()),
        )
    };
    let r = &step.request;
    add(&r.url);
    r.headers.iter().for_each(|(_, t)| add(t));
    r.query.iter().for_each(|(_, t)| add(t));
    match &r.body {
        BodySpec::None => {}
        BodySpec::Raw(t) => add(t),
        BodySpec::Form(f) => f.iter().for_each(|(_, t)| add(t)),
        BodySpec::Json(j) => json_secrets(j, &mut add),
    }
}

fn json_secrets(j: &JsonTemplate, add: &mut dyn FnMut(&Template)) {
    match j {
        JsonTemplate::String(t) => add(t),
        JsonTemplate::Array(a) => a.iter().for_each(|x| json_secrets(x, add)),
        JsonTemplate::Object(o) => o.iter().for_each(|(_, x)| json_secrets(x, add)),
        JsonTemplate::Scalar(_) => {}
    }
}

pub use crate::redact::Redactor;

/// Per-run state: variables and the cookie jar.
struct Scope {
    vars: HashMap<String, String>,
    jar: CookieStore,
    base_url: Option<String>,
}

impl Scope {
    fn lookup(&self, name: &str) -> Option<Cow<'_, str>> {
        if let Some(v) = self.vars.get(name) {
            return Some(Cow::Borrowed(v));
        }
        match name {
            "base_url" => self.base_url.as_deref().map(Cow::Borrowed),
            "uuid" => Some(Cow::Owned(uuid::Uuid::new_v4().to_string())),
            "now" => Some(Cow::Owned(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs()
                    .to_string(),
            )),
            _ => None,
        }
    }

    fn render<'t>(&'t self, t: &'t Template) -> Result<Cow<'t, str>, Undefined> {
        t.render(|n| self.lookup(n))
    }
}

impl Probe for HttpProbe {
    fn run<'a>(&'a self, ctx: RunContext) -> BoxFuture<'a, CheckResult> {
        Box::pin(self.run_flow(ctx))
    }
}

impl HttpProbe {
    async fn run_flow(&self, ctx: RunContext) -> CheckResult {
        let started_at = SystemTime::now();
        let begun = Instant::now();
        let mut scope = Scope {
            vars: HashMap::new(),
            jar: CookieStore::default(),
            base_url: self
                .spec
                .base_url
                .as_ref()
                .map(|u| u.as_str().trim_end_matches('/').to_string()),
        };
        let mut steps = Vec::with_capacity(self.spec.steps.len());
        let mut failure: Option<(Reason, String)> = None;
        for (index, step) in self.spec.steps.iter().enumerate() {
            if failure.is_some() && !step.always_run {
                steps.push(StepResult {
                    name: step.name.clone(),
                    request_line: request_line(step),
                    ..Default::default()
                });
                continue;
            }
            let result = self.run_step(index, step, &mut scope, ctx).await;
            if !result.success && failure.is_none() && !step.continue_on_failure {
                let reason = result.reason.unwrap_or(Reason::Internal);
                let msg = format!(
                    "step {:?}: {}",
                    step.name,
                    result.message.as_deref().unwrap_or("failed")
                );
                failure = Some((reason, msg));
            }
            steps.push(result);
        }
        // Redact extracted values from messages too: a token echoed in an error is still a token.
        // Secrets first (their encodings are longer than the values), then extracted values.
        let values = Redactor::whole(scope.vars.values());
        let secrets = self.secrets();
        let redact = |t: &str| values.apply(&secrets.apply(t));
        for s in &mut steps {
            if let Some(m) = &s.message {
                s.message = Some(redact(m));
            }
            for a in &mut s.assertions {
                a.detail = a.detail.as_deref().map(redact);
            }
            if let Some(b) = &s.body_excerpt {
                s.body_excerpt = Some(redact(b));
            }
            // A Location the target built may carry an echoed secret in its path.
            for h in &mut s.hops {
                h.location = redact(&h.location);
            }
        }
        let (success, reason, message) = match failure {
            None => (true, None, None),
            Some((r, m)) => (false, Some(r), Some(redact(&m))),
        };
        CheckResult {
            success,
            reason,
            message,
            duration: begun.elapsed(),
            started_at,
            steps,
            observations: Vec::new(),
            detail: None,
            attempts: 1,
        }
    }

    /// Runs step `index` (`step` is `self.spec.steps[index]`; the index lets body work move to
    /// a blocking thread with the spec).
    async fn run_step(
        &self,
        index: usize,
        step: &StepSpec,
        scope: &mut Scope,
        ctx: RunContext,
    ) -> StepResult {
        let begun = Instant::now();
        let deadline = match step.timeout {
            Some(t) => ctx.deadline.min(begun + t),
            None => ctx.deadline,
        };
        let mut out = StepResult {
            name: step.name.clone(),
            ran: true,
            request_line: request_line(step),
            ..Default::default()
        };
        let fail = |out: &mut StepResult, reason: Reason, msg: String| {
            out.success = false;
            out.reason = Some(reason);
            out.message = Some(msg);
        };
        let (mut req, carries_secret_headers) = match self.build_request(step, scope) {
            Ok(r) => r,
            // Only run-time values can break a request here (configured literals and secrets are
            // checked at load): an extracted value that is missing, or that a URL or a header
            // cannot carry (a line break from the target), so the reason is extraction.
            Err(msg) => {
                fail(&mut out, Reason::Extraction, msg);
                out.duration = begun.elapsed();
                return out;
            }
        };
        let original_host = host_key(&req.url);
        let mut hops = 0u32;
        let response = loop {
            set_cookie_header(&mut req, &scope.jar);
            let opts = transport::Options {
                tls: &self.tls,
                server_name: self.spec.tls.server_name.as_deref(),
                body_limit: self.spec.body_limit,
                deadline,
            };
            let resp = match transport::send(&req, &opts).await {
                Ok(r) => r,
                Err(e) => {
                    out.phases.add(&e.phases);
                    out.failed_phase = e.phase;
                    fail(&mut out, e.reason, e.message);
                    out.duration = begun.elapsed();
                    return out;
                }
            };
            for v in resp.headers.get_all(header::SET_COOKIE) {
                if let Ok(s) = v.to_str() {
                    let _ = scope.jar.parse(s, &req.url);
                }
            }
            let location = resp
                .headers
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(str::to_string);
            let is_redirect = matches!(resp.status, 301 | 302 | 303 | 307 | 308);
            match (is_redirect && step.follow_redirects, location) {
                (true, Some(loc)) => {
                    if hops >= self.spec.max_redirects {
                        out.phases.add(&resp.phases);
                        out.status = Some(resp.status);
                        fail(
                            &mut out,
                            Reason::Protocol,
                            format!("more than {} redirects", self.spec.max_redirects),
                        );
                        out.duration = begun.elapsed();
                        return out;
                    }
                    let next = match req.url.join(&loc) {
                        Ok(u) if matches!(u.scheme(), "http" | "https") => u,
                        _ => {
                            out.phases.add(&resp.phases);
                            out.status = Some(resp.status);
                            fail(
                                &mut out,
                                Reason::Protocol,
                                format!(
                                    "redirect {} to an invalid or non-HTTP location",
                                    resp.status
                                ),
                            );
                            out.duration = begun.elapsed();
                            return out;
                        }
                    };
                    out.hops.push(Hop {
                        status: resp.status,
                        location: display_url(&next),
                        phases: resp.phases,
                    });
                    out.phases.add(&resp.phases);
                    hops += 1;
                    // Browsers turn a redirected POST into a GET (303 always; 301/302 for POST).
                    if resp.status == 303
                        || (matches!(resp.status, 301 | 302) && req.method == Method::POST)
                    {
                        if req.method != Method::HEAD {
                            req.method = Method::GET;
                        }
                        req.body = Bytes::new();
                        req.headers.remove(header::CONTENT_TYPE);
                        req.headers.remove(header::CONTENT_LENGTH);
                    }
                    if host_key(&next) != original_host {
                        // Never hand credentials to another host.
                        req.headers.remove(header::AUTHORIZATION);
                        req.headers.remove(header::PROXY_AUTHORIZATION);
                        for name in &carries_secret_headers {
                            req.headers.remove(name);
                        }
                    }
                    req.url = next;
                }
                _ => {
                    out.phases.add(&resp.phases);
                    break resp;
                }
            }
        };
        out.duration = begun.elapsed();
        out.status = Some(response.status);
        out.cert_not_after = response.cert_not_after;
        // The body's start, kept (a shared slice, no copy) to show what came back if an
        // assertion or an extraction fails on it.
        let head = response.body.slice(..response.body.len().min(BODY_EXCERPT_CHARS * 4));
        let total = response.body.len();
        let verdict = if assert::reads_body(step) || extract::reads_body(step) {
            let spec = self.spec.clone();
            let base = out.clone();
            let (url, jar, took) = (req.url.clone(), scope.jar.clone(), out.duration);
            let job = heavy::run(deadline, move |cancel| {
                let step = &spec.steps[index];
                let ok = assert::evaluate(step, &response, &url, &jar, took, &mut out);
                let extracted = ok.then(|| extract::run(step, &response, &jar, &url, cancel));
                (out, extracted)
            });
            match job.await {
                Ok(v) => v,
                Err(e) => {
                    out = base;
                    let (reason, msg) = match e {
                        JobError::Timeout => (
                            Reason::Timeout,
                            format!(
                                "timed out parsing the response (after {})",
                                short_duration(begun.elapsed())
                            ),
                        ),
                        JobError::Panicked => {
                            (Reason::Internal, "parsing the response failed".to_string())
                        }
                    };
                    fail(&mut out, reason, msg);
                    out.duration = begun.elapsed();
                    return out;
                }
            }
        } else {
            let ok = assert::evaluate(
                step,
                &response,
                &req.url,
                &scope.jar,
                out.duration,
                &mut out,
            );
            let extracted = ok.then(|| {
                let never = heavy::Cancel::never();
                extract::run(step, &response, &scope.jar, &req.url, &never)
            });
            (out, extracted)
        };
        out = verdict.0;
        match verdict.1 {
            None => {
                out.body_excerpt = Some(body_excerpt(&head, total));
                out.duration = begun.elapsed();
                return out;
            }
            Some(Ok(values)) => {
                // Kept for `canaryd probe --show-values` only, in a type that never prints, with
                // any configured secret the peer echoed into it already removed.
                for (k, v) in values {
                    out.extracted.push(k.clone());
                    out.extracted_values
                        .push((k.clone(), Secret::new(self.secrets().apply(&v))));
                    scope.vars.insert(k, v);
                }
            }
            Some(Err(extract::Failed::Missing(msg))) => {
                fail(&mut out, Reason::Extraction, msg);
                out.body_excerpt = Some(body_excerpt(&head, total));
                return out;
            }
            Some(Err(extract::Failed::Cancelled)) => {
                fail(
                    &mut out,
                    Reason::Timeout,
                    format!(
                        "timed out parsing the response (after {})",
                        short_duration(begun.elapsed())
                    ),
                );
                out.duration = begun.elapsed();
                return out;
            }
        }
        out.success = true;
        out
    }

    /// Renders a step's request. Returns the request and the names of configured headers that
    /// carry secrets (dropped on a cross-host redirect like Authorization).
    fn build_request(
        &self,
        step: &StepSpec,
        scope: &Scope,
    ) -> Result<(transport::Request, Vec<http::HeaderName>), String> {
        let r = &step.request;
        let undefined = |e: Undefined, what: &str| format!("{what}: {e}");
        // Secrets are percent-encoded for the URL component they land in.
        let raw = r
            .url
            .render_url(|n| scope.lookup(n))
            .map_err(|e| undefined(e, "url"))?;
        let mut url = if raw.starts_with("http://") || raw.starts_with("https://") {
            Url::parse(&raw)
        } else {
            match &self.spec.base_url {
                Some(base) => base.join(&raw),
                None => Url::parse(&raw),
            }
        }
        .map_err(|e| {
            format!(
                "url {:?} is invalid after filling in variables: {e}",
                r.url.redacted()
            )
        })?;
        if !r.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &r.query {
                pairs.append_pair(k, &scope.render(v).map_err(|e| undefined(e, "query"))?);
            }
        }
        let mut headers = HeaderMap::new();
        let mut secret_headers = Vec::new();
        for (name, t) in &r.headers {
            let v = scope.render(t).map_err(|e| undefined(e, name.as_str()))?;
            let v = HeaderValue::from_str(&v).map_err(|_| {
                format!("header {name}: the value after filling in variables is not a valid header value (a line break or control character)")
            })?;
            if t.has_secret() || t.variables().next().is_some() {
                secret_headers.push(name.clone());
            }
            headers.append(name.clone(), v);
        }
        let (body, content_type) = match &r.body {
            BodySpec::None => (Bytes::new(), None),
            BodySpec::Raw(t) => (
                Bytes::from(
                    scope
                        .render(t)
                        .map_err(|e| undefined(e, "body"))?
                        .into_owned(),
                ),
                None,
            ),
            BodySpec::Form(fields) => {
                let mut ser = url::form_urlencoded::Serializer::new(String::new());
                for (k, t) in fields {
                    ser.append_pair(k, &scope.render(t).map_err(|e| undefined(e, "form"))?);
                }
                (
                    Bytes::from(ser.finish()),
                    Some("application/x-www-form-urlencoded"),
                )
            }
            BodySpec::Json(j) => {
                let v = render_json(j, scope).map_err(|e| undefined(e, "json"))?;
                (
                    Bytes::from(serde_json::to_vec(&v).unwrap_or_default()),
                    Some("application/json"),
                )
            }
        };
        if let Some(ct) = content_type {
            if !headers.contains_key(header::CONTENT_TYPE) {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            }
        }
        Ok((
            transport::Request {
                method: r.method.clone(),
                url,
                headers,
                body,
            },
            secret_headers,
        ))
    }
}

fn render_json(j: &JsonTemplate, scope: &Scope) -> Result<serde_json::Value, Undefined> {
    Ok(match j {
        JsonTemplate::Scalar(v) => v.clone(),
        JsonTemplate::String(t) => serde_json::Value::String(scope.render(t)?.into_owned()),
        JsonTemplate::Array(a) => serde_json::Value::Array(
            a.iter()
                .map(|x| render_json(x, scope))
                .collect::<Result<_, _>>()?,
        ),
        JsonTemplate::Object(o) => {
            let mut m = serde_json::Map::new();
            for (k, x) in o {
                m.insert(k.clone(), render_json(x, scope)?);
            }
            serde_json::Value::Object(m)
        }
    })
}

fn set_cookie_header(req: &mut transport::Request, jar: &CookieStore) {
    let cookies: Vec<String> = jar
        .get_request_values(&req.url)
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    req.headers.remove(header::COOKIE);
    if !cookies.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&cookies.join("; ")) {
            req.headers.insert(header::COOKIE, v);
        }
    }
}

/// Scheme, host and port: what "the same host" means for credentials.
fn host_key(u: &Url) -> (String, Option<String>, Option<u16>) {
    (
        u.scheme().to_string(),
        u.host_str().map(str::to_string),
        u.port_or_known_default(),
    )
}

/// A URL for display: origin and path, never the query (it may carry tokens).
pub fn display_url(u: &Url) -> String {
    format!("{}{}", u.origin().ascii_serialization(), u.path())
}

fn request_line(step: &StepSpec) -> String {
    let url = step.request.url.redacted();
    let url = url.split('?').next().unwrap_or(url);
    format!("{} {}", step.request.method, url)
}

/// Days from now until `t` (negative when past).
pub fn days_until(t: SystemTime) -> f64 {
    match t.duration_since(SystemTime::now()) {
        Ok(d) => d.as_secs_f64() / 86400.0,
        Err(e) => -(e.duration().as_secs_f64() / 86400.0),
    }
}

/// Seconds as a short human string (`1.23s`, `45ms`).
pub fn short_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.2}s", d.as_secs_f64())
    }
}


/// The start of a body as text a terminal can show: invalid UTF-8 replaced, control characters
/// but line breaks and tabs shown as `\u{..}`, at most [`BODY_EXCERPT_CHARS`] characters, with
/// how much was left out. Redacted by the run like every message.
fn body_excerpt(head: &[u8], total: usize) -> String {
    if total == 0 {
        return "(empty body)".into();
    }
    let text = String::from_utf8_lossy(head);
    let mut out = String::new();
    let mut shown = 0usize;
    for c in text.chars().take(BODY_EXCERPT_CHARS) {
        if c.is_control() && c != '\n' && c != '\t' {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
        shown += c.len_utf8();
    }
    if shown < total {
        out.push_str(&format!("… ({total} bytes in all)"));
    }
    out
}
