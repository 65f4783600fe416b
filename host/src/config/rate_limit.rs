//! The operator's rate-limit settings (`[connections.NAME.rate-limit]`) and the windows
//! they apply to: what each account's request budget ([`crate::app::budget`]) reads the
//! app's rate-limit headers with, and how it waits without them. Config types, so that
//! the config does not depend on the app that enforces them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One rate window: at most `requests` per `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Window {
    /// Requests allowed in one period.
    pub requests: u32,
    /// The window's length (serialised in seconds).
    #[serde(serialize_with = "secs")]
    pub period: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// How `X-RateLimit-Reset` is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResetMeaning {
    /// Up to 10^9: seconds from now; above: Unix seconds; above 10^12: Unix milliseconds.
    #[default]
    Auto,
    /// Seconds from now.
    Seconds,
    /// A Unix time in seconds.
    Epoch,
}

/// What a 429 without `Retry-After` (and a count at the reserve without a reset) waits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoWaitPolicy {
    /// Exponential back-off with jitter: 1 s, 2 s, 4 s … up to 2 minutes.
    #[default]
    Backoff,
    /// Until the next clock hour (UTC), as Syncari does for Freshworks' hourly quota.
    NextHour,
}

/// A number of requests, absolute or as a share of the limit the app reports.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Share {
    /// This many requests.
    Requests(u32),
    /// This share (0..1) of `X-RateLimit-Limit` (nothing when the app sends no limit).
    Of(f64),
}

impl Share {
    /// The number of requests this is, given the limit the app reports.
    pub fn of(self, limit: Option<u32>) -> u32 {
        match self {
            Share::Requests(n) => n,
            Share::Of(f) => limit.map_or(0, |l| (f64::from(l) * f).ceil() as u32),
        }
    }
}

/// How one account's budget reads the app's rate-limit headers and waits without them.
/// Per connection: `[connections.NAME.rate-limit]`; connections of one account merge
/// (the stricter setting wins).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct RatePolicy {
    /// Read `X-RateLimit-*` from responses.
    pub headers: bool,
    /// What `X-RateLimit-Reset` means.
    pub reset: ResetMeaning,
    /// Requests left to the app's other users: the account pauses until the reset when
    /// the app's count falls to this.
    pub reserve: Share,
    /// Below this many requests left, requests are spread evenly until the reset.
    pub slow_below: Share,
    /// The wait after a 429 without `Retry-After`.
    pub no_wait: NoWaitPolicy,
    /// The longest `Retry-After` honoured: a longer one (from the app, or made up by a
    /// plugin) blocks the account for this long only.
    #[serde(serialize_with = "secs")]
    pub max_retry_after: Duration,
    /// The fewest requests per hour a connector's declared limits may allow: a declared
    /// window below it (1 request a day...) is raised to it. The operator's own `limits`
    /// are taken as written.
    pub min_declared_per_hour: u32,
}

impl Default for RatePolicy {
    fn default() -> Self {
        RatePolicy {
            headers: true,
            reset: ResetMeaning::Auto,
            reserve: Share::Requests(0),
            slow_below: Share::Of(0.1),
            no_wait: NoWaitPolicy::Backoff,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
            min_declared_per_hour: DEFAULT_MIN_DECLARED_PER_HOUR,
        }
    }
}

/// The default longest `Retry-After` honoured (Freshworks' quotas are hourly).
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// The default floor of a connector's declared limits, in requests per hour.
pub const DEFAULT_MIN_DECLARED_PER_HOUR: u32 = 60;

impl RatePolicy {
    /// The stricter of two policies, setting by setting (the reset's meaning: `self`'s
    /// unless it is `auto`).
    pub fn stricter(self, other: RatePolicy) -> RatePolicy {
        let max = |a: Share, b: Share| match (a, b) {
            (Share::Requests(x), Share::Requests(y)) => Share::Requests(x.max(y)),
            (Share::Of(x), Share::Of(y)) => Share::Of(x.max(y)),
            // Mixed kinds cannot be compared without the limit: keep the share.
            (s @ Share::Of(_), _) | (_, s @ Share::Of(_)) => s,
        };
        RatePolicy {
            headers: self.headers || other.headers,
            reset: if self.reset == ResetMeaning::Auto {
                other.reset
            } else {
                self.reset
            },
            reserve: max(self.reserve, other.reserve),
            slow_below: max(self.slow_below, other.slow_below),
            no_wait: if self.no_wait == NoWaitPolicy::NextHour {
                self.no_wait
            } else {
                other.no_wait
            },
            // The more protective of the two caps.
            max_retry_after: self.max_retry_after.min(other.max_retry_after),
            min_declared_per_hour: self.min_declared_per_hour.max(other.min_declared_per_hour),
        }
    }

    /// Declared windows raised to the floor (`min_declared_per_hour`, pro rata).
    pub fn floored(&self, windows: &[Window]) -> Vec<Window> {
        windows
            .iter()
            .map(|w| {
                let floor = (f64::from(self.min_declared_per_hour) * w.period.as_secs_f64()
                    / 3600.0)
                    .ceil()
                    .min(f64::from(u32::MAX)) as u32;
                if w.requests < floor {
                    tracing::warn!(
                        requests = w.requests,
                        period_secs = w.period.as_secs(),
                        floor,
                        "a connector declared a rate limit below the floor (rate-limit.min-declared-per-hour): raised"
                    );
                }
                Window {
                    requests: w.requests.max(floor),
                    period: w.period,
                }
            })
            .collect()
    }
}
