//! The `http` kind's definition: the `http:` keys (one request or scripted steps), their schema
//! rules and validation into an [`HttpSpec`], and the alert variables an http check's results
//! give.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use http::{HeaderName, Method};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::{json, Value as Json};
use serde_saphyr::{Location, Spanned};
use url::Url;

use super::spec::*;
use super::HttpProbe;
use crate::config::ctx::*;
use crate::config::expr::{Type, Value};
use crate::config::limits;
use crate::config::model::{ByteSize, Capped, Dur, Key, OneOrMany, StatusSpec};
use crate::config::schema::{
    self, add_rules, any_case, at_most_one, exactly_one, names, needs, property_names, set, Count,
    Flag, Text, HEADER_NAME, JSONPATH, VAR_NAME, WS,
};
use crate::config::template::Template;
use crate::config::CheckDefaults;
use crate::probe::kind::{BuildEnv, Kind, KindCx, Read, Var};
use crate::probe::tls::{tls, TlsDef, CERT_EXPIRES_IN};
use crate::probe::{CheckResult, Probe, StepResult};

/// The `http` kind.
pub struct Http;

/// The final response: of the failed step, else of the last step that ran.
fn final_step(r: &CheckResult) -> Option<&StepResult> {
    r.failed_step()
        .or_else(|| r.steps.iter().rev().find(|s| s.ran))
}

/// The step a `step.<name>.<field>` variable names.
fn named_step<'r>(r: &'r CheckResult, name: &str) -> Option<&'r StepResult> {
    let rest = name.strip_prefix("step.")?;
    let (step, _) = rest.rsplit_once('.')?;
    r.steps.iter().find(|s| s.name == step)
}

impl Kind for Http {
    const KEY: &'static str = "http";
    const ABOUT: &'static str = "HTTP: one request or scripted steps.";
    const ARTICLE: &'static str = "an";
    const VARS: &'static [Var] = &[
        Var {
            name: "status",
            ty: Type::Number,
            // A step that ran but got no response (refused, timed out, reset) has status 0, as
            // blackbox_exporter's `probe_http_status_code`; a run cut off by the scheduler has
            // no steps at all: no response either.
            read: Read::With(|r, _, _| match final_step(r) {
                Some(s) => Some(Value::Number(f64::from(s.status.unwrap_or(0)))),
                None if !r.success => Some(Value::Number(0.0)),
                None => None,
            }),
            about: "status of the final response: of the failed step, else of the last step that ran; 0 when no response arrived",
        },
        Var {
            name: "failed_step",
            ty: Type::String,
            read: Read::With(|r, _, _| {
                Some(Value::String(
                    r.failed_step().map(|s| s.name.clone()).unwrap_or_default(),
                ))
            }),
            about: "the name of the step that failed (`\"\"` when none)",
        },
        Var {
            about: "time until the earliest-expiring certificate the run saw expires",
            ..CERT_EXPIRES_IN
        },
        Var {
            name: "step.<name>.duration",
            ty: Type::Duration,
            read: Read::With(|r, name, _| {
                named_step(r, name)
                    .filter(|s| s.ran)
                    .map(|s| Value::Duration(s.duration))
            }),
            about: "that step's wall time, redirects included",
        },
        Var {
            name: "step.<name>.status",
            ty: Type::Number,
            read: Read::With(|r, name, _| {
                named_step(r, name)
                    .filter(|s| s.ran)
                    .map(|s| Value::Number(f64::from(s.status.unwrap_or(0))))
            }),
            about: "that step's final status; 0 when it ran and no response arrived",
        },
        Var {
            name: "step.<name>.failed",
            ty: Type::Bool,
            read: Read::With(|r, name, _| {
                named_step(r, name).map(|s| Value::Bool(s.ran && !s.success))
            }),
            about: "that step ran and failed",
        },
    ];
    type Def = HttpDef;
    type Spec = HttpSpec;

    fn validate(cx: &mut KindCx<'_, '_>, def: &HttpDef) -> Option<HttpSpec> {
        let at = cx.at;
        http(cx.ctx, def, &cx.key, cx.defaults, &at)
    }

    fn check_param(spec: &HttpSpec, _var: &Var, step: &str) -> Result<(), String> {
        if spec.steps.iter().any(|s| s.name == step) {
            return Ok(());
        }
        let names: Vec<&str> = spec.steps.iter().map(|s| s.name.as_str()).collect();
        Err(format!(
            "unknown step {step:?} (this check's steps: {})",
            names.join(", ")
        ))
    }

    fn step_names(spec: &HttpSpec) -> Vec<String> {
        spec.steps.iter().map(|s| s.name.clone()).collect()
    }

    fn build(_name: &str, spec: &Arc<HttpSpec>, _env: &BuildEnv) -> Result<Arc<dyn Probe>, String> {
        Ok(Arc::new(HttpProbe::new(spec.clone())?))
    }
}

/// The `http:` kind: `request` (one request) or `steps` (a scripted flow).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = http_rules)]
pub struct HttpDef {
    /// Base for relative step URLs; also `${base_url}`.
    #[schemars(with = "Option<String>", extend("pattern" = schema::HTTP_URL, "patternErrorMessage" = "an http(s) URL"))]
    pub base_url: Option<Spanned<String>>,
    /// The single-request form.
    #[schemars(with = "Option<RequestDef>")]
    pub request: Option<Spanned<RequestDef>>,
    /// Expectations of the single-request form.
    pub expect: Option<ExpectDef>,
    /// Extraction of the single-request form.
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, ExtractDef>>")]
    pub extract: BTreeMap<String, Spanned<ExtractDef>>,
    /// The scripted form (at most 100 steps).
    #[schemars(with = "Option<Vec<StepDef>>", extend("minItems" = 1, "maxItems" = 100))]
    pub steps: Option<Spanned<Capped<StepDef, 100>>>,
    /// Follow redirects (per check; steps may override).
    #[schemars(with = "Option<Flag>")]
    pub follow_redirects: Option<bool>,
    /// Most redirect hops followed per step (default 10).
    #[schemars(with = "Option<Count>", extend("maximum" = 100))]
    pub max_redirects: Option<Spanned<u32>>,
    /// Response body cap.
    #[schemars(with = "Option<ByteSize>")]
    pub body_limit: Option<Spanned<ByteSize>>,
    /// TLS options.
    pub tls_config: Option<TlsDef>,
}

/// One step of a scripted flow.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = step_rules)]
pub struct StepDef {
    /// Unique within the check; used in metrics and `step.<name>.*` alert variables.
    #[schemars(with = "Text", extend("pattern" = schema::NAME, "maxLength" = 128, "patternErrorMessage" = "lowercase letters, digits, - and _"))]
    pub name: Spanned<String>,
    /// The request.
    #[schemars(with = "RequestDef")]
    pub request: Spanned<RequestDef>,
    /// What must hold.
    pub expect: Option<ExpectDef>,
    /// Variables taken from the response.
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, ExtractDef>>")]
    pub extract: BTreeMap<String, Spanned<ExtractDef>>,
    /// Run even after an earlier step failed (e.g. logout).
    #[serde(default)]
    #[schemars(with = "Flag")]
    pub always_run: bool,
    /// A non-critical step: its failure shows in its step metrics and trace, does not end the
    /// flow, and does not fail the check.
    #[serde(default)]
    #[schemars(with = "Flag")]
    pub continue_on_failure: bool,
}

/// A request.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = request_rules)]
pub struct RequestDef {
    /// HTTP method (default GET).
    #[schemars(with = "Option<MethodName>")]
    pub method: Option<Spanned<String>>,
    /// Absolute, or relative to `base_url`.
    #[schemars(with = "String", extend("pattern" = schema::REQUEST_URL, "patternErrorMessage" = "an http(s) URL, or a path starting with / under http.base_url"))]
    pub url: Spanned<String>,
    /// Request headers (templates).
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, Text>>")]
    pub headers: BTreeMap<String, Spanned<String>>,
    /// Query parameters added to the URL (templates).
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, Text>>")]
    pub query: BTreeMap<String, Spanned<String>>,
    /// Raw body (template).
    #[schemars(with = "Option<Text>")]
    pub body: Option<Spanned<String>>,
    /// URL-encoded form body (templates).
    #[schemars(with = "Option<BTreeMap<String, Text>>")]
    pub form: Option<BTreeMap<String, Spanned<String>>>,
    /// JSON body; strings may hold templates.
    #[schemars(with = "Option<serde_json::Value>")]
    pub json: Option<Spanned<serde_json::Value>>,
    /// Follow redirects for this request.
    #[schemars(with = "Option<Flag>")]
    pub follow_redirects: Option<bool>,
    /// Bound on this request (within the check's timeout).
    #[schemars(with = "Option<Dur>")]
    pub timeout: Option<Spanned<Dur>>,
}

