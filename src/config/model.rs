//! The file formats as serde types: exactly what may be written, nothing more.
//!
//! Every struct denies unknown keys; no `flatten`, no internally tagged enums (both silently
//! defeat `deny_unknown_fields`). Values that validation must point at are [`Spanned`], so an
//! error names `file:line:col`. Turning these into the run-time model happens in `validate`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;

// The JSON Schema (`canaryd schema`) is derived from these types: `Spanned<T>` fields say their
// schema with `#[schemars(with = ...)]`, in the words of `schema` (`Text`: a string the decoder
// also reads from a number or boolean; `Flag`, `Count`: likewise for booleans and integers).
use super::schema::{
    self, Count, Flag, Method, QueueSystem, Severity as SeverityName, Text, TimeZone,
};
// The alerting keys of `canaryd.yaml` are defined next to what uses them (a temporary upward
// import until the daemon file's model leaves `config`).
use crate::alert::{
    receiver::ReceiverDef, route::RouteDef, silence::MaintenanceDef, watchdog::WatchdogDef,
};

/// A humantime duration: `30s`, `5m`, `1h30m`, `250ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 30s, 5m or 1h30m")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                humantime::parse_duration(s.trim()).map(Dur).map_err(|e| {
                    E::custom(format!(
                        "invalid duration {s:?}: {e} (write e.g. 30s, 5m, 1h30m)"
                    ))
                })
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "invalid duration {n}: a unit is required (write e.g. {n}s)"
                )))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "invalid duration {n}: a unit is required (write e.g. {n}s)"
                )))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "invalid duration {n}: a unit is required (write e.g. {n}s)"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// A byte size: `1048576`, `512KiB`, `1MiB`, `10MB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as 1MiB, 512KiB or a number of bytes")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(n))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ByteSize, E> {
                let t = s.trim();
                let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
                let (num, unit) = t.split_at(split);
                let mult: u64 = match unit.trim() {
                    "" | "B" => 1,
                    "KB" | "kB" => 1000,
                    "KiB" => 1024,
                    "MB" => 1000 * 1000,
                    "MiB" => 1024 * 1024,
                    "GB" => 1000 * 1000 * 1000,
                    "GiB" => 1024 * 1024 * 1024,
                    other => return Err(E::custom(format!("invalid size {s:?}: unknown unit {other:?} (use B, KiB, MiB, GiB, KB, MB, GB)"))),
                };
                num.parse::<u64>()
                    .ok()
                    .and_then(|n| n.checked_mul(mult))
                    .map(ByteSize)
                    .ok_or_else(|| E::custom(format!("invalid size {s:?}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// One accepted status: `200`, `"2xx"`, `"200-299"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange(pub u16, pub u16);

/// `status: 200`, `status: [200, 204]`, `status: "2xx"`, `status: ["200-299", 301]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSpec(pub Vec<StatusRange>);

fn status_from_str<E: de::Error>(s: &str) -> Result<StatusRange, E> {
    let t = s.trim();
    let bad = || {
        E::custom(format!(
            "invalid status {s:?}: use a code (200), a class (2xx) or a range (200-299)"
        ))
    };
    if t.len() == 3 && t.ends_with("xx") {
        let d = t[..1].parse::<u16>().map_err(|_| bad())?;
        if !(1..=5).contains(&d) {
            return Err(bad());
        }
        return Ok(StatusRange(d * 100, d * 100 + 99));
    }
    let (lo, hi) = match t.split_once('-') {
        Some((a, b)) => (
            a.trim().parse::<u16>().map_err(|_| bad())?,
            b.trim().parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let n = t.parse::<u16>().map_err(|_| bad())?;
            (n, n)
        }
    };
    status_range(lo, hi, s)
}

fn status_range<E: de::Error>(
    lo: u16,
    hi: u16,
    shown: impl fmt::Display,
) -> Result<StatusRange, E> {
    if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
        return Err(E::custom(format!(
            "invalid status {shown}: codes are 100 to 599, ranges low-high"
        )));
    }
    Ok(StatusRange(lo, hi))
}

impl<'de> Deserialize<'de> for StatusSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StatusSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a status code, class (2xx), range (200-299) or a list of them")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<StatusSpec, E> {
                let n = u16::try_from(n).map_err(|_| E::custom(format!("invalid status {n}")))?;
                Ok(StatusSpec(vec![status_range(n, n, n)?]))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<StatusSpec, E> {
                Err(E::custom(format!(
                    "invalid status {n}: codes are 100 to 599"
                )))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<StatusSpec, E> {
                Ok(StatusSpec(vec![status_from_str(s)?]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<StatusSpec, A::Error> {
                let mut out = Vec::new();
                while let Some(one) = seq.next_element::<StatusSpec>()? {
                    out.extend(one.0);
                }
                if out.is_empty() {
                    return Err(de::Error::custom("empty status list"));
                }
                Ok(StatusSpec(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// One string or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![s.to_string()]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(OneOrMany(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A list of at most `N` entries. Decoding stops at entry `N + 1`: a list of 100,000 queue
/// names would otherwise cost seconds and memory before validation could refuse it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capped<T, const N: usize>(pub Vec<T>);

impl<T, const N: usize> Default for Capped<T, N> {
    fn default() -> Self {
        Capped(Vec::new())
    }
}

impl<T, const N: usize> std::ops::Deref for Capped<T, N> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}

impl<'de, T: Deserialize<'de>, const N: usize> Deserialize<'de> for Capped<T, N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T, const N: usize>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for V<T, N> {
            type Value = Capped<T, N>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a list of at most {N} entries")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Capped<T, N>, A::Error> {
                let mut out = Vec::new();
                while let Some(x) = seq.next_element::<T>()? {
                    if out.len() == N {
                        return Err(de::Error::custom(format!(
                            "more than {N} entries: at most {N} are allowed"
                        )));
                    }
                    out.push(x);
                }
                Ok(Capped(out))
            }
        }
        d.deserialize_seq(V::<T, N>(std::marker::PhantomData))
    }
}

/// A map key that remembers where it was written (ordered by its text).
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct Key(pub Spanned<String>);

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.0.value == other.0.value
    }
}
impl Eq for Key {}
impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.value.cmp(&other.0.value)
    }
}

