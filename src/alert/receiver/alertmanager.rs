//! Alertmanager API v2 (`POST <url>/api/v2/alerts`): a JSON array of alerts. Alertmanager
//! resolves an alert by itself once its `endsAt` passes, so a firing alert is sent with a lease
//! (`endsAt` = now + [`LEASE`]) and re-sent every [`REFRESH`] while it fires — as Prometheus
//! does; if canaryd dies, its alerts resolve when their lease runs out. A resolved alert is
//! sent with `endsAt` = when it resolved.
//!
//! An Alertmanager cluster (`urls`, up to [`MAX_ALERTMANAGER_URLS`] members) gets every batch at
//! every member, concurrently, as Prometheus sends it: members gossip silences and the
//! notification log, never alerts, so a member that was not told would not know. Two canaryd
//! replicas sending to every member of one cluster then page once: each member holds the alert,
//! and the notification log lets only one of them notify. A batch is accepted when at least one
//! member accepted it (a member that missed it is logged with its URL and reason; it gets a firing
//! alert again with the next lease refresh, within [`REFRESH`], and lets a missed resolve happen
//! by itself when the lease it holds ends, within [`LEASE`]); it is retried when no member
//! accepted and any answer is worth a retry; it is rejected only when every member rejected it.
//! With one URL the outbox sends the request itself, like any HTTP receiver.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::Deserialize;
use serde_json::{json, Value};
use serde_saphyr::Spanned;
use url::Url;

use super::{Delivery, Notifier, Outgoing, ReceiverKind, Verdict};
use crate::alert::outbox;
use crate::alert::{rfc3339, AlertEvent, Status};
use crate::config::ctx::{parse_url, Ctx};
use crate::config::limits::MAX_ALERTMANAGER_URLS;
use crate::config::schema::{self, add_rules, exactly_one};

/// Alertmanager receiver as written under `alertmanager:`, with where it was written (an error
/// about which keys are set points there). Its schema is [`AlertmanagerDef`]'s.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct AlertmanagerAt(pub Spanned<AlertmanagerDef>);

impl JsonSchema for AlertmanagerAt {
    fn schema_name() -> Cow<'static, str> {
        AlertmanagerDef::schema_name()
    }
    fn schema_id() -> Cow<'static, str> {
        AlertmanagerDef::schema_id()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        AlertmanagerDef::json_schema(generator)
    }
}

/// Alertmanager receiver: `url` (one Alertmanager) or `urls` (every member of a cluster).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = alertmanager_rules)]
pub struct AlertmanagerDef {
    /// Base URL of one Alertmanager.
    #[schemars(with = "Option<String>", extend("pattern" = schema::HTTP_URL, "patternErrorMessage" = "an http(s) URL"))]
    pub url: Option<Spanned<String>>,
    /// Base URLs of every member of an Alertmanager cluster (1 to 8, each once): every alert
    /// goes to each member.
    #[schemars(with = "Option<Vec<BaseUrl>>", extend("minItems" = 1, "maxItems" = MAX_ALERTMANAGER_URLS, "uniqueItems" = true))]
    pub urls: Option<Spanned<Vec<Spanned<String>>>>,
}

/// An http(s) base URL, for the schema of `urls`' items.
pub struct BaseUrl;

impl JsonSchema for BaseUrl {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "BaseUrl".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": schema::HTTP_URL,
            "patternErrorMessage": "an http(s) URL",
        })
    }
}

const ONE_OF_URL_URLS: &str =
    "an alertmanager receiver has exactly one of url (one Alertmanager) and urls (the members of a cluster)";

fn alertmanager_rules(schema: &mut Schema) {
    add_rules(schema, [exactly_one(&["url", "urls"], ONE_OF_URL_URLS)]);
}

/// An Alertmanager receiver, validated.
#[derive(Debug)]
pub struct AlertmanagerSettings {
    /// Base URL of each member (one without a cluster), in the order written.
    pub urls: Vec<Url>,
}

/// How often a firing alert is re-sent.
pub const REFRESH: Duration = Duration::from_secs(60);
/// How long Alertmanager keeps a firing alert without news (4 refreshes, like Prometheus).
pub const LEASE: Duration = Duration::from_secs(240);