/// Expectations on a response.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = expect_rules)]
pub struct ExpectDef {
    /// Accepted statuses (default 2xx).
    #[schemars(with = "Option<StatusSpec>")]
    pub status: Option<Spanned<StatusSpec>>,
    /// Body must contain each string.
    pub body_contains: Option<OneOrMany>,
    /// Body must not contain any string.
    pub body_not_contains: Option<OneOrMany>,
    /// Body must match each regex.
    #[schemars(with = "Option<OneOrMany>")]
    pub body_regex: Option<Spanned<OneOrMany>>,
    /// Response headers must equal these values (names case-insensitive).
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<Key, Text>>")]
    pub header: BTreeMap<Key, String>,
    /// JSONPath (RFC 9535) → expected value, or an operator map.
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<Key, JsonExpect>>")]
    pub json: BTreeMap<Key, Spanned<JsonExpect>>,
    /// The step must take at most this long.
    #[schemars(with = "Option<Dur>")]
    pub max_duration: Option<Spanned<Dur>>,
    /// The server certificate must be valid for at least this many days (at most 3650).
    #[schemars(with = "Option<Count>", extend("maximum" = 3650))]
    pub cert_min_days: Option<Spanned<u32>>,
    /// A cookie with this name must be in the jar after the step.
    pub cookie: Option<OneOrMany>,
    /// The final URL after redirects must equal this (path or absolute).
    #[schemars(with = "Option<Text>")]
    pub url: Option<Spanned<String>>,
}

/// A JSON assertion: a plain value means "equals"; a map gives an operator.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonExpect {
    /// `"$.db": "prod-primary"`
    Equals(serde_json::Value),
    /// `"$.db": {exists: true}` and friends.
    Ops(JsonOps),
}

/// Operators for a JSON assertion: exactly one.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = json_ops_rules)]
pub struct JsonOps {
    /// Equals this value.
    pub equals: Option<serde_json::Value>,
    /// The path selects (true) or selects nothing (false).
    #[schemars(with = "Option<Flag>")]
    pub exists: Option<bool>,
    /// The string value matches this regex.
    pub matches: Option<String>,
    /// The number is less than this.
    pub less_than: Option<f64>,
    /// The number is greater than this.
    pub greater_than: Option<f64>,
}

impl<'de> Deserialize<'de> for JsonExpect {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        match v {
            serde_json::Value::Object(map)
                if map.keys().all(|k| is_json_op(k)) && !map.is_empty() =>
            {
                serde_json::from_value(serde_json::Value::Object(map))
                    .map(JsonExpect::Ops)
                    .map_err(de::Error::custom)
            }
            serde_json::Value::Object(map)
                if map.len() == 1 && map.keys().any(|k| !is_json_op(k)) =>
            {
                let k = map.keys().next().map(String::as_str).unwrap_or_default();
                Err(de::Error::custom(format!(
                    "unknown JSON operator `{k}`, expected one of equals, exists, matches, less_than, greater_than (to compare with an object, write equals: {{...}})"
                )))
            }
            other => Ok(JsonExpect::Equals(other)),
        }
    }
}

fn is_json_op(k: &str) -> bool {
    matches!(
        k,
        "equals" | "exists" | "matches" | "less_than" | "greater_than"
    )
}

/// Where an extracted variable comes from: exactly one source key.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = extract_rules)]
pub struct ExtractDef {
    /// Regex on the body; the first capture group (or the whole match).
    #[schemars(with = "Option<Text>")]
    pub regex: Option<Spanned<String>>,
    /// CSS selector on the HTML body.
    #[schemars(with = "Option<Text>")]
    pub css: Option<Spanned<String>>,
    /// With `css`: take this attribute instead of the text.
    #[schemars(with = "Option<Text>")]
    pub attr: Option<String>,
    /// JSONPath (RFC 9535) on the JSON body.
    #[schemars(with = "Option<String>", extend("pattern" = schema::JSONPATH, "patternErrorMessage" = "a JSONPath starts with $, e.g. $.token"))]
    pub json: Option<Spanned<String>>,
    /// A response header.
    #[schemars(with = "Option<Text>", extend("pattern" = schema::HEADER_NAME, "patternErrorMessage" = "an HTTP header name"))]
    pub header: Option<String>,
    /// A cookie from the jar.
    #[schemars(with = "Option<Text>")]
    pub cookie: Option<String>,
    /// The status code (`status: true`).
    #[schemars(with = "Option<Flag>")]
    pub status: Option<bool>,
}

/// `http`: request xor steps; with steps, no top-level expect/extract; a relative URL needs
/// `base_url`.
pub fn http_rules(schema: &mut Schema) {
    property_names(schema, "extract", extract_names());
    let relative = json!({
        "pattern": "^[^/]",
        "patternErrorMessage": "a relative URL needs http.base_url",
    });
    add_rules(
        schema,
        [
            exactly_one(
                &["request", "steps"],
                "write either request (one request) or steps (a flow)",
            ),
            json!({
                "if": set("steps"),
                "then": {
                    "properties": {
                        "expect": { "type": "null", "errorMessage": "with steps, put expect inside each step" },
                        "extract": { "maxProperties": 0, "errorMessage": "with steps, put extract inside each step" },
                    },
                },
            }),
            json!({
                "if": { "not": set("base_url") },
                "then": {
                    "properties": {
                        "request": { "properties": { "url": relative } },
                        "steps": { "items": { "properties": { "request": { "properties": { "url": relative } } } } },
                    },
                },
            }),
        ],
    );
}

/// Names of extracted variables: a variable name that is no built-in.
fn extract_names() -> Json {
    json!({
        "pattern": VAR_NAME,
        "patternErrorMessage": "variable names are letters, digits, _ and -, starting with a letter or _",
        "not": { "enum": ["base_url", "uuid", "now"] },
    })
}

/// `steps[]`: extracted variable names.
pub fn step_rules(schema: &mut Schema) {
    property_names(schema, "extract", extract_names());
}

/// `request`: header names; at most one body.
pub fn request_rules(schema: &mut Schema) {
    property_names(schema, "headers", names(HEADER_NAME, "an HTTP header name"));
    add_rules(
        schema,
        [at_most_one(
            &["body", "form", "json"],
            "write at most one of body, form, json",
        )],
    );
}

/// `expect`: JSONPaths and header names as keys.
pub fn expect_rules(schema: &mut Schema) {
    property_names(
        schema,
        "json",
        names(JSONPATH, "a JSONPath starts with $, e.g. $.status"),
    );
    property_names(schema, "header", names(HEADER_NAME, "an HTTP header name"));
}

/// An operator map: exactly one operator set.
pub fn json_ops_rules(schema: &mut Schema) {
    add_rules(
        schema,
        [exactly_one(
            &JSON_OPS,
            "write one operator per JSON assertion (equals, exists, matches, less_than or greater_than)",
        )],
    );
}

/// An extraction: exactly one source; `attr` only with `css`.
pub fn extract_rules(schema: &mut Schema) {
    add_rules(
        schema,
        [
            exactly_one(
                &["regex", "css", "json", "header", "cookie", "status"],
                "an extraction has exactly one source: regex, css, json, header, cookie or status",
            ),
            needs("attr", "css", "attr goes with css"),
        ],
    );
}

/// The operators of a JSON assertion, in the order validation reads them.
const JSON_OPS: [&str; 5] = ["equals", "exists", "matches", "less_than", "greater_than"];

