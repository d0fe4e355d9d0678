//! The validation context every part of the configuration validates through: one error sink
//! per file (errors located as `file:line:col` with their key), and the small checks many parts
//! share (durations and counts within limits, templates, regexes, JSONPaths, files, URLs).

use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;
use serde_json_path::JsonPath;
use serde_saphyr::{Location, Spanned};
use url::Url;

use super::limits;
use super::model::{ByteSize, Dur};
use super::template::Template;
use super::{ConfigError, Origin};

/// Error sink for one file.
pub struct Ctx<'a> {
    pub file: PathBuf,
    pub src: &'a str,
    pub dir: PathBuf,
    pub errors: &'a mut Vec<ConfigError>,
}

impl Ctx<'_> {
    pub fn err(&mut self, loc: &Location, key: impl Into<String>, message: impl Into<String>) {
        self.err_at(loc.line(), loc.column(), key, message);
    }

    pub fn err_at(
        &mut self,
        line: u64,
        col: u64,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line: line.max(1),
            col: col.max(1),
            key: key.into(),
            message: message.into(),
        });
    }

    pub fn origin(&self, loc: &Location) -> Origin {
        Origin {
            file: self.file.clone(),
            line: loc.line(),
            col: loc.column(),
        }
    }

    /// Column of the first character of a scalar's text (after an opening quote).
    pub fn text_col(&self, loc: &Location) -> u64 {
        let line = self
            .src
            .lines()
            .nth(loc.line().saturating_sub(1) as usize)
            .unwrap_or("");
        let c = line.chars().nth(loc.column().saturating_sub(1) as usize);
        if matches!(c, Some('"') | Some('\'')) {
            loc.column() + 1
        } else {
            loc.column()
        }
    }

    pub fn template(&mut self, s: &Spanned<String>, key: &str) -> Option<Template> {
        match Template::parse(&s.value, &self.dir) {
            Ok(t) => Some(t),
            Err(e) => {
                self.err(&s.referenced, key, e);
                None
            }
        }
    }

    pub fn regex(&mut self, s: &str, loc: &Location, key: &str) -> Option<Regex> {
        match Regex::new(s) {
            Ok(r) => Some(r),
            Err(e) => {
                let first = e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                self.err(loc, key, format!("invalid regex {s:?}: {first}"));
                None
            }
        }
    }

    pub fn jsonpath(&mut self, s: &str, loc: &Location, key: &str) -> Option<JsonPath> {
        match JsonPath::parse(s) {
            Ok(p) => Some(p),
            Err(e) => {
                let hint = if s.starts_with('$') {
                    ""
                } else {
                    " (a JSONPath starts with $, e.g. $.token)"
                };
                self.err(loc, key, format!("invalid JSONPath {s:?}: {e}{hint}"));
                None
            }
        }
    }

    /// A PEM file the probe reads when it is built: a regular file within the size cap.
    pub fn path(&mut self, s: &Spanned<String>, key: &str) -> Option<PathBuf> {
        let p = self.dir.join(&s.value);
        match limits::check_file(&p, limits::MAX_PEM_FILE_BYTES) {
            Ok(()) => Some(p),
            Err(reason) if reason == "no such file" => {
                self.err(
                    &s.referenced,
                    key,
                    format!("file {} does not exist", s.value),
                );
                None
            }
            Err(reason) => {
                self.err(
                    &s.referenced,
                    key,
                    format!("cannot use file {}: {reason}", s.value),
                );
                None
            }
        }
    }

    /// Whether an optional duration lies within `range`; reports it when it does not.
    pub fn dur_in(
        &mut self,
        d: Option<&Spanned<Dur>>,
        key: &str,
        range: (Duration, Duration),
    ) -> bool {
        let Some(d) = d else { return true };
        let (min, max) = range;
        if d.value.0 >= min && d.value.0 <= max {
            return true;
        }
        let message = if d.value.0 < min {
            format!("must be at least {}", fmt_limit(min))
        } else {
            format!("must be at most {}", fmt_limit(max))
        };
        self.err(&d.referenced, key, message);
        false
    }

    /// Whether a list or map of `n` entries is within `max`; reports it at `loc` when not.
    pub fn count(&mut self, n: usize, max: usize, loc: &Location, key: &str, what: &str) -> bool {
        if n <= max {
            return true;
        }
        self.err(loc, key, format!("{n} {what}: at most {max} are allowed"));
        false
    }

    /// Label names and their number (a check's or an alert rule's `labels`), reported at `loc`.
    pub fn labels(
        &mut self,
        labels: &std::collections::BTreeMap<String, String>,
        loc: &Location,
        key: &str,
    ) {
        self.count(labels.len(), limits::MAX_LABELS, loc, key, "labels");
        for l in labels.keys() {
            if !valid_label(l) {
                self.err(
                    loc,
                    key,
                    format!("invalid label name {l:?}: use [a-zA-Z_][a-zA-Z0-9_]*"),
                );
            }
        }
    }

    /// Whether an integer is within `1..=max` (or `0..=max`); reports it when not.
    pub fn int_in(&mut self, n: Option<&Spanned<u32>>, key: &str, min: u32, max: u32) -> bool {
        let Some(n) = n else { return true };
        if (min..=max).contains(&n.value) {
            return true;
        }
        let message = if n.value < min {
            format!("{} is less than the minimum of {min}", n.value)
        } else {
            format!("{} is more than the limit of {max}", n.value)
        };
        self.err(&n.referenced, key, message);
        false
    }
}

