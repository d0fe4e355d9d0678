//! Receivers: one file per kind. A kind's file holds everything about it: its YAML definition
//! (`…Def`, whose doc comments become the schema's descriptions), its validation into settings
//! (errors located through the shared [`Ctx`]), and its [`Notifier`] — how a batch of
//! [`AlertEvent`]s becomes an HTTP request, and what the answer means (or, for a receiver that
//! does not speak HTTP — email — how it delivers the batch itself: [`Notifier::deliver`]).
//! [`ReceiverKind`] ties them together; `register!` at the bottom of the definitions lists every
//! kind, one line each.
//! Sending, retrying and ordering belong to the outbox; a notifier only builds requests and
//! judges answers.
//!
//! Secrets (PagerDuty routing keys, Opsgenie API keys, Slack webhook URLs, webhook HMAC secrets,
//! header values) are rendered into the [`Outgoing`] request only (an SMTP password into the
//! email transport's credentials only); `Outgoing` has a redacting `Debug`, and every message a
//! notifier returns is built from statuses and names, never from a URL or a body it sent. A receiver's answer may echo what it got: it is redacted against the
//! receiver's secrets (every encoding) before it is judged, and only a 512-byte excerpt is kept.

pub mod alertmanager;
pub mod email;
pub mod opsgenie;
pub mod pagerduty;
pub mod slack;
pub mod webhook;

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use schemars::{JsonSchema, Schema};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::alert::AlertEvent;
use crate::config::ctx::{valid_name, Ctx};
use crate::config::limits;
use crate::config::schema::{self, add_rules, exactly_one, Text};
use crate::config::template::Template;
use crate::redact::Redactor;

// ----- Definition and validation ---------------------------------------------------------------

/// One kind of receiver: implemented by the kind's notifier in its own file, registered once in
/// `register!` below (the registration's key is the YAML key).
pub trait ReceiverKind: Notifier + Sized + 'static {
    /// The definition as written under the kind's key: `deny_unknown_fields`, doc comments
    /// (the schema's descriptions), `Spanned` where validation points.
    type Def: DeserializeOwned + JsonSchema + fmt::Debug;
    /// The validated definition. Secrets stay templates until [`ReceiverKind::build`]: the
    /// daemon renders them when it (re)loads.
    type Settings: fmt::Debug + Send + Sync + 'static;

    /// Validates a definition, reporting every error into `ctx` under `key`
    /// (`receivers[0].pagerduty`); `None` when there were any.
    fn validate(ctx: &mut Ctx, def: &Self::Def, key: &str) -> Option<Self::Settings>;

    /// The notifier of the receiver `name` (renders its secrets).
    fn build(name: &str, settings: &Self::Settings) -> Result<Self, String>;

    /// The templates that may hold secrets, which answers are redacted against.
    fn secrets(_settings: &Self::Settings) -> Vec<&Template> {
        Vec::new()
    }
}

/// A validated receiver: its name (what routes refer to) and its kind's settings.
#[derive(Debug)]
pub struct Receiver {
    /// Name used by routes.
    pub name: String,
    settings: Box<dyn AnySettings>,
}

impl Receiver {
    /// A receiver of kind `K`.
    pub fn new<K: ReceiverKind>(name: impl Into<String>, settings: K::Settings) -> Receiver {
        Receiver {
            name: name.into(),
            settings: Box::new(SettingsOf::<K>(settings)),
        }
    }
}

/// Settings of any kind, with what the rest of canaryd needs of them.
trait AnySettings: fmt::Debug + Send + Sync {
    fn build(&self, name: &str) -> Result<Arc<dyn Notifier>, String>;
    fn secrets(&self) -> Vec<&Template>;
}

struct SettingsOf<K: ReceiverKind>(K::Settings);

impl<K: ReceiverKind> fmt::Debug for SettingsOf<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<K: ReceiverKind> AnySettings for SettingsOf<K> {
    fn build(&self, name: &str) -> Result<Arc<dyn Notifier>, String> {
        Ok(Arc::new(K::build(name, &self.0)?))
    }

