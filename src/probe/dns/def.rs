//! The `dns` kind's definition: the `dns:` keys, their schema, their validation into a
//! [`DnsSpec`], the kind's alert variables, and its registration as a [`Kind`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use schemars::{JsonSchema, Schema};
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::probe::{DnsProbe, DnsReport};
use super::spec::{
    parse_name, AnswerCheck, DnsExpect, DnsSpec, Matcher, Quantifier, Rcode, RecordType, Resolver,
    Transport, MAX_ANSWER_BYTES,
};
use crate::config::ctx::Ctx;
use crate::config::expr::{Type, Value};
use crate::config::model::Capped;
use crate::config::schema::{self, add_rules, exactly_one, Count, Flag, Text};
use crate::probe::kind::{BuildEnv, Kind, KindCx, Read, Var};
use crate::probe::Probe;

/// At most this many entries under `expect.answers`.
pub const MAX_ANSWER_CHECKS: usize = 32;
/// `min_answers` and `max_answers` are at most this (a DNS message cannot hold more records).
pub const MAX_ANSWER_COUNT: u32 = 65_535;

/// The `dns` kind.
pub struct Dns;

impl Kind for Dns {
    const KEY: &'static str = "dns";
    const ABOUT: &'static str =
        "One DNS query (A, AAAA, CNAME, MX, TXT, NS, SOA) to a chosen server or the system's, judged on its rcode, flags and answers.";
    const VARS: &'static [Var] = &[
        Var {
            name: "rcode",
            ty: Type::String,
            read: Read::With(|r, _, _| {
                let rcode = r.detail::<DnsReport>()?.rcode?;
                Some(Value::String(rcode.to_string()))
            }),
            about: "the reply's response code (`NOERROR`, `NXDOMAIN`, `SERVFAIL`, `REFUSED`, ...; unknown when no reply came)",
        },
        Var::observed(
            "answers",
            Type::Number,
            "how many answers of the asked type the reply held (unknown when no reply came)",
        ),
    ];
    type Def = DnsDef;
    type Spec = DnsSpec;

    fn validate(cx: &mut KindCx<'_, '_>, def: &DnsDef) -> Option<DnsSpec> {
        dns(cx.ctx, def, &cx.key)
    }

    fn step_names(_spec: &DnsSpec) -> Vec<String> {
        vec!["query".into()]
    }

    fn build(_name: &str, spec: &Arc<DnsSpec>, _env: &BuildEnv) -> Result<Arc<dyn Probe>, String> {
        Ok(Arc::new(DnsProbe::new(DnsSpec::clone(spec))))
    }
}

/// The `dns:` kind: one query, and what its reply must be.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DnsDef {
    /// The name to look up (fully qualified: no search domains apply; internationalized
    /// names are sent in their ASCII form).
    #[schemars(with = "Text", extend("minLength" = 1))]
    pub name: Spanned<String>,
    /// The record type asked for (default A).
    #[serde(rename = "type")]
    #[schemars(with = "Option<DnsRecordType>")]
    pub record_type: Option<Spanned<String>>,
    /// The server to ask: `ip:port`, `[ipv6]:port`, or an address alone (port 53). Omitted:
    /// the first `nameserver` of /etc/resolv.conf, read at every run.
    #[schemars(with = "Option<String>", extend("pattern" = SERVER, "patternErrorMessage" = "an IP address, optionally with :port (a server's address, not its name)"))]
    pub server: Option<Spanned<String>>,
    /// How the query travels (default udp). The query is sent once, never retried.
    #[schemars(with = "Option<DnsTransport>")]
    pub transport: Option<Spanned<String>>,
    /// The RD flag of the query (default true); false asks a server for its own data only.
    #[schemars(with = "Option<Flag>")]
    pub recursion: Option<bool>,
    /// What the reply must be (default: rcode NOERROR, nothing else).
    pub expect: Option<DnsExpectDef>,
}

/// `dns.expect`: every expectation set must hold.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DnsExpectDef {
    /// The response code (default NOERROR); a mismatch fails with reason `dns`.
    #[schemars(with = "Option<DnsRcode>")]
    pub rcode: Option<Spanned<String>>,
    /// The AA flag must be set (true) or clear (false).
    #[schemars(with = "Option<Flag>")]
    pub authoritative: Option<bool>,
    /// At least this many answers of the asked type.
    #[schemars(with = "Option<Count>", extend("maximum" = MAX_ANSWER_COUNT))]
    pub min_answers: Option<Spanned<u32>>,
    /// At most this many answers of the asked type.
    #[schemars(with = "Option<Count>", extend("maximum" = MAX_ANSWER_COUNT))]
    pub max_answers: Option<Spanned<u32>>,
    /// Expectations on the answers' text (at most 32), each on its own.
    #[schemars(with = "Option<Vec<AnswerDef>>", extend("maxItems" = MAX_ANSWER_CHECKS))]
    pub answers: Option<Spanned<Capped<Spanned<AnswerDef>, MAX_ANSWER_CHECKS>>>,
}

