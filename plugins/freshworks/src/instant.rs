//! Timestamps: Freshworks writes ISO-8601 with the account's offset
//! (`2021-10-19T00:28:18-06:00`); they are compared as instants and handed over in UTC.

use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime, UtcOffset};

/// Parses an RFC 3339 / ISO-8601 date-time with offset.
pub fn parse(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text.trim(), &Rfc3339).ok()
}

/// Formats an instant in UTC, seconds precision (`2021-10-19T06:28:18Z`).
pub fn format(at: OffsetDateTime) -> String {
    let utc = at
        .to_offset(UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(at);
    utc.format(&Rfc3339).unwrap_or_default()
}

/// The same instant in UTC, or `None` when the text is not a date-time.
pub fn normalize(text: &str) -> Option<String> {
    parse(text).map(format)
}

/// `text` minus `secs` seconds, in UTC.
pub fn minus_secs(text: &str, secs: i64) -> Option<String> {
    parse(text).map(|at| format(at - Duration::seconds(secs)))
}

/// The later of two date-times (unparsable values lose).
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
    fn instants() {
        assert_eq!(
            normalize("2021-10-19T00:28:18-06:00").as_deref(),
            Some("2021-10-19T06:28:18Z")
        );
        assert_eq!(
            normalize("2018-01-16T00:00:00+05:30").as_deref(),
            Some("2018-01-15T18:30:00Z")
        );
        assert_eq!(
            normalize("2019-09-18T06:55:54Z").as_deref(),
            Some("2019-09-18T06:55:54Z")
        );
        assert_eq!(
            normalize("2019-09-18T06:55:54.734Z").as_deref(),
            Some("2019-09-18T06:55:54Z")
        );
        assert_eq!(normalize("2019-09-18"), None);
        assert_eq!(
            minus_secs("2021-10-19T00:00:30Z", 120).as_deref(),
            Some("2021-10-18T23:58:30Z")
        );
        // Compared as instants, not as text: 01:00+02:00 is before 00:30Z.
        assert_eq!(
            later(
                Some("2024-01-01T01:00:00+02:00".into()),
                Some("2024-01-01T00:30:00Z".into())
            )
            .as_deref(),
            Some("2024-01-01T00:30:00Z")
        );
        assert_eq!(later(None, Some("x".into())).as_deref(), Some("x"));
        assert_eq!(
            later(Some("bad".into()), Some("2024-01-01T00:30:00Z".into())).as_deref(),
            Some("2024-01-01T00:30:00Z")
        );
        assert_eq!(later(None, None), None);
    }
}
