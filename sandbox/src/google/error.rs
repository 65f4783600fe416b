//! The standard Google error envelope (`{"error":{code,message,status,details}}`) and the
//! OAuth token endpoint's flat `{"error","error_description"}` replies.
//!
//! Texts are Google's as captured by others (`docs/google-people-api.md` §3.1, §4.2, §6,
//! docs/google-people-api.md §7.2), word for word where known; the ones no capture gives are marked in the
//! constructor docs.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Content type Google's front end sends on every JSON reply.
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=UTF-8";

/// The `message` of every 401 for a token that is present but not usable.
pub const MSG_INVALID_CREDENTIALS: &str = "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.";
/// The `message` of a 401 for a request that carries no token at all.
pub const MSG_MISSING_CREDENTIALS: &str = "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.";
/// Exact text of the expired sync token reply (docs/google-people-api.md §3.1).
pub const MSG_EXPIRED_SYNC_TOKEN: &str =
    "Sync token is expired. Clear local cache and retry call without the sync token.";
/// Exact text of the stale etag reply (docs/google-people-api.md §4.2).
pub const MSG_STALE_ETAG: &str = "Request person.etag is different than the current person.etag. Clear local cache and get the latest person.";
/// Exact text of the missing etag reply (docs/google-people-api.md §4.2).
pub const MSG_MISSING_ETAG: &str = "Request must set person.etag or person.metadata.sources.etag for the source that is being updated.";
/// Text for malformed tokens and parameters changed between pages (docs/google-people-api.md §7.2).
pub const MSG_INVALID_ARGUMENT: &str = "Request contains an invalid argument.";
/// Text for an unknown person or group (docs/google-people-api.md §3.2).
pub const MSG_NOT_FOUND: &str = "Requested entity was not found.";

/// A Google API error reply, rendered as the standard JSON envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status of the reply (also `error.code`).
    pub http: StatusCode,
    /// Canonical `error.status` string, e.g. `INVALID_ARGUMENT`.
    pub status: &'static str,
    /// Human readable `error.message`.
    pub message: String,
    /// `error.details[]`, already shaped (`@type` first).
    pub details: Vec<Value>,
    /// Whether to add the legacy `errors:[{message,domain:"global",reason}]` array.
    pub legacy_reason: Option<&'static str>,
    /// `WWW-Authenticate` header value for 401/403 replies.
    pub www_authenticate: Option<String>,
}

