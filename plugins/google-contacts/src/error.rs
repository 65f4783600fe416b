//! Google's error replies to contract errors.
//!
//! Google answers with one JSON envelope (`docs/google-people-api.md` §1.3):
//! `{"error":{"code","message","status","details":[{"@type","reason",...}],"errors":[...]}}`.
//! Batch methods report per-item failures as a `google.rpc.Status` (`{"code": <gRPC
//! code>, "message", "details"}`). Both are classified by one table, branching on
//! `status` and `details[].reason`, never on the message alone (docs/google-people-api.md §1.3), except where the
//! message is the steadier signal (docs/google-people-api.md §1.3: the expired sync token, the stale etag):
//!
//! | Google reply                                                    | contract error     |
//! |-----------------------------------------------------------------|--------------------|
//! | reason `EXPIRED_SYNC_TOKEN` or "Sync token is expired" (400, 410) | `cursor-expired` |
//! | 429, `RESOURCE_EXHAUSTED`, reason `RATE_LIMIT_EXCEEDED` (also on a 403), `QuotaFailure` | `rate-limited` (`Retry-After` when sent) |
//! | 401, `UNAUTHENTICATED`                                          | `unauthorized`     |
//! | 403, `PERMISSION_DENIED` (scope, API disabled)                  | `forbidden`        |
//! | 400 `FAILED_PRECONDITION` about the etag                        | `conflict`         |
//! | 404, `NOT_FOUND`, 410                                           | `not-found`        |
//! | 404 with an HTML body (no such path)                            | `fatal` (check `base-url`) |
//! | 5xx, 408, `ABORTED` (409, concurrent mutation), `UNAVAILABLE`, `INTERNAL`, `DEADLINE_EXCEEDED` | `transient` |
//! | 400 `INVALID_ARGUMENT` / other `FAILED_PRECONDITION`, 409 `ALREADY_EXISTS` | `invalid` |
//! | anything else                                                   | `fatal`            |
//!
//! A 2xx body that does not parse (truncated) is `transient`; that is decided where the
//! body is read.

use serde::Deserialize;
use serde_json::Value as Json;
use tandem_sdk::Error;

/// Message of the expired sync token reply (docs/google-people-api.md §3.1); matched when no reason is given.
const EXPIRED_TEXT: &str = "sync token is expired";

/// The `error` object of Google's envelope, and the shape of a `google.rpc.Status`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct Status {
    /// HTTP status (envelope) or gRPC code (`google.rpc.Status`).
    pub code: i64,
    /// Human-readable text.
    pub message: String,
    /// Canonical status string (`INVALID_ARGUMENT`...); absent in `google.rpc.Status`.
    pub status: String,
    /// Typed details: `ErrorInfo` (`reason`), `QuotaFailure`, `BadRequest`...
    pub details: Vec<Json>,
    /// The legacy `errors[]` array (`reason` such as `rateLimitExceeded`).
    pub errors: Vec<Json>,
}

impl Status {
    /// Every `reason` in `details[]` and the legacy `errors[]`.
    fn reasons(&self) -> Vec<&str> {
        self.details
            .iter()
            .chain(&self.errors)
            .filter_map(|d| d.get("reason").and_then(Json::as_str))
            .collect()
    }

    /// Whether a `google.rpc.QuotaFailure` detail is present.
    fn has_quota_failure(&self) -> bool {
        self.details.iter().any(|d| {
            d.get("@type")
                .and_then(Json::as_str)
                .is_some_and(|t| t.ends_with("google.rpc.QuotaFailure"))
        })
    }
}

#[derive(Deserialize)]
struct Envelope {
    error: Option<Json>,
}

/// The contract error for a non-2xx reply. `retry_after_ms` is what the response
/// headers said (see [`tandem_sdk::http::retry_after_ms`]).
pub fn from_reply(http: u16, body: &[u8], retry_after_ms: Option<u64>) -> Error {
    let error = serde_json::from_slice::<Envelope>(body)
        .ok()
        .and_then(|e| e.error);
    match error {
        Some(Json::Object(object)) => {
            let status: Status = serde_json::from_value(Json::Object(object)).unwrap_or_default();
            classify(http, &status, retry_after_ms)
        }
        // The OAuth flat form `{"error": "invalid_grant", ...}` never comes from the
        // People API itself, but a proxy in front of it may answer so.
        Some(Json::String(code)) => classify(
            http,
            &Status {
                message: code,
                ..Status::default()
            },
            retry_after_ms,
        ),
        _ if http == 404 => Error::fatal(format!(
            "HTTP 404 without a Google error body: the People API has no such path; check the connection's `base-url` setting{}",
            excerpt(body)
        )),
        _ => classify(
            http,
            &Status {
                message: excerpt(body).trim_start_matches(": ").to_owned(),
                ..Status::default()
            },
            retry_after_ms,
        ),
    }
}

