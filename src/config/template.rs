//! Strings with `${...}` references: variables (`${csrf}`, `${base_url}`) filled in at run time,
//! and secrets (`${env:NAME}`, `${file:PATH}`) resolved when the configuration is loaded.
//!
//! A resolved secret lives in [`Secret`], which has no `Display` and a redacting `Debug`, so it
//! cannot end up in a log line or an error by accident. A template remembers a redacted form of
//! itself (secret references shown by source, never by value) for traces and messages.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A secret value. It can be used (with [`Secret::expose`]) but never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a value read from a secret source.
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Secret(value.into())
    }

    /// The value, for building a request. Never log or format what this returns.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where a secret comes from. The reference itself is not secret and may be printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `${env:NAME}`
    Env(String),
    /// `${file:PATH}` (trailing newline trimmed)
    File(PathBuf),
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(name) => write!(f, "${{env:{name}}}"),
            SecretSource::File(path) => write!(f, "${{file:{}}}", path.display()),
        }
    }
}

impl SecretSource {
    /// Reads the secret now. The error names the source, never a value.
    pub fn resolve(&self) -> Result<Secret, String> {
        match self {
            SecretSource::Env(name) => match std::env::var(name) {
                Ok(v) => Ok(Secret::new(v)),
                Err(std::env::VarError::NotPresent) => Err(format!(
                    "secret source {self}: environment variable {name} is not set"
                )),
                Err(std::env::VarError::NotUnicode(_)) => Err(format!(
                    "secret source {self}: environment variable {name} is not valid UTF-8"
                )),
            },
            // Regular files only, and at most 64 KiB: a FIFO would block loading and
            // /dev/zero would be read until memory runs out.
            SecretSource::File(path) => {
                match super::limits::read_capped(path, super::limits::MAX_SECRET_FILE_BYTES) {
                    Ok(v) => Ok(Secret::new(v.trim_end_matches(['\r', '\n']))),
                    Err(reason) => Err(format!(
                        "secret source {self}: cannot read {}: {reason}",
                        path.display(),
                    )),
                }
            }
        }
    }
}

/// One piece of a template.
#[derive(Debug, Clone)]
pub enum Part {
    /// Text taken as is.
    Literal(String),
    /// `${name}`: an extracted or built-in variable, filled in at run time.
    Var(String),
    /// `${env:..}` / `${file:..}`: resolved at load time.
    Secret {
        /// Where it came from (printable).
        source: SecretSource,
        /// The value (not printable).
        value: Secret,
    },
    /// `${totp:env:..}`: the current one-time code from the seed in that secret.
    Totp {
        /// The seed as read (kept to redact it from peer output).
        seed: Secret,
        /// How codes are made from it.
        totp: Arc<super::totp::Totp>,
    },
}

/// A parsed string with `${...}` references.
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<Part>,
    redacted: String,
    /// Its secrets were not read (`canaryd check --no-secrets`): what it renders to is unknown.
    unread: bool,
}

thread_local! {
    /// Secret sources read while validating on this thread are not read, only listed (see
    /// [`SecretsUnread`]). Loading runs on one thread, so the flag covers one load.
    static UNREAD: std::cell::RefCell<Option<Vec<String>>> = const { std::cell::RefCell::new(None) };
}

/// While alive, templates parsed on this thread do not read their secrets (`${env:..}`,
/// `${file:..}`, `${totp:..}`): each becomes an empty placeholder, the template says it is not
/// [`Template::is_known`] so value checks skip it, and the sources are listed for
/// [`SecretsUnread::finish`]. For validating a configuration where its secrets are not set (CI).
pub struct SecretsUnread(());

impl SecretsUnread {
    /// Starts not reading secrets on this thread.
    pub fn enter() -> SecretsUnread {
        UNREAD.with(|u| *u.borrow_mut() = Some(Vec::new()));
        SecretsUnread(())
    }

    /// Stops, returning every distinct secret source met, in the order first met.
    pub fn finish(self) -> Vec<String> {
        UNREAD.with(|u| u.borrow_mut().take()).unwrap_or_default()
    }
}

impl Drop for SecretsUnread {
    fn drop(&mut self) {
        UNREAD.with(|u| *u.borrow_mut() = None);
    }
}

/// Records `source` when secrets are not read on this thread; `false` when they are read.
fn skip_secret(source: &SecretSource) -> bool {
    UNREAD.with(|u| match u.borrow_mut().as_mut() {
        Some(list) => {
            let s = source.to_string();
            if !list.contains(&s) {
                list.push(s);
            }
            true
        }
        None => false,
    })
}

