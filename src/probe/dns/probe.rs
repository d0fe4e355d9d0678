//! `DnsProbe`: one query per run to the configured server, judged against the expectations.
//!
//! The query is sent once: hickory's retries are off (one attempt, UDP included), because a
//! retried query would hide the packet loss a DNS check exists to see. The reply is parsed by
//! hickory and taken whatever it holds; only the answers of the asked type are kept, at most
//! [`MAX_ANSWERS_KEPT`], each cut to [`MAX_ANSWER_BYTES`].

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hickory_net::proto::op::{DnsRequest, DnsRequestOptions, DnsResponse, Query};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::{DnsHandle, FirstAnswer};
use hickory_net::NetError;

use super::spec::{DnsSpec, Rcode, Resolver, Transport, MAX_ANSWERS_KEPT, MAX_ANSWER_BYTES};
use crate::probe::kind::Detail;
use crate::probe::{
    AssertionOutcome, BoxFuture, CheckResult, Phase, Phases, Probe, Reason, RunContext, StepResult,
};

/// Where `resolver: system` finds its server.
const RESOLV_CONF: &str = "/etc/resolv.conf";
/// resolv.conf is read when it is at most this big (it is a few lines).
const RESOLV_CONF_MAX_BYTES: u64 = 64 * 1024;

/// What one run saw of the reply: the rcode, flags and answers as text. Kept for alert variables
/// and the trace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DnsReport {
    /// The server that was asked.
    pub server: Option<SocketAddr>,
    /// The reply's response code, when a reply arrived.
    pub rcode: Option<Rcode>,
    /// The AA flag of the reply.
    pub authoritative: Option<bool>,
    /// The TC flag of the reply (a UDP reply cut short by the server: the answers are partial).
    pub truncated: bool,
    /// How many answers of the asked type the reply held (also those not kept).
    pub answer_count: usize,
    /// Their text (at most [`MAX_ANSWERS_KEPT`], each at most [`MAX_ANSWER_BYTES`]), in the
    /// server's order.
    pub answers: Vec<String>,
}

/// One run's result with the DNS detail beside it.
#[derive(Debug, Clone)]
pub struct DnsRun {
    pub result: CheckResult,
    pub report: DnsReport,
}

/// A `dns` check, built once from its spec.
pub struct DnsProbe {
    spec: DnsSpec,
    resolv_conf: PathBuf,
}

impl fmt::Debug for DnsProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsProbe")
            .field("name", &self.spec.name.to_string())
            .field("type", &self.spec.record_type)
            .field("resolver", &self.spec.resolver)
            .field("transport", &self.spec.transport)
            .finish()
    }
}

/// Why no reply could be judged.
struct QueryError {
    reason: Reason,
    phase: Phase,
    message: String,
}

impl DnsProbe {
    pub fn new(spec: DnsSpec) -> Self {
        DnsProbe {
            spec,
            resolv_conf: PathBuf::from(RESOLV_CONF),
        }
    }

    /// The same probe reading another file instead of `/etc/resolv.conf` for `resolver: system`
    /// (tests).
    pub fn with_resolv_conf(mut self, path: impl Into<PathBuf>) -> Self {
        self.resolv_conf = path.into();
        self
    }

    pub fn spec(&self) -> &DnsSpec {
        &self.spec
    }

