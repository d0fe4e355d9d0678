//! The validated definition of one `dns` check: what to ask, whom, and what the reply must be.
//!
//! Built by the configuration's validation (or directly by tests); the probe only executes it.

use std::fmt;
use std::net::SocketAddr;

use hickory_net::proto::rr::{Name, RecordType as WireType};
use regex::Regex;

/// At most this many answers are kept (and matched) per reply; the rest are counted only.
pub const MAX_ANSWERS_KEPT: usize = 100;
/// Each kept answer's text is cut to this many bytes (at a character boundary) before matching.
pub const MAX_ANSWER_BYTES: usize = 512;

/// The record types a `dns` check asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordType {
    A,
    Aaaa,
    Cname,
    Mx,
    Txt,
    Ns,
    Soa,
}

impl RecordType {
    /// Every supported type, in the order the documentation lists them.
    pub const ALL: [RecordType; 7] = [
        RecordType::A,
        RecordType::Aaaa,
        RecordType::Cname,
        RecordType::Mx,
        RecordType::Txt,
        RecordType::Ns,
        RecordType::Soa,
    ];

    /// The type's mnemonic as written in zone files and the configuration (`AAAA`).
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
            RecordType::Cname => "CNAME",
            RecordType::Mx => "MX",
            RecordType::Txt => "TXT",
            RecordType::Ns => "NS",
            RecordType::Soa => "SOA",
        }
    }

    /// Parses a mnemonic, spelled as [`RecordType::as_str`] spells it (the schema's enum).
    pub fn parse(s: &str) -> Option<RecordType> {
        RecordType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    pub(crate) fn wire(self) -> WireType {
        match self {
            RecordType::A => WireType::A,
            RecordType::Aaaa => WireType::AAAA,
            RecordType::Cname => WireType::CNAME,
            RecordType::Mx => WireType::MX,
            RecordType::Txt => WireType::TXT,
            RecordType::Ns => WireType::NS,
            RecordType::Soa => WireType::SOA,
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A DNS response code (RFC 1035 and the IANA registry), named by its mnemonic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rcode(pub u16);

/// Mnemonics of the response codes a check may expect (IANA "DNS RCODEs"); any other code is
/// shown as `RCODE<n>`.
const RCODE_NAMES: [(u16, &str); 11] = [
    (0, "NOERROR"),
    (1, "FORMERR"),
    (2, "SERVFAIL"),
    (3, "NXDOMAIN"),
    (4, "NOTIMP"),
    (5, "REFUSED"),
    (6, "YXDOMAIN"),
    (7, "YXRRSET"),
    (8, "NXRRSET"),
    (9, "NOTAUTH"),
    (10, "NOTZONE"),
];

impl Rcode {
    pub const NOERROR: Rcode = Rcode(0);
    pub const SERVFAIL: Rcode = Rcode(2);
    pub const NXDOMAIN: Rcode = Rcode(3);
    pub const REFUSED: Rcode = Rcode(5);

    /// Every mnemonic [`Rcode::parse`] accepts, for error messages and the schema.
    pub fn names() -> impl Iterator<Item = &'static str> {
        RCODE_NAMES.iter().map(|(_, n)| *n)
    }

    /// Parses a mnemonic, in capitals as the IANA registry writes it (the schema's enum).
    pub fn parse(s: &str) -> Option<Rcode> {
        RCODE_NAMES
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(c, _)| Rcode(*c))
    }
}

impl fmt::Display for Rcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match RCODE_NAMES.iter().find(|(c, _)| *c == self.0) {
            Some((_, name)) => f.write_str(name),
            None => write!(f, "RCODE{}", self.0),
        }
    }
}

/// Which server the query goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    /// The first `nameserver` of `/etc/resolv.conf`, read at every run (port 53; `127.0.0.1:53`
    /// when the file names none, as the C library does).
    System,
    /// This server.
    Server(SocketAddr),
}

/// How the query travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    #[default]
    Udp,
    Tcp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// How one answer is compared with the text of an answer.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// The whole answer text equals this.
    Exact(String),
    /// The answer text contains this.
    Contains(String),
    /// The regex matches somewhere in the answer text (anchor it with `^...$` for a whole match).
    Regex(Regex),
}

impl Matcher {
    /// Whether `answer` matches.
    pub fn matches(&self, answer: &str) -> bool {
        match self {
            Matcher::Exact(want) => answer == want,
            Matcher::Contains(part) => answer.contains(part.as_str()),
            Matcher::Regex(re) => re.is_match(answer),
        }
    }

    fn describe(&self) -> String {
        match self {
            Matcher::Exact(want) => format!("equals {want:?}"),
            Matcher::Contains(part) => format!("contains {part:?}"),
            Matcher::Regex(re) => format!("matches /{}/", re.as_str()),
        }
    }
}

/// How many of the answers one [`AnswerCheck`] must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quantifier {
    /// At least one answer matches (the default).
    #[default]
    Any,
    /// There is at least one answer, and every answer matches.
    All,
    /// No answer matches (an empty answer section passes).
    None,
}

