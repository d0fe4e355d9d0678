//! The validated, ready-to-run definition of an `http` check (built by `config::validate`).

use std::time::Duration;

use http::{HeaderName, Method};
use regex::Regex;
use serde_json_path::JsonPath;
use url::Url;

use crate::config::template::Template;
use crate::probe::tls::TlsSettings;

/// A whole http check.
#[derive(Debug)]
pub struct HttpSpec {
    /// Base of relative URLs, and `${base_url}`.
    pub base_url: Option<Url>,
    /// The steps, in order (one, named `request`, for the single-request form).
    pub steps: Vec<StepSpec>,
    /// TLS settings.
    pub tls: TlsSettings,
    /// Response body cap in bytes.
    pub body_limit: usize,
    /// Most redirect hops per step.
    pub max_redirects: u32,
}

/// One step.
#[derive(Debug)]
pub struct StepSpec {
    /// Step name.
    pub name: String,
    /// What to send.
    pub request: RequestSpec,
    /// What must hold.
    pub expect: ExpectSpec,
    /// Variables taken from the response, in order.
    pub extract: Vec<ExtractSpec>,
    /// Run even after an earlier failure.
    pub always_run: bool,
    /// A failure here does not stop the flow.
    pub continue_on_failure: bool,
    /// Follow redirects hop by hop.
    pub follow_redirects: bool,
    /// Bound on this step, inside the check's timeout.
    pub timeout: Option<Duration>,
}

/// A request template.
#[derive(Debug)]
pub struct RequestSpec {
    /// Method.
    pub method: Method,
    /// URL, absolute or relative to the base URL.
    pub url: Template,
    /// Headers.
    pub headers: Vec<(HeaderName, Template)>,
    /// Query parameters appended to the URL.
    pub query: Vec<(String, Template)>,
    /// Body.
    pub body: BodySpec,
}

/// A request body.
#[derive(Debug)]
pub enum BodySpec {
    /// No body.
    None,
    /// Raw text.
    Raw(Template),
    /// `application/x-www-form-urlencoded`.
    Form(Vec<(String, Template)>),
    /// `application/json`; string leaves are templates.
    Json(JsonTemplate),
}

/// A JSON value whose strings may hold `${...}` references.
#[derive(Debug)]
pub enum JsonTemplate {
    /// Any non-string scalar, kept as is.
    Scalar(serde_json::Value),
    /// A string template.
    String(Template),
    /// An array.
    Array(Vec<JsonTemplate>),
    /// An object, keys in written order.
    Object(Vec<(String, JsonTemplate)>),
}

/// Expectations on a step's final response.
#[derive(Debug)]
pub struct ExpectSpec {
    /// Accepted status ranges (inclusive).
    pub status: Vec<(u16, u16)>,
    /// Substrings the body must contain.
    pub body_contains: Vec<String>,
    /// Substrings the body must not contain.
    pub body_not_contains: Vec<String>,
    /// Regexes the body must match.
    pub body_regex: Vec<Regex>,
    /// Header values that must be present (exact match).
    pub headers: Vec<(HeaderName, String)>,
    /// JSON assertions.
    pub json: Vec<JsonAssertion>,
    /// Step duration bound.
    pub max_duration: Option<Duration>,
    /// Minimum certificate validity left, in days.
    pub cert_min_days: Option<u32>,
    /// Cookies that must be in the jar after the step.
    pub cookies: Vec<String>,
    /// The final URL (path, or absolute) after redirects.
    pub url: Option<String>,
}

impl Default for ExpectSpec {
    fn default() -> Self {
        ExpectSpec {
            status: vec![(200, 299)],
            body_contains: Vec::new(),
            body_not_contains: Vec::new(),
            body_regex: Vec::new(),
            headers: Vec::new(),
            json: Vec::new(),
            max_duration: None,
            cert_min_days: None,
            cookies: Vec::new(),
            url: None,
        }
    }
}

/// One JSON assertion.
#[derive(Debug)]
pub struct JsonAssertion {
    /// The path as written (for messages).
    pub path_src: String,
    /// The compiled path.
    pub path: JsonPath,
    /// What must hold of the selected value.
    pub op: JsonOp,
}

/// JSON assertion operators.
#[derive(Debug)]
pub enum JsonOp {
    /// Equals this value.
    Equals(serde_json::Value),
    /// Selects something (true) or nothing (false).
    Exists(bool),
    /// The string matches.
    Matches(Regex),
    /// The number is less than this.
    LessThan(f64),
    /// The number is greater than this.
    GreaterThan(f64),
}

/// One extraction into a variable.
#[derive(Debug)]
pub struct ExtractSpec {
    /// Variable name.
    pub var: String,
    /// Where the value comes from.
    pub source: ExtractSource,
}

/// Extraction sources.
#[derive(Debug)]
pub enum ExtractSource {
    /// First capture group (or whole match) of a regex on the body.
    Regex(Regex),
    /// A CSS selector on the HTML body; an attribute or the element text.
    Css {
        /// Compiled selector.
        selector: scraper::Selector,
        /// Selector as written.
        src: String,
        /// Attribute to read; text when absent.
        attr: Option<String>,
    },
    /// RFC 9535 JSONPath on the JSON body (first match; strings unquoted).
    Json {
        /// Compiled path.
        path: JsonPath,
        /// Path as written.
        src: String,
    },
    /// A response header.
    Header(HeaderName),
    /// A cookie from the jar.
    Cookie(String),
    /// The status code.
    Status,
}

impl ExtractSource {
    /// A short description for messages (`css input[name=csrf]`).
    pub fn describe(&self) -> String {
        match self {
            ExtractSource::Regex(r) => format!("regex {}", r.as_str()),
            ExtractSource::Css { src, attr, .. } => match attr {
                Some(a) => format!("css {src} @{a}"),
                None => format!("css {src}"),
            },
            ExtractSource::Json { src, .. } => format!("json {src}"),
            ExtractSource::Header(h) => format!("header {h}"),
            ExtractSource::Cookie(c) => format!("cookie {c}"),
            ExtractSource::Status => "status".into(),
        }
    }
}
