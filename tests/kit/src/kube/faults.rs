//! Fault injection: the next N requests (optionally only those with a given
//! method and/or path prefix) get an overload or server error in the exact
//! form the real API server sends, a delay, or a TCP reset.

use std::time::Duration;

use crate::net;

use serde_json::json;

use super::status::{self, ApiError};
use crate::net::http::Response;

/// What a faulty request gets.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// 429 with the plain-text body of priority-and-fairness / max-in-flight
    /// (`Too many requests, please try again later.`), `Retry-After` if given.
    TooManyRequestsText { retry_after: Option<u64> },
    /// 429 `Status` with reason `TooManyRequests` and `details.retryAfterSeconds`
    /// (copied into `Retry-After`) if given.
    TooManyRequestsStatus { retry_after: Option<u64> },
    /// 500 `InternalError`: `Internal error occurred: injected fault`.
    InternalError,
    /// 500 `ServerTimeout` (a 500 code, not 504), with a retry hint.
    ServerTimeout { retry_after: u64 },
    /// 503 `ServiceUnavailable`: `apiserver is shutting down`.
    ServiceUnavailable,
    /// 504 `Timeout`: `Timeout: request did not complete within requested timeout ...`.
    GatewayTimeout,
    /// Waits this long, then answers the request normally.
    Hang(Duration),
    /// Resets the connection (RST, via `SO_LINGER` 0) without answering.
    Reset,
}

/// A fault for the next `count` matching requests (see [`crate::net::faults::Fault`]).
pub type Fault = net::faults::Fault<FaultKind>;

/// What the server does with a faulty request.
pub(crate) enum Action {
    Respond(Response),
    Hang(Duration),
    Reset,
}

/// Consumes one hit of the first matching fault.
pub(crate) fn take(faults: &mut Vec<Fault>, method: &str, path: &str) -> Option<Action> {
    Some(match net::faults::take(faults, method, path, |_| true)? {
        FaultKind::Hang(d) => Action::Hang(d),
        FaultKind::Reset => Action::Reset,
        FaultKind::TooManyRequestsText { retry_after } => {
            let resp = go_http_error(429, "Too many requests, please try again later.");
            Action::Respond(match retry_after {
                Some(s) => resp.with_header("Retry-After", &s.to_string()),
                None => resp,
            })
        }
        other => Action::Respond(status_response(&status_error(&other, method, path))),
    })
}

/// A plain-text response, as Go's `http.Error` writes it (with a newline).
fn go_http_error(status: u16, text: &str) -> Response {
    Response::new(status, format!("{text}\n").into_bytes())
        .with_header("Content-Type", "text/plain; charset=utf-8")
        .with_header("X-Content-Type-Options", "nosniff")
}

/// The `Status` error of a Status-shaped fault.
fn status_error(kind: &FaultKind, method: &str, path: &str) -> ApiError {
    match kind {
        FaultKind::TooManyRequestsStatus { retry_after } => {
            let details = match retry_after {
                Some(s) => json!({ "retryAfterSeconds": s }),
                None => json!({}),
            };
            let msg = "Too many requests, please try again later.";
            status::failure(429, "TooManyRequests", msg, Some(details))
        }
        FaultKind::InternalError => status::failure(
            500,
            "InternalError",
            "Internal error occurred: injected fault",
            Some(json!({"causes": [{"message": "injected fault"}]})),
        ),
        FaultKind::ServerTimeout { retry_after } => {
            let (group, resource) = group_resource(path);
            let operation = match method {
                "GET" => "get",
                "POST" => "create",
                "PUT" => "update",
                "PATCH" => "patch",
                "DELETE" => "delete",
                _ => "request",
            };
            let qualified = if group.is_empty() {
                resource.clone()
            } else {
                format!("{resource}.{group}")
            };
            let msg = format!(
                "The {operation} operation against {qualified} could not be completed at this time, please try again."
            );
            let details = json!({"group": group, "kind": resource, "retryAfterSeconds": retry_after});
            status::failure(500, "ServerTimeout", &msg, Some(details))
        }
        FaultKind::ServiceUnavailable => status::failure(
            503,
            "ServiceUnavailable",
            "apiserver is shutting down",
            None,
        ),
        _ => status::failure(
            504,
            "Timeout",
            "Timeout: request did not complete within requested timeout - context deadline exceeded",
            Some(json!({})),
        ),
    }
}

/// The API group and resource a path names (empty strings if none).
fn group_resource(path: &str) -> (String, String) {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, rest) = match segs.as_slice() {
        ["apis", g, _v, rest @ ..] => (g.to_string(), rest),
        ["api", _v, rest @ ..] => (String::new(), rest),
        _ => (String::new(), &[][..]),
    };
    let resource = match rest {
        ["namespaces", _, r, ..] => r.to_string(),
        [r, ..] => r.to_string(),
        [] => String::new(),
    };
    (group, resource)
}

/// An error as a JSON response, with `Retry-After` when it carries one.
pub(crate) fn status_response(e: &ApiError) -> Response {
    let resp = Response::json(e.code, &e.body);
    match e.retry_after.filter(|s| *s > 0) {
        Some(s) => resp.with_header("Retry-After", &s.to_string()),
        None => resp,
    }
}
