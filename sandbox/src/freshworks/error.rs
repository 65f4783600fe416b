//! Error replies of the Freshworks API: `{"errors":{"code":N,"message":["…"]}}`
//! (docs/freshworks-api.md §9.1).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An API error reply in the Freshworks envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human messages (Rails-style full messages for validation errors).
    pub messages: Vec<String>,
}

impl ApiError {
    /// Any status with one message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            messages: vec![message.into()],
        }
    }

    /// 400 with validation messages.
    pub fn invalid(messages: Vec<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            messages,
        }
    }

    /// 400 with one message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 for an unknown record, view, list, job or path.
    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "The requested resource could not be found",
        )
    }

    /// 403 for a user without permission.
    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "You do not have the permission to perform this action",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"errors": {"code": self.status.as_u16(), "message": self.messages}});
        (self.status, Json(body)).into_response()
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
