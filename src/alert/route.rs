//! Routing: which receivers hear about an alert. Routes are tried in order and the first whose
//! matchers all equal the alert's labels wins (a route without matchers matches everything).
//! A configuration with receivers but no routes sends every alert to every receiver. An alert
//! that matches no route notifies nobody (it still shows in the API and metrics).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::config::ctx::Ctx;
use crate::config::limits;
use crate::config::model::Dur;
use crate::config::schema::Text;

/// A route.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteDef {
    /// Label matchers (all must equal); empty matches everything.
    #[serde(default, rename = "match")]
    #[schemars(with = "Option<BTreeMap<String, Text>>")]
    pub matchers: BTreeMap<String, String>,
    /// Receivers notified.
    #[schemars(with = "Vec<Text>")]
    pub receivers: Vec<Spanned<String>>,
    /// Escalation when still firing.
    pub escalate: Option<EscalateDef>,
    /// Reminder interval while firing.
    #[schemars(with = "Option<Dur>")]
    pub repeat_interval: Option<Spanned<Dur>>,
}

/// Escalation.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EscalateDef {
    /// Still firing after this long.
    #[schemars(with = "Dur")]
    pub after: Spanned<Dur>,
    /// Then also notify these.
    #[schemars(with = "Vec<Text>")]
    pub receivers: Vec<Spanned<String>>,
}

/// A route, validated.
#[derive(Debug)]
pub struct Route {
    /// Label matchers.
    pub matchers: BTreeMap<String, String>,
    /// Receivers notified.
    pub receivers: Vec<String>,
    /// Escalation: after, receivers.
    pub escalate: Option<(Duration, Vec<String>)>,
    /// Reminder interval.
    pub repeat_interval: Option<Duration>,
}

/// Validates `routes:` against the names of the configured `receivers`: counts within
/// [`limits`], durations within theirs, every receiver named is configured.
pub fn validate(ctx: &mut Ctx, defs: &[RouteDef], receivers: &HashSet<&str>) -> Vec<Route> {
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

/// Where one alert goes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Destination {
    /// Notified when it fires.
    pub receivers: Vec<String>,
    /// Still firing after this long: also notify these.
    pub escalate: Option<(Duration, Vec<String>)>,
    /// Remind every this long while firing.
    pub repeat_interval: Option<Duration>,
}

/// The routing table of one configuration.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Destination>,
    matchers: Vec<BTreeMap<String, String>>,
}

impl Router {
    /// From the configured routes; `all_receivers` is used when there are none.
    pub fn new(routes: &[Route], all_receivers: &[String]) -> Router {
        if routes.is_empty() {
            if all_receivers.is_empty() {
                return Router::default();
            }
            return Router {
                routes: vec![Destination {
                    receivers: all_receivers.to_vec(),
                    ..Destination::default()
                }],
                matchers: vec![BTreeMap::new()],
            };
        }
        Router {
            routes: routes
                .iter()
                .map(|r| Destination {
                    receivers: r.receivers.clone(),
                    escalate: r.escalate.clone(),
                    repeat_interval: r.repeat_interval,
                })
                .collect(),
            matchers: routes.iter().map(|r| r.matchers.clone()).collect(),
        }
    }

    /// The first matching route's destination.
    pub fn route(&self, labels: &BTreeMap<String, String>) -> Option<&Destination> {
        self.matchers
            .iter()
            .position(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)))
            .map(|i| &self.routes[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::tests_support::validated;

    fn routes(yaml: &str) -> (Vec<Route>, Vec<String>) {
        let receivers: HashSet<&str> = ["chat", "oncall"].into_iter().collect();
        validated(yaml, |ctx, defs: &Vec<RouteDef>| {
            validate(ctx, defs, &receivers)
        })
    }

    #[test]
    fn an_unknown_receiver_is_reported_where_it_is_named() {
        let (_, errors) = routes(
            "- match: {severity: critical}\n  receivers: [chat, pager]\n- receivers: [chat]\n  escalate: {after: 30m, receivers: [oncall, boss]}\n",
        );
        assert_eq!(
            errors,
            [
                "2:21: routes[0].receivers: unknown receiver \"pager\"",
                "4:46: routes[1].escalate.receivers: unknown receiver \"boss\"",
            ]
        );
    }

    #[test]
    fn durations_and_counts_are_bounded() {
        let (_, errors) = routes(
            "- receivers: [chat]\n  repeat_interval: 30s\n  escalate: {after: 31d, receivers: [oncall]}\n",
        );
        assert_eq!(
            errors,
            [
                "2:20: routes[0].repeat_interval: must be at least 1m",
                "3:21: routes[0].escalate.after: must be at most 30d",
            ]
        );
        let many = vec!["chat"; limits::MAX_REFS + 1].join(", ");
        let (_, errors) = routes(&format!("- receivers: [{many}]\n"));
        assert_eq!(
            errors,
            ["1:15: routes[0].receivers: 101 receivers: at most 100 are allowed"]
        );
    }

    #[test]
    fn a_valid_route_keeps_what_was_written() {
        let (out, errors) = routes(
            "- match: {team: web}\n  receivers: [chat]\n  escalate: {after: 30m, receivers: [oncall]}\n  repeat_interval: 1h\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        let r = &out[0];
        assert_eq!(r.matchers, labels(&[("team", "web")]));
        assert_eq!(r.receivers, ["chat"]);
        assert_eq!(
            r.escalate,
            Some((Duration::from_secs(1800), vec!["oncall".to_string()]))
        );
        assert_eq!(r.repeat_interval, Some(Duration::from_secs(3600)));
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn first_match_wins_and_empty_matches_all() {
        let routes = vec![
            Route {
                matchers: labels(&[("severity", "critical")]),
                receivers: vec!["oncall".into(), "chat".into()],
                escalate: None,
                repeat_interval: None,
            },
            Route {
                matchers: BTreeMap::new(),
                receivers: vec!["chat".into()],
                escalate: Some((Duration::from_secs(1800), vec!["oncall".into()])),
                repeat_interval: Some(Duration::from_secs(3600)),
            },
        ];
        let r = Router::new(&routes, &[]);
        let crit = r.route(&labels(&[("severity", "critical")])).unwrap();
        assert_eq!(crit.receivers, ["oncall", "chat"]);
        let warn = r.route(&labels(&[("severity", "warning")])).unwrap();
        assert_eq!(warn.receivers, ["chat"]);
        assert_eq!(warn.escalate.as_ref().unwrap().1, ["oncall"]);
    }

    #[test]
    fn no_routes_means_every_receiver() {
        let r = Router::new(&[], &["a".into(), "b".into()]);
        assert_eq!(r.route(&BTreeMap::new()).unwrap().receivers, ["a", "b"]);
        assert!(Router::new(&[], &[]).route(&BTreeMap::new()).is_none());
    }
}
