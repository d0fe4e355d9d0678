//! The `dns` check kind: one query for one name and record type to a chosen server (or the
//! system's), over UDP or TCP, judged on its response code, AA flag and answers.
//!
//! One step named `query` with the phases `connect` (TCP only) and `resolve` (the query's round
//! trip). Reasons: `timeout` (no reply by the deadline), `connect` (refused, unreachable),
//! `protocol` (a reply hickory cannot parse), `dns` (an unexpected rcode: NXDOMAIN, SERVFAIL,
//! REFUSED ...), `assertion` (flags, answer count or answer text).

pub mod def;
pub mod probe;
pub mod spec;

pub use def::Dns;
pub use probe::{DnsProbe, DnsReport, DnsRun};
pub use spec::{
    AnswerCheck, DnsExpect, DnsSpec, Matcher, Quantifier, Rcode, RecordType, Resolver, Transport,
};
