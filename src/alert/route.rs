//! Routing: which receivers hear about an alert. Routes are tried in order and the first whose
//! matchers all equal the alert's labels wins (a route without matchers matches everything).
//! A configuration with receivers but no routes sends every alert to every receiver. An alert
//! that matches no route notifies nobody (it still shows in the API and metrics).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::Route;

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