    fn secrets(&self) -> Vec<&Template> {
        K::secrets(&self.0)
    }
}

/// Generates `ReceiverDef` (a name and one optional key per kind) and the dispatch to each
/// kind's validation from the list of kinds.
macro_rules! register {
    ($($(#[$doc:meta])* $key:ident: $kind:ty),* $(,)?) => {
        /// A receiver: a name and exactly one kind.
        #[derive(Debug, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        #[schemars(transform = receiver_rules)]
        pub struct ReceiverDef {
            /// Referenced by routes.
            #[schemars(with = "Text", extend("pattern" = schema::NAME, "maxLength" = 128, "patternErrorMessage" = "lowercase letters, digits, - and _, starting with a letter or digit"))]
            pub name: Spanned<String>,
            $(
                $(#[$doc])*
                pub $key: Option<<$kind as ReceiverKind>::Def>,
            )*
        }

        /// Every kind's key, in registration order.
        pub const KEYS: &[&str] = &[$(stringify!($key)),*];

        impl ReceiverDef {
            /// How many kinds are written.
            fn kinds_written(&self) -> usize {
                0 $(+ usize::from(self.$key.is_some()))*
            }

            /// Validates the first kind written under `key` (`receivers[0]`).
            fn validate_kind(&self, ctx: &mut Ctx, key: &str) -> Option<Box<dyn AnySettings>> {
                $(
                    if let Some(def) = &self.$key {
                        let key = format!("{key}.{}", stringify!($key));
                        let settings = <$kind as ReceiverKind>::validate(ctx, def, &key)?;
                        return Some(Box::new(SettingsOf::<$kind>(settings)));
                    }
                )*
                None
            }
        }
    };
}

register! {
    /// PagerDuty Events v2.
    pagerduty: pagerduty::PagerDuty,
    /// Alertmanager v2 API.
    alertmanager: alertmanager::Alertmanager,
    /// Slack incoming webhook.
    slack: slack::Slack,
    /// Generic JSON webhook.
    webhook: webhook::Webhook,
    /// Opsgenie Alert API.
    opsgenie: opsgenie::Opsgenie,
    /// Email over SMTP.
    email: email::Email,
}

/// "a receiver has exactly one kind: pagerduty, alertmanager, slack, webhook, opsgenie or email"
fn exactly_one_kind() -> String {
    let (last, rest) = KEYS.split_last().unwrap_or((&"", &[]));
    if rest.is_empty() {
        return format!("a receiver has exactly one kind: {last}");
    }
    format!(
        "a receiver has exactly one kind: {} or {last}",
        rest.join(", ")
    )
}

/// The schema of a receiver: exactly one kind.
fn receiver_rules(schema: &mut Schema) {
    add_rules(schema, [exactly_one(KEYS, &exactly_one_kind())]);
}

/// Validates `receivers:` (names valid and unique, at most [`limits::MAX_RECEIVERS`], exactly
/// one kind each, each kind's keys by the kind itself). Receivers with errors are left out.
pub fn validate(ctx: &mut Ctx, defs: &[ReceiverDef]) -> Vec<Receiver> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    if let Some(first) = defs.first() {
        if !ctx.count(
            defs.len(),
            limits::MAX_RECEIVERS,
            &first.name.referenced,
            "receivers",
            "receivers",
        ) {
            return out;
        }
    }
    for (i, r) in defs.iter().enumerate() {
        let key = format!("receivers[{i}]");
        if !valid_name(&r.name.value) {
            ctx.err(
                &r.name.referenced,
                format!("{key}.name"),
                format!("invalid receiver name {:?}", r.name.value),
            );
        } else if !names.insert(r.name.value.clone()) {
            ctx.err(
                &r.name.referenced,
                format!("{key}.name"),
                format!("duplicate receiver name {:?}", r.name.value),
            );
        }
        if r.kinds_written() != 1 {
            ctx.err(&r.name.referenced, &key, exactly_one_kind());
            continue;
        }
        if let Some(settings) = r.validate_kind(ctx, &key) {
            out.push(Receiver {
                name: r.name.value.clone(),
                settings,
            });
        }
    }
    out
}

// ----- Notifiers -------------------------------------------------------------------------------

/// One HTTP request to send. Holds secrets: never log it (its `Debug` shows only the method).
pub struct Outgoing {
    /// Always POST for the receivers we have; kept for clarity.
    pub method: http::Method,
    /// The target; may carry a secret (Slack's webhook URL).
    pub url: url::Url,
    /// Headers, `content-type` included.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// The body; may carry a secret (PagerDuty's routing key).
    pub body: Vec<u8>,
}

impl fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Outgoing({} <redacted>)", self.method)
    }
}

