//! Removing secret values from text that is about to be shown (logs, messages, API answers,
//! stored ping bodies).
//!
//! A peer rarely echoes a secret byte for byte: a JSON answer escapes `"` and `\` (and may write
//! any character as `\uXXXX`, or `/` as `\/`), a URL or a form percent-encodes it (`%20` or `+`,
//! upper or lower hex), an HTML page writes `&quot;` and `&amp;`, and a basic-auth header carries
//! it inside base64. [`Redactor`] matches every one of these forms, mixed within one value, so
//! what is matched is the value itself, however it was spelled.
//!
//! Base64 is matched as the part of the encoding that depends on the value alone, at each of the
//! three byte alignments, so `base64("user:" + secret)` (any user) is caught as well as
//! `base64(secret)`; at most the few characters that mix the value with its neighbours remain.

use std::borrow::Cow;

use data_encoding::{BASE64, BASE64URL};
use regex::Regex;

/// Values shorter than this (in bytes) are not redacted: they would shred every message.
pub const MIN_LEN: usize = 4;

/// Values up to this many characters are matched in every encoding, mixed (one pattern each);
/// longer ones (a PEM key, a long extracted page) are matched in their usual whole encodings only
/// (raw, JSON-escaped, percent-encoded in both styles and hex cases, base64), which keeps the
/// work per value bounded.
pub const MAX_PATTERN_CHARS: usize = 512;

/// Shortest base64 run that is redacted (shorter runs would match ordinary words).
const MIN_BASE64_CORE: usize = 6;

/// Secrets whose redactor [`Redactor::cached`] keeps.
const CACHED: usize = 256;

/// What replaces a redacted value.
pub const MARK: &str = "<redacted>";

enum Rule {
    /// Every spelling of one value, as one pattern.
    Pattern(Regex),
    /// One exact spelling.
    Literal(String),
}

/// Removes known values from text, in every encoding (see the module docs).
#[derive(Default)]
pub struct Redactor {
    rules: Vec<Rule>,
    /// Per value, its starts as they show before a [`CUT`] mark (longest first).
    cuts: Vec<Vec<String>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} rules)", self.rules.len())
    }
}