/// The contract error for a per-item `google.rpc.Status` of a batch reply (`code` is the
/// gRPC code). `None` when the status is OK (code 0 or absent).
pub fn from_rpc_status(status: &Status) -> Option<Error> {
    if status.code == 0 {
        return None;
    }
    let (http, name) = grpc(status.code);
    let status = Status {
        status: if status.status.is_empty() {
            name.to_owned()
        } else {
            status.status.clone()
        },
        ..status.clone()
    };
    Some(classify(http, &status, None))
}

/// The equivalent HTTP status and canonical name of a gRPC code.
fn grpc(code: i64) -> (u16, &'static str) {
    match code {
        1 => (499, "CANCELLED"),
        3 => (400, "INVALID_ARGUMENT"),
        4 => (504, "DEADLINE_EXCEEDED"),
        5 => (404, "NOT_FOUND"),
        6 => (409, "ALREADY_EXISTS"),
        7 => (403, "PERMISSION_DENIED"),
        8 => (429, "RESOURCE_EXHAUSTED"),
        9 => (400, "FAILED_PRECONDITION"),
        10 => (409, "ABORTED"),
        11 => (400, "OUT_OF_RANGE"),
        12 => (501, "UNIMPLEMENTED"),
        14 => (503, "UNAVAILABLE"),
        16 => (401, "UNAUTHENTICATED"),
        _ => (500, "INTERNAL"),
    }
}

/// The classification table of the module doc.
fn classify(http: u16, s: &Status, retry_after_ms: Option<u64>) -> Error {
    let reasons = s.reasons();
    let has = |r: &str| reasons.iter().any(|x| x.eq_ignore_ascii_case(r));
    let status = s.status.as_str();
    let message = one_line(http, s, &reasons);
    let lower = s.message.to_lowercase();

    if has("EXPIRED_SYNC_TOKEN") || lower.contains(EXPIRED_TEXT) {
        return Error::cursor_expired(message);
    }
    if http == 429
        || status == "RESOURCE_EXHAUSTED"
        || has("RATE_LIMIT_EXCEEDED")
        || has("rateLimitExceeded")
        || has("userRateLimitExceeded")
        || has("quotaExceeded")
        || s.has_quota_failure()
    {
        return Error::rate_limited(retry_after_ms, message);
    }
    if http == 401 || status == "UNAUTHENTICATED" {
        return Error::unauthorized(message);
    }
    if http == 403 || status == "PERMISSION_DENIED" {
        return Error::forbidden(message);
    }
    if status == "FAILED_PRECONDITION" && lower.contains("etag") {
        return Error::conflict(message);
    }
    if http == 404 || http == 410 || status == "NOT_FOUND" {
        return Error::not_found(message);
    }
    if http >= 500
        || http == 408
        || matches!(
            status,
            "ABORTED" | "UNAVAILABLE" | "INTERNAL" | "DEADLINE_EXCEEDED" | "CANCELLED"
        )
    {
        return Error::transient(message);
    }
    if matches!(http, 400 | 409 | 422)
        || matches!(
            status,
            "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" | "ALREADY_EXISTS"
        )
    {
        return Error::invalid(message);
    }
    Error::fatal(message)
}

/// `HTTP 400 FAILED_PRECONDITION (EXPIRED_SYNC_TOKEN): Sync token is expired…` on one line.
fn one_line(http: u16, s: &Status, reasons: &[&str]) -> String {
    let mut out = format!("HTTP {http}");
    if !s.status.is_empty() {
        out.push(' ');
        out.push_str(&s.status);
    }
    if !reasons.is_empty() {
        out.push_str(&format!(" ({})", reasons.join(", ")));
    }
    let text = s.message.split_whitespace().collect::<Vec<_>>().join(" ");
    if !text.is_empty() {
        out.push_str(": ");
        out.push_str(&text);
    }
    out
}