    /// The server this run asks: the configured one, or resolv.conf's first. The file is read
    /// off the async workers, without blocking on a FIFO, within the run's deadline; unreadable
    /// or naming no server, it means `127.0.0.1:53`, as to the C library.
    async fn server(&self, deadline: tokio::time::Instant) -> SocketAddr {
        match self.spec.resolver {
            Resolver::Server(addr) => addr,
            Resolver::System => {
                let path = self.resolv_conf.clone();
                let read = tokio::task::spawn_blocking(move || {
                    crate::config::limits::read_capped(&path, RESOLV_CONF_MAX_BYTES)
                });
                let text = match tokio::time::timeout_at(deadline, read).await {
                    Ok(Ok(Ok(text))) => text,
                    _ => String::new(),
                };
                super::spec::system_nameserver(&text)
                    .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 53)))
            }
        }
    }

    /// Runs the query once and judges it; the report holds what the reply said.
    pub async fn query(&self, ctx: RunContext) -> DnsRun {
        let started_at = SystemTime::now();
        let t0 = Instant::now();
        let server = self.server(ctx.deadline).await;
        let spec = &self.spec;
        let system = matches!(spec.resolver, Resolver::System)
            .then_some(" (system)")
            .unwrap_or_default();
        let mut step = StepResult {
            name: "query".to_string(),
            ran: true,
            request_line: format!(
                "{} {} @{server}/{}{system}",
                spec.record_type,
                display_name(spec),
                spec.transport.as_str()
            ),
            ..StepResult::default()
        };
        let mut report = DnsReport {
            server: Some(server),
            ..DnsReport::default()
        };

        let mut phases = Phases::default();
        let reply = self.exchange(server, ctx, &mut phases).await;
        step.phases = phases;
        match reply {
            Err(e) => {
                step.reason = Some(e.reason);
                step.failed_phase = Some(e.phase);
                step.message = Some(e.message);
            }
            Ok(response) => {
                self.judge(&response, &mut step, &mut report);
            }
        }
        let duration = t0.elapsed();
        step.duration = duration;
        // No reply, no answer count: `answers` is unknown then, not 0.
        let observations = match report.rcode {
            Some(_) => vec![("answers".to_string(), report.answer_count as f64)],
            None => Vec::new(),
        };
        let result = CheckResult {
            attempts: 1,
            success: step.success,
            reason: step.reason,
            message: step
                .message
                .as_ref()
                .map(|m| format!("step \"query\": {m}")),
            duration,
            started_at,
            steps: vec![step],
            observations,
            detail: Some(Arc::new(report.clone())),
        };
        DnsRun { result, report }
    }

    /// Sends the query and waits for the reply until the deadline. Phases: `connect` (TCP only)
    /// and `resolve` (the query's round trip).
    async fn exchange(
        &self,
        server: SocketAddr,
        ctx: RunContext,
        phases: &mut Phases,
    ) -> Result<DnsResponse, QueryError> {
        let spec = &self.spec;
        let mut query = Query::query(spec.name.clone(), spec.record_type.wire());
        query.set_query_class(hickory_net::proto::rr::DNSClass::IN);
        let mut options = DnsRequestOptions::default();
        options.recursion_desired = spec.recursion_desired;
        let request = DnsRequest::from_query(query, options);

        // A provider per run: its task set (the exchange's background I/O) is dropped, so
        // aborted, with it when this run ends, however it ends.
        let provider = TokioRuntimeProvider::new();
        let left = ctx
            .deadline
            .saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(timed_out(Phase::Resolve, left));
        }
        let budget = left;
        let exchange = match spec.transport {
            Transport::Udp => UdpClientStream::builder(server, provider.clone())
                .with_timeout(Some(budget))
                // One attempt: hickory's `max_retries` counts the attempts in flight.
                .with_max_retries(1)
                .exchange(),
            Transport::Tcp => {
                let t = Instant::now();
                let connected = tokio::time::timeout_at(
                    ctx.deadline,
                    TcpClientStream::exchange(server, None, budget, Some(1), provider.clone()),
                )
                .await;
                phases.connect = t.elapsed();
                match connected {
                    Ok(Ok(exchange)) => exchange,
                    Ok(Err(e)) => return Err(classify(e, Phase::Connect, budget)),
                    Err(_) => return Err(timed_out(Phase::Connect, budget)),
                }
            }
        };
        let t = Instant::now();
        let answered =
            tokio::time::timeout_at(ctx.deadline, exchange.send(request).first_answer()).await;
        phases.resolve = t.elapsed();
        drop(exchange);
        drop(provider);
        match answered {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(classify(e, Phase::Resolve, budget)),
            Err(_) => Err(timed_out(Phase::Resolve, budget)),
        }
    }

    /// Judges a reply: rcode first (reason `dns`), then the flags and answers (reason
    /// `assertion`). Every expectation is evaluated and shown, the first failure names the run's.
    fn judge(&self, response: &DnsResponse, step: &mut StepResult, report: &mut DnsReport) {
        let expect = &self.spec.expect;
        let rcode = Rcode(u16::from(response.metadata.response_code));
        report.rcode = Some(rcode);
        report.authoritative = Some(response.metadata.authoritative);
        report.truncated = response.metadata.truncation;
        let wanted = self.spec.record_type.wire();
        let mut count = 0usize;
        for record in response
            .answers
            .iter()
            .filter(|r| r.record_type() == wanted)
        {
            count += 1;
            if report.answers.len() < MAX_ANSWERS_KEPT {
                report.answers.push(answer_text(&record.data));
            }
        }
        report.answer_count = count;

        let fail = |step: &mut StepResult, reason: Reason, what: String, detail: String| {
            if step.reason.is_none() {
                step.reason = Some(reason);
                step.message = Some(format!("expected {what}, got {detail}"));
            }
            step.assertions.push(AssertionOutcome {
                what,
                passed: false,
                detail: Some(detail),
            });
        };
        let pass = |step: &mut StepResult, what: String| {
            step.assertions.push(AssertionOutcome {
                what,
                passed: true,
                detail: None,
            })
        };

        let what = format!("rcode {}", expect.rcode);
        if rcode == expect.rcode {
            pass(step, what);
        } else {
            fail(step, Reason::Dns, what, rcode.to_string());
        }

        if let Some(want) = expect.authoritative {
            let what = if want {
                "authoritative answer (AA flag set)"
            } else {
                "non-authoritative answer (AA flag clear)"
            };
            if report.authoritative == Some(want) {
                pass(step, what.to_string());
            } else {
                let got = if want { "AA flag clear" } else { "AA flag set" };
                fail(step, Reason::Assertion, what.to_string(), got.to_string());
            }
        }
        if let Some(min) = expect.min_answers {
            let what = format!("at least {min} answer(s)");
            if count >= min {
                pass(step, what);
            } else {
                fail(step, Reason::Assertion, what, format!("{count}"));
            }
        }
        if let Some(max) = expect.max_answers {
            let what = format!("at most {max} answer(s)");
            if count <= max {
                pass(step, what);
            } else {
                fail(step, Reason::Assertion, what, format!("{count}"));
            }
        }
        for check in &expect.answers {
            let what = check.describe();
            if check.holds(&report.answers) {
                pass(step, what);
            } else {
                fail(step, Reason::Assertion, what, answers_seen(report));
            }
        }
        step.success = step.reason.is_none();
    }
}