impl Redactor {
    /// A redactor of these values (values shorter than [`MIN_LEN`] bytes are ignored).
    pub fn new<I, S>(values: I) -> Redactor
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Redactor::build(values, true)
    }

    /// A cheaper redactor for run-time values (extracted per run): each value in its whole
    /// encodings only (raw, JSON-escaped, percent-encoded in both styles and hex cases) and cut
    /// by an excerpt; no mixed spellings, no base64.
    pub fn whole<I, S>(values: I) -> Redactor
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Redactor::build(values, false)
    }

    /// The redactor of one secret, built once per value and shared (a heartbeat token is
    /// redacted from every ping body; building its pattern per ping would cost more than the
    /// ping). At most [`CACHED`] values are kept; past that the cache starts over.
    pub fn cached(value: &str) -> std::sync::Arc<Redactor> {
        use std::collections::HashMap;
        use std::sync::{Arc, Mutex, OnceLock};
        static CACHE: OnceLock<Mutex<HashMap<String, Arc<Redactor>>>> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        if let Some(r) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(value) {
            return r.clone();
        }
        let r = Arc::new(Redactor::new([value]));
        let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CACHED {
            map.clear();
        }
        map.insert(value.to_string(), r.clone());
        r
    }

    fn build<I, S>(values: I, every_spelling: bool) -> Redactor
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut values: Vec<String> = values
            .into_iter()
            .map(|v| v.as_ref().to_string())
            .filter(|v| v.len() >= MIN_LEN)
            .collect();
        // Longest first, so a value containing another is replaced whole.
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        let mut rules = Vec::new();
        let mut cuts = Vec::new();
        for v in &values {
            let pattern = (every_spelling && v.chars().count() <= MAX_PATTERN_CHARS)
                .then(|| {
                    regex::RegexBuilder::new(&spellings(v))
                        .size_limit(16 << 20)
                        .build()
                        .ok()
                })
                .flatten();
            match pattern {
                Some(p) => rules.push(Rule::Pattern(p)),
                None => rules.extend(whole_encodings(v).into_iter().map(Rule::Literal)),
            }
            if v.chars().count() >= 2 {
                cuts.push(cut_prefixes(v));
            }
        }
        // Base64 after the plain forms: a base64 run never contains a plain form's mark.
        let mut b64: Vec<String> = values
            .iter()
            .filter(|_| every_spelling)
            .flat_map(|v| base64_cores(v))
            .collect();
        b64.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        b64.dedup();
        rules.extend(b64.into_iter().map(Rule::Literal));
        Redactor { rules, cuts }
    }

    /// Whether this redactor removes nothing.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The text with every known value, in every spelling, replaced by `<redacted>`.
    pub fn apply(&self, text: &str) -> String {
        self.apply_cow(text).into_owned()
    }

    /// As [`Redactor::apply`], without copying text that holds no value.
    pub fn apply_cow<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut out = Cow::Borrowed(text);
        for rule in &self.rules {
            match rule {
                Rule::Pattern(p) => {
                    if let Cow::Owned(s) = p.replace_all(&out, MARK) {
                        out = Cow::Owned(s);
                    }
                }
                Rule::Literal(l) => {
                    if out.contains(l.as_str()) {
                        out = Cow::Owned(out.replace(l.as_str(), MARK));
                    }
                }
            }
        }
        if out.contains(CUT) && !self.cuts.is_empty() {
            out = Cow::Owned(self.redact_cuts(&out));
        }
        out
    }

    /// Replaces the start of a value right before a [`CUT`] mark (an excerpt cut inside a
    /// secret must not show its first half). Only the first [`MAX_CUTS`] marks are looked at.
    fn redact_cuts(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        let mut seen = 0;
        while let Some(i) = rest.find(CUT) {
            if seen == MAX_CUTS {
                break;
            }
            seen += 1;
            let before = &rest[..i];
            let longest = self
                .cuts
                .iter()
                .filter_map(|starts| starts.iter().find(|p| before.ends_with(p.as_str())))
                .map(String::len)
                .max();
            match longest {
                Some(n) => {
                    out.push_str(&before[..before.len() - n]);
                    out.push_str(MARK);
                }
                None => out.push_str(before),
            }
            out.push(CUT);
            rest = &rest[i + CUT.len_utf8()..];
        }
        out.push_str(rest);
        out
    }

    /// Redacts bytes (invalid UTF-8 is replaced first, as shown text would be).
    pub fn apply_bytes<'t>(&self, bytes: &'t [u8]) -> Cow<'t, [u8]> {
        if self.rules.is_empty() {
            return Cow::Borrowed(bytes);
        }
        match self.apply_cow(&String::from_utf8_lossy(bytes)) {
            Cow::Borrowed(s) if s.len() == bytes.len() && s.as_bytes() == bytes => {
                Cow::Borrowed(bytes)
            }
            other => Cow::Owned(other.into_owned().into_bytes()),
        }
    }
}

/// A hex digit matched in either case.
fn hex_digit(n: u8) -> String {
    let c = char::from_digit(u32::from(n), 16).unwrap_or('0');
    if c.is_ascii_digit() {
        c.to_string()
    } else {
        format!("[{}{}]", c, c.to_ascii_uppercase())
    }
}

fn hex_byte(b: u8) -> String {
    format!("{}{}", hex_digit(b >> 4), hex_digit(b & 15))
}

/// One pattern matching `value` with each character in any of its spellings.
fn spellings(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        out.push_str("(?:");
        out.push_str(&char_spellings(c).join("|"));
        out.push(')');
    }
    out
}

/// Excerpts end in this mark when they cut a text short.
pub const CUT: char = '…';

/// Cut marks looked at per text (excerpts are few per message).
const MAX_CUTS: usize = 64;

/// Longest start of a secret (in characters) looked for before a [`CUT`] mark: excerpts are
/// shorter than this.
const MAX_CUT_PREFIX: usize = 128;

