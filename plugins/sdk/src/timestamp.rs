//! RFC 3339 timestamps, the contract's form for `updated_at` and date-time values.
//!
//! Apps write ISO 8601 with their own offset (`2021-10-19T00:28:18-06:00`) or fractions of
//! a second; compare them as instants and hand them over in UTC. Built on the `time`
//! crate (no clock needed: it builds for `wasm32-wasip2` as it is).

use time::format_description::well_known::Rfc3339;
use time::{Duration, UtcOffset};

pub use time::OffsetDateTime;

/// Parses an RFC 3339 date-time with offset (surrounding spaces ignored).
///
/// ```
/// let at = tandem_sdk::timestamp::parse("2021-10-19T00:28:18-06:00").unwrap();
/// assert_eq!(tandem_sdk::timestamp::format(at), "2021-10-19T06:28:18Z");
/// assert!(tandem_sdk::timestamp::parse("2021-10-19").is_none());
/// ```
pub fn parse(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text.trim(), &Rfc3339).ok()
}

/// Formats an instant in UTC to the second (`2021-10-19T06:28:18Z`).
pub fn format(at: OffsetDateTime) -> String {
    let utc = at
        .to_offset(UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(at);
    utc.format(&Rfc3339).unwrap_or_default()
}

/// Formats seconds since the Unix epoch (`None` outside the years 1 to 9999).
pub fn from_unix_secs(secs: i64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp(secs).ok().map(format)
}

/// The same instant in UTC to the second, or `None` when `text` is not a date-time.
pub fn normalize(text: &str) -> Option<String> {
    parse(text).map(format)
}

/// `text` minus `secs` seconds, in UTC: the overlap of a one-second checkpoint
/// (plugins/README.md, "One-second checkpoints").
pub fn minus_secs(text: &str, secs: i64) -> Option<String> {
    parse(text).map(|at| format(at - Duration::seconds(secs)))
}

/// The later of two date-times, compared as instants; a value that does not parse loses.
pub fn later(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => match (parse(&a), parse(&b)) {
            (Some(x), Some(y)) => Some(if y > x { b } else { a }),
            (Some(_), None) => Some(a),
            (None, _) => Some(b),
        },
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_in_utc() {
        assert_eq!(
            normalize("2018-01-16T00:00:00+05:30").as_deref(),
            Some("2018-01-15T18:30:00Z")
        );
        assert_eq!(
            normalize(" 2019-09-18T06:55:54.734Z ").as_deref(),
            Some("2019-09-18T06:55:54Z")
        );
        assert_eq!(normalize("yesterday"), None);
        assert_eq!(
            minus_secs("2021-10-19T00:00:30Z", 120).as_deref(),
            Some("2021-10-18T23:58:30Z")
        );
        assert_eq!(from_unix_secs(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        let (a, b) = ("2021-10-19T00:00:00-06:00", "2021-10-19T05:00:00Z");
        assert_eq!(later(Some(a.into()), Some(b.into())).as_deref(), Some(a));
        assert_eq!(later(Some("x".into()), Some(b.into())).as_deref(), Some(b));
        assert_eq!(later(None, Some(b.into())).as_deref(), Some(b));
    }
}