impl JsonSchema for JsonExpect {
    fn schema_name() -> Cow<'static, str> {
        "JsonExpect".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        // The decoder's cases: a map of operators only is an operator map; a map with one key
        // that is no operator is a typo; anything else (a scalar, a list, {}, a map of two or
        // more keys not all operators) is the value to equal.
        json_schema!({
            "description": "The value the JSONPath must select (equals), or one operator: equals, exists, matches, less_than, greater_than.",
            "anyOf": [
                { "not": { "type": "object" } },
                { "type": "object", "maxProperties": 0 },
                {
                    "type": "object",
                    "minProperties": 2,
                    "not": { "propertyNames": { "enum": JSON_OPS } },
                },
                generator.subschema_for::<JsonOps>(),
            ],
        })
    }
}

fn http(
    ctx: &mut Ctx,
    h: &HttpDef,
    key: &str,
    defaults: &CheckDefaults,
    at: &Location,
) -> Option<HttpSpec> {
    let base_url = h
        .base_url
        .as_ref()
        .and_then(|b| match Url::parse(&b.value) {
            Ok(u) if has_userinfo(&u) => {
                ctx.err(&b.referenced, format!("{key}.base_url"), USERINFO);
                None
            }
            Ok(u) if u.port() == Some(0) => {
                ctx.err(
                    &b.referenced,
                    format!("{key}.base_url"),
                    format!("invalid URL {:?}: port 0 cannot be connected to", b.value),
                );
                None
            }
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            Ok(u) => {
                ctx.err(
                    &b.referenced,
                    format!("{key}.base_url"),
                    format!(
                        "unsupported URL {:?}: only http and https with a host",
                        u.as_str()
                    ),
                );
                None
            }
            Err(e) => {
                ctx.err(
                    &b.referenced,
                    format!("{key}.base_url"),
                    format!("invalid URL {:?}: {e}", b.value),
                );
                None
            }
        });
    let follow = h.follow_redirects.unwrap_or(true);
    // `${base_url}` has a value only when http.base_url is written.
    let builtins = || {
        let mut known = builtins();
        if h.base_url.is_none() {
            known.remove("base_url");
        }
        known
    };
    let mut steps = Vec::new();
    match (&h.request, &h.steps) {
        (Some(_), Some(s)) => {
            ctx.err(
                &s.referenced,
                format!("{key}.steps"),
                "write either request (one request) or steps (a flow), not both",
            );
        }
        (None, None) => ctx.err(at, key, "http needs a request or steps"),
        (Some(r), None) => {
            let parts = StepParts {
                name: "request".into(),
                prefix: key.to_string(),
                request: &r.value,
                expect: h.expect.as_ref(),
                extract: &h.extract,
                always_run: false,
                continue_on_failure: false,
            };
            steps.extend(step(
                ctx,
                parts,
                base_url.is_some(),
                follow,
                &mut builtins(),
            ));
        }
        (None, Some(s)) => {
            if h.expect.is_some() || !h.extract.is_empty() {
                ctx.err(
                    &s.referenced,
                    format!("{key}.expect"),
                    "with steps, put expect and extract inside each step",
                );
            }
            if s.value.is_empty() {
                ctx.err(&s.referenced, format!("{key}.steps"), "steps is empty");
            }
            if !ctx.count(
                s.value.len(),
                limits::MAX_STEPS,
                &s.referenced,
                &format!("{key}.steps"),
                "steps",
            ) {
                return None;
            }
            let mut known = builtins();
            let mut names = HashSet::new();
            for (i, st) in s.value.iter().enumerate() {
                let skey = format!("{key}.steps[{i}]");
                let name = &st.name.value;
                if !valid_name(name) {
                    ctx.err(
                        &st.name.referenced,
                        format!("{skey}.name"),
                        format!(
                            "invalid step name {name:?}: use lowercase letters, digits, - and _"
                        ),
                    );
                } else if !names.insert(name.clone()) {
                    ctx.err(
                        &st.name.referenced,
                        format!("{skey}.name"),
                        format!("duplicate step name {name:?}"),
                    );
                }
                let parts = StepParts {
                    name: name.clone(),
                    prefix: skey,
                    request: &st.request.value,
                    expect: st.expect.as_ref(),
                    extract: &st.extract,
                    always_run: st.always_run,
                    continue_on_failure: st.continue_on_failure,
                };
                steps.extend(step(ctx, parts, base_url.is_some(), follow, &mut known));
            }
        }
    }
    let tls = tls(ctx, h.tls_config.as_ref(), &format!("{key}.tls_config"));
    let body_limit = h
        .body_limit
        .as_ref()
        .map(|b| b.value.0)
        .unwrap_or(defaults.body_limit);
    if let Some(b) = &h.body_limit {
        body_limit_in(ctx, b, &format!("{key}.body_limit"));
    }
    let max_redirects = h.max_redirects.as_ref().map(|m| m.value).unwrap_or(10);
    if let Some(m) = &h.max_redirects {
        if m.value > 100 {
            ctx.err(&m.referenced, format!("{key}.max_redirects"), "at most 100");
        }
    }
    Some(HttpSpec {
        base_url,
        steps,
        tls,
        body_limit: usize::try_from(body_limit).unwrap_or(usize::MAX),
        max_redirects,
    })
}

/// One step as written. The single-request form is a step named `request` whose keys sit
/// directly under `http`, so both forms are validated by [`step`].
struct StepParts<'a> {
    name: String,
    /// Key path that `request`, `expect` and `extract` hang from (for messages).
    prefix: String,
    request: &'a RequestDef,
    expect: Option<&'a ExpectDef>,
    extract: &'a BTreeMap<String, Spanned<ExtractDef>>,
    always_run: bool,
    continue_on_failure: bool,
}

/// Validates one step; variables it extracts become known to the steps after it.
fn step(
    ctx: &mut Ctx,
    p: StepParts,
    has_base: bool,
    follow: bool,
    known: &mut HashSet<String>,
) -> Option<StepSpec> {
    let prefix = &p.prefix;
    let request = request(
        ctx,
        p.request,
        &format!("{prefix}.request"),
        has_base,
        known,
    );
    let expect = expect_spec(ctx, p.expect, &format!("{prefix}.expect"));
    let extract = extracts(ctx, p.extract, &format!("{prefix}.extract"), known);
    Some(StepSpec {
        name: p.name,
        request: request?,
        expect: expect?,
        extract,
        always_run: p.always_run,
        continue_on_failure: p.continue_on_failure,
        follow_redirects: p.request.follow_redirects.unwrap_or(follow),
        timeout: p.request.timeout.as_ref().map(|t| t.value.0),
    })
}

fn builtins() -> HashSet<String> {
    ["base_url", "uuid", "now"]
        .into_iter()
        .map(String::from)
        .collect()
}