/// Whether a URL template that takes secrets only (watchdog) renders to an http(s) URL with a
/// host; the error shows the template's redacted form, never a secret.
pub fn secret_url(ctx: &mut Ctx, t: &Template, at: &Spanned<String>, key: &str) -> bool {
    if let Some(v) = t.variables().next() {
        ctx.err(
            &at.referenced,
            key,
            format!("${{{v}}}: this URL takes secrets (${{env:..}}, ${{file:..}}) but no run-time variables"),
        );
        return false;
    }
    if !t.is_known() {
        return true;
    }
    let ok = t
        .render(|_| None)
        .ok()
        .and_then(|u| Url::parse(u.trim()).ok())
        .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if !ok {
        ctx.err(
            &at.referenced,
            key,
            format!("{:?} is not an http(s) URL with a host", t.redacted()),
        );
    }
    ok
}

/// Whether a secret that must have a value (routing key, signing secret) renders non-empty.
pub fn non_empty_secret(ctx: &mut Ctx, t: &Template, at: &Spanned<String>, key: &str) -> bool {
    let empty = t.is_known() && t.render(|_| None).is_ok_and(|v| v.trim().is_empty());
    if empty {
        ctx.err(
            &at.referenced,
            key,
            format!("{} is empty: it must have a value", t.redacted()),
        );
    }
    !empty
}

/// `body_limit` lies within 1 byte and [`limits::MAX_BODY_LIMIT`].
pub fn body_limit_in(ctx: &mut Ctx, b: &Spanned<ByteSize>, key: &str) {
    if b.value.0 == 0 {
        ctx.err(&b.referenced, key, "must be greater than 0");
    } else if b.value.0 > limits::MAX_BODY_LIMIT {
        ctx.err(
            &b.referenced,
            key,
            format!(
                "{} bytes is more than the limit of {}",
                b.value.0,
                limits::fmt_bytes(limits::MAX_BODY_LIMIT)
            ),
        );
    }
}

/// A limit in the largest whole unit: `7d`, `1m`, `100ms` (humantime would write a year as
/// `1year 18h`).
pub fn fmt_limit(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

pub fn fmt_d(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

pub fn valid_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_lowercase() || ch.is_ascii_digit())
        && c.all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_' || ch == '-')
        && s.len() <= 128
}