/// What an answer means for the batch that was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted: remove it from the outbox.
    Accepted,
    /// Try again later (network error, 429, 5xx); `after` is the receiver's own `Retry-After`.
    Retry {
        /// Wait at least this long, when the receiver said so.
        after: Option<Duration>,
        /// Why, for logs and errors (status and a short reason; never a URL or a secret).
        reason: String,
    },
    /// Refused for good (a 4xx other than 429): drop it and count it.
    Rejected {
        /// Why (status and, when the receiver says so, its message, secrets removed).
        reason: String,
    },
}

/// A delivery a notifier makes itself (see [`Notifier::deliver`]): resolves to its verdict.
pub type Delivery<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Verdict> + Send + 'a>>;

/// A receiver kind: builds requests, judges answers.
pub trait Notifier: Send + Sync + fmt::Debug {
    /// The receiver's configured name.
    fn name(&self) -> &str;

    /// The kind (`pagerduty`, `alertmanager`, `slack`, `webhook`, `opsgenie`, `email`), for logs.
    fn kind(&self) -> &'static str;

    /// How many events one request may carry (PagerDuty: 1; the others group).
    fn max_batch(&self) -> usize;

    /// How often a firing alert must be re-sent so the receiver keeps it (Alertmanager expires
    /// alerts whose `endsAt` lease passes); `None` when the receiver keeps alerts until resolved.
    fn refresh_interval(&self) -> Option<Duration> {
        None
    }

    /// Delivers a batch itself: a receiver that does not speak HTTP (email over SMTP), or one
    /// that sends a batch to several places (every member of an Alertmanager cluster, through
    /// `http`, the outbox's notification client). `None`, the default, means: the outbox sends
    /// [`Notifier::request`] over HTTP and judges the answer with [`Notifier::judge`].
    fn deliver<'a>(
        &'a self,
        _batch: &'a [AlertEvent],
        _now: SystemTime,
        _http: &'a reqwest::Client,
    ) -> Option<Delivery<'a>> {
        None
    }

    /// The request for a batch (1..=max_batch events, oldest first). `now` stamps leases.
    fn request(&self, batch: &[AlertEvent], now: SystemTime) -> Result<Outgoing, String>;

    /// What the answer means. The default: 2xx accepted; 429 and 5xx retried (429 honouring
    /// `Retry-After` in seconds or as an HTTP date); 408 retried; other statuses rejected.
    fn judge(&self, status: u16, headers: &http::HeaderMap, body: &[u8]) -> Verdict {
        judge_http(status, headers, body)
    }
}

/// The common judgement of an HTTP answer (see [`Notifier::judge`]).
pub fn judge_http(status: u16, headers: &http::HeaderMap, body: &[u8]) -> Verdict {
    match status {
        200..=299 => Verdict::Accepted,
        429 => Verdict::Retry {
            after: retry_after(headers, SystemTime::now()),
            reason: "429 Too Many Requests".into(),
        },
        408 | 500..=599 => Verdict::Retry {
            after: retry_after(headers, SystemTime::now()),
            reason: format!("HTTP {status}"),
        },
        _ => Verdict::Rejected {
            reason: format!("HTTP {status}{}", short_body(body)),
        },
    }
}

