//! `defaults:` of the daemon file: the interval, timeout and response body cap of checks that
//! set none.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::ctx::*;
use super::limits;
use super::model::{ByteSize, Dur};

/// Default interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// Default timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default response body cap.
pub const DEFAULT_BODY_LIMIT: u64 = 1024 * 1024;

/// `defaults:` in `canaryd.yaml`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Default interval (30s).
    #[schemars(with = "Option<Dur>")]
    pub interval: Option<Spanned<Dur>>,
    /// Default timeout (10s, at most the interval).
    #[schemars(with = "Option<Dur>")]
    pub timeout: Option<Spanned<Dur>>,
    /// Default response body cap (1MiB).
    #[schemars(with = "Option<ByteSize>")]
    pub body_limit: Option<Spanned<ByteSize>>,
}

/// The validated `defaults:`.
#[derive(Debug, Clone)]
pub struct CheckDefaults {
    /// Interval of checks that set none.
    pub interval: Duration,
    /// Timeout of checks that set none (at most their interval).
    pub timeout: Duration,
    /// Response body cap of http checks that set none.
    pub body_limit: u64,
}

impl Default for CheckDefaults {
    fn default() -> Self {
        CheckDefaults {
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }
}

pub fn check_defaults(ctx: &mut Ctx, d: &Defaults) -> CheckDefaults {
    let interval = d
        .interval
        .as_ref()
        .map(|i| i.value.0)
        .unwrap_or(DEFAULT_INTERVAL);
    let timeout = d
        .timeout
        .as_ref()
        .map(|t| t.value.0)
        .unwrap_or(DEFAULT_TIMEOUT.min(interval));
    ctx.dur_in(d.interval.as_ref(), "defaults.interval", limits::INTERVAL);
    if let Some(t) = &d.timeout {
        if t.value.0.is_zero() {
            ctx.err(&t.referenced, "defaults.timeout", "must be greater than 0");
        } else if t.value.0 > interval {
            ctx.err(
                &t.referenced,
                "defaults.timeout",
                format!(
                    "{} exceeds the default interval {}",
                    fmt_d(t.value.0),
                    fmt_d(interval)
                ),
            );
        }
    }
    let body_limit = d
        .body_limit
        .as_ref()
        .map(|b| b.value.0)
        .unwrap_or(DEFAULT_BODY_LIMIT);
    if let Some(b) = &d.body_limit {
        body_limit_in(ctx, b, "defaults.body_limit");
    }
    CheckDefaults {
        interval,
        timeout,
        body_limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ctx::test_support::validate;

    fn defaults_of(yaml: &str) -> (CheckDefaults, Vec<String>) {
        validate(yaml, check_defaults)
    }

    #[test]
    fn nothing_written_gives_the_built_in_defaults() {
        let (d, errors) = defaults_of("{}");
        assert!(errors.is_empty());
        assert_eq!(
            (d.interval, d.timeout, d.body_limit),
            (DEFAULT_INTERVAL, DEFAULT_TIMEOUT, DEFAULT_BODY_LIMIT)
        );
    }

    #[test]
    fn the_default_timeout_is_at_most_the_default_interval() {
        let (d, errors) = defaults_of("interval: 5s");
        assert!(errors.is_empty());
        assert_eq!(
            (d.interval, d.timeout),
            (Duration::from_secs(5), Duration::from_secs(5))
        );
        let (d, _) = defaults_of("interval: 1m");
        assert_eq!(d.timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn the_interval_is_within_its_limits() {
        assert_eq!(
            defaults_of("interval: 50ms").1,
            ["t.yaml:1:11: defaults.interval: must be at least 100ms"]
        );
        assert_eq!(
            defaults_of("interval: 8d").1,
            ["t.yaml:1:11: defaults.interval: must be at most 7d"]
        );
    }

    #[test]
    fn the_timeout_is_positive_and_within_the_interval() {
        assert_eq!(
            defaults_of("timeout: 0s").1,
            ["t.yaml:1:10: defaults.timeout: must be greater than 0"]
        );
        assert_eq!(
            defaults_of("interval: 30s\ntimeout: 1m").1,
            ["t.yaml:2:10: defaults.timeout: 1m exceeds the default interval 30s"]
        );
        // Without an interval, the built-in one bounds it.
        assert_eq!(
            defaults_of("timeout: 31s").1,
            ["t.yaml:1:10: defaults.timeout: 31s exceeds the default interval 30s"]
        );
        let (d, errors) = defaults_of("interval: 1m\ntimeout: 1m");
        assert!(errors.is_empty());
        assert_eq!(d.timeout, Duration::from_secs(60));
    }

    #[test]
    fn the_body_limit_is_positive_and_within_its_cap() {
        assert_eq!(
            defaults_of("body_limit: 0").1,
            ["t.yaml:1:13: defaults.body_limit: must be greater than 0"]
        );
        assert_eq!(
            defaults_of("body_limit: 257MiB").1,
            ["t.yaml:1:13: defaults.body_limit: 269484032 bytes is more than the limit of 256 MiB"]
        );
        let (d, errors) = defaults_of("body_limit: 256MiB");
        assert!(errors.is_empty());
        assert_eq!(d.body_limit, limits::MAX_BODY_LIMIT);
    }
}