pub fn valid_label(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

pub fn parse_url(ctx: &mut Ctx, s: &Spanned<String>, key: &str) -> Option<Url> {
    match Url::parse(&s.value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
        Ok(_) => {
            ctx.err(
                &s.referenced,
                key,
                format!("unsupported URL {:?}: only http and https", s.value),
            );
            None
        }
        Err(e) => {
            ctx.err(
                &s.referenced,
                key,
                format!("invalid URL {:?}: {e}", s.value),
            );
            None
        }
    }
}

/// Whether a template that takes secrets only has no run-time variables; reports it when not.
pub fn no_variables(ctx: &mut Ctx, t: &Template, at: &Spanned<String>, key: &str) -> bool {
    match t.variables().next() {
        None => true,
        Some(v) => {
            ctx.err(
                &at.referenced,
                key,
                format!("${{{v}}}: this key takes secrets (${{env:..}}, ${{file:..}}) but no run-time variables"),
            );
            false
        }
    }
}

/// Whether a receiver URL template (secrets already resolved) renders to an http(s) URL; the
/// error shows the template's redacted form, never a secret.
pub fn receiver_url(ctx: &mut Ctx, t: &Template, at: &Spanned<String>, key: &str) -> bool {
    if !t.is_known() {
        return true;
    }
    let ok = t
        .render(|_| None)
        .ok()
        .and_then(|u| Url::parse(u.trim()).ok())
        .is_some_and(|u| matches!(u.scheme(), "http" | "https"));
    if !ok {
        ctx.err(
            &at.referenced,
            key,
            format!(
                "{:?} is not an http(s) URL (run-time variables are not available here)",
                t.redacted()
            ),
        );
    }
    ok
}

/// At most `max` characters of `text` (with `…` when cut), so an error about a 4,096-character
/// expression stays one readable line: the column already points at the problem.
pub fn excerpt(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]).into(),
        None => text.into(),
    }
}

/// A header value must not hold CR, LF or NUL (a request cannot carry it). Literal text and
/// secrets are checked now; run-time variables are checked when the request is built.
pub fn header_value(ctx: &mut Ctx, t: &Template, at: &Spanned<String>, key: &str) {
    let bad = |s: &str| s.contains(['\r', '\n', '\0']);
    // Variables render empty here: only what is known at load time is judged.
    if t.render(|_| Some(std::borrow::Cow::Borrowed("")))
        .is_ok_and(|v| bad(&v))
    {
        let what = if t.has_secret() {
            "the value (with its secrets)"
        } else {
            "the value"
        };
        ctx.err(
            &at.referenced,
            key,
            format!("{what} contains a line break or NUL character, which a header cannot carry"),
        );
    }
}

/// Validating a decoded piece of configuration through a fresh [`Ctx`], for the unit tests of
/// every part of `config` (which may not reach up into `probe` for a whole check file).
#[cfg(test)]
pub(crate) mod test_support {
    use std::path::Path;

    use serde::de::DeserializeOwned;

    use super::Ctx;

    /// Decodes `yaml` (as file `t.yaml`, relative files under `dir`), runs `validate` on it
    /// with a fresh context and returns its result with every error as the user sees it.
    pub(crate) fn validate_in<T: DeserializeOwned, R>(
        dir: &Path,
        yaml: &str,
        validate: impl FnOnce(&mut Ctx, &T) -> R,
    ) -> (R, Vec<String>) {
        let def: T = crate::config::files::decode(Path::new("t.yaml"), yaml)
            .unwrap_or_else(|e| panic!("test input does not decode: {e}\n{yaml}"));
        let mut errors = Vec::new();
        let mut ctx = Ctx {
            file: "t.yaml".into(),
            src: yaml,
            dir: dir.to_path_buf(),
            errors: &mut errors,
        };
        let out = validate(&mut ctx, &def);
        (out, errors.iter().map(ToString::to_string).collect())
    }