fn request(
    ctx: &mut Ctx,
    r: &RequestDef,
    key: &str,
    has_base: bool,
    known: &HashSet<String>,
) -> Option<RequestSpec> {
    let n_before = ctx.errors.len();
    let method = match &r.method {
        None => Method::GET,
        Some(m) => {
            let up = m.value.trim().to_ascii_uppercase();
            match up.as_str() {
                "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS" => {
                    Method::from_bytes(up.as_bytes()).ok()?
                }
                _ => {
                    ctx.err(&m.referenced, format!("{key}.method"), format!("invalid method {:?}: use GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS", m.value));
                    Method::GET
                }
            }
        }
    };
    let url = ctx.template(&r.url, &format!("{key}.url"));
    if let Some(u) = &url {
        check_vars(ctx, u, &r.url.referenced, &format!("{key}.url"), known);
        // A URL whose scheme and host are written literally is checked now. Schemes are
        // case-insensitive (`HTTP://` is http).
        let text = u.redacted();
        let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            let probe = text.replace("${", "x").replace('}', "");
            match Url::parse(&probe) {
                Err(e) => ctx.err(
                    &r.url.referenced,
                    format!("{key}.url"),
                    format!("invalid URL {:?}: {e}", text),
                ),
                Ok(parsed) if has_userinfo(&parsed) => {
                    ctx.err(&r.url.referenced, format!("{key}.url"), USERINFO)
                }
                Ok(parsed) if parsed.port() == Some(0) => ctx.err(
                    &r.url.referenced,
                    format!("{key}.url"),
                    format!("invalid URL {text:?}: port 0 cannot be connected to"),
                ),
                Ok(_) => {}
            }
        } else if let Some((scheme, _)) = text.split_once("://") {
            ctx.err(
                &r.url.referenced,
                format!("{key}.url"),
                format!("unsupported scheme {scheme:?}: only http and https"),
            );
        } else if !text.starts_with('/') && !text.starts_with("${") {
            ctx.err(
                &r.url.referenced,
                format!("{key}.url"),
                format!(
                    "invalid URL {text:?}: write an absolute http(s) URL or a path starting with /"
                ),
            );
        } else if !has_base && text.starts_with('/') {
            ctx.err(
                &r.url.referenced,
                format!("{key}.url"),
                format!("relative URL {text:?} needs http.base_url"),
            );
        }
    }
    for (what, n, loc) in [
        ("headers", r.headers.len(), r.headers.values().next()),
        ("query", r.query.len(), r.query.values().next()),
        (
            "form",
            r.form.as_ref().map_or(0, BTreeMap::len),
            r.form.as_ref().and_then(|f| f.values().next()),
        ),
    ] {
        if let Some(first) = loc {
            ctx.count(
                n,
                limits::MAX_ENTRIES,
                &first.referenced,
                &format!("{key}.{what}"),
                &format!("{what} entries"),
            );
        }
    }
    let mut headers = Vec::new();
    for (name, v) in &r.headers {
        let hkey = format!("{key}.headers.{name}");
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) => {
                if let Some(t) = ctx.template(v, &hkey) {
                    check_vars(ctx, &t, &v.referenced, &hkey, known);
                    header_value(ctx, &t, v, &hkey);
                    headers.push((h, t));
                }
            }
            Err(_) => ctx.err(&v.referenced, hkey, format!("invalid header name {name:?}")),
        }
    }
    let mut query = Vec::new();
    for (name, v) in &r.query {
        let qkey = format!("{key}.query.{name}");
        if let Some(t) = ctx.template(v, &qkey) {
            check_vars(ctx, &t, &v.referenced, &qkey, known);
            query.push((name.clone(), t));
        }
    }
    let bodies = [r.body.is_some(), r.form.is_some(), r.json.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if bodies > 1 {
        ctx.err(
            &r.url.referenced,
            key,
            "write at most one of body, form, json",
        );
    }
    let body = if let Some(b) = &r.body {
        let bkey = format!("{key}.body");
        match ctx.template(b, &bkey) {
            Some(t) => {
                // As for every other part: a misspelt variable would fail every run.
                check_vars(ctx, &t, &b.referenced, &bkey, known);
                BodySpec::Raw(t)
            }
            None => BodySpec::None,
        }
    } else if let Some(form) = &r.form {
        let mut fields = Vec::new();
        for (name, v) in form {
            let fkey = format!("{key}.form.{name}");
            if let Some(t) = ctx.template(v, &fkey) {
                check_vars(ctx, &t, &v.referenced, &fkey, known);
                fields.push((name.clone(), t));
            }
        }
        BodySpec::Form(fields)
    } else if let Some(j) = &r.json {
        json_template(ctx, &j.value, &j.referenced, &format!("{key}.json"), known)
            .map(BodySpec::Json)
            .unwrap_or(BodySpec::None)
    } else {
        BodySpec::None
    };
    if let Some(t) = &r.timeout {
        if t.value.0.is_zero() {
            ctx.err(
                &t.referenced,
                format!("{key}.timeout"),
                "must be greater than 0",
            );
        } else {
            ctx.dur_in(Some(t), &format!("{key}.timeout"), limits::TIMEOUT);
        }
    }
    if ctx.errors.len() > n_before {
        return None;
    }
    Some(RequestSpec {
        method,
        url: url?,
        headers,
        query,
        body,
    })
}

const USERINFO: &str = "the URL carries a user name or password (user:pass@host), which would not be sent: put credentials in an Authorization header instead";

fn has_userinfo(u: &Url) -> bool {
    !u.username().is_empty() || u.password().is_some()
}

fn json_template(
    ctx: &mut Ctx,
    v: &serde_json::Value,
    loc: &Location,
    key: &str,
    known: &HashSet<String>,
) -> Option<JsonTemplate> {
    Some(match v {
        serde_json::Value::String(s) => {
            let t = match Template::parse(s, &ctx.dir) {
                Ok(t) => t,
                Err(e) => {
                    ctx.err(loc, key, e);
                    return None;
                }
            };
            check_vars(ctx, &t, loc, key, known);
            JsonTemplate::String(t)
        }
        serde_json::Value::Array(a) => JsonTemplate::Array(
            a.iter()
                .map(|x| json_template(ctx, x, loc, key, known))
                .collect::<Option<Vec<_>>>()?,
        ),
        serde_json::Value::Object(o) => JsonTemplate::Object(
            o.iter()
                .map(|(k, x)| {
                    json_template(ctx, x, loc, &format!("{key}.{k}"), known).map(|t| (k.clone(), t))
                })
                .collect::<Option<Vec<_>>>()?,
        ),
        other => JsonTemplate::Scalar(other.clone()),
    })
}

fn check_vars(ctx: &mut Ctx, t: &Template, loc: &Location, key: &str, known: &HashSet<String>) {
    for v in t.variables() {
        if known.contains(v) {
            continue;
        }
        // Only missing from the built-ins without http.base_url (no extraction takes its name).
        if v == "base_url" {
            ctx.err(loc, key, "${base_url} is not set: write http.base_url");
        } else {
            ctx.err(loc, key, format!("undefined variable ${{{v}}}: no earlier step extracts it and it is not a built-in (base_url, uuid, now)"));
        }
    }
}

fn extracts(
    ctx: &mut Ctx,
    defs: &BTreeMap<String, Spanned<ExtractDef>>,
    key: &str,
    known: &mut HashSet<String>,
) -> Vec<ExtractSpec> {
    let mut out = Vec::new();
    if let Some(first) = defs.values().next() {
        if !ctx.count(
            defs.len(),
            limits::MAX_ENTRIES,
            &first.referenced,
            key,
            "extractions",
        ) {
            return out;
        }
    }
    for (var, def) in defs {
        let ekey = format!("{key}.{var}");
        let loc = def.referenced;
        let d = &def.value;
        if !crate::config::template::is_var_name(var) || builtins().contains(var) {
            ctx.err(&loc, &ekey, format!("invalid variable name {var:?}"));
            continue;
        }
        let n = [
            d.regex.is_some(),
            d.css.is_some(),
            d.json.is_some(),
            d.header.is_some(),
            d.cookie.is_some(),
            d.status.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if n != 1 {
            ctx.err(
                &loc,
                &ekey,
                "an extraction has exactly one source: regex, css, json, header, cookie or status",
            );
            continue;
        }
        if d.attr.is_some() && d.css.is_none() {
            ctx.err(&loc, format!("{ekey}.attr"), "attr goes with css");
            continue;
        }
        let source = if let Some(r) = &d.regex {
            ctx.regex(&r.value, &r.referenced, &format!("{ekey}.regex"))
                .map(ExtractSource::Regex)
        } else if let Some(c) = &d.css {
            // Bounded before parsing: the parser recurses once per nesting level and 1,000
            // nested `:not(` overflow the stack.
            let too_big = css_too_big(&c.value);
            if let Some(message) = too_big {
                ctx.err(&c.referenced, format!("{ekey}.css"), message);
                None
            } else {
                match scraper::Selector::parse(&c.value) {
                    Ok(selector) => Some(ExtractSource::Css {
                        selector,
                        src: c.value.clone(),
                        attr: d.attr.clone(),
                    }),
                    Err(e) => {
                        ctx.err(
                            &c.referenced,
                            format!("{ekey}.css"),
                            format!("invalid CSS selector {:?}: {}", c.value, css_error(&e)),
                        );
                        None
                    }
                }
            }
        } else if let Some(j) = &d.json {
            ctx.jsonpath(&j.value, &j.referenced, &format!("{ekey}.json"))
                .map(|path| ExtractSource::Json {
                    path,
                    src: j.value.clone(),
                })
        } else if let Some(h) = &d.header {
            match HeaderName::from_bytes(h.as_bytes()) {
                Ok(h) => Some(ExtractSource::Header(h)),
                Err(_) => {
                    ctx.err(
                        &loc,
                        format!("{ekey}.header"),
                        format!("invalid header name {h:?}"),
                    );
                    None
                }
            }
        } else if let Some(c) = &d.cookie {
            Some(ExtractSource::Cookie(c.clone()))
        } else {
            Some(ExtractSource::Status)
        };
        if let Some(source) = source {
            known.insert(var.clone());
            out.push(ExtractSpec {
                var: var.clone(),
                source,
            });
        }
    }
    out
}

/// Why a selector is too long or nests too deeply to be parsed, if it is.
fn css_too_big(s: &str) -> Option<String> {
    if s.len() > limits::MAX_CSS_LEN {
        return Some(format!(
            "CSS selector of {} bytes: at most {} are allowed",
            s.len(),
            limits::MAX_CSS_LEN
        ));
    }
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut quote = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (_, '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '(' | '[') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (None, ')' | ']') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    (deepest > limits::MAX_CSS_NESTING).then(|| {
        format!(
            "CSS selector nests ( and [ {deepest} deep: at most {} levels are allowed",
            limits::MAX_CSS_NESTING
        )
    })
}

