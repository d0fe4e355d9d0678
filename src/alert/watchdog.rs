//! The watchdog (dead-man's switch): while canaryd is healthy it calls a URL every `every`, so
//! an external service notices when the calls stop — canaryd died, or its scheduler or its
//! notification path is stuck (see `Alerting::health`).

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::outbox::Outbox;
use crate::config::ctx::{secret_url, Ctx};
use crate::config::limits;
use crate::config::model::Dur;
use crate::config::schema;
use crate::config::template::{Secret, Template};

/// The watchdog.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WatchdogDef {
    /// URL called while healthy: http(s) with a host; secrets allowed.
    #[schemars(with = "String", extend("pattern" = schema::HTTP_URL_TEMPLATE, "patternErrorMessage" = "an http(s) URL or a secret reference"))]
    pub url: Spanned<String>,
    /// How often (default 1m).
    #[schemars(with = "Option<Dur>")]
    pub every: Option<Spanned<Dur>>,
}

/// Dead-man's switch settings, validated.
#[derive(Debug)]
pub struct Watchdog {
    /// URL (may hold a secret).
    pub url: Template,
    /// How often.
    pub every: Duration,
}

/// How often the watchdog calls when `every` is not written.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(60);

/// Validates `watchdog:`: an http(s) URL with a host (secrets only, no run-time variables),
/// `every` within [`limits::WATCHDOG_EVERY`]. `None` when there were errors.
pub fn validate(ctx: &mut Ctx, def: &WatchdogDef) -> Option<Watchdog> {
    let url = ctx.template(&def.url, "watchdog.url")?;
    if !secret_url(ctx, &url, &def.url, "watchdog.url") {
        return None;
    }
    if !ctx.dur_in(def.every.as_ref(), "watchdog.every", limits::WATCHDOG_EVERY) {
        return None;
    }
    let every = def.every.as_ref().map_or(DEFAULT_EVERY, |d| d.value.0);
    Some(Watchdog { url, every })
}

/// The watchdog URL, rendered (it may hold a secret).
pub struct Target {
    url: Option<Secret>,
    redacted: String,
    /// How often (at least once a second).
    pub every: Duration,
}

impl Target {
    /// Renders the URL (a URL that cannot render is logged at each call, never printed).
    pub fn new(w: &Watchdog) -> Target {
        Target {
            url: w.url.render(|_| None).ok().map(|s| Secret::new(s.trim())),
            redacted: w.url.redacted().to_string(),
            every: w.every.max(Duration::from_secs(1)),
        }
    }

    /// Calls the URL once, logging a failure (the URL only in its redacted form).
    pub async fn call(&self, outbox: &Outbox) {
        let Some(url) = &self.url else {
            tracing::error!(url = %self.redacted, "watchdog URL cannot be rendered");
            return;
        };
        match outbox.client().get(url.expose()).send().await {
            Ok(r) if r.status().is_success() => tracing::debug!("watchdog called"),
            Ok(r) => {
                tracing::warn!(url = %self.redacted, status = r.status().as_u16(), "watchdog call refused")
            }
            Err(e) => {
                tracing::warn!(url = %self.redacted, "watchdog call failed: {}", e.without_url())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::tests_support::validated;

    fn watchdog(yaml: &str) -> (Option<Watchdog>, Vec<String>) {
        validated(yaml, |ctx, def: &WatchdogDef| validate(ctx, def))
    }

    #[test]
    fn the_url_takes_secrets_but_no_variables_and_needs_a_host() {
        let (w, errors) = watchdog("url: \"http://127.0.0.1:9/${check}\"\n");
        assert!(w.is_none());
        assert_eq!(
            errors,
            ["1:6: watchdog.url: ${check}: this URL takes secrets (${env:..}, ${file:..}) but no run-time variables"]
        );
        let (w, errors) = watchdog("url: \"mailto:ops@example.com\"\n");
        assert!(w.is_none());
        assert_eq!(
            errors,
            ["1:6: watchdog.url: \"mailto:ops@example.com\" is not an http(s) URL with a host"]
        );
    }

    #[test]
    fn every_defaults_to_a_minute_and_is_at_most_a_day() {
        let (w, errors) = watchdog("url: http://127.0.0.1:9/ping\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(w.unwrap().every, DEFAULT_EVERY);
        let (w, errors) = watchdog("url: http://127.0.0.1:9/ping\nevery: 2d\n");
        assert!(w.is_none());
        assert_eq!(errors, ["2:8: watchdog.every: must be at most 1d"]);
    }
}