/// An Alertmanager receiver.
#[derive(Debug)]
pub struct Alertmanager {
    name: String,
    /// The alerts API URL of each member.
    members: Vec<Url>,
}

/// `<base>/api/v2/alerts`.
fn api_url(base: &Url) -> Url {
    let mut url = base.clone();
    let path = format!("{}/api/v2/alerts", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url
}

/// A member's URL as logs show it: without user name or password.
fn shown(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_password(None);
    let _ = url.set_username("");
    url.to_string()
}

/// `urls`: 1..=[`MAX_ALERTMANAGER_URLS`] http(s) URLs, no Alertmanager twice (compared as parsed:
/// `http://AM:9093/` is `http://am:9093`).
fn members(ctx: &mut Ctx, urls: &Spanned<Vec<Spanned<String>>>, key: &str) -> Option<Vec<Url>> {
    if urls.value.is_empty() {
        ctx.err(
            &urls.referenced,
            key,
            "at least one Alertmanager URL is needed",
        );
        return None;
    }
    if !ctx.count(
        urls.value.len(),
        MAX_ALERTMANAGER_URLS,
        &urls.referenced,
        key,
        "Alertmanager URLs",
    ) {
        return None;
    }
    let mut ok = true;
    let mut seen: Vec<(usize, Url)> = Vec::new();
    for (i, s) in urls.value.iter().enumerate() {
        let k = format!("{key}[{i}]");
        let Some(url) = parse_url(ctx, s, &k) else {
            ok = false;
            continue;
        };
        let api = api_url(&url);
        if let Some((j, _)) = seen.iter().find(|(_, u)| api_url(u) == api) {
            ctx.err(
                &s.referenced,
                &k,
                format!(
                    "duplicate URL {:?}: the same Alertmanager as {key}[{j}] (each member once)",
                    s.value
                ),
            );
            ok = false;
            continue;
        }
        seen.push((i, url));
    }
    ok.then(|| seen.into_iter().map(|(_, u)| u).collect())
}

impl ReceiverKind for Alertmanager {
    type Def = AlertmanagerAt;
    type Settings = AlertmanagerSettings;

    /// Exactly one of `url` and `urls`; each URL http(s) (no secrets: Alertmanager's API takes
    /// none).
    fn validate(ctx: &mut Ctx, def: &AlertmanagerAt, key: &str) -> Option<AlertmanagerSettings> {
        let keys = &def.0.value;
        let urls = match (&keys.url, &keys.urls) {
            (Some(url), None) => vec![parse_url(ctx, url, &format!("{key}.url"))?],
            (None, Some(urls)) => members(ctx, urls, &format!("{key}.urls"))?,
            (url, _) => {
                let (at, message) = match url {
                    Some(url) => (&url.referenced, format!("{ONE_OF_URL_URLS}: both are set")),
                    None => (&def.0.referenced, format!("{ONE_OF_URL_URLS}: none is set")),
                };
                ctx.err(at, key, message);
                return None;
            }
        };
        Some(AlertmanagerSettings { urls })
    }

    /// The API path appended to each base URL.
    fn build(name: &str, settings: &AlertmanagerSettings) -> Result<Alertmanager, String> {
        if settings.urls.is_empty() {
            return Err("an alertmanager receiver needs at least one URL".into());
        }
        Ok(Alertmanager {
            name: name.to_string(),
            members: settings.urls.iter().map(api_url).collect(),
        })
    }
}

/// The verdict on a batch sent to every member, from each member's (its URL as shown, its
/// verdict): accepted when any member accepted; else retried when any answer is worth a retry
/// (after the longest `Retry-After` a member asked for); else rejected.
pub fn combine(answers: &[(String, Verdict)]) -> Verdict {
    if answers.iter().any(|(_, v)| *v == Verdict::Accepted) {
        return Verdict::Accepted;
    }
    let reasons = answers
        .iter()
        .map(|(member, v)| match v {
            Verdict::Retry { reason, .. } | Verdict::Rejected { reason } => {
                format!("{member}: {reason}")
            }
            Verdict::Accepted => format!("{member}: accepted"),
        })
        .collect::<Vec<_>>()
        .join("; ");
    let retry = answers
        .iter()
        .any(|(_, v)| matches!(v, Verdict::Retry { .. }));
    if retry {
        let after = answers
            .iter()
            .filter_map(|(_, v)| match v {
                Verdict::Retry { after, .. } => *after,
                _ => None,
            })
            .max();
        Verdict::Retry {
            after,
            reason: format!("no Alertmanager member accepted: {reasons}"),
        }
    } else {
        Verdict::Rejected {
            reason: format!("every Alertmanager member rejected: {reasons}"),
        }
    }
}

impl Alertmanager {
    /// One alert of the API's `postableAlerts`.
    pub fn alert(e: &AlertEvent, now: SystemTime) -> Value {
        let ends = match (e.status, e.ends_at()) {
            (Status::Resolved, Some(t)) => t,
            (Status::Resolved, None) => now,
            (Status::Firing, _) => now + LEASE,
        };
        let mut annotations = e.annotations.clone();
        annotations
            .entry("summary".into())
            .or_insert_with(|| e.summary.clone());
        // Annotations are strings: `values` is the `name=value` list (`depth=7 processed_rate=0`).
        for (k, v) in [
            ("message", &e.message),
            ("reason", &e.reason),
            ("failed_step", &e.failed_step),
            ("value", &e.value),
            ("values", &e.value),
        ] {
            if let Some(v) = v {
                annotations.entry(k.into()).or_insert_with(|| v.clone());
            }
        }
        if let Some(d) = e.dependants() {
            annotations.entry("dependants_failing".into()).or_insert(d);
        }
        annotations
            .entry("check_url".into())
            .or_insert_with(|| e.check_url().to_string());
        json!({
            "labels": e.labels,
            "annotations": annotations,
            "startsAt": rfc3339(e.starts_at()),
            "endsAt": rfc3339(ends),
            "generatorURL": e.generator_url,
        })
    }
}

impl Notifier for Alertmanager {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "alertmanager"
    }

    fn max_batch(&self) -> usize {
        100
    }

    fn refresh_interval(&self) -> Option<Duration> {
        Some(REFRESH)
    }

    /// Every member at once when there are several (see the module docs); `None` with one, so
    /// the outbox sends [`Notifier::request`] itself.
    fn deliver<'a>(
        &'a self,
        batch: &'a [AlertEvent],
        now: SystemTime,
        http: &'a reqwest::Client,
    ) -> Option<Delivery<'a>> {
        if self.members.len() < 2 {
            return None;
        }
        Some(Box::pin(self.to_every_member(batch, now, http)))
    }

    /// The request to the first (with `url`, the only) member.
    fn request(&self, batch: &[AlertEvent], now: SystemTime) -> Result<Outgoing, String> {
        Ok(Alertmanager::post(
            self.members[0].clone(),
            Alertmanager::body(batch, now)?,
        ))
    }
}