/// `canaryd.yaml`
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DaemonFile {
    /// Address of /metrics, the API and heartbeat pings: an IP address and port (default
    /// 127.0.0.1:9464; host names are not resolved).
    #[schemars(with = "Option<String>", extend("pattern" = schema::SOCKET_ADDR, "patternErrorMessage" = "host:port with an IP address, e.g. 127.0.0.1:9464"))]
    pub listen: Option<Spanned<String>>,
    /// Where the embedded state store lives, relative to this file (default ./state).
    #[schemars(with = "Option<Text>")]
    pub state_dir: Option<Spanned<String>>,
    /// Globs of check files, relative to this file.
    #[serde(default)]
    #[schemars(with = "Option<Vec<Text>>")]
    pub check_files: Vec<Spanned<String>>,
    /// Interval and timeout for checks that set none.
    #[serde(default)]
    #[schemars(with = "Option<Defaults>")]
    pub defaults: Defaults,
    /// Checks may also be written inline here (at most 10000 in all files).
    #[serde(default)]
    #[schemars(with = "Option<Vec<CheckDef>>", extend("maxItems" = 10000))]
    pub checks: Capped<CheckDef, 10000>,
    /// Where notifications go.
    #[serde(default)]
    #[schemars(with = "Option<Vec<ReceiverDef>>")]
    pub receivers: Vec<ReceiverDef>,
    /// Which alerts go to which receivers; first match wins.
    #[serde(default)]
    #[schemars(with = "Option<Vec<RouteDef>>")]
    pub routes: Vec<RouteDef>,
    /// Windows in which matching checks' alerts do not notify.
    #[serde(default)]
    #[schemars(with = "Option<Vec<MaintenanceDef>>")]
    pub maintenance: Vec<MaintenanceDef>,
    /// External dead-man's switch.
    pub watchdog: Option<WatchdogDef>,
    /// At most this many runs at once, across all checks (default 256, at most 10000).
    #[schemars(with = "Option<Count>", extend("minimum" = 1, "maximum" = 10000))]
    pub max_concurrency: Option<Spanned<u32>>,
}

/// `defaults:` in `canaryd.yaml`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Default interval (30s).
    #[schemars(with = "Option<Dur>")]
    pub interval: Option<Spanned<Dur>>,
    /// Default timeout (10s, at most the interval).
    #[schemars(with = "Option<Dur>")]
    pub timeout: Option<Spanned<Dur>>,
    /// Default response body cap (1MiB).
    #[schemars(with = "Option<ByteSize>")]
    pub body_limit: Option<Spanned<ByteSize>>,
}

/// A check file (`checks/*.yaml`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckFile {
    /// The checks in this file (at most 10000 in all files).
    #[serde(default)]
    #[schemars(with = "Option<Vec<CheckDef>>", extend("maxItems" = 10000))]
    pub checks: Capped<CheckDef, 10000>,
}

