//! Freshworks HTTP answers to contract errors, quoting the app's own message.
//!
//! The status decides the case (the SDK's table: 401 `unauthorized`, 403 `forbidden`,
//! 404 `not-found`, 429 `rate-limited`, 400/422 `invalid`, 5xx `transient`, …); this
//! module only swaps the raw body excerpt for the message Freshworks puts in it:
//!
//! ```text
//! {"errors":{"code":400,"message":["Email is invalid","Last name can't be blank"]}}
//! {"login":"failed","message":"Incorrect or expired API key"}
//! ```
//!
//! A 429 carries the wait from `Retry-After`, else from `X-RateLimit-Reset` (Freshworks
//! sends no `Retry-After`); when neither is present the host's own back-off applies.

use serde_json::Value as Json;
use tandem_sdk::Error;

/// The app's message in an error body: `errors.message` (list or text), `message`,
/// `errors` (list or text) or `error`, joined with `; `. `None` for other bodies.
pub fn app_message(body: &[u8]) -> Option<String> {
    let json: Json = serde_json::from_slice(body).ok()?;
    let candidates = [
        json.pointer("/errors/message"),
        json.get("message"),
        json.get("errors"),
        json.get("error"),
        json.pointer("/errors/0/message"),
    ];
    candidates.into_iter().flatten().find_map(text_of)
}

fn text_of(value: &Json) -> Option<String> {
    let text = match value {
        Json::String(s) => s.trim().to_owned(),
        Json::Array(items) => items
            .iter()
            .filter_map(|item| match item {
                Json::String(s) => Some(s.trim().to_owned()),
                Json::Object(o) => o.get("message").and_then(text_of),
                _ => None,
            })
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("; "),
        _ => return None,
    };
    (!text.is_empty()).then(|| one_line(&text))
}

fn one_line(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

/// The contract error for an HTTP answer, or `None` for 1xx–3xx.
pub fn status_error(status: u16, headers: &[(String, String)], body: &[u8]) -> Option<Error> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    status_error_at(status, headers, body, now)
}

/// [`status_error`] at a given time (Unix seconds), for `X-RateLimit-Reset` epochs.
pub fn status_error_at(
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    now_unix_secs: u64,
) -> Option<Error> {
    let error = tandem_sdk::http::status_error_at(status, headers, body, now_unix_secs)?;
    let Some(app) = app_message(body) else {
        return Some(error);
    };
    let message = format!("HTTP {status}: {app}");
    Some(match error {
        Error::Unauthorized(_) => Error::Unauthorized(message),
        Error::Forbidden(_) => Error::Forbidden(message),
        Error::NotFound(_) => Error::NotFound(message),
        Error::Invalid(_) => Error::Invalid(message),
        Error::Conflict(_) => Error::Conflict(message),
        Error::CursorExpired(_) => Error::CursorExpired(message),
        Error::Transient(_) => Error::Transient(message),
        Error::Fatal(_) => Error::Fatal(message),
        Error::RateLimited(mut info) => {
            info.message = message;
            Error::RateLimited(info)
        }
    })
}