impl Alertmanager {
    /// The alerts of a batch as the API's `postableAlerts` array.
    fn body(batch: &[AlertEvent], now: SystemTime) -> Result<Vec<u8>, String> {
        let alerts: Vec<Value> = batch.iter().map(|e| Alertmanager::alert(e, now)).collect();
        serde_json::to_vec(&alerts).map_err(|e| e.to_string())
    }

    fn post(url: Url, body: Vec<u8>) -> Outgoing {
        Outgoing {
            method: http::Method::POST,
            url,
            headers: vec![(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            )],
            body,
        }
    }

    /// Sends the same body to every member concurrently, logs each member that did not take it,
    /// and judges the batch by [`combine`].
    async fn to_every_member(
        &self,
        batch: &[AlertEvent],
        now: SystemTime,
        http: &reqwest::Client,
    ) -> Verdict {
        let body = match Alertmanager::body(batch, now) {
            Ok(b) => b,
            Err(e) => {
                return Verdict::Rejected {
                    reason: format!("cannot build the request: {e}"),
                }
            }
        };
        let mut sends = tokio::task::JoinSet::new();
        for (i, url) in self.members.iter().enumerate() {
            let req = Alertmanager::post(url.clone(), body.clone());
            let http = http.clone();
            sends.spawn(async move { (i, outbox::exchange(&http, req).await) });
        }
        let mut verdicts: Vec<Option<Verdict>> = vec![None; self.members.len()];
        while let Some(joined) = sends.join_next().await {
            // A send that panicked leaves its member without a verdict: judged a retry below.
            if let Ok((i, answer)) = joined {
                verdicts[i] = Some(match answer {
                    Err(reason) => Verdict::Retry {
                        after: None,
                        reason,
                    },
                    Ok(a) => self.judge(a.status, &a.headers, &a.body),
                });
            }
        }
        let answers: Vec<(String, Verdict)> = self
            .members
            .iter()
            .zip(verdicts)
            .map(|(url, v)| {
                let v = v.unwrap_or_else(|| Verdict::Retry {
                    after: None,
                    reason: "the request failed inside canaryd".into(),
                });
                (shown(url), v)
            })
            .collect();
        let verdict = combine(&answers);
        for (member, v) in &answers {
            let reason = match v {
                Verdict::Accepted => continue,
                Verdict::Retry { reason, .. } | Verdict::Rejected { reason } => reason,
            };
            if verdict == Verdict::Accepted {
                tracing::warn!(
                    receiver = %self.name,
                    member = %member,
                    events = batch.len(),
                    "an Alertmanager member did not take the notification (another did; a firing alert reaches it with the next refresh, a resolve when its lease ends): {reason}"
                );
            } else {
                tracing::warn!(
                    receiver = %self.name,
                    member = %member,
                    events = batch.len(),
                    "an Alertmanager member did not take the notification: {reason}"
                );
            }
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::receiver::tests_support::event;
    use crate::alert::tests_support::validated;

    #[test]
    fn the_url_must_be_http() {
        let (settings, errors) =
            validated("url: \"127.0.0.1:9093\"\n", |ctx, def: &AlertmanagerAt| {
                Alertmanager::validate(ctx, def, "receivers[0].alertmanager")
            });
        assert!(settings.is_none());
        assert_eq!(
            errors,
            ["1:6: receivers[0].alertmanager.url: invalid URL \"127.0.0.1:9093\": relative URL without a base"]
        );
    }

    #[test]
    fn firing_gets_a_lease_and_resolved_its_end() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let f = Alertmanager::alert(&event(Status::Firing), now);
        assert_eq!(f["endsAt"], rfc3339(now + LEASE));
        assert_eq!(f["labels"]["alertname"], "LoginFailing");
        assert_eq!(f["annotations"]["failed_step"], "submit");
        assert_eq!(
            f["annotations"]["message"],
            "step \"submit\": expected status 302, got 200"
        );
        assert_eq!(
            f["generatorURL"],
            "http://127.0.0.1:9464/api/v1/checks/shop-login"
        );
        let mut values = event(Status::Firing);
        values.value = Some("depth=7 processed_rate=0".into());
        let v = Alertmanager::alert(&values, now);
        assert_eq!(v["annotations"]["values"], "depth=7 processed_rate=0");
        let mut r = event(Status::Resolved);
        r.ends_at_ms = Some(crate::alert::to_ms(now));
        assert_eq!(Alertmanager::alert(&r, now)["endsAt"], rfc3339(now));
    }

    #[test]
    fn url_gets_the_api_path() {
        let a = Alertmanager::build(
            "am",
            &AlertmanagerSettings {
                urls: vec![
                    "http://127.0.0.1:9093/am/".parse().unwrap(),
                    "https://am-2.example:9093".parse().unwrap(),
                ],
            },
        )
        .unwrap();
        let members: Vec<&str> = a.members.iter().map(Url::as_str).collect();
        assert_eq!(
            members,
            [
                "http://127.0.0.1:9093/am/api/v2/alerts",
                "https://am-2.example:9093/api/v2/alerts"
            ]
        );
    }

    fn check(yaml: &str) -> (Option<AlertmanagerSettings>, Vec<String>) {
        validated(yaml, |ctx, def: &AlertmanagerAt| {
            Alertmanager::validate(ctx, def, "receivers[0].alertmanager")
        })
    }

    #[test]
    fn urls_lists_the_members_of_a_cluster() {
        let (settings, errors) =
            check("urls: [\"http://am-1:9093\", \"https://am-2:9093/prefix\"]\n");
        assert!(errors.is_empty(), "{errors:?}");
        let urls: Vec<String> = settings.unwrap().urls.iter().map(Url::to_string).collect();
        assert_eq!(urls, ["http://am-1:9093/", "https://am-2:9093/prefix"]);
        let (settings, errors) = check("url: http://am-1:9093\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(settings.unwrap().urls.len(), 1);
    }

    #[test]
    fn exactly_one_of_url_and_urls() {
        let (settings, errors) = check("url: http://a:9093\nurls: [\"http://b:9093\"]\n");
        assert!(settings.is_none());
        assert_eq!(
            errors,
            [format!(
                "1:6: receivers[0].alertmanager: {ONE_OF_URL_URLS}: both are set"
            )]
        );
        let (settings, errors) = check("{}\n");
        assert!(settings.is_none());
        assert_eq!(
            errors,
            [format!(
                "1:1: receivers[0].alertmanager: {ONE_OF_URL_URLS}: none is set"
            )]
        );
    }

    #[test]
    fn urls_are_valid_distinct_and_at_most_8() {
        let (settings, errors) = check(
            "urls:\n  - http://AM-1:9093/\n  - \"am-2:9093\"\n  - ftp://am-3\n  - http://am-1:9093\n",
        );
        assert!(settings.is_none());
        assert_eq!(
            errors,
            [
                "3:5: receivers[0].alertmanager.urls[1]: unsupported URL \"am-2:9093\": only http and https",
                "4:5: receivers[0].alertmanager.urls[2]: unsupported URL \"ftp://am-3\": only http and https",
                "5:5: receivers[0].alertmanager.urls[3]: duplicate URL \"http://am-1:9093\": the same Alertmanager as receivers[0].alertmanager.urls[0] (each member once)",
            ]
        );
        let (settings, errors) = check("urls: []\n");
        assert!(settings.is_none());
        assert_eq!(
            errors,
            ["1:7: receivers[0].alertmanager.urls: at least one Alertmanager URL is needed"]
        );
        let nine: Vec<String> = (1..=9).map(|i| format!("\"http://am-{i}:9093\"")).collect();
        let (settings, errors) = check(&format!("urls: [{}]\n", nine.join(", ")));
        assert!(settings.is_none());
        assert_eq!(
            errors,
            ["1:7: receivers[0].alertmanager.urls: 9 Alertmanager URLs: at most 8 are allowed"]
        );
        let (settings, errors) = check(&format!("urls: [{}]\n", nine[..8].join(", ")));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(settings.unwrap().urls.len(), 8);
    }

    fn retry(after: Option<u64>, reason: &str) -> Verdict {
        Verdict::Retry {
            after: after.map(Duration::from_secs),
            reason: reason.into(),
        }
    }

    fn rejected(reason: &str) -> Verdict {
        Verdict::Rejected {
            reason: reason.into(),
        }
    }

    #[test]
    fn one_member_accepting_is_enough_and_only_all_rejecting_drops() {
        let a = |v: Verdict| ("http://a:9093/api/v2/alerts".to_string(), v);
        let b = |v: Verdict| ("http://b:9093/api/v2/alerts".to_string(), v);
        assert_eq!(
            combine(&[a(retry(None, "cannot connect")), b(Verdict::Accepted)]),
            Verdict::Accepted
        );
        assert_eq!(
            combine(&[a(rejected("HTTP 400")), b(Verdict::Accepted)]),
            Verdict::Accepted
        );
        assert_eq!(
            combine(&[a(rejected("HTTP 400: bad")), b(retry(Some(3), "HTTP 503"))]),
            retry(
                Some(3),
                "no Alertmanager member accepted: http://a:9093/api/v2/alerts: HTTP 400: bad; http://b:9093/api/v2/alerts: HTTP 503"
            )
        );
        // The longest wait a member asked for.
        assert_eq!(
            combine(&[a(retry(Some(30), "429 Too Many Requests")), b(retry(Some(2), "HTTP 503"))]),
            retry(
                Some(30),
                "no Alertmanager member accepted: http://a:9093/api/v2/alerts: 429 Too Many Requests; http://b:9093/api/v2/alerts: HTTP 503"
            )
        );
        assert_eq!(
            combine(&[a(rejected("HTTP 400")), b(rejected("HTTP 422"))]),
            rejected(
                "every Alertmanager member rejected: http://a:9093/api/v2/alerts: HTTP 400; http://b:9093/api/v2/alerts: HTTP 422"
            )
        );
    }

    #[test]
    fn logs_show_a_member_without_its_credentials() {
        let url: Url = "http://ops:pw@am-1:9093/api/v2/alerts".parse().unwrap();
        assert_eq!(shown(&url), "http://am-1:9093/api/v2/alerts");
    }

    /// A one-request-per-connection HTTP server answering every request with `status`; the
    /// bodies it received come out of the channel.
    async fn member(status: u16) -> (Url, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Headers, then Content-Length bytes of body.
                let body = loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len: usize = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse().ok())?
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break Some(buf[end + 4..end + 4 + len].to_vec());
                        }
                    }
                };
                if let Some(body) = body {
                    let _ = tx.send(body);
                }
                let answer = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        (url.parse().unwrap(), rx)
    }

    /// A URL nothing listens on.
    async fn closed() -> Url {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        drop(l);
        url.parse().unwrap()
    }

    fn cluster(urls: Vec<Url>) -> Alertmanager {
        Alertmanager::build("am", &AlertmanagerSettings { urls }).unwrap()
    }

    #[tokio::test]
    async fn every_member_gets_the_same_batch_and_one_acceptance_suffices() {
        let http = outbox::http_client().unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let batch = [event(Status::Firing)];
        let (a, mut a_got) = member(200).await;
        let (b, mut b_got) = member(200).await;
        let am = cluster(vec![a.clone(), b.clone()]);
        let verdict = am.deliver(&batch, now, &http).unwrap().await;
        assert_eq!(verdict, Verdict::Accepted);
        let (sent_a, sent_b) = (a_got.recv().await.unwrap(), b_got.recv().await.unwrap());
        assert_eq!(sent_a, sent_b);
        let alerts: Value = serde_json::from_slice(&sent_a).unwrap();
        assert_eq!(alerts[0]["labels"]["alertname"], "LoginFailing");
        assert_eq!(alerts[0]["endsAt"], rfc3339(now + LEASE));

        // One member down: still accepted (the other took it).
        let down = closed().await;
        let am = cluster(vec![down.clone(), b.clone()]);
        assert_eq!(
            am.deliver(&batch, now, &http).unwrap().await,
            Verdict::Accepted
        );
        assert!(b_got.recv().await.is_some());

        // Nobody took it: one refused connection and one 503 are retried, naming each member.
        let (c, _c_got) = member(503).await;
        let am = cluster(vec![down.clone(), c.clone()]);
        let Verdict::Retry {
            after: None,
            reason,
        } = am.deliver(&batch, now, &http).unwrap().await
        else {
            panic!("no member accepted: a retry");
        };
        assert!(
            reason.starts_with("no Alertmanager member accepted: "),
            "{reason}"
        );
        assert!(
            reason.contains(&format!("{}api/v2/alerts: cannot connect", down)),
            "{reason}"
        );
        assert!(
            reason.contains(&format!("{}api/v2/alerts: HTTP 503", c)),
            "{reason}"
        );

        // Every member refused it for good: rejected.
        let (d, _d_got) = member(400).await;
        let (e, _e_got) = member(422).await;
        let am = cluster(vec![d, e]);
        assert!(matches!(
            am.deliver(&batch, now, &http).unwrap().await,
            Verdict::Rejected { .. }
        ));
    }

    #[tokio::test]
    async fn one_url_is_sent_by_the_outbox_as_before() {
        let http = outbox::http_client().unwrap();
        let am = cluster(vec!["http://127.0.0.1:9093".parse().unwrap()]);
        assert!(am
            .deliver(&[event(Status::Firing)], SystemTime::now(), &http)
            .is_none());
        let req = am
            .request(&[event(Status::Firing)], SystemTime::now())
            .unwrap();
        assert_eq!(req.url.as_str(), "http://127.0.0.1:9093/api/v2/alerts");
    }
}