/// `Retry-After` as seconds or an HTTP date, capped at one hour.
pub fn retry_after(headers: &http::HeaderMap, now: SystemTime) -> Option<Duration> {
    let v = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let d = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let t = httpdate_parse(v)?;
        t.duration_since(now).unwrap_or_default()
    };
    Some(d.min(Duration::from_secs(3600)))
}

fn httpdate_parse(s: &str) -> Option<SystemTime> {
    // IMF-fixdate, the form servers send: "Sun, 06 Nov 1994 08:49:37 GMT".
    let t = chrono::DateTime::parse_from_rfc2822(s).ok()?;
    let secs = u64::try_from(t.timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Bytes of a receiver's error answer kept in a rejection message.
pub const ANSWER_EXCERPT_BYTES: usize = 512;

/// `: <the body's first printable characters, at most 512 bytes>` for rejection messages.
/// Receivers may echo what they were sent (a header, the URL, the payload): [`build`] wraps
/// every notifier so the body is redacted against the receiver's secrets before this runs.
pub fn short_body(body: &[u8]) -> String {
    let mut text = String::new();
    for c in String::from_utf8_lossy(body)
        .chars()
        .filter(|c| !c.is_control())
    {
        if text.len() + c.len_utf8() > ANSWER_EXCERPT_BYTES {
            break;
        }
        text.push(c);
    }
    if text.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", text.trim())
    }
}

/// Builds the notifier of a configured receiver (rendering its secrets). Its answers are judged
/// with every secret of the receiver, in every encoding, removed from the body first.
pub fn build(receiver: &Receiver) -> Result<Arc<dyn Notifier>, String> {
    let inner = receiver.settings.build(&receiver.name)?;
    let secrets = receiver_secrets(receiver);
    if secrets.is_empty() {
        return Ok(inner);
    }
    Ok(Arc::new(Redacting {
        inner,
        secrets,
        redactor: std::sync::OnceLock::new(),
    }))
}

/// Every secret value of a receiver, and the parts of a secret URL a receiver may echo alone
/// (its path, each path segment, query values, password).
fn receiver_secrets(receiver: &Receiver) -> Vec<String> {
    let mut out = Vec::new();
    for t in receiver.settings.secrets() {
        for s in t.secrets() {
            let v = s.expose();
            out.push(v.to_string());
            if let Ok(u) = url::Url::parse(v.trim()) {
                out.extend(u.password().map(str::to_string));
                if u.path().len() > 1 {
                    out.push(u.path().to_string());
                }
                out.extend(u.path_segments().into_iter().flatten().map(str::to_string));
                out.extend(u.query_pairs().map(|(_, v)| v.into_owned()));
            }
        }
    }
    out
}

/// A notifier whose answers are redacted before they are judged (the judgement's reason is
/// logged and may quote the answer).
struct Redacting {
    inner: Arc<dyn Notifier>,
    secrets: Vec<String>,
    /// Built at the first answer (most receivers never answer with an error).
    redactor: std::sync::OnceLock<Redactor>,
}

impl fmt::Debug for Redacting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl Notifier for Redacting {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn max_batch(&self) -> usize {
        self.inner.max_batch()
    }

    fn refresh_interval(&self) -> Option<Duration> {
        self.inner.refresh_interval()
    }

    fn deliver<'a>(
        &'a self,
        batch: &'a [AlertEvent],
        now: SystemTime,
        http: &'a reqwest::Client,
    ) -> Option<Delivery<'a>> {
        let delivery = self.inner.deliver(batch, now, http)?;
        Some(Box::pin(async move {
            let verdict = delivery.await;
            let redactor = self.redactor.get_or_init(|| Redactor::new(&self.secrets));
            redact_verdict(redactor, verdict)
        }))
    }

    fn request(&self, batch: &[AlertEvent], now: SystemTime) -> Result<Outgoing, String> {
        self.inner.request(batch, now)
    }

    fn judge(&self, status: u16, headers: &http::HeaderMap, body: &[u8]) -> Verdict {
        // The whole (capped) body first, so an excerpt never starts or ends inside a secret.
        let redactor = self.redactor.get_or_init(|| Redactor::new(&self.secrets));
        let body = redactor.apply_bytes(body);
        redact_verdict(redactor, self.inner.judge(status, headers, &body))
    }
}