/// Failure to render: a variable had no value at run time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("variable ${{{0}}} is not defined")]
pub struct Undefined(pub String);

/// `env:NAME` or `file:PATH` as a secret source (relative paths from `base_dir`).
fn secret_source(reference: &str, base_dir: &Path) -> Result<SecretSource, String> {
    if let Some(name) = reference.strip_prefix("env:") {
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "invalid environment variable name in ${{env:{name}}}"
            ));
        }
        Ok(SecretSource::Env(name.to_string()))
    } else if let Some(path) = reference.strip_prefix("file:") {
        let path = path.trim();
        if path.is_empty() {
            return Err("empty path in ${file:}".into());
        }
        Ok(SecretSource::File(base_dir.join(path)))
    } else {
        Err(format!("{reference:?} is not a secret reference"))
    }
}

/// Whether `s` is a valid variable name (`csrf`, `step.login.token` is not allowed).
pub fn is_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Template {
    /// A template without references.
    pub fn literal(s: impl Into<String>) -> Template {
        let s = s.into();
        Template {
            redacted: s.clone(),
            parts: vec![Part::Literal(s)],
            unread: false,
        }
    }

    /// Parses `s`, resolving secrets now. Relative `${file:..}` paths are taken from `base_dir`.
    /// `$${` writes a literal `${`. Errors say what is wrong without echoing secret values.
    pub fn parse(s: &str, base_dir: &Path) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut redacted = String::new();
        let mut lit = String::new();
        let mut rest = s;
        let mut unread = false;
        while let Some(i) = rest.find('$') {
            lit.push_str(&rest[..i]);
            rest = &rest[i..];
            if let Some(after) = rest.strip_prefix("$${") {
                lit.push_str("${");
                rest = after;
                continue;
            }
            let Some(after) = rest.strip_prefix("${") else {
                lit.push('$');
                rest = &rest[1..];
                continue;
            };
            let Some(end) = after.find('}') else {
                return Err("unterminated ${ (write $${ for a literal ${)".into());
            };
            let inner = after[..end].trim();
            rest = &after[end + 1..];
            if !lit.is_empty() {
                redacted.push_str(&lit);
                parts.push(Part::Literal(std::mem::take(&mut lit)));
            }
            if let Some(reference) = inner.strip_prefix("totp:") {
                // `${totp:env:SEED;digits=8}`: the options follow the first `;`.
                let (reference, options) = reference.split_once(';').unwrap_or((reference, ""));
                let source = secret_source(reference.trim(), base_dir).map_err(|e| {
                    format!("{e} (write ${{totp:env:NAME}} or ${{totp:file:PATH}})")
                })?;
                // Unread, a seed is a valid stand-in so the options are still checked.
                let seed = if skip_secret(&source) {
                    unread = true;
                    Secret::new("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ")
                } else {
                    source.resolve()?
                };
                let totp = super::totp::Totp::parse(seed.expose(), options)
                    .map_err(|e| format!("secret source {source}: {e}"))?;
                redacted.push_str(&format!("${{totp:{}}}", reference.trim()));
                parts.push(Part::Totp {
                    seed,
                    totp: Arc::new(totp),
                });
            } else if inner.starts_with("env:") || inner.starts_with("file:") {
                let source = secret_source(inner, base_dir)?;
                let value = if skip_secret(&source) {
                    unread = true;
                    Secret::new("")
                } else {
                    source.resolve()?
                };
                redacted.push_str(&match &source {
                    SecretSource::Env(_) => source.to_string(),
                    SecretSource::File(_) => format!("${{{inner}}}"),
                });
                parts.push(Part::Secret { source, value });
            } else if let Some((func, _)) = inner.split_once(':') {
                return Err(format!(
                    "unknown reference ${{{func}:...}} (expected env:, file:, totp: or a variable name)"
                ));
            } else if is_var_name(inner) {
                redacted.push_str(&format!("${{{inner}}}"));
                parts.push(Part::Var(inner.to_string()));
            } else {
                return Err(format!("invalid variable name ${{{inner}}}"));
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() || parts.is_empty() {
            redacted.push_str(&lit);
            parts.push(Part::Literal(lit));
        }
        Ok(Template {
            parts,
            redacted,
            unread,
        })
    }

    /// Whether what it renders to is known now: false when its secrets were not read
    /// ([`SecretsUnread`]), so checks of the rendered value must be skipped.
    pub fn is_known(&self) -> bool {
        !self.unread
    }

    /// The text, when the template has no references.
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Literal(s)] => Some(s),
            _ => None,
        }
    }

    /// Whether rendering includes a secret value (such output must never be printed).
    pub fn has_secret(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Secret { .. } | Part::Totp { .. }))
    }

    /// Names of the run-time variables referenced.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_str()),
            _ => None,
        })
    }

    /// The template with secret references shown by source: safe to print.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// Fills in variables and secrets. The result may contain secret values: do not print it.
    pub fn render<'a, F>(&'a self, lookup: F) -> Result<Cow<'a, str>, Undefined>
    where
        F: Fn(&str) -> Option<Cow<'a, str>>,
    {
        self.render_with(lookup, |out, secret| out.push_str(secret))
    }

    /// Fills in a URL template: as [`Template::render`], but a secret (`${env:..}`,
    /// `${file:..}`, `${totp:..}`) that lands in the path, the query or the fragment is
    /// percent-encoded (every byte but `A-Z a-z 0-9 - . _ ~`), so a `#`, `&`, `/`, `?`, `+`, `%`
    /// or space in it reaches the target decoded exactly as set, and never ends the component
    /// early. A secret at the start or in the scheme/authority (a whole URL, a host) is taken as
    /// is; the configured literal text and run-time variables (`${base_url}`, an extracted link)
    /// are taken as written.
    pub fn render_url<'a, F>(&'a self, lookup: F) -> Result<Cow<'a, str>, Undefined>
    where
        F: Fn(&str) -> Option<Cow<'a, str>>,
    {
        self.render_with(lookup, |out, secret| {
            if in_url_component(out) {
                out.push_str(&crate::redact::percent_strict(secret));
            } else {
                out.push_str(secret);
            }
        })
    }

    /// Renders the parts in order; `put_secret` appends a secret's value to what is rendered so
    /// far (as is, or encoded for where it lands).
    fn render_with<'a, F>(
        &'a self,
        lookup: F,
        put_secret: impl Fn(&mut String, &str),
    ) -> Result<Cow<'a, str>, Undefined>
    where
        F: Fn(&str) -> Option<Cow<'a, str>>,
    {
        if let Some(s) = self.as_literal() {
            return Ok(Cow::Borrowed(s));
        }
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Var(name) => match lookup(name) {
                    Some(v) => out.push_str(&v),
                    None => return Err(Undefined(name.clone())),
                },
                Part::Secret { value, .. } => put_secret(&mut out, value.expose()),
                Part::Totp { totp, .. } => put_secret(&mut out, &totp.now()),
            }
        }
        Ok(Cow::Owned(out))
    }

    /// The secret values this template carries (for redacting them from peer output).
    pub fn secrets(&self) -> impl Iterator<Item = &Secret> {
        self.parts.iter().filter_map(|p| match p {
            Part::Secret { value, .. } => Some(value),
            Part::Totp { seed, .. } => Some(seed),
            _ => None,
        })
    }
}

