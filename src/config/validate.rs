//! From the file model to the run-time model, collecting every error on the way.

use std::collections::HashSet;

use http::HeaderName;
use serde_saphyr::Spanned;
use url::Url;

use super::ctx::*;
use super::limits;
use super::model::*;
use super::*;

/// The error for `https://user:pass@host/`: the http probe does not send URL credentials.

pub fn receivers(ctx: &mut Ctx, defs: &[ReceiverDef]) -> Vec<Receiver> {
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
        let n = [
            r.pagerduty.is_some(),
            r.alertmanager.is_some(),
            r.slack.is_some(),
            r.webhook.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if n != 1 {
            ctx.err(
                &r.name.referenced,
                &key,
                "a receiver has exactly one kind: pagerduty, alertmanager, slack or webhook",
            );
            continue;
        }
        let kind = if let Some(p) = &r.pagerduty {
            let rkey = format!("{key}.pagerduty.routing_key");
            let routing_key = ctx
                .template(&p.value.routing_key, &rkey)
                .filter(|t| no_variables(ctx, t, &p.value.routing_key, &rkey))
                .filter(|t| non_empty_secret(ctx, t, &p.value.routing_key, &rkey));
            let url = match &p.value.url {
                Some(u) => parse_url(ctx, u, &format!("{key}.pagerduty.url")),
                None => Url::parse("https://events.pagerduty.com/v2/enqueue").ok(),
            };
            routing_key
                .zip(url)
                .map(|(routing_key, url)| ReceiverKind::PagerDuty { routing_key, url })
        } else if let Some(a) = &r.alertmanager {
            parse_url(ctx, &a.value.url, &format!("{key}.alertmanager.url"))
                .map(|url| ReceiverKind::Alertmanager { url })
        } else if let Some(s) = &r.slack {
            let k = format!("{key}.slack.webhook_url");
            ctx.template(&s.value.webhook_url, &k)
                .filter(|t| receiver_url(ctx, t, &s.value.webhook_url, &k))
                .map(|webhook_url| ReceiverKind::Slack { webhook_url })
        } else if let Some(w) = &r.webhook {
            let k = format!("{key}.webhook.url");
            let url = ctx
                .template(&w.value.url, &k)
                .filter(|t| receiver_url(ctx, t, &w.value.url, &k));
            let secret = w.value.secret.as_ref().and_then(|s| {
                let skey = format!("{key}.webhook.secret");
                ctx.template(s, &skey)
                    .filter(|t| no_variables(ctx, t, s, &skey))
                    .filter(|t| non_empty_secret(ctx, t, s, &skey))
            });
            if let Some(first) = w.value.headers.values().next() {
                ctx.count(
                    w.value.headers.len(),
                    limits::MAX_ENTRIES,
                    &first.referenced,
                    &format!("{key}.webhook.headers"),
                    "headers",
                );
            }
            let headers = w
                .value
                .headers
                .iter()
                .filter_map(|(k, v)| {
                    let hkey = format!("{key}.webhook.headers.{k}");
                    if HeaderName::from_bytes(k.as_bytes()).is_err() {
                        ctx.err(&v.referenced, &hkey, format!("invalid header name {k:?}"));
                        return None;
                    }
                    let t = ctx.template(v, &hkey)?;
                    header_value(ctx, &t, v, &hkey);
                    Some((k.clone(), t))
                })
                .collect();
            url.map(|url| ReceiverKind::Webhook {
                url,
                secret,
                headers,
            })
        } else {
            None
        };
        if let Some(kind) = kind {
            out.push(Receiver {
                name: r.name.value.clone(),
                kind,
            });
        }
    }
    out
}

