//! Outbound HTTP through the host, with typed JSON helpers (connectors only).
//!
//! The host performs every request: it checks the URL against the origins the plugin's
//! manifest asks for and the operator granted, caps sizes and time, follows (and
//! re-checks) redirects, and attaches the credentials of the connection. A plugin never
//! sets or sees `Authorization`.
//!
//! Non-2xx answers become contract [`Error`]s with [`status_error`], so connectors
//! report failures the way the host expects to retry them:
//!
//! | HTTP                         | `Error`                                   |
//! |------------------------------|-------------------------------------------|
//! | 401                          | `Unauthorized`                            |
//! | 403                          | `Forbidden`                               |
//! | 404, 410                     | `NotFound`                                |
//! | 409, 412                     | `Conflict`                                |
//! | 429                          | `RateLimited` (`Retry-After`, `X-RateLimit-Reset`) |
//! | 400, 422                     | `Invalid`                                 |
//! | 408, 5xx, timeout, transport, truncated body | `Transient`               |
//! | other 4xx, denied by the host | `Fatal`                                  |
//!
//! ```no_run
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Me { id: String }
//!
//! # fn main() -> Result<(), tandem_sdk::Error> {
//! let me: Me = tandem_sdk::http::get_json("https://api.example.com/me")?;
//! let created: Me = tandem_sdk::http::post("https://api.example.com/contacts")
//!     .json(&serde_json::json!({ "email": "ann@example.com" }))
//!     .send_json()?;
//! # let _ = (me.id, created.id);
//! # Ok(())
//! # }
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;

pub use crate::__bindings::connector::tandem::plugin::http::{
    HttpError, Method, Request, Response,
};

/// The longest excerpt of a response body quoted in an error message.
const BODY_EXCERPT: usize = 200;

/// Sends one request through the host, as is (no status check).
pub fn send(req: &Request) -> Result<Response, HttpError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::__bindings::connector::tandem::plugin::http::send(req)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::http_send(req)
    }
}

/// A request being built. Start with [`get`], [`post`], [`put`], [`patch`],
/// [`delete`] or [`request`].
#[derive(Debug, Clone)]
#[must_use = "a request does nothing until it is sent"]
pub struct RequestBuilder {
    req: Request,
    /// A body that failed to serialize, reported by `send`.
    error: Option<String>,
}

/// Starts a request.
pub fn request(method: Method, url: impl Into<String>) -> RequestBuilder {
    RequestBuilder {
        req: Request {
            method,
            url: url.into(),
            headers: vec![("accept".to_owned(), "application/json".to_owned())],
            body: None,
            timeout_ms: None,
        },
        error: None,
    }
}

/// Starts a `GET`.
pub fn get(url: impl Into<String>) -> RequestBuilder {
    request(Method::Get, url)
}

/// Starts a `POST`.
pub fn post(url: impl Into<String>) -> RequestBuilder {
    request(Method::Post, url)
}

/// Starts a `PUT`.
pub fn put(url: impl Into<String>) -> RequestBuilder {
    request(Method::Put, url)
}

/// Starts a `PATCH`.
pub fn patch(url: impl Into<String>) -> RequestBuilder {
    request(Method::Patch, url)
}

/// Starts a `DELETE`.
pub fn delete(url: impl Into<String>) -> RequestBuilder {
    request(Method::Delete, url)
}

impl RequestBuilder {
    /// Adds a header (credentials are the host's job: `Authorization` is dropped).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.req.headers.push((name.into(), value.into()));
        self
    }

    /// Sets a JSON body and its `content-type`.
    pub fn json<B: Serialize + ?Sized>(mut self, body: &B) -> Self {
        match serde_json::to_vec(body) {
            Ok(bytes) => {
                self.req.body = Some(bytes);
                self.req
                    .headers
                    .push(("content-type".to_owned(), "application/json".to_owned()));
            }
            Err(e) => self.error = Some(format!("cannot encode the request body as JSON: {e}")),
        }
        self
    }

    /// Sets a raw body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.req.body = Some(body.into());
        self
    }

    /// Asks for a shorter timeout than the host's (longer values are capped by the host).
    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.req.timeout_ms = Some(ms);
        self
    }

    /// The request as built.
    pub fn as_request(&self) -> &Request {
        &self.req
    }

    /// Sends the request; any non-2xx status becomes an [`Error`] (see the module table).
    pub fn send(self) -> Result<Response, Error> {
        if let Some(message) = self.error {
            return Err(Error::fatal(message));
        }
        let response = send(&self.req).map_err(|e| with_context(&self.req, e.into()))?;
        match status_error(response.status, &response.headers, &response.body) {
            Some(error) => Err(with_context(&self.req, error)),
            None => Ok(response),
        }
    }

    /// Sends the request and decodes a 2xx JSON answer.
    pub fn send_json<T: DeserializeOwned>(self) -> Result<T, Error> {
        let method = self.req.method;
        let url = self.req.url.clone();
        let response = self.send()?;
        parse_json(&response.body)
            .map_err(|e| Error::transient(format!("{} {url}: {e}", method_name(method))))
    }
}

