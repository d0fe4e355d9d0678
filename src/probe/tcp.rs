//! The `tcp` probe kind: resolve, connect and, when configured, the TLS handshake.
//!
//! One step named `connect` with `resolve`, `connect` and `tls` phases, the certificate's
//! `notAfter` and, with `cert_min_days`, an assertion on the days left. Uses the HTTP
//! transport's dialer, so failures carry the same reasons (`dns`, `connect`, `tls`, `timeout`).

use std::fmt;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use url::Host;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::config::ctx::Ctx;
use crate::config::limits;
use crate::config::schema::{self, Count, Flag};
use crate::probe::http::transport::{dial, Progress, Target};
use crate::probe::kind::{BuildEnv, Kind, KindCx, Var};
use crate::probe::tls::{tls, TlsDef, TlsSettings, CERT_EXPIRES_IN};
use crate::probe::{
    AssertionOutcome, BoxFuture, CheckResult, Phase, Probe, Reason, RunContext, StepResult,
};

/// The `tcp` kind.
pub struct Tcp;

impl Kind for Tcp {
    const KEY: &'static str = "tcp";
    const ABOUT: &'static str = "TCP connect (optionally TLS).";
    const VARS: &'static [Var] = &[CERT_EXPIRES_IN];
    type Def = TcpDef;
    type Spec = TcpCheck;

    fn validate(cx: &mut KindCx<'_, '_>, def: &TcpDef) -> Option<TcpCheck> {
        tcp(cx.ctx, def, &cx.key)
    }

    fn step_names(_spec: &TcpCheck) -> Vec<String> {
        vec!["connect".into()]
    }

    fn build(_name: &str, t: &Arc<TcpCheck>, _env: &BuildEnv) -> Result<Arc<dyn Probe>, String> {
        let tls = t.tls.as_ref().map(|s| s.client_config()).transpose()?;
        let server_name = t.tls.as_ref().and_then(|s| s.server_name.clone());
        Ok(Arc::new(TcpProbe::new(TcpSpec {
            target: t.target.clone(),
            tls,
            server_name,
            cert_min_days: t.cert_min_days,
        })))
    }
}

/// A TCP check.
#[derive(Debug, Clone)]
pub struct TcpCheck {
    /// `host:port`
    pub target: String,
    /// TLS after connecting.
    pub tls: Option<TlsSettings>,
    /// Minimum days of certificate validity.
    pub cert_min_days: Option<u32>,
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

fn tcp(ctx: &mut Ctx, t: &TcpDef, key: &str) -> Option<TcpCheck> {
    let target = &t.target.value;
    // The tcp probe's own parser: what loads here is exactly what the probe can dial.
    // Its error says what is wrong (no port, port 0, invalid host...).
    if let Err(e) = crate::probe::tcp::parse_target(target) {
        ctx.err(&t.target.referenced, format!("{key}.target"), e.to_string());
    }
    if t.tls_config.is_some() && !t.tls {
        let loc = t.target.referenced;
        ctx.err(
            &loc,
            format!("{key}.tls_config"),
            "tls_config is set but tls is false",
        );
    }
    let tls = t
        .tls
        .then(|| tls(ctx, t.tls_config.as_ref(), &format!("{key}.tls_config")));
    ctx.int_in(
        t.cert_min_days.as_ref(),
        &format!("{key}.cert_min_days"),
        0,
        limits::MAX_CERT_MIN_DAYS,
    );
    if let (Some(d), false) = (&t.cert_min_days, t.tls) {
        ctx.err(
            &d.referenced,
            format!("{key}.cert_min_days"),
            "cert_min_days needs tls: true",
        );
    }
    Some(TcpCheck {
        target: target.clone(),
        tls,
        cert_min_days: t.cert_min_days.as_ref().map(|d| d.value),
    })
}

/// Configuration of one `tcp` check.
#[derive(Debug, Clone)]
pub struct TcpSpec {
    /// `host:port` (IPv6 literals in brackets: `[::1]:443`).
    pub target: String,
    /// TLS client configuration, when the handshake is part of the check.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Name for SNI and certificate verification instead of the target host.
    pub server_name: Option<String>,
    /// Fail (reason `assertion`) when the certificate expires in fewer days than this.
    pub cert_min_days: Option<u32>,
}

/// Why a `tcp` target is not `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid target {target:?}: {problem} (want host:port)")]
pub struct TargetError {
    target: String,
    problem: &'static str,
}

/// Splits `host:port` into a host and a port; for configuration validation too.
pub fn parse_target(target: &str) -> Result<(Host<String>, u16), TargetError> {
    let err = |problem| TargetError {
        target: target.to_string(),
        problem,
    };
    let (host, port) = target.rsplit_once(':').ok_or_else(|| err("no port"))?;
    let port: u16 = port.parse().map_err(|_| err("invalid port"))?;
    if port == 0 {
        return Err(err("port 0"));
    }
    if host.is_empty() {
        return Err(err("no host"));
    }
    let host = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Host::Ipv6(inner.parse().map_err(|_| err("invalid IPv6 address"))?)
    } else if host.contains(':') {
        return Err(err("IPv6 addresses need brackets"));
    } else {
        Host::parse(host).map_err(|_| err("invalid host"))?
    };
    Ok((host, port))
}

