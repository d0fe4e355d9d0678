//! Email over SMTP (lettre on tokio, rustls): one mail per event (`max_batch` 1), so every
//! trigger, reminder, escalation and resolve is its own message with its own subject, and a
//! failed mail is retried alone. Each mail is `multipart/alternative`: a plain-text part and an
//! HTML part (every value HTML-escaped) with the evidence the event carries — summary, check,
//! alert, severity, failed step, reason, value, since/until, labels, annotations and links.
//! Mails of one alert share a `References` header (`<dedup key@canaryd>`), so mail clients
//! thread a resolve under its trigger.
//!
//! The connection is STARTTLS by default (`tls: starttls`; `tls` for implicit TLS on 465;
//! `none` only without a password). A password is a secret: it is rendered when the receiver
//! is built and only ever given to lettre's AUTH; no message names it.
//!
//! Verdicts: SMTP 4xx (transient) and connection, TLS or timeout errors are retried; SMTP 5xx
//! (permanent, e.g. an unknown recipient or refused credentials) is final.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::pagerduty::truncate;
use super::{Delivery, Notifier, Outgoing, ReceiverKind, Verdict};
use crate::alert::{rfc3339, AlertEvent, Status};
use crate::config::ctx::{no_variables, non_empty_secret, Ctx};
use crate::config::limits;
use crate::config::schema::Text;
use crate::config::template::{Secret, Template};

/// At most this many recipients per email receiver.
pub const MAX_RECIPIENTS: usize = 50;
/// Subjects are cut to this many characters.
pub const SUBJECT_MAX: usize = 200;
/// Bound on one SMTP command (connect, TLS handshake, each reply).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on one whole delivery (connect to QUIT).
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which is required (port 587 or 25).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption (a local relay); not allowed with a password.
    None,
}

/// Email receiver (SMTP).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailDef {
    /// SMTP server as `host:port` (`smtp.example.com:587`, `[::1]:25`).
    #[schemars(with = "Text")]
    pub smtp: Spanned<String>,
    /// `starttls` (default), `tls` or `none`.
    #[serde(default)]
    pub tls: SmtpTls,
    /// SMTP AUTH user name (may use `${env:..}` / `${file:..}`); needs `password`.
    #[schemars(with = "Option<Text>")]
    pub username: Option<Spanned<String>>,
    /// SMTP AUTH password (a secret: `${env:..}` or `${file:..}`); needs `username` and TLS.
    #[schemars(with = "Option<Text>")]
    pub password: Option<Spanned<String>>,
    /// Sender address (`canaryd@example.com` or `canaryd <canaryd@example.com>`).
    #[schemars(with = "Text")]
    pub from: Spanned<String>,
    /// Recipients (1 to 50 addresses).
    #[schemars(with = "Vec<String>", extend("minItems" = 1, "maxItems" = 50))]
    pub to: Spanned<Vec<Spanned<String>>>,
    /// PEM file of a CA to trust in addition to the system's roots (a private relay).
    #[schemars(with = "Option<String>")]
    pub ca_file: Option<Spanned<String>>,
}

/// An email receiver, validated.
#[derive(Debug)]
pub struct EmailSettings {
    /// SMTP host (also the name its certificate must carry).
    pub host: String,
    /// SMTP port.
    pub port: u16,
    /// Connection security.
    pub tls: SmtpTls,
    /// AUTH user name and password (secret), both or neither.
    pub auth: Option<(Template, Template)>,
    /// Sender.
    pub from: Mailbox,
    /// Recipients.
    pub to: Vec<Mailbox>,
    /// Extra CA (PEM), read when the receiver is built.
    pub ca_file: Option<PathBuf>,
}

/// An email receiver.
pub struct Email {
    name: String,
    from: Mailbox,
    to: Vec<Mailbox>,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The transport holds the credentials: never printed.
        f.debug_struct("Email")
            .field("name", &self.name)
            .field("to", &self.to.len())
            .finish_non_exhaustive()
    }
}

/// `host:port` (IPv6 in brackets) → host and a non-zero port.
fn host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.trim().rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let valid = !host.is_empty()
        && !host.contains(['/', '@', ' ', '[', ']'])
        && (host.parse::<std::net::IpAddr>().is_ok() || !host.contains(':'));
    valid.then(|| (host.to_string(), port))
}

impl ReceiverKind for Email {
    type Def = EmailDef;
    type Settings = EmailSettings;

