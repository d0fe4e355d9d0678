//! `status_page:` in `canaryd.yaml`: where the public page listens, its title, and its
//! components (each a group of checks, with an optional automatic incident), validated into a
//! [`StatusPageConfig`]. References to checks and their alerts are checked once every check
//! file is loaded ([`reference_errors`]).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::config::ctx::{excerpt, parse_url, Ctx};
use crate::config::model::Dur;
use crate::config::schema::{self, Text};
use crate::config::{ConfigError, Origin};
use crate::probe::check::Check;

use super::model::{slug, ComponentStatus};

/// At most this many components on a page.
pub const MAX_COMPONENTS: usize = 100;
/// At most this many checks in one component.
pub const MAX_COMPONENT_CHECKS: usize = 256;
/// Longest component name, title, or incident title (characters).
pub const MAX_NAME_CHARS: usize = 200;
/// Longest description or incident text (characters).
pub const MAX_TEXT_CHARS: usize = 5000;

/// The public status page.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusPageDef {
    /// Address of the public page: an IP address and port of its own (never the API's: the
    /// public page must not share a port with the admin API). Changing it needs a restart.
    #[schemars(with = "String", extend("pattern" = schema::SOCKET_ADDR, "patternErrorMessage" = "host:port with an IP address, e.g. 0.0.0.0:8080"))]
    pub listen: Spanned<String>,
    /// The page's title (default "Status").
    #[schemars(with = "Option<Text>")]
    pub title: Option<Spanned<String>>,
    /// A line under the title.
    #[schemars(with = "Option<Text>")]
    pub description: Option<Spanned<String>>,
    /// The page's public address (an absolute http(s) URL), used in the Atom feed and the
    /// JSON's `page.url`.
    #[schemars(with = "Option<String>", extend("pattern" = schema::HTTP_URL, "patternErrorMessage" = "an http(s) URL"))]
    pub public_url: Option<Spanned<String>>,
    /// What the page shows, in this order (1 to 100).
    #[schemars(extend("minItems" = 1, "maxItems" = 100))]
    pub components: Vec<ComponentDef>,
}

/// One component: a name the public sees and the checks behind it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComponentDef {
    /// The public name (unique on the page).
    #[schemars(with = "Text")]
    pub name: Spanned<String>,
    /// A public line about it.
    #[schemars(with = "Option<Text>")]
    pub description: Option<Spanned<String>>,
    /// Names of the checks behind it (1 to 256). Never shown.
    #[schemars(with = "Vec<Text>", extend("minItems" = 1, "maxItems" = 256))]
    pub checks: Vec<Spanned<String>>,
    /// A passing check whose run took longer than this makes the component "degraded
    /// performance".
    #[schemars(with = "Option<Dur>")]
    pub degraded_above: Option<Spanned<Dur>>,
    /// Open an incident on the page automatically (and resolve it when the cause clears).
    pub incident: Option<AutoIncidentDef>,
}

/// An incident canaryd opens by itself.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoIncidentDef {
    /// Alerts (by name, on any of the component's checks) whose firing opens the incident.
    #[serde(default)]
    #[schemars(with = "Option<Vec<Text>>")]
    pub alerts: Vec<Spanned<String>>,
    /// Also open it when the component reaches this status: `partial_outage` or
    /// `major_outage`.
    #[schemars(with = "Option<String>", extend("enum" = ["partial_outage", "major_outage"]))]
    pub status: Option<Spanned<String>>,
    /// The incident's title; `${component}` is the component's name (default "${component}:
    /// ${status}").
    #[schemars(with = "Option<Text>")]
    pub title: Option<Spanned<String>>,
    /// The first update's text; `${component}` and `${status}` (the status in words) may be
    /// used (default: "We are investigating problems with ${component}.").
    #[schemars(with = "Option<Text>")]
    pub message: Option<Spanned<String>>,
    /// The text of the resolving update (default: "${component} is operational again.").
    #[schemars(with = "Option<Text>")]
    pub resolved_message: Option<Spanned<String>>,
}

/// A validated status page.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusPageConfig {
    /// Where the public listener binds.
    pub listen: SocketAddr,
    /// Title.
    pub title: String,
    /// A line under the title.
    pub description: Option<String>,
    /// The public address, without a trailing `/`.
    pub public_url: Option<String>,
    /// Components in page order.
    pub components: Vec<Arc<Component>>,
}

/// A validated component.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    /// Public name.
    pub name: String,
    /// Stable identifier (from the name).
    pub id: String,
    /// Public description.
    pub description: Option<String>,
    /// Check names, with where each was written.
    pub checks: Vec<(String, Origin)>,
    /// Slow above this.
    pub degraded_above: Option<Duration>,
    /// The automatic incident.
    pub incident: Option<AutoIncident>,
}