impl Probe for DnsProbe {
    fn run<'a>(&'a self, ctx: RunContext) -> BoxFuture<'a, CheckResult> {
        Box::pin(async move { self.query(ctx).await.result })
    }
}

/// The name as asked, without the root's trailing dot.
fn display_name(spec: &DnsSpec) -> String {
    let mut s = spec.name.to_string();
    if s.len() > 1 && s.ends_with('.') {
        s.pop();
    }
    s
}

/// An answer's text in presentation form (`192.0.2.1`, `10 mail.example.test.`, a TXT record's
/// strings joined), cut to [`MAX_ANSWER_BYTES`].
fn answer_text(data: &hickory_net::proto::rr::RData) -> String {
    let mut text = data.to_string();
    if text.len() > MAX_ANSWER_BYTES {
        let mut end = MAX_ANSWER_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// `2 answers: 192.0.2.1, 192.0.2.2` (`no answers` when there are none).
fn answers_line(report: &DnsReport) -> String {
    let n = report.answer_count;
    if n == 0 {
        return "no answers".to_string();
    }
    let noun = if n == 1 { "answer" } else { "answers" };
    let more = if n > report.answers.len() {
        format!(", … ({} not kept)", n - report.answers.len())
    } else {
        String::new()
    };
    let truncated = if report.truncated {
        " (reply truncated)"
    } else {
        ""
    };
    format!("{n} {noun}{truncated}: {}{more}", report.answers.join(", "))
}

/// What the answers were, for a failed answer expectation.
fn answers_seen(report: &DnsReport) -> String {
    if report.answer_count == 0 {
        "no answers".to_string()
    } else {
        let line = answers_line(report);
        line.split_once(": ")
            .map(|(_, list)| format!("answers {list}"))
            .unwrap_or(line)
    }
}

fn timed_out(phase: Phase, budget: Duration) -> QueryError {
    QueryError {
        reason: Reason::Timeout,
        phase,
        message: format!("no reply within {} ms ({phase})", budget.as_millis()),
    }
}

/// Sorts hickory's error into a reason: refused or unreachable is `connect`, a reply that does
/// not parse is `protocol`, running out of time is `timeout`.
fn classify(e: NetError, phase: Phase, budget: Duration) -> QueryError {
    match e {
        NetError::Timeout => timed_out(phase, budget),
        NetError::Io(io) if io.kind() == io::ErrorKind::TimedOut => timed_out(phase, budget),
        NetError::Io(io) => QueryError {
            reason: Reason::Connect,
            phase,
            message: match io.kind() {
                io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
                io::ErrorKind::ConnectionReset => "connection reset".to_string(),
                _ => format!("network error: {io}"),
            },
        },
        NetError::Proto(p) => QueryError {
            reason: Reason::Protocol,
            phase,
            message: format!("malformed reply: {p}"),
        },
        other => QueryError {
            reason: Reason::Protocol,
            phase,
            message: format!("no usable reply: {other}"),
        },
    }
}

impl Detail for DnsReport {
    /// `{"dns": {"server", "rcode", "authoritative", "truncated", "answer_count", "answers"}}`
    /// in the API (`rcode` and the flags are null when no reply came).
    fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        out.insert(
            "dns".into(),
            serde_json::json!({
                "server": self.server.map(|s| s.to_string()),
                "rcode": self.rcode.map(|r| r.to_string()),
                "authoritative": self.authoritative,
                "truncated": self.rcode.map(|_| self.truncated),
                "answer_count": self.rcode.map(|_| self.answer_count),
                "answers": self.answers,
            }),
        );
        out
    }

    /// `reply NOERROR from 127.0.0.1:53 (authoritative): 2 answers`, or `no reply from ...`.
    fn trace(&self, out: &mut String) {
        use std::fmt::Write;
        let server = self
            .server
            .map(|s| s.to_string())
            .unwrap_or_else(|| "?".into());
        let Some(rcode) = self.rcode else {
            let _ = writeln!(out, "no reply from {server}");
            return;
        };
        let aa = if self.authoritative == Some(true) {
            " (authoritative)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "reply {rcode} from {server}{aa}: {}",
            answers_line(self)
        );
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_net::proto::rr::rdata::TXT;
    use hickory_net::proto::rr::RData;

    #[test]
    fn long_answers_are_cut_at_a_character_boundary() {
        let long = "é".repeat(400); // 800 bytes
        let text = answer_text(&RData::TXT(TXT::new(vec![long])));
        assert!(text.len() <= MAX_ANSWER_BYTES);
        assert_eq!(
            text.len(),
            MAX_ANSWER_BYTES,
            "512 is a boundary of 2-byte chars"
        );
        let odd = format!("x{}", "é".repeat(400));
        let text = answer_text(&RData::TXT(TXT::new(vec![odd])));
        assert_eq!(text.len(), MAX_ANSWER_BYTES - 1);
    }

    #[test]
    fn answers_line_says_what_was_not_kept() {
        let report = DnsReport {
            answer_count: 3,
            answers: vec!["a".into(), "b".into()],
            ..DnsReport::default()
        };
        assert_eq!(answers_line(&report), "3 answers: a, b, … (1 not kept)");
        assert_eq!(answers_seen(&report), "answers a, b, … (1 not kept)");
        assert_eq!(answers_line(&DnsReport::default()), "no answers");
    }
}