pub fn routes(ctx: &mut Ctx, defs: &[RouteDef], receivers: &HashSet<&str>) -> Vec<Route> {
    let mut out = Vec::new();
    if defs.len() > limits::MAX_ROUTES {
        ctx.err_at(
            1,
            1,
            "routes",
            format!(
                "{} routes: at most {} are allowed",
                defs.len(),
                limits::MAX_ROUTES
            ),
        );
        return out;
    }
    for (i, r) in defs.iter().enumerate() {
        let key = format!("routes[{i}]");
        for (what, list) in [
            ("receivers", Some(&r.receivers)),
            (
                "escalate.receivers",
                r.escalate.as_ref().map(|e| &e.receivers),
            ),
        ] {
            if let Some(first) = list.and_then(|l| l.first()) {
                ctx.count(
                    list.map_or(0, Vec::len),
                    limits::MAX_REFS,
                    &first.referenced,
                    &format!("{key}.{what}"),
                    "receivers",
                );
            }
        }
        if r.matchers.len() > limits::MAX_LABELS {
            // Matchers are plain strings without a position: point at the route's receivers.
            let (line, col) = r
                .receivers
                .first()
                .map_or((1, 1), |n| (n.referenced.line(), n.referenced.column()));
            ctx.err_at(
                line,
                col,
                format!("{key}.match"),
                format!(
                    "{} matchers: at most {} are allowed",
                    r.matchers.len(),
                    limits::MAX_LABELS
                ),
            );
        }
        ctx.dur_in(
            r.repeat_interval.as_ref(),
            &format!("{key}.repeat_interval"),
            limits::REPEAT_INTERVAL,
        );
        if let Some(e) = &r.escalate {
            ctx.dur_in(
                Some(&e.after),
                &format!("{key}.escalate.after"),
                limits::ESCALATE_AFTER,
            );
        }
        let check_refs = |ctx: &mut Ctx, list: &[Spanned<String>], k: &str| -> Vec<String> {
            list.iter()
                .map(|n| {
                    if !receivers.contains(n.value.as_str()) {
                        ctx.err(
                            &n.referenced,
                            format!("{key}.{k}"),
                            format!("unknown receiver {:?}", n.value),
                        );
                    }
                    n.value.clone()
                })
                .collect()
        };
        let recv = check_refs(ctx, &r.receivers, "receivers");
        let escalate = r.escalate.as_ref().map(|e| {
            (
                e.after.value.0,
                check_refs(ctx, &e.receivers, "escalate.receivers"),
            )
        });
        out.push(Route {
            matchers: r.matchers.clone(),
            receivers: recv,
            escalate,
            repeat_interval: r.repeat_interval.as_ref().map(|d| d.value.0),
        });
    }
    out
}

pub fn maintenance(ctx: &mut Ctx, defs: &[MaintenanceDef]) -> Vec<Maintenance> {
    let mut out = Vec::new();
    if let Some(first) = defs.first() {
        if !ctx.count(
            defs.len(),
            limits::MAX_ROUTES,
            &first.start.referenced,
            "maintenance",
            "maintenance windows",
        ) {
            return out;
        }
    }
    for (i, m) in defs.iter().enumerate() {
        let key = format!("maintenance[{i}]");
        if let Some(first) = m.checks.first() {
            ctx.count(
                m.checks.len(),
                limits::MAX_REFS,
                &first.referenced,
                &format!("{key}.checks"),
                "check globs",
            );
        }
        let n_before = ctx.errors.len();
        ctx.dur_in(
            Some(&m.duration),
            &format!("{key}.duration"),
            limits::MAINTENANCE_DURATION,
        );
        ctx.dur_in(
            m.every.as_ref(),
            &format!("{key}.every"),
            limits::MAINTENANCE_EVERY,
        );
        if let Some(every) = &m.every {
            if every.value.0 <= m.duration.value.0 {
                ctx.err(
                    &every.referenced,
                    format!("{key}.every"),
                    format!(
                        "every {} is not longer than the duration {}: the checks would be muted forever",
                        fmt_d(every.value.0),
                        fmt_d(m.duration.value.0)
                    ),
                );
            }
        }
        let mut checks = Vec::new();
        for g in &m.checks {
            match glob::Pattern::new(&g.value) {
                Ok(p) => checks.push(p),
                Err(e) => ctx.err(
                    &g.referenced,
                    format!("{key}.checks"),
                    format!("invalid glob {:?}: {}", g.value, e.msg),
                ),
            }
        }
        let start = match humantime::parse_rfc3339_weak(&m.start.value) {
            Ok(t) => Some(t),
            Err(e) => {
                ctx.err(
                    &m.start.referenced,
                    format!("{key}.start"),
                    format!(
                        "invalid time {:?}: {e} (write RFC 3339, e.g. 2026-12-01T22:00:00Z)",
                        m.start.value
                    ),
                );
                None
            }
        };
        if let Some(tz) = &m.timezone {
            if tz.value != "UTC" {
                ctx.err(
                    &tz.referenced,
                    format!("{key}.timezone"),
                    format!(
                        "unsupported timezone {:?}: only UTC is supported so far",
                        tz.value
                    ),
                );
            }
        }
        if ctx.errors.len() > n_before {
            continue;
        }
        if let Some(start) = start {
            out.push(Maintenance {
                checks,
                start,
                duration: m.duration.value.0,
                every: m.every.as_ref().map(|d| d.value.0),
            });
        }
    }
    out
}