    /// `smtp` is `host:port`; `from` and every `to` are addresses; username and password come
    /// together, the password is a non-empty secret and never goes over `tls: none`.
    fn validate(ctx: &mut Ctx, def: &EmailDef, key: &str) -> Option<EmailSettings> {
        let mut ok = true;
        let hp = host_port(&def.smtp.value);
        if hp.is_none() {
            ctx.err(
                &def.smtp.referenced,
                format!("{key}.smtp"),
                format!(
                    "invalid SMTP server {:?}: write host:port, e.g. smtp.example.com:587",
                    def.smtp.value
                ),
            );
        }
        let mailbox =
            |ctx: &mut Ctx, s: &Spanned<String>, k: String| match s.value.trim().parse::<Mailbox>()
            {
                Ok(m) => Some(m),
                Err(_) => {
                    ctx.err(
                        &s.referenced,
                        k,
                        format!("invalid email address {:?}", s.value),
                    );
                    None
                }
            };
        let from = mailbox(ctx, &def.from, format!("{key}.from"));
        let mut to = Vec::new();
        let tkey = format!("{key}.to");
        if def.to.value.is_empty() {
            ctx.err(
                &def.to.referenced,
                &tkey,
                "at least one recipient is needed",
            );
            ok = false;
        } else if !ctx.count(
            def.to.value.len(),
            MAX_RECIPIENTS,
            &def.to.referenced,
            &tkey,
            "recipients",
        ) {
            ok = false;
        } else {
            for (i, t) in def.to.value.iter().enumerate() {
                match mailbox(ctx, t, format!("{tkey}[{i}]")) {
                    Some(m) => to.push(m),
                    None => ok = false,
                }
            }
        }
        let auth = match (&def.username, &def.password) {
            (None, None) => None,
            (Some(u), None) => {
                ctx.err(
                    &u.referenced,
                    format!("{key}.username"),
                    "username needs password",
                );
                ok = false;
                None
            }
            (None, Some(p)) => {
                ctx.err(
                    &p.referenced,
                    format!("{key}.password"),
                    "password needs username",
                );
                ok = false;
                None
            }
            (Some(u), Some(p)) => {
                let ukey = format!("{key}.username");
                let pkey = format!("{key}.password");
                let user = ctx
                    .template(u, &ukey)
                    .filter(|t| no_variables(ctx, t, u, &ukey))
                    .filter(|t| non_empty_secret(ctx, t, u, &ukey));
                let pass = ctx
                    .template(p, &pkey)
                    .filter(|t| no_variables(ctx, t, p, &pkey))
                    .filter(|t| non_empty_secret(ctx, t, p, &pkey));
                if def.tls == SmtpTls::None {
                    ctx.err(
                        &p.referenced,
                        &pkey,
                        "a password is never sent unencrypted: use tls: starttls or tls",
                    );
                    ok = false;
                }
                match (user, pass) {
                    (Some(u), Some(p)) => Some((u, p)),
                    _ => {
                        ok = false;
                        None
                    }
                }
            }
        };
        let ca_file = match &def.ca_file {
            Some(p) => {
                let path = ctx.path(p, &format!("{key}.ca_file"));
                ok &= path.is_some();
                path
            }
            None => None,
        };
        let (host, port) = hp?;
        let from = from?;
        ok.then_some(EmailSettings {
            host,
            port,
            tls: def.tls,
            auth,
            from,
            to,
            ca_file,
        })
    }

    /// Reads the CA file, renders the credentials and sets up the transport (no connection yet).
    fn build(name: &str, settings: &EmailSettings) -> Result<Email, String> {
        let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
            .port(settings.port)
            .timeout(Some(COMMAND_TIMEOUT));
        if settings.tls != SmtpTls::None {
            let mut params = TlsParameters::builder(settings.host.clone());
            if let Some(path) = &settings.ca_file {
                let pem = limits::read_capped(path, limits::MAX_PEM_FILE_BYTES)
                    .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
                let cert = Certificate::from_pem(pem.as_bytes())
                    .map_err(|_| format!("ca_file {}: no PEM certificate", path.display()))?;
                params = params.add_root_certificate(cert);
            }
            let params = params
                .build_rustls()
                .map_err(|e| format!("cannot set up TLS for the SMTP server: {e}"))?;
            transport = transport.tls(match settings.tls {
                SmtpTls::Tls => Tls::Wrapper(params),
                _ => Tls::Required(params),
            });
        } else {
            transport = transport.tls(Tls::None);
        }
        if let Some((user, pass)) = &settings.auth {
            let user = user
                .render(|_| None)
                .map_err(|u| format!("username: unknown variable ${{{}}}", u.0))?;
            let pass = pass
                .render(|_| None)
                .map_err(|u| format!("password: unknown variable ${{{}}}", u.0))?;
            let pass = Secret::new(pass.as_ref());
            transport = transport.credentials(Credentials::new(
                user.trim().to_string(),
                pass.expose().to_string(),
            ));
        }
        Ok(Email {
            name: name.to_string(),
            from: settings.from.clone(),
            to: settings.to.clone(),
            transport: transport.build(),
        })
    }