/// One expectation on the answers: one of `exact`, `regex`, `contains`, and `match`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = answer_rules)]
pub struct AnswerDef {
    /// The answer's whole text equals this (`192.0.2.1`, `10 mail.example.com.`).
    #[schemars(with = "Option<Text>", extend("maxLength" = MAX_ANSWER_BYTES))]
    pub exact: Option<Spanned<String>>,
    /// A regex that matches somewhere in the answer's text (anchor it with ^...$).
    #[schemars(with = "Option<Text>")]
    pub regex: Option<Spanned<String>>,
    /// The answer's text contains this.
    #[schemars(with = "Option<Text>", extend("minLength" = 1, "maxLength" = MAX_ANSWER_BYTES))]
    pub contains: Option<Spanned<String>>,
    /// any (default): some answer matches; all: there are answers and every one matches;
    /// none: no answer matches.
    #[schemars(with = "Option<DnsMatch>")]
    pub r#match: Option<Spanned<String>>,
}

const ONE_MATCHER: &str = "an answer expectation has one of exact, regex or contains";

fn answer_rules(schema: &mut Schema) {
    add_rules(
        schema,
        [exactly_one(&["exact", "regex", "contains"], ONE_MATCHER)],
    );
}

schema::one_of_strings!(
    /// `dns.type`.
    DnsRecordType,
    RecordType::ALL.map(RecordType::as_str)
);
schema::one_of_strings!(
    /// `dns.transport`.
    DnsTransport,
    ["udp", "tcp"]
);
schema::one_of_strings!(
    /// `dns.expect.rcode`.
    DnsRcode,
    Rcode::names().collect::<Vec<_>>()
);
schema::one_of_strings!(
    /// `dns.expect.answers[].match`.
    DnsMatch,
    ["any", "all", "none"]
);

/// `dns.server`: an IP address, with a port or without (the port's range and the address's
/// digits are validation's).
const SERVER: &str = r"^(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?::[0-9]+)?|\[[0-9A-Fa-f:.]+\](?::[0-9]+)?|[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*)$";

/// Parses `dns.server`: `ip:port`, `[v6]:port`, or an address alone (port 53).
pub fn parse_server(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let addr = match s.parse::<SocketAddr>() {
        Ok(addr) => addr,
        Err(_) => match s.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, 53),
            Err(_) => {
                return Err(format!(
                    "invalid server {s:?}: want an IP address, optionally with :port (a server's address, not its name)"
                ))
            }
        },
    };
    if addr.port() == 0 {
        return Err(format!("invalid server {s:?}: port 0"));
    }
    Ok(addr)
}

fn dns(ctx: &mut Ctx, d: &DnsDef, key: &str) -> Option<DnsSpec> {
    let n_before = ctx.errors.len();
    let name = match parse_name(&d.name.value) {
        Ok(name) => Some(name),
        Err(why) => {
            ctx.err(
                &d.name.referenced,
                format!("{key}.name"),
                format!("invalid name {:?}: {why}", d.name.value),
            );
            None
        }
    };
    let record_type = match &d.record_type {
        None => Some(RecordType::A),
        Some(t) => one_of_values(
            ctx,
            t,
            &format!("{key}.type"),
            "record type",
            RecordType::parse,
            &RecordType::ALL.map(RecordType::as_str),
        ),
    };
    let resolver = match &d.server {
        None => Resolver::System,
        Some(s) => match parse_server(&s.value) {
            Ok(addr) => Resolver::Server(addr),
            Err(e) => {
                ctx.err(&s.referenced, format!("{key}.server"), e);
                Resolver::System
            }
        },
    };
    let transport = match &d.transport {
        None => Some(Transport::Udp),
        Some(t) => one_of_values(
            ctx,
            t,
            &format!("{key}.transport"),
            "transport",
            |s| match s {
                "udp" => Some(Transport::Udp),
                "tcp" => Some(Transport::Tcp),
                _ => None,
            },
            &["udp", "tcp"],
        ),
    };
    let expect = match &d.expect {
        None => DnsExpect::default(),
        Some(e) => expect(ctx, e, &format!("{key}.expect")),
    };
    if ctx.errors.len() > n_before {
        return None;
    }
    Some(DnsSpec {
        name: name?,
        record_type: record_type?,
        resolver,
        transport: transport?,
        recursion_desired: d.recursion.unwrap_or(true),
        expect,
    })
}

/// A key whose value is one of a fixed set of words, spelled exactly.
fn one_of_values<T>(
    ctx: &mut Ctx,
    s: &Spanned<String>,
    key: &str,
    what: &str,
    parse: impl Fn(&str) -> Option<T>,
    known: &[&str],
) -> Option<T> {
    let parsed = parse(&s.value);
    if parsed.is_none() {
        ctx.err(
            &s.referenced,
            key,
            format!("unknown {what} {:?} (one of {})", s.value, known.join(", ")),
        );
    }
    parsed
}