/// A verdict whose reason quotes no secret.
fn redact_verdict(redactor: &Redactor, verdict: Verdict) -> Verdict {
    match verdict {
        Verdict::Retry { after, reason } => Verdict::Retry {
            after,
            reason: redactor.apply(&reason),
        },
        Verdict::Rejected { reason } => Verdict::Rejected {
            reason: redactor.apply(&reason),
        },
        Verdict::Accepted => Verdict::Accepted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::tests_support::validated;

    fn receivers(yaml: &str) -> (Vec<Receiver>, Vec<String>) {
        validated(yaml, |ctx, defs: &Vec<ReceiverDef>| validate(ctx, defs))
    }

    #[test]
    fn names_are_valid_and_unique_and_each_receiver_has_exactly_one_kind() {
        let (_, errors) = receivers(
            r#"
- name: chat
  slack: {webhook_url: "http://127.0.0.1:9/hook"}
- name: chat
  alertmanager: {url: "http://127.0.0.1:9093"}
- name: Pager
  webhook: {url: "http://127.0.0.1:9/"}
- name: both
  slack: {webhook_url: "http://127.0.0.1:9/hook"}
  webhook: {url: "http://127.0.0.1:9/"}
- name: none
"#,
        );
        let one = "a receiver has exactly one kind: pagerduty, alertmanager, slack, webhook, opsgenie or email";
        assert_eq!(
            errors,
            [
                "4:9: receivers[1].name: duplicate receiver name \"chat\"".to_string(),
                "6:9: receivers[2].name: invalid receiver name \"Pager\"".to_string(),
                format!("8:9: receivers[3]: {one}"),
                format!("11:9: receivers[4]: {one}"),
            ]
        );
    }

    #[test]
    fn at_most_100_receivers() {
        let yaml: String = (0..=limits::MAX_RECEIVERS)
            .map(|i| {
                format!("- {{name: r{i}, alertmanager: {{url: \"http://127.0.0.1:9093\"}}}}\n")
            })
            .collect();
        let (out, errors) = receivers(&yaml);
        assert!(out.is_empty());
        assert_eq!(
            errors,
            ["1:10: receivers: 101 receivers: at most 100 are allowed"]
        );
        let (out, errors) = receivers(yaml.split_once('\n').unwrap().1);
        assert_eq!((out.len(), errors.len()), (100, 0), "{errors:?}");
    }

    #[test]
    fn every_registered_key_builds_a_notifier_of_that_kind() {
        let (out, errors) = receivers(
            r#"
- {name: a, pagerduty: {routing_key: k3y}}
- {name: b, alertmanager: {url: "http://127.0.0.1:9093"}}
- {name: c, slack: {webhook_url: "http://127.0.0.1:9/hook"}}
- {name: d, webhook: {url: "http://127.0.0.1:9/"}}
- {name: e, opsgenie: {api_key: k3y}}
- {name: f, email: {smtp: "127.0.0.1:25", tls: none, from: "canaryd@example.test", to: ["oncall@example.test"]}}
"#,
        );
        assert!(errors.is_empty(), "{errors:?}");
        let kinds: Vec<&str> = out.iter().map(|r| build(r).unwrap().kind()).collect();
        assert_eq!(kinds, KEYS);
        assert_eq!(
            out.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c", "d", "e", "f"]
        );
    }

    #[test]
    fn a_rejection_never_quotes_a_secret_the_receiver_echoed() {
        let secret = "hdr-s3cr\"et\\ #&=+/ é";
        std::env::set_var("CANARYD_RECEIVER_TEST_SECRET", secret);
        std::env::set_var(
            "CANARYD_RECEIVER_TEST_URL",
            "https://hooks.example.test/services/T0001/B0002/urltoken-XYZ",
        );
        let dir = std::path::Path::new(".");
        let n = build(&Receiver::new::<webhook::Webhook>(
            "hook",
            webhook::WebhookSettings {
                url: Template::parse("${env:CANARYD_RECEIVER_TEST_URL}", dir).unwrap(),
                secret: None,
                headers: vec![(
                    "x-api-key".into(),
                    Template::parse("k ${env:CANARYD_RECEIVER_TEST_SECRET}", dir).unwrap(),
                )],
            },
        ))
        .unwrap();
        let json = serde_json::to_string(secret).unwrap();
        let body = format!(
            "{{\"error\":\"bad key {json}\",\"pct\":\"{}\",\"path\":\"urltoken-XYZ\"}}{}",
            crate::redact::percent_strict(secret),
            "x".repeat(5000)
        );
        let Verdict::Rejected { reason } = n.judge(400, &http::HeaderMap::new(), body.as_bytes())
        else {
            panic!("a 400 is a rejection");
        };
        assert!(
            reason.starts_with("HTTP 400: {\"error\":\"bad key"),
            "{reason}"
        );
        assert!(reason.contains("<redacted>"), "{reason}");
        for leak in [&json[1..json.len() - 1], secret, "urltoken-XYZ", "s3cr"] {
            assert!(!reason.contains(leak), "{leak:?} in {reason}");
        }
        assert!(
            reason.len() <= "HTTP 400: ".len() + ANSWER_EXCERPT_BYTES,
            "{}",
            reason.len()
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates_and_caps() {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(
            retry_after(&h, SystemTime::now()),
            Some(Duration::from_secs(7))
        );
        h.insert(http::header::RETRY_AFTER, "999999".parse().unwrap());
        assert_eq!(
            retry_after(&h, SystemTime::now()),
            Some(Duration::from_secs(3600))
        );
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784111777);
        h.insert(
            http::header::RETRY_AFTER,
            "Sun, 06 Nov 1994 08:49:47 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(10)));
        h.insert(http::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn statuses_are_judged() {
        let h = http::HeaderMap::new();
        assert_eq!(judge_http(202, &h, b""), Verdict::Accepted);
        assert!(matches!(judge_http(429, &h, b""), Verdict::Retry { .. }));
        assert!(matches!(judge_http(503, &h, b""), Verdict::Retry { .. }));
        assert_eq!(
            judge_http(400, &h, b"{\"status\":\"invalid event\"}\n"),
            Verdict::Rejected {
                reason: "HTTP 400: {\"status\":\"invalid event\"}".into()
            }
        );
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use std::collections::BTreeMap;

    use crate::alert::{AlertEvent, EventKind, Status};

    /// A LoginFailing event on shop-login, failed at step "submit".
    pub fn event(status: Status) -> AlertEvent {
        let labels: BTreeMap<String, String> = [
            ("alertname", "LoginFailing"),
            ("check", "shop-login"),
            ("severity", "critical"),
            ("team", "web"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        AlertEvent {
            dedup_key: crate::alert::dedup_key("shop-login", "LoginFailing", &labels),
            kind: match status {
                Status::Firing => EventKind::Trigger,
                Status::Resolved => EventKind::Resolve,
            },
            status,
            check: "shop-login".into(),
            alert: "LoginFailing".into(),
            severity: "critical".into(),
            labels,
            annotations: BTreeMap::new(),
            summary: "Login broken at step submit: expected status 302, got 200".into(),
            reason: Some("status".into()),
            failed_step: Some("submit".into()),
            value: None,
            values: BTreeMap::new(),
            message: Some("step \"submit\": expected status 302, got 200".into()),
            dependants_failing: Vec::new(),
            starts_at_ms: 1_800_000_000_000,
            ends_at_ms: None,
            created_ms: 1_800_000_000_000,
            generator_url: "http://127.0.0.1:9464/api/v1/checks/shop-login".into(),
        }
    }
}