impl ApiError {
    fn new(http: StatusCode, status: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            http,
            status,
            message: message.into(),
            details: Vec::new(),
            legacy_reason: None,
            www_authenticate: None,
        }
    }

    /// 400 INVALID_ARGUMENT with the legacy `errors[]` array (docs/google-people-api.md §10 #12: a fake may add it).
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message);
        e.legacy_reason = Some("badRequest");
        e
    }

    /// 400 INVALID_ARGUMENT "Request contains an invalid argument." (bad page/sync token,
    /// parameters changed between pages).
    pub fn bad_token() -> Self {
        Self::invalid_argument(MSG_INVALID_ARGUMENT)
    }

    /// 400 INVALID_ARGUMENT for a missing field mask, e.g. `personFields mask is required…`.
    pub fn mask_required(param: &str, doc: &str) -> Self {
        // `readMask is required.` (captured) but `personFields mask is required.` (docs/google-people-api.md §7.2).
        let what = if param == "readMask" {
            param.to_owned()
        } else {
            format!("{param} mask")
        };
        Self::invalid_argument(format!(
            "{what} is required. Please specify one or more valid paths. Valid paths are documented at https://developers.google.com/people/api/rest/v1/{doc}."
        ))
    }

    /// 400 INVALID_ARGUMENT for an unknown path in a field mask.
    pub fn mask_path(param: &str, path: &str, doc: &str) -> Self {
        Self::invalid_argument(format!(
            "Invalid {param} mask path: \"{path}\". Valid paths are documented at https://developers.google.com/people/api/rest/v1/{doc}."
        ))
    }

    /// 400 INVALID_ARGUMENT for an unknown JSON field in a request body (ESF wording).
    pub fn unknown_body_field(name: &str, at: &str) -> Self {
        let mut e = Self::invalid_argument(format!(
            "Invalid JSON payload received. Unknown name \"{name}\" at '{at}': Cannot find field."
        ));
        e.details.push(json!({
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{
                "field": at,
                "description": format!("Invalid JSON payload received. Unknown name \"{name}\" at '{at}': Cannot find field.")
            }]
        }));
        e
    }

    /// 400 INVALID_ARGUMENT for an unknown query parameter (ESF wording).
    pub fn unknown_query_param(name: &str) -> Self {
        Self::invalid_argument(format!(
            "Invalid JSON payload received. Unknown name \"{name}\": Cannot bind query parameter. Field '{name}' could not be found in request message."
        ))
    }

    /// 400 FAILED_PRECONDITION with an `EXPIRED_SYNC_TOKEN` ErrorInfo (docs/google-people-api.md §3.1, §10 #1).
    pub fn expired_sync_token(status: &'static str) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, status, MSG_EXPIRED_SYNC_TOKEN);
        e.details.push(json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "EXPIRED_SYNC_TOKEN",
            "domain": "people.googleapis.com"
        }));
        e
    }

    /// 400 FAILED_PRECONDITION for a stale person etag (docs/google-people-api.md §4.2).
    pub fn stale_etag() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "FAILED_PRECONDITION",
            MSG_STALE_ETAG,
        )
    }

    /// 400 INVALID_ARGUMENT for an update without any etag (docs/google-people-api.md §4.2).
    pub fn missing_etag() -> Self {
        Self::invalid_argument(MSG_MISSING_ETAG)
    }

    /// 400 FAILED_PRECONDITION with a free text.
    pub fn failed_precondition(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "FAILED_PRECONDITION", message)
    }

    /// 404 NOT_FOUND "Requested entity was not found."
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", MSG_NOT_FOUND)
    }

    /// 409 with the configured status string (duplicate group name, docs/google-people-api.md §10 #10).
    pub fn conflict(status: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, status, message)
    }

    /// 409 ABORTED for a mutation that collided with another one for the same user (docs/google-people-api.md §9.7).
    pub fn aborted() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "ABORTED",
            "The operation was aborted. Send mutations for the same user sequentially.",
        )
    }

    /// 503 UNAVAILABLE ("The service is currently unavailable.").
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "The service is currently unavailable.",
        )
    }

    /// 401 for a request without any credential (reason `CREDENTIALS_MISSING`).
    pub fn credentials_missing(method: &str) -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            MSG_MISSING_CREDENTIALS,
        );
        e.details
            .push(error_info("CREDENTIALS_MISSING", "googleapis.com", method));
        e.www_authenticate = Some("Bearer realm=\"https://accounts.google.com/\"".into());
        e
    }

    /// 401 for a token that existed but has expired or was revoked (`ACCESS_TOKEN_EXPIRED`).
    pub fn token_expired(method: &str) -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            MSG_INVALID_CREDENTIALS,
        );
        e.details
            .push(error_info("ACCESS_TOKEN_EXPIRED", "googleapis.com", method));
        e.www_authenticate = Some(invalid_token_header());
        e
    }

    /// 401 for a token the server never issued: same envelope, no ErrorInfo (docs/google-people-api.md §6.3: the
    /// reason "may be different or missing"; live captures show none).
    pub fn token_invalid() -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            MSG_INVALID_CREDENTIALS,
        );
        e.www_authenticate = Some(invalid_token_header());
        e
    }

    /// 403 PERMISSION_DENIED / ACCESS_TOKEN_SCOPE_INSUFFICIENT (docs/google-people-api.md §6.3).
    pub fn scope_insufficient(method: &str) -> Self {
        let mut e = Self::new(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "Request had insufficient authentication scopes.",
        );
        e.details.push(error_info(
            "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
            "googleapis.com",
            method,
        ));
        e.www_authenticate = Some(format!(
            "Bearer realm=\"https://accounts.google.com/\", error=\"insufficient_scope\", scope=\"{}\"",
            super::auth::SCOPE_CONTACTS
        ));
        e
    }

    /// 429 RESOURCE_EXHAUSTED for a per-minute quota bucket (docs/google-people-api.md §7.2, first body).
    pub fn quota_exceeded(
        metric_title: &str,
        limit_title: &str,
        quota_limit: &str,
        metric: &str,
    ) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            format!(
                "Quota exceeded for quota metric '{metric_title}' and limit '{limit_title}' of service 'people.googleapis.com' for consumer 'project_number:{PROJECT_NUMBER}'."
            ),
        );
        e.details.push(json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "RATE_LIMIT_EXCEEDED",
            "domain": "googleapis.com",
            "metadata": {
                "consumer": format!("projects/{PROJECT_NUMBER}"),
                "quota_limit": quota_limit,
                "service": "people.googleapis.com",
                "quota_metric": metric
            }
        }));
        e
    }

    /// The Google-shaped error for an injected fault of HTTP `status` (control API
    /// `/_sandbox/google-faults`): 500 INTERNAL, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED,
    /// 409 ABORTED, 429 the back-end "FBS" RESOURCE_EXHAUSTED body (docs/google-people-api.md §7.2), others by class.
    pub fn injected(status: u16) -> Self {
        let http = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        match status {
            503 => Self::unavailable(),
            504 => Self::new(http, "DEADLINE_EXCEEDED", "The request timed out."),
            409 => Self::aborted(),
            429 => {
                let mut e = Self::new(
                    http,
                    "RESOURCE_EXHAUSTED",
                    "Resource has been exhausted (e.g. check quota).",
                );
                e.details.push(json!({
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [{"subject": "QUOTA_EXCEEDED", "description": "FBS quota limit exceeded"}]
                }));
                e
            }
            400 => Self::invalid_argument(MSG_INVALID_ARGUMENT),
            404 => Self::not_found(),
            s if s >= 500 => {
                let mut e = Self::internal();
                e.http = http;
                e
            }
            _ => Self::new(http, "UNKNOWN", "Unknown error."),
        }
    }

    /// 500 INTERNAL, as injected by faults.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "Internal error encountered.",
        )
    }

    /// The JSON body of this error.
    pub fn body(&self) -> Value {
        let mut error = json!({
            "code": self.http.as_u16(),
            "message": self.message,
        });
        if let Some(reason) = self.legacy_reason {
            error["errors"] = json!([{
                "message": self.message,
                "domain": "global",
                "reason": reason
            }]);
        }
        error["status"] = json!(self.status);
        if !self.details.is_empty() {
            error["details"] = Value::Array(self.details.clone());
        }
        json!({ "error": error })
    }

    /// A google.rpc.Status object (`{code, message, details}`) for per-item batch results;
    /// `code` is the canonical gRPC code, not the HTTP status.
    pub fn rpc_status(&self) -> Value {
        let mut s = json!({ "code": grpc_code(self.status), "message": self.message });
        if !self.details.is_empty() {
            s["details"] = Value::Array(self.details.clone());
        }
        s
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = json_response(self.http, &self.body());
        if let Some(h) = &self.www_authenticate
            && let Ok(v) = HeaderValue::from_str(h)
        {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        resp
    }
}