/// One check. Exactly one kind key (`http`, `tcp`, `queue`, `heartbeat`) must be set.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = schema::check_rules)]
pub struct CheckDef {
    /// Unique across all files; `[a-z0-9][a-z0-9_-]*`.
    #[schemars(with = "Text", extend("pattern" = schema::NAME, "maxLength" = 128, "patternErrorMessage" = "lowercase letters, digits, - and _, starting with a letter or digit"))]
    pub name: Spanned<String>,
    /// Time between runs.
    #[schemars(with = "Option<Dur>")]
    pub interval: Option<Spanned<Dur>>,
    /// Bound on a whole run (all steps); must be <= interval.
    #[schemars(with = "Option<Dur>")]
    pub timeout: Option<Spanned<Dur>>,
    /// Labels copied onto alerts.
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, Text>>")]
    pub labels: BTreeMap<String, String>,
    /// HTTP: one request or scripted steps.
    #[schemars(with = "Option<HttpDef>")]
    pub http: Option<Spanned<HttpDef>>,
    /// TCP connect (optionally TLS).
    #[schemars(with = "Option<TcpDef>")]
    pub tcp: Option<Spanned<TcpDef>>,
    /// Background-job health read from Redis.
    #[schemars(with = "Option<QueueDef>")]
    pub queue: Option<Spanned<QueueDef>>,
    /// Pushed heartbeats from batch jobs (`/ping/<name>`).
    #[schemars(with = "Option<HeartbeatDef>")]
    pub heartbeat: Option<Spanned<HeartbeatDef>>,
    /// Alert rules (none: a default `CheckFailing`, failed 3 runs in a row, critical).
    #[serde(default)]
    #[schemars(with = "Option<Vec<AlertDef>>")]
    pub alerts: Vec<AlertDef>,
}

/// The `http:` kind: `request` (one request) or `steps` (a scripted flow).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = schema::http_rules)]
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

/// TLS options (http, tcp and queue).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = schema::tls_rules)]
pub struct TlsDef {
    /// Turn certificate verification off (explicitly only).
    #[serde(default)]
    #[schemars(with = "Flag")]
    pub insecure_skip_verify: bool,
    /// Extra CA bundle (PEM) instead of the system roots.
    #[schemars(with = "Option<Text>")]
    pub ca_file: Option<Spanned<String>>,
    /// Client certificate (PEM).
    #[schemars(with = "Option<Text>")]
    pub cert_file: Option<Spanned<String>>,
    /// Client key (PEM).
    #[schemars(with = "Option<Text>")]
    pub key_file: Option<Spanned<String>>,
    /// SNI and verification name, when it differs from the URL host.
    #[schemars(with = "Option<Text>")]
    pub server_name: Option<Spanned<String>>,
}

/// One step of a scripted flow.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = schema::step_rules)]
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
#[schemars(transform = schema::request_rules)]
pub struct RequestDef {
    /// HTTP method (default GET).
    #[schemars(with = "Option<Method>")]
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
#[schemars(transform = schema::expect_rules)]
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
#[schemars(transform = schema::json_ops_rules)]
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
#[schemars(transform = schema::extract_rules)]
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

/// The `tcp:` kind.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpDef {
    /// `host:port`
    #[schemars(with = "String", extend("pattern" = schema::HOST_PORT, "patternErrorMessage" = "host:port"))]
    pub target: Spanned<String>,
    /// Do a TLS handshake after connecting.
    #[serde(default)]
    #[schemars(with = "Flag")]
    pub tls: bool,
    /// TLS options (with `tls: true`).
    pub tls_config: Option<TlsDef>,
    /// The certificate must be valid for at least this many days (with `tls: true`; at most
    /// 3650).
    #[schemars(with = "Option<Count>", extend("maximum" = 3650))]
    pub cert_min_days: Option<Spanned<u32>>,
}