    fn secrets(settings: &EmailSettings) -> Vec<&Template> {
        settings.auth.iter().flat_map(|(u, p)| [u, p]).collect()
    }
}

/// Text for one header line: control characters (a line break would start a new header)
/// become spaces.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `[FIRING] <summary>` or `[RESOLVED] <summary>`, on one line, at most 200 characters.
pub fn subject(e: &AlertEvent) -> String {
    let tag = match e.status {
        Status::Firing => "FIRING",
        Status::Resolved => "RESOLVED",
    };
    truncate(&one_line(&format!("[{tag}] {}", e.summary)), SUBJECT_MAX)
}

/// The evidence as (label, value) rows, in the order both bodies show them.
fn facts(e: &AlertEvent) -> Vec<(&'static str, String)> {
    let mut rows = vec![
        ("Check", e.check.clone()),
        ("Alert", e.alert.clone()),
        ("Severity", e.severity.clone()),
        ("Event", e.kind.as_str().to_string()),
    ];
    for (k, v) in [
        ("Failed step", &e.failed_step),
        ("Reason", &e.reason),
        ("Message", &e.message),
        ("Value", &e.value),
    ] {
        if let Some(v) = v {
            rows.push((k, v.clone()));
        }
    }
    if let Some(d) = e.dependants() {
        rows.push(("Failing too", d));
    }
    rows.push(("Since", rfc3339(e.starts_at())));
    if let Some(end) = e.ends_at() {
        rows.push(("Until", rfc3339(end)));
    }
    if let Some(lasted) = e.lasted() {
        rows.push(("Lasted", crate::alert::short_duration(lasted)));
    }
    rows
}

/// The links of an event: the check's status, and a runbook when annotated.
fn links(e: &AlertEvent) -> Vec<(&'static str, &str)> {
    let mut out = vec![("Check status", e.generator_url.as_str())];
    if let Some(r) = e.annotations.get("runbook_url") {
        out.push(("Runbook", r.as_str()));
    }
    out
}

/// The plain-text body.
pub fn text_body(e: &AlertEvent) -> String {
    let mut out = format!("{}: {}\n\n", e.status.as_str().to_uppercase(), e.summary);
    for (k, v) in facts(e) {
        out.push_str(&format!("{:<12} {v}\n", format!("{k}:")));
    }
    for (title, map) in [("Labels", &e.labels), ("Annotations", &e.annotations)] {
        if !map.is_empty() {
            out.push_str(&format!("\n{title}:\n"));
            for (k, v) in map {
                out.push_str(&format!("  {k} = {v}\n"));
            }
        }
    }
    out.push_str("\nLinks:\n");
    for (k, v) in links(e) {
        out.push_str(&format!("  {k}: {v}\n"));
    }
    out
}

/// `s` with the five HTML-special characters escaped (text and attribute values alike).
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The HTML body: the same evidence as the text body, every value escaped; links only for
/// http(s) URLs (a `javascript:` runbook is shown as text).
pub fn html_body(e: &AlertEvent) -> String {
    let h = escape_html;
    let colour = match e.status {
        Status::Firing => "#b00020",
        Status::Resolved => "#1b7f3b",
    };
    let mut out = format!(
        "<!DOCTYPE html>\n<html><body style=\"font-family:sans-serif\">\n<h2 style=\"color:{colour}\">{}: {}</h2>\n<table>\n",
        e.status.as_str().to_uppercase(),
        h(&e.summary)
    );
    for (k, v) in facts(e) {
        out.push_str(&format!(
            "<tr><th align=\"left\">{k}</th><td>{}</td></tr>\n",
            h(&v)
        ));
    }
    out.push_str("</table>\n");
    for (title, map) in [("Labels", &e.labels), ("Annotations", &e.annotations)] {
        if !map.is_empty() {
            out.push_str(&format!("<h3>{title}</h3>\n<ul>\n"));
            for (k, v) in map {
                out.push_str(&format!("<li><code>{}</code> = {}</li>\n", h(k), h(v)));
            }
            out.push_str("</ul>\n");
        }
    }
    out.push_str("<h3>Links</h3>\n<ul>\n");
    for (k, v) in links(e) {
        let lower = v.trim_start().to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            out.push_str(&format!("<li><a href=\"{}\">{k}</a></li>\n", h(v)));
        } else {
            out.push_str(&format!("<li>{k}: {}</li>\n", h(v)));
        }
    }
    out.push_str("</ul>\n</body></html>\n");
    out
}