/// A validated automatic incident.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoIncident {
    /// Alert names that open it, with where each was written.
    pub alerts: Vec<(String, Origin)>,
    /// The status that opens it.
    pub status: Option<ComponentStatus>,
    /// Title template.
    pub title: String,
    /// First update template.
    pub message: String,
    /// Resolving update template.
    pub resolved_message: String,
}

impl AutoIncident {
    /// Fills `${component}` and `${status}` in a template (the only two names it may hold:
    /// validated at load).
    pub fn render(template: &str, component: &str, status: ComponentStatus) -> String {
        template
            .replace("${component}", component)
            .replace("${status}", &status.label().to_lowercase())
    }
}

/// A public text: at most `max` characters, no control characters but line breaks.
fn text(ctx: &mut Ctx, s: &Spanned<String>, key: &str, max: usize) -> String {
    let n = s.value.chars().count();
    if n > max {
        ctx.err(
            &s.referenced,
            key,
            format!("{n} characters: at most {max} are allowed"),
        );
    } else if s.value.trim().is_empty() {
        ctx.err(&s.referenced, key, "must not be empty");
    } else if s
        .value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        ctx.err(&s.referenced, key, "must not hold control characters");
    }
    s.value.clone()
}

/// A template of an automatic incident: only `${component}` and `${status}` (public words; never
/// an environment variable or a file, which could be a secret).
fn incident_template(ctx: &mut Ctx, s: &Spanned<String>, key: &str, max: usize) -> String {
    let value = text(ctx, s, key, max);
    let mut rest = value.as_str();
    while let Some(at) = rest.find("${") {
        let after = &rest[at + 2..];
        let Some(end) = after.find('}') else {
            ctx.err(&s.referenced, key, "unclosed ${");
            break;
        };
        let name = &after[..end];
        if name != "component" && name != "status" {
            ctx.err(
                &s.referenced,
                key,
                format!(
                    "unknown variable ${{{}}}: a status page text may use ${{component}} and ${{status}} only",
                    excerpt(name, 40)
                ),
            );
        }
        rest = &after[end + 1..];
    }
    value
}