/// `GET url` and decode the JSON answer.
pub fn get_json<T: DeserializeOwned>(url: &str) -> Result<T, Error> {
    get(url).send_json()
}

/// Sends `body` as JSON with `method` and decodes the JSON answer.
pub fn send_json<B: Serialize + ?Sized, T: DeserializeOwned>(
    method: Method,
    url: &str,
    body: &B,
) -> Result<T, Error> {
    request(method, url).json(body).send_json()
}

impl Response {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Decodes the body as JSON; a body that does not parse (truncated, not JSON) is a
    /// transient error.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        parse_json(&self.body).map_err(Error::transient)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `X-RateLimit-Remaining`, when the app sends it: requests left in the window.
    pub fn rate_limit_remaining(&self) -> Option<u64> {
        self.header("x-ratelimit-remaining")
            .or_else(|| self.header("ratelimit-remaining"))
            .and_then(|v| v.trim().parse().ok())
    }
}

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    // An empty body (204 No Content) reads as `null`, so `()` and `Option<T>` accept it.
    if body.iter().all(u8::is_ascii_whitespace) {
        return serde_json::from_slice(b"null")
            .map_err(|e| format!("the response body is empty, expected JSON: {e}"));
    }
    serde_json::from_slice(body).map_err(|e| {
        if e.is_eof() {
            format!("the response body is truncated ({} bytes): {e}", body.len())
        } else {
            format!("the response body is not the expected JSON: {e}")
        }
    })
}

fn method_name(method: Method) -> &'static str {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
    }
}

/// Prefixes an error's message with the request line.
fn with_context(req: &Request, error: Error) -> Error {
    let prefix = format!("{} {}: ", method_name(req.method), req.url);
    match error {
        Error::Unauthorized(m) => Error::Unauthorized(prefix + &m),
        Error::Forbidden(m) => Error::Forbidden(prefix + &m),
        Error::NotFound(m) => Error::NotFound(prefix + &m),
        Error::Invalid(m) => Error::Invalid(prefix + &m),
        Error::Conflict(m) => Error::Conflict(prefix + &m),
        Error::CursorExpired(m) => Error::CursorExpired(prefix + &m),
        Error::Transient(m) => Error::Transient(prefix + &m),
        Error::Fatal(m) => Error::Fatal(prefix + &m),
        Error::RateLimited(mut info) => {
            info.message = prefix + &info.message;
            Error::RateLimited(info)
        }
    }
}

/// The first value of a header, by case-insensitive name.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Maps an HTTP status to the contract error, or `None` for 1xx-3xx.
///
/// The message carries the status and an excerpt of the body (the app's own message).
/// A 429 carries the wait read by [`retry_after_ms`].
pub fn status_error(status: u16, headers: &[(String, String)], body: &[u8]) -> Option<Error> {
    status_error_at(status, headers, body, now_unix_secs())
}

/// [`status_error`] with the current time given (seconds since the Unix epoch).
pub fn status_error_at(
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    now_unix_secs: u64,
) -> Option<Error> {
    if status < 400 {
        return None;
    }
    let message = format!("HTTP {status}{}", excerpt(body));
    Some(match status {
        401 => Error::Unauthorized(message),
        403 => Error::Forbidden(message),
        404 | 410 => Error::NotFound(message),
        409 | 412 => Error::Conflict(message),
        429 => Error::rate_limited(retry_after_ms(headers, now_unix_secs), message),
        400 | 422 => Error::Invalid(message),
        408 | 500..=599 => Error::Transient(message),
        _ => Error::Fatal(message),
    })
}