impl Email {
    /// The mail for one event.
    pub fn message(&self, e: &AlertEvent) -> Result<Message, String> {
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(subject(e))
            .references(format!("<{}@canaryd>", e.dedup_key))
            .user_agent(concat!("canaryd/", env!("CARGO_PKG_VERSION")).to_string());
        for to in &self.to {
            b = b.to(to.clone());
        }
        b.multipart(MultiPart::alternative_plain_html(
            text_body(e),
            html_body(e),
        ))
        .map_err(|e| format!("cannot build the mail: {e}"))
    }
}

/// What an SMTP failure means: 4xx and transport trouble are retried, 5xx is final.
fn judge_smtp(e: &lettre::transport::smtp::Error) -> Verdict {
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        source = s.source();
    }
    let reason = truncate(&one_line(&reason), super::ANSWER_EXCERPT_BYTES);
    if e.is_permanent() {
        Verdict::Rejected {
            reason: format!("SMTP {reason}"),
        }
    } else {
        Verdict::Retry {
            after: None,
            reason: format!("SMTP {reason}"),
        }
    }
}

impl Notifier for Email {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "email"
    }

    fn max_batch(&self) -> usize {
        1
    }

    fn deliver<'a>(
        &'a self,
        batch: &'a [AlertEvent],
        _now: SystemTime,
        _http: &'a reqwest::Client,
    ) -> Option<Delivery<'a>> {
        Some(Box::pin(async move {
            let [event] = batch else {
                return Verdict::Rejected {
                    reason: format!("email sends one event per mail, got {}", batch.len()),
                };
            };
            let mail = match self.message(event) {
                Ok(m) => m,
                Err(reason) => return Verdict::Rejected { reason },
            };
            match tokio::time::timeout(DELIVERY_TIMEOUT, self.transport.send(mail)).await {
                Err(_) => Verdict::Retry {
                    after: None,
                    reason: format!(
                        "SMTP delivery timed out after {}s",
                        DELIVERY_TIMEOUT.as_secs()
                    ),
                },
                Ok(Ok(_)) => Verdict::Accepted,
                Ok(Err(e)) => judge_smtp(&e),
            }
        }))
    }

    fn request(&self, _batch: &[AlertEvent], _now: SystemTime) -> Result<Outgoing, String> {
        Err("email is sent over SMTP, not HTTP".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::receiver::tests_support::event;
    use crate::alert::tests_support::validated;

    fn check(yaml: &str) -> (Option<EmailSettings>, Vec<String>) {
        validated(yaml, |ctx, def: &EmailDef| {
            Email::validate(ctx, def, "receivers[0].email")
        })
    }

    #[test]
    fn server_addresses_and_credentials_are_validated_with_their_location() {
        let (s, errors) = check(
            "smtp: smtp.example.com\nfrom: not-an-address\nto: [ok@example.test, \"bad@\"]\nusername: u\n",
        );
        assert!(s.is_none());
        assert_eq!(
            errors,
            [
                "1:7: receivers[0].email.smtp: invalid SMTP server \"smtp.example.com\": write host:port, e.g. smtp.example.com:587",
                "2:7: receivers[0].email.from: invalid email address \"not-an-address\"",
                "3:23: receivers[0].email.to[1]: invalid email address \"bad@\"",
                "4:11: receivers[0].email.username: username needs password",
            ]
        );
        let (_, errors) = check(
            "smtp: \"127.0.0.1:25\"\ntls: none\nfrom: a@example.test\nto: []\nusername: u\npassword: p\n",
        );
        assert_eq!(
            errors,
            [
                "4:5: receivers[0].email.to: at least one recipient is needed",
                "6:11: receivers[0].email.password: a password is never sent unencrypted: use tls: starttls or tls",
            ]
        );
        let (s, errors) = check(
            "smtp: \"[::1]:587\"\nfrom: \"canaryd <a@example.test>\"\nto: [b@example.test]\nusername: u\npassword: p\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        let s = s.unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.tls),
            ("::1", 587, SmtpTls::Starttls)
        );
    }

    #[test]
    fn at_most_50_recipients() {
        let to: Vec<String> = (0..51).map(|i| format!("r{i}@example.test")).collect();
        let (s, errors) = check(&format!(
            "smtp: \"127.0.0.1:25\"\nfrom: a@example.test\nto: [{}]\n",
            to.join(", ")
        ));
        assert!(s.is_none());
        assert_eq!(
            errors,
            ["3:5: receivers[0].email.to: 51 recipients: at most 50 are allowed"]
        );
    }

    #[test]
    fn bodies_carry_the_evidence_and_html_is_escaped() {
        let mut e = event(Status::Firing);
        e.summary = "expected <b>ok</b> & \"fine\"\r\nBcc: evil@example.test".into();
        e.annotations
            .insert("runbook_url".into(), "javascript:alert(1)".into());
        e.labels.insert("zone".into(), "<script>x</script>".into());
        let text = text_body(&e);
        for want in [
            "Failed step: submit",
            "Reason:",
            "status",
            "team = web",
            "Check status: http://127.0.0.1:9464/api/v1/checks/shop-login",
        ] {
            assert!(text.contains(want), "{want:?} in {text}");
        }
        let html = html_body(&e);
        assert!(
            html.contains("expected &lt;b&gt;ok&lt;/b&gt; &amp; &quot;fine&quot;"),
            "{html}"
        );
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"), "{html}");
        assert!(
            !html.contains("<script>") && !html.contains("href=\"javascript"),
            "{html}"
        );
        assert!(html.contains("<a href=\"http://127.0.0.1:9464/api/v1/checks/shop-login\">"));
        let s = subject(&e);
        assert!(
            s.starts_with("[FIRING] expected <b>ok</b>") && !s.contains('\n'),
            "{s}"
        );
    }

    fn unescape(s: &str) -> String {
        s.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&")
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 500, ..Default::default() })]

        /// Escaping leaves no markup character and loses nothing.
        #[test]
        fn escaping_leaves_no_markup_and_round_trips(s in "\\PC{0,200}|[<>&\"' a-z]{0,50}") {
            let h = escape_html(&s);
            proptest::prop_assert!(!h.contains(['<', '>', '"', '\'']));
            proptest::prop_assert_eq!(unescape(&h), s);
        }

        /// Whatever the event carries, a mail is built (never a panic or an error), its subject
        /// is one line of at most 200 characters, and no value opens a tag in the HTML part.
        #[test]
        fn any_event_makes_a_mail_with_a_one_line_subject(
            summary in "\\PC{0,400}|[<>&\r\n a-z]{0,80}",
            labels in proptest::collection::btree_map("[a-z_]{1,20}", "\\PC{0,100}|<[a-z]{1,8}>", 0..10),
        ) {
            let mut e = event(Status::Firing);
            e.summary = summary;
            e.labels.extend(labels);
            let s = subject(&e);
            proptest::prop_assert!(!s.contains(['\r', '\n']));
            proptest::prop_assert!(s.chars().count() <= SUBJECT_MAX);
            let html = html_body(&e);
            let tags: Vec<&str> = html.match_indices('<').map(|(i, _)| {
                let rest = &html[i + 1..];
                &rest[..rest.find(['>', ' ']).unwrap_or(rest.len())]
            }).collect();
            for t in tags {
                proptest::prop_assert!(
                    ["!DOCTYPE", "html", "body", "h2", "/h2", "table", "/table", "tr", "/tr", "th", "/th",
                     "td", "/td", "h3", "/h3", "ul", "/ul", "li", "/li", "code", "/code", "a", "/a",
                     "/body", "/html"].contains(&t),
                    "unexpected tag <{}", t
                );
            }
            let mail = mailer().message(&e);
            proptest::prop_assert!(mail.is_ok(), "{:?}", mail.err());
        }
    }

    fn mailer() -> Email {
        let (s, errors) = check(
            "smtp: \"127.0.0.1:25\"\ntls: none\nfrom: a@example.test\nto: [b@example.test]\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        Email::build("mail", &s.unwrap()).unwrap()
    }
}
