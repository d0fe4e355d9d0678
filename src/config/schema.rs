//! JSON Schema for `canaryd.yaml` and check files, so editors complete keys, show each key's
//! documentation and flag mistakes while the file is written (`canaryd schema config|checks`).
//!
//! The schema is derived from the very serde types the parser uses ([`super::model`]): a key
//! added there appears here, with its doc comment as its description. What derive cannot see is
//! written here once:
//!
//! - the types with hand-written `Deserialize` ([`Dur`], [`ByteSize`], [`StatusSpec`],
//!   [`OneOrMany`], [`Key`], and in the http kind `JsonExpect`) get schemas accepting exactly what they accept;
//! - the scalar types say what canaryd's YAML decoder reads, which is more than their JSON type
//!   ([`Text`], [`Flag`], [`Count`]): a string key takes `8080` or `yes` as text, a boolean
//!   takes `yes`/`on`, an integer takes `"5"`. An editor (YAML 1.2) sees `yes` as a string where
//!   canaryd (YAML 1.1 words) sees a boolean, so both readings must pass;
//! - cross-key rules of `validate` that a schema can state cheaply (exactly one check kind,
//!   every xor cron, one extraction source, ...), as `allOf` entries added by the `*_rules`
//!   transforms named on the model types.
//!
//! The rule is one-way: the schema never rejects a file `canaryd check` accepts (a null value
//! counts as "not set", as it does for the decoder); it leaves to `canaryd check` what it
//! cannot see (other files, secrets, expressions, regexes, cron semantics, duplicates).

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Value};

use super::model::{ByteSize, Dur, Key, OneOrMany, StatusSpec};

// ----- What canaryd's YAML decoder reads -------------------------------------------------------

/// Whitespace as the YAML decoder trims it around a scalar.
pub const WS: &str = r"\s*";

/// A YAML 1.1 boolean word, any case (the decoder reads `yes`, `on`, `y` as true).
pub fn bool_words() -> String {
    let words = ["true", "false", "yes", "no", "on", "off", "y", "n"];
    let alts: Vec<String> = words.iter().map(|w| any_case(w)).collect();
    format!("^{WS}(?:{}){WS}$", alts.join("|"))
}

/// `word` matched in any letter case, without the `i` flag JSON Schema regexes do not have.
pub fn any_case(word: &str) -> String {
    word.chars()
        .map(|c| {
            if c.is_ascii_alphabetic() {
                format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase())
            } else if c.is_ascii_alphanumeric() || c == ' ' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

/// An unsigned YAML integer literal as the decoder parses it (`+5`, `0x1F`, `0o17`, `1_000`).
pub const INT_LITERAL: &str = r"^\s*\+?(?:0|[1-9](?:_?[0-9])*|0[xX][0-9a-fA-F](?:_?[0-9a-fA-F])*|0[oO][0-7](?:_?[0-7])*|0[bB][01](?:_?[01])*)\s*$";

/// A string key. The decoder reads any scalar but null as its text (`port: 8080` is `"8080"`).
pub struct Text;

impl JsonSchema for Text {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Text".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": ["string", "number", "boolean"] })
    }
}

/// A boolean key: `true`/`false`, or a YAML 1.1 word (`yes`, `no`, `on`, `off`), any case.
pub struct Flag;

impl JsonSchema for Flag {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Flag".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": ["boolean", "string"],
            "pattern": bool_words(),
            "patternErrorMessage": "true or false",
        })
    }
}

/// A non-negative integer (u32); the decoder also reads its literal in a string (`"5"`).
pub struct Count;

impl JsonSchema for Count {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Count".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": ["integer", "string"],
            "minimum": 0,
            "maximum": u32::MAX,
            "pattern": INT_LITERAL,
            "patternErrorMessage": "a whole number",
        })
    }
}

/// Defines a string type whose schema is a fixed set of values (an `Option` of it adds null).
macro_rules! one_of_strings {
    ($(#[$doc:meta])* $name:ident, $values:expr) => {
        $(#[$doc])*
        pub struct $name;
        impl schemars::JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", "enum": $values })
            }
        }
    };
}
pub(crate) use one_of_strings;