/// A selector parse error in words (the parser's own names, such as
/// `NoQualifiedNameInAttributeSelector(SquareBracketBlock)`, mean nothing to a reader).
fn css_error(e: &scraper::error::SelectorErrorKind) -> String {
    use scraper::error::SelectorErrorKind as K;
    let tok = |t: &dyn std::fmt::Debug| css_token(&format!("{t:?}"));
    match e {
        K::UnexpectedToken(t) => format!("unexpected {}", tok(t)),
        K::EndOfLine => "the selector ends too early".into(),
        K::ExpectedColonOnPseudoElement(t) => {
            format!("expected : in a pseudo-element, found {}", tok(t))
        }
        K::ExpectedIdentityOnPseudoElement(t) => {
            format!("expected a name after ::, found {}", tok(t))
        }
        K::UnexpectedSelectorParseError(kind) => {
            // The parser's error kinds are not nameable from here: read their debug form,
            // `Name(argument)`.
            let debug = format!("{kind:?}");
            let (name, arg) = match debug.split_once('(') {
                Some((n, rest)) => (n, rest.strip_suffix(')').unwrap_or(rest)),
                None => (debug.as_str(), ""),
            };
            let t = css_token(arg);
            match name {
                "NoQualifiedNameInAttributeSelector" => {
                    format!("expected an attribute name in [...], found {t}")
                }
                "EmptySelector" => "empty selector".into(),
                "DanglingCombinator" => {
                    "a combinator (>, +, ~ or a space) has nothing after it".into()
                }
                "NonCompoundSelector" => "a compound selector is required here".into(),
                "UnexpectedTokenInAttributeSelector" => {
                    format!("unexpected {t} in an attribute selector")
                }
                "PseudoElementExpectedColon" => {
                    format!("expected : in a pseudo-element, found {t}")
                }
                "PseudoElementExpectedIdent" | "NoIdentForPseudo" => {
                    format!("expected a pseudo-class name after :, found {t}")
                }
                "UnsupportedPseudoClassOrElement" => {
                    format!("unsupported pseudo-class or pseudo-element {arg}")
                }
                "UnexpectedIdent" => format!("unexpected name {arg}"),
                "ExpectedNamespace" => format!("unknown namespace {arg}"),
                "ExpectedBarInAttr" => format!("expected | in an attribute selector, found {t}"),
                "BadValueInAttr" => format!("invalid value {t} in an attribute selector"),
                "InvalidQualNameInAttr" => format!("invalid attribute name {t}"),
                "ExplicitNamespaceUnexpectedToken" => format!("unexpected {t} after a namespace"),
                "ClassNeedsIdent" => format!("expected a class name after ., found {t}"),
                _ => debug.clone(),
            }
        }
        other => other
            .to_string()
            .lines()
            .next()
            .unwrap_or("parse error")
            .to_string(),
    }
}

/// A css token as the reader wrote it, from its debug name (`Delim('>')` → `'>'`).
fn css_token(debug: &str) -> String {
    let named = [
        ("SquareBracketBlock", "["),
        ("ParenthesisBlock", "("),
        ("CurlyBracketBlock", "{"),
        ("CloseSquareBracket", "]"),
        ("CloseParenthesis", ")"),
        ("CloseCurlyBracket", "}"),
        ("Colon", ":"),
        ("Semicolon", ";"),
        ("Comma", ","),
        ("IncludeMatch", "~="),
        ("DashMatch", "|="),
        ("PrefixMatch", "^="),
        ("SubstringMatch", "*="),
        ("SuffixMatch", "$="),
    ];
    if let Some((_, t)) = named.iter().find(|(n, _)| *n == debug) {
        return format!("'{t}'");
    }
    if debug.starts_with("WhiteSpace") {
        return "a space".into();
    }
    if let Some(inner) = debug
        .strip_prefix("Delim(")
        .and_then(|r| r.strip_suffix(')'))
    {
        return inner.to_string();
    }
    for prefix in [
        "Ident(",
        "Function(",
        "QuotedString(",
        "AtKeyword(",
        "Hash(",
        "IDHash(",
    ] {
        if let Some(inner) = debug.strip_prefix(prefix).and_then(|r| r.strip_suffix(')')) {
            return inner.to_string();
        }
    }
    debug.to_string()
}

fn expect_spec(ctx: &mut Ctx, e: Option<&ExpectDef>, key: &str) -> Option<ExpectSpec> {
    let Some(e) = e else {
        return Some(ExpectSpec::default());
    };
    let n_before = ctx.errors.len();
    let mut spec = ExpectSpec::default();
    if let Some(s) = &e.status {
        spec.status = s.value.0.iter().map(|r| (r.0, r.1)).collect();
    }
    spec.body_contains = e.body_contains.clone().map(|o| o.0).unwrap_or_default();
    spec.body_not_contains = e.body_not_contains.clone().map(|o| o.0).unwrap_or_default();
    if let Some(rs) = &e.body_regex {
        for r in &rs.value.0 {
            if let Some(re) = ctx.regex(r, &rs.referenced, &format!("{key}.body_regex")) {
                spec.body_regex.push(re);
            }
        }
    }
    for (name, v) in &e.header {
        match HeaderName::from_bytes(name.0.value.as_bytes()) {
            Ok(h) => spec.headers.push((h, v.clone())),
            Err(_) => ctx.err(
                &name.0.referenced,
                format!("{key}.header"),
                format!("invalid header name {:?}", name.0.value),
            ),
        }
    }
    for (path, want) in &e.json {
        let jkey = format!("{key}.json.{}", path.0.value);
        let Some(compiled) = ctx.jsonpath(&path.0.value, &path.0.referenced, &jkey) else {
            continue;
        };
        let op = match &want.value {
            JsonExpect::Equals(v) => Some(JsonOp::Equals(v.clone())),
            JsonExpect::Ops(ops) => {
                let n = [
                    ops.equals.is_some(),
                    ops.exists.is_some(),
                    ops.matches.is_some(),
                    ops.less_than.is_some(),
                    ops.greater_than.is_some(),
                ]
                .iter()
                .filter(|b| **b)
                .count();
                if n != 1 {
                    ctx.err(&want.referenced, &jkey, "write one operator per JSON assertion (equals, exists, matches, less_than or greater_than)");
                    None
                } else if let Some(v) = &ops.equals {
                    Some(JsonOp::Equals(v.clone()))
                } else if let Some(b) = ops.exists {
                    Some(JsonOp::Exists(b))
                } else if let Some(m) = &ops.matches {
                    ctx.regex(m, &want.referenced, &format!("{jkey}.matches"))
                        .map(JsonOp::Matches)
                } else if let Some(x) = ops.less_than {
                    Some(JsonOp::LessThan(x))
                } else {
                    ops.greater_than.map(JsonOp::GreaterThan)
                }
            }
        };
        if let Some(op) = op {
            spec.json.push(JsonAssertion {
                path_src: path.0.value.clone(),
                path: compiled,
                op,
            });
        }
    }
    if let Some(first) = e.json.keys().next() {
        ctx.count(
            e.json.len(),
            limits::MAX_ENTRIES,
            &first.0.referenced,
            &format!("{key}.json"),
            "JSON assertions",
        );
    }
    if let Some(first) = e.header.keys().next() {
        ctx.count(
            e.header.len(),
            limits::MAX_ENTRIES,
            &first.0.referenced,
            &format!("{key}.header"),
            "expected headers",
        );
    }
    ctx.dur_in(
        e.max_duration.as_ref(),
        &format!("{key}.max_duration"),
        limits::TIMEOUT,
    );
    ctx.int_in(
        e.cert_min_days.as_ref(),
        &format!("{key}.cert_min_days"),
        0,
        limits::MAX_CERT_MIN_DAYS,
    );
    spec.max_duration = e.max_duration.as_ref().map(|d| d.value.0);
    spec.cert_min_days = e.cert_min_days.as_ref().map(|d| d.value);
    spec.cookies = e.cookie.clone().map(|o| o.0).unwrap_or_default();
    spec.url = e.url.as_ref().map(|u| u.value.clone());
    if ctx.errors.len() > n_before {
        return None;
    }
    Some(spec)
}