/// The `queue:` kind.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = schema::queue_rules)]
pub struct QueueDef {
    /// sidekiq | celery | rq | bullmq | resque | redis (generic keys)
    #[schemars(with = "QueueSystem")]
    pub system: Spanned<String>,
    /// `redis://[:password@]host:port/db` or `rediss://…`; secrets allowed.
    #[schemars(with = "String", extend("pattern" = schema::REDIS_URL, "patternErrorMessage" = "a redis://, rediss:// or unix:// URL"))]
    pub redis: Spanned<String>,
    /// Queues to read (at most 1000); omitted: discover every queue.
    #[schemars(with = "Option<Vec<Text>>", extend("minItems" = 1, "maxItems" = 1000, "uniqueItems" = true))]
    pub queues: Option<Spanned<Capped<String, 1000>>>,
    /// Key prefix or namespace (Sidekiq namespace, Celery `global_keyprefix`, BullMQ prefix,
    /// Resque namespace).
    #[schemars(with = "Option<Text>")]
    pub prefix: Option<Spanned<String>>,
    /// Celery: the priority steps the broker was configured with (at most 256, each 0 to 255).
    #[schemars(with = "Option<Vec<Count>>", extend("maxItems" = 256))]
    pub priority_steps: Option<Spanned<Capped<u32, 256>>>,
    /// Celery: the separator between queue name and priority.
    #[schemars(with = "Option<Text>")]
    pub priority_separator: Option<Spanned<String>>,
    /// Generic `redis`: exact keys (at most 1000).
    #[schemars(with = "Option<Vec<Text>>", extend("maxItems" = 1000))]
    pub keys: Option<Spanned<Capped<String, 1000>>>,
    /// Generic `redis`: SCAN MATCH patterns (at most 1000).
    #[schemars(with = "Option<Vec<Text>>", extend("maxItems" = 1000))]
    pub patterns: Option<Spanned<Capped<String, 1000>>>,
    /// Bound on connecting (the check's timeout bounds the whole run).
    #[schemars(with = "Option<Dur>")]
    pub connect_timeout: Option<Spanned<Dur>>,
    /// TLS options for `rediss://`.
    pub tls_config: Option<TlsDef>,
}

/// The `heartbeat:` kind: `every` or `cron`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = schema::heartbeat_rules)]
pub struct HeartbeatDef {
    /// A run is expected this long after the previous one finished.
    #[schemars(with = "Option<Dur>")]
    pub every: Option<Spanned<Dur>>,
    /// Or: runs are expected at the times this crontab line names.
    #[schemars(with = "Option<String>", extend("pattern" = schema::CRON, "patternErrorMessage" = "five fields: minute hour day-of-month month day-of-week, e.g. \"0 2 * * *\""))]
    pub cron: Option<Spanned<String>>,
    /// IANA zone of `cron`'s wall-clock times (default UTC).
    #[schemars(with = "Option<TimeZone>")]
    pub timezone: Option<Spanned<String>>,
    /// How long after the due time a missing ping becomes late.
    #[schemars(with = "Option<Dur>")]
    pub grace: Option<Spanned<Dur>>,
    /// A started run must finish within this.
    #[schemars(with = "Option<Dur>")]
    pub max_runtime: Option<Spanned<Dur>>,
    /// Pings must carry `Authorization: Bearer <token>`; secrets allowed.
    #[schemars(with = "Option<Text>")]
    pub token: Option<Spanned<String>>,
}

/// One alert rule.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = schema::alert_rules)]
pub struct AlertDef {
    /// Alert name (`LoginFailing`).
    #[schemars(with = "Text", extend("pattern" = schema::ALERT_NAME, "patternErrorMessage" = "letters, digits and _, starting with a letter"))]
    pub name: Spanned<String>,
    /// Condition over the check's variables.
    #[schemars(with = "Text")]
    pub when: Spanned<String>,
    /// True for this long before firing.
    #[serde(rename = "for")]
    #[schemars(with = "Option<Dur>")]
    pub for_: Option<Spanned<Dur>>,
    /// True for this many runs in a row before firing (1 to 1000).
    #[schemars(with = "Option<Count>", extend("minimum" = 1, "maximum" = 1000))]
    pub consecutive: Option<Spanned<u32>>,
    /// `N of M`: true in N of the last M runs.
    #[schemars(with = "Option<String>", extend("pattern" = schema::WINDOW, "patternErrorMessage" = "N of M, e.g. 3 of 5"))]
    pub window: Option<Spanned<String>>,
    /// Keep firing this long after the condition clears (damps flapping).
    #[schemars(with = "Option<Dur>")]
    pub keep_firing_for: Option<Spanned<Dur>>,
    /// critical (default), error, warning or info.
    #[schemars(with = "Option<SeverityName>")]
    pub severity: Option<Spanned<String>>,
    /// Extra labels (routing).
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, Text>>")]
    pub labels: BTreeMap<String, String>,
    /// Templated annotations (`summary`, `runbook_url`, ...).
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, Text>>")]
    pub annotations: BTreeMap<String, Spanned<String>>,
}
