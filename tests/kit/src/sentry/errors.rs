//! Relay's error answers: a status with the body of Relay's
//! `ApiErrorResponse`, `{"detail": "<error>", "causes": ["<source>", …]}`
//! (`causes` left out when empty), as `application/json`; the texts are
//! Relay's own `Display` strings. Two answers are not JSON because Relay's
//! are not either: the 405 of a method the route does not serve (empty,
//! with `Allow`) and the 413 of a body over the limit (axum's plain text).

use serde_json::{json, Value};

use super::envelope::EnvelopeError;
use crate::net::http::Response;

/// The `detail` of a 429, Relay's `BadStoreRequest::RateLimited`.
pub(crate) const RATE_LIMITED: &str = "Sentry dropped data due to a quota or internal rate \
limit being reached. This will not affect your application. See \
https://docs.sentry.io/product/accounts/quotas/ for more information.";

/// The `detail` of the 403 for an unknown key or another project.
pub(crate) const REJECTED_PROJECT_ID: &str = "event submission rejected with_reason: ProjectId";

/// One error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SentryError {
    pub status: u16,
    pub detail: String,
    /// The error's `source()` chain, outermost first.
    pub causes: Vec<String>,
    /// Extra response headers (`Retry-After`, `X-Sentry-Rate-Limits`).
    pub headers: Vec<(String, String)>,
}

impl SentryError {
    pub fn new(status: u16, detail: impl Into<String>) -> SentryError {
        SentryError {
            status,
            detail: detail.into(),
            causes: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// Adds a cause after the ones already there.
    pub fn cause(mut self, cause: impl Into<String>) -> SentryError {
        self.causes.push(cause.into());
        self
    }

    pub fn with_header(mut self, name: &str, value: &str) -> SentryError {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The JSON body, `{"detail": …}` with `causes` when there are any.
    pub fn body(&self) -> Value {
        if self.causes.is_empty() {
            json!({ "detail": self.detail })
        } else {
            json!({ "detail": self.detail, "causes": self.causes })
        }
    }

    pub fn response(&self) -> Response {
        let mut resp = Response::json(self.status, &self.body());
        for (k, v) in &self.headers {
            resp = resp.with_header(k, v);
        }
        resp
    }
}

/// `BadEventMeta::MultipleAuth`: more than one of the header, the
/// `Authorization` header and the query string carries auth.
pub(crate) fn multiple_auth() -> SentryError {
    SentryError::new(401, "multiple authorization payloads detected")
}

/// `BadEventMeta::BadAuth`: the auth header or query does not parse.
pub(crate) fn bad_auth(cause: impl Into<String>) -> SentryError {
    SentryError::new(401, "bad x-sentry-auth header").cause(cause)
}

/// `BadEventMeta::BadEnvelopeAuth`: without request auth, the envelope
/// header does not carry a usable `dsn`.
pub(crate) fn bad_envelope_auth(cause: impl Into<String>) -> SentryError {
    SentryError::new(401, "bad envelope authentication header").cause(cause)
}

/// `BadEventMeta::BadProject`: the path's project id is not a number.
pub(crate) fn bad_project_path() -> SentryError {
    SentryError::new(400, "bad project path parameter")
}

/// `BadEventMeta::BadPublicKey`: the key is not 32 ASCII characters.
pub(crate) fn bad_public_key() -> SentryError {
    SentryError::new(400, "bad sentry DSN public key").cause("invalid project key")
}

/// `BadEventMeta::UnsupportedProtocolVersion`: `sentry_version` above 7.
pub(crate) fn unsupported_version(version: u16) -> SentryError {
    SentryError::new(400, format!("unsupported protocol version ({version})"))
}

/// `BadStoreRequest::EmptyBody`.
pub(crate) fn empty_body() -> SentryError {
    SentryError::new(400, "empty request body")
}

/// `BadStoreRequest::InvalidEnvelope`, with the envelope error as causes.
pub(crate) fn invalid_envelope(e: &EnvelopeError) -> SentryError {
    e.causes()
        .into_iter()
        .fold(SentryError::new(400, "invalid event envelope"), |err, c| {
            err.cause(c)
        })
}

/// `BadStoreRequest::EventRejected(DiscardReason::ProjectId)`: the key is
/// not this project's, or the path names another project.
pub(crate) fn rejected_project_id() -> SentryError {
    SentryError::new(403, REJECTED_PROJECT_ID)
}

/// The fake's own refusal of an event payload that breaks a documented
/// requirement Relay itself does not enforce at the endpoint.
pub(crate) fn invalid_event(cause: impl Into<String>) -> SentryError {
    SentryError::new(400, "invalid event payload").cause(cause)
}

/// The fake's own refusal of a body type the envelope docs do not list.
pub(crate) fn unsupported_media_type(got: &str) -> SentryError {
    SentryError::new(
        415,
        format!(
            "unsupported content type {got:?}: envelopes are application/x-sentry-envelope \
             (text/plain, multipart/form-data and application/x-www-form-urlencoded are \
             tolerated for CORS)"
        ),
    )
}

/// The fake does not decompress (Relay does: gzip, deflate, br, zstd).
pub(crate) fn unsupported_encoding(got: &str) -> SentryError {
    SentryError::new(
        400,
        format!("the fake Sentry does not decode Content-Encoding {got:?}; send the envelope uncompressed"),
    )
}

pub(crate) fn not_found(path: &str) -> SentryError {
    SentryError::new(404, format!("no such endpoint: {path}"))
}

/// A route that exists for POST only: axum's empty 405 with `Allow`.
pub(crate) fn method_not_allowed() -> Response {
    Response::new(405, Vec::new()).with_header("Allow", "POST")
}

/// axum's answer to a body over `DefaultBodyLimit`, which Relay puts on
/// its envelope route.
pub(crate) fn payload_too_large() -> Response {
    Response::new(
        413,
        b"Failed to buffer the request body: length limit exceeded".to_vec(),
    )
    .with_header("Content-Type", "text/plain; charset=utf-8")
}

/// A malformed HTTP request (the connection is closed after it).
pub(crate) fn bad_http() -> SentryError {
    SentryError::new(400, "malformed HTTP/1.1 request")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_left_out_when_empty() {
        assert_eq!(empty_body().body(), json!({"detail": "empty request body"}));
        assert_eq!(
            invalid_envelope(&EnvelopeError::UnexpectedEof).body(),
            json!({"detail": "invalid event envelope", "causes": ["unexpected end of file"]})
        );
        let r = rejected_project_id().response();
        assert_eq!(r.status, 403);
        assert!(r
            .headers
            .contains(&("Content-Type".into(), "application/json".into())));
    }
}