    /// [`validate_in`] with relative files under the current directory.
    pub(crate) fn validate<T: DeserializeOwned, R>(
        yaml: &str,
        validate: impl FnOnce(&mut Ctx, &T) -> R,
    ) -> (R, Vec<String>) {
        validate_in(Path::new("."), yaml, validate)
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{validate, validate_in};
    use super::*;
    use serde::Deserialize;

    #[test]
    fn limits_print_in_their_largest_whole_unit() {
        assert_eq!(fmt_limit(limits::INTERVAL.0), "100ms");
        assert_eq!(fmt_limit(limits::INTERVAL.1), "7d");
        assert_eq!(fmt_limit(limits::REPEAT_INTERVAL.0), "1m");
        assert_eq!(fmt_limit(limits::HEARTBEAT.1), "366d");
    }

    #[test]
    fn a_long_expression_is_cut_in_its_error() {
        assert_eq!(excerpt("abc", 5), "abc");
        assert_eq!(excerpt("ééééé", 3), "ééé…");
        let long = "(".repeat(5000);
        assert_eq!(excerpt(&long, 120).chars().count(), 121);
    }

    /// Values of each shape the context's checks take.
    #[derive(Deserialize)]
    struct Vals {
        d: Option<Spanned<Dur>>,
        n: Option<Spanned<u32>>,
        p: Option<Spanned<String>>,
    }

    #[test]
    fn a_duration_outside_its_range_says_which_bound_at_the_value() {
        let (ok, errors) = validate("d: 50ms", |ctx, v: &Vals| {
            ctx.dur_in(v.d.as_ref(), "checks[0].interval", limits::INTERVAL)
        });
        assert!(!ok);
        assert_eq!(
            errors,
            ["t.yaml:1:4: checks[0].interval: must be at least 100ms"]
        );
        let (ok, errors) = validate("\nd:   8d", |ctx, v: &Vals| {
            ctx.dur_in(v.d.as_ref(), "k", limits::INTERVAL)
        });
        assert!(!ok);
        assert_eq!(errors, ["t.yaml:2:6: k: must be at most 7d"]);
        for within in ["d: 100ms", "d: 7d", "n: 1"] {
            let (ok, errors) = validate(within, |ctx, v: &Vals| {
                ctx.dur_in(v.d.as_ref(), "k", limits::INTERVAL)
            });
            assert!(ok, "{within}");
            assert!(errors.is_empty(), "{within}: {errors:?}");
        }
    }

    #[test]
    fn a_count_over_its_limit_names_what_was_counted() {
        let (ok, errors) = validate("p: x", |ctx, v: &Vals| {
            let at = v.p.as_ref().unwrap().referenced;
            (
                ctx.count(65, 64, &at, "checks[0].labels", "labels"),
                ctx.count(64, 64, &at, "checks[0].labels", "labels"),
            )
        });
        assert_eq!(ok, (false, true));
        assert_eq!(
            errors,
            ["t.yaml:1:4: checks[0].labels: 65 labels: at most 64 are allowed"]
        );
    }

    #[test]
    fn an_integer_outside_its_range_says_which_bound() {
        let check =
            |yaml: &str| validate(yaml, |ctx, v: &Vals| ctx.int_in(v.n.as_ref(), "k", 1, 10));
        assert_eq!(
            check("n: 0"),
            (
                false,
                vec!["t.yaml:1:4: k: 0 is less than the minimum of 1".to_string()]
            )
        );
        assert_eq!(
            check("n: 11"),
            (
                false,
                vec!["t.yaml:1:4: k: 11 is more than the limit of 10".to_string()]
            )
        );
        assert_eq!(check("n: 1"), (true, vec![]));
        assert_eq!(check("n: 10"), (true, vec![]));
        assert_eq!(check("d: 1s"), (true, vec![]));
    }

    #[test]
    fn a_file_must_exist_be_regular_and_within_the_pem_cap() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), "pem").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let big = std::fs::File::create(dir.path().join("big.pem")).unwrap();
        big.set_len(limits::MAX_PEM_FILE_BYTES + 1).unwrap();
        let path = |yaml: &str| {
            validate_in(dir.path(), yaml, |ctx, v: &Vals| {
                ctx.path(v.p.as_ref().unwrap(), "checks[0].http.tls_config.ca_file")
            })
        };
        assert_eq!(path("p: ca.pem"), (Some(dir.path().join("ca.pem")), vec![]));
        assert_eq!(
            path("p: nope.pem"),
            (
                None,
                vec![
                    "t.yaml:1:4: checks[0].http.tls_config.ca_file: file nope.pem does not exist"
                        .to_string()
                ]
            )
        );
        assert_eq!(
            path("p: sub").1,
            ["t.yaml:1:4: checks[0].http.tls_config.ca_file: cannot use file sub: is a directory"]
        );
        assert_eq!(
            path("p: big.pem").1,
            ["t.yaml:1:4: checks[0].http.tls_config.ca_file: cannot use file big.pem: larger than the limit of 1 MiB"]
        );
    }
}