impl Quantifier {
    pub fn as_str(self) -> &'static str {
        match self {
            Quantifier::Any => "any",
            Quantifier::All => "all",
            Quantifier::None => "none",
        }
    }

    /// Parses `any`, `all` or `none`.
    pub fn parse(s: &str) -> Option<Quantifier> {
        [Quantifier::Any, Quantifier::All, Quantifier::None]
            .into_iter()
            .find(|q| q.as_str() == s)
    }
}

/// One expectation on the answers: a matcher and how many answers it must hold for.
#[derive(Debug, Clone)]
pub struct AnswerCheck {
    pub matcher: Matcher,
    pub quantifier: Quantifier,
}

impl AnswerCheck {
    /// Whether the expectation holds for these answers.
    pub fn holds(&self, answers: &[String]) -> bool {
        let mut hits = answers.iter().filter(|a| self.matcher.matches(a));
        match self.quantifier {
            Quantifier::Any => hits.next().is_some(),
            Quantifier::All => !answers.is_empty() && hits.count() == answers.len(),
            Quantifier::None => hits.next().is_none(),
        }
    }

    /// `any answer equals "192.0.2.1"`: what the trace shows for this assertion.
    pub fn describe(&self) -> String {
        let who = match self.quantifier {
            Quantifier::Any => "some answer",
            Quantifier::All => "every answer",
            Quantifier::None => "no answer",
        };
        format!("{who} {}", self.matcher.describe())
    }
}

/// What the reply must be for the check to pass.
#[derive(Debug, Clone)]
pub struct DnsExpect {
    /// The response code (default `NOERROR`).
    pub rcode: Rcode,
    /// Expectations on the answers' text, each checked on its own (all must hold).
    pub answers: Vec<AnswerCheck>,
    /// The AA flag must be set (`true`) or clear (`false`); not checked when `None`.
    pub authoritative: Option<bool>,
    /// At least this many answers of the asked type.
    pub min_answers: Option<usize>,
    /// At most this many answers of the asked type.
    pub max_answers: Option<usize>,
}

impl Default for DnsExpect {
    fn default() -> Self {
        DnsExpect {
            rcode: Rcode::NOERROR,
            answers: Vec::new(),
            authoritative: None,
            min_answers: None,
            max_answers: None,
        }
    }
}

/// Configuration of one `dns` check.
#[derive(Debug, Clone)]
pub struct DnsSpec {
    /// The name asked for (made fully qualified: no search domains apply).
    pub name: Name,
    /// The record type asked for.
    pub record_type: RecordType,
    /// Which server answers.
    pub resolver: Resolver,
    /// UDP (default) or TCP.
    pub transport: Transport,
    /// The RD flag of the query (default true); false asks an authoritative server for its own
    /// data only.
    pub recursion_desired: bool,
    /// What the reply must be.
    pub expect: DnsExpect,
}

impl DnsSpec {
    /// A spec asking `server` for `record_type` records of `name` over UDP, expecting `NOERROR`
    /// and nothing else. Errors when `name` is not a valid domain name.
    pub fn new(name: &str, record_type: RecordType, resolver: Resolver) -> Result<Self, String> {
        Ok(DnsSpec {
            name: parse_name(name)?,
            record_type,
            resolver,
            transport: Transport::Udp,
            recursion_desired: true,
            expect: DnsExpect::default(),
        })
    }
}

/// Parses a domain name (internationalized names are converted to their ASCII form) and makes it
/// fully qualified. The message says what is wrong, without the name.
pub fn parse_name(name: &str) -> Result<Name, String> {
    if name.is_empty() {
        return Err("empty name".to_string());
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a name cannot hold spaces or control characters".to_string());
    }
    // Zone-file escapes (`\.` a dot inside a label, `\065`) would make a label's dots differ
    // from the name's: a name that reads back as another one. No monitored name needs them.
    if name.contains('\\') {
        return Err("a name cannot hold a backslash (zone-file escapes are not supported)".to_string());
    }
    let labels = name.strip_suffix('.').unwrap_or(name);
    if name != "." && labels.split('.').any(str::is_empty) {
        return Err("empty label (a leading dot, or two dots in a row)".to_string());
    }
    let mut parsed = Name::from_utf8(name).map_err(|e| {
        let e = e.to_string();
        let e = e.strip_prefix("decoding error: ").unwrap_or(&e).trim();
        let e = e.trim_end_matches(':');
        format!("{e} (a label holds at most 63 bytes, a name at most 255)")
    })?;
    parsed.set_fqdn(true);
    Ok(parsed)
}