/// `": <first 200 chars of the body on one line>"`, or nothing for an empty body.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if one_line.is_empty() {
        return String::new();
    }
    if let Some((cut, _)) = one_line.char_indices().nth(BODY_EXCERPT) {
        one_line.truncate(cut);
        one_line.push('…');
    }
    format!(": {one_line}")
}

/// How long the app asked to wait, in milliseconds, from the response headers:
///
/// 1. `Retry-After`: delay in seconds, or an HTTP date;
/// 2. `X-RateLimit-Reset` (or `RateLimit-Reset`): seconds until the reset when small,
///    or the reset time as Unix seconds (values above 10^9) or milliseconds (above
///    10^12), since apps differ.
///
/// `None` when no header says. A reset in the past means "now" (0).
pub fn retry_after_ms(headers: &[(String, String)], now_unix_secs: u64) -> Option<u64> {
    if let Some(value) = header(headers, "retry-after").map(str::trim) {
        if let Ok(secs) = value.parse::<u64>() {
            return Some(secs.saturating_mul(1000));
        }
        if let Ok(secs) = value.parse::<f64>()
            && secs.is_finite()
            && secs >= 0.0
        {
            return Some((secs * 1000.0) as u64);
        }
        if let Ok(date) = httpdate::parse_http_date(value) {
            let at = date
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            return Some(at.saturating_sub(now_unix_secs).saturating_mul(1000));
        }
    }
    let reset = header(headers, "x-ratelimit-reset")
        .or_else(|| header(headers, "ratelimit-reset"))?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(match reset {
        r if r > 1_000_000_000_000 => r.saturating_sub(now_unix_secs.saturating_mul(1000)),
        r if r > 1_000_000_000 => r.saturating_sub(now_unix_secs).saturating_mul(1000),
        r => r.saturating_mul(1000),
    })
}