/// A `tcp` check, built once from its configuration.
pub struct TcpProbe {
    spec: TcpSpec,
    target: Result<(Host<String>, u16), TargetError>,
}

impl fmt::Debug for TcpProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpProbe")
            .field("target", &self.spec.target)
            .field("tls", &self.spec.tls.is_some())
            .field("server_name", &self.spec.server_name)
            .field("cert_min_days", &self.spec.cert_min_days)
            .finish()
    }
}

impl TcpProbe {
    /// Builds the probe. An invalid target (which configuration validation rejects first) makes
    /// every run fail with reason `internal`.
    pub fn new(spec: TcpSpec) -> Self {
        let target = parse_target(&spec.target);
        TcpProbe { spec, target }
    }

    async fn run_once(&self, ctx: RunContext) -> CheckResult {
        let started_at = SystemTime::now();
        let t0 = Instant::now();
        let (host, port) = match &self.target {
            Ok((host, port)) => (host, *port),
            Err(e) => {
                return CheckResult::failure(
                    Reason::Internal,
                    e.to_string(),
                    started_at,
                    t0.elapsed(),
                )
            }
        };
        let target = Target {
            host: match host {
                Host::Domain(name) => Host::Domain(name.as_str()),
                Host::Ipv4(ip) => Host::Ipv4(*ip),
                Host::Ipv6(ip) => Host::Ipv6(*ip),
            },
            port,
            tls: self.spec.tls.as_ref(),
            server_name: self.spec.server_name.as_deref(),
        };
        let progress = Progress::new(self.spec.tls.is_some());
        let dialed = match tokio::time::timeout_at(
            ctx.deadline,
            dial(&target, ctx.deadline, &progress, Phase::Tls),
        )
        .await
        {
            Ok(res) => res,
            Err(_) => Err(progress.timeout(Phase::Tls)),
        };

        let mut step = StepResult {
            name: "connect".to_string(),
            ran: true,
            request_line: format!("connect {}", self.spec.target),
            ..StepResult::default()
        };
        let mut observations = Vec::new();
        match dialed {
            Ok(dialed) => {
                let end = Instant::now();
                drop(dialed.stream);
                step.phases = progress.phases_at(end, Phase::Tls).0;
                step.cert_not_after = dialed.cert_not_after;
                step.success = true;
                if let Some(not_after) = dialed.cert_not_after {
                    observations.push(("cert_expires_in".to_string(), seconds_left(not_after)));
                }
                if let (Some(min_days), Some(_)) = (self.spec.cert_min_days, &self.spec.tls) {
                    let outcome = cert_days_assertion(min_days, dialed.cert_not_after);
                    if !outcome.passed {
                        step.success = false;
                        step.reason = Some(Reason::Assertion);
                        step.message = outcome.detail.clone();
                    }
                    step.assertions.push(outcome);
                }
            }
            Err(e) => {
                step.phases = e.phases;
                step.reason = Some(e.reason);
                step.failed_phase = e.phase;
                step.message = Some(e.message);
            }
        }
        let duration = t0.elapsed();
        step.duration = duration;
        CheckResult {
            success: step.success,
            reason: step.reason,
            message: step
                .message
                .as_ref()
                .map(|m| format!("step \"connect\": {m}")),
            duration,
            started_at,
            steps: vec![step],
            observations,
            detail: None,
            attempts: 1,
        }
    }
}

