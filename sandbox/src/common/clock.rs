//! The sandbox clock: every timestamp a simulated account issues comes from here.
//!
//! One [`Clock`] is shared by all accounts of a [`crate::Sandbox`], so advancing it (through the
//! control API or [`Clock::advance`]) moves `updated_at` values, token expiries and rate-limit
//! windows of every account together. Two modes:
//! * **system** — wall time plus an offset that `advance` grows (the default for `tandem sandbox`);
//! * **manual** — frozen at a start instant; only `advance`/`set` move it (deterministic tests).
//!
//! Readings never go backwards, even if the wall clock steps back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

/// How the clock moves between explicit advances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockMode {
    /// Wall time plus the accumulated offset.
    System,
    /// Frozen; moves only when advanced or set.
    Manual,
}

#[derive(Debug)]
struct State {
    mode: ClockMode,
    /// Manual mode: the current instant. System mode: unused.
    manual_now: OffsetDateTime,
    /// System mode: added to wall time.
    offset: time::Duration,
    /// Last instant handed out, to keep readings monotonic.
    last: OffsetDateTime,
}

/// A shared, advanceable clock (cheap to clone; clones share the same time).
#[derive(Debug, Clone)]
pub struct Clock {
    inner: Arc<Mutex<State>>,
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl Clock {
    /// A clock that follows wall time (plus whatever it is advanced by).
    pub fn system() -> Self {
        let now = OffsetDateTime::now_utc();
        Self::from_state(ClockMode::System, now)
    }

    /// A frozen clock starting at `start`; it moves only through [`advance`](Self::advance)
    /// and [`set`](Self::set).
    pub fn manual(start: OffsetDateTime) -> Self {
        Self::from_state(ClockMode::Manual, start)
    }

    fn from_state(mode: ClockMode, now: OffsetDateTime) -> Self {
        Self {
            inner: Arc::new(Mutex::new(State {
                mode,
                manual_now: now,
                offset: time::Duration::ZERO,
                last: now,
            })),
        }
    }

    /// The current instant (UTC), never earlier than any previous reading.
    pub fn now(&self) -> OffsetDateTime {
        let mut s = self.lock();
        let raw = match s.mode {
            ClockMode::System => OffsetDateTime::now_utc() + s.offset,
            ClockMode::Manual => s.manual_now,
        };
        let now = raw.max(s.last);
        s.last = now;
        now
    }

    /// The current instant as whole seconds since the Unix epoch.
    pub fn unix_seconds(&self) -> i64 {
        self.now().unix_timestamp()
    }

    /// Move the clock forward by `by`.
    pub fn advance(&self, by: Duration) -> OffsetDateTime {
        let by = time::Duration::try_from(by).unwrap_or(time::Duration::MAX);
        {
            let mut s = self.lock();
            match s.mode {
                ClockMode::System => s.offset = s.offset.saturating_add(by),
                ClockMode::Manual => s.manual_now = s.manual_now.saturating_add(by),
            }
        }
        self.now()
    }

    /// Move the clock to `to` if that is later than now; earlier instants are ignored so that
    /// readings stay monotonic. Returns the resulting time.
    pub fn set(&self, to: OffsetDateTime) -> OffsetDateTime {
        let now = self.now();
        if to > now {
            self.advance(Duration::try_from(to - now).unwrap_or(Duration::ZERO));
        }
        self.now()
    }

    /// The clock's mode.
    pub fn mode(&self) -> ClockMode {
        self.lock().mode
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned clock still holds a valid instant: keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Format an instant as RFC 3339 / ISO-8601 with whole seconds in the given UTC offset
/// (`Z` for UTC), e.g. `2021-10-19T00:28:18-06:00`.
pub fn format_seconds(t: OffsetDateTime, offset: time::UtcOffset) -> String {
    let t = t.to_offset(offset).replace_nanosecond(0).unwrap_or(t);
    let fmt = if offset.is_utc() {
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z")
    } else {
        time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory]:[offset_minute]"
        )
    };
    t.format(&fmt).unwrap_or_default()
}

/// Parse an RFC 3339 timestamp (any offset).
pub fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let c = Clock::manual(datetime!(2024-01-01 0:00 UTC));
        assert_eq!(c.now(), datetime!(2024-01-01 0:00 UTC));
        c.advance(Duration::from_secs(90));
        assert_eq!(c.now(), datetime!(2024-01-01 0:01:30 UTC));
        // Setting backwards is ignored.
        c.set(datetime!(2023-01-01 0:00 UTC));
        assert_eq!(c.now(), datetime!(2024-01-01 0:01:30 UTC));
        c.set(datetime!(2024-02-01 0:00 UTC));
        assert_eq!(c.now(), datetime!(2024-02-01 0:00 UTC));
    }

    #[test]
    fn system_clock_advance_adds_offset() {
        let c = Clock::system();
        let before = c.now();
        c.advance(Duration::from_secs(3600));
        assert!(c.now() - before >= time::Duration::hours(1));
    }

    #[test]
    fn clones_share_time() {
        let c = Clock::manual(datetime!(2024-01-01 0:00 UTC));
        let d = c.clone();
        d.advance(Duration::from_secs(5));
        assert_eq!(c.now(), datetime!(2024-01-01 0:00:05 UTC));
    }

    #[test]
    fn formats_with_offset_and_z() {
        let t = datetime!(2021-10-19 06:28:18.5 UTC);
        assert_eq!(
            format_seconds(t, time::macros::offset!(-06:00)),
            "2021-10-19T00:28:18-06:00"
        );
        assert_eq!(
            format_seconds(t, time::UtcOffset::UTC),
            "2021-10-19T06:28:18Z"
        );
        assert_eq!(
            parse_rfc3339("2021-10-19T00:28:18-06:00"),
            Some(datetime!(2021-10-19 06:28:18 UTC))
        );
    }
}