fn now_unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl From<HttpError> for Error {
    fn from(error: HttpError) -> Self {
        match error {
            HttpError::Denied(why) => Error::fatal(format!(
                "the host denied the request ({why}); the origin must be listed in the plugin's [http] origins and granted by the operator"
            )),
            HttpError::InvalidRequest(why) => Error::fatal(format!("invalid request: {why}")),
            HttpError::Timeout => Error::transient("no answer within the timeout"),
            HttpError::TooLarge(cap) => Error::fatal(format!(
                "the body exceeds the host's cap of {cap} bytes; request smaller pages"
            )),
            HttpError::Transport(why) => Error::transient(format!("transport failure: {why}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const NOW: u64 = 1_700_000_000;

    #[test]
    fn status_mapping_follows_the_contract() {
        let none = headers(&[]);
        let at = |s| status_error_at(s, &none, b"", NOW);
        assert_eq!(at(200), None);
        assert_eq!(at(304), None);
        assert!(matches!(at(401), Some(Error::Unauthorized(_))));
        assert!(matches!(at(403), Some(Error::Forbidden(_))));
        assert!(matches!(at(404), Some(Error::NotFound(_))));
        assert!(matches!(at(410), Some(Error::NotFound(_))));
        assert!(matches!(at(409), Some(Error::Conflict(_))));
        assert!(matches!(at(412), Some(Error::Conflict(_))));
        assert!(matches!(at(400), Some(Error::Invalid(_))));
        assert!(matches!(at(422), Some(Error::Invalid(_))));
        assert!(matches!(at(408), Some(Error::Transient(_))));
        assert!(matches!(at(500), Some(Error::Transient(_))));
        assert!(matches!(at(503), Some(Error::Transient(_))));
        assert!(matches!(at(405), Some(Error::Fatal(_))));
        assert_eq!(at(429), Some(Error::rate_limited(None, "HTTP 429")));
    }

    #[test]
    fn error_message_quotes_the_body_on_one_line() {
        let err =
            status_error_at(422, &[], b"{\"errors\":\n  [\"email is invalid\"]}", NOW).unwrap();
        assert_eq!(
            err.message(),
            "HTTP 422: {\"errors\": [\"email is invalid\"]}"
        );
        let long = "x".repeat(500);
        let err = status_error_at(500, &[], long.as_bytes(), NOW).unwrap();
        assert_eq!(
            err.message().chars().count(),
            "HTTP 500: ".len() + BODY_EXCERPT + 1
        );
    }

    #[test]
    fn rate_limit_carries_retry_after() {
        let err = status_error_at(429, &headers(&[("Retry-After", "7")]), b"", NOW).unwrap();
        assert_eq!(err, Error::rate_limited(Some(7000), "HTTP 429"));
    }

    #[test]
    fn retry_after_seconds_date_and_fraction() {
        assert_eq!(
            retry_after_ms(&headers(&[("retry-after", " 30 ")]), NOW),
            Some(30_000)
        );
        assert_eq!(
            retry_after_ms(&headers(&[("Retry-After", "1.5")]), NOW),
            Some(1_500)
        );
        let in_90s = httpdate::fmt_http_date(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(NOW + 90),
        );
        assert_eq!(
            retry_after_ms(&headers(&[("Retry-After", &in_90s)]), NOW),
            Some(90_000)
        );
        let past = httpdate::fmt_http_date(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(NOW - 5),
        );
        assert_eq!(
            retry_after_ms(&headers(&[("Retry-After", &past)]), NOW),
            Some(0)
        );
    }

    #[test]
    fn retry_after_from_ratelimit_reset() {
        // Seconds until reset.
        assert_eq!(
            retry_after_ms(&headers(&[("X-RateLimit-Reset", "60")]), NOW),
            Some(60_000)
        );
        // Unix seconds.
        let epoch = (NOW + 120).to_string();
        assert_eq!(
            retry_after_ms(&headers(&[("x-ratelimit-reset", &epoch)]), NOW),
            Some(120_000)
        );
        // Unix milliseconds.
        let millis = (NOW * 1000 + 2_500).to_string();
        assert_eq!(
            retry_after_ms(&headers(&[("RateLimit-Reset", &millis)]), NOW),
            Some(2_500)
        );
        // Retry-After wins over the reset header.
        let both = headers(&[("x-ratelimit-reset", "60"), ("retry-after", "2")]);
        assert_eq!(retry_after_ms(&both, NOW), Some(2_000));
        // Nothing usable.
        assert_eq!(
            retry_after_ms(&headers(&[("x-ratelimit-reset", "soon")]), NOW),
            None
        );
        assert_eq!(retry_after_ms(&headers(&[]), NOW), None);
    }

    #[test]
    fn http_errors_map_to_retryable_or_not() {
        assert!(Error::from(HttpError::Timeout).is_retryable());
        assert!(Error::from(HttpError::Transport("reset".into())).is_retryable());
        assert!(matches!(
            Error::from(HttpError::Denied("origin".into())),
            Error::Fatal(_)
        ));
        assert!(matches!(
            Error::from(HttpError::TooLarge(10)),
            Error::Fatal(_)
        ));
    }

    #[test]
    fn header_lookup_is_case_insensitive() {
        let h = headers(&[
            ("Content-Type", "application/json"),
            ("X-RateLimit-Remaining", "12"),
        ]);
        assert_eq!(header(&h, "content-type"), Some("application/json"));
        let response = Response {
            status: 200,
            headers: h,
            body: b"{}".to_vec(),
        };
        assert_eq!(response.rate_limit_remaining(), Some(12));
        assert!(response.is_success());
    }

    #[test]
    fn empty_body_reads_as_null() {
        let response = Response {
            status: 204,
            headers: vec![],
            body: vec![],
        };
        response.json::<()>().unwrap();
        assert_eq!(response.json::<Option<u32>>().unwrap(), None);
        let err = response.json::<Vec<u32>>().unwrap_err();
        assert!(err.message().contains("empty"), "{err:?}");
    }

    #[test]
    fn truncated_json_is_transient() {
        let response = Response {
            status: 200,
            headers: vec![],
            body: b"{\"id\": \"1".to_vec(),
        };
        let err = response.json::<serde_json::Value>().unwrap_err();
        assert!(
            matches!(err, Error::Transient(ref m) if m.contains("truncated")),
            "{err:?}"
        );
    }
}