/// Validates `status_page:`.
pub fn validate(ctx: &mut Ctx, def: &StatusPageDef) -> Option<StatusPageConfig> {
    let before = ctx.errors.len();
    let listen = def.listen.value.parse::<SocketAddr>().unwrap_or_else(|_| {
        ctx.err(
            &def.listen.referenced,
            "status_page.listen",
            format!(
                "invalid address {:?}: write host:port with an IP address, e.g. 0.0.0.0:8080",
                excerpt(&def.listen.value, 100)
            ),
        );
        SocketAddr::from(([127, 0, 0, 1], 0))
    });
    let title = def
        .title
        .as_ref()
        .map(|t| text(ctx, t, "status_page.title", MAX_NAME_CHARS))
        .unwrap_or_else(|| "Status".into());
    let description = def
        .description
        .as_ref()
        .map(|t| text(ctx, t, "status_page.description", MAX_TEXT_CHARS));
    let public_url = def.public_url.as_ref().and_then(|s| {
        let url = parse_url(ctx, s, "status_page.public_url")?;
        if !url.username().is_empty() || url.password().is_some() {
            ctx.err(
                &s.referenced,
                "status_page.public_url",
                "must not hold a user name or password: it is public",
            );
            return None;
        }
        Some(url.as_str().trim_end_matches('/').to_string())
    });
    if def.components.is_empty() {
        ctx.err(
            &def.listen.referenced,
            "status_page.components",
            "a status page needs at least one component",
        );
    }
    if def.components.len() > MAX_COMPONENTS {
        ctx.err(
            &def.components[MAX_COMPONENTS].name.referenced,
            "status_page.components",
            format!(
                "{} components: at most {MAX_COMPONENTS} are allowed",
                def.components.len()
            ),
        );
    }
    let mut names = HashSet::new();
    let mut ids = HashMap::new();
    let mut components = Vec::new();
    for (i, c) in def.components.iter().take(MAX_COMPONENTS).enumerate() {
        let key = format!("status_page.components[{i}]");
        let name = text(ctx, &c.name, &format!("{key}.name"), MAX_NAME_CHARS);
        if !names.insert(name.clone()) {
            ctx.err(
                &c.name.referenced,
                format!("{key}.name"),
                format!("component {:?} is listed twice", excerpt(&name, 80)),
            );
        }
        // Identifiers come from names; two names with one identifier would share a history.
        let mut id = slug(&name);
        if let Some(other) = ids.insert(id.clone(), name.clone()) {
            if other != name {
                id = format!("{id}-{i}");
            }
        }
        let description = c
            .description
            .as_ref()
            .map(|d| text(ctx, d, &format!("{key}.description"), MAX_TEXT_CHARS));
        if c.checks.is_empty() {
            ctx.err(
                &c.name.referenced,
                format!("{key}.checks"),
                "a component needs at least one check",
            );
        }
        if c.checks.len() > MAX_COMPONENT_CHECKS {
            ctx.err(
                &c.checks[MAX_COMPONENT_CHECKS].referenced,
                format!("{key}.checks"),
                format!(
                    "{} checks: at most {MAX_COMPONENT_CHECKS} are allowed",
                    c.checks.len()
                ),
            );
        }
        let mut seen = HashSet::new();
        let mut checks = Vec::new();
        for s in c.checks.iter().take(MAX_COMPONENT_CHECKS) {
            if !seen.insert(s.value.as_str()) {
                ctx.err(
                    &s.referenced,
                    format!("{key}.checks"),
                    format!("check {:?} is listed twice", excerpt(&s.value, 80)),
                );
            }
            checks.push((s.value.clone(), ctx.origin(&s.referenced)));
        }
        let degraded_above = c.degraded_above.as_ref().map(|d| {
            if d.value.0.is_zero() {
                ctx.err(
                    &d.referenced,
                    format!("{key}.degraded_above"),
                    "must be more than 0s",
                );
            }
            d.value.0
        });
        let incident = c.incident.as_ref().map(|inc| {
            let ikey = format!("{key}.incident");
            let status = inc.status.as_ref().and_then(|s| {
                match ComponentStatus::parse(&s.value) {
                    Some(st @ (ComponentStatus::PartialOutage | ComponentStatus::MajorOutage)) => Some(st),
                    _ => {
                        ctx.err(
                            &s.referenced,
                            format!("{ikey}.status"),
                            format!(
                                "{:?} is not a status that opens an incident: write partial_outage or major_outage",
                                excerpt(&s.value, 60)
                            ),
                        );
                        None
                    }
                }
            });
            if inc.alerts.is_empty() && inc.status.is_none() {
                ctx.err(
                    &c.name.referenced,
                    ikey.clone(),
                    "an automatic incident needs `alerts`, `status` or both: what opens it",
                );
            }
            let alerts = inc
                .alerts
                .iter()
                .map(|a| (a.value.clone(), ctx.origin(&a.referenced)))
                .collect();
            let template = |ctx: &mut Ctx, s: &Option<Spanned<String>>, k: &str, max, default: &str| {
                s.as_ref()
                    .map(|t| incident_template(ctx, t, &format!("{ikey}.{k}"), max))
                    .unwrap_or_else(|| default.to_string())
            };
            AutoIncident {
                alerts,
                status,
                title: template(ctx, &inc.title, "title", MAX_NAME_CHARS, "${component}: ${status}"),
                message: template(
                    ctx,
                    &inc.message,
                    "message",
                    MAX_TEXT_CHARS,
                    "We are investigating problems with ${component}.",
                ),
                resolved_message: template(
                    ctx,
                    &inc.resolved_message,
                    "resolved_message",
                    MAX_TEXT_CHARS,
                    "${component} is operational again.",
                ),
            }
        });
        components.push(Arc::new(Component {
            name,
            id,
            description,
            checks,
            degraded_above,
            incident,
        }));
    }
    if ctx.errors.len() > before {
        return None;
    }
    Some(StatusPageConfig {
        listen,
        title,
        description,
        public_url,
        components,
    })
}

/// The references of a status page to checks and alerts, checked against every check of the
/// configuration (all shards'): each named check exists, each named alert is a rule of one of
/// the component's checks.
pub fn reference_errors(page: &StatusPageConfig, checks: &[Arc<Check>]) -> Vec<ConfigError> {
    let by_name: HashMap<&str, &Check> = checks.iter().map(|c| (c.name.as_str(), &**c)).collect();
    let mut errors = Vec::new();
    let err = ConfigError::at;
    for (i, c) in page.components.iter().enumerate() {
        for (name, at) in &c.checks {
            if !by_name.contains_key(name.as_str()) {
                errors.push(err(
                    at,
                    format!("status_page.components[{i}].checks"),
                    format!(
                        "component {:?} lists {:?}, which is not a check in this configuration",
                        c.name,
                        excerpt(name, 80)
                    ),
                ));
            }
        }
        let Some(inc) = &c.incident else { continue };
        for (alert, at) in &inc.alerts {
            let known = c.checks.iter().any(|(n, _)| {
                by_name
                    .get(n.as_str())
                    .is_some_and(|ch| ch.alerts.iter().any(|r| &r.name == alert))
            });
            if !known {
                errors.push(err(
                    at,
                    format!("status_page.components[{i}].incident.alerts"),
                    format!(
                        "no check of component {:?} has an alert named {:?}",
                        c.name,
                        excerpt(alert, 80)
                    ),
                ));
            }
        }
    }
    errors
}