fn expect(ctx: &mut Ctx, e: &DnsExpectDef, key: &str) -> DnsExpect {
    let rcode = match &e.rcode {
        None => Some(Rcode::NOERROR),
        Some(r) => one_of_values(
            ctx,
            r,
            &format!("{key}.rcode"),
            "rcode",
            Rcode::parse,
            &Rcode::names().collect::<Vec<_>>(),
        ),
    };
    let min_ok = ctx.int_in(
        e.min_answers.as_ref(),
        &format!("{key}.min_answers"),
        0,
        MAX_ANSWER_COUNT,
    );
    let max_ok = ctx.int_in(
        e.max_answers.as_ref(),
        &format!("{key}.max_answers"),
        0,
        MAX_ANSWER_COUNT,
    );
    if let (Some(min), Some(max), true, true) = (&e.min_answers, &e.max_answers, min_ok, max_ok) {
        if min.value > max.value {
            ctx.err(
                &max.referenced,
                format!("{key}.max_answers"),
                format!(
                    "max_answers {} is less than min_answers {}",
                    max.value, min.value
                ),
            );
        }
    }
    let mut answers = Vec::new();
    if let Some(list) = &e.answers {
        for (i, a) in list.value.iter().enumerate() {
            if let Some(check) =
                answer(ctx, &a.value, &a.referenced, &format!("{key}.answers[{i}]"))
            {
                answers.push(check);
            }
        }
    }
    DnsExpect {
        rcode: rcode.unwrap_or(Rcode::NOERROR),
        answers,
        authoritative: e.authoritative,
        min_answers: e.min_answers.as_ref().map(|n| n.value as usize),
        max_answers: e.max_answers.as_ref().map(|n| n.value as usize),
    }
}

fn answer(ctx: &mut Ctx, a: &AnswerDef, at: &Location, key: &str) -> Option<AnswerCheck> {
    let quantifier = match &a.r#match {
        None => Some(Quantifier::Any),
        Some(m) => one_of_values(
            ctx,
            m,
            &format!("{key}.match"),
            "match",
            Quantifier::parse,
            &["any", "all", "none"],
        ),
    };
    let set: Vec<&str> = [
        ("exact", a.exact.is_some()),
        ("regex", a.regex.is_some()),
        ("contains", a.contains.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, on)| on.then_some(k))
    .collect();
    if set.len() != 1 {
        let message = if set.is_empty() {
            format!("{ONE_MATCHER}: none is set")
        } else {
            format!("{ONE_MATCHER}: {} are set", set.join(" and "))
        };
        ctx.err(at, key, message);
        return None;
    }
    // Answers are kept to MAX_ANSWER_BYTES: a longer text could never match.
    let within = |ctx: &mut Ctx, s: &Spanned<String>, field: &str| {
        if s.value.len() > MAX_ANSWER_BYTES {
            ctx.err(
                &s.referenced,
                format!("{key}.{field}"),
                format!(
                    "{} bytes: longer than the {MAX_ANSWER_BYTES} bytes an answer is kept to, so it could never match",
                    s.value.len()
                ),
            );
            false
        } else {
            true
        }
    };
    let matcher = if let Some(s) = &a.exact {
        within(ctx, s, "exact").then(|| Matcher::Exact(s.value.clone()))
    } else if let Some(s) = &a.contains {
        if s.value.is_empty() {
            ctx.err(
                &s.referenced,
                format!("{key}.contains"),
                "an empty string: every answer contains it",
            );
            None
        } else {
            within(ctx, s, "contains").then(|| Matcher::Contains(s.value.clone()))
        }
    } else if let Some(s) = &a.regex {
        ctx.regex(&s.value, &s.referenced, &format!("{key}.regex"))
            .map(Matcher::Regex)
    } else {
        None
    };
    Some(AnswerCheck {
        matcher: matcher?,
        quantifier: quantifier?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers() {
        assert_eq!(
            parse_server("127.0.0.1:5353"),
            Ok("127.0.0.1:5353".parse().unwrap())
        );
        assert_eq!(parse_server("10.0.0.2"), Ok("10.0.0.2:53".parse().unwrap()));
        assert_eq!(parse_server("[::1]:53"), Ok("[::1]:53".parse().unwrap()));
        assert_eq!(parse_server("::1"), Ok("[::1]:53".parse().unwrap()));
        assert!(parse_server("127.0.0.1:0").unwrap_err().contains("port 0"));
        for bad in [
            "dns.example.com",
            "dns.example.com:53",
            "1.2.3.4:99999",
            "",
            "1.2.3",
        ] {
            assert!(
                parse_server(bad).unwrap_err().contains("not its name"),
                "{bad}"
            );
        }
    }
}