/// `request.method`: validation upper-cases and trims it, so `get` is GET.
pub struct MethodName;

impl JsonSchema for MethodName {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Method".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
        let alts: Vec<String> = methods.iter().map(|m| any_case(m)).collect();
        json_schema!({
            "anyOf": [
                { "enum": methods },
                {
                    "type": "string",
                    "pattern": format!("^{WS}(?:{}){WS}$", alts.join("|")),
                },
            ],
            "errorMessage": "GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::expr::{eval_cond, parse};
    use crate::probe::kind::variable_of;
    use crate::probe::Reason;
    use std::time::{Duration, SystemTime};

    fn variable(r: &CheckResult, name: &str) -> Option<Value> {
        variable_of(Http::VARS, r, name, SystemTime::UNIX_EPOCH)
    }

    fn step(name: &str, ran: bool, success: bool, status: Option<u16>) -> StepResult {
        StepResult {
            name: name.into(),
            ran,
            success,
            status,
            ..Default::default()
        }
    }

    fn result(steps: Vec<StepResult>) -> CheckResult {
        let success = steps.iter().all(|s| !s.ran || s.success);
        CheckResult {
            success,
            reason: (!success).then_some(Reason::Connect),
            message: None,
            duration: Duration::from_millis(5),
            started_at: SystemTime::UNIX_EPOCH,
            steps,
            observations: Vec::new(),
            detail: None,
            attempts: 1,
        }
    }

    fn holds(r: &CheckResult, when: &str) -> Option<bool> {
        eval_cond(&parse(when).unwrap(), &|n| variable(r, n))
    }

    #[test]
    fn no_response_is_status_zero_so_negations_agree() {
        let down = result(vec![
            step("login", true, false, None),
            step("home", false, false, None),
        ]);
        assert_eq!(variable(&down, "status"), Some(Value::Number(0.0)));
        assert_eq!(
            variable(&down, "step.login.status"),
            Some(Value::Number(0.0))
        );
        assert_eq!(holds(&down, "status != 200"), Some(true));
        assert_eq!(holds(&down, "!(status == 200)"), Some(true));
        // A step that did not run has no status at all: unknown, not 0.
        assert_eq!(variable(&down, "step.home.status"), None);
        assert_eq!(holds(&down, "step.home.status != 200"), None);
        assert_eq!(holds(&down, "!(step.home.status == 200)"), None);
        assert_eq!(
            holds(&down, "step.home.status == 200 || failed"),
            Some(true)
        );

        let cut_off = CheckResult::failure(
            Reason::Timeout,
            "timed out",
            SystemTime::UNIX_EPOCH,
            Duration::from_secs(1),
        );
        assert_eq!(variable(&cut_off, "status"), Some(Value::Number(0.0)));

        let up = result(vec![step("login", true, true, Some(200))]);
        assert_eq!(holds(&up, "status != 200"), Some(false));
        assert_eq!(holds(&up, "!(status == 200)"), Some(false));
        assert_eq!(variable(&up, "cert_expires_in"), None, "no TLS: unknown");
    }

    /// The caps are what keeps the selector parser's recursion small: the deepest selector
    /// they allow parses on a 256 KiB stack (a tokio worker has 2 MiB).
    #[test]
    fn the_deepest_selector_within_the_caps_parses_on_a_small_stack() {
        let depth = limits::MAX_CSS_NESTING;
        let deepest = format!(
            "{}a{}",
            ":not(:is(".repeat(depth / 2),
            "))".repeat(depth / 2)
        );
        assert!(css_too_big(&deepest).is_none(), "{deepest}");
        let one_more = format!("[x]{}a{}", ":not(".repeat(depth + 1), ")".repeat(depth + 1));
        assert_eq!(
            css_too_big(&one_more).unwrap(),
            "CSS selector nests ( and [ 17 deep: at most 16 levels are allowed"
        );
        // Brackets inside quotes and escaped ones do not count.
        let quoted = format!("a[title=\"{}\"]", "(".repeat(100));
        assert!(css_too_big(&quoted).is_none());
        assert!(css_too_big(&"\\(".repeat(100)).is_none());
        let parsed = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || scraper::Selector::parse(&deepest).is_ok())
            .unwrap()
            .join()
            .unwrap();
        assert!(parsed);
    }
}

/// The http kind's own key rules, through whole check files.
#[cfg(test)]
mod rule_tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::probe::check::{check_of, errors_of};
    use crate::probe::Reason;

    /// An http check with `def` (lines at the indent of `http:`'s keys; the first is line 4).
    fn http_check(def: &str) -> String {
        format!("checks:\n  - name: web\n    http:\n{def}")
    }

    /// An http check of one request with `request` (lines at the indent of `request:`'s keys;
    /// the first is line 5) and `rest` (more keys of `http:`).
    fn request_check(request: &str, rest: &str) -> String {
        http_check(&format!("      request:\n{request}{rest}"))
    }

    fn spec_of(yaml: &str) -> Arc<HttpSpec> {
        check_of(yaml).kind.spec::<Http>().unwrap().clone()
    }

    #[test]
    fn a_check_has_request_or_steps() {
        assert_eq!(
            errors_of("checks:\n  - name: web\n    http: {follow_redirects: false}\n"),
            ["t.yaml:3:11: checks[0].http: http needs a request or steps"]
        );
        assert_eq!(
            errors_of(&request_check(
                "        url: \"http://127.0.0.1/\"\n",
                "      steps:\n        - name: a\n          request: {url: \"http://127.0.0.1/\"}\n"
            )),
            ["t.yaml:7:9: checks[0].http.steps: write either request (one request) or steps (a flow), not both"]
        );
        assert_eq!(
            errors_of(&http_check(
                "      expect: {status: 200}\n      steps:\n        - name: a\n          request: {url: \"http://127.0.0.1/\"}\n"
            )),
            ["t.yaml:6:9: checks[0].http.expect: with steps, put expect and extract inside each step"]
        );
        assert_eq!(
            errors_of(&http_check("      steps: []\n")),
            ["t.yaml:4:14: checks[0].http.steps: steps is empty"]
        );
        let spec = spec_of(&request_check("        url: \"http://127.0.0.1/\"\n", ""));
        assert_eq!(spec.steps.len(), 1);
        assert_eq!(
            spec.steps[0].name, "request",
            "the single request's step name"
        );
    }

    #[test]
    fn step_names_are_valid_and_unique() {
        let steps = "      steps:\n        - name: Login\n          request: {url: \"http://127.0.0.1/\"}\n        - name: home\n          request: {url: \"http://127.0.0.1/\"}\n        - name: home\n          request: {url: \"http://127.0.0.1/\"}\n";
        assert_eq!(
            errors_of(&http_check(steps)),
            [
                r#"t.yaml:5:17: checks[0].http.steps[0].name: invalid step name "Login": use lowercase letters, digits, - and _"#,
                r#"t.yaml:9:17: checks[0].http.steps[2].name: duplicate step name "home""#,
            ]
        );
    }