/// `": <first 200 chars of the body on one line>"`, or nothing for an empty body.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.is_empty() {
        return String::new();
    }
    let cut: String = one.chars().take(200).collect();
    format!(": {cut}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kind(e: &Error) -> &'static str {
        match e {
            Error::Unauthorized(_) => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not-found",
            Error::RateLimited(_) => "rate-limited",
            Error::Invalid(_) => "invalid",
            Error::Conflict(_) => "conflict",
            Error::CursorExpired(_) => "cursor-expired",
            Error::Transient(_) => "transient",
            Error::Fatal(_) => "fatal",
        }
    }

    /// (case, HTTP status, body, expected variant, text the message must contain)
    fn cases() -> Vec<(&'static str, u16, Json, &'static str, &'static str)> {
        vec![
            (
                "expired sync token, 400 FAILED_PRECONDITION (docs/google-people-api.md §3.1)",
                400,
                json!({"error": {"code": 400,
                    "message": "Sync token is expired. Clear local cache and retry call without the sync token.",
                    "status": "FAILED_PRECONDITION",
                    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                 "reason": "EXPIRED_SYNC_TOKEN", "domain": "people.googleapis.com"}]}}),
                "cursor-expired",
                "EXPIRED_SYNC_TOKEN",
            ),
            (
                "expired sync token, INVALID_ARGUMENT capture (docs/google-people-api.md §10 #1)",
                400,
                json!({"error": {"code": 400,
                    "message": "Sync token is expired. Clear local cache and retry call without the sync token.",
                    "status": "INVALID_ARGUMENT"}}),
                "cursor-expired",
                "Sync token is expired",
            ),
            (
                "expired sync token, 410 of the old docs",
                410,
                json!({"error": {"code": 410, "message": "Sync token is expired.", "status": "GONE"}}),
                "cursor-expired",
                "HTTP 410",
            ),
            (
                "stale etag (docs/google-people-api.md §4.2)",
                400,
                json!({"error": {"code": 400,
                    "message": "Request person.etag is different than the current person.etag. Clear local cache and get the latest person.",
                    "status": "FAILED_PRECONDITION"}}),
                "conflict",
                "person.etag is different",
            ),
            (
                "missing etag is an invalid request, not a conflict",
                400,
                json!({"error": {"code": 400,
                    "message": "Request must set person.etag or person.metadata.sources.etag for the source that is being updated.",
                    "status": "INVALID_ARGUMENT",
                    "errors": [{"message": "x", "domain": "global", "reason": "badRequest"}]}}),
                "invalid",
                "must set person.etag",
            ),
            (
                "other FAILED_PRECONDITION (workspace only)",
                400,
                json!({"error": {"code": 400, "message": "Must be a G Suite domain user.", "status": "FAILED_PRECONDITION"}}),
                "invalid",
                "G Suite",
            ),
            (
                "missing personFields",
                400,
                json!({"error": {"code": 400, "message": "personFields mask is required. Please specify one or more valid paths.", "status": "INVALID_ARGUMENT"}}),
                "invalid",
                "personFields mask is required",
            ),
            (
                "expired access token (docs/google-people-api.md §6.3)",
                401,
                json!({"error": {"code": 401,
                    "message": "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
                    "status": "UNAUTHENTICATED",
                    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "ACCESS_TOKEN_EXPIRED",
                                 "domain": "googleapis.com", "metadata": {"service": "people.googleapis.com"}}]}}),
                "unauthorized",
                "ACCESS_TOKEN_EXPIRED",
            ),
            (
                "garbage token: no reason",
                401,
                json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}}),
                "unauthorized",
                "HTTP 401 UNAUTHENTICATED",
            ),
            (
                "insufficient scope (docs/google-people-api.md §6.3)",
                403,
                json!({"error": {"code": 403, "message": "Request had insufficient authentication scopes.", "status": "PERMISSION_DENIED",
                    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT", "domain": "googleapis.com"}]}}),
                "forbidden",
                "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
            ),
            (
                "API disabled (docs/google-people-api.md §6.3)",
                403,
                json!({"error": {"code": 403, "message": "People API has not been used in project 1 before or it is disabled.", "status": "PERMISSION_DENIED",
                    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED", "domain": "googleapis.com"}]}}),
                "forbidden",
                "SERVICE_DISABLED",
            ),
            (
                "quota on a 403 (some clients see 403, docs/google-people-api.md §7.2)",
                403,
                json!({"error": {"code": 403, "message": "Quota exceeded for quota metric 'Critical read requests'.", "status": "PERMISSION_DENIED",
                    "errors": [{"message": "Rate Limit Exceeded", "domain": "usageLimits", "reason": "rateLimitExceeded"}]}}),
                "rate-limited",
                "rateLimitExceeded",
            ),
            (
                "per-minute quota, 429 (docs/google-people-api.md §7.2 first body)",
                429,
                json!({"error": {"code": 429,
                    "message": "Quota exceeded for quota metric 'Critical write requests' and limit 'Critical write requests per minute per user' of service 'people.googleapis.com' for consumer 'project_number:123'.",
                    "status": "RESOURCE_EXHAUSTED",
                    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED", "domain": "googleapis.com",
                        "metadata": {"quota_limit": "CriticalWritesPerMinutePerProjectPerUser"}}]}}),
                "rate-limited",
                "RATE_LIMIT_EXCEEDED",
            ),
            (
                "FBS quota, QuotaFailure detail (docs/google-people-api.md §7.2 second body)",
                429,
                json!({"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED",
                    "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                                 "violations": [{"subject": "QUOTA_EXCEEDED", "description": "FBS quota limit exceeded"}]}]}}),
                "rate-limited",
                "Resource has been exhausted",
            ),
            (
                "unknown contact (docs/google-people-api.md §3.2)",
                404,
                json!({"error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}}),
                "not-found",
                "Requested entity was not found",
            ),
            (
                "concurrent mutation, 409 ABORTED (docs/google-people-api.md §9.7)",
                409,
                json!({"error": {"code": 409, "message": "The operation was aborted.", "status": "ABORTED"}}),
                "transient",
                "ABORTED",
            ),
            (
                "duplicate group name, 409 ALREADY_EXISTS",
                409,
                json!({"error": {"code": 409, "message": "Contact group name already exists.", "status": "ALREADY_EXISTS"}}),
                "invalid",
                "ALREADY_EXISTS",
            ),
            (
                "internal error",
                500,
                json!({"error": {"code": 500, "message": "Internal error encountered.", "status": "INTERNAL"}}),
                "transient",
                "HTTP 500 INTERNAL",
            ),
            (
                "unavailable",
                503,
                json!({"error": {"code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE"}}),
                "transient",
                "UNAVAILABLE",
            ),
            (
                "a 502 from a proxy without a Google body",
                502,
                json!("<html>Bad Gateway</html>"),
                "transient",
                "HTTP 502",
            ),
        ]
    }

    #[test]
    fn every_google_error_maps_to_its_contract_variant() {
        for (case, http, body, want, text) in cases() {
            let bytes = match &body {
                Json::String(raw) => raw.clone().into_bytes(),
                other => serde_json::to_vec(other).unwrap(),
            };
            let got = from_reply(http, &bytes, None);
            assert_eq!(kind(&got), want, "{case}: {got:?}");
            assert!(got.message().contains(text), "{case}: {:?}", got.message());
            assert!(!got.message().contains('\n'), "{case}: one line");
        }
    }

    #[test]
    fn rate_limits_carry_the_retry_after_given() {
        let body =
            json!({"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}});
        let got = from_reply(429, &serde_json::to_vec(&body).unwrap(), Some(7_000));
        assert_eq!(
            got,
            Error::rate_limited(Some(7_000), "HTTP 429 RESOURCE_EXHAUSTED: slow down")
        );
    }

    #[test]
    fn html_404_points_at_the_base_url() {
        let got = from_reply(
            404,
            b"<!DOCTYPE html><title>Error 404 (Not Found)!!1</title>",
            None,
        );
        assert!(
            matches!(got, Error::Fatal(ref m) if m.contains("base-url")),
            "{got:?}"
        );
    }

    #[test]
    fn empty_bodies_fall_back_to_the_status() {
        assert_eq!(kind(&from_reply(401, b"", None)), "unauthorized");
        assert_eq!(kind(&from_reply(404, b"", None)), "fatal");
        assert_eq!(kind(&from_reply(429, b"", Some(1))), "rate-limited");
        assert_eq!(kind(&from_reply(418, b"", None)), "fatal");
        assert_eq!(kind(&from_reply(504, b"", None)), "transient");
    }

    #[test]
    fn batch_item_statuses_map_by_grpc_code() {
        let item = |v: Json| serde_json::from_value::<Status>(v).unwrap();
        assert_eq!(from_rpc_status(&item(json!({}))), None);
        let cases = [
            (
                json!({"code": 5, "message": "Requested entity was not found."}),
                "not-found",
            ),
            (
                json!({"code": 9, "message": "Request person.etag is different than the current person.etag."}),
                "conflict",
            ),
            (
                json!({"code": 9, "message": "Contact must keep one group."}),
                "invalid",
            ),
            (
                json!({"code": 3, "message": "Field names may only have one value."}),
                "invalid",
            ),
            (json!({"code": 7, "message": "denied"}), "forbidden"),
            (json!({"code": 8, "message": "quota"}), "rate-limited"),
            (
                json!({"code": 16, "message": "who are you"}),
                "unauthorized",
            ),
            (json!({"code": 10, "message": "aborted"}), "transient"),
            (json!({"code": 14, "message": "unavailable"}), "transient"),
            (json!({"code": 13, "message": "internal"}), "transient"),
        ];
        for (status, want) in cases {
            let got = from_rpc_status(&item(status.clone())).unwrap();
            assert_eq!(kind(&got), want, "{status}: {got:?}");
        }
    }
}
