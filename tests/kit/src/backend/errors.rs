//! The backend's error answers: a status with the JSON body
//! `{"error": "<code>", "message": "<text>"}` (`application/json`), plus
//! `Retry-After` on the overload answers.

use serde_json::json;

use crate::net::http::Response;

/// One error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub status: u16,
    pub error: String,
    pub message: String,
    /// Seconds, sent as `Retry-After`.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: u16, error: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.to_string(),
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn response(&self) -> Response {
        let body = json!({"error": self.error, "message": self.message});
        let resp = Response::json(self.status, &body);
        match self.retry_after {
            Some(s) => resp.with_header("Retry-After", &s.to_string()),
            None => resp,
        }
    }
}

pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(400, "bad_request", message)
}

pub(crate) fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(401, "unauthorized", message)
}

pub(crate) fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(403, "forbidden", message)
}

pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
    ApiError::new(404, "not_found", message)
}

pub(crate) fn method_not_allowed(method: &str, allowed: &str) -> ApiError {
    ApiError::new(
        405,
        "method_not_allowed",
        format!("{method} is not allowed here; use {allowed}"),
    )
}

pub(crate) fn payload_too_large(limit: usize) -> ApiError {
    ApiError::new(
        413,
        "payload_too_large",
        format!("the request body is over {limit} bytes"),
    )
}

pub(crate) fn unsupported_media_type(got: Option<&str>) -> ApiError {
    ApiError::new(
        415,
        "unsupported_media_type",
        format!(
            "the body must be application/json, not {}",
            got.unwrap_or("untyped")
        ),
    )
}