    #[test]
    fn urls_are_absolute_http_or_paths_under_base_url() {
        let url_errors = |url: &str, rest: &str| {
            errors_of(&request_check(&format!("        url: \"{url}\"\n"), rest))
        };
        assert_eq!(
            url_errors("/login", ""),
            [
                r#"t.yaml:5:14: checks[0].http.request.url: relative URL "/login" needs http.base_url"#
            ]
        );
        let spec = spec_of(&request_check(
            "        url: \"/login\"\n",
            "      base_url: \"https://app.test\"\n",
        ));
        assert_eq!(
            spec.base_url.as_ref().map(Url::as_str),
            Some("https://app.test/")
        );
        assert_eq!(
            url_errors("login", ""),
            [
                r#"t.yaml:5:14: checks[0].http.request.url: invalid URL "login": write an absolute http(s) URL or a path starting with /"#
            ]
        );
        assert_eq!(
            url_errors("ftp://files.test/a", ""),
            [
                r#"t.yaml:5:14: checks[0].http.request.url: unsupported scheme "ftp": only http and https"#
            ]
        );
        assert_eq!(
            url_errors("http://127.0.0.1:0/", ""),
            [
                r#"t.yaml:5:14: checks[0].http.request.url: invalid URL "http://127.0.0.1:0/": port 0 cannot be connected to"#
            ]
        );
        let errors = url_errors("http://[::1/", "");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(
                r#"t.yaml:5:14: checks[0].http.request.url: invalid URL "http://[::1/": "#
            ),
            "{errors:?}"
        );
        // Schemes are case-insensitive.
        assert!(url_errors("HTTPS://app.test/", "").is_empty());
        // A URL from a built-in variable is judged when it is built.
        assert!(url_errors("${base_url}/a", "      base_url: \"https://app.test\"\n").is_empty());
    }

    #[test]
    fn credentials_in_a_url_are_refused() {
        let message = "the URL carries a user name or password (user:pass@host), which would not be sent: put credentials in an Authorization header instead";
        assert_eq!(
            errors_of(&request_check(
                "        url: \"https://bob:pw@app.test/\"\n",
                ""
            )),
            [format!(
                "t.yaml:5:14: checks[0].http.request.url: {message}"
            )]
        );
        assert_eq!(
            errors_of(&request_check(
                "        url: \"/a\"\n",
                "      base_url: \"https://bob@app.test\"\n"
            )),
            [
                format!("t.yaml:6:17: checks[0].http.base_url: {message}"),
                r#"t.yaml:5:14: checks[0].http.request.url: relative URL "/a" needs http.base_url"#
                    .to_string(),
            ]
        );
    }

    #[test]
    fn the_base_url_is_an_http_url_with_a_host() {
        let base = |b: &str| {
            errors_of(&request_check(
                "        url: \"https://app.test/\"\n",
                &format!("      base_url: \"{b}\"\n"),
            ))
        };
        assert_eq!(
            base("ftp://files.test"),
            [
                r#"t.yaml:6:17: checks[0].http.base_url: unsupported URL "ftp://files.test/": only http and https with a host"#
            ]
        );
        assert_eq!(
            base("https://app.test:0"),
            [
                r#"t.yaml:6:17: checks[0].http.base_url: invalid URL "https://app.test:0": port 0 cannot be connected to"#
            ]
        );
        assert_eq!(
            base("app.test"),
            [
                r#"t.yaml:6:17: checks[0].http.base_url: invalid URL "app.test": relative URL without a base"#
            ]
        );
    }

    #[test]
    fn methods_headers_and_bodies() {
        let url = "        url: \"https://app.test/\"\n";
        assert_eq!(
            errors_of(&request_check(&format!("{url}        method: FETCH\n"), "")),
            [
                r#"t.yaml:6:17: checks[0].http.request.method: invalid method "FETCH": use GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS"#
            ]
        );
        let spec = spec_of(&request_check(
            &format!("{url}        method: \" post \"\n"),
            "",
        ));
        assert_eq!(spec.steps[0].request.method, Method::POST);
        assert_eq!(
            errors_of(&request_check(
                &format!("{url}        headers:\n          X-A: \"a\\nb\"\n          bad name: x\n"),
                ""
            )),
            [
                "t.yaml:7:16: checks[0].http.request.headers.X-A: the value contains a line break or NUL character, which a header cannot carry",
                r#"t.yaml:8:21: checks[0].http.request.headers.bad name: invalid header name "bad name""#,
            ]
        );
        // Secrets are judged with their values, which the message does not show.
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("token");
        std::fs::write(&secret, "s3cret\ninjected: yes\n").unwrap();
        let errors = errors_of(&request_check(
            &format!(
                "{url}        headers:\n          X-Token: \"${{file:{}}}\"\n",
                secret.display()
            ),
            "",
        ));
        assert_eq!(
            errors,
            ["t.yaml:7:20: checks[0].http.request.headers.X-Token: the value (with its secrets) contains a line break or NUL character, which a header cannot carry"]
        );
        assert_eq!(
            errors_of(&request_check(
                &format!("{url}        body: x\n        json: {{a: 1}}\n"),
                ""
            )),
            ["t.yaml:5:14: checks[0].http.request: write at most one of body, form, json"]
        );
        assert_eq!(
            errors_of(&request_check(&format!("{url}        timeout: 0s\n"), "")),
            ["t.yaml:6:18: checks[0].http.request.timeout: must be greater than 0"]
        );
        assert_eq!(
            errors_of(&request_check(&format!("{url}        timeout: 8d\n"), "")),
            ["t.yaml:6:18: checks[0].http.request.timeout: must be at most 7d"]
        );
    }

    #[test]
    fn variables_come_from_earlier_steps_or_built_ins() {
        let undefined = "undefined variable ${token}: no earlier step extracts it and it is not a built-in (base_url, uuid, now)";
        assert_eq!(
            errors_of(&request_check(
                "        url: \"https://app.test/${token}\"\n        headers: {X-Id: \"${uuid}\"}\n",
                ""
            )),
            [format!("t.yaml:5:14: checks[0].http.request.url: {undefined}")]
        );
        // Every part of a request that takes variables is checked: url, headers, query, form,
        // json and a raw body.
        for (part, at) in [
            ("headers: {X-Token: \"${token}\"}", "headers.X-Token"),
            ("query: {t: \"${token}\"}", "query.t"),
            ("form: {t: \"${token}\"}", "form.t"),
            ("json: {t: \"${token}\"}", "json.t"),
            ("body: \"t=${token}\"", "body"),
        ] {
            let errors = errors_of(&request_check(
                &format!("        url: \"https://app.test/\"\n        {part}\n"),
                "",
            ));
            assert_eq!(errors.len(), 1, "{part}: {errors:?}");
            assert!(
                errors[0].starts_with("t.yaml:6:")
                    && errors[0].ends_with(&format!("checks[0].http.request.{at}: {undefined}")),
                "{part}: {errors:?}"
            );
        }
        // `${base_url}` is there only when http.base_url is written.
        assert_eq!(
            errors_of(&request_check("        url: \"${base_url}/health\"\n", "")),
            ["t.yaml:5:14: checks[0].http.request.url: ${base_url} is not set: write http.base_url"]
        );
        // Extracted by a step, usable by the later ones only.
        let steps = "      steps:\n        - name: use\n          request: {url: \"https://app.test/${token}\"}\n        - name: login\n          request: {url: \"https://app.test/\"}\n          extract: {token: {json: $.token}}\n        - name: again\n          request: {url: \"https://app.test/\", json: {t: \"${token}\"}}\n";
        assert_eq!(
            errors_of(&http_check(steps)),
            [format!(
                "t.yaml:6:26: checks[0].http.steps[0].request.url: {undefined}"
            )]
        );
    }

    #[test]
    fn extractions_have_a_valid_name_and_one_source() {
        let ex = |extract: &str| {
            errors_of(&request_check(
                "        url: \"https://app.test/\"\n",
                &format!("      extract:\n{extract}"),
            ))
        };
        assert_eq!(
            ex("        uuid: {header: X-Id}\n"),
            [r#"t.yaml:7:15: checks[0].http.extract.uuid: invalid variable name "uuid""#]
        );
        assert_eq!(
            ex("        a.b: {header: X-Id}\n"),
            [r#"t.yaml:7:14: checks[0].http.extract.a.b: invalid variable name "a.b""#]
        );
        let one_source =
            "an extraction has exactly one source: regex, css, json, header, cookie or status";
        assert_eq!(
            ex("        a: {header: X-Id, cookie: sid}\n"),
            [format!(
                "t.yaml:7:12: checks[0].http.extract.a: {one_source}"
            )]
        );
        assert_eq!(
            ex("        a: {attr: href}\n"),
            [format!(
                "t.yaml:7:12: checks[0].http.extract.a: {one_source}"
            )]
        );
        assert_eq!(
            ex("        a: {json: $.a, attr: href}\n"),
            ["t.yaml:7:12: checks[0].http.extract.a.attr: attr goes with css"]
        );
        assert_eq!(
            ex("        a: {header: \"bad name\"}\n"),
            [r#"t.yaml:7:12: checks[0].http.extract.a.header: invalid header name "bad name""#]
        );
    }

    #[test]
    fn selectors_paths_and_regexes_are_compiled_at_load() {
        let ex = |extract: &str| {
            errors_of(&request_check(
                "        url: \"https://app.test/\"\n",
                &format!("      extract:\n        a: {extract}\n"),
            ))
        };
        assert_eq!(
            ex("{css: \"a >\"}"),
            [
                r#"t.yaml:7:18: checks[0].http.extract.a.css: invalid CSS selector "a >": a combinator (>, +, ~ or a space) has nothing after it"#
            ]
        );
        let long = "a".repeat(limits::MAX_CSS_LEN + 1);
        assert_eq!(
            ex(&format!("{{css: {long}}}")),
            ["t.yaml:7:18: checks[0].http.extract.a.css: CSS selector of 1025 bytes: at most 1024 are allowed"]
        );
        let errors = ex("{json: token}");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(
                r#"t.yaml:7:19: checks[0].http.extract.a.json: invalid JSONPath "token": "#
            ) && errors[0].ends_with(" (a JSONPath starts with $, e.g. $.token)"),
            "{errors:?}"
        );
        let errors = ex("{regex: \"(\"}");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0]
                .starts_with(r#"t.yaml:7:20: checks[0].http.extract.a.regex: invalid regex "(": "#),
            "{errors:?}"
        );
        let spec = spec_of(&request_check(
            "        url: \"https://app.test/\"\n",
            "      extract:\n        a: {css: \"a.next\", attr: href}\n        b: {status: true}\n",
        ));
        let vars: Vec<&str> = spec.steps[0]
            .extract
            .iter()
            .map(|e| e.var.as_str())
            .collect();
        assert_eq!(vars, ["a", "b"]);
    }

    #[test]
    fn expectations() {
        let expect = |e: &str| {
            errors_of(&request_check(
                "        url: \"https://app.test/\"\n",
                &format!("      expect:\n{e}"),
            ))
        };
        for (status, message) in [
            (
                "600",
                "invalid status 600: codes are 100 to 599, ranges low-high",
            ),
            (
                "\"299-200\"",
                "invalid status 299-200: codes are 100 to 599, ranges low-high",
            ),
            (
                "\"6xx\"",
                r#"invalid status "6xx": use a code (200), a class (2xx) or a range (200-299)"#,
            ),
            ("[]", "empty status list"),
        ] {
            let errors = expect(&format!("        status: {status}\n"));
            assert_eq!(errors.len(), 1, "{status}: {errors:?}");
            assert!(
                errors[0].starts_with("t.yaml:7:")
                    && errors[0].contains("checks[0].http.expect.status")
                    && errors[0].ends_with(message),
                "{status}: {errors:?}"
            );
        }
        let spec = spec_of(&request_check(
            "        url: \"https://app.test/\"\n",
            "      expect:\n        status: [\"2xx\", 301, \"400-404\"]\n",
        ));
        assert_eq!(
            spec.steps[0].expect.status,
            [(200, 299), (301, 301), (400, 404)]
        );
        let errors = expect("        body_regex: [ok, \"(\"]\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(
                r#"t.yaml:7:21: checks[0].http.expect.body_regex: invalid regex "(": "#
            ),
            "{errors:?}"
        );
        assert_eq!(
            expect("        json:\n          $.a: {equals: 1, exists: true}\n"),
            ["t.yaml:8:16: checks[0].http.expect.json.$.a: write one operator per JSON assertion (equals, exists, matches, less_than or greater_than)"]
        );
        let errors = expect("        json:\n          $.a: {equal: 1}\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("unknown JSON operator `equal`, expected one of equals, exists, matches, less_than, greater_than"),
            "{errors:?}"
        );
        assert_eq!(
            expect("        max_duration: 8d\n        cert_min_days: 3651\n"),
            [
                "t.yaml:7:23: checks[0].http.expect.max_duration: must be at most 7d",
                "t.yaml:8:24: checks[0].http.expect.cert_min_days: 3651 is more than the limit of 3650",
            ]
        );
    }

    #[test]
    fn body_limit_and_redirects_are_bounded() {
        let url = "        url: \"https://app.test/\"\n";
        assert_eq!(
            errors_of(&request_check(
                url,
                "      body_limit: 0\n      max_redirects: 101\n"
            )),
            [
                "t.yaml:6:19: checks[0].http.body_limit: must be greater than 0",
                "t.yaml:7:22: checks[0].http.max_redirects: at most 100",
            ]
        );
        let spec = spec_of(&request_check(url, ""));
        assert_eq!((spec.body_limit, spec.max_redirects), (1024 * 1024, 10));
        let spec = spec_of(&request_check(
            url,
            "      body_limit: 2KiB\n      max_redirects: 0\n",
        ));
        assert_eq!((spec.body_limit, spec.max_redirects), (2048, 0));
    }

    #[test]
    fn variables_read_what_their_declaration_says() {
        let c = check_of(&http_check(
            "      steps:\n        - name: login\n          request: {url: \"https://app.test/\"}\n        - name: home\n          request: {url: \"https://app.test/\"}\n",
        ));
        for (name, ty) in [
            ("status", Type::Number),
            ("failed_step", Type::String),
            ("cert_expires_in", Type::Duration),
            ("step.login.duration", Type::Duration),
            ("step.home.status", Type::Number),
            ("step.home.failed", Type::Bool),
        ] {
            assert_eq!(c.kind.var_type(name), Ok(ty), "{name}");
        }
        assert_eq!(
            c.kind.var_type("step.logout.failed"),
            Err(r#"unknown step "logout" (this check's steps: login, home)"#.to_string())
        );
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let login = StepResult {
            name: "login".into(),
            ran: true,
            success: false,
            status: None,
            duration: Duration::from_millis(40),
            reason: Some(Reason::Connect),
            cert_not_after: Some(now + Duration::from_secs(3600)),
            ..StepResult::default()
        };
        let home = StepResult {
            name: "home".into(),
            ..StepResult::default()
        };
        let r = CheckResult {
            attempts: 1,
            success: false,
            reason: Some(Reason::Connect),
            message: None,
            duration: Duration::from_millis(41),
            started_at: now,
            steps: vec![login, home],
            observations: Vec::new(),
            detail: None,
        };
        let v = |name: &str| c.kind.variable(&r, name, now);
        // A step that ran without a response has status 0.
        assert_eq!(v("status"), Some(Value::Number(0.0)));
        assert_eq!(v("step.login.status"), Some(Value::Number(0.0)));
        assert_eq!(v("failed_step"), Some(Value::String("login".into())));
        assert_eq!(v("step.login.failed"), Some(Value::Bool(true)));
        assert_eq!(
            v("step.login.duration"),
            Some(Value::Duration(Duration::from_millis(40)))
        );
        assert_eq!(
            v("cert_expires_in"),
            Some(Value::Duration(Duration::from_secs(3600)))
        );
        // A step that did not run: not failed, no status or duration.
        assert_eq!(v("step.home.failed"), Some(Value::Bool(false)));
        assert_eq!(v("step.home.status"), None);
        assert_eq!(v("step.home.duration"), None);
    }
}