/// True for errors that concern the whole account rather than one record: after one
/// of these, further requests of the same call would fail the same way.
pub fn is_account_wide(error: &Error) -> bool {
    matches!(
        error,
        Error::RateLimited(_) | Error::Unauthorized(_) | Error::Forbidden(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_wide_errors() {
        assert!(is_account_wide(&Error::unauthorized("")));
        assert!(!is_account_wide(&Error::invalid("")));
        assert!(!is_account_wide(&Error::transient("")));
    }

    const NOW: u64 = 1_700_000_000;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// (status, headers, body, expected error).
    type Case<'a> = (u16, &'a [(&'a str, &'a str)], &'a str, Option<Error>);

    /// Every status Freshworks answers, with the bodies docs/freshworks-api.md §9 shows.
    #[test]
    fn status_and_body_to_error() {
        let cases: &[Case] = &[
            (200, &[], r#"{"contact":{}}"#, None),
            (204, &[], "", None),
            (
                401,
                &[],
                r#"{"login":"failed","message":"Incorrect or expired API key"}"#,
                Some(Error::unauthorized(
                    "HTTP 401: Incorrect or expired API key",
                )),
            ),
            (
                401,
                &[],
                r#"{"errors":{"code":401,"message":["Incorrect or expired API key"]}}"#,
                Some(Error::unauthorized(
                    "HTTP 401: Incorrect or expired API key",
                )),
            ),
            (
                403,
                &[],
                r#"{"errors":{"code":403,"message":["You don't have permission to access this resource"]}}"#,
                Some(Error::forbidden(
                    "HTTP 403: You don't have permission to access this resource",
                )),
            ),
            (
                404,
                &[],
                r#"{"errors":{"code":404,"message":"Record not found"}}"#,
                Some(Error::not_found("HTTP 404: Record not found")),
            ),
            (404, &[], "", Some(Error::not_found("HTTP 404"))),
            (
                400,
                &[],
                r#"{"errors":{"code":400,"message":["Email is invalid","Last name can't be blank"]}}"#,
                Some(Error::invalid(
                    "HTTP 400: Email is invalid; Last name can't be blank",
                )),
            ),
            (
                422,
                &[],
                r#"{"errors":["Amount is not a number"]}"#,
                Some(Error::invalid("HTTP 422: Amount is not a number")),
            ),
            (
                429,
                &[
                    ("X-RateLimit-Limit", "1000"),
                    ("X-RateLimit-Remaining", "0"),
                    ("X-RateLimit-Reset", "1700000060"),
                ],
                r#"{"errors":{"code":429,"message":["Too many requests"]}}"#,
                Some(Error::rate_limited(
                    Some(60_000),
                    "HTTP 429: Too many requests",
                )),
            ),
            (
                429,
                &[("x-ratelimit-reset", "30")],
                "",
                Some(Error::rate_limited(Some(30_000), "HTTP 429")),
            ),
            (
                429,
                &[("Retry-After", "5"), ("X-RateLimit-Reset", "1700000060")],
                "",
                Some(Error::rate_limited(Some(5_000), "HTTP 429")),
            ),
            (
                429,
                &[],
                "Too Many Requests",
                Some(Error::rate_limited(None, "HTTP 429: Too Many Requests")),
            ),
            (
                500,
                &[],
                r#"{"errors":{"code":500,"message":["Something went wrong"]}}"#,
                Some(Error::transient("HTTP 500: Something went wrong")),
            ),
            (
                502,
                &[],
                "<html>Bad gateway</html>",
                Some(Error::transient("HTTP 502: <html>Bad gateway</html>")),
            ),
            (503, &[], "", Some(Error::transient("HTTP 503"))),
            (
                405,
                &[],
                r#"{"message":"Method not allowed"}"#,
                Some(Error::fatal("HTTP 405: Method not allowed")),
            ),
        ];
        for (status, hdrs, body, expected) in cases {
            let got = status_error_at(*status, &headers(hdrs), body.as_bytes(), NOW);
            assert_eq!(&got, expected, "status {status} body {body}");
        }
    }

    #[test]
    fn app_messages_are_one_line_and_bounded() {
        assert_eq!(
            app_message(br#"{"message":"  a\n  b "}"#).as_deref(),
            Some("a b")
        );
        assert_eq!(
            app_message(br#"{"errors":[{"message":"x"},{"message":"y"}]}"#).as_deref(),
            Some("x; y")
        );
        assert_eq!(app_message(br#"{"error":"bad"}"#).as_deref(), Some("bad"));
        assert_eq!(app_message(br#"{"other":1}"#), None);
        assert_eq!(app_message(b"not json"), None);
        let long = format!(r#"{{"message":"{}"}}"#, "z".repeat(1000));
        assert_eq!(app_message(long.as_bytes()).unwrap().chars().count(), 301);
    }
}