/// The starts of `value` (two characters or more, up to [`MAX_CUT_PREFIX`]) as they would show
/// right before a [`CUT`] mark: raw, JSON-escaped and `{:?}`-escaped; longest first.
fn cut_prefixes(value: &str) -> Vec<String> {
    let chars: Vec<char> = value.chars().take(MAX_CUT_PREFIX).collect();
    let mut out = Vec::new();
    for k in (2..=chars.len()).rev() {
        let p: String = chars[..k].iter().collect();
        let debug = format!("{p:?}");
        out.push(debug[1..debug.len() - 1].to_string());
        if let Ok(json) = serde_json::to_string(&p) {
            out.push(json[1..json.len() - 1].to_string());
        }
        out.push(p);
    }
    out.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    out.dedup();
    out
}

/// The ways one character can appear: as is, percent-encoded (any case; `+` for a space),
/// JSON-escaped (behind one or more backslashes: JSON escaped again stays caught), as a
/// `\uXXXX` or `\u{..}` escape, as its UTF-8 bytes read as Latin-1, or as an HTML character
/// reference.
fn char_spellings(c: char) -> Vec<String> {
    let mut buf = [0u8; 4];
    let raw = c.encode_utf8(&mut buf);
    let mut alts = vec![regex::escape(raw)];
    alts.push(raw.bytes().map(|b| format!("%{}", hex_byte(b))).collect());
    // Letters and digits are never escaped by JSON or HTML encoders, only (rarely) by
    // percent-encoders: two spellings keep the pattern of a typical token small.
    if c.is_ascii_alphanumeric() {
        return alts;
    }
    // One or more backslashes: `\"`, and `\\\"` when the JSON was itself put in a JSON string.
    let esc = r"\\+";
    match c {
        ' ' => alts.push(r"\+".into()),
        '"' => alts.push(format!("{esc}\"")),
        '\\' => alts.push(esc.into()),
        '/' => alts.push(format!("{esc}/")),
        '\n' => alts.push(format!("{esc}n")),
        '\r' => alts.push(format!("{esc}r")),
        '\t' => alts.push(format!("{esc}t")),
        '\u{8}' => alts.push(format!("{esc}b")),
        '\u{c}' => alts.push(format!("{esc}f")),
        _ => {}
    }
    let mut units = [0u16; 2];
    alts.push(
        c.encode_utf16(&mut units)
            .iter()
            .map(|u| {
                let [hi, lo] = u.to_be_bytes();
                format!("{esc}u{}{}", hex_byte(hi), hex_byte(lo))
            })
            .collect(),
    );
    // Mojibake: a peer that reads UTF-8 as Latin-1 echoes each byte as a character (and may
    // JSON-escape those).
    if !c.is_ascii() {
        alts.push(
            raw.bytes()
                .map(|b| {
                    let latin1 = char::from(b).to_string();
                    format!("(?:{}|{esc}u00{})", regex::escape(&latin1), hex_byte(b))
                })
                .collect(),
        );
    }
    // Rust's `{:?}` writes unprintable characters as `\u{..}`.
    let code = format!("{:x}", u32::from(c));
    alts.push(format!(
        "{esc}u\\{{0*{}\\}}",
        code.bytes()
            .map(|b| hex_digit((b as char).to_digit(16).unwrap_or(0) as u8))
            .collect::<String>()
    ));
    let named = match c {
        '"' => Some("quot"),
        '&' => Some("amp"),
        '<' => Some("lt"),
        '>' => Some("gt"),
        '\'' => Some("apos"),
        _ => None,
    };
    if let Some(n) = named {
        alts.push(format!("&{n};"));
    }
    if c.is_ascii_punctuation() || c == ' ' {
        let n = u32::from(c);
        alts.push(format!("&#0*{n};"));
        alts.push(format!("&#[xX]0*{};", hex_byte(n as u8)));
    }
    alts
}

/// The usual whole encodings of a long value: raw, JSON-escaped, percent-encoded (`%20` and `+`
/// styles, upper and lower hex).
fn whole_encodings(value: &str) -> Vec<String> {
    let mut out = vec![value.to_string()];
    if let Ok(json) = serde_json::to_string(value) {
        out.push(json[1..json.len() - 1].to_string());
    }
    let form: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
    let strict = percent_strict(value);
    out.push(form.clone());
    out.push(lower_hex(&form));
    out.push(strict.clone());
    out.push(lower_hex(&strict));
    out.sort();
    out.dedup();
    out
}