one_of_strings!(
    /// `alerts[].severity`.
    Severity,
    ["critical", "error", "warning", "info"]
);
one_of_strings!(
    /// `heartbeat.timezone`, `maintenance[].timezone`: an IANA zone name, exactly as the zone database spells it.
    TimeZone,
    chrono_tz::TZ_VARIANTS
        .iter()
        .map(|tz| tz.name())
        .collect::<Vec<_>>()
);

// ----- Patterns of single values (each mirrors a check in validate.rs) -------------------------

/// Check, step and receiver names.
pub const NAME: &str = "^[a-z0-9][a-z0-9_-]*$";
/// Alert names.
pub const ALERT_NAME: &str = "^[A-Za-z][A-Za-z0-9_]*$";
/// Label names (check and alert labels).
pub const LABEL_NAME: &str = "^[A-Za-z_][A-Za-z0-9_]*$";
/// Extracted variable names.
pub const VAR_NAME: &str = "^[A-Za-z_][A-Za-z0-9_-]*$";
/// HTTP header names (RFC 9110 tokens).
pub const HEADER_NAME: &str = "^[!#$%&'*+\\-.^_`|~0-9A-Za-z]+$";
/// A JSONPath (RFC 9535) starts with the root `$`.
pub const JSONPATH: &str = r"^\$";
/// A request URL: absolute http(s), a path under `base_url`, or a reference.
pub const REQUEST_URL: &str = r"^(?:https?://|/|\$)";
/// An http(s) URL as the URL parser reads it (scheme in any case, leading blanks ignored).
pub const HTTP_URL: &str = r"^[\x00-\x20]*[Hh][Tt][Tt][Pp][Ss]?:";
/// A receiver URL template: http(s), or starting with a secret reference.
pub const HTTP_URL_TEMPLATE: &str = r"^[\s\x00-\x20]*(?:[Hh][Tt][Tt][Pp][Ss]?:|\$)";
/// A Redis URL template: a scheme the Redis client dials, or starting with a secret reference.
pub const REDIS_URL: &str =
    r"^(?:[\x00-\x20]*(?:[Rr][Ee][Dd][Ii][Ss](?:[Ss]|\+[Uu][Nn][Ii][Xx])?|[Uu][Nn][Ii][Xx]):|\$)";
/// `listen`: an IP socket address (no host names).
pub const SOCKET_ADDR: &str = r"^(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|\[[^\]]+\]):[0-9]+$";
/// `tcp.target`: `host:port`.
pub const HOST_PORT: &str = r"^.+:\+?[0-9]+$";
/// A crontab line: five fields, or a nickname such as `@daily`.
pub const CRON: &str = r"^\s*(?:@[A-Za-z]+|\S+(?:\s+\S+){4})\s*$";
/// An RFC 3339 time as `maintenance[].start` reads it (`T` or a space between date and time).
pub const RFC3339: &str = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}";
/// `alerts[].window`: `N of M`.
pub const WINDOW: &str = r"^\s*\+?[0-9]+\s* of \s*\+?[0-9]+\s*$";

/// A humantime duration after trimming: spans of a number and a unit (`1h30m`, `1h 30m`,
/// `1.5s`), or `0`.
pub fn duration_pattern() -> String {
    let units = "nanos|nsec|ns|usec|us|µs|millis|msec|ms|seconds|second|secs|sec|s|minutes|minute|\
                 mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w|months|month|M|\
                 years|year|yrs|yr|y";
    let num = r"[0-9][0-9\s]*(?:\.\s*[0-9][0-9\s]*)?";
    format!(r"^\s*(?:0|{num}(?:{units})(?:\s*{num}(?:{units}))*)\s*$")
}

// ----- The hand-written Deserialize types ------------------------------------------------------