/// The first `nameserver` of a resolv.conf text, on port 53: what `resolver: system` asks.
/// Lines that do not parse (an IPv6 address with a `%zone`, garbage) are skipped.
pub fn system_nameserver(resolv_conf: &str) -> Option<SocketAddr> {
    resolv_conf.lines().find_map(|line| {
        let line = line.trim_start();
        let rest = line.strip_prefix("nameserver")?;
        if !rest.starts_with([' ', '\t']) {
            return None;
        }
        let ip: std::net::IpAddr = rest.split_whitespace().next()?.parse().ok()?;
        Some(SocketAddr::new(ip, 53))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn check(matcher: Matcher, quantifier: Quantifier) -> AnswerCheck {
        AnswerCheck {
            matcher,
            quantifier,
        }
    }

    #[test]
    fn quantifiers() {
        let two = answers(&["192.0.2.1", "192.0.2.2"]);
        let none: Vec<String> = Vec::new();
        let exact = |q| check(Matcher::Exact("192.0.2.1".into()), q);
        assert!(exact(Quantifier::Any).holds(&two));
        assert!(!exact(Quantifier::All).holds(&two));
        assert!(!exact(Quantifier::None).holds(&two));
        assert!(!exact(Quantifier::Any).holds(&none));
        assert!(!exact(Quantifier::All).holds(&none), "all of nothing fails");
        assert!(exact(Quantifier::None).holds(&none));

        let prefix = check(
            Matcher::Regex(Regex::new(r"^192\.0\.2\.").unwrap()),
            Quantifier::All,
        );
        assert!(prefix.holds(&two));
        let contains = check(Matcher::Contains("0.2.3".into()), Quantifier::None);
        assert!(contains.holds(&two));
        assert_eq!(
            contains.describe(),
            "no answer contains \"0.2.3\"",
            "the trace names the quantifier and the matcher"
        );
    }

    #[test]
    fn rcodes_by_name() {
        assert_eq!(Rcode::parse("NXDOMAIN"), Some(Rcode::NXDOMAIN));
        assert_eq!(
            Rcode::parse("nxdomain"),
            None,
            "spelled as the schema's enum"
        );
        assert_eq!(Rcode::parse("NOERROR"), Some(Rcode::NOERROR));
        assert_eq!(Rcode::parse("BOGUS"), None);
        assert_eq!(Rcode(2).to_string(), "SERVFAIL");
        assert_eq!(Rcode(23).to_string(), "RCODE23");
    }

    #[test]
    fn record_types_by_name() {
        for t in RecordType::ALL {
            assert_eq!(RecordType::parse(t.as_str()), Some(t));
        }
        assert_eq!(
            RecordType::parse("aaaa"),
            None,
            "spelled as the schema's enum"
        );
        assert_eq!(RecordType::parse("PTR"), None);
    }

    #[test]
    fn names() {
        let n = parse_name("www.example.test").unwrap();
        assert!(n.is_fqdn());
        assert_eq!(n.to_string(), "www.example.test.");
        assert_eq!(
            parse_name("bücher.example").unwrap().to_ascii(),
            "xn--bcher-kva.example."
        );
        for bad in [
            "",
            "a b.test",
            "a..b",
            ".a",
            "..",
            &"x".repeat(64),
            "tab\t.test",
        ] {
            assert!(parse_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_name("www..example.com").unwrap_err(),
            "empty label (a leading dot, or two dots in a row)"
        );
        assert_eq!(
            parse_name(&"x".repeat(64)).unwrap_err(),
            "label bytes exceed 63: 64 (a label holds at most 63 bytes, a name at most 255)"
        );
        assert!(
            parse_name("example.com.").is_ok(),
            "a trailing dot is the root"
        );
        assert!(parse_name(".").is_ok(), "the root itself");
        // Found by the property below: an escaped dot read back as two labels.
        assert_eq!(
            parse_name("\\.").unwrap_err(),
            "a name cannot hold a backslash (zone-file escapes are not supported)"
        );
        let long = vec!["abcdefghi"; 30].join(".");
        assert!(parse_name(&long).is_err(), "over 255 bytes");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 1000, ..Default::default() })]

        /// Any text: an error or a fully qualified name that reads back as itself.
        #[test]
        fn any_name_text_parses_or_says_why(text in "[a-zA-Z0-9.\\-_ \\\\é\\x00]{0,300}|\\PC{0,80}") {
            match parse_name(&text) {
                Err(why) => proptest::prop_assert!(!why.is_empty()),
                Ok(name) => {
                    proptest::prop_assert!(name.is_fqdn());
                    let again = parse_name(&name.to_ascii()).unwrap();
                    proptest::prop_assert_eq!(again, name);
                }
            }
        }

        /// Any resolv.conf text: the first parsable nameserver line, or none; never a panic.
        #[test]
        fn any_resolv_conf_gives_port_53_or_nothing(text in "\\PC{0,200}(\nnameserver [0-9a-f:.%]{0,20})?") {
            if let Some(addr) = system_nameserver(&text) {
                proptest::prop_assert_eq!(addr.port(), 53);
            }
        }
    }

    #[test]
    fn resolv_conf() {
        let text = "# comment\nsearch example.test\nnameserver fe80::1%eth0\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n";
        assert_eq!(
            system_nameserver(text),
            Some("10.0.0.2:53".parse().unwrap())
        );
        assert_eq!(
            system_nameserver("nameserver ::1\n"),
            Some("[::1]:53".parse().unwrap())
        );
        assert_eq!(system_nameserver("nameservers 10.0.0.1\n"), None);
        assert_eq!(system_nameserver(""), None);
    }
}