impl Probe for TcpProbe {
    fn run<'a>(&'a self, ctx: RunContext) -> BoxFuture<'a, CheckResult> {
        Box::pin(self.run_once(ctx))
    }
}

/// Seconds until `not_after` (negative once expired).
fn seconds_left(not_after: SystemTime) -> f64 {
    match not_after.duration_since(SystemTime::now()) {
        Ok(left) => left.as_secs_f64(),
        Err(past) => -past.duration().as_secs_f64(),
    }
}

fn cert_days_assertion(min_days: u32, not_after: Option<SystemTime>) -> AssertionOutcome {
    let what = format!("certificate valid for at least {min_days} days");
    let Some(not_after) = not_after else {
        return AssertionOutcome {
            what,
            passed: false,
            detail: Some("the server presented no parsable certificate".to_string()),
        };
    };
    let days = seconds_left(not_after) / 86_400.0;
    let passed = days >= f64::from(min_days);
    let detail = (!passed).then(|| {
        if days < 0.0 {
            format!("certificate expired {:.1} days ago", -days)
        } else {
            format!("certificate expires in {days:.1} days (want at least {min_days})")
        }
    });
    AssertionOutcome {
        what,
        passed,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("example.com:443").unwrap(),
            (Host::Domain("example.com".to_string()), 443)
        );
        assert_eq!(
            parse_target("127.0.0.1:80").unwrap(),
            (Host::Ipv4(Ipv4Addr::LOCALHOST), 80)
        );
        assert_eq!(
            parse_target("[::1]:8443").unwrap(),
            (Host::Ipv6(Ipv6Addr::LOCALHOST), 8443)
        );
        for bad in [
            "example.com",
            ":80",
            "::1:80",
            "host:0",
            "host:99999",
            "[zz]:1",
            "a b:1",
        ] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cert_days() {
        let in_10_days = SystemTime::now() + Duration::from_secs(10 * 86_400 + 60);
        assert!(cert_days_assertion(10, Some(in_10_days)).passed);
        let outcome = cert_days_assertion(30, Some(in_10_days));
        assert!(!outcome.passed);
        assert!(outcome.detail.unwrap().contains("expires in 10.0 days"));
        let expired = SystemTime::now() - Duration::from_secs(2 * 86_400);
        let outcome = cert_days_assertion(1, Some(expired));
        assert!(outcome.detail.unwrap().contains("expired 2.0 days ago"));
        assert!(!cert_days_assertion(1, None).passed);
    }

    use crate::config::expr::{Type, Value};
    use crate::probe::check::{check_of, errors_of};

    fn tcp_check(def: &str) -> String {
        format!("checks:\n  - name: db\n    tcp:\n{def}")
    }

    #[test]
    fn the_target_is_what_the_probe_can_dial() {
        for (target, problem) in [
            ("nowhere", "no port"),
            ("host:0", "port 0"),
            ("host:http", "invalid port"),
            (":5432", "no host"),
            ("::1:5432", "IPv6 addresses need brackets"),
            ("[zz]:5432", "invalid IPv6 address"),
        ] {
            assert_eq!(
                errors_of(&tcp_check(&format!("      target: \"{target}\"\n"))),
                [format!(
                    "t.yaml:4:15: checks[0].tcp.target: invalid target {target:?}: {problem} (want host:port)"
                )]
            );
        }
        let c = check_of(&tcp_check("      target: \"[::1]:5432\"\n"));
        let spec = c.kind.spec::<Tcp>().unwrap();
        assert_eq!(spec.target, "[::1]:5432");
        assert!(spec.tls.is_none());
    }

    #[test]
    fn tls_options_need_tls() {
        assert_eq!(
            errors_of(&tcp_check(
                "      target: \"db:5432\"\n      tls_config: {insecure_skip_verify: true}\n"
            )),
            ["t.yaml:4:15: checks[0].tcp.tls_config: tls_config is set but tls is false"]
        );
        assert_eq!(
            errors_of(&tcp_check(
                "      target: \"db:5432\"\n      cert_min_days: 30\n"
            )),
            ["t.yaml:5:22: checks[0].tcp.cert_min_days: cert_min_days needs tls: true"]
        );
        assert_eq!(
            errors_of(&tcp_check(
                "      target: \"db:5432\"\n      tls: true\n      cert_min_days: 3651\n"
            )),
            ["t.yaml:6:22: checks[0].tcp.cert_min_days: 3651 is more than the limit of 3650"]
        );
        let c = check_of(&tcp_check(
            "      target: \"db:5432\"\n      tls: true\n      cert_min_days: 3650\n",
        ));
        let spec = c.kind.spec::<Tcp>().unwrap();
        assert_eq!(spec.cert_min_days, Some(3650));
        assert_eq!(spec.tls, Some(TlsSettings::default()));
    }

    #[test]
    fn variables_read_what_their_declaration_says() {
        let c = check_of(&tcp_check("      target: \"db:5432\"\n      tls: true\n"));
        assert_eq!(c.kind.var_type("cert_expires_in"), Ok(Type::Duration));
        assert_eq!(c.kind.var_type("failed"), Ok(Type::Bool));
        assert_eq!(c.kind.var_type("duration"), Ok(Type::Duration));
        assert_eq!(c.kind.var_type("reason"), Ok(Type::String));
        assert_eq!(
            c.kind.var_type("status"),
            Err(r#"unknown variable "status" for a tcp check (known: failed, duration, reason, cert_expires_in)"#.to_string())
        );
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let day = Duration::from_secs(86_400);
        let connect = |not_after: Option<SystemTime>| StepResult {
            name: "connect".into(),
            ran: true,
            success: true,
            cert_not_after: not_after,
            ..StepResult::default()
        };
        let result = |steps: Vec<StepResult>| CheckResult {
            attempts: 1,
            success: true,
            reason: None,
            message: None,
            duration: Duration::from_millis(3),
            started_at: now,
            steps,
            observations: Vec::new(),
            detail: None,
        };
        let r = result(vec![connect(Some(now + 10 * day))]);
        assert_eq!(
            c.kind.variable(&r, "cert_expires_in", now),
            Some(Value::Duration(10 * day))
        );
        // Read at the evaluation's clock, not the run's.
        assert_eq!(
            c.kind.variable(&r, "cert_expires_in", now + day),
            Some(Value::Duration(9 * day))
        );
        // The soonest of several certificates; an expired one has no time left.
        let r = result(vec![
            connect(Some(now + 10 * day)),
            connect(Some(now + day)),
        ]);
        assert_eq!(
            c.kind.variable(&r, "cert_expires_in", now),
            Some(Value::Duration(day))
        );
        let r = result(vec![connect(Some(now - day))]);
        assert_eq!(
            c.kind.variable(&r, "cert_expires_in", now),
            Some(Value::Duration(Duration::ZERO))
        );
        // Without TLS: unknown.
        let r = result(vec![connect(None)]);
        assert_eq!(c.kind.variable(&r, "cert_expires_in", now), None);
        assert_eq!(c.kind.variable(&r, "failed", now), Some(Value::Bool(false)));
        assert_eq!(
            c.kind.variable(&r, "duration", now),
            Some(Value::Duration(Duration::from_millis(3)))
        );
        assert_eq!(
            c.kind.variable(&r, "reason", now),
            Some(Value::String(String::new()))
        );
    }
}