/// Project number quoted in quota errors.
pub const PROJECT_NUMBER: &str = "1049578123456";

fn invalid_token_header() -> String {
    "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"".into()
}

fn error_info(reason: &str, domain: &str, method: &str) -> Value {
    json!({
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": domain,
        "metadata": {"service": "people.googleapis.com", "method": method}
    })
}

/// Canonical gRPC code number for a status string.
pub fn grpc_code(status: &str) -> u16 {
    match status {
        "OK" => 0,
        "CANCELLED" => 1,
        "INVALID_ARGUMENT" => 3,
        "DEADLINE_EXCEEDED" => 4,
        "NOT_FOUND" => 5,
        "ALREADY_EXISTS" => 6,
        "PERMISSION_DENIED" => 7,
        "RESOURCE_EXHAUSTED" => 8,
        "FAILED_PRECONDITION" => 9,
        "ABORTED" => 10,
        "UNAVAILABLE" => 14,
        "UNAUTHENTICATED" => 16,
        _ => 13,
    }
}

/// A JSON reply with Google's content type.
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = (status, bytes).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(JSON_CONTENT_TYPE),
    );
    resp
}

/// An error of the OAuth token endpoint: flat `{"error","error_description"}` JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuthError {
    /// HTTP status (400 or 401).
    pub http: StatusCode,
    /// RFC 6749 error code, e.g. `invalid_grant`.
    pub error: &'static str,
    /// Google's description text.
    pub description: String,
}

impl OAuthError {
    /// 400 invalid_grant "Token has been expired or revoked." (docs/google-people-api.md §6.2).
    pub fn invalid_grant() -> Self {
        OAuthError {
            http: StatusCode::BAD_REQUEST,
            error: "invalid_grant",
            description: "Token has been expired or revoked.".into(),
        }
    }

    /// 400 unsupported_grant_type.
    pub fn unsupported_grant(grant: &str) -> Self {
        OAuthError {
            http: StatusCode::BAD_REQUEST,
            error: "unsupported_grant_type",
            description: format!("Invalid grant_type: {grant}"),
        }
    }

    /// 400 invalid_request for a missing parameter.
    pub fn missing(param: &str) -> Self {
        OAuthError {
            http: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            description: format!("Missing required parameter: {param}"),
        }
    }

    /// 401 invalid_client: unknown client id ("The OAuth client was not found.") or a
    /// wrong secret ("Unauthorized").
    pub fn invalid_client(description: &str) -> Self {
        OAuthError {
            http: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            description: description.into(),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        json_response(
            self.http,
            &json!({"error": self.error, "error_description": self.description}),
        )
    }
}