/// Whether text appended to the URL `before` lands in its path, query or fragment (rather than
/// at the start, in the scheme or in the authority).
fn in_url_component(before: &str) -> bool {
    if before.is_empty() {
        return false;
    }
    if before.contains(['?', '#']) {
        return true;
    }
    match before.find("://") {
        // Past the authority once a `/` follows the scheme.
        Some(i) => before[i + 3..].contains('/'),
        // A relative reference (`/api/${env:K}`, `items/${env:K}`) is a path.
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_variables_and_escape() {
        let t = Template::parse("a ${csrf} $${x} $5", Path::new(".")).unwrap();
        assert_eq!(t.variables().collect::<Vec<_>>(), ["csrf"]);
        let out = t
            .render(|n| (n == "csrf").then_some(Cow::Borrowed("T")))
            .unwrap();
        assert_eq!(out, "a T ${x} $5");
        assert!(Template::parse("${oops", Path::new("."))
            .unwrap_err()
            .contains("unterminated"));
        assert!(Template::parse("${a b}", Path::new("."))
            .unwrap_err()
            .contains("invalid variable"));
        assert!(Template::parse("${vault:x}", Path::new("."))
            .unwrap_err()
            .contains("unknown reference"));
    }

    #[test]
    fn secrets_resolve_but_never_print() {
        std::env::set_var("CANARYD_TEMPLATE_TEST_SECRET", "hunter2-canary");
        let t = Template::parse("pw=${env:CANARYD_TEMPLATE_TEST_SECRET}", Path::new(".")).unwrap();
        assert!(t.has_secret());
        assert_eq!(t.render(|_| None).unwrap(), "pw=hunter2-canary");
        assert_eq!(t.redacted(), "pw=${env:CANARYD_TEMPLATE_TEST_SECRET}");
        assert!(!format!("{t:?}").contains("hunter2"));
        let missing =
            Template::parse("${env:CANARYD_SURELY_UNSET_VAR}", Path::new(".")).unwrap_err();
        assert!(
            missing.contains("CANARYD_SURELY_UNSET_VAR is not set"),
            "{missing}"
        );
    }

    #[test]
    fn totp_codes_from_a_seed_in_a_secret() {
        std::env::set_var(
            "CANARYD_TEMPLATE_TEST_TOTP",
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
        );
        let t = Template::parse(
            "code=${totp:env:CANARYD_TEMPLATE_TEST_TOTP}",
            Path::new("."),
        )
        .unwrap();
        assert!(t.has_secret());
        assert_eq!(t.redacted(), "code=${totp:env:CANARYD_TEMPLATE_TEST_TOTP}");
        let code = t.render(|_| None).unwrap().into_owned();
        assert_eq!(code.len(), "code=".len() + 6);
        assert!(code["code=".len()..].chars().all(|c| c.is_ascii_digit()));
        // The seed is among the secrets redacted from peer output; Debug never shows it.
        assert!(t
            .secrets()
            .any(|s| s.expose() == "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"));
        assert!(!format!("{t:?}").contains("GEZDGNBV"));

        let t = Template::parse(
            "${totp:env:CANARYD_TEMPLATE_TEST_TOTP;digits=8}",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(t.render(|_| None).unwrap().len(), 8);

        std::env::set_var("CANARYD_TEMPLATE_TEST_TOTP_BAD", "not base32 at all!");
        let e = Template::parse("${totp:env:CANARYD_TEMPLATE_TEST_TOTP_BAD}", Path::new("."))
            .unwrap_err();
        assert!(
            e.contains("${env:CANARYD_TEMPLATE_TEST_TOTP_BAD}: the TOTP seed is not valid base32"),
            "{e}"
        );
        assert!(!e.contains("not base32 at all"), "{e}");
        let e = Template::parse("${totp:SEED}", Path::new(".")).unwrap_err();
        assert!(e.contains("write ${totp:env:NAME}"), "{e}");
    }

    #[test]
    fn secrets_in_a_url_are_encoded_for_their_component() {
        std::env::set_var("CANARYD_TEMPLATE_TEST_URLSECRET", "a b#c&d=e/f?g+h%i\"é");
        std::env::set_var("CANARYD_TEMPLATE_TEST_URLBASE", "http://127.0.0.1:9/base");
        let dir = Path::new(".");
        let t = Template::parse(
            "http://h:1/p/${env:CANARYD_TEMPLATE_TEST_URLSECRET}/x?k=${env:CANARYD_TEMPLATE_TEST_URLSECRET}&v=${v}#${env:CANARYD_TEMPLATE_TEST_URLSECRET}",
            dir,
        )
        .unwrap();
        let enc = "a%20b%23c%26d%3De%2Ff%3Fg%2Bh%25i%22%C3%A9";
        let out = t.render_url(|_| Some(Cow::Borrowed("x&y"))).unwrap();
        assert_eq!(
            out,
            format!("http://h:1/p/{enc}/x?k={enc}&v=x&y#{enc}"),
            "variables stay as they are, secrets are encoded"
        );
        // What the target decodes is exactly the value set.
        let u = url::Url::parse(&out).unwrap();
        let segs: Vec<_> = u.path_segments().unwrap().collect();
        let seg = percent_decode(segs[1]);
        assert_eq!(seg, "a b#c&d=e/f?g+h%i\"é");
        let k = u.query_pairs().find(|(k, _)| k == "k").unwrap().1;
        assert_eq!(k, "a b#c&d=e/f?g+h%i\"é");

        // A whole URL or a host from a secret is taken as is; relative paths are paths.
        let t = Template::parse("${env:CANARYD_TEMPLATE_TEST_URLBASE}/x", dir).unwrap();
        assert_eq!(t.render_url(|_| None).unwrap(), "http://127.0.0.1:9/base/x");
        let t = Template::parse("/q/${env:CANARYD_TEMPLATE_TEST_URLSECRET}", dir).unwrap();
        assert_eq!(t.render_url(|_| None).unwrap(), format!("/q/{enc}"));
        assert!(!in_url_component("https://"));
        assert!(!in_url_component("https://host:"));
        assert!(in_url_component("https://host/"));
    }

    fn percent_decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }
}