impl JsonSchema for Dur {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: a number and a unit, e.g. 30s, 5m, 1h30m, 250ms (units: ms, s, m, h, d, w). A bare number is not a duration.",
            "type": "string",
            "pattern": duration_pattern(),
            "patternErrorMessage": "a duration such as 30s, 5m or 1h30m (a unit is required)",
            "examples": ["30s", "5m", "1h30m"],
        })
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A size: a number of bytes, or a number and a unit (B, KB, MB, GB, KiB, MiB, GiB), e.g. 1MiB.",
            "type": ["integer", "string"],
            "minimum": 0,
            "pattern": r"^\s*[0-9]+\s*(?:B|KB|kB|KiB|MB|MiB|GB|GiB)?\s*$",
            "patternErrorMessage": "a size such as 1MiB, 512KiB or a number of bytes",
            "examples": ["1MiB", "512KiB"],
        })
    }
}

impl JsonSchema for StatusSpec {
    fn schema_name() -> Cow<'static, str> {
        "StatusSpec".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        // The string form goes through Rust's integer parser, which takes `+200` and `0200`.
        let code = r"\+?0*[1-5][0-9][0-9]";
        json_schema!({
            "description": "Accepted statuses: a code (200), a class (\"2xx\"), a range (\"200-299\"), or a list of them.",
            "anyOf": [
                { "type": "integer", "minimum": 100, "maximum": 599 },
                {
                    "type": "string",
                    "pattern": format!(r"^\s*(?:[1-5]xx|{code}(?:\s*-\s*{code})?)\s*$"),
                    "patternErrorMessage": "a code (200), a class (2xx) or a range (200-299)",
                },
                { "type": "array", "minItems": 1, "items": generator.subschema_for::<StatusSpec>() },
            ],
        })
    }
}

impl JsonSchema for OneOrMany {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "OneOrMany".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        // A lone value must be a string; list items are read as text.
        json_schema!({
            "anyOf": [
                { "type": "string" },
                { "type": "array", "items": generator.subschema_for::<Text>() },
            ],
        })
    }
}

impl JsonSchema for Key {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Key".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string" })
    }
}

// ----- Cross-key rules -------------------------------------------------------------------------

/// `key` is set: present and not null (null is "not set" to the decoder).
pub fn set(key: &str) -> Value {
    json!({ "required": [key], "properties": { key: { "not": { "type": "null" } } } })
}

/// `key` is not set (absent or null).
pub fn unset(key: &str, message: &str) -> Value {
    json!({ "properties": { key: { "type": "null", "errorMessage": message } } })
}

/// Exactly one of `keys` is set.
pub fn exactly_one(keys: &[&str], message: &str) -> Value {
    let each: Vec<Value> = keys.iter().map(|k| set(k)).collect();
    json!({ "oneOf": each, "errorMessage": message })
}

/// At most one of `keys` is set.
pub fn at_most_one(keys: &[&str], message: &str) -> Value {
    let mut pairs = Vec::new();
    for (i, a) in keys.iter().enumerate() {
        for b in &keys[i + 1..] {
            pairs.push(json!({ "allOf": [set(a), set(b)] }));
        }
    }
    json!({ "not": { "anyOf": pairs }, "errorMessage": message })
}

/// When `key` is set, `other` must be set too.
pub fn needs(key: &str, other: &str, message: &str) -> Value {
    json!({ "if": set(key), "then": { "allOf": [set(other)], "errorMessage": message } })
}

/// Adds `rules` to the `allOf` of `schema`.
pub fn add_rules(schema: &mut Schema, rules: impl IntoIterator<Item = Value>) {
    let all = schema
        .ensure_object()
        .entry("allOf")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(a) = all {
        a.extend(rules);
    }
}

/// Sets the schema of the property `key`'s names.
pub fn property_names(schema: &mut Schema, key: &str, names: Value) {
    if let Some(p) = schema.pointer_mut(&format!("/properties/{key}")) {
        if let Some(o) = p.as_object_mut() {
            o.insert("propertyNames".into(), names);
        }
    }
}

/// A name pattern for map keys, with its message.
pub fn names(pattern: &str, what: &str) -> Value {
    json!({ "pattern": pattern, "patternErrorMessage": what })
}