/// `s` with every byte but RFC 3986's unreserved ones (`A-Z a-z 0-9 - . _ ~`) as `%XX`.
pub fn percent_strict(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent escapes in lower-case hex.
fn lower_hex(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3).unwrap_or(&rest[i..]);
        out.push_str(&esc.to_ascii_lowercase());
        rest = &rest[i + esc.len()..];
    }
    out.push_str(rest);
    out
}

/// The base64 characters that depend on `value` alone, at each of the three alignments it can
/// have inside a longer encoded text (`user:secret` puts it at any), standard and URL-safe.
fn base64_cores(value: &str) -> Vec<String> {
    let bytes = value.as_bytes();
    // The whole encoding, padded and not, whatever its length.
    let mut out = Vec::new();
    for alphabet in [&BASE64, &BASE64URL] {
        let enc = alphabet.encode(bytes);
        out.push(enc.trim_end_matches('=').to_string());
        out.push(enc);
    }
    for k in 0..3usize {
        let mut data = vec![0u8; k];
        data.extend_from_slice(bytes);
        // Characters before `start` mix in the k bytes before the value; from `end` on they
        // mix in what follows it (or padding).
        let start = (k * 8).div_ceil(6);
        let end = data.len() * 8 / 6;
        if end <= start || end - start < MIN_BASE64_CORE {
            continue;
        }
        for alphabet in [&BASE64, &BASE64URL] {
            let enc = alphabet.encode(&data);
            if let Some(core) = enc.get(start..end) {
                out.push(core.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "c4n\"ar\\y #&x=1 +/é≠😀";

    fn json_escaped(s: &str) -> String {
        let j = serde_json::to_string(s).unwrap();
        j[1..j.len() - 1].to_string()
    }

    fn ascii_json(s: &str) -> String {
        // The `ensure_ascii` style of Python's json.dumps: non-ASCII as \uXXXX (surrogates).
        let mut out = String::new();
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if c.is_ascii() => out.push(c),
                c => {
                    let mut u = [0u16; 2];
                    for unit in c.encode_utf16(&mut u) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
            }
        }
        out
    }

    fn every_encoding(s: &str) -> Vec<(&'static str, String)> {
        let form: String = url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
        vec![
            ("raw", s.to_string()),
            ("json", json_escaped(s)),
            ("json ascii", ascii_json(s)),
            ("json slash", json_escaped(s).replace('/', "\\/")),
            ("json twice", json_escaped(&json_escaped(s))),
            ("form", form.clone()),
            ("form lower", lower_hex(&form)),
            ("percent", percent_strict(s)),
            ("percent lower", lower_hex(&percent_strict(s))),
            ("base64", BASE64.encode(s.as_bytes())),
            ("base64url", BASE64URL.encode(s.as_bytes())),
            ("basic auth", BASE64.encode(format!("user:{s}").as_bytes())),
            ("basic auth k=1", BASE64.encode(format!("u:{s}").as_bytes())),
            (
                "basic auth k=2",
                BASE64.encode(format!("us:{s}").as_bytes()),
            ),
        ]
    }

    #[test]
    fn every_encoding_of_a_secret_is_redacted_in_context() {
        let r = Redactor::new([CANARY]);
        for (name, enc) in every_encoding(CANARY) {
            let text = format!("before {enc} after");
            let out = r.apply(&text);
            assert!(out.contains(MARK), "{name}: {out}");
            assert!(
                out.starts_with("before ") && out.ends_with(" after"),
                "{name}: {out}"
            );
            for (other, e) in every_encoding(CANARY) {
                // The base64 forms keep up to 2 boundary characters; no full encoding remains.
                assert!(!out.contains(&e), "{name}: {other} form remains in {out}");
            }
        }
    }

    #[test]
    fn html_references_and_mixed_spellings_are_caught() {
        let r = Redactor::new(["a\"b&c<d'e"]);
        let out = r.apply("x a&quot;b&amp;c&lt;d&#39;e y a%22b&#x26;c\\u003cd'e z");
        assert_eq!(out, "x <redacted> y <redacted> z");
        // UTF-8 read as Latin-1 by the peer, raw or JSON-escaped.
        let r = Redactor::new(["ab\"c/é"]);
        assert_eq!(
            r.apply("[ab\"c/Ã©] [ab\\\"c\\/\\u00c3\\u00a9]"),
            "[<redacted>] [<redacted>]"
        );
        let r = Redactor::new(["s\u{7f}cr\u{200b}t"]);
        assert_eq!(
            r.apply(&format!("[{:?}]", "s\u{7f}cr\u{200b}t")),
            "[\"<redacted>\"]"
        );
    }

    #[test]
    fn a_secret_cut_by_an_excerpt_is_redacted_up_to_the_cut() {
        let r = Redactor::new(["s3cr\"et-value"]);
        assert_eq!(r.apply("got \"abc s3cr\\\"e…"), "got \"abc <redacted>…");
        assert_eq!(r.apply("got s3…"), "got <redacted>…");
        // One character is not enough to say it is the secret; text without the mark stays.
        assert_eq!(r.apply("got s…"), "got s…");
        assert_eq!(r.apply("got s3cr\"e"), "got s3cr\"e");
    }

    #[test]
    fn short_values_are_ignored_and_longest_wins() {
        // Found by a_planted_secret_never_survives: a 4-byte secret's base64 is caught whole.
        let r = Redactor::new(["a+<%"]);
        assert_eq!(r.apply("x YSs8JQ== YSs8JQ y"), "x <redacted> <redacted> y");
        let r = Redactor::new(["abc", "token-1234", "token-1234-long"]);
        assert_eq!(
            r.apply("abc token-1234-long token-1234"),
            "abc <redacted> <redacted>"
        );
        assert!(Redactor::new(["abc"]).is_empty());
    }

    #[test]
    fn long_values_are_caught_in_whole_encodings() {
        let long: String = "s e\"c/r&t#".repeat(MAX_PATTERN_CHARS / 5);
        let r = Redactor::new([long.as_str()]);
        for (name, enc) in every_encoding(&long) {
            if matches!(name, "json ascii" | "json slash" | "json twice") {
                continue; // mixed spellings are matched for values up to MAX_PATTERN_CHARS
            }
            let out = r.apply(&format!("[{enc}]"));
            assert!(!out.contains(&enc), "{name}: not redacted");
        }
    }

    #[test]
    fn bytes_with_invalid_utf8_are_redacted_and_untouched_bytes_borrowed() {
        let r = Redactor::new(["s3cr3t-token"]);
        let out = r.apply_bytes(b"\xff s3cr3t-token \xfe");
        assert_eq!(&*out, "\u{fffd} <redacted> \u{fffd}".as_bytes());
        assert!(matches!(r.apply_bytes(b"nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn percent_strict_keeps_unreserved_only() {
        assert_eq!(percent_strict("a b/#&=+~é"), "a%20b%2F%23%26%3D%2B~%C3%A9");
        assert_eq!(lower_hex("a%2Fb%C3%A9"), "a%2fb%c3%a9");
    }

    proptest::proptest! {
        // Each case compiles one redactor (tens of ms in a debug build): a few hundred cases.
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 200, ..Default::default() })]

        /// A secret drawn from the characters that change between encodings, planted in any
        /// encoding between arbitrary text, never survives redaction in any encoding.
        #[test]
        fn a_planted_secret_never_survives(
            // From 5 bytes on, base64 inside a longer encoding (`user:secret`) is caught too.
            secret in "[a-zA-Z0-9\"\\\\#&= +/%<'é☃😀-]{5,24}",
            before in "[ -~]{0,20}",
            after in "[ -~]{0,20}",
        ) {
            let r = Redactor::new([secret.as_str()]);
            for (name, enc) in every_encoding(&secret) {
                let out = r.apply(&format!("{before}{enc}{after}"));
                for (other, e) in every_encoding(&secret) {
                    proptest::prop_assert!(
                        !out.contains(&e) || before.contains(&e) || after.contains(&e),
                        "{} planted, {} remains: {:?}", name, other, out
                    );
                }
            }
        }
    }
}
